/* coro_switch_x86_64.S — the entry of a fresh coroutine context on x86-64
 * (System V). The switch itself is inline assembly (tw__coro_switch_inline
 * in coro_internal.h), so that no call or return surrounds it.
 *
 *   void tw__coro_trampoline(void);
 *
 * A fresh context's frame, built by tw__fiber_start (coro_fiber.c), is what
 * the inline switch pops — the resume address (this function), the MXCSR
 * and x87 control words, rbp (0) — followed by the entry function and its
 * argument, placed so that the stack pointer is 16-byte aligned once both
 * are popped:
 *     0: tw__coro_trampoline   8: MXCSR | x87 CW << 32   16: rbp = 0
 *    24: entry                32: argument
 * The trampoline calls entry(argument) with the alignment the ABI wants at a
 * call. entry never returns (it switches away for good); if it did, trap
 * rather than run off into whatever follows. The return address is marked
 * undefined so debuggers and unwinders stop here instead of walking into
 * the stack's guard page.
 *
 * No CET shadow-stack support: this file carries no .note.gnu.property, so
 * the linker does not mark a program that links it as shadow-stack
 * compatible, and the kernel never enables shadow stacks for it (a switch
 * returns on another stack than it was called on). */
#if defined(__x86_64__)

    .text
    .p2align 4
    .globl tw__coro_trampoline
    .hidden tw__coro_trampoline
    .type tw__coro_trampoline, @function
tw__coro_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    xorl %ebp, %ebp
    popq %rax
    popq %rdi
    callq *%rax
    ud2
    .cfi_endproc
    .size tw__coro_trampoline, .-tw__coro_trampoline

#endif

/* The stack of a program that links this object stays non-executable, even
 * on hosts where the code above is compiled out. */
#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack, "", @progbits
#endif
