/* ctest: label=unit timeout=60 backends=once */
/* The endpoint-string grammar (Twisted's), every error message, the
 * built-in types' parameters, and the type registry. No sockets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/endpoint_internal.h"
#include "twirl/endpoint.h"

/* ------------------------------------------------------------ helpers */

/* Renders parsed arguments as "type|p1|p2|k1=v1|k2=v2" for comparison. */
static char *render_args(const char *desc)
{
    static char out[1024];
    tw_endpoint_args *a;
    char err[TW_ENDPOINT_ERR_MAX];
    int rc = tw_endpoint_parse(desc, &a, err, sizeof err);
    if (rc < 0) {
        snprintf(out, sizeof out, "ERROR %s", err);
        return out;
    }
    size_t o = (size_t)snprintf(out, sizeof out, "%s", tw_endpoint_args_type(a));
    for (size_t i = 0; i < tw_endpoint_args_npositional(a); i++)
        o += (size_t)snprintf(out + o, sizeof out - o, "|%s", tw_endpoint_args_positional(a, i));
    for (size_t i = 0; i < tw_endpoint_args_nkeywords(a); i++) {
        const char *k, *v;
        assert_int_equal(tw_endpoint_args_keyword(a, i, &k, &v), 0);
        o += (size_t)snprintf(out + o, sizeof out - o, "|%s=%s", k, v);
    }
    assert_null(tw_endpoint_args_positional(a, tw_endpoint_args_npositional(a)));
    const char *k, *v;
    assert_int_equal(tw_endpoint_args_keyword(a, tw_endpoint_args_nkeywords(a), &k, &v), TW_EINVAL);
    assert_string_equal(tw_endpoint_args_description(a), desc);
    tw_endpoint_args_free(a);
    return out;
}

/* What a server description becomes: its rendering, or "ERROR message". */
static char *server(const char *desc)
{
    static char out[1024];
    tw_server_endpoint *ep = (tw_server_endpoint *)1;
    char err[TW_ENDPOINT_ERR_MAX] = "untouched";
    int rc = tw_server_endpoint_from_string(NULL, desc, &ep, err, sizeof err);
    if (rc < 0) {
        assert_int_equal(rc, TW_ESYNTAX);
        assert_null(ep);
        snprintf(out, sizeof out, "ERROR %s", err);
        return out;
    }
    assert_string_equal(ep->description, desc);
    tw__server_endpoint_render(ep, out, sizeof out);
    tw_server_endpoint_free(ep);
    return out;
}

static char *client(const char *desc)
{
    static char out[1024];
    tw_client_endpoint *ep = (tw_client_endpoint *)1;
    char err[TW_ENDPOINT_ERR_MAX] = "untouched";
    int rc = tw_client_endpoint_from_string(NULL, desc, &ep, err, sizeof err);
    if (rc < 0) {
        assert_int_equal(rc, TW_ESYNTAX);
        assert_null(ep);
        snprintf(out, sizeof out, "ERROR %s", err);
        return out;
    }
    assert_string_equal(ep->description, desc);
    tw__client_endpoint_render(ep, out, sizeof out);
    tw_client_endpoint_free(ep);
    return out;
}

/* ------------------------------------------------------------ tokenizer */

static void fields_and_keywords(void **state)
{
    assert_string_equal(render_args("tcp:80"), "tcp|80");
    assert_string_equal(render_args("tcp:port=80:interface=127.0.0.1:backlog=5"),
                        "tcp|port=80|interface=127.0.0.1|backlog=5");
    assert_string_equal(render_args("tcp:80:127.0.0.1:5"), "tcp|80|127.0.0.1|5");
    assert_string_equal(render_args("tcp"), "tcp");
    /* Positional and keyword fields interleave; the type is the first
     * positional one, wherever it is. */
    assert_string_equal(render_args("port=80:tcp:x"), "tcp|x|port=80");
    /* Empty fields are fields. */
    assert_string_equal(render_args("x::"), "x||");
    assert_string_equal(render_args("x:a="), "x|a=");
    assert_string_equal(render_args("x:=v"), "x|=v");
    /* Duplicates are all kept by the tokenizer (binding takes the last). */
    assert_string_equal(render_args("x:a=1:a=2"), "x|a=1|a=2");
}

