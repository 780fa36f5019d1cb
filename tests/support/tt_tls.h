/* tt_tls.h — certificates for the TLS tests, made at test start with
 * OpenSSL's C API (so an expired certificate needs no clock tricks). */
#ifndef TWIRL_TT_TLS_H
#define TWIRL_TT_TLS_H

#include <stdbool.h>

enum { TT_PATH = 512 };

/* PEM files in a scratch directory. Keys are ECDSA P-256 unless said. */
typedef struct tt_certs {
    char *dir;
    char ca[TT_PATH]; /* the test CA's certificate */
    char ca_key[TT_PATH];
    char server[TT_PATH]; /* CN=localhost, SAN localhost, 127.0.0.1, ::1; by the CA */
    char server_key[TT_PATH];
    char server_chain[TT_PATH]; /* server certificate followed by the CA */
    char other[TT_PATH];        /* SAN other.test, *.wild.test; by the CA (SNI, wrong host) */
    char other_key[TT_PATH];
    char expired[TT_PATH]; /* like server, but expired yesterday */
    char expired_key[TT_PATH];
    char client[TT_PATH]; /* CN=test client, clientAuth; by the CA */
    char client_key[TT_PATH];
    char rogue_ca[TT_PATH]; /* another CA nobody trusts */
    char rogue[TT_PATH];    /* like server, but by the rogue CA */
    char rogue_key[TT_PATH];
    char rsa[TT_PATH]; /* like server, RSA-2048 key: tt_certs_add_rsa */
    char rsa_key[TT_PATH];
} tt_certs;

/* Makes every file above in a fresh directory; aborts on failure. */
tt_certs *tt_certs_make(void);
/* Adds rsa/rsa_key (RSA key generation is slow: only when needed). */
void tt_certs_add_rsa(tt_certs *c);
/* Removes the directory and frees. */
void tt_certs_free(tt_certs *c);

#endif
