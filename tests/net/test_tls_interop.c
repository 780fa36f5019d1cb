/* ctest: label=interop timeout=300 backends=once */
/* TLS against peers nobody here wrote: openssl s_server and s_client, and
 * curl, on loopback with certificates made at test start. Handshakes both
 * ways, SNI, ALPN, client certificates, refusals for a bad CA, a wrong host
 * and an expired certificate, 100 MiB each way with a slow reader,
 * startTLS (s_client -starttls smtp), and close_notify sent and observed.
 * Every peer is a child process started here (port 0 where the tool allows,
 * else a port found free by binding 0), bounded in time, stopped by PID. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "tt.h"
#include "tt_child.h"
#include "tt_tls.h"
#include "twirl/log.h"
#include "twirl/tcp.h"
#include "twirl/tls.h"

static tt_certs *certs;
static size_t big; /* bytes for the bulk tests */

/* ------------------------------------------------------------ children */

/* A peer process whose stdin, stdout and stderr are pipes watched by the
 * reactor. stdout is kept (first 1 MiB) or, in pattern mode, checked
 * against the pattern; stdin can be fed a pattern stream. */
typedef struct child {
    pid_t pid;
    int in_fd, out_fd, err_fd;
    tw_watcher *in_w, *out_w, *err_w;
    char out[1 << 20], err[1 << 16];
    size_t out_len, err_len;
    bool check_pattern;
    size_t got, bad, expect; /* pattern mode: bytes past expect are kept as text */
    size_t to_send, sent;
    bool close_stdin_after;
    int status;
    bool exited;
} child;

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void close_watch(tw_watcher **w, int *fd)
{
    if (*w)
        tw_watcher_free(*w);
    *w = NULL;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void on_out(tw_watcher *w, int fd, unsigned events, void *arg)
{
    child *c = arg;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            close_watch(&c->out_w, &c->out_fd);
        return;
    }
    ssize_t at = 0;
    if (c->check_pattern) {
        for (; at < n && c->got < c->expect; at++, c->got++)
            c->bad += (unsigned char)buf[at] != pattern(c->got);
        if (at == n)
            return;
    }
    n -= at;
    memmove(buf, buf + at, (size_t)n);
    size_t room = sizeof c->out - 1 - c->out_len;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(c->out + c->out_len, buf, k);
    c->out_len += k;
    c->out[c->out_len] = '\0';
}

static void on_err(tw_watcher *w, int fd, unsigned events, void *arg)
{
    child *c = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            close_watch(&c->err_w, &c->err_fd);
        return;
    }
    size_t room = sizeof c->err - 1 - c->err_len;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(c->err + c->err_len, buf, k);
    c->err_len += k;
    c->err[c->err_len] = '\0';
}

static void on_in(tw_watcher *w, int fd, unsigned events, void *arg)
{
    child *c = arg;
    unsigned char buf[65536];
    while (c->sent < c->to_send) {
        size_t n = c->to_send - c->sent < sizeof buf ? c->to_send - c->sent : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(c->sent + i);
        ssize_t k = write(fd, buf, n);
        if (k <= 0) {
            if (k < 0 && errno == EAGAIN)
                return;
            close_watch(&c->in_w, &c->in_fd);
            return;
        }
        c->sent += (size_t)k;
    }
    if (c->close_stdin_after)
        close_watch(&c->in_w, &c->in_fd);
    else if (c->in_w)
        tw_watcher_set(c->in_w, 0);
}

static child *child_start(tw_reactor *r, const char *const argv[])
{
    child *c = calloc(1, sizeof *c);
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    assert_int_equal(tw_watcher_new(r, c->out_fd, TW_READABLE, on_out, c, &c->out_w), 0);
    assert_int_equal(tw_watcher_new(r, c->err_fd, TW_READABLE, on_err, c, &c->err_w), 0);
    assert_int_equal(tw_watcher_new(r, c->in_fd, 0, on_in, c, &c->in_w), 0);
    return c;
}

/* Writes text to the child's stdin (small: it fits the pipe). */
static void child_say(child *c, const char *text)
{
    assert_true(c->in_fd >= 0);
    assert_int_equal(write(c->in_fd, text, strlen(text)), (ssize_t)strlen(text));
}

/* Streams n pattern bytes into its stdin, then closes it if asked. */
static void child_feed(child *c, size_t n, bool close_after)
{
    c->to_send = n;
    c->close_stdin_after = close_after;
    tw_watcher_set(c->in_w, TW_WRITABLE);
}

static void child_close_stdin(child *c)
{
    close_watch(&c->in_w, &c->in_fd);
}

static bool child_reaped(child *c)
{
    if (c->exited)
        return true;
    int st;
    if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
        c->exited = true;
        c->status = st;
    }
    return c->exited;
}

static bool child_done(void *arg)
{
    child *c = arg;
    /* exited and its output read to the end */
    return c->out_fd < 0 && c->err_fd < 0 && child_reaped(c);
}

/* Stops it (if still running) and frees everything. */
static void child_end(child *c)
{
    if (!child_reaped(c)) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &c->status, 0);
        c->exited = true;
    }
    close_watch(&c->in_w, &c->in_fd);
    close_watch(&c->out_w, &c->out_fd);
    close_watch(&c->err_w, &c->err_fd);
    free(c);
}

