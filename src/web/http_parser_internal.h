/* http_parser_internal.h — what the head parser (http_parser.c) and the body
 * decoder (http_parser_body.c) share: byte classes, SIMD scans, and the
 * parser of one field line (used for heads and for chunked trailers).
 *
 * Shape: a head is a start line and field lines, each ending in CRLF. Each
 * line is validated in one pass that stops at the first byte not allowed
 * where it stands (SSE2 for long runs: target and field values); the byte
 * that stopped it must be the CR of a CRLF. A line cut short by the end of
 * the buffer is remembered with the kind of bytes it stopped in (PH_*): the
 * next calls only scan the new bytes with that kind and parse the line again
 * when one of them ends it. Header slices are stored as offsets while the
 * head is incomplete (the caller's buffer may move) and turned into pointers
 * when it completes. */
#ifndef TWIRL_WEB_HTTP_PARSER_INTERNAL_H
#define TWIRL_WEB_HTTP_PARSER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "twirl/http_parser.h"

/* ------------------------------------------------------------ char classes */

enum {
    CT_TOKEN = 1,  /* tchar (RFC 9110 §5.6.2) */
    CT_TARGET = 2, /* request-target bytes we accept: VCHAR except '#' */
    CT_VALUE = 4,  /* field-value bytes: HTAB, SP, VCHAR, obs-text */
    CT_HOST = 8,   /* reg-name bytes: unreserved, sub-delims, '%' */
    CT_HEX = 16,
    CT_QDTEXT = 32 /* quoted-string text: HTAB, SP, VCHAR except '"' and '\', obs-text */
};

/* Byte classes, defined in http_parser.c. The table marks '#' as a target
 * byte because it is a token byte; is_target() excludes it. */
extern const unsigned char tw__http_ctab[256] __attribute__((visibility("hidden")));

static inline bool is_token(unsigned char c)
{
    return tw__http_ctab[c] & CT_TOKEN;
}
static inline bool is_value(unsigned char c)
{
    return tw__http_ctab[c] & CT_VALUE;
}
static inline bool is_target(unsigned char c)
{
    return (tw__http_ctab[c] & CT_TARGET) && c != '#';
}
static inline bool is_host(unsigned char c)
{
    return tw__http_ctab[c] & CT_HOST;
}

/* First byte in [c, e) that is not a tchar, or e. Four table lookups per
 * step: names and methods are short and not worth SIMD. */
static inline const char *scan_token(const char *c, const char *e)
{
    while (e - c >= 4 &&
           (tw__http_ctab[(unsigned char)c[0]] & tw__http_ctab[(unsigned char)c[1]] &
            tw__http_ctab[(unsigned char)c[2]] & tw__http_ctab[(unsigned char)c[3]] & CT_TOKEN))
        c += 4;
    while (c < e && is_token((unsigned char)*c))
        c++;
    return c;
}
static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}
static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* First byte in [c, e) that is not a field-value byte, or e. */
static inline const char *scan_value(const char *c, const char *e)
{
#ifdef __SSE2__
    const __m128i lo = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
    while (e - c >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)c);
        __m128i ctl = _mm_cmpeq_epi8(_mm_max_epu8(x, lo), lo); /* x <= 0x1f */
        __m128i bad =
            _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(x, tab), ctl), _mm_cmpeq_epi8(x, del));
        int m = _mm_movemask_epi8(bad);
        if (m)
            return c + __builtin_ctz((unsigned)m);
        c += 16;
    }
#endif
    while (c < e && is_value((unsigned char)*c))
        c++;
    return c;
}

/* First byte in [c, e) that is not a request-target byte, or e. */
static inline const char *scan_target(const char *c, const char *e)
{
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f), hash = _mm_set1_epi8('#');
    while (e - c >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)c);
        /* Signed compares: bytes >= 0x80 are negative, so they fail "> 0x20". */
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(x, sp), _mm_cmplt_epi8(x, del));
        ok = _mm_andnot_si128(_mm_cmpeq_epi8(x, hash), ok);
        int m = _mm_movemask_epi8(ok) ^ 0xffff;
        if (m)
            return c + __builtin_ctz((unsigned)m);
        c += 16;
    }
#endif
    while (c < e && is_target((unsigned char)*c))
        c++;
    return c;
}

/* Where an incomplete line stopped: the kind of bytes that may follow
 * without anything to decide. A call that finds the line still incomplete
 * scans only its new bytes with the stopping point's kind; the first byte of
 * another kind (a delimiter or an error) makes it parse the whole line again,
 * which happens a bounded number of times per line (at most once per part of
 * the line, and once per byte of the 8-byte version). So the work is linear
 * in the input however it is split, and every decision is the one a single
 * call over the same bytes would make. */
enum { PH_NONE = 0, PH_TOKEN, PH_TARGET, PH_OWS, PH_VALUE };

static inline const char *scan_phase(int phase, const char *c, const char *e)
{
    switch (phase) {
    case PH_TOKEN:
        return scan_token(c, e);
    case PH_TARGET:
        return scan_target(c, e);
    case PH_OWS:
        while (c < e && is_ows((unsigned char)*c))
            c++;
        return c;
    case PH_VALUE:
        return scan_value(c, e);
    default:
        return c;
    }
}
/* ----------------------------------------------------------- shared lines */

