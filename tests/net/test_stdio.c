/* ctest: label=integration timeout=180 */
/* Standard I/O transport: in this process over pipes, a regular file,
 * /dev/null and a terminal (given as its descriptors), and the
 * stdio_echo example run as a child with its real stdin and stdout. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <valgrind/valgrind.h>

#include "tt.h"
#include "twirl/log.h"
#include "twirl/process.h"
#include "twirl/stdio.h"

/* ------------------------------------------------------------ protocols */

typedef struct stats {
    int made, lost, eofs, destroyed, after_lost, chunks;
    int lost_code, lost_cause;
    size_t received;
    char buf[4096];
    size_t len;
    tw_stdio *s;
} stats;

typedef struct peer {
    tw_protocol base;
    stats *st;
    int lost;
} peer;

static stats *st_of(tw_protocol *p)
{
    return ((peer *)p)->st;
}

static void p_made(tw_protocol *p)
{
    st_of(p)->made++;
    assert_string_equal(p->transport->ops->kind, "stdio");
}

static void p_record(tw_protocol *p, const void *data, size_t len)
{
    stats *s = st_of(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    s->chunks++;
    s->received += len;
    size_t n = len < sizeof s->buf - 1 - s->len ? len : sizeof s->buf - 1 - s->len;
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = 0;
}

static void p_echo(tw_protocol *p, const void *data, size_t len)
{
    p_record(p, data, len);
    tw_transport_write(p->transport, data, len);
}

static void p_lost(tw_protocol *p, const tw_failure *reason)
{
    stats *s = st_of(p);
    if (((peer *)p)->lost)
        s->after_lost++;
    ((peer *)p)->lost = 1;
    s->lost++;
    s->lost_code = tw_failure_code(reason);
    const tw_failure *cause = tw_failure_cause(reason);
    s->lost_cause = cause ? tw_failure_code(cause) : 0;
}

static void p_destroy(tw_protocol *p)
{
    st_of(p)->destroyed++;
}

static const tw_protocol_ops echo_ops = {
    .size = sizeof(peer),
    .connection_made = p_made,
    .data_received = p_echo,
    .connection_lost = p_lost,
    .destroy = p_destroy,
};

/* An echo with flow control: its own reading pauses while its output is
 * above the high-water mark (the transport registered as its own producer). */
static void flow_made(tw_protocol *p)
{
    p_made(p);
    assert_int_equal(
        tw_transport_register_producer(p->transport, tw_transport_as_producer(p->transport), true),
        0);
}

static const tw_protocol_ops flow_ops = {
    .size = sizeof(peer),
    .connection_made = flow_made,
    .data_received = p_echo,
    .connection_lost = p_lost,
    .destroy = p_destroy,
};

/* Half-close aware: says goodbye after end of input, then closes. */
static void bye_eof(tw_protocol *p)
{
    st_of(p)->eofs++;
    tw_transport_write_str(p->transport, "bye\n");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops bye_ops = {
    .size = sizeof(peer),
    .connection_made = p_made,
    .data_received = p_record,
    .eof_received = bye_eof,
    .connection_lost = p_lost,
    .destroy = p_destroy,
};

static tw_protocol *new_peer(const tw_protocol_ops *ops, stats *s)
{
    memset(s, 0, sizeof *s);
    tw_protocol *p = tw_protocol_alloc(ops);
    assert_non_null(p);
    ((peer *)p)->st = s;
    return p;
}

static bool is_lost(void *arg)
{
    return ((stats *)arg)->lost > 0;
}

/* ------------------------------------------------------------ helpers */

static bool nonblocking(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

/* What the test reads from the transport's output. */
typedef struct sink {
    int fd;
    char buf[1 << 16];
    size_t len;
    size_t total;
    bool eof;
} sink;

static void sink_pull(sink *k)
{
    for (;;) {
        char tmp[65536];
        ssize_t n = read(k->fd, tmp, sizeof tmp);
        if (n > 0) {
            size_t c =
                (size_t)n < sizeof k->buf - 1 - k->len ? (size_t)n : sizeof k->buf - 1 - k->len;
            memcpy(k->buf + k->len, tmp, c);
            k->len += c;
            k->buf[k->len] = 0;
            k->total += (size_t)n;
            continue;
        }
        if (n == 0)
            k->eof = true;
        return;
    }
}

typedef struct until_out {
    tw_reactor *r;
    sink *k;
    size_t want;
    bool want_eof;
} until_out;

static bool out_arrived(void *arg)
{
    until_out *u = arg;
    sink_pull(u->k);
    return u->k->total >= u->want && (!u->want_eof || u->k->eof);
}

static void run_until_out(tw_reactor *r, sink *k, size_t want, bool want_eof)
{
    until_out u = { r, k, want, want_eof };
    assert_true(tt_run_until(r, out_arrived, &u, 10));
}

/* pipes: in[0] is the transport's input (we write in[1]); out[1] its
 * output (we read out[0], non-blocking). */
static void make_pipes(int in[2], int out[2])
{
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
}

static void close4(int in[2], int out[2])
{
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
}

/* ------------------------------------------------------------ pipes */

static void echo_over_pipes_and_eof(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, &io), 0);
    assert_int_equal(s.made, 1);
    assert_int_equal(tw_transport_fd(tw_stdio_transport(io)), out[1]);
    assert_true(nonblocking(in[0]) && nonblocking(out[1]));
    assert_int_equal(write(in[1], "hello\n", 6), 6);
    sink k = { .fd = out[0] };
    run_until_out(r, &k, 6, false);
    assert_string_equal(k.buf, "hello\n");
    assert_int_equal(write(in[1], "again", 5), 5);
    run_until_out(r, &k, 11, false);
    /* End of input without eof_received: lose_connection, a clean end. */
    close(in[1]);
    in[1] = open("/dev/null", O_RDONLY | O_CLOEXEC); /* keep close4 simple */
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(s.destroyed, 1);
    assert_int_equal(s.after_lost, 0);
    /* The descriptors are still open and blocking again. */
    assert_false(nonblocking(in[0]));
    assert_false(nonblocking(out[1]));
    assert_true(fcntl(in[0], F_GETFD) >= 0 && fcntl(out[1], F_GETFD) >= 0);
    tw_reactor_free(r);
    close4(in, out);
    assert_int_equal(tt_open_fds(), fds_before);
}

static void eof_received_may_write_then_close(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    assert_int_equal(tw_stdio_open(r, new_peer(&bye_ops, &s), &o, NULL), 0);
    assert_int_equal(write(in[1], "data", 4), 4);
    close(in[1]);
    in[1] = -1;
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.eofs, 1);
    assert_string_equal(s.buf, "data");
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    sink k = { .fd = out[0] };
    sink_pull(&k);
    assert_string_equal(k.buf, "bye\n");
    tw_reactor_free(r);
    close(in[0]);
    close(out[0]);
    close(out[1]);
}

