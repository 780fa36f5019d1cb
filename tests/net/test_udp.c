/* ctest: label=integration timeout=120 */
/* UDP ports over real loopback sockets on 127.0.0.1 and ::1: echo, connected
 * UDP and ICMP refusal, multicast, size limits, fairness, pause, teardown
 * inside callbacks, and interop with Twisted's UDP. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/log.h"
#include "twirl/udp.h"

/* ------------------------------------------------------------ recorder */

enum { KEEP = 64 };

typedef struct rec {
    int started, stopped, destroyed, refused;
    int after_stop; /* calls after stop_protocol: must stay 0 */
    int received;
    size_t lens[KEEP];
    char data[KEEP][64];
    tw_address from[KEEP];
    /* behaviours */
    int echo;     /* write back what arrives */
    int stop_on;  /* stop listening on the Nth datagram (1-based) */
    int pause_on; /* pause on the Nth datagram */
    int stop_in_start;
    tw_udp_port *port; /* set by start_protocol */
} rec;

typedef struct proto {
    tw_datagram_protocol base;
    int stopped;
} proto;

static rec *R(tw_datagram_protocol *p)
{
    return p->user_data;
}

static void on_start(tw_datagram_protocol *p)
{
    rec *r = R(p);
    r->started++;
    r->port = p->transport;
    assert_non_null(p->transport);
    if (r->stop_in_start)
        tw_udp_stop_listening(p->transport);
}

static void on_datagram(tw_datagram_protocol *p, const void *data, size_t len,
                        const tw_address *from)
{
    rec *r = R(p);
    if (((proto *)p)->stopped)
        r->after_stop++;
    if (r->received < KEEP) {
        r->lens[r->received] = len;
        size_t n = len < 63 ? len : 63;
        memcpy(r->data[r->received], data, n);
        r->data[r->received][n] = '\0';
        r->from[r->received] = *from;
    }
    r->received++;
    if (r->echo)
        assert_int_equal(tw_udp_write(p->transport, data, len, from), 0);
    if (r->pause_on && r->received == r->pause_on)
        tw_udp_pause(p->transport);
    if (r->stop_on && r->received == r->stop_on) {
        tw_udp_stop_listening(p->transport);
        tw_udp_stop_listening(p->transport); /* twice: a no-op */
    }
}

static void on_refused(tw_datagram_protocol *p)
{
    rec *r = R(p);
    if (((proto *)p)->stopped)
        r->after_stop++;
    r->refused++;
}

static void on_stop(tw_datagram_protocol *p)
{
    rec *r = R(p);
    assert_null(p->transport);
    if (((proto *)p)->stopped)
        r->after_stop++;
    ((proto *)p)->stopped = 1;
    r->stopped++;
}

static void on_destroy(tw_datagram_protocol *p)
{
    R(p)->destroyed++;
}

static const tw_datagram_protocol_ops rec_ops = {
    .size = sizeof(proto),
    .start_protocol = on_start,
    .datagram_received = on_datagram,
    .connection_refused = on_refused,
    .stop_protocol = on_stop,
    .destroy = on_destroy,
};

typedef struct want {
    rec *r;
    int received, refused, stopped;
} want;

static bool reached(void *arg)
{
    want *w = arg;
    return w->r->received >= w->received && w->r->refused >= w->refused &&
           w->r->stopped >= w->stopped;
}

static bool wait_for(tw_reactor *re, rec *r, int received, int refused, int stopped)
{
    want w = { r, received, refused, stopped };
    return tt_run_until(re, reached, &w, 5);
}

static tw_udp_port *listen_on(tw_reactor *re, const char *iface, const tw_udp_options *o, rec *r)
{
    tw_udp_port *p = NULL;
    assert_int_equal(tw_listen_udp(re, iface, 0, o, &rec_ops, r, &p), 0);
    assert_non_null(p);
    assert_int_equal(r->started, 1);
    assert_ptr_equal(r->port, p);
    assert_true(tw_address_port(tw_udp_port_address(p)) > 0);
    return p;
}

static tw_address addr_of(tw_udp_port *p)
{
    return *tw_udp_port_address(p);
}

/* Stops, lets the teardown run, and checks the protocol's end. */
static void stop_and_check(tw_reactor *re, tw_udp_port *p, rec *r)
{
    tw_udp_stop_listening(p);
    assert_true(wait_for(re, r, 0, 0, 1));
    assert_int_equal(r->stopped, 1);
    assert_int_equal(r->destroyed, 1);
    assert_int_equal(r->after_stop, 0);
}

