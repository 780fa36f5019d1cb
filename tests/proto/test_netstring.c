/* ctest: label=unit timeout=120 backends=once */
/* NetstringReceiver (twirl/basic.h): acceptance facts 20-25, every input
 * whole, cut at every byte boundary and in small chunks. */
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

/* Twisted's TestNetstring: records and echoes each string; MAX 50. */
typedef struct ns {
    tw_netstring_receiver nr;
    char store[STORE];
    size_t used;
    size_t off[MAX_ITEMS], len[MAX_ITEMS];
    int n;
    const char *first_ptr; /* where the first string was delivered from */
} ns;

static ns *N(tw_test_conn *c)
{
    return (ns *)tw_test_conn_protocol(c);
}

static void ns_string(tw_protocol *p, const char *s, size_t len)
{
    ns *x = (ns *)p;
    if (!x->first_ptr)
        x->first_ptr = s;
    if (x->n < MAX_ITEMS && x->used + len <= STORE) {
        memcpy(x->store + x->used, s, len);
        x->off[x->n] = x->used;
        x->len[x->n] = len;
        x->used += len;
    }
    x->n++;
    tw_transport_write(p->transport, s, len);
}

static const tw_netstring_receiver_ops ns_ops = {
    .base = TW_NETSTRING_RECEIVER_BASE(ns),
    .string_received = ns_string,
    .max_length = 50,
};

static const tw_netstring_receiver_ops ns_default_ops = {
    .base = TW_NETSTRING_RECEIVER_BASE(ns),
    .string_received = ns_string,
};

static tw_test_conn *conn(const tw_netstring_receiver_ops *ops)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    return c;
}

static void expect_strings(const ns *x, const char *const *want, const size_t *lens, int n,
                           const char *how)
{
    if (x->n != n)
        fail_msg("%s: %d strings, want %d", how, x->n, n);
    for (int i = 0; i < n; i++) {
        size_t wl = lens ? lens[i] : strlen(want[i]);
        if (x->len[i] != wl || memcmp(x->store + x->off[i], want[i], wl) != 0)
            fail_msg("%s: string %d is \"%.*s\", want \"%s\"", how, i, (int)x->len[i],
                     x->store + x->off[i], want[i]);
    }
}

typedef struct want {
    const char *const *items;
    int n;
    bool closed;
} want;

static void check(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const want *w = arg;
    expect_strings(N(c), w->items, NULL, w->n, how->desc);
    if (tw_test_conn_disconnecting(c) != w->closed)
        fail_msg("%s: closing %d, want %d", how->desc, tw_test_conn_disconnecting(c), w->closed);
    if (tw_netstring_receiver_broken(tw_test_conn_protocol(c)) != w->closed)
        fail_msg("%s: broken flag wrong", how->desc);
    if (w->closed && tw_receiver_buffered(tw_test_conn_protocol(c)) != 0)
        fail_msg("%s: bytes kept after the error", how->desc);
}

static void splits(const tw_netstring_receiver_ops *ops, const char *wire, size_t len,
                   const want *w)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(ops) };
    assert_true(tw_test_feed_splits(&o, wire, len, check, (void *)w) > 0);
}

#define ITEMS(...)        \
    (const char *const[]) \
    {                     \
        __VA_ARGS__       \
    }
#define NITEMS(...) ((int)(sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(const char *)))
#define WANT(closed_, ...)                               \
    {                                                    \
        ITEMS(__VA_ARGS__), NITEMS(__VA_ARGS__), closed_ \
    }
#define S(lit) lit, sizeof lit - 1

static void fact20_accepted(void **state)
{
    want w0 = WANT(false, "");
    splits(&ns_ops, S("0:,"), &w0);
    want w1 = WANT(false, "a");
    splits(&ns_ops, S("1:a,"), &w1);
    want w2 = WANT(false, "ab");
    splits(&ns_ops, S("2:ab,"), &w2);
    want nested = WANT(false, "1:a,");
    splits(&ns_ops, S("4:1:a,,"), &nested);
    want ten = WANT(false, "0123456789");
    splits(&ns_ops, S("10:0123456789,"), &ten);
    want two = WANT(false, "a", "b");
    splits(&ns_ops, S("1:a,1:b,"), &two);

    /* The exact portions of Twisted's tests. */
    tw_test_conn *c = conn(&ns_ops);
    const char *parts[] = { "1", "0:01234", "56789", "," };
    for (int i = 0; i < 4; i++)
        tw_test_conn_feed_str(c, parts[i]);
    expect_strings(N(c), ITEMS("0123456789"), NULL, 1, "portions");
    tw_test_conn_free(c);
    c = conn(&ns_ops);
    tw_test_conn_feed_str(c, "1:a,1");
    expect_strings(N(c), ITEMS("a"), NULL, 1, "first");
    tw_test_conn_feed_str(c, ":b,");
    expect_strings(N(c), ITEMS("a", "b"), NULL, 2, "second");
    assert_string_equal(tw_test_conn_written(c, NULL), "ab");
    tw_test_conn_free(c);
}

