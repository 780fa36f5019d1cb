/* endpoint.c — the endpoint-string grammar (Twisted's _tokenize and
 * _parse), the argument binding that type parsers use, the type registry,
 * and the generic endpoint calls. The built-in types live in
 * endpoint_stream.c.
 *
 * The tokenizer follows Twisted's state machine exactly: at the start of a
 * field both ':' and '=' are operators; after a '=' only ':' is, so a value
 * may hold '='. A backslash takes the next byte literally. Every string is
 * copied into one arena sized from the description up front, so parsing
 * allocates twice (the struct and the arena) and cannot fail half-way. */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/endpoint_internal.h"
#include "net/tls_internal.h"

enum { QUOTE_MAX = 120, NAME_MAX_BYTES = 31, TYPES_MAX = 32 };

typedef struct field {
    char *key;   /* NULL for a positional field */
    char *value; /* the field itself when positional */
} field;

struct tw_endpoint_args {
    char *description;
    char *type;
    size_t npos, nkw;
    char *pos[TW_ENDPOINT_MAX_FIELDS];
    char *keys[TW_ENDPOINT_MAX_FIELDS];
    char *values[TW_ENDPOINT_MAX_FIELDS];
    uint64_t pos_used, kw_used;
    char *arena;
    size_t arena_used, arena_cap;
};

/* ------------------------------------------------------------ messages */

/* Copies s for a message: at most QUOTE_MAX bytes ("..." marks a cut), and
 * bytes that are not printable ASCII shown as '?', so that a hostile string
 * cannot put control characters into a log line. */
static void quote(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s), o = 0;
    bool cut = n > QUOTE_MAX;
    if (cut)
        n = QUOTE_MAX - 3;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (cut)
        for (int i = 0; i < 3 && o + 1 < size; i++)
            buf[o++] = '.';
    if (size)
        buf[o] = '\0';
}

static int verror(const char *description, char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (!err || errlen == 0)
        return TW_ESYNTAX;
    char q[QUOTE_MAX + 1];
    quote(description ? description : "", q, sizeof q);
    int n = snprintf(err, errlen, "%s: ", q);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    return TW_ESYNTAX;
}

static int error_at(const char *description, char *err, size_t errlen, const char *fmt, ...)
    TW_PRINTF(4, 5);
static int error_at(const char *description, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(description, err, errlen, fmt, ap);
    va_end(ap);
    return TW_ESYNTAX;
}

int tw_endpoint_syntax_error(const tw_endpoint_args *a, char *err, size_t errlen, const char *fmt,
                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(a->description, err, errlen, fmt, ap);
    va_end(ap);
    return TW_ESYNTAX;
}

const char *tw__endpoint_quote(const char *s, char *buf, size_t size)
{
    quote(s, buf, size);
    return buf;
}

/* ------------------------------------------------------------ tokenizer */

static char *arena_take(tw_endpoint_args *a, size_t n)
{
    char *p = a->arena + a->arena_used;
    a->arena_used += n;
    return p;
}

/* The keys whose values may be IPv6 addresses written with bare colons. */
static bool address_key(const char *key)
{
    return strcmp(key, "interface") == 0 || strcmp(key, "host") == 0 ||
           strcmp(key, "bindAddress") == 0;
}

static bool is_ipv6(const char *s)
{
    struct in6_addr a;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        char bare[INET6_ADDRSTRLEN + 1];
        if (n - 2 >= sizeof bare)
            return false;
        memcpy(bare, s + 1, n - 2);
        bare[n - 2] = '\0';
        return inet_pton(AF_INET6, bare, &a) == 1;
    }
    return inet_pton(AF_INET6, s, &a) == 1;
}

/* The leniency: key=<v>:<p1>:<p2>... where v:p1:...:pk is an IPv6 address
 * and p1..pk are positional fields. Joins the longest such run into the
 * value and drops the fields it took. Returns the new field count. */