/* A UDP port nobody listens on (bound once, then closed). */
static uint16_t dead_port(int family)
{
    int fd = socket(family, SOCK_DGRAM, 0);
    tw_address a;
    tw_address_from_ip(&a, family == AF_INET ? "127.0.0.1" : "::1", 0, SOCK_DGRAM);
    assert_int_equal(bind(fd, &a.u.sa, a.len), 0);
    socklen_t len = sizeof a.u;
    getsockname(fd, &a.u.sa, &len);
    a.len = len;
    close(fd);
    return tw_address_port(&a);
}

/* ------------------------------------------------------------ echo */

static void echo_between(const char *host)
{
    int fds = tt_open_fds();
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { .echo = 1 };
    tw_udp_port *pa = listen_on(re, host, NULL, &a);
    tw_udp_port *pb = listen_on(re, host, NULL, &b);
    tw_address ab = addr_of(pb);
    assert_int_equal(tw_udp_write(pa, "ping", 4, &ab), 0);
    assert_int_equal(tw_udp_write(pa, "pong!", 5, &ab), 0);
    assert_true(wait_for(re, &a, 2, 0, 0));
    assert_int_equal(b.received, 2);
    assert_string_equal(b.data[0], "ping");
    assert_string_equal(a.data[0], "ping");
    assert_string_equal(a.data[1], "pong!");
    assert_int_equal(a.lens[1], 5);
    /* Each side saw the other's address. */
    tw_address aa = addr_of(pa);
    assert_true(tw_address_equal(&b.from[0], &aa));
    assert_true(tw_address_equal(&a.from[0], &ab));
    assert_int_equal(a.from[0].socktype, SOCK_DGRAM);
    tw_udp_stats s;
    tw_udp_port_stats(pb, &s);
    assert_int_equal(s.received, 2);
    assert_int_equal(s.sent, 2);
    assert_int_equal(s.truncated, 0);
    /* An empty datagram is a datagram. */
    assert_int_equal(tw_udp_write(pa, "", 0, &ab), 0);
    assert_true(wait_for(re, &a, 3, 0, 0));
    assert_int_equal(a.lens[2], 0);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    tw_reactor_free(re);
    assert_int_equal(tt_open_fds(), fds);
}

static void echo_ipv4(void **state)
{
    echo_between("127.0.0.1");
}

static void echo_ipv6(void **state)
{
    echo_between("::1");
}

/* A port on "::" also serves IPv4 peers; an IPv4 destination is mapped. */
static void dual_stack(void **state)
{
    tw_reactor *re = tt_reactor();
    rec v6 = { .echo = 1 }, v4 = { 0 };
    tw_udp_port *p6 = listen_on(re, "::", NULL, &v6);
    tw_udp_port *p4 = listen_on(re, "127.0.0.1", NULL, &v4);
    tw_address to6;
    tw_address_from_ip(&to6, "127.0.0.1", tw_address_port(tw_udp_port_address(p6)), SOCK_DGRAM);
    assert_int_equal(tw_udp_write(p4, "hi", 2, &to6), 0);
    assert_true(wait_for(re, &v4, 1, 0, 0));
    assert_string_equal(v4.data[0], "hi");
    assert_int_equal(tw_address_family(&v6.from[0]), AF_INET6); /* v4-mapped */
    /* A plain IPv4 destination works from the dual-stack port. */
    tw_address to4 = addr_of(p4);
    assert_int_equal(tw_udp_write(p6, "v4", 2, &to4), 0);
    assert_true(wait_for(re, &v4, 2, 0, 0));
    assert_string_equal(v4.data[1], "v4");
    /* ...but not from an IPv4 port to an IPv6 one. */
    tw_address six;
    tw_address_from_ip(&six, "::1", 9, SOCK_DGRAM);
    assert_int_equal(tw_udp_write(p4, "x", 1, &six), TW_EINVAL);
    stop_and_check(re, p6, &v6);
    stop_and_check(re, p4, &v4);
    tw_reactor_free(re);
}

static void writev_gathers(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", NULL, &b);
    tw_address ab = addr_of(pb);
    struct iovec iov[3] = { { "one", 3 }, { "-", 1 }, { "two", 3 } };
    assert_int_equal(tw_udp_writev(pa, iov, 3, &ab), 0);
    assert_true(wait_for(re, &b, 1, 0, 0));
    assert_string_equal(b.data[0], "one-two");
    assert_int_equal(tw_udp_writev(pa, iov, -1, &ab), TW_EINVAL);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    tw_reactor_free(re);
}

/* ------------------------------------------------------------ connected UDP */

