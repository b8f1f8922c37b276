/* test_api.c — the HTTP server on a real socket: the loop runs in the main thread, a client
 * thread sends raw HTTP requests and records the replies, which are checked once the loop ends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/api.h"
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESULTS 16

typedef struct result {
    int status;
    char *headers;
    char *body;
} result;

typedef struct fixture fixture;
typedef void (*client_fn)(fixture *fx);

struct fixture {
    uv_loop_t loop;
    us_api *api;
    int port;
    uv_async_t done;
    uv_timer_t later_timer;
    us_api_req *later_req;
    uv_timer_t stop_timer;
    pthread_t thread;
    client_fn client;
    result res[MAX_RESULTS];
    int n_res;
    char posted[64]; /* body seen by the POST handler */
    size_t posted_len;
};

/* One request on a fresh connection; the whole reply is read until the server closes. */
static void http_raw(fixture *fx, const char *req, size_t len)
{
    result *res = &fx->res[fx->n_res++];
    res->status = -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)fx->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (got + 1024 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(fd);
    char *sep = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0 || !sep) {
        free(buf);
        return;
    }
    res->status = atoi(buf + 9);
    *sep = '\0';
    res->headers = strdup(buf);
    res->body = strdup(sep + 4);
    free(buf);
}

static void http(fixture *fx, const char *method, const char *target, const char *body)
{
    char req[2048];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, target, blen, body ? body : "");
    http_raw(fx, req, (size_t)n);
}

/* ---- handlers (loop thread) ---- */

static void h_hello(us_api_req *r, void *data)
{
    (void)data;
    us_api_reply_json(r, 200,
                      json_pack("{s:s, s:s}", "hello", "world", "path", us_api_req_path(r)));
}

static void h_things(us_api_req *r, void *data)
{
    us_api_reply_json(r, 200, json_pack("{s:s}", "handler", (const char *)data));
}

static void h_echo(us_api_req *r, void *data)
{
    fixture *fx = data;
    size_t len;
    const char *body = us_api_req_body(r, &len);
    fx->posted_len = len;
    snprintf(fx->posted, sizeof fx->posted, "%s", body);
    us_api_reply_text(r, 201, "text/plain", body, len);
}

static void h_query(us_api_req *r, void *data)
{
    (void)data;
    const char *a = us_api_req_query(r, "a");
    const char *b = us_api_req_query(r, "b");
    us_api_reply_json(r, 200,
                      json_pack("{s:s?, s:s?, s:b}", "a", a, "b", b, "z_missing",
                                us_api_req_query(r, "z") == NULL));
}

static void on_later(uv_timer_t *t)
{
    fixture *fx = t->data;
    us_api_reply_error(fx->later_req, 409, "late %s", "reply");
    fx->later_req = NULL;
}

static void h_later(us_api_req *r, void *data)
{
    fixture *fx = data;
    fx->later_req = r;
    uv_timer_start(&fx->later_timer, on_later, 100, 0);
}

static void on_stop_timer(uv_timer_t *t)
{
    fixture *fx = t->data;
    us_api_stop(fx->api);
    fx->api = NULL;
}

static void h_never(us_api_req *r, void *data)
{
    (void)r;
    fixture *fx = data;
    /* Never answer: stopping the server must still release the request. */
    uv_timer_start(&fx->stop_timer, on_stop_timer, 50, 0);
}

/* ---- fixture ---- */

static void on_done(uv_async_t *a)
{
    fixture *fx = a->data;
    if (fx->api) {
        us_api_stop(fx->api);
        fx->api = NULL;
    }
    uv_close((uv_handle_t *)a, NULL);
}

static void *client_main(void *arg)
{
    fixture *fx = arg;
    fx->client(fx);
    uv_async_send(&fx->done);
    return NULL;
}

