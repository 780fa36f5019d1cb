/* line.c — LineReceiver and LineOnlyReceiver (twisted.protocols.basic).
 *
 * One loop serves both. Lines are taken from the owned buffer while it
 * holds any, then straight from the read being parsed: a read of complete
 * lines is delivered without a copy, and only its unfinished tail is copied
 * for the next read. Mode switches, pauses and bytes fed back in from hooks
 * are handled by the same loop, never by recursion. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/basic_internal.h"

#define DOMAIN "line"

enum { SEND_COPY_MAX = 256 }; /* lines up to this are sent as one write */
#define MAX_LIMIT (((size_t)-1) / 4)

static const size_t NPOS = (size_t)-1;

static tw_line_receiver *lr_of(tw_protocol *p)
{
    return (tw_line_receiver *)p;
}

static const tw_line_receiver_ops *lops(const tw_protocol *p)
{
    return (const tw_line_receiver_ops *)p->ops;
}

__attribute__((unused)) static inline bool is_line(const tw_protocol *p)
{
    return p->ops->data_received == tw__line_data_received ||
           p->ops->data_received == tw__line_only_data_received;
}

static bool is_line_only(const tw_protocol *p)
{
    return p->ops->data_received == tw__line_only_data_received;
}

void tw__line_init(tw_protocol *p)
{
    tw_line_receiver *lr = lr_of(p);
    if (lr->r.flags & TW__RX_INIT)
        return;
    const tw_line_receiver_ops *ops = lops(p);
    const char *d = ops->delimiter ? ops->delimiter : "\r\n";
    size_t n = strlen(d);
    if (n == 0 || n > TW_LINE_DELIMITER_MAX) {
        tw_log(TW_LOG_ERROR, DOMAIN, "delimiter of %zu bytes is not usable; using CR LF", n);
        d = "\r\n";
        n = 2;
    }
    memcpy(lr->delim, d, n);
    lr->delim_len = (unsigned char)n;
    lr->max_line_bytes = ops->max_line_bytes ? ops->max_line_bytes : TW_LINE_MAX_LENGTH;
    if (lr->max_line_bytes > MAX_LIMIT)
        lr->max_line_bytes = MAX_LIMIT;
    lr->r.flags |= TW__RX_INIT;
}

/* ------------------------------------------------------------ searching */

/* Offset of the first delimiter in s[0, n), or NPOS. Scans for the
 * delimiter's last byte with memchr and checks the bytes before it, so the
 * first match found is the earliest. */
static inline size_t find_delim(const tw_line_receiver *lr, const char *s, size_t n)
{
    size_t k = lr->delim_len;
    if (n < k)
        return NPOS;
    if (k == 1) {
        const char *h = memchr(s, lr->delim[0], n);
        return h ? (size_t)(h - s) : NPOS;
    }
    if (k == 2) { /* CR LF and friends: the common case, kept tight */
        const char first = lr->delim[0], second = lr->delim[1];
        const char *at = s + 1, *end = s + n;
        while (at < end) {
            const char *h = memchr(at, second, (size_t)(end - at));
            if (!h)
                return NPOS;
            if (h[-1] == first)
                return (size_t)(h - 1 - s);
            at = h + 1;
        }
        return NPOS;
    }
    const char last = lr->delim[k - 1];
    const char *at = s + k - 1, *end = s + n;
    while (at < end) {
        const char *h = memchr(at, last, (size_t)(end - at));
        if (!h)
            return NPOS;
        if (memcmp(h - (k - 1), lr->delim, k - 1) == 0)
            return (size_t)(h - (k - 1) - s);
        at = h + 1;
    }
    return NPOS;
}

/* A delimiter that starts in the last bytes of tail and ends in `in`:
 * returns how many of its bytes are in `in` (1..k-1), or 0. The earliest
 * start wins. */
static size_t straddle(const tw_line_receiver *lr, const char *tail, size_t tail_len,
                       const char *in, size_t in_len)
{
    size_t k = lr->delim_len;
    for (size_t t = 1; t < k && t <= in_len; t++) {
        size_t head = k - t; /* bytes of the delimiter at the end of tail */
        if (head > tail_len)
            continue;
        if (memcmp(tail + tail_len - head, lr->delim, head) == 0 &&
            memcmp(in, lr->delim + head, t) == 0)
            return t;
    }
    return 0;
}

/* After a failed search of buf: only its last k-1 bytes may still begin a
 * delimiter. */
