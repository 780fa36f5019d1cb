/* twirl/process.h — child processes (Twisted's reactor.spawnProcess,
 * ProcessProtocol and IProcessTransport).
 *
 * tw_spawn_process starts a program with pipes to some of its descriptors
 * and drives a process protocol: bytes the child writes arrive through
 * child_data_received (out_received and err_received for fds 1 and 2), what
 * the protocol writes goes to the child's stdin, and the end is told in two
 * steps, as in Twisted: process_exited when the child has been reaped,
 * process_ended once it has exited AND every pipe is closed (so all of its
 * output has been delivered).
 *
 *     typedef struct run { tw_process_protocol base; size_t bytes; } run;
 *     static void run_out(tw_process_protocol *p, const void *data, size_t len)
 *     {
 *         ((run *)p)->bytes += len;
 *     }
 *     static void run_ended(tw_process_protocol *p, const tw_process_status *s)
 *     {
 *         printf("%zu bytes, exit code %d\n", ((run *)p)->bytes,
 *                tw_process_status_exit_code(s));
 *     }
 *     static const tw_process_protocol_ops run_ops = {
 *         .size = sizeof(run), .out_received = run_out, .process_ended = run_ended,
 *     };
 *     const char *argv[] = { "ls", "-l", NULL };
 *     tw_spawn_process(r, tw_process_protocol_alloc(&run_ops), argv, NULL, NULL,
 *                      NULL, NULL);
 *
 * The process is also a tw_transport (p->transport): tw_transport_write
 * writes to the child's stdin with the usual write queue, water marks and
 * producers (twirl/transport.h); pause/resume_producing pause reading from
 * all of the child's output pipes, so a slow protocol makes the child wait
 * rather than the parent buffer; lose_connection closes stdin once flushed
 * and closes the other pipes, then the process is waited for.
 *
 * Exits are observed without races and without reaping anyone else's
 * children: through a pidfd (Linux 5.3+) watched by the reactor, or, where
 * pidfds are missing, a SIGCHLD watcher that calls waitpid on this
 * reactor's own children only. Nothing is left a zombie: every child is
 * reaped. While the SIGCHLD fallback is in use the library owns SIGCHLD's
 * disposition (see tw_signal_watch).
 *
 * Freeing the reactor kills (SIGKILL) and reaps every child still running:
 * nothing outlives its reactor. Before that its pipes are closed, then the
 * protocol gets child_connection_lost for each, process_exited (killed by
 * SIGKILL), process_ended and destroy, so nothing leaks. To let a child run
 * on, end your use of it before freeing the reactor (for instance a daemon
 * that forks and exits itself).
 *
 * All functions must be called on the reactor's thread. */
#ifndef TWIRL_PROCESS_H
#define TWIRL_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "twirl/reactor.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_process tw_process;
typedef struct tw_process_protocol tw_process_protocol;

/* ------------------------------------------------------------ exit status */

typedef enum tw_process_end {
    TW_PROCESS_UNKNOWN = 0, /* reaped by someone else (SIGCHLD ignored?): status lost */
    TW_PROCESS_EXITED,      /* returned from main or called exit(code) */
    TW_PROCESS_SIGNALLED    /* killed by a signal */
} tw_process_end;

/* How a child ended (Twisted's ProcessDone / ProcessTerminated). */
typedef struct tw_process_status {
    pid_t pid;          /* the pid it had */
    tw_process_end how; /* exited, signalled, or unknown */
    int code;           /* the exit code (0-255) or the signal number */
    bool core_dumped;   /* signalled, with a core dump */
    int wait_status;    /* as waitpid(2) would give it: WIFEXITED() etc. work */
} tw_process_status;

static inline bool tw_process_status_exited(const tw_process_status *s)
{
    return s->how == TW_PROCESS_EXITED;
}
/* The exit code, or -1 if the process did not exit normally. */
static inline int tw_process_status_exit_code(const tw_process_status *s)
{
    return s->how == TW_PROCESS_EXITED ? s->code : -1;
}
static inline bool tw_process_status_signalled(const tw_process_status *s)
{
    return s->how == TW_PROCESS_SIGNALLED;
}
/* The signal that killed it, or 0. */
static inline int tw_process_status_signal(const tw_process_status *s)
{
    return s->how == TW_PROCESS_SIGNALLED ? s->code : 0;
}
/* True for exit code 0 (Twisted's ProcessDone, versus ProcessTerminated). */
static inline bool tw_process_status_success(const tw_process_status *s)
{
    return s->how == TW_PROCESS_EXITED && s->code == 0;
}

