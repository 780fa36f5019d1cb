/* ctest: label=unit timeout=120 backends=once */
/* Connection policies (twirl/policies.h) on the string transport and the
 * fake clock: the protocol wrapper and its transport (acceptance fact 40),
 * TimeoutMixin (36), TimeoutFactory (37), the connection limits (38),
 * ThrottlingFactory (39), and policies composed around one another. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/basic.h"
#include "twirl/policies.h"
#include "twirl/testing.h"

/* ------------------------------------------------------------ a recorder */

/* What the wrapped protocols did, in order ("made;data(ab);lost(done);
 * destroy;"): they are freed at connection_lost, so they keep nothing. */
static char events[4096];

static void ev(const char *fmt, ...)
{
    size_t used = strlen(events);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(events + used, sizeof events - used, fmt, ap);
    va_end(ap);
}

static void ev_clear(void)
{
    events[0] = 0;
}

typedef struct rec {
    tw_protocol base;
    int id;
} rec;

static rec *last_rec; /* the last one connected */
static tw_factory *last_factory_seen;
static tw_transport *last_transport_seen;

static void rec_made(tw_protocol *p)
{
    last_rec = (rec *)p;
    last_factory_seen = p->factory;
    last_transport_seen = p->transport;
    ev("made;");
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    ev("data(%.*s);", (int)len, (const char *)data);
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    ev("lost(%s);", tw_failure_code(reason) == TW_ECONNECTION_DONE ? "done" : "lost");
    if (last_rec == (rec *)p)
        last_rec = NULL;
}

static void rec_destroy(tw_protocol *p)
{
    ev("destroy;");
}

static const tw_protocol_ops rec_ops = {
    .size = sizeof(rec),
    .connection_made = rec_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
    .destroy = rec_destroy,
};

/* Echo: writes back what it gets. */
static void echo_data(tw_protocol *p, const void *data, size_t len)
{
    tw_transport_write(p->transport, data, len);
}

static const tw_protocol_ops echo_ops = {
    .data_received = echo_data,
};

/* Client hooks of the inner factory. */
static void f_start(tw_factory *f)
{
    ev("start;");
}

static void f_stop(tw_factory *f)
{
    ev("stop;");
}

static void f_started(tw_factory *f, tw_connector *c)
{
    ev("started(%p);", (void *)c);
}

static void f_failed(tw_factory *f, tw_connector *c, const tw_failure *why)
{
    ev("failed(%s);", tw_failure_message(why));
}

static void f_lost(tw_factory *f, tw_connector *c, const tw_failure *why)
{
    ev("clientlost(%s);", tw_failure_message(why));
}

static const tw_factory_ops hooked_ops = {
    .start_factory = f_start,
    .stop_factory = f_stop,
    .started_connecting = f_started,
    .client_connection_failed = f_failed,
    .client_connection_lost = f_lost,
};

/* A pull producer: counts the calls it gets. */
typedef struct puller {
    tw_producer base;
    int resumes, pauses, stops;
} puller;

static void pull_pause(tw_producer *p)
{
    ((puller *)p)->pauses++;
}

static void pull_resume(tw_producer *p)
{
    ((puller *)p)->resumes++;
}

static void pull_stop(tw_producer *p)
{
    ((puller *)p)->stops++;
}

static const tw_producer_ops puller_ops = { pull_pause, pull_resume, pull_stop };

/* The protocol a wrapper wraps, through any number of wrappers. */
static tw_protocol *innermost(tw_protocol *p)
{
    const tw_protocol_ops *wrapper_ops = p->ops;
    while (p->ops == wrapper_ops)
        p = ((tw_protocol_wrapper *)p)->wrapped;
    return p;
}

static tw_protocol_wrapper *W(tw_test_conn *c)
{
    return (tw_protocol_wrapper *)tw_test_conn_protocol(c);
}

static tw_string_transport_info info_of(tw_test_conn *c)
{
    tw_string_transport_info i;
    tw_string_transport_get_info(tw_test_conn_transport(c), &i);
    return i;
}

static void release_counted(void *arg)
{
    (*(int *)arg)++;
}

/* ============================================================ fact 40: wrappers */

static void count_each(tw_protocol_wrapper *w, void *arg)
{
    (*(int *)arg)++;
}

