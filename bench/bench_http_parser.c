/* bench_http_parser — nanoseconds per request head and MB/s for twirl's
 * HTTP/1.1 parser, on a ~300-byte browser request and a minimal wrk request,
 * plus chunked decoding throughput. When libhttp_parser (Debian's
 * libhttp-parser2.9) is installed it is loaded at run time and measured on
 * the same inputs with callbacks that record the same slices, for a side by
 * side ratio; without it only twirl's numbers are printed.
 *
 * Usage: bench_http_parser [iterations]   (default 2000000) */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twirl/http_parser.h"

static const char browser[] =
    "GET /wiki/Special:Search?search=event+loop&go=Go HTTP/1.1\r\n"
    "Host: en.example.org\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=4f3c2a1b0e9d8c7b; theme=dark\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "\r\n";

static const char wrk[] = "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* robust to a busy machine */
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink;

/* ------------------------------------------------------------------ twirl */

static double run_twirl(const char *msg, size_t len, long iters)
{
    tw_http_header h[64];
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        tw_http_parser p;
        tw_http_parser_init(&p, NULL);
        tw_http_request req = { .headers = h, .headers_cap = 64 };
        int rc = tw_http_parse_request(&p, msg, len, &req);
        if (rc != (int)len) {
            fprintf(stderr, "twirl: unexpected rc %d\n", rc);
            exit(1);
        }
        sink += req.num_headers + req.path.len;
    }
    return (now_ns() - t0) / (double)iters;
}

static double run_twirl_chunked(const char *body, size_t len, long iters)
{
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        tw_http_chunked c;
        tw_http_chunked_init(&c, NULL, NULL, 0);
        size_t off = 0, used, total = 0;
        tw_http_slice d;
        int rc;
        while ((rc = tw_http_chunked_parse(&c, body + off, len - off, &used, &d)) ==
               TW_HTTP_CHUNKED_DATA) {
            total += d.len;
            off += used;
        }
        if (rc != TW_HTTP_CHUNKED_DONE) {
            fprintf(stderr, "twirl chunked: rc %d\n", rc);
            exit(1);
        }
        sink += total;
    }
    return (now_ns() - t0) / (double)iters;
}

/* ---------------------------------------------------- libhttp_parser (dlopen) */

/* The parts of <http_parser.h> 2.9 used here, declared locally so the bench
 * builds without the -dev package. */
typedef struct hp_parser {
    unsigned int type : 2, flags : 8, state : 7, header_state : 7, index : 5,
        uses_transfer_encoding : 1, allow_chunked_length : 1, lenient_http_headers : 1;
    uint32_t nread;
    uint64_t content_length;
    unsigned short http_major, http_minor;
    unsigned int status_code : 16, method : 8, http_errno : 7, upgrade : 1;
    void *data;
} hp_parser;
typedef int (*hp_data_cb)(hp_parser *, const char *, size_t);
typedef int (*hp_cb)(hp_parser *);
typedef struct hp_settings {
    hp_cb on_message_begin;
    hp_data_cb on_url, on_status, on_header_field, on_header_value;
    hp_cb on_headers_complete;
    hp_data_cb on_body;
    hp_cb on_message_complete;
    hp_cb on_chunk_header, on_chunk_complete;
} hp_settings;

static void (*hp_init)(hp_parser *, int);
static size_t (*hp_execute)(hp_parser *, const hp_settings *, const char *, size_t);

typedef struct hp_collect {
    tw_http_header h[64];
    size_t n;
    tw_http_slice url;
    int done;
    size_t body;
} hp_collect;

static int hp_on_url(hp_parser *p, const char *at, size_t n)
{
    ((hp_collect *)p->data)->url = (tw_http_slice){ at, n };
    return 0;
}
static int hp_on_field(hp_parser *p, const char *at, size_t n)
{
    hp_collect *c = p->data;
    if (c->n < 64)
        c->h[c->n].name = (tw_http_slice){ at, n };
    return 0;
}
static int hp_on_value(hp_parser *p, const char *at, size_t n)
{
    hp_collect *c = p->data;
    if (c->n < 64)
        c->h[c->n++].value = (tw_http_slice){ at, n };
    return 0;
}
static int hp_on_headers_complete(hp_parser *p)
{
    ((hp_collect *)p->data)->done = 1;
    return 0;
}
static int hp_on_body(hp_parser *p, const char *at, size_t n)
{
    ((hp_collect *)p->data)->body += n;
    return 0;
}

