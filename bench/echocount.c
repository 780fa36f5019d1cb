/* echocount.c - a counted load for echo servers, for instruction counts.
 *
 * Where bench/anchors/echoload.c runs for a time, this one exchanges an
 * exact number of messages, so that a server run under callgrind does the
 * same work every time (bench/callgrind.sh).
 *
 * Shapes
 *   window (default): each connection keeps DEPTH messages of SIZE bytes in
 *     flight, sending one more for each one echoed (echoload's pingpong
 *     mode; DEPTH 1 is classic ping-pong).
 *   burst: each connection writes DEPTH messages in one send and waits for
 *     all of them before the next burst: every read of the server sees the
 *     same bytes, whatever the timing.
 * Every echoed byte is checked against what was sent.
 *
 * usage: echocount -p PORT [-H 127.0.0.1] [-m window|burst] [-c CONNS]
 *                  [-s SIZE] [-P DEPTH] -n MESSAGES
 * Prints one line: "RESULT msgs=N bytes=B seconds=S".
 * Exits 0 when every message came back intact, 1 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    uint64_t quota;      /* messages this connection exchanges */
    uint64_t sent, done; /* messages written, messages echoed */
    uint64_t tx, rx;     /* bytes written, bytes echoed */
    int out_armed;
};

static int burst;
static size_t msgsz = 64;
static int depth = 1;
static int ep;
static char *pattern; /* byte i of the stream is pattern[i % plen] */
static size_t plen;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void arm_out(struct conn *c, int on)
{
    if (c->out_armed == on)
        return;
    struct epoll_event e = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0)
        die("epoll_ctl");
    c->out_armed = on;
}

/* Writes until tx reaches sent*msgsz or the socket is full. */
static void flush(struct conn *c)
{
    uint64_t want = c->sent * msgsz;
    while (c->tx < want) {
        size_t off = (size_t)(c->tx % plen);
        size_t n = plen - off;
        if (n > want - c->tx)
            n = (size_t)(want - c->tx);
        ssize_t w = send(c->fd, pattern + off, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                arm_out(c, 1);
                return;
            }
            die("send");
        }
        c->tx += (uint64_t)w;
    }
    arm_out(c, 0);
}

static void queue_more(struct conn *c)
{
    if (burst) {
        if (c->done < c->sent)
            return; /* the burst is not back yet */
        uint64_t k = c->quota - c->sent < (uint64_t)depth ? c->quota - c->sent : (uint64_t)depth;
        c->sent += k;
    } else {
        while (c->sent < c->quota && c->sent - c->done < (uint64_t)depth)
            c->sent++;
    }
    flush(c);
}

static int on_read(struct conn *c)
{
    static char rbuf[256 * 1024];
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : (die("recv"), 0);
    if (r == 0) {
        fprintf(stderr, "echocount: server closed a connection after %llu of %llu messages\n",
                (unsigned long long)c->done, (unsigned long long)c->quota);
        exit(1);
    }
    for (ssize_t i = 0; i < r; i++) {
        if (rbuf[i] != pattern[(c->rx + (uint64_t)i) % plen]) {
            fprintf(stderr, "echocount: byte %llu differs\n",
                    (unsigned long long)(c->rx + (uint64_t)i));
            exit(1);
        }
    }
    c->rx += (uint64_t)r;
    if (c->rx > c->tx) {
        fprintf(stderr, "echocount: more bytes echoed than sent\n");
        exit(1);
    }
    c->done = c->rx / msgsz;
    queue_more(c);
    return c->done == c->quota;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, nconns = 1, opt;
    uint64_t total = 0;
    while ((opt = getopt(argc, argv, "p:H:m:c:s:P:n:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'H':
            host = optarg;
            break;
        case 'm':
            burst = strcmp(optarg, "burst") == 0;
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 's':
            msgsz = (size_t)atol(optarg);
            break;
        case 'P':
            depth = atoi(optarg);
            break;
        case 'n':
            total = strtoull(optarg, NULL, 10);
            break;
        default:
            goto usage;
        }
    }
    if (!port || nconns < 1 || depth < 1 || msgsz < 1 || total < (uint64_t)nconns)
        goto usage;
    signal(SIGPIPE, SIG_IGN);
    /* A pattern whose length is no multiple of the message size, so that
     * a message echoed twice or out of order shows. */
    plen = 65521;
    pattern = malloc(plen);
    for (size_t i = 0; i < plen; i++)
        pattern[i] = (char)('a' + i % 23);

    struct sockaddr_storage ss = { 0 };
    socklen_t sl;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto usage;
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto usage;
        sl = sizeof *a;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    int one = 1;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &cs[i];
        c->quota = total / (uint64_t)nconns + ((uint64_t)i < total % (uint64_t)nconns);
        c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&ss, sl) < 0)
            die("connect");
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
            die("epoll_ctl");
    }
    double t0 = now_s();
    for (int i = 0; i < nconns; i++)
        queue_more(&cs[i]);
    int finished = 0;
    struct epoll_event evs[256];
    while (finished < nconns) {
        int n = epoll_wait(ep, evs, 256, 30000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "echocount: no progress for 30 s\n");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT)
                flush(c);
            if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->done < c->quota)
                finished += on_read(c);
        }
    }
    double t1 = now_s();
    uint64_t bytes = 0;
    for (int i = 0; i < nconns; i++) {
        bytes += cs[i].rx;
        close(cs[i].fd);
    }
    printf("RESULT msgs=%llu bytes=%llu seconds=%.3f\n", (unsigned long long)total,
           (unsigned long long)bytes, t1 - t0);
    return 0;

usage:
    fprintf(stderr,
            "usage: %s -p PORT [-H HOST] [-m window|burst] [-c CONNS] [-s SIZE] "
            "[-P DEPTH] -n MESSAGES\n",
            argv[0]);
    return 2;
}
