/* twirl/web.h — the HTTP/1.1 server (twisted.web.server, twisted.web.resource,
 * twisted.web.static, twisted.web.proxy, twisted.web.vhost): sites, resource
 * trees, requests, static files, MIME types, the access log, the reverse
 * proxy and name-based virtual hosts.
 *
 * A site is a factory: listen with tw_site_factory(site) on any stream
 * endpoint (tcp:, unix:, ssl:). Each request walks the site's resource tree
 * one decoded path segment at a time, as in Twisted: "/a/b" asks the root
 * for child "a", that one for child "b"; a leaf resource stops the walk and
 * sees the rest of the path in postpath. The resource found renders the
 * request by method (render_get, render_post...): it sets a status and
 * headers, writes the body — at once, or later, streaming with
 * backpressure — and finishes the request.
 *
 *     static int hello_get(tw_resource *r, tw_request *req)
 *     {
 *         return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
 *     }
 *     static const tw_resource_ops hello_ops = { .render_get = hello_get };
 *
 *     tw_resource *root = tw_resource_new(NULL), *hello = tw_resource_new(&hello_ops);
 *     tw_resource_put_child(root, "hello", hello);       // root now owns hello
 *     tw_site *site;
 *     tw_site_new(r, root, NULL, &site);                  // the site now owns root
 *     tw_listen_tcp(r, NULL, 8080, NULL, tw_site_factory(site), &port);
 *
 * The server speaks HTTP/1.0 and HTTP/1.1 with keep-alive, pipelining
 * (responses strictly in request order: one request is served at a time per
 * connection, the next waits in the buffer), Expect: 100-continue and
 * Connection: close. It writes Date and Server headers, chunked encoding when
 * the length is unknown (close-delimited bodies for HTTP/1.0), and answers
 * HEAD from render_get without sending the body. Requests it cannot parse get
 * the parser's status (400, 413, 414, 431, 501, 505) and the connection is
 * closed gracefully. Slow clients are bounded by timeouts (head, body, idle
 * keep-alive) and the number of connections by max_connections.
 *
 * Threads: a site belongs to the reactor it was made on (one per thread). A
 * resource tree may be shared by the sites of several reactors once it is
 * built: traversal only reads it, and resource reference counts are atomic.
 * Building the tree (put_child) is not thread-safe.
 *
 * Every function taking a tw_request is for the reactor thread and safe
 * inside any callback, the request's own included. */
#ifndef TWIRL_WEB_H
#define TWIRL_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "twirl/address.h"
#include "twirl/deferred.h"
#include "twirl/http_parser.h"
#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/transport.h"
#include "twirl/web_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_site tw_site;
typedef struct tw_request tw_request;
typedef struct tw_resource tw_resource;
typedef struct tw_access_log tw_access_log;

/* =============================================================== resources */

/* A render hook. It answers the request — now or later — and must finish it
 * exactly once (tw_request_finish, or a call that finishes: respond,
 * respond_error, redirect, send_file). Returns 0; a negative return means
 * the hook failed before answering: the server answers 500 if nothing was
 * sent yet (and finishes the request), otherwise aborts the connection. */
typedef int (*tw_render_fn)(tw_resource *r, tw_request *req);

typedef struct tw_resource_ops {
    /* Bytes tw_resource_new allocates: sizeof your struct, which starts with
     * a tw_resource. 0 means sizeof(tw_resource). */
    size_t size;
    /* Twisted's isLeaf: the walk stops here and the rest of the path stays
     * in the request's postpath. */
    bool is_leaf;
    /* false (the default, as in Twisted): the body is read whole (up to the
     * site's max_body_bytes, else 413) before the render hook runs, and is
     * tw_request_body(). true: the hook runs as soon as the head arrives and
     * reads the body as it comes with tw_request_read_body — for uploads of
     * any size and for proxies. */
    bool stream_body;
    /* Twisted's getChild: called for a path segment that no put_child child
     * has (name is decoded, not NUL-terminated; it may be empty, for a
     * trailing '/'). Returns a NEW reference to a resource (tw_resource_new,
     * or tw_resource_ref of an existing one), which the request drops when
     * it is finished; NULL for 404 Not Found. Optional. */
    tw_resource *(*get_child)(tw_resource *r, const char *name, size_t len, tw_request *req);
    /* Twisted's render: when set it is called for every method and the
     * per-method hooks below are ignored. */
    tw_render_fn render;
    /* Twisted's render_GET, render_POST...: a method whose hook is NULL gets
     * 405 Method Not Allowed with an Allow field naming those that are set.
     * HEAD without render_head is answered by render_get with the body left
     * out (the headers, Content-Length included, are those of GET). Methods
     * without a hook of their own (TRACE, CONNECT, extension methods) need
     * render. */
    tw_render_fn render_get, render_head, render_post, render_put, render_delete, render_patch,
        render_options;
    /* Frees what the resource itself holds, before the library frees the
     * resource's memory (last reference dropped). Optional. */
    void (*destroy)(tw_resource *r);
} tw_resource_ops;

