/* file.h — a whole (small) file in memory, for the commands that send or check one. */
#ifndef US_FILE_H
#define US_FILE_H

#include <stddef.h>

/* Read all of `path` into a new NUL-terminated buffer (*out, to free; *len bytes without the
 * NUL). 0, or a negative errno (nothing to free). */
int us_file_read(const char *path, char **out, size_t *len);

#endif