static void only_the_first_equals_splits(void **state)
{
    assert_string_equal(render_args("x:a=b=c"), "x|a=b=c");
    assert_string_equal(render_args("x:a==:b"), "x|b|a==");
    assert_string_equal(render_args("x:k=v=w:=z"), "x|k=v=w|=z");
}

static void backslash_escapes(void **state)
{
    assert_string_equal(render_args("unix:/tmp/a\\:b"), "unix|/tmp/a:b");
    assert_string_equal(render_args("x:k\\=v"), "x|k=v");
    assert_string_equal(render_args("x:k=a\\:b"), "x|k=a:b");
    assert_string_equal(render_args("x:a\\\\b"), "x|a\\b");
    assert_string_equal(render_args("x:a\\\\"), "x|a\\");
    assert_string_equal(render_args("x:\\q\\\\\\:"), "x|q\\:"); /* any byte, literally */
    assert_string_equal(render_args("t\\:cp:1"), "t:cp|1");
    assert_string_equal(render_args("tcp6:port=80:interface=\\:\\:1"),
                        "tcp6|port=80|interface=::1");
    assert_string_equal(render_args("x:a\\"), "ERROR x:a\\: trailing backslash escapes nothing");
    assert_string_equal(render_args("x:a\\\\\\"),
                        "ERROR x:a\\\\\\: trailing backslash escapes nothing");
}

static void unescaped_ipv6_values(void **state)
{
    assert_string_equal(render_args("tcp:8080:interface=::1"), "tcp|8080|interface=::1");
    assert_string_equal(render_args("tcp:host=fe80::1:port=80"), "tcp|host=fe80::1|port=80");
    assert_string_equal(render_args("tcp:host=::ffff:127.0.0.1:port=80"),
                        "tcp|host=::ffff:127.0.0.1|port=80");
    /* Greedy: a bare positional port after a bare IPv6 value is part of
     * the address when the whole is one ("2001:db8::1:80" is): use port=. */
    assert_string_equal(render_args("tcp:host=2001:db8::1:80"), "tcp|host=2001:db8::1:80");
    assert_string_equal(render_args("tcp:host=2001:db8::1:port=80"),
                        "tcp|host=2001:db8::1|port=80");
    assert_string_equal(render_args("tcp:bindAddress=::1:host=::1:port=1"),
                        "tcp|bindAddress=::1|host=::1|port=1");
    assert_string_equal(render_args("tcp:80:interface=[::1]"), "tcp|80|interface=[::1]");
    /* The longest run that is an address: "1:2" is not one; "::" is. */
    assert_string_equal(render_args("x:host=a:b"), "x|b|host=a");
    assert_string_equal(render_args("x:interface=1:2:3"), "x|2|3|interface=1");
    assert_string_equal(render_args("x:interface=::"), "x|interface=::");
    /* Other keys are left alone, as Twisted would. */
    assert_string_equal(render_args("x:other=::1"), "x||1|other=");
}

