/* fuzz_line — LineReceiver and LineOnlyReceiver on hostile input.
 *
 * Input: three header bytes, then the stream.
 *   h[0] & 3: mode. 0 plain lines; 1 a script (Twisted's LineTester: "len N"
 *             then an empty line switches to raw mode for N bytes, "pause"
 *             pauses); 2 chaos (hooks switch modes, clear the buffer, feed
 *             bytes back, change the delimiter and limit, close); 3 like 0
 *             on a LineOnlyReceiver.
 *   h[1]:     delimiter (low 2 bits: CR LF, LF, "<END>", NUL) and limit
 *             (1 + (h[1] >> 2)).
 *   h[2]:     seed of the chunk sizes for the third feeding.
 *
 * Modes 0, 1 and 3 are chunk-independent by specification, so the stream
 * is fed whole, byte by byte and in seeded chunks, and the digests of what
 * was delivered must agree (any difference aborts). Mode 2 only checks that
 * nothing crashes, leaks or grows without bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/testing.h"

typedef struct fz {
    tw_line_receiver lr;
    uint64_t digest;
    size_t lines, raw_bytes;
    long want_raw; /* mode 1: raw bytes still wanted */
    long next_len; /* mode 1: from the last "len N" */
    int mode;
    size_t input_len; /* for the chaos bound */
} fz;

