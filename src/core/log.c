/* log.c — minimal leveled logging to stderr or a user handler. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "twirl/error.h"
#include "twirl/log.h"

static atomic_int level = -1; /* -1: not read from the environment yet */
static tw_log_fn handler;
static void *handler_arg;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const names[] = { "debug", "info", "warn", "error", "off" };

const char *tw_log_level_name(tw_log_level l)
{
    return (unsigned)l <= TW_LOG_OFF ? names[l] : "?";
}

int tw_log_level_parse(const char *name, tw_log_level *out)
{
    for (int i = 0; i <= TW_LOG_OFF; i++) {
        if (name && strcasecmp(name, names[i]) == 0) {
            *out = (tw_log_level)i;
            return 0;
        }
    }
    if (name && strcasecmp(name, "warning") == 0) {
        *out = TW_LOG_WARN;
        return 0;
    }
    return TW_EINVAL;
}

tw_log_level tw_log_get_level(void)
{
    int l = atomic_load(&level);
    if (l < 0) {
        tw_log_level parsed = TW_LOG_WARN;
        const char *env = getenv("TWIRL_LOG_LEVEL");
        if (env)
            tw_log_level_parse(env, &parsed);
        int expected = -1;
        atomic_compare_exchange_strong(&level, &expected, (int)parsed);
        l = atomic_load(&level);
    }
    return (tw_log_level)l;
}

void tw_log_set_level(tw_log_level l)
{
    atomic_store(&level, (int)l);
}

void tw_log_set_handler(tw_log_fn fn, void *arg)
{
    pthread_mutex_lock(&handler_lock);
    handler = fn;
    handler_arg = arg;
    pthread_mutex_unlock(&handler_lock);
}

void tw_logv(tw_log_level l, const char *domain, const char *fmt, va_list ap)
{
    if (l < tw_log_get_level() || l >= TW_LOG_OFF)
        return;
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    pthread_mutex_lock(&handler_lock);
    tw_log_fn fn = handler;
    void *arg = handler_arg;
    pthread_mutex_unlock(&handler_lock);
    if (fn)
        fn(l, domain, msg, arg);
    else
        fprintf(stderr, "twirl %s [%s] %s\n", names[l], domain, msg);
}

void tw_log(tw_log_level l, const char *domain, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_logv(l, domain, fmt, ap);
    va_end(ap);
}
