/* tcp.c — listening ports and client connectors for TCP and Unix sockets.
 *
 * Accepting: a level-triggered listening fd, up to ACCEPTS_PER_WAKEUP
 * connections per readiness. When descriptors run out (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM) the port stops watching its fd — a level-triggered fd
 * would report readiness forever — and resumes after a back-off timer or as
 * soon as any connection of the reactor closes, whichever comes first.
 *
 * On the io_uring backend a port accepts by one multishot accept instead:
 * the kernel accepts every connection as it comes and posts its fd, with no
 * readiness round trip and no accept4 ending in EAGAIN. Its CQEs carry no
 * peer address (a multishot accept would overwrite one buffer for every
 * connection before we read it), so each new fd costs a getpeername — the
 * one system call per connection that accept4 costs on the readiness path.
 * A one-shot accept with an address would save it, but it takes a new SQE
 * and a loop turn per connection, so a burst of connections would be
 * accepted one per turn. Pausing, starving or stopping the port cancels the
 * multishot; a port is freed only after its last CQE, as connections are
 * (uring_stream.c). Where the kernel refuses multishot accept (EINVAL), the
 * port falls back to readiness.
 *
 * Connecting: a non-blocking connect(2) watched for writability, with a
 * timeout. Results are always reported from the loop, never from inside
 * tw_connect, so a caller sees the same order of callbacks whether the
 * kernel answers at once (Unix sockets often do) or later. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net_internal.h"
#include "twirl/log.h"
#ifdef TWIRL_HAVE_URING
#include "core/uring.h"
#endif

enum { ACCEPTS_PER_WAKEUP = 64 };

/* ------------------------------------------------------------ net state */

void tw__net_conn_link(tw__net *net, tw__conn *c)
{
    if (!net)
        return;
    c->prev = NULL;
    c->next = net->conn_list;
    if (net->conn_list)
        net->conn_list->prev = c;
    net->conn_list = c;
    net->conns++;
}

void tw__net_conn_unlink(tw__net *net, tw__conn *c)
{
    if (!net)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else if (net->conn_list == c)
        net->conn_list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    net->conns--;
}

static void connector_free_all(tw__net *net);
static void connectors_stop_all(tw__net *net);
static void port_unlink(tw__net *net, struct tw_port *p);

/* Runs after the teardown tasks the cleanup posted. */
static void net_free_task(tw_reactor *r, tw__task *t)
{
    tw__net *net = (tw__net *)((char *)t - offsetof(tw__net, free_task));
    /* Completion-driven connections and ports wait for the kernel to hand
     * back their cancelled operations (whose completions name their
     * memory): let it, briefly. */
    for (int i = 0; (net->zombies || net->ports_in_kernel) && i < 200; i++)
        tw__reactor_turn(r, 5 * 1000 * 1000);
    if (net->zombies || net->ports_in_kernel)
        tw_log(TW_LOG_ERROR, "tcp", "kernel operations outlived the reactor; leaking them");
    connector_free_all(net);
    while (net->wbuf_cache) {
        struct tw__wbuf *b = net->wbuf_cache;
        net->wbuf_cache = b->next;
        free(b);
    }
    *tw__reactor_slot(r, TW__SLOT_NET) = NULL;
    free(net);
}

/* The reactor is being freed: whatever is still open is closed, through
 * the usual teardown, so every protocol gets its connection_lost (reason:
 * aborted) and its destroy, and nothing leaks. */
static void net_cleanup(tw_reactor *r, void *arg)
{
    tw__net *net = arg;
    net->dying = 1;
    while (net->ports)
        tw_port_stop_listening(net->ports);
    connectors_stop_all(net);
    for (tw__conn *c = net->conn_list; c; c = c->next)
        tw_transport_abort_connection(&c->base);
    tw__task_post(r, &net->free_task, net_free_task);
}

