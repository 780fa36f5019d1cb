/* threads.c — the per-reactor thread pool: deferToThread, callInThread and
 * blockingCallFromThread.
 *
 * One mutex guards the pool's shared state (queue, done list, counters,
 * thread list). Workers take jobs from a FIFO queue and put finished
 * deferred jobs on a done list; the first job to land on an empty done list
 * queues one cross-thread call (drain) that fires every finished job's
 * deferred on the reactor's thread, so a burst of results costs one wakeup.
 * Fire-and-forget jobs are freed by their worker. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "async/async_internal.h"
#include "core/reactor_internal.h"
#include "twirl/log.h"
#include "twirl/threads.h"

#define MAX_THREADS_LIMIT 1024

typedef struct job job;
typedef struct pool pool;

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct job {
    job *prev, *next; /* queue (doubly linked: cancelling is O(1)) or done list */
    pool *p;
    tw_thread_fn fn; /* deferred job */
    tw_call_fn call; /* fire-and-forget job */
    void *arg;
    tw_deferred *d;   /* the producer's reference; NULL for fire-and-forget */
    tw_result result; /* fn's, once done */
    enum job_state state;
    bool discard; /* cancelled while running: free the result unseen */
};

/* A blocking call waiting on a deferred; lives until that deferred is done
 * with it (fired, or freed), while its caller may be gone already. */
typedef struct bcall bcall;
typedef struct bwait {
    struct bwait *prev, *next; /* on the pool's list while p is set */
    pool *p;
    bcall *c; /* NULL once the caller was answered */
} bwait;

struct pool {
    tw_reactor *r;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or workers must stop */
    tw_thread_pool_options opts;

    /* Guarded by mu. */
    job *qhead, *qtail;
    size_t queued;
    job *done; /* LIFO; drain reverses it */
    bool drain_pending;
    pthread_t *threads;
    unsigned threads_cap;
    unsigned nthreads; /* started, not yet joined */
    unsigned alive;    /* started, not yet exited */
    unsigned idle;
    unsigned starting; /* started, not yet in the loop: about to be idle */
    unsigned running;
    unsigned long long completed;
    bool stop;   /* workers exit once the queue is empty */
    bool closed; /* the reactor is being freed: refuse everything */
    bool started;

    /* Reactor thread only. */
    bool stopping; /* from the before-shutdown trigger to the after one */
    bool holding;  /* we hold the shutdown's before phase */
    bwait *bwaits; /* blocking calls waiting on deferreds */
};

/* Marks a reactor whose pool was already freed (tw_reactor_free is under
 * way): submissions then fail with TW_ECLOSED instead of making a new one. */
static char pool_gone;

static _Thread_local pool *tls_worker_pool;

/* ----------------------------------------------------------- job helpers */

static tw_failure *pool_failure(int code, const char *what)
{
    return tw_failure_new(TW_DOMAIN, code, "thread pool: %s", what);
}

static void queue_push(pool *p, job *j)
{
    j->next = NULL;
    j->prev = p->qtail;
    if (p->qtail)
        p->qtail->next = j;
    else
        p->qhead = j;
    p->qtail = j;
    p->queued++;
}

static void queue_unlink(pool *p, job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        p->qhead = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        p->qtail = j->prev;
    j->prev = j->next = NULL;
    p->queued--;
}

/* Detaches the whole queue (caller holds mu). */
static job *queue_take_all(pool *p)
{
    job *all = p->qhead;
    p->qhead = p->qtail = NULL;
    p->queued = 0;
    return all;
}

/* Reactor thread: fails each job of a detached queue with a cancelled
 * failure (fire-and-forget jobs are dropped) and frees it. */
static void fail_jobs(job *list, const char *why)
{
    while (list) {
        job *j = list;
        list = j->next;
        if (j->d) {
            tw_deferred *d = j->d;
            tw__deferred_set_canceller(d, NULL, NULL);
            tw_deferred_errback(d, tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                                  "thread pool: job cancelled before it ran (%s)",
                                                  why));
            tw_deferred_unref(d);
        }
        free(j);
    }
}

/* Reactor thread: fires a finished job's deferred (or frees the result of a
 * job cancelled while running) and frees the job. */
