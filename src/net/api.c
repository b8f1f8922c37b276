/* api.c — see api.h.
 *
 * MHD runs in "external epoll" mode: it owns an epoll fd holding the listen socket, its
 * inter-thread channel (used by MHD_resume_connection) and every connection; we watch that one fd
 * with a uv_poll and honour MHD_get_timeout with a uv_timer, calling MHD_run when either fires.
 *
 * We create the listening socket ourselves (and hand it over with MHD_OPTION_LISTEN_SOCKET): MHD
 * does not report why a bind failed, and "address in use" must be told apart from other errors.
 */
#include "net/api.h"

#include "lib/listen.h"
#include "lib/log.h"

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

#define BODY_LIMIT US_API_BODY_MAX
#define DETACHED_FILE_MAX (4 << 20) /* us_api_reply_fd without a connection reads this much */

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
    struct MHD_Connection *conn; /* NULL: detached (us_api_execute) */
    char *method;
    char *path;
    char *target;       /* path and query as received */
    char *content_type; /* "" if none */
    us_api_who who;
    /* Detached requests: where the reply goes, and the reply kept until the handler returns. */
    us_api_done done;
    void *done_data;
    bool in_handler;
    bool executing; /* inside us_api_execute: it delivers the reply itself */
    char *d_body;
    size_t d_len;
    char *d_type;
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
    int n_conns;            /* open connections (MHD_OPTION_NOTIFY_CONNECTION) */
    int64_t refused_logged; /* connections refused since the last log line */
    bool guarded;
    us_guard_config guard;
    char guard_api[64];
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
    r->target = xstrdup(path);
    r->content_type = xstrdup("");
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
    free(r->target);
    free(r->content_type);
    free(r->d_body);
    free(r->d_type);
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

/* A detached request's reply goes to its callback; then the request is freed. */
static void detached_deliver(us_api_req *r)
{
    us_api_done done = r->done;
    r->done = NULL;
    if (done)
        done((int)r->status, r->d_type ? r->d_type : "", r->d_body ? r->d_body : "", r->d_len,
             r->done_data);
    req_free(r);
}

/* Store the reply; it is queued by the access handler (directly, or after resuming). */
static void set_reply(us_api_req *r, unsigned status, const char *content_type, const char *body,
                      size_t len)
{
    if (r->replied) {
        us_error("api: %s %s replied twice (second reply %u dropped)", r->method, r->path, status);
        return;
    }
    if (!r->conn) {
        r->replied = true;
        r->status = status;
        r->d_type = xstrdup(content_type);
        r->d_body = xrealloc(NULL, len + 1);
        memcpy(r->d_body, body, len);
        r->d_body[len] = '\0';
        r->d_len = len;
        if (!r->in_handler && !r->executing)
            detached_deliver(r);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
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

/* Append s percent-encoded (all but unreserved characters) at *w. */
static char *pct_encode(char *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            *w++ = (char)ch;
        } else {
            *w++ = '%';
            *w++ = hex[ch >> 4];
            *w++ = hex[ch & 15];
        }
    }
    return w;
}

/* libmicrohttpd hands over the path without its query: put the (decoded) arguments back,
 * encoded, so that the target a forwarded request carries has them. */
static void rebuild_target(us_api_req *r)
{
    size_t n = strlen(r->path) + 2;
    for (int i = 0; i < r->n_query; i++)
        n += 3 * (strlen(r->query[i].key) + strlen(r->query[i].value)) + 2;
    char *t = xrealloc(r->target, n);
    char *w = t + strlen(strcpy(t, r->path));
    for (int i = 0; i < r->n_query; i++) {
        *w++ = i ? '&' : '?';
        w = pct_encode(w, r->query[i].key);
        *w++ = '=';
        w = pct_encode(w, r->query[i].value);
    }
    *w = '\0';
    r->target = t;
}

static void dispatch(us_api *api, us_api_req *r)
{
    r->dispatched = true;
    if (!r->body)
        r->body = xstrdup("");
    if (r->conn) {
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_query, r);
        rebuild_target(r);
    }
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
    r->in_handler = true;
    rt->handler(r, rt->data);
    r->in_handler = false;
    /* (A detached request replied in its handler is delivered by us_api_execute.) */
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* Who is asking from where, and may they (api_guard.h)? false with the refusal as the reply. */
static bool admit(us_api *api, us_api_req *r)
{
    const char *ct = header(r->conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    free(r->content_type);
    r->content_type = xstrdup(ct ? ct : "");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                      r->who.peer, sizeof r->who.peer);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      r->who.peer, sizeof r->who.peer);
    }
    if (!api->guarded)
        return true;
    us_guard_request g = {
        .method = r->method,
        .path = r->path,
        .host = header(r->conn, MHD_HTTP_HEADER_HOST),
        .origin = header(r->conn, "Origin"),
        .authorization = header(r->conn, MHD_HTTP_HEADER_AUTHORIZATION),
        .content_type = ct,
    };
    us_guard_verdict v;
    if (us_guard_check(&api->guard, &g, &v) == 0) {
        memcpy(r->who.token, v.token, sizeof r->who.token);
        return true;
    }
    us_info("api: %s %s from %s refused (%d): %s", r->method, r->path,
            r->who.peer[0] ? r->who.peer : "?", v.status, v.error);
    r->dispatched = true;
    if (!r->body)
        r->body = xstrdup("");
    us_api_reply_error(r, v.status, "%s", v.error);
    if (v.www_authenticate)
        us_api_reply_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"understudy\"");
    return false;
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
        /* Refuse a stranger before reading what it sends. */
        if (!admit(api, r))
            return queue_reply(r);
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

