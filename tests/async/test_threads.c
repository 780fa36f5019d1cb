/* ctest: label=integration timeout=180 */
/* The thread pool: deferToThread, callInThread, blockingCallFromThread,
 * cancellation, the queue limit, shutdown and tw_reactor_free with workers
 * busy. Real threads and a real reactor; waits are on conditions, never on
 * sleeps, except where a job must be "still running". */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/deferred.h"
#include "twirl/threads.h"

static atomic_int live_values;
static int error_logs;
static char last_error[1024];

static void free_counted(void *p)
{
    atomic_fetch_sub(&live_values, 1);
    free(p);
}

static tw_value heap_int(long n)
{
    long *p = malloc(sizeof *p);
    *p = n;
    atomic_fetch_add(&live_values, 1);
    return tw_value_make(p, free_counted);
}

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR) {
        error_logs++;
        snprintf(last_error, sizeof last_error, "[%s] %s", domain, message);
    }
}

static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int base_tasks;

/* The thread count once it reaches want (or after 2 s). pthread_join
 * returns when the thread is done with its stack, a moment before the
 * kernel drops it from /proc/self/task. */
static int tasks_settled(int want)
{
    int n = task_count();
    for (int i = 0; i < 200 && n != want; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        n = task_count();
    }
    return n;
}

static int setup(void **state)
{
    atomic_store(&live_values, 0);
    error_logs = 0;
    last_error[0] = '\0';
    tw_log_set_handler(capture, NULL);
    base_tasks = task_count();
    *state = tt_reactor();
    return 0;
}

static int teardown(void **state)
{
    tw_reactor_free(*state);
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(atomic_load(&live_values), 0);
    assert_int_equal(error_logs, 0);
    assert_int_equal(tasks_settled(base_tasks), base_tasks); /* no worker outlives the reactor */
    return 0;
}

static void configure(tw_reactor *r, unsigned min, unsigned max, size_t queue)
{
    tw_thread_pool_options o = { .min_threads = min, .max_threads = max, .queue_limit = queue };
    assert_int_equal(tw_thread_pool_configure(r, &o), 0);
}

/* ------------------------------------------------------------ a gate */

/* Jobs that must stay "running" wait at a gate the test opens. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int waiting; /* jobs that reached the gate */
} gate;

static gate the_gate;

static void gate_init(void)
{
    pthread_mutex_init(&the_gate.mu, NULL);
    pthread_cond_init(&the_gate.cv, NULL);
    the_gate.open = false;
    the_gate.waiting = 0;
}

static void gate_open(void)
{
    pthread_mutex_lock(&the_gate.mu);
    the_gate.open = true;
    pthread_cond_broadcast(&the_gate.cv);
    pthread_mutex_unlock(&the_gate.mu);
}

static void gate_destroy(void)
{
    pthread_cond_destroy(&the_gate.cv);
    pthread_mutex_destroy(&the_gate.mu);
}

static int gate_waiting(void)
{
    pthread_mutex_lock(&the_gate.mu);
    int n = the_gate.waiting;
    pthread_mutex_unlock(&the_gate.mu);
    return n;
}

static bool gate_has(void *arg)
{
    return gate_waiting() >= (int)(intptr_t)arg;
}

/* A job that waits at the gate, then returns its argument as a heap value. */
static tw_result gated_job(void *arg)
{
    pthread_mutex_lock(&the_gate.mu);
    the_gate.waiting++;
    pthread_cond_broadcast(&the_gate.cv);
    while (!the_gate.open)
        pthread_cond_wait(&the_gate.cv, &the_gate.mu);
    pthread_mutex_unlock(&the_gate.mu);
    return tw_ok_value(heap_int((long)(intptr_t)arg));
}

static atomic_int ran_count;

static tw_result counting_job(void *arg)
{
    atomic_fetch_add(&ran_count, 1);
    return tw_ok_value(heap_int((long)(intptr_t)arg));
}

/* --------------------------------------------------------- outcomes */

/* What a deferred fired with, recorded by callbacks on the reactor thread. */
typedef struct outcome {
    int fired;
    long value;
    int code; /* failure code, 0 for a value */
    char message[256];
    pthread_t thread;
} outcome;

