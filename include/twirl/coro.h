/* twirl/coro.h — coroutines: Twisted's inlineCallbacks / async-await in C.
 *
 * A coroutine is a function that runs on its own stack and may wait for a
 * deferred in the middle of its code with tw_await(), as straight-line code,
 * instead of splitting itself into callbacks:
 *
 *     static tw_result fetch(void *arg)
 *     {
 *         tw_result pause = tw_await(tw_sleep(tw_coro_reactor(), 1.0));
 *         if (pause.failure)
 *             return pause;                 // cancelled while asleep: pass it on
 *         tw_value page;
 *         tw_failure *err;
 *         if (tw_await_value(get_page(arg), &page, &err) < 0)
 *             return tw_err(err);           // fails the coroutine's deferred
 *         return tw_ok_value(page);         // fires it with the page
 *     }
 *     tw_deferred *d = tw_coro_spawn(r, fetch, url, NULL);
 *
 * As with inlineCallbacks, tw_coro_spawn() runs the function at once, up to
 * its first real wait, and returns a deferred for its result; awaiting a
 * deferred that already has its result continues at once, without a switch.
 * A suspended coroutine resumes synchronously inside the callback of the
 * deferred it waits on, on whatever stack fires that deferred.
 *
 * Stacks. Each coroutine gets an mmap'd stack (64 KiB usable by default) with
 * an inaccessible guard region (16 KiB) below it: overflowing it is a
 * segmentation fault, never silent corruption. The default leaves ordinary
 * library and libc calls a wide margin (tw_log alone formats into a 4 KiB
 * buffer) while costing little: the stack is reserved address space, and
 * only the pages a coroutine touches become memory. A suspended coroutine
 * that logged nothing costs about 4.6 KiB of memory in all (one stack page,
 * its deferreds and its timer), one that logged about 8.6 KiB: 10,000 of
 * them take some 50-90 MiB. A coroutine that keeps big buffers on its stack
 * or recurses deeply asks for more with tw_coro_options.stack_bytes; a
 * frame bigger than the guard region could jump over it (build with
 * -fstack-clash-protection to rule that out). Builds with sanitizers give
 * every stack four times the size (instrumented frames are larger).
 * Finished coroutines' stacks are kept for reuse by their reactor (at most
 * 32 stacks and 2 MiB in a normal build) and unmapped when the reactor is
 * freed. Each stack is two kernel mappings, so a process can hold about
 * vm.max_map_count / 2 (about 32,000 by default) coroutines at once.
 *
 * The context switch is assembly on x86-64 and AArch64: on the bench
 * machine a suspend+resume pair costs about 11 ns, and a whole await of a
 * deferred fired later (deferred made, awaited, fired, coroutine resumed)
 * 55-75 ns (bench/bench_coro.c). Elsewhere, in a library configured with
 * -DTWIRL_CORO_SWITCH=ucontext, or when the environment says
 * TWIRL_CORO_SWITCH=ucontext (read once per process; e.g. for a tool that
 * cannot follow the assembly), it is makecontext/swapcontext: the same
 * behaviour, but a system call each way (glibc sets the signal mask), some
 * 2.5 us per suspend+resume there.
 *
 * Threads. A coroutine belongs to the reactor it was spawned on and runs
 * only on that reactor's thread.
 *
 * Freeing a reactor with suspended coroutines. tw_reactor_free() cancels the
 * deferred each suspended coroutine awaits, so every coroutine resumes with a
 * cancelled failure (code TW_ECANCELED) and can run its cleanup to the end;
 * while the reactor is being freed, any further tw_await cancels what it is
 * given at once. The coroutines' deferreds then fire as usual. A coroutine
 * still suspended after that (it awaits a paused deferred, which cannot run
 * its callbacks) is logged and left waiting, keeping its stack and that
 * deferred: it resumes, reactor-less (tw_coro_reactor() is NULL), if the
 * deferred is ever unpaused. A coroutine that ignores the cancellation and
 * awaits in an endless loop never ends, as in Twisted. */
#ifndef TWIRL_CORO_H
#define TWIRL_CORO_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/deferred.h"
#include "twirl/failure.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The coroutine's body. Its returned result fires the coroutine's deferred: a
 * value (tw_ok..., TW_RESULT_NONE for "None"), a failure (tw_err), or a
 * deferred whose result it should take on (tw_chain). arg is the spawner's. */
