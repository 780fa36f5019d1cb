/* uring_stream.c — stream connections driven by io_uring completions.
 *
 * Reading: one multishot receive per connection picks buffers from the
 * reactor's shared ring; each completion is handed to the protocol and the
 * buffer goes back when it returns, or, when the protocol wrote those very
 * bytes (an echo, a proxy), when the send that carries them completes
 * (stream.c queues them by reference). Pausing cancels the receive; bytes
 * that were already on their way are kept (stash) and delivered on resume.
 * Writing: writes are queued (stream.c) and one send per connection is kept
 * in flight, taking every queued chunk (a sendmsg over up to 64 of them)
 * when there are several; every send prepared during a loop turn reaches
 * the kernel with the single io_uring_enter that also waits for the next
 * completions.
 * Zero-copy: a queued chunk of TW__URING_ZC_MIN_BYTES or more may go out
 * with SEND_ZC, where the kernel takes the pages instead of copying them.
 * Its first completion says how much was sent; the kernel lets go of the
 * pages only at a second one, the notification, so the chunk leaves the
 * queue at the first and is freed (or its release called) at the second.
 * Each such send has its own record (tw__zc_send), since notifications
 * need not come in order; the connection counts them as in flight and so
 * outlives them. Where it pays: not on loopback, where the receiving side
 * copies the pinned pages anyway. bench/bench_send_zc.c (Linux 6.18, 2-CPU
 * VM, 127.0.0.1, lent writes, three runs) measured zero-copy at 0.7-0.8x
 * the plain throughput for 16 KiB writes (1.3-1.6 against 1.7-2.2 GB/s)
 * with 30% more CPU per byte, 0.4-0.5x for 8 MiB writes (2.1 against
 * 5.0 GB/s, 0.26 against 0.20 s of CPU per GiB), and at best a tie in
 * between. So TW__URING_ZC_AUTO keeps it for peers on other hosts, where
 * the NIC reads the pages itself and the copy is really saved; the
 * threshold there is untested on a real NIC (none here).
 * Closing: outstanding operations are cancelled and submitted before the fd
 * is closed, so no queued SQE can name a reused descriptor; the memory stays
 * until the last completion (inflight). */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/uring.h"
#include "net/net_internal.h"
#include "twirl/log.h"

#define CONN_OF(op, field) ((tw__conn *)((char *)(op)-offsetof(tw__conn, field)))

static void op_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags);

static int wants_reading(const tw__conn *c)
{
    return c->base.state == TW_TRANSPORT_OPEN &&
           !(c->flags & (TW__CONN_PAUSED | TW__CONN_READ_EOF | TW__CONN_STOPPED));
}