static void finish_job(job *j)
{
    tw_deferred *d = j->d;
    tw_result res = tw_result_move(&j->result);
    if (j->discard) {
        tw_result_free(&res);
    } else {
        tw__deferred_set_canceller(d, NULL, NULL);
        if (res.deferred) {
            tw_log(TW_LOG_ERROR, "threads",
                   "a thread function returned a deferred; deferreds belong to the reactor's "
                   "thread");
            tw_result_free(&res); /* unfired: dropped without a word */
            res = tw_err(pool_failure(TW_EINVAL, "the thread function returned a deferred"));
        }
        tw_deferred_fire(d, res);
    }
    tw_deferred_unref(d);
    free(j);
}

/* Reactor thread: fires every finished job. */
static void drain_done(pool *p)
{
    pthread_mutex_lock(&p->mu);
    job *list = p->done;
    p->done = NULL;
    p->drain_pending = false;
    pthread_mutex_unlock(&p->mu);
    /* The list is newest first: reverse it so deferreds fire in the order
     * their jobs finished. */
    job *fifo = NULL;
    while (list) {
        job *j = list;
        list = j->next;
        j->next = fifo;
        fifo = j;
    }
    while (fifo) {
        job *j = fifo;
        fifo = j->next;
        finish_job(j);
    }
}

static void drain_call(void *arg)
{
    drain_done(arg);
}

/* ---------------------------------------------------------------- workers */

static void workers_gone_call(void *arg);

static void *worker_main(void *arg)
{
    pool *p = arg;
    tls_worker_pool = p;
    pthread_mutex_lock(&p->mu);
    p->starting--;
    for (;;) {
        while (!p->qhead && !p->stop) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->mu);
            p->idle--;
        }
        job *j = p->qhead;
        if (!j)
            break; /* stopping, and nothing left to run */
        queue_unlink(p, j);
        j->state = JOB_RUNNING;
        p->running++;
        pthread_mutex_unlock(&p->mu);

        if (j->d) {
            j->result = j->fn(j->arg);
        } else {
            j->call(j->arg);
            free(j);
            j = NULL;
        }

        pthread_mutex_lock(&p->mu);
        p->running--;
        p->completed++;
        if (!j)
            continue;
        j->state = JOB_DONE;
        j->next = p->done;
        p->done = j;
        if (!p->drain_pending && !p->closed) {
            p->drain_pending = true;
            pthread_mutex_unlock(&p->mu);
            int rc = tw_call_from_thread(p->r, drain_call, p);
            pthread_mutex_lock(&p->mu);
            /* TW_ECLOSED: the reactor is being freed, and its cleanup fires
             * what is left. TW_ENOMEM: the next finished job tries again. */
            if (rc < 0)
                p->drain_pending = false;
        }
    }
    /* The pool outlives this thread (it is joined before being freed), so
     * p may be used after unlocking. */
    bool tell = --p->alive == 0 && !p->closed;
    pthread_mutex_unlock(&p->mu);
    if (tell && tw_call_from_thread(p->r, workers_gone_call, p) == TW_ENOMEM)
        tw_log(TW_LOG_ERROR, "threads",
               "out of memory telling the reactor that its workers stopped; its shutdown may "
               "wait until a second stop signal");
    return NULL;
}

/* Starts one worker (caller holds mu). Workers block every signal, so that
 * signals reach the reactor's thread and do not interrupt blocking jobs.
 * Returns 0 or -errno. */
static int spawn_locked(pool *p)
{
    if (p->nthreads == p->threads_cap) {
        unsigned cap = p->threads_cap ? p->threads_cap * 2 : 4;
        pthread_t *t = realloc(p->threads, cap * sizeof *t);
        if (!t)
            return TW_ENOMEM;
        p->threads = t;
        p->threads_cap = cap;
    }
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc)
        return -rc;
    if (p->opts.stack_bytes && (rc = pthread_attr_setstacksize(&attr, p->opts.stack_bytes))) {
        pthread_attr_destroy(&attr);
        return -rc;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&p->threads[p->nthreads], &attr, worker_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc)
        return -rc;
    pthread_setname_np(p->threads[p->nthreads], "twirl-worker");
    p->nthreads++;
    p->alive++;
    p->starting++;
    return 0;
}

/* Reactor thread: joins every started worker. They must have been told to
 * stop (or have exited already). */
static void join_all(pool *p)
{
    pthread_mutex_lock(&p->mu);
    pthread_t *threads = p->threads;
    unsigned n = p->nthreads;
    p->threads = NULL;
    p->threads_cap = 0;
    p->nthreads = 0;
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    free(threads);
}

/* Queues j and makes sure a worker will take it (caller holds mu). Returns
 * 0 or a code for the caller to report; j is then not queued. */