/* Twisted's test_buffer: strings sent by send_string come back intact
 * through every split (MAX 699). */
static void fact20_25_round_trip(void **state)
{
    static const tw_netstring_receiver_ops big = {
        .base = TW_NETSTRING_RECEIVER_BASE(ns),
        .string_received = ns_string,
        .max_length = 699,
    };
    char a515[516];
    memset(a515, 'a', 515);
    a515[515] = 0;
    const char *strings[] = { "hello", "world", "how", "are", "you123", ":today", a515 };
    tw_test_conn *c = conn(&big);
    for (int i = 0; i < 7; i++)
        assert_int_equal(tw_netstring_receiver_send_string(tw_test_conn_protocol(c), strings[i],
                                                           strlen(strings[i])),
                         0);
    size_t len;
    const char *out = tw_test_conn_written(c, &len);
    char *wire = malloc(len);
    memcpy(wire, out, len);
    tw_test_conn_free(c);
    assert_memory_equal(wire, "5:hello,5:world,3:how,", 22);
    want w = { strings, 7, false };
    splits(&big, wire, len, &w);
    free(wire);
}

static void quiet_splits(const tw_netstring_receiver_ops *ops, const char *wire, size_t len,
                         const want *w)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    splits(ops, wire, len, w);
    tw_test_log_release(log);
}

static void fact21_rejected(void **state)
{
    static const char *const bad[] = {
        "2:aaa,", "4:abcde",  "0:a,",    ":aaa,",
        "3aaa,",  "aaa,",     "aaa",     "9999999999999999999999",
        "3:abc;", "007:abc,", "00:,",    "+3:abc,",
        "-1:a,",  " 3:abc,",  "3 :abc,", ",",
    };
    want none = { NULL, 0, true };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        quiet_splits(&ns_ops, bad[i], strlen(bad[i]), &none);

    /* A newline between netstrings; junk after a good one. */
    want first = WANT(true, "a");
    quiet_splits(&ns_ops, S("1:a,\n1:b,"), &first);
    want abc = WANT(true, "abc");
    quiet_splits(&ns_ops, S("3:abc,x"), &abc);

    /* The reason is logged with the peer's address. */
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    tw_test_conn *c = conn(&ns_ops);
    tw_test_conn_feed_str(c, "3:abc;");
    assert_true(tw_test_log_contains(log, "netstring", "not terminated by ','"));
    assert_true(tw_test_log_contains(log, "netstring", "192.168.1.1:54321"));
    tw_test_conn_free(c);
    c = conn(&ns_ops);
    tw_test_conn_feed_str(c, "007:");
    assert_true(tw_test_log_contains(log, "netstring", "leading zero"));
    tw_test_conn_free(c);
    c = conn(&ns_ops);
    tw_test_conn_feed_str(c, "x");
    assert_true(tw_test_log_contains(log, "netstring", "does not start with a length"));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

static void fact22_limit_border(void **state)
{
    char wire[80];
    memset(wire, 'z', sizeof wire);
    memcpy(wire, "50:", 3);
    wire[53] = ',';
    tw_test_conn *c = conn(&ns_ops);
    tw_test_conn_feed(c, wire, 54);
    assert_int_equal(N(c)->n, 1);
    assert_int_equal(N(c)->len[0], 50);
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    /* Twisted's test_illegal: "51:" + 51 bytes with MAX 50. */
    memcpy(wire, "51:", 3);
    wire[53] = 'z';
    wire[54] = ',';
    want none = { NULL, 0, true };
    quiet_splits(&ns_ops, wire, 55, &none);

    /* test_consumeLengthBorderCase1/2/3 */
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    c = conn(&ns_ops);
    assert_int_equal(tw_netstring_receiver_set_max_length(tw_test_conn_protocol(c), 12), 0);
    tw_test_conn_feed_str(c, "12:");
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    c = conn(&ns_ops);
    tw_netstring_receiver_set_max_length(tw_test_conn_protocol(c), 11);
    tw_test_conn_feed_str(c, "12:");
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    c = conn(&ns_ops);
    tw_netstring_receiver_set_max_length(tw_test_conn_protocol(c), 11);
    tw_test_conn_feed_str(c, "1000:");
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(tw_netstring_receiver_set_max_length(tw_test_conn_protocol(c), SIZE_MAX),
                     TW_EINVAL);
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

static void fact23_24_long_prefix_refused_early(void **state)
{
    tw_test_log *log = tw_test_log_capture(TW_LOG_ERROR);
    /* Default MAX 99999: five nines wait, a sixth digit is refused at once,
     * with no colon and no payload. */
    tw_test_conn *c = conn(&ns_default_ops);
    tw_test_conn_feed_str(c, "99999");
    assert_false(tw_test_conn_disconnecting(c));
    tw_test_conn_feed_str(c, "9");
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    /* "100000" is refused at its sixth digit: the 6-digit bound of
     * ceil(log10(99999)) + 1. */
    c = conn(&ns_default_ops);
    for (const char *d = "100000"; *d; d++) {
        assert_false(tw_test_conn_disconnecting(c));
        tw_test_conn_feed(c, d, 1);
    }
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);

    /* A thousand digits in one read: refused, nothing kept. */
    char digits[1000];
    memset(digits, '7', sizeof digits);
    c = conn(&ns_default_ops);
    tw_test_conn_feed(c, digits, sizeof digits);
    assert_true(tw_test_conn_disconnecting(c));
    assert_int_equal(tw_receiver_buffered(tw_test_conn_protocol(c)), 0);
    tw_test_conn_free(c);

    /* test_maxReceiveLimit: the length is enough, the payload never read. */
    c = conn(&ns_ops);
    tw_test_conn_feed_str(c, "51:");
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

static void fact25_send_string(void **state)
{
    tw_test_conn *c = conn(&ns_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    assert_int_equal(tw_netstring_receiver_send_string(p, "", 0), 0);
    assert_int_equal(tw_netstring_receiver_send_string(p, "hello", 5), 0);
    assert_int_equal(tw_netstring_receiver_send_string(p, "a,:b", 4), 0);
    assert_string_equal(tw_test_conn_written(c, NULL), "0:,5:hello,4:a,:b,");
    tw_test_conn_lose(c, 0);
    assert_int_equal(tw_netstring_receiver_send_string(p, "x", 1), TW_ECLOSED);
    tw_test_conn_free(c);
}

/* Memory stays bounded by the declared length, and a netstring complete
 * in one read is delivered from the read itself. */
static void payload_buffering_is_bounded(void **state)
{
    tw_test_conn *c = conn(&ns_default_ops);
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_test_conn_feed_str(c, "99999:");
    char chunk[1000];
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 99; i++) {
        tw_test_conn_feed(c, chunk, sizeof chunk);
        assert_int_equal(tw_receiver_buffered(p), (size_t)(i + 1) * sizeof chunk);
    }
    tw_test_conn_feed(c, chunk, 999);
    tw_test_conn_feed_str(c, ",");
    assert_int_equal(N(c)->n, 1);
    assert_int_equal(tw_receiver_buffered(p), 0);
    tw_test_conn_free(c);

    static const char wire[] = "3:abc,";
    c = conn(&ns_ops);
    tw_test_conn_feed(c, wire, sizeof wire - 1);
    assert_ptr_equal(N(c)->first_ptr, wire + 2);
    tw_test_conn_free(c);
}

/* Closing from string_received: nothing more of the read is delivered. */
static void closing_string(tw_protocol *p, const char *s, size_t len)
{
    ns_string(p, s, len);
    if (len == 4 && memcmp(s, "quit", 4) == 0)
        tw_transport_lose_connection(p->transport);
}

static void no_strings_after_close(void **state)
{
    static const tw_netstring_receiver_ops ops = {
        .base = TW_NETSTRING_RECEIVER_BASE(ns),
        .string_received = closing_string,
    };
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_test_conn_feed_str(c, "1:a,4:quit,1:b,");
    expect_strings(N(c), ITEMS("a", "quit"), NULL, 2, "close");
    assert_false(tw_netstring_receiver_broken(tw_test_conn_protocol(c)));
    tw_test_conn_free(c);
}

static void missing_hook_closes(void **state)
{
    static const tw_netstring_receiver_ops bare = {
        .base = TW_NETSTRING_RECEIVER_BASE(tw_netstring_receiver),
    };
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&bare) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_test_conn_feed_str(c, "1:a,");
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "netstring", "no string_received hook"));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

