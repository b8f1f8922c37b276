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
#include <stddef.h>
#include <uv.h>

typedef struct us_api us_api;
typedef struct us_api_req us_api_req;

typedef void (*us_api_handler)(us_api_req *req, void *data);

/* Listen on "IPv4:port". 0 on success; -errno with a message in err ("address in use" etc.). */
int us_api_start(uv_loop_t *loop, const char *hostport, us_api **out, char *err, size_t errlen);

/* Route METHOD requests whose path starts with `prefix` (longest prefix wins). */
void us_api_route(us_api *api, const char *method, const char *prefix, us_api_handler h,
                  void *data);

const char *us_api_req_method(const us_api_req *r);
const char *us_api_req_path(const us_api_req *r);
const char *us_api_req_query(const us_api_req *r, const char *key); /* NULL if absent */
const char *us_api_req_body(const us_api_req *r, size_t *len);      /* "" if none */

/* Reply; `body` is consumed (decref'd). */
void us_api_reply_json(us_api_req *r, int status, json_t *body);
void us_api_reply_text(us_api_req *r, int status, const char *content_type, const char *body,
                       size_t len);
/* {"error": msg} with the given status. */
void us_api_reply_error(us_api_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Stop listening, drop suspended requests, free. Call before closing the loop. */
void us_api_stop(us_api *api);

#endif