tw__net *tw__net_get(tw_reactor *r)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_NET);
    if (!*slot) {
        tw__net *net = calloc(1, sizeof *net);
        if (!net)
            return NULL;
        if (tw__reactor_on_free(r, net_cleanup, net) < 0) {
            free(net);
            return NULL;
        }
        *slot = net;
    }
    return *slot;
}

size_t tw_reactor_connection_count(tw_reactor *r)
{
    tw__net *net = tw__net_get(r);
    return net ? net->conns : 0;
}

void tw_reactor_disconnect_all(tw_reactor *r)
{
    tw__net *net = tw__net_get(r);
    /* Connections leave the list only in their teardown task, so the walk
     * is safe even when lose_connection closes one at once. */
    for (tw__conn *c = net ? net->conn_list : NULL; c; c = c->next)
        tw_transport_lose_connection(&c->base);
}

/* ------------------------------------------------------------ ports */

struct tw_port {
    tw__io io;
    struct tw_port *list_next; /* the reactor's ports */
    tw_reactor *reactor;
    tw_factory *factory;
    tw_address addr;
    size_t write_limit;
    tw__task free_task;
    tw_timer backoff;
    double backoff_delay;
    struct tw_port *emfile_next;
    char *unix_path; /* socket file to remove at stop */
    int lock_fd;
    int paused;  /* by tw_port_pause */
    int starved; /* out of descriptors */
    int stopped;
#ifdef TWIRL_HAVE_URING
    tw__op accept_op;
    uint8_t multishot;     /* accepts by multishot accept, not readiness */
    uint8_t accept_armed;  /* the multishot accept is in the kernel */
    uint8_t accept_cancel; /* ... and its cancel was asked for */
    uint8_t accepted_any;  /* it gave an fd (so EINVAL is no refusal) */
    uint8_t free_pending;  /* stopped and released: free at its last CQE */
#endif
};

#ifdef TWIRL_HAVE_URING
static void multishot_sync(tw_port *p, int want);
#endif

static void port_watch(tw_port *p)
{
    int want = !p->paused && !p->starved && !p->stopped;
#ifdef TWIRL_HAVE_URING
    if (p->multishot) {
        multishot_sync(p, want);
        return;
    }
#endif
    tw__io_set(p->reactor, &p->io, want ? TW_READABLE : 0);
}

/* Starts accepting: by multishot accept on io_uring, else by readiness. */
static int port_start(tw_port *p)
{
#ifdef TWIRL_HAVE_URING
    p->multishot = tw__reactor_completions(p->reactor) &&
                   (tw__uring_features(p->reactor) & TW__URING_ACCEPT_MULTI) != 0;
    if (p->multishot) {
        multishot_sync(p, 1);
        return 0;
    }
#endif
    return tw__io_set(p->reactor, &p->io, TW_READABLE);
}

static void emfile_unlink(tw_port *p)
{
    tw__net *net = tw__net_get(p->reactor);
    if (!net)
        return;
    for (tw_port **q = &net->emfile_ports; *q; q = &(*q)->emfile_next) {
        if (*q == p) {
            *q = p->emfile_next;
            break;
        }
    }
    p->emfile_next = NULL;
}

static void starve_end(tw_port *p)
{
    if (!p->starved)
        return;
    p->starved = 0;
    tw_timer_cancel(p->backoff);
    p->backoff = TW_TIMER_NONE;
    emfile_unlink(p);
    port_watch(p);
}

static void backoff_fired(void *arg)
{
    tw_port *p = arg;
    p->backoff = TW_TIMER_NONE;
    starve_end(p);
}

void tw__net_fd_freed(tw_reactor *r)
{
    tw__net *net = tw__net_get(r);
    while (net && net->emfile_ports)
        starve_end(net->emfile_ports);
}

