/* ctest: label=integration timeout=120 */
/* The real loop on each backend: fd watchers, cross-thread calls, signals,
 * system event triggers, run/stop/iterate. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "twirl/log.h"
#include "twirl/reactor.h"

static tw_reactor *new_reactor(tw_signal_mode signals)
{
    tw_reactor_options o = { .signals = signals };
    tw_reactor *r = NULL;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    return r;
}

static void stop_cb(void *arg)
{
    tw_reactor_stop(arg);
}

/* --------------------------------------------------------- fd watchers */

typedef struct pipe_ctx {
    tw_reactor *r;
    int fds[2];
    tw_watcher *rw, *ww;
    int reads, writes;
    char got[64];
    size_t ngot;
} pipe_ctx;

static void on_pipe_readable(tw_watcher *w, int fd, unsigned events, void *arg)
{
    pipe_ctx *p = arg;
    assert_true(events & TW_READABLE);
    ssize_t n = read(fd, p->got + p->ngot, sizeof p->got - p->ngot);
    if (n > 0)
        p->ngot += (size_t)n;
    p->reads++;
    if (p->ngot >= 5) {
        tw_watcher_free(w); /* free itself inside its own callback */
        p->rw = NULL;
        tw_reactor_stop(p->r);
    }
}

static void on_pipe_writable(tw_watcher *w, int fd, unsigned events, void *arg)
{
    pipe_ctx *p = arg;
    assert_true(events & TW_WRITABLE);
    assert_int_equal(write(fd, "hello", 5), 5);
    p->writes++;
    /* level-triggered: stop asking, or this fires forever */
    assert_int_equal(tw_watcher_set(w, 0), 0);
}

static void watcher_on_a_pipe(void **state)
{
    pipe_ctx p = { .r = new_reactor(TW_SIGNALS_OFF) };
    assert_int_equal(pipe(p.fds), 0);
    assert_int_equal(tw_watcher_new(p.r, p.fds[0], TW_READABLE, on_pipe_readable, &p, &p.rw), 0);
    assert_int_equal(tw_watcher_new(p.r, p.fds[1], 0, on_pipe_writable, &p, &p.ww), 0);
    assert_int_equal(tw_watcher_events(p.ww), 0);
    assert_int_equal(tw_watcher_set(p.ww, TW_WRITABLE), 0);
    assert_int_equal(tw_watcher_fd(p.ww), p.fds[1]);
    assert_int_equal(tw_reactor_run(p.r), 0);
    assert_int_equal(p.writes, 1);
    assert_memory_equal(p.got, "hello", 5);
    tw_watcher_free(p.ww);
    tw_reactor_free(p.r);
    close(p.fds[0]);
    close(p.fds[1]);
}

/* Two watchers ready in the same batch; the first frees the second and
 * closes its fd. The second must not be called (stale event dropped). */
typedef struct pair_ctx {
    tw_watcher *a, *b;
    int a_calls, b_calls;
    int fa[2], fb[2];
} pair_ctx;

static void pair_cb(tw_watcher *w, int fd, unsigned events, void *arg)
{
    pair_ctx *p = arg;
    if (w == p->a) {
        p->a_calls++;
        tw_watcher_free(p->b);
        tw_watcher_free(p->a);
    } else {
        p->b_calls++;
        tw_watcher_free(p->a);
        tw_watcher_free(p->b);
    }
}

static void freeing_another_watcher_in_the_same_batch(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    pair_ctx p = { 0 };
    assert_int_equal(pipe(p.fa), 0);
    assert_int_equal(pipe(p.fb), 0);
    assert_int_equal(write(p.fa[1], "x", 1), 1);
    assert_int_equal(write(p.fb[1], "x", 1), 1);
    assert_int_equal(tw_watcher_new(r, p.fa[0], TW_READABLE, pair_cb, &p, &p.a), 0);
    assert_int_equal(tw_watcher_new(r, p.fb[0], TW_READABLE, pair_cb, &p, &p.b), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tw_reactor_iterate(r, 0.05), 0);
    assert_int_equal(p.a_calls + p.b_calls, 1);
    tw_reactor_free(r);
    for (int i = 0; i < 2; i++) {
        close(p.fa[i]);
        close(p.fb[i]);
    }
}

static void watching_a_bad_fd_is_an_error(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    tw_watcher *w = NULL;
    assert_int_equal(tw_watcher_new(r, -1, TW_READABLE, on_pipe_readable, NULL, &w), TW_EINVAL);
    if (strcmp(tw_reactor_backend(r), "epoll") == 0) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        close(fds[0]);
        assert_int_equal(tw_watcher_new(r, fds[0], TW_READABLE, on_pipe_readable, NULL, &w),
                         -EBADF);
        close(fds[1]);
    }
    tw_reactor_free(r);
}

/* --------------------------------------------------- cross-thread calls */

enum { THREADS = 4, CALLS = 10000 };

typedef struct xt {
    tw_reactor *r;
    int next[THREADS]; /* next expected sequence number per thread */
    int total;
    int out_of_order;
} xt;

