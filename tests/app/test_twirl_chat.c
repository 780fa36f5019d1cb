/* ctest: label=integration timeout=120 backends=once */
/* `twirl chat` as a user runs it: help and usage errors, the chat with
 * names, the --max-clients and --idle-timeout policies, and a graceful
 * shutdown on SIGTERM (exit status 0). $TWIRL_CHILD_WRAPPER, when set,
 * prefixes the command (e.g. valgrind). */
#include <errno.h>
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

#define WAIT  10.0
#define QUIET 0.2

static tt_child child;

/* Runs `twirl ARGS` through sh, so that its log (stderr) is in the pipe. */
static void start_twirl(const char *args)
{
    char cmd[1024];
    const char *wrap = getenv("TWIRL_CHILD_WRAPPER");
    snprintf(cmd, sizeof cmd, "exec %s '%s' %s 2>&1", wrap ? wrap : "", tt_bin("twirl"), args);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    assert_int_equal(tt_child_start(&child, argv), 0);
}

static int teardown(void **state)
{
    tt_child_kill(&child);
    return 0;
}

/* Reads log lines until "chat listening on HOST:PORT"; returns PORT. */
static uint16_t listening_port(void)
{
    const char *line;
    while ((line = tt_child_line(&child, WAIT)) != NULL) {
        const char *at = strstr(line, "chat listening on ");
        if (at)
            return (uint16_t)atoi(strrchr(at, ':') + 1);
    }
    fail_msg("twirl chat never said where it listens");
    return 0;
}

static void stop_twirl(void)
{
    int st = tt_child_stop(&child, SIGTERM, WAIT, NULL);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static int run_status(const char *args, char *out, size_t outlen)
{
    start_twirl(args);
    snprintf(out, outlen, "%s", tt_child_rest(&child, WAIT));
    int st = tt_child_wait(&child, WAIT);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int connect_to(uint16_t port)
{
    int fd = tt_connect_loopback(port);
    if (fd < 0)
        fail_msg("connect to port %u: %s", port, strerror(-fd));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void expect_bytes(int fd, const char *want)
{
    size_t len = strlen(want);
    char buf[4096];
    bool eof;
    assert_true(len < sizeof buf);
    size_t got = tt_recv_upto(fd, buf, len, WAIT, &eof);
    buf[got] = 0;
    if (got != len || memcmp(buf, want, len) != 0)
        fail_msg("expected \"%s\", got \"%s\"%s", want, buf, eof ? " and EOF" : "");
}

static void expect_silence(int fd)
{
    char c;
    bool eof;
    assert_int_equal(tt_recv_upto(fd, &c, 1, QUIET, &eof), 0);
    assert_false(eof);
}

static void expect_eof(int fd)
{
    char c;
    bool eof;
    assert_int_equal(tt_recv_upto(fd, &c, 1, WAIT, &eof), 0);
    assert_true(eof);
}

static int join(uint16_t port, const char *name)
{
    int fd = connect_to(port);
    expect_bytes(fd, "What's your name?\r\n");
    char line[128], welcome[160];
    snprintf(line, sizeof line, "%s\r\n", name);
    snprintf(welcome, sizeof welcome, "Welcome, %s!\r\n", name);
    send_str(fd, line);
    expect_bytes(fd, welcome);
    return fd;
}

/* ------------------------------------------------------------ tests */

static void help_and_usage_errors(void **state)
{
    char out[8192];
    assert_int_equal(run_status("--help", out, sizeof out), 0);
    assert_non_null(strstr(out, "chat "));
    assert_int_equal(run_status("chat --help", out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: twirl chat"));
    assert_non_null(strstr(out, "--idle-timeout SECONDS"));
    assert_non_null(strstr(out, "--max-clients N"));
    assert_non_null(strstr(out, "tcp:8123"));

    static const struct {
        const char *args, *says;
    } cases[] = {
        { "chat --max-clients 0", "--max-clients: expected a whole number from 1" },
        { "chat --max-clients many", "--max-clients: expected a whole number" },
        { "chat --idle-timeout soon", "--idle-timeout: expected a non-negative number" },
        { "chat --idle-timeout -1", "--idle-timeout: expected a non-negative number" },
        { "chat --idle-timeout", "--idle-timeout needs a value" },
        { "chat --nickname x", "unknown option '--nickname'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_status(cases[i].args, out, sizeof out);
        if (st != 2 || !strstr(out, cases[i].says))
            fail_msg("'twirl %s' exited %d saying '%s'", cases[i].args, st, out);
    }
}

static void chat_with_names(void **state)
{
    start_twirl("chat --listen tcp:0:interface=127.0.0.1");
    uint16_t port = listening_port();
    int ann = join(port, "ann");
    int ben = connect_to(port);
    expect_bytes(ben, "What's your name?\r\n");
    send_str(ben, "ann\r\n");
    expect_bytes(ben, "Name taken, please choose another.\r\n");
    send_str(ben, "b");
    send_str(ben, "en\r\nhi ann\r\n"); /* the name and a message in one read */
    expect_bytes(ben, "Welcome, ben!\r\n");
    expect_bytes(ann, "<ben> hi ann\r\n");
    int cid = connect_to(port); /* unnamed: hears nothing */
    expect_bytes(cid, "What's your name?\r\n");
    send_str(ann, "hello ben\r\n");
    expect_bytes(ben, "<ann> hello ben\r\n");
    expect_silence(ann);
    expect_silence(cid);

    /* ann leaves: her name is free again (once the server noticed). */
    close(ann);
    double deadline = tt_now() + WAIT;
    for (;;) {
        send_str(cid, "ann\r\n");
        const char *reply = tt_recv_line(cid, WAIT);
        if (strcmp(reply, "Welcome, ann!\r\n") == 0)
            break;
        assert_string_equal(reply, "Name taken, please choose another.\r\n");
        assert_true(tt_now() < deadline);
        usleep(10000);
    }
    send_str(ben, "welcome back\r\n");
    expect_bytes(cid, "<ben> welcome back\r\n");

    /* SIGTERM with clients connected: they are closed, exit status 0. */
    stop_twirl();
    expect_eof(ben);
    expect_eof(cid);
    close(ben);
    close(cid);
}

static void max_clients_and_idle_timeout(void **state)
{
    start_twirl("chat --listen tcp:0:interface=127.0.0.1 --max-clients 2 --idle-timeout 1");
    uint16_t port = listening_port();
    int a = join(port, "a");
    int b = join(port, "b");
    int c = connect_to(port);
    expect_bytes(c, "The chat is full, try again later.\r\n");
    expect_eof(c);
    close(c);
    send_str(a, "still chatting\r\n");
    expect_bytes(b, "<a> still chatting\r\n");

    /* Quiet for a second: both are closed, and there is room again. */
    expect_eof(a);
    expect_eof(b);
    close(a);
    close(b);
    double deadline = tt_now() + WAIT;
    for (;;) {
        int d = connect_to(port);
        const char *first = tt_recv_line(d, WAIT);
        if (strcmp(first, "What's your name?\r\n") == 0) {
            close(d);
            break;
        }
        assert_string_equal(first, "The chat is full, try again later.\r\n");
        close(d);
        assert_true(tt_now() < deadline);
        usleep(10000);
    }
    stop_twirl();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(help_and_usage_errors, teardown),
        cmocka_unit_test_teardown(chat_with_names, teardown),
        cmocka_unit_test_teardown(max_clients_and_idle_timeout, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