static int child_exit_code(child *c)
{
    return c->exited && WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
}

typedef struct has_text {
    child *c;
    const char *text;
    bool in_err;
} has_text;

static bool child_said(void *arg)
{
    has_text *h = arg;
    return strstr(h->in_err ? h->c->err : h->c->out, h->text) != NULL;
}

static bool wait_text(tw_reactor *r, child *c, const char *text, bool in_err, double timeout)
{
    has_text h = { c, text, in_err };
    bool ok = tt_run_until(r, child_said, &h, timeout);
    if (!ok)
        print_message("waited for \"%s\"; stdout:\n%s\nstderr:\n%s\n", text, c->out, c->err);
    return ok;
}

/* s_server's "ACCEPT 127.0.0.1:PORT" line. */
static uint16_t accept_port(tw_reactor *r, child *c)
{
    assert_true(wait_text(r, c, "ACCEPT ", false, 10));
    const char *at = strstr(c->out, "ACCEPT ");
    for (int i = 0; i < 100 && !strchr(at, '\n'); i++)
        tw_reactor_iterate(r, 0.05); /* the rest of the line */
    assert_non_null(strchr(at, '\n'));
    const char *colon = strchr(at, ':');
    while (colon && strchr(colon + 1, ':') && strchr(colon + 1, ':') < strchr(at, '\n'))
        colon = strchr(colon + 1, ':');
    assert_non_null(colon);
    return (uint16_t)atoi(colon + 1);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------ protocols */

typedef struct stats {
    int made, lost, eof;
    int lost_code, lost_tls;
    size_t received;
    char buf[4096];
    size_t buflen;
    const char *hello;
    bool echo, close_on_eof, bye_on_data;
    char alpn[32], subject[128], version[16];
    bool verified;
    /* client hooks */
    int failed, failed_tls;
    char failed_msg[400];
    tw_protocol *self; /* while connected */
} stats;

static stats *st(tw_protocol *p)
{
    return p->factory->user_data;
}

static void rec_made(tw_protocol *p)
{
    stats *s = st(p);
    s->made++;
    s->self = p;
    const char *a = tw_tls_negotiated_protocol(p->transport);
    snprintf(s->alpn, sizeof s->alpn, "%s", a ? a : "");
    snprintf(s->version, sizeof s->version, "%s", tw_tls_version_name(p->transport));
    tw_tls_peer_subject(p->transport, s->subject, sizeof s->subject);
    s->verified = tw_tls_peer_verified(p->transport);
    if (s->hello)
        tw_transport_write_str(p->transport, s->hello);
}

static void rec_data(tw_protocol *p, const void *data, size_t len)
{
    stats *s = st(p);
    size_t n = len < sizeof s->buf - 1 - s->buflen ? len : sizeof s->buf - 1 - s->buflen;
    memcpy(s->buf + s->buflen, data, n);
    s->buflen += n;
    s->buf[s->buflen] = '\0';
    s->received += len;
    if (s->echo)
        tw_transport_write(p->transport, data, len);
    if (s->bye_on_data) {
        tw_transport_write_str(p->transport, "bye\n");
        tw_transport_lose_connection(p->transport);
    }
}

static void rec_eof(tw_protocol *p)
{
    st(p)->eof++;
    tw_transport_lose_connection(p->transport);
}

static void rec_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = st(p);
    s->lost++;
    s->lost_code = tw_failure_code(reason);
    s->lost_tls = tw_tls_failure_reason(reason);
    s->self = NULL;
}

static const tw_protocol_ops rec_ops = {
    .connection_made = rec_made,
    .data_received = rec_data,
    .eof_received = rec_eof,
    .connection_lost = rec_lost,
};

static void hook_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    stats *s = f->user_data;
    s->failed++;
    s->failed_tls = tw_tls_failure_reason(reason);
    snprintf(s->failed_msg, sizeof s->failed_msg, "%s", tw_failure_message(reason));
}

static const tw_factory_ops client_hooks = { .client_connection_failed = hook_failed };

typedef struct want {
    stats *s;
    size_t bytes;
    int lost, failed, made;
} want;

static bool got(void *arg)
{
    want *w = arg;
    return w->s->received >= w->bytes && w->s->lost >= w->lost && w->s->failed >= w->failed &&
           w->s->made >= w->made;
}

/* A TLS server of ours on 127.0.0.1:0. */
typedef struct our_server {
    tw_tls_context *ctx;
    tw_factory inner;
    tw_factory *tls;
    tw_port *port;
    char port_s[8];
} our_server;

static void our_server_start(tw_reactor *r, our_server *s, const tw_tls_server_options *extra,
                             const tw_protocol_ops *ops, void *user_data)
{
    tw_tls_server_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.cert.cert_file)
        o.cert = (tw_tls_certificate){ certs->server, certs->server_key, NULL };
    assert_int_equal(tw_tls_server_context_new(&o, &s->ctx), 0);
    s->inner = (tw_factory)TW_FACTORY_INIT(ops, user_data);
    s->tls = tw_tls_factory_new(s->ctx, NULL, &s->inner);
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, s->tls, &s->port), 0);
    snprintf(s->port_s, sizeof s->port_s, "%u", tw_address_port(tw_port_address(s->port)));
}

