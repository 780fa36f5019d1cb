/* ctest: label=integration timeout=240 */
/* TCP and Unix stream transports over real loopback sockets: echo, close
 * semantics, half-close, flow control, hostile conditions. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "tt.h"
#include "twirl/log.h"
#include "twirl/tcp.h"

/* ------------------------------------------------------------ protocols */

typedef struct stats {
    int made, lost, eof, refused_builds;
    int lost_code;  /* TW_ECONNECTION_DONE or _LOST */
    int lost_cause; /* code of the cause, if any */
    size_t received;
    char buf[256];
    size_t buflen;
    int after_lost;     /* calls that came after connection_lost: must stay 0 */
    int lost_peer_port; /* the peer's port, asked inside connection_lost */
} stats;

typedef struct peer {
    tw_protocol base;
    int lost;
} peer;

static stats *st(tw_protocol *p)
{
    return p->factory->user_data;
}

static void rec_made(tw_protocol *p)
{
    st(p)->made++;
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    stats *s = st(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    size_t n = len < sizeof s->buf - s->buflen ? len : sizeof s->buf - s->buflen;
    memcpy(s->buf + s->buflen, data, n);
    s->buflen += n;
    s->received += len;
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = st(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    ((peer *)p)->lost = 1;
    s->lost++;
    s->lost_code = tw_failure_code(reason);
    const tw_failure *cause = tw_failure_cause(reason);
    s->lost_cause = cause ? tw_failure_code(cause) : 0;
    tw_address who;
    if (tw_transport_get_peer(p->transport, &who) == 0)
        s->lost_peer_port = tw_address_port(&who);
}

static void echo_data(tw_protocol *p, const void *data, size_t len)
{
    rec_data(p, data, len);
    tw_transport_write(p->transport, data, len);
}

static const tw_protocol_ops echo_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = echo_data,
    .connection_lost = rec_lost,
};

/* A client that says hello on connect and records what comes back. */
static void hello_made(tw_protocol *p)
{
    rec_made(p);
    tw_transport_write_str(p->transport, "hello");
}

static const tw_protocol_ops hello_ops = {
    .size = sizeof(peer),
    .connection_made = hello_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
};

static const tw_protocol_ops recorder_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
};

typedef struct want {
    stats *s;
    size_t bytes;
    int lost;
} want;

static bool got(void *arg)
{
    want *w = arg;
    return w->s->received >= w->bytes && w->s->lost >= w->lost;
}

static uint16_t port_of(tw_port *p)
{
    return tw_address_port(tw_port_address(p));
}

/* ------------------------------------------------------------ echo */

static void echo_round_trip(const char *iface, const char *connect_host)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&echo_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&hello_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, iface, 0, NULL, &server, &port), 0);
    uint16_t pn = port_of(port);
    assert_true(pn > 0);
    assert_int_equal(tw_connect_tcp(r, connect_host, pn, NULL, &client, NULL), 0);
    want w = { &cs, 5, 0 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_memory_equal(cs.buf, "hello", 5);
    assert_int_equal(ss.made, 1);
    assert_int_equal(cs.made, 1);
    assert_int_equal(tw_reactor_connection_count(r), 2);
    tw_port_stop_listening(port);
    tw_reactor_free(r); /* connections still open: aborted, with connection_lost */
}

/* A peer that writes as fast as it can while it reads the echo back (the
 * bench's "stream" shape): the server must send as fast as it receives, so
 * its write queue stays bounded instead of growing until the write limit
 * aborts the connection. */
enum { STREAM_TOTAL = 32 << 20, STREAM_CHUNK = 64 << 10 };

typedef struct streamer {
    uint16_t port;
    size_t sent, received;
    int error;
} streamer;

/* A blocking client socket connected to 127.0.0.1:port, its receive buffer
 * set first when rcvbuf is not 0; or -errno. */
static int connect_loopback_rcvbuf(uint16_t port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return -err;
    }
    return fd;
}

static int connect_loopback(uint16_t port)
{
    return connect_loopback_rcvbuf(port, 0);
}

static void stream_both_ways(streamer *sp)
{
    int fd = connect_loopback(sp->port);
    if (fd < 0) {
        sp->error = -fd;
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char out[STREAM_CHUNK], in[STREAM_CHUNK];
    memset(out, 'x', sizeof out);
    while (sp->received < STREAM_TOTAL) {
        struct pollfd pfd = { fd, POLLIN | (sp->sent < STREAM_TOTAL ? POLLOUT : 0), 0 };
        if (poll(&pfd, 1, 10000) <= 0) {
            sp->error = ETIMEDOUT;
            break;
        }
        if (pfd.revents & POLLOUT) {
            size_t n = STREAM_TOTAL - sp->sent < sizeof out ? STREAM_TOTAL - sp->sent : sizeof out;
            ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
            if (w > 0)
                sp->sent += (size_t)w;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t got = recv(fd, in, sizeof in, 0);
            if (got <= 0 && !(got < 0 && errno == EAGAIN)) {
                sp->error = got < 0 ? errno : ECONNRESET;
                break;
            }
            if (got > 0)
                sp->received += (size_t)got;
        }
    }
    close(fd);
}

static size_t g_max_buffered;

static void echo_watch_data(tw_protocol *p, const void *data, size_t len)
{
    echo_data(p, data, len);
    size_t b = tw_transport_buffered(p->transport);
    if (b > g_max_buffered)
        g_max_buffered = b;
}

static const tw_protocol_ops echo_watch_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = echo_watch_data,
    .connection_lost = rec_lost,
};

