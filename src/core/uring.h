/* uring.h — the io_uring backend's internals, for the few files that drive
 * sockets by completions (src/net/uring_stream.c). Only built where liburing
 * is. */
#ifndef TWIRL_URING_H
#define TWIRL_URING_H

#include <liburing.h>

#include "core/reactor_internal.h"

/* An SQE to fill; its user_data must be set by the caller (tw__op_tag).
 * Submitted with the next wait, or at once if the queue is full. Never
 * NULL: when the kernel will not take more, the loop submits and retries. */
struct io_uring_sqe *tw__uring_sqe(tw_reactor *r);

/* Provided receive buffers: one ring per reactor, shared by every
 * connection, so an idle connection holds no read buffer. */
enum { TW__URING_BUF_GROUP = 1 };
void *tw__uring_buf(tw_reactor *r, unsigned bid);
size_t tw__uring_buf_size(tw_reactor *r);
/* A received buffer stays out of the kernel's ring while anything refers to
 * it: the delivery of its bytes holds it (tw__uring_buf_hold, then
 * tw__uring_buf_unref once the protocol returns), and so does each queued
 * write that points into it (tw__uring_buf_lend), so that a protocol which
 * writes back what it was given (an echo, a proxy) is sent from the
 * buffer itself instead of a copy. The last reference gives it back. */
void *tw__uring_buf_hold(tw_reactor *r, unsigned bid);
void tw__uring_buf_unref(void *held);
/* When [data, data+len) lies in a held buffer and lending leaves the ring
 * enough buffers, takes one more reference and returns it (release it with
 * tw__uring_buf_unref); otherwise NULL, and the caller copies. */
void *tw__uring_buf_lend(tw_reactor *r, const void *data, size_t len);
/* Registers the buffer ring on first use. Returns 0 or a negative code. */
int tw__uring_bufs_ready(tw_reactor *r);

/* Submits every prepared SQE now (before closing a descriptor they name). */
int tw__uring_submit_now(tw_reactor *r);

/* What this reactor's ring can do beyond the basics the backend needs. */
enum {
    TW__URING_ACCEPT_MULTI = 1u << 0, /* multishot accept (Linux 5.19) */
    TW__URING_SEND_ZC = 1u << 1       /* IORING_OP_SEND_ZC (Linux 6.0) */
};
unsigned tw__uring_features(tw_reactor *r);
/* Stops using a feature: the kernel refused it after all, or a test wants
 * the fallback path. Takes effect for operations started afterwards. */
void tw__uring_feature_off(tw_reactor *r, unsigned feature);

/* When stream sockets send zero-copy (uring_stream.c): AUTO to peers on
 * other hosts only, ALWAYS (loopback too), NEVER. The default comes from
 * $TWIRL_URING_SEND_ZC; tests and benchmarks set it per reactor. */
enum tw__uring_zc { TW__URING_ZC_AUTO = 0, TW__URING_ZC_ALWAYS, TW__URING_ZC_NEVER };
int tw__uring_send_zc_mode(tw_reactor *r);
void tw__uring_set_send_zc_mode(tw_reactor *r, int mode);

/* Writes of a single queued chunk this large or larger go out with SEND_ZC
 * where allowed (never to loopback by default: it does not pay there, see
 * uring_stream.c). Below it the page pinning and the second completion (the
 * notification) are a fixed cost per send that copying a few KiB does not
 * reach. Not tuned on a real NIC: tune it with bench/bench_send_zc.c's
 * method against a remote receiver. */
enum { TW__URING_ZC_MIN_BYTES = 16 * 1024 };

/* A copying write at least this large goes to send(2) at once when nothing
 * is queued before it (stream.c); smaller ones wait for the submission. */
enum { TW__URING_DIRECT_MIN_BYTES = 16 * 1024 };

#endif
