/* ctest: label=integration timeout=300 */
/* Child processes: real programs (/bin/sh, cat, sleep) spawned through
 * tw_spawn_process — output, exit statuses, hook order, descriptor maps,
 * flow control both ways, spawn failures, reaping, and reactor free with
 * children still running; once through pidfds, once through SIGCHLD. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "net/process_internal.h"
#include "tt.h"
#include "twirl/log.h"
#include "twirl/process.h"

/* ------------------------------------------------------------ recorder */

/* What one process told its protocol. */
typedef struct events {
    int made, exited, ended, destroyed;
    int after_end;   /* hooks after process_ended: must stay 0 */
    int lost[8];     /* child_connection_lost per child fd */
    char order[128]; /* M made, o out, e err, 0-7 lost, X exited, D ended */
    size_t norder;
    char out[8192], err[1024], fd3[256];
    size_t out_len, err_len, fd3_len;
    tw_process_status exit_st, end_st;
    int signal_in_exit; /* tw_process_signal inside process_exited */
    tw_process *proc;
    pid_t pid;
} events;

typedef struct rec {
    tw_process_protocol base;
    int ended;
} rec;

static events *ev(tw_process_protocol *p)
{
    return p->user_data;
}

static void mark(tw_process_protocol *p, char c)
{
    events *e = ev(p);
    if (((rec *)p)->ended)
        e->after_end++;
    if (e->norder < sizeof e->order - 1 &&
        (e->norder == 0 || e->order[e->norder - 1] != c || (c != 'o' && c != 'e')))
        e->order[e->norder++] = c;
}

static void append(char *buf, size_t cap, size_t *len, const void *data, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = 0;
}

static void r_made(tw_process_protocol *p)
{
    events *e = ev(p);
    e->made++;
    e->proc = p->process;
    e->pid = tw_process_pid(p->process);
    assert_true(p->transport == tw_process_transport(p->process));
    mark(p, 'M');
}

static void r_out(tw_process_protocol *p, const void *data, size_t len)
{
    events *e = ev(p);
    append(e->out, sizeof e->out, &e->out_len, data, len);
    mark(p, 'o');
}

static void r_err(tw_process_protocol *p, const void *data, size_t len)
{
    events *e = ev(p);
    append(e->err, sizeof e->err, &e->err_len, data, len);
    mark(p, 'e');
}

static void r_child_data(tw_process_protocol *p, int fd, const void *data, size_t len)
{
    events *e = ev(p);
    if (fd == 1)
        r_out(p, data, len);
    else if (fd == 2)
        r_err(p, data, len);
    else if (fd == 3)
        append(e->fd3, sizeof e->fd3, &e->fd3_len, data, len);
}

static void r_lost(tw_process_protocol *p, int fd)
{
    events *e = ev(p);
    if (fd >= 0 && fd < 8)
        e->lost[fd]++;
    mark(p, (char)('0' + (fd < 8 ? fd : 7)));
}

static void r_in_lost(tw_process_protocol *p)
{
    r_lost(p, 0);
}
static void r_out_lost(tw_process_protocol *p)
{
    r_lost(p, 1);
}
static void r_err_lost(tw_process_protocol *p)
{
    r_lost(p, 2);
}

static void r_exited(tw_process_protocol *p, const tw_process_status *s)
{
    events *e = ev(p);
    e->exited++;
    e->exit_st = *s;
    assert_int_equal(tw_process_pid(p->process), 0);
    e->signal_in_exit = tw_process_signal(p->process, SIGTERM);
    mark(p, 'X');
}

static void r_ended(tw_process_protocol *p, const tw_process_status *s)
{
    events *e = ev(p);
    e->ended++;
    e->end_st = *s;
    mark(p, 'D');
    ((rec *)p)->ended = 1;
    /* Everything is closed: writes and closes are refused, not crashes. */
    assert_int_equal(tw_transport_write(p->transport, "x", 1), TW_ECLOSED);
    int rc = tw_process_close_stdin(p->process);
    assert_true(rc == TW_ECLOSED || rc == TW_EINVAL); /* closed, or never a pipe */
    assert_int_equal(tw_process_signal(p->process, SIGTERM), -ESRCH);
}

static void r_destroy(tw_process_protocol *p)
{
    ev(p)->destroyed++;
}

/* Uses the default dispatch to out/err and in/out/err_connection_lost. */
static const tw_process_protocol_ops rec_ops = {
    .size = sizeof(rec),
    .connection_made = r_made,
    .out_received = r_out,
    .err_received = r_err,
    .in_connection_lost = r_in_lost,
    .out_connection_lost = r_out_lost,
    .err_connection_lost = r_err_lost,
    .process_exited = r_exited,
    .process_ended = r_ended,
    .destroy = r_destroy,
};

