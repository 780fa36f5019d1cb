/* udp.c — UDP ports: Twisted's udp.Port and MulticastPort.
 *
 * Reading: the socket is watched level-triggered; each readiness reads at
 * most TW_UDP_READS_PER_WAKEUP datagrams into the reactor's shared buffer,
 * so a flooded port cannot starve the others and the level-triggered
 * registration brings us back for the rest. When the largest datagram the
 * port accepts is small enough for several to fit the shared buffer, one
 * recvmmsg(2) fills many slots at once and a short batch tells us the
 * socket is drained without spending a call on EAGAIN.
 *
 * Writing: straight to sendmsg(2). UDP queues nothing: what the kernel
 * refuses is dropped and the write says so.
 *
 * Teardown: stop_listening closes the socket at once and posts a task;
 * stop_protocol runs from that task, and the port (with its protocol, in
 * the same block) is freed right after. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/reactor_internal.h"
#include "twirl/log.h"
#include "twirl/udp.h"

enum {
    /* Batch with recvmmsg when at least this many datagrams fit the shared
     * buffer. */
    BATCH_MIN_SLOTS = 2,
    PENDING_REFUSED = 1u << 0,
    PENDING_HELD = 1u << 1
};

/* A datagram read in a batch but not delivered because the protocol paused
 * the port in the middle: kept (a copy) until resume, so pausing never
 * loses what the kernel already handed us. At most one batch is held. */
typedef struct held_dgram {
    struct held_dgram *next;
    tw_address from;
    size_t len;
    char data[];
} held_dgram;

struct tw_udp_port {
    tw__io io;
    tw_reactor *reactor;
    tw__task task; /* teardown, and connection_refused found by a write */
    tw_address addr;
    tw_address peer;
    tw_datagram_protocol *proto;
    size_t max_dgram;
    tw_udp_stats stats;
    double trunc_logged_at; /* reactor time of the last truncation log line */
    uint64_t trunc_quiet;   /* truncations since that line */
    held_dgram *held, **held_tail;
    unsigned pending;
    bool connected, paused, stopped, dual_stack;
};

/* The protocol follows the port in the same allocation. */
static size_t proto_offset(void)
{
    size_t a = alignof(max_align_t);
    return (sizeof(tw_udp_port) + a - 1) / a * a;
}

static void where(const tw_udp_port *p, char *buf, size_t size)
{
    tw_address_format(&p->addr, buf, size);
}

static void watch(tw_udp_port *p)
{
    unsigned want = (p->paused || p->stopped) ? 0 : TW_READABLE;
    int rc = tw__io_set(p->reactor, &p->io, want);
    if (rc < 0) {
        char w[TW_ADDRESS_TEXT_MAX];
        where(p, w, sizeof w);
        tw_log(TW_LOG_ERROR, "udp", "%s: cannot watch the socket: %s", w, tw_strerror(rc));
    }
}

/* ------------------------------------------------------------ reading */

static void truncated(tw_udp_port *p, const tw_address *from)
{
    p->stats.truncated++;
    double now = tw_reactor_now(p->reactor);
    /* At most one line a second: a peer must not be able to flood the log. */
    if (p->trunc_logged_at > 0 && now - p->trunc_logged_at < 1.0) {
        p->trunc_quiet++;
        return;
    }
    char w[TW_ADDRESS_TEXT_MAX], f[TW_ADDRESS_TEXT_MAX];
    where(p, w, sizeof w);
    tw_address_format(from, f, sizeof f);
    if (p->trunc_quiet)
        tw_log(TW_LOG_WARN, "udp",
               "%s: dropped a datagram from %s longer than %zu bytes (max_datagram_bytes),"
               " and %llu more since the last report",
               w, f, p->max_dgram, (unsigned long long)p->trunc_quiet);
    else
        tw_log(TW_LOG_WARN, "udp",
               "%s: dropped a datagram from %s longer than %zu bytes (max_datagram_bytes)", w, f,
               p->max_dgram);
    p->trunc_logged_at = now > 0 ? now : 1e-9;
    p->trunc_quiet = 0;
}

