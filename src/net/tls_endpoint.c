/* tls_endpoint.c — the "ssl" server and "tls" client endpoint types
 * (Twisted's ssl: server strings and wrapClientTLS / tls: client strings),
 * registered with the endpoint registry.
 *
 *   ssl:443:privateKey=key.pem:certKey=cert.pem[:extraCertChain=chain.pem]
 *       [:caCerts=ca.pem][:interface=ADDR][:backlog=N][:sslmethod=...]
 *       [:dhParameters=FILE]  (accepted and ignored: ECDHE needs none)
 *       twirl's own: [:alpn=h2,http/1.1][:clientCert=request|require]
 *   tls:example.com:443[:trustRoots=ca.pem][:certificate=c.pem]
 *       [:privateKey=k.pem][:timeout=30][:bindAddress=ADDR]
 *       [:endpoint=<client endpoint below, escaped>]
 *       twirl's own: [:alpn=h2,http/1.1]
 *
 * A server endpoint listens through a stream endpoint with a wrapping
 * factory made for the port; a client endpoint connects through the
 * endpoint below (tcp by default) and fires its deferred once the handshake
 * succeeded and the protocol was made, or fails it with the TLS reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls_internal.h"

enum { MSG_BYTES = 400 };

static bool parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int param(tw_endpoint_args *a, const char *name, int position, const char **v, char *err,
                 size_t errlen)
{
    int rc = tw_endpoint_param(a, name, position, v, err, errlen);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------ servers */

typedef struct ssl_server {
    tw_server_endpoint base;
    tw_server_endpoint *below;
    tw_tls_context *ctx;
} ssl_server;

static int ssl_listen(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err,
                      size_t errlen)
{
    ssl_server *s = (ssl_server *)ep;
    if (!s->below->description && ep->description)
        s->below->description = strdup(ep->description); /* for its messages */
    tw_factory *tf = tw__tls_factory_new_auto(s->ctx, NULL, f, NULL, NULL, NULL);
    if (!tf)
        return TW_ENOMEM;
    int rc = tw_endpoint_listen_err(s->below, tf, out, err, errlen);
    if (rc < 0)
        tw_tls_factory_free(tf); /* never started */
    return rc;
}

static void ssl_server_free(tw_server_endpoint *ep)
{
    ssl_server *s = (ssl_server *)ep;
    tw_server_endpoint_free(s->below);
    tw_tls_context_unref(s->ctx);
    free(s);
}

static const tw_server_endpoint_ops ssl_server_ops = { "ssl", ssl_listen, ssl_server_free };

/* Twisted's sslmethod names: the version range they stand for. */
static int parse_method(const char *m, tw_tls_version *min, tw_tls_version *max)
{
    if (!m || strcmp(m, "SSLv23_METHOD") == 0 || strcmp(m, "TLS_METHOD") == 0)
        return 0;
    if (strcmp(m, "TLSv1_2_METHOD") == 0) {
        *min = *max = TW_TLS_1_2;
        return 0;
    }
    if (strcmp(m, "TLSv1_3_METHOD") == 0) {
        *min = *max = TW_TLS_1_3;
        return 0;
    }
    return -1;
}

/* Twisted's _parseSSL: (port, privateKey="server.pem", certKey=None,
 * sslmethod=None, interface="", backlog=50, extraCertChain=None,
 * dhParameters=None); certKey defaults to privateKey. */