static void refused_on(const char *host, int family)
{
    int fds = tt_open_fds();
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_port *pa = listen_on(re, host, NULL, &a);
    assert_null(tw_udp_connected_address(pa));
    tw_address dead;
    tw_address_from_ip(&dead, host, dead_port(family), SOCK_DGRAM);
    assert_int_equal(tw_udp_connect(pa, &dead), 0);
    assert_true(tw_address_equal(tw_udp_connected_address(pa), &dead));
    assert_int_equal(tw_udp_write(pa, "anyone?", 7, NULL), 0);
    assert_true(wait_for(re, &a, 0, 1, 0));
    assert_int_equal(a.refused, 1);
    assert_int_equal(a.received, 0);
    /* The port stays usable: again, and this time the write itself may
     * meet the error; either way connection_refused comes from the loop. */
    assert_int_equal(tw_udp_write(pa, "again", 5, NULL), 0);
    assert_true(wait_for(re, &a, 0, 2, 0));
    tw_udp_stats s;
    tw_udp_port_stats(pa, &s);
    assert_int_equal(s.refused, 2);
    stop_and_check(re, pa, &a);
    assert_int_equal(a.refused, 2);
    tw_reactor_free(re);
    assert_int_equal(tt_open_fds(), fds);
}

static void connected_refused_ipv4(void **state)
{
    refused_on("127.0.0.1", AF_INET);
}

static void connected_refused_ipv6(void **state)
{
    refused_on("::1", AF_INET6);
}

/* A refusal met by a write: the write says -ECONNREFUSED and the protocol
 * hears of it from the loop, never inside the write. */
static void refused_seen_by_write(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_address dead;
    tw_address_from_ip(&dead, "127.0.0.1", dead_port(AF_INET), SOCK_DGRAM);
    assert_int_equal(tw_udp_connect(pa, &dead), 0);
    assert_int_equal(tw_udp_write(pa, "1", 1, NULL), 0);
    /* The ICMP answer arrives synchronously on loopback: the error is
     * pending before the loop runs. */
    int rc = tw_udp_write(pa, "2", 1, NULL);
    assert_int_equal(rc, -ECONNREFUSED);
    assert_int_equal(a.refused, 0);
    assert_true(wait_for(re, &a, 0, 1, 0));
    tt_run_for(re, 0.05);
    assert_int_equal(a.refused, 1);
    stop_and_check(re, pa, &a);
    tw_reactor_free(re);
}

/* A connected port hears only its peer, and writes only to it. */
static void connected_filters(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 }, c = { 0 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", NULL, &b);
    tw_udp_port *pc = listen_on(re, "127.0.0.1", NULL, &c);
    tw_address aa = addr_of(pa), ab = addr_of(pb), ac = addr_of(pc);
    assert_int_equal(tw_udp_write(pa, "x", 1, NULL), -EDESTADDRREQ);
    assert_int_equal(tw_udp_connect(pa, &ab), 0);
    assert_int_equal(tw_udp_write(pa, "to-b", 4, NULL), 0);
    assert_int_equal(tw_udp_write(pa, "to-b2", 5, &ab), 0);
    assert_int_equal(tw_udp_write(pa, "to-c", 4, &ac), TW_EINVAL);
    assert_int_equal(tw_udp_write(pc, "from-c", 6, &aa), 0);
    assert_int_equal(tw_udp_write(pb, "from-b", 6, &aa), 0);
    assert_true(wait_for(re, &a, 1, 0, 0));
    assert_true(wait_for(re, &b, 2, 0, 0));
    tt_run_for(re, 0.05);
    assert_int_equal(a.received, 1);
    assert_string_equal(a.data[0], "from-b");
    assert_int_equal(c.received, 0);
    /* Bad connects. */
    tw_address zero, six;
    tw_address_from_ip(&zero, "127.0.0.1", 0, SOCK_DGRAM);
    tw_address_from_ip(&six, "::1", 5, SOCK_DGRAM);
    assert_int_equal(tw_udp_connect(pc, &zero), TW_EINVAL);
    assert_int_equal(tw_udp_connect(pc, &six), TW_EINVAL);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    stop_and_check(re, pc, &c);
    tw_reactor_free(re);
}

/* ------------------------------------------------------------ sizes */

