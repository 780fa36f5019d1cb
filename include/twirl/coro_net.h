/* twirl/coro_net.h — connections for coroutines: a client or a server
 * written top to bottom, as with Twisted's inlineCallbacks, instead of as
 * protocol callbacks.
 *
 *     static tw_result client(void *arg)
 *     {
 *         tw_coro_stream *s;
 *         tw_failure *err;
 *         if (tw_coro_connect(NULL, "tcp:host=127.0.0.1:port=8000", &s, &err) < 0)
 *             return tw_err(err);                 // refused, timed out, bad string...
 *         tw_coro_write_str(s, "hello\r\n", NULL);
 *         tw_coro_bytes line;
 *         if (tw_coro_read_until(s, "\r\n", 1024, &line, &err) == 0)
 *             printf("Server said: %.*s", (int)line.len, line.data);
 *         tw_coro_close(s, NULL);
 *         tw_reactor_stop(tw_coro_reactor());
 *         return err ? tw_err(err) : TW_RESULT_NONE;
 *     }
 *
 *     static tw_result echo(tw_coro_stream *s, void *arg)   // one per connection
 *     {
 *         tw_coro_bytes chunk;
 *         while (tw_coro_read_some(s, 0, &chunk, NULL) == 0)
 *             if (tw_coro_write(s, chunk.data, chunk.len, NULL) < 0)
 *                 break;
 *         return TW_RESULT_NONE;                  // the server closes s
 *     }
 *     tw_coro_serve(r, "tcp:8000", echo, NULL, &port, err, sizeof err);
 *
 * A stream is a protocol that keeps the bytes it receives in a buffer and
 * wakes the coroutine waiting in a read (each waiting read is a deferred,
 * fired when the buffer may answer it). The calls below wait with tw_await,
 * so they belong inside a coroutine (twirl/coro.h) of the stream's reactor:
 * outside one, a call that would have to wait fails with TW_EINVAL.
 *
 * Results and errors. Each call returns 0, or a negative code: a library
 * code (TW_E..., -errno) or TW_EUNHANDLED for a failure of another domain.
 * With err not NULL, a failure also stores the tw_failure (the caller's
 * reference, with a message naming the call; NULL on success). The codes:
 *   TW_ECONNECTION_DONE  the peer closed the connection (or its writing
 *                        side) cleanly before the read could be answered;
 *   TW_ECONNECTION_LOST  the connection broke (the failure's cause says
 *                        why, e.g. -ECONNRESET);
 *   TW_ELIMIT            read_until found no delimiter within max bytes;
 *   TW_ECLOSED           the stream was closed or aborted by its owner;
 *   TW_EBUSY             another coroutine is reading (or waiting to write)
 *                        on the same stream: one reader and one writer at a
 *                        time;
 *   TW_ECANCELED         the coroutine was cancelled while it waited
 *                        (tw_deferred_cancel on its deferred; a timeout
 *                        added to that deferred with tw_deferred_add_timeout
 *                        cancels too, and the coroutine's deferred then
 *                        fails with TW_ETIMEDOUT).
 *
 * A failed or cancelled read consumes nothing. The bytes it could not use
 * stay buffered: after read_until fails at the end of the stream, or with
 * TW_ELIMIT, read_some returns what had arrived (nothing received is ever
 * dropped), and tw_coro_stream_buffered says how much that is. A cancelled
 * wait leaves the stream as it was, open and usable: the next read sees
 * every byte, and bytes a cancelled write handed over are still sent.
 *
 * Bytes read are lent, not copied: a tw_coro_bytes points into the stream's
 * buffer and stays valid until the next read call on that stream, or its
 * close or abort, whichever comes first — however much arrives meanwhile,
 * and across any other await. Copy what must live longer. The buffer
 * allocates nothing in the steady state.
 *
 * Flow control, both ways. tw_coro_write returns at once while the
 * transport's write buffer stays below its high-water mark
 * (TW_WRITE_HIGH_WATER by default); past it, it waits until the buffer
 * drains to the low-water mark, so a writer can never outrun a slow reader.
 * On the read side, the stream stops reading from the socket while it holds
 * TW_CORO_READ_HIGH_WATER bytes that no read is waiting for, so a peer that
 * sends faster than the coroutine reads is paused by TCP, not buffered
 * without bound; a waiting read takes what it needs (up to max or n).
 *
 * Threads and reentrancy: a stream belongs to its reactor's thread. A read
 * is answered synchronously inside the callback that brought the bytes, so
 * the coroutine runs inside it (as a resumed coroutine always does); what it
 * does there (write, close, spawn, stop the reactor) is safe. */
