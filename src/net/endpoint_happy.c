/* endpoint_happy.c — client TCP endpoints for host names (Twisted's
 * HostnameEndpoint): the name lookup, then Happy Eyeballs (RFC 8305)
 * across the addresses it gave.
 *
 * One race per tw_endpoint_connect. The lookup asks for both families at
 * once (tw_resolve with AF_UNSPEC, or the hook installed with
 * tw_endpoint_set_resolver); the answer is reordered so that the families
 * alternate, IPv6 first (RFC 8305 §4), and the race starts one connection
 * attempt, then another each time the attempt delay passes or the latest
 * attempt fails, until one connects. Each attempt is a tw_connect whose
 * factory is a small wrapper (a "leg"): the connector asks that wrapper to
 * build a protocol only once its socket is connected, and only the first
 * leg to ask gets the user's protocol. The others are stopped at once
 * (tw_connector_stop_connecting closes their sockets), and one that
 * connects after the race is decided gets NULL from build_protocol, so its
 * connector closes it: a losing attempt never has a protocol built.
 *
 * Lifetimes. The race is reference counted: the pending result holds one,
 * the lookup's callbacks one, and each leg still attached to its connector
 * one; code that calls out (to the user, or to a connector whose hooks
 * come back here) holds one for the call. The winning leg lets go of the
 * race once the deferred fired and lives on alone (its shim ops are on the
 * protocol until connection_made) until its connector's last call,
 * stop_factory. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "net/endpoint_internal.h"
#include "twirl/resolver.h"

/* ------------------------------------------------------------ the hook */

static pthread_mutex_t resolver_lock = PTHREAD_MUTEX_INITIALIZER;
static tw_endpoint_resolve_fn resolver_fn;
static void *resolver_arg;

void tw_endpoint_set_resolver(tw_endpoint_resolve_fn fn, void *arg)
{
    pthread_mutex_lock(&resolver_lock);
    resolver_fn = fn;
    resolver_arg = arg;
    pthread_mutex_unlock(&resolver_lock);
}

/* ------------------------------------------------------------ types */

enum race_state {
    RACE_RESOLVING = 0,
    RACE_CONNECTING, /* attempts under way */
    RACE_WON,        /* a leg's protocol is built; connection_made is next */
    RACE_DONE        /* the deferred has fired (or been cancelled) */
};

typedef struct race race;

typedef struct leg {
    tw_factory base; /* first: the connector's factory is the leg */
    race *race;      /* NULL once detached */
    tw_protocol_ops shim;
    const tw_protocol_ops *user_ops;
    tw_factory *user;
    tw_connector *connector;
    size_t index;  /* the address it connects to */
    bool won;      /* its protocol was built */
    bool building; /* inside its build_protocol: not to be stopped there */
} leg;

struct race {
    tw_reactor *reactor;
    tw_factory *user;
    tw_deferred *d;         /* our reference, until fired */
    tw_deferred *resolving; /* the lookup under way */
    tw_timer delay_timer;   /* starts the next attempt */
    tw_connect_options opts;
    tw_address bind;
    bool has_bind;
    double attempt_delay;
    int state;
    int refs;
    uint16_t port;
    size_t next;   /* the next address to try */
    size_t active; /* legs connecting */
    size_t last;   /* the address that failed last */
    tw_address_list *addrs;
    leg **legs;           /* per address: the attached leg, or NULL */
    tw_failure **reasons; /* per address: why it failed */
    char host[];
};

static void race_unref(race *ra)
{
    if (--ra->refs > 0)
        return;
    tw_timer_cancel(ra->delay_timer);
    if (ra->reasons)
        for (size_t i = 0; i < ra->addrs->count; i++)
            tw_failure_unref(ra->reasons[i]);
    free(ra->legs);
    tw_address_list_free(ra->addrs);
    free(ra);
}

/* The lookup's callbacks are done with (they ran, or the lookup was freed
 * without an answer). */
static void lookup_done(void *arg)
{
    race *ra = arg;
    ra->resolving = NULL;
    race_unref(ra);
}

/* The prefix of every message: "'example.com' port 80". */
#define WHERE_FMT "'%.255s' port %u"

