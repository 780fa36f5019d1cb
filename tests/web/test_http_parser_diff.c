/* ctest: label=unit timeout=60 backends=once libs=http_parser */
/* Differential test: twirl's HTTP/1.1 parser against libhttp_parser (the
 * Node.js parser, as Debian ships it in libhttp-parser-dev). Both parse the
 * same corpus: the shared request, response and chunked-body tables and the
 * fuzz seed files. For each input, both verdicts (accept / reject /
 * incomplete) and, when both accept, the parsed fields are compared. Every
 * disagreement must be listed in `explained` below with its reason; the test
 * fails on an unexplained disagreement, and on an explained one that no
 * longer happens (so the table stays true). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "http_cases.h"
#include "twirl/http_parser.h"
#include "twirl/http_util.h"

/* ------------------------------------------------------------ the table */

typedef struct explained_case {
    const char *name;
    const char *why;
} explained_case;

#define TE_LIST                                                                  \
    "RFC 9112 §6.1/§6.3: we parse Transfer-Encoding as a list of codings and " \
    "require chunked once, last (else 400); they only look for one \"chunked\""
#define WS_NAME                                                                    \
    "RFC 9112 §5.1: no whitespace between field name and colon (400); they keep " \
    "the space in the name"
#define OBS_FOLD                                                                 \
    "RFC 9112 §5.2: we reject obs-fold (allowed for a server; a strict client " \
    "choice); they unfold it"
#define BARE_LF "RFC 9112 §2.2 allows accepting a bare LF; we reject it everywhere, they accept"
#define CTL     "RFC 9110 §5.5: CTLs other than HTAB are invalid in values; they pass them"
#define FORM    "RFC 9112 §3.2: the request-target form must suit the method; they do not check"
#define HOST \
    "RFC 9112 §3.2: an HTTP/1.1 request needs exactly one valid Host (400); they do not check"
#define SP1     "RFC 9112 §3/§4: exactly one SP between the parts of the start line; they allow more"
#define VERSION "505 for a version other than HTTP/1.x; they parse any d.d"
#define STATUS  "RFC 9110 §15: a status code is 3 digits in 100-599; they take 1-3 digits, 0-999"
#define CHUNK_EXT                                                                    \
    "RFC 9112 §7.1.1: chunk extensions are checked against the grammar (BWS \";\" " \
    "token [= token/quoted-string]); they skip to the CRLF"
#define TRAILER "trailer fields follow the field-line rules of a head; they are lax there"

