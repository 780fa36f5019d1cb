/* main.c — the `twirl` command: Twisted's `twist`, for twirl's servers.
 *
 *     twirl [--version] [--help] COMMAND [OPTIONS]
 *
 * Exit status: 0 after a graceful shutdown, 1 when a server cannot start
 * (e.g. its address is busy), 2 for a usage error or a bad endpoint. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "twirl/log.h"
#include "twirl/tcp.h"

extern const twirl_cmd *const __start_twirl_cmds[];
extern const twirl_cmd *const __stop_twirl_cmds[];

enum { MAX_LISTEN = 32, ERR = 512, MAX_WORKERS = 64 };

typedef struct run_state {
    twirl_ctx ctx;
    const char *listen[MAX_LISTEN];
    size_t nlisten;
    tw_port *ports[MAX_LISTEN];
    double shutdown_timeout;
    double shutdown_deadline;
    tw_timer poll;
    int json;
} run_state;

/* ------------------------------------------------------------ helpers */

int twirl_parse_double(const char *name, const char *value, double *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || *value == '\0' || *end != '\0' || errno || !(v >= 0)) {
        snprintf(err, errlen, "--%s: expected a non-negative number, got '%s'", name,
                 value ? value : "");
        return -1;
    }
    *out = v;
    return 0;
}

int twirl_parse_int(const char *name, const char *value, long min, long max, long *out, char *err,
                    size_t errlen)
{
    char *end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *value == '\0' || *end != '\0' || errno || v < min || v > max) {
        snprintf(err, errlen, "--%s: expected a whole number from %ld to %ld, got '%s'", name, min,
                 max, value ? value : "");
        return -1;
    }
    *out = v;
    return 0;
}

static size_t ncommands(void)
{
    return (size_t)(__stop_twirl_cmds - __start_twirl_cmds);
}

static const twirl_cmd *find_command(const char *name)
{
    for (size_t i = 0; i < ncommands(); i++)
        if (strcmp(__start_twirl_cmds[i]->name, name) == 0)
            return __start_twirl_cmds[i];
    return NULL;
}

static int cmp_cmd(const void *a, const void *b)
{
    return strcmp((*(const twirl_cmd *const *)a)->name, (*(const twirl_cmd *const *)b)->name);
}

static void usage_top(FILE *f)
{
    fprintf(f, "usage: twirl [--version] [--help] COMMAND [OPTIONS]\n\n"
               "Runs one of twirl's ready-made servers. Commands:\n");
    const twirl_cmd *sorted[64];
    size_t n = ncommands() < 64 ? ncommands() : 64;
    memcpy(sorted, __start_twirl_cmds, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_cmd);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-12s %s\n", sorted[i]->name, sorted[i]->summary);
    fprintf(f, "\nRun 'twirl COMMAND --help' for a command's options.\n");
}

static const twirl_option common_options[] = {
    { "listen", "ENDPOINT", "where to listen (repeatable), e.g. tcp:8080:interface=127.0.0.1" },
    { "reactor", "NAME", "reactor backend: epoll, poll or uring" },
    { "log-level", "LEVEL", "debug, info, warn, error or off (default info)" },
    { "log-format", "FORMAT", "text or json (default text)" },
    { "shutdown-timeout", "SECONDS", "how long to wait for connections at shutdown (default 10)" },
    { "workers", "N", "serve from N processes sharing each tcp port (SO_REUSEPORT); default 1" },
    { "help", NULL, "show this help" },
    { NULL, NULL, NULL },
};

static void print_options(FILE *f, const twirl_option *opts)
{
    for (const twirl_option *o = opts; o && o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s\n", left, o->help);
    }
}

static void usage_cmd(FILE *f, const twirl_cmd *cmd)
{
    fprintf(f, "usage: twirl %s [OPTIONS]\n\n%s\n", cmd->name,
            cmd->description ? cmd->description : cmd->summary);
    if (cmd->options && cmd->options->name) {
        fprintf(f, "\nOptions of '%s':\n", cmd->name);
        print_options(f, cmd->options);
    }
    fprintf(f, "\nCommon options:\n");
    print_options(f, common_options);
    if (cmd->default_listen)
        fprintf(f, "\nWithout --listen it listens on %s.\n", cmd->default_listen);
}

