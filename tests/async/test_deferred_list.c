/* ctest: label=unit timeout=60 backends=once */
/* DeferredList and gather (acceptance items 59-66). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/deferred.h"

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

static int ival(tw_value v)
{
    return v.free == free_counted ? *(int *)v.ptr : (int)tw_value_as_int(v);
}

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR)
        error_logs++;
    snprintf(last_log, sizeof last_log, "[%s] %s", domain, message);
}

static int setup(void **state)
{
    live_values = 0;
    error_logs = 0;
    tw_log_set_handler(capture, NULL);
    return 0;
}

static int teardown(void **state)
{
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

static tw_result eb_handle(tw_result *in, void *arg)
{
    if (arg)
        ++*(int *)arg;
    return TW_RESULT_NONE;
}

static tw_list_result *list_of(got *g)
{
    assert_null(g->r.failure);
    assert_true(g->r.value.free == tw_list_result_free);
    return g->r.value.ptr;
}

static void make(tw_deferred **ds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ds[i] = tw_deferred_new(NULL, NULL);
}

static void drop(tw_deferred **ds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tw_deferred_unref(ds[i]);
}

/* 59: pairs in input order whatever the firing order; fires once all did. */
static void results_in_input_order(void **state)
{
    tw_deferred *ds[3];
    make(ds, 3);
    tw_deferred *l = tw_deferred_list(ds, 3, 0);
    got g = { 0 };
    tw_deferred_add_both(l, cb_keep, &g);
    tw_deferred_unref(l); /* the inputs' entries keep it */
    tw_deferred_callback(ds[2], heap_int(30));
    tw_deferred_errback(ds[1], tw_failure_new("t", 1, "one failed"));
    assert_int_equal(g.calls, 0);
    tw_deferred_add_errback(ds[1], eb_handle, NULL); /* not consumed: still on its chain */
    tw_deferred_callback(ds[0], heap_int(10));
    assert_int_equal(g.calls, 1);
    tw_list_result *res = list_of(&g);
    assert_int_equal(res->n, 3);
    assert_true(res->index == TW_LIST_NO_INDEX);
    assert_true(res->items[0].fired && res->items[0].success);
    assert_int_equal(ival(res->items[0].value), 10);
    assert_true(res->items[1].fired && !res->items[1].success);
    assert_true(tw_failure_is(res->items[1].failure, "t", 1));
    assert_true(res->items[2].success);
    assert_int_equal(ival(res->items[2].value), 30);
    tw_result_free(&g.r);
    drop(ds, 3);
    assert_int_equal(error_logs, 0);
}

/* 60: inputs already fired are counted at construction; all fired: the list
 * fires at once. */
static void already_fired_inputs_count(void **state)
{
    tw_deferred *ds[2] = { tw_succeed(heap_int(1)), tw_deferred_new(NULL, NULL) };
    tw_deferred *l = tw_deferred_list(ds, 2, 0);
    assert_false(tw_deferred_called(l));
    tw_deferred_callback(ds[1], heap_int(2));
    assert_true(tw_deferred_has_result(l));
    tw_deferred_unref(l);
    drop(ds, 2);

    tw_deferred *done[2] = { tw_succeed(heap_int(1)), tw_succeed(heap_int(2)) };
    l = tw_deferred_list(done, 2, 0);
    assert_true(tw_deferred_has_result(l));
    got g = { 0 };
    tw_deferred_add_callback(l, cb_keep, &g);
    assert_int_equal(ival(list_of(&g)->items[1].value), 2);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(done, 2);
}

/* 61: empty: fires at once with no items, except fire_on_one_callback. */
static void empty_list(void **state)
{
    tw_deferred *l = tw_deferred_list(NULL, 0, 0);
    got g = { 0 };
    tw_deferred_add_callback(l, cb_keep, &g);
    assert_int_equal(g.calls, 1);
    assert_int_equal(list_of(&g)->n, 0);
    tw_result_free(&g.r);
    tw_deferred_unref(l);

    l = tw_deferred_list(NULL, 0, TW_LIST_FIRE_ON_ONE_CALLBACK);
    assert_false(tw_deferred_called(l));
    tw_deferred_unref(l);

    l = tw_gather(NULL, 0, false);
    tw_deferred_add_callback(l, cb_keep, &g);
    assert_int_equal(((tw_gather_result *)g.r.value.ptr)->n, 0);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
}

/* 62: fire_on_one_callback: the first success fires it with its index; all
 * failing fires with every pair. */
