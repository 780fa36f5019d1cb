/* deferred.c — Twisted's Deferred: the callback chain, chaining, pausing,
 * cancellation and the unhandled-error report.
 *
 * The run loop follows Twisted's _runCallbacks: a stack of deferreds whose
 * top is being processed. When a deferred that others wait on reaches the
 * "continue" entry they left in its chain, the waiter is pushed and runs
 * next, in the same loop; so chains of deferreds waiting on deferreds never
 * recurse. The stack is linked through the deferreds themselves (a deferred
 * is on at most one stack: one marked F_IN_RUN is never pushed again, its own
 * loop gets back to it). */
#include <pthread.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "async/async_internal.h"
#include "twirl/deferred.h"
#include "twirl/log.h"

enum { INLINE_CBS = 4 };

typedef struct cb_entry {
    tw_callback_fn cb, eb;
    void *arg;
    tw_free_fn arg_free;
} cb_entry;

enum {
    F_CALLED = 1u << 0,   /* fired (Twisted's `called`) */
    F_IN_RUN = 1u << 1,   /* on a run loop's stack: its loop will run new entries */
    F_WAITING = 1u << 2,  /* result.deferred is the inner it waits on (not owned) */
    F_SUPPRESS = 1u << 3, /* cancelled without canceller: swallow one late firing */
};

struct tw_deferred {
    uint32_t refs;
    uint32_t paused;
    uint32_t flags;
    uint32_t head, len, cap; /* pending entries are cbs[head..len) */
    tw_result result;
    tw_deferred *link; /* run stack, or the free list */
    cb_entry *cbs;
    tw_canceller_fn canceller;
    void *canceller_arg;
    cb_entry inline_cbs[INLINE_CBS];
};

/* Markers for the two entries the library makes itself. Different bodies so
 * that no linker folds them into one address. */
static tw_result continue_marker(tw_result *in, void *arg)
{
    (void)in;
    (void)arg;
    return tw_ok_int(1);
}

static tw_result chain_marker(tw_result *in, void *arg)
{
    (void)in;
    (void)arg;
    return tw_ok_int(2);
}

static void destroy(tw_deferred *d);

/* ------------------------------------------------------------ values */

void tw_value_free(tw_value *v)
{
    tw_free_fn fn = v->free;
    void *p = v->ptr;
    *v = TW_VALUE_NONE;
    if (fn)
        fn(p);
}

void tw_result_free(tw_result *r)
{
    tw_result old = *r;
    *r = TW_RESULT_NONE;
    if (old.value.free)
        old.value.free(old.value.ptr);
    if (old.failure)
        tw_failure_unref(old.failure);
    if (old.deferred)
        tw_deferred_unref(old.deferred);
}

/* ------------------------------------------------- lifetime */

/* Small per-thread caches of freed deferreds and of spilled entry arrays of
 * the first spill size, so a steady state of short chains allocates nothing.
 * Off in sanitizer builds, where reuse would hide use-after-free. */
enum { SPILL_CBS = 16, CACHE_DEFERREDS = 64, CACHE_SPILLS = 16 };

#ifndef TWIRL_SANITIZE
static __thread tw_deferred *cached_deferreds[CACHE_DEFERREDS];
static __thread unsigned n_cached_deferreds;
static __thread cb_entry *cached_spills[CACHE_SPILLS];
static __thread unsigned n_cached_spills;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static __thread int cache_registered;

static void cache_drain(void *unused)
{
    (void)unused;
    while (n_cached_deferreds > 0)
        free(cached_deferreds[--n_cached_deferreds]);
    while (n_cached_spills > 0)
        free(cached_spills[--n_cached_spills]);
    /* Caching again registers again, so a deferred freed by a later
     * thread-exit destructor is drained in the next round. */
    cache_registered = 0;
}

void tw__deferred_cache_drain(void)
{
    cache_drain(NULL);
}

static void cache_key_make(void)
{
    pthread_key_create(&cache_key, cache_drain);
}

/* Makes sure a thread that exits gives its cache back. */
static bool cache_usable(void)
{
    if (cache_registered)
        return true;
    pthread_once(&cache_once, cache_key_make);
    if (pthread_setspecific(cache_key, &cache_registered) != 0)
        return false;
    cache_registered = 1;
    return true;
}