static const twirl_option *find_option(const twirl_option *opts, const char *name, size_t len)
{
    for (const twirl_option *o = opts; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

/* ------------------------------------------------------------ logging */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void log_json(tw_log_level level, const char *domain, const char *message, void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr, "{\"time\":%lld.%03ld,\"level\":\"%s\",\"domain\":", (long long)ts.tv_sec,
            ts.tv_nsec / 1000000, tw_log_level_name(level));
    json_string(stderr, domain);
    fprintf(stderr, ",\"message\":");
    json_string(stderr, message);
    fprintf(stderr, "}\n");
}

static void log_text(tw_log_level level, const char *domain, const char *message, void *arg)
{
    fprintf(stderr, "twirl %s [%s] %s\n", tw_log_level_name(level), domain, message);
}

/* ------------------------------------------------------------ shutdown */

static void drain_check(void *arg)
{
    run_state *s = arg;
    tw_reactor *r = s->ctx.reactor;
    tw_reactor_update_time(r);
    if (tw_reactor_connection_count(r) == 0 || tw_reactor_now(r) >= s->shutdown_deadline) {
        if (tw_reactor_connection_count(r) > 0)
            tw_log(TW_LOG_WARN, "twirl", "%zu connections still open after %.1f s: closing them",
                   tw_reactor_connection_count(r), s->shutdown_timeout);
        s->poll = TW_TIMER_NONE;
        tw_reactor_release_phase(r);
        return;
    }
    s->poll = tw_call_later(r, 0.05, drain_check, s);
}

static void before_shutdown(tw_reactor *r, void *arg)
{
    run_state *s = arg;
    tw_log(TW_LOG_INFO, "twirl", "shutting down: no new connections");
    for (size_t i = 0; i < s->nlisten; i++) {
        tw_port_stop_listening(s->ports[i]);
        s->ports[i] = NULL;
    }
    tw_reactor_disconnect_all(r);
    tw_reactor_hold_phase(r);
    s->shutdown_deadline = tw_reactor_now(r) + s->shutdown_timeout;
    drain_check(s);
}

/* ------------------------------------------------------------ workers */

/* A tcp endpoint shared by several workers: each binds it with
 * SO_REUSEPORT and the kernel spreads connections among them. The port must
 * be fixed (port 0 would give each worker its own). Returns a malloc'd
 * description, or NULL with a message. */
static char *share_port(const char *desc, char *err, size_t errlen)
{
    tw_endpoint_args *a;
    if (tw_endpoint_parse(desc, &a, err, errlen) < 0)
        return NULL;
    const char *type = tw_endpoint_args_type(a);
    int tcp = strcasecmp(type, "tcp") == 0 || strcasecmp(type, "tcp6") == 0;
    const char *port =
        tw_endpoint_args_npositional(a) > 0 ? tw_endpoint_args_positional(a, 0) : NULL;
    for (size_t i = 0; !port && i < tw_endpoint_args_nkeywords(a); i++) {
        const char *k, *v;
        tw_endpoint_args_keyword(a, i, &k, &v);
        if (strcmp(k, "port") == 0)
            port = v;
    }
    int fixed = port && strspn(port, "0") != strlen(port);
    tw_endpoint_args_free(a);
    if (!tcp) {
        snprintf(err, errlen, "--workers: '%s': only tcp endpoints can be shared", desc);
        return NULL;
    }
    if (!fixed) {
        snprintf(err, errlen, "--workers: '%s': give a fixed port (each worker binds it)", desc);
        return NULL;
    }
    char *out = malloc(strlen(desc) + sizeof ":reusePort=1");
    if (out)
        sprintf(out, "%s:reusePort=1", desc);
    else
        snprintf(err, errlen, "out of memory");
    return out;
}

static volatile sig_atomic_t got_signal;

static void parent_signal(int sig)
{
    got_signal = sig;
}

/* Forks n workers. In a worker returns -1 (go on serving); in the parent
 * waits for them all, passes SIGINT/SIGTERM on to each, and returns the exit
 * status: 0 when every worker stopped cleanly, 1 otherwise (a worker that
 * fails at once — say its port is busy — brings the others down). */
static int run_workers(int n)
{
    pid_t pids[MAX_WORKERS];
    struct sigaction sa = { 0 };
    sa.sa_handler = parent_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            return -1;
        }
        if (pids[i] < 0) {
            fprintf(stderr, "twirl: cannot start worker %d: %s\n", i + 1, strerror(errno));
            for (int j = 0; j < i; j++)
                kill(pids[j], SIGTERM);
            n = i;
            break;
        }
    }
    tw_log(TW_LOG_INFO, "twirl", "%d workers started", n);
    int live = n, status = 0, forwarded = 0;
    while (live > 0) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno != EINTR)
                break;
            if (got_signal && !forwarded) {
                for (int i = 0; i < n; i++)
                    kill(pids[i], got_signal);
                forwarded = 1;
            }
            continue;
        }
        live--;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            status = 1;
            if (!forwarded) {
                for (int i = 0; i < n; i++)
                    if (pids[i] != pid)
                        kill(pids[i], SIGTERM);
                forwarded = 1;
            }
        }
    }
    return status;
}

