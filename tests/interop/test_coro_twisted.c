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
#include "tt_pool.h"

/* Seconds any expected event may take (Python starts slowly). */
#define WAIT 20.0

static void twisted_client_to_coro_echo_server(void **state)
{
    if (!tt_pool_have_twisted())
        skip();
    tt_child *server = tt_pool_example("coro_echo_server", "0", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", tt_pool_port(server, WAIT));
    tt_child *client =
        tt_pool_twisted("twisted_echo_client.py", "127.0.0.1", port, "hello from twisted", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf,
                        "Server said: hello from twisted\nConnection lost - goodbye!\n");
    /* 200 kB in one line: the server's writes wait for Twisted to read. */
    client =
        tt_pool_twisted("twisted_echo_client.py", "127.0.0.1", port, "0123456789", "20000", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "Server said: 200000 bytes\nConnection lost - goodbye!\n");
    tt_pool_stop(server, WAIT);
}

static void coro_client_to_twisted_echo_server(void **state)
{
    if (!tt_pool_have_twisted())
        skip();
    tt_child *server = tt_pool_twisted("twisted_echo_server.py", "127.0.0.1", NULL);
    char port[8];
    snprintf(port, sizeof port, "%u", tt_pool_port(server, WAIT));
    tt_child *client = tt_pool_example("coro_client", "127.0.0.1", port, "hello from twirl",
                                       "a second line", "", "the last", NULL);
    assert_int_equal(tt_pool_exit_status(client, WAIT), 0);
    assert_string_equal(client->buf, "Server said: hello from twirl\nServer said: a second line\n"
                                     "Server said: \nServer said: the last\n"
                                     "Connection closed - goodbye!\n");
    tt_pool_stop(server, WAIT);
}

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
        cmocka_unit_test_setup_teardown(twisted_client_to_coro_echo_server, setup, teardown),
        cmocka_unit_test_setup_teardown(coro_client_to_twisted_echo_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
