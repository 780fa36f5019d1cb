/* ctest: label=unit timeout=60 backends=once */
/* Timers on the fake clock: ordering, FIFO ties, cancel/reset/delay from
 * inside callbacks, stale handles, and many timers without leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/reactor.h"

typedef struct log {
    int calls[64];
    int n;
} log_t;

typedef struct ctx {
    tw_reactor *r;
    log_t log;
    tw_timer timers[8];
    int id;
} ctx;

typedef struct call {
    ctx *c;
    int id;
} call;

static tw_reactor *fake_reactor(void)
{
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    return r;
}

static void record(void *arg)
{
    call *k = arg;
    k->c->log.calls[k->c->log.n++] = k->id;
}

static void deadline_order_and_fifo_ties(void **state)
{
    ctx c = { .r = fake_reactor() };
    call k[6];
    double delays[6] = { 3, 1, 2, 1, 0, 1 };
    for (int i = 0; i < 6; i++) {
        k[i] = (call){ &c, i };
        tw_call_later(c.r, delays[i], record, &k[i]);
    }
    assert_int_equal(tw_reactor_timer_count(c.r), 6);
    assert_int_equal(tw_clock_advance(c.r, 0), 0);
    assert_int_equal(c.log.n, 1);
    assert_int_equal(c.log.calls[0], 4);
    tw_clock_advance(c.r, 1);
    assert_int_equal(c.log.n, 4);
    /* equal deadlines run in scheduling order */
    assert_int_equal(c.log.calls[1], 1);
    assert_int_equal(c.log.calls[2], 3);
    assert_int_equal(c.log.calls[3], 5);
    tw_clock_advance(c.r, 5);
    assert_int_equal(c.log.n, 6);
    assert_int_equal(c.log.calls[4], 2);
    assert_int_equal(c.log.calls[5], 0);
    assert_int_equal(tw_reactor_timer_count(c.r), 0);
    tw_reactor_free(c.r);
}

static void chain_now(void *arg)
{
    record(arg);
    call *k = arg;
    if (k->id < 3) {
        k->id++;
        tw_call_later(k->c->r, 0, chain_now, k);
    }
}

static void advance_zero_runs_chained_zero_delays(void **state)
{
    ctx c = { .r = fake_reactor() };
    call k = { &c, 0 };
    tw_call_later(c.r, 0, chain_now, &k);
    tw_clock_advance(c.r, 0);
    assert_int_equal(c.log.n, 4); /* 0, 1, 2, 3 all ran in one advance(0) */
    tw_reactor_free(c.r);
}

static void cancel_and_states(void **state)
{
    ctx c = { .r = fake_reactor() };
    call k = { &c, 1 };
    tw_timer t = tw_call_later(c.r, 1, record, &k);
    assert_true(tw_timer_active(t));
    assert_true(tw_timer_time_left(t) > 0.99);
    assert_int_equal(tw_timer_cancel(t), 0);
    assert_false(tw_timer_active(t));
    assert_int_equal(tw_timer_cancel(t), TW_EALREADY_CANCELLED);
    assert_int_equal(tw_timer_reset(t, 1), TW_EALREADY_CANCELLED);
    assert_true(tw_timer_time_left(t) < 0);
    tw_clock_advance(c.r, 2);
    assert_int_equal(c.log.n, 0);

    tw_timer u = tw_call_later(c.r, 1, record, &k);
    tw_clock_advance(c.r, 1);
    assert_int_equal(c.log.n, 1);
    assert_false(tw_timer_active(u));
    assert_int_equal(tw_timer_cancel(u), TW_EALREADY_CALLED);
    assert_int_equal(tw_timer_delay(u, 1), TW_EALREADY_CALLED);

    /* the zero handle is "no timer" */
    assert_int_equal(tw_timer_cancel(TW_TIMER_NONE), TW_EINVAL);
    assert_false(tw_timer_active(TW_TIMER_NONE));

    /* once its slot is reused, an old handle is recognised as stale and
     * never cancels the new timer */
    tw_timer fresh[600];
    for (int i = 0; i < 600; i++)
        fresh[i] = tw_call_later(c.r, 5, record, &k);
    assert_int_equal(tw_timer_cancel(t), TW_ESTALE);
    for (int i = 0; i < 600; i++)
        assert_int_equal(tw_timer_cancel(fresh[i]), 0);
    tw_reactor_free(c.r);
}

