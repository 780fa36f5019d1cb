/* failure.c — Twisted's Failure: a domain, a code, a message, a cause chain
 * and the place it was raised, in one allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async/async_internal.h"
#include "twirl/failure.h"

struct tw_failure {
    int refs; /* 0: the static out-of-memory failure, never freed */
    int code;
    long detail;
    const char *domain;
    const char *message; /* points just past the struct, or to a literal */
    tw_failure *cause;
    const char *file;
    const char *func;
    int line;
};

static tw_failure oom_failure = {
    .refs = 0,
    .code = TW_ENOMEM,
    .detail = -1,
    .domain = TW_DOMAIN,
    .message = "out of memory",
    .file = NULL,
    .func = NULL,
    .line = 0,
};

tw_failure *tw__failure_oom(void)
{
    return &oom_failure;
}

tw_failure *tw__failure_newv_detail(const char *file, int line, const char *func,
                                    const char *domain, int code, tw_failure *cause, long detail,
                                    const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[128];
    int len = fmt ? vsnprintf(small, sizeof small, fmt, ap) : 0;
    if (len < 0)
        len = 0; /* a broken format still makes a failure, with no message */
    tw_failure *f = malloc(sizeof *f + (size_t)len + 1);
    if (!f) {
        va_end(ap2);
        tw_failure_unref(cause);
        return &oom_failure;
    }
    char *msg = (char *)(f + 1);
    if ((size_t)len < sizeof small)
        memcpy(msg, small, (size_t)len + 1);
    else
        vsnprintf(msg, (size_t)len + 1, fmt, ap2);
    if (len == 0)
        msg[0] = '\0';
    va_end(ap2);
    f->refs = 1;
    f->code = code;
    f->detail = detail;
    f->domain = domain ? domain : TW_DOMAIN;
    f->message = msg;
    f->cause = cause;
    f->file = file;
    f->func = func;
    f->line = line;
    return f;
}

tw_failure *tw__failure_new_detail(const char *file, int line, const char *func, const char *domain,
                                   int code, tw_failure *cause, long detail, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_failure *f = tw__failure_newv_detail(file, line, func, domain, code, cause, detail, fmt, ap);
    va_end(ap);
    return f;
}

tw_failure *tw_failure_newv_at(const char *file, int line, const char *func, const char *domain,
                               int code, tw_failure *cause, const char *fmt, va_list ap)
{
    return tw__failure_newv_detail(file, line, func, domain, code, cause, -1, fmt, ap);
}

tw_failure *tw_failure_new_at(const char *file, int line, const char *func, const char *domain,
                              int code, tw_failure *cause, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_failure *f = tw__failure_newv_detail(file, line, func, domain, code, cause, -1, fmt, ap);
    va_end(ap);
    return f;
}

tw_failure *tw_failure_ref(tw_failure *f)
{
    if (f && f->refs > 0)
        f->refs++;
    return f;
}

void tw_failure_unref(tw_failure *f)
{
    /* A loop, not recursion: a cause chain may be long. */
    while (f && f->refs > 0 && --f->refs == 0) {
        tw_failure *cause = f->cause;
        free(f);
        f = cause;
    }
}

const char *tw_failure_domain(const tw_failure *f)
{
    return f->domain;
}

int tw_failure_code(const tw_failure *f)
{
    return f->code;
}

const char *tw_failure_message(const tw_failure *f)
{
    return f->message;
}

const tw_failure *tw_failure_cause(const tw_failure *f)
{
    return f->cause;
}

const char *tw_failure_file(const tw_failure *f)
{
    return f->file;
}

int tw_failure_line(const tw_failure *f)
{
    return f->line;
}

const char *tw_failure_func(const tw_failure *f)
{
    return f->func;
}

long tw__failure_detail(const tw_failure *f)
{
    return f->detail;
}

bool tw_failure_is(const tw_failure *f, const char *domain, int code)
{
    if (!f)
        return false;
    if (!domain)
        domain = TW_DOMAIN;
    if (f->domain != domain && strcmp(f->domain, domain) != 0)
        return false;
    return code == TW_ANY_CODE || code == f->code;
}

int tw_failure_check(const tw_failure *f, const tw_failure_kind *kinds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tw_failure_is(f, kinds[i].domain, kinds[i].code))
            return (int)i;
    return -1;
}

size_t tw_failure_format(const tw_failure *f, char *buf, size_t size)
{
    int w;
    if (!size)
        buf = NULL;
    if (!f)
        w = snprintf(buf, size, "(no failure)");
    else if (f->file)
        w = snprintf(buf, size, "%s %d: %s (%s:%d%s%s)", f->domain, f->code,
                     f->message ? f->message : "", f->file, f->line, f->func ? " in " : "",
                     f->func ? f->func : "");
    else
        w = snprintf(buf, size, "%s %d: %s", f->domain, f->code, f->message ? f->message : "");
    if (w < 0) { /* only an encoding error; say something rather than nothing */
        if (buf)
            buf[0] = '\0';
        return 0;
    }
    return (size_t)w;
}
char *tw_failure_render(const tw_failure *f)
{
    static const char caused[] = "\ncaused by: ";
    size_t need = 1;
    for (const tw_failure *c = f; c; c = c->cause)
        need += tw_failure_format(c, NULL, 0) + (c != f ? sizeof caused - 1 : 0);
    if (!f)
        need = sizeof "(no failure)";
    char *out = malloc(need);
    if (!out)
        return NULL;
    if (!f) {
        memcpy(out, "(no failure)", sizeof "(no failure)");
        return out;
    }
    size_t pos = 0;
    for (const tw_failure *c = f; c; c = c->cause) {
        if (c != f) {
            memcpy(out + pos, caused, sizeof caused - 1);
            pos += sizeof caused - 1;
        }
        pos += tw_failure_format(c, out + pos, need - pos);
    }
    out[pos] = '\0';
    return out;
}

void tw_failure_log(const tw_failure *f, tw_log_level level, const char *prefix)
{
    char *text = tw_failure_render(f);
    if (text) {
        tw_log(level, "failure", "%s%s%s", prefix ? prefix : "", prefix ? "\n" : "", text);
        free(text);
        return;
    }
    /* Out of memory: the outermost failure still gets told. */
    char line[512];
    tw_failure_format(f, line, sizeof line);
    tw_log(level, "failure", "%s%s%s", prefix ? prefix : "", prefix ? "\n" : "", line);
}
