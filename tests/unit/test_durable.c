/* test_durable.c — us_write_file_durable on a real file system, and on a full one (a 64 KiB
 * tmpfs mounted in a temporary directory; needs root, skipped with a message otherwise). The
 * teardown unmounts and removes it whether the test passed or not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/durable.h"
#include "helpers.h"

typedef struct fixture {
    char dir[64];
    bool mounted;
} fixture;

static fixture *current; /* for the atexit safety net */

static void unmount_current(void)
{
    if (current && current->mounted) {
        umount2(current->dir, MNT_DETACH);
        current->mounted = false;
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!ut_mkdtemp(f->dir, sizeof f->dir, "durable"))
        return -1;
    current = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unmount_current();
    ut_rmtree(f->dir);
    current = NULL;
    free(f);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    static char buf[256 * 1024];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

static void test_writes_and_replaces(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/file", f->dir);
    assert_int_equal(us_write_file_durable(path, "one\n", 4, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(slurp(path, NULL), "one\n");
    assert_int_equal(us_write_file_durable(path, "two two\n", 8, err, sizeof err), 0);
    assert_string_equal(slurp(path, NULL), "two two\n");
    assert_int_equal(us_write_file_durable(path, "", 0, err, sizeof err), 0);
    assert_string_equal(slurp(path, NULL), "");
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
}

static void test_rename_failure_leaves_target(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], inner[PATH_MAX + 8], err[256];
    /* A non-empty directory cannot be replaced by a file: the rename step fails. */
    snprintf(path, sizeof path, "%s/dirtarget", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(inner, sizeof inner, "%s/x", path);
    int fd = open(inner, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    int rc = us_write_file_durable(path, "data\n", 5, err, sizeof err);
    assert_true(rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST);
    assert_non_null(strstr(err, "cannot rename onto"));
    assert_non_null(strstr(err, path));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
}

static void test_missing_directory(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/no/such/file", f->dir);
    assert_int_equal(us_write_file_durable(path, "x", 1, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "cannot create"));
}

static void test_full_file_system(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0) {
        print_message("SKIPPED: mounting a tmpfs needs root (running as uid %d)\n", (int)geteuid());
        skip();
    }
    int rc = mount("tmpfs", f->dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755");
    if (rc != 0) {
        print_message("SKIPPED: cannot mount a tmpfs on %s: %s\n", f->dir, strerror(errno));
        skip();
    }
    f->mounted = true;
    char path[PATH_MAX], fill[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/file", f->dir);
    snprintf(fill, sizeof fill, "%s/fill", f->dir);
    assert_int_equal(us_write_file_durable(path, "old content\n", 12, err, sizeof err), 0);

    /* Fill the rest of the file system. */
    int fd = open(fill, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char block[4096];
    memset(block, 'f', sizeof block);
    int e = 0;
    for (int i = 0; i < 64; i++) { /* bounded: 256 KiB > 64 KiB */
        if (write(fd, block, sizeof block) < 0) {
            e = errno;
            break;
        }
    }
    close(fd);
    assert_int_equal(e, ENOSPC);

    /* A write that does not fit fails, names the file and the step, and changes nothing. */
    static char big[32 * 1024];
    memset(big, 'n', sizeof big);
    rc = us_write_file_durable(path, big, sizeof big, err, sizeof err);
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(err, "file.tmp"));
    assert_non_null(strstr(err, strerror(ENOSPC)));
    size_t len = 0;
    assert_string_equal(slurp(path, &len), "old content\n");
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);

    /* Once there is room again it works. */
    unlink(fill);
    assert_int_equal(us_write_file_durable(path, "new\n", 4, err, sizeof err), 0);
    assert_string_equal(slurp(path, NULL), "new\n");
}

int main(void)
{
    atexit(unmount_current);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_writes_and_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_failure_leaves_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_file_system, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
