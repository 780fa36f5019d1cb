/* client_send.c — writing a request on a client connection: the head,
 * then the body from its producer (Content-Length or chunked), with the
 * transport's write-side flow control passed on to the producer, and the
 * response timeout once the whole request was handed over.
 *
 * A producer's calls may end the exchange (a write past the length); the
 * request then stays allocated until the producer's call returned (see
 * in_producer in client_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/client_internal.h"

static int write_parts(tw__cconn *c, struct iovec *iov, int n)
{
    if (!c->transport || c->gone || c->closing)
        return TW_ECLOSED;
    return tw_transport_writev(c->transport, iov, n);
}

static void flush_head(tw__cconn *c, tw__creq *req)
{
    if (!req->head_pending)
        return;
    req->head_pending = false;
    struct iovec iov = { req->head, req->head_len };
    write_parts(c, &iov, 1);
}

static void response_timeout(void *arg)
{
    tw__creq *req = arg;
    req->response_timer = TW_TIMER_NONE;
    tw__cconn *c = req->conn;
    if (!c || c->req != req)
        return;
    tw__cconn_fail_exchange(c, tw_failure_new(TW_DOMAIN, TW_ETIMEDOUT,
                                              "no response to %s %s within %g s", req->method,
                                              req->url, req->pool->opts.response_timeout));
}

/* The whole request was handed over: the response timeout starts. */
static void request_sent(tw__cconn *c, tw__creq *req)
{
    req->body_done = true;
    double t = req->pool->opts.response_timeout;
    if (c->req == req && t > 0)
        req->response_timer = tw_call_later(c->pool->reactor, t, response_timeout, req);
}

int tw__cconn_write_body(tw__cconn *c, tw__creq *req, const void *data, size_t len)
{
    if (c->sender != req || !req->producing || c->closing || c->gone)
        return TW_ECLOSED;
    if (len == 0)
        return 0;
    if (!req->chunked && len > req->body->length - req->body_written) {
        tw__cconn_fail_exchange(
            c, tw_failure_new(TW_DOMAIN, TW_EINVAL,
                              "the body producer of %s %s wrote more than its length "
                              "(%llu bytes)",
                              req->method, req->url, (unsigned long long)req->body->length));
        return TW_EINVAL;
    }
    struct iovec iov[4];
    int n = 0;
    if (req->head_pending) {
        req->head_pending = false;
        iov[n++] = (struct iovec){ req->head, req->head_len };
    }
    char size_line[24];
    if (req->chunked) {
        int sl = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        iov[n++] = (struct iovec){ size_line, (size_t)sl };
    }
    iov[n++] = (struct iovec){ (void *)data, len };
    if (req->chunked)
        iov[n++] = (struct iovec){ "\r\n", 2 };
    req->body_written += len;
    int rc = write_parts(c, iov, n);
    return rc == TW_ELIMIT ? TW_ECLOSED : rc;
}

static void body_done(tw__cconn *c, tw__creq *req)
{
    if (c->sender != req)
        return;
    req->producing = false;
    if (!req->chunked && req->body_written != req->body->length) {
        tw__cconn_fail_exchange(
            c, tw_failure_new(TW_DOMAIN, TW_EINVAL,
                              "the body producer of %s %s wrote %llu of its %llu bytes",
                              req->method, req->url, (unsigned long long)req->body_written,
                              (unsigned long long)req->body->length));
        return;
    }
    if (req->chunked) {
        struct iovec iov[2];
        int n = 0;
        if (req->head_pending) {
            req->head_pending = false;
            iov[n++] = (struct iovec){ req->head, req->head_len };
        }
        iov[n++] = (struct iovec){ "0\r\n\r\n", 5 };
        write_parts(c, iov, n);
    } else {
        flush_head(c, req);
    }
    request_sent(c, req);
    tw__cconn_drop_sender(c);
}

/* Write-side flow control: the transport pauses the body producer. */
#define CONN_OF_PRODUCER(p) ((tw__cconn *)((char *)(p)-offsetof(tw__cconn, producer)))