typedef struct xcall {
    xt *x;
    int thread, seq;
} xcall;

static xcall xcalls[THREADS][CALLS];

static void on_xcall(void *arg)
{
    xcall *c = arg;
    xt *x = c->x;
    if (x->next[c->thread] != c->seq)
        x->out_of_order++;
    x->next[c->thread] = c->seq + 1;
    if (++x->total == THREADS * CALLS)
        tw_reactor_stop(x->r);
}

typedef struct worker {
    xt *x;
    int id;
} worker;

static void *producer(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < CALLS; i++) {
        xcalls[w->id][i] = (xcall){ w->x, w->id, i };
        while (tw_call_from_thread(w->x->r, on_xcall, &xcalls[w->id][i]) == TW_ENOMEM)
            ;
    }
    return NULL;
}

static void call_from_thread_many_threads(void **state)
{
    xt x = { .r = new_reactor(TW_SIGNALS_OFF) };
    pthread_t th[THREADS];
    worker w[THREADS];
    /* start producing before run: calls made before run are kept */
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){ &x, i };
        assert_int_equal(pthread_create(&th[i], NULL, producer, &w[i]), 0);
    }
    assert_int_equal(tw_reactor_run(x.r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(x.total, THREADS * CALLS);
    assert_int_equal(x.out_of_order, 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(x.next[i], CALLS);
    tw_reactor_free(x.r);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

static void calls_queued_while_not_running(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    int n = 0;
    assert_int_equal(tw_call_from_thread(r, count_cb, &n), 0);
    assert_int_equal(tw_reactor_iterate(r, 0), 0);
    assert_int_equal(n, 1);
    /* queued and never run by the loop: run by free, not leaked */
    assert_int_equal(tw_call_from_thread(r, count_cb, &n), 0);
    tw_reactor_free(r);
    assert_int_equal(n, 2);
}

/* Several reactors, each on its own thread, at once. */
typedef struct lane {
    tw_reactor *r;
    int fired;
} lane;

static void lane_tick(void *arg)
{
    lane *l = arg;
    if (++l->fired < 50)
        tw_call_later(l->r, 0.001, lane_tick, l);
    else
        tw_reactor_stop(l->r);
}

static void *lane_main(void *arg)
{
    lane *l = arg;
    tw_reactor_options o = { .signals = TW_SIGNALS_OFF };
    if (tw_reactor_new(&o, &l->r) < 0)
        return NULL;
    tw_call_later(l->r, 0, lane_tick, l);
    tw_reactor_run(l->r);
    tw_reactor_free(l->r);
    return NULL;
}

static void reactors_on_several_threads(void **state)
{
    pthread_t th[4];
    lane lanes[4] = { 0 };
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, lane_main, &lanes[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(lanes[i].fired, 50);
    }
}

/* --------------------------------------------------------- real timers */

static void real_timers_fire_in_order(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    int a = 0, b = 0;
    double t0 = tw_reactor_now(r);
    tw_call_later(r, 0.02, count_cb, &b);
    tw_call_later(r, 0.01, count_cb, &a);
    tw_call_later(r, 0.03, stop_cb, r);
    assert_int_equal(tw_reactor_run(r), 0);
    assert_int_equal(a, 1);
    assert_int_equal(b, 1);
    assert_true(tw_reactor_now(r) - t0 >= 0.03);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void iterate_inside_run_is_refused(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    assert_int_equal(tw_reactor_stop(r), TW_ENOTRUNNING);
    tw_call_later(r, 0, stop_cb, r);
    assert_int_equal(tw_reactor_run(r), 0);
    /* and the reactor can run again */
    tw_call_later(r, 0, stop_cb, r);
    assert_int_equal(tw_reactor_run(r), 0);
    tw_reactor_free(r);
}

static void nested(void *arg)
{
    tw_reactor *r = arg;
    assert_int_equal(tw_reactor_iterate(r, 0), TW_EBUSY);
    assert_int_equal(tw_reactor_run(r), TW_EBUSY);
    assert_int_equal(tw_reactor_stop(r), 0);
    assert_int_equal(tw_reactor_stop(r), TW_EALREADY_CALLED);
}

static void nested_loops_are_refused(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    tw_call_later(r, 0, nested, r);
    assert_int_equal(tw_reactor_run(r), 0);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------- signals */

static void send_signal(void *arg)
{
    kill(getpid(), (int)(intptr_t)arg);
}

static void sigterm_stops_run(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_ON);
    tw_call_later(r, 0.01, send_signal, (void *)(intptr_t)SIGTERM);
    assert_int_equal(tw_reactor_run(r), 0);
    /* and SIGINT */
    tw_call_later(r, 0.01, send_signal, (void *)(intptr_t)SIGINT);
    assert_int_equal(tw_reactor_run(r), 0);
    tw_reactor_free(r);
    /* outside run, the default disposition is back */
    struct sigaction sa;
    sigaction(SIGTERM, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

typedef struct sig_ctx {
    int usr1, usr2;
    tw_signal_watcher *w1;
} sig_ctx;

static void on_usr(tw_reactor *r, int signo, void *arg)
{
    sig_ctx *s = arg;
    if (signo == SIGUSR1) {
        s->usr1++;
        tw_signal_unwatch(s->w1); /* unwatch itself inside its callback */
        s->w1 = NULL;
        kill(getpid(), SIGUSR2);
    } else {
        s->usr2++;
        tw_reactor_stop(r);
    }
}

static void user_signal_watchers(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    sig_ctx s = { 0 };
    tw_signal_watcher *w2;
    assert_int_equal(tw_signal_watch(r, SIGUSR1, on_usr, &s, &s.w1), 0);
    assert_int_equal(tw_signal_watch(r, SIGUSR2, on_usr, &s, &w2), 0);
    assert_int_equal(tw_signal_watch(r, SIGKILL, on_usr, &s, &w2), TW_EINVAL);
    tw_call_later(r, 0.01, send_signal, (void *)(intptr_t)SIGUSR1);
    assert_int_equal(tw_reactor_run(r), 0);
    assert_int_equal(s.usr1, 1);
    assert_int_equal(s.usr2, 1);
    tw_reactor_free(r); /* frees w2 */
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    assert_true(sa.sa_handler == SIG_DFL);
}

static void sigpipe_does_not_kill(void **state)
{
    tw_reactor *r = new_reactor(TW_SIGNALS_OFF);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    assert_int_equal(write(fds[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(fds[1]);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ triggers */

typedef struct trig_ctx {
    tw_reactor *r;
    char order[64];
    int n;
    int released;
} trig_ctx;

typedef struct trig {
    trig_ctx *t;
    char tag;
} trig;

static void note(tw_reactor *r, void *arg)
{
    trig *g = arg;
    g->t->order[g->t->n++] = g->tag;
}

static void release_cb(void *arg)
{
    trig_ctx *t = arg;
    t->order[t->n++] = 'R';
    t->released = 1;
    tw_reactor_release_phase(t->r);
}

static void holding(tw_reactor *r, void *arg)
{
    trig *g = arg;
    g->t->order[g->t->n++] = g->tag;
    assert_int_equal(tw_reactor_hold_phase(r), 0);
    tw_call_later(r, 0.01, release_cb, g->t);
}

static void when_running(void *arg)
{
    trig_ctx *t = arg;
    t->order[t->n++] = 'W';
    tw_reactor_stop(t->r);
}

static void system_event_triggers(void **state)
{
    trig_ctx t = { .r = new_reactor(TW_SIGNALS_OFF) };
    trig sb = { &t, 'a' }, sd = { &t, 'b' }, sa = { &t, 'c' };
    trig hb = { &t, 'x' }, hd = { &t, 'y' }, ha = { &t, 'z' }, gone = { &t, '!' };
    tw_trigger *g;
    /* added out of order: phases decide, not insertion */
    assert_int_equal(tw_reactor_add_trigger(t.r, TW_PHASE_AFTER, TW_EVENT_STARTUP, note, &sa, NULL),
                     0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_DURING, TW_EVENT_STARTUP, note, &sd, NULL), 0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_BEFORE, TW_EVENT_STARTUP, note, &sb, NULL), 0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_AFTER, TW_EVENT_SHUTDOWN, note, &ha, NULL), 0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_DURING, TW_EVENT_SHUTDOWN, note, &hd, NULL), 0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, holding, &hb, NULL), 0);
    assert_int_equal(
        tw_reactor_add_trigger(t.r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, note, &gone, &g), 0);
    assert_int_equal(tw_reactor_remove_trigger(t.r, g), 0);
    assert_int_equal(tw_reactor_add_trigger(t.r, 7, TW_EVENT_SHUTDOWN, note, &gone, NULL),
                     TW_EINVAL);
    assert_int_equal(tw_reactor_hold_phase(t.r), TW_EINVAL);
    assert_int_equal(tw_call_when_running(t.r, when_running, &t), 0);
    assert_int_equal(tw_reactor_run(t.r), 0);
    t.order[t.n] = 0;
    /* before-shutdown held the shutdown until the timer released it */
    assert_string_equal(t.order, "abcWxRyz");
    tw_reactor_free(t.r);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(watcher_on_a_pipe),
        cmocka_unit_test(freeing_another_watcher_in_the_same_batch),
        cmocka_unit_test(watching_a_bad_fd_is_an_error),
        cmocka_unit_test(call_from_thread_many_threads),
        cmocka_unit_test(calls_queued_while_not_running),
        cmocka_unit_test(reactors_on_several_threads),
        cmocka_unit_test(real_timers_fire_in_order),
        cmocka_unit_test(iterate_inside_run_is_refused),
        cmocka_unit_test(nested_loops_are_refused),
        cmocka_unit_test(sigterm_stops_run),
        cmocka_unit_test(user_signal_watchers),
        cmocka_unit_test(sigpipe_does_not_kill),
        cmocka_unit_test(system_event_triggers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
