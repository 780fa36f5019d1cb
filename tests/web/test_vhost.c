/* ctest: label=unit timeout=60 backends=once */
/* Name-based virtual hosts (Twisted's NameVirtualHost) over the string
 * transport: the Host field (port, case and a trailing dot ignored; an
 * absolute-form target's authority first) picks the tree; leaves see the
 * whole path; the default host and 404 without one; children put on the
 * vhost answer every host; static directories per host; the API's errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "twirl/testing.h"
#include "twirl/web.h"

/* ------------------------------------------------------------ resources */

typedef struct named {
    tw_resource base;
    const char *name;
} named;

/* Answers "<name> pre=N post=[a][b]". */
static int named_get(tw_resource *r, tw_request *req)
{
    char out[512];
    int n = snprintf(out, sizeof out, "%s pre=%zu post=", ((named *)r)->name,
                     tw_request_prepath_count(req));
    for (size_t i = 0; i < tw_request_postpath_count(req) && n < 400; i++) {
        tw_http_slice s = tw_request_postpath(req, i);
        n += snprintf(out + n, sizeof out - (size_t)n, "[%.*s]", (int)s.len, s.ptr);
    }
    return tw_request_respond(req, 200, "text/plain", out, (size_t)n);
}

static const tw_resource_ops leaf_ops = {
    .size = sizeof(named), .is_leaf = true, .render_get = named_get, .render_options = named_get
};
static const tw_resource_ops page_ops = { .size = sizeof(named), .render_get = named_get };

static tw_resource *leaf(const char *name, const tw_resource_ops *ops)
{
    tw_resource *r = tw_resource_new(ops ? ops : &leaf_ops);
    assert_non_null(r);
    ((named *)r)->name = name;
    return r;
}

/* ------------------------------------------------------------ fixture */

typedef struct fx {
    tw_reactor *r;
    tw_site *site;
    tw_resource *vhost; /* borrowed from the site */
} fx;

static fx F;

static int64_t fixed_clock(void *arg)
{
    return 784111777;
}

/* default: a leaf "default"; a.test: a leaf; b.test: a container with ""
 * and "page"; [::1]: a leaf; /shared on the vhost itself. */
static int setup(void **state)
{
    memset(&F, 0, sizeof F);
    F.r = tw_test_clock_new();
    tw_resource *v;
    assert_int_equal(tw_vhost_resource_new(leaf("default", NULL), &v), 0);
    assert_int_equal(tw_vhost_add_host(v, "a.test", leaf("a", NULL)), 0);
    tw_resource *b = tw_resource_new(NULL);
    assert_int_equal(tw_resource_put_child(b, "", leaf("b-index", &page_ops)), 0);
    assert_int_equal(tw_resource_put_child(b, "page", leaf("b-page", &page_ops)), 0);
    assert_int_equal(tw_vhost_add_host(v, "B.Test", b), 0);
    assert_int_equal(tw_vhost_add_host(v, "[::1]", leaf("v6", NULL)), 0);
    assert_int_equal(tw_resource_put_child(v, "shared", leaf("shared", NULL)), 0);
    F.vhost = v;
    tw_site_options o;
    tw_site_options_init(&o);
    o.wall_clock = fixed_clock;
    assert_int_equal(tw_site_new(F.r, v, &o, &F.site), 0);
    return 0;
}

static int teardown(void **state)
{
    tw_site_free(F.site);
    tw_reactor_free(F.r);
    memset(&F, 0, sizeof F);
    return 0;
}

/* One request on a fresh connection: the response body (static buffer),
 * or the status line when it is not 200. */
