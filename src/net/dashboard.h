/* dashboard.h — the web dashboard: one self-contained page (web/dashboard.html: HTML, CSS and JS,
 * no external resources) embedded into the binary at compile time and served by the agent's API
 * at GET /. The page reads GET /v1/status and /v1/events of the agent that served it, and posts
 * switchovers to it (a follower answers 421 with the leader's API address, which the page links).
 */
#ifndef US_DASHBOARD_H
#define US_DASHBOARD_H

#include <stddef.h>

#include "net/api.h"

/* The embedded page (NUL-terminated) and its length without the NUL. */
const char *us_dashboard_page(size_t *len);

/* The Content-Security-Policy the page is served with. */
const char *us_dashboard_csp(void);

/* GET / (the page), GET /favicon.ico (204). GET on any other path that no other route takes
 * is answered 404 like an unknown endpoint, since "/" is a prefix of every path. */
void us_dashboard_routes(us_api *api);

#endif
