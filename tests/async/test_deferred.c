/* ctest: label=unit timeout=60 backends=once */
/* The deferred core (acceptance items 44-57): alternation, firing once, late
 * callbacks, reentrancy, implicit chaining, bounded stack, self-return,
 * pause, chain, maybe_deferred, cancellation; plus the unhandled-error report
 * and ownership: every value freed exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/deferred.h"

/* ------------------------------------------------------------ fixtures */

static char trace[4096];

static void tr(const char *fmt, ...)
{
    size_t n = strlen(trace);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(trace + n, sizeof trace - n, fmt, ap);
    va_end(ap);
}

/* Heap values that count themselves: live_values must be 0 after a test. */
static int live_values;

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

/* Log capture: error_logs counts error lines; the last is kept. */
static int error_logs;
static char last_log[8192];

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    (void)arg;
    if (level >= TW_LOG_ERROR)
        error_logs++;
    snprintf(last_log, sizeof last_log, "[%s] %s", domain, message);
}

static int setup(void **state)
{
    trace[0] = '\0';
    live_values = 0;
    error_logs = 0;
    last_log[0] = '\0';
    tw_log_set_handler(capture, NULL);
    return 0;
}

static int teardown(void **state)
{
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(live_values, 0);
    return 0;
}

/* Callbacks used throughout. */
static tw_result cb_record(tw_result *in, void *arg)
{
    tr("%s:%d ", arg ? (const char *)arg : "cb", int_of(in));
    return tw_result_move(in);
}

static tw_result eb_record(tw_result *in, void *arg)
{
    tr("%s:%s ", arg ? (const char *)arg : "eb", tw_failure_message(in->failure));
    return tw_result_move(in);
}

static tw_result cb_add(tw_result *in, void *arg)
{
    int v = int_of(in) + (int)(intptr_t)arg;
    tr("add%d ", (int)(intptr_t)arg);
    return tw_ok_value(heap_int(v)); /* in (maybe a heap int) is freed by the chain */
}

static tw_result cb_raise(tw_result *in, void *arg)
{
    tr("raise ");
    return tw_err(tw_failure_new("test", 1, "%s", arg ? (const char *)arg : "boom"));
}

static tw_result eb_recover(tw_result *in, void *arg)
{
    tr("recover ");
    return tw_ok_int((intptr_t)arg);
}

static tw_result cb_drop(tw_result *in, void *arg)
{
    return TW_RESULT_NONE;
}

/* A result slot a test reads after the chain ran. */
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

/* ------------------------------------------------------------ 44 */

/* 44: alternation. A failure switches to the errback path (callbacks
 * skipped) until an errback returns a value. */
static void alternation(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_add, (void *)1);
    tw_deferred_add_errback(d, eb_record, "never");
    tw_deferred_add_callback(d, cb_raise, "first");
    tw_deferred_add_callback(d, cb_add, (void *)100); /* skipped */
    tw_deferred_add_callbacks(d, cb_record, eb_record, "e1");
    tw_deferred_add_errback(d, eb_recover, (void *)7);
    tw_deferred_add_errback(d, eb_record, "never");
    tw_deferred_add_callback(d, cb_record, "c2");
    tw_deferred_add_both(d, cb_record, "both");
    assert_int_equal(tw_deferred_callback(d, heap_int(1)), 0);
    assert_string_equal(trace, "add1 raise e1:first recover c2:7 both:7 ");
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ 45 */

static void fire_twice(int first_fail, int second_fail)
{
    setup(NULL);
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callbacks(d, cb_record, eb_record, NULL);
    int rc = first_fail ? tw_deferred_errback(d, tw_failure_new("t", 1, "x"))
                        : tw_deferred_callback(d, heap_int(1));
    assert_int_equal(rc, 0);
    rc = second_fail ? tw_deferred_errback(d, tw_failure_new("t", 2, "y"))
                     : tw_deferred_callback(d, heap_int(2));
    assert_int_equal(rc, TW_EALREADY_CALLED);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_log, "already called"));
    if (first_fail) { /* handle it so the free does not report it */
        tw_deferred_add_errback(d, eb_recover, NULL);
    }
    tw_deferred_unref(d);
    assert_int_equal(live_values, 0); /* the rejected value was freed */
}

/* 45: fire once, in all four combinations; reported, never a crash. */
static void already_called_cc_ce_ee_ec(void **state)
{
    fire_twice(0, 0);
    fire_twice(0, 1);
    fire_twice(1, 1);
    fire_twice(1, 0);
}

