/* coro_net.c — streams for coroutines (twirl/coro_net.h).
 *
 * Three objects. The stream (tw_coro_stream) is the coroutine's handle: its
 * receive buffer, the read or write it waits in, the connection's fate. The
 * protocol (stream_proto) is what the transport calls; it lives and dies
 * with the connection, as the library decides, so the two point at each
 * other only while both are alive: connection_lost detaches them, and so
 * does the owner letting the stream go (close, abort) — after which the
 * protocol drops whatever still arrives. The factory (stream_factory) builds
 * the protocols, reference counted by its owner, by each protocol it built
 * and by the ports or connectors using it, so that whoever is last frees it.
 *
 * Waiting. A read that the buffer cannot answer makes a deferred, keeps a
 * reference in read_d and awaits it. Whatever may change the answer (bytes,
 * the end of the stream, the end of the connection) fires it with an empty
 * value, and the read looks at the buffer again: the deferred says "look
 * again", never what was read, so a cancelled or failed wait leaves the
 * buffer exactly as it was. A writer waiting for the transport to drain
 * (write_d) and a close waiting for connection_lost (close_d) work the
 * same way. Cancellers only forget the deferred; cancelling it then fails
 * it, which resumes the coroutine with TW_ECANCELED.
 *
 * Lending. A read returns a pointer into the buffer and only moves `start`
 * past it; the bytes stay put until the next read call. Appending bytes
 * meanwhile never moves them: when the buffer must grow while it lends, the
 * unread rest goes to a new buffer and the old one is kept (`held`) until
 * that next call. Compacting waits for it too. */
#include "twirl/coro_net.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/endpoint.h"
#include "twirl/log.h"

enum {
    BUF_MIN = 4096,
    /* A buffer that grew past this for one big read shrinks back when it
     * holds little. */
    BUF_KEEP = 2 * TW_CORO_READ_HIGH_WATER,
};

typedef struct stream_factory stream_factory;
typedef struct stream_proto stream_proto;

enum read_kind { READ_NONE = 0, READ_UNTIL, READ_EXACTLY, READ_SOME };

struct tw_coro_stream {
    stream_proto *proto;     /* NULL once detached */
    tw_transport *transport; /* idem */
    tw_reactor *reactor;
    /* Received, unread: buf[start..end). */
    char *buf;
    size_t start, end, cap;
    char *held; /* a replaced buffer that still holds lent bytes */
    bool lent;  /* the last read's bytes are still lent */
    /* The read in progress (one at a time). */
    enum read_kind kind;
    const char *delim;
    size_t dlen;
    size_t want;    /* until: max; exactly: n; some: max */
    size_t scanned; /* until: bytes after start searched without a match */
    /* Our references to the deferreds coroutines wait on. */
    tw_deferred *read_d, *write_d, *close_d;
    bool eof;             /* nothing more will arrive */
    bool ended;           /* connection_lost came (reason says how) */
    bool closed;          /* the owner closed or aborted it */
    bool write_paused;    /* the transport paused us: its buffer is over high water */
    bool read_paused;     /* we paused the transport's reading */
    bool lent_to_handler; /* a server's: freed after the handler returns */
    tw_failure *reason;
    /* Servers: the handler, and where to say it started. */
    tw_coro_stream_fn fn;
    void *fn_arg;
    bool *started;
};

struct stream_proto {
    tw_protocol base;
    tw_producer producer; /* registered on the transport: write backpressure */
    tw_coro_stream *s;    /* NULL once detached */
    stream_factory *sf;
};

struct stream_factory {
    tw_factory base;
    unsigned refs;
    tw_reactor *reactor;
    /* Servers: each connection runs fn. NULL for a connect. */
    tw_coro_stream_fn fn;
    void *arg;
    tw_coro_options opts;
    /* Connects: the stream waiting for its connection. */
    tw_coro_stream *pending;
};

/* ------------------------------------------------------------ failures */

static int code_of(const tw_failure *f)
{
    int code = tw_failure_code(f);
    return strcmp(tw_failure_domain(f), TW_DOMAIN) == 0 && code < 0 ? code : TW_EUNHANDLED;
}

