/* client_pool.c — the connection pool (Twisted's HTTPConnectionPool):
 * connections by (scheme, host, port), reused after a response was read to
 * its end, at most max_per_host of them (requests beyond wait in a FIFO
 * queue), max_idle_per_host kept idle for idle_timeout seconds.
 *
 * Connection attempts belong to the host, not to one request: a new
 * connection goes to the first request in the queue, a failed attempt
 * fails the first request in the queue, and a request that leaves the
 * queue (cancelled, timed out) cancels an attempt no longer needed. Hosts
 * are a list searched linearly (O(hosts); fine for the tens of origins a
 * client talks to) and freed, with their endpoint, once nothing uses them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/log.h"
#include "web/client_internal.h"

/* tls_endpoint.c: makes sure the "tls" client type is registered (with the
 * static library its constructor is linked in only when referenced). */
void tw__tls_endpoints_register(void);

static void host_connect(tw__chost *h);

static void sweep_task(tw_reactor *r, tw__task *t);

/* ------------------------------------------------------------ the factory */

static void factory_stopped(tw_factory *f)
{
    tw__cpool_sweep_soon((tw__cpool *)f);
}

static const tw_factory_ops pool_factory_ops = { .stop_factory = factory_stopped };

int tw__cpool_new(tw_reactor *r, const tw_agent_options *o, tw__cpool **out)
{
    tw__cpool *p = calloc(1, sizeof *p);
    if (!p)
        return TW_ENOMEM;
    p->reactor = r;
    p->opts = *o;
    if ((o->trust_roots && !(p->trust_roots = strdup(o->trust_roots))) ||
        (o->user_agent && !(p->user_agent = strdup(o->user_agent)))) {
        free(p->trust_roots);
        free(p);
        return TW_ENOMEM;
    }
    p->opts.trust_roots = p->trust_roots;
    p->opts.user_agent = p->user_agent;
    p->factory.ops = &pool_factory_ops;
    p->factory.protocol = &tw__cconn_protocol;
    p->factory.user_data = p;
    tw__tls_endpoints_register();
    *out = p;
    return 0;
}

void tw__cpool_sweep_soon(tw__cpool *p)
{
    tw__task_post(p->reactor, &p->sweep, sweep_task);
}

int tw__chost_origin(const tw__chost *h, char *buf, size_t size)
{
    bool v6 = strchr(h->name, ':') != NULL;
    return snprintf(buf, size, "%s://%s%s%s:%u", h->https ? "https" : "http", v6 ? "[" : "",
                    h->name, v6 ? "]" : "", h->port);
}

/* ------------------------------------------------------------ hosts */

static tw__chost *host_find(tw__cpool *p, bool https, const char *name, uint16_t port, bool make)
{
    for (tw__chost *h = p->hosts; h; h = h->next)
        if (h->https == https && h->port == port && strcmp(h->name, name) == 0)
            return h;
    if (!make)
        return NULL;
    tw__chost *h = calloc(1, sizeof *h);
    if (!h || !(h->name = strdup(name))) {
        free(h);
        return NULL;
    }
    h->pool = p;
    h->https = https;
    h->port = port;
    h->next = p->hosts;
    p->hosts = h;
    return h;
}

static bool host_unused(const tw__chost *h)
{
    return h->nconns == 0 && h->nattempts == 0 && h->nwaiting == 0;
}

static void host_free(tw__chost *h)
{
    tw_client_endpoint_free(h->ep);
    free(h->name);
    free(h);
}

/* Endpoint strings escape ':', '=' and '\'. */
static size_t put_escaped(char *out, size_t cap, size_t at, const char *s)
{
    for (; *s; s++) {
        if (strchr(":=\\", *s) && at + 1 < cap)
            out[at++] = '\\';
        if (at + 1 < cap)
            out[at++] = *s;
    }
    if (at < cap)
        out[at] = 0;
    return at;
}

