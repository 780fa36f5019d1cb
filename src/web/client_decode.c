/* client_decode.c — the content decoder agent (Twisted's
 * ContentDecoderAgent with GzipDecoder): asks for gzip and deflate, and
 * wraps a response whose last content coding is one of them in a response
 * whose body is inflated as it streams — in pieces of at most 16 KiB, with
 * the consumer's pauses passed on to the connection, and a limit on the
 * decoded size so that a small compressed body cannot grow without bound. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "twirl/http_util.h"
#include "web/client_internal.h"

enum { OUT_CHUNK = 16 * 1024, MAX_FIELDS_ON_STACK = 32 };
#define DEFAULT_MAX_DECODED ((uint64_t)64 * 1024 * 1024)

typedef struct decoder_agent {
    tw_agent base;
    tw_agent *inner;
    uint64_t max;
} decoder_agent;

enum coding { COD_GZIP = 1, COD_DEFLATE };

/* One decoded body: the inner response's consumer and the outer one's
 * source. */
typedef struct decoder {
    tw_response *inner; /* a reference */
    tw_response *outer; /* NULL once the outer no longer wants the body */
    z_stream z;
    bool z_ready;    /* inflateInit2 done */
    bool z_end;      /* Z_STREAM_END seen */
    bool started;    /* the inner body is being delivered to us */
    bool inner_done; /* the inner body ended (body_end came) */
    bool paused;
    bool failed;
    bool more_out; /* zlib may hold output for input already taken */
    int coding;
    uint64_t total_in, total_out, max;
    char *pend; /* input not yet inflated (we were paused) */
    size_t plen, pcap;
} decoder;

static void decoder_free(decoder *dec)
{
    if (dec->z_ready)
        inflateEnd(&dec->z);
    tw_response_unref(dec->inner);
    free(dec->pend);
    free(dec);
}

/* The outer body ends (f taken). */
static void end_outer(decoder *dec, tw_failure *f)
{
    tw_response *outer = dec->outer;
    dec->outer = NULL;
    if (outer)
        tw__response_end(outer, f);
    else
        tw_failure_unref(f);
}

static void fail(decoder *dec, int code, const char *why)
{
    dec->failed = true;
    const char *url = dec->inner->url;
    end_outer(dec, tw_failure_new(TW_DOMAIN, code, "decoding the %s body of %s: %s",
                                  dec->coding == COD_GZIP ? "gzip" : "deflate", url, why));
    tw_response_stop_body(dec->inner);
}

static bool keep_input(decoder *dec, const unsigned char *p, size_t n)
{
    if (n > dec->pcap - dec->plen) {
        size_t cap = dec->pcap ? dec->pcap : 4096;
        while (cap - dec->plen < n)
            cap *= 2;
        char *g = realloc(dec->pend, cap);
        if (!g)
            return false;
        dec->pend = g;
        dec->pcap = cap;
    }
    memmove(dec->pend + dec->plen, p, n);
    dec->plen += n;
    return true;
}