static void limits(void **state)
{
    char *big = malloc(TW_ENDPOINT_MAX_BYTES + 2);
    memset(big, 'a', TW_ENDPOINT_MAX_BYTES + 1);
    big[TW_ENDPOINT_MAX_BYTES + 1] = '\0';
    const char *r = render_args(big);
    assert_non_null(strstr(r, ": description too long (limit 4096 bytes)"));
    assert_non_null(strstr(r, "ERROR aaaa"));
    assert_non_null(strstr(r, "...: ")); /* the quoted description is cut */
    assert_true(strlen(r) < 200);
    big[TW_ENDPOINT_MAX_BYTES] = '\0';
    tw_endpoint_args *a;
    assert_int_equal(tw_endpoint_parse(big, &a, NULL, 0), 0);
    assert_int_equal(strlen(tw_endpoint_args_type(a)), TW_ENDPOINT_MAX_BYTES);
    tw_endpoint_args_free(a);
    /* 64 fields are fine; 65 are not. Escaped colons do not count. */
    char fields[256] = "x";
    for (int i = 1; i < TW_ENDPOINT_MAX_FIELDS; i++)
        strcat(fields, ":a");
    assert_string_equal(render_args(fields) + 0, render_args(fields)); /* parses */
    assert_int_equal(strncmp(render_args(fields), "x|a|a", 5), 0);
    strcat(fields, "\\:a");
    assert_int_equal(strncmp(render_args(fields), "x|a|a", 5), 0);
    strcat(fields, ":b");
    assert_non_null(strstr(render_args(fields), ": too many fields (65; limit 64)"));
    free(big);
    assert_string_equal(render_args(""), "ERROR : empty endpoint description");
    assert_string_equal(render_args("a=b:c=d"),
                        "ERROR a=b:c=d: no endpoint type (the first field without '=', e.g. tcp)");
}

static void messages_are_safe(void **state)
{
    /* Control bytes never reach a message; a short buffer is cut, not
     * overrun; no buffer at all is fine. */
    assert_string_equal(server("tcp:port=\x01\x7f"), "ERROR tcp:port=?"
                                                     "?: bad port '?"
                                                     "?' (0-65535)");
    char err[12];
    tw_server_endpoint *ep;
    assert_int_equal(tw_server_endpoint_from_string(NULL, "tcp:port=abc", &ep, err, sizeof err),
                     TW_ESYNTAX);
    assert_string_equal(err, "tcp:port=ab");
    assert_int_equal(tw_server_endpoint_from_string(NULL, "tcp:port=abc", &ep, NULL, 0),
                     TW_ESYNTAX);
    char one[1] = { 'x' };
    assert_int_equal(tw_server_endpoint_from_string(NULL, "tcp:port=abc", &ep, one, 1), TW_ESYNTAX);
    assert_int_equal(one[0], '\0');
    /* A long bad value is quoted cut. */
    char desc[400] = "tcp:port=";
    memset(desc + 9, '9', 300);
    const char *m = server(desc);
    assert_non_null(strstr(m, ": bad port '999"));
    assert_non_null(strstr(m, "...' (0-65535)"));
    assert_true(strlen(m) < TW_ENDPOINT_ERR_MAX);
    assert_int_equal(tw_server_endpoint_from_string(NULL, NULL, &ep, err, sizeof err), TW_ESYNTAX);
}

/* ------------------------------------------------------------ servers */

static void tcp_servers(void **state)
{
    assert_string_equal(server("tcp:8080"), "listen 0.0.0.0:8080 backlog=50");
    assert_string_equal(server("TCP:8080"), "listen 0.0.0.0:8080 backlog=50");
    assert_string_equal(server("tcp:port=8080"), "listen 0.0.0.0:8080 backlog=50");
    assert_string_equal(server("tcp:0"), "listen 0.0.0.0:0 backlog=50");
    assert_string_equal(server("tcp:8080:interface=127.0.0.1:backlog=7"),
                        "listen 127.0.0.1:8080 backlog=7");
    assert_string_equal(server("tcp:8080:127.0.0.1:7"), "listen 127.0.0.1:8080 backlog=7");
    assert_string_equal(server("tcp:8080:interface=::1:backlog=50"),
                        "listen [::1]:8080 backlog=50");
    assert_string_equal(server("tcp:8080:interface=\\:\\:1"), "listen [::1]:8080 backlog=50");
    assert_string_equal(server("tcp:8080:interface=::1"), "listen [::1]:8080 backlog=50");
    /* "::1:8080" is an address: */
    assert_string_equal(server("tcp:interface=::1:8080"),
                        "ERROR tcp:interface=::1:8080: missing port");
    assert_string_equal(server("tcp:8080:interface="), "listen 0.0.0.0:8080 backlog=50");
    assert_string_equal(server("tcp:backlog=1:port=65535:backlog=9"),
                        "listen 0.0.0.0:65535 backlog=9"); /* the last one wins */
    /* tcp6: (port, backlog, interface) — Twisted's order. */
    assert_string_equal(server("tcp6:8080"), "listen [::]:8080 backlog=50");
    assert_string_equal(server("tcp6:8080:5:\\:\\:1"), "listen [::1]:8080 backlog=5");
    assert_string_equal(server("tcp6:port=80:interface=::1"), "listen [::1]:80 backlog=50");
}

