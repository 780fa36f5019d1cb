/* twirl/http_util.h — helpers around parsed HTTP messages: field lookup,
 * token lists (Connection), percent-decoding of paths, query strings,
 * method names and reason phrases.
 *
 * Pure functions: no allocation, no global state, safe anywhere (inside any
 * callback, from any thread). Inputs are borrowed for the call; outputs are
 * slices of the inputs or bytes written to caller-owned buffers. */
#ifndef TWIRL_HTTP_UTIL_H
#define TWIRL_HTTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/http_parser.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True if the n bytes at s equal the NUL-terminated lit, ignoring ASCII case. */
bool tw_http_token_eq(const char *s, size_t n, const char *lit);

/* The first field named name (NUL-terminated, any case) among headers[0..n),
 * or NULL. Names are compared ignoring ASCII case. */
const tw_http_header *tw_http_header_find(const tw_http_header *headers, size_t n,
                                          const char *name);

/* The next field named name after *prev (an element of headers[0..n)), or
 * NULL: walks fields that occur several times (Set-Cookie, Via). */
const tw_http_header *tw_http_header_find_next(const tw_http_header *headers, size_t n,
                                               const tw_http_header *prev, const char *name);

/* True if the comma-separated list value[0..n) (RFC 9110 §5.6.1: OWS around
 * commas, empty elements ignored) has an element equal to token ignoring case.
 * Elements with parameters (";q=...") compare by their leading token. */
bool tw_http_list_has(const char *value, size_t n, const char *token);

/* The TW_HTTP_CONN_* bits (close, keep-alive, upgrade) named in a Connection
 * field value; other tokens are ignored. The parser ORs these over all
 * Connection fields into request.connection / response.connection. */
unsigned tw_http_connection_tokens(const char *value, size_t n);

/* Bits reported by tw_http_path_decode(). */
enum {
    TW_HTTP_PATH_ENCODED_SLASH = 1u << 0,     /* %2F: a '/' that is not a separator */
    TW_HTTP_PATH_ENCODED_BACKSLASH = 1u << 1, /* %5C */
    TW_HTTP_PATH_ENCODED_CONTROL = 1u << 2    /* %01-%1F or %7F decoded */
};

/* Percent-decodes a path (a request's path slice). '+' stays '+'. Writes the
 * decoded bytes to out (which may be in itself: decoding never lengthens),
 * *out_len their count, and *flags (may be NULL) the TW_HTTP_PATH_* bits seen.
 * Returns 0; TW_EPROTO for a '%' not followed by two hex digits or for %00
 * (an encoded NUL would cut C strings short); TW_ELIMIT if out_cap is too
 * small (out_cap >= n always suffices). Nothing is NUL-terminated. */
int tw_http_path_decode(const char *in, size_t n, char *out, size_t out_cap, size_t *out_len,
                        unsigned *flags);

/* Splits a query string (a request's query slice) into its next
 * "key=value" pair. *cursor starts at the query's first byte and is advanced
 * past the pair and its '&'; end is the query's end. Returns true with *key
 * and *value (still encoded; value is {NULL, 0} when the pair has no '='),
 * false when the query is exhausted. Empty pairs ("a&&b") are skipped. */
bool tw_http_query_next(const char **cursor, const char *end, tw_http_slice *key,
                        tw_http_slice *value);

/* Decodes one query key or value (application/x-www-form-urlencoded:
 * '+' is a space, %XX a byte) into out (may be in itself). Returns 0,
 * TW_EPROTO for a bad escape or %00, TW_ELIMIT if out_cap is too small. */
int tw_http_query_decode(const char *in, size_t n, char *out, size_t out_cap, size_t *out_len);

/* The method's name ("GET"), or NULL for TW_HTTP_OTHER. */
const char *tw_http_method_name(tw_http_method m);

/* The standard reason phrase for a status code ("Not Found"), or "Unknown"
 * for codes without one. Never NULL. */
const char *tw_http_status_reason(int status);

#ifdef __cplusplus
}
#endif
#endif
