/* pipe.c — non-blocking pipe, tty and file ends for the process and
 * standard I/O transports (see pipe_internal.h). The write queue follows
 * stream.c: direct write while nothing is queued, copy only the refused
 * remainder, gather the queue with writev. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/pipe_internal.h"

enum {
    READS_PER_WAKEUP = 16, /* fairness: then yield to the rest of the loop */
    MAX_IOV = 64,
    WBUF_MIN = 4096 /* smallest copied chunk, so small writes coalesce */
};

static inline tw__pipe *pipe_of(tw__io *io)
{
    return (tw__pipe *)((char *)io - offsetof(tw__pipe, io));
}

/* ----------------------------------------------------------- write queue */

static void wbuf_free(tw__wbuf *b)
{
    if (b->release)
        b->release(b->release_arg);
    free(b);
}

static void wq_clear(tw__pipe *p)
{
    tw__wbuf *b = p->wq_head;
    while (b) {
        tw__wbuf *next = b->next;
        wbuf_free(b);
        b = next;
    }
    p->wq_head = p->wq_tail = NULL;
    p->buffered = 0;
}

static void wq_link(tw__pipe *p, tw__wbuf *b)
{
    if (p->wq_tail)
        p->wq_tail->next = b;
    else
        p->wq_head = b;
    p->wq_tail = b;
    p->buffered += b->len;
}

static int wq_append_copy(tw__pipe *p, const char *data, size_t len)
{
    tw__wbuf *tail = p->wq_tail;
    if (tail && !tail->release && tail->room > 0) {
        size_t n = len < tail->room ? len : tail->room;
        memcpy((char *)tail->data + tail->len, data, n);
        tail->len += n;
        tail->room -= n;
        p->buffered += n;
        data += n;
        len -= n;
        if (len == 0)
            return 0;
    }
    size_t cap = len < WBUF_MIN ? WBUF_MIN : len;
    tw__wbuf *b = malloc(sizeof *b + cap);
    if (!b)
        return TW_ENOMEM;
    memcpy(b->inline_data, data, len);
    *b = (tw__wbuf){ NULL, b->inline_data, len, cap - len, NULL, NULL };
    wq_link(p, b);
    return 0;
}

static void wq_consume(tw__pipe *p, size_t n)
{
    p->buffered -= n;
    while (n > 0) {
        tw__wbuf *b = p->wq_head;
        if (n < b->len) {
            b->data += n;
            b->len -= n;
            return;
        }
        n -= b->len;
        p->wq_head = b->next;
        if (!p->wq_head)
            p->wq_tail = NULL;
        wbuf_free(b);
    }
}

/* ----------------------------------------------------------- finishing */

static void finish(tw__pipe *p, int err)
{
    if (p->closed)
        return;
    p->closed = 1;
    p->closing = 0;
    p->err = err;
    tw__io_stop(p->reactor, &p->io);
    wq_clear(p);
    if ((p->flags & TW__PIPE_OWN_FD) && p->io.fd >= 0)
        close(p->io.fd);
    p->io.fd = -1;
    p->ops->closed(p, err);
}

void tw__pipe_abort(tw__pipe *p, int err)
{
    finish(p, err);
}

void tw__pipe_close(tw__pipe *p)
{
    if (p->closed || p->closing)
        return;
    if ((p->flags & TW__PIPE_READER) || !p->wq_head)
        finish(p, 0);
    else
        p->closing = 1;
}

/* ----------------------------------------------------------- writing */

/* Asks to be told when the queue can move. */
static void want_write(tw__pipe *p)
{
    if (p->pollable) {
        if (!(p->io.mask & TW_WRITABLE))
            tw__io_set(p->reactor, &p->io, p->io.mask | TW_WRITABLE);
    } else {
        /* Unwatchable and refusing bytes (rare: a device without poll
         * support): retry next turn rather than block. */
        tw__io_feed(p->reactor, &p->io, TW_WRITABLE);
    }
}

/* Writes the queue until it empties or the kernel refuses. Returns 0,
 * -EAGAIN, or another -errno (the end is then finished). */
static int flush_queue(tw__pipe *p)
{
    while (p->wq_head) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        for (tw__wbuf *b = p->wq_head; b && n < MAX_IOV; b = b->next) {
            iov[n].iov_base = (void *)b->data;
            iov[n].iov_len = b->len;
            n++;
        }
        ssize_t w = writev(p->io.fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return -EAGAIN;
            int err = -errno;
            finish(p, err);
            return err;
        }
        wq_consume(p, (size_t)w); /* short or not: go on until EAGAIN */
    }
    return 0;
}

