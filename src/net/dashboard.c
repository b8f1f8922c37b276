/* dashboard.c — serves the embedded web/dashboard.html (see dashboard.h), with a
 * Content-Security-Policy that allows exactly the page's own inline <script> and <style> blocks
 * (by their SHA-256, computed once from the embedded page), its own API (connect-src 'self'),
 * and no framing (frame-ancestors 'none', X-Frame-Options: DENY). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "net/dashboard.h"

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

/* Append " 'sha256-B64'" for every <TAG>...</TAG> block of the page to out. */
static void block_hashes(const char *page, size_t len, const char *tag, char *out, size_t size)
{
    char open[16], close[16];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *end = page + len;
    for (const char *p = page; p < end;) {
        const char *a = memmem(p, (size_t)(end - p), open, strlen(open));
        if (!a)
            break;
        a += strlen(open);
        const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
        if (!b)
            break;
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *)a, (unsigned long long)(b - a));
        char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES,
                                           sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(b64, sizeof b64, h, sizeof h, sodium_base64_VARIANT_ORIGINAL);
        size_t used = strlen(out);
        snprintf(out + used, size - used, " 'sha256-%s'", b64);
        p = b + strlen(close);
    }
}

const char *us_dashboard_csp(void)
{
    static char csp[1024];
    if (!csp[0]) {
        size_t len;
        const char *page = us_dashboard_page(&len);
        char scripts[400] = "", styles[400] = "";
        if (sodium_init() >= 0) {
            block_hashes(page, len, "script", scripts, sizeof scripts);
            block_hashes(page, len, "style", styles, sizeof styles);
        }
        snprintf(csp, sizeof csp,
                 "default-src 'none'; script-src%s; style-src%s; connect-src 'self'; "
                 "img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'none'",
                 scripts[0] ? scripts : " 'none'", styles[0] ? styles : " 'none'");
    }
    return csp;
}

static void h_page(us_api_req *r, void *data)
{
    (void)data;
    const char *path = us_api_req_path(r);
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        size_t len;
        const char *page = us_dashboard_page(&len);
        us_api_reply_text(r, 200, "text/html; charset=utf-8", page, len);
        us_api_reply_header(r, "Content-Security-Policy", us_dashboard_csp());
        us_api_reply_header(r, "X-Frame-Options", "DENY");
        us_api_reply_header(r, "Referrer-Policy", "no-referrer");
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
