/* ctest: label=unit timeout=60 backends=once */
/* Deferreds on the clock: add_timeout (item 58), defer_later (87), shutdown
 * triggers returning deferreds, and a reactor freed while deferreds and
 * timers are pending. Fake clock only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/deferred.h"
#include "twirl/reactor.h"

static int live_values;
static int error_logs;
static char last_log[4096];

static void free_counted(void *p)
{
    live_values--;
    free(p);
}

static tw_value heap_int(int n)
{
    int *p = malloc(sizeof *p);
    *p = n;
    live_values++;
    return tw_value_make(p, free_counted);
}

static int int_of(const tw_result *r)
{
    return r->value.free == free_counted ? *(int *)r->value.ptr : (int)tw_value_as_int(r->value);
}

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR)
        error_logs++;
    snprintf(last_log, sizeof last_log, "[%s] %s", domain, message);
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
    live_values = 0;
    error_logs = 0;
    tw_log_set_handler(capture, NULL);
    *state = fake_reactor();
    return 0;
}

static int teardown(void **state)
{
    tw_reactor *r = *state;
    tw_reactor_free(r);
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(live_values, 0);
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

/* ------------------------------------------------------------ 58 */

/* Times out: cancelled, and the cancelled failure becomes timed out. */
static void timeout_converts_cancel(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    assert_int_equal(tw_deferred_add_timeout(d, 10, r), 0);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_clock_advance(r, 9.999);
    assert_int_equal(g.calls, 0);
    tw_clock_advance(r, 0.001);
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ETIMEDOUT));
    assert_true(tw_failure_is(tw_failure_cause(g.r.failure), TW_DOMAIN, TW_ECANCELED));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_result_free(&g.r);
    /* The producer's late firing is swallowed (no canceller). */
    assert_int_equal(tw_deferred_callback(d, heap_int(1)), 0);
    tw_deferred_unref(d);
}

/* A result before the time stops the timer and touches nothing else. */
static void result_before_timeout_stops_timer(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(d, 10, r);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 5);
    tw_deferred_callback(d, heap_int(3));
    assert_int_equal(int_of(&g.r), 3);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 10);
    assert_int_equal(g.calls, 1);
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(d, 10, r);
    tw_deferred_errback(d, tw_failure_new("t", 1, "early"));
    tw_deferred_add_errback(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, "t", 1));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

static void value_canceller(tw_deferred *d, void *arg)
{
    tw_deferred_callback(d, heap_int(5));
}

static tw_result eb_cancel_to_value(tw_result *in, void *arg)
{
    if (tw_failure_is(in->failure, TW_DOMAIN, TW_ECANCELED))
        return tw_ok_value(heap_int(6));
    return tw_result_move(in);
}

/* A canceller or an earlier errback that turns the cancellation into a
 * value: that value stands. */
static void canceller_value_stands(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *d = tw_deferred_new(value_canceller, NULL);
    tw_deferred_add_timeout(d, 1, r);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 1);
    assert_int_equal(int_of(&g.r), 5);
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_errback(d, eb_cancel_to_value, NULL);
    tw_deferred_add_timeout(d, 1, r);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 1);
    assert_int_equal(int_of(&g.r), 6);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

static tw_result on_timeout_custom(tw_result *in, double seconds, void *arg)
{
    assert_true(seconds == 2.5);
    *(int *)arg += 1;
    return tw_ok_value(heap_int(100));
}

/* onTimeoutCancel may replace the outcome, even with a success. */
static void custom_on_timeout(void **state)
{
    tw_reactor *r = *state;
    int calls = 0;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout_full(d, 2.5, r, on_timeout_custom, &calls);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 3);
    assert_int_equal(calls, 1);
    assert_int_equal(int_of(&g.r), 100);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

/* A manual cancel before the time keeps the cancelled failure and removes
 * the timer. */
static void manual_cancel_keeps_cancelled(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(d, 10, r);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

static tw_result cb_return_deferred(tw_result *in, void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

static int inner_cancels;

static void counting_canceller(tw_deferred *d, void *arg)
{
    inner_cancels++;
}

/* A deferred waiting on an inner when the time comes: the inner is
 * cancelled, and the outcome is still "timed out". A result in time does not
 * touch the inner. */
static void timeout_cancels_inner(void **state)
{
    tw_reactor *r = *state;
    inner_cancels = 0;
    tw_deferred *inner = tw_deferred_new(counting_canceller, NULL);
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_return_deferred, inner);
    tw_deferred_add_timeout(d, 1, r);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_callback(d, TW_VALUE_NONE);
    tw_clock_advance(r, 1);
    assert_int_equal(inner_cancels, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ETIMEDOUT));
    tw_result_free(&g.r);
    tw_deferred_unref(inner);
    tw_deferred_unref(d);

    inner_cancels = 0;
    inner = tw_deferred_new(counting_canceller, NULL);
    d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(d, 1, r);
    tw_deferred_callback(d, heap_int(1));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_deferred_unref(inner);
    tw_deferred_unref(d);
    assert_int_equal(inner_cancels, 0);
}

