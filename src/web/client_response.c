/* client_response.c — responses (Twisted's Response): the head, a body
 * delivered to a consumer with flow control, and readBody.
 *
 * The body comes from a source (a connection, or a decoder reading another
 * response) through tw__response_data and tw__response_end. Starting,
 * resuming and the final body_end always run from the response's task, so
 * no consumer call ever happens inside a call the user made; data runs
 * inside the source's own delivery (a read, or the task). */
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/client_internal.h"

enum { READ_BODY_DEFAULT_MAX = 16 * 1024 * 1024, READ_BODY_FIRST = 16 * 1024 };

#define RESPONSE_OF(ptr, member) ((tw_response *)((char *)(ptr)-offsetof(tw_response, member)))

static void response_task(tw_reactor *reactor, tw__task *t);

tw_response *tw__response_make(tw_reactor *r, int status, int version_minor, tw_http_slice reason,
                               const tw_http_header *headers, size_t n, const char *url,
                               const char *method)
{
    size_t url_len = strlen(url), method_len = strlen(method);
    size_t bytes =
        sizeof(tw_response) + n * sizeof(tw_http_header) + reason.len + url_len + method_len + 2;
    for (size_t i = 0; i < n; i++)
        bytes += headers[i].name.len + headers[i].value.len;
    tw_response *resp = calloc(1, bytes);
    if (!resp)
        return NULL;
    resp->refs = 1;
    resp->reactor = r;
    resp->status = status;
    resp->version_minor = version_minor;
    resp->headers = (tw_http_header *)(resp + 1);
    resp->num_headers = n;
    char *s = (char *)(resp->headers + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(s, headers[i].name.ptr, headers[i].name.len);
        resp->headers[i].name.ptr = s;
        resp->headers[i].name.len = headers[i].name.len;
        s += headers[i].name.len;
        if (headers[i].value.len)
            memcpy(s, headers[i].value.ptr, headers[i].value.len);
        resp->headers[i].value.ptr = s;
        resp->headers[i].value.len = headers[i].value.len;
        s += headers[i].value.len;
    }
    if (reason.len)
        memcpy(s, reason.ptr, reason.len);
    resp->reason.ptr = s;
    resp->reason.len = reason.len;
    s += reason.len;
    memcpy(s, url, url_len + 1);
    resp->url = s;
    s += url_len + 1;
    memcpy(s, method, method_len + 1);
    resp->method = s;
    return resp;
}

tw_response *tw_response_ref(tw_response *r)
{
    if (r)
        r->refs++;
    return r;
}

void tw_response_unref(void *response)
{
    tw_response *r = response;
    if (!r || --r->refs > 0)
        return;
    if (r->src) {
        void *src = r->src;
        r->src = NULL;
        r->src_ops->drop(src);
    }
    tw__task_cancel(r->reactor, &r->task);
    tw_failure_unref(r->end_reason);
    tw_response_unref(r->previous);
    free(r);
}

/* ------------------------------------------------------------ the head */

int tw_response_status(const tw_response *r)
{
    return r->status;
}

tw_http_slice tw_response_reason(const tw_response *r)
{
    return r->reason;
}

int tw_response_version_minor(const tw_response *r)
{
    return r->version_minor;
}

bool tw_response_header(const tw_response *r, const char *name, tw_http_slice *value)
{
    const tw_http_header *h = tw_http_header_find(r->headers, r->num_headers, name);
    if (!h)
        return false;
    if (value)
        *value = h->value;
    return true;
}

const tw_http_header *tw_response_headers(const tw_response *r, size_t *n)
{
    if (n)
        *n = r->num_headers;
    return r->headers;
}

bool tw_response_length(const tw_response *r, uint64_t *len)
{
    if (r->has_length && len)
        *len = r->length;
    return r->has_length;
}

const char *tw_response_url(const tw_response *r)
{
    return r->url;
}

const char *tw_response_method(const tw_response *r)
{
    return r->method;
}

const tw_response *tw_response_previous(const tw_response *r)
{
    return r->previous;
}

void tw__response_set_previous(tw_response *r, tw_response *previous)
{
    tw_response_unref(r->previous);
    r->previous = previous;
}

/* ------------------------------------------------------------ the body */

static void post(tw_response *r)
{
    tw__task_post(r->reactor, &r->task, response_task);
}

/* body_end, then the consumer's reference goes. */
static void finish(tw_response *r)
{
    r->finished = true;
    tw_failure *why = r->end_reason;
    r->end_reason = NULL;
    if (r->body_ops->body_end)
        r->body_ops->body_end(r, why, r->body_arg);
    tw_failure_unref(why);
    tw_response_unref(r);
}

static void response_task(tw_reactor *reactor, tw__task *t)
{
    tw_response *r = RESPONSE_OF(t, task);
    if (!r->consumer || r->finished)
        return;
    if (r->ended) {
        finish(r);
        return;
    }
    if (!r->paused && r->src)
        r->src_ops->resume(r->src);
}

bool tw__response_delivering(const tw_response *r)
{
    return r->consumer && !r->finished && !r->ended && !r->paused;
}

void tw__response_data(tw_response *r, const char *data, size_t len)
{
    if (len && tw__response_delivering(r))
        r->body_ops->data_received(r, data, len, r->body_arg);
}

void tw__response_end(tw_response *r, tw_failure *reason)
{
    r->src = NULL;
    r->src_ops = NULL;
    if (r->ended) {
        tw_failure_unref(reason);
        return;
    }
    r->ended = true;
    r->end_reason = reason;
    if (r->consumer && !r->finished)
        post(r);
}

void tw__response_discard_body(tw_response *r)
{
    if (r->src) {
        void *src = r->src;
        r->src = NULL;
        r->src_ops->drop(src);
    }
    if (!r->ended)
        tw__response_end(r,
                         tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                        "the body of %d from %s was discarded", r->status, r->url));
}