static void reset_and_delay(void **state)
{
    ctx c = { .r = fake_reactor() };
    call a = { &c, 1 }, b = { &c, 2 };
    tw_timer ta = tw_call_later(c.r, 1, record, &a);
    tw_call_later(c.r, 2, record, &b);
    assert_int_equal(tw_timer_reset(ta, 3), 0); /* now due at 3, after b */
    tw_clock_advance(c.r, 2);
    assert_int_equal(c.log.n, 1);
    assert_int_equal(c.log.calls[0], 2);
    assert_int_equal(tw_timer_delay(ta, 2), 0); /* 3 -> 5 */
    tw_clock_advance(c.r, 2.5);
    assert_int_equal(c.log.n, 1);
    assert_true(tw_timer_time_left(ta) > 0.49 && tw_timer_time_left(ta) < 0.51);
    tw_clock_advance(c.r, 0.5);
    assert_int_equal(c.log.n, 2);
    assert_int_equal(c.log.calls[1], 1);
    tw_reactor_free(c.r);
}

/* Callbacks that change timers, their own included. */
typedef struct meddler {
    ctx *c;
    tw_timer self, other;
    int runs;
    int cancel_self_rc;
    int mode;
} meddler;

static void meddle(void *arg)
{
    meddler *m = arg;
    m->runs++;
    m->c->log.calls[m->c->log.n++] = 100 + m->mode;
    switch (m->mode) {
    case 0: /* cancel itself: already called, as in Twisted */
        m->cancel_self_rc = tw_timer_cancel(m->self);
        break;
    case 1: /* cancel another */
        assert_int_equal(tw_timer_cancel(m->other), 0);
        break;
    case 2: /* reschedule itself twice, then stop */
        if (m->runs < 3)
            assert_int_equal(tw_timer_reset(m->self, 1), 0);
        break;
    case 3: /* reset itself, then cancel: never runs again */
        assert_int_equal(tw_timer_reset(m->self, 1), 0);
        assert_int_equal(tw_timer_cancel(m->self), 0);
        break;
    case 4: /* delay another so it comes after a third */
        assert_int_equal(tw_timer_delay(m->other, 10), 0);
        break;
    }
}

static void callbacks_change_timers(void **state)
{
    ctx c = { .r = fake_reactor() };
    call victim = { &c, 9 };

    meddler m0 = { &c };
    m0.mode = 0;
    m0.self = tw_call_later(c.r, 1, meddle, &m0);
    tw_clock_advance(c.r, 1);
    assert_int_equal(m0.cancel_self_rc, TW_EALREADY_CALLED);
    assert_false(tw_timer_active(m0.self));

    meddler m1 = { &c, .mode = 1 };
    m1.self = tw_call_later(c.r, 1, meddle, &m1);
    m1.other = tw_call_later(c.r, 1, record, &victim); /* same deadline, later */
    tw_clock_advance(c.r, 1);
    assert_int_equal(m1.runs, 1);
    for (int i = 0; i < c.log.n; i++)
        assert_int_not_equal(c.log.calls[i], 9);

    meddler m2 = { &c, .mode = 2 };
    m2.self = tw_call_later(c.r, 1, meddle, &m2);
    for (int i = 0; i < 5; i++)
        tw_clock_advance(c.r, 1);
    assert_int_equal(m2.runs, 3);
    assert_false(tw_timer_active(m2.self));

    meddler m3 = { &c, .mode = 3 };
    m3.self = tw_call_later(c.r, 1, meddle, &m3);
    for (int i = 0; i < 3; i++)
        tw_clock_advance(c.r, 1);
    assert_int_equal(m3.runs, 1);

    c.log.n = 0;
    meddler m4 = { &c, .mode = 4 };
    call third = { &c, 3 };
    m4.self = tw_call_later(c.r, 1, meddle, &m4);
    m4.other = tw_call_later(c.r, 2, record, &victim);
    tw_call_later(c.r, 5, record, &third);
    tw_clock_advance(c.r, 20);
    assert_int_equal(c.log.n, 3);
    assert_int_equal(c.log.calls[0], 104);
    assert_int_equal(c.log.calls[1], 3);
    assert_int_equal(c.log.calls[2], 9);
    assert_int_equal(tw_reactor_timer_count(c.r), 0);
    tw_reactor_free(c.r);
}

