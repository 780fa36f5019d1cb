/* http_cases.c — the shared HTTP/1.1 test messages (see http_cases.h). */
#include "http_cases.h"

#include "twirl/error.h"

#define OK(n, w)                               \
    {                                          \
        n, w, sizeof(w) - 1, 0, 0, TW_HTTP_GET \
    }
#define BAD(n, w, st)                                   \
    {                                                   \
        n, w, sizeof(w) - 1, TW_EPROTO, st, TW_HTTP_GET \
    }
#define BIG(n, w, st)                                   \
    {                                                   \
        n, w, sizeof(w) - 1, TW_ELIMIT, st, TW_HTTP_GET \
    }
#define ROK(n, m, w)                 \
    {                                \
        n, w, sizeof(w) - 1, 0, 0, m \
    }
#define RBAD(n, m, w)                          \
    {                                          \
        n, w, sizeof(w) - 1, TW_EPROTO, 502, m \
    }

#define H "Host: example.com\r\n"

const http_case http_request_cases[] = {
    /* ---- valid */
    OK("get_minimal", "GET / HTTP/1.1\r\n" H "\r\n"),
    OK("get_http10_no_host", "GET /index.html HTTP/1.0\r\n\r\n"),
    OK("get_browser", "GET /wiki/Main_Page?action=view&x=1 HTTP/1.1\r\n"
                      "Host: en.example.org\r\n"
                      "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 "
                      "Firefox/115.0\r\n"
                      "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                      "Accept-Language: en-US,en;q=0.5\r\n"
                      "Accept-Encoding: gzip, deflate, br\r\n"
                      "Connection: keep-alive\r\n"
                      "Cookie: session=abc123; theme=dark\r\n"
                      "Upgrade-Insecure-Requests: 1\r\n"
                      "\r\n"),
    OK("post_content_length", "POST /submit HTTP/1.1\r\n" H "Content-Length: 11\r\n"
                              "Content-Type: text/plain\r\n\r\nhello world"),
    OK("post_cl_zero", "POST /x HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n"),
    OK("post_cl_leading_zeros", "POST /x HTTP/1.1\r\n" H "Content-Length: 005\r\n\r\nhello"),
    OK("post_chunked", "POST /upload HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\n\r\n"),
    OK("post_chunked_upper", "POST /u HTTP/1.1\r\n" H "transfer-encoding: CHUNKED\r\n\r\n"
                             "0\r\n\r\n"),
    OK("post_chunked_empty_elements",
       "POST /u HTTP/1.1\r\n" H "Transfer-Encoding: , chunked ,\r\n\r\n0\r\n\r\n"),
    OK("leading_empty_lines", "\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n"),
    OK("options_asterisk", "OPTIONS * HTTP/1.1\r\n" H "\r\n"),
    OK("connect_authority", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    OK("connect_ipv6", "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n"),
    OK("absolute_form", "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\n" H "\r\n"),
    OK("absolute_form_no_path", "GET https://example.com HTTP/1.1\r\n" H "\r\n"),
    OK("absolute_form_query_only", "GET http://example.com?q HTTP/1.1\r\n" H "\r\n"),
    OK("unknown_method", "PROPFIND /dav HTTP/1.1\r\n" H "Depth: 1\r\n\r\n"),
    OK("lowercase_method", "get / HTTP/1.1\r\n" H "\r\n"),
    OK("http12_as_11", "GET / HTTP/1.2\r\n" H "\r\n"),
    OK("empty_host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    OK("host_ipv6_port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
    OK("host_pct", "GET / HTTP/1.1\r\nHost: ex%41mple.com\r\n\r\n"),
    OK("value_ows_trimmed", "GET / HTTP/1.1\r\n" H "X-Pad: \t  padded value \t \r\n\r\n"),
    OK("value_empty", "GET / HTTP/1.1\r\n" H "X-Empty:\r\nX-Empty2:   \r\n\r\n"),
    OK("value_obs_text", "GET / HTTP/1.1\r\n" H "X-Latin: caf\xc3\xa9 \xff\x80\r\n\r\n"),
    OK("value_long_simd", "GET / HTTP/1.1\r\n" H
                          "X-Long: 0123456789abcdef0123456789abcdef0123456789abcdef\tend\r\n\r\n"),
    OK("name_all_tchars", "GET / HTTP/1.1\r\n" H "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"),
    OK("target_odd_vchars", "GET /a\"<>\\^`{|}b?q=[]@!$&'()*+,;= HTTP/1.1\r\n" H "\r\n"),
    OK("target_long_simd",
       "GET /0123456789/abcdefghij/0123456789/abcdefghij?x=1 HTTP/1.1\r\n" H "\r\n"),
    OK("connection_close", "GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n"),
    OK("http10_keep_alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
    OK("connection_two_fields", "GET / HTTP/1.1\r\n" H "Connection: foo\r\nConnection: "
                                "close, bar\r\n\r\n"),
    OK("upgrade_websocket", "GET /chat HTTP/1.1\r\n" H "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n"),
    OK("expect_continue", "PUT /f HTTP/1.1\r\n" H "Expect: 100-Continue\r\nContent-Length: 3\r\n"
                          "\r\nabc"),
    OK("double_slash_path", "GET //x//y HTTP/1.1\r\n" H "\r\n"),
    OK("pct_encoded_path", "GET /a%20b/%2Fc HTTP/1.1\r\n" H "\r\n"),
    OK("get_with_body_length", "GET / HTTP/1.1\r\n" H "Content-Length: 2\r\n\r\nhi"),
    OK("wrk_minimal", "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"),

    /* ---- framing smuggling */
    BAD("cl_and_te",
        "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400),
    BAD("te_and_cl",
        "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n0\r\n\r\n",
        400),
    BAD("cl_differ", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    BAD("cl_repeated_same",
        "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n"
        "\r\nhello",
        400),
    BAD("cl_list", "POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\nhello", 400),
    BAD("cl_plus", "POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\nhello", 400),
    BAD("cl_minus", "POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n", 400),
    BAD("cl_space_inside", "POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\n", 400),
    BAD("cl_hex", "POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 400),
    BAD("cl_trailing_junk", "POST / HTTP/1.1\r\n" H "Content-Length: 5a\r\n\r\n", 400),
    BAD("cl_empty", "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400),
    BAD("cl_decimal", "POST / HTTP/1.1\r\n" H "Content-Length: 5.0\r\n\r\n", 400),
    BAD("cl_overflow", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n", 400),
    BAD("cl_overflow_long",
        "POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999999999999\r\n\r\n", 400),
    BIG("cl_max_uint64", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551615\r\n\r\n",
        413),
    BAD("te_gzip_alone", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400),
    BAD("te_chunked_gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    BAD("te_gzip_chunked",
        "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n"
        "0\r\n\r\n",
        501),
    BAD("te_chunked_twice", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n",
        400),
    BAD("te_chunked_two_fields",
        "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        400),
    BAD("te_chunked_then_gzip_field",
        "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
        "Transfer-Encoding: gzip\r\n\r\n",
        400),
    BAD("te_empty", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400),
    BAD("te_commas_only", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: , ,\r\n\r\n", 400),
    BAD("te_chunked_param", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    BAD("te_space_inside", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chun ked\r\n\r\n", 400),
    BAD("te_xchunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 400),
    BAD("te_chunked_suffix", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunkedx\r\n\r\n", 400),
    BAD("te_identity", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 400),
    BAD("te_quoted", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    BAD("te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    BAD("te_vertical_tab",
        "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \x0b"
        "chunked\r\n\r\n",
        400),
    BAD("te_obs_fold", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n chunked\r\n\r\n", 400),
    BAD("te_name_space", "POST / HTTP/1.1\r\n" H "Transfer-Encoding : chunked\r\n\r\n", 400),

    /* ---- line syntax */
    BAD("obs_fold", "GET / HTTP/1.1\r\n" H "X-A: one\r\n two\r\n\r\n", 400),
    BAD("obs_fold_tab", "GET / HTTP/1.1\r\n" H "X-A: one\r\n\ttwo\r\n\r\n", 400),
    BAD("space_before_first_field", "GET / HTTP/1.1\r\n " H "\r\n", 400),
    BAD("bare_cr_in_value", "GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", 400),
    BAD("bare_cr_line_end", "GET / HTTP/1.1\r\n" H "X-A: a\rX-B: b\r\n\r\n", 400),
    BAD("bare_cr_in_request_line", "GET /a\r HTTP/1.1\r\n" H "\r\n", 400),
    BAD("bare_cr_end_of_head", "GET / HTTP/1.1\r\n" H "\r\r\n", 400),
    BAD("cr_cr_lf", "GET / HTTP/1.1\r\r\n" H "\r\n", 400),
    BAD("bare_lf_everywhere", "GET / HTTP/1.1\n" H "\n", 400),
    BAD("bare_lf_field", "GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", 400),
    BAD("bare_lf_end_of_head", "GET / HTTP/1.1\r\n" H "\n", 400),
    BAD("bare_lf_leading", "\nGET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("nul_in_value", "GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", 400),
    BAD("nul_in_name", "GET / HTTP/1.1\r\n" H "X\0A: b\r\n\r\n", 400),
    BAD("nul_in_target", "GET /a\0b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("nul_in_method", "G\0T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("ctl_in_value",
        "GET / HTTP/1.1\r\n" H "X-A: a\x01"
        "b\r\n\r\n",
        400),
    BAD("esc_in_value", "GET / HTTP/1.1\r\n" H "X-A: \x1b[31mred\r\n\r\n", 400),
    BAD("del_in_value",
        "GET / HTTP/1.1\r\n" H "X-A: a\x7f"
        "b\r\n\r\n",
        400),
    BAD("ctl_in_long_value",
        "GET / HTTP/1.1\r\n" H "X-A: 0123456789abcdef0123456789\x02"
        "abcdef0123456789\r\n\r\n",
        400),
    BAD("del_in_name",
        "GET / HTTP/1.1\r\n" H "X\x7f"
        "A: b\r\n\r\n",
        400),
    BAD("ctl_in_target",
        "GET /a\x01"
        "b HTTP/1.1\r\n" H "\r\n",
        400),
    BAD("del_in_target", "GET /a\x7f HTTP/1.1\r\n" H "\r\n", 400),
    BAD("high_byte_in_target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("tab_in_target", "GET /a\tb HTTP/1.1\r\n" H "\r\n", 400),
    BAD("space_in_target", "GET /a b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("fragment_in_target", "GET /a#frag HTTP/1.1\r\n" H "\r\n", 400),
    BAD("space_before_colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    BAD("tab_before_colon", "GET / HTTP/1.1\r\n" H "X-A\t: b\r\n\r\n", 400),
    BAD("empty_name", "GET / HTTP/1.1\r\n" H ": b\r\n\r\n", 400),
    BAD("no_colon", "GET / HTTP/1.1\r\n" H "X-A-b\r\n\r\n", 400),
    BAD("name_paren", "GET / HTTP/1.1\r\n" H "X(A): b\r\n\r\n", 400),
    BAD("name_quote", "GET / HTTP/1.1\r\n" H "X\"A: b\r\n\r\n", 400),
    BAD("name_slash", "GET / HTTP/1.1\r\n" H "X/A: b\r\n\r\n", 400),
    BAD("name_high_byte", "GET / HTTP/1.1\r\n" H "X\xc3\xa9: b\r\n\r\n", 400),

    /* ---- request line */
    BAD("method_paren", "G(T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method_tab", "GET\t/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method_missing", "/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("space_first", " GET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("tls_client_hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    BAD("two_spaces_after_method", "GET  / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("two_spaces_before_version", "GET /  HTTP/1.1\r\n" H "\r\n", 400),
    BAD("trailing_space", "GET / HTTP/1.1 \r\n" H "\r\n", 400),
    BAD("http09", "GET /\r\n\r\n", 400),
    BAD("no_target", "GET HTTP/1.1\r\n" H "\r\n", 400),
    BAD("version_lowercase", "GET / http/1.1\r\n" H "\r\n", 400),
    BAD("version_no_minor", "GET / HTTP/1\r\n" H "\r\n", 400),
    BAD("version_two_digit_major", "GET / HTTP/11.1\r\n" H "\r\n", 400),
    BAD("version_two_digit_minor", "GET / HTTP/1.10\r\n" H "\r\n", 400),
    BAD("version_space", "GET / HTTP/ 1.1\r\n" H "\r\n", 400),
    BAD("version_garbage", "GET / FOO/1.1\r\n" H "\r\n", 400),
    BAD("http20", "GET / HTTP/2.0\r\n" H "\r\n", 505),
    BAD("http30", "GET / HTTP/3.0\r\n" H "\r\n", 505),
    BAD("http09_versioned", "GET / HTTP/0.9\r\n" H "\r\n", 505),
    BAD("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    /* Found by the fuzzer: an error inside a line that never ends must be
     * seen whether the line arrives whole or byte by byte. */
    BAD("fuzz_bad_version_unterminated", "CONNECT exampPOST / HTlTP/1", 400),
    BAD("fuzz_space_after_partial_name", "GET / HTTP/1.1\r\nHost: x\r\nX-AA ", 400),

    /* ---- target forms */
    BAD("asterisk_with_get", "GET * HTTP/1.1\r\n" H "\r\n", 400),
    BAD("asterisk_suffix", "OPTIONS *x HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_origin_form", "CONNECT / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_no_port", "CONNECT example.com HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_empty_port", "CONNECT example.com: HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_port_range", "CONNECT example.com:99999 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_userinfo", "CONNECT user@example.com:443 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect_absolute", "CONNECT http://example.com:443/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("authority_form_with_get", "GET example.com:80 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute_userinfo", "GET http://user:pw@example.com/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute_empty_authority", "GET http:///x HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute_no_slashes", "GET http:example.com/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute_bad_port", "GET http://example.com:8x/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target_query_first", "GET ?x=1 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target_relative", "GET index.html HTTP/1.1\r\n" H "\r\n", 400),

    /* ---- Host */
    BAD("missing_host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    BAD("two_hosts", "GET / HTTP/1.1\r\n" H "Host: other.example\r\n\r\n", 400),
    BAD("two_hosts_same", "GET / HTTP/1.1\r\n" H H "\r\n", 400),
    BAD("host_with_space", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400),
    BAD("host_with_slash", "GET / HTTP/1.1\r\nHost: example.com/evil\r\n\r\n", 400),
    BAD("host_userinfo", "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400),
    BAD("host_bad_port", "GET / HTTP/1.1\r\nHost: example.com:http\r\n\r\n", 400),
    BAD("host_port_only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    BAD("host_bad_pct", "GET / HTTP/1.1\r\nHost: ex%zzample\r\n\r\n", 400),
    BAD("host_unclosed_bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
};
const size_t http_request_cases_n = sizeof http_request_cases / sizeof http_request_cases[0];

const http_case http_response_cases[] = {
    ROK("resp_200_length", TW_HTTP_GET,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
    ROK("resp_200_chunked", TW_HTTP_GET,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ROK("resp_http10_until_close", TW_HTTP_GET, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody"),
    ROK("resp_11_until_close", TW_HTTP_GET, "HTTP/1.1 200 OK\r\n\r\nbody"),
    ROK("resp_204", TW_HTTP_GET, "HTTP/1.1 204 No Content\r\n\r\n"),
    ROK("resp_304_with_length", TW_HTTP_GET,
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nETag: \"x\"\r\n\r\n"),
    ROK("resp_head_with_length", TW_HTTP_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
    ROK("resp_head_with_chunked", TW_HTTP_HEAD,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ROK("resp_100_continue", TW_HTTP_PUT, "HTTP/1.1 100 Continue\r\n\r\n"),
    ROK("resp_103_early_hints", TW_HTTP_GET,
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
    ROK("resp_101_switching", TW_HTTP_GET,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    ROK("resp_connect_200", TW_HTTP_CONNECT, "HTTP/1.1 200 Connection established\r\n\r\n"),
    ROK("resp_connect_407", TW_HTTP_CONNECT,
        "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
    ROK("resp_no_reason", TW_HTTP_GET, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    ROK("resp_empty_reason", TW_HTTP_GET, "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"),
    ROK("resp_reason_obs_text", TW_HTTP_GET,
        "HTTP/1.1 200 \xc3\x9c"
        "berall OK\r\nContent-Length: 0\r\n\r\n"),
    ROK("resp_te_gzip_until_close", TW_HTTP_GET,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxxxx"),
    ROK("resp_te_gzip_chunked", TW_HTTP_GET,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ROK("resp_http12", TW_HTTP_GET, "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ROK("resp_keep_alive_10", TW_HTTP_GET,
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"),
    ROK("resp_close", TW_HTTP_GET,
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n"
        "\r\nok"),
    ROK("resp_set_cookies", TW_HTTP_GET,
        "HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        "Content-Length: 0\r\n\r\n"),
    ROK("resp_leading_empty_line", TW_HTTP_GET, "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),

    RBAD("resp_cl_and_te", TW_HTTP_GET,
         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    RBAD("resp_two_cl", TW_HTTP_GET,
         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
    RBAD("resp_cl_negative", TW_HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    RBAD("resp_te_http10", TW_HTTP_GET,
         "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    RBAD("resp_te_chunked_twice", TW_HTTP_GET,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    RBAD("resp_http20", TW_HTTP_GET, "HTTP/2.0 200 OK\r\n\r\n"),
    RBAD("resp_status_two_digits", TW_HTTP_GET, "HTTP/1.1 20 OK\r\n\r\n"),
    RBAD("resp_status_four_digits", TW_HTTP_GET, "HTTP/1.1 2000 OK\r\n\r\n"),
    RBAD("resp_status_099", TW_HTTP_GET, "HTTP/1.1 099 Low\r\n\r\n"),
    RBAD("resp_status_600", TW_HTTP_GET, "HTTP/1.1 600 High\r\n\r\n"),
    RBAD("resp_status_alpha", TW_HTTP_GET, "HTTP/1.1 2x0 OK\r\n\r\n"),
    RBAD("resp_two_spaces", TW_HTTP_GET, "HTTP/1.1  200 OK\r\n\r\n"),
    RBAD("resp_lowercase_version", TW_HTTP_GET, "http/1.1 200 OK\r\n\r\n"),
    RBAD("resp_bare_lf", TW_HTTP_GET, "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    RBAD("resp_obs_fold", TW_HTTP_GET,
         "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    RBAD("resp_ctl_in_reason", TW_HTTP_GET, "HTTP/1.1 200 O\x01K\r\n\r\n"),
    RBAD("resp_nul_in_value", TW_HTTP_GET, "HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n"),
    RBAD("resp_space_before_colon", TW_HTTP_GET, "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
    RBAD("resp_http09", TW_HTTP_GET, "<html>hello</html>\r\n"),
};
const size_t http_response_cases_n = sizeof http_response_cases / sizeof http_response_cases[0];

#define COK(n, w, d, t)                 \
    {                                   \
        n, w, sizeof(w) - 1, 0, 0, d, t \
    }
#define CBAD(n, w, st)                              \
    {                                               \
        n, w, sizeof(w) - 1, TW_EPROTO, st, NULL, 0 \
    }
#define CBIG(n, w, st)                              \
    {                                               \
        n, w, sizeof(w) - 1, TW_ELIMIT, st, NULL, 0 \
    }

const chunked_case http_chunked_cases[] = {
    COK("simple", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0),
    COK("empty_body", "0\r\n\r\n", "", 0),
    COK("hex_upper_lower", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
        "0123456789abcdefghij", 0),
    COK("leading_zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", 0),
    COK("extensions",
        "5;name=value\r\nhello\r\n3;a;b=c ; d = \"q \\\" v\"\r\nabc\r\n0;last\r\n\r\n", "helloabc",
        0),
    COK("ext_quoted_semicolon", "2;x=\"a;b\"\r\nhi\r\n0\r\n\r\n", "hi", 0),
    COK("trailers", "4\r\nwiki\r\n0\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n", "wiki", 2),
    COK("trailer_empty_value", "1\r\nx\r\n0\r\nX-Empty:\r\n\r\n", "x", 1),
    COK("crlf_in_data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", 0),
    COK("binary_data", "3\r\n\0\xff\n\r\n0\r\n\r\n", "\0\xff\n", 0),

    CBAD("size_overflow", "10000000000000000\r\nx\r\n0\r\n\r\n", 400),
    CBAD("size_overflow_long", "fffffffffffffffffffffffff\r\n", 400),
    CBIG("size_max", "ffffffffffffffff\r\n", 413),
    CBAD("size_empty", "\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_not_hex", "g\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_negative", "-5\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_plus", "+5\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_0x", "0x5\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_leading_space", " 5\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_trailing_space", "5 \r\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_space_inside", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n", 400),
    CBAD("size_bare_lf", "5\nhello\r\n0\r\n\r\n", 400),
    CBAD("size_bare_cr", "5\rhello\r\n0\r\n\r\n", 400),
    CBAD("size_nul", "5\0\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("ext_empty_name", "5;\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("ext_empty_value", "5;a=\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("ext_unterminated_quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("ext_bare_lf_in_quote", "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("ext_ctl",
         "5;a\x01"
         "b\r\nhello\r\n0\r\n\r\n",
         400),
    CBAD("ext_trailing_space", "5;a \r\nhello\r\n0\r\n\r\n", 400),
    CBAD("data_missing_crlf", "5\r\nhelloX\r\n0\r\n\r\n", 400),
    CBAD("data_too_long", "3\r\nhello\r\n0\r\n\r\n", 400),
    CBAD("data_lf_only", "5\r\nhello\n0\r\n\r\n", 400),
    CBAD("data_cr_only", "5\r\nhello\r0\r\n\r\n", 400),
    CBAD("last_chunk_bare_lf", "0\n\r\n", 400),
    CBAD("final_bare_lf", "0\r\n\n", 400),
    CBAD("trailer_obs_fold", "0\r\nX-A: a\r\n b\r\n\r\n", 400),
    CBAD("trailer_bare_lf", "0\r\nX-A: a\n\r\n", 400),
    CBAD("trailer_no_colon", "0\r\nX-A\r\n\r\n", 400),
    CBAD("trailer_space_before_colon", "0\r\nX-A : a\r\n\r\n", 400),
    CBAD("trailer_nul", "0\r\nX-A: a\0\r\n\r\n", 400),
    CBAD("fuzz_trailer_space_after_partial_name", "0\r\nX-AA ", 400),
};
const size_t http_chunked_cases_n = sizeof http_chunked_cases / sizeof http_chunked_cases[0];
