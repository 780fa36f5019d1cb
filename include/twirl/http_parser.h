/* twirl/http_parser.h — a strict, allocation-free HTTP/1.1 message parser
 * (RFC 9110, RFC 9112).
 *
 * A pure parser: no sockets, no reactor, no allocation. Everything it reports
 * is a slice (pointer + length) into the caller's buffer, valid while that
 * buffer is. The HTTP server and client build on it.
 *
 * Heads (request line or status line, then the header section) are parsed
 * incrementally: the caller accumulates bytes in a buffer and calls
 * tw_http_parse_request() (or _response) with the whole buffer each time more
 * arrives. The parser remembers how far it has validated: the lines already
 * complete are never looked at again, and of an incomplete line only the new
 * bytes are scanned; the line is parsed again from its start only when a new
 * byte ends the part it had stopped in (method, target, name, value...), a
 * bounded number of times per line. Feeding a head one byte per call
 * therefore costs O(head length) in total (times a small constant), never
 * O(length^2). The verdict and every field never depend on how the bytes
 * were split across calls (the tests and fuzzers check this). Between calls
 * the buffer may move (realloc), but the bytes already passed must not
 * change.
 *
 * Bodies are decoded by the chunked decoder (tw_http_chunked_*) or counted by
 * the Content-Length counter (tw_http_length_*), both streaming.
 *
 * Strictness, in one place (every rule below is a test):
 *  - Lines end in CRLF. A bare LF (a line ending in LF without CR) is rejected
 *    (400) in requests and in responses, as is a CR not followed by LF.
 *    Empty lines (CRLF) before a request line or status line are skipped.
 *  - Request line: method SP request-target SP HTTP-version, exactly one SP
 *    each. The method is a token. The target is visible US-ASCII (0x21-0x7E)
 *    without '#'; its form must suit the method: authority-form (host:port)
 *    only and always for CONNECT, asterisk-form ("*") only for OPTIONS,
 *    otherwise origin-form ("/...") or absolute-form ("scheme://authority...",
 *    no userinfo, non-empty authority).
 *  - Versions HTTP/1.0 and HTTP/1.1 are served; HTTP/1.x with x >= 2 is taken
 *    as HTTP/1.1 (RFC 9110 §2.5); any other well-formed HTTP/d.d gets 505;
 *    anything else 400.
 *  - Header lines: field-name is a non-empty token followed at once by ':'
 *    (whitespace before the colon: 400); the value may hold HTAB, SP, VCHAR
 *    and obs-text (0x80-0xFF), never NUL, CR, LF or other controls or DEL;
 *    leading and trailing SP/HTAB are trimmed. A line starting with SP/HTAB
 *    (obs-fold, or whitespace before the first field) is rejected (400) in
 *    requests and responses.
 *  - Content-Length: 1*DIGIT, at most 2^64-1; sign, spaces inside, commas,
 *    other characters or overflow: 400. More than one Content-Length field is
 *    rejected (400) even when the values are identical (RFC 9110 §8.6 allows a
 *    recipient to accept identical repeats; we choose not to, as nginx does).
 *  - Transfer-Encoding in a request: the codings over all its field lines
 *    form one list; chunked must appear exactly once and be the last one
 *    (else 400: "gzip" alone, "chunked, gzip", "chunked, chunked"). Any
 *    other coding before the final chunked ("gzip, chunked") gets 501: we
 *    decode no transfer coding but chunked. Transfer-Encoding together with
 *    Content-Length: 400. Transfer-Encoding in an HTTP/1.0 request: 400.
 *  - Host: a HTTP/1.1 request must carry exactly one Host field (else 400);
 *    its value must be empty or uri-host[:port] (else 400).
 *  - Requests: a body length over limits.max_body_bytes gets 413, before any
 *    body is read (Content-Length) or as soon as a chunk size says so.
 *
 * Responses follow the same syntax rules. Their framing follows RFC 9112 §6.3:
 * no body for 1xx, 204, 304 and any answer to HEAD; 101 and a 2xx answer to
 * CONNECT turn the connection into a tunnel; then chunked, Content-Length, or
 * until the server closes. Transfer-Encoding with Content-Length is an error
 * (RFC 9112 §6.3 says it "ought to be handled as an error"), as is
 * Transfer-Encoding in an HTTP/1.0 response. A response error carries status
 * 502, the answer a gateway would give.
 *
 * Nothing here is tied to a thread or a reactor; every function is safe
 * anywhere, including inside callbacks, on distinct parser objects. */
