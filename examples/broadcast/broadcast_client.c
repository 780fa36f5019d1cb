/* broadcast_client — the client for broadcast_server: says hello
 * every few seconds and prints what the server relays. Each factory and
 * protocol hook prints its name first, to show the order they run in:
 *
 *   started_connecting, build_protocol       (factory)
 *   connection_made, data_received...        (protocol)
 *   connection_lost                          (protocol)
 *   client_connection_lost                   (factory)
 *
 * or started_connecting then client_connection_failed when the server
 * cannot be reached: factory hooks open the connection, protocol hooks run
 * while it lives, and a factory hook closes it.
 *
 * Usage: broadcast_client [--interval SECONDS] [--count N] [NAME [HOST [PORT]]]
 * (defaults: 5 s, no limit, "anonymous", 127.0.0.1, 8006). After N hellos
 * the client disconnects. The reactor stops when the connection is lost or
 * fails; the exit status is 1 if it failed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "twirl/tcp.h"

typedef struct hello_factory {
    tw_factory base;
    const char *name;
    double interval;
    int count; /* hellos before leaving; 0: no limit */
    int status;
} hello_factory;

typedef struct hello_client {
    tw_protocol base;
    tw_timer timer;
    int sent;
} hello_client;

/* ------------------------------------------------------------ protocol */

static void say_hello(void *arg)
{
    hello_client *c = arg;
    hello_factory *f = (hello_factory *)c->base.factory;
    char now[32], line[128];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", localtime(&t));
    snprintf(line, sizeof line, "hello, I'm %.64s %s\n", f->name, now);
    tw_transport_write_str(c->base.transport, line);
    if (f->count > 0 && ++c->sent >= f->count)
        tw_transport_lose_connection(c->base.transport);
    else
        tw_timer_reset(c->timer, f->interval); /* again, one interval from now */
}

static void client_made(tw_protocol *p)
{
    hello_client *c = (hello_client *)p;
    printf("connection_made: connected to the server\n");
    c->timer =
        tw_call_later(p->transport->reactor, ((hello_factory *)p->factory)->interval, say_hello, c);
}

static void client_data(tw_protocol *p, const void *data, size_t len)
{
    const char *text = data;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    printf("data_received: %.*s\n", (int)len, text);
}

static void client_lost(tw_protocol *p, const tw_failure *reason)
{
    tw_timer_cancel(((hello_client *)p)->timer); /* it points at us */
    printf("connection_lost: disconnected from the server\n");
}

static const tw_protocol_ops hello_client_ops = {
    .size = sizeof(hello_client),
    .connection_made = client_made,
    .data_received = client_data,
    .connection_lost = client_lost,
};

/* ------------------------------------------------------------ factory */

static void started_connecting(tw_factory *f, tw_connector *c)
{
    char where[TW_ADDRESS_TEXT_MAX];
    tw_address_format(tw_connector_destination(c), where, sizeof where);
    printf("started_connecting: to %s\n", where);
}

static tw_protocol *build_protocol(tw_factory *f, const tw_address *addr)
{
    printf("build_protocol: %s says hello\n", ((hello_factory *)f)->name);
    return tw_protocol_alloc(&hello_client_ops);
}

static void client_connection_lost(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    printf("client_connection_lost: %s\n", tw_failure_message(reason));
    ((hello_factory *)f)->status = 0;
    tw_reactor_stop(tw_connector_reactor(c));
}

static void client_connection_failed(tw_factory *f, tw_connector *c, const tw_failure *reason)
{
    printf("client_connection_failed: %s\n", tw_failure_message(reason));
    tw_reactor_stop(tw_connector_reactor(c));
}

static const tw_factory_ops hello_factory_ops = {
    .build_protocol = build_protocol,
    .started_connecting = started_connecting,
    .client_connection_lost = client_connection_lost,
    .client_connection_failed = client_connection_failed,
};

static int usage(void)
{
    fprintf(stderr, "usage: broadcast_client [--interval SECONDS] [--count N] "
                    "[NAME [HOST [PORT]]]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        { "interval", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    hello_factory factory = {
        .base = { .ops = &hello_factory_ops },
        .name = "anonymous",
        .interval = 5.0,
        .status = 1,
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "i:c:", options, NULL)) != -1) {
        if (opt == 'i')
            factory.interval = atof(optarg);
        else if (opt == 'c')
            factory.count = atoi(optarg);
        else
            return usage();
    }
    if (!(factory.interval > 0) || factory.count < 0)
        return usage();
    if (optind < argc)
        factory.name = argv[optind++];
    const char *host = optind < argc ? argv[optind++] : "127.0.0.1";
    int port = optind < argc ? atoi(argv[optind]) : 8006;

    tw_reactor *r = NULL;
    int rc;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe sees each line at once */
    if ((rc = tw_reactor_new(NULL, &r)) < 0 ||
        (rc = tw_connect_tcp(r, host, (uint16_t)port, NULL, &factory.base, NULL)) < 0) {
        fprintf(stderr, "broadcast_client: %s\n", tw_strerror(rc));
        tw_reactor_free(r);
        return 1;
    }
    rc = tw_reactor_run(r);
    tw_reactor_free(r);
    return rc < 0 ? 1 : factory.status;
}