static void fire_on_one_callback(void **state)
{
    tw_deferred *ds[3];
    make(ds, 3);
    tw_deferred *l = tw_deferred_list(ds, 3, TW_LIST_FIRE_ON_ONE_CALLBACK);
    got g = { 0 };
    tw_deferred_add_both(l, cb_keep, &g);
    tw_deferred_errback(ds[0], tw_failure_new("t", 1, "x"));
    tw_deferred_add_errback(ds[0], eb_handle, NULL);
    tw_deferred_callback(ds[2], heap_int(7));
    assert_int_equal(g.calls, 1);
    tw_list_result *res = list_of(&g);
    assert_int_equal(res->index, 2);
    assert_int_equal(ival(res->items[2].value), 7);
    assert_false(res->items[1].fired);
    /* A later outcome stays on its input's chain. */
    tw_deferred_callback(ds[1], heap_int(8));
    got g1 = { 0 };
    tw_deferred_add_callback(ds[1], cb_keep, &g1);
    assert_int_equal(ival(g1.r.value), 8);
    tw_result_free(&g1.r);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(ds, 3);

    make(ds, 2);
    l = tw_deferred_list(ds, 2, TW_LIST_FIRE_ON_ONE_CALLBACK | TW_LIST_CONSUME_ERRORS);
    tw_deferred_add_both(l, cb_keep, &g);
    tw_deferred_errback(ds[0], tw_failure_new("t", 1, "a"));
    tw_deferred_errback(ds[1], tw_failure_new("t", 2, "b"));
    res = list_of(&g);
    assert_true(res->index == TW_LIST_NO_INDEX);
    assert_false(res->items[0].success);
    assert_false(res->items[1].success);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(ds, 2);
    assert_int_equal(error_logs, 0);
}

/* 63: fire_on_one_errback: the first failure fails it with FirstError
 * (sub-failure as cause, index); also when it had failed already. */
static void fire_on_one_errback(void **state)
{
    tw_deferred *ds[3];
    make(ds, 3);
    tw_deferred *l = tw_deferred_list(ds, 3, TW_LIST_FIRE_ON_ONE_ERRBACK | TW_LIST_CONSUME_ERRORS);
    got g = { 0 };
    tw_deferred_add_both(l, cb_keep, &g);
    tw_deferred_callback(ds[0], heap_int(1));
    tw_deferred_errback(ds[1], tw_failure_new("t", 5, "second broke"));
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_EFIRST_ERROR));
    assert_int_equal(tw_first_error_index(g.r.failure), 1);
    assert_true(tw_failure_is(tw_failure_cause(g.r.failure), "t", 5));
    tw_deferred_errback(ds[2], tw_failure_new("t", 6, "third")); /* consumed */
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(ds, 3);
    assert_int_equal(error_logs, 0);
    assert_int_equal(tw_first_error_index(NULL), -1);

    tw_deferred *pre[2] = { tw_deferred_new(NULL, NULL),
                            tw_fail(tw_failure_new("t", 7, "already")) };
    l = tw_deferred_list(pre, 2, TW_LIST_FIRE_ON_ONE_ERRBACK | TW_LIST_CONSUME_ERRORS);
    assert_true(tw_deferred_failed(l));
    tw_deferred_add_errback(l, cb_keep, &g);
    assert_int_equal(tw_first_error_index(g.r.failure), 1);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(pre, 2);
}

/* 64: without consume_errors the failure is recorded and goes on down the
 * input's chain (reported there if unhandled); with it the input goes on
 * with nothing, and nothing is reported. */
static void consume_errors(void **state)
{
    tw_deferred *ds[1];
    make(ds, 1);
    tw_deferred *l = tw_deferred_list(ds, 1, 0);
    tw_deferred_errback(ds[0], tw_failure_new("t", 1, "kept on chain"));
    assert_true(tw_deferred_failed(ds[0]));
    tw_deferred_unref(l);
    drop(ds, 1);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_log, "kept on chain"));

    error_logs = 0;
    make(ds, 1);
    l = tw_deferred_list(ds, 1, TW_LIST_CONSUME_ERRORS);
    tw_deferred_errback(ds[0], tw_failure_new("t", 1, "consumed"));
    int errbacks = 0;
    tw_deferred_add_errback(ds[0], eb_handle, &errbacks);
    assert_int_equal(errbacks, 0);
    assert_false(tw_deferred_failed(ds[0]));
    tw_deferred_unref(l);
    drop(ds, 1);
    assert_int_equal(error_logs, 0);
}

static void value_canceller(tw_deferred *d, void *arg)
{
    tw_deferred_callback(d, heap_int(55));
}

static int cancels;

static void counting_canceller(tw_deferred *d, void *arg)
{
    cancels++;
}

/* 65: cancelling an unfired list cancels every input; values from cancellers
 * count as successes; cancelling a fired list does nothing. */
static void cancel_list(void **state)
{
    cancels = 0;
    tw_deferred *ds[3] = { tw_deferred_new(counting_canceller, NULL),
                           tw_deferred_new(value_canceller, NULL),
                           tw_deferred_new(counting_canceller, NULL) };
    tw_deferred *l = tw_deferred_list(ds, 3, TW_LIST_CONSUME_ERRORS);
    got g = { 0 };
    tw_deferred_add_both(l, cb_keep, &g);
    tw_deferred_cancel(l);
    assert_int_equal(cancels, 2);
    tw_list_result *res = list_of(&g);
    assert_false(res->items[0].success);
    assert_true(tw_failure_is(res->items[0].failure, TW_DOMAIN, TW_ECANCELED));
    assert_true(res->items[1].success);
    assert_int_equal(ival(res->items[1].value), 55);
    assert_false(res->items[2].success);
    tw_result_free(&g.r);
    tw_deferred_cancel(l); /* fired: nothing */
    assert_int_equal(cancels, 2);
    tw_deferred_unref(l);
    drop(ds, 3);

    /* An input that fired before the cancel is left alone. */
    cancels = 0;
    tw_deferred *ds2[2] = { tw_deferred_new(counting_canceller, NULL),
                            tw_deferred_new(counting_canceller, NULL) };
    l = tw_deferred_list(ds2, 2, TW_LIST_CONSUME_ERRORS);
    tw_deferred_callback(ds2[0], heap_int(1));
    tw_deferred_cancel(l);
    assert_int_equal(cancels, 1);
    tw_deferred_add_both(l, cb_keep, &g);
    assert_int_equal(ival(list_of(&g)->items[0].value), 1);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(ds2, 2);
}

