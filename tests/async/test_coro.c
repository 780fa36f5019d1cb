/* ctest: label=unit timeout=120 backends=once switches=all */
/* Coroutines (Twisted's inlineCallbacks / async-await): acceptance items
 * 72-76 in C terms, a thousand timers in sequence on the fake clock,
 * cancellation (cleanup, translation, asynchronous cancellation), nesting,
 * no stack growth on ready results, stack pooling and sizes, the guard page,
 * errors (outside a coroutine, wrong thread), and freeing a reactor with
 * coroutines still suspended. Item 77 (context variables) has no C
 * counterpart here. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "async/coro_internal.h"
#include "twirl/coro.h"
#include "twirl/deferred.h"

/* ------------------------------------------------------------ helpers */

static int live_values; /* heap ints not yet freed */

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

static int int_of_value(tw_value v)
{
    return v.free == free_counted ? *(int *)v.ptr : (int)tw_value_as_int(v);
}

static int error_logs;
static char last_log[8192];

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

/* What a deferred ended with, collected by a callback pair. */
typedef struct outcome {
    int fired;
    int value;     /* a heap int or a small int */
    bool none;     /* an empty value */
    int fail_code; /* 0 if it succeeded */
    char domain[32];
    char message[256];
} outcome;

static tw_result collect(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    if (in->failure) {
        o->fail_code = tw_failure_code(in->failure);
        snprintf(o->domain, sizeof o->domain, "%s", tw_failure_domain(in->failure));
        snprintf(o->message, sizeof o->message, "%s", tw_failure_message(in->failure));
    } else {
        o->none = in->value.ptr == NULL && in->value.free == NULL;
        o->value = int_of_value(in->value);
    }
    return TW_RESULT_NONE; /* handled; the chain frees in */
}

/* Adds the collector and drops the caller's reference. */
static void watch(tw_deferred *d, outcome *o)
{
    assert_non_null(d);
    memset(o, 0, sizeof *o);
    assert_int_equal(tw_deferred_add_both(d, collect, o), 0);
    tw_deferred_unref(d);
}

/* ----------------------------------------------------- 72: values, None */

static tw_result await_ready_value(void *arg)
{
    int *switched = arg;
    tw_result r = tw_await(tw_succeed(heap_int(41)));
    assert_null(r.failure);
    int v = int_of_value(r.value);
    tw_result_free(&r);
    *switched = 0;
    return tw_ok_value(heap_int(v + 1));
}

static void ready_value_comes_straight_back(void **state)
{
    tw_reactor *r = fake_reactor();
    int marker = -1;
    outcome o;
    watch(tw_coro_spawn(r, await_ready_value, &marker, NULL), &o);
    /* Ran to the end inside spawn: nothing suspended it. */
    assert_int_equal(marker, 0);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 42);
    assert_int_equal(o.fail_code, 0);
    assert_int_equal(tw__coro_live_count(r), 0);
    tw_reactor_free(r);
}

static tw_result fall_off_the_end(void *arg)
{
    return TW_RESULT_NONE;
}

static void falling_off_the_end_is_none(void **state)
{
    tw_reactor *r = fake_reactor();
    outcome o;
    watch(tw_coro_spawn(r, fall_off_the_end, NULL, NULL), &o);
    assert_int_equal(o.fired, 1);
    assert_true(o.none);
    tw_reactor_free(r);
}

static void spawn_refuses_what_is_not_a_coroutine(void **state)
{
    tw_reactor *r = fake_reactor();
    outcome o;
    watch(tw_coro_spawn(r, NULL, NULL, NULL), &o);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, TW_EINVAL);
    watch(tw_coro_spawn(NULL, fall_off_the_end, NULL, NULL), &o);
    assert_int_equal(o.fail_code, TW_EINVAL);
    tw_coro_options huge = { .stack_bytes = (size_t)4 << 30 };
    watch(tw_coro_spawn(r, fall_off_the_end, NULL, &huge), &o);
    assert_int_equal(o.fail_code, TW_EINVAL);
    tw_reactor_free(r);
}

/* ----------------------------------------------- 73: failures at the await */

typedef struct catcher {
    tw_deferred *d; /* what to await (taken) */
    int caught;
    int after;
} catcher;

static tw_result catch_and_go_on(void *arg)
{
    catcher *c = arg;
    tw_result r = tw_await(c->d);
    if (r.failure)
        c->caught = tw_failure_code(r.failure);
    tw_result_free(&r);
    c->after = 1; /* still running after the failure */
    return tw_ok_int(7);
}

