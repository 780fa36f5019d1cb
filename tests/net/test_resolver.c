/* ctest: label=interop timeout=120 */
/* Host name resolution against a real DNS server: dnsmasq, started by this
 * test on a loopback port with its own configuration (no forwarding, no
 * hosts file), and stopped by PID at the end. Tests that need no server
 * (numeric addresses, localhost, a black-hole server for timeouts) run even
 * where dnsmasq is missing; the others are then skipped. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "twirl/deferred.h"
#include "twirl/resolver.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

static pid_t dns_pid = -1;
static int dns_port;
static char *dns_dir;
static int blackhole_fd = -1; /* a bound UDP socket nobody reads */
static int blackhole_port;
static int error_logs;

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    if (level >= TW_LOG_ERROR) {
        error_logs++;
        fprintf(stderr, "log: [%s] %s\n", domain, message);
    }
}

/* A port that was free a moment ago, for both UDP and TCP on 127.0.0.1. */
static int free_port(void)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        if (bind(u, (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(u, (struct sockaddr *)&a, &len) < 0) {
            close(u);
            continue;
        }
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = bind(t, (struct sockaddr *)&a, sizeof a) == 0;
        close(t);
        close(u);
        if (ok)
            return ntohs(a.sin_port);
    }
    return -1;
}

static bool tcp_answers(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void start_dnsmasq(void)
{
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "dnsmasq not installed (apt-get install dnsmasq-base): "
                        "tests against a DNS server are skipped\n");
        return;
    }
    dns_port = free_port();
    dns_dir = tt_tmpdir();
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/dnsmasq.conf", dns_dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "keep-in-foreground\n"
            "port=%d\n"
            "listen-address=127.0.0.1\n"
            "bind-interfaces\n"
            "no-resolv\n"
            "no-hosts\n"
            "no-poll\n"
            "user=root\n"
            "pid-file=\n"
            "local=/twirl.test/\n"
            "address=/a.twirl.test/127.0.0.2\n"
            "host-record=both.twirl.test,127.0.0.3,::1\n"
            "host-record=six.twirl.test,::6\n"
            "address=/many.twirl.test/127.0.0.9\n",
            dns_port);
    fclose(f);
    char arg[4300];
    snprintf(arg, sizeof arg, "--conf-file=%s", conf);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", 0);
        dup2(null, 0);
        dup2(null, 1);
        execl(DNSMASQ, "dnsmasq", arg, (char *)NULL);
        _exit(127);
    }
    dns_pid = pid;
    for (int i = 0; i < 500; i++) { /* up to 5 s for it to listen */
        if (tcp_answers(dns_port))
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "dnsmasq exited at once (status %d)\n", status);
            dns_pid = -1;
            fail();
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    fail_msg("dnsmasq did not start listening on port %d", dns_port);
}

