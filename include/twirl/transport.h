/* twirl/transport.h — transports and producers (ITransport, IConsumer,
 * IPushProducer / IPullProducer).
 *
 * A transport is the protocol's way out: TCP and Unix sockets, TLS,
 * processes, standard I/O and the test doubles all present this interface,
 * so a protocol works over any of them. Implementations embed tw_transport
 * first and supply tw_transport_ops; protocols call the tw_transport_*
 * functions below. Every function here is safe inside any callback,
 * including the protocol's own: closing only changes state, and the teardown
 * (connection_lost) runs later from the loop, never inside the caller.
 *
 * Writing never blocks and never loses data: what the kernel does not take
 * at once is kept, in order, and sent as the peer reads. The kept bytes are
 * bounded: past the high-water mark a registered producer is paused (and
 * resumed below the low-water mark); past the write limit the write fails
 * with TW_ELIMIT and the connection is aborted, so a peer that never reads
 * cannot exhaust memory. */
#ifndef TWIRL_TRANSPORT_H
#define TWIRL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "twirl/address.h"
#include "twirl/deferred.h"
#include "twirl/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ producers */

typedef struct tw_producer tw_producer;
typedef struct tw_producer_ops {
    /* Streaming (push) producers: stop producing until resume. */
    void (*pause_producing)(tw_producer *p);
    /* Push producers: go on. Pull producers: produce one more chunk now. */
    void (*resume_producing)(tw_producer *p);
    /* The consumer is gone: produce nothing more, ever. */
    void (*stop_producing)(tw_producer *p);
} tw_producer_ops;

/* Embed first in your producer struct. */
struct tw_producer {
    const tw_producer_ops *ops;
};

/* ------------------------------------------------------------ transports */

/* Write-side defaults, in bytes. */
enum {
    TW_WRITE_HIGH_WATER = 64 * 1024,  /* pause the producer above this */
    TW_WRITE_LOW_WATER = 16 * 1024,   /* resume it at or below this */
    TW_WRITE_LIMIT = 16 * 1024 * 1024 /* abort the connection beyond this */
};

typedef enum tw_transport_option {
    TW_OPT_TCP_NODELAY = 1, /* on by default for TCP */
    TW_OPT_TCP_KEEPALIVE,   /* value: 0 off, or idle seconds before probes */
    TW_OPT_HIGH_WATER,      /* bytes */
    TW_OPT_LOW_WATER,       /* bytes */
    TW_OPT_WRITE_LIMIT,     /* bytes; 0 = unbounded */
    TW_OPT_SNDBUF,          /* SO_SNDBUF */
    TW_OPT_RCVBUF           /* SO_RCVBUF */
} tw_transport_option;

typedef struct tw_transport_ops {
    const char *kind; /* "tcp", "unix", "tls", "process", "stdio", "string", ... */
    int (*write)(tw_transport *t, const void *data, size_t len);
    int (*writev)(tw_transport *t, const struct iovec *iov, int iovcnt);
    /* Optional (NULL: copy through write). */
    int (*write_ref)(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                     void *release_arg);
    void (*lose_connection)(tw_transport *t);
    void (*abort_connection)(tw_transport *t);
    int (*lose_write_connection)(tw_transport *t);
    void (*pause_producing)(tw_transport *t);
    void (*resume_producing)(tw_transport *t);
    void (*stop_producing)(tw_transport *t);
    int (*register_producer)(tw_transport *t, tw_producer *p, bool streaming);
    void (*unregister_producer)(tw_transport *t);
    int (*get_peer)(tw_transport *t, tw_address *out);
    int (*get_host)(tw_transport *t, tw_address *out);
    int (*set_option)(tw_transport *t, tw_transport_option opt, long value);
    size_t (*buffered)(const tw_transport *t);
    int (*fd)(const tw_transport *t); /* optional: -1 */
} tw_transport_ops;

enum tw_transport_state {
    TW_TRANSPORT_OPEN = 0,
    TW_TRANSPORT_DISCONNECTING, /* lose_connection called; flushing */
    TW_TRANSPORT_CLOSED         /* connection_lost delivered or due */
};