static void scan_from_tail(tw_line_receiver *lr)
{
    tw_receiver *r = &lr->r;
    size_t k1 = lr->delim_len - 1u;
    r->scan = r->len - r->off > k1 ? r->len - k1 : r->off;
}

/* ------------------------------------------------------------ delivery */

static void call_exceeded(tw_protocol *p, const char *data, size_t len)
{
    const tw_line_receiver_ops *ops = lops(p);
    if (ops->line_length_exceeded) {
        ops->line_length_exceeded(p, data, len);
        return;
    }
    tw__rx_violation(&lr_of(p)->r, DOMAIN, "line longer than %zu bytes", lr_of(p)->max_line_bytes);
}

/* LineReceiver: the over-long line, its delimiter and everything pending
 * after it — all the pending input, from the front — go to
 * line_length_exceeded, and the buffer is emptied. */
static void exceed_all(tw_protocol *p)
{
    tw_receiver *r = &lr_of(p)->r;
    const char *chunk;
    size_t n;
    if (r->len > r->off) {
        if (tw__rx_spill(r) < 0)
            return;
        chunk = r->buf + r->off;
        n = r->len - r->off;
        r->off = r->len = r->scan = 0; /* emptied; the bytes stay for the call */
    } else {
        chunk = r->in;
        n = r->in_len;
        r->in_len = 0;
    }
    call_exceeded(p, chunk, n);
}

/* LineOnlyReceiver: only the line goes to line_length_exceeded; the rest of
 * the read is dropped. line points into memory that discarding keeps. */
static void exceed_only(tw_protocol *p, const char *line, size_t n)
{
    tw__rx_discard(&lr_of(p)->r);
    call_exceeded(p, line, n);
}

/* One raw chunk: all the pending input, joined. Returns false to stop. */
static bool raw_step(tw_protocol *p)
{
    tw_receiver *r = &lr_of(p)->r;
    const char *chunk;
    size_t n;
    if (r->len > r->off) {
        if (tw__rx_spill(r) < 0)
            return false;
        chunk = r->buf + r->off;
        n = r->len - r->off;
        r->off = r->len = r->scan = 0;
    } else {
        chunk = r->in;
        n = r->in_len;
        r->in_len = 0;
    }
    const tw_line_receiver_ops *ops = lops(p);
    if (!ops->raw_data_received) {
        tw__rx_missing_hook(r, DOMAIN, "raw_data_received");
        return false;
    }
    tw_line_receiver *lr = lr_of(p);
    lr->raw_at = chunk; /* for set_line_mode's no-copy case */
    lr->raw_len = n;
    int rc = ops->raw_data_received(p, chunk, n);
    lr->raw_at = NULL;
    return rc == 0;
}

/* set_line_mode(extra) inside raw_data_received, with extra the tail of the
 * chunk being delivered and nothing else pending: the bytes are still where
 * they were, so they become the pending input again without a copy. The raw
 * chunk was all the pending input, so the order is kept. */
static bool give_back_raw_tail(tw_line_receiver *lr, const char *extra, size_t len)
{
    tw_receiver *r = &lr->r;
    const char *chunk = lr->raw_at;
    if (!chunk || !(r->flags & TW__RX_BUSY) || r->pend_len || r->in_len || r->len != r->off)
        return false;
    /* Compared as integers: extra may point anywhere. */
    uintptr_t x = (uintptr_t)extra, c = (uintptr_t)chunk, b = (uintptr_t)r->buf;
    if (x < c || x + len != c + lr->raw_len)
        return false;
    if (r->buf && c >= b && c < b + r->cap) {
        r->off = r->scan = (size_t)(extra - r->buf); /* buf is not written during hooks */
        r->len = r->off + len;
    } else {
        r->in = extra;
        r->in_len = len;
    }
    lr->raw_at = NULL; /* once: a second call appends a copy */
    return true;
}

