/* twirl/deferred.h — Twisted's Deferred in C.
 *
 * A deferred is a result that is not there yet, and a chain of callbacks and
 * errbacks to run on it when it arrives. The result is a tw_result: a value
 * (a pointer with its destructor), a failure, or — returned from a callback —
 * another deferred to wait for (Twisted's chaining rule).
 *
 * Ownership.
 *  - Values carry their destructor. The chain owns the current result; a
 *    callback borrows it through `in` and either moves it out (tw_result_move)
 *    to keep or return it, or leaves it, in which case the chain frees it
 *    after the callback returns. So every value is freed exactly once on every
 *    path: replaced, dropped, cancelled or left in a deferred that is freed.
 *  - Deferreds are reference counted. A function that returns a deferred gives
 *    the caller one reference; the caller drops it with tw_deferred_unref once
 *    it has added its callbacks, or hands it on (returning it from a callback
 *    or awaiting it takes the reference). A producer that fires the deferred
 *    later keeps a reference of its own, and must hold one while it fires.
 *  - A deferred returned from a callback (the "inner") is waited on, but not
 *    kept alive by the "outer" deferred waiting on it: its producer keeps it.
 *    The inner keeps the outer alive until it passes its result on. If the
 *    inner is freed without ever firing, the outer simply never continues
 *    (as in Twisted, where both would be garbage).
 *  - Callbacks whose deferred is freed before they run are never called;
 *    tw_deferred_add_callbacks_full's arg_free lets their argument be freed
 *    all the same.
 *  - A deferred freed while its result is a failure that no errback handled
 *    logs "Unhandled error in Deferred" (level error, domain "deferred") with
 *    the failure, its causes and where each was raised.
 *
 * Deferreds are not thread-safe: use them on one reactor's thread. Chains run
 * in a loop with an explicit work list, never by recursion, so a chain of any
 * length (or depth of deferreds waiting on deferreds) uses bounded C stack;
 * freeing and cancelling such chains is iterative too. */
#ifndef TWIRL_DEFERRED_H
#define TWIRL_DEFERRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/failure.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_deferred tw_deferred;
typedef void (*tw_free_fn)(void *ptr);

/* A value and the function that frees it (NULL: nothing to free). */
typedef struct tw_value {
    void *ptr;
    tw_free_fn free;
} tw_value;

/* Exactly one of: a value (failure and deferred NULL), a failure, or a
 * deferred to wait for. An empty result (all zero) is the value "None". */
typedef struct tw_result {
    tw_value value;
    tw_failure *failure;
    tw_deferred *deferred;
} tw_result;

#define TW_VALUE_NONE ((tw_value){ NULL, NULL })

static inline tw_value tw_value_make(void *ptr, tw_free_fn free_fn)
{
    tw_value v = { ptr, free_fn };
    return v;
}
static inline tw_value tw_value_int(intptr_t n)
{
    tw_value v = { (void *)n, NULL };
    return v;
}
static inline intptr_t tw_value_as_int(tw_value v)
{
    return (intptr_t)v.ptr;
}
/* Frees the value with its destructor and empties it. */
void tw_value_free(tw_value *v);

/* Result constructors. tw_ok takes ownership of ptr (freed with free_fn),
 * tw_err takes the failure's reference, tw_chain takes the deferred's. */
static inline tw_result tw_ok(void *ptr, tw_free_fn free_fn)
{
    tw_result r = { { ptr, free_fn }, NULL, NULL };
    return r;
}
static inline tw_result tw_ok_value(tw_value v)
{
    tw_result r = { v, NULL, NULL };
    return r;
}
static inline tw_result tw_ok_int(intptr_t n)
{
    tw_result r = { { (void *)n, NULL }, NULL, NULL };
    return r;
}
static inline tw_result tw_err(tw_failure *f)
{
    tw_result r = { { NULL, NULL }, f, NULL };
    return r;
}
static inline tw_result tw_chain(tw_deferred *d)
{
    tw_result r = { { NULL, NULL }, NULL, d };
    return r;
}
#define TW_RESULT_NONE ((tw_result){ { NULL, NULL }, NULL, NULL })

static inline bool tw_result_failed(const tw_result *r)
{
    return r->failure != NULL;
}

