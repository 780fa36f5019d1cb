/* bench_timers — timer and cross-thread-call costs.
 *
 *   schedule+cancel: with L timers already live (random deadlines), schedule
 *     one more and cancel it again, N times: ns per pair.
 *   schedule+fire: schedule L timers at random deadlines, then advance a fake
 *     clock past them all: ns per timer (schedule, heap pop, call).
 *   call_from_thread: P producer threads each queue M calls; the reactor
 *     runs them: calls per second.
 *
 * Usage: bench_timers [--quick]. Prints a markdown table. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "twirl/reactor.h"

static void noop(void *arg)
{
    (void)arg;
}

static uint64_t rng = 88172645463325252ull;
static double rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static tw_reactor *fake(void)
{
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&o, &r) < 0)
        exit(1);
    return r;
}

static double schedule_cancel(size_t live, size_t n)
{
    tw_reactor *r = fake();
    for (size_t i = 0; i < live; i++)
        tw_call_later(r, 1 + rnd() * 1000, noop, NULL);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        tw_timer t = tw_call_later(r, 1 + rnd() * 1000, noop, NULL);
        tw_timer_cancel(t);
    }
    double ns = (now_s() - t0) * 1e9 / (double)n;
    tw_reactor_free(r);
    return ns;
}

static double schedule_fire(size_t live)
{
    tw_reactor *r = fake();
    double t0 = now_s();
    for (size_t i = 0; i < live; i++)
        tw_call_later(r, rnd() * 1000, noop, NULL);
    tw_clock_advance(r, 1001);
    double ns = (now_s() - t0) * 1e9 / (double)live;
    tw_reactor_free(r);
    return ns;
}

typedef struct xbench {
    tw_reactor *r;
    long target;
    long done;
    long per_thread;
} xbench;

static void xcall(void *arg)
{
    xbench *x = arg;
    if (++x->done == x->target)
        tw_reactor_stop(x->r);
}

static void *producer(void *arg)
{
    xbench *x = arg;
    for (long i = 0; i < x->per_thread; i++)
        while (tw_call_from_thread(x->r, xcall, x) < 0)
            ;
    return NULL;
}

static double cross_thread(int threads, long per_thread)
{
    xbench x = { .per_thread = per_thread, .target = threads * per_thread };
    tw_reactor_options o = { .signals = TW_SIGNALS_OFF };
    if (tw_reactor_new(&o, &x.r) < 0)
        exit(1);
    pthread_t th[16];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, producer, &x);
    tw_reactor_run(x.r);
    double secs = now_s() - t0;
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    tw_reactor_free(x.r);
    return (double)x.target / secs;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    size_t n = quick ? 200000 : 2000000;
    printf("| live timers | schedule+cancel ns/pair | schedule+fire ns/timer |\n");
    printf("|---:|---:|---:|\n");
    for (size_t live = 1000; live <= 1000000; live *= 10)
        printf("| %zu | %.1f | %.1f |\n", live, schedule_cancel(live, n), schedule_fire(live));
    printf("\n| producer threads | call_from_thread calls/s |\n|---:|---:|\n");
    long per = quick ? 100000 : 1000000;
    for (int t = 1; t <= 4; t *= 2)
        printf("| %d | %.0f |\n", t, cross_thread(t, per / t));
    return 0;
}
