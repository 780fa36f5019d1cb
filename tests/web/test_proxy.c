/* ctest: label=unit timeout=120 backends=once */
/* The reverse proxy resource over string transports on both sides: the
 * client talks to a site through a test connection, and every upstream
 * connection the proxy's pool makes is a string transport too (through the
 * agent's endpoint_for hook), so the test reads what the proxy sent
 * upstream and plays the upstream server. Time is the fake clock.
 *
 * Checked: path and query rewriting, hop-by-hop fields dropped both ways
 * (and those the Connection field names), X-Forwarded-*, Host, both bodies
 * streamed (the upload reaches the upstream before the client finished it;
 * pause/resume travel end to end), 502 for refused / malformed / oversized
 * / truncated upstream answers, 504 for timeouts, the client leaving
 * (upstream aborted), CRLF injection refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "twirl/endpoint.h"
#include "twirl/testing.h"
#include "twirl/web.h"
#include "twirl/web_client.h"

/* ================================================================ fixture */

enum { CONNECT_OK = 0, CONNECT_FAIL, CONNECT_HANG };
enum { MAX_UP = 16 };

typedef struct upconn {
    tw_string_transport *st;
    tw_protocol *p;
    char host[64];
} upconn;

typedef struct fx {
    tw_reactor *r;
    tw_site *site;
    upconn up[MAX_UP];
    size_t nup;
    int mode;
    tw_deferred *hanging[MAX_UP];
    tw_factory *hang_factory[MAX_UP];
    size_t nhanging;
} fx;

static fx F;

typedef struct fake_ep {
    tw_client_endpoint base;
    char host[64];
} fake_ep;

static tw_deferred *fake_connect(tw_client_endpoint *ep, tw_factory *f)
{
    fake_ep *e = (fake_ep *)ep;
    if (F.mode == CONNECT_FAIL)
        return tw_fail(tw_failure_new(TW_DOMAIN, -ECONNREFUSED, "Connection refused"));
    if (F.mode == CONNECT_HANG) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        F.hang_factory[F.nhanging] = f;
        F.hanging[F.nhanging++] = tw_deferred_ref(d);
        return d;
    }
    assert_true(F.nup < MAX_UP);
    upconn *c = &F.up[F.nup++];
    c->st = tw_string_transport_new(F.r);
    snprintf(c->host, sizeof c->host, "%s", e->host);
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", 8080, SOCK_STREAM);
    c->p = tw_factory_build(f, &a);
    assert_non_null(c->p);
    assert_int_equal(tw_string_transport_connect(c->st, c->p), 0);
    return tw_succeed(tw_value_make(c->p, NULL));
}

static const tw_client_endpoint_ops fake_ep_ops = { "fake", fake_connect, NULL };

static int fake_endpoint_for(tw_reactor *r, bool https, const char *host, uint16_t port, void *arg,
                             tw_client_endpoint **out)
{
    fake_ep *e = calloc(1, sizeof *e);
    e->base.ops = &fake_ep_ops;
    e->base.reactor = r;
    snprintf(e->host, sizeof e->host, "%s", host);
    *out = &e->base;
    return 0;
}

static tw_resource *proxy_to(const char *url, tw_proxy_options *o)
{
    tw_proxy_options def;
    if (!o) {
        tw_proxy_options_init(&def);
        o = &def;
    }
    o->agent.endpoint_for = fake_endpoint_for;
    tw_resource *p;
    assert_int_equal(tw_proxy_resource_new(F.r, url, o, &p), 0);
    return p;
}

/* Root: /api -> http://up.test:8080/base, /bare -> http://bare.test (no
 * path), /slash -> http://up.test:8080/s/, /small -> head limits of 1 KiB,
 * /fast -> 2 s timeouts, /keep -> keep_host. */