/* Hands f to the caller (or drops it) and returns its code. */
static int give(tw_failure **err, tw_failure *f)
{
    int code = code_of(f);
    if (err)
        *err = f;
    else
        tw_failure_unref(f);
    return code;
}

#define fail(err, code, ...) give((err), tw_failure_new(TW_DOMAIN, (code), __VA_ARGS__))

/* The delimiter as a C literal, for messages: "\r\n" reads \r\n. */
static const char *show(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\t' || c == '\\' || c == '"')
            o += (size_t)snprintf(out + o, size - o, "\\%c",
                                  c == '\r'   ? 'r'
                                  : c == '\n' ? 'n'
                                  : c == '\t' ? 't'
                                              : c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o < size ? o : size - 1] = 0;
    return out;
}

static size_t buffered(const tw_coro_stream *s)
{
    return s->end - s->start;
}

/* The stream ended (EOF, or the connection ended) before `what` could be
 * answered. */
static int end_failure(tw_coro_stream *s, tw_failure **err, const char *what)
{
    tw_failure *cause = s->reason ? tw_failure_ref(s->reason) : NULL;
    bool lost = s->reason && tw_failure_is(s->reason, TW_DOMAIN, TW_ECONNECTION_LOST);
    return give(err, tw_failure_new_at(__FILE__, __LINE__, __func__, TW_DOMAIN,
                                       lost ? TW_ECONNECTION_LOST : TW_ECONNECTION_DONE, cause,
                                       "%s: the connection %s first; %zu byte(s) stay buffered",
                                       what, lost ? "was lost" : "was closed", buffered(s)));
}

/* ------------------------------------------------------------ the stream */

static tw_coro_stream *stream_new(tw_reactor *r)
{
    tw_coro_stream *s = calloc(1, sizeof *s);
    if (s)
        s->reactor = r;
    return s;
}

static void stream_free(tw_coro_stream *s)
{
    /* A coroutine waiting on a stream its owner frees would resume into
     * freed memory: one coroutine closes, after the others are done. */
    assert(!s->read_d && !s->write_d && !s->close_d);
    free(s->buf);
    free(s->held);
    tw_failure_unref(s->reason);
    free(s);
}

static void attach(tw_coro_stream *s, stream_proto *sp)
{
    s->proto = sp;
    s->transport = sp->base.transport;
    sp->s = s;
}

static void detach(tw_coro_stream *s)
{
    if (s->proto)
        s->proto->s = NULL;
    s->proto = NULL;
    s->transport = NULL;
}

/* Fires d (our reference, taken out of its slot already) with an empty
 * value: its coroutine resumes now, inside this call. */
static void wake(tw_deferred *d)
{
    if (d) {
        tw_deferred_callback(d, TW_VALUE_NONE);
        tw_deferred_unref(d);
    }
}

/* Reading from the transport: paused while enough is buffered that no read
 * waits for. */
static void flow(tw_coro_stream *s)
{
    tw_transport *t = s->transport;
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return;
    bool over = buffered(s) >= TW_CORO_READ_HIGH_WATER && !s->read_d;
    if (over && !s->read_paused) {
        s->read_paused = true;
        tw_transport_pause_producing(t);
    } else if (!over && s->read_paused) {
        s->read_paused = false;
        tw_transport_resume_producing(t);
    }
}

/* The previous read's bytes are given back: the buffer may move again. */
static void unlend(tw_coro_stream *s)
{
    free(s->held);
    s->held = NULL;
    s->lent = false;
    size_t n = buffered(s);
    if (n == 0) {
        s->start = s->end = 0;
    } else if (s->start > 0 && (s->start >= s->cap / 2 || n <= 256)) {
        memmove(s->buf, s->buf + s->start, n);
        s->start = 0;
        s->end = n;
    }
    if (s->cap > BUF_KEEP && n <= TW_CORO_READ_HIGH_WATER / 4) {
        size_t cap = TW_CORO_READ_HIGH_WATER;
        char *b = s->start == 0 ? realloc(s->buf, cap) : NULL;
        if (b) {
            s->buf = b;
            s->cap = cap;
        }
    }
}

