/* twirl/endpoint.h — endpoints and endpoint strings (Twisted's
 * serverFromString / clientFromString, IStreamServerEndpoint,
 * IStreamClientEndpoint).
 *
 * An endpoint is a place to listen or to connect to, described by a string
 * in Twisted's grammar:
 *
 *     tcp:8080                        tcp:port=8080:interface=127.0.0.1:backlog=50
 *     tcp6:8080:interface=\:\:1       unix:/run/app.sock:mode=660:lockfile=1
 *     tcp:host=127.0.0.1:port=80:timeout=5:bindAddress=127.0.0.1
 *     tcp:localhost:80                unix:path=/run/app.sock:timeout=2
 *     tcp:host=example.com:port=443:attemptDelay=0.1
 *
 * Grammar (exactly Twisted's): fields are separated by ':'; a field is a
 * positional argument, or key=value (only the first '=' splits; the value
 * may contain '='); a backslash makes the next character literal (\: \= \\).
 * The first positional field is the type (case-insensitive); positional and
 * keyword fields may come in any order and fill a type's parameters as a
 * Python call would (a parameter given both ways is an error; of a key given
 * twice, the last wins).
 *
 * One leniency over Twisted: an IPv6 address written without escaping its
 * colons as the value of interface=, host= or bindAddress= is read whole
 * ("tcp:8080:interface=::1", "tcp:host=::1:port=80"). Such strings are
 * errors in Twisted, so no string Twisted accepts with a meaning is read
 * differently.
 *
 * One extension: tcp and tcp6 servers take reusePort=1 (SO_REUSEPORT), so
 * several processes or reactors can share a port and the kernel spreads
 * connections among them (what `twirl --workers N` does).
 *
 * Types are looked up in a registry that other modules extend
 * (tw_endpoint_register_server_type): tcp, tcp6 and unix are built in for
 * servers; tcp and unix for clients. ("udp" is not an endpoint type, as in
 * Twisted: datagram ports are not streams; see twirl/udp.h.)
 *
 * Errors: a description that cannot be used gets TW_ESYNTAX and a message in
 * the caller's buffer that quotes the description and names the bad part:
 * "tcp:port=abc: bad port 'abc' (0-65535)". Messages are cut to fit errlen;
 * err may be NULL (errlen 0). */
#ifndef TWIRL_ENDPOINT_H
#define TWIRL_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/deferred.h"
#include "twirl/log.h"
#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/tcp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits on a description. Longer ones, or ones with more fields, are
 * refused with TW_ESYNTAX. */
enum {
    TW_ENDPOINT_MAX_BYTES = 4096,
    TW_ENDPOINT_MAX_FIELDS = 64,
    /* Enough for every message this module writes (they quote at most 120
     * bytes of the description and of the bad value). */
    TW_ENDPOINT_ERR_MAX = 512,
    /* A host name's addresses tried at most, in Happy Eyeballs order; the
     * rest of a longer answer is ignored. */
    TW_ENDPOINT_MAX_ADDRESSES = 32
};

/* Happy Eyeballs' connection attempt delay, in seconds: RFC 8305's
 * recommended 250 ms by default (Twisted's HostnameEndpoint uses 0.3), and
 * the bounds accepted (RFC 8305 §8: never below 10 ms). */
#define TW_ENDPOINT_ATTEMPT_DELAY     0.25
#define TW_ENDPOINT_ATTEMPT_DELAY_MIN 0.01
#define TW_ENDPOINT_ATTEMPT_DELAY_MAX 60.0

/* ------------------------------------------------------------ endpoints */

typedef struct tw_server_endpoint tw_server_endpoint;
typedef struct tw_client_endpoint tw_client_endpoint;

/* What an endpoint type implements; embed the base first in your own
 * struct (as a protocol embeds tw_protocol). */
typedef struct tw_server_endpoint_ops {
    const char *type; /* "tcp", "unix", "ssl"...: for messages */
    /* Listens; the contract of tw_endpoint_listen_err. */
    int (*listen)(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err, size_t errlen);
    /* Frees the endpoint (the struct itself included). Optional: NULL
     * means free(ep). */
    void (*free)(tw_server_endpoint *ep);
} tw_server_endpoint_ops;

