/* ctest: label=integration timeout=180 backends=once */
/* The `twirl` command as a user runs it: help and usage errors, the
 * ready-made servers, graceful shutdown on SIGTERM, and portforward carrying
 * 100 MiB both ways intact. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"

/* Runs `twirl ARGS` through sh so that its log (stderr) is in the pipe. */
static void start_twirl(tt_child *c, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec '%s' %s 2>&1", tt_bin("twirl"), args);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    assert_int_equal(tt_child_start(c, argv), 0);
}

/* Reads log lines until "... listening on HOST:PORT" and returns PORT. */
static uint16_t listening_port(tt_child *c)
{
    const char *line;
    while ((line = tt_child_line(c, 5)) != NULL) {
        const char *at = strstr(line, " listening on ");
        if (at) {
            const char *colon = strrchr(at, ':');
            assert_non_null(colon);
            return (uint16_t)atoi(colon + 1);
        }
    }
    fail_msg("twirl never said where it listens");
    return 0;
}

static int run_status(const char *args, char *out, size_t outlen)
{
    tt_child c;
    start_twirl(&c, args);
    const char *rest = tt_child_rest(&c, 5);
    snprintf(out, outlen, "%s", rest);
    int st = tt_child_wait(&c, 5);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void help_and_version(void **state)
{
    char out[8192];
    assert_int_equal(run_status("--version", out, sizeof out), 0);
    assert_non_null(strstr(out, "twirl 0."));
    assert_int_equal(run_status("--help", out, sizeof out), 0);
    for (const char *name = "echo\0discard\0qotd\0broadcast\0portforward\0"; *name;
         name += strlen(name) + 1)
        assert_non_null(strstr(out, name));
    assert_int_equal(run_status("portforward --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "--dest ENDPOINT"));
    assert_non_null(strstr(out, "--listen ENDPOINT"));
}

static void usage_errors_exit_2(void **state)
{
    static const struct {
        const char *args, *says;
    } cases[] = {
        { "", "usage: twirl" },
        { "nope", "unknown command 'nope'" },
        { "echo --frobnicate", "unknown option '--frobnicate'" },
        { "echo --listen", "--listen needs a value" },
        { "echo --listen tcp:port=abc", "bad port 'abc'" },
        { "echo --listen bogus:1", "bogus" },
        { "echo --reactor kqueue", "unknown backend 'kqueue'" },
        { "echo --log-level loud", "unknown level 'loud'" },
        { "portforward --listen tcp:0", "--dest is required" },
        { "portforward --listen tcp:0 --dest tcp:host=127.0.0.1", "port" },
    };
    char out[8192];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_status(cases[i].args, out, sizeof out);
        if (st != 2 || !strstr(out, cases[i].says))
            fail_msg("'twirl %s' exited %d saying '%s'", cases[i].args, st, out);
        /* one line, not a wall of text (the bare command prints usage) */
        if (i > 0)
            assert_true(strchr(out, '\n') == strrchr(out, '\n'));
    }
}

static void echo_on(const char *reactor)
{
    tt_child c;
    char args[128];
    snprintf(args, sizeof args, "echo --listen tcp:0:interface=127.0.0.1 --reactor %s", reactor);
    start_twirl(&c, args);
    uint16_t port = listening_port(&c);
    int fd = tt_connect_loopback(port);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "ping\n", 5), 5);
    char buf[16];
    bool eof;
    assert_int_equal(tt_recv_upto(fd, buf, 5, 5, &eof), 5);
    assert_memory_equal(buf, "ping\n", 5);
    /* SIGTERM with a connection open: the server closes it and exits 0 */
    double took;
    int st = tt_child_stop(&c, SIGTERM, 10, &took);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(took < 3);
    assert_int_equal(tt_recv_upto(fd, buf, sizeof buf, 2, &eof), 0);
    assert_true(eof);
    close(fd);
}

static void echo_and_graceful_shutdown(void **state)
{
    echo_on("poll");
    echo_on("epoll");
    echo_on("uring");
}

static void busy_port_exits_1_naming_it(void **state)
{
    tt_child a;
    start_twirl(&a, "discard --listen tcp:0:interface=127.0.0.1");
    uint16_t port = listening_port(&a);
    char args[128], out[8192];
    snprintf(args, sizeof args, "echo --listen tcp:%u:interface=127.0.0.1", port);
    assert_int_equal(run_status(args, out, sizeof out), 1);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%u", port);
    assert_non_null(strstr(out, where));
    assert_non_null(strstr(out, "in use"));
    tt_child_stop(&a, SIGINT, 5, NULL);
}

