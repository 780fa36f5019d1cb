/* twirl/tls.h — TLS over any transport (Twisted's TLSMemoryBIOProtocol,
 * CertificateOptions / optionsForClientTLS, startTLS), on OpenSSL 3.
 *
 * TLS is a layer between a transport and a protocol. A context holds the
 * configuration (certificates, trust, ALPN, versions) and is shared by every
 * connection made with it. Then either:
 *
 *   - wrap a factory: tw_tls_factory_new(ctx, server_name, inner) gives a
 *     factory to pass to tw_listen / tw_connect (or any transport): each
 *     connection runs the handshake and then builds the inner protocol, which
 *     sees an ordinary transport whose bytes are encrypted; or
 *   - switch a running connection: tw_tls_start() (STARTTLS, AUTH TLS) puts
 *     TLS under a protocol that is already talking plaintext.
 *
 *     tw_tls_server_options so = { .cert_file = "cert.pem", .key_file = "key.pem",
 *                                  .alpn = "h2,http/1.1" };
 *     tw_tls_context *ctx;
 *     if (tw_tls_server_context_new(&so, &ctx) < 0) ...       // reason logged
 *     tw_factory *tls = tw_tls_factory_new(ctx, NULL, &my_factory);
 *     tw_listen_tcp(r, NULL, 443, NULL, tls, &port);
 *     ...
 *     tw_port_stop_listening(port);  // then at once (open connections keep
 *     tw_tls_factory_free(tls);      // what they need alive)
 *     tw_tls_context_unref(ctx);
 *
 * Endpoint strings (twirl/endpoint.h) reach the same with Twisted's
 * grammar: "ssl:443:privateKey=key.pem:certKey=cert.pem[:extraCertChain=
 * chain.pem][:caCerts=ca.pem][:interface=ADDR]" for servers and
 * "tls:host=NAME:port=443[:trustRoots=ca.pem][:certificate=c.pem]
 * [:privateKey=k.pem]" for clients, plus twirl's alpn=h2,http/1.1 (both)
 * and clientCert=request|require (servers). A tls: endpoint's deferred
 * fires once the handshake succeeded, or fails with the TLS reason.
 *
 * Defaults: TLS 1.2 minimum, TLS 1.3 on, renegotiation refused, session
 * tickets on (servers), compression off. Clients verify the server's
 * certificate against the system trust store and check the host name;
 * turning that off takes an explicit option and is logged as a warning.
 *
 * When the inner protocol runs. With a wrapping factory the inner protocol
 * is built, and gets connection_made, only once the handshake succeeded, so
 * tw_tls_negotiated_protocol() and the peer certificate are known in
 * connection_made. A handshake that fails builds nothing: a client
 * factory's client_connection_failed hook gets a failure saying why (domain
 * TW_TLS_DOMAIN, see tw_tls_error); on a server the reason is logged (info
 * level, domain "tls") and the connection closed. Once the inner protocol is
 * made, the end of the connection reaches its connection_lost as usual, and
 * a client factory's client_connection_lost; a TLS-level cause (a bad record,
 * a fatal alert, an end of stream without close_notify) is the cause of the
 * TW_ECONNECTION_LOST failure. (In TLS 1.3 a client's handshake ends
 * before the server has judged the client's certificate: a refused client
 * certificate reaches such a client as connection_lost, cause
 * TW_TLS_ERR_CERT_REQUIRED or the server's alert, right after
 * connection_made.)
 *
 * Closing. tw_transport_lose_connection() on a TLS transport sends what was
 * written, then a close_notify alert, then closes the transport below;
 * abort_connection drops everything. A close_notify from the peer is an end
 * of stream: eof_received (half-close: the protocol may go on writing), or,
 * without that hook, lose_connection. lose_write_connection sends
 * close_notify and half-closes the transport below. The transport below
 * ending without close_notify after the handshake is reported as
 * TW_ECONNECTION_LOST with cause TW_TLS_ERR_UNEXPECTED_EOF.
 *
 * Flow control works through the layer: a producer registered on the TLS
 * transport is paused and resumed by the transport below's buffer; pausing
 * the TLS transport pauses reading below. tw_transport_buffered() counts the
 * ciphertext waiting below plus plaintext held before the handshake ended.
 *
 * Memory. A context's SSL_CTX is shared by all its connections. A
 * connection costs its OpenSSL object (a few KiB; the record buffers are
 * released while idle), a small struct, and nothing else: ciphertext is read
 * from the buffer of the transport below, plaintext is decrypted into a
 * stack buffer, and ciphertext is gathered in one buffer per reactor before
 * it is handed down.
 *
 * Threads: contexts are reference counted and may be shared by reactors on
 * several threads (the count is atomic; OpenSSL's SSL_CTX is thread-safe);
 * a connection belongs to its reactor's thread. */
