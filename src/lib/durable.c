/* durable.c — see durable.h. */
#include "lib/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(int e, char *err, size_t errlen, const char *what, const char *path)
{
    if (errlen > 0)
        snprintf(err, errlen, "cannot %s %s: %s", what, path, strerror(e));
    return -e;
}

int us_write_file_durable(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (errlen > 0)
        err[0] = '\0';
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return fail(ENAMETOOLONG, err, errlen, "write", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(errno, err, errlen, "create", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return fail(e, err, errlen, "write", tmp);
        }
        off += (size_t)n;
    }
    /* A delayed allocation failure (ENOSPC, EIO) shows up here or at close, not at write. */
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return fail(e, err, errlen, "fsync", tmp);
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(e, err, errlen, "close", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail(e, err, errlen, "rename onto", path);
    }
    /* The rename itself is durable only once the directory is. */
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return fail(errno, err, errlen, "open directory", dir);
    if (fsync(dfd) != 0) {
        int e = errno;
        close(dfd);
        return fail(e, err, errlen, "fsync directory", dir);
    }
    close(dfd);
    return 0;
}