/* After a flush: stop asking for writability once empty, finish a pending
 * close, tell the owner about the room made. */
static void after_flush(tw__pipe *p, size_t before)
{
    if (p->closed)
        return;
    if (!p->wq_head) {
        if (p->pollable && (p->io.mask & TW_WRITABLE))
            tw__io_set(p->reactor, &p->io, p->io.mask & ~TW_WRITABLE);
        if (p->closing) {
            finish(p, 0);
            return;
        }
    } else {
        want_write(p);
    }
    if (p->buffered < before && p->ops->written)
        p->ops->written(p);
}

/* One direct write of data while nothing is queued: returns the bytes the
 * kernel took (0 on EAGAIN) or -errno. An unwatchable fd (regular file)
 * takes everything or fails, so it is written to the end here. */
static ssize_t write_now(tw__pipe *p, const void *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(p->io.fd, (const char *)data + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        done += (size_t)n; /* short: go on until EAGAIN (edge-triggered) */
    }
    return (ssize_t)done;
}

static int refuse(tw__pipe *p)
{
    return p->closed || p->closing || (p->flags & TW__PIPE_READER) ? TW_ECLOSED : 0;
}

int tw__pipe_write(tw__pipe *p, const void *data, size_t len)
{
    int rc;
    if ((rc = refuse(p)) < 0)
        return rc;
    if (len == 0)
        return 0;
    if (!p->wq_head) {
        ssize_t n = write_now(p, data, len);
        if (n < 0) {
            finish(p, (int)n);
            return (int)n;
        }
        if ((size_t)n == len)
            return 0;
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    if (wq_append_copy(p, data, len) < 0) {
        finish(p, TW_ENOMEM);
        return TW_ENOMEM;
    }
    want_write(p);
    return 0;
}

int tw__pipe_writev(tw__pipe *p, const struct iovec *iov, int iovcnt)
{
    int rc;
    if ((rc = refuse(p)) < 0)
        return rc;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    size_t sent = 0;
    if (!p->wq_head) {
        ssize_t n;
        do
            n = writev(p->io.fd, iov, iovcnt < 1024 ? iovcnt : 1024);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)total)
            return 0;
        if (n < 0) {
            if (errno != EAGAIN) {
                int err = -errno;
                finish(p, err);
                return err;
            }
            n = 0;
        }
        sent = (size_t)n;
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t l = iov[i].iov_len;
        if (sent >= l) {
            sent -= l;
            continue;
        }
        if (wq_append_copy(p, (const char *)iov[i].iov_base + sent, l - sent) < 0) {
            finish(p, TW_ENOMEM);
            return TW_ENOMEM;
        }
        sent = 0;
    }
    /* A short gathered write to an unwatchable fd: push the rest now. */
    if (!p->pollable) {
        size_t before = p->buffered;
        int frc = flush_queue(p);
        if (frc < 0 && frc != -EAGAIN)
            return frc;
        after_flush(p, before);
        return 0;
    }
    want_write(p);
    return 0;
}