#ifndef TWIRL_HTTP_PARSER_H
#define TWIRL_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A piece of the caller's buffer. Not NUL-terminated. */
typedef struct tw_http_slice {
    const char *ptr;
    size_t len;
} tw_http_slice;

/* One header (or trailer) field line, name and value as sent (the value
 * without leading or trailing SP/HTAB). Names keep their case. */
typedef struct tw_http_header {
    tw_http_slice name;
    tw_http_slice value;
} tw_http_header;

/* Limits. Each has a default (tw_http_limits_init) and a test. Exceeding one
 * makes the parse fail with TW_ELIMIT and the status named here (502 for
 * responses). A line longer than its limit is refused as soon as limit + 2
 * of its bytes are buffered without its end; a field section, as soon as it
 * cannot end within its limit. The parser borrows the struct: it must
 * outlive the parser. */
typedef struct tw_http_limits {
    size_t max_start_line_bytes;  /* request line or status line, without CRLF:
                                     8 KiB; a longer request line gets 414 */
    size_t max_header_line_bytes; /* one field line, without CRLF: 8 KiB -> 431 */
    size_t max_header_bytes;      /* the whole field section (all field lines and
                                     the final empty line): 64 KiB -> 431; also
                                     bounds a chunked body's trailer section */
    size_t max_headers;           /* field lines in a head or trailer section:
                                     100 -> 431 */
    uint64_t max_body_bytes;      /* body bytes (Content-Length, or the sum of the
                                     chunk sizes): 1 MiB -> 413. Set UINT64_MAX to
                                     stream bodies of any size */
    size_t max_chunk_line_bytes;  /* one chunk-size line with its extensions,
                                     without CRLF: 4 KiB -> 400 */
} tw_http_limits;

/* Fills *l with the defaults above. */
void tw_http_limits_init(tw_http_limits *l);

typedef enum tw_http_method {
    TW_HTTP_OTHER = 0, /* a valid token not listed here: see method.ptr */
    TW_HTTP_GET,
    TW_HTTP_HEAD,
    TW_HTTP_POST,
    TW_HTTP_PUT,
    TW_HTTP_DELETE,
    TW_HTTP_CONNECT,
    TW_HTTP_OPTIONS,
    TW_HTTP_TRACE,
    TW_HTTP_PATCH
} tw_http_method;

typedef enum tw_http_target_form {
    TW_HTTP_ORIGIN_FORM = 0, /* "/path?query" */
    TW_HTTP_ABSOLUTE_FORM,   /* "http://host:port/path?query" */
    TW_HTTP_AUTHORITY_FORM,  /* "host:port", CONNECT only */
    TW_HTTP_ASTERISK_FORM    /* "*", OPTIONS only */
} tw_http_target_form;

/* How the body that follows a head is delimited. */
typedef enum tw_http_body {
    TW_HTTP_BODY_NONE = 0,   /* no body (or Content-Length: 0) */
    TW_HTTP_BODY_LENGTH,     /* content_length bytes (> 0): tw_http_length_* */
    TW_HTTP_BODY_CHUNKED,    /* chunked transfer coding: tw_http_chunked_* */
    TW_HTTP_BODY_UNTIL_CLOSE /* responses only: everything until the server closes */
} tw_http_body;

/* Bits of tw_http_connection_tokens() and of the heads' connection field. */
enum {
    TW_HTTP_CONN_CLOSE = 1u << 0,
    TW_HTTP_CONN_KEEP_ALIVE = 1u << 1,
    TW_HTTP_CONN_UPGRADE = 1u << 2
};

/* A request head. Before the first call of a message the caller sets headers
 * and headers_cap (an array it owns; with fewer than limits.max_headers
 * entries, its size is the limit); the parser fills the rest when the head is
 * complete, and works in headers[] in between, so pass the same struct on
 * every call for one message. Every slice points into the caller's buffer,
 * except path, which is the static "/" when an absolute-form target has an
 * empty path. */
