/* ctest: label=integration timeout=180 */
/* The example programs, run as users run them: each is started as a child
 * process (on the backend $TWIRL_REACTOR names), its port read back from its
 * stdout, and talked to with plain sockets or with the example clients.
 * Every wait has a deadline; servers are stopped with SIGTERM and must exit
 * with status 0, promptly.
 *
 * $TWIRL_CHILD_WRAPPER, when set, prefixes every example's command line:
 *   TWIRL_CHILD_WRAPPER="valgrind -q --leak-check=full --error-exitcode=99" */
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

/* Seconds any single expected event may take (generous: valgrind). */
#define WAIT 10.0
/* Seconds within which a server must exit after SIGTERM. */
#define STOP_BOUND 5.0
/* Seconds of quiet that count as "nothing was sent". */
#define QUIET 0.2

static double stop_bound = STOP_BOUND;
static double slowest_stop;

/* ------------------------------------------------------------ children */

enum { MAX_CHILDREN = 8 };
static tt_child children[MAX_CHILDREN];
static bool in_use[MAX_CHILDREN];

/* Starts the program example_NAME with the arguments that follow. */
#define start_example(name, ...) start_bin("example_" name, (const char *const[]){ __VA_ARGS__ })

static tt_child *start_bin(const char *name, const char *const args[])
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!in_use[i]) {
            int rc = tt_child_start_bin(&children[i], name, args);
            if (rc == -ENOENT)
                fail_msg("%s is not built (build the example_* targets)", tt_bin(name));
            if (rc < 0)
                fail_msg("cannot start %s: %s", name, strerror(-rc));
            in_use[i] = true;
            return &children[i];
        }
    }
    fail_msg("too many children");
    return NULL;
}

static void release(tt_child *c)
{
    tt_child_kill(c);
    in_use[c - children] = false;
}

/* Waits for an example client to finish; returns its exit status. */
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

/* After sig (SIGTERM or SIGINT) the server must exit 0 within the bound. */
static void stop_server_with(tt_child *c, int sig)
{
    double took;
    int status = tt_child_stop(c, sig, stop_bound + WAIT, &took);
    in_use[c - children] = false;
    if (status == -1)
        fail_msg("the server ignored signal %d for %.0f s", sig, stop_bound + WAIT);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    if (took > slowest_stop)
        slowest_stop = took;
    if (took > stop_bound)
        fail_msg("the server took %.3f s to stop (bound %.1f s)", took, stop_bound);
}

static void stop_server(tt_child *c)
{
    stop_server_with(c, SIGTERM);
}

static void expect_line(tt_child *c, const char *want)
{
    const char *line = tt_child_line(c, WAIT);
    if (!line)
        fail_msg("expected the line \"%s\"; got nothing (pending: \"%s\")", want, c->buf);
    assert_string_equal(line, want);
}