/* Pausing works on every receiver. */
static void pausing_string(tw_protocol *p, const char *s, size_t len)
{
    ns_string(p, s, len);
    tw_receiver_pause_producing(p);
}

static void pause_and_resume(void **state)
{
    static const tw_netstring_receiver_ops ops = {
        .base = TW_NETSTRING_RECEIVER_BASE(ns),
        .string_received = pausing_string,
    };
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_protocol *p = tw_test_conn_protocol(c);
    tw_test_conn_feed_str(c, "1:a,1:b,1:c");
    assert_int_equal(N(c)->n, 1);
    tw_receiver_resume_producing(p);
    assert_int_equal(N(c)->n, 2);
    tw_receiver_resume_producing(p);
    assert_int_equal(N(c)->n, 2); /* "1:c" is not finished */
    tw_test_conn_feed_str(c, ",");
    expect_strings(N(c), ITEMS("a", "b", "c"), NULL, 3, "paused");
    tw_test_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact20_accepted),
        cmocka_unit_test(fact20_25_round_trip),
        cmocka_unit_test(fact21_rejected),
        cmocka_unit_test(fact22_limit_border),
        cmocka_unit_test(fact23_24_long_prefix_refused_early),
        cmocka_unit_test(fact25_send_string),
        cmocka_unit_test(payload_buffering_is_bounded),
        cmocka_unit_test(no_strings_after_close),
        cmocka_unit_test(missing_hook_closes),
        cmocka_unit_test(pause_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