static bool stream_done(void *arg)
{
    stats *s = arg;
    return s->lost > 0;
}

static void echo_keeps_up_with_a_streaming_peer(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&echo_watch_ops, &ss);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    g_max_buffered = 0;
    /* The peer is a child process, not a thread: valgrind runs one thread
     * at a time and keeps its lock while this one waits in io_uring_enter. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        streamer sp = { .port = port_of(port) };
        stream_both_ways(&sp);
        _exit(sp.error == 0 && sp.received == STREAM_TOTAL ? 0 : 1);
    }
    bool done = tt_run_until(r, stream_done, &ss, 120);
    int status = 0;
    if (!done)
        kill(child, SIGKILL);
    assert_int_equal(waitpid(child, &status, 0), child);
    print_message("%s: %zu MiB echoed, server queue at most %zu KiB\n", tw_reactor_backend(r),
                  ss.received >> 20, g_max_buffered >> 10);
    assert_true(done);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(ss.received, STREAM_TOTAL);
    /* The kernel's socket buffers hold several MiB; the queue in front of
     * them must not grow toward the total. */
    assert_true(g_max_buffered <= 8u << 20);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* Every echoed byte must come back as sent, while a second connection
 * whose peer does not read holds megabytes of echo in the server's queue.
 * (Under io_uring an echo is sent from the very buffers it was received
 * in; those held by the stalled queue must stay intact, and enough must
 * stay free for the other connection to keep receiving.) */
enum { CHECKED_TOTAL = 24 << 20, STALLED_TOTAL = 8 << 20 };

static unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)(((i ^ (i >> 13)) * 131u) + (i >> 16) + seed);
}

/* Sends to_send pattern bytes on fd while it receives to_receive and checks
 * them against the same pattern; returns 0 or an errno (EILSEQ: a byte
 * came back wrong). */
static int exchange(int fd, size_t to_send, size_t to_receive, unsigned seed)
{
    static unsigned char out[STREAM_CHUNK], in[STREAM_CHUNK];
    size_t sent = 0, received = 0;
    while (sent < to_send || received < to_receive) {
        struct pollfd pfd = { fd,
                              (received < to_receive ? POLLIN : 0) | (sent < to_send ? POLLOUT : 0),
                              0 };
        if (poll(&pfd, 1, 10000) <= 0)
            return ETIMEDOUT;
        if (pfd.revents & POLLOUT) {
            size_t n = to_send - sent < sizeof out ? to_send - sent : sizeof out;
            for (size_t i = 0; i < n; i++)
                out[i] = pattern(sent + i, seed);
            ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t got = recv(fd, in, sizeof in, 0);
            if (got <= 0 && !(got < 0 && errno == EAGAIN))
                return got < 0 ? errno : ECONNRESET;
            for (ssize_t i = 0; i < got; i++)
                if (in[i] != pattern(received + (size_t)i, seed))
                    return EILSEQ;
            if (got > 0)
                received += (size_t)got;
        }
    }
    return 0;
}

/* The child: a stalled connection (a small receive buffer, nothing read)
 * first, then a checked stream on another, then the stalled one reads and
 * checks its echo. */
static int stall_one_stream_another(uint16_t port)
{
    int stalled = connect_loopback_rcvbuf(port, 4096);
    if (stalled < 0)
        return 10;
    fcntl(stalled, F_SETFL, fcntl(stalled, F_GETFL) | O_NONBLOCK);
    if (exchange(stalled, STALLED_TOTAL, 0, 7) != 0)
        return 11;
    int fd = connect_loopback(port);
    if (fd < 0)
        return 12;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int rc = exchange(fd, CHECKED_TOTAL, CHECKED_TOTAL, 0);
    close(fd);
    if (rc != 0)
        return rc == EILSEQ ? 13 : 14;
    rc = exchange(stalled, 0, STALLED_TOTAL, 7);
    close(stalled);
    if (rc != 0)
        return rc == EILSEQ ? 17 : 16;
    return 0;
}

static bool child_exited(void *arg)
{
    int *status = arg;
    return waitpid((pid_t)status[0], &status[1], WNOHANG) == (pid_t)status[0];
}

