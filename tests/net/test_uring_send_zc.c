/* ctest: label=integration timeout=120 backends=once */
/* Zero-copy sends (SEND_ZC) of stream connections on the io_uring backend:
 * large writes arrive intact and in order among small ones, lent memory is
 * released once and only after the kernel let go of it, a peer that resets
 * or a reactor freed mid-send leaks nothing, and the policy (loopback and
 * Unix sockets off by default, small writes never) holds. Loopback is
 * forced on here (TW__URING_ZC_ALWAYS) to exercise the path. */
#if !__has_include(<liburing.h>)
/* Built without liburing: no io_uring backend to test. */
int main(void)
{
    return 0;
}
#else
/* The library's own view of the connection struct, which has uring fields
 * when built with liburing (as it is wherever this header is). */
#define TWIRL_HAVE_URING 1
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/uring.h"
#include "net/net_internal.h"
#include "tt.h"
#include "twirl/log.h"
#include "twirl/tcp.h"

enum { MIB = 1 << 20 };

static tw_reactor *uring_reactor(int zc_mode, int need_zc)
{
    tw_reactor_options o = { .backend = "uring", .signals = TW_SIGNALS_OFF };
    tw_reactor *r = NULL;
    assert_int_equal(tw_reactor_new(&o, &r), 0);
    if (strcmp(tw_reactor_backend(r), "uring") != 0 ||
        (need_zc && !(tw__uring_features(r) & TW__URING_SEND_ZC))) {
        tw_reactor_free(r);
        skip();
    }
    tw__uring_set_send_zc_mode(r, zc_mode);
    return r;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i % 251 + i / 65536);
}

static char *pattern_block(size_t from, size_t len)
{
    char *b = malloc(len);
    for (size_t i = 0; i < len; i++)
        b[i] = (char)pattern(from + i);
    return b;
}

/* ------------------------------------------------------------ the peers */

typedef struct sender_plan {
    size_t big;         /* bytes per large write */
    int writes;         /* how many large writes */
    size_t small;       /* bytes of a small write after each large one (0: none) */
    int by_ref;         /* large writes lent (write_ref), not copied */
    int releases;       /* release calls seen */
    int released_early; /* releases seen inside the write call itself */
    int zc_in_flight;   /* a zero-copy send was in flight after the first write */
    int zc_decided, zc_on;
    int lost;
    int lose_after; /* lose_connection after writing */
    int in_write;
} sender_plan;

static sender_plan *plan_of(tw_protocol *p)
{
    return p->factory->user_data;
}

static void release_block(void *arg)
{
    sender_plan *pl = *(sender_plan **)arg;
    pl->releases++;
    if (pl->in_write)
        pl->released_early++;
    free(arg);
}

static void sender_made(tw_protocol *p)
{
    sender_plan *pl = plan_of(p);
    tw_transport_set_option(p->transport, TW_OPT_WRITE_LIMIT, 0);
    tw_transport_set_option(p->transport, TW_OPT_HIGH_WATER, UINT32_MAX);
    /* A copying write this large goes to send(2) first; a small send buffer
     * keeps most of it for the queue, whatever the kernel's autotuning. */
    tw_transport_set_option(p->transport, TW_OPT_SNDBUF, 64 * 1024);
    size_t off = 0;
    for (int i = 0; i < pl->writes; i++) {
        if (pl->by_ref) {
            /* The block starts with the plan pointer's room, then data. */
            char *mem = malloc(sizeof(sender_plan *) + pl->big);
            *(sender_plan **)mem = pl;
            char *data = mem + sizeof(sender_plan *);
            for (size_t k = 0; k < pl->big; k++)
                data[k] = (char)pattern(off + k);
            pl->in_write = 1;
            assert_int_equal(
                tw_transport_write_ref(p->transport, data, pl->big, release_block, mem), 0);
            pl->in_write = 0;
        } else {
            char *b = pattern_block(off, pl->big);
            assert_int_equal(tw_transport_write(p->transport, b, pl->big), 0);
            free(b);
        }
        if (i == 0) {
            tw__conn *c = (tw__conn *)p->transport;
            pl->zc_in_flight = c->send_rec != NULL && (c->flags & TW__CONN_ZC);
            pl->zc_decided = (c->flags & TW__CONN_ZC_CHECKED) != 0;
            pl->zc_on = (c->flags & TW__CONN_ZC) != 0;
        }
        off += pl->big;
        if (pl->small) {
            char *b = pattern_block(off, pl->small);
            assert_int_equal(tw_transport_write(p->transport, b, pl->small), 0);
            free(b);
            off += pl->small;
        }
    }
    if (pl->lose_after)
        tw_transport_lose_connection(p->transport);
}

