/* twirl/udp.h — datagram sockets: UDP over IPv4 and IPv6, connected UDP and
 * multicast (Twisted's DatagramProtocol, listenUDP, listenMulticast).
 *
 * A datagram protocol is your code for one UDP port: an operations table and
 * a struct that embeds tw_datagram_protocol as its first member. Listening
 * allocates ops->size zeroed bytes for it, sets ops, transport and
 * user_data, calls start_protocol, then datagram_received for each datagram
 * that arrives, and stop_protocol once after the port stopped listening.
 * After stop_protocol (and destroy) return, the library frees the protocol.
 *
 *     typedef struct echo { tw_datagram_protocol base; size_t seen; } echo;
 *     static void echo_datagram(tw_datagram_protocol *p, const void *data, size_t len,
 *                               const tw_address *from)
 *     {
 *         ((echo *)p)->seen++;
 *         tw_udp_write(p->transport, data, len, from);
 *     }
 *     static const tw_datagram_protocol_ops echo_ops = {
 *         .size = sizeof(echo), .datagram_received = echo_datagram,
 *     };
 *     tw_udp_port *port;
 *     int rc = tw_listen_udp(r, "127.0.0.1", 0, NULL, &echo_ops, NULL, &port);
 *
 * UDP keeps UDP's semantics: a datagram arrives whole or not at all, in any
 * order, possibly twice. Nothing is queued on the way out: a datagram the
 * kernel cannot take now is dropped and the write says so.
 *
 * Everything here must be called on the reactor's thread. Every function
 * taking a port is safe inside any callback of any protocol, the port's own
 * included. */
#ifndef TWIRL_UDP_H
#define TWIRL_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "twirl/address.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_udp_port tw_udp_port;
typedef struct tw_datagram_protocol tw_datagram_protocol;

/* Largest UDP payloads: 65535 less the IP and UDP headers. Larger writes
 * fail with -EMSGSIZE before reaching the kernel. */
enum {
    TW_UDP_MAX_PAYLOAD_V4 = 65507,
    TW_UDP_MAX_PAYLOAD_V6 = 65527,
    /* Datagrams read per readiness before other descriptors get a turn. */
    TW_UDP_READS_PER_WAKEUP = 32
};

typedef struct tw_datagram_protocol_ops {
    /* Bytes to allocate: sizeof your struct, which starts with a
     * tw_datagram_protocol. 0 means sizeof(tw_datagram_protocol). */
    size_t size;
    /* The port is bound and p->transport usable (Twisted's startProtocol).
     * Called inside tw_listen_udp, before it returns. Optional. */
    void (*start_protocol)(tw_datagram_protocol *p);
    /* One datagram, whole. data is borrowed for the call only (it lives in
     * the reactor's shared read buffer); from is borrowed too. Optional (a
     * port without it reads and drops). */
    void (*datagram_received)(tw_datagram_protocol *p, const void *data, size_t len,
                              const tw_address *from);
    /* Connected ports only (tw_udp_connect): the peer answered a datagram
     * with ICMP port unreachable — nothing listens there. Delivered from
     * the loop when a read (or a write, which then returns -ECONNREFUSED)
     * meets the error. The port stays open. Optional. */
    void (*connection_refused)(tw_datagram_protocol *p);
    /* The port stopped listening; p->transport is already NULL. The last
     * call but destroy. Runs from the loop, never inside
     * tw_udp_stop_listening. Optional. */
    void (*stop_protocol)(tw_datagram_protocol *p);
    /* Frees what the protocol itself allocated; runs right after
     * stop_protocol. Optional. (When listening fails, no hook is called:
     * the protocol never existed for you.) */
    void (*destroy)(tw_datagram_protocol *p);
} tw_datagram_protocol_ops;

struct tw_datagram_protocol {
    const tw_datagram_protocol_ops *ops;
    tw_udp_port *transport; /* set before start_protocol; NULL from stop_protocol on */
    void *user_data;        /* what tw_listen_udp was given; never touched */
};

