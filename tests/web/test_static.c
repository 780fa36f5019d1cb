/* ctest: label=integration timeout=300 backends=once */
/* Static files (tw_static_file_new): a table of hostile paths that must
 * never reach outside the root, byte ranges (206, 416), conditional requests
 * (304), MIME types, index files, escaped listings, hidden dotfiles, the
 * open-file cache — over the string transport and the fake clock — and a
 * 1 GiB download through `twirl web` (sendfile) by a slow reader, during
 * which the server's memory stays flat. */
#include <errno.h>
#include <fcntl.h>
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
#include "twirl/testing.h"
#include "twirl/web.h"

static char *top; /* scratch: top/root is served, top/outside is not */
static char root_dir[512];
static tw_reactor *R;
static tw_site *S;

static void put_bytes(const char *rel, const void *data, size_t len)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void put_file(const char *rel, const char *content)
{
    put_bytes(rel, content, strlen(content));
}

static void drop_file(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    unlink(p);
}

static void mk(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void ln(const char *target, const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", top, rel);
    assert_int_equal(symlink(target, p), 0);
}

static void site_with(const tw_static_options *so)
{
    R = tw_test_clock_new();
    assert_non_null(R);
    tw_resource *files;
    assert_int_equal(tw_static_file_new(root_dir, so, &files), 0);
    assert_int_equal(tw_site_new(R, files, NULL, &S), 0);
}

static void site_free(void)
{
    tw_site_free(S);
    tw_reactor_free(R);
    S = NULL;
    R = NULL;
}

static int group_setup(void **state)
{
    top = tt_tmpdir();
    snprintf(root_dir, sizeof root_dir, "%s/root", top);
    mk("root");
    mk("outside");
    mk("root/sub");
    mk("root/sub/deeper");
    mk("root/.git");
    mk("root/empty");
    put_file("outside/secret", "SECRET");
    put_file("root/index.html", "<p>index</p>\n");
    put_file("root/a.txt", "plain text\n");
    put_file("root/digits", "0123456789");
    put_file("root/data.unknownext", "???");
    put_file("root/sub/a.txt", "sub text\n");
    put_file("root/sub/deeper/b.css", "b{}\n");
    put_file("root/.hidden", "SECRET-hidden");
    put_file("root/.git/config", "SECRET-git");
    put_file("root/<b>&'\".txt", "odd name\n");
    ln("a.txt", "root/link_in");
    ln("../outside", "root/link_out");
    ln("../outside/secret", "root/link_secret");
    ln("/etc/passwd", "root/link_abs");
    ln("sub/../../outside/secret", "root/link_dotdot");
    return 0;
}

static int group_teardown(void **state)
{
    tt_rmdir(top);
    return 0;
}

static int setup(void **state)
{
    site_with(NULL);
    return 0;
}

static int teardown(void **state)
{
    site_free();
    return 0;
}

/* Sends one request on a fresh connection; returns what came back (a
 * static copy) and the connection is freed. */
static const char *ask(const char *request)
{
    static char out[1 << 20];
    tw_test_conn_options o = { .factory = tw_site_factory(S), .reactor = R };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    tw_test_conn_feed_str(c, request);
    size_t n, before;
    do { /* a file body is sent from the loop */
        tw_test_conn_written(c, &before);
        tw_reactor_iterate(R, 0);
        tw_test_conn_written(c, &n);
    } while (n != before);
    const char *w = tw_test_conn_written(c, &n);
    if (n >= sizeof out)
        n = sizeof out - 1;
    memcpy(out, w, n);
    out[n] = 0;
    tw_test_conn_free(c);
    return out;
}

static const char *get(const char *path, const char *extra)
{
    char req[2048];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", path, extra ? extra : "");
    return ask(req);
}

static int status_of(const char *resp)
{
    return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : -1;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

static const char *header_of(const char *resp, const char *name)
{
    static char v[256];
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(resp, pat);
    const char *end = strstr(resp, "\r\n\r\n");
    if (!p || (end && p > end))
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\r");
    snprintf(v, sizeof v, "%.*s", (int)n, p);
    return v;
}

/* ------------------------------------------------------------ hostile paths */

static void hostile_paths(void **state)
{
    static const char *const paths[] = {
        "/../outside/secret",
        "/..%2foutside%2fsecret",
        "/%2e%2e/outside/secret",
        "/%2E%2E/outside/secret",
        "/%2e%2e%2foutside%2fsecret",
        "/.%2e/outside/secret",
        "/%2e./outside/secret",
        "/sub/../../outside/secret",
        "/sub/%2e%2e/%2e%2e/outside/secret",
        "/sub%2f..%2f..%2foutside%2fsecret",
        "/..\\outside\\secret",
        "/%5c..%5coutside%5csecret",
        "/sub/..%5c..%5coutside%5csecret",
        "/..%c0%afoutside/secret",
        "/..%252foutside%252fsecret",
        "/....//outside/secret",
        "//outside/secret",
        "/sub//../outside/secret",
        "/./a.txt",
        "/sub/./a.txt",
        "/%2e/a.txt",
        "/link_out/secret",
        "/link_secret",
        "/link_abs",
        "/link_dotdot",
        "/.hidden",
        "/%2ehidden",
        "/.git/config",
        "/.git/",
        "/sub/.%2e/.hidden",
        "/a.txt%00.html",
        "/%00",
        "/a.txt%0a",
        "/a.txt%0d%0aX: y",
        "/sub%5ca.txt",
        "/%20/../outside/secret",
        "/etc/passwd",
        "/proc/self/environ",
        "http://h/../outside/secret",
        "http://h/%2e%2e/outside/secret",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const char *r = get(paths[i], NULL);
        int st = status_of(r);
        if (strstr(r, "SECRET") || strstr(r, "root:") || (st != 404 && st != 400))
            fail_msg("%s: status %d\n%s", paths[i], st, r);
    }
    /* And what is allowed still works. */
    assert_int_equal(status_of(get("/link_in", NULL)), 200);
    assert_string_equal(body_of(get("/link_in", NULL)), "plain text\n");
    assert_string_equal(body_of(get("/sub/a%2etxt", NULL)), "sub text\n");
}

static void hidden_shown_when_asked(void **state)
{
    site_free();
    tw_static_options so;
    tw_static_options_init(&so);
    so.show_hidden = true;
    site_with(&so);
    assert_string_equal(body_of(get("/.hidden", NULL)), "SECRET-hidden");
    /* Still no way out. */
    assert_int_equal(status_of(get("/../outside/secret", NULL)), 404);
    assert_int_equal(status_of(get("/%2e%2e/outside/secret", NULL)), 404);
}

/* ------------------------------------------------------------ files */

static void files_and_types(void **state)
{
    const char *r = get("/a.txt", NULL);
    assert_int_equal(status_of(r), 200);
    assert_string_equal(header_of(r, "Content-Type"), "text/plain");
    assert_string_equal(header_of(r, "Content-Length"), "11");
    assert_string_equal(header_of(r, "Accept-Ranges"), "bytes");
    assert_non_null(header_of(r, "ETag"));
    assert_non_null(header_of(r, "Last-Modified"));
    assert_string_equal(body_of(r), "plain text\n");
    r = get("/sub/deeper/b.css", NULL);
    assert_string_equal(header_of(r, "Content-Type"), "text/css");
    r = get("/data.unknownext", NULL);
    assert_string_equal(header_of(r, "Content-Type"), "application/octet-stream");
    r = get("/", NULL);
    assert_string_equal(header_of(r, "Content-Type"), "text/html");
    assert_string_equal(body_of(r), "<p>index</p>\n");
    r = ask("HEAD /a.txt HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_string_equal(header_of(r, "Content-Length"), "11");
    assert_string_equal(body_of(r), "");
    r = get("/sub", NULL);
    assert_int_equal(status_of(r), 301);
    assert_string_equal(header_of(r, "Location"), "/sub/");
    r = get("/sub?x=1", NULL);
    assert_string_equal(header_of(r, "Location"), "/sub/?x=1");
    assert_int_equal(status_of(get("/nothing", NULL)), 404);
    assert_int_equal(status_of(get("/a.txt/", NULL)), 404);
    r = ask("POST /a.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(status_of(r), 405);
}

static void listing_escaped(void **state)
{
    const char *r = get("/sub/", NULL);
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "<a href=\"a.txt\">a.txt</a>"));
    assert_non_null(strstr(r, "<a href=\"deeper/\">deeper/</a>"));
    r = get("/empty/", NULL);
    assert_int_equal(status_of(r), 200);
    /* The root has an index.html; ask for a listing of a copy without. */
    site_free();
    tw_static_options so;
    tw_static_options_init(&so);
    static const char *const none[] = { NULL };
    so.index_files = none;
    site_with(&so);
    r = get("/", NULL);
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "&lt;b&gt;&amp;&#x27;&quot;.txt"));
    assert_non_null(strstr(r, "href=\"%3Cb%3E%26%27%22.txt\""));
    assert_null(strstr(r, "<b>&"));
    assert_null(strstr(r, ".hidden"));
    assert_null(strstr(r, ".git"));
    site_free();
    so.no_listing = true;
    site_with(&so);
    assert_int_equal(status_of(get("/", NULL)), 403);
}

