/* basic_internal.h — the machinery shared by the framing receivers of
 * twirl/basic.h: buffers, reentrancy, pause/stop, lifecycle.
 *
 * Pending input is, in order: r->buf[off, len) (owned), then r->in[0,
 * in_len) (the rest of the read being parsed, borrowed from the caller),
 * then r->pend (bytes handed in while a hook ran). A parse loop takes units
 * from buf first and from `in` directly once buf is empty; only an
 * unfinished unit is copied into buf.
 *
 * The rule that keeps the pointers handed to hooks valid: buf is never
 * written, grown or freed while a hook runs. Hooks that hand bytes in write
 * to pend; the loop moves pend into buf between hooks (tw__rx_absorb), and
 * memory is released only when the loop is done (tw__rx_leave). */
#ifndef TWIRL_PROTO_BASIC_INTERNAL_H
#define TWIRL_PROTO_BASIC_INTERNAL_H

#include <stdarg.h>

#include "twirl/basic.h"
#include "twirl/log.h"

enum tw__rx_flags {
    TW__RX_BUSY = 1u << 0,    /* a parse loop is on the stack */
    TW__RX_PAUSED = 1u << 1,  /* pause_producing */
    TW__RX_STOPPED = 1u << 2, /* stop_producing, out of memory, or a fatal error */
    TW__RX_RAW = 1u << 3,     /* LineReceiver raw mode */
    TW__RX_INIT = 1u << 4,    /* per-kind defaults applied */
    TW__RX_TOUCHED = 1u << 5  /* a hook called into the receiver: re-check */
};

/* The common prefix of every receiver ops table. */
typedef struct tw__receiver_ops {
    TW__RECEIVER_HOOKS;
} tw__receiver_ops;

static inline tw_receiver *tw__rx(tw_protocol *p)
{
    return (tw_receiver *)p;
}

static inline const tw__receiver_ops *tw__rx_ops(const tw_protocol *p)
{
    return (const tw__receiver_ops *)p->ops;
}

/* True if p was made from one of the BASE macros. */
static inline bool tw__rx_is_receiver(const tw_protocol *p)
{
    return p->ops->connection_made == tw__receiver_connection_made;
}

/* Per-kind defaults (delimiter, limits, initial state); idempotent. */
void tw__line_init(tw_protocol *p);
void tw__netstring_init(tw_protocol *p);
void tw__int_init(tw_protocol *p);
void tw__stateful_init(tw_protocol *p);

/* Starts a parse of data[len]. Returns false when the caller must not
 * parse: a loop is already running (the bytes were queued in pend) or the
 * receiver is stopped (the bytes were dropped). */
bool tw__rx_enter(tw_receiver *r, const void *data, size_t len);

/* Ends a parse: keeps what was not parsed (unless stopped or closing) in
 * order, clears the busy flag and frees buffers that are empty. */
void tw__rx_leave(tw_receiver *r);

/* Moves pend to the end of the pending input. Call between hooks, at the
 * top of each loop turn. Returns 0 or TW_ENOMEM (the receiver is then
 * stopped and the connection aborted). Inline for the common case: nothing
 * was handed in. */
int tw__rx_absorb_pend(tw_receiver *r);
static inline int tw__rx_absorb(tw_receiver *r)
{
    return r->pend_len ? tw__rx_absorb_pend(r) : 0;
}

/* Appends bytes to buf / moves the rest of `in` into buf. Between hooks
 * only. 0 or TW_ENOMEM (receiver stopped, connection aborted). */
int tw__rx_append(tw_receiver *r, const void *data, size_t len);
int tw__rx_spill(tw_receiver *r);

/* Empties all pending input (buf, in, pend) without freeing memory. */
void tw__rx_discard(tw_receiver *r);

/* True when the transport is closing (or closed). */
static inline bool tw__rx_closing(const tw_receiver *r)
{
    const tw_transport *t = r->base.transport;
    return t && t->state != TW_TRANSPORT_OPEN;
}

/* True when the loop must stop delivering: stopped or paused receiver, or
 * a transport that is closing. Checked after every hook: the hook may have
 * done any of these. */
static inline bool tw__rx_halted(const tw_receiver *r)
{
    return (r->flags & (TW__RX_PAUSED | TW__RX_STOPPED)) || tw__rx_closing(r);
}

/* The peer broke the format: logs (warn, domain, with the peer's address
 * and the reason), stops the receiver and loses the connection. */
void tw__rx_violation(tw_receiver *r, const char *domain, const char *fmt, ...) TW_PRINTF(3, 4);

/* A user hook the receiver needs is missing: logs (error) once, stops the
 * receiver and loses the connection (Twisted raises NotImplementedError). */
void tw__rx_missing_hook(tw_receiver *r, const char *domain, const char *hook);

/* Pending bytes available right now from the front of the input: buf if it
 * holds anything, else `in`. */
static inline const char *tw__rx_front(const tw_receiver *r, size_t *n)
{
    if (r->len > r->off) {
        *n = r->len - r->off;
        return r->buf + r->off;
    }
    *n = r->in_len;
    return r->in;
}

/* Consumes k bytes from the front (as returned by tw__rx_front). */
static inline void tw__rx_consume(tw_receiver *r, size_t k)
{
    if (r->len > r->off) {
        r->off += k;
        if (r->off == r->len)
            r->off = r->len = r->scan = 0;
    } else {
        r->in += k;
        r->in_len -= k;
    }
}

/* Takes the next `need` bytes of input as one contiguous unit. Returns a
 * pointer to them (in buf or in `in`) and consumes them, or NULL when fewer
 * are pending (then everything pending is in buf, ready for more). The
 * pointer is valid until the loop writes to buf again, i.e. across one hook
 * call. On TW_ENOMEM returns NULL with the receiver stopped. */
const char *tw__rx_take(tw_receiver *r, size_t need);

#endif
