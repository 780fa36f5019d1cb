/* reactor_internal.h — what the rest of the library sees of the reactor.
 *
 * Three things live here: the I/O registration every transport embeds
 * (tw__io), the intrusive "run soon" task queue that defers teardown out of
 * a caller's stack, and the backend ops table. */
#ifndef TWIRL_REACTOR_INTERNAL_H
#define TWIRL_REACTOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/reactor.h"

/* --------------------------------------------------------------- I/O */

typedef struct tw__io tw__io;
typedef void (*tw__io_fn)(tw_reactor *r, tw__io *io, unsigned events);

enum {
    /* Edge-capable: the owner reads until a short read, writes until EAGAIN,
     * and after a pause re-reads on its own (tw__io_feed). Under epoll such an
     * io is registered once for everything, edge-triggered, so changing its
     * mask costs no system call. Under poll it behaves level-triggered, so the
     * owner must still keep its mask true (TW_WRITABLE only while output waits,
     * TW_READABLE off while paused). */
    TW__IO_EDGE = 1u << 0,
};

/* Embedded in whatever owns the descriptor. The owner must not free the
 * memory holding a tw__io in the same loop turn in which it was stopped with
 * events possibly pending: free it from a tw__task (which runs after the
 * current event batch). The "instance" bit, flipped at every stop, makes the
 * backend drop events fetched for an earlier registration (nginx's trick). */
struct tw__io {
    int fd;
    int poll_index;     /* poll backend: slot in its arrays, -1 if none */
    uint8_t mask;       /* TW_READABLE | TW_WRITABLE wanted now */
    uint8_t registered; /* backend bookkeeping: what the kernel was told */
    uint8_t flags;      /* TW__IO_EDGE */
    uint8_t instance;   /* flipped at every stop */
    uint8_t fed;        /* on the reactor's feed list */
    uint8_t fed_events;
    /* The callback, by index into a process-wide table (tw__io_init): an
     * idle connection carries a byte instead of a pointer. */
    uint8_t cb;
    tw__io *fed_next;
};

/* cb may be NULL (an io that is never watched). The process knows at most
 * TW__IO_CALLBACKS distinct callbacks; there are a dozen in the library. */
enum { TW__IO_CALLBACKS = 32 };
void tw__io_init(tw__io *io, int fd, unsigned flags, tw__io_fn cb);
/* Sets the wanted events (0 keeps the registration idle). Returns 0 or -errno. */
int tw__io_set(tw_reactor *r, tw__io *io, unsigned mask);
/* Forgets the registration; events already fetched for it are dropped. Does
 * not close the fd. Safe inside any callback. */
void tw__io_stop(tw_reactor *r, tw__io *io);
/* Delivers events to io->cb at the start of the next dispatch, as if the
 * backend had reported them (used to resume reading an edge-triggered fd).
 * Dropped if the io is stopped before then. */
void tw__io_feed(tw_reactor *r, tw__io *io, unsigned events);

/* Called by backends for every event they fetched. tagged is the pointer
 * the backend stored (tw__io_tag); events are TW_* bits already translated. */
void tw__io_ready(tw_reactor *r, uintptr_t tagged, unsigned events);

static inline uintptr_t tw__io_tag(const tw__io *io)
{
    return (uintptr_t)io | io->instance;
}

/* ------------------------------------------------------------ completions */

/* A completion-based operation (io_uring): the memory that receives its
 * result. The owner embeds one per kind of operation in flight and keeps it
 * alive until the operation's last completion has arrived (a multishot
 * operation completes many times; the last has no TW__OP_MORE). */
typedef struct tw__op tw__op;
typedef void (*tw__op_fn)(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags);
struct tw__op {
    tw__op_fn cb;
};

enum {
    TW__OP_MORE = 1u << 0,   /* more completions will come for this operation */
    TW__OP_BUFFER = 1u << 1, /* a provided buffer holds the data: id in bits 16+ */
    TW__OP_NOTIF = 1u << 2,  /* a zero-copy send's notification: its buffer is free */
    TW__OP_SECOND = 1u << 3  /* tagged with tw__op_tag_second */
};

/* The value to store in an SQE's user_data for op. */
static inline uint64_t tw__op_tag(const tw__op *op)
{
    return (uint64_t)(uintptr_t)op | 2u; /* bit 1: a completion, not a poll */
}

/* A second, distinct tag for the same record, so that one tw__op can serve
 * two operations in flight at once; its completions carry TW__OP_SECOND. */
static inline uint64_t tw__op_tag_second(const tw__op *op)
{
    return (uint64_t)(uintptr_t)op | 6u; /* records are pointer-aligned */
}

