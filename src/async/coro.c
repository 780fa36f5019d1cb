/* coro.c — coroutines over fibers and deferreds (twirl/coro.h).
 *
 * The waiting protocol. tw_await(d) keeps the reference it is given for as
 * long as it waits, and adds one callback pair to d with an arg_free hook.
 * The pair moves d's result into the coroutine; the hook, which the deferred
 * calls exactly once when the pair is done with (right after it ran), is the
 * single place a suspended coroutine is resumed. Once the hook ran, nothing
 * on d points at the coroutine any more (its memory may already hold another
 * one), and the coroutine drops its reference. Holding the reference keeps
 * `waiting` safe to cancel at any time: a deferred whose last reference went
 * may sit on the deferred layer's free list for a while, and must not be
 * touched then.
 *
 * Cancelling. The coroutine's deferred (`outer`) has coro_cancel as its
 * canceller. It cancels what the coroutine awaits, which resumes it with the
 * failure; if the coroutine is still alive afterwards, the canceller fires
 * outer with a fresh deferred to wait on (Twisted's inlineCallbacks does the
 * same), so outer does not fail early: it takes the coroutine's result when
 * it finally returns. A second cancel reaches the fresh deferred (a deferred
 * waiting on another cancels that one), whose canceller is coro_cancel
 * again. In a nest of coroutines awaiting each other, each level's cancel
 * reaches the next level's canceller; those wait in a queue instead of
 * recursing, and so do the deferreds of coroutines that finish while
 * another's fires (coro_finish): a nest of any depth unwinds in bounded C
 * stack, even on a coroutine's small one.
 *
 * Per reactor (the TW__SLOT_CORO slot): the pool of finished stacks and the
 * list of live coroutines, which tw_reactor_free uses to cancel them. */
#include "twirl/coro.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "async/coro_internal.h"
#include "core/reactor_internal.h"
#include "twirl/log.h"

enum {
    POOL_MAX = 32,
    POOL_MAX_BYTES = 2 * 1024 * 1024 * TW__FIBER_SANITIZER_SCALE,
};

typedef struct coro_reactor coro_reactor;
typedef struct tw_coro tw_coro;

/* Lives in its fiber's extra memory, at the top of the stack mapping. */
struct tw_coro {
    tw__fiber *fiber;
    coro_reactor *rs;    /* NULL once the reactor is freed */
    tw_reactor *reactor; /* idem */
    tw_coro_fn fn;
    void *arg;
    tw_deferred *outer;   /* ours; fired with fn's result */
    tw_deferred *waiting; /* a reference of ours, while our pair on it is pending */
    tw_result await_result;
    tw_result final;
    tw_coro *next, **pprev; /* the reactor's live list */
    /* Suspended means the fiber is (in tw_await: the only place that
     * yields); there is no second flag for it. */
    bool pending;     /* our pair on `waiting` is not done with yet */
    bool have_result; /* await_result holds what the pair delivered */
    /* Either makes the next await cancel what it is given (tw_await tests
     * them together). */
    bool cancel_requested;        /* cancelled, not yet delivered to an await */
    bool doomed;                  /* its reactor is being freed */
    bool thread_bounce;           /* a resume is queued with tw_call_from_thread */
    const void *home;             /* a thread-local address of the thread it runs on */
    tw_coro *cq_next, **cq_pprev; /* the thread's cancel queue (see coro_cancel) */
};

struct coro_reactor {
    tw_reactor *r;
    tw__fiber *pool[POOL_MAX];
    size_t npool;
    size_t pool_bytes;
    tw_coro *live;
    bool closing; /* tw_reactor_free is cancelling the coroutines */
};

/* The coroutine running on this thread now (NULL: none). Nested resumes
 * (a coroutine firing a deferred another one awaits) save and restore it. */
static __thread tw_coro *current;
/* For telling "outside a coroutine" from "on the wrong thread". */
static __thread bool thread_spawned;
static atomic_bool any_spawned;

#define coro_fail(code, ...) tw_failure_new(TW_DOMAIN, (code), __VA_ARGS__)

/* ------------------------------------------------------------ the pool */