typedef tw_result (*tw_coro_fn)(void *arg);

typedef struct tw_coro_options {
    /* Usable stack bytes; 0 for the default (64 KiB). Rounded up to whole
     * pages; requests under 16 KiB get 16 KiB; over 1 GiB are refused. */
    size_t stack_bytes;
} tw_coro_options;

/* Runs fn(arg) as a coroutine of r: starts it now, on its own stack, and
 * returns when it first suspends in tw_await (or finishes). Returns a
 * deferred, one reference for the caller, that fires with fn's result
 * (already fired if fn finished without suspending). Never calls fn when it
 * fails; the deferred then fails with TW_EINVAL (r or fn NULL, stack size out
 * of range), TW_EWRONG_THREAD (not on r's thread), TW_ECLOSED (r is being
 * freed) or TW_ENOMEM. Returns NULL only if even that failed deferred cannot
 * be allocated. opts may be NULL; it is borrowed for the call; arg is
 * borrowed for the coroutine's life.
 *
 * Cancelling the returned deferred (tw_deferred_cancel) cancels the deferred
 * the coroutine awaits, so its tw_await returns the resulting failure
 * (usually TW_ECANCELED); the coroutine may clean up, turn that into
 * another failure or a value, even await more. The returned deferred fires
 * only when the coroutine finishes, with whatever it returns. A cancel that
 * arrives while the coroutine runs (it cancelled itself) applies to its next
 * tw_await.
 *
 * Safe inside any callback and inside another coroutine. */
tw_deferred *tw_coro_spawn(tw_reactor *r, tw_coro_fn fn, void *arg, const tw_coro_options *opts);

/* Waits for d and returns its result, which the caller then owns (free it
 * with tw_result_free, or move it on). Takes the caller's reference to d on
 * every path. d's own chain goes on with an empty result afterwards (so a
 * failure returned here is reported nowhere else).
 *
 * If d already has its result, returns it at once: no switch and no stack
 * growth. Otherwise suspends the coroutine, keeping the reference (so d
 * stays alive while awaited); it resumes inside d's callback once d fires,
 * or once it is cancelled (see tw_coro_spawn). As in Twisted, a deferred
 * that nothing will ever fire keeps the coroutine waiting until it is
 * cancelled or its reactor is freed.
 *
 * Errors are returned as failures and logged (level error, domain "coro"):
 * TW_EINVAL when called outside a coroutine (a plain callback, main), or for
 * d NULL (a constructor that ran out of memory) or for the coroutine's own
 * deferred (it would wait forever); TW_EWRONG_THREAD when called on a thread
 * that runs no coroutines while others do (a thread-pool worker); TW_ENOMEM.
 * Only inside a coroutine, from its own code: a callback that the
 * coroutine's code sets off (by firing a deferred) runs on the coroutine's
 * stack too, and an await there would suspend the whole coroutine in the
 * middle of that callback. Never blocks the thread. */
tw_result tw_await(tw_deferred *d);

/* tw_await for the common case: on a value, moves it into *out (if out is
 * not NULL; otherwise frees it) and returns 0. On a failure, stores it in
 * *err (the caller's reference; if err is NULL it is dropped) and returns its
 * code when it is a library failure (domain TW_DOMAIN), or TW_EUNHANDLED for
 * another domain. *out / *err are set to empty / NULL otherwise. */
int tw_await_value(tw_deferred *d, tw_value *out, tw_failure **err);

/* A deferred that fires with an empty value after seconds on r's clock
 * (fake or real); cancelling it stops the timer. Made for
 * tw_await(tw_sleep(r, s)). Returns a deferred with one reference for the
 * caller: a failed one for r NULL (TW_EINVAL); NULL when out of memory
 * (tw_await turns that into a failure). Safe anywhere on r's thread. */
tw_deferred *tw_sleep(tw_reactor *r, double seconds);

/* True when called inside a coroutine (on this thread). */
bool tw_coro_inside(void);

/* The reactor of the coroutine running now, or NULL outside a coroutine (or
 * once its reactor was freed). */
tw_reactor *tw_coro_reactor(void);

#ifdef __cplusplus
}
#endif
#endif
