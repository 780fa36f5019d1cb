/* ctest: label=integration timeout=240 */
/* TLS over real sockets (TCP on loopback, Unix): twirl against twirl through
 * listen/connect and the wrapping factories — the client factory's hooks,
 * handshake failures and their reasons, 100 MiB each way at once with slow
 * readers, half-close, garbage from a raw socket, and nothing left behind. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "net/tls_internal.h"
#include "tt.h"
#include "tt_tls.h"
#include "twirl/endpoint.h"
#include "twirl/log.h"
#include "twirl/tcp.h"
#include "twirl/tls.h"

static tt_certs *certs;

/* ------------------------------------------------------------ recorder */

typedef struct stats {
    int made, lost, eof;
    int lost_code, lost_tls;
    size_t received;
    char buf[1024];
    size_t buflen;
    const char *hello;
    bool echo, close_on_data;
    char alpn[16];
    /* client factory hooks */
    int started, failed, client_lost;
    int failed_tls, client_lost_code;
    char failed_msg[512];
} stats;

static stats *st(tw_protocol *p)
{
    return p->factory->user_data;
}

static void rec_made(tw_protocol *p)
{
    stats *s = st(p);
    s->made++;
    const char *a = tw_tls_negotiated_protocol(p->transport);
    snprintf(s->alpn, sizeof s->alpn, "%s", a ? a : "");
    if (s->hello)
        tw_transport_write_str(p->transport, s->hello);
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    stats *s = st(p);
    size_t n = len < sizeof s->buf - s->buflen ? len : sizeof s->buf - s->buflen;
    memcpy(s->buf + s->buflen, data, n);
    s->buflen += n;
    s->received += len;
    if (s->echo)
        tw_transport_write(p->transport, data, len);
    if (s->close_on_data)
        tw_transport_lose_connection(p->transport);
}

static void rec_eof(tw_protocol *p)
{
    st(p)->eof++;
    tw_transport_lose_connection(p->transport);
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = st(p);
    s->lost++;
    s->lost_code = tw_failure_code(reason);
    s->lost_tls = tw_tls_failure_reason(reason);
}

static const tw_protocol_ops rec_ops = {
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
};

static void hook_started(tw_factory *f, tw_connector *c)
{
    ((stats *)f->user_data)->started++;
}

static void hook_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    stats *s = f->user_data;
    s->failed++;
    s->failed_tls = tw_tls_failure_reason(reason);
    snprintf(s->failed_msg, sizeof s->failed_msg, "%s", tw_failure_message(reason));
}

static void hook_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    stats *s = f->user_data;
    s->client_lost++;
    s->client_lost_code = tw_failure_code(reason);
}

static const tw_factory_ops client_hooks = {
    .started_connecting = hook_started,
    .client_connection_failed = hook_failed,
    .client_connection_lost = hook_lost,
};

typedef struct want {
    stats *s;
    size_t bytes;
    int lost, failed, client_lost;
} want;

static bool got(void *arg)
{
    want *w = arg;
    return w->s->received >= w->bytes && w->s->lost >= w->lost && w->s->failed >= w->failed &&
           w->s->client_lost >= w->client_lost;
}

static tw_tls_context *server_ctx(const tw_tls_server_options *extra)
{
    tw_tls_server_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.cert.cert_file)
        o.cert = (tw_tls_certificate){ certs->server, certs->server_key, NULL };
    tw_tls_context *ctx;
    assert_int_equal(tw_tls_server_context_new(&o, &ctx), 0);
    return ctx;
}

static tw_tls_context *client_ctx(const tw_tls_client_options *extra)
{
    tw_tls_client_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.trust_roots)
        o.trust_roots = certs->ca;
    tw_tls_context *ctx;
    assert_int_equal(tw_tls_client_context_new(&o, &ctx), 0);
    return ctx;
}

static uint16_t port_of(tw_port *p)
{
    return tw_address_port(tw_port_address(p));
}

/* ------------------------------------------------------------ echo */

