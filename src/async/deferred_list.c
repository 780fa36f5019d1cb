/* deferred_list.c — DeferredList and gatherResults.
 *
 * Lifetimes, without cycles: each input's entry holds a reference on the
 * list state, and so does a pass-through entry on the list's own deferred
 * (which therefore frees the state once the list fired or was freed). The
 * state holds the list's deferred until it fires or until no input can
 * report any more; it only borrows the inputs (to cancel them), forgetting
 * each once its entry is done with. */
#include <stdlib.h>

#include "async/async_internal.h"
#include "twirl/deferred.h"

typedef struct dlist dlist;

typedef struct dl_slot {
    dlist *list;
    size_t index;
    tw_deferred *input; /* borrowed; NULL once our entry on it is done with */
} dl_slot;

struct dlist {
    size_t refs;
    size_t n;
    size_t unreported;  /* inputs whose outcome has not arrived */
    size_t outstanding; /* input entries not yet done with */
    unsigned flags;
    bool gather;
    bool building;
    tw_deferred *d;         /* a reference while we may still fire it */
    tw_list_result *list;   /* the result being built (NULL once handed over) */
    tw_gather_result *vals; /* gather's result being built */
    dl_slot slots[];
};

void tw_list_result_free(void *p)
{
    tw_list_result *res = p;
    if (!res)
        return;
    for (size_t i = 0; i < res->n; i++) {
        tw_value_free(&res->items[i].value);
        tw_failure_unref(res->items[i].failure);
    }
    free(res);
}

void tw_gather_result_free(void *p)
{
    tw_gather_result *res = p;
    if (!res)
        return;
    for (size_t i = 0; i < res->n; i++)
        tw_value_free(&res->values[i]);
    free(res);
}

long tw_first_error_index(const tw_failure *f)
{
    if (!f || !tw_failure_is(f, TW_DOMAIN, TW_EFIRST_ERROR))
        return -1;
    return tw__failure_detail(f);
}

static void dl_unref(dlist *l)
{
    if (--l->refs > 0)
        return;
    tw_list_result_free(l->list);
    tw_gather_result_free(l->vals);
    free(l);
}

/* Stops holding the list's deferred once it cannot be fired by us. */
static void dl_maybe_release(dlist *l)
{
    if (l->d && !l->building && (l->outstanding == 0 || tw_deferred_called(l->d))) {
        tw_deferred *d = l->d;
        l->d = NULL;
        tw_deferred_unref(d);
    }
}

static void dl_fire(dlist *l, tw_result r)
{
    tw_deferred *d = l->d;
    tw_deferred_ref(d);
    tw_deferred_fire(d, r);
    dl_maybe_release(l);
    tw_deferred_unref(d);
}

static void dl_fire_complete(dlist *l)
{
    if (l->gather) {
        tw_gather_result *v = l->vals;
        l->vals = NULL;
        dl_fire(l, tw_ok(v, tw_gather_result_free));
    } else {
        tw_list_result *res = l->list;
        l->list = NULL;
        dl_fire(l, tw_ok(res, tw_list_result_free));
    }
}

static tw_result dl_input_done(tw_result *in, void *arg)
{
    dl_slot *s = arg;
    dlist *l = s->list;
    s->input = NULL;
    bool consume = l->flags & TW_LIST_CONSUME_ERRORS;
    if (!l->d || tw_deferred_called(l->d) || (!l->list && !l->vals)) {
        /* The list has fired: the outcome stays on the input's chain. */
        if (in->failure && consume)
            tw_result_free(in);
        return tw_result_move(in);
    }
    l->unreported--;
    if (in->failure) {
        tw_failure *f = in->failure;
        if (l->list) {
            tw_list_item *it = &l->list->items[s->index];
            *it = (tw_list_item){ .fired = true, .success = false, .failure = tw_failure_ref(f) };
        }
        if (l->flags & TW_LIST_FIRE_ON_ONE_ERRBACK) {
            tw_failure *fe = tw__failure_new_detail(
                __FILE__, __LINE__, __func__, TW_DOMAIN, TW_EFIRST_ERROR, tw_failure_ref(f),
                (long)s->index, "deferred %zu of %zu failed", s->index, l->n);
            tw_result out = consume ? (tw_result_free(in), TW_RESULT_NONE) : tw_result_move(in);
            dl_fire(l, tw_err(fe));
            return out;
        }
        tw_result out = consume ? (tw_result_free(in), TW_RESULT_NONE) : tw_result_move(in);
        if (l->unreported == 0)
            dl_fire_complete(l);
        return out;
    }
    tw_value v = in->value;
    in->value = TW_VALUE_NONE;
    if (l->gather) {
        l->vals->values[s->index] = v;
    } else {
        l->list->items[s->index] = (tw_list_item){ .fired = true, .success = true, .value = v };
        if (l->flags & TW_LIST_FIRE_ON_ONE_CALLBACK) {
            l->list->index = s->index;
            dl_fire_complete(l);
            return TW_RESULT_NONE;
        }
    }
    if (l->unreported == 0)
        dl_fire_complete(l);
    return TW_RESULT_NONE;
}

