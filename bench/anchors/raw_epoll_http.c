/* raw_epoll_http.c - the floor for a keep-alive hello-world HTTP server.
 *
 * Not an HTTP server: it parses nothing. Each "\r\n\r\n" it reads ends a
 * request and is answered with the same 130-byte canned response twirl's
 * hello example sends (status line, Server, Date, Content-Type,
 * Content-Length, "Hello, World!"). Single thread, level-triggered epoll, one
 * shared read buffer, one read and one write per wakeup of a connection.
 * A partial write closes the connection (wrk's small responses never make
 * one on loopback).
 *
 * What it measures: the kernel's share of a request on one keep-alive
 * connection, the part no server can avoid. Server CPU per request here
 * is what an HTTP server would cost if its own work were free; the ratio of
 * another server's CPU per request to this one is the most any server can
 * be ahead of it.
 *
 * usage: raw_epoll_http PORT [BIND_ADDR]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ (64 * 1024)
#define MAXEV 256
#define MAXFD (1 << 17)

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Server: twirl\r\n"
                               "Date: Mon, 07 Dec 2026 00:00:00 GMT\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";

/* How much of "\r\n\r\n" each connection's last read ended with. */
static unsigned char matched[MAXFD];

/* Counts request ends in data, carrying a partial match across reads. */
static int count_ends(int fd, const char *data, size_t len)
{
    static const char end[] = "\r\n\r\n";
    int n = 0;
    unsigned m = matched[fd];
    for (size_t i = 0; i < len; i++) {
        if (data[i] == end[m]) {
            if (++m == 4) {
                n++;
                m = 0;
            }
        } else {
            m = data[i] == '\r' ? 1 : 0;
        }
    }
    matched[fd] = (unsigned char)m;
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [BIND_ADDR]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]);
    const char *addr = argc > 2 ? argv[2] : "127.0.0.1";

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, addr, &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = { .events = EPOLLIN, .data.fd = ls };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);

    static char buf[BUFSZ], out[64 * sizeof RESPONSE];
    struct epoll_event evs[MAXEV];
    fprintf(stderr, "raw_epoll_http listening on %s:%d\n", addr, port);
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAXFD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                    matched[c] = 0;
                    struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            ssize_t got = read(fd, buf, sizeof buf);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                close(fd);
                continue;
            }
            int reqs = count_ends(fd, buf, (size_t)got);
            size_t len = 0;
            for (int k = 0; k < reqs && len + sizeof RESPONSE <= sizeof out; k++) {
                memcpy(out + len, RESPONSE, sizeof RESPONSE - 1);
                len += sizeof RESPONSE - 1;
            }
            if (len > 0 && write(fd, out, len) != (ssize_t)len)
                close(fd);
        }
    }
}
