/* ctest: label=integration timeout=180 */
/* Host names in client endpoints: the lookup, then Happy Eyeballs (RFC
 * 8305) over real loopback sockets. Names are served by dnsmasq, started by
 * this test on a loopback port with its own records (no forwarding, no
 * hosts file), or by the endpoint's resolver hook. A "black hole" is a
 * listener whose accept queue is full: the kernel drops further SYNs, so a
 * connect to it neither succeeds nor fails until its timeout. Each test
 * checks that no descriptor is left open and that every protocol built
 * belongs to the winning connection. Tests that need dnsmasq are skipped
 * (with a message) where it is missing. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/endpoint.h"
#include "twirl/log.h"
#include "twirl/resolver.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

static pid_t dns_pid = -1;
static int dns_port;
static char *dns_dir;
static int dead_udp_fd = -1; /* a DNS "server" that never answers */
static int dead_udp_port;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ logs */

static char logbuf[32768];
static size_t loglen;
static int error_logs;

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR) {
        error_logs++;
        fprintf(stderr, "log: [%s] %s\n", domain, message);
    }
    if (strcmp(domain, "endpoint") != 0)
        return;
    int n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "%s\n", message);
    if (n > 0 && (size_t)n < sizeof logbuf - loglen)
        loglen += (size_t)n;
}

static bool logged(const char *s)
{
    return strstr(logbuf, s) != NULL;
}

static size_t times_logged(const char *s)
{
    size_t n = 0;
    for (const char *p = logbuf; (p = strstr(p, s)); p++)
        n++;
    return n;
}

/* ------------------------------------------------------------ dnsmasq */

