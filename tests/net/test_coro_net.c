/* ctest: label=integration timeout=180 switches=all */
/* Streams for coroutines (twirl/coro_net.h). The framing against the string
 * transport and fake clock: read_until, read_exactly and read_some fed
 * every split of their input, the end of the stream in the middle of a
 * line, max exceeded, lent bytes that outlive a buffer's growth, one reader
 * at a time, cancellation and timeouts in the middle of a read (the stream
 * stays usable, nothing is consumed), tw_coro_connect through the memory
 * reactor (and cancelled while connecting); flow control both ways through
 * the in-memory pump; then real loopback sockets on port 0: a coroutine
 * client against a coroutine server for 1,000 line round trips, a refused
 * connection, a writer outrunning a slow reader, and a reactor freed under
 * suspended handlers. Every test ends with no coroutine and no connection
 * left. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "async/coro_internal.h"
#include "tt.h"
#include "twirl/coro_net.h"
#include "twirl/testing.h"

/* ------------------------------------------------------------ common */

/* What a handler saw, for the test to check. */
typedef struct rec {
    int started, ended;
    int codes[8]; /* the failures' codes, in order */
    int ncodes;
    char text[8][128]; /* and their messages */
    size_t buffered_at_fail;
    char got[4096]; /* bytes read, concatenated */
    size_t gotlen;
    tw_coro_stream *s;
    tw_deferred *gate; /* a handler that waits on it stays alive */
    int end_code;
} rec;

static void rec_fail(rec *r, int code, tw_failure *f)
{
    if (r->ncodes < 8) {
        snprintf(r->text[r->ncodes], sizeof r->text[0], "%s", f ? tw_failure_message(f) : "");
        r->codes[r->ncodes++] = code;
    }
    tw_failure_unref(f);
}

static void rec_bytes(rec *r, tw_coro_bytes b)
{
    assert_true(r->gotlen + b.len < sizeof r->got);
    memcpy(r->got + r->gotlen, b.data, b.len);
    r->gotlen += b.len;
    r->got[r->gotlen] = 0;
}

static tw_test_conn *conn_for(tw_factory *f)
{
    tw_test_conn *c = tw_test_conn_new(f);
    assert_non_null(c);
    return c;
}

/* Nothing left behind: no coroutine of r alive. */
static void all_done(tw_reactor *r)
{
    assert_int_equal(tw__coro_live_count(r), 0);
}

/* ------------------------------------------------------------ every split */

/* A little protocol using all three reads: a line, a 4-digit length, that
 * many bytes, a closing line. Each answer is written back. */
static tw_result mixed(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    tw_coro_bytes b;
    tw_failure *err = NULL;
    char out[256];
    int rc;
    if ((rc = tw_coro_read_until(s, "\r\n", 64, &b, &err)) < 0)
        goto done;
    snprintf(out, sizeof out, "line[%.*s]\n", (int)(b.len - 2), b.data);
    tw_coro_write_str(s, out, NULL);
    if ((rc = tw_coro_read_exactly(s, 4, &b, &err)) < 0)
        goto done;
    int n = atoi((char[5]){ b.data[0], b.data[1], b.data[2], b.data[3], 0 });
    if ((rc = tw_coro_read_exactly(s, (size_t)n, &b, &err)) < 0)
        goto done;
    snprintf(out, sizeof out, "body[%.*s]\n", (int)b.len, b.data);
    tw_coro_write_str(s, out, NULL);
    if ((rc = tw_coro_read_until(s, "\r\n", 64, &b, &err)) < 0)
        goto done;
    snprintf(out, sizeof out, "line[%.*s]\n", (int)(b.len - 2), b.data);
    tw_coro_write_str(s, out, NULL);
    /* Then whatever comes, until the end. */
    while ((rc = tw_coro_read_some(s, 3, &b, &err)) == 0)
        tw_coro_write(s, b.data, b.len, NULL);
done:
    r->end_code = rc;
    tw_failure_unref(err);
    r->ended++;
    return TW_RESULT_NONE;
}

static void check_mixed(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const char *want = arg;
    const char *got = tw_test_conn_written(c, NULL);
    if (strcmp(got, want) != 0)
        fail_msg("%s: wrote \"%s\", wanted \"%s\"", how->desc, got, want);
    assert_false(tw_test_conn_disconnecting(c));
}

static void every_split(void **state)
{
    static const char wire[] = "HELLO there\r\n0005ab\r\ndQUIT\r\nrest of it";
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, mixed, &rc, NULL);
    assert_non_null(f);
    tw_test_conn_options o = { .factory = f, .reactor = r };
    int runs = tw_test_feed_splits(&o, wire, sizeof wire - 1, check_mixed,
                                   "line[HELLO there]\nbody[ab\r\nd]\nline[QUIT]\nrest of it");
    assert_true(runs > (int)sizeof wire);
    /* Each run's connection was freed: its handler saw a clean end. */
    assert_int_equal(rc.started, runs);
    assert_int_equal(rc.ended, runs);
    assert_int_equal(rc.end_code, TW_ECONNECTION_DONE);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* A delimiter longer than one byte and lines of exactly max bytes, or one
 * byte too many, cut everywhere. */
