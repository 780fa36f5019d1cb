/* bench_threads — tw_defer_to_thread round trips, side by side with
 * Twisted's deferToThread.
 *
 *   one at a time: submit a job (returns an integer), turn the loop until
 *     its deferred fired, repeat: round trips per second and microseconds
 *     each (wakeup latency both ways: reactor -> worker -> reactor).
 *   pipelined, W in flight: keep W jobs submitted, submitting one more each
 *     time one fires: jobs per second, with 1 and with 4 workers.
 *
 * The same shapes run under Twisted (bench/twisted_threads.py, with
 * /usr/bin/python3) when that is available. Usage: bench_threads [--quick]
 * [--no-twisted]. Prints a markdown table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "twirl/threads.h"

static tw_result job(void *arg)
{
    return tw_ok_int((intptr_t)arg + 1);
}

typedef struct run {
    tw_reactor *r;
    long done, submitted, total;
    long in_flight;
} run;

static tw_result on_done(tw_result *in, void *arg);

static void submit(run *st)
{
    tw_deferred *d = tw_defer_to_thread(st->r, job, (void *)(intptr_t)st->submitted);
    st->submitted++;
    st->in_flight++;
    tw_deferred_add_both(d, on_done, st);
    tw_deferred_unref(d);
}

static tw_result on_done(tw_result *in, void *arg)
{
    run *st = arg;
    if (in->failure) {
        fprintf(stderr, "bench_threads: job failed: %s\n", tw_failure_message(in->failure));
        exit(1);
    }
    st->done++;
    st->in_flight--;
    if (st->submitted < st->total)
        submit(st);
    return TW_RESULT_NONE;
}

/* Jobs per second with `window` jobs kept in flight and `threads` workers. */
static double measure(long total, long window, unsigned threads)
{
    tw_reactor_options o = { .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&o, &r) < 0)
        exit(1);
    tw_thread_pool_options po = { .min_threads = threads, .max_threads = threads };
    tw_thread_pool_configure(r, &po);
    run st = { .r = r, .total = 1 };
    /* Warm up: start the workers. */
    submit(&st);
    while (st.done < 1)
        tw_reactor_iterate(r, -1);
    st = (run){ .r = r, .total = total };
    double t0 = now_s();
    for (long i = 0; i < window && st.submitted < total; i++)
        submit(&st);
    while (st.done < total)
        tw_reactor_iterate(r, -1);
    double t = now_s() - t0;
    tw_reactor_free(r);
    return (double)total / t;
}

static int run_twisted(int quick, double *rates, int n)
{
    char script[4096];
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    if (!slash)
        return 0;
    snprintf(script, sizeof script, "%.*s/twisted_threads.py", (int)(slash - src), src);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --raw%s 2>/dev/null", script,
             quick ? " --quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    int got = 0;
    char name[64];
    double v;
    while (got < n && fscanf(p, "%63s %lf", name, &v) == 2)
        rates[got++] = v;
    int rc = pclose(p);
    return rc == 0 && got == n;
}

int main(int argc, char **argv)
{
    int quick = 0, twisted = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--no-twisted") == 0)
            twisted = 0;
    }
    long n = quick ? 20000 : 200000;
    enum { NSHAPES = 3 };
    const char *labels[NSHAPES] = { "one at a time, 1 worker", "256 in flight, 1 worker",
                                    "256 in flight, 4 workers" };
    double ours[NSHAPES], theirs[NSHAPES];
    ours[0] = measure(n / 4, 1, 1);
    ours[1] = measure(n, 256, 1);
    ours[2] = measure(n, 256, 4);
    int have = twisted ? run_twisted(quick, theirs, NSHAPES) : 0;

    printf("| deferToThread | twirl jobs/s | Twisted jobs/s | ratio |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < NSHAPES; i++) {
        if (have)
            printf("| %s | %.0f | %.0f | %.1fx |\n", labels[i], ours[i], theirs[i],
                   ours[i] / theirs[i]);
        else
            printf("| %s | %.0f | - | - |\n", labels[i], ours[i]);
    }
    printf("\none at a time: %.1f us per round trip\n", 1e6 / ours[0]);
    if (twisted && !have)
        printf("(Twisted numbers skipped: /usr/bin/python3 with twisted not found)\n");
    return 0;
}