static void arm_recv(tw__conn *c)
{
    tw_reactor *r = c->base.reactor;
    struct io_uring_sqe *sqe = tw__uring_sqe(r);
    io_uring_prep_recv_multishot(sqe, c->io.fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = TW__URING_BUF_GROUP;
    io_uring_sqe_set_data64(sqe, tw__op_tag(&c->op));
    c->flags |= TW__CONN_RECV_ARMED;
    c->flags &= ~TW__CONN_RECV_CANCEL;
    c->inflight++;
}

static void cancel_op(tw__conn *c, uint64_t tag)
{
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_cancel64(sqe, tag, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

/* Keeps bytes that arrived after a pause (they were already on their way). */
static void stash(tw__conn *c, const char *data, size_t len)
{
    tw__wbuf *b = malloc(sizeof *b + len);
    if (!b) {
        tw__conn_close_now(c, -ENOMEM);
        return;
    }
    memcpy(b->inline_data, data, len);
    *b = (tw__wbuf){ NULL, b->inline_data, len, 0, NULL, NULL, len };
    tw__wbuf **tail = &c->stash;
    while (*tail)
        tail = &(*tail)->next;
    *tail = b;
}

static void deliver(tw__conn *c, const char *data, size_t len)
{
    tw_protocol *p = c->base.protocol;
    if (p->ops->data_received)
        p->ops->data_received(p, data, len);
}

/* Hands stashed bytes over while the protocol keeps reading. */
static void drain_stash(tw__conn *c)
{
    while (c->stash && wants_reading(c)) {
        tw__wbuf *b = c->stash;
        c->stash = b->next;
        deliver(c, b->data, b->len);
        free(b);
    }
}

static void free_stash(tw__conn *c)
{
    while (c->stash) {
        tw__wbuf *b = c->stash;
        c->stash = b->next;
        free(b);
    }
}

static void recv_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    tw__conn *c = CONN_OF(op, op);
    int last = !(flags & TW__OP_MORE);
    if (last) {
        c->flags &= ~(TW__CONN_RECV_ARMED | TW__CONN_RECV_CANCEL);
        c->inflight--;
    }
    if (flags & TW__OP_BUFFER) {
        void *held = tw__uring_buf_hold(r, flags >> 16);
        if (res > 0 && c->base.state == TW_TRANSPORT_OPEN &&
            !(c->flags & (TW__CONN_READ_EOF | TW__CONN_STOPPED))) {
            const char *data = tw__uring_buf(r, flags >> 16);
            if (wants_reading(c) && !c->stash) {
                deliver(c, data, (size_t)res);
            } else {
                stash(c, data, (size_t)res);
                drain_stash(c);
            }
        }
        tw__uring_buf_unref(held); /* unless a write still points into it */
    }
    if (c->flags & TW__CONN_TORN_DOWN) {
        tw__conn_release(c); /* frees when nothing else is due */
        return;
    }
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    if (res == 0) {
        if (!(c->flags & TW__CONN_PAUSED)) {
            tw__conn_read_eof(c);
            return;
        }
        /* An EOF while paused waits, like the bytes before it: mark it so
         * resume delivers the stash first. */
        c->flags |= TW__CONN_READ_EOF_PENDING;
        return;
    }
    if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
        tw__conn_close_now(c, res);
        return;
    }
    /* Rearm when the multishot ended on its own (out of buffers, or the
     * kernel decided to stop) and the protocol still reads. */
    if (last && wants_reading(c) && !(c->flags & TW__CONN_RECV_ARMED))
        arm_recv(c);
}

int tw__uring_conn_start(tw__conn *c)
{
    c->op.cb = op_done; /* before any send can be queued */
    int rc = tw__uring_bufs_ready(c->base.reactor);
    if (rc < 0)
        return rc;
    arm_recv(c);
    return 0;
}

void tw__uring_conn_reading(tw__conn *c)
{
    if (wants_reading(c)) {
        drain_stash(c);
        if (c->base.state != TW_TRANSPORT_OPEN || !wants_reading(c))
            return;
        if (c->flags & TW__CONN_READ_EOF_PENDING) {
            c->flags &= ~TW__CONN_READ_EOF_PENDING;
            tw__conn_read_eof(c);
            return;
        }
        if (!(c->flags & TW__CONN_RECV_ARMED))
            arm_recv(c);
        /* armed with a cancel on its way: recv_done rearms when it lands */
        return;
    }
    if ((c->flags & TW__CONN_RECV_ARMED) && !(c->flags & TW__CONN_RECV_CANCEL)) {
        cancel_op(c, tw__op_tag(&c->op));
        c->flags |= TW__CONN_RECV_CANCEL;
    }
}

/* One send's result is in and its operation is over; consumed says
 * whether its bytes already left the queue (a zero-copy send's did). */
static void after_send(tw__conn *c, int32_t res, int consumed)
{
    if (c->flags & TW__CONN_TORN_DOWN) {
        tw__conn_release(c); /* frees when nothing else is due */
        return;
    }
    if (c->base.state == TW_TRANSPORT_CLOSED)
        return;
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) {
            tw__uring_conn_kick(c);
            return;
        }
        tw__conn_close_now(c, res);
        return;
    }
    if (!consumed)
        tw__conn_consume(c, (size_t)res);
    if (c->wq_head)
        tw__uring_conn_kick(c);
    tw__conn_sent(c);
}

static void send_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    tw__conn *c = CONN_OF(op, op);
    c->flags &= ~TW__CONN_SEND_INFLIGHT;
    c->inflight--;
    after_send(c, res, 0);
}

/* The connection's one operation record serves its receive and, under a
 * second tag, its plain send. */
static void op_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    if (flags & TW__OP_SECOND)
        send_done(r, op, res, flags);
    else
        recv_done(r, op, res, flags);
}

/* ------------------------------------------------------------ zero-copy */