/* ------------------------------------------------------------ ranges */

static void ranges(void **state)
{
    static const struct {
        const char *range;
        int status;
        const char *body;
        const char *content_range;
    } cases[] = {
        { "bytes=0-4", 206, "01234", "bytes 0-4/10" },
        { "bytes=5-", 206, "56789", "bytes 5-9/10" },
        { "bytes=-3", 206, "789", "bytes 7-9/10" },
        { "bytes=-30", 206, "0123456789", "bytes 0-9/10" },
        { "bytes=8-100", 206, "89", "bytes 8-9/10" },
        { "bytes=9-9", 206, "9", "bytes 9-9/10" },
        { "bytes=10-", 416, "", "bytes */10" },
        { "bytes=100-200", 416, "", "bytes */10" },
        { "bytes=-0", 416, "", "bytes */10" },
        { "bytes=5-2", 200, "0123456789", NULL },
        { "bytes=0-9,0-9", 200, "0123456789", NULL }, /* more bytes than the file */
        { "bytes=0-1,x-2", 200, "0123456789", NULL },
        { "bytes=0-1,20-30", 206, "01", "bytes 0-1/10" }, /* one left: not multipart */
        { "bytes=20-,30-", 416, "", "bytes */10" },
        { "bytes=0-0,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-,20-", 200,
          "0123456789", NULL }, /* 17 ranges */
        { "items=0-1", 200, "0123456789", NULL },
        { "bytes=x-1", 200, "0123456789", NULL },
        { "bytes=99999999999999999999999-", 200, "0123456789", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "Range: %s\r\n", cases[i].range);
        const char *r = get("/digits", h);
        if (status_of(r) != cases[i].status || strcmp(body_of(r), cases[i].body) != 0)
            fail_msg("%s: got %s", cases[i].range, r);
        const char *cr = header_of(r, "Content-Range");
        if (cases[i].content_range)
            assert_string_equal(cr ? cr : "(none)", cases[i].content_range);
        else
            assert_null(cr);
    }
    /* If-Range: a matching validator keeps the range, another drops it. */
    char etag[128], h[256];
    snprintf(etag, sizeof etag, "%s", header_of(get("/digits", NULL), "ETag"));
    snprintf(h, sizeof h, "Range: bytes=0-1\r\nIf-Range: %s\r\n", etag);
    assert_int_equal(status_of(get("/digits", h)), 206);
    assert_int_equal(status_of(get("/digits", "Range: bytes=0-1\r\nIf-Range: \"other\"\r\n")), 200);
    /* A range of a file larger than the small-file limit (sent in pieces). */
    char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    put_bytes("root/big", big, sizeof big);
    const char *r = get("/big", NULL);
    assert_string_equal(header_of(r, "Content-Length"), "100000");
    assert_memory_equal(body_of(r), big, sizeof big);
    r = get("/big", "Range: bytes=50000-\r\n");
    assert_int_equal(status_of(r), 206);
    assert_memory_equal(body_of(r), big + 50000, 50000);
    drop_file("root/big");
}