static void tcp_server_errors(void **state)
{
    assert_string_equal(server("tcp:port=abc"), "ERROR tcp:port=abc: bad port 'abc' (0-65535)");
    assert_string_equal(server("tcp:65536"), "ERROR tcp:65536: bad port '65536' (0-65535)");
    assert_string_equal(server("tcp:-1"), "ERROR tcp:-1: bad port '-1' (0-65535)");
    assert_string_equal(server("tcp: 80"), "ERROR tcp: 80: bad port ' 80' (0-65535)");
    assert_string_equal(server("tcp:99999999999"),
                        "ERROR tcp:99999999999: bad port '99999999999' (0-65535)");
    assert_string_equal(server("tcp:"), "ERROR tcp:: bad port '' (0-65535)");
    assert_string_equal(server("tcp"), "ERROR tcp: missing port");
    assert_string_equal(server("tcp:interface=127.0.0.1"),
                        "ERROR tcp:interface=127.0.0.1: missing port");
    assert_string_equal(server("tcp:80:colour=red"),
                        "ERROR tcp:80:colour=red: unknown option 'colour' for tcp");
    assert_string_equal(server("tcp:80:127.0.0.1:5:6"),
                        "ERROR tcp:80:127.0.0.1:5:6: unexpected argument '6' for tcp");
    assert_string_equal(server("tcp:80:port=81"),
                        "ERROR tcp:80:port=81: port given twice ('80' and port=81)");
    assert_string_equal(server("tcp:80:127.0.0.1:interface=::1"),
                        "ERROR tcp:80:127.0.0.1:interface=::1: interface given twice "
                        "('127.0.0.1' and interface=::1)");
    assert_string_equal(server("tcp:80:interface=example.com"),
                        "ERROR tcp:80:interface=example.com: bad interface 'example.com' "
                        "(a numeric IPv4 or IPv6 address)");
    assert_string_equal(server("tcp:80:interface=1:2"),
                        "ERROR tcp:80:interface=1:2: interface given twice ('2' and interface=1)");
    assert_string_equal(server("tcp:80:backlog=0"),
                        "ERROR tcp:80:backlog=0: bad backlog '0' (1-65535)");
    assert_string_equal(server("tcp:80:backlog=x"),
                        "ERROR tcp:80:backlog=x: bad backlog 'x' (1-65535)");
    assert_string_equal(server("tcp6:80:interface=127.0.0.1"),
                        "ERROR tcp6:80:interface=127.0.0.1: bad interface '127.0.0.1' "
                        "(tcp6 needs an IPv6 address)");
    assert_string_equal(server("tcp6:80:backlog=5:9"),
                        "ERROR tcp6:80:backlog=5:9: backlog given twice ('9' and backlog=5)");
    /* Types: unknown ones, and udp (not a stream endpoint, as in Twisted). */
    assert_string_equal(server("bogus:1"), "ERROR bogus:1: unknown server endpoint type 'bogus'");
    assert_string_equal(server("udp:53"), "ERROR udp:53: unknown server endpoint type 'udp'");
    assert_string_equal(server(":80"), "ERROR :80: unknown server endpoint type ''");
}

