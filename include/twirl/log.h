/* twirl/log.h — the library's minimal logging.
 *
 * The library reports what it cannot return to a caller (an unhandled
 * failure, a refused connection, a fallen-back backend) through tw_log().
 * Messages at or above the current level go to the handler, which by default
 * writes one line to stderr: "twirl LEVEL [domain] message". The level starts
 * from $TWIRL_LOG_LEVEL (debug, info, warn, error, off) or "warn". */
#ifndef TWIRL_LOG_H
#define TWIRL_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tw_log_level {
    TW_LOG_DEBUG = 0,
    TW_LOG_INFO = 1,
    TW_LOG_WARN = 2,
    TW_LOG_ERROR = 3,
    TW_LOG_OFF = 4
} tw_log_level;

/* Receives every message at or above the current level. domain is a short
 * static string such as "reactor" or "tcp"; message has no trailing newline.
 * Both are borrowed for the call. Called on whatever thread logged. */
typedef void (*tw_log_fn)(tw_log_level level, const char *domain, const char *message, void *arg);

#if defined(__GNUC__)
#define TW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TW_PRINTF(fmt, args)
#endif

/* Logs printf-style. Thread-safe. Messages longer than 4 KiB are cut. */
void tw_log(tw_log_level level, const char *domain, const char *fmt, ...) TW_PRINTF(3, 4);
void tw_logv(tw_log_level level, const char *domain, const char *fmt, va_list ap);

/* Process-wide settings; call them before starting threads that log. */
void tw_log_set_level(tw_log_level level);
tw_log_level tw_log_get_level(void);
/* Replaces the handler (NULL restores the stderr one). */
void tw_log_set_handler(tw_log_fn fn, void *arg);
/* Parses "debug", "info", "warn", "error" or "off"; TW_EINVAL otherwise. */
int tw_log_level_parse(const char *name, tw_log_level *out);
/* "debug", "info", ...: a static string. */
const char *tw_log_level_name(tw_log_level level);

#ifdef __cplusplus
}
#endif
#endif
