/* ctest: label=unit timeout=180 backends=once */
/* TLS over in-memory transports (the test pump, the string transport) on a
 * fake clock: handshakes, ALPN, SNI, verification failures and their
 * reasons, closing, half-close, flow control, startTLS, resumption, bad
 * input and configuration errors. No sockets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "net/tls_internal.h"
#include "tt.h"
#include "tt_tls.h"
#include "twirl/endpoint.h"
#include "twirl/log.h"
#include "twirl/testing.h"
#include "twirl/tls.h"

static tt_certs *certs;

/* ------------------------------------------------------------ recorder */

typedef struct stats {
    int made, lost, eof, data_calls;
    int lost_code, lost_tls; /* failure code; TLS reason in its chain */
    size_t received;
    char buf[4096];
    size_t buflen;
    int after_lost;
    char alpn[32];     /* negotiated protocol seen in connection_made */
    char subject[128]; /* peer subject seen in connection_made */
    char version[16];
    char sni[64];
    bool verified, reused;
    /* behaviour */
    const char *hello; /* written in connection_made */
    bool echo;
    bool close_after_hello;   /* lose_connection right after hello */
    bool shut_after_hello;    /* lose_write_connection right after hello */
    const char *reply_on_eof; /* written in eof_received, then lose */
    /* start_tls */
    int hs_done, hs_failed, hs_code;
    tw_protocol *self; /* the protocol, while connected */
} stats;

typedef struct peer {
    tw_protocol base;
    int lost;
} peer;

static stats *st(tw_protocol *p)
{
    return p->factory->user_data;
}

static void copy_str(char *dst, size_t size, const char *s)
{
    snprintf(dst, size, "%s", s ? s : "");
}

static void rec_made(tw_protocol *p)
{
    stats *s = st(p);
    s->made++;
    s->self = p;
    tw_transport *t = p->transport;
    assert_true(tw_transport_is_tls(t));
    copy_str(s->alpn, sizeof s->alpn, tw_tls_negotiated_protocol(t));
    copy_str(s->version, sizeof s->version, tw_tls_version_name(t));
    copy_str(s->sni, sizeof s->sni, tw_tls_server_name(t));
    tw_tls_peer_subject(t, s->subject, sizeof s->subject);
    s->verified = tw_tls_peer_verified(t);
    s->reused = tw_tls_session_reused(t);
    if (s->hello)
        tw_transport_write_str(t, s->hello);
    if (s->close_after_hello)
        tw_transport_lose_connection(t);
    if (s->shut_after_hello)
        assert_int_equal(tw_transport_lose_write_connection(t), 0);
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    stats *s = st(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    size_t n = len < sizeof s->buf - s->buflen ? len : sizeof s->buf - s->buflen;
    memcpy(s->buf + s->buflen, data, n);
    s->buflen += n;
    s->received += len;
    s->data_calls++;
    if (s->echo)
        tw_transport_write(p->transport, data, len);
}

static void rec_eof(tw_protocol *p)
{
    stats *s = st(p);
    s->eof++;
    if (s->reply_on_eof) {
        tw_transport_write_str(p->transport, s->reply_on_eof);
        tw_transport_lose_connection(p->transport);
    }
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = st(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    ((peer *)p)->lost = 1;
    s->lost++;
    s->lost_code = tw_failure_code(reason);
    s->lost_tls = tw_tls_failure_reason(reason);
    s->self = NULL;
}

static const tw_protocol_ops rec_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
};

/* Without eof_received: a close_notify closes. */
static const tw_protocol_ops rec_noeof_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
};

/* ------------------------------------------------------------ set-up */

static tw_tls_context *server_ctx(const tw_tls_server_options *extra)
{
    tw_tls_server_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.cert.cert_file) {
        o.cert.cert_file = certs->server;
        o.cert.key_file = certs->server_key;
    }
    tw_tls_context *ctx = NULL;
    assert_int_equal(tw_tls_server_context_new(&o, &ctx), 0);
    assert_true(tw_tls_context_is_server(ctx));
    return ctx;
}

static tw_tls_context *client_ctx(const tw_tls_client_options *extra)
{
    tw_tls_client_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.trust_roots && !o.insecure_no_verify)
        o.trust_roots = certs->ca;
    tw_tls_context *ctx = NULL;
    assert_int_equal(tw_tls_client_context_new(&o, &ctx), 0);
    assert_false(tw_tls_context_is_server(ctx));
    return ctx;
}

/* One pump between a TLS server and a TLS client. */
typedef struct duo {
    tw_reactor *r;
    tw_tls_context *sctx, *cctx;
    tw_factory sinner, cinner;
    tw_factory *sf, *cf;
    tw_test_pump *pump;
    stats ss, cs;
} duo;

static void duo_start(duo *d, tw_tls_context *sctx, tw_tls_context *cctx, const char *name,
                      const tw_protocol_ops *sops, const tw_protocol_ops *cops)
{
    d->r = tw_test_clock_new();
    assert_non_null(d->r);
    d->sctx = sctx;
    d->cctx = cctx;
    d->sinner = (tw_factory)TW_FACTORY_INIT(sops ? sops : &rec_ops, &d->ss);
    d->cinner = (tw_factory)TW_FACTORY_INIT(cops ? cops : &rec_ops, &d->cs);
    d->sf = tw_tls_factory_new(sctx, NULL, &d->sinner);
    d->cf = tw_tls_factory_new(cctx, name, &d->cinner);
    assert_non_null(d->sf);
    assert_non_null(d->cf);
    tw_test_pump_options po = { .server = d->sf, .client = d->cf, .reactor = d->r };
    d->pump = tw_test_pump_new(&po);
    assert_non_null(d->pump);
}

/* Pumps and runs the reactor's tasks until nothing moves. */
static void settle(tw_test_pump *pump, tw_reactor *r)
{
    for (int i = 0; i < 10000; i++) {
        tw_reactor_iterate(r, 0);
        int n = tw_test_pump_flush(pump);
        assert_true(n >= 0);
        if (n == 0) {
            tw_reactor_iterate(r, 0);
            if (tw_test_pump_pump(pump) == 0)
                return;
        }
    }
    fail_msg("the pump never settled");
}

static void duo_end(duo *d)
{
    tw_test_pump_free(d->pump);
    tw_tls_factory_free(d->sf);
    tw_tls_factory_free(d->cf);
    tw_tls_context_unref(d->sctx);
    tw_tls_context_unref(d->cctx);
    tw_reactor_free(d->r);
    assert_int_equal(d->ss.after_lost, 0);
    assert_int_equal(d->cs.after_lost, 0);
}

