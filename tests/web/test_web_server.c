/* ctest: label=unit timeout=120 backends=once */
/* The HTTP server over the string transport and the fake clock: framing,
 * keep-alive and pipelining (every input split at every byte boundary),
 * HTTP/1.0, HEAD, 404/405, collected and streamed bodies, 100-continue,
 * header validation, asynchronous responses, timeouts, limits, the access
 * log. No sockets, no real time. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "twirl/http_util.h"
#include "twirl/testing.h"
#include "twirl/web.h"

/* Sun, 06 Nov 1994 08:49:37 GMT */
static int64_t fixed_clock(void *arg)
{
    return 784111777;
}

#define DATE   "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
#define SERVER "Server: twirl\r\n"

/* ------------------------------------------------------------ resources */

static int hello_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static const tw_resource_ops hello_ops = { .render_get = hello_get };

/* POST: echoes the collected body. */
static int echo_post(tw_resource *r, tw_request *req)
{
    tw_http_slice b = tw_request_body(req);
    return tw_request_respond(req, 200, "application/octet-stream", b.ptr, b.len);
}

static const tw_resource_ops echo_ops = { .render_post = echo_post, .render_put = echo_post };

/* Writes three pieces without a length: chunked (1.1) or until close (1.0). */
static int stream_get(tw_resource *r, tw_request *req)
{
    tw_request_set_header(req, "Content-Type", "text/plain");
    tw_request_write(req, "one,", 4);
    tw_request_write(req, "two,", 4);
    tw_request_write(req, "three", 5);
    return tw_request_finish(req);
}

static const tw_resource_ops stream_ops = { .render_get = stream_get };

/* Answers later: the test finishes it. */
static tw_request *pending;
static int later_get(tw_resource *r, tw_request *req)
{
    pending = req;
    return 0;
}

static const tw_resource_ops later_ops = { .render_get = later_get };

/* Echoes the path segments and a query argument. */
static int info_get(tw_resource *r, tw_request *req)
{
    char out[512], arg[64];
    size_t n = 0, alen = 0;
    n += (size_t)snprintf(out + n, sizeof out - n, "pre=%zu post=%zu",
                          tw_request_prepath_count(req), tw_request_postpath_count(req));
    for (size_t i = 0; i < tw_request_postpath_count(req); i++) {
        tw_http_slice s = tw_request_postpath(req, i);
        n += (size_t)snprintf(out + n, sizeof out - n, " [%.*s]", (int)s.len, s.ptr);
    }
    if (tw_request_arg(req, "q", arg, sizeof arg, &alen) == 1)
        n += (size_t)snprintf(out + n, sizeof out - n, " q=%.*s", (int)alen, arg);
    return tw_request_respond(req, 200, "text/plain", out, n);
}

static const tw_resource_ops info_ops = { .is_leaf = true, .render_get = info_get };

/* Streams the body back as it comes (stream_body). */
typedef struct sink {
    tw_request *req;
    size_t bytes;
    int ends;
    int end_code;
    bool pause_each;
    char data[4096];
} sink;
static sink the_sink;

static void sink_data(tw_request *req, const char *data, size_t len, void *arg)
{
    sink *s = arg;
    if (s->bytes + len <= sizeof s->data)
        memcpy(s->data + s->bytes, data, len);
    s->bytes += len;
    if (s->pause_each)
        tw_request_pause_body(req);
}

static void sink_end(tw_request *req, const tw_failure *reason, void *arg)
{
    sink *s = arg;
    s->ends++;
    s->end_code = reason ? tw_failure_code(reason) : 0;
    if (!reason) {
        char n[32];
        int k = snprintf(n, sizeof n, "got %zu", s->bytes);
        tw_request_respond(req, 200, "text/plain", n, (size_t)k);
    }
}

static const tw_body_ops sink_ops = { .data_received = sink_data, .body_end = sink_end };

static int upload_post(tw_resource *r, tw_request *req)
{
    the_sink.req = req;
    return tw_request_read_body(req, &sink_ops, &the_sink);
}

static const tw_resource_ops upload_ops = { .stream_body = true, .render_post = upload_post };