static void run(tw_protocol *p, bool only)
{
    tw_line_receiver *lr = lr_of(p);
    tw_receiver *r = &lr->r;
    const tw_line_receiver_ops *ops = lops(p);

    for (;;) {
        if (tw__rx_absorb(r) < 0 || tw__rx_halted(r))
            return;
        size_t have = r->len - r->off;
        if (have == 0 && r->in_len == 0)
            return;
        if (r->flags & TW__RX_RAW) {
            if (!raw_step(p))
                return;
            continue;
        }

        /* Re-read each turn: a hook may have changed them. */
        size_t k = lr->delim_len, max = lr->max_line_bytes;
        const char *line;
        size_t n;

        if (have == 0) {
            /* The hot path: lines straight from the read, in a tight loop
             * for as long as the hooks change nothing. */
            size_t j = find_delim(lr, r->in, r->in_len);
            if (ops->line_received) {
                bool recheck = false;
                r->flags &= ~TW__RX_TOUCHED;
                while (j != NPOS && j <= max) {
                    line = r->in;
                    r->in += j + k;
                    r->in_len -= j + k;
                    if (ops->line_received(p, line, j) != 0)
                        return; /* the rest stays buffered for the next read */
                    /* Every call a hook can make into this receiver (mode,
                     * delimiter, limit, pause, stop, clear, bytes fed back)
                     * sets TOUCHED; closing shows on the transport. */
                    if ((r->flags & TW__RX_TOUCHED) || tw__rx_closing(r)) {
                        recheck = true;
                        break;
                    }
                    if (r->in_len == 0)
                        return;
                    j = find_delim(lr, r->in, r->in_len);
                }
                if (recheck)
                    continue; /* the top of the loop looks again */
                /* Here j is NPOS or an over-long line: handled below. */
            }
            if (j == NPOS) {
                if (only ? r->in_len > max : r->in_len >= max + k) {
                    if (only) {
                        exceed_only(p, r->in, r->in_len);
                        return;
                    }
                    exceed_all(p);
                    continue;
                }
                if (tw__rx_spill(r) == 0) /* the unfinished tail: the one copy */
                    scan_from_tail(lr);
                return;
            }
            if (j > max) {
                if (only) {
                    exceed_only(p, r->in, j);
                    return;
                }
                exceed_all(p);
                continue;
            }
            line = r->in;
            n = j;
            r->in += j + k;
            r->in_len -= j + k;
        } else {
            size_t from = r->scan > r->off ? r->scan : r->off;
            size_t i = find_delim(lr, r->buf + from, r->len - from);
            if (i != NPOS) {
                /* A whole line inside the buffer. */
                i += from;
                n = i - r->off;
                if (n > max) {
                    if (only) {
                        exceed_only(p, r->buf + r->off, n);
                        return;
                    }
                    exceed_all(p);
                    continue;
                }
                line = r->buf + r->off;
                r->off = r->scan = i + k;
                if (r->off == r->len)
                    r->off = r->len = r->scan = 0;
            } else {
                scan_from_tail(lr);
                if (r->in_len == 0) {
                    if (only ? have > max : have >= max + k) {
                        if (only) {
                            exceed_only(p, r->buf + r->off, have);
                            return;
                        }
                        exceed_all(p);
                        continue;
                    }
                    return; /* an unfinished line: wait for more */
                }
                /* The buffered start of a line and its end in the read: copy
                 * only the part of the read that belongs to this line. */
                size_t take, skip;
                size_t t = straddle(lr, r->buf + r->off, have, r->in, r->in_len);
                if (t) {
                    n = have - (k - t);
                    take = 0;
                    skip = t;
                } else {
                    size_t j = find_delim(lr, r->in, r->in_len);
                    if (j == NPOS) {
                        size_t total = have + r->in_len;
                        if (only ? total > max : total >= max + k) {
                            if (only) {
                                if (tw__rx_spill(r) == 0)
                                    exceed_only(p, r->buf + r->off, total);
                                return;
                            }
                            exceed_all(p);
                            continue;
                        }
                        if (tw__rx_spill(r) == 0)
                            scan_from_tail(lr);
                        return;
                    }
                    n = have + j;
                    take = j;
                    skip = j + k;
                }
                if (n > max && !only) {
                    exceed_all(p);
                    continue;
                }
                if (tw__rx_append(r, r->in, take) < 0)
                    return;
                r->in += skip;
                r->in_len -= skip;
                line = r->buf + r->off;
                if (n > max) {
                    exceed_only(p, line, n);
                    return;
                }
                r->off = r->len = r->scan = 0; /* emptied; the line stays put */
            }
        }

        if (!ops->line_received) {
            tw__rx_missing_hook(r, DOMAIN, "line_received");
            return;
        }
        if (ops->line_received(p, line, n) != 0)
            return; /* the rest stays buffered for the next read */
    }
}

