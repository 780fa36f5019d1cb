/* answer_bot — Twisted's "Answer" LineReceiver: to the line "How are you?"
 * it answers "Fine", to anything else "I don't know what you mean". Lines
 * end with CR LF, both ways.
 *
 * Usage: answer_bot [PORT]  (default 8124 on 127.0.0.1; PORT 0 picks a free
 * port, printed on stdout). SIGINT/SIGTERM stop it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/basic.h"
#include "twirl/tcp.h"

typedef struct answer {
    tw_line_receiver lr;
} answer;

/* Twisted's `answers` dict; the NULL question is the default. */
static const struct {
    const char *question, *reply;
} answers[] = {
    { "How are you?", "Fine" },
    { NULL, "I don't know what you mean" },
};

static int answer_line(tw_protocol *p, const char *line, size_t len)
{
    size_t i = 0;
    while (answers[i].question &&
           !(strlen(answers[i].question) == len && memcmp(answers[i].question, line, len) == 0))
        i++;
    tw_line_receiver_send_line(p, answers[i].reply, strlen(answers[i].reply));
    return 0;
}

static const tw_line_receiver_ops answer_ops = {
    .base = TW_LINE_RECEIVER_BASE(answer),
    .line_received = answer_line,
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8124;
    tw_factory factory = TW_FACTORY_INIT(TW_PROTOCOL_OF(&answer_ops), NULL);
    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, &factory, &listening)) < 0) {
        fprintf(stderr, "answer_bot: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("answer bot listening on port %u\n", tw_address_port(tw_port_address(listening)));
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