/* Renders "exit code 3", "killed by signal 15 (Terminated)" (", core
 * dumped") or "status unknown" into buf (NUL-terminated when size > 0);
 * returns the length it needed, like snprintf. */
size_t tw_process_status_format(const tw_process_status *s, char *buf, size_t size);

/* ------------------------------------------------------------ protocols */

/* The hooks (Twisted's ProcessProtocol). Every one is optional. Hooks get
 * the protocol pointer: cast it to your struct, which embeds
 * tw_process_protocol first. Data pointers are borrowed for the call only
 * (they live in the reactor's shared read buffer). A hook may call any
 * function here — write, close pipes, signal, lose the connection — on its
 * own process or another; what that ends is told later, from the loop,
 * never inside the caller. No hook is called after process_ended. */
typedef struct tw_process_protocol_ops {
    /* Bytes to allocate: sizeof your struct. 0: sizeof(tw_process_protocol). */
    size_t size;
    /* The child is running and p->process is usable. Called inside
     * tw_spawn_process, before it returns. */
    void (*connection_made)(tw_process_protocol *p);
    /* Bytes the child wrote to child_fd (a TW_CHILD_PIPE_R). When NULL, fd
     * 1 goes to out_received, fd 2 to err_received, others are dropped. */
    void (*child_data_received)(tw_process_protocol *p, int child_fd, const void *data, size_t len);
    void (*out_received)(tw_process_protocol *p, const void *data, size_t len);
    void (*err_received)(tw_process_protocol *p, const void *data, size_t len);
    /* One of the pipes is closed for good: the child closed it (EOF on a
     * pipe we read; a pipe we write whose reading end the child closed, or
     * exited with), or we did (close_child_fd, lose_connection). Once per
     * pipe. When NULL, fds 0, 1, 2 go to in/out/err_connection_lost. */
    void (*child_connection_lost)(tw_process_protocol *p, int child_fd);
    void (*in_connection_lost)(tw_process_protocol *p);
    void (*out_connection_lost)(tw_process_protocol *p);
    void (*err_connection_lost)(tw_process_protocol *p);
    /* The child has ended and was reaped; pipes may still be open (a
     * grandchild may hold them). Once. status is borrowed for the call. */
    void (*process_exited)(tw_process_protocol *p, const tw_process_status *status);
    /* The last hook: exited and every pipe closed. Once. After it returns
     * p->process is gone. */
    void (*process_ended)(tw_process_protocol *p, const tw_process_status *status);
    /* Frees what the protocol itself allocated; runs after process_ended,
     * or when a spawn fails, or from tw_process_protocol_free. */
    void (*destroy)(tw_process_protocol *p);
} tw_process_protocol_ops;

struct tw_process_protocol {
    const tw_process_protocol_ops *ops;
    tw_process *process;     /* set before connection_made; NULL after process_ended */
    tw_transport *transport; /* the same process as a transport (writes go to stdin) */
    void *user_data;         /* yours; never touched */
};

/* Allocates a zeroed protocol of ops->size bytes with ops set. Set your
 * fields, then hand it to tw_spawn_process, which takes it. NULL when out
 * of memory. ops is borrowed and must outlive the protocol. */
tw_process_protocol *tw_process_protocol_alloc(const tw_process_protocol_ops *ops);
/* Calls destroy and frees: only for a protocol never given to
 * tw_spawn_process. NULL is a no-op. */
void tw_process_protocol_free(tw_process_protocol *p);

/* ------------------------------------------------------------ spawning */

/* What to make of one of the child's descriptors (Twisted's childFDs). */
typedef enum tw_child_fd_kind {
    TW_CHILD_PIPE_W = 1, /* "w": a pipe we write and the child reads (stdin) */
    TW_CHILD_PIPE_R,     /* "r": a pipe the child writes and we read (stdout, stderr) */
    TW_CHILD_FD_INHERIT  /* an int in Twisted: our descriptor parent_fd, as is */
} tw_child_fd_kind;

typedef struct tw_child_fd {
    int child_fd; /* the number the child sees: 0 .. TW_CHILD_FD_MAX */
    tw_child_fd_kind kind;
    int parent_fd; /* TW_CHILD_FD_INHERIT only: borrowed, stays open here */
} tw_child_fd;

