/* proxy.c — the reverse proxy (Twisted's twisted.web.proxy
 * ReverseProxyResource): a leaf resource that forwards each request to an
 * upstream HTTP server with the twirl HTTP client, streaming both bodies.
 *
 * One exchange (px) ties a server request to a client request:
 *
 *   client ──request body──▶ upload (a tw_body_producer reading the
 *                            request with tw_request_read_body) ──▶ agent
 *   client ◀──response body── down (a tw_producer registered on the
 *                            request, driving tw_response_pause/resume) ◀──
 *
 * Flow control is end to end: the agent pauses the upload when the upstream
 * connection's buffer is full, which pauses reading the client; the
 * client's transport pauses `down` above its high-water mark, which pauses
 * reading the upstream. Nothing here buffers a body.
 *
 * Lifetimes. A px is reference counted: the request (until finished), the
 * agent's deferred callbacks, notify_finish's callbacks, the upload
 * producer (until the agent destroys it) and the response body delivery
 * (until body_end) each hold one, so every callback finds it alive. Each px
 * holds a reference to the resource, so the pool outlives its exchanges;
 * the pool itself is freed from a task (never inside one of its own
 * callbacks), or at once when the reactor is freed first (a cleanup hook). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

#define LOG_DOMAIN "web.proxy"

/* ------------------------------------------------------------ the resource */

typedef struct proxy_res proxy_res;

/* Registered on the reactor's cleanups; outlives the resource if need be
 * (a few bytes until the reactor is freed). */
typedef struct proxy_link {
    proxy_res *p; /* NULL once the resource is gone */
} proxy_link;

struct proxy_res {
    tw_resource base;
    tw_reactor *reactor;
    tw_agent *agent;  /* NULL once the reactor was freed */
    proxy_link *link; /* NULL once the reactor's cleanup ran */
    char *origin;     /* "scheme://authority" as written */
    size_t origin_len;
    char *path; /* url's path ("/" when empty) */
    size_t path_len;
    size_t base_len; /* path without its trailing '/': what a rest is appended to */
    double read_timeout;
    bool keep_host, no_forwarded;
};

typedef struct agent_reaper {
    tw__task task;
    tw_agent *agent;
} agent_reaper;

static void reap_agent(tw_reactor *r, tw__task *t)
{
    (void)r;
    agent_reaper *k = (agent_reaper *)t;
    tw_agent_free(k->agent);
    free(k);
}

static void proxy_destroy(tw_resource *r)
{
    proxy_res *p = (proxy_res *)r;
    if (p->link)
        p->link->p = NULL;
    if (p->agent) {
        /* The last reference may go inside one of the agent's own calls
         * (a producer's destroy): free it from the loop. */
        agent_reaper *k = calloc(1, sizeof *k);
        if (k) {
            k->agent = p->agent;
            tw__task_post(p->reactor, &k->task, reap_agent);
        } else {
            tw_agent_free(p->agent);
        }
        p->agent = NULL;
    }
    free(p->origin);
    free(p->path);
}

/* The reactor is being freed before the resource: close the pool now,
 * while its connections and timers still exist. Exchanges under way end
 * inside this call (their requests get 502 or are aborted). */
static void reactor_gone(tw_reactor *r, void *arg)
{
    (void)r;
    proxy_link *link = arg;
    proxy_res *p = link->p;
    if (p) {
        tw_resource_ref(&p->base); /* the agent's callbacks may drop the last one */
        tw_agent *a = p->agent;
        p->agent = NULL;
        p->link = NULL;
        tw_agent_free(a);
        tw_resource_unref(&p->base);
    }
    free(link);
}

/* ------------------------------------------------------------ exchanges */

typedef struct upload upload;

typedef struct px {
    unsigned refs;
    proxy_res *p;
    tw_request *req;   /* until finished */
    tw_deferred *d;    /* the agent's deferred (our reference) */
    bool d_fired;      /* its callbacks ran */
    tw_response *resp; /* our reference, once the head came */
    upload *up;        /* while the agent holds the producer */
    tw_producer down;  /* registered on the request */
    bool registered;
    bool paused;    /* the client's connection is full */
    bool timed_out; /* the read timeout cut the body */
    tw_timer read_timer;
} px;

