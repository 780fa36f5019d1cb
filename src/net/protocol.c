/* protocol.c — protocol allocation, factories, the transport dispatch
 * functions, and Twisted's ReconnectingClientFactory. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/log.h"
#include "twirl/transport.h"

/* ------------------------------------------------------------ protocols */

tw_protocol *tw_protocol_alloc(const tw_protocol_ops *ops)
{
    size_t size = ops->size ? ops->size : sizeof(tw_protocol);
    tw_protocol *p = calloc(1, size < sizeof(tw_protocol) ? sizeof(tw_protocol) : size);
    if (p)
        p->ops = ops;
    return p;
}

void tw_protocol_free(tw_protocol *p)
{
    if (!p)
        return;
    if (p->ops && p->ops->destroy)
        p->ops->destroy(p);
    free(p);
}

/* ------------------------------------------------------------ factories */

tw_factory *tw_factory_for_protocol(const tw_protocol_ops *ops, void *user_data)
{
    tw_factory *f = calloc(1, sizeof *f);
    if (f) {
        f->protocol = ops;
        f->user_data = user_data;
    }
    return f;
}

void tw_factory_free(tw_factory *f)
{
    free(f);
}

tw_protocol *tw_factory_build(tw_factory *f, const tw_address *addr)
{
    tw_protocol *p;
    if (f->ops && f->ops->build_protocol)
        p = f->ops->build_protocol(f, addr);
    else
        p = f->protocol ? tw_protocol_alloc(f->protocol) : NULL;
    /* A wrapping factory's build may return a protocol that already names
     * its own (inner) factory: keep that, as Twisted's wrappers do. */
    if (p && !p->factory)
        p->factory = f;
    return p;
}

void tw_factory_do_start(tw_factory *f)
{
    if (f->num_ports++ == 0 && f->ops && f->ops->start_factory)
        f->ops->start_factory(f);
}

void tw_factory_do_stop(tw_factory *f)
{
    if (f->num_ports <= 0)
        return;
    if (--f->num_ports == 0 && f->ops && f->ops->stop_factory)
        f->ops->stop_factory(f);
}

/* ------------------------------------------------------------ transports */

static void as_pause(tw_producer *p)
{
    tw_transport *t = (tw_transport *)((char *)p - offsetof(tw_transport, as_producer));
    tw_transport_pause_producing(t);
}

static void as_resume(tw_producer *p)
{
    tw_transport *t = (tw_transport *)((char *)p - offsetof(tw_transport, as_producer));
    tw_transport_resume_producing(t);
}

static void as_stop(tw_producer *p)
{
    tw_transport *t = (tw_transport *)((char *)p - offsetof(tw_transport, as_producer));
    tw_transport_stop_producing(t);
}

static const tw_producer_ops as_producer_ops = { as_pause, as_resume, as_stop };

void tw_transport_init(tw_transport *t, const tw_transport_ops *ops, tw_reactor *r)
{
    t->ops = ops;
    t->reactor = r;
    t->protocol = NULL;
    t->state = TW_TRANSPORT_OPEN;
    t->as_producer.ops = &as_producer_ops;
}

tw_producer *tw_transport_as_producer(tw_transport *t)
{
    return &t->as_producer;
}

int tw_transport_write(tw_transport *t, const void *data, size_t len)
{
    return t->ops->write(t, data, len);
}

int tw_transport_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    return t->ops->writev(t, iov, iovcnt);
}

int tw_transport_write_str(tw_transport *t, const char *s)
{
    return t->ops->write(t, s, strlen(s));
}

int tw_transport_printf(tw_transport *t, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TW_EINVAL;
    if ((size_t)n < sizeof small)
        return t->ops->write(t, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return TW_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = t->ops->write(t, big, (size_t)n);
    free(big);
    return rc;
}

int tw_transport_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                           void *release_arg)
{
    if (t->ops->write_ref)
        return t->ops->write_ref(t, data, len, release, release_arg);
    int rc = t->ops->write(t, data, len);
    if (release)
        release(release_arg);
    return rc;
}

