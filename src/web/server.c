/* server.c — the HTTP/1.1 server connection (Twisted's HTTPChannel); the
 * site it belongs to is site.c.
 *
 * One connection serves one request at a time: parse a head → find the
 * resource → read (or collect) the body → render → the response writer
 * (request.c) → next request. Pipelined requests wait in the connection's
 * input buffer and are served strictly in order.
 *
 * Hot path: when a whole request arrives in one read, it is parsed where it
 * lies — in the reactor's shared read buffer — and, if the resource answers
 * at once, nothing is copied at all; only a partial head, a pipelined rest,
 * or a request answered later (whose head is then copied into the request's
 * arena) costs a copy. The request block and its arena are made at the
 * connection's first request and reused, so a keep-alive connection
 * allocates nothing per request.
 *
 * Timeouts: each connection waiting for the client sits in one of four
 * queues (idle, head, body, linger). A queue has one duration, so appending
 * at the tail keeps it sorted by deadline; one timer per site fires at the
 * earliest head deadline. Moving a connection is a few pointer writes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web/web_internal.h"

enum {
    IN_MIN = 4096,
    /* While a request is served, buffered input (pipelined requests) past
     * this pauses reading. */
    IN_PAUSE_BYTES = 64 * 1024,
    /* Unread body left at the finish: dropped up to this, else closed. */
    DISCARD_MAX = 64 * 1024,
    LINGER_DROP_MAX = 1024 * 1024
};

/* ------------------------------------------------------------ timeouts */

static void sweep_fired(void *arg);

static void arm_sweep(tw_site *s, int64_t when)
{
    if (s->reactor_gone)
        return;
    if (tw_timer_active(s->sweep)) {
        if (s->sweep_at <= when)
            return;
        tw_timer_cancel(s->sweep);
    }
    int64_t now = tw_reactor_now_ns(s->reactor);
    double delay = when > now ? (double)(when - now) / 1e9 : 0;
    s->sweep_at = when;
    s->sweep = tw_call_later(s->reactor, delay, sweep_fired, s);
}

static void tq_unlink(tw__hconn *c)
{
    if (c->tq < 0)
        return;
    tw_site *s = c->site;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        s->tq[c->tq].head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        s->tq[c->tq].tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->tq = TQ_NONE;
}

/* Puts c at the tail of queue q with a fresh deadline (or in none). */
static void tq_set(tw__hconn *c, int q)
{
    tq_unlink(c);
    tw_site *s = c->site;
    if (q < 0 || s->tq[q].dur_ns <= 0)
        return;
    /* I/O callbacks may see the loop's time from before its wait (possibly
     * long ago after an idle spell): a deadline needs the time now. One
     * vDSO clock read. */
    tw_reactor_update_time(s->reactor);
    c->deadline_ns = tw_reactor_now_ns(s->reactor) + s->tq[q].dur_ns;
    c->tq = (int8_t)q;
    c->tprev = s->tq[q].tail;
    if (s->tq[q].tail)
        s->tq[q].tail->tnext = c;
    else
        s->tq[q].head = c;
    s->tq[q].tail = c;
    if (c->tprev == NULL)
        arm_sweep(s, c->deadline_ns);
}

static void linger_close(tw__hconn *c);

static void expire(tw__hconn *c, int q)
{
    tw_transport *t = c->base.transport;
    if (!t || t->state == TW_TRANSPORT_CLOSED)
        return;
    switch (q) {
    case TQ_IDLE:
        tw_log(TW_LOG_DEBUG, "web", "keep-alive connection idle too long: closing");
        tw_transport_lose_connection(t);
        break;
    case TQ_HEAD:
        tw_log(TW_LOG_DEBUG, "web", "request head timed out");
        tw__send_simple_error(c, 408, "The request head took too long.");
        linger_close(c);
        break;
    case TQ_BODY: {
        tw_request *req = c->req;
        tw_log(TW_LOG_DEBUG, "web", "request body timed out");
        if (c->state == HS_BODY && req && (req->flags & RF_ACTIVE) && !(req->flags & RF_RENDERED)) {
            /* Still collecting: nobody has answered yet. */
            req->flags |= RF_CLOSE;
            tw__request_fail(req, 408, "The request body took too long.");
            return;
        }
        if (req && (req->flags & RF_ACTIVE) && (req->flags & RF_BODY_READING) &&
            !(req->flags & RF_BODY_END_SENT)) {
            tw_failure *f = tw_failure_new(TW_DOMAIN, TW_ETIMEDOUT, "request body timed out");
            tw__request_body_end(req, f);
            tw_failure_unref(f);
        }
        if (c->base.transport)
            tw_transport_abort_connection(c->base.transport);
        break;
    }
    case TQ_LINGER:
        tw_log(TW_LOG_DEBUG, "web", "closing a lingering connection");
        tw_transport_abort_connection(t);
        break;
    }
}

