/* ctest: label=unit timeout=60 backends=once */
/* Tests of the HTTP helpers: field lookup, token lists, Connection tokens,
 * path percent-decoding (encoded NUL refused, encoded slash flagged), query
 * splitting and decoding, method names and reason phrases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "twirl/http_util.h"

#define S(lit) lit, sizeof(lit) - 1

static void token_eq(void **state)
{
    assert_true(tw_http_token_eq(S("Content-Length"), "content-length"));
    assert_true(tw_http_token_eq(S("HOST"), "host"));
    assert_false(tw_http_token_eq(S("Hos"), "host"));
    assert_false(tw_http_token_eq(S("Hostx"), "host"));
    assert_true(tw_http_token_eq("", 0, ""));
    /* Only ASCII letters fold: '[' (0x5b) is not '{' (0x7b). */
    assert_false(tw_http_token_eq(S("["), "{"));
}

static void header_find(void **state)
{
    static const char raw[] = "HostSet-Cookieset-cookieX";
    tw_http_header h[] = {
        { { raw, 4 }, { "a", 1 } },
        { { raw + 4, 10 }, { "1", 1 } },
        { { raw + 14, 10 }, { "2", 1 } },
        { { raw + 24, 1 }, { "", 0 } },
    };
    assert_ptr_equal(tw_http_header_find(h, 4, "host"), &h[0]);
    assert_ptr_equal(tw_http_header_find(h, 4, "HOST"), &h[0]);
    assert_null(tw_http_header_find(h, 4, "hos"));
    assert_null(tw_http_header_find(h, 0, "host"));
    const tw_http_header *c = tw_http_header_find(h, 4, "SET-COOKIE");
    assert_ptr_equal(c, &h[1]);
    c = tw_http_header_find_next(h, 4, c, "set-cookie");
    assert_ptr_equal(c, &h[2]);
    assert_null(tw_http_header_find_next(h, 4, c, "set-cookie"));
    assert_null(tw_http_header_find_next(h, 4, &h[3], "x"));
}

static void token_lists(void **state)
{
    assert_true(tw_http_list_has(S("gzip, deflate, br"), "deflate"));
    assert_true(tw_http_list_has(S(" ,, Gzip ;q=0.5,"), "gzip"));
    assert_false(tw_http_list_has(S("gzipx, xgzip"), "gzip"));
    assert_false(tw_http_list_has("", 0, "gzip"));
    assert_true(tw_http_list_has(S("a,b"), "b"));

    assert_int_equal(tw_http_connection_tokens(S("close")), TW_HTTP_CONN_CLOSE);
    assert_int_equal(tw_http_connection_tokens(S("Keep-Alive")), TW_HTTP_CONN_KEEP_ALIVE);
    assert_int_equal(tw_http_connection_tokens(S("keep-alive, Upgrade")),
                     TW_HTTP_CONN_KEEP_ALIVE | TW_HTTP_CONN_UPGRADE);
    assert_int_equal(tw_http_connection_tokens(S("\tclose ,\tfoo")), TW_HTTP_CONN_CLOSE);
    assert_int_equal(tw_http_connection_tokens(S("closed, xclose, keep-alivex")), 0);
    assert_int_equal(tw_http_connection_tokens("", 0), 0);
}

static int decode(const char *in, char *out, size_t *n, unsigned *flags)
{
    return tw_http_path_decode(in, strlen(in), out, strlen(in), n, flags);
}