/* One zero-copy send, from its submission to its notification. */
typedef struct tw__zc_send {
    tw__op op;
    tw__conn *c;
    tw__wbuf *chunk; /* the queue's head while sending; ours after the result */
    size_t len;      /* bytes offered */
} zc_send;

/* Chunks this large are never the small ones the reactor caches. */
static void zc_free(zc_send *z)
{
    tw__wbuf *b = z->chunk;
    if (b->release)
        b->release(b->release_arg);
    free(b);
    free(z);
}

/* Puts bytes the kernel did not take back at the head of the queue, in a
 * chunk of their own (the old one belongs to the notification now). Rare:
 * MSG_WAITALL makes the kernel send everything unless it fails. */
static int requeue(tw__conn *c, const char *data, size_t len)
{
    tw__wbuf *b = malloc(sizeof *b + len);
    if (!b)
        return TW_ENOMEM;
    memcpy(b->inline_data, data, len);
    *b = (tw__wbuf){ c->wq_head, b->inline_data, len, 0, NULL, NULL, len };
    if (!c->wq_head)
        c->wq_tail = b;
    c->wq_head = b;
    c->buffered += len;
    return 0;
}

static void zc_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    zc_send *z = (zc_send *)op;
    tw__conn *c = z->c;
    if (flags & TW__OP_NOTIF) {
        /* The kernel let go of the pages. */
        zc_free(z);
        c->inflight--;
        if (c->flags & TW__CONN_TORN_DOWN)
            tw__conn_release(c);
        return;
    }
    c->send_rec = NULL;
    c->flags &= ~TW__CONN_SEND_INFLIGHT;
    if (res == -EOPNOTSUPP) {
        c->flags &= ~TW__CONN_ZC; /* not for this socket: send plainly */
        res = -EAGAIN;
    }
    if (!(flags & TW__OP_MORE)) {
        /* No notification follows (the send failed before taking any
         * page): the chunk is still the queue's, like a plain send's. */
        free(z);
        c->inflight--;
        after_send(c, res, 0);
        return;
    }
    /* The notification is still due (it stays counted in inflight): the
     * chunk leaves the queue now and is freed then. */
    tw__wbuf *b = z->chunk;
    assert(c->wq_head == b); /* one send in flight, and only sends consume */
    c->wq_head = b->next;
    if (!c->wq_head)
        c->wq_tail = NULL;
    b->next = NULL;
    c->buffered -= b->len;
    size_t sent = res > 0 ? (size_t)res : 0;
    int keep = res >= 0 || res == -EINTR || res == -EAGAIN;
    if (sent < z->len && keep && c->base.state != TW_TRANSPORT_CLOSED &&
        requeue(c, b->data + sent, z->len - sent) < 0)
        res = -ENOMEM;
    after_send(c, res, 1);
}

static int peer_is_local(tw__conn *c)
{
    tw_address peer, host;
    if (tw_transport_get_peer(&c->base, &peer) < 0 || tw_transport_get_host(&c->base, &host) < 0)
        return 1; /* unknown: the plain send is the safe choice */
    if (tw_address_is_loopback(&peer))
        return 1;
    /* One of our own addresses: the same host, whatever the interface. */
    if (tw_address_family(&peer) == AF_INET && tw_address_family(&host) == AF_INET)
        return peer.u.in4.sin_addr.s_addr == host.u.in4.sin_addr.s_addr;
    if (tw_address_family(&peer) == AF_INET6 && tw_address_family(&host) == AF_INET6)
        return memcmp(&peer.u.in6.sin6_addr, &host.u.in6.sin6_addr, 16) == 0;
    return tw_address_family(&peer) != AF_INET && tw_address_family(&peer) != AF_INET6;
}

/* Decided once per connection, at its first large write: the peer's
 * address does not change. */
static int zc_allowed(tw__conn *c)
{
    if (!(c->flags & TW__CONN_ZC_CHECKED)) {
        tw_reactor *r = c->base.reactor;
        int mode = tw__uring_send_zc_mode(r);
        c->flags |= TW__CONN_ZC_CHECKED;
        if ((c->flags & TW__CONN_TCP) && (tw__uring_features(r) & TW__URING_SEND_ZC) &&
            mode != TW__URING_ZC_NEVER && (mode == TW__URING_ZC_ALWAYS || !peer_is_local(c)))
            c->flags |= TW__CONN_ZC;
    }
    return (c->flags & TW__CONN_ZC) != 0;
}

