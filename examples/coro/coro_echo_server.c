/* coro_echo_server — the echo server again, written as a coroutine per
 * connection (twirl/coro_net.h) instead of a protocol: read what came,
 * write it back, until the peer closes. Usage: coro_echo_server [PORT
 * [INTERFACE]] (default 8000 on 127.0.0.1; PORT 0 picks a free port,
 * printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>

#include "twirl/coro_net.h"
#include "twirl/endpoint.h"

static tw_result echo(tw_coro_stream *s, void *arg)
{
    tw_coro_bytes chunk;
    while (tw_coro_read_some(s, 0, &chunk, NULL) == 0)
        if (tw_coro_write(s, chunk.data, chunk.len, NULL) < 0) /* waits for slow readers */
            break;
    return TW_RESULT_NONE; /* the stream is closed once everything is sent */
}

int main(int argc, char **argv)
{
    char where[300], err[TW_ENDPOINT_ERR_MAX];
    snprintf(where, sizeof where, "tcp:%d:interface=%s", argc > 1 ? atoi(argv[1]) : 8000,
             argc > 2 ? argv[2] : "127.0.0.1");
    tw_reactor *r;
    tw_port *listening;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0) {
        fprintf(stderr, "coro_echo_server: %s\n", tw_strerror(rc));
        return 1;
    }
    if ((rc = tw_coro_serve(r, where, echo, NULL, &listening, err, sizeof err)) < 0) {
        fprintf(stderr, "coro_echo_server: %s\n", err);
        tw_reactor_free(r);
        return 1;
    }
    printf("coro echo server listening on port %u\n", tw_address_port(tw_port_address(listening)));
    fflush(stdout);
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r); /* connections still open are closed, their coroutines ended */
    return rc < 0 ? 1 : 0;
}
