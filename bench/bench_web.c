/* bench_web — CPU cost of one HTTP request in the server, without the
 * kernel: wrk's request ("GET / HTTP/1.1", Host) fed to a site over the
 * string transport, answered by an in-memory "Hello, World!" resource and
 * by the static file resource serving a 13-byte file (open-file cache hit);
 * requests arrive one per read (keep-alive) and 16 per read (pipelined).
 * Prints nanoseconds of thread CPU per request, and allocations per request
 * (malloc, calloc and realloc are counted: the answer should be 0).
 *
 * Usage: bench_web [requests]   (default 2000000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "twirl/testing.h"
#include "twirl/web.h"

#include "alloc_count.h"

static int hello_get(tw_resource *r, tw_request *req)
{
    return tw_request_respond(req, 200, "text/plain", "Hello, World!", 13);
}

static const tw_resource_ops hello_ops = { .render_get = hello_get };

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double allocs_per_req;

static double run(tw_site *site, tw_reactor *r, const char *req, int per_read, long n)
{
    size_t len = strlen(req);
    char *buf = malloc(len * (size_t)per_read);
    for (int i = 0; i < per_read; i++)
        memcpy(buf + len * (size_t)i, req, len);
    tw_test_conn_options o = { .factory = tw_site_factory(site), .reactor = r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    for (int i = 0; i < 1000; i++) { /* warm up: the request block, caches */
        tw_test_conn_feed(c, buf, len);
        tw_test_conn_clear(c);
    }
    size_t out;
    tw_test_conn_written(c, &out);
    unsigned long a0 = allocations;
    double t0 = cpu_ns();
    for (long i = 0; i < n; i += per_read) {
        tw_test_conn_feed(c, buf, len * (size_t)per_read);
        tw_test_conn_clear(c);
    }
    double t = (cpu_ns() - t0) / (double)n;
    allocs_per_req = (double)(allocations - a0) / (double)n;
    tw_test_conn_free(c);
    free(buf);
    return t;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    char dir[] = "/tmp/bench-web-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof path, "%s/hello.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("Hello, World!", f);
    fclose(f);

    tw_reactor *r = tw_test_clock_new();
    tw_resource *root = tw_resource_new(NULL), *files;
    tw_resource_put_child(root, "", tw_resource_new(&hello_ops));
    tw_static_file_new(dir, NULL, &files);
    tw_resource_put_child(root, "static", files);
    tw_site *site;
    tw_site_new(r, root, NULL, &site);

    static const char mem[] = "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
    static const char file[] = "GET /static/hello.txt HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
    static const struct {
        const char *name, *req;
        int per_read;
    } cases[] = {
        { "hello from memory, one request per read", mem, 1 },
        { "hello from memory, 16 pipelined per read", mem, 16 },
        { "hello.txt (static, cached), one per read", file, 1 },
        { "hello.txt (static, cached), 16 per read", file, 16 },
    };
    printf("%-44s %10s %12s\n", "case", "ns/req", "allocs/req");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double ns = run(site, r, cases[i].req, cases[i].per_read, n);
        printf("%-44s %10.0f %12.4f\n", cases[i].name, ns, allocs_per_req);
    }
    tw_site_free(site);
    tw_reactor_free(r);
    unlink(path);
    rmdir(dir);
    return 0;
}
