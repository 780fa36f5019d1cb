/* strict_producer.c — a push producer that checks the calls it gets
 * (Twisted's iosim StrictPushProducer). */
#include "twirl/log.h"
#include "twirl/testing.h"

static const char *const state_names[] = { "running", "paused", "stopped" };

static void violation(tw_test_strict_producer *sp, const char *call)
{
    sp->violations++;
    tw_log(TW_LOG_ERROR, "testing", "strict producer: %s while %s", call, state_names[sp->state]);
}

static void sp_pause(tw_producer *p)
{
    tw_test_strict_producer *sp = (tw_test_strict_producer *)p;
    sp->pauses++;
    if (sp->state != TW_TEST_PRODUCING) {
        violation(sp, "pause_producing");
        return;
    }
    sp->state = TW_TEST_PAUSED;
}

static void sp_resume(tw_producer *p)
{
    tw_test_strict_producer *sp = (tw_test_strict_producer *)p;
    sp->resumes++;
    if (sp->state != TW_TEST_PAUSED) {
        violation(sp, "resume_producing");
        return;
    }
    sp->state = TW_TEST_PRODUCING;
}

static void sp_stop(tw_producer *p)
{
    tw_test_strict_producer *sp = (tw_test_strict_producer *)p;
    sp->stops++;
    if (sp->state == TW_TEST_STOPPED) {
        violation(sp, "stop_producing");
        return;
    }
    sp->state = TW_TEST_STOPPED;
}

static const tw_producer_ops strict_ops = { sp_pause, sp_resume, sp_stop };

void tw_test_strict_producer_init(tw_test_strict_producer *sp)
{
    *sp = (tw_test_strict_producer){ .base = { &strict_ops }, .state = TW_TEST_PRODUCING };
}
