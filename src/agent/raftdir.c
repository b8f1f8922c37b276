/* raftdir.c — see raftdir.h. The names and the order of the checks follow libraft 0.22's
 * uvLoadSnapshotAndEntries() and uvFilterSegments() (src/uv.c). */
#include "agent/raftdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/model.h"
#include "lib/clock.h"

/* ---- names ---- */

/* Digits only, at least one, no overflow: the value; else false. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* "%016llu-%016llu" */
static bool parse_closed(const char *name, uint64_t *first, uint64_t *last)
{
    return strlen(name) == 33 && name[16] == '-' && parse_u64(name, 16, first) &&
           parse_u64(name + 17, 16, last) && *first <= *last;
}

static bool parse_open(const char *name)
{
    uint64_t counter;
    return strncmp(name, "open-", 5) == 0 && parse_u64(name + 5, strlen(name + 5), &counter);
}

/* "snapshot-TERM-INDEX-TIME" with `meta` ".meta" after it. */
static bool parse_snapshot(const char *name, bool meta, uint64_t v[3])
{
    static const char prefix[] = "snapshot-";
    size_t len = strlen(name);
    if (strncmp(name, prefix, sizeof prefix - 1) != 0)
        return false;
    if (meta) {
        if (len < 5 || strcmp(name + len - 5, ".meta") != 0)
            return false;
        len -= 5;
    }
    const char *p = name + sizeof prefix - 1, *end = name + len;
    for (int k = 0; k < 3; k++) {
        const char *q = p;
        while (q < end && *q != '-')
            q++;
        if (!parse_u64(p, (size_t)(q - p), &v[k]) || (k < 2) != (q < end))
            return false;
        p = q + 1;
    }
    return true;
}

/* ---- the plan ---- */

typedef struct seg {
    int file;
    uint64_t first, last;
} seg;

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b; /* two with the same first index: a truncation's rewrite and the
                                 segment it replaces; the longer one continues the run */
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return x->last < y->last ? -1 : x->last > y->last;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The newest snapshot that libraft would consider (metadata and a non-empty data file): its index
 * in *index. 1, 0 when there is none, -1 out of memory. The data files' names are sorted and each
 * metadata file's data file found by bisection: compared pairwise, a directory of 65,536 names
 * would take minutes. */
static int newest_snapshot(const us_raftdir_file *files, int n, uint64_t *index)
{
    const char **data = malloc((size_t)n * sizeof *data);
    if (!data)
        return -1;
    int n_data = 0;
    for (int i = 0; i < n; i++) {
        uint64_t v[3];
        if (files[i].size > 0 && parse_snapshot(files[i].name, false, v))
            data[n_data++] = files[i].name;
    }
    qsort(data, (size_t)n_data, sizeof *data, name_cmp);
    uint64_t best[3] = {0, 0, 0};
    bool found = false;
    for (int i = 0; i < n; i++) {
        uint64_t v[3];
        if (!parse_snapshot(files[i].name, true, v))
            continue;
        bool newer = !found || v[0] > best[0] || (v[0] == best[0] && v[1] > best[1]) ||
                     (v[0] == best[0] && v[1] == best[1] && v[2] > best[2]);
        size_t base = strlen(files[i].name) - 5; /* without ".meta" */
        if (!newer || base > NAME_MAX)
            continue;
        char name[NAME_MAX + 1];
        memcpy(name, files[i].name, base);
        name[base] = '\0';
        const char *key = name;
        if (bsearch(&key, data, (size_t)n_data, sizeof *data, name_cmp))
            memcpy(best, v, sizeof best), found = true;
    }
    free(data);
    *index = best[1];
    return found;
}

int us_raftdir_plan(const us_raftdir_file *files, int n, bool *move, char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    for (int i = 0; i < n; i++)
        move[i] = false;
    uint64_t snap;
    int found = n > 0 ? newest_snapshot(files, n, &snap) : 0;
    if (found < 0) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (found == 0)
        return 0; /* without a snapshot libraft loads the segments as they are */
    seg *segs = calloc((size_t)n, sizeof *segs);
    if (!segs) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int n_closed = 0, n_open = 0, open_with_entries = -1;
    for (int i = 0; i < n; i++) {
        seg s = {.file = i};
        if (parse_closed(files[i].name, &s.first, &s.last)) {
            segs[n_closed++] = s;
        } else if (parse_open(files[i].name)) {
            n_open++;
            if (files[i].holds_entries && open_with_entries < 0)
                open_with_entries = i;
        }
    }
    qsort(segs, (size_t)n_closed, sizeof *segs, seg_cmp);

    /* Newest run first, as libraft looks at them. */
    int end = n_closed, marked = 0;
    bool dropped_run = false;
    while (end > 0) {
        int j = end - 1;
        if (segs[j].last < snap) {
            /* Every remaining closed segment lies inside the snapshot. Without open segments
             * libraft drops them itself; with open segments that hold entries it keeps them (the
             * open ones may continue them); with only empty open segments it would load them and
             * then refuse ("last entry on disk ... is behind last snapshot"): moving them aside
             * loses nothing the snapshot does not hold. */
            if (n_open > 0 && open_with_entries < 0) {
                for (int k = 0; k <= j; k++)
                    move[segs[k].file] = true;
                marked += j + 1;
            }
            break;
        }
        int i = j;
        while (i > 0 && segs[i - 1].last + 1 == segs[i].first)
            i--;
        if (segs[i].first <= snap + 1)
            break; /* this run joins the snapshot: libraft loads it */
        for (int k = i; k <= j; k++)
            move[segs[k].file] = true;
        marked += j - i + 1;
        dropped_run = true;
        end = i;
    }
    free(segs);
    if (dropped_run && open_with_entries >= 0) {
        snprintf(why, whylen,
                 "closed segments begin after the last snapshot (index %llu) and the open segment "
                 "%s holds entries: not the layout an interrupted truncation or snapshot install "
                 "leaves, not repaired",
                 (unsigned long long)snap, files[open_with_entries].name);
        for (int i = 0; i < n; i++)
            move[i] = false;
        return -1;
    }
    return marked;
}