struct tw_server_endpoint {
    const tw_server_endpoint_ops *ops;
    tw_reactor *reactor;
    /* The description it was made from (owned by the library, freed with
     * the endpoint); NULL for endpoints made directly. */
    char *description;
};

typedef struct tw_client_endpoint_ops {
    const char *type;
    /* Connects; the contract of tw_endpoint_connect. */
    tw_deferred *(*connect)(tw_client_endpoint *ep, tw_factory *f);
    void (*free)(tw_client_endpoint *ep); /* optional: NULL means free(ep) */
} tw_client_endpoint_ops;

struct tw_client_endpoint {
    const tw_client_endpoint_ops *ops;
    tw_reactor *reactor;
    char *description; /* as for servers */
};

/* Parses a server description (Twisted's serverFromString). Stores an
 * endpoint the caller owns (free with tw_server_endpoint_free) and returns
 * 0; or returns TW_ESYNTAX with the reason in err, or TW_ENOMEM. Nothing is
 * opened yet. Safe inside callbacks. */
int tw_server_endpoint_from_string(tw_reactor *r, const char *description, tw_server_endpoint **out,
                                   char *err, size_t errlen);

/* Listens on the endpoint with factory f (borrowed, as by tw_listen: keep it
 * until the port stopped and its connections are gone). Synchronous: returns
 * 0 and stores the port (the caller's until tw_port_stop_listening), or a
 * negative code: -EADDRINUSE for a busy address, -EACCES, TW_ENOMEM...
 * The _err form also writes a message naming the address
 * ("tcp:8080: cannot listen on 0.0.0.0:8080: Address already in use").
 * The endpoint may be listened on again, or freed while its ports live. */
int tw_endpoint_listen(tw_server_endpoint *ep, tw_factory *f, tw_port **out);
int tw_endpoint_listen_err(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err,
                           size_t errlen);

/* Frees an endpoint (not the ports it made). NULL is a no-op. */
void tw_server_endpoint_free(tw_server_endpoint *ep);

/* Parses a client description (Twisted's clientFromString). As for
 * servers. A host name is checked for form only; it is looked up when
 * connecting (see "Host names" below).
 *
 * tcp takes host, port (positional or keywords), and the keywords timeout
 * (seconds per connection attempt, default 30), bindAddress (a numeric
 * address to bind first) and attemptDelay (seconds between Happy Eyeballs
 * attempts for a host name, 0.01 to 60, default 0.25). attemptDelay is
 * HostnameEndpoint's parameter; Twisted's own "tcp" strings do not take
 * it. */
int tw_client_endpoint_from_string(tw_reactor *r, const char *description, tw_client_endpoint **out,
                                   char *err, size_t errlen);

/* Connects with factory f (borrowed until the connection is lost or the
 * attempt failed). Returns a deferred (one reference for the caller; NULL
 * only when out of memory) that fires from the loop (or has already fired
 * on return when the outcome was known at once, e.g. a name the resolver
 * refused without asking anyone):
 *  - with the connected protocol (value.ptr is the tw_protocol *, no
 *    destructor: the library owns protocols) right after its
 *    connection_made returned — valid until its connection_lost;
 *  - or with the connection's failure (refused, timed out, unreachable,
 *    TW_EDNS for a name that could not be resolved, TW_ECANCELED when f's
 *    build_protocol returned NULL). For a host name whose every address
 *    failed, the failure's message lists each address tried and its
 *    reason ("cannot connect to 'example.com' port 80: every address
 *    failed: [2001:db8::1]:80: timed out after 30 s; 192.0.2.1:80:
 *    Connection refused"); its code and cause are the last failure's.
 * Cancelling it (tw_deferred_cancel) before it fired stops the name lookup
 * and every connection attempt; it then fails with TW_ECANCELED (the
 * attempts' sockets are closed before tw_deferred_cancel returns). As in Twisted,
 * f's own client hooks (started_connecting, client_connection_failed,
 * client_connection_lost) are not called — the deferred reports instead —
 * while start_factory/stop_factory are. The protocols f builds have
 * p->factory == f. The endpoint may be freed while attempts are under way. */
