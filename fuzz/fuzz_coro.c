/* fuzz_coro — coroutines, their stacks and switches under arbitrary
 * schedules. The input is a program read by both the driver (main stack) and
 * the coroutines it starts (each reads the next byte when it runs): spawn,
 * await external/ready/failed/sleep/child, fire, pause, drop, cancel, advance
 * the fake clock, return early. At the end the reactor is freed with
 * whatever is still suspended, every external deferred is released, and
 * every coroutine must have finished exactly once with its deferred fired
 * exactly once; the sanitizers check the memory on the way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/coro.h"
#include "twirl/deferred.h"

enum { NEXT = 8, NCO = 16, MAX_SPAWNS = 48, MAX_STEPS = 64 };

static struct {
    const uint8_t *p, *end;
    tw_reactor *r;
    tw_deferred *ext[NEXT];
    int paused[NEXT];
    tw_deferred *co[NCO]; /* handles of spawned coroutines (a reference each) */
    int spawned, finished;
    int fired[MAX_SPAWNS];
} P;

#define CHECK(c)              \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static int next_byte(void)
{
    return P.p < P.end ? *P.p++ : -1;
}

static tw_value heap_value(int n)
{
    int *v = malloc(sizeof *v);
    CHECK(v);
    *v = n;
    return tw_value_make(v, free);
}

static tw_result count_fired(tw_result *in, void *arg)
{
    P.fired[(intptr_t)arg]++;
    return TW_RESULT_NONE; /* the chain frees the value or failure */
}

static void cancel_into_value(tw_deferred *d, void *arg)
{
    tw_deferred_callback(d, heap_value(-1));
}

static tw_deferred *external(int i)
{
    if (!P.ext[i]) {
        P.ext[i] = tw_deferred_new(i % 2 ? cancel_into_value : NULL, NULL);
        CHECK(P.ext[i]);
    }
    return P.ext[i];
}

static void fire_external(int i, int how)
{
    tw_deferred *d = external(i);
    if (tw_deferred_called(d))
        return;
    if (how % 2)
        tw_deferred_errback(d, tw_failure_new("fuzz", how, "failed %d", how));
    else
        tw_deferred_callback(d, heap_value(how));
}

/* The state changes before the call: unpausing may run coroutines that touch
 * the same slot. */
static void toggle_pause(int i)
{
    tw_deferred *d = external(i);
    if (P.paused[i]) {
        P.paused[i]--;
        tw_deferred_unpause(d);
    } else {
        P.paused[i]++;
        tw_deferred_pause(d);
    }
}

static void drop_external(int i)
{
    tw_deferred *d = P.ext[i];
    int paused = P.paused[i];
    P.ext[i] = NULL;
    P.paused[i] = 0;
    if (!d)
        return;
    tw_deferred_ref(d); /* unpausing may resume a coroutine that drops it */
    while (paused-- > 0)
        tw_deferred_unpause(d);
    tw_deferred_unref(d);
    tw_deferred_unref(d); /* unfired and unheld: its waiters get ECANCELED */
}

/* Cancels a coroutine's handle, holding a reference of our own: the
 * coroutines it resumes may replace the slot. */
static void cancel_slot(int i)
{
    tw_deferred *d = tw_deferred_ref(P.co[i]);
    if (d)
        tw_deferred_cancel(d);
    tw_deferred_unref(d);
}

static tw_result body(void *arg);

/* Spawns a coroutine, keeps a handle in slot `slot`, returns another
 * reference (or NULL past the spawn budget). */
static tw_deferred *spawn(int slot)
{
    if (P.spawned >= MAX_SPAWNS || !P.r)
        return NULL;
    intptr_t id = P.spawned++;
    tw_deferred *d = tw_coro_spawn(P.r, body, (void *)id, NULL);
    CHECK(d);
    CHECK(tw_deferred_add_both(d, count_fired, (void *)id) == 0);
    tw_deferred *old = P.co[slot];
    P.co[slot] = tw_deferred_ref(d);
    tw_deferred_unref(old);
    return d;
}

static tw_result body(void *arg)
{
    tw_value mine = heap_value((int)(intptr_t)arg); /* freed on every path */
    tw_result out = TW_RESULT_NONE;
    for (int step = 0; step < MAX_STEPS; step++) {
        int b = next_byte();
        if (b < 0)
            break;
        int x = b / 10;
        tw_result r = TW_RESULT_NONE;
        switch (b % 10) {
        case 0:
            r = tw_await(tw_deferred_ref(external(x % NEXT)));
            break;
        case 1:
            r = tw_await(tw_sleep(tw_coro_reactor() ? tw_coro_reactor() : P.r, (x % 4) * 0.5));
            break;
        case 2:
            r = tw_await(tw_succeed(heap_value(x)));
            break;
        case 3:
            r = tw_await(tw_fail(tw_failure_new("fuzz", x, "ready failure")));
            break;
        case 4: {
            tw_deferred *child = spawn(x % NCO);
            if (child)
                r = tw_await(child);
            break;
        }
        case 5:
            cancel_slot(x % NCO);
            break;
        case 6:
            fire_external(x % NEXT, x);
            break;
        case 7:
            out = tw_err(tw_failure_new("fuzz", x, "gave up"));
            step = MAX_STEPS;
            break;
        case 8:
            out = tw_ok_value(heap_value(x));
            step = MAX_STEPS;
            break;
        case 9:
            toggle_pause(x % NEXT);
            break;
        }
        CHECK(!r.deferred);
        tw_result_free(&r);
    }
    tw_value_free(&mine);
    P.finished++;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&P, 0, sizeof P);
    P.p = data;
    P.end = data + size;
    tw_log_set_level(TW_LOG_OFF);
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    if (tw_reactor_new(&o, &P.r) < 0)
        return 0;
    bool stop = false;
    for (int steps = 0; !stop && steps < 4 * MAX_STEPS; steps++) {
        int b = next_byte();
        if (b < 0)
            break;
        int x = b / 8;
        switch (b % 8) {
        case 0: {
            tw_deferred *d = spawn(x % NCO);
            tw_deferred_unref(d);
            break;
        }
        case 1:
            tw_clock_advance(P.r, (x % 4) * 0.5);
            break;
        case 2:
            cancel_slot(x % NCO);
            break;
        case 3:
            fire_external(x % NEXT, x);
            break;
        case 4:
            toggle_pause(x % NEXT);
            break;
        case 5:
            drop_external(x % NEXT);
            break;
        case 6: {
            tw_deferred *old = P.co[x % NCO];
            P.co[x % NCO] = NULL;
            tw_deferred_unref(old);
        } break;
        case 7:
            stop = (x % 4) == 0;
            break;
        }
    }
    /* Teardown: no more instructions for anyone, free the reactor with what
     * is still suspended, then let every external deferred go. */
    P.p = P.end;
    tw_reactor *r = P.r;
    P.r = NULL;
    tw_reactor_free(r);
    for (int round = 0; round < 4; round++) /* resumed coroutines may make more */
        for (int i = 0; i < NEXT; i++)
            drop_external(i);
    for (int i = 0; i < NCO; i++)
        tw_deferred_unref(P.co[i]);
    CHECK(P.finished == P.spawned);
    for (int i = 0; i < P.spawned; i++)
        CHECK(P.fired[i] == 1);
    return 0;
}
