/* ctest: label=unit timeout=120 backends=once */
/* LineReceiver and LineOnlyReceiver (twirl/basic.h). Tests are named after
 * the acceptance facts they check (fact01_... to fact19_...); every framing
 * test is run on the input whole, cut at every byte boundary, and in chunks
 * down to one byte (tw_test_feed_splits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/basic.h"
#include "twirl/testing.h"

/* ------------------------------------------------------------ the tester */

enum { MAX_ITEMS = 20000, STORE = 1 << 17 };

/* Records what a receiver delivers: lines (raw bytes are appended to the
 * last item, as Twisted's LineTester does) and line_length_exceeded
 * calls. */
typedef struct tester {
    tw_line_receiver lr;
    char *store;
    size_t used;
    size_t *off, *len;
    int n;
    long length;     /* raw bytes still wanted after "len N" */
    int exceeded;    /* line_length_exceeded calls */
    char *long_line; /* the last over-long data */
    size_t long_len;
    int raw_calls;
    int return_on; /* line_received returns 1 for the line "ret" */
} tester;

static tester *T(tw_test_conn *c)
{
    return (tester *)tw_test_conn_protocol(c);
}

static void t_made(tw_protocol *p)
{
    tester *t = (tester *)p;
    t->store = malloc(STORE);
    t->off = malloc(MAX_ITEMS * sizeof *t->off);
    t->len = malloc(MAX_ITEMS * sizeof *t->len);
}

static void t_destroy(tw_protocol *p)
{
    tester *t = (tester *)p;
    free(t->store);
    free(t->off);
    free(t->len);
    free(t->long_line);
}

static void add(tester *t, const char *s, size_t n)
{
    assert_true(t->n < MAX_ITEMS && t->used + n <= STORE);
    memcpy(t->store + t->used, s, n);
    t->off[t->n] = t->used;
    t->len[t->n] = n;
    t->used += n;
    t->n++;
}

static void append_last(tester *t, const char *s, size_t n)
{
    assert_true(t->n > 0);
    /* Items are stored in order, so the last one ends at `used`. */
    assert_int_equal(t->off[t->n - 1] + t->len[t->n - 1], t->used);
    assert_true(t->used + n <= STORE);
    memcpy(t->store + t->used, s, n);
    t->used += n;
    t->len[t->n - 1] += n;
}

static void expect_items(const tester *t, const char *const *want, int n, const char *how)
{
    if (t->n != n)
        fail_msg("%s: %d items, want %d", how, t->n, n);
    for (int i = 0; i < n; i++) {
        size_t wl = strlen(want[i]);
        if (t->len[i] != wl || memcmp(t->store + t->off[i], want[i], wl) != 0)
            fail_msg("%s: item %d is \"%.*s\", want \"%s\"", how, i, (int)t->len[i],
                     t->store + t->off[i], want[i]);
    }
}

static bool is(const char *line, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(line, word, n) == 0;
}

static int plain_line(tw_protocol *p, const char *line, size_t n)
{
    tester *t = (tester *)p;
    add(t, line, n);
    return t->return_on && is(line, n, "ret");
}

static int plain_raw(tw_protocol *p, const char *data, size_t n)
{
    tester *t = (tester *)p;
    t->raw_calls++;
    add(t, data, n);
    return 0;
}

static void catch_long(tw_protocol *p, const char *data, size_t n)
{
    tester *t = (tester *)p;
    t->exceeded++;
    free(t->long_line);
    t->long_line = malloc(n ? n : 1);
    memcpy(t->long_line, data, n);
    t->long_len = n;
}

/* Twisted's LineTester: delimiter "\n", MAX 64, actions by line. */
static void resume_later(void *arg)
{
    tw_receiver_resume_producing(arg);
}

static int lt_line(tw_protocol *p, const char *line, size_t n)
{
    tester *t = (tester *)p;
    add(t, line, n);
    if (n == 0) {
        tw_line_receiver_set_raw_mode(p);
    } else if (is(line, n, "pause")) {
        tw_receiver_pause_producing(p);
        tw_call_later(p->transport->reactor, 0, resume_later, p);
    } else if (is(line, n, "rawpause")) {
        tw_receiver_pause_producing(p);
        tw_line_receiver_set_raw_mode(p);
        add(t, "", 0);
        tw_call_later(p->transport->reactor, 0, resume_later, p);
    } else if (is(line, n, "stop")) {
        tw_receiver_stop_producing(p);
    } else if (n > 4 && memcmp(line, "len ", 4) == 0) {
        char num[32]; /* lines are not NUL-terminated */
        snprintf(num, sizeof num, "%.*s", (int)(n - 4), line + 4);
        t->length = strtol(num, NULL, 10);
    } else if (n >= 7 && memcmp(line, "produce", 7) == 0) {
        assert_int_equal(
            tw_transport_register_producer(p->transport, tw_receiver_as_producer(p), false), 0);
    } else if (n >= 9 && memcmp(line, "unproduce", 9) == 0) {
        tw_transport_unregister_producer(p->transport);
    }
    return 0;
}