/* Moves the result out of *r, leaving *r empty (TW_RESULT_NONE). */
static inline tw_result tw_result_move(tw_result *r)
{
    tw_result out = *r;
    *r = TW_RESULT_NONE;
    return out;
}

/* Frees whatever the result holds and empties it. */
void tw_result_free(tw_result *r);

/* A callback or errback. `in` is the current result, borrowed: move it out
 * to keep it. The returned result replaces it: a value continues down the
 * callback path, a failure down the errback path, a deferred pauses the chain
 * until that deferred fires (its reference is taken), and the chain then goes
 * on with that deferred's result, which the inner deferred gives up (its own
 * later callbacks see an empty result, so a failure is reported only once).
 * Returning the very deferred the callback is attached to, or one that waits
 * (through others) on it, fails the chain with TW_ECYCLE instead of waiting
 * forever (cycles through more than 1024 waiting deferreds go undetected). */
typedef tw_result (*tw_callback_fn)(tw_result *in, void *arg);

/* Called by tw_deferred_cancel on an unfired deferred. It may fire d; if it
 * does not, d fails with a cancelled failure. arg is borrowed for as long as
 * d is unfired. */
typedef void (*tw_canceller_fn)(tw_deferred *d, void *arg);

/* Makes an unfired deferred with one reference for the caller. canceller may
 * be NULL. Returns NULL when out of memory. Allocates nothing else unless
 * more than four callback pairs wait on it at once. */
tw_deferred *tw_deferred_new(tw_canceller_fn canceller, void *arg);

/* Already-fired deferreds (Twisted's succeed/fail); they take v / f. Return
 * NULL when out of memory (v is then freed, f unreferenced). */
tw_deferred *tw_succeed(tw_value v);
tw_deferred *tw_fail(tw_failure *f);

tw_deferred *tw_deferred_ref(tw_deferred *d);
/* Drops a reference. NULL is a no-op. See "Ownership" above. */
void tw_deferred_unref(tw_deferred *d);

/* Fire the deferred with a value (taken) or a failure (taken); the caller
 * must hold a reference. Callbacks run now, before these return (unless the
 * deferred is paused). Firing twice returns TW_EALREADY_CALLED and logs it
 * (level error, domain "deferred"); the rejected value is freed. After
 * tw_deferred_cancel on a deferred without a canceller, one later firing by
 * the original producer is swallowed silently (returns 0, the value freed).
 * Safe inside callbacks, including this deferred's own (where it is "already
 * called"). tw_deferred_errback with a NULL failure returns TW_EINVAL and
 * leaves d unfired. */
int tw_deferred_callback(tw_deferred *d, tw_value v);
int tw_deferred_errback(tw_deferred *d, tw_failure *f);
/* Fires with any result; a deferred result (its reference taken) makes d wait
 * for it, as if a callback had returned it. d itself gives TW_ECYCLE (d then
 * fails with that failure). */
int tw_deferred_fire(tw_deferred *d, tw_result r);

/* Adds a callback/errback pair (either may be NULL: pass the result through
 * unchanged). If d has already fired, the chain runs now (Twisted: a late
 * callback runs at once); if d's callbacks are running (a callback adding to
 * its own deferred), the pair goes to the end of the chain and runs after the
 * current callback returns. Returns 0, or TW_ENOMEM when the pair could not
 * be added (d is then unchanged). arg is borrowed; with the _full form,
 * arg_free(arg) (if not NULL) is called exactly once, when the pair is done
 * with: after whichever of cb/eb ran (or was skipped) returns, or when d is
 * freed before reaching it — but not when TW_ENOMEM is returned. */
int tw_deferred_add_callbacks(tw_deferred *d, tw_callback_fn cb, tw_callback_fn eb, void *arg);
int tw_deferred_add_callbacks_full(tw_deferred *d, tw_callback_fn cb, tw_callback_fn eb, void *arg,
                                   tw_free_fn arg_free);
int tw_deferred_add_callback(tw_deferred *d, tw_callback_fn cb, void *arg);
int tw_deferred_add_errback(tw_deferred *d, tw_callback_fn eb, void *arg);
int tw_deferred_add_both(tw_deferred *d, tw_callback_fn fn, void *arg);

