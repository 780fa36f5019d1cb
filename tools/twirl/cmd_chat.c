/* twirl chat — the chat server of Twisted's guide, with names: a client is
 * asked "What's your name?"; a name in use gets "Name taken, please choose
 * another."; a free one gets "Welcome, NAME!", and then each line the
 * client sends goes to every other named client as "<NAME> line". A name
 * is free again once its client leaves. Lines end with CR LF (a
 * LineReceiver).
 *
 * Two policies from twirl/policies.h can guard it: --idle-timeout closes a
 * connection that neither sent nor received anything for that long, and
 * --max-clients answers "The chat is full, try again later." to clients
 * over the limit and closes their connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "twirl/basic.h"
#include "twirl/policies.h"

typedef struct chat chat;
struct chat {
    tw_line_receiver lr; /* first */
    chat *prev, *next;   /* the room's named clients */
    char *name;          /* NULL until named */
    size_t name_len;
};

typedef struct room {
    tw_factory base; /* builds the chat protocol; its users live here */
    chat *users;
    tw_factory *idle, *limited; /* the policies around it, when asked for */
} room;

static double idle_timeout;
static long max_clients;

static room *room_of(tw_protocol *p)
{
    return (room *)p->factory;
}

static chat *find_user(room *rm, const char *name, size_t len)
{
    for (chat *c = rm->users; c; c = c->next)
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static void chat_made(tw_protocol *p)
{
    tw_line_receiver_send_line(p, "What's your name?", 17);
}

static void get_name(tw_protocol *p, const char *name, size_t len)
{
    chat *c = (chat *)p;
    room *rm = room_of(p);
    if (find_user(rm, name, len)) {
        tw_line_receiver_send_line(p, "Name taken, please choose another.", 34);
        return;
    }
    if (!(c->name = malloc(len + 1))) {
        tw_transport_abort_connection(p->transport);
        return;
    }
    memcpy(c->name, name, len);
    c->name[len] = 0;
    c->name_len = len;
    c->next = rm->users;
    if (c->next)
        c->next->prev = c;
    rm->users = c;
    struct iovec welcome[] = { { "Welcome, ", 9 }, { c->name, len }, { "!\r\n", 3 } };
    tw_transport_writev(p->transport, welcome, 3);
}

static void relay(tw_protocol *p, const char *message, size_t len)
{
    chat *c = (chat *)p;
    struct iovec iov[] = {
        { "<", 1 }, { c->name, c->name_len }, { "> ", 2 }, { (void *)message, len }, { "\r\n", 2 },
    };
    for (chat *other = room_of(p)->users; other; other = other->next)
        if (other != c)
            tw_transport_writev(other->lr.r.base.transport, iov, 5);
}

static int chat_line(tw_protocol *p, const char *line, size_t len)
{
    if (((chat *)p)->name)
        relay(p, line, len);
    else
        get_name(p, line, len);
    return 0;
}

static void chat_lost(tw_protocol *p, const tw_failure *reason)
{
    chat *c = (chat *)p;
    if (!c->name)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        room_of(p)->users = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void chat_destroy(tw_protocol *p)
{
    free(((chat *)p)->name);
}

static const tw_line_receiver_ops chat_ops = {
    .base = TW_LINE_RECEIVER_BASE(chat),
    .connection_made = chat_made,
    .connection_lost = chat_lost,
    .destroy = chat_destroy,
    .line_received = chat_line,
};

/* Over --max-clients. */
static void full_made(tw_protocol *p)
{
    tw_transport_write_str(p->transport, "The chat is full, try again later.\r\n");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops full_ops = { .connection_made = full_made };

static int chat_option(twirl_ctx *ctx, const char *name, const char *value, char *err,
                       size_t errlen)
{
    if (strcmp(name, "idle-timeout") == 0)
        return twirl_parse_double(name, value, &idle_timeout, err, errlen);
    return twirl_parse_int(name, value, 1, 1000000, &max_clients, err, errlen);
}

static int chat_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    room *rm = calloc(1, sizeof *rm);
    if (!rm) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rm->base.protocol = TW_PROTOCOL_OF(&chat_ops);
    tw_factory *f = &rm->base;
    if (idle_timeout > 0 && !(f = rm->idle = tw_timeout_factory_new(f, idle_timeout)))
        goto oom;
    if (max_clients > 0 &&
        !(f = rm->limited = tw_limit_total_factory_new(f, (size_t)max_clients, &full_ops)))
        goto oom;
    ctx->state = rm;
    *out = f;
    return 0;
oom:
    tw_wrapping_factory_free(rm->idle);
    free(rm);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* After the reactor is freed: every connection is gone. */
static void chat_stop(twirl_ctx *ctx)
{
    room *rm = ctx->state;
    tw_wrapping_factory_free(rm->limited);
    tw_wrapping_factory_free(rm->idle);
    free(rm);
}

static const twirl_option chat_options[] = {
    { "idle-timeout", "SECONDS", "close connections idle that long (default: never)" },
    { "max-clients", "N", "at most N connections; more are told the chat is full" },
    { NULL, NULL, NULL },
};

static const twirl_cmd chat_cmd = {
    .name = "chat",
    .summary = "a chat room with names, over lines (Twisted's chat example)",
    .description = "Asks each client \"What's your name?\", refuses a name in use (\"Name taken,\n"
                   "please choose another.\"), welcomes the others (\"Welcome, NAME!\"), and then\n"
                   "relays every line a named client sends to all the other named clients as\n"
                   "\"<NAME> line\". Lines end with CR LF.",
    .default_listen = "tcp:8123",
    .options = chat_options,
    .option = chat_option,
    .start = chat_start,
    .stop = chat_stop,
};
TWIRL_COMMAND(chat_cmd);