static void sender_lost(tw_protocol *p, const tw_failure *reason)
{
    plan_of(p)->lost++;
}

static const tw_protocol_ops sender_ops = {
    .size = sizeof(tw_protocol),
    .connection_made = sender_made,
    .connection_lost = sender_lost,
};

typedef struct receiver {
    size_t got;
    size_t abort_at; /* abort after this many bytes (0: never) */
    int pause_at_once;
    int bad; /* bytes that differ from the pattern */
    int lost, lost_code;
} receiver;

static receiver *rcv(tw_protocol *p)
{
    return p->factory->user_data;
}

static void rcv_made(tw_protocol *p)
{
    if (rcv(p)->pause_at_once)
        tw_transport_pause_producing(p->transport);
}

static void rcv_data(tw_protocol *p, const void *data, size_t len)
{
    receiver *r = rcv(p);
    const uint8_t *d = data;
    for (size_t i = 0; i < len; i++)
        if (d[i] != pattern(r->got + i))
            r->bad++;
    r->got += len;
    if (r->abort_at && r->got >= r->abort_at)
        tw_transport_abort_connection(p->transport);
}

static void rcv_lost(tw_protocol *p, const tw_failure *reason)
{
    rcv(p)->lost++;
    rcv(p)->lost_code = tw_failure_code(reason);
}

static const tw_protocol_ops rcv_ops = {
    .size = sizeof(tw_protocol),
    .connection_made = rcv_made,
    .data_received = rcv_data,
    .connection_lost = rcv_lost,
};

static bool receiver_lost(void *arg)
{
    return ((receiver *)arg)->lost > 0;
}

typedef struct both {
    sender_plan *s;
    receiver *r;
} both;

static bool both_lost(void *arg)
{
    both *b = arg;
    return b->s->lost > 0 && b->r->lost > 0;
}

/* Runs one transfer over 127.0.0.1: a sender server, a receiver client. */
static void transfer(tw_reactor *r, sender_plan *pl, receiver *rc)
{
    tw_factory server = TW_FACTORY_INIT(&sender_ops, pl);
    tw_factory client = TW_FACTORY_INIT(&rcv_ops, rc);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(
        tw_connect_tcp(r, "127.0.0.1", tw_address_port(tw_port_address(port)), NULL, &client, NULL),
        0);
    both b = { pl, rc };
    assert_true(tt_run_until(r, both_lost, &b, 60));
    tw_port_stop_listening(port);
}

/* ------------------------------------------------------------ tests */

static void eight_mib_write_arrives_intact(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = 8 * MIB, .writes = 1, .lose_after = 1 };
    receiver rc = { 0 };
    transfer(r, &pl, &rc);
    assert_true(pl.zc_in_flight);
    assert_int_equal(rc.got, 8 * MIB);
    assert_int_equal(rc.bad, 0);
    assert_int_equal(rc.lost_code, TW_ECONNECTION_DONE);
    tw_reactor_free(r);
    assert_int_equal(tt_open_fds(), fds_before);
}

static void lent_memory_is_released_once_after_the_kernel(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = 8 * MIB, .writes = 2, .by_ref = 1, .lose_after = 1 };
    receiver rc = { 0 };
    transfer(r, &pl, &rc);
    assert_true(pl.zc_in_flight);
    assert_int_equal(rc.got, 16 * MIB);
    assert_int_equal(rc.bad, 0);
    tw_reactor_free(r);
    assert_int_equal(pl.releases, 2);
    assert_int_equal(pl.released_early, 0);
}

/* Large and small writes interleaved: zero-copy and plain sends take turns
 * and the bytes keep their order. */
static void mixed_sizes_keep_their_order(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = 64 * 1024, .writes = 64, .small = 100, .lose_after = 1 };
    receiver rc = { 0 };
    transfer(r, &pl, &rc);
    assert_int_equal(rc.got, 64 * (64 * 1024 + 100));
    assert_int_equal(rc.bad, 0);
    sender_plan ref = { .big = 20000, .writes = 50, .small = 3000, .by_ref = 1, .lose_after = 1 };
    receiver rc2 = { 0 };
    transfer(r, &ref, &rc2);
    assert_int_equal(rc2.got, 50 * 23000);
    assert_int_equal(rc2.bad, 0);
    tw_reactor_free(r);
    assert_int_equal(ref.releases, 50);
}

