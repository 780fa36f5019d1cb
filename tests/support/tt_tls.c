/* tt_tls.c — test certificates made with OpenSSL's C API. */
#include "tt_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "tt.h"

static void die(const char *what)
{
    fprintf(stderr, "tt_tls: %s failed\n", what);
    abort();
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!e || !X509_add_ext(x, e, -1))
        die("X509_add_ext");
    X509_EXTENSION_free(e);
}

typedef struct spec {
    const char *cn;
    const char *san; /* NULL: none */
    bool ca;
    bool client;
    long not_before, not_after; /* seconds from now */
} spec;

static X509 *make_cert(EVP_PKEY *key, const spec *s, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    if (!x)
        die("X509_new");
    X509_set_version(x, 2);
    unsigned char serial[8];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), s->not_before);
    X509_gmtime_adj(X509_getm_notAfter(x), s->not_after);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"twirl tests", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)s->cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    add_ext(x, issuer, NID_subject_key_identifier, "hash");
    if (s->ca) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        add_ext(x, issuer, NID_ext_key_usage, s->client ? "clientAuth" : "serverAuth");
        add_ext(x, issuer, NID_authority_key_identifier, "keyid");
    }
    if (s->san)
        add_ext(x, issuer, NID_subject_alt_name, s->san);
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        die("X509_sign");
    return x;
}

static void write_pem(const char *path, X509 *cert, X509 *chain, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die(path);
    if (cert && !PEM_write_X509(f, cert))
        die("PEM_write_X509");
    if (chain && !PEM_write_X509(f, chain))
        die("PEM_write_X509");
    if (key && !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
        die("PEM_write_PrivateKey");
    fclose(f);
}

static void path(char *out, const char *dir, const char *name)
{
    snprintf(out, TT_PATH, "%s/%s", dir, name);
}

static EVP_PKEY *ec_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        die("EVP_EC_gen");
    return k;
}

static void leaf(const char *cert_path, const char *key_path, EVP_PKEY *key, const spec *s,
                 X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = make_cert(key, s, issuer, issuer_key);
    write_pem(cert_path, x, NULL, NULL);
    write_pem(key_path, NULL, NULL, key);
    X509_free(x);
}

tt_certs *tt_certs_make(void)
{
    tt_certs *c = calloc(1, sizeof *c);
    if (!c)
        die("calloc");
    c->dir = tt_tmpdir();
    const long day = 86400;
    const char *local_san = "DNS:localhost,IP:127.0.0.1,IP:::1";

    EVP_PKEY *ca_key = ec_key();
    spec ca_spec = { "twirl test CA", NULL, true, false, -day, 30 * day };
    X509 *ca = make_cert(ca_key, &ca_spec, NULL, NULL);
    path(c->ca, c->dir, "ca.pem");
    path(c->ca_key, c->dir, "ca-key.pem");
    write_pem(c->ca, ca, NULL, NULL);
    write_pem(c->ca_key, NULL, NULL, ca_key);

    EVP_PKEY *k = ec_key();
    spec server = { "localhost", local_san, false, false, -day, 30 * day };
    X509 *sx = make_cert(k, &server, ca, ca_key);
    path(c->server, c->dir, "server.pem");
    path(c->server_key, c->dir, "server-key.pem");
    path(c->server_chain, c->dir, "server-chain.pem");
    write_pem(c->server, sx, NULL, NULL);
    write_pem(c->server_key, NULL, NULL, k);
    write_pem(c->server_chain, sx, ca, NULL);
    X509_free(sx);
    EVP_PKEY_free(k);

    k = ec_key();
    spec other = { "other.test", "DNS:other.test,DNS:*.wild.test", false, false, -day, 30 * day };
    path(c->other, c->dir, "other.pem");
    path(c->other_key, c->dir, "other-key.pem");
    leaf(c->other, c->other_key, k, &other, ca, ca_key);
    EVP_PKEY_free(k);

    k = ec_key();
    spec expired = { "localhost", local_san, false, false, -30 * day, -day };
    path(c->expired, c->dir, "expired.pem");
    path(c->expired_key, c->dir, "expired-key.pem");
    leaf(c->expired, c->expired_key, k, &expired, ca, ca_key);
    EVP_PKEY_free(k);

    k = ec_key();
    spec client = { "test client", NULL, false, true, -day, 30 * day };
    path(c->client, c->dir, "client.pem");
    path(c->client_key, c->dir, "client-key.pem");
    leaf(c->client, c->client_key, k, &client, ca, ca_key);
    EVP_PKEY_free(k);

    EVP_PKEY *rogue_key = ec_key();
    spec rogue_spec = { "rogue CA", NULL, true, false, -day, 30 * day };
    X509 *rogue_ca = make_cert(rogue_key, &rogue_spec, NULL, NULL);
    path(c->rogue_ca, c->dir, "rogue-ca.pem");
    write_pem(c->rogue_ca, rogue_ca, NULL, NULL);
    k = ec_key();
    path(c->rogue, c->dir, "rogue.pem");
    path(c->rogue_key, c->dir, "rogue-key.pem");
    leaf(c->rogue, c->rogue_key, k, &server, rogue_ca, rogue_key);
    EVP_PKEY_free(k);
    X509_free(rogue_ca);
    EVP_PKEY_free(rogue_key);

    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return c;
}

void tt_certs_add_rsa(tt_certs *c)
{
    BIO *b = BIO_new_file(c->ca, "r");
    X509 *ca = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    b = BIO_new_file(c->ca_key, "r");
    EVP_PKEY *ca_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    EVP_PKEY *k = EVP_RSA_gen(2048);
    if (!ca || !ca_key || !k)
        die("tt_certs_add_rsa");
    spec server = { "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", false, false, -86400,
                    30 * 86400 };
    path(c->rsa, c->dir, "rsa.pem");
    path(c->rsa_key, c->dir, "rsa-key.pem");
    leaf(c->rsa, c->rsa_key, k, &server, ca, ca_key);
    EVP_PKEY_free(k);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

void tt_certs_free(tt_certs *c)
{
    if (!c)
        return;
    tt_rmdir(c->dir);
    free(c);
}
