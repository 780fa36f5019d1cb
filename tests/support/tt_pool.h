/* tt_pool.h — the child processes of one test program (examples, Twisted
 * peers) kept in a small pool, with cmocka failures instead of error codes,
 * so a test reads as a script: start, read its port, talk, stop. Every wait
 * has a deadline; tt_pool_kill_all in a teardown reaps whatever a failed
 * assertion left running. Not shipped. */
#ifndef TWIRL_TT_POOL_H
#define TWIRL_TT_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tt_child.h"

/* Debian's python3, the one that can import python3-twisted. */
#define TT_PYTHON "/usr/bin/python3"

/* The built program tt_bin(name) with args (NULL-terminated). Fails the
 * test when it is not built or cannot start. */
tt_child *tt_pool_start_bin(const char *name, const char *const args[]);
#define tt_pool_example(name, ...) \
    tt_pool_start_bin("example_" name, (const char *const[]){ __VA_ARGS__ })

/* TT_PYTHON running tests/interop/SCRIPT with args (NULL-terminated). */
tt_child *tt_pool_start_python(const char *script, const char *const args[]);
#define tt_pool_twisted(script, ...) \
    tt_pool_start_python(script, (const char *const[]){ __VA_ARGS__ })

/* True when TT_PYTHON can import twisted (asked once; says so on stderr
 * when it cannot, so the skip is visible). */
bool tt_pool_have_twisted(void);

/* Waits up to timeout seconds for c to exit and returns its exit code;
 * fails the test when it did not exit or died of a signal. */
int tt_pool_exit_status(tt_child *c, double timeout);

/* SIGTERM, then waits up to timeout seconds: the server must exit 0. */
void tt_pool_stop(tt_child *c, double timeout);

/* The port at the end of c's next output line ("... listening on port N"
 * from twirl, "PORT N" from the Python peers); fails the test without one. */
uint16_t tt_pool_port(tt_child *c, double timeout);

/* A blocking TCP connection to 127.0.0.1:port; fails the test without one. */
int tt_pool_connect(uint16_t port);

/* Kills and reaps every child still in the pool. */
void tt_pool_kill_all(void);

/* ------------------------------------------------- the twirl command */

/* Starts `twirl ARGS` (ARGS is shell words) in c, outside the pool, through
 * sh so that its log (stderr) is in the pipe too, behind the words of
 * $TWIRL_CHILD_WRAPPER when that is set (e.g. valgrind). */
void tt_twirl_start(tt_child *c, const char *args);

/* The port of the first "... listening on HOST:PORT" log line; fails the
 * test on a "twirl: " error line or when none comes within timeout. */
uint16_t tt_twirl_port(tt_child *c, double timeout);

/* Runs `twirl ARGS` to its end (within timeout), its output into out;
 * returns its exit code. */
int tt_twirl_run(const char *args, char *out, size_t outlen, double timeout);

#endif