static int submit_locked(pool *p, job *j)
{
    if (p->closed || p->stop)
        return TW_ECLOSED;
    if (p->queued >= p->opts.queue_limit)
        return TW_EFULL;
    queue_push(p, j);
    int rc = 0;
    if (!p->started) {
        p->started = true;
        while (p->nthreads < p->opts.min_threads && (rc = spawn_locked(p)) == 0)
            ;
    }
    /* Workers still starting will take a job as soon as they run. */
    if (p->queued > p->idle + p->starting && p->nthreads < p->opts.max_threads)
        rc = spawn_locked(p);
    if (rc < 0 && p->nthreads == 0) {
        queue_unlink(p, j);
        return rc; /* nobody would ever run it */
    }
    pthread_cond_signal(&p->work);
    return 0;
}

/* ------------------------------------------------------ pool lifecycle */

static void pool_on_shutdown(tw_reactor *r, void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    job *q = queue_take_all(p);
    unsigned alive = p->alive;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    p->stopping = true;
    fail_jobs(q, "the reactor is shutting down");
    if (alive > 0) {
        /* Released by workers_gone_call once the last one exited. */
        p->holding = tw_reactor_hold_phase(r) == 0;
    } else {
        join_all(p); /* nothing left running; reap any exited ones */
    }
}

static void reopen(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = false;
    p->started = false; /* min_threads start again with the next job */
    pthread_mutex_unlock(&p->mu);
}

/* Last of the shutdown: the pool takes jobs again (the reactor may be run
 * once more), unless workers are still running (a second stop signal cut
 * the wait short); then workers_gone_call reopens it. */
static void pool_after_shutdown(tw_reactor *r, void *arg)
{
    pool *p = arg;
    p->stopping = false;
    p->holding = false; /* the phase is over: a late release must not count */
    pthread_mutex_lock(&p->mu);
    bool idle = p->alive == 0;
    pthread_mutex_unlock(&p->mu);
    if (idle) {
        join_all(p);
        reopen(p);
    }
}

static void workers_gone_call(void *arg)
{
    pool *p = arg;
    drain_done(p); /* the last results first: they belong to this shutdown */
    join_all(p);
    if (p->holding) {
        p->holding = false;
        tw_reactor_release_phase(p->r);
    }
    if (!p->stopping)
        reopen(p);
}

static void bcall_deliver(bcall *c, tw_result res);

static void pool_cleanup(tw_reactor *r, void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    p->stop = true;
    job *q = queue_take_all(p);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    /* Callbacks run from here may submit jobs: they are refused (closed). */
    fail_jobs(q, "the reactor is being freed");
    /* Workers blocked in tw_blocking_call_from_thread must be answered
     * before they can be joined. */
    while (p->bwaits) {
        bwait *w = p->bwaits;
        p->bwaits = w->next;
        w->prev = w->next = NULL;
        w->p = NULL;
        bcall *c = w->c;
        w->c = NULL;
        bcall_deliver(c, tw_err(tw_failure_new(TW_DOMAIN, TW_ECLOSED,
                                               "blocking call from thread: the reactor is being "
                                               "freed")));
    }
    join_all(p); /* running jobs finish: a job that never returns blocks here */
    drain_done(p);
    free(p->threads);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *tw__reactor_slot(r, TW__SLOT_THREADS) = &pool_gone;
}

/* Reactor thread: the reactor's pool, made on first use. NULL with *rc set
 * to TW_ENOMEM, or TW_ECLOSED once the reactor's pool was freed. */
static pool *pool_get(tw_reactor *r, int *rc)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_THREADS);
    if (*slot == &pool_gone) {
        *rc = TW_ECLOSED;
        return NULL;
    }
    if (*slot)
        return *slot;
    *rc = TW_ENOMEM;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->r = r;
    p->opts = (tw_thread_pool_options){ .min_threads = TW_THREAD_POOL_MIN_THREADS,
                                        .max_threads = TW_THREAD_POOL_MAX_THREADS,
                                        .queue_limit = TW_THREAD_POOL_QUEUE_LIMIT };
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->work, NULL)) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    tw_trigger *before = NULL, *after = NULL;
    if (tw_reactor_add_trigger(r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, pool_on_shutdown, p,
                               &before) < 0 ||
        tw_reactor_add_trigger(r, TW_PHASE_AFTER, TW_EVENT_SHUTDOWN, pool_after_shutdown, p,
                               &after) < 0 ||
        tw__reactor_on_free(r, pool_cleanup, p) < 0) {
        if (before)
            tw_reactor_remove_trigger(r, before);
        if (after)
            tw_reactor_remove_trigger(r, after);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    *slot = p;
    return p;
}