/* The base every resource starts with. Fields are private. */
struct tw_resource {
    const tw_resource_ops *ops;
    struct tw__children *children; /* put_child table */
    unsigned refs;                 /* atomic */
};

/* Makes a resource of ops->size zeroed bytes with one reference, the
 * caller's. ops NULL makes a plain container (Twisted's Resource()): it has
 * children, and 404 for anything else, "/" included unless a child named ""
 * is put. ops is borrowed and must outlive the resource. NULL when out of
 * memory. */
tw_resource *tw_resource_new(const tw_resource_ops *ops);

/* Reference counting (atomic: trees may be shared by several reactors). The
 * last unref calls ops->destroy, drops the children and frees the memory.
 * ref returns r; NULL is accepted by both. */
tw_resource *tw_resource_ref(tw_resource *r);
void tw_resource_unref(tw_resource *r);

/* Twisted's putChild: child answers the path segment name (NUL-terminated,
 * decoded form: "a b" for "a%20b"; "" for a trailing slash). Takes the
 * caller's reference to child: tw_resource_ref first to keep one. A child
 * already under that name is replaced (and its reference dropped). Returns
 * 0, TW_EINVAL (a NULL argument, or a name containing '/'), or TW_ENOMEM
 * (the reference is then dropped all the same). Not thread-safe; not while
 * another thread serves the tree. */
int tw_resource_put_child(tw_resource *parent, const char *name, tw_resource *child);

/* The child put under name[0..len), borrowed, or NULL. */
tw_resource *tw_resource_child(const tw_resource *parent, const char *name, size_t len);

/* ================================================================ requests */

/* A request is owned by the library. It is valid from the render hook's
 * call until it is finished; the library frees it (or reuses its memory for
 * the connection's next request) after that. A request whose connection
 * is lost stays valid until it is finished: writes then return TW_ECLOSED,
 * and tw_request_notify_finish's deferred fails. */

/* ---- the request as received. Slices are borrowed from the request. */

tw_http_method tw_request_method(const tw_request *req);
/* The method as sent ("GET", "PURGE"). */
tw_http_slice tw_request_method_name(const tw_request *req);
/* The request-target as sent ("/a%20b?x=1"): Twisted's request.uri. */
tw_http_slice tw_request_uri(const tw_request *req);
/* The path part of the target, still percent-encoded (Twisted's path). */
tw_http_slice tw_request_path(const tw_request *req);
/* The query after '?', still encoded; {NULL, 0} when there is none. */
tw_http_slice tw_request_query(const tw_request *req);
/* The first query argument called name (NUL-terminated, compared after
 * decoding the key), decoded (+ is a space) into out[0..cap). Returns 1 and
 * stores the length, 0 when absent, TW_EPROTO for a bad escape, TW_ELIMIT
 * if cap is too small. The query is decoded on demand, not stored. */
int tw_request_arg(const tw_request *req, const char *name, char *out, size_t cap, size_t *len);
/* 0 for HTTP/1.0, 1 for HTTP/1.1. */
int tw_request_version_minor(const tw_request *req);

/* The first field called name (any case); true and *value if present. */
bool tw_request_header(const tw_request *req, const char *name, tw_http_slice *value);
/* Every field line, in order, names as sent. */
const tw_http_header *tw_request_headers(const tw_request *req, size_t *n);
/* The host the client asked for: the absolute-form target's authority, or
 * the Host field ({NULL, 0} for an HTTP/1.0 request without one). */
tw_http_slice tw_request_host(const tw_request *req);

/* Path segments, decoded (Twisted's prepath and postpath): "/a/b%2Fc/" has
 * segments "a", "b/c" and "". prepath holds those the walk consumed to reach
 * the rendering resource, postpath the rest (non-empty only below a leaf).
 * Out of range: {NULL, 0}. */