static int lt_raw(tw_protocol *p, const char *data, size_t n)
{
    tester *t = (tester *)p;
    size_t take = (size_t)t->length < n ? (size_t)t->length : n;
    append_last(t, data, take);
    t->length -= (long)take;
    if (t->length == 0)
        tw_line_receiver_set_line_mode(p, data + take, n - take);
    return 0;
}

static void lt_long(tw_protocol *p, const char *data, size_t n)
{
    tester *t = (tester *)p;
    t->exceeded++;
    if (n > 64 + 1)
        tw_line_receiver_set_line_mode(p, data + 64 + 1, n - 64 - 1);
}

static const tw_line_receiver_ops line_tester_ops = {
    .base = TW_LINE_RECEIVER_BASE(tester),
    .connection_made = t_made,
    .destroy = t_destroy,
    .line_received = lt_line,
    .raw_data_received = lt_raw,
    .line_length_exceeded = lt_long,
    .delimiter = "\n",
    .max_line_bytes = 64,
};

/* A plain recorder with the defaults (CR LF, 16384, default exceeded). */
static const tw_line_receiver_ops plain_ops = {
    .base = TW_LINE_RECEIVER_BASE(tester),
    .connection_made = t_made,
    .destroy = t_destroy,
    .line_received = plain_line,
    .raw_data_received = plain_raw,
};

/* Twisted's ExcessivelyLargeLineCatcher: MAX 6, records long lines. */
static const tw_line_receiver_ops catcher_ops = {
    .base = TW_LINE_RECEIVER_BASE(tester),
    .connection_made = t_made,
    .destroy = t_destroy,
    .line_received = plain_line,
    .line_length_exceeded = catch_long,
    .max_line_bytes = 6,
};

static tw_test_conn *conn(const tw_line_receiver_ops *ops)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    return c;
}

/* Runs `wire` through every split and checks the items. */
typedef struct want_items {
    const char *const *items;
    int n;
    int closed;   /* -1: don't care, else whether the transport must be closing */
    int exceeded; /* -1: don't care */
} want_items;

static void check_items(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const want_items *w = arg;
    expect_items(T(c), w->items, w->n, how->desc);
    if (w->closed >= 0 && tw_test_conn_disconnecting(c) != (w->closed != 0))
        fail_msg("%s: closing is %d, want %d", how->desc, tw_test_conn_disconnecting(c), w->closed);
    if (w->exceeded >= 0 && T(c)->exceeded != w->exceeded)
        fail_msg("%s: %d exceeded calls, want %d", how->desc, T(c)->exceeded, w->exceeded);
}

static void splits(const tw_line_receiver_ops *ops, tw_reactor *r, const char *wire, size_t len,
                   const want_items *w)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops), .reactor = r };
    assert_true(tw_test_feed_splits(&o, wire, len, check_items, (void *)w) > 0);
}

#define S(lit) lit, sizeof lit - 1
#define ITEMS(...)        \
    (const char *const[]) \
    {                     \
        __VA_ARGS__       \
    }
#define NITEMS(...) ((int)(sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *)))
#define WANT(closed_, ...)                                   \
    {                                                        \
        ITEMS(__VA_ARGS__), NITEMS(__VA_ARGS__), closed_, -1 \
    }

/* ------------------------------------------------------------ 3.1 LineReceiver */

static void fact01_framing(void **state)
{
    static const char a[] = "\r\n\r\na\r\n";
    want_items wa = WANT(0, "", "", "a");
    splits(&plain_ops, NULL, a, sizeof a - 1, &wa);

    static const char b[] = "a\nb\r\n"; /* a bare LF is data */
    want_items wb = WANT(0, "a\nb");
    splits(&plain_ops, NULL, b, sizeof b - 1, &wb);

    static const char c[] = "PING\r\nPONG\r\nPART"; /* the tail waits */
    want_items wc = WANT(0, "PING", "PONG");
    splits(&plain_ops, NULL, c, sizeof c - 1, &wc);

    /* A multi-byte custom delimiter split anywhere, with near-misses. */
    static const tw_line_receiver_ops end_ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .delimiter = "<END>",
    };
    static const char d[] = "one<END>t<EN>wo<<END><END>x<E";
    want_items wd = WANT(0, "one", "t<EN>wo<", "");
    splits(&end_ops, NULL, d, sizeof d - 1, &wd);

    /* A delimiter whose bytes repeat. */
    static const tw_line_receiver_ops nn_ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .delimiter = "\n\n",
    };
    static const char e[] = "a\n\n\nb\n\n";
    want_items we = WANT(0, "a", "\nb");
    splits(&nn_ops, NULL, e, sizeof e - 1, &we);
}

