/* request.c — the request as received (Twisted's twisted.web.server.Request,
 * its reading half): the request block and its arena, the decoded path,
 * accessors, the body streamed to a resource, and the loss of the
 * connection under an unfinished request. The response writer is
 * response.c.
 *
 * The block is made at a connection's first request and reused for every
 * next one, with its arena (an inline block plus one spare chunk kept), so
 * a keep-alive connection allocates nothing per request. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

enum { ARENA_CHUNK_MIN = 4096, ARENA_SPARE_MAX = 64 * 1024 };

/* ------------------------------------------------------------ arena */

void *tw__arena_alloc(tw_request *req, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (req->a_used + n <= TW__ARENA_INLINE) {
        void *p = req->arena + req->a_used;
        req->a_used += n;
        return p;
    }
    tw__achunk *ch = req->chunks;
    /* chunks[0] is the current one; its used bytes are in front of data. */
    if (ch) {
        size_t *used = (size_t *)ch->data;
        if (*used + n <= ch->cap) {
            void *p = ch->data + 16 + *used;
            *used += n;
            return p;
        }
    }
    size_t cap = n < ARENA_CHUNK_MIN ? ARENA_CHUNK_MIN : n;
    tw__achunk *nc = malloc(sizeof *nc + 16 + cap);
    if (!nc)
        return NULL;
    nc->cap = cap;
    nc->next = ch;
    *(size_t *)nc->data = n;
    req->chunks = nc;
    return nc->data + 16;
}

