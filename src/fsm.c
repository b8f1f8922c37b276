/* fsm.c — see fsm.h. */
#include "fsm.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int us_state_find_node(const us_state *s, const char *name)
{
    for (int i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return i;
    return -1;
}

bool us_state_holds_active(const us_state *s, const char *node)
{
    for (int k = 0; k < s->services.n; k++)
        if (strcmp(s->asg[k].active, node) == 0)
            return true;
    return false;
}

int us_state_find_service(const us_state *s, const char *name)
{
    for (int i = 0; i < s->services.n; i++)
        if (strcmp(s->services.svc[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- JSON helpers ---- */

const char *us_json_str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

uint64_t us_json_u64(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    if (json_is_string(v)) /* 64-bit values that do not fit json_int_t travel as strings */
        return strtoull(json_string_value(v), NULL, 10);
    return 0;
}

json_t *us_u64_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
}

static json_t *names_json(char names[][US_NAME_MAX], int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

static int names_from_json(char names[][US_NAME_MAX], int *n, const json_t *a)
{
    *n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (*n >= US_MAX_NODES || !json_is_string(v))
            return -1;
        us_strlcpy(names[(*n)++], json_string_value(v), US_NAME_MAX);
    }
    return 0;
}

static json_t *vip_to_json(const us_vip *v)
{
    char addr[INET6_ADDRSTRLEN] = "";
    inet_ntop(v->family, v->addr, addr, sizeof addr);
    return json_pack("{s:s, s:i, s:s, s:s}", "addr", addr, "prefix", v->prefix, "dev", v->dev,
                     "text", v->text);
}

static int vip_from_json(us_vip *v, const json_t *j)
{
    memset(v, 0, sizeof *v);
    const char *addr = us_json_str(j, "addr");
    v->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(v->family, addr, v->addr) != 1)
        return -1;
    v->prefix = (int)json_integer_value(json_object_get(j, "prefix"));
    if (v->prefix < 0 || v->prefix > (v->family == AF_INET ? 32 : 128))
        return -1;
    if (!us_strlcpy(v->dev, us_json_str(j, "dev"), sizeof v->dev) || !v->dev[0])
        return -1;
    us_strlcpy(v->text, us_json_str(j, "text"), sizeof v->text);
    return 0;
}

json_t *us_service_def_to_json(const us_service_def *d)
{
    json_t *vips = json_array();
    for (int i = 0; i < d->n_vips; i++)
        json_array_append_new(vips, vip_to_json(&d->vips[i]));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:i, s:i}", "name", d->name, "run", d->run, "promote",
        d->promote, "demote", d->demote, "standby", d->standby == US_STANDBY_HOT ? "hot" : "cold",
        "standbys", d->standbys, "nodes", names_json((char(*)[US_NAME_MAX])d->nodes, d->n_nodes),
        "hook_timeout_ms", d->hook_timeout_ms, "stop_timeout_ms", d->stop_timeout_ms);
    json_object_set_new(j, "vips", vips);
    json_object_set_new(j, "announce_count", json_integer(d->announce_count));
    json_object_set_new(j, "announce_interval_ms", json_integer(d->announce_interval_ms));
    json_object_set_new(j, "announce_repeat_ms", json_integer(d->announce_repeat_ms));
    json_object_set_new(j, "proxy_listen", json_string(d->proxy_listen));
    json_object_set_new(j, "proxy_port", json_integer(d->proxy_port));
    json_object_set_new(j, "backend_host", json_string(d->backend_host));
    json_object_set_new(j, "hold_ms", json_integer(d->hold_ms));
    json_object_set_new(j, "drain_ms", json_integer(d->drain_ms));
    json_object_set_new(j, "max_conns", json_integer(d->max_conns));
    return j;
}

static int jint(const json_t *j, const char *key)
{
    return (int)json_integer_value(json_object_get(j, key));
}

int us_service_def_from_json(us_service_def *d, const json_t *j)
{
    memset(d, 0, sizeof *d);
    if (!json_is_object(j) || !us_name_valid(us_json_str(j, "name")))
        return -1;
    us_strlcpy(d->name, us_json_str(j, "name"), sizeof d->name);
    us_strlcpy(d->run, us_json_str(j, "run"), sizeof d->run);
    us_strlcpy(d->promote, us_json_str(j, "promote"), sizeof d->promote);
    us_strlcpy(d->demote, us_json_str(j, "demote"), sizeof d->demote);
    d->standby = strcmp(us_json_str(j, "standby"), "hot") == 0 ? US_STANDBY_HOT : US_STANDBY_COLD;
    d->standbys = jint(j, "standbys");
    d->hook_timeout_ms = jint(j, "hook_timeout_ms");
    d->stop_timeout_ms = jint(j, "stop_timeout_ms");
    json_t *vips = json_object_get(j, "vips");
    if (json_array_size(vips) > US_MAX_VIPS)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(vips, i, v)
    {
        if (vip_from_json(&d->vips[d->n_vips++], v) != 0)
            return -1;
    }
    d->announce_count = jint(j, "announce_count");
    d->announce_interval_ms = jint(j, "announce_interval_ms");
    d->announce_repeat_ms = jint(j, "announce_repeat_ms");
    us_strlcpy(d->proxy_listen, us_json_str(j, "proxy_listen"), sizeof d->proxy_listen);
    d->proxy_port = jint(j, "proxy_port");
    us_strlcpy(d->backend_host, us_json_str(j, "backend_host"), sizeof d->backend_host);
    d->hold_ms = jint(j, "hold_ms");
    d->drain_ms = jint(j, "drain_ms");
    d->max_conns = jint(j, "max_conns");
    return names_from_json(d->nodes, &d->n_nodes, json_object_get(j, "nodes"));
}

json_t *us_assignment_to_json(const us_assignment *a)
{
    return json_pack("{s:s, s:o, s:o, s:s, s:o, s:b, s:s, s:o, s:s, s:o}", "service", a->service,
                     "gen", us_u64_json(a->gen), "epoch", us_u64_json(a->epoch), "active",
                     a->active, "active_inc", us_u64_json(a->active_inc), "demoting", a->demoting,
                     "target", a->target, "standbys",
                     names_json((char(*)[US_NAME_MAX])a->standbys, a->n_standbys), "reason",
                     a->reason, "since_version", us_u64_json(a->since_version));
}

static int assignment_from_json(us_assignment *a, const json_t *j)
{
    memset(a, 0, sizeof *a);
    if (!json_is_object(j))
        return -1;
    us_strlcpy(a->service, us_json_str(j, "service"), sizeof a->service);
    a->gen = us_json_u64(j, "gen");
    a->epoch = us_json_u64(j, "epoch");
    us_strlcpy(a->active, us_json_str(j, "active"), sizeof a->active);
    a->active_inc = us_json_u64(j, "active_inc");
    a->demoting = json_is_true(json_object_get(j, "demoting"));
    us_strlcpy(a->target, us_json_str(j, "target"), sizeof a->target);
    us_strlcpy(a->reason, us_json_str(j, "reason"), sizeof a->reason);
    a->since_version = us_json_u64(j, "since_version");
    return names_from_json(a->standbys, &a->n_standbys, json_object_get(j, "standbys"));
}

static json_t *node_to_json(const us_node *n)
{
    return json_pack("{s:s, s:o, s:s, s:s, s:o, s:b, s:b, s:b, s:b}", "name", n->name, "id",
                     us_u64_json(n->id), "address", n->address, "api", n->api, "incarnation",
                     us_u64_json(n->incarnation), "voter", n->voter, "leaving", n->leaving,
                     "removing", n->removing, "left", n->left);
}

static int node_from_json(us_node *n, const json_t *j)
{
    memset(n, 0, sizeof *n);
    if (!json_is_object(j) || !us_name_valid(us_json_str(j, "name")))
        return -1;
    us_strlcpy(n->name, us_json_str(j, "name"), sizeof n->name);
    n->id = us_json_u64(j, "id");
    us_strlcpy(n->address, us_json_str(j, "address"), sizeof n->address);
    us_strlcpy(n->api, us_json_str(j, "api"), sizeof n->api);
    n->incarnation = us_json_u64(j, "incarnation");
    n->voter = json_is_true(json_object_get(j, "voter"));
    n->leaving = json_is_true(json_object_get(j, "leaving"));
    n->removing = json_is_true(json_object_get(j, "removing"));
    n->left = json_is_true(json_object_get(j, "left"));
    return 0;
}

json_t *us_state_to_json(const us_state *s)
{
    json_t *nodes = json_array(), *svcs = json_array(), *asg = json_array(), *ret = json_array();
    for (int i = 0; i < s->n_nodes; i++)
        json_array_append_new(nodes, node_to_json(&s->nodes[i]));
    for (int i = 0; i < s->services.n; i++) {
        json_array_append_new(svcs, us_service_def_to_json(&s->services.svc[i]));
        json_array_append_new(asg, us_assignment_to_json(&s->asg[i]));
    }
    for (int i = 0; i < s->n_retired; i++)
        json_array_append_new(ret, json_pack("{s:s, s:o}", "name", s->retired[i].name, "epoch",
                                             us_u64_json(s->retired[i].epoch)));
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "format", 1, "version",
                     us_u64_json(s->version), "nodes", nodes, "services", svcs, "assignments", asg,
                     "retired", ret, "epoch_floor", us_u64_json(s->epoch_floor));
}

