/* twirl qotd — the Quote of the Day (RFC 865): the quote, then close. */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

typedef struct qotd_factory {
    tw_factory base;
    const char *quote;
} qotd_factory;

static void qotd_made(tw_protocol *p)
{
    qotd_factory *f = (qotd_factory *)p->factory;
    tw_transport_write_str(p->transport, f->quote);
    tw_transport_write_str(p->transport, "\r\n");
    tw_transport_lose_connection(p->transport);
}

static const tw_protocol_ops qotd_ops = { .connection_made = qotd_made };
static qotd_factory factory = { TW_FACTORY_INIT(&qotd_ops, NULL),
                                "An apple a day keeps the doctor away." };

static int qotd_option(twirl_ctx *ctx, const char *name, const char *value, char *err,
                       size_t errlen)
{
    factory.quote = value; /* --quote */
    return 0;
}

static int qotd_start(twirl_ctx *ctx, tw_factory **out, char *err, size_t errlen)
{
    *out = &factory.base;
    return 0;
}

static const twirl_option qotd_options[] = {
    { "quote", "TEXT", "the quote to serve" },
    { NULL, NULL, NULL },
};

static const twirl_cmd qotd_cmd = {
    .name = "qotd",
    .summary = "serve a quote of the day and close (RFC 865)",
    .default_listen = "tcp:8017",
    .options = qotd_options,
    .option = qotd_option,
    .start = qotd_start,
};
TWIRL_COMMAND(qotd_cmd);
