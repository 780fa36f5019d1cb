/* ctest: label=interop timeout=300 */
/* twirl's HTTP client against servers nobody here wrote: nginx (started by
 * the test on a free port, from a minimal configuration in a scratch
 * directory: static files, gzip, redirects, the echo module for request
 * bodies, TLS with the test CA) and twisted.web (tests/web/
 * twisted_web_peer.py, over TCP and TLS); and twirl's own server (tt_web,
 * on its own reactor thread). Also the http_get example against nginx and
 * Twisted. A peer that is not installed skips its tests. Every wait is
 * bounded. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_child.h"
#include "tt_tls.h"
#include "tt_web.h"
#include "twirl/tcp.h"
#include "twirl/tls.h"
#include "twirl/web_client.h"

#define PYTHON      "/usr/bin/python3"
#define NGINX       "/usr/sbin/nginx"
#define ECHO_MODULE "/usr/lib/nginx/modules/ngx_http_echo_module.so"
#define WAIT        20.0

static tt_certs *certs;

static struct {
    bool up;
    tt_child child;
    char *dir;
    uint16_t port, tls_port;
    char text[8192]; /* www/text.txt */
    size_t text_len;
} ng;

static struct {
    bool up;
    tt_child child;
    uint16_t port, tls_port;
} tx;

