/* defer_sync.c — DeferredLock, DeferredSemaphore, DeferredQueue. */
#include <stdlib.h>
#include <string.h>

#include "async/async_internal.h"
#include "twirl/defer_sync.h"

/* ---------------------------------------------------- waiters, in order */

/* Deferreds waiting for something, each holding a reference of ours. */
typedef struct waitq {
    tw_deferred **items;
    size_t head, len, cap;
} waitq;

static size_t waitq_count(const waitq *w)
{
    return w->len - w->head;
}

static int waitq_push(waitq *w, tw_deferred *d)
{
    if (w->len == w->cap) {
        if (w->head > 0) {
            memmove(w->items, w->items + w->head, (w->len - w->head) * sizeof *w->items);
            w->len -= w->head;
            w->head = 0;
        } else {
            size_t cap = w->cap ? w->cap * 2 : 4;
            tw_deferred **n = realloc(w->items, cap * sizeof *n);
            if (!n)
                return TW_ENOMEM;
            w->items = n;
            w->cap = cap;
        }
    }
    w->items[w->len++] = tw_deferred_ref(d);
    return 0;
}

/* Takes the first waiter (and our reference on it). */
static tw_deferred *waitq_pop(waitq *w)
{
    if (w->head == w->len)
        return NULL;
    tw_deferred *d = w->items[w->head++];
    if (w->head == w->len)
        w->head = w->len = 0;
    return d;
}

/* Forgets d (a cancelled waiter) and drops our reference. O(waiters). */
static void waitq_remove(waitq *w, tw_deferred *d)
{
    for (size_t i = w->head; i < w->len; i++) {
        if (w->items[i] == d) {
            memmove(w->items + i, w->items + i + 1, (w->len - i - 1) * sizeof *w->items);
            w->len--;
            tw_deferred_unref(d);
            return;
        }
    }
}

/* Fails every waiter with a cancelled failure and frees the list. */
static void waitq_fini(waitq *w)
{
    tw_deferred *d;
    while ((d = waitq_pop(w))) {
        tw__deferred_set_canceller(d, NULL, NULL);
        tw_deferred_errback(d, tw_failure_cancelled());
        tw_deferred_unref(d);
    }
    free(w->items);
    w->items = NULL;
    w->cap = 0;
}

/* ------------------------------------------------------------ semaphore */

struct tw_deferred_semaphore {
    size_t tokens, limit;
    waitq waiting;
    void *self; /* what acquire fires with: the lock or the semaphore */
};

struct tw_deferred_lock {
    tw_deferred_semaphore sem;
};

static void sem_cancel_waiter(tw_deferred *d, void *arg)
{
    tw_deferred_semaphore *s = arg;
    waitq_remove(&s->waiting, d); /* tw_deferred_cancel then fails it */
}

static tw_deferred *sem_acquire(tw_deferred_semaphore *s)
{
    tw_deferred *d = tw_deferred_new(sem_cancel_waiter, s);
    if (!d)
        return NULL;
    if (s->tokens > 0) {
        s->tokens--;
        tw_deferred_callback(d, tw_value_make(s->self, NULL));
        return d;
    }
    if (waitq_push(&s->waiting, d) < 0) {
        tw_deferred_unref(d);
        return NULL;
    }
    return d;
}

static int sem_release(tw_deferred_semaphore *s)
{
    if (s->tokens >= s->limit)
        return TW_EINVAL;
    tw_deferred *d = waitq_pop(&s->waiting);
    if (!d) {
        s->tokens++;
        return 0;
    }
    /* Hand the token straight to the first waiter. */
    tw_deferred_callback(d, tw_value_make(s->self, NULL));
    tw_deferred_unref(d);
    return 0;
}

static void sem_init(tw_deferred_semaphore *s, size_t tokens, void *self)
{
    memset(s, 0, sizeof *s);
    s->tokens = s->limit = tokens;
    s->self = self;
}

typedef struct run_ctx {
    tw_deferred_semaphore *sem;
    tw_result_fn fn;
    void *arg;
} run_ctx;

static tw_result run_release(tw_result *in, void *arg)
{
    sem_release(arg);
    return tw_result_move(in);
}

static tw_result run_execute(tw_result *in, void *arg)
{
    run_ctx *c = arg;
    tw_deferred *d = tw_maybe_deferred(c->fn, c->arg);
    if (!d || tw_deferred_add_both(d, run_release, c->sem) < 0) {
        sem_release(c->sem);
        tw_deferred_unref(d);
        return tw_err(tw__failure_oom());
    }
    return tw_chain(d);
}

static tw_deferred *sem_run(tw_deferred_semaphore *s, tw_result_fn fn, void *arg)
{
    if (!fn)
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EINVAL, "run needs a function to call"));
    run_ctx *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = (run_ctx){ s, fn, arg };
    tw_deferred *d = sem_acquire(s);
    if (!d) {
        free(c);
        return NULL;
    }
    if (tw_deferred_add_callbacks_full(d, run_execute, NULL, c, free) < 0) {
        /* Cannot happen: the second entry fits inline. */
        free(c);
        tw_deferred_unref(d);
        return NULL;
    }
    return d;
}