static void failed_await_can_be_handled(void **state)
{
    tw_reactor *r = fake_reactor();
    /* Already failed. */
    catcher c = { .d = tw_fail(tw_failure_from_code(TW_EPROTO)) };
    outcome o;
    watch(tw_coro_spawn(r, catch_and_go_on, &c, NULL), &o);
    assert_int_equal(c.caught, TW_EPROTO);
    assert_int_equal(c.after, 1);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 0);
    assert_int_equal(o.value, 7);

    /* Fails later. */
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    catcher c2 = { .d = tw_deferred_ref(d) };
    watch(tw_coro_spawn(r, catch_and_go_on, &c2, NULL), &o);
    assert_int_equal(o.fired, 0);
    assert_int_equal(tw__coro_live_count(r), 1);
    tw_deferred_errback(d, tw_failure_from_code(TW_ECONNECTION_LOST));
    assert_int_equal(c2.caught, TW_ECONNECTION_LOST);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 7);
    /* The failure went to the coroutine: nothing left to report on d. */
    assert_false(tw_deferred_failed(d));
    tw_deferred_unref(d);
    assert_int_equal(error_logs, 0);
    tw_reactor_free(r);
}

static tw_result return_the_failure(void *arg)
{
    tw_result r = tw_await(tw_deferred_ref(arg));
    return r; /* the failure, unhandled: fails the coroutine's deferred */
}

static void unhandled_failure_fails_the_coroutine(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    outcome o;
    watch(tw_coro_spawn(r, return_the_failure, d, NULL), &o);
    tw_deferred_errback(d, tw_failure_new("myapp", 3, "bad row"));
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 3);
    assert_string_equal(o.domain, "myapp");
    assert_string_equal(o.message, "bad row");
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

/* ------------------------------------------------- 74: no stack growth */

typedef struct depth_probe {
    tw_reactor *r;
    size_t min_used, max_used;
    int n;
} depth_probe;

static tw_result return_nine(void *arg)
{
    return tw_ok_int(9);
}

static tw_result many_ready_awaits(void *arg)
{
    depth_probe *p = arg;
    p->min_used = (size_t)-1;
    for (int i = 0; i < 10000; i++) {
        tw_result r = tw_await(tw_succeed(heap_int(i)));
        assert_int_equal(int_of_value(r.value), i);
        tw_result_free(&r);
        /* testStackUsage2: a coroutine that finishes at once, awaited. */
        r = tw_await(tw_coro_spawn(p->r, return_nine, NULL, NULL));
        assert_int_equal(tw_value_as_int(r.value), 9);
        size_t used = tw__coro_stack_used();
        if (used < p->min_used)
            p->min_used = used;
        if (used > p->max_used)
            p->max_used = used;
        p->n++;
    }
    return TW_RESULT_NONE;
}

static void ready_results_do_not_grow_the_stack(void **state)
{
    tw_reactor *r = fake_reactor();
    depth_probe p = { .r = r };
    outcome o;
    watch(tw_coro_spawn(r, many_ready_awaits, &p, NULL), &o);
    assert_int_equal(o.fired, 1);
    assert_int_equal(p.n, 10000);
    assert_true(p.min_used > 0);
    assert_int_equal(p.min_used, p.max_used);
    /* 10,000 inner coroutines came and went on one pooled stack. */
    assert_int_equal(tw__coro_pool_size(r), 2);
    tw_reactor_free(r);
}

/* ------------------------------------------------------ 75: cancellation */

typedef struct cancellee {
    tw_reactor *r;
    tw_deferred *await_first; /* taken by the coroutine; NULL: a long sleep */
    int first_code;           /* what the first await failed with */
    int cleanup;              /* ran its cleanup */
    int mode;                 /* 0: translate to a value after a sleep; 1: to an error */
    int *resource;
} cancellee;

static tw_result cancellable(void *arg)
{
    cancellee *c = arg;
    c->resource = malloc(sizeof *c->resource);
    tw_result r = tw_await(c->await_first ? c->await_first : tw_sleep(c->r, 100));
    c->first_code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    /* Cleaning up may itself wait. */
    r = tw_await(tw_sleep(c->r, 1));
    tw_result_free(&r);
    free(c->resource);
    c->resource = NULL;
    c->cleanup = 1;
    if (c->mode == 1)
        return tw_err(tw_failure_new("myapp", 99, "gave up after cancel"));
    return tw_ok_value(heap_int(-1));
}

