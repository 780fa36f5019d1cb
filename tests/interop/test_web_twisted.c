/* ctest: label=interop timeout=240 */
/* twirl's HTTP server with Twisted's own HTTP client as the peer:
 * tests/interop/twisted_web_agent.py runs twisted.web.client.Agent over a
 * persistent pool (keep-alive, a body streamed to /echo and back, HEAD,
 * ranges, 304, a 3 MiB file through sendfile, 404, 405) against the
 * tests/support/tt_web.c server. Skipped when python3-twisted is missing. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tt.h"
#include "tt_web.h"

#define PYTHON "/usr/bin/python3"

static void twisted_agent(void **state)
{
    if (system(PYTHON " -c 'import twisted.web.client' >/dev/null 2>&1") != 0)
        skip();
    char *dir = tt_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/digits.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("0123456789", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/big.bin", dir);
    f = fopen(p, "w");
    for (int i = 0; i < 3 * 1024 * 1024; i++)
        fputc((i * 7) & 0xff, f);
    fclose(f);

    tt_web w;
    assert_int_equal(tt_web_start(&w, dir, NULL), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout 120 " PYTHON
             " -W ignore::DeprecationWarning %s/tests/interop/twisted_web_agent.py %u 2>&1",
             TWIRL_SOURCE_DIR, w.port_num);
    FILE *p2 = popen(cmd, "r");
    assert_non_null(p2);
    static char out[65536];
    size_t n = fread(out, 1, sizeof out - 1, p2);
    out[n] = 0;
    int st = pclose(p2);
    tt_web_stop(&w);
    tt_rmdir(dir);
    fprintf(stderr, "%s", out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "ALL OK"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(twisted_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
