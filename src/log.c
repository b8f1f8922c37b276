/* log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static char g_ident[64] = "understudy";
static int g_level = US_LOG_INFO;
static int g_journal = 0;

void us_log_init(const char *ident, int level)
{
    snprintf(g_ident, sizeof g_ident, "%s", ident);
    g_level = level;
    g_journal = getenv("JOURNAL_STREAM") != NULL;
}

void us_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    static const char *prio[] = {"<3>", "<4>", "<6>", "<7>"};
    if (level > g_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
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
