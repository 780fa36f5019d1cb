/* policies_timeout.c — TimeoutMixin and TimeoutFactory
 * (twisted.protocols.policies), on the reactor's timers: a reactor on the
 * fake clock makes them deterministic in tests. */
#include <stdlib.h>

#include "proto/policies_internal.h"
#include "twirl/log.h"

/* ============================================================ TimeoutMixin */

void tw_timeout_mixin_init(tw_timeout_mixin *m, tw_protocol *p, tw_reactor *r,
                           void (*timeout_fn)(tw_protocol *p))
{
    m->protocol = p;
    m->reactor = r;
    m->timeout_connection = timeout_fn;
    m->timeout = 0;
    m->call = TW_TIMER_NONE;
}

static void mixin_fired(void *arg)
{
    tw_timeout_mixin *m = arg;
    m->call = TW_TIMER_NONE;
    if (m->timeout_connection)
        m->timeout_connection(m->protocol);
    else if (m->protocol->transport)
        tw_transport_lose_connection(m->protocol->transport);
}

double tw_timeout_mixin_set_timeout(tw_timeout_mixin *m, double seconds)
{
    double prev = m->timeout;
    if (!(seconds > 0)) /* NaN too */
        seconds = 0;
    m->timeout = seconds;
    if (tw_timer_active(m->call)) {
        if (seconds == 0) {
            tw_timer_cancel(m->call);
            m->call = TW_TIMER_NONE;
        } else {
            tw_timer_reset(m->call, seconds);
        }
        return prev;
    }
    /* No timer, or one fired or cancelled elsewhere: arm afresh. */
    m->call = TW_TIMER_NONE;
    if (seconds == 0)
        return prev;
    if (!m->reactor && m->protocol && m->protocol->transport)
        m->reactor = m->protocol->transport->reactor;
    if (!m->reactor)
        return prev;
    m->call = tw_call_later(m->reactor, seconds, mixin_fired, m);
    if (!tw_timer_active(m->call))
        tw_log(TW_LOG_ERROR, "policies", "out of memory arming a %.3f s timeout", seconds);
    return prev;
}

void tw_timeout_mixin_reset_timeout(tw_timeout_mixin *m)
{
    if (m->timeout > 0 && tw_timer_active(m->call))
        tw_timer_reset(m->call, m->timeout);
}

void tw_timeout_mixin_cancel(tw_timeout_mixin *m)
{
    tw_timeout_mixin_set_timeout(m, 0);
}

/* ============================================================ TimeoutFactory */

typedef struct timeout_factory {
    tw__wfactory wf;
    double timeout;
} timeout_factory;

typedef struct timeout_wrapper {
    tw_protocol_wrapper w;
    tw_timeout_mixin to;
} timeout_wrapper;

static void timeout_fire(tw_protocol *p)
{
    tw_protocol_wrapper_lose_connection((tw_protocol_wrapper *)p);
}

static void to_made(tw_protocol_wrapper *w)
{
    timeout_wrapper *tw = (timeout_wrapper *)w;
    timeout_factory *tf = (timeout_factory *)tw__wf_of(w);
    tw_timeout_mixin_init(&tw->to, &w->base, w->base.transport->reactor, timeout_fire);
    tw_timeout_mixin_set_timeout(&tw->to, tf->timeout);
}

static void to_data(tw_protocol_wrapper *w, const void *data, size_t len)
{
    tw_timeout_mixin_reset_timeout(&((timeout_wrapper *)w)->to);
}

static void to_wrote(tw_protocol_wrapper *w, size_t len)
{
    tw_timeout_mixin_reset_timeout(&((timeout_wrapper *)w)->to);
}

static void to_lost(tw_protocol_wrapper *w, const tw_failure *reason)
{
    tw_timeout_mixin_cancel(&((timeout_wrapper *)w)->to);
}

static void to_destroy(tw_protocol_wrapper *w)
{
    timeout_wrapper *tw = (timeout_wrapper *)w;
    if (tw->to.protocol)
        tw_timeout_mixin_cancel(&tw->to);
}

static const tw_wrapper_ops timeout_hooks = {
    .size = sizeof(timeout_wrapper),
    .connection_made = to_made,
    .data_received = to_data,
    .wrote = to_wrote,
    .connection_lost = to_lost,
    .destroy = to_destroy,
};

static const tw_factory_ops timeout_factory_ops = TW__WRAPPING_FACTORY_OPS(tw__wf_plain_build);

tw_factory *tw_timeout_factory_new(tw_factory *wrapped, double timeout)
{
    timeout_factory *tf = (timeout_factory *)tw__wf_alloc(sizeof *tf, wrapped, &timeout_hooks,
                                                          &timeout_factory_ops, TW__WF_TIMEOUT);
    if (!tf)
        return NULL;
    tf->timeout = timeout > 0 ? timeout : 0;
    return &tf->wf.base;
}

int tw_timeout_protocol_set_timeout(tw_transport *t, double seconds, double *previous)
{
    for (tw_protocol_wrapper *w = tw_protocol_wrapper_of(t); w;
         w = tw_protocol_wrapper_of(w->base.transport)) {
        if (tw__wf_of(w)->kind == TW__WF_TIMEOUT) {
            double prev = tw_timeout_mixin_set_timeout(&((timeout_wrapper *)w)->to, seconds);
            if (previous)
                *previous = prev;
            return 0;
        }
    }
    return TW_ENOTFOUND;
}
