/* loopback.c — two protocols back to back through in-memory transports,
 * moved along by an explicit pump (Twisted's iosim.IOPump and
 * loopback.loopbackAsync with its pump policies).
 *
 * Writes only queue; delivery happens in pump rounds, never inside a write,
 * so a protocol's data_received never runs while its own write is on the
 * stack. Protocols live until tw_test_pump_free, so a test can inspect them
 * after connection_lost. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testing/testing_internal.h"
#include "twirl/log.h"

enum { MAX_BUSY_ROUNDS = 1000 };

typedef struct chunk chunk;
struct chunk {
    chunk *next;
    size_t len;
    char data[];
};

typedef struct side side;
struct side {
    tw_transport base; /* first */
    tw_test_pump *pump;
    side *other;
    tw_protocol *p;
    tw_factory local;
    chunk *head, *tail; /* written, not yet delivered */
    size_t queued;
    size_t high_water, low_water;
    tw_address host, peer;
    tw_producer *producer;
    bool streaming, producer_paused; /* paused by us (high water) */
    bool read_paused, aborted, write_shut, eof_sent, lost;
    unsigned long serial;
};

struct tw_test_pump {
    side server, client;
    tw_test_pump_policy policy;
    int pumping;
};

static const tw_transport_ops memory_ops;

static side *side_of(tw_transport *t)
{
    return (side *)t;
}

unsigned long tw__memory_transport_serial(const tw_transport *t)
{
    return t->ops == &memory_ops ? ((const side *)t)->serial : 0;
}

static void queue_free(chunk *c)
{
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
}

static void drop_queue(side *s)
{
    queue_free(s->head);
    s->head = s->tail = NULL;
    s->queued = 0;
}

/* ------------------------------------------------------------ writing */

static int enqueue(side *s, const struct iovec *iov, int iovcnt)
{
    if (s->base.state != TW_TRANSPORT_OPEN || s->write_shut)
        return TW_ECLOSED;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    if (s->other->lost)
        return 0; /* the peer is gone: dropped, as on a real network */
    chunk *c = malloc(sizeof *c + total);
    if (!c)
        return TW_ENOMEM;
    c->next = NULL;
    c->len = total;
    size_t at = 0;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(c->data + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->queued += total;
    if (s->producer && s->streaming && !s->producer_paused && s->queued > s->high_water) {
        s->producer_paused = true;
        s->producer->ops->pause_producing(s->producer);
    }
    return 0;
}

static int mem_write(tw_transport *t, const void *data, size_t len)
{
    struct iovec v = { (void *)data, len };
    return enqueue(side_of(t), &v, 1);
}

static int mem_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    return enqueue(side_of(t), iov, iovcnt);
}

static int mem_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                         void *arg)
{
    int rc = mem_write(t, data, len);
    if (release)
        release(arg);
    return rc;
}

/* ------------------------------------------------------------ closing */

static void mem_lose(tw_transport *t)
{
    if (t->state == TW_TRANSPORT_OPEN)
        t->state = TW_TRANSPORT_DISCONNECTING;
}

static void mem_abort(tw_transport *t)
{
    side *s = side_of(t);
    if (t->state == TW_TRANSPORT_CLOSED)
        return;
    s->aborted = true;
    t->state = TW_TRANSPORT_DISCONNECTING;
    drop_queue(s);
}

static int mem_lose_write(tw_transport *t)
{
    side *s = side_of(t);
    if (t->state != TW_TRANSPORT_OPEN || s->write_shut)
        return TW_ECLOSED;
    s->write_shut = true;
    return 0;
}

/* ------------------------------------------------------- flow control */

static void mem_pause(tw_transport *t)
{
    side_of(t)->read_paused = true;
}

static void mem_resume(tw_transport *t)
{
    side_of(t)->read_paused = false;
}

static void mem_stop(tw_transport *t)
{
    mem_lose(t);
}

static int mem_register(tw_transport *t, tw_producer *p, bool streaming)
{
    side *s = side_of(t);
    if (s->producer) {
        tw_log(TW_LOG_ERROR, "testing", "memory transport #%lu: a producer is already registered",
               s->serial);
        return TW_EBUSY;
    }
    if (t->state == TW_TRANSPORT_CLOSED)
        return TW_ECLOSED;
    s->producer = p;
    s->streaming = streaming;
    s->producer_paused = false;
    if (!streaming && !s->head)
        p->ops->resume_producing(p);
    return 0;
}

static void mem_unregister(tw_transport *t)
{
    side *s = side_of(t);
    s->producer = NULL;
    s->streaming = s->producer_paused = false;
}

/* ------------------------------------------------------------ queries */

static int mem_get_peer(tw_transport *t, tw_address *out)
{
    *out = side_of(t)->peer;
    return 0;
}