static void starve(tw_port *p, int err)
{
    char where[TW_ADDRESS_TEXT_MAX];
    tw_address_format(&p->addr, where, sizeof where);
    p->backoff_delay = p->backoff_delay > 0 ? p->backoff_delay * 2 : 0.01;
    if (p->backoff_delay > 1.0)
        p->backoff_delay = 1.0;
    tw_log(TW_LOG_WARN, "tcp", "%s: accept: %s; pausing accepts for up to %.0f ms", where,
           tw_strerror(err), p->backoff_delay * 1000);
    p->starved = 1;
    port_watch(p);
    p->backoff = tw_call_later(p->reactor, p->backoff_delay, backoff_fired, p);
    tw__net *net = tw__net_get(p->reactor);
    if (net) {
        p->emfile_next = net->emfile_ports;
        net->emfile_ports = p;
    }
}

static void accept_one(tw_port *p, int fd, const tw_address *peer)
{
    int is_tcp = tw_address_family(&p->addr) != AF_UNIX;
    tw_factory *f = p->factory;
    tw_protocol *proto;
    tw__conn *c;
    if ((!f->ops || !f->ops->build_protocol) && f->protocol) {
        /* The common case: protocol and connection in one allocation. */
        c = tw__conn_alloc_with_protocol(f->protocol, &proto);
        if (!c) {
            close(fd);
            return;
        }
        proto->factory = f;
        c = tw__conn_new(p->reactor, fd, is_tcp, proto, 1, p->write_limit, NULL);
    } else {
        proto = tw_factory_build(f, peer);
        if (!proto) {
            close(fd); /* refused by the factory */
            return;
        }
        c = tw__conn_new(p->reactor, fd, is_tcp, proto, 0, p->write_limit, NULL);
    }
    if (c) {
        tw__conn_set_peer(c, peer);
        tw__conn_start(c);
    }
}

static void port_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw_port *p = (tw_port *)io;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP && !p->stopped && !p->paused; i++) {
        tw_address peer = { 0 };
        socklen_t len = sizeof peer.u;
        int fd = accept4(io->fd, &peer.u.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
                p->backoff_delay = 0;
                return;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM: /* a firewall said no to this one */
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                starve(p, -errno);
                return;
            default: {
                char where[TW_ADDRESS_TEXT_MAX];
                tw_address_format(&p->addr, where, sizeof where);
                tw_log(TW_LOG_ERROR, "tcp", "%s: accept: %s", where, tw_strerror(-errno));
                return;
            }
            }
        }
        peer.len = len;
        peer.socktype = SOCK_STREAM;
        accept_one(p, fd, &peer);
    }
}

#ifdef TWIRL_HAVE_URING
/* ------------------------------------------------------------ multishot */

static void accept_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags);

/* Arms the multishot accept when wanted, cancels it when not. A cancel on
 * its way is let land: the last CQE re-arms if the port wants it again. */
static void multishot_sync(tw_port *p, int want)
{
    if (want && !p->accept_armed) {
        struct io_uring_sqe *sqe = tw__uring_sqe(p->reactor);
        io_uring_prep_multishot_accept(sqe, p->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, tw__op_tag(&p->accept_op));
        p->accept_op.cb = accept_done;
        p->accept_armed = 1;
        p->accept_cancel = 0;
    } else if (!want && p->accept_armed && !p->accept_cancel) {
        struct io_uring_sqe *sqe = tw__uring_sqe(p->reactor);
        io_uring_prep_cancel64(sqe, tw__op_tag(&p->accept_op), 0);
        io_uring_sqe_set_data64(sqe, 0);
        p->accept_cancel = 1;
    }
}

/* An fd the kernel accepted for us. A paused port still serves it (it was
 * accepted before the cancel landed); a stopped one has no factory. */
static void multishot_fd(tw_port *p, int fd)
{
    if (p->stopped) {
        close(fd); /* accepted while the cancel was on its way */
        return;
    }
    tw_address peer = { 0 };
    socklen_t len = sizeof peer.u;
    if (getpeername(fd, &peer.u.sa, &len) < 0) {
        /* Reset before we saw it (ENOTCONN): as accept4's ECONNABORTED. */
        close(fd);
        return;
    }
    peer.len = len;
    peer.socktype = SOCK_STREAM;
    accept_one(p, fd, &peer);
}

