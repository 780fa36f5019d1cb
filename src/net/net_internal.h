/* net_internal.h — stream connections, shared by tcp.c (ports, connectors)
 * and stream.c (the connection itself). */
#ifndef TWIRL_NET_INTERNAL_H
#define TWIRL_NET_INTERNAL_H

#include "core/reactor_internal.h"
#include "twirl/tcp.h"
#include "twirl/transport.h"

/* One pending write: copied bytes (inline) or lent bytes (release). */
typedef struct tw__wbuf tw__wbuf;
struct tw__wbuf {
    tw__wbuf *next;
    const char *data; /* next unsent byte */
    size_t len;       /* unsent bytes */
    size_t room;      /* free inline bytes after data+len (copied chunks only) */
    tw_free_fn release;
    void *release_arg;
    size_t cap; /* inline bytes allocated (copied chunks) */
    char inline_data[];
};

enum { TW__WBUF_CACHE = 64 }; /* free small chunks kept per reactor */

enum tw__conn_flags {
    TW__CONN_PAUSED = 1u << 0,       /* read side paused by the protocol */
    TW__CONN_READ_EOF = 1u << 1,     /* the peer shut its writing side */
    TW__CONN_SHUT_PENDING = 1u << 2, /* lose_write_connection: shut after flush */
    TW__CONN_WRITE_SHUT = 1u << 3,   /* our writing side is shut */
    TW__CONN_PRODUCER_STREAMING = 1u << 4,
    TW__CONN_PRODUCER_PAUSED = 1u << 5, /* we paused the registered producer */
    TW__CONN_PROTO_INLINE = 1u << 6,    /* protocol lives in the same block */
    TW__CONN_TCP = 1u << 7,
    TW__CONN_MADE = 1u << 8,              /* connection_made was called */
    TW__CONN_STOPPED = 1u << 9,           /* stop_producing: never read again */
    TW__CONN_URING = 1u << 10,            /* driven by completions (uring_stream.c) */
    TW__CONN_RECV_ARMED = 1u << 11,       /* a multishot receive is in the kernel */
    TW__CONN_RECV_CANCEL = 1u << 12,      /* ... and its cancel was asked for */
    TW__CONN_SEND_INFLIGHT = 1u << 13,    /* a send is in the kernel */
    TW__CONN_TORN_DOWN = 1u << 14,        /* connection_lost delivered */
    TW__CONN_READ_EOF_PENDING = 1u << 15, /* EOF received while paused */
    TW__CONN_ZOMBIE = 1u << 16,           /* torn down, waiting for the kernel */
    TW__CONN_ZC_CHECKED = 1u << 17,       /* TW__CONN_ZC was decided */
    TW__CONN_ZC = 1u << 18,               /* large sends go zero-copy (uring) */
    TW__CONN_PEER_V4 = 1u << 19,          /* peer_ip/peer_port hold an IPv4 peer */
    TW__CONN_PEER_V6 = 1u << 20           /* ... an IPv6 peer (neither: ask the socket) */
};

/* A TCP or Unix stream connection. Kept small: an idle connection costs this
 * struct (and its protocol) and nothing else — reads go through the
 * reactor's shared buffer, and the write queue exists only while the kernel
 * refuses bytes. */
typedef struct tw__conn tw__conn;
struct tw__conn {
    tw_transport base;     /* first: the transport pointer is the connection */
    tw__conn *prev, *next; /* the reactor's live connections */
    tw__io io;
    tw__conn *closing_next; /* in the reactor's queue of connections to tear down */
    tw__wbuf *wq_head, *wq_tail;
    size_t buffered;
    tw_producer *producer;
    tw_connector *connector; /* client connections */
    uint32_t high_water, low_water, write_limit;
    uint32_t flags;
    int16_t close_err; /* -errno or TW_E* that ended it, 0 for a clean close */
    /* The peer's IP address and port, kept from accept/connect so that
     * get_peer answers even in connection_lost, after a reset (Twisted keeps
     * transport.client too). The family is in flags (TW__CONN_PEER_*). */
    uint16_t peer_port; /* network byte order */
    uint8_t peer_ip[16];
#ifdef TWIRL_HAVE_URING
    uint32_t inflight; /* completions still due (zero-copy notifications too) */
    tw__op op;         /* the receive's, and the plain send's (second tag) */
    tw__wbuf *stash;   /* bytes received while paused, delivered on resume */
    tw__op *send_rec;  /* the send in flight when it has a record of its own */
#endif
};