static void refused(tw_udp_port *p)
{
    p->stats.refused++;
    tw_datagram_protocol *proto = p->proto;
    if (proto->ops->connection_refused)
        proto->ops->connection_refused(proto);
}

/* A read error. Returns true to go on reading. */
static bool read_error(tw_udp_port *p, int err)
{
    switch (err) {
    case EINTR:
        return true;
    case EAGAIN:
        return false;
    case ECONNREFUSED:
        /* Only connected sockets hear of ICMP errors (no IP_RECVERR), and
         * reading the error cleared it: the socket is usable again. */
        if (p->connected)
            refused(p);
        return true;
    default: {
        /* Other ICMP reports on a connected socket (host or network
         * unreachable) are cleared by this read too; anything else is
         * unexpected but not worth closing a datagram port over. */
        char w[TW_ADDRESS_TEXT_MAX];
        where(p, w, sizeof w);
        tw_log(TW_LOG_INFO, "udp", "%s: recvmsg: %s", w, tw_strerror(-err));
        return err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == ENETDOWN ||
               err == EPROTO;
    }
    }
}

static void deliver(tw_udp_port *p, const char *data, size_t len, tw_address *from,
                    socklen_t namelen, int msg_flags)
{
    from->len = namelen;
    from->socktype = SOCK_DGRAM;
    if (msg_flags & MSG_TRUNC) {
        truncated(p, from);
        return;
    }
    p->stats.received++;
    tw_datagram_protocol *proto = p->proto;
    if (proto->ops->datagram_received)
        proto->ops->datagram_received(proto, data, len, from);
}

/* The callbacks may stop or pause the port: check after each. */
static inline bool reading(const tw_udp_port *p)
{
    return !p->stopped && !p->paused;
}

static void read_single(tw_udp_port *p, char *buf)
{
    for (int budget = TW_UDP_READS_PER_WAKEUP; budget > 0 && reading(p); budget--) {
        tw_address from;
        struct iovec iov = { buf, p->max_dgram };
        struct msghdr mh = {
            .msg_name = &from.u, .msg_namelen = sizeof from.u, .msg_iov = &iov, .msg_iovlen = 1
        };
        ssize_t n = recvmsg(p->io.fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (!read_error(p, errno))
                return;
            continue;
        }
        deliver(p, buf, (size_t)n, &from, mh.msg_namelen, mh.msg_flags);
    }
}

static void hold(tw_udp_port *p, const char *data, size_t len, tw_address *from, socklen_t namelen,
                 int msg_flags)
{
    from->len = namelen;
    from->socktype = SOCK_DGRAM;
    if (msg_flags & MSG_TRUNC) {
        truncated(p, from);
        return;
    }
    held_dgram *h = malloc(sizeof *h + len);
    if (!h) {
        char w[TW_ADDRESS_TEXT_MAX];
        where(p, w, sizeof w);
        tw_log(TW_LOG_ERROR, "udp", "%s: out of memory holding a datagram while paused; dropped",
               w);
        return;
    }
    h->next = NULL;
    h->from = *from;
    h->len = len;
    memcpy(h->data, data, len);
    if (!p->held)
        p->held_tail = &p->held;
    *p->held_tail = h;
    p->held_tail = &h->next;
}

/* Delivers what a pause held back, in order, until paused again. */
static void deliver_held(tw_udp_port *p)
{
    held_dgram *h;
    while (reading(p) && (h = p->held) != NULL) {
        p->held = h->next;
        deliver(p, h->data, h->len, &h->from, h->from.len, 0);
        free(h);
    }
}

static void free_held(tw_udp_port *p)
{
    while (p->held) {
        held_dgram *h = p->held;
        p->held = h->next;
        free(h);
    }
}

