/* index.c — see index.h. */
#include "lib/index.h"

#include <stdlib.h>
#include <string.h>

uint32_t us_index_hash(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)a; *p; p++)
        h = (h ^ *p) * 16777619u;
    if (b) {
        h = (h ^ 0xffu) * 16777619u; /* ("ab", "c") and ("a", "bc") differ */
        for (const unsigned char *p = (const unsigned char *)b; *p; p++)
            h = (h ^ *p) * 16777619u;
    }
    return h;
}

uint64_t us_fp_add(uint64_t h, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s;; c++) {
        h = (h ^ *c) * 0x100000001b3ULL;
        if (!*c)
            return h;
    }
}

void us_index_clear(us_index *x)
{
    for (uint32_t i = 0; i < x->cap; i++)
        x->pos[i] = -1;
    x->n = 0;
}

static void put(us_index *x, uint32_t h, int i)
{
    uint32_t mask = x->cap - 1;
    uint32_t s = h & mask;
    while (x->pos[s] >= 0)
        s = (s + 1) & mask;
    x->pos[s] = i;
    x->hash[s] = h;
}

static bool grow(us_index *x)
{
    uint32_t cap = x->cap ? 2 * x->cap : 64;
    int32_t *pos = malloc((size_t)cap * sizeof *pos);
    uint32_t *hash = malloc((size_t)cap * sizeof *hash);
    if (!pos || !hash || cap < x->cap) {
        free(pos);
        free(hash);
        return false;
    }
    for (uint32_t i = 0; i < cap; i++)
        pos[i] = -1;
    us_index old = *x;
    x->pos = pos;
    x->hash = hash;
    x->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.pos[i] >= 0)
            put(x, old.hash[i], old.pos[i]);
    free(old.pos);
    free(old.hash);
    return true;
}

bool us_index_add(us_index *x, uint32_t h, int i)
{
    if (i < 0)
        return false;
    if ((uint64_t)(x->n + 1) * 2 > x->cap && !grow(x))
        return false;
    put(x, h, i);
    x->n++;
    return true;
}

int us_index_next(const us_index *x, uint32_t h, uint32_t *pos)
{
    if (x->cap == 0)
        return -1;
    uint32_t mask = x->cap - 1;
    uint32_t s = *pos == US_INDEX_START ? h & mask : (*pos + 1) & mask;
    for (; x->pos[s] >= 0; s = (s + 1) & mask) {
        if (x->hash[s] == h) {
            *pos = s;
            return x->pos[s];
        }
    }
    *pos = s;
    return -1;
}

void us_index_free(us_index *x)
{
    free(x->pos);
    free(x->hash);
    memset(x, 0, sizeof *x);
}