static void oversize_is_an_error(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", NULL, &b);
    tw_udp_port *pc = listen_on(re, "::1", NULL, &c);
    tw_udp_port *pd = listen_on(re, "::1", NULL, &d);
    tw_address ab = addr_of(pb), ad = addr_of(pd);
    size_t big = 70000;
    char *buf = calloc(1, big);
    assert_non_null(buf);
    buf[0] = 'A';
    assert_int_equal(tw_udp_write(pa, buf, TW_UDP_MAX_PAYLOAD_V4 + 1, &ab), -EMSGSIZE);
    assert_int_equal(tw_udp_write(pa, buf, big, &ab), -EMSGSIZE);
    assert_int_equal(tw_udp_write(pc, buf, TW_UDP_MAX_PAYLOAD_V6 + 1, &ad), -EMSGSIZE);
    struct iovec iov[2] = { { buf, 40000 }, { buf, 40000 } };
    assert_int_equal(tw_udp_writev(pa, iov, 2, &ab), -EMSGSIZE);
    /* The largest ones go through, whole, through the 64 KiB buffer. */
    assert_int_equal(tw_udp_write(pa, buf, TW_UDP_MAX_PAYLOAD_V4, &ab), 0);
    assert_int_equal(tw_udp_write(pc, buf, TW_UDP_MAX_PAYLOAD_V6, &ad), 0);
    assert_true(wait_for(re, &b, 1, 0, 0));
    assert_true(wait_for(re, &d, 1, 0, 0));
    assert_int_equal(b.lens[0], TW_UDP_MAX_PAYLOAD_V4);
    assert_int_equal(d.lens[0], TW_UDP_MAX_PAYLOAD_V6);
    assert_string_equal(b.data[0], "A");
    free(buf);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    stop_and_check(re, pc, &c);
    stop_and_check(re, pd, &d);
    tw_reactor_free(re);
}

static char last_log[512];
static int log_lines;

static void capture_log(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (strcmp(domain, "udp") == 0) {
        snprintf(last_log, sizeof last_log, "%s", message);
        log_lines++;
    }
}

/* A datagram longer than max_datagram_bytes is dropped, counted and logged
 * (at most a line a second), never delivered cut; both read paths (single
 * and batched). */
static void truncated_with(size_t max, size_t too_long)
{
    log_lines = 0;
    tw_log_set_handler(capture_log, NULL);
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 };
    tw_udp_options o = { .max_datagram_bytes = max };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", &o, &b);
    tw_address ab = addr_of(pb);
    char *buf = calloc(1, too_long);
    assert_non_null(buf);
    assert_int_equal(tw_udp_write(pa, "before", 6, &ab), 0);
    assert_int_equal(tw_udp_write(pa, buf, too_long, &ab), 0);
    assert_int_equal(tw_udp_write(pa, buf, too_long, &ab), 0);
    assert_int_equal(tw_udp_write(pa, buf, max, &ab), 0); /* exactly the limit: fine */
    assert_int_equal(tw_udp_write(pa, "after", 5, &ab), 0);
    assert_true(wait_for(re, &b, 3, 0, 0));
    tt_run_for(re, 0.05);
    assert_int_equal(b.received, 3);
    assert_string_equal(b.data[0], "before");
    assert_int_equal(b.lens[1], max);
    assert_string_equal(b.data[2], "after");
    tw_udp_stats s;
    tw_udp_port_stats(pb, &s);
    assert_int_equal(s.truncated, 2);
    assert_int_equal(s.received, 3);
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(log_lines, 1); /* the second within the same second is counted */
    char expect[128];
    snprintf(expect, sizeof expect, "longer than %zu bytes", max);
    assert_non_null(strstr(last_log, expect));
    assert_non_null(strstr(last_log, "dropped a datagram from 127.0.0.1:"));
    free(buf);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    tw_reactor_free(re);
}

static void truncated_single(void **state)
{
    truncated_with(40000, 50000);
}

static void truncated_batched(void **state)
{
    truncated_with(512, 1500);
}

static void bad_options(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_port *p = (tw_udp_port *)&a;
    tw_udp_options o = { .max_datagram_bytes = 65537 };
    assert_int_equal(tw_listen_udp(re, "127.0.0.1", 0, &o, &rec_ops, &a, &p), TW_EINVAL);
    assert_null(p);
    assert_int_equal(tw_listen_udp(re, "not-an-ip", 0, NULL, &rec_ops, &a, &p), TW_EINVAL);
    tw_address un;
    tw_address_from_unix(&un, "/tmp/x", SOCK_DGRAM);
    assert_int_equal(tw_listen_udp_address(re, &un, NULL, &rec_ops, &a, &p), TW_EINVAL);
    assert_int_equal(a.started, 0);
    /* Busy port. */
    tw_udp_port *p1 = listen_on(re, "127.0.0.1", NULL, &a);
    rec b = { 0 };
    tw_log_level lvl = tw_log_get_level();
    tw_log_set_level(TW_LOG_OFF);
    assert_int_equal(tw_listen_udp(re, "127.0.0.1", tw_address_port(tw_udp_port_address(p1)), NULL,
                                   &rec_ops, &b, &p),
                     -EADDRINUSE);
    tw_log_set_level(lvl);
    assert_int_equal(b.started, 0);
    assert_int_equal(b.destroyed, 0);
    stop_and_check(re, p1, &a);
    tw_reactor_free(re);
}

