/* reactor_impl.h — the reactor's own struct, shared by src/core only. */
#ifndef TWIRL_REACTOR_IMPL_H
#define TWIRL_REACTOR_IMPL_H

#include "core/reactor_internal.h"

/* ------------------------------------------------------------- timers */

enum tw__timer_state {
    TW__TIMER_FREE = 0,
    TW__TIMER_PENDING,
    TW__TIMER_RUNNING,
    TW__TIMER_FIRED,
    TW__TIMER_CANCELLED
};

struct tw__timer_slot {
    int64_t deadline;
    uint64_t seq; /* scheduling order, breaks deadline ties */
    uint64_t gen; /* bumped at every reuse; handles carry it */
    union {
        tw_timer_fn fn;                   /* while pending or running */
        struct tw__timer_slot *next_free; /* on the free list */
    };
    void *arg;
    tw_reactor *reactor;
    uint32_t heap_index;
    uint8_t state;
};

typedef struct tw__heap_entry {
    int64_t deadline;
    struct tw__timer_slot *slot;
} tw__heap_entry;

typedef struct tw__timers {
    tw__heap_entry *heap; /* 4-ary min-heap on (deadline, seq) */
    size_t count, cap;
    struct tw__timer_slot *free_list;
    struct tw__timer_slot **chunks; /* slots live in chunks that never move */
    size_t nchunks, chunks_cap;
    uint64_t next_seq;
} tw__timers;

void tw__timers_init(tw__timers *t);
void tw__timers_fini(tw__timers *t);
/* Runs due timers. With a seq cutoff (real clock) timers scheduled during
 * the pass wait for the next turn; without (fake clock) they run now if due. */
void tw__timers_run(tw_reactor *r, int64_t now, int use_cutoff);
/* Nanoseconds until the first deadline (0 if due, -1 if none). */
int64_t tw__timers_timeout(const tw__timers *t, int64_t now);

/* ---------------------------------------------------- cross-thread calls */

typedef struct tw__xcall {
    tw_call_fn fn;
    void *arg;
} tw__xcall;

typedef struct tw__xqueue {
    pthread_mutex_t lock;
    tw__xcall *items, *spare;
    size_t len, cap, spare_cap;
    int closed;
} tw__xqueue;

/* ------------------------------------------------------------ triggers */

struct tw_trigger {
    tw_trigger *next;
    tw_trigger_fn fn;
    void *arg;
    uint8_t phase, event, removed;
};

typedef struct tw__oneshot {
    tw_call_fn fn;
    void *arg;
} tw__oneshot;

enum tw__run_state {
    TW__IDLE = 0, /* not in tw_reactor_run */
    TW__STARTING, /* firing startup phases */
    TW__RUNNING,
    TW__STOPPING, /* firing shutdown phases */
    TW__STOPPED   /* shutdown done; run returns */
};

struct tw__cleanup {
    tw__cleanup_fn fn;
    void *arg;
};

struct tw_reactor {
    const tw__backend_ops *backend;
    void *backend_data;
    tw__timers timers;

    int64_t now_ns;
    int fake_clock;
    int in_loop; /* inside run or iterate: iterate refuses to nest */
    pthread_t owner;

    /* run-soon tasks and fed io events */
    tw__task *task_head, *task_tail;
    tw__io *fed_head; /* fed for the next turn */
    tw__io *fed_run;  /* being delivered now */

    /* wakeup: eventfd (or the read end of a pipe) plus its write end */
    tw__io wake_io;
    int wake_wfd;
    atomic_int wake_pending;
    tw__xqueue xq;

    /* signals */
    tw__signal_reg *sigreg;
    tw_signal_watcher *sig_watchers;
    tw_signal_mode signal_mode;
    tw_signal_watcher *stop_sig[2];

    /* run state and system events */
    int state;
    int stop_requested;
    int force_stop;
    int phase_event; /* event being fired, -1 if none */
    int phase;       /* phase being fired or waited on */
    int phase_holds;
    tw_trigger *triggers;
    tw__oneshot *when_running;
    size_t when_running_len, when_running_cap;

    void *slots[TW__SLOT_MAX];
    struct tw__cleanup *cleanups;
    size_t ncleanups;

    void *rbuf;
};

/* signal.c: runs the watchers of every signal in bits (bit signo-1). */
void tw__signals_dispatch(tw_reactor *r, uint64_t bits);

#endif