static void path_decoding(void **state)
{
    char out[64];
    size_t n;
    unsigned flags;
    assert_int_equal(decode("/a%20b/c", out, &n, &flags), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "/a b/c", 6);
    assert_int_equal(flags, 0);

    assert_int_equal(decode("/a+b%2b", out, &n, &flags), 0);
    assert_memory_equal(out, "/a+b+", 5); /* '+' is not a space in paths */

    assert_int_equal(decode("/a%2Fb", out, &n, &flags), 0);
    assert_memory_equal(out, "/a/b", 4);
    assert_int_equal(flags, TW_HTTP_PATH_ENCODED_SLASH);
    assert_int_equal(decode("/a%2fb", out, &n, &flags), 0);
    assert_int_equal(flags, TW_HTTP_PATH_ENCODED_SLASH);
    assert_int_equal(decode("/a%5Cb", out, &n, &flags), 0);
    assert_int_equal(flags, TW_HTTP_PATH_ENCODED_BACKSLASH);
    assert_int_equal(decode("/a%0Ab%7f", out, &n, &flags), 0);
    assert_int_equal(flags, TW_HTTP_PATH_ENCODED_CONTROL);
    assert_int_equal(decode("/%C3%A9", out, &n, &flags), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "/\xc3\xa9", 3);
    assert_int_equal(flags, 0);

    /* Encoded NUL and malformed escapes are refused. */
    assert_int_equal(decode("/a%00b", out, &n, &flags), TW_EPROTO);
    assert_int_equal(decode("/a%", out, &n, &flags), TW_EPROTO);
    assert_int_equal(decode("/a%2", out, &n, &flags), TW_EPROTO);
    assert_int_equal(decode("/a%zz", out, &n, &flags), TW_EPROTO);
    assert_int_equal(decode("/a%g0", out, &n, &flags), TW_EPROTO);
    assert_int_equal(decode("/a%%41", out, &n, &flags), TW_EPROTO);

    /* In place, and with too small an output. */
    char buf[] = "/x%41%42y";
    assert_int_equal(tw_http_path_decode(buf, 9, buf, 9, &n, NULL), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "/xABy", 5);
    assert_int_equal(tw_http_path_decode("/abc", 4, out, 3, &n, NULL), TW_ELIMIT);
    assert_int_equal(tw_http_path_decode("/%41", 4, out, 2, &n, NULL), 0);
    assert_int_equal(tw_http_path_decode("", 0, out, 0, &n, &flags), 0);
    assert_int_equal(n, 0);
}

static void query_splitting(void **state)
{
    static const char q[] = "a=1&&b=&c&=d&e=x=y&";
    const char *cur = q, *end = q + sizeof q - 1;
    tw_http_slice k, v;
    assert_true(tw_http_query_next(&cur, end, &k, &v));
    assert_true(k.len == 1 && k.ptr[0] == 'a' && v.len == 1 && v.ptr[0] == '1');
    assert_true(tw_http_query_next(&cur, end, &k, &v));
    assert_true(k.len == 1 && k.ptr[0] == 'b' && v.ptr != NULL && v.len == 0);
    assert_true(tw_http_query_next(&cur, end, &k, &v));
    assert_true(k.len == 1 && k.ptr[0] == 'c' && v.ptr == NULL);
    assert_true(tw_http_query_next(&cur, end, &k, &v));
    assert_true(k.len == 0 && v.len == 1 && v.ptr[0] == 'd');
    assert_true(tw_http_query_next(&cur, end, &k, &v));
    assert_true(k.len == 1 && k.ptr[0] == 'e' && v.len == 3 && memcmp(v.ptr, "x=y", 3) == 0);
    assert_false(tw_http_query_next(&cur, end, &k, &v));
    assert_ptr_equal(cur, end);
    cur = end;
    assert_false(tw_http_query_next(&cur, end, &k, &v));

    char out[32];
    size_t n;
    assert_int_equal(tw_http_query_decode(S("a+b%2Bc%26"), out, sizeof out, &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "a b+c&", 6);
    assert_int_equal(tw_http_query_decode(S("%00"), out, sizeof out, &n), TW_EPROTO);
    assert_int_equal(tw_http_query_decode(S("%4"), out, sizeof out, &n), TW_EPROTO);
    assert_int_equal(tw_http_query_decode(S("abc"), out, 2, &n), TW_ELIMIT);
}

static void names_and_reasons(void **state)
{
    assert_string_equal(tw_http_method_name(TW_HTTP_GET), "GET");
    assert_string_equal(tw_http_method_name(TW_HTTP_PATCH), "PATCH");
    assert_string_equal(tw_http_method_name(TW_HTTP_CONNECT), "CONNECT");
    assert_null(tw_http_method_name(TW_HTTP_OTHER));
    assert_null(tw_http_method_name((tw_http_method)99));
    assert_string_equal(tw_http_status_reason(200), "OK");
    assert_string_equal(tw_http_status_reason(404), "Not Found");
    assert_string_equal(tw_http_status_reason(413), "Content Too Large");
    assert_string_equal(tw_http_status_reason(414), "URI Too Long");
    assert_string_equal(tw_http_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(tw_http_status_reason(505), "HTTP Version Not Supported");
    assert_string_equal(tw_http_status_reason(299), "Unknown");
    assert_string_equal(tw_http_status_reason(-1), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_eq),        cmocka_unit_test(header_find),
        cmocka_unit_test(token_lists),     cmocka_unit_test(path_decoding),
        cmocka_unit_test(query_splitting), cmocka_unit_test(names_and_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