static int free_udp_port(void)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(u, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(u, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(u);
    return port;
}

static bool dns_answers(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void start_dnsmasq(void)
{
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "dnsmasq not installed (apt-get install dnsmasq-base): "
                        "tests against a DNS server are skipped\n");
        return;
    }
    dns_dir = tt_tmpdir();
    char conf[4200], hosts[4200];
    snprintf(conf, sizeof conf, "%s/dnsmasq.conf", dns_dir);
    snprintf(hosts, sizeof hosts, "%s/hosts", dns_dir);
    FILE *f = fopen(hosts, "w");
    assert_non_null(f);
    /* Three addresses, IPv4 first as written: the order tried must still
     * start with IPv6. */
    fprintf(f, "127.0.0.2 many.he.test\n127.0.0.3 many.he.test\n::1 many.he.test\n");
    fclose(f);
    for (int attempt = 0; attempt < 10; attempt++) {
        dns_port = free_udp_port();
        f = fopen(conf, "w");
        assert_non_null(f);
        fprintf(f,
                "keep-in-foreground\n"
                "port=%d\n"
                "listen-address=127.0.0.1\n"
                "bind-interfaces\n"
                "no-resolv\n"
                "no-hosts\n"
                "no-poll\n"
                "user=root\n"
                "pid-file=\n"
                "local=/he.test/\n"
                "host-record=both.he.test,127.0.0.1,::1\n"
                "host-record=four.he.test,127.0.0.1\n"
                "addn-hosts=%s\n",
                dns_port, hosts);
        fclose(f);
        char arg[4300];
        snprintf(arg, sizeof arg, "--conf-file=%s", conf);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            execl(DNSMASQ, "dnsmasq", arg, (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 500; i++) { /* up to 5 s for it to listen */
            if (dns_answers(dns_port)) {
                dns_pid = pid;
                return;
            }
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid)
                break; /* the port was taken meanwhile: try another */
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    fail_msg("dnsmasq did not start");
}

static int group_setup(void **state)
{
    dead_udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(dead_udp_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(dead_udp_fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    dead_udp_port = ntohs(a.sin_port);
    start_dnsmasq();
    return 0;
}

static int group_teardown(void **state)
{
    if (dns_pid > 0) {
        kill(dns_pid, SIGTERM);
        waitpid(dns_pid, NULL, 0);
        dns_pid = -1;
    }
    if (dns_dir)
        tt_rmdir(dns_dir);
    dns_dir = NULL;
    close(dead_udp_fd);
    return 0;
}

static void need_dnsmasq(void)
{
    if (dns_pid <= 0)
        skip();
}

/* The reactor's resolver asks only this server (port), no hosts file. */
static void use_dns(tw_reactor *r, int port)
{
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    tw_resolver_options o = { .servers = servers, .no_search = true, .no_hosts = true };
    assert_int_equal(tw_resolver_configure(r, &o), 0);
}

/* ------------------------------------------------------------ sockets */

/* A listener on ip:port (port 0: any) whose accept queue is full, so that
 * SYNs to it are dropped. Returns its port. */
typedef struct black_hole {
    int lfd;
    int fill[4];
} black_hole;

static int sockaddr_of(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
        *len = sizeof *s6;
        return AF_INET6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &s4->sin_addr);
    *len = sizeof *s4;
    return AF_INET;
}

/* Returns the port, or -errno (e.g. -EADDRINUSE for a taken port). */
static int black_hole_open(black_hole *b, const char *ip, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int family = sockaddr_of(ip, port, &ss, &len);
    b->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(b->lfd, (struct sockaddr *)&ss, len) < 0 || listen(b->lfd, 0) < 0) {
        int err = errno;
        close(b->lfd);
        return -err;
    }
    getsockname(b->lfd, (struct sockaddr *)&ss, &len);
    for (int i = 0; i < 4; i++) {
        b->fill[i] = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(b->fill[i], (struct sockaddr *)&ss, len);
    }
    usleep(50000); /* the handshakes that fit complete; the queue is full */
    return family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void black_hole_close(black_hole *b)
{
    for (int i = 0; i < 4; i++)
        close(b->fill[i]);
    close(b->lfd);
}

/* ------------------------------------------------------------ protocols */

typedef struct stats {
    int built, made, lost, starts, stops;
    tw_address peer; /* server side: who connected */
} stats;

static void rec_made(tw_protocol *p)
{
    stats *s = p->factory->user_data;
    s->made++;
    tw_transport_get_peer(p->transport, &s->peer);
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    ((stats *)p->factory->user_data)->lost++;
}

static const tw_protocol_ops rec_ops = {
    .connection_made = rec_made,
    .connection_lost = rec_lost,
};

static tw_protocol *counting_build(tw_factory *f, const tw_address *addr)
{
    ((stats *)f->user_data)->built++;
    return tw_protocol_alloc(f->protocol);
}

static void count_start(tw_factory *f)
{
    ((stats *)f->user_data)->starts++;
}

static void count_stop(tw_factory *f)
{
    ((stats *)f->user_data)->stops++;
}

static const tw_factory_ops counting_ops = {
    .build_protocol = counting_build,
    .start_factory = count_start,
    .stop_factory = count_stop,
};

static tw_protocol *refusing_build(tw_factory *f, const tw_address *addr)
{
    ((stats *)f->user_data)->built++;
    return NULL;
}

static const tw_factory_ops refusing_ops = { .build_protocol = refusing_build };

/* A server on ip:port (port 0: any). Returns the port it got. */
static tw_port *serve(tw_reactor *r, const char *ip, int port, tw_factory *f)
{
    tw_address a;
    assert_int_equal(tw_address_from_ip(&a, ip, (uint16_t)port, SOCK_STREAM), 0);
    tw_listen_options o = { .v6_only = true };
    tw_port *p = NULL;
    int errors = error_logs;
    int rc = tw_listen(r, &a, &o, f, &p);
    error_logs = errors; /* a taken port is logged; the caller tries another */
    return rc == 0 ? p : NULL;
}

/* ------------------------------------------------------------ outcomes */

typedef struct outcome {
    int fired, ok;
    tw_protocol *proto;
    int code, cause_code;
    double at;
    char message[2048];
} outcome;

static tw_result on_ok(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    o->ok = 1;
    o->at = now();
    o->proto = in->value.ptr;
    return TW_RESULT_NONE;
}

static tw_result on_err(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    o->at = now();
    o->code = tw_failure_code(in->failure);
    const tw_failure *cause = tw_failure_cause(in->failure);
    o->cause_code = cause ? tw_failure_code(cause) : 0;
    snprintf(o->message, sizeof o->message, "%s", tw_failure_message(in->failure));
    return TW_RESULT_NONE;
}

static bool fired(void *arg)
{
    return ((outcome *)arg)->fired > 0;
}

static bool log_has(void *arg)
{
    return logged(arg);
}

static bool positive(void *arg)
{
    return *(int *)arg > 0;
}

static tw_deferred *connect_str(tw_reactor *r, const char *desc, tw_factory *f, outcome *o)
{
    tw_client_endpoint *ep;
    char err[TW_ENDPOINT_ERR_MAX];
    if (tw_client_endpoint_from_string(r, desc, &ep, err, sizeof err) < 0)
        fail_msg("%s", err);
    tw_deferred *d = tw_endpoint_connect(ep, f);
    tw_client_endpoint_free(ep); /* attempts outlive their endpoint */
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_callbacks(d, on_ok, on_err, o), 0);
    return d;
}

/* ------------------------------------------------------------ fixtures */

static int base_fds;

static int setup(void **state)
{
    error_logs = 0;
    loglen = 0;
    logbuf[0] = '\0';
    tw_log_set_level(TW_LOG_DEBUG);
    tw_log_set_handler(capture, NULL);
    base_fds = tt_open_fds();
    *state = tt_reactor();
    return 0;
}

static int teardown(void **state)
{
    tw_reactor_free(*state);
    tw_endpoint_set_resolver(NULL, NULL);
    tw_log_set_handler(NULL, NULL);
    tw_log_set_level(TW_LOG_WARN);
    assert_int_equal(error_logs, 0);
    assert_int_equal(tt_open_fds(), base_fds); /* nothing left open */
    return 0;
}

/* A black hole on [::1]:port and a server on 127.0.0.1 at the same port. */
typedef struct pair {
    black_hole hole;
    tw_port *port;
    int portno;
} pair;

static void pair_open(tw_reactor *r, pair *p, const char *hole_ip, const char *server_ip,
                      tw_factory *f)
{
    for (int i = 0; i < 20; i++) {
        int port = black_hole_open(&p->hole, hole_ip, 0);
        assert_true(port > 0);
        if ((p->port = serve(r, server_ip, port, f))) {
            p->portno = port;
            return;
        }
        black_hole_close(&p->hole); /* that port was taken there: another */
    }
    fail_msg("no port free on both %s and %s", hole_ip, server_ip);
}

static void pair_close(pair *p)
{
    tw_port_stop_listening(p->port);
    black_hole_close(&p->hole);
}

/* Runs a few turns so that tasks (stopping losers) and teardowns run. */
static void settle(tw_reactor *r)
{
    tt_run_for(r, 0.05);
}

/* ------------------------------------------------------------ the race */

/* The name's IPv6 address is a black hole: after the attempt delay the
 * IPv4 address is tried, connects, wins, and the IPv6 attempt is
 * cancelled. Only the winner gets a protocol. */
static void black_hole_first_then_second(tw_reactor *r, const char *desc_fmt, double delay)
{
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    pair p;
    pair_open(r, &p, "::1", "127.0.0.1", &server);
    int fds = tt_open_fds();

    char desc[128], want[128];
    snprintf(desc, sizeof desc, desc_fmt, p.portno);
    outcome o = { 0 };
    double t0 = now();
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_true(o.ok);
    double took = o.at - t0;
    /* Not before the delay: the first attempt could not have finished. */
    if (took < delay)
        fail_msg("won after %.3f s, delay %.3f s; log:\n%s", took, delay, logbuf);
    assert_true(took < delay + 5); /* and long before its 30 s timeout */
    assert_int_equal(cs.built, 1);
    assert_int_equal(cs.made, 1);
    snprintf(want, sizeof want, "attempt 1 of 2: [::1]:%d", p.portno);
    assert_true(logged(want));
    snprintf(want, sizeof want, "attempt 2 of 2: 127.0.0.1:%d", p.portno);
    assert_true(logged(want));
    snprintf(want, sizeof want, "127.0.0.1:%d connected first", p.portno);
    assert_true(logged(want));
    /* The black-holed attempt was cancelled when the other won. */
    snprintf(want, sizeof want, "attempt to [::1]:%d cancelled", p.portno);
    assert_true(logged(want));
    assert_int_equal(tt_open_fds(), fds + 2);
    settle(r);
    /* Left open: our connection and the server's side of it. */
    assert_int_equal(tt_open_fds(), fds + 2);
    assert_int_equal(ss.made, 1);
    assert_int_equal(tw_address_family(&ss.peer), AF_INET);

    tw_transport_lose_connection(o.proto->transport);
    tw_deferred_unref(d);
    settle(r);
    assert_int_equal(cs.lost, 1);
    assert_int_equal(cs.starts, 1);
    assert_int_equal(cs.stops, 1);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    assert_int_equal(tt_open_fds(), fds);
    pair_close(&p);
}

static void black_hole_then_working(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    black_hole_first_then_second(r, "tcp:host=both.he.test:port=%d", TW_ENDPOINT_ATTEMPT_DELAY);
}

static void attempt_delay_is_settable(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    black_hole_first_then_second(r, "tcp:host=both.he.test:port=%d:attemptDelay=1.2", 1.2);
    loglen = 0;
    logbuf[0] = '\0';
    black_hole_first_then_second(r, "tcp:both.he.test:%d:attemptDelay=0.05:timeout=20", 0.05);
}

/* The C API: tw_hostname_endpoint_new with its own delay. */
static void attempt_delay_from_c(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    pair p;
    pair_open(r, &p, "::1", "127.0.0.1", &server);
    tw_client_endpoint *ep;
    assert_int_equal(tw_hostname_endpoint_new(r, "both.he.test", 0, NULL, 0.5, &ep), TW_EINVAL);
    assert_int_equal(tw_hostname_endpoint_new(r, "both.he.test", 1, NULL, 0.001, &ep), TW_EINVAL);
    assert_int_equal(tw_hostname_endpoint_new(r, "both.he.test", 1, NULL, 61, &ep), TW_EINVAL);
    assert_int_equal(
        tw_hostname_endpoint_new(r, "both.he.test", (uint16_t)p.portno, NULL, 0.7, &ep), 0);
    outcome o = { 0 };
    double t0 = now();
    tw_deferred *d = tw_endpoint_connect(ep, &client);
    assert_int_equal(tw_deferred_add_callbacks(d, on_ok, on_err, &o), 0);
    tw_client_endpoint_free(ep);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_true(o.ok);
    assert_true(o.at - t0 >= 0.7);
    assert_int_equal(cs.built, 1);
    tw_transport_abort_connection(o.proto->transport);
    tw_deferred_unref(d);
    settle(r);
    pair_close(&p);
}

/* IPv6 answers at once: it wins before the delay, and the IPv4 address
 * (a black hole here) is never even tried. */
static void ipv6_first_wins_alone(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    pair p;
    pair_open(r, &p, "127.0.0.1", "::1", &server);
    char desc[128], want[128];
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:attemptDelay=2", p.portno);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_true(o.ok);
    assert_true(tt_run_until(r, positive, &ss.made, 5));
    assert_int_equal(tw_address_family(&ss.peer), AF_INET6);
    assert_int_equal(cs.built, 1);
    snprintf(want, sizeof want, "attempt 1 of 2: [::1]:%d", p.portno);
    assert_true(logged(want));
    assert_false(logged("attempt 2 of 2"));
    tw_transport_abort_connection(o.proto->transport);
    tw_deferred_unref(d);
    settle(r);
    assert_false(logged("attempt 2 of 2"));
    pair_close(&p);
}

/* bindAddress=127.0.0.1 keeps only the IPv4 addresses: the IPv6 black hole
 * is not tried at all. */
static void bind_address_picks_the_family(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    pair p;
    pair_open(r, &p, "::1", "127.0.0.1", &server);
    char desc[128], want[128];
    snprintf(desc, sizeof desc,
             "tcp:host=both.he.test:port=%d:bindAddress=127.0.0.1:attemptDelay=5", p.portno);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_true(o.ok);
    snprintf(want, sizeof want, "attempt 1 of 1: 127.0.0.1:%d", p.portno);
    assert_true(logged(want));
    tw_transport_abort_connection(o.proto->transport);
    tw_deferred_unref(d);

    /* An IPv6 bindAddress for an IPv4-only name: nothing to try. */
    snprintf(desc, sizeof desc, "tcp:host=four.he.test:port=%d:bindAddress=::1", p.portno);
    outcome none = { 0 };
    d = connect_str(r, desc, &client, &none);
    assert_true(tt_run_until(r, fired, &none, 10));
    assert_int_equal(none.code, TW_EDNS);
    if (!strstr(none.message, "no IPv6 address"))
        fail_msg("%s", none.message);
    tw_deferred_unref(d);
    settle(r);
    pair_close(&p);
}

/* ------------------------------------------------------------ order */

/* dnsmasq's three addresses (two IPv4 written first, then ::1), all
 * refusing: the failure lists them in the order tried, IPv6 first, then
 * alternating, and each reason. */
static void every_address_fails_in_order(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    uint16_t port = 0;
    for (int i = 0; i < 20 && !port; i++) { /* nothing listens on any of them */
        black_hole b;
        int p = black_hole_open(&b, "127.0.0.1", 0);
        black_hole_close(&b);
        port = (uint16_t)p;
    }
    char desc[128];
    snprintf(desc, sizeof desc, "tcp:host=many.he.test:port=%u", port);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_false(o.ok);
    assert_int_equal(o.code, -ECONNREFUSED);
    assert_int_equal(o.cause_code, -ECONNREFUSED);
    char a6[64], a2[64], a3[64], head[96];
    snprintf(head, sizeof head,
             "cannot connect to 'many.he.test' port %u: every address failed: ", port);
    snprintf(a6, sizeof a6, "[::1]:%u: %s", port, tw_strerror(-ECONNREFUSED));
    snprintf(a2, sizeof a2, "127.0.0.2:%u: %s", port, tw_strerror(-ECONNREFUSED));
    snprintf(a3, sizeof a3, "127.0.0.3:%u: %s", port, tw_strerror(-ECONNREFUSED));
    const char *m = o.message, *p6 = strstr(m, a6), *p2 = strstr(m, a2), *p3 = strstr(m, a3);
    if (!p6 || !p2 || !p3 || strncmp(m, head, strlen(head)) != 0)
        fail_msg("unexpected failure: %s", m);
    assert_ptr_equal(p6, m + strlen(head)); /* IPv6 first */
    assert_true(p2 != p3);
    assert_int_equal(cs.built, 0);
    assert_int_equal(cs.starts, cs.stops);
    tw_deferred_unref(d);
    settle(r);
}

/* The hook answers four addresses, IPv4 first; they are tried IPv6 first,
 * families alternating, the order within a family kept: seen in the
 * failure that lists them, and in the attempts' log. */
static tw_deferred *order_resolve(tw_reactor *r, const char *host, uint16_t port, void *arg)
{
    static const char *const ips[] = { "127.0.0.2", "127.0.0.3", "::1", "::ffff:127.0.0.4" };
    tw_address_list *l = malloc(sizeof *l + 4 * sizeof l->addrs[0]);
    l->count = 4;
    for (int i = 0; i < 4; i++)
        tw_address_from_ip(&l->addrs[i], ips[i], 0, 0);
    return tw_succeed(tw_value_make(l, tw_address_list_free));
}

static void interleaved_ipv6_first(void **state)
{
    tw_reactor *r = *state;
    tw_endpoint_set_resolver(order_resolve, NULL);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    uint16_t port = 0;
    for (int i = 0; i < 20 && !port; i++) {
        black_hole b;
        int p = black_hole_open(&b, "127.0.0.1", 0);
        black_hole_close(&b);
        port = (uint16_t)p;
    }
    char desc[128];
    snprintf(desc, sizeof desc, "tcp:host=order.test:port=%u:attemptDelay=3", port);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_false(o.ok);
    char want[512];
    const char *why = tw_strerror(-ECONNREFUSED);
    snprintf(want, sizeof want,
             "cannot connect to 'order.test' port %u: every address failed: [::1]:%u: %s; "
             "127.0.0.2:%u: %s; [::ffff:127.0.0.4]:%u: %s; 127.0.0.3:%u: %s",
             port, port, why, port, why, port, why, port, why);
    assert_string_equal(o.message, want);
    /* A failed attempt does not wait out the 3 s delay: the next starts
     * at once, so all four were tried long before it. */
    snprintf(want, sizeof want, "attempt 4 of 4: 127.0.0.3:%u", port);
    assert_true(logged(want));
    assert_int_equal(cs.built, 0);
    tw_deferred_unref(d);
    settle(r);
}

/* One address times out, the other refuses: each reason is named, and the
 * failure's code is the last one's (the timeout, which came later). */
static void mixed_reasons(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    black_hole hole;
    int port = black_hole_open(&hole, "::1", 0);
    assert_true(port > 0);
    char desc[128], want[512];
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:timeout=0.6:attemptDelay=0.1", port);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_false(o.ok);
    snprintf(want, sizeof want,
             "cannot connect to 'both.he.test' port %d: every address failed: [::1]:%d: timed "
             "out after 0.6 s; 127.0.0.1:%d: %s",
             port, port, port, tw_strerror(-ECONNREFUSED));
    assert_string_equal(o.message, want);
    assert_int_equal(o.code, TW_ETIMEDOUT);
    assert_int_equal(o.cause_code, TW_ETIMEDOUT);
    tw_deferred_unref(d);
    settle(r);
    black_hole_close(&hole);
}

/* ------------------------------------------------------------ cancelling */

/* The DNS server never answers: cancelling stops the lookup. */
static void cancel_during_lookup(void **state)
{
    tw_reactor *r = *state;
    use_dns(r, dead_udp_port);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, "tcp:host=slow.he.test:port=80", &client, &o);
    tt_run_for(r, 0.1);
    assert_int_equal(o.fired, 0);
    tw_resolver_stats rs;
    tw_resolver_stats_get(r, &rs);
    assert_int_equal(rs.queries, 1);
    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_ECANCELED);
    tw_deferred_unref(d);
    settle(r);
    tw_resolver_stats_get(r, &rs);
    assert_int_equal(rs.queries, 0); /* c-ares let it go */
    assert_int_equal(cs.starts, 0);
    assert_int_equal(cs.built, 0);
    assert_false(logged("attempt 1"));
}