static void cancel_resumes_the_coroutine_which_decides(void **state)
{
    tw_reactor *r = fake_reactor();
    for (int mode = 0; mode < 2; mode++) {
        cancellee c = { .r = r, .mode = mode };
        tw_deferred *d = tw_coro_spawn(r, cancellable, &c, NULL);
        outcome o;
        watch(tw_deferred_ref(d), &o);
        tw_clock_advance(r, 10);
        assert_int_equal(o.fired, 0);
        tw_deferred_cancel(d);
        assert_int_equal(c.first_code, TW_ECANCELED);
        /* The coroutine is in its cleanup sleep: its deferred waits too. */
        assert_int_equal(c.cleanup, 0);
        assert_int_equal(o.fired, 0);
        assert_false(tw_deferred_has_result(d));
        tw_clock_advance(r, 1);
        assert_int_equal(c.cleanup, 1);
        assert_int_equal(o.fired, 1);
        if (mode == 0) {
            assert_int_equal(o.fail_code, 0);
            assert_int_equal(o.value, -1);
        } else {
            assert_int_equal(o.fail_code, 99);
            assert_string_equal(o.message, "gave up after cancel");
        }
        /* Cancelling a finished coroutine's deferred does nothing. */
        tw_deferred_cancel(d);
        tw_deferred_unref(d);
    }
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void second_cancel_reaches_the_cleanup_wait(void **state)
{
    tw_reactor *r = fake_reactor();
    cancellee c = { .r = r };
    tw_deferred *d = tw_coro_spawn(r, cancellable, &c, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    tw_deferred_cancel(d);
    assert_int_equal(c.first_code, TW_ECANCELED);
    assert_int_equal(o.fired, 0);
    tw_deferred_cancel(d); /* cuts the cleanup sleep short */
    assert_int_equal(c.cleanup, 1);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, -1);
    tw_deferred_unref(d);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

/* Twisted's test_asynchronousCancellation: the awaited deferred's chain
 * pauses (an earlier errback returns an unfired deferred) before it reaches
 * the coroutine; the coroutine's deferred must wait for all of it. */
static tw_result errback_waits(tw_result *in, void *arg)
{
    tw_deferred **gate = arg;
    *gate = tw_deferred_new(NULL, NULL);
    tw_result_free(in);
    return tw_chain(tw_deferred_ref(*gate));
}

static tw_result await_arg(void *arg)
{
    tw_result r = tw_await(tw_deferred_ref(arg));
    if (r.failure) {
        tw_failure *f = r.failure;
        r.failure = NULL;
        return tw_err(tw_failure_wrap(f, "myapp", 5, "translated"));
    }
    return r;
}

static void asynchronous_cancellation(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *awaited = tw_deferred_new(NULL, NULL);
    tw_deferred *gate = NULL;
    assert_int_equal(tw_deferred_add_errback(awaited, errback_waits, &gate), 0);
    tw_deferred *d = tw_coro_spawn(r, await_arg, awaited, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    tw_deferred_cancel(d);
    assert_non_null(gate); /* the cancel reached the awaited deferred */
    assert_int_equal(o.fired, 0);
    assert_int_equal(tw__coro_live_count(r), 1);
    tw_deferred_callback(gate, heap_int(13)); /* the chain goes on: value 13 */
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 0);
    assert_int_equal(o.value, 13);
    tw_deferred_unref(gate);
    tw_deferred_unref(awaited);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

static void cancel_into_value(tw_deferred *d, void *arg)
{
    tw_deferred_callback(d, heap_int(77));
}

/* A canceller that fires its deferred with a value: the coroutine sees the
 * value, not a failure, and goes on with it. */
static void canceller_may_turn_cancel_into_value(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *awaited = tw_deferred_new(cancel_into_value, NULL);
    tw_deferred *d = tw_coro_spawn(r, await_arg, awaited, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 0);
    assert_int_equal(o.value, 77);
    tw_deferred_unref(awaited);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

typedef struct selfish {
    tw_deferred *go;    /* lets spawn return before we cancel ourselves */
    tw_deferred *mine;  /* our own deferred (borrowed) */
    tw_deferred *other; /* awaited after the cancel; the test holds it */
    int code;
} selfish;

static tw_result cancel_myself(void *arg)
{
    selfish *s = arg;
    tw_result r = tw_await(tw_deferred_ref(s->go));
    tw_result_free(&r);
    /* Running, not awaiting, when cancelled: the next await gets it. */
    tw_deferred_cancel(s->mine);
    r = tw_await(tw_deferred_ref(s->other));
    s->code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    return tw_ok_int(1);
}

static void cancel_while_running_applies_to_the_next_await(void **state)
{
    tw_reactor *r = fake_reactor();
    selfish s = { .go = tw_deferred_new(NULL, NULL), .other = tw_deferred_new(NULL, NULL) };
    s.mine = tw_coro_spawn(r, cancel_myself, &s, NULL);
    outcome o;
    watch(tw_deferred_ref(s.mine), &o);
    tw_deferred_callback(s.go, TW_VALUE_NONE);
    assert_int_equal(s.code, TW_ECANCELED);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 0); /* it returned a value after the cancel */
    assert_int_equal(o.value, 1);
    assert_true(tw_deferred_called(s.other));
    tw_deferred_unref(s.go);
    tw_deferred_unref(s.other);
    tw_deferred_unref(s.mine);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ 76 */

static tw_result pass_through(void *arg)
{
    return tw_chain(tw_deferred_ref(arg)); /* the coroutine's result is d's */
}

static void returned_deferred_passes_through(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    outcome o;
    watch(tw_coro_spawn(r, pass_through, d, NULL), &o);
    assert_int_equal(o.fired, 0);
    tw_deferred_callback(d, heap_int(8));
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 8);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

static void paused_and_chained_deferreds_are_awaited(void **state)
{
    tw_reactor *r = fake_reactor();
    /* Paused with a result: waits for the unpause. */
    tw_deferred *p = tw_deferred_new(NULL, NULL);
    tw_deferred_pause(p);
    tw_deferred_callback(p, heap_int(3));
    outcome o;
    watch(tw_coro_spawn(r, await_arg, p, NULL), &o);
    assert_int_equal(o.fired, 0);
    tw_deferred_unpause(p);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 3);
    tw_deferred_unref(p);

    /* Fired with another deferred: waits for that one. */
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred_fire(outer, tw_chain(tw_deferred_ref(inner)));
    watch(tw_coro_spawn(r, await_arg, outer, NULL), &o);
    assert_int_equal(o.fired, 0);
    tw_deferred_callback(inner, heap_int(4));
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 4);
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);
    tw_reactor_free(r);
}

/* --------------------------------------------- a thousand timers in a row */

typedef struct sleeper {
    tw_reactor *r;
    int woke;
    double last_now;
} sleeper;

static tw_result thousand_sleeps(void *arg)
{
    sleeper *s = arg;
    for (int i = 0; i < 1000; i++) {
        tw_result r = tw_await(tw_sleep(s->r, 0.5));
        assert_null(r.failure);
        s->woke++;
        s->last_now = tw_reactor_now(s->r);
    }
    return tw_ok_int(s->woke);
}

static void thousand_timers_in_sequence(void **state)
{
    tw_reactor *r = fake_reactor();
    sleeper s = { .r = r };
    outcome o;
    watch(tw_coro_spawn(r, thousand_sleeps, &s, NULL), &o);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(s.woke, i);
        assert_int_equal(tw_reactor_timer_count(r), 1);
        tw_clock_advance(r, 0.25);
        assert_int_equal(s.woke, i); /* not yet */
        tw_clock_advance(r, 0.25);
    }
    assert_int_equal(s.woke, 1000);
    assert_true(s.last_now > 499.99 && s.last_now < 500.01);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 1000);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ nesting */

