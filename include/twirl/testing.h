/* twirl/testing.h — test doubles for protocol code (Twisted's
 * proto_helpers.StringTransport, iosim / loopbackAsync, task.Clock).
 *
 * Everything here runs without sockets and without real time, so a protocol
 * test is deterministic and fast:
 *
 *   - tw_string_transport: a transport that records what the protocol
 *     writes and lets the test deliver bytes and end the connection.
 *   - tw_test_conn: a protocol built from a factory (or an ops table) and
 *     connected to a string transport in one call.
 *   - tw_test_feed_splits: feeds one input split at every byte boundary and
 *     in small chunks, down to one byte at a time, to a fresh connection
 *     each time, and lets the test check each result.
 *   - tw_test_pump: two protocols connected back to back through in-memory
 *     transports, moved along by an explicit pump.
 *   - tw_test_clock_new: a reactor on the fake clock (tw_clock_advance).
 *   - tw_test_strict_producer, tw_test_log: small checkers.
 *
 *     static void lines_survive_any_split(void **state)
 *     {
 *         static const char wire[] = "PING\r\nPONG\r\n";
 *         for (size_t cut = 1; cut < sizeof wire - 1; cut++) {
 *             tw_test_conn *c = tw_test_conn_new(&line_counter_factory);
 *             tw_test_conn_feed(c, wire, cut);
 *             tw_test_conn_feed(c, wire + cut, sizeof wire - 1 - cut);
 *             assert_int_equal(line_counter(c)->lines, 2);
 *             tw_test_conn_free(c);            // fires connection_lost once
 *         }
 *     }
 *
 * Closing follows the library's reentrancy rule: a protocol that calls
 * tw_transport_lose_connection (or abort) on one of these transports only
 * changes its state to DISCONNECTING; connection_lost never runs inside the
 * protocol's call. With the string transport the test decides when the
 * connection is lost (tw_test_conn_lose / tw_string_transport_end), as with
 * Twisted's StringTransport; the pump delivers it on a later pump round.
 *
 * Not thread-safe: use each object on one thread. */
#ifndef TWIRL_TESTING_H
#define TWIRL_TESTING_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/address.h"
#include "twirl/log.h"
#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/tcp.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- fake clock */

/* A new reactor on the fake clock (TW_CLOCK_FAKE: time starts at 0 and moves
 * only by tw_clock_advance) with signal handling off — Twisted's task.Clock.
 * The caller owns it: tw_reactor_free. NULL when out of memory or when the
 * backend cannot be created. */
tw_reactor *tw_test_clock_new(void);

/* ------------------------------------------------------- string transport */

/* The transport's read side as a push producer (Twisted's producerState). */
typedef enum tw_test_producer_state {
    TW_TEST_PRODUCING = 0,
    TW_TEST_PAUSED,
    TW_TEST_STOPPED
} tw_test_producer_state;

typedef struct tw_string_transport tw_string_transport; /* opaque */

/* Makes a string transport, kind "string", state OPEN. r is what
 * transport->reactor will be (protocols schedule timers on it); it may be
 * NULL and is borrowed. Host and peer default to IPv4 addresses, as in
 * Twisted: host 10.0.0.1:12345, peer 192.168.1.1:54321. The caller owns the
 * result (tw_string_transport_free). NULL when out of memory.
 *
 * Behaviour of the transport operations:
 *  - write, writev, write_ref append to the record (write_ref copies and
 *    releases at once); after lose_connection, abort_connection or
 *    lose_write_connection they return TW_ECLOSED and record nothing.
 *  - lose_connection sets state DISCONNECTING; abort_connection too, and
 *    marks the transport aborted. Neither calls the protocol.
 *  - pause/resume_producing move producing <-> paused; doing either on a
 *    stopped or disconnecting transport is a misuse (see below) and changes
 *    nothing, unless the transport is lenient. stop_producing sets stopped
 *    and, like a real transport, starts closing (DISCONNECTING).
 *  - register_producer records the producer; a second registration returns
 *    TW_EBUSY; unregister_producer with none registered is a misuse. A
 *    non-streaming producer is not resumed by this transport: call its
 *    resume_producing yourself.
 *  - get_host/get_peer return the simulated addresses; set_option accepts
 *    every option and returns 0; buffered is 0; fd is -1.
 * A misuse is logged at error level (domain "testing") and counted in
 * tw_string_transport_info().misuse; it is never a crash. */
