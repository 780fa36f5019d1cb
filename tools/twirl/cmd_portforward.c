/* twirl portforward — Twisted's portforward: every connection accepted is
 * joined to a new connection to --dest, and bytes flow both ways. Each side
 * is registered as the other's producer, so a slow reader on one side
 * pauses reading on the other: memory stays bounded whatever the speeds. */
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "twirl/log.h"

typedef struct fwd fwd;
struct fwd {
    tw_protocol base;
    fwd *peer;
    tw_deferred *connecting; /* server side, until the client side is up */
    int lost;
};

static tw_client_endpoint *dest;

static void join(fwd *server, fwd *client)
{
    server->peer = client;
    client->peer = server;
    tw_transport_register_producer(server->base.transport,
                                   tw_transport_as_producer(client->base.transport), true);
    tw_transport_register_producer(client->base.transport,
                                   tw_transport_as_producer(server->base.transport), true);
    tw_transport_resume_producing(server->base.transport);
}

static tw_result on_connected(tw_result *in, void *arg)
{
    fwd *server = arg;
    fwd *client = in->value.ptr;
    server->connecting = NULL;
    join(server, client);
    return TW_RESULT_NONE;
}

static tw_result on_failed(tw_result *in, void *arg)
{
    fwd *server = arg;
    server->connecting = NULL;
    if (!server->lost) {
        tw_log(TW_LOG_WARN, "portforward", "cannot reach the destination: %s",
               tw_failure_message(in->failure));
        tw_transport_lose_connection(server->base.transport);
    }
    return TW_RESULT_NONE; /* handled */
}

static void fwd_data(tw_protocol *p, const void *data, size_t len)
{
    fwd *f = (fwd *)p;
    if (f->peer)
        tw_transport_write(f->peer->base.transport, data, len);
}

static void fwd_lost(tw_protocol *p, const tw_failure *reason)
{
    fwd *f = (fwd *)p;
    f->lost = 1;
    if (f->connecting) {
        tw_deferred *d = f->connecting;
        f->connecting = NULL;
        tw_deferred_cancel(d); /* fails at once: on_failed sees lost */
    }
    if (f->peer) {
        fwd *peer = f->peer;
        peer->peer = NULL;
        f->peer = NULL;
        tw_transport_unregister_producer(peer->base.transport);
        tw_transport_lose_connection(peer->base.transport);
    }
}

static const tw_protocol_ops client_ops = {
    .size = sizeof(fwd),
    .data_received = fwd_data,
    .connection_lost = fwd_lost,
};
static tw_factory client_factory = TW_FACTORY_INIT(&client_ops, NULL);

static void server_made(tw_protocol *p)
{
    fwd *server = (fwd *)p;
    /* Read nothing until there is somewhere to put it. */
    tw_transport_pause_producing(p->transport);
    tw_deferred *d = tw_endpoint_connect(dest, &client_factory);
    if (!d) {
        tw_transport_abort_connection(p->transport);
        return;
    }
    server->connecting = d;
    tw_deferred_add_callbacks(d, on_connected, on_failed, server);
    tw_deferred_unref(d);
}

static const tw_protocol_ops server_ops = {
    .size = sizeof(fwd),
    .connection_made = server_made,
    .data_received = fwd_data,
    .connection_lost = fwd_lost,
};
static tw_factory server_factory = TW_FACTORY_INIT(&server_ops, NULL);
static const char *dest_text;

static int pf_option(twirl_ctx *ctx, const char *name, const char *value, char *err, size_t errlen)
{
    dest_text = value; /* --dest */
    return 0;
}

static int pf_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    if (!dest_text) {
        snprintf(err, errlen, "portforward: --dest is required");
        return -1;
    }
    if (tw_client_endpoint_from_string(ctx->reactor, dest_text, &dest, err, errlen) < 0)
        return -1;
    *out = &server_factory;
    return 0;
}

static void pf_stop(twirl_ctx *ctx)
{
    tw_client_endpoint_free(dest);
    dest = NULL;
}

static const twirl_option pf_options[] = {
    { "dest", "ENDPOINT", "where to forward, e.g. tcp:host=127.0.0.1:port=80" },
    { NULL, NULL, NULL },
};

static const twirl_cmd portforward_cmd = {
    .name = "portforward",
    .summary = "forward every connection to another address, both ways",
    .description = "Accepts connections on --listen and joins each to a new connection to\n"
                   "--dest. Each direction pauses when the other side reads slowly.",
    .options = pf_options,
    .option = pf_option,
    .start = pf_start,
    .stop = pf_stop,
};
TWIRL_COMMAND(portforward_cmd);