struct upload {
    tw_body_producer base;
    px *x;
    tw_body_consumer *consumer;
    tw_deferred *d; /* ours while producing */
    uint64_t got;   /* bytes taken from the client */
    bool reading;   /* tw_request_read_body was called */
    bool ended;     /* the client's body ended */
    bool complete;  /* ... and it was whole */
    bool paused;
};

static void px_free(px *x)
{
    tw_deferred_unref(x->d);
    tw_response_unref(x->resp);
    tw_resource_unref(&x->p->base);
    free(x);
}

static void px_unref_n(px *x, int n)
{
    x->refs -= n;
    if (x->refs == 0)
        px_free(x);
}

static void px_unref(px *x)
{
    px_unref_n(x, 1);
}

static void px_unref_fn(void *arg)
{
    px_unref(arg);
}

/* Ends the client's request, once: status 0 finishes it normally; any
 * other is an error — an error page when nothing was sent yet (with
 * `status`), else the connection is aborted. Returns whether it did, in
 * which case the request's reference is the caller's to drop. */
static bool px_end_request(px *x, int status, const char *detail)
{
    tw_request *req = x->req;
    if (!req)
        return false;
    x->req = NULL;
    tw_timer_cancel(x->read_timer);
    x->read_timer = TW_TIMER_NONE;
    if (x->registered) {
        x->registered = false;
        tw_request_unregister_producer(req);
    }
    if (status == 0)
        tw_request_finish(req);
    else
        tw__request_fail(req, status, detail); /* aborts if the head went out */
    return true;
}

/* px_end_request, dropping the request's reference. */
static void px_finish(px *x, int status, const char *detail)
{
    if (px_end_request(x, status, detail))
        px_unref(x);
}

/* ---- the upload: the client's body as the upstream request's body */

static void up_data(tw_request *req, const char *data, size_t len, void *arg)
{
    upload *u = arg;
    if (!u->d) {
        /* Only between a stop and a rewind: it is paused then, and a
         * delivery already under way has nowhere to go. */
        tw_log(TW_LOG_ERROR, LOG_DOMAIN, "request body bytes after the upload stopped: aborting");
        px_finish(u->x, 502, "The request body could not be forwarded.");
        return;
    }
    u->got += len;
    tw_body_consumer_write(u->consumer, data, len); /* < 0: the exchange ended; its
                                                       failure reaches us elsewhere */
}

static void up_end(tw_request *req, const tw_failure *reason, void *arg)
{
    upload *u = arg;
    u->ended = true;
    u->complete = reason == NULL;
    tw_deferred *d = u->d;
    if (!d)
        return;
    u->d = NULL;
    if (reason)
        tw_deferred_errback(d, tw_failure_wrap(tw_failure_ref((tw_failure *)reason), TW_DOMAIN,
                                               tw_failure_code(reason),
                                               "the client's request body ended early: %s",
                                               tw_failure_message(reason)));
    else
        tw_deferred_callback(d, TW_VALUE_NONE);
    tw_deferred_unref(d);
}

static const tw_body_ops up_body_ops = { .data_received = up_data, .body_end = up_end };

static tw_deferred *up_start(tw_body_producer *p, tw_body_consumer *c)
{
    upload *u = (upload *)p;
    px *x = u->x;
    if (!x->req)
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_ECANCELED, "the client went away"));
    if (u->ended)
        return u->complete ? tw_succeed(TW_VALUE_NONE)
                           : tw_fail(tw_failure_new(TW_DOMAIN, TW_ECONNECTION_LOST,
                                                    "the client's request body ended early"));
    if (!(u->d = tw_deferred_new(NULL, NULL)))
        return NULL;
    u->consumer = c;
    if (!u->reading) {
        int rc = tw_request_read_body(x->req, &up_body_ops, u);
        if (rc < 0) {
            tw_deferred *d = u->d;
            u->d = NULL;
            tw_deferred_unref(d);
            return tw_fail(tw_failure_new(TW_DOMAIN, rc, "reading the client's request body: %s",
                                          tw_strerror(rc)));
        }
        u->reading = true;
    }
    if (u->paused)
        tw_request_pause_body(x->req);
    else
        tw_request_resume_body(x->req); /* a replay after a stop */
    return tw_deferred_ref(u->d);
}

