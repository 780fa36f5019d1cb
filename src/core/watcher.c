/* watcher.c — public fd watchers for libraries that bring their own
 * sockets. A thin shell over tw__io, level-triggered on every backend. */
#include <stdlib.h>

#include "core/reactor_internal.h"

struct tw_watcher {
    tw__io io; /* first: the io callback finds the watcher from it */
    tw_reactor *reactor;
    tw_watcher_fn fn;
    void *arg;
    tw__task free_task;
    int closing;
};

static void watcher_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw_watcher *w = (tw_watcher *)io;
    if (!w->closing)
        w->fn(w, io->fd, events, w->arg);
}

int tw_watcher_new(tw_reactor *r, int fd, unsigned events, tw_watcher_fn fn, void *arg,
                   tw_watcher **out)
{
    if (fd < 0 || !fn)
        return TW_EINVAL;
    tw_watcher *w = calloc(1, sizeof *w);
    if (!w)
        return TW_ENOMEM;
    tw__io_init(&w->io, fd, 0, watcher_ready);
    w->reactor = r;
    w->fn = fn;
    w->arg = arg;
    int rc = tw__io_set(r, &w->io, events);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int tw_watcher_set(tw_watcher *w, unsigned events)
{
    if (w->closing)
        return TW_ECLOSED;
    return tw__io_set(w->reactor, &w->io, events);
}

unsigned tw_watcher_events(const tw_watcher *w)
{
    return w->io.mask;
}

int tw_watcher_fd(const tw_watcher *w)
{
    return w->io.fd;
}

static void watcher_free_task(tw_reactor *r, tw__task *t)
{
    free((tw_watcher *)((char *)t - offsetof(tw_watcher, free_task)));
}

void tw_watcher_free(tw_watcher *w)
{
    if (!w || w->closing)
        return;
    w->closing = 1;
    tw__io_stop(w->reactor, &w->io);
    /* Freed after the current event batch: the backend may still hold an
     * event for it (dropped by the instance check, which reads the io). */
    tw__task_post(w->reactor, &w->free_task, watcher_free_task);
}
