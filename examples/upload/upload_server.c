/* upload_server — the seeds' file-upload server, written so it is safe:
 * a client names a file and sends its bytes; the server writes them in the
 * thread pool and answers with an HMAC-SHA256 of what it stored, keyed
 * with a secret both sides share, so the client can check that every byte
 * arrived.
 *
 * Usage: upload_server --dir DIR (--secret-file FILE | --secret TEXT)
 *                      [--port PORT] [--interface IP] [--max-bytes N]
 *                      [--throttle-ms MS]
 * PORT 0 (the default 8000 otherwise) picks a free port, printed on stdout.
 * --throttle-ms sleeps that long after each chunk written, to watch the
 * back-pressure at work. SIGINT/SIGTERM stop it.
 *
 * The protocol keeps the seed's shape — a greeting, the target path, an
 * answer, the content, the hash — and makes each step unambiguous. Lines
 * end with CRLF; the content is raw bytes, counted, so any byte may be in
 * it (the seed's "*begin*...*end*" markers broke on files containing them,
 * and on any file without a final line):
 *
 *     S: HELLO twirl upload server
 *     C: UPLOAD <size> <path>         size in decimal bytes, path relative
 *     S: READY                        or: ERR <why>
 *     C: <size raw bytes>
 *     S: HMAC <64 hex digits>         or: ERR <why>
 *     (another UPLOAD may follow)
 *
 * Safety.
 *  - The path is confined to DIR: absolute paths, "..", NUL and control
 *    bytes, over-long names, and symbolic links anywhere on the way
 *    (directories are opened one by one with O_NOFOLLOW, relative to DIR's
 *    descriptor) are refused with a message that says which rule.
 *    Subdirectories must exist already, as the seed's answer "False" said.
 *  - The bytes go to a temporary file in the target's directory (created
 *    with O_EXCL, mode 0600); only after the last byte is written and
 *    fsync'd is it renamed over the final name. An interrupted upload
 *    removes its temporary file, so the final name never holds a
 *    truncated file.
 *  - Files are written by the thread pool (Twisted's deferToThread, as in
 *    the seed), one chunk in flight per upload. While that chunk is being
 *    written, the next one fills up to CHUNK_BYTES; then reading from the
 *    client pauses until the pool catches up, so memory per upload stays
 *    below about twice CHUNK_BYTES whatever the file's size.
 *  - Opening, writing, syncing and renaming run on workers. Removing an
 *    abandoned temporary file is done at once on the reactor's thread (one
 *    unlinkat), so that it happens even while the reactor shuts down. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "twirl/basic.h"
#include "twirl/tcp.h"
#include "twirl/threads.h"

enum {
    CHUNK_BYTES = 1024 * 1024, /* pause reading when this much waits for the pool */
    MIN_JOB_BYTES = 64 * 1024, /* smaller pieces wait for more (unless it is the end) */
    MAX_PATH_BYTES = 4095,
    MAX_LINE_BYTES = 8192,
    MAX_SECRET_BYTES = 4096,
    QUOTE_BYTES = 80 /* of a client's path, in messages */
};

typedef struct server {
    tw_factory base;
    int dirfd;             /* the upload directory */
    unsigned char *secret; /* the HMAC key */
    size_t secret_len;
    uint64_t max_bytes;
    unsigned throttle_ms;
} server;

typedef struct upload upload;

/* One file being received. Shared with the workers, one job at a time;
 * outlives its connection while a job runs. */
typedef struct transfer {
    upload *conn; /* NULL once the connection is gone */
    server *srv;
    char *path; /* as the client gave it (checked) */
    char quoted[QUOTE_BYTES + 8];
    int dfd;                 /* the target's directory; -1 until opened */
    int fd;                  /* the temporary file; -1 when closed */
    char tmp[40];            /* its name in dfd */
    const char *name;        /* the final name: the last component of path */
    uint64_t size, received; /* declared, and arrived so far */
    EVP_MAC_CTX *mac;
    char *fill; /* bytes waiting for the pool */
    size_t fill_len, fill_cap;
    char *busy; /* bytes a worker is writing */
    size_t busy_len, busy_cap;
    bool running; /* a job is on a worker */
    bool final;   /* the running job is the last write */
    bool stored;  /* renamed into place */
    bool failed;  /* a write failed: drain the rest, then say so */
    unsigned pauses;
    char error[256]; /* the worker's reason for a failure */
    unsigned char digest[32];
} transfer;