#ifndef TWIRL_TLS_H
#define TWIRL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/failure.h"
#include "twirl/protocol.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenSSL's types (SSL_CTX, SSL), for the escape hatches below. */
struct ssl_ctx_st;
struct ssl_st;

/* ------------------------------------------------------------- failures */

/* TLS failures have this domain and a code from tw_tls_error. */
#define TW_TLS_DOMAIN "tls"

typedef enum tw_tls_error {
    TW_TLS_ERR_HANDSHAKE = 1,    /* the handshake failed (peer refused, other reason) */
    TW_TLS_ERR_UNKNOWN_CA,       /* the peer's chain does not lead to a trusted CA */
    TW_TLS_ERR_HOSTNAME,         /* the certificate does not name the host we connected to */
    TW_TLS_ERR_EXPIRED,          /* a certificate in the chain has expired */
    TW_TLS_ERR_NOT_YET_VALID,    /* a certificate in the chain is not valid yet */
    TW_TLS_ERR_BAD_CERTIFICATE,  /* any other certificate problem */
    TW_TLS_ERR_CERT_REQUIRED,    /* a client certificate was required and not given */
    TW_TLS_ERR_PROTOCOL_VERSION, /* no TLS version both sides accept */
    TW_TLS_ERR_NO_SHARED_CIPHER, /* no cipher suite (or group) both sides accept */
    TW_TLS_ERR_ALERT,            /* the peer sent another fatal alert */
    TW_TLS_ERR_PROTOCOL,         /* not TLS, a malformed record, or a decryption failure */
    TW_TLS_ERR_UNEXPECTED_EOF,   /* the stream ended without close_notify */
    TW_TLS_ERR_TIMEOUT,          /* the handshake took longer than allowed */
    TW_TLS_ERR_INTERNAL          /* OpenSSL failed internally (e.g. out of memory) */
} tw_tls_error;

/* A static description of a tw_tls_error code; never NULL. */
const char *tw_tls_strerror(int code);

/* The tw_tls_error code of the first TLS failure in f's cause chain (f
 * itself included), or 0 when there is none. f may be NULL. */
int tw_tls_failure_reason(const tw_failure *f);

/* ------------------------------------------------------------- contexts */

typedef struct tw_tls_context tw_tls_context;

/* Protocol versions, by their wire values. 0 means the default. */
typedef enum tw_tls_version {
    TW_TLS_VERSION_DEFAULT = 0,
    TW_TLS_1_2 = 0x0303, /* the default minimum */
    TW_TLS_1_3 = 0x0304  /* the default maximum */
} tw_tls_version;

typedef enum tw_tls_client_auth {
    TW_TLS_CLIENT_CERT_NONE = 0, /* do not ask */
    TW_TLS_CLIENT_CERT_REQUEST,  /* ask; verify one if given; accept none */
    TW_TLS_CLIENT_CERT_REQUIRE   /* ask, verify, and refuse the handshake without one */
} tw_tls_client_auth;

/* One server certificate: PEM files. cert_file holds the certificate,
 * optionally followed by its chain; key_file the private key (NULL: the key
 * is in cert_file too); chain_file more chain certificates (optional;
 * Twisted's extraCertChain). */