static void our_server_stop(our_server *s)
{
    tw_port_stop_listening(s->port);
    tw_tls_factory_free(s->tls);
    tw_tls_context_unref(s->ctx);
}

/* A TLS client of ours to 127.0.0.1:port. */
typedef struct our_client {
    tw_tls_context *ctx;
    tw_factory inner;
    tw_factory *tls;
} our_client;

static void our_client_start(tw_reactor *r, our_client *c, uint16_t port, const char *name,
                             const tw_tls_client_options *extra, const tw_protocol_ops *ops,
                             stats *s)
{
    tw_tls_client_options o = { 0 };
    if (extra)
        o = *extra;
    if (!o.trust_roots)
        o.trust_roots = certs->ca;
    assert_int_equal(tw_tls_client_context_new(&o, &c->ctx), 0);
    c->inner = (tw_factory)TW_FACTORY_INIT(ops, s);
    c->inner.ops = &client_hooks;
    c->tls = tw_tls_factory_new(c->ctx, name, &c->inner);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port, NULL, c->tls, NULL), 0);
}

static bool conns_gone(void *arg);

/* After the connection (and so its connector) is done. */
static void our_client_end(tw_reactor *r, our_client *c)
{
    assert_true(tt_run_until(r, conns_gone, r, 10));
    tw_tls_factory_free(c->tls);
    tw_tls_context_unref(c->ctx);
}

static bool conns_gone(void *arg)
{
    return tw_reactor_connection_count(arg) == 0;
}

/* ------------------------------------------------- twirl client, s_server */

static child *s_server_argv(tw_reactor *r, const char *accept, const char *cert, const char *key,
                            const char *const extra[])
{
    const char *argv[40] = { "openssl", "s_server", "-accept", accept,     "-cert",
                             cert,      "-key",     key,       "-naccept", "1" };
    int n = 10;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return child_start(r, argv);
}

static child *s_server(tw_reactor *r, const char *cert, const char *key, const char *const extra[])
{
    return s_server_argv(r, "127.0.0.1:0", cert, key, extra);
}

static bool exited(void *arg)
{
    return child_reaped(arg);
}

/* Handshake, ALPN, data both ways; our close_notify is what s_server sees
 * ("CONNECTION CLOSED" in -rev mode means SSL_read returned a clean 0). */
