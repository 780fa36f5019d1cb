/* web_internal.h — shared by the HTTP server's files: server.c (site and
 * connection), request.c (the request and the response writer), resource.c
 * (the tree and dispatch), static.c, access_log.c. */
#ifndef TWIRL_WEB_INTERNAL_H
#define TWIRL_WEB_INTERNAL_H

#include <stdint.h>

#include "core/reactor_internal.h"
#include "twirl/http_parser.h"
#include "twirl/log.h"
#include "twirl/web.h"

typedef struct tw__hconn tw__hconn;

enum {
    TW__ARENA_INLINE = 2048, /* per-request scratch kept with the connection */
    TW__HOLD_MAX = 16 * 1024 /* a first write up to this is held for Content-Length */
};

/* Timeout queues: a connection is in at most one, ordered by deadline
 * because each queue has one duration. */
enum tw__tq { TQ_NONE = -1, TQ_IDLE = 0, TQ_HEAD, TQ_BODY, TQ_LINGER, TQ_COUNT };

/* Connection states. */
enum tw__hstate {
    HS_IDLE = 0, /* between requests: nothing of the next one yet */
    HS_HEAD,     /* part of a head is buffered */
    HS_BODY,     /* a request is active and its body is being read */
    HS_ACTIVE,   /* a request is active; its body is done (or not wanted yet) */
    HS_DISCARD,  /* the response is done; the rest of its body is dropped */
    HS_LINGER,   /* closing after an error reply: drop input until EOF or timeout */
    HS_CLOSED    /* connection lost */
};

/* How the active request's body is consumed. */
enum tw__body_mode { BM_NONE = 0, BM_COLLECT, BM_STREAM, BM_DISCARD };

/* Request flags. */
enum {
    RF_HEAD_SENT = 1u << 0,
    RF_FINISHED = 1u << 1,
    RF_CHUNKED = 1u << 2,
    RF_LEN_SET = 1u << 3,
    RF_CLOSE = 1u << 4, /* the response says Connection: close */
    RF_IS_HEAD = 1u << 5,
    RF_NO_BODY = 1u << 6, /* HEAD, 204, 304: body bytes are counted, not sent */
    RF_CONTINUE_SENT = 1u << 7,
    RF_BODY_DONE = 1u << 8,      /* every body byte was read (or there was none) */
    RF_BODY_READING = 1u << 9,   /* read_body was called */
    RF_BODY_PAUSED = 1u << 10,   /* the consumer paused the body */
    RF_BODY_END_SENT = 1u << 11, /* body_end was called */
    RF_SERVER_SET = 1u << 12,
    RF_DATE_SET = 1u << 13,
    RF_FILE = 1u << 14,         /* send_file in progress */
    RF_RENDERED = 1u << 15,     /* the render hook was called */
    RF_ACTIVE = 1u << 16,       /* between begin and finish */
    RF_UNTIL_CLOSE = 1u << 17,  /* body delimited by closing (HTTP/1.0) */
    RF_PERSISTED = 1u << 18,    /* head copied out of transient buffers */
    RF_BODY_STOPPED = 1u << 19, /* body producer stopped: close after the response */
    RF_UNPARSED = 1u << 20,     /* logged for a head that never parsed */
    /* Set by a get_child hook whose child answers the same path segment
     * (a virtual host choosing its tree, Twisted's postpath.insert(0,
     * prepath.pop())): the walk goes on from the child without consuming
     * the segment. */
    RF_KEEP_SEGMENT = 1u << 21
};

typedef struct tw__rheader {
    const char *name, *value;
    uint32_t nlen, vlen;
} tw__rheader;

typedef struct tw__achunk tw__achunk;
struct tw__achunk {
    tw__achunk *next;
    size_t cap;
    char data[];
};

/* The request: one block per connection, made at its first request and
 * reused for each next one; detached (conn NULL) when the connection is lost
 * before the request is finished, and freed at its finish then. */
struct tw_request {
    tw__hconn *conn;
    tw_site *site;
    tw_resource *resource;
    tw_resource **owned; /* dynamic children to unref at finish (arena) */
    size_t nowned, owned_cap;

    tw_http_request h; /* the parsed head; h.headers is hdrs */
    const char *head_ptr;
    size_t head_len;
    tw_http_slice *seg; /* decoded path segments (arena) */
    size_t nseg, npre;

    /* body */
    uint8_t body_mode;
    tw_http_slice body;
    char *body_buf; /* malloc'd when a body is collected in pieces */
    size_t body_cap;
    const tw_body_ops *bops;
    void *barg;
    tw_producer body_producer;

    /* response */
    uint32_t flags;
    int status;
    uint64_t content_length;
    uint64_t sent; /* body bytes written (or that would have been, HEAD) */
    tw__rheader *rh;
    size_t nrh, rh_cap;
    const char *held;
    size_t held_len;
    tw_deferred *finish_d;
    tw_producer *producer;
    bool producer_streaming;

    /* send_file */
    tw_producer file_producer;
    int file_fd;
    uint64_t file_off, file_left;
    char *file_buf; /* pread chunk when sendfile cannot be used */
    bool file_buf_busy;
    tw__task file_task;
    bool file_pumped;
    tw_free_fn file_release; /* gives the fd back (close, or a cache's unref) */
    void *file_release_arg;
    unsigned hold; /* callbacks running on a detached request */

    /* arena */
    tw__achunk *chunks;
    size_t a_used;
    size_t max_headers;
    char arena[TW__ARENA_INLINE];
    tw_http_header hdrs[];
};

