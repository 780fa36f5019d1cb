/* address.c — the tw_address value type. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "twirl/address.h"
#include "twirl/error.h"

int tw_address_family(const tw_address *a)
{
    return a->len ? a->u.sa.sa_family : AF_UNSPEC;
}

uint16_t tw_address_port(const tw_address *a)
{
    switch (tw_address_family(a)) {
    case AF_INET:
        return ntohs(a->u.in4.sin_port);
    case AF_INET6:
        return ntohs(a->u.in6.sin6_port);
    default:
        return 0;
    }
}

/* The path of a Unix address: "@name" for the abstract namespace (whose
 * first byte on the wire is NUL and whose length is explicit). */
static size_t unix_path(const tw_address *a, char *buf, size_t size)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = a->len > off ? a->len - off : 0;
    const char *p = a->u.un.sun_path;
    if (n > 0 && p[0] == '\0')
        return (size_t)snprintf(buf, size, "@%.*s", (int)(n - 1), p + 1);
    size_t plen = strnlen(p, n);
    return (size_t)snprintf(buf, size, "%.*s", (int)plen, p);
}

size_t tw_address_host(const tw_address *a, char *buf, size_t size)
{
    char tmp[INET6_ADDRSTRLEN];
    switch (tw_address_family(a)) {
    case AF_INET:
        inet_ntop(AF_INET, &a->u.in4.sin_addr, tmp, sizeof tmp);
        return (size_t)snprintf(buf, size, "%s", tmp);
    case AF_INET6:
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, tmp, sizeof tmp);
        return (size_t)snprintf(buf, size, "%s", tmp);
    case AF_UNIX:
        return unix_path(a, buf, size);
    default:
        return (size_t)snprintf(buf, size, "%s", "");
    }
}

size_t tw_address_format(const tw_address *a, char *buf, size_t size)
{
    char host[TW_ADDRESS_TEXT_MAX];
    tw_address_host(a, host, sizeof host);
    switch (tw_address_family(a)) {
    case AF_INET:
        return (size_t)snprintf(buf, size, "%s:%u", host, tw_address_port(a));
    case AF_INET6:
        return (size_t)snprintf(buf, size, "[%s]:%u", host, tw_address_port(a));
    case AF_UNIX:
        return (size_t)snprintf(buf, size, "unix:%s", host);
    default:
        return (size_t)snprintf(buf, size, "%s", "(none)");
    }
}

int tw_address_from_ip(tw_address *out, const char *host, uint16_t port, int socktype)
{
    memset(out, 0, sizeof *out);
    out->socktype = socktype;
    if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->len = sizeof out->u.in4;
        return 0;
    }
    /* Accept "[::1]" as well as "::1". */
    char bare[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof bare) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof out->u.in6;
        return 0;
    }
    memset(out, 0, sizeof *out);
    return TW_EINVAL;
}

int tw_address_from_unix(tw_address *out, const char *path, int socktype)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(path);
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (n == 0 || n >= sizeof out->u.un.sun_path)
        return TW_EINVAL;
    out->u.un.sun_family = AF_UNIX;
    out->socktype = socktype;
    if (path[0] == '@') {
        /* abstract: a leading NUL, no terminator, explicit length */
        out->u.un.sun_path[0] = '\0';
        memcpy(out->u.un.sun_path + 1, path + 1, n - 1);
        out->len = (socklen_t)(off + n);
    } else {
        memcpy(out->u.un.sun_path, path, n + 1);
        out->len = (socklen_t)(off + n + 1);
    }
    return 0;
}

int tw_address_from_sockaddr(tw_address *out, const struct sockaddr *sa, socklen_t len,
                             int socktype)
{
    memset(out, 0, sizeof *out);
    if (len > sizeof out->u)
        return TW_EINVAL;
    memcpy(&out->u, sa, len);
    out->len = len;
    out->socktype = socktype;
    return 0;
}

int tw_address_equal(const tw_address *a, const tw_address *b)
{
    int fam = tw_address_family(a);
    if (fam != tw_address_family(b))
        return 0;
    switch (fam) {
    case AF_INET:
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    case AF_INET6:
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    case AF_UNIX:
        return a->len == b->len && memcmp(&a->u.un, &b->u.un, a->len) == 0;
    default:
        return 1;
    }
}

int tw_address_is_loopback(const tw_address *a)
{
    switch (tw_address_family(a)) {
    case AF_INET:
        return (ntohl(a->u.in4.sin_addr.s_addr) >> 24) == 127;
    case AF_INET6:
        if (IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr) && a->u.in6.sin6_addr.s6_addr[12] == 127;
    default:
        return 0;
    }
}
