/* reactor_links.c — the async layer's objects that hold reactor handles,
 * listed per reactor so that tw_reactor_free can make them let go. */
#include <stdlib.h>

#include "async/async_internal.h"
#include "core/reactor_internal.h"

typedef struct links {
    tw__rlink head; /* circular sentinel */
} links;

static void links_cleanup(tw_reactor *r, void *arg)
{
    links *ls = arg;
    /* A callback may link new objects (it may fire deferreds whose callbacks
     * schedule more); they are told too, until none is left. */
    while (ls->head.next != &ls->head) {
        tw__rlink *l = ls->head.next;
        tw__rlink_remove(l);
        l->on_reactor_free(l);
    }
    *tw__reactor_slot(r, TW__SLOT_DEFERRED) = NULL;
    free(ls);
}

int tw__rlink_add(tw_reactor *r, tw__rlink *l, tw__rlink_fn on_reactor_free)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_DEFERRED);
    links *ls = *slot;
    if (!ls) {
        ls = malloc(sizeof *ls);
        if (!ls)
            return TW_ENOMEM;
        ls->head.prev = ls->head.next = &ls->head;
        ls->head.on_reactor_free = NULL;
        if (tw__reactor_on_free(r, links_cleanup, ls) < 0) {
            free(ls);
            return TW_ENOMEM;
        }
        *slot = ls;
    }
    l->on_reactor_free = on_reactor_free;
    l->next = &ls->head;
    l->prev = ls->head.prev;
    ls->head.prev->next = l;
    ls->head.prev = l;
    return 0;
}

void tw__rlink_remove(tw__rlink *l)
{
    if (!l->prev)
        return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
}