int us_state_from_json(us_state *out, const json_t *j)
{
    us_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    int rc = -1;
    json_t *nodes = json_object_get(j, "nodes"), *svcs = json_object_get(j, "services");
    json_t *asg = json_object_get(j, "assignments"), *ret = json_object_get(j, "retired");
    if (!json_is_array(nodes) || !json_is_array(svcs) || !json_is_array(asg) ||
        json_array_size(nodes) > US_MAX_NODES || json_array_size(svcs) > US_MAX_SERVICES ||
        json_array_size(asg) != json_array_size(svcs) || !json_is_array(ret) ||
        json_array_size(ret) > US_RETIRED_MAX)
        goto out;
    s->version = us_json_u64(j, "version");
    s->epoch_floor = us_json_u64(j, "epoch_floor");
    size_t i;
    json_t *v;
    json_array_foreach(nodes, i, v) if (node_from_json(&s->nodes[s->n_nodes++], v) != 0) goto out;
    json_array_foreach(svcs, i, v)
    {
        if (us_service_def_from_json(&s->services.svc[i], v) != 0 ||
            assignment_from_json(&s->asg[i], json_array_get(asg, i)) != 0)
            goto out;
        s->services.n++;
    }
    json_array_foreach(ret, i, v)
    {
        if (!json_is_object(v) || !us_name_valid(us_json_str(v, "name")))
            goto out;
        us_strlcpy(s->retired[i].name, us_json_str(v, "name"), US_NAME_MAX);
        s->retired[i].epoch = us_json_u64(v, "epoch");
        s->n_retired++;
    }
    *out = *s;
    rc = 0;
out:
    free(s);
    return rc;
}

