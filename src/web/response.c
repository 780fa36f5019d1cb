/* response.c — the response writer (Twisted's Request.write / finish /
 * setHeader / setResponseCode): fields, the head, the body's framing,
 * finishing, and the ready-made answers (respond, errors, redirects).
 *
 * The head is built in the request's arena from a precomputed status line,
 * the site's cached Server and Date lines and the fields the resource set,
 * and goes out together with the first body bytes in one writev. A first
 * write of at most TW__HOLD_MAX bytes is held back, so that a body written in
 * one piece is sent with Content-Length in one system call at the finish;
 * otherwise the body is chunked (HTTP/1.1) or delimited by the close
 * (HTTP/1.0). Fields are checked as they are set: no CR, LF or other control
 * byte ever reaches the wire from a resource. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "twirl/http_util.h"
#include "web/web_internal.h"

/* ------------------------------------------------------------ response fields */

static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr(extra, c) != NULL;
}

static bool valid_name(const char *n, size_t len)
{
    if (len == 0 || len > 256)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)n[i]))
            return false;
    return true;
}

static bool valid_value(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static void trim(const char **v, size_t *len)
{
    while (*len && ((*v)[0] == ' ' || (*v)[0] == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

static bool writable_head(const tw_request *req)
{
    return (req->flags & RF_ACTIVE) && !(req->flags & (RF_HEAD_SENT | RF_FINISHED));
}

int tw_request_set_status(tw_request *req, int status)
{
    if (status < 102 || status > 599)
        return TW_EINVAL;
    if (!writable_head(req))
        return TW_EBUSY;
    req->status = status;
    return 0;
}

static int parse_u64(const char *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return TW_EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return TW_EINVAL;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return TW_EINVAL;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Room for one more response field (the array lives in the arena). */
static int rh_reserve(tw_request *req)
{
    if (req->nrh < req->rh_cap)
        return 0;
    size_t cap = req->rh_cap ? req->rh_cap * 2 : 8;
    tw__rheader *nrh = tw__arena_alloc(req, cap * sizeof *nrh);
    if (!nrh)
        return TW_ENOMEM;
    if (req->nrh)
        memcpy(nrh, req->rh, req->nrh * sizeof *nrh);
    req->rh = nrh;
    req->rh_cap = cap;
    return 0;
}

static int put_header(tw_request *req, const char *name, size_t nlen, const char *value,
                      size_t vlen, bool replace)
{
    if (!writable_head(req))
        return TW_EBUSY;
    if (!name || !value || !valid_name(name, nlen))
        return TW_EINVAL;
    trim(&value, &vlen);
    if (!valid_value(value, vlen))
        return TW_EINVAL;
    /* Framing belongs to the server. The lengths sort out most names
     * before any comparison. */
    switch (nlen) {
    case 17:
        if (tw_http_token_eq(name, nlen, "Transfer-Encoding"))
            return TW_EINVAL;
        break;
    case 14:
        if (tw_http_token_eq(name, nlen, "Content-Length")) {
            uint64_t n;
            if (parse_u64(value, vlen, &n) < 0)
                return TW_EINVAL;
            req->content_length = n;
            req->flags |= RF_LEN_SET;
            return 0;
        }
        break;
    case 10:
        if (tw_http_token_eq(name, nlen, "Connection")) {
            if (!tw_http_token_eq(value, vlen, "close"))
                return TW_EINVAL;
            req->flags |= RF_CLOSE;
            return 0;
        }
        break;
    case 6:
        if (tw_http_token_eq(name, nlen, "Server"))
            req->flags |= RF_SERVER_SET;
        break;
    case 4:
        if (tw_http_token_eq(name, nlen, "Date"))
            req->flags |= RF_DATE_SET;
        break;
    }
    if (replace && req->nrh) {
        size_t w = 0;
        for (size_t i = 0; i < req->nrh; i++)
            if (!(req->rh[i].nlen == nlen && tw_http_token_eq(req->rh[i].name, nlen, name)))
                req->rh[w++] = req->rh[i];
        req->nrh = w;
    }
    if (rh_reserve(req) < 0)
        return TW_ENOMEM;
    char *n = tw__arena_strdup(req, name, nlen), *v = tw__arena_strdup(req, value, vlen);
    if (!n || !v)
        return TW_ENOMEM;
    req->rh[req->nrh++] = (tw__rheader){ n, v, (uint32_t)nlen, (uint32_t)vlen };
    return 0;
}

int tw_request_set_header_n(tw_request *req, const char *name, size_t name_len, const char *value,
                            size_t value_len)
{
    return put_header(req, name, name_len, value, value_len, true);
}

int tw_request_add_header_n(tw_request *req, const char *name, size_t name_len, const char *value,
                            size_t value_len)
{
    return put_header(req, name, name_len, value, value_len, false);
}

int tw_request_set_header(tw_request *req, const char *name, const char *value)
{
    if (!name || !value)
        return TW_EINVAL;
    return put_header(req, name, strlen(name), value, strlen(value), true);
}

int tw_request_add_header(tw_request *req, const char *name, const char *value)
{
    if (!name || !value)
        return TW_EINVAL;
    return put_header(req, name, strlen(name), value, strlen(value), false);
}

bool tw_request_response_header(const tw_request *req, const char *name, tw_http_slice *value)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->nrh; i++) {
        if (req->rh[i].nlen == nlen && tw_http_token_eq(req->rh[i].name, nlen, name)) {
            if (value)
                *value = (tw_http_slice){ req->rh[i].value, req->rh[i].vlen };
            return true;
        }
    }
    return false;
}

int tw_request_set_content_length(tw_request *req, uint64_t length)
{
    if (!writable_head(req))
        return TW_EBUSY;
    req->content_length = length;
    req->flags |= RF_LEN_SET;
    return 0;
}

/* ------------------------------------------------------------ the head */

static size_t put_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_hex(char *out, uint64_t v)
{
    static const char hx[] = "0123456789abcdef";
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = hx[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

enum { SMALL_BODY = 1024 /* copied behind the head rather than gathered */ };

/* "HTTP/1.1 200 OK\r\n" for every status 100-599, made once per process. */
static char status_lines[500][48];
static uint8_t status_lens[500];
static pthread_once_t status_once = PTHREAD_ONCE_INIT;

static void make_status_lines(void)
{
    for (int st = 100; st < 600; st++) {
        int k = snprintf(status_lines[st - 100], sizeof status_lines[0], "HTTP/1.1 %d %s\r\n", st,
                         tw_http_status_reason(st));
        status_lens[st - 100] = (uint8_t)(k > 0 && k < 48 ? k : 0);
    }
}

static const char *status_line(int st, size_t *len)
{
    pthread_once(&status_once, make_status_lines);
    unsigned i = (unsigned)(st - 100);
    if (i >= 500)
        i = 500 - 1;
    *len = status_lens[i];
    return status_lines[i];
}

/* Decides the framing and builds the head in the arena. finishing: the
 * whole body is known (held_len bytes, or sent for HEAD). */
static char *build_head_room(tw_request *req, bool finishing, size_t room, size_t *out_len);

char *tw__request_build_head(tw_request *req, bool finishing, size_t *out_len)
{
    return build_head_room(req, finishing, 0, out_len);
}

/* The head, with room bytes free after it in the same block. */
static char *build_head_room(tw_request *req, bool finishing, size_t room, size_t *out_len)
{
    tw_site *s = req->site;
    int st = req->status;
    bool no_body_status = st < 200 || st == 204 || st == 304;
    if (no_body_status)
        req->flags |= RF_NO_BODY;
    bool send_length = false;
    if (req->flags & RF_LEN_SET) {
        send_length = st != 204 && !(st < 200);
    } else if (finishing) {
        if (!no_body_status) {
            req->content_length = (req->flags & RF_IS_HEAD) ? req->sent : req->held_len;
            send_length = true;
        }
    } else if (!no_body_status) {
        if (req->h.version_minor >= 1)
            req->flags |= RF_CHUNKED;
        else
            req->flags |= RF_UNTIL_CLOSE | RF_CLOSE;
    }
    if (req->h.expect_continue && !(req->flags & (RF_CONTINUE_SENT | RF_BODY_DONE)))
        req->flags |= RF_CLOSE;
    if (s->dying || (req->conn && req->conn->close_after))
        req->flags |= RF_CLOSE;

    size_t slen;
    const char *sline = status_line(st, &slen);
    size_t date_len = 0;
    const char *date = (req->flags & RF_DATE_SET) ? NULL : tw__site_date_line(s, &date_len);
    size_t need = slen + s->server_line_len + date_len + 64 + 26 + 2;
    for (size_t i = 0; i < req->nrh; i++)
        need += req->rh[i].nlen + req->rh[i].vlen + 4;
    char *buf = tw__arena_alloc(req, need + room);
    if (!buf)
        return NULL;
    char *p = put(buf, sline, slen);
    if (!(req->flags & RF_SERVER_SET))
        p = put(p, s->server_line, s->server_line_len);
    if (date)
        p = put(p, date, date_len);
    for (size_t i = 0; i < req->nrh; i++) {
        p = put(p, req->rh[i].name, req->rh[i].nlen);
        p = PUT_LIT(p, ": ");
        p = put(p, req->rh[i].value, req->rh[i].vlen);
        p = PUT_LIT(p, "\r\n");
    }
    if (send_length) {
        p = PUT_LIT(p, "Content-Length: ");
        p += put_u64(p, req->content_length);
        p = PUT_LIT(p, "\r\n");
    } else if (req->flags & RF_CHUNKED) {
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
    }
    if (req->flags & RF_CLOSE)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (req->h.version_minor == 0)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    req->flags |= RF_HEAD_SENT;
    *out_len = (size_t)(p - buf);
    return buf;
}

int tw__request_check_open(tw_request *req)
{
    if (!(req->flags & RF_ACTIVE) || (req->flags & RF_FINISHED))
        return TW_EINVAL;
    tw_transport *t = tw__request_transport(req);
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return TW_ECLOSED;
    return 0;
}

static int send_iov(tw_request *req, struct iovec *iov, int n)
{
    tw_transport *t = tw__request_transport(req);
    if (n == 1)
        return tw_transport_write(t, iov[0].iov_base, iov[0].iov_len);
    return tw_transport_writev(t, iov, n);
}

/* The head plus held bytes plus data, as the framing says. */
int tw__request_send_first(tw_request *req, bool finishing, const void *data, size_t len)
{
    size_t hlen;
    /* A small body is copied behind the head: one buffer is one send(2),
     * a little cheaper in the kernel than a gathered sendmsg. */
    size_t small = req->held_len + len;
    if (small > SMALL_BODY || !(req->flags & RF_LEN_SET || finishing))
        small = 0;
    char *head = build_head_room(req, finishing, small, &hlen);
    if (!head)
        return TW_ENOMEM;
    if (small && !(req->flags & (RF_NO_BODY | RF_CHUNKED))) {
        if (req->held_len)
            memcpy(head + hlen, req->held, req->held_len);
        if (len)
            memcpy(head + hlen + req->held_len, data, len);
        hlen += req->held_len + len;
        req->held = NULL;
        req->held_len = 0;
        return tw_transport_write(tw__request_transport(req), head, hlen);
    }
    struct iovec iov[7];
    int n = 0;
    iov[n++] = (struct iovec){ head, hlen };
    bool body = !(req->flags & RF_NO_BODY);
    char h1[24], h2[24];
    if (body && (req->flags & RF_CHUNKED)) {
        if (req->held_len) {
            size_t k = put_hex(h1, req->held_len);
            h1[k++] = '\r';
            h1[k++] = '\n';
            iov[n++] = (struct iovec){ h1, k };
            iov[n++] = (struct iovec){ (void *)req->held, req->held_len };
            iov[n++] = (struct iovec){ (void *)"\r\n", 2 };
        }
        if (len) {
            size_t k = put_hex(h2, len);
            h2[k++] = '\r';
            h2[k++] = '\n';
            iov[n++] = (struct iovec){ h2, k };
            iov[n++] = (struct iovec){ (void *)data, len };
            iov[n++] = (struct iovec){ (void *)"\r\n", 2 };
        }
    } else if (body) {
        if (req->held_len)
            iov[n++] = (struct iovec){ (void *)req->held, req->held_len };
        if (len)
            iov[n++] = (struct iovec){ (void *)data, len };
    }
    req->held = NULL;
    req->held_len = 0;
    return send_iov(req, iov, n);
}

static int write_body(tw_request *req, const void *data, size_t len)
{
    int rc = tw__request_check_open(req);
    if (rc < 0)
        return rc;
    if (len == 0)
        return 0;
    if (req->flags & RF_FILE)
        return TW_EBUSY;
    if ((req->flags & RF_LEN_SET) && req->sent + len > req->content_length) {
        tw_log(TW_LOG_ERROR, "web", "response body longer than its Content-Length (%llu)",
               (unsigned long long)req->content_length);
        return TW_EINVAL;
    }
    if (req->flags & RF_NO_BODY) {
        req->sent += len; /* HEAD: counted for the Content-Length, not sent */
        return 0;
    }
    if (!(req->flags & RF_HEAD_SENT)) {
        if (!(req->flags & RF_LEN_SET) && !req->held && len <= TW__HOLD_MAX) {
            char *copy = tw__arena_alloc(req, len);
            if (copy) {
                memcpy(copy, data, len);
                req->held = copy;
                req->held_len = len;
                req->sent += len;
                return 0;
            }
        }
        req->sent += len;
        return tw__request_send_first(req, false, data, len);
    }
    req->sent += len;
    if (req->flags & RF_CHUNKED) {
        char hx[24];
        size_t k = put_hex(hx, len);
        hx[k++] = '\r';
        hx[k++] = '\n';
        struct iovec iov[3] = { { hx, k }, { (void *)data, len }, { (void *)"\r\n", 2 } };
        return tw_transport_writev(tw__request_transport(req), iov, 3);
    }
    return tw_transport_write(tw__request_transport(req), data, len);
}

int tw_request_write(tw_request *req, const void *data, size_t len)
{
    return write_body(req, data, len);
}

int tw_request_write_ref(tw_request *req, const void *data, size_t len, tw_free_fn release,
                         void *arg)
{
    int rc = tw__request_check_open(req);
    if (rc == 0 && len > 0 && (req->flags & RF_HEAD_SENT) &&
        !(req->flags & (RF_CHUNKED | RF_NO_BODY | RF_FILE)) &&
        !((req->flags & RF_LEN_SET) && req->sent + len > req->content_length)) {
        req->sent += len;
        return tw_transport_write_ref(tw__request_transport(req), data, len, release, arg);
    }
    if (rc == 0)
        rc = write_body(req, data, len);
    if (release)
        release(arg);
    return rc;
}

/* ------------------------------------------------------------ finishing */

void tw__request_fire_finish(tw_request *req, const tw_failure *lost)
{
    tw_deferred *d = req->finish_d;
    if (!d)
        return;
    req->finish_d = NULL;
    if (lost)
        tw_deferred_errback(d, tw_failure_ref((tw_failure *)lost));
    else
        tw_deferred_callback(d, TW_VALUE_NONE);
    tw_deferred_unref(d);
}

static void complete(tw_request *req)
{
    tw_transport *t = tw__request_transport(req);
    req->flags |= RF_FINISHED;
    req->flags &= ~RF_ACTIVE;
    if (req->producer) {
        req->producer = NULL;
        if (t)
            tw_transport_unregister_producer(t);
    }
    if (req->site->o.access_log)
        tw__access_log_request(req->site->o.access_log, req->site, req);
    if ((req->flags & RF_BODY_READING) && !(req->flags & RF_BODY_END_SENT)) {
        tw_failure *f =
            tw_failure_new(TW_DOMAIN, TW_ECANCELED, "the response was finished before the body");
        tw__request_body_end(req, f);
        tw_failure_unref(f);
    }
    if (req->finish_d) {
        if (req->conn) {
            tw__request_fire_finish(req, NULL);
        } else {
            tw_failure *f = tw_failure_connection_lost();
            tw__request_fire_finish(req, f);
            tw_failure_unref(f);
        }
    }
    tw__request_drop_owned(req);
    if (req->body_buf && req->body_cap > 64 * 1024) {
        free(req->body_buf);
        req->body_buf = NULL;
        req->body_cap = 0;
    }
    req->body = (tw_http_slice){ NULL, 0 };
    if (req->file_buf && !req->file_buf_busy) {
        free(req->file_buf);
        req->file_buf = NULL;
    }
    tw__hconn *c = req->conn;
    if (c) {
        tw__conn_request_done(c, req);
    } else {
        tw__request_maybe_free(req);
    }
}

int tw_request_finish(tw_request *req)
{
    if (!(req->flags & RF_ACTIVE) || (req->flags & RF_FINISHED)) {
        tw_log(TW_LOG_ERROR, "web", "tw_request_finish on a request already finished");
        return TW_EINVAL;
    }
    int rc = tw__request_check_open(req);
    if (rc == 0) {
        if (!(req->flags & RF_HEAD_SENT)) {
            if ((req->flags & RF_LEN_SET) && !(req->flags & RF_IS_HEAD) &&
                req->held_len != req->content_length && req->status != 304 && req->status != 204) {
                tw_log(TW_LOG_ERROR, "web",
                       "response body of %zu bytes, Content-Length %llu: "
                       "aborting",
                       req->held_len, (unsigned long long)req->content_length);
                tw_transport_abort_connection(tw__request_transport(req));
                rc = TW_ECLOSED;
            } else {
                rc = tw__request_send_first(req, true, NULL, 0);
            }
        } else if ((req->flags & RF_CHUNKED) && !(req->flags & RF_NO_BODY)) {
            rc = tw_transport_write(tw__request_transport(req), "0\r\n\r\n", 5);
        } else if ((req->flags & RF_LEN_SET) && !(req->flags & RF_NO_BODY) &&
                   req->sent < req->content_length) {
            tw_log(TW_LOG_ERROR, "web",
                   "response body of %llu bytes, Content-Length %llu: "
                   "aborting",
                   (unsigned long long)req->sent, (unsigned long long)req->content_length);
            tw_transport_abort_connection(tw__request_transport(req));
            rc = TW_ECLOSED;
        }
    }
    complete(req);
    return rc;
}

int tw_request_respond(tw_request *req, int status, const char *content_type, const void *body,
                       size_t len)
{
    if (!writable_head(req))
        return (req->flags & RF_ACTIVE) ? TW_EBUSY : TW_EINVAL;
    if (req->held_len || req->sent)
        return TW_EBUSY; /* part of a body was written already */
    if (status < 102 || status > 599)
        return TW_EINVAL;
    req->status = status;
    if (content_type) {
        /* Sent within this call: no copy needed, only the check. */
        size_t n = strlen(content_type);
        if (!valid_value(content_type, n))
            return TW_EINVAL;
        int rc = req->nrh ? put_header(req, "Content-Type", 12, content_type, n, true)
                          : tw__request_header_static(req, "Content-Type", 12, content_type, n);
        if (rc < 0)
            return rc;
    }
    if (!(req->flags & RF_LEN_SET)) {
        req->content_length = len;
        req->flags |= RF_LEN_SET;
    }
    int rc = tw__request_check_open(req);
    if (rc == 0) {
        if (req->content_length != len && !(req->flags & RF_IS_HEAD)) {
            rc = TW_EINVAL;
        } else {
            req->sent = len;
            rc = tw__request_send_first(req, true, body, len);
        }
    }
    if (rc == TW_EINVAL)
        return rc;
    int frc = tw_request_finish(req);
    return rc < 0 ? rc : frc;
}

char *tw__html_escape(tw_request *req, const char *s, size_t n, size_t *out_len)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '<':
        case '>':
            need += 4;
            break;
        case '&':
            need += 5;
            break;
        case '"':
        case '\'':
            need += 6;
            break;
        default:
            need += 1;
        }
    }
    char *out = tw__arena_alloc(req, need + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '<':
            p = PUT_LIT(p, "&lt;");
            break;
        case '>':
            p = PUT_LIT(p, "&gt;");
            break;
        case '&':
            p = PUT_LIT(p, "&amp;");
            break;
        case '"':
            p = PUT_LIT(p, "&quot;");
            break;
        case '\'':
            p = PUT_LIT(p, "&#x27;");
            break;
        default:
            *p++ = s[i];
        }
    }
    *p = 0;
    *out_len = (size_t)(p - out);
    return out;
}

int tw_request_respond_error(tw_request *req, int status, const char *detail)
{
    if (!writable_head(req))
        return (req->flags & RF_ACTIVE) ? TW_EBUSY : TW_EINVAL;
    const char *reason = tw_http_status_reason(status);
    size_t dlen = 0;
    char *d = tw__html_escape(req, detail ? detail : "", detail ? strlen(detail) : 0, &dlen);
    size_t cap = 160 + 2 * strlen(reason) + dlen;
    char *body = tw__arena_alloc(req, cap);
    if (!d || !body)
        return tw_request_respond(req, status, "text/plain", reason, strlen(reason));
    int n = snprintf(body, cap,
                     "<html>\n  <head><title>%d - %s</title></head>\n  <body>\n    <h1>%s</h1>\n"
                     "    <p>%s</p>\n  </body>\n</html>\n",
                     status, reason, reason, d);
    return tw_request_respond(req, status, "text/html; charset=utf-8", body, (size_t)n);
}

int tw_request_redirect(tw_request *req, int status, const char *location)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return TW_EINVAL;
    if (!writable_head(req))
        return (req->flags & RF_ACTIVE) ? TW_EBUSY : TW_EINVAL;
    int rc = tw_request_set_header(req, "Location", location);
    if (rc < 0)
        return rc;
    size_t elen;
    char *esc = tw__html_escape(req, location, strlen(location), &elen);
    size_t cap = 96 + elen;
    char *body = esc ? tw__arena_alloc(req, cap) : NULL;
    if (!body)
        return tw_request_respond(req, status, NULL, NULL, 0);
    int n = snprintf(body, cap, "<html><body><a href=\"%s\">click here</a></body></html>\n", esc);
    return tw_request_respond(req, status, "text/html; charset=utf-8", body, (size_t)n);
}

