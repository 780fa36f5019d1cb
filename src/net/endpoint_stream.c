/* endpoint_stream.c — the built-in endpoint types: tcp, tcp6 and unix
 * servers (Twisted's TCP4ServerEndpoint, TCP6ServerEndpoint,
 * UNIXServerEndpoint), tcp and unix clients, and the connect machinery
 * that turns a connector's factory hooks into a deferred. A tcp client
 * given a host name hands over to endpoint_happy.c (name lookup and Happy
 * Eyeballs); numeric addresses and "localhost" connect here directly.
 *
 * Connecting (Twisted's _WrappingFactory): each attempt is one allocation
 * holding a wrapping factory handed to tw_connect. Its build_protocol
 * builds through the user's factory and points the new protocol's ops at a
 * copy of its table whose connection_made is ours; that shim puts the
 * user's table and factory back on the protocol before anything of the
 * user's runs, calls the user's connection_made, then fires the deferred
 * with the protocol. client_connection_failed (or a loss before
 * connection_made) fails the deferred. The attempt is freed from the
 * wrapping factory's stop_factory — the connector's last touch of the
 * factory, after the connection is lost or the attempt failed — so the
 * wrapper outlives every call the connector makes on it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/endpoint_internal.h"

enum { QUOTE_BYTES = 121, DEFAULT_BACKLOG = 50 };

/* ------------------------------------------------------------ values */

/* A decimal number without sign, spaces or excess digits, in [min, max]. */
static bool parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int bad(tw_endpoint_args *a, char *err, size_t errlen, const char *what, const char *value,
               const char *hint)
{
    char q[QUOTE_BYTES];
    return tw_endpoint_syntax_error(a, err, errlen, "bad %s '%s'%s%s%s", what,
                                    tw__endpoint_quote(value, q, sizeof q), hint ? " (" : "",
                                    hint ? hint : "", hint ? ")" : "");
}

static int missing(tw_endpoint_args *a, char *err, size_t errlen, const char *what)
{
    return tw_endpoint_syntax_error(a, err, errlen, "missing %s", what);
}