#ifndef TWIRL_CORO_NET_H
#define TWIRL_CORO_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/coro.h"
#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/tcp.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    /* read_until's and read_some's max when 0 is given. */
    TW_CORO_READ_MAX = 64 * 1024,
    /* Bytes buffered with no read waiting beyond which reading pauses. */
    TW_CORO_READ_HIGH_WATER = 64 * 1024
};

/* A connection as coroutines see it. Opaque. */
typedef struct tw_coro_stream tw_coro_stream;

/* Bytes lent by a read: data[0..len), valid until the next read call on the
 * same stream or its close/abort. Not NUL-terminated (print with "%.*s"). */
typedef struct tw_coro_bytes {
    const char *data;
    size_t len;
} tw_coro_bytes;

/* ------------------------------------------------------------ clients */

/* Connects to an endpoint description (twirl/endpoint.h: "tcp:host=H:port=P",
 * "unix:/path", or any registered client type such as TLS) on r (NULL: the
 * running coroutine's reactor) and waits until the connection is up.
 * Stores the stream, the caller's to close (tw_coro_close or
 * tw_coro_abort), in *out and returns 0; or returns a negative code with
 * *out NULL: TW_ESYNTAX (the failure's message quotes the description and
 * names the bad part), the connection's failure (-ECONNREFUSED, TW_ETIMEDOUT,
 * TW_EDNS...), TW_ECANCELED (the coroutine was cancelled: every attempt is
 * stopped and nothing is left behind), TW_EINVAL (no reactor, or outside a
 * coroutine), TW_ENOMEM. description is borrowed for the call. */
int tw_coro_connect(tw_reactor *r, const char *description, tw_coro_stream **out, tw_failure **err);

/* ------------------------------------------------------------ reading */

/* Reads through the first occurrence of delim (a non-empty C string): the
 * bytes returned end with it. Waits until it has arrived. The delimiter must
 * end within the first max bytes (0: TW_CORO_READ_MAX): once max bytes are
 * buffered without that, fails with TW_ELIMIT (a line longer than max,
 * delimiter included, cannot be read this way; its bytes stay buffered for
 * read_some). Fails with TW_ECONNECTION_DONE/LOST when the stream ends
 * first, TW_EINVAL for an empty delimiter or one longer than max. delim is
 * borrowed for the call. */
int tw_coro_read_until(tw_coro_stream *s, const char *delim, size_t max, tw_coro_bytes *out,
                       tw_failure **err);

/* Reads exactly n bytes (n > 0), waiting for them all; the stream buffers up
 * to n bytes for it. Fails with TW_ECONNECTION_DONE/LOST when the stream
 * ends first (the bytes that did arrive stay buffered). */
int tw_coro_read_exactly(tw_coro_stream *s, size_t n, tw_coro_bytes *out, tw_failure **err);

/* Reads what is buffered, at most max bytes (0: TW_CORO_READ_MAX), waiting
 * only when nothing is: out->len is at least 1. At the end of the stream,
 * once every buffered byte was read, fails with TW_ECONNECTION_DONE (or
 * _LOST): the usual loop is `while (tw_coro_read_some(...) == 0)`. */
int tw_coro_read_some(tw_coro_stream *s, size_t max, tw_coro_bytes *out, tw_failure **err);

/* Bytes received and not yet read. */
size_t tw_coro_stream_buffered(const tw_coro_stream *s);

/* ------------------------------------------------------------ writing */