static void run_with_client(fixture *fx, client_fn client)
{
    memset(fx, 0, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->port = ut_free_port();
    char addr[64], err[256] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", fx->port);
    int rc = us_api_start(&fx->loop, addr, &fx->api, err, sizeof err);
    assert_int_equal(rc, 0);
    us_api_route(fx->api, "GET", "/v1/hello", h_hello, fx);
    us_api_route(fx->api, "GET", "/v1/things/", h_things, "things");
    us_api_route(fx->api, "GET", "/v1/things/special", h_things, "special");
    us_api_route(fx->api, "POST", "/v1/echo", h_echo, fx);
    us_api_route(fx->api, "GET", "/v1/query", h_query, fx);
    us_api_route(fx->api, "GET", "/v1/later", h_later, fx);
    us_api_route(fx->api, "GET", "/v1/never", h_never, fx);
    uv_timer_init(&fx->loop, &fx->later_timer);
    uv_timer_init(&fx->loop, &fx->stop_timer);
    fx->later_timer.data = fx;
    fx->stop_timer.data = fx;
    uv_async_init(&fx->loop, &fx->done, on_done);
    fx->done.data = fx;
    fx->client = client;
    pthread_create(&fx->thread, NULL, client_main, fx);
    /* The loop ends once the client is done and the server is stopped. */
    uv_unref((uv_handle_t *)&fx->later_timer);
    uv_unref((uv_handle_t *)&fx->stop_timer);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    pthread_join(fx->thread, NULL);
    uv_close((uv_handle_t *)&fx->later_timer, NULL);
    uv_close((uv_handle_t *)&fx->stop_timer, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void free_results(fixture *fx)
{
    for (int i = 0; i < fx->n_res; i++) {
        free(fx->res[i].headers);
        free(fx->res[i].body);
    }
}

static json_t *body_json(const result *res)
{
    json_error_t e;
    json_t *j = json_loads(res->body, 0, &e);
    if (!j)
        fail_msg("reply is not JSON (%s): %s", e.text, res->body);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* ---- tests ---- */

static void client_routing(fixture *fx)
{
    http(fx, "GET", "/v1/hello", NULL);
    http(fx, "GET", "/v1/things/abc", NULL);
    http(fx, "GET", "/v1/things/special/x", NULL);
    http(fx, "GET", "/nope", NULL);
    http(fx, "POST", "/v1/hello", "x");
    http(fx, "GET", "/v1/hellothere", NULL);
}

static void test_routing(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_routing);
    assert_int_equal(fx.n_res, 6);

    assert_int_equal(fx.res[0].status, 200);
    assert_non_null(strcasestr(fx.res[0].headers, "Content-Type: application/json"));
    size_t blen = strlen(fx.res[0].body);
    assert_true(blen > 0 && fx.res[0].body[blen - 1] == '\n');
    json_t *j = body_json(&fx.res[0]);
    assert_string_equal(jstr(j, "hello"), "world");
    assert_string_equal(jstr(j, "path"), "/v1/hello");
    json_decref(j);

    j = body_json(&fx.res[1]); /* prefix route */
    assert_string_equal(jstr(j, "handler"), "things");
    json_decref(j);
    j = body_json(&fx.res[2]); /* the longest prefix wins */
    assert_string_equal(jstr(j, "handler"), "special");
    json_decref(j);

    assert_int_equal(fx.res[3].status, 404);
    j = body_json(&fx.res[3]);
    assert_non_null(strstr(jstr(j, "error"), "/nope"));
    json_decref(j);

    assert_int_equal(fx.res[4].status, 405);
    assert_non_null(strcasestr(fx.res[4].headers, "Allow: GET"));
    j = body_json(&fx.res[4]);
    assert_non_null(jstr(j, "error"));
    json_decref(j);

    /* Prefixes match whole path segments only. */
    assert_int_equal(fx.res[5].status, 404);
    free_results(&fx);
}

static void client_post(fixture *fx)
{
    http(fx, "POST", "/v1/echo", "[service web]\nrun = sleep 1\n");
    /* A body sent in chunks must arrive whole. */
    const char *chunked = "POST /v1/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"
                          "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    http_raw(fx, chunked, strlen(chunked));
    /* Declared larger than 1 MiB: refused before the body is sent. */
    const char *big = "POST /v1/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                      "Content-Length: 2000000\r\n\r\n";
    http_raw(fx, big, strlen(big));
    http(fx, "POST", "/v1/echo", NULL);
}

static void test_post_body(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_post);
    assert_int_equal(fx.n_res, 4);
    assert_int_equal(fx.res[0].status, 201);
    assert_string_equal(fx.res[0].body, "[service web]\nrun = sleep 1\n");
    assert_non_null(strcasestr(fx.res[0].headers, "Content-Type: text/plain"));
    assert_int_equal(fx.res[1].status, 201);
    assert_string_equal(fx.res[1].body, "hello world");
    assert_int_equal(fx.res[2].status, 413);
    assert_int_equal(fx.res[3].status, 201);
    assert_string_equal(fx.res[3].body, "");
    assert_int_equal(fx.posted_len, 0);
    assert_string_equal(fx.posted, "");
    free_results(&fx);
}

static void client_oversize_chunked(fixture *fx)
{
    /* No Content-Length: the limit is enforced while collecting. */
    size_t chunk = 64 * 1024, n_chunks = 20;
    size_t cap = n_chunks * (chunk + 16) + 256;
    char *req = malloc(cap);
    size_t len = (size_t)sprintf(req, "POST /v1/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < n_chunks; i++) {
        len += (size_t)sprintf(req + len, "%zx\r\n", chunk);
        memset(req + len, 'x', chunk);
        len += chunk;
        len += (size_t)sprintf(req + len, "\r\n");
    }
    len += (size_t)sprintf(req + len, "0\r\n\r\n");
    http_raw(fx, req, len);
    free(req);
}

static void test_body_limit(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_oversize_chunked);
    assert_int_equal(fx.res[0].status, 413);
    assert_int_equal(fx.posted_len, 0); /* the handler never ran */
    free_results(&fx);
}

static void client_query(fixture *fx)
{
    http(fx, "GET", "/v1/query?a=1&b=x%20y%2Fz", NULL);
    http(fx, "GET", "/v1/query", NULL);
}

static void test_query(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_query);
    assert_int_equal(fx.res[0].status, 200);
    json_t *j = body_json(&fx.res[0]);
    assert_string_equal(jstr(j, "a"), "1");
    assert_string_equal(jstr(j, "b"), "x y/z");
    assert_true(json_is_true(json_object_get(j, "z_missing")));
    json_decref(j);
    j = body_json(&fx.res[1]);
    assert_true(json_is_null(json_object_get(j, "a")));
    json_decref(j);
    free_results(&fx);
}