static void accept_done(tw_reactor *r, tw__op *op, int32_t res, uint32_t flags)
{
    tw_port *p = (tw_port *)((char *)op - offsetof(tw_port, accept_op));
    int last = !(flags & TW__OP_MORE);
    if (last)
        p->accept_armed = p->accept_cancel = 0;
    if (res >= 0) {
        /* A last CQE may carry an fd too (the kernel ends the multishot
         * when it cannot post more, e.g. a full completion queue). */
        p->accepted_any = 1;
        p->backoff_delay = 0;
        multishot_fd(p, res); /* may stop or pause p: it stays valid */
    }
    if (p->stopped) {
        if (last && p->free_pending) {
            tw__net *net = tw__net_get(r);
            if (net)
                net->ports_in_kernel--;
            free(p);
        }
        return;
    }
    switch (res) {
    case -EINVAL:
        if (last && !p->accepted_any) {
            /* This kernel has no multishot accept after all. */
            tw_log(TW_LOG_DEBUG, "tcp", "multishot accept refused: accepting by readiness");
            tw__uring_feature_off(r, TW__URING_ACCEPT_MULTI);
            p->multishot = 0;
            port_watch(p);
            return;
        }
        break;
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
        if (last) {
            starve(p, res); /* resumes by re-arming */
            return;
        }
        break;
    default:
        break;
    }
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN && res != -ECONNABORTED &&
        res != -EPROTO && res != -EPERM) {
        if (last) {
            starve(p, res); /* an unknown error: logged, retried later, not at once */
            return;
        }
        char where[TW_ADDRESS_TEXT_MAX];
        tw_address_format(&p->addr, where, sizeof where);
        tw_log(TW_LOG_ERROR, "tcp", "%s: accept: %s", where, tw_strerror(res));
    }
    if (last)
        port_watch(p); /* re-arms if the port still wants connections */
}
#endif

static int lock_unix_path(const char *path, int *lock_fd)
{
    char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
        close(fd);
        return rc;
    }
    *lock_fd = fd;
    return 0;
}

/* A socket file left by a dead server is replaced; a live server's is never
 * touched: a connect to it must be refused before we remove it. */
