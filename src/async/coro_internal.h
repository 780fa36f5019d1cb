/* coro_internal.h — fibers: a stack plus a machine context, the layer under
 * twirl/coro.h.
 *
 * A fiber runs a function on its own mmap'd stack. tw__fiber_resume()
 * switches into it from whatever stack is current (the thread's, or another
 * fiber's); tw__fiber_yield(), called on the fiber, switches back to that
 * resumer. This is the asymmetric model of Python generators: a fiber always
 * returns to whoever resumed it last.
 *
 * The stack has an inaccessible guard region below it, so running off the end
 * faults at once instead of writing over a neighbour. The fiber's own
 * bookkeeping (and `extra` bytes for its user) live at the top of the same
 * mapping, above the stack: a fiber costs one mmap and no malloc.
 *
 * Two context switches are compiled in, and each fiber uses the one chosen
 * when it was made (tw__fiber_default_switch):
 *   - assembly on x86-64 (inline, below) and AArch64 (coro_switch_aarch64.S),
 *     the default;
 *   - makecontext/swapcontext, the fallback: the only one on other
 *     architectures, the default in a library configured with
 *     -DTWIRL_CORO_SWITCH=ucontext (TWIRL_CORO_UCONTEXT=1), and chosen at
 *     run time by TWIRL_CORO_SWITCH=ucontext in the environment (which is
 *     how the test suite runs the coroutine tests on both).
 * Switches are announced to AddressSanitizer, ThreadSanitizer and valgrind
 * when those are present.
 *
 * resume and yield are inline below, so that coro.c's await path holds the
 * switch itself: every frame between a switch and the code it returns to
 * costs a mispredicted return (the return-stack predictor holds the other
 * stack's addresses), and those, not instructions, were most of an await's
 * cost. Fibers are not thread-safe: a fiber is resumed only on the thread
 * that created it. */
#ifndef TWIRL_CORO_INTERNAL_H
#define TWIRL_CORO_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

#include "twirl/reactor.h"

typedef struct tw__fiber tw__fiber;
typedef void (*tw__fiber_fn)(tw__fiber *f, void *arg);

/* Usable stack when the caller asks for 0 bytes, and the floor under any
 * request. See twirl/coro.h for why 64 KiB. Sanitizer builds multiply both by
 * TW__FIBER_SANITIZER_SCALE: instrumented frames are several times larger. */
enum {
    TW__FIBER_DEFAULT_STACK = 64 * 1024,
    TW__FIBER_MIN_STACK = 16 * 1024,
    TW__FIBER_GUARD_BYTES = 16 * 1024, /* at least one page; PROT_NONE */
};
#if defined(TWIRL_SANITIZE) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TW__FIBER_SANITIZER_SCALE 4
#else
#define TW__FIBER_SANITIZER_SCALE 1
#endif
/* Requests above this are refused (TW_EINVAL): almost surely a unit error. */
#define TW__FIBER_MAX_STACK ((size_t)1 << 30)

/* The context switches. */
typedef enum tw__fiber_switch {
    TW__SWITCH_ASM = 0, /* coro_switch_<arch>.S */
    TW__SWITCH_UCONTEXT /* makecontext/swapcontext */
} tw__fiber_switch;

#if defined(__x86_64__) || defined(__aarch64__)
#define TW__FIBER_HAVE_ASM 1
#else
#define TW__FIBER_HAVE_ASM 0
#endif

/* The switch new fibers get: the build's default (assembly where there is
 * one, unless configured with TWIRL_CORO_UCONTEXT=1), or what
 * TWIRL_CORO_SWITCH ("asm" or "ucontext") says in the environment; read
 * once per process. An unusable value is logged (warning) and ignored. */
tw__fiber_switch tw__fiber_default_switch(void);

/* Maps a new fiber with at least stack_bytes of usable stack (0: the default;
 * rounded up to whole pages and to the minimum) and `extra` bytes of
 * 16-byte-aligned user memory (tw__fiber_extra), zeroed, using the default
 * switch. fn is set with tw__fiber_start before the first resume. Stores the
 * fiber in *out and returns 0, TW_EINVAL for a size above
 * TW__FIBER_MAX_STACK, or TW_ENOMEM when the mapping fails (address space,
 * vm.max_map_count: each fiber is two mappings). */
int tw__fiber_new(size_t stack_bytes, size_t extra, tw__fiber **out);
/* The same with a given switch (TW_EINVAL: assembly on an architecture
 * without it). */
int tw__fiber_new_with(size_t stack_bytes, size_t extra, tw__fiber_switch sw, tw__fiber **out);

/* Unmaps the fiber. It must not be running; a fiber suspended in the middle
 * of fn is reclaimed without unwinding (whatever its frames hold leaks). */