static void sweep_fired(void *arg)
{
    tw_site *s = arg;
    s->sweep = TW_TIMER_NONE;
    int64_t now = tw_reactor_now_ns(s->reactor);
    int64_t next = INT64_MAX;
    for (int q = 0; q < TQ_COUNT; q++) {
        tw__hconn *c;
        /* Re-read the head each time: expiring may move or close others. */
        while ((c = s->tq[q].head) != NULL && c->deadline_ns <= now) {
            tq_unlink(c);
            expire(c, q);
        }
    }
    for (int q = 0; q < TQ_COUNT; q++)
        if (s->tq[q].head && s->tq[q].head->deadline_ns < next)
            next = s->tq[q].head->deadline_ns;
    if (next != INT64_MAX && !tw_timer_active(s->sweep))
        arm_sweep(s, next);
}

/* ------------------------------------------------------------ input buffer */

static int in_reserve(tw__hconn *c, size_t extra)
{
    if (c->in_off > 0) {
        size_t n = c->in_len - c->in_off;
        memmove(c->in, c->in + c->in_off, n);
        c->in_len = n;
        c->in_off = 0;
    }
    if (c->in_len + extra <= c->in_cap)
        return 0;
    size_t cap = c->in_cap ? c->in_cap * 2 : IN_MIN;
    while (cap < c->in_len + extra)
        cap *= 2;
    char *p = realloc(c->in, cap);
    if (!p)
        return TW_ENOMEM;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

static void in_release(tw__hconn *c)
{
    /* An empty buffer is kept while small, so a client that sends its heads
     * in pieces does not cost a malloc per request. */
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
        if (c->in_cap > 4 * IN_MIN) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
}

static size_t in_pending(const tw__hconn *c)
{
    return c->in_len - c->in_off;
}

/* ------------------------------------------------------------ flow control */

static void apply_pause(tw__hconn *c, unsigned reason, bool on)
{
    tw_transport *t = c->base.transport;
    unsigned before = c->pause;
    if (on)
        c->pause |= (uint8_t)reason;
    else
        c->pause &= (uint8_t)~reason;
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return;
    if (!before && c->pause)
        tw_transport_pause_producing(t);
    else if (before && !c->pause)
        tw_transport_resume_producing(t);
}

static void run(tw__hconn *c, const char *ext, size_t ext_len);
static void settle(tw__hconn *c);

static void continue_task(tw_reactor *r, tw__task *task)
{
    tw__hconn *c = (tw__hconn *)((char *)task - offsetof(tw__hconn, task));
    if (c->state == HS_CLOSED || !c->base.transport ||
        c->base.transport->state != TW_TRANSPORT_OPEN)
        return;
    tw_request *req = c->req;
    if (req && (req->flags & (RF_ACTIVE | RF_BODY_READING | RF_BODY_DONE | RF_BODY_END_SENT)) ==
                   (RF_ACTIVE | RF_BODY_READING | RF_BODY_DONE)) {
        tw__request_body_end(req, NULL); /* a request without a body */
        if (c->state == HS_CLOSED || !c->base.transport ||
            c->base.transport->state != TW_TRANSPORT_OPEN)
            return;
    }
    if (in_pending(c) || c->state == HS_BODY)
        run(c, NULL, 0);
    else
        settle(c);
}

static void post_continue(tw__hconn *c)
{
    tw__task_post(c->site->reactor, &c->task, continue_task);
}

/* The drain producer: registered while the client has more response bytes
 * buffered than the high-water mark and pipelined requests wait. */
static void drain_resume(tw_producer *p)
{
    tw__hconn *c = (tw__hconn *)((char *)p - offsetof(tw__hconn, drain));
    if (!c->drain_registered)
        return;
    c->drain_registered = false;
    if (c->base.transport)
        tw_transport_unregister_producer(c->base.transport);
    apply_pause(c, PAUSE_DRAIN, false);
    post_continue(c);
}

static void drain_stop(tw_producer *p)
{
    tw__hconn *c = (tw__hconn *)((char *)p - offsetof(tw__hconn, drain));
    c->drain_registered = false;
}

static const tw_producer_ops drain_ops = {
    .resume_producing = drain_resume,
    .stop_producing = drain_stop,
};

/* ------------------------------------------------------------ closing */

static void linger_close(tw__hconn *c)
{
    tw_transport *t = c->base.transport;
    c->state = HS_LINGER;
    if (!c->in_loop)
        c->in_off = c->in_len = 0;
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return;
    apply_pause(c, PAUSE_BODY | PAUSE_FULL | PAUSE_DRAIN, false);
    /* Shut our side after the reply, and read (and drop) what the client
     * still sends, so that its unread bytes do not make our close a reset
     * that destroys the reply before the client reads it. */
    if (c->eof || tw_transport_lose_write_connection(t) < 0) {
        tw_transport_lose_connection(t);
        return;
    }
    tq_set(c, TQ_LINGER);
}

int tw__conn_write_raw(tw__hconn *c, const char *data, size_t len)
{
    tw_transport *t = c->base.transport;
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return TW_ECLOSED;
    return tw_transport_write(t, data, len);
}

/* ------------------------------------------------------------ the request loop */

typedef struct src {
    const char *p;
    size_t n;
    bool ext; /* the bytes are the caller's (the read buffer), not c->in */
} src;

static bool conn_open(const tw__hconn *c)
{
    return c->base.transport && c->base.transport->state == TW_TRANSPORT_OPEN;
}

/* The next piece of the active request's body. Returns 1 with *d (possibly
 * empty), 2 when the body is complete, 0 when more bytes are needed, or a
 * negative parser error. */
static int body_next(tw__hconn *c, src *s, tw_http_slice *d)
{
    tw_request *req = c->req;
    d->ptr = NULL;
    d->len = 0;
    if (req->h.body == TW_HTTP_BODY_LENGTH) {
        if (tw_http_length_done(&c->length))
            return 2;
        if (s->n == 0)
            return 0;
        size_t k = tw_http_length_take(&c->length, s->n);
        d->ptr = s->p;
        d->len = k;
        s->p += k;
        s->n -= k;
        return 1;
    }
    if (req->h.body != TW_HTTP_BODY_CHUNKED)
        return 2;
    size_t used = 0;
    int rc = tw_http_chunked_parse(&c->chunked, s->p, s->n, &used, d);
    s->p += used;
    s->n -= used;
    if (rc == TW_HTTP_CHUNKED_DATA)
        return 1;
    if (rc == TW_HTTP_CHUNKED_MORE)
        return 0;
    if (rc == TW_HTTP_CHUNKED_DONE)
        return 2;
    return rc;
}

static int body_error_status(tw__hconn *c, int rc)
{
    int st = tw_http_chunked_status(&c->chunked);
    return st ? st : 400;
}

/* Starts the request whose head was just parsed. Returns 1 to go on with
 * the loop, 0 to stop. */
static int start_request(tw__hconn *c, src *s)
{
    tw_request *req = c->req;
    tw__request_begin(req, c);
    if (!(req->flags & RF_ACTIVE))
        return 1; /* answered already (bad path) */
    if (req->h.body == TW_HTTP_BODY_LENGTH)
        tw_http_length_init(&c->length, req->h.content_length);
    else if (req->h.body == TW_HTTP_BODY_CHUNKED)
        tw_http_chunked_init(&c->chunked, &c->site->o.limits, NULL, 0);
    else
        req->flags |= RF_BODY_DONE;
    c->state = (req->flags & RF_BODY_DONE) ? HS_ACTIVE : HS_BODY;
    tw__resource_route(req); /* finds the resource; answers 404/405 itself */
    if (!(req->flags & RF_ACTIVE))
        return 1;
    if (!(req->flags & RF_BODY_DONE) && !req->resource->ops->stream_body) {
        req->body_mode = BM_COLLECT;
        if (req->h.expect_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            req->flags |= RF_CONTINUE_SENT;
            tw__conn_write_raw(c, cont, sizeof cont - 1);
        }
        return 1; /* the loop collects it, then renders */
    }
    if (!(req->flags & RF_BODY_DONE))
        req->body_mode = BM_STREAM;
    tw__request_render(req);
    return 1;
}

static int step_head(tw__hconn *c, src *s)
{
    if (s->n == 0)
        return 0;
    tw_site *site = c->site;
    if (c->state == HS_IDLE) {
        /* Pipelined requests wait while the client is not reading our
         * responses: the drain producer resumes us. */
        tw_transport *t = c->base.transport;
        if (c->nrequests > 0 && tw_transport_buffered(t) > TW_WRITE_HIGH_WATER) {
            if (!c->drain_registered && tw_transport_register_producer(t, &c->drain, false) == 0) {
                c->drain_registered = true;
                apply_pause(c, PAUSE_DRAIN, true);
            }
            if (c->drain_registered)
                return 0;
        }
        if (!c->req && !(c->req = tw__request_alloc(site))) {
            tw_log(TW_LOG_ERROR, "web", "out of memory for a request: closing");
            tw_transport_abort_connection(c->base.transport);
            return 0;
        }
        memset(&c->req->h, 0, sizeof c->req->h);
        c->req->h.headers = c->req->hdrs;
        c->req->h.headers_cap = c->req->max_headers;
        tw_http_parser_init(&c->parser, &site->o.limits);
        c->state = HS_HEAD;
        tq_set(c, TQ_HEAD); /* from the first byte: not reset by later ones */
    }
    int rc = tw_http_parse_request(&c->parser, s->p, s->n, &c->req->h);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        int status = tw_http_parser_status(&c->parser);
        tw_log(TW_LOG_DEBUG, "web", "bad request (%d): %s", status,
               tw_http_parser_reason(&c->parser));
        tq_set(c, TQ_NONE);
        s->p += s->n;
        s->n = 0;
        tw__send_simple_error(c, status ? status : 400, tw_http_parser_reason(&c->parser));
        linger_close(c);
        return 0;
    }
    tq_set(c, TQ_NONE);
    c->req->head_ptr = s->p;
    c->req->head_len = (size_t)rc;
    s->p += rc;
    s->n -= (size_t)rc;
    return start_request(c, s);
}