int tw_response_deliver_body(tw_response *r, const tw_response_body_ops *ops, void *arg)
{
    if (!ops || !ops->data_received)
        return TW_EINVAL;
    if (r->consumer)
        return TW_EBUSY;
    r->consumer = true;
    r->body_ops = ops;
    r->body_arg = arg;
    r->refs++;
    post(r);
    return 0;
}

void tw_response_pause_body(tw_response *r)
{
    if (r->paused || r->finished)
        return;
    r->paused = true;
    if (r->src)
        r->src_ops->pause(r->src);
}

void tw_response_resume_body(tw_response *r)
{
    if (!r->paused)
        return;
    r->paused = false;
    if (r->consumer && !r->finished)
        post(r);
}

void tw_response_stop_body(tw_response *r)
{
    if (r->ended || r->finished)
        return;
    if (r->src) {
        void *src = r->src;
        r->src_ops->stop(src); /* ends the body */
    }
    if (!r->ended)
        tw__response_end(r,
                         tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                        "the body of %d from %s was stopped", r->status, r->url));
}

static void prod_pause(tw_producer *p)
{
    tw_response_pause_body(RESPONSE_OF(p, producer));
}

static void prod_resume(tw_producer *p)
{
    tw_response_resume_body(RESPONSE_OF(p, producer));
}

static void prod_stop(tw_producer *p)
{
    tw_response_stop_body(RESPONSE_OF(p, producer));
}

static const tw_producer_ops response_producer_ops = { prod_pause, prod_resume, prod_stop };

tw_producer *tw_response_body_producer(tw_response *r)
{
    r->producer.ops = &response_producer_ops;
    return &r->producer;
}

/* ------------------------------------------------------------ readBody */

typedef struct collector {
    tw_deferred *d; /* ours until fired or cancelled */
    tw_response *r; /* kept alive by the delivery until collect_end */
    size_t max;
    tw_body_bytes *b;
    size_t cap;
} collector;

static void collector_fail(collector *c, tw_failure *f)
{
    tw_deferred *d = c->d;
    c->d = NULL;
    tw_deferred_errback(d, f);
    tw_deferred_unref(d);
}

static void collect_data(tw_response *r, const char *data, size_t len, void *arg)
{
    collector *c = arg;
    if (!c->d)
        return;
    size_t have = c->b ? c->b->len : 0;
    if (len > c->max - have) {
        collector_fail(c,
                       tw_failure_new(TW_DOMAIN, TW_ELIMIT,
                                      "the body of %s is larger than %zu bytes", r->url, c->max));
        tw_response_stop_body(r);
        return;
    }
    if (!c->b || len > c->cap - have) {
        size_t cap = c->cap ? c->cap : READ_BODY_FIRST;
        while (cap - have < len)
            cap = cap > c->max / 2 ? c->max : cap * 2;
        tw_body_bytes *grown = realloc(c->b, sizeof *grown + cap + 1);
        if (!grown) {
            collector_fail(c, tw_failure_from_code(TW_ENOMEM));
            tw_response_stop_body(r);
            return;
        }
        if (!c->b)
            grown->len = 0;
        c->b = grown;
        c->cap = cap;
    }
    memcpy(c->b->data + c->b->len, data, len);
    c->b->len += len;
}

static void collect_end(tw_response *r, const tw_failure *reason, void *arg)
{
    collector *c = arg;
    if (c->d) {
        if (reason) {
            collector_fail(c, tw_failure_wrap(tw_failure_ref((tw_failure *)reason), TW_DOMAIN,
                                              tw_failure_code(reason), "reading the body of %s: %s",
                                              r->url, tw_failure_message(reason)));
        } else {
            tw_body_bytes *b = c->b;
            if (!b && !(b = malloc(sizeof *b + 1))) {
                collector_fail(c, tw_failure_from_code(TW_ENOMEM));
            } else {
                if (!c->b)
                    b->len = 0;
                b->data[b->len] = 0;
                c->b = NULL;
                tw_deferred *d = c->d;
                c->d = NULL;
                tw_deferred_callback(d, tw_value_make(b, free));
                tw_deferred_unref(d);
            }
        }
    }
    free(c->b);
    free(c);
}

static const tw_response_body_ops collect_ops = { collect_data, collect_end };

static void collector_cancel(tw_deferred *d, void *arg)
{
    collector *c = arg;
    /* The deferred fails with a cancelled failure once this returns. */
    c->d = NULL;
    tw_deferred_unref(d);
    tw_response_stop_body(c->r); /* collect_end follows and frees c */
}

tw_deferred *tw_read_body(tw_response *r, size_t max_bytes)
{
    collector *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->max = max_bytes ? max_bytes : READ_BODY_DEFAULT_MAX;
    c->r = r;
    uint64_t known;
    if (tw_response_length(r, &known) && known > 0 && known <= c->max) {
        if ((c->b = malloc(sizeof *c->b + (size_t)known + 1))) {
            c->b->len = 0;
            c->cap = (size_t)known;
        }
    }
    if (!(c->d = tw_deferred_new(collector_cancel, c))) {
        free(c->b);
        free(c);
        return NULL;
    }
    tw_deferred *mine = tw_deferred_ref(c->d);
    int rc = tw_response_deliver_body(r, &collect_ops, c);
    if (rc < 0) {
        collector_fail(c, tw_failure_new(TW_DOMAIN, rc, "reading the body of %s: %s", r->url,
                                         rc == TW_EBUSY ? "the body is already being delivered"
                                                        : tw_strerror(rc)));
        free(c->b);
        free(c);
    }
    return mine;
}