/* ------------------------------------------------------------ handshakes */

static void handshake_and_echo(void **state)
{
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "hello over TLS";
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    /* Nothing is made before the handshake. */
    assert_int_equal(d.ss.made + d.cs.made, 0);
    settle(d.pump, d.r);
    assert_int_equal(d.ss.made, 1);
    assert_int_equal(d.cs.made, 1);
    assert_int_equal(d.cs.buflen, strlen("hello over TLS"));
    assert_memory_equal(d.cs.buf, "hello over TLS", d.cs.buflen);
    assert_string_equal(d.cs.version, "TLSv1.3");
    assert_true(d.cs.verified);
    assert_false(d.ss.verified); /* no client certificate */
    assert_string_equal(d.cs.subject, "CN=localhost,O=twirl tests");
    assert_string_equal(d.ss.sni, "localhost");
    assert_string_equal(d.cs.alpn, "");
    /* The transport a protocol sees is TLS; its kind says so. */
    tw_protocol *x = tw_test_pump_client(d.pump);
    assert_false(tw_transport_is_tls(x->transport));
    assert_int_equal(d.ss.lost + d.cs.lost, 0);
    duo_end(&d);
    assert_int_equal(d.ss.lost, 1);
    assert_int_equal(d.cs.lost, 1);
}

static void handshake_tls12(void **state)
{
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "twelve";
    tw_tls_client_options co = { .max_version = TW_TLS_1_2 };
    duo_start(&d, server_ctx(NULL), client_ctx(&co), "127.0.0.1", NULL, NULL);
    settle(d.pump, d.r);
    assert_string_equal(d.cs.version, "TLSv1.2");
    assert_string_equal(d.ss.version, "TLSv1.2");
    assert_memory_equal(d.cs.buf, "twelve", 6);
    assert_true(d.cs.verified); /* by IP address SAN */
    duo_end(&d);
}

static void handshake_rsa_and_chain_file(void **state)
{
    tt_certs_add_rsa(certs);
    tw_tls_server_options so = { .cert = { certs->rsa, certs->rsa_key, certs->ca } };
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "rsa";
    duo_start(&d, server_ctx(&so), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.cs.made, 1);
    assert_memory_equal(d.cs.buf, "rsa", 3);
    duo_end(&d);
}

static void alpn_server_preference(void **state)
{
    tw_tls_server_options so = { .alpn = "h2,http/1.1" };
    tw_tls_client_options co = { .alpn = "http/1.1,h2" };
    duo d = { 0 };
    duo_start(&d, server_ctx(&so), client_ctx(&co), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_string_equal(d.ss.alpn, "h2");
    assert_string_equal(d.cs.alpn, "h2");
    duo_end(&d);

    /* Nothing in common: served without ALPN. */
    tw_tls_client_options co2 = { .alpn = "spdy/3" };
    duo d2 = { 0 };
    d2.cs.hello = "x";
    d2.ss.echo = true;
    duo_start(&d2, server_ctx(&so), client_ctx(&co2), "localhost", NULL, NULL);
    settle(d2.pump, d2.r);
    assert_int_equal(d2.cs.made, 1);
    assert_string_equal(d2.ss.alpn, "");
    assert_string_equal(d2.cs.alpn, "");
    assert_int_equal(d2.cs.received, 1);
    duo_end(&d2);
}

static void sni_picks_certificate(void **state)
{
    static const struct {
        const char *name, *subject;
    } cases[] = {
        { "other.test", "CN=other.test,O=twirl tests" },
        { "x.wild.test", "CN=other.test,O=twirl tests" },
        { "localhost", "CN=localhost,O=twirl tests" },
    };
    tw_tls_certificate extra = { certs->other, certs->other_key, NULL };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_tls_server_options so = { .sni = &extra, .sni_count = 1, .alpn = "h2" };
        tw_tls_client_options co = { .alpn = "h2" };
        duo d = { 0 };
        duo_start(&d, server_ctx(&so), client_ctx(&co), cases[i].name, NULL, NULL);
        settle(d.pump, d.r);
        assert_int_equal(d.cs.made, 1);
        assert_string_equal(d.cs.subject, cases[i].subject);
        assert_string_equal(d.ss.sni, cases[i].name);
        assert_string_equal(d.cs.alpn, "h2"); /* the switched context answers ALPN too */
        duo_end(&d);
    }
}

