/* tt_web.c — see tt_web.h. */
#include "tt_web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/tcp.h"

static int hello_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static const tw_resource_ops hello_ops = { .render_get = hello_get };

typedef struct echo_res {
    tw_resource base;
    tt_web *w;
} echo_res;

static void echo_data(tw_request *req, const char *data, size_t len, void *arg)
{
    tw_request_write(req, data, len);
}

static void echo_end(tw_request *req, const tw_failure *reason, void *arg)
{
    tt_web *w = arg;
    __atomic_add_fetch(&w->echo_done, 1, __ATOMIC_RELAXED);
    if (reason && tw_request_bytes_sent(req) == 0)
        tw_request_respond_error(req, 400, tw_failure_message(reason));
    else
        tw_request_finish(req);
}

static const tw_body_ops echo_body = { .data_received = echo_data, .body_end = echo_end };

static int echo_post(tw_resource *r, tw_request *req)
{
    tw_request_set_header(req, "Content-Type", "application/octet-stream");
    return tw_request_read_body(req, &echo_body, ((echo_res *)r)->w);
}

static int echo_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "", 0);
}

static const tw_resource_ops echo_ops = {
    .size = sizeof(echo_res),
    .stream_body = true,
    .render_get = echo_get,
    .render_post = echo_post,
    .render_put = echo_post,
};

static int headers_get(tw_resource *r, tw_request *req)
{
    size_t n;
    const tw_http_header *h = tw_request_headers(req, &n);
    for (size_t i = 0; i < n; i++) {
        tw_request_write(req, h[i].name.ptr, h[i].name.len);
        tw_request_write(req, ": ", 2);
        tw_request_write(req, h[i].value.ptr, h[i].value.len);
        tw_request_write(req, "\n", 1);
    }
    return tw_request_finish(req);
}

static const tw_resource_ops headers_ops = { .render_get = headers_get };

typedef struct count_res {
    tw_resource base;
    tt_web *w;
} count_res;

static int smuggled_any(tw_resource *r, tw_request *req)
{
    __atomic_add_fetch(&((count_res *)r)->w->smuggled, 1, __ATOMIC_RELAXED);
    return tw_request_respond(req, 200, "text/plain", "SMUGGLED", 8);
}

static const tw_resource_ops count_ops = { .size = sizeof(count_res), .render = smuggled_any };

static void *run(void *arg)
{
    tt_web *w = arg;
    tw_reactor_run(w->r);
    return NULL;
}

int tt_web_start(tt_web *w, const char *static_dir, const char *log_path)
{
    memset(w, 0, sizeof *w);
    tw_reactor_options ro = { .signals = TW_SIGNALS_OFF };
    int rc = tw_reactor_new(&ro, &w->r);
    if (rc < 0)
        return rc;
    tw_resource *root = tw_resource_new(NULL);
    tw_resource_put_child(root, "", tw_resource_new(&hello_ops));
    tw_resource *echo = tw_resource_new(&echo_ops);
    ((echo_res *)echo)->w = w;
    tw_resource_put_child(root, "echo", echo);
    tw_resource_put_child(root, "headers", tw_resource_new(&headers_ops));
    tw_resource *count = tw_resource_new(&count_ops);
    ((count_res *)count)->w = w;
    tw_resource_put_child(root, "smuggled", count);
    if (static_dir) {
        tw_resource *files;
        if ((rc = tw_static_file_new(static_dir, NULL, &files)) < 0)
            return rc;
        tw_resource_put_child(root, "static", files);
    }
    tw_site_options o;
    tw_site_options_init(&o);
    o.limits.max_body_bytes = UINT64_MAX; /* /echo streams any size */
    if (log_path) {
        if ((rc = tw_access_log_open(log_path, &w->log)) < 0)
            return rc;
        o.access_log = w->log;
    }
    if ((rc = tw_site_new(w->r, root, &o, &w->site)) < 0)
        return rc;
    rc = tw_listen_tcp(w->r, "127.0.0.1", 0, NULL, tw_site_factory(w->site), &w->port);
    if (rc < 0)
        return rc;
    w->port_num = tw_address_port(tw_port_address(w->port));
    return pthread_create(&w->thread, NULL, run, w) == 0 ? 0 : TW_ENOMEM;
}

static void stop_in_loop(void *arg)
{
    tt_web *w = arg;
    tw_port_stop_listening(w->port);
    w->port = NULL;
    tw_reactor_disconnect_all(w->r);
    tw_reactor_stop(w->r);
}

void tt_web_stop(tt_web *w)
{
    tw_call_from_thread(w->r, stop_in_loop, w);
    pthread_join(w->thread, NULL);
    tw_site_free(w->site);
    tw_reactor_free(w->r);
    tw_access_log_free(w->log);
}
