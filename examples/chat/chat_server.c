/* chat_server — Twisted's classic chat server over a LineReceiver: a new
 * client is asked "What's your name?"; a name already in use gets "Name
 * taken, please choose another."; a free one gets "Welcome, NAME!" and from
 * then on every line the client sends goes to everyone else who has a name,
 * as "<NAME> line". A name is free again once its client leaves. Lines end
 * with CR LF, both ways (LineReceiver's default).
 *
 * As in Twisted's version, the factory builds each protocol itself (its
 * build_protocol hook, Twisted's ChatFactory.buildProtocol) and hands it the
 * shared table of users.
 *
 * Usage: chat_server [PORT]  (default 8123 on 127.0.0.1; PORT 0 picks a free
 * port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/tcp.h"

typedef struct chat chat;

/* Twisted's `users` dict: the named clients, in a list. */
typedef struct users {
    chat *head;
} users;

struct chat {
    tw_line_receiver lr; /* first: a LineReceiver */
    users *users;
    chat *prev, *next; /* in users, once named */
    char *name;        /* NULL in state GETNAME */
    size_t name_len;
};

static chat *find_user(users *u, const char *name, size_t len)
{
    for (chat *c = u->head; c; c = c->next)
        if (c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static void chat_made(tw_protocol *p)
{
    tw_line_receiver_send_line(p, "What's your name?", 17);
}

static void handle_getname(chat *c, const char *name, size_t len)
{
    tw_protocol *p = &c->lr.r.base;
    if (find_user(c->users, name, len)) {
        tw_line_receiver_send_line(p, "Name taken, please choose another.", 34);
        return;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        tw_transport_abort_connection(p->transport);
        return;
    }
    memcpy(copy, name, len);
    copy[len] = 0;
    struct iovec welcome[] = { { "Welcome, ", 9 }, { copy, len }, { "!\r\n", 3 } };
    tw_transport_writev(p->transport, welcome, 3);
    c->name = copy;
    c->name_len = len;
    c->next = c->users->head;
    if (c->next)
        c->next->prev = c;
    c->users->head = c;
}

static void handle_chat(chat *c, const char *message, size_t len)
{
    for (chat *other = c->users->head; other; other = other->next) {
        if (other == c)
            continue;
        tw_transport *t = other->lr.r.base.transport;
        struct iovec iov[] = {
            { "<", 1 },    { c->name, c->name_len }, { "> ", 2 }, { (void *)message, len },
            { "\r\n", 2 },
        };
        tw_transport_writev(t, iov, 5);
    }
}

static int chat_line(tw_protocol *p, const char *line, size_t len)
{
    chat *c = (chat *)p;
    if (!c->name)
        handle_getname(c, line, len);
    else
        handle_chat(c, line, len);
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
        c->users->head = c->next;
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

/* Twisted's ChatFactory: builds each Chat with the shared users. */
typedef struct chat_factory {
    tw_factory base;
    users users;
} chat_factory;

static tw_protocol *chat_build(tw_factory *f, const tw_address *addr)
{
    chat *c = (chat *)tw_protocol_alloc(TW_PROTOCOL_OF(&chat_ops));
    if (!c)
        return NULL; /* out of memory: the connection is refused */
    c->users = &((chat_factory *)f)->users;
    return &c->lr.r.base;
}

static const tw_factory_ops chat_factory_ops = { .build_protocol = chat_build };

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8123;
    chat_factory factory = { { &chat_factory_ops, NULL, NULL, 0 }, { NULL } };
    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, &factory.base, &listening)) < 0) {
        fprintf(stderr, "chat_server: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("chat server listening on port %u\n", tw_address_port(tw_port_address(listening)));
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r); /* the clients still here are dropped */
    return rc < 0 ? 1 : 0;
}