static void client_certificate(void **state)
{
    /* Required and given: the server sees who. */
    tw_tls_server_options so = { .ca_file = certs->ca };
    tw_tls_client_options co = { .cert = { certs->client, certs->client_key, NULL } };
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "it's me";
    duo_start(&d, server_ctx(&so), client_ctx(&co), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.ss.made, 1);
    assert_true(d.ss.verified);
    assert_string_equal(d.ss.subject, "CN=test client,O=twirl tests");
    assert_int_equal(d.cs.received, 7);
    duo_end(&d);

    /* Requested, not given: fine, and not verified. */
    tw_tls_server_options so2 = { .ca_file = certs->ca, .client_auth = TW_TLS_CLIENT_CERT_REQUEST };
    duo d2 = { 0 };
    duo_start(&d2, server_ctx(&so2), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d2.pump, d2.r);
    assert_int_equal(d2.ss.made, 1);
    assert_false(d2.ss.verified);
    duo_end(&d2);

    /* Required, not given: the server never makes its protocol; the TLS 1.3
     * client learns why from the server's alert. */
    duo d3 = { 0 };
    d3.cs.hello = "anonymous";
    duo_start(&d3, server_ctx(&so), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d3.pump, d3.r);
    assert_int_equal(d3.ss.made, 0);
    assert_int_equal(d3.ss.received, 0);
    assert_int_equal(d3.cs.lost, 1);
    assert_int_equal(d3.cs.lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(d3.cs.lost_tls, TW_TLS_ERR_CERT_REQUIRED);
    duo_end(&d3);
}

/* ------------------------------------------------- failures via startTLS */

/* A plaintext protocol that switches to TLS at once (server or client by
 * its factory's context), recording how the handshake ended. */
typedef struct starter_cfg {
    tw_tls_context *ctx;
    const char *name;
    stats *s;
} starter_cfg;

static void starter_done(tw_protocol *p, const tw_failure *error, void *arg)
{
    stats *s = arg;
    if (error) {
        s->hs_failed++;
        s->hs_code = tw_tls_failure_reason(error);
    } else {
        s->hs_done++;
        copy_str(s->version, sizeof s->version, tw_tls_version_name(p->transport));
    }
}

static void starter_made(tw_protocol *p)
{
    starter_cfg *cfg = p->factory->user_data;
    tw_tls_start_options o = { .server_name = cfg->name,
                               .handshake_done = starter_done,
                               .arg = cfg->s };
    cfg->s->made++;
    assert_int_equal(tw_tls_start(p, cfg->ctx, &o), 0);
    assert_true(tw_transport_is_tls(p->transport));
    if (cfg->s->hello)
        tw_transport_write_str(p->transport, cfg->s->hello); /* held until the handshake */
}

static void starter_data(tw_protocol *p, const void *data, size_t len)
{
    starter_cfg *cfg = p->factory->user_data;
    stats *s = cfg->s;
    size_t n = len < sizeof s->buf - s->buflen ? len : sizeof s->buf - s->buflen;
    memcpy(s->buf + s->buflen, data, n);
    s->buflen += n;
    s->received += len;
    if (s->echo)
        tw_transport_write(p->transport, data, len);
}

static void starter_lost(tw_protocol *p, const tw_failure *reason)
{
    starter_cfg *cfg = p->factory->user_data;
    cfg->s->lost++;
    cfg->s->lost_code = tw_failure_code(reason);
    cfg->s->lost_tls = tw_tls_failure_reason(reason);
    /* The ops are the protocol's own again. */
    assert_ptr_equal(p->ops->connection_lost, starter_lost);
}

static const tw_protocol_ops starter_ops = {
    .size = sizeof(peer),
    .connection_made = starter_made,
    .data_received = starter_data,
    .connection_lost = starter_lost,
};

typedef struct fail_case {
    const char *what;
    tw_tls_server_options so;
    tw_tls_client_options co;
    const char *name;
    int client_code, server_code; /* -1: any TLS failure */
} fail_case;

static void run_fail_case(const fail_case *fc, bool expect_ok)
{
    tw_reactor *r = tw_test_clock_new();
    stats ss = { 0 }, cs = { 0 };
    cs.hello = "secret";
    ss.echo = true;
    starter_cfg scfg = { server_ctx(&fc->so), NULL, &ss };
    starter_cfg ccfg = { client_ctx(&fc->co), fc->name, &cs };
    tw_test_pump_options po = { .server_protocol = &starter_ops,
                                .client_protocol = &starter_ops,
                                .server_user_data = &scfg,
                                .client_user_data = &ccfg,
                                .reactor = r };
    tw_test_pump *pump = tw_test_pump_new(&po);
    assert_non_null(pump);
    settle(pump, r);
    if (expect_ok) {
        assert_int_equal(ss.hs_done, 1);
        assert_int_equal(cs.hs_done, 1);
        assert_int_equal(cs.received, 6);
    } else {
        print_message("  %s: client %s / server %s\n", fc->what, tw_tls_strerror(cs.hs_code),
                      tw_tls_strerror(ss.hs_code));
        assert_int_equal(cs.hs_failed + cs.lost > 0, 1);
        assert_int_equal(ss.received, 0); /* the secret never reached the server */
        if (fc->client_code > 0) {
            int code = cs.hs_failed ? cs.hs_code : cs.lost_tls;
            assert_int_equal(code, fc->client_code);
        }
        if (fc->server_code != 0) {
            int code = ss.hs_failed ? ss.hs_code : ss.lost_tls;
            if (fc->server_code > 0)
                assert_int_equal(code, fc->server_code);
            else
                assert_true(code > 0);
        }
        /* Both ends closed. */
        assert_int_equal(cs.lost, 1);
        assert_int_equal(ss.lost, 1);
        assert_int_equal(cs.lost_code, TW_ECONNECTION_LOST);
    }
    tw_test_pump_free(pump);
    tw_tls_context_unref(scfg.ctx);
    tw_tls_context_unref(ccfg.ctx);
    tw_reactor_free(r);
}

static void verification_failures(void **state)
{
    fail_case ok = { .what = "ok", .name = "localhost" };
    run_fail_case(&ok, true);

    fail_case cases[] = {
        { .what = "unknown CA",
          .so = { .cert = { certs->rogue, certs->rogue_key } },
          .name = "localhost",
          .client_code = TW_TLS_ERR_UNKNOWN_CA,
          .server_code = TW_TLS_ERR_UNKNOWN_CA },
        { .what = "wrong host",
          .name = "wrong.example",
          .client_code = TW_TLS_ERR_HOSTNAME,
          .server_code = -1 },
        { .what = "wrong IP",
          .name = "127.0.0.2",
          .client_code = TW_TLS_ERR_HOSTNAME,
          .server_code = -1 },
        { .what = "wrong host (other certificate)",
          .so = { .cert = { certs->other, certs->other_key } },
          .name = "localhost",
          .client_code = TW_TLS_ERR_HOSTNAME,
          .server_code = -1 },
        { .what = "expired",
          .so = { .cert = { certs->expired, certs->expired_key } },
          .name = "localhost",
          .client_code = TW_TLS_ERR_EXPIRED,
          .server_code = TW_TLS_ERR_EXPIRED },
        { .what = "protocol version",
          .so = { .min_version = TW_TLS_1_3 },
          .co = { .max_version = TW_TLS_1_2 },
          .name = "localhost",
          .client_code = TW_TLS_ERR_PROTOCOL_VERSION,
          .server_code = TW_TLS_ERR_PROTOCOL_VERSION },
        { .what = "no shared cipher",
          .so = { .max_version = TW_TLS_1_2, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" },
          .co = { .max_version = TW_TLS_1_2, .ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305" },
          .name = "localhost",
          .client_code = TW_TLS_ERR_HANDSHAKE,
          .server_code = TW_TLS_ERR_NO_SHARED_CIPHER },
        { .what = "client certificate required (TLS 1.2)",
          .so = { .ca_file = certs->ca },
          .co = { .max_version = TW_TLS_1_2 },
          .name = "localhost",
          .client_code = TW_TLS_ERR_HANDSHAKE,
          .server_code = TW_TLS_ERR_CERT_REQUIRED },
        { .what = "client certificate from an unknown CA",
          .so = { .ca_file = certs->ca },
          .co = { .cert = { certs->rogue, certs->rogue_key } },
          .name = "localhost",
          .client_code = TW_TLS_ERR_UNKNOWN_CA,
          .server_code = TW_TLS_ERR_UNKNOWN_CA },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_fail_case(&cases[i], false);
}

static void insecure_client_is_explicit_and_logged(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    tw_tls_client_options co = { .insecure_no_verify = true };
    tw_tls_context *cctx = client_ctx(&co);
    assert_true(tw_test_log_contains(log, "tls", "verification OFF"));
    tw_test_log_release(log);
    tw_tls_server_options so = { .cert = { certs->rogue, certs->rogue_key } };
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "hi";
    duo_start(&d, server_ctx(&so), cctx, NULL, NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.cs.made, 1);
    assert_false(d.cs.verified);
    assert_int_equal(d.cs.received, 2);
    duo_end(&d);

    /* A verifying client needs a name. */
    tw_tls_context *strict = client_ctx(NULL);
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, NULL);
    log = tw_test_log_capture(TW_LOG_ERROR);
    assert_null(tw_tls_factory_new(strict, NULL, &inner));
    tw_test_log_release(log);
    tw_tls_context_unref(strict);
}

/* ------------------------------------------------------------ closing */

static void close_notify_both_ways(void **state)
{
    /* The client says bye and closes: the server reads everything, then
     * sees the end of stream (close_notify) and closes too; both clean. */
    duo d = { 0 };
    d.cs.hello = "bye";
    d.cs.close_after_hello = true;
    d.ss.reply_on_eof = "late"; /* written after close_notify: dropped by the closed peer */
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.ss.received, 3);
    assert_int_equal(d.ss.eof, 1);
    assert_int_equal(d.ss.lost, 1);
    assert_int_equal(d.cs.lost, 1);
    assert_int_equal(d.ss.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(d.cs.lost_code, TW_ECONNECTION_DONE);
    duo_end(&d);

    /* Without an eof hook, close_notify closes the connection. */
    duo d2 = { 0 };
    d2.cs.hello = "bye";
    d2.cs.close_after_hello = true;
    duo_start(&d2, server_ctx(NULL), client_ctx(NULL), "localhost", &rec_noeof_ops, NULL);
    settle(d2.pump, d2.r);
    assert_int_equal(d2.ss.received, 3);
    assert_int_equal(d2.ss.lost, 1);
    assert_int_equal(d2.ss.lost_code, TW_ECONNECTION_DONE);
    duo_end(&d2);
}

static void half_close(void **state)
{
    /* The client sends a request and half-closes; the server answers after
     * the end of the request, then closes. */
    duo d = { 0 };
    d.cs.hello = "request";
    d.cs.shut_after_hello = true;
    d.ss.reply_on_eof = "response";
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.ss.received, 7);
    assert_int_equal(d.ss.eof, 1);
    assert_int_equal(d.cs.received, 8);
    assert_memory_equal(d.cs.buf, "response", 8);
    /* As over TCP: with our side already shut, the peer's end closes the
     * connection without an eof_received. */
    assert_int_equal(d.cs.eof, 0);
    assert_int_equal(d.cs.lost, 1);
    assert_int_equal(d.ss.lost, 1);
    assert_int_equal(d.cs.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(d.ss.lost_code, TW_ECONNECTION_DONE);
    duo_end(&d);
}

static void abort_and_truncation(void **state)
{
    /* abort: both sides see the connection lost. */
    duo d = { 0 };
    d.cs.hello = "dropped?";
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_non_null(d.cs.self);
    tw_transport_write_str(d.cs.self->transport, "never sent");
    tw_transport_abort_connection(d.cs.self->transport);
    assert_int_equal(tw_transport_write_str(d.cs.self->transport, "x"), TW_ECLOSED);
    settle(d.pump, d.r);
    assert_int_equal(d.ss.received, 8);
    assert_int_equal(d.ss.lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(d.cs.lost_code, TW_ECONNECTION_LOST);
    duo_end(&d);

    /* The stream below ends without close_notify: a truncation. */
    duo d2 = { 0 };
    d2.cs.hello = "partial";
    duo_start(&d2, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d2.pump, d2.r);
    tw_protocol *cx = tw_test_pump_client(d2.pump);
    assert_false(tw_transport_is_tls(cx->transport));
    tw_transport_lose_connection(cx->transport); /* plain FIN, no alert */
    settle(d2.pump, d2.r);
    assert_int_equal(d2.ss.received, 7);
    assert_int_equal(d2.ss.eof, 0);
    assert_int_equal(d2.ss.lost, 1);
    assert_int_equal(d2.ss.lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(d2.ss.lost_tls, TW_TLS_ERR_UNEXPECTED_EOF);
    duo_end(&d2);
}

static void writes_after_close_refused(void **state)
{
    duo d = { 0 };
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    tw_transport *t = d.cs.self->transport;
    assert_int_equal(tw_transport_write_str(t, "last words"), 0);
    assert_int_equal(tw_transport_lose_write_connection(t), 0);
    assert_int_equal(tw_transport_lose_write_connection(t), TW_ECLOSED);
    assert_int_equal(tw_transport_write_str(t, "more"), TW_ECLOSED);
    tw_transport_lose_connection(t);
    assert_int_equal(tw_transport_write_str(t, "more"), TW_ECLOSED);
    assert_false(tw_transport_connected(t));
    settle(d.pump, d.r);
    assert_int_equal(d.ss.received, 10);
    assert_int_equal(d.ss.eof, 1);
    duo_end(&d);
}

/* ------------------------------------------------------------ flow control */

/* The server streams `total` bytes of a pattern through a push producer;
 * the client checks every byte and pauses its reading now and then. */
typedef struct streamer {
    tw_protocol base;
    tw_producer prod;
    size_t sent, total;
    int paused, pauses, resumes, stops;
} streamer;

static size_t stream_total;

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 2654435761u >> 13);
}

static void streamer_fill(streamer *s)
{
    unsigned char chunk[16384 + 100];
    while (!s->paused && s->sent < s->total && s->base.transport &&
           tw_transport_connected(s->base.transport)) {
        size_t n = s->total - s->sent < sizeof chunk ? s->total - s->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(s->sent + i);
        assert_int_equal(tw_transport_write(s->base.transport, chunk, n), 0);
        s->sent += n;
    }
    if (s->sent == s->total && s->base.transport && tw_transport_connected(s->base.transport)) {
        tw_transport_unregister_producer(s->base.transport);
        tw_transport_lose_connection(s->base.transport);
    }
}

static void sp_pause(tw_producer *p)
{
    streamer *s = (streamer *)((char *)p - offsetof(streamer, prod));
    s->paused = 1;
    s->pauses++;
}

static void sp_resume(tw_producer *p)
{
    streamer *s = (streamer *)((char *)p - offsetof(streamer, prod));
    s->paused = 0;
    s->resumes++;
    streamer_fill(s);
}

static void sp_stop(tw_producer *p)
{
    streamer *s = (streamer *)((char *)p - offsetof(streamer, prod));
    s->stops++;
}

static const tw_producer_ops sp_ops = { sp_pause, sp_resume, sp_stop };
static streamer *last_streamer;
static int streamer_pauses, streamer_resumes;

static void streamer_made(tw_protocol *p)
{
    streamer *s = (streamer *)p;
    s->prod.ops = &sp_ops;
    s->total = stream_total;
    last_streamer = s;
    assert_int_equal(tw_transport_register_producer(p->transport, &s->prod, true), 0);
    streamer_fill(s);
}

static void streamer_lost(tw_protocol *p, const tw_failure *reason)
{
    streamer *s = (streamer *)p;
    streamer_pauses = s->pauses;
    streamer_resumes = s->resumes;
}

static const tw_protocol_ops streamer_ops = {
    .size = sizeof(streamer),
    .connection_made = streamer_made,
    .connection_lost = streamer_lost,
};

typedef struct checker {
    tw_protocol base;
} checker;

static size_t check_got, check_bad, check_pauses;
static int check_lost_code;
static tw_protocol *check_proto;

static void checker_made(tw_protocol *p)
{
    check_proto = p;
}

static void checker_data(tw_protocol *p, const void *data, size_t len)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++)
        if (b[i] != pattern(check_got + i))
            check_bad++;
    size_t before = check_got;
    check_got += len;
    /* A slow reader: pause at every 256 KiB boundary. */
    if (before / (256 * 1024) != check_got / (256 * 1024)) {
        tw_transport_pause_producing(p->transport);
        check_pauses++;
    }
}

static void checker_lost(tw_protocol *p, const tw_failure *reason)
{
    check_lost_code = tw_failure_code(reason);
    check_proto = NULL;
}

static const tw_protocol_ops checker_ops = {
    .size = sizeof(checker),
    .connection_made = checker_made,
    .data_received = checker_data,
    .connection_lost = checker_lost,
};

static void backpressure_and_slow_reader(void **state)
{
    stream_total = 8u << 20;
    check_got = check_bad = check_pauses = 0;
    duo d = { 0 };
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", &streamer_ops, &checker_ops);
    for (int round = 0; round < 100000 && check_lost_code == 0; round++) {
        settle(d.pump, d.r);
        if (check_proto)
            tw_transport_resume_producing(check_proto->transport);
    }
    assert_int_equal(check_got, stream_total);
    assert_int_equal(check_bad, 0);
    assert_int_equal(check_lost_code, TW_ECONNECTION_DONE);
    assert_true(check_pauses >= 30);
    assert_true(streamer_pauses > 0);
    assert_true(streamer_resumes > 0);
    duo_end(&d);
}

static void writev_gathers(void **state)
{
    duo d = { 0 };
    d.ss.echo = true;
    duo_start(&d, server_ctx(NULL), client_ctx(NULL), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    static char big[1500];
    memset(big, 'b', sizeof big);
    struct iovec iov[5] = { { "ab", 2 }, { "cd", 2 }, { big, sizeof big }, { "ef", 2 }, { "", 0 } };
    assert_int_equal(tw_transport_writev(d.cs.self->transport, iov, 5), 0);
    struct iovec one[1] = { { big, sizeof big } };
    assert_int_equal(tw_transport_writev(d.cs.self->transport, one, 1), 0);
    assert_int_equal(tw_transport_write_ref(d.cs.self->transport, "ref", 3, NULL, NULL), 0);
    settle(d.pump, d.r);
    assert_int_equal(d.cs.received, 6 + 2 * sizeof big + 3);
    assert_memory_equal(d.cs.buf, "abcd", 4);
    assert_memory_equal(d.cs.buf + 4 + sizeof big, "ef", 2);
    assert_memory_equal(d.cs.buf + 6 + 2 * sizeof big, "ref", 3);
    /* Queries pass through to the transport below. */
    tw_address a;
    assert_int_equal(tw_transport_get_peer(d.cs.self->transport, &a), 0);
    assert_int_equal(tw_address_port(&a), 4321);
    assert_int_equal(tw_transport_get_host(d.cs.self->transport, &a), 0);
    assert_int_equal(tw_transport_fd(d.cs.self->transport), -1);
    assert_int_equal(tw_transport_set_option(d.cs.self->transport, TW_OPT_HIGH_WATER, 1000), 0);
    assert_non_null(tw_tls_ssl(d.cs.self->transport));
    assert_non_null(tw_tls_cipher_name(d.cs.self->transport));
    duo_end(&d);
}

/* ------------------------------------------------------------ startTLS */

/* A line protocol. Server: "EHLO" gets "250 plain ok"; "STARTTLS" gets
 * "220 go ahead" and switches to TLS; "UPGRADE" switches at once, without a
 * reply. Client: the polite one waits for 220 before switching; the eager
 * one pipelines its ClientHello right behind "UPGRADE", so the server finds
 * the first TLS bytes in the same read as the command and must not lose
 * them. After the switch the server echoes. */
typedef struct liner {
    tw_protocol base;
    char line[256];
    size_t len;
    bool tls;
} liner;

static tw_tls_context *lt_server_ctx, *lt_client_ctx;
static stats lt_server, lt_client;
static char lt_plain[256]; /* plaintext lines the client saw */
static bool lt_eager;

static void lt_server_data(tw_protocol *p, const void *data, size_t len)
{
    liner *l = (liner *)p;
    if (l->tls) {
        lt_server.received += len;
        memcpy(lt_server.buf + lt_server.buflen, data, len);
        lt_server.buflen += len;
        tw_transport_write(p->transport, data, len); /* echo, encrypted */
        return;
    }
    const char *d = data;
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n') {
            l->line[l->len++] = d[i];
            continue;
        }
        l->line[l->len] = '\0';
        l->len = 0;
        bool start = strcmp(l->line, "STARTTLS\r") == 0,
             upgrade = strcmp(l->line, "UPGRADE\r") == 0;
        if (start || upgrade) {
            if (start)
                tw_transport_write_str(p->transport, "220 go ahead\r\n"); /* plaintext */
            tw_tls_start_options o = { .initial_data = d + i + 1,
                                       .initial_len = len - i - 1,
                                       .handshake_done = starter_done,
                                       .arg = &lt_server };
            lt_server.data_calls = (int)(len - i - 1); /* bytes handed over */
            assert_int_equal(tw_tls_start(p, lt_server_ctx, &o), 0);
            l->tls = true;
            return;
        }
        tw_transport_write_str(p->transport, "250 plain ok\r\n");
    }
}

