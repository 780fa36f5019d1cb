/* string_transport.c — Twisted's proto_helpers.StringTransport: a transport
 * that records writes, simulates addresses and producer state, and lets the
 * test deliver bytes and end the connection. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing/testing_internal.h"
#include "twirl/log.h"

struct tw_string_transport {
    tw_transport base; /* first: the transport pointer is the string transport */
    char *data;        /* what was written, NUL-terminated */
    size_t len, cap;
    tw_address host, peer;
    tw_producer *producer;
    bool streaming;
    bool aborted, write_shut, lost, lenient;
    int delivering; /* protocol callbacks on the stack */
    tw_test_producer_state pstate;
    size_t write_calls, writev_calls, misuse;
    int last_iovcnt;
    unsigned long serial;
};

static const tw_transport_ops string_ops;

static tw_string_transport *st_of(tw_transport *t)
{
    return (tw_string_transport *)t;
}

unsigned long tw__test_next_serial(void)
{
    static atomic_ulong next;
    return atomic_fetch_add(&next, 1) + 1;
}

tw_failure *tw__test_close_reason(int code)
{
    if (code == 0)
        return tw_failure_new(TW_DOMAIN, TW_ECONNECTION_DONE, "Connection was closed cleanly.");
    return tw_failure_wrap(tw_failure_from_code(code), TW_DOMAIN, TW_ECONNECTION_LOST,
                           "Connection to the other side was lost: %s", tw_strerror(code));
}

unsigned long tw__string_transport_serial(const tw_transport *t)
{
    return t->ops == &string_ops ? ((const tw_string_transport *)t)->serial : 0;
}

unsigned long tw_test_transport_serial(const tw_transport *t)
{
    unsigned long s = tw__string_transport_serial(t);
    return s ? s : tw__memory_transport_serial(t);
}

static void misuse(tw_string_transport *st, const char *what)
{
    st->misuse++;
    tw_log(TW_LOG_ERROR, "testing", "string transport #%lu: %s", st->serial, what);
}

/* ------------------------------------------------------------ writing */

static int record(tw_string_transport *st, const void *data, size_t len)
{
    if (len >= st->cap - st->len) {
        size_t cap = st->cap ? st->cap : 256;
        while (len >= cap - st->len) {
            if (cap > ((size_t)-1) / 2)
                return TW_ENOMEM;
            cap *= 2;
        }
        char *grown = realloc(st->data, cap);
        if (!grown)
            return TW_ENOMEM;
        st->data = grown;
        st->cap = cap;
    }
    if (len)
        memcpy(st->data + st->len, data, len);
    st->len += len;
    st->data[st->len] = '\0';
    return 0;
}

static bool writable(const tw_string_transport *st)
{
    return st->base.state == TW_TRANSPORT_OPEN && !st->write_shut;
}

static int st_write(tw_transport *t, const void *data, size_t len)
{
    tw_string_transport *st = st_of(t);
    if (!writable(st))
        return TW_ECLOSED;
    int rc = record(st, data, len);
    if (rc == 0)
        st->write_calls++;
    return rc;
}

static int st_writev(tw_transport *t, const struct iovec *iov, int iovcnt)
{
    tw_string_transport *st = st_of(t);
    if (!writable(st))
        return TW_ECLOSED;
    size_t before = st->len;
    for (int i = 0; i < iovcnt; i++) {
        int rc = record(st, iov[i].iov_base, iov[i].iov_len);
        if (rc < 0) {
            st->len = before; /* all or nothing */
            if (st->data)
                st->data[before] = '\0';
            return rc;
        }
    }
    st->writev_calls++;
    st->last_iovcnt = iovcnt;
    return 0;
}

static int st_write_ref(tw_transport *t, const void *data, size_t len, tw_free_fn release,
                        void *arg)
{
    int rc = st_write(t, data, len);
    if (release)
        release(arg);
    return rc;
}

/* ------------------------------------------------------------ closing */

static void st_lose(tw_transport *t)
{
    if (t->state == TW_TRANSPORT_OPEN)
        t->state = TW_TRANSPORT_DISCONNECTING;
}

static void st_abort(tw_transport *t)
{
    tw_string_transport *st = st_of(t);
    if (t->state == TW_TRANSPORT_CLOSED)
        return;
    st->aborted = true;
    t->state = TW_TRANSPORT_DISCONNECTING;
}

static int st_lose_write(tw_transport *t)
{
    tw_string_transport *st = st_of(t);
    if (!writable(st))
        return TW_ECLOSED;
    st->write_shut = true;
    return 0;
}

/* ------------------------------------------------------- flow control */

static bool check_state(tw_string_transport *st, const char *op)
{
    if (st->base.state != TW_TRANSPORT_OPEN && !st->lenient) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s after the connection began closing", op);
        misuse(st, msg);
        return false;
    }
    if (st->pstate == TW_TEST_STOPPED) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s on a stopped transport", op);
        misuse(st, msg);
        return false;
    }
    return true;
}

static void st_pause(tw_transport *t)
{
    tw_string_transport *st = st_of(t);
    if (check_state(st, "pause_producing"))
        st->pstate = TW_TEST_PAUSED;
}

static void st_resume(tw_transport *t)
{
    tw_string_transport *st = st_of(t);
    if (check_state(st, "resume_producing"))
        st->pstate = TW_TEST_PRODUCING;
}

static void st_stop(tw_transport *t)
{
    st_of(t)->pstate = TW_TEST_STOPPED;
    st_lose(t);
}

static int st_register(tw_transport *t, tw_producer *p, bool streaming)
{
    tw_string_transport *st = st_of(t);
    if (st->producer) {
        misuse(st, "register_producer while a producer is registered");
        return TW_EBUSY;
    }
    if (t->state == TW_TRANSPORT_CLOSED)
        return TW_ECLOSED;
    st->producer = p;
    st->streaming = streaming;
    return 0;
}

