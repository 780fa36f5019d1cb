/* tls_context.c — TLS configuration: OpenSSL contexts for servers (with SNI
 * and client certificates) and clients (trust, client certificate, session
 * cache), ALPN lists, and the mapping from OpenSSL's errors to tw_tls_error.
 *
 * One SSL_CTX per configuration (plus one per extra SNI certificate), shared
 * by every connection; a connection only makes an SSL object from it. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/tls_internal.h"
#include "twirl/log.h"

enum { SERVER_SESSION_CACHE = 1024 }; /* stateful sessions kept without tickets */

/* ------------------------------------------------------------- failures */

const char *tw_tls_strerror(int code)
{
    switch (code) {
    case TW_TLS_ERR_HANDSHAKE:
        return "TLS handshake failed";
    case TW_TLS_ERR_UNKNOWN_CA:
        return "certificate signed by an unknown authority";
    case TW_TLS_ERR_HOSTNAME:
        return "certificate does not match the host name";
    case TW_TLS_ERR_EXPIRED:
        return "certificate has expired";
    case TW_TLS_ERR_NOT_YET_VALID:
        return "certificate is not yet valid";
    case TW_TLS_ERR_BAD_CERTIFICATE:
        return "bad certificate";
    case TW_TLS_ERR_CERT_REQUIRED:
        return "a client certificate is required";
    case TW_TLS_ERR_PROTOCOL_VERSION:
        return "no TLS version in common";
    case TW_TLS_ERR_NO_SHARED_CIPHER:
        return "no cipher suite in common";
    case TW_TLS_ERR_ALERT:
        return "the peer sent a fatal alert";
    case TW_TLS_ERR_PROTOCOL:
        return "TLS protocol violation (not TLS, or a bad record)";
    case TW_TLS_ERR_UNEXPECTED_EOF:
        return "the TLS stream ended without close_notify";
    case TW_TLS_ERR_TIMEOUT:
        return "the TLS handshake timed out";
    case TW_TLS_ERR_INTERNAL:
        return "internal TLS error";
    }
    return "unknown TLS error";
}

int tw_tls_failure_reason(const tw_failure *f)
{
    for (; f; f = tw_failure_cause(f)) {
        if (tw_failure_is(f, TW_TLS_DOMAIN, TW_ANY_CODE))
            return tw_failure_code(f);
    }
    return 0;
}

static int verify_code(long v)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return TW_TLS_ERR_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return TW_TLS_ERR_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return TW_TLS_ERR_NOT_YET_VALID;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
        return TW_TLS_ERR_HOSTNAME;
    }
    return TW_TLS_ERR_BAD_CERTIFICATE;
}

static int alert_code(int alert)
{
    switch (alert) {
    case SSL_AD_UNKNOWN_CA:
        return TW_TLS_ERR_UNKNOWN_CA;
    case SSL_AD_CERTIFICATE_EXPIRED:
        return TW_TLS_ERR_EXPIRED;
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
        return TW_TLS_ERR_BAD_CERTIFICATE;
    case SSL_AD_CERTIFICATE_REQUIRED:
        return TW_TLS_ERR_CERT_REQUIRED;
    case SSL_AD_PROTOCOL_VERSION:
        return TW_TLS_ERR_PROTOCOL_VERSION;
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_INSUFFICIENT_SECURITY:
        return TW_TLS_ERR_HANDSHAKE;
    case SSL_AD_DECODE_ERROR:
    case SSL_AD_DECRYPT_ERROR:
    case SSL_AD_BAD_RECORD_MAC:
    case SSL_AD_RECORD_OVERFLOW:
    case SSL_AD_UNEXPECTED_MESSAGE:
    case SSL_AD_ILLEGAL_PARAMETER:
        return TW_TLS_ERR_PROTOCOL;
    }
    return TW_TLS_ERR_ALERT;
}

static int reason_code(SSL *ssl, int reason)
{
    if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
        return alert_code(reason - SSL_AD_REASON_OFFSET);
    switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return verify_code(ssl ? SSL_get_verify_result(ssl) : X509_V_ERR_UNSPECIFIED);
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return TW_TLS_ERR_CERT_REQUIRED;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return TW_TLS_ERR_NO_SHARED_CIPHER;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_UNKNOWN_PROTOCOL:
        return TW_TLS_ERR_PROTOCOL_VERSION;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TW_TLS_ERR_UNEXPECTED_EOF;
    case ERR_R_MALLOC_FAILURE:
    case ERR_R_INTERNAL_ERROR:
        return TW_TLS_ERR_INTERNAL;
    }
    return TW_TLS_ERR_PROTOCOL;
}

