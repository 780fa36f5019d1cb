/* fuzz_web_server — the whole HTTP server (parse → route → render → write,
 * keep-alive, pipelining, bodies, timeouts) driven over the string
 * transport by arbitrary bytes.
 *
 * Input: one header byte, then the bytes a client sends.
 *   h & 1 == 0: split-equivalence. The stream is fed whole, byte by byte and
 *               in chunks seeded by h, each on a fresh connection; resources
 *               that answer later are finished after each feed. What the
 *               server writes must be the same every time (abort otherwise):
 *               the server may not depend on how reads are split.
 *   h & 1 == 1: chaos. Seeded chunks with the fake clock moved between them
 *               (timeouts fire), the streaming upload pausing and resuming,
 *               and the connection lost at a seeded point.
 * Either way nothing may crash, leak (ASan) or write anything but HTTP/1.1
 * responses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twirl/testing.h"
#include "twirl/web.h"

static tw_reactor *R;
static tw_site *S;
static tw_request *later[4];
static size_t nlater;
static bool pause_uploads;

static int hello_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static int echo_post(tw_resource *r, tw_request *req)
{
    tw_http_slice b = tw_request_body(req);
    return tw_request_respond(req, 200, NULL, b.ptr, b.len);
}

static int stream_get(tw_resource *r, tw_request *req)
{
    tw_request_write(req, "a", 1);
    tw_request_write(req, "bc", 2);
    return tw_request_finish(req);
}

static int later_get(tw_resource *r, tw_request *req)
{
    if (nlater == sizeof later / sizeof later[0])
        return tw_request_respond(req, 503, NULL, NULL, 0);
    later[nlater++] = req;
    return 0;
}

/* The upload's bytes are summed, not echoed piece by piece (the pieces
 * follow the reads, which split-equivalence varies); chaos echoes them. */
static bool chaos_mode;
static uint64_t up_hash;
static size_t up_bytes;

static void up_data(tw_request *req, const char *data, size_t len, void *arg)
{
    for (size_t i = 0; i < len; i++)
        up_hash = (up_hash ^ (uint8_t)data[i]) * 0x100000001b3ull;
    up_bytes += len;
    if (chaos_mode)
        tw_request_write(req, data, len);
    if (pause_uploads)
        tw_request_pause_body(req);
}

static void up_end(tw_request *req, const tw_failure *reason, void *arg)
{
    char out[64];
    int n = snprintf(out, sizeof out, "%zu %llx %d", up_bytes, (unsigned long long)up_hash,
                     reason ? tw_failure_code(reason) : 0);
    up_bytes = 0;
    up_hash = 0;
    if (!chaos_mode)
        tw_request_write(req, out, (size_t)n);
    tw_request_finish(req);
}

static const tw_body_ops up_ops = { .data_received = up_data, .body_end = up_end };

static int upload_post(tw_resource *r, tw_request *req)
{
    return tw_request_read_body(req, &up_ops, NULL);
}

static const tw_resource_ops hello_ops = { .render_get = hello_get };
static const tw_resource_ops echo_ops = { .render_post = echo_post, .render_put = echo_post };
static const tw_resource_ops stream_ops = { .render_get = stream_get };
static const tw_resource_ops later_ops = { .render_get = later_get };
static const tw_resource_ops upload_ops = { .stream_body = true, .render_post = upload_post };

static char fuzz_dir[] = "/tmp/twirl-fuzz-web-XXXXXX";

static void remove_dir(void)
{
    char p[64];
    snprintf(p, sizeof p, "%s/f.txt", fuzz_dir);
    unlink(p);
    rmdir(fuzz_dir);
}

static int64_t fixed_clock(void *arg)
{
    return 784111777;
}