struct upload {
    tw_line_receiver lr;
    transfer *t;
    char peer[TW_ADDRESS_TEXT_MAX];
};

static server *server_of(tw_protocol *p)
{
    return (server *)p->factory;
}

static void send_line(tw_protocol *p, const char *fmt, ...) TW_PRINTF(2, 3);
static void send_line(tw_protocol *p, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    tw_line_receiver_send_line(p, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* A client's string made safe for a message: printable ASCII, cut short. */
static void quote(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (o < len && o + 3 < size)
        o += (size_t)snprintf(out + o, size - o, "...");
    out[o] = '\0';
}

/* --------------------------------------------------------- the transfer */

static void transfer_free(transfer *t)
{
    if (t->fd >= 0)
        close(t->fd);
    if (t->dfd >= 0)
        close(t->dfd);
    EVP_MAC_CTX_free(t->mac);
    free(t->fill);
    free(t->busy);
    free(t->path);
    free(t);
}

/* The upload will not complete: its temporary file goes, now. */
static void transfer_discard(transfer *t, const char *why)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    if (t->dfd >= 0 && t->tmp[0] && !t->stored) {
        if (unlinkat(t->dfd, t->tmp, 0) == 0)
            printf("upload of %s %s: temporary file removed\n", t->quoted, why);
        t->tmp[0] = '\0';
    }
    transfer_free(t);
}

static EVP_MAC_CTX *mac_new(const server *s)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context keeps its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end() };
    if (ctx && !EVP_MAC_init(ctx, s->secret, s->secret_len, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* ------------------------------------------------------- on the workers */

static tw_result worker_error(transfer *t, const char *fmt, ...) TW_PRINTF(2, 3);
static tw_result worker_error(transfer *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
    return tw_err(tw_failure_new("upload", -1, "%s", t->error));
}

/* Opens the target's directory one component at a time, never following a
 * symbolic link, checks the final name, and creates the temporary file. */
static tw_result open_job(void *arg)
{
    transfer *t = arg;
    int dfd = dup(t->srv->dirfd);
    if (dfd < 0)
        return worker_error(t, "server error: %s", strerror(errno));
    char *copy = strdup(t->path);
    if (!copy) {
        close(dfd);
        return worker_error(t, "server error: out of memory");
    }
    char *save = NULL, *comp = strtok_r(copy, "/", &save), *next;
    size_t done = 0; /* bytes of path walked, for messages */
    while (comp && (next = strtok_r(NULL, "/", &save))) {
        done = (size_t)(comp - copy) + strlen(comp);
        if (strcmp(comp, ".") == 0) {
            comp = next;
            continue;
        }
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int err = errno;
            struct stat st;
            char where[QUOTE_BYTES + 4];
            quote(t->path, done, where, sizeof where);
            bool link = fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
            close(dfd);
            free(copy);
            if (link)
                return worker_error(t, "'%s' is a symbolic link (links are not followed)", where);
            if (err == ENOENT)
                return worker_error(t, "no such directory '%s'", where);
            if (err == ENOTDIR || err == ELOOP)
                return worker_error(t, "'%s' is not a directory", where);
            return worker_error(t, "cannot open '%s': %s", where, strerror(err));
        }
        close(dfd);
        dfd = nfd;
        comp = next;
    }
    free(copy);
    struct stat st;
    if (fstatat(dfd, t->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        const char *why = S_ISLNK(st.st_mode)    ? "is a symbolic link (links are not followed)"
                          : S_ISDIR(st.st_mode)  ? "is a directory"
                          : !S_ISREG(st.st_mode) ? "is not a regular file"
                                                 : NULL;
        if (why) {
            close(dfd);
            return worker_error(t, "%s %s", t->quoted, why);
        }
    }
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char rnd[8];
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
            break;
        snprintf(t->tmp, sizeof t->tmp, ".upload-%02x%02x%02x%02x%02x%02x%02x%02x.part", rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        t->fd = openat(dfd, t->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (t->fd >= 0 || errno != EEXIST)
            break;
    }
    if (t->fd < 0) {
        int err = errno;
        t->tmp[0] = '\0';
        close(dfd);
        return worker_error(t, "cannot create a file beside '%s': %s", t->quoted, strerror(err));
    }
    t->dfd = dfd;
    return TW_RESULT_NONE;
}

/* Writes the busy chunk and feeds it to the HMAC; the last one is synced
 * and renamed into place. */
static tw_result write_job(void *arg)
{
    transfer *t = arg;
    for (size_t off = 0; off < t->busy_len;) {
        ssize_t n = write(t->fd, t->busy + off, t->busy_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return worker_error(t, "write failed: %s", strerror(errno));
        off += (size_t)n;
    }
    if (t->busy_len && !EVP_MAC_update(t->mac, (unsigned char *)t->busy, t->busy_len))
        return worker_error(t, "server error: HMAC failed");
    if (t->srv->throttle_ms) {
        struct timespec ts = { t->srv->throttle_ms / 1000,
                               (long)(t->srv->throttle_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (!t->final)
        return TW_RESULT_NONE;
    size_t dlen = 0;
    if (!EVP_MAC_final(t->mac, t->digest, &dlen, sizeof t->digest) || dlen != sizeof t->digest)
        return worker_error(t, "server error: HMAC failed");
    if (fchmod(t->fd, 0644) < 0 || fsync(t->fd) < 0)
        return worker_error(t, "write failed: %s", strerror(errno));
    int rc = close(t->fd);
    t->fd = -1;
    if (rc < 0)
        return worker_error(t, "write failed: %s", strerror(errno));
    if (renameat(t->dfd, t->tmp, t->dfd, t->name) < 0)
        return worker_error(t, "cannot store '%s': %s", t->quoted, strerror(errno));
    t->stored = true;
    t->tmp[0] = '\0';
    return TW_RESULT_NONE;
}

/* ------------------------------------------------- back on the reactor */

static void submit_write(transfer *t);

/* Goes back to reading commands (and whatever the client sent after the
 * content). */
static void next_command(upload *u)
{
    tw_protocol *p = &u->lr.r.base;
    u->t = NULL;
    if (tw_line_receiver_line_mode(p) == false)
        tw_line_receiver_set_line_mode(p, NULL, 0);
    if (tw_receiver_paused(p))
        tw_receiver_resume_producing(p);
}

static void finish(transfer *t)
{
    upload *u = t->conn;
    tw_protocol *p = &u->lr.r.base;
    if (t->failed) {
        send_line(p, "ERR %s", t->error);
        printf("upload of %s from %s failed: %s\n", t->quoted, u->peer, t->error);
        transfer_discard(t, "failed");
    } else {
        char hex[65];
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", t->digest[i]);
        send_line(p, "HMAC %s", hex);
        printf("stored %s (%" PRIu64 " bytes from %s, reading paused %u times, HMAC-SHA256 %s)\n",
               t->quoted, t->size, u->peer, t->pauses, hex);
        transfer_free(t);
    }
    next_command(u);
}

static tw_result written(tw_result *in, void *arg)
{
    transfer *t = arg;
    t->running = false;
    bool was_final = t->final;
    if (in->failure && !t->failed) {
        t->failed = true;
        if (tw_failure_is(in->failure, TW_DOMAIN, TW_ANY_CODE)) /* the pool refused it */
            snprintf(t->error, sizeof t->error, "server error: %s",
                     tw_failure_message(in->failure));
    }
    if (!t->conn) {
        transfer_discard(t, "interrupted");
        return TW_RESULT_NONE;
    }
    if (was_final || (t->failed && t->received == t->size)) {
        finish(t);
        return TW_RESULT_NONE;
    }
    /* The next chunk, if one is ready; reading resumes once there is room. */
    submit_write(t);
    tw_protocol *p = &t->conn->lr.r.base;
    if (tw_receiver_paused(p) && (t->failed || t->fill_len < CHUNK_BYTES) && t->received < t->size)
        tw_receiver_resume_producing(p);
    return TW_RESULT_NONE;
}

/* Hands the filled bytes to a worker when none is busy with this upload. */
static void submit_write(transfer *t)
{
    bool last = t->received == t->size;
    if (t->running || t->failed || (t->fill_len < MIN_JOB_BYTES && !last))
        return;
    /* Swap: the filled buffer goes to the worker, the written one is
     * reused for filling. */
    char *b = t->busy;
    size_t cap = t->busy_cap;
    t->busy = t->fill;
    t->busy_cap = t->fill_cap;
    t->busy_len = t->fill_len;
    t->fill = b;
    t->fill_cap = cap;
    t->fill_len = 0;
    t->final = last;
    t->running = true;
    tw_deferred *d = tw_defer_to_thread(t->conn->lr.r.base.transport->reactor, write_job, t);
    if (!d || tw_deferred_add_both(d, written, t) < 0) {
        /* Out of memory: fail as a write would (the chain, if any, is
         * dropped unrun with its callbacks). */
        if (d)
            tw_deferred_cancel(d);
        tw_deferred_unref(d);
        t->running = false;
        t->failed = true;
        snprintf(t->error, sizeof t->error, "server error: out of memory");
        if (last)
            finish(t);
        return;
    }
    tw_deferred_unref(d);
}

static tw_result opened(tw_result *in, void *arg)
{
    transfer *t = arg;
    t->running = false;
    upload *u = t->conn;
    if (!u) {
        transfer_discard(t, "interrupted");
        return TW_RESULT_NONE;
    }
    tw_protocol *p = &u->lr.r.base;
    if (in->failure) {
        const char *why =
            tw_failure_is(in->failure, "upload", -1) ? t->error : tw_failure_message(in->failure);
        send_line(p, "ERR refused %s: %s", t->quoted, why);
        printf("refused %s from %s: %s\n", t->quoted, u->peer, why);
        transfer_discard(t, "refused");
        next_command(u);
        return TW_RESULT_NONE;
    }
    send_line(p, "READY");
    /* Bytes the client sent early were kept while we were paused: they
     * are the content's first bytes. */
    tw_line_receiver_set_raw_mode(p);
    if (t->size == 0)
        submit_write(t);
    else
        tw_receiver_resume_producing(p);
    return TW_RESULT_NONE;
}

/* ------------------------------------------------------ the commands */

/* The rules a path must follow before anything touches the disk. Returns
 * NULL when it is acceptable, else the reason. */
static const char *path_problem(const char *path, size_t len)
{
    if (len == 0)
        return "empty name";
    if (memchr(path, '\0', len))
        return "the name contains a NUL byte";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return "control characters are not allowed in names";
    if (len > MAX_PATH_BYTES)
        return "the name is longer than 4095 bytes";
    if (path[0] == '/')
        return "absolute paths are not allowed (the path is relative to the upload directory)";
    const char *last = NULL;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t n = j - i;
        if (n == 2 && path[i] == '.' && path[i + 1] == '.')
            return "'..' is not allowed in paths";
        if (n > NAME_MAX)
            return "a path component is longer than 255 bytes";
        last = n && !(n == 1 && path[i] == '.') ? path + i : NULL;
        i = j + 1;
    }
    if (!last || path[len - 1] == '/')
        return "the path names no file";
    return NULL;
}

static int start_upload(tw_protocol *p, const char *args, size_t len)
{
    upload *u = (upload *)p;
    server *s = server_of(p);
    /* "<size> <path>": digits, one space, then the path (which may hold
     * spaces; it ends with the line). */
    size_t i = 0;
    uint64_t size = 0;
    while (i < len && args[i] >= '0' && args[i] <= '9' && i < 20)
        size = size * 10 + (uint64_t)(args[i++] - '0');
    if (i == 0 || i >= 20 || i == len || args[i] != ' ') {
        send_line(p, "ERR usage: UPLOAD <size> <path>");
        return 0;
    }
    const char *path = args + i + 1;
    size_t plen = len - i - 1;
    char q[QUOTE_BYTES + 4];
    quote(path, plen, q, sizeof q);
    const char *why = path_problem(path, plen);
    if (!why && size > s->max_bytes)
        why = "the file is larger than this server accepts";
    if (why) {
        send_line(p, "ERR refused '%s': %s", q, why);
        printf("refused '%s' from %s: %s\n", q, u->peer, why);
        return 0;
    }
    transfer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strndup(path, plen)) || !(t->mac = mac_new(s))) {
        if (t)
            transfer_free(t);
        send_line(p, "ERR server error: out of memory");
        return 0;
    }
    t->conn = u;
    t->srv = s;
    t->fd = t->dfd = -1;
    t->size = size;
    snprintf(t->quoted, sizeof t->quoted, "'%s'", q);
    const char *slash = strrchr(t->path, '/');
    t->name = slash ? slash + 1 : t->path;
    /* Until the file is open, keep what arrives (a client that does not
     * wait for READY) without reading more. */
    tw_receiver_pause_producing(p);
    t->running = true;
    u->t = t;
    tw_deferred *d = tw_defer_to_thread(p->transport->reactor, open_job, t);
    if (!d || tw_deferred_add_both(d, opened, t) < 0) {
        if (d)
            tw_deferred_cancel(d);
        tw_deferred_unref(d);
        transfer_free(t);
        u->t = NULL;
        tw_receiver_resume_producing(p);
        send_line(p, "ERR server error: out of memory");
        return 1;
    }
    tw_deferred_unref(d);
    return 1; /* nothing more of this read until the file is open */
}

static void upload_made(tw_protocol *p)
{
    upload *u = (upload *)p;
    tw_address peer;
    if (tw_transport_get_peer(p->transport, &peer) == 0)
        tw_address_format(&peer, u->peer, sizeof u->peer);
    send_line(p, "HELLO twirl upload server");
}

static int upload_line(tw_protocol *p, const char *line, size_t len)
{
    upload *u = (upload *)p;
    if (u->t) { /* cannot happen: commands wait while a file is open */
        send_line(p, "ERR busy");
        return 0;
    }
    if (len >= 7 && memcmp(line, "UPLOAD ", 7) == 0)
        return start_upload(p, line + 7, len - 7);
    if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
        tw_transport_lose_connection(p->transport);
        return 1;
    }
    char q[QUOTE_BYTES + 4];
    quote(line, len, q, sizeof q);
    send_line(p, "ERR unknown command '%s'", q);
    return 0;
}

static int upload_raw(tw_protocol *p, const char *data, size_t len)
{
    upload *u = (upload *)p;
    transfer *t = u->t;
    uint64_t want = t->size - t->received;
    size_t n = (uint64_t)len < want ? len : (size_t)want;
    if (!t->failed && n) {
        if (t->fill_len + n > t->fill_cap) {
            size_t cap = t->fill_len + n > CHUNK_BYTES ? t->fill_len + n : CHUNK_BYTES;
            char *b = realloc(t->fill, cap);
            if (!b) {
                t->failed = true;
                snprintf(t->error, sizeof t->error, "server error: out of memory");
            } else {
                t->fill = b;
                t->fill_cap = cap;
            }
        }
        if (!t->failed) {
            memcpy(t->fill + t->fill_len, data, n);
            t->fill_len += n;
        }
    }
    t->received += n;
    if (t->received == t->size && n < len) {
        /* The client went on past the content: the rest is its next
         * command, read once this file is done. */
        tw_line_receiver_set_line_mode(p, data + n, len - n);
        tw_receiver_pause_producing(p);
    }
    if (t->failed) {
        if (t->received == t->size && !t->running)
            finish(t); /* drained: now say what went wrong */
        return 0;
    }
    submit_write(t);
    if (t->received == t->size) {
        if (!tw_receiver_paused(p))
            tw_receiver_pause_producing(p); /* the next command waits for the HMAC */
    } else if (t->fill_len >= CHUNK_BYTES && !tw_receiver_paused(p)) {
        t->pauses++; /* the pool is behind: stop reading until it catches up */
        tw_receiver_pause_producing(p);
    }
    return 0;
}

static void upload_lost(tw_protocol *p, const tw_failure *reason)
{
    upload *u = (upload *)p;
    transfer *t = u->t;
    u->t = NULL;
    if (!t)
        return;
    t->conn = NULL;
    if (!t->running) /* else the job's callback discards it */
        transfer_discard(t, "interrupted");
}

static void upload_too_long(tw_protocol *p, const char *data, size_t len)
{
    send_line(p, "ERR line too long (at most %d bytes)", MAX_LINE_BYTES);
    tw_transport_lose_connection(p->transport);
}

static const tw_line_receiver_ops upload_ops = {
    .base = TW_LINE_RECEIVER_BASE(upload),
    .connection_made = upload_made,
    .connection_lost = upload_lost,
    .line_received = upload_line,
    .raw_data_received = upload_raw,
    .line_length_exceeded = upload_too_long,
    .max_line_bytes = MAX_LINE_BYTES,
};

/* ------------------------------------------------------------ main */

static int read_secret(const char *file, const char *text, unsigned char **out, size_t *len)
{
    char buf[MAX_SECRET_BYTES + 2];
    size_t n;
    if (text) {
        n = strlen(text);
        if (n > MAX_SECRET_BYTES)
            n = MAX_SECRET_BYTES + 1;
        memcpy(buf, text, n < sizeof buf ? n : sizeof buf);
    } else {
        FILE *f = fopen(file, "rb");
        if (!f) {
            fprintf(stderr, "upload_server: cannot read the secret file %s: %s\n", file,
                    strerror(errno));
            return -1;
        }
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
    }
    if (n == 0 || n > MAX_SECRET_BYTES) {
        fprintf(stderr, "upload_server: the secret must be 1 to %d bytes\n", MAX_SECRET_BYTES);
        return -1;
    }
    *out = malloc(n);
    if (!*out)
        return -1;
    memcpy(*out, buf, n);
    *len = n;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: upload_server --dir DIR (--secret-file FILE | --secret TEXT)\n"
                    "                     [--port PORT] [--interface IP] [--max-bytes N]\n"
                    "                     [--throttle-ms MS]\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "secret-file", required_argument, NULL, 'k' },
        { "secret", required_argument, NULL, 's' },
        { "port", required_argument, NULL, 'p' },
        { "interface", required_argument, NULL, 'i' },
        { "max-bytes", required_argument, NULL, 'm' },
        { "throttle-ms", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL, *secret_file = NULL, *secret = NULL, *iface = "127.0.0.1";
    unsigned long port = 8000, throttle = 0;
    unsigned long long max_bytes = 1ull << 40;
    char *end;
    int c;
    while ((c = getopt_long(argc, argv, "d:k:s:p:i:m:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'k':
            secret_file = optarg;
            break;
        case 's':
            secret = optarg;
            break;
        case 'p':
            port = strtoul(optarg, &end, 10);
            if (*end || port > 65535) {
                fprintf(stderr, "upload_server: bad port '%s'\n", optarg);
                return 2;
            }
            break;
        case 'i':
            iface = optarg;
            break;
        case 'm':
            max_bytes = strtoull(optarg, &end, 10);
            if (*end || !*optarg) {
                fprintf(stderr, "upload_server: bad --max-bytes '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            throttle = strtoul(optarg, &end, 10);
            if (*end || throttle > 10000) {
                fprintf(stderr, "upload_server: bad --throttle-ms '%s'\n", optarg);
                return 2;
            }
            break;
        default:
            usage();
            return 2;
        }
    }
    if (!dir || !!secret_file == !!secret || optind != argc) {
        usage();
        return 2;
    }
    server s = { .base = TW_FACTORY_INIT(TW_PROTOCOL_OF(&upload_ops), NULL),
                 .max_bytes = max_bytes,
                 .throttle_ms = (unsigned)throttle };
    if (read_secret(secret_file, secret, &s.secret, &s.secret_len) < 0)
        return 2;
    s.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s.dirfd < 0) {
        fprintf(stderr, "upload_server: cannot open the upload directory %s: %s\n", dir,
                strerror(errno));
        free(s.secret);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line at once */
    /* A file past RLIMIT_FSIZE is a failed write (EFBIG) for that upload,
     * not the death of the server. */
    signal(SIGXFSZ, SIG_IGN);
    tw_reactor *r = NULL;
    tw_port *listening = NULL;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, iface, (uint16_t)port, NULL, &s.base, &listening)) < 0) {
        fprintf(stderr, "upload_server: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        close(s.dirfd);
        free(s.secret);
        return 1;
    }
    printf("upload server listening on port %u, storing into %s\n",
           tw_address_port(tw_port_address(listening)), dir);
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r); /* open connections are aborted: their uploads discarded */
    close(s.dirfd);
    OPENSSL_cleanse(s.secret, s.secret_len);
    free(s.secret);
    return rc < 0 ? 1 : 0;
}