static bool zlib_header(const unsigned char *p)
{
    return (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0;
}

/* Inflates p[0..n) to the consumer (n may be 0, to let zlib hand over
 * output it still holds). Returns the bytes not used (kept by the caller
 * when paused), or n when the decoder failed or was stopped. */
static size_t inflate_some(decoder *dec, const unsigned char *p, size_t n)
{
    unsigned char out[OUT_CHUNK];
    size_t used = 0;
    for (;;) {
        if (!dec->outer || dec->failed)
            return n;
        if (dec->paused)
            return used;
        if (used == n && !dec->more_out)
            return used;
        if (dec->z_end) {
            dec->more_out = false;
            /* After the end: another gzip member, or trailing bytes
             * (ignored, as zlib's own readers do). */
            if (dec->coding == COD_GZIP && n - used >= 2 && p[used] == 0x1f &&
                p[used + 1] == 0x8b && inflateReset(&dec->z) == Z_OK) {
                dec->z_end = false;
                continue;
            }
            if (dec->coding == COD_GZIP && n - used == 1 && p[used] == 0x1f)
                return used; /* perhaps the start of a member */
            return n;
        }
        if (!dec->z_ready) {
            int wbits = 15 + 16;
            if (dec->coding == COD_DEFLATE) {
                if (n - used < 2)
                    return used; /* wait for the second byte */
                wbits = zlib_header(p + used) ? 15 : -15;
            }
            memset(&dec->z, 0, sizeof dec->z);
            if (inflateInit2(&dec->z, wbits) != Z_OK) {
                fail(dec, TW_ENOMEM, "out of memory");
                return n;
            }
            dec->z_ready = true;
        }
        size_t in = n - used > UINT32_MAX ? UINT32_MAX : n - used;
        dec->z.next_in = (unsigned char *)(uintptr_t)(p ? p + used : (const unsigned char *)"");
        dec->z.avail_in = (uInt)in;
        dec->z.next_out = out;
        dec->z.avail_out = sizeof out;
        int rc = inflate(&dec->z, Z_NO_FLUSH);
        size_t took = in - dec->z.avail_in, made = sizeof out - dec->z.avail_out;
        used += took;
        dec->total_in += took;
        dec->more_out = made == sizeof out;
        if (rc == Z_STREAM_END)
            dec->z_end = true;
        else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            fail(dec, TW_EPROTO, dec->z.msg ? dec->z.msg : "corrupt data");
            return n;
        }
        if (made > dec->max - dec->total_out) {
            fail(dec, TW_ELIMIT, "the decoded body is larger than the limit");
            return n;
        }
        dec->total_out += made;
        if (made)
            tw__response_data(dec->outer, (const char *)out, made);
        if (took == 0 && made == 0)
            return used; /* zlib needs more input than this */
    }
}

/* Inflates what is pending, then p[0..n); keeps the rest if paused. */
static void feed(decoder *dec, const char *p, size_t n)
{
    if (dec->plen > 0 && n > 0) {
        if (!keep_input(dec, (const unsigned char *)p, n)) {
            fail(dec, TW_ENOMEM, "out of memory");
            return;
        }
        n = 0;
    }
    if (dec->plen > 0 || n == 0) {
        size_t used = inflate_some(dec, (unsigned char *)dec->pend, dec->plen);
        if (used < dec->plen)
            memmove(dec->pend, dec->pend + used, dec->plen - used);
        dec->plen -= used < dec->plen ? used : dec->plen;
        if (dec->plen > 0 || n == 0)
            return;
    }
    size_t used = inflate_some(dec, (const unsigned char *)p, n);
    if (used < n && !keep_input(dec, (const unsigned char *)p + used, n - used))
        fail(dec, TW_ENOMEM, "out of memory");
}

/* The inner body ended cleanly: inflate what is left and end the outer
 * body. Returns false while the consumer is paused (resume calls again). */
static bool drain_and_finish(decoder *dec)
{
    feed(dec, NULL, 0);
    if (!dec->outer || dec->failed)
        return true;
    if (dec->paused)
        return false;
    if (dec->total_in + dec->plen > 0 && !dec->z_end)
        fail(dec, TW_EPROTO, "the compressed body is truncated");
    else
        end_outer(dec, NULL);
    return true;
}

/* ------------------------------------------------------ inner consumer */

static void inner_data(tw_response *r, const char *data, size_t len, void *arg)
{
    decoder *dec = arg;
    if (!dec->outer || dec->failed)
        return;
    feed(dec, data, len);
    if (dec->paused && dec->outer)
        tw_response_pause_body(dec->inner);
}

static void inner_end(tw_response *r, const tw_failure *reason, void *arg)
{
    decoder *dec = arg;
    dec->inner_done = true;
    if (dec->outer && !dec->failed) {
        if (reason) {
            end_outer(dec,
                      tw_failure_wrap(tw_failure_ref((tw_failure *)reason), TW_DOMAIN,
                                      tw_failure_code(reason), "%s", tw_failure_message(reason)));
        } else if (!drain_and_finish(dec)) {
            return; /* paused: resume finishes */
        }
    }
    decoder_free(dec);
}