static int clear_stale_unix(const tw_address *addr)
{
    const char *path = addr->u.un.sun_path;
    if (path[0] == '\0')
        return 0; /* abstract: nothing on disk */
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EADDRINUSE;
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -errno;
    int rc = connect(probe, &addr->u.sa, addr->len);
    int err = errno;
    close(probe);
    if (rc == 0)
        return -EADDRINUSE; /* somebody answers: live */
    if (err != ECONNREFUSED)
        return -err;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int tw_listen(tw_reactor *r, const tw_address *addr, const tw_listen_options *opts, tw_factory *f,
              tw_port **out)
{
    static const tw_listen_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    int family = tw_address_family(addr);
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return TW_EINVAL;
    if (!f || (!f->protocol && (!f->ops || !f->ops->build_protocol)))
        return TW_EINVAL;

    tw_port *p = calloc(1, sizeof *p);
    if (!p)
        return TW_ENOMEM;
    p->lock_fd = -1;
    p->reactor = r;
    p->factory = f;
    p->write_limit = opts->write_limit;
    char where[TW_ADDRESS_TEXT_MAX];
    tw_address_format(addr, where, sizeof where);

    tw__net *net = tw__net_get(r);
    if (net && net->intercept) {
        /* A memory reactor: record, open nothing. */
        p->addr = *addr;
        p->addr.socktype = SOCK_STREAM;
        tw__io_init(&p->io, -1, 0, port_ready);
        tw_factory_do_start(f);
        p->list_next = net->ports;
        net->ports = p;
        net->intercept->listen(net->intercept->arg, p, opts);
        *out = p;
        return 0;
    }

    int rc = 0, fd = -1;
    if (family == AF_UNIX && addr->u.un.sun_path[0] != '\0') {
        if (opts->lockfile && (rc = lock_unix_path(addr->u.un.sun_path, &p->lock_fd)) < 0)
            goto fail;
        if ((rc = clear_stale_unix(addr)) < 0)
            goto fail;
    }
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    int one = 1;
    if (family != AF_UNIX) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (opts->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
            rc = -errno;
            goto fail;
        }
        if (family == AF_INET6) {
            int v6only = opts->v6_only ? 1 : 0;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        }
    }
    if (bind(fd, &addr->u.sa, addr->len) < 0) {
        rc = -errno;
        goto fail;
    }
    if (family == AF_UNIX && addr->u.un.sun_path[0] != '\0') {
        p->unix_path = strdup(addr->u.un.sun_path);
        if (opts->mode && chmod(addr->u.un.sun_path, opts->mode) < 0) {
            rc = -errno;
            goto fail;
        }
    }
    if (listen(fd, opts->backlog > 0 ? opts->backlog : 511) < 0) {
        rc = -errno;
        goto fail;
    }
    p->addr.socktype = SOCK_STREAM;
    socklen_t len = sizeof p->addr.u;
    if (getsockname(fd, &p->addr.u.sa, &len) < 0) {
        rc = -errno;
        goto fail;
    }
    p->addr.len = len;
    tw__io_init(&p->io, fd, 0, port_ready);
    if ((rc = port_start(p)) < 0)
        goto fail;
    tw_factory_do_start(f);
    if (net) {
        p->list_next = net->ports;
        net->ports = p;
    }
    tw_address_format(&p->addr, where, sizeof where);
    tw_log(TW_LOG_DEBUG, "tcp", "listening on %s", where);
    *out = p;
    return 0;

fail:
    tw_log(TW_LOG_ERROR, "tcp", "cannot listen on %s: %s", where, tw_strerror(rc));
    if (fd >= 0)
        close(fd);
    if (p->unix_path) {
        unlink(p->unix_path);
        free(p->unix_path);
    }
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    free(p);
    return rc;
}

int tw_listen_tcp(tw_reactor *r, const char *interface, uint16_t port,
                  const tw_listen_options *opts, tw_factory *f, tw_port **out)
{
    tw_address a;
    if (!interface || !*interface)
        interface = "::";
    if (tw_address_from_ip(&a, interface, port, SOCK_STREAM) < 0)
        return TW_EINVAL;
    return tw_listen(r, &a, opts, f, out);
}

int tw_listen_unix(tw_reactor *r, const char *path, const tw_listen_options *opts, tw_factory *f,
                   tw_port **out)
{
    tw_address a;
    if (tw_address_from_unix(&a, path, SOCK_STREAM) < 0)
        return TW_EINVAL;
    return tw_listen(r, &a, opts, f, out);
}

const tw_address *tw_port_address(const tw_port *p)
{
    return &p->addr;
}

tw_factory *tw_port_factory(const tw_port *p)
{
    return p->factory;
}

static void port_unlink(tw__net *net, struct tw_port *p)
{
    if (!net)
        return;
    for (struct tw_port **q = &net->ports; *q; q = &(*q)->list_next) {
        if (*q == p) {
            *q = p->list_next;
            return;
        }
    }
}

static void port_free_task(tw_reactor *r, tw__task *t)
{
    tw_port *p = (tw_port *)((char *)t - offsetof(tw_port, free_task));
#ifdef TWIRL_HAVE_URING
    if (p->accept_armed) {
        /* Its cancelled accept has yet to complete: accept_done frees it. */
        tw__net *net = tw__net_get(r);
        if (net)
            net->ports_in_kernel++;
        p->free_pending = 1;
        return;
    }
#endif
    free(p);
}