/* ---- Commands ---- */

json_t *us_cmd_node_up(const us_node *n)
{
    return json_pack("{s:s, s:o}", "op", "node_up", "node", node_to_json(n));
}

json_t *us_cmd_node_flags(const char *name, bool leaving, bool removing, bool left)
{
    return json_pack("{s:s, s:s, s:b, s:b, s:b}", "op", "node_flags", "name", name, "leaving",
                     leaving, "removing", removing, "left", left);
}

json_t *us_cmd_services(const us_service_set *set)
{
    json_t *a = json_array();
    for (int i = 0; i < set->n; i++)
        json_array_append_new(a, us_service_def_to_json(&set->svc[i]));
    return json_pack("{s:s, s:o}", "op", "services", "services", a);
}

json_t *us_cmd_assign(const us_assignment *next)
{
    return json_pack("{s:s, s:o}", "op", "assign", "asg", us_assignment_to_json(next));
}

json_t *us_cmd_switchover(const char *service, uint64_t gen, const char *target)
{
    return json_pack("{s:s, s:s, s:o, s:s}", "op", "switchover", "service", service, "gen",
                     us_u64_json(gen), "target", target ? target : "");
}

int us_cmd_encode(json_t *cmd, struct raft_buffer *buf)
{
    char *text = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    if (!text)
        return -1;
    size_t n = strlen(text);
    /* libraft wants 8-byte aligned entry payload sizes. */
    size_t padded = (n + 1 + 7) & ~(size_t)7;
    buf->base = raft_calloc(1, padded);
    if (!buf->base) {
        free(text);
        return -1;
    }
    memcpy(buf->base, text, n);
    buf->len = padded;
    free(text);
    return 0;
}

