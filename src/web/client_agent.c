/* client_agent.c — agents (Twisted's IAgent) and the base Agent: checks a
 * request, writes its head once into the request's own allocation, and
 * hands it to the pool; the request's deferred, its cancellation and the
 * one retry on a stale pooled connection.
 *
 * Per request, the base agent allocates the request (head included) and
 * its deferred; the response adds one allocation (its head). On a pooled
 * connection nothing else is allocated in the steady state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/client_internal.h"

typedef struct base_agent {
    tw_agent base;
    tw__cpool *pool;
} base_agent;

/* ------------------------------------------------------------ helpers */

static bool token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
                  (c && strchr("!#$%&'*+-.^_`|~", c));
        if (!ok)
            return false;
    }
    return true;
}

static bool value_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static tw_http_method method_id(const char *m, size_t n)
{
    static const struct {
        const char *name;
        tw_http_method id;
    } known[] = {
        { "GET", TW_HTTP_GET },         { "HEAD", TW_HTTP_HEAD },
        { "POST", TW_HTTP_POST },       { "PUT", TW_HTTP_PUT },
        { "DELETE", TW_HTTP_DELETE },   { "CONNECT", TW_HTTP_CONNECT },
        { "OPTIONS", TW_HTTP_OPTIONS }, { "TRACE", TW_HTTP_TRACE },
        { "PATCH", TW_HTTP_PATCH },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, m, n) == 0)
            return known[i].id;
    return TW_HTTP_OTHER;
}

static bool idempotent(tw_http_method m)
{
    return m == TW_HTTP_GET || m == TW_HTTP_HEAD || m == TW_HTTP_OPTIONS || m == TW_HTTP_TRACE ||
           m == TW_HTTP_PUT || m == TW_HTTP_DELETE;
}

/* ------------------------------------------------------------ requests */

void tw__creq_stop_body(tw__creq *req)
{
    if (req->producing) {
        req->producing = false;
        if (req->body->ops->stop_producing)
            req->body->ops->stop_producing(req->body);
    }
    if (req->watch) {
        req->watch->req = NULL;
        req->watch = NULL;
    }
    tw_deferred *d = req->body_d;
    req->body_d = NULL;
    tw_deferred_unref(d);
}

static void drop_body(tw__creq *req)
{
    tw__creq_stop_body(req);
    tw_body_producer *b = req->body;
    req->body = NULL;
    tw_body_producer_free(b);
}

static void creq_free(tw__creq *req)
{
    tw_timer_cancel(req->connect_timer);
    tw_timer_cancel(req->response_timer);
    drop_body(req);
    if (req->d) /* never happens: every path fires first */
        tw__creq_fire(req, tw_err(tw_failure_cancelled()));
    free(req);
}

static void creq_free_task(tw_reactor *r, tw__task *t)
{
    creq_free((tw__creq *)((char *)t - offsetof(tw__creq, free_task)));
}

void tw__creq_unref(tw__creq *req)
{
    if (!req || --req->refs > 0)
        return;
    /* Never destroy the producer inside its own call: it would return
     * into freed memory. */
    if (req->in_producer)
        tw__task_post(req->pool->reactor, &req->free_task, creq_free_task);
    else
        creq_free(req);
}

void tw__creq_fire(tw__creq *req, tw_result res)
{
    tw_deferred *d = req->d;
    if (!d) {
        tw_result_free(&res);
        return;
    }
    req->d = NULL;
    tw_deferred_fire(d, res);
    tw_deferred_unref(d);
}

bool tw__creq_may_retry(tw__creq *req)
{
    if (!req->idempotent || req->retried || !req->d || req->pool->closed)
        return false;
    if (!req->body)
        return true;
    return req->body->ops->rewind && req->body->ops->rewind(req->body) == 0;
}

static void req_cancel(tw_deferred *d, void *arg)
{
    tw__creq *req = arg;
    tw_failure *f =
        tw_failure_new(TW_DOMAIN, TW_ECANCELED, "%s %s was cancelled", req->method, req->url);
    req->d = NULL;
    req->refs++; /* until this returns */
    if (req->queued) {
        tw__cpool_unqueue(req);
        tw__creq_unref(req); /* the queue's reference */
    } else if (req->conn && req->conn->req == req) {
        tw__cconn_abort_request(req->conn); /* drops the connection's reference */
    }
    tw_deferred_errback(d, f);
    tw_deferred_unref(d);
    tw__creq_unref(req);
}

int tw_body_consumer_write(tw_body_consumer *c, const void *data, size_t len)
{
    tw__creq *req = c->req;
    if (!req->conn || req->refs == 0)
        return TW_ECLOSED;
    req->in_producer++;
    int rc = tw__cconn_write_body(req->conn, req, data, len);
    req->in_producer--;
    return rc;
}

