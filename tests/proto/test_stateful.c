/* ctest: label=unit timeout=60 backends=once */
/* StatefulProtocol and StatefulStringProtocol (twirl/basic.h): acceptance
 * facts 31 and 32. */
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

/* Twisted's test_stateful: int32-prefixed messages read as two states. */
typedef struct msgs {
    tw_stateful_protocol sp;
    int n;
    size_t total;
    char last[64];
    size_t last_len;
    int quit_after; /* lose the connection after this many messages */
} msgs;

static void st_header(tw_protocol *p, const char *data, size_t len);

static void st_body(tw_protocol *p, const char *data, size_t len)
{
    msgs *m = (msgs *)p;
    m->n++;
    m->total += len;
    m->last_len = len < sizeof m->last ? len : sizeof m->last;
    memcpy(m->last, data, m->last_len);
    tw_stateful_set_state(p, st_header, 4);
    if (m->quit_after && m->n == m->quit_after)
        tw_transport_lose_connection(p->transport);
}

static void st_header(tw_protocol *p, const char *data, size_t len)
{
    assert_int_equal(len, 4);
    const unsigned char *u = (const unsigned char *)data;
    size_t n = (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
    tw_stateful_set_state(p, st_body, n);
}

static const tw_stateful_protocol_ops msgs_ops = {
    .base = TW_STATEFUL_PROTOCOL_BASE(msgs),
    .initial = st_header,
    .initial_bytes = 4,
};

static size_t frame(const char *s, size_t len, char *out)
{
    out[0] = (char)(len >> 24);
    out[1] = (char)(len >> 16);
    out[2] = (char)(len >> 8);
    out[3] = (char)len;
    memcpy(out + 4, s, len);
    return 4 + len;
}

typedef struct want {
    int n;
    size_t total;
    const char *last;
} want;

static void check(tw_test_conn *c, const tw_test_split *how, void *arg)
{
    const want *w = arg;
    msgs *m = (msgs *)tw_test_conn_protocol(c);
    if (m->n != w->n || m->total != w->total)
        fail_msg("%s: %d messages of %zu bytes, want %d of %zu", how->desc, m->n, m->total, w->n,
                 w->total);
    if (w->last && (m->last_len != strlen(w->last) || memcmp(m->last, w->last, m->last_len)))
        fail_msg("%s: last message differs", how->desc);
}

static void fact31_states_and_splits(void **state)
{
    char wire[256];
    size_t len = frame("hello", 5, wire);
    len += frame("", 0, wire + len); /* a zero-byte state */
    len += frame("world!", 6, wire + len);
    want w = { 3, 11, "world!" };
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&msgs_ops) };
    assert_true(tw_test_feed_splits(&o, wire, len, check, &w) > 0);
}

static void fact31_big_receive(void **state)
{
    /* test_bigReceive: many messages in one read are all processed. */
    enum { COUNT = 5000 };
    char *wire = malloc(COUNT * 12);
    size_t len = 0;
    for (int i = 0; i < COUNT; i++)
        len += frame("abcdefgh", 8, wire + len);
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&msgs_ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_test_conn_feed(c, wire, len);
    msgs *m = (msgs *)tw_test_conn_protocol(c);
    assert_int_equal(m->n, COUNT);
    assert_int_equal(tw_receiver_buffered(&m->sp.r.base), 0);
    tw_test_conn_free(c);
    free(wire);
}

static void fact31_stops_when_disconnecting(void **state)
{
    char wire[64];
    size_t len = frame("a", 1, wire);
    len += frame("b", 1, wire + len);
    len += frame("c", 1, wire + len);
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&msgs_ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    msgs *m = (msgs *)tw_test_conn_protocol(c);
    m->quit_after = 2;
    tw_test_conn_feed(c, wire, len);
    assert_int_equal(m->n, 2);
    assert_true(tw_test_conn_disconnecting(c));
    tw_test_conn_free(c);
}

/* A handler that keeps asking for nothing is a loop: closed, logged. */
static void zero_forever(tw_protocol *p, const char *data, size_t len)
{
    tw_stateful_set_state(p, zero_forever, 0);
}

static void zero_byte_loop_is_bounded(void **state)
{
    static const tw_stateful_protocol_ops ops = {
        .base = TW_STATEFUL_PROTOCOL_BASE(tw_stateful_protocol),
        .initial = zero_forever,
        .initial_bytes = 1,
    };
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    tw_test_conn_feed(c, "x", 1);
    assert_true(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "stateful", "0 bytes"));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

/* ------------------------------------------------ StatefulStringProtocol */

typedef struct login {
    tw_netstring_receiver nr;
    const char *state;
    char user[32];
    int steps;
} login;

static const char *proto_init(tw_protocol *p, const char *s, size_t len)
{
    login *l = (login *)p;
    l->steps++;
    snprintf(l->user, sizeof l->user, "%.*s", (int)len, s);
    return "password";
}

static const char *proto_password(tw_protocol *p, const char *s, size_t len)
{
    login *l = (login *)p;
    l->steps++;
    if (len == 6 && memcmp(s, "secret", 6) == 0)
        return "done";
    return "bogus"; /* a state with no handler */
}

static const tw_string_state login_states[] = {
    { "init", proto_init },
    { "password", proto_password },
};

static void login_string(tw_protocol *p, const char *s, size_t len)
{
    login *l = (login *)p;
    tw_stateful_string_received(p, login_states, 2, &l->state, s, len);
}

static const tw_netstring_receiver_ops login_ops = {
    .base = TW_NETSTRING_RECEIVER_BASE(login),
    .string_received = login_string,
};

static void fact32_stateful_strings(void **state)
{
    tw_test_conn_options o = { .protocol = TW_PROTOCOL_OF(&login_ops) };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    login *l = (login *)tw_test_conn_protocol(c);
    tw_test_conn_feed_str(c, "5:alice,");
    assert_string_equal(l->state, "password");
    assert_string_equal(l->user, "alice");
    tw_test_conn_feed_str(c, "6:secret,");
    assert_string_equal(l->state, "done");
    assert_true(tw_test_conn_disconnecting(c)); /* "done" closes */
    tw_test_conn_free(c);

    /* An unknown state is logged, not fatal. */
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    c = tw_test_conn_new_opts(&o);
    l = (login *)tw_test_conn_protocol(c);
    tw_test_conn_feed_str(c, "5:alice,5:wrong,3:any,");
    assert_string_equal(l->state, "bogus");
    assert_int_equal(l->steps, 2);
    assert_false(tw_test_conn_disconnecting(c));
    assert_true(tw_test_log_contains(log, "stateful", "no handler for state \"bogus\""));
    tw_test_conn_free(c);
    tw_test_log_release(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fact31_states_and_splits),
        cmocka_unit_test(fact31_big_receive),
        cmocka_unit_test(fact31_stops_when_disconnecting),
        cmocka_unit_test(zero_byte_loop_is_bounded),
        cmocka_unit_test(fact32_stateful_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
