/* simple_logger — Twisted's classic SimpleLogger: prints who connected, every chunk
 * of data as it arrives, and who left. It never writes to its clients.
 * Usage: simple_logger [PORT]  (default 1234 on 127.0.0.1; PORT 0 picks a
 * free port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>

#include "twirl/tcp.h"

typedef struct simple_logger {
    tw_protocol base;
    /* Twisted's transport.client. Kept from connection_made: once the
     * connection is lost the socket is gone, and its peer with it. */
    char client[TW_ADDRESS_TEXT_MAX];
} simple_logger;

static void logger_made(tw_protocol *p)
{
    simple_logger *l = (simple_logger *)p;
    tw_address peer;
    if (tw_transport_get_peer(p->transport, &peer) == 0)
        tw_address_format(&peer, l->client, sizeof l->client);
    printf("Got connection from %s\n", l->client);
}

/* Each chunk on a line of its own (one trailing newline is the chunk's). */
static void logger_data(tw_protocol *p, const void *data, size_t len)
{
    fwrite(data, 1, len, stdout);
    if (len == 0 || ((const char *)data)[len - 1] != '\n')
        putchar('\n');
}

static void logger_lost(tw_protocol *p, const tw_failure *reason)
{
    printf("%s disconnected\n", ((simple_logger *)p)->client);
}

static const tw_protocol_ops logger_ops = {
    .size = sizeof(simple_logger),
    .connection_made = logger_made,
    .data_received = logger_data,
    .connection_lost = logger_lost,
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 1234;
    tw_factory factory = TW_FACTORY_INIT(&logger_ops, NULL);
    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line at once */
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, &factory, &listening)) < 0) {
        fprintf(stderr, "simple_logger: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("simple logger listening on port %u\n", tw_address_port(tw_port_address(listening)));
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