typedef struct tw_tls_certificate {
    const char *cert_file;
    const char *key_file;
    const char *chain_file;
} tw_tls_certificate;

/* Every field may be left zero except the certificate. Strings are borrowed
 * for the call (files are read then). */
typedef struct tw_tls_server_options {
    tw_tls_certificate cert; /* the default certificate */
    /* More certificates, chosen by the server name the client sends (SNI):
     * the first whose subjectAltName (or, lacking one, common name) matches,
     * wildcards included; the default certificate when none does. */
    const tw_tls_certificate *sni;
    size_t sni_count;
    /* Client certificates: how to ask, and the CA file (PEM) to verify them
     * against. ca_file without client_auth means TW_TLS_CLIENT_CERT_REQUIRE. */
    tw_tls_client_auth client_auth;
    const char *ca_file;
    /* ALPN: acceptable protocols, comma-separated, in the server's order of
     * preference ("h2,http/1.1"). A client offering none of them is served
     * without ALPN. NULL: ALPN is not answered. */
    const char *alpn;
    tw_tls_version min_version, max_version;
    const char *ciphers;      /* TLS 1.2 cipher list (OpenSSL syntax); NULL: default */
    const char *ciphersuites; /* TLS 1.3 suites; NULL: default */
    bool no_session_tickets;  /* turn resumption by tickets off */
    /* Seconds a connection may take to finish the handshake before it is
     * closed (TW_TLS_ERR_TIMEOUT); 0: 30; negative: no limit. */
    double handshake_timeout;
} tw_tls_server_options;

typedef struct tw_tls_client_options {
    /* CA certificates to trust instead of the system store (Twisted's
     * trustRoots): a PEM file, or a directory of PEM files. */
    const char *trust_roots;
    /* A client certificate to present when asked; optional. */
    tw_tls_certificate cert;
    /* ALPN: protocols to offer, comma-separated, in order of preference. */
    const char *alpn;
    tw_tls_version min_version, max_version;
    const char *ciphers, *ciphersuites;
    /* Do not verify the server at all. Insecure; creating such a context
     * logs a warning. */
    bool insecure_no_verify;
    /* Remember sessions per server name and resume them (on by default;
     * this turns it off). */
    bool no_session_cache;
    double handshake_timeout; /* as for servers */
} tw_tls_client_options;

/* Makes a context. On success stores it (one reference, the caller's) and
 * returns 0. Otherwise logs why (domain "tls", error level, naming the file
 * and OpenSSL's reason) and returns TW_ENOTFOUND (a file cannot be read),
 * TW_EINVAL (bad or mismatched PEM, unknown cipher or version, empty ALPN
 * entry, missing certificate), or TW_ENOMEM. Not tied to a reactor or a
 * thread. */
int tw_tls_server_context_new(const tw_tls_server_options *o, tw_tls_context **out);
int tw_tls_client_context_new(const tw_tls_client_options *o, tw_tls_context **out);

/* Reference counting (thread-safe). Connections hold a reference to their
 * context, so unreferencing a context in use is fine. unref(NULL) is a
 * no-op. */
tw_tls_context *tw_tls_context_ref(tw_tls_context *ctx);
void tw_tls_context_unref(tw_tls_context *ctx);

bool tw_tls_context_is_server(const tw_tls_context *ctx);

/* The OpenSSL context (the default one for servers with SNI), for settings
 * this API does not cover; change it before the first connection. Borrowed
 * from ctx. */
struct ssl_ctx_st *tw_tls_context_ssl_ctx(tw_tls_context *ctx);

/* ----------------------------------------------------- wrapping factories */

