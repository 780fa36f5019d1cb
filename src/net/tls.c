/* tls.c — TLS as a layer over any transport (Twisted's
 * TLSMemoryBIOProtocol): the TLS connection is a protocol on the transport
 * below and a transport for the protocol above.
 *
 * Two ways in:
 *  - a wrapping factory (tw_tls_factory_new): the wrapper is the protocol the
 *    transport below built ("owned" mode); the inner protocol is built by the
 *    inner factory once the handshake succeeded, and freed by the wrapper;
 *  - tw_tls_start: the protocol is already attached to the transport below,
 *    which owns it. The wrapper is allocated on its own and the protocol's
 *    ops pointer is swapped for a table of the wrapper's hooks ("swapped"
 *    mode), so the transport below goes on calling the same protocol
 *    pointer; the wrapper finds itself through p->transport, restores the
 *    ops before connection_lost and frees itself there.
 *
 * Bytes. OpenSSL talks to a custom BIO: reading serves the ciphertext slice
 * the transport below handed to data_received (its shared read buffer: no
 * copy unless the protocol above pauses with input left), writing gathers
 * records in one staging buffer per reactor, handed down in one write when
 * the operation ends. Plaintext is decrypted into a stack buffer, one record
 * at a time. Every entry point (data from below, a write from above, a
 * timer, a task) flushes the staging buffer before it returns, and before it
 * calls the protocol above, so the buffer is free for another connection
 * whenever a callback runs.
 *
 * Reentrancy: nothing here frees the wrapper except the transport below's
 * connection_lost/destroy, which run from the loop; resuming a paused
 * connection processes buffered input from a task, never inside the
 * protocol's call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/reactor_internal.h"
#include "net/tls_internal.h"
#include "twirl/log.h"

enum {
    PLAIN_CHUNK = 16384,       /* one record's plaintext: the decrypt buffer */
    STAGING_BYTES = 72 * 1024, /* four full records and their overhead */
    GATHER_BYTES = 16384       /* writev: small pieces are joined up to this */
};

enum tls_flags {
    F_CLIENT = 1u << 0,
    F_OWNED = 1u << 1, /* built by a wrapping factory */
    F_HANDSHAKE_DONE = 1u << 2,
    F_MADE = 1u << 3,           /* the protocol above had connection_made */
    F_PAUSED = 1u << 4,         /* the protocol above paused reading */
    F_LOWER_EOF = 1u << 5,      /* the transport below saw the end of stream */
    F_PEER_CLOSED = 1u << 6,    /* close_notify received */
    F_SHUT_SENT = 1u << 7,      /* close_notify sent */
    F_SHUT_PENDING = 1u << 8,   /* lose_write_connection waits for the handshake */
    F_FAILED = 1u << 9,         /* c->failure says why */
    F_LOWER_CLOSING = 1u << 10, /* the transport below was told to close */
    F_LOWER_LOST = 1u << 11,    /* its connection_lost ran */
    F_STREAMING = 1u << 12,     /* the registered producer is a push producer */
    F_IN_PROCESS = 1u << 13,
    F_LOWER_DEAD = 1u << 14, /* a write below failed: it is going away */
    F_REPORTED = 1u << 15    /* the factory's made hook was told */
};

typedef struct pend pend;
struct pend {
    pend *next;
    size_t len;
    char data[];
};

typedef struct tls_factory {
    tw_factory base; /* first */
    tw_factory *inner;
    tw_tls_context *ctx;
    char *server_name;
    int refs;           /* the owner's, and one per connection made */
    tw__task free_task; /* a last reference dropped inside a teardown */
    bool auto_free;     /* endpoints': the owner's reference goes at stop */
    tw__tls_made_fn made;
    void *made_arg;
    tw_free_fn made_arg_free;
    /* What the last client connection left for the connector hooks, which
     * the transport below calls right after the wrapper's connection_lost. */
    tw_failure *last;
    bool last_made, has_last;
} tls_factory;

typedef struct tls_conn {
    tw_protocol lower_proto; /* owned mode: the protocol below sees; first */
    tw_transport base;       /* the transport the protocol above sees */
    tw_transport *lower;
    SSL *ssl;
    tw_tls_context *ctx; /* a reference */
    tw_protocol *inner;
    const tw_protocol_ops *inner_ops; /* the protocol above's own hooks */
    tls_factory *factory;             /* owned mode */
    const char *server_name;          /* owned: the factory's; swapped: own copy */
    char *own_name;
    char *session_key;
    /* Ciphertext the SSL object has not taken yet. */
    const char *in_ptr;
    size_t in_len;
    char *in_buf; /* kept input (only while paused with input left) */
    size_t in_cap;
    /* Plaintext written before the handshake ended. */
    pend *pend_head, *pend_tail;
    size_t pend_bytes;
    tw_producer *producer;
    tw_producer membrane; /* registered below on the producer's behalf */
    tw_timer hs_timer;
    tw__task task;
    tw_failure *failure;
    tw_tls_handshake_fn done;
    void *done_arg;
    int lower_err;
    uint32_t flags;
} tls_conn;

static const tw_transport_ops tls_transport_ops;
static const tw_protocol_ops owned_ops;
static const tw_protocol_ops swapped_ops;

static void process(tls_conn *c);
static void fail(tls_conn *c, int code, const char *msg);
static void flush_out(tls_conn *c);
static void send_pending(tls_conn *c);
static void report_made(tls_conn *c, tw_protocol *p, const tw_failure *why);

static inline tls_conn *conn_of(const tw_transport *t)
{
    return (tls_conn *)((char *)t - offsetof(tls_conn, base));
}

/* The wrapper behind the protocol the transport below calls. */
static tls_conn *tls_of(tw_protocol *x)
{
    if (x->ops == &owned_ops)
        return (tls_conn *)x;
    return conn_of(x->transport);
}

