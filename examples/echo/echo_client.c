/* echo_client — Twisted's classic EchoClient: connects, sends one line, prints
 * what comes back, closes, and stops the reactor once the connection is
 * gone (or could not be made). Usage: echo_client [HOST [PORT [MESSAGE]]]
 * (default 127.0.0.1 8000 "hello, world"). Exit status 0 when the whole
 * line came back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/tcp.h"

/* The factory holds what every connection shares, like a ClientFactory
 * subclass: the line to send and how it went. */
typedef struct echo_factory {
    tw_factory base;
    const char *message;
    int status; /* the exit status */
} echo_factory;

typedef struct echo_client {
    tw_protocol base;
    size_t expected, received;
} echo_client;

static void client_made(tw_protocol *p)
{
    echo_client *c = (echo_client *)p;
    const char *message = ((echo_factory *)p->factory)->message;
    c->expected = strlen(message) + 1;
    tw_transport_write_str(p->transport, message);
    tw_transport_write_str(p->transport, "\n");
}

static void client_data(tw_protocol *p, const void *data, size_t len)
{
    echo_client *c = (echo_client *)p;
    fwrite(data, 1, len, stdout);
    c->received += len;
    if (c->received >= c->expected) {
        ((echo_factory *)p->factory)->status = 0;
        tw_transport_lose_connection(p->transport);
    }
}

static const tw_protocol_ops echo_client_ops = {
    .size = sizeof(echo_client),
    .connection_made = client_made,
    .data_received = client_data,
};

static void connection_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    printf("Connection failed - goodbye! (%s)\n", tw_failure_message(reason));
    tw_reactor_stop(tw_connector_reactor(c));
}

static void connection_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    printf("Connection lost - goodbye!\n");
    tw_reactor_stop(tw_connector_reactor(c));
}

static const tw_factory_ops echo_factory_ops = {
    .client_connection_failed = connection_failed,
    .client_connection_lost = connection_lost,
};

int main(int argc, char **argv)
{
    const char *host = argc > 1 ? argv[1] : "127.0.0.1";
    int port = argc > 2 ? atoi(argv[2]) : 8000;
    echo_factory factory = {
        .base = { .ops = &echo_factory_ops, .protocol = &echo_client_ops },
        .message = argc > 3 ? argv[3] : "hello, world",
        .status = 1,
    };
    tw_reactor *r = NULL;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_connect_tcp(r, host, (uint16_t)port, NULL, &factory.base, NULL)) < 0) {
        fprintf(stderr, "echo_client: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    rc = tw_reactor_run(r);
    tw_reactor_free(r);
    return rc < 0 ? 1 : factory.status;
}