static tw_result lines_max8(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    *r = (rec){ .started = 1 }; /* the previous run's handler ended before */
    tw_coro_bytes b;
    tw_failure *err;
    int rc;
    while ((rc = tw_coro_read_until(s, "--", 8, &b, &err)) == 0) {
        rec_bytes(r, b);
        rec_bytes(r, (tw_coro_bytes){ "|", 1 });
    }
    r->buffered_at_fail = tw_coro_stream_buffered(s);
    rec_fail(r, rc, err);
    if (rc == TW_ELIMIT && tw_coro_read_some(s, 0, &b, NULL) == 0)
        rec_bytes(r, b); /* nothing was lost */
    r->ended++;
    return TW_RESULT_NONE;
}

typedef struct split_case {
    rec *r;
    const char *want;
    int code; /* 0: still reading when checked */
} split_case;

static void check_lines(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    split_case *sc = arg;
    if (strncmp(sc->r->got, sc->want, strlen(sc->want)) != 0)
        fail_msg("%s: read \"%s\", wanted \"%s...\"", how->desc, sc->r->got, sc->want);
    assert_int_equal(sc->r->ncodes ? sc->r->codes[0] : 0, sc->code);
}

static void max_and_multibyte_delimiter(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, lines_max8, &rc, NULL);
    tw_test_conn_options o = { .factory = f, .reactor = r };

    /* Lines of 8 bytes, delimiter included, fit; "-" alone is no delimiter. */
    static const char fits[] = "abc--12-4-6--x--";
    split_case ok = { &rc, "abc--|12-4-6--|x--|", 0 };
    assert_true(tw_test_feed_splits(&o, fits, sizeof fits - 1, check_lines, &ok) > 0);

    /* Nine bytes before the delimiter ends: refused however it arrives,
     * and the bytes are still there to read afterwards. */
    static const char over[] = "ok--123456789--";
    split_case big = { &rc, "ok--|1234567", TW_ELIMIT };
    assert_true(tw_test_feed_splits(&o, over, sizeof over - 1, check_lines, &big) > 0);
    all_done(r);

    /* In one piece: failed at 8 buffered bytes' worth, all 11 kept. */
    tw_test_conn *c = conn_for(f);
    assert_int_equal(tw_test_conn_feed_str(c, "123456789--"), 0);
    assert_int_equal(rc.codes[0], TW_ELIMIT);
    assert_non_null(strstr(rc.text[0], "no \"--\" within 8 bytes"));
    assert_int_equal(rc.buffered_at_fail, 11);
    assert_string_equal(rc.got, "123456789--");
    tw_test_conn_free(c);
    tw_coro_factory_free(f);
    all_done(r);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ the end */

static tw_result eof_reader(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    tw_coro_bytes b;
    tw_failure *err;
    int rc = tw_coro_read_until(s, "\n", 0, &b, &err);
    r->buffered_at_fail = tw_coro_stream_buffered(s);
    rec_fail(r, rc, err);
    rc = tw_coro_read_exactly(s, 10, &b, &err);
    rec_fail(r, rc, err);
    while ((rc = tw_coro_read_some(s, 0, &b, &err)) == 0)
        rec_bytes(r, b);
    rec_fail(r, rc, err);
    /* Half-closed: writing still works. */
    rc = tw_coro_write_str(s, "bye\n", &err);
    rec_fail(r, rc, err);
    r->ended++;
    return TW_RESULT_NONE;
}

static void eof_in_the_middle_of_a_line(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, eof_reader, &rc, NULL);
    tw_test_conn *c = conn_for(f);
    assert_int_equal(tw_test_conn_feed_str(c, "abc"), 0);
    assert_int_equal(rc.ncodes, 0); /* waiting for the rest of the line */
    assert_int_equal(tw_string_transport_deliver_eof(tw_test_conn_transport(c)), 0);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.ncodes, 4);
    /* The line failed cleanly and said what it kept... */
    assert_int_equal(rc.codes[0], TW_ECONNECTION_DONE);
    assert_non_null(strstr(rc.text[0], "read_until: the connection was closed first; 3 byte(s)"));
    assert_int_equal(rc.buffered_at_fail, 3);
    /* ...so did read_exactly, and read_some handed the 3 bytes over. */
    assert_int_equal(rc.codes[1], TW_ECONNECTION_DONE);
    assert_string_equal(rc.got, "abc");
    assert_int_equal(rc.codes[2], TW_ECONNECTION_DONE);
    assert_int_equal(rc.codes[3], 0);
    /* Then the handler returned: the stream was closed after "bye". */
    assert_string_equal(tw_test_conn_written(c, NULL), "bye\n");
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