int tw__request_fail(tw_request *req, int status, const char *detail)
{
    if (!(req->flags & RF_ACTIVE))
        return TW_EINVAL;
    if (req->flags & RF_HEAD_SENT) {
        tw_transport *t = tw__request_transport(req);
        if (t)
            tw_transport_abort_connection(t);
        return tw_request_finish(req);
    }
    req->nrh = 0; /* fields meant for a success do not belong on the error */
    req->flags &= ~(RF_LEN_SET | RF_SERVER_SET | RF_DATE_SET);
    req->held = NULL;
    req->held_len = 0;
    req->sent = 0;
    return tw_request_respond_error(req, status, detail);
}

int tw__send_simple_error(tw__hconn *c, int status, const char *reason_text)
{
    tw_site *s = c->site;
    const char *reason = tw_http_status_reason(status);
    char body[256];
    int blen = snprintf(body, sizeof body, "%d %s%s%s\n", status, reason, reason_text ? ": " : "",
                        reason_text ? reason_text : "");
    if (blen < 0 || (size_t)blen >= sizeof body)
        blen = (int)sizeof body - 1;
    size_t dlen;
    const char *date = tw__site_date_line(s, &dlen);
    char head[512];
    int hlen =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\n%.*s%.*sContent-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n",
                 status, reason, (int)s->server_line_len, s->server_line, (int)dlen, date, blen);
    struct iovec iov[2] = { { head, (size_t)hlen }, { body, (size_t)blen } };
    tw_transport *t = c->base.transport;
    if (!t || t->state != TW_TRANSPORT_OPEN)
        return TW_ECLOSED;
    int rc = tw_transport_writev(t, iov, 2);
    tw_request *req = c->req;
    if (s->o.access_log && req && !(req->flags & RF_ACTIVE)) {
        /* Log what can be said of a request that never parsed. */
        req->flags = RF_UNPARSED;
        req->conn = c;
        req->site = s;
        req->status = status;
        req->sent = (uint64_t)blen;
        tw__access_log_request(s->o.access_log, s, req);
    }
    return rc;
}

