/* ctest: label=interop timeout=300 */
/* twirl's framing receivers against Twisted's (python3-twisted, run with
 * /usr/bin/python3, through tests/interop/twisted_framing.py), over
 * loopback, for LineReceiver, NetstringReceiver and Int32StringReceiver:
 *
 *   - Twisted clients against twirl echo servers, and twirl clients against
 *     Twisted echo servers; each client writes its framed messages in odd
 *     pieces (1, 2, 3, 5, 7, 11, 13, 17, 64, 250 bytes) 1 ms apart, so units
 *     straddle reads on the other side;
 *   - over-long units both ways, sent and echoed: whichever side receives a
 *     unit over its limit closes the connection, as Twisted does, and the
 *     units before it were delivered.
 *
 * Units are compared by length and FNV-1a hash ("UNIT <len> <hash>" lines
 * from the Python peer). Skipped when Twisted is missing. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"
#include "twirl/basic.h"
#include "twirl/tcp.h"
#include "twirl/testing.h"

#define PYTHON "/usr/bin/python3"
#define WAIT   30.0 /* Python starts slowly; valgrind is slower */

static bool have_twisted;

typedef enum kind { K_LINE, K_NETSTRING, K_INT32 } kind;
static const char *const kind_names[] = { "line", "netstring", "int32" };

/* ------------------------------------------------------------ messages */

/* A message argument as the Python peer reads it: text, "#N" (letters) or
 * "~N" (every byte value). */
static char *message(const char *arg, size_t *len)
{
    char *end;
    if ((arg[0] == '#' || arg[0] == '~') && arg[1]) {
        unsigned long n = strtoul(arg + 1, &end, 10);
        if (*end == 0) {
            char *m = malloc(n + 1);
            for (unsigned long i = 0; i < n; i++)
                m[i] = arg[0] == '#' ? (char)('a' + i % 26) : (char)(i % 256);
            *len = n;
            return m;
        }
    }
    *len = strlen(arg);
    return strdup(arg);
}

static uint32_t fnv(const char *data, size_t len)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)data[i]) * 0x01000193u;
    return h;
}

static void unit_line(char *out, size_t size, const char *arg)
{
    size_t len;
    char *m = message(arg, &len);
    snprintf(out, size, "UNIT %zu %08x", len, fnv(m, len));
    free(m);
}

/* The byte string a client sends: each message framed for kind. */
static char *frame(kind k, const char *const *msgs, size_t n, size_t *out_len)
{
    size_t cap = 64, len = 0;
    char *wire = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t mlen;
        char *m = message(msgs[i], &mlen);
        char head[32];
        size_t hlen = 0;
        if (k == K_NETSTRING) {
            hlen = (size_t)snprintf(head, sizeof head, "%zu:", mlen);
        } else if (k == K_INT32) {
            head[0] = (char)(mlen >> 24), head[1] = (char)(mlen >> 16);
            head[2] = (char)(mlen >> 8), head[3] = (char)mlen;
            hlen = 4;
        }
        const char *tail = k == K_LINE ? "\r\n" : k == K_NETSTRING ? "," : "";
        size_t need = len + hlen + mlen + strlen(tail);
        while (cap < need)
            cap *= 2;
        wire = realloc(wire, cap);
        memcpy(wire + len, head, hlen);
        memcpy(wire + len + hlen, m, mlen);
        memcpy(wire + len + hlen + mlen, tail, strlen(tail));
        len = need;
        free(m);
    }
    *out_len = len;
    return wire;
}

/* ------------------------------------------------------------ the twirl side */

enum { MAX_UNITS = 64 };

/* What happened on twirl's side of one exchange. */
static struct {
    kind k;
    size_t max;         /* receive limit; 0: the default */
    bool client;        /* the twirl side is the client */
    size_t close_after; /* client: close once this many units came back */
    char *wire;         /* client: what to send */
    size_t wire_len;
    size_t units;
    size_t lens[MAX_UNITS];
    uint32_t sums[MAX_UNITS];
    bool made, lost, broken;
    int lost_code;
} S;

