/* stream.c — a TCP or Unix stream connection: Twisted's tcp.Connection.
 *
 * Hot path: a readable event reads into the reactor's shared buffer and
 * hands the bytes to the protocol; a write goes straight to send(2) while
 * nothing is queued, and only what the kernel refuses is copied into the
 * write queue, with write interest asked for only then. Under epoll the fd
 * is registered once, edge-triggered, so neither path makes an epoll_ctl
 * call. A read shorter than the buffer means the socket was drained, so no
 * extra read is spent on EAGAIN.
 *
 * Teardown: closing changes state, stops the io and closes the fd at once,
 * and posts a task; connection_lost runs from that task, outside whatever
 * callback asked for the close, and the memory is freed right after it. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net_internal.h"
#include "twirl/log.h"
#ifdef TWIRL_HAVE_URING
#include "core/uring.h"
#endif

enum {
    READS_PER_WAKEUP = 16, /* fairness: then yield to other connections */
    MAX_IOV = 64,
    WBUF_MIN = 4096, /* smallest copied chunk, so small writes coalesce */
    /* A long queue gets chunks as large as itself, up to this: later writes
     * coalesce into them, so one writev (or one io_uring sendmsg) carries
     * the whole queue however small the writes were. */
    WBUF_BIG = 256 * 1024,
    REF_MIN = 513 /* smaller lent bytes are cheaper copied than tracked */
};

static const tw_transport_ops stream_ops;

static inline tw__conn *conn_of(tw_transport *t)
{
    return (tw__conn *)t;
}

/* ----------------------------------------------------------- write queue */

/* Small copied chunks are recycled through a per-reactor cache: a server
 * whose kernel buffers fill now and then would otherwise malloc and free a
 * chunk per message — and make glibc move the heap top with brk each time. */
static void wbuf_free(tw_reactor *r, tw__wbuf *b)
{
    if (b->release) {
        b->release(b->release_arg);
    } else if (b->cap == WBUF_MIN) {
        tw__net *net = tw__net_get(r);
        if (net && net->wbuf_cached < TW__WBUF_CACHE) {
            b->next = net->wbuf_cache;
            net->wbuf_cache = b;
            net->wbuf_cached++;
            return;
        }
    }
    free(b);
}

static tw__wbuf *wbuf_alloc(tw_reactor *r, size_t cap)
{
    if (cap == WBUF_MIN) {
        tw__net *net = tw__net_get(r);
        if (net && net->wbuf_cache) {
            tw__wbuf *b = net->wbuf_cache;
            net->wbuf_cache = b->next;
            net->wbuf_cached--;
            return b;
        }
    }
    tw__wbuf *b = malloc(sizeof *b + cap);
    if (b)
        b->cap = cap;
    return b;
}

static void wq_clear(tw__conn *c)
{
    tw__wbuf *b = c->wq_head;
    while (b) {
        tw__wbuf *next = b->next;
        wbuf_free(c->base.reactor, b);
        b = next;
    }
    c->wq_head = c->wq_tail = NULL;
    c->buffered = 0;
}

static int wq_append_copy(tw__conn *c, const char *data, size_t len)
{
    tw__wbuf *tail = c->wq_tail;
    if (tail && !tail->release && tail->room > 0) {
        size_t n = len < tail->room ? len : tail->room;
        memcpy((char *)tail->data + tail->len, data, n);
        tail->len += n;
        tail->room -= n;
        c->buffered += n;
        data += n;
        len -= n;
        if (len == 0)
            return 0;
    }
    size_t cap = len < WBUF_MIN ? WBUF_MIN : len;
    size_t grow = c->buffered < WBUF_BIG ? c->buffered : WBUF_BIG;
    if (cap < grow)
        cap = grow;
    tw__wbuf *b = wbuf_alloc(c->base.reactor, cap);
    if (!b)
        return TW_ENOMEM;
    memcpy(b->inline_data, data, len);
    b->next = NULL;
    b->data = b->inline_data;
    b->len = len;
    b->room = cap - len;
    b->release = NULL;
    b->release_arg = NULL;
    if (c->wq_tail)
        c->wq_tail->next = b;
    else
        c->wq_head = b;
    c->wq_tail = b;
    c->buffered += len;
    return 0;
}