/* Takes every fd through the generic hooks. */
static const tw_process_protocol_ops rec_fd_ops = {
    .size = sizeof(rec),
    .connection_made = r_made,
    .child_data_received = r_child_data,
    .child_connection_lost = r_lost,
    .process_exited = r_exited,
    .process_ended = r_ended,
    .destroy = r_destroy,
};

static tw_process_protocol *new_rec(const tw_process_protocol_ops *ops, events *e)
{
    memset(e, 0, sizeof *e);
    tw_process_protocol *p = tw_process_protocol_alloc(ops);
    assert_non_null(p);
    p->user_data = e;
    return p;
}

static bool is_ended(void *arg)
{
    return ((events *)arg)->ended > 0;
}

static bool is_exited(void *arg)
{
    return ((events *)arg)->exited > 0;
}

static int spawn_sh(tw_reactor *r, events *e, const char *script)
{
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    return tw_spawn_process(r, new_rec(&rec_ops, e), argv, NULL, NULL, NULL, NULL);
}

/* Runs a shell script to its end. */
static void run_sh(tw_reactor *r, events *e, const char *script)
{
    assert_int_equal(spawn_sh(r, e, script), 0);
    assert_true(tt_run_until(r, is_ended, e, 20));
    assert_int_equal(e->made, 1);
    assert_int_equal(e->exited, 1);
    assert_int_equal(e->ended, 1);
    assert_int_equal(e->destroyed, 1);
    assert_int_equal(e->after_end, 0);
    assert_int_equal(e->signal_in_exit, -ESRCH);
}

/* Children of this process still present (zombies included). */
static int my_children(int *zombies)
{
    DIR *d = opendir("/proc");
    int n = 0;
    *zombies = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[300], buf[512];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        char *close_paren = strrchr(buf, ')');
        char state;
        int ppid;
        if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2)
            continue;
        if (ppid == getpid()) {
            n++;
            *zombies += state == 'Z';
        }
    }
    if (d)
        closedir(d);
    return n;
}

static int process_exists(pid_t pid)
{
    return kill(pid, 0) == 0 || errno != ESRCH;
}

/* ------------------------------------------------------------ basics */

static void cat_echoes_and_ends_in_order(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    const char *argv[] = { "cat", NULL }; /* found through PATH */
    tw_process *proc;
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    assert_int_equal(e.made, 1);
    assert_ptr_equal(e.proc, proc);
    assert_true(tw_process_pid(proc) > 0);
    assert_string_equal(tw_process_transport(proc)->ops->kind, "process");
    assert_int_equal(tw_transport_write_str(tw_process_transport(proc), "hello "), 0);
    assert_int_equal(tw_process_write_to_child(proc, 0, "world", 5), 0);
    assert_int_equal(tw_process_write_to_child(proc, 1, "x", 1), TW_EINVAL); /* a pipe we read */
    assert_int_equal(tw_process_close_stdin(proc), 0);
    assert_int_equal(tw_process_close_stdin(proc), TW_ECLOSED);
    assert_int_equal(tw_transport_write(tw_process_transport(proc), "late", 4), TW_ECLOSED);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_string_equal(e.out, "hello world");
    assert_int_equal(e.lost[0], 1);
    assert_int_equal(e.lost[1], 1);
    assert_int_equal(e.lost[2], 1);
    assert_true(tw_process_status_success(&e.end_st));
    assert_int_equal(e.end_st.pid, e.pid);
    assert_int_equal(e.destroyed, 1);
    assert_int_equal(e.after_end, 0);
    /* made first, ended last; the output before its pipe's end. */
    assert_int_equal(e.order[0], 'M');
    assert_int_equal(e.order[e.norder - 1], 'D');
    assert_non_null(strchr(e.order, '0'));
    assert_true(strchr(e.order, 'o') < strchr(e.order, '1'));
    tw_reactor_free(r);
}

static void exit_code_is_reported(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    run_sh(r, &e, "echo out; echo err >&2; exit 3");
    assert_string_equal(e.out, "out\n");
    assert_string_equal(e.err, "err\n");
    assert_true(tw_process_status_exited(&e.exit_st));
    assert_false(tw_process_status_signalled(&e.exit_st));
    assert_int_equal(tw_process_status_exit_code(&e.exit_st), 3);
    assert_int_equal(tw_process_status_signal(&e.exit_st), 0);
    assert_false(tw_process_status_success(&e.exit_st));
    assert_true(WIFEXITED(e.exit_st.wait_status) && WEXITSTATUS(e.exit_st.wait_status) == 3);
    char buf[64];
    tw_process_status_format(&e.end_st, buf, sizeof buf);
    assert_string_equal(buf, "exit code 3");
    tw_reactor_free(r);
}