typedef struct peer {
    union {
        tw_line_receiver line;
        tw_netstring_receiver ns;
        tw_int_receiver i32;
    } u;
    size_t at, piece;
    tw_timer timer;
} peer;

static const size_t pieces[] = { 1, 2, 3, 5, 7, 11, 13, 17, 64, 250 };

static void write_some(void *arg)
{
    peer *pe = arg;
    tw_protocol *p = &pe->u.line.r.base;
    pe->timer = TW_TIMER_NONE;
    if (pe->at >= S.wire_len || !p->transport || !tw_transport_connected(p->transport))
        return;
    size_t n = pieces[pe->piece++ % (sizeof pieces / sizeof *pieces)];
    if (n > S.wire_len - pe->at)
        n = S.wire_len - pe->at;
    tw_transport_write(p->transport, S.wire + pe->at, n);
    pe->at += n;
    pe->timer = tw_call_later(p->transport->reactor, 0.001, write_some, pe);
}

static void peer_made(tw_protocol *p)
{
    S.made = true;
    if (S.max) {
        if (S.k == K_LINE)
            tw_line_receiver_set_max_line_bytes(p, S.max);
        else if (S.k == K_NETSTRING)
            tw_netstring_receiver_set_max_length(p, S.max);
        else
            tw_int_receiver_set_max_length(p, (uint32_t)S.max);
    }
    if (S.client)
        write_some(p);
}

static void unit(tw_protocol *p, const char *data, size_t len)
{
    if (S.units < MAX_UNITS) {
        S.lens[S.units] = len;
        S.sums[S.units] = fnv(data, len);
    }
    S.units++;
    if (S.client) {
        if (S.units == S.close_after)
            tw_transport_lose_connection(p->transport); /* no half-close first */
    } else if (S.k == K_LINE) {
        tw_line_receiver_send_line(p, data, len);
    } else if (S.k == K_NETSTRING) {
        tw_netstring_receiver_send_string(p, data, len);
    } else {
        tw_int_receiver_send_string(p, data, len);
    }
}

static int line_unit(tw_protocol *p, const char *line, size_t len)
{
    unit(p, line, len);
    return 0;
}

static void peer_lost(tw_protocol *p, const tw_failure *reason)
{
    peer *pe = (peer *)p;
    tw_timer_cancel(pe->timer);
    S.lost = true;
    S.lost_code = tw_failure_code(reason);
    if (S.k == K_NETSTRING)
        S.broken = tw_netstring_receiver_broken(p);
}

static const tw_line_receiver_ops line_ops = {
    .base = TW_LINE_RECEIVER_BASE(peer),
    .connection_made = peer_made,
    .connection_lost = peer_lost,
    .line_received = line_unit,
};

static const tw_netstring_receiver_ops ns_ops = {
    .base = TW_NETSTRING_RECEIVER_BASE(peer),
    .connection_made = peer_made,
    .connection_lost = peer_lost,
    .string_received = unit,
};

static const tw_int_receiver_ops i32_ops = {
    .base = TW_INT32_RECEIVER_BASE(peer),
    .connection_made = peer_made,
    .connection_lost = peer_lost,
    .string_received = unit,
};

static const tw_protocol_ops *ops_of(kind k)
{
    return k == K_LINE        ? TW_PROTOCOL_OF(&line_ops)
           : k == K_NETSTRING ? TW_PROTOCOL_OF(&ns_ops)
                              : TW_PROTOCOL_OF(&i32_ops);
}

static void reset(kind k, size_t max, bool client)
{
    free(S.wire);
    memset(&S, 0, sizeof S);
    S.k = k;
    S.max = max;
    S.client = client;
}

/* ------------------------------------------------------------ the Python side */

static tt_child py;
static bool py_running;

static void start_py(const char *const args[])
{
    if (!have_twisted)
        skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/interop/twisted_framing.py", TWIRL_SOURCE_DIR);
    const char *argv[64] = { PYTHON, path };
    int n = 2;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = tt_child_start(&py, argv);
    if (rc < 0)
        fail_msg("cannot start Python: %s", strerror(-rc));
    py_running = true;
}