static int wq_append_ref(tw__conn *c, const char *data, size_t len, tw_free_fn release, void *arg)
{
    tw__wbuf *b = malloc(sizeof *b);
    if (!b)
        return TW_ENOMEM;
    *b = (tw__wbuf){ NULL, data, len, 0, release, arg, 0 };
    if (c->wq_tail)
        c->wq_tail->next = b;
    else
        c->wq_head = b;
    c->wq_tail = b;
    c->buffered += len;
    return 0;
}

/* Drops n sent bytes from the front of the queue. */
static void wq_consume(tw__conn *c, size_t n)
{
    c->buffered -= n;
    while (n > 0) {
        tw__wbuf *b = c->wq_head;
        if (n < b->len) {
            b->data += n;
            b->len -= n;
            return;
        }
        n -= b->len;
        c->wq_head = b->next;
        if (!c->wq_head)
            c->wq_tail = NULL;
        wbuf_free(c->base.reactor, b);
    }
    /* A fully sent copied chunk at the head is freed; an emptied tail chunk
     * was freed above too, so appends always start a fresh chunk. */
}

/* ----------------------------------------------------------- teardown */

static tw_failure *close_reason(tw__conn *c)
{
    if (c->close_err == 0)
        return tw_failure_new(TW_DOMAIN, TW_ECONNECTION_DONE, "Connection was closed cleanly.");
    tw_failure *cause = tw_failure_from_code(c->close_err);
    return tw_failure_wrap(cause, TW_DOMAIN, TW_ECONNECTION_LOST,
                           "Connection to the other side was lost: %s", tw_strerror(c->close_err));
}

