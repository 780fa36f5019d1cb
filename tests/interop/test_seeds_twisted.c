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

/* example_NAME with the arguments that follow. */
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
    if (!have_twisted)
        skip();
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
static uint16_t port_of(tt_child *server)
{
    const char *line = tt_child_line(server, WAIT);
    if (!line)
        fail_msg("the server printed no port");
    const char *digits = strrchr(line, ' ');
    assert_non_null(digits);
    unsigned long port = strtoul(digits + 1, NULL, 10);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
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

/* ------------------------------------------------------------ echo */

static void twisted_client_to_twirl_echo_server(void **state)
{
    if (!have_twisted)
        skip();
    tt_child *server = start_example("echo_server", "0", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", port_of(server));

    tt_child *client =
        start_twisted("twisted_echo_client.py", "127.0.0.1", port, "hello from twisted", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf,
                        "Server said: hello from twisted\nConnection lost - goodbye!\n");
    /* 200 kB in one line: many reads and writes on both sides */
    client =
        start_twisted("twisted_echo_client.py", "127.0.0.1", port, "0123456789", "20000", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "Server said: 200000 bytes\nConnection lost - goodbye!\n");
    stop_server(server);
}

static void twirl_client_to_twisted_echo_server(void **state)
{
    tt_child *server = start_twisted("twisted_echo_server.py", "127.0.0.1", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", port_of(server));

    tt_child *client = start_example("echo_client", "127.0.0.1", port, NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "hello, world\nConnection lost - goodbye!\n");
    client = start_example("echo_client", "127.0.0.1", port, "hello from twirl", NULL);
    assert_int_equal(exit_status(client), 0);
    assert_string_equal(client->buf, "hello from twirl\nConnection lost - goodbye!\n");
    stop_server(server);
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
    assert_int_equal(exit_status(client), 0);
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
    if (!have_twisted)
        skip();
    tt_child *server = start_example("broadcast_server", "0", NULL);
    uint16_t port = port_of(server);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int listener = connect_to(port);
    char buf[64];
    bool eof;
    const char *welcome1 = "Welcome to twirl world, you are client number 1!\n";
    assert_int_equal(tt_recv_upto(listener, buf, strlen(welcome1), WAIT, &eof), strlen(welcome1));
    assert_memory_equal(buf, welcome1, strlen(welcome1));

    tt_child *py =
        start_twisted("twisted_spread_client.py", "0.3", "3", "tom", "127.0.0.1", portstr, NULL);
    check_hello_client(py, listener, "tom", port,
                       "Welcome to twirl world, you are client number 2!");
    tt_child *c = start_example("broadcast_client", "--interval", "0.3", "--count", "3", "bob",
                                "127.0.0.1", portstr, NULL);
    check_hello_client(c, listener, "bob", port,
                       "Welcome to twirl world, you are client number 3!");
    close(listener);
    stop_server(server);
}

/* twirl's client against Twisted's server, which then disconnects the
 * plain client on "close". */
static void twirl_client_to_twisted_spreader(void **state)
{
    tt_child *server = start_twisted("twisted_spreader.py", "127.0.0.1", NULL);
    uint16_t port = port_of(server);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int listener = connect_to(port);
    const char *line = tt_recv_line(listener, WAIT);
    assert_string_equal(line, "Welcome to Twisted world, you are client number 1!\n");

    tt_child *c = start_example("broadcast_client", "--interval", "0.3", "--count", "3", "bob",
                                "127.0.0.1", portstr, NULL);
    check_hello_client(c, listener, "bob", port,
                       "Welcome to Twisted world, you are client number 2!");
    send_str(listener, "close");
    char byte;
    bool eof;
    assert_int_equal(tt_recv_upto(listener, &byte, 1, WAIT, &eof), 0);
    assert_true(eof);
    close(listener);
    stop_server(server);
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
        cmocka_unit_test_setup_teardown(twisted_client_to_twirl_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(twirl_client_to_twisted_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(both_clients_same_hook_order, setup, teardown),
        cmocka_unit_test_setup_teardown(twirl_client_to_twisted_spreader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