static int teardown(void **state)
{
    if (py_running)
        tt_child_kill(&py);
    py_running = false;
    free(S.wire);
    S.wire = NULL;
    return 0;
}

/* The Python peer's report lines, gathered while the reactor runs. */
typedef struct report {
    char lines[MAX_UNITS + 8][64];
    int n;
    bool ended; /* "LOST ..." or "FAILED ..." came */
} report;

static report rep;

static void gather(void)
{
    const char *l;
    while (!rep.ended && (l = tt_child_line(&py, 0)) != NULL) {
        if (strncmp(l, "PORT ", 5) == 0)
            continue;
        if (rep.n < (int)(sizeof rep.lines / sizeof rep.lines[0]))
            snprintf(rep.lines[rep.n++], sizeof rep.lines[0], "%s", l);
        if (strncmp(l, "LOST", 4) == 0 || strncmp(l, "FAILED", 6) == 0)
            rep.ended = true;
    }
}

static bool both_ended(void *arg)
{
    gather();
    return rep.ended && S.lost;
}

static void run_until_both_ended(tw_reactor *r)
{
    if (!tt_run_until(r, both_ended, NULL, WAIT)) {
        for (int i = 0; i < rep.n; i++)
            fprintf(stderr, "python said: %s\n", rep.lines[i]);
        fail_msg("no end within %.0f s (python ended: %d, twirl lost: %d, units: %zu)", WAIT,
                 rep.ended, S.lost, S.units);
    }
}

/* The report is exactly want[] (NULL-terminated); a want entry ending in
 * '*' matches any line with that prefix. */
static void expect_report(const char *const want[])
{
    int i = 0;
    for (; want[i]; i++) {
        if (i >= rep.n)
            fail_msg("python said only %d lines; missing \"%s\"", rep.n, want[i]);
        size_t wl = strlen(want[i]);
        bool ok = want[i][wl - 1] == '*' ? strncmp(rep.lines[i], want[i], wl - 1) == 0
                                         : strcmp(rep.lines[i], want[i]) == 0;
        if (!ok)
            fail_msg("python line %d: \"%s\", expected \"%s\"", i, rep.lines[i], want[i]);
    }
    if (i != rep.n)
        fail_msg("python said more: \"%s\"", rep.lines[i]);
}

