/* prom.h — the Prometheus text exposition format 0.0.4, as text: families, samples, histograms.
 *
 * No I/O and no knowledge of what is measured: agent/metrics.c writes the agent's view with it.
 * Every family has HELP and TYPE lines; label values are escaped (\\, \", \n); values are written
 * the way Prometheus reads them (NaN, +Inf, -Inf, the shortest text that reads back the same).
 */
#ifndef US_PROM_H
#define US_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- exposition text ---- */

/* A growing text buffer; after an allocation failure `oom` is set and further output dropped. */
typedef struct us_mtext {
    char *buf;
    size_t len, cap;
    bool oom;
} us_mtext;

void us_mtext_free(us_mtext *t);
void us_mtext_printf(us_mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "# HELP name help" (help escaped: \\ and \n) and "# TYPE name type". */
void us_mtext_family(us_mtext *t, const char *name, const char *type, const char *help);
/* "name{k1="v1",k2="v2"} value". `labels`: alternating keys and values, NULL-terminated (NULL
 * itself = no labels). Values are escaped; NaN and infinities are written as Prometheus does. */
void us_mtext_sample(us_mtext *t, const char *name, const char *const *labels, double value);

/* Write `value` escaped for a label value into out (always terminated, cut if too small).
 * Returns the length the escaped text needs (like snprintf). */
size_t us_prom_escape(char *out, size_t size, const char *value);
/* A sample value as Prometheus reads it: shortest text that reads back as the same double. */
void us_prom_value(char *out, size_t size, double v);

/* ---- histograms ---- */

#define US_HIST_MAX 16 /* upper bounds per histogram, +Inf not counted */

typedef struct us_histogram {
    int n;
    double le[US_HIST_MAX];       /* upper bounds, increasing */
    uint64_t bucket[US_HIST_MAX]; /* observations <= le[i] and > le[i-1] (not cumulative) */
    uint64_t count;
    double sum;
} us_histogram;

void us_histogram_init(us_histogram *h, const double *le, int n);
void us_histogram_observe(us_histogram *h, double v);
/* NAME_bucket{labels..., le} (cumulative, "+Inf" last), NAME_sum, NAME_count. */
void us_mtext_histogram(us_mtext *t, const char *name, const char *const *labels,
                        const us_histogram *h);

#endif
