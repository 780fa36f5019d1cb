/* qotd_server — Quote of the Day: each client gets one line, the quote, and
 * is disconnected. Twisted's guide to servers shows the two ways a factory
 * makes protocols, and so does this server:
 *
 *   --style attr   (default) the factory names the protocol to build
 *                  (Twisted: QOTDFactory.protocol = QOTD) and each protocol
 *                  reads the quote through its factory (self.factory.quote);
 *   --style build  the factory is a struct of its own whose build_protocol
 *                  hook makes each protocol and hands it the quote (Twisted:
 *                  overriding buildProtocol).
 *
 * Usage: qotd_server [--style attr|build] [PORT [QUOTE]]  (default 8007 on
 * 127.0.0.1; PORT 0 picks a free port, printed on stdout). SIGINT/SIGTERM
 * stop it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/tcp.h"

static void send_quote(tw_protocol *p, const char *quote)
{
    tw_transport_write_str(p->transport, quote);
    tw_transport_write_str(p->transport, "\r\n");
    tw_transport_lose_connection(p->transport); /* after the quote is sent */
}

/* ------------------------------------------- style 1: the protocol attribute */

static void qotd_made(tw_protocol *p)
{
    send_quote(p, p->factory->user_data);
}

static const tw_protocol_ops qotd_ops = {
    .connection_made = qotd_made,
};

/* ------------------------------------------- style 2: a build_protocol hook */

typedef struct quote_factory {
    tw_factory base;
    const char *quote;
} quote_factory;

typedef struct quoter {
    tw_protocol base;
    const char *quote;
} quoter;

static void quoter_made(tw_protocol *p)
{
    send_quote(p, ((quoter *)p)->quote);
}

static const tw_protocol_ops quoter_ops = {
    .size = sizeof(quoter),
    .connection_made = quoter_made,
};

static tw_protocol *quote_build(tw_factory *f, const tw_address *addr)
{
    quoter *q = (quoter *)tw_protocol_alloc(&quoter_ops);
    if (!q)
        return NULL; /* refuses the connection */
    q->quote = ((quote_factory *)f)->quote;
    return &q->base;
}

static const tw_factory_ops quote_factory_ops = {
    .build_protocol = quote_build,
};

int main(int argc, char **argv)
{
    const char *style = "attr";
    int i = 1;
    if (i + 1 < argc && strcmp(argv[i], "--style") == 0) {
        style = argv[i + 1];
        i += 2;
    }
    if (strcmp(style, "attr") != 0 && strcmp(style, "build") != 0) {
        fprintf(stderr, "usage: qotd_server [--style attr|build] [PORT [QUOTE]]\n");
        return 2;
    }
    int port = i < argc ? atoi(argv[i]) : 8007;
    const char *quote = i + 1 < argc ? argv[i + 1] : "An apple a day keeps the doctor away";

    tw_factory attr_factory = TW_FACTORY_INIT(&qotd_ops, (void *)quote);
    quote_factory build_factory = { .base = { .ops = &quote_factory_ops }, .quote = quote };
    tw_factory *factory = style[0] == 'a' ? &attr_factory : &build_factory.base;

    tw_reactor *r = NULL;
    tw_port *listening;
    int rc;
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, NULL, factory, &listening)) < 0) {
        fprintf(stderr, "qotd_server: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    printf("qotd server (%s style) listening on port %u\n", style,
           tw_address_port(tw_port_address(listening)));
    fflush(stdout);
    rc = tw_reactor_run(r);
    tw_port_stop_listening(listening);
    tw_reactor_free(r);
    return rc < 0 ? 1 : 0;
}
