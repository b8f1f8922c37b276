/* mem.c — malloc settings and trimming (mem.h). */
#include "lib/mem.h"

#include <malloc.h>

/* Blocks of this size or more get their own mapping, returned to the kernel when freed. The
 * large ones are the replicated state's per-service arrays (33 KB per service): they live long and
 * grow, and an apply changes them in place (fsm.c). As mappings they grow by mremap, which moves
 * no byte and faults in only the new pages; on the heap, growing 100 services to 200 copied
 * 3.4 MB into freshly faulted pages on every agent at once (25 agents on two cores lost their
 * leases in that stall). What is freed in the middle of the heap goes back to the kernel at the
 * next us_mem_trim. */
#define US_MMAP_THRESHOLD (1024 * 1024)
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