static const explained_case explained[] = {
    /* Requests: both accept, fields differ. */
    { "req/post_chunked_empty_elements",
      "RFC 9110 §5.6.1: empty list elements are ignored, so \", chunked ,\" is chunked; they see "
      "no chunked (a framing split between the two parsers)" },
    { "req/http12_as_11", "RFC 9110 §2.5: HTTP/1.2 is handled as HTTP/1.1; they report 1.2" },
    { "req/value_ows_trimmed",
      "RFC 9110 §5.5: trailing OWS is not part of a field value; they keep it" },
    /* Requests: we accept, they reject. */
    { "req/lowercase_method",
      "methods are case-sensitive tokens (RFC 9110 §9.1): we pass any token on (the server "
      "answers 501); they know only a fixed list" },
    /* Requests: we reject, they accept (stricter by design). */
    { "req/te_gzip_alone", TE_LIST },
    { "req/te_chunked_gzip", TE_LIST },
    { "req/te_gzip_chunked", "we decode no transfer coding but chunked: 501 (RFC 9112 §6.1)" },
    { "req/te_chunked_twice", TE_LIST },
    { "req/te_chunked_two_fields", TE_LIST },
    { "req/te_chunked_then_gzip_field", TE_LIST },
    { "req/te_empty", TE_LIST },
    { "req/te_commas_only", TE_LIST },
    { "req/te_chunked_param", TE_LIST },
    { "req/te_space_inside", TE_LIST },
    { "req/te_xchunked", TE_LIST },
    { "req/te_chunked_suffix", TE_LIST },
    { "req/te_identity", TE_LIST },
    { "req/te_quoted", TE_LIST },
    { "req/te_http10", "RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing" },
    { "req/te_vertical_tab", CTL },
    { "req/te_obs_fold", OBS_FOLD },
    { "req/te_name_space", WS_NAME },
    { "req/obs_fold", OBS_FOLD },
    { "req/obs_fold_tab", OBS_FOLD },
    { "req/space_before_first_field",
      "RFC 9112 §2.2: whitespace before the first field line is invalid; they make it part of "
      "the name" },
    { "req/bare_cr_end_of_head", "a CR not followed by LF is invalid; they skip it" },
    { "req/bare_lf_everywhere", BARE_LF },
    { "req/bare_lf_field", BARE_LF },
    { "req/bare_lf_end_of_head", BARE_LF },
    { "req/bare_lf_leading", BARE_LF },
    { "req/esc_in_value", CTL },
    { "req/high_byte_in_target",
      "RFC 9112 §3.2: a target is URI characters; raw bytes >= 0x80 must be percent-encoded" },
    { "req/tab_in_target", "a target holds no whitespace (RFC 3986); they take the tab" },
    { "req/fragment_in_target", "RFC 9112 §3.2: no fragment in a request target" },
    { "req/space_before_colon", WS_NAME },
    { "req/two_spaces_after_method", SP1 },
    { "req/two_spaces_before_version", SP1 },
    { "req/http09", "HTTP/0.9 (no version) is refused; they parse it as 0.9" },
    { "req/http20", VERSION },
    { "req/http30", VERSION },
    { "req/http09_versioned", VERSION },
    { "req/asterisk_with_get", FORM },
    { "req/asterisk_suffix", FORM },
    { "req/connect_origin_form", FORM },
    { "req/connect_no_port", FORM },
    { "req/connect_empty_port", FORM },
    { "req/connect_port_range", FORM },
    { "req/connect_userinfo", FORM },
    { "req/connect_absolute", FORM },
    { "req/absolute_userinfo", "RFC 9110 §4.2.4: userinfo in an http(s) target is refused" },
    { "req/absolute_empty_authority",
      "RFC 9110 §4.2.1: an http URI with an empty host is invalid" },
    { "req/absolute_bad_port", "RFC 3986 §3.2.3: a port is digits" },
    { "req/missing_host", HOST },
    { "req/two_hosts", HOST },
    { "req/two_hosts_same", HOST },
    { "req/host_with_space", HOST },
    { "req/host_with_slash", HOST },
    { "req/host_userinfo", HOST },
    { "req/host_bad_port", HOST },
    { "req/host_port_only", HOST },
    { "req/host_bad_pct", HOST },
    { "req/host_unclosed_bracket", HOST },
    { "req/fuzz_space_after_partial_name",
      "whitespace after a field name is refused as soon as it arrives; they keep it in the "
      "name and wait" },
    /* Responses. */
    { "resp/resp_head_with_chunked",
      "we report the body that follows (none, after HEAD); they report the header's flag" },
    { "resp/resp_101_switching",
      "after 101 the connection is another protocol: we report keep_alive=0 and tunnel=1" },
    { "resp/resp_http12", "RFC 9110 §2.5: HTTP/1.2 is handled as HTTP/1.1; they report 1.2" },
    { "resp/resp_te_http10", "RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing" },
    { "resp/resp_te_chunked_twice", TE_LIST },
    { "resp/resp_http20", VERSION },
    { "resp/resp_status_two_digits", STATUS },
    { "resp/resp_status_099", STATUS },
    { "resp/resp_status_600", STATUS },
    { "resp/resp_two_spaces", SP1 },
    { "resp/resp_bare_lf", BARE_LF },
    { "resp/resp_obs_fold", OBS_FOLD },
    { "resp/resp_ctl_in_reason", "RFC 9112 §4: a reason phrase is HTAB / SP / VCHAR / obs-text" },
    { "resp/resp_space_before_colon", WS_NAME },
    /* Chunked bodies. */
    { "chunked/size_trailing_space", CHUNK_EXT },
    { "chunked/size_space_inside",
      "\"1 0\" is not a chunk size; they read 1 and wait for more data" },
    { "chunked/ext_empty_name", CHUNK_EXT },
    { "chunked/ext_empty_value", CHUNK_EXT },
    { "chunked/ext_unterminated_quote", CHUNK_EXT },
    { "chunked/ext_bare_lf_in_quote", CHUNK_EXT },
    { "chunked/ext_ctl", CHUNK_EXT },
    { "chunked/ext_trailing_space", CHUNK_EXT },
    { "chunked/final_bare_lf", BARE_LF },
    { "chunked/trailer_obs_fold", TRAILER },
    { "chunked/trailer_bare_lf", TRAILER },
    { "chunked/trailer_space_before_colon", TRAILER },
    { "chunked/fuzz_trailer_space_after_partial_name", TRAILER },
};

