/* twirl/defer_sync.h — Twisted's DeferredLock, DeferredSemaphore and
 * DeferredQueue: coordination between callback chains on one reactor thread.
 *
 * Waiting is a deferred: acquire and get return one that fires when the
 * lock, a token or a value is there. Cancelling a waiting deferred removes it
 * from the queue of waiters and fails it with a cancelled failure;
 * cancelling one that was already granted does nothing. Like deferreds, none
 * of these are thread-safe, and all of them are safe to use inside
 * callbacks (including one granted by the same object). */
#ifndef TWIRL_DEFER_SYNC_H
#define TWIRL_DEFER_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/deferred.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- lock */

typedef struct tw_deferred_lock tw_deferred_lock;

/* Makes an unlocked lock the caller owns. Returns 0 or TW_ENOMEM. */
int tw_deferred_lock_new(tw_deferred_lock **out);

/* Frees the lock. Deferreds still waiting for it fail with a cancelled
 * failure first. A run() whose function has not finished must not be
 * pending (its release would use the freed lock). NULL is a no-op. */
void tw_deferred_lock_free(tw_deferred_lock *l);

/* Returns a deferred (one reference for the caller) that fires with the lock
 * (a value borrowing the tw_deferred_lock pointer) once the caller holds it:
 * at once if the lock is free, else after the earlier waiters. NULL when out
 * of memory. */
tw_deferred *tw_deferred_lock_acquire(tw_deferred_lock *l);

/* Releases the lock: the first waiter gets it at once (the lock stays
 * locked, and that waiter's callbacks run before this returns), else it
 * unlocks. Returns 0, or TW_EINVAL if the lock is not locked. */
int tw_deferred_lock_release(tw_deferred_lock *l);

bool tw_deferred_lock_locked(const tw_deferred_lock *l);

/* Acquires the lock, calls fn(arg) (as tw_maybe_deferred), and releases the
 * lock when fn's result — a value, a failure or a deferred's eventual result
 * — is there. The returned deferred (one reference for the caller) fires
 * with that result. fn NULL: a deferred failed with TW_EINVAL. NULL when out
 * of memory. arg is borrowed until fn runs (or the wait is cancelled). */
tw_deferred *tw_deferred_lock_run(tw_deferred_lock *l, tw_result_fn fn, void *arg);

/* ----------------------------------------------------------- semaphore */

typedef struct tw_deferred_semaphore tw_deferred_semaphore;

/* A semaphore with `tokens` tokens (>= 1). Returns 0, TW_EINVAL (tokens < 1)
 * or TW_ENOMEM. */
int tw_deferred_semaphore_new(size_t tokens, tw_deferred_semaphore **out);

/* As tw_deferred_lock_free. */
void tw_deferred_semaphore_free(tw_deferred_semaphore *s);

/* Fires (with the semaphore, borrowed) once a token is the caller's: at once
 * while tokens remain, else in order of asking. NULL when out of memory. */
tw_deferred *tw_deferred_semaphore_acquire(tw_deferred_semaphore *s);

/* Gives a token back; the first waiter, if any, takes it at once. Returns 0,
 * or TW_EINVAL if every token is already free. */
int tw_deferred_semaphore_release(tw_deferred_semaphore *s);

/* Free tokens now, and the number it was made with. */
size_t tw_deferred_semaphore_tokens(const tw_deferred_semaphore *s);
size_t tw_deferred_semaphore_limit(const tw_deferred_semaphore *s);

/* As tw_deferred_lock_run, holding one token. */
tw_deferred *tw_deferred_semaphore_run(tw_deferred_semaphore *s, tw_result_fn fn, void *arg);

/* --------------------------------------------------------------- queue */

typedef struct tw_deferred_queue tw_deferred_queue;

#define TW_QUEUE_UNLIMITED ((size_t)-1)

/* A queue holding at most size values nobody has asked for yet, and at most
 * backlog gets waiting for a value (TW_QUEUE_UNLIMITED: no limit). Returns 0
 * or TW_ENOMEM. */
int tw_deferred_queue_new(size_t size, size_t backlog, tw_deferred_queue **out);

/* Frees the queue and the values it still holds; gets still waiting fail
 * with a cancelled failure first. NULL is a no-op. */
void tw_deferred_queue_free(tw_deferred_queue *q);

/* Gives v to the first waiting get (whose callbacks run before this
 * returns), or stores it. Returns 0 when v was taken; TW_EFULL (Twisted's
 * QueueOverflow: size values are already stored) or TW_ENOMEM leave v with
 * the caller. */
int tw_deferred_queue_put(tw_deferred_queue *q, tw_value v);

/* Returns a deferred (one reference for the caller) that fires with the
 * next value: at once if one is stored, else when put. If backlog gets are
 * already waiting it fails at once with TW_EEMPTY (Twisted's
 * QueueUnderflow). NULL when out of memory. A cancelled get is forgotten:
 * the next put goes to the next waiter. */
tw_deferred *tw_deferred_queue_get(tw_deferred_queue *q);

/* Values stored, and gets waiting. */
size_t tw_deferred_queue_pending(const tw_deferred_queue *q);
size_t tw_deferred_queue_waiting(const tw_deferred_queue *q);

#ifdef __cplusplus
}
#endif
#endif
