/* fuzz_intn — Int8/16/32StringReceiver on hostile input, against a
 * reference.
 *
 * Input: two header bytes, then the stream.
 *   h[0] & 3: prefix width (0: 1 byte, 1: 2, 2 and 3: 4);
 *   h[0] >> 2: limit (that * 64; 0 means the default 99999).
 *   h[1]: seed of the chunk sizes for the third feeding; its top bit makes
 *         the protocol pause after each string (the harness resumes).
 *
 * The strings delivered, and whether the connection was closed for an
 * over-long prefix, must match a direct reading of the format whatever the
 * chunking. Any difference aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/testing.h"

typedef struct fz {
    tw_int_receiver ir;
    uint64_t digest;
    size_t strings;
    bool pause_each;
} fz;

static void mix(uint64_t *d, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = *d ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    *d = (h ^ n) * 0x100000001b3ull;
}

static void fz_string(tw_protocol *p, const char *s, size_t n)
{
    fz *f = (fz *)p;
    f->strings++;
    mix(&f->digest, s, n);
    if (f->pause_each)
        tw_receiver_pause_producing(p);
}

static const tw_int_receiver_ops ops[3] = {
    { .base = TW_INT8_RECEIVER_BASE(fz), .string_received = fz_string },
    { .base = TW_INT16_RECEIVER_BASE(fz), .string_received = fz_string },
    { .base = TW_INT32_RECEIVER_BASE(fz), .string_received = fz_string },
};

typedef struct result {
    uint64_t digest;
    size_t strings;
    bool closed;
} result;

static result reference(const uint8_t *s, size_t n, unsigned width, uint32_t max)
{
    result r = { 0 };
    size_t i = 0;
    while (n - i >= width) {
        uint32_t len = 0;
        for (unsigned k = 0; k < width; k++)
            len = len << 8 | s[i + k];
        if (len > max) {
            r.closed = true;
            break;
        }
        if (n - i - width < len)
            break;
        r.strings++;
        mix(&r.digest, s + i + width, len);
        i += width + len;
    }
    return r;
}

static result run(int w, uint32_t max, bool pause_each, const uint8_t *data, size_t len,
                  size_t step, unsigned seed)
{
    tw_test_conn_options co = { .protocol = TW_PROTOCOL_OF(&ops[w]) };
    tw_test_conn *c = tw_test_conn_new_opts(&co);
    result res = { 0 };
    if (!c)
        return res;
    tw_protocol *p = tw_test_conn_protocol(c);
    fz *f = (fz *)p;
    f->pause_each = pause_each;
    tw_int_receiver_set_max_length(p, max);
    tw_string_transport_set_lenient(tw_test_conn_transport(c), true);
    size_t at = 0;
    uint32_t rng = seed * 2654435761u + 1;
    while (at < len) {
        size_t n = step ? step : len;
        if (seed) {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % (1 + (seed & 63));
        }
        if (n > len - at)
            n = len - at;
        if (tw_test_conn_feed(c, data + at, n) < 0)
            break;
        at += n;
        for (size_t i = 0; i <= len && tw_receiver_paused(p); i++)
            tw_receiver_resume_producing(p);
        if (tw_receiver_buffered(p) > (size_t)max + 4)
            abort(); /* at most one unfinished string is kept */
    }
    res.digest = f->digest;
    res.strings = f->strings;
    res.closed = tw_test_conn_disconnecting(c);
    tw_test_conn_free(c);
    return res;
}

static bool same(result a, result b)
{
    return a.digest == b.digest && a.strings == b.strings && a.closed == b.closed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    tw_log_set_level(TW_LOG_OFF);
    int w = (data[0] & 3) > 2 ? 2 : data[0] & 3;
    static const unsigned widths[3] = { 1, 2, 4 };
    uint32_t max = (data[0] >> 2) ? (uint32_t)(data[0] >> 2) * 64 : TW_INT_MAX_LENGTH;
    bool pause_each = data[1] & 0x80;
    unsigned seed = (data[1] & 0x7f) | 1;
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    result want = reference(s, n, widths[w], max);
    if (!same(want, run(w, max, pause_each, s, n, 0, 0)) ||
        !same(want, run(w, max, pause_each, s, n, 1, 0)) ||
        !same(want, run(w, max, pause_each, s, n, 0, seed)))
        abort();
    return 0;
}