int tw__tls_classify(SSL *ssl, int ssl_err, char *msg, size_t size)
{
    unsigned long e = 0, last;
    /* The first error queued is the one that started the failure. */
    while ((last = ERR_get_error()) != 0) {
        if (!e)
            e = last;
    }
    if (ssl_err == SSL_ERROR_SYSCALL && !e) {
        snprintf(msg, size, "the connection ended without close_notify");
        return TW_TLS_ERR_UNEXPECTED_EOF;
    }
    if (!e) {
        snprintf(msg, size, "%s", tw_tls_strerror(TW_TLS_ERR_INTERNAL));
        return TW_TLS_ERR_INTERNAL;
    }
    int reason = ERR_GET_REASON(e);
    int code = ERR_GET_LIB(e) == ERR_LIB_SSL ? reason_code(ssl, reason) : TW_TLS_ERR_INTERNAL;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason == SSL_R_CERTIFICATE_VERIFY_FAILED && ssl) {
        long v = SSL_get_verify_result(ssl);
        snprintf(msg, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
        snprintf(msg, size, "the peer sent a fatal alert: %s",
                 SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET));
    } else {
        const char *text = ERR_reason_error_string(e);
        snprintf(msg, size, "%s", text ? text : tw_tls_strerror(code));
    }
    return code;
}

/* --------------------------------------------------------- small helpers */

bool tw__tls_is_ip(const char *name)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

tw_tls_context *tw__tls_context_of(const SSL_CTX *ctx)
{
    return SSL_CTX_get_app_data(ctx);
}

const char *tw__tls_alpn_name(const tw_tls_context *c, const unsigned char *p, unsigned len)
{
    for (size_t i = 0; i < c->alpn_count; i++) {
        if (strlen(c->alpn_names[i]) == len && memcmp(c->alpn_names[i], p, len) == 0)
            return c->alpn_names[i];
    }
    return NULL;
}

/* Configuration errors go to the log, or, while an _err variant runs on
 * this thread, into its caller's buffer instead. */
static __thread char *err_sink;
static __thread size_t err_sink_len;

static void cfg_report(const char *fmt, ...) TW_PRINTF(1, 2);
static void cfg_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err_sink && err_sink_len) {
        vsnprintf(err_sink, err_sink_len, fmt, ap);
        err_sink = NULL; /* the first error is the one that counts */
    } else if (!err_sink_len) {
        tw_logv(TW_LOG_ERROR, "tls", fmt, ap);
    }
    va_end(ap);
}

/* Collects OpenSSL's queued errors into one line for a log message. */
static void ssl_errors(char *buf, size_t size)
{
    unsigned long e;
    size_t at = 0;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (at + 2 >= size)
            continue; /* drain the rest */
        if (at > 0)
            at += (size_t)snprintf(buf + at, size - at, "; ");
        const char *r = ERR_reason_error_string(e);
        if (r)
            at += (size_t)snprintf(buf + at, size - at, "%s", r);
        else
            ERR_error_string_n(e, buf + at, size - at), at = strlen(buf);
        if (at >= size)
            at = size - 1;
    }
    if (!buf[0])
        snprintf(buf, size, "unknown reason");
}

static int config_error(const char *what, const char *file)
{
    char reasons[512];
    ssl_errors(reasons, sizeof reasons);
    if (file)
        cfg_report("%s %s: %s", what, file, reasons);
    else
        cfg_report("%s: %s", what, reasons);
    return TW_EINVAL;
}

static int check_readable(const char *what, const char *file)
{
    if (access(file, R_OK) == 0)
        return 0;
    cfg_report("cannot read %s %s: %s", what, file, strerror(errno));
    return TW_ENOTFOUND;
}

/* "h2,http/1.1" → wire format and NUL-terminated names. */
static int parse_alpn(tw_tls_context *c, const char *list)
{
    if (!list || !*list)
        return 0;
    size_t n = strlen(list);
    c->alpn_wire = malloc(n + 1);
    c->alpn_names = calloc(n / 2 + 1, sizeof *c->alpn_names);
    if (!c->alpn_wire || !c->alpn_names)
        return TW_ENOMEM;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len > 255) {
            cfg_report("bad ALPN list \"%s\": empty or over-long entry", list);
            return TW_EINVAL;
        }
        c->alpn_wire[c->alpn_wire_len++] = (unsigned char)len;
        memcpy(c->alpn_wire + c->alpn_wire_len, p, len);
        c->alpn_wire_len += len;
        if (!(c->alpn_names[c->alpn_count] = strndup(p, len)))
            return TW_ENOMEM;
        c->alpn_count++;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