static void signal_status_is_reported(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    run_sh(r, &e, "kill -TERM $$; sleep 5");
    assert_true(tw_process_status_signalled(&e.exit_st));
    assert_int_equal(tw_process_status_signal(&e.exit_st), SIGTERM);
    assert_int_equal(tw_process_status_exit_code(&e.exit_st), -1);
    assert_true(WIFSIGNALED(e.exit_st.wait_status) && WTERMSIG(e.exit_st.wait_status) == SIGTERM);
    char buf[64];
    tw_process_status_format(&e.exit_st, buf, sizeof buf);
    assert_string_equal(buf, "killed by signal 15 (Terminated)");
    tw_reactor_free(r);
}

static void signal_process_kills_it(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    const char *argv[] = { "sleep", "30", NULL };
    tw_process *proc;
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    assert_int_equal(tw_process_signal(proc, 0), 0);
    assert_int_equal(tw_process_signal(proc, -1), TW_EINVAL);
    assert_int_equal(tw_process_signal(proc, SIGKILL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(tw_process_status_signal(&e.exit_st), SIGKILL);
    assert_int_equal(e.signal_in_exit, -ESRCH); /* ProcessExitedAlready */
    tw_reactor_free(r);
}

/* A pipe we read closed by us makes the writer die of SIGPIPE: the child
 * gets SIGPIPE's default back although the reactor ignores it here. */
static void child_gets_default_sigpipe(void **state)
{
    tw_reactor *r = tt_reactor();
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    assert_true(sa.sa_handler == SIG_IGN);
    events e;
    tw_process *proc;
    const char *argv[] = { "/bin/sh", "-c", "while :; do echo y; done", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    assert_int_equal(tw_process_close_child_fd(proc, 1), 0);
    assert_int_equal(tw_process_close_child_fd(proc, 1), TW_ECLOSED);
    assert_int_equal(tw_process_close_child_fd(proc, 9), TW_EINVAL);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(tw_process_status_signal(&e.exit_st), SIGPIPE);
    tw_reactor_free(r);
}

/* The child exits while a grandchild still holds its stdout: exited comes
 * at once, ended only after the late output and the pipe's close. */
static void ended_waits_for_every_pipe(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    assert_int_equal(spawn_sh(r, &e, "(sleep 0.3; echo late) & exit 0"), 0);
    assert_true(tt_run_until(r, is_exited, &e, 10));
    assert_int_equal(e.ended, 0);
    assert_int_equal(e.out_len, 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_string_equal(e.out, "late\n");
    const char *x = strchr(e.order, 'X'), *o = strchr(e.order, 'o'), *l = strchr(e.order, '1');
    assert_true(x && o && l && x < o && o < l);
    assert_int_equal(e.order[e.norder - 1], 'D');
    tw_reactor_free(r);
}

/* A child that exits without reading: the stdin pipe is lost too (the
 * reader went away), and a later write is refused. */
static void stdin_lost_when_child_exits(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    tw_process *proc;
    const char *argv[] = { "/bin/sh", "-c", "exec 0<&-; sleep 0.1", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(e.lost[0], 1);
    assert_true(strchr(e.order, '0') < strchr(e.order, 'X'));
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ failures */

static void spawn_failures_are_codes(void **state)
{
    tw_reactor *r = tt_reactor();
    int fds_before = tt_open_fds();
    events e;
    const char *missing[] = { "/nonexistent/program", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), missing, NULL, NULL, NULL, NULL),
                     -ENOENT);
    assert_int_equal(e.made, 0);
    assert_int_equal(e.destroyed, 1);

    const char *unknown[] = { "no-such-program-twirl", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), unknown, NULL, NULL, NULL, NULL),
                     -ENOENT);
    assert_int_equal(e.destroyed, 1);

    const char *sh[] = { "/bin/sh", "-c", "exit 0", NULL };
    assert_int_equal(
        tw_spawn_process(r, new_rec(&rec_ops, &e), sh, NULL, "/nonexistent/dir", NULL, NULL),
        -ENOENT);
    assert_int_equal(e.destroyed, 1);

    const char *dir[] = { "/tmp", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), dir, NULL, NULL, NULL, NULL),
                     -EACCES);

    char *tmp = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/not-executable", tmp);
    FILE *f = fopen(path, "w");
    fputs("#!/bin/sh\n", f);
    fclose(f);
    const char *noexec[] = { path, NULL };
    /* No x bit at all: refused even to root. */
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), noexec, NULL, NULL, NULL, NULL),
                     -EACCES);
    tt_rmdir(tmp);

    /* Bad arguments. */
    const char *empty[] = { NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), empty, NULL, NULL, NULL, NULL),
                     TW_EINVAL);
    assert_int_equal(e.destroyed, 1);
    tw_child_fd twice[] = { { 1, TW_CHILD_PIPE_R, 0 }, { 1, TW_CHILD_PIPE_R, 0 } };
    tw_process_options o = { .child_fds = twice, .n_child_fds = 2 };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), sh, NULL, NULL, &o, NULL),
                     TW_EINVAL);
    tw_child_fd closed_parent[] = { { 0, TW_CHILD_FD_INHERIT, 999 } };
    o = (tw_process_options){ .child_fds = closed_parent, .n_child_fds = 1 };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), sh, NULL, NULL, &o, NULL),
                     TW_EINVAL);
    tw_child_fd too_high[] = { { TW_CHILD_FD_MAX + 1, TW_CHILD_PIPE_R, 0 } };
    o = (tw_process_options){ .child_fds = too_high, .n_child_fds = 1 };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), sh, NULL, NULL, &o, NULL),
                     TW_EINVAL);
    tw_child_fd bad_kind[] = { { 1, (tw_child_fd_kind)0, 0 } };
    o = (tw_process_options){ .child_fds = bad_kind, .n_child_fds = 1 };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), sh, NULL, NULL, &o, NULL),
                     TW_EINVAL);
    assert_int_equal(tw_spawn_process(r, NULL, sh, NULL, NULL, NULL, NULL), TW_EINVAL);

    /* Nothing left behind: no descriptors, no children. */
    tt_run_for(r, 0.05);
    assert_int_equal(tt_open_fds(), fds_before);
    int zombies;
    assert_int_equal(my_children(&zombies), 0);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ descriptors */