/* Twisted's test_buffer: LineTester over a script that switches to raw mode
 * and back, recovers from an over-long line, and ends mid-line. */
static void fact01_06_09_line_tester_script(void **state)
{
    static const char script[] = "len 10\n"
                                 "\n"
                                 "0123456789len 5\n"
                                 "\n"
                                 "1234\n"
                                 "len 20\n"
                                 "foo 123\n"
                                 "\n"
                                 "0123456789\n"
                                 "012345678len 0\n"
                                 "foo 5\n"
                                 "\n"
                                 "1234567890123456789012345678901234567890123456789012345678901234"
                                 "567890\n"
                                 "len 1\n"
                                 "\n"
                                 "a";
    want_items w = WANT(0, "len 10", "0123456789", "len 5", "1234\n", "len 20", "foo 123",
                        "0123456789\n012345678", "len 0", "foo 5", "", "67890", "len 1", "a");
    splits(&line_tester_ops, NULL, script, sizeof script - 1, &w);
}

static void fact02_exactly_max_is_allowed(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .max_line_bytes = 8,
    };
    want_items ok = WANT(0, "12345678", "x");
    splits(&ops, NULL, S("12345678\r\nx\r\n"), &ok);
    want_items bad = WANT(1, "x");
    tw_test_log *quiet = tw_test_log_capture(TW_LOG_ERROR);
    splits(&ops, NULL, S("x\r\n123456789\r\n"), &bad);
    tw_test_log_release(quiet);

    /* The default limit, 16384. */
    size_t n = TW_LINE_MAX_LENGTH;
    char *wire = malloc(n + 3);
    memset(wire, 'y', n + 1);
    memcpy(wire + n, "\r\n", 2);
    tw_test_conn *c = conn(&plain_ops);
    assert_int_equal(tw_test_conn_feed(c, wire, n + 2), 0);
    assert_int_equal(T(c)->n, 1);
    assert_int_equal(T(c)->len[0], n);
    tw_test_conn_free(c);
    memset(wire, 'y', n + 1);
    memcpy(wire + n + 1, "\r\n", 2);
    c = conn(&plain_ops);
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    tw_test_conn_feed(c, wire, n + 3);
    assert_int_equal(T(c)->n, 0);
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "line", "line longer than 16384 bytes"));
    assert_true(tw_test_log_contains(log, "line", "192.168.1.1:54321"));
    tw_test_log_release(log);
    tw_test_conn_free(c);
    free(wire);
}

static void fact03_too_long_complete_line(void **state)
{
    /* test_longLineWithDelimiter, test_multipleLongLines: one call with
     * everything, buffer emptied. */
    char x14[15];
    memset(x14, 'x', 14);
    x14[14] = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s\r\n%s", x14, x14);
    tw_test_conn *c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, buf);
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, strlen(buf));
    assert_memory_equal(T(c)->long_line, buf, strlen(buf));
    assert_int_equal(tw_receiver_buffered(tw_test_conn_protocol(c)), 0);
    tw_test_conn_free(c);

    snprintf(buf, sizeof buf, "%s\r\n%s\r\n", x14, x14);
    c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, buf);
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, strlen(buf));
    assert_int_equal(T(c)->n, 0);
    /* The next read starts clean. */
    tw_test_conn_feed_str(c, "ok\r\n");
    assert_int_equal(T(c)->n, 1);
    tw_test_conn_free(c);

    /* The default closes, whatever the chunking (test_maximumLineLength). */
    static const tw_line_receiver_ops small = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .max_line_bytes = 4,
    };
    want_items closed = WANT(1, "ab");
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR); /* keep warnings quiet */
    splits(&small, NULL, S("ab\r\nxxxxx\r\nr\r\n"), &closed);
    tw_test_log_release(log);
}

