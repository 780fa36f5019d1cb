/* bench_send_zc — does SEND_ZC pay over loopback? Plain io_uring sends
 * against zero-copy ones, for writes of several sizes.
 *
 * A twirl server on the io_uring backend sends TOTAL bytes to a plain
 * receiver in a child process (pinned to the other CPU where there is
 * one), as writes of SIZE bytes lent with tw_transport_write_ref (so no
 * copy in user space: what differs is only the kernel's copy against its
 * page pinning and notifications). Reported: throughput, and the server's
 * CPU time (user + system, which on loopback includes much of the
 * receiving side's softirq work) per GiB sent; best of ROUNDS runs.
 * TWIRL_URING_SEND_ZC picks the mode (never/always) for each run.
 *
 * Usage: bench_send_zc [--quick]. Prints a markdown table. */
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"
#include "twirl/tcp.h"

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void pin(int cpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

typedef struct run {
    size_t size, total;
    const char *block;
    double t0, t1, c0, c1;
    int done;
} run;

static void sender_made(tw_protocol *p)
{
    run *rn = p->factory->user_data;
    tw_transport_set_option(p->transport, TW_OPT_WRITE_LIMIT, 0);
    rn->t0 = now_s();
    rn->c0 = cpu_s();
    for (size_t sent = 0; sent < rn->total; sent += rn->size)
        if (tw_transport_write_ref(p->transport, rn->block, rn->size, NULL, NULL) < 0)
            exit(1);
    tw_transport_lose_connection(p->transport);
}

static void sender_lost(tw_protocol *p, const tw_failure *reason)
{
    run *rn = p->factory->user_data;
    rn->t1 = now_s();
    rn->c1 = cpu_s();
    rn->done = 1;
}

static const tw_protocol_ops sender_ops = {
    .size = sizeof(tw_protocol),
    .connection_made = sender_made,
    .connection_lost = sender_lost,
};

static void receive_all(uint16_t port)
{
    pin(1);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(0x7f000001) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        _exit(1);
    static char buf[256 * 1024];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    _exit(0);
}

/* One transfer; returns 0 and fills MB/s and CPU ms per GiB, or -1. */
static int transfer(const char *mode, size_t size, size_t total, const char *block, double *mbps,
                    double *cpu_ms_per_gib, int *is_uring)
{
    setenv("TWIRL_URING_SEND_ZC", mode, 1);
    tw_reactor_options o = { .backend = "uring", .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&o, &r) < 0)
        return -1;
    *is_uring = strcmp(tw_reactor_backend(r), "uring") == 0;
    run rn = { .size = size, .total = total, .block = block };
    tw_factory f = TW_FACTORY_INIT(&sender_ops, &rn);
    tw_port *port;
    if (tw_listen_tcp(r, "127.0.0.1", 0, NULL, &f, &port) < 0)
        return -1;
    pid_t child = fork();
    if (child == 0)
        receive_all(tw_address_port(tw_port_address(port)));
    while (!rn.done)
        tw_reactor_iterate(r, 1.0);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    int status;
    waitpid(child, &status, 0);
    double secs = rn.t1 - rn.t0;
    *mbps = (double)total / 1e6 / secs;
    *cpu_ms_per_gib = (rn.c1 - rn.c0) * 1e3 / ((double)total / (1 << 30));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    size_t total = (quick ? 64u : 512u) << 20;
    int rounds = quick ? 1 : 3;
    static const size_t sizes[] = { 16 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20 };
    static const char *modes[] = { "never", "always" };
    char *block = malloc(8 << 20);
    memset(block, 'z', 8 << 20);
    pin(0);
    printf("| write size | send | MB/s | server CPU ms/GiB |\n| ---: | --- | ---: | ---: |\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int m = 0; m < 2; m++) {
            double best = 0, best_cpu = 0;
            for (int k = 0; k < rounds; k++) {
                double mbps, cpu;
                int is_uring;
                if (transfer(modes[m], sizes[i], total, block, &mbps, &cpu, &is_uring) < 0) {
                    fprintf(stderr, "bench_send_zc: transfer failed\n");
                    return 1;
                }
                if (!is_uring) {
                    printf("(io_uring unavailable here: nothing to compare)\n");
                    return 0;
                }
                if (mbps > best) {
                    best = mbps;
                    best_cpu = cpu;
                }
            }
            printf("| %zu KiB | %s | %.0f | %.0f |\n", sizes[i] >> 10, m ? "SEND_ZC" : "SEND", best,
                   best_cpu);
            fflush(stdout);
        }
    }
    free(block);
    return 0;
}
