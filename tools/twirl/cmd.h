/* cmd.h — how a `twirl` subcommand plugs in.
 *
 * A subcommand is one file that defines a twirl_cmd and registers it with
 * TWIRL_COMMAND(name_of_the_variable). The framework parses the common
 * options (--listen, --reactor, --log-level, --log-format, --workers...),
 * hands the rest to the command's option hook, asks it for a factory,
 * listens on every --listen endpoint with it, runs the reactor, and shuts
 * down gracefully on SIGINT/SIGTERM: stop listening, close connections once
 * their output is flushed, wait for them (up to --shutdown-timeout), exit 0.
 *
 *     static int echo_start(twirl_ctx *ctx, tw_factory **out) { ... }
 *     static const twirl_cmd echo_cmd = {
 *         .name = "echo", .summary = "echo every byte back",
 *         .default_listen = "tcp:8000", .start = echo_start,
 *     };
 *     TWIRL_COMMAND(echo_cmd);
 */
#ifndef TWIRL_CMD_H
#define TWIRL_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "twirl/endpoint.h"
#include "twirl/reactor.h"

typedef struct twirl_ctx twirl_ctx;

typedef struct twirl_option {
    const char *name; /* without the leading "--" */
    const char *arg;  /* NULL for a flag, else the value's name for --help */
    const char *help;
} twirl_option;

typedef struct twirl_cmd {
    const char *name;
    const char *summary;         /* one line for `twirl --help` */
    const char *description;     /* a paragraph for `twirl NAME --help`; optional */
    const char *default_listen;  /* used when no --listen is given; NULL: required */
    const twirl_option *options; /* the command's own, ended by {NULL}; optional */
    /* One of the command's options: value is NULL for flags. Returns 0, or
     * -1 after writing a message to err (a usage error: exit 2). */
    int (*option)(twirl_ctx *ctx, const char *name, const char *value, char *err, size_t errlen);
    /* After all options: builds the factory that --listen ports serve.
     * Returns 0, or -1 with a message in err (exit 2 for bad usage). */
    int (*start)(twirl_ctx *ctx, tw_factory **factory, char *err, size_t errlen);
    /* After the reactor stopped: free what start made. Optional. */
    void (*stop)(twirl_ctx *ctx);
} twirl_cmd;

struct twirl_ctx {
    tw_reactor *reactor;
    const twirl_cmd *cmd;
    void *state; /* the command's own */
};

/* Registration: a pointer in a dedicated section, collected at link time,
 * so adding a subcommand touches no other file. */
#define TWIRL_COMMAND(var)                            \
    static const twirl_cmd *const twirl_cmd_ptr_##var \
        __attribute__((used, section("twirl_cmds"), aligned(sizeof(void *)))) = &(var)

/* Parses a non-negative number option; -1 with a message on error. */
int twirl_parse_double(const char *name, const char *value, double *out, char *err, size_t errlen);
int twirl_parse_int(const char *name, const char *value, long min, long max, long *out, char *err,
                    size_t errlen);

#endif