/* ------------------------------------------------------------ public API */

int tw_thread_pool_configure(tw_reactor *r, const tw_thread_pool_options *opts)
{
    tw_thread_pool_options o = opts ? *opts : (tw_thread_pool_options){ 0 };
    if (!o.max_threads)
        o.max_threads =
            o.min_threads > TW_THREAD_POOL_MAX_THREADS ? o.min_threads : TW_THREAD_POOL_MAX_THREADS;
    if (!o.queue_limit)
        o.queue_limit = TW_THREAD_POOL_QUEUE_LIMIT;
    if (o.min_threads > o.max_threads || o.max_threads > MAX_THREADS_LIMIT ||
        (o.stack_bytes && o.stack_bytes < (size_t)PTHREAD_STACK_MIN))
        return TW_EINVAL;
    if (!tw__reactor_on_thread(r))
        return TW_EWRONG_THREAD;
    int rc;
    pool *p = pool_get(r, &rc);
    if (!p)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (p->nthreads > 0 || p->started) {
        pthread_mutex_unlock(&p->mu);
        return TW_EBUSY;
    }
    p->opts = o;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void tw_thread_pool_stats_get(tw_reactor *r, tw_thread_pool_stats *out)
{
    *out = (tw_thread_pool_stats){ 0 };
    pool *p = *tw__reactor_slot(r, TW__SLOT_THREADS);
    if (!p || p == (pool *)&pool_gone)
        return;
    pthread_mutex_lock(&p->mu);
    out->threads = p->nthreads;
    out->idle = p->idle;
    out->running = p->running;
    out->queued = p->queued;
    out->completed = p->completed;
    pthread_mutex_unlock(&p->mu);
}

static void job_cancel(tw_deferred *d, void *arg)
{
    job *j = arg;
    pool *p = j->p;
    pthread_mutex_lock(&p->mu);
    if (j->state == JOB_QUEUED) {
        queue_unlink(p, j);
        pthread_mutex_unlock(&p->mu);
        tw_deferred_unref(j->d); /* ours; the canceller's caller holds one */
        free(j);
        return; /* d fails with a cancelled failure */
    }
    /* Running or finished but not yet drained: it cannot be stopped. */
    j->discard = true;
    pthread_mutex_unlock(&p->mu);
}

static const char *refusal_text(int rc)
{
    switch (rc) {
    case TW_EFULL:
        return "the job queue is full";
    case TW_ECLOSED:
        return "the pool is shutting down";
    default:
        return tw_strerror(rc);
    }
}

tw_deferred *tw_defer_to_thread(tw_reactor *r, tw_thread_fn fn, void *arg)
{
    if (!fn)
        return tw_fail(pool_failure(TW_EINVAL, "tw_defer_to_thread: fn is NULL"));
    if (!tw__reactor_on_thread(r))
        return tw_fail(
            pool_failure(TW_EWRONG_THREAD, "tw_defer_to_thread called off the reactor's thread"));
    int rc;
    pool *p = pool_get(r, &rc);
    if (!p)
        return tw_fail(pool_failure(rc, refusal_text(rc)));
    job *j = calloc(1, sizeof *j);
    if (!j)
        return tw_fail(tw_failure_from_code(TW_ENOMEM));
    tw_deferred *d = tw_deferred_new(job_cancel, j);
    if (!d) {
        free(j);
        return NULL;
    }
    *j = (job){ .p = p, .fn = fn, .arg = arg, .d = tw_deferred_ref(d), .state = JOB_QUEUED };
    pthread_mutex_lock(&p->mu);
    rc = submit_locked(p, j);
    size_t limit = p->opts.queue_limit;
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) {
        tw__deferred_set_canceller(d, NULL, NULL);
        tw_deferred_unref(j->d);
        free(j);
        if (rc == TW_EFULL)
            tw_deferred_errback(d, tw_failure_new(TW_DOMAIN, TW_EFULL,
                                                  "thread pool: the job queue is full (%zu jobs "
                                                  "waiting)",
                                                  limit));
        else
            tw_deferred_errback(d, pool_failure(rc, refusal_text(rc)));
    }
    return d;
}