typedef struct nested {
    tw_reactor *r;
    int depth; /* this level */
    int max;
    int *finished;
} nested;

static tw_result nest_level(void *arg)
{
    nested *n = arg;
    if (n->depth == n->max) {
        tw_result r = tw_await(tw_sleep(n->r, 1));
        tw_result_free(&r);
        (*n->finished)++;
        return tw_ok_int(n->depth);
    }
    nested child = { n->r, n->depth + 1, n->max, n->finished };
    tw_result r = tw_await(tw_coro_spawn(n->r, nest_level, &child, NULL));
    (*n->finished)++;
    if (r.failure)
        return r;
    return tw_ok_int(tw_value_as_int(r.value) + 1000);
}

static void coroutines_await_coroutines(void **state)
{
    tw_reactor *r = fake_reactor();
    int finished = 0;
    nested top = { r, 0, 100, &finished };
    outcome o;
    watch(tw_coro_spawn(r, nest_level, &top, NULL), &o);
    assert_int_equal(tw__coro_live_count(r), 101);
    assert_int_equal(o.fired, 0);
    tw_clock_advance(r, 1);
    assert_int_equal(finished, 101);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 100 + 100 * 1000);
    assert_int_equal(tw__coro_live_count(r), 0);
    assert_int_equal(tw__coro_pool_size(r), 32); /* bounded */
    tw_reactor_free(r);
}

/* A nest 300 deep unwinds from a coroutine with the smallest stack: each
 * finished level's deferred fires from a loop, not by recursion (otherwise
 * some 70 KiB of frames would pile up on the firing stack). */
