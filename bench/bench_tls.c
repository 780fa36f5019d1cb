/* bench_tls — TLS: the cost of twirl's layer, and the programs the network
 * comparison (bench/net/tls.sh) runs.
 *
 *   bench_tls [--quick]
 *       In one process, no sockets: full handshakes per second between a
 *       twirl server and a twirl client over in-memory transports, against
 *       the same handshakes done with bare OpenSSL objects and BIO pairs —
 *       the overhead of the layer (ECDSA P-256 and RSA-2048). Markdown.
 *   bench_tls gencerts DIR
 *       Writes ecdsa.pem/ecdsa-key.pem and rsa.pem/rsa-key.pem (self-signed,
 *       CN=localhost) into DIR.
 *   bench_tls server PORT CERT KEY
 *       A twirl HTTPS-ish server on 127.0.0.1:PORT until SIGTERM: any request
 *       for "/bulk/N" gets N bytes (streamed through a producer), any other
 *       request a 2-byte answer; the connection then closes.
 *   bench_tls hsload PORT SECONDS THREADS
 *       Connections per second, each a full TLS 1.3 handshake (no resumption,
 *       x25519, TLS_AES_128_GCM_SHA256, no certificate check) and one small
 *       request "GET /small" read to the end. Prints "N handshakes in S s".
 *   bench_tls bulkload PORT PATH
 *       One connection, "GET PATH", reads to the end; prints bytes and
 *       seconds.
 * The load modes use bare OpenSSL with blocking sockets (one connection per
 * thread at a time), so every server is measured with the same client. */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "bench_clock.h"
#include "twirl/tcp.h"
#include "twirl/testing.h"
#include "twirl/tls.h"

/* This thread's CPU time: rates per CPU second do not move with whatever
 * else the machine runs. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "bench_tls: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* ------------------------------------------------------------ certificates */

static void write_cert(const char *dir, const char *name, EVP_PKEY *k)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 30);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    if (!X509_sign(x, k, EVP_sha256()))
        die("X509_sign");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || !PEM_write_X509(f, x))
        die(path);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s-key.pem", dir, name);
    f = fopen(path, "w");
    if (!f || !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL))
        die(path);
    fclose(f);
    X509_free(x);
}

static void gencerts(const char *dir)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
    if (!ec || !rsa)
        die("key generation");
    write_cert(dir, "ecdsa", ec);
    write_cert(dir, "rsa", rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* ------------------------------------------------------- in-memory layer */

typedef struct hs_count {
    int made;
} hs_count;

static void count_made(tw_protocol *p)
{
    ((hs_count *)p->factory->user_data)->made++;
}

static const tw_protocol_ops counted_ops = { .connection_made = count_made };

/* Full handshakes per second through twirl's layer over the test pump. */
static double twirl_memory_handshakes(tw_tls_context *sctx, tw_tls_context *cctx, double secs)
{
    hs_count sc = { 0 }, cc = { 0 };
    tw_factory sin = TW_FACTORY_INIT(&counted_ops, &sc), cin = TW_FACTORY_INIT(&counted_ops, &cc);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &sin);
    tw_factory *cf = tw_tls_factory_new(cctx, NULL, &cin);
    tw_test_pump_options po = { .server = sf, .client = cf };
    int n = 0;
    double t0 = cpu_s(), t;
    do {
        tw_test_pump *pump = tw_test_pump_new(&po);
        if (!pump)
            die("pump");
        tw_test_pump_flush(pump);
        tw_test_pump_free(pump);
        n++;
    } while ((t = cpu_s() - t0) < secs);
    if (sc.made != n || cc.made != n)
        die("a handshake did not finish");
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    return n / t;
}

