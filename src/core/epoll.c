/* epoll.c — the Linux readiness backend.
 *
 * Level-triggered registrations (fd watchers for foreign libraries) follow
 * io->mask with EPOLL_CTL_MOD. Edge-capable ones (our own sockets) are added
 * once for input, output and peer hang-up, edge-triggered, and then never
 * touched again: turning write interest on and off after EAGAIN costs no
 * system call. The pointer stored with each fd carries the io's instance bit
 * so events fetched for a stopped registration are dropped. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/reactor_internal.h"

enum { MAX_EVENTS = 256 };

typedef struct epoll_backend {
    int epfd;
    struct epoll_event events[MAX_EVENTS];
} epoll_backend;

static int ep_init(tw_reactor *r)
{
    epoll_backend *b = malloc(sizeof *b);
    if (!b)
        return TW_ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int rc = -errno;
        free(b);
        return rc;
    }
    tw__reactor_set_backend_data(r, b);
    return 0;
}

static void ep_fini(tw_reactor *r)
{
    epoll_backend *b = tw__reactor_backend_data(r);
    close(b->epfd);
    free(b);
}

static uint32_t level_events(unsigned mask)
{
    return (mask & TW_READABLE ? EPOLLIN : 0u) | (mask & TW_WRITABLE ? EPOLLOUT : 0u);
}

static int ep_watch(tw_reactor *r, tw__io *io, unsigned mask)
{
    epoll_backend *b = tw__reactor_backend_data(r);
    struct epoll_event ev = { .data.u64 = tw__io_tag(io) };
    int op;
    if (io->flags & TW__IO_EDGE) {
        if (io->registered)
            return 0; /* everything is already asked for */
        if (!mask)
            return 0;
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        op = EPOLL_CTL_ADD;
    } else if (!mask) {
        if (!io->registered)
            return 0;
        op = EPOLL_CTL_DEL;
    } else {
        ev.events = level_events(mask);
        op = io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    }
    if (epoll_ctl(b->epfd, op, io->fd, &ev) < 0)
        return -errno;
    io->registered = op == EPOLL_CTL_DEL ? 0 : 1;
    return 0;
}

static void ep_unwatch(tw_reactor *r, tw__io *io)
{
    epoll_backend *b = tw__reactor_backend_data(r);
    /* ENOENT/EBADF: the fd was closed first, which removed it already. */
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

static int ep_wait(tw_reactor *r, int64_t timeout_ns)
{
    epoll_backend *b = tw__reactor_backend_data(r);
    int ms;
    if (timeout_ns < 0)
        ms = -1;
    else if (timeout_ns > (int64_t)2000000000 * 1000000)
        ms = 2000000000;
    else
        ms = (int)((timeout_ns + 999999) / 1000000); /* never wake early */
    int n = epoll_wait(b->epfd, b->events, MAX_EVENTS, ms);
    /* Fresh time before any callback: a timer they schedule counts from
     * now, not from before the wait. */
    tw_reactor_update_time(r);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = b->events[i].events;
        unsigned events = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            events |= TW_READABLE;
        if (e & EPOLLOUT)
            events |= TW_WRITABLE;
        /* RDHUP matters to edge-triggered readers: the FIN may sit behind
         * the data, so a short read does not mean "nothing more". */
        if (e & (EPOLLHUP | EPOLLRDHUP))
            events |= TW_HANGUP;
        if (e & EPOLLERR)
            events |= TW_ERROR;
        tw__io_ready(r, (uintptr_t)b->events[i].data.u64, events);
    }
    return n;
}

const tw__backend_ops tw__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .watch = ep_watch,
    .unwatch = ep_unwatch,
    .wait = ep_wait,
};
