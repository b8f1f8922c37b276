/* fuzz_api.c — the agent's HTTP API without sockets: the request as libmicrohttpd hands it over
 * (method, path, decoded query arguments, body) goes through api.c's dispatch (route matching on
 * segment boundaries, longest prefix, 404 / 405 with Allow) to the agent's handlers of
 * agent_api.c. Covered handlers: POST /v1/services (the body: a services file, and file= / by=),
 * POST /v1/services/NAME/ACTION, POST /v1/nodes/NAME/ACTION (path splitting, by=), GET /v1/events
 * (after= / limit= / service= / node= over a populated event history), GET /v1/version and the
 * dashboard page. GET /v1/status, /metrics and /v1/services/NAME/log answer from a stub here
 * (they read the live agent or files, not the request). The fake agent is not the Raft leader,
 * so changes end at require_leader's 503; nothing is proposed.
 * libmicrohttpd's own HTTP parsing (request line, headers, chunked uploads) is not covered.
 *
 * The static functions are reached by compiling src/net/api.c and src/agent/agent_api.c into this
 * harness (the Makefile leaves their objects out of its link): neither file needs an entry point.
 *
 * Input: "METHOD TARGET\n" then the body; TARGET is PATH[?k=v&k=v...] (no percent-decoding:
 * MHD hands the handlers decoded strings, which may hold any byte but NUL). */
#include "fuzz.h"

#include "net/api.c"

#include "agent/agent_api.c"

static us_agent *agent;
static us_api *api;

static void h_stub(us_api_req *r, void *data)
{
    (void)data;
    us_api_reply_text(r, 200, "text/plain", "stub\n", 5);
}

static void seed_state(us_state *s)
{
    for (int i = 1; i <= 3; i++) {
        us_node n = {0};
        snprintf(n.name, sizeof n.name, "n%d", i);
        n.id = us_node_id(n.name);
        snprintf(n.address, sizeof n.address, "10.0.0.%d:7200", i);
        snprintf(n.api, sizeof n.api, "10.0.0.%d:7201", i);
        n.voter = true;
        n.incarnation = (uint64_t)i;
        json_t *c = us_cmd_stamp(us_cmd_node_up(&n), 1000 * i, "joined");
        FUZZ_CHECK(us_state_apply(s, c) == US_APPLY_OK);
        json_decref(c);
    }
    static const char svc[] = "[service web]\nrun = sleep 1000\n[service db]\nrun = sleep 1\n";
    static us_service_set set;
    static us_errors err;
    FUZZ_CHECK(us_config_parse_services(svc, sizeof svc - 1, "seed", &set, &err) == 0);
    json_t *c = us_cmd_stamp(us_cmd_services(&set), 5000, "services applied by CLI");
    FUZZ_CHECK(us_state_apply(s, c) == US_APPLY_OK);
    json_decref(c);
    for (int i = 0; i < 300; i++) { /* more events than are kept */
        us_event e = {.time_ms = 6000 + i, .kind = "health"};
        strcpy(e.service, i % 2 ? "web" : "db");
        snprintf(e.node, sizeof e.node, "n%d", 1 + i % 3);
        strcpy(e.from, "healthy");
        strcpy(e.to, "unhealthy");
        c = us_cmd_event(&e);
        us_state_apply(s, c);
        json_decref(c);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    agent = calloc(1, sizeof *agent);
    api = calloc(1, sizeof *api);
    FUZZ_CHECK(agent && api);
    agent->api = api;
    strcpy(agent->cfg.name, "n1");
    strcpy(agent->cfg.cluster_name, "fuzz");
    us_fsm_init(&agent->fsm, NULL, NULL);
    FUZZ_CHECK(us_state_set_events_max(&agent->fsm.state, 256) == 0);
    seed_state(&agent->fsm.state);
    us_agent_api_routes(agent); /* the real route table */
    for (int i = 0; i < api->n_routes; i++) {
        route *rt = &api->routes[i];
        if (rt->handler == h_status || rt->handler == us_metrics_http ||
            rt->handler == h_service_get)
            rt->handler = h_stub;
    }
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    FUZZ_CHECK(d != NULL);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int n_done, done_status;

static void on_done(int status, const char *content_type, const char *body, size_t len, void *data)
{
    (void)data;
    n_done++;
    done_status = status;
    FUZZ_CHECK(content_type != NULL);
    FUZZ_CHECK(body != NULL || len == 0);
}

/* A request as a follower forwards it (us_api_execute: no connection, the guard already passed),
 * through the real routes and handlers. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    size_t line_len = nl ? (size_t)(nl - text) : size;
    const char *sp = memchr(text, ' ', line_len);
    if (!sp)
        return 0;
    char *method = dup_n(text, (size_t)(sp - text));
    char *target = dup_n(sp + 1, line_len - (size_t)(sp - text) - 1);
    us_api_who who = {.token = "fuzz", .peer = "127.0.0.1"};
    n_done = 0;
    const char *body = nl ? nl + 1 : "";
    size_t body_len = nl ? size - line_len - 1 : 0;
    us_api_execute(api, method, target, "application/json", body, body_len, &who, on_done, NULL);
    FUZZ_CHECK(n_done == 1); /* every request is answered, exactly once */
    FUZZ_CHECK(done_status >= 200 && done_status <= 599);
    FUZZ_CHECK(api->reqs == NULL);
    free(method);
    free(target);
    return 0;
}
