/* policies.c — twisted.protocols.policies, part 1: the protocol wrapper
 * and its transport, and WrappingFactory. TimeoutMixin and TimeoutFactory
 * are in policies_timeout.c, the limits and ThrottlingFactory in
 * policies_limits.c.
 *
 * Every policy is a wrapping factory with its own build_protocol and a
 * tw_wrapper_ops table, the same hooks a user's wrapper gets. A wrapper is
 * one allocation holding the protocol the real transport calls, the
 * transport the wrapped protocol sees, and the "membrane" producer it
 * registers below on behalf of the wrapped protocol's producer, so that a
 * hold (throttling) and the transport's own flow control combine instead
 * of undoing each other.
 *
 * Lifetimes: a wrapper frees the protocol it wraps right after that
 * protocol's connection_lost (or in destroy, if it was never connected). A
 * wrapping factory counts the wrappers not yet destroyed and the ports and
 * connectors using it; tw_wrapping_factory_free releases the memory only
 * when both are zero, so the owner may let go at any time. */
#include <stdlib.h>
#include <string.h>

#include "proto/policies_internal.h"
#include "twirl/log.h"

enum wrapper_flags {
    W_MADE = 1u << 0,         /* connection_made ran */
    W_LISTED = 1u << 1,       /* in the factory's list of open connections */
    W_RELEASED = 1u << 2,     /* the policy stopped counting it */
    W_USER_PAUSED = 1u << 3,  /* the wrapped protocol paused reading */
    W_READS_HELD = 1u << 4,   /* tw_protocol_wrapper_hold_reads */
    W_BELOW_PAUSED = 1u << 5, /* we paused the real transport's reading */
    W_WRITES_HELD = 1u << 6,  /* tw_protocol_wrapper_hold_writes */
    W_LOWER_PAUSED = 1u << 7, /* the real transport paused our membrane */
    W_PROD_PAUSED = 1u << 8,  /* we paused the wrapped protocol's producer */
    W_PULL_PENDING = 1u << 9, /* a pull producer's turn came while held */
    W_STREAMING = 1u << 10    /* the registered producer is a push producer */
};

static const tw_wrapper_ops no_hooks;
static const tw_protocol_ops wrapper_ops;
static const tw_transport_ops wrapper_transport_ops;
static const tw_producer_ops membrane_ops;

static inline tw_protocol_wrapper *of_transport(const tw_transport *t)
{
    return (tw_protocol_wrapper *)((char *)t - offsetof(tw_protocol_wrapper, transport));
}

static inline tw_protocol_wrapper *of_membrane(tw_producer *p)
{
    return (tw_protocol_wrapper *)((char *)p - offsetof(tw_protocol_wrapper, membrane));
}

static inline tw_transport *below(const tw_protocol_wrapper *w)
{
    return w->base.transport;
}

static bool below_open(const tw_protocol_wrapper *w)
{
    return w->base.transport && w->base.transport->state == TW_TRANSPORT_OPEN;
}

/* The wrapped protocol reads its transport's state (a receiver stops
 * parsing once it is closing): keep it at least as far along as the real
 * transport's, which may change on its own (a write limit, stop_producing,
 * a policy closing the connection). */
static void sync_state(tw_protocol_wrapper *w)
{
    tw_transport *t = below(w);
    if (t && t->state > w->transport.state)
        w->transport.state = t->state;
}

static void mark_closing(tw_protocol_wrapper *w)
{
    if (w->transport.state == TW_TRANSPORT_OPEN)
        w->transport.state = TW_TRANSPORT_DISCONNECTING;
    sync_state(w);
}

/* ------------------------------------------------------------ factory memory */

static void maybe_free(tw__wfactory *wf)
{
    if (!wf->owner_gone || wf->live > 0 || wf->base.num_ports > 0)
        return;
    if (wf->fini)
        wf->fini(wf);
    if (wf->hooks->release)
        wf->hooks->release(wf->base.user_data);
    free(wf);
}

static void list_add(tw__wfactory *wf, tw_protocol_wrapper *w)
{
    w->prev = NULL;
    w->next = wf->head;
    if (wf->head)
        wf->head->prev = w;
    wf->head = w;
    wf->open++;
    w->flags |= W_LISTED;
}

static void list_remove(tw__wfactory *wf, tw_protocol_wrapper *w)
{
    if (!(w->flags & W_LISTED))
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        wf->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    wf->open--;
    w->flags &= ~W_LISTED;
}