static void fact04_too_long_unfinished_line(void **state)
{
    /* test_longUnendedLine */
    char x14[15];
    memset(x14, 'x', 14);
    x14[14] = 0;
    tw_test_conn *c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, x14);
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 14);
    tw_test_conn_free(c);

    /* Nothing until MAX + len(delimiter) bytes: 7 bytes wait, 8 do not. */
    c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, "xxxxxxx");
    assert_int_equal(T(c)->exceeded, 0);
    tw_test_conn_feed_str(c, "x");
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 8);
    tw_test_conn_free(c);

    /* test_maximumLineLengthRemaining: exactly MAX + len(delimiter) in one
     * read, and the same bytes held in the buffer (fed while paused). */
    c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, "xxxxxxxx");
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 8);
    tw_test_conn_free(c);
    c = conn(&catcher_ops);
    tw_receiver_pause_producing(tw_test_conn_protocol(c));
    tw_test_conn_feed_str(c, "xxxxxxx");
    tw_test_conn_feed_str(c, "x");
    assert_int_equal(T(c)->exceeded, 0);
    tw_receiver_resume_producing(tw_test_conn_protocol(c));
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 8);
    tw_test_conn_free(c);
    c = conn(&catcher_ops);
    tw_receiver_pause_producing(tw_test_conn_protocol(c));
    tw_test_conn_feed_str(c, "xxxxxxx");
    tw_receiver_resume_producing(tw_test_conn_protocol(c));
    assert_int_equal(T(c)->exceeded, 0);
    tw_test_conn_free(c);

    /* test_notQuiteMaximumLineLengthUnfinished: MAX bytes and the first
     * byte of the delimiter are tolerated... */
    c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, "xxxxxx\r");
    assert_int_equal(T(c)->exceeded, 0);
    assert_false(tw_test_conn_disconnecting(c));
    /* ...and test_maximumLineLengthPartialDelimiter: its last byte ends
     * the line normally. */
    tw_test_conn_feed_str(c, "\nxxx");
    assert_int_equal(T(c)->exceeded, 0);
    assert_int_equal(T(c)->n, 1);
    assert_int_equal(T(c)->len[0], 6);
    tw_test_conn_free(c);

    /* Same, through every split (default handler: never closes here). */
    static const tw_line_receiver_ops four = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .max_line_bytes = 4,
    };
    want_items w = WANT(0, "xxxx", "xxx");
    splits(&four, NULL, S("xxxx\r\nxxx\r\n"), &w);
}

static void fact05_short_line_then_long_tail(void **state)
{
    char buf[32];
    snprintf(buf, sizeof buf, "x\r\n%s", "xxxxxxxxxxxxxx");
    tw_test_conn *c = conn(&catcher_ops);
    tw_test_conn_feed_str(c, buf);
    assert_int_equal(T(c)->n, 1);
    assert_int_equal(T(c)->len[0], 1);
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 14);
    tw_test_conn_free(c);

    /* With the default handler the outcome does not depend on chunking:
     * "x" delivered, connection closed. */
    static const tw_line_receiver_ops six = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .max_line_bytes = 6,
    };
    want_items w = WANT(1, "x");
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    splits(&six, NULL, buf, strlen(buf), &w);
    tw_test_log_release(log);
}

static int quit_line(tw_protocol *p, const char *line, size_t n)
{
    add((tester *)p, line, n);
    if (is(line, n, "quit"))
        tw_transport_lose_connection(p->transport);
    return 0;
}

static void fact07_no_lines_after_close(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = quit_line,
    };
    want_items w = WANT(1, "a", "quit");
    splits(&ops, NULL, S("a\r\nquit\r\nb\r\nc"), &w);
}

static void fact08_return_value_stops_the_read(void **state)
{
    tw_test_conn *c = conn(&plain_ops);
    T(c)->return_on = 1;
    tw_test_conn_feed_str(c, "a\r\nret\r\nb\r\nc");
    expect_items(T(c), ITEMS("a", "ret"), 2, "first read");
    assert_int_equal(tw_receiver_buffered(tw_test_conn_protocol(c)), 4);
    tw_test_conn_feed_str(c, "\r\n");
    expect_items(T(c), ITEMS("a", "ret", "b", "c"), 4, "second read");
    tw_test_conn_free(c);

    /* raw_data_received's return value (test_rawDataError). */
    c = conn(&plain_ops);
    tw_line_receiver_set_raw_mode(tw_test_conn_protocol(c));
    T(c)->return_on = 1;
    tw_test_conn_feed_str(c, "data");
    assert_int_equal(T(c)->raw_calls, 1);
    tw_test_conn_free(c);
}

/* Raw mode: "RAW" switches; raw bytes up to '!' are data, the rest goes
 * back to line mode. */
static int raw_switch_line(tw_protocol *p, const char *line, size_t n)
{
    add((tester *)p, line, n);
    if (is(line, n, "RAW")) {
        tw_line_receiver_set_raw_mode(p);
        add((tester *)p, "", 0);
    }
    return 0;
}

static int raw_until_bang(tw_protocol *p, const char *data, size_t n)
{
    tester *t = (tester *)p;
    t->raw_calls++;
    const char *bang = memchr(data, '!', n);
    size_t take = bang ? (size_t)(bang - data) : n;
    append_last(t, data, take);
    if (bang)
        tw_line_receiver_set_line_mode(p, bang + 1, n - take - 1);
    return 0;
}

static const tw_line_receiver_ops raw_switch_ops = {
    .base = TW_LINE_RECEIVER_BASE(tester),
    .connection_made = t_made,
    .destroy = t_destroy,
    .line_received = raw_switch_line,
    .raw_data_received = raw_until_bang,
};

