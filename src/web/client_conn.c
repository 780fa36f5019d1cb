/* client_conn.c — one HTTP/1.1 client connection (Twisted's
 * HTTP11ClientProtocol), its reading side and its life: parses the
 * response head, streams the body to the response's consumer with
 * backpressure, and hands the connection back to the pool or closes it.
 * Writing the request is client_send.c.
 *
 * Input is consumed straight from the transport's read buffer; only what
 * cannot be used yet is copied into the connection's own buffer: a partial
 * head or chunk-size line, or body bytes that arrived while the consumer
 * was not taking them (the transport is then paused, so that buffer holds
 * at most about one read). The transport owns a small shim protocol; the
 * state lives apart (tw__cconn) so that a body held in the buffer can still
 * be delivered after the server closed.
 *
 * Reentrancy: firing the request's deferred and every consumer call run
 * user code, which may stop the body, drop the response, cancel other
 * requests or free the agent. After each, the loop re-reads the state and
 * stops when the connection began closing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "twirl/log.h"
#include "web/client_internal.h"

enum {
    DISCARD_BUDGET = 64 * 1024, /* body bytes read and dropped to keep a connection */
    BUF_KEEP = 64 * 1024,       /* an emptied input buffer larger than this is freed */
    MAX_FIELDS = 1024
};

typedef struct shim {
    tw_protocol base;
    tw__cconn *c;
} shim;

static size_t consume(tw__cconn *c, const char *data, size_t len);
static void maybe_free(tw__cconn *c);
static void conn_task(tw_reactor *r, tw__task *t);

static const tw__body_source_ops conn_source;

tw__cconn *tw__cconn_of(tw_protocol *p)
{
    return p ? ((shim *)p)->c : NULL;
}

static tw_reactor *reactor_of(const tw__cconn *c)
{
    return c->pool->reactor;
}

static void origin(const tw__cconn *c, char *buf, size_t size)
{
    if (c->host)
        tw__chost_origin(c->host, buf, size);
    else
        snprintf(buf, size, "the server");
}

/* ------------------------------------------------------------ closing */

void tw__cconn_close(tw__cconn *c, bool abort)
{
    c->state = CC_CLOSED;
    tw__cpool_detach(c);
    tw_timer_cancel(c->idle_timer);
    c->idle_timer = TW_TIMER_NONE;
    tw__cconn_drop_sender(c);
    if (c->closing || c->gone)
        return;
    c->closing = true;
    if (abort)
        tw_transport_abort_connection(c->transport);
    else
        tw_transport_lose_connection(c->transport);
}

/* The request whose body is being written is done with this connection. */
void tw__cconn_drop_sender(tw__cconn *c)
{
    tw__creq *req = c->sender;
    if (!req)
        return;
    c->sender = NULL;
    if (c->wregistered) {
        c->wregistered = false;
        if (c->transport && !c->gone)
            tw_transport_unregister_producer(c->transport);
    }
    tw__creq_stop_body(req);
    if (req->conn == c && c->req != req)
        req->conn = NULL;
    tw__creq_unref(req);
}

/* Takes the waiting request off the connection (its head never came); a
 * body still being written goes on until the connection closes. */
tw__creq *tw__cconn_take_req(tw__cconn *c)
{
    tw__creq *req = c->req;
    c->req = NULL;
    if (req) {
        tw_timer_cancel(req->response_timer);
        req->response_timer = TW_TIMER_NONE;
        if (c->sender != req)
            req->conn = NULL;
    }
    return req;
}

static void fail_req(tw__creq *req, tw_failure *f)
{
    tw__creq_fire(req, tw_err(f));
    tw__creq_unref(req);
}

/* The exchange cannot go on: the connection is aborted, and f (taken) goes
 * to whoever waits — the request for its head, or the body's consumer. */
void tw__cconn_fail_exchange(tw__cconn *c, tw_failure *f)
{
    tw__creq *waiting = tw__cconn_take_req(c);
    tw_response *resp = c->resp;
    c->resp = NULL;
    tw__cconn_close(c, true);
    if (waiting)
        fail_req(waiting, f);
    else if (resp)
        tw__response_end(resp, f);
    else
        tw_failure_unref(f);
}

void tw__cconn_close_for_shutdown(tw__cconn *c)
{
    if (c->req || c->resp)
        tw__cconn_fail_exchange(c, tw_failure_new(TW_DOMAIN, TW_ECANCELED, "the agent was freed"));
    else
        tw__cconn_close(c, true);
}

