/* resolver.c — host name lookups with c-ares, driven by the reactor.
 *
 * One c-ares channel per reactor. c-ares tells us which sockets to watch
 * (ARES_OPT_SOCK_STATE_CB): each gets a tw_watcher, whose readiness goes to
 * ares_process_fd; one reactor timer follows ares_timeout() for retries.
 *
 * c-ares calls its callbacks from inside ares_getaddrinfo, ares_process_fd,
 * ares_cancel and ares_destroy. Ours only record the outcome on a list;
 * deferreds fire from that list once c-ares has returned (flush), so user
 * callbacks never run inside c-ares and may start or cancel lookups freely.
 *
 * Works with c-ares 1.16+ (ares_getaddrinfo); Debian 12 has 1.18.1. */
#include <ares.h>
#include <ctype.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "async/async_internal.h"
#include "core/reactor_internal.h"
#include "twirl/log.h"
#include "twirl/resolver.h"

#define NAME_MAX_BYTES 253

typedef struct resolver resolver;

typedef struct query {
    struct query *next; /* on the done list */
    resolver *res;
    tw_deferred *d; /* the producer's reference; NULL once cancelled */
    int family;
    int status; /* c-ares status, once done */
    tw_address_list *list;
    bool cancelled;
    bool done;
    char host[];
} query;

typedef struct sock {
    int fd;
    tw_watcher *w;
} sock;

struct resolver {
    tw_reactor *r;
    ares_channel ch; /* NULL until the first lookup (or configure) */
    tw_resolver_options opts;
    char *servers; /* opts.servers points here */
    bool no_servers;
    sock *socks; /* O(n) lookups: c-ares keeps a handful open */
    size_t nsocks, socks_cap;
    tw_timer timer;
    size_t pending; /* queries c-ares holds (cancelled ones included) */
    size_t live;    /* of which not cancelled */
    query *done_head, *done_tail;
    int depth; /* inside a c-ares call */
    bool flushing;
    bool closed;
    tw__task cancel_task;
};

/* The slot's value once the reactor's resolver was freed. */
static char resolver_gone;

/* ------------------------------------------------------- address lists */

void tw_address_list_free(void *list)
{
    free(list);
}

tw_address_list *tw_address_list_copy(const tw_address_list *l)
{
    size_t size = sizeof *l + l->count * sizeof l->addrs[0];
    tw_address_list *c = malloc(size);
    if (c)
        memcpy(c, l, size);
    return c;
}

void tw_address_list_set_port(tw_address_list *l, uint16_t port, int socktype)
{
    for (size_t i = 0; i < l->count; i++) {
        tw_address *a = &l->addrs[i];
        if (a->u.sa.sa_family == AF_INET)
            a->u.in4.sin_port = htons(port);
        else if (a->u.sa.sa_family == AF_INET6)
            a->u.in6.sin6_port = htons(port);
        a->socktype = socktype;
    }
}

void tw_address_list_interleave(tw_address_list *l, int first_family)
{
    if (!l || l->count < 2)
        return;
    int want = first_family;
    if (want != AF_INET && want != AF_INET6)
        want = tw_address_family(&l->addrs[0]);
    for (size_t i = 0; i < l->count; i++) {
        if (tw_address_family(&l->addrs[i]) != want) {
            /* Bring the next address of the wanted family here, keeping the
             * order of everything it jumps over. */
            size_t j = i + 1;
            while (j < l->count && tw_address_family(&l->addrs[j]) != want)
                j++;
            if (j == l->count)
                return; /* that family ran out: the rest stays as it is */
            tw_address moved = l->addrs[j];
            memmove(&l->addrs[i + 1], &l->addrs[i], (j - i) * sizeof l->addrs[0]);
            l->addrs[i] = moved;
        }
        want = want == AF_INET6 ? AF_INET : AF_INET6;
    }
}

static tw_address_list *list_new(size_t n)
{
    tw_address_list *l = malloc(sizeof *l + n * sizeof l->addrs[0]);
    if (l)
        l->count = 0;
    return l;
}

