/* twirl/threads.h — a bounded thread pool per reactor (Twisted's
 * deferToThread, callInThread and blockingCallFromThread).
 *
 * Blocking work (a libc call that may sleep, a CPU-heavy computation, a
 * library without an asynchronous interface) runs on a worker thread; its
 * result comes back to the reactor's thread as a deferred.
 *
 * The pool. Each reactor has at most one pool, made on first use with the
 * defaults below unless tw_thread_pool_configure() ran first. Workers start
 * on demand, one per job that finds no idle worker, up to max_threads, and
 * then stay until the reactor shuts down (min_threads of them start with the
 * first job). Jobs that find every worker busy wait in a FIFO queue of at
 * most queue_limit jobs; a job that does not fit is refused with TW_EFULL.
 *
 * Threads. tw_defer_to_thread(), tw_thread_pool_configure() and
 * tw_thread_pool_stats() belong to the reactor's thread, like everything
 * else attached to the reactor. tw_call_in_thread() may be called from any
 * thread (worker threads included) once the pool exists — that is, after
 * tw_thread_pool_configure() or any earlier submission on the reactor's
 * thread; before that it is reactor-thread only, since that first call makes
 * the pool. tw_blocking_call_from_thread() is for any thread except the
 * reactor's.
 *
 * Shutdown. A before-shutdown trigger stops the pool: jobs still queued never
 * run (their deferreds fail with a cancelled failure, code TW_ECANCELED;
 * fire-and-forget jobs are dropped), jobs already running finish, and the
 * shutdown waits (tw_reactor_hold_phase) until every worker has exited and
 * been joined, so no thread outlives tw_reactor_run(). Results of those
 * running jobs still fire their deferreds during the wait. A reactor run
 * again afterwards gets fresh workers on the next submission. Submissions
 * made during the shutdown wait are refused with TW_ECLOSED.
 *
 * Freeing. tw_reactor_free() does the same without the loop: queued jobs
 * fail with a cancelled failure, running jobs are waited for (a job that
 * never returns makes tw_reactor_free never return: a running job cannot be
 * interrupted), their deferreds fire with their results, and every worker is
 * joined. Those callbacks run inside tw_reactor_free; the reactor refuses
 * cross-thread calls by then (TW_ECLOSED).
 *
 * Memory. A job costs one small allocation until its deferred fires. Values
 * and failures made on a worker are handed to the reactor's thread with
 * their only reference, which is the one hand-over failures allow. */
#ifndef TWIRL_THREADS_H
#define TWIRL_THREADS_H

#include <stddef.h>

#include "twirl/deferred.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults, as in Twisted's reactor pool (0 .. 10 threads). */
#define TW_THREAD_POOL_MIN_THREADS 0
#define TW_THREAD_POOL_MAX_THREADS 10
#define TW_THREAD_POOL_QUEUE_LIMIT 16384

typedef struct tw_thread_pool_options {
    unsigned min_threads; /* started with the first job (default 0) */
    unsigned max_threads; /* 0: TW_THREAD_POOL_MAX_THREADS (or min_threads if more); <= 1024 */
    size_t queue_limit;   /* jobs waiting for a worker; 0: TW_THREAD_POOL_QUEUE_LIMIT */
    size_t stack_bytes;   /* worker stack size; 0: the system default */
} tw_thread_pool_options;

/* Sets the pool's sizes before it is used (Twisted's suggestThreadPoolSize,
 * but binding). opts may be NULL for the defaults; it is borrowed for the
 * call. Makes the pool (no threads yet), after which tw_call_in_thread()
 * may be called from other threads. Reactor thread only. Returns 0,
 * TW_EINVAL (min_threads > max_threads, max_threads > 1024, stack_bytes
 * below PTHREAD_STACK_MIN), TW_EBUSY once a job was submitted (configure
 * before the first one), TW_EWRONG_THREAD, or TW_ENOMEM. */