static void unix_servers(void **state)
{
    assert_string_equal(server("unix:/run/a.sock"),
                        "listen unix:/run/a.sock backlog=50 mode=666 lockfile=1");
    assert_string_equal(server("unix:/run/a.sock:mode=660:backlog=5:lockfile=0"),
                        "listen unix:/run/a.sock backlog=5 mode=660 lockfile=0");
    assert_string_equal(server("unix:address=/p:lockfile=7"),
                        "listen unix:/p backlog=50 mode=666 lockfile=1");
    assert_string_equal(server("unix:/p:600:9:0"), "listen unix:/p backlog=9 mode=600 lockfile=0");
    assert_string_equal(server("unix:/a\\:b"), "listen unix:/a:b backlog=50 mode=666 lockfile=1");
    assert_string_equal(server("unix:@abstract"),
                        "listen unix:@abstract backlog=50 mode=666 lockfile=1");
    assert_string_equal(server("unix"), "ERROR unix: missing path");
    assert_string_equal(server("unix:"), "ERROR unix:: bad path '' (1 to 107 bytes)");
    assert_string_equal(server("unix:/p:mode=999"),
                        "ERROR unix:/p:mode=999: bad mode '999' (octal permissions such as 660)");
    assert_string_equal(server("unix:/p:mode=17777"),
                        "ERROR unix:/p:mode=17777: bad mode '17777' (octal permissions such as "
                        "660)");
    assert_string_equal(server("unix:/p:mode=0"),
                        "ERROR unix:/p:mode=0: bad mode '0' (0 is not supported; use e.g. 600)");
    assert_string_equal(server("unix:/p:lockfile=yes"),
                        "ERROR unix:/p:lockfile=yes: bad lockfile 'yes' (0 or 1)");
    assert_string_equal(server("unix:/p:path=/q"),
                        "ERROR unix:/p:path=/q: unknown option 'path' for unix");
    char desc[300] = "unix:/";
    memset(desc + 6, 'x', 120);
    assert_non_null(strstr(server(desc), "(1 to 107 bytes)"));
}

/* ------------------------------------------------------------ clients */

static void tcp_clients(void **state)
{
    assert_string_equal(client("tcp:host=127.0.0.1:port=80"),
                        "connect host=127.0.0.1 port=80 timeout=30");
    assert_string_equal(client("tcp:127.0.0.1:80"), "connect host=127.0.0.1 port=80 timeout=30");
    assert_string_equal(client("tcp:host=example.com:80"),
                        "connect host=example.com port=80 timeout=30");
    assert_string_equal(client("tcp:port=80:example.com"),
                        "connect host=example.com port=80 timeout=30");
    assert_string_equal(client("tcp:host=127.0.0.1:port=80:timeout=5:bindAddress=127.0.0.2"),
                        "connect host=127.0.0.1 port=80 timeout=5 bind=127.0.0.2");
    assert_string_equal(client("tcp:host=::1:port=80:timeout=0.25:bindAddress=::1"),
                        "connect host=::1 port=80 timeout=0.25 bind=::1");
    assert_string_equal(client("tcp:localhost:1"), "connect host=localhost port=1 timeout=30");
    assert_string_equal(client("tcp:host=my_host.example.:1"),
                        "connect host=my_host.example. port=1 timeout=30");
}

