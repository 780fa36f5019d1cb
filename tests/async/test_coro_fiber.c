/* ctest: label=unit timeout=60 backends=once switches=all */
/* Fibers, the layer under coroutines: the context switch keeps every
 * callee-saved register and the floating-point control state of both sides,
 * stacks are aligned as the ABI wants, nested and interleaved fibers switch
 * correctly, finished stacks can be restarted, and running off the end of a
 * stack hits the guard page (a child process dies of SIGSEGV). */
#include <fenv.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "async/coro_internal.h"
#include "twirl/error.h"

static tw__fiber *new_fiber(size_t stack_bytes)
{
    tw__fiber *f = NULL;
    assert_int_equal(tw__fiber_new(stack_bytes, 64, &f), 0);
    assert_non_null(f);
    return f;
}

/* ------------------------------------------------------------ ping-pong */

typedef struct counter {
    int steps;
    int seen;
} counter;

static void count_up(tw__fiber *f, void *arg)
{
    counter *c = arg;
    for (int i = 0; i < c->steps; i++) {
        c->seen = i;
        tw__fiber_yield(f);
    }
    c->seen = -1;
}

static void ping_pong_and_restart(void **state)
{
    tw__fiber *f = new_fiber(0);
    assert_true(tw__fiber_stack_bytes(f) >= TW__FIBER_DEFAULT_STACK);
    for (int round = 0; round < 3; round++) {
        counter c = { .steps = 1000, .seen = -2 };
        tw__fiber_start(f, count_up, &c);
        assert_int_equal(c.seen, -2); /* start does not run anything */
        for (int i = 0; i < 1000; i++) {
            assert_false(tw__fiber_resume(f));
            assert_int_equal(c.seen, i);
        }
        assert_true(tw__fiber_resume(f));
        assert_int_equal(c.seen, -1);
    }
    tw__fiber_free(f);
}

/* ------------------------------------------------------------ registers */

/* On the fiber: overwrite every callee-saved register with garbage, then
 * yield with the garbage still in them. If the switch did not restore the
 * resumer's registers, the resumer's live values would be garbage. */
static void trash_registers(tw__fiber *f, void *arg)
{
    int *rounds = arg;
    for (int i = 0; i < *rounds; i++) {
#if defined(__x86_64__)
        __asm__ volatile("movq $0x5a5a5a5a5a5a5a5a, %%rbx\n\t"
                         "movq %%rbx, %%r12\n\t"
                         "movq %%rbx, %%r13\n\t"
                         "movq %%rbx, %%r14\n\t"
                         "movq %%rbx, %%r15\n\t" ::
                             : "rbx", "r12", "r13", "r14", "r15", "memory");
#elif defined(__aarch64__)
        __asm__ volatile("mov x19, #0x5a5a\n\t"
                         "mov x20, x19\n\tmov x21, x19\n\tmov x22, x19\n\tmov x23, x19\n\t"
                         "mov x24, x19\n\tmov x25, x19\n\tmov x26, x19\n\tmov x27, x19\n\t"
                         "mov x28, x19\n\t"
                         "fmov d8, x19\n\tfmov d9, x19\n\tfmov d10, x19\n\tfmov d11, x19\n\t"
                         "fmov d12, x19\n\tfmov d13, x19\n\tfmov d14, x19\n\tfmov d15, x19\n\t" ::
                             : "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
                               "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15", "memory");
#endif
        tw__fiber_yield(f);
    }
}

/* One step of a computation over 12 integers and 8 doubles, all live across
 * each resume: more than the callee-saved registers of either architecture
 * (x86-64: 6; AArch64: 10 plus d8-d15), so the compiler uses every one. */
#define STEP(a, b, c, d, e, g, h, k, l, m, n, o, x, y, z, w, p, q, s, t) \
    do {                                                                 \
        a = a * 3 + 1;                                                   \
        b ^= a;                                                          \
        c += b;                                                          \
        d = d * 5 + c;                                                   \
        e -= d;                                                          \
        g += e;                                                          \
        h ^= g << 1;                                                     \
        k += h >> 3;                                                     \
        l = l * 7 + k;                                                   \
        m -= l;                                                          \
        n += m ^ a;                                                      \
        o = o * 11 + n;                                                  \
        x = x * 1.0001 + y;                                              \
        y = y * 0.9999 + z;                                              \
        z = z + w * 0.5;                                                 \
        w = w * 1.0000001 + p;                                           \
        p = p * 0.5 + q;                                                 \
        q = q + s * 0.25;                                                \
        s = s * 1.5 - t;                                                 \
        t = t * 0.75 + x * 1e-9;                                         \
    } while (0)

