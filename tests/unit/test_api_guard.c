/* test_api_guard.c — the API's request checks (api_guard.h) and token files (key.h), as pure
 * functions over plain structs: no sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/api_guard.h"
#include "lib/key.h"

#include <stdio.h>
#include <errno.h>
#include <string.h>

#define TOK_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define TOK_B "fedcba9876543210fedcba9876543210"

static us_tokens tokens;

static void load_tokens(void)
{
    static const char text[] = "# tokens\nops " TOK_A "\n\n  " TOK_B "  \n";
    char err[256] = "";
    int rc = us_tokens_parse(text, sizeof text - 1, "t.token", &tokens, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
}

static us_guard_config cfg(bool metrics_auth)
{
    return (us_guard_config){
        .tokens = &tokens, .metrics_auth = metrics_auth, .api = "127.0.0.1:7201", .tls = false};
}

static int check(const us_guard_config *c, const char *method, const char *path, const char *auth,
                 const char *ctype, const char *origin, const char *host, us_guard_verdict *v)
{
    us_guard_request r = {.method = method,
                          .path = path,
                          .host = host,
                          .origin = origin,
                          .authorization = auth,
                          .content_type = ctype};
    return us_guard_check(c, &r, v);
}

static void test_token_file_format(void **state)
{
    (void)state;
    load_tokens();
    assert_int_equal(tokens.n, 2);
    assert_string_equal(tokens.t[0].name, "ops");
    assert_string_equal(tokens.t[1].name, "token2");
    assert_string_equal(us_tokens_match(&tokens, TOK_A, strlen(TOK_A)), "ops");
    assert_string_equal(us_tokens_match(&tokens, TOK_B, strlen(TOK_B)), "token2");
    assert_null(us_tokens_match(&tokens, TOK_A, strlen(TOK_A) - 1)); /* a prefix is no match */
    assert_null(us_tokens_match(&tokens, TOK_B "0", strlen(TOK_B) + 1));
    assert_null(us_tokens_match(&tokens, "", 0));

    static const struct {
        const char *text;
        const char *want; /* in the message */
    } bad[] = {
        {"", "holds no token"},
        {"# only a comment\n", "keygen --token"},
        {"short\n", "t.token:1: expected a token of 32 to 128"},
        {"\n\nops " TOK_A " extra\n", "t.token:3:"},
        {"bad!name " TOK_A "\n", "t.token:1: expected NAME TOKEN or TOKEN"},
        {TOK_A "\n" TOK_A "\n", "t.token:2: the same token twice"},
        {"a " TOK_A "\na " TOK_B "\n", "t.token:2: the name 'a' twice"},
        {"tok" TOK_A "\xff\n", "t.token:1:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        us_tokens t;
        char err[512] = "";
        assert_int_equal(
            us_tokens_parse(bad[i].text, strlen(bad[i].text), "t.token", &t, err, sizeof err),
            -EINVAL);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' does not contain '%s'", i, err, bad[i].want);
    }
}