struct tw_transport {
    const tw_transport_ops *ops;
    tw_reactor *reactor;
    tw_protocol *protocol;
    int state;               /* enum tw_transport_state; read it, never write it */
    tw_producer as_producer; /* see tw_transport_as_producer */
};

/* For implementations: fills the base (state OPEN, as_producer wired to the
 * transport's pause/resume/stop). */
void tw_transport_init(tw_transport *t, const tw_transport_ops *ops, tw_reactor *r);

/* Copies data (or sends it at once). Returns 0, TW_ECLOSED after
 * lose/abort, or TW_ELIMIT when the write limit is exceeded (the
 * connection is then being aborted). */
int tw_transport_write(tw_transport *t, const void *data, size_t len);
/* Twisted's writeSequence: gathered into one system call when possible. */
int tw_transport_writev(tw_transport *t, const struct iovec *iov, int iovcnt);
/* Writes a NUL-terminated string. */
int tw_transport_write_str(tw_transport *t, const char *s);
/* Writes printf-formatted text (no NUL). Same returns as write, or TW_ENOMEM
 * when the text is long and memory is short. */
int tw_transport_printf(tw_transport *t, const char *fmt, ...) TW_PRINTF(2, 3);
/* Lends data: release(release_arg) is called once the bytes are sent or the
 * connection dropped them; until then data must stay valid and unchanged.
 * release may be NULL for static data. Same returns as write; on error
 * release has already been called. */
int tw_transport_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                           void *release_arg);

/* Closes after everything written has been sent (Twisted's loseConnection);
 * connection_lost follows with TW_ECONNECTION_DONE. */
void tw_transport_lose_connection(tw_transport *t);
/* Closes now, dropping unsent data (abortConnection); connection_lost follows
 * with TW_ECONNECTION_LOST. */
void tw_transport_abort_connection(tw_transport *t);
/* Half-close: shuts our writing side down after the pending bytes are sent,
 * and keeps reading. Returns 0 or TW_ECLOSED. */
int tw_transport_lose_write_connection(tw_transport *t);

/* Read-side flow control: stop delivering data_received until resumed;
 * stop_producing closes the connection (Twisted). */
void tw_transport_pause_producing(tw_transport *t);
void tw_transport_resume_producing(tw_transport *t);
void tw_transport_stop_producing(tw_transport *t);

/* Write-side flow control (IConsumer): the transport pauses a streaming
 * producer while its buffer is above the high-water mark and resumes it at
 * the low-water mark; a non-streaming (pull) producer gets resume_producing
 * each time the buffer drains. The producer is borrowed until unregistered or
 * until connection_lost; at connection loss it gets stop_producing. Returns 0
 * or TW_EBUSY if one is already registered, TW_ECLOSED when closed. */
int tw_transport_register_producer(tw_transport *t, tw_producer *p, bool streaming);
void tw_transport_unregister_producer(tw_transport *t);

/* The transport itself as a push producer (its read side), to register on
 * another transport — e.g. a proxy pausing one side while the other is
 * slow. Valid as long as the transport. */
tw_producer *tw_transport_as_producer(tw_transport *t);

/* The addresses of the two ends. The peer of a TCP connection stays known
 * for its whole life, connection_lost included (Twisted's
 * transport.client). Return 0, or a negative code with *out emptied. */
int tw_transport_get_peer(tw_transport *t, tw_address *out);
int tw_transport_get_host(tw_transport *t, tw_address *out);
int tw_transport_set_option(tw_transport *t, tw_transport_option opt, long value);
int tw_transport_set_tcp_nodelay(tw_transport *t, bool on);
int tw_transport_set_tcp_keepalive(tw_transport *t, bool on);
/* Bytes written but not yet handed to the kernel (or the layer below). */
size_t tw_transport_buffered(const tw_transport *t);
/* The file descriptor, or -1 for transports without one. */
int tw_transport_fd(const tw_transport *t);
static inline bool tw_transport_connected(const tw_transport *t)
{
    return t->state == TW_TRANSPORT_OPEN;
}

#ifdef __cplusplus
}
#endif
#endif