static void teardown(tw_reactor *r, tw__conn *c)
{
    tw_protocol *p = c->base.protocol;
    tw_failure *reason = close_reason(c);

    /* The kernel may still read queued bytes of a completion-driven
     * connection: those wait for its last completion (tw__conn_release). */
    if (!(c->flags & TW__CONN_URING))
        wq_clear(c);
    if (c->producer) {
        tw_producer *prod = c->producer;
        c->producer = NULL;
        if (prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    if (p) {
        if ((c->flags & TW__CONN_MADE) && p->ops->connection_lost)
            p->ops->connection_lost(p, reason);
        p->transport = NULL;
        if (p->ops->destroy)
            p->ops->destroy(p);
        if (!(c->flags & TW__CONN_PROTO_INLINE))
            free(p);
    }
    if (c->connector)
        tw__connector_conn_lost(c->connector, reason);
    tw_failure_unref(reason);
    tw__net_conn_unlink(tw__net_get(r), c);
    c->base.protocol = NULL;
    c->flags |= TW__CONN_TORN_DOWN;
    tw__conn_release(c);
    tw__net_fd_freed(r);
}

static void teardown_closing(tw_reactor *r, tw__task *task)
{
    tw__net *net = (tw__net *)((char *)task - offsetof(tw__net, teardown_task));
    /* A connection_lost may close more: they join the queue and are torn
     * down in this same run. */
    tw__conn *c;
    while ((c = net->closing_head)) {
        net->closing_head = c->closing_next;
        if (!net->closing_head)
            net->closing_tail = NULL;
        c->closing_next = NULL;
        teardown(r, c);
    }
}

void tw__conn_release(tw__conn *c)
{
#ifdef TWIRL_HAVE_URING
    tw__net *net = tw__net_get(c->base.reactor);
    if (c->inflight > 0) {
        /* The kernel still holds operations on it: park it until the last
         * completion calls again (or the reactor's end drains them). */
        if (!(c->flags & TW__CONN_ZOMBIE) && net) {
            c->flags |= TW__CONN_ZOMBIE;
            c->prev = NULL;
            c->next = net->zombies;
            if (net->zombies)
                net->zombies->prev = c;
            net->zombies = c;
        }
        return;
    }
    if ((c->flags & TW__CONN_ZOMBIE) && net) {
        if (c->prev)
            c->prev->next = c->next;
        else
            net->zombies = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
#endif
    wq_clear(c);
    free(c);
}

/* Closes now: no more reads or writes. err is 0 for a clean close or the
 * -errno that ended the connection. */
void tw__conn_close_now(tw__conn *c, int err)
{
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    c->base.state = TW_TRANSPORT_CLOSED;
    c->close_err = (int16_t)(err >= INT16_MIN ? err : TW_ECONNECTION_LOST);
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING)
        tw__uring_conn_close(c); /* cancels, submits, then closes the fd */
    else
#endif
    {
        tw__io_stop(c->base.reactor, &c->io);
        close(c->io.fd);
    }
    c->io.fd = -1;
    /* Torn down from a task, outside whatever callback closed it. One task
     * per reactor serves every closing connection, in order: a connection
     * carries a link, not a task of its own (an idle one stays small). */
    tw__net *net = tw__net_get(c->base.reactor);
    c->closing_next = NULL;
    if (net->closing_tail)
        net->closing_tail->closing_next = c;
    else
        net->closing_head = c;
    net->closing_tail = c;
    tw__task_post(c->base.reactor, &net->teardown_task, teardown_closing);
}

/* ----------------------------------------------------------- writing */

static void producer_check_high(tw__conn *c)
{
    if (c->producer && (c->flags & TW__CONN_PRODUCER_STREAMING) &&
        !(c->flags & TW__CONN_PRODUCER_PAUSED) && c->buffered > c->high_water) {
        c->flags |= TW__CONN_PRODUCER_PAUSED;
        c->producer->ops->pause_producing(c->producer);
    }
}

/* After a write that queued bytes: ask to be told when writable, pause the
 * producer, enforce the limit. */
static int after_queue(tw__conn *c)
{
    if (c->write_limit && c->buffered > c->write_limit) {
        char peer[TW_ADDRESS_TEXT_MAX] = "?";
        tw_address a;
        if (tw_transport_get_peer(&c->base, &a) == 0)
            tw_address_format(&a, peer, sizeof peer);
        tw_log(TW_LOG_WARN, "tcp", "%s: write buffer over its limit (%zu > %u bytes): aborting",
               peer, c->buffered, c->write_limit);
        tw__conn_close_now(c, -ENOBUFS);
        return TW_ELIMIT;
    }
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING)
        tw__uring_conn_kick(c); /* a send goes with the next submission */
    else
#endif
        if (!(c->io.mask & TW_WRITABLE))
        tw__io_set(c->base.reactor, &c->io, c->io.mask | TW_WRITABLE);
    producer_check_high(c);
    return 0;
}

/* The kernel took a whole write at once: a pull producer gets its next turn
 * from the loop (Twisted resumes it whenever the buffer is empty), not
 * only after a queue drains. */
static void pull_again(tw__conn *c)
{
    if (c->producer && !(c->flags & TW__CONN_PRODUCER_STREAMING))
        tw__io_feed(c->base.reactor, &c->io, TW_WRITABLE);
}

static int write_error(tw__conn *c, int err)
{
    tw__conn_close_now(c, -err);
    return -err;
}

/* Whether a copying write goes straight to send(2) before anything is
 * queued. Readiness backends always try. io_uring queues small writes, so
 * that one submission carries every send of the turn, but sends a large
 * one at once: a system call costs less than copying it into the queue. */
static int send_first(const tw__conn *c, size_t len)
{
    if (c->wq_head)
        return 0;
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING)
        return len >= TW__URING_DIRECT_MIN_BYTES;
#endif
    (void)len;
    return 1;
}

static int stream_write(tw_transport *t, const void *data, size_t len)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN ||
        (c->flags & (TW__CONN_WRITE_SHUT | TW__CONN_SHUT_PENDING)))
        return TW_ECLOSED;
    if (len == 0)
        return 0;