/* Checks a multipart/byteranges answer against the parts expected. */
static void expect_parts(const char *r, const char *ctype, uint64_t size, const uint64_t (*ab)[2],
                         int n, const char *content)
{
    assert_int_equal(status_of(r), 206);
    assert_null(header_of(r, "Content-Range"));
    const char *ct = header_of(r, "Content-Type");
    const char *pre = "multipart/byteranges; boundary=";
    assert_non_null(ct);
    assert_memory_equal(ct, pre, strlen(pre));
    char boundary[128];
    snprintf(boundary, sizeof boundary, "%s", ct + strlen(pre));
    static char want[1 << 16];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(want + len, sizeof want - len,
                                "\r\n--%s\r\nContent-Type: %s\r\n"
                                "Content-Range: bytes %llu-%llu/%llu\r\n\r\n",
                                boundary, ctype, (unsigned long long)ab[i][0],
                                (unsigned long long)ab[i][1], (unsigned long long)size);
        memcpy(want + len, content + ab[i][0], (size_t)(ab[i][1] - ab[i][0] + 1));
        len += (size_t)(ab[i][1] - ab[i][0] + 1);
    }
    len += (size_t)snprintf(want + len, sizeof want - len, "\r\n--%s--\r\n", boundary);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", len);
    assert_string_equal(header_of(r, "Content-Length"), cl);
    assert_memory_equal(body_of(r), want, len);
}