static void callee_saved_registers_survive(void **state)
{
    int rounds = 100;
    tw__fiber *f = new_fiber(0);
    tw__fiber_start(f, trash_registers, &rounds);
    uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, g = 6, h = 7, k = 8, l = 9, m = 10, n = 11, o = 12;
    double x = 1.5, y = 2.25, z = 3.125, w = 4.0625, p = 5.5, q = 6.75, s = 7.875, t = 8.5;
    for (int i = 0; i < rounds; i++) {
        bool done = tw__fiber_resume(f);
        assert_false(done);
        STEP(a, b, c, d, e, g, h, k, l, m, n, o, x, y, z, w, p, q, s, t);
    }
    assert_true(tw__fiber_resume(f));
    /* The same computation without any switch. */
    uint64_t a2 = 1, b2 = 2, c2 = 3, d2 = 4, e2 = 5, g2 = 6, h2 = 7, k2 = 8, l2 = 9, m2 = 10,
             n2 = 11, o2 = 12;
    double x2 = 1.5, y2 = 2.25, z2 = 3.125, w2 = 4.0625, p2 = 5.5, q2 = 6.75, s2 = 7.875, t2 = 8.5;
    for (int i = 0; i < rounds; i++)
        STEP(a2, b2, c2, d2, e2, g2, h2, k2, l2, m2, n2, o2, x2, y2, z2, w2, p2, q2, s2, t2);
    assert_true(a == a2 && b == b2 && c == c2 && d == d2 && e == e2 && g == g2);
    assert_true(h == h2 && k == k2 && l == l2 && m == m2 && n == n2 && o == o2);
    assert_true(x == x2 && y == y2 && z == z2 && w == w2);
    assert_true(p == p2 && q == q2 && s == s2 && t == t2);
    tw__fiber_free(f);
}

/* ------------------------------------------------------------ FP control */

typedef struct fp_probe {
    int seen[3];
} fp_probe;

static void fp_body(tw__fiber *f, void *arg)
{
    fp_probe *p = arg;
    p->seen[0] = fegetround(); /* inherited from the starter */
    fesetround(FE_UPWARD);
    tw__fiber_yield(f);
    p->seen[1] = fegetround(); /* still ours after the resumer ran */
    tw__fiber_yield(f);
    p->seen[2] = fegetround();
    fesetround(FE_TONEAREST);
}

static void rounding_mode_is_per_context(void **state)
{
    fp_probe p = { { -1, -1, -1 } };
    tw__fiber *f = new_fiber(0);
    assert_int_equal(fesetround(FE_TOWARDZERO), 0);
    tw__fiber_start(f, fp_body, &p);
    assert_int_equal(fesetround(FE_DOWNWARD), 0);
    assert_false(tw__fiber_resume(f));
    assert_int_equal(p.seen[0], FE_TOWARDZERO);  /* the mode when it was started */
    assert_int_equal(fegetround(), FE_DOWNWARD); /* the fiber's change stayed there */
    assert_false(tw__fiber_resume(f));
    assert_int_equal(p.seen[1], FE_UPWARD);
    assert_int_equal(fegetround(), FE_DOWNWARD);
    assert_int_equal(fesetround(FE_TONEAREST), 0);
    assert_true(tw__fiber_resume(f));
    assert_int_equal(p.seen[2], FE_UPWARD);
    assert_int_equal(fegetround(), FE_TONEAREST);
    tw__fiber_free(f);
}

/* ------------------------------------------------------------ alignment */

typedef struct align_probe {
    uintptr_t addr16, addr32;
    char text[64];
    size_t used;
} align_probe;

static __attribute__((noinline)) void align_inner(align_probe *p)
{
    _Alignas(16) volatile char a[16];
    _Alignas(32) volatile char b[32];
    a[0] = b[0] = 1;
    p->addr16 = (uintptr_t)a;
    p->addr32 = (uintptr_t)b;
    /* Variadic calls with doubles use aligned SSE stores on x86-64: a
     * misaligned stack crashes here. */
    snprintf(p->text, sizeof p->text, "%.3f %Lf", 3.14159, (long double)2.5);
}

static void align_body(tw__fiber *f, void *arg)
{
    align_probe *p = arg;
    align_inner(p);
    p->used = tw__fiber_stack_used(f);
    tw__fiber_yield(f);
    align_inner(p);
}