#ifdef TWIRL_HAVE_URING
    /* Bytes of the buffer being delivered (an echo, a proxy) are queued by
     * reference and leave with the turn's one submission. */
    void *held;
    if ((c->flags & TW__CONN_URING) && len >= REF_MIN &&
        (held = tw__uring_buf_lend(c->base.reactor, data, len))) {
        if (wq_append_ref(c, data, len, tw__uring_buf_unref, held) < 0) {
            tw__uring_buf_unref(held);
            return write_error(c, ENOMEM);
        }
        return after_queue(c);
    }
#endif
    if (send_first(c, len)) {
        ssize_t n;
        do
            n = send(c->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)len) {
            pull_again(c);
            return 0;
        }
        if (n < 0) {
            if (errno != EAGAIN)
                return write_error(c, errno);
            n = 0;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    if (wq_append_copy(c, data, len) < 0)
        return write_error(c, ENOMEM);
    return after_queue(c);
}

static int stream_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN ||
        (c->flags & (TW__CONN_WRITE_SHUT | TW__CONN_SHUT_PENDING)))
        return TW_ECLOSED;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    size_t sent = 0;
    if (send_first(c, total)) {
        struct msghdr msg = { .msg_iov = (struct iovec *)iov,
                              .msg_iovlen = (size_t)(iovcnt < 1024 ? iovcnt : 1024) };
        ssize_t n;
        do
            n = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)total) {
            pull_again(c);
            return 0;
        }
        if (n < 0) {
            if (errno != EAGAIN)
                return write_error(c, errno);
            n = 0;
        }
        sent = (size_t)n;
    }
    for (int i = 0; i < iovcnt; i++) {
        size_t l = iov[i].iov_len;
        const char *b = iov[i].iov_base;
        if (sent >= l) {
            sent -= l;
            continue;
        }
        if (wq_append_copy(c, b + sent, l - sent) < 0)
            return write_error(c, ENOMEM);
        sent = 0;
    }
    return after_queue(c);
}

static int stream_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                            void *arg)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN ||
        (c->flags & (TW__CONN_WRITE_SHUT | TW__CONN_SHUT_PENDING))) {
        if (release)
            release(arg);
        return TW_ECLOSED;
    }
    if (!c->wq_head && len > 0 && !(c->flags & TW__CONN_URING)) {
        ssize_t n;
        do
            n = send(c->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)len) {
            if (release)
                release(arg);
            pull_again(c);
            return 0;
        }
        if (n < 0) {
            if (errno != EAGAIN) {
                if (release)
                    release(arg);
                return write_error(c, errno);
            }
            n = 0;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    /* Small remainders are cheaper copied than tracked. */
    if (len < REF_MIN) {
        int rc = wq_append_copy(c, data, len);
        if (release)
            release(arg);
        if (rc < 0)
            return write_error(c, ENOMEM);
    } else if (wq_append_ref(c, data, len, release, arg) < 0) {
        if (release)
            release(arg);
        return write_error(c, ENOMEM);
    }
    return after_queue(c);
}

static void shut_write_side(tw__conn *c)
{
    c->flags &= ~TW__CONN_SHUT_PENDING;
    c->flags |= TW__CONN_WRITE_SHUT;
    shutdown(c->io.fd, SHUT_WR);
    if (c->flags & TW__CONN_READ_EOF)
        tw__conn_close_now(c, 0);
}

/* The queue emptied: finish a pending close or half-close, wake producers. */
static void drained(tw__conn *c)
{
    if (!(c->flags & TW__CONN_URING)) /* which never watches its fd */
        tw__io_set(c->base.reactor, &c->io, c->io.mask & ~TW_WRITABLE);
    if (c->base.state == TW_TRANSPORT_DISCONNECTING) {
        tw__conn_close_now(c, 0);
        return;
    }
    if (c->flags & TW__CONN_SHUT_PENDING) {
        shut_write_side(c);
        return;
    }
    if (c->producer && !(c->flags & TW__CONN_PRODUCER_STREAMING))
        c->producer->ops->resume_producing(c->producer);
}

