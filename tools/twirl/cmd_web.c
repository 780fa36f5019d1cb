/* twirl web — serve a directory over HTTP/1.1 (Twisted's `twist web --path`),
 * with reverse-proxied prefixes and name-based virtual hosts.
 *
 *     twirl web --listen tcp:8080 --path DIR [--index FILE] [--access-log FILE]
 *               [--proxy /api=http://127.0.0.1:9000/] [--vhost a.test=DIR2]
 *
 * --listen takes any endpoint: tcp:, unix:, and ssl: once TLS is built in.
 *
 * The tree: the root is a virtual host resource whose default host is the
 * --path directory (or the "/" proxy); each --vhost NAME=DIR adds a host
 * with its own directory; each --proxy PREFIX=URL is put on the root as a
 * child, so it answers that prefix for every host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd.h"
#include "twirl/web.h"

enum { MAX_INDEX = 8, MAX_PROXIES = 32, MAX_VHOSTS = 64, MAX_PREFIX_DEPTH = 8 };

typedef struct mount {
    const char *prefix; /* "/api/v1" (the option's text up to '=') */
    size_t prefix_len;
    const char *url;
} mount;

typedef struct vhost_dir {
    char name[256];
    const char *dir;
} vhost_dir;

typedef struct web_state {
    const char *path;
    const char *index[MAX_INDEX + 1];
    size_t nindex;
    const char *access_log_path;
    bool show_hidden, no_listing;
    tw_site_options site_opts;
    tw_proxy_options proxy_opts;
    bool opts_ready;
    mount proxies[MAX_PROXIES];
    size_t nproxies;
    vhost_dir vhosts[MAX_VHOSTS];
    size_t nvhosts;
    tw_access_log *log;
    tw_site *site;
} web_state;

static web_state state;

static void ensure_defaults(web_state *w)
{
    if (w->opts_ready)
        return;
    w->opts_ready = true;
    tw_site_options_init(&w->site_opts);
    tw_proxy_options_init(&w->proxy_opts);
}

/* --proxy PREFIX=URL: PREFIX is "/" or "/seg[/seg...]" of plain names. */
static int parse_proxy(web_state *w, const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    if (!eq || eq == value || value[0] != '/' || !eq[1]) {
        snprintf(err, errlen,
                 "--proxy: expected PREFIX=URL (e.g. /api=http://127.0.0.1:9000/), "
                 "got '%s'",
                 value);
        return -1;
    }
    if (w->nproxies == MAX_PROXIES) {
        snprintf(err, errlen, "--proxy: at most %d prefixes", MAX_PROXIES);
        return -1;
    }
    size_t len = (size_t)(eq - value);
    while (len > 1 && value[len - 1] == '/')
        len--; /* "/api/" is "/api" */
    size_t depth = 0;
    for (size_t i = 0; i < len && len > 1;) {
        size_t j = i + 1;
        while (j < len && value[j] != '/')
            j++;
        size_t seg = j - i - 1;
        bool dots = (seg == 1 && value[i + 1] == '.') ||
                    (seg == 2 && value[i + 1] == '.' && value[i + 2] == '.');
        bool plain = seg > 0 && !dots;
        for (size_t k = i + 1; k < j && plain; k++)
            plain = (unsigned char)value[k] > 0x20 && value[k] != '%' && value[k] != 0x7f &&
                    value[k] != '?' && value[k] != '#';
        if (!plain || ++depth > MAX_PREFIX_DEPTH) {
            snprintf(err, errlen,
                     "--proxy: '%.*s' is not a usable prefix (plain path segments, "
                     "at most %d)",
                     (int)len, value, MAX_PREFIX_DEPTH);
            return -1;
        }
        i = j;
    }
    for (size_t i = 0; i < w->nproxies; i++) {
        const mount *m = &w->proxies[i];
        size_t k = m->prefix_len < len ? m->prefix_len : len;
        bool nested;
        if (m->prefix_len == 1 || len == 1) /* "/" is the default host, not a parent */
            nested = m->prefix_len == len;
        else
            nested =
                strncmp(m->prefix, value, k) == 0 &&
                (m->prefix_len == len || (m->prefix_len < len ? value[k] : m->prefix[k]) == '/');
        if (nested) {
            snprintf(err, errlen, "--proxy: '%.*s' overlaps '%.*s'", (int)len, value,
                     (int)m->prefix_len, m->prefix);
            return -1;
        }
    }
    tw_url u;
    if (tw_url_parse(eq + 1, strlen(eq + 1), &u) < 0 || u.query.ptr || u.fragment.ptr) {
        snprintf(err, errlen, "--proxy: '%s' is not an http:// or https:// URL without query",
                 eq + 1);
        return -1;
    }
    w->proxies[w->nproxies++] = (mount){ value, len, eq + 1 };
    return 0;
}