static void reuse_port_shares(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 };
    tw_udp_options o = { .reuse_port = true };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", &o, &a);
    tw_udp_port *pb;
    assert_int_equal(tw_listen_udp(re, "127.0.0.1", tw_address_port(tw_udp_port_address(pa)), &o,
                                   &rec_ops, &b, &pb),
                     0);
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    tw_reactor_free(re);
}

/* A full send buffer drops the datagram with an error code; nothing is
 * queued. Loopback never fills (it hands datagrams over at once), so the
 * socket is corked (UDP_CORK keeps data pending) and aimed at a
 * documentation address through whatever interface routes there; nothing
 * is ever sent, and closing the socket discards what was pending. */
static void full_send_buffer_drops(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_options o = { .sndbuf = 1 };
    tw_udp_port *p = listen_on(re, "0.0.0.0", &o, &a);
    int one = 1;
    assert_int_equal(setsockopt(tw_udp_port_fd(p), IPPROTO_UDP, UDP_CORK, &one, sizeof one), 0);
    tw_address far;
    tw_address_from_ip(&far, "192.0.2.1", 9, SOCK_DGRAM);
    static char chunk[1000];
    int rc = 0, i;
    for (i = 0; i < 200 && rc == 0; i++)
        rc = tw_udp_write(p, chunk, sizeof chunk, &far);
    if (rc == -ENETUNREACH || rc == -EMSGSIZE) {
        stop_and_check(re, p, &a);
        tw_reactor_free(re);
        fprintf(stderr, "# no route with a small MTU to 192.0.2.1 (%s): skipped\n",
                tw_strerror(rc));
        skip();
    }
    assert_true(rc == -ENOBUFS || rc == -EAGAIN);
    tw_udp_stats s;
    tw_udp_port_stats(p, &s);
    assert_int_equal(s.send_dropped, 1);
    assert_int_equal(s.sent, (uint64_t)(i - 1));
    stop_and_check(re, p, &a);
    tw_reactor_free(re);
}

/* ------------------------------------------------------------ fairness */

static void bounded_per_wakeup_with(size_t max)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 };
    tw_udp_options o = { .max_datagram_bytes = max, .rcvbuf = 1 << 20 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", &o, &b);
    tw_address ab = addr_of(pb);
    for (int i = 0; i < 100; i++) {
        char msg[16];
        int n = snprintf(msg, sizeof msg, "%d", i);
        assert_int_equal(tw_udp_write(pa, msg, (size_t)n, &ab), 0);
    }
    /* Loopback delivers at once: all 100 wait in the socket. One turn reads
     * no more than the budget. */
    assert_int_equal(tw_reactor_iterate(re, 1.0), 0);
    assert_int_equal(b.received, TW_UDP_READS_PER_WAKEUP);
    assert_true(wait_for(re, &b, 100, 0, 0));
    for (int i = 0; i < KEEP; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "%d", i);
        assert_string_equal(b.data[i], msg);
    }
    stop_and_check(re, pa, &a);
    stop_and_check(re, pb, &b);
    tw_reactor_free(re);
}

static void bounded_per_wakeup_single(void **state)
{
    bounded_per_wakeup_with(0);
}

static void bounded_per_wakeup_batched(void **state)
{
    bounded_per_wakeup_with(1024);
}

/* ------------------------------------------------------------ reentrancy */

static void stop_inside_datagram_with(size_t max)
{
    int fds = tt_open_fds();
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { .stop_on = 2 };
    tw_udp_options o = { .max_datagram_bytes = max };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", &o, &b);
    tw_address ab = addr_of(pb);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tw_udp_write(pa, "d", 1, &ab), 0);
    assert_true(wait_for(re, &b, 2, 0, 1));
    tt_run_for(re, 0.05);
    assert_int_equal(b.received, 2);
    assert_int_equal(b.stopped, 1);
    assert_int_equal(b.destroyed, 1);
    assert_int_equal(b.after_stop, 0);
    /* The address is free again. */
    rec c = { 0 };
    tw_udp_port *pc;
    assert_int_equal(tw_listen_udp_address(re, &ab, NULL, &rec_ops, &c, &pc), 0);
    stop_and_check(re, pc, &c);
    stop_and_check(re, pa, &a);
    tw_reactor_free(re);
    assert_int_equal(tt_open_fds(), fds);
}

