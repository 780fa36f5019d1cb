/* bench_line — LineReceiver throughput on 64 KiB reads of short lines.
 *
 * The input is a stream of CR LF lines of 8 to 40 bytes (pseudo-random,
 * fixed seed, ~26 bytes on average with the delimiter), handed to the
 * receiver 64 KiB at a time — the size of the reactor's read buffer:
 *
 *   memchr floor      a bare loop: memchr for LF, check the CR, count the
 *                     line through a function pointer. What any line
 *                     splitter must at least do.
 *   aligned reads     every read holds complete lines only (the zero-copy
 *                     path: nothing is copied at all).
 *   stream reads      the stream cut every 64 KiB, so reads end mid-line and
 *                     the tail is copied for the next read.
 *   LineOnlyReceiver  the stream, on the line-only receiver.
 *   LF delimiter      the stream with "\n" lines (memchr alone finds them).
 *   raw switching     HTTP-like: a "len N" line, an empty line, N raw bytes,
 *                     back to line mode — the mode switch on every message.
 *
 * Reported: ns per line, millions of lines per second, the ratio to the
 * floor, and heap allocations per read in the steady state (counted by
 * wrapping malloc; not available in sanitizer builds). The receiver frees
 * its tail buffer whenever it empties, so a read that ends exactly on a
 * line boundary followed by one that does not costs one malloc; reads that
 * all end mid-line, or all on a boundary, cost none. The same shapes run
 * under Twisted (bench/twisted_line.py) when /usr/bin/python3 has it.
 * Usage: bench_line [--quick] [--no-twisted]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twirl/basic.h"
#include "twirl/testing.h"

enum { READ = 64 * 1024 };

/* ------------------------------------------------- allocation counting */

#include "alloc_count.h"
#include "bench_clock.h"

/* ------------------------------------------------------------ the input */

static uint64_t rng = 0x2545f4914f6cdd1dull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Fills buf with lines ("delim" after each) up to len bytes. With `whole`
 * the buffer ends on a line boundary (the rest is padding not fed: *used
 * says how much to feed); otherwise the last line is cut. Returns lines
 * complete in the buffer. */
static size_t make_lines(char *buf, size_t len, const char *delim, int whole, size_t *used)
{
    size_t at = 0, lines = 0, k = strlen(delim);
    for (;;) {
        unsigned n = 8 + rnd(33);
        if (at + n + k > len) {
            if (!whole) {
                for (; at < len; at++)
                    buf[at] = 'a' + (char)rnd(26);
            }
            break;
        }
        for (unsigned i = 0; i < n; i++)
            buf[at + i] = (char)(' ' + 1 + rnd(94));
        memcpy(buf + at + n, delim, k);
        at += n + k;
        lines++;
    }
    *used = whole ? at : len;
    return lines;
}

/* ------------------------------------------------------------ receivers */

typedef struct counter {
    tw_line_receiver lr;
    size_t lines;
    long raw_left;
} counter;

static int count_line(tw_protocol *p, const char *line, size_t n)
{
    counter *c = (counter *)p;
    c->lines++;
    if (n > 4 && memcmp(line, "len ", 4) == 0) {
        long v = 0; /* lines are not NUL-terminated */
        for (size_t i = 4; i < n && line[i] >= '0' && line[i] <= '9'; i++)
            v = v * 10 + (line[i] - '0');
        c->raw_left = v;
    } else if (n == 0 && c->raw_left > 0) {
        tw_line_receiver_set_raw_mode(p);
    }
    return 0;
}

static int count_raw(tw_protocol *p, const char *data, size_t n)
{
    counter *c = (counter *)p;
    size_t take = (size_t)c->raw_left < n ? (size_t)c->raw_left : n;
    c->raw_left -= (long)take;
    if (c->raw_left == 0)
        tw_line_receiver_set_line_mode(p, data + take, n - take);
    return 0;
}

