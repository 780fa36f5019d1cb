/* ctest: label=integration timeout=120 */
/* The LineReceiver examples as users run them: the chat server with names,
 * SimpleLogger as a LineReceiver, and the answering bot. Each is started as
 * a child process (on the backend $TWIRL_REACTOR names), its port read from
 * its stdout, talked to with plain sockets, and stopped with SIGTERM; it
 * must exit with status 0. $TWIRL_CHILD_WRAPPER, when set, prefixes each
 * command line (e.g. "valgrind -q --leak-check=full --error-exitcode=99"). */
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

#define WAIT  10.0 /* seconds any expected event may take (valgrind) */
#define QUIET 0.2  /* seconds of quiet that count as "nothing was sent" */
#define STOP  15.0 /* seconds a server may take to exit after SIGTERM */

static tt_child server_slot;

static tt_child *start_server(const char *name)
{
    char bin[64];
    snprintf(bin, sizeof bin, "example_%s", name);
    int rc = tt_child_start_bin(&server_slot, bin, (const char *const[]){ "0", NULL });
    if (rc == -ENOENT)
        fail_msg("%s is not built", tt_bin(bin));
    if (rc < 0)
        fail_msg("cannot start %s: %s", bin, strerror(-rc));
    return &server_slot;
}

static uint16_t listening_port(tt_child *server)
{
    const char *line = tt_child_line(server, WAIT);
    if (!line)
        fail_msg("the server printed nothing");
    const char *at = strstr(line, "listening on port ");
    if (!at)
        fail_msg("no port in \"%s\"", line);
    unsigned long port = strtoul(at + strlen("listening on port "), NULL, 10);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

static void stop_server(tt_child *c)
{
    int status = tt_child_stop(c, SIGTERM, STOP, NULL);
    if (status == -1)
        fail_msg("the server ignored SIGTERM for %.0f s", STOP);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int teardown(void **state)
{
    tt_child_kill(&server_slot);
    return 0;
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

/* The next bytes on fd are exactly want. */
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

static void expect_line(tt_child *c, const char *want)
{
    const char *line = tt_child_line(c, WAIT);
    if (!line)
        fail_msg("expected the line \"%s\"; got nothing (pending: \"%s\")", want, c->buf);
    assert_string_equal(line, want);
}

/* ------------------------------------------------------------ chat */

static int join(uint16_t port, const char *name)
{
    int fd = connect_to(port);
    expect_bytes(fd, "What's your name?\r\n");
    if (name) {
        char line[128], welcome[160];
        snprintf(line, sizeof line, "%s\r\n", name);
        snprintf(welcome, sizeof welcome, "Welcome, %s!\r\n", name);
        send_str(fd, line);
        expect_bytes(fd, welcome);
    }
    return fd;
}

static void chat_with_names(void **state)
{
    tt_child *server = start_server("chat_server");
    uint16_t port = listening_port(server);

    int alice = join(port, "alice");
    int bob = join(port, NULL);
    send_str(bob, "alice\r\n");
    expect_bytes(bob, "Name taken, please choose another.\r\n");
    send_str(bob, "bob\r\n");
    expect_bytes(bob, "Welcome, bob!\r\n");
    int carol = join(port, NULL); /* no name yet: hears nothing */

    send_str(alice, "hi all\r\n");
    expect_bytes(bob, "<alice> hi all\r\n");
    expect_silence(alice);
    expect_silence(carol);

    /* A line in pieces, and two lines in one piece. */
    send_str(bob, "hel");
    expect_silence(alice);
    send_str(bob, "lo\r\nhow are\r\n");
    expect_bytes(alice, "<bob> hello\r\n<bob> how are\r\n");
    expect_silence(bob);

    /* A name is free again once its client left (and the server noticed:
     * until then the name is taken, and carol asks again). */
    close(alice);
    double deadline = tt_now() + WAIT;
    for (;;) {
        send_str(carol, "alice\r\n");
        const char *reply = tt_recv_line(carol, WAIT);
        if (strcmp(reply, "Welcome, alice!\r\n") == 0)
            break;
        assert_string_equal(reply, "Name taken, please choose another.\r\n");
        assert_true(tt_now() < deadline);
        usleep(10000);
    }
    send_str(bob, "is that you?\r\n");
    expect_bytes(carol, "<bob> is that you?\r\n");
    send_str(carol, "\r\n"); /* an empty line is a message too */
    expect_bytes(bob, "<alice> \r\n");

    /* Stopped with clients connected: they are dropped. */
    stop_server(server);
    assert_string_equal(tt_child_rest(server, 0), "");
    expect_eof(bob);
    expect_eof(carol);
    close(bob);
    close(carol);
}

/* ------------------------------------------------------------ SimpleLogger */

static void line_logger_lines(void **state)
{
    tt_child *server = start_server("line_logger");
    uint16_t port = listening_port(server);
    int a = connect_to(port);
    char want[128];
    snprintf(want, sizeof want, "Got connection from 127.0.0.1:%u", tt_local_port(a));
    expect_line(server, want);
    send_str(a, "first line\r\nsecond");
    expect_line(server, "first line");
    send_str(a, " half\r");
    send_str(a, "\n\r\n"); /* the delimiter split, then an empty line */
    expect_line(server, "second half");
    expect_line(server, "");
    send_str(a, "a bare\nLF is data\r\n");
    expect_line(server, "a bare");
    expect_line(server, "LF is data");
    send_str(a, "never ended"); /* not a line: not printed */
    snprintf(want, sizeof want, "127.0.0.1:%u disconnected", tt_local_port(a));
    close(a);
    expect_line(server, want);
    stop_server(server);
    assert_string_equal(tt_child_rest(server, 0), "");
}

/* ------------------------------------------------------------ answer bot */

static void answer_bot_answers(void **state)
{
    tt_child *server = start_server("answer_bot");
    uint16_t port = listening_port(server);
    int fd = connect_to(port);
    send_str(fd, "How are you?\r\n");
    expect_bytes(fd, "Fine\r\n");
    send_str(fd, "What is this?\r\n");
    expect_bytes(fd, "I don't know what you mean\r\n");
    send_str(fd, "How are ");
    expect_silence(fd);
    send_str(fd, "you?\r\nhow are you?\r\nHow are you?\r\n");
    expect_bytes(fd, "Fine\r\nI don't know what you mean\r\nFine\r\n");
    send_str(fd, "How are you?\n"); /* LF alone does not end a line */
    expect_silence(fd);
    send_str(fd, "\r\n");
    expect_bytes(fd, "I don't know what you mean\r\n");
    int other = connect_to(port); /* each client on its own */
    send_str(other, "How are you?\r\n");
    expect_bytes(other, "Fine\r\n");
    expect_silence(fd);
    close(other);
    close(fd);
    stop_server(server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(chat_with_names, teardown),
        cmocka_unit_test_teardown(line_logger_lines, teardown),
        cmocka_unit_test_teardown(answer_bot_answers, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