int tw_call_in_thread(tw_reactor *r, tw_call_fn fn, void *arg)
{
    if (!fn)
        return TW_EINVAL;
    pool *p = *tw__reactor_slot(r, TW__SLOT_THREADS);
    if (p == (pool *)&pool_gone)
        return TW_ECLOSED;
    if (!p) {
        /* Only the reactor's thread may make the pool. */
        if (!tw__reactor_on_thread(r))
            return TW_EWRONG_THREAD;
        int rc;
        if (!(p = pool_get(r, &rc)))
            return rc;
    }
    job *j = calloc(1, sizeof *j);
    if (!j)
        return TW_ENOMEM;
    *j = (job){ .p = p, .call = fn, .arg = arg, .state = JOB_QUEUED };
    pthread_mutex_lock(&p->mu);
    int rc = submit_locked(p, j);
    pthread_mutex_unlock(&p->mu);
    if (rc < 0)
        free(j);
    return rc;
}

/* ------------------------------------------------ blocking call from thread */

struct bcall {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    tw_result result;
    tw_reactor *r;
    tw_result_fn fn;
    void *arg;
};

/* Hands res to the waiting caller. c lives on the caller's stack: it may be
 * gone as soon as mu is released, so nothing touches it after that. */
static void bcall_deliver(bcall *c, tw_result res)
{
    pthread_mutex_lock(&c->mu);
    c->result = res;
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void bwait_unlink(bwait *w)
{
    if (!w->p)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->p->bwaits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->p = NULL;
}

static tw_result bwait_fired(tw_result *in, void *arg)
{
    bwait *w = arg;
    if (w->c) {
        bcall_deliver(w->c, tw_result_move(in));
        w->c = NULL;
    }
    return TW_RESULT_NONE;
}

static void bwait_done(void *arg)
{
    bwait *w = arg;
    if (w->c)
        bcall_deliver(w->c, tw_err(tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                                  "blocking call from thread: the deferred was "
                                                  "freed without firing")));
    bwait_unlink(w);
    free(w);
}

/* Reactor thread. */
static void bcall_run(void *arg)
{
    bcall *c = arg;
    tw_result res = c->fn(c->arg);
    if (!res.deferred) {
        bcall_deliver(c, res);
        return;
    }
    tw_deferred *d = res.deferred;
    int rc;
    pool *p = pool_get(c->r, &rc); /* keeps the list of waits for tw_reactor_free */
    bwait *w = p ? malloc(sizeof *w) : NULL;
    if (!w) {
        tw_deferred_unref(d);
        bcall_deliver(c, tw_err(p ? tw_failure_from_code(TW_ENOMEM)
                                  : pool_failure(rc, "blocking call from thread: cannot wait")));
        return;
    }
    *w = (bwait){ .p = p, .c = c, .next = p->bwaits };
    if (p->bwaits)
        p->bwaits->prev = w;
    p->bwaits = w;
    if (tw_deferred_add_callbacks_full(d, bwait_fired, bwait_fired, w, bwait_done) < 0) {
        bwait_unlink(w);
        free(w);
        bcall_deliver(c, tw_err(tw_failure_from_code(TW_ENOMEM)));
    }
    /* The producer keeps d alive until it fires; if it drops it unfired,
     * bwait_done answers the caller. */
    tw_deferred_unref(d);
}

tw_result tw_blocking_call_from_thread(tw_reactor *r, tw_result_fn fn, void *arg)
{
    if (!fn)
        return tw_err(pool_failure(TW_EINVAL, "tw_blocking_call_from_thread: fn is NULL"));
    pool *mine = tls_worker_pool;
    if (!(mine && mine->r == r) && tw__reactor_on_thread(r)) {
        tw_log(TW_LOG_ERROR, "threads",
               "tw_blocking_call_from_thread called on the reactor's own thread: it would wait "
               "for itself forever");
        return tw_err(tw_failure_new(TW_DOMAIN, TW_EWRONG_THREAD,
                                     "tw_blocking_call_from_thread called on the reactor's own "
                                     "thread (it would deadlock)"));
    }
    bcall c = { .r = r, .fn = fn, .arg = arg };
    if (pthread_mutex_init(&c.mu, NULL))
        return tw_err(tw_failure_from_code(TW_ENOMEM));
    if (pthread_cond_init(&c.cv, NULL)) {
        pthread_mutex_destroy(&c.mu);
        return tw_err(tw_failure_from_code(TW_ENOMEM));
    }
    int rc = tw_call_from_thread(r, bcall_run, &c);
    if (rc == 0) {
        pthread_mutex_lock(&c.mu);
        while (!c.done)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
    } else {
        c.result = tw_err(
            tw_failure_new(TW_DOMAIN, rc, "blocking call from thread: %s",
                           rc == TW_ECLOSED ? "the reactor is being freed" : tw_strerror(rc)));
    }
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    return c.result;
}