typedef struct deep {
    tw_reactor *r;
    tw_deferred *gate; /* the innermost awaits it */
    int depth, max;
} deep;

static tw_result deep_level(void *arg)
{
    deep *d = arg;
    if (d->depth == d->max)
        return tw_await(tw_deferred_ref(d->gate));
    deep child = *d;
    child.depth++;
    tw_result r = tw_await(tw_coro_spawn(d->r, deep_level, &child, NULL));
    if (r.failure)
        return r;
    return tw_ok_int(tw_value_as_int(r.value) + 1);
}

static tw_result open_the_gate(void *arg)
{
    tw_deferred_callback(arg, tw_value_int(0));
    return TW_RESULT_NONE;
}

static void deep_nest_unwinds_on_a_small_stack(void **state)
{
    tw_reactor *r = fake_reactor();
    deep top = { r, tw_deferred_new(NULL, NULL), 0, 300 };
    outcome o;
    watch(tw_coro_spawn(r, deep_level, &top, NULL), &o);
    assert_int_equal(tw__coro_live_count(r), 301);
    tw_coro_options small = { .stack_bytes = 1 }; /* the minimum */
    outcome g;
    watch(tw_coro_spawn(r, open_the_gate, top.gate, &small), &g);
    assert_int_equal(g.fired, 1);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 300);
    assert_int_equal(tw__coro_live_count(r), 0);
    tw_deferred_unref(top.gate);
    tw_reactor_free(r);
}

static tw_result cancel_it(void *arg)
{
    tw_deferred_cancel(arg);
    return TW_RESULT_NONE;
}

/* Cancelling the top of a nest 300 deep, from the smallest stack: the cancel
 * goes down level by level from a loop, not by recursion. */
static void deep_nest_cancels_on_a_small_stack(void **state)
{
    tw_reactor *r = fake_reactor();
    deep top = { r, tw_deferred_new(NULL, NULL), 0, 300 };
    tw_deferred *d = tw_coro_spawn(r, deep_level, &top, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    tw_coro_options small = { .stack_bytes = 1 };
    outcome c;
    watch(tw_coro_spawn(r, cancel_it, d, &small), &c);
    assert_int_equal(c.fired, 1);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, TW_ECANCELED); /* passed up by every level */
    assert_true(tw_deferred_called(top.gate));
    assert_int_equal(tw__coro_live_count(r), 0);
    tw_deferred_unref(d);
    tw_deferred_unref(top.gate);
    tw_reactor_free(r);
}

typedef struct twice {
    tw_deferred *d;
    int first, second_none;
} twice;

static tw_result await_twice(void *arg)
{
    twice *t = arg;
    tw_result r = tw_await(tw_deferred_ref(t->d));
    t->first = int_of_value(r.value);
    tw_result_free(&r);
    /* The first await took the result: the chain goes on with None. And d
     * is running its callbacks right now (it resumed us): the new pair runs
     * once we suspend. */
    r = tw_await(tw_deferred_ref(t->d));
    t->second_none = !r.failure && r.value.ptr == NULL;
    tw_result_free(&r);
    return TW_RESULT_NONE;
}

static void awaiting_the_same_deferred_twice(void **state)
{
    tw_reactor *r = fake_reactor();
    twice t = { .d = tw_deferred_new(NULL, NULL) };
    outcome o;
    watch(tw_coro_spawn(r, await_twice, &t, NULL), &o);
    tw_deferred_callback(t.d, heap_int(21));
    assert_int_equal(t.first, 21);
    assert_int_equal(t.second_none, 1);
    assert_int_equal(o.fired, 1);
    tw_deferred_unref(t.d);
    tw_reactor_free(r);
}