static void up_pause(tw_body_producer *p)
{
    upload *u = (upload *)p;
    u->paused = true;
    if (u->x->req && u->reading)
        tw_request_pause_body(u->x->req);
}

static void up_resume(tw_body_producer *p)
{
    upload *u = (upload *)p;
    u->paused = false;
    if (u->x->req && u->reading && u->d)
        tw_request_resume_body(u->x->req);
}

/* The exchange no longer takes the body (the upstream answered, or its
 * connection went). Reading the client pauses: the request's finish then
 * drops what is left (or closes), or a replay (rewind, start) resumes. */
static void up_stop(tw_body_producer *p)
{
    upload *u = (upload *)p;
    tw_deferred *d = u->d;
    u->d = NULL;
    tw_deferred_unref(d); /* never fired: the agent dropped its side */
    u->paused = true;
    if (u->x->req && u->reading && !u->ended)
        tw_request_pause_body(u->x->req);
}

/* A stale pooled connection is retried once: possible while no byte of the
 * body was taken from the client. */
static int up_rewind(tw_body_producer *p)
{
    upload *u = (upload *)p;
    return u->got == 0 ? 0 : TW_EINVAL;
}

static void up_destroy(tw_body_producer *p)
{
    upload *u = (upload *)p;
    px *x = u->x;
    tw_deferred_unref(u->d);
    x->up = NULL;
    free(u);
    px_unref(x);
}

static const tw_body_producer_ops up_ops = {
    .start_producing = up_start,
    .pause_producing = up_pause,
    .resume_producing = up_resume,
    .stop_producing = up_stop,
    .rewind = up_rewind,
    .destroy = up_destroy,
};

/* ---- down: the upstream's body to the client */

static void read_timed_out(void *arg)
{
    px *x = arg;
    x->read_timer = TW_TIMER_NONE;
    tw_log(TW_LOG_WARN, LOG_DOMAIN, "%s: the upstream was silent for %g s: cutting the response",
           tw_response_url(x->resp), x->p->read_timeout);
    x->timed_out = true;
    tw_response_stop_body(x->resp); /* body_end follows */
}

static void arm_read_timer(px *x)
{
    if (x->p->read_timeout <= 0 || x->paused || !x->req)
        return;
    if (tw_timer_active(x->read_timer))
        tw_timer_reset(x->read_timer, x->p->read_timeout);
    else
        x->read_timer = tw_call_later(x->p->reactor, x->p->read_timeout, read_timed_out, x);
}

static void down_data(tw_response *r, const char *data, size_t len, void *arg)
{
    px *x = arg;
    if (!x->req)
        return;
    if (tw_request_write(x->req, data, len) < 0) {
        tw_response_stop_body(r); /* the client is gone: body_end follows */
        return;
    }
    arm_read_timer(x);
}

static void down_end(tw_response *r, const tw_failure *reason, void *arg)
{
    px *x = arg;
    bool ended;
    if (!reason) {
        ended = px_end_request(x, 0, NULL);
    } else {
        if (x->req && !x->timed_out && !tw_failure_is(reason, TW_DOMAIN, TW_ECANCELED))
            tw_log(TW_LOG_WARN, LOG_DOMAIN, "%s: the response body failed: %s", tw_response_url(r),
                   tw_failure_message(reason));
        ended =
            px_end_request(x, x->timed_out ? 504 : 502, "The upstream server's response failed.");
    }
    px_unref_n(x, ended ? 2 : 1); /* the request's, then the body's */
}

static const tw_response_body_ops down_body_ops = { .data_received = down_data,
                                                    .body_end = down_end };

