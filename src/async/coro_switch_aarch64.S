/* coro_switch_aarch64.S — the coroutine context switch for AArch64 (AAPCS64).
 *
 *   void *tw__coro_switch(void **save_sp, void *new_sp, void *value);
 *
 * Same contract as the x86-64 version: saves the callee-saved state on the
 * caller's stack, stores sp in *save_sp, switches to new_sp, restores the
 * state saved there and returns `value` on the other side. Callee-saved
 * under AAPCS64: x19-x28, the frame pointer x29, the link register x30 (it
 * is where we return to), the low 64 bits of v8-v15 (d8-d15), and the FPCR
 * control bits (rounding mode, flush-to-zero). x18 is the platform register;
 * Linux leaves it to the caller, so it does not travel.
 *
 * Saved frame, from sp up (176 bytes, a multiple of 16 as sp must be):
 *       0: x19 x20   16: x21 x22   32: x23 x24   48: x25 x26   64: x27 x28
 *      80: x29 x30   96: d8 d9    112: d10 d11  128: d12 d13  144: d14 d15
 *     160: FPCR      168: padding
 * A fresh context (built in coro_fiber.c) holds the entry function in x19,
 * its argument in x20, zero in x29 and tw__coro_trampoline in x30.
 *
 * `hint #34` is BTI C (a no-op on cores without branch target
 * identification). Pointer authentication is not used: the saved x30 is
 * stored and reloaded as is. */
#if defined(__aarch64__)

    .text
    .p2align 4
    .globl tw__coro_switch
    .hidden tw__coro_switch
    .type tw__coro_switch, %function
tw__coro_switch:
    .cfi_startproc
    hint #34
    sub sp, sp, #176
    .cfi_adjust_cfa_offset 176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    .cfi_rel_offset x29, 80
    .cfi_rel_offset x30, 88
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]

    mov x9, sp
    str x9, [x0]
    mov sp, x1

    /* Writing FPCR can stall the pipeline on some cores; skip it when the
     * two contexts agree, which is nearly always. */
    ldr x9, [sp, #160]
    mrs x10, fpcr
    cmp x9, x10
    b.eq 1f
    msr fpcr, x9
1:
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    .cfi_adjust_cfa_offset -176
    .cfi_restore x29
    .cfi_restore x30
    mov x0, x2
    ret
    .cfi_endproc
    .size tw__coro_switch, .-tw__coro_switch

/* First code a fresh context runs ("returned to" through x30, sp at the
 * 16-byte-aligned top of the stack): calls entry(arg). entry never returns;
 * if it did, trap. x30 is marked undefined so unwinders stop here. */
    .p2align 4
    .globl tw__coro_trampoline
    .hidden tw__coro_trampoline
    .type tw__coro_trampoline, %function
tw__coro_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    hint #34
    mov x0, x20
    blr x19
    brk #0x3e8
    .cfi_endproc
    .size tw__coro_trampoline, .-tw__coro_trampoline

#endif

/* The stack of a program that links this object stays non-executable, even
 * on hosts where the code above is compiled out. */
#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack, "", %progbits
#endif
