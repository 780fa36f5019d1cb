/* process.c — child processes: Twisted's spawnProcess and its Process
 * transport.
 *
 * Spawning: the descriptor plan and the program's path are prepared here;
 * process_child.c does the vfork and everything the child does before
 * execve, and reports a failing step (exec included) before
 * tw_spawn_process returns.
 *
 * Exit: a pidfd watched for readability, reaped with waitid(P_PIDFD); on
 * kernels without pidfds, a SIGCHLD watcher and waitpid on each of our own
 * pids (never waitpid(-1), which would steal other code's children).
 *
 * Events that end things (a pipe lost, the child reaped) are recorded and
 * told from a task, so no hook runs inside the caller that caused it, and
 * process_ended comes last, once the child is reaped and every pipe is
 * closed. The process is freed right after that, in the same task. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/pipe_internal.h"
#include "net/process_internal.h"
#include "twirl/log.h"
#include "twirl/process.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

/* --------------------------------------------------------------- types */

typedef struct proc_pipe {
    tw__pipe pipe; /* first */
    struct tw_process *proc;
    int child_fd;
    uint8_t writer;       /* TW_CHILD_PIPE_W */
    uint8_t lost_pending; /* closed; child_connection_lost not yet told */
    uint8_t lost_told;
} proc_pipe;

enum {
    PROC_REAPED = 1u << 0,
    PROC_EXITED_TOLD = 1u << 1,
    PROC_ENDED = 1u << 2,
    PROC_PAUSED = 1u << 3,
    PROC_PRODUCER_STREAMING = 1u << 4,
    PROC_PRODUCER_PAUSED = 1u << 5,
    PROC_SIGCHLD = 1u << 6,  /* exit watched through SIGCHLD, not a pidfd */
    PROC_UNWINDING = 1u << 7 /* spawn failing after the fork: hooks stay quiet */
};

struct tw_process {
    tw_transport base; /* first: the transport pointer is the process */
    struct tw_process *prev, *next;
    tw__procio *st;
    tw_process_protocol *proto;
    pid_t pid;     /* 0 once reaped */
    tw__io pid_io; /* the pidfd; fd -1 without one */
    tw__task task; /* tells recorded events */
    tw_process_status status;
    tw_producer *producer;
    uint32_t high_water, low_water, write_limit;
    unsigned flags;
    proc_pipe *stdin_pipe; /* child fd 0 when it is a pipe we write */
    size_t npipes;
    proc_pipe pipes[];
};

static const tw_transport_ops process_ops;

/* Pidfd support, learnt at the first spawn: 0 unknown, 1 yes, -1 no. */
static atomic_int pidfd_mode;
static atomic_bool force_sigchld;

void tw__process_force_sigchld(bool on)
{
    atomic_store(&force_sigchld, on);
}

/* --------------------------------------------------------------- status */

static void status_from_wait(tw_process_status *s, int wst)
{
    s->wait_status = wst;
    if (WIFEXITED(wst)) {
        s->how = TW_PROCESS_EXITED;
        s->code = WEXITSTATUS(wst);
    } else if (WIFSIGNALED(wst)) {
        s->how = TW_PROCESS_SIGNALLED;
        s->code = WTERMSIG(wst);
        s->core_dumped = WCOREDUMP(wst) != 0;
    }
}

static void status_from_siginfo(tw_process_status *s, const siginfo_t *si)
{
    switch (si->si_code) {
    case CLD_EXITED:
        status_from_wait(s, (si->si_status & 0xff) << 8);
        break;
    case CLD_KILLED:
        status_from_wait(s, si->si_status & 0x7f);
        break;
    case CLD_DUMPED:
        status_from_wait(s, (si->si_status & 0x7f) | 0x80);
        break;
    default:
        break;
    }
}