static void expect_py_exit_0(void)
{
    int st = tt_child_wait(&py, WAIT);
    py_running = false;
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Twirl's units are exactly msgs[0..n). */
static void expect_units(const char *const *msgs, size_t n)
{
    assert_int_equal(S.units, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *m = message(msgs[i], &len);
        assert_int_equal(S.lens[i], len);
        assert_int_equal(S.sums[i], fnv(m, len));
        free(m);
    }
}

static size_t count(const char *const *msgs)
{
    size_t n = 0;
    while (msgs[n])
        n++;
    return n;
}

/* ------------------------------------------------------------ scenarios */

typedef struct scenario {
    tw_reactor *r;
    tw_factory factory;
    tw_port *port;
    char portstr[8];
} scenario;

static void twirl_server(scenario *sc, kind k, size_t max)
{
    reset(k, max, false);
    memset(&rep, 0, sizeof rep);
    sc->r = tt_reactor();
    sc->factory = (tw_factory)TW_FACTORY_INIT(ops_of(k), NULL);
    assert_int_equal(tw_listen_tcp(sc->r, "127.0.0.1", 0, NULL, &sc->factory, &sc->port), 0);
    snprintf(sc->portstr, sizeof sc->portstr, "%u", tw_address_port(tw_port_address(sc->port)));
}

static void twirl_client(scenario *sc, kind k, size_t max, uint16_t port, const char *const *msgs,
                         size_t close_after)
{
    reset(k, max, true);
    sc->r = tt_reactor();
    sc->factory = (tw_factory)TW_FACTORY_INIT(ops_of(k), NULL);
    S.wire = frame(k, msgs, count(msgs), &S.wire_len);
    S.close_after = close_after;
    sc->port = NULL;
    assert_int_equal(tw_connect_tcp(sc->r, "127.0.0.1", port, NULL, &sc->factory, NULL), 0);
}

static void finish(scenario *sc)
{
    tw_port_stop_listening(sc->port);
    tw_reactor_free(sc->r);
}

/* Python's server for kind, with its MAX_LENGTH; returns its port. */
static uint16_t twisted_server(kind k, const char *max)
{
    memset(&rep, 0, sizeof rep);
    start_py((const char *const[]){ "server", kind_names[k], max, NULL });
    const char *line = tt_child_line(&py, WAIT);
    if (!line || strncmp(line, "PORT ", 5) != 0)
        fail_msg("the Twisted server printed no port (\"%s\")", line ? line : "");
    return (uint16_t)atoi(line + 5);
}

static void stop_twisted_server(void)
{
    int st = tt_child_stop(&py, SIGTERM, WAIT, NULL);
    py_running = false;
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static const char *const echo_msgs_text[] = { "hello", "",     "a: b, c",     "#3000",
                                              "#1",    "1:a,", "last one...", NULL };
static const char *const echo_msgs_binary[] = { "hello", "", "~600", "#3000", "~1", "1:a,", NULL };

static const char *const *echo_msgs(kind k)
{
    return k == K_LINE ? echo_msgs_text : echo_msgs_binary; /* no CR LF inside lines */
}

/* Twisted's client, twirl's echo server: every unit comes back intact. */
static void twisted_client_twirl_server(void **state)
{
    kind k = *(kind *)*state;
    scenario sc;
    twirl_server(&sc, k, 0);
    const char *const *msgs = echo_msgs(k);
    size_t n = count(msgs);
    char nstr[24];
    snprintf(nstr, sizeof nstr, "%zu", n);
    const char *args[32] = { "client", kind_names[k], sc.portstr, "0", nstr };
    for (size_t i = 0; i < n; i++)
        args[5 + i] = msgs[i];
    start_py(args);
    run_until_both_ended(sc.r);
    char want_lines[16][64];
    const char *want[20];
    for (size_t i = 0; i < n; i++) {
        unit_line(want_lines[i], sizeof want_lines[i], msgs[i]);
        want[i] = want_lines[i];
    }
    want[n] = "DONE";
    want[n + 1] = "LOST clean";
    want[n + 2] = NULL;
    expect_report(want);
    expect_py_exit_0();
    expect_units(msgs, n);
    finish(&sc);
}

/* Twisted's client sends a unit over twirl's limit: twirl closes after the
 * units before it; Twisted sees its replies, then the end. */
static void twisted_client_oversize_to_twirl(void **state)
{
    kind k = *(kind *)*state;
    scenario sc;
    twirl_server(&sc, k, 1000);
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    start_py((const char *const[]){ "client", kind_names[k], sc.portstr, "0", "99", "ok", "#1000",
                                    "#1001", "never", NULL });
    run_until_both_ended(sc.r);
    assert_true(tw_test_log_count(log) >= 1); /* the reason was logged */
    tw_test_log_release(log);
    char a[64], b[64];
    unit_line(a, sizeof a, "ok");
    unit_line(b, sizeof b, "#1000"); /* exactly the limit: accepted */
    expect_report((const char *const[]){ a, b, "LOST *", NULL });
    expect_py_exit_0();
    expect_units((const char *const[]){ "ok", "#1000" }, 2);
    if (k == K_NETSTRING)
        assert_true(S.broken);
    finish(&sc);
}

/* twirl's server echoes a unit over Twisted's limit: Twisted closes. */
static void twirl_echo_oversize_to_twisted(void **state)
{
    kind k = *(kind *)*state;
    scenario sc;
    twirl_server(&sc, k, 0);
    start_py((const char *const[]){ "client", kind_names[k], sc.portstr, "1000", "99", "ok",
                                    "#1001", NULL });
    run_until_both_ended(sc.r);
    char a[64];
    unit_line(a, sizeof a, "ok");
    if (k == K_NETSTRING)
        expect_report((const char *const[]){ a, "BROKEN", "LOST *", NULL });
    else
        expect_report((const char *const[]){ a, "EXCEEDED", "LOST *", NULL });
    expect_py_exit_0();
    expect_units((const char *const[]){ "ok", "#1001" }, 2); /* twirl got both */
    finish(&sc);
}

/* twirl's client, Twisted's echo server. */
static void twirl_client_twisted_server(void **state)
{
    kind k = *(kind *)*state;
    uint16_t port = twisted_server(k, "0");
    const char *const *msgs = echo_msgs(k);
    size_t n = count(msgs);
    scenario sc;
    twirl_client(&sc, k, 0, port, msgs, n);
    run_until_both_ended(sc.r);
    assert_true(S.made);
    assert_int_equal(S.lost_code, TW_ECONNECTION_DONE);
    expect_units(msgs, n);
    char want_lines[16][64];
    const char *want[20] = { "CONN" };
    for (size_t i = 0; i < n; i++) {
        unit_line(want_lines[i], sizeof want_lines[i], msgs[i]);
        want[1 + i] = want_lines[i];
    }
    want[n + 1] = "LOST clean";
    want[n + 2] = NULL;
    expect_report(want);
    stop_twisted_server();
    finish(&sc);
}

/* twirl's client sends a unit over Twisted's limit: Twisted closes. */
static void twirl_client_oversize_to_twisted(void **state)
{
    kind k = *(kind *)*state;
    uint16_t port = twisted_server(k, "1000");
    static const char *const msgs[] = { "ok", "#1000", "#1001", "never", NULL };
    scenario sc;
    twirl_client(&sc, k, 0, port, msgs, 99);
    run_until_both_ended(sc.r);
    expect_units(msgs, 2);
    char a[64], b[64];
    unit_line(a, sizeof a, "ok");
    unit_line(b, sizeof b, "#1000");
    if (k == K_NETSTRING)
        expect_report((const char *const[]){ "CONN", a, b, "BROKEN", "LOST *", NULL });
    else
        expect_report((const char *const[]){ "CONN", a, b, "EXCEEDED", "LOST *", NULL });
    stop_twisted_server();
    finish(&sc);
}

/* Twisted's server echoes a unit over twirl's limit: twirl closes. */
static void twisted_echo_oversize_to_twirl(void **state)
{
    kind k = *(kind *)*state;
    uint16_t port = twisted_server(k, "0");
    static const char *const msgs[] = { "ok", "#1001", NULL };
    scenario sc;
    tw_test_log *log = tw_test_log_capture(TW_LOG_WARN);
    twirl_client(&sc, k, 1000, port, msgs, 99);
    run_until_both_ended(sc.r);
    assert_true(tw_test_log_count(log) >= 1);
    tw_test_log_release(log);
    expect_units(msgs, 1);
    if (k == K_NETSTRING)
        assert_true(S.broken);
    char a[64], b[64];
    unit_line(a, sizeof a, "ok");
    unit_line(b, sizeof b, "#1001");
    expect_report((const char *const[]){ "CONN", a, b, "LOST *", NULL });
    stop_twisted_server();
    finish(&sc);
}

static kind kinds[] = { K_LINE, K_NETSTRING, K_INT32 };

/* One test per kind, named "scenario/kind". */
#define FOR_KINDS(fn)                                        \
    { #fn "/line", fn, NULL, teardown, &kinds[0] },          \
        { #fn "/netstring", fn, NULL, teardown, &kinds[1] }, \
    {                                                        \
#fn "/int32", fn, NULL, teardown, &kinds[2]          \
    }

int main(void)
{
    have_twisted = system(PYTHON " -c 'import twisted.protocols.basic' 2>/dev/null") == 0;
    if (!have_twisted)
        fprintf(stderr, "python3-twisted is missing: every test is skipped\n");
    const struct CMUnitTest tests[] = {
        FOR_KINDS(twisted_client_twirl_server),      FOR_KINDS(twirl_client_twisted_server),
        FOR_KINDS(twisted_client_oversize_to_twirl), FOR_KINDS(twirl_echo_oversize_to_twisted),
        FOR_KINDS(twirl_client_oversize_to_twisted), FOR_KINDS(twisted_echo_oversize_to_twirl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