static void tcp_echo_and_client_hooks(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    ss.echo = true;
    cs.hello = "hello TLS over TCP";
    cs.close_on_data = true;
    tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory cin = TW_FACTORY_INIT(&rec_ops, &cs);
    cin.ops = &client_hooks;
    tw_tls_server_options so = { .alpn = "h2,http/1.1" };
    tw_tls_client_options co = { .alpn = "http/1.1" };
    tw_tls_context *sctx = server_ctx(&so), *cctx = client_ctx(&co);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
    tw_factory *cf = tw_tls_factory_new(cctx, "localhost", &cin);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, sf, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, cf, NULL), 0);
    want w = { &cs, 18, 1, 0, 1 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_memory_equal(cs.buf, "hello TLS over TCP", 18);
    assert_string_equal(cs.alpn, "http/1.1");
    assert_string_equal(ss.alpn, "http/1.1");
    assert_int_equal(cs.started, 1);
    assert_int_equal(cs.failed, 0);
    assert_int_equal(cs.client_lost, 1);
    assert_int_equal(cs.client_lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(cs.lost_code, TW_ECONNECTION_DONE);
    want ws = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &ws, 5));
    assert_int_equal(ss.eof, 1); /* the client's close_notify */
    assert_int_equal(ss.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_port_stop_listening(port);
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    tw_reactor_free(r);
}

static void unix_socket(void **state)
{
    tw_reactor *r = tt_reactor();
    char *dir = tt_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/tls.sock", dir);
    stats ss = { 0 }, cs = { 0 };
    ss.echo = true;
    cs.hello = "over unix";
    cs.close_on_data = true;
    tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory cin = TW_FACTORY_INIT(&rec_ops, &cs);
    tw_tls_context *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
    tw_factory *cf = tw_tls_factory_new(cctx, "localhost", &cin);
    tw_port *port;
    assert_int_equal(tw_listen_unix(r, path, NULL, sf, &port), 0);
    assert_int_equal(tw_connect_unix(r, path, NULL, cf, NULL), 0);
    want w = { &cs, 9, 1 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_memory_equal(cs.buf, "over unix", 9);
    want ws = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &ws, 5));
    tw_port_stop_listening(port);
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    tw_reactor_free(r);
    tt_rmdir(dir);
}

/* ------------------------------------------------------------ failures */

typedef struct fcase {
    const char *what;
    tw_tls_server_options so;
    tw_tls_client_options co;
    const char *name;
    int code;
} fcase;

static void handshake_failures_reach_client_factory(void **state)
{
    fcase cases[] = {
        { .what = "unknown CA",
          .so = { .cert = { certs->rogue, certs->rogue_key } },
          .name = "localhost",
          .code = TW_TLS_ERR_UNKNOWN_CA },
        { .what = "wrong host", .name = "wrong.example", .code = TW_TLS_ERR_HOSTNAME },
        { .what = "expired",
          .so = { .cert = { certs->expired, certs->expired_key } },
          .name = "localhost",
          .code = TW_TLS_ERR_EXPIRED },
        { .what = "protocol version",
          .so = { .min_version = TW_TLS_1_3 },
          .co = { .max_version = TW_TLS_1_2 },
          .name = "localhost",
          .code = TW_TLS_ERR_PROTOCOL_VERSION },
        { .what = "client certificate required",
          .so = { .ca_file = certs->ca },
          .co = { .max_version = TW_TLS_1_2 },
          .name = "localhost",
          .code = TW_TLS_ERR_HANDSHAKE },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds = tt_open_fds();
        tw_reactor *r = tt_reactor();
        stats ss = { 0 }, cs = { 0 };
        cs.hello = "secret";
        tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
        tw_factory cin = TW_FACTORY_INIT(&rec_ops, &cs);
        cin.ops = &client_hooks;
        tw_tls_context *sctx = server_ctx(&cases[i].so), *cctx = client_ctx(&cases[i].co);
        tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
        tw_factory *cf = tw_tls_factory_new(cctx, cases[i].name, &cin);
        tw_port *port;
        assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, sf, &port), 0);
        assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, cf, NULL), 0);
        want w = { &cs, 0, 0, 1 };
        assert_true(tt_run_until(r, got, &w, 10));
        print_message("  %s: %s\n", cases[i].what, cs.failed_msg);
        assert_int_equal(cs.failed_tls, cases[i].code);
        assert_int_equal(cs.made, 0);
        assert_int_equal(cs.client_lost, 0);
        /* the server side goes too, and never made its protocol */
        for (int k = 0; k < 100 && tw_reactor_connection_count(r) > 0; k++)
            tw_reactor_iterate(r, 0.05);
        assert_int_equal(tw_reactor_connection_count(r), 0);
        assert_int_equal(ss.made, 0);
        tw_port_stop_listening(port);
        tw_tls_factory_free(sf);
        tw_tls_factory_free(cf);
        tw_tls_context_unref(sctx);
        tw_tls_context_unref(cctx);
        tw_reactor_free(r);
        assert_int_equal(tt_open_fds(), fds);
    }
}

