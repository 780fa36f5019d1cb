/* bench_deferred — deferred costs, side by side with Twisted's Deferred.
 *
 *   chain of 10: make a deferred, add ten callbacks (each returns its input
 *     plus one), fire it with 0, drop it: ns per chain and per callback, and
 *     callbacks per second.
 *   create+fire+free: make a deferred, fire it with an integer, drop it (no
 *     callbacks): ns each.
 *   late callback: an already-fired deferred (succeed) gets one callback.
 *   chained inner: a callback returns a second, unfired deferred, which is
 *     fired afterwards (the chaining path): ns per pair.
 *   gather of 10: gather ten fired deferreds: ns per gather.
 *
 * The same shapes run under Twisted (bench/twisted_deferred.py, with
 * /usr/bin/python3) when that is available; the table then shows both and
 * the ratio. Usage: bench_deferred [--quick] [--no-twisted]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "twirl/deferred.h"

static volatile intptr_t sink;

static tw_result inc(tw_result *in, void *arg)
{
    return tw_ok_int(tw_value_as_int(in->value) + 1);
}

static tw_result keep(tw_result *in, void *arg)
{
    sink = tw_value_as_int(in->value);
    return TW_RESULT_NONE;
}

static tw_result return_inner(tw_result *in, void *arg)
{
    return tw_chain(tw_deferred_ref(arg));
}

/* Each shape runs n times per round; the best of several rounds counts. */
typedef void (*shape_fn)(long n);

static void chain10(long n)
{
    for (long i = 0; i < n; i++) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        for (int k = 0; k < 10; k++)
            tw_deferred_add_callback(d, inc, NULL);
        tw_deferred_callback(d, tw_value_int(0));
        tw_deferred_unref(d);
    }
}

static void create_fire(long n)
{
    for (long i = 0; i < n; i++) {
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        tw_deferred_callback(d, tw_value_int(i));
        tw_deferred_unref(d);
    }
}

static void late_callback(long n)
{
    for (long i = 0; i < n; i++) {
        tw_deferred *d = tw_succeed(tw_value_int(i));
        tw_deferred_add_callback(d, inc, NULL);
        tw_deferred_unref(d);
    }
}

static void chained_inner(long n)
{
    for (long i = 0; i < n; i++) {
        tw_deferred *outer = tw_deferred_new(NULL, NULL);
        tw_deferred *inner = tw_deferred_new(NULL, NULL);
        tw_deferred_add_callback(outer, return_inner, inner);
        tw_deferred_add_callback(outer, keep, NULL);
        tw_deferred_callback(outer, tw_value_int(0));
        tw_deferred_callback(inner, tw_value_int(i));
        tw_deferred_unref(inner);
        tw_deferred_unref(outer);
    }
}

static void gather10(long n)
{
    tw_deferred *ds[10];
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < 10; k++)
            ds[k] = tw_succeed(tw_value_int(k));
        tw_deferred *g = tw_gather(ds, 10, false);
        for (int k = 0; k < 10; k++)
            tw_deferred_unref(ds[k]);
        tw_deferred_unref(g);
    }
}

static double best_ns(shape_fn fn, long n, int rounds)
{
    fn(n / 10 + 1); /* warm up */
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t = now_s();
        fn(n);
        double ns = (now_s() - t) * 1e9 / (double)n;
        if (ns < best)
            best = ns;
    }
    return best;
}

/* Runs the Twisted twin of this benchmark; returns the number of shapes
 * read ("name ns" lines), 0 if Twisted is not there. */
static int run_twisted(int quick, const char **names, double *ns, int nshapes)
{
    char script[4096];
    const char *src = __FILE__; /* an absolute path in a CMake build */
    const char *slash = strrchr(src, '/');
    if (!slash)
        return 0;
    snprintf(script, sizeof script, "%.*s/twisted_deferred.py", (int)(slash - src), src);
    FILE *probe = fopen(script, "r");
    if (!probe)
        return 0;
    fclose(probe);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --raw%s 2>/dev/null", script,
             quick ? " --quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        char name[64];
        double v;
        if (sscanf(line, "%63s %lf", name, &v) != 2)
            continue;
        for (int i = 0; i < nshapes; i++) {
            if (strcmp(name, names[i]) == 0) {
                ns[i] = v;
                found++;
            }
        }
    }
    pclose(p);
    return found;
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
    long n = quick ? 200000 : 2000000;
    int rounds = quick ? 3 : 7;
    static const char *names[] = { "chain10", "create_fire", "late_callback", "chained_inner",
                                   "gather10" };
    static const char *labels[] = { "chain of 10 callbacks (per chain)", "create+fire+free",
                                    "late callback on a fired deferred",
                                    "callback returns unfired inner", "gather of 10 fired" };
    shape_fn fns[] = { chain10, create_fire, late_callback, chained_inner, gather10 };
    enum { NSHAPES = 5 };
    double ours[NSHAPES], theirs[NSHAPES];
    for (int i = 0; i < NSHAPES; i++) {
        ours[i] = best_ns(fns[i], i == 4 ? n / 10 : n, rounds);
        theirs[i] = 0;
    }
    int have = twisted ? run_twisted(quick, names, theirs, NSHAPES) : 0;

    printf("| shape | twirl ns | Twisted ns | ratio |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < NSHAPES; i++) {
        if (have && theirs[i] > 0)
            printf("| %s | %.1f | %.0f | %.0fx |\n", labels[i], ours[i], theirs[i],
                   theirs[i] / ours[i]);
        else
            printf("| %s | %.1f | - | - |\n", labels[i], ours[i]);
    }
    printf("\nchain of 10: %.1f ns per callback, %.1f M callbacks/s", ours[0] / 10, 10e3 / ours[0]);
    if (have && theirs[0] > 0)
        printf(" (Twisted: %.0f ns per callback, %.2f M callbacks/s)", theirs[0] / 10,
               10e3 / theirs[0]);
    printf("\n");
    if (!have && twisted)
        printf("(Twisted numbers skipped: /usr/bin/python3 with twisted, or "
               "bench/twisted_deferred.py, not found)\n");
    return 0;
}
