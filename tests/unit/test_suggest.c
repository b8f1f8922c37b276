/* test_suggest.c — lib/suggest.h: the edit distance (swaps count once, far is far) and the
 * choice of a "did you mean" among known words, as the CLI and the services file use them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/suggest.h"

static void test_distance(void **state)
{
    (void)state;
    assert_int_equal(us_edit_distance("status", "status"), 0);
    assert_int_equal(us_edit_distance("", ""), 0);
    assert_int_equal(us_edit_distance("statu", "status"), 1);   /* deletion */
    assert_int_equal(us_edit_distance("statuss", "status"), 1); /* insertion */
    assert_int_equal(us_edit_distance("statis", "status"), 1);  /* replacement */
    assert_int_equal(us_edit_distance("stauts", "status"), 1);  /* a swap is one mistake */
    assert_int_equal(us_edit_distance("evnets", "events"), 1);
    assert_int_equal(us_edit_distance("tsatus", "status"), 1);
    assert_int_equal(us_edit_distance("sttaus", "status"), 1);
    assert_int_equal(us_edit_distance("stuats", "status"), 2); /* a rotation is two */
    assert_int_equal(us_edit_distance("ab", "cd"), 2);
    assert_int_equal(us_edit_distance("a", ""), 1);
    assert_int_equal(us_edit_distance("", "ab"), 2);
    /* Beyond 2: far, whatever the true distance. */
    assert_int_equal(us_edit_distance("xyzzy", "status"), US_SUGGEST_FAR);
    assert_int_equal(us_edit_distance("s", "status"), US_SUGGEST_FAR); /* lengths differ by 5 */
    assert_int_equal(us_edit_distance("abc", "xyz"), US_SUGGEST_FAR);
    /* Bytes as they are: no case folding. */
    assert_int_equal(us_edit_distance("STATUS", "status"), US_SUGGEST_FAR);
    assert_int_equal(us_edit_distance("Status", "status"), 1);
    /* Symmetric. */
    const char *w[] = {"check_interval", "check_intervall", "log_kep",
                       "log_keep",       "drian",           "drain"};
    for (size_t i = 0; i < 6; i++)
        for (size_t j = 0; j < 6; j++)
            assert_int_equal(us_edit_distance(w[i], w[j]), us_edit_distance(w[j], w[i]));
    /* 32 bytes or more: too long to be a typo of a short word. */
    char longw[40];
    memset(longw, 'a', 32);
    longw[32] = '\0';
    assert_int_equal(us_edit_distance(longw, longw), US_SUGGEST_FAR);
    longw[31] = '\0';
    assert_int_equal(us_edit_distance(longw, longw), 0);
}

static void test_suggest(void **state)
{
    (void)state;
    static const char *const commands[] = {"status",     "events",  "apply",  "check-config",
                                           "switchover", "service", "reset",  "node",
                                           "version",    "agent",   "keygen", "help"};
    const size_t n = sizeof commands / sizeof commands[0];
    assert_string_equal(us_suggest("stauts", commands, n), "status");
    assert_string_equal(us_suggest("swichover", commands, n), "switchover");
    assert_string_equal(us_suggest("nodes", commands, n), "node");
    assert_string_equal(us_suggest("verison", commands, n), "version");
    /* A start of 3 bytes or more, when nothing is near. */
    assert_string_equal(us_suggest("check", commands, n), "check-config");
    assert_string_equal(us_suggest("stat", commands, n), "status");
    assert_null(us_suggest("st", commands, n));
    /* Nothing near. */
    assert_null(us_suggest("xyzzy", commands, n));
    assert_null(us_suggest("", commands, n));
    /* The distance must be less than both lengths: "ab" is no typo of "cd", nor "x" of "no". */
    static const char *const two[] = {"cd", "no"};
    assert_null(us_suggest("ab", two, 2));
    assert_null(us_suggest("x", two, 2));
    assert_string_equal(us_suggest("nx", two, 2), "no");
    /* The nearest wins, the first of equals. */
    static const char *const opts[] = {"--api", "--json", "--follow", "--help", "--to", "--node"};
    assert_string_equal(us_suggest("--jsn", opts, 6), "--json");
    assert_string_equal(us_suggest("--nod", opts, 6), "--node");
    static const char *const eq[] = {"drain", "train", "drawn"};
    assert_string_equal(us_suggest("brain", eq, 3), "drain");
    assert_string_equal(us_suggest("drian", eq, 3), "drain");
    /* A nearer candidate later in the list beats an earlier one. */
    static const char *const later[] = {"resume", "reset"};
    assert_string_equal(us_suggest("reste", later, 2), "reset");
    /* NULL entries are skipped; no candidates, no suggestion. */
    static const char *const holes[] = {NULL, "pause", NULL};
    assert_string_equal(us_suggest("pasue", holes, 3), "pause");
    assert_null(us_suggest("pause", NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_suggest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