static void pool_put(coro_reactor *rs, tw__fiber *f)
{
    size_t bytes = tw__fiber_stack_bytes(f);
    if (rs && !rs->closing && rs->npool < POOL_MAX && rs->pool_bytes + bytes <= POOL_MAX_BYTES) {
        rs->pool[rs->npool++] = f;
        rs->pool_bytes += bytes;
    } else {
        tw__fiber_free(f);
    }
}

/* A pooled stack of exactly this size, most recently used first (its pages
 * are the likeliest to be warm). */
static tw__fiber *pool_take(coro_reactor *rs, size_t stack_bytes)
{
    for (size_t i = rs->npool; i-- > 0;) {
        tw__fiber *f = rs->pool[i];
        if (tw__fiber_stack_bytes(f) == stack_bytes) {
            rs->pool[i] = rs->pool[--rs->npool];
            rs->pool_bytes -= stack_bytes;
            return f;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ live list */

static void live_link(coro_reactor *rs, tw_coro *co)
{
    co->next = rs->live;
    co->pprev = &rs->live;
    if (rs->live)
        rs->live->pprev = &co->next;
    rs->live = co;
}

static void live_unlink(tw_coro *co)
{
    if (!co->pprev)
        return;
    *co->pprev = co->next;
    if (co->next)
        co->next->pprev = co->pprev;
    co->next = NULL;
    co->pprev = NULL;
}

/* ------------------------------------------------------------ running */

static void coro_body(tw__fiber *f, void *arg)
{
    tw_coro *co = arg;
    co->final = co->fn(co->arg);
}

static void cancel_queue_remove(tw_coro *co);

/* Finished coroutines whose deferred is still to fire, when one finished
 * while another's deferred was firing (see coro_finish). Linked through
 * co->next: they are off the live list by then. */
static __thread tw_coro *finish_head, *finish_tail;
static __thread bool finishing;

/* Gives the stack back, then fires outer — on the resumer's stack, so outer's
 * callbacks never run on (or pin) the coroutine's. */
static void fire_finished(tw_coro *co)
{
    tw_result res = tw_result_move(&co->final);
    tw_deferred *outer = co->outer;
    co->outer = NULL;
    pool_put(co->rs, co->fiber); /* co lives in there: not touched after */
    if (outer) {
        tw_deferred_fire(outer, res);
        tw_deferred_unref(outer);
    } else {
        tw_result_free(&res);
    }
}

/* The coroutine's fn returned and its stack is left for good. Firing its
 * deferred may resume the coroutine that awaits it, which may finish in
 * turn, and so on up a nest of any depth: firing those from here would grow
 * this C stack by a few hundred bytes a level (and this may be a coroutine's
 * small stack). So while one deferred fires, coroutines that finish wait in
 * a queue and fire in order after it, from this loop: the resumption itself
 * stays immediate, as in Twisted; only the parent's deferred fires after the
 * remaining callbacks of the child's. */
static void coro_finish(tw_coro *co)
{
    live_unlink(co);
    cancel_queue_remove(co);
    co->next = NULL;
    if (finishing) {
        if (finish_tail)
            finish_tail->next = co;
        else
            finish_head = co;
        finish_tail = co;
        return;
    }
    finishing = true;
    fire_finished(co);
    while ((co = finish_head)) {
        finish_head = co->next;
        if (!finish_head)
            finish_tail = NULL;
        fire_finished(co);
    }
    finishing = false;
}

static inline bool co_suspended(const tw_coro *co)
{
    return co->fiber->state == TW__FIBER_SUSPENDED;
}

/* Inline into its callers: one frame fewer between a deferred's callback and
 * the switch (see coro_internal.h on why frames matter here). */
static inline __attribute__((always_inline)) void coro_resume(tw_coro *co)
{
    tw_coro *prev = current;
    current = co;
    bool done = tw__fiber_resume(co->fiber);
    current = prev;
    if (done)
        coro_finish(co);
}

/* ------------------------------------------------------------ waiting */

static tw_result await_result_cb(tw_result *in, void *arg)
{
    tw_coro *co = arg;
    co->await_result = tw_result_move(in);
    co->have_result = true;
    return TW_RESULT_NONE;
}

static void bounced_resume(void *arg)
{
    tw_coro *co = arg;
    co->thread_bounce = false;
    coro_resume(co);
}

/* The pair on `waiting` is done with: it ran (or the deferred was freed
 * before it could, which our reference rules out; kept for safety). Resumes
 * the coroutine if it is suspended. */
static void await_done(void *arg)
{
    tw_coro *co = arg;
    co->pending = false;
    co->waiting = NULL;
    if (__builtin_expect(!co->have_result, 0)) {
        co->await_result = tw_err(coro_fail(
            TW_ECANCELED, "the awaited deferred was freed without firing; it never will"));
        co->have_result = true;
    }
    if (!co_suspended(co))
        return; /* inside tw_await still: it takes the result itself */
    /* The home address is the cheap test; a reactor that moved to another
     * thread since (and its coroutines with it) gets the full one. */
    if (__builtin_expect(co->home != &thread_spawned, 0) && co->reactor &&
        !tw__reactor_on_thread(co->reactor)) {
        /* Deferreds are not thread-safe, so this is a bug elsewhere; the
         * least harm is to run the coroutine where it belongs. */
        tw_log(TW_LOG_ERROR, "coro",
               "a deferred awaited by a coroutine fired on another thread; "
               "resuming the coroutine on its reactor's thread");
        co->thread_bounce = true;
        if (tw_call_from_thread(co->reactor, bounced_resume, co) == 0)
            return;
        co->thread_bounce = false;
    }
    coro_resume(co);
}

static tw_result await_error(int code, const char *what)
{
    tw_failure *f = coro_fail(code, "%s", what);
    tw_log(TW_LOG_ERROR, "coro", "%s", what);
    return tw_err(f);
}

tw_result tw_await(tw_deferred *d)
{
    tw_coro *co = current;
    if (!d)
        return await_error(TW_EINVAL, "tw_await(NULL): no deferred to wait for "
                                      "(did the function making it run out of memory?)");
    if (!co) {
        bool wrong_thread =
            !thread_spawned && atomic_load_explicit(&any_spawned, memory_order_relaxed);
        tw_deferred_unref(d);
        if (wrong_thread)
            return await_error(TW_EWRONG_THREAD,
                               "tw_await called on a thread that runs no coroutine; "
                               "a coroutine awaits on its reactor's thread");
        return await_error(TW_EINVAL, "tw_await called outside a coroutine");
    }
    if (d == co->outer) {
        tw_deferred_unref(d);
        return await_error(TW_EINVAL,
                           "a coroutine awaited its own deferred: it would wait forever");
    }

    co->waiting = d; /* the caller's reference is ours until we are resumed */
    co->pending = true;
    co->have_result = false;
    if (tw_deferred_add_callbacks_full(d, await_result_cb, await_result_cb, co, await_done) < 0) {
        co->waiting = NULL;
        co->pending = false;
        tw_deferred_unref(d);
        return tw_err(tw_failure_from_code(TW_ENOMEM));
    }
    /* Already fired: the pair ran inside the call above and await_done saw
     * us not suspended. Otherwise, a pending cancel (or a reactor being
     * freed) cancels d before we wait. */
    if (co->pending && (co->cancel_requested | co->doomed)) {
        co->cancel_requested = false;
        tw_deferred_cancel(d);
    }
    if (co->pending) {
        tw__fiber_yield(co->fiber);
        /* Resumed by await_done. */
    }
    co->have_result = false;
    tw_deferred_unref(d);
    return tw_result_move(&co->await_result);
}

int tw_await_value(tw_deferred *d, tw_value *out, tw_failure **err)
{
    tw_result r = tw_await(d);
    if (out)
        *out = TW_VALUE_NONE;
    if (err)
        *err = NULL;
    if (r.failure) {
        tw_failure *f = r.failure;
        r.failure = NULL;
        tw_result_free(&r); /* a malformed result holding more */
        int code = strcmp(tw_failure_domain(f), TW_DOMAIN) == 0 && tw_failure_code(f) < 0
                       ? tw_failure_code(f)
                       : TW_EUNHANDLED;
        if (err)
            *err = f;
        else
            tw_failure_unref(f);
        return code;
    }
    if (out) {
        *out = r.value;
        r.value = TW_VALUE_NONE;
    }
    tw_result_free(&r);
    return 0;
}

/* ------------------------------------------------------------ cancelling */

/* Cancels that arrive while another is being delivered (a nest of
 * coroutines awaiting each other cancels level by level), waiting their
 * turn, so that cancelling a nest of any depth uses bounded C stack. A
 * coroutine leaves the queue when it finishes. */
static __thread tw_coro *cancel_head;
static __thread tw_coro **cancel_tail; /* NULL: &cancel_head (not a constant) */
static __thread bool cancelling;

static void cancel_queue_push(tw_coro *co)
{
    if (co->cq_pprev)
        return; /* already queued */
    tw_coro **tail = cancel_tail ? cancel_tail : &cancel_head;
    co->cq_next = NULL;
    co->cq_pprev = tail;
    *tail = co;
    cancel_tail = &co->cq_next;
}

static void cancel_queue_remove(tw_coro *co)
{
    if (!co->cq_pprev)
        return;
    *co->cq_pprev = co->cq_next;
    if (co->cq_next)
        co->cq_next->cq_pprev = co->cq_pprev;
    else
        cancel_tail = co->cq_pprev;
    co->cq_next = NULL;
    co->cq_pprev = NULL;
}

/* A requested cancel reaches the await the coroutine is suspended in; one
 * that finds it running waits for its next await (see tw_await). */
static void deliver_cancel(tw_coro *co)
{
    if (co->cancel_requested && co->pending && co_suspended(co)) {
        co->cancel_requested = false;
        tw_deferred *w = tw_deferred_ref(co->waiting);
        tw_deferred_cancel(w); /* resumes the coroutine; it may even finish */
        tw_deferred_unref(w);
    }
}

static void coro_cancel(tw_deferred *d, void *arg)
{
    tw_coro *co = arg;
    co->cancel_requested = true;
    if (cancelling) {
        cancel_queue_push(co);
    } else {
        cancelling = true;
        deliver_cancel(co);
        while (cancel_head) {
            tw_coro *next = cancel_head;
            cancel_queue_remove(next);
            deliver_cancel(next);
        }
        cancelling = false;
    }
    if (tw_deferred_called(d))
        return; /* finished: outer fired with its result */
    /* Still running, waiting again, or its cancel queued: keep outer from
     * failing now. co is alive (its outer is unfired), so co->outer == d. */
    tw_deferred *next = tw_deferred_new(coro_cancel, co);
    if (!next) {
        tw_log(TW_LOG_ERROR, "coro",
               "out of memory while cancelling a coroutine: its deferred fails now "
               "and its eventual result is dropped");
        co->outer = NULL;
        tw_deferred_unref(d);
        return;
    }
    co->outer = next; /* next's reference is ours */
    tw_deferred_fire(d, tw_chain(tw_deferred_ref(next)));
    tw_deferred_unref(d); /* our old reference; the canceller's caller holds one */
}

/* ------------------------------------------------------------ per reactor */

/* tw_reactor_free: every suspended coroutine gets its awaited deferred
 * cancelled (see twirl/coro.h), then the pool goes. */
static void coro_reactor_free(tw_reactor *r, void *arg)
{
    coro_reactor *rs = arg;
    rs->closing = true;
    for (tw_coro *co = rs->live; co; co = co->next)
        co->doomed = true;
    /* Move the live list aside and take coroutines from it one by one: a
     * cancel may finish (and unlink) any number of them, this one or others
     * waiting on it. */
    tw_coro *todo = rs->live;
    rs->live = NULL;
    if (todo)
        todo->pprev = &todo;
    while (todo) {
        tw_coro *co = todo;
        live_unlink(co);
        live_link(rs, co);
        if (co->pending && co_suspended(co)) {
            tw_deferred *w = tw_deferred_ref(co->waiting);
            tw_deferred_cancel(w);
            tw_deferred_unref(w);
        }
    }
    size_t stuck = 0;
    for (tw_coro *co = rs->live; co; co = co->next) {
        co->rs = NULL;
        co->reactor = NULL;
        co->doomed = false; /* reactor-less from now on: awaits wait again */
        stuck++;
    }
    if (stuck)
        tw_log(TW_LOG_WARN, "coro",
               "%zu coroutine(s) still suspended after their reactor was freed "
               "(they await deferreds that ignore cancellation, e.g. paused ones); "
               "they resume, reactor-less, if those ever run their callbacks",
               stuck);
    for (tw_coro *co = rs->live, *next; co; co = next) {
        next = co->next;
        co->next = NULL;
        co->pprev = NULL;
    }
    for (size_t i = 0; i < rs->npool; i++)
        tw__fiber_free(rs->pool[i]);
    *tw__reactor_slot(r, TW__SLOT_CORO) = NULL;
    free(rs);
}

static coro_reactor *reactor_state(tw_reactor *r)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_CORO);
    if (*slot)
        return *slot;
    coro_reactor *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->r = r;
    if (tw__reactor_on_free(r, coro_reactor_free, rs) < 0) {
        free(rs);
        return NULL;
    }
    *slot = rs;
    return rs;
}

/* ------------------------------------------------------------ spawning */

static tw_deferred *spawn_error(tw_failure *f)
{
    return tw_fail(f);
}

tw_deferred *tw_coro_spawn(tw_reactor *r, tw_coro_fn fn, void *arg, const tw_coro_options *opts)
{
    if (!r || !fn)
        return spawn_error(coro_fail(TW_EINVAL, "tw_coro_spawn: %s is NULL", r ? "fn" : "reactor"));
    if (!tw__reactor_on_thread(r))
        return spawn_error(
            coro_fail(TW_EWRONG_THREAD, "tw_coro_spawn called off the reactor's thread"));
    size_t want = opts ? opts->stack_bytes : 0;
    size_t stack = tw__fiber_round_stack(want);
    if (!stack)
        return spawn_error(coro_fail(TW_EINVAL, "coroutine stack of %zu bytes refused", want));
    coro_reactor *rs = reactor_state(r);
    if (!rs)
        return spawn_error(tw_failure_from_code(TW_ENOMEM));
    if (rs->closing)
        return spawn_error(coro_fail(TW_ECLOSED, "tw_coro_spawn: the reactor is being freed"));

    tw__fiber *f = pool_take(rs, stack);
    if (!f) {
        int rc = tw__fiber_new(stack, sizeof(tw_coro), &f);
        if (rc < 0)
            return spawn_error(
                coro_fail(rc, "cannot map a %zu-byte coroutine stack: %s", stack, tw_strerror(rc)));
    }
    tw_coro *co = tw__fiber_extra(f);
    *co = (tw_coro){
        .fiber = f, .rs = rs, .reactor = r, .fn = fn, .arg = arg, .home = &thread_spawned
    };
    tw_deferred *outer = tw_deferred_new(coro_cancel, co);
    if (!outer) {
        pool_put(rs, f);
        return spawn_error(tw_failure_from_code(TW_ENOMEM));
    }
    co->outer = tw_deferred_ref(outer);
    if (!thread_spawned) {
        thread_spawned = true;
        atomic_store_explicit(&any_spawned, true, memory_order_relaxed);
    }
    live_link(rs, co);
    tw__fiber_start(f, coro_body, co);
    coro_resume(co);
    return outer;
}

/* ------------------------------------------------------------ the rest */

tw_deferred *tw_sleep(tw_reactor *r, double seconds)
{
    if (!r)
        return tw_fail(coro_fail(TW_EINVAL, "tw_sleep: reactor is NULL"));
    return tw_defer_later(r, seconds, NULL, NULL);
}

bool tw_coro_inside(void)
{
    return current != NULL;
}

tw_reactor *tw_coro_reactor(void)
{
    return current ? current->reactor : NULL;
}

size_t tw__coro_stack_used(void)
{
    return current ? tw__fiber_stack_used(current->fiber) : 0;
}

size_t tw__coro_pool_size(tw_reactor *r)
{
    coro_reactor *rs = *tw__reactor_slot(r, TW__SLOT_CORO);
    return rs ? rs->npool : 0;
}

size_t tw__coro_live_count(tw_reactor *r)
{
    coro_reactor *rs = *tw__reactor_slot(r, TW__SLOT_CORO);
    size_t n = 0;
    for (tw_coro *co = rs ? rs->live : NULL; co; co = co->next)
        n++;
    return n;
}