static int parse_vhost(web_state *w, const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    size_t len = eq ? (size_t)(eq - value) : 0;
    if (!eq || len == 0 || len >= sizeof w->vhosts[0].name || !eq[1]) {
        snprintf(err, errlen,
                 "--vhost: expected NAME=DIR (e.g. www.example.com=/srv/www), got "
                 "'%s'",
                 value);
        return -1;
    }
    if (w->nvhosts == MAX_VHOSTS) {
        snprintf(err, errlen, "--vhost: at most %d hosts", MAX_VHOSTS);
        return -1;
    }
    vhost_dir *v = &w->vhosts[w->nvhosts];
    memcpy(v->name, value, len);
    v->name[len] = 0;
    v->dir = eq + 1;
    for (size_t i = 0; i < w->nvhosts; i++) {
        if (strcasecmp(w->vhosts[i].name, v->name) == 0) {
            snprintf(err, errlen, "--vhost: '%s' is given twice", v->name);
            return -1;
        }
    }
    w->nvhosts++;
    return 0;
}

static int web_option(twirl_ctx *ctx, const char *name, const char *value, char *err, size_t errlen)
{
    web_state *w = &state;
    ensure_defaults(w);
    long n;
    if (strcmp(name, "path") == 0) {
        w->path = value;
    } else if (strcmp(name, "index") == 0) {
        if (w->nindex == MAX_INDEX) {
            snprintf(err, errlen, "--index: at most %d index files", MAX_INDEX);
            return -1;
        }
        if (!*value || strchr(value, '/')) {
            snprintf(err, errlen, "--index: expected a file name, got '%s'", value);
            return -1;
        }
        w->index[w->nindex++] = value;
    } else if (strcmp(name, "access-log") == 0) {
        w->access_log_path = value;
    } else if (strcmp(name, "show-hidden") == 0) {
        w->show_hidden = true;
    } else if (strcmp(name, "no-listing") == 0) {
        w->no_listing = true;
    } else if (strcmp(name, "max-connections") == 0) {
        if (twirl_parse_int(name, value, 0, 10000000, &n, err, errlen) < 0)
            return -1;
        w->site_opts.max_connections = (size_t)n;
    } else if (strcmp(name, "idle-timeout") == 0) {
        return twirl_parse_double(name, value, &w->site_opts.idle_timeout, err, errlen);
    } else if (strcmp(name, "header-timeout") == 0) {
        return twirl_parse_double(name, value, &w->site_opts.header_timeout, err, errlen);
    } else if (strcmp(name, "body-timeout") == 0) {
        return twirl_parse_double(name, value, &w->site_opts.body_timeout, err, errlen);
    } else if (strcmp(name, "max-body") == 0) {
        if (twirl_parse_int(name, value, 0, (long)(~0UL >> 1), &n, err, errlen) < 0)
            return -1;
        w->site_opts.limits.max_body_bytes = n ? (uint64_t)n : UINT64_MAX;
    } else if (strcmp(name, "proxy") == 0) {
        return parse_proxy(w, value, err, errlen);
    } else if (strcmp(name, "vhost") == 0) {
        return parse_vhost(w, value, err, errlen);
    } else if (strcmp(name, "proxy-timeout") == 0) {
        double t;
        if (twirl_parse_double(name, value, &t, err, errlen) < 0)
            return -1;
        w->proxy_opts.agent.response_timeout = t;
        w->proxy_opts.read_timeout = t;
    } else if (strcmp(name, "proxy-connect-timeout") == 0) {
        return twirl_parse_double(name, value, &w->proxy_opts.agent.connect_timeout, err, errlen);
    } else if (strcmp(name, "proxy-keep-host") == 0) {
        w->proxy_opts.keep_host = true;
    }
    return 0;
}

