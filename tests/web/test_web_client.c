/* ctest: label=unit timeout=120 backends=once */
/* The HTTP client against fake servers: every connection the agent makes
 * is a string transport (through an endpoint_for hook), so the test reads
 * what the client wrote and feeds the server's bytes — whole, split at
 * every byte boundary, and byte by byte. Time is the fake clock. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "twirl/deferred.h"
#include "twirl/endpoint.h"
#include "twirl/testing.h"
#include "twirl/web_client.h"

/* ================================================================ fixture */

enum { CONNECT_OK = 0, CONNECT_FAIL, CONNECT_HANG };
enum { MAX_CONNS = 64 };

typedef struct fconn {
    tw_string_transport *st;
    tw_protocol *p;
    char host[128];
    uint16_t port;
    bool https;
} fconn;

typedef struct fx {
    tw_reactor *r;
    tw_agent *base, *redirect, *decoder, *top;
    fconn conns[MAX_CONNS];
    size_t nconns;
    int mode;
    tw_deferred *hanging[MAX_CONNS];
    size_t nhanging;
    size_t endpoints;
    char ep_host[128];
} fx;

typedef struct fake_ep {
    tw_client_endpoint base;
    fx *x;
    char host[128];
    uint16_t port;
    bool https;
} fake_ep;

static tw_deferred *fake_connect(tw_client_endpoint *ep, tw_factory *f)
{
    fake_ep *e = (fake_ep *)ep;
    fx *x = e->x;
    if (x->mode == CONNECT_FAIL)
        return tw_fail(tw_failure_new(TW_DOMAIN, -ECONNREFUSED, "Connection refused"));
    if (x->mode == CONNECT_HANG) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        x->hanging[x->nhanging++] = tw_deferred_ref(d);
        return d;
    }
    assert_true(x->nconns < MAX_CONNS);
    fconn *c = &x->conns[x->nconns++];
    c->st = tw_string_transport_new(x->r);
    snprintf(c->host, sizeof c->host, "%s", e->host);
    c->port = e->port;
    c->https = e->https;
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", e->port, SOCK_STREAM);
    c->p = tw_factory_build(f, &a);
    assert_non_null(c->p);
    assert_int_equal(tw_string_transport_connect(c->st, c->p), 0);
    return tw_succeed(tw_value_make(c->p, NULL));
}

static const tw_client_endpoint_ops fake_ep_ops = { "fake", fake_connect, NULL };

static int fake_endpoint_for(tw_reactor *r, bool https, const char *host, uint16_t port, void *arg,
                             tw_client_endpoint **out)
{
    fx *x = arg;
    if (strcmp(host, "no-endpoint") == 0)
        return TW_ENOTFOUND;
    fake_ep *e = calloc(1, sizeof *e);
    e->base.ops = &fake_ep_ops;
    e->base.reactor = r;
    e->x = x;
    snprintf(e->host, sizeof e->host, "%s", host);
    snprintf(x->ep_host, sizeof x->ep_host, "%s", host);
    e->port = port;
    e->https = https;
    x->endpoints++;
    *out = &e->base;
    return 0;
}

/* A fixture: base agent with fake connections; redirects / decoding on
 * request. opts may be NULL. */
static fx *fx_new_opts(tw_agent_options *opts, bool redirects, bool decode)
{
    fx *x = calloc(1, sizeof *x);
    x->r = tw_test_clock_new();
    assert_non_null(x->r);
    tw_agent_options o;
    if (opts)
        o = *opts;
    else
        tw_agent_options_init(&o);
    o.endpoint_for = fake_endpoint_for;
    o.endpoint_arg = x;
    assert_int_equal(tw_agent_new(x->r, &o, &x->base), 0);
    x->top = x->base;
    if (redirects) {
        assert_int_equal(tw_redirect_agent_new(x->top, 0, &x->redirect), 0);
        x->top = x->redirect;
    }
    if (decode) {
        assert_int_equal(tw_content_decoder_agent_new(x->top, NULL, &x->decoder), 0);
        x->top = x->decoder;
    }
    return x;
}

static fx *fx_new(void)
{
    return fx_new_opts(NULL, false, false);
}

static void settle(fx *x)
{
    tw_clock_advance(x->r, 0);
    tw_clock_advance(x->r, 0);
}

static void fx_free(fx *x)
{
    tw_agent_free(x->decoder);
    tw_agent_free(x->redirect);
    tw_agent_free(x->base);
    for (size_t i = 0; i < x->nconns; i++)
        tw_string_transport_end(x->conns[i].st, 0);
    settle(x);
    for (size_t i = 0; i < x->nconns; i++) {
        tw_protocol_free(x->conns[i].p);
        tw_string_transport_free(x->conns[i].st);
    }
    for (size_t i = 0; i < x->nhanging; i++)
        tw_deferred_unref(x->hanging[i]);
    settle(x);
    tw_reactor_free(x->r);
    free(x);
}

static tw_string_transport *st(fx *x, size_t i)
{
    assert_true(i < x->nconns);
    return x->conns[i].st;
}

static const char *written(fx *x, size_t i)
{
    return tw_string_transport_value(st(x, i), NULL);
}

static void feedn(fx *x, size_t i, const void *data, size_t len)
{
    assert_int_equal(tw_string_transport_deliver(st(x, i), data, len), 0);
}

static void feed(fx *x, size_t i, const char *s)
{
    feedn(x, i, s, strlen(s));
}

static tw_string_transport_info info(fx *x, size_t i)
{
    tw_string_transport_info in;
    tw_string_transport_get_info(st(x, i), &in);
    return in;
}

/* ================================================================ outcomes */

typedef struct outcome {
    int fired; /* 1: response, 2: failure */
    tw_response *resp;
    tw_failure *fail;
    tw_deferred *d;
    /* body, when read */
    bool read;      /* read_body in the response callback */
    size_t max;     /* its limit */
    int body_fired; /* 1: bytes, 2: failure */
    tw_body_bytes *body;
    tw_failure *body_fail;
} outcome;

static tw_result body_ok(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->body_fired = 1;
    o->body = in->value.ptr;
    in->value = TW_VALUE_NONE;
    return TW_RESULT_NONE;
}

static tw_result body_bad(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->body_fired = 2;
    o->body_fail = in->failure;
    in->failure = NULL;
    return TW_RESULT_NONE;
}

static void read_into(outcome *o, size_t max)
{
    tw_deferred *d = tw_read_body(o->resp, max);
    assert_non_null(d);
    tw_deferred_add_callbacks(d, body_ok, body_bad, o);
    tw_deferred_unref(d);
}

static tw_result got_response(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired = 1;
    tw_result r = tw_result_move(in);
    o->resp = r.value.ptr;
    if (o->read)
        read_into(o, o->max);
    return TW_RESULT_NONE;
}

static tw_result got_failure(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired = 2;
    o->fail = in->failure;
    in->failure = NULL;
    return TW_RESULT_NONE;
}

static void request_on(tw_agent *a, outcome *o, const char *method, const char *url,
                       const tw_http_header *h, size_t n, tw_body_producer *body)
{
    o->d = tw_agent_request(a, method, url, h, n, body);
    assert_non_null(o->d);
    tw_deferred_add_callbacks(o->d, got_response, got_failure, o);
}

static void request(fx *x, outcome *o, const char *method, const char *url)
{
    request_on(x->top, o, method, url, NULL, 0, NULL);
}

static void outcome_clear(outcome *o)
{
    /* The callbacks point at o: a request still under way is cancelled. */
    if (o->d && !o->fired)
        tw_deferred_cancel(o->d);
    tw_deferred_unref(o->d);
    tw_response_unref(o->resp);
    tw_failure_unref(o->fail);
    free(o->body);
    tw_failure_unref(o->body_fail);
    memset(o, 0, sizeof *o);
}

static void expect_failure(outcome *o, int code, const char *needle)
{
    assert_int_equal(o->fired, 2);
    char buf[1024];
    tw_failure_format(o->fail, buf, sizeof buf);
    if (tw_failure_code(o->fail) != code || (needle && !strstr(buf, needle)))
        fail_msg("expected code %d containing '%s', got: %s", code, needle ? needle : "", buf);
}

static void expect_body(outcome *o, const char *text)
{
    if (o->body_fired == 2) {
        char buf[1024];
        tw_failure_format(o->body_fail, buf, sizeof buf);
        fail_msg("body failed: %s", buf);
    }
    assert_int_equal(o->body_fired, 1);
    assert_int_equal(o->body->len, strlen(text));
    assert_memory_equal(o->body->data, text, strlen(text));
    assert_int_equal(o->body->data[o->body->len], 0);
}

static bool header_is(tw_response *r, const char *name, const char *value)
{
    tw_http_slice v;
    return tw_response_header(r, name, &v) && v.len == strlen(value) &&
           memcmp(v.ptr, value, v.len) == 0;
}

/* ================================================================ URLs */

