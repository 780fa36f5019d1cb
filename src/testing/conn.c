/* conn.c — tw_test_conn (a protocol on a string transport in one call) and
 * tw_test_feed_splits (one input fed at every split). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing/testing_internal.h"

struct tw_test_conn {
    tw_string_transport *st;
    tw_protocol *p;
    tw_factory local; /* the factory an ops-built protocol points to */
};

tw_test_conn *tw_test_conn_new_opts(const tw_test_conn_options *o)
{
    if (!o->factory && !o->protocol)
        return NULL;
    tw_test_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->st = tw_string_transport_new(o->reactor);
    if (!c->st) {
        free(c);
        return NULL;
    }
    tw_address peer;
    tw_transport_get_peer(tw_string_transport_base(c->st), &peer);
    if (o->factory) {
        c->p = tw_factory_build(o->factory, &peer);
    } else {
        c->local.protocol = o->protocol;
        c->local.user_data = o->user_data;
        c->p = tw_factory_build(&c->local, &peer);
    }
    if (!c->p) {
        tw_string_transport_free(c->st);
        free(c);
        return NULL;
    }
    tw_string_transport_connect(c->st, c->p);
    return c;
}

tw_test_conn *tw_test_conn_new(tw_factory *f)
{
    tw_test_conn_options o = { .factory = f };
    return tw_test_conn_new_opts(&o);
}

void tw_test_conn_free(tw_test_conn *c)
{
    if (!c)
        return;
    tw_string_transport_end(c->st, 0); /* TW_ECLOSED if it already ended */
    tw_string_transport_free(c->st);   /* first: it looks at the protocol */
    tw_protocol_free(c->p);
    free(c);
}

tw_protocol *tw_test_conn_protocol(tw_test_conn *c)
{
    return c->p;
}

tw_string_transport *tw_test_conn_transport(tw_test_conn *c)
{
    return c->st;
}

int tw_test_conn_feed(tw_test_conn *c, const void *data, size_t len)
{
    return tw_string_transport_deliver(c->st, data, len);
}

int tw_test_conn_feed_str(tw_test_conn *c, const char *s)
{
    return tw_string_transport_deliver(c->st, s, strlen(s));
}

const char *tw_test_conn_written(tw_test_conn *c, size_t *len)
{
    return tw_string_transport_value(c->st, len);
}

void tw_test_conn_clear(tw_test_conn *c)
{
    tw_string_transport_clear(c->st);
}

bool tw_test_conn_disconnecting(tw_test_conn *c)
{
    return tw_string_transport_base(c->st)->state != TW_TRANSPORT_OPEN;
}

int tw_test_conn_lose(tw_test_conn *c, int code)
{
    return tw_string_transport_end(c->st, code);
}

/* ------------------------------------------------------------ splits */

/* Feeds data in pieces of `chunk` bytes (the whole when chunk is 0, two
 * parts at `cut` when cut is not 0). Stops at the first refused feed: the
 * protocol closed, and a real transport would read no further. */
static void feed_run(tw_test_conn *c, const char *data, size_t len, const tw_test_split *how)
{
    if (how->cut) {
        if (tw_test_conn_feed(c, data, how->cut) == 0)
            tw_test_conn_feed(c, data + how->cut, len - how->cut);
        return;
    }
    size_t step = how->chunk ? how->chunk : len;
    for (size_t at = 0; at < len; at += step) {
        size_t n = len - at < step ? len - at : step;
        if (tw_test_conn_feed(c, data + at, n) < 0)
            return;
    }
}

static int one_run(const tw_test_conn_options *o, const char *data, size_t len,
                   const tw_test_split *how, tw_test_check_fn check, void *arg)
{
    tw_test_conn *c = tw_test_conn_new_opts(o);
    if (!c)
        return (!o->factory && !o->protocol) ? TW_EINVAL : TW_ENOMEM;
    feed_run(c, data, len, how);
    if (check)
        check(c, how, arg);
    tw_test_conn_free(c);
    return 0;
}

int tw_test_feed_splits(const tw_test_conn_options *o, const void *data, size_t len,
                        tw_test_check_fn check, void *arg)
{
    const char *bytes = data;
    int runs = 0, rc;
    tw_test_split how;

    memset(&how, 0, sizeof how);
    snprintf(how.desc, sizeof how.desc, "whole");
    if ((rc = one_run(o, bytes, len, &how, check, arg)) < 0)
        return rc;
    runs++;

    for (size_t cut = 1; cut < len; cut++) {
        memset(&how, 0, sizeof how);
        how.cut = cut;
        snprintf(how.desc, sizeof how.desc, "cut at %zu", cut);
        if ((rc = one_run(o, bytes, len, &how, check, arg)) < 0)
            return rc;
        runs++;
    }

    for (size_t chunk = 1; chunk <= TW_TEST_MAX_CHUNK && chunk < len; chunk++) {
        memset(&how, 0, sizeof how);
        how.chunk = chunk;
        snprintf(how.desc, sizeof how.desc, "chunks of %zu", chunk);
        if ((rc = one_run(o, bytes, len, &how, check, arg)) < 0)
            return rc;
        runs++;
    }
    return runs;
}
