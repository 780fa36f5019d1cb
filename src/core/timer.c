/* timer.c — Twisted's callLater/DelayedCall: a 4-ary min-heap of deadlines.
 *
 * Slots live in fixed chunks that never move or shrink while the reactor
 * lives, so a handle (slot pointer + generation) stays safe to present after
 * its timer is gone: a generation mismatch means "reused". Heap entries keep
 * the deadline beside the slot pointer so sifting compares without touching
 * slots, except on equal deadlines where the scheduling sequence decides.
 * A 4-ary heap puts all children of a node in one 64-byte line. */
#include <math.h>
#include <stdlib.h>

#include "core/reactor_impl.h"

enum { SLOTS_PER_CHUNK = 256, ARITY = 4 };

static inline int entry_less(const tw__heap_entry *a, const tw__heap_entry *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return a->slot->seq < b->slot->seq;
}

static inline void heap_place(tw__timers *t, size_t i, tw__heap_entry e)
{
    t->heap[i] = e;
    e.slot->heap_index = (uint32_t)i;
}

static void sift_up(tw__timers *t, size_t i, tw__heap_entry e)
{
    while (i > 0) {
        size_t parent = (i - 1) / ARITY;
        if (!entry_less(&e, &t->heap[parent]))
            break;
        heap_place(t, i, t->heap[parent]);
        i = parent;
    }
    heap_place(t, i, e);
}

static void sift_down(tw__timers *t, size_t i, tw__heap_entry e)
{
    size_t n = t->count;
    for (;;) {
        size_t first = i * ARITY + 1;
        if (first >= n)
            break;
        size_t last = first + ARITY < n ? first + ARITY : n;
        size_t best = first;
        for (size_t c = first + 1; c < last; c++)
            if (entry_less(&t->heap[c], &t->heap[best]))
                best = c;
        if (!entry_less(&t->heap[best], &e))
            break;
        heap_place(t, i, t->heap[best]);
        i = best;
    }
    heap_place(t, i, e);
}

/* Puts the entry for a slot whose key changed (or that is new at the end)
 * where it belongs. */
static void heap_fix(tw__timers *t, size_t i)
{
    tw__heap_entry e = t->heap[i];
    if (i > 0 && entry_less(&e, &t->heap[(i - 1) / ARITY]))
        sift_up(t, i, e);
    else
        sift_down(t, i, e);
}

static int heap_push(tw__timers *t, struct tw__timer_slot *s)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tw__heap_entry *heap = realloc(t->heap, cap * sizeof *heap);
        if (!heap)
            return TW_ENOMEM;
        t->heap = heap;
        t->cap = cap;
    }
    sift_up(t, t->count++, (tw__heap_entry){ s->deadline, s });
    return 0;
}

static void heap_remove(tw__timers *t, size_t i)
{
    tw__heap_entry last = t->heap[--t->count];
    if (i == t->count)
        return;
    t->heap[i] = last;
    last.slot->heap_index = (uint32_t)i;
    heap_fix(t, i);
}

void tw__timers_init(tw__timers *t)
{
    *t = (tw__timers){ 0 };
}

void tw__timers_fini(tw__timers *t)
{
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->heap);
    *t = (tw__timers){ 0 };
}

static struct tw__timer_slot *slot_alloc(tw_reactor *r)
{
    tw__timers *t = &r->timers;
    if (!t->free_list) {
        if (t->nchunks == t->chunks_cap) {
            size_t cap = t->chunks_cap ? t->chunks_cap * 2 : 8;
            struct tw__timer_slot **chunks = realloc(t->chunks, cap * sizeof *chunks);
            if (!chunks)
                return NULL;
            t->chunks = chunks;
            t->chunks_cap = cap;
        }
        struct tw__timer_slot *chunk = calloc(SLOTS_PER_CHUNK, sizeof *chunk);
        if (!chunk)
            return NULL;
        t->chunks[t->nchunks++] = chunk;
        /* Thread the new slots so the lowest address is handed out first. */
        for (size_t i = SLOTS_PER_CHUNK; i-- > 0;) {
            chunk[i].reactor = r;
            chunk[i].next_free = t->free_list;
            t->free_list = &chunk[i];
        }
    }
    struct tw__timer_slot *s = t->free_list;
    t->free_list = s->next_free;
    s->gen++;
    return s;
}

/* The slot keeps its generation and final state until it is reused, so a
 * late cancel on it can still say "called" or "cancelled". */
static void slot_release(tw__timers *t, struct tw__timer_slot *s, uint8_t final_state)
{
    s->state = final_state;
    s->arg = NULL;
    s->next_free = t->free_list;
    t->free_list = s;
}

static int64_t delay_to_ns(double delay)
{
    if (!(delay > 0)) /* negative, zero and NaN */
        return 0;
    if (delay > 9.0e9) /* about 285 years: far enough to mean "never" */
        return (int64_t)9.0e18;
    return (int64_t)llround(delay * 1e9);
}