static void url_parse_forms(void **state)
{
    tw_url u;
    const char *s = "HTTPS://Example.COM:8443/a/b?x=1&y#frag";
    assert_int_equal(tw_url_parse(s, strlen(s), &u), 0);
    assert_true(u.https);
    assert_int_equal(u.port, 8443);
    assert_int_equal(u.host.len, 11);
    assert_memory_equal(u.host.ptr, "Example.COM", 11);
    assert_memory_equal(u.authority.ptr, "Example.COM:8443", u.authority.len);
    assert_memory_equal(u.path.ptr, "/a/b", u.path.len);
    assert_memory_equal(u.query.ptr, "x=1&y", u.query.len);
    assert_memory_equal(u.fragment.ptr, "frag", u.fragment.len);

    s = "http://[::1]/";
    assert_int_equal(tw_url_parse(s, strlen(s), &u), 0);
    assert_true(u.ipv6);
    assert_int_equal(u.port, 80);
    assert_memory_equal(u.host.ptr, "::1", 3);
    s = "http://h";
    assert_int_equal(tw_url_parse(s, strlen(s), &u), 0);
    assert_int_equal(u.path.len, 0);
    assert_null(u.query.ptr);
    s = "http://h:/x"; /* empty port: the default */
    assert_int_equal(tw_url_parse(s, strlen(s), &u), 0);
    assert_int_equal(u.port, 80);

    static const char *bad[] = {
        "ftp://h/",       "http:/h",      "http://",      "http://u@h/",   "http://h:0/",
        "http://h:65536", "http://h:8x/", "http://[::1/", "http://h /",    "http://h/\x7f",
        "http://h/a b",   "//h/",         "http://[]/",   "http://h\x80/", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (tw_url_parse(bad[i], strlen(bad[i]), &u) != TW_EINVAL)
            fail_msg("accepted bad URL '%s'", bad[i]);
}

static void url_join_rfc3986(void **state)
{
    /* RFC 3986 §5.4 examples, on an http base. */
    static const char base[] = "http://a/b/c/d;p?q";
    static const struct {
        const char *ref, *want;
    } cases[] = {
        { "g", "http://a/b/c/g" },
        { "./g", "http://a/b/c/g" },
        { "g/", "http://a/b/c/g/" },
        { "/g", "http://a/g" },
        { "//g", "http://g" },
        { "?y", "http://a/b/c/d;p?y" },
        { "g?y", "http://a/b/c/g?y" },
        { "#s", "http://a/b/c/d;p?q#s" },
        { "g#s", "http://a/b/c/g#s" },
        { "g?y#s", "http://a/b/c/g?y#s" },
        { ";x", "http://a/b/c/;x" },
        { "g;x", "http://a/b/c/g;x" },
        { "", "http://a/b/c/d;p?q" },
        { ".", "http://a/b/c/" },
        { "./", "http://a/b/c/" },
        { "..", "http://a/b/" },
        { "../", "http://a/b/" },
        { "../g", "http://a/b/g" },
        { "../..", "http://a/" },
        { "../../", "http://a/" },
        { "../../g", "http://a/g" },
        { "../../../g", "http://a/g" },
        { "../../../../g", "http://a/g" },
        { "/./g", "http://a/g" },
        { "/../g", "http://a/g" },
        { "g.", "http://a/b/c/g." },
        { ".g", "http://a/b/c/.g" },
        { "g..", "http://a/b/c/g.." },
        { "..g", "http://a/b/c/..g" },
        { "./../g", "http://a/b/g" },
        { "./g/.", "http://a/b/c/g/" },
        { "g/./h", "http://a/b/c/g/h" },
        { "g/../h", "http://a/b/c/h" },
        { "g;x=1/./y", "http://a/b/c/g;x=1/y" },
        { "g;x=1/../y", "http://a/b/c/y" },
        { "https://other:8443/x", "https://other:8443/x" },
        { "/caf\xc3\xa9 x", "http://a/caf%C3%A9%20x" },
        { "/100%", "http://a/100%25" },
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        int rc = tw_url_join(base, cases[i].ref, strlen(cases[i].ref), out, sizeof out, &n);
        if (rc != 0 || strcmp(out, cases[i].want) != 0)
            fail_msg("join '%s': rc %d, got '%s', want '%s'", cases[i].ref, rc, rc ? "" : out,
                     cases[i].want);
        assert_int_equal(n, strlen(out));
    }
    assert_int_equal(tw_url_join(base, "ftp://x/", 8, out, sizeof out, NULL), TW_EINVAL);
    assert_int_equal(tw_url_join("nope", "/x", 2, out, sizeof out, NULL), TW_EINVAL);
    assert_int_equal(tw_url_join(base, "/long/path", 10, out, 12, NULL), TW_ELIMIT);
}

/* ================================================================ requests */

static void get_writes_head_and_reads_body(void **state)
{
    fx *x = fx_new();
    outcome o = { .read = true };
    tw_http_header h[] = { { { "X-Test", 6 }, { "yes", 3 } } };
    request_on(x->top, &o, "GET", "http://Example.COM/p?q=1#frag", h, 1, NULL);
    assert_int_equal(x->nconns, 1);
    assert_string_equal(x->ep_host, "example.com");
    assert_int_equal(x->conns[0].port, 80);
    assert_string_equal(written(x, 0),
                        "GET /p?q=1 HTTP/1.1\r\nHost: Example.COM\r\nX-Test: yes\r\n\r\n");
    assert_int_equal(o.fired, 0);
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    assert_int_equal(o.fired, 1);
    assert_int_equal(tw_response_status(o.resp), 200);
    assert_int_equal(tw_response_version_minor(o.resp), 1);
    assert_memory_equal(tw_response_reason(o.resp).ptr, "OK", 2);
    assert_true(header_is(o.resp, "x-a", "b"));
    uint64_t len = 0;
    assert_true(tw_response_length(o.resp, &len));
    assert_int_equal(len, 5);
    assert_string_equal(tw_response_url(o.resp), "http://Example.COM/p?q=1");
    assert_string_equal(tw_response_method(o.resp), "GET");
    assert_null(tw_response_previous(o.resp));
    assert_int_equal(o.body_fired, 0); /* body_end comes from the loop */
    settle(x);
    expect_body(&o, "hello");
    /* Kept for the next request. */
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    outcome_clear(&o);
    fx_free(x);
}

static void head_fields_and_defaults(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.user_agent = "twirl-test/1";
    fx *x = fx_new_opts(&opts, false, false);
    outcome o = { 0 };
    tw_http_header h[] = { { { "Host", 4 }, { "override", 8 } } };
    request_on(x->top, &o, "POST", "http://h:8080", h, 1, NULL);
    assert_string_equal(written(x, 0), "POST / HTTP/1.1\r\nUser-Agent: twirl-test/1\r\n"
                                       "Host: override\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(x->conns[0].port, 8080);
    outcome_clear(&o);
    /* IPv6 literal and explicit port in Host. */
    request_on(x->top, &o, "DELETE", "http://[::1]:81/x", NULL, 0, NULL);
    assert_string_equal(written(x, 1), "DELETE /x HTTP/1.1\r\nHost: [::1]:81\r\n"
                                       "User-Agent: twirl-test/1\r\n\r\n");
    assert_string_equal(x->ep_host, "::1");
    outcome_clear(&o);
    fx_free(x);
}

static void bad_arguments_fail_at_once(void **state)
{
    fx *x = fx_new();
    static const char *bad_urls[] = { "ftp://h/", "http://h:99999/", "/relative", "http://u@h/",
                                      "http://h/a b" };
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        outcome o = { 0 };
        request(x, &o, "GET", bad_urls[i]);
        expect_failure(&o, TW_EINVAL, "bad URL");
        outcome_clear(&o);
    }
    outcome o = { 0 };
    request(x, &o, "GE T", "http://h/");
    expect_failure(&o, TW_EINVAL, "bad method");
    outcome_clear(&o);
    request(x, &o, "CONNECT", "http://h/");
    expect_failure(&o, TW_EINVAL, "CONNECT");
    outcome_clear(&o);
    tw_http_header crlf[] = { { { "X", 1 }, { "a\r\nB: c", 8 } } };
    request_on(x->top, &o, "GET", "http://h/", crlf, 1, NULL);
    expect_failure(&o, TW_EINVAL, "malformed");
    outcome_clear(&o);
    tw_http_header cl[] = { { { "content-length", 14 }, { "3", 1 } } };
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_bytes("abc", 3, &b), 0);
    request_on(x->top, &o, "POST", "http://h/", cl, 1, b); /* b is destroyed */
    expect_failure(&o, TW_EINVAL, "Content-Length");
    outcome_clear(&o);
    assert_int_equal(x->nconns, 0);
    fx_free(x);
}

/* ================================================================ splits */

typedef struct case_ {
    const char *name;
    const char *method;
    const char *wire; /* the server's bytes */
    bool until_close; /* the server closes after them */
    int status;
    const char *body; /* expected */
    bool reusable;
} case_;

