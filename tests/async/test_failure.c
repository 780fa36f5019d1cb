/* ctest: label=unit timeout=60 backends=once */
/* Failures: making, matching (check/trap, items 67-68), sharing (69),
 * formatting and rendering the cause chain (71), the static out-of-memory
 * failure, and the standard failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "async/async_internal.h"
#include "twirl/failure.h"

static void fields_and_raise_site(void **state)
{
    int line = __LINE__ + 1;
    tw_failure *f = tw_failure_new("myapp.db", 7, "row %d of %s", 3, "users");
    assert_string_equal(tw_failure_domain(f), "myapp.db");
    assert_int_equal(tw_failure_code(f), 7);
    assert_string_equal(tw_failure_message(f), "row 3 of users");
    assert_null(tw_failure_cause(f));
    assert_non_null(strstr(tw_failure_file(f), "test_failure.c"));
    assert_int_equal(tw_failure_line(f), line);
    assert_string_equal(tw_failure_func(f), "fields_and_raise_site");
    tw_failure_unref(f);
}

static void long_message_is_kept_whole(void **state)
{
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tw_failure *f = tw_failure_new("a", 1, "<%s>", big);
    assert_int_equal(strlen(tw_failure_message(f)), sizeof big + 1);
    tw_failure_unref(f);
}

static void standard_failures_use_error_codes(void **state)
{
    tw_failure *c = tw_failure_cancelled();
    tw_failure *t = tw_failure_timed_out();
    tw_failure *a = tw_failure_already_called();
    tw_failure *e = tw_failure_from_code(TW_ECONNECTION_LOST);
    tw_failure *dns = tw_failure_from_code(TW_EDNS);
    assert_true(tw_failure_is(c, TW_DOMAIN, TW_ECANCELED));
    assert_true(tw_failure_is(t, TW_DOMAIN, TW_ETIMEDOUT));
    assert_true(tw_failure_is(a, TW_DOMAIN, TW_EALREADY_CALLED));
    assert_true(tw_failure_is(e, TW_DOMAIN, TW_ECONNECTION_LOST));
    assert_true(tw_failure_is(dns, "twirl", TW_EDNS));
    assert_string_equal(tw_failure_message(c), tw_strerror(TW_ECANCELED));
    assert_string_equal(tw_failure_message(dns), tw_strerror(TW_EDNS));
    tw_failure *done = tw_failure_connection_done();
    assert_true(tw_failure_is(done, TW_DOMAIN, TW_ECONNECTION_DONE));
    assert_string_equal(tw_failure_message(done), "connection was closed cleanly");
    tw_failure *lost = tw_failure_connection_lost();
    assert_true(tw_failure_is(lost, TW_DOMAIN, TW_ECONNECTION_LOST));
    tw_failure_unref(lost);
    tw_failure *lookup = tw_failure_dns("example.invalid");
    assert_true(tw_failure_is(lookup, TW_DOMAIN, TW_EDNS));
    assert_string_equal(tw_failure_message(lookup), "host name lookup failed: example.invalid");
    tw_failure_unref(lookup);
    tw_failure_unref(c);
    tw_failure_unref(t);
    tw_failure_unref(a);
    tw_failure_unref(e);
    tw_failure_unref(dns);
    tw_failure_unref(done);
}

/* 67: trap returns the first listed kind that matches, "superclass" (any code
 * of a domain) included; none matching means -1 and the errback passes the
 * same failure on. */
static void trap_first_matching_kind(void **state)
{
    tw_failure *f = tw_failure_new("os", 5, "not implemented");
    int i = tw_failure_trap(f, { "exit", TW_ANY_CODE }, { "os", TW_ANY_CODE }, { "os", 5 });
    assert_int_equal(i, 1);
    assert_int_equal(tw_failure_trap(f, { "os", 5 }, { "os", TW_ANY_CODE }), 0);
    assert_int_equal(tw_failure_trap(f, { "os", 6 }, { "net", TW_ANY_CODE }), -1);
    tw_failure_unref(f);
}

/* 68: check never fails, returns -1 for no match. */
static void check_returns_index_or_minus_one(void **state)
{
    tw_failure *f = tw_failure_cancelled();
    tw_failure_kind kinds[] = { { "x", 1 },
                                { TW_DOMAIN, TW_ETIMEDOUT },
                                { TW_DOMAIN, TW_ECANCELED } };
    assert_int_equal(tw_failure_check(f, kinds, 3), 2);
    assert_int_equal(tw_failure_check(f, kinds, 2), -1);
    assert_int_equal(tw_failure_check(f, kinds, 0), -1);
    assert_false(tw_failure_is(NULL, TW_DOMAIN, TW_ANY_CODE));
    /* Domains compare by content, not by pointer. */
    char dom[] = "twirl";
    assert_true(tw_failure_is(f, dom, TW_ECANCELED));
    tw_failure_unref(f);
}