int tw_deferred_semaphore_new(size_t tokens, tw_deferred_semaphore **out)
{
    if (tokens < 1)
        return TW_EINVAL;
    tw_deferred_semaphore *s = malloc(sizeof *s);
    if (!s)
        return TW_ENOMEM;
    sem_init(s, tokens, s);
    *out = s;
    return 0;
}

void tw_deferred_semaphore_free(tw_deferred_semaphore *s)
{
    if (!s)
        return;
    waitq_fini(&s->waiting);
    free(s);
}

tw_deferred *tw_deferred_semaphore_acquire(tw_deferred_semaphore *s)
{
    return sem_acquire(s);
}

int tw_deferred_semaphore_release(tw_deferred_semaphore *s)
{
    return sem_release(s);
}

size_t tw_deferred_semaphore_tokens(const tw_deferred_semaphore *s)
{
    return s->tokens;
}

size_t tw_deferred_semaphore_limit(const tw_deferred_semaphore *s)
{
    return s->limit;
}

tw_deferred *tw_deferred_semaphore_run(tw_deferred_semaphore *s, tw_result_fn fn, void *arg)
{
    return sem_run(s, fn, arg);
}

/* ----------------------------------------------------------------- lock */

int tw_deferred_lock_new(tw_deferred_lock **out)
{
    tw_deferred_lock *l = malloc(sizeof *l);
    if (!l)
        return TW_ENOMEM;
    sem_init(&l->sem, 1, l);
    *out = l;
    return 0;
}

void tw_deferred_lock_free(tw_deferred_lock *l)
{
    if (!l)
        return;
    waitq_fini(&l->sem.waiting);
    free(l);
}

tw_deferred *tw_deferred_lock_acquire(tw_deferred_lock *l)
{
    return sem_acquire(&l->sem);
}

int tw_deferred_lock_release(tw_deferred_lock *l)
{
    return sem_release(&l->sem);
}

bool tw_deferred_lock_locked(const tw_deferred_lock *l)
{
    return l->sem.tokens == 0;
}

tw_deferred *tw_deferred_lock_run(tw_deferred_lock *l, tw_result_fn fn, void *arg)
{
    return sem_run(&l->sem, fn, arg);
}

/* ---------------------------------------------------------------- queue */

struct tw_deferred_queue {
    size_t size, backlog;
    waitq waiting;
    tw_value *pending; /* ring: pending[phead .. phead+plen) modulo pcap */
    size_t phead, plen, pcap;
};

int tw_deferred_queue_new(size_t size, size_t backlog, tw_deferred_queue **out)
{
    tw_deferred_queue *q = calloc(1, sizeof *q);
    if (!q)
        return TW_ENOMEM;
    q->size = size;
    q->backlog = backlog;
    *out = q;
    return 0;
}

void tw_deferred_queue_free(tw_deferred_queue *q)
{
    if (!q)
        return;
    waitq_fini(&q->waiting);
    for (size_t i = 0; i < q->plen; i++)
        tw_value_free(&q->pending[(q->phead + i) % q->pcap]);
    free(q->pending);
    free(q);
}

static void queue_cancel_get(tw_deferred *d, void *arg)
{
    tw_deferred_queue *q = arg;
    waitq_remove(&q->waiting, d);
}

int tw_deferred_queue_put(tw_deferred_queue *q, tw_value v)
{
    tw_deferred *d = waitq_pop(&q->waiting);
    if (d) {
        tw_deferred_callback(d, v);
        tw_deferred_unref(d);
        return 0;
    }
    if (q->plen >= q->size)
        return TW_EFULL;
    if (q->plen == q->pcap) {
        size_t cap = q->pcap ? q->pcap * 2 : 8;
        tw_value *n = malloc(cap * sizeof *n);
        if (!n)
            return TW_ENOMEM;
        for (size_t i = 0; i < q->plen; i++)
            n[i] = q->pending[(q->phead + i) % q->pcap];
        free(q->pending);
        q->pending = n;
        q->pcap = cap;
        q->phead = 0;
    }
    q->pending[(q->phead + q->plen) % q->pcap] = v;
    q->plen++;
    return 0;
}

tw_deferred *tw_deferred_queue_get(tw_deferred_queue *q)
{
    if (q->plen > 0) {
        /* Allocate first, so that running out of memory loses no value. */
        tw_deferred *d = tw_deferred_new(NULL, NULL);
        if (!d)
            return NULL;
        tw_value v = q->pending[q->phead];
        q->phead = (q->phead + 1) % q->pcap;
        q->plen--;
        tw_deferred_callback(d, v);
        return d;
    }
    if (waitq_count(&q->waiting) >= q->backlog)
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EEMPTY,
                                      "queue underflow: %zu gets are already waiting",
                                      waitq_count(&q->waiting)));
    tw_deferred *d = tw_deferred_new(queue_cancel_get, q);
    if (!d)
        return NULL;
    if (waitq_push(&q->waiting, d) < 0) {
        tw_deferred_unref(d);
        return NULL;
    }
    return d;
}

size_t tw_deferred_queue_pending(const tw_deferred_queue *q)
{
    return q->plen;
}

size_t tw_deferred_queue_waiting(const tw_deferred_queue *q)
{
    return waitq_count(&q->waiting);
}