void tw_transport_lose_connection(tw_transport *t)
{
    t->ops->lose_connection(t);
}

void tw_transport_abort_connection(tw_transport *t)
{
    t->ops->abort_connection(t);
}

int tw_transport_lose_write_connection(tw_transport *t)
{
    return t->ops->lose_write_connection ? t->ops->lose_write_connection(t) : TW_EINVAL;
}

void tw_transport_pause_producing(tw_transport *t)
{
    if (t->ops->pause_producing)
        t->ops->pause_producing(t);
}

void tw_transport_resume_producing(tw_transport *t)
{
    if (t->ops->resume_producing)
        t->ops->resume_producing(t);
}

void tw_transport_stop_producing(tw_transport *t)
{
    if (t->ops->stop_producing)
        t->ops->stop_producing(t);
    else
        t->ops->lose_connection(t);
}

int tw_transport_register_producer(tw_transport *t, tw_producer *p, bool streaming)
{
    return t->ops->register_producer ? t->ops->register_producer(t, p, streaming) : TW_EINVAL;
}

void tw_transport_unregister_producer(tw_transport *t)
{
    if (t->ops->unregister_producer)
        t->ops->unregister_producer(t);
}

int tw_transport_get_peer(tw_transport *t, tw_address *out)
{
    if (!t->ops->get_peer) {
        memset(out, 0, sizeof *out);
        return TW_EINVAL;
    }
    return t->ops->get_peer(t, out);
}

int tw_transport_get_host(tw_transport *t, tw_address *out)
{
    if (!t->ops->get_host) {
        memset(out, 0, sizeof *out);
        return TW_EINVAL;
    }
    return t->ops->get_host(t, out);
}

int tw_transport_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    return t->ops->set_option ? t->ops->set_option(t, opt, value) : TW_EINVAL;
}

int tw_transport_set_tcp_nodelay(tw_transport *t, bool on)
{
    return tw_transport_set_option(t, TW_OPT_TCP_NODELAY, on);
}

int tw_transport_set_tcp_keepalive(tw_transport *t, bool on)
{
    return tw_transport_set_option(t, TW_OPT_TCP_KEEPALIVE, on ? 7200 : 0);
}

size_t tw_transport_buffered(const tw_transport *t)
{
    return t->ops->buffered ? t->ops->buffered(t) : 0;
}

int tw_transport_fd(const tw_transport *t)
{
    return t->ops->fd ? t->ops->fd(t) : -1;
}

/* --------------------------------------------- reconnecting client factory */

static tw_reconnecting_factory *rcf(tw_factory *f)
{
    return (tw_reconnecting_factory *)f;
}

static double default_random(void *arg)
{
    (void)arg;
    return drand48();
}

