/* ctest: label=integration timeout=120 backends=once */
/* Listening ports on the io_uring backend, which accept by one multishot
 * accept: bursts of connections, the peer address each gets, pausing,
 * stopping with connections still in flight (from outside and from inside
 * a callback), freeing the reactor under a live port, and the readiness
 * fallback for kernels that refuse multishot accept. Every case ends with
 * the descriptors it opened closed. */
#if !__has_include(<liburing.h>)
/* Built without liburing: no io_uring backend to test. */
int main(void)
{
    return 0;
}
#else
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/uring.h"
#include "tt.h"
#include "twirl/log.h"
#include "twirl/tcp.h"

/* A reactor on io_uring, or a skipped test where the kernel has none. */
static tw_reactor *uring_reactor(void)
{
    tw_reactor_options o = { .backend = "uring", .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    if (strcmp(tw_reactor_backend(r), "uring") != 0) {
        tw_reactor_free(r);
        skip();
    }
    return r;
}

/* ------------------------------------------------------------ protocols */

enum { MAX_CONNS = 600 };

typedef struct server_stats {
    int made, lost, after_stop;
    tw_port *stop_port; /* stop this port at the stop_at-th connection */
    int stop_at;
    int stopped;
    uint8_t seen_port[65536]; /* peer ports seen in connection_made */
    int bad_peer;
} server_stats;

static server_stats *sst(tw_protocol *p)
{
    return p->factory->user_data;
}

static void srv_made(tw_protocol *p)
{
    server_stats *s = sst(p);
    if (s->stopped)
        s->after_stop++;
    s->made++;
    tw_address a;
    if (tw_transport_get_peer(p->transport, &a) == 0 && tw_address_family(&a) == AF_INET &&
        a.u.in4.sin_addr.s_addr == htonl(0x7f000001))
        s->seen_port[tw_address_port(&a)] = 1;
    else
        s->bad_peer++;
    if (s->stop_port && s->made == s->stop_at) {
        tw_port_stop_listening(s->stop_port);
        s->stopped = 1;
    }
}

static void srv_lost(tw_protocol *p, const tw_failure *reason)
{
    sst(p)->lost++;
}

static const tw_protocol_ops srv_ops = {
    .size = sizeof(tw_protocol),
    .connection_made = srv_made,
    .connection_lost = srv_lost,
};

static bool made_n(void *arg)
{
    server_stats *s = arg;
    return s->made >= s->stop_at;
}

static uint16_t port_of(tw_port *p)
{
    return tw_address_port(tw_port_address(p));
}

/* Plain blocking clients: the kernel completes their handshake from the
 * listen backlog, whether or not anyone accepts yet. */
static int client_connect(uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(0x7f000001) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static uint16_t local_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/* Waits (the loop turning) until fd reads EOF or a reset. */
static bool client_closed_by_server(tw_reactor *r, int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 200; i++) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            return true;
        tw_reactor_iterate(r, 0.01);
    }
    return false;
}

static void enough_fds(int n)
{
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < (rlim_t)n) {
        lim.rlim_cur = lim.rlim_max < (rlim_t)n ? lim.rlim_max : (rlim_t)n;
        setrlimit(RLIMIT_NOFILE, &lim);
        getrlimit(RLIMIT_NOFILE, &lim);
        if (lim.rlim_cur < (rlim_t)n)
            skip();
    }
}

/* ------------------------------------------------------------ tests */

/* 500 connections made at once reach connection_made, each with its own
 * peer address, and nothing is left open afterwards. */
static void burst(tw_reactor *r, int expect_multishot)
{
    enough_fds(3 * MAX_CONNS);
    int fds_before = tt_open_fds();
    server_stats *s = calloc(1, sizeof *s);
    tw_factory server = TW_FACTORY_INIT(&srv_ops, s);
    tw_port *port;
    assert_int_equal(
        tw_listen_tcp(r, "127.0.0.1", 0, &(tw_listen_options){ .backlog = 1024 }, &server, &port),
        0);
    tw_reactor_iterate(r, 0); /* the accept reaches the kernel */
    int clients[500];
    for (int i = 0; i < 500; i++)
        clients[i] = client_connect(port_of(port));
    s->stop_at = 500;
    assert_true(tt_run_until(r, made_n, s, 20));
    assert_int_equal(s->made, 500);
    assert_int_equal(s->bad_peer, 0);
    for (int i = 0; i < 500; i++)
        assert_true(s->seen_port[local_port(clients[i])]); /* its own address */
    assert_int_equal(tw_reactor_connection_count(r), 500);
    assert_int_equal(!!(tw__uring_features(r) & TW__URING_ACCEPT_MULTI), expect_multishot);
    for (int i = 0; i < 500; i++)
        close(clients[i]);
    tw_port_stop_listening(port);
    tw_reactor_disconnect_all(r);
    tt_run_for(r, 0.05);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    assert_int_equal(s->lost, 500);
    assert_int_equal(tt_open_fds(), fds_before);
    tw_reactor_free(r);
    free(s);
}

static void multishot_accepts_a_burst_of_500(void **state)
{
    burst(uring_reactor(), 1);
}

static void readiness_fallback_accepts_a_burst_of_500(void **state)
{
    tw_reactor *r = uring_reactor();
    tw__uring_feature_off(r, TW__URING_ACCEPT_MULTI); /* as if the kernel refused it */
    burst(r, 0);
}

/* Connections that wait in the backlog (or were accepted by the kernel but
 * not yet seen) when the port stops are closed, never leaked, never handed
 * to the stopped factory; the port's memory waits for its last CQE. */
