/* api_guard.h — who may ask the API what: the checks every request passes before a handler
 * runs, as pure functions over plain structs (tests/unit/test_api_guard.c drives them without
 * sockets; api.c fills the structs from the request's headers).
 *
 * In order:
 *  1. Host: an API that listens on loopback answers only requests whose Host is a loopback name
 *     (localhost, 127.x.x.x, [::1]) or its own address, so that a web page whose DNS name is
 *     rebound to 127.0.0.1 cannot talk to it (403).
 *  2. Origin: a mutating request (POST, PUT, PATCH, DELETE) whose Origin header names another
 *     origin than the API's own (scheme://Host) is refused (403). No Origin (CLI, curl) is fine.
 *  3. Token: every request needs "Authorization: Bearer TOKEN" with a token of the node's token
 *     file (constant-time compare), except GET of the dashboard page ("/", "/index.html",
 *     "/favicon.ico"), GET /metrics unless metrics_auth, and GET of a service's role
 *     ("/v1/services/NAME/role" and ".../role/standby": load balancers' health checks; they tell
 *     only this node's role) (401 + WWW-Authenticate: Bearer).
 *  4. Content-Type: a mutating request declares application/json, or for POST /v1/services
 *     (a services file) text/x-understudy-services (415). Both are types that a browser may not
 *     send cross-site without asking first (a CORS preflight, which this API never approves).
 */
#ifndef US_API_GUARD_H
#define US_API_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/key.h"

#define US_SERVICES_TYPE "text/x-understudy-services"

/* "/v1/services/NAME/role" (standby false) or "/v1/services/NAME/role/standby" (true): NAME (a
 * non-empty path segment shorter than `size`) into name. False for anything else. They tell only
 * this node's role for a service, and load balancers' health checks (HAProxy's httpchk) ask them
 * without credentials (step 3 below). */
bool us_guard_role_path(const char *path, char *name, size_t size, bool *standby);

typedef struct us_guard_config {
    const us_tokens *tokens;
    bool metrics_auth; /* GET /metrics needs a token too */
    const char *api;   /* the listen address "IPv4:port" */
    bool tls;          /* served over https */
} us_guard_config;

typedef struct us_guard_request {
    const char *method;
    const char *path; /* without the query */
    const char *host; /* headers, NULL when absent */
    const char *origin;
    const char *authorization;
    const char *content_type;
} us_guard_request;

typedef struct us_guard_verdict {
    int status;                    /* 0: allowed; else 401, 403 or 415 */
    bool www_authenticate;         /* add "WWW-Authenticate: Bearer" (401) */
    char token[US_TOKEN_NAME_MAX]; /* the name of the token presented, "" if none needed */
    char error[256];               /* why not, for {"error": ...} */
} us_guard_verdict;

/* 0 if the request may go on (v->token names its token), else v->status. */
int us_guard_check(const us_guard_config *cfg, const us_guard_request *req, us_guard_verdict *v);

/* Do requests of this method change something (POST, PUT, PATCH, DELETE)? */
bool us_guard_mutating(const char *method);

/* Is `host` (a Host header value: name or address, optional ":port") a loopback name? */
bool us_guard_loopback_host(const char *host);

#endif
