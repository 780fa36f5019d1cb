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
/* Gives a buffer back to the kernel once its bytes were consumed. */
void tw__uring_buf_recycle(tw_reactor *r, unsigned bid);
/* Registers the buffer ring on first use. Returns 0 or a negative code. */
int tw__uring_bufs_ready(tw_reactor *r);

/* Submits every prepared SQE now (before closing a descriptor they name). */
int tw__uring_submit_now(tw_reactor *r);

#endif