static void stop_inside_datagram_single(void **state)
{
    stop_inside_datagram_with(0);
}

static void stop_inside_datagram_batched(void **state)
{
    stop_inside_datagram_with(256);
}

static void stop_inside_start(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { .stop_in_start = 1 };
    tw_udp_port *p = (tw_udp_port *)&a;
    assert_int_equal(tw_listen_udp(re, "127.0.0.1", 0, NULL, &rec_ops, &a, &p), TW_ECLOSED);
    assert_null(p);
    assert_int_equal(a.stopped, 0); /* never inside the call */
    assert_true(wait_for(re, &a, 0, 0, 1));
    assert_int_equal(a.destroyed, 1);
    tw_reactor_free(re);
}

/* Stopped with datagrams and a refusal pending, then the reactor freed at
 * once: the teardown still runs (tasks run at free), nothing leaks. */
static void stop_then_free_reactor(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { 0 };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", NULL, &b);
    tw_address ab = addr_of(pb);
    assert_int_equal(tw_udp_write(pa, "x", 1, &ab), 0);
    tw_udp_stop_listening(pb);
    tw_udp_stop_listening(pa);
    tw_reactor_free(re);
    assert_int_equal(a.stopped, 1);
    assert_int_equal(b.stopped, 1);
    assert_int_equal(b.received, 0);
}

/* Pausing in the middle of a batch holds the rest; resume delivers them in
 * order, none lost. */
static void pause_resume_with(size_t max)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, b = { .pause_on = 3 };
    tw_udp_options o = { .max_datagram_bytes = max };
    tw_udp_port *pa = listen_on(re, "127.0.0.1", NULL, &a);
    tw_udp_port *pb = listen_on(re, "127.0.0.1", &o, &b);
    tw_address ab = addr_of(pb);
    for (int i = 0; i < 10; i++) {
        char msg[8];
        int n = snprintf(msg, sizeof msg, "m%d", i);
        assert_int_equal(tw_udp_write(pa, msg, (size_t)n, &ab), 0);
    }
    assert_true(wait_for(re, &b, 3, 0, 0));
    tt_run_for(re, 0.1);
    assert_int_equal(b.received, 3);
    tw_udp_resume(pb);
    assert_true(wait_for(re, &b, 10, 0, 0));
    for (int i = 0; i < 10; i++) {
        char msg[8];
        snprintf(msg, sizeof msg, "m%d", i);
        assert_string_equal(b.data[i], msg);
    }
    /* Pause again with datagrams held, then stop: freed, not delivered. */
    b.pause_on = 11;
    for (int i = 0; i < 4; i++)
        assert_int_equal(tw_udp_write(pa, "z", 1, &ab), 0);
    assert_true(wait_for(re, &b, 11, 0, 0));
    tt_run_for(re, 0.05);
    assert_int_equal(b.received, 11);
    stop_and_check(re, pb, &b);
    assert_int_equal(b.received, 11);
    stop_and_check(re, pa, &a);
    tw_reactor_free(re);
}

static void pause_resume_single(void **state)
{
    pause_resume_with(0);
}

static void pause_resume_batched(void **state)
{
    pause_resume_with(100);
}

/* ------------------------------------------------------------ multicast */