static void tcp_client_errors(void **state)
{
    assert_string_equal(client("tcp:host=127.0.0.1"), "ERROR tcp:host=127.0.0.1: missing port");
    assert_string_equal(client("tcp:port=80"), "ERROR tcp:port=80: missing host");
    assert_string_equal(client("tcp"), "ERROR tcp: missing host");
    assert_string_equal(client("tcp:host=a b:port=1"),
                        "ERROR tcp:host=a b:port=1: bad host 'a b' (an IP address or a host name)");
    assert_string_equal(client("tcp:host=a..b:port=1"),
                        "ERROR tcp:host=a..b:port=1: bad host 'a..b' (an IP address or a host "
                        "name)");
    assert_string_equal(client("tcp:host=:port=1"),
                        "ERROR tcp:host=:port=1: bad host '' (an IP address or a host name)");
    assert_string_equal(client("tcp:host=x:port=0"),
                        "ERROR tcp:host=x:port=0: bad port '0' (1-65535)");
    assert_string_equal(client("tcp:port=abc:host=x"),
                        "ERROR tcp:port=abc:host=x: bad port 'abc' (1-65535)");
    assert_string_equal(client("tcp:host=x:port=1:timeout=-1"),
                        "ERROR tcp:host=x:port=1:timeout=-1: bad timeout '-1' (seconds, more "
                        "than 0)");
    assert_string_equal(client("tcp:host=x:port=1:timeout=0"),
                        "ERROR tcp:host=x:port=1:timeout=0: bad timeout '0' (seconds, more than "
                        "0)");
    assert_string_equal(client("tcp:host=x:port=1:timeout=inf"),
                        "ERROR tcp:host=x:port=1:timeout=inf: bad timeout 'inf' (seconds, more "
                        "than 0)");
    assert_string_equal(client("tcp:host=x:port=1:timeout=1e3"),
                        "ERROR tcp:host=x:port=1:timeout=1e3: bad timeout '1e3' (seconds, more "
                        "than 0)");
    assert_string_equal(client("tcp:host=x:port=1:bindAddress=foo"),
                        "ERROR tcp:host=x:port=1:bindAddress=foo: bad bindAddress 'foo' (a "
                        "numeric IPv4 or IPv6 address)");
    assert_string_equal(client("tcp:a:1:2"), "ERROR tcp:a:1:2: unexpected argument '2' for tcp");
    assert_string_equal(client("tcp:a:1:host=b"),
                        "ERROR tcp:a:1:host=b: host given twice ('a' and host=b)");
    assert_string_equal(client("tcp:a:1:port=2"),
                        "ERROR tcp:a:1:port=2: port given twice ('1' and port=2)");
    assert_string_equal(client("tcp:host=a:b:c"),
                        "ERROR tcp:host=a:b:c: host given twice ('b' and host=a)");
    assert_string_equal(client("tcp:host=a:b"), "ERROR tcp:host=a:b: bad port 'b' (1-65535)");
    assert_string_equal(client("tcp:host=x:port=1:interface=y"),
                        "ERROR tcp:host=x:port=1:interface=y: unknown option 'interface' for tcp");
    assert_string_equal(client("tcp6:host=::1:port=1"),
                        "ERROR tcp6:host=::1:port=1: unknown client endpoint type 'tcp6'");
    assert_string_equal(client("udp:host=x:port=1"),
                        "ERROR udp:host=x:port=1: unknown client endpoint type 'udp'");
}

static void unix_clients(void **state)
{
    assert_string_equal(client("unix:path=/run/a.sock"),
                        "connect unix:/run/a.sock timeout=30 lockfile=0");
    assert_string_equal(client("unix:/run/a.sock:timeout=2:lockfile=1"),
                        "connect unix:/run/a.sock timeout=2 lockfile=1");
    assert_string_equal(client("unix"), "ERROR unix: missing path");
    assert_string_equal(client("unix:path=/p:timeout=0"),
                        "ERROR unix:path=/p:timeout=0: bad timeout '0' (seconds, more than 0)");
    assert_string_equal(client("unix:/p:mode=1"),
                        "ERROR unix:/p:mode=1: unknown option 'mode' for unix");
    assert_string_equal(client("unix:/p:/q"),
                        "ERROR unix:/p:/q: unexpected argument '/q' for unix");
    assert_string_equal(client("unix:/p:path=/q"),
                        "ERROR unix:/p:path=/q: path given twice ('/p' and path=/q)");
    assert_string_equal(client("unix:/p:lockfile=x"),
                        "ERROR unix:/p:lockfile=x: bad lockfile 'x' (0 or 1)");
}