static void stack_is_aligned_and_used_from_the_top(void **state)
{
    align_probe p = { 0 };
    tw__fiber *f = new_fiber(0);
    tw__fiber_start(f, align_body, &p);
    assert_false(tw__fiber_resume(f));
    assert_int_equal(p.addr16 % 16, 0);
    assert_int_equal(p.addr32 % 32, 0);
    assert_string_equal(p.text, "3.142 2.500000");
    assert_true(tw__fiber_on_stack(f, (void *)p.addr16));
    assert_true(p.used > 0 && p.used < 16 * 1024);
    assert_true(tw__fiber_resume(f));
    tw__fiber_free(f);
}

/* ------------------------------------------------------------ nesting */

typedef struct nest {
    tw__fiber *inner;
    char trace[32];
    int n;
} nest;

static void nest_inner(tw__fiber *f, void *arg)
{
    nest *s = arg;
    s->trace[s->n++] = 'i';
    tw__fiber_yield(f);
    s->trace[s->n++] = 'j';
}

static void nest_outer(tw__fiber *f, void *arg)
{
    nest *s = arg;
    s->trace[s->n++] = 'o';
    assert_false(tw__fiber_resume(s->inner)); /* inner yields back to us */
    s->trace[s->n++] = 'p';
    tw__fiber_yield(f);
    s->trace[s->n++] = 'q';
}

static void fibers_resume_fibers(void **state)
{
    nest s = { 0 };
    s.inner = new_fiber(0);
    tw__fiber *outer = new_fiber(0);
    tw__fiber_start(s.inner, nest_inner, &s);
    tw__fiber_start(outer, nest_outer, &s);
    assert_false(tw__fiber_resume(outer));
    assert_true(tw__fiber_resume(s.inner)); /* now from the thread's stack */
    assert_true(tw__fiber_resume(outer));
    assert_string_equal(s.trace, "oipjq");
    tw__fiber_free(outer);
    tw__fiber_free(s.inner);
}

typedef struct ring {
    int id;
    int *log;
    int *nlog;
} ring;

static void ring_body(tw__fiber *f, void *arg)
{
    ring *r = arg;
    for (int i = 0; i < 3; i++) {
        r->log[(*r->nlog)++] = r->id;
        tw__fiber_yield(f);
    }
}

static void many_fibers_interleave(void **state)
{
    enum { N = 500 };
    tw__fiber **fs = calloc(N, sizeof *fs);
    ring *rs = calloc(N, sizeof *rs);
    int *log = calloc(N * 3, sizeof *log);
    int nlog = 0;
    for (int i = 0; i < N; i++) {
        fs[i] = new_fiber(0);
        rs[i] = (ring){ i, log, &nlog };
        tw__fiber_start(fs[i], ring_body, &rs[i]);
    }
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++)
            assert_false(tw__fiber_resume(fs[i]));
    for (int i = 0; i < N; i++)
        assert_true(tw__fiber_resume(fs[i]));
    assert_int_equal(nlog, N * 3);
    for (int k = 0; k < N * 3; k++)
        assert_int_equal(log[k], k % N);
    for (int i = 0; i < N; i++)
        tw__fiber_free(fs[i]);
    free(fs);
    free(rs);
    free(log);
}

static void suspended_fiber_can_be_reclaimed(void **state)
{
    counter c = { .steps = 10 };
    tw__fiber *f = new_fiber(0);
    tw__fiber_start(f, count_up, &c);
    assert_false(tw__fiber_resume(f));
    tw__fiber_free(f); /* its frames are simply gone */
}

/* ------------------------------------------------------------ sizes */

static void sizes_are_rounded_and_bounded(void **state)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t min = (size_t)TW__FIBER_MIN_STACK * TW__FIBER_SANITIZER_SCALE;
    assert_int_equal(tw__fiber_round_stack(1), min);
    assert_int_equal(tw__fiber_round_stack(0),
                     (size_t)TW__FIBER_DEFAULT_STACK * TW__FIBER_SANITIZER_SCALE);
    assert_int_equal(tw__fiber_round_stack(min + 1) % (size_t)page, 0);
    assert_int_equal(tw__fiber_round_stack(TW__FIBER_MAX_STACK + 1), 0);
    tw__fiber *f = NULL;
    assert_int_equal(tw__fiber_new(TW__FIBER_MAX_STACK + 1, 0, &f), TW_EINVAL);
    assert_null(f);
    f = new_fiber(min + 1);
    assert_true(tw__fiber_stack_bytes(f) >= min + 1);
    tw__fiber_free(f);
    /* A big stack costs address space, not memory. */
    f = new_fiber(256u << 20);
    assert_true(tw__fiber_stack_bytes(f) >= 256u << 20);
    tw__fiber_free(f);
    assert_non_null(tw__fiber_switch_name());
}

/* ------------------------------------------------------------ both switches */