int tw_thread_pool_configure(tw_reactor *r, const tw_thread_pool_options *opts);

/* A snapshot of the pool, for tests and monitoring. All zero when the
 * reactor has no pool yet. */
typedef struct tw_thread_pool_stats {
    unsigned threads;             /* workers alive (started and not yet joined) */
    unsigned idle;                /* of which waiting for a job */
    unsigned running;             /* jobs being run now */
    size_t queued;                /* jobs waiting for a worker */
    unsigned long long completed; /* jobs that ran to the end, in total */
} tw_thread_pool_stats;

/* Fills *out. Reactor thread only (the numbers are taken under the pool's
 * lock, so they are coherent with each other). */
void tw_thread_pool_stats_get(tw_reactor *r, tw_thread_pool_stats *out);

/* Work to run on a worker. It returns a value (taken: freed with its
 * destructor on the reactor's thread if nobody keeps it) or a failure
 * (tw_err). Returning a deferred is a mistake — deferreds belong to the
 * reactor's thread — and turns into a TW_EINVAL failure. */
typedef tw_result (*tw_thread_fn)(void *arg);

/* Twisted's deferToThread: runs fn(arg) on a worker and returns a deferred
 * (one reference for the caller) that fires on the reactor's thread, in a
 * later loop turn, with fn's result. arg is borrowed until fn returns (or
 * the job is cancelled or dropped before it ran); free it in a callback or
 * with tw_deferred_add_callbacks_full's arg_free.
 *
 * Refusals come back as an already-failed deferred, never NULL: TW_EFULL
 * (the queue holds queue_limit jobs), TW_ECLOSED (the pool is shutting
 * down), TW_EWRONG_THREAD (not the reactor's thread), TW_EINVAL (fn NULL),
 * TW_ENOMEM, or -errno when no worker could be started at all. NULL only
 * when even that deferred cannot be allocated.
 *
 * Cancelling. tw_deferred_cancel on a job still queued removes it from the
 * queue: fn never runs, and the deferred fails with a cancelled failure at
 * once. A job already running cannot be interrupted: the deferred fails
 * with a cancelled failure at once all the same, and fn's result, when it
 * arrives, is freed unseen. */
tw_deferred *tw_defer_to_thread(tw_reactor *r, tw_thread_fn fn, void *arg);

/* Twisted's callInThread: runs fn(arg) on a worker, fire and forget. Any
 * thread may call it once the pool exists (see "Threads" above). arg is the
 * caller's: fn usually frees it. A job still queued at shutdown or at
 * tw_reactor_free is dropped without running, so an arg that needs freeing
 * is leaked then — use tw_defer_to_thread when that matters. Returns 0,
 * TW_EFULL, TW_ECLOSED, TW_EINVAL (fn NULL), TW_EWRONG_THREAD (another
 * thread, and no pool yet), TW_ENOMEM, or -errno (no worker could start). */
int tw_call_in_thread(tw_reactor *r, tw_call_fn fn, void *arg);

/* Twisted's blockingCallFromThread: from any thread but the reactor's,
 * runs fn(arg) on the reactor's thread (through tw_call_from_thread) and
 * waits for its result. If fn returns a deferred, waits until that deferred
 * fires and returns its result. The result is the caller's: free it with
 * tw_result_free. It is never a deferred.
 *
 * Failures (returned, not raised): TW_EWRONG_THREAD when called on the
 * reactor's own thread (it would wait for itself forever; also logged at
 * level error), TW_ECLOSED when the reactor is being freed (before fn ran, or
 * while its deferred was pending), TW_ECANCELED when fn's deferred was freed
 * without ever firing, TW_ENOMEM. Blocks for as long as the reactor takes to
 * run fn: a reactor that is not running (or iterated) leaves the caller
 * waiting. */
tw_result tw_blocking_call_from_thread(tw_reactor *r, tw_result_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