/* Appends a unless the list has it already. */
static void list_add(tw_address_list *l, const struct sockaddr *sa, socklen_t len)
{
    tw_address a;
    if (tw_address_from_sockaddr(&a, sa, len, 0) < 0)
        return;
    if (a.u.sa.sa_family == AF_INET)
        a.u.in4.sin_port = 0;
    else if (a.u.sa.sa_family == AF_INET6)
        a.u.in6.sin6_port = 0;
    else
        return;
    for (size_t i = 0; i < l->count; i++)
        if (tw_address_equal(&l->addrs[i], &a))
            return;
    l->addrs[l->count++] = a;
}

/* ------------------------------------------------------------ failures */

static tw_failure *lookup_failure(const resolver *res, const char *host, int family, int status)
{
    int code = TW_EDNS;
    const char *why;
    if (res && res->no_servers && status != ARES_ENOMEM && status != ARES_ECANCELLED &&
        status != ARES_EDESTRUCTION && status != ARES_EBADNAME)
        status = -1; /* whatever c-ares made of it, this is why */
    switch (status) {
    case -1:
        why = "no DNS servers configured";
        break;
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        /* c-ares before 1.19 folds "no record of that type" (NODATA) in. */
        why = family == AF_INET    ? "no such host (domain name not found), or no IPv4 address"
              : family == AF_INET6 ? "no such host (domain name not found), or no IPv6 address"
                                   : "no such host (domain name not found)";
        break;
    case ARES_ENODATA:
        why = family == AF_INET    ? "the name has no IPv4 address"
              : family == AF_INET6 ? "the name has no IPv6 address"
                                   : "the name has no address";
        break;
    case ARES_ETIMEOUT:
        code = TW_ETIMEDOUT;
        why = "timed out (no DNS server answered)";
        break;
    case ARES_ECONNREFUSED:
        why = "the DNS server could not be reached (connection refused)";
        break;
    case ARES_EREFUSED:
        why = "the DNS server refused the query";
        break;
    case ARES_ESERVFAIL:
        why = "the DNS server failed (server failure)";
        break;
    case ARES_EBADNAME:
        why = "not a valid host name";
        break;
    case ARES_EFORMERR:
    case ARES_EBADRESP:
        why = "malformed DNS answer";
        break;
    case ARES_ENOTIMP:
        why = "the DNS server does not implement the query";
        break;
    case ARES_ENOMEM:
        code = TW_ENOMEM;
        why = "out of memory";
        break;
    case ARES_ECANCELLED:
        code = TW_ECANCELED;
        why = "cancelled";
        break;
    case ARES_EDESTRUCTION:
        code = TW_ECANCELED;
        why = "the reactor is being freed";
        break;
    default:
        why = ares_strerror(status);
        break;
    }
    return tw_failure_new(TW_DOMAIN, code, "lookup of '%.255s' failed: %s", host, why);
}

/* -------------------------------------------------------------- driving */

static void flush(resolver *res);
static void rearm(resolver *res);

static void after_ares(resolver *res)
{
    rearm(res);
    flush(res);
}