static int get_port(tw_endpoint_args *a, int position, unsigned long min, uint16_t *port, char *err,
                    size_t errlen)
{
    const char *v;
    int rc = tw_endpoint_param(a, "port", position, &v, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return missing(a, err, errlen, "port");
    unsigned long n;
    if (!parse_uint(v, min, 65535, &n))
        return bad(a, err, errlen, "port", v, min ? "1-65535" : "0-65535");
    *port = (uint16_t)n;
    return 0;
}

static int get_backlog(tw_endpoint_args *a, int position, int *backlog, char *err, size_t errlen)
{
    const char *v;
    int rc = tw_endpoint_param(a, "backlog", position, &v, err, errlen);
    if (rc < 0)
        return rc;
    *backlog = DEFAULT_BACKLOG;
    unsigned long n;
    if (rc == 1) {
        if (!parse_uint(v, 1, 65535, &n))
            return bad(a, err, errlen, "backlog", v, "1-65535");
        *backlog = (int)n;
    }
    return 0;
}

/* Seconds: digits and an optional fraction only (no signs, exponents,
 * "inf"), in [min, max]. */
static int get_seconds(tw_endpoint_args *a, const char *name, double dflt, double min, double max,
                       const char *hint, double *out, char *err, size_t errlen)
{
    const char *v;
    int rc = tw_endpoint_param(a, name, -1, &v, err, errlen);
    if (rc < 0)
        return rc;
    *out = dflt;
    if (rc == 1) {
        char *end;
        double t = strtod(v, &end);
        bool plain = v[0] >= '0' && v[0] <= '9' && strspn(v, "0123456789.") == strlen(v);
        if (!plain || *end != '\0' || !isfinite(t) || t < min || t <= 0 || t > max)
            return bad(a, err, errlen, name, v, hint);
        *out = t;
    }
    return 0;
}

static int get_timeout(tw_endpoint_args *a, double *timeout, char *err, size_t errlen)
{
    return get_seconds(a, "timeout", 30.0, 0, 1e6, "seconds, more than 0", timeout, err, errlen);
}

/* A 0/1 flag (any other whole number counts as 1, as Twisted's int()). */
static int get_flag(tw_endpoint_args *a, const char *name, bool dflt, bool *on, char *err,
                    size_t errlen, int position)
{
    const char *v;
    int rc = tw_endpoint_param(a, name, position, &v, err, errlen);
    if (rc < 0)
        return rc;
    *on = dflt;
    unsigned long n;
    if (rc == 1) {
        if (!parse_uint(v, 0, 4294967295ul, &n))
            return bad(a, err, errlen, name, v, "0 or 1");
        *on = n != 0;
    }
    return 0;
}

static int get_lockfile(tw_endpoint_args *a, bool dflt, bool *on, char *err, size_t errlen,
                        int position)
{
    return get_flag(a, "lockfile", dflt, on, err, errlen, position);
}

/* A host name's form (RFC 1123 labels; '_' tolerated, as DNS has it). */
static bool good_hostname(const char *h)
{
    size_t n = strlen(h);
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

/* ------------------------------------------------------------ servers */

typedef struct stream_server {
    tw_server_endpoint base;
    tw_address addr;
    tw_listen_options opts;
} stream_server;

static int stream_listen(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err,
                         size_t errlen)
{
    stream_server *s = (stream_server *)ep;
    int rc = tw_listen(ep->reactor, &s->addr, &s->opts, f, out);
    if (rc < 0 && err && errlen) {
        char w[TW_ADDRESS_TEXT_MAX], q[QUOTE_BYTES];
        tw_address_format(&s->addr, w, sizeof w);
        snprintf(err, errlen, "%s: cannot listen on %s: %s",
                 tw__endpoint_quote(ep->description ? ep->description : ep->ops->type, q, sizeof q),
                 w, tw_strerror(rc));
    }
    return rc;
}

static const tw_server_endpoint_ops tcp_server_ops = { "tcp", stream_listen, NULL };
static const tw_server_endpoint_ops unix_server_ops = { "unix", stream_listen, NULL };

int tw_stream_server_endpoint_new(tw_reactor *r, const tw_address *addr,
                                  const tw_listen_options *opts, tw_server_endpoint **out)
{
    *out = NULL;
    int family = tw_address_family(addr);
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX)
        return TW_EINVAL;
    stream_server *s = calloc(1, sizeof *s);
    if (!s)
        return TW_ENOMEM;
    s->base.ops = family == AF_UNIX ? &unix_server_ops : &tcp_server_ops;
    s->base.reactor = r;
    s->addr = *addr;
    s->addr.socktype = SOCK_STREAM;
    if (opts)
        s->opts = *opts;
    *out = &s->base;
    return 0;
}

/* Twisted: tcp takes (port, interface="", backlog=50); tcp6 takes
 * (port, backlog=50, interface="::"). */
static int parse_tcp_server(tw_reactor *r, tw_endpoint_args *a, bool v6, tw_server_endpoint **out,
                            char *err, size_t errlen)
{
    uint16_t port = 0; /* set by get_port; gcc -O2 cannot tell */
    int backlog, rc;
    const char *iface;
    bool reuse_port;
    if ((rc = get_port(a, 0, 0, &port, err, errlen)) < 0 ||
        (rc = get_backlog(a, v6 ? 1 : 2, &backlog, err, errlen)) < 0 ||
        (rc = tw_endpoint_param(a, "interface", v6 ? 2 : 1, &iface, err, errlen)) < 0 ||
        (rc = get_flag(a, "reusePort", false, &reuse_port, err, errlen, -1)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    if (!iface || !*iface)
        iface = v6 ? "::" : "0.0.0.0";
    tw_address addr;
    if (tw_address_from_ip(&addr, iface, port, SOCK_STREAM) < 0)
        return bad(a, err, errlen, "interface", iface, "a numeric IPv4 or IPv6 address");
    if (v6 && tw_address_family(&addr) != AF_INET6)
        return bad(a, err, errlen, "interface", iface, "tcp6 needs an IPv6 address");
    tw_listen_options o = { .backlog = backlog, .reuse_port = reuse_port };
    return tw_stream_server_endpoint_new(r, &addr, &o, out);
}

int tw__endpoint_parse_tcp_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                  char *err, size_t errlen)
{
    return parse_tcp_server(r, a, false, out, err, errlen);
}

int tw__endpoint_parse_tcp6_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                   char *err, size_t errlen)
{
    return parse_tcp_server(r, a, true, out, err, errlen);
}

static int unix_path(tw_endpoint_args *a, const char *path, tw_address *addr, char *err,
                     size_t errlen)
{
    if (tw_address_from_unix(addr, path, SOCK_STREAM) < 0) {
        char hint[64];
        snprintf(hint, sizeof hint, "1 to %zu bytes",
                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return bad(a, err, errlen, "path", path, hint);
    }
    return 0;
}

/* Twisted: unix takes (address, mode="666", backlog=50, lockfile=True). */
int tw__endpoint_parse_unix_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                   char *err, size_t errlen)
{
    const char *path, *mode;
    int backlog, rc;
    bool lockfile;
    if ((rc = tw_endpoint_param(a, "address", 0, &path, err, errlen)) < 0)
        return rc;
    if (rc == 0)
        return missing(a, err, errlen, "path");
    if ((rc = tw_endpoint_param(a, "mode", 1, &mode, err, errlen)) < 0 ||
        (rc = get_backlog(a, 2, &backlog, err, errlen)) < 0 ||
        (rc = get_lockfile(a, true, &lockfile, err, errlen, 3)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    unsigned long m = 0666;
    if (mode) {
        size_t n = strlen(mode);
        if (n == 0 || n > 5 || strspn(mode, "01234567") != n ||
            (m = strtoul(mode, NULL, 8)) > 07777)
            return bad(a, err, errlen, "mode", mode, "octal permissions such as 660");
        /* tw_listen_options.mode 0 means "leave the umask's": a request
         * for no permissions at all cannot be carried, so say so. */
        if (m == 0)
            return bad(a, err, errlen, "mode", mode, "0 is not supported; use e.g. 600");
    }
    tw_address addr;
    if ((rc = unix_path(a, path, &addr, err, errlen)) < 0)
        return rc;
    tw_listen_options o = { .backlog = backlog, .mode = (unsigned)m, .lockfile = lockfile };
    return tw_stream_server_endpoint_new(r, &addr, &o, out);
}

/* ------------------------------------------------------------ attempts */

typedef struct attempt {
    tw_factory base; /* first: the connector's factory is the attempt */
    tw_protocol_ops shim;
    const tw_protocol_ops *user_ops;
    tw_factory *user;
    tw_reactor *reactor;
    tw_deferred *d; /* our reference, until fired */
    tw_connector *connector;
    tw_connect_options opts;
    tw_address bind;
    bool has_bind;
    bool no_protocol; /* the user's factory refused to build one */
} attempt;

static void attempt_free(attempt *a)
{
    free(a);
}

static void attempt_fire(attempt *a, tw_result res)
{
    tw_deferred *d = a->d;
    if (!d) {
        tw_result_free(&res);
        return;
    }
    a->d = NULL;
    tw_deferred_fire(d, res);
    tw_deferred_unref(d);
}

static void shim_made(tw_protocol *p)
{
    attempt *a = (attempt *)((char *)p->ops - offsetof(attempt, shim));
    /* Undo the wrapping before any user code sees the protocol. */
    p->ops = a->user_ops;
    p->factory = a->user;
    if (p->ops->connection_made)
        p->ops->connection_made(p);
    attempt_fire(a, tw_ok(p, NULL));
}

static tw_protocol *wrap_build(tw_factory *f, const tw_address *addr)
{
    attempt *a = (attempt *)f;
    tw_protocol *p = tw_factory_build(a->user, addr);
    if (!p) {
        a->no_protocol = true;
        return NULL;
    }
    a->user_ops = p->ops;
    a->shim = *p->ops;
    a->shim.connection_made = shim_made;
    p->ops = &a->shim;
    return p;
}

static void wrap_start(tw_factory *f)
{
    tw_factory_do_start(((attempt *)f)->user);
}

static void wrap_stop(tw_factory *f)
{
    attempt *a = (attempt *)f;
    tw_factory_do_stop(a->user);
    if (a->d) /* cannot happen: every way here fired it; never leave it hanging */
        attempt_fire(a, tw_err(tw_failure_new(TW_DOMAIN, TW_ECONNECTION_LOST,
                                              "connection attempt ended without a result")));
    attempt_free(a);
}

static void wrap_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    attempt *a = (attempt *)f;
    if (a->no_protocol) {
        char w[TW_ADDRESS_TEXT_MAX];
        tw_address_format(tw_connector_destination(c), w, sizeof w);
        attempt_fire(a, tw_err(tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                              "the factory built no protocol for %s", w)));
        return;
    }
    attempt_fire(a, tw_err(tw_failure_ref((tw_failure *)reason)));
}

static void wrap_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    /* Only matters when the connection ended before connection_made (the
     * transport could not start): the deferred is still waiting. */
    attempt_fire((attempt *)f, tw_err(tw_failure_ref((tw_failure *)reason)));
}

