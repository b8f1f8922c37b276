/* test_prom.c — the Prometheus exposition helpers of lib/prom.h: label and HELP escaping,
 * sample values, histogram buckets, and a whole family as text. (The agent's metrics themselves
 * are checked end to end, with promtool, by tests/integration/test_metrics.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/prom.h"

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(us_prom_escape(out, sizeof out, "web-1"), 5);
    assert_string_equal(out, "web-1");
    size_t n = us_prom_escape(out, sizeof out, "a\\b\"c\nd");
    assert_string_equal(out, "a\\\\b\\\"c\\nd");
    assert_int_equal(n, strlen("a\\\\b\\\"c\\nd"));
    assert_int_equal(us_prom_escape(out, sizeof out, ""), 0);
    assert_string_equal(out, "");
    /* Too small: cut before an escape, never in its middle; the needed length is returned. */
    char small[4];
    assert_int_equal(us_prom_escape(small, sizeof small, "ab\"c"), 5);
    assert_string_equal(small, "ab");
    assert_int_equal(us_prom_escape(NULL, 0, "\n\n"), 4);
    /* UTF-8 passes through. */
    us_prom_escape(out, sizeof out, "caf\xc3\xa9");
    assert_string_equal(out, "caf\xc3\xa9");
}

static void test_values(void **state)
{
    (void)state;
    char v[40];
    us_prom_value(v, sizeof v, 0);
    assert_string_equal(v, "0");
    us_prom_value(v, sizeof v, 42);
    assert_string_equal(v, "42");
    us_prom_value(v, sizeof v, 18446744073709551615.0); /* beyond 2^53: exponent form */
    assert_true(strtod(v, NULL) == 18446744073709551615.0);
    us_prom_value(v, sizeof v, 0.1);
    assert_string_equal(v, "0.1");
    us_prom_value(v, sizeof v, 1732615200.123);
    assert_string_equal(v, "1732615200.123");
    us_prom_value(v, sizeof v, -2.5);
    assert_string_equal(v, "-2.5");
    us_prom_value(v, sizeof v, NAN);
    assert_string_equal(v, "NaN");
    us_prom_value(v, sizeof v, INFINITY);
    assert_string_equal(v, "+Inf");
    us_prom_value(v, sizeof v, -INFINITY);
    assert_string_equal(v, "-Inf");
    double third = 1.0 / 3.0;
    us_prom_value(v, sizeof v, third);
    assert_true(strtod(v, NULL) == third);
}

static void test_family_and_samples(void **state)
{
    (void)state;
    us_mtext t = {0};
    us_mtext_family(&t, "understudy_x", "gauge", "Help with \\ and\nnewline; \"quotes\" stay.");
    us_mtext_sample(&t, "understudy_x", NULL, 1);
    us_mtext_sample(&t, "understudy_x", (const char *const[]){"service", "we\"b", NULL}, 0.5);
    us_mtext_sample(&t, "understudy_x",
                    (const char *const[]){"service", "web", "node", "n\\1\n", NULL}, 3);
    assert_false(t.oom);
    assert_string_equal(t.buf,
                        "# HELP understudy_x Help with \\\\ and\\nnewline; \"quotes\" stay.\n"
                        "# TYPE understudy_x gauge\n"
                        "understudy_x 1\n"
                        "understudy_x{service=\"we\\\"b\"} 0.5\n"
                        "understudy_x{service=\"web\",node=\"n\\\\1\\n\"} 3\n");
    us_mtext_free(&t);
    assert_null(t.buf);
}

static void test_histogram(void **state)
{
    (void)state;
    us_histogram h;
    const double le[] = {0.01, 0.1, 1};
    us_histogram_init(&h, le, 3);
    us_histogram_observe(&h, 0.005);
    us_histogram_observe(&h, 0.01); /* on a bound: in that bucket (le = less or equal) */
    us_histogram_observe(&h, 0.5);
    us_histogram_observe(&h, 7);   /* above every bound: only in +Inf */
    us_histogram_observe(&h, NAN); /* ignored */
    assert_int_equal(h.count, 4);
    us_mtext t = {0};
    us_mtext_family(&t, "x_seconds", "histogram", "h");
    us_mtext_histogram(&t, "x_seconds", (const char *const[]){"service", "web", NULL}, &h);
    us_mtext_histogram(&t, "y_seconds", NULL, &h);
    assert_string_equal(t.buf, "# HELP x_seconds h\n"
                               "# TYPE x_seconds histogram\n"
                               "x_seconds_bucket{service=\"web\",le=\"0.01\"} 2\n"
                               "x_seconds_bucket{service=\"web\",le=\"0.1\"} 2\n"
                               "x_seconds_bucket{service=\"web\",le=\"1\"} 3\n"
                               "x_seconds_bucket{service=\"web\",le=\"+Inf\"} 4\n"
                               "x_seconds_sum{service=\"web\"} 7.515\n"
                               "x_seconds_count{service=\"web\"} 4\n"
                               "y_seconds_bucket{le=\"0.01\"} 2\n"
                               "y_seconds_bucket{le=\"0.1\"} 2\n"
                               "y_seconds_bucket{le=\"1\"} 3\n"
                               "y_seconds_bucket{le=\"+Inf\"} 4\n"
                               "y_seconds_sum 7.515\n"
                               "y_seconds_count 4\n");
    us_mtext_free(&t);
}

/* A long document grows the buffer as needed. */
static void test_growth(void **state)
{
    (void)state;
    us_mtext t = {0};
    for (int i = 0; i < 5000; i++)
        us_mtext_printf(&t, "line %d\n", i);
    assert_false(t.oom);
    assert_true(t.len > 16384);
    assert_int_equal(strlen(t.buf), t.len);
    assert_non_null(strstr(t.buf, "line 4999\n"));
    us_mtext_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
