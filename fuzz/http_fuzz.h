/* http_fuzz.h — shared checks for the HTTP parser fuzz targets: parse the
 * same bytes in one call, split in two, and byte by byte, and require the
 * same outcome; check every slice lies inside the input. */
#ifndef TWIRL_FUZZ_HTTP_FUZZ_H
#define TWIRL_FUZZ_HTTP_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/http_parser.h"
#include "twirl/http_util.h"

#define FUZZ_NHDR 32

/* Aborts with a message: what libFuzzer reports as a crash. */
#define FUZZ_CHECK(cond)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

static inline void fuzz_limits(tw_http_limits *l, int small)
{
    tw_http_limits_init(l);
    if (small) {
        l->max_start_line_bytes = 40;
        l->max_header_line_bytes = 40;
        l->max_header_bytes = 200;
        l->max_headers = 6;
        l->max_body_bytes = 100;
        l->max_chunk_line_bytes = 12;
    }
}

/* A slice as an offset into buf (or -1 for NULL, -2 for a static "/"). */
static inline long fuzz_off(tw_http_slice s, const char *buf, size_t len)
{
    if (!s.ptr)
        return -1;
    if (s.len == 1 && s.ptr[0] == '/' && (s.ptr < buf || s.ptr >= buf + len))
        return -2;
    FUZZ_CHECK(s.ptr >= buf && s.ptr <= buf + len && s.len <= (size_t)(buf + len - s.ptr));
    return (long)(s.ptr - buf);
}

/* What a parse produced, with slices as offsets, so results from different
 * buffers compare with memcmp. */
typedef struct fuzz_head {
    int rc, status;
    long off[16];
    size_t len[16];
    long hoff[FUZZ_NHDR * 2];
    size_t hlen[FUZZ_NHDR * 2];
    size_t nh;
    uint64_t cl;
    int ints[10];
} fuzz_head;

static inline void fuzz_headers(fuzz_head *o, const tw_http_header *h, size_t n, const char *buf,
                                size_t len)
{
    FUZZ_CHECK(n <= FUZZ_NHDR);
    o->nh = n;
    for (size_t i = 0; i < n; i++) {
        o->hoff[2 * i] = fuzz_off(h[i].name, buf, len);
        o->hlen[2 * i] = h[i].name.len;
        o->hoff[2 * i + 1] = fuzz_off(h[i].value, buf, len);
        o->hlen[2 * i + 1] = h[i].value.len;
        FUZZ_CHECK(h[i].name.len > 0);
    }
}

static inline void fuzz_request_out(fuzz_head *o, int rc, const tw_http_parser *p,
                                    const tw_http_request *r, const char *buf, size_t len)
{
    memset(o, 0, sizeof *o);
    o->rc = rc;
    o->status = tw_http_parser_status(p);
    FUZZ_CHECK((rc < 0) == (o->status != 0));
    FUZZ_CHECK((rc < 0) == (tw_http_parser_reason(p) != NULL));
    if (rc <= 0)
        return;
    FUZZ_CHECK((size_t)rc <= len);
    const tw_http_slice s[] = { r->method, r->target, r->path, r->query, r->authority, r->host };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        o->off[i] = fuzz_off(s[i], buf, len);
        o->len[i] = s[i].len;
    }
    fuzz_headers(o, r->headers, r->num_headers, buf, len);
    o->cl = r->content_length;
    int ints[] = { r->method_id,  r->target_form, r->version_minor,   (int)r->body,
                   r->keep_alive, r->upgrade,     r->expect_continue, (int)r->connection };
    memcpy(o->ints, ints, sizeof ints);
    FUZZ_CHECK(r->body != TW_HTTP_BODY_UNTIL_CLOSE);
    FUZZ_CHECK(r->body != TW_HTTP_BODY_LENGTH || r->content_length > 0);
}

static inline void fuzz_response_out(fuzz_head *o, int rc, const tw_http_parser *p,
                                     const tw_http_response *r, const char *buf, size_t len)
{
    memset(o, 0, sizeof *o);
    o->rc = rc;
    o->status = tw_http_parser_status(p);
    FUZZ_CHECK((rc < 0) == (o->status != 0));
    if (rc <= 0)
        return;
    FUZZ_CHECK((size_t)rc <= len);
    o->off[0] = fuzz_off(r->reason, buf, len);
    o->len[0] = r->reason.len;
    fuzz_headers(o, r->headers, r->num_headers, buf, len);
    o->cl = r->content_length;
    int ints[] = { r->version_minor, r->status, (int)r->body, (int)r->connection,
                   r->keep_alive,    r->tunnel, r->te_other };
    memcpy(o->ints, ints, sizeof ints);
    FUZZ_CHECK(r->status >= 100 && r->status <= 599);
}