static int append(tw_coro_stream *s, const void *data, size_t len)
{
    if (s->end + len <= s->cap) {
        memcpy(s->buf + s->end, data, len);
        s->end += len;
        return 0;
    }
    size_t n = buffered(s);
    bool pinned = s->lent && !s->held; /* lent bytes are in buf */
    if (!pinned && n + len <= s->cap) {
        memmove(s->buf, s->buf + s->start, n);
    } else {
        size_t cap = s->cap < BUF_MIN ? BUF_MIN : s->cap;
        while (cap < n + len)
            cap *= 2;
        if (pinned) {
            char *b = malloc(cap);
            if (!b)
                return TW_ENOMEM;
            memcpy(b, s->buf + s->start, n);
            s->held = s->buf;
            s->buf = b;
        } else {
            if (s->start > 0) {
                memmove(s->buf, s->buf + s->start, n);
                s->start = 0;
                s->end = n;
            }
            char *b = realloc(s->buf, cap);
            if (!b)
                return TW_ENOMEM;
            s->buf = b;
        }
        s->cap = cap;
    }
    s->start = 0;
    s->end = n;
    memcpy(s->buf + s->end, data, len);
    s->end += len;
    return 0;
}

/* Can the read in progress be answered? Returns the bytes to hand out (> 0),
 * 0 to wait, or why it never will: TW_ELIMIT, TW_ECLOSED, or
 * TW_ECONNECTION_DONE for the end of the stream (end_failure tells a clean
 * end from a lost connection). */
static long answer(tw_coro_stream *s)
{
    if (s->closed)
        return TW_ECLOSED;
    size_t n = buffered(s);
    switch (s->kind) {
    case READ_UNTIL: {
        size_t lim = n < s->want ? n : s->want;
        size_t from = s->scanned >= s->dlen - 1 ? s->scanned - (s->dlen - 1) : 0;
        if (lim >= s->dlen && lim > from) {
            const char *hit = memmem(s->buf + s->start + from, lim - from, s->delim, s->dlen);
            if (hit)
                return (long)((size_t)(hit - (s->buf + s->start)) + s->dlen);
        }
        s->scanned = lim;
        if (lim == s->want)
            return TW_ELIMIT;
        break;
    }
    case READ_EXACTLY:
        if (n >= s->want)
            return (long)s->want;
        break;
    case READ_SOME:
        if (n > 0)
            return (long)(n < s->want ? n : s->want);
        break;
    case READ_NONE:
        return 0;
    }
    return s->eof ? TW_ECONNECTION_DONE : 0;
}

/* After bytes or an end arrived: wakes the waiting read if it can now be
 * answered (or failed). */
static void wake_reader(tw_coro_stream *s)
{
    if (s->read_d && answer(s) != 0) {
        tw_deferred *d = s->read_d;
        s->read_d = NULL;
        wake(d);
    }
}

static void read_cancel(tw_deferred *d, void *arg)
{
    tw_coro_stream *s = arg;
    if (s->read_d == d) {
        s->read_d = NULL;
        tw_deferred_unref(d);
    }
}

static void write_cancel(tw_deferred *d, void *arg)
{
    tw_coro_stream *s = arg;
    if (s->write_d == d) {
        s->write_d = NULL;
        tw_deferred_unref(d);
    }
}

static void close_cancel(tw_deferred *d, void *arg)
{
    tw_coro_stream *s = arg;
    if (s->close_d == d) {
        s->close_d = NULL;
        tw_deferred_unref(d);
    }
}

/* Waits on a fresh deferred kept in *slot (one of s's). Returns 0 when it
 * was fired ("look again"), or the failure's code (cancelled, outside a
 * coroutine, out of memory) with the failure in *fp. */
static int wait_on(tw_coro_stream *s, tw_deferred **slot, tw_canceller_fn cancel, tw_failure **fp)
{
    *fp = NULL;
    tw_deferred *d = tw_deferred_new(cancel, s);
    if (!d) {
        *fp = tw_failure_from_code(TW_ENOMEM);
        return TW_ENOMEM;
    }
    *slot = tw_deferred_ref(d);
    flow(s); /* a waiting read needs the transport reading */
    int rc = tw_await_value(d, NULL, fp);
    if (*slot == d) { /* not fired and not cancelled: tw_await refused to wait */
        *slot = NULL;
        tw_deferred_unref(d);
    }
    if (rc < 0 && !*fp)
        *fp = tw_failure_from_code(rc);
    return rc;
}

