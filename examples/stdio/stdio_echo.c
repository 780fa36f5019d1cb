/* stdio_echo — a line echo over standard input and output (Twisted's
 * StandardIO): every line read from stdin is written back to stdout; at the
 * end of input the output is flushed and the program exits. As with
 * Twisted's LineReceiver, an unfinished last line (no newline) is dropped.
 *
 * Usage: stdio_echo [PREFIX]   (PREFIX, if given, starts each echoed line)
 *
 * Works with stdin from a terminal, a pipe or a regular file:
 *     printf 'one\ntwo\n' | stdio_echo '> '
 *     stdio_echo < /etc/hostname */
#include <stdio.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/stdio.h"

typedef struct echo {
    tw_line_receiver lr;
} echo;

static const char *prefix = "";

static int echo_line(tw_protocol *p, const char *line, size_t len)
{
    struct iovec iov[3] = {
        { (void *)prefix, strlen(prefix) },
        { (void *)line, len },
        { "\n", 1 },
    };
    tw_transport_writev(p->transport, iov, 3);
    return 0;
}

/* Input ended or output failed: stop, the output already flushed. */
static void echo_lost(tw_protocol *p, const tw_failure *reason)
{
    tw_reactor_stop(p->transport->reactor);
}

static const tw_line_receiver_ops echo_ops = {
    .base = TW_LINE_RECEIVER_BASE(echo),
    .line_received = echo_line,
    .connection_lost = echo_lost,
    .delimiter = "\n",
    .max_line_bytes = 1 << 20,
};

int main(int argc, char **argv)
{
    if (argc > 1)
        prefix = argv[1];
    tw_reactor *r;
    int rc = tw_reactor_new(NULL, &r);
    if (rc < 0) {
        fprintf(stderr, "stdio_echo: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_protocol *p = tw_protocol_alloc(TW_PROTOCOL_OF(&echo_ops));
    if (!p || (rc = tw_stdio_open(r, p, NULL, NULL)) < 0) {
        fprintf(stderr, "stdio_echo: %s\n", tw_strerror(p ? rc : TW_ENOMEM));
        tw_reactor_free(r);
        return 1;
    }
    rc = tw_reactor_run(r);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