/* The same with bare OpenSSL objects and a BIO pair each way. */
static double openssl_memory_handshakes(SSL_CTX *sctx, SSL_CTX *cctx, double secs)
{
    int n = 0;
    double t0 = cpu_s(), t;
    char buf[16384];
    do {
        SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
        BIO *s_int, *s_net, *c_int, *c_net;
        BIO_new_bio_pair(&s_int, 0, &s_net, 0);
        BIO_new_bio_pair(&c_int, 0, &c_net, 0);
        SSL_set_bio(s, s_int, s_int);
        SSL_set_bio(c, c_int, c_int);
        SSL_set_accept_state(s);
        SSL_set_connect_state(c);
        int done = 0;
        for (int round = 0; round < 20 && done != 3; round++) {
            if (SSL_do_handshake(c) == 1)
                done |= 1;
            int k;
            while ((k = BIO_read(c_net, buf, sizeof buf)) > 0)
                BIO_write(s_net, buf, k);
            if (SSL_do_handshake(s) == 1)
                done |= 2;
            while ((k = BIO_read(s_net, buf, sizeof buf)) > 0)
                BIO_write(c_net, buf, k);
        }
        if (done != 3)
            die("bare handshake");
        /* The client reads what follows the handshake (the session
         * tickets), as the twirl client does. */
        SSL_read(c, buf, sizeof buf);
        SSL_free(s);
        SSL_free(c);
        BIO_free(s_net);
        BIO_free(c_net);
        n++;
    } while ((t = cpu_s() - t0) < secs);
    return n / t;
}

/* Heap bytes per idle TLS connection: n connections over loopback (both
 * ends here), handshakes done, nothing buffered. */
static int idle_made;

static void idle_count(tw_protocol *p)
{
    idle_made++;
}

static const tw_protocol_ops idle_ops = { .connection_made = idle_count };

static double idle_bytes_per_connection(const char *cert, const char *key, int n)
{
    tw_reactor_options ro = { .signals = TW_SIGNALS_OFF };
    tw_reactor *r;
    if (tw_reactor_new(&ro, &r) < 0)
        die("reactor");
    tw_tls_server_options so = { .cert = { cert, key, NULL } };
    tw_tls_client_options co = { .insecure_no_verify = true, .no_session_cache = true };
    tw_tls_context *sctx, *cctx;
    if (tw_tls_server_context_new(&so, &sctx) < 0 || tw_tls_client_context_new(&co, &cctx) < 0)
        die("contexts");
    tw_factory inner = TW_FACTORY_INIT(&idle_ops, NULL);
    tw_factory *sf = tw_tls_factory_new(sctx, NULL, &inner);
    tw_factory *cf = tw_tls_factory_new(cctx, NULL, &inner);
    tw_listen_options lo = { .backlog = 4096 };
    tw_port *port;
    if (tw_listen_tcp(r, "127.0.0.1", 0, &lo, sf, &port) < 0)
        die("listen");
    uint16_t pn = tw_address_port(tw_port_address(port));
    /* One connection first, so one-time allocations (buffers, caches) are
     * not counted. */
    idle_made = 0;
    tw_connect_tcp(r, "127.0.0.1", pn, NULL, cf, NULL);
    while (idle_made < 2)
        tw_reactor_iterate(r, 0.01);
    size_t before = mallinfo2().uordblks;
    idle_made = 0;
    for (int i = 0; i < n; i++) {
        tw_connect_tcp(r, "127.0.0.1", pn, NULL, cf, NULL);
        if (i % 64 == 63)
            while (idle_made < 2 * (i + 1) - 64)
                tw_reactor_iterate(r, 0.01);
    }
    double t0 = now_s();
    while (idle_made < 2 * n && now_s() - t0 < 30)
        tw_reactor_iterate(r, 0.01);
    for (int i = 0; i < 20; i++)
        tw_reactor_iterate(r, 0.001); /* tickets and the like read */
    size_t after = mallinfo2().uordblks;
    tw_port_stop_listening(port);
    tw_reactor_free(r);
    tw_tls_factory_free(sf);
    tw_tls_factory_free(cf);
    tw_tls_context_unref(sctx);
    tw_tls_context_unref(cctx);
    return (double)(after - before) / (2.0 * n);
}