static int send_zc(tw__conn *c, tw__wbuf *b)
{
    zc_send *z = malloc(sizeof *z);
    if (!z)
        return TW_ENOMEM; /* the plain send will do */
    z->op.cb = zc_done;
    z->c = c;
    z->chunk = b;
    z->len = b->len;
    b->room = 0; /* nothing may be appended to a chunk the kernel reads */
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_send_zc(sqe, c->io.fd, b->data, b->len, MSG_NOSIGNAL | MSG_WAITALL, 0);
    io_uring_sqe_set_data64(sqe, tw__op_tag(&z->op));
    c->send_rec = &z->op;
    c->flags |= TW__CONN_SEND_INFLIGHT;
    c->inflight++;
    return 0;
}

/* A send's length is 32 bits: longer chunks go out in pieces. */
enum { SEND_MAX_BYTES = 1u << 30 };

/* ------------------------------------------------------------ gathered */

/* When several chunks are queued, one sendmsg takes up to GATHER_MAX of
 * them, as writev does on the readiness backends. Sending only the head
 * chunk per loop turn let a peer that writes while it reads fill the queue
 * faster than it drained: a turn can bring in many receive completions,
 * each adding a chunk. The iovec must live until the completion, so it has
 * a record of its own (the connection points at it to cancel it). */
enum { GATHER_MAX = 64 };

typedef struct gather_send {
    tw__op op;
    tw__conn *c;
    struct msghdr msg;
    struct iovec iov[GATHER_MAX];
} gather_send;

static void gather_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    gather_send *g = (gather_send *)op;
    tw__conn *c = g->c;
    free(g);
    c->send_rec = NULL;
    c->flags &= ~TW__CONN_SEND_INFLIGHT;
    c->inflight--;
    after_send(c, res, 0);
}

static int send_gathered(tw__conn *c)
{
    gather_send *g = malloc(sizeof *g);
    if (!g)
        return TW_ENOMEM; /* the plain send will do */
    size_t n = 0, total = 0;
    for (tw__wbuf *b = c->wq_head; b && n < GATHER_MAX && total + b->len <= SEND_MAX_BYTES;
         b = b->next) {
        g->iov[n++] = (struct iovec){ (void *)b->data, b->len };
        total += b->len;
    }
    g->op.cb = gather_done;
    g->c = c;
    g->msg = (struct msghdr){ .msg_iov = g->iov, .msg_iovlen = n };
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_sendmsg(sqe, c->io.fd, &g->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tw__op_tag(&g->op));
    c->send_rec = &g->op;
    c->flags |= TW__CONN_SEND_INFLIGHT;
    c->inflight++;
    return 0;
}

void tw__uring_conn_kick(tw__conn *c)
{
    if ((c->flags & TW__CONN_SEND_INFLIGHT) || !c->wq_head || c->base.state == TW_TRANSPORT_CLOSED)
        return;
    tw__wbuf *b = c->wq_head;
    if (b->len >= TW__URING_ZC_MIN_BYTES && b->len <= SEND_MAX_BYTES && zc_allowed(c) &&
        send_zc(c, b) == 0)
        return;
    if (b->next && b->len < SEND_MAX_BYTES && send_gathered(c) == 0)
        return;
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_send(sqe, c->io.fd, b->data, b->len < SEND_MAX_BYTES ? b->len : SEND_MAX_BYTES,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tw__op_tag_second(&c->op));
    c->flags |= TW__CONN_SEND_INFLIGHT;
    c->inflight++;
}

void tw__uring_conn_close(tw__conn *c)
{
    tw_reactor *r = c->base.reactor;
    if (c->flags & TW__CONN_RECV_ARMED)
        cancel_op(c, tw__op_tag(&c->op));
    if (c->flags & TW__CONN_SEND_INFLIGHT)
        cancel_op(c, c->send_rec ? tw__op_tag(c->send_rec) : tw__op_tag_second(&c->op));
    free_stash(c);
    /* Hand every prepared SQE to the kernel while the fd still names this
     * socket; then the number may be reused safely. */
    tw__uring_submit_now(r);
    close(c->io.fd);
}