static tw_result line_reader(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    tw_coro_bytes b;
    tw_failure *err;
    int rc;
    while ((rc = tw_coro_read_until(s, "\n", 0, &b, &err)) == 0)
        rec_bytes(r, b);
    rec_fail(r, rc, err);
    /* After the connection ended, writes fail with the same reason. */
    rc = tw_coro_write_str(s, "late\n", &err);
    rec_fail(r, rc, err);
    r->ended++;
    return TW_RESULT_NONE;
}

static void connection_lost_in_the_middle_of_a_line(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, line_reader, &rc, NULL);
    tw_test_conn *c = conn_for(f);
    assert_int_equal(tw_test_conn_feed_str(c, "one\ntw"), 0);
    assert_string_equal(rc.got, "one\n");
    assert_int_equal(tw_test_conn_lose(c, -ECONNRESET), 0);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.codes[0], TW_ECONNECTION_LOST);
    assert_non_null(strstr(rc.text[0], "was lost first; 2 byte(s)"));
    assert_int_equal(rc.codes[1], TW_ECONNECTION_LOST);
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ lending */

static tw_result lender(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    tw_coro_bytes first, b;
    r->started++;
    r->s = s;
    assert_int_equal(tw_coro_read_until(s, "\n", 0, &first, NULL), 0);
    /* Hold on to `first` while far more arrives than the buffer holds. */
    tw_result w = tw_await(tw_deferred_ref(r->gate));
    tw_result_free(&w);
    assert_int_equal(first.len, 6);
    assert_memory_equal(first.data, "first\n", 6);
    size_t total = 0;
    while (tw_coro_read_some(s, 0, &b, NULL) == 0) {
        for (size_t i = 0; i < b.len; i++)
            assert_int_equal(b.data[i], (char)('a' + (total + i) % 26));
        total += b.len;
    }
    r->gotlen = total;
    r->ended++;
    return TW_RESULT_NONE;
}

static void lent_bytes_outlive_growth(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { .gate = tw_deferred_new(NULL, NULL) };
    tw_factory *f = tw_coro_factory_new(r, lender, &rc, NULL);
    tw_test_conn *c = conn_for(f);
    /* The line and a little more arrive together: the rest waits. */
    char *big = malloc(300000);
    for (size_t i = 0; i < 300000; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(tw_test_conn_feed_str(c, "first\n"), 0);
    for (size_t off = 0; off < 300000; off += 7000) /* grows the buffer several times */
        assert_int_equal(tw_test_conn_feed(c, big + off, off + 7000 < 300000 ? 7000 : 300000 - off),
                         0);
    assert_int_equal(tw_coro_stream_buffered(rc.s), 300000);
    /* Reading paused at the high-water mark, as no read waits. */
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.producer_state, TW_TEST_PAUSED);
    tw_deferred_callback(rc.gate, TW_VALUE_NONE);
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_int_equal(info.producer_state, TW_TEST_PRODUCING);
    tw_test_conn_lose(c, 0);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.gotlen, 300000);
    free(big);
    tw_deferred_unref(rc.gate);
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ cancelling */

/* The handler parks; test coroutines read on its stream. */
static tw_result parked(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    r->s = s;
    tw_result w = tw_await(tw_deferred_ref(r->gate));
    tw_result_free(&w);
    r->ended++;
    return TW_RESULT_NONE;
}

typedef struct reader {
    tw_coro_stream *s;
    int code;
    char got[64];
    bool done;
} reader;

static tw_result read_line(void *arg)
{
    reader *rd = arg;
    tw_coro_bytes b;
    tw_failure *err = NULL;
    rd->code = tw_coro_read_until(rd->s, "\n", 0, &b, &err);
    if (rd->code == 0)
        snprintf(rd->got, sizeof rd->got, "%.*s", (int)b.len, b.data);
    rd->done = true;
    return err ? tw_err(err) : TW_RESULT_NONE;
}

static tw_result catch_code(tw_result *in, void *arg)
{
    *(int *)arg = in->failure ? tw_failure_code(in->failure) : 0;
    return TW_RESULT_NONE;
}