/* 46: firing with a deferred chains (the C form of passing one to
 * callback); firing with itself is refused; errback without a failure is an
 * error. */
static void fire_with_deferred_chains(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_record, "outer");
    assert_int_equal(tw_deferred_fire(d, tw_chain(tw_deferred_ref(inner))), 0);
    assert_true(tw_deferred_called(d));
    assert_false(tw_deferred_has_result(d));
    assert_string_equal(trace, "");
    tw_deferred_callback(inner, tw_value_int(5));
    assert_string_equal(trace, "outer:5 ");
    tw_deferred_unref(inner);
    tw_deferred_unref(d);

    /* errback needs a failure. */
    d = tw_deferred_new(NULL, NULL);
    assert_int_equal(tw_deferred_errback(d, NULL), TW_EINVAL);
    assert_false(tw_deferred_called(d));
    tw_deferred_unref(d);

    d = tw_deferred_new(NULL, NULL);
    assert_int_equal(tw_deferred_fire(d, tw_chain(tw_deferred_ref(d))), TW_ECYCLE);
    assert_true(tw_deferred_failed(d));
    got g = { 0 };
    tw_deferred_add_errback(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECYCLE));
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ 47 */

/* 47: a callback added to a fired deferred runs at once with the current
 * result. */
static void late_callbacks_run_at_once(void **state)
{
    tw_deferred *d = tw_succeed(heap_int(3));
    assert_true(tw_deferred_has_result(d));
    tw_deferred_add_callback(d, cb_record, "late");
    assert_string_equal(trace, "late:3 ");
    tw_deferred_add_callback(d, cb_add, (void *)1);
    tw_deferred_add_callback(d, cb_record, "later");
    assert_string_equal(trace, "late:3 add1 later:4 ");
    tw_deferred_unref(d);

    trace[0] = '\0';
    d = tw_fail(tw_failure_new("t", 9, "gone"));
    assert_true(tw_deferred_failed(d));
    tw_deferred_add_callback(d, cb_record, "skipped");
    tw_deferred_add_errback(d, eb_record, "late");
    assert_string_equal(trace, "late:gone ");
    tw_deferred_add_errback(d, eb_recover, NULL);
    assert_false(tw_deferred_failed(d));
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ 48 */

typedef struct reentrant {
    tw_deferred *d;
    int fail;
} reentrant;

static tw_result cb_adds_more(tw_result *in, void *arg)
{
    reentrant *re = arg;
    tr("first-start ");
    if (re->fail) {
        tw_deferred_add_callback(re->d, cb_raise, "inner");
    } else {
        tw_deferred_add_callback(re->d, cb_record, "added");
    }
    tr("first-end ");
    return tw_result_move(in);
}

/* 48: a callback added by a running callback goes to the end and runs after
 * the current one returns; a failure from it reaches the next errback. */
static void reentrant_callbacks(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    reentrant re = { d, 0 };
    tw_deferred_add_callback(d, cb_adds_more, &re);
    tw_deferred_add_callback(d, cb_record, "second");
    tw_deferred_callback(d, tw_value_int(1));
    assert_string_equal(trace, "first-start first-end second:1 added:1 ");
    tw_deferred_unref(d);

    trace[0] = '\0';
    d = tw_deferred_new(NULL, NULL);
    re = (reentrant){ d, 1 };
    tw_deferred_add_callback(d, cb_adds_more, &re);
    tw_deferred_callback(d, tw_value_int(1));
    tw_deferred_add_errback(d, eb_record, "caught");
    tw_deferred_add_errback(d, eb_recover, NULL);
    assert_string_equal(trace, "first-start first-end raise caught:inner recover ");
    tw_deferred_unref(d);
}

/* A callback that fires another deferred whose callbacks run nested. */
static tw_result cb_fires_other(tw_result *in, void *arg)
{
    tr("fire-other ");
    tw_deferred_callback(arg, tw_value_int(9));
    tr("fired ");
    return tw_result_move(in);
}

static void firing_another_deferred_runs_it_now(void **state)
{
    tw_deferred *a = tw_deferred_new(NULL, NULL);
    tw_deferred *b = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(b, cb_record, "b");
    tw_deferred_add_callback(a, cb_fires_other, b);
    tw_deferred_add_callback(a, cb_record, "a");
    tw_deferred_callback(a, tw_value_int(1));
    assert_string_equal(trace, "fire-other b:9 fired a:1 ");
    tw_deferred_unref(a);
    tw_deferred_unref(b);
}

/* ------------------------------------------------------------ 49 */

static tw_result cb_return_deferred(tw_result *in, void *arg)
{
    tr("return-inner ");
    return tw_chain(tw_deferred_ref(arg));
}

/* 49: the inner had already fired: the outer continues at once with the
 * inner's result, and the inner keeps nothing. */
static void synchronous_implicit_chain(void **state)
{
    tw_deferred *inner = tw_succeed(heap_int(2));
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer");
    tw_deferred_callback(outer, tw_value_int(1));
    assert_string_equal(trace, "return-inner outer:2 ");
    got g = { 0 };
    tw_deferred_add_callback(inner, cb_keep, &g);
    assert_int_equal(g.calls, 1);
    assert_null(g.r.value.ptr); /* the inner's result became "None" */
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
}

static void synchronous_implicit_error_chain(void **state)
{
    tw_deferred *inner = tw_fail(tw_failure_new("t", 3, "inner failed"));
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_callback(outer, tw_value_int(1));
    assert_true(tw_deferred_failed(outer));
    assert_false(tw_deferred_failed(inner));
    tw_deferred_unref(inner); /* nothing to report: it gave the failure away */
    assert_int_equal(error_logs, 0);
    tw_deferred_add_errback(outer, eb_record, "outer");
    tw_deferred_add_errback(outer, eb_recover, NULL);
    assert_string_equal(trace, "return-inner outer:inner failed recover ");
    tw_deferred_unref(outer);
    assert_int_equal(error_logs, 0);
}

static void asynchronous_implicit_chain(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer");
    tw_deferred_callback(outer, tw_value_int(1));
    assert_string_equal(trace, "return-inner ");
    assert_true(tw_deferred_called(outer));
    assert_false(tw_deferred_has_result(outer));
    tw_deferred_callback(inner, heap_int(5));
    assert_string_equal(trace, "return-inner outer:5 ");
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
}

/* An unhandled failure chained from an inner is reported once, by the
 * outer, when it is freed. */
static void asynchronous_implicit_error_chain_reports_once(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_callback(outer, tw_value_int(1));
    tw_deferred_errback(inner, tw_failure_new("t", 4, "late failure"));
    assert_true(tw_deferred_failed(outer));
    tw_deferred_unref(inner);
    assert_int_equal(error_logs, 0);
    tw_deferred_unref(outer);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_log, "Unhandled error in Deferred"));
    assert_non_null(strstr(last_log, "late failure"));
}

