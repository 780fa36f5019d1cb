/* stateful.c — StatefulProtocol and StatefulStringProtocol
 * (twisted.protocols.stateful and basic). */
#include <assert.h>
#include <string.h>

#include "proto/basic_internal.h"

#define DOMAIN "stateful"

enum { MAX_ZERO_RUNS = 64 }; /* zero-byte states in a row before it is a loop */

static tw_stateful_protocol *sp_of(tw_protocol *p)
{
    return (tw_stateful_protocol *)p;
}

__attribute__((unused)) static inline bool is_stateful(const tw_protocol *p)
{
    return p->ops->data_received == tw__stateful_data_received;
}

void tw__stateful_init(tw_protocol *p)
{
    tw_stateful_protocol *sp = sp_of(p);
    if (sp->r.flags & TW__RX_INIT)
        return;
    const tw_stateful_protocol_ops *ops = (const tw_stateful_protocol_ops *)p->ops;
    sp->handler = ops->initial;
    sp->want = ops->initial_bytes;
    sp->r.flags |= TW__RX_INIT;
}

static void run(tw_protocol *p)
{
    tw_stateful_protocol *sp = sp_of(p);
    tw_receiver *r = &sp->r;

    for (;;) {
        if (tw__rx_absorb(r) < 0 || tw__rx_halted(r))
            return;
        if (!sp->handler) {
            if (tw_receiver_buffered(p) == 0)
                return;
            tw__rx_missing_hook(r, DOMAIN, "state handler");
            return;
        }
        size_t want = sp->want;
        const char *u;
        if (want == 0) {
            if (++sp->zero_runs > MAX_ZERO_RUNS) {
                tw__rx_violation(r, DOMAIN, "state handlers asked for 0 bytes %d times in a row",
                                 MAX_ZERO_RUNS);
                return;
            }
            u = "";
        } else {
            u = tw__rx_take(r, want);
            if (!u)
                return;
            sp->zero_runs = 0;
        }
        sp->handler(p, u, want);
    }
}

void tw__stateful_data_received(tw_protocol *p, const void *data, size_t len)
{
    tw_receiver *r = tw__rx(p);
    tw__stateful_init(p);
    if (!tw__rx_enter(r, data, len))
        return;
    sp_of(p)->zero_runs = 0;
    run(p);
    tw__rx_leave(r);
}

void tw_stateful_set_state(tw_protocol *p, tw_stateful_fn fn, size_t n)
{
    assert(is_stateful(p));
    tw__stateful_init(p);
    tw_stateful_protocol *sp = sp_of(p);
    sp->handler = fn;
    sp->want = n;
}

void tw_stateful_string_received(tw_protocol *p, const tw_string_state *states, size_t n,
                                 const char **state, const char *s, size_t len)
{
    const char *cur = *state ? *state : "init";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(states[i].name, cur) != 0)
            continue;
        const char *next = states[i].fn(p, s, len);
        if (next)
            *state = next;
        if (*state && strcmp(*state, "done") == 0 && p->transport)
            tw_transport_lose_connection(p->transport);
        return;
    }
    tw_log(TW_LOG_WARN, DOMAIN, "no handler for state \"%s\"; string ignored", cur);
}
