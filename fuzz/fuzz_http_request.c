/* Fuzzes the HTTP/1.1 request parser: the same outcome however the input is
 * split, slices inside the input, pipelined requests with their bodies
 * (Content-Length and chunked), and the helpers on what was parsed. Runs
 * with the default limits and with tiny ones. */
#include "http_fuzz.h"

static void exercise_helpers(const tw_http_request *r)
{
    if (r->path.ptr) {
        char *out = malloc(r->path.len + 1);
        FUZZ_CHECK(out);
        size_t n = 0;
        unsigned flags = 0;
        int rc = tw_http_path_decode(r->path.ptr, r->path.len, out, r->path.len, &n, &flags);
        FUZZ_CHECK(rc == 0 || rc == TW_EPROTO);
        if (rc == 0) {
            FUZZ_CHECK(n <= r->path.len);
            FUZZ_CHECK(!memchr(out, 0, n));
            if (flags & TW_HTTP_PATH_ENCODED_SLASH)
                FUZZ_CHECK(memchr(out, '/', n) != NULL);
            /* In place gives the same bytes. */
            char *again = malloc(r->path.len + 1);
            FUZZ_CHECK(again);
            memcpy(again, r->path.ptr, r->path.len);
            size_t m = 0;
            FUZZ_CHECK(tw_http_path_decode(again, r->path.len, again, r->path.len, &m, NULL) == 0);
            FUZZ_CHECK(m == n && memcmp(again, out, n) == 0);
            free(again);
        }
        free(out);
    }
    if (r->query.ptr) {
        const char *cur = r->query.ptr, *end = r->query.ptr + r->query.len;
        tw_http_slice k, v;
        char tmp[256];
        int guard = 0;
        while (tw_http_query_next(&cur, end, &k, &v)) {
            FUZZ_CHECK(k.ptr >= r->query.ptr && k.ptr + k.len <= end);
            FUZZ_CHECK(!v.ptr || (v.ptr >= r->query.ptr && v.ptr + v.len <= end));
            FUZZ_CHECK(++guard <= (int)r->query.len);
            size_t n;
            int rc = tw_http_query_decode(k.ptr, k.len, tmp, sizeof tmp, &n);
            FUZZ_CHECK(rc == 0 || rc == TW_EPROTO || rc == TW_ELIMIT);
        }
        FUZZ_CHECK(cur == end);
    }
    const tw_http_header *h = tw_http_header_find(r->headers, r->num_headers, "host");
    FUZZ_CHECK((h != NULL) == (r->host.ptr != NULL));
    if (h)
        FUZZ_CHECK(h->value.ptr == r->host.ptr && h->value.len == r->host.len);
    unsigned conn = 0;
    for (h = tw_http_header_find(r->headers, r->num_headers, "Connection"); h;
         h = tw_http_header_find_next(r->headers, r->num_headers, h, "connection"))
        conn |= tw_http_connection_tokens(h->value.ptr, h->value.len);
    FUZZ_CHECK(conn == r->connection);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int small = 0; small < 2; small++) {
        tw_http_limits lim;
        fuzz_limits(&lim, small);
        fuzz_same_any_split(0, TW_HTTP_GET, &lim, data, size);

        char *buf = malloc(size ? size : 1);
        FUZZ_CHECK(buf);
        memcpy(buf, data, size);
        size_t off = 0;
        for (int n = 0; n < 64 && off < size; n++) {
            tw_http_header h[FUZZ_NHDR];
            tw_http_request req = { .headers = h, .headers_cap = FUZZ_NHDR };
            tw_http_parser p;
            tw_http_parser_init(&p, &lim);
            int rc = tw_http_parse_request(&p, buf + off, size - off, &req);
            if (rc <= 0)
                break;
            exercise_helpers(&req);
            off += (size_t)rc;
            if (req.body == TW_HTTP_BODY_LENGTH) {
                FUZZ_CHECK(req.content_length <= lim.max_body_bytes);
                tw_http_length lb;
                tw_http_length_init(&lb, req.content_length);
                off += tw_http_length_take(&lb, size - off);
                if (!tw_http_length_done(&lb))
                    break;
            } else if (req.body == TW_HTTP_BODY_CHUNKED) {
                size_t end;
                uint64_t dec;
                rc = fuzz_chunked_whole(&lim, buf + off, size - off, &end, &dec);
                FUZZ_CHECK(dec <= lim.max_body_bytes);
                if (rc != TW_HTTP_CHUNKED_DONE)
                    break;
                off += end;
            }
        }
        free(buf);
    }
    return 0;
}