size_t tw_request_prepath_count(const tw_request *req);
tw_http_slice tw_request_prepath(const tw_request *req, size_t i);
size_t tw_request_postpath_count(const tw_request *req);
tw_http_slice tw_request_postpath(const tw_request *req, size_t i);

/* The client's address and ours (copied into *out). Returns 0 or
 * TW_ECLOSED once the connection is gone. */
int tw_request_peer(const tw_request *req, tw_address *out);
int tw_request_local(const tw_request *req, tw_address *out);
/* True when the connection is TLS (Twisted's isSecure). */
bool tw_request_is_secure(const tw_request *req);
/* The site, and the connection's transport (NULL once the connection is
 * lost). The transport is for inspection (options, addresses): writing to
 * it directly breaks the HTTP framing. */
tw_site *tw_request_site(const tw_request *req);
tw_transport *tw_request_transport(const tw_request *req);

/* ---- the body */

/* How the body was framed: TW_HTTP_BODY_NONE, _LENGTH (then *length holds
 * the Content-Length) or _CHUNKED. length may be NULL. */
tw_http_body tw_request_body_kind(const tw_request *req, uint64_t *length);

/* The whole body, for resources without stream_body: {ptr, len}, valid
 * until the request is finished (len 0 when there is none). */
tw_http_slice tw_request_body(const tw_request *req);

/* Receiving a body as it comes (resources with stream_body). */
typedef struct tw_body_ops {
    /* Body bytes, decoded (no chunk framing). data is borrowed for the
     * call. Any split is possible. */
    void (*data_received)(tw_request *req, const char *data, size_t len, void *arg);
    /* The body ended: reason NULL when it was complete, else why not: the
     * connection was lost (TW_ECONNECTION_LOST), a timeout (TW_ETIMEDOUT), a
     * malformed chunk (TW_EPROTO), or the request was finished before its
     * body (TW_ECANCELED: called from inside tw_request_finish, after which
     * the request must not be used). The last call; always made once
     * read_body succeeded. Optional. */
    void (*body_end)(tw_request *req, const tw_failure *reason, void *arg);
} tw_body_ops;

/* Starts delivering the body to ops (borrowed, with arg, until body_end).
 * Sends "100 Continue" first when the client asked for it. Deliveries begin
 * after the current callback returns (never inside this call). A request
 * without a body gets body_end(NULL) the same way. Returns 0, TW_EBUSY if
 * already called (or the body was collected), TW_ECLOSED. If the response is
 * finished while a body the resource never asked for is still arriving, the
 * server reads and drops it (then goes on with the next request), or closes
 * the connection when the client still waits for 100 Continue. */
int tw_request_read_body(tw_request *req, const tw_body_ops *ops, void *arg);

/* Flow control of the body (the connection's read side): pause stops
 * data_received until resume. Safe inside data_received. */
void tw_request_pause_body(tw_request *req);
void tw_request_resume_body(tw_request *req);
/* The body as a push producer (pause/resume above; stop_producing drops
 * the rest of the body and closes the connection after the response): to
 * register on the transport that consumes it, e.g. a proxy's upstream
 * connection. Valid as long as the request. */
tw_producer *tw_request_body_producer(tw_request *req);

/* ---- the response */

/* Sets the status (100-599; 100 and 101 are refused: the server sends 100
 * Continue itself). Reason phrases are the standard ones. Returns 0,
 * TW_EINVAL, or TW_EBUSY once the head was sent. Default 200. */
int tw_request_set_status(tw_request *req, int status);
int tw_request_status(const tw_request *req);

/* Sets a response field, replacing any of the same name (Twisted's
 * setHeader); add_header appends one more (Set-Cookie). name must be a
 * token, value visible ASCII, SP, HTAB or obs-text: CR, LF, NUL and other
 * controls are refused (TW_EINVAL) — no response splitting. Leading and
 * trailing blanks of value are dropped. Framing is the server's:
 * Transfer-Encoding is refused (TW_EINVAL); Content-Length must be a number
 * and works as tw_request_set_content_length; "Connection: close" closes
 * the connection after this response (other Connection values are
 * refused). Date and Server replace the server's own. Copies both strings.
 * Returns 0, TW_EINVAL, TW_ENOMEM, or TW_EBUSY once the head was sent.
 * The _n forms take lengths. */