static double run_hp(const char *msg, size_t len, long iters, int body)
{
    hp_settings st = { 0 };
    st.on_url = hp_on_url;
    st.on_header_field = hp_on_field;
    st.on_header_value = hp_on_value;
    st.on_headers_complete = hp_on_headers_complete;
    st.on_body = hp_on_body;
    hp_collect c;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        hp_parser p;
        hp_init(&p, 0 /* HTTP_REQUEST */);
        c.n = 0;
        c.done = 0;
        c.body = 0;
        p.data = &c;
        size_t n = hp_execute(&p, &st, msg, len);
        if (n != len || !c.done) {
            fprintf(stderr, "libhttp_parser: parsed %zu of %zu\n", n, len);
            exit(1);
        }
        sink += c.n + c.url.len + c.body;
    }
    return (now_ns() - t0) / (double)iters;
}

/* --------------------------------------------------------------------- main */

static double best_of(double (*fn)(const char *, size_t, long), const char *m, size_t n, long it)
{
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double ns = fn(m, n, it);
        if (ns < best)
            best = ns;
    }
    return best;
}

static double hp_head(const char *m, size_t n, long it)
{
    return run_hp(m, n, it, 0);
}

static void row(const char *what, size_t len, double ours, double theirs)
{
    printf("%-26s %5zu B  twirl %7.1f ns %8.0f MB/s", what, len, ours, (double)len / ours * 1e3);
    if (theirs > 0)
        printf("   libhttp_parser %7.1f ns %8.0f MB/s   ratio %.2fx", theirs,
               (double)len / theirs * 1e3, theirs / ours);
    printf("\n");
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    void *lib = dlopen("libhttp_parser.so.2.9", RTLD_NOW);
    if (lib) {
        hp_init = (void (*)(hp_parser *, int))dlsym(lib, "http_parser_init");
        hp_execute = (size_t(*)(hp_parser *, const hp_settings *, const char *, size_t))dlsym(
            lib, "http_parser_execute");
        if (!hp_init || !hp_execute)
            lib = NULL;
    }
    printf("HTTP/1.1 request heads, best of 5 x %ld iterations (init + parse, all headers "
           "kept)\n",
           iters);
    double a = best_of(run_twirl, browser, sizeof browser - 1, iters);
    double b = lib ? best_of(hp_head, browser, sizeof browser - 1, iters) : 0;
    row("browser request", sizeof browser - 1, a, b);
    a = best_of(run_twirl, wrk, sizeof wrk - 1, iters);
    b = lib ? best_of(hp_head, wrk, sizeof wrk - 1, iters) : 0;
    row("wrk request", sizeof wrk - 1, a, b);

    /* Chunked: 64 KiB body in 4 KiB chunks with a small extension. */
    size_t cap = 80 * 1024, n = 0;
    char *body = malloc(cap);
    if (!body)
        return 1;
    for (int i = 0; i < 16; i++) {
        n += (size_t)sprintf(body + n, "1000;x=y\r\n");
        memset(body + n, 'a' + i, 4096);
        n += 4096;
        n += (size_t)sprintf(body + n, "\r\n");
    }
    n += (size_t)sprintf(body + n, "0\r\n\r\n");
    long citers = iters / 50 > 0 ? iters / 50 : 1;
    a = best_of(run_twirl_chunked, body, n, citers);
    if (lib) {
        static const char head[] =
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        char *msg = malloc(sizeof head - 1 + n);
        if (!msg)
            return 1;
        memcpy(msg, head, sizeof head - 1);
        memcpy(msg + sizeof head - 1, body, n);
        b = best_of(hp_head, msg, sizeof head - 1 + n, citers);
        printf("(libhttp_parser's chunked figure includes its parse of a %zu-byte head)\n",
               sizeof head - 1);
        free(msg);
    } else {
        b = 0;
    }
    row("chunked body 16 x 4 KiB", n, a, b);
    if (!lib)
        printf("libhttp_parser not found (apt-get install libhttp-parser2.9): twirl only\n");
    free(body);
    return 0;
}
