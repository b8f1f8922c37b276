/* api.c — see api.h.
 *
 * MHD runs in "external epoll" mode: it owns an epoll fd holding the listen socket, its
 * inter-thread channel (used by MHD_resume_connection) and every connection; we watch that one fd
 * with a uv_poll and honour MHD_get_timeout with a uv_timer, calling MHD_run when either fires.
 *
 * We create the listening socket ourselves (and hand it over with MHD_OPTION_LISTEN_SOCKET): MHD
 * does not report why a bind failed, and "address in use" must be told apart from other errors.
 */
#include "api.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_LIMIT (1024 * 1024)
#define CONN_TIMEOUT_S 60

typedef struct route {
    char *method;
    char *prefix;
    size_t prefix_len;
    us_api_handler handler;
    void *data;
} route;

typedef struct qarg {
    char *key;
    char *value;
} qarg;

struct us_api_req {
    us_api *api;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    char *body; /* always NUL-terminated once dispatched */
    size_t len, cap;
    bool too_large;
    bool dispatched; /* the handler (or a built-in error reply) has run */
    bool suspended;
    bool replied;
    struct MHD_Response *resp; /* reply waiting to be queued */
    unsigned status;
    int n_query;
    qarg *query;
    us_api_req *prev, *next; /* live requests, so that stop can drop them */
};

struct us_api {
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles; /* freed when both handles have closed */
    route *routes;
    int n_routes;
    us_api_req *reqs;
    int in_run;        /* inside MHD_run: MHD must not be re-entered or stopped */
    bool kick;         /* a connection was resumed: run MHD again soon */
    bool stop_pending; /* us_api_stop was called from a handler */
    bool stopping;     /* new requests get 503 without reaching a handler */
    bool stopped;
};

static void run_mhd(us_api *api);
static void do_stop(us_api *api);

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        us_error("api: out of memory");
        abort();
    }
    return d;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        us_error("api: out of memory");
        abort();
    }
    return q;
}

/* ---- the loop side ---- */

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void run_mhd(us_api *api)
{
    if (api->stopped)
        return;
    api->in_run++;
    MHD_run(api->daemon);
    api->in_run--;
    if (api->stop_pending && api->in_run == 0) {
        do_stop(api);
        return;
    }
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (api->kick) {
        api->kick = false;
        uv_timer_start(&api->timer, on_timer, 0, 0);
    } else if (MHD_get_timeout(api->daemon, &ms) == MHD_YES) {
        uv_timer_start(&api->timer, on_timer, ms, 0);
    } else {
        uv_timer_stop(&api->timer);
    }
}

static void kick(us_api *api)
{
    api->kick = true;
    if (api->in_run == 0 && !api->stopped) {
        api->kick = false;
        uv_timer_start(&api->timer, on_timer, 0, 0);
    }
}

/* ---- requests ---- */

static us_api_req *req_new(us_api *api, struct MHD_Connection *conn, const char *method,
                           const char *path)
{
    us_api_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->api = api;
    r->conn = conn;
    r->method = xstrdup(method);
    r->path = xstrdup(path);
    r->next = api->reqs;
    if (api->reqs)
        api->reqs->prev = r;
    api->reqs = r;
    return r;
}

static void req_free(us_api_req *r)
{
    us_api *api = r->api;
    if (r->prev)
        r->prev->next = r->next;
    else
        api->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->resp)
        MHD_destroy_response(r->resp);
    for (int i = 0; i < r->n_query; i++) {
        free(r->query[i].key);
        free(r->query[i].value);
    }
    free(r->query);
    free(r->method);
    free(r->path);
    free(r->body);
    free(r);
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    us_api_req *r = cls;
    r->query = xrealloc(r->query, (size_t)(r->n_query + 1) * sizeof *r->query);
    r->query[r->n_query].key = xstrdup(key);
    r->query[r->n_query].value = xstrdup(value);
    r->n_query++;
    return MHD_YES;
}

static void body_append(us_api_req *r, const char *data, size_t n)
{
    if (r->too_large)
        return;
    if (r->len + n > BODY_LIMIT) {
        r->too_large = true;
        return;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        r->body = xrealloc(r->body, cap);
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
}

/* Store the reply; it is queued by the access handler (directly, or after resuming). */
static void set_reply(us_api_req *r, unsigned status, const char *content_type, const char *body,
                      size_t len)
{
    if (r->replied) {
        us_error("api: %s %s replied twice (second reply %u dropped)", r->method, r->path, status);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    } else {
        /* Replied without a response: the access handler closes the connection. */
        us_error("api: cannot create a response for %s %s", r->method, r->path);
    }
    r->resp = resp;
    r->status = status;
    r->replied = true;
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        kick(r->api);
    }
}