static void on_timer(void *arg)
{
    resolver *res = arg;
    res->timer = TW_TIMER_NONE;
    res->depth++;
    ares_process_fd(res->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts only */
    res->depth--;
    after_ares(res);
}

/* Follows ares_timeout: one timer for the channel's next deadline. */
static void rearm(resolver *res)
{
    struct timeval tv;
    if (!res->ch || !ares_timeout(res->ch, NULL, &tv)) {
        tw_timer_cancel(res->timer);
        res->timer = TW_TIMER_NONE;
        return;
    }
    /* A millisecond late rather than early: c-ares reads its own clock, and a
     * timer firing just before its deadline would find nothing to do. */
    double delay = (double)tv.tv_sec + (double)tv.tv_usec / 1e6 + 0.001;
    if (tw_timer_reset(res->timer, delay) == 0)
        return;
    res->timer = tw_call_later(res->r, delay, on_timer, res);
    if (!tw_timer_active(res->timer))
        tw_log(TW_LOG_ERROR, "resolver", "out of memory: lookups may never time out");
}

static void on_sock(tw_watcher *w, int fd, unsigned events, void *arg)
{
    resolver *res = arg;
    ares_socket_t rfd = events & (TW_READABLE | TW_HANGUP | TW_ERROR) ? fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = events & TW_WRITABLE ? fd : ARES_SOCKET_BAD;
    res->depth++;
    ares_process_fd(res->ch, rfd, wfd);
    res->depth--;
    after_ares(res);
}

static sock *sock_find(resolver *res, int fd)
{
    for (size_t i = 0; i < res->nsocks; i++)
        if (res->socks[i].fd == fd)
            return &res->socks[i];
    return NULL;
}

/* c-ares: a socket is opened, changes interest, or (0, 0) is about to be
 * closed — the watcher goes before the fd does. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    resolver *res = data;
    unsigned ev = (readable ? TW_READABLE : 0) | (writable ? TW_WRITABLE : 0);
    sock *s = sock_find(res, fd);
    if (!ev) {
        if (s) {
            tw_watcher_free(s->w);
            *s = res->socks[--res->nsocks];
        }
        return;
    }
    if (s) {
        tw_watcher_set(s->w, ev);
        return;
    }
    if (res->nsocks == res->socks_cap) {
        size_t cap = res->socks_cap ? res->socks_cap * 2 : 4;
        sock *a = realloc(res->socks, cap * sizeof *a);
        if (!a)
            goto fail;
        res->socks = a;
        res->socks_cap = cap;
    }
    tw_watcher *w;
    int rc = tw_watcher_new(res->r, fd, ev, on_sock, res, &w);
    if (rc < 0)
        goto fail;
    res->socks[res->nsocks++] = (sock){ fd, w };
    return;
fail:
    /* The query on this socket then times out. */
    tw_log(TW_LOG_ERROR, "resolver", "cannot watch DNS socket %d: out of memory", (int)fd);
}

/* c-ares: a lookup is over. Records the outcome; flush fires it. */
static void addrinfo_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    query *q = arg;
    resolver *res = q->res;
    res->pending--;
    if (q->cancelled) {
        ares_freeaddrinfo(ai);
        free(q);
        return;
    }
    res->live--;
    q->status = status;
    if (status == ARES_SUCCESS) {
        size_t n = 0;
        for (struct ares_addrinfo_node *node = ai ? ai->nodes : NULL; node; node = node->ai_next)
            n++;
        q->list = list_new(n);
        if (!q->list) {
            q->status = ARES_ENOMEM;
        } else {
            for (struct ares_addrinfo_node *node = ai->nodes; node; node = node->ai_next)
                if (q->family == AF_UNSPEC || node->ai_family == q->family)
                    list_add(q->list, node->ai_addr, node->ai_addrlen);
            if (q->list->count == 0) {
                free(q->list);
                q->list = NULL;
                q->status = ARES_ENODATA;
            }
        }
    }
    ares_freeaddrinfo(ai);
    q->done = true;
    q->next = NULL;
    if (res->done_tail)
        res->done_tail->next = q;
    else
        res->done_head = q;
    res->done_tail = q;
}

/* Fires the deferreds of finished lookups, outside c-ares. Callbacks may
 * start lookups that finish at once: the loop picks those up too. */
static void flush(resolver *res)
{
    if (res->depth > 0 || res->flushing)
        return;
    res->flushing = true;
    query *q;
    while ((q = res->done_head)) {
        res->done_head = q->next;
        if (!res->done_head)
            res->done_tail = NULL;
        if (q->cancelled) {
            free(q->list);
            free(q);
            continue;
        }
        tw_deferred *d = q->d;
        q->d = NULL;
        tw__deferred_set_canceller(d, NULL, NULL);
        if (q->list)
            tw_deferred_callback(d, tw_value_make(q->list, tw_address_list_free));
        else
            tw_deferred_errback(d, lookup_failure(res, q->host, q->family, q->status));
        tw_deferred_unref(d);
        free(q);
    }
    res->flushing = false;
}