tw_string_transport *tw_string_transport_new(tw_reactor *r);

/* Frees the transport and its record. It neither calls nor touches the
 * protocol (which is the caller's, and may be freed before or after): end
 * the connection first (tw_string_transport_end) if the protocol must see
 * connection_lost — that also clears p->transport. NULL is a no-op. */
void tw_string_transport_free(tw_string_transport *st);

/* The transport to give a protocol; valid as long as st. */
tw_transport *tw_string_transport_base(tw_string_transport *st);

/* Attaches a protocol (borrowed: the caller keeps owning it): sets
 * p->transport and t->protocol and calls connection_made. Returns 0, or
 * TW_EBUSY if a protocol is already attached. */
int tw_string_transport_connect(tw_string_transport *st, tw_protocol *p);

/* Everything written since creation or the last clear (Twisted's value()).
 * The bytes are followed by a NUL that is not counted, so text can be
 * compared with strcmp. Borrowed: valid until the next write or clear.
 * *len may be NULL. */
const char *tw_string_transport_value(const tw_string_transport *st, size_t *len);

/* Forgets what was written so far. */
void tw_string_transport_clear(tw_string_transport *st);

/* Replaces the simulated addresses (copied). */
void tw_string_transport_set_host(tw_string_transport *st, const tw_address *a);
void tw_string_transport_set_peer(tw_string_transport *st, const tw_address *a);

/* Lenient transports accept pause/resume after closing began (Twisted's
 * lenient flag). Off by default. */
void tw_string_transport_set_lenient(tw_string_transport *st, bool lenient);

/* Delivers bytes to the attached protocol's data_received, as if read.
 * Delivery happens whatever the producer state (a paused transport still
 * delivers, as in Twisted's tests: that is how a test checks that a paused
 * protocol buffers), but not once closing began: then TW_ECLOSED, as a real
 * transport reads nothing after lose_connection. len 0 delivers nothing.
 * data is borrowed for the call. Returns 0, TW_ECLOSED, or TW_EINVAL when
 * no protocol is attached. Not to be called from the protocol's own
 * callbacks on this transport (TW_EBUSY). */
int tw_string_transport_deliver(tw_string_transport *st, const void *data, size_t len);

/* Tells the protocol that its peer closed its writing side: calls
 * eof_received, or, when the protocol has none, loses the connection as a
 * real transport does. Returns 0, TW_ECLOSED or TW_EBUSY as deliver. */
int tw_string_transport_deliver_eof(tw_string_transport *st);

/* Ends the connection now: state CLOSED, a registered producer gets
 * stop_producing and is unregistered, then the protocol gets connection_lost
 * — once — and its transport pointer is cleared. code 0 gives the clean
 * reason (TW_DOMAIN, TW_ECONNECTION_DONE); any other code gives
 * TW_ECONNECTION_LOST with a cause of that code (e.g. -ECONNRESET). Works in
 * any state, so the test chooses when a DISCONNECTING transport is lost.
 * Returns 0, TW_ECLOSED if it already ended, or TW_EBUSY from inside the
 * protocol's callbacks on this transport (the library never runs
 * connection_lost inside the caller's stack). */
int tw_string_transport_end(tw_string_transport *st, int code);

/* A snapshot of the recorded state. */
typedef struct tw_string_transport_info {
    int state;                             /* enum tw_transport_state */
    bool aborted;                          /* abort_connection was called */
    bool write_shut;                       /* lose_write_connection was called */
    bool lost;                             /* connection_lost was delivered */
    tw_producer *producer;                 /* registered producer, or NULL */
    bool streaming;                        /* its registration's streaming flag */
    tw_test_producer_state producer_state; /* the transport as a producer */
    size_t write_calls;                    /* write + write_ref calls that recorded */
    size_t writev_calls;                   /* writev calls that recorded */
    int last_iovcnt;                       /* iovcnt of the last recorded writev */
    size_t misuse;                         /* misuses logged (see above) */
    unsigned long serial;                  /* unique per transport in the process */
} tw_string_transport_info;