static void init(void)
{
    R = tw_test_clock_new();
    tw_resource *root = tw_resource_new(NULL);
    tw_resource_put_child(root, "", tw_resource_new(&hello_ops));
    tw_resource_put_child(root, "e", tw_resource_new(&echo_ops));
    tw_resource_put_child(root, "s", tw_resource_new(&stream_ops));
    tw_resource_put_child(root, "l", tw_resource_new(&later_ops));
    tw_resource_put_child(root, "u", tw_resource_new(&upload_ops));
    const char *dir = fuzz_dir;
    if (mkdtemp(fuzz_dir)) {
        atexit(remove_dir);
        char p[64];
        snprintf(p, sizeof p, "%s/f.txt", dir);
        FILE *f = fopen(p, "w");
        if (f) {
            fputs("0123456789", f);
            fclose(f);
        }
        tw_resource *files;
        if (tw_static_file_new(dir, NULL, &files) == 0)
            tw_resource_put_child(root, "f", files);
    }
    tw_site_options o;
    tw_site_options_init(&o);
    o.wall_clock = fixed_clock;
    o.limits.max_body_bytes = 4096;
    o.limits.max_header_bytes = 2048;
    o.limits.max_headers = 16;
    tw_site_new(R, root, &o, &S);
}

static void settle(void)
{
    for (int round = 0; round < 16; round++) {
        size_t n = nlater;
        nlater = 0;
        for (size_t i = 0; i < n; i++) {
            tw_request_write(later[i], "later", 5);
            tw_request_finish(later[i]);
        }
        tw_reactor_iterate(R, 0);
        if (nlater == 0 && n == 0)
            break;
    }
}

static void check_output(const char *out, size_t len)
{
    if (len && (len < 9 || memcmp(out, "HTTP/1.1 ", 9) != 0))
        abort();
}

/* Feeds data in pieces (0: whole; 1: bytes; else seeded) and returns a
 * malloc'd copy of the output. */
static char *feed(const uint8_t *data, size_t len, int how, unsigned seed, bool chaos,
                  size_t *out_len)
{
    tw_test_conn_options o = { .factory = tw_site_factory(S), .reactor = R };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    if (!c)
        return NULL;
    size_t lose_at = chaos && len ? (seed * 31u) % (len + len / 2 + 1) : (size_t)-1;
    size_t off = 0;
    while (off < len && !tw_test_conn_disconnecting(c)) {
        size_t n = how == 0 ? len : how == 1 ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 97;
        if (n > len - off)
            n = len - off;
        if (tw_test_conn_feed(c, data + off, n) < 0)
            break;
        off += n;
        if (chaos) {
            pause_uploads = (seed >> 7) & 1;
            tw_clock_advance(R, (double)((seed >> 9) % 40));
        }
        settle();
        if (off >= lose_at) {
            tw_test_conn_lose(c, (seed & 1) ? 0 : -104);
            break;
        }
    }
    pause_uploads = false;
    if (chaos)
        tw_clock_advance(R, 100);
    settle();
    size_t n;
    const char *w = tw_test_conn_written(c, &n);
    check_output(w, n);
    char *copy = malloc(n + 1);
    if (copy)
        memcpy(copy, w, n);
    *out_len = n;
    tw_test_conn_free(c);
    settle(); /* requests answered later, now on a lost connection */
    return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!R)
        init();
    if (!S || size < 1)
        return 0;
    unsigned h = data[0];
    data++;
    size--;
    if (size > 16384)
        return 0;
    if (h & 1) {
        size_t n;
        chaos_mode = true;
        free(feed(data, size, 2, h * 2654435761u, true, &n));
        chaos_mode = false;
        return 0;
    }
    size_t n0, n1, n2;
    char *a = feed(data, size, 0, 0, false, &n0);
    char *b = feed(data, size, 1, 0, false, &n1);
    char *c = feed(data, size, 2, h, false, &n2);
    if (a && b && c && (n0 != n1 || n0 != n2 || memcmp(a, b, n0) != 0 || memcmp(a, c, n0) != 0)) {
        fprintf(stderr, "output depends on the split:\n--- whole\n%.*s\n--- bytes\n%.*s\n", (int)n0,
                a, (int)n1, b);
        abort();
    }
    free(a);
    free(b);
    free(c);
    return 0;
}
