/* commands.c — see commands.h. */
#include "cli/commands.h"
#include "config/config.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/file.h"
#include "lib/suggest.h"
#include "lib/version.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define POLL_INTERVAL_MS 100
#define COMPLETION_WAIT_MS 30000
#define FOLLOW_INTERVAL_MS 250
#define FOLLOW_LOST_MS 5000

/* ---- the handlers ---- */

/* By default the leader's view (a consistent read: the agent asked forwards it to the leader);
 * --local: the asked agent's own view, which says when it may be stale. */
static int cmd_status(us_client *c, const us_cmd_args *a)
{
    us_reply rep;
    const char *target = a->own_view ? "/v1/status" : "/v1/status?consistent=1";
    if (us_http_call(&c->http, "GET", target, NULL, 0, &rep) != 0)
        return US_EXIT_FAILED;
    int rc;
    if (rep.status != 200) {
        const char *detail = us_render_str(rep.json, "detail");
        rc = us_http_fail_reply(&c->http, &rep);
        if (detail)
            fprintf(stderr, "  (%s)\n", detail);
        if (!a->own_view && rep.status == 503)
            fprintf(stderr,
                    "understudy: `understudy status --local` shows the view of the agent "
                    "at %s, which may be stale\n",
                    c->http.origin);
    } else if (c->out.json)
        rc = (us_render_body(rep.body, rep.len), US_EXIT_OK);
    else if (!json_is_object(rep.json))
        rc = us_render_unexpected(c->http.api, "status is not a JSON object");
    else if (us_render_status(&c->out, rep.json) != 0)
        rc = us_render_unexpected(c->http.api, "status without cluster, nodes and services");
    else
        rc = US_EXIT_OK;
    us_reply_free(&rep);
    return rc;
}