static void fact40_wrapper_forwards_the_transport(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    assert_non_null(wf);
    assert_true(tw_is_wrapping_factory(wf));
    assert_false(tw_is_wrapping_factory(&inner));
    assert_ptr_equal(tw_wrapping_factory_wrapped(wf), &inner);
    ev_clear();

    tw_test_conn *c = tw_test_conn_new(wf);
    assert_non_null(c);
    tw_protocol_wrapper *w = W(c);
    assert_ptr_equal(w->base.factory, wf);
    assert_non_null(w->wrapped);
    /* The wrapped protocol sees the wrapped factory and the wrapper's
     * transport. */
    assert_ptr_equal(last_factory_seen, &inner);
    assert_ptr_equal(last_transport_seen, &w->transport);
    assert_ptr_equal(w->wrapped->transport, &w->transport);
    assert_ptr_equal(tw_protocol_wrapper_of(w->wrapped->transport), w);
    assert_null(tw_protocol_wrapper_of(w->base.transport));
    assert_string_equal(w->transport.ops->kind, "wrapper");
    assert_ptr_equal(w->transport.protocol, w->wrapped);
    assert_int_equal(tw_wrapping_factory_count(wf), 1);
    int seen = 0;
    tw_wrapping_factory_each(wf, count_each, &seen);
    assert_int_equal(seen, 1);
    assert_string_equal(events, "made;");

    tw_protocol *p = w->wrapped;
    tw_transport *t = p->transport;
    assert_int_equal(tw_test_conn_feed_str(c, "ab"), 0);
    assert_string_equal(events, "made;data(ab);");

    /* Writes of every kind reach the real transport. */
    int released = 0;
    assert_int_equal(tw_transport_write(t, "one ", 4), 0);
    struct iovec iov[2] = { { "two", 3 }, { " ", 1 } };
    assert_int_equal(tw_transport_writev(t, iov, 2), 0);
    assert_int_equal(tw_transport_write_ref(t, "three", 5, release_counted, &released), 0);
    assert_int_equal(released, 1);
    assert_string_equal(tw_test_conn_written(c, NULL), "one two three");
    tw_string_transport_info i = info_of(c);
    assert_int_equal(i.write_calls, 2);
    assert_int_equal(i.writev_calls, 1);
    assert_int_equal(i.last_iovcnt, 2);

    /* Addresses, options and the rest. */
    tw_address a, b;
    assert_int_equal(tw_transport_get_peer(t, &a), 0);
    assert_int_equal(tw_transport_get_peer(w->base.transport, &b), 0);
    assert_true(tw_address_equal(&a, &b));
    assert_int_equal(tw_address_port(&a), 54321);
    assert_int_equal(tw_transport_get_host(t, &a), 0);
    assert_int_equal(tw_address_port(&a), 12345);
    assert_int_equal(tw_transport_set_tcp_nodelay(t, true), 0);
    assert_int_equal(tw_transport_buffered(t), 0);
    assert_int_equal(tw_transport_fd(t), -1);
    assert_ptr_equal(t->reactor, w->base.transport->reactor);

    /* Reading flow control. */
    tw_transport_pause_producing(t);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    tw_transport_resume_producing(t);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PRODUCING);
    tw_producer *as = tw_transport_as_producer(t);
    as->ops->pause_producing(as);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    as->ops->resume_producing(as);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PRODUCING);

    /* Closing is seen at once on both transports. */
    assert_true(tw_transport_connected(t));
    tw_transport_lose_connection(t);
    assert_false(tw_transport_connected(t));
    assert_int_equal(t->state, TW_TRANSPORT_DISCONNECTING);
    assert_int_equal(info_of(c).state, TW_TRANSPORT_DISCONNECTING);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(tw_transport_write(t, "x", 1), TW_ECLOSED);

    /* connection_lost reaches the wrapped protocol once, then the wrapper
     * drops (and frees) it. */
    assert_int_equal(tw_test_conn_lose(c, 0), 0);
    assert_string_equal(events, "made;data(ab);lost(done);destroy;");
    assert_null(w->wrapped);
    assert_int_equal(tw_wrapping_factory_count(wf), 0);
    assert_int_equal(w->transport.state, TW_TRANSPORT_CLOSED);
    tw_test_conn_free(c);
    assert_string_equal(events, "made;data(ab);lost(done);destroy;");
    tw_wrapping_factory_free(wf);
}

static void fact40_wrapper_forwards_producers(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    tw_test_conn *c = tw_test_conn_new(wf);
    tw_transport *t = W(c)->wrapped->transport;

    tw_test_strict_producer sp, other;
    tw_test_strict_producer_init(&sp);
    tw_test_strict_producer_init(&other);
    assert_int_equal(tw_transport_register_producer(t, &sp.base, true), 0);
    assert_int_equal(tw_transport_register_producer(t, &other.base, true), TW_EBUSY);
    tw_string_transport_info i = info_of(c);
    assert_non_null(i.producer);
    assert_true(i.streaming);
    /* What the transport below asks reaches the protocol's producer. */
    i.producer->ops->pause_producing(i.producer);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    i.producer->ops->resume_producing(i.producer);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    tw_transport_unregister_producer(t);
    assert_null(info_of(c).producer);

    /* A pull producer gets its turns. */
    puller pull = { { &puller_ops }, 0, 0, 0 };
    assert_int_equal(tw_transport_register_producer(t, &pull.base, false), 0);
    assert_false(info_of(c).streaming);
    i = info_of(c);
    i.producer->ops->resume_producing(i.producer);
    assert_int_equal(pull.resumes, 1);

    /* At the end the producer is stopped, once. */
    assert_int_equal(tw_test_conn_lose(c, -104 /* ECONNRESET */), 0);
    assert_int_equal(pull.stops, 1);
    assert_int_equal(sp.violations + other.violations, 0);
    assert_int_equal(other.pauses + other.resumes + other.stops, 0);
    tw_test_conn_free(c);
    tw_wrapping_factory_free(wf);
}

static void fact40_client_and_factory_hooks_are_forwarded(void **state)
{
    tw_factory inner = { &hooked_ops, &rec_ops, NULL, 0 };
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    ev_clear();
    tw_connector *fake = (tw_connector *)(uintptr_t)0x1000;
    wf->ops->started_connecting(wf, fake);
    tw_failure *why = tw_failure_new(TW_DOMAIN, TW_ECONNECTION_LOST, "gone");
    wf->ops->client_connection_failed(wf, fake, why);
    wf->ops->client_connection_lost(wf, fake, why);
    tw_failure_unref(why);
    char want[128];
    snprintf(want, sizeof want, "started(%p);failed(gone);clientlost(gone);", (void *)fake);
    assert_string_equal(events, want);

    /* start/stop follow Twisted's numPorts rule on both factories. */
    ev_clear();
    tw_factory_do_start(wf);
    tw_factory_do_start(wf);
    assert_string_equal(events, "start;");
    tw_factory_do_stop(wf);
    assert_string_equal(events, "start;");
    tw_wrapping_factory_free(wf); /* still used by a "port": kept */
    tw_factory_do_stop(wf);       /* the last stop frees it */
    assert_string_equal(events, "start;stop;");
    assert_int_equal(inner.num_ports, 0);
}

static tw_protocol *refuse_build(tw_factory *f, const tw_address *a)
{
    return NULL;
}

static const tw_factory_ops refusing_ops = { .build_protocol = refuse_build };

static void fact40_refusals_and_unconnected_wrappers(void **state)
{
    tw_factory refusing = { &refusing_ops, &rec_ops, NULL, 0 };
    tw_factory *wf = tw_wrapping_factory_new(&refusing, NULL, NULL);
    assert_null(tw_test_conn_new(wf)); /* the inner factory's "no" is ours */
    tw_wrapping_factory_free(wf);

    /* Built, never connected: the wrapped protocol is destroyed with it,
     * without connection_lost. */
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    ev_clear();
    tw_address addr;
    tw_address_from_ip(&addr, "127.0.0.1", 9, SOCK_STREAM);
    tw_protocol *p = tw_factory_build(wf, &addr);
    assert_non_null(p);
    assert_ptr_equal(p->factory, wf);
    tw_protocol_free(p);
    assert_string_equal(events, "destroy;");
    tw_wrapping_factory_free(wf);

    assert_null(tw_wrapping_factory_new(NULL, NULL, NULL));
    tw_wrapping_factory_free(NULL);
    tw_wrapping_factory_free(&inner); /* not ours: ignored */
}

