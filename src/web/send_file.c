/* send_file.c — sending a file as a response body (tw_request_send_file):
 * sendfile(2) straight from the page cache to the socket on plain TCP and
 * Unix transports, pread into one small buffer otherwise (TLS), and always
 * only as fast as the client reads.
 *
 * The sender is a pull producer on the transport: it pushes with sendfile
 * until the socket is full (EAGAIN), then lends the transport one piece
 * read with pread; the transport queues that piece, waits for the socket to
 * drain, and calls resume_producing — and sendfile takes over again. So a
 * slow reader costs one FILE_CHUNK buffer, whatever the file's size. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "web/web_internal.h"

enum {
    FILE_SMALL = 16 * 1024,       /* read and sent with the head in one writev */
    FILE_CHUNK = 16 * 1024,       /* pread piece when sendfile cannot go on */
    FILE_BUDGET = 4 * 1024 * 1024 /* bytes per turn, then let others run */
};

static void close_fd_release(void *arg)
{
    close((int)(intptr_t)arg);
}

/* Gives the file back: closes it, or calls the owner's release. */
void tw__file_release(tw_request *req)
{
    if (req->file_fd < 0)
        return;
    req->file_fd = -1;
    tw_free_fn rel = req->file_release;
    void *arg = req->file_release_arg;
    req->file_release = NULL;
    if (rel)
        rel(arg);
}

/* TCP_CORK while a file goes out over TCP: the head and the file's first
 * pages leave in full segments rather than the head alone, which halves the
 * receiver's kernel work per response on loopback (measured: a wrk client
 * spent 3.8 s of system time per 5,000 1 MiB responses without it, 1.8 s
 * with it, as with nginx's tcp_nopush). Set on the descriptor directly: the
 * transport has no option for it. */
static void cork(tw_transport *t, int on)
{
    if (!t || !t->ops->kind || strcmp(t->ops->kind, "tcp") != 0)
        return;
    int fd = tw_transport_fd(t);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

static tw_request *of_file_producer(tw_producer *p)
{
    return (tw_request *)((char *)p - offsetof(tw_request, file_producer));
}

static void file_done(tw_request *req, bool ok)
{
    tw_transport *t = tw__request_transport(req);
    req->flags &= ~RF_FILE;
    tw__file_release(req);
    if (t && t->state == TW_TRANSPORT_OPEN)
        cork(t, 0); /* sends what the cork held */
    if (t)
        tw_transport_unregister_producer(t);
    if (!ok && t)
        tw_transport_abort_connection(t);
    if (req->flags & RF_ACTIVE)
        tw_request_finish(req);
}

static void file_buf_release(void *arg)
{
    tw_request *req = arg;
    req->file_buf_busy = false;
    tw__request_maybe_free(req);
}

static void file_task_fn(tw_reactor *r, tw__task *task);

static void file_pump(tw_request *req)
{
    req->file_pumped = true;
    tw_transport *t = tw__request_transport(req);
    if (!(req->flags & RF_FILE) || !t || t->state != TW_TRANSPORT_OPEN)
        return;
    int sock = tw_transport_fd(t);
    const char *kind = t->ops->kind ? t->ops->kind : "";
    bool use_sendfile = sock >= 0 && (strcmp(kind, "tcp") == 0 || strcmp(kind, "unix") == 0);
    size_t budget = FILE_BUDGET;
    while (req->file_left > 0) {
        if (use_sendfile && tw_transport_buffered(t) == 0) {
            size_t want = req->file_left > budget ? budget : (size_t)req->file_left;
            off_t off = (off_t)req->file_off;
            ssize_t n = sendfile(sock, req->file_fd, &off, want);
            if (n > 0) {
                req->file_off += (uint64_t)n;
                req->file_left -= (uint64_t)n;
                req->sent += (uint64_t)n;
                budget -= (size_t)n;
                if (budget == 0)
                    break;
                continue;
            }
            if (n == 0) {
                tw_log(TW_LOG_WARN, "web", "a file shrank while it was being sent: aborting");
                file_done(req, false);
                return;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
                    use_sendfile = false;
                    continue;
                }
                tw_log(TW_LOG_DEBUG, "web", "sendfile: %s", strerror(errno));
                file_done(req, false);
                return;
            }
            /* The socket is full: queue one piece so the transport tells us
             * (resume_producing) when the client has read it. */
        }
        if (req->file_buf_busy)
            return; /* resumed once the last piece was sent */
        if (!req->file_buf && !(req->file_buf = malloc(FILE_CHUNK))) {
            file_done(req, false);
            return;
        }
        size_t want = req->file_left > FILE_CHUNK ? FILE_CHUNK : (size_t)req->file_left;
        ssize_t n;
        do
            n = pread(req->file_fd, req->file_buf, want, (off_t)req->file_off);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
            tw_log(TW_LOG_WARN, "web", "reading a file being sent: %s: aborting",
                   n == 0 ? "it shrank" : strerror(errno));
            file_done(req, false);
            return;
        }
        req->file_off += (uint64_t)n;
        req->file_left -= (uint64_t)n;
        req->sent += (uint64_t)n;
        req->file_buf_busy = true;
        tw_transport_write_ref(t, req->file_buf, (size_t)n, file_buf_release, req);
        if (!(req->flags & RF_FILE) || t->state != TW_TRANSPORT_OPEN)
            return;
        if (tw_transport_buffered(t) > 0)
            return; /* resume_producing comes when it drained */
        if ((size_t)n >= budget)
            break;
        budget -= (size_t)n;
    }
    if (req->file_left == 0) {
        file_done(req, true);
        return;
    }
    /* Budget spent with the socket still taking bytes: go on after the
     * other connections had their turn. */
    tw__task_post(req->site->reactor, &req->file_task, file_task_fn);
}