/* lose_write_connection: the reader of our output sees EOF, the output
 * descriptor stays valid (now /dev/null), and reading goes on. */
static void half_close_output(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, &io), 0);
    tw_transport *t = tw_stdio_transport(io);
    assert_int_equal(tw_transport_write_str(t, "last words"), 0);
    assert_int_equal(tw_transport_lose_write_connection(t), 0);
    assert_int_equal(tw_transport_lose_write_connection(t), TW_ECLOSED);
    assert_int_equal(tw_transport_write_str(t, "more"), TW_ECLOSED);
    sink k = { .fd = out[0] };
    run_until_out(r, &k, 10, true);
    assert_string_equal(k.buf, "last words");
    assert_true(fcntl(out[1], F_GETFD) >= 0);
    assert_false(nonblocking(out[1]));
    assert_int_equal(write(in[1], "still reading", 13), 13);
    tt_run_for(r, 0.05);
    assert_string_equal(s.buf, "still reading");
    assert_int_equal(s.lost, 0);
    close(in[1]); /* both sides done: a clean end */
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    tw_reactor_free(r);
    close(in[0]);
    close(out[0]);
    close(out[1]);
}

static void output_reader_gone(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    close(out[0]);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, &io), 0);
    assert_int_equal(tw_transport_write_str(tw_stdio_transport(io), "x"), -EPIPE);
    assert_int_equal(s.lost, 0); /* told from the loop, not inside the write */
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.lost_code, TW_ECONNECTION_LOST);
    assert_int_equal(s.lost_cause, -EPIPE);
    tw_reactor_free(r);
    close(in[0]);
    close(in[1]);
    close(out[1]);
}

/* ------------------------------------------------------------ files */