static void constructors_check_arguments(void **state)
{
    tw_client_endpoint *c;
    tw_server_endpoint *s;
    assert_int_equal(tw_tcp_client_endpoint_new(NULL, "a b", 1, NULL, &c), TW_EINVAL);
    assert_null(c);
    assert_int_equal(tw_tcp_client_endpoint_new(NULL, "h", 0, NULL, &c), TW_EINVAL);
    assert_int_equal(tw_tcp_client_endpoint_new(NULL, NULL, 1, NULL, &c), TW_EINVAL);
    assert_int_equal(tw_unix_client_endpoint_new(NULL, "", NULL, false, &c), TW_EINVAL);
    tw_address none = { 0 };
    assert_int_equal(tw_stream_server_endpoint_new(NULL, &none, NULL, &s), TW_EINVAL);
    tw_address a;
    tw_address_from_ip(&a, "127.0.0.1", 1, SOCK_STREAM);
    tw_connect_options o = { .timeout = 3, .bind = &a };
    assert_int_equal(tw_tcp_client_endpoint_new(NULL, "::1", 9, &o, &c), 0);
    assert_null(c->description);
    char buf[128];
    tw__client_endpoint_render(c, buf, sizeof buf);
    assert_string_equal(buf, "connect host=::1 port=9 timeout=3 bind=127.0.0.1");
    tw_client_endpoint_free(c);
    tw_client_endpoint_free(NULL);
    tw_server_endpoint_free(NULL);
}

/* ------------------------------------------------------------ registry */

typedef struct fake_server {
    tw_server_endpoint base;
    char seen[256];
} fake_server;

static int fake_frees;

static int fake_listen(tw_server_endpoint *ep, tw_factory *f, tw_port **out, char *err,
                       size_t errlen)
{
    snprintf(err, errlen, "fake cannot listen");
    return -EPERM;
}

static void fake_free(tw_server_endpoint *ep)
{
    fake_frees++;
    free(ep);
}

static const tw_server_endpoint_ops fake_ops = { "ssl", fake_listen, fake_free };

/* Twisted's _parseSSL in miniature: (port, privateKey="server.pem",
 * certKey=None, interface=""). */
static int parse_fake_ssl(tw_reactor *r, tw_endpoint_args *a, tw_server_endpoint **out, char *err,
                          size_t errlen)
{
    const char *port, *key, *cert, *iface;
    int rc;
    if ((rc = tw_endpoint_param(a, "port", 0, &port, err, errlen)) < 0 ||
        (rc = tw_endpoint_param(a, "privateKey", 1, &key, err, errlen)) < 0 ||
        (rc = tw_endpoint_param(a, "certKey", 2, &cert, err, errlen)) < 0 ||
        (rc = tw_endpoint_param(a, "interface", -1, &iface, err, errlen)) < 0 ||
        (rc = tw_endpoint_args_finish(a, err, errlen)) < 0)
        return rc;
    if (!port)
        return tw_endpoint_syntax_error(a, err, errlen, "missing %s", "port");
    fake_server *s = calloc(1, sizeof *s);
    s->base.ops = &fake_ops;
    s->base.reactor = r;
    snprintf(s->seen, sizeof s->seen, "%s %s port=%s key=%s cert=%s iface=%s",
             tw_endpoint_args_type(a), tw_endpoint_args_description(a), port,
             key ? key : "server.pem", cert ? cert : "-", iface ? iface : "-");
    *out = &s->base;
    return 0;
}

static int fake_client_made;

static int parse_fake_client(tw_reactor *r, tw_endpoint_args *a, tw_client_endpoint **out,
                             char *err, size_t errlen)
{
    fake_client_made++;
    return tw_endpoint_syntax_error(a, err, errlen, "not today");
}