static void lt_client_switch(tw_protocol *p, const void *rest, size_t len)
{
    liner *l = (liner *)p;
    tw_tls_start_options o = { .server_name = "localhost",
                               .handshake_done = starter_done,
                               .arg = &lt_client,
                               .initial_data = rest,
                               .initial_len = len };
    assert_int_equal(tw_tls_start(p, lt_client_ctx, &o), 0);
    l->tls = true;
    /* Written before the handshake ended: held, then sent encrypted. */
    tw_transport_write_str(p->transport, "MAIL FROM:<a@b>\r\n");
}

static void lt_client_made(tw_protocol *p)
{
    if (lt_eager) {
        tw_transport_write_str(p->transport, "UPGRADE\r\n");
        lt_client_switch(p, NULL, 0);
    } else {
        tw_transport_write_str(p->transport, "EHLO me\r\n");
    }
}

static void lt_client_data(tw_protocol *p, const void *data, size_t len)
{
    liner *l = (liner *)p;
    if (l->tls) {
        memcpy(lt_client.buf + lt_client.buflen, data, len);
        lt_client.buflen += len;
        lt_client.received += len;
        return;
    }
    const char *d = data;
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n') {
            l->line[l->len++] = d[i];
            continue;
        }
        l->line[l->len] = '\0';
        l->len = 0;
        strcat(lt_plain, l->line);
        if (strcmp(l->line, "250 plain ok\r") == 0) {
            tw_transport_write_str(p->transport, "STARTTLS\r\n");
        } else if (strcmp(l->line, "220 go ahead\r") == 0) {
            lt_client_switch(p, d + i + 1, len - i - 1);
            return;
        }
    }
}