static void flush(tw__conn *c)
{
    while (c->wq_head) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t offered = 0;
        for (tw__wbuf *b = c->wq_head; b && n < MAX_IOV; b = b->next) {
            iov[n].iov_base = (void *)b->data;
            iov[n].iov_len = b->len;
            offered += b->len;
            n++;
        }
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            tw__conn_close_now(c, -errno);
            return;
        }
        wq_consume(c, (size_t)w);
        if ((size_t)w < offered)
            continue; /* try again: stop only on EAGAIN (edge-triggered) */
    }
    tw__conn_sent(c);
}

void tw__conn_consume(tw__conn *c, size_t n)
{
    wq_consume(c, n);
}

void tw__conn_sent(tw__conn *c)
{
    if (c->producer && (c->flags & TW__CONN_PRODUCER_PAUSED) && c->buffered <= c->low_water) {
        c->flags &= ~TW__CONN_PRODUCER_PAUSED;
        c->producer->ops->resume_producing(c->producer);
        if (c->base.state == TW_TRANSPORT_CLOSED)
            return;
    }
    if (!c->wq_head)
        drained(c);
}

/* ----------------------------------------------------------- reading */

void tw__conn_read_eof(tw__conn *c)
{
    c->flags |= TW__CONN_READ_EOF;
    tw__io_set(c->base.reactor, &c->io, c->io.mask & ~TW_READABLE);
    if (c->flags & TW__CONN_WRITE_SHUT) {
        tw__conn_close_now(c, 0);
        return;
    }
    tw_protocol *p = c->base.protocol;
    if (p->ops->eof_received)
        p->ops->eof_received(p);
    else
        tw_transport_lose_connection(&c->base);
}

static void do_read(tw__conn *c, unsigned events)
{
    tw_reactor *r = c->base.reactor;
    char *buf = tw__reactor_rbuf(r);
    if (!buf) {
        tw__conn_close_now(c, -ENOMEM);
        return;
    }
    for (int budget = READS_PER_WAKEUP; budget > 0; budget--) {
        ssize_t n = recv(c->io.fd, buf, TW__RBUF_BYTES, MSG_DONTWAIT);
        if (n > 0) {
            tw_protocol *p = c->base.protocol;
            if (p->ops->data_received)
                p->ops->data_received(p, buf, (size_t)n);
            if (c->base.state != TW_TRANSPORT_OPEN || (c->flags & TW__CONN_PAUSED))
                return; /* the protocol closed or paused us */
            /* A short read means the socket is drained — unless the peer
             * also hung up, whose EOF raises no new edge: read on to it. */
            if ((size_t)n < TW__RBUF_BYTES && !(events & TW_HANGUP))
                return;
            continue;
        }
        if (n == 0) {
            tw__conn_read_eof(c);
            return;
        }
        if (errno == EINTR) {
            budget++;
            continue;
        }
        if (errno != EAGAIN)
            tw__conn_close_now(c, -errno);
        return;
    }
    /* Budget spent with data left: come back next turn (an edge-triggered
     * fd would not report it again), reading to EAGAIN since an EOF may
     * wait behind the data. */
    tw__io_feed(r, &c->io, TW_READABLE | TW_HANGUP);
}

static void conn_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw__conn *c = (tw__conn *)((char *)io - offsetof(tw__conn, io));
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    if (events & TW_WRITABLE) {
        if (c->wq_head) {
            if (!(c->flags & TW__CONN_URING)) /* io_uring sends on its own */
                flush(c);
        } else if (c->producer && !(c->flags & TW__CONN_PRODUCER_STREAMING))
            tw__conn_sent(c); /* a pull producer's turn (fed by a write) */
        if (c->base.state == TW_TRANSPORT_CLOSED)
            return;
    }
    if ((events & (TW_READABLE | TW_ERROR)) &&
        !(c->flags & (TW__CONN_PAUSED | TW__CONN_READ_EOF | TW__CONN_STOPPED)) &&
        c->base.state == TW_TRANSPORT_OPEN) {
        do_read(c, events);
        return;
    }
    if ((events & TW_ERROR) && c->base.state != TW_TRANSPORT_CLOSED) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err)
            tw__conn_close_now(c, -err);
    }
}