static int apply_node_up(us_state *s, const json_t *cmd)
{
    us_node n;
    if (node_from_json(&n, json_object_get(cmd, "node")) != 0)
        return US_APPLY_BAD;
    int i = us_state_find_node(s, n.name);
    bool is_new = i < 0;
    if (i < 0) {
        if (s->n_nodes >= US_MAX_NODES)
            return US_APPLY_BAD;
        /* Keep the list sorted by name: it is the default preference order of services. */
        for (i = 0; i < s->n_nodes && strcmp(s->nodes[i].name, n.name) < 0; i++)
            ;
        memmove(&s->nodes[i + 1], &s->nodes[i], sizeof s->nodes[0] * (size_t)(s->n_nodes - i));
        s->n_nodes++;
    } else if (memcmp(&s->nodes[i], &n, sizeof n) == 0) {
        return US_APPLY_NOOP;
    }
    if (is_new || s->nodes[i].incarnation != n.incarnation) {
        n.leaving = false; /* a (re)started agent is available again */
        n.removing = false;
        n.left = false;
    }
    s->nodes[i] = n;
    return US_APPLY_OK;
}

static int apply_node_flags(us_state *s, const json_t *cmd)
{
    int i = us_state_find_node(s, us_json_str(cmd, "name"));
    if (i < 0)
        return US_APPLY_NOOP;
    bool leaving = json_is_true(json_object_get(cmd, "leaving"));
    bool removing = json_is_true(json_object_get(cmd, "removing"));
    bool left = json_is_true(json_object_get(cmd, "left"));
    if (s->nodes[i].leaving == leaving && s->nodes[i].removing == removing &&
        s->nodes[i].left == left)
        return US_APPLY_NOOP;
    s->nodes[i].leaving = leaving;
    s->nodes[i].removing = removing;
    s->nodes[i].left = left;
    return US_APPLY_OK;
}

/* The epoch a (re-)added service starts from: epochs never go back for a name, also after the
 * bounded retired list forgot it (then the floor, the largest epoch ever forgotten, bounds it). */
static uint64_t start_epoch(const us_state *s, const char *name)
{
    for (int i = 0; i < s->n_retired; i++)
        if (strcmp(s->retired[i].name, name) == 0)
            return s->retired[i].epoch > s->epoch_floor ? s->retired[i].epoch : s->epoch_floor;
    return s->epoch_floor;
}

static void retire(us_state *s, const char *name, uint64_t epoch)
{
    if (epoch == 0)
        return;
    for (int i = 0; i < s->n_retired; i++) {
        if (strcmp(s->retired[i].name, name) == 0) {
            /* Drop the old entry: the name goes to the newest position below. */
            memmove(&s->retired[i], &s->retired[i + 1],
                    sizeof s->retired[0] * (size_t)(s->n_retired - i - 1));
            s->n_retired--;
            break;
        }
    }
    if (s->n_retired == US_RETIRED_MAX) { /* forget the oldest, remembering its epoch */
        if (s->retired[0].epoch > s->epoch_floor)
            s->epoch_floor = s->retired[0].epoch;
        memmove(&s->retired[0], &s->retired[1], sizeof s->retired[0] * (US_RETIRED_MAX - 1));
        s->n_retired--;
    }
    us_strlcpy(s->retired[s->n_retired].name, name, US_NAME_MAX);
    s->retired[s->n_retired].epoch = epoch;
    s->n_retired++;
}

static int apply_services(us_state *s, const json_t *cmd)
{
    json_t *a = json_object_get(cmd, "services");
    if (!json_is_array(a) || json_array_size(a) > US_MAX_SERVICES)
        return US_APPLY_BAD;
    us_state *next = malloc(sizeof *next);
    if (!next)
        return US_APPLY_BAD;
    *next = *s;
    next->services.n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        us_service_def *d = &next->services.svc[next->services.n];
        if (us_service_def_from_json(d, v) != 0) {
            free(next);
            return US_APPLY_BAD;
        }
        us_assignment *asg = &next->asg[next->services.n];
        int old = us_state_find_service(s, d->name);
        if (old >= 0) {
            *asg = s->asg[old];
        } else {
            memset(asg, 0, sizeof *asg);
            us_strlcpy(asg->service, d->name, sizeof asg->service);
            asg->epoch = start_epoch(s, d->name);
        }
        next->services.n++;
    }
    for (int k = 0; k < s->services.n; k++)
        if (us_state_find_service(next, s->services.svc[k].name) < 0)
            retire(next, s->services.svc[k].name, s->asg[k].epoch);
    int rc = memcmp(&next->services, &s->services, sizeof s->services) == 0 ? US_APPLY_NOOP
                                                                            : US_APPLY_OK;
    *s = *next;
    free(next);
    return rc;
}