/* The race is decided: no more attempts, and those under way stop now. */
static void race_stop_others(race *ra)
{
    tw_timer_cancel(ra->delay_timer);
    ra->delay_timer = TW_TIMER_NONE;
    if (ra->active == 0)
        return;
    ra->refs++;
    for (size_t i = 0; i < ra->addrs->count; i++) {
        leg *l = ra->legs[i];
        /* Reports through leg_failed (which only logs now), then detaches
         * the leg (leg_stop, which clears ra->legs[i] and frees it). */
        if (l && !l->won && !l->building)
            tw_connector_stop_connecting(l->connector);
    }
    race_unref(ra);
}

/* Fires the deferred once; the race is then done. */
static void race_fire(race *ra, tw_result res)
{
    tw_deferred *d = ra->d;
    ra->state = RACE_DONE;
    race_stop_others(ra);
    if (!d) {
        tw_result_free(&res);
        return;
    }
    ra->d = NULL;
    ra->refs++; /* the callbacks may drop every other reference */
    tw_deferred_fire(d, res);
    tw_deferred_unref(d);
    /* Drop the pending result's reference (never the last: ours is still
     * held), then ours. */
    ra->refs--;
    race_unref(ra);
}

/* ------------------------------------------------------------ outcome */

static void reason_text(const tw_failure *f, double timeout, char *buf, size_t size)
{
    int code = tw_failure_code(f);
    if (code == TW_ETIMEDOUT)
        snprintf(buf, size, "timed out after %g s", timeout > 0 ? timeout : 30.0);
    else if (code == TW_ECANCELED)
        snprintf(buf, size, "cancelled");
    else
        snprintf(buf, size, "%s", tw_strerror(code));
}

/* Every address failed: one failure that lists them in the order tried,
 * each with its reason. Its code is the last attempt's (as Twisted reports
 * the last failure), and that failure is its cause. */
static void race_fail_all(race *ra)
{
    size_t n = ra->addrs->count;
    size_t cap = 128 + n * (TW_ADDRESS_TEXT_MAX + 96);
    char *msg = malloc(cap);
    tw_failure *last = ra->reasons[ra->last];
    if (!msg || !last) {
        free(msg);
        race_fire(ra, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return;
    }
    size_t o = (size_t)snprintf(msg, cap, "%s", n > 1 ? "every address failed: " : "");
    for (size_t i = 0; i < n && o < cap; i++) {
        char w[TW_ADDRESS_TEXT_MAX], why[96];
        tw_address_format(&ra->addrs->addrs[i], w, sizeof w);
        if (ra->reasons[i])
            reason_text(ra->reasons[i], ra->opts.timeout, why, sizeof why);
        else
            snprintf(why, sizeof why, "not tried");
        o += (size_t)snprintf(msg + o, cap - o, "%s%s: %s", i ? "; " : "", w, why);
    }
    tw_failure *f = tw_failure_new_at(
        __FILE__, __LINE__, __func__, TW_DOMAIN, tw_failure_code(last), tw_failure_ref(last),
        "cannot connect to " WHERE_FMT ": %s", ra->host, ra->port, msg);
    free(msg);
    race_fire(ra, tw_err(f));
}

/* ------------------------------------------------------------ legs */

static void shim_made(tw_protocol *p)
{
    leg *l = (leg *)((char *)p->ops - offsetof(leg, shim));
    /* Undo the wrapping before any user code sees the protocol. */
    p->ops = l->user_ops;
    p->factory = l->user;
    race *ra = l->race;
    if (p->ops->connection_made)
        p->ops->connection_made(p);
    if (!ra)
        return;
    /* The winner goes on alone: the race has nothing more to do. */
    l->race = NULL;
    ra->legs[l->index] = NULL;
    race_fire(ra, tw_ok(p, NULL));
    race_unref(ra); /* the leg's */
}

static tw_protocol *leg_build(tw_factory *f, const tw_address *addr)
{
    leg *l = (leg *)f;
    race *ra = l->race;
    char w[TW_ADDRESS_TEXT_MAX];
    tw_address_format(addr, w, sizeof w);
    if (!ra || ra->state != RACE_CONNECTING) {
        /* Connected after the race was decided (a cancel from inside
         * start_factory finds no attempt to stop yet): the connector
         * closes it. */
        tw_log(TW_LOG_DEBUG, "endpoint", WHERE_FMT ": closing %s, connected too late",
               ra ? ra->host : "?", ra ? ra->port : 0, w);
        return NULL;
    }
    /* Our connector closes this attempt if we return NULL; stopping it
     * from in here (a cancel inside the user's build_protocol, or a
     * refusal) would end it twice. */
    l->building = true;
    tw_protocol *p = tw_factory_build(l->user, addr);
    if (p && ra->state != RACE_CONNECTING) { /* cancelled from inside */
        tw_protocol_free(p);
        p = NULL;
    } else if (!p) {
        race_fire(ra, tw_err(tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                            "the factory built no protocol for %s", w)));
    }
    l->building = false;
    if (!p)
        return NULL;
    tw_log(TW_LOG_DEBUG, "endpoint", WHERE_FMT ": %s connected first", ra->host, ra->port, w);
    ra->state = RACE_WON;
    l->won = true;
    ra->active--;
    race_stop_others(ra);
    l->user_ops = p->ops;
    l->shim = *p->ops;
    l->shim.connection_made = shim_made;
    p->ops = &l->shim;
    return p;
}

