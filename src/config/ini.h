/* ini.h — a small INI reader that reports line numbers.
 *
 * Syntax, one construct per line:
 *   [section]        the whole bracket content, trimmed, is the section ("[service web]" gives
 *                    "service web"); keys before any header get section ""
 *   key = value      key and value trimmed; the value may be empty and any length
 *   # ... or ; ...   full-line comment
 *   ... #          inline comment: '#' preceded by a space or tab ends the line (';' does not:
 *                  shell commands in values use it)
 * Text is UTF-8 (outside comments, anything else is a syntax error: values end up in JSON).
 * "\r\n" line ends and a leading UTF-8 BOM are accepted. There is no quoting or escaping, so a
 * value cannot hold " #".
 */
#ifndef US_INI_H
#define US_INI_H

#include <stddef.h>

typedef struct us_errors us_errors; /* lib/errors.h */

/* Called once per section header with key == value == NULL, then once per key. `line` is 1-based.
 * Return 0 to go on, anything else to stop parsing. */
typedef int (*us_ini_cb)(void *user, const char *section, const char *key, const char *value,
                         int line);

/* Parse `len` bytes of `text` (need not be NUL-terminated). Each syntax error is appended to `err`
 * as "FILENAME:LINE: ..." and parsing goes on with the next line; keys under a malformed section
 * header are skipped so that one typo does not cascade. Returns 0 when there was no syntax error
 * and no callback stopped the parse, -1 otherwise. */
int us_ini_parse(const char *text, size_t len, us_ini_cb cb, void *user, us_errors *err,
                 const char *filename);

/* A printable excerpt of `s` for error messages: cut to fit `size` with "..." appended. */
const char *us_ini_excerpt(const char *s, char *buf, size_t size);

#endif