#define PX_OF_DOWN(p) ((px *)((char *)(p)-offsetof(px, down)))

static void down_pause(tw_producer *p)
{
    px *x = PX_OF_DOWN(p);
    x->paused = true;
    tw_timer_cancel(x->read_timer);
    x->read_timer = TW_TIMER_NONE;
    tw_response_pause_body(x->resp);
}

static void down_resume(tw_producer *p)
{
    px *x = PX_OF_DOWN(p);
    x->paused = false;
    arm_read_timer(x);
    tw_response_resume_body(x->resp);
}

static void down_stop(tw_producer *p)
{
    px *x = PX_OF_DOWN(p);
    x->registered = false; /* the transport let go of it */
    tw_response_stop_body(x->resp);
}

static const tw_producer_ops down_ops = { down_pause, down_resume, down_stop };

/* ---- fields */

static bool is_hop_by_hop(const char *n, size_t len)
{
    switch (len) {
    case 2:
        return tw_http_token_eq(n, len, "te");
    case 7:
        return tw_http_token_eq(n, len, "trailer") || tw_http_token_eq(n, len, "upgrade");
    case 10:
        return tw_http_token_eq(n, len, "connection") || tw_http_token_eq(n, len, "keep-alive");
    case 17:
        return tw_http_token_eq(n, len, "transfer-encoding");
    default:
        return len >= 6 && tw_http_token_eq(n, 6, "proxy-");
    }
}

/* A field some Connection field names (RFC 9110 §7.6.1). */
static bool named_by_connection(const tw_http_header *h, size_t n, tw_http_slice name)
{
    char tok[257];
    if (name.len >= sizeof tok)
        return false;
    bool any = false;
    for (size_t i = 0; i < n && !any; i++)
        any = tw_http_token_eq(h[i].name.ptr, h[i].name.len, "connection");
    if (!any)
        return false;
    memcpy(tok, name.ptr, name.len);
    tok[name.len] = 0;
    for (size_t i = 0; i < n; i++)
        if (tw_http_token_eq(h[i].name.ptr, h[i].name.len, "connection") &&
            tw_http_list_has(h[i].value.ptr, h[i].value.len, tok))
            return true;
    return false;
}

static bool forwardable(const tw_http_header *all, size_t n, const tw_http_header *h)
{
    return !is_hop_by_hop(h->name.ptr, h->name.len) && !named_by_connection(all, n, h->name);
}

/* ---- the head came */

static int copy_response_head(px *x, tw_response *resp)
{
    tw_request *req = x->req;
    int rc = tw_request_set_status(req, tw_response_status(resp));
    size_t n;
    const tw_http_header *h = tw_response_headers(resp, &n);
    for (size_t i = 0; i < n && rc == 0; i++)
        if (forwardable(h, n, &h[i]))
            rc = tw_request_add_header_n(req, h[i].name.ptr, h[i].name.len, h[i].value.ptr,
                                         h[i].value.len);
    return rc;
}

static tw_result got_response(tw_result *in, void *arg)
{
    px *x = arg;
    x->d_fired = true;
    tw_response *resp = in->value.ptr;
    if (!x->req)
        return TW_RESULT_NONE; /* the client left: the chain drops the response */
    int rc = copy_response_head(x, resp);
    if (rc < 0) {
        tw_log(TW_LOG_WARN, LOG_DOMAIN, "%s: unusable response head: %s", tw_response_url(resp),
               tw_strerror(rc));
        px_finish(x, 502, "The upstream server answered with an unusable head.");
        return TW_RESULT_NONE;
    }
    x->resp = tw_response_ref(resp);
    if (tw_response_deliver_body(resp, &down_body_ops, x) < 0) {
        px_finish(x, 502, "The upstream server's response could not be read.");
        return TW_RESULT_NONE;
    }
    x->refs++; /* until down_end */
    /* A body of unknown length may trickle (events, long polls): the head
     * goes now rather than with the first piece, which the server would
     * otherwise hold back hoping to learn the length. */
    if (!tw_response_length(resp, NULL) && tw__request_check_open(x->req) == 0 &&
        tw__request_send_first(x->req, false, NULL, 0) < 0) {
        tw_response_stop_body(resp);
        return TW_RESULT_NONE;
    }
    x->down.ops = &down_ops;
    if (tw_request_register_producer(x->req, &x->down, true) == 0)
        x->registered = true;
    else
        tw_response_stop_body(resp); /* the client is gone */
    arm_read_timer(x);
    return TW_RESULT_NONE;
}