/* A custom wrapper: its hooks, in order, around the wrapped protocol's. */
typedef struct counting {
    tw_protocol_wrapper w;
    size_t in, out;
} counting;

static void c_made(tw_protocol_wrapper *w)
{
    ev("w-made(%s);", w->wrapped->transport == &w->transport ? "wired" : "?");
}

static void c_data(tw_protocol_wrapper *w, const void *d, size_t n)
{
    ((counting *)w)->in += n;
    ev("w-data(%zu);", n);
}

static void c_wrote(tw_protocol_wrapper *w, size_t n)
{
    ((counting *)w)->out += n;
    ev("w-wrote(%zu);", n);
}

static void c_lost(tw_protocol_wrapper *w, const tw_failure *why)
{
    ev("w-lost(in %zu out %zu);", ((counting *)w)->in, ((counting *)w)->out);
}

static void c_destroy(tw_protocol_wrapper *w)
{
    ev("w-destroy;");
}

static const tw_wrapper_ops counting_ops = {
    .size = sizeof(counting),
    .connection_made = c_made,
    .data_received = c_data,
    .wrote = c_wrote,
    .connection_lost = c_lost,
    .destroy = c_destroy,
    .release = release_counted,
};

static void fact40_custom_wrapper_hooks(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&echo_ops, NULL);
    int released = 0;
    tw_factory *wf = tw_wrapping_factory_new(&inner, &counting_ops, &released);
    assert_ptr_equal(wf->user_data, &released);
    ev_clear();
    tw_test_conn *c = tw_test_conn_new(wf);
    tw_test_conn_feed_str(c, "hello");
    struct iovec iov[3] = { { "a", 1 }, { "bc", 2 }, { "def", 3 } };
    tw_transport_writev(W(c)->wrapped->transport, iov, 3);
    assert_string_equal(tw_test_conn_written(c, NULL), "helloabcdef");
    /* The owner lets go while the connection is open: kept until the end. */
    tw_wrapping_factory_free(wf);
    assert_int_equal(released, 0);
    tw_test_conn_lose(c, 0);
    tw_test_conn_free(c);
    assert_string_equal(events, "w-made(wired);w-data(5);w-wrote(5);w-wrote(6);w-lost(in 5 out 11);"
                                "w-destroy;");
    assert_int_equal(released, 1);
}

/* A LineReceiver behind a wrapper behaves as it does on its own, for every
 * split; and closing inside line_received stops the read (the wrapper's
 * transport state follows the real one). */
typedef struct lines {
    tw_line_receiver lr;
    char seen[256];
} lines;

static int lines_line(tw_protocol *p, const char *line, size_t len)
{
    lines *l = (lines *)p;
    size_t used = strlen(l->seen);
    snprintf(l->seen + used, sizeof l->seen - used, "[%.*s]", (int)len, line);
    tw_line_receiver_send_line(p, line, len);
    if (len == 4 && memcmp(line, "quit", 4) == 0)
        tw_transport_lose_connection(p->transport);
    return 0;
}

static const tw_line_receiver_ops lines_ops = {
    .base = TW_LINE_RECEIVER_BASE(lines),
    .line_received = lines_line,
};

static void check_lines(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    lines *l = (lines *)innermost(tw_test_conn_protocol(c));
    if (strcmp(l->seen, "[a][][b c][quit]") != 0)
        fail_msg("%s: %s", how->desc, l->seen);
    assert_string_equal(tw_test_conn_written(c, NULL), "a\r\n\r\nb c\r\nquit\r\n");
    assert_true(tw_test_conn_disconnecting(c));
}

static void fact40_receivers_work_through_wrappers(void **state)
{
    static const char wire[] = "a\r\n\r\nb c\r\nquit\r\nnever\r\n";
    tw_factory inner = TW_FACTORY_INIT(TW_PROTOCOL_OF(&lines_ops), NULL);
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    tw_test_conn_options o = { .factory = wf };
    assert_true(tw_test_feed_splits(&o, wire, sizeof wire - 1, check_lines, NULL) > 0);

    /* Two wrappers deep. */
    tw_factory *outer = tw_wrapping_factory_new(wf, NULL, NULL);
    o.factory = outer;
    assert_true(tw_test_feed_splits(&o, wire, sizeof wire - 1, check_lines, NULL) > 0);
    tw_test_conn *c = tw_test_conn_new(outer);
    tw_protocol_wrapper *w = W(c);
    tw_protocol_wrapper *in = (tw_protocol_wrapper *)w->wrapped;
    assert_ptr_equal(in->base.ops, w->base.ops);
    assert_ptr_equal(tw_protocol_wrapper_of(in->wrapped->transport), in);
    assert_ptr_equal(in->base.factory, wf);
    assert_ptr_equal(in->wrapped->factory, &inner);
    assert_ptr_equal(in->base.transport, &w->transport);
    tw_test_conn_free(c); /* lost, then destroyed: both layers */
    tw_wrapping_factory_free(outer);
    tw_wrapping_factory_free(wf);
}

static int eofs;

static void eof_hook(tw_protocol *p)
{
    eofs++;
}

static const tw_protocol_ops eof_ops = { .eof_received = eof_hook };