static int mem_get_host(tw_transport *t, tw_address *out)
{
    *out = side_of(t)->host;
    return 0;
}

static int mem_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    side *s = side_of(t);
    if (value < 0)
        return TW_EINVAL;
    if (opt == TW_OPT_HIGH_WATER)
        s->high_water = (size_t)value;
    else if (opt == TW_OPT_LOW_WATER)
        s->low_water = (size_t)value;
    return 0;
}

static size_t mem_buffered(const tw_transport *t)
{
    return ((const side *)t)->queued;
}

static int mem_fd(const tw_transport *t)
{
    return -1;
}

static const tw_transport_ops memory_ops = {
    .kind = "memory",
    .write = mem_write,
    .writev = mem_writev,
    .write_ref = mem_write_ref,
    .lose_connection = mem_lose,
    .abort_connection = mem_abort,
    .lose_write_connection = mem_lose_write,
    .pause_producing = mem_pause,
    .resume_producing = mem_resume,
    .stop_producing = mem_stop,
    .register_producer = mem_register,
    .unregister_producer = mem_unregister,
    .get_peer = mem_get_peer,
    .get_host = mem_get_host,
    .set_option = mem_set_option,
    .buffered = mem_buffered,
    .fd = mem_fd,
};

/* ------------------------------------------------------------ endings */

