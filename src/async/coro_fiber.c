/* coro_fiber.c — fibers: guarded mmap'd stacks, the two context switches
 * (assembly and ucontext), and the announcements AddressSanitizer,
 * ThreadSanitizer and valgrind need to follow a program that changes stacks
 * under them. See coro_internal.h; resume and yield are inline there. */
#include "async/coro_internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "twirl/error.h"
#include "twirl/log.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define USE_VALGRIND 1
#endif
#endif

/* A ucontext fiber's two contexts: about 2 KiB on x86-64, so they live
 * above the fiber struct only in fibers that use them (the assembly ones
 * keep their whole header in a few cache lines of the stack's top page). */
struct tw__fiber_uc {
    ucontext_t ctx;  /* the fiber's, while it is not running */
    ucontext_t back; /* the resumer's, while the fiber runs */
};

#if TW__FIBER_HAVE_ASM
void tw__coro_trampoline(void); /* coro_switch_<arch>.S */
#endif

/* Cached: sysconf shows up in the cost of every spawn otherwise. */
static _Atomic size_t page_size;

static size_t page_bytes(void)
{
    size_t p = atomic_load_explicit(&page_size, memory_order_relaxed);
    if (p == 0) {
        long sys = sysconf(_SC_PAGESIZE);
        p = sys > 0 ? (size_t)sys : 4096;
        atomic_store_explicit(&page_size, p, memory_order_relaxed);
    }
    return p;
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

size_t tw__fiber_round_stack(size_t stack_bytes)
{
    if (stack_bytes > TW__FIBER_MAX_STACK)
        return 0;
    if (stack_bytes == 0)
        stack_bytes = (size_t)TW__FIBER_DEFAULT_STACK * TW__FIBER_SANITIZER_SCALE;
    if (stack_bytes < (size_t)TW__FIBER_MIN_STACK * TW__FIBER_SANITIZER_SCALE)
        stack_bytes = (size_t)TW__FIBER_MIN_STACK * TW__FIBER_SANITIZER_SCALE;
    return round_up(stack_bytes, page_bytes());
}

/* ------------------------------------------------------------ the default */

#if defined(TWIRL_CORO_UCONTEXT) && TWIRL_CORO_UCONTEXT || !TW__FIBER_HAVE_ASM
#define BUILD_DEFAULT TW__SWITCH_UCONTEXT
#else
#define BUILD_DEFAULT TW__SWITCH_ASM
#endif

/* -1 until the environment was read. A process-wide setting, like
 * TWIRL_REACTOR: it only picks the mechanism, never the behaviour. */
static _Atomic int default_switch = -1;

tw__fiber_switch tw__fiber_default_switch(void)
{
    int sw = atomic_load_explicit(&default_switch, memory_order_relaxed);
    if (sw >= 0)
        return (tw__fiber_switch)sw;
    sw = BUILD_DEFAULT;
    const char *env = getenv("TWIRL_CORO_SWITCH");
    if (env && *env) {
        if (strcmp(env, "ucontext") == 0)
            sw = TW__SWITCH_UCONTEXT;
        else if (strcmp(env, "asm") == 0 && TW__FIBER_HAVE_ASM)
            sw = TW__SWITCH_ASM;
        else
            tw_log(TW_LOG_WARN, "coro",
                   "TWIRL_CORO_SWITCH=%s: unknown or unavailable here (asm, ucontext); using %s",
                   env, sw == TW__SWITCH_ASM ? "asm" : "ucontext");
    }
    int unset = -1;
    if (!atomic_compare_exchange_strong(&default_switch, &unset, sw))
        sw = unset; /* another thread decided first: keep one answer */
    return (tw__fiber_switch)sw;
}

/* ------------------------------------------------------------ mapping */

int tw__fiber_new(size_t stack_bytes, size_t extra, tw__fiber **out)
{
    return tw__fiber_new_with(stack_bytes, extra, tw__fiber_default_switch(), out);
}

int tw__fiber_new_with(size_t stack_bytes, size_t extra, tw__fiber_switch sw, tw__fiber **out)
{
    *out = NULL;
    size_t stack = tw__fiber_round_stack(stack_bytes);
    if (stack == 0 || extra > TW__FIBER_MAX_STACK)
        return TW_EINVAL;
    if (sw != TW__SWITCH_UCONTEXT && (sw != TW__SWITCH_ASM || !TW__FIBER_HAVE_ASM))
        return TW_EINVAL;
    size_t page = page_bytes();
    size_t guard = round_up(TW__FIBER_GUARD_BYTES, page);
    /* The header sits right above the stack, sharing the stack's top page:
     * the struct, the user's extra, then (ucontext) the two contexts. */
    size_t fiber_bytes = round_up(sizeof(struct tw__fiber), 64);
    size_t extra_bytes = round_up(extra, 64);
    size_t uc_bytes = sw == TW__SWITCH_UCONTEXT ? round_up(sizeof(tw__fiber_uc), 64) : 0;
    size_t head = fiber_bytes + extra_bytes + uc_bytes;
    size_t map_bytes = guard + round_up(stack + head, page);

    char *map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return TW_ENOMEM;
    if (mprotect(map, guard, PROT_NONE) != 0) {
        munmap(map, map_bytes);
        return TW_ENOMEM;
    }
    tw__fiber *f = (tw__fiber *)(map + map_bytes - head);
    memset(f, 0, sizeof *f);
    f->kind = (unsigned char)sw;
    f->map = map;
    f->map_bytes = map_bytes;
    f->stack_lo = map + guard;
    f->stack_hi = (char *)f; /* 64-byte aligned: a valid initial stack top */
    f->stack_bytes = stack;
    f->extra = (char *)f + fiber_bytes;
    if (uc_bytes)
        f->uc = (tw__fiber_uc *)((char *)f + fiber_bytes + extra_bytes);
    f->state = TW__FIBER_IDLE;
#ifdef USE_VALGRIND
    f->vg_stack = VALGRIND_STACK_REGISTER(f->stack_lo, f->stack_hi);
#endif
#ifdef TW__FIBER_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    *out = f;
    return 0;
}

void tw__fiber_free(tw__fiber *f)
{
    if (!f)
        return;
    assert(f->state != TW__FIBER_RUNNING);
#ifdef USE_VALGRIND
    VALGRIND_STACK_DEREGISTER(f->vg_stack);
#endif
#ifdef TW__FIBER_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef TW__FIBER_ASAN
    /* Frames that never returned (a reclaimed suspended fiber, every
     * fiber's entry frame) leave poisoned shadow behind; clean it so the next
     * owner of these addresses is not accused of overflowing. */
    __asan_unpoison_memory_region(f->stack_lo, (size_t)(f->stack_hi - f->stack_lo));
#endif
    munmap(f->map, f->map_bytes);
}

void *tw__fiber_extra(tw__fiber *f)
{
    return f->extra;
}

size_t tw__fiber_stack_bytes(const tw__fiber *f)
{
    return f->stack_bytes;
}

size_t tw__fiber_stack_used(const tw__fiber *f)
{
    char here;
    char *volatile p = &here; /* an address on the caller's side of this frame */
    return (size_t)(f->stack_hi - p);
}

bool tw__fiber_on_stack(const tw__fiber *f, const void *ptr)
{
    return (const char *)ptr >= f->stack_lo && (const char *)ptr < f->stack_hi;
}

static const char *switch_name(tw__fiber_switch sw)
{
    if (sw == TW__SWITCH_UCONTEXT)
        return "ucontext";
#if defined(__x86_64__)
    return "asm-x86_64";
#else
    return "asm-aarch64";
#endif
}

const char *tw__fiber_switch_name(void)
{
    return switch_name(tw__fiber_default_switch());
}

const char *tw__fiber_switch_name_of(const tw__fiber *f)
{
    return switch_name((tw__fiber_switch)f->kind);
}

/* ------------------------------------------------------------ ucontext */

/* glibc's swapcontext also saves and restores the signal mask, with a system
 * call each way: the fallback is an order of magnitude slower. */
void tw__fiber_uc_in(tw__fiber *f)
{
    swapcontext(&f->uc->back, &f->uc->ctx);
}

void tw__fiber_uc_out(tw__fiber *f)
{
    swapcontext(&f->uc->ctx, &f->uc->back);
}

/* ------------------------------------------------------------ starting */

/* The first frame on every fiber stack. Never returns: the last switch out
 * leaves it behind, and tw__fiber_start builds a fresh context next time. */
static void fiber_main(void *arg)
{
    tw__fiber *f = arg;
#ifdef TW__FIBER_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->back_bottom, &f->back_size);
#endif
    f->fn(f, f->arg);
    f->state = TW__FIBER_DONE;
    tw__fiber_switch_out(f, true);
    __builtin_trap(); /* a finished fiber was resumed without a new start */
}

/* makecontext passes int arguments only: the pointer travels in two halves. */
static void fiber_main_u(unsigned hi, unsigned lo)
{
    fiber_main((void *)(((uintptr_t)hi << 16 << 16) | (uintptr_t)lo));
}

static void start_ucontext(tw__fiber *f)
{
    /* getcontext only fails on a bad pointer. */
    ucontext_t *ctx = &f->uc->ctx;
    getcontext(ctx);
    ctx->uc_stack.ss_sp = f->stack_lo;
    ctx->uc_stack.ss_size = (size_t)(f->stack_hi - f->stack_lo);
    ctx->uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(ctx, (void (*)(void))fiber_main_u, 2, (unsigned)(p >> 16 >> 16),
                (unsigned)(p & 0xffffffffu));
}

#if TW__FIBER_HAVE_ASM
static void start_asm(tw__fiber *f)
{
#if defined(__x86_64__)
    /* The frame tw__coro_switch_inline pops, then the trampoline's two
     * words (see coro_switch_x86_64.S): 16-byte aligned after all five. */
    uint64_t *sp = (uint64_t *)(f->stack_hi - 16 - 40);
    uint32_t mxcsr = __builtin_ia32_stmxcsr();
    uint16_t fpucw;
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = (uint64_t)(uintptr_t)tw__coro_trampoline;
    sp[1] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    sp[2] = 0;                               /* rbp */
    sp[3] = (uint64_t)(uintptr_t)fiber_main; /* entry */
    sp[4] = (uint64_t)(uintptr_t)f;          /* its argument */
    f->sp = sp;
#else /* __aarch64__ */
    /* See coro_switch_aarch64.S: 22 slots, sp = top of stack after the pop. */
    uint64_t *sp = (uint64_t *)(f->stack_hi - 176);
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)fiber_main;           /* x19: entry */
    sp[1] = (uint64_t)(uintptr_t)f;                    /* x20: entry's argument */
    sp[10] = 0;                                        /* x29 */
    sp[11] = (uint64_t)(uintptr_t)tw__coro_trampoline; /* x30 */
    sp[20] = fpcr;
    f->sp = sp;
#endif
}
#endif

void tw__fiber_start(tw__fiber *f, tw__fiber_fn fn, void *arg)
{
    assert(f->state != TW__FIBER_RUNNING);
    f->fn = fn;
    f->arg = arg;
#ifdef TW__FIBER_ASAN
    __asan_unpoison_memory_region(f->stack_lo, (size_t)(f->stack_hi - f->stack_lo));
#endif
#if TW__FIBER_HAVE_ASM
    if (f->kind == TW__SWITCH_ASM)
        start_asm(f);
    else
#endif
        start_ucontext(f);
    f->state = TW__FIBER_READY;
}