/* ----------------------------------------------------------- closing */

static void stream_lose_connection(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN)
        return;
    c->base.state = TW_TRANSPORT_DISCONNECTING;
    /* No more reading (Twisted stops reading too); finish writing. */
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING)
        tw__uring_conn_reading(c);
    else
#endif
        tw__io_set(t->reactor, &c->io, c->io.mask & ~TW_READABLE);
    if (!c->wq_head)
        tw__conn_close_now(c, 0);
}

static void stream_abort_connection(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    /* RST rather than FIN: the peer must not mistake this for a clean end. */
    struct linger lg = { 1, 0 };
    setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    tw__conn_close_now(c, -ECONNABORTED);
}

static int stream_lose_write_connection(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN || (c->flags & TW__CONN_WRITE_SHUT))
        return TW_ECLOSED;
    if (c->wq_head)
        c->flags |= TW__CONN_SHUT_PENDING;
    else
        shut_write_side(c);
    return 0;
}

/* ----------------------------------------------------------- flow control */

static void stream_pause(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    c->flags |= TW__CONN_PAUSED;
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING) {
        tw__uring_conn_reading(c);
        return;
    }
#endif
    tw__io_set(t->reactor, &c->io, c->io.mask & ~TW_READABLE);
}

static void stream_resume(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    if (c->base.state != TW_TRANSPORT_OPEN || !(c->flags & TW__CONN_PAUSED))
        return;
    c->flags &= ~TW__CONN_PAUSED;
    if (c->flags & (TW__CONN_READ_EOF | TW__CONN_STOPPED))
        return;
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING) {
        tw__uring_conn_reading(c);
        return;
    }
#endif
    tw__io_set(t->reactor, &c->io, c->io.mask | TW_READABLE);
    /* Bytes (or an EOF) that arrived while paused raised no new edge: go
     * and read to EAGAIN. */
    tw__io_feed(t->reactor, &c->io, TW_READABLE | TW_HANGUP);
}

static void stream_stop(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    c->flags |= TW__CONN_STOPPED;
    tw_transport_lose_connection(t);
}

static int stream_register_producer(tw_transport *t, tw_producer *p, bool streaming)
{
    tw__conn *c = conn_of(t);
    if (c->producer) {
        tw_log(TW_LOG_ERROR, "tcp", "register_producer: a producer is already registered");
        return TW_EBUSY;
    }
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return TW_ECLOSED;
    c->producer = p;
    c->flags &= ~(TW__CONN_PRODUCER_STREAMING | TW__CONN_PRODUCER_PAUSED);
    if (streaming) {
        c->flags |= TW__CONN_PRODUCER_STREAMING;
        producer_check_high(c);
    } else if (!c->wq_head) {
        p->ops->resume_producing(p);
    }
    return 0;
}

static void stream_unregister_producer(tw_transport *t)
{
    tw__conn *c = conn_of(t);
    c->producer = NULL;
    c->flags &= ~(TW__CONN_PRODUCER_STREAMING | TW__CONN_PRODUCER_PAUSED);
}

/* ----------------------------------------------------------- queries */

void tw__conn_set_peer(tw__conn *c, const tw_address *peer)
{
    c->flags &= ~(TW__CONN_PEER_V4 | TW__CONN_PEER_V6);
    switch (tw_address_family(peer)) {
    case AF_INET:
        c->flags |= TW__CONN_PEER_V4;
        c->peer_port = peer->u.in4.sin_port;
        memcpy(c->peer_ip, &peer->u.in4.sin_addr, 4);
        break;
    case AF_INET6:
        c->flags |= TW__CONN_PEER_V6;
        c->peer_port = peer->u.in6.sin6_port;
        memcpy(c->peer_ip, &peer->u.in6.sin6_addr, 16);
        break;
    }
}