/* Cancelling the outermost of a nest cancels down to the innermost wait. */
static void cancel_reaches_the_innermost(void **state)
{
    tw_reactor *r = fake_reactor();
    int finished = 0;
    nested top = { r, 0, 5, &finished };
    tw_deferred *d = tw_coro_spawn(r, nest_level, &top, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    tw_deferred_cancel(d);
    /* The innermost's sleep failed; it returned its depth anyway; each
     * level added 1000 on the way out. */
    assert_int_equal(finished, 6);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, 5 + 5 * 1000);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

/* --------------------------------------------------- stacks: pool, size */

static tw_result big_frame(void *arg)
{
    volatile char buf[512 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = 2;
    tw_result r = tw_await(tw_sleep(arg, 1));
    tw_result_free(&r);
    return tw_ok_int(buf[0] + buf[sizeof buf - 1]);
}

static void stack_size_option_and_pool(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_coro_options big = { .stack_bytes = 1024 * 1024 * TW__FIBER_SANITIZER_SCALE };
    outcome o;
    watch(tw_coro_spawn(r, big_frame, r, &big), &o);
    assert_int_equal(tw__coro_pool_size(r), 0);
    tw_clock_advance(r, 1);
    assert_int_equal(o.value, 3);
    /* Too big for the pool's byte budget in a normal build: unmapped. */
    assert_true(tw__coro_pool_size(r) <= 1);

    watch(tw_coro_spawn(r, fall_off_the_end, NULL, NULL), &o);
    assert_int_equal(o.fired, 1);
    size_t pooled = tw__coro_pool_size(r);
    assert_true(pooled >= 1);
    watch(tw_coro_spawn(r, fall_off_the_end, NULL, NULL), &o);
    assert_int_equal(tw__coro_pool_size(r), pooled); /* reused, given back */
    tw_reactor_free(r);
}

static tw_result overflow(void *arg);

static __attribute__((noinline)) int recurse(volatile char *prev, int depth)
{
    volatile char frame[256];
    if (depth > (1 << 30))
        return 0;
    frame[0] = (char)depth;
    frame[255] = prev ? prev[0] : 0;
    return recurse(frame, depth + 1) + frame[255];
}

static tw_result overflow(void *arg)
{
    return tw_ok_int(recurse(NULL, 0));
}

static void overflowing_a_coroutine_stack_faults(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        tw_reactor *r = fake_reactor();
        tw_coro_options small = { .stack_bytes = 1 };
        tw_deferred_unref(tw_coro_spawn(r, overflow, NULL, &small));
        _exit(2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
    } else {
        assert_true(WIFEXITED(status));
        assert_true(WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2);
    }
}

/* ------------------------------------------------------------ errors */

static void await_outside_a_coroutine_is_an_error(void **state)
{
    assert_false(tw_coro_inside());
    assert_null(tw_coro_reactor());
    tw_result r = tw_await(tw_succeed(heap_int(1))); /* the value is freed */
    assert_non_null(r.failure);
    assert_int_equal(tw_failure_code(r.failure), TW_EINVAL);
    tw_result_free(&r);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_log, "outside a coroutine"));

    r = tw_await(NULL);
    assert_int_equal(tw_failure_code(r.failure), TW_EINVAL);
    tw_result_free(&r);

    tw_value v;
    tw_failure *err;
    assert_int_equal(tw_await_value(tw_deferred_new(NULL, NULL), &v, &err), TW_EINVAL);
    assert_non_null(err);
    assert_null(v.ptr);
    tw_failure_unref(err);
}

typedef struct thread_try {
    int code;
} thread_try;

static void *await_on_a_worker(void *arg)
{
    thread_try *t = arg;
    tw_result r = tw_await(tw_succeed(TW_VALUE_NONE));
    t->code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    return NULL;
}

static tw_result wait_on(void *arg)
{
    tw_result r = tw_await(tw_deferred_ref(arg));
    tw_result_free(&r);
    return tw_ok_int((intptr_t)pthread_self() == 0 ? 0 : 1);
}

static void await_on_another_thread_is_an_error(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    outcome o;
    watch(tw_coro_spawn(r, wait_on, d, NULL), &o); /* coroutines exist now */
    thread_try t = { 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, await_on_a_worker, &t), 0);
    pthread_join(th, NULL);
    assert_int_equal(t.code, TW_EWRONG_THREAD);
    tw_deferred_callback(d, TW_VALUE_NONE);
    assert_int_equal(o.fired, 1);
    tw_deferred_unref(d);
    tw_reactor_free(r);
}

/* A deferred fired (wrongly) on another thread: the coroutine resumes on its
 * reactor's thread, at the next loop turn. */
typedef struct where {
    tw_deferred *d;
    pthread_t resumed_on;
    int resumed;
} where;

static tw_result note_thread(void *arg)
{
    where *w = arg;
    tw_result r = tw_await(tw_deferred_ref(w->d));
    tw_result_free(&r);
    w->resumed_on = pthread_self();
    w->resumed = 1;
    return TW_RESULT_NONE;
}

static void *fire_elsewhere(void *arg)
{
    tw_deferred_callback(arg, TW_VALUE_NONE);
    return NULL;
}

