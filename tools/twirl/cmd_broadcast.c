/* twirl broadcast — the "Spreader" server: each client is welcomed with its
 * number, everything a client sends is relayed to every other client, and a
 * client that sends "close" is disconnected. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

typedef struct spreader spreader;
struct spreader {
    tw_protocol base;
    spreader *prev, *next; /* the factory's clients */
    int number;
};

typedef struct spread_factory {
    tw_factory base;
    spreader *clients;
    int connections; /* ever made: the seed numbers clients this way */
} spread_factory;

static void spread_made(tw_protocol *p)
{
    spreader *s = (spreader *)p;
    spread_factory *f = (spread_factory *)p->factory;
    s->number = ++f->connections;
    s->next = f->clients;
    if (f->clients)
        f->clients->prev = s;
    f->clients = s;
    char welcome[64];
    snprintf(welcome, sizeof welcome, "welcome, you are client number %d\n", s->number);
    tw_transport_write_str(p->transport, welcome);
}

static int is_close(const char *data, size_t len)
{
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    return len == 5 && memcmp(data, "close", 5) == 0;
}

static void spread_data(tw_protocol *p, const void *data, size_t len)
{
    spread_factory *f = (spread_factory *)p->factory;
    if (is_close(data, len)) {
        tw_transport_lose_connection(p->transport);
        return;
    }
    for (spreader *c = f->clients; c; c = c->next)
        if (&c->base != p)
            tw_transport_write(c->base.transport, data, len);
}

static void spread_lost(tw_protocol *p, const tw_failure *reason)
{
    spreader *s = (spreader *)p;
    spread_factory *f = (spread_factory *)p->factory;
    if (s->prev)
        s->prev->next = s->next;
    else
        f->clients = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

static const tw_protocol_ops spread_ops = {
    .size = sizeof(spreader),
    .connection_made = spread_made,
    .data_received = spread_data,
    .connection_lost = spread_lost,
};

static spread_factory factory = { TW_FACTORY_INIT(&spread_ops, NULL), NULL, 0 };

static int broadcast_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    *out = &factory.base;
    return 0;
}

static const twirl_cmd broadcast_cmd = {
    .name = "broadcast",
    .summary = "relay every client's messages to all the others (the Spreader)",
    .description = "Welcomes each client with \"welcome, you are client number N\", relays\n"
                   "whatever a client sends to every other client, and disconnects a client\n"
                   "that sends \"close\".",
    .default_listen = "tcp:8006",
    .start = broadcast_start,
};
TWIRL_COMMAND(broadcast_cmd);