static void cancel_task_run(tw_reactor *r, tw__task *t)
{
    resolver *res = (resolver *)((char *)t - offsetof(resolver, cancel_task));
    /* Only cancelled lookups left: stop c-ares working on them. */
    if (res->ch && res->live == 0 && res->pending > 0) {
        res->depth++;
        ares_cancel(res->ch);
        res->depth--;
        after_ares(res);
    }
}

static void query_cancel(tw_deferred *d, void *arg)
{
    query *q = arg;
    resolver *res = q->res;
    q->cancelled = true;
    if (!q->done) {
        res->live--;
        if (res->live == 0 && res->pending > 0)
            tw__task_post(res->r, &res->cancel_task, cancel_task_run);
    }
    tw_deferred_unref(q->d); /* ours; the canceller's caller holds one */
    q->d = NULL;
    /* d fails with a cancelled failure; q is freed when c-ares lets go. */
}

/* ------------------------------------------------------------- channel */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void ares_init_once(void)
{
    ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* Makes a channel with res's options. Returns 0 or a code. */
static int channel_init(resolver *res, const tw_resolver_options *o, const char *lookups,
                        ares_channel *out)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof ao);
    int mask = ARES_OPT_SOCK_STATE_CB;
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = res;
    if (o->timeout > 0) {
        mask |= ARES_OPT_TIMEOUTMS;
        double ms = o->timeout * 1000.0 + 0.5;
        ao.timeout = ms < 1 ? 1 : ms > 1e9 ? 1000000000 : (int)ms;
    }
    if (o->tries > 0) {
        mask |= ARES_OPT_TRIES;
        ao.tries = o->tries;
    }
    if (o->no_search) {
        mask |= ARES_OPT_DOMAINS;
        ao.domains = NULL;
        ao.ndomains = 0;
    }
    if (lookups) {
        mask |= ARES_OPT_LOOKUPS;
        ao.lookups = (char *)lookups;
    }
    ares_channel ch;
    int st = ares_init_options(&ch, &ao, mask);
    if (st != ARES_SUCCESS) {
        tw_log(TW_LOG_ERROR, "resolver", "cannot start c-ares: %s", ares_strerror(st));
        return st == ARES_ENOMEM ? TW_ENOMEM : TW_EDNS;
    }
    /* An empty list: c-ares's CSV parser ignores "", so clear explicitly. */
    if (o->servers && !*o->servers)
        st = ares_set_servers_ports(ch, NULL);
    else if (o->servers)
        st = ares_set_servers_ports_csv(ch, o->servers);
    if (st != ARES_SUCCESS) {
        ares_destroy(ch);
        return st == ARES_ENOMEM ? TW_ENOMEM : TW_EINVAL;
    }
    *out = ch;
    return 0;
}

static bool channel_has_servers(ares_channel ch)
{
    struct ares_addr_port_node *servers = NULL;
    if (ares_get_servers_ports(ch, &servers) != ARES_SUCCESS)
        return true; /* cannot tell: let c-ares find out */
    ares_free_data(servers);
    return servers != NULL;
}

/* Makes a channel with these options. Without any DNS server, the channel
 * reads only the hosts file (c-ares 1.18 leaks its query buffers when asked
 * to send with no server), and with no_hosts as well tw_resolve answers
 * without it. Returns 0 or a code. */
static int channel_make(resolver *res, const tw_resolver_options *o, ares_channel *out,
                        bool *no_servers)
{
    pthread_once(&ares_once, ares_init_once);
    if (ares_init_status != ARES_SUCCESS)
        return ares_init_status == ARES_ENOMEM ? TW_ENOMEM : TW_EDNS;
    ares_channel ch;
    int rc = channel_init(res, o, o->no_hosts ? "b" : NULL, &ch);
    if (rc < 0)
        return rc;
    *no_servers = !channel_has_servers(ch);
    if (*no_servers && !o->no_hosts) {
        ares_destroy(ch);
        if ((rc = channel_init(res, o, "f", &ch)) < 0)
            return rc;
    }
    *out = ch;
    return 0;
}

