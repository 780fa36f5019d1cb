/* client_redirect.c — the redirect agent (Twisted's BrowserLikeRedirectAgent
 * with the Fetch standard's method rules): follows 301, 302, 303, 307 and
 * 308 up to a limit, rewinding the body for 307/308, and keeps the chain of
 * responses (previous). A redirect's body (usually a few bytes of HTML) is
 * read and dropped before the next request, so that a redirect to the same
 * origin reuses the connection; past 64 KiB it is cut off instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/client_internal.h"

enum { DEFAULT_MAX_REDIRECTS = 20, TRAIL_MAX = 8192, DRAIN_MAX = 64 * 1024 };

typedef struct redirect_agent {
    tw_agent base;
    tw_agent *inner;
    int max;
} redirect_agent;

/* One request through its redirects. */
typedef struct rreq {
    tw_agent *inner;
    int max;
    int count;
    tw_deferred *d;       /* the caller's deferred: ours until fired */
    tw_deferred *inner_d; /* the hop under way: ours */
    char *method;
    char *url;
    tw_http_header *headers;
    size_t n;
    char *store;            /* the headers' bytes */
    tw_body_producer *body; /* the caller's, kept for 307/308 */
    tw_response *prev;      /* the last redirect response (a reference) */
    char *trail;            /* "url -> url -> ..." for the limit's message */
    bool draining;          /* reading prev's body before the next hop */
    size_t drained;
} rreq;

/* ------------------------------------------------------------ hop bodies */

/* Each hop gets a producer that forwards to the caller's one and does not
 * destroy it, so that the next hop can replay it. */
typedef struct hop_body {
    tw_body_producer base;
    tw_body_producer *real;
} hop_body;

static tw_deferred *hop_start(tw_body_producer *p, tw_body_consumer *c)
{
    tw_body_producer *r = ((hop_body *)p)->real;
    return r->ops->start_producing(r, c);
}

static void hop_pause(tw_body_producer *p)
{
    tw_body_producer *r = ((hop_body *)p)->real;
    if (r->ops->pause_producing)
        r->ops->pause_producing(r);
}

static void hop_resume(tw_body_producer *p)
{
    tw_body_producer *r = ((hop_body *)p)->real;
    if (r->ops->resume_producing)
        r->ops->resume_producing(r);
}

static void hop_stop(tw_body_producer *p)
{
    tw_body_producer *r = ((hop_body *)p)->real;
    if (r->ops->stop_producing)
        r->ops->stop_producing(r);
}

static int hop_rewind(tw_body_producer *p)
{
    tw_body_producer *r = ((hop_body *)p)->real;
    return r->ops->rewind ? r->ops->rewind(r) : TW_EINVAL;
}

static void hop_destroy(tw_body_producer *p)
{
    free(p);
}

static const tw_body_producer_ops hop_ops_rewind = { hop_start, hop_pause,  hop_resume,
                                                     hop_stop,  hop_rewind, hop_destroy };
static const tw_body_producer_ops hop_ops_once = { hop_start, hop_pause, hop_resume,
                                                   hop_stop,  NULL,      hop_destroy };

/* ------------------------------------------------------------ state */

static void rreq_free(rreq *q)
{
    tw_deferred_unref(q->inner_d);
    tw_body_producer_free(q->body);
    tw_response_unref(q->prev);
    free(q->method);
    free(q->url);
    free(q->headers);
    free(q->store);
    free(q->trail);
    free(q);
}

static void rreq_fire(rreq *q, tw_result res)
{
    tw_deferred *d = q->d;
    q->d = NULL;
    if (d) {
        tw_deferred_fire(d, res);
        tw_deferred_unref(d);
    } else {
        tw_result_free(&res);
    }
    rreq_free(q);
}

/* Replaces q's headers by src[0..n) without the fields skip() refuses. */
static int set_headers(rreq *q, const tw_http_header *src, size_t n,
                       bool (*skip)(const tw_http_header *h, void *arg), void *arg)
{
    size_t bytes = 1, m = 0;
    for (size_t i = 0; i < n; i++)
        if (!skip || !skip(&src[i], arg))
            bytes += src[i].name.len + src[i].value.len, m++;
    tw_http_header *h = calloc(m ? m : 1, sizeof *h);
    char *store = malloc(bytes);
    if (!h || !store) {
        free(h);
        free(store);
        return TW_ENOMEM;
    }
    char *s = store;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip && skip(&src[i], arg))
            continue;
        memcpy(s, src[i].name.ptr, src[i].name.len);
        h[k].name = (tw_http_slice){ s, src[i].name.len };
        s += src[i].name.len;
        if (src[i].value.len)
            memcpy(s, src[i].value.ptr, src[i].value.len);
        h[k].value = (tw_http_slice){ s, src[i].value.len };
        s += src[i].value.len;
        k++;
    }
    free(q->headers);
    free(q->store);
    q->headers = h;
    q->store = store;
    q->n = m;
    return 0;
}