typedef struct tw_http_request {
    tw_http_header *headers; /* in: caller's array; out: num_headers filled */
    size_t headers_cap;      /* in */
    size_t num_headers;

    tw_http_slice method;
    tw_http_method method_id;
    tw_http_slice target; /* the request-target as sent */
    tw_http_target_form target_form;
    tw_http_slice path;      /* origin- or absolute-form: the path, before '?';
                                     still percent-encoded (tw_http_path_decode) */
    tw_http_slice query;     /* after '?' ({NULL, 0} when there is no '?') */
    tw_http_slice authority; /* absolute- and authority-form: host[:port] */
    tw_http_slice host;      /* the Host field's value ({NULL, 0} if absent); for an
                                absolute-form target, authority is the host to
                                use (RFC 9112 §3.2.2) */
    int version_minor;       /* 0 or 1 (HTTP/1.x, x >= 2, reports 1) */

    tw_http_body body;       /* NONE, LENGTH or CHUNKED */
    uint64_t content_length; /* when body is LENGTH; 0 otherwise */
    unsigned connection;     /* TW_HTTP_CONN_* tokens of Connection fields */
    bool keep_alive;         /* the connection may carry another request */
    bool upgrade;            /* HTTP/1.1, an Upgrade field and Connection: upgrade */
    bool expect_continue;    /* HTTP/1.1 and Expect: 100-continue */
} tw_http_request;

/* A response head; the same conventions as tw_http_request. */
typedef struct tw_http_response {
    tw_http_header *headers; /* in */
    size_t headers_cap;      /* in */
    size_t num_headers;

    int version_minor; /* 0 or 1 */
    int status;        /* 100-599 */
    tw_http_slice reason;

    tw_http_body body;       /* any of the four */
    uint64_t content_length; /* when body is LENGTH */
    unsigned connection;     /* TW_HTTP_CONN_* */
    bool keep_alive;         /* the connection may carry another exchange */
    bool tunnel;             /* 101, or 2xx to CONNECT: the bytes after the head
                                 belong to another protocol */
    bool te_other;           /* Transfer-Encoding lists codings besides chunked
                                 (e.g. gzip) that the caller must undo */
} tw_http_response;

/* Parser state for one head. Treat the fields as private; read errors with
 * tw_http_parser_status() and tw_http_parser_reason(). */
typedef struct tw_http_parser {
    const tw_http_limits *limits;
    size_t pos;      /* validated up to here: the start of the current line */
    size_t scan;     /* the incomplete current line was scanned up to here */
    size_t line0;    /* where the start line begins (after empty lines) */
    size_t fields0;  /* where the field section begins */
    size_t head_len; /* once complete */
    size_t nfields;
    size_t s_method, n_method, s_target, n_target; /* start-line parts, as offsets */
    size_t s_host, n_host;
    uint64_t content_length;
    int status; /* response status, or the error status */
    const char *reason;
    size_t s_reason, n_reason;
    size_t error_offset;
    int rc; /* the sticky error code */
    uint16_t flags;
    uint8_t stage;
    uint8_t phase; /* what the incomplete line may continue with */
    uint8_t version_minor;
    uint8_t n_cl, n_host_fields, te_chunked, conn;
} tw_http_parser;

/* Prepares p for a new head. limits may be NULL for the defaults; otherwise
 * it is borrowed and must outlive p. Call again for each message (pipelined
 * requests: after a complete head and its body, init and parse the buffer
 * from the next message's first byte). */
void tw_http_parser_init(tw_http_parser *p, const tw_http_limits *limits);

/* Parses a request head from buf[0..len): the bytes received so far for this
 * message (len only grows between calls; buf may move, its bytes must not
 * change). Returns:
 *   > 0  the head is complete and *req filled; the value is the head's length,
 *        so a body or the next request starts at buf + value;
 *   0    more bytes are needed;
 *   < 0  TW_EPROTO (malformed: status 400, or 501/505) or TW_ELIMIT (a limit:
 *        413, 414 or 431); tw_http_parser_status() says what to answer and
 *        tw_http_parser_reason() why. The connection should be closed after
 *        answering. Errors are sticky: later calls return the same code.
 * A complete head is not parsed again: later calls return the same length. */
int tw_http_parse_request(tw_http_parser *p, const char *buf, size_t len, tw_http_request *req);

/* Parses a response head, as tw_http_parse_request(). request_method is the
 * method of the request this answers (HEAD and CONNECT change the framing).
 * Errors return TW_EPROTO or TW_ELIMIT with status 502. A 1xx (other than
 * 101) head is complete on its own: init the parser again for the final
 * response. */
int tw_http_parse_response(tw_http_parser *p, const char *buf, size_t len,
                           tw_http_method request_method, tw_http_response *resp);

/* The status to answer after an error (400, 413, 414, 431, 501, 505; 502 for
 * responses), or 0 if there was none. */
int tw_http_parser_status(const tw_http_parser *p);

/* A static, human-readable reason for the error ("bare LF line ending"), or
 * NULL if there was none. */
const char *tw_http_parser_reason(const tw_http_parser *p);

