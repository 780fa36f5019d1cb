/* bench_web_client — the HTTP client's cost per request.
 *
 *  1. CPU per request without the kernel: the agent's connection is a
 *     string transport, the "server" a canned 13-byte response fed back
 *     in one read; the body is read with tw_read_body, or streamed to a
 *     consumer (deliver_body). Thread CPU nanoseconds per request, and heap
 *     allocations per request in the steady state on a pooled connection
 *     (malloc, calloc and realloc counted; not in sanitizer builds).
 *  2. Requests per second over loopback against nginx (started here on a
 *     free port, pinned to another CPU than the client when there is one),
 *     one connection with keep-alive and 16 concurrent ones, next to wrk
 *     (-t1) and Twisted's Agent with a persistent pool on the same server
 *     and the same URL. Skipped when nginx is missing; wrk and Twisted
 *     columns are left out when those are missing.
 *
 * Usage: bench_web_client [--quick] [--url URL]  (URL: an existing server
 * instead of nginx, e.g. a twirl web server). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "twirl/tcp.h"
#include "twirl/testing.h"
#include "twirl/web_client.h"

/* ------------------------------------------------- allocation counting */

#include "alloc_count.h"

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ================================================= 1. without the kernel */

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 "
                               "08:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
                               "Connection: keep-alive\r\n\r\nHello, World!";

/* The agent's one connection: a string transport the loop feeds. */
typedef struct fake {
    tw_reactor *r;
    tw_string_transport *st;
    tw_protocol *p;
} fake;

typedef struct fake_ep {
    tw_client_endpoint base;
    fake *x;
} fake_ep;

static tw_deferred *fake_connect(tw_client_endpoint *ep, tw_factory *f)
{
    fake *x = ((fake_ep *)ep)->x;
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", 80, SOCK_STREAM);
    x->st = tw_string_transport_new(x->r);
    x->p = tw_factory_build(f, &a);
    tw_string_transport_connect(x->st, x->p);
    return tw_succeed(tw_value_make(x->p, NULL));
}

static const tw_client_endpoint_ops fake_ops = { "fake", fake_connect, NULL };

static int fake_endpoint(tw_reactor *r, bool https, const char *host, uint16_t port, void *arg,
                         tw_client_endpoint **out)
{
    fake_ep *ep = calloc(1, sizeof *ep);
    ep->base.ops = &fake_ops;
    ep->base.reactor = r;
    ep->x = arg;
    *out = &ep->base;
    return 0;
}

typedef struct loop {
    int mode; /* 0: read_body, 1: deliver_body */
    long done;
    size_t bytes;
} loop;

static tw_result got_body(tw_result *in, void *arg)
{
    loop *l = arg;
    l->bytes += ((tw_body_bytes *)in->value.ptr)->len;
    l->done++;
    return TW_RESULT_NONE; /* the chain frees the bytes */
}

static void c_data(tw_response *r, const char *data, size_t len, void *arg)
{
    ((loop *)arg)->bytes += len;
}

static void c_end(tw_response *r, const tw_failure *reason, void *arg)
{
    ((loop *)arg)->done++;
}

static const tw_response_body_ops c_ops = { c_data, c_end };

static tw_result got_response(tw_result *in, void *arg)
{
    loop *l = arg;
    tw_response *resp = in->value.ptr;
    if (l->mode == 1) {
        tw_response_deliver_body(resp, &c_ops, l);
        return TW_RESULT_NONE;
    }
    return tw_chain(tw_read_body(resp, 0));
}

static void one_request(tw_agent *a, loop *l)
{
    tw_deferred *d = tw_agent_request(a, "GET", "http://127.0.0.1/", NULL, 0, NULL);
    tw_deferred_add_callback(d, got_response, l);
    if (l->mode == 0)
        tw_deferred_add_callback(d, got_body, l);
    tw_deferred_unref(d);
}

static void cpu_per_request(int mode, long n)
{
    fake x = { .r = tw_test_clock_new() };
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.endpoint_for = fake_endpoint;
    o.endpoint_arg = &x;
    tw_agent *a;
    tw_agent_new(x.r, &o, &a);
    loop l = { .mode = mode };
    one_request(a, &l); /* makes the connection */
    tw_string_transport *st = x.st;
    size_t rlen = sizeof RESPONSE - 1;
    tw_string_transport_deliver(st, RESPONSE, rlen);
    tw_clock_advance(x.r, 0);
    for (long i = 0; i < 1000; i++) { /* warm up */
        tw_string_transport_clear(st);
        one_request(a, &l);
        tw_string_transport_deliver(st, RESPONSE, rlen);
        tw_clock_advance(x.r, 0);
    }
    unsigned long a0 = allocations;
    long done0 = l.done;
    double t0 = cpu_ns();
    for (long i = 0; i < n; i++) {
        tw_string_transport_clear(st);
        one_request(a, &l);
        tw_string_transport_deliver(st, RESPONSE, rlen);
        tw_clock_advance(x.r, 0);
    }
    double ns = (cpu_ns() - t0) / (double)n;
    double per = (double)(allocations - a0) / (double)n;
    if (l.done - done0 != n)
        printf("  (!) %ld of %ld requests completed\n", l.done - done0, n);
    printf("  %-34s %8.0f ns/request  %8.2f Mreq/s",
           mode ? "deliver_body (streaming consumer)" : "read_body (collect)", ns, 1e3 / ns);
#ifdef COUNT_ALLOCS
    printf("  %.2f allocations/request\n", per);
#else
    (void)per;
    printf("\n");
#endif
    tw_agent_free(a);
    tw_string_transport_end(st, 0);
    tw_clock_advance(x.r, 0);
    tw_protocol_free(x.p);
    tw_string_transport_free(st);
    tw_reactor_free(x.r);
}

