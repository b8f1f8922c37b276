/* dashboard.c — serves the embedded web/dashboard.html (see dashboard.h). */
#include <string.h>

#include "dashboard.h"

/* The page is assembled into .rodata from the file itself (the compiler runs from the repo root;
 * the Makefile rebuilds this object when web/ changes), so there is no generated source. */
__asm__(".pushsection .rodata.us_dashboard, \"a\", @progbits\n"
        ".balign 16\n"
        "us_dashboard_start:\n"
        ".incbin \"web/dashboard.html\"\n"
        "us_dashboard_end:\n"
        ".byte 0\n"
        ".popsection\n");

extern const char us_dashboard_start[];
extern const char us_dashboard_end[];

const char *us_dashboard_page(size_t *len)
{
    *len = (size_t)(us_dashboard_end - us_dashboard_start);
    return us_dashboard_start;
}

static void h_page(us_api_req *r, void *data)
{
    (void)data;
    const char *path = us_api_req_path(r);
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        size_t len;
        const char *page = us_dashboard_page(&len);
        us_api_reply_text(r, 200, "text/html; charset=utf-8", page, len);
    } else if (strcmp(path, "/favicon.ico") == 0) {
        us_api_reply_text(r, 204, "text/plain", "", 0);
    } else {
        us_api_reply_error(r, 404, "no such endpoint: %s", path);
    }
}

void us_dashboard_routes(us_api *api)
{
    us_api_route(api, "GET", "/", h_page, NULL);
}
