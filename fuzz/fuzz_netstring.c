/* fuzz_netstring — NetstringReceiver on hostile input, against a reference.
 *
 * Input: two header bytes, then the stream.
 *   h[0]: the limit (h[0] * 4; 0 means the default 99999).
 *   h[1]: seed of the chunk sizes for the third feeding.
 *
 * A small reference parser, written straight from the format's rules,
 * says which strings must be delivered and whether the peer is broken; the
 * receiver must agree when fed whole, byte by byte, and in seeded chunks.
 * Any difference aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/testing.h"

typedef struct fz {
    tw_netstring_receiver nr;
    uint64_t digest;
    size_t strings;
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
}

static const tw_netstring_receiver_ops ops = {
    .base = TW_NETSTRING_RECEIVER_BASE(fz),
    .string_received = fz_string,
};

typedef struct result {
    uint64_t digest;
    size_t strings;
    bool broken, closed;
} result;

/* The rules: "<len>:<payload>," with len "0" or [1-9][0-9]*, len <= max;
 * an error as soon as a byte cannot belong to a valid netstring. */
static result reference(const uint8_t *s, size_t n, size_t max)
{
    result r = { 0 };
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        if (s[j] == '0') {
            j++;
            if (j < n && s[j] != ':')
                goto bad;
        } else if (s[j] >= '1' && s[j] <= '9') {
            while (j < n && s[j] >= '0' && s[j] <= '9') {
                len = len * 10 + (s[j] - '0');
                j++;
                if (len > max)
                    goto bad;
            }
            if (j < n && s[j] != ':')
                goto bad;
        } else {
            goto bad;
        }
        if (j >= n)
            break; /* an unfinished length */
        j++;       /* ':' */
        if (n - j < len + 1)
            break; /* an unfinished payload: nothing is wrong yet */
        if (s[j + len] != ',')
            goto bad;
        r.strings++;
        mix(&r.digest, s + j, len);
        i = j + len + 1;
    }
    return r;
bad:
    r.broken = r.closed = true;
    return r;
}

static result run(size_t max, const uint8_t *data, size_t len, size_t step, unsigned seed)
{
    tw_test_conn_options co = { .protocol = TW_PROTOCOL_OF(&ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&co);
    result res = { 0 };
    if (!c)
        return res;
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_netstring_receiver_set_max_length(p, max);
    size_t at = 0;
    uint32_t rng = seed * 2654435761u + 1;
    while (at < len) {
        size_t n = step ? step : len;
        if (seed) {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % (1 + (seed & 127));
        }
        if (n > len - at)
            n = len - at;
        if (tw_test_conn_feed(c, data + at, n) < 0)
            break;
        at += n;
        /* Never more than one unfinished netstring is kept. */
        if (tw_receiver_buffered(p) > max + 1)
            abort();
    }
    fz *f = (fz *)p;
    res.digest = f->digest;
    res.strings = f->strings;
    res.broken = tw_netstring_receiver_broken(p);
    res.closed = tw_test_conn_disconnecting(c);
    tw_test_conn_free(c);
    return res;
}

static bool same(result a, result b)
{
    return a.digest == b.digest && a.strings == b.strings && a.broken == b.broken &&
           a.closed == b.closed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    tw_log_set_level(TW_LOG_OFF);
    size_t max = data[0] ? (size_t)data[0] * 4 : TW_NETSTRING_MAX_LENGTH;
    unsigned seed = data[1] | 1;
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    result want = reference(s, n, max);
    if (!same(want, run(max, s, n, 0, 0)) || !same(want, run(max, s, n, 1, 0)) ||
        !same(want, run(max, s, n, 0, seed)))
        abort();
    return 0;
}
