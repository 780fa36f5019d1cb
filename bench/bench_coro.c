/* bench_coro — coroutine costs, with the context switch new fibers get:
 * assembly by default, makecontext/swapcontext with TWIRL_CORO_SWITCH=ucontext
 * in the environment (or in a build configured with
 * -DTWIRL_CORO_SWITCH=ucontext).
 *
 *   switch pair: a fiber yields back to its resumer in a loop: ns per
 *     suspend+resume (two context switches), the raw layer under coroutines.
 *   await, fired later: a coroutine awaits a fresh deferred that the
 *     thread's loop then fires: ns per round trip (deferred made, callback
 *     added, suspend, fire, resume).
 *   await, ready: awaiting an already-fired deferred: no switch at all.
 *   spawn+finish: spawning a coroutine that returns at once (a pooled stack)
 *     and dropping its already-fired deferred.
 *   spawn+wait+finish: the same with one suspension in between.
 *   fresh stack: mapping and unmapping a stack (what the pool saves).
 *
 * Usage: bench_coro [--quick] [--only=NAME]: prints a markdown table; NAME
 * (switch, await, ready, spawn, spawn-wait, fresh) runs one row alone, for
 * profiling, e.g.
 *     valgrind --tool=callgrind build/bench_coro --quick --only=await */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "async/coro_internal.h"
#include "bench_clock.h"
#include "twirl/coro.h"
#include "twirl/deferred.h"

static tw_reactor *fake(void)
{
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&o, &r) < 0)
        exit(1);
    return r;
}

static void row(const char *what, double ns)
{
    printf("| %-36s | %9.1f |\n", what, ns);
}

/* ------------------------------------------------------------ raw switch */

static void yield_forever(tw__fiber *f, void *arg)
{
    volatile long *n = arg;
    for (;;) {
        (*n)++;
        tw__fiber_yield(f);
    }
}

static double switch_pair(long n)
{
    tw__fiber *f;
    if (tw__fiber_new(0, 0, &f) < 0)
        exit(1);
    volatile long count = 0;
    tw__fiber_start(f, yield_forever, (void *)&count);
    for (long i = 0; i < 1000; i++) /* warm up */
        tw__fiber_resume(f);
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        tw__fiber_resume(f);
    double ns = (now_s() - t0) * 1e9 / (double)n;
    tw__fiber_free(f); /* reclaimed while suspended */
    return ns;
}

/* ------------------------------------------------------------ awaits */

typedef struct loop {
    long n;
    tw_deferred *slot; /* the deferred the coroutine waits on now */
} loop;

static tw_result await_fresh(void *arg)
{
    loop *l = arg;
    for (long i = 0; i < l->n; i++) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        l->slot = tw_deferred_ref(d);
        tw_result r = tw_await(d);
        tw_result_free(&r);
    }
    l->slot = NULL;
    return TW_RESULT_NONE;
}

static double await_fired_later(tw_reactor *r, long n)
{
    loop l = { .n = n };
    double t0 = now_s();
    tw_deferred *done = tw_coro_spawn(r, await_fresh, &l, NULL);
    while (l.slot) {
        tw_deferred *d = l.slot;
        tw_deferred_callback(d, TW_VALUE_NONE); /* resumes the coroutine */
        tw_deferred_unref(d);
    }
    double ns = (now_s() - t0) * 1e9 / (double)n;
    tw_deferred_unref(done);
    return ns;
}

static tw_result await_ready_loop(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++) {
        tw_result r = tw_await(tw_succeed(TW_VALUE_NONE));
        tw_result_free(&r);
    }
    return TW_RESULT_NONE;
}

static double await_ready(tw_reactor *r, long n)
{
    double t0 = now_s();
    tw_deferred_unref(tw_coro_spawn(r, await_ready_loop, &n, NULL));
    return (now_s() - t0) * 1e9 / (double)n;
}

/* ------------------------------------------------------------ spawning */

static tw_result return_at_once(void *arg)
{
    return TW_RESULT_NONE;
}

static double spawn_finish(tw_reactor *r, long n)
{
    tw_deferred_unref(tw_coro_spawn(r, return_at_once, NULL, NULL)); /* fills the pool */
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        tw_deferred_unref(tw_coro_spawn(r, return_at_once, NULL, NULL));
    return (now_s() - t0) * 1e9 / (double)n;
}

static tw_result wait_once(void *arg)
{
    tw_result r = tw_await(tw_deferred_ref(arg));
    tw_result_free(&r);
    return TW_RESULT_NONE;
}

static double spawn_wait_finish(tw_reactor *r, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        tw_deferred *c = tw_coro_spawn(r, wait_once, d, NULL);
        tw_deferred_callback(d, TW_VALUE_NONE);
        tw_deferred_unref(d);
        tw_deferred_unref(c);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

static double fresh_stack(long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        tw__fiber *f;
        if (tw__fiber_new(0, 0, &f) < 0)
            exit(1);
        tw__fiber_free(f);
    }
    return (now_s() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv)
{
    bool quick = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
        else {
            fprintf(stderr, "usage: bench_coro [--quick] [--only=switch|await|ready|spawn|"
                            "spawn-wait|fresh]\n");
            return 2;
        }
    }
    long n = quick ? 200000 : 5000000;
    tw_reactor *r = fake();
#define RUN(name, what, expr)                 \
    do {                                      \
        if (!only || strcmp(only, name) == 0) \
            row(what, expr);                  \
    } while (0)
    printf("Context switch: %s\n\n", tw__fiber_switch_name());
    printf("| %-36s | %9s |\n", "operation", "ns/op");
    printf("|%s|%s|\n", "--------------------------------------", "-----------");
    RUN("switch", "switch pair (suspend+resume)", switch_pair(n));
    RUN("await", "await, fired later (round trip)", await_fired_later(r, n / 4));
    RUN("ready", "await, ready (no switch)", await_ready(r, n / 4));
    RUN("spawn", "spawn+finish (pooled stack)", spawn_finish(r, n / 4));
    RUN("spawn-wait", "spawn+wait+finish", spawn_wait_finish(r, n / 4));
    RUN("fresh", "fresh stack: mmap+guard+munmap", fresh_stack(quick ? 2000 : 50000));
#undef RUN
    tw_reactor_free(r);
    return 0;
}