/* The connection: the protocol the site's factory builds. */
struct tw__hconn {
    tw_protocol base;
    tw_site *site;
    tw_request *req; /* the request block, NULL until the first request */
    uint8_t state;
    uint8_t pause; /* reasons the read side is paused (PAUSE_*) */
    bool in_loop;  /* inside run(): a finish must not recurse */
    bool eof;      /* the client shut its writing side */
    bool close_after;
    bool counted; /* counted in the site's connections */
    unsigned nrequests;

    char *in; /* buffered input: bytes [in_off, in_len) */
    size_t in_off, in_len, in_cap;
    tw_http_parser parser;
    tw_http_chunked chunked;
    tw_http_length length;

    /* timeouts */
    tw__hconn *tprev, *tnext;
    int8_t tq;
    int64_t deadline_ns;

    tw__hconn *prev, *next; /* the site's connections */
    tw__task task;          /* go on with buffered input after an async finish */
    tw_producer drain;      /* pull producer: output drained */
    bool drain_registered;
    size_t dropped; /* bytes dropped while lingering */
};

enum { PAUSE_BODY = 1u << 0, PAUSE_FULL = 1u << 1, PAUSE_DRAIN = 1u << 2 };

struct tw_site {
    tw_factory factory; /* first: the factory pointer is the site */
    tw_reactor *reactor;
    tw_resource *root;
    tw_site_options o;
    char server_line[128];
    size_t server_line_len;
    size_t conns;
    size_t detached; /* requests whose connection was lost, not yet finished */
    tw__hconn *conn_list;
    struct {
        tw__hconn *head, *tail;
        int64_t dur_ns;
    } tq[TQ_COUNT];
    tw_timer sweep;
    int64_t sweep_at;
    tw_timer log_flush;
    bool dying;
    bool reactor_gone;              /* the reactor was freed first: touch nothing of it */
    tw_site *slot_prev, *slot_next; /* the reactor's sites (TW__SLOT_WEB) */
    int64_t refused_logged_at;
    /* Date cache */
    int64_t date_sec;
    char date_line[48]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_line_len;
    char log_time[40]; /* "[06/Nov/1994:08:49:37 +0000]" */
};

/* ---------------------------------------------------------------- arena */
void *tw__arena_alloc(tw_request *req, size_t n);
char *tw__arena_strdup(tw_request *req, const char *s, size_t n);
void tw__arena_reset(tw_request *req);

/* ---------------------------------------------------------------- server.c */
/* The connection protocol the site's factory builds. */
extern const tw_protocol_ops tw__hconn_ops;
/* The Date line for this second (cached). */
const char *tw__site_date_line(tw_site *s, size_t *len);
/* "[22/Nov/2026:07:55:14 +0000]" for this second. */
const char *tw__site_log_time(tw_site *s);
/* The request was finished (called by request.c). */
void tw__conn_request_done(tw__hconn *c, tw_request *req);
/* The body consumer paused/resumed, or read_body was called. */
void tw__conn_body_flow(tw__hconn *c);
/* Sends raw bytes (100 Continue). */
int tw__conn_write_raw(tw__hconn *c, const char *data, size_t len);

/* ---------------------------------------------------------------- request.c */
void tw__request_begin(tw_request *req, tw__hconn *c);
/* Dispatches to the resource (after the body was collected, or at once). */
void tw__request_render(tw_request *req);
/* An error reply made by the server itself (parse errors, 404, 405...). */
int tw__request_fail(tw_request *req, int status, const char *detail);
/* The connection was lost while the request was active. */
void tw__request_conn_lost(tw_request *req, const tw_failure *reason);
/* Frees a request block (not active). */
void tw__request_free(tw_request *req);
tw_request *tw__request_alloc(tw_site *s);
/* Delivers body bytes to the consumer / body end. */
void tw__request_body_data(tw_request *req, const char *data, size_t len);
void tw__request_body_end(tw_request *req, const tw_failure *reason);
/* Copies the head and a collected body out of transient buffers. */
int tw__request_persist(tw_request *req);
/* For request.c's siblings. */
tw_transport *tw__request_transport(const tw_request *req);
int tw__request_check_open(tw_request *req);
char *tw__request_build_head(tw_request *req, bool finishing, size_t *out_len);
int tw__request_send_first(tw_request *req, bool finishing, const void *data, size_t len);
void tw__request_maybe_free(tw_request *req);
void tw__request_drop_owned(tw_request *req);
/* Fires notify_finish's deferred: with no value, or with the failure. */
void tw__request_fire_finish(tw_request *req, const tw_failure *lost);
void tw__file_release(tw_request *req);
/* send_file with the fd given back through release(arg) instead of close. */
int tw__request_send_file_ex(tw_request *req, int fd, uint64_t offset, uint64_t len,
                             tw_free_fn release, void *arg);
int tw__request_header_static(tw_request *req, const char *name, size_t nlen, const char *value,
                              size_t vlen);
/* The minimal head for a reply made before a request exists. */
int tw__send_simple_error(tw__hconn *c, int status, const char *reason_text);

/* ---------------------------------------------------------------- resource.c */
/* Walks the tree for req's segments and renders. */
void tw__resource_route(tw_request *req);

/* ---------------------------------------------------------------- access_log.c */
void tw__access_log_request(tw_access_log *l, tw_site *s, tw_request *req);
void tw__access_log_tick(tw_access_log *l);

/* HTML-escapes s[0..n) into the arena. */
char *tw__html_escape(tw_request *req, const char *s, size_t n, size_t *out_len);

#endif