static int do_read(tw_coro_stream *s, enum read_kind kind, const char *delim, size_t want,
                   tw_coro_bytes *out, tw_failure **err, const char *what)
{
    if (out)
        *out = (tw_coro_bytes){ NULL, 0 };
    if (err)
        *err = NULL;
    if (!s || !out)
        return fail(err, TW_EINVAL, "%s: %s is NULL", what, s ? "out" : "the stream");
    if (s->kind != READ_NONE)
        return fail(err, TW_EBUSY, "%s: another coroutine is reading this stream", what);
    unlend(s);
    s->kind = kind;
    s->delim = delim;
    s->dlen = delim ? strlen(delim) : 0;
    s->want = want;
    s->scanned = 0;
    long got;
    int rc = 0;
    tw_failure *f = NULL;
    while ((got = answer(s)) == 0) {
        if ((rc = wait_on(s, &s->read_d, read_cancel, &f)) < 0)
            break;
    }
    s->kind = READ_NONE;
    if (got > 0) {
        out->data = s->buf + s->start;
        out->len = (size_t)got;
        s->start += (size_t)got;
        s->lent = true;
        flow(s);
        return 0;
    }
    flow(s);
    if (rc < 0)
        return give(
            err, tw_failure_wrap(f, TW_DOMAIN, rc, "%s: %s while waiting", what, tw_strerror(rc)));
    if (got == TW_ECLOSED)
        return fail(err, TW_ECLOSED, "%s: the stream was closed", what);
    if (got == TW_ELIMIT) {
        char d[40];
        return fail(err, TW_ELIMIT, "%s: no \"%s\" within %zu bytes", what,
                    show(s->delim, s->dlen, d, sizeof d), s->want);
    }
    return end_failure(s, err, what);
}

int tw_coro_read_until(tw_coro_stream *s, const char *delim, size_t max, tw_coro_bytes *out,
                       tw_failure **err)
{
    if (max == 0)
        max = TW_CORO_READ_MAX;
    if (!delim || !*delim || strlen(delim) > max) {
        if (out)
            *out = (tw_coro_bytes){ NULL, 0 };
        return fail(err, TW_EINVAL, "read_until: the delimiter is %s",
                    !delim || !*delim ? "empty" : "longer than max");
    }
    return do_read(s, READ_UNTIL, delim, max, out, err, "read_until");
}

int tw_coro_read_exactly(tw_coro_stream *s, size_t n, tw_coro_bytes *out, tw_failure **err)
{
    if (n == 0) {
        if (out)
            *out = (tw_coro_bytes){ NULL, 0 };
        return fail(err, TW_EINVAL, "read_exactly: 0 bytes asked for");
    }
    return do_read(s, READ_EXACTLY, NULL, n, out, err, "read_exactly");
}

int tw_coro_read_some(tw_coro_stream *s, size_t max, tw_coro_bytes *out, tw_failure **err)
{
    return do_read(s, READ_SOME, NULL, max ? max : TW_CORO_READ_MAX, out, err, "read_some");
}

size_t tw_coro_stream_buffered(const tw_coro_stream *s)
{
    return s ? buffered(s) : 0;
}

tw_transport *tw_coro_stream_transport(tw_coro_stream *s)
{
    return s ? s->transport : NULL;
}

/* ------------------------------------------------------------ writing */