/* connection_lost for s: code 0 clean, else lost with that cause. */
static void end_side(side *s, int code)
{
    if (s->lost)
        return;
    s->lost = true;
    s->base.state = TW_TRANSPORT_CLOSED;
    drop_queue(s);
    drop_queue(s->other); /* nobody will read it now */
    if (s->producer) {
        tw_producer *prod = s->producer;
        s->producer = NULL;
        s->streaming = s->producer_paused = false;
        if (prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    tw_failure *reason = tw__test_close_reason(code);
    if (s->p->ops->connection_lost)
        s->p->ops->connection_lost(s->p, reason);
    tw_failure_unref(reason);
    s->p->transport = NULL;
}

/* The peer's writing side ended (FIN): eof_received, or lose the connection
 * as a real transport does for protocols without the hook. */
static void deliver_eof(side *s)
{
    if (s->lost || s->base.state != TW_TRANSPORT_OPEN)
        return;
    if (s->p->ops->eof_received)
        s->p->ops->eof_received(s->p);
    else
        tw_transport_lose_connection(&s->base);
}

/* A closing side whose queue is flushed (or dropped by abort) ends; the
 * other side sees a reset or an end of stream. */
static void finish_close(side *s)
{
    side *o = s->other;
    bool aborted = s->aborted;
    end_side(s, aborted ? -ECONNABORTED : 0);
    if (aborted)
        end_side(o, -ECONNRESET);
    else
        deliver_eof(o);
}

/* ------------------------------------------------------------ pumping */

static bool receiving(const side *s)
{
    return !s->lost && s->base.state == TW_TRANSPORT_OPEN && !s->read_paused;
}

/* Hands from's queued chunks to its peer. Returns true if anything was
 * delivered. */
static bool deliver(tw_test_pump *pump, side *from)
{
    side *to = from->other;
    if (!from->head || !receiving(to))
        return false;
    chunk *list = from->head;
    from->head = from->tail = NULL;
    tw_protocol *p = to->p;
    bool moved = false;

    if (pump->policy == TW_TEST_PUMP_COLLAPSING && list->next) {
        size_t total = 0;
        for (chunk *c = list; c; c = c->next)
            total += c->len;
        chunk *joined = malloc(sizeof *joined + total);
        if (joined) {
            size_t at = 0;
            for (chunk *c = list; c; c = c->next) {
                memcpy(joined->data + at, c->data, c->len);
                at += c->len;
            }
            joined->next = NULL;
            joined->len = total;
            queue_free(list);
            list = joined;
        } /* else: out of memory, deliver chunk by chunk */
    }

    while (list) {
        chunk *c = list;
        list = c->next;
        from->queued -= c->len;
        moved = true;
        if (p->ops->data_received)
            p->ops->data_received(p, c->data, c->len);
        free(c);
        if (!receiving(to))
            break;
    }
    if (list) {
        if (to->read_paused && !to->lost && to->base.state == TW_TRANSPORT_OPEN) {
            /* Put the rest back in front of anything written meanwhile. */
            chunk *last = list;
            while (last->next)
                last = last->next;
            last->next = from->head;
            if (!from->head)
                from->tail = last;
            from->head = list;
        } else {
            for (chunk *c = list; c; c = c->next)
                from->queued -= c->len;
            queue_free(list);
        }
    }
    return moved;
}

/* After delivery: wake producers whose side drained. */
static void after_drain(side *s, bool had_queue)
{
    if (!s->producer || s->lost)
        return;
    if (s->streaming) {
        if (s->producer_paused && s->queued <= s->low_water) {
            s->producer_paused = false;
            s->producer->ops->resume_producing(s->producer);
        }
    } else if (had_queue && !s->head && s->base.state == TW_TRANSPORT_OPEN) {
        s->producer->ops->resume_producing(s->producer);
    }
}

int tw_test_pump_pump(tw_test_pump *pump)
{
    if (pump->pumping)
        return TW_EBUSY;
    pump->pumping = 1;
    side *s = &pump->server, *c = &pump->client;
    bool s_had = s->head != NULL, c_had = c->head != NULL;
    bool moved = deliver(pump, c);
    moved |= deliver(pump, s);
    after_drain(c, c_had);
    after_drain(s, s_had);
    if (!moved) {
        side *order[2] = { s, c };
        for (int i = 0; i < 2 && !moved; i++) {
            side *x = order[i];
            if (x->lost)
                continue;
            if (x->base.state == TW_TRANSPORT_DISCONNECTING && (!x->head || x->other->lost)) {
                finish_close(x);
                moved = true;
            } else if (x->write_shut && !x->head && !x->eof_sent) {
                x->eof_sent = true;
                deliver_eof(x->other);
                moved = true;
            }
        }
    }
    pump->pumping = 0;
    return moved ? 1 : 0;
}

int tw_test_pump_flush(tw_test_pump *pump)
{
    for (int rounds = 0; rounds < MAX_BUSY_ROUNDS; rounds++) {
        int rc = tw_test_pump_pump(pump);
        if (rc <= 0)
            return rc < 0 ? rc : rounds;
    }
    tw_log(TW_LOG_ERROR, "testing", "pump: still busy after %d rounds", MAX_BUSY_ROUNDS);
    return TW_ELIMIT;
}

/* ------------------------------------------------------------ set-up */

static int build(side *s, tw_factory *f, const tw_protocol_ops *ops, void *user_data)
{
    if (!f && !ops)
        return TW_EINVAL;
    if (!f) {
        s->local.protocol = ops;
        s->local.user_data = user_data;
        f = &s->local;
    }
    s->p = tw_factory_build(f, &s->peer);
    return s->p ? 0 : TW_ENOMEM;
}

static void init_side(tw_test_pump *pump, side *s, side *other, tw_reactor *r)
{
    tw_transport_init(&s->base, &memory_ops, r);
    s->pump = pump;
    s->other = other;
    s->high_water = TW_WRITE_HIGH_WATER;
    s->low_water = TW_WRITE_LOW_WATER;
    s->serial = tw__test_next_serial();
}

tw_test_pump *tw_test_pump_new(const tw_test_pump_options *o)
{
    tw_test_pump *pump = calloc(1, sizeof *pump);
    if (!pump)
        return NULL;
    side *s = &pump->server, *c = &pump->client;
    pump->policy = o->policy;
    init_side(pump, s, c, o->reactor);
    init_side(pump, c, s, o->reactor);
    if (o->server_address)
        s->host = *o->server_address;
    else
        tw_address_from_ip(&s->host, "127.0.0.1", 4321, SOCK_STREAM);
    if (o->client_address)
        c->host = *o->client_address;
    else
        tw_address_from_ip(&c->host, "127.0.0.1", (uint16_t)(40000 + c->serial % 20000),
                           SOCK_STREAM);
    s->peer = c->host;
    c->peer = s->host;

    if (build(s, o->server, o->server_protocol, o->server_user_data) < 0 ||
        build(c, o->client, o->client_protocol, o->client_user_data) < 0) {
        tw_protocol_free(s->p);
        tw_protocol_free(c->p);
        free(pump);
        return NULL;
    }
    s->base.protocol = s->p;
    s->p->transport = &s->base;
    c->base.protocol = c->p;
    c->p->transport = &c->base;
    pump->pumping = 1; /* connection_made is a callback too: no pumping inside */
    if (s->p->ops->connection_made)
        s->p->ops->connection_made(s->p);
    if (c->p->ops->connection_made)
        c->p->ops->connection_made(c->p);
    pump->pumping = 0;
    return pump;
}

void tw_test_pump_free(tw_test_pump *pump)
{
    if (!pump)
        return;
    pump->pumping = 1;
    end_side(&pump->server, 0);
    end_side(&pump->client, 0);
    tw_protocol_free(pump->server.p);
    tw_protocol_free(pump->client.p);
    drop_queue(&pump->server);
    drop_queue(&pump->client);
    free(pump);
}

tw_protocol *tw_test_pump_server(tw_test_pump *pump)
{
    return pump->server.p;
}

tw_protocol *tw_test_pump_client(tw_test_pump *pump)
{
    return pump->client.p;
}

bool tw_test_pump_closed(const tw_test_pump *pump)
{
    return pump->server.lost && pump->client.lost;
}