/* Callbacks the inner had before being returned run first, in order; the
 * outer's later callbacks run after them. */
static void inner_callbacks_run_first(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(inner, cb_record, "inner1");
    tw_deferred_add_callback(inner, cb_add, (void *)10);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer1");
    tw_deferred_callback(outer, tw_value_int(0));
    tw_deferred_add_callback(inner, cb_record, "inner-after"); /* after the link */
    tw_deferred_add_callback(outer, cb_record, "outer2");
    tw_deferred_callback(inner, tw_value_int(1));
    assert_string_equal(trace, "return-inner inner1:1 add10 outer1:11 outer2:11 inner-after:0 ");
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
}

/* Chaining is transitive: a waits on b waits on c. */
static void double_asynchronous_implicit_chaining(void **state)
{
    tw_deferred *a = tw_deferred_new(NULL, NULL);
    tw_deferred *b = tw_deferred_new(NULL, NULL);
    tw_deferred *c = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(b, cb_return_deferred, c);
    tw_deferred_add_callback(b, cb_record, "b");
    tw_deferred_add_callback(a, cb_return_deferred, b);
    tw_deferred_add_callback(a, cb_record, "a");
    tw_deferred_callback(a, tw_value_int(0));
    tw_deferred_callback(b, tw_value_int(0));
    assert_string_equal(trace, "return-inner return-inner ");
    tw_deferred_callback(c, heap_int(42));
    assert_string_equal(trace, "return-inner return-inner b:42 a:42 ");
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
}

/* An outer waiting on an inner that is freed without firing never
 * continues, and nothing leaks. */
static void inner_freed_unfired_leaks_nothing(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "never");
    tw_deferred_callback(outer, heap_int(1));
    tw_deferred_unref(inner);
    assert_string_equal(trace, "return-inner ");
    tw_deferred_cancel(outer); /* nothing to cancel any more: a no-op */
    tw_deferred_unref(outer);
}