static void leg_start(tw_factory *f)
{
    tw_factory_do_start(((leg *)f)->user);
}

/* The connector's last touch of the leg. */
static void leg_stop(tw_factory *f)
{
    leg *l = (leg *)f;
    tw_factory_do_stop(l->user);
    race *ra = l->race;
    if (ra) {
        if (ra->state == RACE_WON && l->won) /* cannot happen: never leave it hanging */
            race_fire(ra, tw_err(tw_failure_new(TW_DOMAIN, TW_ECONNECTION_LOST,
                                                "connection ended before it was made")));
        ra->legs[l->index] = NULL;
        race_unref(ra);
    }
    free(l);
}

static void start_next(race *ra);

static void leg_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    leg *l = (leg *)f;
    race *ra = l->race;
    char w[TW_ADDRESS_TEXT_MAX];
    tw_address_format(tw_connector_destination(c), w, sizeof w);
    if (!ra)
        return;
    if (l->won) {
        /* Built, then the transport could not start. */
        race_fire(ra, tw_err(tw_failure_ref((tw_failure *)reason)));
        return;
    }
    ra->active--;
    if (ra->state != RACE_CONNECTING) {
        tw_log(TW_LOG_DEBUG, "endpoint", WHERE_FMT ": attempt to %s cancelled", ra->host, ra->port,
               w);
        return;
    }
    tw_log(TW_LOG_DEBUG, "endpoint", WHERE_FMT ": attempt to %s failed: %s", ra->host, ra->port, w,
           tw_failure_message(reason));
    ra->reasons[l->index] = tw_failure_ref((tw_failure *)reason);
    ra->last = l->index;
    /* RFC 8305 §5: a failed attempt need not wait out the delay. */
    tw_timer_cancel(ra->delay_timer);
    ra->delay_timer = TW_TIMER_NONE;
    start_next(ra);
}

static void leg_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    leg *l = (leg *)f;
    /* Matters only when the connection ended before connection_made. */
    if (l->race && l->won)
        race_fire(l->race, tw_err(tw_failure_ref((tw_failure *)reason)));
}

static const tw_factory_ops leg_ops = {
    .build_protocol = leg_build,
    .start_factory = leg_start,
    .stop_factory = leg_stop,
    .client_connection_failed = leg_failed,
    .client_connection_lost = leg_lost,
};

static void on_delay(void *arg)
{
    race *ra = arg;
    ra->delay_timer = TW_TIMER_NONE;
    if (ra->state == RACE_CONNECTING)
        start_next(ra);
}

/* Starts the next address's attempt (skipping those that cannot even
 * start), and arms the delay for the one after. When none is left and none
 * is connecting, the race has failed. */