static void file_resume(tw_producer *p)
{
    file_pump(of_file_producer(p));
}

static void file_stop(tw_producer *p)
{
    tw_request *req = of_file_producer(p);
    if (!(req->flags & RF_FILE))
        return;
    req->flags &= ~RF_FILE;
    tw__file_release(req);
    tw__task_cancel(req->site->reactor, &req->file_task);
    if (req->flags & RF_ACTIVE)
        tw_request_finish(req);
}

static const tw_producer_ops file_producer_ops = {
    .resume_producing = file_resume,
    .stop_producing = file_stop,
};

static void file_task_fn(tw_reactor *r, tw__task *task)
{
    tw_request *req = (tw_request *)((char *)task - offsetof(tw_request, file_task));
    file_pump(req);
}

int tw__request_send_file_ex(tw_request *req, int fd, uint64_t offset, uint64_t len,
                             tw_free_fn release, void *arg)
{
    int rc = tw__request_check_open(req);
    if (rc == 0 && (req->flags & RF_HEAD_SENT))
        rc = TW_EBUSY;
    if (rc == 0 && (req->producer || (req->flags & RF_FILE)))
        rc = TW_EBUSY;
    if (rc == 0 && (req->flags & RF_LEN_SET) && req->content_length != len)
        rc = TW_EINVAL;
    if (rc < 0) {
        if (release)
            release(arg);
        return rc;
    }
    req->content_length = len;
    req->flags |= RF_LEN_SET;
    int st = req->status;
    if ((req->flags & RF_IS_HEAD) || st == 204 || st == 304 || len == 0) {
        if (release)
            release(arg);
        req->sent = len;
        tw_request_finish(req);
        return 0;
    }
    if (len <= FILE_SMALL) {
        /* Small: read it and send it with the head, in one writev. */
        char *buf = tw__arena_alloc(req, (size_t)len);
        ssize_t n = -1;
        int err = 0;
        if (buf) {
            do
                n = pread(fd, buf, (size_t)len, (off_t)offset);
            while (n < 0 && errno == EINTR);
            err = n < 0 ? -errno : 0;
        }
        if (release)
            release(arg);
        if (n != (ssize_t)len)
            return !buf ? TW_ENOMEM : err ? err : TW_EINVAL;
        req->sent = len;
        tw__request_send_first(req, true, buf, (size_t)len);
        tw_request_finish(req);
        return 0;
    }
    size_t hlen;
    char *head = tw__request_build_head(req, false, &hlen);
    if (!head) {
        if (release)
            release(arg);
        return TW_ENOMEM;
    }
    cork(tw__request_transport(req), 1);
    req->file_fd = fd;
    req->file_release = release;
    req->file_release_arg = arg;
    rc = tw_transport_write(tw__request_transport(req), head, hlen);
    if (rc < 0) {
        tw__file_release(req);
        tw_request_finish(req);
        return 0;
    }
    req->file_off = offset;
    req->file_left = len;
    req->flags |= RF_FILE;
    req->file_producer.ops = &file_producer_ops;
    req->file_pumped = false;
    rc = tw_transport_register_producer(tw__request_transport(req), &req->file_producer, false);
    if (rc < 0) {
        req->flags &= ~RF_FILE;
        tw__file_release(req);
        tw_transport_abort_connection(tw__request_transport(req));
        tw_request_finish(req);
    } else if (!req->file_pumped && (req->flags & RF_FILE)) {
        /* A transport that does not resume a pull producer as soon as it
         * is registered (TCP does): start it from the loop. */
        tw__task_post(req->site->reactor, &req->file_task, file_task_fn);
    }
    return 0;
}

int tw_request_send_file(tw_request *req, int fd, uint64_t offset, uint64_t len)
{
    return tw__request_send_file_ex(req, fd, offset, len, close_fd_release, (void *)(intptr_t)fd);
}
