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

#include "core/model.h"
#include "node/logrotate.h"
#include "helpers.h"

#include <uv.h>

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

/* us_logs_def_at over a set, passing over the odd ones (as if they never ran here). */
static const us_service_def *even_def_at(void *ctx, int i)
{
    const us_service_set *set = ctx;
    return i % 2 == 0 && i < set->n ? &set->svc[i] : NULL;
}

/* us_logs_maintain looks at 100 services a round, round-robin: the log of the 250th service of
 * 250 is rotated by the third round, and a round comes at most once a second. A service the
 * caller passes over is not looked at. */
static void test_maintain_reaches_every_service(void **state)
{
    (void)state;
    enum { N = 250 };
    char dir[PATH_MAX / 2], path[PATH_MAX], p1[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/logs", g_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    us_service_set set = {0};
    assert_int_equal(us_service_set_reserve(&set, N), 0);
    set.n = N;
    for (int i = 0; i < N; i++) {
        snprintf(set.svc[i].name, sizeof set.svc[i].name, "s%03d", i);
        set.svc[i].log_max = 100;
        set.svc[i].log_keep = 1;
    }
    /* s249 (passed over) and s248 (looked at) both too large */
    char odd[PATH_MAX], odd1[PATH_MAX + 8];
    snprintf(odd, sizeof odd, "%s/s%03d.log", dir, N - 1);
    snprintf(odd1, sizeof odd1, "%s.1", odd);
    snprintf(path, sizeof path, "%s/s%03d.log", dir, N - 2);
    snprintf(p1, sizeof p1, "%s.1", path);
    for (int f = 0; f < 2; f++) {
        int fd = open(f ? odd : path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        for (int i = 0; i < 30; i++)
            put(fd, "0123456789");
        close(fd);
    }
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int rounds = 0;
    for (int64_t now = 1000000; access(p1, F_OK) != 0 && rounds < 6; now += 1000, rounds++) {
        us_logs_maintain(&loop, g_dir, even_def_at, &set, set.n, now);
        us_logs_maintain(&loop, g_dir, even_def_at, &set, set.n, now + 500); /* within the second */
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(access(p1, F_OK), 0);
    assert_int_equal(rounds, 3);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    /* more rounds: the one passed over stays as it is */
    for (int64_t now = 2000000; rounds < 8; now += 1000, rounds++) {
        us_logs_maintain(&loop, g_dir, even_def_at, &set, set.n, now);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(access(odd1, F_OK), -1);
    assert_int_equal(stat(odd, &sb), 0);
    assert_int_equal(sb.st_size, 300);
    assert_int_equal(uv_loop_close(&loop), 0);
    us_service_set_free(&set);
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
        cmocka_unit_test(test_maintain_reaches_every_service),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
