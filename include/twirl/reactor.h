/* twirl/reactor.h — the event loop: I/O readiness, timers, cross-thread
 * calls, signals and system event triggers.
 *
 * A reactor belongs to the thread that runs it; there is no global reactor.
 * Everything here must be called on that thread, except
 * tw_call_from_thread(), which any thread may call at any time while the
 * reactor exists. Every function documented "safe inside a callback" may be
 * called from any callback the reactor makes, including one about the very
 * object being changed. */
#ifndef TWIRL_REACTOR_H
#define TWIRL_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_reactor tw_reactor;

/* ------------------------------------------------------------------ reactor */

typedef enum tw_signal_mode {
    TW_SIGNALS_AUTO = 0, /* on when the reactor is created on the process's main thread */
    TW_SIGNALS_ON,       /* SIGINT and SIGTERM stop this reactor while it runs */
    TW_SIGNALS_OFF
} tw_signal_mode;

typedef enum tw_clock_kind {
    TW_CLOCK_MONOTONIC = 0, /* CLOCK_MONOTONIC */
    TW_CLOCK_FAKE           /* starts at 0; moves only by tw_clock_advance() */
} tw_clock_kind;

typedef struct tw_reactor_options {
    /* "epoll", "poll" (or, where built, "uring"). NULL means $TWIRL_REACTOR,
     * else the best available backend. */
    const char *backend;
    tw_signal_mode signals;
    tw_clock_kind clock;
} tw_reactor_options;

/* Creates a reactor. opts may be NULL for the defaults; it is borrowed for the
 * call. On success stores a reactor the caller owns (free it with
 * tw_reactor_free) and returns 0; otherwise returns TW_EBACKEND for an unknown
 * backend name, TW_ENOMEM, or -errno from the system.
 *
 * The first reactor in a process sets SIGPIPE to SIG_IGN if it is SIG_DFL, so
 * that writing to a closed socket or pipe is an error code, never a death. */
int tw_reactor_new(const tw_reactor_options *opts, tw_reactor **out);

/* Frees the reactor. It must not be running. Cross-thread calls still queued
 * are run first (so their arguments are not leaked); then the layers above
 * let go of what is attached: listening ports are closed, connection
 * attempts fail, and open connections are aborted — their protocols get
 * connection_lost (reason: aborted) and destroy, so nothing leaks; child
 * processes still running are killed and reaped, with their hooks. Finally
 * timers, watchers and triggers are dropped without being called. Handles
 * into the reactor (timers, watchers, ports) must not be used afterwards.
 * NULL is a no-op. */
void tw_reactor_free(tw_reactor *r);

/* Runs the loop until tw_reactor_stop() completes the shutdown. Fires the
 * startup triggers and tw_call_when_running() calls first. Returns 0, or
 * TW_EBUSY if the reactor is already running, or a negative code if the
 * backend fails. A reactor may be run again after it returns. */
int tw_reactor_run(tw_reactor *r);

/* Begins a graceful shutdown of a running reactor: fires the "before" shutdown
 * triggers, waits while any phase is held (tw_reactor_hold_phase), fires
 * "during" and "after", and then tw_reactor_run() returns. I/O and timers keep
 * running while the shutdown waits. Safe inside a callback. Returns
 * TW_ENOTRUNNING if the reactor is not running, TW_EALREADY_CALLED if a
 * shutdown is already under way. */
int tw_reactor_stop(tw_reactor *r);

/* Runs one turn of the loop: waits up to timeout seconds for I/O (0: do not
 * wait; negative: wait until something happens), then runs every I/O
 * callback, due timer and cross-thread call. Does not fire system event
 * triggers. Returns 0, TW_EBUSY inside tw_reactor_run's own callbacks, or a
 * negative code from the backend. */
int tw_reactor_iterate(tw_reactor *r, double timeout);

/* The reactor's clock: seconds (or nanoseconds) since an arbitrary start. The
 * value is read once per loop turn and after waiting, so callbacks in the
 * same turn see the same time. With TW_CLOCK_FAKE it is the fake time. */
double tw_reactor_now(const tw_reactor *r);
int64_t tw_reactor_now_ns(const tw_reactor *r);