/* Tries to set bad headers and reports what was refused. */
static int evil_get(tw_resource *r, tw_request *req)
{
    int a = tw_request_set_header(req, "X-A", "ok\r\nSet-Cookie: evil=1");
    int b = tw_request_set_header(req, "X-B\r\nX-C", "1");
    int c = tw_request_set_header(req, "X-D", "a\nb");
    int d = tw_request_set_header(req, "X-E", "nul\x01");
    int e = tw_request_set_header(req, "Transfer-Encoding", "chunked");
    int f = tw_request_set_header(req, "X-Fine", "  fine value\t");
    char out[128];
    int n = snprintf(out, sizeof out, "%d %d %d %d %d %d", a == TW_EINVAL, b == TW_EINVAL,
                     c == TW_EINVAL, d == TW_EINVAL, e == TW_EINVAL, f == 0);
    return tw_request_respond(req, 200, "text/plain", out, (size_t)n);
}

static const tw_resource_ops evil_ops = { .render_get = evil_get };

static int fail_get(tw_resource *r, tw_request *req)
{
    return TW_EINVAL;
}

static const tw_resource_ops fail_ops = { .render_get = fail_get };

/* ------------------------------------------------------------ fixture */

typedef struct fx {
    tw_reactor *r;
    tw_site *site;
    tw_site_options o;
} fx;

static fx F;