/* ------------------------------------------------------------ verdicts */

typedef struct text {
    char s[8192];
    size_t n;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->s + t->n, sizeof t->s - t->n, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->n += (size_t)n < sizeof t->s - t->n ? (size_t)n : sizeof t->s - t->n - 1;
}

static void put_bytes(text *t, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '|')
            put(t, "%c", c);
        else
            put(t, "\\x%02x", c);
    }
}

/* ---------------------------------------------------- libhttp_parser side */

typedef struct ref {
    text url, hdrs, body, status;
    int last_was_value;
    int headers_done, message_done;
    /* Read in on_headers_complete: later the parser changes them. */
    unsigned flags, major, minor, code, method;
    uint64_t content_length;
    int keep_alive;
    int skip_body; /* 1 for HEAD, 2 for CONNECT (no body, no more messages) */
} ref;

static int on_url(http_parser *hp, const char *at, size_t n)
{
    put_bytes(&((ref *)hp->data)->url, at, n);
    return 0;
}

static int on_status(http_parser *hp, const char *at, size_t n)
{
    put_bytes(&((ref *)hp->data)->status, at, n);
    return 0;
}

static int on_field(http_parser *hp, const char *at, size_t n)
{
    ref *r = hp->data;
    if (r->last_was_value || r->hdrs.n == 0)
        put(&r->hdrs, "|");
    r->last_was_value = 0;
    put_bytes(&r->hdrs, at, n);
    return 0;
}

static int on_value(http_parser *hp, const char *at, size_t n)
{
    ref *r = hp->data;
    if (!r->last_was_value)
        put(&r->hdrs, "=");
    r->last_was_value = 1;
    put_bytes(&r->hdrs, at, n);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    ref *r = hp->data;
    r->headers_done = 1;
    r->flags = hp->flags;
    r->major = hp->http_major;
    r->minor = hp->http_minor;
    r->code = hp->status_code;
    r->method = hp->method;
    r->content_length = hp->content_length;
    r->keep_alive = http_should_keep_alive(hp);
    return r->skip_body;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    put_bytes(&((ref *)hp->data)->body, at, n);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    ((ref *)hp->data)->message_done = 1;
    http_parser_pause(hp, 1); /* compare the first message of a pipeline only */
    return 0;
}

/* Parses one message head with libhttp_parser and describes the verdict. */
static void ref_head(text *out, const char *wire, size_t len, int response, tw_http_method m)
{
    static ref r;
    memset(&r, 0, sizeof r);
    r.skip_body = !response ? 0 : m == TW_HTTP_HEAD ? 1 : m == TW_HTTP_CONNECT ? 2 : 0;
    http_parser hp;
    http_parser_init(&hp, response ? HTTP_RESPONSE : HTTP_REQUEST);
    hp.data = &r;
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_url = on_url;
    st.on_status = on_status;
    st.on_header_field = on_field;
    st.on_header_value = on_value;
    st.on_headers_complete = on_headers_complete;
    st.on_body = on_body;
    st.on_message_complete = on_message_complete;
    http_parser_execute(&hp, &st, wire, len);
    out->n = 0;
    out->s[0] = 0;
    if (!r.headers_done) {
        put(out, HTTP_PARSER_ERRNO(&hp) != HPE_OK ? "reject" : "incomplete");
        return;
    }
    put(out, "accept");
    if (response)
        put(out, " status=%u", r.code);
    else
        put(out, " method=%s url=%s", http_method_str((enum http_method)r.method), r.url.s);
    put(out, " version=%u.%u headers=%s", r.major, r.minor, r.hdrs.s);
    if (r.flags & F_CHUNKED)
        put(out, " framing=chunked");
    else if (r.flags & F_CONTENTLENGTH)
        put(out, " framing=length:%llu", (unsigned long long)r.content_length);
    else
        put(out, " framing=none");
    put(out, " keep_alive=%d", r.keep_alive);
}

