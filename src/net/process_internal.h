/* process_internal.h — per-reactor state shared by the process and
 * standard I/O transports (slot TW__SLOT_PROCESS), starting children
 * (process_child.c), and test hooks. */
#ifndef TWIRL_PROCESS_INTERNAL_H
#define TWIRL_PROCESS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/reactor_internal.h"
#include "twirl/process.h"

struct tw_process;
struct tw_stdio;

typedef struct tw__procio {
    tw_reactor *reactor;
    /* process.c */
    struct tw_process *procs;   /* every process not yet ended */
    tw_signal_watcher *sigchld; /* while children lack a pidfd */
    size_t sigchld_children;    /* those children, not yet reaped */
    tw__task sigchld_check;     /* a reap pass after installing it */
    /* stdio.c */
    struct tw_stdio *stdios; /* every open standard I/O transport */
    tw__task free_task;
    int dying; /* the reactor is being freed: refuse new work */
} tw__procio;

/* The reactor's state, made (and its cleanup registered) on first use;
 * NULL when out of memory. */
tw__procio *tw__procio_get(tw_reactor *r);

/* stdio.c: at reactor free, flushes and ends every standard I/O transport. */
void tw__stdio_reactor_free(tw__procio *st);

/* ------------------------------------------------ process_child.c */

/* What the child is made of; everything borrowed for tw__child_start. */
typedef struct tw__child_plan {
    const char *path; /* resolved: execve, no PATH search */
    char *const *argv;
    char *const *envp;
    const char *cwd; /* NULL: ours */
    int n;
    int src[TW_CHILD_FDS_MAX]; /* our descriptor to become dst[i] in the child */
    int dst[TW_CHILD_FDS_MAX]; /* distinct; every other descriptor is closed */
    bool new_session, set_uid, set_gid;
    uid_t uid;
    gid_t gid;
} tw__child_plan;

/* The step of starting a child that failed. */
enum tw__child_step {
    TW__CHILD_FDS = 1,
    TW__CHILD_SETSID,
    TW__CHILD_CHDIR,
    TW__CHILD_GROUPS,
    TW__CHILD_GID,
    TW__CHILD_UID,
    TW__CHILD_EXEC,
    TW__CHILD_FORK
};
const char *tw__child_step_name(int step);

/* Starts the child (vfork, then the plan, then execve) and waits only
 * until it has exec'd or failed. Returns 0 with *pid set, or -errno with
 * *step naming what failed — the child is then already reaped. */
int tw__child_start(const tw__child_plan *plan, pid_t *pid, int *step);

/* The program to exec: as given when it has a '/', else looked up in PATH
 * (env's, or ours) like execvp. Stores a malloc'd path. Returns 0,
 * -ENOENT, -EACCES or TW_ENOMEM. */
int tw__resolve_program(const char *exe, const char *const env[], char **out);

/* Tests: watch exits through SIGCHLD even where pidfds work (true), or
 * back to pidfds when available (false). */
void tw__process_force_sigchld(bool on);

#endif