static void read_batch(tw_udp_port *p, char *buf, unsigned slots)
{
    struct mmsghdr mm[TW_UDP_READS_PER_WAKEUP];
    struct iovec iov[TW_UDP_READS_PER_WAKEUP];
    tw_address from[TW_UDP_READS_PER_WAKEUP];
    int budget = TW_UDP_READS_PER_WAKEUP;
    while (budget > 0 && reading(p)) {
        unsigned want = slots < (unsigned)budget ? slots : (unsigned)budget;
        for (unsigned i = 0; i < want; i++) {
            iov[i].iov_base = buf + i * p->max_dgram;
            iov[i].iov_len = p->max_dgram;
            mm[i].msg_hdr = (struct msghdr){ .msg_name = &from[i].u,
                                             .msg_namelen = sizeof from[i].u,
                                             .msg_iov = &iov[i],
                                             .msg_iovlen = 1 };
            mm[i].msg_len = 0;
        }
        int n = recvmmsg(p->io.fd, mm, want, MSG_DONTWAIT, NULL);
        if (n < 0) {
            budget--;
            if (!read_error(p, errno))
                return;
            continue;
        }
        budget -= n;
        for (int i = 0; i < n && !p->stopped; i++) {
            if (p->paused)
                hold(p, iov[i].iov_base, mm[i].msg_len, &from[i], mm[i].msg_hdr.msg_namelen,
                     mm[i].msg_hdr.msg_flags);
            else
                deliver(p, iov[i].iov_base, mm[i].msg_len, &from[i], mm[i].msg_hdr.msg_namelen,
                        mm[i].msg_hdr.msg_flags);
        }
        if ((unsigned)n < want)
            return; /* drained (an error, if any, is reported by the next call) */
    }
}

static void port_ready(tw_reactor *r, tw__io *io, unsigned events)
{
    tw_udp_port *p = (tw_udp_port *)io;
    deliver_held(p);
    if (!reading(p))
        return;
    char *buf = tw__reactor_rbuf(r);
    if (!buf) {
        /* Drop one datagram rather than spin on a level-triggered fd. */
        char w[TW_ADDRESS_TEXT_MAX];
        where(p, w, sizeof w);
        tw_log(TW_LOG_ERROR, "udp", "%s: out of memory for the read buffer; datagram dropped", w);
        char one;
        if (recv(io->fd, &one, 1, MSG_DONTWAIT | MSG_TRUNC) < 0 && errno == ECONNREFUSED &&
            p->connected)
            refused(p);
        return;
    }
    unsigned slots = (unsigned)(TW__RBUF_BYTES / p->max_dgram);
    if (slots > TW_UDP_READS_PER_WAKEUP)
        slots = TW_UDP_READS_PER_WAKEUP;
    if (slots >= BATCH_MIN_SLOTS)
        read_batch(p, buf, slots);
    else
        read_single(p, buf);
}

/* ------------------------------------------------------------ teardown */

static void port_task(tw_reactor *r, tw__task *t)
{
    tw_udp_port *p = (tw_udp_port *)((char *)t - offsetof(tw_udp_port, task));
    tw_datagram_protocol *proto = p->proto;
    if (!p->stopped) {
        if (p->pending & PENDING_REFUSED) {
            p->pending &= ~PENDING_REFUSED;
            refused(p);
        }
        if ((p->pending & PENDING_HELD) && !p->stopped) {
            p->pending &= ~PENDING_HELD;
            deliver_held(p);
        }
        return; /* a stop in those callbacks posted this task again */
    }
    free_held(p);
    proto->transport = NULL;
    if (proto->ops->stop_protocol)
        proto->ops->stop_protocol(proto);
    if (proto->ops->destroy)
        proto->ops->destroy(proto);
    free(p);
}

void tw_udp_stop_listening(tw_udp_port *p)
{
    if (!p || p->stopped)
        return;
    p->stopped = true;
    tw__io_stop(p->reactor, &p->io);
    close(p->io.fd);
    p->io.fd = -1;
    char w[TW_ADDRESS_TEXT_MAX];
    where(p, w, sizeof w);
    tw_log(TW_LOG_DEBUG, "udp", "stopped listening on %s", w);
    tw__task_post(p->reactor, &p->task, port_task);
}