static tw_result record(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    o->thread = pthread_self();
    if (in->failure) {
        o->code = tw_failure_code(in->failure);
        snprintf(o->message, sizeof o->message, "%s", tw_failure_message(in->failure));
    } else if (in->value.free == free_counted) {
        o->value = *(long *)in->value.ptr;
    } else {
        o->value = (long)tw_value_as_int(in->value);
    }
    return TW_RESULT_NONE; /* handled: the chain frees the value */
}

static void watch(tw_deferred *d, outcome *o)
{
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_both(d, record, o), 0);
    tw_deferred_unref(d);
}

static bool fired(void *arg)
{
    return ((outcome *)arg)->fired > 0;
}

typedef struct counter {
    int n;
    int want;
} counter;

static bool counter_done(void *arg)
{
    counter *c = arg;
    return c->n >= c->want;
}

/* ------------------------------------------------------------- tests */

typedef struct many {
    counter c;
    long *got;
    int *fires;
} many;

typedef struct many_slot {
    many *m;
    int i;
} many_slot;

static tw_result square_job(void *arg)
{
    long i = (long)(intptr_t)arg;
    return tw_ok_value(heap_int(i * i));
}

static tw_result many_cb(tw_result *in, void *arg)
{
    many_slot *s = arg;
    s->m->got[s->i] = *(long *)in->value.ptr;
    s->m->fires[s->i]++;
    s->m->c.n++;
    return TW_RESULT_NONE;
}

static void ten_thousand_jobs(void **state)
{
    tw_reactor *r = *state;
    enum { N = 10000 };
    configure(r, 0, 4, N);
    many m = { .c = { 0, N } };
    m.got = calloc(N, sizeof *m.got);
    m.fires = calloc(N, sizeof *m.fires);
    many_slot *slots = calloc(N, sizeof *slots);
    for (int i = 0; i < N; i++) {
        slots[i] = (many_slot){ &m, i };
        tw_deferred *d = tw_defer_to_thread(r, square_job, (void *)(intptr_t)i);
        assert_non_null(d);
        assert_int_equal(tw_deferred_add_callback(d, many_cb, &slots[i]), 0);
        tw_deferred_unref(d);
    }
    assert_true(tt_run_until(r, counter_done, &m.c, 60));
    for (int i = 0; i < N; i++) {
        assert_int_equal(m.fires[i], 1);
        assert_int_equal(m.got[i], (long)i * i);
    }
    tw_thread_pool_stats st;
    tw_thread_pool_stats_get(r, &st);
    assert_true(st.threads >= 1 && st.threads <= 4);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.completed, N);
    free(slots);
    free(m.got);
    free(m.fires);
}

static void results_fire_on_reactor_thread(void **state)
{
    tw_reactor *r = *state;
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, square_job, (void *)(intptr_t)12), &o);
    assert_int_equal(o.fired, 0); /* never synchronously */
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.value, 144);
    assert_true(pthread_equal(o.thread, pthread_self()));
}

static tw_result failing_job(void *arg)
{
    return tw_err(tw_failure_new("test", 7, "job %d failed", (int)(intptr_t)arg));
}

static void failure_from_worker(void **state)
{
    tw_reactor *r = *state;
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, failing_job, (void *)(intptr_t)3), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.code, 7);
    assert_string_equal(o.message, "job 3 failed");
}

static void queue_full(void **state)
{
    tw_reactor *r = *state;
    gate_init();
    configure(r, 0, 1, 2);
    outcome o[4] = { 0 };
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)1), &o[0]);
    assert_true(tt_run_until(r, gate_has, (void *)(intptr_t)1, 10)); /* running */
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)2), &o[1]);
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)3), &o[2]);
    /* Two queued: the third is refused at once, with a clear failure. */
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)4), &o[3]);
    assert_int_equal(o[3].fired, 1);
    assert_int_equal(o[3].code, TW_EFULL);
    assert_non_null(strstr(o[3].message, "queue is full (2 jobs waiting)"));
    assert_int_equal(tw_call_in_thread(r, (tw_call_fn)free, NULL), TW_EFULL);
    tw_thread_pool_stats st;
    tw_thread_pool_stats_get(r, &st);
    assert_int_equal(st.threads, 1);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.queued, 2);

    gate_open();
    for (int i = 0; i < 3; i++) {
        assert_true(tt_run_until(r, fired, &o[i], 10));
        assert_int_equal(o[i].code, 0);
        assert_int_equal(o[i].value, i + 1);
    }
    gate_destroy();
}