static void lt_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = p->factory->user_data;
    s->lost++;
    s->lost_code = tw_failure_code(reason);
}

static const tw_protocol_ops lt_server_ops = {
    .size = sizeof(liner),
    .data_received = lt_server_data,
    .connection_lost = lt_lost,
};

static const tw_protocol_ops lt_client_ops = {
    .size = sizeof(liner),
    .connection_made = lt_client_made,
    .data_received = lt_client_data,
    .connection_lost = lt_lost,
};

static void run_start_tls(bool eager)
{
    memset(&lt_server, 0, sizeof lt_server);
    memset(&lt_client, 0, sizeof lt_client);
    lt_plain[0] = '\0';
    lt_eager = eager;
    lt_server_ctx = server_ctx(NULL);
    lt_client_ctx = client_ctx(NULL);
    tw_reactor *r = tw_test_clock_new();
    tw_test_pump_options po = { .server_protocol = &lt_server_ops,
                                .client_protocol = &lt_client_ops,
                                .server_user_data = &lt_server,
                                .client_user_data = &lt_client,
                                .reactor = r,
                                .policy = TW_TEST_PUMP_COLLAPSING };
    tw_test_pump *pump = tw_test_pump_new(&po);
    settle(pump, r);
    assert_int_equal(lt_server.hs_done, 1);
    assert_int_equal(lt_client.hs_done, 1);
    assert_string_equal(lt_server.version, "TLSv1.3");
    if (eager) {
        assert_string_equal(lt_plain, "");
        assert_true(lt_server.data_calls > 0); /* the ClientHello came with UPGRADE */
    } else {
        assert_string_equal(lt_plain, "250 plain ok\r220 go ahead\r");
    }
    assert_int_equal(lt_server.received, strlen("MAIL FROM:<a@b>\r\n"));
    assert_memory_equal(lt_server.buf, "MAIL FROM:<a@b>\r\n", lt_server.buflen);
    assert_int_equal(lt_client.received, strlen("MAIL FROM:<a@b>\r\n"));
    assert_int_equal(lt_client.lost + lt_server.lost, 0);
    tw_test_pump_free(pump);
    assert_int_equal(lt_client.lost, 1);
    assert_int_equal(lt_server.lost, 1);
    tw_tls_context_unref(lt_server_ctx);
    tw_tls_context_unref(lt_client_ctx);
    tw_reactor_free(r);
}