static int step_body(tw__hconn *c, src *s)
{
    tw_request *req = c->req;
    if (req->body_mode == BM_STREAM &&
        (!(req->flags & RF_BODY_READING) || (req->flags & RF_BODY_PAUSED)))
        return 0; /* the resource does not want bytes now */
    for (;;) {
        tw_http_slice d;
        int rc = body_next(c, s, &d);
        if (rc < 0) {
            int status = body_error_status(c, rc);
            tw_log(TW_LOG_DEBUG, "web", "bad request body (%d): %s", status,
                   tw_http_chunked_reason(&c->chunked));
            s->p += s->n;
            s->n = 0;
            if (req->body_mode == BM_COLLECT) {
                req->flags |= RF_CLOSE;
                tw__request_fail(req, status, tw_http_chunked_reason(&c->chunked));
                return 0;
            }
            c->close_after = true;
            c->state = HS_ACTIVE;
            tw_failure *f = tw_failure_new(TW_DOMAIN, TW_EPROTO, "malformed request body: %s",
                                           tw_http_chunked_reason(&c->chunked));
            tw__request_body_end(req, f);
            tw_failure_unref(f);
            return 0;
        }
        if (rc == 0)
            return 0;
        if (rc == 2) {
            req->flags |= RF_BODY_DONE;
            c->state = HS_ACTIVE;
            if (req->body_mode == BM_COLLECT) {
                tw__request_render(req);
                return 1;
            }
            tw__request_body_end(req, NULL);
            return 1;
        }
        if (d.len == 0)
            continue;
        if (req->body_mode == BM_COLLECT) {
            if (req->body.len == 0 && !req->body_buf && req->h.body == TW_HTTP_BODY_LENGTH &&
                d.len == req->h.content_length) {
                req->body = d; /* all here: no copy (persisted if answered later) */
                continue;
            }
            size_t need = req->body.len + d.len;
            if (need > req->body_cap) {
                size_t cap = req->h.body == TW_HTTP_BODY_LENGTH
                                 ? (size_t)req->h.content_length
                                 : (req->body_cap ? req->body_cap * 2 : 16384);
                while (cap < need)
                    cap *= 2;
                char *nb = realloc(req->body_buf, cap);
                if (!nb) {
                    req->flags |= RF_CLOSE;
                    tw__request_fail(req, 500, "out of memory");
                    return 0;
                }
                if (!req->body_buf && req->body.len)
                    memcpy(nb, req->body.ptr, req->body.len);
                req->body_buf = nb;
                req->body_cap = cap;
            }
            memcpy(req->body_buf + req->body.len, d.ptr, d.len);
            req->body.ptr = req->body_buf;
            req->body.len = need;
            continue;
        }
        tw__request_body_data(req, d.ptr, d.len);
        /* The consumer may have paused, finished or closed. */
        if (c->state != HS_BODY || !conn_open(c))
            return c->state != HS_BODY && conn_open(c);
        if (req->flags & RF_BODY_PAUSED)
            return 0;
    }
}