static void cancel_in_the_middle_of_a_read(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { .gate = tw_deferred_new(NULL, NULL) };
    tw_factory *f = tw_coro_factory_new(r, parked, &rc, NULL);
    tw_test_conn *c = conn_for(f);
    assert_non_null(rc.s);

    reader one = { .s = rc.s };
    tw_deferred *d = tw_coro_spawn(r, read_line, &one, NULL);
    assert_int_equal(tw_test_conn_feed_str(c, "hel"), 0);
    assert_false(one.done);
    /* A second reader while one waits: refused at once. */
    reader two = { .s = rc.s };
    tw_deferred *d2 = tw_coro_spawn(r, read_line, &two, NULL);
    assert_true(two.done);
    assert_int_equal(two.code, TW_EBUSY);
    int code = 1;
    tw_deferred_add_both(d2, catch_code, &code);
    assert_int_equal(code, TW_EBUSY);
    tw_deferred_unref(d2);

    tw_deferred_cancel(d);
    assert_true(one.done);
    assert_int_equal(one.code, TW_ECANCELED);
    code = 1;
    tw_deferred_add_both(d, catch_code, &code);
    assert_int_equal(code, TW_ECANCELED);
    tw_deferred_unref(d);
    /* Nothing consumed, nothing closed. */
    assert_int_equal(tw_coro_stream_buffered(rc.s), 3);
    assert_false(tw_test_conn_disconnecting(c));
    assert_int_equal(tw_test_conn_feed_str(c, "lo\nnext"), 0);

    reader three = { .s = rc.s };
    tw_deferred_unref(tw_coro_spawn(r, read_line, &three, NULL));
    assert_true(three.done);
    assert_int_equal(three.code, 0);
    assert_string_equal(three.got, "hello\n");

    /* A timeout on the coroutine's deferred is a cancel too. */
    reader four = { .s = rc.s };
    d = tw_coro_spawn(r, read_line, &four, NULL);
    assert_int_equal(tw_deferred_add_timeout(d, 5.0, r), 0);
    tw_clock_advance(r, 4.9);
    assert_false(four.done);
    tw_clock_advance(r, 0.2);
    assert_true(four.done);
    assert_int_equal(four.code, TW_ECANCELED);
    code = 1;
    tw_deferred_add_both(d, catch_code, &code);
    assert_int_equal(code, TW_ETIMEDOUT);
    tw_deferred_unref(d);
    assert_int_equal(tw_coro_stream_buffered(rc.s), 4); /* "next" */

    tw_deferred_callback(rc.gate, TW_VALUE_NONE);
    assert_int_equal(rc.ended, 1);
    assert_true(tw_test_conn_disconnecting(c)); /* the handler's end closed it */
    tw_deferred_unref(rc.gate);
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ closing */

static tw_result closer(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    tw_failure *err;
    r->started++;
    tw_coro_write_str(s, "last words\n", NULL);
    int rc = tw_coro_close(s, &err); /* lent: waits, but s stays valid */
    rec_fail(r, rc, err);
    tw_coro_bytes b;
    rc = tw_coro_read_some(s, 0, &b, &err);
    rec_fail(r, rc, err);
    rc = tw_coro_write_str(s, "more", &err);
    rec_fail(r, rc, err);
    r->ended++;
    return TW_RESULT_NONE;
}

static void close_waits_and_then_refuses(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, closer, &rc, NULL);
    tw_test_conn *c = conn_for(f);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(rc.ended, 0); /* waiting for the close to finish */
    assert_string_equal(tw_test_conn_written(c, NULL), "last words\n");
    tw_test_conn_lose(c, 0);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.codes[0], 0);
    assert_int_equal(rc.codes[1], TW_ECLOSED);
    assert_int_equal(rc.codes[2], TW_ECLOSED);
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

static tw_result aborter(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    tw_coro_write_str(s, "dropped", NULL);
    tw_coro_abort(s);
    tw_coro_bytes b;
    tw_failure *err;
    int rc = tw_coro_read_some(s, 0, &b, &err);
    rec_fail(r, rc, err);
    r->ended++;
    return tw_err(tw_failure_new("test", 7, "handler failed on purpose"));
}

static void abort_and_a_failing_handler(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, aborter, &rc, NULL);
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    tw_test_conn *c = conn_for(f);
    tw_string_transport_info info;
    tw_string_transport_get_info(tw_test_conn_transport(c), &info);
    assert_true(info.aborted);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.codes[0], TW_ECLOSED);
    /* Nobody handled the handler's failure: it is reported. */
    assert_true(tw_test_log_contains(log, NULL, "handler failed on purpose"));
    tw_test_log_release(log);
    tw_test_conn_free(c);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ connecting */

typedef struct client {
    const char *where;
    int connect_code;
    char connect_msg[256];
    char reply[64];
    int close_code;
    bool done;
} client;