static void start_tls_after_plaintext(void **state)
{
    run_start_tls(false);
}

static void start_tls_keeps_pipelined_bytes(void **state)
{
    run_start_tls(true);
}

/* ------------------------------------------------------------ resumption */

static void session_resumption(void **state)
{
    tw_tls_context *sctx = server_ctx(NULL);
    tw_tls_context *cctx = client_ctx(NULL);
    for (int i = 0; i < 2; i++) {
        duo d = { 0 };
        d.ss.echo = true;
        d.cs.hello = "again";
        duo_start(&d, tw_tls_context_ref(sctx), tw_tls_context_ref(cctx), "localhost", NULL, NULL);
        settle(d.pump, d.r);
        assert_int_equal(d.cs.made, 1);
        assert_int_equal(d.cs.reused, i == 1);
        /* Only a connection that ended with close_notify leaves a session
         * to resume (OpenSSL forgets the others). */
        tw_transport_lose_connection(d.cs.self->transport);
        settle(d.pump, d.r);
        duo_end(&d);
    }
    /* Tickets off: session IDs and the server's cache still resume. */
    tw_tls_server_options so = { .no_session_tickets = true };
    tw_tls_context *sctx2 = server_ctx(&so);
    tw_tls_client_options co = { .max_version = TW_TLS_1_2 };
    tw_tls_context *cctx2 = client_ctx(&co);
    for (int i = 0; i < 2; i++) {
        duo d = { 0 };
        d.ss.echo = true;
        d.cs.hello = "again";
        duo_start(&d, tw_tls_context_ref(sctx2), tw_tls_context_ref(cctx2), "localhost",
                  &rec_noeof_ops, NULL);
        settle(d.pump, d.r);
        assert_int_equal(d.cs.made, 1);
        assert_int_equal(d.cs.reused, i == 1);
        tw_transport_lose_connection(d.cs.self->transport);
        settle(d.pump, d.r);
        duo_end(&d);
    }
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    tw_tls_context_unref(sctx2);
    tw_tls_context_unref(cctx2);
}

/* ------------------------------------------------------------ renegotiation */

/* TLS 1.2 renegotiation is refused: a client that asks for it (here twirl's
 * own client, with OpenSSL told to allow it) is turned down and the
 * connection ends with a TLS reason; no second handshake happens. */
static void renegotiation_refused(void **state)
{
    tw_tls_client_options co = { .max_version = TW_TLS_1_2 };
    duo d = { 0 };
    d.ss.echo = true;
    d.cs.hello = "before";
    duo_start(&d, server_ctx(NULL), client_ctx(&co), "localhost", NULL, NULL);
    settle(d.pump, d.r);
    assert_int_equal(d.cs.received, 6);
    SSL *ssl = tw_tls_ssl(d.cs.self->transport);
    assert_non_null(ssl);
    SSL_clear_options(ssl, SSL_OP_NO_RENEGOTIATION);
    assert_int_equal(SSL_renegotiate(ssl), 1);
    tw_transport_write_str(d.cs.self->transport, "after"); /* sends the new ClientHello */
    settle(d.pump, d.r);
    assert_int_equal(d.cs.lost, 1);
    assert_int_equal(d.cs.lost_code, TW_ECONNECTION_LOST);
    assert_true(d.cs.lost_tls > 0);
    assert_int_equal(d.ss.lost, 1);
    SSL *sssl = tw_tls_ssl(d.ss.self ? d.ss.self->transport : NULL);
    assert_null(sssl); /* gone */
    duo_end(&d);
}

