/* reactor.c — the loop: one turn waits for I/O, then runs fed events, tasks,
 * timers and cross-thread calls; run() wraps turns in the startup and
 * shutdown system events. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/reactor_impl.h"
#include "twirl/log.h"

int64_t tw__monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ I/O */

/* Every io callback the process has named, slot 0 for none. Filled without
 * a lock: reactors on several threads may name the same callback at once,
 * and a slot, once set, never changes. */
static _Atomic(tw__io_fn) io_callbacks[TW__IO_CALLBACKS];

static uint8_t io_callback_index(tw__io_fn cb)
{
    if (!cb)
        return 0;
    for (unsigned i = 1; i < TW__IO_CALLBACKS; i++) {
        tw__io_fn seen = atomic_load_explicit(&io_callbacks[i], memory_order_acquire);
        if (!seen && atomic_compare_exchange_strong_explicit(
                         &io_callbacks[i], &seen, cb, memory_order_acq_rel, memory_order_acquire))
            return (uint8_t)i;
        if (seen == cb)
            return (uint8_t)i;
    }
    abort(); /* more callbacks than the library has: a bug */
}

static inline void io_call(tw_reactor *r, tw__io *io, unsigned events)
{
    atomic_load_explicit(&io_callbacks[io->cb], memory_order_acquire)(r, io, events);
}

void tw__io_init(tw__io *io, int fd, unsigned flags, tw__io_fn cb)
{
    *io = (tw__io){
        .fd = fd, .flags = (uint8_t)flags, .poll_index = -1, .cb = io_callback_index(cb)
    };
}

int tw__io_set(tw_reactor *r, tw__io *io, unsigned mask)
{
    mask &= TW_READABLE | TW_WRITABLE;
    if (mask == io->mask && (io->registered || mask == 0))
        return 0;
    int rc = r->backend->watch(r, io, mask);
    if (rc == 0)
        io->mask = (uint8_t)mask;
    return rc;
}

static void feed_unlink_from(tw__io **head, tw__io *io)
{
    for (tw__io **p = head; *p; p = &(*p)->fed_next) {
        if (*p == io) {
            *p = io->fed_next;
            return;
        }
    }
}

static void feed_unlink(tw_reactor *r, tw__io *io)
{
    feed_unlink_from(&r->fed_head, io);
    feed_unlink_from(&r->fed_run, io);
    io->fed = 0;
    io->fed_next = NULL;
    io->fed_events = 0;
}

void tw__io_stop(tw_reactor *r, tw__io *io)
{
    if (io->registered)
        r->backend->unwatch(r, io);
    io->registered = 0;
    io->mask = 0;
    io->instance ^= 1;
    if (io->fed)
        feed_unlink(r, io);
}

void tw__io_feed(tw_reactor *r, tw__io *io, unsigned events)
{
    io->fed_events |= (uint8_t)events;
    if (io->fed)
        return;
    io->fed = 1;
    io->fed_next = r->fed_head;
    r->fed_head = io;
}

void tw__io_ready(tw_reactor *r, uintptr_t tagged, unsigned events)
{
    tw__io *io = (tw__io *)(tagged & ~(uintptr_t)1);
    if ((uint8_t)(tagged & 1) != io->instance)
        return; /* fetched for a registration that has since been stopped */
    unsigned wanted = events & io->mask;
    if (events & (TW_HANGUP | TW_ERROR))
        wanted |= io->mask | (events & (TW_HANGUP | TW_ERROR));
    if (wanted & (TW_READABLE | TW_WRITABLE))
        io_call(r, io, wanted);
}

static void run_fed(tw_reactor *r)
{
    /* Move the list aside: ios fed by these callbacks wait for the next
     * turn, and tw__io_stop can still unlink from the list being run. */
    r->fed_run = r->fed_head;
    r->fed_head = NULL;
    tw__io *io;
    while ((io = r->fed_run) != NULL) {
        r->fed_run = io->fed_next;
        unsigned events = io->fed_events;
        io->fed = 0;
        io->fed_next = NULL;
        io->fed_events = 0;
        io_call(r, io, events);
    }
}

