/* tt_child.h — child processes for tests that run programs (the examples,
 * Twisted peers): start one with its stdout in a pipe, read that output
 * line by line with timeouts, signal it and reap it within a bound. Nothing
 * here blocks without a deadline. Not shipped. */
#ifndef TWIRL_TT_CHILD_H
#define TWIRL_TT_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tt_child {
    pid_t pid; /* 0 once reaped */
    int out;   /* read end of its stdout; -1 once closed */
    bool eof;
    size_t len;      /* bytes in buf not yet taken by tt_child_line */
    char buf[65536]; /* NUL-terminated; output past it is read and dropped */
    char line[4096];
} tt_child;

/* Starts argv[0] (a path, or a name looked up in PATH) with argv (NULL-
 * terminated). Its stdout goes to c->out, stdin is /dev/null and stderr is
 * shared with the test. The child is killed (SIGKILL) if the test process
 * dies first. Returns 0 or -errno. */
int tt_child_start(tt_child *c, const char *const argv[]);

/* The next whole line of output without its '\n', borrowed until the next
 * call, or NULL if none came within timeout seconds (or the output ended). */
const char *tt_child_line(tt_child *c, double timeout);

/* Reads until the child closes its stdout or timeout seconds pass; returns
 * all output not yet taken by tt_child_line (borrowed from c). */
const char *tt_child_rest(tt_child *c, double timeout);

/* Waits up to timeout seconds for the child to exit, reading its output
 * meanwhile (so it never blocks on a full pipe). Returns the wait status,
 * or -1 if it had to be killed. Closes c->out. */
int tt_child_wait(tt_child *c, double timeout);

/* Sends sig, then tt_child_wait. Stores in *took (if not NULL) the seconds
 * from the signal to the exit. */
int tt_child_stop(tt_child *c, int sig, double timeout, double *took);

/* Starts the built program tt_bin(name) with args (NULL-terminated; argv[0]
 * is added), behind the words of $TWIRL_CHILD_WRAPPER when that is set (e.g.
 * "valgrind -q --leak-check=full --error-exitcode=99"). Returns 0, -ENOENT
 * when the program is not built, or -errno. */
int tt_child_start_bin(tt_child *c, const char *name, const char *const args[]);

/* Kills and reaps the child if it still runs; closes the pipe. For test
 * teardown after a failed assertion. Idempotent. */
void tt_child_kill(tt_child *c);

/* CLOCK_MONOTONIC in seconds. */
double tt_now(void);

/* ---------------------------------------------- loopback sockets to talk to them */

/* A blocking TCP connection to 127.0.0.1:port: the fd, or -errno. */
int tt_connect_loopback(uint16_t port);

/* The local port of a socket (0 on error). */
uint16_t tt_local_port(int fd);

/* A port nobody listens on (bound, then closed), or 0. */
uint16_t tt_dead_port(void);

/* Reads up to len bytes, waiting at most timeout seconds in all; stops
 * early at EOF or on a reset (*eof true). Returns the bytes read. */
size_t tt_recv_upto(int fd, char *buf, size_t len, double timeout, bool *eof);

/* Reads one line through its '\n' (byte by byte: nothing past it is
 * consumed) within timeout; returns it in a static buffer, possibly short
 * (no '\n') on timeout or EOF. */
const char *tt_recv_line(int fd, double timeout);

#endif