tw_deferred *tw_endpoint_connect(tw_client_endpoint *ep, tw_factory *f);

void tw_client_endpoint_free(tw_client_endpoint *ep);

/* ------------------------------------------------------------ built-in types */

/* The endpoints behind "tcp", "tcp6" and "unix", for code that has the
 * parts already (Twisted's TCP4ServerEndpoint, UNIXServerEndpoint...).
 * Stream server: addr is AF_INET, AF_INET6 or AF_UNIX; opts may be NULL
 * (both are copied). Client TCP: host is numeric, "localhost" (127.0.0.1)
 * or a host name, connected to as tw_hostname_endpoint_new describes with
 * the default attempt delay; opts may be NULL (copied, bind included; its
 * timeout is per attempt). Client Unix:
 * check_lock (Twisted's checkPID) refuses to connect unless a live server
 * holds PATH.lock. Return 0 and store an endpoint the caller owns,
 * TW_EINVAL or TW_ENOMEM. */
int tw_stream_server_endpoint_new(tw_reactor *r, const tw_address *addr,
                                  const tw_listen_options *opts, tw_server_endpoint **out);
int tw_tcp_client_endpoint_new(tw_reactor *r, const char *host, uint16_t port,
                               const tw_connect_options *opts, tw_client_endpoint **out);

/* Twisted's HostnameEndpoint. A numeric host (or "localhost") is connected
 * to directly. A host name is resolved for both families at once (see
 * "Host names" below); its addresses are reordered so the families
 * alternate, IPv6 first (RFC 8305 §4), and only those of bindAddress's
 * family are kept when opts->bind is set; then Happy Eyeballs (RFC 8305):
 * one connection attempt starts, and the next starts when attempt_delay
 * seconds pass or the latest attempt fails, whichever comes first, until
 * one connects. That one wins: only it gets a protocol from f; the other
 * attempts are cancelled, and one that connects too late is closed without
 * a protocol ever being built. opts->timeout limits each attempt.
 * attempt_delay 0 means TW_ENDPOINT_ATTEMPT_DELAY; otherwise it must lie
 * within [TW_ENDPOINT_ATTEMPT_DELAY_MIN, TW_ENDPOINT_ATTEMPT_DELAY_MAX].
 * Returns 0 and stores an endpoint the caller owns, TW_EINVAL or
 * TW_ENOMEM. Set the per-attempt debug log (domain "endpoint") to watch
 * the attempts start, fail and get cancelled. */
int tw_hostname_endpoint_new(tw_reactor *r, const char *host, uint16_t port,
                             const tw_connect_options *opts, double attempt_delay,
                             tw_client_endpoint **out);
int tw_unix_client_endpoint_new(tw_reactor *r, const char *path, const tw_connect_options *opts,
                                bool check_lock, tw_client_endpoint **out);

/* ------------------------------------------------------------ host names */

/* How client endpoints look names up. By default with the reactor's
 * resolver (twirl/resolver.h: tw_resolve for both families, which reads
 * /etc/hosts and resolv.conf; tw_resolver_configure changes its servers).
 * A lookup failure fails the connect with TW_EDNS, its cause the lookup's
 * failure (TW_EDNS, TW_ETIMEDOUT...).
 *
 * A hook replaces that, for every reactor (tests, a custom name service):
 * resolve(r, host, port, arg) returns a deferred (its reference is taken:
 * the hook's producer keeps its own while the lookup runs) that fires with
 * a tw_address_list (twirl/resolver.h; value.free must be
 * tw_address_list_free) holding IPv4 and/or IPv6 addresses — ports and
 * order do not matter: the endpoint sets the port and orders them — or
 * fails (domain twirl, code TW_EDNS, or another code). It must honour
 * tw_deferred_cancel. NULL return means out of memory. */
typedef tw_deferred *(*tw_endpoint_resolve_fn)(tw_reactor *r, const char *host, uint16_t port,
                                               void *arg);