/* The suite runs these tests once per context switch (TWIRL_CORO_SWITCH):
 * new fibers get the one it names. And fibers of both kinds mix: a fiber on
 * one switch resumes a fiber on the other, in both directions. */
typedef struct mixer {
    tw__fiber *inner;
    int outer_steps, inner_steps;
} mixer;

static void mix_inner(tw__fiber *f, void *arg)
{
    mixer *m = arg;
    for (int i = 0; i < 3; i++) {
        m->inner_steps++;
        tw__fiber_yield(f);
    }
}

static void mix_outer(tw__fiber *f, void *arg)
{
    mixer *m = arg;
    for (int i = 0; i < 2; i++) {
        tw__fiber_start(m->inner, mix_inner, m);
        while (!tw__fiber_resume(m->inner))
            m->outer_steps++;
        tw__fiber_yield(f); /* back to the thread's stack, across the other switch */
    }
}

static void both_switches_mix(void **state)
{
    const char *env = getenv("TWIRL_CORO_SWITCH");
    if (env && strcmp(env, "ucontext") == 0)
        assert_string_equal(tw__fiber_switch_name(), "ucontext");
    else if (env && strcmp(env, "asm") == 0)
        assert_true(strncmp(tw__fiber_switch_name(), "asm-", 4) == 0);
    tw__fiber *f = new_fiber(0);
    assert_string_equal(tw__fiber_switch_name_of(f), tw__fiber_switch_name());
    tw__fiber_free(f);
#if TW__FIBER_HAVE_ASM
    tw__fiber_switch kinds[2] = { TW__SWITCH_ASM, TW__SWITCH_UCONTEXT };
    for (int order = 0; order < 2; order++) {
        tw__fiber *outer, *inner;
        assert_int_equal(tw__fiber_new_with(0, 0, kinds[order], &outer), 0);
        assert_int_equal(tw__fiber_new_with(0, 0, kinds[1 - order], &inner), 0);
        assert_string_not_equal(tw__fiber_switch_name_of(outer), tw__fiber_switch_name_of(inner));
        mixer m = { .inner = inner };
        tw__fiber_start(outer, mix_outer, &m);
        assert_false(tw__fiber_resume(outer));
        assert_false(tw__fiber_resume(outer));
        assert_true(tw__fiber_resume(outer));
        assert_int_equal(m.inner_steps, 6);
        assert_int_equal(m.outer_steps, 6);
        tw__fiber_free(outer);
        tw__fiber_free(inner);
    }
#else
    tw__fiber *a;
    assert_int_equal(tw__fiber_new_with(0, 0, TW__SWITCH_ASM, &a), TW_EINVAL);
#endif
}

/* ------------------------------------------------------------ the guard */

static __attribute__((noinline)) int recurse(volatile char *prev, int depth)
{
    volatile char frame[256];
    if (depth > (1 << 30))
        return 0; /* never: the guard page stops us long before */
    frame[0] = (char)depth;
    frame[255] = prev ? prev[0] : 0;
    return recurse(frame, depth + 1) + frame[255];
}

static void overflow_body(tw__fiber *f, void *arg)
{
    *(int *)arg = recurse(NULL, 0);
}

static void guard_page_faults(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No core file, and the default action even under a sanitizer's
         * handler, so the death is the kernel's verdict. */
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        int sink = 0;
        tw__fiber *f = NULL;
        if (tw__fiber_new(1, 0, &f) < 0)
            _exit(3);
        tw__fiber_start(f, overflow_body, &sink);
        tw__fiber_resume(f);
        _exit(2); /* not reached: the recursion never ends */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
    } else {
        /* A sanitizer that kept its own SEGV handler reports the overflow
         * and exits non-zero; never 2 (ran off the stack unharmed) or 3. */
        assert_true(WIFEXITED(status));
        print_message("child exited with %d (sanitizer report)\n", WEXITSTATUS(status));
        assert_true(WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2 &&
                    WEXITSTATUS(status) != 3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ping_pong_and_restart),
        cmocka_unit_test(callee_saved_registers_survive),
        cmocka_unit_test(rounding_mode_is_per_context),
        cmocka_unit_test(stack_is_aligned_and_used_from_the_top),
        cmocka_unit_test(fibers_resume_fibers),
        cmocka_unit_test(many_fibers_interleave),
        cmocka_unit_test(suspended_fiber_can_be_reclaimed),
        cmocka_unit_test(sizes_are_rounded_and_bounded),
        cmocka_unit_test(both_switches_mix),
        cmocka_unit_test(guard_page_faults),
    };
    return cmocka_run_group_tests_name("coro_fiber", tests, NULL, NULL);
}
