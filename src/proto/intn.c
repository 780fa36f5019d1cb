/* intn.c — Int8/Int16/Int32StringReceiver (twisted.protocols.basic):
 * strings prefixed with their length as an unsigned big-endian integer of
 * 1, 2 or 4 bytes. */
#include <assert.h>

#include "proto/basic_internal.h"

#define DOMAIN "int_receiver"

enum { INT_PREFIX = 0, INT_PAYLOAD, INT_DONE };

static tw_int_receiver *ir_of(tw_protocol *p)
{
    return (tw_int_receiver *)p;
}

static unsigned prefix_bytes(const tw_protocol *p)
{
    void (*fn)(tw_protocol *, const void *, size_t) = p->ops->data_received;
    if (fn == tw__int8_data_received)
        return 1;
    if (fn == tw__int16_data_received)
        return 2;
    if (fn == tw__int32_data_received)
        return 4;
    return 0;
}

void tw__int_init(tw_protocol *p)
{
    tw_int_receiver *ir = ir_of(p);
    if (ir->r.flags & TW__RX_INIT)
        return;
    const tw_int_receiver_ops *ops = (const tw_int_receiver_ops *)p->ops;
    ir->max_length = ops->max_length ? ops->max_length : TW_INT_MAX_LENGTH;
    ir->r.flags |= TW__RX_INIT;
}

static void limit_exceeded(tw_protocol *p, uint32_t length)
{
    tw_int_receiver *ir = ir_of(p);
    const tw_int_receiver_ops *ops = (const tw_int_receiver_ops *)p->ops;
    /* The announced string is never delivered, and what follows it cannot
     * be framed: nothing more is parsed on this connection. */
    ir->state = INT_DONE;
    ir->r.flags |= TW__RX_STOPPED | TW__RX_TOUCHED;
    tw__rx_discard(&ir->r);
    if (ops->length_limit_exceeded)
        ops->length_limit_exceeded(p, length);
    else
        tw__rx_violation(&ir->r, DOMAIN, "a string of %lu bytes announced (maximum %lu)",
                         (unsigned long)length, (unsigned long)ir->max_length);
}

static void run(tw_protocol *p, unsigned width)
{
    tw_int_receiver *ir = ir_of(p);
    tw_receiver *r = &ir->r;
    const tw_int_receiver_ops *ops = (const tw_int_receiver_ops *)p->ops;

    for (;;) {
        if (tw__rx_absorb(r) < 0 || tw__rx_halted(r))
            return;
        if (ir->state == INT_PREFIX) {
            size_t n;
            const char *s = tw__rx_front(r, &n);
            if (n == 0)
                return;
            /* The prefix is kept in the struct, so a split inside it costs
             * no buffer. */
            size_t k = width - ir->have;
            if (k > n)
                k = n;
            for (size_t i = 0; i < k; i++)
                ir->prefix[ir->have++] = (unsigned char)s[i];
            tw__rx_consume(r, k);
            if (ir->have < width)
                continue;
            uint32_t length = 0;
            for (unsigned i = 0; i < width; i++)
                length = (length << 8) | ir->prefix[i];
            ir->have = 0;
            if (length > ir->max_length) {
                limit_exceeded(p, length);
                return;
            }
            ir->expect = length;
            ir->state = INT_PAYLOAD;
            continue;
        }
        const char *u = tw__rx_take(r, ir->expect);
        if (!u)
            return;
        ir->state = INT_PREFIX;
        if (!ops->string_received) {
            tw__rx_missing_hook(r, DOMAIN, "string_received");
            return;
        }
        ops->string_received(p, u, ir->expect);
    }
}

static void data_received(tw_protocol *p, const void *data, size_t len, unsigned width)
{
    tw_receiver *r = tw__rx(p);
    tw__int_init(p);
    if (!tw__rx_enter(r, data, len))
        return;
    run(p, width);
    tw__rx_leave(r);
}

void tw__int8_data_received(tw_protocol *p, const void *data, size_t len)
{
    data_received(p, data, len, 1);
}

void tw__int16_data_received(tw_protocol *p, const void *data, size_t len)
{
    data_received(p, data, len, 2);
}

void tw__int32_data_received(tw_protocol *p, const void *data, size_t len)
{
    data_received(p, data, len, 4);
}

int tw_int_receiver_send_string(tw_protocol *p, const void *s, size_t len)
{
    unsigned width = prefix_bytes(p);
    assert(width != 0);
    if (width < sizeof(size_t) && len >> (8 * width) != 0)
        return TW_ELIMIT; /* does not fit the prefix */
    if (!p->transport)
        return TW_ECLOSED;
    unsigned char prefix[4];
    for (unsigned i = 0; i < width; i++)
        prefix[i] = (unsigned char)(len >> (8 * (width - 1 - i)));
    struct iovec v[2] = { { prefix, width }, { (void *)s, len } };
    return tw_transport_writev(p->transport, v, 2);
}

void tw_int_receiver_set_max_length(tw_protocol *p, uint32_t max_length)
{
    assert(prefix_bytes(p) != 0);
    tw__int_init(p);
    ir_of(p)->max_length = max_length;
}