/* Decodes a chunked body with libhttp_parser (inside a request). */
static void ref_chunked(text *out, const char *wire, size_t len)
{
    static const char head[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    char *buf = malloc(sizeof head - 1 + len);
    assert_non_null(buf);
    memcpy(buf, head, sizeof head - 1);
    memcpy(buf + sizeof head - 1, wire, len);
    static ref r;
    memset(&r, 0, sizeof r);
    http_parser hp;
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &r;
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_body = on_body;
    st.on_message_complete = on_message_complete;
    http_parser_execute(&hp, &st, buf, sizeof head - 1 + len);
    free(buf);
    out->n = 0;
    out->s[0] = 0;
    if (r.message_done)
        put(out, "accept body=%s", r.body.s);
    else if (HTTP_PARSER_ERRNO(&hp) != HPE_OK)
        put(out, "reject");
    else
        put(out, "incomplete");
}

/* ----------------------------------------------------------- twirl side */

static void our_headers(text *out, const tw_http_header *h, size_t n)
{
    put(out, " headers=");
    for (size_t i = 0; i < n; i++) {
        put(out, "|");
        put_bytes(out, h[i].name.ptr, h[i].name.len);
        put(out, "=");
        put_bytes(out, h[i].value.ptr, h[i].value.len);
    }
}

static void our_framing(text *out, tw_http_body body, const tw_http_header *h, size_t n)
{
    const tw_http_header *cl = tw_http_header_find(h, n, "content-length");
    if (body == TW_HTTP_BODY_CHUNKED)
        put(out, " framing=chunked");
    else if (cl)
        put(out, " framing=length:%llu", strtoull(cl->value.ptr, NULL, 10));
    else
        put(out, " framing=none");
}

static void our_head(text *out, const char *wire, size_t len, int response, tw_http_method m)
{
    tw_http_header h[128];
    tw_http_parser p;
    tw_http_parser_init(&p, NULL);
    int rc;
    out->n = 0;
    out->s[0] = 0;
    if (response) {
        tw_http_response r = { .headers = h, .headers_cap = 128 };
        rc = tw_http_parse_response(&p, wire, len, m, &r);
        if (rc <= 0) {
            put(out, rc < 0 ? "reject" : "incomplete");
            return;
        }
        put(out, "accept status=%d version=1.%d", r.status, r.version_minor);
        our_headers(out, h, r.num_headers);
        our_framing(out, r.body, h, r.num_headers);
        put(out, " keep_alive=%d", r.keep_alive);
    } else {
        tw_http_request r = { .headers = h, .headers_cap = 128 };
        rc = tw_http_parse_request(&p, wire, len, &r);
        if (rc <= 0) {
            put(out, rc < 0 ? "reject" : "incomplete");
            return;
        }
        put(out, "accept method=%.*s url=", (int)r.method.len, r.method.ptr);
        put_bytes(out, r.target.ptr, r.target.len);
        put(out, " version=1.%d", r.version_minor);
        our_headers(out, h, r.num_headers);
        our_framing(out, r.body, h, r.num_headers);
        put(out, " keep_alive=%d", r.keep_alive);
    }
}

static void our_chunked(text *out, const char *wire, size_t len)
{
    tw_http_chunked c;
    tw_http_chunked_init(&c, NULL, NULL, 0);
    text body = { .n = 0 };
    body.s[0] = 0;
    size_t off = 0, used;
    tw_http_slice d;
    int rc;
    while ((rc = tw_http_chunked_parse(&c, wire + off, len - off, &used, &d)) ==
           TW_HTTP_CHUNKED_DATA) {
        put_bytes(&body, d.ptr, d.len);
        off += used;
    }
    out->n = 0;
    out->s[0] = 0;
    if (rc == TW_HTTP_CHUNKED_DONE)
        put(out, "accept body=%s", body.s);
    else
        put(out, rc < 0 ? "reject" : "incomplete");
}

/* ------------------------------------------------------------- compare */

typedef struct tally {
    int compared, agreed, explained, unexplained, stale;
    unsigned char used[sizeof explained / sizeof explained[0]];
} tally;

static const explained_case *find_explained(const char *name, size_t *idx)
{
    for (size_t i = 0; i < sizeof explained / sizeof explained[0]; i++)
        if (explained[i].name && strcmp(explained[i].name, name) == 0) {
            *idx = i;
            return &explained[i];
        }
    return NULL;
}

static void compare(tally *t, const char *name, const text *ours, const text *theirs)
{
    t->compared++;
    size_t idx = 0;
    const explained_case *e = find_explained(name, &idx);
    if (e)
        t->used[idx] = 1;
    if (strcmp(ours->s, theirs->s) == 0) {
        t->agreed++;
        if (e) {
            print_message("STALE  %s: listed as a disagreement, but both say: %s\n", name, ours->s);
            t->stale++;
        }
        return;
    }
    if (e) {
        t->explained++;
        return;
    }
    t->unexplained++;
    print_message("DIFFER %s\n  twirl:          %s\n  libhttp_parser: %s\n", name, ours->s,
                  theirs->s);
}

/* Seed files that are not byte-for-byte one of the table's cases. */
static bool in_table(const char *buf, size_t n, int kind)
{
    if (kind == 2) {
        for (size_t i = 0; i < http_chunked_cases_n; i++)
            if (http_chunked_cases[i].len == n && memcmp(http_chunked_cases[i].wire, buf, n) == 0)
                return true;
        return false;
    }
    const http_case *tb = kind ? http_response_cases : http_request_cases;
    size_t tn = kind ? http_response_cases_n : http_request_cases_n;
    for (size_t i = 0; i < tn; i++)
        if (tb[i].len == n && memcmp(tb[i].wire, buf, n) == 0)
            return true;
    return false;
}

static void compare_seed_dir(tally *t, const char *dir, int kind)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/fuzz/corpus/%s", TWIRL_SOURCE_DIR, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char file[4400];
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        FILE *f = fopen(file, "rb");
        assert_non_null(f);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        if (in_table(buf, n, kind))
            continue;
        char name[512];
        snprintf(name, sizeof name, "seed/%s/%s", dir, de->d_name);
        text ours, theirs;
        if (kind == 2) {
            our_chunked(&ours, buf, n);
            ref_chunked(&theirs, buf, n);
        } else {
            our_head(&ours, buf, n, kind, TW_HTTP_GET);
            ref_head(&theirs, buf, n, kind, TW_HTTP_GET);
        }
        compare(t, name, &ours, &theirs);
    }
    closedir(d);
}