static void cancel_queued(void **state)
{
    tw_reactor *r = *state;
    gate_init();
    atomic_store(&ran_count, 0);
    configure(r, 0, 1, 8);
    outcome first = { 0 }, second = { 0 };
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)1), &first);
    assert_true(tt_run_until(r, gate_has, (void *)(intptr_t)1, 10));
    tw_deferred *d = tw_defer_to_thread(r, counting_job, (void *)(intptr_t)2);
    assert_int_equal(tw_deferred_add_both(d, record, &second), 0);
    tw_thread_pool_stats st;
    tw_thread_pool_stats_get(r, &st);
    assert_int_equal(st.queued, 1);

    tw_deferred_cancel(d);
    assert_int_equal(second.fired, 1); /* at once */
    assert_int_equal(second.code, TW_ECANCELED);
    tw_deferred_unref(d);
    tw_thread_pool_stats_get(r, &st);
    assert_int_equal(st.queued, 0); /* removed from the queue */

    gate_open();
    assert_true(tt_run_until(r, fired, &first, 10));
    tt_run_for(r, 0.05);
    assert_int_equal(atomic_load(&ran_count), 0); /* fn never ran */
    assert_int_equal(second.fired, 1);
    gate_destroy();
}

static void cancel_running_discards_result(void **state)
{
    tw_reactor *r = *state;
    gate_init();
    configure(r, 0, 1, 8);
    outcome o = { 0 };
    tw_deferred *d = tw_defer_to_thread(r, gated_job, (void *)(intptr_t)5);
    assert_int_equal(tw_deferred_add_both(d, record, &o), 0);
    assert_true(tt_run_until(r, gate_has, (void *)(intptr_t)1, 10));
    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_ECANCELED);
    tw_deferred_unref(d);
    gate_open();
    /* The result arrives later and is freed unseen (teardown checks the
     * count of live values; the job is no longer running). */
    tw_thread_pool_stats st;
    do {
        tw_reactor_iterate(r, 0.01);
        tw_thread_pool_stats_get(r, &st);
    } while (st.completed < 1);
    tt_run_for(r, 0.05);
    assert_int_equal(o.fired, 1);
    assert_int_equal(atomic_load(&live_values), 0);
    gate_destroy();
}

/* ---------------------------------------------- blocking_call_from_thread */

static pthread_t reactor_thread;

static tw_result on_reactor_value(void *arg)
{
    assert_true(pthread_equal(pthread_self(), reactor_thread));
    return tw_ok_value(heap_int((long)(intptr_t)arg));
}

static tw_result blocking_value_job(void *arg)
{
    tw_reactor *r = arg;
    tw_result res = tw_blocking_call_from_thread(r, on_reactor_value, (void *)(intptr_t)41);
    if (res.failure)
        return res;
    long v = *(long *)res.value.ptr;
    tw_result_free(&res);
    return tw_ok_value(heap_int(v + 1));
}

static void blocking_call_plain_value(void **state)
{
    tw_reactor *r = *state;
    reactor_thread = pthread_self();
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, blocking_value_job, r), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.code, 0);
    assert_int_equal(o.value, 42);
}

typedef struct later {
    tw_reactor *r;
    tw_deferred *d;
    long value;
    bool fail;
} later;

static void later_fire(void *arg)
{
    later *l = arg;
    if (l->fail)
        tw_deferred_errback(l->d, tw_failure_new("test", 9, "fired as failure"));
    else
        tw_deferred_callback(l->d, heap_int(l->value));
    tw_deferred_unref(l->d);
    l->d = NULL;
}

/* Returns a deferred that a timer fires 50 ms later. */
static tw_result on_reactor_deferred(void *arg)
{
    later *l = arg;
    assert_true(pthread_equal(pthread_self(), reactor_thread));
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    l->d = tw_deferred_ref(d);
    tw_call_later(l->r, 0.05, later_fire, l);
    return tw_chain(d);
}