/* Forwards d's result (at that point of its chain) to other, firing it
 * (Twisted's chainDeferred); d's chain goes on with an empty result. If other
 * has already been fired, d's chain gets an already-called failure instead.
 * Takes no references from the caller; d keeps other alive until it passes
 * the result on. Returns 0, TW_EINVAL (d == other) or TW_ENOMEM. */
int tw_deferred_chain(tw_deferred *d, tw_deferred *other);

/* Pauses nest; callbacks run only when every pause is matched. unpause
 * without a pause is ignored. Safe inside callbacks. */
void tw_deferred_pause(tw_deferred *d);
void tw_deferred_unpause(tw_deferred *d);

/* Cancels an unfired deferred (see tw_canceller_fn); a deferred waiting on
 * another one cancels that one (at any depth, without recursion). No-op on a
 * fired deferred. The caller must hold a reference. Safe inside callbacks. */
void tw_deferred_cancel(tw_deferred *d);

/* Fired (Twisted's `called`): true from the first firing on, also while the
 * deferred waits on another one. */
bool tw_deferred_called(const tw_deferred *d);
/* True while it has a result that is not waiting on another deferred. The
 * result itself is for the chain, not for peeking; use a callback. */
bool tw_deferred_has_result(const tw_deferred *d);
/* True while d's result is a failure (fired, not waiting). For tests and
 * assertions; handling still belongs in an errback. */
bool tw_deferred_failed(const tw_deferred *d);

/* Calls fn(arg): a plain result becomes an already-fired deferred, a
 * returned deferred is passed through (Twisted's maybeDeferred). Returns a
 * deferred with one reference for the caller, or NULL when out of memory
 * (fn's result is then freed). */
typedef tw_result (*tw_result_fn)(void *arg);
tw_deferred *tw_maybe_deferred(tw_result_fn fn, void *arg);

/* Cancels d and fails it with a timed-out failure (domain twirl, code
 * TW_ETIMEDOUT, the cancelled failure as its cause) if it has not fired after
 * seconds on r (Twisted's addTimeout). A canceller or an earlier errback that
 * turns the cancellation into a value or another failure keeps it. A result
 * before the time stops the timer; so does a manual cancel (which keeps its
 * cancelled failure); on a deferred that already has its result the timer
 * is stopped at once. Returns 0 or TW_ENOMEM. Freeing r first simply
 * forgets the timeout. */
int tw_deferred_add_timeout(tw_deferred *d, double seconds, tw_reactor *r);
/* Twisted's onTimeoutCancel: on timeout, fn(in, seconds, arg) decides the
 * result instead of the standard conversion (same ownership rules as a
 * callback). arg is borrowed until d fires. */
typedef tw_result (*tw_timeout_fn)(tw_result *in, double seconds, void *arg);
int tw_deferred_add_timeout_full(tw_deferred *d, double seconds, tw_reactor *r,
                                 tw_timeout_fn on_timeout, void *arg);

/* A deferred that fires with fn(arg)'s result after delay seconds (a value,
 * a failure, or a deferred's eventual result); cancelling it before then
 * prevents the call and fails it with a cancelled failure (Twisted's
 * deferLater). fn may be NULL: fires with an empty result. The reactor keeps
 * the deferred alive until it fires; freeing the reactor first drops it
 * without firing. Returns a deferred with one reference for the caller, or
 * NULL when out of memory. arg is borrowed until fn runs or the deferred is
 * cancelled. */
tw_deferred *tw_defer_later(tw_reactor *r, double delay, tw_result_fn fn, void *arg);

/* --------------------------------------------------- DeferredList, gather */

enum {
    TW_LIST_FIRE_ON_ONE_CALLBACK = 1u << 0, /* first success fires the list */
    TW_LIST_FIRE_ON_ONE_ERRBACK = 1u << 1,  /* first failure fails it (FirstError) */
    TW_LIST_CONSUME_ERRORS = 1u << 2        /* inputs' chains go on with an empty result */
};

/* One input's outcome, in input order. fired is false only for inputs that
 * had not fired when a fire-on-one list fired. */
