/* test_jscan.c — the strict JSON scanner (lib/jscan.h): what RFC 8259 allows is read back exactly
 * (structure, keys in order, unescaped strings, integers to the int64 limits); each thing it must
 * refuse is refused; values are read with their sizes and ranges checked. tests/fuzz/fuzz_jscan.c
 * compares it with jansson on arbitrary bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jscan.h"

#define TOKS 2048
static us_jtok g_tok[TOKS];

static int parse(us_js *js, const char *text)
{
    return us_js_parse(js, text, strlen(text), g_tok, TOKS);
}

static void test_reads_structure_in_order(void **state)
{
    (void)state;
    us_js js;
    const char *text = " {\"t\":\"ping\", \"n\":[1,-2,3.5e3,true,false,null],\"o\":{\"a\":{}},"
                       "\"e\":[] ,\"last\":\"x\"}\n";
    assert_int_equal(parse(&js, text), 0);
    assert_true(us_js_is(&js, 0, US_JS_OBJECT));
    assert_int_equal(js.tok[0].n, 5);
    assert_int_equal(js.tok[0].end, js.n);
    /* keys come in document order, each followed by its value */
    const char *keys[] = {"t", "n", "o", "e", "last"};
    int i = 0;
    char buf[16];
    for (int k = us_js_first(&js, 0); k >= 0; k = us_js_next(&js, 0, k), i++) {
        assert_true(us_js_str(&js, k, buf, sizeof buf));
        assert_string_equal(buf, keys[i]);
        assert_int_equal(us_js_get(&js, 0, keys[i]), k + 1);
    }
    assert_int_equal(i, 5);
    assert_true(us_js_str_eq(&js, us_js_get(&js, 0, "t"), "ping"));
    int n = us_js_get(&js, 0, "n");
    assert_int_equal(js.tok[n].n, 6);
    const us_js_type types[] = {US_JS_INT,  US_JS_INT,   US_JS_REAL,
                                US_JS_TRUE, US_JS_FALSE, US_JS_NULL};
    i = 0;
    for (int e = us_js_elem_first(&js, n); e >= 0; e = us_js_elem_next(&js, n, e))
        assert_true(us_js_is(&js, e, types[i++]));
    assert_int_equal(i, 6);
    int64_t v;
    assert_true(us_js_int(&js, n + 2, -5, 5, &v));
    assert_int_equal(v, -2);
    assert_false(us_js_int(&js, n + 2, 0, 5, &v));                 /* out of range */
    assert_false(us_js_int(&js, n + 3, INT64_MIN, INT64_MAX, &v)); /* a real */
    assert_true(us_js_is_bool(&js, n + 4) && us_js_is_bool(&js, n + 5));
    assert_false(us_js_is_bool(&js, n + 6));
    int o = us_js_get(&js, 0, "o");
    assert_int_equal(us_js_first(&js, us_js_get(&js, o, "a")), -1); /* empty object */
    assert_int_equal(us_js_elem_first(&js, us_js_get(&js, 0, "e")), -1);
    assert_int_equal(us_js_get(&js, 0, "missing"), -1);
    assert_int_equal(us_js_get(&js, n, "t"), -1); /* not an object */
    assert_int_equal(us_js_get(&js, -1, "t"), -1);
    assert_false(us_js_is(&js, -1, US_JS_OBJECT));
}