static void client_later(fixture *fx)
{
    http(fx, "GET", "/v1/later", NULL);
    /* The server keeps serving while a request is suspended, and afterwards. */
    http(fx, "GET", "/v1/hello", NULL);
}

static void test_delayed_reply(void **state)
{
    (void)state;
    fixture fx;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_with_client(&fx, client_later);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(fx.res[0].status, 409);
    json_t *j = body_json(&fx.res[0]);
    assert_string_equal(jstr(j, "error"), "late reply");
    json_decref(j);
    assert_int_equal(fx.res[1].status, 200);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 100);
    free_results(&fx);
}

static void client_pipelined(fixture *fx)
{
    /* Keep-alive with a suspended first request: the second must be served after it. */
    const char *two = "GET /v1/later HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /v1/hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    http_raw(fx, two, strlen(two));
}

static void test_keepalive_after_suspend(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_pipelined);
    assert_int_equal(fx.res[0].status, 409);
    /* The raw body holds the rest of the stream: the first body, then the second reply. */
    const char *second = strstr(fx.res[0].body, "HTTP/1.1 200");
    assert_non_null(second);
    assert_non_null(strstr(second, "\"hello\": \"world\""));
    free_results(&fx);
}

static void client_never(fixture *fx)
{
    http(fx, "GET", "/v1/never", NULL);
}

static void test_stop_drops_suspended(void **state)
{
    (void)state;
    fixture fx;
    run_with_client(&fx, client_never);
    /* Answered 503 on the way down; LeakSanitizer checks the request was freed. */
    assert_int_equal(fx.res[0].status, 503);
    free_results(&fx);
}