static void peer_text(tls_conn *c, char *buf, size_t size)
{
    tw_address a;
    snprintf(buf, size, "?");
    if (c->lower && tw_transport_get_peer(c->lower, &a) == 0 && a.len > 0)
        tw_address_format(&a, buf, size);
}

/* -------------------------------------------------------- staging buffer */

typedef struct staging {
    tls_conn *owner;
    size_t len;
    char buf[STAGING_BYTES];
} staging;

static void staging_cleanup(tw_reactor *r, void *arg)
{
    *tw__reactor_slot(r, TW__SLOT_TLS) = NULL;
    free(arg);
}

static staging *staging_of(tls_conn *c)
{
    tw_reactor *r = c->base.reactor;
    if (!r)
        return NULL;
    void **slot = tw__reactor_slot(r, TW__SLOT_TLS);
    if (!*slot) {
        staging *s = malloc(sizeof *s);
        if (!s)
            return NULL;
        s->owner = NULL;
        s->len = 0;
        if (tw__reactor_on_free(r, staging_cleanup, s) < 0) {
            free(s);
            return NULL;
        }
        *slot = s;
    }
    return *slot;
}

static void lower_write(tls_conn *c, const void *data, size_t len)
{
    if (c->flags & (F_LOWER_DEAD | F_LOWER_LOST) || !c->lower)
        return;
    int rc = tw_transport_write(c->lower, data, len);
    if (rc < 0) {
        c->flags |= F_LOWER_DEAD;
        c->lower_err = rc;
    }
}

/* What OpenSSL writes: into the staging buffer when this connection may use
 * it, straight down otherwise (no reactor, or another connection's bytes
 * are in it: TLS inside TLS). */
static void out_write(tls_conn *c, const char *data, size_t len)
{
    staging *s = staging_of(c);
    if (!s || (s->owner && s->owner != c)) {
        lower_write(c, data, len);
        return;
    }
    s->owner = c;
    if (s->len + len > sizeof s->buf) {
        flush_out(c);
        s->owner = c;
    }
    if (len > sizeof s->buf) {
        lower_write(c, data, len);
        return;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
}

static void flush_out(tls_conn *c)
{
    staging *s = c->base.reactor ? *tw__reactor_slot(c->base.reactor, TW__SLOT_TLS) : NULL;
    if (!s || s->owner != c)
        return;
    if (s->len) {
        size_t n = s->len;
        s->len = 0;
        /* Still owned while handed down: a TLS transport below writes its
         * own records straight through. */
        lower_write(c, s->buf, n);
    }
    s->owner = NULL;
}

/* --------------------------------------------------------------- the BIO */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len > 0)
        out_write(c, data, (size_t)len);
    return len;
}

static int bio_read(BIO *b, char *out, int len)
{
    tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c->in_len == 0) {
        if (c->flags & F_LOWER_EOF)
            return 0;
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < c->in_len ? (size_t)len : c->in_len;
    memcpy(out, c->in_ptr, n);
    c->in_ptr += n;
    c->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return c ? (long)c->in_len : 0;
    case BIO_CTRL_WPENDING:
        return 0;
    case BIO_CTRL_EOF:
        return c && c->in_len == 0 && (c->flags & F_LOWER_EOF);
    }
    return 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "twirl transport");
    if (!m)
        return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

/* ------------------------------------------------------------ set-up */

const char *tw__tls_session_key(SSL *ssl)
{
    tls_conn *c = SSL_get_app_data(ssl);
    return c ? c->session_key : NULL;
}

static int setup_ssl(tls_conn *c)
{
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method)
        return TW_ENOMEM;
    tw_tls_context *ctx = c->ctx;
    if (!(c->ssl = SSL_new(ctx->ctx)))
        return TW_ENOMEM;
    BIO *b = BIO_new(bio_method);
    if (!b)
        return TW_ENOMEM;
    BIO_set_data(b, c);
    SSL_set_bio(c->ssl, b, b);
    SSL_set_app_data(c->ssl, c);
    if (ctx->server) {
        SSL_set_accept_state(c->ssl);
        return 0;
    }
    c->flags |= F_CLIENT;
    SSL_set_connect_state(c->ssl);
    const char *name = c->server_name;
    if (!name)
        return 0;
    bool ip = tw__tls_is_ip(name);
    if (!ip && !SSL_set_tlsext_host_name(c->ssl, name))
        return TW_ENOMEM;
    if (ctx->verify) {
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name)
                    : SSL_set1_host(c->ssl, name);
        if (!ok)
            return TW_EINVAL;
    }
    if (ctx->session_cache) {
        tw_address a;
        char key[300];
        unsigned port = 0;
        if (c->lower && tw_transport_get_peer(c->lower, &a) == 0)
            port = tw_address_port(&a);
        snprintf(key, sizeof key, "%s:%u", name, port);
        if (!(c->session_key = strdup(key)))
            return TW_ENOMEM;
        SSL_SESSION *s = tw__tls_session_lookup(ctx, key);
        if (s) {
            SSL_set_session(c->ssl, s);
            SSL_SESSION_free(s);
        }
    }
    return 0;
}

static void hs_timeout(void *arg)
{
    tls_conn *c = arg;
    c->hs_timer = TW_TIMER_NONE;
    if (c->flags & (F_HANDSHAKE_DONE | F_FAILED | F_LOWER_LOST))
        return;
    char msg[64];
    snprintf(msg, sizeof msg, "no handshake after %.3g seconds", c->ctx->handshake_timeout);
    fail(c, TW_TLS_ERR_TIMEOUT, msg);
    /* A peer that sends nothing may read nothing either: do not wait for
     * the alert to drain. */
    if (c->lower && !(c->flags & F_LOWER_LOST))
        tw_transport_abort_connection(c->lower);
}

