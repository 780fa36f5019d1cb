/* ctest: label=unit timeout=60 backends=once */
/* twirl/testing.h: the string transport, tw_test_conn, feeding every split,
 * the in-memory loopback pump, the fake clock and the small checkers.
 * Acceptance facts 41-43 are named in the test names (fact41_...). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/testing.h"

/* ------------------------------------------------ a recording protocol */

typedef struct rec {
    tw_protocol base;
    int made, lost, eof, destroyed_marker;
    int lost_code, lost_cause;
    int calls;      /* data_received calls */
    int after_lost; /* calls after connection_lost: must stay 0 */
    char data[512];
    size_t len;
    int writing;       /* our own write is on the stack */
    int reentered;     /* data_received ran while writing */
    int close_on_data; /* lose_connection inside data_received */
    int echo;          /* write back what arrives */
} rec;

static int destroyed, lost_at_destroy;

static void rec_made(tw_protocol *p)
{
    ((rec *)p)->made++;
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    rec *r = (rec *)p;
    if (r->lost)
        r->after_lost++;
    if (r->writing)
        r->reentered++;
    r->calls++;
    size_t n = len < sizeof r->data - r->len ? len : sizeof r->data - r->len;
    memcpy(r->data + r->len, data, n);
    r->len += n;
    if (r->echo && p->transport) {
        r->writing++;
        tw_transport_write(p->transport, data, len);
        r->writing--;
    }
    if (r->close_on_data && p->transport)
        tw_transport_lose_connection(p->transport);
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    rec *r = (rec *)p;
    r->lost++;
    r->lost_code = tw_failure_code(reason);
    const tw_failure *cause = tw_failure_cause(reason);
    r->lost_cause = cause ? tw_failure_code(cause) : 0;
}

static void rec_eof(tw_protocol *p)
{
    ((rec *)p)->eof++;
}

static void rec_destroy(tw_protocol *p)
{
    destroyed++;
    lost_at_destroy = ((rec *)p)->lost;
}

static const tw_protocol_ops rec_ops = {
    .size = sizeof(rec),
    .connection_made = rec_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
    .destroy = rec_destroy,
};

static const tw_protocol_ops rec_eof_ops = {
    .size = sizeof(rec),
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
};

static tw_factory rec_factory = TW_FACTORY_INIT(&rec_ops, NULL);

static rec *R(tw_test_conn *c)
{
    return (rec *)tw_test_conn_protocol(c);
}

/* ------------------------------------------------ string transport (42) */

static void fact42_defaults_are_ipv4(void **state)
{
    tw_string_transport *st = tw_string_transport_new(NULL);
    assert_non_null(st);
    tw_transport *t = tw_string_transport_base(st);
    tw_address a;
    char text[TW_ADDRESS_TEXT_MAX];
    assert_string_equal(t->ops->kind, "string");
    assert_int_equal(t->state, TW_TRANSPORT_OPEN);
    assert_int_equal(tw_transport_get_host(t, &a), 0);
    assert_int_equal(tw_address_family(&a), AF_INET);
    tw_address_format(&a, text, sizeof text);
    assert_string_equal(text, "10.0.0.1:12345");
    assert_int_equal(tw_transport_get_peer(t, &a), 0);
    assert_int_equal(tw_address_family(&a), AF_INET);
    tw_address_format(&a, text, sizeof text);
    assert_string_equal(text, "192.168.1.1:54321");
    assert_int_equal(tw_transport_fd(t), -1);

    tw_address mine;
    tw_address_from_ip(&mine, "::1", 80, SOCK_STREAM);
    tw_string_transport_set_peer(st, &mine);
    tw_transport_get_peer(t, &a);
    assert_true(tw_address_equal(&a, &mine));
    tw_string_transport_free(st);
}

static int released;
static void release_fn(void *arg)
{
    released += arg == (void *)&released;
}