/* ------------------------------------------------------------ bad input */

static void garbage_closes_cleanly(void **state)
{
    tw_tls_context *sctx = server_ctx(NULL);
    stats ss = { 0 };
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &inner);
    tw_reactor *r = tw_test_clock_new();
    static const char *inputs[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "\x16\x03\x01\x00\x05hello",
        "\x16\x03\x01\xff\xff",
        ("\x17\x03\x03\x00\x10"
         "0123456789abcdef"),
        "\x15\x03\x03\x00\x02\x02\x28",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0] + 20; i++) {
        tw_test_conn_options o = { .factory = sf, .reactor = r };
        tw_test_conn *c = tw_test_conn_new_opts(&o);
        assert_non_null(c);
        unsigned char junk[4096];
        size_t n;
        if (i < sizeof inputs / sizeof inputs[0]) {
            n = strlen(inputs[i]);
            memcpy(junk, inputs[i], n);
        } else {
            srand((unsigned)i);
            n = 1 + (size_t)rand() % sizeof junk;
            for (size_t k = 0; k < n; k++)
                junk[k] = (unsigned char)rand();
            if (i % 2)
                junk[0] = 0x16; /* looks like a handshake record */
        }
        tw_test_conn_feed(c, junk, n);
        /* Either it closed, or it waits for more of a record that could
         * still be valid; more junk must close it. */
        if (!tw_test_conn_disconnecting(c)) {
            memset(junk, 0xee, sizeof junk);
            for (int k = 0; k < 20 && !tw_test_conn_disconnecting(c); k++)
                tw_test_conn_feed(c, junk, sizeof junk);
        }
        assert_true(tw_test_conn_disconnecting(c));
        tw_string_transport_info info;
        tw_string_transport_get_info(tw_test_conn_transport(c), &info);
        assert_false(info.aborted); /* an alert and a clean close */
        tw_test_conn_free(c);
    }
    assert_int_equal(ss.made, 0);
    tw_tls_factory_free(sf);
    tw_tls_context_unref(sctx);
    tw_reactor_free(r);
}

static void handshake_timeout(void **state)
{
    tw_tls_server_options so = { .handshake_timeout = 5 };
    tw_tls_context *sctx = server_ctx(&so);
    stats ss = { 0 };
    tw_factory inner = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &inner);
    tw_reactor *r = tw_test_clock_new();
    tw_test_conn_options o = { .factory = sf, .reactor = r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_test_conn_feed(c, "\x16\x03\x01", 3); /* a record header, then silence */
    tw_clock_advance(r, 4.9);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_log *log = tw_test_log_capture(TW_LOG_INFO);
    tw_clock_advance(r, 0.2);
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "tls", "no handshake after 5 seconds"));
    tw_test_log_release(log);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_true(info.aborted);
    tw_test_conn_free(c);
    assert_int_equal(ss.made, 0);
    tw_tls_factory_free(sf);
    tw_tls_context_unref(sctx);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ configuration */

static void configuration_errors(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_tls_context *ctx = NULL;
    tw_tls_server_options missing = { .cert = { "/nonexistent/cert.pem", NULL, NULL } };
    assert_int_equal(tw_tls_server_context_new(&missing, &ctx), TW_ENOTFOUND);
    assert_true(tw_test_log_contains(log, "tls", "/nonexistent/cert.pem"));

    tw_tls_server_options mismatch = { .cert = { certs->server, certs->other_key, NULL } };
    assert_int_equal(tw_tls_server_context_new(&mismatch, &ctx), TW_EINVAL);
    assert_true(tw_test_log_contains(log, "tls", "mismatch"));

    tw_tls_server_options not_pem = { .cert = { certs->dir, NULL, NULL } };
    assert_true(tw_tls_server_context_new(&not_pem, &ctx) < 0);

    tw_tls_server_options no_cert = { 0 };
    assert_int_equal(tw_tls_server_context_new(&no_cert, &ctx), TW_EINVAL);

    tw_tls_server_options alpn = { .cert = { certs->server, certs->server_key }, .alpn = "h2,,x" };
    assert_int_equal(tw_tls_server_context_new(&alpn, &ctx), TW_EINVAL);

    tw_tls_server_options ciphers = { .cert = { certs->server, certs->server_key },
                                      .ciphers = "NOT-A-CIPHER" };
    assert_int_equal(tw_tls_server_context_new(&ciphers, &ctx), TW_EINVAL);

    tw_tls_server_options versions = { .cert = { certs->server, certs->server_key },
                                       .min_version = TW_TLS_1_3,
                                       .max_version = TW_TLS_1_2 };
    assert_int_equal(tw_tls_server_context_new(&versions, &ctx), TW_EINVAL);

    tw_tls_server_options request = { .cert = { certs->server, certs->server_key },
                                      .client_auth = TW_TLS_CLIENT_CERT_REQUIRE };
    assert_int_equal(tw_tls_server_context_new(&request, &ctx), TW_EINVAL);

    tw_tls_client_options roots = { .trust_roots = "/nonexistent/ca.pem" };
    assert_int_equal(tw_tls_client_context_new(&roots, &ctx), TW_ENOTFOUND);

    tw_tls_client_options chain = {
        .trust_roots = certs->ca, .cert = { certs->client, certs->client_key, certs->server_key }
    };
    assert_int_equal(tw_tls_client_context_new(&chain, &ctx), TW_EINVAL);
    tw_test_log_release(log);

    /* Failure texts. */
    for (int code = TW_TLS_ERR_HANDSHAKE; code <= TW_TLS_ERR_INTERNAL; code++)
        assert_string_not_equal(tw_tls_strerror(code), "unknown TLS error");
    assert_int_equal(tw_tls_failure_reason(NULL), 0);
}

/* ------------------------------------------------------------ endpoint strings */