static const tw_factory_ops wrap_ops = {
    .build_protocol = wrap_build,
    .start_factory = wrap_start,
    .stop_factory = wrap_stop,
    .client_connection_failed = wrap_failed,
    .client_connection_lost = wrap_lost,
};

static void attempt_cancel(tw_deferred *d, void *arg)
{
    attempt *a = arg;
    if (a->connector) {
        /* Reports through wrap_failed (which fails d) and then frees the
         * attempt from wrap_stop: a is gone after this call. */
        tw_connector_stop_connecting(a->connector);
    }
}

static attempt *attempt_new(tw_reactor *r, tw_factory *f, const tw_connect_options *opts,
                            const tw_address *bind)
{
    attempt *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->base.ops = &wrap_ops;
    a->base.protocol = f->protocol;
    a->base.user_data = f->user_data;
    a->user = f;
    a->reactor = r;
    a->opts = *opts;
    if (bind) {
        a->bind = *bind;
        a->has_bind = true;
    }
    if (!(a->d = tw_deferred_new(attempt_cancel, a))) {
        attempt_free(a);
        return NULL;
    }
    return a;
}

/* Fails before the connector exists: the attempt is freed here. */
static void attempt_abandon(attempt *a, tw_failure *f)
{
    attempt_fire(a, tw_err(f));
    attempt_free(a);
}