int tw_coro_write(tw_coro_stream *s, const void *data, size_t len, tw_failure **err)
{
    if (err)
        *err = NULL;
    if (!s || (!data && len))
        return fail(err, TW_EINVAL, "write: %s is NULL", s ? "data" : "the stream");
    if (s->closed)
        return fail(err, TW_ECLOSED, "write: the stream was closed");
    if (s->ended || !s->transport)
        return end_failure(s, err, "write");
    if (s->write_d)
        return fail(err, TW_EBUSY, "write: another coroutine is waiting to write on this stream");
    int rc = tw_transport_write(s->transport, data, len);
    if (rc < 0)
        return fail(err, rc, "write: %s", tw_strerror(rc));
    tw_failure *f;
    while (s->write_paused && !s->ended && !s->closed) {
        if ((rc = wait_on(s, &s->write_d, write_cancel, &f)) < 0)
            return give(err, tw_failure_wrap(f, TW_DOMAIN, rc,
                                             "write: %s while waiting for the peer to read",
                                             tw_strerror(rc)));
    }
    if (s->ended && s->write_paused)
        return end_failure(s, err, "write"); /* queued bytes went with it */
    return 0;
}

int tw_coro_write_str(tw_coro_stream *s, const char *str, tw_failure **err)
{
    return tw_coro_write(s, str, str ? strlen(str) : 0, err);
}

/* ------------------------------------------------------------ closing */

/* The owner lets go: the connection closes (flushing, or now) unless it is
 * already closing, and s is freed unless a server lent it. */
static void let_go(tw_coro_stream *s, bool now)
{
    tw_transport *t = s->transport;
    detach(s);
    if (t && (now ? t->state != TW_TRANSPORT_CLOSED : t->state == TW_TRANSPORT_OPEN)) {
        if (now)
            tw_transport_abort_connection(t);
        else
            tw_transport_lose_connection(t);
    }
    if (!s->lent_to_handler)
        stream_free(s);
}

int tw_coro_close(tw_coro_stream *s, tw_failure **err)
{
    if (err)
        *err = NULL;
    if (!s)
        return 0;
    s->closed = true;
    int rc = 0;
    tw_failure *f = NULL;
    if (s->transport && !s->ended) {
        if (s->transport->state == TW_TRANSPORT_OPEN)
            tw_transport_lose_connection(s->transport);
        if (tw_coro_inside()) {
            while (!s->ended && (rc = wait_on(s, &s->close_d, close_cancel, &f)) == 0) {
            }
        }
    }
    if (rc < 0)
        rc = give(err,
                  tw_failure_wrap(f, TW_DOMAIN, rc, "close: %s while waiting", tw_strerror(rc)));
    else if (s->ended && s->reason && tw_failure_is(s->reason, TW_DOMAIN, TW_ECONNECTION_LOST))
        rc = give(err, tw_failure_wrap(tw_failure_ref(s->reason), TW_DOMAIN, TW_ECONNECTION_LOST,
                                       "close: the connection was lost"));
    let_go(s, false);
    return rc;
}

void tw_coro_abort(tw_coro_stream *s)
{
    if (!s)
        return;
    s->closed = true;
    let_go(s, true);
}

/* ------------------------------------------------------------ the protocol */

static void sf_unref(stream_factory *sf)
{
    if (--sf->refs == 0)
        free(sf);
}

static tw_result serve_body(void *arg)
{
    tw_coro_stream *s = arg;
    *s->started = true;
    s->started = NULL;
    tw_result res = s->fn(s, s->fn_arg);
    s->lent_to_handler = false;
    let_go(s, false);
    return res;
}

static void stream_made(tw_protocol *p)
{
    stream_proto *sp = (stream_proto *)p;
    stream_factory *sf = sp->sf;
    tw_coro_stream *s;
    if (sf->fn) {
        if (!(s = stream_new(sf->reactor))) {
            tw_log(TW_LOG_ERROR, "coro", "out of memory for a connection's stream: dropping it");
            tw_transport_abort_connection(p->transport);
            return;
        }
        s->lent_to_handler = true;
        s->fn = sf->fn;
        s->fn_arg = sf->arg;
    } else if (!(s = sf->pending)) {
        tw_transport_abort_connection(p->transport); /* its connect gave up */
        return;
    }
    sf->pending = NULL;
    attach(s, sp);
    /* The stream is the transport's producer: that is how a write learns
     * that the peer reads slower than it is written to. */
    if (tw_transport_register_producer(p->transport, &sp->producer, true) < 0)
        tw_log(TW_LOG_WARN, "coro",
               "a producer is already registered on this %s transport: writes will not wait "
               "for it to drain",
               p->transport->ops->kind);
    if (!sf->fn)
        return; /* tw_coro_connect's coroutine resumes next, with s */
    /* Runs the handler now, up to its first wait: it may even finish and
     * let s go before tw_coro_spawn returns. */
    bool started = false;
    s->started = &started;
    tw_deferred *d = tw_coro_spawn(sf->reactor, serve_body, s, &sf->opts);
    if (!started) {
        /* The failure itself is reported when d goes (unhandled). */
        tw_log(TW_LOG_ERROR, "coro", "cannot start a coroutine for a connection: dropping it");
        s->lent_to_handler = false;
        let_go(s, true);
    }
    tw_deferred_unref(d);
}

