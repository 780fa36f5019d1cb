/* twirl/protocol.h — protocols and factories (twisted.internet.protocol).
 *
 * A protocol is your code for one connection: an operations table of hooks
 * and a struct that embeds tw_protocol as its first member. The library
 * allocates ops->size zeroed bytes for each connection (or takes what a
 * custom build_protocol returns), sets ops, transport and factory, calls
 * connection_made, then data_received as bytes arrive, and finally
 * connection_lost exactly once. After connection_lost (and destroy) returns,
 * the library frees the protocol: keep no pointer to it past that point.
 *
 *     typedef struct echo { tw_protocol base; size_t seen; } echo;
 *     static void echo_data(tw_protocol *p, const void *data, size_t len)
 *     {
 *         ((echo *)p)->seen += len;
 *         tw_transport_write(p->transport, data, len);
 *     }
 *     static const tw_protocol_ops echo_ops = {
 *         .size = sizeof(echo), .data_received = echo_data,
 *     };
 *     tw_factory f = TW_FACTORY_INIT(&echo_ops, NULL);
 *
 * A factory builds protocols for a listening port or a client connection
 * and holds what they share. Embed tw_factory first in your own struct to
 * give it state, like a Twisted Factory subclass. Factories are borrowed by
 * ports and connectors: keep one alive until every port using it stopped
 * and every connection it built is lost. */
#ifndef TWIRL_PROTOCOL_H
#define TWIRL_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/address.h"
#include "twirl/failure.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_protocol tw_protocol;
typedef struct tw_factory tw_factory;
typedef struct tw_transport tw_transport;
typedef struct tw_connector tw_connector;

typedef struct tw_protocol_ops {
    /* Bytes to allocate for each protocol: sizeof your struct, which starts
     * with a tw_protocol. 0 means sizeof(tw_protocol). */
    size_t size;
    /* The connection is up; p->transport is usable. Optional. */
    void (*connection_made)(tw_protocol *p);
    /* Bytes arrived. data is borrowed for the call only (it lives in a
     * buffer shared by every connection of the reactor); copy what you keep.
     * Any chunking is possible, down to one byte at a time. */
    void (*data_received)(tw_protocol *p, const void *data, size_t len);
    /* The peer closed its writing side (TCP FIN) while ours is open
     * (Twisted's IHalfCloseableProtocol.readConnectionLost). The protocol may
     * go on writing, then close. When NULL, the transport calls
     * tw_transport_lose_connection: what was written is still delivered. */
    void (*eof_received)(tw_protocol *p);
    /* The last call. reason is borrowed: domain TW_DOMAIN with code
     * TW_ECONNECTION_DONE for a clean close, TW_ECONNECTION_LOST (the cause
     * says why, e.g. -ECONNRESET) otherwise. tw_failure_ref it to keep it.
     * Optional. */
    void (*connection_lost)(tw_protocol *p, const tw_failure *reason);
    /* Frees what the protocol itself allocated; runs after connection_lost,
     * also for a protocol built and then refused before connection_made.
     * Optional. */
    void (*destroy)(tw_protocol *p);
} tw_protocol_ops;

struct tw_protocol {
    const tw_protocol_ops *ops;
    tw_transport *transport; /* set before connection_made; NULL after connection_lost */
    tw_factory *factory;     /* the factory that built it */
};

/* Allocates a zeroed protocol of ops->size bytes with ops set: what a custom
 * build_protocol returns. NULL when out of memory. The library frees it with
 * tw_protocol_free after connection_lost. */
tw_protocol *tw_protocol_alloc(const tw_protocol_ops *ops);
/* Calls ops->destroy and frees. For protocols never handed to a transport. */
void tw_protocol_free(tw_protocol *p);

/* ------------------------------------------------------------ factories */

typedef struct tw_factory_ops {
    /* Returns a new protocol for a connection from/to addr, or NULL to
     * refuse it (the connection is closed at once). Optional: the default
     * allocates f->protocol. addr is borrowed. */
    tw_protocol *(*build_protocol)(tw_factory *f, const tw_address *addr);
    /* Run once when the first port (or connector) starts using the factory,
     * and once after the last one stops — however many share it (Twisted's
     * numPorts rule). Optional. */
    void (*start_factory)(tw_factory *f);
    void (*stop_factory)(tw_factory *f);

    /* Client side (Twisted's ClientFactory). Optional. reason is borrowed. */
    void (*started_connecting)(tw_factory *f, tw_connector *c);
    void (*client_connection_failed)(tw_factory *f, tw_connector *c, const tw_failure *reason);
    void (*client_connection_lost)(tw_factory *f, tw_connector *c, const tw_failure *reason);
} tw_factory_ops;