static void multicast_options(void **state)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 }, c = { 0 };
    tw_udp_port *p = listen_on(re, "0.0.0.0", NULL, &a);
    int ttl = -1;
    bool loop = false;
    assert_int_equal(tw_udp_set_ttl(p, 7), 0);
    assert_int_equal(tw_udp_get_ttl(p, &ttl), 0);
    assert_int_equal(ttl, 7);
    assert_int_equal(tw_udp_set_ttl(p, 256), TW_EINVAL);
    assert_int_equal(tw_udp_set_loopback_mode(p, false), 0);
    assert_int_equal(tw_udp_get_loopback_mode(p, &loop), 0);
    assert_false(loop);
    assert_int_equal(tw_udp_set_loopback_mode(p, true), 0);
    assert_int_equal(tw_udp_get_loopback_mode(p, &loop), 0);
    assert_true(loop);
    assert_int_equal(tw_udp_set_broadcast_allowed(p, true), 0);
    assert_int_equal(tw_udp_set_outgoing_interface(p, "127.0.0.1"), 0);
    assert_int_equal(tw_udp_set_outgoing_interface(p, "lo"), 0);
    assert_int_equal(tw_udp_set_outgoing_interface(p, NULL), 0);
    tw_log_level lvl = tw_log_get_level();
    tw_log_set_level(TW_LOG_OFF);
    assert_int_equal(tw_udp_set_outgoing_interface(p, "no-such-if0"), TW_EINVAL);
    assert_int_equal(tw_udp_join_group(p, "10.0.0.1", NULL), TW_EINVAL); /* not multicast */
    assert_int_equal(tw_udp_join_group(p, "ff02::1", NULL), TW_EINVAL);  /* wrong family */
    assert_int_equal(tw_udp_join_group(p, "nonsense", NULL), TW_EINVAL);
    assert_int_equal(tw_udp_join_group(p, "239.1.2.3", "no-such-if0"), TW_EINVAL);
    tw_log_set_level(lvl);
    tw_udp_port *p6 = listen_on(re, "::", NULL, &c);
    assert_int_equal(tw_udp_set_ttl(p6, 3), 0);
    assert_int_equal(tw_udp_get_ttl(p6, &ttl), 0);
    assert_int_equal(ttl, 3);
    assert_int_equal(tw_udp_set_loopback_mode(p6, false), 0);
    assert_int_equal(tw_udp_get_loopback_mode(p6, &loop), 0);
    assert_false(loop);
    assert_int_equal(tw_udp_set_outgoing_interface(p6, "1"), 0);
    stop_and_check(re, p, &a);
    stop_and_check(re, p6, &c);
    tw_reactor_free(re);
}

/* A multicast-capable interface other than lo, for IPv6 (lo has no
 * multicast route on Linux unless one is added). */
static bool first_multicast_if(char *name, size_t size)
{
    struct ifaddrs *ifs, *i;
    bool found = false;
    if (getifaddrs(&ifs) < 0)
        return false;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if ((i->ifa_flags & IFF_UP) && (i->ifa_flags & IFF_MULTICAST) &&
            !(i->ifa_flags & IFF_LOOPBACK)) {
            snprintf(name, size, "%s", i->ifa_name);
            found = true;
        }
    }
    freeifaddrs(ifs);
    return found;
}

/* Joins group on iface, loops our own datagram back, receives it, leaves.
 * Returns 0, or the -errno that says this host cannot do it. */
static int multicast_round(const char *listen_if, const char *group, const char *iface, int ttl)
{
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_options o = { .reuse_addr = true };
    tw_udp_port *p = listen_on(re, listen_if, &o, &a);
    int rc = tw_udp_join_group(p, group, iface);
    if (rc == 0)
        rc = tw_udp_set_outgoing_interface(p, iface);
    assert_int_equal(tw_udp_set_loopback_mode(p, true), 0);
    assert_int_equal(tw_udp_set_ttl(p, ttl), 0);
    tw_address g;
    assert_int_equal(
        tw_address_from_ip(&g, group, tw_address_port(tw_udp_port_address(p)), SOCK_DGRAM), 0);
    if (g.u.sa.sa_family == AF_INET6 && iface)
        g.u.in6.sin6_scope_id = if_nametoindex(iface);
    if (rc == 0)
        rc = tw_udp_write(p, "to-the-group", 12, &g);
    if (rc == 0) {
        if (!wait_for(re, &a, 1, 0, 0))
            rc = -ETIMEDOUT;
        else
            assert_string_equal(a.data[0], "to-the-group");
    }
    if (rc == 0) {
        assert_int_equal(tw_udp_leave_group(p, group, iface), 0);
        /* Leaving twice: the kernel says so. */
        assert_true(tw_udp_leave_group(p, group, iface) < 0);
    }
    stop_and_check(re, p, &a);
    tw_reactor_free(re);
    return rc;
}

static void multicast_ipv4_loopback(void **state)
{
    int rc = multicast_round("0.0.0.0", "239.255.42.99", "lo", 1);
    if (rc < 0) {
        fprintf(stderr, "# multicast on lo unavailable here (%s): skipped\n", tw_strerror(rc));
        skip();
    }
    /* The same, naming the interface by its address. */
    assert_int_equal(multicast_round("0.0.0.0", "239.255.42.98", "127.0.0.1", 1), 0);
}