enum {
    TW_CHILD_FD_MAX = 1023, /* highest child_fd accepted */
    TW_CHILD_FDS_MAX = 64   /* most entries in a child_fds table */
};

typedef struct tw_process_options {
    /* The program to run; NULL: argv[0]. A name without '/' is looked up in
     * PATH (the child's PATH when env sets one, else ours). */
    const char *executable;
    /* The child's descriptors; NULL: { 0 "w", 1 "r", 2 "r" }. Descriptors
     * not listed are closed in the child, including 0-2 and any of ours
     * not marked close-on-exec. */
    const tw_child_fd *child_fds;
    size_t n_child_fds;
    /* setsid(2) in the child: a new session and process group, no
     * controlling terminal. */
    bool new_session;
    /* Switch user and group in the child (needs privilege). When either is
     * set and we are root, supplementary groups are dropped too. */
    bool set_uid;
    uid_t uid;
    bool set_gid;
    gid_t gid;
} tw_process_options;

/* Starts argv (NULL-terminated; argv[0] is the name the program sees) with
 * environment env (NULL-terminated "NAME=value" strings; NULL: ours) in
 * directory cwd (NULL: ours), opts may be NULL. Everything is borrowed for
 * the call; p is taken: it belongs to the library from now on, whatever the
 * outcome (on failure destroy runs and it is freed before this returns, and
 * no other hook is called).
 *
 * The child starts with default signal dispositions (the handlers the
 * reactor installed and the SIGPIPE it ignores are reset; other ignored
 * signals stay ignored, as with nohup) and our signal mask.
 *
 * On success calls connection_made, stores the process in *out (if not
 * NULL; owned by the library, valid until process_ended returns) and
 * returns 0. Otherwise returns -errno, logged at warn level with the
 * program's name and the step that failed: -ENOENT when the program (or
 * cwd) does not exist, -EACCES when it is not executable, -EPERM for
 * set_uid without privilege, -EMFILE...; TW_EINVAL for a bad argument
 * (empty argv, a child_fds entry out of range or repeated, an INHERIT
 * parent_fd that is not open); TW_ENOMEM; TW_ECLOSED while the reactor is
 * being freed. A failing exec is reported here, not as an exit status: the
 * child reports it through a close-on-exec pipe before the call returns. */
int tw_spawn_process(tw_reactor *r, tw_process_protocol *p, const char *const argv[],
                     const char *const env[], const char *cwd, const tw_process_options *opts,
                     tw_process **out);

/* ------------------------------------------------------------ the process */

/* The process as a transport: p->transport. */
tw_transport *tw_process_transport(tw_process *proc);

/* The child's pid, or 0 once it has been reaped. */
pid_t tw_process_pid(const tw_process *proc);

/* Writes to one of the child's TW_CHILD_PIPE_W descriptors (Twisted's
 * writeToChild); child_fd 0 is the same as tw_transport_write. Copies or
 * sends at once. Returns 0, TW_EINVAL if child_fd is not a pipe we write,
 * TW_ECLOSED once that pipe is closed or closing, -EPIPE if the child has
 * closed it (the pipe is then lost), TW_ELIMIT past the write limit (the
 * process's pipes are then aborted). */
int tw_process_write_to_child(tw_process *proc, int child_fd, const void *data, size_t len);

/* Closes one pipe: a pipe we write after what was written is flushed (the
 * child then reads EOF), a pipe we read at once. child_connection_lost
 * follows from the loop. Returns 0, TW_EINVAL if child_fd is not one of our
 * pipes, TW_ECLOSED if it is already closed or closing. Safe inside hooks. */
int tw_process_close_child_fd(tw_process *proc, int child_fd);
/* Twisted's closeStdin: tw_process_close_child_fd(proc, 0). */
int tw_process_close_stdin(tw_process *proc);

/* Sends signo (0: only check) to the child (Twisted's signalProcess).
 * Returns 0, -ESRCH once the child has been reaped (ProcessExitedAlready:
 * inside process_exited and after), TW_EINVAL for a bad signal, or -errno.
 * Never reaches another process that reused the pid: the pid stays ours
 * until we reap it, and with a pidfd the signal goes through the pidfd. */
int tw_process_signal(tw_process *proc, int signo);

#ifdef __cplusplus
}
#endif
#endif
