/* api.h — the HTTP server of the agent: libmicrohttpd driven from the libuv loop (epoll mode,
 * one uv_poll + one uv_timer), single-threaded, so handlers read agent state without locks.
 *
 * A handler runs on the loop thread and must call exactly one us_api_reply_* for its request,
 * either before it returns or later (e.g. when a Raft apply completes): the connection is
 * suspended meanwhile. Request bodies are collected whole (limit 1 MiB) before the handler runs.
 */
#ifndef US_API_H
#define US_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "net/api_guard.h"

typedef struct us_api us_api;
typedef struct us_api_req us_api_req;

typedef void (*us_api_handler)(us_api_req *req, void *data);

/* Listen on "IPv4:port". 0 on success; -errno with a message in err ("address in use" etc.). */
int us_api_start(uv_loop_t *loop, const char *hostport, us_api **out, char *err, size_t errlen);

/* Like us_api_start, over TLS with a PEM certificate (chain) and private key given as text. */
int us_api_start_tls(uv_loop_t *loop, const char *hostport, const char *cert_pem,
                     const char *key_pem, us_api **out, char *err, size_t errlen);

/* Check every request (api_guard.h) before its handler runs: token, Host, Origin, Content-Type.
 * `cfg` is copied; what it points to (the tokens) must outlive the API. Without a guard every
 * request reaches its handler (unit tests of the HTTP layer). */
void us_api_set_guard(us_api *api, const us_guard_config *cfg);

/* Bounds: at most US_API_CONNECTIONS connections, US_API_PER_CLIENT per client address; a
 * connection idle for US_API_IDLE_S seconds is closed; request bodies up to US_API_BODY_MAX
 * (413 beyond). */
#define US_API_CONNECTIONS 64
#define US_API_PER_CLIENT 16
#define US_API_IDLE_S 5
#define US_API_BODY_MAX (1024 * 1024)

/* Route METHOD requests whose path starts with `prefix` (longest prefix wins). */
void us_api_route(us_api *api, const char *method, const char *prefix, us_api_handler h,
                  void *data);

const char *us_api_req_method(const us_api_req *r);
const char *us_api_req_path(const us_api_req *r);
const char *us_api_req_query(const us_api_req *r, const char *key); /* NULL if absent */
const char *us_api_req_body(const us_api_req *r, size_t *len);      /* "" if none */
/* The raw target as received ("/v1/x?a=b"): what a forwarded request carries. */
const char *us_api_req_target(const us_api_req *r);
const char *us_api_req_content_type(const us_api_req *r); /* "" if none */

/* Who asked: the name of the token presented ("" when none was needed or no guard runs) and
 * the client's address ("" when unknown). */
typedef struct us_api_who {
    char token[US_TOKEN_NAME_MAX];
    char peer[64];
} us_api_who;
const us_api_who *us_api_req_who(const us_api_req *r);
/* Run through us_api_execute (a forwarded request), not received on a connection. */
bool us_api_req_detached(const us_api_req *r);

/* Reply; `body` is consumed (decref'd). */
void us_api_reply_json(us_api_req *r, int status, json_t *body);
void us_api_reply_text(us_api_req *r, int status, const char *content_type, const char *body,
                       size_t len);
/* Reply with `size` bytes of the open file `fd` from `offset`, streamed (not copied into
 * memory); the fd is taken over (closed when sent). */
void us_api_reply_fd(us_api_req *r, int status, const char *content_type, int fd, off_t offset,
                     size_t size);
/* Add a header to the reply just made (call right after us_api_reply_*, in the handler). */
void us_api_reply_header(us_api_req *r, const char *name, const char *value);
/* {"error": msg} with the given status. */
void us_api_reply_error(us_api_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Run a request through the routes without a connection, e.g. a change that a follower
 * forwarded to the leader (no guard: the caller has authenticated it). `target` is
 * "/path?query" (query percent-encoded), `who` says who asked at the follower. `done` is called
 * exactly once with the reply (maybe before this returns; with 503 if the API stops first). */
typedef void (*us_api_done)(int status, const char *content_type, const char *body, size_t len,
                            void *data);
void us_api_execute(us_api *api, const char *method, const char *target, const char *content_type,
                    const char *body, size_t len, const us_api_who *who, us_api_done done,
                    void *data);

/* Stop listening, drop suspended requests, free. Call before closing the loop. */
void us_api_stop(us_api *api);

#endif