static void connect_now(attempt *a, const tw_address *dest)
{
    a->opts.bind = a->has_bind ? &a->bind : NULL;
    int rc = tw_connect(a->reactor, dest, &a->opts, &a->base, &a->connector);
    if (rc < 0) {
        char w[TW_ADDRESS_TEXT_MAX];
        tw_address_format(dest, w, sizeof w);
        attempt_abandon(
            a, tw_failure_new(TW_DOMAIN, rc, "cannot connect to %s: %s", w, tw_strerror(rc)));
    }
}

/* ------------------------------------------------------------ tcp clients */

typedef struct tcp_client {
    tw_client_endpoint base;
    char *host;
    uint16_t port;
    tw_connect_options opts;
    tw_address bind;
    bool has_bind;
    double attempt_delay; /* Happy Eyeballs, for names */
} tcp_client;

static tw_deferred *tcp_connect(tw_client_endpoint *ep, tw_factory *f)
{
    tcp_client *t = (tcp_client *)ep;
    const tw_address *bind = t->has_bind ? &t->bind : NULL;
    const char *host = strcmp(t->host, "localhost") == 0 ? "127.0.0.1" : t->host;
    tw_address dest;
    if (tw_address_from_ip(&dest, host, t->port, SOCK_STREAM) < 0)
        return tw__hostname_connect(ep->reactor, f, t->host, t->port, &t->opts, bind,
                                    t->attempt_delay);
    attempt *a = attempt_new(ep->reactor, f, &t->opts, bind);
    if (!a)
        return NULL;
    /* The caller's reference, taken first: the attempt may end (and drop
     * its own) before this returns. */
    tw_deferred *d = tw_deferred_ref(a->d);
    connect_now(a, &dest);
    return d;
}

static void tcp_client_free(tw_client_endpoint *ep)
{
    free(((tcp_client *)ep)->host);
    free(ep);
}

static const tw_client_endpoint_ops tcp_client_ops = { "tcp", tcp_connect, tcp_client_free };

static bool good_host(const char *host)
{
    tw_address tmp;
    return tw_address_from_ip(&tmp, host, 0, SOCK_STREAM) == 0 || good_hostname(host);
}

