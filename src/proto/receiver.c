/* receiver.c — what every framing receiver shares: the pending-input
 * buffers, reentrant feeding, pause/resume/stop (Twisted's
 * _PauseableMixin), and the protocol hooks the BASE macros install. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/basic_internal.h"

enum {
    BUF_MIN = 256 /* smallest buffer: an unfinished short line fits */
};

/* ------------------------------------------------------------ buffers */

/* Makes room for n more bytes at the end of buf. Between hooks only. */
static int reserve(tw_receiver *r, size_t n)
{
    if (n <= r->cap - r->len)
        return 0;
    size_t live = r->len - r->off;
    if (r->off > 0 && n <= r->cap - live) {
        /* Room enough once the consumed front is dropped. */
        memmove(r->buf, r->buf + r->off, live);
        r->scan = r->scan > r->off ? r->scan - r->off : 0;
        r->off = 0;
        r->len = live;
        return 0;
    }
    size_t cap = r->cap ? r->cap : BUF_MIN;
    while (cap - live < n) {
        if (cap > ((size_t)-1) / 2)
            return TW_ENOMEM;
        cap *= 2;
    }
    char *nb = malloc(cap);
    if (!nb)
        return TW_ENOMEM;
    if (live)
        memcpy(nb, r->buf + r->off, live);
    free(r->buf);
    r->buf = nb;
    r->cap = cap;
    r->scan = r->scan > r->off ? r->scan - r->off : 0;
    r->off = 0;
    r->len = live;
    return 0;
}

static void out_of_memory(tw_receiver *r)
{
    tw_log(TW_LOG_ERROR, "receiver", "out of memory buffering input: aborting the connection");
    r->flags |= TW__RX_STOPPED | TW__RX_TOUCHED;
    tw__rx_discard(r);
    if (r->base.transport)
        tw_transport_abort_connection(r->base.transport);
}