static void count_fire(void *arg)
{
    (*(int *)arg)++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double *g_seen;
static int g_nseen;
static tw_reactor *g_r;

static void note_time(void *arg)
{
    g_seen[g_nseen++] = tw_reactor_now(g_r);
}

static void many_timers_fire_in_order(void **state)
{
    tw_reactor *r = fake_reactor();
    enum { N = 20000 };
    double *delays = malloc(N * sizeof *delays);
    g_seen = malloc(N * sizeof *g_seen);
    g_nseen = 0;
    g_r = r;
    srand(7);
    for (int i = 0; i < N; i++) {
        delays[i] = (double)(rand() % 1000) / 100.0;
        tw_call_later(r, delays[i], note_time, NULL);
    }
    for (int i = 0; i < 1100; i++)
        tw_clock_advance(r, 0.01);
    assert_int_equal(g_nseen, N);
    qsort(delays, N, sizeof *delays, cmp_double);
    for (int i = 1; i < N; i++)
        assert_true(g_seen[i] >= g_seen[i - 1]);
    free(delays);
    free(g_seen);
    tw_reactor_free(r);
}

static void hundred_thousand_scheduled_and_cancelled(void **state)
{
    tw_reactor *r = fake_reactor();
    enum { N = 100000 };
    tw_timer *t = malloc(N * sizeof *t);
    int fired = 0;
    for (int i = 0; i < N; i++) {
        t[i] = tw_call_later(r, 1 + (i % 977) * 0.001, count_fire, &fired);
        assert_true(tw_timer_active(t[i]));
    }
    assert_int_equal(tw_reactor_timer_count(r), N);
    /* cancel in a scattered order so removals hit every heap position */
    for (int i = 0; i < N; i++) {
        size_t j = ((size_t)i * 7919) % N;
        assert_int_equal(tw_timer_cancel(t[j]), 0);
    }
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_clock_advance(r, 10);
    assert_int_equal(fired, 0);
    /* and the freed slots are reused without growth in behaviour */
    for (int i = 0; i < N; i++)
        t[i] = tw_call_later(r, 1, count_fire, &fired);
    tw_clock_advance(r, 1);
    assert_int_equal(fired, N);
    free(t);
    tw_reactor_free(r); /* valgrind/ASan: nothing left behind */
}

static void timers_left_pending_are_dropped_on_free(void **state)
{
    tw_reactor *r = fake_reactor();
    int fired = 0;
    for (int i = 0; i < 1000; i++)
        tw_call_later(r, i, count_fire, &fired);
    tw_reactor_free(r);
    assert_int_equal(fired, 0);
}

static void negative_and_huge_delays(void **state)
{
    tw_reactor *r = fake_reactor();
    int fired = 0;
    tw_timer neg = tw_call_later(r, -5, count_fire, &fired);
    tw_timer huge = tw_call_later(r, 1e300, count_fire, &fired);
    tw_call_later(r, 0.0 / 0.0, count_fire, &fired); /* NaN counts as 0 */
    tw_clock_advance(r, 0);
    assert_int_equal(fired, 2);
    assert_false(tw_timer_active(neg));
    assert_true(tw_timer_active(huge));
    assert_int_equal(tw_clock_advance(r, -1), TW_EINVAL);
    tw_reactor_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deadline_order_and_fifo_ties),
        cmocka_unit_test(advance_zero_runs_chained_zero_delays),
        cmocka_unit_test(cancel_and_states),
        cmocka_unit_test(reset_and_delay),
        cmocka_unit_test(callbacks_change_timers),
        cmocka_unit_test(many_timers_fire_in_order),
        cmocka_unit_test(hundred_thousand_scheduled_and_cancelled),
        cmocka_unit_test(timers_left_pending_are_dropped_on_free),
        cmocka_unit_test(negative_and_huge_delays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
