/* logrotate.c — see logrotate.h. */
#include "node/logrotate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

#define CHECK_EVERY_MS 1000
#define CHECK_PER_ROUND 100

static int fail(int e, char *err, size_t errlen, const char *what, const char *path)
{
    if (errlen > 0)
        snprintf(err, errlen, "cannot %s %s: %s", what, path, strerror(e));
    return -e;
}

int us_log_rotate(const char *path, int keep, char *err, size_t errlen)
{
    char from[PATH_MAX], to[PATH_MAX];
    if (errlen > 0)
        err[0] = '\0';
    int src = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (src < 0)
        return fail(errno, err, errlen, "open", path);
    struct stat sb;
    if (fstat(src, &sb) != 0) {
        int e = errno;
        close(src);
        return fail(e, err, errlen, "stat", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(src);
        return fail(EINVAL, err, errlen, "rotate (not a regular file)", path);
    }
    if (keep > 0) {
        /* Shift the older files up; the oldest falls off. */
        snprintf(to, sizeof to, "%s.%d", path, keep);
        if (unlink(to) != 0 && errno != ENOENT) {
            int e = errno;
            close(src);
            return fail(e, err, errlen, "remove", to);
        }
        for (int i = keep - 1; i >= 1; i--) {
            snprintf(from, sizeof from, "%s.%d", path, i);
            snprintf(to, sizeof to, "%s.%d", path, i + 1);
            if (rename(from, to) != 0 && errno != ENOENT) {
                int e = errno;
                close(src);
                return fail(e, err, errlen, "rename", from);
            }
        }
        snprintf(to, sizeof to, "%s.1", path);
        int dst = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (dst < 0) {
            int e = errno;
            close(src);
            return fail(e, err, errlen, "create", to);
        }
        /* Bounded: a writer faster than the copy cannot keep it going forever. */
        off_t limit = sb.st_size * 2 + 65536, copied = 0;
        char buf[65536];
        while (copied < limit) {
            ssize_t n = read(src, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;
                close(dst);
                close(src);
                return fail(e, err, errlen, "read", path);
            }
            if (n == 0)
                break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(dst, buf + off, (size_t)(n - off));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    /* Out of space for the copy: better lose the old output than fill the disk
                     * further; the current file is still truncated below. */
                    int e = w < 0 ? errno : EIO;
                    if (errlen > 0)
                        snprintf(err, errlen, "%s: copy to %s incomplete (%s); truncated anyway",
                                 path, to, strerror(e));
                    goto truncate;
                }
                off += w;
            }
            copied += n;
        }
    truncate:
        close(dst);
    }
    if (ftruncate(src, 0) != 0) {
        int e = errno;
        close(src);
        return fail(e, err, errlen, "truncate", path);
    }
    close(src);
    return 0;
}

/* ---- periodic checks on the loop, the rotation on the thread pool ---- */

typedef struct job {
    uv_work_t req;
    char path[PATH_MAX];
    int keep;
    int64_t size;
    int rc;
    char err[PATH_MAX + 128];
} job;

static job *running;
static int64_t last_check_ms = -CHECK_EVERY_MS;

static void work_cb(uv_work_t *req)
{
    job *j = req->data;
    j->rc = us_log_rotate(j->path, j->keep, j->err, sizeof j->err);
}

static void after_cb(uv_work_t *req, int status)
{
    job *j = req->data;
    if (status == UV_ECANCELED)
        us_warn("%s: rotation cancelled", j->path);
    else if (j->rc != 0)
        us_error("log rotation failed: %s", j->err);
    else if (j->err[0])
        us_warn("log rotation: %s", j->err);
    else
        us_info("rotated %s (%lld bytes, keeping %d older files)", j->path, (long long)j->size,
                j->keep);
    free(j);
    running = NULL;
}

bool us_logs_busy(void)
{
    return running != NULL;
}

void us_logs_maintain(uv_loop_t *loop, const char *data_dir, us_logs_def_at def_at, void *ctx,
                      int n_defs, int64_t now_ms)
{
    if (running || now_ms - last_check_ms < CHECK_EVERY_MS)
        return;
    last_check_ms = now_ms;
    static const char *const suffixes[] = {".log", ".check.log", ".notify.log"};
    /* At most CHECK_PER_ROUND services a round, round-robin, and only those the caller says may
     * have logs here: with 1,000 services every agent stat()ed 3,000 paths a second (7 % of an
     * idle agent's time), mostly of services that never ran here. A log then waits up to a few
     * rounds longer for its rotation. */
    static int next;
    int n = n_defs < CHECK_PER_ROUND ? n_defs : CHECK_PER_ROUND;
    for (int r = 0; r < n; r++) {
        if (next >= n_defs)
            next = 0;
        const us_service_def *d = def_at(ctx, next++);
        if (!d || d->log_max <= 0)
            continue;
        for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/logs/%s%s", data_dir, d->name, suffixes[k]) >=
                (int)sizeof path)
                continue;
            struct stat sb;
            if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= d->log_max)
                continue;
            job *j = calloc(1, sizeof *j);
            if (!j)
                return;
            us_strlcpy(j->path, path, sizeof j->path);
            j->keep = d->log_keep;
            j->size = (int64_t)sb.st_size;
            j->req.data = j;
            if (uv_queue_work(loop, &j->req, work_cb, after_cb) != 0) {
                free(j);
                return;
            }
            running = j;
            return; /* one at a time; the next check picks up the others */
        }
    }
}