/* ================================================================ peers */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static bool port_open(uint16_t port)
{
    int fd = tt_connect_loopback(port);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static void start_nginx(void)
{
    if (access(NGINX, X_OK) != 0)
        return;
    ng.dir = tt_tmpdir();
    char path[2048], www[1024];
    snprintf(www, sizeof www, "%s/www", ng.dir);
    mkdir(www, 0755);
    snprintf(path, sizeof path, "%s/index.html", www);
    write_file(path, "<h1>hello from nginx</h1>\n", 26);
    ng.text_len = 0;
    while (ng.text_len + 40 < sizeof ng.text)
        ng.text_len += (size_t)snprintf(ng.text + ng.text_len, sizeof ng.text - ng.text_len,
                                        "line %zu of a compressible text\n", ng.text_len / 30);
    snprintf(path, sizeof path, "%s/text.txt", www);
    write_file(path, ng.text, ng.text_len);
    char *big = malloc(1 << 20);
    for (size_t i = 0; i < 1 << 20; i++)
        big[i] = (char)(i * 7 + i / 1024);
    snprintf(path, sizeof path, "%s/big.bin", www);
    write_file(path, big, 1 << 20);
    free(big);
    ng.port = tt_dead_port();
    ng.tls_port = tt_dead_port();
    bool echo = access(ECHO_MODULE, R_OK) == 0;
    char conf[8192];
    int n =
        snprintf(conf, sizeof conf,
                 "%s"
                 "daemon off; master_process off; worker_processes 1;\n"
                 "pid %s/nginx.pid; error_log %s/error.log info;\n"
                 "events { worker_connections 256; }\n"
                 "http {\n"
                 "  access_log %s/access.log;\n"
                 "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
                 "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
                 "  types { text/html html; text/plain txt; application/octet-stream bin; }\n"
                 "  keepalive_requests 10000; keepalive_timeout 60;\n"
                 "  gzip on; gzip_types text/plain; gzip_min_length 100;\n"
                 "  server {\n"
                 "    listen 127.0.0.1:%u;\n"
                 "    listen 127.0.0.1:%u ssl;\n"
                 "    ssl_certificate %s; ssl_certificate_key %s;\n"
                 "    root %s;\n"
                 "    location = /redirect { return 302 /text.txt; }\n"
                 "    location = /redirect-abs { return 301 http://127.0.0.1:%u/index.html; }\n"
                 "    location = /loop { return 302 /loop; }\n"
                 "    location = /see-other { return 303 /index.html; }\n"
                 "    %s\n"
                 "  }\n"
                 "}\n",
                 echo ? "load_module " ECHO_MODULE ";\n" : "", ng.dir, ng.dir, ng.dir, ng.dir,
                 ng.dir, ng.dir, ng.dir, ng.dir, ng.port, ng.tls_port, certs->server_chain,
                 certs->server_key, www, ng.port,
                 echo ? "location = /echo { client_max_body_size 10m; echo_read_request_body; "
                        "echo_request_body; }"
                      : "");
    snprintf(path, sizeof path, "%s/nginx.conf", ng.dir);
    write_file(path, conf, (size_t)n);
    const char *argv[] = { NGINX, "-p", ng.dir, "-c", path, NULL };
    if (tt_child_start(&ng.child, argv) < 0)
        return;
    double end = tt_now() + WAIT;
    while (tt_now() < end && !(port_open(ng.port) && port_open(ng.tls_port)))
        usleep(20000);
    ng.up = port_open(ng.port);
    if (!ng.up) {
        snprintf(path, sizeof path, "cat %s/error.log >&2", ng.dir);
        if (system(path) != 0)
            fprintf(stderr, "nginx did not start\n");
    }
}

static void start_twisted(void)
{
    if (access(PYTHON, X_OK) != 0 || system(PYTHON " -c 'import twisted.web' 2>/dev/null") != 0)
        return;
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/web/twisted_web_peer.py", TWIRL_SOURCE_DIR);
    const char *argv[] = { PYTHON, script, certs->server_chain, certs->server_key, NULL };
    if (tt_child_start(&tx.child, argv) < 0)
        return;
    const char *line = tt_child_line(&tx.child, WAIT);
    unsigned a, b;
    if (!line || sscanf(line, "PORTS %u %u", &a, &b) != 2) {
        fprintf(stderr, "twisted peer: %s\n", line ? line : "no ports");
        tt_child_kill(&tx.child);
        return;
    }
    tx.port = (uint16_t)a;
    tx.tls_port = (uint16_t)b;
    tx.up = true;
}

static int setup_all(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    certs = tt_certs_make();
    start_nginx();
    start_twisted();
    return 0;
}

static int teardown_all(void **state)
{
    if (ng.child.pid)
        tt_child_stop(&ng.child, SIGQUIT, WAIT, NULL);
    tt_child_kill(&ng.child);
    if (ng.dir)
        tt_rmdir(ng.dir);
    if (tx.child.pid)
        tt_child_stop(&tx.child, SIGTERM, WAIT, NULL);
    tt_child_kill(&tx.child);
    tt_certs_free(certs);
    return 0;
}

/* ================================================================ client side */

typedef struct client {
    tw_reactor *r;
    tw_agent *base, *redirect, *decoder, *top;
} client;

static void client_open(client *c, bool redirects, bool decode, const tw_agent_options *o)
{
    memset(c, 0, sizeof *c);
    c->r = tt_reactor();
    assert_non_null(c->r);
    tw_agent_options opts;
    if (o)
        opts = *o;
    else
        tw_agent_options_init(&opts);
    if (!o)
        opts.trust_roots = certs->ca;
    assert_int_equal(tw_agent_new(c->r, &opts, &c->base), 0);
    c->top = c->base;
    if (redirects) {
        assert_int_equal(tw_redirect_agent_new(c->top, 0, &c->redirect), 0);
        c->top = c->redirect;
    }
    if (decode) {
        assert_int_equal(tw_content_decoder_agent_new(c->top, NULL, &c->decoder), 0);
        c->top = c->decoder;
    }
}

static bool no_connections(void *arg)
{
    return tw_reactor_connection_count(arg) == 0;
}

static void client_close(client *c)
{
    tw_agent_free(c->decoder);
    tw_agent_free(c->redirect);
    tw_agent_free(c->base);
    assert_true(tt_run_until(c->r, no_connections, c->r, WAIT));
    tt_run_for(c->r, 0.01);
    tw_reactor_free(c->r);
}

typedef struct fetched {
    bool done;
    tw_response *resp;
    tw_body_bytes *body;
    tw_failure *fail;
} fetched;

static tw_result f_resp(tw_result *in, void *arg)
{
    fetched *f = arg;
    f->resp = tw_response_ref(in->value.ptr);
    return tw_chain(tw_read_body(f->resp, 64 << 20));
}

static tw_result f_body(tw_result *in, void *arg)
{
    fetched *f = arg;
    f->body = in->value.ptr;
    in->value = TW_VALUE_NONE;
    f->done = true;
    return TW_RESULT_NONE;
}

static tw_result f_fail(tw_result *in, void *arg)
{
    fetched *f = arg;
    f->fail = in->failure;
    in->failure = NULL;
    f->done = true;
    return TW_RESULT_NONE;
}

static bool is_done(void *arg)
{
    return ((fetched *)arg)->done;
}

static void start_fetch(client *c, fetched *f, const char *method, const char *url,
                        const tw_http_header *h, size_t n, tw_body_producer *body)
{
    memset(f, 0, sizeof *f);
    tw_deferred *d = tw_agent_request(c->top, method, url, h, n, body);
    assert_non_null(d);
    tw_deferred_add_callback(d, f_resp, f);
    tw_deferred_add_callbacks(d, f_body, f_fail, f);
    tw_deferred_unref(d);
}

static void wait_fetch(client *c, fetched *f)
{
    if (!tt_run_until(c->r, is_done, f, WAIT))
        fail_msg("no answer within %.0f s", WAIT);
}

static void fetch(client *c, fetched *f, const char *method, const char *url,
                  const tw_http_header *h, size_t n, tw_body_producer *body)
{
    start_fetch(c, f, method, url, h, n, body);
    wait_fetch(c, f);
}

static void expect_ok(fetched *f, int status)
{
    if (f->fail) {
        char *text = tw_failure_render(f->fail);
        fail_msg("failed: %s", text);
    }
    assert_non_null(f->resp);
    assert_int_equal(tw_response_status(f->resp), status);
}

static void fetched_clear(fetched *f)
{
    tw_response_unref(f->resp);
    free(f->body);
    tw_failure_unref(f->fail);
    memset(f, 0, sizeof *f);
}

static bool header_is(tw_response *r, const char *name, const char *value)
{
    tw_http_slice v;
    return tw_response_header(r, name, &v) && v.len == strlen(value) &&
           memcmp(v.ptr, value, v.len) == 0;
}

static char *url_of(uint16_t port, bool tls, const char *path)
{
    static char buf[8][256];
    static int i;
    char *u = buf[i++ % 8];
    snprintf(u, 256, "%s://127.0.0.1:%u%s", tls ? "https" : "http", port, path);
    return u;
}

/* ================================================================ nginx */

static void nginx_get_and_keep_alive(void **state)
{
    if (!ng.up)
        skip();
    client c;
    client_open(&c, false, false, NULL);
    for (int i = 0; i < 50; i++) {
        fetched f;
        fetch(&c, &f, "GET", url_of(ng.port, false, "/index.html"), NULL, 0, NULL);
        expect_ok(&f, 200);
        assert_int_equal(f.body->len, 26);
        assert_string_equal(f.body->data, "<h1>hello from nginx</h1>\n");
        assert_true(header_is(f.resp, "content-type", "text/html"));
        /* One connection carries them all. */
        assert_int_equal(tw_reactor_connection_count(c.r), 1);
        fetched_clear(&f);
    }
    fetched f;
    fetch(&c, &f, "HEAD", url_of(ng.port, false, "/big.bin"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 0);
    assert_true(header_is(f.resp, "content-length", "1048576"));
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(ng.port, false, "/missing"), NULL, 0, NULL);
    expect_ok(&f, 404);
    fetched_clear(&f);
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    client_close(&c);
}

/* A consumer that pauses after every piece and resumes a moment later. */
typedef struct slow_reader {
    tw_response *r;
    tw_reactor *reactor;
    size_t len, pieces;
    bool bad, paused, ended;
    tw_failure *reason;
    tw_timer timer;
} slow_reader;

static void resume_later(void *arg)
{
    slow_reader *s = arg;
    s->paused = false;
    tw_response_resume_body(s->r);
}

static void slow_data(tw_response *r, const char *data, size_t len, void *arg)
{
    slow_reader *s = arg;
    if (s->paused)
        s->bad = true;
    for (size_t i = 0; i < len; i++)
        if (data[i] != (char)((s->len + i) * 7 + (s->len + i) / 1024))
            s->bad = true;
    s->len += len;
    s->pieces++;
    s->paused = true;
    tw_response_pause_body(r);
    s->timer = tw_call_later(s->reactor, 0.001, resume_later, s);
}

static void slow_end(tw_response *r, const tw_failure *reason, void *arg)
{
    slow_reader *s = arg;
    s->ended = true;
    tw_timer_cancel(s->timer);
    s->reason = tw_failure_ref((tw_failure *)reason);
}

static const tw_response_body_ops slow_ops = { slow_data, slow_end };

static bool slow_ended(void *arg)
{
    return ((slow_reader *)arg)->ended;
}

static tw_result keep_resp(tw_result *in, void *arg)
{
    fetched *f = arg;
    f->resp = tw_response_ref(in->value.ptr);
    f->done = true;
    return TW_RESULT_NONE;
}

static void nginx_big_body_streams_with_pauses(void **state)
{
    if (!ng.up)
        skip();
    client c;
    client_open(&c, false, false, NULL);
    fetched f = { 0 };
    tw_deferred *d =
        tw_agent_request(c.top, "GET", url_of(ng.port, false, "/big.bin"), NULL, 0, NULL);
    tw_deferred_add_callbacks(d, keep_resp, f_fail, &f);
    tw_deferred_unref(d);
    wait_fetch(&c, &f);
    expect_ok(&f, 200);
    slow_reader s = { .r = f.resp, .reactor = c.r };
    assert_int_equal(tw_response_deliver_body(f.resp, &slow_ops, &s), 0);
    assert_true(tt_run_until(c.r, slow_ended, &s, WAIT));
    assert_null(s.reason);
    assert_false(s.bad);
    assert_int_equal(s.len, 1 << 20);
    assert_true(s.pieces > 4);
    fetched_clear(&f);
    /* The connection is reused after all that. */
    fetch(&c, &f, "GET", url_of(ng.port, false, "/index.html"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    fetched_clear(&f);
    client_close(&c);
}

static void nginx_gzip_decoded(void **state)
{
    if (!ng.up)
        skip();
    client c;
    client_open(&c, false, true, NULL);
    fetched f;
    fetch(&c, &f, "GET", url_of(ng.port, false, "/text.txt"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, ng.text_len);
    assert_memory_equal(f.body->data, ng.text, ng.text_len);
    assert_false(tw_response_header(f.resp, "content-encoding", NULL));
    fetched_clear(&f);
    client_close(&c);
    /* Without the decoder agent nginx's gzip arrives as is. */
    client_open(&c, false, false, NULL);
    tw_http_header ae[] = { { { "Accept-Encoding", 15 }, { "gzip", 4 } } };
    fetch(&c, &f, "GET", url_of(ng.port, false, "/text.txt"), ae, 1, NULL);
    expect_ok(&f, 200);
    assert_true(header_is(f.resp, "content-encoding", "gzip"));
    assert_true(f.body->len < ng.text_len / 2);
    assert_int_equal((unsigned char)f.body->data[0], 0x1f);
    fetched_clear(&f);
    client_close(&c);
}

static void nginx_redirects(void **state)
{
    if (!ng.up)
        skip();
    client c;
    client_open(&c, true, true, NULL);
    fetched f;
    fetch(&c, &f, "GET", url_of(ng.port, false, "/redirect"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, ng.text_len);
    assert_string_equal(tw_response_url(f.resp), url_of(ng.port, false, "/text.txt"));
    assert_int_equal(tw_response_status(tw_response_previous(f.resp)), 302);
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(ng.port, false, "/redirect-abs"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "<h1>hello from nginx</h1>\n");
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(ng.port, false, "/loop"), NULL, 0, NULL);
    assert_non_null(f.fail);
    assert_int_equal(tw_failure_code(f.fail), TW_ELIMIT);
    assert_non_null(strstr(tw_failure_message(f.fail), "too many redirects"));
    fetched_clear(&f);
    /* Redirect bodies were read off: one connection did it all. */
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    client_close(&c);
}

static void nginx_request_bodies(void **state)
{
    if (!ng.up || access(ECHO_MODULE, R_OK) != 0)
        skip();
    client c;
    client_open(&c, false, false, NULL);
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_bytes("posted bytes", 12, &b), 0);
    fetched f;
    fetch(&c, &f, "POST", url_of(ng.port, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "posted bytes");
    fetched_clear(&f);
    /* A chunked upload from a pipe, large enough to fill buffers. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    char *data = malloc(60000);
    for (int i = 0; i < 60000; i++)
        data[i] = (char)('A' + i % 23);
    assert_int_equal(fcntl(p[1], F_SETPIPE_SZ, 65536) >= 0, true);
    assert_int_equal(write(p[1], data, 60000), 60000);
    close(p[1]);
    assert_int_equal(tw_body_producer_new_fd(p[0], &b), 0);
    fetch(&c, &f, "PUT", url_of(ng.port, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 60000);
    assert_memory_equal(f.body->data, data, 60000);
    free(data);
    fetched_clear(&f);
    client_close(&c);
}

static void nginx_concurrency_under_the_host_limit(void **state)
{
    if (!ng.up)
        skip();
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.max_per_host = 4;
    o.max_idle_per_host = 4;
    client c;
    client_open(&c, false, false, &o);
    fetched f[40];
    for (int i = 0; i < 40; i++)
        start_fetch(&c, &f[i], "GET", url_of(ng.port, false, i % 2 ? "/index.html" : "/text.txt"),
                    NULL, 0, NULL);
    for (int i = 0; i < 40; i++) {
        wait_fetch(&c, &f[i]);
        assert_true(tw_reactor_connection_count(c.r) <= 4);
    }
    for (int i = 0; i < 40; i++) {
        expect_ok(&f[i], 200);
        assert_int_equal(f[i].body->len, i % 2 ? 26 : ng.text_len);
        fetched_clear(&f[i]);
    }
    assert_int_equal(tw_reactor_connection_count(c.r), 4);
    tw_agent_close_idle(c.top);
    assert_true(tt_run_until(c.r, no_connections, c.r, WAIT));
    client_close(&c);
}

static void nginx_https_verified(void **state)
{
    if (!ng.up)
        skip();
    client c;
    client_open(&c, true, true, NULL);
    for (int i = 0; i < 3; i++) {
        fetched f;
        fetch(&c, &f, "GET", url_of(ng.tls_port, true, "/text.txt"), NULL, 0, NULL);
        expect_ok(&f, 200);
        assert_int_equal(f.body->len, ng.text_len);
        assert_memory_equal(f.body->data, ng.text, ng.text_len);
        fetched_clear(&f);
    }
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    client_close(&c);
    /* The system's trust store does not know the test CA: refused. */
    tw_agent_options o;
    tw_agent_options_init(&o);
    client_open(&c, false, false, &o);
    fetched f;
    fetch(&c, &f, "GET", url_of(ng.tls_port, true, "/"), NULL, 0, NULL);
    assert_non_null(f.fail);
    assert_int_equal(tw_tls_failure_reason(f.fail), TW_TLS_ERR_UNKNOWN_CA);
    assert_non_null(strstr(tw_failure_message(f.fail), "cannot connect to https://127.0.0.1"));
    fetched_clear(&f);
    client_close(&c);
}

/* ================================================================ twisted */

static void twisted_basics(void **state)
{
    if (!tx.up)
        skip();
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.trust_roots = certs->ca;
    o.user_agent = "twirl-test";
    client c;
    client_open(&c, false, false, &o);
    fetched f;
    fetch(&c, &f, "GET", url_of(tx.port, false, "/hello"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "hello from twisted\n");
    fetched_clear(&f);
    fetch(&c, &f, "HEAD", url_of(tx.port, false, "/hello"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 0);
    fetched_clear(&f);
    tw_http_header h[] = { { { "X-Custom", 8 }, { "value 1", 7 } } };
    fetch(&c, &f, "GET", url_of(tx.port, false, "/headers"), h, 1, NULL);
    expect_ok(&f, 200);
    char want[256];
    snprintf(want, sizeof want, "host: 127.0.0.1:%u\nuser-agent: twirl-test\nx-custom: value 1\n",
             tx.port);
    assert_string_equal(f.body->data, want);
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(tx.port, false, "/chunked"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_true(header_is(f.resp, "transfer-encoding", "chunked"));
    assert_string_equal(f.body->data, "piece 0\npiece 1\npiece 2\npiece 3\npiece 4\npiece 5\n"
                                      "piece 6\npiece 7\npiece 8\npiece 9\n");
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(tx.port, false, "/big"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 1 << 20);
    for (size_t i = 0; i < f.body->len; i++)
        assert_int_equal((unsigned char)f.body->data[i], i % 256);
    fetched_clear(&f);
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    fetch(&c, &f, "GET", url_of(tx.port, false, "/close"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "closing after this");
    fetched_clear(&f);
    assert_true(tt_run_until(c.r, no_connections, c.r, WAIT));
    client_close(&c);
}

static void twisted_bodies_redirects_gzip(void **state)
{
    if (!tx.up)
        skip();
    client c;
    client_open(&c, true, true, NULL);
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_bytes("x=1&y=2", 7, &b), 0);
    fetched f;
    fetch(&c, &f, "POST", url_of(tx.port, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "x=1&y=2");
    assert_true(header_is(f.resp, "x-cl", "7"));
    assert_true(header_is(f.resp, "x-method", "POST"));
    fetched_clear(&f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "streamed through a pipe", 23), 23);
    close(p[1]);
    assert_int_equal(tw_body_producer_new_fd(p[0], &b), 0);
    fetch(&c, &f, "PUT", url_of(tx.port, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "streamed through a pipe");
    assert_true(header_is(f.resp, "x-te", "chunked"));
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(tx.port, false, "/redirect"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "hello from twisted\n");
    assert_int_equal(tw_response_status(tw_response_previous(f.resp)), 302);
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(tx.port, false, "/gzip"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 18 * 200);
    assert_memory_equal(f.body->data, "twisted gzip body twisted gzip body ", 36);
    assert_false(tw_response_header(f.resp, "content-encoding", NULL));
    fetched_clear(&f);
    client_close(&c);
}

static void twisted_https_and_timeouts(void **state)
{
    if (!tx.up)
        skip();
    tw_agent_options o;
    tw_agent_options_init(&o);
    o.trust_roots = certs->ca;
    o.response_timeout = 0.3;
    client c;
    client_open(&c, false, false, &o);
    fetched f;
    fetch(&c, &f, "GET", url_of(tx.tls_port, true, "/hello"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "hello from twisted\n");
    fetched_clear(&f);
    /* "localhost" is in the certificate too. */
    char u[128];
    snprintf(u, sizeof u, "https://localhost:%u/hello", tx.tls_port);
    fetch(&c, &f, "GET", u, NULL, 0, NULL);
    expect_ok(&f, 200);
    fetched_clear(&f);
    double t0 = tt_now();
    fetch(&c, &f, "GET", url_of(tx.port, false, "/slow"), NULL, 0, NULL);
    assert_non_null(f.fail);
    assert_int_equal(tw_failure_code(f.fail), TW_ETIMEDOUT);
    assert_true(tt_now() - t0 < 5);
    fetched_clear(&f);
    client_close(&c);
    /* Connecting to a port nobody listens on. */
    client_open(&c, false, false, NULL);
    fetch(&c, &f, "GET", url_of(tt_dead_port(), false, "/"), NULL, 0, NULL);
    assert_non_null(f.fail);
    assert_int_equal(tw_failure_code(f.fail), -ECONNREFUSED);
    fetched_clear(&f);
    client_close(&c);
}

/* ================================================================ twirl's server */

static void twirl_server_roundtrip(void **state)
{
    char *dir = tt_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/page.txt", dir);
    write_file(path, "a static page\n", 14);
    tt_web w;
    if (tt_web_start(&w, dir, NULL) < 0) {
        tt_rmdir(dir);
        skip();
    }
    client c;
    client_open(&c, true, true, NULL);
    for (int i = 0; i < 20; i++) {
        fetched f;
        fetch(&c, &f, "GET", url_of(w.port_num, false, "/"), NULL, 0, NULL);
        expect_ok(&f, 200);
        assert_string_equal(f.body->data, "Hello, World!");
        fetched_clear(&f);
    }
    assert_int_equal(tw_reactor_connection_count(c.r), 1);
    fetched f;
    fetch(&c, &f, "GET", url_of(w.port_num, false, "/static/page.txt"), NULL, 0, NULL);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "a static page\n");
    fetched_clear(&f);
    fetch(&c, &f, "GET", url_of(w.port_num, false, "/static/nope"), NULL, 0, NULL);
    expect_ok(&f, 404);
    fetched_clear(&f);
    /* Bodies both ways: fixed length, then chunked from a pipe, streamed
     * back chunked by the server. */
    tw_body_producer *b;
    assert_int_equal(tw_body_producer_new_bytes("echo me", 7, &b), 0);
    fetch(&c, &f, "POST", url_of(w.port_num, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_string_equal(f.body->data, "echo me");
    fetched_clear(&f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    char *data = malloc(50000);
    for (int i = 0; i < 50000; i++)
        data[i] = (char)('a' + i % 26);
    assert_int_equal(fcntl(p[1], F_SETPIPE_SZ, 65536) >= 0, true);
    assert_int_equal(write(p[1], data, 50000), 50000);
    close(p[1]);
    assert_int_equal(tw_body_producer_new_fd(p[0], &b), 0);
    fetch(&c, &f, "POST", url_of(w.port_num, false, "/echo"), NULL, 0, b);
    expect_ok(&f, 200);
    assert_int_equal(f.body->len, 50000);
    assert_memory_equal(f.body->data, data, 50000);
    free(data);
    fetched_clear(&f);
    tw_http_header h[] = { { { "X-From", 6 }, { "twirl", 5 } } };
    fetch(&c, &f, "GET", url_of(w.port_num, false, "/headers"), h, 1, NULL);
    expect_ok(&f, 200);
    /* Names as the client sent them. */
    char want[128];
    snprintf(want, sizeof want,
             "Host: 127.0.0.1:%u\nX-From: twirl\nAccept-Encoding: gzip, deflate\n", w.port_num);
    assert_string_equal(f.body->data, want);
    fetched_clear(&f);
    client_close(&c);
    tt_web_stop(&w);
    tt_rmdir(dir);
}

/* ================================================================ http_get */

static void run_http_get(const char *const args[], int want_status, const char *want_in_output)
{
    tt_child ch;
    memset(&ch, 0, sizeof ch);
    int rc = tt_child_start_bin(&ch, "example_http_get", args);
    if (rc == -ENOENT)
        skip();
    assert_int_equal(rc, 0);
    const char *out = tt_child_rest(&ch, WAIT);
    char *copy = strdup(out);
    int status = tt_child_wait(&ch, WAIT);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != want_status || !strstr(copy, want_in_output))
        fail_msg("http_get exited %d, output:\n%s", WEXITSTATUS(status), copy);
    free(copy);
}

/* This machine's name when the system resolves it to 127.0.0.1 (it usually
 * does, from /etc/hosts), else NULL: a host name that is not "localhost", so
 * the example's connects go through the endpoints' name lookup. */
static const char *loopback_host_name(void)
{
    static char name[256];
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
    if (gethostname(name, sizeof name - 1) < 0 || strcmp(name, "localhost") == 0 ||
        getaddrinfo(name, NULL, &hints, &ai) != 0)
        return NULL;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
    bool loopback = sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
    freeaddrinfo(ai);
    return loopback ? name : NULL;
}

static void http_get_example(void **state)
{
    if (!ng.up && !tx.up)
        skip();
    if (tx.up) {
        run_http_get((const char *const[]){ url_of(tx.port, false, "/hello"), NULL }, 0,
                     "HTTP/1.1 200 OK\n");
        const char *name = loopback_host_name();
        if (name) {
            char url[400];
            snprintf(url, sizeof url, "http://%s:%u/hello", name, tx.port);
            run_http_get((const char *const[]){ url, NULL }, 0, "hello from twisted\n");
        }
        run_http_get((const char *const[]){ "-L", url_of(tx.port, false, "/redirect"), NULL }, 0,
                     "\n\nhello from twisted\n");
        run_http_get((const char *const[]){ "-d", "a=b", url_of(tx.port, false, "/echo"), NULL }, 0,
                     "X-Method: POST\n");
        run_http_get((const char *const[]){ "--cacert", certs->ca,
                                            url_of(tx.tls_port, true, "/hello"), NULL },
                     0, "hello from twisted\n");
        run_http_get((const char *const[]){ url_of(tx.tls_port, true, "/hello"), NULL }, 1, "");
    }
    if (ng.up) {
        run_http_get(
            (const char *const[]){ "--compressed", url_of(ng.port, false, "/text.txt"), NULL }, 0,
            "line 0 of a compressible text\n");
        run_http_get((const char *const[]){ "-I", url_of(ng.port, false, "/big.bin"), NULL }, 0,
                     "Content-Length: 1048576\n");
    }
    run_http_get((const char *const[]){ url_of(tt_dead_port(), false, "/"), NULL }, 1, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nginx_get_and_keep_alive),
        cmocka_unit_test(nginx_big_body_streams_with_pauses),
        cmocka_unit_test(nginx_gzip_decoded),
        cmocka_unit_test(nginx_redirects),
        cmocka_unit_test(nginx_request_bodies),
        cmocka_unit_test(nginx_concurrency_under_the_host_limit),
        cmocka_unit_test(nginx_https_verified),
        cmocka_unit_test(twisted_basics),
        cmocka_unit_test(twisted_bodies_redirects_gzip),
        cmocka_unit_test(twisted_https_and_timeouts),
        cmocka_unit_test(twirl_server_roundtrip),
        cmocka_unit_test(http_get_example),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
