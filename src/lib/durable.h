/* durable.h — write a small file so that after a crash it holds either the old or the new content.
 *
 * Promises:
 *  - us_write_file_durable(PATH, ...) writes DATA to PATH.tmp, fsyncs it, renames it onto PATH and
 *    fsyncs PATH's directory. Only once all of that succeeded does it return 0.
 *  - On any failure (open, short write, ENOSPC, fsync, rename, directory fsync) it returns -errno,
 *    leaves PATH as it was (the rename happens only after the data is on disk; a failed directory
 *    fsync is reported although PATH may already show the new content), removes PATH.tmp, and puts
 *    a one-line message naming the file and the step into `err` (when errlen > 0).
 */
#ifndef US_DURABLE_H
#define US_DURABLE_H

#include <stddef.h>

int us_write_file_durable(const char *path, const char *data, size_t len, char *err, size_t errlen);

#endif