static int group_setup(void **state)
{
    blackhole_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(blackhole_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(blackhole_fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    blackhole_port = ntohs(a.sin_port);
    start_dnsmasq();
    return 0;
}

static int group_teardown(void **state)
{
    if (dns_pid > 0) {
        kill(dns_pid, SIGTERM);
        waitpid(dns_pid, NULL, 0);
        dns_pid = -1;
    }
    if (dns_dir)
        tt_rmdir(dns_dir);
    dns_dir = NULL;
    close(blackhole_fd);
    return 0;
}

static int base_fds;

static int setup(void **state)
{
    error_logs = 0;
    tw_log_set_handler(capture, NULL);
    base_fds = tt_open_fds();
    *state = tt_reactor();
    return 0;
}

static int teardown(void **state)
{
    tw_reactor_free(*state);
    tw_log_set_handler(NULL, NULL);
    assert_int_equal(error_logs, 0);
    assert_int_equal(tt_open_fds(), base_fds); /* c-ares closed its sockets */
    return 0;
}

static void need_dnsmasq(void)
{
    if (dns_pid <= 0)
        skip();
}

/* Points the reactor's resolver at server_port, no hosts file, no search. */
static void use_server(tw_reactor *r, int port, double timeout, int tries)
{
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    tw_resolver_options o = {
        .servers = servers, .timeout = timeout, .tries = tries, .no_search = true, .no_hosts = true
    };
    assert_int_equal(tw_resolver_configure(r, &o), 0);
}

/* ------------------------------------------------------------ outcomes */

typedef struct outcome {
    int fired;
    tw_address_list *list; /* moved out of the chain */
    int code;
    char message[512];
} outcome;

static tw_result record(tw_result *in, void *arg)
{
    outcome *o = arg;
    o->fired++;
    if (in->failure) {
        o->code = tw_failure_code(in->failure);
        snprintf(o->message, sizeof o->message, "%s", tw_failure_message(in->failure));
    } else {
        assert_ptr_equal(in->value.free, tw_address_list_free);
        tw_result v = tw_result_move(in);
        o->list = v.value.ptr;
    }
    return TW_RESULT_NONE;
}

static void watch(tw_deferred *d, outcome *o)
{
    assert_non_null(d);
    assert_int_equal(tw_deferred_add_both(d, record, o), 0);
    tw_deferred_unref(d);
}

static bool fired(void *arg)
{
    return ((outcome *)arg)->fired > 0;
}

static void done_with(outcome *o)
{
    tw_address_list_free(o->list);
    o->list = NULL;
}

static void host_of(const tw_address_list *l, size_t i, char *buf, size_t size)
{
    assert_true(i < l->count);
    tw_address_host(&l->addrs[i], buf, size);
}

static bool list_has(const tw_address_list *l, const char *host)
{
    char buf[64];
    for (size_t i = 0; i < l->count; i++) {
        tw_address_host(&l->addrs[i], buf, sizeof buf);
        if (strcmp(buf, host) == 0)
            return true;
    }
    return false;
}

static void resolve_and_wait(tw_reactor *r, const char *host, int family, outcome *o)
{
    watch(tw_resolve(r, host, family), o);
    assert_true(tt_run_until(r, fired, o, 20));
    assert_int_equal(o->fired, 1);
}

/* --------------------------------------------------- against dnsmasq */

static void a_record(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    outcome o = { 0 };
    resolve_and_wait(r, "a.twirl.test", AF_INET, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.list->count, 1);
    char buf[64];
    host_of(o.list, 0, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.2");
    assert_int_equal(tw_address_port(&o.list->addrs[0]), 0);
    done_with(&o);
}

static void aaaa_record(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    outcome o = { 0 };
    resolve_and_wait(r, "six.twirl.test", AF_INET6, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.list->count, 1);
    char buf[64];
    host_of(o.list, 0, buf, sizeof buf);
    assert_string_equal(buf, "::6");
    assert_int_equal(tw_address_family(&o.list->addrs[0]), AF_INET6);
    done_with(&o);

    /* A name with only an A record, asked for AAAA: no such address. */
    outcome none = { 0 };
    resolve_and_wait(r, "a.twirl.test", AF_INET6, &none);
    assert_int_equal(none.code, TW_EDNS);
    assert_non_null(strstr(none.message, "'a.twirl.test'"));
    assert_non_null(strstr(none.message, "no IPv6 address")); /* or "no such host" */
}

static void both_families(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    outcome o = { 0 };
    resolve_and_wait(r, "both.twirl.test", AF_UNSPEC, &o);
    assert_int_equal(o.code, 0);
    assert_int_equal(o.list->count, 2);
    assert_true(list_has(o.list, "127.0.0.3"));
    assert_true(list_has(o.list, "::1"));
    tw_address_list_interleave(o.list, AF_INET6);
    assert_int_equal(tw_address_family(&o.list->addrs[0]), AF_INET6);
    assert_int_equal(tw_address_family(&o.list->addrs[1]), AF_INET);
    tw_address_list_set_port(o.list, 8080, SOCK_STREAM);
    char text[TW_ADDRESS_TEXT_MAX];
    tw_address_format(&o.list->addrs[0], text, sizeof text);
    assert_string_equal(text, "[::1]:8080");
    assert_int_equal(o.list->addrs[1].socktype, SOCK_STREAM);
    done_with(&o);

    /* A name with only an A record, both families asked: just that one. */
    outcome a = { 0 };
    resolve_and_wait(r, "a.twirl.test", AF_UNSPEC, &a);
    assert_int_equal(a.code, 0);
    assert_int_equal(a.list->count, 1);
    assert_true(list_has(a.list, "127.0.0.2"));
    done_with(&a);
}

static void nxdomain_names_the_host(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    outcome o = { 0 };
    resolve_and_wait(r, "nope.twirl.test", AF_UNSPEC, &o);
    assert_null(o.list);
    assert_int_equal(o.code, TW_EDNS);
    assert_string_equal(o.message,
                        "lookup of 'nope.twirl.test' failed: no such host (domain name not found)");
}

typedef struct many {
    outcome o[100];
} many;

static bool all_fired(void *arg)
{
    many *m = arg;
    for (int i = 0; i < 100; i++)
        if (!m->o[i].fired)
            return false;
    return true;
}

static void hundred_concurrent_lookups(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 2, 3);
    many *m = calloc(1, sizeof *m);
    for (int i = 0; i < 100; i++) {
        char name[64];
        if (i % 10 == 9)
            snprintf(name, sizeof name, "missing%d.twirl.test", i);
        else
            snprintf(name, sizeof name, "h%d.many.twirl.test", i);
        watch(tw_resolve(r, name, i % 2 ? AF_INET : AF_UNSPEC), &m->o[i]);
    }
    tw_resolver_stats st;
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 100); /* all in flight at once */
    assert_true(tt_run_until(r, all_fired, m, 30));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(m->o[i].fired, 1);
        if (i % 10 == 9) {
            assert_int_equal(m->o[i].code, TW_EDNS);
            assert_non_null(strstr(m->o[i].message, "missing"));
        } else {
            assert_int_equal(m->o[i].code, 0);
            assert_int_equal(m->o[i].list->count, 1);
            assert_true(list_has(m->o[i].list, "127.0.0.9"));
            done_with(&m->o[i]);
        }
    }
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 0);
    free(m);
}