/* A normal variate (Box-Muller) for Twisted's random.normalvariate. */
static double normal(tw_reconnecting_factory *f, double mu, double sigma)
{
    double u1 = f->random(f->rng_arg), u2 = f->random(f->rng_arg);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return mu + sigma * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void reconnect_now(void *arg)
{
    tw_reconnecting_factory *f = arg;
    f->call_id = TW_TIMER_NONE;
    if (f->connector && f->continue_trying)
        tw_connector_connect(f->connector);
}

void tw_reconnecting_retry(tw_reconnecting_factory *f, tw_connector *c)
{
    if (!f->continue_trying)
        return;
    if (c)
        f->connector = c;
    f->retries++;
    if (f->max_retries >= 0 && f->retries > f->max_retries) {
        tw_log(TW_LOG_INFO, "reconnect", "abandoning after %d retries", f->retries - 1);
        return;
    }
    f->delay = fmin(f->delay * f->factor, f->max_delay);
    if (f->jitter > 0)
        f->delay = normal(f, f->delay, f->delay * f->jitter);
    if (f->delay < 0)
        f->delay = 0;
    tw_log(TW_LOG_DEBUG, "reconnect", "will retry in %.3f seconds", f->delay);
    tw_timer_cancel(f->call_id);
    f->call_id = tw_call_later(tw_connector_reactor(f->connector), f->delay, reconnect_now, f);
}

void tw_reconnecting_reset_delay(tw_reconnecting_factory *f)
{
    f->delay = f->initial_delay;
    f->retries = 0;
}

void tw_reconnecting_stop_trying(tw_reconnecting_factory *f)
{
    f->continue_trying = false;
    tw_timer_cancel(f->call_id);
    f->call_id = TW_TIMER_NONE;
    if (f->connector)
        tw_connector_stop_connecting(f->connector);
}

static tw_protocol *rc_build(tw_factory *base, const tw_address *addr)
{
    tw_reconnecting_factory *f = rcf(base);
    tw_protocol *p;
    if (f->user_ops && f->user_ops->build_protocol)
        p = f->user_ops->build_protocol(base, addr);
    else
        p = base->protocol ? tw_protocol_alloc(base->protocol) : NULL;
    /* The Twisted idiom: a built protocol means the connection succeeded. */
    if (p)
        tw_reconnecting_reset_delay(f);
    return p;
}

static void rc_start(tw_factory *base)
{
    tw_reconnecting_factory *f = rcf(base);
    if (f->user_ops && f->user_ops->start_factory)
        f->user_ops->start_factory(base);
}

static void rc_stop(tw_factory *base)
{
    tw_reconnecting_factory *f = rcf(base);
    if (f->user_ops && f->user_ops->stop_factory)
        f->user_ops->stop_factory(base);
}

static void rc_started(tw_factory *base, tw_connector *c)
{
    tw_reconnecting_factory *f = rcf(base);
    if (f->connector != c) {
        if (f->connector)
            tw_connector_release(f->connector);
        tw_connector_retain(c);
        f->connector = c;
    }
    if (f->user_ops && f->user_ops->started_connecting)
        f->user_ops->started_connecting(base, c);
}

static void rc_failed(tw_factory *base, tw_connector *c, const tw_failure *reason)
{
    tw_reconnecting_factory *f = rcf(base);
    if (f->user_ops && f->user_ops->client_connection_failed)
        f->user_ops->client_connection_failed(base, c, reason);
    if (f->continue_trying)
        tw_reconnecting_retry(f, c);
    else if (f->connector) {
        tw_connector *held = f->connector;
        f->connector = NULL;
        tw_connector_release(held);
    }
}

static void rc_lost(tw_factory *base, tw_connector *c, const tw_failure *reason)
{
    tw_reconnecting_factory *f = rcf(base);
    if (f->user_ops && f->user_ops->client_connection_lost)
        f->user_ops->client_connection_lost(base, c, reason);
    if (f->continue_trying)
        tw_reconnecting_retry(f, c);
    else if (f->connector) {
        tw_connector *held = f->connector;
        f->connector = NULL;
        tw_connector_release(held);
    }
}

static const tw_factory_ops reconnecting_ops = {
    .build_protocol = rc_build,
    .start_factory = rc_start,
    .stop_factory = rc_stop,
    .started_connecting = rc_started,
    .client_connection_failed = rc_failed,
    .client_connection_lost = rc_lost,
};

void tw_reconnecting_factory_init(tw_reconnecting_factory *f, const tw_protocol_ops *protocol,
                                  const tw_factory_ops *user_ops, void *user_data)
{
    memset(f, 0, sizeof *f);
    f->base.ops = &reconnecting_ops;
    f->base.protocol = protocol;
    f->base.user_data = user_data;
    f->user_ops = user_ops;
    f->initial_delay = 1.0;
    f->max_delay = 3600.0;
    f->factor = 2.7182818284590451;
    f->jitter = 0.11962656472;
    f->max_retries = -1;
    f->delay = f->initial_delay;
    f->continue_trying = true;
    f->random = default_random;
}
