/* twirl/basic.h — framing protocols (twisted.protocols.basic):
 * LineReceiver, LineOnlyReceiver, NetstringReceiver, Int8/16/32 string
 * receivers, StatefulProtocol and StatefulStringProtocol.
 *
 * A receiver turns a byte stream into units (lines, strings, fixed-size
 * pieces) and calls your hook once per unit, whatever the chunking of the
 * reads. You write a struct that embeds the receiver first and an ops table
 * that starts with a ready-made tw_protocol_ops (the BASE macro) followed by
 * your hooks:
 *
 *     typedef struct chat { tw_line_receiver lr; int lines; } chat;
 *
 *     static int chat_line(tw_protocol *p, const char *line, size_t len)
 *     {
 *         ((chat *)p)->lines++;
 *         tw_line_receiver_send_line(p, line, len);       // echo it
 *         return 0;                                        // go on
 *     }
 *
 *     static const tw_line_receiver_ops chat_ops = {
 *         .base = TW_LINE_RECEIVER_BASE(chat),
 *         .line_received = chat_line,
 *     };
 *     static tw_factory chat_factory = TW_FACTORY_INIT(&chat_ops.base, NULL);
 *
 * The library owns .base: it implements connection_made, data_received,
 * eof_received, connection_lost and destroy, and calls the hooks of the same
 * names in your table (each optional) with the same meaning as in
 * twirl/protocol.h. Every hook gets the tw_protocol pointer: cast it to your
 * struct. The functions below take that pointer too, and assert that it is
 * a receiver of the right kind.
 *
 * Units are handed over as (pointer, length) pairs that are NOT
 * NUL-terminated and are borrowed for the call only: copy what you keep.
 * When a read holds only complete units they point straight into the
 * reactor's read buffer — nothing is copied; only an unfinished unit at the
 * end of a read is copied, into a buffer that is freed once it empties.
 *
 * Reentrancy: any hook may call any function here on its own protocol
 * (switch modes, pause, clear the buffer, send), close the transport, or
 * feed bytes back in (tw_line_receiver_set_line_mode with extra bytes, or
 * data_received itself): bytes handed in during a hook are queued after the
 * rest of the current read and parsed by the same loop once the hook
 * returns, never by recursion — so a hook that switches mode on every byte
 * of a megabyte read uses constant stack.
 *
 * Closing: once the transport is closing (a hook called lose_connection,
 * abort_connection or stop_producing), no further unit of the same read is
 * delivered, and what was left is dropped. Twisted's LineReceiver and
 * LineOnlyReceiver behave so; for netstring, int-prefixed and stateful
 * receivers twirl does the same (Twisted would go on parsing the read).
 *
 * Bad input never crashes or grows memory without bound: every receiver has
 * a length limit with a default, bytes past the limit are refused, and a
 * peer that breaks the format is disconnected with a log line (level warn,
 * naming the peer and the rule). Out of memory aborts the connection (logged
 * at error level). */
#ifndef TWIRL_BASIC_H
#define TWIRL_BASIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/protocol.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults, as in Twisted. */
enum {
    TW_LINE_MAX_LENGTH = 16384,      /* LineReceiver.MAX_LENGTH */
    TW_NETSTRING_MAX_LENGTH = 99999, /* NetstringReceiver.MAX_LENGTH */
    TW_INT_MAX_LENGTH = 99999,       /* IntNStringReceiver.MAX_LENGTH */
    TW_LINE_DELIMITER_MAX = 15       /* longest delimiter accepted, in bytes */
};

/* ================================================== shared by all receivers */

/* The part every receiver struct starts with. Its fields are private: use
 * the functions. */
typedef struct tw_receiver {
    tw_protocol base;
    char *buf; /* owned, unparsed bytes: [off, len) of cap */
    size_t off, len, cap;
    const char *in; /* the unparsed rest of the read being processed */
    size_t in_len;
    char *pend; /* bytes handed in while a hook ran */
    size_t pend_len, pend_cap;
    char *cleared;        /* what tw_line_receiver_clear_line_buffer returned */
    size_t scan;          /* parser's resume point in buf */
    tw_producer producer; /* tw_receiver_as_producer */
    unsigned flags;
} tw_receiver;

/* Hooks every receiver ops table has, after .base (same meaning as in
 * tw_protocol_ops). */
#define TW__RECEIVER_HOOKS                                              \
    tw_protocol_ops base; /* the BASE macro: owned by the library */    \
    void (*connection_made)(tw_protocol * p);                           \
    void (*eof_received)(tw_protocol * p);                              \
    void (*connection_lost)(tw_protocol * p, const tw_failure *reason); \
    void (*destroy)(tw_protocol * p)