void tw__fiber_free(tw__fiber *f);

/* Prepares a new or finished fiber to run fn(f, arg) from the top of its
 * stack at the next resume. Reusing a finished fiber this way is how stacks
 * are pooled; its extra memory is left as it was. */
void tw__fiber_start(tw__fiber *f, tw__fiber_fn fn, void *arg);

/* Switches into f (started or suspended, not running) until it yields or fn
 * returns. Returns true when fn has returned: the fiber is then finished and
 * may be started again or freed. Call on the fiber's thread, from any stack
 * but f's own. (Inline, below.) */
static inline bool tw__fiber_resume(tw__fiber *f);

/* Called on f's own stack: suspends f and switches back to its resumer. Returns
 * at the next tw__fiber_resume(f). (Inline, below.) */
static inline void tw__fiber_yield(tw__fiber *f);

/* The caller's extra memory (see tw__fiber_new). */
void *tw__fiber_extra(tw__fiber *f);

/* The stack size f was made with, after rounding (see tw__fiber_new): two
 * fibers with the same value are interchangeable. The usable stack may be a
 * little larger (the rest of the header's page). */
size_t tw__fiber_stack_bytes(const tw__fiber *f);

/* Bytes of f's stack in use right now, measured from the top of the stack to
 * the caller's frame. Only meaningful when called on f's own stack. */
size_t tw__fiber_stack_used(const tw__fiber *f);

/* True if ptr points into f's usable stack. */
bool tw__fiber_on_stack(const tw__fiber *f, const void *ptr);

/* "asm-x86_64", "asm-aarch64" or "ucontext": the switch new fibers get
 * (tw__fiber_default_switch), and the one f uses. */
const char *tw__fiber_switch_name(void);
const char *tw__fiber_switch_name_of(const tw__fiber *f);

/* Stack-size arithmetic shared with coro.c: what tw__fiber_new would give
 * for a request (0 on a refused size). */
size_t tw__fiber_round_stack(size_t stack_bytes);

/* ------------------------------------------ coro.c, for tests and benches */

/* Bytes of the running coroutine's stack in use (0 outside a coroutine). */
size_t tw__coro_stack_used(void);
/* Stacks r keeps for reuse; coroutines of r not finished yet. */
size_t tw__coro_pool_size(tw_reactor *r);
size_t tw__coro_live_count(tw_reactor *r);

/* ------------------------------------------------ the inline switch */

#if defined(__SANITIZE_ADDRESS__)
#define TW__FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TW__FIBER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TW__FIBER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TW__FIBER_TSAN 1
#endif
#endif
#ifdef TW__FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef TW__FIBER_TSAN
#include <sanitizer/tsan_interface.h>
#endif

enum tw__fiber_state {
    TW__FIBER_IDLE = 0,  /* mapped, nothing to run */
    TW__FIBER_READY,     /* started, never resumed */
    TW__FIBER_RUNNING,   /* on its own stack now */
    TW__FIBER_SUSPENDED, /* yielded in the middle of fn */
    TW__FIBER_DONE       /* fn returned */
};

typedef struct tw__fiber_uc tw__fiber_uc; /* coro_fiber.c: the two ucontexts */

/* Private to this header and coro_fiber.c; read through the functions
 * above. The hot fields come first. */
struct tw__fiber {
    void *sp;      /* assembly: the fiber's saved stack pointer */
    void *back_sp; /* assembly: the resumer's */
    unsigned char state;
    unsigned char kind; /* tw__fiber_switch */
    tw__fiber_uc *uc;   /* ucontext: both contexts, in the mapping */
    tw__fiber_fn fn;
    void *arg;
    void *map; /* the whole mapping: guard, stack, this struct, extra */
    size_t map_bytes;
    char *stack_lo; /* usable stack: [stack_lo, stack_hi) */
    char *stack_hi;
    size_t stack_bytes; /* as asked for, rounded: the pool's size class */
    void *extra;
    unsigned vg_stack; /* valgrind's stack id (0 without valgrind) */
#ifdef TW__FIBER_ASAN
    /* The resumer's stack, learnt at every switch in, for the switch out. */
    const void *back_bottom;
    size_t back_size;
#endif
#ifdef TW__FIBER_TSAN
    void *tsan_fiber;
    void *tsan_back;
#endif
};