enum { LINE_MORE = 0, LINE_FIELD = 1, LINE_END = 2, LINE_BAD = -1, LINE_LONG = -2 };

typedef struct field_line {
    size_t name, name_len, value, value_len, end;
    const char *why;
    size_t at;
    int phase; /* after LINE_MORE */
} field_line;

/* A line starting at pos may not reach past its bound: the offset where its
 * limit (line length, with the CRLF, and for field lines also the end of the
 * field section) is hit. Every line parser below looks only at
 * buf[pos .. min(len, bound)) and decides from those bytes alone: complete,
 * invalid, "more" (the data ended before the bound) or "long" (the bound was
 * reached). So a decision never depends on how the bytes were split across
 * calls. */
static inline size_t line_bound(size_t pos, size_t max_line)
{
    return max_line > SIZE_MAX - 2 - pos ? SIZE_MAX : pos + max_line + 2;
}

static inline int bad_line(field_line *f, const char *buf, const char *at, const char *why)
{
    f->why = why;
    f->at = (size_t)(at - buf);
    return LINE_BAD;
}

/* Parses the field line (or the empty line ending the section) that starts
 * at buf[pos]; the data ends at len, the line may not reach bound. */
static inline __attribute__((always_inline)) int
parse_field_line(const char *buf, size_t pos, size_t len, size_t bound, field_line *f)
{
    const char *s = buf + pos, *e = buf + (len < bound ? len : bound), *c = s;

    f->phase = PH_NONE;
    if (c == e)
        goto more;
    if (*c == '\r') {
        if (c + 1 == e)
            goto more;
        if (c[1] != '\n')
            return bad_line(f, buf, c, "bare CR");
        f->end = pos + 2;
        return LINE_END;
    }
    if (*c == '\n')
        return bad_line(f, buf, c, "bare LF line ending");
    if (is_ows((unsigned char)*c))
        return bad_line(f, buf, c, "obs-fold or whitespace before a field name");
    c = scan_token(c, e);
    f->phase = PH_TOKEN;
    if (c == e)
        goto more;
    if (*c != ':') {
        if (is_ows((unsigned char)*c))
            return bad_line(f, buf, c, "whitespace between field name and colon");
        if (*c == '\r' || *c == '\n')
            return bad_line(f, buf, c, "field line without a colon");
        return bad_line(f, buf, c, "invalid character in field name");
    }
    if (c == s)
        return bad_line(f, buf, c, "empty field name");
    f->name = pos;
    f->name_len = (size_t)(c - s);
    c++;
    while (c < e && is_ows((unsigned char)*c))
        c++;
    const char *v = c;
    c = scan_value(c, e);
    f->phase = v == e ? PH_OWS : PH_VALUE;
    if (c == e)
        goto more;
    if (*c == '\r') {
        f->phase = PH_NONE;
        if (c + 1 == e)
            goto more;
        if (c[1] != '\n')
            return bad_line(f, buf, c, "bare CR");
    } else if (*c == '\n') {
        return bad_line(f, buf, c, "bare LF line ending");
    } else if (*c == 0) {
        return bad_line(f, buf, c, "NUL in field value");
    } else {
        return bad_line(f, buf, c, "control character in field value");
    }
    const char *ve = c;
    while (ve > v && is_ows((unsigned char)ve[-1]))
        ve--;
    f->value = (size_t)(v - buf);
    f->value_len = (size_t)(ve - v);
    f->end = (size_t)(c + 2 - buf);
    return LINE_FIELD;
more:
    return (size_t)(e - buf) == bound ? LINE_LONG : LINE_MORE;
}

/* Stores a field as offsets; rebase_fields() makes them pointers. */
static inline void store_field(tw_http_header *h, const field_line *f, size_t base)
{
    h->name.ptr = (const char *)(uintptr_t)(f->name - base);
    h->name.len = f->name_len;
    h->value.ptr = (const char *)(uintptr_t)(f->value - base);
    h->value.len = f->value_len;
}

static inline void rebase_fields(tw_http_header *h, size_t n, const char *base)
{
    for (size_t i = 0; i < n; i++) {
        h[i].name.ptr = base + (uintptr_t)h[i].name.ptr;
        h[i].value.ptr = base + (uintptr_t)h[i].value.ptr;
    }
}

/* Skips a quoted-string at *cp (which is '"'); false if malformed. */
static inline bool skip_quoted(const char **cp, const char *e)
{
    const char *c = *cp + 1;
    while (c < e) {
        unsigned char b = (unsigned char)*c;
        if (b == '"') {
            *cp = c + 1;
            return true;
        }
        if (b == '\\') {
            if (c + 1 == e || !(is_value((unsigned char)c[1])))
                return false;
            c += 2;
            continue;
        }
        if (!(tw__http_ctab[b] & CT_QDTEXT))
            return false;
        c++;
    }
    return false;
}

/* The defaults of tw_http_limits_init(), for parsers given NULL limits. */
extern const tw_http_limits tw__http_default_limits __attribute__((visibility("hidden")));

#endif