static size_t absorb_ipv6(tw_endpoint_args *a, field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!f[i].key || !address_key(f[i].key))
            continue;
        size_t best = 0, len = strlen(f[i].value);
        char cand[INET6_ADDRSTRLEN + 3];
        if (len >= sizeof cand)
            continue;
        memcpy(cand, f[i].value, len + 1);
        for (size_t k = 1; i + k < n && !f[i + k].key; k++) {
            size_t add = strlen(f[i + k].value);
            if (len + 1 + add >= sizeof cand)
                break;
            cand[len++] = ':';
            memcpy(cand + len, f[i + k].value, add + 1);
            len += add;
            if (is_ipv6(cand))
                best = k;
        }
        if (best == 0)
            continue;
        /* Rebuild the joined value in the arena (the parts stay where they
         * are; the arena was sized for one more copy of everything). */
        size_t total = strlen(f[i].value);
        for (size_t k = 1; k <= best; k++)
            total += 1 + strlen(f[i + k].value);
        char *joined = arena_take(a, total + 1), *o = joined;
        o = stpcpy(o, f[i].value);
        for (size_t k = 1; k <= best; k++) {
            *o++ = ':';
            o = stpcpy(o, f[i + k].value);
        }
        f[i].value = joined;
        memmove(&f[i + 1], &f[i + 1 + best], (n - i - 1 - best) * sizeof *f);
        n -= best;
    }
    return n;
}

