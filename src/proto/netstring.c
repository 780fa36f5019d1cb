/* netstring.c — NetstringReceiver (twisted.protocols.basic): strings framed
 * as "<decimal length>:<payload>,".
 *
 * The length is parsed one byte at a time by a small state machine, so a
 * split anywhere in it needs no buffering and a bad or too-large length is
 * refused at the first byte that shows it. A payload complete in the read
 * is delivered from the read itself; a partial one is buffered as it
 * arrives (never more than the limit plus the comma). */
#include <assert.h>
#include <stdio.h>

#include "proto/basic_internal.h"

#define DOMAIN "netstring"

enum ns_state {
    NS_LEN_START = 0, /* expecting the first digit */
    NS_LEN_ZERO,      /* read "0": only ':' may follow */
    NS_LEN_DIGITS,    /* inside a length that started with 1-9 */
    NS_PAYLOAD        /* expecting expect payload bytes and ',' */
};

static tw_netstring_receiver *ns_of(tw_protocol *p)
{
    return (tw_netstring_receiver *)p;
}

__attribute__((unused)) static inline bool is_netstring(const tw_protocol *p)
{
    return p->ops->data_received == tw__netstring_data_received;
}

void tw__netstring_init(tw_protocol *p)
{
    tw_netstring_receiver *ns = ns_of(p);
    if (ns->r.flags & TW__RX_INIT)
        return;
    const tw_netstring_receiver_ops *ops = (const tw_netstring_receiver_ops *)p->ops;
    ns->max_length = ops->max_length ? ops->max_length : TW_NETSTRING_MAX_LENGTH;
    if (ns->max_length > ((size_t)-1) / 16)
        ns->max_length = ((size_t)-1) / 16;
    ns->r.flags |= TW__RX_INIT;
}

static void parse_error(tw_netstring_receiver *ns, const char *why)
{
    ns->broken = true;
    tw__rx_violation(&ns->r, DOMAIN, "%s", why);
}

/* Parses length bytes from s[0, n). Returns the bytes used, or -1 after a
 * parse error. Stops after the colon. */
static long parse_length(tw_netstring_receiver *ns, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && ns->state != NS_PAYLOAD) {
        unsigned char c = (unsigned char)s[i++];
        bool digit = c >= '0' && c <= '9';
        switch (ns->state) {
        case NS_LEN_START:
            if (!digit) {
                parse_error(ns, "the netstring does not start with a length");
                return -1;
            }
            ns->expect = c - '0';
            ns->state = c == '0' ? NS_LEN_ZERO : NS_LEN_DIGITS;
            break;
        case NS_LEN_ZERO:
            if (c != ':') {
                parse_error(ns, digit ? "the length has a leading zero"
                                      : "the length is not followed by ':'");
                return -1;
            }
            ns->state = NS_PAYLOAD;
            break;
        case NS_LEN_DIGITS:
            if (digit) {
                ns->expect = ns->expect * 10 + (c - '0'); /* checked below */
            } else if (c == ':') {
                ns->state = NS_PAYLOAD;
            } else {
                parse_error(ns, "the length is not followed by ':'");
                return -1;
            }
            break;
        }
        /* Refused as soon as the digits so far exceed the limit: no waiting
         * for the colon, and no overflow (the limit is at most SIZE_MAX/16). */
        if (ns->state == NS_LEN_DIGITS && ns->expect > ns->max_length) {
            char why[96];
            snprintf(why, sizeof why, "the netstring is longer than the maximum %zu",
                     ns->max_length);
            parse_error(ns, why);
            return -1;
        }
    }
    return (long)i;
}

static void run(tw_protocol *p)
{
    tw_netstring_receiver *ns = ns_of(p);
    tw_receiver *r = &ns->r;
    const tw_netstring_receiver_ops *ops = (const tw_netstring_receiver_ops *)p->ops;

    for (;;) {
        if (tw__rx_absorb(r) < 0 || tw__rx_halted(r))
            return;
        if (ns->state != NS_PAYLOAD) {
            size_t n;
            const char *s = tw__rx_front(r, &n);
            if (n == 0)
                return;
            long used = parse_length(ns, s, n);
            if (used < 0)
                return;
            tw__rx_consume(r, (size_t)used);
            continue;
        }
        const char *u = tw__rx_take(r, ns->expect + 1);
        if (!u)
            return; /* partial payload buffered (or out of memory: stopped) */
        if (u[ns->expect] != ',') {
            parse_error(ns, "the netstring is not terminated by ','");
            return;
        }
        ns->state = NS_LEN_START;
        if (!ops->string_received) {
            tw__rx_missing_hook(r, DOMAIN, "string_received");
            return;
        }
        ops->string_received(p, u, ns->expect);
    }
}

void tw__netstring_data_received(tw_protocol *p, const void *data, size_t len)
{
    tw_receiver *r = tw__rx(p);
    tw__netstring_init(p);
    if (!tw__rx_enter(r, data, len))
        return;
    run(p);
    tw__rx_leave(r);
}

int tw_netstring_receiver_send_string(tw_protocol *p, const void *s, size_t len)
{
    assert(is_netstring(p));
    if (!p->transport)
        return TW_ECLOSED;
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%zu:", len);
    struct iovec v[3] = { { prefix, (size_t)n }, { (void *)s, len }, { (void *)",", 1 } };
    return tw_transport_writev(p->transport, v, 3);
}

int tw_netstring_receiver_set_max_length(tw_protocol *p, size_t max_length)
{
    assert(is_netstring(p));
    tw__netstring_init(p);
    if (max_length > ((size_t)-1) / 16)
        return TW_EINVAL;
    ns_of(p)->max_length = max_length;
    return 0;
}

bool tw_netstring_receiver_broken(const tw_protocol *p)
{
    assert(is_netstring(p));
    return ((const tw_netstring_receiver *)p)->broken;
}