static char *server_str(const char *fmt)
{
    static char out[1024];
    char desc[2048], err[TW_ENDPOINT_ERR_MAX];
    snprintf(desc, sizeof desc, fmt, certs->server_key, certs->server, certs->ca);
    tw_server_endpoint *ep;
    int rc = tw_server_endpoint_from_string(NULL, desc, &ep, err, sizeof err);
    if (rc < 0) {
        assert_int_equal(rc, TW_ESYNTAX);
        /* the message names the problem, not the whole path soup */
        const char *colon = strstr(err, ": ");
        snprintf(out, sizeof out, "ERROR %s", colon ? colon + 2 : err);
        return out;
    }
    assert_string_equal(ep->description, desc);
    tw_server_endpoint_free(ep);
    return "ok";
}

static char *client_str(const char *fmt)
{
    static char out[1024];
    char desc[2048], err[TW_ENDPOINT_ERR_MAX];
    snprintf(desc, sizeof desc, fmt, certs->ca, certs->client, certs->client_key);
    tw_client_endpoint *ep;
    int rc = tw_client_endpoint_from_string(NULL, desc, &ep, err, sizeof err);
    if (rc < 0) {
        assert_int_equal(rc, TW_ESYNTAX);
        const char *colon = strstr(err, ": ");
        snprintf(out, sizeof out, "ERROR %s", colon ? colon + 2 : err);
        return out;
    }
    tw_client_endpoint_free(ep);
    return "ok";
}

static void endpoint_grammar(void **state)
{
    tw__tls_endpoints_register();
    tw__tls_endpoints_register(); /* twice is harmless */
    /* Twisted's spellings. (%1$s: key, %2$s: certificate, %3$s: CA.) */
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s"), "ok");
    assert_string_equal(server_str("ssl:port=443:privateKey=%1$s:certKey=%2$s:"
                                   "interface=127.0.0.1:backlog=10:extraCertChain=%3$s:"
                                   "caCerts=%3$s:sslmethod=TLSv1_2_METHOD"),
                        "ok");
    assert_string_equal(server_str("ssl:443:%1$s:%2$s"), "ok");
    assert_string_equal(server_str("SSL:443:privateKey=%1$s:certKey=%2$s:interface=::1:"
                                   "alpn=h2,http/1.1:clientCert=request:caCerts=%3$s:"
                                   "dhParameters=ignored.pem"),
                        "ok");
    assert_string_equal(server_str("ssl:privateKey=%1$s:certKey=%2$s"), "ERROR missing port");
    assert_string_equal(server_str("ssl:99999:privateKey=%1$s:certKey=%2$s"),
                        "ERROR bad port '99999' (0-65535)");
    assert_string_equal(server_str("ssl:443:privateKey=/no/such/key.pem:certKey=%2$s"),
                        "ERROR cannot read private key /no/such/key.pem: No such file or "
                        "directory");
    const char *m = server_str("ssl:443:privateKey=%1$s:certKey=%1$s");
    assert_non_null(strstr(m, "ERROR cannot load the certificate /"));
    assert_non_null(strstr(m, "server-key.pem: no start line"));
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:clientCert=maybe:"
                                   "caCerts=%3$s"),
                        "ERROR bad clientCert 'maybe' (request or require)");
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:clientCert=request"),
                        "ERROR clientCert needs caCerts");
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:sslmethod=SSLv3"),
                        "ERROR bad sslmethod 'SSLv3' (SSLv23_METHOD, TLS_METHOD, "
                        "TLSv1_2_METHOD or TLSv1_3_METHOD)");
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:interface=nowhere"),
                        "ERROR bad interface 'nowhere' (a numeric IPv4 or IPv6 address)");
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:colour=blue"),
                        "ERROR unknown option 'colour' for ssl");
    assert_string_equal(server_str("ssl:443:privateKey=%1$s:certKey=%2$s:alpn=h2,,x"),
                        "ERROR bad ALPN list \"h2,,x\": empty or over-long entry");

    /* Clients. (%1$s: CA, %2$s: client certificate, %3$s: its key.) */
    assert_string_equal(client_str("tls:example.com:443"), "ok");
    assert_string_equal(client_str("tls:host=localhost:port=443:trustRoots=%1$s:"
                                   "certificate=%2$s:privateKey=%3$s:timeout=5:"
                                   "bindAddress=127.0.0.1:alpn=h2"),
                        "ok");
    assert_string_equal(client_str("tls:localhost:443:trustRoots=%1$s"), "ok");
    assert_string_equal(client_str("tls:host=localhost:443"), "ok");
    assert_string_equal(client_str("tls:host=localhost:trustRoots=%1$s:"
                                   "endpoint=unix\\:/tmp/x.sock"),
                        "ok");
    assert_string_equal(client_str("tls:localhost"), "ERROR missing port");
    assert_string_equal(client_str("tls:port=443"), "ERROR missing host");
    assert_string_equal(client_str("tls:localhost:0"), "ERROR bad port '0' (1-65535)");
    assert_string_equal(client_str("tls:bad_host!:443"),
                        "ERROR bad host 'bad_host!' (an IP address or a host name)");
    assert_string_equal(client_str("tls:localhost:443:trustRoots=/nope.pem"),
                        "ERROR cannot read trust roots /nope.pem: No such file or directory");
    assert_string_equal(client_str("tls:localhost:443:privateKey=%3$s"),
                        "ERROR privateKey needs certificate");
    assert_string_equal(client_str("tls:localhost:443:timeout=-1"),
                        "ERROR bad timeout '-1' (seconds, more than 0)");
    assert_string_equal(client_str("tls:host=localhost:endpoint=nope\\:1"),
                        "ERROR endpoint: nope:1: unknown client endpoint type 'nope'");
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
        cmocka_unit_test(handshake_and_echo),
        cmocka_unit_test(handshake_tls12),
        cmocka_unit_test(handshake_rsa_and_chain_file),
        cmocka_unit_test(alpn_server_preference),
        cmocka_unit_test(sni_picks_certificate),
        cmocka_unit_test(client_certificate),
        cmocka_unit_test(verification_failures),
        cmocka_unit_test(insecure_client_is_explicit_and_logged),
        cmocka_unit_test(close_notify_both_ways),
        cmocka_unit_test(half_close),
        cmocka_unit_test(abort_and_truncation),
        cmocka_unit_test(writes_after_close_refused),
        cmocka_unit_test(backpressure_and_slow_reader),
        cmocka_unit_test(writev_gathers),
        cmocka_unit_test(start_tls_after_plaintext),
        cmocka_unit_test(start_tls_keeps_pipelined_bytes),
        cmocka_unit_test(session_resumption),
        cmocka_unit_test(renegotiation_refused),
        cmocka_unit_test(garbage_closes_cleanly),
        cmocka_unit_test(handshake_timeout),
        cmocka_unit_test(configuration_errors),
        cmocka_unit_test(endpoint_grammar),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