static void client_against_s_server(void **state)
{
    tw_reactor *r = tt_reactor();
    const char *extra[] = { "-rev", "-alpn", "h2,http/1.1", NULL };
    child *srv = s_server(r, certs->server, certs->server_key, extra);
    uint16_t port = accept_port(r, srv);
    stats cs = { 0 };
    cs.hello = "hello, openssl\n";
    our_client c;
    tw_tls_client_options co = { .alpn = "http/1.1" };
    our_client_start(r, &c, port, "localhost", &co, &rec_ops, &cs);
    want w = { &cs, 15 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_string_equal(cs.buf, "lssnepo ,olleh\n"); /* reversed by -rev */
    assert_string_equal(cs.alpn, "http/1.1");
    assert_string_equal(cs.version, "TLSv1.3");
    assert_true(cs.verified);
    if (!cs.self)
        fail_msg("the connection was lost early: code %d, TLS %d", cs.lost_code, cs.lost_tls);
    tw_transport_lose_connection(cs.self->transport);
    assert_true(tt_run_until(r, exited, srv, 10));
    assert_true(wait_text(r, srv, "CONNECTION CLOSED", true, 5));
    assert_null(strstr(srv->err, "unexpected eof"));
    assert_int_equal(cs.lost_code, TW_ECONNECTION_DONE);
    our_client_end(r, &c);
    child_end(srv);
    tw_reactor_free(r);
}

/* Without close_notify, s_server says the stream was cut. */
static void truncation_seen_by_s_server(void **state)
{
    tw_reactor *r = tt_reactor();
    const char *extra[] = { "-rev", NULL };
    child *srv = s_server(r, certs->server, certs->server_key, extra);
    uint16_t port = accept_port(r, srv);
    stats cs = { 0 };
    cs.hello = "abc\n";
    our_client c;
    our_client_start(r, &c, port, "localhost", NULL, &rec_ops, &cs);
    want w = { &cs, 4 };
    assert_true(tt_run_until(r, got, &w, 10));
    if (!cs.self)
        fail_msg("the connection was lost early: code %d, TLS %d", cs.lost_code, cs.lost_tls);
    tw_transport_abort_connection(cs.self->transport);
    assert_true(tt_run_until(r, exited, srv, 10));
    tt_run_for(r, 0.1);
    assert_non_null(strstr(srv->err, "CONNECTION ESTABLISHED"));
    assert_null(strstr(srv->err, "CONNECTION CLOSED"));
    our_client_end(r, &c);
    child_end(srv);
    tw_reactor_free(r);
}

static void sni_with_s_server(void **state)
{
    tw_reactor *r = tt_reactor();
    const char *extra[] = { "-rev",       "-servername", "other.test",     "-cert2",
                            certs->other, "-key2",       certs->other_key, NULL };
    child *srv = s_server(r, certs->server, certs->server_key, extra);
    uint16_t port = accept_port(r, srv);
    stats cs = { 0 };
    cs.hello = "sni\n";
    our_client c;
    our_client_start(r, &c, port, "other.test", NULL, &rec_ops, &cs);
    want w = { &cs, 4 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_string_equal(cs.subject, "CN=other.test,O=twirl tests");
    assert_string_equal(cs.buf, "ins\n");
    if (!cs.self)
        fail_msg("the connection was lost early: code %d, TLS %d", cs.lost_code, cs.lost_tls);
    tw_transport_lose_connection(cs.self->transport);
    assert_true(tt_run_until(r, exited, srv, 10));
    our_client_end(r, &c);
    child_end(srv);
    tw_reactor_free(r);
}

static void refusals_from_s_server(void **state)
{
    struct {
        const char *cert, *key, *name;
        int code;
    } cases[] = {
        { certs->rogue, certs->rogue_key, "localhost", TW_TLS_ERR_UNKNOWN_CA },
        { certs->server, certs->server_key, "wrong.example", TW_TLS_ERR_HOSTNAME },
        { certs->expired, certs->expired_key, "localhost", TW_TLS_ERR_EXPIRED },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tw_reactor *r = tt_reactor();
        const char *extra[] = { "-rev", NULL };
        child *srv = s_server(r, cases[i].cert, cases[i].key, extra);
        uint16_t port = accept_port(r, srv);
        stats cs = { 0 };
        cs.hello = "secret\n";
        our_client c;
        our_client_start(r, &c, port, cases[i].name, NULL, &rec_ops, &cs);
        want w = { &cs, 0, 0, 1 };
        assert_true(tt_run_until(r, got, &w, 10));
        print_message("  %s\n", cs.failed_msg);
        assert_int_equal(cs.failed_tls, cases[i].code);
        assert_int_equal(cs.made, 0);
        assert_true(tt_run_until(r, exited, srv, 10));
        assert_null(strstr(srv->out, "terces")); /* nothing got through */
        assert_true(tt_run_until(r, conns_gone, r, 5));
        our_client_end(r, &c);
        child_end(srv);
        tw_reactor_free(r);
    }
}

static void client_certificate_with_s_server(void **state)
{
    for (int with_cert = 1; with_cert >= 0; with_cert--) {
        tw_reactor *r = tt_reactor();
        const char *extra[] = { "-rev", "-Verify", "1", "-CAfile", certs->ca, NULL };
        child *srv = s_server(r, certs->server, certs->server_key, extra);
        uint16_t port = accept_port(r, srv);
        stats cs = { 0 };
        cs.hello = "me\n";
        our_client c;
        tw_tls_client_options co = { 0 };
        if (with_cert)
            co.cert = (tw_tls_certificate){ certs->client, certs->client_key, NULL };
        our_client_start(r, &c, port, "localhost", &co, &rec_ops, &cs);
        if (with_cert) {
            want w = { &cs, 3 };
            assert_true(tt_run_until(r, got, &w, 10));
            assert_string_equal(cs.buf, "em\n");
            if (!cs.self)
                fail_msg("the connection was lost early: code %d, TLS %d", cs.lost_code,
                         cs.lost_tls);
            tw_transport_lose_connection(cs.self->transport);
        } else {
            /* TLS 1.3: our side finished; the server's alert ends it. */
            want w = { &cs, 0, 1 };
            assert_true(tt_run_until(r, got, &w, 10));
            assert_int_equal(cs.lost_tls, TW_TLS_ERR_CERT_REQUIRED);
            assert_int_equal(cs.received, 0);
        }
        assert_true(tt_run_until(r, exited, srv, 10));
        our_client_end(r, &c);
        child_end(srv);
        tw_reactor_free(r);
    }
}

/* ------------------------------------------------------------ bulk */

/* Streams `big` pattern bytes through a push producer and checks what it
 * reads, pausing its reading for 2 ms every 8 MiB (a slow reader). */
typedef struct xfer {
    tw_protocol base;
    tw_producer prod;
    size_t sent, got, bad;
    bool paused;
    tw_timer resume;
} xfer;

typedef struct xfer_stats {
    tw_reactor *r;
    size_t got, bad;
    int read_pauses, write_pauses, lost, lost_code;
    xfer *x;
} xfer_stats;

static void xfer_fill(xfer *x)
{
    static unsigned char chunk[65536];
    while (!x->paused && x->sent < big && x->base.transport) {
        size_t n = big - x->sent < sizeof chunk ? big - x->sent : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(x->sent + i);
        assert_int_equal(tw_transport_write(x->base.transport, chunk, n), 0);
        x->sent += n;
    }
    if (x->sent == big && x->base.transport)
        tw_transport_unregister_producer(x->base.transport);
}

static void xp_pause(tw_producer *p)
{
    xfer *x = (xfer *)((char *)p - offsetof(xfer, prod));
    x->paused = true;
    ((xfer_stats *)x->base.factory->user_data)->write_pauses++;
}

static void xp_resume(tw_producer *p)
{
    xfer *x = (xfer *)((char *)p - offsetof(xfer, prod));
    x->paused = false;
    xfer_fill(x);
}

static void xp_stop(tw_producer *p)
{
}

static const tw_producer_ops xp_ops = { xp_pause, xp_resume, xp_stop };

static void xfer_made(tw_protocol *p)
{
    xfer *x = (xfer *)p;
    ((xfer_stats *)p->factory->user_data)->x = x;
    x->prod.ops = &xp_ops;
    assert_int_equal(tw_transport_register_producer(p->transport, &x->prod, true), 0);
    xfer_fill(x);
}

static void xfer_resume_reading(void *arg)
{
    xfer *x = arg;
    x->resume = TW_TIMER_NONE;
    if (x->base.transport)
        tw_transport_resume_producing(x->base.transport);
}

static void xfer_data(tw_protocol *p, const void *data, size_t len)
{
    xfer *x = (xfer *)p;
    xfer_stats *xs = p->factory->user_data;
    const unsigned char *b = data;
    for (size_t i = 0; i < len; i++)
        x->bad += b[i] != pattern(x->got + i);
    size_t before = x->got;
    x->got += len;
    xs->got = x->got;
    xs->bad = x->bad;
    size_t every = big >= (32u << 20) ? 8u << 20 : big / 4; /* slow reader */
    if (before / every != x->got / every) {
        xs->read_pauses++;
        tw_transport_pause_producing(p->transport);
        x->resume = tw_call_later(xs->r, 0.002, xfer_resume_reading, x);
    }
}

static void xfer_lost(tw_protocol *p, const tw_failure *reason)
{
    xfer *x = (xfer *)p;
    xfer_stats *xs = p->factory->user_data;
    tw_timer_cancel(x->resume);
    xs->lost++;
    xs->lost_code = tw_failure_code(reason);
    xs->x = NULL;
}

static const tw_protocol_ops xfer_ops = {
    .size = sizeof(xfer),
    .connection_made = xfer_made,
    .data_received = xfer_data,
    .connection_lost = xfer_lost,
};

typedef struct bulk_done {
    xfer_stats *xs;
    child *c;
} bulk_done;

static bool bulk_finished(void *arg)
{
    bulk_done *b = arg;
    return b->xs->got >= big && b->c->got >= big;
}

/* True once something listens on 127.0.0.1:port (read from /proc, so no
 * connection is spent on finding out). */
static bool listening(uint16_t port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return false;
    char line[512], needle[32];
    snprintf(needle, sizeof needle, "0100007F:%04X 00000000:0000 0A", port);
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void wait_listening(tw_reactor *r, uint16_t port)
{
    for (int i = 0; i < 200 && !listening(port); i++)
        tt_run_for(r, 0.02);
    assert_true(listening(port));
}

static void bulk_with_s_server(void **state)
{
    tw_reactor *r = tt_reactor();
    uint16_t port = free_port();
    char accept[32];
    snprintf(accept, sizeof accept, "127.0.0.1:%u", port);
    const char *extra[] = { "-quiet", NULL };
    child *srv = s_server_argv(r, accept, certs->server, certs->server_key, extra);
    srv->check_pattern = true;
    srv->expect = big;
    child_feed(srv, big, false); /* what s_server sends us */
    wait_listening(r, port);
    xfer_stats xs = { .r = r };
    tw_tls_client_options co = { .trust_roots = certs->ca };
    tw_tls_context *ctx;
    assert_int_equal(tw_tls_client_context_new(&co, &ctx), 0);
    tw_factory inner = TW_FACTORY_INIT(&xfer_ops, &xs);
    tw_factory *tls = tw_tls_factory_new(ctx, "localhost", &inner);
    double t0 = tt_now();
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port, NULL, tls, NULL), 0);
    bulk_done b = { &xs, srv };
    bool ok = tt_run_until(r, bulk_finished, &b, 120);
    double secs = tt_now() - t0;
    if (!ok)
        print_message("got %zu from s_server, it got %zu; stderr: %s\n", xs.got, srv->got,
                      srv->err);
    assert_true(ok);
    print_message("  %zu MiB each way with s_server in %.2f s\n", big >> 20, secs);
    assert_int_equal(xs.bad, 0);
    assert_int_equal(srv->bad, 0);
    assert_true(xs.read_pauses > 0);
    tw_transport_lose_connection(xs.x->base.transport);
    assert_true(tt_run_until(r, conns_gone, r, 10));
    assert_int_equal(xs.lost_code, TW_ECONNECTION_DONE);
    child_end(srv);
    tw_tls_factory_free(tls);
    tw_tls_context_unref(ctx);
    tw_reactor_free(r);
}

/* ------------------------------------------------- s_client, twirl server */

static child *s_client(tw_reactor *r, const char *port, const char *const extra[])
{
    char connect[32];
    snprintf(connect, sizeof connect, "127.0.0.1:%s", port);
    const char *argv[40] = {
        "openssl", "s_client", "-connect", connect, "-CAfile", certs->ca, "-verify_return_error"
    };
    int n = 7;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* argv[3] points at a local buffer: exec happens before we return. */
    return child_start(r, argv);
}

static void s_client_against_us(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    ss.echo = true;
    our_server s;
    tw_tls_server_options so = { .alpn = "h2,http/1.1" };
    our_server_start(r, &s, &so, &rec_ops, &ss);
    const char *extra[] = { "-servername", "localhost", "-alpn", "h2", NULL };
    child *cli = s_client(r, s.port_s, extra);
    want w = { &ss, 0, 0, 0, 1 };
    assert_true(tt_run_until(r, got, &w, 10));
    assert_string_equal(ss.alpn, "h2");
    child_say(cli, "ping\n");
    assert_true(wait_text(r, cli, "ping\n", false, 10));
    assert_true(wait_text(r, cli, "ALPN protocol: h2", false, 1));
    assert_true(wait_text(r, cli, "Verify return code: 0 (ok)", false, 1));
    /* s_client's end of input: it sends close_notify; we see an end of
     * stream (eof_received), not a truncation. */
    child_close_stdin(cli);
    want wl = { &ss, 0, 1 };
    assert_true(tt_run_until(r, got, &wl, 10));
    assert_int_equal(ss.eof, 1);
    assert_int_equal(ss.lost_code, TW_ECONNECTION_DONE);
    assert_true(tt_run_until(r, child_done, cli, 10));
    assert_int_equal(child_exit_code(cli), 0);
    child_end(cli);
    our_server_stop(&s);
    tw_reactor_free(r);
}

/* We close first: s_client reads our close_notify ("closed"). */
static void close_notify_seen_by_s_client(void **state)
{
    tw_reactor *r = tt_reactor();
    stats ss = { 0 };
    ss.bye_on_data = true;
    our_server s;
    our_server_start(r, &s, NULL, &rec_ops, &ss);
    const char *extra[] = { "-servername", "localhost", "-msg", NULL };
    child *cli = s_client(r, s.port_s, extra);
    child_say(cli, "hi\n");
    assert_true(wait_text(r, cli, "bye\n", false, 10));
    assert_true(tt_run_until(r, child_done, cli, 10));
    assert_non_null(strstr(cli->out, "<<< TLS 1.3, Alert [length 0002], warning close_notify"));
    assert_non_null(strstr(cli->out, "\nclosed\n"));
    assert_int_equal(ss.lost_code, TW_ECONNECTION_DONE);
    child_end(cli);
    our_server_stop(&s);
    tw_reactor_free(r);
}

static void sni_with_s_client(void **state)
{
    static const struct {
        const char *name, *subject;
    } cases[] = { { "other.test", "subject=O = twirl tests, CN = other.test" },
                  { "localhost", "subject=O = twirl tests, CN = localhost" } };
    for (size_t i = 0; i < 2; i++) {
        tw_reactor *r = tt_reactor();
        stats ss = { 0 };
        ss.echo = true;
        tw_tls_certificate extra_cert = { certs->other, certs->other_key, NULL };
        tw_tls_server_options so = { .sni = &extra_cert, .sni_count = 1 };
        our_server s;
        our_server_start(r, &s, &so, &rec_ops, &ss);
        const char *extra[] = { "-servername", cases[i].name, NULL };
        child *cli = s_client(r, s.port_s, extra);
        child_say(cli, "x\n");
        assert_true(wait_text(r, cli, cases[i].subject, false, 10));
        child_close_stdin(cli);
        assert_true(tt_run_until(r, child_done, cli, 10));
        child_end(cli);
        our_server_stop(&s);
        tw_reactor_free(r);
    }
}

static void client_certificate_with_s_client(void **state)
{
    for (int with_cert = 1; with_cert >= 0; with_cert--) {
        tw_reactor *r = tt_reactor();
        stats ss = { 0 };
        ss.echo = true;
        tw_tls_server_options so = { .ca_file = certs->ca };
        our_server s;
        our_server_start(r, &s, &so, &rec_ops, &ss);
        tw_log_level old = tw_log_get_level();
        tw_log_set_level(TW_LOG_ERROR);
        const char *with[] = { "-servername", "localhost",       "-cert", certs->client,
                               "-key",        certs->client_key, NULL };
        const char *without[] = { "-servername", "localhost", NULL };
        child *cli = s_client(r, s.port_s, with_cert ? with : without);
        child_say(cli, "who\n");
        if (with_cert) {
            assert_true(wait_text(r, cli, "who\n", false, 10));
            assert_string_equal(ss.subject, "CN=test client,O=twirl tests");
            assert_true(ss.verified);
            child_close_stdin(cli);
        }
        assert_true(tt_run_until(r, child_done, cli, 10));
        if (!with_cert) {
            assert_int_equal(ss.made, 0);
            assert_non_null(strstr(cli->err, "certificate required"));
            assert_true(child_exit_code(cli) != 0);
        }
        tw_log_set_level(old);
        child_end(cli);
        our_server_stop(&s);
        tw_reactor_free(r);
    }
}

/* s_client -starttls smtp: a plaintext SMTP greeting and EHLO, then
 * STARTTLS switches our protocol to TLS with tw_tls_start. */
typedef struct smtp {
    tw_protocol base;
    char line[512];
    size_t len;
    bool tls;
} smtp;

static tw_tls_context *smtp_ctx;
static int smtp_handshakes, smtp_tls_lines;

static void smtp_done(tw_protocol *p, const tw_failure *error, void *arg)
{
    if (!error)
        smtp_handshakes++;
}

static void smtp_made(tw_protocol *p)
{
    tw_transport_write_str(p->transport, "220 twirl ESMTP ready\r\n");
}

static void smtp_data(tw_protocol *p, const void *data, size_t len)
{
    smtp *m = (smtp *)p;
    const char *d = data;
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n') {
            if (m->len < sizeof m->line - 1)
                m->line[m->len++] = d[i];
            continue;
        }
        m->line[m->len] = '\0';
        m->len = 0;
        if (m->tls) {
            smtp_tls_lines++;
            tw_transport_write_str(p->transport, "250 got it over TLS\r\n");
        } else if (strncasecmp(m->line, "EHLO", 4) == 0) {
            tw_transport_write_str(p->transport, "250-twirl\r\n250 STARTTLS\r\n");
        } else if (strncasecmp(m->line, "STARTTLS", 8) == 0) {
            tw_transport_write_str(p->transport, "220 go ahead\r\n");
            tw_tls_start_options o = { .initial_data = d + i + 1,
                                       .initial_len = len - i - 1,
                                       .handshake_done = smtp_done };
            assert_int_equal(tw_tls_start(p, smtp_ctx, &o), 0);
            m->tls = true;
            return;
        } else {
            tw_transport_write_str(p->transport, "500 what?\r\n");
        }
    }
}