static void test_address_in_use(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char addr[64], err[256] = "", want[128];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    snprintf(want, sizeof want, "cannot listen on %s: address already in use", addr);

    uv_loop_t loop;
    uv_loop_init(&loop);
    us_api *api = (us_api *)1;
    assert_int_equal(us_api_start(&loop, addr, &api, err, sizeof err), -EADDRINUSE);
    assert_null(api);
    assert_non_null(strstr(err, want));

    assert_int_equal(us_api_start(&loop, "localhost:99999", &api, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "expected IPv4:port"));
    assert_int_equal(us_api_start(&loop, "7201", &api, err, sizeof err), -EINVAL);
    close(fd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* us_api_execute: a request without a connection (what a forwarded change becomes on the
 * leader) goes through the same routes; its reply reaches the callback, also a late one. */
typedef struct exec_result {
    int calls;
    int status;
    char type[64];
    char body[512];
} exec_result;

static void on_exec_done(int status, const char *content_type, const char *body, size_t len,
                         void *data)
{
    exec_result *x = data;
    x->calls++;
    x->status = status;
    snprintf(x->type, sizeof x->type, "%s", content_type);
    snprintf(x->body, sizeof x->body, "%.*s", (int)len, body);
}

static void on_exec_later(uv_timer_t *t)
{
    fixture *fx = t->data;
    us_api_reply_error(fx->later_req, 409, "late %s", "reply");
    fx->later_req = NULL;
    us_api_stop(fx->api);
    fx->api = NULL;
}

static void h_exec_later(us_api_req *r, void *data)
{
    fixture *fx = data;
    fx->later_req = r;
    uv_timer_start(&fx->later_timer, on_exec_later, 20, 0);
}

static void test_execute_detached(void **state)
{
    (void)state;
    fixture fx;
    memset(&fx, 0, sizeof fx);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    char addr[64], err[256] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ut_free_port());
    assert_int_equal(us_api_start(&fx.loop, addr, &fx.api, err, sizeof err), 0);
    us_api_route(fx.api, "POST", "/v1/echo", h_echo, &fx);
    us_api_route(fx.api, "GET", "/v1/query", h_query, &fx);
    us_api_route(fx.api, "POST", "/v1/later", h_exec_later, &fx);
    us_api_who who = {.token = "ops", .peer = "10.0.0.9"};

    exec_result x = {0};
    us_api_execute(fx.api, "POST", "/v1/echo?by=CLI", "application/json", "{\"a\": 1}", 8, &who,
                   on_exec_done, &x);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.status, 201);
    assert_string_equal(x.type, "text/plain");
    assert_string_equal(x.body, "{\"a\": 1}");

    memset(&x, 0, sizeof x);
    us_api_execute(fx.api, "GET", "/v1/query?a=x%20y&b=%2Fz+w", "", "", 0, NULL, on_exec_done, &x);
    assert_int_equal(x.status, 200);
    json_t *j = json_loads(x.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(jstr(j, "a"), "x y");
    assert_string_equal(jstr(j, "b"), "/z w");
    json_decref(j);

    memset(&x, 0, sizeof x);
    us_api_execute(fx.api, "POST", "/v1/nothing", "application/json", "", 0, &who, on_exec_done,
                   &x);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.status, 404);

    /* A late reply (after a commit, say) reaches the callback too. */
    memset(&x, 0, sizeof x);
    uv_timer_init(&fx.loop, &fx.later_timer);
    fx.later_timer.data = &fx;
    us_api_execute(fx.api, "POST", "/v1/later", "application/json", "", 0, &who, on_exec_done, &x);
    assert_int_equal(x.calls, 0);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.status, 409);
    assert_non_null(strstr(x.body, "late reply"));
    uv_close((uv_handle_t *)&fx.later_timer, NULL);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_post_body),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_delayed_reply),
        cmocka_unit_test(test_keepalive_after_suspend),
        cmocka_unit_test(test_stop_drops_suspended),
        cmocka_unit_test(test_address_in_use),
        cmocka_unit_test(test_execute_detached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