/* The outer is kept alive by the inner it waits on. */
static void waiting_outer_outlives_its_references(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer");
    tw_deferred_callback(outer, tw_value_int(1));
    tw_deferred_unref(outer); /* the caller's; the inner keeps it */
    tw_deferred_callback(inner, tw_value_int(8));
    assert_string_equal(trace, "return-inner outer:8 ");
    tw_deferred_unref(inner);
}

/* ------------------------------------------------------------ 50 */

static uintptr_t depth_seen;

static tw_result cb_stack_depth(tw_result *in, void *arg)
{
    volatile char here = 0;
    depth_seen = (uintptr_t)&here;
    return tw_result_move(in);
}

/* Twisted's test_boundedStackDepth: top waits on inner[0], which waits on
 * inner[1] ... on last. Firing last runs top's next callback at a stack
 * depth that does not depend on the chain's length. */
static uintptr_t chain_deferreds(int how_many)
{
    tw_deferred *top = tw_deferred_new(NULL, NULL);
    tw_deferred **inner = malloc(sizeof *inner * (size_t)how_many);
    for (int i = 0; i < how_many; i++)
        inner[i] = tw_deferred_new(NULL, NULL);
    tw_deferred *last = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(top, cb_return_deferred, inner[0]);
    tw_deferred_add_callback(top, cb_stack_depth, NULL);
    for (int i = 0; i < how_many - 1; i++)
        tw_deferred_add_callback(inner[i], cb_return_deferred, inner[i + 1]);
    tw_deferred_add_callback(inner[how_many - 1], cb_return_deferred, last);
    tw_deferred_callback(top, TW_VALUE_NONE);
    for (int i = 0; i < how_many; i++)
        tw_deferred_callback(inner[i], TW_VALUE_NONE);
    depth_seen = 0;
    tw_deferred_callback(last, TW_VALUE_NONE);
    assert_true(depth_seen != 0);
    for (int i = 0; i < how_many; i++)
        tw_deferred_unref(inner[i]);
    free(inner);
    tw_deferred_unref(last);
    tw_deferred_unref(top);
    return depth_seen;
}

static void bounded_stack_depth(void **state)
{
    uintptr_t one = chain_deferreds(1);
    uintptr_t two = chain_deferreds(2);
    uintptr_t many = chain_deferreds(10000);
    assert_true(one == two);
    assert_true(one == many);
}

/* A chain of 10,000 deferreds each returned by the previous one's callback,
 * fired from the innermost; freeing and cancelling such chains is iterative
 * too. */
static void ten_thousand_nested_deferreds(void **state)
{
    enum { N = 10000 };
    tw_deferred **d = malloc(sizeof *d * N);
    for (int i = 0; i < N; i++)
        d[i] = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_add_callback(d[i], cb_return_deferred, d[i + 1]);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_callback(d[i], TW_VALUE_NONE);
    got g = { 0 };
    tw_deferred_add_callback(d[0], cb_keep, &g);
    tw_deferred_callback(d[N - 1], heap_int(77));
    assert_int_equal(g.calls, 1);
    assert_int_equal(int_of(&g.r), 77);
    tw_result_free(&g.r);
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);

    /* Cancelling the outermost cancels the innermost, without recursion. */
    for (int i = 0; i < N; i++)
        d[i] = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_add_callback(d[i], cb_return_deferred, d[i + 1]);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_callback(d[i], TW_VALUE_NONE);
    g = (got){ 0 };
    tw_deferred_add_errback(d[0], cb_keep, &g);
    tw_deferred_cancel(d[0]);
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&g.r);
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);

    /* Never fired: dropping every reference frees the whole chain. */
    for (int i = 0; i < N; i++)
        d[i] = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_add_callback(d[i], cb_return_deferred, d[i + 1]);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_callback(d[i], TW_VALUE_NONE);
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);
    free(d);
}

/* Dropping the last reference of a deep waiting chain from its innermost
 * end frees it iteratively. */
static void freeing_a_long_waiting_chain(void **state)
{
    enum { N = 200000 };
    tw_deferred **d = malloc(sizeof *d * (N + 1));
    for (int i = 0; i <= N; i++)
        d[i] = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < N; i++)
        tw_deferred_add_callback(d[i], cb_return_deferred, d[i + 1]);
    for (int i = 0; i < N; i++)
        tw_deferred_callback(d[i], TW_VALUE_NONE);
    /* Each d[i] is now kept alive by d[i+1]'s continue entry. */
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);
    tw_deferred_unref(d[N]); /* frees all N+1, one after the other */
    free(d);
}