size_t tw_process_status_format(const tw_process_status *s, char *buf, size_t size)
{
    int n;
    switch (s->how) {
    case TW_PROCESS_EXITED:
        n = snprintf(buf, size, "exit code %d", s->code);
        break;
    case TW_PROCESS_SIGNALLED: {
        const char *name = sigdescr_np(s->code);
        n = snprintf(buf, size, "killed by signal %d (%s)%s", s->code, name ? name : "unknown",
                     s->core_dumped ? ", core dumped" : "");
        break;
    }
    default:
        n = snprintf(buf, size, "status unknown");
        break;
    }
    return n < 0 ? 0 : (size_t)n;
}

/* --------------------------------------------------------------- protocols */

tw_process_protocol *tw_process_protocol_alloc(const tw_process_protocol_ops *ops)
{
    size_t size = ops->size > sizeof(tw_process_protocol) ? ops->size : sizeof(tw_process_protocol);
    tw_process_protocol *p = calloc(1, size);
    if (p)
        p->ops = ops;
    return p;
}

void tw_process_protocol_free(tw_process_protocol *p)
{
    if (!p)
        return;
    if (p->ops->destroy)
        p->ops->destroy(p);
    free(p);
}

/* --------------------------------------------------------------- state */

static void procio_free_task(tw_reactor *r, tw__task *t)
{
    tw__procio *st = (tw__procio *)((char *)t - offsetof(tw__procio, free_task));
    *tw__reactor_slot(r, TW__SLOT_PROCESS) = NULL;
    free(st);
}

static void reap_blocking(struct tw_process *pr);
static void proc_events(tw_reactor *r, tw__task *task);

/* The reactor is being freed. Standard I/O is flushed and ended first;
 * then every child still running is killed and reaped (see process.h),
 * its pipes are closed, and its protocol is told through the usual task,
 * which tw_reactor_free runs next. */
static void procio_cleanup(tw_reactor *r, void *arg)
{
    tw__procio *st = arg;
    st->dying = 1;
    tw__stdio_reactor_free(st);
    for (struct tw_process *pr = st->procs; pr; pr = pr->next) {
        for (size_t i = 0; i < pr->npipes; i++)
            tw__pipe_abort(&pr->pipes[i].pipe, -ECONNABORTED);
        if (!(pr->flags & PROC_REAPED)) {
            tw_log(TW_LOG_INFO, "process", "reactor freed: killing child %d", (int)pr->pid);
            tw_process_signal(pr, SIGKILL);
            reap_blocking(pr);
        }
        tw__task_post(r, &pr->task, proc_events);
    }
    if (st->sigchld) {
        tw_signal_unwatch(st->sigchld);
        st->sigchld = NULL;
    }
    tw__task_cancel(r, &st->sigchld_check);
    tw__task_post(r, &st->free_task, procio_free_task);
}

tw__procio *tw__procio_get(tw_reactor *r)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_PROCESS);
    if (!*slot) {
        tw__procio *st = calloc(1, sizeof *st);
        if (!st)
            return NULL;
        st->reactor = r;
        if (tw__reactor_on_free(r, procio_cleanup, st) < 0) {
            free(st);
            return NULL;
        }
        *slot = st;
    }
    return *slot;
}

/* --------------------------------------------------------------- reaping */

static void sigchld_release(tw__procio *st)
{
    if (st->sigchld_children > 0 && --st->sigchld_children == 0 && st->sigchld) {
        tw_signal_unwatch(st->sigchld);
        st->sigchld = NULL;
    }
}

/* The child is gone: record how, forget the pid, tell the protocol soon. */
static void reaped(struct tw_process *pr, const tw_process_status *s)
{
    if (pr->flags & PROC_REAPED)
        return;
    pr->flags |= PROC_REAPED;
    pr->status = *s;
    pr->status.pid = pr->pid;
    pr->pid = 0;
    if (pr->pid_io.fd >= 0) {
        tw__io_stop(pr->base.reactor, &pr->pid_io);
        close(pr->pid_io.fd);
        pr->pid_io.fd = -1;
    }
    if (pr->flags & PROC_SIGCHLD)
        sigchld_release(pr->st);
    tw__task_post(pr->base.reactor, &pr->task, proc_events);
}

/* One waitid on the child. Returns 1 when reaped (*s filled), 0 if it is
 * still running, or -errno (-ECHILD: someone else reaped it). */
