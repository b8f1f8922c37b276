/* mem.c — malloc settings and trimming (mem.h). */
#include "lib/mem.h"

#include <malloc.h>

/* Blocks of this size or more get their own mapping, returned to the kernel when freed. Kept
 * high: a fresh mapping faults in every page on first touch and is unmapped with a TLB shootdown
 * when freed, which made an apply of 200 changed service definitions cost 40-56 ms of CPU per
 * agent (the per-service arrays are megabytes); from the heap it costs 5 ms. What is freed in the
 * middle of the heap goes back to the kernel at the next us_mem_trim. */
#define US_MMAP_THRESHOLD (32 * 1024 * 1024)
/* Free memory at the top of the heap beyond this is returned at once. */
#define US_TRIM_THRESHOLD (256 * 1024)

void us_mem_tune(void)
{
    /* Setting either threshold also turns off glibc's dynamic adjustment of both. */
    mallopt(M_MMAP_THRESHOLD, US_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, US_TRIM_THRESHOLD);
    /* One loop thread allocates; libuv's and libraft's workers little: one arena. */
    mallopt(M_ARENA_MAX, 1);
}

bool us_mem_trim(int64_t now_ms, int64_t every_ms)
{
    static int64_t last_ms = -1; /* the loop is single-threaded */
    if (last_ms >= 0 && now_ms - last_ms < every_ms)
        return false;
    last_ms = now_ms;
    malloc_trim(0);
    return true;
}