static const tw_line_receiver_ops crlf_ops = {
    .base = TW_LINE_RECEIVER_BASE(counter),
    .line_received = count_line,
    .raw_data_received = count_raw,
};
static const tw_line_receiver_ops lf_ops = {
    .base = TW_LINE_RECEIVER_BASE(counter),
    .line_received = count_line,
    .delimiter = "\n",
};
static const tw_line_receiver_ops only_ops = {
    .base = TW_LINE_ONLY_RECEIVER_BASE(counter),
    .line_received = count_line,
};

/* ------------------------------------------------------------ measuring */

typedef struct shape {
    const char *label;
    double ns_per_line;
    double allocs_per_read;
    size_t lines;
} shape;

static size_t sink;
static void noop_line(const char *line, size_t n)
{
    sink += n;
}
static void (*volatile line_fn)(const char *, size_t) = noop_line;

static size_t floor_pass(const char *buf, size_t len)
{
    size_t lines = 0;
    const char *at = buf, *end = buf + len;
    while (at < end) {
        const char *nl = memchr(at, '\n', (size_t)(end - at));
        if (!nl)
            break;
        if (nl > at && nl[-1] == '\r') {
            line_fn(at, (size_t)(nl - 1 - at));
            lines++;
        }
        at = nl + 1;
    }
    return lines;
}

/* Feeds `reads` reads taken round-robin from bufs[]; best of rounds. */
static shape measure(const char *label, const tw_line_receiver_ops *ops, char **bufs,
                     const size_t *used, int nbufs, long reads, int rounds, int floor)
{
    shape s = { label, 1e30, 0, 0 };
    for (int r = 0; r < rounds; r++) {
        tw_test_conn *c = NULL;
        tw_protocol *p = NULL;
        if (!floor) {
            tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
            c = tw_test_conn_new_opts(&o);
            p = tw_test_conn_protocol(c);
            for (int i = 0; i < nbufs; i++) /* warm up */
                p->ops->data_received(p, bufs[i], used[i]);
        }
        size_t lines = 0, before = 0;
#ifdef COUNT_ALLOCS
        before = allocations;
#endif
        double t0 = now_s();
        if (floor) {
            for (long i = 0; i < reads; i++)
                lines += floor_pass(bufs[i % nbufs], used[i % nbufs]);
        } else {
            size_t start = ((counter *)p)->lines;
            /* The transport's own call, without the test double around it. */
            for (long i = 0; i < reads; i++)
                p->ops->data_received(p, bufs[i % nbufs], used[i % nbufs]);
            lines = ((counter *)p)->lines - start;
        }
        double dt = now_s() - t0;
#ifdef COUNT_ALLOCS
        double per_read = (double)(allocations - before) / (double)reads;
#else
        double per_read = -1;
        (void)before;
#endif
        double ns = dt * 1e9 / (double)lines;
        if (ns < s.ns_per_line) {
            s.ns_per_line = ns;
            s.allocs_per_read = per_read;
            s.lines = lines;
        }
        if (c)
            tw_test_conn_free(c);
    }
    return s;
}

/* HTTP-like messages: "len N" CR LF, CR LF, N raw bytes. */
static void make_messages(char *buf, size_t len, size_t *used)
{
    size_t at = 0;
    for (;;) {
        unsigned body = 16 + rnd(64);
        char head[32];
        int h = snprintf(head, sizeof head, "len %u\r\n\r\n", body);
        if (at + (size_t)h + body > len)
            break;
        memcpy(buf + at, head, (size_t)h);
        memset(buf + at + h, 'b', body);
        at += (size_t)h + body;
    }
    *used = at;
}

static int run_twisted(int quick, double *ns, int nshapes, const char **names)
{
    char script[4096];
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    if (!slash)
        return 0;
    snprintf(script, sizeof script, "%.*s/twisted_line.py", (int)(slash - src), src);
    FILE *probe = fopen(script, "r");
    if (!probe)
        return 0;
    fclose(probe);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' --raw%s 2>/dev/null", script,
             quick ? " --quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        char name[64];
        double v;
        if (sscanf(line, "%63s %lf", name, &v) != 2)
            continue;
        for (int i = 0; i < nshapes; i++)
            if (names[i] && strcmp(name, names[i]) == 0) {
                ns[i] = v;
                found++;
            }
    }
    pclose(p);
    return found;
}