static tw_result say_hello(void *arg)
{
    client *cl = arg;
    tw_coro_stream *s;
    tw_failure *err;
    cl->connect_code = tw_coro_connect(NULL, cl->where, &s, &err);
    if (cl->connect_code < 0) {
        snprintf(cl->connect_msg, sizeof cl->connect_msg, "%s", tw_failure_message(err));
        cl->done = true;
        return tw_err(err);
    }
    tw_coro_write_str(s, "hello\r\n", NULL);
    tw_coro_bytes b;
    if (tw_coro_read_until(s, "\r\n", 0, &b, NULL) == 0)
        snprintf(cl->reply, sizeof cl->reply, "%.*s", (int)b.len, b.data);
    cl->close_code = tw_coro_close(s, NULL);
    cl->done = true;
    return TW_RESULT_NONE;
}

static void connect_through_the_memory_reactor(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_test_memory *m = tw_test_memory_install(r);
    client cl = { .where = "tcp:host=127.0.0.1:port=4321" };
    tw_deferred *d = tw_coro_spawn(r, say_hello, &cl, NULL);
    assert_int_equal(tw_test_memory_connects(m), 1);
    const tw_test_connect *rec_c = tw_test_memory_connect(m, 0);
    assert_int_equal(tw_address_port(&rec_c->address), 4321);
    assert_false(cl.done);

    /* "Connect" it: the coroutine resumes with its stream and writes. */
    tw_test_conn *c = conn_for(rec_c->factory);
    assert_string_equal(tw_test_conn_written(c, NULL), "hello\r\n");
    assert_int_equal(tw_test_conn_feed_str(c, "hi the"), 0);
    assert_int_equal(tw_test_conn_feed_str(c, "re\r\n"), 0);
    assert_string_equal(cl.reply, "hi there\r\n");
    assert_true(tw_test_conn_disconnecting(c)); /* closing; close waits */
    assert_false(cl.done);
    tw_test_conn_lose(c, 0);
    assert_true(cl.done);
    assert_int_equal(cl.close_code, 0);
    assert_true(tw_deferred_has_result(d) && !tw_deferred_failed(d));
    tw_deferred_unref(d);
    tw_test_conn_free(c);
    tw_connector_stop_connecting(rec_c->connector); /* the recorder's attempt */
    tw_test_memory_free(m);
    all_done(r);
    tw_reactor_free(r);
}

