/* ctest: label=unit timeout=60 backends=once */
/* DeferredLock, DeferredSemaphore, DeferredQueue (acceptance items 78-80). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/defer_sync.h"

static int live_values;
static int error_logs;

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

/* ------------------------------------------------------------ 78 */

static void lock_acquire_release(void **state)
{
    tw_deferred_lock *l;
    assert_int_equal(tw_deferred_lock_new(&l), 0);
    assert_false(tw_deferred_lock_locked(l));
    tw_deferred *a = tw_deferred_lock_acquire(l);
    assert_true(tw_deferred_has_result(a)); /* free: at once */
    got ga = { 0 };
    tw_deferred_add_callback(a, cb_keep, &ga);
    assert_ptr_equal(ga.r.value.ptr, l);
    assert_true(tw_deferred_lock_locked(l));

    tw_deferred *b = tw_deferred_lock_acquire(l);
    tw_deferred *c = tw_deferred_lock_acquire(l);
    assert_false(tw_deferred_called(b));
    got gb = { 0 }, gc = { 0 };
    tw_deferred_add_callback(b, cb_keep, &gb);
    tw_deferred_add_callback(c, cb_keep, &gc);
    /* release hands it straight to the next waiter: still locked. */
    assert_int_equal(tw_deferred_lock_release(l), 0);
    assert_int_equal(gb.calls, 1);
    assert_int_equal(gc.calls, 0);
    assert_true(tw_deferred_lock_locked(l));
    assert_int_equal(tw_deferred_lock_release(l), 0);
    assert_int_equal(gc.calls, 1);
    assert_int_equal(tw_deferred_lock_release(l), 0);
    assert_false(tw_deferred_lock_locked(l));
    assert_int_equal(tw_deferred_lock_release(l), TW_EINVAL);
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
    tw_deferred_lock_free(l);
}

/* Cancelling a waiting acquire fails it and removes it; cancelling a granted
 * one does nothing. */
static void lock_cancel_waiting(void **state)
{
    tw_deferred_lock *l;
    tw_deferred_lock_new(&l);
    tw_deferred *a = tw_deferred_lock_acquire(l);
    tw_deferred *b = tw_deferred_lock_acquire(l);
    tw_deferred *c = tw_deferred_lock_acquire(l);
    got gb = { 0 }, gc = { 0 };
    tw_deferred_add_both(b, cb_keep, &gb);
    tw_deferred_add_both(c, cb_keep, &gc);
    tw_deferred_cancel(b);
    assert_true(tw_failure_is(gb.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_deferred_cancel(a); /* granted: nothing */
    assert_false(tw_deferred_failed(a));
    tw_deferred_lock_release(l); /* goes to c, b was forgotten */
    assert_int_equal(gc.calls, 1);
    assert_null(gc.r.failure);
    tw_deferred_lock_release(l);
    tw_result_free(&gb.r);
    tw_deferred_unref(a);
    tw_deferred_unref(b);
    tw_deferred_unref(c);
    tw_deferred_lock_free(l);
}

typedef struct work {
    tw_deferred_lock *lock;
    int locked_inside;
    tw_deferred *pending;
} work;

static tw_result fn_sync(void *arg)
{
    work *w = arg;
    w->locked_inside = tw_deferred_lock_locked(w->lock);
    return tw_ok_value(heap_int(12));
}

static tw_result fn_async(void *arg)
{
    work *w = arg;
    w->pending = tw_deferred_new(NULL, NULL);
    return tw_chain(tw_deferred_ref(w->pending));
}

static tw_result fn_fail(void *arg)
{
    return tw_err(tw_failure_new("t", 1, "inside the lock"));
}

/* run: acquire, call, release when the result is there, return it. */
static void lock_run(void **state)
{
    tw_deferred_lock *l;
    tw_deferred_lock_new(&l);
    work w = { .lock = l };
    got g = { 0 };
    tw_deferred *d = tw_deferred_lock_run(l, fn_sync, &w);
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(w.locked_inside);
    assert_int_equal(ival(g.r.value), 12);
    assert_false(tw_deferred_lock_locked(l));
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    d = tw_deferred_lock_run(l, fn_async, &w);
    tw_deferred *d2 = tw_deferred_lock_run(l, fn_sync, &w); /* waits its turn */
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(tw_deferred_lock_locked(l));
    assert_false(tw_deferred_called(d2));
    tw_deferred_callback(w.pending, heap_int(4));
    assert_int_equal(ival(g.r.value), 4);
    assert_true(tw_deferred_has_result(d2)); /* ran after the release */
    tw_result_free(&g.r);
    tw_deferred_add_both(d2, cb_keep, &g);
    tw_result_free(&g.r);
    assert_false(tw_deferred_lock_locked(l));
    tw_deferred_unref(w.pending);
    tw_deferred_unref(d);
    tw_deferred_unref(d2);

    d = tw_deferred_lock_run(l, fn_fail, &w);
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, "t", 1));
    assert_false(tw_deferred_lock_locked(l));
    tw_result_free(&g.r);
    tw_deferred_unref(d);

    /* No function: an error. */
    d = tw_deferred_lock_run(l, NULL, NULL);
    tw_deferred_add_both(d, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_EINVAL));
    tw_result_free(&g.r);
    tw_deferred_unref(d);
    tw_deferred_lock_free(l);
}