/* Both addresses are black holes: cancel once both attempts are under
 * way; both sockets close, nothing is built, nothing more is tried. */
static void cancel_during_attempts(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    black_hole h6, h4;
    int port = 0;
    for (int i = 0; i < 20 && !port; i++) {
        port = black_hole_open(&h6, "::1", 0);
        assert_true(port > 0);
        if (black_hole_open(&h4, "127.0.0.1", port) < 0) {
            black_hole_close(&h6);
            port = 0;
        }
    }
    assert_true(port > 0);
    int fds = tt_open_fds();
    char desc[128], want[128];
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:attemptDelay=0.1", port);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    snprintf(want, sizeof want, "attempt 2 of 2: 127.0.0.1:%d", port);
    assert_true(tt_run_until(r, log_has, want, 10));
    assert_int_equal(tt_open_fds(), fds + 2); /* two sockets connecting */
    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_ECANCELED);
    snprintf(want, sizeof want, "connecting to 'both.he.test' port %d was cancelled", port);
    assert_string_equal(o.message, want);
    assert_int_equal(tt_open_fds(), fds); /* closed by the cancel itself */
    assert_int_equal(times_logged("cancelled"), 2);
    settle(r);
    assert_int_equal(tt_open_fds(), fds);
    assert_int_equal(cs.built, 0);
    assert_int_equal(cs.starts, 1);
    assert_int_equal(cs.stops, 1);
    tw_deferred_unref(d);

    /* Cancelled while the first attempt waits: the second never starts. */
    loglen = 0;
    logbuf[0] = '\0';
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:attemptDelay=0.3", port);
    outcome o2 = { 0 };
    d = connect_str(r, desc, &client, &o2);
    snprintf(want, sizeof want, "attempt 1 of 2: [::1]:%d", port);
    assert_true(tt_run_until(r, log_has, want, 10));
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    assert_int_equal(o2.code, TW_ECANCELED);
    tt_run_for(r, 0.5);
    assert_false(logged("attempt 2 of 2"));
    assert_int_equal(tt_open_fds(), fds);
    black_hole_close(&h6);
    black_hole_close(&h4);
}

