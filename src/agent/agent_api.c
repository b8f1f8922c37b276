/* agent_api.c — the agent's HTTP API (JSON). Reads (status, events, logs) answer from this
 * agent's view; changes are decided only by the Raft leader: a follower forwards them to it over
 * the cluster's authenticated RPC (transport.h) and answers with the leader's reply, or, when it
 * cannot, answers 421 with the leader's API address (which the CLI follows); answered once
 * committed. Every change is stamped with
 * the leader's wall clock and a cause naming who asked (`by=WHO`, default "API", with the name of
 * the token presented and the client's address: "by CLI (token ops from 10.0.0.5)"), which the
 * events it records carry. Requests reach these handlers only past the guard (api_guard.h:
 * token, Host, Origin, Content-Type), set up by us_agent_api_start.
 *
 * Forwarding: a change that reaches a follower is serialised with us_agent_api_forward_request
 * and run on the leader with us_agent_api_execute (agent.h), which goes through the same handlers
 * and hands back {status, content_type, body}. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/agent_api.h"
#include "agent/metrics.h"
#include "net/api_guard.h"
#include "net/dashboard.h"
#include "core/lease.h"
#include "core/role.h"
#include "lib/log.h"
#include "lib/clock.h"
#include "lib/listen.h"
#include "lib/version.h"

/* ---- status ---- */

static json_t *str_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

/* The index of `as` in the state, when it is one of the state's assignments (else -1). */
static int service_index(us_agent *a, const us_assignment *as)
{
    const us_state *s = &a->fsm.state;
    uintptr_t p = (uintptr_t)as, lo = (uintptr_t)s->asg;
    return p >= lo && p < lo + sizeof *as * (size_t)s->services.n ? (int)((p - lo) / sizeof *as)
                                                                  : -1;
}

static json_t *instance_json(us_agent *a, const us_assignment *as, const char *node)
{
    us_report rep;
    const us_report *r =
        us_agent_report(a, node, as->service, service_index(a, as), &rep) ? &rep : NULL;
    int pid = r ? r->pid : 0;
    const char *role = "stopped";
    bool standby = false;
    for (int i = 0; i < as->n_standbys; i++)
        standby |= strcmp(as->standbys[i], node) == 0;
    if (strcmp(as->active, node) == 0)
        role = "active";
    else if (r && r->obs.state == US_INST_FAILED && r->obs.epoch == as->epoch)
        role = "failed";
    else if (standby)
        role = "standby";
    json_t *o = json_pack("{s:s, s:s}", "node", node, "role", role);
    json_object_set_new(o, "pid", pid > 0 ? json_integer(pid) : json_null());
    json_object_set_new(o, "state", json_string(r ? us_inst_state_name(r->obs.state) : "none"));
    json_object_set_new(o, "health",
                        json_string(us_health_name(r ? r->obs.health : US_HEALTH_UNKNOWN)));
    json_object_set_new(o, "cause", str_or_null(r ? r->obs.cause : ""));
    json_object_set_new(
        o, "check_ms", r && r->check_ms >= 0 ? json_integer((json_int_t)r->check_ms) : json_null());
    json_object_set_new(o, "probes", json_integer(r ? (json_int_t)r->probes : 0));
    json_object_set_new(o, "probes_failed", json_integer(r ? (json_int_t)r->probes_failed : 0));
    json_object_set_new(o, "restarts", json_integer(r ? r->restarts : 0));
    json_object_set_new(o, "restart_cause", str_or_null(r ? r->restart_cause : ""));
    /* `follow`: the active's epoch this standby followed last, and whether that is the current
     * one (null where the service has no follow hook or the node is no standby). */
    int k = service_index(a, as);
    bool follows = k >= 0 && a->fsm.state.services.svc[k].follow[0] && standby;
    json_object_set_new(o, "followed",
                        r && r->obs.followed ? json_integer((json_int_t)r->obs.followed)
                                             : json_null());
    json_object_set_new(o, "following",
                        follows ? json_boolean(r && r->obs.followed == as->epoch) : json_null());
    /* `position`: what it printed last there (null: none, unknown, or no such command). */
    json_object_set_new(o, "position",
                        r && r->obs.position >= 0 ? json_integer((json_int_t)r->obs.position)
                                                  : json_null());
    return o;
}