int tw__rx_append(tw_receiver *r, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (reserve(r, len) < 0) {
        out_of_memory(r);
        return TW_ENOMEM;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    return 0;
}

int tw__rx_spill(tw_receiver *r)
{
    if (r->in_len == 0)
        return 0;
    const char *in = r->in;
    size_t n = r->in_len;
    r->in_len = 0;
    return tw__rx_append(r, in, n);
}

int tw__rx_absorb_pend(tw_receiver *r)
{
    if (tw__rx_spill(r) < 0)
        return TW_ENOMEM;
    size_t n = r->pend_len;
    r->pend_len = 0;
    return tw__rx_append(r, r->pend, n);
}

static int pend_append(tw_receiver *r, const void *data, size_t len)
{
    if (len <= r->pend_cap - r->pend_len) {
        memcpy(r->pend + r->pend_len, data, len);
        r->pend_len += len;
        return 0;
    }
    size_t cap = r->pend_cap ? r->pend_cap : BUF_MIN;
    while (cap - r->pend_len < len) {
        if (cap > ((size_t)-1) / 2)
            return TW_ENOMEM;
        cap *= 2;
    }
    char *grown = realloc(r->pend, cap);
    if (!grown)
        return TW_ENOMEM;
    r->pend = grown;
    r->pend_cap = cap;
    memcpy(r->pend + r->pend_len, data, len);
    r->pend_len += len;
    return 0;
}

void tw__rx_discard(tw_receiver *r)
{
    r->off = r->len = r->scan = 0;
    r->in_len = 0;
    r->pend_len = 0;
}

static void release_memory(tw_receiver *r)
{
    free(r->buf);
    r->buf = NULL;
    r->off = r->len = r->cap = r->scan = 0;
    free(r->pend);
    r->pend = NULL;
    r->pend_len = r->pend_cap = 0;
    free(r->cleared);
    r->cleared = NULL;
}

const char *tw__rx_take(tw_receiver *r, size_t need)
{
    if (need == 0)
        return ""; /* never NULL + 0 */
    size_t have = r->len - r->off;
    if (have >= need) {
        const char *p = r->buf + r->off;
        tw__rx_consume(r, need);
        return p;
    }
    if (have > 0) {
        size_t missing = need - have;
        if (r->in_len < missing) {
            tw__rx_spill(r);
            return NULL;
        }
        const char *in = r->in;
        r->in += missing;
        r->in_len -= missing;
        if (tw__rx_append(r, in, missing) < 0)
            return NULL;
        const char *p = r->buf + r->off;
        r->off = r->len = r->scan = 0; /* logically empty; the bytes stay put */
        return p;
    }
    if (r->in_len >= need) {
        const char *p = r->in;
        r->in += need;
        r->in_len -= need;
        return p;
    }
    tw__rx_spill(r);
    return NULL;
}

/* ------------------------------------------------------------ parsing */

bool tw__rx_enter(tw_receiver *r, const void *data, size_t len)
{
    if (r->flags & TW__RX_STOPPED)
        return false;
    if (r->flags & TW__RX_BUSY) {
        /* Fed from inside a hook: parsed after the rest of this read, by
         * the loop already running. */
        r->flags |= TW__RX_TOUCHED;
        if (len && pend_append(r, data, len) < 0)
            out_of_memory(r);
        return false;
    }
    free(r->cleared);
    r->cleared = NULL;
    r->in = data;
    r->in_len = len;
    r->flags |= TW__RX_BUSY;
    return true;
}

void tw__rx_leave(tw_receiver *r)
{
    if ((r->flags & TW__RX_STOPPED) || tw__rx_closing(r)) {
        /* Nothing will be delivered again: keep no bytes. */
        tw__rx_discard(r);
    } else if (tw__rx_spill(r) == 0) {
        tw__rx_absorb(r);
    }
    r->flags &= ~TW__RX_BUSY;
    if (r->off == r->len) {
        /* Memory is held only while a unit is unfinished: an idle
         * connection costs its struct alone. */
        free(r->buf);
        r->buf = NULL;
        r->off = r->len = r->cap = r->scan = 0;
    }
    if (r->pend_len == 0 && r->pend) {
        free(r->pend);
        r->pend = NULL;
        r->pend_cap = 0;
    }
    free(r->cleared);
    r->cleared = NULL;
}

static void peer_text(tw_receiver *r, char *buf, size_t size)
{
    tw_address a;
    snprintf(buf, size, "?");
    if (r->base.transport && tw_transport_get_peer(r->base.transport, &a) == 0)
        tw_address_format(&a, buf, size);
}

void tw__rx_violation(tw_receiver *r, const char *domain, const char *fmt, ...)
{
    char peer[TW_ADDRESS_TEXT_MAX], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    peer_text(r, peer, sizeof peer);
    tw_log(TW_LOG_WARN, domain, "%s: %s; closing the connection", peer, why);
    r->flags |= TW__RX_STOPPED | TW__RX_TOUCHED;
    tw__rx_discard(r);
    if (r->base.transport)
        tw_transport_lose_connection(r->base.transport);
}

void tw__rx_missing_hook(tw_receiver *r, const char *domain, const char *hook)
{
    char peer[TW_ADDRESS_TEXT_MAX];
    peer_text(r, peer, sizeof peer);
    tw_log(TW_LOG_ERROR, domain, "%s: the protocol has no %s hook; closing the connection", peer,
           hook);
    r->flags |= TW__RX_STOPPED | TW__RX_TOUCHED;
    tw__rx_discard(r);
    if (r->base.transport)
        tw_transport_lose_connection(r->base.transport);
}

/* ------------------------------------------------- pause, resume, stop */

void tw_receiver_pause_producing(tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    tw_receiver *r = tw__rx(p);
    r->flags |= TW__RX_PAUSED | TW__RX_TOUCHED;
    if (p->transport)
        tw_transport_pause_producing(p->transport);
}

void tw_receiver_resume_producing(tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    tw_receiver *r = tw__rx(p);
    if (r->flags & TW__RX_STOPPED)
        return;
    r->flags &= ~TW__RX_PAUSED;
    if (p->transport)
        tw_transport_resume_producing(p->transport);
    /* Deliver what was kept, now; inside a hook the running loop does. */
    if (!(r->flags & TW__RX_BUSY) && r->len > r->off)
        p->ops->data_received(p, NULL, 0);
}

void tw_receiver_stop_producing(tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    tw_receiver *r = tw__rx(p);
    r->flags |= TW__RX_STOPPED | TW__RX_PAUSED | TW__RX_TOUCHED;
    tw__rx_discard(r);
    if (!(r->flags & TW__RX_BUSY))
        release_memory(r);
    if (p->transport)
        tw_transport_stop_producing(p->transport);
}

bool tw_receiver_paused(const tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    return (((const tw_receiver *)p)->flags & TW__RX_PAUSED) != 0;
}

static tw_protocol *producer_owner(tw_producer *prod)
{
    return (tw_protocol *)((char *)prod - offsetof(tw_receiver, producer));
}

static void prod_pause(tw_producer *prod)
{
    tw_receiver_pause_producing(producer_owner(prod));
}

static void prod_resume(tw_producer *prod)
{
    tw_receiver_resume_producing(producer_owner(prod));
}

static void prod_stop(tw_producer *prod)
{
    tw_receiver_stop_producing(producer_owner(prod));
}

static const tw_producer_ops receiver_producer_ops = { prod_pause, prod_resume, prod_stop };

tw_producer *tw_receiver_as_producer(tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    tw_receiver *r = tw__rx(p);
    r->producer.ops = &receiver_producer_ops;
    return &r->producer;
}

size_t tw_receiver_buffered(const tw_protocol *p)
{
    assert(tw__rx_is_receiver(p));
    const tw_receiver *r = (const tw_receiver *)p;
    return (r->len - r->off) + r->in_len + r->pend_len;
}

/* ------------------------------------------------------ protocol hooks */

static void kind_init(tw_protocol *p)
{
    void (*fn)(tw_protocol *, const void *, size_t) = p->ops->data_received;
    if (fn == tw__line_data_received || fn == tw__line_only_data_received)
        tw__line_init(p);
    else if (fn == tw__netstring_data_received)
        tw__netstring_init(p);
    else if (fn == tw__int8_data_received || fn == tw__int16_data_received ||
             fn == tw__int32_data_received)
        tw__int_init(p);
    else if (fn == tw__stateful_data_received)
        tw__stateful_init(p);
}

void tw__receiver_connection_made(tw_protocol *p)
{
    kind_init(p);
    const tw__receiver_ops *ops = tw__rx_ops(p);
    if (ops->connection_made)
        ops->connection_made(p);
}

void tw__receiver_eof_received(tw_protocol *p)
{
    const tw__receiver_ops *ops = tw__rx_ops(p);
    if (ops->eof_received)
        ops->eof_received(p);
    else if (p->transport)
        tw_transport_lose_connection(p->transport);
}

void tw__receiver_connection_lost(tw_protocol *p, const tw_failure *reason)
{
    tw_receiver *r = tw__rx(p);
    /* Nothing is delivered after this. */
    r->flags |= TW__RX_STOPPED | TW__RX_TOUCHED;
    const tw__receiver_ops *ops = tw__rx_ops(p);
    if (ops->connection_lost)
        ops->connection_lost(p, reason);
}

void tw__receiver_destroy(tw_protocol *p)
{
    const tw__receiver_ops *ops = tw__rx_ops(p);
    if (ops->destroy)
        ops->destroy(p);
    release_memory(tw__rx(p));
}