static void fact40_end_of_stream(void **state)
{
    /* Without eof_received the connection is lost, as a transport does. */
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    tw_test_conn *c = tw_test_conn_new(wf);
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(W(c)->wrapped->transport->state, TW_TRANSPORT_DISCONNECTING);
    tw_test_conn_free(c);
    tw_wrapping_factory_free(wf);

    tw_factory half = TW_FACTORY_INIT(&eof_ops, NULL);
    wf = tw_wrapping_factory_new(&half, NULL, NULL);
    c = tw_test_conn_new(wf);
    eofs = 0;
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_int_equal(eofs, 1);
    assert_false(tw_test_conn_disconnecting(c));
    /* The half-closing side goes on writing, then shuts its own side. */
    tw_transport *t = W(c)->wrapped->transport;
    assert_int_equal(tw_transport_write(t, "bye", 3), 0);
    assert_int_equal(tw_transport_lose_write_connection(t), 0);
    assert_true(info_of(c).write_shut);
    assert_string_equal(tw_test_conn_written(c, NULL), "bye");
    tw_transport_abort_connection(t);
    assert_true(info_of(c).aborted);
    assert_int_equal(t->state, TW_TRANSPORT_DISCONNECTING);
    tw_test_conn_free(c);

    /* stop_producing reaches the transport, which starts closing. */
    c = tw_test_conn_new(wf);
    t = W(c)->wrapped->transport;
    tw_transport_stop_producing(t);
    assert_int_equal(info_of(c).producer_state, TW_TEST_STOPPED);
    assert_int_equal(t->state, TW_TRANSPORT_DISCONNECTING);
    tw_test_conn_free(c);
    tw_wrapping_factory_free(wf);
}

static void holds_combine_with_flow_control(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *wf = tw_wrapping_factory_new(&inner, NULL, NULL);
    tw_test_conn *c = tw_test_conn_new(wf);
    tw_protocol_wrapper *w = W(c);
    tw_transport *t = w->wrapped->transport;

    /* Reads: a hold and the protocol's own pause; each keeps the transport
     * paused until both let go. */
    tw_protocol_wrapper_hold_reads(w, true);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    tw_transport_pause_producing(t);
    tw_protocol_wrapper_hold_reads(w, false);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    tw_transport_resume_producing(t);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PRODUCING);
    tw_transport_pause_producing(t);
    tw_protocol_wrapper_hold_reads(w, true);
    tw_transport_resume_producing(t);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    tw_protocol_wrapper_hold_reads(w, false);
    tw_protocol_wrapper_hold_reads(w, false); /* idempotent */
    assert_int_equal(info_of(c).producer_state, TW_TEST_PRODUCING);

    /* Writes, push producer: paused by the transport and by a hold, it
     * runs again only when both are over, and never gets a call twice. */
    tw_test_strict_producer sp;
    tw_test_strict_producer_init(&sp);
    assert_int_equal(tw_transport_register_producer(t, &sp.base, true), 0);
    tw_producer *membrane = info_of(c).producer;
    tw_protocol_wrapper_hold_writes(w, true);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    membrane->ops->pause_producing(membrane);
    tw_protocol_wrapper_hold_writes(w, false);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    membrane->ops->resume_producing(membrane);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    membrane->ops->pause_producing(membrane);
    tw_protocol_wrapper_hold_writes(w, true);
    membrane->ops->resume_producing(membrane);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    tw_protocol_wrapper_hold_writes(w, false);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    assert_int_equal(sp.pauses, 2);
    assert_int_equal(sp.resumes, 2);
    assert_int_equal(sp.violations, 0);
    tw_transport_unregister_producer(t);

    /* A producer registered during a hold starts paused. */
    tw_protocol_wrapper_hold_writes(w, true);
    tw_test_strict_producer late;
    tw_test_strict_producer_init(&late);
    assert_int_equal(tw_transport_register_producer(t, &late.base, true), 0);
    assert_int_equal(late.state, TW_TEST_PAUSED);
    tw_protocol_wrapper_hold_writes(w, false);
    assert_int_equal(late.state, TW_TEST_PRODUCING);
    tw_transport_unregister_producer(t);

    /* Pull producer: a turn that comes during a hold is given after it. */
    puller pull = { { &puller_ops }, 0, 0, 0 };
    assert_int_equal(tw_transport_register_producer(t, &pull.base, false), 0);
    membrane = info_of(c).producer;
    tw_protocol_wrapper_hold_writes(w, true);
    membrane->ops->resume_producing(membrane);
    assert_int_equal(pull.resumes, 0);
    tw_protocol_wrapper_hold_writes(w, false);
    assert_int_equal(pull.resumes, 1);
    assert_int_equal(late.violations, 0);

    /* No hold reaches a closing transport (it would be a misuse). */
    tw_transport_lose_connection(t);
    tw_protocol_wrapper_hold_reads(w, true);
    tw_protocol_wrapper_hold_reads(w, false);
    assert_int_equal(info_of(c).misuse, 0);
    tw_test_conn_free(c);
    tw_wrapping_factory_free(wf);
}

/* ============================================================ fact 36: TimeoutMixin */

typedef struct idle {
    tw_protocol base;
    tw_timeout_mixin to;
    int timeouts;
    bool custom;
} idle;

static void idle_timed_out(tw_protocol *p)
{
    ((idle *)p)->timeouts++;
}

static void idle_made(tw_protocol *p)
{
    idle *i = (idle *)p;
    tw_timeout_mixin_init(&i->to, p, NULL, p->factory->user_data ? idle_timed_out : NULL);
}

static void idle_data(tw_protocol *p, const void *d, size_t n)
{
    tw_timeout_mixin_reset_timeout(&((idle *)p)->to);
}

static void idle_lost(tw_protocol *p, const tw_failure *why)
{
    tw_timeout_mixin_cancel(&((idle *)p)->to);
}

static const tw_protocol_ops idle_ops = {
    .size = sizeof(idle),
    .connection_made = idle_made,
    .data_received = idle_data,
    .connection_lost = idle_lost,
};