/* Random bytes from a raw socket: the server answers with at most an alert
 * and closes; its protocol is never made. */
static void garbage_from_raw_socket(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_tls_context *sctx = server_ctx(NULL);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, sf, &port), 0);
    tw_log_level old = tw_log_get_level();
    tw_log_set_level(TW_LOG_ERROR); /* the refused handshakes are logged at info */
    srand(7);
    for (int round = 0; round < 20; round++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port_of(port)) };
        a.sin_addr.s_addr = htonl(0x7f000001);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        unsigned char junk[2048];
        size_t n = 1 + (size_t)rand() % sizeof junk;
        for (size_t k = 0; k < n; k++)
            junk[k] = (unsigned char)rand();
        if (round % 2)
            memcpy(junk, "\x16\x03\x01\x00\x20", n < 5 ? n : 5);
        assert_int_equal(write(fd, junk, n), (ssize_t)n);
        /* keep writing junk until the server hangs up */
        struct timeval tv = { 0, 20000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        bool closed = false;
        for (int k = 0; k < 200 && !closed; k++) {
            tw_reactor_iterate(r, 0.01);
            char buf[256];
            ssize_t got_n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got_n == 0 || (got_n < 0 && errno == ECONNRESET))
                closed = true;
            else if (got_n < 0 && errno == EAGAIN)
                send(fd, junk, n, MSG_NOSIGNAL);
        }
        assert_true(closed);
        close(fd);
    }
    tw_log_set_level(old);
    for (int k = 0; k < 100 && tw_reactor_connection_count(r) > 0; k++)
        tw_reactor_iterate(r, 0.02);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    assert_int_equal(ss.made, 0);
    tw_port_stop_listening(port);
    tw_tls_factory_free(sf);
    tw_tls_context_unref(sctx);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ bulk */

/* Each side streams `total` bytes of a pattern through a push producer and
 * checks what it reads, pausing its reading for a moment every 8 MiB. When
 * it sent everything it half-closes (close_notify); when it also read the
 * peer's end, it closes. */
typedef struct xfer {
    tw_protocol base;
    tw_producer prod;
    size_t sent, got, bad;
    int paused, pauses_by_peer, read_pauses;
    bool shut, eof;
    tw_timer resume;
} xfer;

typedef struct xfer_stats {
    size_t total;
    int done, lost_clean, lost;
    size_t got[2], bad[2];
    int pauses[2];
    tw_reactor *r;
} xfer_stats;

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void xfer_fill(xfer *x)
{
    xfer_stats *xs = x->base.factory->user_data;
    static unsigned char chunk[65536];
    while (!x->paused && x->sent < xs->total && !x->shut) {
        size_t n = xs->total - x->sent < sizeof chunk ? xs->total - x->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(x->sent + i);
        assert_int_equal(tw_transport_write(x->base.transport, chunk, n), 0);
        x->sent += n;
    }
    if (x->sent == xs->total && !x->shut) {
        x->shut = true;
        tw_transport_unregister_producer(x->base.transport);
        assert_int_equal(tw_transport_lose_write_connection(x->base.transport), 0);
        if (x->eof)
            tw_transport_lose_connection(x->base.transport);
    }
}

static void xp_pause(tw_producer *p)
{
    xfer *x = (xfer *)((char *)p - offsetof(xfer, prod));
    x->paused = 1;
    x->pauses_by_peer++;
}

static void xp_resume(tw_producer *p)
{
    xfer *x = (xfer *)((char *)p - offsetof(xfer, prod));
    x->paused = 0;
    xfer_fill(x);
}

static void xp_stop(tw_producer *p)
{
}

static const tw_producer_ops xp_ops = { xp_pause, xp_resume, xp_stop };