static int step_discard(tw__hconn *c, src *s)
{
    for (;;) {
        tw_http_slice d;
        int rc = body_next(c, s, &d);
        if (rc < 0) {
            s->p += s->n;
            s->n = 0;
            linger_close(c);
            return 0;
        }
        if (rc == 0)
            return 0;
        if (rc == 2) {
            c->state = HS_IDLE;
            return 1;
        }
        if (c->req->h.body == TW_HTTP_BODY_CHUNKED && c->chunked.total > DISCARD_MAX) {
            linger_close(c);
            return 0;
        }
    }
}

static void keep(tw__hconn *c, src *s)
{
    if (!s->ext) {
        c->in_off = (size_t)(s->p - c->in);
        in_release(c);
        return;
    }
    if (s->n == 0)
        return;
    if (in_reserve(c, s->n) < 0) {
        tw_log(TW_LOG_ERROR, "web", "out of memory for input: closing");
        tw_transport_abort_connection(c->base.transport);
        return;
    }
    memcpy(c->in + c->in_len, s->p, s->n);
    c->in_len += s->n;
}

/* After a run: timeouts and read pausing for the state we stopped in. */
static void settle(tw__hconn *c)
{
    if (!conn_open(c))
        return;
    tw_request *req = c->req;
    size_t pending = in_pending(c);
    bool full = false;
    switch (c->state) {
    case HS_IDLE:
        if (pending == 0) {
            if (c->eof) {
                tw_transport_lose_connection(c->base.transport);
                return;
            }
            tq_set(c, TQ_IDLE);
        }
        break;
    case HS_HEAD:
        if (c->eof) {
            tw_transport_lose_connection(c->base.transport);
            return;
        }
        break;
    case HS_BODY:
        if (req->body_mode == BM_COLLECT ||
            ((req->flags & RF_BODY_READING) && !(req->flags & RF_BODY_PAUSED)))
            tq_set(c, TQ_BODY); /* silence timeout: renewed by every read */
        else {
            tq_set(c, TQ_NONE);
            full = pending > IN_PAUSE_BYTES;
        }
        break;
    case HS_ACTIVE:
        tq_set(c, TQ_NONE);
        full = pending > IN_PAUSE_BYTES;
        break;
    case HS_DISCARD:
        if (c->eof) {
            tw_transport_lose_connection(c->base.transport);
            return;
        }
        tq_set(c, TQ_BODY);
        break;
    default:
        break;
    }
    apply_pause(c, PAUSE_FULL, full);
    if (req)
        apply_pause(c, PAUSE_BODY, c->state == HS_BODY && (req->flags & RF_BODY_PAUSED));
}

