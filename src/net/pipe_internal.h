/* pipe_internal.h — one end of a pipe (or tty, socket, character device,
 * regular file) read or written without blocking the reactor. Shared by the
 * process transport (the child's pipes) and the standard I/O transport.
 *
 * A reader hands each read to ops->data from the reactor's shared buffer.
 * Pipes and sockets are edge-triggered and read to a short read (the
 * HANGUP rule of stream.c); ttys and character devices read to EAGAIN (a tty
 * in canonical mode returns one line per read, so a short read says
 * nothing). A descriptor the backend cannot watch (a regular file, or
 * /dev/null under epoll) is read with plain reads, a bounded batch per loop
 * turn through tw__io_feed, so a large file never starves the loop.
 *
 * A writer writes at once while nothing is queued and queues only what the
 * kernel refuses (copied, or lent through write_ref), asking for
 * writability only then. A FIFO writer also watches for its reader going
 * away (an error on the write end), so a child that exits is noticed even
 * when nothing is being written. The owner enforces water marks and limits:
 * it reads `buffered` after each write and is told through ops->written
 * whenever a flush made room.
 *
 * The end's memory belongs to its owner, who must free it only from a
 * tw__task (an event for the io may still be pending in the current batch).
 * The descriptor must already be non-blocking; it is closed at the end only
 * with TW__PIPE_OWN_FD. */
#ifndef TWIRL_PIPE_INTERNAL_H
#define TWIRL_PIPE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "net/net_internal.h"

typedef struct tw__pipe tw__pipe;

typedef struct tw__pipe_ops {
    /* Readers: bytes arrived (borrowed for the call). The hook may pause,
     * close or abort this or any other end. */
    void (*data)(tw__pipe *p, const void *data, size_t len);
    /* The end is finished: err 0 for an EOF or a clean close (a writer's
     * queue was flushed), else the -errno that ended it (-EPIPE: the reader
     * went away). Called exactly once, possibly from inside
     * tw__pipe_close/abort/write: the owner should record it and defer what
     * it tells its protocol. The fd is closed (OWN_FD) or left alone. */
    void (*closed)(tw__pipe *p, int err);
    /* Writers: a flush made room (buffered went down). Optional. */
    void (*written)(tw__pipe *p);
} tw__pipe_ops;

enum {
    TW__PIPE_READER = 1u << 0, /* else a writer */
    TW__PIPE_OWN_FD = 1u << 1  /* close the fd when the end finishes */
};

struct tw__pipe {
    tw__io io; /* io.fd is -1 once finished */
    tw_reactor *reactor;
    const tw__pipe_ops *ops;
    void *owner; /* for the owner's hooks */
    tw__wbuf *wq_head, *wq_tail;
    size_t buffered; /* bytes queued, not yet taken by the kernel */
    int fd;          /* the descriptor, kept for the owner after the end */
    int err;         /* what finished it */
    uint8_t flags;
    uint8_t pollable;    /* the backend watches it; else plain reads/writes */
    uint8_t short_read;  /* a short read means drained (pipes, sockets) */
    uint8_t fifo_writer; /* watch READABLE for errors: the reader left */
    uint8_t paused;      /* readers: no reads until resumed */
    uint8_t closing;     /* writers: finish once drained */
    uint8_t closed;      /* finished */
};

/* Starts an end on a non-blocking fd. Readers start reading at once (there
 * is no data hook call inside this function). Returns 0 or -errno from the
 * backend; on failure nothing is registered and the fd is left open. */
int tw__pipe_start(tw__pipe *p, tw_reactor *r, int fd, unsigned flags, const tw__pipe_ops *ops,
                   void *owner);

/* Writers. Send what the kernel takes now and queue the rest. Return 0,
 * TW_ECLOSED once closing or closed, or a negative code when the write
 * failed — the end is then finished (closed hook already called with it):
 * -EPIPE when the reader is gone, TW_ENOMEM. write_ref calls release once
 * the bytes are no longer needed, on every path. */
int tw__pipe_write(tw__pipe *p, const void *data, size_t len);
int tw__pipe_writev(tw__pipe *p, const struct iovec *iov, int iovcnt);
int tw__pipe_write_ref(tw__pipe *p, const void *data, size_t len, tw_free_fn release, void *arg);

/* Readers: stop/restart reading. Data that arrived meanwhile (and an EOF)
 * is read after resume. Safe inside the data hook. */
void tw__pipe_pause(tw__pipe *p);
void tw__pipe_resume(tw__pipe *p);

/* Finishes a reader now, or a writer once its queue is flushed (closed
 * hook with 0). No-op if already closing or closed. */
void tw__pipe_close(tw__pipe *p);
/* Finishes now, dropping queued bytes; the closed hook gets err. */
void tw__pipe_abort(tw__pipe *p, int err);

/* Writers: blocks until the queue is flushed, the end fails, or timeout_ns
 * passes (< 0: no limit). For the end of a program, after the loop
 * stopped. Returns 0, TW_ETIMEDOUT (bytes still queued), or the error that
 * finished the end. */
int tw__pipe_flush_sync(tw__pipe *p, int64_t timeout_ns);

#endif
