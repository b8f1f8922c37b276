/* logrotate.h — size-based rotation of the log files that service processes, hooks and exec checks
 * write to (DATA_DIR/logs/SERVICE.log, SERVICE.check.log, SERVICE.notify.log).
 *
 * Children hold these files open (O_APPEND, opened by the agent before exec), so renaming a file
 * would leave them writing to the renamed inode. Rotation is copy + truncate instead:
 *   FILE.(keep-1) -> FILE.keep, ..., FILE.1 -> FILE.2 (renames, the oldest is dropped),
 *   FILE is copied to a new FILE.1, then FILE is truncated to 0 bytes;
 * O_APPEND writers then continue at the start of FILE, without a hole. With keep = 0 FILE is only
 * truncated.
 *
 * Bounds: the agent looks at the sizes once a second, so a file may exceed log_max by what is
 * written in about a second before it is rotated. Output written between the end of the copy and
 * the truncation (microseconds) is lost, and a line may be split across FILE.1 and FILE. The
 * copy is bounded (at most twice the size seen when it started) and runs on libuv's thread pool,
 * one rotation at a time, so the agent's loop never waits for it.
 */
#ifndef US_LOGROTATE_H
#define US_LOGROTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/model.h"

/* Rotate `path` now (synchronously), keeping `keep` older files. 0 (with `err` set when the copy
 * could not be completed, e.g. ENOSPC, and the file was truncated anyway), or -errno with `err`
 * set and the file not truncated. Thread-safe: it logs nothing. */
int us_log_rotate(const char *path, int keep, char *err, size_t errlen);

/* The definition of the i-th service whose logs may grow here (0 <= i < n), or NULL to pass it
 * over: the caller knows which services ever ran on this node (their logs are the only ones). */
typedef const us_service_def *(*us_logs_def_at)(void *ctx, int i);

/* Call often (each reconcile): at most once a second, look at the logs of the next 100 of the n
 * services def_at names (round-robin) and start the rotation of one larger than its service's
 * log_max (one at a time, on the thread pool). */
void us_logs_maintain(uv_loop_t *loop, const char *data_dir, us_logs_def_at def_at, void *ctx,
                      int n, int64_t now_ms);

/* A rotation is running (the loop must not be closed yet). */
bool us_logs_busy(void);

#endif