static void fact36_timeout_mixin(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    int custom = 1;
    tw_test_conn_options o = { .protocol = &idle_ops, .reactor = r, .user_data = &custom };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    idle *i = (idle *)tw_test_conn_protocol(c);

    /* Nothing armed: reset does nothing. */
    tw_timeout_mixin_reset_timeout(&i->to);
    assert_int_equal(tw_reactor_timer_count(r), 0);

    assert_true(tw_timeout_mixin_set_timeout(&i->to, 5) == 0);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_clock_advance(r, 4.9);
    assert_int_equal(i->timeouts, 0);
    tw_test_conn_feed_str(c, "x"); /* activity pushes it back */
    tw_clock_advance(r, 4.9);
    assert_int_equal(i->timeouts, 0);
    tw_clock_advance(r, 0.2);
    assert_int_equal(i->timeouts, 1);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    /* Fired: reset does not re-arm. */
    tw_timeout_mixin_reset_timeout(&i->to);
    assert_int_equal(tw_reactor_timer_count(r), 0);

    /* setTimeout returns the previous value and re-arms from now. */
    assert_true(tw_timeout_mixin_set_timeout(&i->to, 5) == 5);
    tw_clock_advance(r, 3);
    assert_true(tw_timeout_mixin_set_timeout(&i->to, 10) == 5);
    tw_clock_advance(r, 9.9);
    assert_int_equal(i->timeouts, 1);
    tw_clock_advance(r, 0.2);
    assert_int_equal(i->timeouts, 2);

    /* None cancels; a timer cancelled elsewhere is tolerated. */
    tw_timeout_mixin_set_timeout(&i->to, 1);
    assert_true(tw_timeout_mixin_set_timeout(&i->to, 0) == 1);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_true(tw_timeout_mixin_set_timeout(&i->to, -1) == 0);
    tw_timeout_mixin_set_timeout(&i->to, 1);
    assert_int_equal(tw_timer_cancel(i->to.call), 0);
    assert_true(tw_timeout_mixin_set_timeout(&i->to, 0) == 1);
    tw_timeout_mixin_set_timeout(&i->to, 1);
    tw_timer_cancel(i->to.call);
    tw_timeout_mixin_reset_timeout(&i->to); /* cancelled elsewhere: no-op */
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_true(tw_timeout_mixin_set_timeout(&i->to, 2) == 1); /* arms afresh */
    tw_clock_advance(r, 2);
    assert_int_equal(i->timeouts, 3);
    assert_false(tw_test_conn_disconnecting(c)); /* the custom hook did not close */
    tw_test_conn_free(c);

    /* Default timeout_connection: lose the connection. */
    o.user_data = NULL;
    c = tw_test_conn_new_opts(&o);
    i = (idle *)tw_test_conn_protocol(c);
    tw_timeout_mixin_set_timeout(&i->to, 1);
    tw_clock_advance(r, 1);
    assert_true(tw_test_conn_disconnecting(c));
    /* Cancelled at connection_lost: no timer outlives the protocol. */
    tw_timeout_mixin_set_timeout(&i->to, 1);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);

    /* Without a reactor nothing is armed, but the value is kept. */
    tw_timeout_mixin m;
    tw_protocol bare = { 0 };
    tw_timeout_mixin_init(&m, &bare, NULL, NULL);
    assert_true(tw_timeout_mixin_set_timeout(&m, 3) == 0);
    assert_true(m.timeout == 3);
    assert_false(tw_timer_active(m.call));
    tw_reactor_free(r);
}

/* ============================================================ fact 37: TimeoutFactory */

static void fact37_timeout_factory(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_factory inner = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_factory *tf = tw_timeout_factory_new(&inner, 10);
    tw_test_conn_options o = { .factory = tf, .reactor = r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_transport *t = W(c)->wrapped->transport;

    tw_clock_advance(r, 9);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_feed_str(c, "ping"); /* received (and echoed) */
    tw_clock_advance(r, 9);
    assert_false(tw_test_conn_disconnecting(c));
    tw_transport_write(t, "unprompted", 10); /* only sent */
    tw_clock_advance(r, 9.9);
    assert_false(tw_test_conn_disconnecting(c));
    tw_clock_advance(r, 0.2);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(t->state, TW_TRANSPORT_DISCONNECTING);
    assert_string_equal(tw_test_conn_written(c, NULL), "pingunprompted");
    tw_test_conn_lose(c, 0);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);

    /* A protocol may change its own timeout through its transport. */
    c = tw_test_conn_new_opts(&o);
    t = W(c)->wrapped->transport;
    double prev = 0;
    assert_int_equal(tw_timeout_protocol_set_timeout(t, 2, &prev), 0);
    assert_true(prev == 10);
    tw_clock_advance(r, 2);
    assert_true(tw_test_conn_disconnecting(c));
    /* Lost before it fires: the timer goes with the connection. */
    tw_test_conn_free(c);
    c = tw_test_conn_new_opts(&o);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_wrapping_factory_free(tf);

    tw_test_conn *plain = tw_test_conn_new(&inner);
    assert_int_equal(tw_timeout_protocol_set_timeout(
                         tw_string_transport_base(tw_test_conn_transport(plain)), 1, NULL),
                     TW_ENOTFOUND);
    tw_test_conn_free(plain);

    /* No timeout: nothing armed, ever. */
    tf = tw_timeout_factory_new(&inner, 0);
    o.factory = tf;
    c = tw_test_conn_new_opts(&o);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 1e6);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    tw_wrapping_factory_free(tf);
    tw_reactor_free(r);
}

/* ============================================================ fact 38: limits */

