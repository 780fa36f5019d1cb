/* client_body.c — request body producers (Twisted's FileBodyProducer):
 * bytes in memory, and a file descriptor read in pieces while the
 * connection takes them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "web/client_internal.h"

enum { FD_CHUNK = 64 * 1024, FD_READS_PER_TURN = 4 };

void tw_body_producer_free(tw_body_producer *p)
{
    if (p && p->ops && p->ops->destroy)
        p->ops->destroy(p);
}

/* ------------------------------------------------------------ bytes */

typedef struct bytes_producer {
    tw_body_producer base;
    size_t len;
    char data[];
} bytes_producer;

static tw_deferred *bytes_start(tw_body_producer *p, tw_body_consumer *c)
{
    bytes_producer *b = (bytes_producer *)p;
    int rc = tw_body_consumer_write(c, b->data, b->len);
    if (rc < 0 && rc != TW_ECLOSED)
        return tw_fail(tw_failure_from_code(rc));
    return tw_succeed(TW_VALUE_NONE);
}

static int bytes_rewind(tw_body_producer *p)
{
    (void)p;
    return 0;
}

static void bytes_destroy(tw_body_producer *p)
{
    free(p);
}

static const tw_body_producer_ops bytes_ops = {
    .start_producing = bytes_start,
    .rewind = bytes_rewind,
    .destroy = bytes_destroy,
};

int tw_body_producer_new_bytes(const void *data, size_t len, tw_body_producer **out)
{
    if (!out || (len && !data))
        return TW_EINVAL;
    bytes_producer *b = malloc(sizeof *b + len);
    if (!b)
        return TW_ENOMEM;
    b->base.ops = &bytes_ops;
    b->base.length = len;
    b->len = len;
    if (len)
        memcpy(b->data, data, len);
    *out = &b->base;
    return 0;
}

/* ------------------------------------------------------------ files */

typedef struct fd_producer {
    tw_body_producer base;
    int fd;
    bool seekable;
    bool paused;
    off_t start;
    uint64_t sent;
    tw_reactor *reactor;
    tw_body_consumer *consumer;
    tw_deferred *d; /* ours while producing */
    tw__task task;
    char buf[FD_CHUNK];
} fd_producer;

static void fd_finish(fd_producer *f, tw_failure *fail)
{
    tw_deferred *d = f->d;
    f->d = NULL;
    if (fail)
        tw_deferred_errback(d, fail);
    else
        tw_deferred_callback(d, TW_VALUE_NONE);
    tw_deferred_unref(d);
}

static void fd_task(tw_reactor *r, tw__task *t)
{
    fd_producer *f = (fd_producer *)((char *)t - offsetof(fd_producer, task));
    for (int k = 0; k < FD_READS_PER_TURN; k++) {
        if (!f->d || f->paused)
            return;
        ssize_t n = read(f->fd, f->buf, sizeof f->buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fd_finish(f, tw_failure_wrap(tw_failure_from_code(-errno), TW_DOMAIN, -errno,
                                         "reading the request body: %s", tw_strerror(-errno)));
            return;
        }
        if (n == 0) {
            bool known = f->base.length != TW_BODY_UNKNOWN_LENGTH;
            if (known && f->sent != f->base.length)
                fd_finish(f, tw_failure_new(TW_DOMAIN, TW_EINVAL,
                                            "the request body file shrank while being sent"));
            else
                fd_finish(f, NULL);
            return;
        }
        size_t len = (size_t)n;
        if (f->base.length != TW_BODY_UNKNOWN_LENGTH && len > f->base.length - f->sent) {
            fd_finish(f, tw_failure_new(TW_DOMAIN, TW_EINVAL,
                                        "the request body file grew while being sent"));
            return;
        }
        f->sent += len;
        /* Writing may pause us (the connection's buffer filled), or end
         * the request (stop_producing clears d). */
        if (tw_body_consumer_write(f->consumer, f->buf, len) < 0) {
            if (f->d)
                fd_finish(f, tw_failure_new(TW_DOMAIN, TW_ECLOSED, "the request ended"));
            return;
        }
    }
    if (f->d && !f->paused)
        tw__task_post(r, &f->task, fd_task);
}

static tw_deferred *fd_start(tw_body_producer *p, tw_body_consumer *c)
{
    fd_producer *f = (fd_producer *)p;
    if (f->d)
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EBUSY, "the body producer is already running"));
    f->consumer = c;
    f->reactor = tw_body_consumer_reactor(c);
    f->paused = false;
    if (!(f->d = tw_deferred_new(NULL, NULL)))
        return NULL;
    tw__task_post(f->reactor, &f->task, fd_task);
    return tw_deferred_ref(f->d);
}

static void fd_pause(tw_body_producer *p)
{
    ((fd_producer *)p)->paused = true;
}

static void fd_resume(tw_body_producer *p)
{
    fd_producer *f = (fd_producer *)p;
    f->paused = false;
    if (f->d)
        tw__task_post(f->reactor, &f->task, fd_task);
}

static void fd_stop(tw_body_producer *p)
{
    fd_producer *f = (fd_producer *)p;
    if (f->reactor)
        tw__task_cancel(f->reactor, &f->task);
    tw_deferred *d = f->d;
    f->d = NULL;
    tw_deferred_unref(d); /* never fired: the request no longer waits */
}

static int fd_rewind(tw_body_producer *p)
{
    fd_producer *f = (fd_producer *)p;
    if (!f->seekable)
        return TW_EINVAL;
    if (lseek(f->fd, f->start, SEEK_SET) < 0)
        return -errno;
    f->sent = 0;
    return 0;
}

static void fd_destroy(tw_body_producer *p)
{
    fd_producer *f = (fd_producer *)p;
    fd_stop(p);
    close(f->fd);
    free(f);
}

static const tw_body_producer_ops fd_ops = {
    .start_producing = fd_start,
    .pause_producing = fd_pause,
    .resume_producing = fd_resume,
    .stop_producing = fd_stop,
    .rewind = fd_rewind,
    .destroy = fd_destroy,
};

int tw_body_producer_new_fd(int fd, tw_body_producer **out)
{
    if (fd < 0 || !out)
        return TW_EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    off_t at = lseek(fd, 0, SEEK_CUR);
    fd_producer *f = calloc(1, sizeof *f);
    if (!f)
        return TW_ENOMEM;
    f->base.ops = &fd_ops;
    f->fd = fd;
    f->seekable = at >= 0;
    f->start = at >= 0 ? at : 0;
    if (S_ISREG(st.st_mode) && at >= 0)
        f->base.length = st.st_size > at ? (uint64_t)(st.st_size - at) : 0;
    else
        f->base.length = TW_BODY_UNKNOWN_LENGTH;
    *out = &f->base;
    return 0;
}