static void start_timer(tls_conn *c)
{
    if (c->base.reactor && c->ctx->handshake_timeout > 0)
        c->hs_timer = tw_call_later(c->base.reactor, c->ctx->handshake_timeout, hs_timeout, c);
}

/* Frees what the wrapper holds (not the wrapper itself, nor the protocol
 * above). */
static void release(tls_conn *c)
{
    tw_timer_cancel(c->hs_timer);
    c->hs_timer = TW_TIMER_NONE;
    if (c->base.reactor)
        tw__task_cancel(c->base.reactor, &c->task);
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    for (pend *p = c->pend_head; p;) {
        pend *next = p->next;
        free(p);
        p = next;
    }
    c->pend_head = c->pend_tail = NULL;
    c->pend_bytes = 0;
    free(c->in_buf);
    c->in_buf = NULL;
    c->in_len = 0;
    free(c->session_key);
    c->session_key = NULL;
    free(c->own_name);
    c->own_name = NULL;
    tw_failure_unref(c->failure);
    c->failure = NULL;
    tw_tls_context_unref(c->ctx);
    c->ctx = NULL;
}

/* -------------------------------------------------------- input handling */

/* Keeps the ciphertext OpenSSL has not taken, so the slice of the buffer
 * below may be reused. */
static int keep_input(tls_conn *c)
{
    if (c->in_len == 0) {
        free(c->in_buf);
        c->in_buf = NULL;
        c->in_cap = 0;
        return 0;
    }
    if (c->in_buf && c->in_ptr >= c->in_buf && c->in_ptr < c->in_buf + c->in_cap) {
        memmove(c->in_buf, c->in_ptr, c->in_len);
    } else {
        char *b = malloc(c->in_len);
        if (!b)
            return TW_ENOMEM;
        memcpy(b, c->in_ptr, c->in_len);
        free(c->in_buf);
        c->in_buf = b;
        c->in_cap = c->in_len;
    }
    c->in_ptr = c->in_buf;
    return 0;
}

/* Appends data after the kept input. */
static int add_input(tls_conn *c, const void *data, size_t len)
{
    size_t need = c->in_len + len;
    if (c->in_buf && c->in_ptr != c->in_buf)
        memmove(c->in_buf, c->in_ptr, c->in_len);
    if (need > c->in_cap) {
        char *b = realloc(c->in_buf, need);
        if (!b)
            return TW_ENOMEM;
        c->in_buf = b;
        c->in_cap = need;
    }
    memcpy(c->in_buf + c->in_len, data, len);
    c->in_ptr = c->in_buf;
    c->in_len = need;
    return 0;
}

static bool has_input(tls_conn *c)
{
    return c->in_len > 0 || (c->ssl && SSL_has_pending(c->ssl)) || (c->flags & F_LOWER_EOF);
}

static void run_task(tw_reactor *r, tw__task *t)
{
    tls_conn *c = (tls_conn *)((char *)t - offsetof(tls_conn, task));
    if (c->flags & F_LOWER_LOST)
        return;
    process(c);
    if (keep_input(c) < 0)
        fail(c, TW_TLS_ERR_INTERNAL, "out of memory");
    flush_out(c);
}

/* Runs process() soon, from the loop. Without a reactor (test doubles), now. */
static void schedule(tls_conn *c)
{
    if (c->base.reactor)
        tw__task_post(c->base.reactor, &c->task, run_task);
    else
        run_task(NULL, &c->task);
}

/* ------------------------------------------------------------ closing */

static void close_lower(tls_conn *c)
{
    if (c->flags & (F_LOWER_CLOSING | F_LOWER_LOST))
        return;
    c->flags |= F_LOWER_CLOSING;
    flush_out(c);
    tw_transport_lose_connection(c->lower);
}

/* Sends close_notify (once). */
static void send_shutdown(tls_conn *c)
{
    if (c->flags & F_SHUT_SENT)
        return;
    c->flags |= F_SHUT_SENT;
    if (!(c->flags & F_FAILED)) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    flush_out(c);
}

/* The protocol above asked to close (or the connection failed) and what it
 * wrote is encrypted: say goodbye and close below. */
static void finish_close(tls_conn *c)
{
    send_pending(c);
    send_shutdown(c);
    close_lower(c);
}

static void fail(tls_conn *c, int code, const char *msg)
{
    if (c->flags & F_FAILED)
        return;
    c->flags |= F_FAILED;
    bool in_handshake = !(c->flags & F_HANDSHAKE_DONE);
    char peer[TW_ADDRESS_TEXT_MAX];
    peer_text(c, peer, sizeof peer);
    c->failure = tw_failure_new(TW_TLS_DOMAIN, code, "TLS %s with %s failed: %s",
                                in_handshake ? "handshake" : "connection", peer, msg);
    tw_log(in_handshake && !(c->flags & F_CLIENT) && (c->flags & F_OWNED) ? TW_LOG_INFO
                                                                          : TW_LOG_DEBUG,
           "tls", "%s", tw_failure_message(c->failure));
    tw_timer_cancel(c->hs_timer);
    c->hs_timer = TW_TIMER_NONE;
    if (c->base.state == TW_TRANSPORT_OPEN)
        c->base.state = TW_TRANSPORT_DISCONNECTING;
    flush_out(c); /* the alert OpenSSL queued, if any */
    if (in_handshake && c->done && c->inner) {
        tw_tls_handshake_fn done = c->done;
        c->done = NULL;
        done(c->inner, c->failure, c->done_arg);
    }
    close_lower(c);
}

/* ---------------------------------------------------------- handshake */

