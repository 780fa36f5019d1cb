/* http_util.c — helpers around parsed HTTP messages. */
#include <string.h>

#include "twirl/http_util.h"

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool tw_http_token_eq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n; i++)
        if (lit[i] == 0 || lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
            return false;
    return lit[i] == 0;
}

const tw_http_header *tw_http_header_find(const tw_http_header *headers, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (headers[i].name.len == len && tw_http_token_eq(headers[i].name.ptr, len, name))
            return &headers[i];
    return NULL;
}

const tw_http_header *tw_http_header_find_next(const tw_http_header *headers, size_t n,
                                               const tw_http_header *prev, const char *name)
{
    size_t start = (size_t)(prev - headers) + 1;
    if (start >= n)
        return NULL;
    return tw_http_header_find(headers + start, n - start, name);
}

/* Calls the element walker: each element's leading token [t, t+tn). */
#define FOR_EACH_ELEMENT(value, n, t, tn, body)                         \
    do {                                                                \
        const char *c_ = (value), *e_ = (value) + (n);                  \
        while (c_ < e_) {                                               \
            while (c_ < e_ && (is_ows(*c_) || *c_ == ','))              \
                c_++;                                                   \
            const char *t = c_;                                         \
            while (c_ < e_ && *c_ != ',' && *c_ != ';' && !is_ows(*c_)) \
                c_++;                                                   \
            size_t tn = (size_t)(c_ - t);                               \
            while (c_ < e_ && *c_ != ',')                               \
                c_++;                                                   \
            if (tn) {                                                   \
                body                                                    \
            }                                                           \
        }                                                               \
    } while (0)

bool tw_http_list_has(const char *value, size_t n, const char *token)
{
    FOR_EACH_ELEMENT(value, n, t, tn, {
        if (tw_http_token_eq(t, tn, token))
            return true;
    });
    return false;
}

unsigned tw_http_connection_tokens(const char *value, size_t n)
{
    unsigned bits = 0;
    FOR_EACH_ELEMENT(value, n, t, tn, {
        /* By length first: this runs for every request that has the field. */
        if (tn == 5 && tw_http_token_eq(t, tn, "close"))
            bits |= TW_HTTP_CONN_CLOSE;
        else if (tn == 10 && tw_http_token_eq(t, tn, "keep-alive"))
            bits |= TW_HTTP_CONN_KEEP_ALIVE;
        else if (tn == 7 && tw_http_token_eq(t, tn, "upgrade"))
            bits |= TW_HTTP_CONN_UPGRADE;
    });
    return bits;
}

/* Shared by path and query decoding. */
static int pct_decode(const char *in, size_t n, char *out, size_t out_cap, size_t *out_len,
                      unsigned *flags, bool plus_is_space)
{
    unsigned seen = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)in[i];
        if (b == '%') {
            int hi, lo;
            if (n - i < 3 || (hi = hexval((unsigned char)in[i + 1])) < 0 ||
                (lo = hexval((unsigned char)in[i + 2])) < 0)
                return TW_EPROTO;
            b = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (b == 0)
                return TW_EPROTO;
            if (b == '/')
                seen |= TW_HTTP_PATH_ENCODED_SLASH;
            else if (b == '\\')
                seen |= TW_HTTP_PATH_ENCODED_BACKSLASH;
            else if (b < 0x20 || b == 0x7f)
                seen |= TW_HTTP_PATH_ENCODED_CONTROL;
        } else if (b == '+' && plus_is_space) {
            b = ' ';
        }
        if (o == out_cap)
            return TW_ELIMIT;
        out[o++] = (char)b; /* o <= i: in-place decoding reads ahead of writing */
    }
    *out_len = o;
    if (flags)
        *flags = seen;
    return 0;
}

int tw_http_path_decode(const char *in, size_t n, char *out, size_t out_cap, size_t *out_len,
                        unsigned *flags)
{
    return pct_decode(in, n, out, out_cap, out_len, flags, false);
}

int tw_http_query_decode(const char *in, size_t n, char *out, size_t out_cap, size_t *out_len)
{
    return pct_decode(in, n, out, out_cap, out_len, NULL, true);
}

bool tw_http_query_next(const char **cursor, const char *end, tw_http_slice *key,
                        tw_http_slice *value)
{
    const char *c = *cursor;
    while (c < end) {
        const char *amp = memchr(c, '&', (size_t)(end - c));
        const char *pe = amp ? amp : end;
        if (pe == c) {
            c = pe + 1;
            continue;
        }
        const char *eq = memchr(c, '=', (size_t)(pe - c));
        if (eq) {
            *key = (tw_http_slice){ c, (size_t)(eq - c) };
            *value = (tw_http_slice){ eq + 1, (size_t)(pe - eq - 1) };
        } else {
            *key = (tw_http_slice){ c, (size_t)(pe - c) };
            *value = (tw_http_slice){ NULL, 0 };
        }
        *cursor = amp ? amp + 1 : end;
        return true;
    }
    *cursor = end;
    return false;
}

const char *tw_http_method_name(tw_http_method m)
{
    static const char *const names[] = {
        [TW_HTTP_GET] = "GET",         [TW_HTTP_HEAD] = "HEAD",     [TW_HTTP_POST] = "POST",
        [TW_HTTP_PUT] = "PUT",         [TW_HTTP_DELETE] = "DELETE", [TW_HTTP_CONNECT] = "CONNECT",
        [TW_HTTP_OPTIONS] = "OPTIONS", [TW_HTTP_TRACE] = "TRACE",   [TW_HTTP_PATCH] = "PATCH",
    };
    if ((unsigned)m >= sizeof names / sizeof names[0])
        return NULL;
    return names[m];
}

const char *tw_http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