static void start_next(race *ra)
{
    ra->refs++; /* user code runs in here (start_factory) */
    while (ra->state == RACE_CONNECTING) {
        if (ra->next >= ra->addrs->count) {
            if (ra->active == 0)
                race_fail_all(ra);
            break;
        }
        size_t i = ra->next++;
        const tw_address *dest = &ra->addrs->addrs[i];
        leg *l = calloc(1, sizeof *l);
        int rc = TW_ENOMEM;
        if (l) {
            l->base.ops = &leg_ops;
            l->base.protocol = ra->user->protocol;
            l->base.user_data = ra->user->user_data;
            l->user = ra->user;
            l->race = ra;
            l->index = i;
            ra->opts.bind = ra->has_bind ? &ra->bind : NULL;
            ra->legs[i] = l;
            ra->refs++;
            ra->active++;
            rc = tw_connect(ra->reactor, dest, &ra->opts, &l->base, &l->connector);
        }
        char w[TW_ADDRESS_TEXT_MAX];
        tw_address_format(dest, w, sizeof w);
        if (rc < 0) {
            if (l) {
                ra->legs[i] = NULL;
                ra->active--;
                ra->refs--; /* never below 1: we hold one */
                free(l);
            }
            ra->reasons[i] =
                tw_failure_new(TW_DOMAIN, rc, "cannot connect to %s: %s", w, tw_strerror(rc));
            ra->last = i;
            continue;
        }
        tw_log(TW_LOG_DEBUG, "endpoint", WHERE_FMT ": attempt %zu of %zu: %s", ra->host, ra->port,
               i + 1, ra->addrs->count, w);
        if (ra->state == RACE_CONNECTING && ra->next < ra->addrs->count) {
            tw_timer_cancel(ra->delay_timer);
            /* We may be inside an I/O callback (the lookup's answer, a
             * failed attempt), which the reactor runs before it re-reads
             * its clock after waiting: a delay counted from that stale
             * time would end early by as long as the wait lasted. */
            tw_reactor_update_time(ra->reactor);
            ra->delay_timer = tw_call_later(ra->reactor, ra->attempt_delay, on_delay, ra);
            /* Out of memory: the next attempt then starts when this one
             * fails, which is still correct, only slower. */
        }
        break;
    }
    race_unref(ra);
}

/* ------------------------------------------------------------ the lookup */

/* Keeps the addresses this race can use, in Happy Eyeballs order. */
static int race_take_addresses(race *ra, tw_address_list *l)
{
    int want = ra->has_bind ? tw_address_family(&ra->bind) : AF_UNSPEC;
    size_t n = 0;
    for (size_t i = 0; i < l->count; i++) {
        int fam = tw_address_family(&l->addrs[i]);
        if ((fam == AF_INET || fam == AF_INET6) && (want == AF_UNSPEC || fam == want))
            l->addrs[n++] = l->addrs[i];
    }
    l->count = n;
    tw_address_list_interleave(l, AF_INET6);
    if (l->count > TW_ENDPOINT_MAX_ADDRESSES)
        l->count = TW_ENDPOINT_MAX_ADDRESSES;
    tw_address_list_set_port(l, ra->port, SOCK_STREAM);
    ra->addrs = l;
    if (n == 0)
        return TW_EDNS;
    ra->legs = calloc(l->count, sizeof *ra->legs + sizeof *ra->reasons);
    if (!ra->legs)
        return TW_ENOMEM;
    ra->reasons = (tw_failure **)(ra->legs + l->count);
    return 0;
}

static tw_result on_resolved(tw_result *in, void *arg)
{
    race *ra = arg;
    ra->resolving = NULL;
    if (ra->state != RACE_RESOLVING)
        return TW_RESULT_NONE; /* cancelled meanwhile; the chain frees the list */
    if (!in->value.ptr || in->value.free != tw_address_list_free) {
        /* A hook that broke its contract: refuse rather than misread. */
        race_fire(ra, tw_err(tw_failure_new(TW_DOMAIN, TW_EDNS,
                                            "cannot resolve '%.255s': the resolver gave no "
                                            "address list",
                                            ra->host)));
        return TW_RESULT_NONE;
    }
    tw_address_list *l = tw_result_move(in).value.ptr;
    int rc = race_take_addresses(ra, l);
    if (rc == TW_EDNS) {
        const char *what = !ra->has_bind ? "IPv4 or IPv6 address"
                           : tw_address_family(&ra->bind) == AF_INET6
                               ? "IPv6 address (bindAddress is IPv6)"
                               : "IPv4 address (bindAddress is IPv4)";
        race_fire(ra, tw_err(tw_failure_new(TW_DOMAIN, TW_EDNS, "cannot resolve '%.255s': no %s",
                                            ra->host, what)));
        return TW_RESULT_NONE;
    }
    if (rc < 0) {
        race_fire(ra, tw_err(tw_failure_from_code(rc)));
        return TW_RESULT_NONE;
    }
    ra->state = RACE_CONNECTING;
    start_next(ra);
    return TW_RESULT_NONE;
}

