/* http_parser.c — the HTTP/1.1 head parser: request and status lines,
 * field sections, framing (RFC 9110, RFC 9112). The byte classes and the
 * field-line parser it shares with the body decoder are in
 * http_parser_internal.h, which explains the parsing scheme. */
#include <assert.h>
#include <limits.h>
#include <string.h>

#include "twirl/http_parser.h"
#include "twirl/http_util.h"
#include "web/http_parser_internal.h"

/* ------------------------------------------------------------ byte classes */

#define TOK (CT_TOKEN | CT_TARGET | CT_VALUE | CT_QDTEXT)
const unsigned char tw__http_ctab[256] = {
    ['\t'] = CT_VALUE | CT_QDTEXT,
    [' '] = CT_VALUE | CT_QDTEXT,
    ['!'] = TOK | CT_HOST,
    ['"'] = CT_TARGET | CT_VALUE,
    ['#'] = TOK,
    ['$'] = TOK | CT_HOST,
    ['%'] = TOK | CT_HOST,
    ['&'] = TOK | CT_HOST,
    ['\''] = TOK | CT_HOST,
    ['('] = CT_TARGET | CT_VALUE | CT_QDTEXT | CT_HOST,
    [')'] = CT_TARGET | CT_VALUE | CT_QDTEXT | CT_HOST,
    ['*'] = TOK | CT_HOST,
    ['+'] = TOK | CT_HOST,
    [','] = CT_TARGET | CT_VALUE | CT_QDTEXT | CT_HOST,
    ['-'] = TOK | CT_HOST,
    ['.'] = TOK | CT_HOST,
    ['/'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['0' ... '9'] = TOK | CT_HOST | CT_HEX,
    [':'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    [';'] = CT_TARGET | CT_VALUE | CT_QDTEXT | CT_HOST,
    ['<'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['='] = CT_TARGET | CT_VALUE | CT_QDTEXT | CT_HOST,
    ['>' ... '@'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['A' ... 'F'] = TOK | CT_HOST | CT_HEX,
    ['G' ... 'Z'] = TOK | CT_HOST,
    ['['] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['\\'] = CT_TARGET | CT_VALUE,
    [']'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['^'] = TOK,
    ['_'] = TOK | CT_HOST,
    ['`'] = TOK,
    ['a' ... 'f'] = TOK | CT_HOST | CT_HEX,
    ['g' ... 'z'] = TOK | CT_HOST,
    ['{'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['|'] = TOK,
    ['}'] = CT_TARGET | CT_VALUE | CT_QDTEXT,
    ['~'] = TOK | CT_HOST,
    [0x80 ... 0xff] = CT_VALUE | CT_QDTEXT,
};
#undef TOK

/* Case-insensitive compare of a token against a lower-case literal. */
static bool lower_eq(const char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

/* ----------------------------------------------------------------- limits */

const tw_http_limits tw__http_default_limits = {
    .max_start_line_bytes = 8192,
    .max_header_line_bytes = 8192,
    .max_header_bytes = 65536,
    .max_headers = 100,
    .max_body_bytes = 1u << 20,
    .max_chunk_line_bytes = 4096,
};

void tw_http_limits_init(tw_http_limits *l)
{
    *l = tw__http_default_limits;
}

/* ------------------------------------------------------------ head parser */

enum { ST_START = 0, ST_FIELDS, ST_DONE, ST_ERROR };

enum {
    F_WAITING = 1 << 0, /* the current line was incomplete: scan new bytes first */
    F_TE = 1 << 1,      /* a Transfer-Encoding field was seen */
    F_TE_LAST_CHUNKED = 1 << 2,
    F_TE_OTHER = 1 << 3, /* a coding other than chunked */
    F_UPGRADE = 1 << 4,  /* an Upgrade field */
    F_EXPECT_CONTINUE = 1 << 5,
    F_RESPONSE = 1 << 6
};

void tw_http_parser_init(tw_http_parser *p, const tw_http_limits *limits)
{
    /* Only what is read before it is written: this runs once per request. */
    p->limits = limits ? limits : &tw__http_default_limits;
    p->pos = p->scan = p->nfields = 0;
    p->rc = p->status = 0;
    p->reason = NULL;
    p->flags = 0;
    p->stage = ST_START;
    p->phase = PH_NONE;
    p->n_cl = p->n_host_fields = p->te_chunked = p->conn = 0;
}

int tw_http_parser_status(const tw_http_parser *p)
{
    return p->stage == ST_ERROR ? p->status : 0;
}

const char *tw_http_parser_reason(const tw_http_parser *p)
{
    return p->stage == ST_ERROR ? p->reason : NULL;
}

static int fail(tw_http_parser *p, int rc, int status, const char *why, size_t at)
{
    p->rc = rc;
    p->status = (p->flags & F_RESPONSE) ? 502 : status;
    p->reason = why;
    p->error_offset = at;
    p->stage = ST_ERROR;
    return rc;
}

static tw_http_method method_id(const char *m, size_t n)
{
#define M(lit, id)                                     \
    if (n == sizeof lit - 1 && memcmp(m, lit, n) == 0) \
        return id;
    switch (n) {
    case 3:
        M("GET", TW_HTTP_GET);
        M("PUT", TW_HTTP_PUT);
        break;
    case 4:
        M("HEAD", TW_HTTP_HEAD);
        M("POST", TW_HTTP_POST);
        break;
    case 5:
        M("TRACE", TW_HTTP_TRACE);
        M("PATCH", TW_HTTP_PATCH);
        break;
    case 6:
        M("DELETE", TW_HTTP_DELETE);
        break;
    case 7:
        M("CONNECT", TW_HTTP_CONNECT);
        M("OPTIONS", TW_HTTP_OPTIONS);
        break;
    }
#undef M
    return TW_HTTP_OTHER;
}

/* Version at c: "HTTP/" DIGIT "." DIGIT. Returns 1 (*minor set), 0 if the
 * bytes up to e are a prefix of one, -1 if malformed, -2 for a well-formed
 * version we do not speak (505). */
static int parse_version(const char *c, const char *e, int *minor)
{
    static const char pat[] = "HTTP/0.0";
    for (int i = 0; i < 8; i++) {
        if (c + i == e)
            return 0;
        unsigned char b = (unsigned char)c[i];
        if (pat[i] == '0' ? !(b >= '0' && b <= '9') : b != (unsigned char)pat[i])
            return -1;
    }
    if (c[5] != '1')
        return -2;
    *minor = c[7] == '0' ? 0 : 1; /* 1.x, x >= 2: as 1.1 (RFC 9110 §2.5) */
    return 1;
}

/* A host[:port] authority: IP-literal in brackets or a reg-name / IPv4 (with
 * valid pct-encoding), non-empty; then an optional ':' and at most 5 digits
 * (<= 65535), required when need_port. */
static bool valid_authority(const char *s, size_t n, bool need_port)
{
    const char *c = s, *e = s + n;
    if (c < e && *c == '[') {
        c++;
        const char *h = c;
        while (c < e && *c != ']') {
            if (!(is_host((unsigned char)*c) || *c == ':') || *c == '%')
                return false;
            c++;
        }
        if (c == e || c == h)
            return false;
        c++;
    } else {
        const char *h = c;
        while (c < e && *c != ':') {
            if (*c == '%') {
                if (e - c < 3 || hexval((unsigned char)c[1]) < 0 || hexval((unsigned char)c[2]) < 0)
                    return false;
                c += 3;
                continue;
            }
            if (!is_host((unsigned char)*c))
                return false;
            c++;
        }
        if (c == h)
            return false;
    }
    if (c == e)
        return !need_port;
    if (*c != ':')
        return false;
    c++;
    if (c == e)
        return !need_port;
    if (e - c > 5)
        return false;
    unsigned port = 0;
    for (; c < e; c++) {
        if (*c < '0' || *c > '9')
            return false;
        port = port * 10 + (unsigned)(*c - '0');
    }
    return port <= 65535;
}

/* Sorts the target into its form and slices path, query and authority.
 * Returns NULL or the reason it is invalid. */
static const char *classify_target(tw_http_request *req, tw_http_method m)
{
    const char *t = req->target.ptr, *e = t + req->target.len;
    req->path = (tw_http_slice){ NULL, 0 };
    req->query = (tw_http_slice){ NULL, 0 };
    req->authority = (tw_http_slice){ NULL, 0 };
    if (m == TW_HTTP_CONNECT) {
        if (!valid_authority(t, req->target.len, true))
            return "CONNECT needs an authority-form target (host:port)";
        req->target_form = TW_HTTP_AUTHORITY_FORM;
        req->authority = req->target;
        return NULL;
    }
    if (*t == '*') {
        if (req->target.len != 1)
            return "invalid request target";
        if (m != TW_HTTP_OPTIONS)
            return "asterisk-form target with a method other than OPTIONS";
        req->target_form = TW_HTTP_ASTERISK_FORM;
        return NULL;
    }
    const char *pathstart;
    if (*t == '/') {
        req->target_form = TW_HTTP_ORIGIN_FORM;
        pathstart = t;
    } else {
        /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
        const char *c = t;
        if (!((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z'))
            return "invalid request target";
        while (c < e && ((((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z')) || (*c >= '0' && *c <= '9') ||
                         *c == '+' || *c == '-' || *c == '.'))
            c++;
        if (e - c < 3 || memcmp(c, "://", 3) != 0)
            return "invalid request target";
        c += 3;
        const char *a = c;
        while (c < e && *c != '/' && *c != '?') {
            if (*c == '@')
                return "userinfo in an absolute-form target";
            c++;
        }
        if (!valid_authority(a, (size_t)(c - a), false))
            return "invalid authority in an absolute-form target";
        req->target_form = TW_HTTP_ABSOLUTE_FORM;
        req->authority = (tw_http_slice){ a, (size_t)(c - a) };
        pathstart = c;
    }
    const char *q = memchr(pathstart, '?', (size_t)(e - pathstart));
    const char *pe = q ? q : e;
    if (pe == pathstart)
        req->path = (tw_http_slice){ "/", 1 };
    else
        req->path = (tw_http_slice){ pathstart, (size_t)(pe - pathstart) };
    if (q)
        req->query = (tw_http_slice){ q + 1, (size_t)(e - q - 1) };
    return NULL;
}

/* The request line at buf[p->pos]. Returns 1 (p->pos moved past it), 0 for
 * more bytes, or an error. */
static int request_line(tw_http_parser *p, const char *buf, size_t len)
{
    size_t bound = line_bound(p->pos, p->limits->max_start_line_bytes);
    const char *s = buf + p->pos, *c = s, *e = buf + (len < bound ? len : bound);

    c = scan_token(c, e);
    p->phase = PH_TOKEN;
    if (c == e)
        goto more;
    if (*c != ' ') {
        if (c == s)
            return fail(p, TW_EPROTO, 400, "invalid method", (size_t)(c - buf));
        return fail(p, TW_EPROTO, 400, "invalid character in method or missing target",
                    (size_t)(c - buf));
    }
    if (c == s)
        return fail(p, TW_EPROTO, 400, "empty method", (size_t)(c - buf));
    p->s_method = p->pos;
    p->n_method = (size_t)(c - s);
    const char *t = ++c;
    c = scan_target(c, e);
    p->phase = PH_TARGET;
    if (c == e)
        goto more;
    if (*c != ' ') {
        if (c == t)
            return fail(p, TW_EPROTO, 400, "empty request target or extra space",
                        (size_t)(c - buf));
        if (*c == '#')
            return fail(p, TW_EPROTO, 400, "fragment in request target", (size_t)(c - buf));
        if (*c == '\r' || *c == '\n')
            return fail(p, TW_EPROTO, 400, "request line without a version", (size_t)(c - buf));
        return fail(p, TW_EPROTO, 400, "invalid character in request target", (size_t)(c - buf));
    }
    p->s_target = (size_t)(t - buf);
    p->n_target = (size_t)(c - t);
    c++;
    int minor = 1;
    p->phase = PH_NONE;
    int v = parse_version(c, e, &minor);
    if (v == 0)
        goto more;
    if (v == -1)
        return fail(p, TW_EPROTO, 400, "malformed HTTP version", (size_t)(c - buf));
    c += 8;
    if (c == e)
        goto more;
    if (*c != '\r') {
        if (*c == '\n')
            return fail(p, TW_EPROTO, 400, "bare LF line ending", (size_t)(c - buf));
        return fail(p, TW_EPROTO, 400, "malformed HTTP version", (size_t)(c - buf));
    }
    if (c + 1 == e)
        goto more;
    if (c[1] != '\n')
        return fail(p, TW_EPROTO, 400, "bare CR", (size_t)(c - buf));
    if (v == -2)
        return fail(p, TW_EPROTO, 505, "HTTP version not supported", (size_t)(c - 8 - buf));
    p->version_minor = (uint8_t)minor;
    p->pos = (size_t)(c + 2 - buf);
    return 1;
more:
    if ((size_t)(e - buf) == bound)
        return fail(p, TW_ELIMIT, 414, "request line too long", p->pos);
    return 0;
}

/* The status line at buf[p->pos]: HTTP-version SP 3DIGIT [SP reason] CRLF.
 * A missing " reason" is accepted (servers omit it; RFC 9112 §4 tells
 * clients to ignore the reason). */
static int status_line(tw_http_parser *p, const char *buf, size_t len)
{
    size_t bound = line_bound(p->pos, p->limits->max_start_line_bytes);
    const char *s = buf + p->pos, *c = s, *e = buf + (len < bound ? len : bound);
    int minor = 1;
    p->phase = PH_NONE;
    int v = parse_version(c, e, &minor);
    if (v == 0)
        goto more;
    if (v == -1)
        return fail(p, TW_EPROTO, 502, "malformed HTTP version", (size_t)(c - buf));
    if (v == -2)
        return fail(p, TW_EPROTO, 502, "HTTP version not supported", (size_t)(c - buf));
    c += 8;
    if (c == e)
        goto more;
    if (*c != ' ')
        return fail(p, TW_EPROTO, 502, "malformed status line", (size_t)(c - buf));
    c++;
    int status = 0;
    const char *digits = c;
    for (int i = 0; i < 3; i++, c++) {
        if (c == e)
            goto more;
        if (*c < '0' || *c > '9')
            return fail(p, TW_EPROTO, 502, "malformed status code", (size_t)(c - buf));
        status = status * 10 + (*c - '0');
    }
    if (c == e)
        goto more;
    const char *r = c;
    if (*c == ' ') {
        r = ++c;
        c = scan_value(c, e);
        p->phase = PH_VALUE;
        if (c == e)
            goto more;
        p->phase = PH_NONE;
    }
    if (*c != '\r') {
        if (*c == '\n')
            return fail(p, TW_EPROTO, 502, "bare LF line ending", (size_t)(c - buf));
        return fail(p, TW_EPROTO, 502, "malformed status line", (size_t)(c - buf));
    }
    if (c + 1 == e)
        goto more;
    if (c[1] != '\n')
        return fail(p, TW_EPROTO, 502, "bare CR", (size_t)(c - buf));
    if (status < 100 || status > 599)
        return fail(p, TW_EPROTO, 502, "status code out of range", (size_t)(digits - buf));
    p->status = status;
    p->s_reason = (size_t)(r - buf);
    p->n_reason = (size_t)(c - r);
    p->version_minor = (uint8_t)minor;
    p->pos = (size_t)(c + 2 - buf);
    return 1;
more:
    if ((size_t)(e - buf) == bound)
        return fail(p, TW_ELIMIT, 502, "status line too long", p->pos);
    return 0;
}

/* Content-Length: 1*DIGIT, no sign, no spaces, no list, no overflow. */
static bool parse_content_length(const char *v, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)v[i] - '0';
        if (d > 9)
            return false;
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

/* One Transfer-Encoding field value: a list of transfer-coding = token
 * *( OWS ";" OWS token "=" ( token / quoted-string ) ). Empty list elements
 * are skipped (RFC 9110 §5.6.1). Returns NULL or why it is invalid. */
static const char *te_field(tw_http_parser *p, const char *v, size_t n)
{
    const char *c = v, *e = v + n;
    bool any = false;
    for (;;) {
        while (c < e && (is_ows((unsigned char)*c) || *c == ','))
            c++;
        if (c == e)
            break;
        const char *t = c;
        while (c < e && is_token((unsigned char)*c))
            c++;
        if (c == t)
            return "invalid Transfer-Encoding";
        size_t tn = (size_t)(c - t);
        bool params = false;
        for (;;) {
            const char *save = c;
            while (c < e && is_ows((unsigned char)*c))
                c++;
            if (c == e || *c != ';') {
                c = save;
                break;
            }
            c++;
            while (c < e && is_ows((unsigned char)*c))
                c++;
            const char *pn = c;
            while (c < e && is_token((unsigned char)*c))
                c++;
            if (c == pn || c == e || *c != '=')
                return "invalid Transfer-Encoding parameter";
            c++;
            if (c < e && *c == '"') {
                if (!skip_quoted(&c, e))
                    return "invalid Transfer-Encoding parameter";
            } else {
                const char *pv = c;
                while (c < e && is_token((unsigned char)*c))
                    c++;
                if (c == pv)
                    return "invalid Transfer-Encoding parameter";
            }
            params = true;
        }
        while (c < e && is_ows((unsigned char)*c))
            c++;
        if (c != e && *c != ',')
            return "invalid Transfer-Encoding";
        if (tn == 7 && lower_eq(t, "chunked", 7)) {
            if (params)
                return "chunked transfer coding with parameters";
            if (p->te_chunked)
                return "chunked transfer coding applied more than once";
            p->te_chunked = 1;
            p->flags |= F_TE_LAST_CHUNKED;
        } else {
            p->flags = (uint16_t)((p->flags & ~F_TE_LAST_CHUNKED) | F_TE_OTHER);
        }
        any = true;
    }
    if (!any)
        return "empty Transfer-Encoding";
    p->flags |= F_TE;
    return NULL;
}

/* Semantics of one complete field line of a head. */
static int on_field(tw_http_parser *p, const char *buf, const field_line *f)
{
    const char *name = buf + f->name, *v = buf + f->value;
    size_t vn = f->value_len;
    bool response = p->flags & F_RESPONSE;
    switch (f->name_len) {
    case 4:
        if (!response && lower_eq(name, "host", 4)) {
            if (++p->n_host_fields > 1)
                return fail(p, TW_EPROTO, 400, "more than one Host field", f->name);
            if (vn && !valid_authority(v, vn, false))
                return fail(p, TW_EPROTO, 400, "invalid Host field", f->value);
            p->s_host = f->value;
            p->n_host = vn;
        }
        break;
    case 6:
        if (lower_eq(name, "expect", 6) && vn == 12 && lower_eq(v, "100-continue", 12))
            p->flags |= F_EXPECT_CONTINUE;
        break;
    case 7:
        if (lower_eq(name, "upgrade", 7))
            p->flags |= F_UPGRADE;
        break;
    case 10:
        if (lower_eq(name, "connection", 10))
            p->conn |= (uint8_t)tw_http_connection_tokens(v, vn);
        break;
    case 14:
        if (lower_eq(name, "content-length", 14)) {
            if (++p->n_cl > 1)
                return fail(p, TW_EPROTO, 400, "more than one Content-Length field", f->name);
            if (!parse_content_length(v, vn, &p->content_length))
                return fail(p, TW_EPROTO, 400, "invalid Content-Length", f->value);
        }
        break;
    case 17:
        if (lower_eq(name, "transfer-encoding", 17)) {
            const char *why = te_field(p, v, vn);
            if (why)
                return fail(p, TW_EPROTO, 400, why, f->value);
        }
        break;
    }
    return 0;
}

static int finish_request(tw_http_parser *p, const char *buf, tw_http_request *req)
{
    req->method = (tw_http_slice){ buf + p->s_method, p->n_method };
    req->method_id = method_id(req->method.ptr, req->method.len);
    req->target = (tw_http_slice){ buf + p->s_target, p->n_target };
    const char *why = classify_target(req, req->method_id);
    if (why)
        return fail(p, TW_EPROTO, 400, why, p->s_target);
    req->version_minor = p->version_minor;
    if (p->version_minor == 1 && p->n_host_fields == 0)
        return fail(p, TW_EPROTO, 400, "HTTP/1.1 request without Host", p->line0);
    req->host = p->n_host_fields ? (tw_http_slice){ buf + p->s_host, p->n_host }
                                 : (tw_http_slice){ NULL, 0 };
    req->body = TW_HTTP_BODY_NONE;
    req->content_length = 0;
    if (p->flags & F_TE) {
        if (p->version_minor == 0)
            return fail(p, TW_EPROTO, 400, "Transfer-Encoding in an HTTP/1.0 request", p->line0);
        if (p->n_cl)
            return fail(p, TW_EPROTO, 400, "both Content-Length and Transfer-Encoding", p->line0);
        if (!(p->flags & F_TE_LAST_CHUNKED))
            return fail(p, TW_EPROTO, 400, "chunked is not the final transfer coding", p->line0);
        if (p->flags & F_TE_OTHER)
            return fail(p, TW_EPROTO, 501, "unsupported transfer coding", p->line0);
        req->body = TW_HTTP_BODY_CHUNKED;
    } else if (p->n_cl) {
        if (p->content_length > p->limits->max_body_bytes)
            return fail(p, TW_ELIMIT, 413, "body larger than allowed", p->line0);
        req->content_length = p->content_length;
        if (p->content_length)
            req->body = TW_HTTP_BODY_LENGTH;
    }
    req->connection = p->conn;
    if (p->version_minor == 1)
        req->keep_alive = !(p->conn & TW_HTTP_CONN_CLOSE);
    else
        req->keep_alive =
            (p->conn & (TW_HTTP_CONN_KEEP_ALIVE | TW_HTTP_CONN_CLOSE)) == TW_HTTP_CONN_KEEP_ALIVE;
    req->upgrade =
        p->version_minor == 1 && (p->flags & F_UPGRADE) && (p->conn & TW_HTTP_CONN_UPGRADE);
    req->expect_continue = p->version_minor == 1 && (p->flags & F_EXPECT_CONTINUE);
    return 0;
}

static int finish_response(tw_http_parser *p, const char *buf, tw_http_method req_method,
                           tw_http_response *resp)
{
    int st = p->status;
    resp->version_minor = p->version_minor;
    resp->status = st;
    resp->reason = (tw_http_slice){ buf + p->s_reason, p->n_reason };
    resp->body = TW_HTTP_BODY_NONE;
    resp->content_length = 0;
    resp->tunnel = false;
    resp->te_other = (p->flags & F_TE_OTHER) != 0;
    resp->connection = p->conn;
    if (p->flags & F_TE) {
        if (p->version_minor == 0)
            return fail(p, TW_EPROTO, 502, "Transfer-Encoding in an HTTP/1.0 response", p->line0);
        if (p->n_cl)
            return fail(p, TW_EPROTO, 502, "both Content-Length and Transfer-Encoding", p->line0);
    }
    if (p->version_minor == 1)
        resp->keep_alive = !(p->conn & TW_HTTP_CONN_CLOSE);
    else
        resp->keep_alive =
            (p->conn & (TW_HTTP_CONN_KEEP_ALIVE | TW_HTTP_CONN_CLOSE)) == TW_HTTP_CONN_KEEP_ALIVE;
    if (st == 101 || (req_method == TW_HTTP_CONNECT && st >= 200 && st < 300)) {
        resp->tunnel = true;
        resp->keep_alive = false;
        return 0;
    }
    if (req_method == TW_HTTP_HEAD || st < 200 || st == 204 || st == 304) {
        if (p->n_cl)
            resp->content_length = p->content_length; /* informational only */
        return 0;
    }
    if (p->flags & F_TE) {
        if (p->flags & F_TE_LAST_CHUNKED) {
            resp->body = TW_HTTP_BODY_CHUNKED;
        } else {
            resp->body = TW_HTTP_BODY_UNTIL_CLOSE;
            resp->keep_alive = false;
        }
    } else if (p->n_cl) {
        if (p->content_length > p->limits->max_body_bytes)
            return fail(p, TW_ELIMIT, 502, "body larger than allowed", p->line0);
        resp->content_length = p->content_length;
        if (p->content_length)
            resp->body = TW_HTTP_BODY_LENGTH;
    } else {
        resp->body = TW_HTTP_BODY_UNTIL_CLOSE;
        resp->keep_alive = false;
    }
    return 0;
}

/* The bound of the current line (see line_bound). */
static inline size_t head_bound(const tw_http_parser *p, bool *section)
{
    const tw_http_limits *lim = p->limits;
    if (p->stage == ST_START) {
        *section = false;
        return line_bound(p->pos, lim->max_start_line_bytes);
    }
    size_t b = line_bound(p->pos, lim->max_header_line_bytes);
    size_t sb = lim->max_header_bytes > SIZE_MAX - p->fields0 ? SIZE_MAX
                                                              : p->fields0 + lim->max_header_bytes;
    *section = sb <= b;
    return *section ? sb : b;
}

/* Waits for the rest of the current line: everything up to len was
 * validated, and the line stopped in p->phase. */
static int wait_line(tw_http_parser *p, size_t len)
{
    p->flags |= F_WAITING;
    p->scan = len;
    return 0;
}

static int parse_head(tw_http_parser *p, const char *buf, size_t len, tw_http_header *hdrs,
                      size_t cap, bool response)
{
    if (p->stage == ST_ERROR)
        return p->rc;
    assert(len >= p->scan && len >= p->pos);
    if (response)
        p->flags |= F_RESPONSE;
    const tw_http_limits *lim = p->limits;

    if (p->flags & F_WAITING) {
        /* Only the new bytes are scanned (see PH_NONE): until one of them
         * ends the part of the line that was cut, or the line's bound is
         * reached, nothing can be decided. */
        bool section;
        size_t bound = head_bound(p, &section);
        const char *e = buf + (len < bound ? len : bound);
        const char *q = buf + p->scan < e ? scan_phase(p->phase, buf + p->scan, e) : e;
        if (q == e && (size_t)(e - buf) < bound)
            return wait_line(p, len);
        p->flags &= (uint16_t)~F_WAITING;
    }

    if (p->stage == ST_START) {
        /* RFC 9112 §2.2: ignore empty lines before the start line (bounded). */
        while (len - p->pos >= 2 && buf[p->pos] == '\r' && buf[p->pos + 1] == '\n') {
            p->pos += 2;
            if (p->pos > lim->max_start_line_bytes)
                return fail(p, TW_EPROTO, 400, "too many empty lines before the start line",
                            p->pos);
        }
        p->line0 = p->pos;
        if (len == p->pos || (len - p->pos == 1 && buf[p->pos] == '\r')) {
            p->phase = PH_NONE;
            return wait_line(p, len);
        }
        if (buf[p->pos] == '\n')
            return fail(p, TW_EPROTO, 400, "bare LF line ending", p->pos);
        int rc = response ? status_line(p, buf, len) : request_line(p, buf, len);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return wait_line(p, len);
        p->fields0 = p->pos;
        p->stage = ST_FIELDS;
    }

    size_t maxf = lim->max_headers < cap ? lim->max_headers : cap;
    for (;;) {
        field_line f;
        bool section;
        size_t bound = head_bound(p, &section);
        int r = parse_field_line(buf, p->pos, len, bound, &f);
        if (r == LINE_MORE) {
            p->phase = (uint8_t)f.phase;
            return wait_line(p, len);
        }
        if (r == LINE_LONG)
            return fail(p, TW_ELIMIT, 431,
                        section ? "header section too large" : "field line too long", p->pos);
        if (r == LINE_BAD)
            return fail(p, TW_EPROTO, 400, f.why, f.at);
        if (r == LINE_END) {
            p->pos = f.end;
            break;
        }
        if (p->nfields >= maxf)
            return fail(p, TW_ELIMIT, 431, "too many header fields", p->pos);
        if (on_field(p, buf, &f) < 0)
            return p->rc;
        store_field(&hdrs[p->nfields++], &f, 0);
        p->pos = f.end;
    }
    if (p->pos > INT_MAX)
        return fail(p, TW_ELIMIT, 431, "header section too large", p->fields0);
    rebase_fields(hdrs, p->nfields, buf);
    p->head_len = p->pos;
    return 1;
}

int tw_http_parse_request(tw_http_parser *p, const char *buf, size_t len, tw_http_request *req)
{
    if (p->stage == ST_DONE)
        return (int)p->head_len;
    int rc = parse_head(p, buf, len, req->headers, req->headers_cap, false);
    if (rc != 1)
        return rc;
    req->num_headers = p->nfields;
    if ((rc = finish_request(p, buf, req)) < 0)
        return rc;
    p->stage = ST_DONE;
    return (int)p->head_len;
}

int tw_http_parse_response(tw_http_parser *p, const char *buf, size_t len,
                           tw_http_method request_method, tw_http_response *resp)
{
    if (p->stage == ST_DONE)
        return (int)p->head_len;
    int rc = parse_head(p, buf, len, resp->headers, resp->headers_cap, true);
    if (rc != 1)
        return rc;
    resp->num_headers = p->nfields;
    if ((rc = finish_response(p, buf, request_method, resp)) < 0)
        return rc;
    p->stage = ST_DONE;
    return (int)p->head_len;
}