static void xfer_made(tw_protocol *p)
{
    xfer *x = (xfer *)p;
    x->prod.ops = &xp_ops;
    assert_int_equal(tw_transport_register_producer(p->transport, &x->prod, true), 0);
    xfer_fill(x);
}

static void xfer_resume_reading(void *arg)
{
    xfer *x = arg;
    x->resume = TW_TIMER_NONE;
    tw_transport_resume_producing(x->base.transport);
}

static void xfer_data(tw_protocol *p, const void *data, size_t len)
{
    xfer *x = (xfer *)p;
    xfer_stats *xs = p->factory->user_data;
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++)
        x->bad += b[i] != pattern(x->got + i);
    size_t before = x->got;
    x->got += len;
    if (before >> 23 != x->got >> 23) { /* every 8 MiB: a slow reader */
        x->read_pauses++;
        tw_transport_pause_producing(p->transport);
        x->resume = tw_call_later(xs->r, 0.002, xfer_resume_reading, x);
    }
}

static void xfer_eof(tw_protocol *p)
{
    xfer *x = (xfer *)p;
    x->eof = true;
    if (x->shut)
        tw_transport_lose_connection(p->transport);
}

static void xfer_lost(tw_protocol *p, const tw_failure *reason)
{
    xfer *x = (xfer *)p;
    xfer_stats *xs = p->factory->user_data;
    tw_timer_cancel(x->resume);
    int side = xs->lost;
    xs->got[side] = x->got;
    xs->bad[side] = x->bad;
    xs->pauses[side] = x->pauses_by_peer;
    xs->lost++;
    if (tw_failure_code(reason) == TW_ECONNECTION_DONE)
        xs->lost_clean++;
    else
        tw_failure_log(reason, TW_LOG_ERROR, "xfer lost");
}

static const tw_protocol_ops xfer_ops = {
    .size = sizeof(xfer),
    .connection_made = xfer_made,
    .data_received = xfer_data,
    .eof_received = xfer_eof,
    .connection_lost = xfer_lost,
};

static bool both_lost(void *arg)
{
    return ((xfer_stats *)arg)->lost == 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void big_transfer_both_ways(void **state)
{
    tw_reactor *r = tt_reactor();
    xfer_stats xs = { .total = RUNNING_ON_VALGRIND ? 8u << 20 : 100u << 20, .r = r };
    tw_factory in = TW_FACTORY_INIT(&xfer_ops, &xs);
    tw_tls_context *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &in);
    tw_factory *cf = tw_tls_factory_new(cctx, "localhost", &in);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, sf, &port), 0);
    double t0 = now_s();
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, cf, NULL), 0);
    assert_true(tt_run_until(r, both_lost, &xs, 200));
    double secs = now_s() - t0;
    print_message("  %zu MiB each way in %.2f s (%.0f MiB/s of plaintext in total)\n",
                  xs.total >> 20, secs, 2.0 * (double)(xs.total >> 20) / secs);
    assert_int_equal(xs.got[0], xs.total);
    assert_int_equal(xs.got[1], xs.total);
    assert_int_equal(xs.bad[0] + xs.bad[1], 0);
    assert_int_equal(xs.lost_clean, 2);
    assert_true(xs.pauses[0] + xs.pauses[1] > 0); /* backpressure reached the producers */
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_port_stop_listening(port);
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    tw_reactor_free(r);
}

/* Many handshakes at once, some failing, then the reactor is freed with
 * connections half-way: nothing leaks (ASan/valgrind runs check). */