void tw_string_transport_get_info(const tw_string_transport *st, tw_string_transport_info *out);

/* ---------------------------------------------------- test connections */

typedef struct tw_test_conn tw_test_conn; /* opaque */

typedef struct tw_test_conn_options {
    /* Builds the protocol (build_protocol with the peer address); or, when
     * NULL, the protocol is allocated from `protocol`. Borrowed. */
    tw_factory *factory;
    const tw_protocol_ops *protocol;
    /* transport->reactor; may be NULL. Borrowed. */
    tw_reactor *reactor;
    /* With `protocol`: the user_data of the factory the protocol sees. */
    void *user_data;
} tw_test_conn_options;

/* Builds a protocol from factory f, connects it to a new string transport
 * and calls connection_made. The factory is borrowed (its start/stop hooks
 * are not called). The connection owns the protocol and the transport; free
 * both with tw_test_conn_free. NULL when out of memory or when the factory
 * refused to build a protocol. */
tw_test_conn *tw_test_conn_new(tw_factory *f);
/* The same with options (a protocol ops table instead of a factory, a
 * reactor). NULL when out of memory, when the factory refused, or when
 * neither factory nor protocol is given. */
tw_test_conn *tw_test_conn_new_opts(const tw_test_conn_options *o);

/* Fires connection_lost (clean reason) if the protocol has not had it yet,
 * then the protocol's destroy, and frees everything. NULL is a no-op. Not
 * from inside the protocol's own callbacks. */
void tw_test_conn_free(tw_test_conn *c);

/* The protocol (cast it to your struct) and its transport. Borrowed; the
 * protocol stays readable until tw_test_conn_free, also after
 * connection_lost. */
tw_protocol *tw_test_conn_protocol(tw_test_conn *c);
tw_string_transport *tw_test_conn_transport(tw_test_conn *c);

/* tw_string_transport_deliver on the connection's transport. */
int tw_test_conn_feed(tw_test_conn *c, const void *data, size_t len);
/* Feeds a NUL-terminated string (without the NUL). */
int tw_test_conn_feed_str(tw_test_conn *c, const char *s);

/* What the protocol wrote (NUL-terminated, NUL not counted); borrowed until
 * the next write or clear. len may be NULL. */
const char *tw_test_conn_written(tw_test_conn *c, size_t *len);
void tw_test_conn_clear(tw_test_conn *c);

/* True once the protocol called lose_connection/abort_connection (or
 * stop_producing) on its transport, or the connection ended. */
bool tw_test_conn_disconnecting(tw_test_conn *c);

/* Ends the connection now (tw_string_transport_end): connection_lost with
 * the clean reason for code 0, the lost reason otherwise. Same returns. */
int tw_test_conn_lose(tw_test_conn *c, int code);

/* -------------------------------------------------- feeding every split */

/* How one run fed the input. */
typedef struct tw_test_split {
    size_t cut;    /* two-part runs: length of the first part; 0 otherwise */
    size_t chunk;  /* chunked runs: bytes per data_received (1: byte by byte);
                     0 otherwise. A run with cut == 0 and chunk == 0 fed the
                     input in one call. */
    char desc[48]; /* "whole", "cut at 5", "chunks of 1": for messages */
} tw_test_split;

/* Called after each run with the connection, before it is freed; assert on
 * the protocol's state here. */
typedef void (*tw_test_check_fn)(tw_test_conn *c, const tw_test_split *how, void *arg);

