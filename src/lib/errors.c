/* errors.c — see errors.h. */
#include "lib/errors.h"

#include <stdarg.h>
#include <stdio.h>

void us_errors_add(us_errors *e, const char *fmt, ...)
{
    if (e->n >= US_ERRORS_MAX) {
        e->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(e->msg[e->n], US_ERROR_LEN, fmt, ap);
    va_end(ap);
    if (w >= US_ERROR_LEN) { /* cut short: drop a last character cut in two (JSON needs UTF-8) */
        char *m = e->msg[e->n];
        size_t n = US_ERROR_LEN - 1;
        while (n > 0 && ((unsigned char)m[n - 1] & 0xC0) == 0x80)
            n--;
        if (n > 0 && (unsigned char)m[n - 1] >= 0xC0)
            n--;
        m[n] = '\0';
    }
    e->n++;
}

void us_errors_join(const us_errors *e, char *buf, size_t size)
{
    if (size == 0)
        return;
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < e->n && used + 1 < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? "\n" : "", e->msg[i]);
        if (w < 0)
            break;
        used += (size_t)w < size - used ? (size_t)w : size - used - 1;
    }
    if (e->dropped && used + 1 < size)
        snprintf(buf + used, size - used, "%s(and %d more problems)", used ? "\n" : "", e->dropped);
}