static int cmd_apply(us_client *c, const us_cmd_args *a)
{
    const char *file = a->arg[0];
    char *text = NULL;
    size_t len = 0;
    int rc = us_file_read(file, &text, &len);
    if (rc != 0) {
        fprintf(stderr, "understudy: cannot read services file %s: %s\n", file, strerror(-rc));
        return US_EXIT_USAGE;
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char enc[512], target[600];
    us_http_url_encode(base, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/services?file=%s&" US_HTTP_BY, enc);
    us_reply rep;
    if (us_http_call(&c->http, "POST", target, text, len, &rep) != 0) {
        free(text);
        return US_EXIT_FAILED;
    }
    free(text);
    json_t *problems = json_object_get(rep.json, "problems");
    if (rep.status == 400 && json_is_array(problems)) {
        const char *msg = us_render_str(rep.json, "error");
        fprintf(stderr, "understudy: %s:\n", msg ? msg : "invalid services file");
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p) fprintf(stderr, "%s\n", json_string_value(p));
        rc = US_EXIT_FAILED;
    } else if (rep.status < 200 || rep.status > 299) {
        rc = us_http_fail_reply(&c->http, &rep);
    } else if (c->out.json) {
        us_render_body(rep.body, rep.len);
        rc = US_EXIT_OK;
    } else {
        json_t *applied = json_object_get(rep.json, "services");
        json_t *removed = json_object_get(rep.json, "removed");
        printf("applied %zu service(s)\n", json_array_size(applied));
        if (json_array_size(removed) > 0) {
            printf("removed %zu service(s):", json_array_size(removed));
            size_t i;
            json_t *r;
            json_array_foreach(removed, i, r) printf(" %s", json_string_value(r));
            printf("\n");
        }
        rc = US_EXIT_OK;
    }
    us_reply_free(&rep);
    return rc;
}

static int cmd_switchover(us_client *c, const us_cmd_args *a)
{
    const char *service = a->arg[0], *to = a->to;
    char enc_s[256], enc_to[256], target[600];
    us_http_url_encode(service, enc_s, sizeof enc_s);
    if (to)
        us_http_url_encode(to, enc_to, sizeof enc_to);
    snprintf(target, sizeof target, "/v1/services/%s/switchover%s%s%s%s", enc_s, to ? "?to=" : "",
             to ? enc_to : "", a->force ? (to ? "&" : "?") : "", a->force ? "force=1" : "");
    us_reply rep;
    if (us_http_post(&c->http, target, &rep) != 0)
        return US_EXIT_FAILED;
    json_t *epoch_j = json_object_get(rep.json, "epoch");
    if (!json_is_integer(epoch_j)) {
        us_reply_free(&rep);
        return us_render_unexpected(c->http.api, "switchover accepted without an epoch");
    }
    json_int_t epoch = json_integer_value(epoch_j);
    char from[256];
    snprintf(from, sizeof from, "%s",
             us_render_str(rep.json, "from") ? us_render_str(rep.json, "from") : "none");
    us_reply_free(&rep);

    /* Done when the service has an active instance again under a newer epoch. */
    int64_t deadline = us_now_ms() + COMPLETION_WAIT_MS;
    char err[512] = "";
    char last_active[256] = "none";
    json_int_t last_epoch = epoch;
    for (;;) {
        json_t *st = us_http_poll_status(&c->http, err, sizeof err);
        if (st) {
            json_t *svc = us_render_find(json_object_get(st, "services"), "name", service);
            if (!svc) {
                json_decref(st);
                return us_render_fail("service %s disappeared during the switchover", service);
            }
            const char *active = us_render_str(svc, "active");
            json_int_t e = json_integer_value(json_object_get(svc, "epoch"));
            snprintf(last_active, sizeof last_active, "%s", active ? active : "none");
            last_epoch = e;
            if (active && e > epoch) {
                int rc = US_EXIT_OK;
                if (c->out.json)
                    us_render_json(json_pack("{s:s, s:s, s:s, s:I}", "service", service, "from",
                                             from, "to", active, "epoch", e));
                else
                    printf("%s: %s -> %s (epoch %" JSON_INTEGER_FORMAT ")\n", service, from, active,
                           e);
                if (to && strcmp(active, to) != 0)
                    rc = us_render_fail(
                        "%s went to %s, not to the requested %s (see `understudy status`)", service,
                        active, to);
                json_decref(st);
                return rc;
            }
            json_decref(st);
        }
        if (us_now_ms() >= deadline)
            break;
        us_sleep_ms(POLL_INTERVAL_MS);
    }
    return us_render_fail(
        "switchover of %s not complete after %d s (active %s, epoch %" JSON_INTEGER_FORMAT ")%s%s",
        service, COMPLETION_WAIT_MS / 1000, last_active, last_epoch, err[0] ? "; " : "", err);
}

static int cmd_node_remove(us_client *c, const us_cmd_args *a)
{
    const char *node = a->arg[0];
    char enc[256], target[400];
    us_http_url_encode(node, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/nodes/%s/remove", enc);
    us_reply rep;
    if (us_http_post(&c->http, target, &rep) != 0)
        return US_EXIT_FAILED;
    us_reply_free(&rep);

    int64_t deadline = us_now_ms() + COMPLETION_WAIT_MS;
    char err[512] = "";
    char last_state[64] = "unknown";
    for (;;) {
        json_t *st = us_http_poll_status(&c->http, err, sizeof err);
        if (st) {
            json_t *n = us_render_find(json_object_get(st, "nodes"), "name", node);
            const char *state = n ? us_render_str(n, "state") : "left";
            snprintf(last_state, sizeof last_state, "%s", state ? state : "unknown");
            json_decref(st);
            if (strcmp(last_state, "left") == 0) {
                if (c->out.json)
                    us_render_json(json_pack("{s:s, s:b}", "node", node, "removed", 1));
                else
                    printf("node %s removed\n", node);
                return US_EXIT_OK;
            }
        }
        if (us_now_ms() >= deadline)
            break;
        us_sleep_ms(POLL_INTERVAL_MS);
    }
    return us_render_fail("removal of node %s not complete after %d s (state %s)%s%s", node,
                          COMPLETION_WAIT_MS / 1000, last_state, err[0] ? "; " : "", err);
}

/* POST a change to NAME (a service or a node) and say in one line what happened. 200 means it
 * was so already (nothing proposed), 202 that the change is committed. */
static int cmd_simple(us_client *c, const char *kind, const char *name, const char *action,
                      const char *query, const char *done, const char *already)
{
    char enc[256], target[600];
    us_http_url_encode(name, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/%s/%s/%s%s", kind, enc, action, query ? query : "");
    us_reply rep;
    if (us_http_post(&c->http, target, &rep) != 0)
        return US_EXIT_FAILED;
    if (c->out.json)
        us_render_body(rep.body, rep.len);
    else
        printf("%s: %s\n", name, rep.status == 200 && already ? already : done);
    us_reply_free(&rep);
    return US_EXIT_OK;
}

static int cmd_reset(us_client *c, const us_cmd_args *a)
{
    const char *service = a->arg[0], *node = a->node;
    char q[300] = "", enc[256], done[400];
    if (node) {
        us_http_url_encode(node, enc, sizeof enc);
        snprintf(q, sizeof q, "?node=%s", enc);
        snprintf(done, sizeof done, "failures on %s cleared", node);
    } else {
        snprintf(done, sizeof done, "failures cleared on every node");
    }
    return cmd_simple(c, "services", service, "reset", q, done, NULL);
}

static int service_pause(us_client *c, const us_cmd_args *a)
{
    return cmd_simple(c, "services", a->arg[0], "pause", NULL, "paused", "already paused");
}

static int service_resume(us_client *c, const us_cmd_args *a)
{
    return cmd_simple(c, "services", a->arg[0], "resume", NULL, "resumed",
                      "not paused (nothing to do)");
}

static int node_drain(us_client *c, const us_cmd_args *a)
{
    return cmd_simple(c, "nodes", a->arg[0], "drain", NULL,
                      "drained (active roles move off it by switchover)", "already drained");
}

static int node_undrain(us_client *c, const us_cmd_args *a)
{
    return cmd_simple(c, "nodes", a->arg[0], "undrain", NULL, "undrained (may take roles again)",
                      "not drained (nothing to do)");
}

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

int us_events_page(const us_http *h, const us_reply *rep, uint64_t *after, json_t *out, bool *more,
                   uint64_t *first)
{
    json_t *events = json_object_get(rep->json, "events");
    if (rep->status != 200 || !json_is_array(events)) {
        int status = rep->status;
        if (rep->status != 200)
            us_http_fail_reply(h, rep);
        else
            us_render_unexpected(h->api, "events reply without an events list");
        return status == 200 ? 500 : status;
    }
    *more = json_is_true(json_object_get(rep->json, "more"));
    *first = (uint64_t)json_integer_value(json_object_get(rep->json, "first"));
    uint64_t last = (uint64_t)json_integer_value(json_object_get(rep->json, "last"));
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        json_array_append(out, e);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(e, "seq"));
        if (seq > *after)
            *after = seq;
    }
    /* Without a cut, every event up to `last` was looked at (filtered ones too). */
    if (!*more && last > *after)
        *after = last;
    return 0;
}

/* One page of events after `after`; appends them to `out` and moves `after` on. 0, or -1 with a
 * message in err (unreachable), or the HTTP status of a refusal (reply explained already when
 * `loud`). */
static int fetch_events(us_client *c, const char *filter, uint64_t *after, json_t *out, bool loud,
                        bool *more, uint64_t *first, char *err, size_t errlen)
{
    char target[700];
    snprintf(target, sizeof target, "/v1/events?after=%llu&limit=%d%s", (unsigned long long)*after,
             US_EVENTS_PAGE, filter);
    us_reply rep;
    if (loud) {
        if (us_http_call(&c->http, "GET", target, NULL, 0, &rep) != 0)
            return -1;
    } else if (us_http_once(&c->http, c->http.api, "GET", target, NULL, 0, &rep, err, errlen) !=
               0) {
        return -1;
    }
    int rc = us_events_page(&c->http, &rep, after, out, more, first);
    us_reply_free(&rep);
    return rc;
}

/* Sleep `ms` unless a stop signal comes first. */
static void nap(int ms)
{
    for (int slept = 0; slept < ms && !stop_signal; slept += 25)
        us_sleep_ms(25);
}

static int cmd_events(us_client *c, const us_cmd_args *a)
{
    const char *service = a->service, *node = a->node;
    const int limit = a->limit;
    char filter[300] = "", enc[256];
    if (service) {
        us_http_url_encode(service, enc, sizeof enc);
        snprintf(filter + strlen(filter), sizeof filter - strlen(filter), "&service=%s", enc);
    }
    if (node) {
        us_http_url_encode(node, enc, sizeof enc);
        snprintf(filter + strlen(filter), sizeof filter - strlen(filter), "&node=%s", enc);
    }
    /* The whole kept history (one page unless the agent keeps more), then its newest `limit`. */
    json_t *all = json_array();
    uint64_t after = 0, first = 0;
    bool more = true;
    char err[512] = "";
    for (int pages = 0; more && pages < 64; pages++) {
        int rc = fetch_events(c, filter, &after, all, true, &more, &first, err, sizeof err);
        if (rc != 0) {
            json_decref(all);
            return US_EXIT_FAILED;
        }
    }
    while (json_array_size(all) > (size_t)limit)
        json_array_remove(all, 0);
    if (!a->follow && c->out.json) {
        us_render_json(all);
        return US_EXIT_OK;
    }
    us_render_event_header(&c->out);
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e) us_render_event(&c->out, e);
    json_decref(all);
    if (!a->follow)
        return US_EXIT_OK;
    fflush(stdout);

    struct sigaction sa = {.sa_handler = on_stop_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = US_EXIT_OK;
    int64_t lost_since = -1;
    while (!stop_signal) {
        nap(FOLLOW_INTERVAL_MS);
        if (stop_signal)
            break;
        json_t *got = json_array();
        uint64_t before = after;
        int r = fetch_events(c, filter, &after, got, false, &more, &first, err, sizeof err);
        if (r < 0) {
            /* The agent may be restarting: keep quiet for a while. */
            json_decref(got);
            int64_t t = us_now_ms();
            if (lost_since < 0)
                lost_since = t;
            if (t - lost_since >= FOLLOW_LOST_MS) {
                rc = us_render_fail("stopped following after %d s: %s", FOLLOW_LOST_MS / 1000, err);
                break;
            }
            continue;
        }
        if (r > 0) {
            json_decref(got);
            rc = US_EXIT_FAILED;
            break;
        }
        lost_since = -1;
        if (before > 0 && first > before + 1)
            fprintf(stderr,
                    "understudy: events %llu to %llu are no longer kept by the agent; some "
                    "may have been missed\n",
                    (unsigned long long)before + 1, (unsigned long long)first - 1);
        json_array_foreach(got, i, e) us_render_event(&c->out, e);
        json_decref(got);
        fflush(stdout);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    stop_signal = 0;
    return rc;
}

static int cmd_version(us_client *c, const us_cmd_args *a)
{
    (void)a;
    us_reply rep;
    char err[512];
    const char *agent = NULL;
    bool reached = us_http_once(&c->http, c->http.api, "GET", "/v1/version", NULL, 0, &rep, err,
                                sizeof err) == 0;
    if (reached && rep.status == 200)
        agent = us_render_str(rep.json, "version");
    if (c->out.json) {
        us_render_json(json_pack("{s:s, s:s?}", "client", US_VERSION, "agent", agent));
    } else {
        printf("understudy %s\n", US_VERSION);
        if (agent)
            printf("agent %s at %s\n", agent, c->http.api);
    }
    /* The client's own version is always known: an absent agent is only a note. */
    if (!reached)
        fprintf(stderr, "understudy: agent version unknown: %s\n", err);
    else if (!agent)
        fprintf(stderr, "understudy: agent version unknown: HTTP %d from %s\n", rep.status,
                c->http.api);
    if (reached)
        us_reply_free(&rep);
    return US_EXIT_OK;
}

static json_t *strings_json(const us_errors *e)
{
    json_t *a = json_array();
    for (int i = 0; i < e->n; i++)
        json_array_append_new(a, json_string(e->msg[i]));
    if (e->dropped)
        json_array_append_new(a, json_sprintf("(and %d more problems)", e->dropped));
    return a;
}

static void print_lines(const us_errors *e, FILE *out)
{
    for (int i = 0; i < e->n; i++)
        fprintf(out, "%s\n", e->msg[i]);
    if (e->dropped)
        fprintf(out, "(and %d more problems)\n", e->dropped);
}

static json_t *node_config_json(const us_node_config *n)
{
    json_t *members = json_array(), *join = json_array();
    for (int i = 0; i < n->n_members; i++)
        json_array_append_new(members, json_pack("{s:s, s:s}", "name", n->members[i].name,
                                                 "address", n->members[i].address));
    for (int i = 0; i < n->n_join; i++)
        json_array_append_new(join, json_string(n->join[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:i, s:i}", "name", n->name,
                     "address", n->address, "api", n->api, "data_dir", n->data_dir, "cluster",
                     n->cluster_name, "members", members, "join", join, "profile", n->timing.name,
                     "autopilot_grace_ms", n->autopilot_grace_ms, "events_max", n->events_max);
}

/* Validate a node config or a services file locally. Nothing is created, no agent is asked. */
static int cmd_check_config(us_client *c, const us_cmd_args *a)
{
    const char *file = a->arg[0];
    us_errors *err = calloc(1, sizeof *err), *warn = calloc(1, sizeof *warn);
    us_node_config *node = calloc(1, sizeof *node);
    us_service_set *set = calloc(1, sizeof *set);
    char *text = NULL;
    size_t len = 0;
    if (!err || !warn || !node || !set) {
        free(err);
        free(warn);
        free(node);
        free(set);
        return us_render_fail("out of memory");
    }
    us_config_kind kind = US_CONFIG_UNKNOWN;
    int rc = us_file_read(file, &text, &len);
    if (rc != 0) {
        us_errors_add(err, "%s: cannot read: %s", file, strerror(-rc));
    } else {
        kind = us_config_detect(text, len);
        if (kind == US_CONFIG_NODE)
            us_config_check_node(file, node, err, warn);
        else if (kind == US_CONFIG_SERVICES)
            us_config_parse_services(text, len, file, set, err);
        else
            us_errors_add(err,
                          "%s: expected a node config ([node] and [cluster] sections) or a "
                          "services file ([service NAME] sections), found neither",
                          file);
    }
    free(text);
    bool ok = err->n == 0 && err->dropped == 0;
    const char *kind_name = kind == US_CONFIG_NODE       ? "node config"
                            : kind == US_CONFIG_SERVICES ? "services file"
                                                         : "unknown";
    if (c->out.json) {
        json_t *j =
            json_pack("{s:s, s:s, s:b, s:o, s:o}", "file", file, "kind",
                      kind == US_CONFIG_NODE       ? "node"
                      : kind == US_CONFIG_SERVICES ? "services"
                                                   : "unknown",
                      "ok", ok, "problems", strings_json(err), "warnings", strings_json(warn));
        if (ok && kind == US_CONFIG_NODE)
            json_object_set_new(j, "node", node_config_json(node));
        if (ok && kind == US_CONFIG_SERVICES) {
            json_t *names = json_array();
            for (int i = 0; i < set->n; i++)
                json_array_append_new(names, json_string(set->svc[i].name));
            json_object_set_new(j, "services", names);
        }
        us_render_json(j);
    } else if (!ok) {
        print_lines(err, stderr);
        print_lines(warn, stderr);
        int n = err->n + err->dropped;
        fprintf(stderr, "understudy: %s: not valid (%s%s%d problem%s)\n", file,
                kind == US_CONFIG_UNKNOWN ? "" : kind_name, kind == US_CONFIG_UNKNOWN ? "" : ", ",
                n, n == 1 ? "" : "s");
    } else {
        print_lines(warn, stderr);
        char what[1024];
        if (kind == US_CONFIG_NODE) {
            if (node->n_members)
                snprintf(what, sizeof what, "node %s of cluster %s, %d member%s", node->name,
                         node->cluster_name, node->n_members, node->n_members == 1 ? "" : "s");
            else
                snprintf(what, sizeof what, "node %s of cluster %s, joins via %d address%s",
                         node->name, node->cluster_name, node->n_join,
                         node->n_join == 1 ? "" : "es");
        } else {
            int used = snprintf(what, sizeof what, "%d service%s%s", set->n, set->n == 1 ? "" : "s",
                                set->n ? ":" : "");
            for (int i = 0; i < set->n && used > 0 && (size_t)used < sizeof what; i++)
                used += snprintf(what + used, sizeof what - (size_t)used, "%s %s", i ? "," : "",
                                 set->svc[i].name);
        }
        printf("%s: ok (%s: %s)\n", file, kind_name, what);
    }
    free(err);
    free(warn);
    free(node);
    us_service_set_free(set);
    free(set);
    return ok ? US_EXIT_OK : US_EXIT_USAGE;
}

/* `help [COMMAND [SUBCOMMAND]]`: "help node drain" is node's help, the subcommand only a
 * reminder. An unknown COMMAND is named before extra words are. */
static int cmd_help(us_client *c, const us_cmd_args *a)
{
    (void)c;
    if (a->n == 0) {
        us_commands_overview(stdout);
        return US_EXIT_OK;
    }
    const us_command *about = us_command_find(a->arg[0]);
    if (!about) {
        char h[96];
        return us_command_usage_error(us_command_find("help"), "unknown command \"%s\"%s",
                                      a->arg[0],
                                      us_render_hint(h, sizeof h, us_command_suggest(a->arg[0])));
    }
    if (a->n > 2)
        return us_command_usage_error(us_command_find("help"), "unexpected argument \"%s\"",
                                      a->arg[2]);
    us_command_help(about, stdout);
    return US_EXIT_OK;
}

/* ---- the table ---- */

static const us_subcommand service_subs[] = {
    {"pause", service_pause}, {"resume", service_resume}, {NULL, NULL}};
static const us_subcommand node_subs[] = {
    {"remove", cmd_node_remove}, {"drain", node_drain}, {"undrain", node_undrain}, {NULL, NULL}};

#define OPT_API                                                                                    \
    "  --api HOST:PORT  agent to ask (default: $UNDERSTUDY_API, else node.api of the\n"            \
    "                   node config, else " US_DEFAULT_API ")\n"                                   \
    "  --token-file PATH  the API token file (default: $UNDERSTUDY_TOKEN_FILE, else\n"             \
    "                   the node config's api_token_file)\n"                                       \
    "  --config NODE.CONF  the node config (default " US_DEFAULT_NODE_CONFIG ")\n"
#define EXIT_STD                                                                                   \
    "  0  done\n"                                                                                  \
    "  1  the agent refused or failed, or could not be reached\n"                                  \
    "  2  usage error\n"

static const char overview_head[] =
    "usage: understudy [--api HOST:PORT] [--token-file PATH] [--json] COMMAND ...\n"
    "\n"
    "commands:\n";

static const char overview_foot[] =
    "\n"
    "options (before or after the command):\n"
    "  --api HOST:PORT  agent to ask (default: $UNDERSTUDY_API, else " US_DEFAULT_API ")\n"
    "  --token-file PATH  the API token (default: $UNDERSTUDY_TOKEN_FILE, else the\n"
    "                   api_token_file of --config NODE.CONF, else of\n"
    "                   " US_DEFAULT_NODE_CONFIG " when readable)\n"
    "  --config NODE.CONF  the node config to take api_token_file (and api) from\n"
    "  --json           print JSON instead of tables\n"
    "  -h, --help       usage (of the command, when one is given)\n"
    "\n"
    "exit status: 0 success, 1 refused or failed (no agent too), 2 usage error\n"
    "(check-config: 2 when the file has problems)\n"
    "`understudy help COMMAND` shows a command's options, examples and exit status.\n";

const us_command us_commands[] = {
    {"status", "understudy status [--local] [--json]",
     "Show the cluster (leader, term, quorum), its nodes (drained ones marked), its\n"
     "services (paused ones marked; the active instance's health), every instance's\n"
     "role and health (last probe latency, why it failed), and the failure counts\n"
     "and bans that keep a service off a node.\n"
     "By default the leader answers (a consistent read; the agent asked forwards the\n"
     "request), and it fails while there is no leader. --local shows the asked\n"
     "agent's own view instead, with a line saying when it may be stale (not caught\n"
     "up with the leader, or no contact with one).\n"
     "Colour only on a terminal, and never when NO_COLOR is set. On a terminal, a\n"
     "table's last column is cut to the terminal's width.\n",
     "  --local          the asked agent's own view, flagged when it may be stale\n"
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy status\n"
     "  understudy --api 10.0.0.2:7201 status --local --json\n",
     EXIT_STD,
     /* overview */
     "  status                          nodes, services, instance health, failures\n",
     .run = cmd_status, .opts = US_OPT_LOCAL},
    {"events", "understudy events [--service S] [--node N] [--limit N] [--follow]",
     "Print the cluster's recorded events, oldest first: role changes, node and\n"
     "health changes, restarts, pauses, drains, resets, with their causes. The agent\n"
     "keeps the last 256.\n",
     "  --service S      only the events about service S\n"
     "  --node N         only the events about node N\n"
     "  --limit N        at most the N newest, 1..256 (default 100)\n"
     "  -f, --follow     then print new events until interrupted; give up when the\n"
     "                   agent stays unreachable for 5 s\n"
     "  --json           a JSON array, or with --follow one JSON object per line\n" OPT_API,
     "  understudy events --service web --limit 20\n"
     "  understudy events --follow --json\n",
     "  0  done (with --follow: stopped by SIGINT or SIGTERM)\n"
     "  1  the agent refused, or could not be reached (for 5 s with --follow)\n"
     "  2  usage error\n",
     /* overview */
     "  events [--service S] [--node N] [--limit N] [--follow]\n"
     "                                  what happened and why (newest last)\n",
     .run = cmd_events, .opts = US_OPT_SERVICE | US_OPT_NODE | US_OPT_LIMIT | US_OPT_FOLLOW},
    {"apply", "understudy apply FILE",
     "Send a services file to the cluster; services missing from it are removed.\n"
     "Problems in the file are listed as FILE:LINE: message, and nothing changes.\n",
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy apply /etc/understudy/services.ini\n"
     "  understudy check-config services.ini && understudy apply services.ini\n",
     "  0  applied\n"
     "  1  the file has problems, or the agent refused or could not be reached\n"
     "  2  usage error, or the file cannot be read\n",
     /* overview */ "  apply FILE                      load a services file into the cluster\n",
     .run = cmd_apply, .min_args = 1, .max_args = 1, .arg_name = "FILE"},
    {"check-config", "understudy check-config FILE [--json]",
     "Validate a node config (a file with [node] and [cluster] sections) or a\n"
     "services file (one with [service NAME] sections) without running anything or\n"
     "asking an agent. Every problem is listed as FILE:LINE: key, what was expected\n"
     "and what was found, as `understudy agent` and `understudy apply` report them.\n"
     "Nothing is created: a missing or unwritable data_dir is only a warning, since\n"
     "the file may be meant for another host.\n",
     "  --json           {\"file\", \"kind\", \"ok\", \"problems\", \"warnings\", and \"node\"\n"
     "                   or \"services\" when valid}\n",
     "  understudy check-config /etc/understudy/node.conf\n"
     "  understudy check-config services.ini --json\n",
     "  0  the file is valid (warnings may have been printed)\n"
     "  2  the file has problems, cannot be read, or is neither kind; or a usage\n"
     "     error\n",
     /* overview */ "  check-config FILE               validate a node config or services file\n",
     .run = cmd_check_config, .min_args = 1, .max_args = 1, .arg_name = "FILE", .local = true},
    {"switchover", "understudy switchover SERVICE [--to NODE] [--force]",
     "Move SERVICE's active role (to NODE, or to the best standby) and wait up to 30\n"
     "s until it is active again under a new epoch. With --force, when SERVICE has no\n"
     "active because promoting a standby would lose writes only the lost active had\n"
     "(max_lag, synchronous): accept that loss and promote one (NODE if given).\n",
     "  --to NODE        the node to move it to (default: the best standby)\n"
     "  --force          accept losing writes of a lost active (see above)\n"
     "  --json           {\"service\", \"from\", \"to\", \"epoch\"} when done\n" OPT_API,
     "  understudy switchover web\n"
     "  understudy switchover web --to n2\n"
     "  understudy switchover db --force\n",
     "  0  done (with --to: moved to NODE)\n"
     "  1  refused, not done within 30 s, moved elsewhere than NODE, or the agent\n"
     "     could not be reached\n"
     "  2  usage error\n",
     /* overview */ "  switchover SERVICE [--to NODE]  move the active role, wait until done\n",
     .run = cmd_switchover, .min_args = 1, .max_args = 1, .arg_name = "SERVICE",
     .opts = US_OPT_TO | US_OPT_FORCE},
    {"service", "understudy service pause|resume NAME",
     "pause: stop deciding for service NAME. Its processes keep running as they are;\n"
     "failures are not acted on and no role moves until it is resumed.\n"
     "resume: manage it again.\n",
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy service pause db\n"
     "  understudy service resume db\n",
     EXIT_STD,
     /* overview */ "  service pause|resume NAME       stop / resume managing a service\n",
     .subs = service_subs, .min_args = 1, .max_args = 1, .arg_name = "NAME"},
    {"reset", "understudy reset SERVICE [--node NODE]",
     "Clear SERVICE's failure counts and bans (on NODE only, or on every node) and\n"
     "its count of restarts in place, so that banned nodes may take its roles again.\n",
     "  --node NODE      only the records of NODE\n"
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy reset web\n"
     "  understudy reset web --node n3\n",
     EXIT_STD,
     /* overview */
     "  reset SERVICE [--node NODE]     clear failure counts and bans of a service\n",
     .run = cmd_reset, .min_args = 1, .max_args = 1, .arg_name = "SERVICE", .opts = US_OPT_NODE},
    {"node", "understudy node remove|drain|undrain NAME",
     "remove: remove node NAME from the cluster and wait up to 30 s until it has\n"
     "left.\n"
     "drain: give NAME no active roles or standbys (its active roles move off it by\n"
     "switchover) until it is undrained; it stays a cluster member and voter.\n"
     "undrain: let NAME take roles again.\n",
     "  --json           a JSON reply\n" OPT_API,
     "  understudy node drain n2\n"
     "  understudy node undrain n2\n"
     "  understudy node remove n4\n",
     EXIT_STD,
     /* overview */
     "  node drain|undrain NAME         move roles off a node / allow them again\n"
     "  node remove NAME                remove a node, wait until it has left\n",
     .subs = node_subs, .min_args = 1, .max_args = 1, .arg_name = "NAME"},
    {"version", "understudy version [--json]",
     "Print the client's version and, if it answers, the agent's.\n",
     "  --json           {\"client\", \"agent\"} (agent null when unknown)\n" OPT_API,
     "  understudy version\n",
     "  0  always (an agent that does not answer is a note on stderr)\n"
     "  2  usage error\n",
     /* overview */ "  version                         client and agent versions\n",
     .run = cmd_version},
    {"agent", "understudy agent --config FILE [--debug]",
     "Run the agent of this node: join or form the cluster and run the instances the\n"
     "cluster assigns to this node. SIGTERM hands active roles over first, then\n"
     "stops; a second SIGTERM, or SIGINT, stops at once.\n",
     "  --config FILE    the node config (check it with `understudy check-config\n"
     "                   FILE`)\n"
     "  --debug          log more\n",
     "  understudy agent --config /etc/understudy/node.conf\n",
     "  0  stopped after SIGTERM or SIGINT\n"
     "  1  failed to start or run (the log says why)\n"
     "  2  usage error, or the config has problems (listed as FILE:LINE: ...)\n",
     /* overview */ "  agent --config FILE             run the agent of this node\n", .run = NULL},
    {"recover", "understudy recover --config FILE [--voters N1,N2...] [--yes]",
     "Rebuild the voters of a cluster that lost its voter majority for good, from\n"
     "this node's data dir, keeping the replicated state: services, assignments and\n"
     "their epochs (the next failover takes the next epoch), failure records, events.\n"
     "Run it with this node's agent stopped. It reads the last Raft configuration,\n"
     "asks its other voters over the cluster transport and refuses while a majority\n"
     "of them (this node included) is reachable: then start the agent instead. It\n"
     "prints what it found and the new configuration, and writes it only with --yes.\n"
     "Then start the agent. Run it on ONE survivor, the one with the highest last\n"
     "entry (it prints it); other survivors named in --voters get a copy of its\n"
     "DATA_DIR/raft before they start; other nodes join afresh with an empty data dir.\n"
     "The lost nodes stay in the service model until `understudy node remove NAME`.\n",
     "  --config FILE    this node's config (data_dir, address, key_file)\n"
     "  --voters LIST    the new voters, comma-separated, this node among them\n"
     "                   (default: this node alone)\n"
     "  --yes            write the new configuration (without it: only print)\n",
     "  understudy recover --config /etc/understudy/node.conf\n"
     "  understudy recover --config /etc/understudy/node.conf --yes\n",
     "  0  written\n"
     "  1  refused (the agent runs, a majority is reachable, no Raft data, no --yes)\n"
     "     or failed; nothing changed\n"
     "  2  usage error, the config has problems, or --voters names a node that is\n"
     "     not a member of the last configuration\n",
     /* overview */
     "  recover --config FILE [--yes]   rebuild the voters after losing the majority\n",
     .run = NULL},
    {"keygen", "understudy keygen [--token] FILE",
     "Write a new random secret to FILE (mode 0600; an existing FILE is never\n"
     "replaced). Without --token: a cluster key ([cluster] key_file, the same file\n"
     "on every node). With --token: an API token file ([node] api_token_file) of one\n"
     "token, 64 hexadecimal digits. A token file may list up to 16 tokens, one a line,\n"
     "each optionally after a name (\"NAME TOKEN\"; events say which token asked).\n",
     "  --token          write an API token file instead of a cluster key\n",
     "  understudy keygen /etc/understudy/cluster.key\n"
     "  understudy keygen --token /etc/understudy/api.token\n",
     "  0  written\n"
     "  1  FILE exists already or cannot be written\n"
     "  2  usage error\n",
     /* overview */ "  keygen [--token] FILE           a new cluster key, or API token file\n",
     .run = NULL},
    {"help", "understudy help [COMMAND]",
     "Print the overview, or a command's usage, options, examples and exit status.\n"
     "`understudy COMMAND --help` does the same.\n",
     NULL, "  understudy help switchover\n",
     "  0  printed\n"
     "  2  unknown command\n",
     /* overview */ "  help [COMMAND]                  this text, or a command's\n",
     /* cmd_help counts: an unknown COMMAND is named before extra words */
     .run = cmd_help, .max_args = US_CMD_MAX_ARGS, .opts = US_OPT_IGNORED, .local = true},
};

const size_t us_n_commands = sizeof us_commands / sizeof us_commands[0];

const us_command *us_command_find(const char *name)
{
    for (size_t i = 0; i < us_n_commands; i++)
        if (strcmp(us_commands[i].name, name) == 0)
            return &us_commands[i];
    return NULL;
}

const char *us_command_suggest(const char *typed)
{
    const char *names[sizeof us_commands / sizeof us_commands[0]];
    for (size_t i = 0; i < us_n_commands; i++)
        names[i] = us_commands[i].name;
    return us_suggest(typed, names, us_n_commands);
}

int us_command_usage_error(const us_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = us_render_vusage_error(cmd ? cmd->usage : NULL, fmt, ap);
    va_end(ap);
    return rc;
}

void us_commands_overview(FILE *out)
{
    fputs(overview_head, out);
    for (size_t i = 0; i < us_n_commands; i++)
        fputs(us_commands[i].overview, out);
    fputs(overview_foot, out);
}

void us_command_help(const us_command *cmd, FILE *out)
{
    fprintf(out, "usage: %s\n\n%s", cmd->usage, cmd->help);
    if (cmd->options)
        fprintf(out, "\noptions:\n%s", cmd->options);
    if (cmd->examples)
        fprintf(out, "\nexamples:\n%s", cmd->examples);
    fprintf(out, "\nexit status:\n%s", cmd->exits);
}