/* ================================================= 2. over loopback */

/* The CPUs we may use, in order. */
static int cpu_at(int k)
{
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set) && k-- == 0)
            return c;
    return -1;
}

static pid_t spawn(const char *const argv[], int cpu, int out_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        if (out_fd >= 0)
            dup2(out_fd, 1);
        int null = open("/dev/null", 0);
        dup2(null, 0);
        if (out_fd < 0)
            dup2(null, 1);
        dup2(null, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Runs a command with a deadline and returns its standard output. */
static char *capture(const char *const argv[], int cpu, double timeout)
{
    int p[2];
    if (pipe(p) < 0)
        return NULL;
    pid_t pid = spawn(argv, cpu, p[1]);
    close(p[1]);
    static char out[65536];
    size_t len = 0;
    double end = wall() + timeout;
    while (wall() < end) {
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(p[0], &rs);
        struct timeval tv = { 0, 100000 };
        if (select(p[0] + 1, &rs, NULL, NULL, &tv) > 0) {
            ssize_t n = read(p[0], out + len, sizeof out - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
    }
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    out[len] = 0;
    return out;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

typedef struct netloop {
    tw_agent *a;
    const char *url;
    long done, failed;
    double until;
    int outstanding;
    tw_reactor *r;
} netloop;

static void net_next(netloop *l);

static tw_result net_body(tw_result *in, void *arg)
{
    netloop *l = arg;
    l->done++;
    l->outstanding--;
    net_next(l);
    return TW_RESULT_NONE;
}

static tw_result net_fail(tw_result *in, void *arg)
{
    netloop *l = arg;
    if (l->failed++ == 0) {
        char buf[512];
        tw_failure_format(in->failure, buf, sizeof buf);
        fprintf(stderr, "bench_web_client: %s\n", buf);
    }
    l->outstanding--;
    net_next(l);
    return TW_RESULT_NONE;
}

static tw_result net_resp(tw_result *in, void *arg)
{
    return tw_chain(tw_read_body(in->value.ptr, 0));
}

static void net_next(netloop *l)
{
    if (wall() >= l->until || l->failed > 100) {
        if (l->outstanding == 0)
            tw_reactor_stop(l->r);
        return;
    }
    l->outstanding++;
    tw_deferred *d = tw_agent_request(l->a, "GET", l->url, NULL, 0, NULL);
    tw_deferred_add_callback(d, net_resp, l);
    tw_deferred_add_callbacks(d, net_body, net_fail, l);
    tw_deferred_unref(d);
}

static void net_start(void *arg)
{
    netloop *l = arg;
    int c = l->outstanding;
    l->outstanding = 0;
    for (int i = 0; i < c; i++)
        net_next(l);
}

static double twirl_rps(const char *url, int conc, double secs)
{
    tw_reactor *r;
    tw_reactor_options ro = { .signals = TW_SIGNALS_OFF };
    tw_reactor_new(&ro, &r);
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.max_per_host = (size_t)conc;
    o.max_idle_per_host = (size_t)conc;
    tw_agent *a;
    tw_agent_new(r, &o, &a);
    netloop l = { .a = a, .url = url, .r = r, .outstanding = conc, .until = wall() + 0.3 };
    tw_call_when_running(r, net_start, &l);
    tw_reactor_run(r); /* warm-up */
    l.done = 0;
    l.outstanding = conc;
    double t0 = wall();
    l.until = t0 + secs;
    tw_call_when_running(r, net_start, &l);
    tw_reactor_run(r);
    double rps = (double)l.done / (wall() - t0);
    tw_agent_free(a);
    for (int i = 0; i < 100 && tw_reactor_connection_count(r) > 0; i++)
        tw_reactor_iterate(r, 0.01);
    tw_reactor_free(r);
    return l.failed > 100 ? 0 : rps;
}

static double wrk_rps(const char *url, int conc, double secs, int cpu)
{
    const char *wrk = "/usr/bin/wrk";
    if (access(wrk, X_OK) != 0)
        return -1;
    char c[16], d[16];
    snprintf(c, sizeof c, "%d", conc);
    snprintf(d, sizeof d, "%ds", (int)(secs + 0.5));
    const char *argv[] = { wrk, "-t1", "-c", c, "-d", d, url, NULL };
    char *out = capture(argv, cpu, secs + 10);
    char *rps = out ? strstr(out, "Requests/sec:") : NULL;
    return rps ? atof(rps + 13) : -1;
}

static double twisted_rps(const char *url, int conc, double secs, int cpu)
{
    const char *py = "/usr/bin/python3";
    if (access(py, X_OK) != 0 || system("/usr/bin/python3 -c 'import twisted.web' 2>/dev/null"))
        return -1;
    char script[1024], c[16], s[16];
    char here[1024];
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(script, sizeof script, "%s/twisted_web_client.py", dirname(here));
    snprintf(c, sizeof c, "%d", conc);
    snprintf(s, sizeof s, "%g", secs);
    const char *argv[] = { py, script, url, c, s, NULL };
    char *out = capture(argv, cpu, secs + 30);
    return out && out[0] >= '0' && out[0] <= '9' ? atof(out) : -1;
}

static void over_loopback(const char *given_url, double secs)
{
    char url[256];
    char dir[] = "/tmp/twirl-bench-nginx-XXXXXX";
    pid_t nginx = 0;
    /* The client takes the first CPU it may use; the server another
     * online one (even when this process was pinned to one CPU). */
    int client_cpu = cpu_at(0), server_cpu = -1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (int c = 0; c < online && server_cpu < 0; c++)
        if (c != client_cpu)
            server_cpu = c;
    if (given_url) {
        snprintf(url, sizeof url, "%s", given_url);
    } else {
        const char *bin = "/usr/sbin/nginx";
        if (access(bin, X_OK) != 0 || !mkdtemp(dir)) {
            printf("  (nginx is not installed: skipped; tools/deps.sh bench installs it)\n");
            return;
        }
        uint16_t port = free_port();
        char path[512], conf[2048];
        snprintf(path, sizeof path, "%s/hello.txt", dir);
        FILE *f = fopen(path, "w");
        fputs("Hello, World!", f);
        fclose(f);
        snprintf(conf, sizeof conf,
                 "daemon off; master_process off; worker_processes 1;\n"
                 "pid %s/nginx.pid; error_log %s/error.log error;\n"
                 "events { worker_connections 1024; }\n"
                 "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
                 "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
                 "  keepalive_requests 100000000; keepalive_timeout 60;\n"
                 "  server { listen 127.0.0.1:%u; root %s; } }\n",
                 dir, dir, dir, dir, dir, dir, dir, port, dir);
        snprintf(path, sizeof path, "%s/nginx.conf", dir);
        f = fopen(path, "w");
        fputs(conf, f);
        fclose(f);
        const char *argv[] = { bin, "-p", dir, "-c", path, NULL };
        nginx = spawn(argv, server_cpu, -1);
        for (int i = 0; i < 200 && !port_open(port); i++)
            usleep(10000);
        snprintf(url, sizeof url, "http://127.0.0.1:%u/hello.txt", port);
    }
    if (client_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(client_cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    printf("  server: %s (%s, CPU %d); clients on CPU %d; %.0f s each\n\n", url,
           given_url ? "given" : "nginx", server_cpu, client_cpu, secs);
    printf("  %-28s %14s %14s %14s\n", "", "twirl", "wrk -t1", "Twisted Agent");
    static const int concs[] = { 1, 16 };
    for (size_t k = 0; k < 2; k++) {
        int c = concs[k];
        double t = twirl_rps(url, c, secs);
        double w = wrk_rps(url, c, secs, client_cpu);
        double tx = twisted_rps(url, c, secs, client_cpu);
        char label[64];
        snprintf(label, sizeof label, "%d connection%s, keep-alive", c, c > 1 ? "s" : "");
        printf("  %-28s %10.0f r/s", label, t);
        if (w > 0)
            printf(" %10.0f r/s", w);
        else
            printf(" %14s", "-");
        if (tx > 0)
            printf(" %10.0f r/s", tx);
        else
            printf(" %14s", "-");
        printf("\n  %-28s %14s", "  ratio to twirl", "1.00");
        if (w > 0)
            printf(" %14.2f", w / t);
        else
            printf(" %14s", "");
        if (tx > 0)
            printf(" %14.2f", tx / t);
        printf("\n");
    }
    if (nginx) {
        kill(nginx, SIGQUIT);
        waitpid(nginx, NULL, 0);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
}

int main(int argc, char **argv)
{
    bool quick = false;
    const char *url = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
    }
    signal(SIGPIPE, SIG_IGN);
    long n = quick ? 20000 : 300000;
    printf("bench_web_client: GET of a 13-byte body on a pooled keep-alive connection\n\n");
    printf("1. client CPU per request, no kernel (string transport, canned response):\n");
    cpu_per_request(0, n);
    cpu_per_request(1, n);
    printf("\n2. over loopback:\n");
    over_loopback(url, quick ? 1 : 3);
    return 0;
}