static void connect_cancelled_or_refused(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    tw_test_memory *m = tw_test_memory_install(r);

    /* Cancelled while connecting: the attempt stops, nothing leaks. */
    client cl = { .where = "tcp:host=127.0.0.1:port=4321" };
    tw_deferred *d = tw_coro_spawn(r, say_hello, &cl, NULL);
    assert_false(cl.done);
    tw_deferred_cancel(d);
    assert_true(cl.done);
    assert_int_equal(cl.connect_code, TW_ECANCELED);
    int code = 1;
    tw_deferred_add_both(d, catch_code, &code);
    assert_int_equal(code, TW_ECANCELED);
    tw_deferred_unref(d);

    /* Refused. */
    client cl2 = { .where = "tcp:host=127.0.0.1:port=4322" };
    d = tw_coro_spawn(r, say_hello, &cl2, NULL);
    assert_int_equal(tw_test_memory_fail(m, 1, -ECONNREFUSED), 0);
    assert_true(cl2.done);
    assert_int_equal(cl2.connect_code, -ECONNREFUSED);
    tw_deferred_add_both(d, catch_code, &code);
    assert_int_equal(code, -ECONNREFUSED);
    tw_deferred_unref(d);

    /* A bad description says what is wrong with it. */
    client cl3 = { .where = "tcp:host=127.0.0.1:port=http" };
    d = tw_coro_spawn(r, say_hello, &cl3, NULL);
    assert_true(cl3.done);
    assert_int_equal(cl3.connect_code, TW_ESYNTAX);
    assert_non_null(strstr(cl3.connect_msg, "port=http"));
    tw_deferred_add_both(d, catch_code, &code);
    tw_deferred_unref(d);

    /* Outside a coroutine. */
    tw_coro_stream *s = (tw_coro_stream *)&s;
    tw_failure *err;
    assert_int_equal(tw_coro_connect(r, "tcp:host=127.0.0.1:port=1", &s, &err), TW_EINVAL);
    assert_null(s);
    tw_failure_unref(err);
    tw_test_memory_free(m);
    all_done(r);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ flow control */

typedef struct counting {
    tw_protocol base;
} counting;

static size_t counted;
static char tail[16];

static void count_data(tw_protocol *p, const void *data, size_t len)
{
    counted += len;
    size_t keep = len < sizeof tail - 1 ? len : sizeof tail - 1;
    memmove(tail, tail + keep, sizeof tail - 1 - keep);
    memcpy(tail + sizeof tail - 1 - keep, (const char *)data + len - keep, keep);
}

static const tw_protocol_ops counting_ops = { .size = sizeof(counting),
                                              .data_received = count_data };

enum { BIG = 300 * 1024 };

static tw_result big_writer(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    char *big = malloc(BIG);
    memset(big, 'x', BIG);
    int rc = tw_coro_write(s, big, BIG, NULL); /* over high water: waits */
    free(big);
    rec_fail(r, rc, NULL);
    r->ended++;
    tw_coro_write_str(s, "END", NULL);
    return TW_RESULT_NONE;
}

static void write_waits_for_the_reader(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { 0 };
    tw_factory *f = tw_coro_factory_new(r, big_writer, &rc, NULL);
    counted = 0;
    memset(tail, 0, sizeof tail);
    tw_test_pump_options o = { .server = f, .client_protocol = &counting_ops, .reactor = r };
    tw_test_pump *pump = tw_test_pump_new(&o);
    assert_non_null(pump);
    assert_int_equal(rc.started, 1);
    assert_int_equal(rc.ended, 0); /* its write waits: nothing was delivered yet */
    assert_true(tw_test_pump_flush(pump) > 0);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.codes[0], 0);
    assert_int_equal(counted, BIG + 3);
    assert_string_equal(tail + sizeof tail - 4, "END");
    assert_true(tw_test_pump_closed(pump));
    tw_test_pump_free(pump);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* A client that sends much more than the server reads yet. */
typedef struct flooder {
    tw_protocol base;
} flooder;

static void flood_made(tw_protocol *p)
{
    char chunk[16 * 1024];
    memset(chunk, 'y', sizeof chunk);
    for (int i = 0; i < 20; i++)
        tw_transport_write(p->transport, chunk, sizeof chunk);
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops flooder_ops = { .size = sizeof(flooder),
                                             .connection_made = flood_made };

static tw_result slow_reader(tw_coro_stream *s, void *arg)
{
    rec *r = arg;
    r->started++;
    r->s = s;
    tw_result w = tw_await(tw_deferred_ref(r->gate));
    tw_result_free(&w);
    tw_coro_bytes b;
    int rc = tw_coro_read_exactly(s, 20 * 16 * 1024, &b, NULL);
    rec_fail(r, rc, NULL);
    r->gotlen = b.len;
    r->ended++;
    return TW_RESULT_NONE;
}

static void reading_pauses_while_nobody_reads(void **state)
{
    tw_reactor *r = tw_test_clock_new();
    rec rc = { .gate = tw_deferred_new(NULL, NULL) };
    tw_factory *f = tw_coro_factory_new(r, slow_reader, &rc, NULL);
    tw_test_pump_options o = { .server = f, .client_protocol = &flooder_ops, .reactor = r };
    tw_test_pump *pump = tw_test_pump_new(&o);
    tw_test_pump_flush(pump);
    /* The server stopped reading a chunk past its high-water mark. */
    size_t held = tw_coro_stream_buffered(rc.s);
    assert_true(held >= TW_CORO_READ_HIGH_WATER);
    assert_true(held <= TW_CORO_READ_HIGH_WATER + 16 * 1024);
    assert_false(tw_test_pump_closed(pump));
    tw_deferred_callback(rc.gate, TW_VALUE_NONE); /* now it reads everything */
    tw_test_pump_flush(pump);
    assert_int_equal(rc.ended, 1);
    assert_int_equal(rc.codes[0], 0);
    assert_int_equal(rc.gotlen, 20 * 16 * 1024);
    assert_true(tw_test_pump_closed(pump));
    tw_deferred_unref(rc.gate);
    tw_test_pump_free(pump);
    all_done(r);
    tw_coro_factory_free(f);
    tw_reactor_free(r);
}

/* ------------------------------------------------------------ loopback */

static tw_result line_echo(tw_coro_stream *s, void *arg)
{
    int *served = arg;
    tw_coro_bytes line;
    while (tw_coro_read_until(s, "\n", 0, &line, NULL) == 0)
        if (tw_coro_write(s, line.data, line.len, NULL) < 0)
            break;
    ++*served;
    return TW_RESULT_NONE;
}

typedef struct round_trips {
    char where[64];
    int n, ok, close_code, connect_code;
    bool done;
} round_trips;

static tw_result chatter(void *arg)
{
    round_trips *rt = arg;
    tw_coro_stream *s;
    tw_failure *err = NULL;
    if ((rt->connect_code = tw_coro_connect(NULL, rt->where, &s, &err)) < 0) {
        rt->done = true;
        return tw_err(err);
    }
    for (int i = 0; i < rt->n; i++) {
        char line[64];
        int len = snprintf(line, sizeof line, "line %d of %d\n", i, rt->n);
        if (tw_coro_write(s, line, (size_t)len, &err) < 0)
            break;
        tw_coro_bytes back;
        if (tw_coro_read_until(s, "\n", 0, &back, &err) < 0)
            break;
        if (back.len == (size_t)len && memcmp(back.data, line, back.len) == 0)
            rt->ok++;
    }
    tw_failure_unref(err);
    rt->close_code = tw_coro_close(s, NULL);
    rt->done = true;
    return TW_RESULT_NONE;
}

static bool rt_done(void *arg)
{
    return ((round_trips *)arg)->done;
}

typedef struct served_all {
    int *served;
    int want;
} served_all;

static bool all_served(void *arg)
{
    served_all *sa = arg;
    return *sa->served >= sa->want;
}

static void loopback_thousand_round_trips(void **state)
{
    tw_reactor *r = tt_reactor();
    int served = 0;
    tw_port *port;
    char err[256];
    assert_int_equal(
        tw_coro_serve(r, "tcp:0:interface=127.0.0.1", line_echo, &served, &port, err, sizeof err),
        0);
    round_trips rt = { .n = 1000 };
    snprintf(rt.where, sizeof rt.where, "tcp:host=127.0.0.1:port=%u",
             tw_address_port(tw_port_address(port)));
    tw_deferred *d = tw_coro_spawn(r, chatter, &rt, NULL);
    assert_true(tt_run_until(r, rt_done, &rt, 60));
    assert_int_equal(rt.connect_code, 0);
    assert_int_equal(rt.ok, 1000);
    assert_int_equal(rt.close_code, 0);
    /* The server's coroutine saw the end and returned. */
    served_all sa = { &served, 1 };
    assert_true(tt_run_until(r, all_served, &sa, 10));
    tw_port_stop_listening(port);
    tt_run_for(r, 0.05);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_deferred_unref(d);
    all_done(r);
    tw_reactor_free(r);
}

static void loopback_refused(void **state)
{
    tw_reactor *r = tt_reactor();
    /* Bind a port, close it: nobody listens there now. */
    tw_port *port;
    int served = 0;
    assert_int_equal(
        tw_coro_serve(r, "tcp:0:interface=127.0.0.1", line_echo, &served, &port, NULL, 0), 0);
    round_trips rt = { .n = 1 };
    snprintf(rt.where, sizeof rt.where, "tcp:host=127.0.0.1:port=%u",
             tw_address_port(tw_port_address(port)));
    tw_port_stop_listening(port);
    tt_run_for(r, 0.02);
    tw_deferred *d = tw_coro_spawn(r, chatter, &rt, NULL);
    assert_true(tt_run_until(r, rt_done, &rt, 10));
    assert_int_equal(rt.connect_code, -ECONNREFUSED);
    int code = 1;
    tw_deferred_add_both(d, catch_code, &code);
    assert_int_equal(code, -ECONNREFUSED);
    tw_deferred_unref(d);
    all_done(r);
    tw_reactor_free(r);
}

static void serve_errors(void **state)
{
    tw_reactor *r = tt_reactor();
    int served = 0;
    tw_port *port, *again;
    char err[256];
    assert_int_equal(tw_coro_serve(r, "tcp:port=nope", line_echo, &served, &port, err, sizeof err),
                     TW_ESYNTAX);
    assert_null(port);
    assert_non_null(strstr(err, "tcp:port=nope"));
    assert_int_equal(
        tw_coro_serve(r, "tcp:0:interface=127.0.0.1", line_echo, &served, &port, err, sizeof err),
        0);
    char busy[64];
    snprintf(busy, sizeof busy, "tcp:%u:interface=127.0.0.1",
             tw_address_port(tw_port_address(port)));
    assert_int_equal(tw_coro_serve(r, busy, line_echo, &served, &again, err, sizeof err),
                     -EADDRINUSE);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(tw_coro_serve(r, busy, NULL, &served, &again, err, sizeof err), TW_EINVAL);
    assert_null(tw_coro_factory_new(r, NULL, NULL, NULL));
    tw_port_stop_listening(port); /* the factories are freed with their ports */
    tw_reactor_free(r);
}

/* A writer 8 MB ahead of a reader that takes 64 KiB at a time with pauses:
 * the writer's transport never holds much more than its high-water mark. */
enum { FLOOD = 8 * 1024 * 1024 };

typedef struct flood {
    char where[64];
    size_t max_buffered, read_total;
    unsigned long sum_sent, sum_read;
    bool wrote, read_done;
    int write_code;
} flood;

static tw_result slow_sink(tw_coro_stream *s, void *arg)
{
    flood *fl = arg;
    tw_coro_bytes b;
    while (tw_coro_read_some(s, 64 * 1024, &b, NULL) == 0) {
        for (size_t i = 0; i < b.len; i++)
            fl->sum_read += (unsigned char)b.data[i];
        fl->read_total += b.len;
        tw_result w = tw_await(tw_sleep(tw_coro_reactor(), 0.001));
        tw_result_free(&w);
    }
    fl->read_done = true;
    return TW_RESULT_NONE;
}

static tw_result fast_source(void *arg)
{
    flood *fl = arg;
    tw_coro_stream *s;
    tw_failure *err;
    if (tw_coro_connect(NULL, fl->where, &s, &err) < 0)
        return tw_err(err);
    char chunk[32 * 1024];
    for (size_t sent = 0; sent < FLOOD; sent += sizeof chunk) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (char)((sent + i) * 7);
        for (size_t i = 0; i < sizeof chunk; i++)
            fl->sum_sent += (unsigned char)chunk[i];
        if ((fl->write_code = tw_coro_write(s, chunk, sizeof chunk, NULL)) < 0)
            break;
        size_t held = tw_transport_buffered(tw_coro_stream_transport(s));
        if (held > fl->max_buffered)
            fl->max_buffered = held;
    }
    tw_coro_close(s, NULL);
    fl->wrote = true;
    return TW_RESULT_NONE;
}

static bool flood_done(void *arg)
{
    flood *fl = arg;
    return fl->wrote && fl->read_done;
}

static void loopback_writer_waits_for_slow_reader(void **state)
{
    tw_reactor *r = tt_reactor();
    flood fl = { 0 };
    tw_port *port;
    assert_int_equal(tw_coro_serve(r, "tcp:0:interface=127.0.0.1", slow_sink, &fl, &port, NULL, 0),
                     0);
    snprintf(fl.where, sizeof fl.where, "tcp:host=127.0.0.1:port=%u",
             tw_address_port(tw_port_address(port)));
    tw_deferred *d = tw_coro_spawn(r, fast_source, &fl, NULL);
    assert_true(tt_run_until(r, flood_done, &fl, 60));
    assert_int_equal(fl.write_code, 0);
    assert_int_equal(fl.read_total, FLOOD);
    assert_true(fl.sum_read == fl.sum_sent);
    /* Bounded: a write returns with at most its own chunk over the mark. */
    assert_true(fl.max_buffered <= TW_WRITE_HIGH_WATER + 32 * 1024);
    tw_port_stop_listening(port);
    tt_run_for(r, 0.05);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_deferred_unref(d);
    all_done(r);
    tw_reactor_free(r);
}

/* Handlers suspended in reads when the reactor goes: they see the end (or
 * a cancel), return, and nothing leaks (the sanitizer build checks). */
static tw_result never_done(void *arg)
{
    round_trips *rt = arg;
    tw_coro_stream *s;
    if (tw_coro_connect(NULL, rt->where, &s, NULL) < 0)
        return TW_RESULT_NONE;
    rt->done = true;
    tw_coro_bytes b;
    while (tw_coro_read_some(s, 0, &b, NULL) == 0) {
    }
    tw_coro_abort(s);
    return TW_RESULT_NONE;
}

static void reactor_freed_under_suspended_streams(void **state)
{
    tw_reactor *r = tt_reactor();
    int served = 0;
    tw_port *port;
    assert_int_equal(
        tw_coro_serve(r, "tcp:0:interface=127.0.0.1", line_echo, &served, &port, NULL, 0), 0);
    round_trips rt[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        snprintf(rt[i].where, sizeof rt[i].where, "tcp:host=127.0.0.1:port=%u",
                 tw_address_port(tw_port_address(port)));
        tw_deferred_unref(tw_coro_spawn(r, never_done, &rt[i], NULL));
    }
    for (int i = 0; i < 3; i++)
        assert_true(tt_run_until(r, rt_done, &rt[i], 10));
    tt_run_for(r, 0.05); /* the server's handlers wait in their reads too */
    assert_int_equal(tw__coro_live_count(r), 6);
    tw_reactor_free(r); /* the port with it */
    assert_int_equal(served, 3);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_split),
        cmocka_unit_test(max_and_multibyte_delimiter),
        cmocka_unit_test(eof_in_the_middle_of_a_line),
        cmocka_unit_test(connection_lost_in_the_middle_of_a_line),
        cmocka_unit_test(lent_bytes_outlive_growth),
        cmocka_unit_test(cancel_in_the_middle_of_a_read),
        cmocka_unit_test(close_waits_and_then_refuses),
        cmocka_unit_test(abort_and_a_failing_handler),
        cmocka_unit_test(connect_through_the_memory_reactor),
        cmocka_unit_test(connect_cancelled_or_refused),
        cmocka_unit_test(write_waits_for_the_reader),
        cmocka_unit_test(reading_pauses_while_nobody_reads),
        cmocka_unit_test(loopback_thousand_round_trips),
        cmocka_unit_test(loopback_refused),
        cmocka_unit_test(serve_errors),
        cmocka_unit_test(loopback_writer_waits_for_slow_reader),
        cmocka_unit_test(reactor_freed_under_suspended_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