/* For the completion-driven path (uring_stream.c). */
void tw__conn_close_now(tw__conn *c, int err);
void tw__conn_read_eof(tw__conn *c);
void tw__conn_consume(tw__conn *c, size_t n); /* n queued bytes were sent */
void tw__conn_sent(tw__conn *c);              /* after consuming: producers, drain */
void tw__conn_release(tw__conn *c);           /* frees once torn down and idle */
#ifdef TWIRL_HAVE_URING
int tw__uring_conn_start(tw__conn *c);
void tw__uring_conn_kick(tw__conn *c);    /* makes sure a send is on its way */
void tw__uring_conn_reading(tw__conn *c); /* reading wanted or not: arm or cancel */
void tw__uring_conn_close(tw__conn *c);
#endif

/* Remembers the peer (AF_INET/AF_INET6 only). */
void tw__conn_set_peer(tw__conn *c, const tw_address *peer);

/* Intercepts tw_listen and tw_connect on one reactor (the testing layer's
 * memory reactor): instead of opening sockets, the request is handed here
 * with the port or connector already made; the port never accepts and the
 * connector stays "connecting" until stopped. */
typedef struct tw__net_intercept {
    void (*listen)(void *arg, tw_port *port, const tw_listen_options *opts);
    void (*connect)(void *arg, tw_connector *c, const tw_connect_options *opts);
    void *arg;
} tw__net_intercept;

/* The factory of a connector, and a way to fail one that is connecting
 * (TW_EINVAL otherwise). */
tw_factory *tw__connector_factory(const tw_connector *c);
int tw__connector_fail(tw_connector *c, int code);

/* Installs (ic NULL: removes) the intercept; ic is borrowed until removed. */
int tw__net_set_intercept(tw_reactor *r, const tw__net_intercept *ic);

/* Per-reactor state of the net layer (slot TW__SLOT_NET). */
typedef struct tw__net {
    size_t conns;
    tw__conn *conn_list;   /* every live connection */
    struct tw_port *ports; /* every listening port */
    struct tw_connector *connectors;
    struct tw_port *emfile_ports; /* ports paused for lack of descriptors */
    tw__task free_task;
    /* Connections closed and waiting for their teardown (connection_lost),
     * in the order they closed; one task tears them all down. */
    tw__conn *closing_head, *closing_tail;
    tw__task teardown_task;
    int dying;                   /* the reactor is being freed */
    struct tw__wbuf *wbuf_cache; /* free small write chunks */
    struct tw__conn *zombies;    /* torn down, operations still in the kernel */
    int ports_in_kernel;         /* stopped ports whose accept is still in the kernel */
    const tw__net_intercept *intercept;
    int wbuf_cached;
} tw__net;

tw__net *tw__net_get(tw_reactor *r);

/* Makes a connection around a connected, non-blocking fd and calls
 * connection_made. Takes fd (closed on failure) and protocol (freed on
 * failure). Returns the connection or NULL when out of memory. */
tw__conn *tw__conn_new(tw_reactor *r, int fd, int is_tcp, tw_protocol *p, int proto_inline,
                       size_t write_limit, tw_connector *connector);
/* Allocates a connection and a protocol of proto_size bytes in one block
 * (the protocol follows the connection). */
tw__conn *tw__conn_alloc_with_protocol(const tw_protocol_ops *ops, tw_protocol **out);
void tw__conn_start(tw__conn *c);

/* Adds/removes a live connection to/from the reactor's list. */
void tw__net_conn_link(tw__net *net, tw__conn *c);
void tw__net_conn_unlink(tw__net *net, tw__conn *c);

/* tcp.c: told when a connection ends, for client hooks and accept resume. */
void tw__connector_conn_lost(tw_connector *c, const tw_failure *reason);
void tw__net_fd_freed(tw_reactor *r);

#endif