static void stream_data(tw_protocol *p, const void *data, size_t len)
{
    tw_coro_stream *s = ((stream_proto *)p)->s;
    if (!s || s->eof || s->closed)
        return; /* let go or closed by its owner: the connection is closing */
    if (append(s, data, len) < 0) {
        tw_log(TW_LOG_ERROR, "coro", "out of memory buffering %zu received bytes: aborting", len);
        s->eof = true;
        wake_reader(s);
        if ((s = ((stream_proto *)p)->s) && s->transport)
            tw_transport_abort_connection(s->transport);
        return;
    }
    wake_reader(s);
    if ((s = ((stream_proto *)p)->s)) /* the coroutine may have let it go */
        flow(s);
}

static void stream_eof(tw_protocol *p)
{
    tw_coro_stream *s = ((stream_proto *)p)->s;
    if (!s)
        return;
    /* Half-closed: the coroutine reads what is left, may still write, and
     * closes when it is done. */
    s->eof = true;
    wake_reader(s);
}

static void stream_lost(tw_protocol *p, const tw_failure *reason)
{
    tw_coro_stream *s = ((stream_proto *)p)->s;
    if (!s)
        return;
    detach(s);
    s->eof = true;
    s->ended = true;
    s->reason = tw_failure_ref((tw_failure *)reason);
    /* Take every waiter out first: the first to resume may close s. */
    tw_deferred *r = s->read_d, *w = s->write_d, *c = s->close_d;
    s->read_d = s->write_d = s->close_d = NULL;
    wake(r);
    wake(w);
    wake(c);
}

static void stream_destroy(tw_protocol *p)
{
    stream_proto *sp = (stream_proto *)p;
    if (sp->s)
        detach(sp->s); /* built but never connected: nothing else knows it */
    sf_unref(sp->sf);
}

static const tw_protocol_ops stream_ops = {
    .size = sizeof(stream_proto),
    .connection_made = stream_made,
    .data_received = stream_data,
    .eof_received = stream_eof,
    .connection_lost = stream_lost,
    .destroy = stream_destroy,
};

/* The stream's write side as a producer (registered in stream_made). */
static tw_coro_stream *producer_stream(tw_producer *prod)
{
    return ((stream_proto *)((char *)prod - offsetof(stream_proto, producer)))->s;
}

static void producer_pause(tw_producer *prod)
{
    tw_coro_stream *s = producer_stream(prod);
    if (s)
        s->write_paused = true;
}

static void producer_resume(tw_producer *prod)
{
    tw_coro_stream *s = producer_stream(prod);
    if (!s)
        return;
    s->write_paused = false;
    tw_deferred *d = s->write_d;
    s->write_d = NULL;
    wake(d); /* the writer may write again from here: transports allow it */
}

static void producer_stop(tw_producer *prod)
{
    /* connection_lost follows and tells the stream. */
}

static const tw_producer_ops stream_producer_ops = {
    .pause_producing = producer_pause,
    .resume_producing = producer_resume,
    .stop_producing = producer_stop,
};

/* ------------------------------------------------------------ the factory */

static tw_protocol *sf_build(tw_factory *f, const tw_address *addr)
{
    stream_factory *sf = (stream_factory *)f;
    stream_proto *sp = (stream_proto *)tw_protocol_alloc(&stream_ops);
    if (!sp)
        return NULL;
    sp->base.factory = f;
    sp->producer.ops = &stream_producer_ops;
    sp->sf = sf;
    sf->refs++;
    return &sp->base;
}

