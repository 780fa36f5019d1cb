/* stdio.c — Twisted's StandardIO: a protocol over our own standard input
 * and output, two ends of pipe.c (one read, one written).
 *
 * Teardown follows stream.c: closing changes state, finishes both ends,
 * restores the descriptors' flags, and posts a task; connection_lost runs
 * from that task, never inside the caller, and the memory is freed right
 * after it. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/pipe_internal.h"
#include "net/process_internal.h"
#include "twirl/log.h"
#include "twirl/stdio.h"

enum {
    STDIO_READ_EOF = 1u << 0,     /* input ended */
    STDIO_SHUT_PENDING = 1u << 1, /* lose_write_connection: shut once flushed */
    STDIO_WRITE_SHUT = 1u << 2,   /* output shut */
    STDIO_PRODUCER_STREAMING = 1u << 3,
    STDIO_PRODUCER_PAUSED = 1u << 4,
    STDIO_SHARED = 1u << 5 /* in and out are the same file (a terminal): restore together */
};

struct tw_stdio {
    tw_transport base; /* first */
    struct tw_stdio *prev, *next;
    tw__procio *st;
    tw__pipe in, out;
    int in_fd, out_fd;       /* -1: none */
    int in_flags, out_flags; /* F_GETFL before we set O_NONBLOCK; -1: nothing to restore */
    tw__task task;           /* teardown */
    tw_producer *producer;
    uint32_t high_water, low_water, write_limit;
    unsigned flags;
    int close_err; /* 0 for a clean end, else what ended it */
};

static inline tw_stdio *of_pipe(tw__pipe *p)
{
    return p->owner;
}

/* ----------------------------------------------------------- teardown */

static void restore_flags(int fd, int *saved)
{
    if (fd >= 0 && *saved >= 0)
        fcntl(fd, F_SETFL, *saved);
    *saved = -1;
}