static void fired_on_another_thread_resumes_at_home(void **state)
{
    tw_reactor *r = fake_reactor();
    where w = { .d = tw_deferred_new(NULL, NULL) };
    outcome o;
    watch(tw_coro_spawn(r, note_thread, &w, NULL), &o);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fire_elsewhere, w.d), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.resumed, 0);
    assert_int_equal(error_logs, 1);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(w.resumed, 1);
    assert_true(pthread_equal(w.resumed_on, pthread_self()));
    assert_int_equal(o.fired, 1);
    tw_deferred_unref(w.d);
    tw_reactor_free(r);
}

static tw_result await_myself(void *arg)
{
    tw_deferred **mine = arg;
    tw_result r = tw_await(tw_sleep(tw_coro_reactor(), 1)); /* let spawn return */
    tw_result_free(&r);
    r = tw_await(tw_deferred_ref(*mine));
    int code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    return tw_ok_int(code);
}

static void awaiting_your_own_deferred_is_an_error(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *mine = NULL;
    mine = tw_coro_spawn(r, await_myself, &mine, NULL);
    outcome o;
    watch(tw_deferred_ref(mine), &o);
    tw_clock_advance(r, 1);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, TW_EINVAL);
    tw_deferred_unref(mine);
    tw_reactor_free(r);
}

static tw_result await_orphan(void *arg)
{
    /* Our reference is the only one: nobody can ever fire it. */
    tw_result r = tw_await(tw_deferred_new(NULL, NULL));
    int code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    return tw_ok_int(code);
}

/* The coroutine keeps what it awaits alive: a deferred nobody else holds
 * waits (as in Twisted) until the coroutine is cancelled. */
static void awaiting_a_deferred_nobody_holds_waits_for_cancel(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *d = tw_coro_spawn(r, await_orphan, NULL, NULL);
    outcome o;
    watch(tw_deferred_ref(d), &o);
    assert_int_equal(o.fired, 0);
    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, TW_ECANCELED);
    tw_deferred_unref(d);
    /* And at reactor free. */
    watch(tw_coro_spawn(r, await_orphan, NULL, NULL), &o);
    assert_int_equal(o.fired, 0);
    tw_reactor_free(r);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, TW_ECANCELED);
}

static tw_result values_and_failures(void *arg)
{
    tw_value v;
    tw_failure *err;
    assert_int_equal(tw_await_value(tw_succeed(heap_int(5)), &v, &err), 0);
    assert_null(err);
    assert_int_equal(int_of_value(v), 5);
    tw_value_free(&v);
    assert_int_equal(tw_await_value(tw_fail(tw_failure_from_code(TW_ETIMEDOUT)), &v, &err),
                     TW_ETIMEDOUT);
    assert_null(v.ptr);
    assert_int_equal(tw_failure_code(err), TW_ETIMEDOUT);
    tw_failure_unref(err);
    assert_int_equal(tw_await_value(tw_fail(tw_failure_new("myapp", 4, "x")), NULL, NULL),
                     TW_EUNHANDLED);
    assert_int_equal(tw_await_value(tw_succeed(heap_int(6)), NULL, NULL), 0); /* freed */
    assert_true(tw_coro_inside());
    assert_ptr_equal(tw_coro_reactor(), arg);
    return TW_RESULT_NONE;
}

static void await_value_convenience(void **state)
{
    tw_reactor *r = fake_reactor();
    outcome o;
    watch(tw_coro_spawn(r, values_and_failures, r, NULL), &o);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.fail_code, 0);
    tw_reactor_free(r);
}

/* ------------------------------------------------ freeing the reactor */

typedef struct shutdown_probe {
    tw_reactor *r;
    tw_deferred *held; /* an unfired deferred with a reference of ours */
    int first_code;
    int second_code;
    int spawn_code;
    int done;
} shutdown_probe;

static tw_result hold_then_clean_up(void *arg)
{
    shutdown_probe *s = arg;
    tw_value resource = heap_int(1); /* must be freed on every path */
    tw_result r = tw_await(s->held ? tw_deferred_ref(s->held) : tw_sleep(s->r, 1e6));
    s->first_code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    /* Awaiting again while the reactor goes: cancelled at once. */
    r = tw_await(tw_sleep(s->r, 5));
    s->second_code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    /* And no new coroutines. */
    r = tw_await(tw_coro_spawn(s->r, fall_off_the_end, NULL, NULL));
    s->spawn_code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    tw_value_free(&resource);
    s->done = 1;
    return tw_ok_value(heap_int(2));
}

/* Both orders in which the reactor may run its layers' cleanups: the
 * deferred layer first (it forgets its timers and drops its references to
 * their deferreds; the coroutines' references keep them alive), or the
 * coroutines' first. Either way each awaited deferred is cancelled, every
 * coroutine runs its cleanup to the end (new awaits are cancelled at once,
 * spawning is refused) and its deferred fires. */