static void writes_are_recorded(void **state)
{
    tw_string_transport *st = tw_string_transport_new(NULL);
    tw_transport *t = tw_string_transport_base(st);
    size_t len;
    assert_string_equal(tw_string_transport_value(st, &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(tw_transport_write(t, "abc", 3), 0);
    struct iovec v[2] = { { "de", 2 }, { "f", 1 } };
    assert_int_equal(tw_transport_writev(t, v, 2), 0);
    released = 0;
    assert_int_equal(tw_transport_write_ref(t, "gh", 2, release_fn, &released), 0);
    assert_int_equal(released, 1);
    assert_string_equal(tw_string_transport_value(st, &len), "abcdefgh");
    assert_int_equal(len, 8);

    tw_string_transport_info info;
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.write_calls, 2);
    assert_int_equal(info.writev_calls, 1);
    assert_int_equal(info.last_iovcnt, 2);

    tw_string_transport_clear(st);
    assert_string_equal(tw_string_transport_value(st, NULL), "");

    /* A large write grows the record. */
    static char big[100000];
    memset(big, 'x', sizeof big);
    assert_int_equal(tw_transport_write(t, big, sizeof big), 0);
    tw_string_transport_value(st, &len);
    assert_int_equal(len, sizeof big);

    tw_transport_lose_connection(t);
    assert_int_equal(t->state, TW_TRANSPORT_DISCONNECTING);
    assert_int_equal(tw_transport_write(t, "z", 1), TW_ECLOSED);
    released = 0;
    assert_int_equal(tw_transport_write_ref(t, "z", 1, release_fn, &released), TW_ECLOSED);
    assert_int_equal(released, 1); /* released even when refused */
    tw_string_transport_value(st, &len);
    assert_int_equal(len, sizeof big);
    tw_string_transport_free(st);
}

static void fact42_lose_sets_disconnecting_only(void **state)
{
    tw_test_conn *c = tw_test_conn_new(&rec_factory);
    assert_non_null(c);
    assert_int_equal(R(c)->made, 1);
    tw_transport *t = tw_test_conn_protocol(c)->transport;
    tw_transport_lose_connection(t);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(R(c)->lost, 0); /* the test decides when it is lost */
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_false(info.aborted);
    assert_int_equal(tw_test_conn_lose(c, 0), 0);
    assert_int_equal(R(c)->lost, 1);
    assert_int_equal(R(c)->lost_code, TW_ECONNECTION_DONE);
    assert_null(tw_test_conn_protocol(c)->transport);
    assert_int_equal(tw_test_conn_lose(c, 0), TW_ECLOSED);
    destroyed = 0;
    tw_test_conn_free(c);
    assert_int_equal(destroyed, 1);
}

static void abort_and_lost_reason(void **state)
{
    tw_test_conn *c = tw_test_conn_new(&rec_factory);
    tw_transport_abort_connection(tw_test_conn_protocol(c)->transport);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_true(info.aborted);
    assert_int_equal(info.state, TW_TRANSPORT_DISCONNECTING);
    assert_int_equal(tw_test_conn_lose(c, -ECONNRESET), 0);
    assert_int_equal(R(c)->lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(R(c)->lost_cause, -ECONNRESET);
    tw_test_conn_free(c); /* no second connection_lost */
}

static void free_fires_connection_lost_once(void **state)
{
    tw_test_conn *c = tw_test_conn_new(&rec_factory);
    assert_int_equal(tw_test_conn_feed_str(c, "hello"), 0);
    assert_int_equal(R(c)->calls, 1);
    assert_memory_equal(R(c)->data, "hello", 5);
    destroyed = lost_at_destroy = 0;
    tw_test_conn_free(c);
    assert_int_equal(destroyed, 1);
    assert_int_equal(lost_at_destroy, 1);

    /* Already lost: not again. */
    c = tw_test_conn_new(&rec_factory);
    tw_test_conn_lose(c, 0);
    tw_test_conn_free(c);
    assert_int_equal(lost_at_destroy, 1);
    tw_test_conn_free(NULL);
}

static int lost_then_destroyed_order;
static void order_lost(tw_protocol *p, const tw_failure *reason)
{
    lost_then_destroyed_order = lost_then_destroyed_order * 10 + 1;
}
static void order_destroy(tw_protocol *p)
{
    lost_then_destroyed_order = lost_then_destroyed_order * 10 + 2;
}

static void free_order_is_lost_then_destroy(void **state)
{
    static const tw_protocol_ops ops = {
        .connection_lost = order_lost,
        .destroy = order_destroy,
    };
    tw_test_conn_options o = { .protocol = &ops };
    lost_then_destroyed_order = 0;
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    tw_test_conn_free(c);
    assert_int_equal(lost_then_destroyed_order, 12);
}

static void reentrant_close_is_deferred(void **state)
{
    tw_test_conn *c = tw_test_conn_new(&rec_factory);
    R(c)->close_on_data = 1;
    assert_int_equal(tw_test_conn_feed_str(c, "x"), 0);
    /* lose_connection inside data_received: no connection_lost inside it */
    assert_int_equal(R(c)->lost, 0);
    assert_true(tw_test_conn_disconnecting(c));
    /* A real transport reads nothing more once closing. */
    assert_int_equal(tw_test_conn_feed_str(c, "y"), TW_ECLOSED);
    assert_int_equal(R(c)->calls, 1);
    tw_test_conn_free(c);
}

/* A protocol that tries to end or feed its own string transport from its
 * data_received: refused with TW_EBUSY. */
typedef struct nested {
    tw_protocol base;
    tw_string_transport *st;
    int end_rc, feed_rc;
} nested;

static void nested_data(tw_protocol *p, const void *data, size_t len)
{
    nested *n = (nested *)p;
    n->end_rc = tw_string_transport_end(n->st, 0);
    n->feed_rc = tw_string_transport_deliver(n->st, "a", 1);
}

static void end_inside_callback_is_refused(void **state)
{
    static const tw_protocol_ops ops = { .size = sizeof(nested), .data_received = nested_data };
    tw_string_transport *st = tw_string_transport_new(NULL);
    nested *n = (nested *)tw_protocol_alloc(&ops);
    n->st = st;
    assert_int_equal(tw_string_transport_connect(st, &n->base), 0);
    assert_int_equal(tw_string_transport_connect(st, &n->base), TW_EBUSY);
    assert_int_equal(tw_string_transport_deliver(st, "z", 1), 0);
    assert_int_equal(n->end_rc, TW_EBUSY);
    assert_int_equal(n->feed_rc, TW_EBUSY);
    assert_int_equal(tw_string_transport_end(st, 0), 0);
    tw_protocol_free(&n->base);
    tw_string_transport_free(st);
}

static void fact42_producer_registration_errors(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_string_transport *st = tw_string_transport_new(NULL);
    tw_transport *t = tw_string_transport_base(st);
    tw_test_strict_producer a, b;
    tw_test_strict_producer_init(&a);
    tw_test_strict_producer_init(&b);
    assert_int_equal(tw_transport_register_producer(t, &a.base, true), 0);
    assert_int_equal(tw_transport_register_producer(t, &b.base, false), TW_EBUSY);
    tw_string_transport_info info;
    tw_string_transport_get_info(st, &info);
    assert_ptr_equal(info.producer, &a.base);
    assert_true(info.streaming);
    assert_int_equal(info.misuse, 1);
    tw_transport_unregister_producer(t);
    tw_transport_unregister_producer(t); /* none registered: misuse, no crash */
    tw_string_transport_get_info(st, &info);
    assert_null(info.producer);
    assert_int_equal(info.misuse, 2);
    assert_int_equal(tw_test_log_count(log), 2);
    assert_true(tw_test_log_contains(log, "testing", "unregister_producer"));
    /* The pull producer is not resumed by the string transport itself. */
    assert_int_equal(tw_transport_register_producer(t, &b.base, false), 0);
    assert_int_equal(b.resumes, 0);
    tw_string_transport_end(st, 0); /* stops the registered producer */
    assert_int_equal(b.stops, 1);
    assert_int_equal(b.state, TW_TEST_STOPPED);
    tw_string_transport_free(st);
    tw_test_log_release(log);
}

static void fact42_producer_state_machine(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_string_transport *st = tw_string_transport_new(NULL);
    tw_transport *t = tw_string_transport_base(st);
    tw_string_transport_info info;
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.producer_state, TW_TEST_PRODUCING);
    tw_transport_pause_producing(t);
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.producer_state, TW_TEST_PAUSED);
    tw_transport_resume_producing(t);
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.producer_state, TW_TEST_PRODUCING);
    tw_transport_stop_producing(t);
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.producer_state, TW_TEST_STOPPED);
    assert_int_equal(info.state, TW_TRANSPORT_DISCONNECTING);
    tw_transport_pause_producing(t);  /* misuse */
    tw_transport_resume_producing(t); /* misuse */
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.producer_state, TW_TEST_STOPPED);
    assert_int_equal(info.misuse, 2);
    tw_string_transport_free(st);

    /* Disconnecting (not stopped): pause/resume are misuses unless lenient. */
    st = tw_string_transport_new(NULL);
    t = tw_string_transport_base(st);
    tw_transport_lose_connection(t);
    tw_transport_pause_producing(t);
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.misuse, 1);
    assert_int_equal(info.producer_state, TW_TEST_PRODUCING);
    tw_string_transport_set_lenient(st, true);
    tw_transport_pause_producing(t);
    tw_string_transport_get_info(st, &info);
    assert_int_equal(info.misuse, 1);
    assert_int_equal(info.producer_state, TW_TEST_PAUSED);
    tw_string_transport_free(st);
    assert_int_equal(tw_test_log_count(log), 3);
    tw_test_log_release(log);
}

