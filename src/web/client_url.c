/* client_url.c — absolute http(s) URLs: parsing into slices, and resolving
 * a reference (a Location field) against a base (RFC 3986 §5.2). */
#include <stdlib.h>
#include <string.h>

#include "twirl/http_util.h"
#include "web/client_internal.h"

static bool is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* unreserved / sub-delims, the characters of a reg-name besides '%'. */
static const bool host_chars[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1,
    ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
};

static bool is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || host_chars[c];
}

static bool visible(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

static tw_http_slice slice(const char *p, size_t n)
{
    tw_http_slice s = { p, n };
    return s;
}

static int parse_host(const char *a, size_t n, tw_url *out)
{
    size_t hend;
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close || close == a + 1)
            return TW_EINVAL;
        for (const char *c = a + 1; c < close; c++)
            if (!is_hex((unsigned char)*c) && *c != ':' && *c != '.')
                return TW_EINVAL;
        out->host = slice(a + 1, (size_t)(close - a - 1));
        out->ipv6 = true;
        hend = (size_t)(close - a) + 1;
        if (hend < n && a[hend] != ':')
            return TW_EINVAL;
    } else {
        hend = 0;
        while (hend < n && a[hend] != ':') {
            unsigned char c = (unsigned char)a[hend];
            if (c == '%') {
                if (hend + 2 >= n || !is_hex((unsigned char)a[hend + 1]) ||
                    !is_hex((unsigned char)a[hend + 2]))
                    return TW_EINVAL;
                hend += 3;
                continue;
            }
            if (!is_host_char(c))
                return TW_EINVAL;
            hend++;
        }
        if (hend == 0)
            return TW_EINVAL;
        out->host = slice(a, hend);
    }
    out->port = out->https ? 443 : 80;
    if (hend < n) { /* ':' port */
        size_t digits = n - hend - 1;
        if (digits > 5)
            return TW_EINVAL;
        if (digits > 0) {
            unsigned long v = 0;
            for (size_t i = hend + 1; i < n; i++) {
                if (!is_digit((unsigned char)a[i]))
                    return TW_EINVAL;
                v = v * 10 + (unsigned long)(a[i] - '0');
            }
            if (v == 0 || v > 65535)
                return TW_EINVAL;
            out->port = (uint16_t)v;
        }
    }
    return 0;
}

int tw_url_parse(const char *url, size_t len, tw_url *out)
{
    memset(out, 0, sizeof *out);
    if (!url)
        return TW_EINVAL;
    size_t i = 0;
    while (i < len && url[i] != ':')
        i++;
    if (i == len)
        return TW_EINVAL;
    if (tw_http_token_eq(url, i, "http"))
        out->https = false;
    else if (tw_http_token_eq(url, i, "https"))
        out->https = true;
    else
        return TW_EINVAL;
    out->scheme = slice(url, i);
    i++;
    if (len - i < 2 || url[i] != '/' || url[i + 1] != '/')
        return TW_EINVAL;
    i += 2;
    for (size_t k = i; k < len; k++)
        if (!visible((unsigned char)url[k]))
            return TW_EINVAL;
    size_t a0 = i;
    while (i < len && url[i] != '/' && url[i] != '?' && url[i] != '#')
        i++;
    out->authority = slice(url + a0, i - a0);
    if (memchr(url + a0, '@', i - a0))
        return TW_EINVAL; /* userinfo: not for http(s) (RFC 9110 §4.2.4) */
    int rc = parse_host(url + a0, i - a0, out);
    if (rc < 0)
        return rc;
    size_t p0 = i;
    while (i < len && url[i] != '?' && url[i] != '#')
        i++;
    out->path = slice(url + p0, i - p0);
    if (i < len && url[i] == '?') {
        size_t q0 = ++i;
        while (i < len && url[i] != '#')
            i++;
        out->query = slice(url + q0, i - q0);
    }
    if (i < len && url[i] == '#') {
        i++;
        out->fragment = slice(url + i, len - i);
    }
    return 0;
}

/* --------------------------------------------------------------- joining */

/* A reference split as RFC 3986 Appendix B does; a part that is absent
 * has ptr NULL. */
typedef struct ref_parts {
    tw_http_slice scheme, authority, path, query, fragment;
} ref_parts;

static void split_ref(const char *s, size_t n, ref_parts *r)
{
    memset(r, 0, sizeof *r);
    size_t i = 0;
    if (n > 0 && is_alpha((unsigned char)s[0])) {
        size_t k = 1;
        while (k < n && (is_alpha((unsigned char)s[k]) || is_digit((unsigned char)s[k]) ||
                         s[k] == '+' || s[k] == '-' || s[k] == '.'))
            k++;
        if (k < n && s[k] == ':') {
            r->scheme = slice(s, k);
            i = k + 1;
        }
    }
    if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        size_t a0 = i + 2;
        i = a0;
        while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
            i++;
        r->authority = slice(s + a0, i - a0);
    }
    size_t p0 = i;
    while (i < n && s[i] != '?' && s[i] != '#')
        i++;
    r->path = slice(s + p0, i - p0);
    if (i < n && s[i] == '?') {
        size_t q0 = ++i;
        while (i < n && s[i] != '#')
            i++;
        r->query = slice(s + q0, i - q0);
    }
    if (i < n && s[i] == '#') {
        i++;
        r->fragment = slice(s + i, n - i);
    }
}

/* A growing output with a fixed capacity; overflow is remembered. */
typedef struct outbuf {
    char *p;
    size_t len, cap;
    bool over;
} outbuf;