static void mix(fz *f, const void *p, size_t n, uint64_t tag)
{
    const unsigned char *b = p;
    uint64_t h = f->digest ^ (tag * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    f->digest = (h ^ n) * 0x100000001b3ull;
}

/* Raw bytes arrive in chunks that depend on the reads: hash them as one
 * stream, so only the bytes count. */
static void mix_stream(fz *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        f->digest = (f->digest ^ b[i]) * 0x100000001b3ull;
}

static bool is(const char *s, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(s, w, n) == 0;
}

static int chaos_line(tw_protocol *p, const char *line, size_t n);

static int fz_line(tw_protocol *p, const char *line, size_t n)
{
    fz *f = (fz *)p;
    f->lines++;
    mix(f, line, n, 1);
    if (f->mode == 2)
        return chaos_line(p, line, n);
    if (f->mode != 1)
        return 0;
    if (n == 0) {
        f->want_raw = f->next_len;
        if (f->want_raw > 0)
            tw_line_receiver_set_raw_mode(p);
    } else if (n > 4 && memcmp(line, "len ", 4) == 0) {
        long v = 0;
        for (size_t i = 4; i < n && i < 8 && line[i] >= '0' && line[i] <= '9'; i++)
            v = v * 10 + (line[i] - '0');
        f->next_len = v;
    } else if (is(line, n, "pause")) {
        tw_receiver_pause_producing(p);
    }
    return 0;
}

static int fz_raw(tw_protocol *p, const char *data, size_t n)
{
    fz *f = (fz *)p;
    if (f->mode == 2) {
        f->raw_bytes += n;
        mix(f, data, n, 2);
        if (n && (data[0] & 1))
            tw_line_receiver_set_line_mode(p, data + n / 2, n - n / 2);
        return 0;
    }
    size_t take = (size_t)f->want_raw < n ? (size_t)f->want_raw : n;
    f->raw_bytes += take;
    mix_stream(f, data, take);
    f->want_raw -= (long)take;
    if (f->want_raw == 0)
        tw_line_receiver_set_line_mode(p, data + take, n - take);
    return 0;
}

/* Mode 2: the first byte of a line picks an action. */
static int chaos_line(tw_protocol *p, const char *line, size_t n)
{
    fz *f = (fz *)p;
    if (n == 0)
        return 0;
    size_t got;
    switch ((unsigned char)line[0] % 12) {
    case 0:
        tw_line_receiver_set_raw_mode(p);
        break;
    case 1:
        tw_line_receiver_set_line_mode(p, line + 1, n - 1);
        break;
    case 2:
        tw_line_receiver_clear_line_buffer(p, &got);
        break;
    case 3:
        tw_receiver_pause_producing(p);
        break;
    case 4:
        tw_receiver_resume_producing(p);
        break;
    case 5:
        tw_line_receiver_set_delimiter(p, line + 1, n > 3 ? 2 : n - 1);
        break;
    case 6:
        tw_line_receiver_set_max_line_bytes(p, n);
        break;
    case 7:
        tw_line_receiver_send_line(p, line, n);
        break;
    case 8:
        if (f->lines % 7 == 0)
            tw_transport_lose_connection(p->transport);
        break;
    case 9:
        if (f->lines < 64) /* feed back in, a bounded number of times */
            p->ops->data_received(p, line, n);
        break;
    case 10:
        return 1; /* keep the rest for the next read */
    case 11:
        if (f->lines % 13 == 0)
            tw_receiver_stop_producing(p);
        break;
    }
    return 0;
}

static void fz_long(tw_protocol *p, const char *data, size_t n)
{
    fz *f = (fz *)p;
    /* What is passed here depends on the chunking (Twisted's rule), so it
     * only enters the digest in chaos mode. */
    if (f->mode == 2) {
        mix(f, data, n, 3);
        if (n > 2) {
            tw_line_receiver_set_line_mode(p, data + n - 2, 2);
            return;
        }
    }
    tw_transport_lose_connection(p->transport);
}

static const char *const delims[4] = { "\r\n", "\n", "<END>", NULL };

static tw_line_receiver_ops ops[4];
static tw_line_receiver_ops only_ops[4];

static void init_ops(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (int i = 0; i < 4; i++) {
        tw_line_receiver_ops o = {
            .base = TW_LINE_RECEIVER_BASE(fz),
            .line_received = fz_line,
            .raw_data_received = fz_raw,
            .line_length_exceeded = fz_long,
            .delimiter = delims[i],
        };
        ops[i] = o;
        tw_line_receiver_ops q = {
            .base = TW_LINE_ONLY_RECEIVER_BASE(fz),
            .line_received = fz_line,
            .delimiter = delims[i],
        };
        only_ops[i] = q;
    }
    tw_log_set_level(TW_LOG_OFF);
}

typedef struct result {
    uint64_t digest;
    size_t lines, raw_bytes;
    bool closed;
} result;

/* Feeds data in chunks: whole (step 0), fixed (step), or seeded (seed). */
static result run(const tw_line_receiver_ops *o, int mode, bool nul, size_t max,
                  const uint8_t *data, size_t len, size_t step, unsigned seed)
{
    tw_test_conn_options co = { .protocol = TW_PROTOCOL_OF(o) };
    tw_test_conn *c = tw_test_conn_new_opts(&co);
    result res = { 0 };
    if (!c)
        return res;
    tw_protocol *p = tw_test_conn_protocol(c);
    fz *f = (fz *)p;
    f->mode = mode;
    f->input_len = len;
    if (nul)
        tw_line_receiver_set_delimiter(p, "", 1); /* the NUL delimiter */
    tw_line_receiver_set_max_line_bytes(p, max);
    tw_string_transport_set_lenient(tw_test_conn_transport(c), true);

    size_t at = 0;
    uint32_t rng = seed * 2654435761u + 1;
    while (at < len) {
        size_t n;
        if (step)
            n = step;
        else if (seed) {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % (1 + (seed & 63));
        } else
            n = len;
        if (n > len - at)
            n = len - at;
        if (tw_test_conn_feed(c, data + at, n) < 0)
            break;
        at += n;
        /* Whoever paused is resumed once the read is over; the order of
         * delivery does not change. */
        for (size_t i = 0; i < len + 2 && mode != 2 && tw_receiver_paused(p); i++)
            tw_receiver_resume_producing(p);
        if (mode == 2 && tw_receiver_buffered(p) > 4 * len + 4096)
            abort(); /* memory must stay bounded by what came in */
    }
    if (mode != 2)
        for (size_t i = 0; i < len + 2 && tw_receiver_paused(p); i++)
            tw_receiver_resume_producing(p);
    res.digest = f->digest;
    res.lines = f->lines;
    res.raw_bytes = f->raw_bytes;
    res.closed = tw_test_conn_disconnecting(c);
    tw_test_conn_free(c);
    return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    init_ops();
    int mode = data[0] & 3;
    int d = data[1] & 3;
    size_t max = 1 + (data[1] >> 2);
    unsigned seed = data[2];
    const uint8_t *stream = data + 3;
    size_t len = size - 3;
    const tw_line_receiver_ops *o = mode == 3 ? &only_ops[d] : &ops[d];
    int m = mode == 3 ? 0 : mode;

    bool nul = d == 3;
    result whole = run(o, m, nul, max, stream, len, 0, 0);
    result bytes = run(o, m, nul, max, stream, len, 1, 0);
    result chunks = run(o, m, nul, max, stream, len, 0, seed | 1);
    /* LineOnlyReceiver refuses an unfinished line longer than the limit, so
     * a multi-byte delimiter arriving in pieces can change the outcome
     * (Twisted's rule): only single-byte delimiters are compared there. */
    bool comparable = m != 2 && !(mode == 3 && (d == 0 || d == 2));
    if (comparable && (whole.digest != bytes.digest || whole.digest != chunks.digest ||
                       whole.closed != bytes.closed || whole.closed != chunks.closed))
        abort(); /* the chunking changed what was delivered */
    return 0;
}