int tw__endpoint_parse_ssl_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                  char *err, size_t errlen)
{
    const char *port_s, *key, *cert, *method, *iface, *backlog_s, *chain, *dh, *ca, *alpn,
        *client_cert;
    int rc;
    if ((rc = param(a, "port", 0, &port_s, err, errlen)) < 0 ||
        (rc = param(a, "privateKey", 1, &key, err, errlen)) < 0 ||
        (rc = param(a, "certKey", 2, &cert, err, errlen)) < 0 ||
        (rc = param(a, "sslmethod", 3, &method, err, errlen)) < 0 ||
        (rc = param(a, "interface", 4, &iface, err, errlen)) < 0 ||
        (rc = param(a, "backlog", 5, &backlog_s, err, errlen)) < 0 ||
        (rc = param(a, "extraCertChain", 6, &chain, err, errlen)) < 0 ||
        (rc = param(a, "dhParameters", 7, &dh, err, errlen)) < 0 ||
        (rc = param(a, "caCerts", -1, &ca, err, errlen)) < 0 ||
        (rc = param(a, "alpn", -1, &alpn, err, errlen)) < 0 ||
        (rc = param(a, "clientCert", -1, &client_cert, err, errlen)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    (void)dh; /* ECDHE (and OpenSSL's automatic DH groups) need no file */
    unsigned long n;
    if (!port_s)
        return tw_endpoint_syntax_error(a, err, errlen, "missing port");
    if (!parse_uint(port_s, 0, 65535, &n))
        return tw_endpoint_syntax_error(a, err, errlen, "bad port '%.40s' (0-65535)", port_s);
    uint16_t port = (uint16_t)n;
    int backlog = 50;
    if (backlog_s) {
        if (!parse_uint(backlog_s, 1, 65535, &n))
            return tw_endpoint_syntax_error(a, err, errlen, "bad backlog '%.40s' (1-65535)",
                                            backlog_s);
        backlog = (int)n;
    }
    tw_tls_server_options o = { 0 };
    if (parse_method(method, &o.min_version, &o.max_version) < 0)
        return tw_endpoint_syntax_error(a, err, errlen,
                                        "bad sslmethod '%.40s' (SSLv23_METHOD, TLS_METHOD, "
                                        "TLSv1_2_METHOD or TLSv1_3_METHOD)",
                                        method);
    if (!key)
        key = "server.pem";
    o.cert.key_file = key;
    o.cert.cert_file = cert ? cert : key;
    o.cert.chain_file = chain;
    o.ca_file = ca;
    o.alpn = alpn;
    if (client_cert) {
        if (strcmp(client_cert, "request") == 0)
            o.client_auth = TW_TLS_CLIENT_CERT_REQUEST;
        else if (strcmp(client_cert, "require") == 0)
            o.client_auth = TW_TLS_CLIENT_CERT_REQUIRE;
        else
            return tw_endpoint_syntax_error(
                a, err, errlen, "bad clientCert '%.40s' (request or require)", client_cert);
        if (!ca)
            return tw_endpoint_syntax_error(a, err, errlen, "clientCert needs caCerts");
    }
    if (!iface || !*iface)
        iface = "0.0.0.0";
    tw_address addr;
    if (tw_address_from_ip(&addr, iface, port, SOCK_STREAM) < 0)
        return tw_endpoint_syntax_error(
            a, err, errlen, "bad interface '%.60s' (a numeric IPv4 or IPv6 address)", iface);
    ssl_server *s = calloc(1, sizeof *s);
    if (!s)
        return TW_ENOMEM;
    char msg[MSG_BYTES];
    rc = tw__tls_server_context_new_err(&o, &s->ctx, msg, sizeof msg);
    if (rc < 0) {
        free(s);
        return rc == TW_ENOMEM ? rc : tw_endpoint_syntax_error(a, err, errlen, "%s", msg);
    }
    tw_listen_options lo = { .backlog = backlog };
    if ((rc = tw_stream_server_endpoint_new(r, &addr, &lo, &s->below)) < 0) {
        tw_tls_context_unref(s->ctx);
        free(s);
        return rc;
    }
    s->base.ops = &ssl_server_ops;
    s->base.reactor = r;
    *out = &s->base;
    return 0;
}

/* ------------------------------------------------------------ clients */

typedef struct tls_client {
    tw_client_endpoint base;
    tw_client_endpoint *below;
    tw_tls_context *ctx;
    char *host;
} tls_client;

/* One connection attempt. Held by the wrapping factory (until it is freed)
 * and by the callbacks on the deferred below (until they ran). */
typedef struct attempt {
    int refs;
    tw_deferred *d;       /* ours, until fired */
    tw_deferred *below_d; /* while connecting below */
    tw_protocol *x;       /* the TLS layer, connected below, until it reports */
    tw_factory *tf;
} attempt;

static void attempt_release(void *arg)
{
    attempt *at = arg;
    if (--at->refs == 0)
        free(at);
}

static void attempt_fire(attempt *at, tw_result res)
{
    tw_deferred *d = at->d;
    if (!d) {
        tw_result_free(&res);
        return;
    }
    at->d = NULL;
    tw_deferred_fire(d, res);
    tw_deferred_unref(d);
}

static void on_made(void *arg, tw_protocol *p, const tw_failure *why)
{
    attempt *at = arg;
    at->x = NULL;
    if (p)
        attempt_fire(at, tw_ok(p, NULL));
    else
        attempt_fire(at, tw_err(tw_failure_ref((tw_failure *)why)));
}

static tw_result on_below_ok(tw_result *in, void *arg)
{
    attempt *at = arg;
    tw_deferred_unref(at->below_d);
    at->below_d = NULL;
    /* Connected below; the handshake is under way unless it already
     * ended (then the factory reported, and d fired). */
    if (at->d)
        at->x = in->value.ptr;
    return TW_RESULT_NONE;
}

static tw_result on_below_failed(tw_result *in, void *arg)
{
    attempt *at = arg;
    tw_deferred_unref(at->below_d);
    at->below_d = NULL;
    tw_result r = tw_result_move(in);
    attempt_fire(at, r);
    /* A factory never started is not stopped either: free it here. */
    if (at->tf && at->tf->num_ports == 0) {
        tw_factory *tf = at->tf;
        at->tf = NULL;
        tw_tls_factory_free(tf);
    }
    return TW_RESULT_NONE;
}

static void attempt_cancel(tw_deferred *d, void *arg)
{
    attempt *at = arg;
    /* d fails with a cancelled failure once this returns; what follows
     * must not fire it again. */
    at->d = NULL;
    tw_deferred_unref(d);
    if (at->below_d) {
        tw_deferred *bd = tw_deferred_ref(at->below_d);
        tw_deferred_cancel(bd);
        tw_deferred_unref(bd);
    } else if (at->x && at->x->transport) {
        tw_transport_abort_connection(at->x->transport);
    }
}

static tw_deferred *tls_connect(tw_client_endpoint *ep, tw_factory *f)
{
    tls_client *t = (tls_client *)ep;
    attempt *at = calloc(1, sizeof *at);
    if (!at)
        return NULL;
    if (!(at->d = tw_deferred_new(attempt_cancel, at))) {
        free(at);
        return NULL;
    }
    at->refs = 1; /* the factory's */
    at->tf = tw__tls_factory_new_auto(t->ctx, t->host, f, on_made, at, attempt_release);
    if (!at->tf) {
        tw_deferred_unref(at->d);
        free(at);
        return NULL;
    }
    tw_deferred *mine = tw_deferred_ref(at->d);
    tw_deferred *bd = tw_endpoint_connect(t->below, at->tf);
    if (!bd) {
        attempt_fire(at, tw_err(tw_failure_from_code(TW_ENOMEM)));
        tw_tls_factory_free(at->tf);
        return mine;
    }
    at->below_d = bd;
    at->refs++;
    if (tw_deferred_add_callbacks_full(bd, on_below_ok, on_below_failed, at, attempt_release) < 0) {
        at->refs--;
        at->below_d = NULL;
        tw_deferred_cancel(bd);
        tw_deferred_unref(bd);
        attempt_fire(at, tw_err(tw_failure_from_code(TW_ENOMEM)));
    }
    return mine;
}

static void tls_client_free(tw_client_endpoint *ep)
{
    tls_client *t = (tls_client *)ep;
    tw_client_endpoint_free(t->below);
    tw_tls_context_unref(t->ctx);
    free(t->host);
    free(t);
}

static const tw_client_endpoint_ops tls_client_ops = { "tls", tls_connect, tls_client_free };

/* Twisted's _parseClientTLS: (host, port, timeout=30, bindAddress=None,
 * certificate=None, privateKey=None, trustRoots=None, endpoint=None);
 * positional fields as for tcp. */
int tw__endpoint_parse_tls_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                  char *err, size_t errlen)
{
    bool host_kw = false;
    for (size_t i = 0; i < tw_endpoint_args_nkeywords(a); i++) {
        const char *k, *v;
        tw_endpoint_args_keyword(a, i, &k, &v);
        host_kw |= strcmp(k, "host") == 0;
    }
    bool host_pos = !host_kw || tw_endpoint_args_npositional(a) >= 2;
    const char *host, *port_s, *timeout_s, *bind_s, *cert, *key, *roots, *below_s, *alpn;
    int rc;
    if ((rc = param(a, "host", host_pos ? 0 : -1, &host, err, errlen)) < 0 ||
        (rc = param(a, "port", host_pos ? 1 : 0, &port_s, err, errlen)) < 0 ||
        (rc = param(a, "timeout", -1, &timeout_s, err, errlen)) < 0 ||
        (rc = param(a, "bindAddress", -1, &bind_s, err, errlen)) < 0 ||
        (rc = param(a, "certificate", -1, &cert, err, errlen)) < 0 ||
        (rc = param(a, "privateKey", -1, &key, err, errlen)) < 0 ||
        (rc = param(a, "trustRoots", -1, &roots, err, errlen)) < 0 ||
        (rc = param(a, "endpoint", -1, &below_s, err, errlen)) < 0 ||
        (rc = param(a, "alpn", -1, &alpn, err, errlen)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    if (!host || !*host)
        return tw_endpoint_syntax_error(a, err, errlen, "missing host");
    unsigned long n = 0;
    if (!port_s && !below_s)
        return tw_endpoint_syntax_error(a, err, errlen, "missing port");
    if (port_s && !parse_uint(port_s, 1, 65535, &n))
        return tw_endpoint_syntax_error(a, err, errlen, "bad port '%.40s' (1-65535)", port_s);
    uint16_t port = (uint16_t)n;
    if (key && !cert)
        return tw_endpoint_syntax_error(a, err, errlen, "privateKey needs certificate");
    tw_connect_options co = { 0 };
    tw_address bind;
    if (timeout_s) {
        char *end;
        double v = strtod(timeout_s, &end);
        bool plain = timeout_s[0] >= '0' && timeout_s[0] <= '9' &&
                     strspn(timeout_s, "0123456789.") == strlen(timeout_s);
        if (!plain || *end || v <= 0 || v > 1e6)
            return tw_endpoint_syntax_error(
                a, err, errlen, "bad timeout '%.40s' (seconds, more than 0)", timeout_s);
        co.timeout = v;
    }
    if (bind_s) {
        if (tw_address_from_ip(&bind, bind_s, 0, SOCK_STREAM) < 0)
            return tw_endpoint_syntax_error(a, err, errlen,
                                            "bad bindAddress '%.60s' (a numeric IPv4 or IPv6 "
                                            "address)",
                                            bind_s);
        co.bind = &bind;
    }
    if (below_s && (timeout_s || bind_s))
        return tw_endpoint_syntax_error(a, err, errlen,
                                        "timeout and bindAddress belong to the endpoint below");
    tls_client *t = calloc(1, sizeof *t);
    if (!t || !(t->host = strdup(host))) {
        free(t);
        return TW_ENOMEM;
    }
    t->base.ops = &tls_client_ops;
    t->base.reactor = r;
    if (below_s) {
        char inner_err[TW_ENDPOINT_ERR_MAX];
        rc = tw_client_endpoint_from_string(r, below_s, &t->below, inner_err, sizeof inner_err);
        if (rc < 0) {
            tls_client_free(&t->base);
            return rc == TW_ENOMEM
                       ? rc
                       : tw_endpoint_syntax_error(a, err, errlen, "endpoint: %s", inner_err);
        }
    } else if ((rc = tw_tcp_client_endpoint_new(r, host, port, &co, &t->below)) < 0) {
        tls_client_free(&t->base);
        return rc == TW_ENOMEM ? rc
                               : tw_endpoint_syntax_error(a, err, errlen,
                                                          "bad host '%.60s' (an IP address or a "
                                                          "host name)",
                                                          host);
    }
    tw_tls_client_options o = { .trust_roots = roots, .alpn = alpn };
    o.cert.cert_file = cert;
    o.cert.key_file = key;
    char msg[MSG_BYTES];
    rc = tw__tls_client_context_new_err(&o, &t->ctx, msg, sizeof msg);
    if (rc < 0) {
        tls_client_free(&t->base);
        return rc == TW_ENOMEM ? rc : tw_endpoint_syntax_error(a, err, errlen, "%s", msg);
    }
    *out = &t->base;
    return 0;
}

/* ------------------------------------------------------------ registry */

void tw__tls_endpoints_register(void)
{
    /* TW_EBUSY: already there (registered before, or built in). */
    tw_endpoint_register_server_type("ssl", tw__endpoint_parse_ssl_server);
    tw_endpoint_register_client_type("tls", tw__endpoint_parse_tls_client);
}