static void release_conn(tw_protocol_wrapper *w)
{
    if (w->flags & W_RELEASED)
        return;
    w->flags |= W_RELEASED;
    tw__wfactory *wf = tw__wf_of(w);
    if (wf->release_conn)
        wf->release_conn(wf, w);
}

/* ------------------------------------------------------------ the wrapper protocol */

static void w_made(tw_protocol *p)
{
    tw_protocol_wrapper *w = (tw_protocol_wrapper *)p;
    tw__wfactory *wf = tw__wf_of(w);
    tw_transport_init(&w->transport, &wrapper_transport_ops, p->transport->reactor);
    w->transport.protocol = w->wrapped;
    w->membrane.ops = &membrane_ops;
    w->wrapped->transport = &w->transport;
    w->flags |= W_MADE;
    list_add(wf, w);
    sync_state(w);
    if (wf->hooks->connection_made)
        wf->hooks->connection_made(w);
    sync_state(w);
    if (w->wrapped->ops->connection_made)
        w->wrapped->ops->connection_made(w->wrapped);
}

static void w_data(tw_protocol *p, const void *data, size_t len)
{
    tw_protocol_wrapper *w = (tw_protocol_wrapper *)p;
    tw__wfactory *wf = tw__wf_of(w);
    sync_state(w);
    if (wf->hooks->data_received)
        wf->hooks->data_received(w, data, len);
    sync_state(w);
    if (w->wrapped && w->wrapped->ops->data_received)
        w->wrapped->ops->data_received(w->wrapped, data, len);
}

static void w_eof(tw_protocol *p)
{
    tw_protocol_wrapper *w = (tw_protocol_wrapper *)p;
    sync_state(w);
    if (w->wrapped && w->wrapped->ops->eof_received)
        w->wrapped->ops->eof_received(w->wrapped);
    else
        tw_protocol_wrapper_lose_connection(w); /* what a transport does without the hook */
}

static void w_lost(tw_protocol *p, const tw_failure *reason)
{
    tw_protocol_wrapper *w = (tw_protocol_wrapper *)p;
    tw__wfactory *wf = tw__wf_of(w);
    w->transport.state = TW_TRANSPORT_CLOSED;
    list_remove(wf, w);
    release_conn(w);
    if (wf->hooks->connection_lost)
        wf->hooks->connection_lost(w, reason);
    /* A producer registered through us: the transport below stopped our
     * membrane (which passed it on); if it did not, do what a transport
     * does at the end. */
    tw_producer *prod = w->producer;
    w->producer = NULL;
    if (prod && prod->ops->stop_producing)
        prod->ops->stop_producing(prod);
    tw_protocol *in = w->wrapped;
    if (in) {
        if (in->ops->connection_lost)
            in->ops->connection_lost(in, reason);
        in->transport = NULL;
        w->wrapped = NULL; /* Twisted drops its reference here */
        tw_protocol_free(in);
    }
}

static void w_destroy(tw_protocol *p)
{
    tw_protocol_wrapper *w = (tw_protocol_wrapper *)p;
    tw__wfactory *wf = tw__wf_of(w);
    list_remove(wf, w);
    release_conn(w);
    if (wf->hooks->destroy)
        wf->hooks->destroy(w);
    if (w->wrapped) {
        tw_protocol_free(w->wrapped); /* built, never connected */
        w->wrapped = NULL;
    }
    wf->live--;
    maybe_free(wf);
}

static const tw_protocol_ops wrapper_ops = {
    .size = sizeof(tw_protocol_wrapper),
    .connection_made = w_made,
    .data_received = w_data,
    .eof_received = w_eof,
    .connection_lost = w_lost,
    .destroy = w_destroy,
};

/* ------------------------------------------------------------ the wrapper transport */

static int t_write(tw_transport *t, const void *data, size_t len)
{
    tw_protocol_wrapper *w = of_transport(t);
    tw_transport *low = below(w);
    if (!low)
        return TW_ECLOSED;
    if (tw__wf_of(w)->hooks->wrote)
        tw__wf_of(w)->hooks->wrote(w, len);
    int rc = tw_transport_write(low, data, len);
    sync_state(w);
    return rc;
}

static int t_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    tw_protocol_wrapper *w = of_transport(t);
    tw_transport *low = below(w);
    if (!low)
        return TW_ECLOSED;
    if (tw__wf_of(w)->hooks->wrote) {
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
            total += iov[i].iov_len;
        tw__wf_of(w)->hooks->wrote(w, total);
    }
    int rc = tw_transport_writev(low, iov, iovcnt);
    sync_state(w);
    return rc;
}