static void echo_keeps_every_byte_beside_a_stalled_peer(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&echo_watch_ops, &ss);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    g_max_buffered = 0;
    pid_t child = fork(); /* a process: see echo_keeps_up_with_a_streaming_peer */
    assert_true(child >= 0);
    if (child == 0)
        _exit(stall_one_stream_another(port_of(port)));
    int status[2] = { child, 0 };
    bool done = tt_run_until(r, child_exited, status, 120);
    if (!done) {
        kill(child, SIGKILL);
        waitpid(child, &status[1], 0);
    }
    print_message("%s: %zu MiB echoed, stalled queue at most %zu KiB\n", tw_reactor_backend(r),
                  ss.received >> 20, g_max_buffered >> 10);
    assert_true(done);
    assert_true(WIFEXITED(status[1]));
    assert_int_equal(WEXITSTATUS(status[1]), 0);
    assert_int_equal(ss.received, CHECKED_TOTAL + STALLED_TOTAL);
    /* the stalled echo really waited in the server's queue */
    assert_true(g_max_buffered >= 1u << 20);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

static void echo_ipv4(void **state)
{
    echo_round_trip("127.0.0.1", "127.0.0.1");
}

static void echo_ipv6(void **state)
{
    echo_round_trip("::1", "::1");
}

static void echo_dual_stack(void **state)
{
    echo_round_trip("::", "127.0.0.1");
}

/* ------------------------------------------------------------ closing */

/* Server writes a megabyte through a tiny send buffer and closes at once:
 * every byte must arrive before the clean close. */
typedef struct blaster {
    tw_protocol base;
} blaster;

enum { MEG = 1 << 20 };

static void blast_made(tw_protocol *p)
{
    tw_transport_set_option(p->transport, TW_OPT_SNDBUF, 4096);
    tw_transport_set_option(p->transport, TW_OPT_WRITE_LIMIT, 4 * MEG);
    char *block = malloc(MEG);
    for (size_t i = 0; i < MEG; i++)
        block[i] = (char)(i * 7);
    assert_int_equal(tw_transport_write(p->transport, block, MEG), 0);
    free(block);
    assert_true(tw_transport_buffered(p->transport) > 0);
    tw_transport_lose_connection(p->transport);
    /* writing after lose_connection is refused */
    assert_int_equal(tw_transport_write(p->transport, "x", 1), TW_ECLOSED);
}

static const tw_protocol_ops blast_ops = {
    .size = sizeof(peer),
    .connection_made = blast_made,
};