static const tw_response_body_ops inner_ops = { inner_data, inner_end };

/* ------------------------------------------------------ outer source */

static void src_resume(void *src)
{
    decoder *dec = src;
    dec->paused = false;
    if (!dec->started) {
        dec->started = true;
        if (tw_response_deliver_body(dec->inner, &inner_ops, dec) < 0) {
            end_outer(dec,
                      tw_failure_new(TW_DOMAIN, TW_EBUSY, "the body is already being delivered"));
            decoder_free(dec);
        }
        return;
    }
    if (dec->inner_done) {
        if (dec->outer && drain_and_finish(dec))
            decoder_free(dec);
        return;
    }
    if (dec->plen > 0 || dec->more_out)
        feed(dec, NULL, 0);
    if (dec->paused || !dec->outer || dec->failed)
        return;
    tw_response_resume_body(dec->inner);
}

static void src_pause(void *src)
{
    decoder *dec = src;
    dec->paused = true;
    if (dec->started && !dec->inner_done)
        tw_response_pause_body(dec->inner);
}

static void src_stop(void *src)
{
    decoder *dec = src;
    tw_response *outer = dec->outer;
    dec->outer = NULL;
    if (outer)
        tw__response_end(outer, tw_failure_new(TW_DOMAIN, TW_ECANCELED,
                                               "the body of %d from %s was stopped", outer->status,
                                               outer->url));
    if (!dec->started)
        decoder_free(dec);
    else if (dec->inner_done)
        decoder_free(dec);
    else
        tw_response_stop_body(dec->inner); /* inner_end frees */
}

static void src_drop(void *src)
{
    decoder *dec = src;
    dec->outer = NULL;
    if (!dec->started || dec->inner_done)
        decoder_free(dec); /* the inner response drops its body in turn */
    else
        tw_response_stop_body(dec->inner);
}

static const tw__body_source_ops decoder_source = { src_resume, src_pause, src_stop, src_drop };

/* ------------------------------------------------------ wrapping */

static bool coding_is(const char *p, size_t n, int *coding)
{
    if (tw_http_token_eq(p, n, "gzip") || tw_http_token_eq(p, n, "x-gzip"))
        *coding = COD_GZIP;
    else if (tw_http_token_eq(p, n, "deflate"))
        *coding = COD_DEFLATE;
    else
        return false;
    return true;
}

typedef struct decode_ctx {
    uint64_t max;
} decode_ctx;

static tw_result wrap_response(tw_result *in, void *arg)
{
    decode_ctx *ctx = arg;
    tw_response *resp = in->value.ptr;
    size_t n;
    const tw_http_header *h = tw_response_headers(resp, &n);
    /* The last Content-Encoding field's last coding decides. */
    const tw_http_header *ce = NULL;
    for (size_t i = 0; i < n; i++)
        if (tw_http_token_eq(h[i].name.ptr, h[i].name.len, "content-encoding"))
            ce = &h[i];
    if (!ce)
        return tw_result_move(in);
    const char *v = ce->value.ptr;
    size_t vl = ce->value.len;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t' || v[vl - 1] == ','))
        vl--;
    size_t start = vl;
    while (start > 0 && v[start - 1] != ',')
        start--;
    size_t t0 = start;
    while (t0 < vl && (v[t0] == ' ' || v[t0] == '\t'))
        t0++;
    int coding;
    if (!coding_is(v + t0, vl - t0, &coding))
        return tw_result_move(in);
    /* The codings left, without the one we undo. */
    size_t rest = start;
    while (rest > 0 && (v[rest - 1] == ',' || v[rest - 1] == ' ' || v[rest - 1] == '\t'))
        rest--;
    tw_http_header stack_fields[MAX_FIELDS_ON_STACK];
    tw_http_header *fields = n <= MAX_FIELDS_ON_STACK ? stack_fields : malloc(n * sizeof *fields);
    decoder *dec = calloc(1, sizeof *dec);
    if (!fields || !dec) {
        if (fields != stack_fields)
            free(fields);
        free(dec);
        return tw_err(tw_failure_from_code(TW_ENOMEM));
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (&h[i] == ce) {
            if (rest > 0)
                fields[m++] = (tw_http_header){ h[i].name, { v, rest } };
            continue;
        }
        if (tw_http_token_eq(h[i].name.ptr, h[i].name.len, "content-length"))
            continue;
        fields[m++] = h[i];
    }
    tw_response *outer = tw__response_make(resp->reactor, resp->status, resp->version_minor,
                                           resp->reason, fields, m, resp->url, resp->method);
    if (fields != stack_fields)
        free(fields);
    if (!outer) {
        free(dec);
        return tw_err(tw_failure_from_code(TW_ENOMEM));
    }
    dec->coding = coding;
    dec->max = ctx->max;
    dec->outer = outer;
    dec->inner = resp;
    in->value = TW_VALUE_NONE; /* our reference now */
    outer->previous = tw_response_ref(resp->previous);
    outer->src_ops = &decoder_source;
    outer->src = dec;
    return tw_ok(outer, tw_response_unref);
}