/* Twisted's _PauseableMixin, for every receiver here.
 *
 * pause: stops delivering units (bytes that arrive are kept) and pauses the
 * transport's reading. resume: resumes the transport, then at once delivers
 * what was kept — which may pause again; called inside a hook it only lifts
 * the pause, and the loop already running goes on. stop: no unit is ever
 * delivered again (kept bytes are dropped) and the transport's
 * stop_producing closes the connection. All three are safe inside hooks. */
void tw_receiver_pause_producing(tw_protocol *p);
void tw_receiver_resume_producing(tw_protocol *p);
void tw_receiver_stop_producing(tw_protocol *p);
bool tw_receiver_paused(const tw_protocol *p);

/* The receiver as a producer (the three calls above), to register on its
 * own or another transport. Valid as long as the protocol. */
tw_producer *tw_receiver_as_producer(tw_protocol *p);

/* Bytes held for parsing (an unfinished unit, or units kept while paused). */
size_t tw_receiver_buffered(const tw_protocol *p);

/* Library hooks used by the BASE macros; not for direct use. */
void tw__receiver_connection_made(tw_protocol *p);
void tw__receiver_eof_received(tw_protocol *p);
void tw__receiver_connection_lost(tw_protocol *p, const tw_failure *reason);
void tw__receiver_destroy(tw_protocol *p);
void tw__line_data_received(tw_protocol *p, const void *data, size_t len);
void tw__line_only_data_received(tw_protocol *p, const void *data, size_t len);
void tw__netstring_data_received(tw_protocol *p, const void *data, size_t len);
void tw__int8_data_received(tw_protocol *p, const void *data, size_t len);
void tw__int16_data_received(tw_protocol *p, const void *data, size_t len);
void tw__int32_data_received(tw_protocol *p, const void *data, size_t len);
void tw__stateful_data_received(tw_protocol *p, const void *data, size_t len);

/* sizeof(type), refusing to compile when type is smaller than the receiver
 * it must start with. */
#define TW__RECEIVER_SIZE(type, base_type) \
    (sizeof(type) + 0 * sizeof(char[sizeof(type) >= sizeof(base_type) ? 1 : -1]))

#define TW__RECEIVER_BASE(type, base_type, data_fn)                                      \
    {                                                                                    \
        .size = TW__RECEIVER_SIZE(type, base_type),                                      \
        .connection_made = tw__receiver_connection_made, .data_received = (data_fn),     \
        .eof_received = tw__receiver_eof_received,                                       \
        .connection_lost = tw__receiver_connection_lost, .destroy = tw__receiver_destroy \
    }

/* ============================================================ LineReceiver */

/* Your struct starts with this. */
typedef struct tw_line_receiver {
    tw_receiver r;
    size_t max_line_bytes;
    const char *raw_at; /* the chunk raw_data_received is looking at */
    size_t raw_len;
    unsigned char delim_len;
    char delim[TW_LINE_DELIMITER_MAX];
} tw_line_receiver;

typedef struct tw_line_receiver_ops {
    TW__RECEIVER_HOOKS;
    /* A complete line, delimiter removed (may be empty). Return 0 to go on;
     * anything else stops processing this read, and the bytes after the
     * line stay buffered for the next read (Twisted: a true return value).
     * When NULL, a line is an error: logged, and the connection is closed. */
    int (*line_received)(tw_protocol *p, const char *line, size_t len);
    /* Raw mode: bytes as they come. Same return rule. When NULL, raw data is
     * an error as above. LineOnlyReceiver never calls it. */
    int (*raw_data_received)(tw_protocol *p, const char *data, size_t len);
    /* A line over the limit: gets the over-long line, its delimiter and
     * everything buffered after it (LineReceiver; for a line not yet ended,
     * the whole buffer), or only the line (LineOnlyReceiver), and the buffer
     * is emptied. Optional: the default logs and loses the connection. It
     * may instead call tw_line_receiver_set_line_mode(p, rest, n) to go on
     * parsing from any point. */
    void (*line_length_exceeded)(tw_protocol *p, const char *data, size_t len);
    /* Defaults for each connection; the functions below change them per
     * connection. NULL: "\r\n". 0: TW_LINE_MAX_LENGTH. */
    const char *delimiter;
    size_t max_line_bytes;
} tw_line_receiver_ops;

/* The .base of a LineReceiver: `type` is your struct, which starts with a
 * tw_line_receiver.
 *
 * LineReceiver rules (Twisted's): starts in line mode. A line longer than
 * the limit is refused through line_length_exceeded; exactly the limit is
 * accepted. Without a delimiter in the buffer, nothing is refused until the
 * buffer holds limit + delimiter-length bytes, so a line of exactly the
 * limit whose delimiter arrives in pieces still gets through. After
 * tw_line_receiver_set_raw_mode, the rest of the buffer and every later read
 * go to raw_data_received as they come. */