void tw__cconn_abort_request(tw__cconn *c)
{
    tw__creq *req = tw__cconn_take_req(c);
    tw__cconn_close(c, true);
    if (req) {
        req->conn = NULL;
        tw__creq_unref(req);
    }
}

/* ------------------------------------------------------------ idle */

static void idle_expired(void *arg)
{
    tw__cconn *c = arg;
    c->idle_timer = TW_TIMER_NONE;
    tw__cconn_close(c, false);
}

void tw__cconn_idle(tw__cconn *c)
{
    c->state = CC_IDLE;
    double t = c->pool->opts.idle_timeout;
    if (t > 0 && !tw_timer_active(c->idle_timer))
        c->idle_timer = tw_call_later(reactor_of(c), t, idle_expired, c);
    tw__cconn_update_reading(c);
}

/* ------------------------------------------------------------ reading */

/* Whether input must wait in the buffer (transport paused). */
static bool holding(const tw__cconn *c)
{
    if (c->state != CC_BODY || c->discarding)
        return false;
    return !c->resp || c->consumer_paused || !tw__response_delivering(c->resp);
}

void tw__cconn_update_reading(tw__cconn *c)
{
    if (c->gone || c->closing || !c->transport)
        return;
    bool pause = holding(c) && c->len > 0;
    if (c->state == CC_BODY && c->consumer_paused)
        pause = true;
    if (pause && !c->read_paused) {
        c->read_paused = true;
        tw_transport_pause_producing(c->transport);
    } else if (!pause && c->read_paused) {
        c->read_paused = false;
        tw_transport_resume_producing(c->transport);
    }
}

static bool keep(tw__cconn *c, const char *data, size_t len)
{
    if (len > c->cap - c->len) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap - c->len < len)
            cap *= 2;
        char *grown = realloc(c->buf, cap);
        if (!grown)
            return false;
        c->buf = grown;
        c->cap = cap;
    }
    memmove(c->buf + c->len, data, len);
    c->len += len;
    return true;
}