static tw_result on_resolve_failed(tw_result *in, void *arg)
{
    race *ra = arg;
    ra->resolving = NULL;
    if (ra->state != RACE_RESOLVING)
        return TW_RESULT_NONE; /* the chain drops the failure: already reported */
    tw_failure *f = tw_result_move(in).failure;
    if (!tw_failure_is(f, TW_DOMAIN, TW_ECANCELED))
        f = tw_failure_wrap(f, TW_DOMAIN, TW_EDNS, "cannot resolve '%.255s'", ra->host);
    race_fire(ra, tw_err(f));
    return TW_RESULT_NONE;
}

static void race_cancel(tw_deferred *d, void *arg)
{
    race *ra = arg;
    ra->refs++; /* the lookup's errback may drop every other reference */
    if (ra->state == RACE_RESOLVING && ra->resolving) {
        /* Hold it: our errback drops the race's hold on it. A lookup that
         * honours cancelling fails now, through on_resolve_failed. */
        tw_deferred *rd = tw_deferred_ref(ra->resolving);
        tw_deferred_cancel(rd);
        tw_deferred_unref(rd);
    }
    if (ra->d)
        race_fire(ra, tw_err(tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                            "connecting to " WHERE_FMT " was cancelled", ra->host,
                                            ra->port)));
    race_unref(ra);
}

tw_deferred *tw__hostname_connect(tw_reactor *r, tw_factory *f, const char *host, uint16_t port,
                                  const tw_connect_options *opts, const tw_address *bind,
                                  double attempt_delay)
{
    size_t hlen = strlen(host);
    race *ra = calloc(1, sizeof *ra + hlen + 1);
    if (!ra)
        return NULL;
    memcpy(ra->host, host, hlen + 1);
    ra->reactor = r;
    ra->user = f;
    ra->port = port;
    ra->opts = *opts;
    ra->opts.bind = NULL;
    if (bind) {
        ra->bind = *bind;
        ra->has_bind = true;
    }
    ra->attempt_delay = attempt_delay > 0 ? attempt_delay : TW_ENDPOINT_ATTEMPT_DELAY;
    ra->refs = 1; /* the pending result's */
    if (!(ra->d = tw_deferred_new(race_cancel, ra))) {
        free(ra);
        return NULL;
    }
    /* The caller's reference, taken first: the race may end (and drop its
     * own) before this returns. */
    tw_deferred *d = tw_deferred_ref(ra->d);

    pthread_mutex_lock(&resolver_lock);
    tw_endpoint_resolve_fn fn = resolver_fn;
    void *arg = resolver_arg;
    pthread_mutex_unlock(&resolver_lock);
    tw_deferred *rd = fn ? fn(r, host, port, arg) : tw_resolve(r, host, AF_UNSPEC);
    if (!rd) {
        race_fire(ra, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return d;
    }
    ra->resolving = rd;
    ra->refs++;
    if (tw_deferred_add_callbacks_full(rd, on_resolved, on_resolve_failed, ra, lookup_done) < 0) {
        ra->refs--;
        ra->resolving = NULL;
        tw_deferred_cancel(rd);
        tw_deferred_unref(rd);
        race_fire(ra, tw_err(tw_failure_from_code(TW_ENOMEM)));
        return d;
    }
    /* The lookup's producer keeps it alive; the callbacks hold the race. A
     * lookup that answered at once has already run them. */
    tw_deferred_unref(rd);
    return d;
}