static void qotd_and_discard(void **state)
{
    tt_child c;
    start_twirl(&c, "qotd --listen tcp:0:interface=127.0.0.1 --quote 'Simple is better.'");
    uint16_t port = listening_port(&c);
    int fd = tt_connect_loopback(port);
    char buf[128] = { 0 };
    bool eof;
    size_t n = tt_recv_upto(fd, buf, sizeof buf - 1, 5, &eof);
    assert_true(eof);
    buf[n] = 0;
    assert_string_equal(buf, "Simple is better.\r\n");
    close(fd);
    assert_int_equal(WEXITSTATUS(tt_child_stop(&c, SIGTERM, 5, NULL)), 0);

    start_twirl(&c, "discard --listen tcp:0:interface=127.0.0.1 --log-format json");
    port = listening_port(&c);
    fd = tt_connect_loopback(port);
    assert_int_equal(write(fd, "anything at all", 15), 15);
    assert_int_equal(tt_recv_upto(fd, buf, sizeof buf, 0.2, &eof), 0);
    close(fd);
    assert_int_equal(WEXITSTATUS(tt_child_stop(&c, SIGTERM, 5, NULL)), 0);
}

static void broadcast_relays_to_the_others(void **state)
{
    tt_child c;
    start_twirl(&c, "broadcast --listen tcp:0:interface=127.0.0.1");
    uint16_t port = listening_port(&c);
    int fd[3];
    for (int i = 0; i < 3; i++) {
        fd[i] = tt_connect_loopback(port);
        char want[64];
        snprintf(want, sizeof want, "welcome, you are client number %d\n", i + 1);
        assert_string_equal(tt_recv_line(fd[i], 5), want);
    }
    assert_int_equal(write(fd[0], "hi all\n", 7), 7);
    assert_string_equal(tt_recv_line(fd[1], 5), "hi all\n");
    assert_string_equal(tt_recv_line(fd[2], 5), "hi all\n");
    char buf[64];
    bool eof;
    assert_int_equal(tt_recv_upto(fd[0], buf, sizeof buf, 0.2, &eof), 0); /* not to itself */
    assert_int_equal(write(fd[1], "close", 5), 5);
    assert_int_equal(tt_recv_upto(fd[1], buf, sizeof buf, 5, &eof), 0);
    assert_true(eof);
    assert_int_equal(write(fd[2], "still here\n", 11), 11);
    assert_string_equal(tt_recv_line(fd[0], 5), "still here\n");
    for (int i = 0; i < 3; i++)
        close(fd[i]);
    assert_int_equal(WEXITSTATUS(tt_child_stop(&c, SIGTERM, 5, NULL)), 0);
}

/* Pushes 100 MiB through portforward to an echo server and reads it all
 * back, both directions at once, comparing a checksum. */
static uint64_t mix(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void portforward_carries_100_mib(void **state)
{
    tt_child echo, fwd;
    start_twirl(&echo, "echo --listen tcp:0:interface=127.0.0.1");
    uint16_t eport = listening_port(&echo);
    char args[256];
    snprintf(args, sizeof args,
             "portforward --listen tcp:0:interface=127.0.0.1 --dest tcp:host=127.0.0.1:port=%u",
             eport);
    start_twirl(&fwd, args);
    uint16_t fport = listening_port(&fwd);

    enum { TOTAL = 100 * 1024 * 1024, CHUNK = 65536 };
    int fd = tt_connect_loopback(fport);
    assert_true(fd >= 0);
    static unsigned char out[CHUNK], in[CHUNK];
    size_t sent = 0, got = 0;
    uint64_t hsent = 1469598103934665603ull, hgot = hsent, seed = 42;
    size_t chunk_off = CHUNK;
    double deadline = tt_now() + 60;
    while (got < TOTAL && tt_now() < deadline) {
        struct pollfd p = { fd, (short)(POLLIN | (sent < TOTAL ? POLLOUT : 0)), 0 };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        if ((p.revents & POLLOUT) && sent < TOTAL) {
            if (chunk_off == CHUNK) {
                for (size_t i = 0; i < CHUNK; i++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    out[i] = (unsigned char)(seed >> 56);
                }
                chunk_off = 0;
            }
            size_t want = CHUNK - chunk_off;
            if (want > TOTAL - sent)
                want = TOTAL - sent;
            ssize_t n = send(fd, out + chunk_off, want, MSG_DONTWAIT);
            if (n > 0) {
                hsent = mix(hsent, out + chunk_off, (size_t)n);
                chunk_off += (size_t)n;
                sent += (size_t)n;
            }
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            ssize_t n = recv(fd, in, sizeof in, MSG_DONTWAIT);
            if (n == 0)
                break;
            if (n > 0) {
                hgot = mix(hgot, in, (size_t)n);
                got += (size_t)n;
            }
        }
    }
    close(fd);
    assert_int_equal(got, TOTAL);
    assert_true(hgot == hsent);
    assert_int_equal(WEXITSTATUS(tt_child_stop(&fwd, SIGTERM, 10, NULL)), 0);
    assert_int_equal(WEXITSTATUS(tt_child_stop(&echo, SIGTERM, 10, NULL)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_and_version),
        cmocka_unit_test(usage_errors_exit_2),
        cmocka_unit_test(echo_and_graceful_shutdown),
        cmocka_unit_test(busy_port_exits_1_naming_it),
        cmocka_unit_test(qotd_and_discard),
        cmocka_unit_test(broadcast_relays_to_the_others),
        cmocka_unit_test(portforward_carries_100_mib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