static void differential(void **state)
{
    static tally t;
    memset(&t, 0, sizeof t);
    text ours, theirs;
    char name[256];
    for (size_t i = 0; i < http_request_cases_n; i++) {
        const http_case *c = &http_request_cases[i];
        our_head(&ours, c->wire, c->len, 0, TW_HTTP_GET);
        ref_head(&theirs, c->wire, c->len, 0, TW_HTTP_GET);
        snprintf(name, sizeof name, "req/%s", c->name);
        compare(&t, name, &ours, &theirs);
    }
    for (size_t i = 0; i < http_response_cases_n; i++) {
        const http_case *c = &http_response_cases[i];
        our_head(&ours, c->wire, c->len, 1, c->method);
        ref_head(&theirs, c->wire, c->len, 1, c->method);
        snprintf(name, sizeof name, "resp/%s", c->name);
        compare(&t, name, &ours, &theirs);
    }
    for (size_t i = 0; i < http_chunked_cases_n; i++) {
        const chunked_case *c = &http_chunked_cases[i];
        our_chunked(&ours, c->wire, c->len);
        ref_chunked(&theirs, c->wire, c->len);
        snprintf(name, sizeof name, "chunked/%s", c->name);
        compare(&t, name, &ours, &theirs);
    }
    compare_seed_dir(&t, "http_request", 0);
    compare_seed_dir(&t, "http_response", 1);
    compare_seed_dir(&t, "http_chunked", 2);

    for (size_t i = 0; i < sizeof explained / sizeof explained[0]; i++)
        if (explained[i].name && !t.used[i]) {
            print_message("STALE  %s: listed but not in the corpus\n", explained[i].name);
            t.stale++;
        }
    print_message("compared %d inputs: %d agree, %d explained disagreements, %d unexplained, "
                  "%d stale explanations\n",
                  t.compared, t.agreed, t.explained, t.unexplained, t.stale);
    assert_int_equal(t.unexplained, 0);
    assert_int_equal(t.stale, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
