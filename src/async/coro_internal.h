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
 * The context switch is assembly on x86-64 and AArch64
 * (coro_switch_<arch>.S), or makecontext/swapcontext when the library is
 * built with TWIRL_CORO_UCONTEXT=1 (cmake -DTWIRL_CORO_SWITCH=ucontext) or on
 * any other architecture. Switches are announced to AddressSanitizer,
 * ThreadSanitizer and valgrind when those are present.
 *
 * The struct layout depends on the build's switch choice, so it stays private
 * to coro_fiber.c; tests and benchmarks use this API only. Fibers are not
 * thread-safe: a fiber is resumed only on the thread that created it. */
#ifndef TWIRL_CORO_INTERNAL_H
#define TWIRL_CORO_INTERNAL_H

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
/* ------------------------------------------ coro.c, for tests and benches */

/* Bytes of the running coroutine's stack in use (0 outside a coroutine). */
size_t tw__coro_stack_used(void);
/* Stacks r keeps for reuse; coroutines of r not finished yet. */
size_t tw__coro_pool_size(tw_reactor *r);
size_t tw__coro_live_count(tw_reactor *r);

#endif
/* Requests above this are refused (TW_EINVAL): almost surely a unit error. */
#define TW__FIBER_MAX_STACK ((size_t)1 << 30)

/* Maps a new fiber with at least stack_bytes of usable stack (0: the default;
 * rounded up to whole pages and to the minimum) and `extra` bytes of
 * 16-byte-aligned user memory (tw__fiber_extra), zeroed. fn is set with
 * tw__fiber_start before the first resume. Stores the fiber in *out and
 * returns 0, TW_EINVAL for a size above TW__FIBER_MAX_STACK, or TW_ENOMEM
 * when the mapping fails (address space, vm.max_map_count: each fiber is two
 * mappings). */
int tw__fiber_new(size_t stack_bytes, size_t extra, tw__fiber **out);

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
 * but f's own. */
bool tw__fiber_resume(tw__fiber *f);

/* Called on f's own stack: suspends f and switches back to its resumer. Returns
 * at the next tw__fiber_resume(f). */
void tw__fiber_yield(tw__fiber *f);

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

/* "asm-x86_64", "asm-aarch64" or "ucontext": the switch this build uses. */
const char *tw__fiber_switch_name(void);

/* Stack-size arithmetic shared with coro.c: what tw__fiber_new would give
 * for a request (0 on a refused size). */
size_t tw__fiber_round_stack(size_t stack_bytes);

/* ------------------------------------------ coro.c, for tests and benches */

/* Bytes of the running coroutine's stack in use (0 outside a coroutine). */
size_t tw__coro_stack_used(void);
/* Stacks r keeps for reuse; coroutines of r not finished yet. */
size_t tw__coro_pool_size(tw_reactor *r);
size_t tw__coro_live_count(tw_reactor *r);

#endif