static void wprod_pause(tw_producer *p)
{
    tw__cconn *c = CONN_OF_PRODUCER(p);
    tw__creq *req = c->sender;
    if (req && req->producing && req->body->ops->pause_producing) {
        req->in_producer++;
        req->body->ops->pause_producing(req->body);
        req->in_producer--;
    }
}

static void wprod_resume(tw_producer *p)
{
    tw__cconn *c = CONN_OF_PRODUCER(p);
    tw__creq *req = c->sender;
    if (req && req->producing && req->body->ops->resume_producing) {
        req->in_producer++;
        req->body->ops->resume_producing(req->body);
        req->in_producer--;
    }
}

static void wprod_stop(tw_producer *p)
{
    (void)p; /* the connection is going: connection_lost stops the body */
}

static const tw_producer_ops write_producer_ops = { wprod_pause, wprod_resume, wprod_stop };

static tw_result body_ok(tw_result *in, void *arg)
{
    tw__body_watch *w = arg;
    tw__creq *req = w->req;
    if (req && req->conn)
        body_done(req->conn, req);
    return TW_RESULT_NONE;
}

static tw_result body_failed(tw_result *in, void *arg)
{
    tw__body_watch *w = arg;
    tw__creq *req = w->req;
    tw__cconn *c = req ? req->conn : NULL;
    if (!c || c->sender != req)
        return TW_RESULT_NONE;
    tw_failure *cause = in->failure;
    in->failure = NULL;
    req->producing = false;
    tw__cconn_fail_exchange(c, tw_failure_wrap(cause, TW_DOMAIN, tw_failure_code(cause),
                                               "the body of %s %s could not be produced: %s",
                                               req->method, req->url, tw_failure_message(cause)));
    return TW_RESULT_NONE;
}

static void watch_free(void *arg)
{
    tw__body_watch *w = arg;
    if (w->req)
        w->req->watch = NULL;
    free(w);
}

static void start_body(tw__cconn *c, tw__creq *req)
{
    tw_body_producer *body = req->body;
    req->chunked = body->length == TW_BODY_UNKNOWN_LENGTH;
    req->body_written = 0;
    req->head_pending = true;
    tw__body_watch *w = malloc(sizeof *w);
    if (!w) {
        tw__cconn_fail_exchange(c, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    w->req = NULL;
    c->sender = req;
    req->refs++;
    c->producer.ops = &write_producer_ops;
    if (tw_transport_register_producer(c->transport, &c->producer, true) == 0)
        c->wregistered = true;
    req->producing = true;
    req->in_producer++;
    tw_deferred *d = body->ops->start_producing(body, &req->consumer);
    req->in_producer--;
    if (!d) {
        free(w);
        req->producing = false;
        tw__cconn_fail_exchange(c, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    /* Ours until the body is done or stopped (tw__creq_stop_body). */
    req->body_d = d;
    w->req = req;
    req->watch = w;
    if (tw_deferred_add_callbacks_full(d, body_ok, body_failed, w, watch_free) < 0) {
        req->watch = NULL;
        free(w);
        tw__cconn_fail_exchange(c, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    /* A producer that has not written yet: the head goes now, so the
     * server sees the request begin. */
    if (c->sender == req && req->producing)
        flush_head(c, req);
}

void tw__cconn_start(tw__cconn *c, tw__creq *req)
{
    tw_timer_cancel(c->idle_timer);
    c->idle_timer = TW_TIMER_NONE;
    c->state = CC_HEAD;
    c->req = req; /* takes the owner reference */
    req->conn = c;
    c->exchanges++;
    c->got_bytes = false;
    c->keep_alive = false;
    c->discarding = false;
    c->consumer_paused = false;
    c->method_id = req->method_id;
    tw_http_parser_init(&c->parser, &c->pool->opts.limits);
    c->head.headers = c->fields;
    c->head.headers_cap = c->fields_cap;
    tw__cconn_update_reading(c);
    if (req->body) {
        start_body(c, req);
    } else {
        req->head_pending = true;
        flush_head(c, req);
        request_sent(c, req);
    }
}
