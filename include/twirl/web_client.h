/* twirl/web_client.h — the HTTP/1.1 client (twisted.web.client): agents,
 * responses with streamed bodies, request body producers, a keep-alive
 * connection pool, redirects and content decoding.
 *
 * An agent makes requests. The base agent (Twisted's Agent with an
 * HTTPConnectionPool) speaks HTTP/1.1 over TCP, or over TLS for https URLs
 * (the server's certificate is always verified, against the system's trust
 * store or the roots given in the options), and keeps connections alive for
 * the next request to the same scheme, host and port. Wrapping agents add
 * behaviour, as in Twisted: a redirect agent follows 3xx answers, a content
 * decoder agent asks for and undoes gzip/deflate.
 *
 *     tw_agent *base, *redirects, *agent;
 *     tw_agent_new(r, NULL, &base);
 *     tw_redirect_agent_new(base, 20, &redirects);
 *     tw_content_decoder_agent_new(redirects, NULL, &agent);
 *     tw_deferred *d = tw_agent_request(agent, "GET", "https://example.com/", NULL, 0, NULL);
 *     tw_deferred_add_callbacks(d, got_response, failed, NULL);  // value: tw_response *
 *     tw_deferred_unref(d);
 *     ...
 *     static tw_result got_response(tw_result *in, void *arg)
 *     {
 *         tw_response *resp = in->value.ptr;                  // borrowed from the chain
 *         printf("%d\n", tw_response_status(resp));
 *         return tw_chain(tw_read_body(resp, 1 << 20));       // value: tw_body_bytes *
 *     }
 *     ...
 *     tw_agent_free(agent); tw_agent_free(redirects); tw_agent_free(base);  // outer first
 *
 * A response arrives as soon as its head (status line and fields) has; its
 * body is then streamed to a consumer (tw_response_deliver_body: Twisted's
 * deliverBody) with backpressure — while the consumer is paused the
 * connection is not read — or collected up to a limit (tw_read_body:
 * Twisted's readBody). A connection goes back to the pool only once the
 * body was read to its end; a response dropped before that has its body
 * read and thrown away when little is left (up to 64 KiB), else its
 * connection is closed.
 *
 * Failures are tw_failure objects with domain TW_DOMAIN whose message names
 * the URL and the problem:
 *   TW_EINVAL           a bad argument: URL, method, header (no I/O done);
 *   TW_ETIMEDOUT        the connect or response timeout passed;
 *   TW_ECANCELED        the request or body was cancelled/stopped;
 *   TW_EPROTO           a malformed response (the parser's reason is in the
 *                       message) — the connection is closed; a bad
 *                       compressed body; a redirect without Location;
 *   TW_ELIMIT           a response head over the parser's limits, a body
 *                       over a read_body or decoding limit, too many
 *                       redirects (the message lists the chain);
 *   TW_ECONNECTION_LOST the connection ended before the response (or its
 *                       body) was complete; the cause says why;
 *   others              from connecting, with the endpoint's failure as
 *                       the cause: TW_EDNS, -ECONNREFUSED, TW_ETIMEDOUT;
 *                       a TLS handshake failure is TW_ECONNECTION_LOST
 *                       caused by the TLS failure (tw_tls_failure_reason
 *                       names it: unknown CA, wrong host name...).
 *
 * Threads: an agent, its requests and responses belong to the thread of
 * the reactor they were made on. Every function here is safe inside any
 * callback (the agent's own included) unless its comment says otherwise. */
#ifndef TWIRL_WEB_CLIENT_H
#define TWIRL_WEB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/deferred.h"
#include "twirl/endpoint.h"
#include "twirl/http_parser.h"
#include "twirl/reactor.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_agent tw_agent;
typedef struct tw_response tw_response;
typedef struct tw_body_producer tw_body_producer;
typedef struct tw_body_consumer tw_body_consumer;

/* ==================================================================== URLs */

/* An absolute http or https URL, split into slices of the caller's string
 * (nothing is copied or decoded). */