/* Destroys an idle channel (no queries: no callbacks). Its sockets' watchers
 * go through sock_state(0, 0). */
static void channel_drop(resolver *res)
{
    if (!res->ch)
        return;
    res->depth++;
    ares_destroy(res->ch);
    res->depth--;
    res->ch = NULL;
    while (res->nsocks) /* in case c-ares closed any without telling */
        tw_watcher_free(res->socks[--res->nsocks].w);
    tw_timer_cancel(res->timer);
    res->timer = TW_TIMER_NONE;
}

static void resolver_cleanup(tw_reactor *r, void *arg)
{
    resolver *res = arg;
    res->closed = true;
    tw__task_cancel(r, &res->cancel_task);
    /* Lookups in flight end with ARES_EDESTRUCTION, failed below with a
     * cancelled failure. */
    channel_drop(res);
    flush(res);
    free(res->socks);
    free(res->servers);
    free(res);
    *tw__reactor_slot(r, TW__SLOT_RESOLVER) = &resolver_gone;
}

static resolver *resolver_get(tw_reactor *r, int *rc)
{
    void **slot = tw__reactor_slot(r, TW__SLOT_RESOLVER);
    if (*slot == &resolver_gone) {
        *rc = TW_ECLOSED;
        return NULL;
    }
    resolver *res = *slot;
    if (res) {
        if (res->closed) {
            *rc = TW_ECLOSED;
            return NULL;
        }
        return res;
    }
    *rc = TW_ENOMEM;
    if (!(res = calloc(1, sizeof *res)))
        return NULL;
    res->r = r;
    if (tw__reactor_on_free(r, resolver_cleanup, res) < 0) {
        free(res);
        return NULL;
    }
    *slot = res;
    return res;
}

/* ------------------------------------------------------------ shortcuts */

/* RFC 6761 §6.3: "localhost." and names under it are loopback, always. */
static bool is_localhost(const char *host, size_t len)
{
    if (len && host[len - 1] == '.')
        len--;
    static const char lh[] = "localhost";
    size_t n = sizeof lh - 1;
    if (len < n || strncasecmp(host + len - n, lh, n) != 0)
        return false;
    return len == n || host[len - n - 1] == '.';
}

static tw_deferred *localhost_answer(int family)
{
    tw_address_list *l = list_new(2);
    if (!l)
        return tw_fail(tw_failure_from_code(TW_ENOMEM));
    if (family != AF_INET) {
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        list_add(l, (struct sockaddr *)&s6, sizeof s6);
    }
    if (family != AF_INET6) {
        struct sockaddr_in s4 = { .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        list_add(l, (struct sockaddr *)&s4, sizeof s4);
    }
    return tw_succeed(tw_value_make(l, tw_address_list_free));
}

/* A numeric address: its own answer (NULL if host is not one). getaddrinfo
 * with AI_NUMERICHOST never looks anything up. */
static tw_deferred *numeric_answer(const char *host, int family)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_family = AF_UNSPEC };
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
        return NULL;
    tw_deferred *d;
    if (family != AF_UNSPEC && ai->ai_family != family) {
        d = tw_fail(tw_failure_new(
            TW_DOMAIN, TW_EDNS, "lookup of '%.255s' failed: an %s address, and %s was asked for",
            host, ai->ai_family == AF_INET ? "IPv4" : "IPv6", family == AF_INET ? "IPv4" : "IPv6"));
    } else {
        tw_address_list *l = list_new(1);
        if (!l) {
            d = tw_fail(tw_failure_from_code(TW_ENOMEM));
        } else {
            list_add(l, ai->ai_addr, ai->ai_addrlen);
            d = tw_succeed(tw_value_make(l, tw_address_list_free));
        }
    }
    freeaddrinfo(ai);
    return d;
}

/* ------------------------------------------------------------ public API */

static tw_deferred *arg_failure(const char *what)
{
    return tw_fail(tw_failure_new(TW_DOMAIN, TW_EINVAL, "tw_resolve: %s", what));
}