void tw_port_stop_listening(tw_port *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = 1;
    tw_timer_cancel(p->backoff);
    emfile_unlink(p);
    port_unlink(tw__net_get(p->reactor), p);
    tw__io_stop(p->reactor, &p->io);
#ifdef TWIRL_HAVE_URING
    if (p->multishot) {
        multishot_sync(p, 0);
        /* The cancel must reach the kernel before the fd closes: until
         * then the accept holds the socket open, and connections would
         * queue on a port nobody accepts from. */
        if (p->accept_armed)
            tw__uring_submit_now(p->reactor);
    }
#endif
    if (p->io.fd >= 0)
        close(p->io.fd);
    if (p->unix_path) {
        unlink(p->unix_path);
        free(p->unix_path);
        p->unix_path = NULL;
    }
    if (p->lock_fd >= 0) {
        close(p->lock_fd);
        p->lock_fd = -1;
    }
    tw_factory_do_stop(p->factory);
    tw__task_post(p->reactor, &p->free_task, port_free_task);
}

void tw_port_pause(tw_port *p)
{
    p->paused = 1;
    port_watch(p);
}

void tw_port_resume(tw_port *p)
{
    p->paused = 0;
    port_watch(p);
}

/* ------------------------------------------------------------ connectors */

enum { CONN_IDLE = 0, CONN_CONNECTING, CONN_CONNECTED, CONN_DONE };

struct tw_connector {
    struct tw_connector *list_next; /* the reactor's connectors */
    tw__io io;
    tw_reactor *reactor;
    tw_factory *factory;
    tw_address dest;
    tw_address bind;
    int has_bind;
    double timeout;
    size_t write_limit;
    tw_timer timer;
    tw__task task;
    tw__task free_task;
    tw__conn *conn;
    int state;
    int refs;        /* tw_connector_retain */
    int pending_err; /* reported from the task */
    int in_hook;
};

static void connector_unlink(tw_connector *c)
{
    tw__net *net = tw__net_get(c->reactor);
    if (!net)
        return;
    for (tw_connector **q = &net->connectors; *q; q = &(*q)->list_next) {
        if (*q == c) {
            *q = c->list_next;
            return;
        }
    }
}

static void connector_free_task(tw_reactor *r, tw__task *t)
{
    free((tw_connector *)((char *)t - offsetof(tw_connector, free_task)));
}

/* Freed from a task, never at once: the backend may still hold an event for
 * its registration in the batch being dispatched. */
static void connector_maybe_free(tw_connector *c)
{
    if (c->refs == 0 && c->state == CONN_DONE && !c->in_hook && !c->free_task.queued) {
        connector_unlink(c);
        tw__task_post(c->reactor, &c->free_task, connector_free_task);
    }
}

static void connectors_stop_all(tw__net *net)
{
    for (tw_connector *c = net->connectors; c;) {
        tw_connector *next = c->list_next;
        tw_connector_stop_connecting(c);
        c = next;
    }
}

/* At reactor free: connectors a reconnecting factory still holds go too. */
static void connector_free_all(tw__net *net)
{
    while (net->connectors) {
        tw_connector *c = net->connectors;
        net->connectors = c->list_next;
        tw_timer_cancel(c->timer);
        if (c->io.fd >= 0)
            close(c->io.fd);
        free(c);
    }
}

/* Reports a failed attempt through the factory; the connector is then
 * done unless the hook connects again. */
