/* twirl web — serve a directory over HTTP/1.1 (Twisted's `twist web --path`).
 *
 *     twirl web --listen tcp:8080 --path DIR [--index FILE] [--access-log FILE]
 *
 * --listen takes any endpoint: tcp:, unix:, and ssl: once TLS is built in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "twirl/web.h"

enum { MAX_INDEX = 8 };

typedef struct web_state {
    const char *path;
    const char *index[MAX_INDEX + 1];
    size_t nindex;
    const char *access_log_path;
    bool show_hidden, no_listing;
    tw_site_options site_opts;
    tw_access_log *log;
    tw_site *site;
} web_state;

static web_state state;

static int web_option(twirl_ctx *ctx, const char *name, const char *value, char *err, size_t errlen)
{
    web_state *w = &state;
    if (!w->site_opts.limits.max_headers)
        tw_site_options_init(&w->site_opts);
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
    }
    return 0;
}

static int web_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    web_state *w = &state;
    if (!w->site_opts.limits.max_headers)
        tw_site_options_init(&w->site_opts);
    if (!w->path) {
        snprintf(err, errlen, "web: --path DIR is required");
        return -1;
    }
    tw_static_options so;
    tw_static_options_init(&so);
    if (w->nindex)
        so.index_files = w->index;
    so.show_hidden = w->show_hidden;
    so.no_listing = w->no_listing;
    tw_resource *root;
    int rc = tw_static_file_new(w->path, &so, &root);
    if (rc < 0) {
        snprintf(err, errlen, "--path %s: %s", w->path, tw_strerror(rc));
        return -1;
    }
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
    { "path", "DIR", "the directory (or file) to serve (required)" },
    { "index", "FILE", "index file of a directory (repeatable; default index.html)" },
    { "access-log", "FILE", "log requests in the combined log format ('-': stdout)" },
    { "show-hidden", NULL, "serve names starting with '.' (hidden by default)" },
    { "no-listing", NULL, "answer 403 for a directory without an index file" },
    { "max-connections", "N", "close new connections past N (default 10000; 0: no limit)" },
    { "header-timeout", "SECONDS", "time allowed for a request head (default 20)" },
    { "body-timeout", "SECONDS", "longest silence while reading a body (default 30)" },
    { "idle-timeout", "SECONDS", "keep-alive: idle time between requests (default 15)" },
    { NULL, NULL, NULL },
};

static const twirl_cmd web_cmd = {
    .name = "web",
    .summary = "serve a directory over HTTP/1.1 (static files)",
    .description = "Serves the files under --path over HTTP/1.1 (Twisted's `twist web "
                   "--path`): keep-alive and pipelining, byte ranges, conditional requests, "
                   "index files and directory listings, sendfile on plain TCP. --listen takes "
                   "any endpoint string, e.g. tcp:8080:interface=127.0.0.1 or unix:/run/web.sock "
                   "(or ssl:8443:certKey=...:privateKey=... where TLS is built in).",
    .default_listen = "tcp:8080",
    .options = web_options,
    .option = web_option,
    .start = web_start,
    .stop = web_stop,
};
TWIRL_COMMAND(web_cmd);