tw_deferred *tw_resolve(tw_reactor *r, const char *host, int family)
{
    if (!host || !*host)
        return arg_failure("no host name");
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return arg_failure("family must be AF_UNSPEC, AF_INET or AF_INET6");
    if (!tw__reactor_on_thread(r))
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EWRONG_THREAD,
                                      "tw_resolve called off the reactor's thread"));
    size_t len = strlen(host);
    if (len > NAME_MAX_BYTES + (host[len - 1] == '.'))
        return tw_fail(tw_failure_new(TW_DOMAIN, TW_EINVAL,
                                      "lookup of '%.64s...' failed: names are at most %d bytes",
                                      host, NAME_MAX_BYTES));
    tw_deferred *d = numeric_answer(host, family);
    if (d)
        return d;
    if (is_localhost(host, len))
        return localhost_answer(family);

    int rc;
    resolver *res = resolver_get(r, &rc);
    if (!res)
        return tw_fail(
            tw_failure_new(TW_DOMAIN, rc, "lookup of '%.255s' failed: %s", host,
                           rc == TW_ECLOSED ? "the reactor is being freed" : tw_strerror(rc)));
    if (!res->ch && (rc = channel_make(res, &res->opts, &res->ch, &res->no_servers)) < 0)
        return tw_fail(
            tw_failure_new(TW_DOMAIN, rc, "lookup of '%.255s' failed: %s", host,
                           rc == TW_EDNS ? "cannot start the resolver" : tw_strerror(rc)));
    if (res->no_servers && res->opts.no_hosts)
        return tw_fail(lookup_failure(res, host, family, ARES_ENOTFOUND));
    query *q = calloc(1, sizeof *q + len + 1);
    if (!q)
        return tw_fail(tw_failure_from_code(TW_ENOMEM));
    memcpy(q->host, host, len + 1);
    q->res = res;
    q->family = family;
    if (!(d = tw_deferred_new(query_cancel, q))) {
        free(q);
        return NULL;
    }
    q->d = tw_deferred_ref(d);
    res->pending++;
    res->live++;
    struct ares_addrinfo_hints hints = { .ai_family = family };
    res->depth++;
    ares_getaddrinfo(res->ch, host, NULL, &hints, addrinfo_done, q); /* may call back now */
    res->depth--;
    after_ares(res);
    return d;
}

int tw_resolver_configure(tw_reactor *r, const tw_resolver_options *opts)
{
    tw_resolver_options o = opts ? *opts : (tw_resolver_options){ 0 };
    if (o.timeout < 0 || o.tries < 0)
        return TW_EINVAL;
    if (!tw__reactor_on_thread(r))
        return TW_EWRONG_THREAD;
    int rc;
    resolver *res = resolver_get(r, &rc);
    if (!res)
        return rc;
    if (res->depth > 0 || res->flushing || res->live > 0 || res->done_head)
        return TW_EBUSY;
    if (res->pending > 0) { /* only cancelled lookups: let them go now */
        res->depth++;
        ares_cancel(res->ch);
        res->depth--;
        tw__task_cancel(r, &res->cancel_task);
    }
    char *servers = NULL;
    if (o.servers && !(servers = strdup(o.servers)))
        return TW_ENOMEM;
    o.servers = servers;
    ares_channel ch;
    bool no_servers;
    if ((rc = channel_make(res, &o, &ch, &no_servers)) < 0) {
        free(servers);
        return rc;
    }
    channel_drop(res);
    free(res->servers);
    res->servers = servers;
    res->opts = o;
    res->ch = ch;
    res->no_servers = no_servers;
    return 0;
}

void tw_resolver_stats_get(tw_reactor *r, tw_resolver_stats *out)
{
    *out = (tw_resolver_stats){ 0 };
    resolver *res = *tw__reactor_slot(r, TW__SLOT_RESOLVER);
    if (!res || res == (resolver *)&resolver_gone)
        return;
    out->queries = res->pending;
    out->sockets = res->nsocks;
}