static void lose_connection_flushes_everything(void **state)
{
    tw_reactor *r = tt_reactor();
    stats cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&blast_ops, NULL);
    tw_factory client = TW_FACTORY_INIT(&recorder_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &cs, MEG, 1 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_int_equal(cs.received, MEG);
    assert_int_equal(cs.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(cs.after_lost, 0);
    tw_port_stop_listening(port);
    assert_true(tt_run_until(r, got, &w, 1));
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_reactor_free(r);
}

/* The peer resets while we still have queued output. */
static void reset_made(tw_protocol *p)
{
    tw_transport_set_option(p->transport, TW_OPT_SNDBUF, 4096);
    char *block = calloc(1, MEG);
    tw_transport_write(p->transport, block, MEG);
    free(block);
}

static const tw_protocol_ops writer_ops = {
    .size = sizeof(peer),
    .connection_made = reset_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
};

static void aborter_made(tw_protocol *p)
{
    rec_made(p);
    tw_transport_abort_connection(p->transport);
    tw_transport_abort_connection(p->transport); /* twice is harmless */
}

static const tw_protocol_ops aborter_ops = {
    .size = sizeof(peer),
    .connection_made = aborter_made,
    .connection_lost = rec_lost,
};

static void peer_reset_mid_write(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&writer_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&aborter_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_int_equal(ss.lost_code, TW_ECONNECTION_LOST);
    assert_true(ss.lost_cause == -ECONNRESET || ss.lost_cause == -EPIPE);
    assert_int_equal(cs.lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(cs.lost_cause, -ECONNABORTED);
    assert_int_equal(ss.after_lost + cs.after_lost, 0);
    /* the peer is still known after the reset, as Twisted's transport.client */
    assert_true(ss.lost_peer_port > 0);
    assert_int_equal(cs.lost_peer_port, port_of(port));
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* Callbacks that close their own connection, another one, or stop the
 * reactor, from inside data_received. */
typedef struct closer_ctx {
    tw_reactor *r;
    tw_protocol *others[4];
    int nothers;
    int mode; /* 0: own, 1: other, 2: stop reactor */
    stats s;
} closer_ctx;

typedef struct closer {
    tw_protocol base;
    int lost;
} closer;

static void closer_made(tw_protocol *p)
{
    closer_ctx *c = p->factory->user_data;
    c->others[c->nothers++] = p;
    c->s.made++;
}

static void closer_data(tw_protocol *p, const void *data, size_t len)
{
    closer_ctx *c = p->factory->user_data;
    if (((closer *)p)->lost)
        c->s.after_lost++;
    c->s.received += len;
    if (c->mode == 0) {
        tw_transport_lose_connection(p->transport);
        tw_transport_lose_connection(p->transport);
    } else if (c->mode == 1) {
        for (int i = 0; i < c->nothers; i++)
            if (c->others[i] != p && c->others[i])
                tw_transport_abort_connection(c->others[i]->transport);
    } else {
        tw_reactor_stop(c->r);
    }
}

static void closer_lost(tw_protocol *p, const tw_failure *reason)
{
    closer_ctx *c = p->factory->user_data;
    ((closer *)p)->lost = 1;
    for (int i = 0; i < c->nothers; i++)
        if (c->others[i] == p)
            c->others[i] = NULL;
    c->s.lost++;
}

static const tw_protocol_ops closer_ops = {
    .size = sizeof(closer),
    .connection_made = closer_made,
    .data_received = closer_data,
    .connection_lost = closer_lost,
};

static void stop_later(void *arg)
{
    tw_reactor_stop(arg);
}

static void callbacks_close_things(void **state)
{
    for (int mode = 0; mode < 3; mode++) {
        closer_ctx cc = { .r = tt_reactor(), .mode = mode };
        stats cs = { 0 };
        tw_factory server = TW_FACTORY_INIT(&closer_ops, &cc);
        tw_factory client = TW_FACTORY_INIT(&hello_ops, &cs);
        tw_port *port;
        assert_int_equal(tw_listen_tcp(cc.r, "127.0.0.1", 0, NULL, &server, &port), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(tw_connect_tcp(cc.r, "127.0.0.1", port_of(port), NULL, &client, NULL),
                             0);
        if (mode == 2) {
            tw_call_later(cc.r, 5, stop_later, cc.r); /* watchdog */
            assert_int_equal(tw_reactor_run(cc.r), 0);
            assert_true(cc.s.received > 0);
        } else {
            want w = { &cs, 0, mode == 0 ? 2 : 1 };
            assert_true(tt_run_until(cc.r, got, &w, 5));
            assert_int_equal(cc.s.after_lost, 0);
        }
        tw_port_stop_listening(port);
        tw_reactor_free(cc.r);
    }
}

/* ------------------------------------------------------------ half-close */

static void half_eof(tw_protocol *p)
{
    stats *s = st(p);
    s->eof++;
    /* the peer stopped writing; we answer and then close */
    tw_transport_write_str(p->transport, "bye");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops half_server_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = half_eof,
    .connection_lost = rec_lost,
};

static void half_client_made(tw_protocol *p)
{
    rec_made(p);
    tw_transport_write_str(p->transport, "request");
    assert_int_equal(tw_transport_lose_write_connection(p->transport), 0);
    assert_int_equal(tw_transport_write_str(p->transport, "late"), TW_ECLOSED);
}

static const tw_protocol_ops half_client_ops = {
    .size = sizeof(peer),
    .connection_made = half_client_made,
    .data_received = rec_data,
    .connection_lost = rec_lost,
};

static void half_close_both_ways(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&half_server_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&half_client_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &cs, 3, 1 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_int_equal(ss.eof, 1);
    assert_memory_equal(ss.buf, "request", 7);
    assert_memory_equal(cs.buf, "bye", 3);
    assert_int_equal(cs.lost_code, TW_ECONNECTION_DONE);
    want ws = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &ws, 5));
    assert_int_equal(ss.lost_code, TW_ECONNECTION_DONE);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* Without eof_received, a half-close from the peer still gets everything
 * we wrote (unlike Twisted, which drops it). */
static void slow_answer(void *arg)
{
    tw_protocol *p = arg;
    if (p->transport)
        tw_transport_write_str(p->transport, "late answer");
}

static void answer_data(tw_protocol *p, const void *data, size_t len)
{
    rec_data(p, data, len);
    tw_transport_write_str(p->transport, "answer");
}

static const tw_protocol_ops answer_ops = {
    .size = sizeof(peer),
    .data_received = answer_data,
    .connection_lost = rec_lost,
};

static void half_close_without_eof_hook_keeps_replies(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&answer_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&half_client_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &cs, 6, 1 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_memory_equal(cs.buf, "answer", 6);
    (void)slow_answer;
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ flow control */

typedef struct pausing {
    tw_protocol base;
} pausing;

static int g_paused_deliveries;
static int g_paused;

static void pausing_data(tw_protocol *p, const void *data, size_t len)
{
    if (g_paused)
        g_paused_deliveries++;
    rec_data(p, data, len);
    if (st(p)->received >= 1000 && st(p)->received < 2000 && !g_paused) {
        g_paused = 1;
        tw_transport_pause_producing(p->transport);
    }
}

static const tw_protocol_ops pausing_ops = {
    .size = sizeof(peer),
    .connection_made = rec_made,
    .data_received = pausing_data,
    .connection_lost = rec_lost,
};

typedef struct sender {
    tw_protocol base;
} sender;

static void sender_made(tw_protocol *p)
{
    char buf[1000];
    memset(buf, 'a', sizeof buf);
    tw_transport_write(p->transport, buf, sizeof buf);
}

static void sender_more(void *arg)
{
    tw_protocol *p = arg;
    char buf[5000];
    memset(buf, 'b', sizeof buf);
    tw_transport_write(p->transport, buf, sizeof buf);
}

static tw_protocol *g_sender;
static void sender_made_keep(tw_protocol *p)
{
    g_sender = p;
    sender_made(p);
}

static const tw_protocol_ops sender_ops = {
    .size = sizeof(peer),
    .connection_made = sender_made_keep,
};

static tw_protocol *g_pauser;
static void keep_pauser(tw_protocol *p)
{
    g_pauser = p;
    rec_made(p);
}

static const tw_protocol_ops pausing_keep_ops = {
    .size = sizeof(peer),
    .connection_made = keep_pauser,
    .data_received = pausing_data,
    .connection_lost = rec_lost,
};

static void pause_and_resume_reading(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    g_paused = 0;
    g_paused_deliveries = 0;
    tw_factory server = TW_FACTORY_INIT(&pausing_keep_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&sender_ops, NULL);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &ss, 1000, 0 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_int_equal(g_paused, 1);
    sender_more(g_sender);
    tt_run_for(r, 0.1);
    assert_int_equal(ss.received, 1000); /* nothing while paused */
    assert_int_equal(g_paused_deliveries, 0);
    g_paused = 0;
    tw_transport_resume_producing(g_pauser->transport);
    want w2 = { &ss, 6000, 0 };
    assert_true(tt_run_until(r, got, &w2, 5));
    (void)pausing_ops;
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* A streaming producer on a connection whose peer reads slowly is paused
 * above the high-water mark and resumed at the low-water mark. */
typedef struct pump {
    tw_producer base;
    tw_transport *t;
    int pauses, resumes, stopped;
    int running;
    size_t sent, total;
} pump;

static void pump_fill(pump *p)
{
    static char chunk[16384];
    while (p->running && p->sent < p->total && p->t) {
        tw_transport_write(p->t, chunk, sizeof chunk);
        p->sent += sizeof chunk;
    }
    if (p->sent >= p->total && p->t) {
        tw_transport_unregister_producer(p->t);
        tw_transport_lose_connection(p->t);
        p->t = NULL;
    }
}

static void pump_pause(tw_producer *pr)
{
    pump *p = (pump *)pr;
    p->pauses++;
    p->running = 0;
}

static void pump_resume(tw_producer *pr)
{
    pump *p = (pump *)pr;
    p->resumes++;
    p->running = 1;
    pump_fill(p);
}

static void pump_stop(tw_producer *pr)
{
    ((pump *)pr)->stopped++;
    ((pump *)pr)->t = NULL;
}

static const tw_producer_ops pump_ops = { pump_pause, pump_resume, pump_stop };
static pump g_pump;

static void producer_made(tw_protocol *p)
{
    g_pump = (pump){ { &pump_ops }, p->transport, 0, 0, 0, 1, 0, 8 * MEG };
    assert_int_equal(tw_transport_register_producer(p->transport, &g_pump.base, true), 0);
    assert_int_equal(tw_transport_register_producer(p->transport, &g_pump.base, true), TW_EBUSY);
    pump_fill(&g_pump);
}

static const tw_protocol_ops producer_ops = {
    .size = sizeof(peer),
    .connection_made = producer_made,
};

static void streaming_producer_backpressure(void **state)
{
    tw_reactor *r = tt_reactor();
    stats cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&producer_ops, NULL);
    tw_factory client = TW_FACTORY_INIT(&recorder_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &cs, 8 * MEG, 1 };
    assert_true(tt_run_until(r, got, &w, 20));
    assert_int_equal(cs.received, 8 * MEG);
    assert_true(g_pump.pauses >= 1);
    assert_true(g_pump.resumes >= 1);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* A pull producer is asked for more each time the transport's buffer is
 * empty — also when the kernel took every write at once (Twisted). */
typedef struct puller {
    tw_producer base;
    tw_transport *t;
    int resumes, stopped;
} puller;

static void pull_resume(tw_producer *pr)
{
    puller *p = (puller *)pr;
    if (!p->t)
        return;
    p->resumes++;
    char line[16];
    int n = snprintf(line, sizeof line, "chunk %03d\n", p->resumes);
    tw_transport_write(p->t, line, (size_t)n);
    if (p->resumes == 100) {
        tw_transport_unregister_producer(p->t);
        tw_transport_lose_connection(p->t);
        p->t = NULL;
    }
}

static void pull_stop(tw_producer *pr)
{
    ((puller *)pr)->stopped++;
}

static const tw_producer_ops pull_ops = { NULL, pull_resume, pull_stop };
static puller g_puller;

static void puller_made(tw_protocol *p)
{
    g_puller = (puller){ { &pull_ops }, p->transport, 0, 0 };
    assert_int_equal(tw_transport_register_producer(p->transport, &g_puller.base, false), 0);
}

static const tw_protocol_ops puller_ops = {
    .size = sizeof(peer),
    .connection_made = puller_made,
};

static void pull_producer_keeps_being_asked(void **state)
{
    tw_reactor *r = tt_reactor();
    stats cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&puller_ops, NULL);
    tw_factory client = TW_FACTORY_INIT(&recorder_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &cs, 1000, 1 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_int_equal(g_puller.resumes, 100);
    assert_int_equal(cs.received, 1000);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* A client that never reads cannot make the server buffer without bound. */
static int g_limit_rc;
static void flood_made(tw_protocol *p)
{
    rec_made(p);
    tw_transport_set_option(p->transport, TW_OPT_WRITE_LIMIT, MEG);
    tw_transport_set_option(p->transport, TW_OPT_SNDBUF, 4096);
    static char chunk[65536];
    g_limit_rc = 0;
    for (int i = 0; i < 1024 && g_limit_rc == 0; i++)
        g_limit_rc = tw_transport_write(p->transport, chunk, sizeof chunk);
}

static const tw_protocol_ops flood_ops = {
    .size = sizeof(peer),
    .connection_made = flood_made,
    .connection_lost = rec_lost,
};

static void idle_reader(tw_protocol *p)
{
    rec_made(p);
    tw_transport_pause_producing(p->transport);
}

static const tw_protocol_ops idle_reader_ops = {
    .size = sizeof(peer),
    .connection_made = idle_reader,
    .connection_lost = rec_lost,
};

static void write_limit_aborts(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&flood_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&idle_reader_ops, &cs);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &client, NULL), 0);
    want w = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_int_equal(g_limit_rc, TW_ELIMIT);
    assert_int_equal(ss.lost_code, TW_ECONNECTION_LOST);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ factories */

typedef struct counting_factory {
    tw_factory base;
    int starts, stops, builds;
    int refuse;
} counting_factory;

static tw_protocol *cf_build(tw_factory *f, const tw_address *addr)
{
    counting_factory *cf = (counting_factory *)f;
    cf->builds++;
    assert_true(tw_address_is_loopback(addr));
    if (cf->refuse)
        return NULL;
    return tw_protocol_alloc(f->protocol);
}

static void cf_start(tw_factory *f)
{
    ((counting_factory *)f)->starts++;
}

static void cf_stop(tw_factory *f)
{
    ((counting_factory *)f)->stops++;
}

static const tw_factory_ops cf_ops = {
    .build_protocol = cf_build,
    .start_factory = cf_start,
    .stop_factory = cf_stop,
};

static void factory_start_stop_once_and_refusal(void **state)
{
    tw_reactor *r = tt_reactor();
    stats cs = { 0 }, ss = { 0 };
    counting_factory cf = { { &cf_ops, &echo_ops, &ss, 0 }, 0, 0, 0, 1 };
    tw_port *a, *b;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &cf.base, &a), 0);
    assert_int_equal(tw_listen_tcp(r, "::1", 0, NULL, &cf.base, &b), 0);
    assert_int_equal(cf.starts, 1);
    tw_factory client = TW_FACTORY_INIT(&recorder_ops, &cs);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(a), NULL, &client, NULL), 0);
    want w = { &cs, 0, 1 }; /* refused: the client sees the connection end */
    assert_true(tt_run_until(r, got, &w, 5));
    assert_int_equal(cf.builds, 1);
    tw_port_stop_listening(a);
    assert_int_equal(cf.stops, 0);
    tw_port_stop_listening(b);
    assert_int_equal(cf.stops, 1);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ clients */

typedef struct client_log {
    tw_factory base;
    char order[64];
    int n;
    int failed_code, failed_cause;
    int lost_code;
    tw_reactor *r;
} client_log;

static void cl_started(tw_factory *f, tw_connector *c)
{
    client_log *l = (client_log *)f;
    l->order[l->n++] = 'S';
}

static void cl_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    client_log *l = (client_log *)f;
    l->order[l->n++] = 'F';
    l->failed_code = tw_failure_code(reason);
}

