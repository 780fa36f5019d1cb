/* twirl/policies.h — connection policies (twisted.protocols.policies):
 * protocol wrappers, TimeoutMixin, TimeoutFactory, connection limits and
 * bandwidth throttling.
 *
 * A policy is a wrapping factory: it stands where a factory stands (give it
 * to tw_listen, an endpoint or tw_connect) and builds, for each connection,
 * a wrapper protocol that sits on the real transport, plus the protocol of
 * the factory it wraps, which sees the wrapper as its transport. The wrapped
 * protocol needs no change: every transport operation is forwarded, its
 * p->factory is the factory it came from, and the client hooks and
 * start/stop_factory reach that factory too. Policies compose, each wrapping
 * the next:
 *
 *     tw_factory echo = TW_FACTORY_INIT(&echo_ops, NULL);
 *     tw_factory *idle = tw_timeout_factory_new(&echo, 60);
 *     tw_factory *limited = tw_limit_total_factory_new(idle, 1000, NULL);
 *     tw_throttling_options t = { .read_limit = 1 << 20, .write_limit = 1 << 20 };
 *     tw_factory *throttled = tw_throttling_factory_new(r, limited, &t);
 *     tw_listen_tcp(r, "127.0.0.1", 8000, NULL, throttled, &port);
 *     ...
 *     tw_port_stop_listening(port);
 *     tw_wrapping_factory_free(throttled);   // outermost first, or any order
 *     tw_wrapping_factory_free(limited);
 *     tw_wrapping_factory_free(idle);
 *
 * Ownership: a wrapping factory borrows the factory it wraps (keep that one
 * alive while the wrapping factory lives) and is owned by its creator, who
 * frees it with tw_wrapping_factory_free. Freeing is safe while connections
 * it built are still open, or while a port or connector still uses it: the
 * memory goes when the last of them lets go. Wrapper protocols and the
 * protocols they wrap are the library's, like any protocol.
 *
 * Threads: a wrapping factory and its connections belong to one reactor's
 * thread (the throttling factory to the reactor it was given). */
#ifndef TWIRL_POLICIES_H
#define TWIRL_POLICIES_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================ wrappers */

typedef struct tw_protocol_wrapper tw_protocol_wrapper;

/* Twisted's ProtocolWrapper: one per connection. */
struct tw_protocol_wrapper {
    /* What the transport below calls; first. base.factory is the wrapping
     * factory, base.transport the real transport. */
    tw_protocol base;
    /* The transport the wrapped protocol sees (its p->transport). Its state
     * follows the real transport's. */
    tw_transport transport;
    /* The wrapped protocol; NULL once its connection_lost returned (the
     * wrapper drops, and frees, it then). */
    tw_protocol *wrapped;
    /* The address build_protocol got. */
    tw_address peer;
    /* The library's; do not touch. */
    tw_producer membrane;
    tw_producer *producer;
    tw_protocol_wrapper *prev, *next;
    unsigned flags;
};

/* Hooks of a custom wrapper (what a Twisted ProtocolWrapper subclass
 * overrides). All optional; NULL everywhere gives Twisted's plain
 * WrappingFactory. Each hook gets the wrapper, which is
 * (tw_protocol_wrapper *) your struct when size is set. */
typedef struct tw_wrapper_ops {
    /* Bytes per connection: sizeof your struct, which starts with a
     * tw_protocol_wrapper. 0: sizeof(tw_protocol_wrapper). Allocated zeroed. */
    size_t size;
    /* Builds the protocol to wrap; NULL refuses the connection. Default:
     * tw_factory_build(wrapped factory, addr). */
    tw_protocol *(*build_wrapped)(tw_factory *wf, const tw_address *addr);
    /* The connection is up: w->base.transport is the real transport and
     * w->transport is wired; runs just before the wrapped protocol's
     * connection_made (which follows even if this hook closed). */
    void (*connection_made)(tw_protocol_wrapper *w);
    /* Bytes arrived; runs before they are passed on. */
    void (*data_received)(tw_protocol_wrapper *w, const void *data, size_t len);
    /* The wrapped protocol is writing len bytes (write, write_ref, or the
     * total of a writev); runs before they are passed on. */
    void (*wrote)(tw_protocol_wrapper *w, size_t len);
    /* The connection ended; runs before the wrapped protocol's
     * connection_lost. reason is borrowed. */
    void (*connection_lost)(tw_protocol_wrapper *w, const tw_failure *reason);
    /* Frees what the hooks allocated; the last call, also for a wrapper
     * built and then refused before connection_made. */
    void (*destroy)(tw_protocol_wrapper *w);
    /* Called once when the wrapping factory's memory is finally released
     * (see tw_wrapping_factory_free), with its user_data. */
    void (*release)(void *user_data);
} tw_wrapper_ops;