int tw_hostname_endpoint_new(tw_reactor *r, const char *host, uint16_t port,
                             const tw_connect_options *opts, double attempt_delay,
                             tw_client_endpoint **out)
{
    *out = NULL;
    if (!host || !good_host(host) || port == 0)
        return TW_EINVAL;
    if (attempt_delay == 0)
        attempt_delay = TW_ENDPOINT_ATTEMPT_DELAY;
    if (!isfinite(attempt_delay) || attempt_delay < TW_ENDPOINT_ATTEMPT_DELAY_MIN ||
        attempt_delay > TW_ENDPOINT_ATTEMPT_DELAY_MAX)
        return TW_EINVAL;
    tcp_client *t = calloc(1, sizeof *t);
    if (!t)
        return TW_ENOMEM;
    if (!(t->host = strdup(host))) {
        free(t);
        return TW_ENOMEM;
    }
    t->base.ops = &tcp_client_ops;
    t->base.reactor = r;
    t->port = port;
    t->attempt_delay = attempt_delay;
    if (opts) {
        t->opts = *opts;
        if (opts->bind) {
            t->bind = *opts->bind;
            t->has_bind = true;
        }
    }
    t->opts.bind = NULL; /* the attempt points it at its own copy */
    *out = &t->base;
    return 0;
}

int tw_tcp_client_endpoint_new(tw_reactor *r, const char *host, uint16_t port,
                               const tw_connect_options *opts, tw_client_endpoint **out)
{
    return tw_hostname_endpoint_new(r, host, port, opts, TW_ENDPOINT_ATTEMPT_DELAY, out);
}

/* Twisted's _parseClientTCP: two positional fields are host and port; one
 * is the port if host= is given, else the host. (Where Twisted lets
 * positional fields silently override host= or port=, we refuse.) */