int tw_request_set_header(tw_request *req, const char *name, const char *value);
int tw_request_add_header(tw_request *req, const char *name, const char *value);
int tw_request_set_header_n(tw_request *req, const char *name, size_t name_len, const char *value,
                            size_t value_len);
int tw_request_add_header_n(tw_request *req, const char *name, size_t name_len, const char *value,
                            size_t value_len);
/* A response field set so far (first of that name); true and *value. */
bool tw_request_response_header(const tw_request *req, const char *name, tw_http_slice *value);

/* Announces the body length: the body is then sent as is, with
 * Content-Length, and must be exactly that long (a short body at finish, or
 * a write past it, aborts the connection: the framing cannot be repaired).
 * Returns 0 or TW_EBUSY once the head was sent. */
int tw_request_set_content_length(tw_request *req, uint64_t length);

/* Writes body bytes (Twisted's request.write). The first write sends the
 * head — except that a first write of at most 16 KiB is held back until the
 * next write or the finish, so that a body written in one piece goes out
 * with Content-Length in a single system call with the head. Without a
 * Content-Length the body is chunked (HTTP/1.1) or delimited by closing the
 * connection (HTTP/1.0). Nothing is sent for HEAD, 204 and 304. Copies data
 * (write_ref lends it: release(arg) is called once it is no longer needed,
 * also on error). Writes never block; what the client does not take yet is
 * buffered: register a producer (below) to be paused above the transport's
 * high-water mark, or the connection is aborted past its write limit.
 * Returns 0, TW_ECLOSED (connection lost), TW_EINVAL (finished, or past the
 * Content-Length). */
int tw_request_write(tw_request *req, const void *data, size_t len);
int tw_request_write_ref(tw_request *req, const void *data, size_t len, tw_free_fn release,
                         void *arg);

/* Ends the response (Twisted's request.finish): sends what is held, the last
 * chunk, and moves the connection on to the next request (or closes it).
 * Then logs the request, fires notify_finish's deferred, and drops the
 * request: req must not be used after this call. Returns 0, or TW_ECLOSED
 * when the connection was lost (the request is released all the same), or
 * TW_EINVAL when already finished (a programming error, also logged). */
int tw_request_finish(tw_request *req);

/* Status, Content-Type (NULL: none), the body, finish: the whole answer in
 * one call and, when the connection is idle, one system call. Returns as
 * tw_request_finish, or TW_EBUSY (nothing done) once the head was sent or body
 * bytes were written. */
int tw_request_respond(tw_request *req, int status, const char *content_type, const void *body,
                       size_t len);

/* An HTML error page for status (Twisted's ErrorPage), with detail
 * (HTML-escaped; may be NULL) as its text, then finish. Returns as
 * tw_request_respond. */
int tw_request_respond_error(tw_request *req, int status, const char *detail);

/* A redirect (301, 302, 303, 307, 308) to location (checked like a header
 * value), with a small HTML body, then finish. */
int tw_request_redirect(tw_request *req, int status, const char *location);

/* Sends len bytes of the file fd from offset as the body, then finishes
 * the request: with sendfile(2) over plain TCP and Unix sockets, otherwise
 * (TLS) by reading the file in pieces; either way only as fast as the
 * client reads, in constant memory. A file of at most 16 KiB is read at
 * once and goes out with the head in one writev. Sets the Content-Length to
 * len (one set before must equal it). fd must be a regular file opened for
 * reading; it is taken: closed when done, and on every error. A file that
 * shrinks under the server aborts the connection. For HEAD, 204 and 304 only
 * the head is sent. Returns 0: the request is finished now or later, and req
 * must not be used any more. Otherwise nothing was sent and the request is
 * not finished (the caller answers, e.g. tw_request_respond_error): TW_EBUSY
 * (the head was already sent, or a producer is registered), TW_EINVAL
 * (finished, or a Content-Length that is not len, or a small file shorter
 * than len), TW_ECLOSED, TW_ENOMEM, or -errno from reading a small file. */
int tw_request_send_file(tw_request *req, int fd, uint64_t offset, uint64_t len);

/* Twisted's registerProducer: the producer is paused while the client's
 * buffer is above the transport's high-water mark and resumed when it
 * drains; a non-streaming (pull) producer gets resume_producing each time
 * the buffer drains. The producer is borrowed until unregistered, until
 * the request is finished (which unregisters it), or until the connection
 * is lost (it then gets stop_producing). Returns 0, TW_EBUSY (one is
 * registered), TW_ECLOSED. */