static void site_up(void)
{
    memset(&F, 0, sizeof F);
    F.r = tw_test_clock_new();
    assert_non_null(F.r);
    tw_resource *root = tw_resource_new(NULL);
    assert_int_equal(tw_resource_put_child(root, "api", proxy_to("http://up.test:8080/base", NULL)),
                     0);
    assert_int_equal(tw_resource_put_child(root, "bare", proxy_to("http://bare.test", NULL)), 0);
    assert_int_equal(tw_resource_put_child(root, "slash", proxy_to("http://up.test:8080/s/", NULL)),
                     0);
    tw_proxy_options o;
    tw_proxy_options_init(&o);
    o.agent.limits.max_header_bytes = 1024;
    assert_int_equal(tw_resource_put_child(root, "small", proxy_to("http://up.test/", &o)), 0);
    tw_proxy_options_init(&o);
    o.agent.connect_timeout = 2;
    o.agent.response_timeout = 2;
    o.read_timeout = 2;
    assert_int_equal(tw_resource_put_child(root, "fast", proxy_to("http://up.test/", &o)), 0);
    tw_proxy_options_init(&o);
    o.keep_host = true;
    o.no_forwarded = true;
    assert_int_equal(tw_resource_put_child(root, "keep", proxy_to("http://up.test/", &o)), 0);
    tw_site_options so;
    tw_site_options_init(&so);
    assert_int_equal(tw_site_new(F.r, root, &so, &F.site), 0);
}

static void settle(void)
{
    tw_clock_advance(F.r, 0);
    tw_clock_advance(F.r, 0);
}

static void site_down(void)
{
    tw_site_free(F.site);
    settle(); /* the pools are freed from a task: upstream connections aborted */
    for (size_t i = 0; i < F.nup; i++)
        tw_string_transport_end(F.up[i].st, 0);
    settle();
    for (size_t i = 0; i < F.nup; i++) {
        tw_protocol_free(F.up[i].p);
        tw_string_transport_free(F.up[i].st);
    }
    for (size_t i = 0; i < F.nhanging; i++)
        tw_deferred_unref(F.hanging[i]);
    settle();
    tw_reactor_free(F.r);
    memset(&F, 0, sizeof F);
}

static int setup(void **state)
{
    site_up();
    return 0;
}

static int teardown(void **state)
{
    site_down();
    return 0;
}

