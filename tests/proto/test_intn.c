/* ctest: label=unit timeout=120 backends=once */
/* Int8/Int16/Int32StringReceiver (twirl/basic.h): acceptance facts 26-30,
 * each on the three prefix widths, every input whole, cut at every byte
 * boundary and in small chunks. */
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

enum { MAX_ITEMS = 64, STORE = 4096 };

/* Twisted's TestInt32 & co: records strings; MAX 50. */
typedef struct ir {
    tw_int_receiver base;
    char store[STORE];
    size_t used;
    size_t off[MAX_ITEMS], len[MAX_ITEMS];
    int n;
    size_t limit_calls, limit_length;
    int pause_each;
} ir;

static ir *I(tw_test_conn *c)
{
    return (ir *)tw_test_conn_protocol(c);
}

static void ir_string(tw_protocol *p, const char *s, size_t len)
{
    ir *x = (ir *)p;
    if (x->n < MAX_ITEMS && x->used + len <= STORE) {
        memcpy(x->store + x->used, s, len);
        x->off[x->n] = x->used;
        x->len[x->n] = len;
        x->used += len;
    }
    x->n++;
    if (x->pause_each)
        tw_receiver_pause_producing(p);
}

static void ir_limit(tw_protocol *p, size_t length)
{
    ir *x = (ir *)p;
    x->limit_calls++;
    x->limit_length = length;
}

static const tw_int_receiver_ops int8_ops = {
    .base = TW_INT8_RECEIVER_BASE(ir),
    .string_received = ir_string,
    .max_length = 50,
};
static const tw_int_receiver_ops int16_ops = {
    .base = TW_INT16_RECEIVER_BASE(ir),
    .string_received = ir_string,
    .max_length = 50,
};
static const tw_int_receiver_ops int32_ops = {
    .base = TW_INT32_RECEIVER_BASE(ir),
    .string_received = ir_string,
    .max_length = 50,
};
static const tw_int_receiver_ops int32_catch_ops = {
    .base = TW_INT32_RECEIVER_BASE(ir),
    .string_received = ir_string,
    .length_limit_exceeded = ir_limit,
};

static const tw_int_receiver_ops *const widths[3] = { &int8_ops, &int16_ops, &int32_ops };
static const unsigned width_bytes[3] = { 1, 2, 4 };

static tw_test_conn *conn(const tw_int_receiver_ops *ops)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    return c;
}

/* prefix(len) + s into out; returns the bytes written. */
static size_t frame(unsigned width, const char *s, size_t len, char *out)
{
    for (unsigned i = 0; i < width; i++)
        out[i] = (char)(len >> (8 * (width - 1 - i)));
    memcpy(out + width, s, len);
    return width + len;
}

typedef struct want {
    const char *const *items;
    int n;
    bool closed;
} want;

static void check(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const want *w = arg;
    ir *x = I(c);
    if (x->n != w->n)
        fail_msg("%s: %d strings, want %d", how->desc, x->n, w->n);
    for (int i = 0; i < w->n; i++) {
        size_t wl = strlen(w->items[i]);
        if (x->len[i] != wl || memcmp(x->store + x->off[i], w->items[i], wl) != 0)
            fail_msg("%s: string %d differs", how->desc, i);
    }
    if (tw_test_conn_disconnecting(c) != w->closed)
        fail_msg("%s: closing %d, want %d", how->desc, tw_test_conn_disconnecting(c), w->closed);
}

static void splits(const tw_int_receiver_ops *ops, const char *wire, size_t len, const want *w)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
    assert_true(tw_test_feed_splits(&o, wire, len, check, (void *)w) > 0);
}

