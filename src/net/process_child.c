/* process_child.c — starting a program: vfork, arrange the child, execve.
 *
 * Everything the child needs is prepared before vfork; the child then
 * makes only system calls before execve — it runs on our memory until
 * then, so it allocates nothing, takes no lock and changes nothing of ours.
 * If a step fails (exec included) the child writes the step and errno to a
 * close-on-exec pipe and exits; we read that pipe before returning, so a
 * missing program is an error code here, never a mysterious exit status
 * later. All signals are blocked around vfork so that no handler of ours
 * runs in the child. (Under valgrind vfork is a fork: the pipe still
 * reports, since it does not rely on shared memory.) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/process_internal.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

const char *tw__child_step_name(int step)
{
    switch (step) {
    case TW__CHILD_FDS:
        return "setting up descriptors";
    case TW__CHILD_SETSID:
        return "setsid";
    case TW__CHILD_CHDIR:
        return "changing directory";
    case TW__CHILD_GROUPS:
        return "setgroups";
    case TW__CHILD_GID:
        return "setgid";
    case TW__CHILD_UID:
        return "setuid";
    case TW__CHILD_EXEC:
        return "exec";
    case TW__CHILD_FORK:
        return "vfork";
    default:
        return "starting";
    }
}

/* The plan plus what is worked out for it before vfork. */
typedef struct launch {
    const tw__child_plan *pl;
    int err_fd;
    int keep[TW_CHILD_FDS_MAX]; /* dst, sorted */
    int top;                    /* above every dst: where sources are parked */
    int fd_limit;               /* for marking without close_range */
    bool drop_groups;
    sigset_t mask; /* the mask the program starts with: the caller's */
} launch;

__attribute__((noreturn)) static void child_fail(int fd, int step)
{
    int msg[2] = { step, errno };
    ssize_t n = write(fd, msg, sizeof msg);
    (void)n;
    _exit(127);
}

/* Marks [lo, hi] close-on-exec. */
static void child_cloexec_range(unsigned lo, unsigned hi, int limit)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) == 0)
        return;
#endif
    for (unsigned fd = lo; fd <= hi && fd < (unsigned)limit; fd++)
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
}

/* Runs in the vforked child: system calls only. Credential changes are raw
 * system calls: glibc's wrappers would try to apply them to every thread of
 * the parent it believes it is. */
__attribute__((noreturn, noinline)) static void child_main(const launch *l)
{
    const tw__child_plan *pl = l->pl;
    int err_fd = l->err_fd;

    /* Handlers would run our code in the child; ignoring SIGPIPE (the
     * reactor's doing) would change how the program dies on a closed pipe. */
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &sa) < 0)
            continue;
        if (sa.sa_handler == SIG_DFL)
            continue;
        if (sa.sa_handler == SIG_IGN && s != SIGPIPE && s != SIGXFSZ)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(s, &sa, NULL);
    }

    /* Park the error pipe and every source above all targets, so that no
     * dup2 below overwrites one still needed. */
    if (err_fd < l->top) {
        int e = fcntl(err_fd, F_DUPFD_CLOEXEC, l->top);
        if (e < 0)
            child_fail(err_fd, TW__CHILD_FDS);
        err_fd = e;
    }
    int parked[TW_CHILD_FDS_MAX];
    for (int i = 0; i < pl->n; i++)
        if ((parked[i] = fcntl(pl->src[i], F_DUPFD_CLOEXEC, l->top)) < 0)
            child_fail(err_fd, TW__CHILD_FDS);
    for (int i = 0; i < pl->n; i++)
        if (dup2(parked[i], pl->dst[i]) < 0) /* clears close-on-exec */
            child_fail(err_fd, TW__CHILD_FDS);
    /* Everything else closes at exec, whoever opened it. */
    unsigned lo = 0;
    for (int i = 0; i < pl->n; i++) {
        if ((unsigned)l->keep[i] > lo)
            child_cloexec_range(lo, (unsigned)l->keep[i] - 1, l->fd_limit);
        lo = (unsigned)l->keep[i] + 1;
    }
    child_cloexec_range(lo, ~0U, l->fd_limit);

    if (pl->new_session && setsid() < 0)
        child_fail(err_fd, TW__CHILD_SETSID);
    if (pl->cwd && chdir(pl->cwd) < 0)
        child_fail(err_fd, TW__CHILD_CHDIR);
    if (l->drop_groups && syscall(SYS_setgroups, 0, NULL) < 0)
        child_fail(err_fd, TW__CHILD_GROUPS);
    if (pl->set_gid && syscall(SYS_setgid, pl->gid) < 0)
        child_fail(err_fd, TW__CHILD_GID);
    if (pl->set_uid && syscall(SYS_setuid, pl->uid) < 0)
        child_fail(err_fd, TW__CHILD_UID);

    sigprocmask(SIG_SETMASK, &l->mask, NULL);
    execve(pl->path, pl->argv, pl->envp);
    child_fail(err_fd, TW__CHILD_EXEC);
}