static void put(outbuf *o, const char *s, size_t n)
{
    if (o->over || n >= o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* Appends path with its dot segments removed (RFC 3986 §5.2.4), working
 * segment by segment: "." is dropped, ".." drops the segment before it;
 * either one last leaves a trailing '/'. seg is scratch for n + 1 offsets. */
static void put_path_clean(outbuf *o, const char *path, size_t n, size_t *seg)
{
    bool absolute = n > 0 && path[0] == '/';
    size_t i = absolute ? 1 : 0, nseg = 0;
    bool trailing = false;
    /* seg[k] holds the start offset of kept segment k; its end is found
     * again from the path (segments never contain '/'). */
    while (i <= n) {
        size_t s = i;
        while (i < n && path[i] != '/')
            i++;
        size_t len = i - s;
        bool last = i >= n;
        if (len == 1 && path[s] == '.') {
            trailing = last;
        } else if (len == 2 && path[s] == '.' && path[s + 1] == '.') {
            if (nseg > 0)
                nseg--;
            trailing = last;
        } else {
            seg[nseg++] = s;
            trailing = false;
        }
        i++; /* past the '/' (or the end) */
        if (last)
            break;
    }
    if (absolute)
        put(o, "/", 1);
    for (size_t k = 0; k < nseg; k++) {
        size_t s = seg[k], e = s;
        while (e < n && path[e] != '/')
            e++;
        put(o, path + s, e - s);
        if (k + 1 < nseg)
            put(o, "/", 1);
    }
    if (trailing && nseg > 0)
        put(o, "/", 1);
}

/* Percent-encodes bytes outside 0x21-0x7E (and a '%' not starting an
 * escape) into a new buffer. */
static char *encode_ref(const char *ref, size_t n, size_t *out_n)
{
    char *e = malloc(n * 3 + 1);
    if (!e)
        return NULL;
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ref[i];
        bool escape_ok = c == '%' && i + 2 < n && is_hex((unsigned char)ref[i + 1]) &&
                         is_hex((unsigned char)ref[i + 2]);
        if (visible(c) && (c != '%' || escape_ok)) {
            e[k++] = (char)c;
        } else {
            e[k++] = '%';
            e[k++] = hex[c >> 4];
            e[k++] = hex[c & 15];
        }
    }
    e[k] = 0;
    *out_n = k;
    return e;
}

int tw_url_join(const char *base, const char *ref, size_t ref_len, char *out, size_t cap,
                size_t *out_len)
{
    if (!base || !ref || !out || cap == 0)
        return TW_EINVAL;
    tw_url b;
    if (tw_url_parse(base, strlen(base), &b) < 0)
        return TW_EINVAL;
    /* Leading and trailing blanks of a field value are already trimmed;
     * a reference with inner controls is still encoded, not refused. */
    size_t en;
    char *e = encode_ref(ref, ref_len, &en);
    if (!e)
        return TW_ENOMEM;
    ref_parts r;
    split_ref(e, en, &r);
    /* Scratch: the merged path and the segment offsets. */
    size_t merged_cap = b.path.len + r.path.len + 2;
    char *merged = malloc(merged_cap);
    size_t *seg = malloc(sizeof(size_t) * (merged_cap + 1));
    if (!merged || !seg) {
        free(e);
        free(merged);
        free(seg);
        return TW_ENOMEM;
    }
    outbuf o = { out, 0, cap, false };
    tw_http_slice scheme = r.scheme.ptr ? r.scheme : b.scheme;
    put(&o, scheme.ptr, scheme.len);
    put(&o, "://", 3);
    if (r.scheme.ptr || r.authority.ptr) {
        put(&o, r.authority.ptr ? r.authority.ptr : "", r.authority.len);
        put_path_clean(&o, r.path.ptr, r.path.len, seg);
        if (r.query.ptr) {
            put(&o, "?", 1);
            put(&o, r.query.ptr, r.query.len);
        }
    } else {
        put(&o, b.authority.ptr, b.authority.len);
        if (r.path.len == 0) {
            put(&o, b.path.ptr, b.path.len);
            tw_http_slice q = r.query.ptr ? r.query : b.query;
            if (q.ptr) {
                put(&o, "?", 1);
                put(&o, q.ptr, q.len);
            }
        } else {
            size_t m = 0;
            if (r.path.ptr[0] == '/') {
                memcpy(merged, r.path.ptr, r.path.len);
                m = r.path.len;
            } else {
                /* merge: the base path up to its last '/', or "/" */
                size_t keep = b.path.len;
                while (keep > 0 && b.path.ptr[keep - 1] != '/')
                    keep--;
                if (keep == 0) {
                    merged[m++] = '/';
                } else {
                    memcpy(merged, b.path.ptr, keep);
                    m = keep;
                }
                memcpy(merged + m, r.path.ptr, r.path.len);
                m += r.path.len;
            }
            put_path_clean(&o, merged, m, seg);
            if (r.query.ptr) {
                put(&o, "?", 1);
                put(&o, r.query.ptr, r.query.len);
            }
        }
    }
    if (r.fragment.ptr) {
        put(&o, "#", 1);
        put(&o, r.fragment.ptr, r.fragment.len);
    }
    free(e);
    free(merged);
    free(seg);
    if (o.over)
        return TW_ELIMIT;
    out[o.len] = 0;
    tw_url check;
    if (tw_url_parse(out, o.len, &check) < 0)
        return TW_EINVAL;
    if (out_len)
        *out_len = o.len;
    return 0;
}
