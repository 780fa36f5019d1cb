/* twirl/address.h — socket addresses (Twisted's IPv4Address, IPv6Address,
 * UNIXAddress) as one small value type. */
#ifndef TWIRL_ADDRESS_H
#define TWIRL_ADDRESS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A socket address plus the kind of socket it belongs to. A plain value:
 * copy it freely. For Unix sockets an empty path means unnamed; a path that
 * starts with '@' names the Linux abstract namespace. */
typedef struct tw_address {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } u;
    socklen_t len;
    int socktype; /* SOCK_STREAM or SOCK_DGRAM; 0 if unknown */
} tw_address;

/* AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty address. */
int tw_address_family(const tw_address *a);

/* The port (host byte order); 0 for Unix addresses. */
uint16_t tw_address_port(const tw_address *a);

/* Writes the numeric host ("127.0.0.1", "::1") or, for Unix sockets, the path
 * ("@name" for abstract ones) into buf. Returns the length it needed, like
 * snprintf; buf is always NUL-terminated when size > 0. */
size_t tw_address_host(const tw_address *a, char *buf, size_t size);

/* "127.0.0.1:8080", "[::1]:8080", "unix:/run/x.sock" or "unix:@name". Same
 * return as tw_address_host. TW_ADDRESS_TEXT_MAX bytes always suffice. */
#define TW_ADDRESS_TEXT_MAX 128
size_t tw_address_format(const tw_address *a, char *buf, size_t size);

/* Parses a numeric IPv4/IPv6 host (no names) and a port. Returns 0 or
 * TW_EINVAL. */
int tw_address_from_ip(tw_address *out, const char *host, uint16_t port, int socktype);

/* A Unix socket path ("@name": abstract). Returns 0, or TW_EINVAL when the
 * path does not fit sun_path. */
int tw_address_from_unix(tw_address *out, const char *path, int socktype);

/* Copies a kernel sockaddr of len bytes. Returns 0 or TW_EINVAL. */
int tw_address_from_sockaddr(tw_address *out, const struct sockaddr *sa, socklen_t len,
                             int socktype);

/* Same family, host and port (or path). */
int tw_address_equal(const tw_address *a, const tw_address *b);

/* True for 127.0.0.0/8, ::1 and v4-mapped loopback. */
int tw_address_is_loopback(const tw_address *a);

#ifdef __cplusplus
}
#endif
#endif