static int valid_version(tw_tls_version v)
{
    return v == 0 || (v >= TLS1_VERSION && v <= TLS1_3_VERSION);
}

/* ----------------------------------------------------------- contexts */

static tw_tls_context *context_alloc(bool server)
{
    tw_tls_context *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->server = server;
    pthread_mutex_init(&c->cache_lock, NULL);
    return c;
}

static void context_free(tw_tls_context *c)
{
    SSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->sni_count; i++)
        SSL_CTX_free(c->sni[i]);
    free(c->sni);
    free(c->alpn_wire);
    if (c->alpn_names) {
        for (size_t i = 0; i < c->alpn_count; i++)
            free(c->alpn_names[i]);
        free(c->alpn_names);
    }
    for (size_t i = 0; i < c->cache_len; i++) {
        free(c->cache[i].key);
        SSL_SESSION_free(c->cache[i].session);
    }
    pthread_mutex_destroy(&c->cache_lock);
    free(c);
}

tw_tls_context *tw_tls_context_ref(tw_tls_context *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tw_tls_context_unref(tw_tls_context *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        context_free(c);
}

bool tw_tls_context_is_server(const tw_tls_context *c)
{
    return c->server;
}

SSL_CTX *tw_tls_context_ssl_ctx(tw_tls_context *c)
{
    return c->ctx;
}

/* What every context shares: versions, ciphers, renegotiation off, small
 * idle connections. */
static int configure_common(tw_tls_context *c, SSL_CTX *ctx, tw_tls_version min, tw_tls_version max,
                            const char *ciphers, const char *suites)
{
    SSL_CTX_set_app_data(ctx, c);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!valid_version(min) || !valid_version(max) || (min && max && min > max)) {
        cfg_report("bad TLS version range 0x%04x..0x%04x", (unsigned)min, (unsigned)max);
        return TW_EINVAL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, min ? (int)min : TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, (int)max))
        return config_error("cannot set the TLS version range", NULL);
    if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers))
        return config_error("bad TLS 1.2 cipher list", ciphers);
    if (suites && !SSL_CTX_set_ciphersuites(ctx, suites))
        return config_error("bad TLS 1.3 cipher suites", suites);
    return 0;
}

static int load_certificate(SSL_CTX *ctx, const tw_tls_certificate *cert, bool required)
{
    int rc;
    if (!cert->cert_file) {
        if (!required && !cert->key_file && !cert->chain_file)
            return 0;
        cfg_report("a certificate file is required");
        return TW_EINVAL;
    }
    const char *key = cert->key_file ? cert->key_file : cert->cert_file;
    if ((rc = check_readable("certificate", cert->cert_file)) < 0 ||
        (rc = check_readable("private key", key)) < 0 ||
        (cert->chain_file && (rc = check_readable("certificate chain", cert->chain_file)) < 0))
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert->cert_file) != 1)
        return config_error("cannot load the certificate", cert->cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return config_error("cannot load the private key", key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return config_error("the private key does not match the certificate", key);
    if (cert->chain_file) {
        BIO *b = BIO_new_file(cert->chain_file, "r");
        if (!b)
            return config_error("cannot open the certificate chain", cert->chain_file);
        int n = 0;
        X509 *x;
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (!SSL_CTX_add0_chain_cert(ctx, x)) {
                X509_free(x);
                BIO_free(b);
                return config_error("cannot add a chain certificate from", cert->chain_file);
            }
            n++;
        }
        BIO_free(b);
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE && n > 0)
            ERR_clear_error(); /* the normal end of the file */
        if (n == 0 || ERR_peek_error())
            return config_error("bad certificate chain", cert->chain_file);
    }
    return 0;
}

