/* test_logrotate.c — copy + truncate rotation with a writer holding the file open (O_APPEND). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/logrotate.h"
#include "helpers.h"

static char g_dir[64];

/* The text of path (NULL if unreadable), kept until the next call. */
static const char *slurp(const char *path)
{
    static char *last;
    free(last);
    last = ut_read_file(path, NULL);
    return last;
}

static void put(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_rotate_keeps_and_drops(void **state)
{
    (void)state;
    char path[PATH_MAX], p1[PATH_MAX + 8], p2[PATH_MAX + 8], p3[PATH_MAX + 8], err[256];
    snprintf(path, sizeof path, "%s/svc.log", g_dir);
    snprintf(p1, sizeof p1, "%s.1", path);
    snprintf(p2, sizeof p2, "%s.2", path);
    snprintf(p3, sizeof p3, "%s.3", path);
    int w = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644); /* the "child" */
    assert_true(w >= 0);
    put(w, "first\n");
    assert_int_equal(us_log_rotate(path, 2, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(slurp(p1), "first\n");
    assert_string_equal(slurp(path), "");
    put(w, "second\n"); /* continues at the start of the truncated file: no hole */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 7);
    assert_string_equal(slurp(path), "second\n");

    assert_int_equal(us_log_rotate(path, 2, err, sizeof err), 0);
    put(w, "third\n");
    assert_int_equal(us_log_rotate(path, 2, err, sizeof err), 0);
    assert_string_equal(slurp(p1), "third\n");
    assert_string_equal(slurp(p2), "second\n");
    assert_null(slurp(p3)); /* "first" fell off */
    assert_string_equal(slurp(path), "");

    /* keep = 0: truncated only, nothing new kept. */
    put(w, "fourth\n");
    assert_int_equal(us_log_rotate(path, 0, err, sizeof err), 0);
    assert_string_equal(slurp(path), "");
    assert_string_equal(slurp(p1), "third\n");
    close(w);
    unlink(path);
    unlink(p1);
    unlink(p2);
}

static void test_rotate_errors(void **state)
{
    (void)state;
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/missing.log", g_dir);
    assert_true(us_log_rotate(path, 3, err, sizeof err) < 0);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "missing.log"));
}

static int setup(void **state)
{
    (void)state;
    return ut_mkdtemp(g_dir, sizeof g_dir, "logrot") ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return ut_rmtree(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotate_keeps_and_drops),
        cmocka_unit_test(test_rotate_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
