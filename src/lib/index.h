/* index.h — find an element of the caller's array by a string key in constant time.
 *
 * An open-addressing table of positions into an array the caller owns; the caller hashes its key
 * (us_index_hash: one or two strings) and compares candidates itself, so the table holds no keys
 * and never goes stale on a realloc of the array (positions stay). It grows itself to keep at
 * most half its slots used. Made for the walks over services x nodes that run every heartbeat:
 * with 1,000 services on 25 nodes a linear lookup per pair cost seconds of one tick (a leader
 * that stalls that long loses its leadership).
 *
 *     uint32_t h = us_index_hash(service, node), pos = US_INDEX_START;
 *     for (int i; (i = us_index_next(&x, h, &pos)) >= 0;)
 *         if (strcmp(arr[i].service, service) == 0 && strcmp(arr[i].node, node) == 0)
 *             return &arr[i];
 *     ... append arr[n] and us_index_add(&x, h, n) ...
 */
#ifndef US_INDEX_H
#define US_INDEX_H

#include <stdbool.h>
#include <stdint.h>

#define US_INDEX_START UINT32_MAX

typedef struct us_index {
    int32_t *pos;   /* position in the caller's array, -1 = empty slot */
    uint32_t *hash; /* its key's hash */
    uint32_t cap;   /* slots: 0 or a power of two */
    int n;          /* positions added since the last clear */
} us_index;

/* FNV-1a over a and, when b is not NULL, a separator and b. */
uint32_t us_index_hash(const char *a, const char *b);

/* A 64-bit fingerprint of strings (FNV-1a, each string with its NUL, so ("ab", "c") and ("a",
 * "bc") differ): start from US_FP_START and add them in order. Not a secret. */
#define US_FP_START 0xcbf29ce484222325ULL
uint64_t us_fp_add(uint64_t h, const char *s);

/* Forget every position (keeps the memory). */
void us_index_clear(us_index *x);

/* Add position i (>= 0) under hash h. false (and nothing changed) when out of memory. */
bool us_index_add(us_index *x, uint32_t h, int i);

/* The next candidate position under hash h, starting with *pos = US_INDEX_START; -1 when there
 * are no more (the key is not there). */
int us_index_next(const us_index *x, uint32_t h, uint32_t *pos);

void us_index_free(us_index *x);

#endif
