/* ctest: label=unit timeout=60 backends=once */
/* LoopingCall on the fake clock (acceptance items 83-85). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/task.h"

static int error_logs;

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR)
        error_logs++;
}

static tw_reactor *fake_reactor(void)
{
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    return r;
}

static int setup(void **state)
{
    error_logs = 0;
    tw_log_set_handler(capture, NULL);
    *state = fake_reactor();
    return 0;
}

static int teardown(void **state)
{
    tw_reactor *r = *state;
    assert_int_equal(tw_reactor_timer_count(r), 0); /* no timers remain */
    tw_reactor_free(r);
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(error_logs, 0);
    return 0;
}

typedef struct got {
    int calls;
    tw_result r;
} got;

static tw_result cb_keep(tw_result *in, void *arg)
{
    got *g = arg;
    g->calls++;
    tw_result_free(&g->r);
    g->r = tw_result_move(in);
    return TW_RESULT_NONE;
}

/* What the looped function sees and does. */
typedef struct ticker {
    tw_reactor *r;
    tw_looping_call *lc;
    double times[64];
    uint64_t counts[64];
    int n;
    double advance_by; /* simulate a call that takes this long */
    int stop_after;    /* stop from inside after this many calls (0: never) */
    int fail_at;       /* return a failure on this call (1-based; 0: never) */
    tw_deferred *pending;
    int return_deferred;
} ticker;

static tw_result tick(void *arg)
{
    ticker *t = arg;
    t->times[t->n++] = tw_reactor_now(t->r);
    if (t->advance_by > 0)
        tw_clock_advance(t->r, t->advance_by);
    if (t->stop_after && t->n == t->stop_after)
        tw_looping_call_stop(t->lc);
    if (t->fail_at && t->n == t->fail_at)
        return tw_err(tw_failure_new("t", 1, "tick failed"));
    if (t->return_deferred) {
        t->pending = tw_deferred_new(NULL, NULL);
        return tw_chain(tw_deferred_ref(t->pending));
    }
    return tw_ok_int(t->n);
}

static tw_result tick_count(uint64_t count, void *arg)
{
    ticker *t = arg;
    t->times[t->n] = tw_reactor_now(t->r);
    t->counts[t->n++] = count;
    if (t->stop_after && t->n == t->stop_after)
        tw_looping_call_stop(t->lc);
    return TW_RESULT_NONE;
}

/* ------------------------------------------------------------ 83 */

/* Calls at once, then every interval; stop fires the start deferred with
 * the looping call itself. */
static void start_now_and_stop(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    assert_int_equal(tw_looping_call_new(r, tick, &t, &t.lc), 0);
    tw_deferred *d;
    assert_int_equal(tw_looping_call_start(t.lc, 1.0, true, &d), 0);
    assert_true(tw_looping_call_running(t.lc));
    assert_int_equal(tw_looping_call_start(t.lc, 1.0, true, NULL), TW_EBUSY);
    assert_int_equal(t.n, 1);
    tw_clock_advance(r, 1);
    tw_clock_advance(r, 1);
    assert_int_equal(t.n, 3);
    assert_true(t.times[1] == 1.0 && t.times[2] == 2.0);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    assert_int_equal(g.calls, 0);
    assert_int_equal(tw_looping_call_stop(t.lc), 0);
    assert_int_equal(g.calls, 1);
    assert_ptr_equal(g.r.value.ptr, t.lc);
    assert_int_equal(tw_looping_call_stop(t.lc), TW_EINVAL);
    tw_clock_advance(r, 10);
    assert_int_equal(t.n, 3);
    tw_deferred_unref(d);
    tw_looping_call_free(t.lc);
}

/* now=false waits one interval; stopping before the first call means no
 * call at all. */
static void start_later_and_stop_before_first_call(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_looping_call_start(t.lc, 2.0, false, NULL);
    assert_int_equal(t.n, 0);
    tw_clock_advance(r, 1.999);
    assert_int_equal(t.n, 0);
    tw_clock_advance(r, 0.001);
    assert_int_equal(t.n, 1);
    tw_looping_call_stop(t.lc);

    ticker t2 = { .r = r };
    tw_looping_call_new(r, tick, &t2, &t2.lc);
    tw_looping_call_start(t2.lc, 1.0, false, NULL);
    tw_looping_call_stop(t2.lc);
    tw_clock_advance(r, 5);
    assert_int_equal(t2.n, 0);
    tw_looping_call_free(t.lc);
    tw_looping_call_free(t2.lc);
}

static void negative_interval_refused(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new(r, tick, &t, &t.lc);
    assert_int_equal(tw_looping_call_start(t.lc, -1, true, NULL), TW_EINVAL);
    assert_false(tw_looping_call_running(t.lc));
    assert_int_equal(t.n, 0);
    tw_looping_call_free(t.lc);
}