static void connect_failed(tw_connector *c, int err)
{
    tw_timer_cancel(c->timer);
    c->timer = TW_TIMER_NONE;
    if (c->io.fd >= 0) {
        tw__io_stop(c->reactor, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    c->state = CONN_DONE;
    char where[TW_ADDRESS_TEXT_MAX];
    tw_address_format(&c->dest, where, sizeof where);
    tw_failure *reason;
    if (err == TW_ECANCELED)
        reason = tw_failure_new(TW_DOMAIN, TW_ECANCELED, "connection to %s was cancelled", where);
    else if (err == TW_ETIMEDOUT)
        reason = tw_failure_new(TW_DOMAIN, TW_ETIMEDOUT, "connection to %s timed out", where);
    else
        reason =
            tw_failure_new(TW_DOMAIN, err, "connection to %s failed: %s", where, tw_strerror(err));
    tw_factory *f = c->factory;
    c->in_hook++;
    if (f->ops && f->ops->client_connection_failed)
        f->ops->client_connection_failed(f, c, reason);
    c->in_hook--;
    tw_failure_unref(reason);
    if (c->state == CONN_DONE)
        tw_factory_do_stop(f);
    connector_maybe_free(c);
}

static void connected(tw_connector *c)
{
    tw_timer_cancel(c->timer);
    c->timer = TW_TIMER_NONE;
    int fd = c->io.fd;
    tw__io_stop(c->reactor, &c->io);
    c->io.fd = -1;
    int is_tcp = tw_address_family(&c->dest) != AF_UNIX;
    tw_protocol *p = tw_factory_build(c->factory, &c->dest);
    if (!p) {
        close(fd);
        connect_failed(c, TW_ECANCELED);
        return;
    }
    c->state = CONN_CONNECTED;
    c->conn = tw__conn_new(c->reactor, fd, is_tcp, p, 0, c->write_limit, c);
    if (!c->conn) {
        connect_failed(c, TW_ENOMEM);
        return;
    }
    tw__conn_set_peer(c->conn, &c->dest);
    tw__conn_start(c->conn);
}

static void connector_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw_connector *c = (tw_connector *)((char *)io - offsetof(tw_connector, io));
    if (c->state != CONN_CONNECTING)
        return;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err)
        connect_failed(c, -err);
    else
        connected(c);
}

static void connector_task(tw_reactor *r, tw__task *t)
{
    tw_connector *c = (tw_connector *)((char *)t - offsetof(tw_connector, task));
    if (c->state == CONN_CONNECTING && c->pending_err)
        connect_failed(c, c->pending_err);
}

static void connect_timeout(void *arg)
{
    tw_connector *c = arg;
    c->timer = TW_TIMER_NONE;
    if (c->state == CONN_CONNECTING)
        connect_failed(c, TW_ETIMEDOUT);
}

static int start_attempt(tw_connector *c)
{
    c->state = CONN_CONNECTING;
    c->pending_err = 0;
    c->conn = NULL;
    tw_factory *f = c->factory;
    c->in_hook++;
    if (f->ops && f->ops->started_connecting)
        f->ops->started_connecting(f, c);
    c->in_hook--;
    if (c->state != CONN_CONNECTING) {
        connector_maybe_free(c); /* stopped from inside started_connecting */
        return 0;
    }

    int family = tw_address_family(&c->dest);
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = 0;
    if (fd < 0) {
        err = -errno;
    } else if (c->has_bind && bind(fd, &c->bind.u.sa, c->bind.len) < 0) {
        err = -errno;
    } else if (connect(fd, &c->dest.u.sa, c->dest.len) < 0 && errno != EINPROGRESS &&
               errno != EAGAIN) {
        err = -errno;
    }
    tw__io_init(&c->io, fd, 0, connector_ready);
    if (!err && (err = tw__io_set(c->reactor, &c->io, TW_WRITABLE)) == 0) {
        c->timer = tw_call_later(c->reactor, c->timeout, connect_timeout, c);
        return 0;
    }
    /* Report from the loop, never inside the caller. */
    c->pending_err = err;
    tw__task_post(c->reactor, &c->task, connector_task);
    return 0;
}