tw_reactor *tw_body_consumer_reactor(const tw_body_consumer *c)
{
    return c->req->pool->reactor;
}

/* ------------------------------------------------------------ the head */

typedef struct head_plan {
    const char *method;
    size_t method_len;
    tw_url url;
    const tw_http_header *headers;
    size_t n;
    bool has_host, has_ua, want_close;
    const char *framing; /* "Content-Length: N" or "Transfer-Encoding: chunked" */
    char framing_buf[48];
    const char *user_agent;
    bool add_close;
} head_plan;

static size_t head_write(const head_plan *hp, char *out)
{
    size_t at = 0;
#define PUT(s, n)                      \
    do {                               \
        size_t n_ = (n);               \
        if (out)                       \
            memcpy(out + at, (s), n_); \
        at += n_;                      \
    } while (0)
#define PUTS(s) PUT((s), strlen(s))
    PUT(hp->method, hp->method_len);
    PUTS(" ");
    if (hp->url.path.len)
        PUT(hp->url.path.ptr, hp->url.path.len);
    else
        PUTS("/");
    if (hp->url.query.ptr) {
        PUTS("?");
        PUT(hp->url.query.ptr, hp->url.query.len);
    }
    PUTS(" HTTP/1.1\r\n");
    if (!hp->has_host) {
        PUTS("Host: ");
        PUT(hp->url.authority.ptr, hp->url.authority.len);
        PUTS("\r\n");
    }
    if (hp->user_agent && !hp->has_ua) {
        PUTS("User-Agent: ");
        PUTS(hp->user_agent);
        PUTS("\r\n");
    }
    for (size_t i = 0; i < hp->n; i++) {
        PUT(hp->headers[i].name.ptr, hp->headers[i].name.len);
        PUTS(": ");
        PUT(hp->headers[i].value.ptr, hp->headers[i].value.len);
        PUTS("\r\n");
    }
    if (hp->framing) {
        PUTS(hp->framing);
        PUTS("\r\n");
    }
    if (hp->add_close)
        PUTS("Connection: close\r\n");
    PUTS("\r\n");
#undef PUT
#undef PUTS
    return at;
}

static tw_deferred *refuse(tw_body_producer *body, const char *fmt, const char *what,
                           const char *url)
{
    tw_body_producer_free(body);
    return tw_fail(tw_failure_new(TW_DOMAIN, TW_EINVAL, fmt, what, url ? url : "(null)"));
}