static void cl_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    client_log *l = (client_log *)f;
    l->order[l->n++] = 'L';
    l->lost_code = tw_failure_code(reason);
}

static void cl_start(tw_factory *f)
{
    client_log *l = (client_log *)f;
    l->order[l->n++] = '+';
}

static void cl_stop(tw_factory *f)
{
    client_log *l = (client_log *)f;
    l->order[l->n++] = '-';
}

static const tw_factory_ops cl_ops = {
    .start_factory = cl_start,
    .stop_factory = cl_stop,
    .started_connecting = cl_started,
    .client_connection_failed = cl_failed,
    .client_connection_lost = cl_lost,
};

static bool log_has(void *arg)
{
    client_log *l = arg;
    return l->n > 0 && (l->order[l->n - 1] == '-');
}

static void connection_refused(void **state)
{
    tw_reactor *r = tt_reactor();
    /* find a free port, then close it */
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&echo_ops, &ss);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    uint16_t pn = port_of(port);
    tw_port_stop_listening(port);
    tw_reactor_iterate(r, 0);
    client_log l = { { &cl_ops, &recorder_ops, NULL, 0 } };
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", pn, NULL, &l.base, NULL), 0);
    l.order[l.n] = 0;
    assert_string_equal(l.order, "+S"); /* nothing else inside tw_connect */
    assert_true(tt_run_until(r, log_has, &l, 5));
    l.order[l.n] = 0;
    assert_string_equal(l.order, "+SF-");
    assert_int_equal(l.failed_code, -ECONNREFUSED);
    tw_reactor_free(r);
}