static int try_reap(struct tw_process *pr, int options, tw_process_status *s)
{
    siginfo_t si;
    int rc;
    for (;;) {
        memset(&si, 0, sizeof si);
        if (pr->pid_io.fd >= 0) {
            rc = waitid((idtype_t)P_PIDFD, (id_t)pr->pid_io.fd, &si, WEXITED | options);
            if (rc < 0 && errno == EINVAL) /* Linux 5.3: pidfd_open without P_PIDFD */
                rc = waitid(P_PID, (id_t)pr->pid, &si, WEXITED | options);
        } else {
            rc = waitid(P_PID, (id_t)pr->pid, &si, WEXITED | options);
        }
        if (rc == 0 || errno != EINTR)
            break;
    }
    if (rc < 0)
        return -errno;
    if (si.si_pid == 0)
        return 0;
    *s = (tw_process_status){ 0 };
    status_from_siginfo(s, &si);
    return 1;
}

static void reap_or_lose(struct tw_process *pr, int options)
{
    tw_process_status s = { 0 };
    int rc = try_reap(pr, options, &s);
    if (rc == 0)
        return;
    if (rc < 0) {
        /* ECHILD: SIGCHLD ignored (auto-reaped) or a waitpid(-1) elsewhere. */
        tw_log(TW_LOG_WARN, "process", "child %d: cannot wait for it (%s): exit status lost",
               (int)pr->pid, tw_strerror(rc));
        s = (tw_process_status){ 0 };
    }
    reaped(pr, &s);
}

static void reap_blocking(struct tw_process *pr)
{
    reap_or_lose(pr, 0);
}

static void pid_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    struct tw_process *pr = (struct tw_process *)((char *)io - offsetof(struct tw_process, pid_io));
    reap_or_lose(pr, WNOHANG);
}

/* SIGCHLD fallback: look at each of our own children, never at others'. */
static void sigchld_pass(tw__procio *st)
{
    for (struct tw_process *pr = st->procs; pr; pr = pr->next)
        if ((pr->flags & PROC_SIGCHLD) && !(pr->flags & PROC_REAPED))
            reap_or_lose(pr, WNOHANG);
}

static void on_sigchld(tw_reactor *r, int signo, void *arg)
{
    sigchld_pass(arg);
}

static void sigchld_check_task(tw_reactor *r, tw__task *t)
{
    sigchld_pass((tw__procio *)((char *)t - offsetof(tw__procio, sigchld_check)));
}

/* --------------------------------------------------------------- telling */

static void tell_lost(tw_process_protocol *p, int child_fd)
{
    const tw_process_protocol_ops *ops = p->ops;
    if (ops->child_connection_lost)
        ops->child_connection_lost(p, child_fd);
    else if (child_fd == 0 && ops->in_connection_lost)
        ops->in_connection_lost(p);
    else if (child_fd == 1 && ops->out_connection_lost)
        ops->out_connection_lost(p);
    else if (child_fd == 2 && ops->err_connection_lost)
        ops->err_connection_lost(p);
}

static void stop_producer(struct tw_process *pr)
{
    tw_producer *prod = pr->producer;
    if (!prod)
        return;
    pr->producer = NULL;
    pr->flags &= ~(PROC_PRODUCER_STREAMING | PROC_PRODUCER_PAUSED);
    if (prod->ops->stop_producing)
        prod->ops->stop_producing(prod);
}

static void proc_unlink(struct tw_process *pr)
{
    tw__procio *st = pr->st;
    if (pr->prev)
        pr->prev->next = pr->next;
    else
        st->procs = pr->next;
    if (pr->next)
        pr->next->prev = pr->prev;
}

static void proc_end(tw_reactor *r, struct tw_process *pr)
{
    tw_process_protocol *p = pr->proto;
    pr->flags |= PROC_ENDED;
    pr->base.state = TW_TRANSPORT_CLOSED;
    stop_producer(pr);
    if (p->ops->process_ended)
        p->ops->process_ended(p, &pr->status);
    p->process = NULL;
    p->transport = NULL;
    tw_process_protocol_free(p);
    proc_unlink(pr);
    tw__task_cancel(r, &pr->task); /* a hook may have posted it again */
    free(pr);
}