/* A long plain chain of callbacks spills to the heap and runs in order. */
static void many_callbacks_in_one_chain(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < 1000; i++)
        tw_deferred_add_callback(d, cb_add, (void *)1);
    got g = { 0 };
    tw_deferred_add_callback(d, cb_keep, &g);
    trace[0] = '\0';
    tw_deferred_callback(d, heap_int(0));
    assert_int_equal(int_of(&g.r), 1000);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ 51 */

static tw_result cb_return_self(tw_result *in, void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

/* 51: a callback returning its own deferred fails the chain with
 * TW_ECYCLE. */
static void self_return_is_a_cycle_failure(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_return_self, d);
    got g = { 0 };
    tw_deferred_add_errback(d, cb_keep, &g);
    tw_deferred_callback(d, heap_int(1));
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECYCLE));
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

/* A longer cycle (a waits on b, whose callback returns a) is refused the
 * same way instead of leaving both waiting forever. */
static void indirect_cycle_is_a_cycle_failure(void **state)
{
    tw_deferred *a = tw_deferred_new(NULL, NULL);
    tw_deferred *b = tw_deferred_new(NULL, NULL);
    tw_deferred *c = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(a, cb_return_deferred, b);
    tw_deferred_add_callback(b, cb_return_deferred, c);
    tw_deferred_add_callback(c, cb_return_deferred, a);
    got g = { 0 };
    tw_deferred_add_errback(c, cb_keep, &g);
    tw_deferred_callback(a, TW_VALUE_NONE); /* a waits on b */
    tw_deferred_callback(b, TW_VALUE_NONE); /* b waits on c */
    tw_deferred_callback(c, TW_VALUE_NONE); /* c would wait on a: refused */
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECYCLE));
    tw_result_free(&g.r);
    /* c then has an empty result, which b and a take in turn. */
    assert_true(tw_deferred_has_result(a));
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
}

/* ------------------------------------------------------------ 52 */

/* 52: pauses nest. */
static void pause_nests(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_record, "a");
    tw_deferred_pause(d);
    tw_deferred_pause(d);
    tw_deferred_callback(d, tw_value_int(1));
    assert_string_equal(trace, "");
    tw_deferred_unpause(d);
    assert_string_equal(trace, "");
    tw_deferred_add_callback(d, cb_record, "b"); /* paused: waits too */
    assert_string_equal(trace, "");
    tw_deferred_unpause(d);
    assert_string_equal(trace, "a:1 b:1 ");
    tw_deferred_unpause(d); /* unmatched: ignored */
    tw_deferred_add_callback(d, cb_record, "c");
    assert_string_equal(trace, "a:1 b:1 c:1 ");
    tw_deferred_unref(d);
}

static tw_result cb_pause_self(tw_result *in, void *arg)
{
    tr("pause ");
    tw_deferred_pause(arg);
    return tw_result_move(in);
}

/* A callback pausing its own deferred stops the chain there. */
static void pause_inside_a_callback(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_pause_self, d);
    tw_deferred_add_callback(d, cb_record, "after");
    tw_deferred_callback(d, tw_value_int(2));
    assert_string_equal(trace, "pause ");
    tw_deferred_unpause(d);
    assert_string_equal(trace, "pause after:2 ");
    tw_deferred_unref(d);
}

/* A paused inner that already has its result still blocks the outer that
 * returned it, until unpaused. */
static void chained_paused_deferred_with_result(void **state)
{
    tw_deferred *inner = tw_succeed(tw_value_int(6));
    tw_deferred_pause(inner);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer");
    tw_deferred_callback(outer, tw_value_int(0));
    assert_string_equal(trace, "return-inner ");
    tw_deferred_unpause(inner);
    assert_string_equal(trace, "return-inner outer:6 ");
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
}

/* An outer that is paused still receives its inner's result, and runs it
 * once unpaused. */
static void paused_deferred_chained(void **state)
{
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(outer, cb_return_deferred, inner);
    tw_deferred_add_callback(outer, cb_record, "outer");
    tw_deferred_callback(outer, tw_value_int(0));
    tw_deferred_pause(outer);
    tw_deferred_callback(inner, tw_value_int(4));
    assert_string_equal(trace, "return-inner ");
    assert_true(tw_deferred_has_result(outer));
    tw_deferred_unpause(outer);
    assert_string_equal(trace, "return-inner outer:4 ");
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
}

/* ------------------------------------------------------------ 53 */

/* 53: chain forwards the result or failure to another deferred; d goes on
 * with an empty result. */
