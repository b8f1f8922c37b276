/* api_guard.c — see api_guard.h. */
#include "net/api_guard.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Requests that need no token: the dashboard page asks for it and sends it itself. */
static const struct {
    const char *method;
    const char *path;
} open_paths[] = {
    {"GET", "/"},
    {"GET", "/index.html"},
    {"GET", "/favicon.ico"},
};

/* Content types a mutating request may declare; the first matching row decides. */
static const struct {
    const char *method; /* NULL: any mutating method */
    const char *path;   /* NULL: any path */
    const char *types;  /* NUL-separated list, ends with an empty string */
    const char *expected;
} body_types[] = {
    {"POST", "/v1/services", US_SERVICES_TYPE "\0", "'" US_SERVICES_TYPE "' (a services file)"},
    {NULL, NULL, "application/json\0", "'application/json'"},
};

static const char *const mutating[] = {"POST", "PUT", "PATCH", "DELETE"};

bool us_guard_mutating(const char *method)
{
    for (size_t i = 0; i < sizeof mutating / sizeof mutating[0]; i++)
        if (strcmp(method, mutating[i]) == 0)
            return true;
    return false;
}

/* Host part of "host[:port]" or "[v6]:port" into out; false if malformed or too long. */
static bool host_part(const char *hp, char *out, size_t size)
{
    size_t n;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            return false;
        n = (size_t)(close - hp) + 1;
    } else {
        const char *colon = strchr(hp, ':');
        n = colon ? (size_t)(colon - hp) : strlen(hp);
    }
    if (n == 0 || n >= size)
        return false;
    memcpy(out, hp, n);
    out[n] = '\0';
    return true;
}

bool us_guard_loopback_host(const char *host)
{
    char h[256];
    if (!host_part(host, h, sizeof h))
        return false;
    if (strcasecmp(h, "localhost") == 0 || strcasecmp(h, "localhost.") == 0 ||
        strcmp(h, "[::1]") == 0)
        return true;
    /* 127.x.x.x as a dotted quad of digits only. */
    if (strncmp(h, "127.", 4) != 0)
        return false;
    int dots = 0;
    for (const char *p = h; *p; p++) {
        if (*p == '.')
            dots++;
        else if (*p < '0' || *p > '9')
            return false;
    }
    return dots == 3;
}

static bool api_on_loopback(const char *api)
{
    return api && strncmp(api, "127.", 4) == 0;
}

static void deny(us_guard_verdict *v, int status, const char *fmt, const char *arg)
{
    v->status = status;
    snprintf(v->error, sizeof v->error, fmt, arg);
}

/* "Bearer TOKEN" -> TOKEN (case-insensitive scheme, spaces allowed), or NULL. */
static const char *bearer(const char *auth, size_t *len)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    const char *t = auth + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    *len = n;
    return n ? t : NULL;
}

/* The media type of a Content-Type value equals `type` (case-insensitive, parameters ignored). */
static bool media_type_is(const char *ct, const char *type)
{
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

bool us_guard_role_path(const char *path, char *name, size_t size, bool *standby)
{
    static const char prefix[] = "/v1/services/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *n = path + sizeof prefix - 1;
    const char *slash = strchr(n, '/');
    if (!slash || slash == n || (size_t)(slash - n) >= size)
        return false;
    bool sb = strcmp(slash, "/role/standby") == 0;
    if (!sb && strcmp(slash, "/role") != 0)
        return false;
    memcpy(name, n, (size_t)(slash - n));
    name[slash - n] = '\0';
    *standby = sb;
    return true;
}

static bool needs_token(const us_guard_config *cfg, const us_guard_request *req)
{
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++)
        if (strcmp(req->method, open_paths[i].method) == 0 &&
            strcmp(req->path, open_paths[i].path) == 0)
            return false;
    if (strcmp(req->method, "GET") == 0 && strcmp(req->path, "/metrics") == 0)
        return cfg->metrics_auth;
    char name[256];
    bool standby;
    if (strcmp(req->method, "GET") == 0 &&
        us_guard_role_path(req->path, name, sizeof name, &standby))
        return false;
    return true;
}

int us_guard_check(const us_guard_config *cfg, const us_guard_request *req, us_guard_verdict *v)
{
    memset(v, 0, sizeof *v);
    /* 1. DNS rebinding: a loopback API answers loopback names (and its own address) only. */
    if (req->host && api_on_loopback(cfg->api) && !us_guard_loopback_host(req->host) &&
        strcmp(req->host, cfg->api) != 0) {
        deny(v, 403,
             "Host '%.100s' is not this API's address: an API on loopback answers only "
             "localhost, 127.x.x.x or [::1]",
             req->host);
        return v->status;
    }
    bool mutates = us_guard_mutating(req->method);
    /* 2. Cross-origin changes: Origin must be this API's own origin. */
    if (mutates && req->origin) {
        const char *scheme = cfg->tls ? "https://" : "http://";
        size_t sl = strlen(scheme);
        const char *o = req->origin;
        bool same =
            strncasecmp(o, scheme, sl) == 0 && ((req->host && strcasecmp(o + sl, req->host) == 0) ||
                                                (cfg->api && strcmp(o + sl, cfg->api) == 0));
        if (!same) {
            deny(v, 403, "cross-origin request refused: Origin '%.100s' is not this API's origin",
                 o);
            return v->status;
        }
    }
    /* 3. The bearer token. */
    if (needs_token(cfg, req)) {
        size_t len = 0;
        const char *tok = bearer(req->authorization, &len);
        const char *name = tok && cfg->tokens ? us_tokens_match(cfg->tokens, tok, len) : NULL;
        if (!name) {
            v->www_authenticate = true;
            deny(v, 401, "%s",
                 !req->authorization ? "missing 'Authorization: Bearer TOKEN' (a token of the "
                                       "node's api_token_file)"
                 : !tok              ? "malformed Authorization header: expected 'Bearer TOKEN'"
                                     : "invalid token");
            return v->status;
        }
        snprintf(v->token, sizeof v->token, "%s", name);
    }
    /* 4. What a change may carry. */
    if (mutates) {
        for (size_t i = 0; i < sizeof body_types / sizeof body_types[0]; i++) {
            if ((body_types[i].method && strcmp(body_types[i].method, req->method) != 0) ||
                (body_types[i].path && strcmp(body_types[i].path, req->path) != 0))
                continue;
            for (const char *t = body_types[i].types; *t; t += strlen(t) + 1)
                if (req->content_type && media_type_is(req->content_type, t))
                    return 0;
            v->status = 415;
            snprintf(v->error, sizeof v->error, "%s %s needs Content-Type %s, got '%.80s'",
                     req->method, req->path, body_types[i].expected,
                     req->content_type ? req->content_type : "(none)");
            return v->status;
        }
    }
    return 0;
}