/* Pause, restart in place, failure records and the check settings of one service. */
static void self_healing_json(json_t *o, const us_service_def *d, const us_assignment *as)
{
    json_object_set_new(o, "paused", json_boolean(as->paused));
    /* R13: who holds every acknowledged write (may be promoted), and what the active was asked
     * to wait for. */
    if (d->synchronous > 0 || as->sync_gen) {
        json_t *have = json_array(), *want = json_array();
        for (int i = 0; i < as->n_sync; i++)
            json_array_append_new(have, json_string(as->sync[i]));
        for (int i = 0; i < as->n_sync_want; i++)
            json_array_append_new(want, json_string(as->sync_want[i]));
        json_object_set_new(o, "synchronous",
                            json_pack("{s:o, s:o, s:I, s:b}", "standbys", have, "asked", want,
                                      "gen", (json_int_t)as->sync_gen, "waived", as->sync_waived));
    } else {
        json_object_set_new(o, "synchronous", json_null());
    }
    /* R12: the position the lost active reported last, which the next one must come close to. */
    json_object_set_new(o, "lost_position",
                        as->has_lost_position && !as->active[0]
                            ? json_integer((json_int_t)as->lost_position)
                            : json_null());
    json_object_set_new(o, "recorded_position",
                        as->has_lost_position && as->active[0]
                            ? json_integer((json_int_t)as->lost_position)
                            : json_null());
    json_object_set_new(o, "recover", json_boolean(as->recover));
    json_object_set_new(o, "restart",
                        as->restart_node[0]
                            ? json_pack("{s:s, s:I, s:i}", "node", as->restart_node, "at_ms",
                                        (json_int_t)as->restart_at_ms, "restarts", as->restarts)
                            : json_null());
    int64_t now = us_wall_ms();
    json_t *fails = json_array();
    for (int i = 0; i < as->n_fail; i++) {
        const us_failrec *f = &as->fail[i];
        json_array_append_new(
            fails, json_pack("{s:s, s:i, s:I, s:I, s:b}", "node", f->node, "failures", f->failures,
                             "last_ms", (json_int_t)f->last_ms, "banned_until_ms",
                             (json_int_t)f->banned_until_ms, "banned", f->banned_until_ms > now));
    }
    json_object_set_new(o, "failures", fails);
    json_t *checks = json_array();
    for (int i = 0; i < d->n_checks; i++)
        json_array_append_new(checks, json_string(d->checks[i].text));
    json_object_set_new(o, "checks", checks);
    json_object_set_new(
        o, "on_failure",
        json_string(d->on_failure == US_ON_FAILURE_RESTART ? "restart" : "failover"));
    json_object_set_new(o, "failback", json_boolean(d->failback));
}

/* How current this answer is (hub.h us_agent_consistency): "mode" says whether the leader
 * answered a consistent read or this node its own view. */
static json_t *consistency_json(const us_consistency *k, bool consistent)
{
    json_t *o = json_pack(
        "{s:s, s:b, s:o, s:o, s:b, s:I, s:I}", "mode", consistent ? "consistent" : "local", "stale",
        k->stale, "reason", str_or_null(k->reason), "leader", str_or_null(k->leader), "is_leader",
        k->is_leader, "term", (json_int_t)k->term, "applied_index", (json_int_t)k->applied);
    json_object_set_new(o, "commit_index",
                        k->has_commit ? json_integer((json_int_t)k->commit) : json_null());
    json_object_set_new(
        o, "lag",
        k->has_commit
            ? json_integer(k->commit > k->applied ? (json_int_t)(k->commit - k->applied) : 0)
            : json_null());
    json_object_set_new(o, "leader_contact_ms",
                        k->contact_ms >= 0 ? json_integer((json_int_t)k->contact_ms) : json_null());
    return o;
}

static json_t *status_json(us_agent *a, const us_consistency *cons, bool consistent)
{
    const us_state *s = &a->fsm.state;
    char leader[US_NAME_MAX];
    bool have_leader = us_agent_leader(a, leader, NULL);
    json_t *cluster =
        json_pack("{s:s, s:o, s:I, s:b}", "name", a->cfg.cluster_name, "leader",
                  have_leader ? json_string(leader) : json_null(), "term",
                  (json_int_t)raft_current_term(&a->raft), "has_quorum", us_agent_has_quorum(a));
    json_t *nodes = json_array();
    for (int i = 0; i < s->n_nodes; i++) {
        const us_node *n = &s->nodes[i];
        us_peer *p = us_agent_peer(a, n->name);
        us_node_state st = n->left ? US_NODE_LEFT : p ? us_agent_node_state(a, p) : US_NODE_DEAD;
        json_array_append_new(
            nodes, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "name", n->name, "address",
                             n->address, "api", n->api, "state", us_node_state_name(st), "voter",
                             !n->left && us_agent_is_voter(a, n->id), "leaving", n->leaving));
        json_t *last = json_array_get(nodes, json_array_size(nodes) - 1);
        json_object_set_new(last, "drained", json_boolean(n->drained));
        json_object_set_new(last, "service_host",
                            n->service_host[0] ? json_string(n->service_host) : json_null());
    }
    json_t *svcs = json_array();
    for (int k = 0; k < s->services.n; k++) {
        const us_assignment *as = &s->asg[k];
        const us_service_def *d = &s->services.svc[k];
        json_t *inst = json_array();
        if (as->active[0])
            json_array_append_new(inst, instance_json(a, as, as->active));
        for (int i = 0; i < as->n_standbys; i++)
            json_array_append_new(inst, instance_json(a, as, as->standbys[i]));
        for (int i = 0; i < s->n_nodes; i++) {
            const char *n = s->nodes[i].name;
            bool listed = d->n_nodes == 0;
            for (int j = 0; j < d->n_nodes; j++)
                listed |= strcmp(d->nodes[j], n) == 0;
            bool shown = !listed || strcmp(as->active, n) == 0 || s->nodes[i].left;
            for (int j = 0; j < as->n_standbys; j++)
                shown |= strcmp(as->standbys[j], n) == 0;
            if (!shown) /* eligible, neither active nor standby */
                json_array_append_new(inst, instance_json(a, as, n));
        }
        json_t *o = json_pack("{s:s, s:o, s:I, s:s, s:b, s:s, s:i, s:o}", "name", d->name, "active",
                              as->active[0] ? json_string(as->active) : json_null(), "epoch",
                              (json_int_t)as->epoch, "reason", as->reason, "demoting", as->demoting,
                              "standby", d->standby == US_STANDBY_HOT ? "hot" : "cold", "standbys",
                              d->standbys, "instances", inst);
        json_t *vips = json_array();
        for (int i = 0; i < d->n_vips; i++)
            json_array_append_new(vips, json_string(d->vips[i].text));
        json_object_set_new(o, "vips", vips);
        json_object_set_new(o, "proxy",
                            d->proxy_listen[0]
                                ? json_sprintf("%s -> %d", d->proxy_listen, d->proxy_port)
                                : json_null());
        self_healing_json(o, d, as);
        json_array_append_new(svcs, o);
    }
    return json_pack("{s:o, s:s, s:o, s:o, s:o}", "cluster", cluster, "node", a->cfg.name, "nodes",
                     nodes, "services", svcs, "consistency", consistency_json(cons, consistent));
}