struct tw_factory {
    const tw_factory_ops *ops;       /* may be NULL: all defaults */
    const tw_protocol_ops *protocol; /* what the default build_protocol builds */
    void *user_data;                 /* for your hooks; never touched */
    int num_ports;                   /* the library's count for start/stop_factory */
};

/* A factory value for a protocol (Twisted's Factory.forProtocol). */
#define TW_FACTORY_INIT(protocol_ops, user_data_ptr) \
    {                                                \
        NULL, (protocol_ops), (user_data_ptr), 0     \
    }

/* The same, allocated: free with tw_factory_free once unused. NULL when out
 * of memory. */
tw_factory *tw_factory_for_protocol(const tw_protocol_ops *ops, void *user_data);
void tw_factory_free(tw_factory *f);

/* What ports and connectors call; exposed for wrappers (policies, TLS) that
 * build protocols through an inner factory. tw_factory_build sets
 * p->factory = f only when build_protocol left it NULL, so a wrapper may hand
 * out protocols that name the inner factory. Connectors call
 * tw_factory_do_stop after the client_connection_failed/lost hook returns:
 * a wrapping factory that must free itself does so in stop_factory, the
 * last call it gets. */
tw_protocol *tw_factory_build(tw_factory *f, const tw_address *addr);
void tw_factory_do_start(tw_factory *f);
void tw_factory_do_stop(tw_factory *f);

/* ------------------------------------------------------------ connectors */

/* A client connection attempt and, once connected, its connection (Twisted's
 * IConnector). Owned by the library; valid from started_connecting until the
 * client_connection_failed or client_connection_lost hook returns, and for
 * longer while a reconnecting factory keeps it. */

/* Aborts an attempt in progress: client_connection_failed follows with a
 * cancelled failure. No-op once connected. */
void tw_connector_stop_connecting(tw_connector *c);
/* Connects again to the same destination with the same factory (after a
 * failure or a loss). Returns 0, or TW_EBUSY while connecting or connected. */
int tw_connector_connect(tw_connector *c);
/* Stops the connection, if any (tw_transport_lose_connection). */
void tw_connector_disconnect(tw_connector *c);
/* The destination. Borrowed. */
const tw_address *tw_connector_destination(const tw_connector *c);
tw_reactor *tw_connector_reactor(const tw_connector *c);
/* Tells the library the factory still needs the connector after the
 * failed/lost hook returns (a reconnecting factory does); balanced by
 * tw_connector_release. */
void tw_connector_retain(tw_connector *c);
void tw_connector_release(tw_connector *c);

/* ----------------------------------------------- reconnecting client factory */

/* Twisted's ReconnectingClientFactory: after a failed attempt or a lost
 * connection it waits delay seconds and connects again; delay starts at
 * initial_delay and grows by factor each time up to max_delay, with
 * random jitter (delay += normal(0, delay * jitter)). A successful
 * connection resets the delay (tw_reconnecting_reset_delay). Embed it first in
 * your factory struct and set base.protocol (and base.ops if you need hooks;
 * the reconnecting logic wraps them). */
typedef struct tw_reconnecting_factory {
    tw_factory base;
    const tw_factory_ops *user_ops; /* your hooks, called first; optional */
    double initial_delay;           /* 1.0 */
    double max_delay;               /* 3600 */
    double factor;                  /* e = 2.7182818284590451 */
    double jitter;                  /* 0.11962656472 */
    int max_retries;                /* -1: unlimited */
    /* state */
    double delay;
    int retries;
    bool continue_trying;
    tw_connector *connector;
    tw_timer call_id;
    double (*random)(void *rng_arg); /* uniform [0,1); default drand48-like; for tests */
    void *rng_arg;
} tw_reconnecting_factory;

/* Initialises f with Twisted's defaults for the given protocol. */
void tw_reconnecting_factory_init(tw_reconnecting_factory *f, const tw_protocol_ops *protocol,
                                  const tw_factory_ops *user_ops, void *user_data);
/* Back to initial_delay and zero retries (Twisted's resetDelay). Call it from
 * connection_made (or a later sign that the connection is good). */
void tw_reconnecting_reset_delay(tw_reconnecting_factory *f);
/* Stops reconnecting: cancels a pending retry and a connection attempt in
 * flight; an established connection stays up but is not retried after it
 * is lost (Twisted's stopTrying). */
void tw_reconnecting_stop_trying(tw_reconnecting_factory *f);
/* Schedules the next attempt now (what the hooks do on failure and loss). */
void tw_reconnecting_retry(tw_reconnecting_factory *f, tw_connector *c);

#ifdef __cplusplus
}
#endif
#endif