/* The user's factory refuses to build: TW_ECANCELED, and no other attempt
 * gets a protocol either. */
static void factory_refuses(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats ss = { 0 }, cs = { 0 };
    tw_factory server = TW_FACTORY_INIT(&rec_ops, &ss);
    tw_factory client = { &refusing_ops, &rec_ops, &cs, 0 };
    pair p;
    pair_open(r, &p, "::1", "127.0.0.1", &server);
    int fds = tt_open_fds();
    char desc[128];
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:attemptDelay=0.05", p.portno);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    assert_true(tt_run_until(r, fired, &o, 10));
    assert_int_equal(o.code, TW_ECANCELED);
    assert_non_null(strstr(o.message, "the factory built no protocol for 127.0.0.1:"));
    assert_int_equal(cs.built, 1);
    assert_int_equal(cs.made, 0);
    tw_deferred_unref(d);
    /* The refused connection is closed; the server sees it end. */
    assert_true(tt_run_until(r, positive, &ss.lost, 5));
    settle(r);
    assert_int_equal(ss.made, 1);
    assert_int_equal(tt_open_fds(), fds);
    assert_int_equal(cs.built, 1);
    pair_close(&p);
}

/* The reactor freed in the middle of a race: the deferred fails, and
 * nothing leaks (checked by the sanitizer and valgrind runs). */
