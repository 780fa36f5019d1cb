/* twirl/resolver.h — asynchronous host name resolution (Twisted's
 * IHostnameResolver), with c-ares driven by the reactor.
 *
 * Each reactor has one resolver, made on first use: a c-ares channel whose
 * sockets the reactor watches (fd watchers) and whose retries run on a
 * reactor timer. No thread per lookup, and no thread at all. The channel
 * reads /etc/resolv.conf (servers, search domains, ndots, timeout,
 * attempts) and honours /etc/hosts before asking DNS, as c-ares does with
 * its default "fb" lookup order.
 *
 * Shortcuts that never touch c-ares nor the network: a numeric IPv4 or IPv6
 * address (with an optional %scope for IPv6) is its own answer, and
 * "localhost" or any name under ".localhost" (RFC 6761 §6.3) answers ::1
 * and 127.0.0.1 even without /etc/hosts. Both fire the deferred before
 * tw_resolve returns.
 *
 * Failures have domain TW_DOMAIN and a message that names the host and the
 * reason, e.g. "lookup of 'nope.test' failed: no such host (domain name not
 * found)". Codes: TW_EDNS for answers that say no (no such host, no address
 * of the asked family, server failure or refusal, no servers configured,
 * a server that cannot be reached) and for malformed names; TW_ETIMEDOUT
 * when no server answered in the configured time and tries; TW_ECANCELED
 * for a cancelled lookup or one cut short by tw_reactor_free; TW_ENOMEM.
 *
 * Threads: everything here belongs to the reactor's thread. */
#ifndef TWIRL_RESOLVER_H
#define TWIRL_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twirl/address.h"
#include "twirl/deferred.h"
#include "twirl/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A lookup's answer: count addresses (at least one), each with port 0 and
 * socktype 0, without duplicates. One allocation: free it with
 * tw_address_list_free (its tw_value destructor). */
typedef struct tw_address_list {
    size_t count;
    tw_address addrs[];
} tw_address_list;

void tw_address_list_free(void *list);

/* A copy the caller owns (free with tw_address_list_free), or NULL when out
 * of memory. */
tw_address_list *tw_address_list_copy(const tw_address_list *l);

/* Sets every address's port (host byte order) and socktype (SOCK_STREAM,
 * SOCK_DGRAM or 0). */
void tw_address_list_set_port(tw_address_list *l, uint16_t port, int socktype);

/* Reorders the list for connection attempts as RFC 8305 §4 (Happy
 * Eyeballs) asks: families alternate, starting with first_family (AF_INET6
 * or AF_INET; AF_UNSPEC: the family of the first address), and within each
 * family the existing order (c-ares's RFC 6724 sort) is kept. When one
 * family runs out, the rest of the other follows. In place, allocating
 * nothing; O(n^2) moves at worst, fine for the handful of addresses a name
 * has. NULL is a no-op. */
void tw_address_list_interleave(tw_address_list *l, int first_family);

/* ------------------------------------------------------------- lookups */

/* Resolves host to its addresses: family AF_INET (A records), AF_INET6
 * (AAAA), or AF_UNSPEC (both, in parallel). Returns a deferred (one
 * reference for the caller) that fires on the reactor's thread with a
 * tw_address_list value (the list is moved to whoever keeps it), or fails as
 * described at the top of this file. host is borrowed for the call. Never
 * NULL except when even a failed deferred cannot be allocated. Bad
 * arguments (host NULL or empty, longer than 253 bytes, another family) come
 * back as an already-failed deferred with TW_EINVAL, a call from another
 * thread with TW_EWRONG_THREAD.
 *
 * Cancelling. c-ares can only cancel every query of a channel at once, so
 * tw_deferred_cancel marks this lookup cancelled and fails its deferred at
 * once with a cancelled failure; the c-ares query goes on (or is cut short
 * together with the others when no live lookup remains) and its answer, when
 * it comes, is dropped. Nothing more is called for a cancelled lookup.
 *
 * A time limit for one lookup beyond the resolver's own (timeout x tries)
 * is tw_deferred_add_timeout's job; it cancels the lookup as above.
 *
 * tw_reactor_free fails lookups still in flight with a cancelled failure
 * (their callbacks run inside tw_reactor_free), and frees what they hold. */
tw_deferred *tw_resolve(tw_reactor *r, const char *host, int family);

/* ------------------------------------------------------------ options */

typedef struct tw_resolver_options {
    /* DNS servers instead of resolv.conf's, as c-ares's
     * ares_set_servers_ports_csv takes them: "127.0.0.1:5353",
     * "[::1]:53,192.0.2.1". NULL keeps resolv.conf's; "" means none (DNS
     * lookups then fail with "no DNS servers configured"). */
    const char *servers;
    /* Seconds to wait for an answer before the first retry (later retries
     * wait longer, as c-ares does); 0: resolv.conf's, else 5. */
    double timeout;
    /* Queries per server before giving up; 0: resolv.conf's, else 4. */
    int tries;
    /* Do not try names with resolv.conf's search domains. */
    bool no_search;
    /* Ask DNS only: do not read /etc/hosts. */
    bool no_hosts;
} tw_resolver_options;

/* (Re)makes the reactor's resolver with these options (NULL: the defaults,
 * from resolv.conf). opts is borrowed for the call. Returns 0, TW_EINVAL
 * (a servers string c-ares cannot parse, a negative timeout or tries),
 * TW_EBUSY while lookups are in flight (or inside a resolver callback),
 * TW_ECLOSED while the reactor is being freed, TW_EWRONG_THREAD, TW_EDNS if c-ares cannot
 * start (unreadable configuration), or TW_ENOMEM. */
int tw_resolver_configure(tw_reactor *r, const tw_resolver_options *opts);

/* Lookups in flight that c-ares still works on (cancelled ones included
 * until c-ares lets go of them), and sockets it has open. For tests and
 * monitoring. */
typedef struct tw_resolver_stats {
    size_t queries;
    size_t sockets;
} tw_resolver_stats;
void tw_resolver_stats_get(tw_reactor *r, tw_resolver_stats *out);

#ifdef __cplusplus
}
#endif
#endif