static int host_endpoint(tw__chost *h)
{
    tw__cpool *p = h->pool;
    if (h->ep)
        return 0;
    if (h->ep_error)
        return h->ep_error;
    int rc;
    if (p->opts.endpoint_for) {
        rc = p->opts.endpoint_for(p->reactor, h->https, h->name, h->port, p->opts.endpoint_arg,
                                  &h->ep);
    } else {
        size_t cap = 64 + 2 * strlen(h->name) + (p->trust_roots ? 2 * strlen(p->trust_roots) : 0);
        char *desc = malloc(cap);
        if (!desc)
            return TW_ENOMEM;
        size_t at = (size_t)snprintf(desc, cap, "%s:host=", h->https ? "tls" : "tcp");
        at = put_escaped(desc, cap, at, h->name);
        at += (size_t)snprintf(desc + at, cap - at, ":port=%u", h->port);
        if (p->opts.connect_timeout > 0)
            at += (size_t)snprintf(desc + at, cap - at, ":timeout=%.3f",
                                   p->opts.connect_timeout < 1e6 ? p->opts.connect_timeout : 1e6);
        if (h->https && p->trust_roots) {
            at += (size_t)snprintf(desc + at, cap - at, ":trustRoots=");
            put_escaped(desc, cap, at, p->trust_roots);
        }
        char err[TW_ENDPOINT_ERR_MAX];
        rc = tw_client_endpoint_from_string(p->reactor, desc, &h->ep, err, sizeof err);
        if (rc < 0)
            tw_log(TW_LOG_WARN, "http.client", "no endpoint for %s: %s", desc, err);
        free(desc);
    }
    if (rc < 0) {
        h->ep = NULL;
        if (rc != TW_ENOMEM)
            h->ep_error = rc;
    }
    return rc;
}

/* ------------------------------------------------------------ the queue */

static void enqueue(tw__chost *h, tw__creq *req)
{
    req->qnext = NULL;
    req->qprev = h->qtail;
    if (h->qtail)
        h->qtail->qnext = req;
    else
        h->qhead = req;
    h->qtail = req;
    h->nwaiting++;
    req->queued = true;
}

static void dequeue(tw__creq *req)
{
    tw__chost *h = req->host;
    if (!req->queued)
        return;
    if (req->qprev)
        req->qprev->qnext = req->qnext;
    else
        h->qhead = req->qnext;
    if (req->qnext)
        req->qnext->qprev = req->qprev;
    else
        h->qtail = req->qprev;
    req->qnext = req->qprev = NULL;
    req->queued = false;
    h->nwaiting--;
    tw_timer_cancel(req->connect_timer);
    req->connect_timer = TW_TIMER_NONE;
}

/* The first waiting request, off the queue (the queue's reference is now
 * the caller's). */
static tw__creq *pop_waiter(tw__chost *h)
{
    tw__creq *req = h->qhead;
    if (req)
        dequeue(req);
    return req;
}

static void fail_waiter(tw__creq *req, tw_failure *f)
{
    tw__creq_fire(req, tw_err(f));
    tw__creq_unref(req);
}

void tw__cpool_unqueue(tw__creq *req)
{
    tw__chost *h = req->host;
    if (!req->queued)
        return;
    dequeue(req);
    /* An attempt started for it is no longer needed. */
    if (h->nattempts > h->nwaiting) {
        for (tw__cattempt *a = h->attempts; a; a = a->next) {
            if (a->cancelled)
                continue;
            a->cancelled = true;
            tw_deferred *d = tw_deferred_ref(a->d);
            tw_deferred_cancel(d);
            tw_deferred_unref(d);
            break;
        }
    }
    tw__cpool_sweep_soon(h->pool);
}

static void connect_timed_out(void *arg)
{
    tw__creq *req = arg;
    req->connect_timer = TW_TIMER_NONE;
    if (!req->queued)
        return;
    char o[300];
    tw__chost_origin(req->host, o, sizeof o);
    tw__cpool_unqueue(req);
    fail_waiter(req, tw_failure_new(TW_DOMAIN, TW_ETIMEDOUT,
                                    "connecting to %s for %s %s timed out after %g s", o,
                                    req->method, req->url, req->pool->opts.connect_timeout));
}

/* ------------------------------------------------------------ connections */

static void idle_remove(tw__cconn *c)
{
    tw__chost *h = c->host;
    if (!c->in_idle)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->idle_tail = c->prev;
    c->next = c->prev = NULL;
    c->in_idle = false;
    h->nidle--;
}

static void attach(tw__chost *h, tw__cconn *c)
{
    c->host = h;
    c->aprev = NULL;
    c->anext = h->all;
    if (h->all)
        h->all->aprev = c;
    h->all = c;
    h->nconns++;
}

void tw__cpool_detach(tw__cconn *c)
{
    tw__chost *h = c->host;
    if (!h)
        return;
    idle_remove(c);
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        h->all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->anext = c->aprev = NULL;
    c->host = NULL;
    h->nconns--;
    /* A slot is free: the sweep starts attempts for waiting requests. */
    tw__cpool_sweep_soon(h->pool);
}