/* ------------------------------------------------------------ listening */

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

static int get_int(int fd, int level, int name, int *value)
{
    socklen_t len = sizeof *value;
    *value = 0;
    return getsockopt(fd, level, name, value, &len) < 0 ? -errno : 0;
}

static int configure(int fd, int family, const tw_udp_options *o)
{
    int rc = 0;
    if (o->reuse_addr && (rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0)
        return rc;
    if (o->reuse_port && (rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1)) < 0)
        return rc;
    if (o->broadcast && (rc = set_int(fd, SOL_SOCKET, SO_BROADCAST, 1)) < 0)
        return rc;
    if (o->rcvbuf > 0 && (rc = set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf)) < 0)
        return rc;
    if (o->sndbuf > 0 && (rc = set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf)) < 0)
        return rc;
    /* Say it either way: the system default (bindv6only) varies. */
    if (family == AF_INET6 && (rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6_only ? 1 : 0)) < 0)
        return rc;
    return 0;
}

int tw_listen_udp_address(tw_reactor *r, const tw_address *addr, const tw_udp_options *opts,
                          const tw_datagram_protocol_ops *ops, void *user_data, tw_udp_port **out)
{
    static const tw_udp_options defaults = { 0 };
    if (!opts)
        opts = &defaults;
    *out = NULL;
    int family = tw_address_family(addr);
    if ((family != AF_INET && family != AF_INET6) || !ops ||
        opts->max_datagram_bytes > TW__RBUF_BYTES)
        return TW_EINVAL;
    size_t psize =
        ops->size > sizeof(tw_datagram_protocol) ? ops->size : sizeof(tw_datagram_protocol);
    tw_udp_port *p = calloc(1, proto_offset() + psize);
    if (!p)
        return TW_ENOMEM;
    p->reactor = r;
    p->max_dgram = opts->max_datagram_bytes ? opts->max_datagram_bytes : TW__RBUF_BYTES;
    p->dual_stack = family == AF_INET6 && !opts->v6_only;
    char w[TW_ADDRESS_TEXT_MAX];
    tw_address_format(addr, w, sizeof w);

    int rc;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = configure(fd, family, opts)) < 0)
        goto fail;
    if (bind(fd, &addr->u.sa, addr->len) < 0) {
        rc = -errno;
        goto fail;
    }
    socklen_t len = sizeof p->addr.u;
    if (getsockname(fd, &p->addr.u.sa, &len) < 0) {
        rc = -errno;
        goto fail;
    }
    p->addr.len = len;
    p->addr.socktype = SOCK_DGRAM;
    tw__io_init(&p->io, fd, 0, port_ready);
    if ((rc = tw__io_set(r, &p->io, TW_READABLE)) < 0)
        goto fail;

    tw_datagram_protocol *proto = (tw_datagram_protocol *)((char *)p + proto_offset());
    proto->ops = ops;
    proto->transport = p;
    proto->user_data = user_data;
    p->proto = proto;
    where(p, w, sizeof w);
    tw_log(TW_LOG_DEBUG, "udp", "listening on %s", w);
    *out = p;
    if (ops->start_protocol)
        ops->start_protocol(proto);
    if (p->stopped) {
        *out = NULL;
        return TW_ECLOSED;
    }
    return 0;

fail:
    tw_log(TW_LOG_ERROR, "udp", "cannot listen on %s: %s", w, tw_strerror(rc));
    if (fd >= 0)
        close(fd);
    free(p);
    return rc;
}

int tw_listen_udp(tw_reactor *r, const char *interface, uint16_t port, const tw_udp_options *opts,
                  const tw_datagram_protocol_ops *ops, void *user_data, tw_udp_port **out)
{
    tw_address a;
    *out = NULL;
    if (!interface || !*interface)
        interface = "0.0.0.0";
    if (tw_address_from_ip(&a, interface, port, SOCK_DGRAM) < 0)
        return TW_EINVAL;
    return tw_listen_udp_address(r, &a, opts, ops, user_data, out);
}