/* Re-reads the clock now (a long callback may want fresh time). */
void tw_reactor_update_time(tw_reactor *r);

/* The backend's name: "epoll", "poll", ... A static string. */
const char *tw_reactor_backend(const tw_reactor *r);

bool tw_reactor_running(const tw_reactor *r);

/* ------------------------------------------------------------------- timers */

typedef void (*tw_timer_fn)(void *arg);

/* A timer handle: a small value, cheap to copy and store. Twisted's
 * DelayedCall. The zero value (TW_TIMER_NONE) is "no timer": every function
 * below accepts it and treats it as inactive. A handle stays safe to use after
 * its timer ran or was cancelled — the reactor recognises a stale handle —
 * but not after the reactor is freed. */
typedef struct tw_timer {
    struct tw__timer_slot *slot;
    uint64_t gen;
} tw_timer;

#define TW_TIMER_NONE ((tw_timer){ 0, 0 })

/* Schedules fn(arg) after delay seconds (negative counts as 0). Timers fire in
 * deadline order; equal deadlines fire in the order they were scheduled. arg
 * is borrowed: the reactor never frees it. Safe inside a callback. Returns
 * TW_TIMER_NONE (inactive) when out of memory. O(log n). */
tw_timer tw_call_later(tw_reactor *r, double delay, tw_timer_fn fn, void *arg);

/* Cancels a pending timer: fn will not be called. Safe inside any callback,
 * the timer's own included. Returns 0, TW_EALREADY_CALLED if it ran (or is
 * running now: a timer is "called" before its function starts),
 * TW_EALREADY_CANCELLED if it was cancelled, TW_ESTALE if it ran or was
 * cancelled so long ago that its slot was reused, TW_EINVAL for
 * TW_TIMER_NONE. O(log n). */
int tw_timer_cancel(tw_timer t);

/* Moves a pending timer's deadline to now + delay (reset) or later by extra
 * seconds (delay). A timer may reset itself inside its own function: it is
 * then pending again and fires once more. Order among equal deadlines follows
 * the reset order. Same return codes as tw_timer_cancel. */
int tw_timer_reset(tw_timer t, double delay);
int tw_timer_delay(tw_timer t, double extra);

/* True while the timer is pending (scheduled and not yet running). */
bool tw_timer_active(tw_timer t);

/* Seconds until a pending timer is due (0 if overdue), or -1.0 if it is not
 * active. */
double tw_timer_time_left(tw_timer t);

/* Number of pending timers. */
size_t tw_reactor_timer_count(const tw_reactor *r);

/* Fake clock (TW_CLOCK_FAKE only; Twisted's task.Clock.advance): moves time
 * forward by seconds (>= 0) and runs every timer that is due, in order,
 * including timers those calls schedule for a time already reached. Returns
 * TW_EINVAL for a real clock or a negative amount. */
int tw_clock_advance(tw_reactor *r, double seconds);

/* ------------------------------------------------------ cross-thread calls */

typedef void (*tw_call_fn)(void *arg);

/* The one thread-safe entry point: queues fn(arg) to run on the reactor's
 * thread and wakes the loop. Calls from one thread run in the order that
 * thread made them. Works before the reactor first runs and between runs:
 * queued calls then run on the next run or iterate. Calls queued when the
 * reactor is freed run inside tw_reactor_free. Returns 0, TW_ENOMEM, or
 * TW_ECLOSED once tw_reactor_free has begun. arg is passed through, never
 * freed by the reactor. */
int tw_call_from_thread(tw_reactor *r, tw_call_fn fn, void *arg);

/* Calls fn(arg) once the reactor is running: at once if it already is,
 * otherwise after the startup triggers of the next tw_reactor_run. Returns
 * 0 or TW_ENOMEM. */
int tw_call_when_running(tw_reactor *r, tw_call_fn fn, void *arg);

/* ---------------------------------------------------- file-descriptor watch */

enum {
    TW_READABLE = 1u << 0,
    TW_WRITABLE = 1u << 1,
    TW_HANGUP = 1u << 2, /* reported with READABLE/WRITABLE: the peer hung up */
    TW_ERROR = 1u << 3   /* reported with READABLE/WRITABLE: the fd has an error */
};