/* Installs the hook (fn NULL: back to the reactor's resolver). Thread-safe;
 * connects already resolving keep the lookup they started. */
void tw_endpoint_set_resolver(tw_endpoint_resolve_fn fn, void *arg);

/* ------------------------------------------------------------ the parser */

/* A parsed description: the fields of one string, for parse functions. */
typedef struct tw_endpoint_args tw_endpoint_args;

/* Parses description (the tokenizer alone: no type lookup). Stores the
 * arguments (the caller's; free with tw_endpoint_args_free) and returns 0,
 * or TW_ESYNTAX (message in err: trailing backslash, too long, too many
 * fields, no type) or TW_ENOMEM. */
int tw_endpoint_parse(const char *description, tw_endpoint_args **out, char *err, size_t errlen);
void tw_endpoint_args_free(tw_endpoint_args *a);

/* The whole description, and the type (the first positional field, as
 * written). Borrowed from a. */
const char *tw_endpoint_args_description(const tw_endpoint_args *a);
const char *tw_endpoint_args_type(const tw_endpoint_args *a);
/* Positional fields after the type, in order: index 0 is the first after
 * the type. NULL past the end. */
size_t tw_endpoint_args_npositional(const tw_endpoint_args *a);
const char *tw_endpoint_args_positional(const tw_endpoint_args *a, size_t i);
/* key=value fields in the order written, duplicates included. Returns 0, or
 * TW_EINVAL past the end. */
size_t tw_endpoint_args_nkeywords(const tw_endpoint_args *a);
int tw_endpoint_args_keyword(const tw_endpoint_args *a, size_t i, const char **key,
                             const char **value);

/* Binds one parameter the way Python binds a call's arguments: name is
 * the keyword, position its index among the positional fields after the
 * type (or -1 for keyword-only). Stores the value (borrowed from a; the
 * last one for a repeated key) and returns 1; returns 0 when absent (value
 * set to NULL); returns TW_ESYNTAX with a message when given both ways.
 * Marks the parameter used for tw_endpoint_args_finish. */
int tw_endpoint_param(tw_endpoint_args *a, const char *name, int position, const char **value,
                      char *err, size_t errlen);
/* After binding every parameter: TW_ESYNTAX naming the first positional
 * field or keyword no parameter took ("unexpected argument '6'", "unknown
 * option 'colour' for tcp"), else 0. */
int tw_endpoint_args_finish(tw_endpoint_args *a, char *err, size_t errlen);
/* Writes "<description>: <message>" into err and returns TW_ESYNTAX: how
 * parse functions report. */
int tw_endpoint_syntax_error(const tw_endpoint_args *a, char *err, size_t errlen, const char *fmt,
                             ...) TW_PRINTF(4, 5);

/* ------------------------------------------------------------ the registry */

/* Makes an endpoint from parsed arguments. Returns 0 and stores an endpoint
 * (whose description the caller sets), or TW_ESYNTAX with a message (use
 * tw_endpoint_syntax_error), or TW_ENOMEM. a is borrowed for the call. */
typedef int (*tw_server_endpoint_parse_fn)(tw_reactor *r, tw_endpoint_args *a,
                                           tw_server_endpoint **out, char *err, size_t errlen);
typedef int (*tw_client_endpoint_parse_fn)(tw_reactor *r, tw_endpoint_args *a,
                                           tw_client_endpoint **out, char *err, size_t errlen);

/* Adds a type ("ssl", "tls", ...: letters, digits, '-', '_', at most 31
 * bytes; matched without regard to case) so that later modules extend the
 * grammar without touching this one. name is copied. Process-wide and
 * thread-safe. Returns 0, TW_EBUSY if the name is taken (the built-ins
 * included), TW_EINVAL for a bad name, TW_ELIMIT past 32 types of a kind. */
int tw_endpoint_register_server_type(const char *name, tw_server_endpoint_parse_fn fn);
int tw_endpoint_register_client_type(const char *name, tw_client_endpoint_parse_fn fn);

#ifdef __cplusplus
}
#endif
#endif