/* Several ranges: one multipart/byteranges answer, parts in the order
 * asked, unsatisfiable ones left out (Twisted's static.File does the
 * same); from memory for a small file, read from disk for a large one. */
static void multiple_ranges(void **state)
{
    char ctype[128];
    snprintf(ctype, sizeof ctype, "%s", header_of(get("/digits", NULL), "Content-Type"));
    const uint64_t two[][2] = { { 0, 1 }, { 5, 6 } };
    expect_parts(get("/digits", "Range: bytes=0-1,5-6\r\n"), ctype, 10, two, 2, "0123456789");
    const uint64_t tail_first[][2] = { { 8, 9 }, { 0, 1 } };
    expect_parts(get("/digits", "Range: bytes= -2 , 30-40,, 0-1\r\n"), ctype, 10, tail_first, 2,
                 "0123456789");
    const uint64_t each[][2] = { { 0, 0 }, { 1, 1 }, { 2, 2 }, { 3, 3 }, { 4, 4 },
                                 { 5, 5 }, { 6, 6 }, { 7, 7 }, { 8, 8 }, { 9, 9 } };
    expect_parts(get("/digits", "Range: bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9\r\n"), ctype,
                 10, each, 10, "0123456789");

    static char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 23);
    put_bytes("root/big.txt", big, sizeof big);
    snprintf(ctype, sizeof ctype, "%s", header_of(get("/big.txt", NULL), "Content-Type"));
    const uint64_t far[][2] = { { 10, 19 }, { 60000, 60999 }, { 99990, 99999 } };
    expect_parts(get("/big.txt", "Range: bytes=10-19,60000-60999,-10\r\n"), ctype, sizeof big, far,
                 3, big);
    /* More than 256 KiB of parts: the whole file instead. */
    static char huge[400000];
    memset(huge, 'z', sizeof huge);
    put_bytes("root/huge.txt", huge, sizeof huge);
    const char *r = get("/huge.txt", "Range: bytes=0-199999,200000-\r\n");
    assert_int_equal(status_of(r), 200);
    assert_string_equal(header_of(r, "Content-Length"), "400000");
    drop_file("root/huge.txt");
    drop_file("root/big.txt");
}

/* ------------------------------------------------------------ conditionals */

static void conditionals(void **state)
{
    const char *r = get("/a.txt", NULL);
    char etag[128], lm[128], h[512];
    snprintf(etag, sizeof etag, "%s", header_of(r, "ETag"));
    snprintf(lm, sizeof lm, "%s", header_of(r, "Last-Modified"));
    snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
    r = get("/a.txt", h);
    assert_int_equal(status_of(r), 304);
    assert_string_equal(body_of(r), "");
    assert_string_equal(header_of(r, "ETag"), etag);
    assert_null(header_of(r, "Content-Length"));
    snprintf(h, sizeof h, "If-None-Match: \"x\", W/%s\r\n", etag);
    assert_int_equal(status_of(get("/a.txt", h)), 304);
    assert_int_equal(status_of(get("/a.txt", "If-None-Match: *\r\n")), 304);
    assert_int_equal(status_of(get("/a.txt", "If-None-Match: \"nope\"\r\n")), 200);
    snprintf(h, sizeof h, "If-Modified-Since: %s\r\n", lm);
    assert_int_equal(status_of(get("/a.txt", h)), 304);
    assert_int_equal(
        status_of(get("/a.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n")), 200);
    assert_int_equal(
        status_of(get("/a.txt", "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n")), 200);
    assert_int_equal(
        status_of(get("/a.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n")), 304);
    assert_int_equal(status_of(get("/a.txt", "If-Modified-Since: garbage\r\n")), 200);
    /* If-None-Match wins over If-Modified-Since. */
    snprintf(h, sizeof h, "If-None-Match: \"nope\"\r\nIf-Modified-Since: %s\r\n", lm);
    assert_int_equal(status_of(get("/a.txt", h)), 200);
}

/* ------------------------------------------------------------ the cache */

