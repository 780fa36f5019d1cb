/* echo_server — the seeds' first server: every byte received is written
 * back. Usage: echo_server [PORT [INTERFACE]]  (default 8000 on 127.0.0.1;
 * PORT 0 picks a free port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>

#include "twirl/tcp.h"

static void echo_data(tw_protocol *p, const void *data, size_t len)
{
    tw_transport_write(p->transport, data, len);
}

static const tw_protocol_ops echo_ops = {
    .data_received = echo_data,
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8000;
    const char *iface = argc > 2 ? argv[2] : "127.0.0.1";
    tw_reactor *r;
    tw_factory factory = TW_FACTORY_INIT(&echo_ops, NULL);
    tw_port *listening;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, iface, (uint16_t)port, NULL, &factory, &listening)) < 0) {
        fprintf(stderr, "echo_server: %s\n", tw_strerror(rc));
        return 1;
    }
    printf("echo server listening on port %u\n", tw_address_port(tw_port_address(listening)));
    fflush(stdout);
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