static void proc_events(tw_reactor *r, tw__task *task)
{
    struct tw_process *pr = (struct tw_process *)((char *)task - offsetof(struct tw_process, task));
    tw_process_protocol *p = pr->proto;
    if (pr->flags & PROC_ENDED)
        return;
    /* Hooks may lose more pipes: go round until nothing is left to tell.
     * Each pipe is told once and the exit once, so this ends. */
    for (;;) {
        int told = 0;
        for (size_t i = 0; i < pr->npipes; i++) {
            proc_pipe *q = &pr->pipes[i];
            if (!q->lost_pending)
                continue;
            q->lost_pending = 0;
            q->lost_told = 1;
            told = 1;
            if (q == pr->stdin_pipe)
                stop_producer(pr); /* its consumer is gone */
            tell_lost(p, q->child_fd);
        }
        if ((pr->flags & PROC_REAPED) && !(pr->flags & PROC_EXITED_TOLD)) {
            pr->flags |= PROC_EXITED_TOLD;
            told = 1;
            if (p->ops->process_exited)
                p->ops->process_exited(p, &pr->status);
        }
        if (!told)
            break;
    }
    if (!(pr->flags & PROC_EXITED_TOLD))
        return;
    for (size_t i = 0; i < pr->npipes; i++)
        if (!pr->pipes[i].lost_told)
            return;
    proc_end(r, pr);
}

/* --------------------------------------------------------------- pipes */

static void pp_data(tw__pipe *pp, const void *data, size_t len)
{
    proc_pipe *q = (proc_pipe *)pp;
    tw_process_protocol *p = q->proc->proto;
    const tw_process_protocol_ops *ops = p->ops;
    if (ops->child_data_received)
        ops->child_data_received(p, q->child_fd, data, len);
    else if (q->child_fd == 1 && ops->out_received)
        ops->out_received(p, data, len);
    else if (q->child_fd == 2 && ops->err_received)
        ops->err_received(p, data, len);
}

static void pp_closed(tw__pipe *pp, int err)
{
    proc_pipe *q = (proc_pipe *)pp;
    struct tw_process *pr = q->proc;
    if (pr->flags & PROC_UNWINDING)
        return;
    q->lost_pending = 1;
    tw__task_post(pr->base.reactor, &pr->task, proc_events);
}

static size_t proc_buffered(const tw_transport *t)
{
    const struct tw_process *pr = (const struct tw_process *)t;
    size_t n = 0;
    for (size_t i = 0; i < pr->npipes; i++)
        n += pr->pipes[i].pipe.buffered;
    return n;
}

static void pp_written(tw__pipe *pp)
{
    struct tw_process *pr = ((proc_pipe *)pp)->proc;
    if (!pr->producer || (pr->flags & PROC_ENDED))
        return;
    size_t buffered = proc_buffered(&pr->base);
    if (pr->flags & PROC_PRODUCER_STREAMING) {
        if ((pr->flags & PROC_PRODUCER_PAUSED) && buffered <= pr->low_water) {
            pr->flags &= ~PROC_PRODUCER_PAUSED;
            pr->producer->ops->resume_producing(pr->producer);
        }
    } else if (buffered == 0) {
        pr->producer->ops->resume_producing(pr->producer);
    }
}

static const tw__pipe_ops proc_pipe_ops = {
    .data = pp_data,
    .closed = pp_closed,
    .written = pp_written,
};

/* --------------------------------------------------------------- transport */

static void producer_check_high(struct tw_process *pr)
{
    if (pr->producer && (pr->flags & PROC_PRODUCER_STREAMING) &&
        !(pr->flags & PROC_PRODUCER_PAUSED) && proc_buffered(&pr->base) > pr->high_water) {
        pr->flags |= PROC_PRODUCER_PAUSED;
        pr->producer->ops->pause_producing(pr->producer);
    }
}