static void many_handshakes_and_teardown(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 }, bs = { 0 };
    ss.echo = true;
    cs.hello = "x";
    cs.close_on_data = true;
    tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory cin = TW_FACTORY_INIT(&rec_ops, &cs);
    cin.ops = &client_hooks;
    tw_factory bin = TW_FACTORY_INIT(&rec_ops, &bs);
    bin.ops = &client_hooks;
    tw_tls_context *sctx = server_ctx(NULL), *cctx = client_ctx(NULL);
    tw_tls_client_options bad = { .trust_roots = certs->rogue_ca };
    tw_tls_context *bctx = client_ctx(&bad);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
    tw_factory *cf = tw_tls_factory_new(cctx, "localhost", &cin);
    tw_factory *bf = tw_tls_factory_new(bctx, "localhost", &bin);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, sf, &port), 0);
    int n = RUNNING_ON_VALGRIND ? 10 : 100;
    tw_log_level old = tw_log_get_level();
    tw_log_set_level(TW_LOG_ERROR);
    for (int i = 0; i < n; i++) {
        assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, cf, NULL), 0);
        assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, bf, NULL), 0);
    }
    want w = { &cs, 0, 0, 0, n };
    assert_true(tt_run_until(r, got, &w, 60));
    want wb = { &bs, 0, 0, n };
    assert_true(tt_run_until(r, got, &wb, 30));
    assert_int_equal(bs.failed_tls, TW_TLS_ERR_UNKNOWN_CA);
    assert_int_equal(cs.made, n);
    /* Leave some mid-handshake when the reactor goes. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, cf, NULL), 0);
    tw_reactor_iterate(r, 0.001);
    tw_log_set_level(old);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    tw_tls_factory_free(bf);
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    tw_tls_context_unref(bctx);
}

/* ------------------------------------------------------------ endpoints */

typedef struct outcome {
    int fired, ok, made_then;
    tw_protocol *proto;
    int code, tls;
    char message[400];
    stats *s;
} outcome;

static tw_result on_ok(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    o->ok = 1;
    o->proto = in->value.ptr;
    o->made_then = o->s ? o->s->made : 0;
    return TW_RESULT_NONE;
}

static tw_result on_err(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    o->code = tw_failure_code(in->failure);
    o->tls = tw_tls_failure_reason(in->failure);
    snprintf(o->message, sizeof o->message, "%s", tw_failure_message(in->failure));
    return TW_RESULT_NONE;
}

static bool fired(void *arg)
{
    return ((outcome *)arg)->fired > 0;
}

static void connect_str(tw_reactor *r, const char *desc, tw_factory *f, outcome *o)
{
    tw_client_endpoint *ep;
    char err[TW_ENDPOINT_ERR_MAX];
    if (tw_client_endpoint_from_string(r, desc, &ep, err, sizeof err) < 0)
        fail_msg("%s", err);
    tw_deferred *d = tw_endpoint_connect(ep, f);
    tw_client_endpoint_free(ep); /* attempts outlive their endpoint */
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callbacks(d, on_ok, on_err, o), 0);
    tw_deferred_unref(d);
}

static tw_deferred *connect_keep(tw_reactor *r, const char *desc, tw_factory *f, outcome *o)
{
    tw_client_endpoint *ep;
    char err[TW_ENDPOINT_ERR_MAX];
    if (tw_client_endpoint_from_string(r, desc, &ep, err, sizeof err) < 0)
        fail_msg("%s", err);
    tw_deferred *d = tw_endpoint_connect(ep, f);
    tw_client_endpoint_free(ep);
    assert_int_equal(tw_deferred_add_callbacks(d, on_ok, on_err, o), 0);
    return d;
}

static void no_client_hook(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    fail_msg("endpoints must not call the user's client hooks");
}

static const tw_factory_ops no_hooks = {
    .client_connection_failed = no_client_hook,
    .client_connection_lost = no_client_hook,
};

static bool both_gone(void *arg)
{
    return tw_reactor_connection_count(arg) == 0;
}