static bool timed_out(const tw_failure *f)
{
    for (; f; f = tw_failure_cause(f))
        if (tw_failure_code(f) == TW_ETIMEDOUT || tw_failure_code(f) == -ETIMEDOUT)
            return true;
    return false;
}

static tw_result got_failure(tw_result *in, void *arg)
{
    px *x = arg;
    x->d_fired = true;
    if (!x->req)
        return TW_RESULT_NONE; /* the failure is ours to drop */
    const tw_failure *f = in->failure;
    bool late = timed_out(f);
    if (!tw_failure_is(f, TW_DOMAIN, TW_ECANCELED))
        tw_log(TW_LOG_WARN, LOG_DOMAIN, "%s", tw_failure_message(f));
    px_finish(x, late ? 504 : 502,
              late ? "The upstream server did not answer in time."
                   : "The upstream server could not be reached or answered badly.");
    return TW_RESULT_NONE;
}

/* ---- the client went away (notify_finish failed) */

static tw_result client_lost(tw_result *in, void *arg)
{
    px *x = arg;
    if (x->d && !x->d_fired)
        tw_deferred_cancel(x->d); /* got_failure finishes the request */
    else if (x->resp)
        tw_response_stop_body(x->resp); /* down_end finishes it */
    return TW_RESULT_NONE;
}

/* ---- render */

/* The path below the resource, as received: skips the prepath's raw
 * segments (the walk split the raw path at '/', so they line up). */
static tw_http_slice rest_of_path(const tw_request *req)
{
    tw_http_slice path = tw_request_path(req);
    const char *p = path.ptr, *end = path.ptr + path.len;
    if (!p || path.len == 0 || p[0] != '/')
        return (tw_http_slice){ "", 0 };
    for (size_t k = tw_request_prepath_count(req); k > 0 && p < end; k--) {
        const char *slash = memchr(p + 1, '/', (size_t)(end - p - 1));
        p = slash ? slash : end;
    }
    return (tw_http_slice){ p, (size_t)(end - p) };
}

/* "METHOD\0URL\0" in one block. */
static char *build_target(proxy_res *p, const tw_request *req, const char **url)
{
    tw_http_slice m = tw_request_method_name(req), rest = rest_of_path(req),
                  q = tw_request_query(req);
    size_t n = m.len + 1 + p->origin_len + p->path_len + rest.len + 1 + q.len + 1;
    char *buf = malloc(n), *s = buf;
    if (!buf)
        return NULL;
    memcpy(s, m.ptr, m.len);
    s += m.len;
    *s++ = 0;
    *url = s;
    memcpy(s, p->origin, p->origin_len);
    s += p->origin_len;
    if (rest.len) {
        memcpy(s, p->path, p->base_len);
        s += p->base_len;
        memcpy(s, rest.ptr, rest.len);
        s += rest.len;
    } else {
        memcpy(s, p->path, p->path_len);
        s += p->path_len;
    }
    if (q.ptr) {
        *s++ = '?';
        memcpy(s, q.ptr, q.len);
        s += q.len;
    }
    *s = 0;
    return buf;
}

typedef struct fields {
    tw_http_header *h;
    size_t n;
    char *xff; /* the X-Forwarded-For value made here */
} fields;

static tw_http_header field(const char *name, const char *value, size_t vlen)
{
    return (tw_http_header){ { name, strlen(name) }, { value, vlen } };
}