static void chain_forwards_result_and_failure(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred *other = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(other, cb_record, "other");
    assert_int_equal(tw_deferred_chain(d, other), 0);
    tw_deferred_add_callback(d, cb_record, "d-after");
    tw_deferred_unref(other); /* d keeps it until it forwards */
    tw_deferred_callback(d, heap_int(3));
    assert_string_equal(trace, "other:3 d-after:0 ");
    tw_deferred_unref(d);

    trace[0] = '\0';
    d = tw_deferred_new(NULL, NULL);
    other = tw_deferred_new(NULL, NULL);
    tw_deferred_chain(d, other);
    tw_deferred_errback(d, tw_failure_new("t", 5, "forwarded"));
    assert_false(tw_deferred_failed(d));
    assert_true(tw_deferred_failed(other));
    tw_deferred_add_errback(other, eb_record, "other");
    tw_deferred_add_errback(other, eb_recover, NULL);
    assert_string_equal(trace, "other:forwarded recover ");
    tw_deferred_unref(d);
    tw_deferred_unref(other);

    /* Chaining to an already fired deferred: already-called, in d's chain. */
    d = tw_deferred_new(NULL, NULL);
    other = tw_succeed(tw_value_int(1));
    tw_deferred_chain(d, other);
    tw_deferred_callback(d, heap_int(2));
    assert_true(tw_deferred_failed(d));
    got g = { 0 };
    tw_deferred_add_errback(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_EALREADY_CALLED));
    tw_result_free(&g.r);
    tw_deferred_unref(d);
    tw_deferred_unref(other);
    d = tw_deferred_new(NULL, NULL);
    assert_int_equal(tw_deferred_chain(d, d), TW_EINVAL);
    tw_deferred_unref(d);
}

/* A long chain of chained deferreds forwards without recursion. */
static void long_chain_of_chain(void **state)
{
    enum { N = 10000 };
    tw_deferred **d = malloc(sizeof *d * N);
    for (int i = 0; i < N; i++)
        d[i] = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < N - 1; i++)
        tw_deferred_chain(d[i], d[i + 1]);
    got g = { 0 };
    tw_deferred_add_callback(d[N - 1], cb_keep, &g);
    tw_deferred_callback(d[0], heap_int(5));
    assert_int_equal(int_of(&g.r), 5);
    tw_result_free(&g.r);
    for (int i = 0; i < N; i++)
        tw_deferred_unref(d[i]);
    free(d);
}

/* ------------------------------------------------------------ 54 */

static tw_result fn_value(void *arg)
{
    return tw_ok_value(heap_int(11));
}

static tw_result fn_failure(void *arg)
{
    return tw_err(tw_failure_new("t", 6, "raised"));
}

static tw_result fn_deferred(void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

/* 54: maybe_deferred. */
static void maybe_deferred_wraps_results(void **state)
{
    got g = { 0 };
    tw_deferred *d = tw_maybe_deferred(fn_value, NULL);
    tw_deferred_add_callback(d, cb_keep, &g);
    assert_int_equal(int_of(&g.r), 11);
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    d = tw_maybe_deferred(fn_failure, NULL);
    assert_true(tw_deferred_failed(d));
    tw_deferred_add_errback(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, "t", 6));
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    d = tw_maybe_deferred(fn_deferred, inner);
    assert_ptr_equal(d, inner); /* passed through */
    tw_deferred_unref(d);
    tw_deferred_unref(inner);
}

/* ------------------------------------------------------------ 55-57 */

/* 55: without a canceller: cancelled failure; one later firing swallowed,
 * a second is already-called; cancelling again does nothing. */
