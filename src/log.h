/* log.h — one line per event on stderr: "LEVEL node: message". Journald-friendly (no timestamps
 * when stderr is not a terminal and JOURNAL_STREAM is set; otherwise a monotonic-free wall time).
 */
#ifndef US_LOG_H
#define US_LOG_H

enum { US_LOG_ERROR = 0, US_LOG_WARN, US_LOG_INFO, US_LOG_DEBUG };

void us_log_init(const char *ident, int level);
void us_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define us_error(...) us_log(US_LOG_ERROR, __VA_ARGS__)
#define us_warn(...) us_log(US_LOG_WARN, __VA_ARGS__)
#define us_info(...) us_log(US_LOG_INFO, __VA_ARGS__)
#define us_debug(...) us_log(US_LOG_DEBUG, __VA_ARGS__)

#endif
