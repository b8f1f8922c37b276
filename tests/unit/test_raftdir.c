/* test_raftdir.c — the repair of a Raft data directory that libraft refuses after an interrupted
 * truncation or snapshot install: the plan over listings (the layouts libraft loads are left alone,
 * the refused ones lose exactly the runs past the hole), and the repair of a real directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/raftdir.h"
#include "helpers.h"

#define SNAP_META(t, i) "snapshot-" #t "-" #i "-7349363.meta"
#define SNAP_DATA(t, i) "snapshot-" #t "-" #i "-7349363"

/* A listing: names, all with size 100 (open segments: entries when in `full`). */
typedef struct listing {
    us_raftdir_file f[16];
    bool move[16];
    int n;
} listing;

static void add(listing *l, const char *name)
{
    l->f[l->n++] = (us_raftdir_file){.name = name, .size = 100};
}

static void add_open(listing *l, const char *name, bool entries)
{
    l->f[l->n++] = (us_raftdir_file){.name = name, .size = 8 << 20, .holds_entries = entries};
}

static bool moved(const listing *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->f[i].name, name) == 0)
            return l->move[i];
    fail_msg("%s is not in the listing", name);
    return false;
}

static int plan(listing *l)
{
    char why[512];
    int rc = us_raftdir_plan(l->f, l->n, l->move, why, sizeof why);
    if (rc < 0)
        assert_true(why[0] != '\0');
    return rc;
}

static void base(listing *l)
{
    memset(l, 0, sizeof *l);
    add(l, "metadata1");
    add(l, "metadata2");
    add(l, SNAP_META(57, 300));
    add(l, SNAP_DATA(57, 300));
    add(l, SNAP_META(58, 690));
    add(l, SNAP_DATA(58, 690));
}

/* What `make chaos` left (an install that dropped the log oldest first, killed before its end):
 * the newest snapshot, then closed segments that begin far past it. All of them go. */
static void test_install_interrupted(void **state)
{
    (void)state;
    listing l;
    base(&l);
    add(&l, "0000000000001065-0000000000001144");
    add(&l, "0000000000001145-0000000000001200");
    add_open(&l, "open-7", false);
    assert_int_equal(plan(&l), 2);
    assert_true(moved(&l, "0000000000001065-0000000000001144"));
    assert_true(moved(&l, "0000000000001145-0000000000001200"));
    assert_false(moved(&l, "open-7"));
    assert_false(moved(&l, SNAP_DATA(58, 690)));
    assert_false(moved(&l, SNAP_META(58, 690)));
    assert_false(moved(&l, "metadata1"));
}

/* A truncation killed after it rewrote the segment of the truncation point and removed the one
 * after it: the run that joins the snapshot stays, the newer runs past the hole go. */
static void test_truncation_interrupted(void **state)
{
    (void)state;
    listing l;
    base(&l);
    add(&l, "0000000000000600-0000000000000999");
    add(&l, "0000000000001065-0000000000001144");
    add(&l, "0000000000001300-0000000000001400"); /* a second hole */
    assert_int_equal(plan(&l), 2);
    assert_false(moved(&l, "0000000000000600-0000000000000999"));
    assert_true(moved(&l, "0000000000001065-0000000000001144"));
    assert_true(moved(&l, "0000000000001300-0000000000001400"));
}