static void attach_inner(tls_conn *c)
{
    tw_address peer;
    if (tw_transport_get_peer(c->lower, &peer) < 0)
        memset(&peer, 0, sizeof peer);
    tw_protocol *p = tw_factory_build(c->factory->inner, &peer);
    if (!p) {
        char who[TW_ADDRESS_TEXT_MAX];
        peer_text(c, who, sizeof who);
        tw_log(TW_LOG_INFO, "tls", "%s: the factory refused the connection", who);
        c->base.state = TW_TRANSPORT_DISCONNECTING;
        finish_close(c);
        tw_failure *why =
            tw_failure_new(TW_DOMAIN, TW_ECANCELED, "the factory built no protocol for %s", who);
        report_made(c, NULL, why);
        tw_failure_unref(why);
        return;
    }
    c->inner = p;
    c->inner_ops = p->ops;
    c->base.protocol = p;
    p->transport = &c->base;
    c->flags |= F_MADE;
    flush_out(c);
    if (p->ops->connection_made)
        p->ops->connection_made(p);
    if (c->inner == p && !(c->flags & F_LOWER_LOST))
        report_made(c, p, NULL);
}

static void handshake_done(tls_conn *c)
{
    c->flags |= F_HANDSHAKE_DONE;
    tw_timer_cancel(c->hs_timer);
    c->hs_timer = TW_TIMER_NONE;
    if (c->flags & F_OWNED) {
        attach_inner(c);
        return;
    }
    /* startTLS: what was written meanwhile goes first, then the news. */
    send_pending(c);
    if (c->pend_bytes == 0 && c->producer && !(c->flags & F_STREAMING) &&
        tw_transport_buffered(c->lower) == 0 && c->base.state == TW_TRANSPORT_OPEN)
        c->producer->ops->resume_producing(c->producer);
    if (c->done) {
        tw_tls_handshake_fn done = c->done;
        c->done = NULL;
        flush_out(c);
        done(c->inner, NULL, c->done_arg);
    }
}

static void handshake(tls_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        handshake_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    char msg[256];
    int code = tw__tls_classify(c->ssl, e, msg, sizeof msg);
    if (code == TW_TLS_ERR_UNEXPECTED_EOF)
        snprintf(msg, sizeof msg, "the connection closed during the handshake");
    fail(c, code, msg);
}

/* ------------------------------------------------------------ reading */

static void peer_closed(tls_conn *c)
{
    c->flags |= F_PEER_CLOSED;
    flush_out(c);
    if (c->base.state != TW_TRANSPORT_OPEN || (c->flags & F_SHUT_SENT)) {
        /* Both directions are done. */
        c->base.state = TW_TRANSPORT_DISCONNECTING;
        finish_close(c);
        return;
    }
    tw_protocol *p = c->inner;
    if (c->inner_ops->eof_received)
        c->inner_ops->eof_received(p);
    else
        tw_transport_lose_connection(&c->base);
}

static bool delivering(const tls_conn *c)
{
    return c->base.state == TW_TRANSPORT_OPEN &&
           !(c->flags & (F_PAUSED | F_PEER_CLOSED | F_FAILED | F_LOWER_LOST));
}

static void read_records(tls_conn *c)
{
    char buf[PLAIN_CHUNK];
    while (delivering(c)) {
        size_t n;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, buf, sizeof buf, &n)) {
            flush_out(c); /* post-handshake replies (key update, tickets) */
            if (c->inner_ops->data_received)
                c->inner_ops->data_received(c->inner, buf, n);
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            peer_closed(c);
            break;
        }
        char msg[256];
        int code = tw__tls_classify(c->ssl, e, msg, sizeof msg);
        fail(c, code, msg);
        break;
    }
}

static void process(tls_conn *c)
{
    if (c->flags & (F_IN_PROCESS | F_LOWER_LOST | F_FAILED) || !c->ssl)
        return;
    c->flags |= F_IN_PROCESS;
    if (!(c->flags & F_HANDSHAKE_DONE))
        handshake(c);
    if (c->flags & F_HANDSHAKE_DONE) {
        if (c->base.state == TW_TRANSPORT_DISCONNECTING && !(c->flags & F_FAILED))
            finish_close(c); /* closed before (or during) the handshake */
        else
            read_records(c);
    }
    c->flags &= ~F_IN_PROCESS;
    flush_out(c);
}

/* ----------------------------------------- the protocol the lower sees */

static void factory_destroy(tls_factory *f)
{
    tw_failure_unref(f->last);
    tw_tls_context_unref(f->ctx);
    if (f->made_arg_free)
        f->made_arg_free(f->made_arg);
    free(f->server_name);
    free(f);
}

static void factory_free_task(tw_reactor *r, tw__task *t)
{
    factory_destroy((tls_factory *)((char *)t - offsetof(tls_factory, free_task)));
}

static void factory_unref(tls_factory *f)
{
    if (--f->refs == 0)
        factory_destroy(f);
}

/* From a connection's destroy: the transport below may still touch the
 * factory (a connector's hooks run after destroy), so a last reference
 * going here frees it from the loop. */
static void factory_unref_later(tls_factory *f, tw_reactor *r)
{
    if (f->refs > 1 || !r) {
        factory_unref(f);
        return;
    }
    f->refs = 0;
    tw__task_post(r, &f->free_task, factory_free_task);
}

static void report_made(tls_conn *c, tw_protocol *p, const tw_failure *why)
{
    tls_factory *f = c->factory;
    if (c->flags & F_REPORTED)
        return;
    c->flags |= F_REPORTED;
    if (f && f->made)
        f->made(f->made_arg, p, why);
}

static void x_made(tw_protocol *x)
{
    tls_conn *c = (tls_conn *)x;
    tls_factory *f = (tls_factory *)x->factory;
    c->lower = x->transport;
    c->factory = f;
    f->refs++;
    c->flags |= F_OWNED;
    tw_transport_init(&c->base, &tls_transport_ops, c->lower->reactor);
    c->ctx = tw_tls_context_ref(f->ctx);
    c->server_name = f->server_name;
    int rc = setup_ssl(c);
    if (rc < 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "cannot set the connection up: %s", tw_strerror(rc));
        ERR_clear_error();
        fail(c, TW_TLS_ERR_INTERNAL, msg);
        return;
    }
    start_timer(c);
    if (c->flags & F_CLIENT)
        process(c); /* the ClientHello */
}