static void endpoint_strings(void **state)
{
    tw__tls_endpoints_register();
    int fds = tt_open_fds();
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    ss.echo = true;
    tw_factory sin = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory cin = { &no_hooks, &rec_ops, &cs, 0 };
    char desc[2048], err[TW_ENDPOINT_ERR_MAX];
    snprintf(desc, sizeof desc,
             "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s:alpn=h2,http/1.1",
             certs->server_key, certs->server);
    tw_server_endpoint *sep;
    assert_int_equal(tw_server_endpoint_from_string(r, desc, &sep, err, sizeof err), 0);
    tw_port *port;
    assert_int_equal(tw_endpoint_listen_err(sep, &sin, &port, err, sizeof err), 0);
    tw_server_endpoint_free(sep); /* the port outlives its endpoint */
    uint16_t pn = port_of(port);

    /* Connected: the deferred fires after the handshake, with the user's
     * protocol, after its connection_made. */
    snprintf(desc, sizeof desc, "tls:localhost:%u:trustRoots=%s:alpn=h2", pn, certs->ca);
    outcome o = { .s = &cs };
    connect_str(r, desc, &cin, &o);
    assert_int_equal(o.fired, 0);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_true(o.ok);
    assert_int_equal(o.made_then, 1);
    assert_ptr_equal(o.proto->factory, &cin);
    assert_string_equal(tw_tls_negotiated_protocol(o.proto->transport), "h2");
    assert_string_equal(cs.alpn, "h2");
    tw_transport_write_str(o.proto->transport, "hello");
    want w = { &cs, 5 };
    assert_true(tt_run_until(r, got, &w, 5));
    tw_transport_lose_connection(o.proto->transport);
    assert_true(tt_run_until(r, both_gone, r, 5));
    assert_int_equal(cs.lost_code, TW_ECONNECTION_DONE);

    /* The same through an explicit endpoint below, and a trust directory. */
    snprintf(desc, sizeof desc, "tls:host=localhost:trustRoots=%s:endpoint=tcp\\:127.0.0.1\\:%u",
             certs->dir, pn);
    outcome o2 = { .s = &cs };
    connect_str(r, desc, &cin, &o2);
    assert_true(tt_run_until(r, fired, &o2, 10));
    assert_true(o2.ok);
    tw_transport_abort_connection(o2.proto->transport);
    assert_true(tt_run_until(r, both_gone, r, 5));

    /* A certificate nobody vouches for: the TLS reason, no protocol. */
    int made = cs.made;
    snprintf(desc, sizeof desc, "tls:localhost:%u:trustRoots=%s", pn, certs->rogue_ca);
    outcome o3 = { 0 };
    connect_str(r, desc, &cin, &o3);
    assert_true(tt_run_until(r, fired, &o3, 10));
    assert_false(o3.ok);
    assert_int_equal(o3.tls, TW_TLS_ERR_UNKNOWN_CA);
    assert_int_equal(cs.made, made);
    print_message("  %s\n", o3.message);

    /* Refused below: the TCP reason. */
    tw_port_stop_listening(port);
    outcome o4 = { 0 };
    snprintf(desc, sizeof desc, "tls:localhost:%u:trustRoots=%s", pn, certs->ca);
    connect_str(r, desc, &cin, &o4);
    assert_true(tt_run_until(r, fired, &o4, 10));
    assert_false(o4.ok);
    assert_int_equal(o4.code, -ECONNREFUSED);

    /* Cancelled during the handshake (a plain server that never answers). */
    stats ps = { 0 };
    tw_factory plain = TW_FACTORY_INIT(&rec_ops, &ps);
    tw_port *pport;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &plain, &pport), 0);
    snprintf(desc, sizeof desc, "tls:localhost:%u:trustRoots=%s", port_of(pport), certs->ca);
    outcome o5 = { 0 };
    tw_deferred *d = connect_keep(r, desc, &cin, &o5);
    want wp = { &ps, 10 }; /* the ClientHello arrived */
    assert_true(tt_run_until(r, got, &wp, 5));
    assert_int_equal(o5.fired, 0);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    assert_int_equal(o5.fired, 1);
    assert_int_equal(o5.code, TW_ECANCELED);
    assert_true(tt_run_until(r, both_gone, r, 5));
    assert_int_equal(ps.lost, 1);

    /* Cancelled before the connection below is up. */
    outcome o6 = { 0 };
    d = connect_keep(r, desc, &cin, &o6);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    assert_int_equal(o6.code, TW_ECANCELED);
    tt_run_for(r, 0.05);
    assert_true(tt_run_until(r, both_gone, r, 5));
    tw_port_stop_listening(pport);
    tw_reactor_free(r);
    assert_int_equal(tt_open_fds(), fds);
}

static int setup(void **state)
{
    certs = tt_certs_make();
    return 0;
}

static int teardown(void **state)
{
    tt_certs_free(certs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_echo_and_client_hooks),
        cmocka_unit_test(unix_socket),
        cmocka_unit_test(handshake_failures_reach_client_factory),
        cmocka_unit_test(garbage_from_raw_socket),
        cmocka_unit_test(big_transfer_both_ways),
        cmocka_unit_test(many_handshakes_and_teardown),
        cmocka_unit_test(endpoint_strings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