/* Kept apart so that nothing live in the caller spans the vfork. */
__attribute__((noinline)) static pid_t vfork_child(const launch *l)
{
    pid_t pid = vfork();
    if (pid == 0)
        child_main(l);
    return pid;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int tw__child_start(const tw__child_plan *pl, pid_t *pid, int *step)
{
    launch l = { .pl = pl };
    *pid = 0;
    *step = 0;
    for (int i = 0; i < pl->n; i++) {
        l.keep[i] = pl->dst[i];
        if (l.top <= pl->dst[i])
            l.top = pl->dst[i] + 1;
    }
    qsort(l.keep, (size_t)pl->n, sizeof l.keep[0], cmp_int);
    struct rlimit rl;
    l.fd_limit =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    l.drop_groups = (pl->set_uid || pl->set_gid) && geteuid() == 0;

    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        *step = TW__CHILD_FDS;
        return -errno;
    }
    l.err_fd = err_pipe[1];

    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &l.mask);
    pid_t child = vfork_child(&l);
    int fork_err = errno;
    pthread_sigmask(SIG_SETMASK, &l.mask, NULL);
    close(err_pipe[1]);
    if (child < 0) {
        close(err_pipe[0]);
        *step = TW__CHILD_FORK;
        return -fork_err;
    }

    /* Did it get as far as exec? EOF means yes (the pipe closed on exec). */
    int msg[2];
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t n = read(err_pipe[0], (char *)msg + got, sizeof msg - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(err_pipe[0]);
    if (got == 0) {
        *pid = child;
        return 0;
    }
    /* It failed and exits at once: reap it here, it was never announced. */
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof msg || msg[1] <= 0)
        return TW_EPROTO;
    *step = msg[0];
    return -msg[1];
}

int tw__resolve_program(const char *exe, const char *const env[], char **out)
{
    *out = NULL;
    if (!*exe)
        return -ENOENT;
    if (strchr(exe, '/')) {
        *out = strdup(exe);
        return *out ? 0 : TW_ENOMEM;
    }
    const char *path = NULL;
    if (env) {
        for (size_t i = 0; env[i]; i++)
            if (strncmp(env[i], "PATH=", 5) == 0) {
                path = env[i] + 5;
                break;
            }
    } else {
        path = getenv("PATH");
    }
    if (!path)
        path = "/bin:/usr/bin";
    size_t exe_len = strlen(exe);
    int err = -ENOENT;
    for (const char *seg = path;; seg++) {
        const char *end = strchr(seg, ':');
        size_t dir_len = end ? (size_t)(end - seg) : strlen(seg);
        size_t cap = dir_len + exe_len + 3;
        char *cand = malloc(cap);
        if (!cand)
            return TW_ENOMEM;
        if (dir_len == 0) /* an empty entry is the current directory */
            snprintf(cand, cap, "./%s", exe);
        else
            snprintf(cand, cap, "%.*s/%s", (int)dir_len, seg, exe);
        struct stat sb;
        if (access(cand, X_OK) == 0) {
            if (stat(cand, &sb) == 0 && S_ISREG(sb.st_mode)) {
                *out = cand;
                return 0;
            }
            err = -EACCES; /* a directory of that name, as execvp says */
        } else if (errno == EACCES) {
            err = -EACCES;
        }
        free(cand);
        if (!end)
            break;
        seg = end;
    }
    return err;
}