static void test_token_required(void **state)
{
    (void)state;
    load_tokens();
    us_guard_config c = cfg(false);
    us_guard_verdict v;
    assert_int_equal(check(&c, "GET", "/v1/status", NULL, NULL, NULL, "127.0.0.1:7201", &v), 401);
    assert_true(v.www_authenticate);
    assert_non_null(strstr(v.error, "Authorization: Bearer"));
    assert_int_equal(check(&c, "GET", "/v1/status", "Bearer " TOK_B "x", NULL, NULL, NULL, &v),
                     401);
    assert_string_equal(v.error, "invalid token");
    assert_int_equal(check(&c, "GET", "/v1/status", "Basic " TOK_A, NULL, NULL, NULL, &v), 401);
    assert_non_null(strstr(v.error, "malformed"));
    assert_int_equal(check(&c, "GET", "/v1/status", "bearer  " TOK_A, NULL, NULL, NULL, &v), 0);
    assert_string_equal(v.token, "ops");
    /* The dashboard page and, without metrics_auth, /metrics are open. */
    assert_int_equal(check(&c, "GET", "/", NULL, NULL, NULL, NULL, &v), 0);
    assert_string_equal(v.token, "");
    assert_int_equal(check(&c, "GET", "/favicon.ico", NULL, NULL, NULL, NULL, &v), 0);
    assert_int_equal(check(&c, "GET", "/metrics", NULL, NULL, NULL, NULL, &v), 0);
    assert_int_equal(check(&c, "POST", "/", NULL, "application/json", NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/metrics/x", NULL, NULL, NULL, NULL, &v), 401);
    us_guard_config m = cfg(true);
    assert_int_equal(check(&m, "GET", "/metrics", NULL, NULL, NULL, NULL, &v), 401);
    assert_int_equal(check(&m, "GET", "/metrics", "Bearer " TOK_B, NULL, NULL, NULL, &v), 0);
    assert_string_equal(v.token, "token2");
    /* A service's role (load balancers' health checks) is open; nothing else under it. */
    assert_int_equal(check(&c, "GET", "/v1/services/db/role", NULL, NULL, NULL, NULL, &v), 0);
    assert_int_equal(check(&c, "GET", "/v1/services/db/role/standby", NULL, NULL, NULL, NULL, &v),
                     0);
    assert_int_equal(
        check(&c, "POST", "/v1/services/db/role", NULL, "application/json", NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/v1/services/db/log", NULL, NULL, NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/v1/services//role", NULL, NULL, NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/v1/services/db/role/x", NULL, NULL, NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/v1/services/a/b/role", NULL, NULL, NULL, NULL, &v), 401);
    assert_int_equal(check(&c, "GET", "/v1/services/db/roles", NULL, NULL, NULL, NULL, &v), 401);
    /* The one parser of those paths (the agent's handler uses it too): the name, bounded. */
    char name[8];
    bool standby = true;
    assert_true(us_guard_role_path("/v1/services/db/role", name, sizeof name, &standby));
    assert_string_equal(name, "db");
    assert_false(standby);
    assert_true(us_guard_role_path("/v1/services/web-1/role/standby", name, sizeof name, &standby));
    assert_string_equal(name, "web-1");
    assert_true(standby);
    assert_false(us_guard_role_path("/v1/services/abcdefgh/role", name, sizeof name, &standby));
    assert_true(us_guard_role_path("/v1/services/abcdefg/role", name, sizeof name, &standby));
    assert_false(us_guard_role_path("/v1/services/db/role/", name, sizeof name, &standby));
    assert_false(us_guard_role_path("/v2/services/db/role", name, sizeof name, &standby));
    assert_false(us_guard_role_path("/v1/services/db", name, sizeof name, &standby));
}

static void test_origin_and_content_type(void **state)
{
    (void)state;
    load_tokens();
    us_guard_config c = cfg(false);
    us_guard_verdict v;
    const char *auth = "Bearer " TOK_A;
    const char *post = "/v1/services/web/switchover";
    assert_int_equal(check(&c, "POST", post, auth, "application/json", NULL, NULL, &v), 0);
    assert_int_equal(
        check(&c, "POST", post, auth, "Application/JSON; charset=utf-8", NULL, NULL, &v), 0);
    /* Another origin, even with a good token. */
    assert_int_equal(check(&c, "POST", post, auth, "application/json", "http://evil.example",
                           "127.0.0.1:7201", &v),
                     403);
    assert_non_null(strstr(v.error, "evil.example"));
    assert_int_equal(
        check(&c, "POST", post, auth, "application/json", "null", "127.0.0.1:7201", &v), 403);
    assert_int_equal(check(&c, "POST", post, auth, "application/json", "https://127.0.0.1:7201",
                           "127.0.0.1:7201", &v),
                     403); /* another scheme is another origin */
    /* The API's own origin (the dashboard). */
    assert_int_equal(check(&c, "POST", post, auth, "application/json", "http://127.0.0.1:7201",
                           "127.0.0.1:7201", &v),
                     0);
    assert_int_equal(check(&c, "POST", post, auth, "application/json", "http://localhost:7201",
                           "localhost:7201", &v),
                     0);
    /* Reads may come from anywhere that has the token (Origin is about changes). */
    assert_int_equal(check(&c, "GET", "/v1/status", auth, NULL, "http://evil.example", NULL, &v),
                     0);
    /* Content types: JSON for changes, the services type for POST /v1/services. */
    static const struct {
        const char *method, *path, *ctype;
        int want;
    } ct[] = {
        {"POST", "/v1/services/web/pause", NULL, 415},
        {"POST", "/v1/services/web/pause", "text/plain", 415},
        {"POST", "/v1/services/web/pause", "application/x-www-form-urlencoded", 415},
        {"POST", "/v1/services/web/pause", "multipart/form-data; boundary=x", 415},
        {"POST", "/v1/services/web/pause", "application/jsonx", 415},
        {"DELETE", "/v1/nodes/n2", "text/plain", 415},
        {"POST", "/v1/services", "application/json", 415},
        {"POST", "/v1/services", "text/plain; charset=utf-8", 415},
        {"POST", "/v1/services", US_SERVICES_TYPE "; charset=utf-8", 0},
        {"POST", "/v1/nodes/n2/drain", " application/json ", 0},
    };
    for (size_t i = 0; i < sizeof ct / sizeof ct[0]; i++) {
        int got = check(&c, ct[i].method, ct[i].path, auth, ct[i].ctype, NULL, NULL, &v);
        if (got != ct[i].want)
            fail_msg("%s %s with '%s': %d, expected %d (%s)", ct[i].method, ct[i].path,
                     ct[i].ctype ? ct[i].ctype : "(none)", got, ct[i].want, v.error);
        if (got == 415 && !strstr(v.error, "Content-Type"))
            fail_msg("415 without a reason: %s", v.error);
    }
}

static void test_host(void **state)
{
    (void)state;
    load_tokens();
    us_guard_config c = cfg(false);
    us_guard_verdict v;
    const char *auth = "Bearer " TOK_A;
    static const struct {
        const char *host;
        int want;
    } hosts[] = {
        {"127.0.0.1:7201", 0},   {"localhost:7201", 0},
        {"LOCALHOST", 0},        {"[::1]:7201", 0},
        {"127.1.2.3", 0},        {"evil.example:7201", 403},
        {"127.0.0.1.evil", 403}, {"localhost.evil.example", 403},
        {"10.0.0.1:7201", 403},  {"", 403},
    };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        int got = check(&c, "GET", "/v1/status", auth, NULL, NULL, hosts[i].host, &v);
        if (got != hosts[i].want)
            fail_msg("Host '%s': %d, expected %d", hosts[i].host, got, hosts[i].want);
    }
    /* Even the open page: a rebound name must not read it either. */
    assert_int_equal(check(&c, "GET", "/", NULL, NULL, NULL, "evil.example", &v), 403);
    /* An API not on loopback (with TLS) is reached under any name. */
    us_guard_config pub = {.tokens = &tokens, .api = "10.0.0.1:7201", .tls = true};
    assert_int_equal(check(&pub, "GET", "/v1/status", auth, NULL, NULL, "ha.example:7201", &v), 0);
    assert_int_equal(check(&pub, "POST", "/v1/services/x/pause", auth, "application/json",
                           "https://ha.example:7201", "ha.example:7201", &v),
                     0);
    assert_int_equal(check(&pub, "POST", "/v1/services/x/pause", auth, "application/json",
                           "http://ha.example:7201", "ha.example:7201", &v),
                     403);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_file_format),
        cmocka_unit_test(test_token_required),
        cmocka_unit_test(test_origin_and_content_type),
        cmocka_unit_test(test_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