#define TW_LINE_RECEIVER_BASE(type) \
    TW__RECEIVER_BASE(type, tw_line_receiver, tw__line_data_received)

/* The .base of a LineOnlyReceiver (uses tw_line_receiver and its ops; no
 * raw mode). Differences from LineReceiver, as in Twisted: an unfinished
 * line is refused as soon as it is longer than the limit, and
 * line_length_exceeded gets only the line; processing of that read stops
 * and the rest of it is dropped. send_line writes the line and the
 * delimiter as one two-element writev. */
#define TW_LINE_ONLY_RECEIVER_BASE(type) \
    TW__RECEIVER_BASE(type, tw_line_receiver, tw__line_only_data_received)

/* The protocol ops to give a factory: TW_FACTORY_INIT(TW_PROTOCOL_OF(&ops), ...). */
#define TW_PROTOCOL_OF(receiver_ops) (&(receiver_ops)->base)

/* Writes line and the delimiter (Twisted's sendLine). Returns what
 * tw_transport_write returns, or TW_ECLOSED without a transport. */
int tw_line_receiver_send_line(tw_protocol *p, const void *line, size_t len);

/* Sets this connection's delimiter (copied; 1 to TW_LINE_DELIMITER_MAX
 * bytes, any values). Returns 0 or TW_EINVAL. Takes effect for the bytes
 * not yet parsed, also inside line_received. */
int tw_line_receiver_set_delimiter(tw_protocol *p, const void *delim, size_t len);

/* Sets this connection's line limit in bytes (Twisted's MAX_LENGTH). */
void tw_line_receiver_set_max_line_bytes(tw_protocol *p, size_t max_line_bytes);

/* Switches to raw mode: the rest of the current read and all later bytes go
 * to raw_data_received. Returns 0, or TW_EINVAL on a LineOnlyReceiver. */
int tw_line_receiver_set_raw_mode(tw_protocol *p);

/* Switches back to line mode; extra (may be NULL with len 0) is parsed
 * first, as if it had just arrived. Inside a hook, extra is queued after the
 * rest of the current read and the running loop parses it; outside, it is
 * parsed at once. The usual call from raw_data_received, with extra the
 * tail of the chunk it was given, costs no copy; other bytes are copied.
 * Returns 0, or TW_ENOMEM (the connection is then aborted). */
int tw_line_receiver_set_line_mode(tw_protocol *p, const void *extra, size_t len);

/* True in line mode. */
bool tw_line_receiver_line_mode(const tw_protocol *p);

/* Empties the buffer and returns what it held (Twisted's clearLineBuffer):
 * inside line_received, everything of the current read after the current
 * line. The bytes are borrowed: valid until the hook you call it from
 * returns (outside hooks: until the next call into this receiver).
 * Returns NULL with *len 0 when nothing was buffered. */
const char *tw_line_receiver_clear_line_buffer(tw_protocol *p, size_t *len);

/* ======================================================= NetstringReceiver */

typedef struct tw_netstring_receiver {
    tw_receiver r;
    size_t max_length;
    size_t expect; /* length of the netstring being read */
    unsigned char state;
    bool broken;
} tw_netstring_receiver;

typedef struct tw_netstring_receiver_ops {
    TW__RECEIVER_HOOKS;
    /* One netstring's payload. When NULL, a string is an error: logged, and
     * the connection closed. */
    void (*string_received)(tw_protocol *p, const char *s, size_t len);
    size_t max_length; /* 0: TW_NETSTRING_MAX_LENGTH */
} tw_netstring_receiver_ops;

/* The .base of a NetstringReceiver: "<length>:<payload>," with a decimal
 * length without sign, spaces or leading zeros ("0:," is the empty string).
 * A length over the limit is refused as soon as its digits show it (before
 * the colon and the payload arrive); exactly the limit is accepted. Any
 * error — a bad length, a missing colon or comma, a payload longer than
 * declared — logs the reason, marks the peer broken
 * (tw_netstring_receiver_broken), drops the rest and loses the connection. */
#define TW_NETSTRING_RECEIVER_BASE(type) \
    TW__RECEIVER_BASE(type, tw_netstring_receiver, tw__netstring_data_received)

/* Writes "<len>:<s>,". Returns what tw_transport_writev returns, or
 * TW_ECLOSED without a transport. */
int tw_netstring_receiver_send_string(tw_protocol *p, const void *s, size_t len);
/* This connection's limit (bytes of payload). Returns 0, or TW_EINVAL above
 * SIZE_MAX / 16. */
int tw_netstring_receiver_set_max_length(tw_protocol *p, size_t max_length);
/* True once the peer broke the format (Twisted's brokenPeer). */
bool tw_netstring_receiver_broken(const tw_protocol *p);