static void extra_and_inherited_fds(void **state)
{
    tw_reactor *r = tt_reactor();
    int mine[2];
    assert_int_equal(pipe2(mine, O_CLOEXEC), 0);
    /* A descriptor of ours without close-on-exec must not leak in. */
    int leaky = dup2(mine[0], 50);
    assert_int_equal(leaky, 50);
    tw_child_fd fds[] = {
        { 0, TW_CHILD_PIPE_W, -1 },
        { 1, TW_CHILD_PIPE_R, -1 },
        { 3, TW_CHILD_PIPE_R, -1 },
        { 4, TW_CHILD_FD_INHERIT, mine[1] },
    };
    tw_process_options o = { .child_fds = fds, .n_child_fds = 4 };
    const char *argv[] = { "/bin/sh", "-c",
                           "echo x >&3; echo y >&4; "
                           "if [ -e /proc/$$/fd/50 ]; then echo leaked50; else echo closed50; fi; "
                           "if [ -e /proc/$$/fd/2 ]; then echo open2; else echo closed2; fi",
                           NULL };
    events e;
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_fd_ops, &e), argv, NULL, NULL, &o, NULL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_string_equal(e.fd3, "x\n");
    assert_string_equal(e.out, "closed50\nclosed2\n");
    assert_int_equal(e.lost[3], 1);
    assert_int_equal(e.lost[0], 1);
    assert_int_equal(e.lost[1], 1);
    assert_int_equal(e.lost[2], 0); /* not ours */
    char buf[16] = { 0 };
    assert_int_equal(read(mine[0], buf, sizeof buf), 2);
    assert_string_equal(buf, "y\n");
    /* Our inherited descriptor is still ours and open. */
    assert_true(fcntl(mine[1], F_GETFD) >= 0);
    close(leaky);
    close(mine[0]);
    close(mine[1]);
    tw_reactor_free(r);
}

static void cwd_and_env(void **state)
{
    tw_reactor *r = tt_reactor();
    char *tmp = tt_tmpdir();
    char real[4096];
    assert_non_null(realpath(tmp, real));
    const char *env[] = { "FOO=bar baz", "PATH=/usr/bin:/bin", NULL };
    const char *argv[] = { "sh", "-c", "echo \"$FOO\"; pwd; echo \"${HOME-unset}\"", NULL };
    events e;
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, env, tmp, NULL, NULL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    char want[4200];
    snprintf(want, sizeof want, "bar baz\n%s\nunset\n", real);
    assert_string_equal(e.out, want);
    /* An explicit executable: argv[0] is only the name the child sees. */
    tw_process_options o = { .executable = "/bin/sh" };
    const char *named[] = { "renamed", "-c", "echo $0", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), named, NULL, NULL, &o, NULL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_string_equal(e.out, "renamed\n");
    tt_rmdir(tmp);
    tw_reactor_free(r);
}

/* No pipes at all (everything inherited): ended follows the exit alone,
 * and writing is refused. */
static void no_pipes_at_all(void **state)
{
    tw_reactor *r = tt_reactor();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    tw_child_fd fds[] = { { 0, TW_CHILD_FD_INHERIT, null }, { 1, TW_CHILD_FD_INHERIT, null } };
    tw_process_options o = { .child_fds = fds, .n_child_fds = 2 };
    const char *argv[] = { "/bin/sh", "-c", "echo gone; exit 2", NULL };
    events e;
    tw_process *proc;
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_fd_ops, &e), argv, NULL, NULL, &o, &proc), 0);
    assert_int_equal(tw_transport_write(tw_process_transport(proc), "x", 1), TW_ECLOSED);
    assert_int_equal(tw_transport_fd(tw_process_transport(proc)), -1);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(tw_process_status_exit_code(&e.end_st), 2);
    assert_int_equal(e.out_len, 0);
    assert_string_equal(e.order, "MXD");
    close(null);
    tw_reactor_free(r);
}