int tw_request_register_producer(tw_request *req, tw_producer *p, bool streaming);
void tw_request_unregister_producer(tw_request *req);

/* Twisted's notifyFinish: a deferred (one reference for the caller) that
 * fires with no value once the request is finished and its response handed
 * to the transport, or fails (TW_ECONNECTION_LOST, or TW_ETIMEDOUT) when the
 * connection is lost first. NULL when out of memory. */
tw_deferred *tw_request_notify_finish(tw_request *req);

/* True once the status line and headers were sent. */
bool tw_request_head_sent(const tw_request *req);
/* True for HEAD requests (their body is not sent). */
bool tw_request_is_head(const tw_request *req);
/* Body bytes handed to the transport so far (for HEAD: that would have
 * been). */
uint64_t tw_request_bytes_sent(const tw_request *req);

/* =================================================================== sites */

typedef struct tw_site_options {
    /* Parser limits (see twirl/http_parser.h). limits.max_body_bytes bounds
     * collected bodies (413 past it) and streamed ones whose length is
     * announced; default 1 MiB. Copied. */
    tw_http_limits limits;
    /* Seconds. 0 disables one. */
    double header_timeout;  /* from a request's first byte to its last head byte: 20 */
    double body_timeout;    /* longest silence while a body is being read: 30 */
    double idle_timeout;    /* keep-alive: idle between requests: 15 */
    double linger_timeout;  /* after an error reply, reading and dropping before closing: 2 */
    size_t max_connections; /* over it, new connections are closed at once: 10000 (0: none) */
    size_t max_requests;    /* per connection, then Connection: close: 0 = unlimited */
    /* The Server field: "twirl" by default; "" sends none. Copied. */
    const char *server_name;
    /* Where requests are logged in the combined log format (borrowed; it
     * must outlive the site). NULL: no log. */
    tw_access_log *access_log;
    /* Wall-clock source for Date and the log (tests); NULL: the system's. */
    int64_t (*wall_clock)(void *arg); /* seconds since the epoch */
    void *wall_clock_arg;
} tw_site_options;

/* Fills o with the defaults above. */
void tw_site_options_init(tw_site_options *o);

/* Makes a site serving root on reactor r. Takes the caller's reference to
 * root. opts may be NULL (defaults); it is copied. Returns 0 and stores the
 * site (the caller's: tw_site_free), TW_EINVAL, or TW_ENOMEM (root's
 * reference is dropped all the same). */
int tw_site_new(tw_reactor *r, tw_resource *root, const tw_site_options *opts, tw_site **out);

/* The factory to listen with (tw_listen, tw_endpoint_listen). Valid as long
 * as the site. */
tw_factory *tw_site_factory(tw_site *s);

/* Connections open now. */
size_t tw_site_connection_count(const tw_site *s);
tw_reactor *tw_site_reactor(const tw_site *s);
tw_resource *tw_site_root(const tw_site *s); /* borrowed */

/* Frees the site. Stop the ports that listen with it first. Connections
 * still open are aborted; the memory is released once the last of them
 * is lost (a later loop turn) or when the reactor is freed. Requests still
 * unfinished see TW_ECLOSED and must still be finished. NULL is a no-op. */
void tw_site_free(tw_site *s);

/* ============================================================ static files */

typedef struct tw_static_options {
    /* Files tried, in order, for a directory: "index.html" by default
     * (NULL-terminated array, borrowed; an empty array: none). */
    const char *const *index_files;
    bool show_hidden;         /* serve names starting with '.' (default: 404) */
    bool no_listing;          /* 403 instead of a directory listing */
    const char *default_type; /* for unknown extensions: "application/octet-stream" */
    /* How long an opened file's metadata may be reused before it is checked
     * again, in seconds (an open-file cache, as nginx's open_file_cache):
     * 1.0 by default; 0 checks every request. */
    double cache_valid;
    size_t cache_entries; /* 0: 64 */
} tw_static_options;

void tw_static_options_init(tw_static_options *o);

