/* log.c — see log.h. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static char g_ident[64] = "understudy";
static int g_level = US_LOG_INFO;
static int g_journal = 0;

/* systemd sets JOURNAL_STREAM=DEV:INODE when it connects stdout/stderr to the journal; stderr is
 * that stream only if its device and inode match (a shell started from the unit and redirecting
 * stderr to a file keeps the variable, not the stream). */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void us_log_init(const char *ident, int level)
{
    snprintf(g_ident, sizeof g_ident, "%s", ident);
    g_level = level;
    g_journal = stderr_is_journal();
}

void us_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *prio[] = {SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG};
    if (level > g_level)
        return;
    if (level < US_LOG_ERROR)
        level = US_LOG_ERROR;
    if (level > US_LOG_DEBUG)
        level = US_LOG_DEBUG;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One event, one line: a message that holds line breaks (a hook's output, a cause) must not
     * look like several records to journald or to a log reader. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (g_journal) {
        fprintf(stderr, "%s%s: %s\n", prio[level], g_ident, msg);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            (long)(tv.tv_usec / 1000), names[level], g_ident, msg);
}