static void new_session_and_ids(void **state)
{
    tw_reactor *r = tt_reactor();
    const char *script = "read -r a b c d e sid rest < /proc/$$/stat; echo $$ $sid";
    events e;
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    tw_process_options o = { .new_session = true };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, &o, NULL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    int pid = 0, sid = -1;
    assert_int_equal(sscanf(e.out, "%d %d", &pid, &sid), 2);
    assert_int_equal(pid, sid); /* a session leader */
    assert_int_equal(pid, e.pid);

    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, NULL), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(sscanf(e.out, "%d %d", &pid, &sid), 2);
    assert_int_equal(sid, getsid(0)); /* ours */

    if (geteuid() == 0) {
        tw_process_options ids = { .set_uid = true, .uid = 65534, .set_gid = true, .gid = 65534 };
        const char *id[] = { "/bin/sh", "-c", "id -u; id -g; id -G", NULL };
        assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), id, NULL, NULL, &ids, NULL), 0);
        assert_true(tt_run_until(r, is_ended, &e, 10));
        assert_string_equal(e.out, "65534\n65534\n65534\n");
    } else {
        tw_process_options ids = { .set_uid = true, .uid = 0 };
        const char *t[] = { "/bin/true", NULL };
        assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), t, NULL, NULL, &ids, NULL),
                         -EPERM);
    }
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ flow control */

/* A streaming producer feeding the child's stdin. */
typedef struct feeder {
    tw_producer base;
    tw_transport *t;
    size_t total, sent, chunk;
    uint64_t rng, hash;
    int paused, pauses, resumes, stopped, done;
    size_t max_buffered;
    char *block;
} feeder;

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void fill(feeder *f, size_t n)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        f->rng ^= f->rng << 13;
        f->rng ^= f->rng >> 7;
        f->rng ^= f->rng << 17;
        memcpy(f->block + i, &f->rng, 8);
    }
}

static void feed_more(feeder *f)
{
    while (!f->paused && !f->done) {
        size_t n = f->total - f->sent < f->chunk ? f->total - f->sent : f->chunk;
        fill(f, n);
        f->hash = fnv(f->hash, f->block, n);
        f->sent += n;
        assert_int_equal(tw_transport_write(f->t, f->block, n), 0);
        size_t b = tw_transport_buffered(f->t);
        if (b > f->max_buffered)
            f->max_buffered = b;
        if (f->sent == f->total) {
            f->done = 1;
            tw_transport_unregister_producer(f->t);
            tw_transport_lose_write_connection(f->t); /* close stdin once flushed */
        }
    }
}

static void fd_pause(tw_producer *p)
{
    feeder *f = (feeder *)p;
    f->paused = 1;
    f->pauses++;
}

static void fd_resume(tw_producer *p)
{
    feeder *f = (feeder *)p;
    f->paused = 0;
    f->resumes++;
    feed_more(f);
}

static void fd_stop(tw_producer *p)
{
    ((feeder *)p)->stopped++;
}

static const tw_producer_ops feeder_ops = { fd_pause, fd_resume, fd_stop };

static void feeder_init(feeder *f, tw_transport *t, size_t total, size_t chunk)
{
    *f = (feeder){ .base = { &feeder_ops }, .t = t, .total = total, .chunk = chunk };
    f->rng = 0x9e3779b97f4a7c15ULL;
    f->hash = 0xcbf29ce484222325ULL;
    f->block = malloc(chunk);
    assert_non_null(f->block);
}

/* A child that does not read for a while: the producer is paused at the
 * high-water mark instead of the parent buffering everything. */