static void lose_write_connection_and_eof(void **state)
{
    tw_test_conn_options o = { .protocol = &rec_eof_ops };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_transport *t = tw_test_conn_protocol(c)->transport;
    assert_int_equal(tw_transport_lose_write_connection(t), 0);
    assert_int_equal(tw_transport_write(t, "x", 1), TW_ECLOSED);
    assert_int_equal(tw_transport_lose_write_connection(t), TW_ECLOSED);
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_int_equal(R(c)->eof, 1);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    /* Without eof_received: the transport loses the connection. */
    c = tw_test_conn_new(&rec_factory);
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static tw_protocol *refuse(tw_factory *f, const tw_address *addr)
{
    return NULL;
}

static void refused_build_gives_null(void **state)
{
    static const tw_factory_ops fops = { .build_protocol = refuse };
    tw_factory f = TW_FACTORY_INIT(&rec_ops, NULL);
    f.ops = &fops;
    assert_null(tw_test_conn_new(&f));
    tw_test_conn_options none = { 0 };
    assert_null(tw_test_conn_new_opts(&none));
}

static void serials_are_unique(void **state)
{
    tw_string_transport *a = tw_string_transport_new(NULL), *b = tw_string_transport_new(NULL);
    unsigned long sa = tw_test_transport_serial(tw_string_transport_base(a));
    unsigned long sb = tw_test_transport_serial(tw_string_transport_base(b));
    assert_true(sa != 0 && sb != 0 && sa != sb);
    tw_string_transport_free(a);
    tw_string_transport_free(b);
}

/* ------------------------------------------------ feeding every split */

typedef struct split_stats {
    int runs, whole, cuts, chunked;
    const char *want;
    size_t want_len;
} split_stats;

static void split_check(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    split_stats *s = arg;
    rec *r = R(c);
    s->runs++;
    assert_int_equal(r->len, s->want_len);
    assert_memory_equal(r->data, s->want, s->want_len);
    if (how->cut) {
        s->cuts++;
        assert_int_equal(r->calls, 2);
    } else if (how->chunk) {
        s->chunked++;
        assert_int_equal(r->calls, (int)((s->want_len + how->chunk - 1) / how->chunk));
    } else {
        s->whole++;
        assert_int_equal(r->calls, 1);
    }
    assert_non_null(strstr(how->desc, how->cut ? "cut" : how->chunk ? "chunks" : "whole"));
}

static void feed_splits_runs_every_split(void **state)
{
    static const char wire[] = "PING\r\nPONG\r\n";
    split_stats s = { .want = wire, .want_len = sizeof wire - 1 };
    tw_test_conn_options o = { .factory = &rec_factory };
    int runs = tw_test_feed_splits(&o, wire, sizeof wire - 1, split_check, &s);
    assert_int_equal(runs, s.runs);
    assert_int_equal(s.whole, 1);
    assert_int_equal(s.cuts, (int)sizeof wire - 2);
    assert_int_equal(s.chunked, TW_TEST_MAX_CHUNK);

    /* Tiny inputs: one byte runs once. */
    split_stats one = { .want = "x", .want_len = 1 };
    assert_int_equal(tw_test_feed_splits(&o, "x", 1, split_check, &one), 1);
    tw_test_conn_options bad = { 0 };
    assert_int_equal(tw_test_feed_splits(&bad, "x", 1, split_check, &one), TW_EINVAL);
}

static void feed_splits_stops_after_close(void **state)
{
    tw_test_conn *c = tw_test_conn_new(&rec_factory);
    R(c)->close_on_data = 1;
    assert_int_equal(tw_test_conn_feed(c, "ab", 2), 0);
    assert_int_equal(tw_test_conn_feed(c, "cd", 2), TW_ECLOSED);
    assert_int_equal(R(c)->calls, 1);
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ fake clock */

static void tick(void *arg)
{
    ++*(int *)arg;
}

static void clock_is_fake(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    assert_non_null(r);
    int fired = 0;
    tw_call_later(r, 5, tick, &fired);
    assert_true(tw_reactor_now(r) == 0.0);
    tw_clock_advance(r, 4.999);
    assert_int_equal(fired, 0);
    tw_clock_advance(r, 0.001);
    assert_int_equal(fired, 1);
    assert_int_equal(tw_reactor_timer_count(r), 0);

    /* A test conn on that clock: the protocol sees the reactor. */
    tw_test_conn_options o = { .factory = &rec_factory, .reactor = r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_ptr_equal(tw_test_conn_protocol(c)->transport->reactor, r);
    tw_test_conn_free(c);
    tw_reactor_free(r);
}

/* ------------------------------------------------ strict producer (43) */

static void fact43_strict_producer(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_test_strict_producer sp;
    tw_producer *p = &sp.base;

    tw_test_strict_producer_init(&sp);
    p->ops->resume_producing(p); /* resume while running */
    assert_int_equal(sp.violations, 1);
    p->ops->pause_producing(p);
    p->ops->pause_producing(p); /* pause while paused */
    assert_int_equal(sp.violations, 2);
    p->ops->resume_producing(p);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    p->ops->stop_producing(p);
    p->ops->stop_producing(p);   /* after stop */
    p->ops->pause_producing(p);  /* after stop */
    p->ops->resume_producing(p); /* after stop */
    assert_int_equal(sp.violations, 5);
    assert_int_equal(sp.state, TW_TEST_STOPPED);
    assert_int_equal(tw_test_log_count(log), 5);
    assert_true(tw_test_log_contains(log, NULL, "pause_producing while stopped"));
    tw_test_log_release(log);

    tw_test_strict_producer_init(&sp);
    p->ops->pause_producing(p);
    p->ops->stop_producing(p); /* pause then stop is fine */
    assert_int_equal(sp.violations, 0);
}

/* ------------------------------------------------------ loopback (41, 43) */

static tw_test_pump *pump_rec(tw_test_pump_policy policy)
{
    tw_test_pump_options o = {
        .server_protocol = &rec_ops,
        .client_protocol = &rec_ops,
        .policy = policy,
    };
    return tw_test_pump_new(&o);
}

static rec *S(tw_test_pump *p)
{
    return (rec *)tw_test_pump_server(p);
}

static rec *C(tw_test_pump *p)
{
    return (rec *)tw_test_pump_client(p);
}

static void fact41_both_sides_connected_with_addresses(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    assert_non_null(pump);
    assert_int_equal(S(pump)->made, 1);
    assert_int_equal(C(pump)->made, 1);
    tw_transport *st = S(pump)->base.transport, *ct = C(pump)->base.transport;
    assert_string_equal(st->ops->kind, "memory");
    tw_address sh, sp, ch, cp;
    assert_int_equal(tw_transport_get_host(st, &sh), 0);
    assert_int_equal(tw_transport_get_peer(st, &sp), 0);
    assert_int_equal(tw_transport_get_host(ct, &ch), 0);
    assert_int_equal(tw_transport_get_peer(ct, &cp), 0);
    assert_true(tw_address_equal(&sh, &cp));
    assert_true(tw_address_equal(&ch, &sp));
    assert_int_equal(tw_address_family(&sh), AF_INET);
    assert_int_equal(tw_address_port(&sh), 4321);
    assert_false(tw_address_equal(&sh, &ch));
    /* fact 43: unique serial numbers */
    unsigned long s1 = tw_test_transport_serial(st), s2 = tw_test_transport_serial(ct);
    assert_true(s1 && s2 && s1 != s2);
    tw_test_pump_free(pump);
}

static void fact41_greetings_both_ways(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    /* client first, with write */
    tw_transport_write(C(pump)->base.transport, "hello", 5);
    assert_int_equal(S(pump)->calls, 0); /* nothing moves until pumped */
    assert_true(tw_test_pump_flush(pump) >= 1);
    assert_int_equal(S(pump)->len, 5);
    assert_memory_equal(S(pump)->data, "hello", 5);
    /* server first, with writev */
    struct iovec v[2] = { { "wel", 3 }, { "come", 4 } };
    tw_transport_writev(S(pump)->base.transport, v, 2);
    tw_test_pump_flush(pump);
    assert_int_equal(C(pump)->len, 7);
    assert_memory_equal(C(pump)->data, "welcome", 7);
    assert_int_equal(C(pump)->calls, 1);
    tw_test_pump_free(pump);
}

/* Twisted's test_writeNotReentrant: the server echoes; the client writes
 * from a timer and only then marks itself ready; its data_received must
 * find it ready. */
typedef struct ready_client {
    tw_protocol base;
    int ready, was_ready, got;
} ready_client;

static void rc_go(void *arg)
{
    ready_client *c = arg;
    tw_transport_write(c->base.transport, "foo", 3);
    c->ready = 1;
}

static void rc_made(tw_protocol *p)
{
    tw_call_later(p->transport->reactor, 0, rc_go, p);
}

static void rc_data(tw_protocol *p, const void *data, size_t len)
{
    ready_client *c = (ready_client *)p;
    c->was_ready = c->ready;
    c->got++;
    tw_transport_lose_connection(p->transport);
}

static void fact41_write_not_reentrant(void **state)
{
    static const tw_protocol_ops client_ops = {
        .size = sizeof(ready_client),
        .connection_made = rc_made,
        .data_received = rc_data,
    };
    tw_reactor *r = tw_test_clock_new();
    tw_test_pump_options o = {
        .server_protocol = &rec_ops,
        .client_protocol = &client_ops,
        .reactor = r,
    };
    tw_test_pump *pump = tw_test_pump_new(&o);
    S(pump)->echo = 1;
    tw_clock_advance(r, 0);
    tw_test_pump_flush(pump);
    ready_client *c = (ready_client *)tw_test_pump_client(pump);
    assert_int_equal(c->got, 1);
    assert_true(c->was_ready);
    assert_int_equal(S(pump)->reentered, 0);
    assert_true(tw_test_pump_closed(pump));
    assert_int_equal(S(pump)->lost, 1);
    tw_test_pump_free(pump);
    tw_reactor_free(r);
}

static void fact41_pump_policies(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    tw_transport_write(C(pump)->base.transport, "foo", 3);
    tw_transport_write(C(pump)->base.transport, "bar", 3);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->calls, 2);
    assert_memory_equal(S(pump)->data, "foobar", 6);
    tw_test_pump_free(pump);

    pump = pump_rec(TW_TEST_PUMP_COLLAPSING);
    tw_transport_write(C(pump)->base.transport, "foo", 3);
    tw_transport_write(C(pump)->base.transport, "bar", 3);
    tw_transport_write(S(pump)->base.transport, "baz", 3);
    tw_transport_write(S(pump)->base.transport, "quux", 4);
    tw_test_pump_pump(pump); /* both ways in one round */
    tw_transport_lose_connection(S(pump)->base.transport);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->calls, 1);
    assert_memory_equal(S(pump)->data, "foobar", 6);
    assert_int_equal(C(pump)->calls, 1);
    assert_int_equal(C(pump)->len, 7);
    assert_memory_equal(C(pump)->data, "bazquux", 7);
    assert_true(tw_test_pump_closed(pump));
    assert_int_equal(S(pump)->lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(C(pump)->lost_code, TW_ECONNECTION_DONE);
    tw_test_pump_free(pump);
}

static void fact43_writes_after_close_dropped(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    tw_transport *ct = C(pump)->base.transport;
    tw_transport_write(ct, "before", 6);
    tw_transport_lose_connection(ct);
    assert_int_equal(tw_transport_write(ct, "after", 5), TW_ECLOSED);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->len, 6);
    assert_memory_equal(S(pump)->data, "before", 6);
    assert_true(tw_test_pump_closed(pump));
    assert_int_equal(S(pump)->after_lost, 0);
    assert_int_equal(C(pump)->lost, 1);
    assert_int_equal(S(pump)->lost, 1);
    tw_test_pump_free(pump);
}

static void abort_drops_and_resets(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    tw_transport_write(C(pump)->base.transport, "lost", 4);
    tw_transport_abort_connection(C(pump)->base.transport);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->len, 0);
    assert_int_equal(C(pump)->lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(C(pump)->lost_cause, -ECONNABORTED);
    assert_int_equal(S(pump)->lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(S(pump)->lost_cause, -ECONNRESET);
    tw_test_pump_free(pump);
}

static void half_close_reaches_eof_received(void **state)
{
    tw_test_pump_options o = { .server_protocol = &rec_eof_ops, .client_protocol = &rec_ops };
    tw_test_pump *pump = tw_test_pump_new(&o);
    tw_transport_write(C(pump)->base.transport, "req", 3);
    assert_int_equal(tw_transport_lose_write_connection(C(pump)->base.transport), 0);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->len, 3);
    assert_int_equal(S(pump)->eof, 1);
    /* The server answers after the client's end of stream, then closes. */
    tw_transport_write(S(pump)->base.transport, "resp", 4);
    tw_transport_lose_connection(S(pump)->base.transport);
    tw_test_pump_flush(pump);
    assert_int_equal(C(pump)->len, 4);
    assert_true(tw_test_pump_closed(pump));
    tw_test_pump_free(pump);
}

static void paused_side_receives_nothing(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    tw_transport_pause_producing(S(pump)->base.transport);
    tw_transport_write(C(pump)->base.transport, "a", 1);
    tw_transport_write(C(pump)->base.transport, "b", 1);
    assert_int_equal(tw_test_pump_flush(pump), 0);
    assert_int_equal(S(pump)->calls, 0);
    tw_transport_resume_producing(S(pump)->base.transport);
    tw_test_pump_flush(pump);
    assert_int_equal(S(pump)->calls, 2);
    tw_test_pump_free(pump);
}

/* Push and pull producers (Twisted's _producertest). */
typedef struct producing {
    tw_protocol base;
    tw_test_strict_producer push; /* push mode: a strict producer */
    tw_producer pull;             /* pull mode */
    int next;
    int streaming;
} producing;

static void pull_resume(tw_producer *p)
{
    producing *s = (producing *)((char *)p - offsetof(producing, pull));
    char b[4];
    int n = snprintf(b, sizeof b, "%d", s->next++);
    tw_transport_write(s->base.transport, b, (size_t)n);
    if (s->next == 10)
        tw_transport_unregister_producer(s->base.transport);
}

static const tw_producer_ops pull_ops = { NULL, pull_resume, NULL };

static void push_made(tw_protocol *p)
{
    producing *s = (producing *)p;
    tw_test_strict_producer_init(&s->push);
    tw_transport_register_producer(p->transport, &s->push.base, true);
    for (int i = 0; i < 10; i++) {
        char b[4];
        int n = snprintf(b, sizeof b, "%d", i);
        tw_transport_write(p->transport, b, (size_t)n);
    }
}

static void pull_made(tw_protocol *p)
{
    producing *s = (producing *)p;
    s->pull.ops = &pull_ops;
    tw_transport_register_producer(p->transport, &s->pull, false);
}

static void fact41_push_and_pull_producers(void **state)
{
    static const tw_protocol_ops push_ops = { .size = sizeof(producing),
                                              .connection_made = push_made };
    static const tw_protocol_ops pull_proto = { .size = sizeof(producing),
                                                .connection_made = pull_made };
    tw_test_pump_options o = { .server_protocol = &push_ops, .client_protocol = &rec_ops };
    tw_test_pump *pump = tw_test_pump_new(&o);
    tw_test_pump_flush(pump);
    assert_int_equal(C(pump)->len, 10);
    assert_memory_equal(C(pump)->data, "0123456789", 10);
    producing *s = (producing *)tw_test_pump_server(pump);
    /* fact 43: the pump never resumes a streaming producer */
    assert_int_equal(s->push.resumes, 0);
    assert_int_equal(s->push.violations, 0);
    assert_int_equal(s->push.state, TW_TEST_PRODUCING);
    tw_test_pump_free(pump);

    o.server_protocol = &pull_proto;
    pump = tw_test_pump_new(&o);
    assert_true(tw_test_pump_flush(pump) >= 10);
    assert_int_equal(C(pump)->len, 10);
    assert_memory_equal(C(pump)->data, "0123456789", 10);
    tw_test_pump_free(pump);
}

static void high_water_pauses_push_producer(void **state)
{
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    tw_transport *st = S(pump)->base.transport;
    tw_test_strict_producer sp;
    tw_test_strict_producer_init(&sp);
    assert_int_equal(tw_transport_set_option(st, TW_OPT_HIGH_WATER, 10), 0);
    assert_int_equal(tw_transport_set_option(st, TW_OPT_LOW_WATER, 0), 0);
    tw_transport_register_producer(st, &sp.base, true);
    tw_transport_write(st, "0123456789", 10);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    tw_transport_write(st, "x", 1);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    assert_int_equal(tw_transport_buffered(st), 11);
    tw_test_pump_flush(pump);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    assert_int_equal(sp.violations, 0);
    tw_test_pump_free(pump); /* connection loss stops it */
    assert_int_equal(sp.state, TW_TEST_STOPPED);
}

/* A pull producer that never finishes: flush gives up. */
static void endless_resume(tw_producer *p)
{
    tw_transport *t = *(tw_transport **)(p + 1);
    tw_transport_write(t, "x", 1);
}

static void endless_pull_producer_is_bounded(void **state)
{
    static const tw_producer_ops ops = { NULL, endless_resume, NULL };
    struct {
        tw_producer base;
        tw_transport *t;
    } prod = { { &ops }, NULL };
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_test_pump *pump = pump_rec(TW_TEST_PUMP_IDENTITY);
    prod.t = S(pump)->base.transport;
    tw_transport_register_producer(prod.t, &prod.base, false);
    assert_int_equal(tw_test_pump_flush(pump), TW_ELIMIT);
    assert_true(tw_test_log_contains(log, "testing", "busy"));
    tw_transport_unregister_producer(prod.t);
    tw_test_pump_free(pump);
    tw_test_log_release(log);
}

/* Pumping from inside a pump round is refused. */
typedef struct pumper {
    tw_protocol base;
    tw_test_pump *pump;
    int rc;
} pumper;

static void pumper_data(tw_protocol *p, const void *data, size_t len)
{
    pumper *x = (pumper *)p;
    x->rc = tw_test_pump_flush(x->pump);
}

static void nested_pump_is_refused(void **state)
{
    static const tw_protocol_ops ops = { .size = sizeof(pumper), .data_received = pumper_data };
    tw_test_pump_options o = { .server_protocol = &ops, .client_protocol = &rec_ops };
    tw_test_pump *pump = tw_test_pump_new(&o);
    pumper *x = (pumper *)tw_test_pump_server(pump);
    x->pump = pump;
    tw_transport_write(C(pump)->base.transport, "a", 1);
    tw_test_pump_flush(pump);
    assert_int_equal(x->rc, TW_EBUSY);
    tw_test_pump_free(pump);
}

static void pump_with_factories(void **state)
{
    int user = 7;
    tw_factory f = TW_FACTORY_INIT(&rec_ops, &user);
    tw_test_pump_options o = { .server = &f, .client = &f };
    tw_test_pump *pump = tw_test_pump_new(&o);
    assert_ptr_equal(tw_test_pump_server(pump)->factory, &f);
    assert_ptr_equal(tw_test_pump_client(pump)->factory->user_data, &user);
    tw_test_pump_free(pump);
    tw_test_pump_options none = { .server = &f };
    assert_null(tw_test_pump_new(&none));
    tw_test_pump_free(NULL);
}

/* ------------------------------------------------------------ log capture */

static void log_capture_works(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_INFO);
    tw_log(TW_LOG_DEBUG, "x", "hidden");
    tw_log(TW_LOG_INFO, "alpha", "one %d", 1);
    tw_log(TW_LOG_WARN, "beta", "two");
    assert_int_equal(tw_test_log_count(log), 2);
    assert_true(tw_test_log_contains(log, "alpha", "one 1"));
    assert_false(tw_test_log_contains(log, "beta", "one"));
    assert_true(tw_test_log_contains(log, NULL, "two"));
    assert_string_equal(tw_test_log_message(log, 1), "beta: two");
    assert_null(tw_test_log_message(log, 2));
    tw_test_log_clear(log);
    assert_int_equal(tw_test_log_count(log), 0);
    tw_test_log_release(log);
    tw_test_log_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact42_defaults_are_ipv4),
        cmocka_unit_test(writes_are_recorded),
        cmocka_unit_test(fact42_lose_sets_disconnecting_only),
        cmocka_unit_test(abort_and_lost_reason),
        cmocka_unit_test(free_fires_connection_lost_once),
        cmocka_unit_test(free_order_is_lost_then_destroy),
        cmocka_unit_test(reentrant_close_is_deferred),
        cmocka_unit_test(end_inside_callback_is_refused),
        cmocka_unit_test(fact42_producer_registration_errors),
        cmocka_unit_test(fact42_producer_state_machine),
        cmocka_unit_test(lose_write_connection_and_eof),
        cmocka_unit_test(refused_build_gives_null),
        cmocka_unit_test(serials_are_unique),
        cmocka_unit_test(feed_splits_runs_every_split),
        cmocka_unit_test(feed_splits_stops_after_close),
        cmocka_unit_test(clock_is_fake),
        cmocka_unit_test(fact43_strict_producer),
        cmocka_unit_test(fact41_both_sides_connected_with_addresses),
        cmocka_unit_test(fact41_greetings_both_ways),
        cmocka_unit_test(fact41_write_not_reentrant),
        cmocka_unit_test(fact41_pump_policies),
        cmocka_unit_test(fact43_writes_after_close_dropped),
        cmocka_unit_test(abort_drops_and_resets),
        cmocka_unit_test(half_close_reaches_eof_received),
        cmocka_unit_test(paused_side_receives_nothing),
        cmocka_unit_test(fact41_push_and_pull_producers),
        cmocka_unit_test(high_water_pauses_push_producer),
        cmocka_unit_test(endless_pull_producer_is_bounded),
        cmocka_unit_test(nested_pump_is_refused),
        cmocka_unit_test(pump_with_factories),
        cmocka_unit_test(log_capture_works),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