static void test_strings_unescape_to_utf8(void **state)
{
    (void)state;
    us_js js;
    assert_int_equal(parse(&js,
                           "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\","
                           "\"caf\xc3\xa9\", \"\"]"),
                     0);
    char buf[64];
    assert_true(us_js_str(&js, 1, buf, sizeof buf));
    assert_string_equal(buf, "a\"b\\c/d\b\f\n\r\t");
    assert_true(us_js_str(&js, 2, buf, sizeof buf));
    assert_string_equal(buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_true(us_js_str_eq(&js, 2, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
    assert_false(us_js_str_eq(&js, 2, "\xc3\xa9\xe2\x82\xac"));
    assert_true(us_js_str(&js, 3, buf, sizeof buf));
    assert_string_equal(buf, "caf\xc3\xa9");
    assert_true(us_js_str(&js, 4, buf, sizeof buf));
    assert_string_equal(buf, "");
    /* exactly its size with the terminator, then one byte short */
    assert_true(us_js_str(&js, 3, buf, 6));
    assert_false(us_js_str(&js, 3, buf, 5));
    assert_string_equal(buf, "");
    assert_false(us_js_str(&js, 0, buf, sizeof buf)); /* an array */
}

static void test_integer_limits(void **state)
{
    (void)state;
    us_js js;
    int64_t v;
    assert_int_equal(parse(&js, "[9223372036854775807,-9223372036854775808,0,-0]"), 0);
    assert_true(us_js_int(&js, 1, INT64_MIN, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    assert_true(us_js_int(&js, 2, INT64_MIN, INT64_MAX, &v));
    assert_true(v == INT64_MIN);
    assert_true(us_js_int(&js, 4, INT64_MIN, INT64_MAX, &v));
    assert_int_equal(v, 0);
    assert_int_equal(parse(&js, "9223372036854775808"), -1);
    assert_int_equal(parse(&js, "-9223372036854775809"), -1);
    assert_int_equal(parse(&js, "99999999999999999999999"), -1);
    assert_int_equal(parse(&js, "1e308"), 0);
    assert_int_equal(parse(&js, "1e400"), -1); /* past a double, as jansson */
}

static void test_refuses_what_it_must(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{a:1}",
        "{\"a\":1 \"b\":2}",
        "01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "-",
        "+1",
        "--1",
        "0x10",
        "[1] 2",
        "truex",
        "tru",
        "nul",
        "True",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\ud800\"",          /* a high surrogate alone */
        "\"\\udc00\"",          /* a low one first */
        "\"\\ud800\\u0041\"",   /* a high one followed by no low one */
        "\"\\u0000\"",          /* NUL (jansson refuses it too) */
        "\"a\x01\"",            /* a control character */
        "\"\xc0\xaf\"",         /* overlong */
        "\"\xe0\x80\xaf\"",     /* overlong */
        "\"\xed\xa0\x80\"",     /* an encoded surrogate */
        "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
        "\"\x80\"",             /* a continuation byte alone */
        "\"\xc3\"",             /* cut short */
        "{\"a\":1,\"a\":2}",    /* a duplicate key */
        "{\"a\\u0062\":1}",     /* an escaped key (jscan.h) */
        "[1]\x01",
    };
    us_js js;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(&js, bad[i]) != -1)
            fail_msg("accepted #%zu: %s", i, bad[i]);
    }
    /* a NUL byte anywhere */
    assert_int_equal(us_js_parse(&js, "[1]\0", 4, g_tok, TOKS), -1);
    assert_int_equal(us_js_parse(&js, "\"a\0b\"", 5, g_tok, TOKS), -1);
}

static void test_bounds(void **state)
{
    (void)state;
    us_js js;
    char deep[2 * US_JS_DEPTH_MAX + 8];
    /* as deep as allowed, then one more */
    for (int d = US_JS_DEPTH_MAX; d <= US_JS_DEPTH_MAX + 1; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        deep[2 * d] = '\0';
        assert_int_equal(parse(&js, deep), d == US_JS_DEPTH_MAX ? 0 : -1);
    }
    /* 512 members, then 513 */
    char *wide = malloc(16 * 600);
    assert_non_null(wide);
    for (int m = 512; m <= 513; m++) {
        size_t w = 0;
        wide[w++] = '{';
        for (int i = 0; i < m; i++)
            w += (size_t)sprintf(wide + w, "%s\"k%d\":%d", i ? "," : "", i, i);
        wide[w++] = '}';
        wide[w] = '\0';
        assert_int_equal(parse(&js, wide), m == 512 ? 0 : -1);
    }
    free(wide);
    /* no room for the tokens: [1,2,3] needs 4 */
    assert_int_equal(us_js_parse(&js, "[1,2,3]", 7, g_tok, 3), -1);
    assert_int_equal(us_js_parse(&js, "[1,2,3]", 7, g_tok, 4), 0);
    /* the length given is the end: bytes after it are not read */
    assert_int_equal(us_js_parse(&js, "[1]garbage", 3, g_tok, TOKS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_structure_in_order),
        cmocka_unit_test(test_strings_unescape_to_utf8),
        cmocka_unit_test(test_integer_limits),
        cmocka_unit_test(test_refuses_what_it_must),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
