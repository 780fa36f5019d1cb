/* coro_fiber.c — fibers: guarded mmap'd stacks and the context switch, with
 * the announcements AddressSanitizer, ThreadSanitizer and valgrind need to
 * follow a program that changes stacks under them. See coro_internal.h. */
#include "async/coro_internal.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "twirl/error.h"

#if !defined(TWIRL_CORO_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define TWIRL_CORO_UCONTEXT 1 /* no assembly for this architecture */
#endif
#if defined(TWIRL_CORO_UCONTEXT) && TWIRL_CORO_UCONTEXT
#define USE_UCONTEXT 1
#include <ucontext.h>
#else
#define USE_UCONTEXT 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define USE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define USE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define USE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define USE_TSAN 1
#endif
#endif
#ifdef USE_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef USE_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define USE_VALGRIND 1
#endif
#endif

enum fiber_state {
    FIBER_IDLE = 0,  /* mapped, nothing to run */
    FIBER_READY,     /* started, never resumed */
    FIBER_RUNNING,   /* on its own stack now */
    FIBER_SUSPENDED, /* yielded in the middle of fn */
    FIBER_DONE       /* fn returned */
};

struct tw__fiber {
#if USE_UCONTEXT
    ucontext_t ctx;  /* the fiber's, while it is not running */
    ucontext_t back; /* the resumer's, while the fiber runs */
#else
    void *sp;      /* the fiber's saved stack pointer */
    void *back_sp; /* the resumer's */
#endif
    tw__fiber_fn fn;
    void *arg;
    enum fiber_state state;
    void *map; /* the whole mapping: guard, stack, this struct, extra */
    size_t map_bytes;
    char *stack_lo; /* usable stack: [stack_lo, stack_hi) */
    char *stack_hi;
    size_t stack_bytes; /* as asked for, rounded: the pool's size class */
    void *extra;
#ifdef USE_VALGRIND
    unsigned vg_stack;
#endif
#ifdef USE_ASAN
    /* The resumer's stack, learnt at every switch in, for the switch out. */
    const void *back_bottom;
    size_t back_size;
#endif
#ifdef USE_TSAN
    void *tsan_fiber;
    void *tsan_back;
#endif
};

#if !USE_UCONTEXT
/* coro_switch_<arch>.S */
void *tw__coro_switch(void **save_sp, void *new_sp, void *value);
void tw__coro_trampoline(void);
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

int tw__fiber_new(size_t stack_bytes, size_t extra, tw__fiber **out)
{
    *out = NULL;
    size_t stack = tw__fiber_round_stack(stack_bytes);
    if (stack == 0 || extra > TW__FIBER_MAX_STACK)
        return TW_EINVAL;
    size_t page = page_bytes();
    size_t guard = round_up(TW__FIBER_GUARD_BYTES, page);
    /* The header sits right above the stack, sharing the stack's top page. */
    size_t head = round_up(sizeof(struct tw__fiber), 64) + round_up(extra, 64);
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
    f->map = map;
    f->map_bytes = map_bytes;
    f->stack_lo = map + guard;
    f->stack_hi = (char *)f; /* 64-byte aligned: a valid initial stack top */
    f->stack_bytes = stack;
    f->extra = (char *)f + round_up(sizeof(struct tw__fiber), 64);
    f->state = FIBER_IDLE;
#ifdef USE_VALGRIND
    f->vg_stack = VALGRIND_STACK_REGISTER(f->stack_lo, f->stack_hi);
#endif
#ifdef USE_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
    *out = f;
    return 0;
}