/* Twisted's advice for protocol tests, as one call: for the input data[len]
 * it runs, each on a fresh tw_test_conn made from o:
 *   1. the whole input in one data_received;
 *   2. for every cut 1..len-1, the two parts data[0..cut) and data[cut..len);
 *   3. for chunk sizes 1 to TW_TEST_MAX_CHUNK, the input in chunks of that
 *      size (chunk 1 is byte by byte);
 * and calls check(c, how, arg) after each run, then frees the connection
 * (connection_lost fires if it had not). A feed refused because the
 * protocol closed the connection ends that run's feeding early, as a real
 * transport would stop reading. Returns the number of runs, or TW_ENOMEM /
 * TW_EINVAL when a connection could not be made (nothing more is run).
 * o and data are borrowed. */
enum { TW_TEST_MAX_CHUNK = 9 };
int tw_test_feed_splits(const tw_test_conn_options *o, const void *data, size_t len,
                        tw_test_check_fn check, void *arg);

/* ----------------------------------------------- in-memory loopback */

/* How a pump hands queued writes to the other side (Twisted's pump
 * policies). */
typedef enum tw_test_pump_policy {
    TW_TEST_PUMP_IDENTITY = 0, /* one data_received per write, in order */
    TW_TEST_PUMP_COLLAPSING    /* everything queued joined into one call */
} tw_test_pump_policy;

typedef struct tw_test_pump tw_test_pump; /* opaque */

typedef struct tw_test_pump_options {
    /* Each side's protocol comes from its factory (borrowed), or, when the
     * factory is NULL, from its ops table. */
    tw_factory *server, *client;
    const tw_protocol_ops *server_protocol, *client_protocol;
    void *server_user_data, *client_user_data; /* with the ops tables */
    tw_reactor *reactor;                       /* transport->reactor on both sides; may be NULL */
    tw_test_pump_policy policy;
    /* Addresses (copied); NULL: server 127.0.0.1:4321, client 127.0.0.1 on a
     * port unique to the pump. Each side's peer is the other's host. */
    const tw_address *server_address, *client_address;
} tw_test_pump_options;

/* Builds both protocols, gives each an in-memory transport (kind "memory")
 * and calls connection_made on the server, then on the client. Nothing moves
 * until the test pumps. The pump owns both protocols. NULL when out of
 * memory, when a factory refused, or when a side has neither factory nor
 * ops.
 *
 * The in-memory transports: writes are queued and delivered only by a pump
 * round, so data_received never runs while the same side's write is on the
 * stack; writes after closing return TW_ECLOSED and are dropped, and writes
 * whose peer is gone are dropped silently. lose_connection delivers what was
 * queued first, then the connection ends: that side gets connection_lost
 * (clean), and the peer sees an end of stream (eof_received, or, without
 * it, it loses its connection too). abort_connection drops what was queued;
 * both sides get connection_lost with TW_ECONNECTION_LOST. A side whose
 * transport is paused (pause_producing) receives nothing until resumed; a
 * side that began closing reads nothing more (bytes sent to it are
 * dropped), as a real transport stops reading at lose_connection. A
 * streaming producer is paused while its side has more than
 * TW_WRITE_HIGH_WATER bytes queued and resumed once they are delivered; a
 * pump never resumes a streaming producer it did not pause. A non-streaming
 * producer gets resume_producing when registered and then at every pump
 * round while its side's queue is empty. Each transport has a unique serial
 * number. */
tw_test_pump *tw_test_pump_new(const tw_test_pump_options *o);

/* Fires connection_lost (clean) on each side that has not had it, then
 * destroys and frees both protocols and the pump. NULL is a no-op. */
void tw_test_pump_free(tw_test_pump *pump);

tw_protocol *tw_test_pump_server(tw_test_pump *pump);
tw_protocol *tw_test_pump_client(tw_test_pump *pump);

/* One round (Twisted's IOPump.pump): takes what each side queued, gives
 * pull producers their turn, delivers client → server and server → client;
 * when nothing moved, ends one closing side. Returns 1 if anything happened,
 * 0 if quiet, TW_EBUSY if called from inside a pump round. */
int tw_test_pump_pump(tw_test_pump *pump);

/* Pumps until quiet. Returns the number of rounds that did something,
 * TW_ELIMIT after 1000 busy rounds (a producer that never stops), or
 * TW_EBUSY from inside a pump round. Safe to call from a timer, not from a
 * protocol callback that a pump round is running. */
