/* ctest: label=unit timeout=120 backends=once */
/* "Fail the N-th allocation" runs over deferreds, failures, lists, gather,
 * locks, queues, defer_later, add_timeout and looping calls: for every N,
 * the N-th allocation inside a scenario fails; nothing may crash, abort, or
 * leak (allocations and counted values balance afterwards).
 *
 * The allocator is interposed by defining malloc and friends here, over
 * glibc's __libc_* functions; sanitizer builds (which interpose malloc
 * themselves) skip this test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "async/async_internal.h"
#include "twirl/defer_sync.h"
#include "twirl/deferred.h"
#include "twirl/task.h"

#ifndef TWIRL_SANITIZE

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static long outstanding; /* allocations minus frees, while counting */
static long countdown;   /* > 0: the countdown-th allocation fails */
static long seen;        /* allocations while armed */

static int should_fail(void)
{
    if (countdown <= 0)
        return 0;
    seen++;
    return --countdown == 0;
}

void *malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __libc_malloc(n);
    if (p)
        outstanding++;
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(a, b);
    if (p)
        outstanding++;
    return p;
}

void *realloc(void *old, size_t n)
{
    if (!old)
        return malloc(n);
    if (should_fail())
        return NULL;
    return __libc_realloc(old, n);
}

void free(void *p)
{
    if (p)
        outstanding--;
    __libc_free(p);
}

/* ------------------------------------------------------------ scenario */

static int live_values;

static void free_counted(void *p)
{
    live_values--;
    free(p);
}

static tw_value heap_int(int n)
{
    int *p = malloc(sizeof *p);
    if (!p)
        return TW_VALUE_NONE;
    *p = n;
    live_values++;
    return tw_value_make(p, free_counted);
}

static void quiet(tw_log_level level, const char *domain, const char *message, void *arg)
{
}

static tw_result inc(tw_result *in, void *arg)
{
    return tw_ok_value(heap_int(1));
}

static tw_result swallow(tw_result *in, void *arg)
{
    return TW_RESULT_NONE;
}

