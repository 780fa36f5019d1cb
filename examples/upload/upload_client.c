/* upload_client — sends one file to upload_server and checks, with the
 * HMAC-SHA256 the server answers, that the server stored exactly the bytes
 * sent. The seed's client, over twirl: it connects through a host-name
 * endpoint (so "localhost" or any name works, IPv6 first), streams the file
 * as a push producer that the connection pauses while its buffer is full,
 * and computes its own HMAC of the file as it reads it.
 *
 * Usage: upload_client [--host HOST] [--port PORT]
 *                      (--secret-file FILE | --secret TEXT) LOCAL [REMOTE]
 * HOST defaults to 127.0.0.1 and PORT to 8000; REMOTE (the path under the
 * server's upload directory) to LOCAL's base name.
 *
 * Exit status: 0 when the server's HMAC matches ours; 1 when the
 * connection or the local file failed; 2 for bad usage or a refusal by the
 * server (its reason is printed); 3 when the HMACs differ. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "twirl/basic.h"
#include "twirl/endpoint.h"

enum {
    READ_BYTES = 64 * 1024,
    READS_PER_TURN = 16, /* then let the reactor breathe */
    MAX_SECRET_BYTES = 4096
};

enum state { WAIT_HELLO, WAIT_READY, SENDING, WAIT_HMAC, DONE };

typedef struct job {
    tw_factory base;
    tw_reactor *reactor;
    const char *local, *remote;
    int fd;
    uint64_t size, sent;
    EVP_MAC_CTX *mac;
    unsigned char digest[32];
    int status;  /* the exit status */
    bool failed; /* the connection could not be made */
} job;

typedef struct client {
    tw_line_receiver lr;
    tw_producer producer; /* the file, pushed into the connection */
    int state;
    bool paused;
    tw_timer more; /* the next batch of reads */
} client;

static job *job_of(tw_protocol *p)
{
    return (job *)p->factory;
}

static client *client_of_producer(tw_producer *pr)
{
    return (client *)((char *)pr - offsetof(client, producer));
}

static void done(tw_protocol *p, int status)
{
    client *c = (client *)p;
    job_of(p)->status = status;
    c->state = DONE;
    tw_timer_cancel(c->more);
    c->more = TW_TIMER_NONE;
    tw_transport_lose_connection(p->transport);
}

/* ------------------------------------------------------------ sending */

static void send_more(void *arg);

static void send_batch(client *c)
{
    tw_protocol *p = &c->lr.r.base;
    job *j = job_of(p);
    static char buf[READ_BYTES];
    for (int i = 0; i < READS_PER_TURN && !c->paused && j->sent < j->size; i++) {
        uint64_t left = j->size - j->sent;
        ssize_t n = read(j->fd, buf, left < sizeof buf ? (size_t)left : sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "upload_client: %s: %s\n", j->local,
                    n < 0 ? strerror(errno) : "the file shrank while being sent");
            tw_transport_unregister_producer(p->transport);
            j->status = 1;
            c->state = DONE;
            tw_transport_abort_connection(p->transport); /* the server discards it */
            return;
        }
        EVP_MAC_update(j->mac, (unsigned char *)buf, (size_t)n);
        j->sent += (uint64_t)n;
        /* May pause us (the buffer passed its high-water mark). */
        if (tw_transport_write(p->transport, buf, (size_t)n) < 0)
            return; /* closing: connection_lost tells */
    }
    if (j->sent == j->size) {
        tw_transport_unregister_producer(p->transport);
        c->state = WAIT_HMAC;
        size_t len = 0;
        EVP_MAC_final(j->mac, j->digest, &len, sizeof j->digest);
        printf("sent %" PRIu64 " bytes; waiting for the server's HMAC\n", j->sent);
        return;
    }
    if (!c->paused && !tw_timer_active(c->more))
        c->more = tw_call_later(j->reactor, 0, send_more, c);
}

static void send_more(void *arg)
{
    client *c = arg;
    c->more = TW_TIMER_NONE;
    if (c->state == SENDING)
        send_batch(c);
}

