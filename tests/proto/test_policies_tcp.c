/* ctest: label=integration timeout=90 */
/* Connection policies over real TCP on loopback: an echo server behind a
 * throttling factory, a total connection limit and an idle timeout, all at
 * once, talked to with plain sockets while the reactor runs in the same
 * thread (the sockets are driven without blocking from the loop's wait
 * condition). */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"
#include "twirl/policies.h"
#include "twirl/tcp.h"

#define WAIT 10.0

static void echo_data(tw_protocol *p, const void *data, size_t len)
{
    tw_transport_write(p->transport, data, len);
}

static const tw_protocol_ops echo_ops = { .data_received = echo_data };

static void busy_made(tw_protocol *p)
{
    tw_transport_write_str(p->transport, "busy\r\n");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops busy_ops = { .connection_made = busy_made };

/* A socket's side of an exchange: what to send, what came back. */
typedef struct exchange {
    int fd;
    const char *out;
    size_t out_len, sent;
    char *in;
    size_t in_len, got;
    bool eof;
} exchange;

/* Moves what the socket takes and gives without blocking; true once
 * everything came back, or the peer closed. */
static bool pump(void *arg)
{
    exchange *x = arg;
    while (x->sent < x->out_len) {
        ssize_t n =
            send(x->fd, x->out + x->sent, x->out_len - x->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        x->sent += (size_t)n;
    }
    while (x->got < x->in_len) {
        ssize_t n = recv(x->fd, x->in + x->got, x->in_len - x->got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            x->eof = true;
            break;
        }
        if (n < 0)
            break;
        x->got += (size_t)n;
    }
    return x->got == x->in_len || x->eof;
}

/* True once the peer closed (reading anything that came first). */
static bool closed_by_peer(void *arg)
{
    int fd = *(int *)arg;
    char buf[256];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
        if (n < 0)
            return false;
    }
}

static void talk(tw_reactor *r, int fd, const char *out, size_t len)
{
    char *in = malloc(len);
    exchange x = { .fd = fd, .out = out, .out_len = len, .in = in, .in_len = len };
    assert_true(tt_run_until(r, pump, &x, WAIT));
    assert_false(x.eof);
    assert_memory_equal(in, out, len);
    free(in);
}

static int connect_to(uint16_t port)
{
    int fd = tt_connect_loopback(port);
    if (fd < 0)
        fail_msg("connect: %s", strerror(-fd));
    return fd;
}

static bool no_connections(void *arg)
{
    return tw_reactor_connection_count(arg) == 0;
}

static void throttled_limited_idle_echo(void **state)
{
    tw_reactor *r = tt_reactor();
    tw_factory echo = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_factory *idle = tw_timeout_factory_new(&echo, 4.0);
    tw_factory *limited = tw_limit_total_factory_new(idle, 2, &busy_ops);
    tw_throttling_options o = { .read_limit = 256 * 1024, .max_connections = 3 };
    tw_factory *throttled = tw_throttling_factory_new(r, limited, &o);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, throttled, &port), 0);
    uint16_t pn = tw_address_port(tw_port_address(port));

    /* Two echo clients; the third gets the overflow protocol ("busy"); a
     * fourth is refused by the throttling factory's maximum. */
    int a = connect_to(pn), b = connect_to(pn);
    talk(r, a, "hello", 5);
    talk(r, b, "world", 5);
    int c = connect_to(pn);
    char busy[7] = { 0 };
    exchange xc = { .fd = c, .in = busy, .in_len = 6 };
    assert_true(tt_run_until(r, pump, &xc, WAIT));
    assert_string_equal(busy, "busy\r\n");
    assert_true(tt_run_until(r, closed_by_peer, &c, WAIT));
    close(c);
    int d = connect_to(pn);
    int e = connect_to(pn); /* c may not be counted out yet: accept either */
    assert_true(tt_run_until(r, closed_by_peer, &e, WAIT));
    close(e);
    assert_true(tt_run_until(r, closed_by_peer, &d, WAIT));
    close(d);
    tw_throttling_stats s;
    tw_throttling_factory_stats(throttled, &s);
    assert_true(s.connections <= 3);

    /* Bulk through the throttle: more than the read limit in a second, so
     * reading is held back at least once (for 1.5 s at most); every byte
     * still comes back. */
    talk(r, a, "ping", 4);
    enum { BULK = 640 * 1024 };
    char *bulk = malloc(BULK);
    for (size_t i = 0; i < BULK; i++)
        bulk[i] = (char)('A' + i % 23);
    talk(r, b, bulk, BULK);
    free(bulk);
    tt_run_for(r, 1.1); /* the next check sees the last bytes */
    tw_throttling_factory_stats(throttled, &s);
    assert_true(s.read_holds >= 1);
    talk(r, a, "still here", 10); /* let go after the hold */

    /* Idle for 4 s: the server closes both. */
    assert_true(tt_run_until(r, closed_by_peer, &a, WAIT));
    assert_true(tt_run_until(r, closed_by_peer, &b, WAIT));
    close(a);
    close(b);
    assert_true(tt_run_until(r, no_connections, r, WAIT));
    assert_int_equal(tw_limit_factory_count(limited), 0);
    assert_int_equal(tw_wrapping_factory_count(idle), 0);

    /* The limit has room again. */
    int f = connect_to(pn);
    talk(r, f, "again", 5);
    close(f);
    assert_true(tt_run_until(r, no_connections, r, WAIT));

    tw_port_stop_listening(port);
    tw_wrapping_factory_free(throttled);
    tw_wrapping_factory_free(limited);
    tw_wrapping_factory_free(idle);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