typedef struct tw_list_item {
    bool fired;
    bool success;
    tw_value value;      /* success: the input's value, moved here */
    tw_failure *failure; /* failure: a reference of the list's own */
} tw_list_item;

/* A DeferredList's result value (freed with tw_list_result_free, which is
 * its tw_value destructor). index is the input that fired a
 * TW_LIST_FIRE_ON_ONE_CALLBACK list (its value is items[index].value), or
 * TW_LIST_NO_INDEX when the list holds every input's outcome. */
#define TW_LIST_NO_INDEX ((size_t)-1)
typedef struct tw_list_result {
    size_t n;
    size_t index;
    tw_list_item items[];
} tw_list_result;
void tw_list_result_free(void *list_result);

/* Twisted's DeferredList over ds[0..n) (borrowed: the caller keeps its
 * references; the list keeps none, and an input freed unfired leaves the
 * list waiting forever). Fires with a tw_list_result once every input fired
 * (at once if all had already fired; an empty list fires at once, except
 * with TW_LIST_FIRE_ON_ONE_CALLBACK, where it never does). A success's value
 * is moved into the list: the input's own chain goes on with an empty
 * result. A failure is recorded and, without TW_LIST_CONSUME_ERRORS, goes on
 * down the input's chain too (so it is reported there if unhandled); with it,
 * the input's chain goes on with an empty result. Outcomes arriving after a
 * fire-on-one list fired stay on the inputs' chains. With
 * TW_LIST_FIRE_ON_ONE_ERRBACK the first failure fails the list with a
 * FirstError (see tw_first_error_index). Cancelling an unfired list cancels
 * every unfired input; their outcomes (values from cancellers included) are
 * reported as usual. Returns a deferred with one reference for the caller,
 * or NULL when out of memory. */
tw_deferred *tw_deferred_list(tw_deferred *const *ds, size_t n, unsigned flags);

/* gatherResults' value: the inputs' values in input order (moved in). */
typedef struct tw_gather_result {
    size_t n;
    tw_value values[];
} tw_gather_result;
void tw_gather_result_free(void *gather_result);

/* Twisted's gatherResults: fires with a tw_gather_result of every input's
 * value, or fails at the first failure with a FirstError. Inputs and
 * cancellation as for tw_deferred_list with TW_LIST_FIRE_ON_ONE_ERRBACK. */
tw_deferred *tw_gather(tw_deferred *const *ds, size_t n, bool consume_errors);

/* FirstError: a failure with domain twirl and code TW_EFIRST_ERROR whose
 * cause is the input's failure (tw_failure_cause). Returns the failed input's
 * index, or -1 if f is not a FirstError. */
long tw_first_error_index(const tw_failure *f);

/* ----------------------------------------- shutdown triggers with deferreds */

typedef struct tw_deferred_trigger tw_deferred_trigger;
/* Returns a deferred (its reference is taken) or NULL for "nothing to wait
 * for". */
typedef tw_deferred *(*tw_deferred_trigger_fn)(tw_reactor *r, void *arg);

/* Twisted's addSystemEventTrigger with a trigger returning a Deferred: like
 * tw_reactor_add_trigger, but in the "before" phase the deferred fn returns
 * holds the phase (tw_reactor_hold_phase) until it fires, with a value or a
 * failure (a failure still goes on down its chain and is logged if
 * unhandled); the deferred being freed unfired releases the hold too. In the
 * other phases the deferred is not waited for. Stores a handle in *out when
 * out is not NULL; the trigger lives until tw_reactor_remove_deferred_trigger
 * or tw_reactor_free. arg is borrowed. Returns 0, TW_EINVAL or TW_ENOMEM. */
int tw_reactor_add_deferred_trigger(tw_reactor *r, tw_phase phase, tw_system_event event,
                                    tw_deferred_trigger_fn fn, void *arg,
                                    tw_deferred_trigger **out);
/* Removes and frees it; a hold it already took stays until its deferred
 * fires. Safe inside any callback, its own included. Returns 0 or
 * TW_EINVAL. */
int tw_reactor_remove_deferred_trigger(tw_reactor *r, tw_deferred_trigger *t);

#ifdef __cplusplus
}
#endif
#endif