typedef struct skip_rules {
    bool credentials; /* another origin */
    bool content;     /* the body is dropped */
} skip_rules;

static bool skip_field(const tw_http_header *h, void *arg)
{
    const skip_rules *r = arg;
    const char *n = h->name.ptr;
    size_t len = h->name.len;
    if (r->credentials &&
        (tw_http_token_eq(n, len, "authorization") ||
         tw_http_token_eq(n, len, "proxy-authorization") || tw_http_token_eq(n, len, "cookie")))
        return true;
    if (r->content &&
        (tw_http_token_eq(n, len, "content-type") || tw_http_token_eq(n, len, "content-encoding") ||
         tw_http_token_eq(n, len, "content-language") ||
         tw_http_token_eq(n, len, "content-location")))
        return true;
    /* A Host the caller set named the first origin only. */
    if (r->credentials && tw_http_token_eq(n, len, "host"))
        return true;
    return false;
}

static bool same_origin(const char *a, const char *b)
{
    tw_url ua, ub;
    if (tw_url_parse(a, strlen(a), &ua) < 0 || tw_url_parse(b, strlen(b), &ub) < 0)
        return false;
    if (ua.https != ub.https || ua.port != ub.port || ua.host.len != ub.host.len)
        return false;
    for (size_t i = 0; i < ua.host.len; i++)
        if ((ua.host.ptr[i] | 0x20) != (ub.host.ptr[i] | 0x20))
            return false;
    return true;
}

static void trail_add(rreq *q, const char *url)
{
    size_t have = q->trail ? strlen(q->trail) : 0, add = strlen(url) + 5;
    if (have + add > TRAIL_MAX)
        return;
    char *t = realloc(q->trail, have + add);
    if (!t)
        return;
    snprintf(t + have, add, "%s%s", have ? " -> " : "", url);
    q->trail = t;
}

/* ------------------------------------------------------------ hops */

static tw_result on_response(tw_result *in, void *arg);
static tw_result on_failure(tw_result *in, void *arg);

static void hop(rreq *q)
{
    tw_body_producer *pb = NULL;
    if (q->body) {
        hop_body *hb = malloc(sizeof *hb);
        if (!hb) {
            rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
            return;
        }
        hb->base.ops = q->body->ops->rewind ? &hop_ops_rewind : &hop_ops_once;
        hb->base.length = q->body->length;
        hb->real = q->body;
        pb = &hb->base;
    }
    tw_deferred *d = tw_agent_request(q->inner, q->method, q->url, q->headers, q->n, pb);
    if (!d) {
        rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return;
    }
    q->inner_d = d;
    if (tw_deferred_add_callbacks(d, on_response, on_failure, q) < 0) {
        tw_deferred_cancel(d);
        rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
    }
    /* q may be gone here (the hop failed at once). */
}

static tw_result on_failure(tw_result *in, void *arg)
{
    rreq *q = arg;
    rreq_fire(q, tw_result_move(in));
    return TW_RESULT_NONE;
}

static void drain_data(tw_response *r, const char *data, size_t len, void *arg)
{
    rreq *q = arg;
    q->drained += len;
    if (q->drained > DRAIN_MAX)
        tw_response_stop_body(r);
}

static void drain_end(tw_response *r, const tw_failure *reason, void *arg)
{
    rreq *q = arg;
    q->draining = false;
    if (!q->d) { /* cancelled meanwhile */
        rreq_free(q);
        return;
    }
    hop(q); /* whatever became of the body: the redirect stands */
}