/* Twisted's WrappingFactory: a factory whose protocols are wrappers around
 * the protocols of `wrapped` (borrowed). ops may be NULL (plain forwarding)
 * and is borrowed, like user_data, which is stored in the result's
 * user_data. start_factory / stop_factory start and stop `wrapped`;
 * started_connecting, client_connection_failed and client_connection_lost
 * are passed to it with the same connector. Returns the factory (owned by
 * the caller: tw_wrapping_factory_free), or NULL when out of memory or
 * wrapped is NULL. */
tw_factory *tw_wrapping_factory_new(tw_factory *wrapped, const tw_wrapper_ops *ops,
                                    void *user_data);

/* Lets go of any wrapping factory made here (every policy below included).
 * The memory goes at once if no port, connector or connection uses it,
 * otherwise when the last of them is done; the factory must not be given
 * to new ports or connectors afterwards. NULL is a no-op. Safe inside any
 * callback. */
void tw_wrapping_factory_free(tw_factory *f);

/* True if f was made by a function of this header. */
bool tw_is_wrapping_factory(const tw_factory *f);

/* The factory f wraps (borrowed). */
tw_factory *tw_wrapping_factory_wrapped(const tw_factory *f);

/* Connections of f now open (made and not yet lost): Twisted's
 * len(factory.protocols). */
size_t tw_wrapping_factory_count(const tw_factory *f);

/* Calls fn(w, arg) for every open connection of f. fn may close
 * connections (closing is deferred) but must not free f. */
void tw_wrapping_factory_each(tw_factory *f, void (*fn)(tw_protocol_wrapper *w, void *arg),
                              void *arg);

/* The wrapper behind t when t is a wrapper's transport (what a wrapped
 * protocol has as p->transport), else NULL. */
tw_protocol_wrapper *tw_protocol_wrapper_of(const tw_transport *t);

/* Closes the connection after what was written is sent (Twisted's
 * ProtocolWrapper.loseConnection); the wrapped protocol sees its transport
 * closing at once. Safe inside any callback. */
void tw_protocol_wrapper_lose_connection(tw_protocol_wrapper *w);

/* Holds back the connection's reading (reads) or the producer registered
 * on it (writes), on top of what the wrapped protocol and the transport
 * ask: a read side the protocol paused stays paused after the hold ends,
 * and a producer the transport paused is not resumed early. A pull
 * producer held back gets its next resume_producing when the hold ends.
 * Idempotent. Safe inside any callback; no-op on a closing connection. */
void tw_protocol_wrapper_hold_reads(tw_protocol_wrapper *w, bool hold);
void tw_protocol_wrapper_hold_writes(tw_protocol_wrapper *w, bool hold);

/* ========================================================= TimeoutMixin */

/* Twisted's TimeoutMixin, for any protocol: embed one in your protocol
 * struct, init it in connection_made, call tw_timeout_mixin_reset_timeout
 * on activity (usually in data_received), and cancel it in connection_lost
 * (required: the timer must not outlive the protocol).
 *
 *     typedef struct idle { tw_protocol base; tw_timeout_mixin to; } idle;
 *     static void idle_made(tw_protocol *p)
 *     {
 *         tw_timeout_mixin_init(&((idle *)p)->to, p, NULL, NULL);
 *         tw_timeout_mixin_set_timeout(&((idle *)p)->to, 30);
 *     }
 *     static void idle_data(tw_protocol *p, const void *d, size_t n)
 *     {
 *         tw_timeout_mixin_reset_timeout(&((idle *)p)->to);
 *         ...
 *     }
 *     static void idle_lost(tw_protocol *p, const tw_failure *why)
 *     {
 *         tw_timeout_mixin_cancel(&((idle *)p)->to);
 *     }
 *
 * The clock is the reactor's: a reactor on TW_CLOCK_FAKE (tw_clock_advance)
 * makes a test deterministic, as Twisted's overridable callLater does. */
typedef struct tw_timeout_mixin {
    tw_protocol *protocol;
    tw_reactor *reactor;
    /* Runs when the time is up (Twisted's timeoutConnection). NULL: lose
     * the protocol's connection. */
    void (*timeout_connection)(tw_protocol *p);
    double timeout; /* seconds; 0 when none */
    tw_timer call;
} tw_timeout_mixin;

/* Prepares m for protocol p, with no timeout armed. r is the clock; NULL
 * takes p->transport->reactor when a timeout is first set. timeout_fn may
 * be NULL (lose the connection). Safe inside any callback. */
void tw_timeout_mixin_init(tw_timeout_mixin *m, tw_protocol *p, tw_reactor *r,
                           void (*timeout_fn)(tw_protocol *p));