/* Twisted's static.File: a leaf resource serving path (a directory, or one
 * file) for GET and HEAD. Files go out with sendfile(2) where possible;
 * byte ranges (206, 416; several at once as multipart/byteranges, up to 16
 * ranges and 256 KiB, else the whole file), If-None-Match and
 * If-Modified-Since (304), ETag, Last-Modified, Content-Type from the MIME
 * table, the index file of a directory, or an HTML listing of it (names
 * escaped); a directory asked without its trailing '/' is redirected to it.
 * Names starting with '.' are hidden by default. No request reaches
 * outside the directory: "..", ".", empty inner segments, encoded '/' or
 * '\\', backslashes, NUL and control bytes get 404 (or 400), and symbolic
 * links are followed only while they stay beneath it (openat2
 * RESOLVE_BENEATH). path is copied; opts may be
 * NULL (borrowed for the call; index_files must outlive the resource).
 * Returns 0 and stores a resource with one reference (the caller's),
 * TW_ENOTFOUND / -errno when path cannot be opened, TW_ENOMEM. */
int tw_static_file_new(const char *path, const tw_static_options *opts, tw_resource **out);

/* ============================================================== MIME types */

/* The media type for a file name, by its last extension, ignoring case
 * ("text/html" for "a/index.HTML"): from /etc/mime.types (or the file
 * $TWIRL_MIME_TYPES names) when present, and from a built-in table of the
 * common web types for what that file lacks or when it is absent. NULL
 * when unknown. Thread-safe: the table is read once per process, on first
 * use. The string is static. */
const char *tw_mime_type(const char *name, size_t len);

/* ============================================================== access log */

/* Opens path for appending ("-": standard output). The log is buffered and
 * written at least once a second by the sites using it, and when flushed or
 * freed. Returns 0 and stores it (the caller's), or -errno. */
int tw_access_log_open(const char *path, tw_access_log **out);
/* A log writing to fd; owns_fd closes it at free. */
int tw_access_log_new_fd(int fd, bool owns_fd, tw_access_log **out);
/* Writes out what is buffered. Returns 0 or -errno. */
int tw_access_log_flush(tw_access_log *l);
/* Flushes and frees. NULL is a no-op. Free it after the sites that use it. */
void tw_access_log_free(tw_access_log *l);

/* One request in the combined log format, as the server logs it when the
 * request is finished:
 *   127.0.0.1 - - [22/Nov/2026:07:55:14 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/7.88"
 * Quotes, backslashes and bytes outside printable ASCII in the quoted
 * fields are escaped (\" \\ \xHH). Writes at most cap bytes (NUL-terminated)
 * and returns the length it needed, like snprintf. */
size_t tw_access_log_format(const tw_request *req, char *buf, size_t cap);

/* ========================================================= reverse proxy */

/* What a reverse proxy resource does besides forwarding. */
typedef struct tw_proxy_options {
    /* The upstream connection pool (see twirl/web_client.h), copied.
     * tw_proxy_options_init starts from tw_agent_options_init and changes:
     * connect_timeout 10 s, response_timeout 60 s, max_per_host 0 (no
     * limit: each client request has at most one upstream exchange, so the
     * site's max_connections bounds them), max_idle_per_host 64, and
     * limits.max_body_bytes UINT64_MAX (bodies of any size stream
     * through). endpoint_for may point the pool anywhere (tests). */
    tw_agent_options agent;
    /* Seconds the upstream may stay silent while its response body is being
     * read and the client is taking it (nginx's proxy_read_timeout); past it
     * the response is cut: the client's connection is aborted. The wait
     * for the response head is agent.response_timeout. Default 60; 0: no
     * limit. */
    double read_timeout;
    /* false (the default, as Twisted's ReverseProxyResource): the Host
     * field sent upstream names the upstream (the URL's host[:port]).
     * true: the client's Host is passed on (nginx's proxy_set_header Host
     * $host), for upstreams that serve several names. */
    bool keep_host;
    /* true: add no X-Forwarded-For / -Proto / -Host fields. */
    bool no_forwarded;
} tw_proxy_options;

/* Fills o with the defaults above. */
void tw_proxy_options_init(tw_proxy_options *o);