static inline tw_deferred *deferred_alloc(void)
{
    if (n_cached_deferreds > 0)
        return cached_deferreds[--n_cached_deferreds];
    return malloc(sizeof(tw_deferred));
}

static inline void deferred_release(tw_deferred *d)
{
    if (n_cached_deferreds < CACHE_DEFERREDS && cache_usable())
        cached_deferreds[n_cached_deferreds++] = d;
    else
        free(d);
}

static inline cb_entry *spill_alloc(void)
{
    if (n_cached_spills > 0)
        return cached_spills[--n_cached_spills];
    return malloc(SPILL_CBS * sizeof(cb_entry));
}

static inline void spill_release(cb_entry *cbs, uint32_t cap)
{
    if (cap == SPILL_CBS && n_cached_spills < CACHE_SPILLS && cache_usable())
        cached_spills[n_cached_spills++] = cbs;
    else
        free(cbs);
}
#else
void tw__deferred_cache_drain(void)
{
}

static inline tw_deferred *deferred_alloc(void)
{
    return malloc(sizeof(tw_deferred));
}

static inline void deferred_release(tw_deferred *d)
{
    free(d);
}

static inline cb_entry *spill_alloc(void)
{
    return malloc(SPILL_CBS * sizeof(cb_entry));
}

static inline void spill_release(cb_entry *cbs, uint32_t cap)
{
    (void)cap;
    free(cbs);
}
#endif

tw_deferred *tw_deferred_new(tw_canceller_fn canceller, void *arg)
{
    tw_deferred *d = deferred_alloc();
    if (!d)
        return NULL;
    d->refs = 1;
    d->paused = 0;
    d->flags = 0;
    d->head = d->len = 0;
    d->cap = INLINE_CBS;
    d->result = TW_RESULT_NONE;
    d->link = NULL;
    d->cbs = d->inline_cbs;
    d->canceller = canceller;
    d->canceller_arg = arg;
    return d;
}

tw_deferred *tw_deferred_ref(tw_deferred *d)
{
    if (d) {
        /* A deferred whose last reference went may sit on the reuse list:
         * taking a new reference to it is a use after free. */
        assert(d->refs > 0);
        d->refs++;
    }
    return d;
}

/* Deferreds whose last reference went while another was being destroyed:
 * freeing a long chain is a loop, not a recursion. */
static __thread tw_deferred *free_list;
static __thread int freeing;

static void release_last(tw_deferred *d)
{
    d->link = free_list;
    free_list = d;
    if (freeing)
        return;
    freeing = 1;
    while ((d = free_list)) {
        free_list = d->link;
        destroy(d);
    }
    freeing = 0;
}

void tw_deferred_unref(tw_deferred *d)
{
    if (d && --d->refs == 0)
        release_last(d);
}

static inline void unref_nonnull(tw_deferred *d)
{
    if (--d->refs == 0)
        release_last(d);
}

static void log_unhandled(const tw_failure *f)
{
    char *text = tw_failure_render(f);
    if (text) {
        tw_log(TW_LOG_ERROR, "deferred", "Unhandled error in Deferred:\n%s", text);
        free(text);
    } else {
        char line[512];
        tw_failure_format(f, line, sizeof line);
        tw_log(TW_LOG_ERROR, "deferred", "Unhandled error in Deferred:\n%s", line);
    }
}

/* An entry that will never run: give back what it holds. */
static void drop_entry(cb_entry *e)
{
    if (e->cb == continue_marker) {
        /* The outer waits on a deferred that will never fire: it stays
         * blocked (as an unreachable pair would in Twisted), but must not
         * keep a pointer to freed memory. */
        tw_deferred *outer = e->arg;
        outer->flags &= ~F_WAITING;
        outer->result.deferred = NULL;
        tw_deferred_unref(outer);
    } else if (e->cb == chain_marker) {
        tw_deferred_unref(e->arg);
    } else if (e->arg_free) {
        e->arg_free(e->arg);
    }
}

static void destroy(tw_deferred *d)
{
    if (d->result.failure)
        log_unhandled(d->result.failure);
    /* A waiting deferred is kept alive by its inner, so it is never here;
     * result.deferred is therefore never a borrowed pointer at this point. */
    tw_result_free(&d->result);
    for (uint32_t i = d->head; i < d->len; i++)
        drop_entry(&d->cbs[i]);
    if (d->cbs != d->inline_cbs)
        spill_release(d->cbs, d->cap);
    deferred_release(d);
}