int tw_test_pump_flush(tw_test_pump *pump);

/* True once both sides had connection_lost. */
bool tw_test_pump_closed(const tw_test_pump *pump);

/* The serial number of a string or memory transport (unique within the
 * process, starting at 1), or 0 for any other transport. */
unsigned long tw_test_transport_serial(const tw_transport *t);

/* ------------------------------------------------- strict push producer */

/* A push producer that produces nothing and checks the calls it gets
 * (Twisted's StrictPushProducer): pause while paused, resume while running,
 * and any call after stop are violations — logged at error level and
 * counted, never a crash. Embed or declare one, init it, register
 * &sp->base. */
typedef struct tw_test_strict_producer {
    tw_producer base;
    tw_test_producer_state state;  /* starts TW_TEST_PRODUCING */
    size_t pauses, resumes, stops; /* calls received */
    size_t violations;
} tw_test_strict_producer;

void tw_test_strict_producer_init(tw_test_strict_producer *sp);

/* ------------------------------------------------------- log capture */

/* Captures the library's log messages (tw_log) at or above a level, so a
 * test can check that a reason was logged. Process-wide: it replaces the log
 * handler and level until released, which restores the stderr handler and
 * the previous level. One capture at a time. */
typedef struct tw_test_log tw_test_log; /* opaque */

/* NULL when out of memory. */
tw_test_log *tw_test_log_capture(tw_log_level min);
/* Messages captured so far. */
size_t tw_test_log_count(const tw_test_log *l);
/* True if a captured message of that domain (NULL: any) contains needle. */
bool tw_test_log_contains(const tw_test_log *l, const char *domain, const char *needle);
/* The n-th captured message ("domain: message"), or NULL. Borrowed. */
const char *tw_test_log_message(const tw_test_log *l, size_t n);
void tw_test_log_clear(tw_test_log *l);
void tw_test_log_release(tw_test_log *l);

/* ------------------------------------------------------------ memory reactor */

/* Twisted's MemoryReactor: once installed on a reactor, tw_listen and
 * tw_connect (and the tcp:/unix: endpoints built on them) record what was
 * asked and open nothing. A recorded port is a real tw_port that never
 * accepts (tw_port_address is the address asked for; stop it as usual). A
 * recorded connector has had started_connecting and stays connecting until
 * the test fails it (tw_test_memory_fail) or stops it; to "connect" it, build
 * the protocol from its factory and attach a string transport
 * (tw_test_conn_new), as Twisted's tests do. */
typedef struct tw_test_memory tw_test_memory;

typedef struct tw_test_listen {
    tw_address address;
    tw_listen_options options;
    tw_factory *factory;
    tw_port *port; /* borrowed; valid until stopped */
} tw_test_listen;

typedef struct tw_test_connect {
    tw_address address;
    tw_connect_options options; /* .bind points into bind below */
    tw_address bind;
    tw_factory *factory;
    tw_connector *connector; /* borrowed; valid until it fails or is stopped */
} tw_test_connect;

/* Installs the recorder on r (its listen/connect stop touching the network).
 * Returns NULL when out of memory. Free it before the reactor. */
tw_test_memory *tw_test_memory_install(tw_reactor *r);
/* Uninstalls and frees (recorded ports and connectors are not touched). */
void tw_test_memory_free(tw_test_memory *m);

size_t tw_test_memory_listens(const tw_test_memory *m);
const tw_test_listen *tw_test_memory_listen(const tw_test_memory *m, size_t i);
size_t tw_test_memory_connects(const tw_test_memory *m);
const tw_test_connect *tw_test_memory_connect(const tw_test_memory *m, size_t i);

/* Fails the i-th recorded connection attempt with code (e.g.
 * -ECONNREFUSED): the factory's client_connection_failed runs now, then its
 * stop_factory if no other user remains. Returns 0 or TW_EINVAL (no such
 * attempt, or no longer connecting). */
int tw_test_memory_fail(tw_test_memory *m, size_t i, int code);

#ifdef __cplusplus
}
#endif
#endif