/* True when the reactor drives sockets by completions (the uring backend);
 * transports then use src/net/uring_stream.c instead of readiness. */
int tw__reactor_completions(const tw_reactor *r);

/* --------------------------------------------------------------- tasks */

/* An intrusive "run soon" entry: fn(task) runs after the current event batch
 * or timer pass, in FIFO order, on the reactor thread. The memory is the
 * caller's (embed it); a task may be posted again once it ran. Posting a task
 * already queued is a no-op. */
typedef struct tw__task tw__task;
typedef void (*tw__task_fn)(tw_reactor *r, tw__task *task);
struct tw__task {
    tw__task *next;
    tw__task_fn fn;
    uint8_t queued;
};

void tw__task_post(tw_reactor *r, tw__task *task, tw__task_fn fn);
/* Removes a queued task (no-op if not queued). O(n) in queued tasks. */
void tw__task_cancel(tw_reactor *r, tw__task *task);

/* ----------------------------------------------------- extension slots */

/* Per-reactor state owned by higher layers (coroutine stack pool, thread
 * pool, resolver...). Each layer gets one slot; tw__reactor_on_free runs its
 * cleanup when the reactor is freed (last registered, first run), after
 * queued cross-thread calls ran and before timers and watchers are dropped. */
enum tw__slot_id {
    TW__SLOT_CORO = 0,
    TW__SLOT_THREADS,
    TW__SLOT_RESOLVER,
    TW__SLOT_DEFERRED,
    TW__SLOT_NET,
    TW__SLOT_TLS,
    TW__SLOT_WEB,
    TW__SLOT_PROCESS,
    TW__SLOT_MAX = 16
};
void **tw__reactor_slot(tw_reactor *r, enum tw__slot_id which);
typedef void (*tw__cleanup_fn)(tw_reactor *r, void *arg);
int tw__reactor_on_free(tw_reactor *r, tw__cleanup_fn fn, void *arg);

/* The reactor's shared read buffer: one per reactor, so an idle connection
 * needs none of its own. Valid until the next read on this reactor. */
enum { TW__RBUF_BYTES = 64 * 1024 };
void *tw__reactor_rbuf(tw_reactor *r);

/* One loop turn, waiting at most timeout_ns (< 0: until something happens),
 * for layers that must let in-flight kernel operations finish while the
 * reactor is being freed. */
int tw__reactor_turn(tw_reactor *r, int64_t timeout_ns);

/* True on the thread that is running (or last ran) the reactor. */
int tw__reactor_on_thread(const tw_reactor *r);

/* ------------------------------------------------------------ backends */

typedef struct tw__backend_ops {
    const char *name;
    int completions; /* sockets are driven by completions (tw__op) */
    int (*init)(tw_reactor *r);
    void (*fini)(tw_reactor *r);
    /* Moves io from io->registered to mask; updates io->registered. */
    int (*watch)(tw_reactor *r, tw__io *io, unsigned mask);
    /* Forgets io (it may already be closed). */
    void (*unwatch)(tw_reactor *r, tw__io *io);
    /* Waits up to timeout_ns (< 0: forever) and reports each event with
     * tw__io_ready. Returns the number of events or -errno (not -EINTR). */
    int (*wait)(tw_reactor *r, int64_t timeout_ns);
} tw__backend_ops;

extern const tw__backend_ops tw__backend_epoll;
extern const tw__backend_ops tw__backend_poll;
#ifdef TWIRL_HAVE_URING
extern const tw__backend_ops tw__backend_uring;
/* 0 if io_uring can drive this reactor here (kernel, sysctl, opcodes), else
 * a negative code naming why not. */
int tw__uring_probe(void);
#endif

/* Backend private data. */
void *tw__reactor_backend_data(tw_reactor *r);
void tw__reactor_set_backend_data(tw_reactor *r, void *data);

/* ------------------------------------------------------------ signals */

/* Process-wide signal plumbing (signal.c): the reactor's wakeup fd gets a
 * write whenever a signal it watches arrives, and the pending bits are read
 * with tw__signal_take. */
typedef struct tw__signal_reg tw__signal_reg;
int tw__signal_register(int wake_fd, tw__signal_reg **out);
void tw__signal_unregister(tw__signal_reg *reg);
int tw__signal_want(tw__signal_reg *reg, int signo, int on);
uint64_t tw__signal_take(tw__signal_reg *reg);

/* ------------------------------------------------------------ timing */

int64_t tw__monotonic_ns(void);

#endif