tw_timer tw_call_later(tw_reactor *r, double delay, tw_timer_fn fn, void *arg)
{
    struct tw__timer_slot *s = slot_alloc(r);
    if (!s)
        return TW_TIMER_NONE;
    s->deadline = r->now_ns + delay_to_ns(delay);
    s->seq = r->timers.next_seq++;
    s->fn = fn;
    s->arg = arg;
    s->state = TW__TIMER_PENDING;
    if (heap_push(&r->timers, s) < 0) {
        slot_release(&r->timers, s, TW__TIMER_CANCELLED);
        return TW_TIMER_NONE;
    }
    return (tw_timer){ s, s->gen };
}

/* Returns the slot if the handle names a live timer in the given states,
 * else stores the reason in *rc. */
static struct tw__timer_slot *handle_slot(tw_timer t, int *rc)
{
    struct tw__timer_slot *s = t.slot;
    if (!s) {
        *rc = TW_EINVAL;
        return NULL;
    }
    if (s->gen != t.gen) {
        *rc = TW_ESTALE;
        return NULL;
    }
    switch (s->state) {
    case TW__TIMER_PENDING:
        *rc = 0;
        return s;
    case TW__TIMER_CANCELLED:
        *rc = TW_EALREADY_CANCELLED;
        return NULL;
    default: /* running, fired */
        *rc = TW_EALREADY_CALLED;
        return NULL;
    }
}

int tw_timer_cancel(tw_timer t)
{
    int rc;
    struct tw__timer_slot *s = handle_slot(t, &rc);
    if (!s)
        return rc;
    tw__timers *timers = &s->reactor->timers;
    heap_remove(timers, s->heap_index);
    slot_release(timers, s, TW__TIMER_CANCELLED);
    return 0;
}

static int reschedule(tw_timer t, int64_t deadline, int relative_to_old, int64_t extra)
{
    int rc;
    struct tw__timer_slot *s = t.slot;
    if (s && s->gen == t.gen && s->state == TW__TIMER_RUNNING) {
        /* A timer re-arming itself from its own function: pending again. */
        tw_reactor *r = s->reactor;
        s->deadline = relative_to_old ? r->now_ns + extra : deadline;
        s->seq = r->timers.next_seq++;
        s->state = TW__TIMER_PENDING;
        if (heap_push(&r->timers, s) < 0) {
            s->state = TW__TIMER_RUNNING;
            return TW_ENOMEM;
        }
        return 0;
    }
    s = handle_slot(t, &rc);
    if (!s)
        return rc;
    tw__timers *timers = &s->reactor->timers;
    s->deadline = relative_to_old ? s->deadline + extra : deadline;
    s->seq = timers->next_seq++;
    timers->heap[s->heap_index].deadline = s->deadline;
    heap_fix(timers, s->heap_index);
    return 0;
}

int tw_timer_reset(tw_timer t, double delay)
{
    if (!t.slot)
        return TW_EINVAL;
    return reschedule(t, t.slot->reactor->now_ns + delay_to_ns(delay), 0, 0);
}

int tw_timer_delay(tw_timer t, double extra)
{
    int64_t ns = extra < 0 ? -delay_to_ns(-extra) : delay_to_ns(extra);
    return reschedule(t, 0, 1, ns);
}

bool tw_timer_active(tw_timer t)
{
    return t.slot && t.slot->gen == t.gen && t.slot->state == TW__TIMER_PENDING;
}

double tw_timer_time_left(tw_timer t)
{
    if (!tw_timer_active(t))
        return -1.0;
    int64_t left = t.slot->deadline - t.slot->reactor->now_ns;
    return left > 0 ? (double)left / 1e9 : 0.0;
}

size_t tw_reactor_timer_count(const tw_reactor *r)
{
    return r->timers.count;
}

int64_t tw__timers_timeout(const tw__timers *t, int64_t now)
{
    if (t->count == 0)
        return -1;
    int64_t left = t->heap[0].deadline - now;
    return left > 0 ? left : 0;
}

void tw__timers_run(tw_reactor *r, int64_t now, int use_cutoff)
{
    tw__timers *t = &r->timers;
    uint64_t cutoff = t->next_seq;
    while (t->count > 0) {
        struct tw__timer_slot *s = t->heap[0].slot;
        if (t->heap[0].deadline > now || (use_cutoff && s->seq >= cutoff))
            break;
        heap_remove(t, 0);
        /* Marked before the call: cancelling itself inside fn is "already
         * called" (Twisted), while a reset inside fn re-arms it. */
        s->state = TW__TIMER_RUNNING;
        s->fn(s->arg);
        if (s->state == TW__TIMER_RUNNING)
            slot_release(t, s, TW__TIMER_FIRED);
    }
}