static void dl_slot_done(void *arg)
{
    dl_slot *s = arg;
    dlist *l = s->list;
    s->input = NULL;
    l->outstanding--;
    dl_maybe_release(l);
    dl_unref(l);
}

static void dl_hook_done(void *arg)
{
    dl_unref(arg);
}

static void dl_cancel(tw_deferred *d, void *arg)
{
    dlist *l = arg;
    l->refs++;
    for (size_t i = 0; i < l->n && !tw_deferred_called(d); i++) {
        tw_deferred *in = l->slots[i].input;
        if (!in)
            continue;
        tw_deferred_ref(in);
        tw_deferred_cancel(in);
        tw_deferred_unref(in);
    }
    dl_unref(l);
}

static tw_deferred *make_list(tw_deferred *const *ds, size_t n, unsigned flags, bool gather)
{
    dlist *l = calloc(1, sizeof *l + n * sizeof l->slots[0]);
    if (!l)
        return NULL;
    l->n = n;
    l->unreported = n;
    l->flags = flags;
    l->gather = gather;
    if (gather) {
        l->vals = calloc(1, sizeof *l->vals + n * sizeof l->vals->values[0]);
        if (l->vals)
            l->vals->n = n;
    } else {
        l->list = calloc(1, sizeof *l->list + n * sizeof l->list->items[0]);
        if (l->list) {
            l->list->n = n;
            l->list->index = TW_LIST_NO_INDEX;
        }
    }
    tw_deferred *d = (l->vals || l->list) ? tw_deferred_new(dl_cancel, l) : NULL;
    if (!d) {
        free(l->vals);
        free(l->list);
        free(l);
        return NULL;
    }
    /* First entry: fits inline, cannot fail. It keeps l alive until the
     * list's deferred has fired (or is freed). */
    l->refs = 2; /* the hook's, and ours while building */
    tw_deferred_add_callbacks_full(d, NULL, NULL, l, dl_hook_done);
    l->d = tw_deferred_ref(d);
    l->building = true;
    for (size_t i = 0; i < n; i++) {
        dl_slot *s = &l->slots[i];
        s->list = l;
        s->index = i;
        s->input = ds[i];
        l->refs++;
        l->outstanding++;
        if (tw_deferred_add_callbacks_full(ds[i], dl_input_done, dl_input_done, s, dl_slot_done) <
            0) {
            l->refs--;
            l->outstanding--;
            s->input = NULL;
            /* Report the input as failed, so the list still completes. */
            tw_result oom = tw_err(tw__failure_oom());
            tw_result out = dl_input_done(&oom, s);
            tw_result_free(&oom);
            tw_result_free(&out);
        }
    }
    l->building = false;
    if (!tw_deferred_called(d) && l->unreported == 0 &&
        !(n == 0 && (flags & TW_LIST_FIRE_ON_ONE_CALLBACK)))
        dl_fire_complete(l);
    dl_maybe_release(l);
    dl_unref(l);
    return d;
}

tw_deferred *tw_deferred_list(tw_deferred *const *ds, size_t n, unsigned flags)
{
    return make_list(ds, n, flags, false);
}

tw_deferred *tw_gather(tw_deferred *const *ds, size_t n, bool consume_errors)
{
    return make_list(
        ds, n, TW_LIST_FIRE_ON_ONE_ERRBACK | (consume_errors ? TW_LIST_CONSUME_ERRORS : 0), true);
}