/* ---- the directory ---- */

/* libraft keeps a few dozen files; a directory with more is not its layout (and its listing
 * would be held in memory). */
#define RAFTDIR_FILES_MAX 65536
#define SCAN_BYTES 24 /* the format word and the first batch's checksums and entry count */

static bool open_holds_entries(int dfd, const char *name)
{
    unsigned char b[SCAN_BYTES];
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; /* unknown: assume the worst */
    ssize_t got = pread(fd, b, sizeof b, 0);
    close(fd);
    if (got < (ssize_t)sizeof b)
        return got < 0; /* shorter than one batch header: no entry (libraft drops it) */
    for (size_t i = 8; i < sizeof b; i++)
        if (b[i] != 0)
            return true;
    return false;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int us_raftdir_repair(const char *dir, char *msg, size_t msglen)
{
    if (msglen)
        msg[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        snprintf(msg, msglen, "cannot read %s: %s", dir, strerror(errno));
        return -1;
    }
    int cap = 64, n = 0, rc = 0;
    us_raftdir_file *files = calloc((size_t)cap, sizeof *files);
    char(*names)[NAME_MAX + 1] = calloc((size_t)cap, sizeof *names);
    struct dirent *e;
    while (files && names && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            if (cap >= RAFTDIR_FILES_MAX) {
                rc = -2;
                break;
            }
            cap *= 2;
            us_raftdir_file *f2 = realloc(files, (size_t)cap * sizeof *files);
            files = f2 ? f2 : files;
            char(*n2)[NAME_MAX + 1] = f2 ? realloc(names, (size_t)cap * sizeof *names) : NULL;
            if (!f2 || !n2) {
                rc = -1;
                break;
            }
            names = n2;
        }
        snprintf(names[n], sizeof names[n], "%s", e->d_name);
        files[n].size = (uint64_t)st.st_size;
        files[n].holds_entries = parse_open(e->d_name) && open_holds_entries(dirfd(d), e->d_name);
        n++;
    }
    closedir(d);
    bool *move = files && names && rc == 0 ? calloc((size_t)n + 1, sizeof *move) : NULL;
    if (!move) {
        snprintf(msg, msglen, "cannot list %s: %s", dir,
                 rc == -2 ? "more than " US_STR(RAFTDIR_FILES_MAX) " files, not libraft's layout"
                          : "out of memory");
        free(files), free(names);
        return -1;
    }
    for (int i = 0; i < n; i++)
        files[i].name = names[i];
    char why[512];
    int marked = us_raftdir_plan(files, n, move, why, sizeof why);
    if (marked <= 0) {
        if (marked < 0)
            snprintf(msg, msglen, "%s: %s", dir, why);
        free(files), free(names), free(move);
        return marked;
    }
    char aside[PATH_MAX];
    snprintf(aside, sizeof aside, "%s-corrupt-%lld", dir, (long long)us_wall_ms());
    if (mkdir(aside, 0700) != 0 && errno != EEXIST) {
        snprintf(msg, msglen, "cannot create %s: %s", aside, strerror(errno));
        free(files), free(names), free(move);
        return -1;
    }
    int from = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int to = open(aside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int moved = 0, len = snprintf(msg, msglen, "moved to %s:", aside);
    for (int i = 0; i < n && rc == 0; i++) {
        if (!move[i])
            continue;
        if (from < 0 || to < 0 || renameat(from, names[i], to, names[i]) != 0) {
            snprintf(msg, msglen, "cannot move %s out of %s: %s", names[i], dir, strerror(errno));
            rc = -1;
            break;
        }
        moved++;
        if (len >= 0 && (size_t)len < msglen)
            len += snprintf(msg + len, msglen - (size_t)len, " %s", names[i]);
    }
    if (from >= 0)
        close(from);
    if (to >= 0)
        close(to);
    if (rc == 0 && (fsync_dir(aside) != 0 || fsync_dir(dir) != 0)) {
        snprintf(msg, msglen, "cannot sync %s or %s: %s", dir, aside, strerror(errno));
        rc = -1;
    }
    free(files), free(names), free(move);
    return rc == 0 ? moved : -1;
}
