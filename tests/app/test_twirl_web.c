/* ctest: label=integration timeout=180 backends=once */
/* `twirl web` as a user runs it: help, usage errors, serving a directory
 * on an ephemeral port with its access log, a graceful exit on SIGTERM,
 * and https through an ssl: endpoint when TLS is built in (skipped
 * otherwise). Talks to it with plain sockets and curl. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"
#include "tt_pool.h"

static char *dir;

static int group_setup(void **state)
{
    dir = tt_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/index.html", dir);
    FILE *f = fopen(p, "w");
    fputs("<h1>twirl</h1>\n", f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    tt_rmdir(dir);
    return 0;
}

static void help_and_usage(void **state)
{
    char out[8192], args[1200];
    assert_int_equal(tt_twirl_run("--help", out, sizeof out, 10), 0);
    assert_non_null(strstr(out, "web"));
    assert_int_equal(tt_twirl_run("web --help", out, sizeof out, 10), 0);
    assert_non_null(strstr(out, "--path DIR"));
    assert_non_null(strstr(out, "--access-log FILE"));
    assert_non_null(strstr(out, "--index FILE"));
    assert_int_equal(tt_twirl_run("web --listen tcp:0", out, sizeof out, 10), 2);
    assert_non_null(strstr(out, "--path DIR is required"));
    assert_int_equal(tt_twirl_run("web --listen tcp:0 --path /no/such/dir", out, sizeof out, 10),
                     2);
    assert_non_null(strstr(out, "/no/such/dir"));
    snprintf(args, sizeof args, "web --listen tcp:0 --path %s --index a/b", dir);
    assert_int_equal(tt_twirl_run(args, out, sizeof out, 10), 2);
    snprintf(args, sizeof args, "web --listen tcp:0 --path %s --max-connections x", dir);
    assert_int_equal(tt_twirl_run(args, out, sizeof out, 10), 2);
    snprintf(args, sizeof args, "web --listen nope:1 --path %s", dir);
    assert_int_equal(tt_twirl_run(args, out, sizeof out, 10), 2);
}

static void serves_and_logs(void **state)
{
    char args[2048], log[1100];
    snprintf(log, sizeof log, "%s/access.log", dir);
    snprintf(args, sizeof args,
             "web --listen tcp:0:interface=127.0.0.1 --path %s --access-log %s --index index.html",
             dir, log);
    tt_child c;
    tt_twirl_start(&c, args);
    uint16_t port = tt_twirl_port(&c, 10);
    int s = tt_connect_loopback(port);
    assert_true(s >= 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: test-agent\r\n\r\n"
                       "GET /missing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(s, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char buf[8192];
    bool eof = false;
    size_t n = tt_recv_upto(s, buf, sizeof buf - 1, 5, &eof);
    buf[n] = 0;
    close(s);
    assert_true(eof);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "<h1>twirl</h1>"));
    assert_non_null(strstr(buf, "HTTP/1.1 404 Not Found"));
    assert_non_null(strstr(buf, "Server: twirl"));
    double took;
    int st = tt_child_stop(&c, SIGTERM, 10, &took);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* The log was flushed at exit. */
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[1024], all[4096] = "";
    while (fgets(line, sizeof line, f))
        strncat(all, line, sizeof all - strlen(all) - 1);
    fclose(f);
    assert_non_null(strstr(all, "127.0.0.1 - - ["));
    assert_non_null(strstr(all, "\"GET / HTTP/1.1\" 200 15 \"-\" \"test-agent\""));
    assert_non_null(strstr(all, "\"GET /missing HTTP/1.1\" 404 "));
}

static void https_when_tls_is_built(void **state)
{
    if (system("command -v openssl >/dev/null && command -v curl >/dev/null") != 0)
        skip();
    char cmd[4096], key[1100], cert[1100];
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=localhost >/dev/null 2>&1",
             key, cert);
    assert_int_equal(system(cmd), 0);
    char args[4096];
    snprintf(args, sizeof args,
             "web --listen ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s --path %s", key, cert,
             dir);
    tt_child c;
    tt_twirl_start(&c, args);
    const char *line;
    uint16_t port = 0;
    while (!port && (line = tt_child_line(&c, 10)) != NULL) {
        if (strstr(line, "unknown endpoint type") || strstr(line, "unknown type")) {
            tt_child_stop(&c, SIGTERM, 5, NULL);
            skip(); /* this build has no TLS */
        }
        const char *at = strstr(line, " listening on ");
        if (at)
            port = (uint16_t)atoi(strrchr(at, ':') + 1);
    }
    if (!port) {
        tt_child_kill(&c);
        skip();
    }
    snprintf(cmd, sizeof cmd, "curl -sSk --max-time 10 https://127.0.0.1:%u/", port);
    FILE *p = popen(cmd, "r");
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    pclose(p);
    tt_child_stop(&c, SIGTERM, 10, NULL);
    assert_non_null(strstr(out, "<h1>twirl</h1>"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_and_usage),
        cmocka_unit_test(serves_and_logs),
        cmocka_unit_test(https_when_tls_is_built),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