/* ------------------------------------------------- entries */

/* Makes room for one more entry. */
static int grow_entries(tw_deferred *d)
{
    if (d->head > 0) {
        /* Entries before head have run: reuse their room. */
        memmove(d->cbs, d->cbs + d->head, (d->len - d->head) * sizeof *d->cbs);
        d->len -= d->head;
        d->head = 0;
        return 0;
    }
    cb_entry *n;
    if (d->cbs == d->inline_cbs) {
        n = spill_alloc();
        if (!n)
            return TW_ENOMEM;
        memcpy(n, d->cbs, d->len * sizeof *n);
        d->cap = SPILL_CBS;
    } else {
        uint32_t cap = d->cap * 2;
        if (d->cap == SPILL_CBS) { /* leave the cache's size class */
            n = malloc(cap * sizeof *n);
            if (n) {
                memcpy(n, d->cbs, d->len * sizeof *n);
                spill_release(d->cbs, d->cap);
            }
        } else {
            n = realloc(d->cbs, cap * sizeof *n);
        }
        if (!n)
            return TW_ENOMEM;
        d->cap = cap;
    }
    d->cbs = n;
    return 0;
}

/* Appends an entry; fields are stored one by one (building the entry on the
 * stack and copying it costs a store-forwarding stall on x86). */
static inline int push_entry(tw_deferred *d, tw_callback_fn cb, tw_callback_fn eb, void *arg,
                             tw_free_fn arg_free)
{
    if (d->len == d->cap && grow_entries(d) < 0)
        return TW_ENOMEM;
    cb_entry *e = &d->cbs[d->len++];
    e->cb = cb;
    e->eb = eb;
    e->arg = arg;
    e->arg_free = arg_free;
    return 0;
}

/* ------------------------------------------------- the run loop */

static tw_failure *cycle_failure(void)
{
    return tw_failure_new(TW_DOMAIN, TW_ECYCLE,
                          "a callback returned the deferred it is attached to");
}

/* cur's result has just become a deferred (the inner). Take the inner's
 * result if it is ready, else make cur wait for it. Returns true if cur now
 * waits. */
/* True if `from` waits, directly or through other waiting deferreds, on
 * target. Looks 1024 links deep at most: deeper cycles go undetected (and
 * then simply never fire). */
static bool waits_on(const tw_deferred *from, const tw_deferred *target)
{
    for (int steps = 0; steps < 1024 && (from->flags & F_WAITING); steps++) {
        from = from->result.deferred;
        if (from == target)
            return true;
    }
    return false;
}

static bool settle(tw_deferred *cur)
{
    tw_deferred *inner = cur->result.deferred;
    if (inner == cur || waits_on(inner, cur)) {
        /* Waiting on itself would never end: fail instead. */
        cur->result = TW_RESULT_NONE;
        if (inner == cur)
            cur->refs--; /* the callback's reference; the caller's keeps it alive */
        else
            tw_deferred_unref(inner);
        cur->result = tw_err(cycle_failure());
        return false;
    }
    if ((inner->flags & (F_CALLED | F_WAITING | F_IN_RUN)) == F_CALLED && inner->paused == 0) {
        /* Ready: steal it, so the inner no longer holds (or reports) it. */
        cur->result = inner->result;
        inner->result = TW_RESULT_NONE;
        tw_deferred_unref(inner);
        return false;
    }
    /* Not ready (unfired, waiting itself, paused, or with its own callbacks
     * still to run): its callbacks added so far run first, then ours. */
    if (push_entry(inner, continue_marker, continue_marker, cur, NULL) < 0) {
        cur->result = tw_err(tw__failure_oom());
        tw_deferred_unref(inner);
        return false;
    }
    cur->refs++; /* the continue entry's */
    cur->flags |= F_WAITING;
    /* The inner's producer keeps it; dropping the reference the callback
     * handed over may free it at once, which unblocks nothing (see
     * drop_entry) but leaks nothing either. */
    tw_deferred_unref(inner);
    return true;
}

static inline void stack_push(tw_deferred **top, tw_deferred *d)
{
    d->link = *top;
    *top = d;
    d->flags |= F_IN_RUN;
}