static int t_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                       void *release_arg)
{
    tw_protocol_wrapper *w = of_transport(t);
    tw_transport *low = below(w);
    if (!low) {
        if (release)
            release(release_arg);
        return TW_ECLOSED;
    }
    if (tw__wf_of(w)->hooks->wrote)
        tw__wf_of(w)->hooks->wrote(w, len);
    int rc = tw_transport_write_ref(low, data, len, release, release_arg);
    sync_state(w);
    return rc;
}

static void t_lose(tw_transport *t)
{
    tw_protocol_wrapper_lose_connection(of_transport(t));
}

static void t_abort(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (below(w))
        tw_transport_abort_connection(below(w));
    mark_closing(w);
}

static int t_lose_write(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (!below(w))
        return TW_ECLOSED;
    int rc = tw_transport_lose_write_connection(below(w));
    sync_state(w);
    return rc;
}

/* Reading: the wrapped protocol's pause and resume reach the transport as
 * they would without us, except that a hold keeps it paused. */
static void t_pause(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    w->flags |= W_USER_PAUSED;
    if (below(w)) {
        w->flags |= W_BELOW_PAUSED;
        tw_transport_pause_producing(below(w));
    }
}

static void t_resume(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    w->flags &= ~W_USER_PAUSED;
    if (below(w) && !(w->flags & W_READS_HELD)) {
        w->flags &= ~W_BELOW_PAUSED;
        tw_transport_resume_producing(below(w));
    }
}

static void t_stop(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (below(w))
        tw_transport_stop_producing(below(w));
    mark_closing(w);
}

static void pause_user_producer(tw_protocol_wrapper *w)
{
    w->flags |= W_PROD_PAUSED;
    if (w->producer->ops->pause_producing)
        w->producer->ops->pause_producing(w->producer);
}

/* A push producer runs exactly when neither the transport below nor a hold
 * wants it paused; it is told only of changes. */
static void update_push_producer(tw_protocol_wrapper *w)
{
    if (!w->producer || !(w->flags & W_STREAMING))
        return;
    bool want = (w->flags & (W_LOWER_PAUSED | W_WRITES_HELD)) != 0;
    bool is = (w->flags & W_PROD_PAUSED) != 0;
    if (want && !is) {
        pause_user_producer(w);
    } else if (!want && is) {
        w->flags &= ~W_PROD_PAUSED;
        if (w->producer->ops->resume_producing)
            w->producer->ops->resume_producing(w->producer);
    }
}

static int t_register(tw_transport *t, tw_producer *p, bool streaming)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (!below(w))
        return TW_ECLOSED;
    if (w->producer)
        return TW_EBUSY;
    /* Set first: the transport may give a pull producer its turn at once. */
    w->producer = p;
    w->flags &= ~(W_LOWER_PAUSED | W_PROD_PAUSED | W_PULL_PENDING | W_STREAMING);
    if (streaming)
        w->flags |= W_STREAMING;
    int rc = tw_transport_register_producer(below(w), &w->membrane, streaming);
    if (rc < 0) {
        if (w->producer == p)
            w->producer = NULL;
        return rc;
    }
    if (w->producer == p && streaming)
        update_push_producer(w); /* registered while writes are held */
    return 0;
}

static void t_unregister(tw_transport *t)
{
    tw_protocol_wrapper *w = of_transport(t);
    w->producer = NULL;
    w->flags &= ~(W_LOWER_PAUSED | W_PROD_PAUSED | W_PULL_PENDING | W_STREAMING);
    if (below(w))
        tw_transport_unregister_producer(below(w));
}

static int t_get_peer(tw_transport *t, tw_address *out)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (below(w))
        return tw_transport_get_peer(below(w), out);
    memset(out, 0, sizeof *out);
    return TW_ECLOSED;
}

static int t_get_host(tw_transport *t, tw_address *out)
{
    tw_protocol_wrapper *w = of_transport(t);
    if (below(w))
        return tw_transport_get_host(below(w), out);
    memset(out, 0, sizeof *out);
    return TW_ECLOSED;
}

static int t_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    tw_protocol_wrapper *w = of_transport(t);
    return below(w) ? tw_transport_set_option(below(w), opt, value) : TW_ECLOSED;
}

static size_t t_buffered(const tw_transport *t)
{
    const tw_protocol_wrapper *w = of_transport(t);
    return below(w) ? tw_transport_buffered(below(w)) : 0;
}

static int t_fd(const tw_transport *t)
{
    const tw_protocol_wrapper *w = of_transport(t);
    return below(w) ? tw_transport_fd(below(w)) : -1;
}

