/* clock.c — Twisted's task.Clock: a reactor on the fake clock. */
#include "twirl/testing.h"

tw_reactor *tw_test_clock_new(void)
{
    tw_reactor_options o = { .clock = TW_CLOCK_FAKE, .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    if (tw_reactor_new(&o, &r) < 0)
        return NULL;
    return r;
}