static int stream_get_peer(tw_transport *t, tw_address *out)
{
    tw__conn *c = conn_of(t);
    memset(out, 0, sizeof *out);
    out->socktype = SOCK_STREAM;
    if (c->flags & TW__CONN_PEER_V4) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = c->peer_port;
        memcpy(&out->u.in4.sin_addr, c->peer_ip, 4);
        out->len = sizeof out->u.in4;
        return 0;
    }
    if (c->flags & TW__CONN_PEER_V6) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = c->peer_port;
        memcpy(&out->u.in6.sin6_addr, c->peer_ip, 16);
        out->len = sizeof out->u.in6;
        return 0;
    }
    if (c->io.fd < 0)
        return TW_ECLOSED;
    socklen_t len = sizeof out->u;
    if (getpeername(c->io.fd, &out->u.sa, &len) < 0)
        return -errno;
    out->len = len;
    out->socktype = SOCK_STREAM;
    return 0;
}

static int stream_get_host(tw_transport *t, tw_address *out)
{
    tw__conn *c = conn_of(t);
    memset(out, 0, sizeof *out);
    if (c->io.fd < 0)
        return TW_ECLOSED;
    socklen_t len = sizeof out->u;
    if (getsockname(c->io.fd, &out->u.sa, &len) < 0)
        return -errno;
    out->len = len;
    out->socktype = SOCK_STREAM;
    return 0;
}

static int set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

static int stream_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    tw__conn *c = conn_of(t);
    if (c->io.fd < 0)
        return TW_ECLOSED;
    int tcp = c->flags & TW__CONN_TCP;
    switch (opt) {
    case TW_OPT_TCP_NODELAY:
        return tcp ? set_int_opt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, value != 0) : TW_EINVAL;
    case TW_OPT_TCP_KEEPALIVE:
        if (!tcp)
            return TW_EINVAL;
        if (value > 0) {
            int rc = set_int_opt(c->io.fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)value);
            if (rc < 0)
                return rc;
        }
        return set_int_opt(c->io.fd, SOL_SOCKET, SO_KEEPALIVE, value > 0);
    case TW_OPT_HIGH_WATER:
        if (value < 0 || value > UINT32_MAX)
            return TW_EINVAL;
        c->high_water = (uint32_t)value;
        producer_check_high(c);
        return 0;
    case TW_OPT_LOW_WATER:
        if (value < 0 || value > UINT32_MAX)
            return TW_EINVAL;
        c->low_water = (uint32_t)value;
        return 0;
    case TW_OPT_WRITE_LIMIT:
        if (value < 0 || value > UINT32_MAX)
            return TW_EINVAL;
        c->write_limit = (uint32_t)value;
        return 0;
    case TW_OPT_SNDBUF:
        return set_int_opt(c->io.fd, SOL_SOCKET, SO_SNDBUF, (int)value);
    case TW_OPT_RCVBUF:
        return set_int_opt(c->io.fd, SOL_SOCKET, SO_RCVBUF, (int)value);
    }
    return TW_EINVAL;
}

static size_t stream_buffered(const tw_transport *t)
{
    return ((const tw__conn *)t)->buffered;
}

static int stream_fd(const tw_transport *t)
{
    return ((const tw__conn *)t)->io.fd;
}

static const tw_transport_ops stream_ops = {
    .kind = "tcp",
    .write = stream_write,
    .writev = stream_writev,
    .write_ref = stream_write_ref,
    .lose_connection = stream_lose_connection,
    .abort_connection = stream_abort_connection,
    .lose_write_connection = stream_lose_write_connection,
    .pause_producing = stream_pause,
    .resume_producing = stream_resume,
    .stop_producing = stream_stop,
    .register_producer = stream_register_producer,
    .unregister_producer = stream_unregister_producer,
    .get_peer = stream_get_peer,
    .get_host = stream_get_host,
    .set_option = stream_set_option,
    .buffered = stream_buffered,
    .fd = stream_fd,
};