/* Layouts libraft loads: nothing to do. */
static void test_loadable_layouts_are_left_alone(void **state)
{
    (void)state;
    listing l;
    base(&l); /* snapshots only */
    assert_int_equal(plan(&l), 0);

    base(&l); /* the run joins the snapshot at index + 1 */
    add(&l, "0000000000000691-0000000000000800");
    add(&l, "0000000000000801-0000000000000900");
    add_open(&l, "open-1", true);
    assert_int_equal(plan(&l), 0);

    base(&l); /* an older leftover before a hole, the newest run covering the snapshot: libraft
                 drops the leftover itself */
    add(&l, "0000000000000100-0000000000000200");
    add(&l, "0000000000000627-0000000000000800");
    assert_int_equal(plan(&l), 0);

    base(&l); /* every closed segment inside the snapshot, no open one: libraft drops them */
    add(&l, "0000000000000100-0000000000000200");
    assert_int_equal(plan(&l), 0);

    base(&l); /* inside the snapshot, but open segments with entries continue them (libraft) */
    add(&l, "0000000000000100-0000000000000600");
    add_open(&l, "open-2", true);
    assert_int_equal(plan(&l), 0);

    base(&l); /* a truncation killed after it wrote the shortened copy of a segment, before it
                 removed the original: the original and its successors still form the run */
    add(&l, "0000000000000600-0000000000001064");
    add(&l, "0000000000001065-0000000000001144");
    add(&l, "0000000000000600-0000000000000999");
    assert_int_equal(plan(&l), 0);

    memset(&l, 0, sizeof l); /* no snapshot at all: libraft reads the segments as they are */
    add(&l, "0000000000000001-0000000000000010");
    add(&l, "0000000000000050-0000000000000060");
    assert_int_equal(plan(&l), 0);
}

/* The newest snapshot counts only with its data file, non-empty (libraft's listing). */
static void test_snapshot_needs_its_data(void **state)
{
    (void)state;
    listing l;
    memset(&l, 0, sizeof l);
    add(&l, SNAP_META(58, 690));
    add(&l, SNAP_DATA(58, 690));
    add(&l, SNAP_META(59, 1064)); /* an install cut before its data file was linked */
    add(&l, "0000000000000691-0000000000000900");
    add(&l, "0000000000001065-0000000000001144");
    assert_int_equal(plan(&l), 1);
    assert_true(moved(&l, "0000000000001065-0000000000001144"));

    add(&l, SNAP_DATA(59, 1064)); /* with it, the newer snapshot covers the hole: loadable */
    assert_int_equal(plan(&l), 0);

    memset(&l, 0, sizeof l);
    add(&l, SNAP_META(58, 690));
    l.f[l.n++] = (us_raftdir_file){.name = SNAP_DATA(58, 690), .size = 0};
    add(&l, "0000000000001065-0000000000001144");
    assert_int_equal(plan(&l), 0); /* an empty data file: no snapshot, nothing to check against */
}

/* With only empty open segments, closed segments left inside the snapshot after the hole would
 * make libraft refuse again ("behind last snapshot"): they go too (the snapshot holds them). */
static void test_leftovers_inside_the_snapshot(void **state)
{
    (void)state;
    listing l;
    base(&l);
    add(&l, "0000000000000500-0000000000000600");
    add(&l, "0000000000001065-0000000000001144");
    add_open(&l, "open-3", false);
    assert_int_equal(plan(&l), 2);
    assert_true(moved(&l, "0000000000000500-0000000000000600"));
    assert_true(moved(&l, "0000000000001065-0000000000001144"));
    assert_false(moved(&l, "open-3"));
}

/* An open segment with entries after a hole is no crash of ours: refused, nothing marked. */
static void test_open_entries_refuse(void **state)
{
    (void)state;
    listing l;
    base(&l);
    add(&l, "0000000000001065-0000000000001144");
    add_open(&l, "open-4", true);
    assert_int_equal(plan(&l), -1);
    for (int i = 0; i < l.n; i++)
        assert_false(l.move[i]);
}

/* Names that are not libraft's, or almost: ignored. */
static void test_foreign_names(void **state)
{
    (void)state;
    listing l;
    base(&l);
    add(&l, "000000000000106-0000000000001144");  /* 15 digits */
    add(&l, "0000000000001065_0000000000001144"); /* not a dash */
    add(&l, "0000000000001144-0000000000001065"); /* first > last */
    add(&l, "snapshot-59-x-1.meta");
    add(&l, "open-");
    add(&l, "99999999999999999999-00000000000000001"); /* too long */
    assert_int_equal(plan(&l), 0);
}

