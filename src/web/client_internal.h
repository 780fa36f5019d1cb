/* client_internal.h — shared by the HTTP client's files: agents
 * (client_agent.c), the pool (client_pool.c), connections (reading in
 * client_conn.c, writing in client_send.c), responses (client_response.c),
 * redirects (client_redirect.c), content decoding (client_decode.c), body
 * producers (client_body.c) and URLs (client_url.c).
 *
 * Lifetimes, in one place:
 *  - A request (tw__creq) lives from tw_agent_request until its deferred
 *    fired and no connection or queue holds it (refs).
 *  - A connection's state (tw__cconn) is allocated apart from the protocol
 *    the transport owns (a small shim), so it can outlive the transport: a
 *    body that arrived whole before the server closed is still delivered
 *    from its buffer afterwards.
 *  - The pool (tw__cpool) is the connections' factory: it lives until the
 *    agent is freed, every connection state is gone and no connector still
 *    uses the factory. Empty hosts and the pool itself are freed from a
 *    task, never inside a caller's stack. */
#ifndef TWIRL_WEB_CLIENT_INTERNAL_H
#define TWIRL_WEB_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reactor_internal.h"
#include "twirl/web_client.h"

/* ------------------------------------------------------------- agents */

typedef struct tw__agent_ops {
    tw_deferred *(*request)(tw_agent *a, const char *method, const char *url,
                            const tw_http_header *headers, size_t n, tw_body_producer *body);
    void (*close_idle)(tw_agent *a);
    void (*free)(tw_agent *a);
} tw__agent_ops;

struct tw_agent {
    const tw__agent_ops *ops;
    tw_reactor *reactor;
};

/* ------------------------------------------------------------ responses */

/* Where a response's body comes from: a connection, or a decoder reading
 * another response. The response calls these; the source answers with
 * tw__response_data / tw__response_end. */
typedef struct tw__body_source_ops {
    /* Deliveries may go on (deliver_body was called, or resume): deliver
     * what is held. Called from the response's task, never inside a user
     * call. */
    void (*resume)(void *src);
    /* Stop delivering until resume; takes effect before the next
     * tw__response_data. */
    void (*pause)(void *src);
    /* Stop for good (stop_body): the source calls tw__response_end with a
     * cancelled failure before returning. */
    void (*stop)(void *src);
    /* The response no longer wants the body (dropped, or discarded by the
     * redirect agent): the source must never call it again. */
    void (*drop)(void *src);
} tw__body_source_ops;

struct tw_response {
    unsigned refs;
    tw_reactor *reactor;
    int status;
    int version_minor;
    tw_http_slice reason;
    tw_http_header *headers;
    size_t num_headers;
    bool has_length;
    uint64_t length;
    const char *url;
    const char *method;
    tw_response *previous; /* a reference */

    /* The body. */
    const tw__body_source_ops *src_ops;
    void *src; /* NULL once the source ended or was dropped */
    const tw_response_body_ops *body_ops;
    void *body_arg;
    bool consumer; /* deliver_body was called (holds a reference) */
    bool finished; /* body_end was called */
    bool ended;    /* the source ended; end_reason waits for delivery */
    bool paused;
    tw_failure *end_reason;
    tw__task task;
    tw_producer producer;
};

/* Makes a response with one reference: copies reason, headers, url and
 * method into one allocation. No body source yet (set src_ops/src, or call
 * tw__response_end for a response without body). NULL when out of memory. */
tw_response *tw__response_make(tw_reactor *r, int status, int version_minor, tw_http_slice reason,
                               const tw_http_header *headers, size_t n, const char *url,
                               const char *method);

/* For sources. data goes to the consumer now; only while delivering. */
bool tw__response_delivering(const tw_response *r);
void tw__response_data(tw_response *r, const char *data, size_t len);
/* The body ended (reason taken; NULL: complete). The source is detached
 * first; the response may be freed before this returns. */