/* Freed while a connection is open, then the reactor goes: the connection
 * is aborted, and the factories' memory goes with it. */
static void factories_outlive_their_owner(void **state)
{
    tw_reactor *r = tt_reactor();
    tw_factory echo = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_factory *idle = tw_timeout_factory_new(&echo, 30);
    tw_throttling_options o = { .read_limit = 1 << 20, .write_limit = 1 << 20 };
    tw_factory *throttled = tw_throttling_factory_new(r, idle, &o);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, throttled, &port), 0);
    int a = connect_to(tw_address_port(tw_port_address(port)));
    talk(r, a, "x", 1);
    tw_port_stop_listening(port);
    tw_wrapping_factory_free(idle);
    tw_wrapping_factory_free(throttled);
    tw_reactor_free(r); /* aborts the connection: both factories go */
    close(a);
}

/* A client through a policy: the connector's hooks reach the factory
 * underneath, with the same connector; start and stop too. */
static struct {
    int started, failed, lost, starts, stops, made;
    tw_connector *seen;
} hooks;

static void h_started(tw_factory *f, tw_connector *c)
{
    hooks.started++;
    hooks.seen = c;
}

static void h_failed(tw_factory *f, tw_connector *c, const tw_failure *why)
{
    hooks.failed++;
    assert_ptr_equal(c, hooks.seen);
}

static void h_lost(tw_factory *f, tw_connector *c, const tw_failure *why)
{
    hooks.lost++;
    assert_ptr_equal(c, hooks.seen);
}

static void h_start(tw_factory *f)
{
    hooks.starts++;
}

static void h_stop(tw_factory *f)
{
    hooks.stops++;
}

static const tw_factory_ops client_hooks = {
    .start_factory = h_start,
    .stop_factory = h_stop,
    .started_connecting = h_started,
    .client_connection_failed = h_failed,
    .client_connection_lost = h_lost,
};

static void hello_made(tw_protocol *p)
{
    hooks.made++;
    tw_transport_write_str(p->transport, "bye");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops hello_ops = { .connection_made = hello_made };

static bool client_done(void *arg)
{
    return hooks.failed + hooks.lost > 0 && hooks.stops > 0;
}

static void client_hooks_through_a_policy(void **state)
{
    tw_reactor *r = tt_reactor();
    tw_factory inner = { &client_hooks, &hello_ops, NULL, 0 };
    tw_factory *idle = tw_timeout_factory_new(&inner, 5);

    /* Refused. */
    memset(&hooks, 0, sizeof hooks);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", tt_dead_port(), NULL, idle, NULL), 0);
    assert_true(tt_run_until(r, client_done, NULL, WAIT));
    assert_int_equal(hooks.started, 1);
    assert_int_equal(hooks.failed, 1);
    assert_int_equal(hooks.starts, 1);
    assert_int_equal(hooks.stops, 1);
    assert_int_equal(hooks.made, 0);

    /* Connected, then closed by us. */
    tw_factory echo = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &echo, &port), 0);
    memset(&hooks, 0, sizeof hooks);
    assert_int_equal(
        tw_connect_tcp(r, "127.0.0.1", tw_address_port(tw_port_address(port)), NULL, idle, NULL),
        0);
    assert_true(tt_run_until(r, client_done, NULL, WAIT));
    assert_int_equal(hooks.made, 1);
    assert_int_equal(hooks.lost, 1);
    assert_int_equal(hooks.failed, 0);
    assert_int_equal(hooks.starts, 1);
    assert_int_equal(hooks.stops, 1);
    assert_true(tt_run_until(r, no_connections, r, WAIT));
    tw_port_stop_listening(port);
    tw_wrapping_factory_free(idle);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(throttled_limited_idle_echo),
        cmocka_unit_test(factories_outlive_their_owner),
        cmocka_unit_test(client_hooks_through_a_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