int tw_endpoint_parse(const char *description, tw_endpoint_args **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!description)
        description = "";
    size_t len = strnlen(description, TW_ENDPOINT_MAX_BYTES + 1);
    if (len > TW_ENDPOINT_MAX_BYTES)
        return error_at(description, err, errlen, "description too long (limit %d bytes)",
                        TW_ENDPOINT_MAX_BYTES);
    if (len == 0)
        return error_at(description, err, errlen, "empty endpoint description");
    size_t colons = 0;
    for (size_t i = 0; i < len; i++) {
        if (description[i] == '\\' && i + 1 < len)
            i++;
        else if (description[i] == ':')
            colons++;
    }
    if (colons + 1 > TW_ENDPOINT_MAX_FIELDS)
        return error_at(description, err, errlen, "too many fields (%zu; limit %d)", colons + 1,
                        TW_ENDPOINT_MAX_FIELDS);
    if (description[len - 1] == '\\') {
        /* Only a dangling escape: "\\\\" at the end is an escaped one. */
        size_t run = 0;
        while (run < len && description[len - 1 - run] == '\\')
            run++;
        if (run % 2 == 1)
            return error_at(description, err, errlen, "trailing backslash escapes nothing");
    }

    tw_endpoint_args *a = calloc(1, sizeof *a);
    if (!a)
        return TW_ENOMEM;
    /* Room for: the description, every field's text with its NUL (twice:
     * once as tokenized, once more if the IPv6 leniency joins fields). */
    a->arena_cap = (len + 1) + 2 * (len + 2 * TW_ENDPOINT_MAX_FIELDS + 2);
    a->arena = malloc(a->arena_cap);
    if (!a->arena) {
        free(a);
        return TW_ENOMEM;
    }
    a->description = arena_take(a, len + 1);
    memcpy(a->description, description, len + 1);

    field f[TW_ENDPOINT_MAX_FIELDS];
    size_t nf = 0;
    char *cur = a->arena + a->arena_used; /* the string being built */
    size_t curlen = 0;
    char *key = NULL; /* set once this field met its '=' */
    bool eq_is_op = true;
    for (size_t i = 0; i <= len; i++) {
        char c = description[i];
        if (i == len || c == ':' || (c == '=' && eq_is_op)) {
            cur[curlen] = '\0';
            a->arena_used += curlen + 1;
            if (c == '=' && i < len) {
                key = cur;
                eq_is_op = false;
            } else {
                f[nf].key = key;
                f[nf].value = cur;
                nf++;
                key = NULL;
                eq_is_op = true;
            }
            cur = a->arena + a->arena_used;
            curlen = 0;
            continue;
        }
        if (c == '\\')
            c = description[++i]; /* a dangling one was refused above */
        cur[curlen++] = c;
    }
    nf = absorb_ipv6(a, f, nf);

    for (size_t i = 0; i < nf; i++) {
        if (f[i].key) {
            a->keys[a->nkw] = f[i].key;
            a->values[a->nkw++] = f[i].value;
        } else if (!a->type) {
            a->type = f[i].value;
        } else {
            a->pos[a->npos++] = f[i].value;
        }
    }
    if (!a->type) {
        int rc = error_at(description, err, errlen,
                          "no endpoint type (the first field without '=', e.g. tcp)");
        tw_endpoint_args_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void tw_endpoint_args_free(tw_endpoint_args *a)
{
    if (!a)
        return;
    free(a->arena);
    free(a);
}

const char *tw_endpoint_args_description(const tw_endpoint_args *a)
{
    return a->description;
}

const char *tw_endpoint_args_type(const tw_endpoint_args *a)
{
    return a->type;
}

size_t tw_endpoint_args_npositional(const tw_endpoint_args *a)
{
    return a->npos;
}

const char *tw_endpoint_args_positional(const tw_endpoint_args *a, size_t i)
{
    return i < a->npos ? a->pos[i] : NULL;
}

size_t tw_endpoint_args_nkeywords(const tw_endpoint_args *a)
{
    return a->nkw;
}

int tw_endpoint_args_keyword(const tw_endpoint_args *a, size_t i, const char **key,
                             const char **value)
{
    if (i >= a->nkw)
        return TW_EINVAL;
    *key = a->keys[i];
    *value = a->values[i];
    return 0;
}

/* ------------------------------------------------------------ binding */

int tw_endpoint_param(tw_endpoint_args *a, const char *name, int position, const char **value,
                      char *err, size_t errlen)
{
    const char *kw = NULL;
    for (size_t i = 0; i < a->nkw; i++) {
        if (strcmp(a->keys[i], name) == 0) {
            kw = a->values[i]; /* the last one wins, as in a Python dict */
            a->kw_used |= 1ull << i;
        }
    }
    const char *pos = NULL;
    if (position >= 0 && (size_t)position < a->npos) {
        pos = a->pos[position];
        a->pos_used |= 1ull << position;
    }
    *value = kw ? kw : pos;
    if (kw && pos) {
        char q1[QUOTE_MAX + 1], q2[QUOTE_MAX + 1];
        *value = NULL;
        return tw_endpoint_syntax_error(a, err, errlen, "%s given twice ('%s' and %s=%s)", name,
                                        tw__endpoint_quote(pos, q1, sizeof q1), name,
                                        tw__endpoint_quote(kw, q2, sizeof q2));
    }
    return *value ? 1 : 0;
}

int tw_endpoint_args_finish(tw_endpoint_args *a, char *err, size_t errlen)
{
    char q[QUOTE_MAX + 1], t[QUOTE_MAX + 1];
    for (size_t i = 0; i < a->npos; i++)
        if (!(a->pos_used & (1ull << i)))
            return tw_endpoint_syntax_error(a, err, errlen, "unexpected argument '%s' for %s",
                                            tw__endpoint_quote(a->pos[i], q, sizeof q),
                                            tw__endpoint_quote(a->type, t, sizeof t));
    for (size_t i = 0; i < a->nkw; i++)
        if (!(a->kw_used & (1ull << i)))
            return tw_endpoint_syntax_error(a, err, errlen, "unknown option '%s' for %s",
                                            tw__endpoint_quote(a->keys[i], q, sizeof q),
                                            tw__endpoint_quote(a->type, t, sizeof t));
    return 0;
}

/* ------------------------------------------------------------ registry */

typedef struct type_entry {
    char name[NAME_MAX_BYTES + 1];
    void (*fn)(void); /* a server or client parse function */
} type_entry;

typedef struct registry {
    type_entry entries[TYPES_MAX];
    size_t n;
} registry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static registry servers, clients;
static bool builtins_added;

static void add_builtins(void)
{
    /* Under reg_lock. */
    if (builtins_added)
        return;
    builtins_added = true;
    static const struct {
        registry *reg;
        const char *name;
        void (*fn)(void);
    } b[] = {
        { &servers, "tcp", (void (*)(void))tw__endpoint_parse_tcp_server },
        { &servers, "tcp6", (void (*)(void))tw__endpoint_parse_tcp6_server },
        { &servers, "unix", (void (*)(void))tw__endpoint_parse_unix_server },
        { &clients, "tcp", (void (*)(void))tw__endpoint_parse_tcp_client },
        { &clients, "unix", (void (*)(void))tw__endpoint_parse_unix_client },
        /* Referenced here, so a static link always brings TLS along. */
        { &servers, "ssl", (void (*)(void))tw__endpoint_parse_ssl_server },
        { &clients, "tls", (void (*)(void))tw__endpoint_parse_tls_client },
    };
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) {
        registry *reg = b[i].reg;
        snprintf(reg->entries[reg->n].name, sizeof reg->entries[reg->n].name, "%s", b[i].name);
        reg->entries[reg->n++].fn = b[i].fn;
    }
}

static bool good_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_')
            return false;
    return true;
}