static const tw_protocol_ops smtp_ops = {
    .size = sizeof(smtp),
    .connection_made = smtp_made,
    .data_received = smtp_data,
};

static void starttls_smtp_with_s_client(void **state)
{
    tw_reactor *r = tt_reactor();
    tw_tls_server_options so = { .cert = { certs->server, certs->server_key, NULL } };
    assert_int_equal(tw_tls_server_context_new(&so, &smtp_ctx), 0);
    smtp_handshakes = smtp_tls_lines = 0;
    tw_factory f = TW_FACTORY_INIT(&smtp_ops, NULL);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &f, &port), 0);
    char ps[8];
    snprintf(ps, sizeof ps, "%u", tw_address_port(tw_port_address(port)));
    const char *extra[] = { "-starttls", "smtp", "-servername", "localhost", "-crlf", NULL };
    child *cli = s_client(r, ps, extra);
    assert_true(wait_text(r, cli, "Verify return code: 0 (ok)", false, 10));
    assert_int_equal(smtp_handshakes, 1);
    child_say(cli, "NOOP\n");
    assert_true(wait_text(r, cli, "250 got it over TLS", false, 10));
    assert_int_equal(smtp_tls_lines, 1);
    child_close_stdin(cli);
    assert_true(tt_run_until(r, child_done, cli, 10));
    assert_true(tt_run_until(r, conns_gone, r, 10));
    child_end(cli);
    tw_port_stop_listening(port);
    tw_tls_context_unref(smtp_ctx);
    tw_reactor_free(r);
}