static void unlink_stdio(tw_stdio *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        s->st->stdios = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static void teardown(tw_reactor *r, tw__task *task)
{
    tw_stdio *s = (tw_stdio *)((char *)task - offsetof(tw_stdio, task));
    tw_protocol *p = s->base.protocol;
    tw_failure *reason;
    if (s->close_err == 0) {
        reason = tw_failure_new(TW_DOMAIN, TW_ECONNECTION_DONE, "Connection was closed cleanly.");
    } else {
        reason = tw_failure_wrap(tw_failure_from_code(s->close_err), TW_DOMAIN, TW_ECONNECTION_LOST,
                                 "Standard I/O was lost: %s", tw_strerror(s->close_err));
    }
    if (s->producer) {
        tw_producer *prod = s->producer;
        s->producer = NULL;
        if (prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    if (p->ops->connection_lost)
        p->ops->connection_lost(p, reason);
    p->transport = NULL;
    tw_protocol_free(p);
    tw_failure_unref(reason);
    unlink_stdio(s);
    free(s);
}

/* Ends now: both ends finished (queued output dropped), flags restored,
 * connection_lost posted. err: 0 clean, else the cause. */
static void close_now(tw_stdio *s, int err)
{
    if (s->base.state == TW_TRANSPORT_CLOSED)
        return;
    s->base.state = TW_TRANSPORT_CLOSED;
    s->close_err = err;
    tw__pipe_abort(&s->in, 0); /* the hooks see CLOSED and stay quiet */
    tw__pipe_abort(&s->out, 0);
    restore_flags(s->in_fd, &s->in_flags);
    restore_flags(s->out_fd, &s->out_flags);
    tw__task_post(s->base.reactor, &s->task, teardown);
}

/* ----------------------------------------------------------- the ends */

static void in_data(tw__pipe *pp, const void *data, size_t len)
{
    tw_stdio *s = of_pipe(pp);
    tw_protocol *p = s->base.protocol;
    if (s->base.state == TW_TRANSPORT_OPEN && p->ops->data_received)
        p->ops->data_received(p, data, len);
}

static void in_closed(tw__pipe *pp, int err)
{
    tw_stdio *s = of_pipe(pp);
    if (s->base.state != TW_TRANSPORT_OPEN)
        return; /* we stopped reading ourselves */
    if (err) {
        close_now(s, err);
        return;
    }
    s->flags |= STDIO_READ_EOF;
    if (s->flags & STDIO_WRITE_SHUT) {
        close_now(s, 0);
        return;
    }
    tw_protocol *p = s->base.protocol;
    if (p->ops->eof_received)
        p->ops->eof_received(p);
    else
        tw_transport_lose_connection(&s->base);
}

/* Output is flushed and shut: let the reader see end of file while the
 * descriptor number stays valid for the rest of the program. */
static void shut_output(tw_stdio *s)
{
    s->flags &= ~STDIO_SHUT_PENDING;
    s->flags |= STDIO_WRITE_SHUT;
    if (!(s->flags & STDIO_SHARED))
        restore_flags(s->out_fd, &s->out_flags);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, s->out_fd);
        close(null);
    }
    s->out_flags = -1; /* the descriptor is no longer the one we changed */
}

static void out_closed(tw__pipe *pp, int err)
{
    tw_stdio *s = of_pipe(pp);
    if (s->base.state == TW_TRANSPORT_CLOSED)
        return;
    if (err) {
        close_now(s, err);
        return;
    }
    if (s->base.state == TW_TRANSPORT_DISCONNECTING) {
        close_now(s, 0);
        return;
    }
    shut_output(s);
    if (s->flags & STDIO_READ_EOF)
        close_now(s, 0);
}

static void out_written(tw__pipe *pp)
{
    tw_stdio *s = of_pipe(pp);
    if (!s->producer || s->base.state == TW_TRANSPORT_CLOSED)
        return;
    if (s->flags & STDIO_PRODUCER_STREAMING) {
        if ((s->flags & STDIO_PRODUCER_PAUSED) && s->out.buffered <= s->low_water) {
            s->flags &= ~STDIO_PRODUCER_PAUSED;
            s->producer->ops->resume_producing(s->producer);
        }
    } else if (s->out.buffered == 0) {
        s->producer->ops->resume_producing(s->producer);
    }
}

static const tw__pipe_ops in_ops = { .data = in_data, .closed = in_closed };
static const tw__pipe_ops out_ops = { .closed = out_closed, .written = out_written };

static void none_closed(tw__pipe *pp, int err)
{
}
static const tw__pipe_ops none_ops = { .closed = none_closed };

/* ----------------------------------------------------------- writing */

static void producer_check_high(tw_stdio *s)
{
    if (s->producer && (s->flags & STDIO_PRODUCER_STREAMING) &&
        !(s->flags & STDIO_PRODUCER_PAUSED) && s->out.buffered > s->high_water) {
        s->flags |= STDIO_PRODUCER_PAUSED;
        s->producer->ops->pause_producing(s->producer);
    }
}

static int after_write(tw_stdio *s, int rc)
{
    if (rc < 0)
        return rc;
    if (s->write_limit && s->out.buffered > s->write_limit) {
        tw_log(TW_LOG_WARN, "stdio", "output buffer over its limit (%zu > %u bytes): aborting",
               s->out.buffered, s->write_limit);
        close_now(s, -ENOBUFS);
        return TW_ELIMIT;
    }
    producer_check_high(s);
    return 0;
}

static int writable(tw_stdio *s)
{
    return s->base.state == TW_TRANSPORT_OPEN &&
           !(s->flags & (STDIO_SHUT_PENDING | STDIO_WRITE_SHUT)) && s->out_fd >= 0;
}

static int stdio_write(tw_transport *t, const void *data, size_t len)
{
    tw_stdio *s = (tw_stdio *)t;
    if (!writable(s))
        return TW_ECLOSED;
    return after_write(s, tw__pipe_write(&s->out, data, len));
}

static int stdio_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    tw_stdio *s = (tw_stdio *)t;
    if (!writable(s))
        return TW_ECLOSED;
    return after_write(s, tw__pipe_writev(&s->out, iov, iovcnt));
}

static int stdio_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                           void *arg)
{
    tw_stdio *s = (tw_stdio *)t;
    if (!writable(s)) {
        if (release)
            release(arg);
        return TW_ECLOSED;
    }
    return after_write(s, tw__pipe_write_ref(&s->out, data, len, release, arg));
}

/* ----------------------------------------------------------- closing */

static void stdio_lose_connection(tw_transport *t)
{
    tw_stdio *s = (tw_stdio *)t;
    if (s->base.state != TW_TRANSPORT_OPEN)
        return;
    s->base.state = TW_TRANSPORT_DISCONNECTING;
    tw__pipe_close(&s->in); /* no more reading, as Twisted */
    if (s->out.closed)
        close_now(s, 0);
    else
        tw__pipe_close(&s->out); /* out_closed ends us once flushed */
}