/* Writes len bytes (copied, or sent at once); waits while the transport's
 * write buffer is over its high-water mark (see "Flow control"). 0 once the
 * bytes are handed over — not once the peer has them. Fails with
 * TW_ECLOSED after close or abort, TW_ECONNECTION_DONE/LOST once the
 * connection ended (bytes still queued then are lost), TW_ELIMIT when the
 * transport's write limit is exceeded (it aborts the connection). A
 * cancelled wait keeps the bytes queued. data is borrowed for the call. */
int tw_coro_write(tw_coro_stream *s, const void *data, size_t len, tw_failure **err);
/* tw_coro_write of a NUL-terminated string (without the NUL). */
int tw_coro_write_str(tw_coro_stream *s, const char *str, tw_failure **err);

/* ------------------------------------------------------------ closing */

/* Closes the connection after everything written is sent (Twisted's
 * loseConnection) and, inside a coroutine, waits until it is closed. Then
 * frees s, except for a stream a server lent to its handler (see
 * tw_coro_serve), which stays valid, closed, until the handler returns.
 * Returns 0 for a clean close, or the code of the failure that ended the
 * connection (TW_ECONNECTION_LOST: queued bytes may not have been
 * delivered). Cancelled while it waits, it still frees s (the connection
 * goes on closing, in the background) and returns TW_ECANCELED. Outside a
 * coroutine it does not wait, and returns 0. NULL is a no-op. */
int tw_coro_close(tw_coro_stream *s, tw_failure **err);

/* Closes now, dropping unsent bytes (abortConnection), and frees s (as
 * above for a lent stream). Never waits; safe anywhere on the reactor's
 * thread. NULL is a no-op. */
void tw_coro_abort(tw_coro_stream *s);

/* The transport (for tw_transport_get_peer, set_option...), or NULL once
 * the connection ended. Borrowed. Its producer slot is the stream's own
 * (that is how writes wait): registering another fails with TW_EBUSY. */
tw_transport *tw_coro_stream_transport(tw_coro_stream *s);

/* ------------------------------------------------------------ servers */

/* A connection's coroutine: runs from connection_made, with a stream lent
 * for the call (see tw_coro_close): other coroutines it lets use the stream
 * must be done with it before it returns. Its result is the coroutine's: a
 * failure nobody handles is logged. */
typedef tw_result (*tw_coro_stream_fn)(tw_coro_stream *s, void *arg);

/* A factory whose every connection runs fn(stream, arg) as a coroutine of r
 * (opts as for tw_coro_spawn; NULL for the defaults; copied). Use it with
 * tw_listen, an endpoint, a TLS wrapper, or the test doubles of
 * twirl/testing.h. When fn returns (or fails), the stream is closed
 * (flushed) and freed. A connection whose coroutine cannot be spawned (out
 * of memory, reactor being freed) is aborted, and logged. arg is borrowed
 * until the last connection is gone. NULL when out of memory or for r or fn
 * NULL. */
tw_factory *tw_coro_factory_new(tw_reactor *r, tw_coro_stream_fn fn, void *arg,
                                const tw_coro_options *opts);
/* Gives the factory up: it is freed once no port uses it and every
 * connection it built is gone (so it may be called as soon as the ports
 * are stopped). NULL is a no-op. */
void tw_coro_factory_free(tw_factory *f);

/* Listens on a server endpoint description ("tcp:8000",
 * "tcp:0:interface=127.0.0.1", "unix:/run/app.sock"...) and runs fn(stream,
 * arg) as a coroutine for each accepted connection (tw_coro_factory_new).
 * Stores the port (the caller's: tw_port_stop_listening, after which
 * connections already accepted carry on to their end; tw_port_address
 * tells the port 0 picked) and returns 0; or returns TW_ESYNTAX,
 * -EADDRINUSE... with a message in err (NULL/errlen 0: none), or TW_ENOMEM.
 * Safe inside callbacks. */
int tw_coro_serve(tw_reactor *r, const char *description, tw_coro_stream_fn fn, void *arg,
                  tw_port **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