static void registry_adds_types(void **state)
{
    assert_int_equal(tw_endpoint_register_server_type("fakessl", parse_fake_ssl), 0);
    tw_server_endpoint *ep;
    char err[TW_ENDPOINT_ERR_MAX];
    assert_int_equal(tw_server_endpoint_from_string(
                         NULL, "FAKESSL:443:privateKey=k.pem:interface=::1", &ep, err, sizeof err),
                     0);
    assert_string_equal(
        ((fake_server *)ep)->seen,
        "FAKESSL FAKESSL:443:privateKey=k.pem:interface=::1 port=443 key=k.pem cert=- "
        "iface=::1");
    tw_port *port = (tw_port *)1;
    assert_int_equal(tw_endpoint_listen_err(ep, NULL, &port, err, sizeof err), -EPERM);
    assert_null(port);
    assert_string_equal(err, "fake cannot listen");
    tw_server_endpoint_free(ep);
    assert_int_equal(fake_frees, 1);
    assert_int_equal(
        tw_server_endpoint_from_string(NULL, "fakessl:443:a.pem:c.pem", &ep, err, sizeof err), 0);
    assert_string_equal(((fake_server *)ep)->seen,
                        "fakessl fakessl:443:a.pem:c.pem port=443 key=a.pem cert=c.pem iface=-");
    tw_server_endpoint_free(ep);
    assert_string_equal(server("fakessl:443:a:b:c"),
                        "ERROR fakessl:443:a:b:c: unexpected argument 'c' for fakessl");
    assert_string_equal(server("fakessl:privateKey=x"), "ERROR fakessl:privateKey=x: missing port");
    assert_string_equal(server("fakessl:1:k:privateKey=x"),
                        "ERROR fakessl:1:k:privateKey=x: privateKey given twice ('k' and "
                        "privateKey=x)");

    /* Names: taken (any case, built-ins included), malformed, too many. */
    assert_int_equal(tw_endpoint_register_server_type("Fakessl", parse_fake_ssl), TW_EBUSY);
    assert_int_equal(tw_endpoint_register_server_type("tcp", parse_fake_ssl), TW_EBUSY);
    assert_int_equal(tw_endpoint_register_server_type("a:b", parse_fake_ssl), TW_EINVAL);
    assert_int_equal(tw_endpoint_register_server_type("", parse_fake_ssl), TW_EINVAL);
    assert_int_equal(tw_endpoint_register_server_type(NULL, parse_fake_ssl), TW_EINVAL);
    assert_int_equal(tw_endpoint_register_server_type("x", NULL), TW_EINVAL);
    assert_int_equal(
        tw_endpoint_register_server_type("a23456789012345678901234567890123", parse_fake_ssl),
        TW_EINVAL);

    /* Clients have their own table: "fakessl" is free there. */
    assert_int_equal(tw_endpoint_register_client_type("fakessl", parse_fake_client), 0);
    assert_int_equal(tw_endpoint_register_client_type("unix", parse_fake_client), TW_EBUSY);
    assert_string_equal(client("fakessl:x"), "ERROR fakessl:x: not today");
    assert_int_equal(fake_client_made, 1);

    int added = 0, rc = 0;
    for (int i = 0; i < 64 && rc == 0; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        if ((rc = tw_endpoint_register_server_type(name, parse_fake_ssl)) == 0)
            added++;
    }
    assert_int_equal(rc, TW_ELIMIT);
    assert_int_equal(added, 32 - 5); /* tcp, tcp6, unix, ssl (built in), fakessl */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fields_and_keywords),
        cmocka_unit_test(only_the_first_equals_splits),
        cmocka_unit_test(backslash_escapes),
        cmocka_unit_test(unescaped_ipv6_values),
        cmocka_unit_test(limits),
        cmocka_unit_test(messages_are_safe),
        cmocka_unit_test(tcp_servers),
        cmocka_unit_test(tcp_server_errors),
        cmocka_unit_test(unix_servers),
        cmocka_unit_test(tcp_clients),
        cmocka_unit_test(tcp_client_errors),
        cmocka_unit_test(unix_clients),
        cmocka_unit_test(constructors_check_arguments),
        cmocka_unit_test(registry_adds_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