static void cache_revalidates(void **state)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/changing", root_dir);
    FILE *f = fopen(p, "w");
    fputs("one", f);
    fclose(f);
    assert_string_equal(body_of(get("/changing", NULL)), "one");
    f = fopen(p, "w");
    fputs("two!", f);
    fclose(f);
    /* Within cache_valid the old metadata may still be used... */
    tw_clock_advance(R, 1.5);
    /* ...after it, the change is seen. */
    assert_string_equal(body_of(get("/changing", NULL)), "two!");
    unlink(p);
    tw_clock_advance(R, 1.5);
    assert_int_equal(status_of(get("/changing", NULL)), 404);
}

static void single_file(void **state)
{
    site_free();
    R = tw_test_clock_new();
    char p[1024];
    snprintf(p, sizeof p, "%s/a.txt", root_dir);
    tw_resource *root = tw_resource_new(NULL), *file;
    assert_int_equal(tw_static_file_new(p, NULL, &file), 0);
    tw_resource_put_child(root, "", file);
    assert_int_equal(tw_site_new(R, root, NULL, &S), 0);
    assert_string_equal(body_of(get("/", NULL)), "plain text\n");
    assert_int_equal(status_of(get("/x", NULL)), 404);
    tw_resource *bad;
    assert_int_equal(tw_static_file_new("/no/such/dir", NULL, &bad), TW_ENOTFOUND);
}

/* ------------------------------------------------------------ 1 GiB, slow reader */

static long rss_kb(pid_t pid, const char *field)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return v;
}

static void slow_reader_constant_memory(void **state)
{
    const uint64_t size = 1ull << 30;
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/bigdir", top);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/gig.bin", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0); /* sparse: no disk used */
    close(fd);

    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec '%s' web --listen tcp:0:interface=127.0.0.1 --path '%s' 2>&1",
             tt_bin("twirl"), dir);
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    tt_child child;
    assert_int_equal(tt_child_start(&child, argv), 0);
    uint16_t port = 0;
    const char *line;
    while (!port && (line = tt_child_line(&child, 10)) != NULL) {
        const char *at = strstr(line, " listening on ");
        if (at)
            port = (uint16_t)atoi(strrchr(at, ':') + 1);
    }
    assert_true(port != 0);

    int s = tt_connect_loopback(port);
    assert_true(s >= 0);
    int rcv = 64 * 1024;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    const char req[] = "GET /gig.bin HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(write(s, req, sizeof req - 1), (ssize_t)(sizeof req - 1));

    long rss0 = rss_kb(child.pid, "VmRSS:");
    long max_rss = rss0;
    uint64_t got = 0;
    bool in_head = true;
    char buf[16384], head[4096];
    size_t hl = 0;
    double t0 = tt_now();
    int round = 0;
    while (got < size) {
        /* The slow phase: a stall, then small reads with pauses. */
        if (round == 10)
            usleep(1500 * 1000);
        else if (round < 400 && round % 20 == 0)
            usleep(20 * 1000);
        round++;
        ssize_t n = read(s, buf, round < 400 ? 4096 : sizeof buf);
        if (n <= 0)
            break;
        size_t off = 0;
        if (in_head) {
            size_t k = (size_t)n < sizeof head - hl ? (size_t)n : sizeof head - hl;
            memcpy(head + hl, buf, k);
            hl += k;
            char *e = memmem(head, hl, "\r\n\r\n", 4);
            if (!e)
                continue;
            size_t head_len = (size_t)(e + 4 - head);
            off = (size_t)n - (hl - head_len);
            head[head_len] = 0;
            assert_non_null(strstr(head, "Content-Length: 1073741824\r\n"));
            in_head = false;
        }
        got += (size_t)n - off;
        if (round % 256 == 0) {
            long r = rss_kb(child.pid, "VmRSS:");
            if (r > max_rss)
                max_rss = r;
        }
        if (tt_now() - t0 > 200)
            break;
    }
    close(s);
    long hwm = rss_kb(child.pid, "VmHWM:");
    double took = tt_now() - t0;
    assert_int_equal(tt_child_stop(&child, SIGTERM, 10, NULL) & 0xff7f, 0);
    fprintf(stderr, "1 GiB in %.1f s; server RSS %ld kB at start, max %ld kB, peak %ld kB\n", took,
            rss0, max_rss, hwm);
    assert_true(got == size);
    /* Flat: no more than a few MiB over the start, whatever the size. */
    assert_true(max_rss - rss0 < 8 * 1024);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hostile_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(hidden_shown_when_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(files_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(listing_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(multiple_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(conditionals, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_revalidates, setup, teardown),
        cmocka_unit_test_setup_teardown(single_file, setup, teardown),
        cmocka_unit_test(slow_reader_constant_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
