/* tls_internal.h — shared by the TLS context (tls_context.c), the wrapper
 * transport (tls.c) and the TLS endpoints (tls_endpoint.c). */
#ifndef TWIRL_TLS_INTERNAL_H
#define TWIRL_TLS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#include "twirl/endpoint.h"
#include "twirl/tls.h"

enum { TW__TLS_SESSION_CACHE_MAX = 64 }; /* client sessions kept per context */

typedef struct tw__tls_session {
    char *key; /* "server_name:port" */
    SSL_SESSION *session;
} tw__tls_session;

struct tw_tls_context {
    atomic_int refs;
    bool server;
    bool verify;   /* clients: the server's certificate is verified */
    SSL_CTX *ctx;  /* the default (and, for clients, only) one */
    SSL_CTX **sni; /* servers: one per extra certificate */
    size_t sni_count;
    unsigned char *alpn_wire; /* ALPN list in wire format (length-prefixed) */
    size_t alpn_wire_len;
    char **alpn_names; /* the same names, NUL-terminated */
    size_t alpn_count;
    double handshake_timeout; /* seconds; <= 0: none */
    /* Clients: resumable sessions, most recent last. */
    bool session_cache;
    pthread_mutex_t cache_lock;
    tw__tls_session cache[TW__TLS_SESSION_CACHE_MAX];
    size_t cache_len;
};

/* The context an SSL_CTX belongs to (its app data). */
tw_tls_context *tw__tls_context_of(const SSL_CTX *ctx);

/* The NUL-terminated copy of an ALPN name the context offered or accepts,
 * or NULL. */
const char *tw__tls_alpn_name(const tw_tls_context *c, const unsigned char *p, unsigned len);

/* Client session cache. lookup returns a new reference (SSL_SESSION_free
 * it) or NULL; store takes one. */
SSL_SESSION *tw__tls_session_lookup(tw_tls_context *c, const char *key);
void tw__tls_session_store(tw_tls_context *c, const char *key, SSL_SESSION *s);
/* tls.c: the cache key of a client connection ("server_name:port"), or NULL
 * when it has none. Borrowed from the connection. */
const char *tw__tls_session_key(SSL *ssl);

/* Turns the state after a failed OpenSSL call on ssl (ssl_err from
 * SSL_get_error) into a tw_tls_error code and a message written into msg.
 * Consumes (clears) the thread's OpenSSL error queue. */
int tw__tls_classify(SSL *ssl, int ssl_err, char *msg, size_t size);

/* The context constructors, with the first configuration error written
 * into err (instead of the log). */
int tw__tls_server_context_new_err(const tw_tls_server_options *o, tw_tls_context **out, char *err,
                                   size_t errlen);
int tw__tls_client_context_new_err(const tw_tls_client_options *o, tw_tls_context **out, char *err,
                                   size_t errlen);

/* Wrapping factories made by endpoints (one per port or connection
 * attempt). Such a factory frees itself once it was stopped (its port or
 * connector is done) and the last connection it made is gone; before it
 * was ever started, tw_tls_factory_free frees it. made(arg, p, NULL) is
 * called when a connection's inner protocol p was made (after its
 * connection_made returned), made(arg, NULL, why) when a connection ended
 * before that; arg_free(arg), if not NULL, when the factory is freed. */
typedef void (*tw__tls_made_fn)(void *arg, tw_protocol *p, const tw_failure *why);
tw_factory *tw__tls_factory_new_auto(tw_tls_context *ctx, const char *server_name,
                                     tw_factory *inner, tw__tls_made_fn made, void *arg,
                                     tw_free_fn arg_free);

/* Endpoint types "ssl" (server) and "tls" (client), and their
 * registration (idempotent). */
int tw__endpoint_parse_ssl_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                  char *err, size_t errlen);
int tw__endpoint_parse_tls_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                  char *err, size_t errlen);
void tw__tls_endpoints_register(void);

/* Whether a string is an IPv4 or IPv6 literal. */
bool tw__tls_is_ip(const char *name);

#endif