/* ------------------------------------------------------------- chunked body */

/* Streaming decoder for the chunked transfer coding (RFC 9112 §7.1): chunk
 * sizes (hex, overflow-checked), chunk extensions (syntax-checked, then
 * ignored), chunk data, the CRLF after each chunk, the last chunk, and the
 * trailer section (the same field rules and limits as a head). Fields are
 * private. */
typedef struct tw_http_chunked {
    const tw_http_limits *limits;
    tw_http_header *trailers;
    size_t trailers_cap;
    size_t num_trailers; /* after TW_HTTP_CHUNKED_DONE */
    uint64_t remaining;  /* data bytes left in the current chunk */
    uint64_t total;      /* body bytes so far */
    size_t scan;         /* the pending line was scanned this far */
    size_t tpos;         /* trailer section: validated this far */
    size_t ntrailers;
    size_t error_offset;
    const char *reason;
    int status;
    int rc;
    uint8_t state;
    uint8_t phase;
} tw_http_chunked;

/* Results of tw_http_chunked_parse() besides errors. */
enum {
    TW_HTTP_CHUNKED_MORE = 0, /* more bytes are needed */
    TW_HTTP_CHUNKED_DATA = 1, /* *data holds body bytes */
    TW_HTTP_CHUNKED_DONE = 2  /* the body and its trailers are complete */
};

/* Prepares c for one chunked body. limits may be NULL for the defaults (else
 * borrowed, must outlive c). trailers may be NULL (trailer fields are then
 * validated and skipped) or an array of trailers_cap entries the caller owns,
 * filled by the call that returns TW_HTTP_CHUNKED_DONE (c->num_trailers). */
void tw_http_chunked_init(tw_http_chunked *c, const tw_http_limits *limits,
                          tw_http_header *trailers, size_t trailers_cap);

/* Decodes from buf[0..len), which must start at the first byte this decoder
 * has not consumed. Sets *consumed to the bytes used; the caller drops them
 * and passes the rest (plus what arrives later) to the next call. Returns
 *   TW_HTTP_CHUNKED_DATA: *data is a run of body bytes inside buf (its bytes
 *       are included in *consumed); call again for the rest;
 *   TW_HTTP_CHUNKED_MORE: buf[*consumed..len) is an incomplete line (a chunk
 *       size, or the trailer section) to be passed again with more bytes;
 *   TW_HTTP_CHUNKED_DONE: the final CRLF was read; buf + *consumed is the next
 *       message; trailers (if any) point into buf;
 *   TW_EPROTO (400: bad chunk size or extension, missing CRLF after data,
 *       bad trailer) or TW_ELIMIT (413: the body passed max_body_bytes; 400:
 *       a chunk line over max_chunk_line_bytes; 431: trailer limits). Sticky.
 * A partial line is searched only in its new bytes on the next call (linear
 * in the input however it is split). */
int tw_http_chunked_parse(tw_http_chunked *c, const char *buf, size_t len, size_t *consumed,
                          tw_http_slice *data);

/* Decodes in place, for callers that collect a body: raw chunked bytes are
 * buf[*src..len); each run of body data is moved down to buf + *dst and *dst
 * advances; *src advances past what was consumed. Start with *src = *dst =
 * the body's first byte. Returns TW_HTTP_CHUNKED_MORE (buf[*src..len) must be
 * kept, e.g. moved down to *dst, and more appended), TW_HTTP_CHUNKED_DONE
 * (the body is buf[start..*dst), the next message begins at *src), or an
 * error as tw_http_chunked_parse(). */
int tw_http_chunked_decode_inplace(tw_http_chunked *c, char *buf, size_t len, size_t *src,
                                   size_t *dst);

/* Error status (400, 413, 431) and static reason after an error, else 0/NULL. */
int tw_http_chunked_status(const tw_http_chunked *c);
const char *tw_http_chunked_reason(const tw_http_chunked *c);

/* ------------------------------------------------------- Content-Length body */

/* Counts down a Content-Length body. */
typedef struct tw_http_length {
    uint64_t remaining;
} tw_http_length;

/* Starts counting a body of content_length bytes. */
void tw_http_length_init(tw_http_length *b, uint64_t content_length);

/* Of avail received bytes, returns how many belong to the body (the rest is
 * the next message) and counts them. */
size_t tw_http_length_take(tw_http_length *b, size_t avail);

/* True once every body byte was taken. */
bool tw_http_length_done(const tw_http_length *b);

#ifdef __cplusplus
}
#endif
#endif