static void cancel_without_canceller(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    got g = { 0 };
    tw_deferred_add_errback(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_int_equal(g.calls, 1);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_deferred_cancel(d);
    assert_int_equal(g.calls, 1);
    assert_int_equal(tw_deferred_callback(d, heap_int(1)), 0); /* swallowed, freed */
    assert_int_equal(error_logs, 0);
    assert_int_equal(tw_deferred_errback(d, tw_failure_new("t", 1, "x")), TW_EALREADY_CALLED);
    assert_int_equal(error_logs, 1);
    tw_result_free(&g.r);
    tw_deferred_unref(d);
}

typedef struct canceller_log {
    int calls;
    int fire; /* 0: do nothing, 1: succeed, 2: fail */
    tw_deferred *seen;
} canceller_log;

static void test_canceller(tw_deferred *d, void *arg)
{
    canceller_log *c = arg;
    c->calls++;
    c->seen = d;
    if (c->fire == 1)
        tw_deferred_callback(d, heap_int(99));
    else if (c->fire == 2)
        tw_deferred_errback(d, tw_failure_new("t", 7, "canceller's own"));
}

/* 56: with a canceller. */
static void cancel_with_canceller(void **state)
{
    canceller_log c = { 0 };
    tw_deferred *d = tw_deferred_new(test_canceller, &c);
    got g = { 0 };
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_int_equal(c.calls, 1);
    assert_ptr_equal(c.seen, d);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_deferred_cancel(d);
    assert_int_equal(c.calls, 1);
    /* With a canceller nothing is swallowed. */
    assert_int_equal(tw_deferred_callback(d, heap_int(1)), TW_EALREADY_CALLED);
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    /* The canceller's own result stands, even a success. */
    c = (canceller_log){ .fire = 1 };
    d = tw_deferred_new(test_canceller, &c);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_int_equal(int_of(&g.r), 99);
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    c = (canceller_log){ .fire = 2 };
    d = tw_deferred_new(test_canceller, &c);
    tw_deferred_add_both(d, cb_keep, &g);
    tw_deferred_cancel(d);
    assert_true(tw_failure_is(g.r.failure, "t", 7));
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    /* After a real result, cancel does nothing. */
    c = (canceller_log){ 0 };
    d = tw_deferred_new(test_canceller, &c);
    tw_deferred_callback(d, tw_value_int(1));
    tw_deferred_cancel(d);
    assert_int_equal(c.calls, 0);
    assert_false(tw_deferred_failed(d));
    tw_deferred_unref(d);
}

/* 57: cancelling a deferred waiting on an inner cancels the inner (its
 * canceller runs) and the failure comes back out; three levels deep. */
static void cancel_nested_three_levels(void **state)
{
    canceller_log c = { 0 };
    tw_deferred *innermost = tw_deferred_new(test_canceller, &c);
    tw_deferred *middle = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(middle, cb_return_deferred, innermost);
    tw_deferred_add_errback(middle, eb_record, "middle");
    tw_deferred_add_callback(outer, cb_return_deferred, middle);
    tw_deferred_add_errback(outer, eb_record, "outer");
    got g = { 0 };
    tw_deferred_add_errback(outer, cb_keep, &g);
    tw_deferred_callback(middle, TW_VALUE_NONE);
    tw_deferred_callback(outer, TW_VALUE_NONE);
    tw_deferred_cancel(outer);
    assert_int_equal(c.calls, 1);
    assert_ptr_equal(c.seen, innermost);
    assert_string_equal(trace, "return-inner return-inner middle:cancelled outer:cancelled ");
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&g.r);
    tw_deferred_unref(innermost);
    tw_deferred_unref(middle);
    tw_deferred_unref(outer);
}

/* ------------------------------------------------------ unhandled, ownership */

/* A failure left at the end of the chain is logged when the deferred goes,
 * with the failure and where it was raised. */
static void unhandled_failure_logged_on_free(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_failure *root = tw_failure_new("disk", 28, "no space");
    int line = __LINE__ + 1;
    tw_failure *f = tw_failure_wrap(root, "app", 2, "save failed");
    tw_deferred_errback(d, f);
    assert_int_equal(error_logs, 0);
    tw_deferred_unref(d);
    assert_int_equal(error_logs, 1);
    char site[64];
    snprintf(site, sizeof site, "test_deferred.c:%d in unhandled_failure_logged_on_free", line);
    assert_non_null(strstr(last_log, "[deferred] Unhandled error in Deferred:"));
    assert_non_null(strstr(last_log, "app 2: save failed"));
    assert_non_null(strstr(last_log, "caused by: disk 28: no space"));
    assert_non_null(strstr(last_log, site));

    /* Handled: nothing. */
    error_logs = 0;
    d = tw_fail(tw_failure_new("t", 1, "x"));
    tw_deferred_add_errback(d, eb_recover, NULL);
    tw_deferred_unref(d);
    assert_int_equal(error_logs, 0);
}

static int arg_frees;

static void count_arg_free(void *arg)
{
    arg_frees++;
}

/* Every value is freed exactly once: replaced, dropped, left in a freed
 * deferred, or left with callbacks that never run (whose args are freed by
 * arg_free). */