static void fact09_raw_mode(void **state)
{
    static const char wire[] = "a\r\nRAW\r\nxy\r\nz!b\r\nRAW\r\n!c\r\nRAW\r\n12";
    tw_test_conn *c = conn(&raw_switch_ops);
    tw_test_conn_feed_str(c, wire);
    /* The rest of the buffer went to raw mode in one call. */
    assert_int_equal(T(c)->raw_calls, 3);
    assert_false(tw_line_receiver_line_mode(tw_test_conn_protocol(c)));
    /* Later reads pass through as they arrive. */
    tw_test_conn_feed_str(c, "34");
    tw_test_conn_feed_str(c, "5!d\r\n");
    assert_int_equal(T(c)->raw_calls, 5);
    expect_items(T(c), ITEMS("a", "RAW", "xy\r\nz", "b", "RAW", "", "c", "RAW", "12345", "d"), 10,
                 "raw");
    assert_true(tw_line_receiver_line_mode(tw_test_conn_protocol(c)));
    tw_test_conn_free(c);

    want_items w = WANT(0, "a", "RAW", "xy\r\nz", "b", "RAW", "", "c", "RAW", "12345", "d");
    static const char all[] = "a\r\nRAW\r\nxy\r\nz!b\r\nRAW\r\n!c\r\nRAW\r\n12345!d\r\n";
    splits(&raw_switch_ops, NULL, all, sizeof all - 1, &w);
}

/* test_stackRecursion: a flip on every line of one huge read. */
static int flip_line(tw_protocol *p, const char *line, size_t n)
{
    add((tester *)p, line, n);
    tw_line_receiver_set_raw_mode(p);
    return 0;
}

static int flip_raw(tw_protocol *p, const char *data, size_t n)
{
    tw_line_receiver_set_line_mode(p, data + 1, n - 1);
    return 0;
}

static void fact10_no_recursion(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = flip_line,
        .raw_data_received = flip_raw,
        .delimiter = "\n",
    };
    enum { FLIPS = 20000 - 1 };
    size_t len = 3 * FLIPS;
    char *wire = malloc(len);
    for (size_t i = 0; i < FLIPS; i++)
        memcpy(wire + 3 * i, "x\nx", 3);
    tw_test_conn *c = conn(&ops);
    tw_test_conn_feed(c, wire, len);
    assert_int_equal(T(c)->n, FLIPS);
    for (int i = 0; i < T(c)->n; i++)
        assert_int_equal(T(c)->len[i], 1);
    tw_test_conn_free(c);

    /* Same with the input held in the buffer (fed while paused). */
    c = conn(&ops);
    tw_receiver_pause_producing(tw_test_conn_protocol(c));
    tw_test_conn_feed(c, wire, len);
    assert_int_equal(T(c)->n, 0);
    tw_string_transport_set_lenient(tw_test_conn_transport(c), true);
    tw_receiver_resume_producing(tw_test_conn_protocol(c));
    assert_int_equal(T(c)->n, FLIPS);
    tw_test_conn_free(c);
    free(wire);
}

static int clearing_line(tw_protocol *p, const char *line, size_t n)
{
    tester *t = (tester *)p;
    add(t, line, n);
    size_t rest_len;
    const char *rest = tw_line_receiver_clear_line_buffer(p, &rest_len);
    free(t->long_line);
    t->long_line = malloc(rest_len + 1);
    if (rest_len)
        memcpy(t->long_line, rest, rest_len);
    t->long_len = rest_len;
    /* The line is still readable after clearing. */
    assert_true(is(line, n, "foo") || is(line, n, "quux"));
    return 0;
}

static void fact11_clear_line_buffer(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = clearing_line,
    };
    tw_test_conn *c = conn(&ops);
    tw_test_conn_feed_str(c, "foo\r\nbar\r\nbaz");
    expect_items(T(c), ITEMS("foo"), 1, "first");
    assert_int_equal(T(c)->long_len, 8);
    assert_memory_equal(T(c)->long_line, "bar\r\nbaz", 8);
    tw_test_conn_feed_str(c, "quux\r\n");
    expect_items(T(c), ITEMS("foo", "quux"), 2, "second");
    assert_int_equal(T(c)->long_len, 0);
    tw_test_conn_free(c);

    /* Outside hooks: what a paused receiver kept. */
    c = conn(&plain_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_receiver_pause_producing(p);
    tw_test_conn_feed_str(c, "kept\r\nmore");
    size_t n;
    const char *rest = tw_line_receiver_clear_line_buffer(p, &n);
    assert_int_equal(n, 10);
    assert_memory_equal(rest, "kept\r\nmore", 10);
    assert_null(tw_line_receiver_clear_line_buffer(p, &n));
    assert_int_equal(n, 0);
    tw_test_conn_free(c);
}