static void busy_made(tw_protocol *p)
{
    last_factory_seen = p->factory;
    tw_transport_write_str(p->transport, "busy\r\n");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops busy_ops = { .connection_made = busy_made };

static void fact38_limit_total(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *lf = tw_limit_total_factory_new(&inner, 2, NULL);
    assert_int_equal(tw_limit_factory_count(lf), 0);
    tw_test_conn *a = tw_test_conn_new(lf), *b = tw_test_conn_new(lf);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(tw_limit_factory_count(lf), 2);
    tw_test_log *log = tw_test_log_capture(TW_LOG_INFO);
    assert_null(tw_test_conn_new(lf)); /* refused */
    assert_true(tw_test_log_contains(log, "policies", "connection limit (2) reached"));
    tw_test_log_release(log);
    assert_int_equal(tw_limit_factory_count(lf), 2);
    tw_test_conn_lose(a, 0); /* down at connection_lost */
    assert_int_equal(tw_limit_factory_count(lf), 1);
    tw_test_conn *c = tw_test_conn_new(lf);
    assert_non_null(c);
    assert_int_equal(tw_limit_factory_count(lf), 2);
    tw_test_conn_free(a);
    tw_test_conn_free(b);
    tw_test_conn_free(c);
    assert_int_equal(tw_limit_factory_count(lf), 0);

    /* Built and never connected: counted, then not. */
    tw_protocol *p = tw_factory_build(lf, NULL);
    assert_int_equal(tw_limit_factory_count(lf), 1);
    tw_protocol_free(p);
    assert_int_equal(tw_limit_factory_count(lf), 0);
    tw_wrapping_factory_free(lf);

    /* With an overflow protocol: built and counted too. */
    lf = tw_limit_total_factory_new(&inner, 1, &busy_ops);
    a = tw_test_conn_new(lf);
    assert_int_equal(tw_limit_factory_count(lf), 1);
    last_factory_seen = NULL;
    b = tw_test_conn_new(lf);
    assert_non_null(b);
    assert_int_equal(tw_limit_factory_count(lf), 2);
    assert_ptr_equal(last_factory_seen, &inner);
    assert_string_equal(tw_test_conn_written(b, NULL), "busy\r\n");
    assert_true(tw_test_conn_disconnecting(b));
    assert_string_equal(tw_test_conn_written(a, NULL), "");
    tw_test_conn_lose(b, 0);
    assert_int_equal(tw_limit_factory_count(lf), 1);
    tw_test_conn_free(b);
    tw_test_conn_free(a);
    assert_int_equal(tw_limit_factory_count(lf), 0);
    tw_wrapping_factory_free(lf);

    /* 0 allows none. */
    lf = tw_limit_total_factory_new(&inner, 0, NULL);
    log = tw_test_log_capture(TW_LOG_WARN); /* the refusal is info: not seen */
    assert_null(tw_test_conn_new(lf));
    tw_test_log_release(log);
    tw_wrapping_factory_free(lf);
    assert_int_equal(tw_limit_factory_count(&inner), 0);
}

static tw_protocol *build_from(tw_factory *f, const char *ip, uint16_t port)
{
    tw_address a;
    assert_int_equal(tw_address_from_ip(&a, ip, port, SOCK_STREAM), 0);
    return tw_factory_build(f, &a);
}

static size_t count_of(tw_factory *f, const char *ip)
{
    tw_address a;
    assert_int_equal(tw_address_from_ip(&a, ip, 1, SOCK_STREAM), 0);
    return tw_limit_per_peer_count(f, &a);
}

static void fact38_limit_per_peer(void **state)
{
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    tw_factory *lf = tw_limit_per_peer_factory_new(&inner, 2);
    tw_test_log *log = tw_test_log_capture(TW_LOG_INFO);
    tw_protocol *a1 = build_from(lf, "10.1.2.3", 1000);
    tw_protocol *a2 = build_from(lf, "10.1.2.3", 1001); /* the port does not matter */
    assert_non_null(a1);
    assert_non_null(a2);
    assert_null(build_from(lf, "10.1.2.3", 1002));
    assert_true(tw_test_log_contains(log, "policies", "10.1.2.3:1002 has 2 connections"));
    /* The same host through a dual-stack socket: still that host. */
    assert_null(build_from(lf, "::ffff:10.1.2.3", 1003));
    /* Others are counted apart, IPv6 included. */
    tw_protocol *b = build_from(lf, "10.1.2.4", 1000);
    tw_protocol *v6a = build_from(lf, "2001:db8::1", 1000);
    tw_protocol *v6b = build_from(lf, "2001:db8::1", 1001);
    tw_protocol *v6c = build_from(lf, "2001:db8::2", 1000);
    assert_non_null(b);
    assert_non_null(v6a);
    assert_non_null(v6b);
    assert_non_null(v6c);
    assert_null(build_from(lf, "2001:db8::1", 1002));
    assert_int_equal(count_of(lf, "10.1.2.3"), 2);
    assert_int_equal(count_of(lf, "::ffff:10.1.2.3"), 2);
    assert_int_equal(count_of(lf, "10.1.2.4"), 1);
    assert_int_equal(count_of(lf, "2001:db8::1"), 2);
    assert_int_equal(count_of(lf, "2001:db8::2"), 1);
    assert_int_equal(count_of(lf, "10.9.9.9"), 0);
    assert_int_equal(tw_limit_factory_count(lf), 6);
    tw_test_log_release(log);

    /* A connection that ends frees its place. */
    tw_string_transport *st = tw_string_transport_new(NULL);
    assert_int_equal(tw_string_transport_connect(st, a1), 0);
    assert_int_equal(tw_string_transport_end(st, 0), 0);
    assert_int_equal(count_of(lf, "10.1.2.3"), 1);
    tw_protocol *a3 = build_from(lf, "::ffff:10.1.2.3", 2000);
    assert_non_null(a3);
    tw_protocol_free(a1);
    tw_string_transport_free(st);
    tw_protocol *all[] = { a2, a3, b, v6a, v6b, v6c };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tw_protocol_free(all[i]);
    assert_int_equal(tw_limit_factory_count(lf), 0);
    assert_int_equal(count_of(lf, "10.1.2.3"), 0);

    /* Many peers: the table grows and shrinks back to nothing. */
    enum { PEERS = 3000 };
    tw_protocol **ps = calloc(PEERS, sizeof *ps);
    for (int i = 0; i < PEERS; i++) {
        char ip[64];
        if (i % 2)
            snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
        else
            snprintf(ip, sizeof ip, "fd00::%x:%x", i / 256, i % 256);
        ps[i] = build_from(lf, ip, 1);
        assert_non_null(ps[i]);
    }
    assert_int_equal(tw_limit_factory_count(lf), PEERS);
    assert_int_equal(count_of(lf, "10.3.3.1"), 1);
    for (int i = 0; i < PEERS; i++)
        tw_protocol_free(ps[i]);
    free(ps);
    assert_int_equal(tw_limit_factory_count(lf), 0);
    tw_wrapping_factory_free(lf);

    /* Unix peers count as one; 0 means Twisted's default of 5. */
    lf = tw_limit_per_peer_factory_new(&inner, 0);
    tw_address u;
    tw_address_from_unix(&u, "/tmp/x.sock", SOCK_STREAM);
    tw_protocol *us[5];
    for (int i = 0; i < 5; i++)
        assert_non_null(us[i] = tw_factory_build(lf, &u));
    log = tw_test_log_capture(TW_LOG_ERROR);
    assert_null(tw_factory_build(lf, &u));
    assert_null(tw_factory_build(lf, NULL));
    tw_test_log_release(log);
    for (int i = 0; i < 5; i++)
        tw_protocol_free(us[i]);
    tw_wrapping_factory_free(lf);
}

/* ============================================================ fact 39: throttling */

/* Registers the strict producer it is given (factory user_data) and echoes. */
static tw_test_strict_producer *next_producer;

static void prod_made(tw_protocol *p)
{
    if (next_producer) {
        assert_int_equal(tw_transport_register_producer(p->transport, &next_producer->base, true),
                         0);
        next_producer = NULL;
    }
}

static const tw_protocol_ops prod_echo_ops = {
    .connection_made = prod_made,
    .data_received = echo_data,
};

static tw_throttling_stats stats_of(tw_factory *f)
{
    tw_throttling_stats s;
    tw_throttling_factory_stats(f, &s);
    return s;
}

static void fact39_throttling_reads(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_factory inner = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_throttling_options opts = { .read_limit = 10 };
    tw_factory *tf = tw_throttling_factory_new(r, &inner, &opts);
    tw_test_conn_options o = { .factory = tf, .reactor = r };
    tw_test_conn *a = tw_test_conn_new_opts(&o), *b = tw_test_conn_new_opts(&o);
    assert_int_equal(stats_of(tf).connections, 2);

    /* 10 bytes in a second: within the limit. */
    tw_test_conn_feed(a, "0123456789", 10);
    assert_int_equal(stats_of(tf).read_this_second, 10);
    tw_clock_advance(r, 1);
    assert_false(stats_of(tf).reads_held);
    assert_int_equal(stats_of(tf).read_this_second, 0);

    /* 25 bytes: every connection pauses for 25/10 - 1 = 1.5 s. */
    tw_test_conn_feed(a, "0123456789", 10);
    tw_test_conn_feed(b, "012345678901234", 15);
    tw_clock_advance(r, 1);
    tw_throttling_stats s = stats_of(tf);
    assert_true(s.reads_held);
    assert_int_equal(s.read_holds, 1);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PAUSED);
    assert_int_equal(info_of(b).producer_state, TW_TEST_PAUSED);
    /* A connection made now is held as well. */
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PAUSED);
    /* (Advance to each whole second: a timer runs at the time advanced
     * to, as with Twisted's Clock, and the checks repeat from there.) */
    tw_clock_advance(r, 1);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PAUSED);
    tw_clock_advance(r, 0.5);
    assert_false(stats_of(tf).reads_held);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PRODUCING);
    assert_int_equal(info_of(b).producer_state, TW_TEST_PRODUCING);
    assert_int_equal(info_of(c).producer_state, TW_TEST_PRODUCING);
    /* Writes are not limited here: everything was echoed. */
    assert_string_equal(tw_test_conn_written(b, NULL), "012345678901234");
    assert_int_equal(stats_of(tf).write_holds, 0);

    /* A protocol's own pause outlives the hold. */
    tw_transport *ta = W(a)->wrapped->transport;
    tw_transport_pause_producing(ta);
    assert_int_equal(tw_test_conn_feed(a, "0123456789ABCDEFGHIJ", 20), 0);
    assert_int_equal(stats_of(tf).read_this_second, 20);
    tw_clock_advance(r, 0.5); /* the check: held for 1 s */
    assert_true(stats_of(tf).reads_held);
    tw_clock_advance(r, 1);
    assert_false(stats_of(tf).reads_held);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PAUSED);
    assert_int_equal(info_of(b).producer_state, TW_TEST_PRODUCING);
    tw_transport_resume_producing(ta);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PRODUCING);

    /* The timers run only while there are connections. */
    tw_test_conn_free(a);
    tw_test_conn_free(b);
    assert_true(tw_reactor_timer_count(r) > 0);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_int_equal(stats_of(tf).connections, 0);
    tw_wrapping_factory_free(tf);
    tw_reactor_free(r);
}