/* The peer resets while zero-copy sends are in flight. */
static void peer_reset_mid_send(void **state)
{
    int fds_before = tt_open_fds();
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = 8 * MIB, .writes = 2, .by_ref = 1 };
    receiver rc = { .abort_at = MIB };
    transfer(r, &pl, &rc);
    assert_int_equal(rc.bad, 0);
    assert_int_equal(pl.lost, 1);
    tt_run_for(r, 0.05);
    assert_int_equal(tw_reactor_connection_count(r), 0);
    tw_reactor_free(r);
    assert_int_equal(pl.releases, 2);
    assert_int_equal(tt_open_fds(), fds_before);
}

/* The reactor is freed while the kernel still holds a send: everything is
 * released once, nothing leaks (the sanitizer run checks). */
static void reactor_free_mid_send(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = 8 * MIB, .writes = 2, .by_ref = 1 };
    receiver rc = { .pause_at_once = 1 };
    tw_factory server = TW_FACTORY_INIT(&sender_ops, &pl);
    tw_factory client = TW_FACTORY_INIT(&rcv_ops, &rc);
    tw_port *port;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &server, &port), 0);
    assert_int_equal(
        tw_connect_tcp(r, "127.0.0.1", tw_address_port(tw_port_address(port)), NULL, &client, NULL),
        0);
    tt_run_for(r, 0.2);
    assert_true(pl.zc_in_flight);
    assert_int_equal(rc.got, 0); /* paused: the send cannot finish */
    tw_reactor_free(r);
    assert_int_equal(pl.lost, 1);
    assert_int_equal(pl.releases, 2);
}

/* By default, loopback peers get plain sends (they do not gain). The write
 * is lent: a copying one this large would go to send(2) before queueing. */
static void loopback_is_plain_by_default(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_AUTO, 0);
    sender_plan pl = { .big = MIB, .writes = 1, .by_ref = 1, .lose_after = 1 };
    receiver rc = { 0 };
    transfer(r, &pl, &rc);
    assert_true(pl.zc_decided);
    assert_false(pl.zc_on);
    assert_false(pl.zc_in_flight);
    assert_int_equal(rc.got, MIB);
    assert_int_equal(rc.bad, 0);
    tw_reactor_free(r);
}

/* Below the threshold, never. */
static void small_writes_are_plain(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 1);
    sender_plan pl = { .big = TW__URING_ZC_MIN_BYTES - 1, .writes = 4, .lose_after = 1 };
    receiver rc = { 0 };
    transfer(r, &pl, &rc);
    assert_false(pl.zc_in_flight);
    assert_int_equal(rc.got, 4 * (TW__URING_ZC_MIN_BYTES - 1));
    assert_int_equal(rc.bad, 0);
    tw_reactor_free(r);
}

/* Unix sockets have no zero-copy send: plain sends, whatever the mode. */
static void unix_sockets_are_plain(void **state)
{
    tw_reactor *r = uring_reactor(TW__URING_ZC_ALWAYS, 0);
    char *dir = tt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    sender_plan pl = { .big = MIB, .writes = 2, .lose_after = 1 };
    receiver rc = { 0 };
    tw_factory server = TW_FACTORY_INIT(&sender_ops, &pl);
    tw_factory client = TW_FACTORY_INIT(&rcv_ops, &rc);
    tw_port *port;
    assert_int_equal(tw_listen_unix(r, path, NULL, &server, &port), 0);
    assert_int_equal(tw_connect_unix(r, path, NULL, &client, NULL), 0);
    assert_true(tt_run_until(r, receiver_lost, &rc, 30));
    assert_false(pl.zc_in_flight);
    assert_false(pl.zc_on);
    assert_int_equal(rc.got, 2 * MIB);
    assert_int_equal(rc.bad, 0);
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    tt_rmdir(dir);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eight_mib_write_arrives_intact),
        cmocka_unit_test(lent_memory_is_released_once_after_the_kernel),
        cmocka_unit_test(mixed_sizes_keep_their_order),
        cmocka_unit_test(peer_reset_mid_send),
        cmocka_unit_test(reactor_free_mid_send),
        cmocka_unit_test(loopback_is_plain_by_default),
        cmocka_unit_test(small_writes_are_plain),
        cmocka_unit_test(unix_sockets_are_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