/* Twisted's ConsumingProtocol: writes each line and pauses. */
static int consuming_line(tw_protocol *p, const char *line, size_t n)
{
    add((tester *)p, line, n);
    tw_transport_write(p->transport, line, n);
    tw_transport_write(p->transport, "|", 1);
    tw_receiver_pause_producing(p);
    return 0;
}

static tw_test_producer_state tstate(tw_test_conn *c)
{
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    return info.producer_state;
}

static void fact12_pause_inside_line_received(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = consuming_line,
    };
    tw_test_conn *c = conn(&ops);
    tw_protocol *p = tw_test_conn_protocol(c);

    tw_test_conn_feed_str(c, "hello, ");
    assert_string_equal(tw_test_conn_written(c, NULL), "");
    assert_int_equal(tstate(c), TW_TEST_PRODUCING);
    assert_false(tw_receiver_paused(p));

    tw_test_conn_feed_str(c, "world\r\n");
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|");
    assert_int_equal(tstate(c), TW_TEST_PAUSED);
    assert_true(tw_receiver_paused(p));

    tw_receiver_resume_producing(p);
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|");
    assert_int_equal(tstate(c), TW_TEST_PRODUCING);
    assert_false(tw_receiver_paused(p));

    tw_test_conn_feed_str(c, "hello\r\nworld\r\n");
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|hello|");
    assert_true(tw_receiver_paused(p));
    assert_int_equal(tstate(c), TW_TEST_PAUSED);

    tw_receiver_resume_producing(p);
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|hello|world|");
    assert_true(tw_receiver_paused(p));
    assert_int_equal(tstate(c), TW_TEST_PAUSED);

    tw_test_conn_feed_str(c, "goodbye\r\n");
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|hello|world|");
    assert_true(tw_receiver_paused(p));

    tw_receiver_resume_producing(p);
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|hello|world|goodbye|");
    assert_true(tw_receiver_paused(p));
    assert_int_equal(tstate(c), TW_TEST_PAUSED);

    tw_receiver_resume_producing(p);
    assert_string_equal(tw_test_conn_written(c, NULL), "hello, world|hello|world|goodbye|");
    assert_false(tw_receiver_paused(p));
    assert_int_equal(tstate(c), TW_TEST_PRODUCING);

    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.misuse, 0);
    tw_test_conn_free(c);
}

/* test_pausing / test_rawPausing: check after the feed, then after the
 * clock moves. */
typedef struct clock_case {
    tw_reactor *r;
    const char *const *before;
    int n_before;
    const char *const *after;
    int n_after;
} clock_case;

static void check_pause_clock(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    clock_case *k = arg;
    expect_items(T(c), k->before, k->n_before, how->desc);
    tw_clock_advance(k->r, 0);
    expect_items(T(c), k->after, k->n_after, how->desc);
}

static void fact13_pause_with_a_clock(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&line_tester_ops), .reactor = r };

    static const char pause_buf[] = "twiddle1\ntwiddle2\npause\ntwiddle3\n";
    clock_case k1 = { r, ITEMS("twiddle1", "twiddle2", "pause"), 3,
                      ITEMS("twiddle1", "twiddle2", "pause", "twiddle3"), 4 };
    assert_true(tw_test_feed_splits(&o, pause_buf, sizeof pause_buf - 1, check_pause_clock, &k1) >
                0);

    static const char rawpause_buf[] = "twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n";
    clock_case k2 = { r, ITEMS("twiddle1", "twiddle2", "len 5", "rawpause", ""), 5,
                      ITEMS("twiddle1", "twiddle2", "len 5", "rawpause", "12345", "twiddle3"), 6 };
    assert_true(
        tw_test_feed_splits(&o, rawpause_buf, sizeof rawpause_buf - 1, check_pause_clock, &k2) > 0);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void fact14_stop_producing(void **state)
{
    static const char stop_buf[] = "twiddle1\ntwiddle2\nstop\nmore\nstuff\n";
    want_items w = WANT(1, "twiddle1", "twiddle2", "stop");
    splits(&line_tester_ops, NULL, stop_buf, sizeof stop_buf - 1, &w);

    /* Lines already buffered are never delivered either. */
    tw_test_conn *c = conn(&line_tester_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_receiver_pause_producing(p);
    tw_test_conn_feed_str(c, "a\nb\n");
    tw_receiver_stop_producing(p);
    assert_int_equal(tw_receiver_buffered(p), 0);
    tw_receiver_resume_producing(p);
    assert_int_equal(T(c)->n, 0);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.producer_state, TW_TEST_STOPPED);
    tw_test_conn_free(c);
}

