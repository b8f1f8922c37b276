/* errors.h — a list of problems found in one input (a config file, a services file, a request),
 * so that a user sees all of them at once, each as "FILE:LINE: key 'K': expected ..., got '...'".
 * Bounded: at most US_ERRORS_MAX messages are kept, the rest are counted. */
#ifndef US_ERRORS_H
#define US_ERRORS_H

#include <stddef.h>

#define US_ERRORS_MAX 32
#define US_ERROR_LEN 1024

typedef struct us_errors {
    int n; /* problems recorded (at most US_ERRORS_MAX kept; `dropped` counts the rest) */
    int dropped;
    char msg[US_ERRORS_MAX][US_ERROR_LEN];
} us_errors;

/* Start from a zeroed us_errors: parsers append to it (so it can collect several files). */
void us_errors_add(us_errors *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Join all messages with '\n' into buf (always terminated). */
void us_errors_join(const us_errors *e, char *buf, size_t size);

#endif
