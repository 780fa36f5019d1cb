/* ctest: label=integration timeout=120 */
/* The coroutine examples (examples/coro/), run as users run them: the echo
 * server started as a child process, its port read back from its stdout,
 * talked to with plain sockets and with the coroutine client; both must end
 * with the right status, and the server must stop promptly on SIGTERM even
 * with a client still connected. Every wait has a deadline.
 *
 * $TWIRL_CHILD_WRAPPER, when set, prefixes every example's command line
 * (e.g. "valgrind -q --leak-check=full --error-exitcode=99"). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
#include "tt_pool.h"

/* Seconds any single expected event may take (generous: valgrind). */
#define WAIT 10.0

static uint16_t listening_port(tt_child *server)
{
    const char *line = tt_child_line(server, WAIT);
    assert_non_null(line);
    const char *at = strstr(line, "coro echo server listening on port ");
    if (!at)
        fail_msg("no port in \"%s\"", line);
    unsigned long port = strtoul(strrchr(line, ' ') + 1, NULL, 10);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

static void coro_echo_server_and_client(void **state)
{
    tt_child *server = tt_pool_example("coro_echo_server", "0", NULL);
    uint16_t port = listening_port(server);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);

    /* A plain socket: 1 MB in, the same 1 MB back, while the server's
     * writes wait for us to read. */
    int fd = tt_pool_connect(port);
    enum { BIG = 1024 * 1024 };
    char *big = malloc(BIG), *back = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    size_t sent = 0, got = 0;
    double deadline = tt_now() + WAIT;
    while (got < BIG && tt_now() < deadline) {
        if (sent < BIG) {
            ssize_t n = send(fd, big + sent, BIG - sent < 65536 ? BIG - sent : 65536,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
        }
        bool eof;
        got += tt_recv_upto(fd, back + got, BIG - got < 65536 ? BIG - got : 65536, 0.01, &eof);
        assert_false(eof);
    }
    assert_int_equal(got, BIG);
    assert_memory_equal(big, back, BIG);
    free(big);
    free(back);

    /* The coroutine client, with the default line and with three of ours. */
    tt_child *client = tt_pool_example("coro_client", "127.0.0.1", portstr, NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "Server said: hello, world\nConnection closed - goodbye!\n");
    client =
        tt_pool_example("coro_client", "127.0.0.1", portstr, "one", "two words", "three", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "Server said: one\nServer said: two words\n"
                                     "Server said: three\nConnection closed - goodbye!\n");

    /* Stopped with the plain socket still connected: it is closed. */
    tt_pool_stop(server, WAIT);
    assert_string_equal(tt_child_rest(server, 0), "");
    char c;
    bool eof;
    assert_int_equal(tt_recv_upto(fd, &c, 1, WAIT, &eof), 0);
    assert_true(eof);
    close(fd);

    /* Nobody listening: the client says so and exits 1. */
    snprintf(portstr, sizeof portstr, "%u", tt_dead_port());
    client = tt_pool_example("coro_client", "127.0.0.1", portstr, NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 1);
    assert_true(strncmp(client->buf, "Connection failed - goodbye! (", 30) == 0);
    assert_non_null(strstr(client->buf, "refused"));
}

/* The server goes away in the middle of the client's conversation. */
static void coro_client_sees_the_server_go(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 1), 0);
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", ntohs(a.sin_port));
    tt_child *client =
        tt_pool_example("coro_client", "127.0.0.1", portstr, "first", "second", NULL);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    const char *line = tt_recv_line(fd, WAIT);
    assert_string_equal(line, "first\n");
    assert_int_equal(send(fd, "first\n", 6, MSG_NOSIGNAL), 6);
    line = tt_recv_line(fd, WAIT);
    assert_string_equal(line, "second\n");
    assert_int_equal(send(fd, "sec", 3, MSG_NOSIGNAL), 3); /* half a reply, then gone */
    close(fd);
    close(lfd);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 1);
    assert_true(strncmp(client->buf,
                        "Server said: first\nConnection lost - goodbye! (read_until: the "
                        "connection was closed first; 3 byte(s) stay buffered)\n",
                        200) == 0);
}

static int teardown(void **state)
{
    tt_pool_kill_all();
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(coro_echo_server_and_client, teardown),
        cmocka_unit_test_teardown(coro_client_sees_the_server_go, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