/* Gives c to the first waiting request, or keeps it idle. */
static void dispatch(tw__chost *h, tw__cconn *c)
{
    tw__cpool *p = h->pool;
    tw__creq *req = pop_waiter(h);
    if (req) {
        tw__cconn_start(c, req);
        return;
    }
    if (p->opts.max_idle_per_host == 0 || p->opts.idle_timeout <= 0 || p->opts.no_persistent) {
        tw__cconn_close(c, false);
        return;
    }
    c->prev = NULL;
    c->next = h->idle;
    if (h->idle)
        h->idle->prev = c;
    else
        h->idle_tail = c;
    h->idle = c;
    c->in_idle = true;
    h->nidle++;
    tw__cconn_idle(c);
    while (h->nidle > p->opts.max_idle_per_host)
        tw__cconn_close(h->idle_tail, false); /* the least recently used */
}

void tw__cpool_release(tw__cconn *c)
{
    tw__chost *h = c->host;
    if (!h || c->pool->closed) {
        tw__cconn_close(c, false);
        return;
    }
    dispatch(h, c);
}

/* ------------------------------------------------------------ attempts */

static void attempt_unlink(tw__cattempt *a)
{
    tw__chost *h = a->host;
    if (!h)
        return;
    if (a->prev)
        a->prev->next = a->next;
    else
        h->attempts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->next = a->prev = NULL;
    a->host = NULL;
    h->nattempts--;
    h->pool->attempts--;
    tw_deferred *d = a->d;
    a->d = NULL;
    tw_deferred_unref(d);
    tw__cpool_sweep_soon(h->pool);
}

static tw_result attempt_ok(tw_result *in, void *arg)
{
    tw__cattempt *a = arg;
    tw__chost *h = a->host;
    attempt_unlink(a);
    tw__cconn *c = tw__cconn_of(in->value.ptr);
    if (!h)
        return TW_RESULT_NONE;
    if (!c) {
        /* The connection state could not be allocated (it was aborted). */
        tw__creq *req = pop_waiter(h);
        if (req)
            fail_waiter(req, tw_failure_from_code(TW_ENOMEM));
        return TW_RESULT_NONE;
    }
    attach(h, c);
    if (h->pool->closed)
        tw__cconn_close(c, true);
    else
        dispatch(h, c);
    return TW_RESULT_NONE;
}

static tw_result attempt_failed(tw_result *in, void *arg)
{
    tw__cattempt *a = arg;
    tw__chost *h = a->host;
    bool cancelled = a->cancelled;
    attempt_unlink(a);
    if (!h || cancelled)
        return TW_RESULT_NONE;
    tw__creq *req = pop_waiter(h);
    if (!req)
        return TW_RESULT_NONE;
    tw_failure *cause = in->failure;
    in->failure = NULL;
    char o[300];
    tw__chost_origin(h, o, sizeof o);
    bool ours = tw_failure_is(cause, TW_DOMAIN, TW_ANY_CODE);
    fail_waiter(req, tw_failure_wrap(cause, TW_DOMAIN,
                                     ours ? tw_failure_code(cause) : TW_ECONNECTION_LOST,
                                     "cannot connect to %s for %s %s: %s", o, req->method, req->url,
                                     tw_failure_message(cause)));
    return TW_RESULT_NONE;
}

static void attempt_free(void *arg)
{
    tw__cattempt *a = arg;
    attempt_unlink(a);
    free(a);
}

static void fail_all_waiters(tw__chost *h, int code, const char *why)
{
    char o[300];
    tw__chost_origin(h, o, sizeof o);
    tw__creq *req;
    while ((req = pop_waiter(h)))
        fail_waiter(req, tw_failure_new(TW_DOMAIN, code, "cannot connect to %s for %s %s: %s", o,
                                        req->method, req->url, why));
}

