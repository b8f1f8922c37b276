/* clock.h — the two clocks understudy reads.
 *
 * CLOCK_MONOTONIC for every duration, deadline and lease (it never jumps); CLOCK_REALTIME only
 * for times people read (events) and for deadlines that are replicated between nodes (backoffs,
 * cooldowns), never for lease arithmetic. */
#ifndef US_CLOCK_H
#define US_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ms / ns. */
int64_t us_now_ms(void);
int64_t us_now_ns(void);
/* CLOCK_REALTIME in ms. */
int64_t us_wall_ms(void);

/* Block for `ms` milliseconds, signals or not (for clients, never in a loop's callbacks). */
void us_sleep_ms(int ms);

#endif