static void regular_file_and_dev_null_input(void **state)
{
    tw_reactor *r = tt_reactor();
    char *dir = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/input", dir);
    size_t total = (size_t)(RUNNING_ON_VALGRIND ? 1 : 8) << 20;
    FILE *f = fopen(path, "w");
    uint64_t sum_in = 0;
    for (size_t i = 0; i < total; i++) {
        unsigned char c = (unsigned char)(i * 31 + (i >> 12));
        sum_in = sum_in * 131 + c;
        fputc(c, f);
    }
    fclose(f);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    stats s;
    tw_stdio_options o = { file, out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&flow_ops, &s), &o, &io), 0);
    size_t max_buffered = 0;
    /* Read what comes out while the loop runs, checking every byte. */
    uint64_t sum_out = 0;
    size_t got = 0;
    bool eof = false;
    while (!eof) {
        char tmp[65536];
        ssize_t n = read(out[0], tmp, sizeof tmp);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                sum_out = sum_out * 131 + (unsigned char)tmp[i];
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (s.lost && got == total)) {
            eof = true;
        } else {
            tw_reactor_iterate(r, 0.01);
            if (!s.lost && tw_transport_buffered(tw_stdio_transport(io)) > max_buffered)
                max_buffered = tw_transport_buffered(tw_stdio_transport(io));
        }
    }
    assert_int_equal(got, total);
    assert_true(sum_in == sum_out);
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    /* The file was read no faster than the pipe took it. */
    assert_true(max_buffered <= TW_WRITE_HIGH_WATER + 64 * 1024);
    close(file);

    /* /dev/null: an immediate end of input. */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    o.in_fd = null;
    assert_int_equal(tw_stdio_open(r, new_peer(&bye_ops, &s), &o, NULL), 0);
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.received, 0);
    assert_int_equal(s.eofs, 1);
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    close(null);
    tw_reactor_free(r);
    close(out[0]);
    close(out[1]);
    tt_rmdir(dir);
}

/* ------------------------------------------------------------ output flow */

typedef struct reader_thread {
    int fd;
    double delay;
    size_t total;
} reader_thread;

static void *read_all(void *arg)
{
    reader_thread *t = arg;
    usleep((useconds_t)(t->delay * 1e6));
    fcntl(t->fd, F_SETFL, 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(t->fd, buf, sizeof buf)) > 0)
        t->total += (size_t)n;
    return NULL;
}

/* A streaming producer on the output: paused at the high-water mark. */
typedef struct prod {
    tw_producer base;
    int pauses, resumes, stops;
} prod;

static void pr_pause(tw_producer *p)
{
    ((prod *)p)->pauses++;
}
static void pr_resume(tw_producer *p)
{
    ((prod *)p)->resumes++;
}
static void pr_stop(tw_producer *p)
{
    ((prod *)p)->stops++;
}
static const tw_producer_ops prod_ops = { pr_pause, pr_resume, pr_stop };

static void flush_and_backpressure(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, &io), 0);
    tw_transport *t = tw_stdio_transport(io);
    prod pr = { { &prod_ops } };
    assert_int_equal(tw_transport_register_producer(t, &pr.base, true), 0);
    size_t total = 1 << 20;
    char *block = malloc(total);
    memset(block, 'z', total);
    assert_int_equal(tw_transport_write(t, block, total), 0);
    assert_true(tw_transport_buffered(t) > 0);
    assert_int_equal(pr.pauses, 1);
    /* Nobody reads: a bounded wait gives up. */
    assert_int_equal(tw_stdio_flush(io, 0.1), TW_ETIMEDOUT);
    /* A reader comes: the synchronous flush writes everything. */
    reader_thread rt = { out[0], 0.05, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_all, &rt), 0);
    assert_int_equal(tw_stdio_flush(io, 30), 0);
    assert_int_equal(tw_transport_buffered(t), 0);
    assert_int_equal(pr.resumes, 1); /* told from the flush, below low water */
    tw_transport_lose_connection(t);
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(pr.stops, 1);
    close(out[1]); /* the thread's EOF */
    out[1] = -1;
    pthread_join(th, NULL);
    assert_int_equal(rt.total, total);
    free(block);
    tw_reactor_free(r);
    close(in[0]);
    close(in[1]);
    close(out[0]);
}

/* Freeing the reactor flushes what is queued, then ends the transport. */
static void reactor_free_flushes(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s;
    tw_stdio_options o = { in[0], out[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, &io), 0);
    size_t total = 1 << 20;
    char *block = calloc(1, total);
    assert_int_equal(tw_transport_write(tw_stdio_transport(io), block, total), 0);
    free(block);
    reader_thread rt = { out[0], 0.05, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_all, &rt), 0);
    tw_reactor_free(r);
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.lost_code, TW_ECONNECTION_DONE);
    assert_int_equal(s.destroyed, 1);
    assert_false(nonblocking(out[1]));
    close(out[1]);
    pthread_join(th, NULL);
    assert_int_equal(rt.total, total);
    close(in[0]);
    close(in[1]);
    close(out[0]);
}