#if defined(__x86_64__)
/* The x86-64 switch, inline, so that no call and no return surround it:
 * every return executed after a switch into a frame made before it is
 * mispredicted (the return-stack predictor holds the other stack's
 * addresses), and a called switch adds its own and its caller's. Inline,
 * an await costs two such misses instead of four (the round trip went from
 * about 70 to 52 ns; bench/bench_coro.c).
 *
 * It saves, on the current stack: rbp, the MXCSR and x87 control words (the
 * ABI makes their control bits callee-saved: a coroutine that changes the
 * rounding mode keeps it to itself) and the address to resume at; stores
 * the stack pointer in *save; loads `to` and undoes the same frame there,
 * jumping to its resume address. Every other register is declared
 * clobbered, so the compiler saves what it needs around the statement (its
 * callee-saved registers in the enclosing function's prologue, as for a
 * call). The 128 bytes below the stack pointer are skipped first: they may
 * be the enclosing function's red zone. A fresh context's frame (built by
 * tw__fiber_start) resumes at tw__coro_trampoline with the entry function
 * and its argument above the frame (coro_switch_x86_64.S).
 *
 * Frame, from the saved stack pointer up: resume address; MXCSR (4 bytes),
 * x87 control word (2), padding (2); rbp. */
static inline __attribute__((always_inline)) void tw__coro_switch_inline(void **save, void *to)
{
    void *s = save, *t = to;
    __asm__ volatile("leaq -128(%%rsp), %%rsp\n\t"
                     "pushq %%rbp\n\t"
                     "subq $8, %%rsp\n\t"
                     "stmxcsr (%%rsp)\n\t"
                     "fnstcw 4(%%rsp)\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%%rdi)\n\t"
                     "movq %%rsi, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "ldmxcsr (%%rsp)\n\t"
                     "fldcw 4(%%rsp)\n\t"
                     "addq $8, %%rsp\n\t"
                     "popq %%rbp\n\t"
                     "jmp *%%rax\n"
                     "1:\n\t"
                     "endbr64\n\t" /* a landing pad, where indirect branch tracking is on */
                     "leaq 128(%%rsp), %%rsp"
                     : "+D"(s), "+S"(t)
                     :
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                       "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
#if defined(__AVX512F__)
                       "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
                       "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1",
                       "k2", "k3", "k4", "k5", "k6", "k7",
#endif
                       "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)",
                       "memory", "cc");
}
#define TW__ASM_SWITCH(save, to) tw__coro_switch_inline((save), (to))
#elif TW__FIBER_HAVE_ASM
/* coro_switch_aarch64.S: saves the callee-saved state on the current stack,
 * stores the stack pointer in *save_sp, and continues on new_sp. */
void *tw__coro_switch(void **save_sp, void *new_sp, void *value);
#define TW__ASM_SWITCH(save, to) tw__coro_switch((save), (to), NULL)
#endif
/* coro_fiber.c: the same two crossings with swapcontext. */
void tw__fiber_uc_in(tw__fiber *f);
void tw__fiber_uc_out(tw__fiber *f);

/* Each side of a switch tells the sanitizers where it is going before the
 * jump and that it has arrived after it. */
static inline __attribute__((always_inline)) void tw__fiber_switch_in(tw__fiber *f)
{
#ifdef TW__FIBER_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, (size_t)(f->stack_hi - f->stack_lo));
#endif
#ifdef TW__FIBER_TSAN
    f->tsan_back = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#if TW__FIBER_HAVE_ASM
    if (__builtin_expect(f->kind == TW__SWITCH_ASM, 1))
        TW__ASM_SWITCH(&f->back_sp, f->sp);
    else
#endif
        tw__fiber_uc_in(f);
#ifdef TW__FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* final: the last switch out of a run (fn returned); nothing comes back to
 * these frames, so ASan may free the fiber's fake stack. */
static inline __attribute__((always_inline)) void tw__fiber_switch_out(tw__fiber *f, bool final)
{
#ifdef TW__FIBER_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(final ? NULL : &fake, f->back_bottom, f->back_size);
#else
    (void) final;
#endif
#ifdef TW__FIBER_TSAN
    __tsan_switch_to_fiber(f->tsan_back, 0);
#endif
#if TW__FIBER_HAVE_ASM
    if (__builtin_expect(f->kind == TW__SWITCH_ASM, 1))
        TW__ASM_SWITCH(&f->sp, f->back_sp);
    else
#endif
        tw__fiber_uc_out(f);
#ifdef TW__FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, &f->back_bottom, &f->back_size);
#endif
}

static inline bool tw__fiber_resume(tw__fiber *f)
{
    assert(f->state == TW__FIBER_READY || f->state == TW__FIBER_SUSPENDED);
    f->state = TW__FIBER_RUNNING;
    tw__fiber_switch_in(f);
    return f->state == TW__FIBER_DONE;
}

static inline void tw__fiber_yield(tw__fiber *f)
{
    assert(f->state == TW__FIBER_RUNNING);
    f->state = TW__FIBER_SUSPENDED;
    tw__fiber_switch_out(f, false);
}

#endif