/* ------------------------------------------------------------ main */

static int usage_error(const char *msg)
{
    fprintf(stderr, "twirl: %s\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_top(stderr), 2;
    if (strcmp(argv[1], "--version") == 0) {
        printf("twirl %s\n", TWIRL_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_top(stdout);
        return 0;
    }
    char err[ERR];
    const twirl_cmd *cmd = find_command(argv[1]);
    if (!cmd) {
        snprintf(err, sizeof err, "unknown command '%s' (try 'twirl --help')", argv[1]);
        return usage_error(err);
    }

    run_state s = { .shutdown_timeout = 10.0 };
    int workers = 1;
    s.ctx.cmd = cmd;
    tw_reactor_options ropts = { .signals = TW_SIGNALS_ON };
    tw_log_level level = TW_LOG_INFO;
    int json = 0;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, sizeof err, "unexpected argument '%s'", a);
            return usage_error(err);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const twirl_option *o = find_option(common_options, name, nlen);
        int common = o != NULL;
        if (!o)
            o = find_option(cmd->options, name, nlen);
        if (!o) {
            snprintf(err, sizeof err, "%s: unknown option '%.*s'", cmd->name, (int)nlen + 2, a);
            return usage_error(err);
        }
        const char *value = NULL;
        if (o->arg) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else {
                snprintf(err, sizeof err, "--%s needs a value (%s)", o->name, o->arg);
                return usage_error(err);
            }
        } else if (eq) {
            snprintf(err, sizeof err, "--%s takes no value", o->name);
            return usage_error(err);
        }
        if (!common) {
            if (cmd->option(&s.ctx, o->name, value, err, sizeof err) < 0)
                return usage_error(err);
            continue;
        }
        if (strcmp(o->name, "help") == 0) {
            usage_cmd(stdout, cmd);
            return 0;
        } else if (strcmp(o->name, "listen") == 0) {
            if (s.nlisten == MAX_LISTEN)
                return usage_error("too many --listen options");
            s.listen[s.nlisten++] = value;
        } else if (strcmp(o->name, "reactor") == 0) {
            if (strcmp(value, "epoll") != 0 && strcmp(value, "poll") != 0 &&
                strcmp(value, "uring") != 0) {
                snprintf(err, sizeof err, "--reactor: unknown backend '%s' (epoll, poll, uring)",
                         value);
                return usage_error(err);
            }
            ropts.backend = value;
        } else if (strcmp(o->name, "log-level") == 0) {
            if (tw_log_level_parse(value, &level) < 0) {
                snprintf(err, sizeof err, "--log-level: unknown level '%s'", value);
                return usage_error(err);
            }
        } else if (strcmp(o->name, "log-format") == 0) {
            if (strcmp(value, "json") == 0)
                json = 1;
            else if (strcmp(value, "text") != 0) {
                snprintf(err, sizeof err, "--log-format: expected text or json, got '%s'", value);
                return usage_error(err);
            }
        } else if (strcmp(o->name, "shutdown-timeout") == 0) {
            if (twirl_parse_double(o->name, value, &s.shutdown_timeout, err, sizeof err) < 0)
                return usage_error(err);
        } else if (strcmp(o->name, "workers") == 0) {
            long n;
            if (twirl_parse_int(o->name, value, 1, MAX_WORKERS, &n, err, sizeof err) < 0)
                return usage_error(err);
            workers = (int)n;
        }
    }
    if (s.nlisten == 0) {
        if (!cmd->default_listen) {
            snprintf(err, sizeof err, "%s: --listen is required", cmd->name);
            return usage_error(err);
        }
        s.listen[s.nlisten++] = cmd->default_listen;
    }
    tw_log_set_level(level);
    tw_log_set_handler(json ? log_json : log_text, NULL);

    char *shared[MAX_LISTEN] = { 0 };
    if (workers > 1) {
        for (size_t i = 0; i < s.nlisten; i++) {
            if ((shared[i] = share_port(s.listen[i], err, sizeof err)) == NULL)
                return usage_error(err);
            s.listen[i] = shared[i];
        }
        int status = run_workers(workers);
        if (status >= 0) {
            for (size_t i = 0; i < s.nlisten; i++)
                free(shared[i]);
            return status;
        }
        /* in a worker: go on and serve (the descriptions stay in use) */
    }

    int rc = tw_reactor_new(&ropts, &s.ctx.reactor);
    if (rc < 0) {
        fprintf(stderr, "twirl: cannot start a reactor: %s\n", tw_strerror(rc));
        return 1;
    }
    tw_reactor *r = s.ctx.reactor;

    /* Parse every endpoint before opening any, so a typo in the third
     * --listen does not leave the first two half-started. */
    tw_server_endpoint *eps[MAX_LISTEN] = { 0 };
    int status = 0;
    for (size_t i = 0; i < s.nlisten && status == 0; i++)
        if (tw_server_endpoint_from_string(r, s.listen[i], &eps[i], err, sizeof err) < 0)
            status = usage_error(err);
    tw_factory *factory = NULL;
    if (status == 0 && cmd->start(&s.ctx, &factory, err, sizeof err) < 0)
        status = usage_error(err);
    for (size_t i = 0; i < s.nlisten && status == 0; i++) {
        if ((rc = tw_endpoint_listen_err(eps[i], factory, &s.ports[i], err, sizeof err)) < 0) {
            fprintf(stderr, "twirl: %s\n", err);
            status = 1;
            break;
        }
        char where[TW_ADDRESS_TEXT_MAX];
        tw_address_format(tw_port_address(s.ports[i]), where, sizeof where);
        tw_log(TW_LOG_INFO, "twirl", "%s listening on %s", cmd->name, where);
    }
    for (size_t i = 0; i < s.nlisten; i++)
        tw_server_endpoint_free(eps[i]);

    if (status == 0) {
        tw_reactor_add_trigger(r, TW_PHASE_BEFORE, TW_EVENT_SHUTDOWN, before_shutdown, &s, NULL);
        if ((rc = tw_reactor_run(r)) < 0) {
            fprintf(stderr, "twirl: reactor failed: %s\n", tw_strerror(rc));
            status = 1;
        }
        tw_log(TW_LOG_INFO, "twirl", "stopped");
    }
    for (size_t i = 0; i < s.nlisten; i++)
        tw_port_stop_listening(s.ports[i]);
    tw_reactor_free(r);
    if (cmd->stop && factory)
        cmd->stop(&s.ctx);
    for (size_t i = 0; i < s.nlisten; i++)
        free(shared[i]);
    return status;
}