/* Sets the timeout to seconds from now (Twisted's setTimeout): re-arms a
 * timer already running, or arms one; seconds <= 0 (Twisted's None)
 * cancels, tolerating a timer already cancelled or fired elsewhere.
 * Returns the previous timeout (0 when there was none). Without a reactor
 * (none given and no transport) the value is kept but nothing is armed. */
double tw_timeout_mixin_set_timeout(tw_timeout_mixin *m, double seconds);

/* Pushes the armed timer back to a full timeout from now (Twisted's
 * resetTimeout). No-op when no timer is armed. */
void tw_timeout_mixin_reset_timeout(tw_timeout_mixin *m);

/* Cancels the timer and forgets the timeout (set_timeout(m, 0)). */
void tw_timeout_mixin_cancel(tw_timeout_mixin *m);

/* ========================================================= TimeoutFactory */

/* Twisted's TimeoutFactory: each connection is closed (lose_connection)
 * after `timeout` seconds without activity; bytes received and bytes the
 * wrapped protocol writes both restart the countdown. The countdown starts
 * at connection_made. timeout <= 0: never. Returns NULL when out of memory
 * or wrapped is NULL. */
tw_factory *tw_timeout_factory_new(tw_factory *wrapped, double timeout);

/* For a protocol under a TimeoutFactory, changes its own idle timeout:
 * t is the protocol's transport (a wrapper's, at any depth of wrapping).
 * Stores the previous value in *previous (may be NULL). Returns 0, or
 * TW_ENOTFOUND when no TimeoutFactory wrapper is below t. */
int tw_timeout_protocol_set_timeout(tw_transport *t, double seconds, double *previous);

/* ==================================================== connection limits */

/* Twisted's LimitTotalConnectionsFactory around `wrapped`: at most limit
 * connections at once (counted from build_protocol to connection_lost).
 * Over the limit, a connection gets a protocol of `overflow` (NULL: it is
 * refused — closed at once), which is counted too; its p->factory is the
 * wrapped factory. Returns NULL when out of memory or wrapped is NULL. */
tw_factory *tw_limit_total_factory_new(tw_factory *wrapped, size_t limit,
                                       const tw_protocol_ops *overflow);

/* Twisted's LimitConnectionsByPeer: at most max_per_peer connections at
 * once from one IP address (IPv4 or IPv6; an IPv4-mapped IPv6 address
 * counts as its IPv4 address, the port is ignored; every Unix socket peer
 * counts as one address). Over the limit a connection is refused.
 * max_per_peer 0: Twisted's default, 5. The table of addresses holds only
 * peers with open connections. Returns NULL when out of memory or wrapped
 * is NULL. */
tw_factory *tw_limit_per_peer_factory_new(tw_factory *wrapped, size_t max_per_peer);

/* Connections counted now by a limit factory (Twisted's connectionCount;
 * overflow protocols included). 0 for other factories. */
size_t tw_limit_factory_count(const tw_factory *f);

/* Connections open now from peer's address under a per-peer factory. */
size_t tw_limit_per_peer_count(const tw_factory *f, const tw_address *peer);

/* ===================================================== ThrottlingFactory */

typedef struct tw_throttling_options {
    size_t max_connections; /* at once; more are refused. 0: no limit */
    size_t read_limit;      /* bytes per second received; 0: no limit */
    size_t write_limit;     /* bytes per second written; 0: no limit */
} tw_throttling_options;

/* Twisted's ThrottlingFactory. Once a second (on r's clock) it compares the
 * bytes all its connections received and wrote during that second with the
 * limits; if a limit was passed, every connection is held back for
 * (bytes / limit - 1) seconds, then let go: reading stops (the transport is
 * paused), and for writes the producer registered on the connection is
 * paused (a protocol that writes without a producer is not held back, as
 * in Twisted). Connections made while held back are held too. writev is
 * counted by its total. The timers run only while the factory has
 * connections. o may be NULL (no limits); it is copied. Returns NULL when
 * out of memory or wrapped or r is NULL. */
tw_factory *tw_throttling_factory_new(tw_reactor *r, tw_factory *wrapped,
                                      const tw_throttling_options *o);

typedef struct tw_throttling_stats {
    size_t connections;         /* counted now */
    size_t read_this_second;    /* bytes */
    size_t written_this_second; /* bytes */
    bool reads_held, writes_held;
    size_t read_holds, write_holds; /* times each began, since creation */
    size_t refused;                 /* connections refused by max_connections */
} tw_throttling_stats;

/* A snapshot; zeroes for other factories. */
void tw_throttling_factory_stats(const tw_factory *f, tw_throttling_stats *out);

#ifdef __cplusplus
}
#endif
#endif