/* ------------------------------------------------------------------ tasks */

void tw__task_post(tw_reactor *r, tw__task *task, tw__task_fn fn)
{
    if (task->queued)
        return;
    task->fn = fn;
    task->queued = 1;
    task->next = NULL;
    if (r->task_tail)
        r->task_tail->next = task;
    else
        r->task_head = task;
    r->task_tail = task;
}

void tw__task_cancel(tw_reactor *r, tw__task *task)
{
    if (!task->queued)
        return;
    tw__task *prev = NULL;
    for (tw__task *t = r->task_head; t; prev = t, t = t->next) {
        if (t != task)
            continue;
        if (prev)
            prev->next = t->next;
        else
            r->task_head = t->next;
        if (r->task_tail == t)
            r->task_tail = prev;
        break;
    }
    task->queued = 0;
    task->next = NULL;
}

static void run_tasks(tw_reactor *r)
{
    /* Tasks posted while draining run in the same drain: teardown chains
     * (close a connection, which closes its peer) finish in one turn. */
    tw__task *t;
    while ((t = r->task_head) != NULL) {
        r->task_head = t->next;
        if (!r->task_head)
            r->task_tail = NULL;
        t->queued = 0;
        t->next = NULL;
        t->fn(r, t);
    }
}

/* ------------------------------------------------------ cross-thread calls */

static int xqueue_init(tw__xqueue *q)
{
    *q = (tw__xqueue){ 0 };
    return -pthread_mutex_init(&q->lock, NULL);
}

static void wake(tw_reactor *r)
{
    if (atomic_exchange(&r->wake_pending, 1))
        return;
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(r->wake_wfd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter (or pipe) is already full, so a wakeup is
     * already due. */
}

int tw_call_from_thread(tw_reactor *r, tw_call_fn fn, void *arg)
{
    tw__xqueue *q = &r->xq;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        pthread_mutex_unlock(&q->lock);
        return TW_ECLOSED;
    }
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        tw__xcall *items = realloc(q->items, cap * sizeof *items);
        if (!items) {
            pthread_mutex_unlock(&q->lock);
            return TW_ENOMEM;
        }
        q->items = items;
        q->cap = cap;
    }
    q->items[q->len++] = (tw__xcall){ fn, arg };
    pthread_mutex_unlock(&q->lock);
    wake(r);
    return 0;
}

/* Runs the calls queued so far. Calls queued while these run wait for the
 * next wakeup, which their own tw_call_from_thread guarantees. The two
 * arrays swap roles so steady traffic allocates nothing. */
static void run_xcalls(tw_reactor *r)
{
    tw__xqueue *q = &r->xq;
    pthread_mutex_lock(&q->lock);
    tw__xcall *items = q->items;
    size_t len = q->len, cap = q->cap;
    q->items = q->spare;
    q->cap = q->spare_cap;
    q->len = 0;
    q->spare = NULL;
    q->spare_cap = 0;
    pthread_mutex_unlock(&q->lock);

    for (size_t i = 0; i < len; i++)
        items[i].fn(items[i].arg);

    pthread_mutex_lock(&q->lock);
    if (!q->spare) {
        q->spare = items;
        q->spare_cap = cap;
        items = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    free(items);
}

static void wake_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    uint64_t buf[8];
    ssize_t n;
    do
        n = read(io->fd, buf, sizeof buf);
    while (n == (ssize_t)sizeof buf || (n < 0 && errno == EINTR));
    /* Clear before draining: a call queued from now on wakes us again. */
    atomic_store(&r->wake_pending, 0);
    run_xcalls(r);

    if (r->sigreg) {
        uint64_t bits = tw__signal_take(r->sigreg);
        if (bits)
            tw__signals_dispatch(r, bits);
    }
}