static const char *ask(const char *request)
{
    static char body[1024];
    tw_test_conn_options o = { .factory = tw_site_factory(F.site), .reactor = F.r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    assert_non_null(c);
    assert_int_equal(tw_test_conn_feed_str(c, request), 0);
    tw_clock_advance(F.r, 0);
    const char *out = tw_test_conn_written(c, NULL);
    if (strncmp(out, "HTTP/1.1 200 ", 13) == 0) {
        const char *b = strstr(out, "\r\n\r\n");
        snprintf(body, sizeof body, "%s", b ? b + 4 : "");
    } else {
        const char *e = strstr(out, "\r\n");
        snprintf(body, sizeof body, "%.*s", e ? (int)(e - out) : (int)strlen(out), out);
    }
    tw_test_conn_free(c);
    return body;
}

static const char *get(const char *host, const char *path)
{
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    return ask(req);
}

/* ------------------------------------------------------------ tests */

static void host_picks_the_tree(void **state)
{
    assert_string_equal(get("a.test", "/p/q"), "a pre=0 post=[p][q]");
    assert_string_equal(get("A.TEST:8080", "/"), "a pre=0 post=[]");
    assert_string_equal(get("a.test.", "/x"), "a pre=0 post=[x]");
    assert_string_equal(get("b.test", "/"), "b-index pre=1 post=");
    assert_string_equal(get("b.test:80", "/page"), "b-page pre=1 post=");
    assert_string_equal(get("b.test", "/nope"), "HTTP/1.1 404 Not Found");
    assert_string_equal(get("[::1]:8080", "/z"), "v6 pre=0 post=[z]");
    assert_string_equal(get("[::1]", "/z"), "v6 pre=0 post=[z]");
    assert_string_equal(get("c.test", "/x/y"), "default pre=0 post=[x][y]");
    assert_string_equal(get("", "/x"), "default pre=0 post=[x]");
    assert_string_equal(get("a.test.evil", "/"), "default pre=0 post=[]");
    assert_string_equal(get("127.0.0.1:8080", "/"), "default pre=0 post=[]");
    /* HTTP/1.0 without Host: the default. */
    assert_string_equal(ask("GET /h HTTP/1.0\r\n\r\n"), "default pre=0 post=[h]");
    /* An absolute-form target names the host, whatever Host says. */
    assert_string_equal(ask("GET http://a.test:81/abs HTTP/1.1\r\nHost: b.test\r\n\r\n"),
                        "a pre=0 post=[abs]");
}

static void children_of_the_vhost_come_first(void **state)
{
    assert_string_equal(get("a.test", "/shared/1"), "shared pre=1 post=[1]");
    assert_string_equal(get("zzz", "/shared"), "shared pre=1 post=");
}

static void without_default_unknown_hosts_get_404(void **state)
{
    assert_int_equal(tw_vhost_set_default(F.vhost, NULL), 0);
    assert_string_equal(get("c.test", "/"), "HTTP/1.1 404 Not Found");
    assert_string_equal(ask("GET / HTTP/1.0\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_string_equal(get("a.test", "/"), "a pre=0 post=[]");
    assert_int_equal(tw_vhost_remove_host(F.vhost, "A.TEST."), 0);
    assert_string_equal(get("a.test", "/"), "HTTP/1.1 404 Not Found");
    assert_int_equal(tw_vhost_remove_host(F.vhost, "a.test"), TW_ENOTFOUND);
    /* Replacing a host drops the old resource. */
    assert_int_equal(tw_vhost_add_host(F.vhost, "b.test", leaf("b2", NULL)), 0);
    assert_string_equal(get("B.test", "/k"), "b2 pre=0 post=[k]");
}

static void asterisk_form_renders_the_host(void **state)
{
    assert_string_equal(ask("OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n"), "a pre=0 post=");
    /* b.test's container renders nothing itself. */
    assert_string_equal(ask("OPTIONS * HTTP/1.1\r\nHost: b.test\r\n\r\n"),
                        "HTTP/1.1 405 Method Not Allowed");
}

static void api_errors(void **state)
{
    tw_resource *plain = tw_resource_new(NULL);
    assert_int_equal(tw_vhost_add_host(plain, "a", leaf("x", NULL)), TW_EINVAL);
    assert_int_equal(tw_vhost_remove_host(plain, "a"), TW_EINVAL);
    assert_int_equal(tw_vhost_set_default(plain, leaf("x", NULL)), TW_EINVAL);
    tw_resource_unref(plain);
    const char *bad[] = { "", "a:80", "a/b", "a b", "a\r\nb", "[::1", "." };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (tw_vhost_add_host(F.vhost, bad[i], leaf("x", NULL)) != TW_EINVAL)
            fail_msg("'%s' was taken as a host name", bad[i]);
    assert_int_equal(tw_vhost_add_host(F.vhost, "ok", NULL), TW_EINVAL);
    assert_int_equal(tw_vhost_add_host(F.vhost, NULL, leaf("x", NULL)), TW_EINVAL);
}

static void vhost_loops_are_bounded(void **state)
{
    /* A vhost whose default is itself: the walk gives up, it never spins. */
    assert_int_equal(tw_vhost_set_default(F.vhost, tw_resource_ref(F.vhost)), 0);
    assert_string_equal(get("zzz", "/"), "HTTP/1.1 500 Internal Server Error");
    assert_int_equal(tw_vhost_set_default(F.vhost, NULL), 0); /* breaks the cycle */
    /* Vhosts in vhosts are fine. */
    tw_resource *inner;
    assert_int_equal(tw_vhost_resource_new(leaf("inner-default", NULL), &inner), 0);
    assert_int_equal(tw_vhost_set_default(F.vhost, inner), 0);
    assert_string_equal(get("zzz", "/q"), "inner-default pre=0 post=[q]");
}

static void static_directory_per_host(void **state)
{
    char tmpl[] = "/tmp/twirl-vhost-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char p[256];
    const char *names[] = { "one", "two" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        assert_int_equal(mkdir(p, 0700), 0);
        snprintf(p, sizeof p, "%s/%s/index.html", dir, names[i]);
        FILE *f = fopen(p, "w");
        fprintf(f, "site %s\n", names[i]);
        fclose(f);
        snprintf(p, sizeof p, "%s/%s/sub", dir, names[i]);
        assert_int_equal(mkdir(p, 0700), 0);
        snprintf(p, sizeof p, "%s/%s/sub/f.txt", dir, names[i]);
        f = fopen(p, "w");
        fprintf(f, "file of %s\n", names[i]);
        fclose(f);
        tw_resource *files;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        assert_int_equal(tw_static_file_new(p, NULL, &files), 0);
        snprintf(p, sizeof p, "%s.example", names[i]);
        assert_int_equal(tw_vhost_add_host(F.vhost, p, files), 0);
    }
    assert_string_equal(get("one.example", "/"), "site one\n");
    assert_string_equal(get("TWO.example:8080", "/"), "site two\n");
    assert_string_equal(get("two.example", "/sub/f.txt"), "file of two\n");
    assert_string_equal(get("one.example", "/sub/f.txt"), "file of one\n");
    assert_string_equal(get("one.example", "/../two/index.html"), "HTTP/1.1 404 Not Found");
    assert_string_equal(get("one.example", "/sub"), "HTTP/1.1 301 Moved Permanently");
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s/sub/f.txt", dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s/sub", dir, names[i]);
        rmdir(p);
        snprintf(p, sizeof p, "%s/%s/index.html", dir, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        rmdir(p);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(host_picks_the_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(children_of_the_vhost_come_first, setup, teardown),
        cmocka_unit_test_setup_teardown(without_default_unknown_hosts_get_404, setup, teardown),
        cmocka_unit_test_setup_teardown(asterisk_form_renders_the_host, setup, teardown),
        cmocka_unit_test_setup_teardown(api_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(vhost_loops_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(static_directory_per_host, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