static void run(tw__hconn *c, const char *ext, size_t ext_len)
{
    src s;
    if (ext)
        s = (src){ ext, ext_len, true };
    else
        s = (src){ c->in + c->in_off, in_pending(c), false };
    c->in_loop = true;
    for (;;) {
        int go = 0;
        if (!conn_open(c))
            break;
        switch (c->state) {
        case HS_IDLE:
        case HS_HEAD:
            go = step_head(c, &s);
            break;
        case HS_BODY:
            go = step_body(c, &s);
            break;
        case HS_DISCARD:
            go = step_discard(c, &s);
            break;
        case HS_LINGER:
            s.p += s.n;
            s.n = 0;
            break;
        default:
            break;
        }
        if (!go)
            break;
    }
    c->in_loop = false;
    if (c->state == HS_CLOSED)
        return;
    if (!conn_open(c)) {
        if (!s.ext)
            c->in_off = c->in_len = 0;
        return;
    }
    /* A request still served keeps pointers into its head and body: copy
     * them out of the buffers that are about to change. */
    if (c->req && (c->req->flags & RF_ACTIVE) && !(c->req->flags & RF_PERSISTED)) {
        if (tw__request_persist(c->req) < 0) {
            tw_log(TW_LOG_ERROR, "web", "out of memory keeping a request: closing");
            tw_transport_abort_connection(c->base.transport);
            return;
        }
    }
    keep(c, &s);
    settle(c);
}