static void fact26_prefix_format(void **state)
{
    static const char *const sent[3] = { "\x03"
                                         "foo",
                                         "\x00\x03"
                                         "foo",
                                         "\x00\x00\x00\x03"
                                         "foo" };
    static const char *const recv[3] = { "\x04"
                                         "ubar",
                                         "\x00\x04"
                                         "ubar",
                                         "\x00\x00\x00\x04"
                                         "ubar" };
    for (int w = 0; w < 3; w++) {
        tw_test_conn *c = conn(widths[w]);
        assert_int_equal(tw_int_receiver_send_string(tw_test_conn_protocol(c), "foo", 3), 0);
        size_t len;
        const char *out = tw_test_conn_written(c, &len);
        assert_int_equal(len, width_bytes[w] + 3);
        assert_memory_equal(out, sent[w], len);
        tw_test_conn_feed(c, recv[w], width_bytes[w] + 4);
        assert_int_equal(I(c)->n, 1);
        assert_memory_equal(I(c)->store, "ubar", 4);
        tw_test_conn_free(c);
    }
}

static void fact27_byte_by_byte_and_partial(void **state)
{
    char b16[17];
    memset(b16, 'b', 16);
    b16[16] = 0;
    for (int w = 0; w < 3; w++) {
        char wire[128];
        size_t len = frame(width_bytes[w], "a", 1, wire);
        len += frame(width_bytes[w], b16, 16, wire + len);
        len += frame(width_bytes[w], "", 0, wire + len); /* empty string */
        len += frame(width_bytes[w], "zz", 2, wire + len);
        want all = { (const char *const[]){ "a", b16, "", "zz" }, 4, false };
        splits(widths[w], wire, len, &all);
    }
    /* Twisted's partialStrings: nothing is delivered (some are over the
     * limit of 50 and close the connection, quietly here). */
    tw_test_log *quiet = tw_test_log_capture(TW_LOG_ERROR);
    static const char *const partial32[] = { "\x00\x00\x00", "hello there", "" };
    static const char *const partial16[] = { "\x00", "hello there", "" };
    static const char *const partial8[] = { "\x08", "dzadz", "" };
    const char *const *partials[3] = { partial8, partial16, partial32 };
    static const size_t plen[3][3] = { { 1, 5, 0 }, { 1, 11, 0 }, { 3, 11, 0 } };
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < 3; i++) {
            tw_test_conn *c = conn(widths[w]);
            for (size_t k = 0; k < plen[w][i]; k++)
                tw_test_conn_feed(c, partials[w][i] + k, 1);
            assert_int_equal(I(c)->n, 0);
            tw_test_conn_free(c);
        }
    }
    tw_test_log_release(quiet);
    /* Int8: "\x00" is an empty message. */
    tw_test_conn *c = conn(&int8_ops);
    tw_test_conn_feed(c, "\x00\x00", 2);
    assert_int_equal(I(c)->n, 2);
    assert_int_equal(I(c)->len[0], 0);
    tw_test_conn_free(c);
}

