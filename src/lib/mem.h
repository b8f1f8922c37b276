/* mem.h — keep the agent's resident memory close to what it uses.
 *
 * glibc's malloc keeps what is freed for later: a large block freed in the middle of the heap (a
 * services file parsed, a snapshot or a status answer built) stays resident. us_mem_tune fixes
 * the mmap threshold at 1 MiB (the replicated state's per-service arrays get their own mappings,
 * which grow by mremap without copying; mem.c says why) and uses one arena; us_mem_trim gives free
 * pages, also those in the middle of the heap, back to the kernel (malloc_trim). Both only change
 * where memory lives, never what the program sees.
 */
#ifndef US_MEM_H
#define US_MEM_H

#include <stdbool.h>
#include <stdint.h>

/* Once, before the first large allocation. */
void us_mem_tune(void);

/* Give free heap pages back to the kernel, at most once per `every_ms` (monotonic now_ms);
 * true when it trimmed. Cheap: a walk over the free lists. */
bool us_mem_trim(int64_t now_ms, int64_t every_ms);

#endif