/* Beyond US_API_CONNECTIONS a new connection is accepted and closed at once, so that a client
 * learns right away instead of waiting in the listen backlog. (MHD's own connection limit stops
 * accepting instead; it stays set a little higher, as a backstop.) */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    us_api *api = cls;
    if (api->n_conns < US_API_CONNECTIONS)
        return MHD_YES;
    if (api->refused_logged++ % 100 == 0)
        us_warn("api: %d connections open: refusing new ones (%lld refused so far)", api->n_conns,
                (long long)api->refused_logged);
    return MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_context;
    us_api *api = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        api->n_conns++;
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && api->n_conns > 0)
        api->n_conns--;
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

static int start(uv_loop_t *loop, const char *hostport, const char *cert, const char *key,
                 us_api **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cert && !MHD_is_feature_supported(MHD_FEATURE_TLS)) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS support");
        return -ENOTSUP;
    }
    int fd = us_tcp_listen(hostport, 64, 0, err, errlen);
    if (fd < 0)
        return fd;
    us_api *api = calloc(1, sizeof *api);
    if (!api) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    api->loop = loop;
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls[] = {
        {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
        {MHD_OPTION_END, 0, NULL},
    };
    if (cert)
        flags |= MHD_USE_TLS;
    api->daemon = MHD_start_daemon(
        flags, 0, accept_policy, api, on_access, api, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)US_API_IDLE_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)US_API_CONNECTIONS + 8, MHD_OPTION_NOTIFY_CONNECTION, on_connection, api,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)US_API_PER_CLIENT, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (!api->daemon) {
        close(fd);
        free(api);
        snprintf(err, errlen, "cannot start the HTTP server on %s%s", hostport,
                 cert ? " (check api_tls_cert and api_tls_key: PEM certificate and key)" : "");
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

int us_api_start(uv_loop_t *loop, const char *hostport, us_api **out, char *err, size_t errlen)
{
    return start(loop, hostport, NULL, NULL, out, err, errlen);
}

int us_api_start_tls(uv_loop_t *loop, const char *hostport, const char *cert_pem,
                     const char *key_pem, us_api **out, char *err, size_t errlen)
{
    return start(loop, hostport, cert_pem, key_pem, out, err, errlen);
}

void us_api_set_guard(us_api *api, const us_guard_config *cfg)
{
    api->guard = *cfg;
    snprintf(api->guard_api, sizeof api->guard_api, "%s", cfg->api ? cfg->api : "");
    api->guard.api = api->guard_api;
    api->guarded = true;
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

const char *us_api_req_target(const us_api_req *r)
{
    return r->target;
}

const char *us_api_req_content_type(const us_api_req *r)
{
    return r->content_type;
}

bool us_api_req_detached(const us_api_req *r)
{
    return r->conn == NULL;
}

const us_api_who *us_api_req_who(const us_api_req *r)
{
    return &r->who;
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

void us_api_reply_fd(us_api_req *r, int status, const char *content_type, int fd, off_t offset,
                     size_t size)
{
    if (r->replied) {
        close(fd);
        set_reply(r, (unsigned)status, content_type, "", 0); /* logs the double reply */
        return;
    }
    if (!r->conn || r->suspended) {
        /* No connection to stream to (or one parked: keep it simple): read it. */
        size_t n = size > DETACHED_FILE_MAX ? DETACHED_FILE_MAX : size;
        char *buf = xrealloc(NULL, n + 1);
        ssize_t got = pread(fd, buf, n, offset + (off_t)(size - n));
        close(fd);
        set_reply(r, (unsigned)status, content_type, buf, got > 0 ? (size_t)got : 0);
        free(buf);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(size, fd, (uint64_t)offset);
    if (!resp) {
        close(fd);
        us_api_reply_error(r, 500, "cannot send the file");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    r->resp = resp;
    r->status = (unsigned)status;
    r->replied = true;
}

void us_api_reply_header(us_api_req *r, const char *name, const char *value)
{
    if (r->resp)
        MHD_add_response_header(r->resp, name, value);
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

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode (and '+' as space, as in a query) in place. */
static void url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            *o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else {
            *o++ = *p == '+' ? ' ' : *p;
        }
    }
    *o = '\0';
}

void us_api_execute(us_api *api, const char *method, const char *target, const char *content_type,
                    const char *body, size_t len, const us_api_who *who, us_api_done done,
                    void *data)
{
    char *t = xstrdup(target);
    char *q = strchr(t, '?');
    if (q)
        *q++ = '\0';
    url_decode(t);
    us_api_req *r = req_new(api, NULL, method, t);
    free(r->target);
    r->target = xstrdup(target);
    free(r->content_type);
    r->content_type = xstrdup(content_type ? content_type : "");
    if (who)
        r->who = *who;
    r->done = done;
    r->done_data = data;
    for (char *kv = q; kv && *kv;) {
        char *amp = strchr(kv, '&');
        if (amp)
            *amp = '\0';
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = '\0';
        url_decode(kv);
        if (eq)
            url_decode(eq + 1);
        collect_query(r, MHD_GET_ARGUMENT_KIND, kv, eq ? eq + 1 : "");
        kv = amp ? amp + 1 : NULL;
    }
    free(t);
    if (len > BODY_LIMIT)
        r->too_large = true;
    else
        body_append(r, body, len);
    r->executing = true;
    dispatch(api, r); /* answers 503 if the API is stopping */
    r->executing = false;
    if (r->replied)
        detached_deliver(r);
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
    /* Detached requests still waiting are answered (and freed) first. */
    for (bool again = true; again;) {
        again = false;
        for (us_api_req *r = api->reqs; r; r = r->next)
            if (!r->conn && !r->replied) {
                us_api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the agent is shutting down");
                again = true; /* the list changed */
                break;
            }
    }
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