int tw_connect(tw_reactor *r, const tw_address *addr, const tw_connect_options *opts, tw_factory *f,
               tw_connector **out)
{
    static const tw_connect_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    int family = tw_address_family(addr);
    if ((family != AF_INET && family != AF_INET6 && family != AF_UNIX) || !f)
        return TW_EINVAL;
    tw_connector *c = calloc(1, sizeof *c);
    if (!c)
        return TW_ENOMEM;
    c->io.fd = -1;
    c->reactor = r;
    c->factory = f;
    c->dest = *addr;
    c->dest.socktype = SOCK_STREAM;
    if (opts->bind) {
        c->bind = *opts->bind;
        c->has_bind = 1;
    }
    c->timeout = opts->timeout > 0 ? opts->timeout : 30.0;
    c->write_limit = opts->write_limit;
    tw__net *net = tw__net_get(r);
    if (!net || net->dying) {
        free(c);
        return net ? TW_ECLOSED : TW_ENOMEM;
    }
    c->list_next = net->connectors;
    net->connectors = c;
    if (out)
        *out = c;
    tw_factory_do_start(f);
    if (net->intercept) {
        /* A memory reactor: connecting, for as long as the test likes. */
        c->state = CONN_CONNECTING;
        c->in_hook++;
        if (f->ops && f->ops->started_connecting)
            f->ops->started_connecting(f, c);
        c->in_hook--;
        net->intercept->connect(net->intercept->arg, c, opts);
        return 0;
    }
    return start_attempt(c);
}

tw_factory *tw__connector_factory(const tw_connector *c)
{
    return c->factory;
}

int tw__connector_fail(tw_connector *c, int code)
{
    if (c->state != CONN_CONNECTING)
        return TW_EINVAL;
    tw__task_cancel(c->reactor, &c->task);
    connect_failed(c, code);
    return 0;
}

int tw__net_set_intercept(tw_reactor *r, const tw__net_intercept *ic)
{
    tw__net *net = tw__net_get(r);
    if (!net)
        return TW_ENOMEM;
    net->intercept = ic;
    return 0;
}

int tw_connect_tcp(tw_reactor *r, const char *host, uint16_t port, const tw_connect_options *opts,
                   tw_factory *f, tw_connector **out)
{
    tw_address a;
    if (host && strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (!host || tw_address_from_ip(&a, host, port, SOCK_STREAM) < 0)
        return TW_EINVAL;
    return tw_connect(r, &a, opts, f, out);
}

int tw_connect_unix(tw_reactor *r, const char *path, const tw_connect_options *opts, tw_factory *f,
                    tw_connector **out)
{
    tw_address a;
    if (tw_address_from_unix(&a, path, SOCK_STREAM) < 0)
        return TW_EINVAL;
    return tw_connect(r, &a, opts, f, out);
}

void tw__connector_conn_lost(tw_connector *c, const tw_failure *reason)
{
    c->conn = NULL;
    c->state = CONN_DONE;
    tw_factory *f = c->factory;
    c->in_hook++;
    if (f->ops && f->ops->client_connection_lost)
        f->ops->client_connection_lost(f, c, reason);
    c->in_hook--;
    if (c->state == CONN_DONE)
        tw_factory_do_stop(f);
    connector_maybe_free(c);
}

void tw_connector_stop_connecting(tw_connector *c)
{
    if (c->state == CONN_CONNECTING) {
        tw__task_cancel(c->reactor, &c->task);
        connect_failed(c, TW_ECANCELED);
    }
}

int tw_connector_connect(tw_connector *c)
{
    if (c->state == CONN_CONNECTING || c->state == CONN_CONNECTED)
        return TW_EBUSY;
    tw__net *net = tw__net_get(c->reactor);
    if (!net || net->dying)
        return TW_ECLOSED;
    /* From inside the failed/lost hook the factory is still counted as in
     * use (the stop comes after the hook); later it was stopped: start it. */
    if (!c->in_hook)
        tw_factory_do_start(c->factory);
    return start_attempt(c);
}

void tw_connector_disconnect(tw_connector *c)
{
    if (c->state == CONN_CONNECTED && c->conn)
        tw_transport_lose_connection(&c->conn->base);
    else
        tw_connector_stop_connecting(c);
}

const tw_address *tw_connector_destination(const tw_connector *c)
{
    return &c->dest;
}

tw_reactor *tw_connector_reactor(const tw_connector *c)
{
    return c->reactor;
}

void tw_connector_retain(tw_connector *c)
{
    c->refs++;
}

void tw_connector_release(tw_connector *c)
{
    if (c->refs > 0)
        c->refs--;
    connector_maybe_free(c);
}
