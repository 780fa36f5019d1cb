/* alloc_count.h — counts every heap allocation a benchmark program makes,
 * so it can report allocations per operation (the hot paths must make none
 * in the steady state). Include it once, in the program itself. Sanitizers
 * bring their own allocator: there COUNT_ALLOCS stays undefined and the
 * counter stays 0. */
#ifndef TWIRL_BENCH_ALLOC_COUNT_H
#define TWIRL_BENCH_ALLOC_COUNT_H

#include <stddef.h>

__attribute__((unused)) static unsigned long allocations; /* read only where COUNT_ALLOCS */

#ifndef TWIRL_SANITIZE
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);

void *malloc(size_t n)
{
    allocations++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    allocations++;
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    allocations++;
    return __libc_realloc(p, n);
}
#endif

#endif
