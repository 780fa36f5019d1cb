/* Fuzzes the chunked body decoder: decoding in one call, in two pieces (the
 * caller keeping unconsumed bytes in a new exact-size buffer), and in place
 * byte by byte must agree on the verdict, the status, the decoded bytes and
 * where the body ended. Default and tiny limits. */
#include "http_fuzz.h"

typedef struct run {
    int rc, status;
    size_t end;
    char *out;
    size_t n;
} run;

/* Streams data in calls ending at cut and then at size. */
static void stream(run *r, const tw_http_limits *lim, const uint8_t *data, size_t size, size_t cut)
{
    tw_http_chunked c;
    tw_http_header tr[FUZZ_NHDR];
    tw_http_chunked_init(&c, lim, tr, FUZZ_NHDR);
    r->out = malloc(size + 1);
    FUZZ_CHECK(r->out);
    r->n = 0;
    size_t taken = 0;
    int rc = TW_HTTP_CHUNKED_MORE;
    for (int step = 0; step < 2; step++) {
        size_t k = step == 0 ? cut : size;
        for (;;) {
            size_t n = k - taken;
            char *buf = malloc(n ? n : 1);
            FUZZ_CHECK(buf);
            memcpy(buf, data + taken, n);
            size_t used;
            tw_http_slice d;
            rc = tw_http_chunked_parse(&c, buf, n, &used, &d);
            FUZZ_CHECK(used <= n);
            if (rc == TW_HTTP_CHUNKED_DATA) {
                FUZZ_CHECK(d.len > 0 && d.ptr >= buf && d.ptr + d.len <= buf + used);
                memcpy(r->out + r->n, d.ptr, d.len);
                r->n += d.len;
            }
            if (rc == TW_HTTP_CHUNKED_DONE)
                for (size_t i = 0; i < c.num_trailers; i++) {
                    fuzz_off(tr[i].name, buf, used);
                    fuzz_off(tr[i].value, buf, used);
                }
            free(buf);
            taken += used;
            if (rc != TW_HTTP_CHUNKED_DATA)
                break;
        }
        if (rc != TW_HTTP_CHUNKED_MORE)
            break;
    }
    r->rc = rc;
    r->status = tw_http_chunked_status(&c);
    r->end = taken;
    FUZZ_CHECK(r->n <= lim->max_body_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int small = 0; small < 2; small++) {
        tw_http_limits lim;
        fuzz_limits(&lim, small);
        run whole, part;
        stream(&whole, &lim, data, size, 0);
        stream(&part, &lim, data, size, size ? (data[0] * 257u + size) % size : 0);
        FUZZ_CHECK(whole.rc == part.rc && whole.status == part.status);
        if (whole.rc == TW_HTTP_CHUNKED_DONE)
            FUZZ_CHECK(whole.end == part.end);
        FUZZ_CHECK(whole.n == part.n && memcmp(whole.out, part.out, whole.n) == 0);

        if (size <= 4096) {
            char *buf = malloc(size ? size : 1);
            FUZZ_CHECK(buf);
            memcpy(buf, data, size);
            tw_http_chunked c;
            tw_http_header tr[FUZZ_NHDR];
            tw_http_chunked_init(&c, &lim, tr, FUZZ_NHDR);
            size_t src = 0, dst = 0, have = 0;
            int rc;
            for (;;) {
                rc = tw_http_chunked_decode_inplace(&c, buf, have, &src, &dst);
                if (rc != TW_HTTP_CHUNKED_MORE || have == size)
                    break;
                have++;
            }
            FUZZ_CHECK(rc == whole.rc);
            FUZZ_CHECK(tw_http_chunked_status(&c) == whole.status);
            if (rc == TW_HTTP_CHUNKED_DONE)
                FUZZ_CHECK(src == whole.end);
            FUZZ_CHECK(dst == whole.n && memcmp(buf, whole.out, dst) == 0);
            free(buf);
        }
        free(whole.out);
        free(part.out);
    }
    return 0;
}