static void stop_listening_with_connections_pending(void **state)
{
    tw_reactor *r = uring_reactor();
    int fds_before = tt_open_fds();
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    tw_reactor_iterate(r, 0);
    int clients[20];
    for (int i = 0; i < 20; i++)
        clients[i] = client_connect(port_of(port));
    tw_port_stop_listening(port); /* before the loop saw any of them */
    s.stopped = 1;
    tt_run_for(r, 0.05);
    assert_int_equal(s.made, 0);
    for (int i = 0; i < 20; i++)
        assert_true(client_closed_by_server(r, clients[i]));
    for (int i = 0; i < 20; i++)
        close(clients[i]);
    assert_int_equal(tt_open_fds(), fds_before);
    tw_reactor_free(r);
}

/* A protocol stops the port from connection_made while more accepted fds
 * of the same batch are still to be handled: those are closed. */
static void stop_listening_from_connection_made(void **state)
{
    tw_reactor *r = uring_reactor();
    int fds_before = tt_open_fds();
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    tw_reactor_iterate(r, 0);
    s.stop_port = port;
    s.stop_at = 3;
    int clients[30];
    for (int i = 0; i < 30; i++)
        clients[i] = client_connect(port_of(port));
    assert_true(tt_run_until(r, made_n, &s, 5));
    tt_run_for(r, 0.05);
    assert_int_equal(s.made, 3);
    assert_int_equal(s.after_stop, 0);
    int closed = 0;
    for (int i = 0; i < 30; i++)
        closed += client_closed_by_server(r, clients[i]) ? 1 : 0;
    /* the three accepted ones are still open */
    assert_int_equal(closed, 27);
    for (int i = 0; i < 30; i++)
        close(clients[i]);
    tw_reactor_disconnect_all(r);
    tt_run_for(r, 0.05);
    assert_int_equal(s.lost, 3);
    assert_int_equal(tt_open_fds(), fds_before);
    tw_reactor_free(r);
}

/* Pausing cancels the accept: connections wait in the backlog until the
 * port resumes. A pause and resume in the same turn keep accepting. */
static void pause_and_resume(void **state)
{
    tw_reactor *r = uring_reactor();
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    tw_reactor_iterate(r, 0);
    tw_port_pause(port);
    tw_reactor_iterate(r, 0); /* the cancel lands */
    int clients[10];
    for (int i = 0; i < 10; i++)
        clients[i] = client_connect(port_of(port));
    tt_run_for(r, 0.1);
    assert_int_equal(s.made, 0);
    tw_port_resume(port);
    s.stop_at = 10;
    assert_true(tt_run_until(r, made_n, &s, 5));
    /* pause and resume before the cancel reaches the kernel */
    tw_port_pause(port);
    tw_port_resume(port);
    tw_reactor_iterate(r, 0);
    tw_port_pause(port);
    tw_reactor_iterate(r, 0);
    tw_port_resume(port);
    int late = client_connect(port_of(port));
    s.stop_at = 11;
    assert_true(tt_run_until(r, made_n, &s, 5));
    assert_int_equal(s.made, 11);
    assert_int_equal(s.bad_peer, 0);
    for (int i = 0; i < 10; i++)
        close(clients[i]);
    close(late);
    tw_port_stop_listening(port);
    tw_reactor_free(r); /* the open connections are aborted */
    assert_int_equal(s.lost, 11);
}

/* Freeing the reactor under a listening port (its accept in the kernel)
 * stops it, waits for the cancel, and frees everything. */
static void reactor_free_with_port_listening(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = uring_reactor();
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    tw_reactor_iterate(r, 0);
    int c = client_connect(port_of(port));
    s.stop_at = 1;
    assert_true(tt_run_until(r, made_n, &s, 5));
    int pending = client_connect(port_of(port)); /* not yet accepted */
    tw_reactor_free(r);
    assert_int_equal(s.lost, s.made);
    close(c);
    close(pending);
    assert_int_equal(tt_open_fds(), fds_before);
}

/* A port that never ran the loop: the accept was only prepared. */
static void stop_before_the_loop_ran(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = uring_reactor();
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    int c = client_connect(port_of(port));
    tw_port_stop_listening(port);
    tt_run_for(r, 0.02);
    assert_int_equal(s.made, 0);
    assert_true(client_closed_by_server(r, c));
    close(c);
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    tw_reactor_free(r); /* still listening, never turned */
    assert_int_equal(tt_open_fds(), fds_before);
}

/* Unix sockets accept the same way. */
static void unix_socket_multishot(void **state)
{
    tw_reactor *r = uring_reactor();
    char *dir = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    server_stats s = { 0 };
    tw_factory server = TW_FACTORY_INIT(&srv_ops, &s);
    tw_port *port;
    assert_int_equal(tw_listen_unix(r, path, NULL, &server, &port), 0);
    tw_reactor_iterate(r, 0);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        tw_address a;
        assert_int_equal(tw_address_from_unix(&a, path, SOCK_STREAM), 0);
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(fds[i], &a.u.sa, a.len), 0);
    }
    s.stop_at = 5;
    assert_true(tt_run_until(r, made_n, &s, 5));
    assert_int_equal(s.bad_peer, 5); /* no IP peer, by design of the check */
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    assert_int_equal(s.lost, 5);
    tt_rmdir(dir);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(multishot_accepts_a_burst_of_500),
        cmocka_unit_test(readiness_fallback_accepts_a_burst_of_500),
        cmocka_unit_test(stop_listening_with_connections_pending),
        cmocka_unit_test(stop_listening_from_connection_made),
        cmocka_unit_test(pause_and_resume),
        cmocka_unit_test(reactor_free_with_port_listening),
        cmocka_unit_test(stop_before_the_loop_ran),
        cmocka_unit_test(unix_socket_multishot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
