/* render.h — what the CLI prints, and nothing else: the status as tables, events as lines, JSON
 * and the agent's replies as they are on stdout; errors on stderr as "understudy: ...", each
 * returning the exit status it stands for. It asks no agent and keeps no state.
 *
 * Human output is coloured only when `color` says so (a terminal without NO_COLOR: the caller
 * decides); with `width` (a terminal's columns) a table's last column is cut so that lines do not
 * wrap. Times are local. */
#ifndef US_RENDER_H
#define US_RENDER_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* The exit status of every command (cli.h says what each means). */
enum { US_EXIT_OK = 0, US_EXIT_FAILED = 1, US_EXIT_USAGE = 2 };

typedef struct us_render {
    bool json;  /* --json: JSON instead of tables and lines */
    bool color; /* ANSI colours in tables */
    int width;  /* a terminal's columns, 0 = no limit */
} us_render;

/* "understudy: MESSAGE" on stderr. Returns US_EXIT_FAILED. */
int us_render_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: "understudy: MESSAGE", then "usage: USAGE" (or, with usage NULL, where to find
 * it) on stderr. Returns US_EXIT_USAGE. */
int us_render_usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int us_render_vusage_error(const char *usage, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* A reply of the agent at `api` that the CLI cannot use. Returns US_EXIT_FAILED. */
int us_render_unexpected(const char *api, const char *what);

/* The agent's reply body as it came, ending in a newline. */
void us_render_body(const char *body, size_t len);

/* Our own JSON (for --json), indented like the agent's; consumes j (NULL prints null). */
void us_render_json(json_t *j);

/* GET /v1/status as tables: the cluster line, NODES, SERVICES, then the notes on self-healing,
 * INSTANCES and FAILURES when there are any. 0, or -1 (nothing printed) when `status` lacks its
 * cluster object or its nodes and services arrays. */
int us_render_status(const us_render *o, json_t *status);

/* The events listing: its header line (none with --json) and one line per event (one compact JSON
 * object per line with --json). */
void us_render_event_header(const us_render *o);
void us_render_event(const us_render *o, json_t *event);

/* " (did you mean \"MATCH\"?)" in buf, or "" when match is NULL. */
const char *us_render_hint(char *buf, size_t size, const char *match);

/* The string member `key` of `obj`, or NULL (also when obj is not an object). */
const char *us_render_str(json_t *obj, const char *key);

/* The first object of array `arr` whose string member `key` is `name`, or NULL. */
json_t *us_render_find(json_t *arr, const char *key, const char *name);

#endif