static bool require_leader(us_agent *a, us_api_req *r);

/* GET /v1/status: this node's own view, flagged "stale" in "consistency" when it is not caught
 * up with the leader; with ?consistent, the leader's view (forwarded like a change), refused
 * (503, "retry") while the leader itself is not caught up. */
static void h_status(us_api_req *r, void *data)
{
    us_agent *a = data;
    const char *c = us_api_req_query(r, "consistent");
    bool consistent = c && strcmp(c, "0") != 0 && strcmp(c, "false") != 0;
    us_consistency k;
    us_agent_consistency(a, us_now_ms(), &k);
    if (consistent && !k.is_leader && k.leader[0] && k.contact_ms > a->cfg.timing.election_ms) {
        /* Raft still names a leader we have not heard for an election timeout: forwarding
         * would wait for it in vain. */
        json_t *e = json_pack("{s:s}", "error", "no leader");
        json_object_set_new(e, "detail", json_sprintf("%s: %s", a->cfg.name, k.reason));
        us_api_reply_json(r, 503, e);
        return;
    }
    if (consistent && !require_leader(a, r))
        return;
    if (consistent && k.stale) {
        json_t *e = json_pack("{s:s, s:b, s:o}", "error", "the leader is not caught up yet",
                              "retry", true, "consistency", consistency_json(&k, true));
        json_object_set_new(e, "detail", json_sprintf("%s: %s", a->cfg.name, k.reason));
        us_api_reply_json(r, 503, e);
        return;
    }
    us_api_reply_json(r, 200, status_json(a, &k, consistent));
}

static void h_version(us_api_req *r, void *data)
{
    us_agent *a = data;
    us_api_reply_json(r, 200, json_pack("{s:s, s:s}", "version", US_VERSION, "node", a->cfg.name));
}

/* ---- changes: leader only ---- */

/* ---- changes arriving at a follower go to the leader ----
 * Over the cluster's authenticated channel (transport.h RPC), not through the leader's API: every
 * API may listen on loopback only. The leader runs the request through the same handlers
 * (us_agent_api_execute) and the follower answers with the leader's reply as it is. A request
 * that was itself forwarded is not forwarded again (leadership moved meanwhile): 421, and the
 * CLI retries. */

#define FORWARD_TIMEOUT_MS 10000

typedef struct forward {
    us_agent *agent;
    us_api_req *req;
} forward;