/* ---- a real directory ---- */

static void touch(const char *dir, const char *name, const void *data, size_t len)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static bool exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_repair_directory(void **state)
{
    (void)state;
    char top[64];
    assert_non_null(ut_mkdtemp(top, sizeof top, "raftdir"));
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/raft", top);
    char msg[1024];
    assert_int_equal(us_raftdir_repair(dir, msg, sizeof msg), 0); /* missing: nothing to do */
    assert_int_equal(mkdir(dir, 0700), 0);

    static const unsigned char zeros[4096];
    unsigned char batch[64] = {1, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd};
    touch(dir, "metadata1", "m", 1);
    touch(dir, SNAP_META(58, 690), "meta", 4);
    touch(dir, SNAP_DATA(58, 690), "data", 4);
    touch(dir, "0000000000000600-0000000000000999", "x", 1);
    touch(dir, "0000000000001065-0000000000001144", "y", 1);
    touch(dir, "open-9", zeros, sizeof zeros); /* allocated, never written */
    assert_int_equal(us_raftdir_repair(dir, msg, sizeof msg), 1);
    assert_non_null(strstr(msg, "0000000000001065-0000000000001144"));
    assert_false(exists(dir, "0000000000001065-0000000000001144"));
    assert_true(exists(dir, "0000000000000600-0000000000000999"));
    assert_true(exists(dir, "open-9"));
    assert_true(exists(dir, SNAP_DATA(58, 690)));
    const char *aside = strstr(msg, top);
    assert_non_null(aside);
    char aside_dir[PATH_MAX];
    snprintf(aside_dir, sizeof aside_dir, "%.*s", (int)strcspn(aside, ":"), aside);
    assert_true(exists(aside_dir, "0000000000001065-0000000000001144"));
    assert_int_equal(us_raftdir_repair(dir, msg, sizeof msg), 0); /* done: nothing more */

    /* An open segment with a batch header after a new hole: refused, nothing moved. */
    touch(dir, "0000000000001300-0000000000001400", "z", 1);
    touch(dir, "open-10", batch, sizeof batch);
    assert_int_equal(us_raftdir_repair(dir, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "open-10"));
    assert_true(exists(dir, "0000000000001300-0000000000001400"));
    assert_int_equal(ut_rmtree(top), 0);
}

/* A directory of more files than libraft ever keeps is not its layout: refused, left alone. */
static void test_repair_refuses_a_huge_directory(void **state)
{
    (void)state;
    char top[64];
    assert_non_null(ut_mkdtemp(top, sizeof top, "raftdir-huge"));
    touch(top, SNAP_META(58, 690), "meta", 4);
    touch(top, SNAP_DATA(58, 690), "data", 4);
    touch(top, "0000000000001065-0000000000001144", "y", 1); /* would be moved */
    for (int i = 0; i < 65536; i++) {
        char name[32];
        snprintf(name, sizeof name, "x%d", i);
        touch(top, name, "", 0);
    }
    char msg[1024];
    assert_int_equal(us_raftdir_repair(top, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "more than 65536 files"));
    assert_true(exists(top, "0000000000001065-0000000000001144"));
    assert_int_equal(ut_rmtree(top), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_interrupted),
        cmocka_unit_test(test_truncation_interrupted),
        cmocka_unit_test(test_loadable_layouts_are_left_alone),
        cmocka_unit_test(test_snapshot_needs_its_data),
        cmocka_unit_test(test_leftovers_inside_the_snapshot),
        cmocka_unit_test(test_open_entries_refuse),
        cmocka_unit_test(test_foreign_names),
        cmocka_unit_test(test_repair_directory),
        cmocka_unit_test(test_repair_refuses_a_huge_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