typedef struct tw_udp_options {
    /* Largest datagram to receive whole, in bytes (0: 65536, also the
     * maximum). A longer one is dropped, counted (tw_udp_stats.truncated)
     * and logged, never delivered cut. Below 32 KiB the port reads several
     * datagrams per system call (recvmmsg), which is much cheaper for
     * small-datagram traffic (DNS, games, metrics). */
    size_t max_datagram_bytes;
    bool reuse_addr; /* SO_REUSEADDR: several ports on one multicast port */
    bool reuse_port; /* SO_REUSEPORT: share the port between reactors */
    bool v6_only;    /* IPV6_V6ONLY; off: "::" also receives IPv4 */
    bool broadcast;  /* SO_BROADCAST: may write to broadcast addresses */
    int rcvbuf;      /* SO_RCVBUF bytes; 0: the system's */
    int sndbuf;      /* SO_SNDBUF bytes; 0: the system's */
} tw_udp_options;

/* Counters, since the port was made. */
typedef struct tw_udp_stats {
    uint64_t received;     /* datagrams delivered to datagram_received */
    uint64_t truncated;    /* datagrams longer than max_datagram_bytes, dropped */
    uint64_t sent;         /* datagrams the kernel took */
    uint64_t send_dropped; /* writes refused with -EAGAIN/-ENOBUFS (dropped) */
    uint64_t refused;      /* ICMP port unreachable reports */
} tw_udp_stats;

/* Listens on addr (AF_INET or AF_INET6; port 0 picks one — read it back with
 * tw_udp_port_address). opts may be NULL. Allocates the protocol
 * (ops->size bytes), sets user_data, and calls start_protocol before
 * returning. Returns 0 and stores the port (the caller's until
 * tw_udp_stop_listening, which it must call before freeing the reactor), or
 * -errno (e.g. -EADDRINUSE, logged with the address), TW_EINVAL (bad
 * address or options), TW_ENOMEM; nothing is called then. If start_protocol
 * itself stops the port, returns TW_ECLOSED and stores NULL: stop_protocol
 * follows from the loop as usual. */
int tw_listen_udp_address(tw_reactor *r, const tw_address *addr, const tw_udp_options *opts,
                          const tw_datagram_protocol_ops *ops, void *user_data, tw_udp_port **out);

/* Convenience (Twisted's listenUDP(port, protocol, interface)): a numeric
 * interface; "" or NULL means every IPv4 address ("0.0.0.0"), as in Twisted
 * — pass "::" for IPv6 (and IPv4 too unless v6_only). */
int tw_listen_udp(tw_reactor *r, const char *interface, uint16_t port, const tw_udp_options *opts,
                  const tw_datagram_protocol_ops *ops, void *user_data, tw_udp_port **out);

/* Stops listening: closes the socket now (the address is free again on
 * return), and calls stop_protocol then destroy from the loop, after which
 * the port and protocol are freed. No datagram_received or
 * connection_refused arrives after this returns. Safe inside any callback,
 * the port's own datagram_received included. The port must not be used
 * after this call. NULL or a second call is a no-op. */
void tw_udp_stop_listening(tw_udp_port *p);

/* Sends one datagram of len bytes (copied by the kernel; data is borrowed).
 * to is the destination, or NULL on a connected port (to may also equal the
 * connected address). An IPv4 destination on an IPv6 port that also takes
 * IPv4 is sent to its v4-mapped form.
 * Returns 0 once the kernel took it, or:
 *   -EMSGSIZE  len exceeds TW_UDP_MAX_PAYLOAD_V4/_V6 (or the kernel's limit);
 *   -EAGAIN, -ENOBUFS  the send buffer is full: the datagram was dropped
 *              (nothing is queued — UDP semantics, as in Twisted);
 *   -ECONNREFUSED  connected port: an earlier datagram was refused; this
 *              one was not sent, and connection_refused follows from the loop;
 *   -EDESTADDRREQ  to is NULL on an unconnected port;
 *   TW_EINVAL  to's family does not fit the port, or differs from the
 *              connected address;
 *   TW_ECLOSED after tw_udp_stop_listening; other -errno from sendmsg. */