static void file_pause(tw_producer *pr)
{
    client_of_producer(pr)->paused = true;
}

static void file_resume(tw_producer *pr)
{
    client *c = client_of_producer(pr);
    c->paused = false;
    /* Not from here: we may be inside our own write. */
    if (c->state == SENDING && !tw_timer_active(c->more))
        c->more = tw_call_later(job_of(&c->lr.r.base)->reactor, 0, send_more, c);
}

static void file_stop(tw_producer *pr)
{
    client *c = client_of_producer(pr);
    c->paused = true;
    tw_timer_cancel(c->more);
    c->more = TW_TIMER_NONE;
}

static const tw_producer_ops file_ops = { file_pause, file_resume, file_stop };

/* ------------------------------------------------------------ the protocol */

static bool starts(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0;
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

static void check_hmac(tw_protocol *p, const char *hex, size_t len)
{
    job *j = job_of(p);
    unsigned char theirs[32];
    bool ok = len == 64;
    for (size_t i = 0; ok && i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        theirs[i] = (unsigned char)(hi * 16 + lo);
    }
    char mine[65];
    for (int i = 0; i < 32; i++)
        snprintf(mine + 2 * i, 3, "%02x", j->digest[i]);
    printf("server's HMAC-SHA256: %.*s\nlocal HMAC-SHA256:    %s\n", (int)(len < 64 ? len : 64),
           hex, mine);
    if (ok && CRYPTO_memcmp(theirs, j->digest, sizeof theirs) == 0) {
        printf("upload verified: %s stored as %s\n", j->local, j->remote);
        done(p, 0);
    } else {
        printf("upload FAILED: the HMACs differ\n");
        done(p, 3);
    }
}

static int client_line(tw_protocol *p, const char *line, size_t len)
{
    client *c = (client *)p;
    job *j = job_of(p);
    if (starts(line, len, "ERR ")) {
        printf("server refused: %.*s\n", (int)(len - 4), line + 4);
        if (c->state == SENDING)
            tw_transport_unregister_producer(p->transport);
        done(p, 2);
        return 1;
    }
    switch (c->state) {
    case WAIT_HELLO:
        printf("server: %.*s\n", (int)len, line);
        c->state = WAIT_READY;
        tw_transport_printf(p->transport, "UPLOAD %" PRIu64 " %s\r\n", j->size, j->remote);
        return 0;
    case WAIT_READY:
        if (len != 5 || memcmp(line, "READY", 5) != 0)
            break;
        printf("uploading %s (%" PRIu64 " bytes) as %s\n", j->local, j->size, j->remote);
        c->state = SENDING;
        c->producer.ops = &file_ops;
        tw_transport_register_producer(p->transport, &c->producer, true);
        send_batch(c);
        return 0;
    case WAIT_HMAC:
        if (!starts(line, len, "HMAC "))
            break;
        check_hmac(p, line + 5, len - 5);
        return 1;
    default:
        break;
    }
    printf("unexpected answer from the server: %.*s\n", (int)(len < 200 ? len : 200), line);
    done(p, 1);
    return 1;
}

static void client_lost(tw_protocol *p, const tw_failure *reason)
{
    client *c = (client *)p;
    job *j = job_of(p);
    tw_timer_cancel(c->more);
    if (c->state != DONE) {
        printf("connection lost before the server answered: %s\n", tw_failure_message(reason));
        j->status = 1;
    }
    tw_reactor_stop(j->reactor);
}

static const tw_line_receiver_ops client_ops = {
    .base = TW_LINE_RECEIVER_BASE(client),
    .line_received = client_line,
    .connection_lost = client_lost,
};

static tw_result connect_failed(tw_result *in, void *arg)
{
    job *j = arg;
    printf("cannot connect: %s\n", tw_failure_message(in->failure));
    j->status = 1;
    j->failed = true;
    tw_reactor_stop(j->reactor); /* (not running yet if it failed at once) */
    return TW_RESULT_NONE;
}

/* ------------------------------------------------------------ main */

static int read_secret(const char *file, const char *text, unsigned char *out, size_t *len)
{
    char buf[MAX_SECRET_BYTES + 2];
    size_t n;
    if (text) {
        n = strlen(text);
        if (n <= MAX_SECRET_BYTES)
            memcpy(buf, text, n);
    } else {
        FILE *f = fopen(file, "rb");
        if (!f) {
            fprintf(stderr, "upload_client: cannot read the secret file %s: %s\n", file,
                    strerror(errno));
            return -1;
        }
        n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
    }
    if (n == 0 || n > MAX_SECRET_BYTES) {
        fprintf(stderr, "upload_client: the secret must be 1 to %d bytes\n", MAX_SECRET_BYTES);
        return -1;
    }
    memcpy(out, buf, n);
    *len = n;
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: upload_client [--host HOST] [--port PORT]\n"
                    "                     (--secret-file FILE | --secret TEXT) LOCAL [REMOTE]\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "host", required_argument, NULL, 'H' },
        { "port", required_argument, NULL, 'p' },
        { "secret-file", required_argument, NULL, 'k' },
        { "secret", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    const char *host = "127.0.0.1", *secret_file = NULL, *secret = NULL;
    unsigned long port = 8000;
    char *end;
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:k:s:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H':
            host = optarg;
            break;
        case 'p':
            port = strtoul(optarg, &end, 10);
            if (*end || port == 0 || port > 65535) {
                fprintf(stderr, "upload_client: bad port '%s'\n", optarg);
                return 2;
            }
            break;
        case 'k':
            secret_file = optarg;
            break;
        case 's':
            secret = optarg;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (!!secret_file == !!secret || argc - optind < 1 || argc - optind > 2) {
        usage();
        return 2;
    }
    job j = { .base = TW_FACTORY_INIT(TW_PROTOCOL_OF(&client_ops), NULL), .status = 1 };
    j.local = argv[optind];
    unsigned char key[MAX_SECRET_BYTES];
    size_t key_len;
    if (read_secret(secret_file, secret, key, &key_len) < 0)
        return 2;
    char *local_copy = strdup(j.local);
    j.remote = argc - optind == 2 ? argv[optind + 1] : basename(local_copy);
    j.fd = open(j.local, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (j.fd < 0 || fstat(j.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "upload_client: %s: %s\n", j.local,
                j.fd < 0 ? strerror(errno) : "not a regular file");
        if (j.fd >= 0)
            close(j.fd);
        free(local_copy);
        return 1;
    }
    j.size = (uint64_t)st.st_size;

    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    j.mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end() };
    if (!j.mac || !EVP_MAC_init(j.mac, key, key_len, params)) {
        fprintf(stderr, "upload_client: cannot set up HMAC-SHA256\n");
        EVP_MAC_CTX_free(j.mac);
        close(j.fd);
        free(local_copy);
        return 1;
    }
    OPENSSL_cleanse(key, sizeof key);

    setvbuf(stdout, NULL, _IOLBF, 0);
    tw_client_endpoint *ep = NULL;
    int rc;
    if ((rc = tw_reactor_new(NULL, &j.reactor)) < 0 ||
        (rc = tw_hostname_endpoint_new(j.reactor, host, (uint16_t)port, NULL, 0, &ep)) < 0) {
        fprintf(stderr, "upload_client: %s: %s\n", host, tw_strerror(rc));
    } else {
        tw_deferred *d = tw_endpoint_connect(ep, &j.base);
        if (!d || tw_deferred_add_errback(d, connect_failed, &j) < 0) {
            fprintf(stderr, "upload_client: out of memory\n");
        } else if (!j.failed) {
            tw_reactor_run(j.reactor);
        }
        tw_deferred_unref(d);
    }
    tw_client_endpoint_free(ep);
    tw_reactor_free(j.reactor);
    EVP_MAC_CTX_free(j.mac);
    close(j.fd);
    free(local_copy);
    return j.status;
}