/* ------------------------------------------------------------ writing */

/* The family a destination is sent as, mapping IPv4 onto a dual-stack IPv6
 * socket. Returns 0 or TW_EINVAL. */
static int destination(const tw_udp_port *p, const tw_address *to, tw_address *mapped,
                       const tw_address **dest)
{
    int port_family = tw_address_family(&p->addr);
    int family = tw_address_family(to);
    *dest = to;
    if (family == port_family)
        return 0;
    if (family != AF_INET || port_family != AF_INET6 || !p->dual_stack)
        return TW_EINVAL;
    memset(mapped, 0, sizeof *mapped);
    mapped->u.in6.sin6_family = AF_INET6;
    mapped->u.in6.sin6_port = to->u.in4.sin_port;
    mapped->u.in6.sin6_addr.s6_addr[10] = 0xff;
    mapped->u.in6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&mapped->u.in6.sin6_addr.s6_addr[12], &to->u.in4.sin_addr, 4);
    mapped->len = sizeof mapped->u.in6;
    mapped->socktype = SOCK_DGRAM;
    *dest = mapped;
    return 0;
}

int tw_udp_writev(tw_udp_port *p, const struct iovec *iov, int iovcnt, const tw_address *to)
{
    if (p->stopped)
        return TW_ECLOSED;
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return TW_EINVAL;
    const tw_address *dest = NULL;
    tw_address mapped;
    if (p->connected) {
        if (to && !tw_address_equal(to, &p->peer))
            return TW_EINVAL;
    } else {
        if (!to)
            return -EDESTADDRREQ;
        if (destination(p, to, &mapped, &dest) < 0)
            return TW_EINVAL;
    }
    /* The limit of the family on the wire: an IPv4 peer of a dual-stack
     * socket gets IPv4's. */
    const tw_address *wire = p->connected ? &p->peer : to;
    size_t limit =
        tw_address_family(wire) == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&wire->u.in6.sin6_addr)
            ? TW_UDP_MAX_PAYLOAD_V6
            : TW_UDP_MAX_PAYLOAD_V4;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > limit - len)
            return -EMSGSIZE;
        len += iov[i].iov_len;
    }
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    if (dest) {
        mh.msg_name = (void *)&dest->u;
        mh.msg_namelen = dest->len;
    }
    for (;;) {
        if (sendmsg(p->io.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            p->stats.sent++;
            return 0;
        }
        if (errno != EINTR)
            break;
    }
    int err = errno;
    switch (err) {
    case EAGAIN:
    case ENOBUFS:
        p->stats.send_dropped++;
        break;
    case ECONNREFUSED:
        /* The error belonged to an earlier datagram and is now cleared:
         * tell the protocol the way a read would have, from the loop. */
        if (p->connected) {
            p->pending |= PENDING_REFUSED;
            tw__task_post(p->reactor, &p->task, port_task);
        }
        break;
    default:
        break;
    }
    return -err;
}

int tw_udp_write(tw_udp_port *p, const void *data, size_t len, const tw_address *to)
{
    struct iovec iov = { (void *)data, len };
    return tw_udp_writev(p, &iov, 1, to);
}

/* ------------------------------------------------------------ connecting */

int tw_udp_connect(tw_udp_port *p, const tw_address *addr)
{
    if (p->stopped)
        return TW_ECLOSED;
    const tw_address *dest;
    tw_address mapped;
    if (destination(p, addr, &mapped, &dest) < 0 || tw_address_port(addr) == 0)
        return TW_EINVAL;
    if (connect(p->io.fd, &dest->u.sa, dest->len) < 0)
        return -errno;
    p->peer = *addr;
    p->peer.socktype = SOCK_DGRAM;
    p->connected = true;
    /* connect(2) may rebind an unspecified local address: read it again. */
    tw_address bound;
    socklen_t len = sizeof bound.u;
    if (getsockname(p->io.fd, &bound.u.sa, &len) == 0) {
        bound.len = len;
        bound.socktype = SOCK_DGRAM;
        p->addr = bound;
    }
    return 0;
}

