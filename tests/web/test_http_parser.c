/* ctest: label=unit timeout=120 backends=once */
/* Tests of the HTTP/1.1 head parser, the chunked decoder and the
 * Content-Length counter: fields of valid messages, every hostile message of
 * the shared table, every message split at every byte and fed byte by byte
 * (each call on a freshly allocated exact-size copy, so the buffer moves and
 * any read past the end trips ASan), inputs ending at a guard page, each
 * limit, pipelining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_cases.h"
#include "twirl/http_parser.h"
#include "twirl/http_util.h"

#define NHDR 128

/* ------------------------------------------------------------ describing */

typedef struct sbuf {
    char s[32768];
    size_t n;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof b->s - b->n);
    b->n += (size_t)n;
}

/* Appends a slice, checking it lies inside buf[0..len). Bytes are printed
 * escaped so that descriptions compare exactly. */
static bool print_offsets = true;

static void sb_slice(sbuf *b, const char *label, tw_http_slice s, const char *buf, size_t len)
{
    if (!s.ptr) {
        sb_printf(b, " %s=<null>", label);
        return;
    }
    bool static_slash = s.len == 1 && s.ptr[0] == '/' && (s.ptr < buf || s.ptr >= buf + len);
    if (!static_slash) {
        assert_true(s.ptr >= buf && s.ptr <= buf + len && s.len <= (size_t)(buf + len - s.ptr));
    }
    if (print_offsets)
        sb_printf(b, " %s=@%td'", label, static_slash ? (ptrdiff_t)-1 : s.ptr - buf);
    else
        sb_printf(b, " %s='", label);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            sb_printf(b, "%c", c);
        else
            sb_printf(b, "\\x%02x", c);
    }
    sb_printf(b, "'");
}

static void describe_headers(sbuf *b, const tw_http_header *h, size_t n, const char *buf,
                             size_t len)
{
    sb_printf(b, " nh=%zu", n);
    for (size_t i = 0; i < n; i++) {
        sb_slice(b, "n", h[i].name, buf, len);
        sb_slice(b, "v", h[i].value, buf, len);
    }
}

static void describe_request(sbuf *b, int rc, const tw_http_request *r, const char *buf, size_t len)
{
    b->n = 0;
    sb_printf(b, "rc=%d", rc);
    if (rc <= 0)
        return;
    sb_slice(b, "method", r->method, buf, len);
    sb_printf(b, " id=%d form=%d", r->method_id, r->target_form);
    sb_slice(b, "target", r->target, buf, len);
    sb_slice(b, "path", r->path, buf, len);
    sb_slice(b, "query", r->query, buf, len);
    sb_slice(b, "auth", r->authority, buf, len);
    sb_slice(b, "host", r->host, buf, len);
    sb_printf(b, " v=1.%d body=%d cl=%llu conn=%u ka=%d up=%d ec=%d", r->version_minor, r->body,
              (unsigned long long)r->content_length, r->connection, r->keep_alive, r->upgrade,
              r->expect_continue);
    describe_headers(b, r->headers, r->num_headers, buf, len);
}

static void describe_response(sbuf *b, int rc, const tw_http_response *r, const char *buf,
                              size_t len)
{
    b->n = 0;
    sb_printf(b, "rc=%d", rc);
    if (rc <= 0)
        return;
    sb_printf(b, " v=1.%d status=%d", r->version_minor, r->status);
    sb_slice(b, "reason", r->reason, buf, len);
    sb_printf(b, " body=%d cl=%llu conn=%u ka=%d tunnel=%d teo=%d", r->body,
              (unsigned long long)r->content_length, r->connection, r->keep_alive, r->tunnel,
              r->te_other);
    describe_headers(b, r->headers, r->num_headers, buf, len);
}

/* --------------------------------------------------------------- feeding */

typedef struct outcome {
    int rc;
    int status;
    sbuf desc;
} outcome;

static tw_http_header hdrs[NHDR];

/* Feeds wire[0..len) to a fresh parser in calls ending at cuts[] and then at
 * len, each call on a new exact-size heap copy of everything so far. Stops at
 * the first non-zero result. response selects the parser; method is the
 * request's method for responses. */
static void feed_head(outcome *o, bool response, tw_http_method method, const char *wire,
                      size_t len, const size_t *cuts, size_t ncuts, const tw_http_limits *lim)
{
    tw_http_parser p;
    tw_http_parser_init(&p, lim);
    tw_http_request req = { .headers = hdrs, .headers_cap = NHDR };
    tw_http_response resp = { .headers = hdrs, .headers_cap = NHDR };
    int rc = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t k = i < ncuts ? cuts[i] : len;
        char *copy = malloc(k ? k : 1);
        assert_non_null(copy);
        memcpy(copy, wire, k);
        rc = response ? tw_http_parse_response(&p, copy, k, method, &resp)
                      : tw_http_parse_request(&p, copy, k, &req);
        if (response)
            describe_response(&o->desc, rc, &resp, copy, k);
        else
            describe_request(&o->desc, rc, &req, copy, k);
        free(copy);
        if (rc != 0)
            break;
    }
    o->rc = rc;
    o->status = tw_http_parser_status(&p);
    if (rc < 0) {
        assert_non_null(tw_http_parser_reason(&p));
        assert_true(o->status >= 400);
    } else {
        assert_int_equal(o->status, 0);
        assert_null(tw_http_parser_reason(&p));
    }
}

static void expect_same(const outcome *a, const outcome *b, const char *name, const char *how)
{
    if (a->rc != b->rc || a->status != b->status ||
        (a->rc > 0 && strcmp(a->desc.s, b->desc.s) != 0))
        fail_msg("%s (%s):\n whole: rc=%d status=%d %s\n split: rc=%d status=%d %s", name, how,
                 a->rc, a->status, a->desc.s, b->rc, b->status, b->desc.s);
}