/* A lock freed with waiters fails them. */
static void lock_free_fails_waiters(void **state)
{
    tw_deferred_lock *l;
    tw_deferred_lock_new(&l);
    tw_deferred *a = tw_deferred_lock_acquire(l);
    tw_deferred *b = tw_deferred_lock_acquire(l);
    got g = { 0 };
    tw_deferred_add_both(b, cb_keep, &g);
    tw_deferred_lock_free(l);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_deferred_cancel(b); /* fired: nothing, and no use of the freed lock */
    tw_result_free(&g.r);
    tw_deferred_unref(a);
    tw_deferred_unref(b);
}

/* ------------------------------------------------------------ 79 */

static void semaphore_tokens(void **state)
{
    tw_deferred_semaphore *s;
    assert_int_equal(tw_deferred_semaphore_new(0, &s), TW_EINVAL);
    assert_int_equal(tw_deferred_semaphore_new(3, &s), 0);
    assert_int_equal(tw_deferred_semaphore_limit(s), 3);
    tw_deferred *d[5];
    for (int i = 0; i < 5; i++)
        d[i] = tw_deferred_semaphore_acquire(s);
    for (int i = 0; i < 3; i++)
        assert_true(tw_deferred_has_result(d[i]));
    assert_false(tw_deferred_called(d[3]));
    assert_int_equal(tw_deferred_semaphore_tokens(s), 0);
    tw_deferred_cancel(d[3]);
    assert_true(tw_deferred_failed(d[3]));
    got g = { 0 };
    tw_deferred_add_both(d[3], cb_keep, &g);
    tw_result_free(&g.r);
    tw_deferred_semaphore_release(s); /* wakes d[4] */
    assert_true(tw_deferred_has_result(d[4]));
    assert_int_equal(tw_deferred_semaphore_tokens(s), 0);
    for (int i = 0; i < 3; i++)
        tw_deferred_semaphore_release(s);
    assert_int_equal(tw_deferred_semaphore_tokens(s), 3);
    assert_int_equal(tw_deferred_semaphore_release(s), TW_EINVAL);
    for (int i = 0; i < 5; i++)
        tw_deferred_unref(d[i]);
    tw_deferred_semaphore_free(s);
}

static tw_result fn_async_sem(void *arg)
{
    tw_deferred **slot = arg;
    *slot = tw_deferred_new(NULL, NULL);
    return tw_chain(tw_deferred_ref(*slot));
}

static void semaphore_run_limits_concurrency(void **state)
{
    tw_deferred_semaphore *s;
    tw_deferred_semaphore_new(2, &s);
    tw_deferred *inner[4] = { 0 };
    tw_deferred *outer[4];
    for (int i = 0; i < 4; i++)
        outer[i] = tw_deferred_semaphore_run(s, fn_async_sem, &inner[i]);
    assert_non_null(inner[0]);
    assert_non_null(inner[1]);
    assert_null(inner[2]); /* waiting for a token */
    tw_deferred_callback(inner[1], heap_int(1));
    assert_non_null(inner[2]);
    assert_null(inner[3]);
    tw_deferred_callback(inner[0], heap_int(0));
    tw_deferred_callback(inner[2], heap_int(2));
    tw_deferred_callback(inner[3], heap_int(3));
    assert_int_equal(tw_deferred_semaphore_tokens(s), 2);
    for (int i = 0; i < 4; i++) {
        got g = { 0 };
        tw_deferred_add_callback(outer[i], cb_keep, &g);
        assert_int_equal(ival(g.r.value), i);
        tw_result_free(&g.r);
        tw_deferred_unref(outer[i]);
        tw_deferred_unref(inner[i]);
    }
    tw_deferred_semaphore_free(s);
}

/* ------------------------------------------------------------ 80 */

static void queue_put_get(void **state)
{
    tw_deferred_queue *q;
    assert_int_equal(tw_deferred_queue_new(TW_QUEUE_UNLIMITED, TW_QUEUE_UNLIMITED, &q), 0);
    /* get on empty waits; put fires it at once. */
    tw_deferred *g1 = tw_deferred_queue_get(q);
    tw_deferred *g2 = tw_deferred_queue_get(q);
    assert_int_equal(tw_deferred_queue_waiting(q), 2);
    got a = { 0 }, b = { 0 };
    tw_deferred_add_callback(g1, cb_keep, &a);
    tw_deferred_add_callback(g2, cb_keep, &b);
    assert_int_equal(tw_deferred_queue_put(q, heap_int(1)), 0);
    assert_int_equal(ival(a.r.value), 1);
    assert_int_equal(b.calls, 0);
    assert_int_equal(tw_deferred_queue_put(q, heap_int(2)), 0);
    assert_int_equal(ival(b.r.value), 2);
    /* With nobody waiting, values are stored, in order. */
    tw_deferred_queue_put(q, heap_int(3));
    tw_deferred_queue_put(q, heap_int(4));
    assert_int_equal(tw_deferred_queue_pending(q), 2);
    tw_deferred *g3 = tw_deferred_queue_get(q);
    got c = { 0 };
    tw_deferred_add_callback(g3, cb_keep, &c);
    assert_int_equal(ival(c.r.value), 3);
    tw_result_free(&a.r);
    tw_result_free(&b.r);
    tw_result_free(&c.r);
    tw_deferred_unref(g1);
    tw_deferred_unref(g2);
    tw_deferred_unref(g3);
    tw_deferred_queue_free(q); /* frees the value still stored */
}