static void forwarded(void *data, int status, const char *body, size_t len)
{
    forward *f = data;
    us_agent *a = f->agent;
    us_api_req *r = f->req;
    free(f);
    if (!a->api)
        return; /* the API stopped (agent closing): it dropped the request already */
    if (status != 0) {
        us_api_reply_error(r, 503, "the leader did not answer the forwarded change: %s",
                           strerror(-status));
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    json_t *st = json_object_get(j, "status");
    const char *ct = json_string_value(json_object_get(j, "content_type"));
    json_t *b = json_object_get(j, "body");
    if (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 599 ||
        !ct || !json_is_string(b))
        us_api_reply_error(r, 502, "malformed answer from the leader");
    else
        us_api_reply_text(r, (int)json_integer_value(st), ct, json_string_value(b),
                          json_string_length(b));
    json_decref(j);
}

/* Forward r to the leader; false if that cannot even start (then nothing was replied). */
static bool forward_to_leader(us_agent *a, us_api_req *r, const char *leader)
{
    us_peer *lp = us_agent_peer(a, leader);
    if (!lp || !lp->address[0] || us_api_req_detached(r))
        return false;
    json_t *req = us_agent_api_forward_request(r);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    forward *f = text ? calloc(1, sizeof *f) : NULL;
    if (!f) {
        free(text);
        return false;
    }
    f->agent = a;
    f->req = r;
    int rc = us_transport_rpc(&a->transport, lp->address, text, strlen(text), FORWARD_TIMEOUT_MS,
                              forwarded, f);
    free(text);
    if (rc != 0) {
        free(f);
        return false;
    }
    return true;
}

static bool require_leader(us_agent *a, us_api_req *r)
{
    if (us_agent_is_leader(a) && a->stopping == 0)
        return true;
    char leader[US_NAME_MAX], api[US_ADDR_MAX];
    if (us_agent_leader(a, leader, api) && strcmp(leader, a->cfg.name) != 0) {
        if (forward_to_leader(a, r, leader))
            return false; /* answered when the leader has */
        us_api_reply_json(r, 421,
                          json_pack("{s:s, s:s, s:s}", "error", "not the leader", "leader", leader,
                                    "leader_api", api));
        return false;
    }
    us_api_reply_error(r, 503, "no leader");
    return false;
}

/* The leader's side: a change a follower forwarded, from an authenticated member. */
typedef struct rpc_call {
    us_rpc_ctx *ctx;
} rpc_call;

static void rpc_done(int status, const char *content_type, const char *body, size_t len, void *data)
{
    rpc_call *c = data;
    json_t *j = json_pack("{s:i, s:s, s:s%}", "status", status, "content_type",
                          content_type ? content_type : "application/json", "body",
                          body ? body : "", body ? len : 0);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    static const char oom[] = "{\"status\":503,\"content_type\":\"application/json\","
                              "\"body\":\"{\\\"error\\\": \\\"out of memory\\\"}\"}";
    if (text)
        us_rpc_respond(c->ctx, text, strlen(text));
    else
        us_rpc_respond(c->ctx, oom, sizeof oom - 1);
    free(text);
    free(c);
}

static void on_rpc(void *data, us_rpc_ctx *ctx, const char *peer_name, const char *body, size_t len)
{
    us_agent *a = data;
    rpc_call *c = calloc(1, sizeof *c);
    if (!c) {
        us_rpc_respond(ctx, "", 0);
        return;
    }
    c->ctx = ctx;
    us_debug("a change forwarded by %s", peer_name);
    us_agent_api_execute(a, body, len, rpc_done, c);
}

void us_agent_rpc_init(us_agent *a)
{
    us_transport_set_rpc_handler(&a->transport, on_rpc, a);
}

typedef struct pending {
    us_agent *agent;
    us_api_req *req;
    json_t *reply; /* sent with 200/202 once committed */
    int status;
} pending;

static void committed(void *data, int status, int result)
{
    pending *p = data;
    if (!p->agent->api) {
        /* The API was stopped (agent closing): it freed the request already. */
        json_decref(p->reply);
        free(p);
        return;
    }
    if (status != 0) {
        us_api_reply_error(p->req, 503, "not committed: %s", raft_strerror(status));
        json_decref(p->reply);
    } else if (result == US_APPLY_NOOP && p->status == 202) {
        us_api_reply_error(p->req, 409, "the state changed meanwhile; try again");
        json_decref(p->reply);
    } else if (result == US_APPLY_BAD) {
        us_api_reply_error(p->req, 400, "the command was rejected");
        json_decref(p->reply);
    } else {
        us_api_reply_json(p->req, p->status, p->reply);
    }
    free(p);
}

static void propose(us_agent *a, us_api_req *r, json_t *cmd, int status, json_t *reply)
{
    pending *p = calloc(1, sizeof *p);
    p->agent = a;
    p->req = r;
    p->reply = reply;
    p->status = status;
    int rc = us_agent_apply(a, cmd, committed, p);
    if (rc == RAFT_NOTLEADER) {
        /* Leadership moved between our check and the proposal: the CLI retries this. */
        us_api_reply_error(r, 503, "no leader");
        json_decref(reply);
        free(p);
    } else if (rc != 0) {
        us_api_reply_error(r, 503, "cannot propose: %s", raft_strerror(rc));
        json_decref(reply);
        free(p);
    }
}

/* "/v1/services/NAME/ACTION" -> NAME, ACTION (false if malformed). */
static bool split_path(const char *path, const char *prefix, char name[US_NAME_MAX],
                       char action[32])
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0)
        return false;
    const char *n = path + pl;
    const char *slash = strchr(n, '/');
    if (!slash || slash == n || (size_t)(slash - n) >= US_NAME_MAX)
        return false;
    const char *act = slash + 1;
    if (!act[0] || strchr(act, '/') || strlen(act) >= 32)
        return false;
    memcpy(name, n, (size_t)(slash - n));
    name[slash - n] = '\0';
    strcpy(action, act);
    return true;
}

#define BY_MAX 160

/* Who asks for a change, named in the events' causes: the client's word for itself (`by=WHO`,
 * default "API"), the name of the token it presented and its address, e.g.
 * "CLI (token admin from 127.0.0.1)". */
static bool get_by(us_api_req *r, char by[BY_MAX])
{
    const char *v = us_api_req_query(r, "by");
    size_t n = v ? strlen(v) : 0;
    if (v &&
        (n < 1 || n > 32 ||
         strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)) {
        us_api_reply_error(r, 400, "invalid by='%.40s': expected 1 to 32 of A-Z a-z 0-9 _ . -", v);
        return false;
    }
    const us_api_who *w = us_api_req_who(r);
    const char *name = v ? v : "API";
    if (w->token[0] && w->peer[0])
        snprintf(by, BY_MAX, "%s (token %s from %s)", name, w->token, w->peer);
    else if (w->token[0] || w->peer[0])
        snprintf(by, BY_MAX, "%s (%s%s)", name, w->token[0] ? "token " : "from ",
                 w->token[0] ? w->token : w->peer);
    else
        snprintf(by, BY_MAX, "%s", name);
    return true;
}

static void propose_stamped(us_agent *a, us_api_req *r, json_t *cmd, const char *cause, int status,
                            json_t *reply)
{
    propose(a, r, us_cmd_stamp(cmd, us_wall_ms(), cause), status, reply);
}

/* Checks that need a real node (the leader's): devices of VIPs, proxy ports. Problems are
 * answered like parse errors, and nothing changes. */