static void run_callbacks(tw_deferred *d)
{
    if (d->flags & F_IN_RUN)
        return; /* its loop, further down the C stack, will get to it */
    tw_deferred *top = NULL;
    d->refs++; /* each deferred on the stack holds a reference */
    stack_push(&top, d);
    while (top) {
        tw_deferred *cur = top;
        bool finished = true;
        while (cur->head < cur->len && cur->paused == 0 && !(cur->flags & F_WAITING)) {
            cb_entry e = cur->cbs[cur->head++];
            if (cur->head == cur->len)
                cur->head = cur->len = 0;
            if (e.cb == continue_marker) {
                /* Hand our result to the deferred waiting on us and run it
                 * next; our own remaining entries wait until it is done. */
                tw_deferred *outer = e.arg; /* the entry's reference moves to the stack */
                outer->result = cur->result;
                cur->result = TW_RESULT_NONE;
                outer->flags &= ~F_WAITING;
                if (outer->flags & F_IN_RUN) {
                    tw_deferred_unref(outer);
                    continue;
                }
                stack_push(&top, outer);
                finished = false;
                break;
            }
            if (e.cb == chain_marker) {
                tw_deferred *other = e.arg; /* the entry's reference moves to the stack */
                if (other->flags & F_CALLED) {
                    tw_result_free(&cur->result);
                    if (other->flags & F_SUPPRESS)
                        other->flags &= ~F_SUPPRESS;
                    else
                        cur->result = tw_err(tw_failure_already_called());
                    tw_deferred_unref(other);
                    continue;
                }
                other->flags |= F_CALLED;
                other->result = cur->result;
                cur->result = TW_RESULT_NONE;
                stack_push(&top, other);
                finished = false;
                break;
            }
            tw_callback_fn fn = cur->result.failure ? e.eb : e.cb;
            if (fn) {
                tw_result out = fn(&cur->result, e.arg);
#if defined(__GNUC__)
                /* Move the returned fields through registers: copying the
                 * just-stored struct with wide loads stalls store
                 * forwarding, which was most of a callback's cost. */
                __asm__(""
                        : "+r"(out.value.ptr), "+r"(out.value.free), "+r"(out.failure),
                          "+r"(out.deferred));
#endif
                if (cur->result.value.free || cur->result.failure || cur->result.deferred)
                    tw_result_free(&cur->result);
                cur->result = out;
            }
            if (e.arg_free)
                e.arg_free(e.arg);
            if (cur->result.deferred && settle(cur))
                break;
        }
        if (finished) {
            top = cur->link;
            cur->link = NULL;
            cur->flags &= ~F_IN_RUN;
            unref_nonnull(cur);
        }
    }
}

/* ------------------------------------------------- firing */

static int already_called(tw_deferred *d, tw_result *r)
{
    tw_result_free(r);
    if (d->flags & F_SUPPRESS) {
        d->flags &= ~F_SUPPRESS;
        return 0;
    }
    tw_log(TW_LOG_ERROR, "deferred", "deferred %p fired twice: %s", (void *)d,
           tw_strerror(TW_EALREADY_CALLED));
    return TW_EALREADY_CALLED;
}

int tw_deferred_fire(tw_deferred *d, tw_result r)
{
    if (d->flags & F_CALLED)
        return already_called(d, &r);
    d->flags |= F_CALLED;
    d->result = r;
    int rc = 0;
    if (r.deferred) {
        if (r.deferred == d)
            rc = TW_ECYCLE;
        if (settle(d))
            return 0;
    }
    if (d->paused == 0)
        run_callbacks(d);
    return rc;
}

int tw_deferred_callback(tw_deferred *d, tw_value v)
{
    if (d->flags & F_CALLED) {
        tw_result r = tw_ok_value(v);
        return already_called(d, &r);
    }
    d->flags |= F_CALLED;
    d->result.value = v;
    if (d->paused == 0 && d->head < d->len)
        run_callbacks(d);
    return 0;
}

int tw_deferred_errback(tw_deferred *d, tw_failure *f)
{
    if (!f)
        return TW_EINVAL; /* Twisted's errback() with no exception */
    if (d->flags & F_CALLED) {
        tw_result r = tw_err(f);
        return already_called(d, &r);
    }
    d->flags |= F_CALLED;
    d->result.failure = f;
    if (d->paused == 0 && d->head < d->len)
        run_callbacks(d);
    return 0;
}

tw_deferred *tw_succeed(tw_value v)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    if (!d) {
        tw_value_free(&v);
        return NULL;
    }
    d->flags = F_CALLED;
    d->result.value = v;
    return d;
}