static tw_deferred *decoder_request(tw_agent *a, const char *method, const char *url,
                                    const tw_http_header *headers, size_t n, tw_body_producer *body)
{
    decoder_agent *da = (decoder_agent *)a;
    if (!headers)
        n = 0;
    bool asks = false;
    for (size_t i = 0; i < n; i++)
        if (headers[i].name.ptr &&
            tw_http_token_eq(headers[i].name.ptr, headers[i].name.len, "accept-encoding"))
            asks = true;
    decode_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx) {
        tw_body_producer_free(body);
        return NULL;
    }
    ctx->max = da->max;
    tw_deferred *d;
    if (asks) {
        d = tw_agent_request(da->inner, method, url, headers, n, body);
    } else {
        tw_http_header stack_fields[MAX_FIELDS_ON_STACK + 1];
        tw_http_header *fields =
            n < MAX_FIELDS_ON_STACK ? stack_fields : malloc((n + 1) * sizeof *fields);
        if (!fields) {
            free(ctx);
            tw_body_producer_free(body);
            return NULL;
        }
        if (n)
            memcpy(fields, headers, n * sizeof *fields);
        static const char ae_name[] = "Accept-Encoding", ae_value[] = "gzip, deflate";
        fields[n].name = (tw_http_slice){ ae_name, sizeof ae_name - 1 };
        fields[n].value = (tw_http_slice){ ae_value, sizeof ae_value - 1 };
        d = tw_agent_request(da->inner, method, url, fields, n + 1, body);
        if (fields != stack_fields)
            free(fields);
    }
    if (!d) {
        free(ctx);
        return NULL;
    }
    if (tw_deferred_add_callbacks_full(d, wrap_response, NULL, ctx, free) < 0) {
        free(ctx);
        tw_deferred_cancel(d);
        tw_deferred_unref(d);
        return NULL;
    }
    return d;
}

static void decoder_close_idle(tw_agent *a)
{
    tw_agent_close_idle(((decoder_agent *)a)->inner);
}

static void decoder_agent_free(tw_agent *a)
{
    free(a);
}

static const tw__agent_ops decoder_ops = { decoder_request, decoder_close_idle,
                                           decoder_agent_free };

int tw_content_decoder_agent_new(tw_agent *inner, const tw_content_decoder_options *opts,
                                 tw_agent **out)
{
    if (!inner || !out)
        return TW_EINVAL;
    decoder_agent *da = calloc(1, sizeof *da);
    if (!da)
        return TW_ENOMEM;
    da->base.ops = &decoder_ops;
    da->base.reactor = inner->reactor;
    da->inner = inner;
    da->max = opts && opts->max_decoded_bytes ? opts->max_decoded_bytes : DEFAULT_MAX_DECODED;
    *out = &da->base;
    return 0;
}
