/* helpers.h — what many unit tests need: a scratch directory, small files, a free port, and
 * running a libuv loop until a condition holds (with a deadline, never a fixed sleep).
 *
 * Failures that make a test meaningless (no temporary directory, a file that cannot be written)
 * are reported by the return value; the caller asserts.
 */
#ifndef UT_HELPERS_H
#define UT_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "lib/key.h"

/* A new directory "/tmp/us-NAME-XXXXXX" in dir[size] (mode 0700): dir, or NULL. */
char *ut_mkdtemp(char *dir, size_t size, const char *name);

/* Remove dir and everything below it (symlinks are not followed). 0, or -1 if something stayed. */
int ut_rmtree(const char *dir);

/* Create or replace path with text. 0, or -1. */
int ut_write_file(const char *path, const char *text);

/* The whole of path, NUL-terminated (malloc'ed; *len its length if len), or NULL. */
char *ut_read_file(const char *path, size_t *len);

/* Let time pass: only to let a loop or another process run, never to wait for an event (use
 * ut_run_until for that). */
void ut_sleep_ms(int ms);

/* Run loop until done(data) holds or timeout_ms pass; a 2 ms timer keeps the loop turning.
 * Returns done(data). */
bool ut_run_until(uv_loop_t *loop, bool (*done)(const void *data), const void *data,
                  int timeout_ms);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and close). -1 on error. */
int ut_free_port(void);

/* A keyring of one key whose hex digits start at `fill` (different fills, different keys) into
 * *out: 0, or -1. */
int ut_keyring(unsigned char fill, us_keyring *out);

/* Close every handle of loop that is not closing yet and run it until they are closed (a test's
 * teardown, also after a failed assertion left some open). */
void ut_close_all(uv_loop_t *loop);

#endif
