/* ini.c — see ini.h. */
#include "config/ini.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/errors.h"

#define EXCERPT 80

static char *ltrim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

const char *us_ini_excerpt(const char *s, char *buf, size_t size)
{
    if (size < 4) {
        if (size > 0)
            buf[0] = '\0';
        return buf;
    }
    size_t n = strlen(s);
    if (n < size) {
        memcpy(buf, s, n + 1);
    } else {
        /* Cut on a character boundary: messages end up in JSON, which must be UTF-8. */
        size_t cut = size - 4;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
        memcpy(buf, s, cut);
        memcpy(buf + cut, "...", 4);
    }
    /* Control characters would garble a one-line message. */
    for (char *p = buf; *p; p++)
        if (iscntrl((unsigned char)*p))
            *p = '?';
    return buf;
}

/* Is s[0..n) valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF, like
 * jansson, which refuses to encode anything else)? */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Cut the line at the first '#' that follows a space or tab (not ';': shell commands use it). */
static void strip_inline_comment(char *s)
{
    for (char *q = s + 1; *q; q++) {
        if (*q == '#' && (q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            return;
        }
    }
}

int us_ini_parse(const char *text, size_t len, us_ini_cb cb, void *user, us_errors *err,
                 const char *filename)
{
    /* One private copy, cut into NUL-terminated pieces in place; section names point into it. */
    char *buf = malloc(len + 1);
    if (!buf) {
        us_errors_add(err, "%s: out of memory reading %zu bytes", filename, len);
        return -1;
    }
    if (len)
        memcpy(buf, text, len);
    buf[len] = '\0';

    char ex[EXCERPT];
    const char *section = "";
    bool skip = false; /* under a malformed header */
    int errors = 0;
    bool stopped = false;
    char *p = buf, *end = buf + len;
    for (int line = 1; p < end && !stopped; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        *eol = '\0';
        char *next = nl ? nl + 1 : end;
        if (strlen(p) != (size_t)(eol - p)) {
            us_errors_add(err, "%s:%d: expected text, got a NUL byte", filename, line);
            errors++;
            p = next;
            continue;
        }
        if (line == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
            (unsigned char)p[2] == 0xBF)
            p += 3;
        char *s = ltrim(p);
        p = next;
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        strip_inline_comment(s);
        rtrim(s);
        if (!utf8_valid((const unsigned char *)s, strlen(s))) {
            us_errors_add(err, "%s:%d: expected UTF-8 text, got an invalid byte sequence", filename,
                          line);
            errors++;
            continue;
        }

        if (*s == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']') {
                us_errors_add(err, "%s:%d: expected '[section]', got '%s'", filename, line,
                              us_ini_excerpt(s, ex, sizeof ex));
                errors++;
                skip = true;
                continue;
            }
            s[n - 1] = '\0';
            char *name = ltrim(s + 1);
            rtrim(name);
            if (*name == '\0') {
                us_errors_add(err, "%s:%d: expected a section name between '[' and ']', got '[]'",
                              filename, line);
                errors++;
                skip = true;
                continue;
            }
            section = name;
            skip = false;
            if (cb(user, section, NULL, NULL, line) != 0)
                stopped = true;
            continue;
        }

        char *eq = strchr(s, '=');
        if (!eq) {
            us_errors_add(err, "%s:%d: expected 'key = value', '[section]' or a comment, got '%s'",
                          filename, line, us_ini_excerpt(s, ex, sizeof ex));
            errors++;
            continue;
        }
        *eq = '\0';
        char *key = s;
        rtrim(key);
        char *value = ltrim(eq + 1);
        if (*key == '\0') {
            us_errors_add(err, "%s:%d: expected a key before '=', got '= %s'", filename, line,
                          us_ini_excerpt(value, ex, sizeof ex));
            errors++;
            continue;
        }
        if (skip)
            continue;
        if (cb(user, section, key, value, line) != 0)
            stopped = true;
    }
    free(buf);
    return errors || stopped ? -1 : 0;
}