static void client_hooks_in_order(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&blast_ops, &ss); /* sends a meg and closes */
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    client_log l = { { &cl_ops, &recorder_ops, &ss, 0 } };
    tw_connector *c;
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port_of(port), NULL, &l.base, &c), 0);
    assert_true(tt_run_until(r, log_has, &l, 5));
    l.order[l.n] = 0;
    assert_string_equal(l.order, "+SL-");
    assert_int_equal(l.lost_code, TW_ECONNECTION_DONE);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

static void connect_timeout(void **state)
{
    tw_reactor *r = tt_reactor();
    /* A listener whose accept queue is full drops further SYNs, so a
     * connect to it hangs until our timeout. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    usleep(50000);
    client_log l = { { &cl_ops, &recorder_ops, NULL, 0 } };
    tw_connect_options opts = { .timeout = 0.3 };
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", ntohs(sa.sin_port), &opts, &l.base, NULL), 0);
    assert_true(tt_run_until(r, log_has, &l, 5));
    l.order[l.n] = 0;
    assert_string_equal(l.order, "+SF-");
    assert_int_equal(l.failed_code, TW_ETIMEDOUT);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
    tw_reactor_free(r);
}

static void stop_connecting(void **state)
{
    tw_reactor *r = tt_reactor();
    client_log l = { { &cl_ops, &recorder_ops, NULL, 0 } };
    tw_connector *c;
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", 9, NULL, &l.base, &c), 0);
    tw_connector_stop_connecting(c);
    l.order[l.n] = 0;
    assert_string_equal(l.order, "+SF-");
    assert_int_equal(l.failed_code, TW_ECANCELED);
    tt_run_for(r, 0.05);
    assert_int_equal(l.n, 4); /* nothing more */
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ unix */

static void unix_sockets(void **state)
{
    tw_reactor *r = tt_reactor();
    char *dir = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/echo.sock", dir);
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&echo_ops, &ss);
    tw_factory client = TW_FACTORY_INIT(&hello_ops, &cs);
    tw_listen_options lo = { .mode = 0600, .lockfile = true };
    tw_port *port, *second;
    assert_int_equal(tw_listen_unix(r, path, &lo, &server, &port), 0);
    /* a live server's socket is never taken over */
    assert_int_equal(tw_listen_unix(r, path, &lo, &server, &second), -EADDRINUSE);
    tw_listen_options nolock = { 0 };
    assert_int_equal(tw_listen_unix(r, path, &nolock, &server, &second), -EADDRINUSE);
    assert_int_equal(tw_connect_unix(r, path, NULL, &client, NULL), 0);
    want w = { &cs, 5, 0 };
    assert_true(tt_run_until(r, got, &w, 5));
    assert_memory_equal(cs.buf, "hello", 5);
    char where[TW_ADDRESS_TEXT_MAX];
    tw_address_format(tw_port_address(port), where, sizeof where);
    assert_true(strstr(where, "unix:") == where);
    tw_port_stop_listening(port);
    assert_int_equal(access(path, F_OK), -1); /* removed at stop */

    /* a stale socket file (nobody listening) is replaced */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    tw_address sa;
    tw_address_from_unix(&sa, path, SOCK_STREAM);
    assert_int_equal(bind(stale, &sa.u.sa, sa.len), 0);
    close(stale);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(tw_listen_unix(r, path, NULL, &server, &port), 0);
    tw_port_stop_listening(port);

    /* abstract namespace */
    char abstract[64];
    snprintf(abstract, sizeof abstract, "@twirl-test-%d", getpid());
    assert_int_equal(tw_listen_unix(r, abstract, NULL, &server, &port), 0);
    cs = (stats){ 0 };
    assert_int_equal(tw_connect_unix(r, abstract, NULL, &client, NULL), 0);
    assert_true(tt_run_until(r, got, &w, 5));
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    tt_rmdir(dir);
}

