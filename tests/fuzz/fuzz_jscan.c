/* fuzz_jscan.c — the JSON scanner (lib/jscan.h) against jansson, which the agent used before and
 * still uses elsewhere: whatever the bytes, what the scanner accepts jansson accepts
 * (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES) with the same tree (types, keys, strings, integers),
 * and what jansson accepts the scanner refuses only for the reasons jscan.h names (a key with an
 * escape, nesting past US_JS_DEPTH_MAX, an object past 512 members, a long real, no room for the
 * tokens) and for a NUL byte, which jansson skips and RFC 8259 does not allow. */
#include "fuzz.h"

#include <jansson.h>
#include <stdlib.h>

#include "lib/jscan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

#define TOKS 4096
static us_jtok tok[TOKS];

static void same(const us_js *js, int i, const json_t *j, char *buf, size_t cap)
{
    switch (js->tok[i].type) {
    case US_JS_OBJECT: {
        FUZZ_CHECK(json_is_object(j) && json_object_size(j) == js->tok[i].n);
        for (int k = us_js_first(js, i); k >= 0; k = us_js_next(js, i, k)) {
            FUZZ_CHECK(us_js_str(js, k, buf, cap));
            const json_t *v = json_object_get(j, buf);
            FUZZ_CHECK(v != NULL);
            same(js, k + 1, v, buf, cap);
        }
        return;
    }
    case US_JS_ARRAY: {
        FUZZ_CHECK(json_is_array(j) && json_array_size(j) == js->tok[i].n);
        size_t x = 0;
        for (int e = us_js_elem_first(js, i); e >= 0; e = us_js_elem_next(js, i, e))
            same(js, e, json_array_get(j, x++), buf, cap);
        FUZZ_CHECK(x == json_array_size(j));
        return;
    }
    case US_JS_STRING:
        FUZZ_CHECK(json_is_string(j) && us_js_str(js, i, buf, cap));
        FUZZ_CHECK(strlen(buf) == json_string_length(j) && strcmp(buf, json_string_value(j)) == 0);
        FUZZ_CHECK(us_js_str_eq(js, i, json_string_value(j)));
        return;
    case US_JS_INT: {
        int64_t v;
        FUZZ_CHECK(json_is_integer(j) && us_js_int(js, i, INT64_MIN, INT64_MAX, &v));
        FUZZ_CHECK(v == json_integer_value(j));
        return;
    }
    case US_JS_REAL:
        FUZZ_CHECK(json_is_real(j));
        return;
    case US_JS_TRUE:
        FUZZ_CHECK(json_is_true(j));
        return;
    case US_JS_FALSE:
        FUZZ_CHECK(json_is_false(j));
        return;
    case US_JS_NULL:
        FUZZ_CHECK(json_is_null(j));
        return;
    default:
        FUZZ_CHECK(0);
    }
}

/* Whether jansson's tree is one the scanner may refuse: deeper than it reads, or an object wider.
 */
static bool beyond(const json_t *j, int depth)
{
    if (json_is_object(j) || json_is_array(j)) {
        if (depth >= US_JS_DEPTH_MAX || (json_is_object(j) && json_object_size(j) > 512))
            return true;
    }
    const char *key;
    json_t *v;
    size_t x;
    if (json_is_object(j))
        json_object_foreach((json_t *)j, key, v) if (beyond(v, depth + 1)) return true;
    if (json_is_array(j))
        json_array_foreach(j, x, v) if (beyond(v, depth + 1)) return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    us_js js;
    int r = us_js_parse(&js, (const char *)data, size, tok, TOKS);
    json_error_t err;
    json_t *j =
        json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (r == 0) {
        FUZZ_CHECK(j != NULL);
        FUZZ_CHECK(js.n >= 1 && js.tok[0].end == (uint32_t)js.n);
        char *buf = malloc(size + 1);
        FUZZ_CHECK(buf != NULL);
        same(&js, 0, j, buf, size + 1);
        free(buf);
    } else if (j) {
        /* Refused what jansson took: only for a reason of jscan.h's. */
        FUZZ_CHECK(memchr(data, '\\', size) || memchr(data, 0, size) || beyond(j, 0) ||
                   size / 2 >= TOKS || size > 511);
    }
    json_decref(j);
    return 0;
}