/* ------------------------------------------------------------ request.c's calls */

void tw__conn_request_done(tw__hconn *c, tw_request *req)
{
    if (c->state == HS_CLOSED)
        return;
    if (!conn_open(c)) {
        c->state = HS_LINGER;
        return;
    }
    bool body_left = !(req->flags & RF_BODY_DONE);
    bool close = (req->flags & RF_CLOSE) || c->close_after || (req->flags & RF_BODY_STOPPED);
    if (body_left && !close) {
        /* Drop the rest of the body, if it is small, and go on. */
        if (req->h.body == TW_HTTP_BODY_LENGTH && c->length.remaining > DISCARD_MAX)
            close = true;
        if (req->h.expect_continue && !(req->flags & RF_CONTINUE_SENT))
            close = true; /* the client waits: it will not send it */
    }
    if (close) {
        if (body_left || in_pending(c) || c->state == HS_HEAD)
            linger_close(c);
        else {
            c->state = HS_LINGER;
            tw_transport_lose_connection(c->base.transport);
        }
        return;
    }
    c->state = body_left ? HS_DISCARD : HS_IDLE;
    if (body_left)
        req->body_mode = BM_DISCARD;
    if (!c->in_loop) {
        apply_pause(c, PAUSE_BODY, false);
        if (in_pending(c))
            post_continue(c);
        else
            settle(c);
    }
}

void tw__conn_body_flow(tw__hconn *c)
{
    if (c->state == HS_CLOSED || !conn_open(c))
        return;
    tw_request *req = c->req;
    if ((req->flags & RF_BODY_STOPPED) && c->state == HS_BODY) {
        /* The consumer gave up: read no more, close after the response. */
        c->close_after = true;
        c->state = HS_ACTIVE;
        req->flags &= ~RF_BODY_PAUSED;
    }
    bool paused = c->state == HS_BODY && (req->flags & RF_BODY_PAUSED);
    apply_pause(c, PAUSE_BODY, paused);
    if (paused)
        return;
    bool body_end_due = (req->flags & (RF_BODY_READING | RF_BODY_DONE | RF_BODY_END_SENT)) ==
                        (RF_BODY_READING | RF_BODY_DONE);
    if (body_end_due || (c->state == HS_BODY && !c->in_loop))
        post_continue(c);
}