/* 66: gather: the plain values in order, or FirstError at the first
 * failure; cancellation as fire_on_one_errback. */
static void gather_values_or_first_error(void **state)
{
    tw_deferred *ds[3];
    make(ds, 3);
    tw_deferred *g3 = tw_gather(ds, 3, false);
    got g = { 0 };
    tw_deferred_add_both(g3, cb_keep, &g);
    tw_deferred_callback(ds[1], heap_int(2));
    tw_deferred_callback(ds[0], heap_int(1));
    tw_deferred_callback(ds[2], tw_value_int(3));
    tw_gather_result *res = g.r.value.ptr;
    assert_true(g.r.value.free == tw_gather_result_free);
    assert_int_equal(res->n, 3);
    assert_int_equal(ival(res->values[0]), 1);
    assert_int_equal(ival(res->values[1]), 2);
    assert_int_equal(ival(res->values[2]), 3);
    tw_result_free(&g.r);
    tw_deferred_unref(g3);
    drop(ds, 3);

    make(ds, 3);
    g3 = tw_gather(ds, 3, true);
    tw_deferred_add_both(g3, cb_keep, &g);
    tw_deferred_callback(ds[0], heap_int(1));
    tw_deferred_errback(ds[2], tw_failure_new("t", 8, "third failed"));
    assert_int_equal(tw_first_error_index(g.r.failure), 2);
    assert_true(tw_failure_is(tw_failure_cause(g.r.failure), "t", 8));
    tw_result_free(&g.r);
    tw_deferred_cancel(g3);                   /* fired: nothing */
    tw_deferred_callback(ds[1], heap_int(2)); /* stays on its own chain */
    tw_deferred_unref(g3);
    drop(ds, 3);
    assert_int_equal(error_logs, 0);

    /* Cancelling: the first cancelled input fails the gather. */
    cancels = 0;
    tw_deferred *cs[2] = { tw_deferred_new(counting_canceller, NULL),
                           tw_deferred_new(counting_canceller, NULL) };
    g3 = tw_gather(cs, 2, true);
    tw_deferred_add_both(g3, cb_keep, &g);
    tw_deferred_cancel(g3);
    assert_int_equal(cancels, 1); /* it fired on the first; the loop stopped */
    assert_int_equal(tw_first_error_index(g.r.failure), 0);
    assert_true(tw_failure_is(tw_failure_cause(g.r.failure), TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&g.r);
    tw_deferred_cancel(cs[1]);
    tw_deferred_unref(g3);
    drop(cs, 2);
}

/* Inputs freed without firing: the list is freed too once nobody holds it,
 * and nothing leaks. */
static void abandoned_inputs_leak_nothing(void **state)
{
    tw_deferred *ds[2];
    make(ds, 2);
    tw_deferred *l = tw_deferred_list(ds, 2, 0);
    tw_deferred_callback(ds[0], heap_int(1));
    tw_deferred_unref(l);
    drop(ds, 2); /* ds[1] never fired: the list can never fire */

    make(ds, 2);
    l = tw_gather(ds, 2, false);
    drop(ds, 2);
    assert_false(tw_deferred_called(l));
    tw_deferred_unref(l);
}

/* Many inputs. */
static void many_inputs(void **state)
{
    enum { N = 5000 };
    tw_deferred **ds = malloc(sizeof *ds * N);
    make(ds, N);
    tw_deferred *l = tw_gather(ds, N, false);
    for (int i = N - 1; i >= 0; i--)
        tw_deferred_callback(ds[i], tw_value_int(i));
    got g = { 0 };
    tw_deferred_add_callback(l, cb_keep, &g);
    tw_gather_result *res = g.r.value.ptr;
    for (int i = 0; i < N; i++)
        assert_int_equal(ival(res->values[i]), i);
    tw_result_free(&g.r);
    tw_deferred_unref(l);
    drop(ds, N);
    free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(results_in_input_order, setup, teardown),
        cmocka_unit_test_setup_teardown(already_fired_inputs_count, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_list, setup, teardown),
        cmocka_unit_test_setup_teardown(fire_on_one_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(fire_on_one_errback, setup, teardown),
        cmocka_unit_test_setup_teardown(consume_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_list, setup, teardown),
        cmocka_unit_test_setup_teardown(gather_values_or_first_error, setup, teardown),
        cmocka_unit_test_setup_teardown(abandoned_inputs_leak_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(many_inputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