static void x_data(tw_protocol *x, const void *data, size_t len)
{
    tls_conn *c = tls_of(x);
    if (c->flags & (F_FAILED | F_LOWER_LOST))
        return; /* closing: what follows a fatal error is dropped */
    if (c->in_len) {
        if (add_input(c, data, len) < 0) {
            fail(c, TW_TLS_ERR_INTERNAL, "out of memory");
            return;
        }
    } else {
        c->in_ptr = data;
        c->in_len = len;
    }
    process(c);
    if (keep_input(c) < 0)
        fail(c, TW_TLS_ERR_INTERNAL, "out of memory");
    flush_out(c);
}

static void x_eof(tw_protocol *x)
{
    tls_conn *c = tls_of(x);
    c->flags |= F_LOWER_EOF;
    if (c->flags & (F_FAILED | F_LOWER_LOST))
        return;
    if (c->flags & F_PEER_CLOSED) {
        /* close_notify came first: a clean end. Close once our side is
         * done too. */
        if (c->base.state != TW_TRANSPORT_OPEN || (c->flags & F_SHUT_SENT))
            close_lower(c);
        return;
    }
    /* Read what is left, then OpenSSL sees the end: a truncation unless a
     * close_notify is in what is left. */
    if (c->flags & F_PAUSED)
        return; /* resume will get there */
    process(c);
    keep_input(c);
    flush_out(c);
}

/* The reason the protocol above gets. */
static tw_failure *lost_reason(tls_conn *c, const tw_failure *lower_reason)
{
    if (c->failure) {
        return tw_failure_wrap(tw_failure_ref(c->failure), TW_DOMAIN, TW_ECONNECTION_LOST,
                               "Connection to the other side was lost: %s",
                               tw_failure_message(c->failure));
    }
    return tw_failure_ref((tw_failure *)lower_reason);
}