/* ------------------------------------------------------------ protocol hooks */

static void hc_made(tw_protocol *p)
{
    tw__hconn *c = (tw__hconn *)p;
    tw_site *s = (tw_site *)p->factory;
    c->site = s;
    c->tq = TQ_NONE;
    c->drain.ops = &drain_ops;
    if (s->dying || (s->o.max_connections && s->conns >= s->o.max_connections)) {
        int64_t now = tw_reactor_now_ns(s->reactor);
        if (!s->dying && now - s->refused_logged_at > 1000000000LL) {
            s->refused_logged_at = now;
            tw_log(TW_LOG_WARN, "web", "%zu connections: refusing more (max_connections)",
                   s->conns);
        }
        c->state = HS_CLOSED;
        c->site = NULL; /* hc_lost must not touch a site that may be gone */
        tw_transport_abort_connection(p->transport);
        return;
    }
    c->counted = true;
    s->conns++;
    c->next = s->conn_list;
    if (c->next)
        c->next->prev = c;
    s->conn_list = c;
    c->state = HS_IDLE;
    tq_set(c, TQ_IDLE);
}

static void hc_data(tw_protocol *p, const void *data, size_t len)
{
    tw__hconn *c = (tw__hconn *)p;
    if (c->state == HS_CLOSED)
        return;
    if (c->state == HS_LINGER) {
        /* Dropped; a client that keeps sending forever is cut off. */
        c->dropped += len;
        if (c->dropped > LINGER_DROP_MAX)
            tw_transport_abort_connection(p->transport);
        return;
    }
    if (in_pending(c)) {
        if (in_reserve(c, len) < 0) {
            tw_log(TW_LOG_ERROR, "web", "out of memory for input: closing");
            tw_transport_abort_connection(p->transport);
            return;
        }
        memcpy(c->in + c->in_len, data, len);
        c->in_len += len;
        run(c, NULL, 0);
    } else {
        run(c, data, len);
    }
}

static void hc_eof(tw_protocol *p)
{
    tw__hconn *c = (tw__hconn *)p;
    c->eof = true;
    tw_transport *t = p->transport;
    tw_request *req = c->req;
    switch (c->state) {
    case HS_IDLE:
        if (!in_pending(c))
            tw_transport_lose_connection(t);
        break;
    case HS_BODY:
        if (req->body_mode == BM_COLLECT) {
            /* The body can never complete and nobody answered yet. */
            tw_transport_lose_connection(t);
            break;
        }
        c->close_after = true;
        c->state = HS_ACTIVE;
        if ((req->flags & RF_BODY_READING) && !(req->flags & RF_BODY_END_SENT)) {
            tw_failure *f = tw_failure_new(TW_DOMAIN, TW_ECONNECTION_LOST,
                                           "the client closed before the body ended");
            tw__request_body_end(req, f);
            tw_failure_unref(f);
        }
        break;
    case HS_ACTIVE:
        break; /* answer it, then close (settle sees eof when idle) */
    default:
        tw_transport_lose_connection(t);
        break;
    }
}

static void hc_lost(tw_protocol *p, const tw_failure *reason)
{
    tw__hconn *c = (tw__hconn *)p;
    tw_site *s = c->site;
    if (!s)
        return;
    tq_unlink(c);
    tw__task_cancel(s->reactor, &c->task);
    c->state = HS_CLOSED;
    if (c->counted) {
        c->counted = false;
        s->conns--;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conn_list = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    tw_request *req = c->req;
    c->req = NULL;
    if (req) {
        if (req->flags & RF_ACTIVE)
            tw__request_conn_lost(req, reason); /* detached: freed at its finish */
        else
            tw__request_free(req);
    }
    free(c->in);
    c->in = NULL;
    if (s->dying && s->conns == 0 && s->detached == 0)
        tw_site_free(s);
}

const tw_protocol_ops tw__hconn_ops = {
    .size = sizeof(tw__hconn),
    .connection_made = hc_made,
    .data_received = hc_data,
    .eof_received = hc_eof,
    .connection_lost = hc_lost,
};
