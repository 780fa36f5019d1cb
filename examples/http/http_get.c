/* http_get — fetch a URL and print the status line, the header fields and
 * the body: the twirl equivalent of curl -i (Twisted's Agent examples).
 *
 *   http_get [-I] [-L] [--compressed] [-X METHOD] [-d DATA] [-H 'Name: value']...
 *            [--cacert FILE] [-m SECONDS] [--max-redirs N] URL
 *
 *   -I              HEAD instead of GET
 *   -L              follow redirects (RedirectAgent)
 *   --compressed    ask for gzip/deflate and decode it (ContentDecoderAgent)
 *   -X METHOD       the method (default GET, or POST with -d)
 *   -d DATA         a request body
 *   -H FIELD        an extra header field, "Name: value" (repeatable)
 *   --cacert FILE   trust the CA certificates in FILE for https
 *   -m SECONDS      give up after SECONDS (default 60)
 *
 * Exits 0 once the whole body was printed (whatever the status), 1 when
 * the request failed (the reason goes to standard error), 2 on bad usage.
 * Host names are looked up by the endpoints, with the reactor's resolver
 * (/etc/hosts, then DNS through c-ares). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "twirl/endpoint.h"
#include "twirl/web_client.h"

enum { MAX_FIELDS = 32 };

typedef struct app {
    tw_reactor *r;
    int status; /* exit status */
    bool done;
} app;

static void finish(app *a, int status)
{
    a->status = status;
    a->done = true;
    if (tw_reactor_running(a->r))
        tw_reactor_stop(a->r);
}

static void usage(void)
{
    fprintf(stderr, "usage: http_get [-I] [-L] [--compressed] [-X METHOD] [-d DATA] "
                    "[-H 'Name: value']... [--cacert FILE] [-m SECONDS] [--max-redirs N] URL\n");
    exit(2);
}

/* ------------------------------------------------------------ the body */

static void body_data(tw_response *resp, const char *data, size_t len, void *arg)
{
    fwrite(data, 1, len, stdout);
}

static void body_end(tw_response *resp, const tw_failure *reason, void *arg)
{
    app *a = arg;
    fflush(stdout);
    if (reason) {
        char *text = tw_failure_render(reason);
        fprintf(stderr, "http_get: %s\n", text ? text : tw_failure_message(reason));
        free(text);
        finish(a, 1);
    } else {
        finish(a, 0);
    }
}

static const tw_response_body_ops body_ops = { body_data, body_end };

static tw_result got_response(tw_result *in, void *arg)
{
    app *a = arg;
    tw_response *resp = in->value.ptr;
    tw_http_slice reason = tw_response_reason(resp);
    printf("HTTP/1.%d %d %.*s\n", tw_response_version_minor(resp), tw_response_status(resp),
           (int)reason.len, reason.ptr);
    size_t n;
    const tw_http_header *h = tw_response_headers(resp, &n);
    for (size_t i = 0; i < n; i++)
        printf("%.*s: %.*s\n", (int)h[i].name.len, h[i].name.ptr, (int)h[i].value.len,
               h[i].value.ptr);
    printf("\n");
    /* The delivery keeps the response alive until body_end. */
    if (tw_response_deliver_body(resp, &body_ops, a) < 0)
        finish(a, 1);
    return TW_RESULT_NONE;
}

static tw_result failed(tw_result *in, void *arg)
{
    app *a = arg;
    char *text = tw_failure_render(in->failure);
    fprintf(stderr, "http_get: %s\n", text ? text : tw_failure_message(in->failure));
    free(text);
    finish(a, 1);
    return TW_RESULT_NONE;
}

static void give_up(void *arg)
{
    app *a = arg;
    fprintf(stderr, "http_get: no complete answer in time\n");
    finish(a, 1);
}

int main(int argc, char **argv)
{
    const char *method = NULL, *data = NULL, *cacert = NULL, *url = NULL;
    bool head = false, follow = false, decode = false;
    double limit = 60;
    int max_redirs = 20;
    tw_http_header fields[MAX_FIELDS];
    size_t nfields = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        bool more = i + 1 < argc;
        if (strcmp(o, "-I") == 0)
            head = true;
        else if (strcmp(o, "-L") == 0)
            follow = true;
        else if (strcmp(o, "--compressed") == 0)
            decode = true;
        else if (strcmp(o, "-X") == 0 && more)
            method = argv[++i];
        else if (strcmp(o, "-d") == 0 && more)
            data = argv[++i];
        else if (strcmp(o, "--cacert") == 0 && more)
            cacert = argv[++i];
        else if (strcmp(o, "-m") == 0 && more)
            limit = atof(argv[++i]);
        else if (strcmp(o, "--max-redirs") == 0 && more)
            max_redirs = atoi(argv[++i]);
        else if (strcmp(o, "-H") == 0 && more) {
            const char *f = argv[++i], *colon = strchr(f, ':');
            if (!colon || nfields == MAX_FIELDS)
                usage();
            const char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            fields[nfields].name = (tw_http_slice){ f, (size_t)(colon - f) };
            fields[nfields].value = (tw_http_slice){ v, strlen(v) };
            nfields++;
        } else if (o[0] != '-' && !url)
            url = o;
        else
            usage();
    }
    if (!url || limit <= 0 || max_redirs < 1)
        usage();
    if (!method)
        method = head ? "HEAD" : data ? "POST" : "GET";

    app a = { .status = 1 };
    tw_reactor_options ro = { .signals = TW_SIGNALS_ON };
    if (tw_reactor_new(&ro, &a.r) < 0) {
        fprintf(stderr, "http_get: cannot make a reactor\n");
        return 1;
    }
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.trust_roots = cacert;
    opts.user_agent = "twirl-http_get/0.1";
    tw_agent *base = NULL, *redirects = NULL, *decoder = NULL, *agent;
    if (tw_agent_new(a.r, &opts, &base) < 0) {
        fprintf(stderr, "http_get: cannot make an agent\n");
        tw_reactor_free(a.r);
        return 1;
    }
    agent = base;
    if (follow && tw_redirect_agent_new(agent, max_redirs, &redirects) == 0)
        agent = redirects;
    if (decode && tw_content_decoder_agent_new(agent, NULL, &decoder) == 0)
        agent = decoder;

    tw_body_producer *body = NULL;
    if (data && tw_body_producer_new_bytes(data, strlen(data), &body) < 0) {
        fprintf(stderr, "http_get: out of memory\n");
        return 1;
    }
    tw_deferred *d = tw_agent_request(agent, method, url, fields, nfields, body);
    if (!d) {
        fprintf(stderr, "http_get: out of memory\n");
        return 1;
    }
    tw_deferred_add_callbacks(d, got_response, failed, &a);
    tw_deferred_unref(d);
    tw_timer t = tw_call_later(a.r, limit, give_up, &a);
    if (!a.done) /* bad arguments fail at once */
        tw_reactor_run(a.r);
    tw_timer_cancel(t);

    tw_agent_free(decoder);
    tw_agent_free(redirects);
    tw_agent_free(base);
    tw_reactor_free(a.r);
    return a.status;
}
