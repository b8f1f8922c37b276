/* log.h — one line per event on stderr: "HH:MM:SS.mmm LEVEL node: message" (local wall time).
 * When stderr is the journal (JOURNAL_STREAM names its device:inode, as systemd sets it) a line is
 * "<P>node: message" instead: P the syslog priority (3 error, 4 warning, 6 info, 7 debug, as in
 * sd-daemon.h), which journald takes as the record's priority, and no timestamp (the journal has
 * its own). Line breaks in a message become spaces: one event is always one line.
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