static const tw_transport_ops wrapper_transport_ops = {
    .kind = "wrapper",
    .write = t_write,
    .writev = t_writev,
    .write_ref = t_write_ref,
    .lose_connection = t_lose,
    .abort_connection = t_abort,
    .lose_write_connection = t_lose_write,
    .pause_producing = t_pause,
    .resume_producing = t_resume,
    .stop_producing = t_stop,
    .register_producer = t_register,
    .unregister_producer = t_unregister,
    .get_peer = t_get_peer,
    .get_host = t_get_host,
    .set_option = t_set_option,
    .buffered = t_buffered,
    .fd = t_fd,
};

/* ------------------------------------------------------------ the membrane */

static void m_pause(tw_producer *mp)
{
    tw_protocol_wrapper *w = of_membrane(mp);
    if (!w->producer)
        return;
    if (w->flags & W_STREAMING) {
        w->flags |= W_LOWER_PAUSED;
        update_push_producer(w);
    } else if (w->producer->ops->pause_producing) {
        w->producer->ops->pause_producing(w->producer);
    }
}

static void m_resume(tw_producer *mp)
{
    tw_protocol_wrapper *w = of_membrane(mp);
    if (!w->producer)
        return;
    if (w->flags & W_STREAMING) {
        w->flags &= ~W_LOWER_PAUSED;
        update_push_producer(w);
    } else if (w->flags & W_WRITES_HELD) {
        w->flags |= W_PULL_PENDING; /* its turn comes when the hold ends */
    } else if (w->producer->ops->resume_producing) {
        w->producer->ops->resume_producing(w->producer);
    }
}

/* The transport below is done with the producer (its connection is
 * ending): so are we. */
static void m_stop(tw_producer *mp)
{
    tw_protocol_wrapper *w = of_membrane(mp);
    tw_producer *p = w->producer;
    w->producer = NULL;
    w->flags &= ~(W_LOWER_PAUSED | W_PROD_PAUSED | W_PULL_PENDING | W_STREAMING);
    if (p && p->ops->stop_producing)
        p->ops->stop_producing(p);
}

static const tw_producer_ops membrane_ops = { m_pause, m_resume, m_stop };

/* ------------------------------------------------------------ wrapper API */

tw_protocol_wrapper *tw_protocol_wrapper_of(const tw_transport *t)
{
    if (!t || t->ops != &wrapper_transport_ops)
        return NULL;
    return of_transport(t);
}

void tw_protocol_wrapper_lose_connection(tw_protocol_wrapper *w)
{
    if (below(w))
        tw_transport_lose_connection(below(w));
    mark_closing(w);
}

void tw_protocol_wrapper_hold_reads(tw_protocol_wrapper *w, bool hold)
{
    if (hold == ((w->flags & W_READS_HELD) != 0))
        return;
    if (hold) {
        w->flags |= W_READS_HELD;
        if (!(w->flags & W_BELOW_PAUSED) && below_open(w)) {
            w->flags |= W_BELOW_PAUSED;
            tw_transport_pause_producing(below(w));
        }
    } else {
        w->flags &= ~W_READS_HELD;
        if ((w->flags & W_BELOW_PAUSED) && !(w->flags & W_USER_PAUSED) && below_open(w)) {
            w->flags &= ~W_BELOW_PAUSED;
            tw_transport_resume_producing(below(w));
        }
    }
}

void tw_protocol_wrapper_hold_writes(tw_protocol_wrapper *w, bool hold)
{
    if (hold == ((w->flags & W_WRITES_HELD) != 0))
        return;
    if (hold)
        w->flags |= W_WRITES_HELD;
    else
        w->flags &= ~W_WRITES_HELD;
    if (!w->producer || !below_open(w))
        return;
    if (w->flags & W_STREAMING) {
        update_push_producer(w);
    } else if (!hold && (w->flags & W_PULL_PENDING)) {
        w->flags &= ~W_PULL_PENDING;
        if (w->producer->ops->resume_producing)
            w->producer->ops->resume_producing(w->producer);
    }
}

/* ------------------------------------------------------------ wrapping factories */