static void st_unregister(tw_transport *t)
{
    tw_string_transport *st = st_of(t);
    if (!st->producer) {
        misuse(st, "unregister_producer with no producer registered");
        return;
    }
    st->producer = NULL;
    st->streaming = false;
}

/* ------------------------------------------------------------ queries */

static int st_get_peer(tw_transport *t, tw_address *out)
{
    *out = st_of(t)->peer;
    return 0;
}

static int st_get_host(tw_transport *t, tw_address *out)
{
    *out = st_of(t)->host;
    return 0;
}

static int st_set_option(tw_transport *t, tw_transport_option opt, long value)
{
    return 0;
}

static size_t st_buffered(const tw_transport *t)
{
    return 0;
}

static int st_fd(const tw_transport *t)
{
    return -1;
}

static const tw_transport_ops string_ops = {
    .kind = "string",
    .write = st_write,
    .writev = st_writev,
    .write_ref = st_write_ref,
    .lose_connection = st_lose,
    .abort_connection = st_abort,
    .lose_write_connection = st_lose_write,
    .pause_producing = st_pause,
    .resume_producing = st_resume,
    .stop_producing = st_stop,
    .register_producer = st_register,
    .unregister_producer = st_unregister,
    .get_peer = st_get_peer,
    .get_host = st_get_host,
    .set_option = st_set_option,
    .buffered = st_buffered,
    .fd = st_fd,
};

/* ------------------------------------------------------------ the API */

tw_string_transport *tw_string_transport_new(tw_reactor *r)
{
    tw_string_transport *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    tw_transport_init(&st->base, &string_ops, r);
    tw_address_from_ip(&st->host, "10.0.0.1", 12345, SOCK_STREAM);
    tw_address_from_ip(&st->peer, "192.168.1.1", 54321, SOCK_STREAM);
    st->serial = tw__test_next_serial();
    return st;
}

void tw_string_transport_free(tw_string_transport *st)
{
    if (!st)
        return;
    free(st->data);
    free(st);
}

tw_transport *tw_string_transport_base(tw_string_transport *st)
{
    return &st->base;
}

int tw_string_transport_connect(tw_string_transport *st, tw_protocol *p)
{
    if (st->base.protocol)
        return TW_EBUSY;
    st->base.protocol = p;
    p->transport = &st->base;
    if (p->ops->connection_made) {
        st->delivering++;
        p->ops->connection_made(p);
        st->delivering--;
    }
    return 0;
}

const char *tw_string_transport_value(const tw_string_transport *st, size_t *len)
{
    if (len)
        *len = st->len;
    return st->data ? st->data : "";
}

void tw_string_transport_clear(tw_string_transport *st)
{
    st->len = 0;
    if (st->data)
        st->data[0] = '\0';
}

void tw_string_transport_set_host(tw_string_transport *st, const tw_address *a)
{
    st->host = *a;
}

void tw_string_transport_set_peer(tw_string_transport *st, const tw_address *a)
{
    st->peer = *a;
}

void tw_string_transport_set_lenient(tw_string_transport *st, bool lenient)
{
    st->lenient = lenient;
}

static int can_deliver(tw_string_transport *st)
{
    if (!st->base.protocol)
        return TW_EINVAL;
    if (st->delivering)
        return TW_EBUSY;
    if (st->base.state != TW_TRANSPORT_OPEN)
        return TW_ECLOSED;
    return 0;
}

int tw_string_transport_deliver(tw_string_transport *st, const void *data, size_t len)
{
    int rc = can_deliver(st);
    if (rc < 0 || len == 0)
        return rc;
    tw_protocol *p = st->base.protocol;
    if (p->ops->data_received) {
        st->delivering++;
        p->ops->data_received(p, data, len);
        st->delivering--;
    }
    return 0;
}

int tw_string_transport_deliver_eof(tw_string_transport *st)
{
    int rc = can_deliver(st);
    if (rc < 0)
        return rc;
    tw_protocol *p = st->base.protocol;
    if (p->ops->eof_received) {
        st->delivering++;
        p->ops->eof_received(p);
        st->delivering--;
    } else {
        tw_transport_lose_connection(&st->base);
    }
    return 0;
}

int tw_string_transport_end(tw_string_transport *st, int code)
{
    if (st->lost)
        return TW_ECLOSED;
    if (st->delivering)
        return TW_EBUSY;
    st->lost = true;
    st->base.state = TW_TRANSPORT_CLOSED;
    st->delivering++;
    if (st->producer) {
        tw_producer *prod = st->producer;
        st->producer = NULL;
        st->streaming = false;
        if (prod->ops->stop_producing)
            prod->ops->stop_producing(prod);
    }
    tw_protocol *p = st->base.protocol;
    if (p) {
        tw_failure *reason = tw__test_close_reason(code);
        if (p->ops->connection_lost)
            p->ops->connection_lost(p, reason);
        tw_failure_unref(reason);
        p->transport = NULL;
    }
    st->delivering--;
    return 0;
}

void tw_string_transport_get_info(const tw_string_transport *st, tw_string_transport_info *out)
{
    memset(out, 0, sizeof *out);
    out->state = st->base.state;
    out->aborted = st->aborted;
    out->write_shut = st->write_shut;
    out->lost = st->lost;
    out->producer = st->producer;
    out->streaming = st->streaming;
    out->producer_state = st->pstate;
    out->write_calls = st->write_calls;
    out->writev_calls = st->writev_calls;
    out->last_iovcnt = st->last_iovcnt;
    out->misuse = st->misuse;
    out->serial = st->serial;
}
