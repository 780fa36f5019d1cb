/* policies_limits.c — LimitTotalConnectionsFactory, LimitConnectionsByPeer
 * and ThrottlingFactory (twisted.protocols.policies). Each counts a
 * connection from build_protocol until it is lost (or destroyed unmade). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/policies_internal.h"
#include "twirl/log.h"

/* ============================================================ limits */

/* A peer's IP: family 4 or 6 (0 for Unix sockets and the unknown) and the
 * address bytes, zero-padded. */
typedef struct peer_key {
    unsigned char family;
    unsigned char addr[16];
} peer_key;

typedef struct peer_entry peer_entry;
struct peer_entry {
    peer_entry *next;
    peer_key key;
    size_t count;
};

typedef struct limit_factory {
    tw__wfactory wf;
    size_t limit; /* total; or per peer */
    const tw_protocol_ops *overflow;
    size_t count;
    /* Per peer: a chained hash table, seeded so that a client cannot
     * choose addresses that all land in one chain. */
    peer_entry **buckets;
    size_t nbuckets, npeers;
    uint64_t seed;
} limit_factory;

static void peer_key_of(const tw_address *a, peer_key *k)
{
    memset(k, 0, sizeof *k);
    if (!a)
        return;
    int fam = tw_address_family(a);
    if (fam == AF_INET) {
        k->family = 4;
        memcpy(k->addr, &a->u.in4.sin_addr, 4);
    } else if (fam == AF_INET6) {
        const struct in6_addr *in6 = &a->u.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            k->family = 4;
            memcpy(k->addr, in6->s6_addr + 12, 4);
        } else {
            k->family = 6;
            memcpy(k->addr, in6->s6_addr, 16);
        }
    }
}