static void reply_json_plain(us_api_req *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_INDENT(2) | JSON_ENCODE_ANY) : xstrdup("null");
    json_decref(body);
    if (!text) {
        static const char oops[] = "{\"error\": \"cannot encode the reply\"}\n";
        set_reply(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", oops, sizeof oops - 1);
        return;
    }
    size_t n = strlen(text);
    char *line = xrealloc(text, n + 2);
    line[n] = '\n';
    line[n + 1] = '\0';
    set_reply(r, status, "application/json", line, n + 1);
    free(line);
}

static const route *find_route(const us_api *api, const char *method, const char *path,
                               bool *path_known)
{
    const route *best = NULL;
    *path_known = false;
    size_t plen = strlen(path);
    for (int i = 0; i < api->n_routes; i++) {
        const route *rt = &api->routes[i];
        /* Match on segment boundaries so that "/v1/status" does not serve "/v1/statusx". */
        if (plen < rt->prefix_len || memcmp(path, rt->prefix, rt->prefix_len) != 0)
            continue;
        if (plen > rt->prefix_len && rt->prefix_len > 0 && rt->prefix[rt->prefix_len - 1] != '/' &&
            path[rt->prefix_len] != '/')
            continue;
        *path_known = true;
        if (strcmp(rt->method, method) != 0)
            continue;
        if (!best || rt->prefix_len > best->prefix_len)
            best = rt;
    }
    return best;
}

static void allowed_methods(const us_api *api, const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < api->n_routes; i++) {
        const route *rt = &api->routes[i];
        bool known;
        if (find_route(api, rt->method, path, &known) != rt)
            continue;
        if (strstr(buf, rt->method))
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", used ? ", " : "", rt->method);
    }
}

static void dispatch(us_api *api, us_api_req *r)
{
    r->dispatched = true;
    if (!r->body)
        r->body = xstrdup("");
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_query, r);
    if (r->too_large) {
        us_api_reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %d bytes",
                           BODY_LIMIT);
        return;
    }
    if (api->stopping) {
        us_api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the agent is shutting down");
        return;
    }
    bool known;
    const route *rt = find_route(api, r->method, r->path, &known);
    if (!rt) {
        if (!known) {
            us_api_reply_error(r, MHD_HTTP_NOT_FOUND, "no such endpoint: %s", r->path);
            return;
        }
        char allow[128];
        allowed_methods(api, r->path, allow, sizeof allow);
        us_api_reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s is not allowed on %s (allowed: %s)",
                           r->method, r->path, allow);
        if (r->resp)
            MHD_add_response_header(r->resp, MHD_HTTP_HEADER_ALLOW, allow);
        return;
    }
    rt->handler(r, rt->data);
}

