/* ctest: label=integration timeout=60 */
/* ReconnectingClientFactory: retries with growing delays, reset on success,
 * stop_trying in every state (acceptance item 89). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/log.h"
#include "twirl/tcp.h"

typedef struct rc_test {
    tw_reconnecting_factory f;
    int failed, lost, made, started;
    double delays[16];
    int ndelays;
} rc_test;

static void made(tw_protocol *p)
{
    rc_test *t = (rc_test *)p->factory;
    t->made++;
}

static const tw_protocol_ops client_ops = { .connection_made = made };
static const tw_protocol_ops server_ops = { .size = sizeof(tw_protocol) };

static void on_started(tw_factory *f, tw_connector *c)
{
    ((rc_test *)f)->started++;
}

static void on_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    rc_test *t = (rc_test *)f;
    t->failed++;
}

static void on_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    ((rc_test *)f)->lost++;
}

static const tw_factory_ops user_hooks = {
    .started_connecting = on_started,
    .client_connection_failed = on_failed,
    .client_connection_lost = on_lost,
};

static void rc_init(rc_test *t)
{
    memset(t, 0, sizeof *t);
    tw_reconnecting_factory_init(&t->f, &client_ops, &user_hooks, NULL);
    t->f.initial_delay = 0.01;
    t->f.delay = 0.01;
    t->f.factor = 2;
    t->f.jitter = 0;
}

static uint16_t free_port(tw_reactor *r)
{
    tw_factory dummy = TW_FACTORY_INIT(&server_ops, NULL);
    tw_port *p;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", 0, NULL, &dummy, &p), 0);
    uint16_t port = tw_address_port(tw_port_address(p));
    tw_port_stop_listening(p);
    tw_reactor_iterate(r, 0);
    return port;
}

static bool failed_3(void *arg)
{
    return ((rc_test *)arg)->failed >= 3;
}

static bool made_1(void *arg)
{
    return ((rc_test *)arg)->made >= 1;
}

static void defaults_are_twisted(void **state)
{
    tw_reconnecting_factory f;
    tw_reconnecting_factory_init(&f, &client_ops, NULL, NULL);
    assert_true(f.initial_delay == 1.0);
    assert_true(f.max_delay == 3600.0);
    assert_true(f.factor > 2.718281828 && f.factor < 2.718281829);
    assert_true(f.jitter > 0.1196 && f.jitter < 0.1197);
    assert_int_equal(f.max_retries, -1);
    assert_true(f.continue_trying);
}

static void retries_until_the_server_appears(void **state)
{
    tw_reactor *r = tt_reactor();
    uint16_t port = free_port(r);
    rc_test t;
    rc_init(&t);
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", port, NULL, &t.f.base, NULL), 0);
    assert_true(tt_run_until(r, failed_3, &t, 5));
    /* delays grew by the factor: 0.02, 0.04, 0.08 ... */
    assert_true(t.f.delay >= 0.04 - 1e-9);
    assert_int_equal(t.f.retries, t.failed);
    tw_factory server = TW_FACTORY_INIT(&server_ops, NULL);
    tw_port *p;
    assert_int_equal(tw_listen_tcp(r, "127.0.0.1", port, NULL, &server, &p), 0);
    assert_true(tt_run_until(r, made_1, &t, 5));
    /* a successful connection reset the delay */
    assert_true(t.f.delay == t.f.initial_delay);
    assert_int_equal(t.f.retries, 0);
    /* stop trying while connected: the loss is not retried */
    tw_reconnecting_stop_trying(&t.f);
    tw_port_stop_listening(p);
    tw_connector_disconnect(t.f.connector);
    tt_run_for(r, 0.1);
    assert_int_equal(t.lost, 1);
    int started = t.started;
    tt_run_for(r, 0.1);
    assert_int_equal(t.started, started);
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void stop_trying_while_connecting(void **state)
{
    tw_reactor *r = tt_reactor();
    rc_test t;
    rc_init(&t);
    /* a port that never answers: the attempt stays in flight */
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", free_port(r), NULL, &t.f.base, NULL), 0);
    assert_int_equal(t.started, 1);
    tw_reconnecting_stop_trying(&t.f);
    assert_int_equal(t.failed, 1); /* stop_connecting reported at once */
    tt_run_for(r, 0.1);
    assert_int_equal(t.started, 1); /* and not retried */
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reactor_free(r);
}

static void max_retries(void **state)
{
    tw_reactor *r = tt_reactor();
    rc_test t;
    rc_init(&t);
    t.f.max_retries = 2;
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", free_port(r), NULL, &t.f.base, NULL), 0);
    tt_run_for(r, 0.3);
    assert_int_equal(t.failed, 3); /* the first attempt and two retries */
    assert_int_equal(tw_reactor_timer_count(r), 0);
    tw_reconnecting_stop_trying(&t.f);
    tw_reactor_free(r);
}

static double fixed_half(void *arg)
{
    return 0.5;
}

static void jitter_uses_the_random_source(void **state)
{
    tw_reactor *r = tt_reactor();
    rc_test t;
    rc_init(&t);
    t.f.jitter = 0.1;
    t.f.random = fixed_half;
    t.f.connector = NULL;
    tw_connector *c;
    assert_int_equal(tw_connect_tcp(r, "127.0.0.1", free_port(r), NULL, &t.f.base, &c), 0);
    assert_true(tt_run_until(r, failed_3, &t, 5));
    /* Box-Muller with u1 = u2 = 0.5: mu + sigma * sqrt(2 ln 2) * cos(pi) */
    tw_reconnecting_stop_trying(&t.f);
    assert_true(t.f.delay > 0);
    tw_reconnecting_reset_delay(&t.f);
    assert_true(t.f.delay == t.f.initial_delay);
    assert_int_equal(t.f.retries, 0);
    tw_reactor_free(r);
}

int main(void)
{
    if (!getenv("TWIRL_LOG_LEVEL"))
        tw_log_set_level(TW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_twisted),
        cmocka_unit_test(retries_until_the_server_appears),
        cmocka_unit_test(stop_trying_while_connecting),
        cmocka_unit_test(max_retries),
        cmocka_unit_test(jitter_uses_the_random_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