/* ============================================ Int8/16/32StringReceiver */

typedef struct tw_int_receiver {
    tw_receiver r;
    uint32_t max_length;
    uint32_t expect;    /* payload length of the string being read */
    unsigned char have; /* prefix bytes read so far */
    unsigned char state;
    unsigned char prefix[4];
} tw_int_receiver;

/* Twisted's names. */
typedef tw_int_receiver tw_int8_receiver;
typedef tw_int_receiver tw_int16_receiver;
typedef tw_int_receiver tw_int32_receiver;

typedef struct tw_int_receiver_ops {
    TW__RECEIVER_HOOKS;
    /* One string (may be empty). When NULL, a string is an error. */
    void (*string_received)(tw_protocol *p, const char *s, size_t len);
    /* A prefix announced more than the limit. Called as soon as the prefix
     * is complete, before any payload; the string is never delivered, and
     * nothing more is parsed on this connection. Optional: the default logs
     * and loses the connection. */
    void (*length_limit_exceeded)(tw_protocol *p, size_t length);
    uint32_t max_length; /* 0: TW_INT_MAX_LENGTH */
} tw_int_receiver_ops;

/* The .base of a string receiver whose prefix is the payload length as an
 * unsigned big-endian integer of 1, 2 or 4 bytes. */
#define TW_INT8_RECEIVER_BASE(type) TW__RECEIVER_BASE(type, tw_int_receiver, tw__int8_data_received)
#define TW_INT16_RECEIVER_BASE(type) \
    TW__RECEIVER_BASE(type, tw_int_receiver, tw__int16_data_received)
#define TW_INT32_RECEIVER_BASE(type) \
    TW__RECEIVER_BASE(type, tw_int_receiver, tw__int32_data_received)

/* Writes the prefix and s (one writev). Returns TW_ELIMIT, writing nothing,
 * when len does not fit the prefix (256 bytes or more for Int8, 65536 for
 * Int16, 2^32 for Int32: Twisted's StringTooLongError); else what
 * tw_transport_writev returns, or TW_ECLOSED without a transport. */
int tw_int_receiver_send_string(tw_protocol *p, const void *s, size_t len);
/* This connection's limit in bytes (Twisted's MAX_LENGTH). */
void tw_int_receiver_set_max_length(tw_protocol *p, uint32_t max_length);

/* ======================================================= StatefulProtocol */

/* A state handler: gets exactly the number of bytes its state asked for. It
 * changes state with tw_stateful_set_state; if it does not, the same state
 * repeats. */
typedef void (*tw_stateful_fn)(tw_protocol *p, const char *data, size_t len);

typedef struct tw_stateful_protocol {
    tw_receiver r;
    tw_stateful_fn handler;
    size_t want;
    unsigned zero_runs; /* zero-byte states in a row (loop guard) */
} tw_stateful_protocol;

typedef struct tw_stateful_protocol_ops {
    TW__RECEIVER_HOOKS;
    /* The initial state (Twisted's getInitialState), set before your
     * connection_made, which may change it. */
    tw_stateful_fn initial;
    size_t initial_bytes;
} tw_stateful_protocol_ops;

/* The .base of a StatefulProtocol: each time `want` bytes are available the
 * current handler gets exactly those bytes; many units in one read are all
 * processed, in order. A handler may ask for 0 bytes (it is then called with
 * none); more than 64 zero-byte calls in a row, with no byte consumed in
 * between, is a loop: logged, and the connection is lost. */
#define TW_STATEFUL_PROTOCOL_BASE(type) \
    TW__RECEIVER_BASE(type, tw_stateful_protocol, tw__stateful_data_received)

/* Sets the next state: handler fn for the next n bytes. Safe inside
 * handlers (the usual place) and in connection_made. */
void tw_stateful_set_state(tw_protocol *p, tw_stateful_fn fn, size_t n);

/* ================================================= StatefulStringProtocol */

/* Twisted's StatefulStringProtocol, as a helper for the string_received
 * hook of a netstring or int-prefixed receiver: each state is a name and a
 * function returning the next state's name. */
typedef const char *(*tw_string_state_fn)(tw_protocol *p, const char *s, size_t len);
typedef struct tw_string_state {
    const char *name;
    tw_string_state_fn fn;
} tw_string_state;

/* Calls the function of the state named *state (NULL means "init") among
 * states[0..n) and stores the name it returns (a string that must outlive
 * the protocol, e.g. a literal) in *state; a NULL return keeps the state.
 * When the new state is "done", the connection is lost. An unknown state is
 * logged and the string ignored; the connection stays up. */
void tw_stateful_string_received(tw_protocol *p, const tw_string_state *states, size_t n,
                                 const char **state, const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