/* A deferred freed unfired stops its timer; one with its result already
 * there never starts one. */
static void timeout_forgotten_with_its_deferred(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(d, 1, r);
    assert_int_equal(tw_reactor_timer_count(r), 1);
    tw_deferred_unref(d);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 2);

    d = tw_succeed(heap_int(1));
    assert_int_equal(tw_deferred_add_timeout(d, 1, r), 0);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ 87 */

static tw_result later_value(void *arg)
{
    ++*(int *)arg;
    return tw_ok_value(heap_int(21));
}

static tw_result later_fail(void *arg)
{
    return tw_err(tw_failure_new("t", 3, "raised later"));
}

/* 87: fires with the function's result after the delay. */
static void defer_later_fires_with_result(void **state)
{
    tw_reactor *r = *state;
    int calls = 0;
    got g = { 0 };
    tw_deferred *d = tw_defer_later(r, 2, later_value, &calls);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_unref(d); /* the reactor keeps it */
    tw_clock_advance(r, 1.5);
    assert_int_equal(calls, 0);
    tw_clock_advance(r, 0.5);
    assert_int_equal(calls, 1);
    assert_int_equal(int_of(&g.r), 21);
    tw_result_free(&g.r);

    /* A failure from fn fails it. */
    d = tw_defer_later(r, 1, later_fail, NULL);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 1);
    assert_true(tw_failure_is(g.r.failure, "t", 3));
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    /* No function: fires with nothing. */
    d = tw_defer_later(r, 0, NULL, NULL);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_clock_advance(r, 0);
    assert_int_equal(g.calls, 3);
    assert_null(g.r.value.ptr);
    assert_null(g.r.failure);
    tw_deferred_unref(d);
}

/* Cancelling prevents the call and fails with cancelled. */
static void defer_later_cancel_prevents_call(void **state)
{
    tw_reactor *r = *state;
    int calls = 0;
    got g = { 0 };
    tw_deferred *d = tw_defer_later(r, 2, later_value, &calls);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 5);
    assert_int_equal(calls, 0);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

/* Fired by someone else before the time: fn runs then (as the first
 * callback, as in Twisted), and the timer is forgotten. */
static void defer_later_fired_early(void **state)
{
    tw_reactor *r = *state;
    int calls = 0;
    got g = { 0 };
    tw_deferred *d = tw_defer_later(r, 2, later_value, &calls);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_callback(d, heap_int(1));
    assert_int_equal(calls, 1);
    assert_int_equal(int_of(&g.r), 21);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 5);
    assert_int_equal(calls, 1);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

