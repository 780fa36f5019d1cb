/* bench_udp — the UDP read path: one datagram per recvmsg(2) against
 * batches of up to TW_UDP_READS_PER_WAKEUP per recvmmsg(2).
 *
 * A plain socket fills the port's receive buffer with BURST datagrams of
 * SIZE bytes over loopback; then only the draining is timed: the reactor
 * turns until the protocol has seen them all. So the figure is the cost of
 * the read path per datagram (system calls, the loop, the callback), without
 * the sender's. The port reads one by one with the default
 * max_datagram_bytes (64 KiB: one datagram fits the shared buffer) and in
 * batches with max_datagram_bytes = 2048.
 *
 * Usage: bench_udp [--quick]. Prints a markdown table. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"
#include "twirl/udp.h"

enum { BURST = 2000 };

static long seen;

static void count(tw_datagram_protocol *p, const void *data, size_t len, const tw_address *from)
{
    seen++;
}

static const tw_datagram_protocol_ops counter = { .datagram_received = count };

/* ns per datagram drained, best of rounds. */
static double drain(size_t max_dgram, size_t size, int rounds)
{
    tw_reactor_options o = { .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&o, &r) < 0)
        exit(1);
    tw_udp_options uo = { .max_datagram_bytes = max_dgram, .rcvbuf = 32 << 20 };
    tw_udp_port *port;
    if (tw_listen_udp(r, "127.0.0.1", 0, &uo, &counter, NULL, &port) < 0) {
        fprintf(stderr, "listen failed\n");
        exit(1);
    }
    const tw_address *to = tw_udp_port_address(port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    char buf[2048] = { 0 };
    double best = 1e9;
    for (int round = 0; round < rounds; round++) {
        seen = 0;
        long sent = 0;
        for (int i = 0; i < BURST; i++)
            if (sendto(fd, buf, size, 0, &to->u.sa, to->len) == (ssize_t)size)
                sent++;
        /* Whatever the receive buffer could not hold was dropped by the
         * kernel: drain until it is empty, and count what arrived. */
        double t0 = now_s(), t1 = t0;
        long last = -1;
        while (seen < sent && seen != last) {
            last = seen;
            tw_reactor_iterate(r, 0.02);
            if (seen != last)
                t1 = now_s();
        }
        if (seen == 0)
            continue;
        double ns = (t1 - t0) * 1e9 / (double)seen;
        if (ns < best)
            best = ns;
    }
    close(fd);
    tw_udp_stop_listening(port);
    tw_reactor_free(r);
    return best;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 && strcmp(argv[1], "--quick") == 0 ? 3 : 20;
    printf("| UDP read path (%s, %d-datagram bursts) | recvmsg ns/dgram | recvmmsg ns/dgram |"
           " ratio |\n",
           getenv("TWIRL_REACTOR") ? getenv("TWIRL_REACTOR") : "default backend", BURST);
    printf("| --- | ---: | ---: | ---: |\n");
    static const size_t sizes[] = { 32, 512, 1400 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        double one = drain(0, sizes[i], rounds);
        double batch = drain(2048, sizes[i], rounds);
        printf("| %zu-byte datagrams | %.0f | %.0f | %.2f |\n", sizes[i], one, batch, one / batch);
    }
    return 0;
}
