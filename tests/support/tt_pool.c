#include "tt_pool.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"

enum { POOL_SIZE = 4 };
static tt_child children[POOL_SIZE];
static bool in_use[POOL_SIZE];

static tt_child *take(void)
{
    for (int i = 0; i < POOL_SIZE; i++) {
        if (!in_use[i]) {
            in_use[i] = true;
            return &children[i];
        }
    }
    fail_msg("too many children");
    return NULL;
}

static void give_back(tt_child *c)
{
    in_use[c - children] = false;
}

tt_child *tt_pool_start_bin(const char *name, const char *const args[])
{
    tt_child *c = take();
    int rc = tt_child_start_bin(c, name, args);
    if (rc < 0) {
        give_back(c);
        if (rc == -ENOENT)
            fail_msg("%s is not built (build the example_* targets)", tt_bin(name));
        fail_msg("cannot start %s: %s", tt_bin(name), strerror(-rc));
    }
    return c;
}

tt_child *tt_pool_start_python(const char *script, const char *const args[])
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/tests/interop/%s", TWIRL_SOURCE_DIR, script);
    const char *argv[16] = { TT_PYTHON, path };
    int n = 2;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    tt_child *c = take();
    int rc = tt_child_start(c, argv);
    if (rc < 0) {
        give_back(c);
        fail_msg("cannot start %s: %s", script, strerror(-rc));
    }
    return c;
}

bool tt_pool_have_twisted(void)
{
    static int have = -1;
    if (have < 0) {
        have = access(TT_PYTHON, X_OK) == 0 &&
               system(TT_PYTHON " -c 'import twisted' >/dev/null 2>&1") == 0;
        if (!have)
            fprintf(stderr, "# %s cannot import twisted: skipped\n", TT_PYTHON);
    }
    return have;
}

int tt_pool_exit_status(tt_child *c, double timeout)
{
    int status = tt_child_wait(c, timeout);
    give_back(c);
    if (status == -1)
        fail_msg("the program did not exit within %.0f s", timeout);
    if (!WIFEXITED(status))
        fail_msg("the program died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

void tt_pool_stop(tt_child *c, double timeout)
{
    int status = tt_child_stop(c, SIGTERM, timeout, NULL);
    give_back(c);
    if (status == -1)
        fail_msg("the server ignored SIGTERM for %.0f s", timeout);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

uint16_t tt_pool_port(tt_child *c, double timeout)
{
    const char *line = tt_child_line(c, timeout);
    if (!line)
        fail_msg("the server printed no port");
    const char *digits = strrchr(line, ' ');
    assert_non_null(digits);
    unsigned long port = strtoul(digits + 1, NULL, 10);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

int tt_pool_connect(uint16_t port)
{
    int fd = tt_connect_loopback(port);
    if (fd < 0)
        fail_msg("connect to port %u: %s", port, strerror(-fd));
    return fd;
}

void tt_pool_kill_all(void)
{
    for (int i = 0; i < POOL_SIZE; i++) {
        if (in_use[i]) {
            tt_child_kill(&children[i]);
            in_use[i] = false;
        }
    }
}

/* ------------------------------------------------- the twirl command */

void tt_twirl_start(tt_child *c, const char *args)
{
    char cmd[4096];
    const char *wrap = getenv("TWIRL_CHILD_WRAPPER");
    snprintf(cmd, sizeof cmd, "exec %s '%s' %s 2>&1", wrap ? wrap : "", tt_bin("twirl"), args);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    assert_int_equal(tt_child_start(c, argv), 0);
}

uint16_t tt_twirl_port(tt_child *c, double timeout)
{
    const char *line;
    while ((line = tt_child_line(c, timeout)) != NULL) {
        const char *at = strstr(line, " listening on ");
        if (at)
            return (uint16_t)atoi(strrchr(at, ':') + 1);
        if (strstr(line, "twirl: "))
            fail_msg("twirl failed: %s", line);
    }
    fail_msg("twirl web never said where it listens");
    return 0;
}

int tt_twirl_run(const char *args, char *out, size_t outlen, double timeout)
{
    tt_child c;
    tt_twirl_start(&c, args);
    snprintf(out, outlen, "%s", tt_child_rest(&c, timeout));
    int st = tt_child_wait(&c, timeout);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}