static void x_lost(tw_protocol *x, const tw_failure *lower_reason)
{
    tls_conn *c = tls_of(x);
    c->flags |= F_LOWER_LOST;
    c->base.state = TW_TRANSPORT_CLOSED;
    tw_timer_cancel(c->hs_timer);
    c->hs_timer = TW_TIMER_NONE;
    if (c->base.reactor)
        tw__task_cancel(c->base.reactor, &c->task);
    if (c->producer) {
        tw_producer *prod = c->producer;
        c->producer = NULL;
        if (prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    if (!(c->flags & F_HANDSHAKE_DONE) && !c->failure) {
        char peer[TW_ADDRESS_TEXT_MAX];
        peer_text(c, peer, sizeof peer);
        c->failure = tw_failure_wrap(tw_failure_ref((tw_failure *)lower_reason), TW_TLS_DOMAIN,
                                     TW_TLS_ERR_HANDSHAKE,
                                     "TLS handshake with %s failed: the connection was lost", peer);
        if (c->done && c->inner) {
            tw_tls_handshake_fn done = c->done;
            c->done = NULL;
            done(c->inner, c->failure, c->done_arg);
        }
    }
    tw_failure *reason = lost_reason(c, lower_reason);
    tls_factory *f = c->factory;
    if ((c->flags & F_OWNED) && !(c->flags & F_MADE))
        report_made(c, NULL, c->failure ? c->failure : reason);
    if (f && (c->flags & F_CLIENT)) {
        /* For the connector hooks that follow. */
        tw_failure_unref(f->last);
        f->has_last = true;
        f->last_made = (c->flags & F_MADE) != 0;
        f->last = tw_failure_ref(f->last_made || !c->failure ? reason : c->failure);
    }
    tw_protocol *p = c->inner;
    if (p && (c->flags & F_MADE)) {
        if (!(c->flags & F_OWNED))
            p->ops = c->inner_ops; /* restored before its last call */
        if (c->inner_ops->connection_lost)
            c->inner_ops->connection_lost(p, reason);
        p->transport = NULL;
    }
    tw_failure_unref(reason);
    if (!(c->flags & F_OWNED)) {
        release(c);
        free(c);
    }
}

static void x_destroy(tw_protocol *x)
{
    tls_conn *c = (tls_conn *)x;
    tw_protocol *p = c->inner;
    c->inner = NULL;
    release(c);
    if (p)
        tw_protocol_free(p);
    if (c->factory)
        factory_unref_later(c->factory, c->base.reactor);
    c->factory = NULL;
}

/* Swapped mode: the protocol is destroyed without connection_lost (a
 * transport that never made it): put its ops back first. */
static void x_swapped_destroy(tw_protocol *x)
{
    tls_conn *c = conn_of(x->transport);
    x->ops = c->inner_ops;
    release(c);
    free(c);
    if (x->ops->destroy)
        x->ops->destroy(x);
}

static const tw_protocol_ops owned_ops = {
    .size = sizeof(tls_conn),
    .connection_made = x_made,
    .data_received = x_data,
    .eof_received = x_eof,
    .connection_lost = x_lost,
    .destroy = x_destroy,
};

static const tw_protocol_ops swapped_ops = {
    .data_received = x_data,
    .eof_received = x_eof,
    .connection_lost = x_lost,
    .destroy = x_swapped_destroy,
};

/* --------------------------------------- the transport the protocol sees */

static int pend_add(tls_conn *c, const void *data, size_t len)
{
    if (c->pend_bytes + len > TW_WRITE_LIMIT) {
        tw_log(TW_LOG_WARN, "tls", "over %u bytes written before the handshake ended: aborting",
               (unsigned)TW_WRITE_LIMIT);
        tw_transport_abort_connection(&c->base);
        return TW_ELIMIT;
    }
    pend *p = malloc(sizeof *p + len);
    if (!p)
        return TW_ENOMEM;
    p->next = NULL;
    p->len = len;
    memcpy(p->data, data, len);
    if (c->pend_tail)
        c->pend_tail->next = p;
    else
        c->pend_head = p;
    c->pend_tail = p;
    c->pend_bytes += len;
    return 0;
}

/* Encrypts into the staging buffer (not flushed). */
static int encrypt(tls_conn *c, const void *data, size_t len)
{
    size_t written;
    ERR_clear_error();
    if (!SSL_write_ex(c->ssl, data, len, &written)) {
        char msg[256];
        int e = SSL_get_error(c->ssl, 0);
        int code = tw__tls_classify(c->ssl, e, msg, sizeof msg);
        fail(c, code, msg);
        return TW_ECLOSED;
    }
    return 0;
}

static void send_pending(tls_conn *c)
{
    while (c->pend_head && !(c->flags & F_FAILED)) {
        pend *p = c->pend_head;
        c->pend_head = p->next;
        if (!c->pend_head)
            c->pend_tail = NULL;
        c->pend_bytes -= p->len;
        encrypt(c, p->data, p->len);
        free(p);
    }
    if (c->flags & F_SHUT_PENDING) {
        c->flags &= ~F_SHUT_PENDING;
        send_shutdown(c);
        tw_transport_lose_write_connection(c->lower);
        if (c->flags & F_PEER_CLOSED)
            close_lower(c);
    }
    flush_out(c);
}

static int write_state(tls_conn *c)
{
    if (c->base.state != TW_TRANSPORT_OPEN || (c->flags & (F_SHUT_SENT | F_SHUT_PENDING)))
        return TW_ECLOSED;
    return 0;
}

static int after_write(tls_conn *c, int rc)
{
    flush_out(c);
    if (rc == 0 && (c->flags & F_LOWER_DEAD))
        rc = c->lower_err ? c->lower_err : TW_ECLOSED;
    return rc;
}

static int tls_write(tw_transport *t, const void *data, size_t len)
{
    tls_conn *c = conn_of(t);
    int rc = write_state(c);
    if (rc < 0 || len == 0)
        return rc;
    if (!(c->flags & F_HANDSHAKE_DONE) || c->pend_head)
        return pend_add(c, data, len);
    return after_write(c, encrypt(c, data, len));
}

static int tls_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    tls_conn *c = conn_of(t);
    int rc = write_state(c);
    if (rc < 0)
        return rc;
    if (!(c->flags & F_HANDSHAKE_DONE) || c->pend_head) {
        for (int i = 0; i < iovcnt && rc == 0; i++)
            if (iov[i].iov_len)
                rc = pend_add(c, iov[i].iov_base, iov[i].iov_len);
        return rc;
    }
    /* Small pieces are joined so that each does not cost a record. */
    char gather[GATHER_BYTES];
    size_t have = 0;
    for (int i = 0; i < iovcnt && rc == 0; i++) {
        const char *p = iov[i].iov_base;
        size_t l = iov[i].iov_len;
        if (have + l <= sizeof gather) {
            memcpy(gather + have, p, l);
            have += l;
            continue;
        }
        if (have) {
            rc = encrypt(c, gather, have);
            have = 0;
        }
        if (rc == 0 && l >= sizeof gather / 2) {
            rc = encrypt(c, p, l);
        } else if (rc == 0) {
            memcpy(gather, p, l);
            have = l;
        }
    }
    if (rc == 0 && have)
        rc = encrypt(c, gather, have);
    return after_write(c, rc);
}

static int tls_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release_fn,
                         void *arg)
{
    /* Encrypting consumes the plaintext at once: nothing to lend. */
    int rc = tls_write(t, data, len);
    if (release_fn)
        release_fn(arg);
    return rc;
}

static void tls_lose_connection(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (t->state != TW_TRANSPORT_OPEN)
        return;
    t->state = TW_TRANSPORT_DISCONNECTING;
    if (c->flags & F_FAILED)
        return;
    if (!(c->flags & F_HANDSHAKE_DONE))
        return; /* the handshake's end will finish the close */
    finish_close(c);
}

static void tls_abort_connection(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (t->state == TW_TRANSPORT_CLOSED || (c->flags & F_LOWER_LOST))
        return;
    t->state = TW_TRANSPORT_DISCONNECTING;
    c->flags |= F_LOWER_CLOSING;
    for (pend *p = c->pend_head; p;) {
        pend *next = p->next;
        free(p);
        p = next;
    }
    c->pend_head = c->pend_tail = NULL;
    c->pend_bytes = 0;
    staging *s = c->base.reactor ? *tw__reactor_slot(c->base.reactor, TW__SLOT_TLS) : NULL;
    if (s && s->owner == c) {
        s->len = 0;
        s->owner = NULL;
    }
    tw_transport_abort_connection(c->lower);
}

static int tls_lose_write_connection(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (t->state != TW_TRANSPORT_OPEN || (c->flags & (F_SHUT_SENT | F_SHUT_PENDING)))
        return TW_ECLOSED;
    c->flags |= F_SHUT_PENDING;
    if (c->flags & F_HANDSHAKE_DONE)
        send_pending(c);
    return 0;
}

static void tls_pause(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (t->state == TW_TRANSPORT_CLOSED)
        return;
    c->flags |= F_PAUSED;
    tw_transport_pause_producing(c->lower);
}

static void tls_resume(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (t->state == TW_TRANSPORT_CLOSED)
        return;
    c->flags &= ~F_PAUSED;
    tw_transport_resume_producing(c->lower);
    /* Records already read, kept input, or an end of stream seen while
     * paused: delivered from the loop, not inside this call. */
    if (has_input(c))
        schedule(c);
}

