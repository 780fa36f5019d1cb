/* ctest: label=unit timeout=60 backends=once */
/* The memory reactor (Twisted's MemoryReactor): listen and connect requests
 * are recorded, nothing touches the network. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/endpoint.h"
#include "twirl/testing.h"

typedef struct hooks {
    tw_factory base;
    int starts, stops, started, failed, failed_code;
} hooks;

static void h_start(tw_factory *f)
{
    ((hooks *)f)->starts++;
}
static void h_stop(tw_factory *f)
{
    ((hooks *)f)->stops++;
}
static void h_started(tw_factory *f, tw_connector *c)
{
    ((hooks *)f)->started++;
}
static void h_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    ((hooks *)f)->failed++;
    ((hooks *)f)->failed_code = tw_failure_code(reason);
}

static void greet(tw_protocol *p)
{
    tw_transport_write_str(p->transport, "hello\r\n");
}

static const tw_protocol_ops greeter = { .connection_made = greet };
static const tw_factory_ops hook_ops = { .start_factory = h_start,
                                         .stop_factory = h_stop,
                                         .started_connecting = h_started,
                                         .client_connection_failed = h_failed };

static void records_listens_without_sockets(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    int fds = tt_open_fds();
    tw_test_memory *m = tw_test_memory_install(r);
    assert_non_null(m);
    hooks h = { { &hook_ops, &greeter, NULL, 0 } };
    tw_port *p1, *p2;
    tw_listen_options lo = { .backlog = 7 };
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 8080, &lo, &h.base, &p1), 0);
    tw_server_endpoint *ep;
    char err[256];
    assert_int_equal(
        tw_server_endpoint_from_string(r, "tcp:9090:interface=::1", &ep, err, sizeof err), 0);
    assert_int_equal(tw_endpoint_listen(ep, &h.base, &p2), 0);
    tw_server_endpoint_free(ep);
    assert_int_equal(tt_open_fds(), fds); /* nothing opened */
    assert_int_equal(tw_test_memory_listens(m), 2);
    const tw_test_listen *l = tw_test_memory_listen(m, 0);
    assert_int_equal(tw_address_port(&l->address), 8080);
    assert_int_equal(l->options.backlog, 7);
    assert_ptr_equal(l->factory, &h.base);
    assert_ptr_equal(l->port, p1);
    assert_int_equal(tw_address_port(tw_port_address(p1)), 8080);
    char host[64];
    tw_address_host(&tw_test_memory_listen(m, 1)->address, host, sizeof host);
    assert_string_equal(host, "::1");
    assert_null(tw_test_memory_listen(m, 2));
    assert_int_equal(h.starts, 1); /* once, however many ports */

    /* the recorded factory builds protocols a test connects by hand */
    tw_test_conn *c = tw_test_conn_new(l->factory);
    size_t len;
    const char *out = tw_test_conn_written(c, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(out, "hello\r\n", 7);
    tw_test_conn_free(c);

    tw_port_stop_listening(p1);
    tw_port_stop_listening(p2);
    assert_int_equal(h.stops, 1);
    tw_test_memory_free(m);
    tw_reactor_free(r);
}

static void records_connects_and_fails_them(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_test_memory *m = tw_test_memory_install(r);
    hooks h = { { &hook_ops, &greeter, NULL, 0 } };
    tw_address bind;
    tw_address_from_ip(&bind, "127.0.0.2", 0, SOCK_STREAM);
    tw_connect_options co = { .timeout = 5, .bind = &bind };
    tw_connector *c;
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", 25, &co, &h.base, &c), 0);
    assert_int_equal(h.started, 1);
    assert_int_equal(tw_test_memory_connects(m), 1);
    const tw_test_connect *k = tw_test_memory_connect(m, 0);
    assert_int_equal(tw_address_port(&k->address), 25);
    assert_true(k->options.timeout == 5);
    assert_non_null(k->options.bind);
    char host[64];
    tw_address_host(k->options.bind, host, sizeof host);
    assert_string_equal(host, "127.0.0.2");
    assert_ptr_equal(k->connector, c);
    /* nothing happens by itself, however long we wait */
    tw_clock_advance(r, 100);
    assert_int_equal(h.failed, 0);
    assert_int_equal(tw_test_memory_fail(m, 0, -ECONNREFUSED), 0);
    assert_int_equal(h.failed, 1);
    assert_int_equal(h.failed_code, -ECONNREFUSED);
    assert_int_equal(h.stops, 1);
    assert_int_equal(tw_test_memory_fail(m, 0, -ECONNREFUSED), TW_EINVAL);
    /* a second attempt, stopped by the code under test */
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", 26, NULL, &h.base, &c), 0);
    tw_connector_stop_connecting(c);
    assert_int_equal(h.failed_code, TW_ECANCELED);
    tw_test_memory_free(m);
    tw_reactor_iterate(r, 0);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_listens_without_sockets),
        cmocka_unit_test(records_connects_and_fails_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