typedef struct tw_watcher tw_watcher;

/* Called on the reactor thread when fd is ready for any of the watched events.
 * events holds the ready ones among those watched; HANGUP and ERROR are added
 * when they apply. Level-triggered: it is called again while the condition
 * holds. */
typedef void (*tw_watcher_fn)(tw_watcher *w, int fd, unsigned events, void *arg);

/* Watches fd (not owned: the watcher never closes it) for events
 * (TW_READABLE | TW_WRITABLE, or 0 to start idle). For libraries that bring
 * their own sockets (c-ares, libpq). Stores a watcher the reactor owns until
 * tw_watcher_free. Returns 0, TW_ENOMEM, or -errno (e.g. -EPERM for a regular
 * file under epoll, -EEXIST if fd is already watched). */
int tw_watcher_new(tw_reactor *r, int fd, unsigned events, tw_watcher_fn fn, void *arg,
                   tw_watcher **out);

/* Changes the watched events. Safe inside any callback. */
int tw_watcher_set(tw_watcher *w, unsigned events);
unsigned tw_watcher_events(const tw_watcher *w);
int tw_watcher_fd(const tw_watcher *w);

/* Stops watching and frees the watcher; the fd stays open. Close the fd only
 * after this call. Safe inside any callback, its own included: no callback
 * arrives after it returns. NULL is a no-op. */
void tw_watcher_free(tw_watcher *w);

/* ------------------------------------------------------------------ signals */

typedef struct tw_signal_watcher tw_signal_watcher;
typedef void (*tw_signal_fn)(tw_reactor *r, int signo, void *arg);

/* Calls fn on the reactor thread each time signo arrives (several arrivals
 * between two loop turns may be reported once). Several reactors may watch
 * the same signal; each is told. While any watcher exists, the signal's
 * disposition is the library's; the previous one is restored when the last
 * watcher of that signal goes. SIGKILL, SIGSTOP and SIGCHLD-with-SA_NOCLDWAIT
 * are the caller's problem. Returns 0, TW_EINVAL, TW_ENOMEM, TW_ELIMIT (too
 * many reactors watching signals at once: 64), or -errno. */
int tw_signal_watch(tw_reactor *r, int signo, tw_signal_fn fn, void *arg, tw_signal_watcher **out);

/* Stops and frees the watcher. Safe inside any callback. NULL is a no-op. */
void tw_signal_unwatch(tw_signal_watcher *w);

/* -------------------------------------------------- system event triggers */

typedef enum tw_phase { TW_PHASE_BEFORE = 0, TW_PHASE_DURING, TW_PHASE_AFTER } tw_phase;
typedef enum tw_system_event { TW_EVENT_STARTUP = 0, TW_EVENT_SHUTDOWN } tw_system_event;

typedef struct tw_trigger tw_trigger;
typedef void (*tw_trigger_fn)(tw_reactor *r, void *arg);

/* Twisted's addSystemEventTrigger: fn(r, arg) runs in the given phase each
 * time the event happens, triggers of one phase in the order they were added.
 * A trigger may hold its phase (tw_reactor_hold_phase) to make the next phase
 * wait until work finishes — e.g. a before-shutdown trigger that closes
 * connections gracefully. Stores a handle for tw_reactor_remove_trigger when
 * out is not NULL. Returns 0, TW_EINVAL or TW_ENOMEM. */
int tw_reactor_add_trigger(tw_reactor *r, tw_phase phase, tw_system_event event, tw_trigger_fn fn,
                           void *arg, tw_trigger **out);

/* Removes and frees a trigger; safe inside any callback, its own included. */
int tw_reactor_remove_trigger(tw_reactor *r, tw_trigger *t);

/* Holds the phase of the system event now being fired: the next phase starts
 * only once every hold is released. Only meaningful inside a trigger (or
 * before its phase ends); returns TW_EINVAL otherwise. During shutdown a
 * second SIGINT/SIGTERM stops waiting for holds. */
int tw_reactor_hold_phase(tw_reactor *r);
void tw_reactor_release_phase(tw_reactor *r);

#ifdef __cplusplus
}
#endif
#endif