static void proc_abort(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (pr->base.state == TW_TRANSPORT_OPEN)
        pr->base.state = TW_TRANSPORT_DISCONNECTING;
    for (size_t i = 0; i < pr->npipes; i++)
        tw__pipe_abort(&pr->pipes[i].pipe, -ECONNABORTED);
}

/* After bytes were queued on a pipe: enforce the limit, pause the producer. */
static int after_write(struct tw_process *pr, int rc)
{
    if (rc < 0)
        return rc;
    size_t buffered = proc_buffered(&pr->base);
    if (pr->write_limit && buffered > pr->write_limit) {
        tw_log(TW_LOG_WARN, "process",
               "child %d: write buffer over its limit (%zu > %u bytes): closing its pipes",
               (int)pr->pid, buffered, pr->write_limit);
        proc_abort(&pr->base);
        return TW_ELIMIT;
    }
    producer_check_high(pr);
    return 0;
}

static proc_pipe *pipe_for(struct tw_process *pr, int child_fd)
{
    for (size_t i = 0; i < pr->npipes; i++)
        if (pr->pipes[i].child_fd == child_fd)
            return &pr->pipes[i];
    return NULL;
}

static int proc_write(tw_transport *t, const void *data, size_t len)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (!pr->stdin_pipe)
        return TW_ECLOSED;
    return after_write(pr, tw__pipe_write(&pr->stdin_pipe->pipe, data, len));
}

static int proc_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (!pr->stdin_pipe)
        return TW_ECLOSED;
    return after_write(pr, tw__pipe_writev(&pr->stdin_pipe->pipe, iov, iovcnt));
}

static int proc_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                          void *arg)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (!pr->stdin_pipe) {
        if (release)
            release(arg);
        return TW_ECLOSED;
    }
    return after_write(pr, tw__pipe_write_ref(&pr->stdin_pipe->pipe, data, len, release, arg));
}

int tw_process_write_to_child(tw_process *pr, int child_fd, const void *data, size_t len)
{
    proc_pipe *q = pipe_for(pr, child_fd);
    if (!q || !q->writer)
        return TW_EINVAL;
    return after_write(pr, tw__pipe_write(&q->pipe, data, len));
}

int tw_process_close_child_fd(tw_process *pr, int child_fd)
{
    proc_pipe *q = pipe_for(pr, child_fd);
    if (!q)
        return TW_EINVAL;
    if (q->pipe.closed || q->pipe.closing)
        return TW_ECLOSED;
    tw__pipe_close(&q->pipe);
    return 0;
}

int tw_process_close_stdin(tw_process *pr)
{
    return tw_process_close_child_fd(pr, 0);
}

static void proc_lose_connection(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (pr->base.state != TW_TRANSPORT_OPEN)
        return;
    pr->base.state = TW_TRANSPORT_DISCONNECTING;
    for (size_t i = 0; i < pr->npipes; i++)
        tw__pipe_close(&pr->pipes[i].pipe);
}

static int proc_lose_write_connection(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (!pr->stdin_pipe)
        return TW_ECLOSED;
    return tw_process_close_child_fd(pr, 0);
}

static void proc_pause(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    pr->flags |= PROC_PAUSED;
    for (size_t i = 0; i < pr->npipes; i++)
        if (!pr->pipes[i].writer)
            tw__pipe_pause(&pr->pipes[i].pipe);
}

static void proc_resume(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    pr->flags &= ~PROC_PAUSED;
    for (size_t i = 0; i < pr->npipes; i++)
        if (!pr->pipes[i].writer)
            tw__pipe_resume(&pr->pipes[i].pipe);
}

static int proc_register_producer(tw_transport *t, tw_producer *prod, bool streaming)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (pr->producer) {
        tw_log(TW_LOG_ERROR, "process", "register_producer: a producer is already registered");
        return TW_EBUSY;
    }
    if (!pr->stdin_pipe || pr->stdin_pipe->pipe.closed || (pr->flags & PROC_ENDED))
        return TW_ECLOSED;
    pr->producer = prod;
    pr->flags &= ~(PROC_PRODUCER_STREAMING | PROC_PRODUCER_PAUSED);
    if (streaming) {
        pr->flags |= PROC_PRODUCER_STREAMING;
        producer_check_high(pr);
    } else if (proc_buffered(t) == 0) {
        prod->ops->resume_producing(prod);
    }
    return 0;
}