static void bulk_with_s_client(void **state)
{
    tw_reactor *r = tt_reactor();
    xfer_stats xs = { .r = r };
    our_server s;
    our_server_start(r, &s, NULL, &xfer_ops, &xs);
    const char *extra[] = { "-servername", "localhost", "-quiet", NULL };
    child *cli = s_client(r, s.port_s, extra);
    cli->check_pattern = true;
    cli->expect = big;
    child_feed(cli, big, true); /* what s_client sends us; -quiet ignores its EOF */
    double t0 = tt_now();
    bulk_done b = { &xs, cli };
    bool ok = tt_run_until(r, bulk_finished, &b, 120);
    double secs = tt_now() - t0;
    if (!ok)
        print_message("got %zu from s_client, it got %zu; stderr: %s\n", xs.got, cli->got,
                      cli->err);
    assert_true(ok);
    print_message("  %zu MiB each way with s_client in %.2f s\n", big >> 20, secs);
    assert_int_equal(xs.bad, 0);
    assert_int_equal(cli->bad, 0);
    assert_true(xs.read_pauses > 0);
    /* Our close_notify ends s_client. */
    tw_transport_lose_connection(xs.x->base.transport);
    assert_true(tt_run_until(r, child_done, cli, 10));
    assert_int_equal(xs.lost_code, TW_ECONNECTION_DONE);
    child_end(cli);
    our_server_stop(&s);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ curl */

/* Enough HTTP/1.1 for curl: one request, one response, close. */
typedef struct http {
    tw_protocol base;
    char head[4096];
    size_t len;
    bool answered;
} http;

static size_t http_body_bytes;
static char http_alpn[32];

static void http_data(tw_protocol *p, const void *data, size_t len)
{
    http *h = (http *)p;
    if (h->answered)
        return;
    size_t n = len < sizeof h->head - 1 - h->len ? len : sizeof h->head - 1 - h->len;
    memcpy(h->head + h->len, data, n);
    h->len += n;
    h->head[h->len] = '\0';
    if (!strstr(h->head, "\r\n\r\n"))
        return;
    h->answered = true;
    const char *a = tw_tls_negotiated_protocol(p->transport);
    snprintf(http_alpn, sizeof http_alpn, "%s", a ? a : "");
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n",
             http_body_bytes);
    tw_transport_write_str(p->transport, hdr);
    static char block[65536];
    for (size_t sent = 0; sent < http_body_bytes;) {
        size_t k = http_body_bytes - sent < sizeof block ? http_body_bytes - sent : sizeof block;
        for (size_t i = 0; i < k; i++)
            block[i] = (char)('a' + (sent + i) % 26);
        tw_transport_write(p->transport, block, k);
        sent += k;
    }
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops http_ops = {
    .size = sizeof(http),
    .data_received = http_data,
};

static child *curl(tw_reactor *r, const char *url, const char *const extra[])
{
    const char *argv[40] = { "curl",       "-sS",
                             "--max-time", "30",
                             "-o",         "/dev/null",
                             "-w",         "%{http_code} %{http_version} %{size_download}" };
    int n = 8;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n++] = url;
    argv[n] = NULL;
    return child_start(r, argv);
}