static int apply_assign(us_state *s, const json_t *cmd)
{
    us_assignment next;
    if (assignment_from_json(&next, json_object_get(cmd, "asg")) != 0)
        return US_APPLY_BAD;
    int i = us_state_find_service(s, next.service);
    if (i < 0 || s->asg[i].gen != next.gen)
        return US_APPLY_NOOP; /* stale decision */
    if (next.epoch < s->asg[i].epoch)
        return US_APPLY_BAD; /* epochs never go back */
    next.gen++;
    /* Stale-lease reports older than the role do not count against it (lease.h). */
    next.since_version = next.epoch != s->asg[i].epoch ? s->version + 1 : s->asg[i].since_version;
    s->asg[i] = next;
    return US_APPLY_OK;
}

static int apply_switchover(us_state *s, const json_t *cmd)
{
    int i = us_state_find_service(s, us_json_str(cmd, "service"));
    if (i < 0 || s->asg[i].gen != us_json_u64(cmd, "gen") || !s->asg[i].active[0])
        return US_APPLY_NOOP;
    us_assignment *a = &s->asg[i];
    a->demoting = true;
    us_strlcpy(a->target, us_json_str(cmd, "target"), sizeof a->target);
    const char *target = us_json_str(cmd, "target");
    snprintf(a->reason, sizeof a->reason, "switchover requested%s%s", target[0] ? " to " : "",
             target);
    a->gen++;
    return US_APPLY_OK;
}

int us_state_apply(us_state *s, const json_t *cmd)
{
    const char *op = us_json_str(cmd, "op");
    int rc = US_APPLY_BAD;
    if (strcmp(op, "node_up") == 0)
        rc = apply_node_up(s, cmd);
    else if (strcmp(op, "node_flags") == 0)
        rc = apply_node_flags(s, cmd);
    else if (strcmp(op, "services") == 0)
        rc = apply_services(s, cmd);
    else if (strcmp(op, "assign") == 0)
        rc = apply_assign(s, cmd);
    else if (strcmp(op, "switchover") == 0)
        rc = apply_switchover(s, cmd);
    if (rc == US_APPLY_OK)
        s->version++;
    return rc;
}

/* ---- libraft glue ---- */

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    us_fsm *f = rf->data;
    json_error_t jerr;
    /* Payload is NUL-padded JSON. */
    json_t *cmd = json_loadb(buf->base, strnlen(buf->base, buf->len), 0, &jerr);
    int rc = cmd ? us_state_apply(&f->state, cmd) : US_APPLY_BAD;
    json_decref(cmd);
    *result = (void *)(intptr_t)rc;
    if (rc == US_APPLY_OK && f->on_change)
        f->on_change(f->data);
    return 0; /* a bad command is a no-op, never a reason to stop the FSM */
}

static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    us_fsm *f = rf->data;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    if (!b)
        return RAFT_NOMEM;
    if (us_cmd_encode(us_state_to_json(&f->state), b) != 0) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)rf;
    for (unsigned i = 0; i < *n_bufs; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    us_fsm *f = rf->data;
    json_error_t jerr;
    json_t *j = json_loadb(buf->base, strnlen(buf->base, buf->len), 0, &jerr);
    int rc = j ? us_state_from_json(&f->state, j) : -1;
    json_decref(j);
    raft_free(buf->base); /* restore owns the buffer */
    if (rc != 0)
        return RAFT_MALFORMED;
    if (f->on_change)
        f->on_change(f->data);
    return 0;
}

void us_fsm_init(us_fsm *f, us_fsm_changed_cb on_change, void *data)
{
    memset(f, 0, sizeof *f);
    f->raft.version = 2;
    f->raft.data = f;
    f->raft.apply = fsm_apply;
    f->raft.snapshot = fsm_snapshot;
    f->raft.restore = fsm_restore;
    f->raft.snapshot_finalize = fsm_snapshot_finalize;
    f->on_change = on_change;
    f->data = data;
}