static void stdin_backpressure(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    tw_process *proc;
    const char *argv[] = { "/bin/sh", "-c", "sleep 0.5; exec wc -c", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    feeder f;
    size_t total = (size_t)(RUNNING_ON_VALGRIND ? 1 : 4) << 20;
    feeder_init(&f, tw_process_transport(proc), total, 16384);
    assert_int_equal(tw_transport_register_producer(f.t, &f.base, true), 0);
    assert_int_equal(tw_transport_register_producer(f.t, &f.base, true), TW_EBUSY);
    feed_more(&f);
    assert_true(f.paused); /* the pipe filled long before 4 MiB */
    assert_true(tw_transport_buffered(f.t) <= TW_WRITE_HIGH_WATER + f.chunk);
    assert_true(tt_run_until(r, is_ended, &e, 30));
    assert_true(f.done);
    assert_true(f.pauses >= 1 && f.resumes >= 1);
    assert_true(f.max_buffered <= TW_WRITE_HIGH_WATER + f.chunk);
    assert_int_equal(strtoull(e.out, NULL, 10), total);
    assert_true(tw_process_status_success(&e.end_st));
    free(f.block);
    tw_reactor_free(r);
}

/* The reading side of the 100 MiB test: keeps what arrives in its own
 * buffer and digests it slowly from a timer, pausing the process (all its
 * output pipes) above 1 MiB kept and resuming below 256 KiB. */
typedef struct slow {
    tw_process_protocol base;
    char *buf;
    size_t len, max_len;
    uint64_t hash, received;
    int pauses, paused, ended;
    tw_timer timer;
    tw_reactor *r;
} slow;

/* At most 64 KiB a millisecond: slower than cat, so it must pause. */
enum { SLOW_CAP = 1 << 20, SLOW_LOW = 256 << 10, SLOW_BITE = 64 << 10 };

static void slow_bite(slow *s)
{
    size_t n = s->len < SLOW_BITE ? s->len : SLOW_BITE;
    s->hash = fnv(s->hash, s->buf, n);
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
}

static void slow_digest(void *arg)
{
    slow *s = arg;
    s->timer = TW_TIMER_NONE;
    slow_bite(s);
    if (s->paused && s->len <= SLOW_LOW) {
        s->paused = 0;
        tw_transport_resume_producing(s->base.transport);
    }
    if (s->len > 0)
        s->timer = tw_call_later(s->r, 0.001, slow_digest, s);
}

static void slow_out(tw_process_protocol *p, const void *data, size_t len)
{
    slow *s = (slow *)p;
    assert_true(s->len + len <= SLOW_CAP + TW__RBUF_BYTES);
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->received += len;
    if (s->len > s->max_len)
        s->max_len = s->len;
    if (!s->paused && s->len > SLOW_CAP) {
        s->paused = 1;
        s->pauses++;
        tw_transport_pause_producing(p->transport);
    }
    if (!tw_timer_active(s->timer))
        s->timer = tw_call_later(s->r, 0.001, slow_digest, s);
}

static void slow_ended(tw_process_protocol *p, const tw_process_status *st)
{
    slow *s = (slow *)p;
    tw_timer_cancel(s->timer);
    while (s->len > 0) /* what is left, at once */
        slow_bite(s);
    s->ended = 1;
    *(slow *)p->user_data = *s;
}

static const tw_process_protocol_ops slow_ops = {
    .size = sizeof(slow),
    .out_received = slow_out,
    .process_ended = slow_ended,
};

static bool slow_done(void *arg)
{
    return ((slow *)arg)->ended;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cat_echoes_100_mib(void **state)
{
    tw_reactor *r = tt_reactor();
    size_t total = (size_t)(RUNNING_ON_VALGRIND ? 4 : 100) << 20;
    slow result = { 0 };
    tw_process_protocol *p = tw_process_protocol_alloc(&slow_ops);
    slow *s = (slow *)p;
    s->buf = malloc(SLOW_CAP + TW__RBUF_BYTES);
    s->hash = 0xcbf29ce484222325ULL;
    s->r = r;
    p->user_data = &result;
    char *buf = s->buf;
    const char *argv[] = { "/bin/cat", NULL };
    tw_process *proc;
    double t0 = now_s();
    assert_int_equal(tw_spawn_process(r, p, argv, NULL, NULL, NULL, &proc), 0);
    feeder f;
    feeder_init(&f, tw_process_transport(proc), total, 65536);
    assert_int_equal(tw_transport_register_producer(f.t, &f.base, true), 0);
    feed_more(&f);
    assert_true(tt_run_until(r, slow_done, &result, 120));
    double took = now_s() - t0;
    fprintf(stderr, "# %zu MiB through cat in %.2f s (%.0f MiB/s), reader paused %d times\n",
            total >> 20, took, (double)(total >> 20) / took, result.pauses);
    assert_int_equal(result.received, total);
    assert_true(result.hash == f.hash);
    assert_true(result.max_len <= SLOW_CAP + TW__RBUF_BYTES);
    assert_true(result.pauses > 0);
    assert_true(f.max_buffered <= TW_WRITE_HIGH_WATER + f.chunk);
    free(f.block);
    free(buf);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ closing */

/* lose_connection: stdin is flushed then closed, our end of the output
 * pipes closes at once, and the process is still waited for. */
static void lose_connection_closes_pipes_then_waits(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    tw_process *proc;
    /* Reads stdin (later) to its end, then exits 7 without writing. */
    const char *argv[] = { "/bin/sh", "-c", "sleep 0.2; cat >/dev/null; exit 7", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    char *block = calloc(1, 1 << 20);
    assert_int_equal(tw_transport_write(tw_process_transport(proc), block, 1 << 20), 0);
    free(block);
    assert_true(tw_transport_buffered(tw_process_transport(proc)) > 0);
    tw_transport_lose_connection(tw_process_transport(proc));
    assert_int_equal(tw_transport_write(tw_process_transport(proc), "x", 1), TW_ECLOSED);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(tw_process_status_exit_code(&e.end_st), 7); /* all of stdin was read */
    assert_int_equal(e.lost[0] + e.lost[1] + e.lost[2], 3);
    tw_reactor_free(r);
}

/* Past the write limit, the process's pipes are aborted (the child sees
 * EOF) and the write fails. */
static void write_limit_aborts_pipes(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    tw_process *proc;
    const char *argv[] = { "/bin/sh", "-c", "sleep 0.2; cat >/dev/null; exit 0", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &e), argv, NULL, NULL, NULL, &proc), 0);
    tw_transport *t = tw_process_transport(proc);
    assert_int_equal(tw_transport_set_option(t, TW_OPT_WRITE_LIMIT, 256 << 10), 0);
    assert_int_equal(tw_transport_set_option(t, TW_OPT_TCP_NODELAY, 1), TW_EINVAL);
    char *block = calloc(1, 1 << 20);
    assert_int_equal(tw_transport_write(t, block, 1 << 20), TW_ELIMIT);
    free(block);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_int_equal(e.lost[0] + e.lost[1] + e.lost[2], 3);
    tw_reactor_free(r);
}

/* Hooks that close things inside other hooks. */
static void closing_out(tw_process_protocol *p, const void *data, size_t len)
{
    r_out(p, data, len);
    tw_transport_abort_connection(p->transport);
    tw_transport_abort_connection(p->transport);
    tw_transport_lose_connection(p->transport);
}

static const tw_process_protocol_ops closing_ops = {
    .size = sizeof(rec),
    .connection_made = r_made,
    .out_received = closing_out,
    .in_connection_lost = r_in_lost,
    .out_connection_lost = r_out_lost,
    .err_connection_lost = r_err_lost,
    .process_exited = r_exited,
    .process_ended = r_ended,
    .destroy = r_destroy,
};

static void abort_inside_a_hook(void **state)
{
    tw_reactor *r = tt_reactor();
    events e;
    const char *argv[] = { "/bin/sh", "-c", "echo first; sleep 0.1; echo second || exit 9", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&closing_ops, &e), argv, NULL, NULL, NULL, NULL),
                     0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_string_equal(e.out, "first\n");
    assert_int_equal(e.lost[0] + e.lost[1] + e.lost[2], 3);
    /* The second echo hit a closed pipe: SIGPIPE (or exit 9 if ignored). */
    assert_true(tw_process_status_signal(&e.end_st) == SIGPIPE ||
                tw_process_status_exit_code(&e.end_st) == 9);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ reaping */

typedef struct crowd {
    events e[32];
    int started, ended, target;
} crowd;

static bool crowd_done(void *arg)
{
    crowd *c = arg;
    int ended = 0;
    for (int i = 0; i < 32; i++)
        ended += c->e[i].ended;
    return ended == (c->target < 32 ? c->target : 32) && c->started >= c->target;
}

/* Many short children, 32 at a time: each is reaped, none is left a
 * zombie, no descriptor leaks. */
static void many_spawns_leave_no_zombies(void **state)
{
    tw_reactor *r = tt_reactor();
    int fds_before = tt_open_fds();
    int n = RUNNING_ON_VALGRIND ? 40 : 300;
    crowd *c = calloc(1, sizeof *c);
    c->target = n;
    const char *argv[] = { "/bin/true", NULL };
    while (c->started < n) {
        for (int i = 0; i < 32 && c->started < n; i++) {
            if (c->started >= 32 && !c->e[i].ended)
                continue;
            if (c->started >= 32)
                assert_int_equal(c->e[i].destroyed, 1);
            assert_int_equal(
                tw_spawn_process(r, new_rec(&rec_ops, &c->e[i]), argv, NULL, NULL, NULL, NULL), 0);
            c->started++;
        }
        tw_reactor_iterate(r, 0.01);
    }
    c->target = 32;
    assert_true(tt_run_until(r, crowd_done, c, 30));
    for (int i = 0; i < 32; i++)
        assert_true(tw_process_status_success(&c->e[i].end_st));
    tt_run_for(r, 0.02);
    int zombies;
    assert_int_equal(my_children(&zombies), 0);
    assert_int_equal(zombies, 0);
    assert_int_equal(tt_open_fds(), fds_before);
    free(c);
    tw_reactor_free(r);
}

/* Freeing the reactor with children running: they are killed and reaped,
 * their protocols told and destroyed; nothing leaks (ASan, valgrind). */
static void reactor_free_kills_running_children(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = tt_reactor();
    events a, b;
    const char *sleeper[] = { "sleep", "100", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &a), sleeper, NULL, NULL, NULL, NULL),
                     0);
    /* One with output pending and stdin queued that it never reads. */
    tw_process *proc;
    const char *writer[] = { "/bin/sh", "-c", "echo hi; exec sleep 100", NULL };
    assert_int_equal(tw_spawn_process(r, new_rec(&rec_ops, &b), writer, NULL, NULL, NULL, &proc),
                     0);
    char *block = calloc(1, 1 << 20);
    assert_int_equal(tw_transport_write(tw_process_transport(proc), block, 1 << 20), 0);
    free(block);
    tt_run_for(r, 0.1);
    pid_t pa = a.pid, pb = b.pid;
    assert_true(process_exists(pa) && process_exists(pb));
    tw_reactor_free(r);
    for (events *e = &a; e; e = e == &a ? &b : NULL) {
        assert_int_equal(e->exited, 1);
        assert_int_equal(e->ended, 1);
        assert_int_equal(e->destroyed, 1);
        assert_int_equal(e->lost[0] + e->lost[1] + e->lost[2], 3);
        assert_int_equal(tw_process_status_signal(&e->end_st), SIGKILL);
        assert_int_equal(e->order[e->norder - 1], 'D');
    }
    assert_false(process_exists(pa));
    assert_false(process_exists(pb));
    int zombies;
    assert_int_equal(my_children(&zombies), 0);
    assert_int_equal(tt_open_fds(), fds_before);
}