static void curl_against_us(void **state)
{
    tw_reactor *r = tt_reactor();
    our_server s;
    tw_tls_server_options so = { .alpn = "http/1.1" };
    our_server_start(r, &s, &so, &http_ops, NULL);
    char url[128];
    snprintf(url, sizeof url, "https://localhost:%s/", s.port_s);
    http_body_bytes = 16u << 20;
    const char *extra[] = { "--cacert", certs->ca, NULL };
    child *c = curl(r, url, extra);
    assert_true(tt_run_until(r, child_done, c, 30));
    print_message("  curl: %s %s\n", c->out, c->err);
    assert_int_equal(child_exit_code(c), 0);
    char want_s[64];
    snprintf(want_s, sizeof want_s, "200 1.1 %zu", http_body_bytes);
    assert_string_equal(c->out, want_s);
    assert_string_equal(http_alpn, "http/1.1"); /* curl offered h2 too */
    child_end(c);

    /* By IP address (the certificate names 127.0.0.1 too), TLS 1.2 only. */
    snprintf(url, sizeof url, "https://127.0.0.1:%s/", s.port_s);
    http_body_bytes = 10;
    const char *tls12[] = { "--cacert", certs->ca, "--tls-max", "1.2", NULL };
    c = curl(r, url, tls12);
    assert_true(tt_run_until(r, child_done, c, 30));
    assert_int_equal(child_exit_code(c), 0);
    assert_string_equal(c->out, "200 1.1 10");
    child_end(c);

    /* A wrong host name: curl refuses (60: certificate problem). */
    char resolve[128];
    snprintf(resolve, sizeof resolve, "wrong.example:%s:127.0.0.1", s.port_s);
    snprintf(url, sizeof url, "https://wrong.example:%s/", s.port_s);
    const char *wrong[] = { "--cacert", certs->ca, "--resolve", resolve, NULL };
    tw_log_level old = tw_log_get_level();
    tw_log_set_level(TW_LOG_ERROR);
    c = curl(r, url, wrong);
    assert_true(tt_run_until(r, child_done, c, 30));
    assert_int_equal(child_exit_code(c), 60);
    child_end(c);
    tw_log_set_level(old);
    assert_true(tt_run_until(r, conns_gone, r, 10));
    our_server_stop(&s);

    /* An expired certificate: refused too. */
    tw_tls_server_options ex = { .cert = { certs->expired, certs->expired_key, NULL } };
    our_server_start(r, &s, &ex, &http_ops, NULL);
    snprintf(url, sizeof url, "https://localhost:%s/", s.port_s);
    tw_log_set_level(TW_LOG_ERROR);
    c = curl(r, url, extra);
    assert_true(tt_run_until(r, child_done, c, 30));
    assert_int_equal(child_exit_code(c), 60);
    assert_non_null(strstr(c->err, "expired"));
    child_end(c);
    tw_log_set_level(old);
    our_server_stop(&s);

    /* Client certificates: refused without, served with. */
    tw_tls_server_options cc = { .ca_file = certs->ca };
    our_server_start(r, &s, &cc, &http_ops, NULL);
    snprintf(url, sizeof url, "https://localhost:%s/", s.port_s);
    tw_log_set_level(TW_LOG_ERROR);
    c = curl(r, url, extra);
    assert_true(tt_run_until(r, child_done, c, 30));
    assert_true(child_exit_code(c) != 0);
    child_end(c);
    tw_log_set_level(old);
    const char *with[] = { "--cacert", certs->ca,         "--cert", certs->client,
                           "--key",    certs->client_key, NULL };
    c = curl(r, url, with);
    assert_true(tt_run_until(r, child_done, c, 30));
    assert_int_equal(child_exit_code(c), 0);
    assert_string_equal(c->out, "200 1.1 10");
    child_end(c);
    assert_true(tt_run_until(r, conns_gone, r, 10));
    our_server_stop(&s);
    tw_reactor_free(r);
}

static int setup(void **state)
{
    certs = tt_certs_make();
    big = RUNNING_ON_VALGRIND ? 4u << 20 : 100u << 20;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int teardown(void **state)
{
    tt_certs_free(certs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_against_s_server),
        cmocka_unit_test(truncation_seen_by_s_server),
        cmocka_unit_test(sni_with_s_server),
        cmocka_unit_test(refusals_from_s_server),
        cmocka_unit_test(client_certificate_with_s_server),
        cmocka_unit_test(bulk_with_s_server),
        cmocka_unit_test(s_client_against_us),
        cmocka_unit_test(close_notify_seen_by_s_client),
        cmocka_unit_test(sni_with_s_client),
        cmocka_unit_test(client_certificate_with_s_client),
        cmocka_unit_test(starttls_smtp_with_s_client),
        cmocka_unit_test(bulk_with_s_client),
        cmocka_unit_test(curl_against_us),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