static const case_ good_cases[] = {
    { "length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", false, 200,
      "hello world", true },
    { "chunked", "GET",
      "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n"
      "1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n",
      false, 201, "hello world", true },
    { "until-close", "GET", "HTTP/1.1 200 OK\r\n\r\nall of it", true, 200, "all of it", false },
    { "http/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok",
      false },
    { "1.0 keep-alive", "GET",
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok",
      true },
    { "close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", false,
      200, "bye", false },
    { "interim", "GET",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
      false, 200, "x", true },
    { "head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false, 200, "", true },
    { "204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", false, 204, "", true },
    { "304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, 304, "",
      true },
    { "empty", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 200, "", true },
    { "empty chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      false, 200, "", true },
};

/* Runs one case with the input cut as asked: parts[i] bytes per delivery
 * (0 ends the list). late: deliver_body only after everything arrived. */
static void run_case(const case_ *c, const size_t *parts, bool late, const char *how)
{
    fx *x = fx_new();
    outcome o = { .read = !late };
    request(x, &o, c->method, "http://h/r");
    size_t len = strlen(c->wire), at = 0;
    for (size_t i = 0; parts[i] && at < len; i++) {
        size_t n = parts[i] > len - at ? len - at : parts[i];
        feedn(x, 0, c->wire + at, n);
        at += n;
    }
    if (at < len)
        feedn(x, 0, c->wire + at, len - at);
    if (c->until_close)
        tw_string_transport_end(st(x, 0), 0);
    settle(x);
    if (o.fired != 1)
        fail_msg("%s (%s): no response", c->name, how);
    assert_int_equal(tw_response_status(o.resp), c->status);
    if (late) {
        read_into(&o, 0);
        settle(x);
    }
    if (o.body_fired != 1 || o.body->len != strlen(c->body) ||
        memcmp(o.body->data, c->body, o.body->len) != 0)
        fail_msg("%s (%s): body fired %d '%s'", c->name, how, o.body_fired,
                 o.body_fired == 1 ? o.body->data : "");
    bool open = info(x, 0).state == TW_TRANSPORT_OPEN;
    if (open != c->reusable)
        fail_msg("%s (%s): connection %s", c->name, how, open ? "kept" : "closed");
    if (c->reusable) {
        /* The next request goes out on the same connection. */
        outcome o2 = { .read = true };
        tw_string_transport_clear(st(x, 0));
        request(x, &o2, "GET", "http://h/next");
        assert_int_equal(x->nconns, 1);
        assert_string_equal(written(x, 0), "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!");
        settle(x);
        expect_body(&o2, "!");
        outcome_clear(&o2);
    }
    outcome_clear(&o);
    fx_free(x);
}

static void responses_survive_every_split(void **state)
{
    for (size_t k = 0; k < sizeof good_cases / sizeof good_cases[0]; k++) {
        const case_ *c = &good_cases[k];
        size_t len = strlen(c->wire);
        char how[64];
        size_t whole[] = { len, 0 };
        run_case(c, whole, false, "whole");
        run_case(c, whole, true, "whole, late");
        for (size_t cut = 1; cut < len; cut++) {
            size_t parts[] = { cut, len - cut, 0 };
            snprintf(how, sizeof how, "cut at %zu", cut);
            run_case(c, parts, cut % 2 == 0, how);
        }
        for (size_t chunk = 1; chunk <= 3; chunk++) {
            size_t parts[512];
            size_t n = 0;
            for (size_t at = 0; at < len && n < 511; at += chunk)
                parts[n++] = chunk;
            parts[n] = 0;
            snprintf(how, sizeof how, "chunks of %zu", chunk);
            run_case(c, parts, false, how);
        }
    }
}

typedef struct bad_case {
    const char *name;
    const char *wire;
    int code;
    const char *needle;
    bool head; /* fails the request (else the body) */
} bad_case;

static const bad_case bad_cases[] = {
    { "bare LF", "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\nx", TW_EPROTO, "malformed response",
      true },
    { "bad status", "HTTP/1.1 2000 OK\r\n\r\n", TW_EPROTO, "malformed response", true },
    { "not http", "SSH-2.0-OpenSSH_9\r\n\r\n", TW_EPROTO, "malformed response", true },
    { "two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      TW_EPROTO, "malformed response", true },
    { "te and cl", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      TW_EPROTO, "malformed response", true },
    { "obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", TW_EPROTO, "malformed response", true },
    { "101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
      TW_EPROTO, "switched protocols", true },
    { "bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", TW_EPROTO,
      "malformed chunked body", false },
    { "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", TW_EPROTO,
      "malformed chunked body", false },
};

static void malformed_responses_fail_clearly(void **state)
{
    for (size_t k = 0; k < sizeof bad_cases / sizeof bad_cases[0]; k++) {
        const bad_case *c = &bad_cases[k];
        size_t len = strlen(c->wire);
        for (size_t cut = 0; cut < len; cut++) {
            fx *x = fx_new();
            outcome o = { .read = true };
            request(x, &o, "GET", "http://h/");
            if (cut)
                feedn(x, 0, c->wire, cut);
            if (info(x, 0).state == TW_TRANSPORT_OPEN)
                feedn(x, 0, c->wire + cut, len - cut);
            settle(x);
            char buf[1024] = "";
            if (c->head) {
                if (o.fired != 2)
                    fail_msg("%s (cut %zu): fired %d", c->name, cut, o.fired);
                tw_failure_format(o.fail, buf, sizeof buf);
                if (tw_failure_code(o.fail) != c->code || !strstr(buf, c->needle))
                    fail_msg("%s (cut %zu): %s", c->name, cut, buf);
            } else {
                assert_int_equal(o.fired, 1);
                if (o.body_fired != 2)
                    fail_msg("%s (cut %zu): body fired %d", c->name, cut, o.body_fired);
                tw_failure_format(o.body_fail, buf, sizeof buf);
                if (tw_failure_code(o.body_fail) != c->code || !strstr(buf, c->needle))
                    fail_msg("%s (cut %zu): %s", c->name, cut, buf);
            }
            tw_string_transport_info in = info(x, 0);
            assert_int_equal(in.state, TW_TRANSPORT_DISCONNECTING);
            assert_true(in.aborted);
            outcome_clear(&o);
            fx_free(x);
        }
    }
}

static void parser_reason_is_in_the_message(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\nX: y\r\n\r\n");
    assert_int_equal(o.fired, 2);
    char *text = tw_failure_render(o.fail);
    assert_non_null(strstr(text, "http://h:80"));
    assert_non_null(strstr(text, "LF")); /* the parser's reason names the bare LF */
    free(text);
    outcome_clear(&o);
    fx_free(x);
}

static void head_limits_apply(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.limits.max_headers = 3;
    opts.limits.max_body_bytes = 10;
    fx *x = fx_new_opts(&opts, false, false);
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    expect_failure(&o, TW_ELIMIT, "response over a limit");
    outcome_clear(&o);
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n");
    expect_failure(&o, TW_ELIMIT, "response over a limit");
    outcome_clear(&o);
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 2, "HTTP/1.1 200 OK\r\n\r\n0123456789abc");
    settle(x);
    assert_int_equal(o.body_fired, 2);
    assert_int_equal(tw_failure_code(o.body_fail), TW_ELIMIT);
    outcome_clear(&o);
    fx_free(x);
}

/* ================================================================ the body */

typedef struct consumer {
    char data[4096];
    size_t len;
    int ends;
    tw_failure *reason;
    size_t pause_after; /* pause once this much arrived (0: never) */
    bool paused;
    bool stop_in_data;
    bool drop_in_data;
} consumer;

static void c_data(tw_response *r, const char *data, size_t len, void *arg)
{
    consumer *c = arg;
    assert_false(c->paused);
    assert_int_equal(c->ends, 0);
    assert_true(c->len + len <= sizeof c->data);
    memcpy(c->data + c->len, data, len);
    c->len += len;
    if (c->pause_after && c->len >= c->pause_after) {
        c->pause_after = 0;
        c->paused = true;
        tw_response_pause_body(r);
    }
    if (c->stop_in_data)
        tw_response_stop_body(r);
}

static void c_end(tw_response *r, const tw_failure *reason, void *arg)
{
    consumer *c = arg;
    c->ends++;
    c->reason = tw_failure_ref((tw_failure *)reason);
}

static const tw_response_body_ops c_ops = { c_data, c_end };

static void consumer_clear(consumer *c)
{
    tw_failure_unref(c->reason);
    memset(c, 0, sizeof *c);
}

static void backpressure_pauses_the_connection(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabcd");
    assert_int_equal(o.fired, 1);
    /* Not delivering yet: what arrives is held and the reading paused. */
    feed(x, 0, "efgh");
    assert_int_equal(info(x, 0).producer_state, TW_TEST_PAUSED);
    consumer c = { .pause_after = 6 };
    assert_int_equal(tw_response_deliver_body(o.resp, &c_ops, &c), 0);
    assert_int_equal(tw_response_deliver_body(o.resp, &c_ops, &c), TW_EBUSY);
    assert_int_equal(c.len, 0); /* never inside the call */
    settle(x);
    assert_int_equal(c.len, 8); /* "abcdefgh" held as one piece, then paused */
    assert_true(c.paused);
    assert_int_equal(info(x, 0).producer_state, TW_TEST_PAUSED);
    feed(x, 0, "ijkl"); /* a transport may still deliver: held */
    settle(x);
    assert_int_equal(c.len, 8);
    c.paused = false;
    tw_response_resume_body(o.resp);
    assert_int_equal(c.len, 8);
    settle(x);
    assert_int_equal(c.len, 12);
    assert_memory_equal(c.data, "abcdefghijkl", 12);
    assert_int_equal(c.ends, 1);
    assert_null(c.reason);
    assert_int_equal(info(x, 0).producer_state, TW_TEST_PRODUCING);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    consumer_clear(&c);
    outcome_clear(&o);
    fx_free(x);
}

static void body_held_after_the_server_closed(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhel");
    feed(x, 0, "lo");
    tw_string_transport_end(st(x, 0), 0);
    settle(x);
    consumer c = { 0 };
    tw_response_deliver_body(o.resp, &c_ops, &c);
    settle(x);
    assert_int_equal(c.len, 5);
    assert_int_equal(c.ends, 1);
    assert_null(c.reason);
    consumer_clear(&c);
    outcome_clear(&o);
    /* Until-close body, consumer paused while the server closes. */
    o.read = false;
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\n\r\nabc");
    c.pause_after = 1;
    tw_response_deliver_body(o.resp, &c_ops, &c);
    settle(x);
    assert_true(c.paused);
    feed(x, 1, "def");
    tw_string_transport_end(st(x, 1), 0);
    settle(x);
    assert_int_equal(c.ends, 0);
    c.paused = false;
    tw_response_resume_body(o.resp);
    settle(x);
    assert_int_equal(c.len, 6);
    assert_int_equal(c.ends, 1);
    assert_null(c.reason);
    consumer_clear(&c);
    outcome_clear(&o);
    /* A lost connection (reset) in the middle of a Content-Length body. */
    request(x, &o, "GET", "http://h/");
    feed(x, 2, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    tw_response_deliver_body(o.resp, &c_ops, &c);
    settle(x);
    tw_string_transport_end(st(x, 2), -ECONNRESET);
    settle(x);
    assert_int_equal(c.ends, 1);
    assert_int_equal(tw_failure_code(c.reason), TW_ECONNECTION_LOST);
    assert_non_null(strstr(tw_failure_message(c.reason), "incomplete"));
    consumer_clear(&c);
    outcome_clear(&o);
    fx_free(x);
}

static void stop_body_aborts(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
    consumer c = { .stop_in_data = true };
    tw_response_deliver_body(o.resp, &c_ops, &c);
    settle(x);
    assert_int_equal(c.len, 2);
    assert_int_equal(c.ends, 1);
    assert_int_equal(tw_failure_code(c.reason), TW_ECANCELED);
    assert_true(info(x, 0).aborted);
    tw_response_stop_body(o.resp); /* no-op now */
    consumer_clear(&c);
    outcome_clear(&o);
    /* Stopping before delivering: body_end comes with deliver_body. */
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
    tw_response_stop_body(o.resp);
    assert_true(info(x, 1).aborted);
    tw_response_deliver_body(o.resp, &c_ops, &c);
    settle(x);
    assert_int_equal(c.len, 0);
    assert_int_equal(c.ends, 1);
    assert_int_equal(tw_failure_code(c.reason), TW_ECANCELED);
    consumer_clear(&c);
    outcome_clear(&o);
    fx_free(x);
}

static void dropped_response_keeps_or_closes(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    /* A small rest is read and dropped: the connection is reused. */
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
    tw_response_unref(o.resp);
    o.resp = NULL;
    settle(x);
    feed(x, 0, "cdefghij");
    settle(x);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    outcome_clear(&o);
    o.read = true;
    request(x, &o, "GET", "http://h/2");
    assert_int_equal(x->nconns, 1);
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz");
    settle(x);
    expect_body(&o, "z");
    outcome_clear(&o);
    /* A large rest closes it. */
    request(x, &o, "GET", "http://h/3");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\nab");
    tw_response_unref(o.resp);
    o.resp = NULL;
    settle(x);
    assert_true(info(x, 0).aborted);
    outcome_clear(&o);
    fx_free(x);
}

static void read_body_limit(void **state)
{
    fx *x = fx_new();
    outcome o = { .read = true, .max = 4 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n");
    settle(x);
    assert_int_equal(o.body_fired, 2);
    assert_int_equal(tw_failure_code(o.body_fail), TW_ELIMIT);
    assert_true(info(x, 0).aborted);
    outcome_clear(&o);
    /* Exactly at the limit is fine. */
    o.read = true;
    o.max = 4;
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd");
    settle(x);
    expect_body(&o, "abcd");
    outcome_clear(&o);
    fx_free(x);
}

static void cancel_read_body_stops(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
    tw_deferred *d = tw_read_body(o.resp, 0);
    tw_deferred_add_callbacks(d, body_ok, body_bad, &o);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    assert_int_equal(o.body_fired, 2);
    assert_int_equal(tw_failure_code(o.body_fail), TW_ECANCELED);
    assert_true(info(x, 0).aborted);
    settle(x);
    outcome_clear(&o);
    fx_free(x);
}

static void body_producer_for_response_proxying(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
    consumer c = { 0 };
    tw_response_deliver_body(o.resp, &c_ops, &c);
    tw_producer *p = tw_response_body_producer(o.resp);
    p->ops->pause_producing(p);
    settle(x);
    feed(x, 0, "abcd");
    settle(x);
    assert_int_equal(c.len, 0);
    assert_int_equal(info(x, 0).producer_state, TW_TEST_PAUSED);
    p->ops->resume_producing(p);
    settle(x);
    assert_int_equal(c.len, 4);
    assert_int_equal(c.ends, 1);
    consumer_clear(&c);
    outcome_clear(&o);
    fx_free(x);
}

static void trailer_cut_by_close(void **state)
{
    fx *x = fx_new();
    outcome o = { .read = true };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y");
    tw_string_transport_end(st(x, 0), 0);
    settle(x);
    assert_int_equal(o.body_fired, 2);
    assert_int_equal(tw_failure_code(o.body_fail), TW_ECONNECTION_LOST);
    outcome_clear(&o);
    /* A partial head when the server closes fails the request. */
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Le");
    tw_string_transport_end(st(x, 1), 0);
    expect_failure(&o, TW_ECONNECTION_LOST, "lost before the response");
    outcome_clear(&o);
    fx_free(x);
}

static void endpoint_errors_and_options(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://no-endpoint/");
    expect_failure(&o, TW_ENOTFOUND, "cannot connect to http://no-endpoint:80");
    outcome_clear(&o);
    /* The error is remembered for the host while it lives. */
    request(x, &o, "GET", "http://no-endpoint/");
    expect_failure(&o, TW_ENOTFOUND, NULL);
    outcome_clear(&o);
    fx_free(x);

    tw_reactor *r = tw_test_clock_new();
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    assert_int_equal(opts.max_per_host, 8);
    assert_int_equal(opts.max_idle_per_host, 2);
    assert_true(opts.limits.max_body_bytes == UINT64_MAX);
    tw_agent *a = NULL;
    opts.connect_timeout = -1;
    assert_int_equal(tw_agent_new(r, &opts, &a), TW_EINVAL);
    assert_null(a);
    assert_int_equal(tw_agent_new(r, NULL, &a), 0);
    assert_ptr_equal(tw_agent_reactor(a), r);
    tw_agent *w;
    assert_int_equal(tw_redirect_agent_new(a, -1, &w), TW_EINVAL);
    assert_int_equal(tw_redirect_agent_new(NULL, 0, &w), TW_EINVAL);
    assert_int_equal(tw_content_decoder_agent_new(NULL, NULL, &w), TW_EINVAL);
    tw_agent_free(a);
    tw_agent_free(NULL);
    tw_clock_advance(r, 0);
    tw_reactor_free(r);
}

static void responses_without_reading(void **state)
{
    /* A response dropped at once inside its callback: the pool takes the
     * connection back once the rest was read off. */
    fx *x = fx_new();
    for (int i = 0; i < 3; i++) {
        outcome o = { 0 };
        request(x, &o, "GET", "http://h/");
        feed(x, 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        outcome_clear(&o);
        settle(x);
        assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    }
    assert_int_equal(x->nconns, 1);
    /* An until-close body cannot be drained: the connection is closed. */
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\n\r\nabc");
    outcome_clear(&o);
    settle(x);
    assert_true(info(x, 0).aborted);
    fx_free(x);
}

/* ================================================================ the pool */

static void keep_alive_reuses_one_connection(void **state)
{
    fx *x = fx_new();
    for (int i = 0; i < 5; i++) {
        outcome o = { .read = true };
        request(x, &o, "GET", "http://h/x");
        feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        settle(x);
        expect_body(&o, "ok");
        outcome_clear(&o);
    }
    assert_int_equal(x->nconns, 1);
    assert_int_equal(x->endpoints, 1);
    /* Another origin gets its own connection (and endpoint). */
    outcome o = { .read = true };
    request(x, &o, "GET", "https://h/x");
    assert_int_equal(x->nconns, 2);
    assert_true(x->conns[1].https);
    assert_int_equal(x->conns[1].port, 443);
    outcome_clear(&o);
    fx_free(x);
}

static void per_host_limit_queues(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.max_per_host = 2;
    fx *x = fx_new_opts(&opts, false, false);
    outcome o[5];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 5; i++) {
        o[i].read = true;
        request(x, &o[i], "GET", "http://h/q");
    }
    assert_int_equal(x->nconns, 2);
    /* Answer on connection 0 three times: it serves the queue in order. */
    for (int k = 0; k < 3; k++) {
        tw_string_transport_clear(st(x, 0));
        feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
        settle(x);
    }
    assert_int_equal(o[0].body_fired, 1);
    assert_int_equal(o[2].body_fired, 1);
    assert_int_equal(o[3].body_fired, 1);
    assert_int_equal(o[1].fired, 0);
    assert_int_equal(o[4].fired, 0);
    assert_string_equal(written(x, 0), "GET /q HTTP/1.1\r\nHost: h\r\n\r\n"); /* o[4]'s */
    assert_int_equal(x->nconns, 2);
    for (int i = 0; i < 5; i++)
        outcome_clear(&o[i]);
    fx_free(x);
}

static void idle_connections_expire_and_are_capped(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.max_idle_per_host = 1;
    opts.idle_timeout = 10;
    fx *x = fx_new_opts(&opts, false, false);
    outcome o[3];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 3; i++) {
        o[i].read = true;
        request(x, &o[i], "GET", "http://h/");
    }
    assert_int_equal(x->nconns, 3);
    for (int i = 0; i < 3; i++)
        feed(x, (size_t)i, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    /* One stays idle (the last one used), the others are closed. */
    int open = 0;
    for (int i = 0; i < 3; i++)
        open += info(x, (size_t)i).state == TW_TRANSPORT_OPEN;
    assert_int_equal(open, 1);
    assert_int_equal(info(x, 2).state, TW_TRANSPORT_OPEN);
    tw_clock_advance(x->r, 9);
    assert_int_equal(info(x, 2).state, TW_TRANSPORT_OPEN);
    tw_clock_advance(x->r, 1);
    assert_int_equal(info(x, 2).state, TW_TRANSPORT_DISCONNECTING);
    assert_false(info(x, 2).aborted);
    for (int i = 0; i < 3; i++)
        outcome_clear(&o[i]);
    fx_free(x);
}

static void server_closing_an_idle_connection(void **state)
{
    fx *x = fx_new();
    outcome o = { .read = true };
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    outcome_clear(&o);
    tw_string_transport_end(st(x, 0), 0); /* the server's keep-alive timeout */
    settle(x);
    o.read = true;
    request(x, &o, "GET", "http://h/");
    assert_int_equal(x->nconns, 2);
    outcome_clear(&o);
    /* Unexpected bytes on an idle connection close it. */
    fx_free(x);
    x = fx_new();
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    feed(x, 0, "garbage");
    assert_true(info(x, 0).aborted);
    outcome_clear(&o);
    /* Bytes right after a response (in the same read) too. */
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n\r\n");
    settle(x);
    expect_body(&o, "a");
    assert_true(info(x, 1).aborted);
    outcome_clear(&o);
    fx_free(x);
}

static void stale_connection_is_retried_once(void **state)
{
    fx *x = fx_new();
    outcome o = { .read = true };
    request(x, &o, "GET", "http://h/a");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    outcome_clear(&o);
    /* The pooled connection is dead, which the client learns by writing. */
    o.read = true;
    request(x, &o, "GET", "http://h/b");
    assert_int_equal(x->nconns, 1);
    tw_string_transport_end(st(x, 0), -ECONNRESET);
    assert_int_equal(x->nconns, 2);
    assert_int_equal(o.fired, 0);
    assert_string_equal(written(x, 1), "GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    settle(x);
    expect_body(&o, "b");
    outcome_clear(&o);
    /* A rewindable body is sent again; a second loss is not retried. */
    tw_body_producer *b;
    tw_body_producer_new_bytes("data", 4, &b);
    request_on(x->top, &o, "PUT", "http://h/c", NULL, 0, b);
    tw_string_transport_end(st(x, 1), 0);
    assert_int_equal(x->nconns, 3);
    assert_string_equal(written(x, 2),
                        "PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\ndata");
    tw_string_transport_end(st(x, 2), 0);
    expect_failure(&o, TW_ECONNECTION_LOST, "lost before the response");
    outcome_clear(&o);
    /* POST is not idempotent: no retry. */
    request(x, &o, "GET", "http://h/d");
    feed(x, 3, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    outcome_clear(&o);
    request(x, &o, "POST", "http://h/e");
    tw_string_transport_end(st(x, 3), 0);
    expect_failure(&o, TW_ECONNECTION_LOST, NULL);
    assert_int_equal(x->nconns, 4);
    outcome_clear(&o);
    /* Nor a first request on a fresh connection. */
    request(x, &o, "GET", "http://h/f");
    tw_string_transport_end(st(x, 4), 0);
    expect_failure(&o, TW_ECONNECTION_LOST, NULL);
    outcome_clear(&o);
    fx_free(x);
}

static void no_persistent_closes_each(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.no_persistent = true;
    fx *x = fx_new_opts(&opts, false, false);
    outcome o = { .read = true };
    request(x, &o, "GET", "http://h/");
    assert_string_equal(written(x, 0), "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    expect_body(&o, "a");
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_DISCONNECTING);
    outcome_clear(&o);
    /* "Connection: close" from the caller: this connection's last. */
    fx_free(x);
    x = fx_new();
    tw_http_header h[] = { { { "Connection", 10 }, { "close", 5 } } };
    o.read = true;
    request_on(x->top, &o, "GET", "http://h/", h, 1, NULL);
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_DISCONNECTING);
    outcome_clear(&o);
    fx_free(x);
}

static void close_idle_closes_only_idle(void **state)
{
    fx *x = fx_new();
    outcome a = { .read = true }, b = { .read = true };
    request(x, &a, "GET", "http://h/");
    request(x, &b, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    settle(x);
    tw_agent_close_idle(x->top);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_DISCONNECTING);
    assert_int_equal(info(x, 1).state, TW_TRANSPORT_OPEN);
    outcome_clear(&a);
    outcome_clear(&b);
    fx_free(x);
}

/* ================================================================ timeouts, cancel */

static void connect_failure_and_timeout(void **state)
{
    fx *x = fx_new();
    x->mode = CONNECT_FAIL;
    outcome o = { 0 };
    request(x, &o, "GET", "http://h:81/");
    expect_failure(&o, -ECONNREFUSED, "cannot connect to http://h:81");
    outcome_clear(&o);
    x->mode = CONNECT_HANG;
    request(x, &o, "GET", "http://h:81/");
    assert_int_equal(x->nhanging, 1);
    tw_clock_advance(x->r, 29.9);
    assert_int_equal(o.fired, 0);
    tw_clock_advance(x->r, 0.1);
    expect_failure(&o, TW_ETIMEDOUT, "timed out after 30 s");
    assert_true(tw_deferred_called(x->hanging[0])); /* the attempt was cancelled */
    outcome_clear(&o);
    fx_free(x);
}

static void response_timeout(void **state)
{
    fx *x = fx_new();
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/slow");
    tw_clock_advance(x->r, 59);
    feed(x, 0, "HTTP/1.1 200 OK\r\n"); /* half a head does not help */
    tw_clock_advance(x->r, 1);
    expect_failure(&o, TW_ETIMEDOUT, "no response to GET http://h/slow within 60 s");
    assert_true(info(x, 0).aborted);
    outcome_clear(&o);
    /* The timer stops once the head came. */
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na");
    tw_clock_advance(x->r, 100);
    assert_int_equal(info(x, 1).state, TW_TRANSPORT_OPEN);
    feed(x, 1, "bc");
    settle(x);
    expect_body(&o, "abc");
    outcome_clear(&o);
    fx_free(x);
}

static void cancelling_requests(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.max_per_host = 1;
    fx *x = fx_new_opts(&opts, false, false);
    outcome a = { 0 }, b = { 0 };
    request(x, &a, "GET", "http://h/a");
    request(x, &b, "GET", "http://h/b"); /* queued */
    tw_deferred_cancel(b.d);
    expect_failure(&b, TW_ECANCELED, "GET http://h/b was cancelled");
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    tw_deferred_cancel(a.d); /* on the connection: aborts it */
    expect_failure(&a, TW_ECANCELED, NULL);
    assert_true(info(x, 0).aborted);
    outcome_clear(&a);
    outcome_clear(&b);
    settle(x);
    /* Cancel while connecting. */
    x->mode = CONNECT_HANG;
    request(x, &a, "GET", "http://other/");
    tw_deferred_cancel(a.d);
    expect_failure(&a, TW_ECANCELED, NULL);
    assert_true(tw_deferred_called(x->hanging[0]));
    outcome_clear(&a);
    fx_free(x);
}

static void freeing_the_agent_fails_what_runs(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    opts.max_per_host = 1;
    fx *x = fx_new_opts(&opts, true, true);
    outcome a = { 0 }, b = { 0 }, c = { 0 };
    request(x, &a, "GET", "http://h/a");
    request(x, &b, "GET", "http://h/b");
    request(x, &c, "GET", "http://h/c");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab");
    assert_int_equal(a.fired, 1);
    consumer cons = { 0 };
    tw_response_deliver_body(a.resp, &c_ops, &cons);
    settle(x);
    tw_agent_free(x->decoder);
    tw_agent_free(x->redirect);
    tw_agent_free(x->base);
    x->decoder = x->redirect = x->base = NULL;
    expect_failure(&b, TW_ECANCELED, NULL);
    expect_failure(&c, TW_ECANCELED, NULL);
    settle(x);
    assert_int_equal(cons.ends, 1);
    assert_int_equal(tw_failure_code(cons.reason), TW_ECANCELED);
    consumer_clear(&cons);
    outcome_clear(&a);
    outcome_clear(&b);
    outcome_clear(&c);
    fx_free(x);
}

/* ================================================================ request bodies */

static void bytes_body_with_content_length(void **state)
{
    fx *x = fx_new();
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_bytes("a=1&b=2", 7, &b), 0);
    tw_http_header h[] = { { { "Content-Type", 12 },
                             { "application/x-www-form-urlencoded", 33 } } };
    outcome o = { .read = true };
    request_on(x->top, &o, "POST", "http://h/form", h, 1, b);
    assert_string_equal(written(x, 0), "POST /form HTTP/1.1\r\nHost: h\r\n"
                                       "Content-Type: application/x-www-form-urlencoded\r\n"
                                       "Content-Length: 7\r\n\r\na=1&b=2");
    tw_string_transport_info in = info(x, 0);
    assert_int_equal(in.write_calls + in.writev_calls, 1); /* head and body together */
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    settle(x);
    expect_body(&o, "ok");
    assert_null(info(x, 0).producer); /* unregistered once done */
    outcome_clear(&o);
    fx_free(x);
}

/* A producer the test drives: writes when told. */
typedef struct manual {
    tw_body_producer base;
    tw_body_consumer *c;
    tw_deferred *d;
    int pauses, resumes, stops, destroys;
    bool *destroyed;
} manual;

static tw_deferred *manual_start(tw_body_producer *p, tw_body_consumer *c)
{
    manual *m = (manual *)p;
    m->c = c;
    m->d = tw_deferred_new(NULL, NULL);
    return tw_deferred_ref(m->d);
}

static void manual_pause(tw_body_producer *p)
{
    ((manual *)p)->pauses++;
}

static void manual_resume(tw_body_producer *p)
{
    ((manual *)p)->resumes++;
}

static int manual_stops;

static void manual_stop(tw_body_producer *p)
{
    manual *m = (manual *)p;
    m->stops++;
    manual_stops++;
    tw_deferred_unref(m->d);
    m->d = NULL;
}

static void manual_destroy(tw_body_producer *p)
{
    manual *m = (manual *)p;
    if (m->destroyed)
        *m->destroyed = true;
    tw_deferred_unref(m->d);
    free(m);
}

static const tw_body_producer_ops manual_ops = { manual_start, manual_pause, manual_resume,
                                                 manual_stop,  NULL,         manual_destroy };

static manual *manual_new(uint64_t length, bool *destroyed)
{
    manual *m = calloc(1, sizeof *m);
    m->base.ops = &manual_ops;
    m->base.length = length;
    m->destroyed = destroyed;
    return m;
}

static void manual_finish(manual *m)
{
    tw_deferred *d = m->d;
    m->d = NULL;
    tw_deferred_callback(d, TW_VALUE_NONE);
    tw_deferred_unref(d);
}

static void chunked_body_from_a_producer(void **state)
{
    fx *x = fx_new();
    bool destroyed = false;
    manual *m = manual_new(TW_BODY_UNKNOWN_LENGTH, &destroyed);
    outcome o = { .read = true };
    request_on(x->top, &o, "POST", "http://h/up", NULL, 0, &m->base);
    assert_string_equal(written(x, 0),
                        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(tw_body_consumer_write(m->c, "hello", 5), 0);
    assert_int_equal(tw_body_consumer_write(m->c, "", 0), 0);
    assert_int_equal(tw_body_consumer_write(m->c, "0123456789abcdefg", 17), 0);
    assert_ptr_equal(tw_body_consumer_reactor(m->c), x->r);
    /* The transport's flow control reaches the producer. */
    tw_producer *wp = info(x, 0).producer;
    assert_non_null(wp);
    assert_true(info(x, 0).streaming);
    wp->ops->pause_producing(wp);
    wp->ops->resume_producing(wp);
    assert_int_equal(m->pauses, 1);
    assert_int_equal(m->resumes, 1);
    tw_clock_advance(x->r, 1000); /* no response timeout while the body is produced */
    assert_int_equal(o.fired, 0);
    manual_finish(m);
    assert_string_equal(written(x, 0),
                        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n");
    feed(x, 0, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    expect_body(&o, "");
    assert_true(destroyed); /* once the exchange is over */
    outcome_clear(&o);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    fx_free(x);
}

static void producer_errors(void **state)
{
    fx *x = fx_new();
    bool destroyed = false;
    /* Writes past its length. */
    manual *m = manual_new(3, &destroyed);
    outcome o = { 0 };
    request_on(x->top, &o, "PUT", "http://h/", NULL, 0, &m->base);
    assert_int_equal(tw_body_consumer_write(m->c, "abcd", 4), TW_EINVAL);
    expect_failure(&o, TW_EINVAL, "more than its length");
    assert_true(info(x, 0).aborted);
    assert_int_equal(m->stops, 1);
    assert_int_equal(tw_body_consumer_write(m->c, "a", 1), TW_ECLOSED);
    assert_false(destroyed); /* never inside the producer's own call */
    settle(x);
    assert_true(destroyed);
    outcome_clear(&o);
    /* Finishes short. */
    destroyed = false;
    m = manual_new(3, &destroyed);
    request_on(x->top, &o, "PUT", "http://h/", NULL, 0, &m->base);
    tw_body_consumer_write(m->c, "ab", 2);
    manual_finish(m);
    expect_failure(&o, TW_EINVAL, "wrote 2 of its 3 bytes");
    outcome_clear(&o);
    /* Fails. */
    m = manual_new(3, &destroyed);
    request_on(x->top, &o, "PUT", "http://h/", NULL, 0, &m->base);
    tw_deferred *d = m->d;
    m->d = NULL;
    tw_deferred_errback(d, tw_failure_new("app", 7, "disk on fire"));
    tw_deferred_unref(d);
    expect_failure(&o, 7, "disk on fire");
    outcome_clear(&o);
    /* The server answers before the body ends: the body stops, the
     * connection is not reused. */
    m = manual_new(TW_BODY_UNKNOWN_LENGTH, &destroyed);
    o.read = true;
    request_on(x->top, &o, "POST", "http://h/", NULL, 0, &m->base);
    tw_body_consumer_write(m->c, "ab", 2);
    feed(x, 3, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\n");
    assert_int_equal(o.fired, 1);
    assert_int_equal(m->stops, 0); /* the body may go on while the response streams */
    manual_stops = 0;
    feed(x, 3, "nope");
    settle(x);
    expect_body(&o, "nope");
    assert_int_equal(manual_stops, 1); /* then stopped (and destroyed) */
    assert_int_equal(info(x, 3).state, TW_TRANSPORT_DISCONNECTING);
    outcome_clear(&o);
    fx_free(x);
}

static void fd_body_producer(void **state)
{
    fx *x = fx_new();
    char path[] = "/tmp/twirl-client-body-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(write(fd, big, sizeof big), (ssize_t)sizeof big);
    lseek(fd, 0, SEEK_SET);
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_fd(fd, &b), 0);
    assert_int_equal(b->length, sizeof big);
    outcome o = { .read = true };
    request_on(x->top, &o, "PUT", "http://h/file", NULL, 0, b);
    for (int i = 0; i < 10; i++)
        settle(x);
    size_t len;
    const char *w = tw_string_transport_value(st(x, 0), &len);
    const char *body = strstr(w, "\r\n\r\n") + 4;
    assert_non_null(strstr(w, "Content-Length: 200000\r\n"));
    assert_int_equal(len - (size_t)(body - w), sizeof big);
    assert_memory_equal(body, big, sizeof big);
    /* A stale-connection retry rewinds it. */
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    outcome_clear(&o);
    /* A pipe: unknown length, chunked. */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], "piped", 5), 5);
    close(pfd[1]);
    assert_int_equal(tw_body_producer_new_fd(pfd[0], &b), 0);
    assert_int_equal(b->length, TW_BODY_UNKNOWN_LENGTH);
    tw_string_transport_clear(st(x, 0));
    request_on(x->top, &o, "POST", "http://h/pipe", NULL, 0, b);
    for (int i = 0; i < 4; i++)
        settle(x);
    assert_string_equal(written(x, 0), "POST /pipe HTTP/1.1\r\nHost: h\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n5\r\npiped\r\n0\r\n\r\n");
    outcome_clear(&o);
    fx_free(x);
}

/* ================================================================ redirects */

static void redirects_followed(void **state)
{
    fx *x = fx_new_opts(NULL, true, false);
    outcome o = { .read = true };
    tw_http_header h[] = { { { "Authorization", 13 }, { "secret", 6 } },
                           { { "X-Keep", 6 }, { "1", 1 } } };
    request_on(x->top, &o, "GET", "http://h/a/b", h, 2, NULL);
    feed(x, 0, "HTTP/1.1 301 Moved\r\nLocation: ../c?x=1\r\nContent-Length: 5\r\n\r\nmoved");
    settle(x);
    assert_int_equal(o.fired, 0);
    assert_int_equal(x->nconns, 1); /* the small body was read off: reused */
    assert_string_equal(written(x, 0) + strlen(written(x, 0)) -
                            strlen("GET /c?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: secret\r\n"
                                   "X-Keep: 1\r\n\r\n"),
                        "GET /c?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: secret\r\n"
                        "X-Keep: 1\r\n\r\n");
    tw_string_transport_clear(st(x, 0));
    /* To another origin: credentials stay behind. */
    feed(x, 0, "HTTP/1.1 302 Found\r\nLocation: https://other:8443/d\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    assert_int_equal(x->nconns, 2);
    assert_string_equal(written(x, 1), "GET /d HTTP/1.1\r\nHost: other:8443\r\nX-Keep: 1\r\n\r\n");
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
    settle(x);
    assert_int_equal(o.fired, 1);
    expect_body(&o, "done");
    assert_string_equal(tw_response_url(o.resp), "https://other:8443/d");
    const tw_response *p1 = tw_response_previous(o.resp);
    assert_non_null(p1);
    assert_int_equal(tw_response_status(p1), 302);
    assert_string_equal(tw_response_url(p1), "http://h/c?x=1");
    const tw_response *p0 = tw_response_previous(p1);
    assert_int_equal(tw_response_status(p0), 301);
    assert_null(tw_response_previous(p0));
    outcome_clear(&o);
    fx_free(x);
}

static void redirect_methods(void **state)
{
    fx *x = fx_new_opts(NULL, true, false);
    /* 303 after POST: GET without body or Content-* fields. */
    tw_body_producer *b;
    tw_body_producer_new_bytes("x=1", 3, &b);
    tw_http_header h[] = { { { "Content-Type", 12 }, { "text/plain", 10 } } };
    outcome o = { .read = true };
    request_on(x->top, &o, "POST", "http://h/form", h, 1, b);
    tw_string_transport_clear(st(x, 0));
    feed(x, 0, "HTTP/1.1 303 See Other\r\nLocation: /result\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    assert_string_equal(written(x, 0), "GET /result HTTP/1.1\r\nHost: h\r\n\r\n");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    settle(x);
    expect_body(&o, "ok");
    assert_string_equal(tw_response_method(o.resp), "GET");
    outcome_clear(&o);
    /* 307 keeps the method and replays the body. */
    tw_body_producer_new_bytes("x=1", 3, &b);
    o.read = true;
    request_on(x->top, &o, "POST", "http://h/form", h, 1, b);
    tw_string_transport_clear(st(x, 0));
    feed(x, 0, "HTTP/1.1 307 Temporary Redirect\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    assert_string_equal(written(x, 0), "POST /again HTTP/1.1\r\nHost: h\r\n"
                                       "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nx=1");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    expect_body(&o, "");
    outcome_clear(&o);
    /* 308 with a body that cannot rewind: the 308 is the answer. */
    manual *m = manual_new(1, NULL);
    o.read = true;
    request_on(x->top, &o, "PUT", "http://h/p", NULL, 0, &m->base);
    tw_body_consumer_write(m->c, "z", 1);
    manual_finish(m);
    feed(x, 0, "HTTP/1.1 308 Permanent Redirect\r\nLocation: /q\r\nContent-Length: 1\r\n\r\n!");
    settle(x);
    settle(x);
    assert_int_equal(tw_response_status(o.resp), 308);
    expect_body(&o, "!");
    outcome_clear(&o);
    /* HEAD stays HEAD after 303; 302 after PUT keeps PUT. */
    request(x, &o, "HEAD", "http://h/h");
    tw_string_transport_clear(st(x, 0));
    feed(x, 0, "HTTP/1.1 303 See Other\r\nLocation: /i\r\n\r\n");
    settle(x);
    assert_string_equal(written(x, 0), "HEAD /i HTTP/1.1\r\nHost: h\r\n\r\n");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
    assert_int_equal(o.fired, 1);
    outcome_clear(&o);
    fx_free(x);
}

static void redirect_failures(void **state)
{
    fx *x = fx_new_opts(NULL, true, false);
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/0");
    for (int i = 1; i <= 21; i++) {
        char r[128];
        snprintf(r, sizeof r, "HTTP/1.1 302 Found\r\nLocation: /%d\r\nContent-Length: 0\r\n\r\n",
                 i);
        feed(x, 0, r);
        settle(x);
    }
    expect_failure(&o, TW_ELIMIT, "too many redirects (more than 20): http://h/0 -> http://h/1");
    assert_non_null(strstr(tw_failure_message(o.fail), "http://h/20 -> http://h/21"));
    outcome_clear(&o);
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    expect_failure(&o, TW_EPROTO, "without a Location");
    outcome_clear(&o);
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 301 Moved\r\nLocation: ftp://h/\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    expect_failure(&o, TW_EPROTO, "unusable URL");
    outcome_clear(&o);
    /* A 3xx that is not a redirect is the answer. */
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 300 Multiple Choices\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    settle(x);
    assert_int_equal(tw_response_status(o.resp), 300);
    outcome_clear(&o);
    /* Cancelling mid-chain. */
    request(x, &o, "GET", "http://h/");
    feed(x, 0, "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    tw_deferred_cancel(o.d);
    expect_failure(&o, TW_ECANCELED, NULL);
    outcome_clear(&o);
    fx_free(x);
}

/* ================================================================ decoding */

static size_t compress_as(int wbits, const void *in, size_t n, unsigned char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

/* Response bytes: head with the coding, then the compressed body. */
static size_t gz_response(const char *coding, int wbits, const char *text, char *out, size_t cap)
{
    unsigned char z[8192];
    size_t zn = compress_as(wbits, text, strlen(text), z, sizeof z);
    int h = snprintf(out, cap,
                     "HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %zu\r\n"
                     "X-Other: 1\r\n\r\n",
                     coding, zn);
    memcpy(out + h, z, zn);
    return (size_t)h + zn;
}

static void decoding_gzip_and_deflate(void **state)
{
    static const char text[] = "The quick brown fox jumps over the lazy dog. "
                               "The quick brown fox jumps over the lazy dog. 0123456789";
    static const struct {
        const char *coding;
        int wbits;
    } forms[] = { { "gzip", 31 }, { "x-gzip", 31 }, { "deflate", 15 }, { "deflate", -15 } };
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        char wire[9000];
        size_t len = gz_response(forms[f].coding, forms[f].wbits, text, wire, sizeof wire);
        for (size_t cut = 0; cut < len; cut++) {
            fx *x = fx_new_opts(NULL, false, true);
            outcome o = { .read = true };
            request(x, &o, "GET", "http://h/z");
            if (cut == 0)
                assert_string_equal(written(x, 0), "GET /z HTTP/1.1\r\nHost: h\r\n"
                                                   "Accept-Encoding: gzip, deflate\r\n\r\n");
            if (cut)
                feedn(x, 0, wire, cut);
            settle(x);
            feedn(x, 0, wire + cut, len - cut);
            settle(x);
            if (o.body_fired != 1)
                fail_msg("%s/%d cut %zu: body fired %d %s", forms[f].coding, forms[f].wbits, cut,
                         o.body_fired, o.body_fail ? tw_failure_message(o.body_fail) : "");
            expect_body(&o, text);
            assert_false(tw_response_header(o.resp, "content-encoding", NULL));
            assert_false(tw_response_header(o.resp, "content-length", NULL));
            assert_false(tw_response_length(o.resp, NULL));
            assert_true(header_is(o.resp, "x-other", "1"));
            assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN); /* reusable */
            outcome_clear(&o);
            fx_free(x);
        }
    }
}

static void decoding_edge_cases(void **state)
{
    fx *x = fx_new_opts(NULL, false, true);
    outcome o = { .read = true };
    /* The caller's own Accept-Encoding is kept; an unknown coding passes
     * through; a list keeps what is left. */
    tw_http_header h[] = { { { "Accept-Encoding", 15 }, { "br", 2 } } };
    request_on(x->top, &o, "GET", "http://h/", h, 1, NULL);
    assert_string_equal(written(x, 0), "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\n\r\n");
    feed(x, 0, "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nxyz");
    settle(x);
    expect_body(&o, "xyz");
    assert_true(header_is(o.resp, "content-encoding", "br"));
    outcome_clear(&o);
    char wire[9000];
    size_t len = gz_response("br, gzip", 31, "layered", wire, sizeof wire);
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feedn(x, 0, wire, len);
    settle(x);
    expect_body(&o, "layered");
    assert_true(header_is(o.resp, "content-encoding", "br"));
    outcome_clear(&o);
    /* Corrupt data. */
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feed(x, 0,
         "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n"
         "0123456789");
    settle(x);
    assert_int_equal(o.body_fired, 2);
    assert_int_equal(tw_failure_code(o.body_fail), TW_EPROTO);
    assert_non_null(strstr(tw_failure_message(o.body_fail), "gzip"));
    outcome_clear(&o);
    /* Truncated: the compressed body ends early. */
    len = gz_response("gzip", 31, "some text that is long enough to matter", wire, sizeof wire);
    char *cl = strstr(wire, "Content-Length: ");
    size_t head = (size_t)(strstr(wire, "\r\n\r\n") + 4 - wire);
    size_t zn = len - head;
    char fixed[9000];
    int fh = snprintf(fixed, sizeof fixed,
                      "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
                      zn - 8);
    memcpy(fixed + fh, wire + head, zn - 8);
    (void)cl;
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feedn(x, 1, fixed, (size_t)fh + zn - 8);
    settle(x);
    assert_int_equal(o.body_fired, 2);
    assert_non_null(strstr(tw_failure_message(o.body_fail), "truncated"));
    outcome_clear(&o);
    /* Empty body with a coding: empty. */
    o.read = true;
    request(x, &o, "GET", "http://h/");
    assert_int_equal(info(x, 1).state, TW_TRANSPORT_OPEN); /* the HTTP body was whole */
    feed(x, 1, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n");
    settle(x);
    expect_body(&o, "");
    outcome_clear(&o);
    /* Two gzip members in a row make one body. */
    unsigned char z1[256], z2[256];
    size_t n1 = compress_as(31, "first ", 6, z1, sizeof z1);
    size_t n2 = compress_as(31, "second", 6, z2, sizeof z2);
    int hh = snprintf(wire, sizeof wire,
                      "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
                      n1 + n2);
    memcpy(wire + hh, z1, n1);
    memcpy(wire + hh + n1, z2, n2);
    o.read = true;
    request(x, &o, "GET", "http://h/");
    feedn(x, 1, wire, (size_t)hh + n1 + n2);
    settle(x);
    expect_body(&o, "first second");
    outcome_clear(&o);
    fx_free(x);
}

typedef struct sink {
    uint64_t bytes;
    int ends;
    tw_failure *reason;
} sink;

static void s_data(tw_response *r, const char *data, size_t len, void *arg)
{
    ((sink *)arg)->bytes += len;
}

static void s_end(tw_response *r, const tw_failure *reason, void *arg)
{
    sink *c = arg;
    c->ends++;
    c->reason = tw_failure_ref((tw_failure *)reason);
}

static const tw_response_body_ops sink_ops = { s_data, s_end };

static void decoding_bomb_is_bounded(void **state)
{
    tw_agent_options opts;
    tw_agent_options_init(&opts);
    fx *x = fx_new_opts(&opts, false, false);
    tw_content_decoder_options dopts = { .max_decoded_bytes = 1000000 };
    assert_int_equal(tw_content_decoder_agent_new(x->base, &dopts, &x->decoder), 0);
    x->top = x->decoder;
    /* 10 MB of zeros compress to about 10 KB. */
    size_t big = 10 * 1000 * 1000;
    char *zeros = calloc(1, big);
    unsigned char *z = malloc(big / 100);
    size_t zn = compress_as(31, zeros, big, z, big / 100);
    free(zeros);
    char head[128];
    int hn =
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n", zn);
    sink c = { 0 };
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/bomb");
    feedn(x, 0, head, (size_t)hn);
    tw_response_deliver_body(o.resp, &sink_ops, &c);
    settle(x);
    feedn(x, 0, z, zn > 4000 ? 4000 : zn);
    settle(x);
    free(z);
    assert_int_equal(c.ends, 1);
    assert_int_equal(tw_failure_code(c.reason), TW_ELIMIT);
    assert_true(c.bytes <= 1000000);
    assert_true(info(x, 0).aborted);
    tw_failure_unref(c.reason);
    outcome_clear(&o);
    fx_free(x);
}

/* A consumer that counts and pauses every few pieces. */
typedef struct counter {
    uint64_t bytes;
    int pieces, ends;
    tw_failure *reason;
    bool paused;
} counter;

static void n_data(tw_response *r, const char *data, size_t len, void *arg)
{
    counter *c = arg;
    assert_false(c->paused);
    assert_true(len <= 16384);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(data[i], (char)('a' + (c->bytes + i) % 26));
    c->bytes += len;
    if (++c->pieces % 3 == 0) {
        c->paused = true;
        tw_response_pause_body(r);
    }
}

static void n_end(tw_response *r, const tw_failure *reason, void *arg)
{
    counter *c = arg;
    c->ends++;
    c->reason = tw_failure_ref((tw_failure *)reason);
}

static const tw_response_body_ops n_ops = { n_data, n_end };

static void decoding_honours_pauses(void **state)
{
    fx *x = fx_new_opts(NULL, false, true);
    size_t big = 300000;
    char *text = malloc(big);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)('a' + i % 26);
    unsigned char *z = malloc(big);
    size_t zn = compress_as(31, text, big, z, big);
    free(text);
    char head[160];
    int hn =
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "%zx\r\n",
                 zn);
    outcome o = { 0 };
    request(x, &o, "GET", "http://h/");
    feedn(x, 0, head, (size_t)hn);
    counter c = { 0 };
    tw_response_deliver_body(o.resp, &n_ops, &c);
    feedn(x, 0, z, zn);
    feed(x, 0, "\r\n0\r\n\r\n");
    free(z);
    for (int i = 0; i < 1000 && c.ends == 0; i++) {
        settle(x);
        if (c.paused) {
            c.paused = false;
            tw_response_resume_body(o.resp);
        }
    }
    assert_int_equal(c.ends, 1);
    assert_null(c.reason);
    assert_int_equal(c.bytes, big);
    assert_true(c.pieces > 3);
    assert_int_equal(info(x, 0).state, TW_TRANSPORT_OPEN);
    tw_failure_unref(c.reason);
    outcome_clear(&o);
    fx_free(x);
}

/* ================================================================ main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_parse_forms),
        cmocka_unit_test(url_join_rfc3986),
        cmocka_unit_test(get_writes_head_and_reads_body),
        cmocka_unit_test(head_fields_and_defaults),
        cmocka_unit_test(bad_arguments_fail_at_once),
        cmocka_unit_test(responses_survive_every_split),
        cmocka_unit_test(malformed_responses_fail_clearly),
        cmocka_unit_test(parser_reason_is_in_the_message),
        cmocka_unit_test(head_limits_apply),
        cmocka_unit_test(backpressure_pauses_the_connection),
        cmocka_unit_test(body_held_after_the_server_closed),
        cmocka_unit_test(stop_body_aborts),
        cmocka_unit_test(dropped_response_keeps_or_closes),
        cmocka_unit_test(read_body_limit),
        cmocka_unit_test(cancel_read_body_stops),
        cmocka_unit_test(body_producer_for_response_proxying),
        cmocka_unit_test(trailer_cut_by_close),
        cmocka_unit_test(endpoint_errors_and_options),
        cmocka_unit_test(responses_without_reading),
        cmocka_unit_test(keep_alive_reuses_one_connection),
        cmocka_unit_test(per_host_limit_queues),
        cmocka_unit_test(idle_connections_expire_and_are_capped),
        cmocka_unit_test(server_closing_an_idle_connection),
        cmocka_unit_test(stale_connection_is_retried_once),
        cmocka_unit_test(no_persistent_closes_each),
        cmocka_unit_test(close_idle_closes_only_idle),
        cmocka_unit_test(connect_failure_and_timeout),
        cmocka_unit_test(response_timeout),
        cmocka_unit_test(cancelling_requests),
        cmocka_unit_test(freeing_the_agent_fails_what_runs),
        cmocka_unit_test(bytes_body_with_content_length),
        cmocka_unit_test(chunked_body_from_a_producer),
        cmocka_unit_test(producer_errors),
        cmocka_unit_test(fd_body_producer),
        cmocka_unit_test(redirects_followed),
        cmocka_unit_test(redirect_methods),
        cmocka_unit_test(redirect_failures),
        cmocka_unit_test(decoding_gzip_and_deflate),
        cmocka_unit_test(decoding_edge_cases),
        cmocka_unit_test(decoding_bomb_is_bounded),
        cmocka_unit_test(decoding_honours_pauses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