static void tls_stop(tw_transport *t)
{
    tls_lose_connection(t);
}

static void membrane_pause(tw_producer *m)
{
    tls_conn *c = (tls_conn *)((char *)m - offsetof(tls_conn, membrane));
    if (c->producer && (c->flags & F_STREAMING))
        c->producer->ops->pause_producing(c->producer);
}

static void membrane_resume(tw_producer *m)
{
    tls_conn *c = (tls_conn *)((char *)m - offsetof(tls_conn, membrane));
    if (!c->producer)
        return;
    /* A pull producer's chunk would only be held before the handshake. */
    if (!(c->flags & F_STREAMING) && !(c->flags & F_HANDSHAKE_DONE))
        return;
    c->producer->ops->resume_producing(c->producer);
}

static void membrane_stop(tw_producer *m)
{
    tls_conn *c = (tls_conn *)((char *)m - offsetof(tls_conn, membrane));
    tw_producer *prod = c->producer;
    c->producer = NULL;
    if (prod && prod->ops->stop_producing)
        prod->ops->stop_producing(prod);
}

static const tw_producer_ops membrane_ops = { membrane_pause, membrane_resume, membrane_stop };

static int tls_register_producer(tw_transport *t, tw_producer *p, bool streaming)
{
    tls_conn *c = conn_of(t);
    if (c->producer) {
        tw_log(TW_LOG_ERROR, "tls", "register_producer: a producer is already registered");
        return TW_EBUSY;
    }
    if (t->state == TW_TRANSPORT_CLOSED)
        return TW_ECLOSED;
    c->producer = p;
    c->flags = streaming ? c->flags | F_STREAMING : c->flags & ~F_STREAMING;
    c->membrane.ops = &membrane_ops;
    int rc = tw_transport_register_producer(c->lower, &c->membrane, streaming);
    if (rc < 0)
        c->producer = NULL;
    return rc;
}

static void tls_unregister_producer(tw_transport *t)
{
    tls_conn *c = conn_of(t);
    if (!c->producer)
        return;
    c->producer = NULL;
    if (!(c->flags & F_LOWER_LOST))
        tw_transport_unregister_producer(c->lower);
}

static int tls_get_peer(tw_transport *t, tw_address *out)
{
    tls_conn *c = conn_of(t);
    if (c->flags & F_LOWER_LOST) {
        memset(out, 0, sizeof *out);
        return TW_ECLOSED;
    }
    return tw_transport_get_peer(c->lower, out);
}

static int tls_get_host(tw_transport *t, tw_address *out)
{
    tls_conn *c = conn_of(t);
    if (c->flags & F_LOWER_LOST) {
        memset(out, 0, sizeof *out);
        return TW_ECLOSED;
    }
    return tw_transport_get_host(c->lower, out);
}

static int tls_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    tls_conn *c = conn_of(t);
    if (c->flags & F_LOWER_LOST)
        return TW_ECLOSED;
    return tw_transport_set_option(c->lower, opt, value);
}

static size_t tls_buffered(const tw_transport *t)
{
    const tls_conn *c = conn_of(t);
    size_t below = (c->flags & F_LOWER_LOST) ? 0 : tw_transport_buffered(c->lower);
    return below + c->pend_bytes;
}

static int tls_fd(const tw_transport *t)
{
    const tls_conn *c = conn_of(t);
    return (c->flags & F_LOWER_LOST) ? -1 : tw_transport_fd(c->lower);
}

static const tw_transport_ops tls_transport_ops = {
    .kind = "tls",
    .write = tls_write,
    .writev = tls_writev,
    .write_ref = tls_write_ref,
    .lose_connection = tls_lose_connection,
    .abort_connection = tls_abort_connection,
    .lose_write_connection = tls_lose_write_connection,
    .pause_producing = tls_pause,
    .resume_producing = tls_resume,
    .stop_producing = tls_stop,
    .register_producer = tls_register_producer,
    .unregister_producer = tls_unregister_producer,
    .get_peer = tls_get_peer,
    .get_host = tls_get_host,
    .set_option = tls_set_option,
    .buffered = tls_buffered,
    .fd = tls_fd,
};

/* ------------------------------------------------------------ factories */

static void tf_start(tw_factory *f)
{
    tw_factory_do_start(((tls_factory *)f)->inner);
}

static void tf_stop(tw_factory *f)
{
    tls_factory *tf = (tls_factory *)f;
    tw_factory_do_stop(tf->inner);
    if (tf->auto_free) {
        tf->auto_free = false;
        factory_unref(tf); /* the last touch of the port or connector */
    }
}

static void tf_started(tw_factory *f, tw_connector *conn)
{
    tw_factory *in = ((tls_factory *)f)->inner;
    if (in->ops && in->ops->started_connecting)
        in->ops->started_connecting(in, conn);
}

static void tf_failed(tw_factory *f, tw_connector *conn, const tw_failure *reason)
{
    tw_factory *in = ((tls_factory *)f)->inner;
    if (in->ops && in->ops->client_connection_failed)
        in->ops->client_connection_failed(in, conn, reason);
}

/* A connection that never finished its handshake failed, as far as the
 * inner factory can tell; one that did was lost. */
static void tf_lost(tw_factory *f, tw_connector *conn, const tw_failure *reason)
{
    tls_factory *tf = (tls_factory *)f;
    tw_factory *in = tf->inner;
    bool made = true;
    tw_failure *why = NULL;
    if (tf->has_last) {
        made = tf->last_made;
        why = tf->last;
        tf->last = NULL;
        tf->has_last = false;
    }
    const tw_failure *r = why ? why : reason;
    if (!made) {
        if (in->ops && in->ops->client_connection_failed)
            in->ops->client_connection_failed(in, conn, r);
    } else if (in->ops && in->ops->client_connection_lost) {
        in->ops->client_connection_lost(in, conn, r);
    }
    tw_failure_unref(why);
}