/* reset restarts the interval from now. */
static void reset_restarts_interval(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_looping_call_start(t.lc, 2.0, false, NULL);
    tw_clock_advance(r, 1);
    assert_int_equal(tw_looping_call_reset(t.lc), 0);
    tw_clock_advance(r, 1);
    assert_int_equal(t.n, 0);
    tw_clock_advance(r, 1);
    assert_int_equal(t.n, 1);
    assert_true(t.times[0] == 3.0);
    tw_clock_advance(r, 2);
    assert_int_equal(t.n, 2);
    tw_looping_call_stop(t.lc);
    assert_int_equal(tw_looping_call_reset(t.lc), TW_EINVAL);
    tw_looping_call_free(t.lc);
}

/* Stopped from inside the function: no further call; the deferred fires. */
static void stop_from_inside(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r, .stop_after = 2 };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_deferred *d;
    tw_looping_call_start(t.lc, 1, true, &d);
    tw_clock_advance(r, 1);
    assert_true(tw_deferred_has_result(d));
    tw_clock_advance(r, 5);
    assert_int_equal(t.n, 2);
    tw_deferred_unref(d);
    tw_looping_call_free(t.lc);
}

/* ------------------------------------------------------------ 84 */

/* A call that overruns several intervals: the ticks it missed are skipped,
 * including one landing exactly on "now" (test_callbackTimeSkips). */
static void callback_time_skips(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r, .advance_by = 2 };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_looping_call_start(t.lc, 0.5, true, NULL);
    assert_int_equal(t.n, 1);
    assert_true(t.times[0] == 0);
    assert_true(tw_reactor_now(r) == 2.0);
    tw_clock_advance(r, 0); /* 2 is now, not the future: skipped */
    assert_int_equal(t.n, 1);
    t.advance_by = 1;
    tw_clock_advance(r, 0.5);
    assert_int_equal(t.n, 2);
    assert_true(t.times[1] == 2.5);
    assert_true(tw_reactor_now(r) == 3.5);
    tw_clock_advance(r, 0);
    assert_int_equal(t.n, 2);
    t.advance_by = 0;
    tw_clock_advance(r, 0.5);
    assert_int_equal(t.n, 3);
    assert_true(t.times[2] == 4.0);
    tw_looping_call_stop(t.lc);
    tw_looping_call_free(t.lc);
}

/* The loop itself late (test_reactorTimeSkips). */
static void reactor_time_skips(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_looping_call_start(t.lc, 0.5, true, NULL);
    tw_clock_advance(r, 2);
    assert_int_equal(t.n, 2);
    assert_true(t.times[1] == 2.0);
    tw_clock_advance(r, 1);
    assert_int_equal(t.n, 3);
    assert_true(t.times[2] == 3.0);
    tw_clock_advance(r, 0);
    assert_int_equal(t.n, 3);
    tw_looping_call_stop(t.lc);
    tw_looping_call_free(t.lc);
}

/* withCount reports how many intervals went by (test_reactorTimeCountSkips). */
static void with_count_reports_skips(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new_with_count(r, tick_count, &t, &t.lc);
    const double interval = 0.5, delay = 0.01;
    tw_looping_call_start(t.lc, interval, true, NULL);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.counts[0], 1);
    tw_clock_advance(r, interval + delay);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.counts[1], 1);
    tw_clock_advance(r, interval * 4 + delay);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.counts[2], 4);
    tw_clock_advance(r, 0);
    assert_int_equal(t.n, 3);
    tw_looping_call_stop(t.lc);
    tw_looping_call_free(t.lc);
}

/* withCount with now=false counts the first interval as one. */
static void with_count_not_now(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new_with_count(r, tick_count, &t, &t.lc);
    tw_looping_call_start(t.lc, 1, false, NULL);
    tw_clock_advance(r, 3.5); /* one late call: three intervals went by */
    assert_int_equal(t.n, 1);
    assert_int_equal(t.counts[0], 3);
    tw_clock_advance(r, 0.5);
    assert_int_equal(t.counts[1], 1);
    tw_looping_call_stop(t.lc);
    tw_looping_call_free(t.lc);
}

/* Never 0, also where float rounding would make a tick land a hair early
 * (test_withCountFloatingPointBoundary). */
static void with_count_float_boundary(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new_with_count(r, tick_count, &t, &t.lc);
    const int count = 10;
    const double interval = 1.0 / count;
    tw_looping_call_start(t.lc, interval, false, NULL);
    for (int i = 0; i < count; i++)
        tw_clock_advance(r, interval);
    uint64_t sum = 0;
    for (int i = 0; i < t.n; i++) {
        assert_true(t.counts[i] >= 1);
        sum += t.counts[i];
    }
    assert_int_equal(sum, count);
    assert_true(tw_reactor_now(r) == 1.0);
    tw_looping_call_stop(t.lc);
    tw_looping_call_free(t.lc);
}

