/* vhost.c — name-based virtual hosts (Twisted's twisted.web.vhost
 * NameVirtualHost): the host the client asked for picks the tree that
 * answers.
 *
 * The vhost is not a leaf: for the first path segment its get_child hook
 * returns the chosen host's resource and asks the walk (resource.c) not to
 * consume the segment, so that resource answers the very path the vhost
 * was asked for — a static directory (a leaf) sees the whole path, a
 * container looks the segment up among its own children. The map is a
 * small array searched linearly: sites have few names; the lookup is one
 * case-insensitive comparison per name. */
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

enum { MAX_HOST_NAME = 255 };

typedef struct vhost_entry {
    char *name; /* lower case */
    size_t len;
    tw_resource *r;
} vhost_entry;

typedef struct vhost_res {
    tw_resource base;
    tw_resource *def; /* default, or NULL */
    vhost_entry *e;
    size_t n, cap;
} vhost_res;

static const tw_resource_ops vhost_ops;

static vhost_res *as_vhost(tw_resource *r)
{
    return r && r->ops == &vhost_ops ? (vhost_res *)r : NULL;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* The name part of a Host value: without the port and one trailing dot.
 * "[v6]:port" keeps the brackets. */
static tw_http_slice host_name(tw_http_slice h)
{
    const char *p = h.ptr;
    size_t n = h.len;
    if (n == 0)
        return (tw_http_slice){ "", 0 };
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        n = close ? (size_t)(close - p) + 1 : n;
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon)
            n = (size_t)(colon - p);
        if (n > 1 && p[n - 1] == '.')
            n--;
    }
    return (tw_http_slice){ p, n };
}

static vhost_entry *find(vhost_res *v, const char *name, size_t len)
{
    for (size_t i = 0; i < v->n; i++) {
        vhost_entry *e = &v->e[i];
        if (e->len != len)
            continue;
        size_t k = 0;
        while (k < len && e->name[k] == (char)lower((unsigned char)name[k]))
            k++;
        if (k == len)
            return e;
    }
    return NULL;
}

static tw_resource *pick_host(vhost_res *v, const tw_request *req)
{
    tw_http_slice h = host_name(tw_request_host(req));
    vhost_entry *e = h.len ? find(v, h.ptr, h.len) : NULL;
    return e ? e->r : v->def;
}

static void no_such_host(tw_request *req)
{
    tw_request_respond_error(req, 404, "No such host is served here.");
}

static tw_resource *vhost_child(tw_resource *r, const char *name, size_t len, tw_request *req)
{
    (void)name;
    (void)len;
    tw_resource *host = pick_host((vhost_res *)r, req);
    if (!host) {
        no_such_host(req);
        return NULL;
    }
    req->flags |= RF_KEEP_SEGMENT;
    return tw_resource_ref(host);
}

/* Only for requests without path segments (OPTIONS *): the walk never
 * asked for a child, so the host's resource renders here. */
static tw_render_fn method_hook(const tw_resource_ops *o, tw_http_method m)
{
    if (o->render)
        return o->render;
    switch (m) {
    case TW_HTTP_GET:
        return o->render_get;
    case TW_HTTP_HEAD:
        return o->render_head ? o->render_head : o->render_get;
    case TW_HTTP_POST:
        return o->render_post;
    case TW_HTTP_PUT:
        return o->render_put;
    case TW_HTTP_DELETE:
        return o->render_delete;
    case TW_HTTP_PATCH:
        return o->render_patch;
    case TW_HTTP_OPTIONS:
        return o->render_options;
    default:
        return NULL;
    }
}

static int vhost_render(tw_resource *r, tw_request *req)
{
    tw_resource *host = pick_host((vhost_res *)r, req);
    if (!host) {
        no_such_host(req);
        return 0;
    }
    tw_render_fn fn = method_hook(host->ops, tw_request_method(req));
    if (!fn)
        return tw_request_respond_error(req, 405, "The host does not answer this method here.");
    return fn(host, req);
}

static void vhost_destroy(tw_resource *r)
{
    vhost_res *v = (vhost_res *)r;
    for (size_t i = 0; i < v->n; i++) {
        free(v->e[i].name);
        tw_resource_unref(v->e[i].r);
    }
    free(v->e);
    tw_resource_unref(v->def);
}

static const tw_resource_ops vhost_ops = {
    .size = sizeof(vhost_res),
    .get_child = vhost_child,
    .render = vhost_render,
    .destroy = vhost_destroy,
};

int tw_vhost_resource_new(tw_resource *default_host, tw_resource **out)
{
    tw_resource *r = tw_resource_new(&vhost_ops);
    if (!r) {
        tw_resource_unref(default_host);
        *out = NULL;
        return TW_ENOMEM;
    }
    ((vhost_res *)r)->def = default_host;
    *out = r;
    return 0;
}

static bool valid_name(const char *name, size_t len)
{
    if (len == 0 || len > MAX_HOST_NAME)
        return false;
    if (name[0] == '.')
        return false;
    bool bracket = name[0] == '[';
    if (bracket && name[len - 1] != ']')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f || c == '/' || (c == ':' && !bracket))
            return false;
    }
    return true;
}

int tw_vhost_add_host(tw_resource *vhost, const char *name, tw_resource *r)
{
    vhost_res *v = as_vhost(vhost);
    size_t len = name ? strlen(name) : 0;
    if (!v || !r || !valid_name(name, len)) {
        tw_resource_unref(r);
        return TW_EINVAL;
    }
    if (len > 1 && name[len - 1] == '.' && name[0] != '[')
        len--; /* "a.test." is "a.test", as in requests */
    vhost_entry *e = find(v, name, len);
    if (e) {
        tw_resource *old = e->r;
        e->r = r;
        tw_resource_unref(old);
        return 0;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        vhost_entry *grown = realloc(v->e, cap * sizeof *grown);
        if (!grown) {
            tw_resource_unref(r);
            return TW_ENOMEM;
        }
        v->e = grown;
        v->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        tw_resource_unref(r);
        return TW_ENOMEM;
    }
    for (size_t i = 0; i < len; i++)
        copy[i] = (char)lower((unsigned char)name[i]);
    copy[len] = 0;
    v->e[v->n++] = (vhost_entry){ copy, len, r };
    return 0;
}

int tw_vhost_remove_host(tw_resource *vhost, const char *name)
{
    vhost_res *v = as_vhost(vhost);
    if (!v || !name)
        return TW_EINVAL;
    size_t len = strlen(name);
    if (len > 1 && name[len - 1] == '.' && name[0] != '[')
        len--;
    vhost_entry *e = find(v, name, len);
    if (!e)
        return TW_ENOTFOUND;
    free(e->name);
    tw_resource_unref(e->r);
    *e = v->e[--v->n];
    return 0;
}

int tw_vhost_set_default(tw_resource *vhost, tw_resource *r)
{
    vhost_res *v = as_vhost(vhost);
    if (!v) {
        tw_resource_unref(r);
        return TW_EINVAL;
    }
    tw_resource *old = v->def;
    v->def = r;
    tw_resource_unref(old);
    return 0;
}
