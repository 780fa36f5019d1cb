/* twirl/task.h — Twisted's task.LoopingCall: call a function every interval
 * seconds on a reactor's clock.
 *
 * Ticks are multiples of the interval from the start time. A call (or the
 * loop) that overruns skips the ticks it missed: the next call is at the next
 * multiple still in the future (one landing exactly on "now" after an overrun
 * is skipped too). The function may return a deferred; the next call is
 * scheduled only once it fires. A failure — returned, or from that deferred —
 * stops the loop and fails the deferred tw_looping_call_start gave.
 *
 * Time is counted in whole nanoseconds of the reactor clock, so the interval
 * arithmetic is exact (a 0.1 s interval ticks exactly ten times a second).
 * Like everything on a reactor, not thread-safe; every function here is safe
 * inside callbacks, the looping call's own included. */
#ifndef TWIRL_TASK_H
#define TWIRL_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "twirl/deferred.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_looping_call tw_looping_call;

/* The function called every tick. Its result (a value, freed at once; a
 * failure, which stops the loop; or a deferred to wait for, its reference
 * taken) is the same as a callback's. */
typedef tw_result (*tw_looping_fn)(void *arg);
/* LoopingCall.withCount: count is how many intervals went by since the
 * previous call (1 when on time; more after an overrun; never 0 — a tick
 * where no whole interval elapsed calls nothing). With interval 0 it is
 * always 1. */
typedef tw_result (*tw_looping_count_fn)(uint64_t count, void *arg);

/* Makes a stopped looping call on r that calls fn(arg). arg is borrowed for
 * the looping call's life. Returns 0 or TW_ENOMEM; *out is the caller's, to
 * free with tw_looping_call_free. */
int tw_looping_call_new(tw_reactor *r, tw_looping_fn fn, void *arg, tw_looping_call **out);
int tw_looping_call_new_with_count(tw_reactor *r, tw_looping_count_fn fn, void *arg,
                                   tw_looping_call **out);

/* Starts calling every interval seconds (>= 0; 0 means as often as the
 * reactor turns), the first call now (inside this function) or, with
 * now false, after one interval. Stores in *out (if not NULL) a deferred,
 * one reference for the caller, that fires with the looping call (a value
 * borrowing the tw_looping_call pointer) once stopped, or fails with the
 * function's failure. Returns 0, TW_EINVAL (negative or NaN interval, or the
 * reactor was freed), TW_EBUSY (already running) or TW_ENOMEM. The start
 * deferred may already have fired when this returns (the first call failed
 * or stopped the loop). */
int tw_looping_call_start(tw_looping_call *lc, double interval, bool now, tw_deferred **out);

/* Stops: no further calls. If no call is in progress the start deferred
 * fires now; otherwise it fires once the call (or the deferred it returned)
 * finishes. Returns 0 or TW_EINVAL if not running. */
int tw_looping_call_stop(tw_looping_call *lc);

/* Restarts the interval from now (only while waiting for the next tick).
 * Returns 0 or TW_EINVAL if not running. */
int tw_looping_call_reset(tw_looping_call *lc);

bool tw_looping_call_running(const tw_looping_call *lc);
double tw_looping_call_interval(const tw_looping_call *lc);

/* Frees it. If the start deferred has not fired yet, it fires now, before
 * this returns (with the looping call as its value, still valid inside its
 * callbacks), even when a call is in progress; that call's outcome then
 * goes nowhere (a failure it returns is logged; one from a deferred it
 * returned stays on that deferred's chain). NULL is a no-op. Safe inside its
 * own function. */
void tw_looping_call_free(tw_looping_call *lc);

#ifdef __cplusplus
}
#endif
#endif