static void expect_linef(tt_child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_linef(tt_child *c, const char *fmt, ...)
{
    char want[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    expect_line(c, want);
}

static uint16_t listening_port(tt_child *server)
{
    const char *line = tt_child_line(server, WAIT);
    assert_non_null(line);
    const char *at = strstr(line, "listening on port ");
    if (!at)
        fail_msg("no port in \"%s\"", line);
    unsigned long port = strtoul(at + strlen("listening on port "), NULL, 10);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

/* ------------------------------------------------------------ sockets */

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

/* Nothing arrives for a while (and the connection stays open). */
static void expect_silence(int fd)
{
    char c;
    bool eof;
    size_t got = tt_recv_upto(fd, &c, 1, QUIET, &eof);
    assert_int_equal(got, 0);
    assert_false(eof);
}

/* The peer closes without sending anything more. */
static void expect_eof(int fd)
{
    char c;
    bool eof;
    size_t got = tt_recv_upto(fd, &c, 1, WAIT, &eof);
    assert_int_equal(got, 0);
    assert_true(eof);
}

/* ------------------------------------------------------------ echo */

static void echo_server_and_client(void **state)
{
    tt_child *server = start_example("echo_server", "0", NULL);
    uint16_t port = listening_port(server);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);

    /* A plain socket: what is sent comes back, byte for byte. */
    int fd = connect_to(port);
    send_str(fd, "hello\n");
    expect_bytes(fd, "hello\n");
    enum { BIG = 256 * 1024 };
    char *big = malloc(BIG), *back = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(send(fd, big, BIG, MSG_NOSIGNAL), BIG);
    bool eof;
    assert_int_equal(tt_recv_upto(fd, back, BIG, WAIT, &eof), BIG);
    assert_memory_equal(big, back, BIG);
    free(big);
    free(back);
    close(fd);

    /* The example client: default line, then one of ours. */
    tt_child *client = start_example("echo_client", "127.0.0.1", portstr, NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "hello, world\nConnection lost - goodbye!\n");
    client = start_example("echo_client", "127.0.0.1", portstr, "twirl says hi", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "twirl says hi\nConnection lost - goodbye!\n");
    stop_server(server);
    assert_string_equal(tt_child_rest(server, 0), "");

    /* Nobody listening: client_connection_failed stops the reactor too. */
    snprintf(portstr, sizeof portstr, "%u", tt_dead_port());
    client = start_example("echo_client", "127.0.0.1", portstr, NULL);
    assert_int_equal(exit_status(client), 1);
    assert_true(strncmp(client->buf, "Connection failed - goodbye! (", 30) == 0);
    assert_non_null(strstr(client->buf, "refused"));
}

/* ------------------------------------------------------------ QOTD */

static char *read_to_eof(uint16_t port)
{
    static char buf[512];
    int fd = connect_to(port);
    bool eof;
    size_t n = tt_recv_upto(fd, buf, sizeof buf - 1, WAIT, &eof);
    assert_true(eof);
    buf[n] = 0;
    close(fd);
    return buf;
}

static void qotd_style(const char *style, int stop_signal)
{
    tt_child *server =
        start_example("qotd_server", "--style", style, "0", "Simple is better than complex.", NULL);
    char want[64];
    snprintf(want, sizeof want, "qotd server (%s style) listening on port ", style);
    const char *line = tt_child_line(server, WAIT);
    assert_non_null(line);
    assert_true(strncmp(line, want, strlen(want)) == 0);
    uint16_t port = (uint16_t)atoi(line + strlen(want));
    for (int i = 0; i < 3; i++) /* every client gets the same quote, whole */
        assert_string_equal(read_to_eof(port), "Simple is better than complex.\r\n");
    stop_server_with(server, stop_signal);
}

static void qotd_attribute_style(void **state)
{
    qotd_style("attr", SIGTERM);
}

static void qotd_build_protocol_style(void **state)
{
    qotd_style("build", SIGINT); /* Ctrl-C */
}

static void qotd_defaults_and_bad_style(void **state)
{
    tt_child *server = start_example("qotd_server", "0", NULL); /* attr style, default quote */
    uint16_t port = listening_port(server);
    assert_string_equal(read_to_eof(port), "An apple a day keeps the doctor away\r\n");
    stop_server(server);

    tt_child *bad = start_example("qotd_server", "--style", "nope", "0", NULL);
    assert_int_equal(exit_status(bad), 2);
    assert_string_equal(bad->buf, "");
}

/* ------------------------------------------------------------ SimpleLogger */

static void simple_logger_lines(void **state)
{
    tt_child *server = start_example("simple_logger", "0", NULL);
    uint16_t port = listening_port(server);

    int a = connect_to(port);
    uint16_t ap = tt_local_port(a);
    expect_linef(server, "Got connection from 127.0.0.1:%u", ap);
    send_str(a, "first chunk");
    expect_line(server, "first chunk");
    send_str(a, "second\n"); /* its own newline is not doubled */
    expect_line(server, "second");

    int b = connect_to(port);
    uint16_t bp = tt_local_port(b);
    expect_linef(server, "Got connection from 127.0.0.1:%u", bp);
    send_str(b, "from b");
    expect_line(server, "from b");
    close(b);
    expect_linef(server, "127.0.0.1:%u disconnected", bp);

    send_str(a, "still here");
    expect_line(server, "still here");
    close(a);
    expect_linef(server, "127.0.0.1:%u disconnected", ap);

    stop_server(server);
    assert_string_equal(tt_child_rest(server, 0), "");
}

/* ------------------------------------------------------------ broadcast */

static const char *welcome(int n)
{
    static char text[96];
    snprintf(text, sizeof text, "Welcome to twirl world, you are client number %d!\n", n);
    return text;
}

static int join(tt_child *server, uint16_t port, int n)
{
    int fd = connect_to(port);
    expect_bytes(fd, welcome(n));
    expect_linef(server, "new connection %d from 127.0.0.1:%u", n, tt_local_port(fd));
    return fd;
}

static void broadcast_three_clients(void **state)
{
    tt_child *server = start_example("broadcast_server", "0", NULL);
    uint16_t port = listening_port(server);
    int a = join(server, port, 1);
    int b = join(server, port, 2);
    int c = join(server, port, 3);
    uint16_t ap = tt_local_port(a), bp = tt_local_port(b), cp = tt_local_port(c);

    /* Relayed to the two others, never back to the sender. */
    send_str(a, "from A\n");
    expect_linef(server, "spreading message from 127.0.0.1:%u: %s", ap, "from A");
    expect_bytes(b, "from A\n");
    expect_bytes(c, "from A\n");
    expect_silence(a);

    /* "close" disconnects the sender only; it is not relayed. */
    send_str(c, "close");
    expect_eof(c);
    expect_linef(server, "127.0.0.1:%u closed", cp);
    expect_linef(server, "lost connection from 127.0.0.1:%u", cp);
    expect_silence(a);
    expect_silence(b);

    send_str(b, "from B\n");
    expect_linef(server, "spreading message from 127.0.0.1:%u: %s", bp, "from B");
    expect_bytes(a, "from B\n");
    expect_silence(b);

    /* B leaves on its own; numbers are never reused. */
    close(b);
    expect_linef(server, "lost connection from 127.0.0.1:%u", bp);
    int d = join(server, port, 4);
    uint16_t dp = tt_local_port(d);

    /* Only the clients still here receive: no write reaches a departed one
     * (under ASan/valgrind that would be a use after free in the server). */
    send_str(a, "after B and C left\n");
    expect_linef(server, "spreading message from 127.0.0.1:%u: %s", ap, "after B and C left");
    expect_bytes(d, "after B and C left\n");
    expect_silence(a);

    /* The telnet form of "close". */
    send_str(d, "close\r\n");
    expect_eof(d);
    expect_linef(server, "127.0.0.1:%u closed", dp);
    expect_linef(server, "lost connection from 127.0.0.1:%u", dp);
    close(c);
    close(d);

    /* Stopped with a client still connected: it is dropped and logged. */
    stop_server(server);
    char want[96];
    snprintf(want, sizeof want, "lost connection from 127.0.0.1:%u\n", ap);
    assert_string_equal(tt_child_rest(server, 0), want);
    expect_eof(a);
    close(a);
}

static void broadcast_client_hooks(void **state)
{
    tt_child *server = start_example("broadcast_server", "0", NULL);
    uint16_t port = listening_port(server);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int a = join(server, port, 1);

    tt_child *client = start_example("broadcast_client", "--interval", "0.3", "--count", "3", "bob",
                                     "127.0.0.1", portstr, NULL);
    for (int i = 0; i < 3; i++) {
        const char *hello = tt_recv_line(a, WAIT);
        /* "hello, I'm bob YYYY-MM-DD HH:MM:SS\n" */
        if (strncmp(hello, "hello, I'm bob ", 15) != 0 || strlen(hello) != 15 + 19 + 1)
            fail_msg("hello %d: \"%s\"", i + 1, hello);
        if (i == 0)
            send_str(a, "hi bob\n");
    }
    assert_int_equal(exit_status(client), 0);
    char want[1024];
    snprintf(want, sizeof want,
             "started_connecting: to 127.0.0.1:%u\n"
             "build_protocol: bob says hello\n"
             "connection_made: connected to the server\n"
             "data_received: Welcome to twirl world, you are client number 2!\n"
             "data_received: hi bob\n"
             "connection_lost: disconnected from the server\n"
             "client_connection_lost: Connection was closed cleanly.\n",
             port);
    assert_string_equal(client->buf, want);
    expect_silence(a);
    close(a);
    stop_server(server);

    /* Nobody listening: the factory opens and closes, no protocol is built. */
    snprintf(portstr, sizeof portstr, "%u", tt_dead_port());
    client =
        start_example("broadcast_client", "--interval", "0.1", "bob", "127.0.0.1", portstr, NULL);
    assert_int_equal(exit_status(client), 1);
    char first[64];
    snprintf(first, sizeof first, "started_connecting: to 127.0.0.1:%s\n", portstr);
    assert_true(strncmp(client->buf, first, strlen(first)) == 0);
    const char *second = client->buf + strlen(first);
    assert_true(strncmp(second, "client_connection_failed: ", 26) == 0);
    assert_non_null(strstr(second, "refused"));
    assert_ptr_equal(strchr(second, '\n'), client->buf + strlen(client->buf) - 1); /* last */

    tt_child *bad = start_example("broadcast_client", "--interval", "-1", NULL);
    assert_int_equal(exit_status(bad), 2);
}

/* ------------------------------------------------------------ harness */

static int setup(void **state)
{
    alarm(60); /* a last resort: every wait has its own deadline */
    return 0;
}

static int teardown(void **state)
{
    alarm(0);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (in_use[i])
            release(&children[i]);
    return 0;
}

int main(void)
{
    const char *w = getenv("TWIRL_CHILD_WRAPPER");
    if (w && *w)
        stop_bound = 30.0; /* a leak check at exit takes a while */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(echo_server_and_client, setup, teardown),
        cmocka_unit_test_setup_teardown(qotd_attribute_style, setup, teardown),
        cmocka_unit_test_setup_teardown(qotd_build_protocol_style, setup, teardown),
        cmocka_unit_test_setup_teardown(qotd_defaults_and_bad_style, setup, teardown),
        cmocka_unit_test_setup_teardown(simple_logger_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_three_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(broadcast_client_hooks, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "# slowest stop after SIGTERM: %.3f s\n", slowest_stop);
    return failed;
}