/* Interval 0: as often as the clock turns; counts are always 1. */
static void with_count_interval_zero(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r, .stop_after = 5 };
    tw_looping_call_new_with_count(r, tick_count, &t, &t.lc);
    tw_deferred *d;
    tw_looping_call_start(t.lc, 0, false, &d);
    tw_clock_advance(r, 0);
    assert_int_equal(t.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(t.counts[i], 1);
    assert_true(tw_deferred_has_result(d));
    tw_deferred_unref(d);
    tw_looping_call_free(t.lc);
}

/* ------------------------------------------------------------ 85 */

/* A returned deferred is waited for before the next call is scheduled. */
static void waits_for_returned_deferred(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r, .return_deferred = 1 };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_looping_call_start(t.lc, 1, true, NULL);
    assert_int_equal(t.n, 1);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 5);
    assert_int_equal(t.n, 1);
    tw_deferred *p = t.pending;
    tw_deferred_callback(p, tw_value_int(1)); /* at 5: next tick is 6 */
    tw_deferred_unref(p);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_clock_advance(r, 1);
    assert_int_equal(t.n, 2);
    assert_true(t.times[1] == 6.0);
    /* Stopping while a returned deferred is pending fires the start
     * deferred once it completes. */
    tw_looping_call_stop(t.lc);
    p = t.pending;
    tw_deferred_callback(p, tw_value_int(2));
    tw_deferred_unref(p);
    assert_int_equal(t.n, 2);
    tw_looping_call_free(t.lc);
}

/* A failure, returned or from the deferred, stops the loop and fails the
 * start deferred; no timers remain. */
static void failure_stops_loop(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r, .fail_at = 2 };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_deferred *d;
    tw_looping_call_start(t.lc, 1, true, &d);
    tw_clock_advance(r, 1);
    assert_false(tw_looping_call_running(t.lc));
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, "t", 1));
    tw_result_free(&g.r);
    tw_clock_advance(r, 5);
    assert_int_equal(t.n, 2);
    tw_deferred_unref(d);

    ticker t2 = { .r = r, .return_deferred = 1 };
    t2.lc = t.lc;
    tw_looping_call_free(t.lc);
    tw_looping_call_new(r, tick, &t2, &t2.lc);
    tw_looping_call_start(t2.lc, 1, true, &d);
    tw_deferred *p = t2.pending;
    tw_deferred_errback(p, tw_failure_new("t", 2, "deferred failed"));
    tw_deferred_unref(p);
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, "t", 2));
    tw_result_free(&g.r);
    tw_deferred_unref(d);
    /* It may be started again. */
    t2.return_deferred = 0;
    assert_int_equal(tw_looping_call_start(t2.lc, 1, true, NULL), 0);
    tw_looping_call_stop(t2.lc);
    tw_looping_call_free(t2.lc);
}

/* Freed while running (from outside, or from inside its function) and with
 * the reactor gone first: nothing leaks, nothing is used after free. */
static tw_result tick_free_self(void *arg)
{
    ticker *t = arg;
    t->n++;
    tw_looping_call_free(t->lc);
    return TW_RESULT_NONE;
}

static void free_while_running(void **state)
{
    tw_reactor *r = *state;
    ticker t = { .r = r };
    tw_looping_call_new(r, tick, &t, &t.lc);
    tw_deferred *d;
    tw_looping_call_start(t.lc, 1, true, &d);
    tw_looping_call_free(t.lc);
    assert_true(tw_deferred_has_result(d));
    tw_deferred_unref(d);

    ticker t2 = { .r = r };
    tw_looping_call_new(r, tick_free_self, &t2, &t2.lc);
    tw_looping_call_start(t2.lc, 1, false, NULL);
    tw_clock_advance(r, 1);
    assert_int_equal(t2.n, 1);
    tw_clock_advance(r, 3);
    assert_int_equal(t2.n, 1);

    /* The reactor freed under a running looping call. */
    tw_reactor *r2 = fake_reactor();
    ticker t3 = { .r = r2 };
    tw_looping_call_new(r2, tick, &t3, &t3.lc);
    tw_looping_call_start(t3.lc, 1, true, &d);
    tw_reactor_free(r2);
    assert_int_equal(tw_looping_call_stop(t3.lc), 0);
    assert_true(tw_deferred_has_result(d));
    tw_deferred_unref(d);
    tw_looping_call_free(t3.lc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(start_now_and_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(start_later_and_stop_before_first_call, setup, teardown),
        cmocka_unit_test_setup_teardown(negative_interval_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(reset_restarts_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_from_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(callback_time_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(reactor_time_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(with_count_reports_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(with_count_not_now, setup, teardown),
        cmocka_unit_test_setup_teardown(with_count_float_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(with_count_interval_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(waits_for_returned_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(failure_stops_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(free_while_running, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
