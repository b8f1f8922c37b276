/* test_index.c — the index of positions (lib/index.h): every key added is found at its position
 * and a key never added is not, through growth, colliding hashes, clears and reuse; the hash of
 * two strings tells ("ab", "c") from ("a", "bc"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/index.h"

#define N 3000

static char g_keys[N][16];

/* The position of key in g_keys[0..n) through the index, -1 when it is not there. */
static int find(const us_index *x, uint32_t h, const char *key, int n)
{
    uint32_t pos = US_INDEX_START;
    for (int i; (i = us_index_next(x, h, &pos)) >= 0;)
        if (i < n && strcmp(g_keys[i], key) == 0)
            return i;
    return -1;
}

static void test_empty_finds_nothing(void **state)
{
    (void)state;
    us_index x = {0};
    uint32_t pos = US_INDEX_START;
    assert_int_equal(us_index_next(&x, us_index_hash("web", NULL), &pos), -1);
    us_index_clear(&x); /* no memory yet: nothing to do */
    us_index_free(&x);
}

static void test_finds_every_key_through_growth(void **state)
{
    (void)state;
    us_index x = {0};
    for (int i = 0; i < N; i++) {
        snprintf(g_keys[i], sizeof g_keys[i], "svc-%d", i);
        assert_true(us_index_add(&x, us_index_hash(g_keys[i], NULL), i));
        /* at most half the slots used */
        assert_true((uint64_t)x.n * 2 <= x.cap);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(find(&x, us_index_hash(g_keys[i], NULL), g_keys[i], N), i);
    assert_int_equal(find(&x, us_index_hash("svc-3000", NULL), "svc-3000", N), -1);
    assert_int_equal(find(&x, us_index_hash("", NULL), "", N), -1);
    us_index_free(&x);
    assert_null(x.pos);
    assert_int_equal(x.cap, 0);
}

static void test_colliding_hashes_are_all_candidates(void **state)
{
    (void)state;
    us_index x = {0};
    /* Every key under one hash: the caller's comparison tells them apart. */
    for (int i = 0; i < 100; i++) {
        snprintf(g_keys[i], sizeof g_keys[i], "k%d", i);
        assert_true(us_index_add(&x, 42u, i));
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(find(&x, 42u, g_keys[i], 100), i);
    assert_int_equal(find(&x, 42u, "k100", 100), -1);
    int seen = 0;
    uint32_t pos = US_INDEX_START;
    while (us_index_next(&x, 42u, &pos) >= 0)
        seen++;
    assert_int_equal(seen, 100);
    us_index_free(&x);
}

static void test_clear_forgets_and_keeps_memory(void **state)
{
    (void)state;
    us_index x = {0};
    for (int i = 0; i < 200; i++) {
        snprintf(g_keys[i], sizeof g_keys[i], "a%d", i);
        assert_true(us_index_add(&x, us_index_hash(g_keys[i], NULL), i));
    }
    uint32_t cap = x.cap;
    us_index_clear(&x);
    assert_int_equal(x.n, 0);
    assert_int_equal(x.cap, cap);
    for (int i = 0; i < 200; i++)
        assert_int_equal(find(&x, us_index_hash(g_keys[i], NULL), g_keys[i], 200), -1);
    /* Positions reused for other keys after the clear. */
    for (int i = 0; i < 200; i++) {
        snprintf(g_keys[i], sizeof g_keys[i], "b%d", i);
        assert_true(us_index_add(&x, us_index_hash(g_keys[i], NULL), i));
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(find(&x, us_index_hash(g_keys[i], NULL), g_keys[i], 200), i);
    assert_false(us_index_add(&x, 1u, -1)); /* a negative position is refused */
    us_index_free(&x);
}

static void test_hash_of_two_strings(void **state)
{
    (void)state;
    assert_int_not_equal(us_index_hash("ab", "c"), us_index_hash("a", "bc"));
    assert_int_not_equal(us_index_hash("web", "n1"), us_index_hash("web", "n2"));
    assert_int_equal(us_index_hash("web", "n1"), us_index_hash("web", "n1"));
    assert_int_not_equal(us_index_hash("web", ""), us_index_hash("web", NULL));
}

/* The fingerprint of strings: the same strings in the same order give the same one; another split,
 * order or string another. */
static void test_fingerprint_of_strings(void **state)
{
    (void)state;
    uint64_t ab_c = us_fp_add(us_fp_add(US_FP_START, "ab"), "c");
    assert_true(ab_c == us_fp_add(us_fp_add(US_FP_START, "ab"), "c"));
    assert_true(ab_c != us_fp_add(us_fp_add(US_FP_START, "a"), "bc"));
    assert_true(ab_c != us_fp_add(us_fp_add(US_FP_START, "c"), "ab"));
    assert_true(ab_c != us_fp_add(us_fp_add(US_FP_START, "ab"), "d"));
    assert_true(us_fp_add(US_FP_START, "") != US_FP_START);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_finds_nothing),
        cmocka_unit_test(test_finds_every_key_through_growth),
        cmocka_unit_test(test_colliding_hashes_are_all_candidates),
        cmocka_unit_test(test_clear_forgets_and_keeps_memory),
        cmocka_unit_test(test_hash_of_two_strings),
        cmocka_unit_test(test_fingerprint_of_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