static void queue_overflow_underflow(void **state)
{
    tw_deferred_queue *q;
    tw_deferred_queue_new(2, 1, &q);
    tw_value v1 = heap_int(1), v2 = heap_int(2), v3 = heap_int(3);
    assert_int_equal(tw_deferred_queue_put(q, v1), 0);
    assert_int_equal(tw_deferred_queue_put(q, v2), 0);
    assert_int_equal(tw_deferred_queue_put(q, v3), TW_EFULL); /* QueueOverflow */
    tw_value_free(&v3);                                       /* still ours */
    tw_deferred_queue_free(q);

    tw_deferred_queue_new(2, 1, &q);
    tw_deferred *w1 = tw_deferred_queue_get(q);
    tw_deferred *w2 = tw_deferred_queue_get(q); /* QueueUnderflow */
    assert_true(tw_deferred_failed(w2));
    got g = { 0 };
    tw_deferred_add_errback(w2, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_EEMPTY));
    tw_result_free(&g.r);
    tw_deferred_unref(w2);
    tw_deferred_add_both(w1, cb_keep, &g);
    tw_deferred_queue_free(q); /* the waiting get fails */
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&g.r);
    tw_deferred_unref(w1);

    /* size 0: a put with nobody waiting overflows; backlog 0: a get on an
     * empty queue underflows. */
    tw_deferred_queue_new(0, 0, &q);
    tw_value v = heap_int(9);
    assert_int_equal(tw_deferred_queue_put(q, v), TW_EFULL);
    tw_value_free(&v);
    tw_deferred *u = tw_deferred_queue_get(q);
    tw_deferred_add_errback(u, cb_keep, &g);
    assert_true(tw_failure_is(g.r.failure, TW_DOMAIN, TW_EEMPTY));
    tw_result_free(&g.r);
    tw_deferred_unref(u);
    tw_deferred_queue_free(q);
}

/* A cancelled waiting get is forgotten: the next put goes to the next. */
static void queue_cancelled_get_forgotten(void **state)
{
    tw_deferred_queue *q;
    tw_deferred_queue_new(TW_QUEUE_UNLIMITED, TW_QUEUE_UNLIMITED, &q);
    tw_deferred *g1 = tw_deferred_queue_get(q);
    tw_deferred *g2 = tw_deferred_queue_get(q);
    got a = { 0 }, b = { 0 };
    tw_deferred_add_both(g1, cb_keep, &a);
    tw_deferred_add_both(g2, cb_keep, &b);
    tw_deferred_cancel(g1);
    assert_int_equal(tw_deferred_queue_waiting(q), 1);
    tw_deferred_queue_put(q, heap_int(5));
    assert_int_equal(ival(b.r.value), 5);
    assert_true(tw_failure_is(a.r.failure, TW_DOMAIN, TW_ECANCELED));
    tw_result_free(&a.r);
    tw_result_free(&b.r);
    tw_deferred_unref(g1);
    tw_deferred_unref(g2);
    tw_deferred_queue_free(q);
}

/* A consumer that gets again from inside its callback. */
typedef struct consumer {
    tw_deferred_queue *q;
    int seen[8];
    int n;
} consumer;

static tw_result consume(tw_result *in, void *arg)
{
    consumer *c = arg;
    c->seen[c->n++] = ival(in->value);
    if (c->n < 4) {
        tw_deferred *d = tw_deferred_queue_get(c->q);
        tw_deferred_add_callback(d, consume, c);
        tw_deferred_unref(d);
    }
    return TW_RESULT_NONE;
}

static void queue_consumer_loop(void **state)
{
    consumer c = { 0 };
    tw_deferred_queue_new(TW_QUEUE_UNLIMITED, 1, &c.q);
    tw_deferred_queue_put(c.q, heap_int(0));
    tw_deferred_queue_put(c.q, heap_int(1));
    tw_deferred *d = tw_deferred_queue_get(c.q);
    tw_deferred_add_callback(d, consume, &c);
    tw_deferred_unref(d);
    assert_int_equal(c.n, 2);
    tw_deferred_queue_put(c.q, heap_int(2));
    tw_deferred_queue_put(c.q, heap_int(3));
    assert_int_equal(c.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.seen[i], i);
    tw_deferred_queue_free(c.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lock_acquire_release, setup, teardown),
        cmocka_unit_test_setup_teardown(lock_cancel_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(lock_run, setup, teardown),
        cmocka_unit_test_setup_teardown(lock_free_fails_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(semaphore_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(semaphore_run_limits_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_overflow_underflow, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_cancelled_get_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_consumer_loop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