static int wake_open(tw_reactor *r)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd >= 0) {
        tw__io_init(&r->wake_io, fd, 0, wake_ready);
        r->wake_wfd = fd;
        return 0;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    tw__io_init(&r->wake_io, p[0], 0, wake_ready);
    r->wake_wfd = p[1];
    return 0;
}

static void wake_close(tw_reactor *r)
{
    if (r->wake_wfd != r->wake_io.fd)
        close(r->wake_wfd);
    close(r->wake_io.fd);
}

/* ------------------------------------------------------------ lifecycle */

#ifdef TWIRL_HAVE_URING
/* io_uring is probed once per process: kernel support, the
 * kernel.io_uring_disabled sysctl, and the operations the backend uses.
 * Without them "uring" falls back to epoll, saying why. */
static int uring_usable;

static void probe_once(void)
{
    int rc = tw__uring_probe();
    uring_usable = rc == 0;
    if (rc < 0)
        tw_log(TW_LOG_INFO, "reactor", "io_uring unavailable (%s): using epoll", tw_strerror(rc));
}
#endif

static const tw__backend_ops *backend_by_name(const char *name)
{
    if (!name || !*name || strcmp(name, "epoll") == 0)
        return &tw__backend_epoll;
    if (strcmp(name, "poll") == 0)
        return &tw__backend_poll;
    if (strcmp(name, "uring") == 0) {
#ifdef TWIRL_HAVE_URING
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, probe_once);
        return uring_usable ? &tw__backend_uring : &tw__backend_epoll;
#else
        tw_log(TW_LOG_INFO, "reactor", "built without liburing: using epoll");
        return &tw__backend_epoll;
#endif
    }
    return NULL;
}