static tw_test_conn *client(void)
{
    tw_test_conn_options o = { .factory = tw_site_factory(F.site), .reactor = F.r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    tw_address peer;
    tw_address_from_ip(&peer, "192.0.2.7", 40000, SOCK_STREAM);
    tw_string_transport_set_peer(tw_test_conn_transport(c), &peer);
    return c;
}

static void send_str(tw_test_conn *c, const char *s)
{
    assert_int_equal(tw_test_conn_feed_str(c, s), 0);
    settle();
}

static const char *out(tw_test_conn *c)
{
    return tw_test_conn_written(c, NULL);
}

static const char *up_out(size_t i)
{
    assert_true(i < F.nup);
    return tw_string_transport_value(F.up[i].st, NULL);
}

static void up_send(size_t i, const char *s)
{
    assert_true(i < F.nup);
    assert_int_equal(tw_string_transport_deliver(F.up[i].st, s, strlen(s)), 0);
    settle();
}

static tw_string_transport_info up_info(size_t i)
{
    tw_string_transport_info in;
    tw_string_transport_get_info(F.up[i].st, &in);
    return in;
}

static tw_string_transport_info client_info(tw_test_conn *c)
{
    tw_string_transport_info in;
    tw_string_transport_get_info(tw_test_conn_transport(c), &in);
    return in;
}

static bool has(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* The field section of an upstream request, lower-cased, for "no such
 * field" checks. */
static bool has_field(const char *msg, const char *name)
{
    char want[128];
    snprintf(want, sizeof want, "\r\n%s:", name);
    const char *end = strstr(msg, "\r\n\r\n");
    size_t n = end ? (size_t)(end - msg) + 2 : strlen(msg);
    size_t wl = strlen(want);
    for (size_t i = 0; i + wl <= n; i++)
        if (strncasecmp(msg + i, want, wl) == 0)
            return true;
    return false;
}

/* ================================================================ tests */

static void forwards_path_query_and_fields(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "GET /api/a/b%20c?x=1&y=%2F HTTP/1.1\r\n"
                "Host: front.test:8000\r\n"
                "Connection: keep-alive, X-Secret\r\n"
                "X-Secret: s\r\n"
                "Keep-Alive: timeout=5\r\n"
                "TE: trailers\r\n"
                "Trailer: X-T\r\n"
                "Upgrade: h2c\r\n"
                "Proxy-Authorization: Basic eA==\r\n"
                "Proxy-Connection: keep-alive\r\n"
                "X-Forwarded-For: 203.0.113.1\r\n"
                "X-Forwarded-For: 203.0.113.2\r\n"
                "X-Forwarded-Proto: gopher\r\n"
                "X-Keep: yes\r\n"
                "\r\n");
    assert_int_equal(F.nup, 1);
    assert_string_equal(F.up[0].host, "up.test");
    const char *u = up_out(0);
    assert_true(has(u, "GET /base/a/b%20c?x=1&y=%2F HTTP/1.1\r\n"));
    assert_true(has(u, "\r\nHost: up.test:8080\r\n"));
    assert_true(has(u, "\r\nX-Forwarded-For: 203.0.113.1, 203.0.113.2, 192.0.2.7\r\n"));
    assert_true(has(u, "\r\nX-Forwarded-Proto: http\r\n"));
    assert_true(has(u, "\r\nX-Forwarded-Host: front.test:8000\r\n"));
    assert_true(has(u, "\r\nX-Keep: yes\r\n"));
    const char *gone[] = {
        "Connection",        "X-Secret",      "Keep-Alive",          "TE",
        "Trailer",           "Upgrade",       "Proxy-Authorization", "Proxy-Connection",
        "Transfer-Encoding", "Content-Length"
    };
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
        if (has_field(u, gone[i]))
            fail_msg("%s was forwarded:\n%s", gone[i], u);
    assert_false(has(u, "gopher"));

    up_send(0, "HTTP/1.1 201 Created\r\n"
               "Content-Length: 5\r\n"
               "Connection: keep-alive, X-Hop\r\n"
               "X-Hop: 1\r\n"
               "Keep-Alive: timeout=5\r\n"
               "Proxy-Authenticate: Basic\r\n"
               "Trailer: X-T\r\n"
               "X-Up: 1\r\n"
               "Set-Cookie: a=1\r\n"
               "Set-Cookie: b=2\r\n"
               "\r\nhello");
    const char *o = out(c);
    assert_true(has(o, "HTTP/1.1 201 Created\r\n"));
    assert_true(has(o, "\r\nX-Up: 1\r\n"));
    assert_true(has(o, "\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"));
    assert_true(has(o, "\r\nContent-Length: 5\r\n"));
    assert_true(has(o, "\r\n\r\nhello"));
    const char *gone_back[] = { "X-Hop", "Keep-Alive", "Proxy-Authenticate", "Trailer",
                                "Transfer-Encoding" };
    for (size_t i = 0; i < sizeof gone_back / sizeof *gone_back; i++)
        if (has_field(o, gone_back[i]))
            fail_msg("%s came back:\n%s", gone_back[i], o);
    assert_false(tw_test_conn_disconnecting(c));

    /* The upstream connection went back to the pool: the next request
     * takes it. */
    tw_test_conn_clear(c);
    tw_string_transport_clear(F.up[0].st);
    send_str(c, "GET /api HTTP/1.1\r\nHost: front.test\r\n\r\n");
    assert_int_equal(F.nup, 1);
    assert_true(has(up_out(0), "GET /base HTTP/1.1\r\n"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(has(out(c), "\r\n\r\nok"));
    tw_test_conn_free(c);
}

static void path_joins(void **state)
{
    static const struct {
        const char *in, *up;
    } cases[] = {
        { "/api/", "GET /base/ HTTP/1.1" },
        { "/api/x/", "GET /base/x/ HTTP/1.1" },
        { "/api//x", "GET /base//x HTTP/1.1" },
        { "/api?q", "GET /base?q HTTP/1.1" },
        { "/bare", "GET / HTTP/1.1" },
        { "/bare/x%2Fy", "GET /x%2Fy HTTP/1.1" },
        { "/slash", "GET /s/ HTTP/1.1" },
        { "/slash/", "GET /s/ HTTP/1.1" },
        { "/slash/a", "GET /s/a HTTP/1.1" },
        { "http://front.test/api/abs", "GET /base/abs HTTP/1.1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tw_test_conn *c = client();
        char req[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: front.test\r\n\r\n", cases[i].in);
        size_t before = F.nup;
        send_str(c, req);
        assert_int_equal(F.nup, before + 1);
        const char *u = up_out(F.nup - 1);
        if (strncmp(u, cases[i].up, strlen(cases[i].up)) != 0)
            fail_msg("%s went upstream as %.60s", cases[i].in, u);
        up_send(F.nup - 1, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        assert_true(has(out(c), "HTTP/1.1 204 No Content\r\n"));
        tw_test_conn_free(c);
    }
}

static void keep_host_and_no_forwarded(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "GET /keep/x HTTP/1.1\r\nHost: Front.Test\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
    const char *u = up_out(0);
    assert_true(has(u, "GET /x HTTP/1.1\r\n"));
    assert_true(has(u, "\r\nHost: Front.Test\r\n"));
    assert_false(has(u, "up.test"));
    assert_true(has(u, "\r\nX-Forwarded-For: 1.2.3.4\r\n")); /* passed on untouched */
    assert_false(has_field(u, "X-Forwarded-Proto"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    tw_test_conn_free(c);
}

static void http10_client_and_chunked_upstream(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "GET /api/c HTTP/1.1\r\nHost: a\r\n\r\n");
    up_send(0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    const char *o = out(c);
    assert_true(has(o, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_true(has(o, "5\r\nhello\r\n"));
    assert_false(has(o, "0\r\n\r\n"));
    up_send(0, "6\r\n world\r\n0\r\n\r\n");
    assert_true(has(out(c), "6\r\n world\r\n0\r\n\r\n"));
    tw_test_conn_free(c);

    /* HTTP/1.0: the body is delimited by closing. */
    c = client();
    send_str(c, "GET /api/c HTTP/1.0\r\n\r\n");
    up_send(0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    o = out(c);
    assert_true(has(o, "HTTP/1.1 200 OK\r\n"));
    assert_false(has_field(o, "Transfer-Encoding"));
    assert_true(has(o, "\r\n\r\nabc"));
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

static void head_keeps_the_length(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "HEAD /api/big HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(has(up_out(0), "HEAD /base/big HTTP/1.1\r\n"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 123456\r\nContent-Type: x/y\r\n\r\n");
    const char *o = out(c);
    assert_true(has(o, "\r\nContent-Length: 123456\r\n"));
    assert_true(has(o, "\r\nContent-Type: x/y\r\n"));
    assert_string_equal(strstr(o, "\r\n\r\n"), "\r\n\r\n"); /* no body */
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_clear(c);
    send_str(c, "GET /api/again HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(F.nup, 1); /* the connection was reused */
    up_send(0, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
    assert_true(has(out(c), "HTTP/1.1 304 Not Modified\r\n"));
    tw_test_conn_free(c);
}

static void upload_streams_and_pauses(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "POST /api/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: text/plain\r\n\r\n5\r\nhello\r\n");
    /* The head and the first piece are upstream before the body ended. */
    const char *u = up_out(0);
    assert_true(has(u, "POST /base/up HTTP/1.1\r\n"));
    assert_true(has(u, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_true(has(u, "\r\nContent-Type: text/plain\r\n"));
    assert_true(has(u, "\r\n\r\n5\r\nhello\r\n"));
    assert_false(has(u, "0\r\n\r\n"));

    /* The upstream connection is full: reading the client pauses. */
    tw_string_transport_info ui = up_info(0);
    assert_non_null(ui.producer);
    ui.producer->ops->pause_producing(ui.producer);
    settle();
    assert_int_equal(client_info(c).producer_state, TW_TEST_PAUSED);
    ui.producer->ops->resume_producing(ui.producer);
    settle();
    assert_int_equal(client_info(c).producer_state, TW_TEST_PRODUCING);

    send_str(c, "6\r\n world\r\n0\r\n\r\n");
    assert_true(has(up_out(0), "6\r\n world\r\n0\r\n\r\n"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(has(out(c), "\r\n\r\nok"));
    assert_false(tw_test_conn_disconnecting(c));

    /* A Content-Length body keeps its length. */
    tw_test_conn_clear(c);
    tw_string_transport_clear(F.up[0].st);
    send_str(c, "PUT /api/len HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcd");
    u = up_out(0);
    assert_true(has(u, "PUT /base/len HTTP/1.1\r\n"));
    assert_true(has(u, "\r\nContent-Length: 10\r\n"));
    assert_true(has(u, "\r\n\r\nabcd"));
    send_str(c, "efghij");
    assert_true(has(up_out(0), "abcdefghij"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(has(out(c), "HTTP/1.1 200 OK\r\n"));
    tw_test_conn_free(c);
}

/* Completes the i-th hanging connection attempt with a new string
 * transport. */
static void connect_hanging(size_t i)
{
    assert_true(i < F.nhanging);
    upconn *c = &F.up[F.nup++];
    c->st = tw_string_transport_new(F.r);
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", 8080, SOCK_STREAM);
    c->p = tw_factory_build(F.hang_factory[i], &a);
    assert_non_null(c->p);
    assert_int_equal(tw_string_transport_connect(c->st, c->p), 0);
    tw_deferred_callback(F.hanging[i], tw_value_make(c->p, NULL));
    settle();
}

static void expect_continue_waits_for_the_upstream(void **state)
{
    F.mode = CONNECT_HANG;
    tw_test_conn *c = client();
    send_str(c, "POST /api/e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                "Expect: 100-continue\r\n\r\n");
    assert_string_equal(out(c), ""); /* no upstream yet: no 100 */
    connect_hanging(0);
    /* The connection is up: 100 Continue, then the body flows. */
    assert_string_equal(out(c), "HTTP/1.1 100 Continue\r\n\r\n");
    const char *u = up_out(0);
    assert_true(has(u, "POST /base/e HTTP/1.1\r\n"));
    assert_false(has_field(u, "Expect"));
    send_str(c, "abc");
    assert_true(has(up_out(0), "\r\n\r\nabc"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(has(out(c), "HTTP/1.1 200 OK\r\n"));
    tw_test_conn_free(c);
}

static void download_backpressure(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "GET /api/dl HTTP/1.1\r\nHost: a\r\n\r\n");
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 30000\r\n\r\n");
    char piece[10000];
    memset(piece, 'x', sizeof piece);
    assert_int_equal(tw_string_transport_deliver(F.up[0].st, piece, sizeof piece), 0);
    settle();
    size_t len;
    tw_test_conn_written(c, &len);
    assert_true(len > 10000);

    /* The client's connection is full: the upstream is no longer read. */
    tw_string_transport_info ci = client_info(c);
    assert_non_null(ci.producer);
    assert_true(ci.streaming);
    ci.producer->ops->pause_producing(ci.producer);
    settle();
    assert_int_equal(up_info(0).producer_state, TW_TEST_PAUSED);
    /* What the upstream still delivers meanwhile is held, not written. */
    size_t before;
    tw_test_conn_written(c, &before);
    memset(piece, 'y', sizeof piece);
    assert_int_equal(tw_string_transport_deliver(F.up[0].st, piece, sizeof piece), 0);
    settle();
    tw_test_conn_written(c, &len);
    assert_int_equal(len, before);
    /* It drains: the held bytes go, reading resumes. */
    ci.producer->ops->resume_producing(ci.producer);
    settle();
    tw_test_conn_written(c, &len);
    assert_int_equal(len, before + sizeof piece);
    assert_int_equal(up_info(0).producer_state, TW_TEST_PRODUCING);
    memset(piece, 'z', sizeof piece);
    assert_int_equal(tw_string_transport_deliver(F.up[0].st, piece, sizeof piece), 0);
    settle();
    tw_test_conn_written(c, &len);
    assert_int_equal(len, before + 2 * sizeof piece);
    assert_false(tw_test_conn_disconnecting(c));
    assert_null(client_info(c).producer); /* finished: unregistered */
    tw_test_conn_free(c);
}

static void refused_is_502(void **state)
{
    F.mode = CONNECT_FAIL;
    tw_test_conn *c = client();
    send_str(c, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(has(out(c), "HTTP/1.1 502 Bad Gateway\r\n"));
    assert_false(has(out(c), "up.test")); /* the upstream is not named to clients */
    assert_false(tw_test_conn_disconnecting(c));
    /* The same with a body the client was still sending: closed after. */
    tw_test_conn_clear(c);
    send_str(c, "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc");
    assert_true(has(out(c), "HTTP/1.1 502 Bad Gateway\r\n"));
    tw_test_conn_free(c);
}

static void bad_upstream_answers_are_502(void **state)
{
    static const char *answers[] = {
        /* both Content-Length and Transfer-Encoding */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* garbage */
        "HTTTP/1.1 200 OK\r\n\r\n",
        /* a bare LF in the head */
        "HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\n",
        /* a CR inside a field value */
        "HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n",
        /* two different lengths */
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        /* a switch of protocols nobody asked for */
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        /* an unknown transfer coding */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        tw_test_conn *c = client();
        send_str(c, "GET /api/bad HTTP/1.1\r\nHost: a\r\n\r\n");
        up_send(F.nup - 1, answers[i]);
        if (!has(out(c), "HTTP/1.1 502 Bad Gateway\r\n"))
            fail_msg("answer %zu gave:\n%s", i, out(c));
        assert_true(up_info(F.nup - 1).aborted);
        tw_test_conn_free(c);
    }
}

static void oversized_upstream_head_is_502(void **state)
{
    tw_test_conn *c = client();
    send_str(c, "GET /small/x HTTP/1.1\r\nHost: a\r\n\r\n");
    char big[2048];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char resp[2200];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nX-Big: %s\r\n\r\n", big);
    up_send(0, resp);
    assert_true(has(out(c), "HTTP/1.1 502 Bad Gateway\r\n"));
    tw_test_conn_free(c);
}

static void upstream_closing_early(void **state)
{
    /* Before the head: 502. */
    tw_test_conn *c = client();
    send_str(c, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
    up_send(0, "HTTP/1.1 200 O");
    assert_int_equal(tw_string_transport_end(F.up[0].st, -ECONNRESET), 0);
    settle();
    assert_true(has(out(c), "HTTP/1.1 502 Bad Gateway\r\n"));
    tw_test_conn_free(c);

    /* In the middle of the body: the client's connection is aborted (its
     * framing cannot say the body failed). */
    c = client();
    send_str(c, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t i = F.nup - 1;
    up_send(i, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    char piece[20000];
    memset(piece, 'p', sizeof piece);
    assert_int_equal(tw_string_transport_deliver(F.up[i].st, piece, sizeof piece), 0);
    settle();
    assert_true(has(out(c), "HTTP/1.1 200 OK\r\n"));
    assert_int_equal(tw_string_transport_end(F.up[i].st, -ECONNRESET), 0);
    settle();
    assert_true(client_info(c).aborted);
    tw_test_conn_free(c);
}

static void timeouts_are_504(void **state)
{
    /* No response head in time. */
    tw_test_conn *c = client();
    send_str(c, "GET /fast/x HTTP/1.1\r\nHost: a\r\n\r\n");
    tw_clock_advance(F.r, 1.5);
    assert_string_equal(out(c), "");
    tw_clock_advance(F.r, 1.0);
    settle();
    assert_true(has(out(c), "HTTP/1.1 504 Gateway Timeout\r\n"));
    assert_true(up_info(0).aborted);
    tw_test_conn_free(c);

    /* No connection in time. */
    F.mode = CONNECT_HANG;
    c = client();
    send_str(c, "GET /fast/y HTTP/1.1\r\nHost: a\r\n\r\n");
    tw_clock_advance(F.r, 2.5);
    settle();
    assert_true(has(out(c), "HTTP/1.1 504 Gateway Timeout\r\n"));
    tw_test_conn_free(c);
    F.mode = CONNECT_OK;

    /* The body stalls: cut after read_timeout of silence, but not while
     * the client is the one not reading. */
    c = client();
    send_str(c, "GET /fast/z HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t i = F.nup - 1;
    up_send(i, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    char piece[20000];
    memset(piece, 'p', sizeof piece);
    assert_int_equal(tw_string_transport_deliver(F.up[i].st, piece, sizeof piece), 0);
    settle();
    tw_string_transport_info ci = client_info(c);
    ci.producer->ops->pause_producing(ci.producer);
    tw_clock_advance(F.r, 5);
    settle();
    assert_false(client_info(c).aborted);
    ci.producer->ops->resume_producing(ci.producer);
    settle();
    tw_clock_advance(F.r, 1.5);
    assert_int_equal(tw_string_transport_deliver(F.up[i].st, piece, sizeof piece), 0);
    settle();
    tw_clock_advance(F.r, 1.5);
    settle();
    assert_false(client_info(c).aborted);
    tw_clock_advance(F.r, 1.0);
    settle();
    assert_true(client_info(c).aborted);
    assert_true(up_info(i).aborted);
    tw_test_conn_free(c);
}

static void client_leaving_cancels_upstream(void **state)
{
    /* Before the head: the upstream request is cancelled (its connection
     * aborted). */
    tw_test_conn *c = client();
    send_str(c, "GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(F.nup, 1);
    assert_int_equal(tw_test_conn_lose(c, -ECONNRESET), 0);
    settle();
    assert_true(up_info(0).aborted);
    tw_test_conn_free(c);

    /* While the body streams. */
    c = client();
    send_str(c, "GET /api/y HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t i = F.nup - 1;
    up_send(i, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc");
    assert_true(has(out(c), "200 OK"));
    assert_int_equal(tw_test_conn_lose(c, -ECONNRESET), 0);
    settle();
    assert_true(up_info(i).aborted);
    tw_test_conn_free(c);

    /* While the upload streams. */
    c = client();
    send_str(c, "POST /api/z HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc");
    i = F.nup - 1;
    assert_true(has(up_out(i), "\r\n\r\nabc"));
    assert_int_equal(tw_test_conn_lose(c, -ECONNRESET), 0);
    settle();
    assert_true(up_info(i).aborted);
    tw_test_conn_free(c);
}

static void injection_is_refused(void **state)
{
    static const char *bad[] = {
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Injected: 1\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: b\nX-Injected: 1\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n X-Injected: 1\r\n\r\n",
        "GET /api/x\r\nX-Injected: 1 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tw_test_conn *c = client();
        size_t n = strlen(bad[i]);
        if (i == 4)
            n = sizeof "GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n" - 1;
        assert_int_equal(tw_test_conn_feed(c, bad[i], n), 0);
        settle();
        if (!has(out(c), "HTTP/1.1 400 Bad Request\r\n"))
            fail_msg("request %zu gave:\n%s", i, out(c));
        tw_test_conn_free(c);
    }
    assert_int_equal(F.nup, 0); /* nothing reached the upstream */

    /* Encoded CR LF in the path stays encoded on the way. */
    tw_test_conn *c = client();
    send_str(c, "GET /api/a%0D%0AX-Injected:%201 HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *u = up_out(0);
    assert_true(has(u, "GET /base/a%0D%0AX-Injected:%201 HTTP/1.1\r\n"));
    assert_false(has(u, "\r\nX-Injected"));
    up_send(0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    tw_test_conn_free(c);
}

static void connect_refused_and_bad_urls(void **state)
{
    tw_resource *r;
    const char *bad[] = { "ftp://x/", "http://", "http://x/?q=1", "http://x/#f", "x", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(tw_proxy_resource_new(F.r, bad[i], NULL, &r), TW_EINVAL);
    assert_int_equal(tw_proxy_resource_new(F.r, "https://x:8443/p", NULL, &r), 0);
    tw_resource_unref(r);
    settle();

    /* CONNECT is not proxied. */
    tw_resource *root;
    assert_int_equal(tw_proxy_resource_new(F.r, "http://up.test/", NULL, &root), 0);
    tw_site *s;
    assert_int_equal(tw_site_new(F.r, root, NULL, &s), 0);
    tw_test_conn_options o = { .factory = tw_site_factory(s), .reactor = F.r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_int_equal(
        tw_test_conn_feed_str(c, "CONNECT up.test:443 HTTP/1.1\r\nHost: up.test\r\n\r\n"), 0);
    settle();
    assert_true(has(out(c), "HTTP/1.1 405 Method Not Allowed\r\n"));
    tw_test_conn_free(c);
    tw_site_free(s);
    settle();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(forwards_path_query_and_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(path_joins, setup, teardown),
        cmocka_unit_test_setup_teardown(keep_host_and_no_forwarded, setup, teardown),
        cmocka_unit_test_setup_teardown(http10_client_and_chunked_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(head_keeps_the_length, setup, teardown),
        cmocka_unit_test_setup_teardown(upload_streams_and_pauses, setup, teardown),
        cmocka_unit_test_setup_teardown(expect_continue_waits_for_the_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(download_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_is_502, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_upstream_answers_are_502, setup, teardown),
        cmocka_unit_test_setup_teardown(oversized_upstream_head_is_502, setup, teardown),
        cmocka_unit_test_setup_teardown(upstream_closing_early, setup, teardown),
        cmocka_unit_test_setup_teardown(timeouts_are_504, setup, teardown),
        cmocka_unit_test_setup_teardown(client_leaving_cancels_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(injection_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_refused_and_bad_urls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
