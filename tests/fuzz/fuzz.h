/* fuzz.h — shared by the libFuzzer harnesses (tests/fuzz/README.md). */
#ifndef US_FUZZ_H
#define US_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* libFuzzer's entry points (it has no header for them). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the harness checks failed: abort, so that libFuzzer records the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reading structured values off the front of the input. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint64_t fuzz_u64(fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fuzz_u8(in);
    return v;
}

/* Up to `max` bytes (fewer if the input runs out). */
static inline const uint8_t *fuzz_bytes(fuzz_in *in, size_t max, size_t *got)
{
    *got = max < in->n ? max : in->n;
    const uint8_t *p = in->p;
    in->p += *got;
    in->n -= *got;
    return p;
}

/* The input in a buffer of exactly `size` bytes, for parsers given (text, len): a read past the
 * end is caught by ASan (libFuzzer's own buffer is exact-size too, but const). */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    return s;
}

/* The input as a malloc'ed NUL-terminated string, for code that is given C strings. */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Is this C string valid UTF-8 (what jansson accepts: the API and --json put it into JSON)? */
#define FUZZ_UTF8(str)                                                                             \
    do {                                                                                           \
        json_t *fuzz_js_ = json_string(str);                                                       \
        FUZZ_CHECK(fuzz_js_ != NULL && "not UTF-8");                                               \
        json_decref(fuzz_js_);                                                                     \
    } while (0)

/* Silence a noisy stretch (stderr is a variable in glibc; libFuzzer and the sanitizers keep
 * their own handle on fd 2, so their reports still show). */
static inline FILE *fuzz_devnull(void)
{
    static FILE *f;
    if (!f)
        f = fopen("/dev/null", "w");
    return f;
}

#endif