static tw_result return_inner(tw_result *in, void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

static tw_result later_fn(void *arg)
{
    return tw_ok_value(heap_int(2));
}

static tw_result tick(void *arg)
{
    ++*(int *)arg;
    return TW_RESULT_NONE;
}

static void unref_all(tw_deferred **ds, int n)
{
    for (int i = 0; i < n; i++)
        tw_deferred_unref(ds[i]);
}

static void scenario(tw_reactor *r)
{
    /* A chain that spills past the inline entries. */
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    if (d) {
        for (int i = 0; i < 20; i++)
            tw_deferred_add_callback(d, inc, NULL);
        tw_deferred_add_errback(d, swallow, NULL);
        tw_deferred_callback(d, heap_int(0));
        tw_deferred_unref(d);
    }

    tw__deferred_cache_drain(); /* so deferreds come from malloc again */
    /* An outer waiting on an inner. */
    tw_deferred *inner = tw_deferred_new(NULL, NULL);
    tw_deferred *outer = tw_deferred_new(NULL, NULL);
    if (inner && outer) {
        for (int i = 0; i < 5; i++)
            tw_deferred_add_callback(inner, inc, NULL);
        tw_deferred_add_callback(outer, return_inner, inner);
        tw_deferred_add_errback(outer, swallow, NULL);
        tw_deferred_callback(outer, heap_int(0));
        tw_deferred_errback(inner, tw_failure_new("t", 1, "inner %s", "failed"));
        tw_deferred_add_errback(inner, swallow, NULL);
    }
    tw_deferred_unref(inner);
    tw_deferred_unref(outer);

    tw__deferred_cache_drain();
    /* Lists and gather. */
    tw_deferred *ds[3] = { tw_deferred_new(NULL, NULL), tw_succeed(heap_int(1)),
                           tw_deferred_new(NULL, NULL) };
    if (ds[0] && ds[1] && ds[2]) {
        tw_deferred *l = tw_deferred_list(ds, 3, TW_LIST_CONSUME_ERRORS);
        tw_deferred *g = tw_gather(ds, 3, true);
        tw_deferred_callback(ds[0], heap_int(3));
        tw_deferred_errback(ds[2], tw_failure_new("t", 2, "x"));
        if (g)
            tw_deferred_add_errback(g, swallow, NULL);
        if (l)
            tw_deferred_add_errback(l, swallow, NULL);
        tw_deferred_unref(l);
        tw_deferred_unref(g);
    }
    for (int i = 0; i < 3; i++)
        if (ds[i])
            tw_deferred_add_errback(ds[i], swallow, NULL);
    unref_all(ds, 3);

    tw__deferred_cache_drain();
    /* Lock and queue. */
    tw_deferred_lock *lock;
    if (tw_deferred_lock_new(&lock) == 0) {
        tw_deferred *a = tw_deferred_lock_acquire(lock);
        tw_deferred *b = tw_deferred_lock_acquire(lock);
        if (b)
            tw_deferred_add_errback(b, swallow, NULL);
        if (a)
            tw_deferred_lock_release(lock);
        tw_deferred_unref(a);
        tw_deferred_unref(b);
        tw_deferred_lock_free(lock);
    }
    tw_deferred_queue *q;
    if (tw_deferred_queue_new(4, 4, &q) == 0) {
        tw_deferred *g1 = tw_deferred_queue_get(q);
        for (int i = 0; i < 3; i++) {
            tw_value v = heap_int(i);
            if (tw_deferred_queue_put(q, v) < 0)
                tw_value_free(&v);
        }
        tw_deferred *g2 = tw_deferred_queue_get(q);
        tw_deferred_unref(g1);
        tw_deferred_unref(g2);
        tw_deferred_queue_free(q);
    }

    tw__deferred_cache_drain();
    /* The clock. */
    tw_deferred *later = tw_defer_later(r, 1, later_fn, NULL);
    tw_deferred *timed = tw_deferred_new(NULL, NULL);
    if (timed) {
        tw_deferred_add_timeout(timed, 0.5, r);
        tw_deferred_add_errback(timed, swallow, NULL);
    }
    int ticks = 0;
    tw_looping_call *lc = NULL;
    if (tw_looping_call_new(r, tick, &ticks, &lc) == 0) {
        tw_deferred *done = NULL;
        if (tw_looping_call_start(lc, 0.25, true, &done) == 0 && done)
            tw_deferred_add_errback(done, swallow, NULL);
        tw_deferred_unref(done);
    }
    tw_clock_advance(r, 2);
    tw_looping_call_free(lc);
    tw_deferred_unref(later);
    tw_deferred_unref(timed);

    /* A failure with a cause and a long message, rendered. */
    char big[300];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tw_failure *f = tw_failure_wrap(tw_failure_new("a", 1, "%s", big), "b", 2, "wrapped");
    char *text = tw_failure_render(f);
    free(text);
    tw_failure_unref(f);
}

static void every_allocation_may_fail(void **state)
{
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload"))
        skip(); /* valgrind owns malloc there; this test counts on its own */
    tw_log_set_handler(quiet, NULL);
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    /* A clean run first, to know how many allocations there are. */
    tw_reactor *r;
    tw__deferred_cache_drain();
    long before = outstanding;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    countdown = 1L << 40;
    seen = 0;
    scenario(r);
    long total = seen;
    countdown = 0;
    tw_reactor_free(r);
    tw__deferred_cache_drain();
    assert_int_equal(outstanding, before);
    assert_int_equal(live_values, 0);
    assert_true(total > 50);
    printf("%ld allocations in the scenario; each made to fail in turn\n", total);

    for (long n = 1; n <= total; n++) {
        tw__deferred_cache_drain();
        before = outstanding;
        assert_int_equal(tw_reactor_new(&o, &r), 0);
        countdown = n;
        scenario(r);
        countdown = 0;
        tw_reactor_free(r);
        tw__deferred_cache_drain();
        if (outstanding != before || live_values != 0)
            fail_msg("allocation %ld of %ld failing: %ld blocks leaked, %d values live", n, total,
                     outstanding - before, live_values);
    }
    tw_log_set_handler(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_allocation_may_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void)
{
    printf("skipped: sanitizer builds interpose malloc themselves\n");
    return 0;
}

#endif
