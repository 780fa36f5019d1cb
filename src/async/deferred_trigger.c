/* deferred_trigger.c — system event triggers whose deferreds hold the
 * "before" phase until they fire (Twisted's addSystemEventTrigger returning a
 * Deferred). */
#include <stdlib.h>

#include "async/async_internal.h"
#include "twirl/deferred.h"

struct tw_deferred_trigger {
    tw__rlink link;
    tw_reactor *r;
    tw_trigger *trigger;
    tw_deferred_trigger_fn fn;
    void *arg;
    tw_phase phase;
};

/* One held phase, released once the deferred is done with it (fired, or
 * freed unfired). Forgets the reactor if the reactor goes first. */
typedef struct hold {
    tw__rlink link;
    tw_reactor *r;
} hold;

static void hold_release(void *arg)
{
    hold *h = arg;
    if (h->r) {
        tw__rlink_remove(&h->link);
        tw_reactor_release_phase(h->r);
    }
    free(h);
}

static void hold_reactor_gone(tw__rlink *l)
{
    ((hold *)l)->r = NULL;
}

static void trigger_run(tw_reactor *r, void *arg)
{
    tw_deferred_trigger *t = arg;
    tw_phase phase = t->phase;
    /* fn may remove this trigger: read nothing from t after the call. */
    tw_deferred *d = t->fn(r, t->arg);
    if (!d)
        return;
    hold *h = NULL;
    if (phase == TW_PHASE_BEFORE && (h = malloc(sizeof *h))) {
        *h = (hold){ .r = r };
        if (tw__rlink_add(r, &h->link, hold_reactor_gone) < 0 || tw_reactor_hold_phase(r) < 0) {
            tw__rlink_remove(&h->link);
            free(h);
            h = NULL;
        } else if (tw_deferred_add_callbacks_full(d, NULL, NULL, h, hold_release) < 0) {
            hold_release(h); /* cannot wait for it: let the shutdown go on */
        }
    }
    tw_deferred_unref(d);
}

static void trigger_reactor_gone(tw__rlink *l)
{
    free(l); /* the reactor frees its own tw_trigger */
}

int tw_reactor_add_deferred_trigger(tw_reactor *r, tw_phase phase, tw_system_event event,
                                    tw_deferred_trigger_fn fn, void *arg, tw_deferred_trigger **out)
{
    if (!fn)
        return TW_EINVAL;
    tw_deferred_trigger *t = malloc(sizeof *t);
    if (!t)
        return TW_ENOMEM;
    *t = (tw_deferred_trigger){ .r = r, .fn = fn, .arg = arg, .phase = phase };
    int rc = tw_reactor_add_trigger(r, phase, event, trigger_run, t, &t->trigger);
    if (rc < 0) {
        free(t);
        return rc;
    }
    if (tw__rlink_add(r, &t->link, trigger_reactor_gone) < 0) {
        tw_reactor_remove_trigger(r, t->trigger);
        free(t);
        return TW_ENOMEM;
    }
    if (out)
        *out = t;
    return 0;
}

int tw_reactor_remove_deferred_trigger(tw_reactor *r, tw_deferred_trigger *t)
{
    if (!t || t->r != r)
        return TW_EINVAL;
    tw_reactor_remove_trigger(r, t->trigger);
    tw__rlink_remove(&t->link);
    free(t);
    return 0;
}