static void multicast_ipv6(void **state)
{
    int rc = multicast_round("::", "ff02::4242:99", "lo", 1);
    if (rc == 0)
        return;
    /* Linux gives lo no IPv6 multicast route: use a real interface with hop
     * limit 0, which loops the datagram back and never sends it out. */
    char name[IF_NAMESIZE + 1];
    if (!first_multicast_if(name, sizeof name)) {
        fprintf(stderr,
                "# IPv6 multicast: no route on lo (%s) and no multicast interface:"
                " skipped\n",
                tw_strerror(rc));
        skip();
    }
    fprintf(stderr, "# IPv6 multicast: lo has no route (%s); using %s with hop limit 0\n",
            tw_strerror(rc), name);
    rc = multicast_round("::", "ff02::4242:99", name, 0);
    if (rc < 0) {
        fprintf(stderr, "# IPv6 multicast unavailable on lo and %s (%s): skipped\n", name,
                tw_strerror(rc));
        skip();
    }
}

/* ------------------------------------------------------------ interop */

/* Twisted's own DatagramProtocol (tests/interop/twisted_udp.py) on a port
 * of its choosing: it greets us first, then echoes what we send back with a
 * prefix, and exits on "quit". */
static void twisted_interop_on(const char *host)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "# /usr/bin/python3 missing: skipped\n");
        skip();
    }
    tw_reactor *re = tt_reactor();
    rec a = { 0 };
    tw_udp_port *p = listen_on(re, host, NULL, &a);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import twisted' 2>/dev/null && exec /usr/bin/python3 "
             "%s/tests/interop/twisted_udp.py %s %u",
             TWIRL_SOURCE_DIR, host, tw_address_port(tw_udp_port_address(p)));
    FILE *py = popen(cmd, "r");
    assert_non_null(py);
    char line[128] = "";
    if (!fgets(line, sizeof line, py)) {
        pclose(py);
        stop_and_check(re, p, &a);
        tw_reactor_free(re);
        fprintf(stderr, "# python3-twisted not importable: skipped\n");
        skip();
    }
    unsigned twport = 0;
    assert_int_equal(sscanf(line, "PORT %u", &twport), 1);
    tw_address tw;
    assert_int_equal(tw_address_from_ip(&tw, host, (uint16_t)twport, SOCK_DGRAM), 0);
    assert_true(wait_for(re, &a, 1, 0, 0));
    assert_string_equal(a.data[0], "hello from twisted");
    assert_true(tw_address_equal(&a.from[0], &tw));
    assert_int_equal(tw_udp_write(p, "hello from twirl", 16, &tw), 0);
    assert_true(wait_for(re, &a, 2, 0, 0));
    assert_string_equal(a.data[1], "echo:hello from twirl");
    /* A bigger one, whole both ways. */
    static char big[60000];
    memset(big, 'q', sizeof big);
    assert_int_equal(tw_udp_write(p, big, sizeof big, &tw), 0);
    assert_true(wait_for(re, &a, 3, 0, 0));
    assert_int_equal(a.lens[2], sizeof big + 5);
    assert_int_equal(tw_udp_write(p, "quit", 4, &tw), 0);
    int status = pclose(py);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    stop_and_check(re, p, &a);
    tw_reactor_free(re);
}

static void twisted_interop_ipv4(void **state)
{
    twisted_interop_on("127.0.0.1");
}

static void twisted_interop_ipv6(void **state)
{
    twisted_interop_on("::1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_ipv4),
        cmocka_unit_test(echo_ipv6),
        cmocka_unit_test(dual_stack),
        cmocka_unit_test(writev_gathers),
        cmocka_unit_test(connected_refused_ipv4),
        cmocka_unit_test(connected_refused_ipv6),
        cmocka_unit_test(refused_seen_by_write),
        cmocka_unit_test(connected_filters),
        cmocka_unit_test(oversize_is_an_error),
        cmocka_unit_test(truncated_single),
        cmocka_unit_test(truncated_batched),
        cmocka_unit_test(bad_options),
        cmocka_unit_test(reuse_port_shares),
        cmocka_unit_test(full_send_buffer_drops),
        cmocka_unit_test(bounded_per_wakeup_single),
        cmocka_unit_test(bounded_per_wakeup_batched),
        cmocka_unit_test(stop_inside_datagram_single),
        cmocka_unit_test(stop_inside_datagram_batched),
        cmocka_unit_test(stop_inside_start),
        cmocka_unit_test(stop_then_free_reactor),
        cmocka_unit_test(pause_resume_single),
        cmocka_unit_test(pause_resume_batched),
        cmocka_unit_test(multicast_options),
        cmocka_unit_test(multicast_ipv4_loopback),
        cmocka_unit_test(multicast_ipv6),
        cmocka_unit_test(twisted_interop_ipv4),
        cmocka_unit_test(twisted_interop_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