static void fact39_throttling_writes(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_factory inner = TW_FACTORY_INIT(&prod_echo_ops, NULL);
    tw_throttling_options opts = { .write_limit = 10 };
    tw_factory *tf = tw_throttling_factory_new(r, &inner, &opts);
    tw_test_conn_options o = { .factory = tf, .reactor = r };
    tw_test_strict_producer sp;
    tw_test_strict_producer_init(&sp);
    next_producer = &sp;
    tw_test_conn *a = tw_test_conn_new_opts(&o);
    tw_test_conn *quiet = tw_test_conn_new_opts(&o); /* no producer */

    /* writev counts its total. */
    tw_transport *t = W(a)->wrapped->transport;
    struct iovec iov[3] = { { "0123456789", 10 }, { "0123456789", 10 }, { "abcdefghij", 10 } };
    assert_int_equal(tw_transport_writev(t, iov, 3), 0);
    assert_int_equal(stats_of(tf).written_this_second, 30);
    assert_int_equal(info_of(a).writev_calls, 1);
    assert_int_equal(stats_of(tf).read_this_second, 0);
    tw_clock_advance(r, 1);
    /* 30 bytes, limit 10: the producer is paused for 2 s. */
    assert_true(stats_of(tf).writes_held);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PRODUCING); /* reading goes on */
    tw_test_conn_feed_str(quiet, "ok"); /* unheld without a producer (as in Twisted) */
    assert_string_equal(tw_test_conn_written(quiet, NULL), "ok");
    tw_clock_advance(r, 1.9);
    assert_int_equal(sp.state, TW_TEST_PAUSED);
    tw_clock_advance(r, 0.1);
    assert_int_equal(sp.state, TW_TEST_PRODUCING);
    assert_int_equal(stats_of(tf).write_holds, 1);
    assert_int_equal(sp.violations, 0);
    tw_test_conn_free(a);
    assert_int_equal(sp.stops, 1);
    tw_test_conn_free(quiet);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_wrapping_factory_free(tf);
    tw_reactor_free(r);
}

