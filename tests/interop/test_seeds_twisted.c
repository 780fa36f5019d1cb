/* ctest: label=interop timeout=240 */
/* twirl's first examples against Twisted itself (python3-twisted, run with
 * /usr/bin/python3): Twisted's echo client against example_echo_server,
 * example_echo_client against Twisted's echo server, and both broadcast
 * clients — Twisted's and example_broadcast_client — against each other's
 * server, printing their factory and protocol hooks in the same format so
 * the orders can be compared line for line. The Python peers are the
 * tests/interop/twisted_*.py scripts. Skipped when Twisted is missing. */
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
#include "tt_pool.h"

/* Seconds any expected event may take (Python starts slowly). */
#define WAIT 20.0

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* ------------------------------------------------------------ echo */

static void twisted_client_to_twirl_echo_server(void **state)
{
    if (!tt_pool_have_twisted())
        skip();
    tt_child *server = tt_pool_example("echo_server", "0", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", tt_pool_port(server, WAIT));

    tt_child *client =
        tt_pool_twisted("twisted_echo_client.py", "127.0.0.1", port, "hello from twisted", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf,
                        "Server said: hello from twisted\nConnection lost - goodbye!\n");
    /* 200 kB in one line: many reads and writes on both sides */
    client =
        tt_pool_twisted("twisted_echo_client.py", "127.0.0.1", port, "0123456789", "20000", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "Server said: 200000 bytes\nConnection lost - goodbye!\n");
    tt_pool_stop(server, WAIT);
}

static void twirl_client_to_twisted_echo_server(void **state)
{
    tt_child *server = tt_pool_twisted("twisted_echo_server.py", "127.0.0.1", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", tt_pool_port(server, WAIT));

    tt_child *client = tt_pool_example("echo_client", "127.0.0.1", port, NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "hello, world\nConnection lost - goodbye!\n");
    client = tt_pool_example("echo_client", "127.0.0.1", port, "hello from twirl", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "hello from twirl\nConnection lost - goodbye!\n");
    tt_pool_stop(server, WAIT);
}

/* ------------------------------------------------------------ broadcast */

/* A plain client, already welcomed, hears three hellos from the client
 * under test and answers the first; the client under test then leaves and
 * must have printed exactly this. */
static void check_hello_client(tt_child *client, int listener, const char *name, uint16_t port,
                               const char *welcome_line)
{
    char prefix[64], hi[64];
    snprintf(prefix, sizeof prefix, "hello, I'm %s ", name);
    snprintf(hi, sizeof hi, "hi %s\n", name);
    for (int i = 0; i < 3; i++) {
        const char *hello = tt_recv_line(listener, WAIT);
        if (strncmp(hello, prefix, strlen(prefix)) != 0 ||
            strlen(hello) != strlen(prefix) + 19 + 1) /* "YYYY-MM-DD HH:MM:SS\n" */
            fail_msg("hello %d: \"%s\"", i + 1, hello);
        if (i == 0)
            send_str(listener, hi);
    }
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    char want[1024];
    snprintf(want, sizeof want,
             "started_connecting: to 127.0.0.1:%u\n"
             "build_protocol: %s says hello\n"
             "connection_made: connected to the server\n"
             "data_received: %s\n"
             "data_received: hi %s\n"
             "connection_lost: disconnected from the server\n"
             "client_connection_lost: Connection was closed cleanly.\n",
             port, name, welcome_line, name);
    assert_string_equal(client->buf, want);
}

/* Twisted's client and twirl's against twirl's server: the same hooks in
 * the same order, down to the text. */
static void both_clients_same_hook_order(void **state)
{
    if (!tt_pool_have_twisted())
        skip();
    tt_child *server = tt_pool_example("broadcast_server", "0", NULL);
    uint16_t port = tt_pool_port(server, WAIT);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int listener = tt_pool_connect(port);
    char buf[64];
    bool eof;
    const char *welcome1 = "Welcome to twirl world, you are client number 1!\n";
    assert_int_equal(tt_recv_upto(listener, buf, strlen(welcome1), WAIT, &eof), strlen(welcome1));
    assert_memory_equal(buf, welcome1, strlen(welcome1));

    tt_child *py =
        tt_pool_twisted("twisted_spread_client.py", "0.3", "3", "tom", "127.0.0.1", portstr, NULL);
    check_hello_client(py, listener, "tom", port,
                       "Welcome to twirl world, you are client number 2!");
    tt_child *c = tt_pool_example("broadcast_client", "--interval", "0.3", "--count", "3", "bob",
                                  "127.0.0.1", portstr, NULL);
    check_hello_client(c, listener, "bob", port,
                       "Welcome to twirl world, you are client number 3!");
    close(listener);
    tt_pool_stop(server, WAIT);
}

/* twirl's client against Twisted's server, which then disconnects the
 * plain client on "close". */
static void twirl_client_to_twisted_spreader(void **state)
{
    tt_child *server = tt_pool_twisted("twisted_spreader.py", "127.0.0.1", NULL);
    uint16_t port = tt_pool_port(server, WAIT);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int listener = tt_pool_connect(port);
    const char *line = tt_recv_line(listener, WAIT);
    assert_string_equal(line, "Welcome to Twisted world, you are client number 1!\n");

    tt_child *c = tt_pool_example("broadcast_client", "--interval", "0.3", "--count", "3", "bob",
                                  "127.0.0.1", portstr, NULL);
    check_hello_client(c, listener, "bob", port,
                       "Welcome to Twisted world, you are client number 2!");
    send_str(listener, "close");
    char byte;
    bool eof;
    assert_int_equal(tt_recv_upto(listener, &byte, 1, WAIT, &eof), 0);
    assert_true(eof);
    close(listener);
    tt_pool_stop(server, WAIT);
}

/* ------------------------------------------------------------ harness */

static int setup(void **state)
{
    alarm(120); /* a last resort: every wait has its own deadline */
    return 0;
}

static int teardown(void **state)
{
    alarm(0);
    tt_pool_kill_all();
    return 0;
}

int main(void)
{
    tt_pool_have_twisted(); /* says so now when the tests will skip */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(twisted_client_to_twirl_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(twirl_client_to_twisted_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(both_clients_same_hook_order, setup, teardown),
        cmocka_unit_test_setup_teardown(twirl_client_to_twisted_spreader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