int tw__endpoint_parse_tcp_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                  char *err, size_t errlen)
{
    bool host_kw = false;
    for (size_t i = 0; i < tw_endpoint_args_nkeywords(a); i++) {
        const char *k, *v;
        tw_endpoint_args_keyword(a, i, &k, &v);
        host_kw |= strcmp(k, "host") == 0;
    }
    const char *host, *bind_s;
    uint16_t port = 0; /* set by get_port; gcc -O2 cannot tell */
    double timeout, attempt_delay;
    int rc;
    bool host_positional = !host_kw || tw_endpoint_args_npositional(a) >= 2;
    if ((rc = tw_endpoint_param(a, "host", host_positional ? 0 : -1, &host, err, errlen)) < 0)
        return rc;
    if (rc == 0)
        return missing(a, err, errlen, "host");
    if ((rc = get_port(a, host_positional ? 1 : 0, 1, &port, err, errlen)) < 0 ||
        (rc = get_timeout(a, &timeout, err, errlen)) < 0 ||
        (rc = tw_endpoint_param(a, "bindAddress", -1, &bind_s, err, errlen)) < 0 ||
        (rc = get_seconds(a, "attemptDelay", TW_ENDPOINT_ATTEMPT_DELAY,
                          TW_ENDPOINT_ATTEMPT_DELAY_MIN, TW_ENDPOINT_ATTEMPT_DELAY_MAX,
                          "seconds, 0.01 to 60", &attempt_delay, err, errlen)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    if (!good_host(host))
        return bad(a, err, errlen, "host", host, "an IP address or a host name");
    tw_connect_options o = { .timeout = timeout };
    tw_address bind;
    if (bind_s) {
        if (tw_address_from_ip(&bind, bind_s, 0, SOCK_STREAM) < 0)
            return bad(a, err, errlen, "bindAddress", bind_s, "a numeric IPv4 or IPv6 address");
        o.bind = &bind;
    }
    return tw_hostname_endpoint_new(r, host, port, &o, attempt_delay, out);
}

/* ------------------------------------------------------------ unix clients */

typedef struct unix_client {
    tw_client_endpoint base;
    tw_address addr;
    tw_connect_options opts;
    bool check_lock;
} unix_client;

/* Twisted's checkPID: a live server holds PATH.lock (see tw_listen_options
 * .lockfile). Returns 0 if one does. */
static int lock_held(const tw_address *addr)
{
    char path[sizeof addr->u.un.sun_path + 8];
    snprintf(path, sizeof path, "%s.lock", addr->u.un.sun_path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : -ESRCH;
    close(fd);
    return rc;
}

static tw_deferred *unix_connect(tw_client_endpoint *ep, tw_factory *f)
{
    unix_client *u = (unix_client *)ep;
    attempt *a = attempt_new(ep->reactor, f, &u->opts, NULL);
    if (!a)
        return NULL;
    tw_deferred *d = tw_deferred_ref(a->d);
    if (u->check_lock && lock_held(&u->addr) < 0) {
        char w[TW_ADDRESS_TEXT_MAX];
        tw_address_format(&u->addr, w, sizeof w);
        attempt_abandon(a, tw_failure_new(TW_DOMAIN, -ECONNREFUSED,
                                          "connection to %s refused: no live server holds "
                                          "its lock file",
                                          w));
        return d;
    }
    connect_now(a, &u->addr);
    return d;
}

static const tw_client_endpoint_ops unix_client_ops = { "unix", unix_connect, NULL };

int tw_unix_client_endpoint_new(tw_reactor *r, const char *path, const tw_connect_options *opts,
                                bool check_lock, tw_client_endpoint **out)
{
    *out = NULL;
    unix_client *u = calloc(1, sizeof *u);
    if (!u)
        return TW_ENOMEM;
    if (!path || tw_address_from_unix(&u->addr, path, SOCK_STREAM) < 0) {
        free(u);
        return TW_EINVAL;
    }
    u->base.ops = &unix_client_ops;
    u->base.reactor = r;
    if (opts)
        u->opts = *opts;
    u->opts.bind = NULL;
    u->check_lock = check_lock;
    *out = &u->base;
    return 0;
}

/* Twisted's _parseClientUNIX: (path) and the keywords timeout, lockfile. */
int tw__endpoint_parse_unix_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                   char *err, size_t errlen)
{
    const char *path;
    double timeout;
    bool lockfile;
    int rc;
    if ((rc = tw_endpoint_param(a, "path", 0, &path, err, errlen)) < 0)
        return rc;
    if (rc == 0)
        return missing(a, err, errlen, "path");
    if ((rc = get_timeout(a, &timeout, err, errlen)) < 0 ||
        (rc = get_lockfile(a, false, &lockfile, err, errlen, -1)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    tw_address addr;
    if ((rc = unix_path(a, path, &addr, err, errlen)) < 0)
        return rc;
    tw_connect_options o = { .timeout = timeout };
    return tw_unix_client_endpoint_new(r, path, &o, lockfile, out);
}

/* ------------------------------------------------------------ description */

size_t tw__server_endpoint_render(const tw_server_endpoint *ep, char *buf, size_t size)
{
    if (ep->ops != &tcp_server_ops && ep->ops != &unix_server_ops)
        return (size_t)snprintf(buf, size, "%s (not built in)", ep->ops->type);
    const stream_server *s = (const stream_server *)ep;
    char w[TW_ADDRESS_TEXT_MAX];
    tw_address_format(&s->addr, w, sizeof w);
    if (ep->ops == &unix_server_ops)
        return (size_t)snprintf(buf, size, "listen %s backlog=%d mode=%o lockfile=%d", w,
                                s->opts.backlog, s->opts.mode, s->opts.lockfile);
    return (size_t)snprintf(buf, size, "listen %s backlog=%d", w, s->opts.backlog);
}

size_t tw__client_endpoint_render(const tw_client_endpoint *ep, char *buf, size_t size)
{
    if (ep->ops == &unix_client_ops) {
        const unix_client *u = (const unix_client *)ep;
        char w[TW_ADDRESS_TEXT_MAX];
        tw_address_format(&u->addr, w, sizeof w);
        return (size_t)snprintf(buf, size, "connect %s timeout=%g lockfile=%d", w, u->opts.timeout,
                                u->check_lock);
    }
    if (ep->ops != &tcp_client_ops)
        return (size_t)snprintf(buf, size, "%s (not built in)", ep->ops->type);
    const tcp_client *t = (const tcp_client *)ep;
    char b[TW_ADDRESS_TEXT_MAX] = "";
    if (t->has_bind)
        tw_address_host(&t->bind, b, sizeof b);
    char delay[48] = "";
    if (t->attempt_delay != TW_ENDPOINT_ATTEMPT_DELAY)
        snprintf(delay, sizeof delay, " attemptDelay=%g", t->attempt_delay);
    return (size_t)snprintf(buf, size, "connect host=%s port=%u timeout=%g%s%s%s", t->host, t->port,
                            t->opts.timeout, t->has_bind ? " bind=" : "", b, delay);
}