static bool local_checks(us_agent *a, us_api_req *r, const us_service_set *set)
{
    json_t *problems = json_array();
    for (int i = 0; i < set->n; i++) {
        const us_service_def *d = &set->svc[i];
        for (int k = 0; k < d->n_vips; k++)
            if (!us_vip_dev_exists(&d->vips[k]))
                json_array_append_new(
                    problems, json_sprintf("[service %s] vip '%s': no network interface "
                                           "'%s' on %s",
                                           d->name, d->vips[k].text, d->vips[k].dev, a->cfg.name));
        if (!d->proxy_listen[0])
            continue;
        /* A proxy this agent already runs for the same service holds the port itself. */
        bool ours = us_proxies_find(&a->proxies, d->name, d->proxy_listen) != NULL;
        char err[160];
        if (!ours && us_tcp_check_free(d->proxy_listen, err, sizeof err) != 0)
            json_array_append_new(
                problems, json_sprintf("[service %s] proxy: %s on %s", d->name, err, a->cfg.name));
    }
    if (json_array_size(problems) == 0) {
        json_decref(problems);
        return true;
    }
    us_api_reply_json(
        r, 400, json_pack("{s:s, s:o}", "error", "invalid services file", "problems", problems));
    return false;
}

static void h_apply(us_api_req *r, void *data)
{
    us_agent *a = data;
    char by[BY_MAX];
    if (!get_by(r, by))
        return;
    size_t len;
    const char *body = us_api_req_body(r, &len);
    const char *file = us_api_req_query(r, "file");
    us_service_set *set = calloc(1, sizeof *set);
    us_errors *err = calloc(1, sizeof *err);
    if (us_config_parse_services(body, len, file && file[0] ? file : "services", set, err) != 0) {
        json_t *problems = json_array();
        for (int i = 0; i < err->n; i++)
            json_array_append_new(problems, json_string(err->msg[i]));
        if (err->dropped)
            json_array_append_new(problems,
                                  json_sprintf("... and %d more problem(s)", err->dropped));
        us_api_reply_json(
            r, 400,
            json_pack("{s:s, s:o}", "error", "invalid services file", "problems", problems));
    } else if (require_leader(a, r) && local_checks(a, r, set)) {
        json_t *names = json_array(), *removed = json_array();
        for (int i = 0; i < set->n; i++)
            json_array_append_new(names, json_string(set->svc[i].name));
        const us_state *s = &a->fsm.state;
        for (int i = 0; i < s->services.n; i++) {
            bool kept = false;
            for (int k = 0; k < set->n; k++)
                kept |= strcmp(set->svc[k].name, s->services.svc[i].name) == 0;
            if (!kept)
                json_array_append_new(removed, json_string(s->services.svc[i].name));
        }
        char cause[US_REASON_MAX];
        if (file && file[0])
            snprintf(cause, sizeof cause, "services file %.*s applied by %s", 64, file, by);
        else
            snprintf(cause, sizeof cause, "services applied by %s", by);
        us_info("applying %d service definition(s): %s", set->n, cause);
        propose_stamped(a, r, us_cmd_services(set), cause, 200,
                        json_pack("{s:o, s:o}", "services", names, "removed", removed));
    }
    if (set)
        us_service_set_free(set);
    free(set);
    free(err);
}

/* R13: whether a planned move may go to `to`: the service keeps no synchronous set (or it is
 * empty or waived), or `to` is a member. */
static bool sync_member_or_free(const us_state *s, int k, const char *to)
{
    const us_assignment *as = &s->asg[k];
    if (s->services.svc[k].synchronous == 0 || as->n_sync == 0 || as->sync_waived)
        return true;
    for (int i = 0; i < as->n_sync; i++)
        if (strcmp(as->sync[i], to) == 0)
            return true;
    return false;
}

/* A switchover of a service nobody holds: with force=1, an operator accepts losing what only the
 * lost active had (R12/R13) and may name the next active. */
static void accept_loss(us_agent *a, us_api_req *r, int k, const char *to, const char *by)
{
    const us_assignment *as = &a->fsm.state.asg[k];
    const char *force = us_api_req_query(r, "force");
    bool held_back = strstr(as->reason, "--force` accepts the loss") != NULL; /* US_LOSS_NOTE */
    if (!force || strcmp(force, "1") != 0) {
        us_api_reply_error(r, 409, "'%s' has no active instance to switch over from%s", as->service,
                           held_back ? " (a promotion would lose writes only the lost active had; "
                                       "--force accepts that)"
                                     : "");
        return;
    }
    bool has_to = to && to[0];
    char cause[US_REASON_MAX];
    snprintf(cause, sizeof cause, "loss accepted by %.64s (switchover --force%s%.*s)", by,
             has_to ? " to " : "", US_NAME_MAX, has_to ? to : "");
    us_warn("%s: %s", as->service, cause);
    json_t *reply =
        json_pack("{s:s, s:n, s:o, s:I}", "service", as->service, "from", "to",
                  has_to ? json_string(to) : json_null(), "epoch", (json_int_t)as->epoch);
    propose_stamped(a, r, us_cmd_accept_loss(as->service, to), cause, 202, reply);
}