/* A lookup started from a lookup's callback (no c-ares on the stack). */
typedef struct nested {
    tw_reactor *r;
    outcome first, second;
} nested;

static tw_result start_second(tw_result *in, void *arg)
{
    nested *n = arg;
    watch(tw_resolve(n->r, "both.twirl.test", AF_INET), &n->second);
    /* Reconfiguring now would pull the channel from under the lookup. */
    assert_int_equal(tw_resolver_configure(n->r, NULL), TW_EBUSY);
    return record(in, &n->first);
}

static bool second_fired(void *arg)
{
    return ((nested *)arg)->second.fired > 0;
}

static void lookup_from_a_callback(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    nested n = { .r = r };
    tw_deferred *d = tw_resolve(r, "a.twirl.test", AF_INET);
    assert_int_equal(tw_deferred_add_both(d, start_second, &n), 0);
    tw_deferred_unref(d);
    assert_true(tt_run_until(r, second_fired, &n, 20));
    assert_true(list_has(n.first.list, "127.0.0.2"));
    assert_true(list_has(n.second.list, "127.0.0.3"));
    done_with(&n.first);
    done_with(&n.second);
}

/* ------------------------------------------- failures without dnsmasq */

static void timeout_from_black_hole(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 0.2, 1);
    outcome o = { 0 };
    resolve_and_wait(r, "slow.twirl.test", AF_INET, &o);
    assert_int_equal(o.code, TW_ETIMEDOUT);
    assert_string_equal(o.message,
                        "lookup of 'slow.twirl.test' failed: timed out (no DNS server answered)");
}