/* The fields to send upstream (slices of the request's, plus ours). */
static int build_fields(proxy_res *p, tw_request *req, fields *out)
{
    size_t n;
    const tw_http_header *h = tw_request_headers(req, &n);
    out->h = malloc((n + 4) * sizeof *out->h);
    out->n = 0;
    out->xff = NULL;
    if (!out->h)
        return TW_ENOMEM;
    size_t xff_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *nm = h[i].name.ptr;
        size_t nl = h[i].name.len;
        if (!forwardable(h, n, &h[i]) || tw_http_token_eq(nm, nl, "content-length") ||
            tw_http_token_eq(nm, nl, "expect") ||
            (!p->keep_host && tw_http_token_eq(nm, nl, "host")))
            continue;
        if (!p->no_forwarded) {
            if (tw_http_token_eq(nm, nl, "x-forwarded-for")) {
                xff_len += h[i].value.len + 2;
                continue;
            }
            if (tw_http_token_eq(nm, nl, "x-forwarded-proto") ||
                tw_http_token_eq(nm, nl, "x-forwarded-host"))
                continue;
        }
        out->h[out->n++] = h[i];
    }
    if (p->no_forwarded)
        return 0;
    /* X-Forwarded-For: what the client sent, in order, then its address. */
    char ip[TW_ADDRESS_TEXT_MAX] = "";
    tw_address peer;
    if (tw_request_peer(req, &peer) == 0 &&
        (tw_address_family(&peer) == AF_INET || tw_address_family(&peer) == AF_INET6))
        tw_address_host(&peer, ip, sizeof ip);
    size_t ip_len = strlen(ip);
    if (xff_len || ip_len) {
        char *v = malloc(xff_len + ip_len + 1), *s = v;
        if (!v)
            return TW_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            if (!tw_http_token_eq(h[i].name.ptr, h[i].name.len, "x-forwarded-for") ||
                h[i].value.len == 0)
                continue;
            if (s != v) {
                memcpy(s, ", ", 2);
                s += 2;
            }
            memcpy(s, h[i].value.ptr, h[i].value.len);
            s += h[i].value.len;
        }
        if (ip_len) {
            if (s != v) {
                memcpy(s, ", ", 2);
                s += 2;
            }
            memcpy(s, ip, ip_len);
            s += ip_len;
        }
        out->xff = v;
        if (s != v)
            out->h[out->n++] = field("X-Forwarded-For", v, (size_t)(s - v));
    }
    const char *proto = tw_request_is_secure(req) ? "https" : "http";
    out->h[out->n++] = field("X-Forwarded-Proto", proto, strlen(proto));
    tw_http_slice host = tw_request_host(req);
    if (host.len)
        out->h[out->n++] = field("X-Forwarded-Host", host.ptr, host.len);
    return 0;
}

