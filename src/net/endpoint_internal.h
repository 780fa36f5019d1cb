/* endpoint_internal.h — what endpoint.c (grammar, registry) and
 * endpoint_stream.c (the built-in tcp, tcp6 and unix types) share. */
#ifndef TWIRL_ENDPOINT_INTERNAL_H
#define TWIRL_ENDPOINT_INTERNAL_H

#include "twirl/endpoint.h"

/* The built-in parse functions, registered by endpoint.c. */
int tw__endpoint_parse_tcp_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                  char *err, size_t errlen);
int tw__endpoint_parse_tcp6_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                   char *err, size_t errlen);
int tw__endpoint_parse_unix_server(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out,
                                   char *err, size_t errlen);
int tw__endpoint_parse_tcp_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                  char *err, size_t errlen);
int tw__endpoint_parse_unix_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                                   char *err, size_t errlen);

/* One line saying what a built-in endpoint will do ("listen 0.0.0.0:80
 * backlog=50", "connect host=::1 port=80 timeout=30"), for logs and tests.
 * Same return as snprintf. */
size_t tw__server_endpoint_render(const tw_server_endpoint *ep, char *buf, size_t size);
size_t tw__client_endpoint_render(const tw_client_endpoint *ep, char *buf, size_t size);

/* endpoint_happy.c: connects to a host name (lookup, then Happy Eyeballs;
 * see tw_hostname_endpoint_new). opts and bind are copied; host is
 * copied. Returns the deferred of tw_endpoint_connect's contract, or NULL
 * when out of memory. */
tw_deferred *tw__hostname_connect(tw_reactor *r, tw_factory *f, const char *host, uint16_t port,
                                  const tw_connect_options *opts, const tw_address *bind,
                                  double attempt_delay);

/* s made safe and short for a message (see endpoint.c); returns buf. */
const char *tw__endpoint_quote(const char *s, char *buf, size_t size);

#endif