static tw_deferred *base_request(tw_agent *a, const char *method, const char *url,
                                 const tw_http_header *headers, size_t n, tw_body_producer *body)
{
    base_agent *ba = (base_agent *)a;
    tw__cpool *pool = ba->pool;
    head_plan hp;
    memset(&hp, 0, sizeof hp);
    if (!method || !token_ok(method, strlen(method)))
        return refuse(body, "bad method '%.40s' for %.200s", method ? method : "(null)", url);
    if (!url)
        return refuse(body, "%s %s: no URL", method, url);
    hp.method = method;
    hp.method_len = strlen(method);
    tw_http_method id = method_id(method, hp.method_len);
    if (id == TW_HTTP_CONNECT)
        return refuse(body, "%s %.200s: CONNECT is not supported", method, url);
    size_t url_len = strlen(url);
    if (tw_url_parse(url, url_len, &hp.url) < 0)
        return refuse(body, "%s: bad URL '%.200s' (an absolute http or https URL)", method, url);
    if (!headers)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        const tw_http_header *h = &headers[i];
        if (!h->name.ptr || !token_ok(h->name.ptr, h->name.len) ||
            (h->value.len && !h->value.ptr) || !value_ok(h->value.ptr, h->value.len))
            return refuse(body, "%s %.200s: a header field name or value is malformed", method,
                          url);
        if (tw_http_token_eq(h->name.ptr, h->name.len, "content-length") ||
            tw_http_token_eq(h->name.ptr, h->name.len, "transfer-encoding"))
            return refuse(body, "%s %.200s: Content-Length and Transfer-Encoding are the agent's",
                          method, url);
        if (tw_http_token_eq(h->name.ptr, h->name.len, "host"))
            hp.has_host = true;
        else if (tw_http_token_eq(h->name.ptr, h->name.len, "user-agent"))
            hp.has_ua = true;
        else if (tw_http_token_eq(h->name.ptr, h->name.len, "connection") &&
                 tw_http_list_has(h->value.ptr, h->value.len, "close"))
            hp.want_close = true;
    }
    hp.headers = headers;
    hp.n = n;
    hp.user_agent = pool->opts.user_agent;
    if (body) {
        if (!body->ops || !body->ops->start_producing)
            return refuse(body, "%s %.200s: the body producer has no start_producing", method, url);
        if (body->length == TW_BODY_UNKNOWN_LENGTH)
            hp.framing = "Transfer-Encoding: chunked";
        else {
            snprintf(hp.framing_buf, sizeof hp.framing_buf, "Content-Length: %llu",
                     (unsigned long long)body->length);
            hp.framing = hp.framing_buf;
        }
    } else if (id == TW_HTTP_POST || id == TW_HTTP_PUT || id == TW_HTTP_PATCH) {
        hp.framing = "Content-Length: 0";
    }
    hp.add_close = pool->opts.no_persistent && !hp.want_close;
    size_t head_len = head_write(&hp, NULL);
    /* The URL is kept without its fragment (never sent). */
    size_t keep_url = hp.url.fragment.ptr ? (size_t)(hp.url.fragment.ptr - url - 1) : url_len;
    size_t bytes =
        sizeof(tw__creq) + hp.method_len + 1 + keep_url + 1 + hp.url.host.len + 1 + head_len;
    tw__creq *req = calloc(1, bytes);
    if (!req) {
        tw_body_producer_free(body);
        return NULL;
    }
    char *s = req->storage;
    memcpy(s, method, hp.method_len + 1);
    req->method = s;
    s += hp.method_len + 1;
    memcpy(s, url, keep_url);
    s[keep_url] = 0;
    req->url = s;
    s += keep_url + 1;
    for (size_t i = 0; i < hp.url.host.len; i++) {
        char c = hp.url.host.ptr[i];
        s[i] = (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
    }
    s[hp.url.host.len] = 0;
    req->host_name = s;
    s += hp.url.host.len + 1;
    req->head = s;
    req->head_len = head_write(&hp, s);
    req->refs = 1;
    req->pool = pool;
    req->body = body;
    req->consumer.req = req;
    req->method_id = id;
    req->https = hp.url.https;
    req->port = hp.url.port;
    req->idempotent = idempotent(id);
    req->want_close = hp.want_close || pool->opts.no_persistent;
    req->fresh = pool->opts.no_persistent;
    if (!(req->d = tw_deferred_new(req_cancel, req))) {
        tw__creq_unref(req);
        return NULL;
    }
    tw_deferred *mine = tw_deferred_ref(req->d);
    tw__cpool_submit(pool, req);
    return mine;
}

static void base_close_idle(tw_agent *a)
{
    tw__cpool_close_idle(((base_agent *)a)->pool);
}

static void base_free(tw_agent *a)
{
    base_agent *ba = (base_agent *)a;
    tw__cpool_close(ba->pool); /* may run user code: a stays valid meanwhile */
    free(ba);
}

static const tw__agent_ops base_ops = { base_request, base_close_idle, base_free };

/* ------------------------------------------------------------ public */

void tw_agent_options_init(tw_agent_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout = 30;
    o->response_timeout = 60;
    o->max_per_host = 8;
    o->max_idle_per_host = 2;
    o->idle_timeout = 240;
    tw_http_limits_init(&o->limits);
    o->limits.max_body_bytes = UINT64_MAX;
}

int tw_agent_new(tw_reactor *r, const tw_agent_options *opts, tw_agent **out)
{
    tw_agent_options o;
    if (opts)
        o = *opts;
    else
        tw_agent_options_init(&o);
    if (!r || !out || !(o.connect_timeout >= 0) || !(o.response_timeout >= 0) ||
        !(o.idle_timeout >= 0))
        return TW_EINVAL;
    base_agent *ba = calloc(1, sizeof *ba);
    if (!ba)
        return TW_ENOMEM;
    int rc = tw__cpool_new(r, &o, &ba->pool);
    if (rc < 0) {
        free(ba);
        return rc;
    }
    ba->base.ops = &base_ops;
    ba->base.reactor = r;
    *out = &ba->base;
    return 0;
}

tw_deferred *tw_agent_request(tw_agent *a, const char *method, const char *url,
                              const tw_http_header *headers, size_t nheaders,
                              tw_body_producer *body)
{
    return a->ops->request(a, method, url, headers, nheaders, body);
}

void tw_agent_close_idle(tw_agent *a)
{
    if (a->ops->close_idle)
        a->ops->close_idle(a);
}

void tw_agent_free(tw_agent *a)
{
    if (a)
        a->ops->free(a);
}

tw_reactor *tw_agent_reactor(const tw_agent *a)
{
    return a->reactor;
}