static tw_result blocking_deferred_job(void *arg)
{
    later *l = arg;
    return tw_blocking_call_from_thread(l->r, on_reactor_deferred, l);
}

static void blocking_call_deferred_fired_later(void **state)
{
    tw_reactor *r = *state;
    reactor_thread = pthread_self();
    later l = { .r = r, .value = 77 };
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, blocking_deferred_job, &l), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.code, 0);
    assert_int_equal(o.value, 77);

    later bad = { .r = r, .fail = true };
    outcome o2 = { 0 };
    watch(tw_defer_to_thread(r, blocking_deferred_job, &bad), &o2);
    assert_true(tt_run_until(r, fired, &o2, 10));
    assert_int_equal(o2.code, 9);
    assert_string_equal(o2.message, "fired as failure");
}

static void blocking_call_on_reactor_thread_is_refused(void **state)
{
    tw_reactor *r = *state;
    tw_result res = tw_blocking_call_from_thread(r, on_reactor_value, (void *)(intptr_t)1);
    assert_non_null(res.failure);
    assert_int_equal(tw_failure_code(res.failure), TW_EWRONG_THREAD);
    assert_non_null(strstr(tw_failure_message(res.failure), "deadlock"));
    tw_result_free(&res);
    assert_int_equal(error_logs, 1); /* reported */
    error_logs = 0;
}

/* A foreign thread (not a worker) uses both cross-thread entries. */
typedef struct foreign {
    tw_reactor *r;
    int call_rc;
    tw_result res;
    atomic_int finished;
} foreign;

static atomic_int in_thread_calls;

static void count_call(void *arg)
{
    atomic_fetch_add(&in_thread_calls, 1);
}

static void *foreign_main(void *arg)
{
    foreign *f = arg;
    f->call_rc = tw_call_in_thread(f->r, count_call, NULL);
    f->res = tw_blocking_call_from_thread(f->r, on_reactor_value, (void *)(intptr_t)5);
    atomic_store(&f->finished, 1);
    return NULL;
}

static bool foreign_done(void *arg)
{
    foreign *f = arg;
    return atomic_load(&in_thread_calls) == 2 && atomic_load(&f->finished);
}

static tw_result submitter_job(void *arg)
{
    /* A worker submits fire-and-forget work too. */
    tw_call_in_thread(arg, count_call, NULL);
    return TW_RESULT_NONE;
}

static void call_in_thread_from_other_threads(void **state)
{
    tw_reactor *r = *state;
    reactor_thread = pthread_self();
    atomic_store(&in_thread_calls, 0);
    configure(r, 0, 2, 16); /* makes the pool: other threads may now submit */
    foreign f = { .r = r };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, foreign_main, &f), 0);
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, submitter_job, r), &o);
    /* The loop turns meanwhile, serving the blocking call. */
    assert_true(tt_run_until(r, foreign_done, &f, 10));
    assert_true(tt_run_until(r, fired, &o, 10));
    pthread_join(t, NULL);
    assert_int_equal(f.call_rc, 0);
    assert_null(f.res.failure);
    assert_int_equal(*(long *)f.res.value.ptr, 5);
    tw_result_free(&f.res);
}

static void *no_pool_main(void *arg)
{
    foreign *f = arg;
    f->call_rc = tw_call_in_thread(f->r, count_call, NULL);
    return NULL;
}

static void no_pool_yet_refuses_other_threads(void **state)
{
    tw_reactor *r = *state;
    foreign f = { .r = r };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, no_pool_main, &f), 0);
    pthread_join(t, NULL);
    assert_int_equal(f.call_rc, TW_EWRONG_THREAD);
}