static void fact15_protocol_as_producer(void **state)
{
    static const char wire[] = "produce\nhello world\nunproduce\ngoodbye\n";
    want_items w = WANT(0, "produce", "hello world", "unproduce", "goodbye");
    splits(&line_tester_ops, NULL, wire, sizeof wire - 1, &w);

    /* Over the loopback, whose transport resumes a pull producer at once
     * (from inside line_received). */
    tw_test_pump_options o = { .server_protocol = TW_PROTOCOL_OF(&line_tester_ops),
                               .client_protocol = TW_PROTOCOL_OF(&plain_ops) };
    tw_test_pump *pump = tw_test_pump_new(&o);
    tw_transport_write(tw_test_pump_client(pump)->transport, wire, sizeof wire - 1);
    tw_test_pump_flush(pump);
    expect_items((tester *)tw_test_pump_server(pump),
                 ITEMS("produce", "hello world", "unproduce", "goodbye"), 4, "pump");
    tw_test_pump_free(pump);
}

static void fact16_send_line_and_missing_hooks(void **state)
{
    tw_test_conn *c = conn(&plain_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    assert_int_equal(tw_line_receiver_send_line(p, "hello", 5), 0);
    assert_int_equal(tw_line_receiver_send_line(p, "", 0), 0);
    char big[1000];
    memset(big, 'b', sizeof big);
    assert_int_equal(tw_line_receiver_send_line(p, big, sizeof big), 0);
    size_t len;
    const char *out = tw_test_conn_written(c, &len);
    assert_int_equal(len, 7 + 2 + sizeof big + 2);
    assert_memory_equal(out, "hello\r\n\r\n", 9);
    assert_memory_equal(out + 9 + sizeof big, "\r\n", 2);
    assert_int_equal(tw_line_receiver_set_delimiter(p, "\n", 1), 0);
    tw_test_conn_clear(c);
    tw_line_receiver_send_line(p, "x", 1);
    assert_string_equal(tw_test_conn_written(c, NULL), "x\n");
    assert_int_equal(tw_line_receiver_set_delimiter(p, "", 0), TW_EINVAL);
    assert_int_equal(tw_line_receiver_set_delimiter(p, "0123456789abcdef", 16), TW_EINVAL);
    tw_test_conn_free(c);

    /* No line_received: logged, connection closed (NotImplementedError). */
    static const tw_line_receiver_ops bare = { .base = TW_LINE_RECEIVER_BASE(tw_line_receiver) };
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    c = conn(&bare);
    tw_test_conn_feed_str(c, "a\r\nb\r\n");
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "line", "no line_received hook"));
    tw_test_conn_free(c);
    c = conn(&bare);
    tw_line_receiver_set_raw_mode(tw_test_conn_protocol(c));
    tw_test_conn_feed_str(c, "raw");
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "line", "no raw_data_received hook"));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

/* Setting the delimiter inside line_received takes effect for the rest of
 * the same read. */
static int switch_delim(tw_protocol *p, const char *line, size_t n)
{
    add((tester *)p, line, n);
    if (is(line, n, "NUL"))
        tw_line_receiver_set_delimiter(p, "", 1);
    return 0;
}

static void delimiter_change_mid_read(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = switch_delim,
    };
    static const char wire[] = "a\r\nNUL\r\nb\r\n\0c\0";
    want_items w = WANT(0, "a", "NUL", "b\r\n", "c");
    splits(&ops, NULL, wire, sizeof wire - 1, &w);
}

/* The zero-copy claim: a read of complete lines is delivered from the
 * read's own memory and leaves nothing allocated. */
typedef struct ptr_rec {
    tw_line_receiver lr;
    const char *first;
} ptr_rec;

static int ptr_line(tw_protocol *p, const char *line, size_t n)
{
    ptr_rec *r = (ptr_rec *)p;
    if (!r->first)
        r->first = line;
    return 0;
}

