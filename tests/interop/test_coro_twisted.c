/* ctest: label=interop timeout=180 */
/* The coroutine examples against Twisted itself (python3-twisted, run with
 * /usr/bin/python3): Twisted's echo client (tests/interop/
 * twisted_echo_client.py) against example_coro_echo_server, a short line and
 * one of 200 kB, and example_coro_client against Twisted's echo server
 * (twisted_echo_server.py). Skipped when Twisted is missing. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"

#define PYTHON "/usr/bin/python3"
/* Seconds any expected event may take (Python starts slowly). */
#define WAIT 20.0

static bool have_twisted;

enum { MAX_CHILDREN = 4 };
static tt_child children[MAX_CHILDREN];
static bool in_use[MAX_CHILDREN];

static tt_child *slot(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!in_use[i]) {
            in_use[i] = true;
            return &children[i];
        }
    }
    fail_msg("too many children");
    return NULL;
}

#define start_example(name, ...) start_bin("example_" name, (const char *const[]){ __VA_ARGS__ })

static tt_child *start_bin(const char *name, const char *const args[])
{
    tt_child *c = slot();
    int rc = tt_child_start_bin(c, name, args);
    if (rc < 0) {
        in_use[c - children] = false;
        fail_msg("cannot start %s: %s", tt_bin(name), strerror(-rc));
    }
    return c;
}

/* tests/interop/SCRIPT with the arguments that follow. */
#define start_twisted(script, ...) start_py(script, (const char *const[]){ __VA_ARGS__ })

static tt_child *start_py(const char *script, const char *const args[])
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/tests/interop/%s", TWIRL_SOURCE_DIR, script);
    const char *argv[16] = { PYTHON, path };
    int n = 2;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    tt_child *c = slot();
    int rc = tt_child_start(c, argv);
    if (rc < 0) {
        in_use[c - children] = false;
        fail_msg("cannot start %s: %s", script, strerror(-rc));
    }
    return c;
}

static int exit_status(tt_child *c)
{
    int status = tt_child_wait(c, WAIT);
    in_use[c - children] = false;
    if (status == -1)
        fail_msg("the program did not exit within %.0f s", WAIT);
    if (!WIFEXITED(status))
        fail_msg("the program died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

static void stop_server(tt_child *c)
{
    int status = tt_child_stop(c, SIGTERM, WAIT, NULL);
    in_use[c - children] = false;
    if (status == -1)
        fail_msg("the server ignored SIGTERM for %.0f s", WAIT);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* "... listening on port N" (twirl) or "PORT N" (the Python peers). */
static void port_of(tt_child *server, char *out, size_t size)
{
    const char *line = tt_child_line(server, WAIT);
    if (!line)
        fail_msg("the server printed no port");
    const char *digits = strrchr(line, ' ');
    assert_non_null(digits);
    unsigned long port = strtoul(digits + 1, NULL, 10);
    assert_true(port > 0 && port < 65536);
    snprintf(out, size, "%lu", port);
}

static void twisted_client_to_coro_echo_server(void **state)
{
    if (!have_twisted)
        skip();
    tt_child *server = start_example("coro_echo_server", "0", NULL);
    char port[8];
    port_of(server, port, sizeof port);
    tt_child *client =
        start_twisted("twisted_echo_client.py", "127.0.0.1", port, "hello from twisted", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf,
                        "Server said: hello from twisted\nConnection lost - goodbye!\n");
    /* 200 kB in one line: the server's writes wait for Twisted to read. */
    client =
        start_twisted("twisted_echo_client.py", "127.0.0.1", port, "0123456789", "20000", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "Server said: 200000 bytes\nConnection lost - goodbye!\n");
    stop_server(server);
}

static void coro_client_to_twisted_echo_server(void **state)
{
    if (!have_twisted)
        skip();
    tt_child *server = start_twisted("twisted_echo_server.py", "127.0.0.1", NULL);
    char port[8];
    port_of(server, port, sizeof port);
    tt_child *client = start_example("coro_client", "127.0.0.1", port, "hello from twirl",
                                     "a second line", "", "the last", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "Server said: hello from twirl\nServer said: a second line\n"
                                     "Server said: \nServer said: the last\n"
                                     "Connection closed - goodbye!\n");
    stop_server(server);
}

static int setup(void **state)
{
    alarm(120); /* a last resort: every wait has its own deadline */
    return 0;
}

static int teardown(void **state)
{
    alarm(0);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (in_use[i]) {
            tt_child_kill(&children[i]);
            in_use[i] = false;
        }
    }
    return 0;
}

int main(void)
{
    have_twisted =
        access(PYTHON, X_OK) == 0 && system(PYTHON " -c 'import twisted' >/dev/null 2>&1") == 0;
    if (!have_twisted)
        fprintf(stderr, "# %s cannot import twisted: skipped\n", PYTHON);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(twisted_client_to_coro_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(coro_client_to_twisted_echo_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