int tw__reactor_completions(const tw_reactor *r)
{
    return r->backend->completions;
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

int tw_reactor_new(const tw_reactor_options *opts, tw_reactor **out)
{
    static const tw_reactor_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    const char *name = opts->backend ? opts->backend : getenv("TWIRL_REACTOR");
    const tw__backend_ops *backend = backend_by_name(name);
    if (!backend) {
        if (opts->backend)
            return TW_EBACKEND;
        tw_log(TW_LOG_WARN, "reactor", "unknown TWIRL_REACTOR=%s, using epoll", name);
        backend = &tw__backend_epoll;
    }
    pthread_once(&sigpipe_once, ignore_sigpipe);

    tw_reactor *r = calloc(1, sizeof *r);
    if (!r)
        return TW_ENOMEM;
    int rc = xqueue_init(&r->xq);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->backend = backend;
    r->fake_clock = opts->clock == TW_CLOCK_FAKE;
    r->now_ns = r->fake_clock ? 0 : tw__monotonic_ns();
    /* Written only on a change of thread: other threads read it (to refuse
     * blocking calls from the reactor's own thread), and an unchanged
     * value must not look like a write to them. */
    if (!pthread_equal(r->owner, pthread_self()))
        r->owner = pthread_self();
    r->phase_event = -1;
    r->signal_mode = opts->signals;
    if (r->signal_mode == TW_SIGNALS_AUTO)
        r->signal_mode = syscall(SYS_gettid) == getpid() ? TW_SIGNALS_ON : TW_SIGNALS_OFF;
    tw__timers_init(&r->timers);

    if ((rc = backend->init(r)) < 0)
        goto fail_backend;
    if ((rc = wake_open(r)) < 0)
        goto fail_wake;
    if ((rc = tw__io_set(r, &r->wake_io, TW_READABLE)) < 0)
        goto fail_watch;
    *out = r;
    return 0;

fail_watch:
    wake_close(r);
fail_wake:
    backend->fini(r);
fail_backend:
    pthread_mutex_destroy(&r->xq.lock);
    free(r);
    return rc;
}

void tw_reactor_free(tw_reactor *r)
{
    if (!r)
        return;
    /* Run queued cross-thread calls (so their arguments are not leaked),
     * then refuse new ones. A call queued by one of them still runs. */
    for (;;) {
        pthread_mutex_lock(&r->xq.lock);
        size_t pending = r->xq.len;
        if (!pending)
            r->xq.closed = 1;
        pthread_mutex_unlock(&r->xq.lock);
        if (!pending)
            break;
        run_xcalls(r);
    }
    run_tasks(r);
    while (r->ncleanups > 0) {
        struct tw__cleanup c = r->cleanups[--r->ncleanups];
        c.fn(r, c.arg);
        run_tasks(r);
    }
    free(r->cleanups);

    while (r->sig_watchers)
        tw_signal_unwatch(r->sig_watchers);
    if (r->sigreg)
        tw__signal_unregister(r->sigreg);

    tw__io_stop(r, &r->wake_io);
    wake_close(r);
    r->backend->fini(r);
    tw__timers_fini(&r->timers);
    for (tw_trigger *t = r->triggers, *next; t; t = next) {
        next = t->next;
        free(t);
    }
    free(r->when_running);
    free(r->xq.items);
    free(r->xq.spare);
    pthread_mutex_destroy(&r->xq.lock);
    free(r->rbuf);
    free(r);
}

void **tw__reactor_slot(tw_reactor *r, enum tw__slot_id which)
{
    return &r->slots[which];
}

int tw__reactor_on_free(tw_reactor *r, tw__cleanup_fn fn, void *arg)
{
    struct tw__cleanup *c = realloc(r->cleanups, (r->ncleanups + 1) * sizeof *c);
    if (!c)
        return TW_ENOMEM;
    r->cleanups = c;
    c[r->ncleanups++] = (struct tw__cleanup){ fn, arg };
    return 0;
}

void *tw__reactor_rbuf(tw_reactor *r)
{
    if (!r->rbuf)
        r->rbuf = malloc(TW__RBUF_BYTES);
    return r->rbuf;
}

int tw__reactor_on_thread(const tw_reactor *r)
{
    return pthread_equal(r->owner, pthread_self());
}

void *tw__reactor_backend_data(tw_reactor *r)
{
    return r->backend_data;
}

void tw__reactor_set_backend_data(tw_reactor *r, void *data)
{
    r->backend_data = data;
}

const char *tw_reactor_backend(const tw_reactor *r)
{
    return r->backend->name;
}

double tw_reactor_now(const tw_reactor *r)
{
    return (double)r->now_ns / 1e9;
}

int64_t tw_reactor_now_ns(const tw_reactor *r)
{
    return r->now_ns;
}

void tw_reactor_update_time(tw_reactor *r)
{
    if (!r->fake_clock)
        r->now_ns = tw__monotonic_ns();
}

bool tw_reactor_running(const tw_reactor *r)
{
    return r->state != TW__IDLE;
}

int tw_clock_advance(tw_reactor *r, double seconds)
{
    if (!r->fake_clock || !(seconds >= 0))
        return TW_EINVAL;
    r->now_ns += (int64_t)(seconds * 1e9 + 0.5);
    tw__timers_run(r, r->now_ns, 0);
    run_tasks(r);
    return 0;
}

/* ------------------------------------------------------------ one turn */

static int64_t turn_timeout(tw_reactor *r, int64_t timeout_ns)
{
    if (r->task_head || r->fed_head || r->state == TW__STOPPED)
        return 0;
    int64_t t = tw__timers_timeout(&r->timers, r->now_ns);
    if (r->fake_clock && t != 0)
        t = -1; /* fake time does not pass by waiting */
    if (t < 0 || (timeout_ns >= 0 && timeout_ns < t))
        t = timeout_ns;
    return t;
}

static int turn(tw_reactor *r, int64_t timeout_ns)
{
    /* The backend reads the clock as soon as it stops waiting. */
    int n = r->backend->wait(r, turn_timeout(r, timeout_ns));
    run_tasks(r);
    if (r->fed_head) {
        run_fed(r);
        run_tasks(r);
    }
    /* Checked here: most turns have no timer due. */
    if (r->timers.count && r->timers.heap[0].deadline <= r->now_ns) {
        tw__timers_run(r, r->now_ns, !r->fake_clock);
        run_tasks(r);
    }
    return n < 0 ? n : 0;
}

int tw__reactor_turn(tw_reactor *r, int64_t timeout_ns)
{
    return turn(r, timeout_ns);
}

static int64_t seconds_to_ns(double timeout)
{
    if (timeout < 0)
        return -1;
    if (timeout > 9.0e9)
        return (int64_t)9.0e18;
    return (int64_t)(timeout * 1e9);
}

int tw_reactor_iterate(tw_reactor *r, double timeout)
{
    if (r->in_loop)
        return TW_EBUSY;
    r->in_loop = 1;
    /* Written only on a change of thread: other threads read it (to refuse
     * blocking calls from the reactor's own thread), and an unchanged
     * value must not look like a write to them. */
    if (!pthread_equal(r->owner, pthread_self()))
        r->owner = pthread_self();
    int rc = turn(r, seconds_to_ns(timeout));
    r->in_loop = 0;
    return rc;
}

/* ------------------------------------------------------ system events */

int tw_reactor_add_trigger(tw_reactor *r, tw_phase phase, tw_system_event event, tw_trigger_fn fn,
                           void *arg, tw_trigger **out)
{
    if ((unsigned)phase > TW_PHASE_AFTER || (unsigned)event > TW_EVENT_SHUTDOWN || !fn)
        return TW_EINVAL;
    tw_trigger *t = calloc(1, sizeof *t);
    if (!t)
        return TW_ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->phase = (uint8_t)phase;
    t->event = (uint8_t)event;
    tw_trigger **tail = &r->triggers;
    while (*tail)
        tail = &(*tail)->next;
    *tail = t;
    if (out)
        *out = t;
    return 0;
}

int tw_reactor_remove_trigger(tw_reactor *r, tw_trigger *t)
{
    for (tw_trigger **p = &r->triggers; *p; p = &(*p)->next) {
        if (*p != t)
            continue;
        if (r->phase_event >= 0) {
            t->removed = 1; /* being iterated: unlinked after the phase */
        } else {
            *p = t->next;
            free(t);
        }
        return 0;
    }
    return TW_EINVAL;
}

static void sweep_triggers(tw_reactor *r)
{
    for (tw_trigger **p = &r->triggers; *p;) {
        tw_trigger *t = *p;
        if (t->removed) {
            *p = t->next;
            free(t);
        } else {
            p = &t->next;
        }
    }
}

static void fire_phase(tw_reactor *r, int event, int phase)
{
    r->phase_event = event;
    r->phase = phase;
    /* Triggers added while firing go to the tail and run in this pass too. */
    for (tw_trigger *t = r->triggers; t; t = t->next)
        if (!t->removed && t->event == event && t->phase == phase)
            t->fn(r, t->arg);
    r->phase_event = -1;
    sweep_triggers(r);
    run_tasks(r);
}

int tw_reactor_hold_phase(tw_reactor *r)
{
    if (r->phase_event < 0 && !(r->state == TW__STARTING || r->state == TW__STOPPING))
        return TW_EINVAL;
    if (r->phase != TW_PHASE_BEFORE)
        return TW_EINVAL;
    r->phase_holds++;
    return 0;
}

void tw_reactor_release_phase(tw_reactor *r)
{
    if (r->phase_holds > 0)
        r->phase_holds--;
}

/* Fires the before phase, then turns the loop until its holds are released
 * (or a second stop signal forces it), then during and after. */
static int fire_event(tw_reactor *r, int event)
{
    r->phase_holds = 0;
    fire_phase(r, event, TW_PHASE_BEFORE);
    r->phase = TW_PHASE_BEFORE;
    while (r->phase_holds > 0 && !(event == TW_EVENT_SHUTDOWN && r->force_stop)) {
        int rc = turn(r, -1);
        if (rc < 0)
            return rc;
        if (event == TW_EVENT_STARTUP && r->stop_requested)
            break;
    }
    r->phase_holds = 0;
    fire_phase(r, event, TW_PHASE_DURING);
    fire_phase(r, event, TW_PHASE_AFTER);
    return 0;
}

int tw_call_when_running(tw_reactor *r, tw_call_fn fn, void *arg)
{
    if (r->state == TW__RUNNING) {
        fn(arg);
        return 0;
    }
    if (r->when_running_len == r->when_running_cap) {
        size_t cap = r->when_running_cap ? r->when_running_cap * 2 : 8;
        tw__oneshot *a = realloc(r->when_running, cap * sizeof *a);
        if (!a)
            return TW_ENOMEM;
        r->when_running = a;
        r->when_running_cap = cap;
    }
    r->when_running[r->when_running_len++] = (tw__oneshot){ fn, arg };
    return 0;
}

static void run_when_running(tw_reactor *r)
{
    /* Calls may queue more (they run at once now that state is RUNNING). */
    size_t n = r->when_running_len;
    tw__oneshot *calls = r->when_running;
    r->when_running = NULL;
    r->when_running_len = r->when_running_cap = 0;
    for (size_t i = 0; i < n; i++)
        calls[i].fn(calls[i].arg);
    free(calls);
}

/* ------------------------------------------------------------ signals */

static void on_stop_signal(tw_reactor *r, int signo, void *arg)
{
    if (r->state == TW__STOPPING || r->stop_requested) {
        tw_log(TW_LOG_WARN, "reactor", "signal %d during shutdown: not waiting any longer", signo);
        r->force_stop = 1;
        return;
    }
    tw_log(TW_LOG_INFO, "reactor", "signal %d: shutting down", signo);
    tw_reactor_stop(r);
}

static void stop_signals_install(tw_reactor *r)
{
    if (r->signal_mode != TW_SIGNALS_ON)
        return;
    if (tw_signal_watch(r, SIGINT, on_stop_signal, NULL, &r->stop_sig[0]) < 0)
        r->stop_sig[0] = NULL;
    if (tw_signal_watch(r, SIGTERM, on_stop_signal, NULL, &r->stop_sig[1]) < 0)
        r->stop_sig[1] = NULL;
}

static void stop_signals_remove(tw_reactor *r)
{
    for (int i = 0; i < 2; i++) {
        tw_signal_unwatch(r->stop_sig[i]);
        r->stop_sig[i] = NULL;
    }
}

/* ------------------------------------------------------------ run/stop */

int tw_reactor_stop(tw_reactor *r)
{
    if (r->state == TW__IDLE)
        return TW_ENOTRUNNING;
    if (r->stop_requested)
        return TW_EALREADY_CALLED;
    r->stop_requested = 1;
    return 0;
}

int tw_reactor_run(tw_reactor *r)
{
    if (r->in_loop)
        return TW_EBUSY;
    r->in_loop = 1;
    /* Written only on a change of thread: other threads read it (to refuse
     * blocking calls from the reactor's own thread), and an unchanged
     * value must not look like a write to them. */
    if (!pthread_equal(r->owner, pthread_self()))
        r->owner = pthread_self();
    r->stop_requested = 0;
    r->force_stop = 0;
    tw_reactor_update_time(r);
    stop_signals_install(r);

    int rc = 0;
    r->state = TW__STARTING;
    rc = fire_event(r, TW_EVENT_STARTUP);
    if (rc == 0) {
        r->state = TW__RUNNING;
        run_when_running(r);
        run_tasks(r);
        while (!r->stop_requested) {
            if ((rc = turn(r, -1)) < 0)
                break;
        }
    }
    if (rc == 0) {
        r->state = TW__STOPPING;
        rc = fire_event(r, TW_EVENT_SHUTDOWN);
    }
    r->state = TW__STOPPED;
    /* One last non-blocking turn so work queued by the after-shutdown
     * triggers (closing handles) completes before run returns. */
    if (rc == 0)
        rc = turn(r, 0);
    stop_signals_remove(r);
    r->state = TW__IDLE;
    r->stop_requested = 0;
    r->in_loop = 0;
    return rc;
}