static int proxy_render(tw_resource *r, tw_request *req)
{
    proxy_res *p = (proxy_res *)r;
    if (tw_request_method(req) == TW_HTTP_CONNECT)
        return tw_request_respond_error(req, 405, "CONNECT is not proxied here.");
    if (!p->agent || tw_site_reactor(tw_request_site(req)) != p->reactor) {
        tw_log(TW_LOG_ERROR, LOG_DOMAIN, "a proxy resource used on another reactor");
        return tw_request_respond_error(req, 500, "The proxy is not available here.");
    }
    px *x = calloc(1, sizeof *x);
    if (!x)
        return TW_ENOMEM;
    x->refs = 2; /* the request's, and this function's */
    x->p = (proxy_res *)tw_resource_ref(r);
    x->req = req;

    uint64_t len = 0;
    tw_http_body kind = tw_request_body_kind(req, &len);
    upload *u = NULL;
    if (kind != TW_HTTP_BODY_NONE) {
        if (!(u = calloc(1, sizeof *u))) {
            px_finish(x, 500, "Out of memory.");
            px_unref(x);
            return 0;
        }
        u->base.ops = &up_ops;
        u->base.length = kind == TW_HTTP_BODY_LENGTH ? len : TW_BODY_UNKNOWN_LENGTH;
        u->x = x;
        x->up = u;
        x->refs++; /* until up_destroy */
    }

    /* Each pair's reference is taken before adding it: on a deferred that
     * already fired, the pair runs (and lets go) inside the add. */
    tw_deferred *fin = tw_request_notify_finish(req);
    x->refs++;
    if (!fin || tw_deferred_add_callbacks_full(fin, NULL, client_lost, x, px_unref_fn) < 0)
        x->refs--;
    tw_deferred_unref(fin);

    const char *url = NULL;
    char *target = x->req ? build_target(p, req, &url) : NULL;
    fields f = { 0 };
    int rc = target ? build_fields(p, req, &f) : TW_ENOMEM;
    if (!x->req || rc < 0) {
        if (u)
            tw_body_producer_free(&u->base);
        px_finish(x, 500, "Out of memory.");
    } else {
        x->d = tw_agent_request(p->agent, target, url, f.h, f.n, u ? &u->base : NULL);
        x->refs++;
        if (!x->d) {
            x->refs--;
            px_finish(x, 500, "Out of memory."); /* u was destroyed */
        } else if (tw_deferred_add_callbacks_full(x->d, got_response, got_failure, x, px_unref_fn) <
                   0) {
            x->refs--;
            tw_deferred_cancel(x->d);
            px_finish(x, 500, "Out of memory.");
        }
    }
    free(target);
    free(f.h);
    free(f.xff);
    px_unref(x);
    return 0;
}

static const tw_resource_ops proxy_ops = {
    .size = sizeof(proxy_res),
    .is_leaf = true,
    .stream_body = true,
    .render = proxy_render,
    .destroy = proxy_destroy,
};

/* ------------------------------------------------------------ making one */

void tw_proxy_options_init(tw_proxy_options *o)
{
    memset(o, 0, sizeof *o);
    tw_agent_options_init(&o->agent);
    o->agent.connect_timeout = 10;
    o->agent.response_timeout = 60;
    o->agent.max_per_host = 0;
    o->agent.max_idle_per_host = 64;
    o->agent.limits.max_body_bytes = UINT64_MAX;
    o->read_timeout = 60;
}

int tw_proxy_resource_new(tw_reactor *r, const char *url, const tw_proxy_options *opts,
                          tw_resource **out)
{
    *out = NULL;
    tw_url u;
    if (!r || !url || tw_url_parse(url, strlen(url), &u) < 0 || u.query.ptr || u.fragment.ptr)
        return TW_EINVAL;
    tw_proxy_options o;
    if (opts)
        o = *opts;
    else
        tw_proxy_options_init(&o);
    if (o.read_timeout < 0)
        return TW_EINVAL;
    proxy_res *p = (proxy_res *)tw_resource_new(&proxy_ops);
    if (!p)
        return TW_ENOMEM;
    p->reactor = r;
    p->read_timeout = o.read_timeout;
    p->keep_host = o.keep_host;
    p->no_forwarded = o.no_forwarded;
    p->origin_len = (size_t)(u.authority.ptr + u.authority.len - url);
    p->path_len = u.path.len ? u.path.len : 1;
    p->origin = malloc(p->origin_len + 1);
    p->path = malloc(p->path_len + 1);
    proxy_link *link = calloc(1, sizeof *link);
    int rc = TW_ENOMEM;
    if (p->origin && p->path && link) {
        memcpy(p->origin, url, p->origin_len);
        p->origin[p->origin_len] = 0;
        memcpy(p->path, u.path.len ? u.path.ptr : "/", p->path_len);
        p->path[p->path_len] = 0;
        p->base_len = p->path_len;
        if (p->path[p->base_len - 1] == '/')
            p->base_len--;
        rc = tw_agent_new(r, &o.agent, &p->agent);
    }
    if (rc == 0 && (rc = tw__reactor_on_free(r, reactor_gone, link)) == 0) {
        link->p = p;
        p->link = link;
        *out = &p->base;
        return 0;
    }
    free(link);
    tw_resource_unref(&p->base); /* frees the agent (through a task) */
    return rc;
}
