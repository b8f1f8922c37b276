/* prom.c — see prom.h. */
#include "lib/prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- exposition text ---- */

void us_mtext_free(us_mtext *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static bool reserve(us_mtext *t, size_t more)
{
    if (t->oom)
        return false;
    if (t->len + more + 1 <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 16384;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) {
        t->oom = true;
        return false;
    }
    t->buf = b;
    t->cap = cap;
    return true;
}

void us_mtext_printf(us_mtext *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(t, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void put(us_mtext *t, const char *s, size_t n)
{
    if (!reserve(t, n))
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* Escape for a label value (quote too) or HELP text (no quote). Writes what fits, never half
 * an escape; returns the length of the whole escaped text. */
static size_t escape(char *out, size_t size, const char *v, bool quote)
{
    size_t need = 0, wrote = 0;
    bool full = false;
    for (const char *p = v; *p; p++) {
        char one[2] = {*p, '\0'};
        const char *rep = *p == '\\'           ? "\\\\"
                          : *p == '\n'         ? "\\n"
                          : *p == '"' && quote ? "\\\""
                                               : one;
        size_t rl = strlen(rep);
        if (out && !full && wrote + rl < size) {
            memcpy(out + wrote, rep, rl);
            wrote += rl;
        } else {
            full = true;
        }
        need += rl;
    }
    if (out && size > 0)
        out[wrote] = '\0';
    return need;
}

size_t us_prom_escape(char *out, size_t size, const char *value)
{
    return escape(out, size, value, true);
}

void us_prom_value(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
    } else if (isinf(v)) {
        snprintf(out, size, "%sInf", v > 0 ? "+" : "-");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, size, "%.0f", v);
    } else {
        /* Shortest of %.15g..%.17g that reads back as the same double. */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, size, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

void us_mtext_family(us_mtext *t, const char *name, const char *type, const char *help)
{
    size_t n = escape(NULL, 0, help, false);
    char *h = malloc(n + 1);
    if (!h) {
        t->oom = true;
        return;
    }
    escape(h, n + 1, help, false);
    us_mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, h, name, type);
    free(h);
}

static void put_labels(us_mtext *t, const char *const *labels, const char *extra_key,
                       const char *extra_value)
{
    bool any = false;
    for (int i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        put(t, any ? "," : "{", 1);
        any = true;
        us_mtext_printf(t, "%s=\"", labels[i]);
        size_t n = escape(NULL, 0, labels[i + 1], true);
        if (reserve(t, n)) {
            escape(t->buf + t->len, n + 1, labels[i + 1], true);
            t->len += n;
        }
        put(t, "\"", 1);
    }
    if (extra_key) {
        us_mtext_printf(t, "%s%s=\"%s\"", any ? "," : "{", extra_key, extra_value);
        any = true;
    }
    if (any)
        put(t, "}", 1);
}

void us_mtext_sample(us_mtext *t, const char *name, const char *const *labels, double value)
{
    char v[40];
    us_prom_value(v, sizeof v, value);
    us_mtext_printf(t, "%s", name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %s\n", v);
}

/* ---- histograms ---- */

void us_histogram_init(us_histogram *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n < US_HIST_MAX ? n : US_HIST_MAX;
    memcpy(h->le, le, sizeof le[0] * (size_t)h->n);
}

void us_histogram_observe(us_histogram *h, double v)
{
    if (isnan(v))
        return;
    int i = 0;
    while (i < h->n && v > h->le[i])
        i++;
    if (i < h->n)
        h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void us_mtext_histogram(us_mtext *t, const char *name, const char *const *labels,
                        const us_histogram *h)
{
    char bucket[128], le[40];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        if (i < h->n) {
            cum += h->bucket[i];
            us_prom_value(le, sizeof le, h->le[i]);
        } else {
            cum = h->count;
            strcpy(le, "+Inf");
        }
        us_mtext_printf(t, "%s", bucket);
        put_labels(t, labels, "le", le);
        us_mtext_printf(t, " %llu\n", (unsigned long long)cum);
    }
    char v[40];
    us_prom_value(v, sizeof v, h->sum);
    us_mtext_printf(t, "%s_sum", name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %s\n%s_count", v, name);
    put_labels(t, labels, NULL, NULL);
    us_mtext_printf(t, " %llu\n", (unsigned long long)h->count);
}