static void start_attempt(tw__chost *h)
{
    tw__cpool *p = h->pool;
    tw__cattempt *a = calloc(1, sizeof *a);
    if (!a) {
        tw__creq *req = pop_waiter(h);
        if (req)
            fail_waiter(req, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    a->host = h;
    a->next = h->attempts;
    if (h->attempts)
        h->attempts->prev = a;
    h->attempts = a;
    h->nattempts++;
    p->attempts++;
    tw_deferred *d = tw_endpoint_connect(h->ep, &p->factory);
    if (!d) {
        attempt_unlink(a);
        free(a);
        tw__creq *req = pop_waiter(h);
        if (req)
            fail_waiter(req, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    a->d = d; /* ours until the attempt is over */
    if (tw_deferred_add_callbacks_full(d, attempt_ok, attempt_failed, a, attempt_free) < 0) {
        a->cancelled = true;
        tw_deferred_cancel(d);
        attempt_unlink(a);
        free(a);
        tw__creq *req = pop_waiter(h);
        if (req)
            fail_waiter(req, tw_failure_from_code(TW_ENOMEM));
    }
}

/* Starts attempts while requests wait without one and the host has room. */
static void host_connect(tw__chost *h)
{
    tw__cpool *p = h->pool;
    if (h->connecting)
        return; /* the loop below, further up the stack, looks again */
    h->connecting = true;
    size_t max = p->opts.max_per_host;
    while (!p->closed && h->nwaiting > h->nattempts &&
           (max == 0 || h->nconns + h->nattempts < max)) {
        int rc = host_endpoint(h);
        if (rc < 0) {
            fail_all_waiters(h, rc == TW_ESYNTAX ? TW_EINVAL : rc,
                             rc == TW_ESYNTAX ? "no endpoint for this host" : tw_strerror(rc));
            break;
        }
        start_attempt(h);
    }
    h->connecting = false;
}

/* ------------------------------------------------------------ requests */

void tw__cpool_submit(tw__cpool *p, tw__creq *req)
{
    if (p->closed) {
        fail_waiter(req, tw_failure_new(TW_DOMAIN, TW_ECANCELED, "%s %s: the agent was freed",
                                        req->method, req->url));
        return;
    }
    tw__chost *h = host_find(p, req->https, req->host_name, req->port, true);
    if (!h) {
        fail_waiter(req, tw_failure_from_code(TW_ENOMEM));
        return;
    }
    req->host = h;
    if (!req->fresh) {
        tw__cconn *c;
        while ((c = h->idle)) {
            idle_remove(c);
            if (c->transport && !c->closing && !c->gone && tw_transport_connected(c->transport)) {
                tw__cconn_start(c, req);
                return;
            }
            tw__cconn_close(c, true);
        }
    }
    enqueue(h, req);
    if (p->opts.connect_timeout > 0)
        req->connect_timer =
            tw_call_later(p->reactor, p->opts.connect_timeout, connect_timed_out, req);
    host_connect(h);
}

/* ------------------------------------------------------------ closing */

void tw__cpool_close_idle(tw__cpool *p)
{
    for (tw__chost *h = p->hosts; h; h = h->next)
        while (h->idle)
            tw__cconn_close(h->idle, false);
}

void tw__cpool_close(tw__cpool *p)
{
    p->closed = true;
    /* User code runs below (failing requests): hosts stay until the sweep. */
    for (tw__chost *h = p->hosts; h; h = h->next) {
        char o[300];
        tw__chost_origin(h, o, sizeof o);
        tw__creq *req;
        while ((req = pop_waiter(h)))
            fail_waiter(req, tw_failure_new(TW_DOMAIN, TW_ECANCELED, "%s %s: the agent was freed",
                                            req->method, req->url));
        for (tw__cattempt *a = h->attempts; a; a = h->attempts) {
            a->cancelled = true;
            tw_deferred *d = tw_deferred_ref(a->d);
            tw_deferred_cancel(d); /* unlinks a */
            tw_deferred_unref(d);
            if (h->attempts == a)
                attempt_unlink(a); /* its callbacks are still queued */
        }
        while (h->all)
            tw__cconn_close_for_shutdown(h->all);
    }
    tw__cpool_sweep_soon(p);
}

static void pool_free(tw__cpool *p)
{
    tw__task_cancel(p->reactor, &p->sweep);
    free(p->trust_roots);
    free(p->user_agent);
    free(p);
}

static void sweep_task(tw_reactor *r, tw__task *t)
{
    tw__cpool *p = (tw__cpool *)((char *)t - offsetof(tw__cpool, sweep));
    if (!p->closed)
        for (tw__chost *h = p->hosts; h; h = h->next)
            host_connect(h);
    for (tw__chost **hp = &p->hosts; *hp;) {
        tw__chost *h = *hp;
        if (host_unused(h)) {
            *hp = h->next;
            host_free(h);
        } else {
            hp = &h->next;
        }
    }
    if (p->closed && !p->hosts && p->conns == 0 && p->attempts == 0 && p->factory.num_ports == 0)
        pool_free(p);
}
