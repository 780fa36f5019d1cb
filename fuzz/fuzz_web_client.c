/* Fuzzes the HTTP client's response handling: random bytes are a server's
 * answer to one request, fed to the agent's connection in pieces, through
 * the base agent alone or wrapped in the redirect and content decoder
 * agents, with the body read whole, delivered late, or to a consumer that
 * pauses at every piece. Then the server closes and everything is freed
 * (the sanitizers check that nothing leaks or is touched after free).
 *
 * Input: byte 0 is flags (bit 0 HEAD, bit 1 decoder, bit 2 redirects, bit 3
 * late delivery, bit 4 pausing consumer, bit 5 stop the body after a piece,
 * bit 6 small read_body limit); byte 1 the piece size (0: all at once);
 * the rest is the server's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/testing.h"
#include "twirl/web_client.h"

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                              \
        }                                                                         \
    } while (0)

enum { MAX_CONNS = 32 };

typedef struct world {
    tw_reactor *r;
    tw_string_transport *st[MAX_CONNS];
    tw_protocol *p[MAX_CONNS];
    size_t n;
} world;

typedef struct fake_ep {
    tw_client_endpoint base;
    world *w;
} fake_ep;

static tw_deferred *fake_connect(tw_client_endpoint *ep, tw_factory *f)
{
    world *w = ((fake_ep *)ep)->w;
    if (w->n == MAX_CONNS)
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_ELIMIT, "no more connections"));
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", 80, SOCK_STREAM);
    tw_string_transport *st = tw_string_transport_new(w->r);
    tw_protocol *p = st ? tw_factory_build(f, &a) : NULL;
    if (!p) {
        tw_string_transport_free(st);
        return tw_fail(tw_failure_from_code(TW_ENOMEM));
    }
    w->st[w->n] = st;
    w->p[w->n] = p;
    w->n++;
    tw_string_transport_connect(st, p);
    return tw_succeed(tw_value_make(p, NULL));
}

static const tw_client_endpoint_ops fake_ops = { "fake", fake_connect, NULL };

static int endpoint_for(tw_reactor *r, bool https, const char *host, uint16_t port, void *arg,
                        tw_client_endpoint **out)
{
    fake_ep *e = calloc(1, sizeof *e);
    if (!e)
        return TW_ENOMEM;
    e->base.ops = &fake_ops;
    e->base.reactor = r;
    e->w = arg;
    *out = &e->base;
    return 0;
}

typedef struct run {
    unsigned flags;
    tw_response *resp;
    int fired;
    int body_ends;
    uint64_t body_bytes;
    bool paused;
} run;

static void c_data(tw_response *r, const char *data, size_t len, void *arg)
{
    run *x = arg;
    CHECK(x->body_ends == 0);
    CHECK(!x->paused);
    x->body_bytes += len;
    if (x->flags & 16) {
        x->paused = true;
        tw_response_pause_body(r);
    }
    if (x->flags & 32)
        tw_response_stop_body(r);
}

static void c_end(tw_response *r, const tw_failure *reason, void *arg)
{
    run *x = arg;
    x->body_ends++;
}

static const tw_response_body_ops c_ops = { c_data, c_end };

static tw_result body_done(tw_result *in, void *arg)
{
    run *x = arg;
    x->body_ends++;
    return TW_RESULT_NONE; /* the chain frees the bytes or the failure */
}

static void start_body(run *x)
{
    if (x->flags & (16 | 32)) {
        tw_response_deliver_body(x->resp, &c_ops, x);
    } else {
        tw_deferred *d = tw_read_body(x->resp, (x->flags & 64) ? 16 : 0);
        if (d) {
            tw_deferred_add_both(d, body_done, x);
            tw_deferred_unref(d);
        }
    }
}

static tw_result got(tw_result *in, void *arg)
{
    run *x = arg;
    x->fired = 1;
    x->resp = tw_response_ref(in->value.ptr);
    if (!(x->flags & 8))
        start_body(x);
    return TW_RESULT_NONE;
}

static tw_result failed(tw_result *in, void *arg)
{
    run *x = arg;
    x->fired = 2;
    return TW_RESULT_NONE;
}

static void settle(world *w, run *x)
{
    for (int i = 0; i < 4; i++) {
        tw_clock_advance(w->r, 0);
        if (x->paused && x->resp) {
            x->paused = false;
            tw_response_resume_body(x->resp);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned flags = data[0];
    size_t piece = data[1];
    data += 2;
    size -= 2;

    world w = { 0 };
    w.r = tw_test_clock_new();
    CHECK(w.r);
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.endpoint_for = endpoint_for;
    o.endpoint_arg = &w;
    tw_agent *base = NULL, *redirect = NULL, *decoder = NULL, *top;
    CHECK(tw_agent_new(w.r, &o, &base) == 0);
    top = base;
    if (flags & 4) {
        CHECK(tw_redirect_agent_new(top, 3, &redirect) == 0);
        top = redirect;
    }
    if (flags & 2) {
        tw_content_decoder_options dopts = { .max_decoded_bytes = 1 << 20 };
        CHECK(tw_content_decoder_agent_new(top, &dopts, &decoder) == 0);
        top = decoder;
    }
    run x = { .flags = flags };
    tw_deferred *d =
        tw_agent_request(top, (flags & 1) ? "HEAD" : "GET", "http://fuzz/x", NULL, 0, NULL);
    CHECK(d);
    tw_deferred_add_callbacks(d, got, failed, &x);

    size_t at = 0;
    while (at < size) {
        size_t n = piece ? piece : size;
        if (n > size - at)
            n = size - at;
        /* Whatever connection is the latest takes the bytes (a redirect
         * may have made a new one). */
        if (w.n > 0)
            tw_string_transport_deliver(w.st[w.n - 1], data + at, n);
        at += n;
        settle(&w, &x);
        if (x.fired == 1 && (x.flags & 8) && at >= size / 2) {
            x.flags &= ~8u;
            start_body(&x);
        }
    }
    for (size_t i = 0; i < w.n; i++)
        tw_string_transport_end(w.st[i], 0);
    settle(&w, &x);
    if (x.fired == 1 && (x.flags & 8)) {
        x.flags &= ~8u;
        start_body(&x);
        settle(&w, &x);
    }
    if (x.fired == 1)
        CHECK(x.body_ends <= 1);
    if (!x.fired)
        tw_deferred_cancel(d);
    tw_deferred_unref(d);
    tw_response_unref(x.resp);

    tw_agent_free(decoder);
    tw_agent_free(redirect);
    tw_agent_free(base);
    for (size_t i = 0; i < w.n; i++)
        tw_string_transport_end(w.st[i], 0);
    tw_clock_advance(w.r, 0);
    for (size_t i = 0; i < w.n; i++) {
        tw_protocol_free(w.p[i]);
        tw_string_transport_free(w.st[i]);
    }
    tw_clock_advance(w.r, 0);
    tw_reactor_free(w.r);
    return 0;
}
