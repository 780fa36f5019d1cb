/* poll.c — the portable readiness backend: poll(2) over a dense array.
 *
 * O(n) per wait in registered descriptors; fine for a few thousand. Ready
 * events are copied out before any callback runs, because callbacks add and
 * remove registrations (which moves entries in the arrays). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "core/reactor_internal.h"

typedef struct ready_event {
    uintptr_t tagged;
    unsigned events;
} ready_event;

typedef struct poll_backend {
    struct pollfd *fds;
    tw__io **ios;
    size_t n, cap;
    ready_event *ready;
    size_t ready_cap;
} poll_backend;

static int pb_init(tw_reactor *r)
{
    poll_backend *b = calloc(1, sizeof *b);
    if (!b)
        return TW_ENOMEM;
    tw__reactor_set_backend_data(r, b);
    return 0;
}

static void pb_fini(tw_reactor *r)
{
    poll_backend *b = tw__reactor_backend_data(r);
    free(b->fds);
    free(b->ios);
    free(b->ready);
    free(b);
}

static short poll_events(unsigned mask)
{
    return (short)((mask & TW_READABLE ? POLLIN : 0) | (mask & TW_WRITABLE ? POLLOUT : 0));
}

static void pb_remove(poll_backend *b, tw__io *io)
{
    size_t i = (size_t)io->poll_index;
    size_t last = --b->n;
    if (i != last) {
        b->fds[i] = b->fds[last];
        b->ios[i] = b->ios[last];
        b->ios[i]->poll_index = (int)i;
    }
    io->poll_index = -1;
}

static int pb_watch(tw_reactor *r, tw__io *io, unsigned mask)
{
    poll_backend *b = tw__reactor_backend_data(r);
    if (!mask) {
        if (io->poll_index >= 0)
            pb_remove(b, io);
        io->registered = 0;
        return 0;
    }
    if (io->poll_index < 0) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 64;
            struct pollfd *fds = realloc(b->fds, cap * sizeof *fds);
            if (!fds)
                return TW_ENOMEM;
            b->fds = fds;
            tw__io **ios = realloc(b->ios, cap * sizeof *ios);
            if (!ios)
                return TW_ENOMEM;
            b->ios = ios;
            b->cap = cap;
        }
        io->poll_index = (int)b->n++;
        b->ios[io->poll_index] = io;
        b->fds[io->poll_index].fd = io->fd;
    }
    b->fds[io->poll_index].events = poll_events(mask);
    io->registered = 1;
    return 0;
}

static void pb_unwatch(tw_reactor *r, tw__io *io)
{
    poll_backend *b = tw__reactor_backend_data(r);
    if (io->poll_index >= 0)
        pb_remove(b, io);
}

static int pb_wait(tw_reactor *r, int64_t timeout_ns)
{
    poll_backend *b = tw__reactor_backend_data(r);
    int ms;
    if (timeout_ns < 0)
        ms = -1;
    else if (timeout_ns > (int64_t)2000000000 * 1000000)
        ms = 2000000000;
    else
        ms = (int)((timeout_ns + 999999) / 1000000);
    int n = poll(b->fds, b->n, ms);
    tw_reactor_update_time(r); /* before any callback */
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n == 0)
        return 0;
    if ((size_t)n > b->ready_cap) {
        ready_event *ready = realloc(b->ready, (size_t)n * sizeof *ready);
        if (!ready)
            return TW_ENOMEM;
        b->ready = ready;
        b->ready_cap = (size_t)n;
    }
    size_t k = 0;
    for (size_t i = 0; i < b->n && k < (size_t)n; i++) {
        short re = b->fds[i].revents;
        if (!re)
            continue;
        unsigned events = 0;
        if (re & (POLLIN | POLLPRI))
            events |= TW_READABLE;
        if (re & POLLOUT)
            events |= TW_WRITABLE;
        if (re & POLLHUP)
            events |= TW_HANGUP | TW_READABLE;
        if (re & (POLLERR | POLLNVAL))
            events |= TW_ERROR;
        b->ready[k++] = (ready_event){ tw__io_tag(b->ios[i]), events };
    }
    for (size_t i = 0; i < k; i++)
        tw__io_ready(r, b->ready[i].tagged, b->ready[i].events);
    return (int)k;
}

const tw__backend_ops tw__backend_poll = {
    .name = "poll",
    .init = pb_init,
    .fini = pb_fini,
    .watch = pb_watch,
    .unwatch = pb_unwatch,
    .wait = pb_wait,
};