static void micro(bool quick)
{
    char dir[] = "/tmp/twirl-bench-tls-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    gencerts(dir);
    double secs = quick ? 0.6 : 3.0;
    tw_log_set_level(TW_LOG_ERROR); /* the insecure client context warns */
    printf("Full TLS 1.3 handshakes per CPU second, both ends in one thread, no sockets "
           "(twirl's layer over in-memory transports vs bare OpenSSL with BIO pairs; best "
           "of 3 alternating rounds).\n\n");
    printf("| certificate | twirl hs/CPU-s | bare OpenSSL hs/CPU-s | twirl / OpenSSL |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    const char *kinds[] = { "ecdsa", "rsa" };
    for (int i = 0; i < 2; i++) {
        char cert[1100], key[1100];
        snprintf(cert, sizeof cert, "%s/%s.pem", dir, kinds[i]);
        snprintf(key, sizeof key, "%s/%s-key.pem", dir, kinds[i]);
        tw_tls_server_options so = { .cert = { cert, key, NULL } };
        tw_tls_client_options co = { .insecure_no_verify = true, .no_session_cache = true };
        tw_tls_context *sctx = NULL, *cctx = NULL;
        if (tw_tls_server_context_new(&so, &sctx) < 0 || tw_tls_client_context_new(&co, &cctx) < 0)
            die("contexts");
        /* Alternating rounds, best of each: bare OpenSSL uses the very
         * same SSL_CTXs. */
        double tw = 0, os = 0;
        for (int round = 0; round < 3; round++) {
            double a = twirl_memory_handshakes(sctx, cctx, secs / 3);
            double b = openssl_memory_handshakes(tw_tls_context_ssl_ctx(sctx),
                                                 tw_tls_context_ssl_ctx(cctx), secs / 3);
            tw = a > tw ? a : tw;
            os = b > os ? b : os;
        }
        printf("| %s | %.0f | %.0f | %.2f |\n", i == 0 ? "ECDSA P-256" : "RSA-2048", tw, os,
               tw / os);
        tw_tls_context_unref(sctx);
        tw_tls_context_unref(cctx);
    }
    printf("\n(Each handshake costs both ends here; the network comparison is "
           "bench/net/tls.sh.)\n\n");
    char cert[1100], key[1100];
    snprintf(cert, sizeof cert, "%s/ecdsa.pem", dir);
    snprintf(key, sizeof key, "%s/ecdsa-key.pem", dir);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int n = quick ? 200 : 1000;
    if (rl.rlim_cur < (rlim_t)(2 * n + 64))
        n = (int)(rl.rlim_cur - 64) / 2;
    double per = idle_bytes_per_connection(cert, key, n);
    printf("Idle TLS connection (handshake done, TCP underneath, protocol included): %.1f KiB "
           "of heap each (%d connections, both ends counted).\n",
           per / 1024, 2 * n);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* ------------------------------------------------------------ the server */

typedef struct conn {
    tw_protocol base;
    tw_producer prod;
    char head[1024];
    size_t head_len;
    size_t left; /* body bytes still to write */
    bool paused, answered;
} conn;

static char block[65536];

static void fill(conn *c)
{
    while (!c->paused && c->left > 0 && c->base.transport) {
        size_t n = c->left < sizeof block ? c->left : sizeof block;
        tw_transport_write(c->base.transport, block, n);
        c->left -= n;
    }
    if (c->left == 0 && c->base.transport) {
        tw_transport_unregister_producer(c->base.transport);
        tw_transport_lose_connection(c->base.transport);
    }
}

static void p_pause(tw_producer *p)
{
    ((conn *)((char *)p - offsetof(conn, prod)))->paused = true;
}

static void p_resume(tw_producer *p)
{
    conn *c = (conn *)((char *)p - offsetof(conn, prod));
    c->paused = false;
    fill(c);
}

static void p_stop(tw_producer *p)
{
    ((conn *)((char *)p - offsetof(conn, prod)))->left = 0;
}

static const tw_producer_ops prod_ops = { p_pause, p_resume, p_stop };

static void srv_data(tw_protocol *p, const void *data, size_t len)
{
    conn *c = (conn *)p;
    if (c->answered)
        return;
    size_t n = len < sizeof c->head - 1 - c->head_len ? len : sizeof c->head - 1 - c->head_len;
    memcpy(c->head + c->head_len, data, n);
    c->head_len += n;
    c->head[c->head_len] = '\0';
    if (!strstr(c->head, "\r\n\r\n") && c->head_len < sizeof c->head - 1)
        return;
    c->answered = true;
    const char *bulk = strstr(c->head, "GET /bulk/");
    if (!bulk) {
        tw_transport_write_str(p->transport, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        tw_transport_lose_connection(p->transport);
        return;
    }
    c->left = strtoull(bulk + 10, NULL, 10);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n", c->left);
    tw_transport_write_str(p->transport, hdr);
    c->prod.ops = &prod_ops;
    tw_transport_register_producer(p->transport, &c->prod, true);
    fill(c);
}

static const tw_protocol_ops server_ops = { .size = sizeof(conn), .data_received = srv_data };

static int serve(int port, const char *cert, const char *key)
{
    memset(block, 'x', sizeof block);
    tw_reactor_options ro = { .signals = TW_SIGNALS_ON };
    tw_reactor *r;
    if (tw_reactor_new(&ro, &r) < 0)
        die("reactor");
    tw_tls_server_options so = { .cert = { cert, key, NULL } };
    tw_tls_context *ctx;
    if (tw_tls_server_context_new(&so, &ctx) < 0)
        die("context");
    tw_factory inner = TW_FACTORY_INIT(&server_ops, NULL);
    tw_factory *f = tw_tls_factory_new(ctx, NULL, &inner);
    tw_listen_options lo = { .backlog = 4096 };
    tw_port *p;
    if (tw_listen_tcp(r, "127.0.0.1", (uint16_t)port, &lo, f, &p) < 0)
        die("listen");
    printf("listening\n");
    fflush(stdout);
    tw_reactor_run(r);
    tw_port_stop_listening(p);
    tw_reactor_free(r);
    tw_tls_factory_free(f);
    tw_tls_context_unref(ctx);
    return 0;
}

/* ------------------------------------------------------------ the load */

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set1_groups_list(c, "X25519");
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    return c;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(0x7f000001);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request on a fresh connection; returns body+header bytes read, or
 * -1 on failure. */
static long long one_exchange(SSL_CTX *ctx, int port, const char *path, bool count_time,
                              double *secs)
{
    int fd = dial(port);
    if (fd < 0)
        return -1;
    SSL *s = SSL_new(ctx);
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, "localhost");
    long long total = -1;
    if (SSL_connect(s) == 1) {
        char req[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
        double t0 = now_s();
        if (SSL_write(s, req, (int)strlen(req)) > 0) {
            static __thread char buf[1 << 16];
            total = 0;
            int n;
            while ((n = SSL_read(s, buf, sizeof buf)) > 0)
                total += n;
        }
        if (count_time)
            *secs = now_s() - t0;
        SSL_shutdown(s);
    }
    SSL_free(s);
    close(fd);
    ERR_clear_error();
    return total;
}

typedef struct load {
    SSL_CTX *ctx;
    int port;
    double until;
    atomic_long done, failed;
} load;

static void *hs_thread(void *arg)
{
    load *l = arg;
    while (now_s() < l->until) {
        if (one_exchange(l->ctx, l->port, "/small", false, NULL) > 0)
            atomic_fetch_add(&l->done, 1);
        else
            atomic_fetch_add(&l->failed, 1);
    }
    return NULL;
}

static int hsload(int port, double secs, int threads)
{
    signal(SIGPIPE, SIG_IGN);
    load l = { .ctx = client_ctx(), .port = port };
    pthread_t t[256];
    if (threads > 256)
        threads = 256;
    double t0 = now_s();
    l.until = t0 + secs;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, hs_thread, &l);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double took = now_s() - t0;
    printf("%ld handshakes in %.3f s (%ld failed)\n", (long)l.done, took, (long)l.failed);
    SSL_CTX_free(l.ctx);
    return 0;
}

static int bulkload(int port, const char *path)
{
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = client_ctx();
    double secs = 0;
    long long n = one_exchange(ctx, port, path, true, &secs);
    printf("%lld bytes in %.3f s\n", n, secs);
    SSL_CTX_free(ctx);
    return n > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "gencerts") == 0) {
        gencerts(argv[2]);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "server") == 0)
        return serve(atoi(argv[2]), argv[3], argv[4]);
    if (argc >= 5 && strcmp(argv[1], "hsload") == 0)
        return hsload(atoi(argv[2]), atof(argv[3]), atoi(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "bulkload") == 0)
        return bulkload(atoi(argv[2]), argv[3]);
    if (argc >= 2 && strcmp(argv[1], "--quick") != 0) {
        fprintf(stderr, "usage: bench_tls [--quick] | gencerts DIR | server PORT CERT KEY |"
                        " hsload PORT SECONDS THREADS | bulkload PORT PATH\n");
        return 2;
    }
    micro(argc >= 2);
    return 0;
}