static void unreachable_server(void **state)
{
    tw_reactor *r = *state;
    int port = free_port(); /* nothing listens: ICMP port unreachable */
    use_server(r, port, 0.5, 1);
    outcome o = { 0 };
    resolve_and_wait(r, "gone.twirl.test", AF_INET, &o);
    assert_non_null(strstr(o.message, "lookup of 'gone.twirl.test' failed: "));
    /* c-ares reports the refused socket, or a timeout where ICMP is lost. */
    if (o.code == TW_EDNS)
        assert_non_null(strstr(o.message, "connection refused"));
    else
        assert_int_equal(o.code, TW_ETIMEDOUT);
}

static void no_servers(void **state)
{
    tw_reactor *r = *state;
    tw_resolver_options opts = { .servers = "", .no_hosts = true, .no_search = true };
    assert_int_equal(tw_resolver_configure(r, &opts), 0);
    outcome o = { 0 };
    resolve_and_wait(r, "any.twirl.test", AF_UNSPEC, &o);
    assert_int_equal(o.code, TW_EDNS);
    assert_string_equal(o.message, "lookup of 'any.twirl.test' failed: no DNS servers configured");
}

static void bad_options_and_names(void **state)
{
    tw_reactor *r = *state;
    tw_resolver_options opts = { .servers = "not an address" };
    assert_int_equal(tw_resolver_configure(r, &opts), TW_EINVAL);
    opts = (tw_resolver_options){ .timeout = -1 };
    assert_int_equal(tw_resolver_configure(r, &opts), TW_EINVAL);

    outcome o = { 0 };
    watch(tw_resolve(r, "", AF_UNSPEC), &o);
    assert_int_equal(o.code, TW_EINVAL);
    outcome fam = { 0 };
    watch(tw_resolve(r, "a.twirl.test", AF_UNIX), &fam);
    assert_int_equal(fam.code, TW_EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    outcome lng = { 0 };
    watch(tw_resolve(r, longname, AF_UNSPEC), &lng);
    assert_int_equal(lng.code, TW_EINVAL);
    assert_non_null(strstr(lng.message, "at most 253 bytes"));
}

static void cancel_before_answer(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 5, 2);
    outcome o = { 0 };
    tw_deferred *d = tw_resolve(r, "never.twirl.test", AF_UNSPEC);
    assert_int_equal(tw_deferred_add_both(d, record, &o), 0);
    tt_run_for(r, 0.05); /* the query is out */
    tw_resolver_stats st;
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 1);
    assert_true(st.sockets >= 1);

    tw_deferred_cancel(d);
    assert_int_equal(o.fired, 1); /* at once */
    assert_int_equal(o.code, TW_ECANCELED);
    tw_deferred_unref(d);
    /* No live lookup left: c-ares lets go of the query in the next turn. */
    tt_run_for(r, 0.05);
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 0);
    assert_int_equal(o.fired, 1); /* nothing more */
}

static void cancel_one_of_two(void **state)
{
    need_dnsmasq();
    tw_reactor *r = *state;
    use_server(r, dns_port, 1, 2);
    outcome kept = { 0 }, dropped = { 0 };
    watch(tw_resolve(r, "a.twirl.test", AF_INET), &kept);
    tw_deferred *d = tw_resolve(r, "both.twirl.test", AF_UNSPEC);
    assert_int_equal(tw_deferred_add_both(d, record, &dropped), 0);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    assert_int_equal(dropped.code, TW_ECANCELED);
    assert_true(tt_run_until(r, fired, &kept, 20));
    assert_true(list_has(kept.list, "127.0.0.2"));
    done_with(&kept);
    tt_run_for(r, 0.1); /* the cancelled one's answer arrives and is dropped */
    assert_int_equal(dropped.fired, 1);
    tw_resolver_stats st;
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 0);
}

