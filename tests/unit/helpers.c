/* helpers.c — see helpers.h. */
#include "helpers.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

char *ut_mkdtemp(char *dir, size_t size, const char *name)
{
    int n = snprintf(dir, size, "/tmp/us-%s-XXXXXX", name);
    if (n < 0 || (size_t)n >= size)
        return NULL;
    return mkdtemp(dir);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int ut_rmtree(const char *dir)
{
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

int ut_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

char *ut_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

void ut_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(uv_timer_t *t)
{
    (void)t;
}

bool ut_run_until(uv_loop_t *loop, bool (*done)(const void *data), const void *data, int timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, wake, 2, 2);
    int64_t deadline = mono_ms() + timeout_ms;
    while (!done(data) && mono_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return done(data);
}

int ut_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                     getsockname(fd, (struct sockaddr *)&sa, &len) == 0
                 ? ntohs(sa.sin_port)
                 : -1;
    close(fd);
    return rc;
}

int ut_keyring(unsigned char fill, us_keyring *out)
{
    char text[80];
    for (int i = 0; i < 64; i++)
        text[i] = "0123456789abcdef"[(fill + i) % 16];
    text[64] = '\n';
    char err[256];
    memset(out, 0, sizeof *out);
    return us_keyring_parse(text, 65, "test", out, err, sizeof err) == 0 ? 0 : -1;
}

static void close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void ut_close_all(uv_loop_t *loop)
{
    uv_walk(loop, close_one, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}