static void proc_unregister_producer(tw_transport *t)
{
    struct tw_process *pr = (struct tw_process *)t;
    pr->producer = NULL;
    pr->flags &= ~(PROC_PRODUCER_STREAMING | PROC_PRODUCER_PAUSED);
}

static int proc_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    struct tw_process *pr = (struct tw_process *)t;
    if (value < 0 || (unsigned long)value > UINT32_MAX)
        return TW_EINVAL;
    switch (opt) {
    case TW_OPT_HIGH_WATER:
        pr->high_water = (uint32_t)value;
        producer_check_high(pr);
        return 0;
    case TW_OPT_LOW_WATER:
        pr->low_water = (uint32_t)value;
        return 0;
    case TW_OPT_WRITE_LIMIT:
        pr->write_limit = (uint32_t)value;
        return 0;
    default:
        return TW_EINVAL;
    }
}

static int proc_fd(const tw_transport *t)
{
    const struct tw_process *pr = (const struct tw_process *)t;
    return pr->stdin_pipe ? pr->stdin_pipe->pipe.io.fd : -1;
}

static const tw_transport_ops process_ops = {
    .kind = "process",
    .write = proc_write,
    .writev = proc_writev,
    .write_ref = proc_write_ref,
    .lose_connection = proc_lose_connection,
    .abort_connection = proc_abort,
    .lose_write_connection = proc_lose_write_connection,
    .pause_producing = proc_pause,
    .resume_producing = proc_resume,
    .stop_producing = proc_lose_connection, /* Twisted: stopProducing loses the connection */
    .register_producer = proc_register_producer,
    .unregister_producer = proc_unregister_producer,
    .set_option = proc_set_option,
    .buffered = proc_buffered,
    .fd = proc_fd,
};

tw_transport *tw_process_transport(tw_process *pr)
{
    return &pr->base;
}

pid_t tw_process_pid(const tw_process *pr)
{
    return pr->pid;
}

int tw_process_signal(tw_process *pr, int signo)
{
    if (signo < 0 || signo >= NSIG)
        return TW_EINVAL;
    if (pr->pid == 0)
        return -ESRCH;
    int rc;
#ifdef SYS_pidfd_send_signal
    if (pr->pid_io.fd >= 0) {
        rc = (int)syscall(SYS_pidfd_send_signal, pr->pid_io.fd, signo, NULL, 0);
        if (rc == 0 || errno != ENOSYS)
            return rc < 0 ? -errno : 0;
    }
#endif
    /* The pid is still ours: we have not reaped it, so it cannot be reused. */
    rc = kill(pr->pid, signo);
    return rc < 0 ? -errno : 0;
}

/* --------------------------------------------------------------- spawning */

static int fail_spawn(tw_process_protocol *p, const char *exe, const char *what, int rc)
{
    if (what)
        tw_log(TW_LOG_WARN, "process", "cannot run %s: %s: %s", exe, what, tw_strerror(rc));
    tw_process_protocol_free(p);
    return rc;
}

static const tw_child_fd default_fds[] = {
    { 0, TW_CHILD_PIPE_W, -1 },
    { 1, TW_CHILD_PIPE_R, -1 },
    { 2, TW_CHILD_PIPE_R, -1 },
};

static int check_fds(const tw_child_fd *fds, size_t n)
{
    if (n > TW_CHILD_FDS_MAX)
        return TW_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (fds[i].child_fd < 0 || fds[i].child_fd > TW_CHILD_FD_MAX)
            return TW_EINVAL;
        if (fds[i].kind != TW_CHILD_PIPE_W && fds[i].kind != TW_CHILD_PIPE_R &&
            fds[i].kind != TW_CHILD_FD_INHERIT)
            return TW_EINVAL;
        if (fds[i].kind == TW_CHILD_FD_INHERIT &&
            (fds[i].parent_fd < 0 || fcntl(fds[i].parent_fd, F_GETFD) < 0))
            return TW_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (fds[j].child_fd == fds[i].child_fd)
                return TW_EINVAL;
    }
    return 0;
}

