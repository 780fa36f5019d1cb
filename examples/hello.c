/* hello — the smallest twirl program: a reactor, a repeating timer, and a
 * graceful shutdown on Ctrl-C with a before-shutdown trigger that holds the
 * shutdown for a moment, as a server would while it closes connections. */
#include <stdio.h>

#include "twirl/reactor.h"

typedef struct ticker {
    tw_reactor *r;
    tw_timer timer;
    int ticks;
} ticker;

static void tick(void *arg)
{
    ticker *t = arg;
    printf("tick %d at %.3f s\n", ++t->ticks, tw_reactor_now(t->r));
    fflush(stdout);
    tw_timer_reset(t->timer, 1.0); /* a timer may re-arm itself */
}

static void finished(void *arg)
{
    tw_reactor *r = arg;
    printf("goodbye\n");
    tw_reactor_release_phase(r);
}

static void before_shutdown(tw_reactor *r, void *arg)
{
    ticker *t = arg;
    tw_timer_cancel(t->timer);
    printf("shutting down after %d ticks...\n", t->ticks);
    tw_reactor_hold_phase(r); /* released by finished() */
    tw_call_later(r, 0.2, finished, r);
}

static void started(void *arg)
{
    ticker *t = arg;
    printf("running on the %s backend; press Ctrl-C to stop\n", tw_reactor_backend(t->r));
    fflush(stdout);
    t->timer = tw_call_later(t->r, 1.0, tick, t);
}

int main(void)
{
    ticker t = { 0 };
    int rc = tw_reactor_new(NULL, &t.r);
    if (rc < 0) {
        fprintf(stderr, "hello: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_reactor_add_trigger(t.r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, before_shutdown, &t, NULL);
    tw_call_when_running(t.r, started, &t);
    rc = tw_reactor_run(t.r);
    tw_reactor_free(t.r);
    return rc < 0 ? 1 : 0;
}