static void reactor_freed_mid_race(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_dns(r, dns_port);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    black_hole hole;
    int port = black_hole_open(&hole, "::1", 0);
    char desc[128], want[128];
    snprintf(desc, sizeof desc, "tcp:host=both.he.test:port=%d:attemptDelay=5", port);
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, desc, &client, &o);
    snprintf(want, sizeof want, "attempt 1 of 2: [::1]:%d", port);
    assert_true(tt_run_until(r, log_has, want, 10));
    /* One more race still looking its name up. */
    outcome o2 = { 0 };
    tw_deferred *d2 = connect_str(r, "tcp:host=both.he.test:port=9", &client, &o2);
    tw_reactor_free(r);
    *state = tt_reactor();
    assert_int_equal(o.fired, 1);
    assert_false(o.ok);
    assert_int_equal(o2.fired, 1);
    assert_false(o2.ok);
    assert_int_equal(cs.built, 0);
    assert_int_equal(cs.starts, cs.stops);
    tw_deferred_unref(d);
    tw_deferred_unref(d2);
    black_hole_close(&hole);
}

/* ------------------------------------------------------------ the hook */

static tw_deferred *wrong_resolve(tw_reactor *r, const char *host, uint16_t port, void *arg)
{
    tw_address *a = malloc(sizeof *a); /* a single address: not the contract */
    tw_address_from_ip(a, "127.0.0.1", port, SOCK_STREAM);
    return tw_succeed(tw_value_make(a, free));
}