/* ------------------------------------------------------------ hostile */

static bool accepted_n(void *arg)
{
    stats *s = arg;
    return s->made >= 8;
}

static void emfile_during_accept(void **state)
{
    if (RUNNING_ON_VALGRIND)
        skip(); /* valgrind emulates RLIMIT_NOFILE and keeps refusing fds */
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&recorder_ops, &ss);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port_of(port)),
                              .sin_addr.s_addr = htonl(0x7f000001) };
    int clients[8];
    for (int i = 0; i < 8; i++) {
        clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(clients[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    /* use up every descriptor */
    struct rlimit old, lim;
    getrlimit(RLIMIT_NOFILE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)tt_open_fds() + 16;
    setrlimit(RLIMIT_NOFILE, &lim);
    int hog[64], nhog = 0;
    while (nhog < 64 && (hog[nhog] = dup(0)) >= 0)
        nhog++;
    assert_true(nhog < 64); /* we did run out */
    int turns = 0;
    for (int i = 0; i < 20; i++, turns++)
        tw_reactor_iterate(r, 0.01);
    assert_int_equal(ss.made, 0);
    /* no busy loop: few turns did work — measured by how long they took */
    double t0 = tw_reactor_now(r);
    for (int i = 0; i < 10; i++)
        tw_reactor_iterate(r, 0.02);
    tw_reactor_update_time(r);
    assert_true(tw_reactor_now(r) - t0 > 0.05); /* the loop really slept */
    for (int i = 0; i < nhog; i++)
        close(hog[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(tt_run_until(r, accepted_n, &ss, 5));
    for (int i = 0; i < 8; i++)
        close(clients[i]);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
}

typedef struct cycler {
    tw_factory base;
    tw_reactor *r;
    uint16_t port;
    int done, target, inflight;
} cycler;

static void cyc_made(tw_protocol *p)
{
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops cyc_ops = { .size = sizeof(tw_protocol), .connection_made = cyc_made };

static void cyc_next(cycler *c)
{
    while (c->inflight < 50 && c->done + c->inflight < c->target) {
        c->inflight++;
        assert_int_equal(tw_connect_tcp(c->r, "127.0.0.1", c->port, NULL, &c->base, NULL), 0);
    }
}

static void cyc_lost(tw_factory *f, tw_connector *conn, const tw_failure *reason)
{
    cycler *c = (cycler *)f;
    c->inflight--;
    c->done++;
    cyc_next(c);
}

static void cyc_failed(tw_factory *f, tw_connector *conn, const tw_failure *reason)
{
    fail_msg("connect failed: %s", tw_failure_message(reason));
}

static const tw_factory_ops cyc_fops = { .client_connection_lost = cyc_lost,
                                         .client_connection_failed = cyc_failed };

static bool cycles_done(void *arg)
{
    cycler *c = arg;
    return c->done >= c->target && tw_reactor_connection_count(c->r) == 0;
}

static void ten_thousand_connect_close_cycles(void **state)
{
    tw_reactor *r = tt_reactor();
    int fds_before = tt_open_fds();
    stats ss = { 0 };
    tw_factory server = TW_FACTORY_INIT(&recorder_ops, &ss);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    cycler c = { { &cyc_fops, &cyc_ops, NULL, 0 }, r, port_of(port), 0, 10000, 0 };
    cyc_next(&c);
    assert_true(tt_run_until(r, cycles_done, &c, 120));
    assert_int_equal(ss.made, 10000);
    assert_int_equal(ss.lost, 10000);
    tw_port_stop_listening(port);
    tw_reactor_iterate(r, 0);
    assert_int_equal(tt_open_fds(), fds_before);
    tw_reactor_free(r);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_ipv4),
        cmocka_unit_test(echo_keeps_up_with_a_streaming_peer),
        cmocka_unit_test(echo_keeps_every_byte_beside_a_stalled_peer),
        cmocka_unit_test(echo_ipv6),
        cmocka_unit_test(echo_dual_stack),
        cmocka_unit_test(lose_connection_flushes_everything),
        cmocka_unit_test(peer_reset_mid_write),
        cmocka_unit_test(callbacks_close_things),
        cmocka_unit_test(half_close_both_ways),
        cmocka_unit_test(half_close_without_eof_hook_keeps_replies),
        cmocka_unit_test(pause_and_resume_reading),
        cmocka_unit_test(streaming_producer_backpressure),
        cmocka_unit_test(write_limit_aborts),
        cmocka_unit_test(pull_producer_keeps_being_asked),
        cmocka_unit_test(factory_start_stop_once_and_refusal),
        cmocka_unit_test(connection_refused),
        cmocka_unit_test(client_hooks_in_order),
        cmocka_unit_test(connect_timeout),
        cmocka_unit_test(stop_connecting),
        cmocka_unit_test(unix_sockets),
        cmocka_unit_test(emfile_during_accept),
        cmocka_unit_test(ten_thousand_connect_close_cycles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
