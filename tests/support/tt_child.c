/* tt_child.c — child processes for tests (see tt_child.h). */
#include "tt_child.h"

#include "tt.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double tt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tt_child_start(tt_child *c, const char *const argv[])
{
    int fds[2];
    memset(c, 0, sizeof *c);
    c->out = -1;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        return -err;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the test died before prctl */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        dup2(fds[1], 1); /* the duplicate does not inherit O_CLOEXEC */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->out = fds[0];
    return 0;
}

int tt_child_start_bin(tt_child *c, const char *name, const char *const args[])
{
    const char *argv[64];
    int n = 0;
    char wrapper[512], path[4096];
    const char *w = getenv("TWIRL_CHILD_WRAPPER");
    if (w && *w) {
        snprintf(wrapper, sizeof wrapper, "%s", w);
        char *save;
        for (char *word = strtok_r(wrapper, " ", &save); word && n < 16;
             word = strtok_r(NULL, " ", &save))
            argv[n++] = word;
    }
    snprintf(path, sizeof path, "%s", tt_bin(name));
    if (access(path, X_OK) != 0)
        return -ENOENT;
    argv[n++] = path;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return tt_child_start(c, argv); /* the child has its own copy of argv */
}

/* Reads what is there, waiting until deadline for something. Returns false
 * on timeout or at the end of the output. */
static bool fill(tt_child *c, double deadline)
{
    for (;;) {
        if (c->eof || c->out < 0)
            return false;
        double left = deadline - tt_now();
        if (left < 0)
            left = 0;
        struct pollfd pfd = { .fd = c->out, .events = POLLIN };
        int n = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        char scratch[4096];
        size_t room = sizeof c->buf - 1 - c->len;
        char *dst = room > 0 ? c->buf + c->len : scratch;
        ssize_t got = read(c->out, dst, room > 0 ? room : sizeof scratch);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0) {
            c->eof = true;
            return false;
        }
        if (room > 0) {
            c->len += (size_t)got;
            c->buf[c->len] = 0;
        }
        return true;
    }
}

const char *tt_child_line(tt_child *c, double timeout)
{
    double deadline = tt_now() + timeout;
    char *nl;
    while (!(nl = memchr(c->buf, '\n', c->len))) {
        if (!fill(c, deadline))
            return NULL;
    }
    size_t n = (size_t)(nl - c->buf);
    size_t keep = n < sizeof c->line - 1 ? n : sizeof c->line - 1;
    memcpy(c->line, c->buf, keep);
    c->line[keep] = 0;
    c->len -= n + 1;
    memmove(c->buf, nl + 1, c->len);
    c->buf[c->len] = 0;
    return c->line;
}

const char *tt_child_rest(tt_child *c, double timeout)
{
    double deadline = tt_now() + timeout;
    while (fill(c, deadline))
        ;
    c->buf[c->len] = 0;
    return c->buf;
}

static void close_out(tt_child *c)
{
    if (c->out >= 0)
        close(c->out);
    c->out = -1;
}

int tt_child_wait(tt_child *c, double timeout)
{
    double deadline = tt_now() + timeout;
    int status = -1;
    while (c->pid > 0) {
        pid_t w = waitpid(c->pid, &status, WNOHANG);
        if (w == c->pid) {
            c->pid = 0;
            break;
        }
        if (tt_now() > deadline) {
            tt_child_kill(c);
            return -1;
        }
        if (!fill(c, tt_now() + 0.005))
            usleep(2000); /* output ended: only the exit is left to wait for */
    }
    tt_child_rest(c, 0); /* what it wrote just before exiting */
    close_out(c);
    return status;
}

int tt_child_stop(tt_child *c, int sig, double timeout, double *took)
{
    double t0 = tt_now();
    if (c->pid > 0)
        kill(c->pid, sig);
    int status = tt_child_wait(c, timeout);
    if (took)
        *took = tt_now() - t0;
    return status;
}

void tt_child_kill(tt_child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
    close_out(c);
}

/* ------------------------------------------------------------ sockets */

int tt_connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

uint16_t tt_local_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return 0;
    return ntohs(sa.sin_port);
}

uint16_t tt_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    uint16_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        port = tt_local_port(fd);
    if (fd >= 0)
        close(fd);
    return port;
}

size_t tt_recv_upto(int fd, char *buf, size_t len, double timeout, bool *eof)
{
    double deadline = tt_now() + timeout;
    size_t got = 0;
    *eof = false;
    while (got < len) {
        double left = deadline - tt_now();
        if (left <= 0)
            break;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            *eof = true; /* EOF, or a reset */
            break;
        }
        got += (size_t)n;
    }
    return got;
}

const char *tt_recv_line(int fd, double timeout)
{
    static char line[4096];
    double deadline = tt_now() + timeout;
    size_t n = 0;
    bool eof = false;
    while (n < sizeof line - 1 && !eof) {
        double left = deadline - tt_now();
        if (left <= 0 || tt_recv_upto(fd, line + n, 1, left, &eof) != 1)
            break;
        if (line[n++] == '\n')
            break;
    }
    line[n] = 0;
    return line;
}
