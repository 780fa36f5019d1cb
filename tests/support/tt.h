/* tt.h — helpers shared by twirl's own tests (not shipped). */
#ifndef TWIRL_TT_H
#define TWIRL_TT_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/reactor.h"

/* A real reactor on the backend chosen by $TWIRL_REACTOR, signals off. */
tw_reactor *tt_reactor(void);

/* Turns the loop until cond(arg) is true or timeout seconds pass. Returns
 * true if cond became true. */
bool tt_run_until(tw_reactor *r, bool (*cond)(void *arg), void *arg, double timeout);

/* Turns the loop for about seconds (for "nothing more happens" checks). */
void tt_run_for(tw_reactor *r, double seconds);

/* Number of open file descriptors of this process. */
int tt_open_fds(void);

/* Path of a built program (BINARY_DIR/name). Static buffer. */
const char *tt_bin(const char *name);

/* A fresh scratch directory under /tmp, removed by tt_rmdir. */
char *tt_tmpdir(void);
void tt_rmdir(char *dir);

#endif