void tw__line_data_received(tw_protocol *p, const void *data, size_t len)
{
    tw_receiver *r = tw__rx(p);
    tw__line_init(p);
    if (!tw__rx_enter(r, data, len))
        return;
    run(p, false);
    tw__rx_leave(r);
}

void tw__line_only_data_received(tw_protocol *p, const void *data, size_t len)
{
    tw_receiver *r = tw__rx(p);
    tw__line_init(p);
    if (!tw__rx_enter(r, data, len))
        return;
    run(p, true);
    tw__rx_leave(r);
}

/* ------------------------------------------------------------ the API */

int tw_line_receiver_send_line(tw_protocol *p, const void *line, size_t len)
{
    assert(is_line(p));
    tw__line_init(p);
    tw_line_receiver *lr = lr_of(p);
    if (!p->transport)
        return TW_ECLOSED;
    if (!is_line_only(p) && len <= SEND_COPY_MAX) {
        char tmp[SEND_COPY_MAX + TW_LINE_DELIMITER_MAX];
        if (len)
            memcpy(tmp, line, len);
        memcpy(tmp + len, lr->delim, lr->delim_len);
        return tw_transport_write(p->transport, tmp, len + lr->delim_len);
    }
    struct iovec v[2] = { { (void *)line, len }, { lr->delim, lr->delim_len } };
    return tw_transport_writev(p->transport, v, 2);
}

int tw_line_receiver_set_delimiter(tw_protocol *p, const void *delim, size_t len)
{
    assert(is_line(p));
    tw__line_init(p);
    if (len == 0 || len > TW_LINE_DELIMITER_MAX)
        return TW_EINVAL;
    tw_line_receiver *lr = lr_of(p);
    memcpy(lr->delim, delim, len);
    lr->delim_len = (unsigned char)len;
    lr->r.scan = lr->r.off; /* what was searched was searched for another */
    lr->r.flags |= TW__RX_TOUCHED;
    return 0;
}

void tw_line_receiver_set_max_line_bytes(tw_protocol *p, size_t max_line_bytes)
{
    assert(is_line(p));
    tw__line_init(p);
    /* Bounded so that limit + delimiter never overflows. */
    lr_of(p)->max_line_bytes = max_line_bytes > MAX_LIMIT ? MAX_LIMIT : max_line_bytes;
    lr_of(p)->r.flags |= TW__RX_TOUCHED;
}

int tw_line_receiver_set_raw_mode(tw_protocol *p)
{
    assert(is_line(p));
    if (is_line_only(p))
        return TW_EINVAL;
    tw__line_init(p);
    lr_of(p)->r.flags |= TW__RX_RAW | TW__RX_TOUCHED;
    return 0;
}

int tw_line_receiver_set_line_mode(tw_protocol *p, const void *extra, size_t len)
{
    assert(is_line(p));
    tw__line_init(p);
    tw_receiver *r = tw__rx(p);
    r->flags &= ~TW__RX_RAW;
    if (len == 0 || give_back_raw_tail(lr_of(p), extra, len))
        return 0;
    p->ops->data_received(p, extra, len); /* queued if a loop is running */
    return (r->flags & TW__RX_STOPPED) && !tw__rx_closing(r) ? TW_ENOMEM : 0;
}

bool tw_line_receiver_line_mode(const tw_protocol *p)
{
    assert(is_line(p));
    return !(((const tw_receiver *)p)->flags & TW__RX_RAW);
}

const char *tw_line_receiver_clear_line_buffer(tw_protocol *p, size_t *len)
{
    assert(is_line(p));
    tw_receiver *r = tw__rx(p);
    size_t have = r->len - r->off, total = have + r->in_len + r->pend_len;
    *len = 0;
    if (total == 0)
        return NULL;
    /* A fresh block: buf may hold the line being delivered, so it must not
     * be rewritten while the hook runs. */
    char *out = malloc(total);
    if (!out) {
        tw_log(TW_LOG_WARN, DOMAIN, "out of memory in clear_line_buffer: %zu bytes dropped", total);
        tw__rx_discard(r);
        return NULL;
    }
    if (have)
        memcpy(out, r->buf + r->off, have);
    if (r->in_len)
        memcpy(out + have, r->in, r->in_len);
    if (r->pend_len)
        memcpy(out + have + r->in_len, r->pend, r->pend_len);
    tw__rx_discard(r);
    r->flags |= TW__RX_TOUCHED;
    free(r->cleared);
    r->cleared = out;
    *len = total;
    return out;
}