int tw__pipe_write_ref(tw__pipe *p, const void *data, size_t len, tw_free_fn release, void *arg)
{
    int rc;
    if ((rc = refuse(p)) < 0) {
        if (release)
            release(arg);
        return rc;
    }
    if (!p->wq_head && len > 0) {
        ssize_t n = write_now(p, data, len);
        if (n < 0) {
            if (release)
                release(arg);
            finish(p, (int)n);
            return (int)n;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    if (len == 0) {
        if (release)
            release(arg);
        return 0;
    }
    /* Small remainders are cheaper copied than tracked. */
    if (len <= 512) {
        rc = wq_append_copy(p, data, len);
        if (release)
            release(arg);
    } else {
        tw__wbuf *b = malloc(sizeof *b);
        if (b) {
            *b = (tw__wbuf){ NULL, data, len, 0, release, arg };
            wq_link(p, b);
            rc = 0;
        } else {
            if (release)
                release(arg);
            rc = TW_ENOMEM;
        }
    }
    if (rc < 0) {
        finish(p, rc);
        return rc;
    }
    want_write(p);
    return 0;
}

int tw__pipe_flush_sync(tw__pipe *p, int64_t timeout_ns)
{
    int64_t deadline = timeout_ns < 0 ? -1 : tw__monotonic_ns() + timeout_ns;
    while (!p->closed && p->wq_head) {
        size_t before = p->buffered;
        int rc = flush_queue(p);
        if (rc == -EAGAIN) {
            int ms = -1;
            if (deadline >= 0) {
                int64_t left = deadline - tw__monotonic_ns();
                if (left <= 0)
                    break;
                ms = (int)((left + 999999) / 1000000);
            }
            struct pollfd pfd = { .fd = p->io.fd, .events = POLLOUT };
            poll(&pfd, 1, ms);
        }
        after_flush(p, before);
    }
    if (p->closed)
        return p->err;
    return p->wq_head ? TW_ETIMEDOUT : 0;
}

/* ----------------------------------------------------------- reading */

static void do_read(tw__pipe *p, unsigned events)
{
    tw_reactor *r = p->reactor;
    char *buf = tw__reactor_rbuf(r);
    if (!buf) {
        finish(p, TW_ENOMEM);
        return;
    }
    for (int budget = READS_PER_WAKEUP; budget > 0; budget--) {
        ssize_t n = read(p->io.fd, buf, TW__RBUF_BYTES);
        if (n > 0) {
            p->ops->data(p, buf, (size_t)n);
            if (p->closed || p->paused)
                return; /* the owner closed or paused us */
            /* A short read from a pipe means it is drained — unless the
             * writer also hung up, whose EOF raises no new edge. */
            if (p->pollable && p->short_read && (size_t)n < TW__RBUF_BYTES && !(events & TW_HANGUP))
                return;
            continue;
        }
        if (n == 0) {
            finish(p, 0);
            return;
        }
        if (errno == EINTR) {
            budget++;
            continue;
        }
        if (errno != EAGAIN)
            finish(p, -errno);
        return;
    }
    /* Budget spent with data left: come back next turn (an edge-triggered
     * fd would not report it again; an unwatchable one never would). */
    tw__io_feed(r, &p->io, TW_READABLE | TW_HANGUP);
}

static void pipe_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw__pipe *p = pipe_of(io);
    if (p->closed)
        return;
    if (!(p->flags & TW__PIPE_READER)) {
        if (p->wq_head && (events & (TW_WRITABLE | TW_ERROR))) {
            size_t before = p->buffered;
            flush_queue(p); /* a failure finishes the end */
            after_flush(p, before);
        } else if (events & TW_ERROR) {
            finish(p, -EPIPE); /* the reading end went away */
        }
        return;
    }
    if (!p->paused && (events & (TW_READABLE | TW_HANGUP | TW_ERROR)))
        do_read(p, events);
}

/* ----------------------------------------------------------- control */

void tw__pipe_pause(tw__pipe *p)
{
    if (p->closed || p->paused)
        return;
    p->paused = 1;
    if (p->pollable)
        tw__io_set(p->reactor, &p->io, p->io.mask & ~TW_READABLE);
}

void tw__pipe_resume(tw__pipe *p)
{
    if (p->closed || !p->paused)
        return;
    p->paused = 0;
    if (p->pollable)
        tw__io_set(p->reactor, &p->io, p->io.mask | TW_READABLE);
    /* Bytes (or an EOF) that arrived while paused raised no new edge. */
    tw__io_feed(p->reactor, &p->io, TW_READABLE | TW_HANGUP);
}

int tw__pipe_start(tw__pipe *p, tw_reactor *r, int fd, unsigned flags, const tw__pipe_ops *ops,
                   void *owner)
{
    memset(p, 0, sizeof *p);
    p->reactor = r;
    p->ops = ops;
    p->owner = owner;
    p->fd = fd;
    p->flags = (uint8_t)flags;
    tw__io_init(&p->io, fd, TW__IO_EDGE, pipe_ready);

    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return -errno;
    int reader = (flags & TW__PIPE_READER) != 0;
    p->pollable = !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
    p->short_read = S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode);
    p->fifo_writer = !reader && S_ISFIFO(sb.st_mode);
    if (p->pollable && (reader || p->fifo_writer)) {
        /* A FIFO writer watches READABLE, which never happens on a write
         * end: what comes is the error when the reader closes. */
        int rc = tw__io_set(r, &p->io, TW_READABLE);
        if (rc == -EPERM)
            p->pollable = 0; /* e.g. /dev/null under epoll */
        else if (rc < 0)
            return rc;
    }
    if (reader && !p->pollable)
        tw__io_feed(r, &p->io, TW_READABLE);
    return 0;
}