typedef struct tw_url {
    tw_http_slice scheme;    /* "http" or "https", as written (any case) */
    tw_http_slice host;      /* without the brackets of an IPv6 literal */
    tw_http_slice authority; /* host[:port] as written */
    tw_http_slice path;      /* from the first '/' (may be empty: means "/") */
    tw_http_slice query;     /* after '?' ({NULL, 0} when there is no '?') */
    tw_http_slice fragment;  /* after '#' ({NULL, 0} when there is none) */
    uint16_t port;           /* the explicit port, or 80 / 443 */
    bool https;
    bool ipv6; /* host was an IP literal in brackets */
} tw_url;

/* Parses url[0..len): scheme "http" or "https" (any case), "//", a host (a
 * name, IPv4 address or [IPv6] literal; no userinfo), an optional port
 * (1-65535), then path, query and fragment made of visible US-ASCII
 * (0x21-0x7E). Returns 0 and fills *out, or TW_EINVAL. */
int tw_url_parse(const char *url, size_t len, tw_url *out);

/* Resolves ref (a URL reference such as a Location field: absolute,
 * "//host/x", "/path", "../x", "?q") against the absolute base URL (RFC 3986
 * §5.2, dot segments removed), writing the NUL-terminated result into
 * out[0..cap). Bytes of ref outside 0x21-0x7E (spaces, UTF-8) are
 * percent-encoded, as browsers do. The base's fragment is never kept; the
 * result has ref's fragment, if any. Stores the length (without the NUL) in
 * *out_len and returns 0; TW_EINVAL if base is not an http(s) URL or the
 * result is not one (e.g. "ftp://x/"); TW_ELIMIT if cap is too small. */
int tw_url_join(const char *base, const char *ref, size_t ref_len, char *out, size_t cap,
                size_t *out_len);

/* ========================================================== body producers */

/* The length of a body whose size is not known in advance: it is sent with
 * the chunked transfer coding. */
#define TW_BODY_UNKNOWN_LENGTH UINT64_MAX

/* A request body (Twisted's IBodyProducer). The agent calls start_producing
 * once the connection is ready; the producer writes the body through the
 * consumer (tw_body_consumer_write), now or later, and fires the deferred it
 * returned once the whole body was written (value ignored), or fails it to
 * abandon the request. pause/resume follow the connection's write buffer
 * (the transport's high/low-water marks); stop_producing means the request
 * ended early (connection lost, cancelled, the server answered first): write
 * nothing more and never fire the deferred (it is dropped).
 *
 * Embed tw_body_producer first in your struct. The agent owns a producer it
 * was given: it calls ops->destroy (if set) exactly once, when it is done
 * with it — after the exchange, or at once if the request fails early. */
typedef struct tw_body_producer_ops {
    /* Returns a deferred (its reference is taken), or NULL when out of
     * memory. Required. */
    tw_deferred *(*start_producing)(tw_body_producer *p, tw_body_consumer *c);
    void (*pause_producing)(tw_body_producer *p);  /* optional */
    void (*resume_producing)(tw_body_producer *p); /* optional */
    void (*stop_producing)(tw_body_producer *p);   /* optional */
    /* Optional: make the next start_producing produce the body from its
     * start again; returns 0, or a negative code if it cannot. A producer
     * that can rewind may be replayed: for a retry on a stale pooled
     * connection and by the redirect agent for 307/308. */
    int (*rewind)(tw_body_producer *p);
    /* Optional: frees the producer (the struct itself included). */
    void (*destroy)(tw_body_producer *p);
} tw_body_producer_ops;

struct tw_body_producer {
    const tw_body_producer_ops *ops;
    /* Bytes the body will have (sent as Content-Length; the producer must
     * write exactly that many), or TW_BODY_UNKNOWN_LENGTH (sent chunked). */
    uint64_t length;
};

/* Writes body bytes (copied, or sent at once). Returns 0; TW_ECLOSED once
 * the request has ended (the producer should stop); TW_EINVAL past the
 * declared length (the request then fails). len 0 writes nothing. Only
 * between start_producing and the firing of its deferred. */
int tw_body_consumer_write(tw_body_consumer *c, const void *data, size_t len);
/* The reactor the request runs on (for a producer's timers). */
tw_reactor *tw_body_consumer_reactor(const tw_body_consumer *c);