static void configure_rules(void **state)
{
    tw_reactor *r = *state;
    tw_thread_pool_options bad = { .min_threads = 5, .max_threads = 2 };
    assert_int_equal(tw_thread_pool_configure(r, &bad), TW_EINVAL);
    bad = (tw_thread_pool_options){ .max_threads = 5000 };
    assert_int_equal(tw_thread_pool_configure(r, &bad), TW_EINVAL);
    bad = (tw_thread_pool_options){ .stack_bytes = 100 };
    assert_int_equal(tw_thread_pool_configure(r, &bad), TW_EINVAL);
    configure(r, 2, 3, 4);
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, square_job, (void *)(intptr_t)3), &o);
    assert_int_equal(tw_thread_pool_configure(r, NULL), TW_EBUSY);
    assert_true(tt_run_until(r, fired, &o, 10));
    tw_thread_pool_stats st;
    tw_thread_pool_stats_get(r, &st);
    assert_int_equal(st.threads, 2); /* min_threads started with the first job */
    assert_int_equal(o.value, 9);
}

static tw_result returns_deferred_job(void *arg)
{
    return tw_chain(tw_deferred_new(NULL, NULL));
}

static void worker_returning_a_deferred_fails(void **state)
{
    tw_reactor *r = *state;
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, returns_deferred_job, NULL), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.code, TW_EINVAL);
    assert_int_equal(error_logs, 1);
    assert_non_null(strstr(last_error, "returned a deferred"));
    error_logs = 0;
}

/* ------------------------------------------------------------- shutdown */

typedef struct shutdown_case {
    tw_reactor *r;
    outcome running[2];
    outcome queued[3];
    int stats_threads_after;
} shutdown_case;

static void opener_trigger(tw_reactor *r, void *arg)
{
    /* Runs after the pool's own before-trigger (added later): the pool is
     * already stopping and holding the phase. Let the running jobs end. */
    gate_open();
}

static void start_and_stop(void *arg)
{
    shutdown_case *sc = arg;
    tw_reactor *r = sc->r;
    for (int i = 0; i < 2; i++)
        watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)(10 + i)), &sc->running[i]);
    for (int i = 0; i < 3; i++)
        watch(tw_defer_to_thread(r, counting_job, (void *)(intptr_t)(20 + i)), &sc->queued[i]);
    /* Wait (from the reactor thread, briefly) until both jobs run, so that
     * the three others are surely queued. */
    while (gate_waiting() < 2)
        ;
    assert_int_equal(
        tw_reactor_add_trigger(r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, opener_trigger, NULL, NULL),
        0);
    tw_reactor_stop(r);
}

static void shutdown_with_running_and_queued_jobs(void **state)
{
    tw_reactor *r = *state;
    gate_init();
    atomic_store(&ran_count, 0);
    configure(r, 0, 2, 16);
    shutdown_case sc = { .r = r };
    assert_int_equal(tw_call_when_running(r, start_and_stop, &sc), 0);
    assert_int_equal(tw_reactor_run(r), 0);
    /* The running jobs finished and their deferreds fired during the
     * shutdown; the queued ones never ran and failed cancelled. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sc.running[i].fired, 1);
        assert_int_equal(sc.running[i].code, 0);
        assert_int_equal(sc.running[i].value, 10 + i);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sc.queued[i].fired, 1);
        assert_int_equal(sc.queued[i].code, TW_ECANCELED);
        assert_non_null(strstr(sc.queued[i].message, "shutting down"));
    }
    assert_int_equal(atomic_load(&ran_count), 0);
    tw_thread_pool_stats st;
    tw_thread_pool_stats_get(r, &st);
    assert_int_equal(st.threads, 0);
    assert_int_equal(tasks_settled(base_tasks), base_tasks); /* every worker joined */

    /* The reactor can be run again: the pool takes jobs once more. */
    outcome again = { 0 };
    watch(tw_defer_to_thread(r, square_job, (void *)(intptr_t)4), &again);
    assert_true(tt_run_until(r, fired, &again, 10));
    assert_int_equal(again.value, 16);
    gate_destroy();
}

static void stop_soon(void *arg)
{
    tw_reactor_stop(arg);
}

static void shutdown_with_idle_pool(void **state)
{
    tw_reactor *r = *state;
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, square_job, (void *)(intptr_t)5), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(tw_call_when_running(r, stop_soon, r), 0);
    assert_int_equal(tw_reactor_run(r), 0);
    assert_int_equal(tasks_settled(base_tasks), base_tasks);
}