/* 69: a failure passed on is the same object (shared, by reference). */
static void sharing_is_by_reference(void **state)
{
    tw_failure *f = tw_failure_new("a", 1, "one");
    tw_failure *g = tw_failure_ref(f);
    assert_ptr_equal(f, g);
    tw_failure_unref(f);
    assert_string_equal(tw_failure_message(g), "one");
    tw_failure_unref(g);
    tw_failure_unref(NULL);
}

static void cause_chain_is_owned(void **state)
{
    tw_failure *root = tw_failure_new("disk", 28, "no space");
    tw_failure *mid = tw_failure_wrap(root, "db", 2, "write failed");
    tw_failure *top = tw_failure_wrap(mid, "app", 3, "save failed");
    assert_ptr_equal(tw_failure_cause(top), mid);
    assert_ptr_equal(tw_failure_cause(tw_failure_cause(top)), root);
    tw_failure_unref(top); /* frees all three */
}

static void long_cause_chain_frees_without_recursion(void **state)
{
    tw_failure *f = NULL;
    for (int i = 0; i < 100000; i++)
        f = tw_failure_wrap(f, "deep", i, "level %d", i);
    tw_failure_unref(f);
}

/* 71: the one-line format and the multi-line rendering. */
static void format_one_line(void **state)
{
    tw_failure *f = tw_failure_new_at("x.c", 12, "fn", "app", 4, NULL, "it %s", "broke");
    char buf[128];
    size_t n = tw_failure_format(f, buf, sizeof buf);
    assert_string_equal(buf, "app 4: it broke (x.c:12 in fn)");
    assert_int_equal(n, strlen(buf));
    char small[8];
    assert_int_equal(tw_failure_format(f, small, sizeof small), n);
    assert_string_equal(small, "app 4: ");
    assert_int_equal(tw_failure_format(f, NULL, 0), n);
    tw_failure_unref(f);
    /* No raise site, no message. */
    f = tw_failure_new_at(NULL, 0, NULL, "app", 5, NULL, NULL);
    tw_failure_format(f, buf, sizeof buf);
    assert_string_equal(buf, "app 5: ");
    tw_failure_unref(f);
    assert_int_equal(tw_failure_format(NULL, buf, sizeof buf), strlen("(no failure)"));
}

static void render_walks_causes(void **state)
{
    tw_failure *root = tw_failure_new_at("a.c", 1, "fa", "disk", 28, NULL, "no space");
    tw_failure *top = tw_failure_new_at("b.c", 2, "fb", "db", 2, root, "write failed");
    char *text = tw_failure_render(top);
    assert_string_equal(text, "db 2: write failed (b.c:2 in fb)\n"
                              "caused by: disk 28: no space (a.c:1 in fa)");
    free(text);
    tw_failure_unref(top);
}

static char logged[4096];
static int log_calls;

static void capture(tw_log_level level, const char *domain, const char *message, void *arg)
{
    (void)arg;
    log_calls++;
    snprintf(logged, sizeof logged, "%s [%s] %s", tw_log_level_name(level), domain, message);
}

static void log_renders_with_prefix(void **state)
{
    tw_log_set_handler(capture, NULL);
    tw_failure *f = tw_failure_new_at("c.c", 9, "fc", "app", 1, NULL, "bad");
    tw_failure_log(f, TW_LOG_ERROR, "while saving:");
    assert_int_equal(log_calls, 1);
    assert_string_equal(logged, "error [failure] while saving:\napp 1: bad (c.c:9 in fc)");
    tw_failure_unref(f);
    tw_log_set_handler(NULL, NULL);
}

/* The out-of-memory failure is static: counting on it does nothing and it
 * renders like any other. */
static void oom_failure_is_static(void **state)
{
    tw_failure *f = tw__failure_oom();
    assert_ptr_equal(tw_failure_ref(f), f);
    tw_failure_unref(f);
    tw_failure_unref(f);
    assert_int_equal(tw_failure_code(f), TW_ENOMEM);
    assert_true(tw_failure_is(f, TW_DOMAIN, TW_ENOMEM));
    char buf[64];
    tw_failure_format(f, buf, sizeof buf);
    assert_string_equal(buf, "twirl -12: out of memory");
    /* Wrapping it is fine too: the wrapper's last unref leaves it alone. */
    tw_failure *w = tw_failure_wrap(tw__failure_oom(), "app", 1, "could not");
    char *text = tw_failure_render(w);
    assert_non_null(strstr(text, "caused by: twirl -12: out of memory"));
    free(text);
    tw_failure_unref(w);
    assert_string_equal(tw_failure_message(tw__failure_oom()), "out of memory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fields_and_raise_site),
        cmocka_unit_test(long_message_is_kept_whole),
        cmocka_unit_test(standard_failures_use_error_codes),
        cmocka_unit_test(trap_first_matching_kind),
        cmocka_unit_test(check_returns_index_or_minus_one),
        cmocka_unit_test(sharing_is_by_reference),
        cmocka_unit_test(cause_chain_is_owned),
        cmocka_unit_test(long_cause_chain_frees_without_recursion),
        cmocka_unit_test(format_one_line),
        cmocka_unit_test(render_walks_causes),
        cmocka_unit_test(log_renders_with_prefix),
        cmocka_unit_test(oom_failure_is_static),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