static void fact39_max_connections(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_factory inner = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_throttling_options opts = { .max_connections = 2, .read_limit = 100, .write_limit = 100 };
    tw_factory *tf = tw_throttling_factory_new(r, &inner, &opts);
    tw_test_conn_options o = { .factory = tf, .reactor = r };
    tw_test_conn *a = tw_test_conn_new_opts(&o), *b = tw_test_conn_new_opts(&o);
    tw_test_log *log = tw_test_log_capture(TW_LOG_INFO);
    assert_null(tw_test_conn_new_opts(&o));
    assert_true(tw_test_log_contains(log, "policies", "maximum connection count (2) reached"));
    tw_test_log_release(log);
    assert_int_equal(stats_of(tf).refused, 1);
    assert_int_equal(stats_of(tf).connections, 2);
    tw_test_conn_free(a);
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    tw_test_conn_free(b);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_wrapping_factory_free(tf);

    assert_null(tw_throttling_factory_new(NULL, &inner, NULL));
    tf = tw_throttling_factory_new(r, &inner, NULL); /* no limits at all */
    o.factory = tf;
    a = tw_test_conn_new_opts(&o);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_test_conn_free(a);
    tw_wrapping_factory_free(tf);
    tw_throttling_stats s = stats_of(&inner);
    assert_int_equal(s.connections, 0);
    tw_reactor_free(r);
}

/* ============================================================ composition */

/* A throttled, limited, idle-timed-out echo: each layer does its part. */
static void composed_policies(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_factory echo = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_factory *idle_f = tw_timeout_factory_new(&echo, 5);
    tw_factory *limited = tw_limit_total_factory_new(idle_f, 2, NULL);
    tw_throttling_options opts = { .read_limit = 100 };
    tw_factory *throttled = tw_throttling_factory_new(r, limited, &opts);
    tw_test_conn_options o = { .factory = throttled, .reactor = r };

    tw_test_conn *a = tw_test_conn_new_opts(&o), *b = tw_test_conn_new_opts(&o);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(tw_test_conn_new_opts(&o)); /* the limit, two layers down */
    assert_int_equal(stats_of(throttled).connections, 2);
    assert_int_equal(tw_limit_factory_count(limited), 2);
    assert_int_equal(tw_wrapping_factory_count(idle_f), 2);

    /* Echo through three wrappers. */
    tw_test_conn_feed_str(a, "hello");
    assert_string_equal(tw_test_conn_written(a, NULL), "hello");

    /* Throttling: 300 bytes in the first second hold reads for 2 s. */
    char big[295];
    memset(big, 'x', sizeof big);
    tw_test_conn_feed(b, big, sizeof big);
    tw_clock_advance(r, 1);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PAUSED);
    assert_int_equal(info_of(b).producer_state, TW_TEST_PAUSED);
    tw_clock_advance(r, 2);
    assert_int_equal(info_of(a).producer_state, TW_TEST_PRODUCING);
    assert_int_equal(info_of(b).producer_state, TW_TEST_PRODUCING);
    /* Idle: a was last active at t=0, b is active at t=3. */
    tw_test_conn_feed_str(b, "y");
    tw_clock_advance(r, 1.999);
    assert_false(tw_test_conn_disconnecting(a));
    tw_clock_advance(r, 0.001);
    assert_true(tw_test_conn_disconnecting(a));
    assert_false(tw_test_conn_disconnecting(b));
    tw_clock_advance(r, 3);
    assert_true(tw_test_conn_disconnecting(b));

    /* Lost: the limit lets one more in. */
    tw_test_conn_lose(a, 0);
    assert_int_equal(tw_limit_factory_count(limited), 1);
    assert_int_equal(stats_of(throttled).connections, 1);
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    tw_test_conn_free(a);
    tw_test_conn_free(b);
    tw_test_conn_free(c);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    assert_int_equal(tw_limit_factory_count(limited), 0);

    /* The factories may be let go in any order. */
    tw_wrapping_factory_free(limited);
    tw_wrapping_factory_free(idle_f);
    tw_wrapping_factory_free(throttled);

    /* The other way round, around a LineReceiver, for every split. */
    tw_factory lf = TW_FACTORY_INIT(TW_PROTOCOL_OF(&lines_ops), NULL);
    tw_factory *t2 = tw_throttling_factory_new(r, &lf, &opts);
    tw_factory *l2 = tw_limit_per_peer_factory_new(t2, 3);
    tw_factory *i2 = tw_timeout_factory_new(l2, 30);
    o.factory = i2;
    static const char wire[] = "a\r\n\r\nb c\r\nquit\r\nnever\r\n";
    /* check_lines looks one wrapper down; find the receiver instead. */
    assert_true(tw_test_feed_splits(&o, wire, sizeof wire - 1, NULL, NULL) > 0);
    tw_test_conn *d = tw_test_conn_new_opts(&o);
    tw_test_conn_feed_str(d, "x\r\nquit\r\ny\r\n");
    assert_string_equal(tw_test_conn_written(d, NULL), "x\r\nquit\r\n");
    tw_protocol_wrapper *w = W(d);
    for (int depth = 0; depth < 3; depth++) {
        assert_int_equal(w->transport.state, TW_TRANSPORT_DISCONNECTING);
        if (depth < 2)
            w = (tw_protocol_wrapper *)w->wrapped;
    }
    assert_ptr_equal(w->wrapped, innermost(tw_test_conn_protocol(d)));
    assert_ptr_equal(w->wrapped->factory, &lf);
    tw_test_conn_free(d);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_wrapping_factory_free(i2);
    tw_wrapping_factory_free(l2);
    tw_wrapping_factory_free(t2);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact40_wrapper_forwards_the_transport),
        cmocka_unit_test(fact40_wrapper_forwards_producers),
        cmocka_unit_test(fact40_client_and_factory_hooks_are_forwarded),
        cmocka_unit_test(fact40_refusals_and_unconnected_wrappers),
        cmocka_unit_test(fact40_custom_wrapper_hooks),
        cmocka_unit_test(fact40_receivers_work_through_wrappers),
        cmocka_unit_test(fact40_end_of_stream),
        cmocka_unit_test(holds_combine_with_flow_control),
        cmocka_unit_test(fact36_timeout_mixin),
        cmocka_unit_test(fact37_timeout_factory),
        cmocka_unit_test(fact38_limit_total),
        cmocka_unit_test(fact38_limit_per_peer),
        cmocka_unit_test(fact39_throttling_reads),
        cmocka_unit_test(fact39_throttling_writes),
        cmocka_unit_test(fact39_max_connections),
        cmocka_unit_test(composed_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