const tw_address *tw_udp_connected_address(const tw_udp_port *p)
{
    return p->connected ? &p->peer : NULL;
}

/* ------------------------------------------------------------ accessors */

const tw_address *tw_udp_port_address(const tw_udp_port *p)
{
    return &p->addr;
}

tw_datagram_protocol *tw_udp_port_protocol(const tw_udp_port *p)
{
    return p->proto;
}

tw_reactor *tw_udp_port_reactor(const tw_udp_port *p)
{
    return p->reactor;
}

int tw_udp_port_fd(const tw_udp_port *p)
{
    return p->stopped ? -1 : p->io.fd;
}

void tw_udp_port_stats(const tw_udp_port *p, tw_udp_stats *out)
{
    *out = p->stats;
}

void tw_udp_pause(tw_udp_port *p)
{
    if (p->stopped || p->paused)
        return;
    p->paused = true;
    watch(p);
}

void tw_udp_resume(tw_udp_port *p)
{
    if (p->stopped || !p->paused)
        return;
    p->paused = false;
    watch(p);
    if (p->held) {
        p->pending |= PENDING_HELD;
        tw__task_post(p->reactor, &p->task, port_task);
    }
}

int tw_udp_set_broadcast_allowed(tw_udp_port *p, bool on)
{
    if (p->stopped)
        return TW_ECLOSED;
    return set_int(p->io.fd, SOL_SOCKET, SO_BROADCAST, on ? 1 : 0);
}

/* ------------------------------------------------------------ multicast */

/* An interface by name, index or (IPv4) local address. Returns 0 or
 * TW_EINVAL (logged). */
static int parse_interface(const tw_udp_port *p, const char *iface, bool v4, unsigned *index,
                           struct in_addr *local)
{
    *index = 0;
    local->s_addr = htonl(INADDR_ANY);
    if (!iface || !*iface)
        return 0;
    if (v4 && inet_pton(AF_INET, iface, local) == 1)
        return 0;
    char *end;
    errno = 0;
    unsigned long n = strtoul(iface, &end, 10);
    if (*end == '\0' && iface[0] >= '0' && iface[0] <= '9' && errno == 0 && n <= INT_MAX) {
        *index = (unsigned)n;
        return 0;
    }
    if ((*index = if_nametoindex(iface)) != 0)
        return 0;
    char w[TW_ADDRESS_TEXT_MAX];
    where(p, w, sizeof w);
    tw_log(TW_LOG_WARN, "udp", "%s: unknown interface '%s'", w, iface);
    return TW_EINVAL;
}

static int membership(tw_udp_port *p, const char *group, const char *iface, bool join)
{
    if (p->stopped)
        return TW_ECLOSED;
    char w[TW_ADDRESS_TEXT_MAX];
    tw_address g;
    int port_family = tw_address_family(&p->addr);
    if (!group || tw_address_from_ip(&g, group, 0, SOCK_DGRAM) < 0)
        goto bad_group;
    int family = tw_address_family(&g);
    unsigned index;
    struct in_addr local;
    if (family == AF_INET) {
        if (!IN_MULTICAST(ntohl(g.u.in4.sin_addr.s_addr)) ||
            (port_family != AF_INET && !p->dual_stack))
            goto bad_group;
        if (parse_interface(p, iface, true, &index, &local) < 0)
            return TW_EINVAL;
        struct ip_mreqn m = { .imr_multiaddr = g.u.in4.sin_addr,
                              .imr_address = local,
                              .imr_ifindex = (int)index };
        if (setsockopt(p->io.fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m,
                       sizeof m) < 0)
            return -errno;
        return 0;
    }
    if (!IN6_IS_ADDR_MULTICAST(&g.u.in6.sin6_addr) || port_family != AF_INET6)
        goto bad_group;
    if (parse_interface(p, iface, false, &index, &local) < 0)
        return TW_EINVAL;
    struct ipv6_mreq m6 = { .ipv6mr_multiaddr = g.u.in6.sin6_addr, .ipv6mr_interface = index };
    if (setsockopt(p->io.fd, IPPROTO_IPV6, join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &m6,
                   sizeof m6) < 0)
        return -errno;
    return 0;

bad_group:
    where(p, w, sizeof w);
    tw_log(TW_LOG_WARN, "udp", "%s: '%s' is not a multicast group this port can join", w,
           group ? group : "(null)");
    return TW_EINVAL;
}