/* Every split point and byte by byte give the same outcome as one call. */
static void check_splits(bool response, tw_http_method method, const char *name, const char *wire,
                         size_t len)
{
    outcome whole, part;
    feed_head(&whole, response, method, wire, len, NULL, 0, NULL);
    for (size_t cut = 0; cut < len; cut++) {
        feed_head(&part, response, method, wire, len, &cut, 1, NULL);
        char how[32];
        snprintf(how, sizeof how, "cut at %zu", cut);
        expect_same(&whole, &part, name, how);
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    feed_head(&part, response, method, wire, len, cuts, len, NULL);
    expect_same(&whole, &part, name, "byte by byte");
    free(cuts);
}

static int parse_req(const char *wire, size_t len, tw_http_request *req, tw_http_parser *p)
{
    tw_http_parser_init(p, NULL);
    req->headers = hdrs;
    req->headers_cap = NHDR;
    return tw_http_parse_request(p, wire, len, req);
}

#define PARSE_REQ(lit, req, p) parse_req(lit, sizeof(lit) - 1, req, p)

static bool slice_is(tw_http_slice s, const char *lit)
{
    return s.ptr && s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

#define assert_slice(s, lit)                                                                      \
    do {                                                                                          \
        if (!slice_is((s), (lit)))                                                                \
            fail_msg("%s is '%.*s', want '%s'", #s, (int)(s).len, (s).ptr ? (s).ptr : "", (lit)); \
    } while (0)

static const http_case *find_case(const http_case *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    fail_msg("no case %s", name);
    return NULL;
}

/* ------------------------------------------------------------- requests */

static void request_table_verdicts(void **state)
{
    for (size_t i = 0; i < http_request_cases_n; i++) {
        const http_case *c = &http_request_cases[i];
        outcome o;
        feed_head(&o, false, TW_HTTP_GET, c->wire, c->len, NULL, 0, NULL);
        if (c->rc == 0) {
            if (o.rc <= 0)
                fail_msg("%s: want a head, got rc=%d status=%d", c->name, o.rc, o.status);
        } else if (o.rc != c->rc || o.status != c->status) {
            fail_msg("%s: want rc=%d status=%d, got rc=%d status=%d %s", c->name, c->rc, c->status,
                     o.rc, o.status, o.desc.s);
        }
    }
}

static void request_table_any_split(void **state)
{
    for (size_t i = 0; i < http_request_cases_n; i++) {
        const http_case *c = &http_request_cases[i];
        check_splits(false, TW_HTTP_GET, c->name, c->wire, c->len);
    }
}

static void request_fields_browser(void **state)
{
    const http_case *c = find_case(http_request_cases, http_request_cases_n, "get_browser");
    tw_http_request req;
    tw_http_parser p;
    int rc = parse_req(c->wire, c->len, &req, &p);
    assert_int_equal(rc, (int)c->len);
    assert_slice(req.method, "GET");
    assert_int_equal(req.method_id, TW_HTTP_GET);
    assert_slice(req.target, "/wiki/Main_Page?action=view&x=1");
    assert_int_equal(req.target_form, TW_HTTP_ORIGIN_FORM);
    assert_slice(req.path, "/wiki/Main_Page");
    assert_slice(req.query, "action=view&x=1");
    assert_null(req.authority.ptr);
    assert_slice(req.host, "en.example.org");
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.num_headers, 8);
    assert_slice(req.headers[0].name, "Host");
    assert_slice(req.headers[4].name, "Accept-Encoding");
    assert_slice(req.headers[4].value, "gzip, deflate, br");
    assert_slice(req.headers[6].value, "session=abc123; theme=dark");
    assert_int_equal(req.body, TW_HTTP_BODY_NONE);
    assert_true(req.keep_alive);
    assert_int_equal(req.connection, TW_HTTP_CONN_KEEP_ALIVE);
    assert_false(req.upgrade);
    assert_false(req.expect_continue);
}

static void request_fields_bodies(void **state)
{
    tw_http_request req;
    tw_http_parser p;
    static const char post[] = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
                               "hello world";
    int rc = PARSE_REQ(post, &req, &p);
    assert_int_equal(rc, (int)(sizeof post - 1 - 11));
    assert_int_equal(req.method_id, TW_HTTP_POST);
    assert_int_equal(req.body, TW_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 11);

    static const char zero[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(PARSE_REQ(zero, &req, &p), (int)sizeof zero - 1);
    assert_int_equal(req.body, TW_HTTP_BODY_NONE);
    assert_int_equal(req.content_length, 0);

    static const char chunked[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
    assert_int_equal(PARSE_REQ(chunked, &req, &p), (int)sizeof chunked - 1);
    assert_int_equal(req.body, TW_HTTP_BODY_CHUNKED);

    static const char lz[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n";
    assert_int_equal(PARSE_REQ(lz, &req, &p), (int)sizeof lz - 1);
    assert_int_equal(req.content_length, 7);
}

static void request_fields_targets(void **state)
{
    tw_http_request req;
    tw_http_parser p;
    static const char abs[] = "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(abs, &req, &p) > 0);
    assert_int_equal(req.target_form, TW_HTTP_ABSOLUTE_FORM);
    assert_slice(req.authority, "example.com:8080");
    assert_slice(req.path, "/a/b");
    assert_slice(req.query, "c=d");
    assert_slice(req.host, "x");

    static const char abs2[] = "GET https://example.com HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(abs2, &req, &p) > 0);
    assert_slice(req.authority, "example.com");
    assert_slice(req.path, "/");
    assert_null(req.query.ptr);

    static const char abs3[] = "GET http://e.com?q HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(abs3, &req, &p) > 0);
    assert_slice(req.path, "/");
    assert_slice(req.query, "q");

    static const char conn[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    assert_true(PARSE_REQ(conn, &req, &p) > 0);
    assert_int_equal(req.method_id, TW_HTTP_CONNECT);
    assert_int_equal(req.target_form, TW_HTTP_AUTHORITY_FORM);
    assert_slice(req.authority, "example.com:443");
    assert_null(req.path.ptr);

    static const char opt[] = "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(opt, &req, &p) > 0);
    assert_int_equal(req.target_form, TW_HTTP_ASTERISK_FORM);
    assert_int_equal(req.method_id, TW_HTTP_OPTIONS);
    assert_null(req.path.ptr);

    static const char q[] = "GET /p? HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(q, &req, &p) > 0);
    assert_slice(req.path, "/p");
    assert_non_null(req.query.ptr);
    assert_int_equal(req.query.len, 0);

    static const char other[] = "PROPFIND /dav HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(other, &req, &p) > 0);
    assert_int_equal(req.method_id, TW_HTTP_OTHER);
    assert_slice(req.method, "PROPFIND");
}

static void request_fields_misc(void **state)
{
    tw_http_request req;
    tw_http_parser p;
    static const char lead[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(PARSE_REQ(lead, &req, &p), (int)sizeof lead - 1);
    assert_slice(req.method, "GET");

    static const char v10[] = "GET / HTTP/1.0\r\n\r\n";
    assert_true(PARSE_REQ(v10, &req, &p) > 0);
    assert_int_equal(req.version_minor, 0);
    assert_false(req.keep_alive);
    assert_null(req.host.ptr);

    static const char v10ka[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert_true(PARSE_REQ(v10ka, &req, &p) > 0);
    assert_true(req.keep_alive);

    static const char v10both[] = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
    assert_true(PARSE_REQ(v10both, &req, &p) > 0);
    assert_false(req.keep_alive);

    static const char close[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo\r\n"
                                "Connection: CLOSE, bar\r\n\r\n";
    assert_true(PARSE_REQ(close, &req, &p) > 0);
    assert_false(req.keep_alive);
    assert_int_equal(req.connection, TW_HTTP_CONN_CLOSE);

    static const char v12[] = "GET / HTTP/1.2\r\nHost: x\r\n\r\n";
    assert_true(PARSE_REQ(v12, &req, &p) > 0);
    assert_int_equal(req.version_minor, 1);

    static const char up[] = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             "Connection: keep-alive, Upgrade\r\n\r\n";
    assert_true(PARSE_REQ(up, &req, &p) > 0);
    assert_true(req.upgrade);
    static const char up_no_conn[] = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    assert_true(PARSE_REQ(up_no_conn, &req, &p) > 0);
    assert_false(req.upgrade);

    static const char ec[] = "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             "Content-Length: 1\r\n\r\n";
    assert_true(PARSE_REQ(ec, &req, &p) > 0);
    assert_true(req.expect_continue);
    static const char ec10[] = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    assert_true(PARSE_REQ(ec10, &req, &p) > 0);
    assert_false(req.expect_continue);

    static const char ows[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \t  padded value \t \r\n"
                              "X-Empty:\r\nX-Blank:   \r\n\r\n";
    assert_true(PARSE_REQ(ows, &req, &p) > 0);
    assert_slice(req.headers[1].value, "padded value");
    assert_int_equal(req.headers[2].value.len, 0);
    assert_int_equal(req.headers[3].value.len, 0);

    static const char empty_host[] = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    assert_true(PARSE_REQ(empty_host, &req, &p) > 0);
    assert_non_null(req.host.ptr);
    assert_int_equal(req.host.len, 0);
}

/* Once complete, the parser answers the same head length; once failed, the
 * same error, whatever comes next. */
static void request_done_and_error_are_sticky(void **state)
{
    tw_http_request req;
    tw_http_parser p;
    static const char two[] =
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    int rc = PARSE_REQ(two, &req, &p);
    assert_int_equal(rc, 28);
    assert_int_equal(tw_http_parse_request(&p, two, sizeof two - 1, &req), 28);
    assert_slice(req.target, "/a");

    static const char bad[] = "GET / HTTP/1.1\r\nHost x\r\n";
    rc = PARSE_REQ(bad, &req, &p);
    assert_int_equal(rc, TW_EPROTO);
    assert_int_equal(tw_http_parser_status(&p), 400);
    assert_string_equal(tw_http_parser_reason(&p), "whitespace between field name and colon");
    assert_int_equal(tw_http_parse_request(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &req),
                     TW_EPROTO);

    /* Fresh parser: no status, no reason. */
    tw_http_parser_init(&p, NULL);
    assert_int_equal(tw_http_parser_status(&p), 0);
    assert_null(tw_http_parser_reason(&p));
    assert_int_equal(tw_http_parse_request(&p, "", 0, &req), 0);
}

/* Every byte value in each position of a request: the method, the target
 * (short and past 16 bytes, so both the SIMD and the scalar scans run), a
 * field name and a field value. */
static bool rfc_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void request_every_byte_everywhere(void **state)
{
    char buf[256];
    tw_http_request req;
    tw_http_parser p;
    for (int b = 1; b < 256; b++) {
        /* method */
        int n = snprintf(buf, sizeof buf, "G%cT / HTTP/1.1\r\nHost: x\r\n\r\n", b);
        int rc = parse_req(buf, (size_t)n, &req, &p);
        bool ok = rfc_tchar(b);
        if ((rc > 0) != ok)
            fail_msg("method byte 0x%02x: rc=%d", b, rc);

        /* target, short and long */
        for (int pad = 0; pad <= 40; pad += 20) {
            n = snprintf(buf, sizeof buf, "GET /%.*s%c%.*s HTTP/1.1\r\nHost: x\r\n\r\n", pad,
                         "0123456789012345678901234567890123456789", b, 20, "abcdefghijabcdefghij");
            rc = parse_req(buf, (size_t)n, &req, &p);
            ok = b > 0x20 && b < 0x7f && b != '#';
            if ((rc > 0) != ok)
                fail_msg("target byte 0x%02x at %d: rc=%d", b, pad + 1, rc);
        }

        /* field name */
        n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\nX%cY: v\r\n\r\n", b);
        rc = parse_req(buf, (size_t)n, &req, &p);
        if ((rc > 0) != (rfc_tchar(b) || b == ':'))
            fail_msg("name byte 0x%02x: rc=%d", b, rc);

        /* field value, at many offsets */
        for (int pad = 0; pad <= 40; pad += 5) {
            n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\nX: a%.*s%cz%.*s\r\n\r\n",
                         pad, "0123456789012345678901234567890123456789", b, 20,
                         "abcdefghijabcdefghij");
            rc = parse_req(buf, (size_t)n, &req, &p);
            ok = b == '\t' || (b >= 0x20 && b != 0x7f);
            if ((rc > 0) != ok)
                fail_msg("value byte 0x%02x at %d: rc=%d", b, pad + 1, rc);
        }
    }
    /* NUL (snprintf cannot place it) */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: x\r\nX: 0123456789abcdef0123\0z\r\n\r\n";
    assert_int_equal(PARSE_REQ(nul, &req, &p), TW_EPROTO);
}

/* Inputs that end exactly at an unreadable page: every prefix of every
 * case, so a read one byte past the end faults even without ASan. */
static void request_inputs_at_guard_page(void **state)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *map =
        mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
    char *end = map + pg;
    for (int kind = 0; kind < 2; kind++) {
        const http_case *t = kind ? http_response_cases : http_request_cases;
        size_t n = kind ? http_response_cases_n : http_request_cases_n;
        for (size_t i = 0; i < n; i++) {
            const http_case *c = &t[i];
            assert_true(c->len <= (size_t)pg);
            for (size_t k = 0; k <= c->len; k++) {
                char *buf = end - k;
                memcpy(buf, c->wire, k);
                tw_http_parser p;
                tw_http_parser_init(&p, NULL);
                if (kind) {
                    tw_http_response r = { .headers = hdrs, .headers_cap = NHDR };
                    (void)tw_http_parse_response(&p, buf, k, c->method, &r);
                } else {
                    tw_http_request r = { .headers = hdrs, .headers_cap = NHDR };
                    (void)tw_http_parse_request(&p, buf, k, &r);
                }
            }
        }
    }
    for (size_t i = 0; i < http_chunked_cases_n; i++) {
        const chunked_case *c = &http_chunked_cases[i];
        for (size_t k = 0; k <= c->len; k++) {
            char *buf = end - k;
            memcpy(buf, c->wire, k);
            tw_http_chunked ch;
            tw_http_header tr[8];
            tw_http_chunked_init(&ch, NULL, tr, 8);
            size_t used;
            tw_http_slice d;
            size_t off = 0;
            int rc;
            while ((rc = tw_http_chunked_parse(&ch, buf + off, k - off, &used, &d)) ==
                   TW_HTTP_CHUNKED_DATA)
                off += used;
        }
    }
    munmap(map, (size_t)pg * 2);
}

/* ------------------------------------------------------------ responses */

static void response_table_verdicts_and_splits(void **state)
{
    for (size_t i = 0; i < http_response_cases_n; i++) {
        const http_case *c = &http_response_cases[i];
        outcome o;
        feed_head(&o, true, c->method, c->wire, c->len, NULL, 0, NULL);
        if (c->rc == 0) {
            if (o.rc <= 0)
                fail_msg("%s: want a head, got rc=%d status=%d", c->name, o.rc, o.status);
        } else if (o.rc != c->rc || o.status != c->status) {
            fail_msg("%s: want rc=%d status=%d, got rc=%d status=%d", c->name, c->rc, c->status,
                     o.rc, o.status);
        }
        check_splits(true, c->method, c->name, c->wire, c->len);
    }
}

static int parse_resp(const char *name, tw_http_response *r)
{
    const http_case *c = find_case(http_response_cases, http_response_cases_n, name);
    tw_http_parser p;
    tw_http_parser_init(&p, NULL);
    r->headers = hdrs;
    r->headers_cap = NHDR;
    return tw_http_parse_response(&p, c->wire, c->len, c->method, r);
}

static void response_framing(void **state)
{
    tw_http_response r;
    assert_true(parse_resp("resp_200_length", &r) > 0);
    assert_int_equal(r.status, 200);
    assert_slice(r.reason, "OK");
    assert_int_equal(r.body, TW_HTTP_BODY_LENGTH);
    assert_int_equal(r.content_length, 5);
    assert_true(r.keep_alive);
    assert_int_equal(r.num_headers, 2);

    assert_true(parse_resp("resp_200_chunked", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_CHUNKED);
    assert_false(r.te_other);

    assert_true(parse_resp("resp_http10_until_close", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_UNTIL_CLOSE);
    assert_int_equal(r.version_minor, 0);
    assert_false(r.keep_alive);

    assert_true(parse_resp("resp_11_until_close", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_UNTIL_CLOSE);
    assert_false(r.keep_alive);

    assert_true(parse_resp("resp_204", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);
    assert_true(r.keep_alive);

    assert_true(parse_resp("resp_304_with_length", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);
    assert_int_equal(r.content_length, 100);

    assert_true(parse_resp("resp_head_with_length", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);
    assert_true(r.keep_alive);
    assert_true(parse_resp("resp_head_with_chunked", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);

    assert_true(parse_resp("resp_100_continue", &r) > 0);
    assert_int_equal(r.status, 100);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);
    assert_false(r.tunnel);

    assert_true(parse_resp("resp_101_switching", &r) > 0);
    assert_true(r.tunnel);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);
    assert_int_equal(r.connection, TW_HTTP_CONN_UPGRADE);

    assert_true(parse_resp("resp_connect_200", &r) > 0);
    assert_true(r.tunnel);
    assert_true(parse_resp("resp_connect_407", &r) > 0);
    assert_false(r.tunnel);
    assert_int_equal(r.body, TW_HTTP_BODY_NONE);

    assert_true(parse_resp("resp_no_reason", &r) > 0);
    assert_int_equal(r.reason.len, 0);
    assert_true(parse_resp("resp_empty_reason", &r) > 0);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.reason.len, 0);

    assert_true(parse_resp("resp_te_gzip_until_close", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_UNTIL_CLOSE);
    assert_true(r.te_other);
    assert_true(parse_resp("resp_te_gzip_chunked", &r) > 0);
    assert_int_equal(r.body, TW_HTTP_BODY_CHUNKED);
    assert_true(r.te_other);

    assert_true(parse_resp("resp_keep_alive_10", &r) > 0);
    assert_true(r.keep_alive);
    assert_true(parse_resp("resp_close", &r) > 0);
    assert_false(r.keep_alive);
    assert_true(parse_resp("resp_http12", &r) > 0);
    assert_int_equal(r.version_minor, 1);
}

/* ---------------------------------------------------------- chunked body */

typedef struct chunk_outcome {
    int rc;
    int status;
    size_t leftover;
    sbuf data;  /* decoded body */
    sbuf trail; /* trailers described */
} chunk_outcome;

static tw_http_header trailers[NHDR];

/* Decodes wire as a caller would: bytes arrive in pieces ending at cuts[]
 * then len; the caller keeps what was not consumed (in a new exact-size
 * buffer each call) and appends what arrives. */
static void feed_chunked(chunk_outcome *o, const char *wire, size_t len, const size_t *cuts,
                         size_t ncuts, const tw_http_limits *lim)
{
    tw_http_chunked c;
    tw_http_chunked_init(&c, lim, trailers, NHDR);
    o->data.n = 0;
    o->trail.n = 0;
    o->data.s[0] = 0;
    o->trail.s[0] = 0;
    size_t taken = 0; /* bytes of wire consumed */
    int rc = TW_HTTP_CHUNKED_MORE;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t k = i < ncuts ? cuts[i] : len;
        for (;;) {
            size_t n = k - taken;
            char *buf = malloc(n ? n : 1);
            assert_non_null(buf);
            memcpy(buf, wire + taken, n);
            size_t used;
            tw_http_slice d;
            rc = tw_http_chunked_parse(&c, buf, n, &used, &d);
            assert_true(used <= n);
            if (rc == TW_HTTP_CHUNKED_DATA) {
                assert_true(d.len > 0 && d.ptr >= buf && d.ptr + d.len <= buf + used);
                assert_true(o->data.n + d.len < sizeof o->data.s);
                memcpy(o->data.s + o->data.n, d.ptr, d.len);
                o->data.n += d.len;
            } else if (rc == TW_HTTP_CHUNKED_DONE) {
                /* Offsets depend on how much the caller had dropped. */
                print_offsets = false;
                describe_headers(&o->trail, trailers, c.num_trailers, buf, n);
                print_offsets = true;
            } else {
                assert_int_equal(d.len, 0);
            }
            free(buf);
            taken += used;
            if (rc != TW_HTTP_CHUNKED_DATA)
                break;
        }
        if (rc != TW_HTTP_CHUNKED_MORE)
            break;
    }
    o->rc = rc;
    o->status = tw_http_chunked_status(&c);
    o->leftover = len - taken;
    if (rc < 0)
        assert_non_null(tw_http_chunked_reason(&c));
}

static void chunked_table_any_split(void **state)
{
    for (size_t i = 0; i < http_chunked_cases_n; i++) {
        const chunked_case *c = &http_chunked_cases[i];
        chunk_outcome whole, part;
        feed_chunked(&whole, c->wire, c->len, NULL, 0, NULL);
        if (c->rc == 0) {
            if (whole.rc != TW_HTTP_CHUNKED_DONE)
                fail_msg("%s: want DONE, got %d", c->name, whole.rc);
            size_t dlen = strlen(c->decoded);
            if (strcmp(c->name, "binary_data") == 0)
                dlen = 3;
            assert_int_equal(whole.data.n, dlen);
            assert_memory_equal(whole.data.s, c->decoded, dlen);
            assert_int_equal(whole.leftover, 0);
            if (c->ntrailers)
                assert_non_null(strstr(whole.trail.s, "nh="));
        } else if (whole.rc != c->rc || whole.status != c->status) {
            fail_msg("%s: want rc=%d status=%d, got rc=%d status=%d", c->name, c->rc, c->status,
                     whole.rc, whole.status);
        }
        size_t *cuts = malloc((c->len + 1) * sizeof *cuts);
        assert_non_null(cuts);
        for (size_t cut = 0; cut < c->len; cut++) {
            feed_chunked(&part, c->wire, c->len, &cut, 1, NULL);
            if (part.rc != whole.rc || part.status != whole.status || part.data.n != whole.data.n ||
                memcmp(part.data.s, whole.data.s, whole.data.n) != 0 ||
                strcmp(part.trail.s, whole.trail.s) != 0)
                fail_msg("%s: cut at %zu differs: rc %d/%d trailers '%s' / '%s'", c->name, cut,
                         whole.rc, part.rc, whole.trail.s, part.trail.s);
            cuts[cut] = cut;
        }
        feed_chunked(&part, c->wire, c->len, cuts, c->len, NULL);
        if (part.rc != whole.rc || part.status != whole.status || part.data.n != whole.data.n ||
            memcmp(part.data.s, whole.data.s, whole.data.n) != 0 ||
            strcmp(part.trail.s, whole.trail.s) != 0)
            fail_msg("%s: byte by byte differs", c->name);
        free(cuts);
    }
}

static void chunked_trailers_and_next_message(void **state)
{
    static const char wire[] = "4\r\nwiki\r\n0\r\nExpires: never\r\nX-Sum:  abc \r\n\r\nNEXT";
    tw_http_chunked c;
    tw_http_header tr[4];
    tw_http_chunked_init(&c, NULL, tr, 4);
    size_t used, off = 0;
    tw_http_slice d;
    assert_int_equal(tw_http_chunked_parse(&c, wire, sizeof wire - 1, &used, &d),
                     TW_HTTP_CHUNKED_DATA);
    assert_slice(d, "wiki");
    off += used;
    assert_int_equal(tw_http_chunked_parse(&c, wire + off, sizeof wire - 1 - off, &used, &d),
                     TW_HTTP_CHUNKED_DONE);
    off += used;
    assert_string_equal(wire + off, "NEXT");
    assert_int_equal(c.num_trailers, 2);
    assert_slice(tr[0].name, "Expires");
    assert_slice(tr[0].value, "never");
    assert_slice(tr[1].name, "X-Sum");
    assert_slice(tr[1].value, "abc");
    /* Done is sticky and consumes nothing more. */
    assert_int_equal(tw_http_chunked_parse(&c, wire + off, 4, &used, &d), TW_HTTP_CHUNKED_DONE);
    assert_int_equal(used, 0);

    /* Without a trailer array the trailers are validated and skipped. */
    tw_http_chunked_init(&c, NULL, NULL, 0);
    off = 0;
    int rc;
    while ((rc = tw_http_chunked_parse(&c, wire + off, sizeof wire - 1 - off, &used, &d)) ==
           TW_HTTP_CHUNKED_DATA)
        off += used;
    assert_int_equal(rc, TW_HTTP_CHUNKED_DONE);
    assert_int_equal(c.num_trailers, 0);
    assert_string_equal(wire + off + used, "NEXT");
}

/* The in-place decoder, whole and byte by byte, for every valid case. */
static void chunked_inplace(void **state)
{
    for (size_t i = 0; i < http_chunked_cases_n; i++) {
        const chunked_case *c = &http_chunked_cases[i];
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            char *buf = malloc(c->len + 1);
            assert_non_null(buf);
            tw_http_chunked ch;
            tw_http_chunked_init(&ch, NULL, NULL, 0);
            size_t src = 0, dst = 0, have = bytewise ? 0 : c->len;
            memcpy(buf, c->wire, c->len);
            int rc;
            for (;;) {
                rc = tw_http_chunked_decode_inplace(&ch, buf, have, &src, &dst);
                if (rc != TW_HTTP_CHUNKED_MORE || have == c->len)
                    break;
                have++;
            }
            if (c->rc == 0) {
                size_t dlen = strcmp(c->name, "binary_data") == 0 ? 3 : strlen(c->decoded);
                if (rc != TW_HTTP_CHUNKED_DONE)
                    fail_msg("%s (bytewise=%d): rc=%d", c->name, bytewise, rc);
                assert_int_equal(dst, dlen);
                assert_memory_equal(buf, c->decoded, dlen);
                assert_int_equal(src, c->len);
            } else {
                assert_int_equal(rc, c->rc);
                assert_int_equal(tw_http_chunked_status(&ch), c->status);
            }
            free(buf);
        }
    }
}

/* --------------------------------------------------------------- limits */

/* Parses a generated head in one call, then byte by byte (growing buffer,
 * no copies: heads here are large). Both must give rc and status. */
static void expect_head(const char *wire, size_t len, const tw_http_limits *lim, int want_rc,
                        int want_status, size_t cap)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        tw_http_parser p;
        tw_http_parser_init(&p, lim);
        tw_http_request req = { .headers = hdrs, .headers_cap = cap };
        int rc = 0;
        if (!bytewise) {
            rc = tw_http_parse_request(&p, wire, len, &req);
        } else {
            for (size_t k = 1; k <= len && rc == 0; k++)
                rc = tw_http_parse_request(&p, wire, k, &req);
        }
        if (want_rc > 0 ? rc <= 0 : rc != want_rc)
            fail_msg("bytewise=%d: want rc=%d, got rc=%d (%s)", bytewise, want_rc, rc,
                     tw_http_parser_reason(&p) ? tw_http_parser_reason(&p) : "-");
        assert_int_equal(tw_http_parser_status(&p), want_status);
    }
}

/* Builds "GET /aaa... HTTP/1.1" with a request line of line_len bytes. */
static size_t build_request_line(char *buf, size_t line_len)
{
    size_t n = 0;
    memcpy(buf, "GET /", 5);
    n = 5;
    size_t pad = line_len - strlen("GET / HTTP/1.1");
    memset(buf + n, 'a', pad);
    n += pad;
    memcpy(buf + n, " HTTP/1.1\r\nHost: x\r\n\r\n", 23);
    return n + 23;
}

static void limit_request_line(void **state)
{
    char *buf = malloc(20000);
    assert_non_null(buf);
    size_t n = build_request_line(buf, 8192);
    expect_head(buf, n, NULL, 1, 0, NHDR);
    n = build_request_line(buf, 8193);
    expect_head(buf, n, NULL, TW_ELIMIT, 414, NHDR);
    /* Refused before any LF arrives. */
    expect_head(buf, 8194, NULL, TW_ELIMIT, 414, NHDR);

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_start_line_bytes, 8192);
    lim.max_start_line_bytes = 20;
    static const char ok[] = "GET /0123 HTTP/1.1\r\nHost: x\r\n\r\n"; /* 18 */
    static const char ok20[] = "GET /012345 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char big[] = "GET /0123456 HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_head(ok, sizeof ok - 1, &lim, 1, 0, NHDR);
    expect_head(ok20, sizeof ok20 - 1, &lim, 1, 0, NHDR);
    expect_head(big, sizeof big - 1, &lim, TW_ELIMIT, 414, NHDR);

    /* Empty lines before the request line are bounded too. */
    memset(buf, 0, 20000);
    for (size_t i = 0; i < 5000; i++)
        memcpy(buf + 2 * i, "\r\n", 2);
    expect_head(buf, 10000, NULL, TW_EPROTO, 400, NHDR);
    free(buf);
}

static size_t build_field_line(char *buf, size_t line_len)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    size_t n = sizeof head - 1;
    memcpy(buf, head, n);
    memcpy(buf + n, "X: ", 3);
    memset(buf + n + 3, 'v', line_len - 3);
    n += line_len;
    memcpy(buf + n, "\r\n\r\n", 4);
    return n + 4;
}

static void limit_header_line(void **state)
{
    char *buf = malloc(20000);
    assert_non_null(buf);
    size_t n = build_field_line(buf, 8192);
    expect_head(buf, n, NULL, 1, 0, NHDR);
    n = build_field_line(buf, 8193);
    expect_head(buf, n, NULL, TW_ELIMIT, 431, NHDR);
    expect_head(buf, n - 3, NULL, TW_ELIMIT, 431, NHDR); /* before its LF */

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_header_line_bytes, 8192);
    lim.max_header_line_bytes = 10;
    static const char ok[] = "GET / HTTP/1.1\r\nHost: x\r\nX: 1234567\r\n\r\n";
    static const char big[] = "GET / HTTP/1.1\r\nHost: x\r\nX: 12345678\r\n\r\n";
    expect_head(ok, sizeof ok - 1, &lim, 1, 0, NHDR);
    expect_head(big, sizeof big - 1, &lim, TW_ELIMIT, 431, NHDR);
    free(buf);
}

/* A field section of exactly total bytes: "Host: x\r\n", lines of filler,
 * and the final CRLF. */
static size_t build_section(char *buf, size_t total)
{
    static const char start[] = "GET / HTTP/1.1\r\n";
    size_t n = sizeof start - 1;
    memcpy(buf, start, n);
    size_t left = total - 2;
    memcpy(buf + n, "Host: x\r\n", 9);
    n += 9;
    left -= 9;
    while (left) {
        size_t line = left > 1000 ? 1000 : left;
        if (left - line != 0 && left - line < 8)
            line -= 8;
        assert_true(line >= 6);
        memcpy(buf + n, "X: ", 3);
        memset(buf + n + 3, 'v', line - 5);
        memcpy(buf + n + line - 2, "\r\n", 2);
        n += line;
        left -= line;
    }
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

static void limit_header_section(void **state)
{
    char *buf = malloc(80000);
    assert_non_null(buf);
    size_t n = build_section(buf, 65536);
    expect_head(buf, n, NULL, 1, 0, NHDR);
    n = build_section(buf, 65537);
    expect_head(buf, n, NULL, TW_ELIMIT, 431, NHDR);

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_header_bytes, 65536);
    lim.max_header_bytes = 100;
    n = build_section(buf, 100);
    expect_head(buf, n, &lim, 1, 0, NHDR);
    n = build_section(buf, 101);
    expect_head(buf, n, &lim, TW_ELIMIT, 431, NHDR);
    free(buf);
}

static size_t build_fields(char *buf, size_t count)
{
    size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (size_t i = 1; i < count; i++)
        n += (size_t)sprintf(buf + n, "X-%zu: %zu\r\n", i, i);
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

static void limit_header_count(void **state)
{
    char *buf = malloc(10000);
    assert_non_null(buf);
    size_t n = build_fields(buf, 100);
    expect_head(buf, n, NULL, 1, 0, NHDR);
    n = build_fields(buf, 101);
    expect_head(buf, n, NULL, TW_ELIMIT, 431, NHDR);

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_headers, 100);
    lim.max_headers = 5;
    n = build_fields(buf, 5);
    expect_head(buf, n, &lim, 1, 0, NHDR);
    n = build_fields(buf, 6);
    expect_head(buf, n, &lim, TW_ELIMIT, 431, NHDR);

    /* A caller array smaller than the limit is the limit. */
    n = build_fields(buf, 3);
    expect_head(buf, n, NULL, 1, 0, 3);
    n = build_fields(buf, 4);
    expect_head(buf, n, NULL, TW_ELIMIT, 431, 3);
    free(buf);
}

static void limit_body_content_length(void **state)
{
    char buf[200];
    int n = snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n",
                     1u << 20);
    expect_head(buf, (size_t)n, NULL, 1, 0, NHDR);
    n = snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n",
                 (1u << 20) + 1);
    expect_head(buf, (size_t)n, NULL, TW_ELIMIT, 413, NHDR);

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_body_bytes, 1u << 20);
    lim.max_body_bytes = UINT64_MAX;
    n = snprintf(buf, sizeof buf,
                 "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n");
    expect_head(buf, (size_t)n, &lim, 1, 0, NHDR);
    lim.max_body_bytes = 0;
    n = snprintf(buf, sizeof buf, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
    expect_head(buf, (size_t)n, &lim, TW_ELIMIT, 413, NHDR);
}

/* Runs a chunked body through the decoder in one call and byte by byte. */
static void expect_chunked(const char *wire, size_t len, const tw_http_limits *lim, int want_rc,
                           int want_status)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        tw_http_chunked c;
        tw_http_chunked_init(&c, lim, trailers, NHDR);
        size_t src = 0, dst = 0, have = bytewise ? 1 : len;
        char *buf = malloc(len);
        assert_non_null(buf);
        memcpy(buf, wire, len);
        int rc;
        for (;;) {
            rc = tw_http_chunked_decode_inplace(&c, buf, have, &src, &dst);
            if (rc != TW_HTTP_CHUNKED_MORE || have == len)
                break;
            have++;
        }
        free(buf);
        if (rc != want_rc)
            fail_msg("bytewise=%d: want rc=%d, got rc=%d (%s)", bytewise, want_rc, rc,
                     tw_http_chunked_reason(&c) ? tw_http_chunked_reason(&c) : "-");
        assert_int_equal(tw_http_chunked_status(&c), want_status);
    }
}

static void limit_body_chunked(void **state)
{
    /* Default: 1 MiB in 0x100000 bytes of one chunk is fine; one more byte in
     * a second chunk is refused when its size line arrives. */
    size_t cap = (1u << 20) + 100;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = (size_t)sprintf(buf, "100000\r\n");
    memset(buf + n, 'x', 1u << 20);
    n += 1u << 20;
    size_t mid = n;
    n += (size_t)sprintf(buf + n, "\r\n0\r\n\r\n");
    tw_http_chunked c;
    tw_http_chunked_init(&c, NULL, NULL, 0);
    size_t src = 0, dst = 0;
    assert_int_equal(tw_http_chunked_decode_inplace(&c, buf, n, &src, &dst), TW_HTTP_CHUNKED_DONE);
    assert_int_equal(dst, 1u << 20);
    /* The decoder moved the data: build the input again. */
    n = (size_t)sprintf(buf, "100000\r\n");
    memset(buf + n, 'x', 1u << 20);
    n = mid + (size_t)sprintf(buf + mid, "\r\n1\r\n");
    tw_http_chunked_init(&c, NULL, NULL, 0);
    src = dst = 0;
    assert_int_equal(tw_http_chunked_decode_inplace(&c, buf, n, &src, &dst), TW_ELIMIT);
    assert_int_equal(tw_http_chunked_status(&c), 413);
    free(buf);

    tw_http_limits lim;
    tw_http_limits_init(&lim);
    lim.max_body_bytes = 10;
    static const char ok[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    static const char big[] = "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n";
    static const char huge[] = "ffffffffffffffff\r\n";
    expect_chunked(ok, sizeof ok - 1, &lim, TW_HTTP_CHUNKED_DONE, 0);
    expect_chunked(big, sizeof big - 1, &lim, TW_ELIMIT, 413);
    expect_chunked(huge, sizeof huge - 1, &lim, TW_ELIMIT, 413);
}

static void limit_chunk_line(void **state)
{
    char *buf = malloc(10000);
    assert_non_null(buf);
    tw_http_limits lim;
    tw_http_limits_init(&lim);
    assert_int_equal(lim.max_chunk_line_bytes, 4096);
    for (size_t line = 4096; line <= 4097; line++) {
        size_t n = 0;
        memcpy(buf, "1;", 2);
        memset(buf + 2, 'e', line - 2);
        n = line;
        n += (size_t)sprintf(buf + n, "\r\nx\r\n0\r\n\r\n");
        if (line == 4096)
            expect_chunked(buf, n, NULL, TW_HTTP_CHUNKED_DONE, 0);
        else
            expect_chunked(buf, n, NULL, TW_ELIMIT, 400);
    }
    /* Without any LF: refused once past the limit. */
    memset(buf, '0', 5000);
    expect_chunked(buf, 5000, NULL, TW_ELIMIT, 400);
    lim.max_chunk_line_bytes = 3;
    static const char ok[] = "1;a\r\nx\r\n0\r\n\r\n";
    static const char big[] = "1;ab\r\nx\r\n0\r\n\r\n";
    expect_chunked(ok, sizeof ok - 1, &lim, TW_HTTP_CHUNKED_DONE, 0);
    expect_chunked(big, sizeof big - 1, &lim, TW_ELIMIT, 400);
    free(buf);
}

static void limit_trailers(void **state)
{
    tw_http_limits lim;
    tw_http_limits_init(&lim);
    lim.max_header_line_bytes = 8;
    lim.max_header_bytes = 30;
    lim.max_headers = 3;
    static const char ok[] = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    static const char many[] = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    static const char line[] = "0\r\nA: 123456\r\n\r\n";
    static const char line_ok[] = "0\r\nA: 12345\r\n\r\n";
    static const char section[] = "0\r\nA: 12345\r\nB: 12345\r\nC: 12345\r\n\r\n";
    expect_chunked(ok, sizeof ok - 1, &lim, TW_HTTP_CHUNKED_DONE, 0);
    expect_chunked(line_ok, sizeof line_ok - 1, &lim, TW_HTTP_CHUNKED_DONE, 0);
    expect_chunked(many, sizeof many - 1, &lim, TW_ELIMIT, 431);
    expect_chunked(line, sizeof line - 1, &lim, TW_ELIMIT, 431);
    expect_chunked(section, sizeof section - 1, &lim, TW_ELIMIT, 431);
}

/* A slowloris feeding a maximal head one byte per call: every call only
 * looks at new bytes plus one pass per completed line, so this stays fast
 * (quadratic rescanning would take minutes here). */
static void slowloris_is_linear(void **state)
{
    char *buf = malloc(80000);
    assert_non_null(buf);
    size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 7; i++) {
        n += (size_t)sprintf(buf + n, "X-%d: ", i);
        memset(buf + n, 'v', 8000);
        n += 8000;
        n += (size_t)sprintf(buf + n, "\r\n");
    }
    n += (size_t)sprintf(buf + n, "\r\n");
    tw_http_parser p;
    tw_http_parser_init(&p, NULL);
    tw_http_request req = { .headers = hdrs, .headers_cap = NHDR };
    int rc = 0;
    for (int round = 0; round < 3; round++) {
        tw_http_parser_init(&p, NULL);
        rc = 0;
        for (size_t k = 1; k <= n && rc == 0; k++)
            rc = tw_http_parse_request(&p, buf, k, &req);
        assert_int_equal(rc, (int)n);
    }
    assert_int_equal(req.num_headers, 8);
    assert_int_equal(req.headers[7].value.len, 8000);
    free(buf);
}

/* ------------------------------------------------------------ pipelining */

/* Three requests in one buffer (plain, Content-Length body, chunked body
 * with trailers), parsed one after another, split at every point. */
static void pipelined_requests(void **state)
{
    static const char wire[] = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                               "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                               "POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                               "\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
                               "GET /four HTTP/1.0\r\n\r\n";
    size_t len = sizeof wire - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        /* Emulates a server: bytes arrive as [0, cut) then the rest. */
        size_t have = cut, off = 0;
        char targets[200] = "", body[200] = "";
        int count = 0;
        enum { HEAD, LENGTH, CHUNKED } mode = HEAD;
        tw_http_parser p;
        tw_http_parser_init(&p, NULL);
        tw_http_request req = { .headers = hdrs, .headers_cap = NHDR };
        tw_http_length lb;
        tw_http_chunked cb;
        tw_http_header tr[4];
        for (int guard = 0; guard < 100; guard++) {
            if (mode == HEAD) {
                int rc = tw_http_parse_request(&p, wire + off, have - off, &req);
                assert_true(rc >= 0);
                if (rc == 0) {
                    if (have == len)
                        break;
                    have = len;
                    continue;
                }
                strncat(targets, req.target.ptr, req.target.len);
                strcat(targets, " ");
                count++;
                off += (size_t)rc;
                if (req.body == TW_HTTP_BODY_LENGTH) {
                    tw_http_length_init(&lb, req.content_length);
                    mode = LENGTH;
                } else if (req.body == TW_HTTP_BODY_CHUNKED) {
                    tw_http_chunked_init(&cb, NULL, tr, 4);
                    mode = CHUNKED;
                } else {
                    tw_http_parser_init(&p, NULL);
                }
            } else if (mode == LENGTH) {
                size_t n = tw_http_length_take(&lb, have - off);
                strncat(body, wire + off, n);
                off += n;
                if (tw_http_length_done(&lb)) {
                    mode = HEAD;
                    strcat(body, "|");
                    tw_http_parser_init(&p, NULL);
                } else {
                    assert_int_equal(off, have);
                    have = len;
                }
            } else {
                size_t used;
                tw_http_slice d;
                int rc = tw_http_chunked_parse(&cb, wire + off, have - off, &used, &d);
                assert_true(rc >= 0);
                off += used;
                if (rc == TW_HTTP_CHUNKED_DATA) {
                    strncat(body, d.ptr, d.len);
                } else if (rc == TW_HTTP_CHUNKED_DONE) {
                    assert_int_equal(cb.num_trailers, 1);
                    assert_slice(tr[0].name, "T");
                    strcat(body, "|");
                    mode = HEAD;
                    tw_http_parser_init(&p, NULL);
                } else {
                    assert_int_not_equal(have, len);
                    have = len;
                }
            }
        }
        assert_int_equal(count, 4);
        assert_string_equal(targets, "/one /two /three /four ");
        assert_string_equal(body, "hello|abcde|");
        assert_int_equal(off, len);
    }
}

/* ------------------------------------------------------ Content-Length */

static void length_counter(void **state)
{
    tw_http_length b;
    tw_http_length_init(&b, 10);
    assert_false(tw_http_length_done(&b));
    assert_int_equal(tw_http_length_take(&b, 4), 4);
    assert_int_equal(tw_http_length_take(&b, 0), 0);
    assert_int_equal(tw_http_length_take(&b, 100), 6);
    assert_true(tw_http_length_done(&b));
    assert_int_equal(tw_http_length_take(&b, 100), 0);
    tw_http_length_init(&b, 0);
    assert_true(tw_http_length_done(&b));
    tw_http_length_init(&b, UINT64_MAX);
    assert_int_equal(tw_http_length_take(&b, SIZE_MAX - 1), SIZE_MAX - 1);
    assert_false(tw_http_length_done(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_table_verdicts),
        cmocka_unit_test(request_table_any_split),
        cmocka_unit_test(request_fields_browser),
        cmocka_unit_test(request_fields_bodies),
        cmocka_unit_test(request_fields_targets),
        cmocka_unit_test(request_fields_misc),
        cmocka_unit_test(request_done_and_error_are_sticky),
        cmocka_unit_test(request_every_byte_everywhere),
        cmocka_unit_test(request_inputs_at_guard_page),
        cmocka_unit_test(response_table_verdicts_and_splits),
        cmocka_unit_test(response_framing),
        cmocka_unit_test(chunked_table_any_split),
        cmocka_unit_test(chunked_trailers_and_next_message),
        cmocka_unit_test(chunked_inplace),
        cmocka_unit_test(limit_request_line),
        cmocka_unit_test(limit_header_line),
        cmocka_unit_test(limit_header_section),
        cmocka_unit_test(limit_header_count),
        cmocka_unit_test(limit_body_content_length),
        cmocka_unit_test(limit_body_chunked),
        cmocka_unit_test(limit_chunk_line),
        cmocka_unit_test(limit_trailers),
        cmocka_unit_test(slowloris_is_linear),
        cmocka_unit_test(pipelined_requests),
        cmocka_unit_test(length_counter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