/* Puts the proxy for m under root, making containers for its inner
 * segments. Takes proxy. */
static int mount_proxy(tw_resource *root, const mount *m, tw_resource *proxy, char *err,
                       size_t errlen)
{
    tw_resource *at = root;
    const char *p = m->prefix + 1, *end = m->prefix + m->prefix_len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        char seg[256];
        size_t n = (size_t)((slash ? slash : end) - p);
        if (n >= sizeof seg) {
            tw_resource_unref(proxy);
            snprintf(err, errlen, "--proxy: a segment of '%.*s' is too long", (int)m->prefix_len,
                     m->prefix);
            return -1;
        }
        memcpy(seg, p, n);
        seg[n] = 0;
        if (!slash) {
            if (tw_resource_put_child(at, seg, proxy) == 0)
                return 0;
            snprintf(err, errlen, "web: out of memory");
            return -1;
        }
        tw_resource *next = tw_resource_child(at, seg, n);
        if (!next) {
            if (!(next = tw_resource_new(NULL)) || tw_resource_put_child(at, seg, next) < 0) {
                tw_resource_unref(proxy);
                snprintf(err, errlen, "web: out of memory");
                return -1;
            }
        }
        at = next;
        p = slash + 1;
    }
}

static int static_dir(web_state *w, const char *what, const char *dir, tw_resource **out, char *err,
                      size_t errlen)
{
    tw_static_options so;
    tw_static_options_init(&so);
    if (w->nindex)
        so.index_files = w->index;
    so.show_hidden = w->show_hidden;
    so.no_listing = w->no_listing;
    int rc = tw_static_file_new(dir, &so, out);
    if (rc < 0)
        snprintf(err, errlen, "%s %s: %s", what, dir, tw_strerror(rc));
    return rc;
}

/* The tree described at the top of this file. */
static int build_tree(twirl_ctx *ctx, web_state *w, tw_resource **out, char *err, size_t errlen)
{
    tw_resource *def = NULL, *root = NULL;
    size_t root_proxy = w->nproxies;
    for (size_t i = 0; i < w->nproxies; i++)
        if (w->proxies[i].prefix_len == 1)
            root_proxy = i;
    if (root_proxy < w->nproxies && w->path) {
        snprintf(err, errlen, "web: --proxy /=URL and --path both name the default host");
        return -1;
    }
    if (root_proxy == w->nproxies && !w->path) {
        snprintf(err, errlen, "web: --path DIR is required");
        return -1;
    }
    if (w->path && static_dir(w, "--path", w->path, &def, err, errlen) < 0)
        return -1;
    if (w->nvhosts == 0 && w->nproxies == 0) {
        *out = def; /* files only: no hop through a vhost */
        return 0;
    }
    if (tw_vhost_resource_new(def, &root) < 0) {
        snprintf(err, errlen, "web: out of memory");
        return -1;
    }
    for (size_t i = 0; i < w->nvhosts; i++) {
        tw_resource *files;
        char what[300];
        snprintf(what, sizeof what, "--vhost %s=", w->vhosts[i].name);
        if (static_dir(w, what, w->vhosts[i].dir, &files, err, errlen) < 0)
            goto fail;
        if (tw_vhost_add_host(root, w->vhosts[i].name, files) < 0) {
            snprintf(err, errlen, "--vhost: '%s' is not a host name", w->vhosts[i].name);
            goto fail;
        }
    }
    for (size_t i = 0; i < w->nproxies; i++) {
        const mount *m = &w->proxies[i];
        tw_resource *proxy;
        int rc = tw_proxy_resource_new(ctx->reactor, m->url, &w->proxy_opts, &proxy);
        if (rc < 0) {
            snprintf(err, errlen, "--proxy %.*s=%s: %s", (int)m->prefix_len, m->prefix, m->url,
                     tw_strerror(rc));
            goto fail;
        }
        if (i == root_proxy) {
            tw_vhost_set_default(root, proxy);
        } else if (mount_proxy(root, m, proxy, err, errlen) < 0) {
            goto fail;
        }
    }
    *out = root;
    return 0;
fail:
    tw_resource_unref(root);
    return -1;
}