static void do_switchover(us_agent *a, us_api_req *r, int k, const char *by)
{
    const us_state *s = &a->fsm.state;
    const char *name = s->asg[k].service;
    const char *to = us_api_req_query(r, "to");
    if (to && to[0]) {
        int n = us_state_find_node(s, to);
        if (n < 0 || s->nodes[n].left) {
            us_api_reply_error(r, 404, "unknown node '%s'", to);
            return;
        }
        if (strcmp(s->asg[k].active, to) == 0) {
            us_api_reply_error(r, 409, "'%s' is already active on %s", name, to);
            return;
        }
        if (!sync_member_or_free(s, k, to)) {
            char members[US_MAX_NODES * (US_NAME_MAX + 2)] = "";
            for (int i = 0; i < s->asg[k].n_sync; i++)
                snprintf(members + strlen(members), sizeof members - strlen(members), "%s%s",
                         i ? ", " : "", s->asg[k].sync[i]);
            us_api_reply_error(r, 409,
                               "'%s' keeps a synchronous set (%s): only a member may take over "
                               "by switchover; %s may lack acknowledged writes",
                               name, members, to);
            return;
        }
    }
    if (!s->asg[k].active[0]) {
        accept_loss(a, r, k, to, by);
        return;
    }
    if (s->asg[k].demoting) {
        us_api_reply_error(r, 409, "a switchover of '%s' is already in progress", name);
        return;
    }
    bool has_to = to && to[0];
    us_info("%s: switchover requested by %s from %s%s%s", name, by, s->asg[k].active,
            has_to ? " to " : "", has_to ? to : "");
    char cause[US_REASON_MAX];
    snprintf(cause, sizeof cause, "switchover requested by %s%s%.*s", by, has_to ? " to " : "",
             US_NAME_MAX, has_to ? to : "");
    json_t *reply =
        json_pack("{s:s, s:s, s:o, s:I}", "service", name, "from", s->asg[k].active, "to",
                  has_to ? json_string(to) : json_null(), "epoch", (json_int_t)s->asg[k].epoch);
    propose_stamped(a, r, us_cmd_switchover(name, s->asg[k].gen, to), cause, 202, reply);
}

static void do_pause(us_agent *a, us_api_req *r, int k, bool paused, const char *by)
{
    const us_assignment *as = &a->fsm.state.asg[k];
    json_t *reply = json_pack("{s:s, s:b}", "service", as->service, "paused", paused);
    if (as->paused == paused) {
        us_api_reply_json(r, 200, reply);
        return;
    }
    char cause[US_REASON_MAX];
    snprintf(cause, sizeof cause, "%s by %s", paused ? "paused" : "resumed", by);
    us_info("%s: %s", as->service, cause);
    propose_stamped(a, r, us_cmd_pause(as->service, paused), cause, 202, reply);
}

static void do_reset(us_agent *a, us_api_req *r, int k, const char *by)
{
    const us_state *s = &a->fsm.state;
    const us_assignment *as = &s->asg[k];
    const char *node = us_api_req_query(r, "node");
    if (node && !node[0])
        node = NULL;
    if (node && us_state_find_node(s, node) < 0) {
        us_api_reply_error(r, 404, "unknown node '%s'", node);
        return;
    }
    char cause[US_REASON_MAX];
    snprintf(cause, sizeof cause, "failures cleared by %s", by);
    us_info("%s: failures%s%s cleared by %s", as->service, node ? " on " : "", node ? node : "",
            by);
    /* Nothing to clear is a no-op commit, still answered 200. */
    propose_stamped(a, r, us_cmd_reset(as->service, node ? node : ""), cause, 200,
                    json_pack("{s:s, s:o}", "service", as->service, "node",
                              node ? json_string(node) : json_null()));
}

static void h_service_post(us_api_req *r, void *data)
{
    us_agent *a = data;
    char name[US_NAME_MAX], action[32], by[BY_MAX];
    if (!split_path(us_api_req_path(r), "/v1/services/", name, action) ||
        (strcmp(action, "switchover") != 0 && strcmp(action, "pause") != 0 &&
         strcmp(action, "resume") != 0 && strcmp(action, "reset") != 0)) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    if (!get_by(r, by))
        return;
    /* Only the leader's state is current: check against it, not a follower's. */
    if (!require_leader(a, r))
        return;
    int k = us_state_find_service(&a->fsm.state, name);
    if (k < 0) {
        us_api_reply_error(r, 404, "unknown service '%s'", name);
        return;
    }
    if (strcmp(action, "switchover") == 0)
        do_switchover(a, r, k, by);
    else if (strcmp(action, "reset") == 0)
        do_reset(a, r, k, by);
    else
        do_pause(a, r, k, strcmp(action, "pause") == 0, by);
}

static void h_node_post(us_api_req *r, void *data)
{
    us_agent *a = data;
    char name[US_NAME_MAX], action[32], by[BY_MAX];
    if (!split_path(us_api_req_path(r), "/v1/nodes/", name, action) ||
        (strcmp(action, "remove") != 0 && strcmp(action, "drain") != 0 &&
         strcmp(action, "undrain") != 0)) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    if (!get_by(r, by))
        return;
    if (!require_leader(a, r))
        return;
    const us_state *s = &a->fsm.state;
    int n = us_state_find_node(s, name);
    if (n < 0 || s->nodes[n].left) {
        us_api_reply_error(r, 404, "unknown node '%s'", name);
        return;
    }
    char cause[US_REASON_MAX];
    if (strcmp(action, "remove") == 0) {
        snprintf(cause, sizeof cause, "removal requested by %s", by);
        us_info("removal of node %s requested by %s", name, by);
        propose_stamped(a, r, us_cmd_node_flags(name, true, true, false), cause, 202,
                        json_pack("{s:s}", "node", name));
        return;
    }
    bool drained = strcmp(action, "drain") == 0;
    json_t *reply = json_pack("{s:s, s:b}", "node", name, "drained", drained);
    if (s->nodes[n].drained == drained) {
        us_api_reply_json(r, 200, reply);
        return;
    }
    snprintf(cause, sizeof cause, "%s by %s", drained ? "drained" : "undrained", by);
    us_info("node %s %s", name, cause);
    propose_stamped(a, r, us_cmd_node_drain(name, drained), cause, 202, reply);
}

