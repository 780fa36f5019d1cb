/* fuzz_endpoint — the endpoint-string grammar and the built-in types'
 * parsers. The input (up to its first NUL) is a description; it goes
 * through the tokenizer, then through server and client parsing. Checks:
 * no crash or leak; errors are TW_ESYNTAX with a NUL-terminated message
 * that is printable ASCII and fits the buffer (also a tiny one); a parsed
 * description, written back with every field escaped, parses to the same
 * fields (the tokenizer loses nothing). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/endpoint_internal.h"
#include "twirl/endpoint.h"

static void check_message(int rc, const char *err, size_t errlen)
{
    if (rc == 0 || rc == TW_ENOMEM)
        return;
    if (rc != TW_ESYNTAX)
        abort();
    size_t n = strnlen(err, errlen);
    if (n == errlen)
        abort(); /* not terminated */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f)
            abort();
}

/* Appends s with ':', '=' and '\\' escaped. */
static size_t put_escaped(char *out, size_t o, size_t cap, const char *s)
{
    for (; *s && o + 2 < cap; s++) {
        if (*s == ':' || *s == '=' || *s == '\\')
            out[o++] = '\\';
        out[o++] = *s;
    }
    return o;
}

static void round_trip(const tw_endpoint_args *a)
{
    size_t cap = 4 * TW_ENDPOINT_MAX_BYTES + 16, o = 0;
    char *out = malloc(cap);
    if (!out)
        return;
    o = put_escaped(out, o, cap, tw_endpoint_args_type(a));
    for (size_t i = 0; i < tw_endpoint_args_npositional(a); i++) {
        out[o++] = ':';
        o = put_escaped(out, o, cap, tw_endpoint_args_positional(a, i));
    }
    for (size_t i = 0; i < tw_endpoint_args_nkeywords(a); i++) {
        const char *k, *v;
        tw_endpoint_args_keyword(a, i, &k, &v);
        out[o++] = ':';
        o = put_escaped(out, o, cap, k);
        out[o++] = '=';
        o = put_escaped(out, o, cap, v);
    }
    out[o] = '\0';
    tw_endpoint_args *b;
    if (o > 0 && o <= TW_ENDPOINT_MAX_BYTES && tw_endpoint_parse(out, &b, NULL, 0) == 0) {
        if (strcmp(tw_endpoint_args_type(a), tw_endpoint_args_type(b)) != 0 ||
            tw_endpoint_args_npositional(a) != tw_endpoint_args_npositional(b) ||
            tw_endpoint_args_nkeywords(a) != tw_endpoint_args_nkeywords(b))
            abort();
        for (size_t i = 0; i < tw_endpoint_args_npositional(a); i++)
            if (strcmp(tw_endpoint_args_positional(a, i), tw_endpoint_args_positional(b, i)))
                abort();
        for (size_t i = 0; i < tw_endpoint_args_nkeywords(a); i++) {
            const char *k1, *v1, *k2, *v2;
            tw_endpoint_args_keyword(a, i, &k1, &v1);
            tw_endpoint_args_keyword(b, i, &k2, &v2);
            if (strcmp(k1, k2) || strcmp(v1, v2))
                abort();
        }
        tw_endpoint_args_free(b);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * TW_ENDPOINT_MAX_BYTES)
        size = 2 * TW_ENDPOINT_MAX_BYTES;
    char *desc = malloc(size + 1);
    if (!desc)
        return 0;
    memcpy(desc, data, size);
    desc[size] = '\0';

    char err[TW_ENDPOINT_ERR_MAX], tiny[7];
    tw_endpoint_args *a;
    int rc = tw_endpoint_parse(desc, &a, err, sizeof err);
    check_message(rc, err, sizeof err);
    if (rc == 0) {
        round_trip(a);
        tw_endpoint_args_free(a);
    }

    tw_server_endpoint *s;
    rc = tw_server_endpoint_from_string(NULL, desc, &s, err, sizeof err);
    check_message(rc, err, sizeof err);
    if (rc == 0) {
        char line[256];
        tw__server_endpoint_render(s, line, sizeof line);
        tw_server_endpoint_free(s);
    }
    rc = tw_server_endpoint_from_string(NULL, desc, &s, tiny, sizeof tiny);
    check_message(rc, tiny, sizeof tiny);
    if (rc == 0)
        tw_server_endpoint_free(s);

    tw_client_endpoint *c;
    rc = tw_client_endpoint_from_string(NULL, desc, &c, err, sizeof err);
    check_message(rc, err, sizeof err);
    if (rc == 0) {
        char line[512];
        tw__client_endpoint_render(c, line, sizeof line);
        tw_client_endpoint_free(c);
    }
    free(desc);
    return 0;
}