/* Closes what the parent keeps of a process that never started. */
static void unwind(struct tw_process *pr, int *child_ends)
{
    pr->flags |= PROC_UNWINDING;
    for (size_t i = 0; i < pr->npipes; i++) {
        proc_pipe *q = &pr->pipes[i];
        if (q->pipe.reactor)
            tw__pipe_abort(&q->pipe, 0); /* closes the fd (OWN_FD) */
        else if (q->pipe.fd >= 0)
            close(q->pipe.fd);
        if (child_ends && child_ends[i] >= 0)
            close(child_ends[i]);
    }
    if (pr->pid_io.fd >= 0) {
        tw__io_stop(pr->base.reactor, &pr->pid_io);
        close(pr->pid_io.fd);
    }
    free(pr);
}

int tw_spawn_process(tw_reactor *r, tw_process_protocol *p, const char *const argv[],
                     const char *const env[], const char *cwd, const tw_process_options *opts,
                     tw_process **out)
{
    static const tw_process_options no_opts;
    if (out)
        *out = NULL;
    if (!p)
        return TW_EINVAL;
    if (!opts)
        opts = &no_opts;
    const char *exe = opts->executable ? opts->executable : (argv ? argv[0] : NULL);
    if (!argv || !argv[0] || !exe)
        return fail_spawn(p, "?", NULL, TW_EINVAL);
    const tw_child_fd *fds = opts->child_fds ? opts->child_fds : default_fds;
    size_t nfds = opts->child_fds ? opts->n_child_fds : 3;
    int rc = check_fds(fds, nfds);
    if (rc < 0)
        return fail_spawn(p, exe, "bad child_fds", rc);
    tw__procio *st = tw__procio_get(r);
    if (!st)
        return fail_spawn(p, exe, NULL, TW_ENOMEM);
    if (st->dying)
        return fail_spawn(p, exe, NULL, TW_ECLOSED);

    char *path;
    if ((rc = tw__resolve_program(exe, env, &path)) < 0)
        return fail_spawn(p, exe, rc == TW_ENOMEM ? NULL : "looking it up in PATH", rc);

    size_t npipes = 0;
    for (size_t i = 0; i < nfds; i++)
        npipes += fds[i].kind != TW_CHILD_FD_INHERIT;
    struct tw_process *pr = calloc(1, sizeof *pr + npipes * sizeof(proc_pipe));
    if (!pr) {
        free(path);
        return fail_spawn(p, exe, NULL, TW_ENOMEM);
    }
    tw_transport_init(&pr->base, &process_ops, r);
    pr->st = st;
    pr->proto = p;
    pr->high_water = TW_WRITE_HIGH_WATER;
    pr->low_water = TW_WRITE_LOW_WATER;
    pr->write_limit = TW_WRITE_LIMIT;
    pr->npipes = npipes;
    tw__io_init(&pr->pid_io, -1, 0, pid_ready);

    tw__child_plan plan = { 0 };
    plan.path = path;
    plan.argv = (char *const *)argv;
    plan.envp = env ? (char *const *)env : environ;
    plan.cwd = cwd;
    plan.n = (int)nfds;
    plan.new_session = opts->new_session;
    plan.set_uid = opts->set_uid;
    plan.uid = opts->uid;
    plan.set_gid = opts->set_gid;
    plan.gid = opts->gid;

    int child_ends[TW_CHILD_FDS_MAX];
    for (size_t i = 0; i < npipes; i++) {
        child_ends[i] = -1;
        pr->pipes[i].pipe.fd = -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < nfds; i++) {
        plan.dst[i] = fds[i].child_fd;
        if (fds[i].kind == TW_CHILD_FD_INHERIT) {
            plan.src[i] = fds[i].parent_fd;
            continue;
        }
        proc_pipe *q = &pr->pipes[k];
        q->proc = pr;
        q->child_fd = fds[i].child_fd;
        q->writer = fds[i].kind == TW_CHILD_PIPE_W;
        int ends[2];
        if (pipe2(ends, O_CLOEXEC) < 0) {
            rc = -errno;
            unwind(pr, child_ends);
            free(path);
            return fail_spawn(p, exe, "making pipes", rc);
        }
        /* The child's end stays blocking, as programs expect. */
        q->pipe.fd = q->writer ? ends[1] : ends[0];
        child_ends[k] = q->writer ? ends[0] : ends[1];
        fcntl(q->pipe.fd, F_SETFL, fcntl(q->pipe.fd, F_GETFL) | O_NONBLOCK);
        plan.src[i] = child_ends[k];
        if (q->writer && q->child_fd == 0)
            pr->stdin_pipe = q;
        k++;
    }

    pid_t pid = 0;
    int step = 0;
    rc = tw__child_start(&plan, &pid, &step);
    for (size_t i = 0; i < npipes; i++) {
        close(child_ends[i]);
        child_ends[i] = -1;
    }
    free(path);
    if (rc < 0) {
        unwind(pr, NULL);
        if (step == TW__CHILD_CHDIR) {
            tw_log(TW_LOG_WARN, "process", "cannot run %s: changing directory to %s: %s", exe, cwd,
                   tw_strerror(rc));
            return fail_spawn(p, exe, NULL, rc);
        }
        return fail_spawn(p, exe, tw__child_step_name(step), rc);
    }
    pr->pid = pid;

    /* Watch for the exit: a pidfd, or our SIGCHLD watcher. */
    int pidfd = -1;
#ifdef SYS_pidfd_open
    if (!atomic_load(&force_sigchld) && atomic_load(&pidfd_mode) >= 0) {
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd >= 0) {
            atomic_store(&pidfd_mode, 1);
        } else if (errno == ENOSYS) {
            atomic_store(&pidfd_mode, -1);
            tw_log(TW_LOG_DEBUG, "process", "no pidfd_open: watching exits through SIGCHLD");
        }
    }