static void reactor_free_cancels_suspended_coroutines(void **state)
{
    enum { N = 20 };
    for (int coro_first = 0; coro_first < 2; coro_first++) {
        tw_reactor *r = fake_reactor();
        if (coro_first) /* the deferred layer registers its cleanup first */
            tw_deferred_unref(tw_sleep(r, 1));
        shutdown_probe s[N];
        outcome o[N];
        for (int i = 0; i < N; i++) {
            /* Odd ones await a deferred of ours (no canceller), even ones
             * sleep. */
            s[i] = (shutdown_probe){ .r = r, .held = i % 2 ? tw_deferred_new(NULL, NULL) : NULL };
            watch(tw_coro_spawn(r, hold_then_clean_up, &s[i], NULL), &o[i]);
        }
        assert_int_equal(tw__coro_live_count(r), N);
        tw_reactor_free(r);
        for (int i = 0; i < N; i++) {
            assert_int_equal(s[i].done, 1);
            assert_int_equal(s[i].first_code, TW_ECANCELED);
            assert_int_equal(s[i].second_code, TW_ECANCELED);
            assert_int_equal(s[i].spawn_code, TW_ECLOSED);
            assert_int_equal(o[i].fired, 1);
            assert_int_equal(o[i].value, 2);
        }
        /* The held deferreds were cancelled (they had no canceller): a
         * later firing would be swallowed. */
        for (int i = 1; i < N; i += 2) {
            assert_true(tw_deferred_called(s[i].held));
            tw_deferred_unref(s[i].held);
        }
    }
}

static tw_result wait_paused(void *arg)
{
    tw_result r = tw_await(tw_deferred_ref(arg));
    int code = r.failure ? tw_failure_code(r.failure) : 0;
    tw_result_free(&r);
    return tw_ok_int(code);
}

/* A coroutine awaiting a paused deferred cannot be resumed at free: it stays
 * suspended, reactor-less, and finishes when the deferred is unpaused. */
static void coroutine_outliving_its_reactor(void **state)
{
    tw_reactor *r = fake_reactor();
    tw_deferred *p = tw_deferred_new(NULL, NULL);
    tw_deferred_pause(p);
    outcome o;
    watch(tw_coro_spawn(r, wait_paused, p, NULL), &o);
    tw_reactor_free(r);
    assert_int_equal(o.fired, 0);
    assert_non_null(strstr(last_log, "still suspended"));
    tw_deferred_unpause(p); /* it was cancelled at free: the cancel arrives now */
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.value, TW_ECANCELED);
    tw_deferred_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ready_value_comes_straight_back, setup, teardown),
        cmocka_unit_test_setup_teardown(falling_off_the_end_is_none, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_refuses_what_is_not_a_coroutine, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_await_can_be_handled, setup, teardown),
        cmocka_unit_test_setup_teardown(unhandled_failure_fails_the_coroutine, setup, teardown),
        cmocka_unit_test_setup_teardown(ready_results_do_not_grow_the_stack, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_resumes_the_coroutine_which_decides, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(second_cancel_reaches_the_cleanup_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(asynchronous_cancellation, setup, teardown),
        cmocka_unit_test_setup_teardown(canceller_may_turn_cancel_into_value, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_while_running_applies_to_the_next_await, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(returned_deferred_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(paused_and_chained_deferreds_are_awaited, setup, teardown),
        cmocka_unit_test_setup_teardown(thousand_timers_in_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(coroutines_await_coroutines, setup, teardown),
        cmocka_unit_test_setup_teardown(deep_nest_unwinds_on_a_small_stack, setup, teardown),
        cmocka_unit_test_setup_teardown(deep_nest_cancels_on_a_small_stack, setup, teardown),
        cmocka_unit_test_setup_teardown(awaiting_the_same_deferred_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_reaches_the_innermost, setup, teardown),
        cmocka_unit_test_setup_teardown(stack_size_option_and_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(overflowing_a_coroutine_stack_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(await_outside_a_coroutine_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(await_on_another_thread_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(fired_on_another_thread_resumes_at_home, setup, teardown),
        cmocka_unit_test_setup_teardown(awaiting_your_own_deferred_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(awaiting_a_deferred_nobody_holds_waits_for_cancel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(await_value_convenience, setup, teardown),
        cmocka_unit_test_setup_teardown(reactor_free_cancels_suspended_coroutines, setup, teardown),
        cmocka_unit_test_setup_teardown(coroutine_outliving_its_reactor, setup, teardown),
    };
    return cmocka_run_group_tests_name("coro", tests, NULL, NULL);
}