static void complete_lines_are_not_copied(void **state)
{
    static const tw_line_receiver_ops ops = {
        .base = TW_LINE_RECEIVER_BASE(ptr_rec),
        .line_received = ptr_line,
    };
    static const char wire[] = "one\r\ntwo\r\nthr";
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_test_conn_feed(c, wire, sizeof wire - 1);
    assert_ptr_equal(((ptr_rec *)p)->first, wire);
    assert_int_equal(tw_receiver_buffered(p), 3); /* only the tail kept */
    tw_test_conn_feed_str(c, "ee\r\n");
    assert_int_equal(tw_receiver_buffered(p), 0);
    assert_null(((tw_receiver *)p)->buf); /* freed once empty */
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ 3.2 LineOnly */

static const tw_line_receiver_ops line_only_ops = {
    .base = TW_LINE_ONLY_RECEIVER_BASE(tester),
    .connection_made = t_made,
    .destroy = t_destroy,
    .line_received = quit_line,
    .line_length_exceeded = catch_long,
    .delimiter = "\n",
    .max_line_bytes = 64,
};

static void fact17_line_only_buffer(void **state)
{
    static const char wire[] = "foo\n    bleakness\n    desolation\n    plastic forks\n";
    want_items w = WANT(0, "foo", "    bleakness", "    desolation", "    plastic forks");
    splits(&line_only_ops, NULL, wire, sizeof wire - 1, &w);

    want_items q = WANT(1, "a", "quit");
    splits(&line_only_ops, NULL, S("a\nquit\nb\nc\n"), &q);

    tw_test_conn *c = conn(&line_only_ops);
    assert_int_equal(tw_line_receiver_set_raw_mode(tw_test_conn_protocol(c)), TW_EINVAL);
    tw_test_conn_free(c);
}

static void fact18_line_only_limits(void **state)
{
    static const tw_line_receiver_ops five = {
        .base = TW_LINE_ONLY_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .line_length_exceeded = catch_long,
        .max_line_bytes = 5,
    };
    /* Lines before the long one are delivered; it alone is passed on. */
    tw_test_conn *c = conn(&five);
    tw_test_conn_feed_str(c, "ab\r\n123456\r\nlater\r\n");
    expect_items(T(c), ITEMS("ab"), 1, "long");
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 6);
    assert_memory_equal(T(c)->long_line, "123456", 6);
    tw_test_conn_free(c);

    /* An unfinished remainder: 5 bytes pass, 6 fail. */
    c = conn(&five);
    tw_test_conn_feed_str(c, "12345");
    assert_int_equal(T(c)->exceeded, 0);
    tw_test_conn_free(c);
    c = conn(&five);
    tw_test_conn_feed_str(c, "123456");
    assert_int_equal(T(c)->exceeded, 1);
    assert_int_equal(T(c)->long_len, 6);
    tw_test_conn_free(c);

    /* The default closes (test_greaterThanMaximumLineLength), any split. */
    static const tw_line_receiver_ops dflt = {
        .base = TW_LINE_ONLY_RECEIVER_BASE(tester),
        .connection_made = t_made,
        .destroy = t_destroy,
        .line_received = plain_line,
        .max_line_bytes = 5,
    };
    want_items w = WANT(1, "ab");
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    splits(&dflt, NULL, S("ab\r\nxxxxxxxx\r\nr"), &w);
    tw_test_log_release(log);
}

static void fact19_line_only_send_line_is_writev(void **state)
{
    tw_test_conn *c = conn(&line_only_ops);
    assert_int_equal(tw_line_receiver_send_line(tw_test_conn_protocol(c), "hi", 2), 0);
    assert_string_equal(tw_test_conn_written(c, NULL), "hi\n");
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.writev_calls, 1);
    assert_int_equal(info.last_iovcnt, 2);
    assert_int_equal(info.write_calls, 0);
    tw_test_conn_free(c);
}

/* ------------------------------------------------------------ lifecycle */

static void eof_and_no_transport(void **state)
{
    tw_test_conn *c = conn(&plain_ops);
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_true(tw_test_conn_disconnecting(c)); /* default: lose the connection */
    tw_test_conn_lose(c, 0);
    assert_int_equal(tw_line_receiver_send_line(tw_test_conn_protocol(c), "x", 1), TW_ECLOSED);
    tw_test_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact01_framing),
        cmocka_unit_test(fact01_06_09_line_tester_script),
        cmocka_unit_test(fact02_exactly_max_is_allowed),
        cmocka_unit_test(fact03_too_long_complete_line),
        cmocka_unit_test(fact04_too_long_unfinished_line),
        cmocka_unit_test(fact05_short_line_then_long_tail),
        cmocka_unit_test(fact07_no_lines_after_close),
        cmocka_unit_test(fact08_return_value_stops_the_read),
        cmocka_unit_test(fact09_raw_mode),
        cmocka_unit_test(fact10_no_recursion),
        cmocka_unit_test(fact11_clear_line_buffer),
        cmocka_unit_test(fact12_pause_inside_line_received),
        cmocka_unit_test(fact13_pause_with_a_clock),
        cmocka_unit_test(fact14_stop_producing),
        cmocka_unit_test(fact15_protocol_as_producer),
        cmocka_unit_test(fact16_send_line_and_missing_hooks),
        cmocka_unit_test(delimiter_change_mid_read),
        cmocka_unit_test(complete_lines_are_not_copied),
        cmocka_unit_test(fact17_line_only_buffer),
        cmocka_unit_test(fact18_line_only_limits),
        cmocka_unit_test(fact19_line_only_send_line_is_writev),
        cmocka_unit_test(eof_and_no_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