/* ------------------------------------------------------------ terminals */

/* A terminal in canonical mode returns one line per read: three lines
 * written at once must all arrive without more input. */
static void terminal_lines(void **state)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
        skip();
        return;
    }
    const char *name = ptsname(master);
    int tin = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int tout = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(tin >= 0 && tout >= 0);
    struct termios tio;
    tcgetattr(tin, &tio);
    tio.c_lflag &= ~(tcflag_t)ECHO; /* only our echo comes back */
    tio.c_oflag &= ~(tcflag_t)ONLCR;
    tcsetattr(tin, TCSANOW, &tio);
    fcntl(master, F_SETFL, O_NONBLOCK);

    tw_reactor *r = tt_reactor();
    /* A reader that writes nothing back (a write to the terminal would
     * itself wake the reader and hide a missed line). */
    stats s;
    tw_stdio_options in_only = { tin, -1 };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&bye_ops, &s), &in_only, &io), 0);
    assert_int_equal(write(master, "a\nb\nc\n", 6), 6);
    usleep(50000); /* all three lines wait in the terminal before one read */
    tt_run_for(r, 0.2);
    assert_string_equal(s.buf, "a\nb\nc\n");
    assert_true(s.chunks >= 3); /* one line per read: canonical mode */
    tw_transport_lose_connection(tw_stdio_transport(io));
    assert_true(tt_run_until(r, is_lost, &s, 10));
    assert_false(nonblocking(tin));

    /* Echo through the terminal both ways. */
    tw_stdio_options o = { tin, tout };
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, NULL), 0);
    assert_int_equal(write(master, "d\ne\n", 4), 4);
    sink k = { .fd = master };
    run_until_out(r, &k, 4, false);
    assert_string_equal(k.buf, "d\ne\n");
    tw_reactor_free(r); /* ends it: flags restored */
    assert_false(nonblocking(tin));
    assert_false(nonblocking(tout));
    close(tin);
    close(tout);
    close(master);
}

/* ------------------------------------------------------------ arguments */

static void bad_arguments(void **state)
{
    tw_reactor *r = tt_reactor();
    int in[2], out[2];
    make_pipes(in, out);
    stats s, s2;
    tw_stdio_options o = { in[0], out[1] };
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s), &o, NULL), 0);
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s2), &o, NULL), TW_EBUSY);
    assert_int_equal(s2.destroyed, 1);
    assert_int_equal(s2.made, 0);
    tw_stdio_options same = { in[0], in[0] };
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s2), &same, NULL), TW_EINVAL);
    tw_stdio_options none = { -1, -1 };
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s2), &none, NULL), TW_EINVAL);
    tw_stdio_options closed = { 900, -1 };
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s2), &closed, NULL), TW_EINVAL);
    assert_int_equal(s2.destroyed, 1);
    assert_int_equal(tw_stdio_open(r, NULL, &o, NULL), TW_EINVAL);
    /* Output only: writes work, and lose_connection ends it. */
    int w[2];
    assert_int_equal(pipe2(w, O_CLOEXEC), 0);
    fcntl(w[0], F_SETFL, O_NONBLOCK);
    tw_stdio_options out_only = { -1, w[1] };
    tw_stdio *io;
    assert_int_equal(tw_stdio_open(r, new_peer(&echo_ops, &s2), &out_only, &io), 0);
    assert_int_equal(tw_transport_write_str(tw_stdio_transport(io), "only out"), 0);
    tw_transport_lose_connection(tw_stdio_transport(io));
    assert_true(tt_run_until(r, is_lost, &s2, 10));
    sink k = { .fd = w[0] };
    sink_pull(&k);
    assert_string_equal(k.buf, "only out");
    tw_reactor_free(r); /* the first one is still open: ended here */
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.destroyed, 1);
    close4(in, out);
    close(w[0]);
    close(w[1]);
}

/* ------------------------------------------------------------ the example */

typedef struct child {
    tw_process_protocol base;
} child;

typedef struct child_out {
    char out[1 << 16];
    size_t len, total;
    int ended;
    tw_process_status st;
} child_out;

static void c_out(tw_process_protocol *p, const void *data, size_t len)
{
    child_out *c = p->user_data;
    size_t n = len < sizeof c->out - 1 - c->len ? len : sizeof c->out - 1 - c->len;
    memcpy(c->out + c->len, data, n);
    c->len += n;
    c->out[c->len] = 0;
    c->total += len;
}