void tw__response_end(tw_response *r, tw_failure *reason);
/* Drops the body but keeps the response (redirect responses). */
void tw__response_discard_body(tw_response *r);
/* Sets previous (takes the reference). */
void tw__response_set_previous(tw_response *r, tw_response *previous);

/* ------------------------------------------------------------ the pool */

typedef struct tw__cpool tw__cpool;
typedef struct tw__chost tw__chost;
typedef struct tw__cconn tw__cconn;
typedef struct tw__creq tw__creq;

struct tw_body_consumer {
    tw__creq *req;
};

/* Watches a body producer's deferred: the callbacks outlive the request
 * when a producer fires late. */
typedef struct tw__body_watch {
    tw__creq *req; /* NULL once the request stopped caring */
} tw__body_watch;

struct tw__creq {
    unsigned refs;
    tw__cpool *pool;
    tw__chost *host;
    tw__creq *qnext, *qprev; /* the host's queue, while waiting */
    tw__cconn *conn;         /* while its exchange is on a connection */
    tw_deferred *d;          /* until fired */
    tw_body_producer *body;  /* owned */
    tw_body_consumer consumer;
    tw__body_watch *watch; /* while the body is produced */
    tw_deferred *body_d;   /* the producer's deferred, while producing */
    uint64_t body_written;
    unsigned in_producer; /* producer calls on the stack: freeing waits */
    tw__task free_task;
    tw_timer connect_timer;
    tw_timer response_timer;
    tw_http_method method_id;
    bool https;
    bool queued;
    bool idempotent;
    bool retried;
    bool fresh;        /* needs a new connection (a retry) */
    bool head_pending; /* written with the first body bytes */
    bool producing;
    bool body_done; /* the request was handed to the connection whole */
    bool want_close;
    bool chunked;
    uint16_t port;
    const char *method; /* NUL-terminated, in storage */
    const char *url;
    const char *host_name; /* lower-case, no brackets */
    char *head;
    size_t head_len;
    char storage[];
};

/* The pool: connections by (scheme, host, port). Also their factory. */
struct tw__cpool {
    tw_factory factory; /* first */
    tw_reactor *reactor;
    tw_agent_options opts;
    char *trust_roots;
    char *user_agent;
    tw__chost *hosts;
    size_t conns;    /* live connection states */
    size_t attempts; /* endpoint connects under way */
    bool closed;     /* the agent was freed */
    tw__task sweep;
};

struct tw__chost {
    tw__chost *next;
    tw__cpool *pool;
    char *name; /* lower-case */
    uint16_t port;
    bool https;
    tw_client_endpoint *ep;
    int ep_error;                /* creating the endpoint failed with this */
    tw__cconn *all;              /* attached connections */
    tw__cconn *idle, *idle_tail; /* most recently used first */
    size_t nidle;
    size_t nconns; /* attached connections, busy and idle */
    size_t nattempts;
    tw__creq *qhead, *qtail; /* waiting requests */
    size_t nwaiting;
    struct tw__cattempt *attempts; /* newest first */
    bool connecting;               /* inside host_connect's loop */
};

typedef struct tw__cattempt {
    struct tw__cattempt *next, *prev;
    tw__chost *host; /* NULL once it no longer belongs to one */
    tw_deferred *d;
    bool cancelled;
} tw__cattempt;

int tw__cpool_new(tw_reactor *r, const tw_agent_options *o, tw__cpool **out);
/* The agent is gone: close everything, fail what waits, free when unused. */
void tw__cpool_close(tw__cpool *p);
void tw__cpool_close_idle(tw__cpool *p);
/* Queues a request (the pool takes the request's owner reference) and
 * gives it a connection now or later. */
void tw__cpool_submit(tw__cpool *p, tw__creq *req);
/* A request leaves the queue (cancelled or timed out). */
void tw__cpool_unqueue(tw__creq *req);
/* A connection's exchange is over and it may carry another one. */
void tw__cpool_release(tw__cconn *c);
/* The connection will not carry requests any more (closing or lost). */
void tw__cpool_detach(tw__cconn *c);
void tw__cpool_sweep_soon(tw__cpool *p);
/* For messages: "http://host:port". */
int tw__chost_origin(const tw__chost *h, char *buf, size_t size);