/* Wraps inner (owned from here on: freed on failure). */
tw_protocol *tw__wf_wrap(tw__wfactory *wf, tw_protocol *inner, const tw_address *addr)
{
    size_t size = wf->hooks->size > sizeof(tw_protocol_wrapper) ? wf->hooks->size
                                                                : sizeof(tw_protocol_wrapper);
    tw_protocol_wrapper *w = calloc(1, size);
    if (!w) {
        tw_log(TW_LOG_ERROR, "policies",
               "out of memory wrapping a protocol: refusing the connection");
        tw_protocol_free(inner);
        return NULL;
    }
    w->base.ops = &wrapper_ops;
    w->base.factory = &wf->base;
    w->wrapped = inner;
    if (addr)
        w->peer = *addr;
    wf->live++;
    return &w->base;
}

tw_protocol *tw__wf_build_inner(tw__wfactory *wf, const tw_address *addr)
{
    if (wf->hooks->build_wrapped)
        return wf->hooks->build_wrapped(&wf->base, addr);
    return tw_factory_build(wf->inner, addr);
}

void tw__wf_start(tw_factory *f)
{
    tw_factory_do_start(((tw__wfactory *)f)->inner);
}

void tw__wf_stop(tw_factory *f)
{
    tw__wfactory *wf = (tw__wfactory *)f;
    tw_factory_do_stop(wf->inner);
    maybe_free(wf); /* the last call a port or connector makes */
}

void tw__wf_started(tw_factory *f, tw_connector *c)
{
    tw_factory *in = ((tw__wfactory *)f)->inner;
    if (in->ops && in->ops->started_connecting)
        in->ops->started_connecting(in, c);
}

void tw__wf_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    tw_factory *in = ((tw__wfactory *)f)->inner;
    if (in->ops && in->ops->client_connection_failed)
        in->ops->client_connection_failed(in, c, reason);
}

void tw__wf_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    tw_factory *in = ((tw__wfactory *)f)->inner;
    if (in->ops && in->ops->client_connection_lost)
        in->ops->client_connection_lost(in, c, reason);
}

tw_protocol *tw__wf_plain_build(tw_factory *f, const tw_address *addr)
{
    tw__wfactory *wf = (tw__wfactory *)f;
    tw_protocol *inner = tw__wf_build_inner(wf, addr);
    return inner ? tw__wf_wrap(wf, inner, addr) : NULL;
}

static const tw_factory_ops plain_factory_ops = TW__WRAPPING_FACTORY_OPS(tw__wf_plain_build);

tw__wfactory *tw__wf_alloc(size_t size, tw_factory *inner, const tw_wrapper_ops *hooks,
                           const tw_factory_ops *ops, int kind)
{
    if (!inner)
        return NULL;
    tw__wfactory *wf = calloc(1, size);
    if (!wf)
        return NULL;
    wf->base.ops = ops;
    wf->base.protocol = &wrapper_ops;
    wf->inner = inner;
    wf->hooks = hooks ? hooks : &no_hooks;
    wf->kind = kind;
    return wf;
}

tw__wfactory *tw__wf_as(const tw_factory *f, int kind)
{
    if (!tw_is_wrapping_factory(f))
        return NULL;
    tw__wfactory *wf = (tw__wfactory *)f;
    return kind == 0 || wf->kind == kind ? wf : NULL;
}

tw_factory *tw_wrapping_factory_new(tw_factory *wrapped, const tw_wrapper_ops *ops, void *user_data)
{
    tw__wfactory *wf = tw__wf_alloc(sizeof *wf, wrapped, ops, &plain_factory_ops, TW__WF_PLAIN);
    if (!wf)
        return NULL;
    wf->base.user_data = user_data;
    return &wf->base;
}

void tw_wrapping_factory_free(tw_factory *f)
{
    tw__wfactory *wf = tw__wf_as(f, 0);
    if (!wf)
        return;
    wf->owner_gone = true;
    maybe_free(wf);
}

bool tw_is_wrapping_factory(const tw_factory *f)
{
    /* Every wrapping factory here starts through the same hook. */
    return f && f->ops && f->ops->start_factory == tw__wf_start;
}

tw_factory *tw_wrapping_factory_wrapped(const tw_factory *f)
{
    tw__wfactory *wf = tw__wf_as(f, 0);
    return wf ? wf->inner : NULL;
}

size_t tw_wrapping_factory_count(const tw_factory *f)
{
    tw__wfactory *wf = tw__wf_as(f, 0);
    return wf ? wf->open : 0;
}

void tw_wrapping_factory_each(tw_factory *f, void (*fn)(tw_protocol_wrapper *w, void *arg),
                              void *arg)
{
    tw__wfactory *wf = tw__wf_as(f, 0);
    if (!wf)
        return;
    for (tw_protocol_wrapper *w = wf->head, *next; w; w = next) {
        next = w->next;
        fn(w, arg);
    }
}