/* A producer of len bytes copied from data (Twisted's FileBodyProducer of a
 * BytesIO); rewindable. Stores it (the caller's, until handed to a request;
 * tw_body_producer_free if never used) and returns 0, or TW_ENOMEM. */
int tw_body_producer_new_bytes(const void *data, size_t len, tw_body_producer **out);

/* A producer reading the file descriptor fd (taken: closed by destroy) from
 * its current offset to its end (Twisted's FileBodyProducer): 64 KiB at a
 * time, a few reads per loop turn, paused with the connection. The length
 * is the rest of a regular file (changing it meanwhile fails the request),
 * otherwise unknown (chunked). Rewindable when fd is seekable. Returns 0,
 * TW_ENOMEM or -errno from fstat/lseek (fd is then not taken). */
int tw_body_producer_new_fd(int fd, tw_body_producer **out);

/* Destroys a producer that was never handed to a request. NULL is a
 * no-op. */
void tw_body_producer_free(tw_body_producer *p);

/* ================================================================= agents */

/* Makes the endpoint to connect to for scheme/host/port (Twisted's
 * endpointFactory). host is borrowed for the call. Returns 0 and stores an
 * endpoint the agent owns (it frees it when it no longer needs it), or a
 * negative code (the requests for that host fail with it). */
typedef int (*tw_agent_endpoint_fn)(tw_reactor *r, bool https, const char *host, uint16_t port,
                                    void *arg, tw_client_endpoint **out);

typedef struct tw_agent_options {
    /* Seconds a request may wait for a connection: a free slot under
     * max_per_host, the name lookup, TCP connect and TLS handshake.
     * Default 30; 0: no limit. */
    double connect_timeout;
    /* Seconds from the moment the request (head and body) was handed to
     * the connection until the response head has arrived. Default 60; 0:
     * no limit. */
    double response_timeout;
    /* Connections per (scheme, host, port), busy and idle together;
     * requests beyond wait, first come first served. Default 8; 0: no
     * limit. */
    size_t max_per_host;
    /* Idle connections kept per (scheme, host, port) (Twisted's
     * maxPersistentPerHost). Default 2; 0 keeps none. */
    size_t max_idle_per_host;
    /* Seconds an idle connection is kept (Twisted's
     * cachedConnectionTimeout). Default 240; 0 keeps none. */
    double idle_timeout;
    /* false: HTTP/1.1 keep-alive. true (Twisted's persistent=False): each
     * request says "Connection: close" and gets a connection of its own. */
    bool no_persistent;
    /* Limits on response heads (see twirl/http_parser.h); max_body_bytes
     * bounds any streamed response body (default: none, UINT64_MAX).
     * Copied. */
    tw_http_limits limits;
    /* https: a PEM file or directory of CA certificates to trust instead of
     * the system store (Twisted's trustRoots). Copied. NULL: the system's. */
    const char *trust_roots;
    /* A User-Agent field added to requests that have none. Copied. NULL
     * (the default): none, as Twisted's Agent. */
    const char *user_agent;
    /* Where to connect (Twisted's Agent.usingEndpointFactory). NULL: the
     * "tcp:" endpoint for http and the "tls:" endpoint (host name checked
     * against the certificate) for https. Host names are looked up as the
     * endpoints do (twirl/endpoint.h: the reactor's resolver, or the hook
     * tw_endpoint_set_resolver installs) and raced Happy Eyeballs style. */
    tw_agent_endpoint_fn endpoint_for;
    void *endpoint_arg;
} tw_agent_options;

/* Fills o with the defaults above. */
void tw_agent_options_init(tw_agent_options *o);

/* Makes a base agent (Twisted's Agent with its own HTTPConnectionPool) on
 * reactor r. opts may be NULL (defaults); it is copied. Stores the agent
 * (the caller's: tw_agent_free) and returns 0, or TW_EINVAL (a negative
 * timeout), TW_ENOMEM. */
int tw_agent_new(tw_reactor *r, const tw_agent_options *opts, tw_agent **out);