int tw_udp_join_group(tw_udp_port *p, const char *group, const char *interface)
{
    return membership(p, group, interface, true);
}

int tw_udp_leave_group(tw_udp_port *p, const char *group, const char *interface)
{
    return membership(p, group, interface, false);
}

/* Sets an IPv4 and an IPv6 multicast option as the port's family needs: an
 * IPv6 port that also takes IPv4 gets the IPv4 one too, best effort. */
static int set_mc(tw_udp_port *p, int v4_name, int v6_name, int value)
{
    if (p->stopped)
        return TW_ECLOSED;
    if (tw_address_family(&p->addr) == AF_INET)
        return set_int(p->io.fd, IPPROTO_IP, v4_name, value);
    int rc = set_int(p->io.fd, IPPROTO_IPV6, v6_name, value);
    if (rc == 0 && p->dual_stack)
        set_int(p->io.fd, IPPROTO_IP, v4_name, value);
    return rc;
}

static int get_mc(tw_udp_port *p, int v4_name, int v6_name, int *value)
{
    if (p->stopped)
        return TW_ECLOSED;
    if (tw_address_family(&p->addr) == AF_INET)
        return get_int(p->io.fd, IPPROTO_IP, v4_name, value);
    return get_int(p->io.fd, IPPROTO_IPV6, v6_name, value);
}

int tw_udp_set_ttl(tw_udp_port *p, int ttl)
{
    if (ttl < 0 || ttl > 255)
        return TW_EINVAL;
    return set_mc(p, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
}

int tw_udp_get_ttl(tw_udp_port *p, int *ttl)
{
    int rc = get_mc(p, IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, ttl);
    if (rc == 0 && tw_address_family(&p->addr) == AF_INET)
        *ttl &= 0xff; /* the kernel may answer with a single byte */
    return rc;
}

int tw_udp_set_loopback_mode(tw_udp_port *p, bool on)
{
    return set_mc(p, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, on ? 1 : 0);
}

int tw_udp_get_loopback_mode(tw_udp_port *p, bool *on)
{
    int v = 0;
    int rc = get_mc(p, IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, &v);
    if (tw_address_family(&p->addr) == AF_INET)
        v &= 0xff;
    *on = rc == 0 && v != 0;
    return rc;
}

int tw_udp_set_outgoing_interface(tw_udp_port *p, const char *interface)
{
    if (p->stopped)
        return TW_ECLOSED;
    bool v4_port = tw_address_family(&p->addr) == AF_INET;
    unsigned index;
    struct in_addr local;
    if (parse_interface(p, interface, v4_port || p->dual_stack, &index, &local) < 0)
        return TW_EINVAL;
    struct ip_mreqn m = { .imr_address = local, .imr_ifindex = (int)index };
    if (v4_port)
        return setsockopt(p->io.fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) < 0 ? -errno : 0;
    int rc = 0;
    /* An IPv4 address names an interface for IPv4 only. */
    if (local.s_addr == htonl(INADDR_ANY) || index != 0)
        rc = set_int(p->io.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)index);
    if (rc == 0 && p->dual_stack &&
        setsockopt(p->io.fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) < 0 &&
        local.s_addr != htonl(INADDR_ANY))
        rc = -errno;
    return rc;
}
