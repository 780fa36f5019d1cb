/* http_parser_body.c — HTTP/1.1 message bodies: the chunked transfer coding
 * decoder (RFC 9112 §7.1) and the Content-Length counter. */
#include <assert.h>
#include <string.h>

#include "twirl/http_parser.h"
#include "web/http_parser_internal.h"

/* ---------------------------------------------------------- chunked body */

enum { CH_SIZE = 0, CH_DATA, CH_DATA_CRLF, CH_TRAILERS, CH_DONE, CH_ERROR };

void tw_http_chunked_init(tw_http_chunked *c, const tw_http_limits *limits,
                          tw_http_header *trailers, size_t trailers_cap)
{
    memset(c, 0, sizeof *c);
    c->limits = limits ? limits : &tw__http_default_limits;
    c->trailers = trailers;
    c->trailers_cap = trailers ? trailers_cap : 0;
}

int tw_http_chunked_status(const tw_http_chunked *c)
{
    return c->state == CH_ERROR ? c->status : 0;
}

const char *tw_http_chunked_reason(const tw_http_chunked *c)
{
    return c->state == CH_ERROR ? c->reason : NULL;
}

static int chunk_fail(tw_http_chunked *c, int rc, int status, const char *why, size_t at)
{
    c->rc = rc;
    c->status = status;
    c->reason = why;
    c->error_offset = at;
    c->state = CH_ERROR;
    return rc;
}

/* chunk-size [ chunk-ext ] in [s, e) (e is the CR). Returns NULL or why not. */
static const char *chunk_line(const char *s, const char *e, uint64_t *size)
{
    const char *c = s;
    uint64_t x = 0;
    int d;
    while (c < e && (d = hexval((unsigned char)*c)) >= 0) {
        if (x > (UINT64_MAX >> 4))
            return "chunk size overflow";
        x = (x << 4) | (uint64_t)d;
        c++;
    }
    if (c == s)
        return "invalid chunk size";
    /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) */
    while (c < e) {
        while (c < e && is_ows((unsigned char)*c))
            c++;
        if (c == e)
            return "whitespace at the end of a chunk-size line";
        if (*c != ';')
            return "invalid character in chunk size";
        c++;
        while (c < e && is_ows((unsigned char)*c))
            c++;
        const char *n = c;
        while (c < e && is_token((unsigned char)*c))
            c++;
        if (c == n)
            return "invalid chunk extension";
        const char *save = c;
        while (c < e && is_ows((unsigned char)*c))
            c++;
        if (c < e && *c == '=') {
            c++;
            while (c < e && is_ows((unsigned char)*c))
                c++;
            if (c < e && *c == '"') {
                if (!skip_quoted(&c, e))
                    return "invalid chunk extension";
            } else {
                const char *v = c;
                while (c < e && is_token((unsigned char)*c))
                    c++;
                if (c == v)
                    return "invalid chunk extension";
            }
        } else {
            c = save;
        }
    }
    *size = x;
    return NULL;
}