char *tw__arena_strdup(tw_request *req, const char *s, size_t n)
{
    char *p = tw__arena_alloc(req, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void tw__arena_reset(tw_request *req)
{
    req->a_used = 0;
    /* Keep one small chunk so that a response that needs a little more than
     * the inline arena does not cost a malloc per request. */
    tw__achunk *keep = NULL, *ch = req->chunks;
    while (ch) {
        tw__achunk *next = ch->next;
        if (!keep && ch->cap <= ARENA_SPARE_MAX) {
            keep = ch;
            *(size_t *)ch->data = 0;
            ch->next = NULL;
        } else {
            free(ch);
        }
        ch = next;
    }
    req->chunks = keep;
}

/* ------------------------------------------------------------ lifetime */

tw_request *tw__request_alloc(tw_site *s)
{
    size_t n = s->o.limits.max_headers;
    tw_request *req = calloc(1, sizeof *req + n * sizeof(tw_http_header));
    if (!req)
        return NULL;
    req->site = s;
    req->max_headers = n;
    req->file_fd = -1;
    return req;
}

void tw__request_free(tw_request *req)
{
    if (!req)
        return;
    tw__arena_reset(req);
    free(req->chunks);
    free(req->body_buf);
    free(req->file_buf);
    tw__file_release(req);
    if (!req->site->reactor_gone)
        tw__task_cancel(req->site->reactor, &req->file_task);
    free(req);
}

static void site_detached_done(tw_site *s)
{
    s->detached--;
    if (s->dying && s->conns == 0 && s->detached == 0)
        tw_site_free(s);
}

/* A detached request (its connection lost) goes once it is finished and
 * nothing holds it: a callback running, or a file piece the transport has. */
void tw__request_maybe_free(tw_request *req)
{
    if (req->conn || (req->flags & RF_ACTIVE) || req->hold || req->file_buf_busy)
        return;
    tw_site *s = req->site;
    tw__request_free(req);
    site_detached_done(s);
}

void tw__request_drop_owned(tw_request *req)
{
    for (size_t i = 0; i < req->nowned; i++)
        tw_resource_unref(req->owned[i]);
    req->nowned = 0;
    req->owned = NULL;
    req->owned_cap = 0;
}

/* ------------------------------------------------------------ begin */

static int split_path(tw_request *req)
{
    req->nseg = req->npre = 0;
    req->seg = NULL;
    if (req->h.target_form == TW_HTTP_AUTHORITY_FORM || req->h.target_form == TW_HTTP_ASTERISK_FORM)
        return 0;
    const char *p = req->h.path.ptr;
    size_t n = req->h.path.len;
    if (n == 0 || p[0] != '/')
        return 0;
    size_t count = 1;
    for (size_t i = 1; i < n; i++)
        count += p[i] == '/';
    req->seg = tw__arena_alloc(req, count * sizeof(tw_http_slice));
    if (!req->seg)
        return TW_ENOMEM;
    const char *cur = p + 1, *end = p + n;
    for (size_t k = 0; k < count; k++) {
        const char *slash = memchr(cur, '/', (size_t)(end - cur));
        const char *e = slash ? slash : end;
        size_t len = (size_t)(e - cur);
        if (memchr(cur, '%', len)) {
            char *out = tw__arena_alloc(req, len ? len : 1);
            size_t olen;
            if (!out)
                return TW_ENOMEM;
            int rc = tw_http_path_decode(cur, len, out, len, &olen, NULL);
            if (rc < 0)
                return rc;
            req->seg[k] = (tw_http_slice){ out, olen };
        } else {
            req->seg[k] = (tw_http_slice){ cur, len };
        }
        cur = e + 1;
    }
    req->nseg = count;
    return 0;
}

void tw__request_begin(tw_request *req, tw__hconn *c)
{
    tw__arena_reset(req);
    tw_site *s = c->site;
    req->conn = c;
    req->site = s;
    req->resource = NULL;
    req->owned = NULL;
    req->nowned = req->owned_cap = 0;
    req->body_mode = BM_NONE;
    req->body = (tw_http_slice){ NULL, 0 };
    req->bops = NULL;
    req->barg = NULL;
    req->flags = RF_ACTIVE;
    req->status = 200;
    req->content_length = 0;
    req->sent = 0;
    req->rh = NULL;
    req->nrh = req->rh_cap = 0;
    req->held = NULL;
    req->held_len = 0;
    req->finish_d = NULL;
    req->producer = NULL;
    req->file_fd = -1;
    c->nrequests++;
    if (req->h.method_id == TW_HTTP_HEAD)
        req->flags |= RF_IS_HEAD | RF_NO_BODY;
    if (!req->h.keep_alive || s->dying || (s->o.max_requests && c->nrequests >= s->o.max_requests))
        req->flags |= RF_CLOSE;
    int rc = split_path(req);
    if (rc < 0) {
        req->flags |= RF_BODY_DONE; /* not read: the connection closes */
        req->flags |= RF_CLOSE;
        tw__request_fail(req, rc == TW_ENOMEM ? 500 : 400,
                         rc == TW_ENOMEM ? "Out of memory." : "Malformed path.");
    }
}

/* ------------------------------------------------------------ persist */

static void rebase(tw_http_slice *s, const char *old, size_t len, const char *nu)
{
    if (s->ptr && s->ptr >= old && s->ptr <= old + len)
        s->ptr = nu + (s->ptr - old);
}

int tw__request_persist(tw_request *req)
{
    req->flags |= RF_PERSISTED;
    const char *old = req->head_ptr;
    size_t len = req->head_len;
    if (old && len) {
        char *nu = tw__arena_alloc(req, len);
        if (!nu)
            return TW_ENOMEM;
        memcpy(nu, old, len);
        tw_http_request *h = &req->h;
        rebase(&h->method, old, len, nu);
        rebase(&h->target, old, len, nu);
        rebase(&h->path, old, len, nu);
        rebase(&h->query, old, len, nu);
        rebase(&h->authority, old, len, nu);
        rebase(&h->host, old, len, nu);
        for (size_t i = 0; i < h->num_headers; i++) {
            rebase(&h->headers[i].name, old, len, nu);
            rebase(&h->headers[i].value, old, len, nu);
        }
        for (size_t i = 0; i < req->nseg; i++)
            rebase(&req->seg[i], old, len, nu);
        req->head_ptr = nu;
    }
    if (req->body.len && req->body.ptr != req->body_buf) {
        char *b = malloc(req->body.len);
        if (!b)
            return TW_ENOMEM;
        memcpy(b, req->body.ptr, req->body.len);
        free(req->body_buf);
        req->body_buf = b;
        req->body_cap = req->body.len;
        req->body.ptr = b;
    }
    return 0;
}

/* ------------------------------------------------------------ accessors */

tw_http_method tw_request_method(const tw_request *req)
{
    return req->h.method_id;
}

tw_http_slice tw_request_method_name(const tw_request *req)
{
    return req->h.method;
}

tw_http_slice tw_request_uri(const tw_request *req)
{
    return req->h.target;
}

tw_http_slice tw_request_path(const tw_request *req)
{
    return req->h.path;
}

tw_http_slice tw_request_query(const tw_request *req)
{
    return req->h.query;
}

int tw_request_version_minor(const tw_request *req)
{
    return req->h.version_minor;
}

int tw_request_arg(const tw_request *req, const char *name, char *out, size_t cap, size_t *len)
{
    if (!req->h.query.ptr)
        return 0;
    const char *cur = req->h.query.ptr, *end = cur + req->h.query.len;
    size_t nlen = strlen(name);
    tw_http_slice k, v;
    while (tw_http_query_next(&cur, end, &k, &v)) {
        char kb[256];
        size_t klen;
        int rc = tw_http_query_decode(k.ptr, k.len, kb, sizeof kb, &klen);
        if (rc < 0 || klen != nlen || memcmp(kb, name, nlen) != 0)
            continue;
        if (!v.ptr) {
            *len = 0;
            return 1;
        }
        rc = tw_http_query_decode(v.ptr, v.len, out, cap, len);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

bool tw_request_header(const tw_request *req, const char *name, tw_http_slice *value)
{
    const tw_http_header *h = tw_http_header_find(req->h.headers, req->h.num_headers, name);
    if (!h)
        return false;
    if (value)
        *value = h->value;
    return true;
}

const tw_http_header *tw_request_headers(const tw_request *req, size_t *n)
{
    *n = req->h.num_headers;
    return req->h.headers;
}

tw_http_slice tw_request_host(const tw_request *req)
{
    if (req->h.authority.ptr)
        return req->h.authority;
    return req->h.host;
}

size_t tw_request_prepath_count(const tw_request *req)
{
    return req->npre;
}

tw_http_slice tw_request_prepath(const tw_request *req, size_t i)
{
    return i < req->npre ? req->seg[i] : (tw_http_slice){ NULL, 0 };
}

size_t tw_request_postpath_count(const tw_request *req)
{
    return req->nseg - req->npre;
}

tw_http_slice tw_request_postpath(const tw_request *req, size_t i)
{
    return i < req->nseg - req->npre ? req->seg[req->npre + i] : (tw_http_slice){ NULL, 0 };
}

tw_transport *tw__request_transport(const tw_request *req)
{
    return req->conn ? req->conn->base.transport : NULL;
}

int tw_request_peer(const tw_request *req, tw_address *out)
{
    tw_transport *t = tw__request_transport(req);
    return t ? tw_transport_get_peer(t, out) : TW_ECLOSED;
}

int tw_request_local(const tw_request *req, tw_address *out)
{
    tw_transport *t = tw__request_transport(req);
    return t ? tw_transport_get_host(t, out) : TW_ECLOSED;
}

bool tw_request_is_secure(const tw_request *req)
{
    tw_transport *t = tw__request_transport(req);
    return t && t->ops->kind && strcmp(t->ops->kind, "tls") == 0;
}

tw_site *tw_request_site(const tw_request *req)
{
    return req->site;
}

tw_transport *tw_request_transport(const tw_request *req)
{
    return tw__request_transport(req);
}

tw_http_body tw_request_body_kind(const tw_request *req, uint64_t *length)
{
    if (length)
        *length = req->h.content_length;
    return req->h.body;
}

tw_http_slice tw_request_body(const tw_request *req)
{
    return req->body;
}

bool tw_request_head_sent(const tw_request *req)
{
    return req->flags & RF_HEAD_SENT;
}

bool tw_request_is_head(const tw_request *req)
{
    return req->flags & RF_IS_HEAD;
}

uint64_t tw_request_bytes_sent(const tw_request *req)
{
    return req->sent;
}

int tw_request_status(const tw_request *req)
{
    return req->status;
}

/* ------------------------------------------------------------ body */

void tw__request_body_data(tw_request *req, const char *data, size_t len)
{
    if (req->bops && req->bops->data_received)
        req->bops->data_received(req, data, len, req->barg);
}

void tw__request_body_end(tw_request *req, const tw_failure *reason)
{
    if (!(req->flags & RF_BODY_READING) || (req->flags & RF_BODY_END_SENT))
        return;
    req->flags |= RF_BODY_END_SENT;
    if (req->bops && req->bops->body_end)
        req->bops->body_end(req, reason, req->barg);
}

int tw_request_read_body(tw_request *req, const tw_body_ops *ops, void *arg)
{
    if (!(req->flags & RF_ACTIVE) || !ops)
        return TW_EINVAL;
    if ((req->flags & RF_BODY_READING) || req->body_mode == BM_COLLECT)
        return TW_EBUSY;
    if (!req->conn)
        return TW_ECLOSED;
    req->bops = ops;
    req->barg = arg;
    req->flags |= RF_BODY_READING;
    if (req->h.expect_continue && !(req->flags & (RF_CONTINUE_SENT | RF_BODY_DONE)) &&
        !(req->flags & RF_HEAD_SENT)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        req->flags |= RF_CONTINUE_SENT;
        tw__conn_write_raw(req->conn, cont, sizeof cont - 1);
    }
    tw__conn_body_flow(req->conn);
    return 0;
}

void tw_request_pause_body(tw_request *req)
{
    if (!(req->flags & RF_ACTIVE) || (req->flags & RF_BODY_PAUSED))
        return;
    req->flags |= RF_BODY_PAUSED;
    if (req->conn)
        tw__conn_body_flow(req->conn);
}

void tw_request_resume_body(tw_request *req)
{
    if (!(req->flags & RF_ACTIVE) || !(req->flags & RF_BODY_PAUSED))
        return;
    req->flags &= ~RF_BODY_PAUSED;
    if (req->conn)
        tw__conn_body_flow(req->conn);
}

static tw_request *of_body_producer(tw_producer *p)
{
    return (tw_request *)((char *)p - offsetof(tw_request, body_producer));
}

static void body_pause(tw_producer *p)
{
    tw_request_pause_body(of_body_producer(p));
}

static void body_resume(tw_producer *p)
{
    tw_request_resume_body(of_body_producer(p));
}

static void body_stop(tw_producer *p)
{
    tw_request *req = of_body_producer(p);
    if (!(req->flags & RF_ACTIVE) || (req->flags & RF_BODY_STOPPED))
        return;
    req->flags |= RF_BODY_STOPPED;
    req->flags &= ~RF_BODY_PAUSED;
    if (req->conn)
        tw__conn_body_flow(req->conn);
}

static const tw_producer_ops body_producer_ops = {
    .pause_producing = body_pause,
    .resume_producing = body_resume,
    .stop_producing = body_stop,
};

tw_producer *tw_request_body_producer(tw_request *req)
{
    req->body_producer.ops = &body_producer_ops;
    return &req->body_producer;
}

/* ------------------------------------------------------------ connection lost */

void tw__request_conn_lost(tw_request *req, const tw_failure *reason)
{
    tw_site *s = req->site;
    req->conn = NULL;
    req->producer = NULL; /* the transport stopped it */
    if (!(req->flags & RF_RENDERED)) {
        /* Nobody saw it: the body was still being collected. */
        req->flags &= ~RF_ACTIVE;
        tw__request_drop_owned(req);
        tw__request_free(req);
        return;
    }
    s->detached++;
    /* Held through the callbacks: one of them may finish it. */
    req->hold++;
    tw_failure *f = tw_failure_wrap(reason ? tw_failure_ref((tw_failure *)reason) : NULL, TW_DOMAIN,
                                    TW_ECONNECTION_LOST,
                                    "the connection was lost before the response was finished");
    tw__request_body_end(req, f);
    if (req->flags & RF_ACTIVE)
        tw__request_fire_finish(req, f);
    tw_failure_unref(f);
    req->hold--;
    tw__request_maybe_free(req);
}
