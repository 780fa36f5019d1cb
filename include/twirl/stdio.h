/* twirl/stdio.h — a protocol over the program's own standard input and
 * output (Twisted's StandardIO).
 *
 * Any tw_protocol works here: data_received gets what arrives on stdin,
 * tw_transport_write writes to stdout (with the usual write queue, water
 * marks, producers and write limit of twirl/transport.h), and
 * connection_lost comes once, last, as with a socket.
 *
 *     static void echo_data(tw_protocol *p, const void *data, size_t len)
 *     {
 *         tw_transport_write(p->transport, data, len);
 *     }
 *     static const tw_protocol_ops echo_ops = { .data_received = echo_data };
 *     tw_stdio_open(r, tw_protocol_alloc(&echo_ops), NULL, NULL);
 *
 * Input may be a pipe, a socket, a terminal, or a regular file (or
 * /dev/null): files cannot be watched for readiness, so they are read with
 * plain reads, a bounded batch per loop turn, and never starve the loop.
 * Output may be any of those too; a regular file takes every write at once.
 *
 * The descriptors are borrowed, never closed. While the transport is open
 * they are in non-blocking mode — which, for a terminal or a pipe, is shared
 * with every process using the same open file (the parent shell, say) — and
 * their original flags are restored when it ends (before connection_lost)
 * or when the reactor is freed. Do not mix with <stdio.h>'s stdout buffer
 * (or fflush(stdout) before handing stdout over).
 *
 * End of input: the protocol's eof_received, if it has one (it may go on
 * writing, then lose the connection); otherwise tw_transport_lose_connection,
 * which flushes what was written and ends with TW_ECONNECTION_DONE. A write
 * error (the reader of stdout went away: -EPIPE) ends the transport with
 * TW_ECONNECTION_LOST. tw_transport_lose_write_connection flushes, then
 * points the output descriptor at /dev/null so the reader sees end of file
 * while the descriptor number stays valid; reading goes on.
 *
 * Output is not lost at the end: lose_connection flushes before
 * connection_lost; tw_stdio_flush writes out what is queued synchronously
 * (after the loop stopped, before exit); and freeing the reactor flushes
 * for up to TW_STDIO_FREE_FLUSH_SECONDS before ending the transport.
 *
 * All functions must be called on the reactor's thread. */
#ifndef TWIRL_STDIO_H
#define TWIRL_STDIO_H

#include "twirl/protocol.h"
#include "twirl/reactor.h"
#include "twirl/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_stdio tw_stdio;

/* How long tw_reactor_free waits for queued output, in seconds. */
#define TW_STDIO_FREE_FLUSH_SECONDS 5.0

typedef struct tw_stdio_options {
    int in_fd;  /* read from this descriptor; -1: no input */
    int out_fd; /* write to this one; -1: no output. Must differ from in_fd. */
} tw_stdio_options;

/* Standard input and output. */
#define TW_STDIO_OPTIONS_INIT \
    {                         \
        0, 1                  \
    }

/* Connects protocol p (from tw_protocol_alloc or a factory's build; its
 * factory field is left as it is) to the descriptors in opts (NULL: 0 and
 * 1). p is taken whatever the outcome: on failure destroy runs and it is
 * freed before this returns; on success the library frees it after
 * connection_lost. Calls connection_made before returning; reading starts
 * from the loop. Stores the transport in *out (if not NULL; owned by the
 * library, valid until connection_lost returns). Returns 0, TW_EINVAL (no
 * descriptor, both the same, or one not open), TW_EBUSY if another
 * standard I/O transport of this reactor uses one of them, TW_ECLOSED while
 * the reactor is being freed, TW_ENOMEM, or -errno. */
int tw_stdio_open(tw_reactor *r, tw_protocol *p, const tw_stdio_options *opts, tw_stdio **out);

/* The transport: the protocol's p->transport. */
tw_transport *tw_stdio_transport(tw_stdio *s);

/* Writes out what is queued, blocking up to timeout seconds (negative: no
 * limit). Meant for the end of a program, once the loop has stopped; safe
 * anywhere, but it blocks the loop while it waits. A pending
 * lose_connection completes when the queue empties (connection_lost then
 * follows from the loop, or from tw_reactor_free). Returns 0 when nothing
 * is left, TW_ETIMEDOUT if bytes remain, TW_ECLOSED once closed, or the
 * -errno that ended output (e.g. -EPIPE). */
int tw_stdio_flush(tw_stdio *s, double timeout);

#ifdef __cplusplus
}
#endif
#endif
