/* fuzz_tls_server — the TLS layer, server side, fed hostile records.
 *
 * Input: one header byte, then the bytes "from the client".
 *   h & 1: feed in chunks (sizes from the input's own bytes) instead of
 *          whole, so records split at arbitrary places;
 *   h & 2: a context that requires client certificates;
 *   h & 4: a context with ALPN and a second (SNI) certificate;
 *   h & 8: the protocol (if a handshake ever succeeded) pauses its
 *          transport after each delivery.
 * The wrapper runs over a string transport on a fake-clock reactor; at the
 * end the connection is ended and freed. Nothing may crash, leak or make a
 * protocol callback out of order; the test doubles count misuse. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "twirl/testing.h"
#include "twirl/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    tw_protocol base;
    size_t got;
    int made, lost;
} fz;

static int pause_after_first;

static void fz_made(tw_protocol *p)
{
    ((fz *)p)->made++;
    tw_transport_write_str(p->transport, "hello from the server");
}

static void fz_data(tw_protocol *p, const void *d, size_t n)
{
    fz *f = (fz *)p;
    if (f->lost || !f->made)
        abort(); /* out of order */
    f->got += n;
    tw_transport_write(p->transport, d, n < 64 ? n : 64);
    if (pause_after_first)
        tw_transport_pause_producing(p->transport);
}

static void fz_lost(tw_protocol *p, const tw_failure *reason)
{
    fz *f = (fz *)p;
    if (f->lost++)
        abort();
}

static const tw_protocol_ops fz_ops = {
    .size = sizeof(fz),
    .connection_made = fz_made,
    .data_received = fz_data,
    .connection_lost = fz_lost,
};

/* A self-signed ECDSA certificate for "localhost", written to a temporary
 * file pair (the context API reads PEM files). */
static int make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, k, EVP_sha256());
    FILE *c = fopen(cert_path, "w"), *kf = fopen(key_path, "w");
    int ok = c && kf && PEM_write_X509(c, x) && PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL,
                                                                     NULL);
    if (c)
        fclose(c);
    if (kf)
        fclose(kf);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static tw_reactor *reactor;
static tw_tls_context *ctx[3];
static tw_factory inner = TW_FACTORY_INIT(&fz_ops, NULL);
static tw_factory *wrap[3];

static void init(void)
{
    char dir[] = "/tmp/twirl-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    if (make_cert(cert, key) < 0)
        abort();
    tw_log_set_level(TW_LOG_ERROR); /* refused handshakes are logged at info */
    tw_tls_server_options plain = {.cert = {cert, key, NULL}, .handshake_timeout = -1};
    tw_tls_server_options certs = plain;
    certs.ca_file = cert;
    tw_tls_certificate extra = {cert, key, NULL};
    tw_tls_server_options alpn = plain;
    alpn.alpn = "h2,http/1.1";
    alpn.sni = &extra;
    alpn.sni_count = 1;
    if (tw_tls_server_context_new(&plain, &ctx[0]) < 0 ||
        tw_tls_server_context_new(&certs, &ctx[1]) < 0 ||
        tw_tls_server_context_new(&alpn, &ctx[2]) < 0)
        abort();
    for (int i = 0; i < 3; i++)
        wrap[i] = tw_tls_factory_new(ctx[i], NULL, &inner);
    remove(cert);
    remove(key);
    remove(dir);
    reactor = tw_test_clock_new();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reactor)
        init();
    if (size < 1)
        return 0;
    uint8_t h = data[0];
    data++;
    size--;
    pause_after_first = (h & 8) != 0;
    int which = (h & 2) ? 1 : (h & 4) ? 2 : 0;
    tw_test_conn_options o = {.factory = wrap[which], .reactor = reactor};
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    if (!c)
        return 0;
    if (h & 1) {
        size_t at = 0, k = 0;
        while (at < size && !tw_test_conn_disconnecting(c)) {
            size_t n = 1 + (data[k++ % size] % 97);
            if (n > size - at)
                n = size - at;
            tw_test_conn_feed(c, data + at, n);
            at += n;
        }
    } else {
        tw_test_conn_feed(c, data, size);
    }
    tw_reactor_iterate(reactor, 0); /* tasks: resumed reading and the like */
    tw_test_conn_free(c);
    tw_reactor_iterate(reactor, 0);
    return 0;
}