static tw_result later_returns_deferred(void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

/* fn may return a deferred: the result is its eventual one. */
static void defer_later_chains(void **state)
{
    tw_reactor *r = *state;
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    got g = { 0 };
    tw_deferred *d = tw_defer_later(r, 1, later_returns_deferred, inner);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_unref(d);
    tw_clock_advance(r, 1);
    assert_int_equal(g.calls, 0);
    tw_deferred_callback(inner, heap_int(8));
    assert_int_equal(int_of(&g.r), 8);
    tw_result_free(&g.r);
    tw_deferred_unref(inner);
}

/* ------------------------------------------------------------ reactor freed */

static int arg_frees;

static void count_arg_free(void *arg)
{
    arg_frees++;
}

static tw_result cb_never(tw_result *in, void *arg)
{
    fail_msg("callback ran after its reactor was freed");
    return TW_RESULT_NONE;
}

/* A reactor freed with pending defer_later, timeouts and deferreds: nothing
 * fires, nothing leaks (valgrind checks), nothing is used after free. */
static void reactor_freed_with_pending_work(void **state)
{
    tw_reactor *r = fake_reactor();
    arg_frees = 0;
    int calls = 0;
    tw_deferred *kept = tw_defer_later(r, 5, later_value, &calls);
    got gk = { 0 };
    tw_deferred_add_callbacks_full(kept, cb_never, cb_keep, &gk, count_arg_free);
    tw_deferred *dropped = tw_defer_later(r, 5, later_value, &calls);
    tw_deferred_add_callbacks_full(dropped, cb_never, cb_never, NULL, count_arg_free);
    tw_deferred_unref(dropped); /* only the reactor holds it */
    tw_deferred *timed = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(timed, 3, r);
    tw_deferred_callback(timed, heap_int(1)); /* one fired in time */
    tw_deferred *timed2 = tw_deferred_new(NULL, NULL);
    tw_deferred_add_timeout(timed2, 3, r);
    tw_reactor_free(r);
    assert_int_equal(calls, 0);
    assert_int_equal(arg_frees, 1); /* dropped's callbacks went with it */
    /* What the caller still holds stays usable. */
    tw_deferred_cancel(kept);
    assert_int_equal(arg_frees, 2);
    assert_true(tw_failure_is(gk.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&gk.r);
    got g = { 0 };
    tw_deferred_callback(timed2, heap_int(2)); /* its timeout was forgotten */
    tw_deferred_add_both(timed2, cb_keep, &g);
    assert_int_equal(int_of(&g.r), 2);
    tw_result_free(&g.r);
    tw_deferred_unref(timed);
    tw_deferred_unref(timed2);
    tw_deferred_unref(kept);
    assert_int_equal(arg_frees, 2);
}

/* ------------------------------------------------------------ triggers */

typedef struct shut {
    tw_deferred *d;
    int before, during;
} shut;

static void fire_later(void *arg)
{
    shut *s = arg;
    tw_deferred_callback(s->d, heap_int(1));
    tw_deferred_unref(s->d);
    s->d = NULL;
}

static tw_deferred *before_trigger(tw_reactor *r, void *arg)
{
    shut *s = arg;
    s->before++;
    s->d = tw_deferred_new(NULL, NULL);
    tw_call_later(r, 0, fire_later, s); /* fires on the next loop turn */
    return tw_deferred_ref(s->d);
}

static void during_trigger(tw_reactor *r, void *arg)
{
    shut *s = arg;
    /* The before-phase deferred must have fired first. */
    assert_null(s->d);
    s->during++;
}

static void stop_now(void *arg)
{
    tw_reactor_stop(arg);
}

/* A before-shutdown trigger's deferred holds the shutdown until it fires. */
static void deferred_trigger_holds_shutdown(void **state)
{
    tw_reactor *r = *state;
    shut s = { 0 };
    tw_deferred_trigger *t = NULL;
    assert_int_equal(tw_reactor_add_deferred_trigger(r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN,
                                                     before_trigger, &s, &t),
                     0);
    assert_int_equal(
        tw_reactor_add_trigger(r, TW_PHASE_DURING, TW_EVENT_SHUTDOWN, during_trigger, &s, NULL), 0);
    tw_call_later(r, 0, stop_now, r);
    assert_int_equal(tw_reactor_run(r), 0);
    assert_int_equal(s.before, 1);
    assert_int_equal(s.during, 1);
    assert_int_equal(tw_reactor_remove_deferred_trigger(r, t), 0);
}

static tw_deferred *failing_trigger(tw_reactor *r, void *arg)
{
    return tw_fail(tw_failure_new("t", 4, "shutdown step failed"));
}

static tw_deferred *nothing_trigger(tw_reactor *r, void *arg)
{
    ++*(int *)arg;
    return NULL;
}

/* A failed deferred releases the hold too, and its failure is reported; a
 * trigger may return nothing. Triggers left registered are freed with the
 * reactor. */
static void deferred_trigger_failure_is_reported(void **state)
{
    tw_reactor *r = *state;
    int n = 0;
    tw_reactor_add_deferred_trigger(r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, failing_trigger, NULL,
                                    NULL);
    tw_reactor_add_deferred_trigger(r, TW_PHASE_AFTER, TW_EVENT_SHUTDOWN, nothing_trigger, &n,
                                    NULL);
    tw_call_later(r, 0, stop_now, r);
    assert_int_equal(tw_reactor_run(r), 0);
    assert_int_equal(n, 1);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_log, "Unhandled error in Deferred"));
    assert_non_null(strstr(last_log, "shutdown step failed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(timeout_converts_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(result_before_timeout_stops_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(canceller_value_stands, setup, teardown),
        cmocka_unit_test_setup_teardown(custom_on_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(manual_cancel_keeps_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_cancels_inner, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_forgotten_with_its_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_later_fires_with_result, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_later_cancel_prevents_call, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_later_fired_early, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_later_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(reactor_freed_with_pending_work, setup, teardown),
        cmocka_unit_test_setup_teardown(deferred_trigger_holds_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(deferred_trigger_failure_is_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