static void stdio_abort(tw_transport *t)
{
    close_now((tw_stdio *)t, -ECONNABORTED);
}

static int stdio_lose_write_connection(tw_transport *t)
{
    tw_stdio *s = (tw_stdio *)t;
    if (!writable(s))
        return TW_ECLOSED;
    s->flags |= STDIO_SHUT_PENDING;
    tw__pipe_close(&s->out); /* out_closed shuts it once flushed */
    return 0;
}

/* ----------------------------------------------------------- flow control */

static void stdio_pause(tw_transport *t)
{
    tw__pipe_pause(&((tw_stdio *)t)->in);
}

static void stdio_resume(tw_transport *t)
{
    tw_stdio *s = (tw_stdio *)t;
    if (s->base.state == TW_TRANSPORT_OPEN)
        tw__pipe_resume(&s->in);
}

static int stdio_register_producer(tw_transport *t, tw_producer *prod, bool streaming)
{
    tw_stdio *s = (tw_stdio *)t;
    if (s->producer) {
        tw_log(TW_LOG_ERROR, "stdio", "register_producer: a producer is already registered");
        return TW_EBUSY;
    }
    if (s->base.state == TW_TRANSPORT_CLOSED)
        return TW_ECLOSED;
    s->producer = prod;
    s->flags &= ~(STDIO_PRODUCER_STREAMING | STDIO_PRODUCER_PAUSED);
    if (streaming) {
        s->flags |= STDIO_PRODUCER_STREAMING;
        producer_check_high(s);
    } else if (s->out.buffered == 0) {
        prod->ops->resume_producing(prod);
    }
    return 0;
}

static void stdio_unregister_producer(tw_transport *t)
{
    tw_stdio *s = (tw_stdio *)t;
    s->producer = NULL;
    s->flags &= ~(STDIO_PRODUCER_STREAMING | STDIO_PRODUCER_PAUSED);
}

static int stdio_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    tw_stdio *s = (tw_stdio *)t;
    if (value < 0 || (unsigned long)value > UINT32_MAX)
        return TW_EINVAL;
    switch (opt) {
    case TW_OPT_HIGH_WATER:
        s->high_water = (uint32_t)value;
        producer_check_high(s);
        return 0;
    case TW_OPT_LOW_WATER:
        s->low_water = (uint32_t)value;
        return 0;
    case TW_OPT_WRITE_LIMIT:
        s->write_limit = (uint32_t)value;
        return 0;
    default:
        return TW_EINVAL;
    }
}

static size_t stdio_buffered(const tw_transport *t)
{
    return ((const tw_stdio *)t)->out.buffered;
}

static int stdio_fd(const tw_transport *t)
{
    const tw_stdio *s = (const tw_stdio *)t;
    return s->base.state == TW_TRANSPORT_CLOSED ? -1 : s->out_fd;
}

static const tw_transport_ops stdio_ops = {
    .kind = "stdio",
    .write = stdio_write,
    .writev = stdio_writev,
    .write_ref = stdio_write_ref,
    .lose_connection = stdio_lose_connection,
    .abort_connection = stdio_abort,
    .lose_write_connection = stdio_lose_write_connection,
    .pause_producing = stdio_pause,
    .resume_producing = stdio_resume,
    .stop_producing = stdio_lose_connection,
    .register_producer = stdio_register_producer,
    .unregister_producer = stdio_unregister_producer,
    .set_option = stdio_set_option,
    .buffered = stdio_buffered,
    .fd = stdio_fd,
};

/* ----------------------------------------------------------- public */

tw_transport *tw_stdio_transport(tw_stdio *s)
{
    return &s->base;
}

int tw_stdio_flush(tw_stdio *s, double timeout)
{
    if (s->base.state == TW_TRANSPORT_CLOSED || s->out_fd < 0)
        return TW_ECLOSED;
    if (s->out.closed)
        return s->out.err;
    return tw__pipe_flush_sync(&s->out, timeout < 0 ? -1 : (int64_t)(timeout * 1e9));
}

void tw__stdio_reactor_free(tw__procio *st)
{
    for (tw_stdio *s = st->stdios; s; s = s->next) {
        if (s->base.state == TW_TRANSPORT_CLOSED)
            continue;
        int rc = 0;
        if (!s->out.closed && s->out.wq_head) {
            rc = tw__pipe_flush_sync(&s->out, (int64_t)(TW_STDIO_FREE_FLUSH_SECONDS * 1e9));
            if (rc == TW_ETIMEDOUT)
                tw_log(TW_LOG_WARN, "stdio",
                       "reactor freed: %zu bytes of output not taken in %.0f s: dropped",
                       s->out.buffered, TW_STDIO_FREE_FLUSH_SECONDS);
        }
        close_now(s, rc); /* no-op if the flush ended it */
    }
}