/* Parses data as a head (request, or response to method) in calls ending at
 * the given cut points and then at size; each call sees a fresh exact-size
 * copy when copy is set (so reads past the end trip ASan and the buffer
 * moves), else the same buffer. */
static inline void fuzz_feed(fuzz_head *o, int response, tw_http_method method,
                             const tw_http_limits *lim, const uint8_t *data, size_t size,
                             const size_t *cuts, size_t ncuts, int copy)
{
    tw_http_header h[FUZZ_NHDR];
    tw_http_parser p;
    tw_http_parser_init(&p, lim);
    tw_http_request req = { .headers = h, .headers_cap = FUZZ_NHDR };
    tw_http_response resp = { .headers = h, .headers_cap = FUZZ_NHDR };
    for (size_t i = 0; i <= ncuts; i++) {
        size_t k = i < ncuts ? cuts[i] : size;
        char *buf = (char *)data;
        if (copy) {
            buf = malloc(k ? k : 1);
            FUZZ_CHECK(buf);
            memcpy(buf, data, k);
        }
        int rc = response ? tw_http_parse_response(&p, buf, k, method, &resp)
                          : tw_http_parse_request(&p, buf, k, &req);
        if (response)
            fuzz_response_out(o, rc, &p, &resp, buf, k);
        else
            fuzz_request_out(o, rc, &p, &req, buf, k);
        if (copy)
            free(buf);
        if (rc != 0)
            return;
    }
}

/* The outcome must not depend on how the bytes were split. */
static inline void fuzz_same_any_split(int response, tw_http_method method,
                                       const tw_http_limits *lim, const uint8_t *data, size_t size)
{
    fuzz_head whole, part;
    fuzz_feed(&whole, response, method, lim, data, size, NULL, 0, 1);
    if (size == 0)
        return;
    size_t cut = (data[0] * 131u + size * 7u) % size;
    fuzz_feed(&part, response, method, lim, data, size, &cut, 1, 1);
    FUZZ_CHECK(memcmp(&whole, &part, sizeof whole) == 0);
    size_t two[2] = { size / 3, 2 * size / 3 };
    fuzz_feed(&part, response, method, lim, data, size, two, 2, 1);
    FUZZ_CHECK(memcmp(&whole, &part, sizeof whole) == 0);
    if (size <= 4096) {
        size_t *cuts = malloc(size * sizeof *cuts);
        FUZZ_CHECK(cuts);
        for (size_t i = 0; i < size; i++)
            cuts[i] = i;
        fuzz_feed(&part, response, method, lim, data, size, cuts, size, 0);
        FUZZ_CHECK(memcmp(&whole, &part, sizeof whole) == 0);
        free(cuts);
    }
}

/* Decodes a chunked body whole; returns the result and where it ended. */
static inline int fuzz_chunked_whole(const tw_http_limits *lim, const char *buf, size_t len,
                                     size_t *end, uint64_t *decoded)
{
    tw_http_chunked c;
    tw_http_header tr[FUZZ_NHDR];
    tw_http_chunked_init(&c, lim, tr, FUZZ_NHDR);
    size_t off = 0, used;
    tw_http_slice d;
    int rc;
    *decoded = 0;
    while ((rc = tw_http_chunked_parse(&c, buf + off, len - off, &used, &d)) ==
           TW_HTTP_CHUNKED_DATA) {
        FUZZ_CHECK(d.len > 0 && d.ptr >= buf + off && d.ptr + d.len <= buf + off + used);
        off += used;
        *decoded += d.len;
    }
    FUZZ_CHECK(used <= len - off);
    off += used;
    if (rc == TW_HTTP_CHUNKED_DONE) {
        for (size_t i = 0; i < c.num_trailers; i++) {
            fuzz_off(tr[i].name, buf, off);
            fuzz_off(tr[i].value, buf, off);
        }
    }
    FUZZ_CHECK((rc < 0) == (tw_http_chunked_status(&c) != 0));
    *end = off;
    return rc;
}

#endif