tw_deferred *tw_fail(tw_failure *f)
{
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    if (!d) {
        tw_failure_unref(f);
        return NULL;
    }
    d->flags = F_CALLED;
    d->result.failure = f;
    return d;
}

/* ------------------------------------------------- adding callbacks */

int tw_deferred_add_callbacks_full(tw_deferred *d, tw_callback_fn cb, tw_callback_fn eb, void *arg,
                                   tw_free_fn arg_free)
{
    if (push_entry(d, cb, eb, arg, arg_free) < 0)
        return TW_ENOMEM;
    if ((d->flags & (F_CALLED | F_IN_RUN | F_WAITING)) == F_CALLED && d->paused == 0)
        run_callbacks(d);
    return 0;
}

int tw_deferred_add_callbacks(tw_deferred *d, tw_callback_fn cb, tw_callback_fn eb, void *arg)
{
    return tw_deferred_add_callbacks_full(d, cb, eb, arg, NULL);
}

int tw_deferred_add_callback(tw_deferred *d, tw_callback_fn cb, void *arg)
{
    return tw_deferred_add_callbacks_full(d, cb, NULL, arg, NULL);
}

int tw_deferred_add_errback(tw_deferred *d, tw_callback_fn eb, void *arg)
{
    return tw_deferred_add_callbacks_full(d, NULL, eb, arg, NULL);
}

int tw_deferred_add_both(tw_deferred *d, tw_callback_fn fn, void *arg)
{
    return tw_deferred_add_callbacks_full(d, fn, fn, arg, NULL);
}

int tw_deferred_chain(tw_deferred *d, tw_deferred *other)
{
    if (d == other)
        return TW_EINVAL;
    if (push_entry(d, chain_marker, chain_marker, other, NULL) < 0)
        return TW_ENOMEM;
    other->refs++;
    if ((d->flags & (F_CALLED | F_IN_RUN | F_WAITING)) == F_CALLED && d->paused == 0)
        run_callbacks(d);
    return 0;
}

/* ------------------------------------------------- pause, cancel */

void tw_deferred_pause(tw_deferred *d)
{
    d->paused++;
}

void tw_deferred_unpause(tw_deferred *d)
{
    if (d->paused == 0)
        return;
    if (--d->paused == 0 && (d->flags & (F_CALLED | F_WAITING)) == F_CALLED)
        run_callbacks(d);
}

void tw_deferred_cancel(tw_deferred *d)
{
    /* A waiting deferred cancels what it waits on: walk down to the
     * innermost one instead of recursing. */
    while ((d->flags & (F_CALLED | F_WAITING)) == (F_CALLED | F_WAITING))
        d = d->result.deferred;
    if (d->flags & F_CALLED)
        return;
    d->refs++;
    if (d->canceller)
        d->canceller(d, d->canceller_arg);
    else
        d->flags |= F_SUPPRESS;
    if (!(d->flags & F_CALLED))
        tw_deferred_errback(d, tw_failure_cancelled());
    tw_deferred_unref(d);
}

void tw__deferred_set_canceller(tw_deferred *d, tw_canceller_fn fn, void *arg)
{
    d->canceller = fn;
    d->canceller_arg = arg;
}

/* ------------------------------------------------- queries */

bool tw_deferred_called(const tw_deferred *d)
{
    return (d->flags & F_CALLED) != 0;
}

bool tw_deferred_has_result(const tw_deferred *d)
{
    return (d->flags & (F_CALLED | F_WAITING)) == F_CALLED;
}

bool tw_deferred_failed(const tw_deferred *d)
{
    return tw_deferred_has_result(d) && d->result.failure != NULL;
}

/* ------------------------------------------------- maybe_deferred */

tw_deferred *tw_maybe_deferred(tw_result_fn fn, void *arg)
{
    tw_result r = fn(arg);
    if (r.deferred && !r.value.free && !r.failure)
        return r.deferred;
    tw_deferred *d = tw_deferred_new(NULL, NULL);
    if (!d) {
        tw_result_free(&r);
        return NULL;
    }
    d->flags = F_CALLED;
    d->result = r;
    if (r.deferred) { /* a malformed result holding more than one thing */
        tw_result_free(&d->result);
        d->result =
            tw_err(tw_failure_new(TW_DOMAIN, TW_EINVAL, "result holds a deferred and more"));
    }
    return d;
}
