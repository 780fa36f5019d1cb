/* line_logger — Twisted's SimpleLogger written as a LineReceiver: prints who
 * connected, every complete line (CR LF removed) as it arrives, and who
 * left. It never writes to its clients. Bytes after the last CR LF when a
 * client leaves were never a line, and are not printed.
 *
 * Usage: line_logger [PORT]  (default 1234 on 127.0.0.1; PORT 0 picks a free
 * port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>

#include "twirl/basic.h"
#include "twirl/tcp.h"

typedef struct line_logger {
    tw_line_receiver lr;
    /* Twisted's transport.client, kept from connection_made. */
    char client[TW_ADDRESS_TEXT_MAX];
} line_logger;

static void logger_made(tw_protocol *p)
{
    line_logger *l = (line_logger *)p;
    tw_address peer;
    if (tw_transport_get_peer(p->transport, &peer) == 0)
        tw_address_format(&peer, l->client, sizeof l->client);
    printf("Got connection from %s\n", l->client);
}

static int logger_line(tw_protocol *p, const char *line, size_t len)
{
    fwrite(line, 1, len, stdout);
    putchar('\n');
    return 0;
}

static void logger_lost(tw_protocol *p, const tw_failure *reason)
{
    printf("%s disconnected\n", ((line_logger *)p)->client);
}

static const tw_line_receiver_ops logger_ops = {
    .base = TW_LINE_RECEIVER_BASE(line_logger),
    .connection_made = logger_made,
    .connection_lost = logger_lost,
    .line_received = logger_line,
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 1234;
    tw_factory factory = TW_FACTORY_INIT(TW_PROTOCOL_OF(&logger_ops), NULL);
    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line at once */
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, &factory, &listening)) < 0) {
        fprintf(stderr, "line_logger: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("line logger listening on port %u\n", tw_address_port(tw_port_address(listening)));
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