static void deferred_timeout_cancels_lookup(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 5, 2);
    outcome o = { 0 };
    tw_deferred *d = tw_resolve(r, "never.twirl.test", AF_INET);
    assert_int_equal(tw_deferred_add_timeout(d, 0.1, r), 0);
    watch(d, &o);
    assert_true(tt_run_until(r, fired, &o, 5));
    assert_int_equal(o.code, TW_ETIMEDOUT);
    tt_run_for(r, 0.05);
    tw_resolver_stats st;
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 0);
}

static void reactor_freed_with_lookup_in_flight(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 5, 2);
    outcome o = { 0 };
    watch(tw_resolve(r, "never.twirl.test", AF_UNSPEC), &o);
    tt_run_for(r, 0.05);
    assert_int_equal(o.fired, 0);
    tw_reactor_free(r);
    *state = tt_reactor();
    assert_int_equal(o.fired, 1);
    assert_int_equal(o.code, TW_ECANCELED);
    assert_non_null(strstr(o.message, "'never.twirl.test'"));
    assert_non_null(strstr(o.message, "reactor is being freed"));
}

/* --------------------------------------------------------- shortcuts */

static void numeric_short_circuit(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 5, 2); /* would hang if it were asked */
    struct {
        const char *host;
        int family;
        const char *want;
    } cases[] = {
        { "127.0.0.1", AF_UNSPEC, "127.0.0.1" },
        { "192.0.2.7", AF_INET, "192.0.2.7" },
        { "::1", AF_INET6, "::1" },
        { "2001:db8::42", AF_UNSPEC, "2001:db8::42" },
        { "fe80::1%lo", AF_INET6, "fe80::1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        outcome o = { 0 };
        watch(tw_resolve(r, cases[i].host, cases[i].family), &o);
        assert_int_equal(o.fired, 1); /* before tw_resolve returned */
        assert_int_equal(o.code, 0);
        assert_int_equal(o.list->count, 1);
        char buf[64];
        host_of(o.list, 0, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
        done_with(&o);
    }
    outcome mismatch = { 0 };
    watch(tw_resolve(r, "10.1.2.3", AF_INET6), &mismatch);
    assert_int_equal(mismatch.code, TW_EDNS);
    assert_non_null(strstr(mismatch.message, "'10.1.2.3'"));
    tw_resolver_stats st;
    tw_resolver_stats_get(r, &st);
    assert_int_equal(st.queries, 0);
    assert_int_equal(st.sockets, 0);
}

static void localhost_without_hosts_file(void **state)
{
    tw_reactor *r = *state;
    use_server(r, blackhole_port, 5, 2); /* no_hosts: /etc/hosts is not read */
    const char *names[] = { "localhost", "LOCALHOST.", "web.localhost" };
    for (size_t i = 0; i < 3; i++) {
        outcome o = { 0 };
        watch(tw_resolve(r, names[i], AF_UNSPEC), &o);
        assert_int_equal(o.fired, 1);
        assert_int_equal(o.list->count, 2);
        assert_true(list_has(o.list, "::1"));
        assert_true(list_has(o.list, "127.0.0.1"));
        done_with(&o);
    }
    outcome v4 = { 0 };
    watch(tw_resolve(r, "localhost", AF_INET), &v4);
    assert_int_equal(v4.list->count, 1);
    assert_true(list_has(v4.list, "127.0.0.1"));
    done_with(&v4);
    /* Not localhost: "notlocalhost" goes to DNS (and is cancelled here). */
    outcome other = { 0 };
    tw_deferred *d = tw_resolve(r, "notlocalhost", AF_INET);
    assert_int_equal(tw_deferred_add_both(d, record, &other), 0);
    assert_int_equal(other.fired, 0);
    tw_deferred_cancel(d);
    tw_deferred_unref(d);
    tt_run_for(r, 0.02);
}

static void hosts_file_is_honoured(void **state)
{
    tw_reactor *r = *state;
    /* The machine's own name is in /etc/hosts on most systems; the DNS
     * server is a black hole, so only the file can answer. */
    char name[256];
    if (gethostname(name, sizeof name) != 0 || strchr(name, '.'))
        skip();
    FILE *f = fopen("/etc/hosts", "r");
    if (!f)
        skip();
    char line[512];
    bool listed = false;
    while (fgets(line, sizeof line, f) && !listed) {
        char *save, *tok = strtok_r(line, " \t\n", &save);
        if (!tok || tok[0] == '#')
            continue;
        while ((tok = strtok_r(NULL, " \t\n", &save)))
            if (strcmp(tok, name) == 0)
                listed = true;
    }
    fclose(f);
    if (!listed)
        skip();
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", blackhole_port);
    tw_resolver_options o = { .servers = servers, .timeout = 0.3, .tries = 1, .no_search = true };
    assert_int_equal(tw_resolver_configure(r, &o), 0);
    outcome res = { 0 };
    resolve_and_wait(r, name, AF_INET, &res);
    assert_int_equal(res.code, 0);
    assert_true(res.list->count >= 1);
    done_with(&res);
}

static tw_address_list *list_of(const char *const *hosts, size_t n)
{
    tw_address_list *l = malloc(sizeof *l + n * sizeof l->addrs[0]);
    l->count = n;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tw_address_from_ip(&l->addrs[i], hosts[i], 0, 0), 0);
    return l;
}