/* ------------------------------------------------------- requests */

void tw__creq_unref(tw__creq *req);
/* Fires the request's deferred (if not yet fired) with res (taken). */
void tw__creq_fire(tw__creq *req, tw_result res);
/* Stops the body producer (if producing) and stops watching it. */
void tw__creq_stop_body(tw__creq *req);
/* Whether a failed exchange may be retried on a new connection; rewinds
 * the body if there is one. */
bool tw__creq_may_retry(tw__creq *req);

/* ------------------------------------------------------- connections */

enum tw__cstate {
    CC_NEW = 0, /* connected, not yet handed out */
    CC_IDLE,    /* in the pool */
    CC_HEAD,    /* a request is on; waiting for the response head */
    CC_BODY,    /* the response body is being read */
    CC_CLOSED   /* no more exchanges */
};

struct tw__cconn {
    tw__cpool *pool;
    tw__chost *host;          /* while attached */
    tw__cconn *anext, *aprev; /* the host's connections */
    tw__cconn *next, *prev;   /* the host's idle list, while in_idle */
    bool in_idle;
    tw_protocol *proto; /* the shim; NULL once the transport is gone */
    tw_transport *transport;
    tw__creq *req;     /* the exchange's request, until its head came */
    tw__creq *sender;  /* the request whose body is still being written */
    tw_response *resp; /* while its body streams from here */
    tw_producer producer;
    tw_timer idle_timer;
    tw__task task;
    tw_http_parser parser;
    tw_http_response head;
    tw_http_header *fields; /* headers array for the parser */
    size_t fields_cap;
    tw_http_chunked chunked;
    tw_http_length length;
    tw_http_method method_id;
    tw_failure *lost; /* why the transport ended, while a buffer remains */
    char *buf;        /* input not yet consumed */
    size_t len, cap;
    uint64_t discard_budget;
    unsigned exchanges; /* exchanges begun on this connection */
    uint8_t state;
    uint8_t body_kind;
    bool keep_alive;
    bool got_bytes; /* of the current exchange */
    bool read_paused;
    bool wregistered; /* our producer is registered on the transport */
    bool consumer_paused;
    bool discarding;
    bool consuming; /* consume() is on the stack */
    bool gone;      /* the transport has ended */
    bool closing;   /* lose/abort was called */
};

/* The factory's protocol ops (the shim). */
extern const tw_protocol_ops tw__cconn_protocol;
/* The connection behind a shim protocol built by the pool's factory. */
tw__cconn *tw__cconn_of(tw_protocol *p);
/* Starts req's exchange on c. */
void tw__cconn_start(tw__cconn *c, tw__creq *req);
/* Idle in the pool: idle timer on. */
void tw__cconn_idle(tw__cconn *c);
/* Closes: lose_connection (graceful) or abort. */
void tw__cconn_close(tw__cconn *c, bool abort);
/* The agent is freed: fail what is under way, abort. */
void tw__cconn_close_for_shutdown(tw__cconn *c);
/* Shared by client_conn.c and client_send.c. take_req takes the request
 * waiting for its head off the connection; drop_sender stops the body
 * being written; fail_exchange aborts and gives f (taken) to whoever waits;
 * update_reading pauses or resumes the transport's reading. */
tw__creq *tw__cconn_take_req(tw__cconn *c);
void tw__cconn_drop_sender(tw__cconn *c);
void tw__cconn_fail_exchange(tw__cconn *c, tw_failure *f);
void tw__cconn_update_reading(tw__cconn *c);
/* The request gave up (cancelled, timed out): abort the exchange. */
void tw__cconn_abort_request(tw__cconn *c);
int tw__cconn_write_body(tw__cconn *c, tw__creq *req, const void *data, size_t len);

#endif