static uint64_t peer_hash(const limit_factory *lf, const peer_key *k)
{
    uint64_t h = 0xcbf29ce484222325ull ^ lf->seed;
    h = (h ^ k->family) * 0x100000001b3ull;
    for (size_t i = 0; i < sizeof k->addr; i++)
        h = (h ^ k->addr[i]) * 0x100000001b3ull;
    h ^= h >> 29; /* FNV's low bits are weak: mix before masking */
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static peer_entry **peer_slot(limit_factory *lf, const peer_key *k)
{
    if (!lf->buckets)
        return NULL;
    peer_entry **pp = &lf->buckets[peer_hash(lf, k) & (lf->nbuckets - 1)];
    while (*pp && memcmp(&(*pp)->key, k, sizeof *k) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the table when it is fuller than one peer per bucket. On failure
 * the old table stays (longer chains, still correct). */
static void peer_grow(limit_factory *lf)
{
    if (lf->buckets && lf->npeers < lf->nbuckets)
        return;
    size_t n = lf->nbuckets ? lf->nbuckets * 2 : 16;
    peer_entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < lf->nbuckets; i++) {
        for (peer_entry *e = lf->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t b = peer_hash(lf, &e->key) & (n - 1);
            e->next = nb[b];
            nb[b] = e;
        }
    }
    free(lf->buckets);
    lf->buckets = nb;
    lf->nbuckets = n;
}

static size_t peer_count(limit_factory *lf, const peer_key *k)
{
    peer_entry **pp = peer_slot(lf, k);
    return pp && *pp ? (*pp)->count : 0;
}

static int peer_add(limit_factory *lf, const peer_key *k)
{
    peer_grow(lf);
    peer_entry **pp = peer_slot(lf, k);
    if (!pp)
        return TW_ENOMEM;
    if (*pp) {
        (*pp)->count++;
        return 0;
    }
    peer_entry *e = calloc(1, sizeof *e);
    if (!e)
        return TW_ENOMEM;
    e->key = *k;
    e->count = 1;
    *pp = e;
    lf->npeers++;
    return 0;
}

static void peer_remove(limit_factory *lf, const peer_key *k)
{
    peer_entry **pp = peer_slot(lf, k);
    if (!pp || !*pp)
        return;
    if (--(*pp)->count == 0) {
        peer_entry *e = *pp;
        *pp = e->next;
        free(e);
        lf->npeers--;
    }
}

static void peer_text(const tw_address *addr, char *buf, size_t size)
{
    if (addr)
        tw_address_format(addr, buf, size);
    else
        snprintf(buf, size, "(unknown)");
}

static tw_protocol *limit_total_build(tw_factory *f, const tw_address *addr);
static tw_protocol *limit_peer_build(tw_factory *f, const tw_address *addr);
static tw_protocol *throttle_build(tw_factory *f, const tw_address *addr);

static const tw_factory_ops limit_total_factory_ops = TW__WRAPPING_FACTORY_OPS(limit_total_build);
static const tw_factory_ops limit_peer_factory_ops = TW__WRAPPING_FACTORY_OPS(limit_peer_build);
static const tw_factory_ops throttle_factory_ops = TW__WRAPPING_FACTORY_OPS(throttle_build);

static void limit_total_release(tw__wfactory *wf, tw_protocol_wrapper *w)
{
    ((limit_factory *)wf)->count--;
}

static tw_protocol *limit_total_build(tw_factory *f, const tw_address *addr)
{
    limit_factory *lf = (limit_factory *)f;
    tw_protocol *inner;
    if (lf->count < lf->limit) {
        inner = tw__wf_build_inner(&lf->wf, addr);
    } else if (lf->overflow) {
        inner = tw_protocol_alloc(lf->overflow);
        if (inner)
            inner->factory = lf->wf.inner;
    } else {
        char who[TW_ADDRESS_TEXT_MAX];
        peer_text(addr, who, sizeof who);
        tw_log(TW_LOG_INFO, "policies", "connection limit (%zu) reached: refusing %s", lf->limit,
               who);
        return NULL;
    }
    tw_protocol *p = inner ? tw__wf_wrap(&lf->wf, inner, addr) : NULL;
    if (p)
        lf->count++;
    return p;
}

tw_factory *tw_limit_total_factory_new(tw_factory *wrapped, size_t limit,
                                       const tw_protocol_ops *overflow)
{
    limit_factory *lf = (limit_factory *)tw__wf_alloc(sizeof *lf, wrapped, NULL,
                                                      &limit_total_factory_ops, TW__WF_LIMIT_TOTAL);
    if (!lf)
        return NULL;
    lf->limit = limit;
    lf->overflow = overflow;
    lf->wf.release_conn = limit_total_release;
    return &lf->wf.base;
}

static void limit_peer_release(tw__wfactory *wf, tw_protocol_wrapper *w)
{
    limit_factory *lf = (limit_factory *)wf;
    peer_key k;
    peer_key_of(&w->peer, &k);
    peer_remove(lf, &k);
    lf->count--;
}

static tw_protocol *limit_peer_build(tw_factory *f, const tw_address *addr)
{
    limit_factory *lf = (limit_factory *)f;
    peer_key k;
    peer_key_of(addr, &k);
    char who[TW_ADDRESS_TEXT_MAX];
    if (peer_count(lf, &k) >= lf->limit) {
        peer_text(addr, who, sizeof who);
        tw_log(TW_LOG_INFO, "policies", "%s has %zu connections already: refusing another", who,
               lf->limit);
        return NULL;
    }
    if (peer_add(lf, &k) < 0) {
        peer_text(addr, who, sizeof who);
        tw_log(TW_LOG_ERROR, "policies", "out of memory counting %s's connections: refusing", who);
        return NULL;
    }
    tw_protocol *inner = tw__wf_build_inner(&lf->wf, addr);
    tw_protocol *p = inner ? tw__wf_wrap(&lf->wf, inner, addr) : NULL;
    if (!p) {
        peer_remove(lf, &k);
        return NULL;
    }
    lf->count++;
    return p;
}

static void limit_peer_fini(tw__wfactory *wf)
{
    limit_factory *lf = (limit_factory *)wf;
    for (size_t i = 0; i < lf->nbuckets; i++) {
        for (peer_entry *e = lf->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(lf->buckets);
}

tw_factory *tw_limit_per_peer_factory_new(tw_factory *wrapped, size_t max_per_peer)
{
    limit_factory *lf = (limit_factory *)tw__wf_alloc(sizeof *lf, wrapped, NULL,
                                                      &limit_peer_factory_ops, TW__WF_LIMIT_PEER);
    if (!lf)
        return NULL;
    lf->limit = max_per_peer ? max_per_peer : 5;
    lf->wf.release_conn = limit_peer_release;
    lf->wf.fini = limit_peer_fini;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t s = (uint64_t)(uintptr_t)lf ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    s = (s ^ (s >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64's finaliser */
    s = (s ^ (s >> 27)) * 0x94d049bb133111ebull;
    lf->seed = s ^ (s >> 31);
    return &lf->wf.base;
}

size_t tw_limit_factory_count(const tw_factory *f)
{
    tw__wfactory *wf = tw__wf_as(f, 0);
    if (!wf || (wf->kind != TW__WF_LIMIT_TOTAL && wf->kind != TW__WF_LIMIT_PEER))
        return 0;
    return ((limit_factory *)wf)->count;
}

size_t tw_limit_per_peer_count(const tw_factory *f, const tw_address *peer)
{
    limit_factory *lf = (limit_factory *)tw__wf_as(f, TW__WF_LIMIT_PEER);
    if (!lf)
        return 0;
    peer_key k;
    peer_key_of(peer, &k);
    return peer_count(lf, &k);
}

/* ============================================================ ThrottlingFactory */

typedef struct throttle_factory {
    tw__wfactory wf;
    tw_reactor *reactor;
    tw_throttling_options o;
    size_t count;
    size_t read_this_second, written_this_second;
    tw_timer check_read, check_write, unhold_read, unhold_write;
    bool reads_held, writes_held;
    size_t read_holds, write_holds, refused;
} throttle_factory;

static void hold_one_read(tw_protocol_wrapper *w, void *arg)
{
    tw_protocol_wrapper_hold_reads(w, *(bool *)arg);
}

static void hold_one_write(tw_protocol_wrapper *w, void *arg)
{
    tw_protocol_wrapper_hold_writes(w, *(bool *)arg);
}

static void hold_all(throttle_factory *tf, bool reads, bool on)
{
    if (reads) {
        tf->reads_held = on;
        tw_log(TW_LOG_DEBUG, "policies", "%s reads on %zu connections",
               on ? "throttling" : "resuming", tf->wf.open);
    } else {
        tf->writes_held = on;
        tw_log(TW_LOG_DEBUG, "policies", "%s writes on %zu connections",
               on ? "throttling" : "resuming", tf->wf.open);
    }
    tw_wrapping_factory_each(&tf->wf.base, reads ? hold_one_read : hold_one_write, &on);
}

static void unhold_reads(void *arg)
{
    throttle_factory *tf = arg;
    tf->unhold_read = TW_TIMER_NONE;
    hold_all(tf, true, false);
}

static void unhold_writes(void *arg)
{
    throttle_factory *tf = arg;
    tf->unhold_write = TW_TIMER_NONE;
    hold_all(tf, false, false);
}

/* Twisted's checkReadBandwidth / checkWriteBandwidth, one for both. */
static void check(throttle_factory *tf, bool reads)
{
    size_t *done = reads ? &tf->read_this_second : &tf->written_this_second;
    size_t limit = reads ? tf->o.read_limit : tf->o.write_limit;
    tw_timer *unhold = reads ? &tf->unhold_read : &tf->unhold_write;
    if (*done > limit) {
        double hold_for = (double)*done / (double)limit - 1.0;
        if (reads)
            tf->read_holds++;
        else
            tf->write_holds++;
        hold_all(tf, reads, true);
        /* A hold still pending is replaced: the new one is measured from now. */
        tw_timer_cancel(*unhold);
        *unhold = tw_call_later(tf->reactor, hold_for, reads ? unhold_reads : unhold_writes, tf);
        if (!tw_timer_active(*unhold))
            hold_all(tf, reads, false); /* no memory for the timer: never hold forever */
    }
    *done = 0;
}

static void check_reads(void *arg)
{
    throttle_factory *tf = arg;
    check(tf, true);
    tf->check_read = tw_call_later(tf->reactor, 1.0, check_reads, tf);
}

static void check_writes(void *arg)
{
    throttle_factory *tf = arg;
    check(tf, false);
    tf->check_write = tw_call_later(tf->reactor, 1.0, check_writes, tf);
}

static void throttle_stop_timers(throttle_factory *tf)
{
    tw_timer *timers[] = { &tf->check_read, &tf->check_write, &tf->unhold_read, &tf->unhold_write };
    for (size_t i = 0; i < sizeof timers / sizeof *timers; i++) {
        tw_timer_cancel(*timers[i]);
        *timers[i] = TW_TIMER_NONE;
    }
    tf->reads_held = tf->writes_held = false;
}

static void throttle_release(tw__wfactory *wf, tw_protocol_wrapper *w)
{
    throttle_factory *tf = (throttle_factory *)wf;
    if (--tf->count == 0)
        throttle_stop_timers(tf);
}

static tw_protocol *throttle_build(tw_factory *f, const tw_address *addr)
{
    throttle_factory *tf = (throttle_factory *)f;
    if (tf->o.max_connections && tf->count >= tf->o.max_connections) {
        char who[TW_ADDRESS_TEXT_MAX];
        peer_text(addr, who, sizeof who);
        tw_log(TW_LOG_INFO, "policies", "maximum connection count (%zu) reached: refusing %s",
               tf->o.max_connections, who);
        tf->refused++;
        return NULL;
    }
    tw_protocol *inner = tw__wf_build_inner(&tf->wf, addr);
    tw_protocol *p = inner ? tw__wf_wrap(&tf->wf, inner, addr) : NULL;
    if (!p)
        return NULL;
    if (tf->count++ == 0) {
        /* The first connection starts the clock (Twisted checks at once,
         * which finds nothing, and then every second). */
        tf->read_this_second = tf->written_this_second = 0;
        if (tf->o.read_limit)
            tf->check_read = tw_call_later(tf->reactor, 1.0, check_reads, tf);
        if (tf->o.write_limit)
            tf->check_write = tw_call_later(tf->reactor, 1.0, check_writes, tf);
    }
    return p;
}

static void th_made(tw_protocol_wrapper *w)
{
    throttle_factory *tf = (throttle_factory *)tw__wf_of(w);
    if (tf->reads_held)
        tw_protocol_wrapper_hold_reads(w, true);
    if (tf->writes_held)
        tw_protocol_wrapper_hold_writes(w, true);
}

static void th_data(tw_protocol_wrapper *w, const void *data, size_t len)
{
    ((throttle_factory *)tw__wf_of(w))->read_this_second += len;
}

static void th_wrote(tw_protocol_wrapper *w, size_t len)
{
    ((throttle_factory *)tw__wf_of(w))->written_this_second += len;
}

static const tw_wrapper_ops throttle_hooks = {
    .connection_made = th_made,
    .data_received = th_data,
    .wrote = th_wrote,
};

tw_factory *tw_throttling_factory_new(tw_reactor *r, tw_factory *wrapped,
                                      const tw_throttling_options *o)
{
    if (!r)
        return NULL;
    throttle_factory *tf = (throttle_factory *)tw__wf_alloc(
        sizeof *tf, wrapped, &throttle_hooks, &throttle_factory_ops, TW__WF_THROTTLING);
    if (!tf)
        return NULL;
    tf->reactor = r;
    if (o)
        tf->o = *o;
    tf->wf.release_conn = throttle_release;
    return &tf->wf.base;
}

void tw_throttling_factory_stats(const tw_factory *f, tw_throttling_stats *out)
{
    memset(out, 0, sizeof *out);
    throttle_factory *tf = (throttle_factory *)tw__wf_as(f, TW__WF_THROTTLING);
    if (!tf)
        return;
    out->connections = tf->count;
    out->read_this_second = tf->read_this_second;
    out->written_this_second = tf->written_this_second;
    out->reads_held = tf->reads_held;
    out->writes_held = tf->writes_held;
    out->read_holds = tf->read_holds;
    out->write_holds = tf->write_holds;
    out->refused = tf->refused;
}