static void site_up(const tw_site_options *o)
{
    F.r = tw_test_clock_new();
    assert_non_null(F.r);
    tw_resource *root = tw_resource_new(NULL);
    assert_non_null(root);
    assert_int_equal(tw_resource_put_child(root, "", tw_resource_new(&hello_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "hello", tw_resource_new(&hello_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "echo", tw_resource_new(&echo_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "stream", tw_resource_new(&stream_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "later", tw_resource_new(&later_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "info", tw_resource_new(&info_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "upload", tw_resource_new(&upload_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "evil", tw_resource_new(&evil_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "fail", tw_resource_new(&fail_ops)), 0);
    tw_resource *dir = tw_resource_new(NULL);
    assert_int_equal(tw_resource_put_child(dir, "leaf", tw_resource_new(&hello_ops)), 0);
    assert_int_equal(tw_resource_put_child(root, "dir", dir), 0);
    if (o)
        F.o = *o;
    else
        tw_site_options_init(&F.o);
    F.o.wall_clock = fixed_clock;
    assert_int_equal(tw_site_new(F.r, root, &F.o, &F.site), 0);
}

static void site_down(void)
{
    tw_site_free(F.site);
    tw_reactor_free(F.r);
    F.site = NULL;
    F.r = NULL;
    pending = NULL;
    memset(&the_sink, 0, sizeof the_sink);
}

static int setup(void **state)
{
    site_up(NULL);
    return 0;
}

static int teardown(void **state)
{
    site_down();
    return 0;
}

static tw_test_conn *conn(void)
{
    tw_test_conn_options o = { .factory = tw_site_factory(F.site), .reactor = F.r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    return c;
}

static const char *out_of(tw_test_conn *c)
{
    return tw_test_conn_written(c, NULL);
}

/* Closing: lose/abort called, or (lingering after an error) our side shut. */
static bool closing(tw_test_conn *c)
{
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    return tw_test_conn_disconnecting(c) || info.write_shut;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ------------------------------------------------------------ basics */

static const char HELLO_RESPONSE[] =
    "HTTP/1.1 200 OK\r\n" SERVER DATE "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    "Hello, World!";

static void get_hello(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_string_equal(out_of(c), HELLO_RESPONSE);
    assert_false(tw_test_conn_disconnecting(c));
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.writev_calls + info.write_calls, 1); /* one system call */
    tw_test_conn_clear(c);
    tw_test_conn_feed_str(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_string_equal(out_of(c), HELLO_RESPONSE);
    assert_int_equal(tw_site_connection_count(F.site), 1);
    tw_test_conn_free(c);
    assert_int_equal(tw_site_connection_count(F.site), 0);
}

static const char PIPE_IN[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde"
                              "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nxyz\r\n2;ext=1\r\n12\r\n0\r\nTrailer: t\r\n\r\n"
                              "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"
                              "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /info/a%20b/c?q=x+y HTTP/1.1\r\nHost: a\r\n\r\n";

static const char PIPE_OUT[] =
    "HTTP/1.1 200 OK\r\n" SERVER DATE "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    "Hello, World!"
    "HTTP/1.1 200 OK\r\n" SERVER DATE
    "Content-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nabcde"
    "HTTP/1.1 200 OK\r\n" SERVER DATE
    "Content-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nxyz12"
    "HTTP/1.1 200 OK\r\n" SERVER DATE
    "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    "HTTP/1.1 200 OK\r\n" SERVER DATE "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
    "HTTP/1.1 404 Not Found\r\n" SERVER DATE
    "Content-Type: text/html; charset=utf-8\r\nContent-Length: 138\r\n\r\n"
    "<html>\n  <head><title>404 - Not Found</title></head>\n  <body>\n    <h1>Not Found</h1>\n"
    "    <p>No such child resource.</p>\n  </body>\n</html>\n"
    "HTTP/1.1 200 OK\r\n" SERVER DATE
    "Content-Type: text/plain\r\nContent-Length: 28\r\n\r\npre=1 post=2 [a b] [c] q=x y";

static void check_pipe(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const char *got = out_of(c);
    if (strcmp(got, PIPE_OUT) != 0) {
        size_t i = 0;
        while (got[i] && got[i] == PIPE_OUT[i])
            i++;
        fail_msg("%s: differs at byte %zu: got \"%.60s\" expected \"%.60s\"", how->desc, i, got + i,
                 PIPE_OUT + i);
    }
    assert_false(tw_test_conn_disconnecting(c));
}

static void pipelining_any_split(void **state)
{
    tw_test_conn_options o = { .factory = tw_site_factory(F.site), .reactor = F.r };
    int runs = tw_test_feed_splits(&o, PIPE_IN, sizeof PIPE_IN - 1, check_pipe, NULL);
    assert_true(runs > (int)sizeof PIPE_IN);
    assert_int_equal(tw_site_connection_count(F.site), 0);
}

static void http10(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(out_of(c), "Connection: close\r\n"));
    assert_non_null(strstr(out_of(c), "Content-Length: 13\r\n"));
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    c = conn();
    tw_test_conn_feed_str(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_non_null(strstr(out_of(c), "Connection: keep-alive\r\n"));
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_clear(c);
    /* Unknown length on HTTP/1.0: delimited by the close. */
    tw_test_conn_feed_str(c, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_non_null(strstr(out_of(c), "Connection: close\r\n"));
    assert_null(strstr(out_of(c), "chunked"));
    assert_non_null(strstr(out_of(c), "\r\n\r\none,two,three"));
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static void connection_close(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                             "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(count(out_of(c), "HTTP/1.1 200"), 1);
    assert_non_null(strstr(out_of(c), "Connection: close\r\n"));
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static void head_and_methods(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *o = out_of(c);
    assert_non_null(strstr(o, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(o, "Content-Length: 13\r\n")); /* what GET would send */
    assert_non_null(strstr(o, "\r\n\r\n"));
    assert_string_equal(strstr(o, "\r\n\r\n"), "\r\n\r\n"); /* no body */
    tw_test_conn_clear(c);
    tw_test_conn_feed_str(c, "DELETE /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    o = out_of(c);
    assert_non_null(strstr(o, "HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(o, "Allow: GET, HEAD\r\n"));
    tw_test_conn_clear(c);
    tw_test_conn_feed_str(c, "PURGE /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "HTTP/1.1 405 "));
    tw_test_conn_clear(c);
    /* A plain container renders nothing: 404. */
    tw_test_conn_feed_str(c, "GET /dir HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "HTTP/1.1 404 "));
    tw_test_conn_clear(c);
    tw_test_conn_feed_str(c, "GET /dir/leaf HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "Hello, World!"));
    tw_test_conn_clear(c);
    tw_test_conn_feed_str(c, "GET /fail HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "HTTP/1.1 500 "));
    assert_non_null(strstr(out_of(c), "Connection: close\r\n"));
    tw_test_conn_free(c);
}

static void response_splitting_refused(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET /evil HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *o = out_of(c);
    assert_non_null(strstr(o, "\r\n\r\n1 1 1 1 1 1"));
    assert_non_null(strstr(o, "X-Fine: fine value\r\n"));
    assert_null(strstr(o, "evil"));
    assert_null(strstr(o, "X-C"));
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ errors */

static void bad_requests(void **state)
{
    static const struct {
        const char *in;
        const char *status;
    } cases[] = {
        { "GET / HTTP/1.1\nHost: a\n\n", "400 Bad Request" },
        { "GET / HTTP/1.1\r\n\r\n", "400 Bad Request" }, /* no Host */
        { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "505 " },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", "413 " },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
          "400 " },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400 " },
        { "GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n", "400 " },
        { "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", "400 " },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_test_conn *c = conn();
        tw_test_conn_feed_str(c, cases[i].in);
        const char *o = out_of(c);
        if (!strstr(o, cases[i].status))
            fail_msg("case %zu: expected %s, got %s", i, cases[i].status, o);
        assert_non_null(strstr(o, "Connection: close\r\n"));
        tw_string_transport_info info;
        tw_string_transport_get_info(tw_test_conn_transport(c), &info);
        assert_true(info.write_shut || info.state != TW_TRANSPORT_OPEN);
        tw_test_conn_free(c);
    }
}

static void head_limits(void **state)
{
    tw_site_options o;
    tw_site_options_init(&o);
    o.limits.max_header_bytes = 256;
    o.limits.max_start_line_bytes = 64;
    site_down();
    site_up(&o);
    tw_test_conn *c = conn();
    char big[1024];
    snprintf(big, sizeof big, "GET /%0100d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    tw_test_conn_feed_str(c, big);
    assert_non_null(strstr(out_of(c), "414 "));
    tw_test_conn_free(c);
    c = conn();
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 20; i++)
        tw_test_conn_feed_str(c, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    assert_non_null(strstr(out_of(c), "431 "));
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ bodies */

static void expect_continue(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                             "Expect: 100-continue\r\n\r\n");
    assert_string_equal(out_of(c), "HTTP/1.1 100 Continue\r\n\r\n");
    tw_test_conn_feed_str(c, "abc");
    assert_non_null(strstr(out_of(c), "\r\n\r\nabc"));
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_clear(c);
    /* Refused before the body: no 100, and the connection closes since
     * the client would wait for it. */
    tw_test_conn_feed_str(c, "POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                             "Expect: 100-continue\r\n\r\n");
    assert_null(strstr(out_of(c), "100 Continue"));
    assert_non_null(strstr(out_of(c), "405 "));
    assert_non_null(strstr(out_of(c), "Connection: close"));
    tw_test_conn_free(c);
}

static void unread_body_is_discarded(void **state)
{
    tw_test_conn *c = conn();
    /* 405 before the body: the body is dropped and the next request served. */
    tw_test_conn_feed_str(c, "POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n12345"
                             "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "405 "));
    assert_non_null(strstr(out_of(c), "Hello, World!"));
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static void streamed_body(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             "Expect: 100-continue\r\n\r\n");
    assert_string_equal(out_of(c), "HTTP/1.1 100 Continue\r\n\r\n");
    tw_test_conn_feed_str(c, "5\r\nhello\r\n");
    assert_int_equal(the_sink.bytes, 5);
    tw_test_conn_feed_str(c, "6\r\n world\r\n0\r\n\r\n");
    assert_int_equal(the_sink.bytes, 11);
    assert_int_equal(the_sink.ends, 1);
    assert_int_equal(the_sink.end_code, 0);
    assert_memory_equal(the_sink.data, "hello world", 11);
    assert_non_null(strstr(out_of(c), "got 11"));
    tw_test_conn_free(c);
}

static void streamed_body_pause(void **state)
{
    tw_test_conn *c = conn();
    the_sink.pause_each = true;
    tw_test_conn_feed_str(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
                             "0123456789");
    /* Paused after the first piece: the rest waits. */
    size_t first = the_sink.bytes;
    assert_true(first > 0);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.producer_state, TW_TEST_PAUSED);
    the_sink.pause_each = false;
    tw_request_resume_body(the_sink.req);
    tw_clock_advance(F.r, 0); /* the continuation runs from the loop */
    tw_reactor_iterate(F.r, 0);
    assert_int_equal(the_sink.bytes, 10);
    assert_int_equal(the_sink.ends, 1);
    assert_non_null(strstr(out_of(c), "got 10"));
    tw_test_conn_free(c);
}

static void streamed_body_lost(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01");
    assert_int_equal(the_sink.bytes, 2);
    tw_test_conn_lose(c, -ECONNRESET);
    assert_int_equal(the_sink.ends, 1);
    assert_int_equal(the_sink.end_code, TW_ECONNECTION_LOST);
    /* The resource must still finish the request; writes fail. */
    assert_int_equal(tw_request_write(the_sink.req, "x", 1), TW_ECLOSED);
    assert_int_equal(tw_request_finish(the_sink.req), TW_ECLOSED);
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ asynchronous */

static void async_in_order(void **state)
{
    tw_test_conn *c = conn();
    char in[256];
    snprintf(in, sizeof in,
             "GET /later HTTP/1.1\r\nHost: a\r\nX-Tag: first\r\n\r\n"
             "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    tw_test_conn_feed(c, in, strlen(in));
    memset(in, 'Z', sizeof in); /* the head must have been copied */
    assert_non_null(pending);
    assert_string_equal(out_of(c), "");
    tw_http_slice tag;
    assert_true(tw_request_header(pending, "x-tag", &tag));
    assert_int_equal(tag.len, 5);
    assert_memory_equal(tag.ptr, "first", 5);
    tw_http_slice path = tw_request_path(pending);
    assert_memory_equal(path.ptr, "/later", 6);
    tw_deferred *d = tw_request_notify_finish(pending);
    assert_non_null(d);
    tw_request_set_status(pending, 201);
    tw_request_write(pending, "done", 4);
    assert_int_equal(tw_request_finish(pending), 0);
    assert_true(tw_deferred_called(d));
    assert_false(tw_deferred_failed(d));
    tw_deferred_unref(d);
    tw_reactor_iterate(F.r, 0); /* the pipelined one is served from the loop */
    const char *o = out_of(c);
    const char *first = strstr(o, "HTTP/1.1 201 Created");
    const char *second = strstr(o, "HTTP/1.1 200 OK");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    assert_non_null(strstr(o, "Content-Length: 4\r\n\r\ndone"));
    tw_test_conn_free(c);
}

static tw_result trap_lost(tw_result *in, void *arg)
{
    assert_true(tw_failure_is(in->failure, TW_DOMAIN, TW_ECONNECTION_LOST));
    return TW_RESULT_NONE;
}

static void async_lost(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n");
    tw_request *req = pending;
    assert_non_null(req);
    tw_deferred *d = tw_request_notify_finish(req);
    tw_test_conn_lose(c, -ECONNRESET);
    assert_true(tw_deferred_failed(d));
    tw_deferred_add_errback(d, trap_lost, NULL);
    assert_int_equal(tw_request_write(req, "x", 1), TW_ECLOSED);
    assert_int_equal(tw_request_finish(req), TW_ECLOSED);
    tw_deferred_unref(d);
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ timeouts */

static void idle_timeout(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    tw_clock_advance(F.r, 14);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); /* renews it */
    tw_clock_advance(F.r, 14);
    assert_false(tw_test_conn_disconnecting(c));
    tw_clock_advance(F.r, 2);
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static void slowloris_head_timeout(void **state)
{
    tw_test_conn *c = conn();
    /* A byte every second does not renew the head timeout. */
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ";
    for (int i = 0; in[i] && !tw_test_conn_disconnecting(c); i++) {
        tw_test_conn_feed(c, in + i, 1);
        tw_clock_advance(F.r, 1);
    }
    for (int i = 0; i < 30 && !tw_test_conn_disconnecting(c); i++) {
        tw_test_conn_feed(c, "a", 1);
        tw_clock_advance(F.r, 1);
    }
    assert_true(tw_test_conn_disconnecting(c));
    assert_non_null(strstr(out_of(c), "408 "));
    /* The linger timeout then gives up on the client. */
    tw_clock_advance(F.r, 3);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_true(info.aborted);
    tw_test_conn_free(c);
}

static void body_timeout(void **state)
{
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12");
    tw_clock_advance(F.r, 29);
    tw_test_conn_feed_str(c, "34"); /* activity renews it */
    tw_clock_advance(F.r, 29);
    assert_false(tw_test_conn_disconnecting(c));
    tw_clock_advance(F.r, 2);
    assert_true(closing(c));
    assert_non_null(strstr(out_of(c), "408 "));
    tw_test_conn_free(c);
}

static void timeouts_settable(void **state)
{
    tw_site_options o;
    tw_site_options_init(&o);
    o.idle_timeout = 0.5;
    o.header_timeout = 0; /* off */
    site_down();
    site_up(&o);
    tw_test_conn *c = conn();
    tw_clock_advance(F.r, 0.6);
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    c = conn();
    tw_test_conn_feed_str(c, "GET / HTT");
    tw_clock_advance(F.r, 1000);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ limits */

static void max_connections(void **state)
{
    tw_site_options o;
    tw_site_options_init(&o);
    o.max_connections = 2;
    site_down();
    site_up(&o);
    tw_test_conn *a = conn(), *b = conn(), *x = conn();
    assert_false(tw_test_conn_disconnecting(a));
    assert_false(tw_test_conn_disconnecting(b));
    assert_true(tw_test_conn_disconnecting(x));
    assert_int_equal(tw_site_connection_count(F.site), 2);
    tw_test_conn_free(x);
    tw_test_conn_free(a);
    tw_test_conn *y = conn();
    assert_false(tw_test_conn_disconnecting(y));
    tw_test_conn_free(y);
    tw_test_conn_free(b);
}

static void max_requests(void **state)
{
    tw_site_options o;
    tw_site_options_init(&o);
    o.max_requests = 2;
    site_down();
    site_up(&o);
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_feed_str(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_non_null(strstr(out_of(c), "Connection: close"));
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ access log */

static void access_log(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    tw_access_log *log;
    assert_int_equal(tw_access_log_new_fd(fds[1], true, &log), 0);
    tw_site_options o;
    tw_site_options_init(&o);
    o.access_log = log;
    site_down();
    site_up(&o);
    tw_test_conn *c = conn();
    tw_test_conn_feed_str(c, "GET /hello?x=%221 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\n"
                             "User-Agent: t\"e\\st\x80\r\n\r\n");
    tw_test_conn_free(c);
    assert_int_equal(tw_access_log_flush(log), 0);
    char buf[1024] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = 0;
    assert_string_equal(buf, "192.168.1.1 - - [06/Nov/1994:08:49:37 +0000] "
                             "\"GET /hello?x=%221 HTTP/1.1\" 200 13 \"http://r/\" "
                             "\"t\\\"e\\\\st\\x80\"\n");
    site_down();
    tw_access_log_free(log);
    close(fds[0]);
    site_up(NULL);
}

/* ------------------------------------------------------------ tree */

static void tree_and_refs(void **state)
{
    tw_resource *root = tw_resource_new(NULL), *a = tw_resource_new(&hello_ops);
    assert_int_equal(tw_resource_put_child(root, "a", a), 0);
    assert_ptr_equal(tw_resource_child(root, "a", 1), a);
    assert_null(tw_resource_child(root, "b", 1));
    assert_int_equal(tw_resource_put_child(root, "x/y", tw_resource_new(&hello_ops)), TW_EINVAL);
    tw_resource *b = tw_resource_new(&hello_ops);
    tw_resource_ref(b);
    assert_int_equal(tw_resource_put_child(root, "a", b), 0); /* replaces a */
    assert_ptr_equal(tw_resource_child(root, "a", 1), b);
    tw_resource_unref(root);
    tw_resource_unref(b); /* ours: still alive until now */
}

static void mime_types(void **state)
{
    assert_string_equal(tw_mime_type("x.html", 6), "text/html");
    assert_string_equal(tw_mime_type("a/b.CSS", 7), "text/css");
    assert_string_equal(tw_mime_type("p.png", 5), "image/png");
    assert_null(tw_mime_type("README", 6));
    assert_null(tw_mime_type("dir.d/file", 10));
    assert_null(tw_mime_type("x.nosuchext", 11));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(get_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(pipelining_any_split, setup, teardown),
        cmocka_unit_test_setup_teardown(http10, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_close, setup, teardown),
        cmocka_unit_test_setup_teardown(head_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(response_splitting_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(head_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(unread_body_is_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(streamed_body, setup, teardown),
        cmocka_unit_test_setup_teardown(streamed_body_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(streamed_body_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(async_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(async_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(slowloris_head_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(body_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(timeouts_settable, setup, teardown),
        cmocka_unit_test_setup_teardown(max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(max_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(access_log, setup, teardown),
        cmocka_unit_test(tree_and_refs),
        cmocka_unit_test(mime_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
