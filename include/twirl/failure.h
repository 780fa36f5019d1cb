/* twirl/failure.h — asynchronous errors (Twisted's Failure).
 *
 * A failure names what went wrong as a domain (a short string such as
 * "twirl" or "myapp.db") and an integer code, carries a message, an optional
 * cause (another failure) and where it was raised (file, line, function).
 * Library failures use domain TW_DOMAIN with a code from twirl/error.h
 * (a TW_E* code or -errno), so tw_strerror(code) always explains them.
 *
 * Failures are reference counted and immutable once made; they are not
 * thread-safe (hand one to another thread only with its sole reference). */
#ifndef TWIRL_FAILURE_H
#define TWIRL_FAILURE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "twirl/error.h"
#include "twirl/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TW_DOMAIN "twirl"
/* A tw_failure_kind whose code is TW_ANY_CODE matches every code of its
 * domain: the C form of "trapping a base class". */
#define TW_ANY_CODE (-2147483647 - 1)

typedef struct tw_failure tw_failure;

typedef struct tw_failure_kind {
    const char *domain;
    int code;
} tw_failure_kind;

/* Makes a failure with one reference, owned by the caller. The domain must be
 * a string that outlives the failure (a literal; NULL means TW_DOMAIN); the
 * message is formatted now (fmt NULL: empty) and kept whole, however long.
 * file and func must outlive the failure too (__FILE__, __func__). cause, if
 * not NULL, is taken: its reference now belongs to the new failure. Never
 * returns NULL: when memory runs out it drops cause and returns a shared,
 * static "out of memory" failure (domain twirl, code TW_ENOMEM; reference
 * counting on it is a no-op). Safe anywhere, including inside callbacks. */
tw_failure *tw_failure_new_at(const char *file, int line, const char *func, const char *domain,
                              int code, tw_failure *cause, const char *fmt, ...) TW_PRINTF(7, 8);
tw_failure *tw_failure_newv_at(const char *file, int line, const char *func, const char *domain,
                               int code, tw_failure *cause, const char *fmt, va_list ap);

/* Raise-site capturing forms. */
#define tw_failure_new(domain, code, ...) \
    tw_failure_new_at(__FILE__, __LINE__, __func__, (domain), (code), NULL, __VA_ARGS__)
#define tw_failure_wrap(cause, domain, code, ...) \
    tw_failure_new_at(__FILE__, __LINE__, __func__, (domain), (code), (cause), __VA_ARGS__)
/* A library failure for a code from twirl/error.h, message tw_strerror(code). */
#define tw_failure_from_code(code)                                                 \
    tw_failure_new_at(__FILE__, __LINE__, __func__, TW_DOMAIN, (code), NULL, "%s", \
                      tw_strerror(code))

/* Standard failures (Twisted's CancelledError, TimeoutError,
 * AlreadyCalledError, ConnectionDone, ConnectionLost, DNSLookupError): match
 * them with tw_failure_is(f, TW_DOMAIN, TW_E...). */
#define tw_failure_cancelled()       tw_failure_from_code(TW_ECANCELED)
#define tw_failure_timed_out()       tw_failure_from_code(TW_ETIMEDOUT)
#define tw_failure_already_called()  tw_failure_from_code(TW_EALREADY_CALLED)
#define tw_failure_connection_done() tw_failure_from_code(TW_ECONNECTION_DONE)
#define tw_failure_connection_lost() tw_failure_from_code(TW_ECONNECTION_LOST)
#define tw_failure_dns(host)                                                            \
    tw_failure_new_at(__FILE__, __LINE__, __func__, TW_DOMAIN, TW_EDNS, NULL, "%s: %s", \
                      tw_strerror(TW_EDNS), (host))

/* Adds a reference (shares f: Twisted's Failure built from a Failure) and
 * returns f. NULL is returned as is. */
tw_failure *tw_failure_ref(tw_failure *f);
/* Drops a reference; frees the failure (and its cause chain) with the last.
 * NULL is a no-op. */
void tw_failure_unref(tw_failure *f);

/* Accessors; the strings and the cause are borrowed from f. */
const char *tw_failure_domain(const tw_failure *f);
int tw_failure_code(const tw_failure *f);
const char *tw_failure_message(const tw_failure *f);
const tw_failure *tw_failure_cause(const tw_failure *f);
const char *tw_failure_file(const tw_failure *f);
int tw_failure_line(const tw_failure *f);
const char *tw_failure_func(const tw_failure *f);

/* True if f has this domain and code (TW_ANY_CODE: any code). */
bool tw_failure_is(const tw_failure *f, const char *domain, int code);

/* Twisted's check: the index of the first kind that f matches, or -1. */
int tw_failure_check(const tw_failure *f, const tw_failure_kind *kinds, size_t n);

/* Twisted's trap, for errbacks: the index of the first kind that f matches,
 * or -1 when none does — the errback should then return the failure
 * unchanged so it goes on down the chain. */
#define tw_failure_trap(f, ...)                                     \
    tw_failure_check((f), (const tw_failure_kind[]){ __VA_ARGS__ }, \
                     sizeof((const tw_failure_kind[]){ __VA_ARGS__ }) / sizeof(tw_failure_kind))

/* Renders "domain code: message (file:line in func)" into buf (always
 * NUL-terminated when size > 0; the site part is left out when file is
 * NULL); returns the length it needed, like snprintf. Never fails: f NULL
 * renders "(no failure)". buf may be NULL when size is 0. */
size_t tw_failure_format(const tw_failure *f, char *buf, size_t size);

/* Renders every failure in the cause chain, one per line, outermost first,
 * "caused by: " before each cause. Returns a malloc'd string the caller
 * frees, or NULL when out of memory. */
char *tw_failure_render(const tw_failure *f);

/* Logs the multi-line rendering at level under the domain "failure", as one
 * message, prefix (if not NULL) on its own first line. Out of memory, it
 * logs the outermost failure's line alone. */
void tw_failure_log(const tw_failure *f, tw_log_level level, const char *prefix);

#ifdef __cplusplus
}
#endif
#endif