/* ------------------------------------------------------------ servers */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    tw_tls_context *c = arg;
    unsigned char *sel;
    /* Server preference: the first of ours that the client offers. The
     * result points into our own list, which outlives the connection. */
    if (SSL_select_next_proto(&sel, outlen, c->alpn_wire, (unsigned)c->alpn_wire_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int sni_select(SSL *ssl, int *alert, void *arg)
{
    tw_tls_context *c = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || c->sni_count == 0)
        return SSL_TLSEXT_ERR_OK;
    X509 *leaf = SSL_CTX_get0_certificate(c->ctx);
    if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < c->sni_count; i++) {
        leaf = SSL_CTX_get0_certificate(c->sni[i]);
        if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, c->sni[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* no match: the default certificate */
}

static int server_ctx_setup(tw_tls_context *c, SSL_CTX *ctx, const tw_tls_server_options *o,
                            const tw_tls_certificate *cert)
{
    static const unsigned char sid_ctx[] = "twirl";
    int rc = configure_common(c, ctx, o->min_version, o->max_version, o->ciphers, o->ciphersuites);
    if (rc < 0)
        return rc;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (o->no_session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, SERVER_SESSION_CACHE);
    } else {
        /* Tickets carry the session: no server-side cache to grow. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if ((rc = load_certificate(ctx, cert, true)) < 0)
        return rc;
    tw_tls_client_auth auth = o->client_auth;
    if (o->ca_file && auth == TW_TLS_CLIENT_CERT_NONE)
        auth = TW_TLS_CLIENT_CERT_REQUIRE;
    if (auth != TW_TLS_CLIENT_CERT_NONE) {
        if (!o->ca_file) {
            cfg_report("client certificates need a CA file to verify them");
            return TW_EINVAL;
        }
        if ((rc = check_readable("CA file", o->ca_file)) < 0)
            return rc;
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1)
            return config_error("cannot load the CA file", o->ca_file);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if (!names)
            return config_error("no CA certificate in", o->ca_file);
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (auth == TW_TLS_CLIENT_CERT_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    if (c->alpn_wire_len)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, c);
    return 0;
}

int tw_tls_server_context_new(const tw_tls_server_options *o, tw_tls_context **out)
{
    int rc;
    tw_tls_context *c = context_alloc(true);
    if (!c)
        return TW_ENOMEM;
    c->handshake_timeout = o->handshake_timeout == 0 ? 30.0 : o->handshake_timeout;
    if ((rc = parse_alpn(c, o->alpn)) < 0)
        goto fail;
    rc = TW_ENOMEM;
    if (!(c->ctx = SSL_CTX_new(TLS_server_method())))
        goto fail;
    if ((rc = server_ctx_setup(c, c->ctx, o, &o->cert)) < 0)
        goto fail;
    if (o->sni_count) {
        rc = TW_ENOMEM;
        if (!(c->sni = calloc(o->sni_count, sizeof *c->sni)))
            goto fail;
        for (size_t i = 0; i < o->sni_count; i++) {
            rc = TW_ENOMEM;
            if (!(c->sni[i] = SSL_CTX_new(TLS_server_method())))
                goto fail;
            c->sni_count++;
            if ((rc = server_ctx_setup(c, c->sni[i], o, &o->sni[i])) < 0)
                goto fail;
        }
        SSL_CTX_set_tlsext_servername_callback(c->ctx, sni_select);
        SSL_CTX_set_tlsext_servername_arg(c->ctx, c);
    }
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    context_free(c);
    return rc;
}

/* ------------------------------------------------------------ clients */

/* A PEM file, or (as Twisted's trustRoots allows) a directory whose files
 * each hold PEM certificates; files that hold none are skipped. */
static int load_trust_roots(SSL_CTX *ctx, const char *path)
{
    int rc;
    if ((rc = check_readable("trust roots", path)) < 0)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return check_readable("trust roots", path);
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        int loaded = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char file[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            if (stat(file, &st) == 0 && S_ISREG(st.st_mode) &&
                X509_STORE_load_file(store, file) == 1)
                loaded++;
        }
        closedir(d);
        ERR_clear_error();
        if (loaded == 0) {
            cfg_report("no PEM certificate in the trust roots directory %s", path);
            return TW_EINVAL;
        }
        return 0;
    }
    if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1)
        return config_error("cannot load the trust roots", path);
    return 0;
}

static int new_session(SSL *ssl, SSL_SESSION *sess);

int tw_tls_client_context_new(const tw_tls_client_options *o, tw_tls_context **out)
{
    int rc;
    tw_tls_context *c = context_alloc(false);
    if (!c)
        return TW_ENOMEM;
    c->handshake_timeout = o->handshake_timeout == 0 ? 30.0 : o->handshake_timeout;
    c->verify = !o->insecure_no_verify;
    c->session_cache = !o->no_session_cache;
    if ((rc = parse_alpn(c, o->alpn)) < 0)
        goto fail;
    rc = TW_ENOMEM;
    if (!(c->ctx = SSL_CTX_new(TLS_client_method())))
        goto fail;
    if ((rc = configure_common(c, c->ctx, o->min_version, o->max_version, o->ciphers,
                               o->ciphersuites)) < 0)
        goto fail;
    if (c->verify) {
        if (o->trust_roots) {
            if ((rc = load_trust_roots(c->ctx, o->trust_roots)) < 0)
                goto fail;
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            rc = config_error("cannot load the system trust store", NULL);
            goto fail;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        tw_log(TW_LOG_WARN, "tls",
               "a TLS client context with certificate verification OFF was made: its "
               "connections are open to interception");
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    if ((rc = load_certificate(c->ctx, &o->cert, false)) < 0)
        goto fail;
    if (c->alpn_wire_len &&
        SSL_CTX_set_alpn_protos(c->ctx, c->alpn_wire, (unsigned)c->alpn_wire_len) != 0) {
        rc = TW_ENOMEM;
        goto fail;
    }
    if (c->session_cache) {
        SSL_CTX_set_session_cache_mode(c->ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c->ctx, new_session);
    }
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    context_free(c);
    return rc;
}

/* ------------------------------------------------------- session cache */

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    tw_tls_context *c = tw__tls_context_of(SSL_get_SSL_CTX(ssl));
    const char *key = tw__tls_session_key(ssl);
    if (!c || !key || !SSL_SESSION_is_resumable(sess))
        return 0;
    tw__tls_session_store(c, key, sess);
    return 1; /* we keep the reference */
}

SSL_SESSION *tw__tls_session_lookup(tw_tls_context *c, const char *key)
{
    SSL_SESSION *s = NULL;
    pthread_mutex_lock(&c->cache_lock);
    for (size_t i = c->cache_len; i-- > 0;) {
        if (strcmp(c->cache[i].key, key) == 0) {
            s = c->cache[i].session;
            SSL_SESSION_up_ref(s);
            break;
        }
    }
    pthread_mutex_unlock(&c->cache_lock);
    return s;
}

void tw__tls_session_store(tw_tls_context *c, const char *key, SSL_SESSION *s)
{
    char *k = strdup(key);
    if (!k) {
        SSL_SESSION_free(s);
        return;
    }
    pthread_mutex_lock(&c->cache_lock);
    /* One session per key: replace; else drop the oldest when full. O(n),
     * n <= TW__TLS_SESSION_CACHE_MAX. */
    size_t at = c->cache_len;
    for (size_t i = 0; i < c->cache_len; i++) {
        if (strcmp(c->cache[i].key, key) == 0) {
            at = i;
            break;
        }
    }
    if (at == c->cache_len && c->cache_len == TW__TLS_SESSION_CACHE_MAX)
        at = 0;
    tw__tls_session old = { NULL, NULL };
    if (at < c->cache_len) {
        old = c->cache[at];
        memmove(&c->cache[at], &c->cache[at + 1], (c->cache_len - at - 1) * sizeof c->cache[0]);
        c->cache_len--;
    }
    c->cache[c->cache_len++] = (tw__tls_session){ k, s };
    pthread_mutex_unlock(&c->cache_lock);
    free(old.key);
    SSL_SESSION_free(old.session);
}

/* ------------------------------------------------------- for endpoints */

int tw__tls_server_context_new_err(const tw_tls_server_options *o, tw_tls_context **out, char *err,
                                   size_t errlen)
{
    err_sink = err;
    err_sink_len = err ? errlen : 0;
    if (err && errlen)
        err[0] = '\0';
    int rc = tw_tls_server_context_new(o, out);
    err_sink = NULL;
    err_sink_len = 0;
    return rc;
}

int tw__tls_client_context_new_err(const tw_tls_client_options *o, tw_tls_context **out, char *err,
                                   size_t errlen)
{
    err_sink = err;
    err_sink_len = err ? errlen : 0;
    if (err && errlen)
        err[0] = '\0';
    int rc = tw_tls_client_context_new(o, out);
    err_sink = NULL;
    err_sink_len = 0;
    return rc;
}