/* ------------------------------------------------------------ notify_finish */

tw_deferred *tw_request_notify_finish(tw_request *req)
{
    if (req->flags & RF_FINISHED)
        return tw_succeed(TW_VALUE_NONE);
    if (!req->conn) {
        tw_failure *f = tw_failure_connection_lost();
        return tw_fail(f);
    }
    if (!req->finish_d && !(req->finish_d = tw_deferred_new(NULL, NULL)))
        return NULL;
    return tw_deferred_ref(req->finish_d);
}

/* ------------------------------------------------------------ producers */

int tw_request_register_producer(tw_request *req, tw_producer *p, bool streaming)
{
    int rc = tw__request_check_open(req);
    if (rc < 0)
        return rc;
    if (req->producer || (req->flags & RF_FILE))
        return TW_EBUSY;
    rc = tw_transport_register_producer(tw__request_transport(req), p, streaming);
    if (rc == 0)
        req->producer = p;
    return rc;
}

void tw_request_unregister_producer(tw_request *req)
{
    if (!req->producer)
        return;
    req->producer = NULL;
    tw_transport *t = tw__request_transport(req);
    if (t)
        tw_transport_unregister_producer(t);
}

/* A field whose strings the caller keeps alive until the head is sent
 * (trusted: not checked, not copied). For the static file server. */
int tw__request_header_static(tw_request *req, const char *name, size_t nlen, const char *value,
                              size_t vlen)
{
    if (!writable_head(req))
        return TW_EBUSY;
    if (rh_reserve(req) < 0)
        return TW_ENOMEM;
    req->rh[req->nrh++] = (tw__rheader){ name, value, (uint32_t)nlen, (uint32_t)vlen };
    return 0;
}