static int web_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    web_state *w = &state;
    ensure_defaults(w);
    tw_resource *root;
    if (build_tree(ctx, w, &root, err, errlen) < 0)
        return -1;
    int rc;
    if (w->access_log_path) {
        rc = tw_access_log_open(w->access_log_path, &w->log);
        if (rc < 0) {
            snprintf(err, errlen, "--access-log %s: %s", w->access_log_path, tw_strerror(rc));
            tw_resource_unref(root);
            return -1;
        }
        w->site_opts.access_log = w->log;
    }
    rc = tw_site_new(ctx->reactor, root, &w->site_opts, &w->site);
    if (rc < 0) {
        snprintf(err, errlen, "web: %s", tw_strerror(rc));
        tw_access_log_free(w->log);
        w->log = NULL;
        return -1;
    }
    ctx->state = w;
    *out = tw_site_factory(w->site);
    return 0;
}

static void web_stop(twirl_ctx *ctx)
{
    web_state *w = &state;
    tw_site_free(w->site);
    w->site = NULL;
    tw_access_log_free(w->log);
    w->log = NULL;
}

static const twirl_option web_options[] = {
    { "path", "DIR", "the directory (or file) to serve (required unless --proxy /=URL)" },
    { "index", "FILE", "index file of a directory (repeatable; default index.html)" },
    { "access-log", "FILE", "log requests in the combined log format ('-': stdout)" },
    { "show-hidden", NULL, "serve names starting with '.' (hidden by default)" },
    { "no-listing", NULL, "answer 403 for a directory without an index file" },
    { "max-connections", "N", "close new connections past N (default 10000; 0: no limit)" },
    { "header-timeout", "SECONDS", "time allowed for a request head (default 20)" },
    { "body-timeout", "SECONDS", "longest silence while reading a body (default 30)" },
    { "idle-timeout", "SECONDS", "keep-alive: idle time between requests (default 15)" },
    { "max-body", "BYTES", "largest request body accepted (default 1048576; 0: no limit)" },
    { "vhost", "NAME=DIR",
      "serve DIR to requests for host NAME (repeatable; other hosts get --path)" },
    { "proxy", "PREFIX=URL",
      "forward requests under PREFIX to URL, e.g. /api=http://127.0.0.1:9000/ (repeatable; "
      "/=URL proxies everything --path would serve)" },
    { "proxy-timeout", "SECONDS",
      "upstream: wait for a response head, and longest silence in its body (default 60)" },
    { "proxy-connect-timeout", "SECONDS", "upstream: time allowed to connect (default 10)" },
    { "proxy-keep-host", NULL, "send the client's Host upstream (default: the upstream's)" },
    { NULL, NULL, NULL },
};

static const twirl_cmd web_cmd = {
    .name = "web",
    .summary = "serve a directory over HTTP/1.1 (static files, reverse proxy, virtual hosts)",
    .description =
        "Serves the files under --path over HTTP/1.1 (Twisted's `twist web --path`): "
        "keep-alive and pipelining, byte ranges, conditional requests, index files and "
        "directory listings, sendfile on plain TCP. --vhost NAME=DIR serves another directory "
        "to requests whose Host is NAME (any case, port ignored); --path is the default host. "
        "--proxy PREFIX=URL forwards every request under PREFIX, on every host, to an "
        "upstream HTTP server (Twisted's ReverseProxyResource): the rest of the path is "
        "appended to URL's path, the query kept; both bodies stream with backpressure; "
        "X-Forwarded-For/-Proto/-Host are added; an unreachable upstream gives 502 and a "
        "silent one 504. Raise --max-body for large uploads through a proxy. --listen "
        "takes any endpoint string, e.g. tcp:8080:interface=127.0.0.1 or "
        "unix:/run/web.sock (or ssl:8443:certKey=...:privateKey=... where TLS is built in).",
    .default_listen = "tcp:8080",
    .options = web_options,
    .option = web_option,
    .start = web_start,
    .stop = web_stop,
};
TWIRL_COMMAND(web_cmd);