int tw_http_chunked_parse(tw_http_chunked *c, const char *buf, size_t len, size_t *consumed,
                          tw_http_slice *data)
{
    size_t i = 0;
    *consumed = 0;
    data->ptr = NULL;
    data->len = 0;
    const tw_http_limits *lim = c->limits;
    for (;;) {
        switch (c->state) {
        case CH_ERROR:
            return c->rc;
        case CH_DONE:
            *consumed = i;
            return TW_HTTP_CHUNKED_DONE;
        case CH_SIZE: {
            /* The line is scanned for its first byte outside field-value
             * bytes (its CR, or an error), resuming where the last call
             * stopped; then parsed once. */
            size_t bound = line_bound(i, lim->max_chunk_line_bytes);
            const char *s = buf + i, *e = buf + (len < bound ? len : bound);
            const char *q = s + c->scan < e ? scan_value(s + c->scan, e) : e;
            if (q == e || (*q == '\r' && q + 1 == e)) {
                if ((size_t)(e - buf) == bound)
                    return chunk_fail(c, TW_ELIMIT, 400, "chunk-size line too long", i);
                c->scan = (size_t)(q - s);
                *consumed = i;
                return TW_HTTP_CHUNKED_MORE;
            }
            c->scan = 0;
            uint64_t size = 0;
            const char *why = chunk_line(s, q, &size);
            if (!why && *q != '\r')
                why = *q == '\n' ? "bare LF line ending" : "invalid character in chunk-size line";
            if (!why && q[1] != '\n')
                why = "bare CR";
            if (why)
                return chunk_fail(c, TW_EPROTO, 400, why, i);
            i = (size_t)(q + 2 - buf);
            if (size == 0) {
                c->state = CH_TRAILERS;
                c->tpos = 0;
                c->ntrailers = 0;
                break;
            }
            if (size > lim->max_body_bytes - c->total)
                return chunk_fail(c, TW_ELIMIT, 413, "body larger than allowed", i);
            c->total += size;
            c->remaining = size;
            c->state = CH_DATA;
            break;
        }
        case CH_DATA: {
            size_t avail = len - i;
            if (avail == 0) {
                *consumed = i;
                return TW_HTTP_CHUNKED_MORE;
            }
            size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
            data->ptr = buf + i;
            data->len = n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CRLF;
            *consumed = i + n;
            return TW_HTTP_CHUNKED_DATA;
        }
        case CH_DATA_CRLF:
            if (len - i >= 1 && buf[i] != '\r')
                return chunk_fail(c, TW_EPROTO, 400, "missing CRLF after chunk data", i);
            if (len - i < 2) {
                *consumed = i;
                return TW_HTTP_CHUNKED_MORE;
            }
            if (buf[i + 1] != '\n')
                return chunk_fail(c, TW_EPROTO, 400, "missing CRLF after chunk data", i + 1);
            i += 2;
            c->state = CH_SIZE;
            c->scan = 0;
            break;
        case CH_TRAILERS: {
            /* The trailer section is not consumed until it is complete, so
             * its fields can be handed out as slices of one buffer. Lines
             * are bounded as in a head (line_bound). */
            size_t base = i, maxf = lim->max_headers;
            if (c->trailers && c->trailers_cap < maxf)
                maxf = c->trailers_cap;
            size_t sb =
                lim->max_header_bytes > SIZE_MAX - base ? SIZE_MAX : base + lim->max_header_bytes;
            if (c->scan > c->tpos) {
                /* Waiting for a partial line: scan only the new bytes. */
                size_t bound = line_bound(base + c->tpos, lim->max_header_line_bytes);
                if (sb < bound)
                    bound = sb;
                const char *e = buf + (len < bound ? len : bound), *q = buf + base + c->scan;
                if (q < e)
                    q = scan_phase(c->phase, q, e);
                if (q >= e && (size_t)(e - buf) < bound) {
                    c->scan = len - base;
                    *consumed = base;
                    return TW_HTTP_CHUNKED_MORE;
                }
                c->scan = c->tpos;
            }
            for (;;) {
                field_line f;
                size_t ls = base + c->tpos, bound = line_bound(ls, lim->max_header_line_bytes);
                bool section = sb <= bound;
                if (section)
                    bound = sb;
                int r = parse_field_line(buf, ls, len, bound, &f);
                if (r == LINE_MORE) {
                    c->scan = len - base;
                    c->phase = (uint8_t)f.phase;
                    *consumed = base;
                    return TW_HTTP_CHUNKED_MORE;
                }
                if (r == LINE_LONG)
                    return chunk_fail(
                        c, TW_ELIMIT, 431,
                        section ? "trailer section too large" : "trailer line too long", ls);
                if (r == LINE_BAD)
                    return chunk_fail(c, TW_EPROTO, 400, f.why, f.at);
                if (r == LINE_END) {
                    if (c->trailers)
                        rebase_fields(c->trailers, c->ntrailers, buf + base);
                    c->num_trailers = c->trailers ? c->ntrailers : 0;
                    c->state = CH_DONE;
                    *consumed = f.end;
                    return TW_HTTP_CHUNKED_DONE;
                }
                if (c->ntrailers >= maxf)
                    return chunk_fail(c, TW_ELIMIT, 431, "too many trailer fields", ls);
                if (c->trailers)
                    store_field(&c->trailers[c->ntrailers], &f, base);
                c->ntrailers++;
                c->tpos = f.end - base;
                c->scan = c->tpos;
            }
        }
        }
    }
}

int tw_http_chunked_decode_inplace(tw_http_chunked *c, char *buf, size_t len, size_t *src,
                                   size_t *dst)
{
    assert(*dst <= *src && *src <= len);
    for (;;) {
        size_t used;
        tw_http_slice d;
        int rc = tw_http_chunked_parse(c, buf + *src, len - *src, &used, &d);
        if (rc < 0)
            return rc;
        if (rc == TW_HTTP_CHUNKED_DATA) {
            memmove(buf + *dst, d.ptr, d.len);
            *dst += d.len;
        }
        *src += used;
        if (rc != TW_HTTP_CHUNKED_DATA)
            return rc;
    }
}

/* ------------------------------------------------------ Content-Length body */

void tw_http_length_init(tw_http_length *b, uint64_t content_length)
{
    b->remaining = content_length;
}

size_t tw_http_length_take(tw_http_length *b, size_t avail)
{
    size_t n = b->remaining < avail ? (size_t)b->remaining : avail;
    b->remaining -= n;
    return n;
}

bool tw_http_length_done(const tw_http_length *b)
{
    return b->remaining == 0;
}