static const tw_response_body_ops drain_ops = { drain_data, drain_end };

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static tw_result on_response(tw_result *in, void *arg)
{
    rreq *q = arg;
    tw_response *resp = in->value.ptr;
    int status = tw_response_status(resp);
    /* Each response links to the redirect before it. */
    tw__response_set_previous(resp, q->prev);
    q->prev = NULL;
    tw_http_slice loc;
    bool has_loc = tw_response_header(resp, "location", &loc);
    bool get = (status == 303 && strcmp(q->method, "HEAD") != 0) ||
               ((status == 301 || status == 302) && strcmp(q->method, "POST") == 0);
    bool keep_body = q->body && !get;
    if (!is_redirect(status) || (keep_body && !q->body->ops->rewind)) {
        rreq_fire(q, tw_result_move(in));
        return TW_RESULT_NONE;
    }
    if (!has_loc) {
        tw__response_discard_body(resp);
        rreq_fire(q,
                  tw_err(tw_failure_new(TW_DOMAIN, TW_EPROTO,
                                        "%d redirect from %s without a Location", status, q->url)));
        return TW_RESULT_NONE;
    }
    if (q->count == 0)
        trail_add(q, q->url);
    size_t cap = strlen(q->url) + 3 * loc.len + 16;
    char *next = malloc(cap);
    if (!next) {
        tw__response_discard_body(resp);
        rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return TW_RESULT_NONE;
    }
    int rc = tw_url_join(q->url, loc.ptr, loc.len, next, cap, NULL);
    if (rc < 0) {
        tw__response_discard_body(resp);
        rreq_fire(q, tw_err(tw_failure_new(TW_DOMAIN, rc == TW_ENOMEM ? rc : TW_EPROTO,
                                           "%d redirect from %s to an unusable URL '%.*s'", status,
                                           q->url, (int)(loc.len > 200 ? 200 : loc.len), loc.ptr)));
        free(next);
        return TW_RESULT_NONE;
    }
    trail_add(q, next);
    if (q->count >= q->max) {
        tw__response_discard_body(resp);
        rreq_fire(
            q, tw_err(tw_failure_new(TW_DOMAIN, TW_ELIMIT, "too many redirects (more than %d): %s",
                                     q->max, q->trail ? q->trail : next)));
        free(next);
        return TW_RESULT_NONE;
    }
    if (keep_body && q->body->ops->rewind(q->body) < 0) {
        free(next);
        rreq_fire(q, tw_result_move(in)); /* cannot replay: this is the answer */
        return TW_RESULT_NONE;
    }
    skip_rules rules = { .credentials = !same_origin(q->url, next), .content = get };
    if (set_headers(q, q->headers, q->n, skip_field, &rules) < 0) {
        free(next);
        tw__response_discard_body(resp);
        rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return TW_RESULT_NONE;
    }
    if (get) {
        char *m = strdup("GET");
        if (!m) {
            free(next);
            tw__response_discard_body(resp);
            rreq_fire(q, tw_err(tw_failure_from_code(TW_ENOMEM)));
            return TW_RESULT_NONE;
        }
        free(q->method);
        q->method = m;
        tw_body_producer_free(q->body);
        q->body = NULL;
    }
    free(q->url);
    q->url = next;
    q->count++;
    q->prev = tw_response_ref(resp);
    tw_deferred_unref(q->inner_d);
    q->inner_d = NULL;
    /* The next hop once the body was read off (drain_end). */
    q->draining = true;
    q->drained = 0;
    if (tw_response_deliver_body(resp, &drain_ops, q) < 0) {
        q->draining = false;
        tw__response_discard_body(resp);
        hop(q);
    }
    return TW_RESULT_NONE; /* the chain drops its reference to resp */
}

static void rreq_cancel(tw_deferred *d, void *arg)
{
    rreq *q = arg;
    if (q->draining) {
        /* d fails with a cancelled failure when this returns; drain_end
         * frees q. */
        q->d = NULL;
        tw_deferred_unref(d);
        tw_response_stop_body(q->prev);
        return;
    }
    /* Cancelling the hop fails it at once, which fires d through
     * on_failure (and frees q). */
    tw_deferred *inner = tw_deferred_ref(q->inner_d);
    tw_deferred_cancel(inner);
    tw_deferred_unref(inner);
}

static tw_deferred *redirect_request(tw_agent *a, const char *method, const char *url,
                                     const tw_http_header *headers, size_t n,
                                     tw_body_producer *body)
{
    redirect_agent *ra = (redirect_agent *)a;
    rreq *q = calloc(1, sizeof *q);
    if (!q) {
        tw_body_producer_free(body);
        return NULL;
    }
    q->inner = ra->inner;
    q->max = ra->max;
    q->body = body;
    if (!method || !url) {
        rreq_free(q);
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EINVAL, "no method or URL"));
    }
    if (!(q->method = strdup(method)) || !(q->url = strdup(url)) ||
        set_headers(q, headers, headers ? n : 0, NULL, NULL) < 0 ||
        !(q->d = tw_deferred_new(rreq_cancel, q))) {
        rreq_free(q);
        return NULL;
    }
    tw_deferred *mine = tw_deferred_ref(q->d);
    hop(q);
    return mine;
}

static void redirect_close_idle(tw_agent *a)
{
    tw_agent_close_idle(((redirect_agent *)a)->inner);
}

static void redirect_free(tw_agent *a)
{
    free(a);
}

static const tw__agent_ops redirect_ops = { redirect_request, redirect_close_idle, redirect_free };

int tw_redirect_agent_new(tw_agent *inner, int max_redirects, tw_agent **out)
{
    if (!inner || !out || max_redirects < 0)
        return TW_EINVAL;
    redirect_agent *ra = calloc(1, sizeof *ra);
    if (!ra)
        return TW_ENOMEM;
    ra->base.ops = &redirect_ops;
    ra->base.reactor = inner->reactor;
    ra->inner = inner;
    ra->max = max_redirects ? max_redirects : DEFAULT_MAX_REDIRECTS;
    *out = &ra->base;
    return 0;
}
