/* signal.c — signals delivered to reactors through their wakeup fd.
 *
 * Signals are process-wide, reactors are per thread, so the bridge is a small
 * fixed table of registrations that the handler may read without locks: each
 * names a wakeup fd, the signals it wants and the bits pending for it. The
 * handler sets the bit and writes to the fd (both async-signal-safe); the
 * reactor thread takes the bits on wakeup and runs its watchers. Installing
 * and restoring dispositions happens under a mutex, outside the handler. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/reactor_impl.h"

enum { MAX_REGS = 64, MAX_SIGNO = 64 };

struct tw__signal_reg {
    atomic_int wake_fd; /* -1 when the entry is free */
    atomic_uint_fast64_t wanted;
    atomic_uint_fast64_t pending;
    atomic_int busy; /* handlers currently reading this entry */
};

static struct tw__signal_reg regs[MAX_REGS];
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int sig_users[MAX_SIGNO + 1];
static struct sigaction sig_saved[MAX_SIGNO + 1];
static int regs_ready;

static inline uint64_t bit(int signo)
{
    return (uint64_t)1 << (signo - 1);
}

static void on_signal(int signo)
{
    int saved_errno = errno;
    for (int i = 0; i < MAX_REGS; i++) {
        struct tw__signal_reg *reg = &regs[i];
        atomic_fetch_add(&reg->busy, 1);
        int fd = atomic_load(&reg->wake_fd);
        if (fd >= 0 && (atomic_load(&reg->wanted) & bit(signo))) {
            atomic_fetch_or(&reg->pending, bit(signo));
            uint64_t one = 1;
            ssize_t n = write(fd, &one, sizeof one);
            (void)n; /* EAGAIN: a wakeup is already due */
        }
        atomic_fetch_sub(&reg->busy, 1);
    }
    errno = saved_errno;
}

static void regs_init_locked(void)
{
    if (regs_ready)
        return;
    for (int i = 0; i < MAX_REGS; i++)
        atomic_store(&regs[i].wake_fd, -1);
    regs_ready = 1;
}

int tw__signal_register(int wake_fd, tw__signal_reg **out)
{
    pthread_mutex_lock(&sig_lock);
    regs_init_locked();
    for (int i = 0; i < MAX_REGS; i++) {
        if (atomic_load(&regs[i].wake_fd) < 0) {
            atomic_store(&regs[i].wanted, 0);
            atomic_store(&regs[i].pending, 0);
            atomic_store(&regs[i].wake_fd, wake_fd);
            *out = &regs[i];
            pthread_mutex_unlock(&sig_lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&sig_lock);
    return TW_ELIMIT;
}

/* Caller holds sig_lock. */
static int use_signal(int signo, int delta)
{
    if (delta > 0 && sig_users[signo]++ == 0) {
        struct sigaction sa = { 0 };
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigfillset(&sa.sa_mask);
        if (sigaction(signo, &sa, &sig_saved[signo]) < 0) {
            sig_users[signo]--;
            return -errno;
        }
    } else if (delta < 0 && --sig_users[signo] == 0) {
        sigaction(signo, &sig_saved[signo], NULL);
    }
    return 0;
}

int tw__signal_want(tw__signal_reg *reg, int signo, int on)
{
    int rc = 0;
    pthread_mutex_lock(&sig_lock);
    uint64_t wanted = atomic_load(&reg->wanted);
    if (on && !(wanted & bit(signo))) {
        if ((rc = use_signal(signo, 1)) == 0)
            atomic_fetch_or(&reg->wanted, bit(signo));
    } else if (!on && (wanted & bit(signo))) {
        atomic_fetch_and(&reg->wanted, ~bit(signo));
        use_signal(signo, -1);
    }
    pthread_mutex_unlock(&sig_lock);
    return rc;
}

void tw__signal_unregister(tw__signal_reg *reg)
{
    pthread_mutex_lock(&sig_lock);
    uint64_t wanted = atomic_exchange(&reg->wanted, 0);
    atomic_store(&reg->wake_fd, -1);
    /* A handler that read the old fd may still be writing to it: wait for
     * it before the reactor closes that fd. */
    while (atomic_load(&reg->busy) != 0)
        sched_yield();
    for (int s = 1; s <= MAX_SIGNO; s++)
        if (wanted & bit(s))
            use_signal(s, -1);
    pthread_mutex_unlock(&sig_lock);
}

uint64_t tw__signal_take(tw__signal_reg *reg)
{
    return atomic_exchange(&reg->pending, 0);
}

/* --------------------------------------------------------- watchers */

struct tw_signal_watcher {
    tw_signal_watcher *next;
    tw_reactor *reactor;
    tw_signal_fn fn;
    void *arg;
    int signo;
};

static int reactor_watches(tw_reactor *r, int signo, const tw_signal_watcher *except)
{
    for (tw_signal_watcher *w = r->sig_watchers; w; w = w->next)
        if (w != except && w->signo == signo)
            return 1;
    return 0;
}

int tw_signal_watch(tw_reactor *r, int signo, tw_signal_fn fn, void *arg, tw_signal_watcher **out)
{
    if (signo < 1 || signo > MAX_SIGNO || signo == SIGKILL || signo == SIGSTOP || !fn)
        return TW_EINVAL;
    int rc;
    if (!r->sigreg && (rc = tw__signal_register(r->wake_wfd, &r->sigreg)) < 0)
        return rc;
    tw_signal_watcher *w = calloc(1, sizeof *w);
    if (!w)
        return TW_ENOMEM;
    if (!reactor_watches(r, signo, NULL) && (rc = tw__signal_want(r->sigreg, signo, 1)) < 0) {
        free(w);
        return rc;
    }
    *w = (tw_signal_watcher){ r->sig_watchers, r, fn, arg, signo };
    r->sig_watchers = w;
    if (out)
        *out = w;
    return 0;
}

void tw_signal_unwatch(tw_signal_watcher *w)
{
    if (!w)
        return;
    tw_reactor *r = w->reactor;
    for (tw_signal_watcher **p = &r->sig_watchers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    if (!reactor_watches(r, w->signo, NULL))
        tw__signal_want(r->sigreg, w->signo, 0);
    /* Dispatch walks a snapshot, so freeing here is safe. */
    free(w);
}

void tw__signals_dispatch(tw_reactor *r, uint64_t bits)
{
    for (int signo = 1; signo <= MAX_SIGNO; signo++) {
        if (!(bits & bit(signo)))
            continue;
        /* Watchers may unwatch themselves or others: take a snapshot of the
         * matching ones, then call each that still exists. At most 16
         * watchers of one signal per reactor are told; more is a design
         * smell, not a use case. */
        tw_signal_watcher *snap[16];
        size_t n = 0;
        for (tw_signal_watcher *w = r->sig_watchers; w && n < 16; w = w->next)
            if (w->signo == signo)
                snap[n++] = w;
        for (size_t i = 0; i < n; i++) {
            int alive = 0;
            for (tw_signal_watcher *w = r->sig_watchers; w; w = w->next)
                alive |= w == snap[i] && w->signo == signo;
            if (alive)
                snap[i]->fn(r, signo, snap[i]->arg);
        }
    }
}
