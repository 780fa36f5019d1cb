/* looping_call.c — Twisted's LoopingCall, on the reactor's clock in whole
 * nanoseconds. */
#include <math.h>
#include <stdlib.h>

#include "async/async_internal.h"
#include "twirl/task.h"

struct tw_looping_call {
    tw__rlink link; /* while it has a reactor */
    tw_reactor *r;  /* NULL once the reactor is freed */
    unsigned refs;  /* the owner's, plus one per call in progress */
    bool running;   /* between start and stop */
    bool busy;      /* a call, or the deferred it returned, is in progress */
    bool freed;     /* the owner let go: finish quietly */
    bool with_count;
    bool run_at_start;
    bool have_last;
    tw_looping_fn fn;
    tw_looping_count_fn count_fn;
    void *arg;
    tw_timer timer;
    tw_deferred *deferred; /* the start deferred, until it fires */
    int64_t interval_ns;
    int64_t start_ns;
    int64_t last_ns; /* withCount: when the function was last called */
};

static void lc_unref(void *arg)
{
    tw_looping_call *lc = arg;
    if (--lc->refs > 0)
        return;
    tw__rlink_remove(&lc->link);
    free(lc);
}

static void lc_reactor_gone(tw__rlink *l)
{
    tw_looping_call *lc = (tw_looping_call *)l;
    lc->timer = TW_TIMER_NONE;
    lc->r = NULL;
}

static int lc_new(tw_reactor *r, tw_looping_fn fn, tw_looping_count_fn count_fn, void *arg,
                  tw_looping_call **out)
{
    tw_looping_call *lc = calloc(1, sizeof *lc);
    if (!lc)
        return TW_ENOMEM;
    lc->r = r;
    lc->refs = 1;
    lc->fn = fn;
    lc->count_fn = count_fn;
    lc->with_count = count_fn != NULL;
    lc->arg = arg;
    if (tw__rlink_add(r, &lc->link, lc_reactor_gone) < 0) {
        free(lc);
        return TW_ENOMEM;
    }
    *out = lc;
    return 0;
}

int tw_looping_call_new(tw_reactor *r, tw_looping_fn fn, void *arg, tw_looping_call **out)
{
    return lc_new(r, fn, NULL, arg, out);
}

int tw_looping_call_new_with_count(tw_reactor *r, tw_looping_count_fn fn, void *arg,
                                   tw_looping_call **out)
{
    return lc_new(r, NULL, fn, arg, out);
}

/* Fires the start deferred (once). */
static void lc_finish(tw_looping_call *lc, tw_failure *f)
{
    lc->running = false;
    tw_deferred *d = lc->deferred;
    lc->deferred = NULL;
    if (!d) {
        tw_failure_unref(f);
        return;
    }
    if (f)
        tw_deferred_errback(d, f);
    else
        tw_deferred_callback(d, tw_value_make(lc, NULL));
    tw_deferred_unref(d);
}

static void lc_tick(void *arg);

/* Schedules the next call at the first tick after `when` (Twisted's
 * _scheduleFrom): a tick landing exactly on `when` counts as missed. */
static void lc_schedule_from(tw_looping_call *lc, int64_t when)
{
    if (!lc->r)
        return; /* the reactor is gone: no more ticks */
    int64_t delay = 0;
    if (lc->interval_ns > 0) {
        int64_t running_for = when - lc->start_ns;
        int64_t into = running_for % lc->interval_ns;
        if (into < 0)
            into += lc->interval_ns;
        delay = lc->interval_ns - into;
    }
    lc->timer = tw_call_later(lc->r, (double)delay / 1e9, lc_tick, lc);
    if (!lc->timer.slot)
        lc_finish(lc, tw_failure_from_code(TW_ENOMEM));
}

/* The call (or its deferred) finished: schedule the next, or report. */
static void lc_done(tw_looping_call *lc, tw_failure *f)
{
    lc->busy = false;
    if (lc->freed) {
        tw_failure_unref(f);
        return;
    }
    if (f)
        lc_finish(lc, f);
    else if (lc->running)
        lc_schedule_from(lc, tw_reactor_now_ns(lc->r));
    else
        lc_finish(lc, NULL); /* stopped while the call was in progress */
}

static tw_result lc_call_ok(tw_result *in, void *arg)
{
    lc_done(arg, NULL);
    return TW_RESULT_NONE; /* the value is freed with `in` */
}

