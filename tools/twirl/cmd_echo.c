/* twirl echo / twirl discard — Twisted's wire protocols Echo and Discard. */
#include "cmd.h"

/* A peer that sends faster than it reads must not make us buffer without
 * bound: the transport is its own producer, so reading pauses while the
 * echoes wait above the high-water mark. */
static void echo_made(tw_protocol *p)
{
    tw_transport_register_producer(p->transport, tw_transport_as_producer(p->transport), true);
}

static void echo_data(tw_protocol *p, const void *data, size_t len)
{
    tw_transport_write(p->transport, data, len);
}

static void discard_data(tw_protocol *p, const void *data, size_t len)
{
}

static const tw_protocol_ops echo_ops = { .connection_made = echo_made,
                                          .data_received = echo_data };
static const tw_protocol_ops discard_ops = { .data_received = discard_data };
static tw_factory echo_factory = TW_FACTORY_INIT(&echo_ops, NULL);
static tw_factory discard_factory = TW_FACTORY_INIT(&discard_ops, NULL);

static int echo_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    *out = &echo_factory;
    return 0;
}

static int discard_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    *out = &discard_factory;
    return 0;
}

static const twirl_cmd echo_cmd = {
    .name = "echo",
    .summary = "echo every byte back (RFC 862)",
    .default_listen = "tcp:8007",
    .start = echo_start,
};
TWIRL_COMMAND(echo_cmd);

static const twirl_cmd discard_cmd = {
    .name = "discard",
    .summary = "read and throw away everything (RFC 863)",
    .default_listen = "tcp:8009",
    .start = discard_start,
};
TWIRL_COMMAND(discard_cmd);