/* A port or connector uses the factory from start to stop. */
static void sf_start(tw_factory *f)
{
    ((stream_factory *)f)->refs++;
}

static void sf_stop(tw_factory *f)
{
    sf_unref((stream_factory *)f);
}

static const tw_factory_ops sf_ops = {
    .build_protocol = sf_build,
    .start_factory = sf_start,
    .stop_factory = sf_stop,
};

static stream_factory *sf_new(tw_reactor *r)
{
    stream_factory *sf = calloc(1, sizeof *sf);
    if (!sf)
        return NULL;
    sf->base.ops = &sf_ops;
    sf->base.protocol = &stream_ops;
    sf->refs = 1; /* the creator's */
    sf->reactor = r;
    return sf;
}

tw_factory *tw_coro_factory_new(tw_reactor *r, tw_coro_stream_fn fn, void *arg,
                                const tw_coro_options *opts)
{
    if (!r || !fn)
        return NULL;
    stream_factory *sf = sf_new(r);
    if (!sf)
        return NULL;
    sf->fn = fn;
    sf->arg = arg;
    if (opts)
        sf->opts = *opts;
    return &sf->base;
}

void tw_coro_factory_free(tw_factory *f)
{
    if (f)
        sf_unref((stream_factory *)f);
}

int tw_coro_serve(tw_reactor *r, const char *description, tw_coro_stream_fn fn, void *arg,
                  tw_port **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (err && errlen)
        *err = 0;
    if (!r || !description || !fn || !out) {
        if (err && errlen)
            snprintf(err, errlen, "tw_coro_serve: %s is NULL",
                     !r             ? "the reactor"
                     : !description ? "the description"
                     : !fn          ? "fn"
                                    : "out");
        return TW_EINVAL;
    }
    tw_server_endpoint *ep;
    int rc = tw_server_endpoint_from_string(r, description, &ep, err, errlen);
    if (rc < 0)
        return rc;
    tw_factory *f = tw_coro_factory_new(r, fn, arg, NULL);
    if (!f) {
        tw_server_endpoint_free(ep);
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", description, tw_strerror(TW_ENOMEM));
        return TW_ENOMEM;
    }
    rc = tw_endpoint_listen_err(ep, f, out, err, errlen);
    tw_server_endpoint_free(ep);
    tw_coro_factory_free(f); /* the port keeps it from start to stop */
    return rc;
}

/* ------------------------------------------------------------ connecting */

int tw_coro_connect(tw_reactor *r, const char *description, tw_coro_stream **out, tw_failure **err)
{
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (!r)
        r = tw_coro_reactor();
    if (!r || !description || !out || !tw_coro_inside())
        return fail(err, TW_EINVAL, "connect: %s",
                    !tw_coro_inside() ? "called outside a coroutine"
                    : !r              ? "no reactor"
                    : !description    ? "the description is NULL"
                                      : "out is NULL");
    char msg[TW_ENDPOINT_ERR_MAX];
    tw_client_endpoint *ep;
    int rc = tw_client_endpoint_from_string(r, description, &ep, msg, sizeof msg);
    if (rc < 0)
        return fail(err, rc, "%s", rc == TW_ESYNTAX ? msg : tw_strerror(rc));
    stream_factory *sf = sf_new(r);
    tw_coro_stream *s = sf ? stream_new(r) : NULL;
    if (!s) {
        free(sf);
        tw_client_endpoint_free(ep);
        return fail(err, TW_ENOMEM, "connect: %s", tw_strerror(TW_ENOMEM));
    }
    sf->pending = s;
    tw_deferred *d = tw_endpoint_connect(ep, &sf->base);
    tw_client_endpoint_free(ep); /* attempts under way keep what they need */
    tw_failure *f = NULL;
    rc = tw_await_value(d, NULL, &f);
    /* Connected: stream_made took s. Otherwise the attempts are over (or
     * stopped by the cancel), and a late connection finds nobody. */
    sf->pending = NULL;
    sf_unref(sf);
    if (rc < 0) {
        assert(!s->proto);
        stream_free(s);
        return give(err, f);
    }
    *out = s;
    return 0;
}
