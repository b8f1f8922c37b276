/* jscan.h — a strict JSON scanner that allocates nothing: the text is checked against RFC 8259
 * and cut into tokens, in document order, in an array the caller provides; values are read from
 * the tokens on demand (strings unescaped into the caller's buffer, integers range-checked).
 *
 * Made for the datagrams every agent decodes many times a heartbeat (msg.h): with jansson each
 * ping became a tree of small allocations, and decoding them was a quarter of an idle agent's
 * time in a cluster of 64. What it accepts is what jansson accepts with JSON_REJECT_DUPLICATES,
 * and one thing less: an object key may not contain a backslash escape (every key of the
 * messages is a plain name), so that two keys are the same exactly when their bytes are, and a
 * duplicate is found without decoding any. Also refused: invalid UTF-8 (overlong forms, encoded
 * surrogates, past U+10FFFF), lone or misordered \u surrogates, control characters in strings,
 * integers outside int64, reals past a double's range (as jansson) or longer than 511 characters,
 * nesting deeper than US_JS_DEPTH_MAX, objects of more than 512 members, anything after the top
 * value, and more tokens than the caller gave room for.
 *
 *     us_jtok tok[256];
 *     us_js js;
 *     if (us_js_parse(&js, text, len, tok, 256) != 0 || tok[0].type != US_JS_OBJECT) ...
 *     int seq = us_js_get(&js, 0, "seq");   // index of the value, -1 if absent
 *     for (int k = us_js_first(&js, obj); k >= 0; k = us_js_next(&js, obj, k))
 *         ... key token k, value token k + 1 ...
 */
#ifndef US_JSCAN_H
#define US_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define US_JS_DEPTH_MAX 32

typedef enum {
    US_JS_OBJECT = 1,
    US_JS_ARRAY,
    US_JS_STRING,
    US_JS_INT,  /* a number without fraction or exponent, within int64 */
    US_JS_REAL, /* any other number */
    US_JS_TRUE,
    US_JS_FALSE,
    US_JS_NULL,
} us_js_type;

typedef struct us_jtok {
    uint8_t type;   /* us_js_type */
    bool escaped;   /* a string with backslash escapes */
    uint32_t start; /* offset of the text: a string's first byte after the quote */
    uint32_t len;   /* its length: a string's raw bytes between the quotes */
    uint32_t end;   /* the index of the first token after this value and all it contains */
    uint32_t n;     /* an object's members or an array's elements */
    int64_t i;      /* US_JS_INT: the value */
} us_jtok;

typedef struct us_js {
    const char *text;
    const us_jtok *tok;
    int n; /* tokens used */
} us_js;

/* Scan text[0..len) into tok[0..max): 0, or -1 if it is not one valid JSON value (or needs more
 * than max tokens). tok[0] is the top value. */
int us_js_parse(us_js *js, const char *text, size_t len, us_jtok *tok, int max);

/* The value of member `key` of the object at token `obj`: its token index, or -1 (absent, or
 * obj is not an object). */
int us_js_get(const us_js *js, int obj, const char *key);

/* Members of the object at `obj`: the first key's token index (-1 if none), and the key after
 * key `k` (-1 after the last). A member's value is the token after its key. Array elements:
 * us_js_elem_first / us_js_elem_next in the same way, over the elements themselves. */
int us_js_first(const us_js *js, int obj);
int us_js_next(const us_js *js, int obj, int k);
int us_js_elem_first(const us_js *js, int arr);
int us_js_elem_next(const us_js *js, int arr, int e);

/* Whether the token at i (may be -1: false) is of this type. */
bool us_js_is(const us_js *js, int i, us_js_type type);
bool us_js_is_bool(const us_js *js, int i);

/* A string's value into dst (NUL-terminated): false if i is not a string, holds a NUL
 * character, or does not fit in size bytes with its terminator (dst is then "" ). */
bool us_js_str(const us_js *js, int i, char *dst, size_t size);

/* Whether the string at i equals s (false if i is not a string). */
bool us_js_str_eq(const us_js *js, int i, const char *s);

/* An integer within [lo, hi]: false if i is not an integer or out of range. */
bool us_js_int(const us_js *js, int i, int64_t lo, int64_t hi, int64_t *out);

/* ---- writing ----
 * Text appended to the caller's buffer; once something does not fit, the writer is `over` and
 * writes nothing more (the caller checks once at the end). Strings are escaped (quote, backslash,
 * control characters) and kept valid UTF-8: a byte that does not start a valid sequence is
 * written as U+FFFD. The caller places the commas: us_jw_key writes one before every key but the
 * first of an object it opened with us_jw_open. */
typedef struct us_jw {
    char *buf;
    size_t cap, len;
    bool over;
    bool first; /* the next key is the first of its object */
} us_jw;

void us_jw_init(us_jw *w, char *buf, size_t cap);
void us_jw_raw(us_jw *w, const char *text, size_t n);
void us_jw_open(us_jw *w);                 /* "{" */
void us_jw_close(us_jw *w);                /* "}" */
void us_jw_key(us_jw *w, const char *key); /* [","] "key": */
void us_jw_str(us_jw *w, const char *s);
void us_jw_int(us_jw *w, int64_t v);
void us_jw_u64str(us_jw *w, uint64_t v); /* as a decimal string: "123" */
void us_jw_bool(us_jw *w, bool v);

#endif