/* A finished end that refuses everything: what a missing (or not yet
 * started) end looks like, so the rest needs no special case. */
static void end_none(tw_stdio *s, tw__pipe *end)
{
    memset(end, 0, sizeof *end);
    end->reactor = s->base.reactor;
    end->ops = &none_ops;
    end->owner = s;
    end->fd = -1;
    end->closed = 1;
    tw__io_init(&end->io, -1, 0, NULL);
}

static int start_end(tw_stdio *s, tw__pipe *end, int fd, unsigned flags, const tw__pipe_ops *ops,
                     int *saved)
{
    if (fd < 0)
        return 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (*saved < 0)
        *saved = fl;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int rc = tw__pipe_start(end, s->base.reactor, fd, flags, ops, s);
    if (rc < 0) {
        tw__io_stop(s->base.reactor, &end->io);
        end_none(s, end);
    }
    return rc;
}

int tw_stdio_open(tw_reactor *r, tw_protocol *p, const tw_stdio_options *opts, tw_stdio **out)
{
    if (out)
        *out = NULL;
    if (!p)
        return TW_EINVAL;
    int in_fd = opts ? opts->in_fd : 0;
    int out_fd = opts ? opts->out_fd : 1;
    int rc = 0;
    if ((in_fd < 0 && out_fd < 0) || in_fd == out_fd || (in_fd >= 0 && fcntl(in_fd, F_GETFD) < 0) ||
        (out_fd >= 0 && fcntl(out_fd, F_GETFD) < 0))
        rc = TW_EINVAL;
    tw__procio *st = rc ? NULL : tw__procio_get(r);
    if (!rc && !st)
        rc = TW_ENOMEM;
    if (!rc && st->dying)
        rc = TW_ECLOSED;
    for (tw_stdio *o = st && !rc ? st->stdios : NULL; o; o = o->next)
        if (o->base.state != TW_TRANSPORT_CLOSED &&
            ((in_fd >= 0 && (in_fd == o->in_fd || in_fd == o->out_fd)) ||
             (out_fd >= 0 && (out_fd == o->in_fd || out_fd == o->out_fd))))
            rc = TW_EBUSY;
    tw_stdio *s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && !s)
        rc = TW_ENOMEM;
    if (rc) {
        tw_protocol_free(p);
        return rc;
    }
    tw_transport_init(&s->base, &stdio_ops, r);
    s->base.protocol = p;
    s->st = st;
    s->in_fd = in_fd;
    s->out_fd = out_fd;
    s->in_flags = s->out_flags = -1;
    s->high_water = TW_WRITE_HIGH_WATER;
    s->low_water = TW_WRITE_LOW_WATER;
    s->write_limit = TW_WRITE_LIMIT;
    struct stat a, b;
    if (in_fd >= 0 && out_fd >= 0 && fstat(in_fd, &a) == 0 && fstat(out_fd, &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        s->flags |= STDIO_SHARED;
    /* Read both flags before changing either: they may be one file's. */
    if (in_fd >= 0)
        s->in_flags = fcntl(in_fd, F_GETFL);
    if (out_fd >= 0)
        s->out_flags = fcntl(out_fd, F_GETFL);

    end_none(s, &s->in);
    end_none(s, &s->out);
    if ((rc = start_end(s, &s->in, in_fd, TW__PIPE_READER, &in_ops, &s->in_flags)) < 0 ||
        (rc = start_end(s, &s->out, out_fd, 0, &out_ops, &s->out_flags)) < 0) {
        s->base.state = TW_TRANSPORT_CLOSED; /* quiet hooks */
        tw__pipe_abort(&s->in, 0);
        tw__pipe_abort(&s->out, 0);
        restore_flags(in_fd, &s->in_flags);
        restore_flags(out_fd, &s->out_flags);
        free(s);
        tw_protocol_free(p);
        return rc;
    }
    s->next = st->stdios;
    if (st->stdios)
        st->stdios->prev = s;
    st->stdios = s;
    p->transport = &s->base;
    if (out)
        *out = s;
    if (p->ops->connection_made)
        p->ops->connection_made(p);
    return 0;
}
