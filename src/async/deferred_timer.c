/* deferred_timer.c — deferreds and the clock: add_timeout and defer_later. */
#include <stdlib.h>

#include "async/async_internal.h"
#include "twirl/deferred.h"

/* ------------------------------------------------------------ add_timeout */

/* Owned by the entry it adds to d: freed when that entry is done with (d
 * fired through it, or d freed). The timer only borrows it, and is cancelled
 * before it goes. */
typedef struct timeout_ctx {
    tw__rlink link;
    tw_deferred *d; /* borrowed: d owns us */
    tw_timer timer;
    double seconds;
    bool timed_out;
    tw_timeout_fn on_timeout;
    void *on_timeout_arg;
} timeout_ctx;

static void timeout_fire(void *arg)
{
    timeout_ctx *c = arg;
    c->timer = TW_TIMER_NONE;
    tw__rlink_remove(&c->link);
    c->timed_out = true;
    tw_deferred_cancel(c->d); /* may free c: touch nothing after */
}

static tw_result timeout_result(tw_result *in, void *arg)
{
    timeout_ctx *c = arg;
    if (!c->timed_out)
        return tw_result_move(in);
    if (c->on_timeout)
        return c->on_timeout(in, c->seconds, c->on_timeout_arg);
    if (in->failure && tw_failure_is(in->failure, TW_DOMAIN, TW_ECANCELED)) {
        tw_failure *cancelled = in->failure;
        in->failure = NULL;
        return tw_err(tw_failure_wrap(cancelled, TW_DOMAIN, TW_ETIMEDOUT,
                                      "deferred timed out after %g seconds", c->seconds));
    }
    return tw_result_move(in);
}

static void timeout_free(void *arg)
{
    timeout_ctx *c = arg;
    if (tw_timer_active(c->timer))
        tw_timer_cancel(c->timer);
    tw__rlink_remove(&c->link);
    free(c);
}

static void timeout_reactor_gone(tw__rlink *l)
{
    timeout_ctx *c = (timeout_ctx *)l;
    c->timer = TW_TIMER_NONE; /* dropped with the reactor: never fires */
}

int tw_deferred_add_timeout_full(tw_deferred *d, double seconds, tw_reactor *r,
                                 tw_timeout_fn on_timeout, void *arg)
{
    timeout_ctx *c = malloc(sizeof *c);
    if (!c)
        return TW_ENOMEM;
    *c = (timeout_ctx){
        .d = d, .seconds = seconds, .on_timeout = on_timeout, .on_timeout_arg = arg
    };
    if (tw__rlink_add(r, &c->link, timeout_reactor_gone) < 0) {
        free(c);
        return TW_ENOMEM;
    }
    c->timer = tw_call_later(r, seconds, timeout_fire, c);
    if (!c->timer.slot) {
        tw__rlink_remove(&c->link);
        free(c);
        return TW_ENOMEM;
    }
    if (tw_deferred_add_callbacks_full(d, timeout_result, timeout_result, c, timeout_free) < 0) {
        tw_timer_cancel(c->timer);
        tw__rlink_remove(&c->link);
        free(c);
        return TW_ENOMEM;
    }
    return 0;
}

int tw_deferred_add_timeout(tw_deferred *d, double seconds, tw_reactor *r)
{
    return tw_deferred_add_timeout_full(d, seconds, r, NULL, NULL);
}

/* ------------------------------------------------------------ defer_later */

/* Holds a reference on d until the timer fires (or d is cancelled or fired
 * by someone else, or the reactor goes); freed when the entry it adds to d
 * is done with. */
typedef struct later_ctx {
    tw__rlink link;
    tw_deferred *d;
    tw_timer timer;
    tw_result_fn fn;
    void *arg;
} later_ctx;

static void later_fire(void *arg)
{
    later_ctx *c = arg;
    c->timer = TW_TIMER_NONE;
    tw__rlink_remove(&c->link);
    tw_deferred *d = c->d;
    c->d = NULL;
    /* As Twisted does: fire with nothing, and call fn as the first callback,
     * so its failure or deferred flows down the chain. */
    tw_deferred_callback(d, TW_VALUE_NONE); /* may free c */
    tw_deferred_unref(d);
}

static tw_result later_call(tw_result *in, void *arg)
{
    later_ctx *c = arg;
    return c->fn(c->arg);
}

static void later_cancel(tw_deferred *d, void *arg)
{
    later_ctx *c = arg;
    tw_timer_cancel(c->timer);
    c->timer = TW_TIMER_NONE;
    tw__rlink_remove(&c->link);
    c->d = NULL;
    tw_deferred_unref(d); /* ours; tw_deferred_cancel holds one while we run */
}

/* The entry on d is done with (it ran, or d was freed): whoever fired d,
 * the timer has nothing left to do. */
static void later_done(void *arg)
{
    later_ctx *c = arg;
    if (tw_timer_active(c->timer))
        tw_timer_cancel(c->timer);
    c->timer = TW_TIMER_NONE;
    tw__rlink_remove(&c->link);
    tw_deferred *d = c->d;
    c->d = NULL;
    free(c);
    tw_deferred_unref(d); /* fired by someone else: the reference the timer held */
}

static void later_reactor_gone(tw__rlink *l)
{
    later_ctx *c = (later_ctx *)l;
    c->timer = TW_TIMER_NONE;
    tw_deferred *d = c->d;
    c->d = NULL;
    /* Unfired, it can no longer fire: stop being its canceller, drop it. */
    tw__deferred_set_canceller(d, NULL, NULL);
    tw_deferred_unref(d); /* may free c */
}

tw_deferred *tw_defer_later(tw_reactor *r, double delay, tw_result_fn fn, void *arg)
{
    later_ctx *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = (later_ctx){ .fn = fn, .arg = arg };
    tw_deferred *d = tw_deferred_new(later_cancel, c);
    if (!d) {
        free(c);
        return NULL;
    }
    if (tw_deferred_add_callbacks_full(d, fn ? later_call : NULL, NULL, c, later_done) < 0) {
        free(c); /* cannot happen: the first entry fits inline */
        goto fail;
    }
    c->d = tw_deferred_ref(d);
    if (tw__rlink_add(r, &c->link, later_reactor_gone) < 0)
        goto fail_ref;
    c->timer = tw_call_later(r, delay, later_fire, c);
    if (!c->timer.slot) {
        tw__rlink_remove(&c->link);
        goto fail_ref;
    }
    return d;

fail_ref:
    tw_deferred_unref(c->d);
    c->d = NULL;
fail:
    tw__deferred_set_canceller(d, NULL, NULL);
    tw_deferred_unref(d); /* frees c through the entry */
    return NULL;
}