static void interleave_order(void **state)
{
    const char *in[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1", "2001:db8::2" };
    tw_address_list *l = list_of(in, 5);
    tw_address_list_interleave(l, AF_INET6);
    const char *want[] = { "2001:db8::1", "10.0.0.1", "2001:db8::2", "10.0.0.2", "10.0.0.3" };
    char buf[64];
    for (int i = 0; i < 5; i++) {
        host_of(l, (size_t)i, buf, sizeof buf);
        assert_string_equal(buf, want[i]);
    }
    /* AF_UNSPEC: start with the first address's family. */
    tw_address_list *m = list_of(in, 5);
    tw_address_list_interleave(m, AF_UNSPEC);
    const char *want4[] = { "10.0.0.1", "2001:db8::1", "10.0.0.2", "2001:db8::2", "10.0.0.3" };
    for (int i = 0; i < 5; i++) {
        host_of(m, (size_t)i, buf, sizeof buf);
        assert_string_equal(buf, want4[i]);
    }
    tw_address_list *c = tw_address_list_copy(m);
    assert_int_equal(c->count, 5);
    assert_true(tw_address_equal(&c->addrs[4], &m->addrs[4]));
    tw_address_list_interleave(NULL, AF_INET6);
    tw_address_list_free(l);
    tw_address_list_free(m);
    tw_address_list_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_record, setup, teardown),
        cmocka_unit_test_setup_teardown(aaaa_record, setup, teardown),
        cmocka_unit_test_setup_teardown(both_families, setup, teardown),
        cmocka_unit_test_setup_teardown(nxdomain_names_the_host, setup, teardown),
        cmocka_unit_test_setup_teardown(hundred_concurrent_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(lookup_from_a_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_one_of_two, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_from_black_hole, setup, teardown),
        cmocka_unit_test_setup_teardown(unreachable_server, setup, teardown),
        cmocka_unit_test_setup_teardown(no_servers, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_options_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_before_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(deferred_timeout_cancels_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(reactor_freed_with_lookup_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(numeric_short_circuit, setup, teardown),
        cmocka_unit_test_setup_teardown(localhost_without_hosts_file, setup, teardown),
        cmocka_unit_test_setup_teardown(hosts_file_is_honoured, setup, teardown),
        cmocka_unit_test(interleave_order),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