/* ---- events ---- */

/* Strict decimal; false on anything else (signs, spaces, overflow). */
static bool parse_u64(const char *v, uint64_t *out)
{
    if (!v[0] || strspn(v, "0123456789") != strlen(v) || strlen(v) > 19)
        return false;
    *out = strtoull(v, NULL, 10);
    return true;
}

/* "2026-11-26T10:41:02.123Z" (UTC). */
static void wall_text(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", date, (int)(ms % 1000));
}

static json_t *event_json(const us_event *e)
{
    json_t *j = us_event_to_json(e);
    /* API numbers are JSON integers (like "epoch"); seqs stay far below 2^63. */
    json_object_set_new(j, "seq", json_integer((json_int_t)e->seq));
    char t[32];
    wall_text(e->time_ms, t);
    json_object_set_new(j, "time", e->time_ms > 0 ? json_string(t) : json_null());
    return j;
}

/* The largest page of GET /v1/events (a bigger limit is cut to it; `more` says there is more). */
#define EVENTS_PAGE_MAX 1000

static void h_events(us_api_req *r, void *data)
{
    us_agent *a = data;
    if (strcmp(us_api_req_path(r), "/v1/events") != 0) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    uint64_t after = 0, limit = 100;
    const char *v = us_api_req_query(r, "after");
    if (v && !parse_u64(v, &after)) {
        us_api_reply_error(r, 400, "after='%.40s': expected an event sequence number >= 0", v);
        return;
    }
    v = us_api_req_query(r, "limit");
    if (v && (!parse_u64(v, &limit) || limit == 0)) {
        us_api_reply_error(r, 400, "limit='%.40s': expected a number from 1 to %d", v,
                           EVENTS_PAGE_MAX);
        return;
    }
    if (limit > EVENTS_PAGE_MAX)
        limit = EVENTS_PAGE_MAX;
    const char *service = us_api_req_query(r, "service");
    const char *node = us_api_req_query(r, "node");
    const us_state *s = &a->fsm.state;
    uint64_t first = us_state_first_event(s), last = s->event_seq;
    json_t *events = json_array();
    bool more = false;
    /* The oldest `limit` matches after `after`: a follower that continues from the last one it
     * got skips nothing. */
    for (uint64_t q = after + 1 > first ? after + 1 : first; first && q <= last; q++) {
        const us_event *e = us_state_event(s, q);
        if (!e || (service && strcmp(e->service, service) != 0) ||
            (node && strcmp(e->node, node) != 0))
            continue;
        if (json_array_size(events) == limit) {
            more = true;
            break;
        }
        json_array_append_new(events, event_json(e));
    }
    us_api_reply_json(r, 200,
                      json_pack("{s:I, s:I, s:b, s:o}", "first", (json_int_t)first, "last",
                                (json_int_t)last, "more", more, "events", events));
}

/* GET /v1/services/NAME/role[/standby]: 200 when this node is the active (a ready standby), 503
 * with its role otherwise (role.h); for load balancers' health checks, so no token is needed
 * (api_guard.c). Answered from this node's own view: the active is the node whose instance acts
 * under the current epoch with a lease, and nobody else says 200 (a cut-off former active stops
 * saying it when its lease runs out, when it stops acting). */
static void service_role(us_agent *a, us_api_req *r, const char *name, bool standby)
{
    const us_state *s = &a->fsm.state;
    int k = us_state_find_service(s, name);
    if (k < 0) {
        us_api_reply_error(r, 404, "unknown service '%s'", name);
        return;
    }
    const us_assignment *as = &s->asg[k];
    us_report own;
    bool have = us_agent_report(a, a->cfg.name, name, k, &own);
    us_role_answer ans = us_role_of(&s->services.svc[k], as, a->cfg.name, a->inc,
                                    have ? &own.obs : NULL, us_agent_lease_ok(a, us_now_ms(), 0));
    bool ok = standby ? ans.standby : ans.active;
    us_api_reply_json(r, ok ? 200 : 503,
                      json_pack("{s:s, s:s, s:s, s:o, s:b}", "service", name, "node", a->cfg.name,
                                "role", ans.role, "epoch",
                                ans.epoch ? json_integer((json_int_t)ans.epoch) : json_null(),
                                "demoting", ans.demoting));
}