#endif
    if (pidfd >= 0) {
        pr->pid_io.fd = pidfd;
        if (tw__io_set(r, &pr->pid_io, TW_READABLE) < 0) {
            close(pidfd);
            pr->pid_io.fd = -1;
        }
    }
    if (pr->pid_io.fd < 0) {
        if (!st->sigchld && (rc = tw_signal_watch(r, SIGCHLD, on_sigchld, st, &st->sigchld)) < 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            unwind(pr, NULL);
            return fail_spawn(p, exe, "watching SIGCHLD", rc);
        }
        pr->flags |= PROC_SIGCHLD;
        st->sigchld_children++;
        /* It may have exited before the watcher was there. */
        tw__task_post(r, &st->sigchld_check, sigchld_check_task);
    }

    for (size_t i = 0; i < npipes; i++) {
        proc_pipe *q = &pr->pipes[i];
        int fd = q->pipe.fd;
        rc = tw__pipe_start(&q->pipe, r, fd, (q->writer ? 0 : TW__PIPE_READER) | TW__PIPE_OWN_FD,
                            &proc_pipe_ops, pr);
        if (rc < 0) {
            q->pipe.reactor = NULL;
            q->pipe.fd = fd;
            for (size_t j = i + 1; j < npipes; j++)
                pr->pipes[j].pipe.reactor = NULL;
            pr->flags |= PROC_UNWINDING;
            tw_process_signal(pr, SIGKILL);
            reap_blocking(pr);
            tw__task_cancel(r, &pr->task);
            unwind(pr, NULL);
            return fail_spawn(p, exe, "watching its pipes", rc);
        }
    }

    pr->next = st->procs;
    if (st->procs)
        st->procs->prev = pr;
    st->procs = pr;
    p->process = pr;
    p->transport = &pr->base;
    if (out)
        *out = pr;
    if (p->ops->connection_made)
        p->ops->connection_made(p);
    return 0;
}