/* Twisted's RedirectAgent (browser-like): follows 301, 302, 303, 307 and
 * 308 answers that carry a Location, resolved against the request's URL.
 * 303 turns any method but HEAD into GET, and 301/302 turn POST into GET,
 * both without a body (and without Content-* fields); 307 and 308 keep the
 * method and the body — the producer is rewound, and a producer that
 * cannot rewind makes the 307/308 response itself the result. When the
 * scheme, host or port changes, Authorization, Proxy-Authorization and
 * Cookie are not sent on. Each redirect response's body is dropped; it
 * stays reachable from the final one (tw_response_previous). More than
 * max_redirects (0: 20, Twisted's) fail with TW_ELIMIT naming every URL of
 * the chain; a redirect without Location fails with TW_EPROTO. inner is
 * borrowed: free this agent first. Returns 0, TW_EINVAL, TW_ENOMEM. */
int tw_redirect_agent_new(tw_agent *inner, int max_redirects, tw_agent **out);

typedef struct tw_content_decoder_options {
    /* Decoded body bytes allowed per response; past it the body fails with
     * TW_ELIMIT and the connection is closed (a compression bomb costs
     * nothing more). 0: 64 MiB. */
    uint64_t max_decoded_bytes;
} tw_content_decoder_options;

/* Twisted's ContentDecoderAgent for gzip (also "x-gzip") and deflate
 * (zlib-wrapped, or raw as some servers send it): asks with
 * "Accept-Encoding: gzip, deflate" unless the request has its own
 * Accept-Encoding, and decodes a response whose Content-Encoding ends with
 * one of those, streaming, in constant memory; its Content-Encoding field
 * then lists only the codings left (or is gone) and Content-Length is
 * dropped. Other codings pass through untouched. A corrupt or truncated
 * compressed body ends the body with TW_EPROTO. inner is borrowed: free
 * this agent first. opts may be NULL. Returns 0, TW_EINVAL, TW_ENOMEM. */
int tw_content_decoder_agent_new(tw_agent *inner, const tw_content_decoder_options *opts,
                                 tw_agent **out);

/* Makes a request (Twisted's IAgent.request). method is a token ("GET",
 * "POST", any extension; CONNECT is refused); url an absolute http or
 * https URL (the fragment is not sent); headers[0..nheaders) extra fields
 * (may be NULL), copied: Host is computed unless given; Content-Length and
 * Transfer-Encoding are the agent's (refused); "Connection: close" makes
 * this connection's last request. body may be NULL (POST, PUT and PATCH
 * then send "Content-Length: 0"); it is taken (see tw_body_producer).
 *
 * Returns a deferred (one reference, the caller's) that fires with the
 * response once its head has arrived: value.ptr is the tw_response *, with
 * tw_response_unref as its destructor, so the chain drops it unless a
 * callback moves it out (tw_result_move) to keep it. Or it fails (see the
 * top of this file); it is already failed on return for bad arguments.
 * 1xx interim answers are skipped. Cancelling it before the head arrived
 * aborts the connection (or the attempt, or leaves the queue) and fails it
 * with TW_ECANCELED. A request on a pooled connection that the server had
 * closed meanwhile is retried once on a new connection when it is
 * idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and its body is
 * absent or rewindable. Returns NULL only when out of memory (body is then
 * destroyed). The deferred may already have fired on return (bad
 * arguments, an endpoint that failed at once); the body's start_producing
 * may run before this returns, when a pooled connection is free. */
tw_deferred *tw_agent_request(tw_agent *a, const char *method, const char *url,
                              const tw_http_header *headers, size_t nheaders,
                              tw_body_producer *body);

/* Closes the pool's idle connections (Twisted's closeCachedConnections);
 * requests under way go on. Wrapping agents pass it on. */
void tw_agent_close_idle(tw_agent *a);

/* Frees the agent. A base agent aborts its connections: requests still
 * waiting fail with TW_ECANCELED, bodies being read end with it (those
 * callbacks run inside this call). Wrapping agents must be freed before the
 * agents they wrap; agents and the responses they gave must be gone before
 * their reactor is freed. NULL is a no-op. */
void tw_agent_free(tw_agent *a);

/* The reactor of the agent. */
tw_reactor *tw_agent_reactor(const tw_agent *a);