static void drop_front(tw__cconn *c, size_t used)
{
    if (used >= c->len) {
        c->len = 0;
        if (c->cap > BUF_KEEP) {
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
        return;
    }
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

/* The response's body ended with failure f (taken). */
static void body_failed_with(tw__cconn *c, tw_failure *f, bool abort)
{
    tw_response *resp = c->resp;
    c->resp = NULL;
    tw__cconn_close(c, abort);
    tw__cconn_drop_sender(c);
    if (resp)
        tw__response_end(resp, f);
    else
        tw_failure_unref(f);
}

/* The response (head and body) is complete. rest: bytes follow it in the
 * same read, which no request asked for. */
static void exchange_over(tw__cconn *c, bool rest)
{
    bool reusable = c->keep_alive && !rest && !c->sender;
    if (c->sender)
        tw__cconn_drop_sender(c); /* the server answered before the body was sent */
    if (rest)
        tw_log(TW_LOG_DEBUG, "http.client", "closing a connection: bytes after the response");
    if (reusable && !c->closing && !c->gone && !c->pool->closed && c->host)
        tw__cpool_release(c);
    else
        tw__cconn_close(c, rest);
}

static void body_complete(tw__cconn *c, bool rest)
{
    tw_response *resp = c->resp;
    c->resp = NULL;
    c->discarding = false;
    exchange_over(c, rest);
    if (resp)
        tw__response_end(resp, NULL);
}

static void head_error(tw__cconn *c, int rc)
{
    char o[300];
    origin(c, o, sizeof o);
    const char *why = tw_http_parser_reason(&c->parser);
    tw__creq *req = c->req;
    if (!req) {
        tw__cconn_close(c, true);
        return;
    }
    tw__cconn_fail_exchange(
        c, tw_failure_new(TW_DOMAIN, rc, "%s from %s to %s %s: %s",
                          rc == TW_ELIMIT ? "response over a limit" : "malformed response", o,
                          req->method, req->url, why ? why : tw_strerror(rc)));
}

/* The head is complete in c->head: make the response and fire the
 * request's deferred. rest: bytes follow the head in this read. */
static void head_done(tw__cconn *c, bool rest)
{
    tw__creq *req = tw__cconn_take_req(c);
    tw__cpool *pool = c->pool;
    const tw_http_response *h = &c->head;
    if (!req) {
        tw__cconn_close(c, true);
        return;
    }
    if (h->tunnel || h->te_other ||
        (h->body == TW_HTTP_BODY_LENGTH && h->content_length > pool->opts.limits.max_body_bytes)) {
        bool limit = !h->tunnel && !h->te_other;
        tw__cconn_close(c, true);
        fail_req(req, tw_failure_new(TW_DOMAIN, limit ? TW_ELIMIT : TW_EPROTO,
                                     "unusable response %d to %s %s: %s", h->status, req->method,
                                     req->url,
                                     h->tunnel ? "the connection switched protocols"
                                     : limit   ? "the body is longer than the limit"
                                               : "a transfer coding other than chunked"));
        return;
    }
    tw_response *resp = tw__response_make(reactor_of(c), h->status, h->version_minor, h->reason,
                                          h->headers, h->num_headers, req->url, req->method);
    if (!resp) {
        tw__cconn_close(c, true);
        fail_req(req, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    c->keep_alive = h->keep_alive && !req->want_close && !pool->opts.no_persistent;
    c->body_kind = (uint8_t)h->body;
    if (h->body == TW_HTTP_BODY_NONE || h->body == TW_HTTP_BODY_LENGTH) {
        resp->has_length = true;
        resp->length = h->body == TW_HTTP_BODY_LENGTH ? h->content_length : 0;
    }
    if (h->body == TW_HTTP_BODY_NONE) {
        tw__response_end(resp, NULL);
        exchange_over(c, rest);
    } else {
        c->state = CC_BODY;
        c->resp = resp;
        resp->src_ops = &conn_source;
        resp->src = c;
        if (h->body == TW_HTTP_BODY_LENGTH)
            tw_http_length_init(&c->length, h->content_length);
        else if (h->body == TW_HTTP_BODY_CHUNKED)
            tw_http_chunked_init(&c->chunked, &pool->opts.limits, NULL, 0);
        else
            c->length.remaining = 0; /* counts bytes until close */
    }
    tw__creq_fire(req, tw_ok(resp, tw_response_unref));
    tw__creq_unref(req);
}

/* Hands body bytes on (or drops them while discarding). Returns false when
 * the connection must stop reading. */
static bool deliver(tw__cconn *c, const char *p, size_t n)
{
    if (c->discarding) {
        if (n > c->discard_budget) {
            c->discarding = false;
            tw__cconn_close(c, true);
            return false;
        }
        c->discard_budget -= n;
        return true;
    }
    if (c->resp)
        tw__response_data(c->resp, p, n);
    return true;
}

/* One step through the body. Returns the bytes used; *stop when nothing
 * more can be done with the rest now. */
static size_t body_step(tw__cconn *c, const char *p, size_t n, bool *stop)
{
    switch (c->body_kind) {
    case TW_HTTP_BODY_LENGTH: {
        size_t take = tw_http_length_take(&c->length, n);
        if (take && !deliver(c, p, take)) {
            *stop = true;
            return n;
        }
        if (tw_http_length_done(&c->length))
            body_complete(c, take < n);
        return take;
    }
    case TW_HTTP_BODY_CHUNKED: {
        size_t used = 0;
        tw_http_slice d;
        int rc = tw_http_chunked_parse(&c->chunked, p, n, &used, &d);
        if (rc == TW_HTTP_CHUNKED_DATA) {
            if (!deliver(c, d.ptr, d.len))
                *stop = true;
            return used;
        }
        if (rc == TW_HTTP_CHUNKED_MORE) {
            *stop = true;
            return used;
        }
        if (rc == TW_HTTP_CHUNKED_DONE) {
            body_complete(c, used < n);
            return used;
        }
        const char *why = tw_http_chunked_reason(&c->chunked);
        char o[300];
        origin(c, o, sizeof o);
        body_failed_with(c,
                         tw_failure_new(TW_DOMAIN, rc, "malformed chunked body from %s: %s", o,
                                        why ? why : tw_strerror(rc)),
                         true);
        *stop = true;
        return n;
    }
    default: { /* until the server closes */
        uint64_t max = c->pool->opts.limits.max_body_bytes;
        if (n > max - c->length.remaining) {
            body_failed_with(c,
                             tw_failure_new(TW_DOMAIN, TW_ELIMIT,
                                            "the body is longer than the limit (%llu bytes)",
                                            (unsigned long long)max),
                             true);
            *stop = true;
            return n;
        }
        c->length.remaining += n;
        if (!deliver(c, p, n))
            *stop = true;
        return n;
    }
    }
}

/* Uses what it can of data[0..len); returns how much. The rest is to be
 * kept (unless the connection began closing). */
static size_t consume(tw__cconn *c, const char *data, size_t len)
{
    size_t pos = 0;
    c->consuming = true;
    while (pos < len && !c->closing) {
        if (c->state == CC_HEAD) {
            int rc =
                tw_http_parse_response(&c->parser, data + pos, len - pos, c->method_id, &c->head);
            if (rc == 0)
                break;
            if (rc < 0) {
                head_error(c, rc);
                pos = len;
                break;
            }
            pos += (size_t)rc;
            if (c->head.status < 200 && !c->head.tunnel) {
                /* 1xx interim: the final response follows. */
                tw_http_parser_init(&c->parser, &c->pool->opts.limits);
                c->head.headers = c->fields;
                c->head.headers_cap = c->fields_cap;
                continue;
            }
            head_done(c, pos < len);
            continue;
        }
        if (c->state == CC_BODY) {
            if (holding(c))
                break;
            bool stop = false;
            size_t used = body_step(c, data + pos, len - pos, &stop);
            pos += used;
            if (stop)
                break;
            continue;
        }
        if (c->state == CC_IDLE || c->state == CC_NEW) {
            /* No request is waiting for these bytes. */
            tw_log(TW_LOG_DEBUG, "http.client",
                   "closing a connection: unexpected bytes from the server");
            tw__cconn_close(c, true);
        }
        pos = len; /* after the end of what we read: dropped */
    }
    c->consuming = false;
    return pos;
}

/* Body delivery through the connection's buffer, then reading again. */
static void pump(tw__cconn *c)
{
    if (c->consuming)
        return;
    if (c->len > 0 && !c->closing) {
        size_t used = consume(c, c->buf, c->len);
        if (c->closing)
            used = c->len;
        drop_front(c, used);
    }
    if (c->gone && !c->closing && (c->resp || c->discarding) && !holding(c)) {
        /* The server closed, and the buffer holds nothing more that can
         * be used (an incomplete chunk line or trailer at most). */
        tw_failure *lost = c->lost;
        c->lost = NULL;
        bool clean = lost && tw_failure_is(lost, TW_DOMAIN, TW_ECONNECTION_DONE);
        c->len = 0;
        if (c->state == CC_BODY && c->body_kind == TW_HTTP_BODY_UNTIL_CLOSE && clean) {
            body_complete(c, false);
            tw_failure_unref(lost);
        } else {
            char o[300];
            origin(c, o, sizeof o);
            body_failed_with(c,
                             tw_failure_wrap(lost ? lost : tw_failure_connection_lost(), TW_DOMAIN,
                                             TW_ECONNECTION_LOST,
                                             "the response body from %s is incomplete: the "
                                             "connection was lost",
                                             o),
                             true);
        }
        c->discarding = false;
    }
    tw__cconn_update_reading(c);
}

static void conn_task(tw_reactor *r, tw__task *t)
{
    tw__cconn *c = (tw__cconn *)((char *)t - offsetof(tw__cconn, task));
    pump(c);
    maybe_free(c);
}

static void post(tw__cconn *c)
{
    tw__task_post(reactor_of(c), &c->task, conn_task);
}

static void input(tw__cconn *c, const char *data, size_t len)
{
    if (c->closing || c->gone || len == 0)
        return;
    c->got_bytes = true;
    if (c->len > 0) {
        if (!keep(c, data, len)) {
            body_failed_with(c, tw_failure_from_code(TW_ENOMEM), true);
            return;
        }
        pump(c);
        return;
    }
    size_t used = consume(c, data, len);
    if (used < len && !c->closing && !keep(c, data + used, len - used))
        body_failed_with(c, tw_failure_from_code(TW_ENOMEM), true);
    tw__cconn_update_reading(c);
}

/* ------------------------------------------------------------ the body source */

static void src_resume(void *src)
{
    tw__cconn *c = src;
    c->consumer_paused = false;
    pump(c);
    maybe_free(c);
}

static void src_pause(void *src)
{
    tw__cconn *c = src;
    c->consumer_paused = true;
    tw__cconn_update_reading(c);
}

static void src_stop(void *src)
{
    tw__cconn *c = src;
    char o[300];
    origin(c, o, sizeof o);
    tw_response *resp = c->resp;
    body_failed_with(c,
                     tw_failure_new(TW_DOMAIN, TW_ECANCELED, "the body of %d from %s was stopped",
                                    resp ? resp->status : 0, o),
                     true);
    post(c); /* frees the state if the transport is gone */
}

static void src_drop(void *src)
{
    tw__cconn *c = src;
    c->resp = NULL;
    if (c->state == CC_BODY && !c->closing) {
        bool cheap = c->body_kind == TW_HTTP_BODY_CHUNKED ||
                     (c->body_kind == TW_HTTP_BODY_LENGTH && c->length.remaining <= DISCARD_BUDGET);
        if (cheap && !c->gone) {
            c->discarding = true;
            c->discard_budget = DISCARD_BUDGET;
        } else {
            tw__cconn_close(c, true);
        }
    }
    post(c);
}

static const tw__body_source_ops conn_source = { src_resume, src_pause, src_stop, src_drop };

/* ------------------------------------------------------------ lifetime */

static void maybe_free(tw__cconn *c)
{
    if (!c->gone || c->resp || c->req || c->sender || c->consuming || c->host)
        return;
    tw__cpool *pool = c->pool;
    tw__task_cancel(pool->reactor, &c->task);
    tw_timer_cancel(c->idle_timer);
    tw_failure_unref(c->lost);
    free(c->buf);
    free(c->fields);
    free(c);
    pool->conns--;
    tw__cpool_sweep_soon(pool);
}

static void lost(tw__cconn *c, const tw_failure *reason)
{
    bool by_us = c->closing;
    c->wregistered = false; /* the transport forgets its producer */
    c->gone = true;
    c->proto = NULL;
    c->transport = NULL;
    c->read_paused = false;
    tw_timer_cancel(c->idle_timer);
    c->idle_timer = TW_TIMER_NONE;
    tw__cpool_detach(c);
    if (c->state != CC_BODY)
        c->state = CC_CLOSED;
    tw__creq *req = tw__cconn_take_req(c);
    tw__cconn_drop_sender(c);
    if (req) {
        req->conn = NULL;
        char o[300];
        origin(c, o, sizeof o);
        if (!by_us && c->exchanges > 1 && !c->got_bytes && tw__creq_may_retry(req)) {
            /* A pooled connection the server had closed: once more on a
             * new one (Twisted's _RetryingHTTP11ClientProtocol). */
            tw_log(TW_LOG_DEBUG, "http.client", "retrying %s %s on a new connection", req->method,
                   req->url);
            req->retried = true;
            req->fresh = true;
            tw__cpool_submit(c->pool, req);
        } else {
            fail_req(req, tw_failure_wrap(tw_failure_ref((tw_failure *)reason), TW_DOMAIN,
                                          TW_ECONNECTION_LOST,
                                          "the connection to %s was lost before the response to "
                                          "%s %s arrived",
                                          o, req->method, req->url));
        }
    }
    if (c->resp || c->discarding) {
        c->lost = tw_failure_ref((tw_failure *)reason);
        if (by_us) {
            c->closing = false; /* let pump end the body */
            c->len = 0;
        }
        pump(c);
    }
    maybe_free(c);
}

/* ------------------------------------------------------------ the shim */

static void shim_made(tw_protocol *p)
{
    shim *s = (shim *)p;
    tw__cpool *pool = (tw__cpool *)p->factory;
    tw__cconn *c = calloc(1, sizeof *c);
    size_t cap = pool->opts.limits.max_headers;
    if (cap == 0)
        cap = 1;
    if (cap > MAX_FIELDS)
        cap = MAX_FIELDS;
    if (c && !(c->fields = calloc(cap, sizeof *c->fields))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        tw_transport_abort_connection(p->transport);
        return;
    }
    c->fields_cap = cap;
    c->pool = pool;
    c->proto = p;
    c->transport = p->transport;
    c->state = CC_NEW;
    pool->conns++;
    s->c = c;
}

static void shim_data(tw_protocol *p, const void *data, size_t len)
{
    tw__cconn *c = ((shim *)p)->c;
    if (c)
        input(c, data, len);
}

static void shim_lost(tw_protocol *p, const tw_failure *reason)
{
    shim *s = (shim *)p;
    tw__cconn *c = s->c;
    s->c = NULL;
    if (c)
        lost(c, reason);
}

const tw_protocol_ops tw__cconn_protocol = {
    .size = sizeof(shim),
    .connection_made = shim_made,
    .data_received = shim_data,
    .connection_lost = shim_lost,
};
