/* Fuzzes the HTTP/1.1 response parser: as an answer to GET (split checks),
 * HEAD and CONNECT (framing), with default and tiny limits; then walks the
 * bodies it frames. */
#include "http_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const tw_http_method methods[] = { TW_HTTP_GET, TW_HTTP_HEAD, TW_HTTP_CONNECT };
    for (int small = 0; small < 2; small++) {
        tw_http_limits lim;
        fuzz_limits(&lim, small);
        fuzz_same_any_split(1, TW_HTTP_GET, &lim, data, size);

        char *buf = malloc(size ? size : 1);
        FUZZ_CHECK(buf);
        memcpy(buf, data, size);
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            size_t off = 0;
            for (int n = 0; n < 16 && off < size; n++) {
                tw_http_header h[FUZZ_NHDR];
                tw_http_response resp = { .headers = h, .headers_cap = FUZZ_NHDR };
                tw_http_parser p;
                tw_http_parser_init(&p, &lim);
                int rc = tw_http_parse_response(&p, buf + off, size - off, methods[m], &resp);
                if (rc <= 0)
                    break;
                off += (size_t)rc;
                if (methods[m] == TW_HTTP_HEAD || resp.status < 200 || resp.status == 204 ||
                    resp.status == 304)
                    FUZZ_CHECK(resp.body == TW_HTTP_BODY_NONE);
                if (resp.tunnel || resp.body == TW_HTTP_BODY_UNTIL_CLOSE) {
                    FUZZ_CHECK(!resp.keep_alive);
                    break;
                }
                if (resp.body == TW_HTTP_BODY_LENGTH) {
                    tw_http_length lb;
                    tw_http_length_init(&lb, resp.content_length);
                    off += tw_http_length_take(&lb, size - off);
                    if (!tw_http_length_done(&lb))
                        break;
                } else if (resp.body == TW_HTTP_BODY_CHUNKED) {
                    size_t end;
                    uint64_t dec;
                    if (fuzz_chunked_whole(&lim, buf + off, size - off, &end, &dec) !=
                        TW_HTTP_CHUNKED_DONE)
                        break;
                    off += end;
                }
            }
        }
        free(buf);
    }
    return 0;
}