int tw_udp_write(tw_udp_port *p, const void *data, size_t len, const tw_address *to);
/* The same for one datagram gathered from iovcnt pieces (at most IOV_MAX). */
int tw_udp_writev(tw_udp_port *p, const struct iovec *iov, int iovcnt, const tw_address *to);

/* Connected UDP (Twisted's port.connect): only datagrams from addr are
 * received, tw_udp_write may omit the destination, and ICMP port unreachable
 * answers reach connection_refused. May be called again to change the
 * peer. Returns 0, TW_EINVAL (family mismatch, port 0), TW_ECLOSED, or
 * -errno from connect(2). */
int tw_udp_connect(tw_udp_port *p, const tw_address *addr);
/* The connected address, or NULL when not connected. Borrowed from the port. */
const tw_address *tw_udp_connected_address(const tw_udp_port *p);

/* The bound address, with the real port. Borrowed from the port. */
const tw_address *tw_udp_port_address(const tw_udp_port *p);
tw_datagram_protocol *tw_udp_port_protocol(const tw_udp_port *p);
tw_reactor *tw_udp_port_reactor(const tw_udp_port *p);
/* The socket, for options this module does not wrap; -1 once stopped. */
int tw_udp_port_fd(const tw_udp_port *p);
void tw_udp_port_stats(const tw_udp_port *p, tw_udp_stats *out);

/* Stop / start reading (datagrams then wait in — and overflow — the kernel's
 * receive buffer). */
void tw_udp_pause(tw_udp_port *p);
void tw_udp_resume(tw_udp_port *p);

/* Broadcast (SO_BROADCAST; Twisted's setBroadcastAllowed). Returns 0 or
 * -errno. */
int tw_udp_set_broadcast_allowed(tw_udp_port *p, bool on);

/* ------------------------------------------------------------ multicast */

/* Interfaces are named as the system names them: NULL or "" lets the kernel
 * choose; "lo" or "eth0" (a name), "3" (an index), or, for IPv4 only, a
 * local address such as "127.0.0.1". Groups are numeric ("239.1.2.3",
 * "ff02::1:3") of the port's family; an IPv4 group on an IPv6 port that
 * also takes IPv4 uses the IPv4 options. Each returns 0, TW_EINVAL (not a
 * multicast address, wrong family, unknown interface — logged naming which),
 * TW_ECLOSED, or -errno from the kernel (e.g. -ENODEV or -ENETUNREACH when
 * no route leads to the group on that interface). */

/* Joins / leaves a group (Twisted's joinGroup / leaveGroup). */
int tw_udp_join_group(tw_udp_port *p, const char *group, const char *interface);
int tw_udp_leave_group(tw_udp_port *p, const char *group, const char *interface);
/* The TTL (IPv4) or hop limit (IPv6) of multicast datagrams sent, 0..255
 * (Twisted's setTTL; the system's default is 1). 0 keeps them on this host. */
int tw_udp_set_ttl(tw_udp_port *p, int ttl);
int tw_udp_get_ttl(tw_udp_port *p, int *ttl);
/* Whether our own multicast datagrams come back to this host's members
 * (Twisted's setLoopbackMode; the system's default is on). */
int tw_udp_set_loopback_mode(tw_udp_port *p, bool on);
int tw_udp_get_loopback_mode(tw_udp_port *p, bool *on);
/* The interface multicast datagrams leave by (Twisted's
 * setOutgoingInterface). */
int tw_udp_set_outgoing_interface(tw_udp_port *p, const char *interface);

#ifdef __cplusplus
}
#endif
#endif