static int reg_add(registry *reg, const char *name, void (*fn)(void))
{
    if (!name || !fn || !good_name(name))
        return TW_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    add_builtins();
    for (size_t i = 0; i < reg->n; i++)
        if (strcasecmp(reg->entries[i].name, name) == 0)
            rc = TW_EBUSY;
    if (rc == 0 && reg->n == TYPES_MAX)
        rc = TW_ELIMIT;
    if (rc == 0) {
        snprintf(reg->entries[reg->n].name, sizeof reg->entries[reg->n].name, "%s", name);
        reg->entries[reg->n++].fn = fn;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

static void (*reg_find(registry *reg, const char *name))(void)
{
    void (*fn)(void) = NULL;
    pthread_mutex_lock(&reg_lock);
    add_builtins();
    for (size_t i = 0; i < reg->n && !fn; i++)
        if (strcasecmp(reg->entries[i].name, name) == 0)
            fn = reg->entries[i].fn;
    pthread_mutex_unlock(&reg_lock);
    return fn;
}

int tw_endpoint_register_server_type(const char *name, tw_server_endpoint_parse_fn fn)
{
    return reg_add(&servers, name, (void (*)(void))fn);
}

int tw_endpoint_register_client_type(const char *name, tw_client_endpoint_parse_fn fn)
{
    return reg_add(&clients, name, (void (*)(void))fn);
}

/* ------------------------------------------------------------ from strings */

static int unknown_type(tw_endpoint_args *a, const char *kind, char *err, size_t errlen)
{
    char q[QUOTE_MAX + 1];
    return tw_endpoint_syntax_error(a, err, errlen, "unknown %s endpoint type '%s'", kind,
                                    tw__endpoint_quote(a->type, q, sizeof q));
}

int tw_server_endpoint_from_string(tw_reactor *r, const char *description, tw_server_endpoint **out,
                                   char *err, size_t errlen)
{
    tw_endpoint_args *a;
    *out = NULL;
    int rc = tw_endpoint_parse(description, &a, err, errlen);
    if (rc < 0)
        return rc;
    tw_server_endpoint_parse_fn fn = (tw_server_endpoint_parse_fn)reg_find(&servers, a->type);
    tw_server_endpoint *ep = NULL;
    if (!fn)
        rc = unknown_type(a, "server", err, errlen);
    else
        rc = fn(r, a, &ep, err, errlen);
    if (rc == 0 && !(ep->description = strdup(a->description))) {
        tw_server_endpoint_free(ep);
        rc = TW_ENOMEM;
    }
    tw_endpoint_args_free(a);
    if (rc == 0)
        *out = ep;
    return rc;
}

int tw_client_endpoint_from_string(tw_reactor *r, const char *description, tw_client_endpoint **out,
                                   char *err, size_t errlen)
{
    tw_endpoint_args *a;
    *out = NULL;
    int rc = tw_endpoint_parse(description, &a, err, errlen);
    if (rc < 0)
        return rc;
    tw_client_endpoint_parse_fn fn = (tw_client_endpoint_parse_fn)reg_find(&clients, a->type);
    tw_client_endpoint *ep = NULL;
    if (!fn)
        rc = unknown_type(a, "client", err, errlen);
    else
        rc = fn(r, a, &ep, err, errlen);
    if (rc == 0 && !(ep->description = strdup(a->description))) {
        tw_client_endpoint_free(ep);
        rc = TW_ENOMEM;
    }
    tw_endpoint_args_free(a);
    if (rc == 0)
        *out = ep;
    return rc;
}

/* ------------------------------------------------------------ generic calls */

int tw_endpoint_listen_err(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err,
                           size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    *out = NULL;
    return ep->ops->listen(ep, f, out, err, errlen);
}

int tw_endpoint_listen(tw_server_endpoint *ep, tw_factory *f, tw_port **out)
{
    return tw_endpoint_listen_err(ep, f, out, NULL, 0);
}

void tw_server_endpoint_free(tw_server_endpoint *ep)
{
    if (!ep)
        return;
    free(ep->description);
    ep->description = NULL;
    if (ep->ops->free)
        ep->ops->free(ep);
    else
        free(ep);
}

tw_deferred *tw_endpoint_connect(tw_client_endpoint *ep, tw_factory *f)
{
    return ep->ops->connect(ep, f);
}

void tw_client_endpoint_free(tw_client_endpoint *ep)
{
    if (!ep)
        return;
    free(ep->description);
    ep->description = NULL;
    if (ep->ops->free)
        ep->ops->free(ep);
    else
        free(ep);
}