static void values_freed_exactly_once(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_add, (void *)1); /* replaces: old freed */
    tw_deferred_add_callback(d, cb_drop, NULL);     /* drops: freed by chain */
    tw_deferred_add_callback(d, cb_add, (void *)5); /* new heap value stays */
    tw_deferred_callback(d, heap_int(1));
    assert_int_equal(live_values, 1);
    tw_deferred_unref(d); /* frees the value in it */
    assert_int_equal(live_values, 0);

    arg_frees = 0;
    d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callbacks_full(d, cb_record, NULL, NULL, count_arg_free);
    tw_deferred_add_callbacks_full(d, NULL, eb_record, NULL, count_arg_free); /* skipped */
    tw_deferred_add_callbacks_full(d, cb_record, NULL, NULL, count_arg_free);
    tw_deferred_callback(d, tw_value_int(1));
    assert_int_equal(arg_frees, 3);
    tw_deferred_add_callbacks_full(d, cb_record, NULL, NULL, count_arg_free); /* late */
    assert_int_equal(arg_frees, 4);
    tw_deferred_unref(d);

    /* Never fired: the callbacks never run, their args are freed. */
    arg_frees = 0;
    d = tw_deferred_new(NULL, NULL);
    for (int i = 0; i < 7; i++)
        tw_deferred_add_callbacks_full(d, cb_record, NULL, NULL, count_arg_free);
    tw_deferred_unref(d);
    assert_int_equal(arg_frees, 7);
    assert_string_equal(trace, "add1 add5 cb:1 cb:1 cb:1 ");

    /* Rejected values are freed; succeed/fail take theirs. */
    d = tw_succeed(heap_int(1));
    tw_deferred_callback(d, heap_int(2)); /* already called: freed */
    error_logs = 0;
    tw_deferred_unref(d);
}

/* A callback may drop the last outside reference to its own deferred. */
static tw_result cb_unref_self(tw_result *in, void *arg)
{
    tw_deferred_unref(arg);
    return tw_ok_value(heap_int(1));
}

static void callback_may_drop_last_reference(void **state)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(d, cb_unref_self, d);
    tw_deferred_add_callback(d, cb_record, "after");
    tw_deferred_ref(d); /* the producer's, used to fire */
    tw_deferred_callback(d, TW_VALUE_NONE);
    assert_string_equal(trace, "after:1 ");
    tw_deferred_unref(d);
}

/* A callback may cancel or fire other deferreds, including ones further
 * down the same run. */
static tw_result cb_cancel_other(tw_result *in, void *arg)
{
    tw_deferred_cancel(arg);
    return tw_result_move(in);
}

static void callback_cancels_another(void **state)
{
    tw_deferred *a = tw_deferred_new(NULL, NULL);
    tw_deferred *b = tw_deferred_new(NULL, NULL);
    tw_deferred_add_callback(a, cb_cancel_other, b);
    tw_deferred_add_callback(a, cb_return_deferred, b); /* b already failed */
    got g = { 0 };
    tw_deferred_add_errback(a, cb_keep, &g);
    tw_deferred_callback(a, tw_value_int(1));
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&g.r);
    tw_deferred_unref(a);
    tw_deferred_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(alternation, setup, teardown),
        cmocka_unit_test_setup_teardown(already_called_cc_ce_ee_ec, setup, teardown),
        cmocka_unit_test_setup_teardown(fire_with_deferred_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(late_callbacks_run_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(reentrant_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(firing_another_deferred_runs_it_now, setup, teardown),
        cmocka_unit_test_setup_teardown(synchronous_implicit_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(synchronous_implicit_error_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(asynchronous_implicit_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(asynchronous_implicit_error_chain_reports_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(inner_callbacks_run_first, setup, teardown),
        cmocka_unit_test_setup_teardown(double_asynchronous_implicit_chaining, setup, teardown),
        cmocka_unit_test_setup_teardown(inner_freed_unfired_leaks_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_outer_outlives_its_references, setup, teardown),
        cmocka_unit_test_setup_teardown(bounded_stack_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(ten_thousand_nested_deferreds, setup, teardown),
        cmocka_unit_test_setup_teardown(freeing_a_long_waiting_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(many_callbacks_in_one_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(self_return_is_a_cycle_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(indirect_cycle_is_a_cycle_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(pause_nests, setup, teardown),
        cmocka_unit_test_setup_teardown(pause_inside_a_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(chained_paused_deferred_with_result, setup, teardown),
        cmocka_unit_test_setup_teardown(paused_deferred_chained, setup, teardown),
        cmocka_unit_test_setup_teardown(chain_forwards_result_and_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(long_chain_of_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(maybe_deferred_wraps_results, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_without_canceller, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_with_canceller, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_nested_three_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(unhandled_failure_logged_on_free, setup, teardown),
        cmocka_unit_test_setup_teardown(values_freed_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(callback_may_drop_last_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(callback_cancels_another, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