static tw_result lc_call_failed(tw_result *in, void *arg)
{
    tw_looping_call *lc = arg;
    if (lc->freed)
        return tw_result_move(in); /* nobody to tell: leave it on its chain */
    tw_failure *f = in->failure;
    in->failure = NULL;
    lc_done(lc, f);
    return TW_RESULT_NONE;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static tw_result lc_invoke(tw_looping_call *lc)
{
    if (!lc->with_count)
        return lc->fn(lc->arg);
    int64_t now = lc->r ? tw_reactor_now_ns(lc->r) : lc->last_ns;
    uint64_t count = 1;
    if (lc->interval_ns > 0) {
        int64_t last = lc->last_ns;
        if (!lc->have_last)
            last = lc->start_ns - (lc->run_at_start ? lc->interval_ns : 0);
        int64_t n = floor_div(now - lc->start_ns, lc->interval_ns) -
                    floor_div(last - lc->start_ns, lc->interval_ns);
        if (n <= 0)
            return TW_RESULT_NONE; /* no whole interval yet: call nothing */
        count = (uint64_t)n;
    }
    lc->last_ns = now;
    lc->have_last = true;
    return lc->count_fn(count, lc->arg);
}

static void lc_call(tw_looping_call *lc)
{
    lc->timer = TW_TIMER_NONE;
    lc->busy = true;
    lc->refs++; /* the function may free us */
    tw_result r = lc_invoke(lc);
    if (r.deferred) {
        tw_deferred *d = r.deferred;
        r.deferred = NULL;
        tw_result_free(&r);
        lc->refs++; /* the entry's */
        if (tw_deferred_add_callbacks_full(d, lc_call_ok, lc_call_failed, lc, lc_unref) < 0) {
            lc->refs--;
            lc_done(lc, tw_failure_from_code(TW_ENOMEM));
        }
        tw_deferred_unref(d);
    } else if (r.failure) {
        tw_failure *f = r.failure;
        r.failure = NULL;
        tw_result_free(&r);
        if (lc->freed) /* nobody to tell */
            tw_failure_log(f, TW_LOG_ERROR, "Unhandled error in a freed looping call:");
        lc_done(lc, f);
    } else {
        tw_result_free(&r);
        lc_done(lc, NULL);
    }
    lc_unref(lc);
}

static void lc_tick(void *arg)
{
    lc_call(arg);
}

int tw_looping_call_start(tw_looping_call *lc, double interval, bool now, tw_deferred **out)
{
    if (!(interval >= 0) || !lc->r)
        return TW_EINVAL;
    if (lc->running || lc->busy)
        return TW_EBUSY;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    if (!d)
        return TW_ENOMEM;
    if (out)
        *out = tw_deferred_ref(d);
    lc->deferred = d;
    lc->running = true;
    lc->have_last = false;
    lc->interval_ns = interval > 9.0e9 ? (int64_t)9.0e18 : (int64_t)llround(interval * 1e9);
    lc->start_ns = tw_reactor_now_ns(lc->r);
    lc->run_at_start = now;
    if (now)
        lc_call(lc);
    else
        lc_schedule_from(lc, lc->start_ns);
    return 0;
}

int tw_looping_call_stop(tw_looping_call *lc)
{
    if (!lc->running)
        return TW_EINVAL;
    lc->running = false;
    if (lc->busy)
        return 0; /* lc_done fires the start deferred */
    if (lc->timer.slot)
        tw_timer_cancel(lc->timer);
    lc->timer = TW_TIMER_NONE;
    lc_finish(lc, NULL);
    return 0;
}

int tw_looping_call_reset(tw_looping_call *lc)
{
    if (!lc->running)
        return TW_EINVAL;
    if (lc->busy || !lc->r)
        return 0;
    if (lc->timer.slot)
        tw_timer_cancel(lc->timer);
    lc->timer = TW_TIMER_NONE;
    lc->start_ns = tw_reactor_now_ns(lc->r);
    lc_schedule_from(lc, lc->start_ns);
    return 0;
}

bool tw_looping_call_running(const tw_looping_call *lc)
{
    return lc->running;
}

double tw_looping_call_interval(const tw_looping_call *lc)
{
    return (double)lc->interval_ns / 1e9;
}

void tw_looping_call_free(tw_looping_call *lc)
{
    if (!lc)
        return;
    if (lc->timer.slot)
        tw_timer_cancel(lc->timer);
    lc->timer = TW_TIMER_NONE;
    lc->freed = true;
    lc_finish(lc, NULL); /* fires a pending start deferred while lc is still valid */
    tw__rlink_remove(&lc->link);
    lc_unref(lc);
}