int main(int argc, char **argv)
{
    int quick = 0, twisted = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--no-twisted") == 0)
            twisted = 0;
    }
    long reads = quick ? 300 : 3000;
    int rounds = quick ? 3 : 7;
    enum { NB = 8 };
    char *aligned[NB], *stream[NB], *lf[NB], *msgs[NB];
    size_t aligned_used[NB], stream_used[NB], lf_used[NB], msgs_used[NB];
    for (int i = 0; i < NB; i++) {
        aligned[i] = malloc(READ);
        stream[i] = malloc(READ);
        lf[i] = malloc(READ);
        msgs[i] = malloc(READ);
        make_lines(aligned[i], READ, "\r\n", 1, &aligned_used[i]);
        make_lines(stream[i], READ, "\r\n", 0, &stream_used[i]);
        make_lines(lf[i], READ, "\n", 0, &lf_used[i]);
        make_messages(msgs[i], READ, &msgs_used[i]);
    }

    enum { NS = 6 };
    shape s[NS];
    s[0] = measure("memchr floor", NULL, aligned, aligned_used, NB, reads, rounds, 1);
    s[1] = measure("LineReceiver, aligned reads", &crlf_ops, aligned, aligned_used, NB, reads,
                   rounds, 0);
    s[2] =
        measure("LineReceiver, stream reads", &crlf_ops, stream, stream_used, NB, reads, rounds, 0);
    s[3] = measure("LineOnlyReceiver, stream reads", &only_ops, stream, stream_used, NB, reads,
                   rounds, 0);
    s[4] = measure("LineReceiver, LF delimiter", &lf_ops, lf, lf_used, NB, reads, rounds, 0);
    s[5] = measure("LineReceiver, raw switch per message", &crlf_ops, msgs, msgs_used, NB, reads,
                   rounds, 0);
    static const char *names[NS] = { NULL, "aligned", "stream", "line_only", "lf", "raw_switch" };
    double theirs[NS] = { 0 };
    int have = twisted ? run_twisted(quick, theirs, NS, names) : 0;

    printf("Input: 64 KiB reads of CR LF lines of 8-40 bytes (%zu lines per aligned read).\n\n",
           s[1].lines / (size_t)reads);
    printf("| shape | ns/line | M lines/s | vs floor | allocs/read | Twisted ns/line | ratio |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < NS; i++) {
        char allocs_txt[32], tw_txt[32], ratio_txt[32];
        if (s[i].allocs_per_read < 0)
            snprintf(allocs_txt, sizeof allocs_txt, "n/a");
        else
            snprintf(allocs_txt, sizeof allocs_txt, "%.3f", s[i].allocs_per_read);
        if (have && theirs[i] > 0) {
            snprintf(tw_txt, sizeof tw_txt, "%.0f", theirs[i]);
            snprintf(ratio_txt, sizeof ratio_txt, "%.0fx", theirs[i] / s[i].ns_per_line);
        } else {
            snprintf(tw_txt, sizeof tw_txt, "-");
            snprintf(ratio_txt, sizeof ratio_txt, "-");
        }
        printf("| %s | %.2f | %.1f | %.2fx | %s | %s | %s |\n", s[i].label, s[i].ns_per_line,
               1e3 / s[i].ns_per_line, s[i].ns_per_line / s[0].ns_per_line, allocs_txt, tw_txt,
               ratio_txt);
    }
    if (!have && twisted)
        printf("\n(Twisted numbers skipped: /usr/bin/python3 with twisted, or "
               "bench/twisted_line.py, not found)\n");
    for (int i = 0; i < NB; i++) {
        free(aligned[i]);
        free(stream[i]);
        free(lf[i]);
        free(msgs[i]);
    }
    return 0;
}