static const tw_factory_ops tls_factory_ops = {
    .start_factory = tf_start,
    .stop_factory = tf_stop,
    .started_connecting = tf_started,
    .client_connection_failed = tf_failed,
    .client_connection_lost = tf_lost,
};

tw_factory *tw_tls_factory_new(tw_tls_context *ctx, const char *server_name, tw_factory *inner)
{
    if (!ctx || !inner)
        return NULL;
    if (!ctx->server && ctx->verify && !server_name) {
        tw_log(TW_LOG_ERROR, "tls",
               "a verifying TLS client needs the server's name (or an insecure context)");
        return NULL;
    }
    tls_factory *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (server_name && !ctx->server && !(f->server_name = strdup(server_name))) {
        free(f);
        return NULL;
    }
    f->base.ops = &tls_factory_ops;
    f->base.protocol = &owned_ops;
    f->inner = inner;
    f->ctx = tw_tls_context_ref(ctx);
    f->refs = 1;
    return &f->base;
}

void tw_tls_factory_free(tw_factory *base)
{
    if (!base)
        return;
    tls_factory *f = (tls_factory *)base;
    if (f->auto_free && f->base.num_ports > 0)
        return; /* started: its stop frees it */
    f->auto_free = false;
    factory_unref(f);
}

tw_factory *tw__tls_factory_new_auto(tw_tls_context *ctx, const char *server_name,
                                     tw_factory *inner, tw__tls_made_fn made, void *arg,
                                     tw_free_fn arg_free)
{
    tw_factory *base = tw_tls_factory_new(ctx, server_name, inner);
    if (!base)
        return NULL;
    tls_factory *f = (tls_factory *)base;
    f->auto_free = true;
    f->made = made;
    f->made_arg = arg;
    f->made_arg_free = arg_free;
    return base;
}

/* ------------------------------------------------------------- startTLS */

int tw_tls_start(tw_protocol *p, tw_tls_context *ctx, const tw_tls_start_options *o)
{
    static const tw_tls_start_options none = { 0 };
    if (!o)
        o = &none;
    tw_transport *lower = p ? p->transport : NULL;
    if (!lower || !ctx || tw_transport_is_tls(lower))
        return TW_EINVAL;
    if (lower->state != TW_TRANSPORT_OPEN)
        return TW_ECLOSED;
    if (!ctx->server && ctx->verify && !o->server_name) {
        tw_log(TW_LOG_ERROR, "tls", "startTLS: a verifying TLS client needs the server's name");
        return TW_EINVAL;
    }
    tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return TW_ENOMEM;
    c->lower = lower;
    tw_transport_init(&c->base, &tls_transport_ops, lower->reactor);
    c->base.protocol = p;
    c->inner = p;
    c->inner_ops = p->ops;
    c->ctx = tw_tls_context_ref(ctx);
    c->flags = F_MADE;
    c->done = o->handshake_done;
    c->done_arg = o->arg;
    int rc = TW_ENOMEM;
    if (o->server_name && !ctx->server) {
        if (!(c->own_name = strdup(o->server_name)))
            goto fail;
        c->server_name = c->own_name;
    }
    if ((rc = setup_ssl(c)) < 0)
        goto fail;
    if (o->initial_len && (rc = add_input(c, o->initial_data, o->initial_len)) < 0)
        goto fail;
    p->ops = &swapped_ops;
    p->transport = &c->base;
    start_timer(c);
    /* The ClientHello (or the initial bytes) from the loop, outside the
     * caller's stack. */
    if ((c->flags & F_CLIENT) || c->in_len)
        schedule(c);
    return 0;
fail:
    ERR_clear_error();
    release(c);
    free(c);
    return rc;
}

/* ------------------------------------------------------------- queries */

bool tw_transport_is_tls(const tw_transport *t)
{
    return t && t->ops == &tls_transport_ops;
}

static SSL *done_ssl(const tw_transport *t)
{
    if (!tw_transport_is_tls(t))
        return NULL;
    const tls_conn *c = conn_of(t);
    return (c->flags & F_HANDSHAKE_DONE) ? c->ssl : NULL;
}

const char *tw_tls_negotiated_protocol(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    if (!ssl)
        return NULL;
    const unsigned char *d;
    unsigned len;
    SSL_get0_alpn_selected(ssl, &d, &len);
    return len ? tw__tls_alpn_name(conn_of(t)->ctx, d, len) : NULL;
}

const char *tw_tls_server_name(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    return ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

const char *tw_tls_version_name(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    return ssl ? SSL_get_version(ssl) : NULL;
}

const char *tw_tls_cipher_name(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    return ssl ? SSL_get_cipher_name(ssl) : NULL;
}

bool tw_tls_session_reused(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    return ssl && SSL_session_reused(ssl);
}

bool tw_tls_peer_verified(const tw_transport *t)
{
    SSL *ssl = done_ssl(t);
    return ssl && SSL_get0_peer_certificate(ssl) && SSL_get_verify_result(ssl) == X509_V_OK;
}

size_t tw_tls_peer_subject(const tw_transport *t, char *buf, size_t size)
{
    SSL *ssl = done_ssl(t);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (size)
        buf[0] = '\0';
    if (!x)
        return 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return 0;
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    char *text;
    long n = BIO_get_mem_data(b, &text);
    if (size) {
        size_t m = (size_t)n < size - 1 ? (size_t)n : size - 1;
        memcpy(buf, text, m);
        buf[m] = '\0';
    }
    BIO_free(b);
    return (size_t)n;
}

SSL *tw_tls_ssl(const tw_transport *t)
{
    return tw_transport_is_tls(t) ? conn_of(t)->ssl : NULL;
}