static void h_service_get(us_api_req *r, void *data)
{
    us_agent *a = data;
    char name[US_NAME_MAX], action[32];
    bool standby;
    if (us_guard_role_path(us_api_req_path(r), name, sizeof name, &standby)) {
        service_role(a, r, name, standby);
        return;
    }
    if (!split_path(us_api_req_path(r), "/v1/services/", name, action) ||
        strcmp(action, "log") != 0) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    const char *l = us_api_req_query(r, "lines");
    long lines = l ? strtol(l, NULL, 10) : 100;
    if (lines <= 0 || lines > 100000)
        lines = 100;
    char path[PATH_MAX + 96];
    snprintf(path, sizeof path, "%s/logs/%s.log", a->cfg.data_dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        us_api_reply_error(r, 404, "no log for '%s' on %s", name, a->cfg.name);
        return;
    }
    /* Find where the last `lines` lines start, reading backwards a block at a time; then the
     * file from there is streamed (not copied). A trailing newline ends the last line. */
    off_t size = st.st_size, start = 0;
    long seen = 0;
    char block[16384];
    bool found = false;
    for (off_t end = size; end > 0 && !found;) {
        off_t from = end > (off_t)sizeof block ? end - (off_t)sizeof block : 0;
        ssize_t got = pread(fd, block, (size_t)(end - from), from);
        if (got <= 0)
            break;
        for (ssize_t i = got - 1; i >= 0; i--) {
            if (block[i] == '\n' && from + i != size - 1 && ++seen == lines) {
                start = from + i + 1;
                found = true;
                break;
            }
        }
        end = from;
    }
    us_api_reply_fd(r, 200, "text/plain; charset=utf-8", fd, start, (size_t)(size - start));
}

void us_agent_api_routes(us_agent *a)
{
    us_api_route(a->api, "GET", "/v1/status", h_status, a);
    us_api_route(a->api, "GET", "/v1/version", h_version, a);
    us_api_route(a->api, "GET", "/v1/events", h_events, a);
    us_api_route(a->api, "POST", "/v1/services", h_apply, a);
    us_api_route(a->api, "POST", "/v1/services/", h_service_post, a);
    us_api_route(a->api, "GET", "/v1/services/", h_service_get, a);
    us_api_route(a->api, "POST", "/v1/nodes/", h_node_post, a);
    us_api_route(a->api, "GET", "/metrics", us_metrics_http, a); /* metrics.h */
    us_dashboard_routes(a->api);
}

/* ---- start ---- */

/* A PEM file into memory (NUL-terminated), or NULL with the reason in err. */
static char *read_pem(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n > cap) {
        snprintf(err, errlen, "%s: %s", path,
                 !buf ? "out of memory"
                 : n  ? "larger than 64 KiB"
                      : "empty");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int us_agent_api_start(us_agent *a, char *err, size_t errlen)
{
    const us_node_config *cfg = &a->cfg;
    bool tls = cfg->api_tls_cert[0] && cfg->api_tls_key[0];
    int rc;
    if (tls) {
        char *cert = read_pem(cfg->api_tls_cert, err, errlen);
        char *key = cert ? read_pem(cfg->api_tls_key, err, errlen) : NULL;
        rc = key ? us_api_start_tls(a->loop, cfg->api, cert, key, &a->api, err, errlen) : -1;
        if (key) {
            sodium_memzero(key, strlen(key));
            free(key);
        }
        free(cert);
    } else {
        rc = us_api_start(a->loop, cfg->api, &a->api, err, errlen);
    }
    if (rc != 0)
        return rc < 0 ? rc : -EIO;
    us_guard_config g = {
        .tokens = &a->cfg.tokens,
        .metrics_auth = cfg->metrics_auth,
        .api = cfg->api,
        .tls = tls,
    };
    us_api_set_guard(a->api, &g);
    us_agent_api_routes(a);
    us_info("API on %s://%s (%d token(s)%s)", tls ? "https" : "http", cfg->api, cfg->tokens.n,
            cfg->metrics_auth ? ", /metrics needs one too" : "");
    return 0;
}

/* ---- forwarding (prepared; the cluster RPC is not wired yet) ---- */

json_t *us_agent_api_forward_request(const us_api_req *r)
{
    size_t len;
    const char *body = us_api_req_body(r, &len);
    const us_api_who *w = us_api_req_who(r);
    return json_pack("{s:s, s:s, s:s, s:s%, s:{s:s, s:s}}", "method", us_api_req_method(r), "path",
                     us_api_req_target(r), "content_type", us_api_req_content_type(r), "body", body,
                     len, "who", "token", w->token, "peer", w->peer);
}

int us_agent_api_execute(us_agent *a, const char *request, size_t len, us_api_done done, void *data)
{
    json_error_t jerr;
    json_t *j = json_loadb(request, len, 0, &jerr);
    const char *method = json_string_value(json_object_get(j, "method"));
    const char *path = json_string_value(json_object_get(j, "path"));
    const char *ct = json_string_value(json_object_get(j, "content_type"));
    json_t *body = json_object_get(j, "body");
    json_t *who = json_object_get(j, "who");
    const char *token = json_string_value(json_object_get(who, "token"));
    const char *peer = json_string_value(json_object_get(who, "peer"));
    /* Changes, and the one read that asks for the leader's view (h_status). */
    bool status_read =
        method && path && strcmp(method, "GET") == 0 && strncmp(path, "/v1/status?", 11) == 0;
    if (!method || (!us_guard_mutating(method) && !status_read) || !path || path[0] != '/' || !ct ||
        !json_is_string(body) || !token || !peer || !a->api) {
        json_decref(j);
        static const char bad[] = "{\"error\": \"malformed forwarded request\"}\n";
        done(400, "application/json", bad, sizeof bad - 1, data);
        return -1;
    }
    us_api_who w = {0};
    us_strlcpy(w.token, token, sizeof w.token);
    us_strlcpy(w.peer, peer, sizeof w.peer);
    us_api_execute(a->api, method, path, ct, json_string_value(body), json_string_length(body), &w,
                   done, data);
    json_decref(j);
    return 0;
}