/* With SIGCHLD ignored the kernel reaps children itself: the end is still
 * noticed, with the status unknown (pidfd), or known (the SIGCHLD
 * fallback installs its handler, which ends the auto-reaping). */
static void sigchld_ignored_by_the_program(void **state)
{
    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    sigaction(SIGCHLD, &ign, &old);
    tw_reactor *r = tt_reactor();
    events e;
    assert_int_equal(spawn_sh(r, &e, "exit 4"), 0);
    assert_true(tt_run_until(r, is_ended, &e, 10));
    assert_true(e.end_st.how == TW_PROCESS_UNKNOWN || tw_process_status_exit_code(&e.end_st) == 4);
    char buf[64];
    if (e.end_st.how == TW_PROCESS_UNKNOWN) {
        tw_process_status_format(&e.end_st, buf, sizeof buf);
        assert_string_equal(buf, "status unknown");
    }
    tw_reactor_free(r);
    sigaction(SIGCHLD, &old, NULL);
}

/* ------------------------------------------------------------ SIGCHLD */

static int use_sigchld(void **state)
{
    tw__process_force_sigchld(true);
    return 0;
}

static int use_pidfd(void **state)
{
    tw__process_force_sigchld(false);
    return 0;
}

/* Under SIGCHLD, a child of ours that the library did not spawn is never
 * reaped by it. */