static void hook_must_answer_a_list(void **state)
{
    tw_reactor *r = *state;
    tw_endpoint_set_resolver(wrong_resolve, NULL);
    stats cs = { 0 };
    tw_factory client = { &counting_ops, &rec_ops, &cs, 0 };
    outcome o = { 0 };
    tw_deferred *d = connect_str(r, "tcp:host=wrong.test:port=80", &client, &o);
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_EDNS);
    assert_non_null(strstr(o.message, "no address list"));
    tw_deferred_unref(d);
}

/* ------------------------------------------------------------ strings */

static void attempt_delay_strings(void **state)
{
    tw_reactor *r = *state;
    tw_client_endpoint *ep = NULL;
    char err[TW_ENDPOINT_ERR_MAX];
    const char *bad[] = {
        "tcp:example.com:80:attemptDelay=abc",  "tcp:example.com:80:attemptDelay=0.001",
        "tcp:example.com:80:attemptDelay=61",   "tcp:example.com:80:attemptDelay=-1",
        "tcp:example.com:80:attemptDelay=1e-1", "tcp:example.com:80:attemptDelay="
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tw_client_endpoint_from_string(r, bad[i], &ep, err, sizeof err),
                         TW_ESYNTAX);
        assert_non_null(strstr(err, "bad attemptDelay"));
        assert_non_null(strstr(err, "seconds, 0.01 to 60"));
    }
    assert_int_equal(tw_client_endpoint_from_string(r, "tcp:example.com:80:attemptDelay=0.01", &ep,
                                                    err, sizeof err),
                     0);
    tw_client_endpoint_free(ep);
    assert_int_equal(tw_client_endpoint_from_string(
                         r, "tcp:host=example.com:port=80:attemptDelay=60", &ep, err, sizeof err),
                     0);
    tw_client_endpoint_free(ep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(black_hole_then_working, setup, teardown),
        cmocka_unit_test_setup_teardown(attempt_delay_is_settable, setup, teardown),
        cmocka_unit_test_setup_teardown(attempt_delay_from_c, setup, teardown),
        cmocka_unit_test_setup_teardown(ipv6_first_wins_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(bind_address_picks_the_family, setup, teardown),
        cmocka_unit_test_setup_teardown(every_address_fails_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(interleaved_ipv6_first, setup, teardown),
        cmocka_unit_test_setup_teardown(mixed_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_during_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_during_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(factory_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(reactor_freed_mid_race, setup, teardown),
        cmocka_unit_test_setup_teardown(hook_must_answer_a_list, setup, teardown),
        cmocka_unit_test_setup_teardown(attempt_delay_strings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