static void fact28_length_limit(void **state)
{
    /* test_lengthLimitExceeded: called with the length as soon as the
     * prefix is complete. */
    tw_test_conn *c = conn(&int32_catch_ops);
    tw_int_receiver_set_max_length(tw_test_conn_protocol(c), 10);
    tw_test_conn_feed(c, "\x00\x00\x00", 3);
    assert_int_equal(I(c)->limit_calls, 0);
    tw_test_conn_feed(c, "\x0b", 1);
    assert_int_equal(I(c)->limit_calls, 1);
    assert_int_equal(I(c)->limit_length, 11);
    /* test_longStringNotDelivered: even with the payload at hand. */
    tw_test_conn_feed(c, "xxxxxxxxxxx", 11);
    assert_int_equal(I(c)->n, 0);
    assert_int_equal(I(c)->limit_calls, 1); /* nothing more is parsed */
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    c = conn(&int32_catch_ops);
    tw_int_receiver_set_max_length(tw_test_conn_protocol(c), 10);
    tw_test_conn_feed(c, "\x00\x00\x00\x0bxxxxxxxxxxx", 15);
    assert_int_equal(I(c)->n, 0);
    assert_int_equal(I(c)->limit_calls, 1);
    tw_test_conn_free(c);

    /* test_illegal (MAX 50), any split: the default closes. */
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    want none = { NULL, 0, true };
    splits(&int32_ops,
           "\x10\x00\x00\x00"
           "aaaaaa",
           10, &none);
    splits(&int16_ops,
           "\x10\x00"
           "aaaaaa",
           8, &none);
    want two_empty = { (const char *const[]){ "", "" }, 2, true };
    splits(&int8_ops,
           "\x00\x00"
           "aaaaaa",
           8, &two_empty);
    tw_test_log_release(log);

    /* The default logs the reason. */
    log = tw_test_log_capture(TW_LOG_WARN);
    c = conn(&int16_ops);
    tw_test_conn_feed(c, "\x01\x00", 2);
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "int_receiver", "256 bytes announced (maximum 50)"));
    tw_test_conn_free(c);
    tw_test_log_release(log);

    /* Exactly the limit is fine; the default limit is 99999. */
    static const tw_int_receiver_ops dflt = {
        .base = TW_INT32_RECEIVER_BASE(ir),
        .string_received = ir_string,
    };
    c = conn(&dflt);
    char *big = malloc(4 + 99999);
    frame(4, "", 0, big);
    big[0] = 0;
    big[1] = 0x01;
    big[2] = (char)0x86;
    big[3] = (char)0x9f; /* 99999 */
    memset(big + 4, 'm', 99999);
    tw_test_conn_feed(c, big, 4 + 99999);
    assert_int_equal(I(c)->n, 1);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    free(big);
    log = tw_test_log_capture(TW_LOG_ERROR);
    c = conn(&dflt);
    tw_test_conn_feed(c, "\x00\x01\x86\xa0", 4); /* 100000 */
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

static void fact29_send_too_long(void **state)
{
    char *buf = calloc(1, 65537);
    tw_test_conn *c = conn(&int8_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 255), 0);
    tw_test_conn_clear(c);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 256), TW_ELIMIT);
    size_t len;
    tw_test_conn_written(c, &len);
    assert_int_equal(len, 0);
    tw_test_conn_free(c);

    c = conn(&int16_ops);
    p = tw_test_conn_protocol(c);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 65535), 0);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 65536), TW_ELIMIT);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 65537), TW_ELIMIT);
    tw_test_conn_free(c);

    /* Int32: 2^32 bytes are refused before a byte is read. */
    c = conn(&int32_ops);
    p = tw_test_conn_protocol(c);
    if (sizeof(size_t) > 4)
        assert_int_equal(tw_int_receiver_send_string(p, buf, (size_t)1 << 32), TW_ELIMIT);
    tw_test_conn_lose(c, 0);
    assert_int_equal(tw_int_receiver_send_string(p, buf, 1), TW_ECLOSED);
    tw_test_conn_free(c);
    free(buf);
}

static void fact30_pause_stops_buffered_strings(void **state)
{
    for (int w = 0; w < 3; w++) {
        char wire[64];
        size_t len = frame(width_bytes[w], "one", 3, wire);
        len += frame(width_bytes[w], "two", 3, wire + len);
        len += frame(width_bytes[w], "three", 5, wire + len);
        tw_test_conn *c = conn(widths[w]);
        tw_protocol *p = tw_test_conn_protocol(c);
        I(c)->pause_each = 1;
        tw_test_conn_feed(c, wire, len);
        assert_int_equal(I(c)->n, 1);
        assert_true(tw_receiver_paused(p));
        tw_receiver_resume_producing(p);
        assert_int_equal(I(c)->n, 2);
        I(c)->pause_each = 0;
        tw_receiver_resume_producing(p);
        assert_int_equal(I(c)->n, 3);
        assert_false(tw_receiver_paused(p));
        assert_memory_equal(I(c)->store, "onetwothree", 11);
        tw_test_conn_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact26_prefix_format),
        cmocka_unit_test(fact27_byte_by_byte_and_partial),
        cmocka_unit_test(fact28_length_limit),
        cmocka_unit_test(fact29_send_too_long),
        cmocka_unit_test(fact30_pause_stops_buffered_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
