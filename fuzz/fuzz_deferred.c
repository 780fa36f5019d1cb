/* fuzz_deferred — deferreds under arbitrary sequences of operations. The
 * input is a program over eight deferred slots: make, fire (value or
 * failure), add callbacks (pass, replace the value, fail, recover, return
 * another slot's deferred, fire or cancel another slot from inside, pause
 * or unpause, run more of the program), cancel, pause, unpause, chain,
 * lists and gathers, timeouts and defer_later on a fake clock, advance the
 * clock, drop. Callbacks read the program too, so reentrancy follows it.
 * At the end every slot is dropped and the reactor freed: every counted
 * value must be freed exactly once, and the sanitizers check the memory.
 *
 * Deferreds that wait on each other in a cycle never fire, and, reference
 * counted, are never freed (Twisted's garbage collector would take them).
 * So that every program ends clean, the links that hold references always
 * go one way: slot i waits only on a higher slot (a callback returns it,
 * or i is a list over higher slots), and chains only to a lower one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/deferred.h"

enum { NSLOT = 8, MAX_OPS = 256, MAX_NESTING = 16 };

static struct {
    const uint8_t *p, *end;
    tw_reactor *r;
    tw_deferred *slot[NSLOT];
    int live_values;
    int ops;
    int nesting;
} P;

#define CHECK(c)     \
    do {             \
        if (!(c))    \
            abort(); \
    } while (0)

static unsigned next(void)
{
    return P.p < P.end ? *P.p++ : 0;
}

static void free_counted(void *p)
{
    P.live_values--;
    CHECK(P.live_values >= 0);
    free(p);
}

static tw_value counted(int n)
{
    int *p = malloc(sizeof *p);
    if (!p)
        return TW_VALUE_NONE;
    *p = n;
    P.live_values++;
    return tw_value_make(p, free_counted);
}

static void quiet(tw_log_level level, const char *domain, const char *message, void *arg)
{
}

static void step(void);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Callback kinds, chosen by the program when the callback is added. */
static tw_result cb_any(tw_result *in, void *arg)
{
    unsigned kind = (unsigned)(uintptr_t)arg & 15, j = ((unsigned)(uintptr_t)arg >> 4) % NSLOT;
    switch (kind) {
    case 0: /* pass */
        return tw_result_move(in);
    case 1: /* replace */
        return tw_ok_value(counted((int)j));
    case 2: /* fail */
        return tw_err(tw_failure_new("fuzz", (int)j, "failed %u", j));
    case 3: /* recover or pass */
        return in->failure ? tw_ok_int(1) : tw_result_move(in);
    case 4: /* return another slot's deferred */
        if (P.slot[j])
            return tw_chain(tw_deferred_ref(P.slot[j]));
        return tw_result_move(in);
    case 5: /* fire another from inside */
        if (P.slot[j])
            tw_deferred_callback(P.slot[j], counted(5));
        return tw_result_move(in);
    case 6: /* cancel another from inside */
        if (P.slot[j])
            tw_deferred_cancel(P.slot[j]);
        return tw_result_move(in);
    case 7: /* pause, or unpause, another */
        if (P.slot[j]) {
            if (j & 1)
                tw_deferred_unpause(P.slot[j]);
            else
                tw_deferred_pause(P.slot[j]);
        }
        return tw_result_move(in);
    case 8: /* run more of the program from inside the callback */
        if (P.nesting < MAX_NESTING) {
            P.nesting++;
            step();
            P.nesting--;
        }
        return tw_result_move(in);
    default: /* keep a failure from being reported, else pass */
        if (in->failure)
            return TW_RESULT_NONE;
        return tw_result_move(in);
    }
}

static tw_result later_fn(void *arg)
{
    return tw_ok_value(counted(7));
}

static void drop(unsigned i)
{
    tw_deferred *d = P.slot[i];
    P.slot[i] = NULL;
    tw_deferred_unref(d);
}

static void step(void)
{
    if (P.p >= P.end || P.ops++ >= MAX_OPS)
        return;
    unsigned op = next() % 14, i = next() % NSLOT;
    /* Callbacks run inside most operations and may drop any slot: hold the
     * deferred operated on, as every caller must. */
    tw_deferred *d = tw_deferred_ref(P.slot[i]);
    switch (op) {
    case 0:
        drop(i);
        P.slot[i] = tw_deferred_new(NULL, NULL);
        break;
    case 1:
        if (d) {
            tw_deferred_callback(d, counted((int)i));
        }
        break;
    case 2:
        if (d) {
            tw_deferred_errback(d, tw_failure_new("fuzz", 1, "errback"));
        }
        break;
    case 3:
    case 4: {
        unsigned kind = next() & 15, j = next() % NSLOT;
        if (kind == 4) { /* may only wait on a higher slot */
            if (i == NSLOT - 1)
                kind = 0;
            else
                j = i + 1 + j % (NSLOT - 1 - i);
        }
        if (d)
            tw_deferred_add_callbacks(d, cb_any, cb_any, (void *)(uintptr_t)(kind | (j << 4)));
        break;
    }
    case 5:
        if (d) {
            tw_deferred_cancel(d);
        }
        break;
    case 6:
        if (d)
            tw_deferred_pause(d);
        break;
    case 7:
        if (d) {
            tw_deferred_unpause(d);
        }
        break;
    case 8: {
        unsigned j = next() % NSLOT;
        if (d && j < i && P.slot[j])
            tw_deferred_chain(d, P.slot[j]);
        break;
    }
    case 9: { /* a list or a gather over the live slots above i, into slot i */
        tw_deferred *in[NSLOT];
        size_t n = 0;
        for (unsigned k = i + 1; k < NSLOT; k++)
            if (P.slot[k])
                in[n++] = P.slot[k];
        unsigned flags = next();
        /* The inputs are borrowed for the call: callbacks that run inside it
         * may drop the slots, so hold them. */
        for (size_t k = 0; k < n; k++)
            tw_deferred_ref(in[k]);
        tw_deferred *l =
            (flags & 8) ? tw_gather(in, n, flags & 4) : tw_deferred_list(in, n, flags & 7);
        for (size_t k = 0; k < n; k++)
            tw_deferred_unref(in[k]);
        drop(i);
        P.slot[i] = l;
        break;
    }
    case 10:
        if (d)
            tw_deferred_add_timeout(d, (double)(next() % 4), P.r);
        break;
    case 11: {
        tw_deferred *l = tw_defer_later(P.r, (double)(next() % 4), later_fn, NULL);
        drop(i);
        P.slot[i] = l;
        break;
    }
    case 12:
        tw_clock_advance(P.r, (double)(next() % 3));
        break;
    default:
        drop(i);
        break;
    }
    tw_deferred_unref(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&P, 0, sizeof P);
    P.p = data;
    P.end = data + size;
    tw_log_set_handler(quiet, NULL);
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    if (tw_reactor_new(&o, &P.r) < 0)
        return 0;
    while (P.p < P.end && P.ops < MAX_OPS)
        step();
    for (unsigned i = 0; i < NSLOT; i++)
        drop(i);
    tw_reactor_free(P.r);
    /* Deferreds still held by chains or paused forever are freed with their
     * last reference; values inside them go with them. */
    CHECK(P.live_values == 0);
    tw_log_set_handler(NULL, NULL);
    return 0;
}
