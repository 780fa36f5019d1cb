/* broadcast_server — a TCP broadcast system, Twisted style ("Spreader"): every
 * client is welcomed with its number, and whatever a client sends is
 * relayed to every other client. A client that sends "close" is
 * disconnected. Clients are numbered from 1 in the order they connected;
 * numbers are never reused.
 *
 * As in the Twisted original, a message is whatever one read brings, so "close" must
 * arrive on its own (a trailing "\n" or "\r\n", as nc and telnet send, is
 * allowed); a line protocol would frame messages properly.
 *
 * Usage: broadcast_server [PORT]  (default 8006 on 127.0.0.1; PORT 0 picks
 * a free port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/tcp.h"

typedef struct spreader spreader;

/* The factory holds what the connections share: the count and the list of
 * connected clients (Twisted: SpreadFactory.numProtocols and clients). */
typedef struct spread_factory {
    tw_factory base;
    int num_protocols;
    spreader *clients;
} spread_factory;

struct spreader {
    tw_protocol base;
    spreader *next; /* in the factory's list */
    char id[TW_ADDRESS_TEXT_MAX];
};

static spread_factory *factory_of(tw_protocol *p)
{
    return (spread_factory *)p->factory;
}

static void spreader_made(tw_protocol *p)
{
    spreader *s = (spreader *)p;
    spread_factory *f = factory_of(p);
    tw_address peer;
    if (tw_transport_get_peer(p->transport, &peer) == 0)
        tw_address_format(&peer, s->id, sizeof s->id);
    f->num_protocols++;
    printf("new connection %d from %s\n", f->num_protocols, s->id);
    char welcome[80];
    snprintf(welcome, sizeof welcome, "Welcome to twirl world, you are client number %d!\n",
             f->num_protocols);
    tw_transport_write_str(p->transport, welcome);
    s->next = f->clients;
    f->clients = s;
}

/* "close", alone in its chunk, bare or with the newline nc or telnet adds. */
static bool is_close(const char *text, size_t len)
{
    return (len == 5 && memcmp(text, "close", 5) == 0) ||
           (len == 6 && memcmp(text, "close\n", 6) == 0) ||
           (len == 7 && memcmp(text, "close\r\n", 7) == 0);
}

static void spreader_data(tw_protocol *p, const void *data, size_t len)
{
    spreader *s = (spreader *)p;
    const char *text = data;
    if (is_close(text, len)) {
        printf("%s closed\n", s->id);
        tw_transport_lose_connection(p->transport);
        return;
    }
    int shown = (int)len - (len > 0 && text[len - 1] == '\n'); /* printf adds one */
    printf("spreading message from %s: %.*s\n", s->id, shown, text);
    /* Writing never calls back into us, so the list cannot change under
     * the loop (a failed write only queues that client's teardown). */
    for (spreader *other = factory_of(p)->clients; other; other = other->next)
        if (other != s)
            tw_transport_write(other->base.transport, data, len);
}

static void spreader_lost(tw_protocol *p, const tw_failure *reason)
{
    spreader *s = (spreader *)p;
    for (spreader **link = &factory_of(p)->clients; *link; link = &(*link)->next) {
        if (*link == s) {
            *link = s->next;
            break;
        }
    }
    printf("lost connection from %s\n", s->id);
}

static const tw_protocol_ops spreader_ops = {
    .size = sizeof(spreader),
    .connection_made = spreader_made,
    .data_received = spreader_data,
    .connection_lost = spreader_lost,
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8006;
    spread_factory factory = { .base = { .protocol = &spreader_ops } };
    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line at once */
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, &factory.base, &listening)) < 0) {
        fprintf(stderr, "broadcast_server: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("broadcast server listening on port %u\n", tw_address_port(tw_port_address(listening)));
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r); /* clients still connected are dropped: their connection_lost runs */
    return rc < 0 ? 1 : 0;
}