/* A factory (Twisted's TLSMemoryBIOFactory) that wraps each connection of a
 * port or connector in TLS and builds inner's protocols once the handshake
 * succeeded. ctx and inner are borrowed (a reference to ctx is taken); keep
 * inner alive while the result is. server_name: for client contexts, the
 * name to send (SNI, unless it is an IP address) and to check the
 * certificate against (an IP address is checked against the IP entries);
 * required unless the context does not verify. Ignored for server contexts.
 * The inner factory's start/stop hooks run with the wrapper's; a client
 * factory's connector hooks are forwarded with TLS reasons (see the top of
 * this file). Returns NULL when out of memory, or when a verifying client
 * context has no server_name (logged). Free with tw_tls_factory_free once no
 * port or connector uses it: after tw_port_stop_listening (connections the
 * port accepted may still be open: they keep what they need alive), or once
 * a connector's failed/lost hook has returned. */
tw_factory *tw_tls_factory_new(tw_tls_context *ctx, const char *server_name, tw_factory *inner);
/* NULL is a no-op. */
void tw_tls_factory_free(tw_factory *f);

/* --------------------------------------------------------------- startTLS */

/* Called once when a tw_tls_start handshake ends: error is NULL on success,
 * or the TLS failure (borrowed) just before the connection closes (the
 * protocol then gets connection_lost with it as the cause). */
typedef void (*tw_tls_handshake_fn)(tw_protocol *p, const tw_failure *error, void *arg);

typedef struct tw_tls_start_options {
    /* Client contexts: the server's name, as for tw_tls_factory_new. */
    const char *server_name;
    /* Bytes the protocol already received from the transport after the point
     * where TLS begins (e.g. what followed "STARTTLS\r\n" in the same read):
     * they are the first TLS bytes. Copied. */
    const void *initial_data;
    size_t initial_len;
    /* Told when the handshake ended; optional. */
    tw_tls_handshake_fn handshake_done;
    void *arg;
} tw_tls_start_options;

/* Twisted's startTLS: switches the connection of protocol p (which must be
 * attached to an open transport) to TLS, as client or server depending on
 * ctx. From the return on, p->transport is a TLS transport: what p writes
 * is encrypted (and held until the handshake ended), what it reads was
 * decrypted; p's own ops table is replaced while TLS is on (do not compare
 * p->ops), and restored before connection_lost. Plaintext p wrote before the
 * call goes out first, in plaintext. Unregister any producer from the plain
 * transport first. Safe inside p's callbacks (typically data_received).
 * Returns 0, TW_EINVAL (no transport, server_name missing for a verifying
 * client, or the transport is already TLS), TW_ECLOSED (the transport is
 * closing) or TW_ENOMEM. o may be NULL. */
int tw_tls_start(tw_protocol *p, tw_tls_context *ctx, const tw_tls_start_options *o);

/* ------------------------------------------------------------- queries */

/* True if t is a TLS transport (its kind is "tls"). */
bool tw_transport_is_tls(const tw_transport *t);

/* These take the transport a protocol sees. They return NULL / false for a
 * transport that is not TLS or whose handshake has not ended. Strings are
 * borrowed and stay valid while the connection is open. */

/* The ALPN protocol agreed on ("h2"), or NULL if none. */
const char *tw_tls_negotiated_protocol(const tw_transport *t);
/* The server name the client sent (SNI), as seen on either side; NULL if
 * none. */
const char *tw_tls_server_name(const tw_transport *t);
/* "TLSv1.3", "TLSv1.2". */
const char *tw_tls_version_name(const tw_transport *t);
/* "TLS_AES_128_GCM_SHA256", ... */
const char *tw_tls_cipher_name(const tw_transport *t);
/* True if the handshake resumed an earlier session. */
bool tw_tls_session_reused(const tw_transport *t);
/* True if the peer presented a certificate and it verified. */
bool tw_tls_peer_verified(const tw_transport *t);
/* The peer certificate's subject, one line ("CN=localhost"), written like
 * snprintf; returns the length needed, or 0 (and buf "") when there is no
 * peer certificate. */
size_t tw_tls_peer_subject(const tw_transport *t, char *buf, size_t size);
/* The OpenSSL connection, for what this API does not cover. Borrowed. */
struct ssl_st *tw_tls_ssl(const tw_transport *t);

#ifdef __cplusplus
}
#endif
#endif