/* Twisted's ReverseProxyResource: a leaf that forwards every request that
 * reaches it to the upstream at url ("http://host:port/path", or https;
 * no query, no fragment), with the twirl HTTP client and its keep-alive
 * pool. Mounted as child "api" of the root, a request for
 * "/api/a/b%20c?x=1" goes to "<path>/a/b%20c?x=1": the part of the path
 * below the resource is appended to url's path as received (still
 * percent-encoded, so nothing the client encoded is ever decoded on the
 * way), and the query is kept. A trailing '/' of url's path is not
 * doubled ("http://u/" + "/a" is "http://u/a"); "/api" alone goes to url's
 * path itself ("/" when empty).
 *
 * Request fields: the hop-by-hop fields (Connection, Keep-Alive, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-*, and every field the
 * Connection field names) are not forwarded, nor are Expect (a client's
 * 100-continue is answered once the upstream connection is ready) and
 * Content-Length (the body's framing is the client's own: a length stays a
 * length, chunked stays chunked). Host names the upstream (see keep_host).
 * X-Forwarded-For gets the client's address appended to the list the
 * client sent (or is made with it), X-Forwarded-Proto says "http" or
 * "https" and X-Forwarded-Host the Host the client asked for (both replace
 * what the client sent).
 *
 * Response: status and fields as the upstream sent them, less the
 * hop-by-hop ones; the body keeps its Content-Length, or is re-framed by
 * this server (chunked). Location and cookies are not rewritten.
 *
 * Streaming, both ways, in bounded memory: the request body goes upstream
 * as it arrives (the resource reads it with stream_body: neither the
 * site's collecting nor any buffer of the proxy holds it), and reading the
 * client pauses while the upstream connection is full; the response body
 * goes to the client as it arrives, and reading the upstream pauses while
 * the client's connection is above its high-water mark. The site's
 * limits.max_body_bytes still bounds request bodies (413): raise it for
 * large uploads.
 *
 * Errors: the upstream cannot be reached (refused, no route, name lookup,
 * TLS), answers malformed (bad syntax, Content-Length with
 * Transfer-Encoding, a head over agent.limits, a 101 switch) or closes
 * before its head: 502 Bad Gateway. No connection within
 * agent.connect_timeout, or no response head within
 * agent.response_timeout: 504 Gateway Timeout. A failure after the
 * response head was sent aborts the client's connection (the framing
 * cannot say it). CONNECT is answered 405. The client going away cancels
 * the upstream request, or aborts the upstream connection if its body is
 * being read.
 *
 * The resource serves sites on reactor r only (requests from another
 * reactor get 500); it may be put in a tree like any other. Its pool lives
 * as long as the resource and the exchanges under way, and is closed when
 * r is freed first (as the twirl command does). opts may be NULL; it is
 * copied. Returns 0 and stores a resource with one reference (the
 * caller's), TW_EINVAL (not an http(s) URL, or one with a query or
 * fragment), or TW_ENOMEM. */
int tw_proxy_resource_new(tw_reactor *r, const char *url, const tw_proxy_options *opts,
                          tw_resource **out);

/* ========================================================= virtual hosts */

/* Twisted's NameVirtualHost: a resource that picks, by the host the client
 * asked for (the Host field, or an absolute-form target's authority), the
 * tree that answers the request. The name is compared ignoring case, its
 * port and one trailing dot dropped ("A.Test.:8080" is "a.test"); an IPv6
 * literal keeps its brackets ("[::1]"). The chosen resource answers the
 * same path the vhost was asked for, as if it stood in the vhost's place
 * (a leaf such as a static directory sees the whole rest of the path).
 * A host not in the map goes to the default resource, or gets 404 when
 * there is none. Children put on the vhost itself (put_child) are found
 * before any host is looked at, as in Twisted.
 *
 * default_host (may be NULL) is taken: the caller's reference. Returns 0
 * and stores a resource with one reference (the caller's), or TW_ENOMEM
 * (default_host's reference is dropped all the same). */
int tw_vhost_resource_new(tw_resource *default_host, tw_resource **out);

/* Twisted's addHost: requests for name (NUL-terminated; case and one
 * trailing dot are ignored; no port) go to r. Takes the caller's reference
 * to r; a resource already under that name is replaced. Returns 0,
 * TW_EINVAL (vhost is not a vhost resource; a name that is empty, starts
 * with '.', or holds ':' outside brackets, '/', a space or a control byte;
 * r's reference is dropped), TW_ENOMEM (the same). Not thread-safe; not
 * while another thread serves the tree. */
int tw_vhost_add_host(tw_resource *vhost, const char *name, tw_resource *r);

/* Twisted's removeHost. Returns 0, or TW_ENOTFOUND. */
int tw_vhost_remove_host(tw_resource *vhost, const char *name);

/* Replaces the default resource (taken; NULL: none, unknown hosts get
 * 404). Returns 0 or TW_EINVAL (not a vhost; r's reference is dropped). */
int tw_vhost_set_default(tw_resource *vhost, tw_resource *r);

#ifdef __cplusplus
}
#endif
#endif
