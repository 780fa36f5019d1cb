/* uring_stream.c — stream connections driven by io_uring completions.
 *
 * Reading: one multishot receive per connection picks buffers from the
 * reactor's shared ring; each completion is handed to the protocol and the
 * buffer goes straight back. Pausing cancels the receive; bytes that were
 * already on their way are kept (stash) and delivered on resume.
 * Writing: writes are queued (stream.c) and one send per connection is kept
 * in flight; every send prepared during a loop turn reaches the kernel with
 * the single io_uring_enter that also waits for the next completions.
 * Closing: outstanding operations are cancelled and submitted before the fd
 * is closed, so no queued SQE can name a reused descriptor; the memory stays
 * until the last completion (inflight). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/uring.h"
#include "net/net_internal.h"
#include "twirl/log.h"

#define CONN_OF(op, field) ((tw__conn *)((char *)(op)-offsetof(tw__conn, field)))

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
    io_uring_sqe_set_data64(sqe, tw__op_tag(&c->recv_op));
    c->flags |= TW__CONN_RECV_ARMED;
    c->flags &= ~TW__CONN_RECV_CANCEL;
    c->inflight++;
}

static void cancel_op(tw__conn *c, tw__op *op)
{
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_cancel64(sqe, tw__op_tag(op), 0);
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
    tw__conn *c = CONN_OF(op, recv_op);
    int last = !(flags & TW__OP_MORE);
    if (last) {
        c->flags &= ~(TW__CONN_RECV_ARMED | TW__CONN_RECV_CANCEL);
        c->inflight--;
    }
    if (flags & TW__OP_BUFFER) {
        unsigned bid = flags >> 16;
        if (res > 0 && c->base.state == TW_TRANSPORT_OPEN &&
            !(c->flags & (TW__CONN_READ_EOF | TW__CONN_STOPPED))) {
            const char *data = tw__uring_buf(r, bid);
            if (wants_reading(c) && !c->stash) {
                deliver(c, data, (size_t)res);
            } else {
                stash(c, data, (size_t)res);
                drain_stash(c);
            }
        }
        tw__uring_buf_recycle(r, bid);
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
    int rc = tw__uring_bufs_ready(c->base.reactor);
    if (rc < 0)
        return rc;
    c->recv_op.cb = recv_done;
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
        cancel_op(c, &c->recv_op);
        c->flags |= TW__CONN_RECV_CANCEL;
    }
}

static void send_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    tw__conn *c = CONN_OF(op, send_op);
    c->flags &= ~TW__CONN_SEND_INFLIGHT;
    c->inflight--;
    if (c->flags & TW__CONN_TORN_DOWN) {
        tw__conn_release(c);
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
    tw__conn_consume(c, (size_t)res);
    if (c->wq_head)
        tw__uring_conn_kick(c);
    tw__conn_sent(c);
}

void tw__uring_conn_kick(tw__conn *c)
{
    if ((c->flags & TW__CONN_SEND_INFLIGHT) || !c->wq_head || c->base.state == TW_TRANSPORT_CLOSED)
        return;
    tw__wbuf *b = c->wq_head;
    struct io_uring_sqe *sqe = tw__uring_sqe(c->base.reactor);
    io_uring_prep_send(sqe, c->io.fd, b->data, b->len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tw__op_tag(&c->send_op));
    c->send_op.cb = send_done;
    c->flags |= TW__CONN_SEND_INFLIGHT;
    c->inflight++;
}

void tw__uring_conn_close(tw__conn *c)
{
    tw_reactor *r = c->base.reactor;
    if (c->flags & TW__CONN_RECV_ARMED)
        cancel_op(c, &c->recv_op);
    if (c->flags & TW__CONN_SEND_INFLIGHT)
        cancel_op(c, &c->send_op);
    free_stash(c);
    /* Hand every prepared SQE to the kernel while the fd still names this
     * socket; then the number may be reused safely. */
    tw__uring_submit_now(r);
    close(c->io.fd);
}