static enum MHD_Result queue_reply(us_api_req *r)
{
    us_debug("api: %s %s -> %u", r->method, r->path, r->status);
    enum MHD_Result ok = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ok;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    us_api *api = cls;
    us_api_req *r = *con_cls;
    if (!r) {
        r = req_new(api, conn, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        /* Refuse a declared oversize body before it is sent. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > BODY_LIMIT) {
            r->too_large = true;
            dispatch(api, r);
            return queue_reply(r);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        body_append(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!r->dispatched)
        dispatch(api, r);
    if (r->resp)
        return queue_reply(r);
    if (r->replied) /* the response could not be built */
        return MHD_NO;
    /* The handler answers later: park the connection until it does. */
    r->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    us_api_req *r = *con_cls;
    if (r)
        req_free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    us_warn("api: %s", msg);
}

/* ---- public ---- */

static int parse_hostport(const char *hostport, struct sockaddr_in *sa)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || colon - hostport >= 64)
        return -1;
    char host[64];
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

static int listen_on(const char *hostport, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (parse_hostport(hostport, &sa) != 0) {
        snprintf(err, errlen, "invalid API address \"%s\": expected IPv4:PORT, e.g. 127.0.0.1:7201",
                 hostport);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create the API socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    /* A restarted agent must not be locked out by connections in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            snprintf(err, errlen, "address %s already in use", hostport);
        else
            snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(e));
        return -e;
    }
    return fd;
}

int us_api_start(uv_loop_t *loop, const char *hostport, us_api **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = listen_on(hostport, err, errlen);
    if (fd < 0)
        return fd;
    us_api *api = calloc(1, sizeof *api);
    if (!api) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    api->loop = loop;
    api->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_access, api,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)CONN_TIMEOUT_S, MHD_OPTION_END);
    if (!api->daemon) {
        close(fd);
        free(api);
        snprintf(err, errlen, "cannot start the HTTP server on %s", hostport);
        return -EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = info ? uv_poll_init(loop, &api->poll, info->epoll_fd) : UV_EINVAL;
    if (rc != 0) {
        MHD_stop_daemon(api->daemon); /* closes fd */
        free(api);
        snprintf(err, errlen, "cannot watch the HTTP server: %s", uv_strerror(rc));
        return rc;
    }
    uv_timer_init(loop, &api->timer);
    api->poll.data = api;
    api->timer.data = api;
    api->open_handles = 2;
    uv_poll_start(&api->poll, UV_READABLE, on_poll);
    *out = api;
    return 0;
}

void us_api_route(us_api *api, const char *method, const char *prefix, us_api_handler h, void *data)
{
    api->routes = xrealloc(api->routes, (size_t)(api->n_routes + 1) * sizeof *api->routes);
    route *rt = &api->routes[api->n_routes++];
    rt->method = xstrdup(method);
    rt->prefix = xstrdup(prefix);
    rt->prefix_len = strlen(prefix);
    rt->handler = h;
    rt->data = data;
}

const char *us_api_req_method(const us_api_req *r)
{
    return r->method;
}

const char *us_api_req_path(const us_api_req *r)
{
    return r->path;
}

const char *us_api_req_query(const us_api_req *r, const char *key)
{
    for (int i = 0; i < r->n_query; i++)
        if (strcmp(r->query[i].key, key) == 0)
            return r->query[i].value;
    return NULL;
}

const char *us_api_req_body(const us_api_req *r, size_t *len)
{
    if (len)
        *len = r->len;
    return r->body ? r->body : "";
}

void us_api_reply_json(us_api_req *r, int status, json_t *body)
{
    reply_json_plain(r, (unsigned)status, body);
}

void us_api_reply_text(us_api_req *r, int status, const char *content_type, const char *body,
                       size_t len)
{
    set_reply(r, (unsigned)status, content_type ? content_type : "text/plain; charset=utf-8",
              body ? body : "", body ? len : 0);
}

void us_api_reply_error(us_api_req *r, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    reply_json_plain(r, (unsigned)status, json_pack("{s:s}", "error", msg));
}

static void on_handle_closed(uv_handle_t *h)
{
    us_api *api = h->data;
    if (--api->open_handles == 0)
        free(api);
}

static void do_stop(us_api *api)
{
    api->stop_pending = false;
    api->stopping = true;
    /* MHD refuses to stop with suspended connections: answer them first. */
    bool resumed = false;
    for (us_api_req *r = api->reqs; r; r = r->next) {
        if (r->suspended && !r->replied) {
            us_api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the agent is shutting down");
            resumed = true;
        }
    }
    /* Give the resumed connections a chance to send their 503 before the sockets close. */
    api->in_run++;
    for (int i = 0; resumed && i < 3; i++)
        MHD_run(api->daemon);
    api->in_run--;
    api->stopped = true;
    /* uv_close stops polling the epoll fd before MHD closes it. */
    uv_close((uv_handle_t *)&api->poll, on_handle_closed);
    uv_close((uv_handle_t *)&api->timer, on_handle_closed);
    MHD_stop_daemon(api->daemon); /* completes (and frees) every remaining request */
    api->daemon = NULL;
    while (api->reqs)
        req_free(api->reqs);
    for (int i = 0; i < api->n_routes; i++) {
        free(api->routes[i].method);
        free(api->routes[i].prefix);
    }
    free(api->routes);
    api->routes = NULL;
    api->n_routes = 0;
}

void us_api_stop(us_api *api)
{
    if (!api || api->stopping || api->stopped || api->stop_pending)
        return;
    if (api->in_run) {
        /* Called from a handler: MHD cannot be stopped from inside MHD_run. */
        api->stop_pending = true;
        return;
    }
    do_stop(api);
}
