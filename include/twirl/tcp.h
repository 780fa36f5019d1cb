/* twirl/tcp.h — stream sockets: TCP (IPv4, IPv6) and Unix (listenTCP,
 * connectTCP, listenUNIX, connectUNIX).
 *
 * Listening returns a port that accepts connections and builds a protocol
 * for each through the factory. Connecting returns a connector (see
 * twirl/protocol.h) that reports through the factory's client hooks. Both
 * borrow the factory. Endpoint strings (twirl/endpoint.h) are the usual way
 * to reach these. */
#ifndef TWIRL_TCP_H
#define TWIRL_TCP_H

#include <stdbool.h>

#include "twirl/address.h"
#include "twirl/protocol.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_port tw_port;

typedef struct tw_listen_options {
    int backlog;     /* 0: 511 */
    bool reuse_port; /* SO_REUSEPORT, to share the port between reactors */
    bool v6_only;    /* IPV6_V6ONLY; off: "::" also accepts IPv4 */
    /* Unix: permissions of the socket file (0: leave the umask's) */
    unsigned mode;
    /* Unix: take a lock file "PATH.lock" so a second server cannot remove a
     * live server's socket; a stale socket (no lock holder) is replaced. */
    bool lockfile;
    /* Per-connection write limit for accepted connections (0: default). */
    size_t write_limit;
} tw_listen_options;

/* Listens on addr (AF_INET/AF_INET6 for TCP, AF_UNIX for Unix; port 0 picks
 * one — read it back with tw_port_address). opts may be NULL. Starts the
 * factory if it is the first port using it. Returns 0 and stores the port
 * (owned by the caller until tw_port_stop_listening), or -errno (e.g.
 * -EADDRINUSE, logged with the address), TW_EINVAL, TW_ENOMEM. */
int tw_listen(tw_reactor *r, const tw_address *addr, const tw_listen_options *opts, tw_factory *f,
              tw_port **out);
/* Convenience: numeric interface ("" or NULL: all IPv4 and IPv6 on "::"). */
int tw_listen_tcp(tw_reactor *r, const char *interface, uint16_t port,
                  const tw_listen_options *opts, tw_factory *f, tw_port **out);
int tw_listen_unix(tw_reactor *r, const char *path, const tw_listen_options *opts, tw_factory *f,
                   tw_port **out);

/* The bound address, with the real port. Borrowed from the port. */
const tw_address *tw_port_address(const tw_port *p);
tw_factory *tw_port_factory(const tw_port *p);
/* Stops accepting (connections already made carry on), closes and frees the
 * port, removes a Unix socket file it created, and stops the factory if this
 * was its last port. Safe inside any callback. NULL is a no-op. */
void tw_port_stop_listening(tw_port *p);
/* Pauses/resumes accepting (the kernel's backlog still queues). */
void tw_port_pause(tw_port *p);
void tw_port_resume(tw_port *p);

typedef struct tw_connect_options {
    double timeout;         /* seconds; 0: 30 */
    const tw_address *bind; /* local address to bind first; NULL: any */
    size_t write_limit;     /* 0: default */
} tw_connect_options;

/* Connects to addr. Calls started_connecting at once, then either
 * build_protocol + connection_made, or client_connection_failed with a
 * failure naming the reason (refused, timed out, unreachable...). opts may
 * be NULL. Stores the connector (owned by the library, see protocol.h) when
 * out is not NULL. Returns 0 or TW_ENOMEM/TW_EINVAL (nothing called then). */
int tw_connect(tw_reactor *r, const tw_address *addr, const tw_connect_options *opts, tw_factory *f,
               tw_connector **out);
/* Convenience: numeric host or "localhost". */
int tw_connect_tcp(tw_reactor *r, const char *host, uint16_t port, const tw_connect_options *opts,
                   tw_factory *f, tw_connector **out);
int tw_connect_unix(tw_reactor *r, const char *path, const tw_connect_options *opts, tw_factory *f,
                    tw_connector **out);

/* Number of live stream connections (accepted and connected) on r: useful to
 * check that nothing was left behind. */
size_t tw_reactor_connection_count(tw_reactor *r);

/* Calls tw_transport_lose_connection on every stream connection of r (what
 * Twisted's reactor does at shutdown): each closes once its written bytes
 * are sent, and gets its connection_lost. For a graceful server shutdown:
 * stop listening, disconnect all, then wait for the count to reach 0. Safe
 * inside any callback. */
void tw_reactor_disconnect_all(tw_reactor *r);

#ifdef __cplusplus
}
#endif
#endif