static void c_ended(tw_process_protocol *p, const tw_process_status *st)
{
    child_out *c = p->user_data;
    c->ended = 1;
    c->st = *st;
}

static const tw_process_protocol_ops child_ops = {
    .size = sizeof(child),
    .out_received = c_out,
    .err_received = c_out,
    .process_ended = c_ended,
};

static bool child_ended(void *arg)
{
    return ((child_out *)arg)->ended;
}

static tw_process *run_example(tw_reactor *r, child_out *c, const tw_process_options *opts)
{
    memset(c, 0, sizeof *c);
    tw_process_protocol *p = tw_process_protocol_alloc(&child_ops);
    p->user_data = c;
    char bin[4096];
    snprintf(bin, sizeof bin, "%s", tt_bin("example_stdio_echo"));
    const char *argv[] = { bin, "> ", NULL };
    tw_process *proc;
    assert_int_equal(tw_spawn_process(r, p, argv, NULL, NULL, opts, &proc), 0);
    return proc;
}

static void example_over_a_pipe(void **state)
{
    tw_reactor *r = tt_reactor();
    child_out c;
    tw_process *proc = run_example(r, &c, NULL);
    tw_transport *t = tw_process_transport(proc);
    tw_transport_write_str(t, "one\ntwo\n");
    tt_run_for(r, 0.1);
    assert_string_equal(c.out, "> one\n> two\n"); /* echoed while running */
    tw_transport_write_str(t, "three\n");
    tw_process_close_stdin(proc); /* EOF: it flushes and exits */
    assert_true(tt_run_until(r, child_ended, &c, 20));
    assert_string_equal(c.out, "> one\n> two\n> three\n");
    assert_true(tw_process_status_success(&c.st));

    /* Lots of lines at once: all flushed before it exits. */
    proc = run_example(r, &c, NULL);
    t = tw_process_transport(proc);
    int lines = RUNNING_ON_VALGRIND ? 2000 : 100000;
    size_t want = 0;
    for (int i = 0; i < lines; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d\n", i);
        tw_transport_write(t, line, (size_t)n);
        want += (size_t)n + 2;
    }
    tw_process_close_stdin(proc);
    assert_true(tt_run_until(r, child_ended, &c, 60));
    assert_int_equal(c.total, want);
    assert_true(tw_process_status_success(&c.st));
    tw_reactor_free(r);
}

/* Its stdin is a regular file; and a pipe we share with it gets its
 * blocking mode back when it is done. */
static void example_with_file_and_shared_pipe(void **state)
{
    tw_reactor *r = tt_reactor();
    char *dir = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/lines", dir);
    FILE *f = fopen(path, "w");
    fputs("alpha\nbeta\n", f);
    fclose(f);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    tw_child_fd fds[] = {
        { 0, TW_CHILD_FD_INHERIT, file },
        { 1, TW_CHILD_PIPE_R, -1 },
        { 2, TW_CHILD_PIPE_R, -1 },
    };
    tw_process_options o = { .child_fds = fds, .n_child_fds = 3 };
    child_out c;
    run_example(r, &c, &o);
    assert_true(tt_run_until(r, child_ended, &c, 20));
    assert_string_equal(c.out, "> alpha\n> beta\n");
    assert_true(tw_process_status_success(&c.st));
    close(file);

    int shared[2];
    assert_int_equal(pipe2(shared, O_CLOEXEC), 0);
    fds[0].parent_fd = shared[0]; /* we keep the same open file */
    run_example(r, &c, &o);
    assert_int_equal(write(shared[1], "gamma\n", 6), 6);
    tt_run_for(r, 0.1);
    assert_string_equal(c.out, "> gamma\n");
    assert_true(nonblocking(shared[0])); /* set by the child, on our file too */
    close(shared[1]);
    assert_true(tt_run_until(r, child_ended, &c, 20));
    assert_false(nonblocking(shared[0])); /* and given back */
    close(shared[0]);
    tw_reactor_free(r);
    tt_rmdir(dir);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_over_pipes_and_eof),
        cmocka_unit_test(eof_received_may_write_then_close),
        cmocka_unit_test(half_close_output),
        cmocka_unit_test(output_reader_gone),
        cmocka_unit_test(regular_file_and_dev_null_input),
        cmocka_unit_test(flush_and_backpressure),
        cmocka_unit_test(reactor_free_flushes),
        cmocka_unit_test(terminal_lines),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(example_over_a_pipe),
        cmocka_unit_test(example_with_file_and_shared_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