void tw__fiber_free(tw__fiber *f)
{
    if (!f)
        return;
#ifdef USE_VALGRIND
    VALGRIND_STACK_DEREGISTER(f->vg_stack);
#endif
#ifdef USE_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
#endif
#ifdef USE_ASAN
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

const char *tw__fiber_switch_name(void)
{
#if USE_UCONTEXT
    return "ucontext";
#elif defined(__x86_64__)
    return "asm-x86_64";
#else
    return "asm-aarch64";
#endif
}

/* ------------------------------------------------------------ switching */

/* The three crossings. Each side of a switch tells the sanitizers where it
 * is going before the jump and that it has arrived after it. */

static inline void switch_in(tw__fiber *f)
{
#ifdef USE_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, (size_t)(f->stack_hi - f->stack_lo));
#endif
#ifdef USE_TSAN
    f->tsan_back = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#if USE_UCONTEXT
    swapcontext(&f->back, &f->ctx);
#else
    tw__coro_switch(&f->back_sp, f->sp, NULL);
#endif
#ifdef USE_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static inline void switch_out(tw__fiber *f, bool final)
{
#ifdef USE_ASAN
    void *fake = NULL;
    /* The last switch out of a run passes no save slot: ASan then frees the
     * fiber's fake stack, since nothing will come back to these frames. */
    __sanitizer_start_switch_fiber(final ? NULL : &fake, f->back_bottom, f->back_size);
#else
    (void) final;
#endif
#ifdef USE_TSAN
    __tsan_switch_to_fiber(f->tsan_back, 0);
#endif
#if USE_UCONTEXT
    swapcontext(&f->ctx, &f->back);
#else
    tw__coro_switch(&f->sp, f->back_sp, NULL);
#endif
#ifdef USE_ASAN
    __sanitizer_finish_switch_fiber(fake, &f->back_bottom, &f->back_size);
#endif
}

/* The first frame on every fiber stack. Never returns: the last switch out
 * leaves it behind, and tw__fiber_start builds a fresh context next time. */
static void fiber_main(void *arg)
{
    tw__fiber *f = arg;
#ifdef USE_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->back_bottom, &f->back_size);
#endif
    f->fn(f, f->arg);
    f->state = FIBER_DONE;
    switch_out(f, true);
    __builtin_trap(); /* a finished fiber was resumed without a new start */
}

#if USE_UCONTEXT
/* makecontext passes int arguments only: the pointer travels in two halves. */
static void fiber_main_u(unsigned hi, unsigned lo)
{
    fiber_main((void *)(((uintptr_t)hi << 16 << 16) | (uintptr_t)lo));
}
#endif

void tw__fiber_start(tw__fiber *f, tw__fiber_fn fn, void *arg)
{
    f->fn = fn;
    f->arg = arg;
#ifdef USE_ASAN
    __asan_unpoison_memory_region(f->stack_lo, (size_t)(f->stack_hi - f->stack_lo));
#endif
#if USE_UCONTEXT
    /* getcontext only fails on a bad pointer. */
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack_lo;
    f->ctx.uc_stack.ss_size = (size_t)(f->stack_hi - f->stack_lo);
    f->ctx.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->ctx, (void (*)(void))fiber_main_u, 2, (unsigned)(p >> 16 >> 16),
                (unsigned)(p & 0xffffffffu));
#elif defined(__x86_64__)
    /* The frame tw__coro_switch pops (see coro_switch_x86_64.S), placed so
     * that the stack pointer is 16-byte aligned when the trampoline runs. */
    uint64_t *sp = (uint64_t *)(f->stack_hi - 16 - 8 * 8);
    uint32_t mxcsr = __builtin_ia32_stmxcsr();
    uint16_t fpucw;
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    sp[1] = 0;                               /* r15 */
    sp[2] = 0;                               /* r14 */
    sp[3] = (uint64_t)(uintptr_t)f;          /* r13: entry's argument */
    sp[4] = (uint64_t)(uintptr_t)fiber_main; /* r12: entry */
    sp[5] = 0;                               /* rbx */
    sp[6] = 0;                               /* rbp */
    sp[7] = (uint64_t)(uintptr_t)tw__coro_trampoline;
    sp[8] = 0;
    sp[9] = 0;
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
    f->state = FIBER_READY;
}

bool tw__fiber_resume(tw__fiber *f)
{
    assert(f->state == FIBER_READY || f->state == FIBER_SUSPENDED);
    f->state = FIBER_RUNNING;
    switch_in(f);
    return f->state == FIBER_DONE;
}

void tw__fiber_yield(tw__fiber *f)
{
    assert(f->state == FIBER_RUNNING);
    f->state = FIBER_SUSPENDED;
    switch_out(f, false);
}