/* -------------------------------------------------------------- freeing */

static void free_with_idle_pool(void **state)
{
    tw_reactor *r = *state;
    configure(r, 3, 3, 8);
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, square_job, (void *)(intptr_t)6), &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(tasks_settled(base_tasks + 3), base_tasks + 3);
    /* teardown frees the reactor and checks that no thread is left */
}

static int resubmit_code;

static tw_result resubmit(tw_result *in, void *arg)
{
    /* Runs inside tw_reactor_free, after the queue was emptied and before
     * the workers are joined: new work is refused, and the running job may
     * end now. */
    gate_open();
    tw_deferred *d = tw_defer_to_thread(arg, square_job, NULL);
    outcome o = { 0 };
    tw_deferred_add_both(d, record, &o);
    tw_deferred_unref(d);
    resubmit_code = o.code;
    return tw_result_move(in);
}

static void free_with_busy_pool(void **state)
{
    tw_reactor *r = *state;
    gate_init();
    atomic_store(&ran_count, 0);
    configure(r, 0, 1, 8);
    outcome running = { 0 }, queued = { 0 };
    watch(tw_defer_to_thread(r, gated_job, (void *)(intptr_t)8), &running);
    assert_true(tt_run_until(r, gate_has, (void *)(intptr_t)1, 10));
    tw_deferred *qd = tw_defer_to_thread(r, counting_job, (void *)(intptr_t)9);
    assert_int_equal(tw_deferred_add_both(qd, resubmit, r), 0);
    watch(qd, &queued);
    resubmit_code = 0;
    assert_int_equal(tw_call_in_thread(r, count_call, NULL), 0); /* dropped */
    tw_reactor_free(r);                                          /* resubmit opens the gate */
    *state = tt_reactor();
    /* Every deferred fired exactly once, inside tw_reactor_free. */
    assert_int_equal(running.fired, 1);
    assert_int_equal(running.value, 8);
    assert_int_equal(queued.fired, 1);
    assert_int_equal(queued.code, TW_ECANCELED);
    assert_int_equal(resubmit_code, TW_ECLOSED);
    assert_int_equal(atomic_load(&ran_count), 0);
    gate_destroy();
}

/* A worker blocked in blocking_call_from_thread on a deferred that never
 * fires is answered (TW_ECLOSED) when the reactor is freed. */
static tw_deferred *never;

static tw_result on_reactor_never(void *arg)
{
    never = tw_deferred_new(NULL, NULL);
    return tw_chain(tw_deferred_ref(never));
}

static tw_result blocked_forever_job(void *arg)
{
    return tw_blocking_call_from_thread(arg, on_reactor_never, NULL);
}

static bool never_made(void *arg)
{
    return never != NULL;
}

static void free_answers_blocked_worker(void **state)
{
    tw_reactor *r = *state;
    never = NULL;
    outcome o = { 0 };
    watch(tw_defer_to_thread(r, blocked_forever_job, r), &o);
    assert_true(tt_run_until(r, never_made, NULL, 10));
    tw_reactor_free(r);
    *state = tt_reactor();
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_ECLOSED);
    tw_deferred_unref(never); /* freed unfired: nothing waits on it anymore */
    never = NULL;
}

static void *nothing(void *arg)
{
    return arg;
}

int main(void)
{
    /* Sanitizer runtimes start helper threads with the first thread: let
     * that happen before counting threads. */
    pthread_t t;
    pthread_create(&t, NULL, nothing, NULL);
    pthread_join(t, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ten_thousand_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(results_fire_on_reactor_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(failure_from_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_running_discards_result, setup, teardown),
        cmocka_unit_test_setup_teardown(blocking_call_plain_value, setup, teardown),
        cmocka_unit_test_setup_teardown(blocking_call_deferred_fired_later, setup, teardown),
        cmocka_unit_test_setup_teardown(blocking_call_on_reactor_thread_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(call_in_thread_from_other_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(no_pool_yet_refuses_other_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(configure_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_returning_a_deferred_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_with_running_and_queued_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(shutdown_with_idle_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(free_with_idle_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(free_with_busy_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(free_answers_blocked_worker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
