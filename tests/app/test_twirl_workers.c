/* ctest: label=integration timeout=120 backends=once */
/* `twirl --workers 2`: two processes share one port through SO_REUSEPORT,
 * 100 connections spread over both, and SIGTERM stops both cleanly. */
#include <dirent.h>
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

/* Sockets a process holds (its listening socket included). */
static int sockets_of(pid_t pid)
{
    char dir[64], link[128], path[320];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = 0;
            n += strncmp(link, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

/* The worker processes: children of the sh-exec'd twirl (same pid). */
static int children_of(pid_t parent, pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, pid;
    while (n < max && fscanf(f, "%d", &pid) == 1)
        out[n++] = pid;
    fclose(f);
    return n;
}

static void workers_share_a_port(void **state)
{
    uint16_t port = tt_dead_port();
    assert_true(port > 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec '%s' echo --listen tcp:%u:interface=127.0.0.1 --workers 2 2>&1",
             tt_bin("twirl"), port);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    tt_child c;
    assert_int_equal(tt_child_start(&c, argv), 0);
    int listening = 0;
    const char *line;
    while (listening < 2 && (line = tt_child_line(&c, 5)) != NULL)
        listening += strstr(line, " listening on ") != NULL;
    assert_int_equal(listening, 2);

    pid_t workers[4];
    assert_int_equal(children_of(c.pid, workers, 4), 2);
    int base[2] = { sockets_of(workers[0]), sockets_of(workers[1]) };

    enum { CONNS = 100 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = tt_connect_loopback(port);
        assert_true(fds[i] >= 0);
        char b;
        bool eof;
        assert_int_equal(write(fds[i], "x", 1), 1);
        assert_int_equal(tt_recv_upto(fds[i], &b, 1, 5, &eof), 1); /* served */
    }
    int served[2] = { sockets_of(workers[0]) - base[0], sockets_of(workers[1]) - base[1] };
    assert_int_equal(served[0] + served[1], CONNS);
    assert_true(served[0] >= 30);
    assert_true(served[1] >= 30);

    double took;
    int st = tt_child_stop(&c, SIGTERM, 20, &took);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(kill(workers[i], 0), -1); /* both gone */
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
}

static void workers_need_a_fixed_tcp_port(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "exec '%s' echo --listen tcp:0 --workers 2 2>&1", tt_bin("twirl"));
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    tt_child c;
    assert_int_equal(tt_child_start(&c, argv), 0);
    const char *out = tt_child_rest(&c, 5);
    assert_non_null(strstr(out, "fixed port"));
    int st = tt_child_wait(&c, 5);
    assert_int_equal(WEXITSTATUS(st), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(workers_share_a_port),
        cmocka_unit_test(workers_need_a_fixed_tcp_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