static const tw_transport_ops unix_ops = {
    .kind = "unix",
    .write = stream_write,
    .writev = stream_writev,
    .write_ref = stream_write_ref,
    .lose_connection = stream_lose_connection,
    .abort_connection = stream_abort_connection,
    .lose_write_connection = stream_lose_write_connection,
    .pause_producing = stream_pause,
    .resume_producing = stream_resume,
    .stop_producing = stream_stop,
    .register_producer = stream_register_producer,
    .unregister_producer = stream_unregister_producer,
    .get_peer = stream_get_peer,
    .get_host = stream_get_host,
    .set_option = stream_set_option,
    .buffered = stream_buffered,
    .fd = stream_fd,
};

/* ----------------------------------------------------------- creation */

/* An idle connection costs this struct and its protocol in one block: the
 * budget is 256 bytes of user space per idle connection on every backend,
 * malloc's header and the poll backend's 16 bytes per descriptor included. */
_Static_assert(sizeof(tw__conn) <= 192, "tw__conn outgrew the idle-connection budget");

static size_t proto_offset(void)
{
    return (sizeof(tw__conn) + 15) & ~(size_t)15;
}

tw__conn *tw__conn_alloc_with_protocol(const tw_protocol_ops *ops, tw_protocol **out)
{
    size_t psize = ops->size > sizeof(tw_protocol) ? ops->size : sizeof(tw_protocol);
    tw__conn *c = calloc(1, proto_offset() + psize);
    if (!c)
        return NULL;
    tw_protocol *p = (tw_protocol *)((char *)c + proto_offset());
    p->ops = ops;
    c->flags = TW__CONN_PROTO_INLINE;
    *out = p;
    return c;
}

tw__conn *tw__conn_new(tw_reactor *r, int fd, int is_tcp, tw_protocol *p, int proto_inline,
                       size_t write_limit, tw_connector *connector)
{
    tw__conn *c;
    tw__net *net = tw__net_get(r); /* where it will be torn down */
    if (!net) {
        close(fd);
        if (proto_inline) {
            if (p->ops->destroy)
                p->ops->destroy(p);
            free((char *)p - proto_offset());
        } else {
            tw_protocol_free(p);
        }
        return NULL;
    }
    if (proto_inline) {
        c = (tw__conn *)((char *)p - proto_offset());
    } else {
        c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            tw_protocol_free(p);
            return NULL;
        }
    }
    tw_transport_init(&c->base, is_tcp ? &stream_ops : &unix_ops, r);
    c->base.protocol = p;
    tw__io_init(&c->io, fd, TW__IO_EDGE, conn_ready);
    c->high_water = TW_WRITE_HIGH_WATER;
    c->low_water = TW_WRITE_LOW_WATER;
    c->write_limit = (uint32_t)(write_limit ? write_limit : TW_WRITE_LIMIT);
    c->connector = connector;
    if (tw__reactor_completions(r))
        c->flags |= TW__CONN_URING;
    if (is_tcp) {
        c->flags |= TW__CONN_TCP;
        set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
    }
    p->transport = &c->base;
    tw__net_conn_link(net, c);
    return c;
}

void tw__conn_start(tw__conn *c)
{
    int rc;
#ifdef TWIRL_HAVE_URING
    if (c->flags & TW__CONN_URING)
        rc = tw__uring_conn_start(c);
    else
#endif
        rc = tw__io_set(c->base.reactor, &c->io, TW_READABLE);
    tw_protocol *p = c->base.protocol;
    if (rc < 0) {
        tw__conn_close_now(c, rc); /* no connection_made, so no connection_lost */
        return;
    }
    c->flags |= TW__CONN_MADE;
    if (p->ops->connection_made)
        p->ops->connection_made(p);
}
