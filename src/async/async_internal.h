/* async_internal.h — what the async layer's files share. */
#ifndef TWIRL_ASYNC_INTERNAL_H
#define TWIRL_ASYNC_INTERNAL_H

#include <stdarg.h>

#include "twirl/deferred.h"
#include "twirl/failure.h"
#include "twirl/reactor.h"

/* ------------------------------------------------------------ failures */

/* The shared static out-of-memory failure (reference counting is a no-op). */
tw_failure *tw__failure_oom(void);
/* A failure with an integer detail (FirstError's index); -1 means none. */
tw_failure *tw__failure_new_detail(const char *file, int line, const char *func, const char *domain,
                                   int code, tw_failure *cause, long detail, const char *fmt, ...)
    TW_PRINTF(8, 9);
tw_failure *tw__failure_newv_detail(const char *file, int line, const char *func,
                                    const char *domain, int code, tw_failure *cause, long detail,
                                    const char *fmt, va_list ap);
long tw__failure_detail(const tw_failure *f);

/* ------------------------------------------------------------ deferreds */

/* Frees this thread's cache of deferreds and callback arrays (for tests
 * that count allocations). */
void tw__deferred_cache_drain(void);

/* Replaces an unfired deferred's canceller (NULL: none). For primitives that
 * forget a waiter before they fail it themselves. */
void tw__deferred_set_canceller(tw_deferred *d, tw_canceller_fn fn, void *arg);

/* ------------------------------------------- per-reactor bookkeeping */

/* Objects of this layer that hold reactor handles (timers, triggers, held
 * phases) link themselves here, so that tw_reactor_free can tell them to
 * forget those handles before they go stale. The callback runs with the link
 * already removed; it must not use the reactor beyond dropping references. */
typedef struct tw__rlink tw__rlink;
typedef void (*tw__rlink_fn)(tw__rlink *link);
struct tw__rlink {
    tw__rlink *prev, *next; /* NULL when not linked */
    tw__rlink_fn on_reactor_free;
};

/* Links l into r's list. Returns 0 or TW_ENOMEM (first use on a reactor
 * allocates the list). */
int tw__rlink_add(tw_reactor *r, tw__rlink *l, tw__rlink_fn on_reactor_free);
/* Unlinks l; a no-op if it is not linked. */
void tw__rlink_remove(tw__rlink *l);

#endif