static void sigchld_leaves_other_children_alone(void **state)
{
    tw_reactor *r = tt_reactor();
    pid_t other = fork();
    if (other == 0) {
        execl("/bin/sh", "sh", "-c", "sleep 0.05; exit 42", (char *)NULL);
        _exit(1);
    }
    assert_true(other > 0);
    events e;
    run_sh(r, &e, "sleep 0.2; exit 5");
    assert_int_equal(tw_process_status_exit_code(&e.end_st), 5);
    int wst;
    assert_int_equal(waitpid(other, &wst, 0), other); /* still ours to reap */
    assert_int_equal(WEXITSTATUS(wst), 42);
    tw_reactor_free(r);
}

#define BOTH(fn)        cmocka_unit_test_setup_teardown(fn, use_pidfd, NULL)
#define SIGCHLD_TOO(fn) cmocka_unit_test_setup_teardown(fn, use_sigchld, use_pidfd)

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        BOTH(cat_echoes_and_ends_in_order),
        BOTH(exit_code_is_reported),
        BOTH(signal_status_is_reported),
        BOTH(signal_process_kills_it),
        BOTH(child_gets_default_sigpipe),
        BOTH(ended_waits_for_every_pipe),
        BOTH(stdin_lost_when_child_exits),
        BOTH(spawn_failures_are_codes),
        BOTH(extra_and_inherited_fds),
        BOTH(cwd_and_env),
        BOTH(no_pipes_at_all),
        BOTH(new_session_and_ids),
        BOTH(stdin_backpressure),
        BOTH(cat_echoes_100_mib),
        BOTH(lose_connection_closes_pipes_then_waits),
        BOTH(write_limit_aborts_pipes),
        BOTH(abort_inside_a_hook),
        BOTH(many_spawns_leave_no_zombies),
        BOTH(reactor_free_kills_running_children),
        BOTH(sigchld_ignored_by_the_program),
        SIGCHLD_TOO(cat_echoes_and_ends_in_order),
        SIGCHLD_TOO(exit_code_is_reported),
        SIGCHLD_TOO(signal_process_kills_it),
        SIGCHLD_TOO(ended_waits_for_every_pipe),
        SIGCHLD_TOO(many_spawns_leave_no_zombies),
        SIGCHLD_TOO(reactor_free_kills_running_children),
        SIGCHLD_TOO(sigchld_leaves_other_children_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
