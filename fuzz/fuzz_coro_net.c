/* fuzz_coro_net — the framing of coroutine streams (twirl/coro_net.h):
 * read_until, read_exactly and read_some, in an order the input chooses,
 * over bytes the input supplies in chunks of a size it chooses, with pauses
 * in the middle (the handler sleeps while more arrives), then the end of
 * the stream or a reset. Whatever happens, the bytes handed out are the
 * input's, in order, none lost and none twice; each read keeps its promise
 * (a delimiter ends a line and appears nowhere earlier in it, lengths stay
 * within bounds); lent bytes stay intact until the next read, however much
 * arrives meanwhile; and the handler always finishes.
 *
 * Input: N (mod 17), N operation bytes (low 2 bits: until, exactly, some,
 * sleep; the rest a parameter), one control byte (chunk size 1-8, reset
 * instead of end of stream), then the data. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "twirl/coro_net.h"
#include "twirl/testing.h"

#define CHECK(c)              \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static struct {
    const uint8_t *ops;
    size_t nops;
    const uint8_t *data;
    size_t len, consumed;
    tw_reactor *r;
    bool done;
} F;

static void check_given(tw_coro_bytes b)
{
    CHECK(F.consumed + b.len <= F.len);
    CHECK(memcmp(b.data, F.data + F.consumed, b.len) == 0);
    F.consumed += b.len;
}

static void check_still(tw_coro_bytes b, size_t at)
{
    CHECK(b.len == 0 || memcmp(b.data, F.data + at, b.len) == 0);
}

static tw_result handler(tw_coro_stream *s, void *arg)
{
    tw_coro_bytes prev = { NULL, 0 };
    size_t prev_at = 0;
    for (size_t i = 0; i < F.nops; i++) {
        unsigned p = F.ops[i] >> 2;
        tw_coro_bytes b;
        int rc;
        if ((F.ops[i] & 3) != 3)
            prev = (tw_coro_bytes){ NULL, 0 }; /* any read call takes the lent bytes back */
        switch (F.ops[i] & 3) {
        case 0: {
            const char *d = p & 1 ? "\r\n" : "\n";
            size_t dl = strlen(d), max = (p >> 1) + 2;
            rc = tw_coro_read_until(s, d, max, &b, NULL);
            if (rc == 0) {
                CHECK(b.len >= dl && b.len <= max);
                CHECK(memcmp(b.data + b.len - dl, d, dl) == 0);
                CHECK(!memmem(b.data, b.len - 1, d, dl));
            } else {
                CHECK(rc == TW_ELIMIT || rc == TW_ECONNECTION_DONE || rc == TW_ECONNECTION_LOST);
            }
            break;
        }
        case 1:
            rc = tw_coro_read_exactly(s, p + 1, &b, NULL);
            CHECK(rc != 0 || b.len == p + 1);
            break;
        case 2:
            rc = tw_coro_read_some(s, p + 1, &b, NULL);
            CHECK(rc != 0 || (b.len >= 1 && b.len <= p + 1));
            break;
        default: {
            check_still(prev, prev_at);
            tw_result w = tw_await(tw_sleep(F.r, 0.5)); /* bytes arrive meanwhile */
            tw_result_free(&w);
            check_still(prev, prev_at);
            continue;
        }
        }
        if (rc == 0) {
            prev = b;
            prev_at = F.consumed;
            check_given(b);
        }
    }
    tw_coro_bytes b;
    while (tw_coro_read_some(s, 0, &b, NULL) == 0)
        check_given(b);
    F.done = true;
    return TW_RESULT_NONE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t nops = data[0] % 17;
    if (size < 2 + nops)
        return 0;
    F.ops = data + 1;
    F.nops = nops;
    uint8_t ctl = data[1 + nops];
    F.data = data + 2 + nops;
    F.len = size - 2 - nops;
    F.consumed = 0;
    F.done = false;
    F.r = tw_test_clock_new();
    CHECK(F.r);
    tw_factory *f = tw_coro_factory_new(F.r, handler, NULL, NULL);
    CHECK(f);
    tw_test_conn_options o = { .factory = f, .reactor = F.r };
    tw_test_conn *c = tw_test_conn_new_opts(&o);
    CHECK(c);
    size_t chunk = (size_t)(ctl & 7) + 1;
    for (size_t off = 0; off < F.len; off += chunk) {
        size_t n = F.len - off < chunk ? F.len - off : chunk;
        CHECK(tw_test_conn_feed(c, F.data + off, n) == 0);
        tw_clock_advance(F.r, 1.0);
    }
    if (ctl & 8)
        tw_test_conn_lose(c, -ECONNRESET);
    else
        tw_string_transport_deliver_eof(tw_test_conn_transport(c));
    for (size_t i = 0; i <= F.nops && !F.done; i++)
        tw_clock_advance(F.r, 1.0); /* sleeps still pending */
    CHECK(F.done);
    CHECK(F.consumed == F.len);
    tw_test_conn_free(c);
    tw_coro_factory_free(f);
    tw_reactor_free(F.r);
    return 0;
}
