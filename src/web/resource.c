/* resource.c — the resource tree (twisted.web.resource): children, the walk
 * from the root to the resource that renders, and dispatch by method. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

typedef struct child_entry {
    char *name;
    size_t len;
    tw_resource *r;
} child_entry;

/* The put_child table: a small array searched linearly — trees have few
 * children per node; a site with thousands under one node should use
 * get_child. */
struct tw__children {
    size_t n, cap;
    child_entry e[];
};

static const tw_resource_ops container_ops = { 0 };

tw_resource *tw_resource_new(const tw_resource_ops *ops)
{
    if (!ops)
        ops = &container_ops;
    size_t size = ops->size > sizeof(tw_resource) ? ops->size : sizeof(tw_resource);
    tw_resource *r = calloc(1, size);
    if (!r)
        return NULL;
    r->ops = ops;
    r->refs = 1;
    return r;
}

tw_resource *tw_resource_ref(tw_resource *r)
{
    if (r)
        __atomic_fetch_add(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void tw_resource_unref(tw_resource *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (r->ops->destroy)
        r->ops->destroy(r);
    struct tw__children *ch = r->children;
    if (ch) {
        for (size_t i = 0; i < ch->n; i++) {
            free(ch->e[i].name);
            tw_resource_unref(ch->e[i].r);
        }
        free(ch);
    }
    free(r);
}

static child_entry *find(const tw_resource *parent, const char *name, size_t len)
{
    struct tw__children *ch = parent->children;
    if (!ch)
        return NULL;
    for (size_t i = 0; i < ch->n; i++)
        if (ch->e[i].len == len && memcmp(ch->e[i].name, name, len) == 0)
            return &ch->e[i];
    return NULL;
}

int tw_resource_put_child(tw_resource *parent, const char *name, tw_resource *child)
{
    if (!parent || !name || !child || strchr(name, '/')) {
        tw_resource_unref(child);
        return TW_EINVAL;
    }
    size_t len = strlen(name);
    child_entry *e = find(parent, name, len);
    if (e) {
        tw_resource *old = e->r;
        e->r = child;
        tw_resource_unref(old);
        return 0;
    }
    struct tw__children *ch = parent->children;
    if (!ch || ch->n == ch->cap) {
        size_t cap = ch ? ch->cap * 2 : 4;
        struct tw__children *nc = realloc(ch, sizeof *nc + cap * sizeof(child_entry));
        if (!nc) {
            tw_resource_unref(child);
            return TW_ENOMEM;
        }
        if (!ch)
            nc->n = 0;
        nc->cap = cap;
        parent->children = ch = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        tw_resource_unref(child);
        return TW_ENOMEM;
    }
    memcpy(copy, name, len + 1);
    ch->e[ch->n++] = (child_entry){ copy, len, child };
    return 0;
}

tw_resource *tw_resource_child(const tw_resource *parent, const char *name, size_t len)
{
    child_entry *e = find(parent, name, len);
    return e ? e->r : NULL;
}

/* ------------------------------------------------------------ dispatch */

static tw_render_fn pick(const tw_resource_ops *ops, tw_http_method m)
{
    if (ops->render)
        return ops->render;
    switch (m) {
    case TW_HTTP_GET:
        return ops->render_get;
    case TW_HTTP_HEAD:
        return ops->render_head ? ops->render_head : ops->render_get;
    case TW_HTTP_POST:
        return ops->render_post;
    case TW_HTTP_PUT:
        return ops->render_put;
    case TW_HTTP_DELETE:
        return ops->render_delete;
    case TW_HTTP_PATCH:
        return ops->render_patch;
    case TW_HTTP_OPTIONS:
        return ops->render_options;
    default:
        return NULL;
    }
}

static bool renders_anything(const tw_resource_ops *o)
{
    return o->render || o->render_get || o->render_head || o->render_post || o->render_put ||
           o->render_delete || o->render_patch || o->render_options;
}

static int own(tw_request *req, tw_resource *r)
{
    if (req->nowned == req->owned_cap) {
        size_t cap = req->owned_cap ? req->owned_cap * 2 : 8;
        tw_resource **n = tw__arena_alloc(req, cap * sizeof *n);
        if (!n)
            return TW_ENOMEM;
        if (req->nowned)
            memcpy(n, req->owned, req->nowned * sizeof *n);
        req->owned = n;
        req->owned_cap = cap;
    }
    req->owned[req->nowned++] = r;
    return 0;
}

enum { MAX_KEPT_SEGMENTS = 8 /* hops that consume no segment (vhosts in vhosts) */ };

void tw__resource_route(tw_request *req)
{
    tw_resource *r = req->site->root;
    size_t i = 0, kept = 0;
    while (i < req->nseg && !r->ops->is_leaf) {
        tw_http_slice seg = req->seg[i];
        tw_resource *child = tw_resource_child(r, seg.ptr, seg.len);
        if (!child && r->ops->get_child) {
            req->flags &= ~RF_KEEP_SEGMENT;
            child = r->ops->get_child(r, seg.ptr, seg.len, req);
            if (child && own(req, child) < 0) {
                tw_resource_unref(child);
                tw__request_fail(req, 500, "Out of memory.");
                return;
            }
            if (!(req->flags & RF_ACTIVE))
                return; /* get_child answered the request itself */
        }
        if (!child) {
            req->npre = i;
            tw__request_fail(req, 404, "No such child resource.");
            return;
        }
        r = child;
        if (req->flags & RF_KEEP_SEGMENT) {
            req->flags &= ~RF_KEEP_SEGMENT;
            if (++kept > MAX_KEPT_SEGMENTS) {
                req->npre = i;
                tw__request_fail(req, 500, "Too many virtual host hops.");
                return;
            }
            continue; /* the child answers this same segment */
        }
        i++;
    }
    req->npre = i;
    req->resource = r;
    const tw_resource_ops *o = r->ops;
    if (!renders_anything(o)) {
        tw__request_fail(req, 404, "No such child resource.");
        return;
    }
    if (!pick(o, req->h.method_id)) {
        /* The Allow field must survive tw__request_fail's reset: set it on
         * the error itself. */
        char allow[96] = "";
        const char *names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS" };
        tw_render_fn fns[] = { o->render_get,    o->render_get ? o->render_get : o->render_head,
                               o->render_post,   o->render_put,
                               o->render_delete, o->render_patch,
                               o->render_options };
        for (size_t k = 0; k < 7; k++) {
            if (!fns[k])
                continue;
            if (allow[0])
                strcat(allow, ", ");
            strcat(allow, names[k]);
        }
        req->nrh = 0;
        req->flags &= ~(RF_LEN_SET | RF_SERVER_SET | RF_DATE_SET);
        tw_request_set_header(req, "Allow", allow);
        tw_request_respond_error(req, 405,
                                 "Your browser approached me (at the resource) with a method "
                                 "that it does not support.");
    }
}

void tw__request_render(tw_request *req)
{
    tw_resource *r = req->resource;
    tw_render_fn fn = pick(r->ops, req->h.method_id);
    req->flags |= RF_RENDERED;
    int rc = fn(r, req);
    if (rc < 0 && (req->flags & RF_ACTIVE)) {
        tw_log(TW_LOG_ERROR, "web", "render failed: %s", tw_strerror(rc));
        req->flags |= RF_CLOSE;
        tw__request_fail(req, 500, "The resource failed to render the request.");
    }
}
