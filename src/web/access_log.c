/* access_log.c — the access log in the combined log format (Twisted's
 * combinedLogFormatter, Apache's and nginx's "combined"), buffered and
 * written out at least once a second. A log may be shared by the sites of
 * several reactors: appends take a mutex. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "web/web_internal.h"

enum { LOG_BUF = 64 * 1024, LOG_FLUSH_AT = 32 * 1024, LINE_MAX_BYTES = 8192 };

struct tw_access_log {
    int fd;
    bool owns_fd;
    pthread_mutex_t lock;
    size_t len;
    char buf[LOG_BUF];
};

int tw_access_log_new_fd(int fd, bool owns_fd, tw_access_log **out)
{
    *out = NULL;
    if (fd < 0)
        return TW_EINVAL;
    tw_access_log *l = malloc(sizeof *l);
    if (!l)
        return TW_ENOMEM;
    l->fd = fd;
    l->owns_fd = owns_fd;
    l->len = 0;
    pthread_mutex_init(&l->lock, NULL);
    *out = l;
    return 0;
}

int tw_access_log_open(const char *path, tw_access_log **out)
{
    *out = NULL;
    if (!path)
        return TW_EINVAL;
    if (strcmp(path, "-") == 0)
        return tw_access_log_new_fd(STDOUT_FILENO, false, out);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = tw_access_log_new_fd(fd, true, out);
    if (rc < 0)
        close(fd);
    return rc;
}

static int flush_locked(tw_access_log *l)
{
    size_t off = 0;
    int rc = 0;
    while (off < l->len) {
        ssize_t n = write(l->fd, l->buf + off, l->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        off += (size_t)n;
    }
    l->len = 0; /* a log that cannot be written is dropped, never grown */
    return rc;
}

int tw_access_log_flush(tw_access_log *l)
{
    pthread_mutex_lock(&l->lock);
    int rc = flush_locked(l);
    pthread_mutex_unlock(&l->lock);
    return rc;
}

void tw_access_log_free(tw_access_log *l)
{
    if (!l)
        return;
    tw_access_log_flush(l);
    pthread_mutex_destroy(&l->lock);
    if (l->owns_fd)
        close(l->fd);
    free(l);
}

void tw__access_log_tick(tw_access_log *l)
{
    if (l->len)
        tw_access_log_flush(l);
}

/* ------------------------------------------------------------ formatting */

typedef struct out {
    char *p, *end;
    size_t need;
} out;

static void emit(out *o, const char *s, size_t n)
{
    o->need += n;
    size_t room = (size_t)(o->end - o->p);
    size_t k = n < room ? n : room;
    memcpy(o->p, s, k);
    o->p += k;
}

static void emit_str(out *o, const char *s)
{
    emit(o, s, strlen(s));
}

/* A quoted field's bytes: \" \\ and \xHH for anything not printable. */
static void emit_escaped(out *o, const char *s, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            emit(o, e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char e[4] = { '\\', 'x', hx[c >> 4], hx[c & 15] };
            emit(o, e, 4);
        } else {
            emit(o, (const char *)&c, 1);
        }
    }
}

static void emit_field(out *o, const tw_request *req, const char *name)
{
    tw_http_slice v;
    emit(o, "\"", 1);
    if (!(req->flags & RF_UNPARSED) && tw_request_header(req, name, &v) && v.len)
        emit_escaped(o, v.ptr, v.len);
    else
        emit(o, "-", 1);
    emit(o, "\"", 1);
}

size_t tw_access_log_format(const tw_request *req, char *buf, size_t cap)
{
    char dummy;
    out o = { cap ? buf : &dummy, cap ? buf + cap - 1 : &dummy, 0 };
    tw_address peer;
    char host[TW_ADDRESS_TEXT_MAX] = "-";
    if (tw_request_peer(req, &peer) == 0)
        tw_address_host(&peer, host, sizeof host);
    emit_str(&o, host);
    emit_str(&o, " - - ");
    emit_str(&o, tw__site_log_time(req->site));
    emit_str(&o, " \"");
    if (req->flags & RF_UNPARSED) {
        emit(&o, "-", 1);
    } else {
        emit_escaped(&o, req->h.method.ptr, req->h.method.len);
        emit(&o, " ", 1);
        emit_escaped(&o, req->h.target.ptr, req->h.target.len);
        emit_str(&o, req->h.version_minor ? " HTTP/1.1" : " HTTP/1.0");
    }
    char num[48];
    int n = snprintf(num, sizeof num, "\" %d ", req->status);
    emit(&o, num, (size_t)n);
    if (req->sent && !(req->flags & RF_IS_HEAD)) {
        n = snprintf(num, sizeof num, "%llu", (unsigned long long)req->sent);
        emit(&o, num, (size_t)n);
    } else {
        emit(&o, "-", 1);
    }
    emit(&o, " ", 1);
    emit_field(&o, req, "Referer");
    emit(&o, " ", 1);
    emit_field(&o, req, "User-Agent");
    if (cap)
        *o.p = 0;
    return o.need;
}

void tw__access_log_request(tw_access_log *l, tw_site *s, tw_request *req)
{
    char line[LINE_MAX_BYTES];
    size_t n = tw_access_log_format(req, line, sizeof line - 1);
    if (n > sizeof line - 2)
        n = sizeof line - 2; /* cut: a line never exceeds LINE_MAX_BYTES */
    line[n++] = '\n';
    pthread_mutex_lock(&l->lock);
    if (l->len + n > LOG_BUF)
        flush_locked(l);
    memcpy(l->buf + l->len, line, n);
    l->len += n;
    if (l->len >= LOG_FLUSH_AT)
        flush_locked(l);
    pthread_mutex_unlock(&l->lock);
}