/* ============================================================== responses */

/* A response is reference counted: the request's deferred gives its
 * reference to the chain. Fields are read-only and live as long as the
 * response. */
tw_response *tw_response_ref(tw_response *r);
/* Drops a reference; the last one frees the response (and, when its body
 * was not read to the end, drops the body: read and discarded if little is
 * left, else the connection is closed). NULL is a no-op. The destructor to
 * give tw_value. */
void tw_response_unref(void *response);

int tw_response_status(const tw_response *r);
/* The reason phrase as sent (may be empty). */
tw_http_slice tw_response_reason(const tw_response *r);
/* 0 for HTTP/1.0, 1 for HTTP/1.1. */
int tw_response_version_minor(const tw_response *r);
/* The first field called name (any case): true and *value, else false. */
bool tw_response_header(const tw_response *r, const char *name, tw_http_slice *value);
/* Every field line, in order, names as sent. */
const tw_http_header *tw_response_headers(const tw_response *r, size_t *n);
/* Twisted's response.length: true and *len when the body's length is known
 * (Content-Length, or 0 for a response without body), else false. */
bool tw_response_length(const tw_response *r, uint64_t *len);
/* The URL this response answers (after redirects, the last one) and its
 * request's method. NUL-terminated, borrowed. */
const char *tw_response_url(const tw_response *r);
const char *tw_response_method(const tw_response *r);
/* The redirect response that led to this one (Twisted's previousResponse),
 * or NULL. Borrowed. */
const tw_response *tw_response_previous(const tw_response *r);

/* --------------------------------------------------------- the body */

/* Receives a response body (Twisted's deliverBody protocol). */
typedef struct tw_response_body_ops {
    /* Body bytes (decoded: no chunk framing). data is borrowed for the
     * call; any split is possible. */
    void (*data_received)(tw_response *r, const char *data, size_t len, void *arg);
    /* The body ended: reason NULL when it was complete (Twisted's
     * ResponseDone; a body delimited by the server closing the connection
     * is complete when it closed cleanly), else why not (borrowed). The last
     * call, made exactly once. Optional. */
    void (*body_end)(tw_response *r, const tw_failure *reason, void *arg);
} tw_response_body_ops;

/* Starts delivering the body to ops (borrowed, with arg, until body_end).
 * Deliveries begin after the current callback returns (never inside this
 * call); bytes that arrived before wait for it, with the connection paused.
 * A response without body gets body_end(NULL) the same way. The response
 * is kept alive until body_end returned. Returns 0, TW_EBUSY if already
 * called, TW_EINVAL without ops or data_received. */
int tw_response_deliver_body(tw_response *r, const tw_response_body_ops *ops, void *arg);

/* Flow control of the body: pause stops data_received (the connection is
 * no longer read) until resume; deliveries resume after the current
 * callback returns. Safe inside data_received. */
void tw_response_pause_body(tw_response *r);
void tw_response_resume_body(tw_response *r);
/* Stops the body (the consumer's transport.stopProducing): the connection
 * is aborted and body_end follows with TW_ECANCELED — after the current
 * callback returns, or once deliver_body is called. No-op once the body
 * ended. */
void tw_response_stop_body(tw_response *r);
/* The body as a push producer (pause, resume, stop above), to register on
 * the transport that consumes it, e.g. a proxy's downstream connection.
 * Valid as long as the response. */
tw_producer *tw_response_body_producer(tw_response *r);

/* A whole body: len bytes, followed by a NUL that len does not count.
 * Free with free(). */
typedef struct tw_body_bytes {
    size_t len;
    char data[];
} tw_body_bytes;

/* Twisted's readBody: collects the body. Returns a deferred (one reference,
 * the caller's) that fires with a tw_body_bytes * (value.free = free), or
 * fails: TW_ELIMIT once more than max_bytes arrived (0: 16 MiB; the body is
 * then stopped), or the body's own failure (its reason as the cause).
 * Cancelling it stops the body. Calls tw_response_deliver_body, so at most
 * once per response. NULL when out of memory. */
tw_deferred *tw_read_body(tw_response *r, size_t max_bytes);

#ifdef __cplusplus
}
#endif
#endif
