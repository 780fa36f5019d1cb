/* coro_switch_x86_64.S — the coroutine context switch for x86-64 (System V).
 *
 *   void *tw__coro_switch(void **save_sp, void *new_sp, void *value);
 *
 * Pushes the callee-saved state of the caller on its own stack, stores the
 * stack pointer in *save_sp, loads new_sp and pops the state saved there,
 * then returns `value` on the other side. Everything the ABI lets a callee
 * clobber (rax, rcx, rdx, rsi, rdi, r8-r11, xmm*, flags) is already dead at
 * a call, so only rbx, rbp, r12-r15, the MXCSR control/status word and the
 * x87 control word travel (the ABI makes the control bits of both
 * callee-saved: a coroutine that changes the rounding mode keeps it to
 * itself).
 *
 * Saved frame, from the stack pointer up (8 words, so a 16-byte-aligned
 * stack pointer stays aligned across the switch):
 *     0: MXCSR (4 bytes), x87 control word (2 bytes), padding
 *     8: r15   16: r14   24: r13   32: r12   40: rbx   48: rbp
 *    56: return address
 * A fresh context (built in coro_fiber.c) holds the entry function in r12,
 * its argument in r13 and tw__coro_trampoline as the return address.
 *
 * No CET shadow-stack support: this file carries no .note.gnu.property, so
 * the linker does not mark a program that links it as shadow-stack
 * compatible, and the kernel never enables shadow stacks for it. */
#if defined(__x86_64__)

    .text
    .p2align 4
    .globl tw__coro_switch
    .hidden tw__coro_switch
    .type tw__coro_switch, @function
tw__coro_switch:
    .cfi_startproc
    endbr64
    pushq %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    pushq %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    pushq %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    pushq %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    pushq %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    subq $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw 4(%rsp)

    movq %rsp, (%rdi)
    movq %rsi, %rsp

    /* From here on the frame is the other context's; its unwind rules are
     * the same shape, so the CFI above stays true. */
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore r15
    popq %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore r14
    popq %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore r13
    popq %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore r12
    popq %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    popq %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    movq %rdx, %rax
    ret
    .cfi_endproc
    .size tw__coro_switch, .-tw__coro_switch

/* First code a fresh context runs, "returned to" by tw__coro_switch with the
 * stack pointer 16-byte aligned: calls entry(arg) with the alignment the ABI
 * wants at a call. entry never returns (it switches away for good); if it
 * did, trap rather than run off into whatever follows. The return address
 * is marked undefined so debuggers and unwinders stop here instead of
 * walking into the stack's guard page. */
    .p2align 4
    .globl tw__coro_trampoline
    .hidden tw__coro_trampoline
    .type tw__coro_trampoline, @function
tw__coro_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    endbr64
    xorl %ebp, %ebp
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size tw__coro_trampoline, .-tw__coro_trampoline

#endif

/* The stack of a program that links this object stays non-executable, even
 * on hosts where the code above is compiled out. */
#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack, "", @progbits
#endif
