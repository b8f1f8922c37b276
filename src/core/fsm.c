/* fsm.c — see fsm.h. */
#include "core/fsm.h"

#include <stdlib.h>
#include <string.h>

#include "lib/hostport.h"
#include "lib/index.h"

int us_state_find_node(const us_state *s, const char *name)
{
    for (int i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0)
            return i;
    return -1;
}

int us_state_find_node_from(const us_state *s, const char *name, int hint)
{
    if (hint >= 0 && hint < s->n_nodes && strcmp(s->nodes[hint].name, name) == 0)
        return hint;
    return us_state_find_node(s, name);
}

bool us_state_holds_active(const us_state *s, const char *node)
{
    for (int k = 0; k < s->services.n; k++)
        if (strcmp(s->asg[k].active, node) == 0)
            return true;
    return false;
}

int us_state_role_versions(const us_state *s, const char *node, uint64_t *min, uint64_t *max)
{
    int n = 0;
    *min = *max = 0;
    for (int k = 0; k < s->services.n; k++) {
        const us_assignment *a = &s->asg[k];
        if (strcmp(a->active, node) != 0)
            continue;
        if (n == 0 || a->since_version < *min)
            *min = a->since_version;
        if (a->since_version > *max)
            *max = a->since_version;
        n++;
    }
    return n;
}

void us_state_roles_by_node(const us_state *s, int held[US_MAX_NODES], uint64_t min[US_MAX_NODES],
                            uint64_t max[US_MAX_NODES])
{
    for (int k = 0; k < US_MAX_NODES; k++) {
        held[k] = 0;
        min[k] = max[k] = 0;
    }
    int k = 0; /* services of one holder tend to come together: try the last one first */
    for (int i = 0; i < s->services.n; i++) {
        const us_assignment *a = &s->asg[i];
        if (!a->active[0] || (k = us_state_find_node_from(s, a->active, k)) < 0) {
            k = 0;
            continue;
        }
        if (held[k] == 0 || a->since_version < min[k])
            min[k] = a->since_version;
        if (a->since_version > max[k])
            max[k] = a->since_version;
        held[k]++;
    }
}

int us_state_find_service(const us_state *s, const char *name)
{
    for (int i = 0; i < s->services.n; i++)
        if (strcmp(s->services.svc[i].name, name) == 0)
            return i;
    return -1;
}

int us_state_find_service_from(const us_state *s, const char *name, int hint)
{
    if (hint >= 0 && hint < s->services.n && strcmp(s->services.svc[hint].name, name) == 0)
        return hint;
    return us_state_find_service(s, name);
}

/* The service `name` of a command, found first where the command's "ix" hint (us_cmd_hint) says:
 * a search through 1,000 definitions 20 KB apart, twice per command on every agent, was the
 * largest part of an apply. A hint that is absent, out of range or wrong costs only the search. */
static int command_find_service(const us_state *s, const json_t *cmd, const char *name)
{
    const json_t *ix = json_object_get(cmd, "ix");
    json_int_t hint = json_is_integer(ix) ? json_integer_value(ix) : -1;
    return us_state_find_service_from(s, name,
                                      hint >= 0 && hint < US_MAX_SERVICES ? (int)hint : -1);
}

/* ---- Events ---- */

static int ring_cap(const us_state *s)
{
    return s->events_max > 0 ? s->events_max : US_EVENTS_DEFAULT;
}

const us_event *us_state_event(const us_state *s, uint64_t seq)
{
    if (!s->events || seq == 0 || seq > s->event_seq || s->event_seq - seq >= (uint64_t)s->n_events)
        return NULL;
    return &s->events[(seq - 1) % (uint64_t)ring_cap(s)];
}

uint64_t us_state_first_event(const us_state *s)
{
    return s->n_events > 0 ? s->event_seq - (uint64_t)s->n_events + 1 : 0;
}

int us_state_set_events_max(us_state *s, int max)
{
    if (max < US_EVENTS_MIN || max > US_EVENTS_LIMIT)
        return -1;
    if (!s->events) {
        s->events_max = max;
        s->n_events = 0;
        return 0;
    }
    us_event *ring = calloc((size_t)max, sizeof *ring);
    if (!ring)
        return -1;
    int keep = s->n_events < max ? s->n_events : max;
    for (uint64_t q = s->event_seq - (uint64_t)keep + 1; keep > 0 && q <= s->event_seq; q++)
        ring[(q - 1) % (uint64_t)max] = *us_state_event(s, q);
    free(s->events);
    s->events = ring;
    s->events_max = max;
    s->n_events = keep;
    return 0;
}

/* fsm.h. */
int us_state_reserve(us_state *s, int n)
{
    if (us_service_set_reserve(&s->services, n) != 0)
        return -1;
    int cap = s->services.cap;
    if (cap > s->cap) {
        us_assignment *a = realloc(s->asg, (size_t)cap * sizeof *a);
        if (!a)
            return -1;
        s->asg = a;
        us_service_stats *st = realloc(s->stats, (size_t)cap * sizeof *st);
        if (!st)
            return -1;
        s->stats = st;
        uint64_t *t = realloc(s->touched, (size_t)cap * sizeof *t);
        if (!t)
            return -1;
        s->touched = t;
        s->cap = cap;
    }
    if (n > s->zeroed) { /* as us_service_set_reserve: up to n, not the whole capacity */
        memset(s->asg + s->zeroed, 0, (size_t)(n - s->zeroed) * sizeof *s->asg);
        memset(s->stats + s->zeroed, 0, (size_t)(n - s->zeroed) * sizeof *s->stats);
        memset(s->touched + s->zeroed, 0, (size_t)(n - s->zeroed) * sizeof *s->touched);
        s->zeroed = n;
    }
    return 0;
}

/* Free the per-service arrays only (not the event ring). */
static void free_services(us_state *s)
{
    us_service_set_free(&s->services);
    free(s->asg);
    free(s->stats);
    free(s->touched);
    s->asg = NULL;
    s->stats = NULL;
    s->touched = NULL;
    s->cap = s->zeroed = 0;
}

void us_state_free(us_state *s)
{
    free_services(s);
    free(s->events);
    memset(s, 0, sizeof *s);
}

int us_state_copy(us_state *dst, const us_state *src)
{
    if (dst == src)
        return 0;
    us_state c = *src;
    c.services = (us_service_set){0};
    c.asg = NULL;
    c.stats = NULL;
    c.touched = NULL;
    c.cap = c.zeroed = 0;
    c.events = NULL;
    int n = src->services.n;
    if (us_state_reserve(&c, n) != 0)
        goto fail;
    if (n > 0) {
        memcpy(c.services.svc, src->services.svc, (size_t)n * sizeof *c.services.svc);
        memcpy(c.asg, src->asg, (size_t)n * sizeof *c.asg);
        memcpy(c.stats, src->stats, (size_t)n * sizeof *c.stats);
        memcpy(c.touched, src->touched, (size_t)n * sizeof *c.touched);
    }
    c.services.n = n;
    if (src->events) {
        c.events = malloc((size_t)ring_cap(src) * sizeof *c.events);
        if (!c.events)
            goto fail;
        memcpy(c.events, src->events, (size_t)ring_cap(src) * sizeof *c.events);
    }
    us_state_free(dst);
    *dst = c;
    return 0;
fail:
    us_state_free(&c);
    return -1;
}

/* What every event of one applied command shares. */
typedef struct stamp {
    int64_t time_ms;
    const char *cause; /* "" = the command's own default */
} stamp;

static stamp stamp_of(const json_t *cmd)
{
    stamp st = {(int64_t)json_integer_value(json_object_get(cmd, "time_ms")),
                us_json_str(cmd, "cause")};
    return st;
}

static void add_event(us_state *s, const stamp *st, const char *kind, const char *service,
                      const char *node, const char *from, const char *to, const char *cause)
{
    int cap = ring_cap(s);
    if (!s->events && !(s->events = calloc((size_t)cap, sizeof *s->events))) {
        s->event_seq++; /* the seqs stay the same on every node; this one keeps nothing */
        s->n_events = 0;
        return;
    }
    us_event *e = &s->events[s->event_seq % (uint64_t)cap];
    memset(e, 0, sizeof *e);
    e->seq = ++s->event_seq;
    if (s->n_events < cap)
        s->n_events++;
    e->time_ms = st->time_ms;
    us_strlcpy(e->kind, kind, sizeof e->kind);
    us_strlcpy(e->service, service ? service : "", sizeof e->service);
    us_strlcpy(e->node, node ? node : "", sizeof e->node);
    us_strlcpy(e->from, from, sizeof e->from);
    us_strlcpy(e->to, to, sizeof e->to);
    us_strlcpy(e->cause, st->cause[0] ? st->cause : cause, sizeof e->cause);
}

json_t *us_event_to_json(const us_event *e)
{
    return json_pack("{s:o, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", us_u64_json(e->seq),
                     "time_ms", (json_int_t)e->time_ms, "kind", e->kind, "service", e->service,
                     "node", e->node, "from", e->from, "to", e->to, "cause", e->cause);
}

static int event_from_json(us_event *e, const json_t *j)
{
    memset(e, 0, sizeof *e);
    if (!json_is_object(j))
        return -1;
    e->seq = us_json_u64(j, "seq");
    e->time_ms = (int64_t)json_integer_value(json_object_get(j, "time_ms"));
    us_strlcpy(e->kind, us_json_str(j, "kind"), sizeof e->kind);
    us_strlcpy(e->service, us_json_str(j, "service"), sizeof e->service);
    us_strlcpy(e->node, us_json_str(j, "node"), sizeof e->node);
    us_strlcpy(e->from, us_json_str(j, "from"), sizeof e->from);
    us_strlcpy(e->to, us_json_str(j, "to"), sizeof e->to);
    us_strlcpy(e->cause, us_json_str(j, "cause"), sizeof e->cause);
    return 0;
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

static int jint(const json_t *j, const char *key)
{
    return (int)json_integer_value(json_object_get(j, key));
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

json_t *us_assignment_to_json(const us_assignment *a)
{
    json_t *j = json_pack("{s:s, s:o, s:o, s:s, s:o, s:b, s:s, s:o, s:s, s:o}", "service",
                          a->service, "gen", us_u64_json(a->gen), "epoch", us_u64_json(a->epoch),
                          "active", a->active, "active_inc", us_u64_json(a->active_inc), "demoting",
                          a->demoting, "target", a->target, "standbys",
                          names_json((char(*)[US_NAME_MAX])a->standbys, a->n_standbys), "reason",
                          a->reason, "since_version", us_u64_json(a->since_version));
    json_object_set_new(j, "release", json_string(us_release_kind_name(a->release)));
    if (a->renew)
        json_object_set_new(j, "renew", json_true());
    if (a->has_lost_position)
        json_object_set_new(j, "lost_position", json_integer((json_int_t)a->lost_position));
    if (a->position_ms)
        json_object_set_new(j, "position_ms", json_integer((json_int_t)a->position_ms));
    if (a->sync_gen) { /* R13; absent: never used */
        json_object_set_new(j, "sync", names_json((char(*)[US_NAME_MAX])a->sync, a->n_sync));
        json_object_set_new(j, "sync_want",
                            names_json((char(*)[US_NAME_MAX])a->sync_want, a->n_sync_want));
        json_object_set_new(j, "sync_gen", us_u64_json(a->sync_gen));
    }
    if (a->sync_waived)
        json_object_set_new(j, "sync_waived", json_true());
    if (a->free_since_ms)
        json_object_set_new(j, "free_since_ms", json_integer((json_int_t)a->free_since_ms));
    json_t *fail = json_array();
    for (int i = 0; i < a->n_fail; i++) {
        const us_failrec *f = &a->fail[i];
        json_array_append_new(fail,
                              json_pack("{s:s, s:i, s:I, s:I, s:I}", "node", f->node, "failures",
                                        f->failures, "window_ms", (json_int_t)f->window_ms,
                                        "last_ms", (json_int_t)f->last_ms, "banned_until_ms",
                                        (json_int_t)f->banned_until_ms));
    }
    json_t *p = json_pack("{s:b, s:b, s:s, s:I, s:i, s:I, s:I, s:o}", "paused", a->paused,
                          "recover", a->recover, "restart_node", a->restart_node, "restart_at_ms",
                          (json_int_t)a->restart_at_ms, "restarts", a->restarts,
                          "restart_window_ms", (json_int_t)a->restart_window_ms, "last_failover_ms",
                          (json_int_t)a->last_failover_ms, "fail", fail);
    json_object_update(j, p);
    json_decref(p);
    return j;
}

static int64_t ji64(const json_t *j, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(j, key));
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
    /* Absent in commands and snapshots written before kinds were recorded: OTHER. */
    a->release = us_release_kind_parse(json_string_value(json_object_get(j, "release")));
    a->since_version = us_json_u64(j, "since_version");
    a->renew = json_is_true(json_object_get(j, "renew"));
    a->paused = json_is_true(json_object_get(j, "paused"));
    a->recover = json_is_true(json_object_get(j, "recover"));
    us_strlcpy(a->restart_node, us_json_str(j, "restart_node"), sizeof a->restart_node);
    a->restart_at_ms = ji64(j, "restart_at_ms");
    a->restarts = jint(j, "restarts");
    a->restart_window_ms = ji64(j, "restart_window_ms");
    a->last_failover_ms = ji64(j, "last_failover_ms");
    json_t *lost = json_object_get(j, "lost_position"); /* absent: none (and before R12) */
    if (lost && (!json_is_integer(lost) || json_integer_value(lost) < 0))
        return -1;
    a->has_lost_position = lost != NULL;
    a->lost_position = lost ? (int64_t)json_integer_value(lost) : 0;
    a->sync_gen = us_json_u64(j, "sync_gen");
    a->free_since_ms = ji64(j, "free_since_ms");
    a->position_ms = ji64(j, "position_ms");
    a->sync_waived = json_is_true(json_object_get(j, "sync_waived"));
    if (names_from_json(a->sync, &a->n_sync, json_object_get(j, "sync")) != 0 ||
        names_from_json(a->sync_want, &a->n_sync_want, json_object_get(j, "sync_want")) != 0)
        return -1;
    json_t *fail = json_object_get(j, "fail");
    if (json_array_size(fail) > US_MAX_NODES)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(fail, i, v)
    {
        us_failrec *f = &a->fail[a->n_fail++];
        if (!json_is_object(v))
            return -1;
        us_strlcpy(f->node, us_json_str(v, "node"), sizeof f->node);
        f->failures = jint(v, "failures");
        f->window_ms = ji64(v, "window_ms");
        f->last_ms = ji64(v, "last_ms");
        f->banned_until_ms = ji64(v, "banned_until_ms");
    }
    return names_from_json(a->standbys, &a->n_standbys, json_object_get(j, "standbys"));
}

static json_t *node_to_json(const us_node *n)
{
    json_t *j =
        json_pack("{s:s, s:o, s:s, s:s, s:o, s:b, s:b, s:b, s:b, s:b}", "name", n->name, "id",
                  us_u64_json(n->id), "address", n->address, "api", n->api, "incarnation",
                  us_u64_json(n->incarnation), "voter", n->voter, "leaving", n->leaving, "removing",
                  n->removing, "left", n->left, "drained", n->drained);
    if (j && n->service_host[0])
        json_object_set_new(j, "service_host", json_string(n->service_host));
    return j;
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
    /* Optional (older snapshots and commands lack it); refused when it is not a host name. */
    const json_t *sh = json_object_get(j, "service_host");
    if (sh && (!json_is_string(sh) || !us_host_valid(json_string_value(sh))))
        return -1;
    if (sh)
        us_strlcpy(n->service_host, json_string_value(sh), sizeof n->service_host);
    n->incarnation = us_json_u64(j, "incarnation");
    n->voter = json_is_true(json_object_get(j, "voter"));
    n->leaving = json_is_true(json_object_get(j, "leaving"));
    n->removing = json_is_true(json_object_get(j, "removing"));
    n->left = json_is_true(json_object_get(j, "left"));
    n->drained = json_is_true(json_object_get(j, "drained"));
    return 0;
}

static json_t *stats_to_json(const us_service_stats *st)
{
    json_t *f = json_object();
    for (int c = 0; c < US_CAUSE_N; c++)
        json_object_set_new(f, us_move_cause_name((us_move_cause)c), us_u64_json(st->failovers[c]));
    return json_pack("{s:o, s:o, s:o, s:s, s:s}", "failovers", f, "switchovers",
                     us_u64_json(st->switchovers), "restarts_in_place",
                     us_u64_json(st->restarts_in_place), "released_from", st->released_from,
                     "release_cause", us_move_cause_name(st->release_cause));
}

static int stats_from_json(us_service_stats *st, const json_t *j)
{
    memset(st, 0, sizeof *st);
    json_t *f = json_object_get(j, "failovers");
    if (!json_is_object(j) || (f && !json_is_object(f)))
        return -1;
    for (int c = 0; c < US_CAUSE_N; c++)
        st->failovers[c] = us_json_u64(f, us_move_cause_name((us_move_cause)c));
    st->switchovers = us_json_u64(j, "switchovers");
    st->restarts_in_place = us_json_u64(j, "restarts_in_place");
    if (!us_strlcpy(st->released_from, us_json_str(j, "released_from"), sizeof st->released_from))
        return -1;
    const char *cause = us_json_str(j, "release_cause");
    for (int c = 0; c <= US_CAUSE_SWITCHOVER; c++)
        if (strcmp(cause, us_move_cause_name((us_move_cause)c)) == 0)
            st->release_cause = (us_move_cause)c;
    return 0;
}

json_t *us_state_to_json(const us_state *s)
{
    json_t *nodes = json_array(), *svcs = json_array(), *asg = json_array(), *ret = json_array();
    for (int i = 0; i < s->n_nodes; i++) {
        json_t *n = node_to_json(&s->nodes[i]);
        json_object_set_new(n, "roles_v", us_u64_json(s->nodes[i].roles_v));
        json_array_append_new(nodes, n);
    }
    for (int i = 0; i < s->services.n; i++) {
        json_array_append_new(svcs, us_service_def_to_json(&s->services.svc[i]));
        json_array_append_new(asg, us_assignment_to_json(&s->asg[i]));
    }
    for (int i = 0; i < s->n_retired; i++)
        json_array_append_new(ret, json_pack("{s:s, s:o}", "name", s->retired[i].name, "epoch",
                                             us_u64_json(s->retired[i].epoch)));
    json_t *ev = json_array();
    for (uint64_t q = us_state_first_event(s); q && q <= s->event_seq; q++)
        json_array_append_new(ev, us_event_to_json(us_state_event(s, q)));
    json_t *stats = json_array();
    for (int i = 0; i < s->services.n; i++)
        json_array_append_new(stats, stats_to_json(&s->stats[i]));
    json_t *j = json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "format", 1, "version",
                          us_u64_json(s->version), "nodes", nodes, "services", svcs, "assignments",
                          asg, "retired", ret, "epoch_floor", us_u64_json(s->epoch_floor),
                          "event_seq", us_u64_json(s->event_seq), "events", ev);
    json_object_set_new(j, "stats", stats);
    return j;
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
    s->defs_v = s->version;
    s->epoch_floor = us_json_u64(j, "epoch_floor");
    size_t i;
    json_t *v;
    /* Names are unique, and assignment i is service i's (as commands keep them). */
    json_array_foreach(nodes, i, v)
    {
        if (node_from_json(&s->nodes[i], v) != 0 || us_state_find_node(s, s->nodes[i].name) >= 0)
            goto out;
        /* A snapshot from before roles_v: as if every role had just changed (grants wait). */
        const json_t *rv = json_object_get(v, "roles_v");
        s->nodes[i].roles_v = rv ? us_json_u64(v, "roles_v") : s->version;
        s->n_nodes++;
    }
    if (us_state_reserve(s, (int)json_array_size(svcs)) != 0)
        goto out;
    json_array_foreach(svcs, i, v)
    {
        if (us_service_def_from_json(&s->services.svc[i], v) != 0 ||
            assignment_from_json(&s->asg[i], json_array_get(asg, i)) != 0 ||
            strcmp(s->asg[i].service, s->services.svc[i].name) != 0 ||
            us_state_find_service(s, s->services.svc[i].name) >= 0)
            goto out;
        s->touched[i] = s->version;
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
    /* Counters came later: a snapshot without them starts them at 0. */
    json_t *stats = json_object_get(j, "stats");
    if (stats && (!json_is_array(stats) || json_array_size(stats) != json_array_size(svcs)))
        goto out;
    json_array_foreach(stats, i, v) if (stats_from_json(&s->stats[i], v) != 0) goto out;
    /* Events: the newest ones, oldest first, without gaps (as us_state_to_json lists them); a
     * node that keeps fewer than the snapshot lists keeps the newest. */
    s->event_seq = us_json_u64(j, "event_seq");
    s->events_max = out->events_max;
    json_t *ev = json_object_get(j, "events");
    size_t n_ev = json_array_size(ev);
    if ((ev && !json_is_array(ev)) || n_ev > US_EVENTS_LIMIT || n_ev > s->event_seq)
        goto out;
    size_t cap = (size_t)ring_cap(s), keep = n_ev < cap ? n_ev : cap;
    if (keep > 0 && !(s->events = calloc(cap, sizeof *s->events)))
        goto out;
    json_array_foreach(ev, i, v)
    {
        us_event e;
        if (event_from_json(&e, v) != 0 || e.seq != s->event_seq - n_ev + 1 + i)
            goto out;
        if (i >= n_ev - keep)
            s->events[(e.seq - 1) % cap] = e;
    }
    s->n_events = (int)keep;
    us_state_free(out);
    *out = *s;
    memset(s, 0, sizeof *s); /* what it owned is out's now */
    rc = 0;
out:
    us_state_free(s);
    free(s);
    return rc;
}

/* ---- Commands ---- */

json_t *us_cmd_node_up(const us_node *n)
{
    return json_pack("{s:s, s:o}", "op", "node_up", "node", node_to_json(n));
}

json_t *us_cmd_node_up_adopting(const us_node *n, uint64_t adopts)
{
    json_t *c = us_cmd_node_up(n);
    if (c && adopts)
        json_object_set_new(c, "adopts", us_u64_json(adopts));
    return c;
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

json_t *us_cmd_hint(json_t *cmd, int index)
{
    if (cmd && index >= 0)
        json_object_set_new(cmd, "ix", json_integer(index));
    return cmd;
}

json_t *us_cmd_switchover(const char *service, uint64_t gen, const char *target)
{
    return json_pack("{s:s, s:s, s:o, s:s}", "op", "switchover", "service", service, "gen",
                     us_u64_json(gen), "target", target ? target : "");
}

json_t *us_cmd_node_drain(const char *name, bool drained)
{
    return json_pack("{s:s, s:s, s:b}", "op", "node_drain", "name", name, "drained", drained);
}

json_t *us_cmd_pause(const char *service, bool paused)
{
    return json_pack("{s:s, s:s, s:b}", "op", "pause", "service", service, "paused", paused);
}

json_t *us_cmd_reset(const char *service, const char *node)
{
    return json_pack("{s:s, s:s, s:s}", "op", "reset", "service", service, "node",
                     node ? node : "");
}

json_t *us_cmd_accept_loss(const char *service, const char *target)
{
    return json_pack("{s:s, s:s, s:s}", "op", "accept_loss", "service", service, "target",
                     target ? target : "");
}

json_t *us_cmd_event(const us_event *e)
{
    json_t *j = us_event_to_json(e);
    json_object_del(j, "seq");
    json_object_set_new(j, "op", json_string("event"));
    return j;
}

json_t *us_cmd_stamp(json_t *cmd, int64_t time_ms, const char *cause)
{
    json_object_set_new(cmd, "time_ms", json_integer((json_int_t)time_ms));
    if (cause && cause[0])
        json_object_set_new(cmd, "cause", json_string(cause));
    return cmd;
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
    if (!is_new)
        n.roles_v = s->nodes[i].roles_v; /* the state's, not the command's */
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
    stamp st = stamp_of(cmd);
    char why[US_REASON_MAX];
    if (is_new) {
        snprintf(why, sizeof why, "%s joined the cluster (%s)", n.name, n.address);
        add_event(s, &st, "node", NULL, n.name, "-", "member", why);
    } else if (s->nodes[i].incarnation != n.incarnation && s->nodes[i].incarnation != 0) {
        /* A planned restart (SIGUSR2): the new agent adopted the instances of exactly the
         * incarnation registered until now. Its active roles pass to it under the same epochs:
         * the same processes go on running, fenced by the same guardian and lease. Any other
         * incarnation change leaves active_inc behind, and decide releases the role. */
        uint64_t adopts = us_json_u64(cmd, "adopts");
        int kept = 0;
        if (adopts && adopts == s->nodes[i].incarnation)
            for (int k = 0; k < s->services.n; k++)
                if (strcmp(s->asg[k].active, n.name) == 0 && s->asg[k].active_inc == adopts) {
                    s->asg[k].active_inc = n.incarnation;
                    kept++;
                }
        if (adopts && adopts == s->nodes[i].incarnation)
            snprintf(why, sizeof why,
                     "the agent on %s restarted and adopted its instances (%d active role%s kept, "
                     "same epoch%s)",
                     n.name, kept, kept == 1 ? "" : "s", kept == 1 ? "" : "s");
        else
            snprintf(why, sizeof why, "the agent on %s restarted", n.name);
        add_event(s, &st, "node", NULL, n.name, "member", "restarted", why);
    }
    if (is_new || s->nodes[i].incarnation != n.incarnation) {
        n.leaving = false; /* a (re)started agent is available again */
        n.removing = false;
        n.left = false;
    }
    if (!is_new)
        n.drained = s->nodes[i].drained; /* only node_drain changes it */
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
    us_node *n = &s->nodes[i];
    const char *from = n->left       ? "left"
                       : n->removing ? "removing"
                       : n->leaving  ? "leaving"
                                     : "member";
    const char *to = left ? "left" : removing ? "removing" : leaving ? "leaving" : "member";
    char why[US_REASON_MAX];
    snprintf(why, sizeof why, "%s is %s", n->name,
             left       ? "removed from the cluster"
             : removing ? "being removed"
             : leaving  ? "leaving (agent stopping)"
                        : "available again");
    stamp st = stamp_of(cmd);
    add_event(s, &st, "node", NULL, n->name, from, to, why);
    n->leaving = leaving;
    n->removing = removing;
    n->left = left;
    return US_APPLY_OK;
}

static int apply_node_drain(us_state *s, const json_t *cmd)
{
    int i = us_state_find_node(s, us_json_str(cmd, "name"));
    bool drained = json_is_true(json_object_get(cmd, "drained"));
    if (i < 0 || s->nodes[i].drained == drained)
        return US_APPLY_NOOP;
    s->nodes[i].drained = drained;
    char why[US_REASON_MAX];
    snprintf(why, sizeof why, "%s %s", s->nodes[i].name, drained ? "drained" : "undrained");
    stamp st = stamp_of(cmd);
    add_event(s, &st, "drain", NULL, s->nodes[i].name, drained ? "undrained" : "drained",
              drained ? "drained" : "undrained", why);
    return US_APPLY_OK;
}

static int apply_pause(us_state *s, const json_t *cmd)
{
    int i = command_find_service(s, cmd, us_json_str(cmd, "service"));
    bool paused = json_is_true(json_object_get(cmd, "paused"));
    if (i < 0 || s->asg[i].paused == paused)
        return US_APPLY_NOOP;
    us_assignment *a = &s->asg[i];
    a->paused = paused;
    a->gen++; /* decisions made on the old value are void */
    snprintf(a->reason, sizeof a->reason, "%s", paused ? "paused" : "resumed");
    stamp st = stamp_of(cmd);
    add_event(s, &st, "pause", a->service, NULL, paused ? "managed" : "paused",
              paused ? "paused" : "managed", paused ? "service paused" : "service resumed");
    return US_APPLY_OK;
}

/* R12/R13: an operator accepts losing what only the lost active had (`reset`, `switchover
 * --force`), while nobody is active: the synchronous set and the max_lag check stop holding the
 * promotion back, once. Returns whether anything changed. */
static bool accept_loss(us_state *s, us_assignment *a, const stamp *st)
{
    bool changed = false;
    if (a->active[0])
        return false;
    if (a->sync_gen && !a->sync_waived) {
        add_event(s, st, "reset", a->service, NULL, "synchronous", "waived",
                  "synchronous set waived: any standby may be promoted once");
        a->sync_waived = true;
        changed = true;
    }
    if (a->has_lost_position) {
        char from[64];
        snprintf(from, sizeof from, "position %lld", (long long)a->lost_position);
        add_event(s, st, "reset", a->service, NULL, from, "cleared",
                  "max_lag check lifted: a standby behind the lost active may be promoted");
        a->has_lost_position = false;
        a->lost_position = 0;
        changed = true;
    }
    return changed;
}

static int apply_reset(us_state *s, const json_t *cmd)
{
    int i = command_find_service(s, cmd, us_json_str(cmd, "service"));
    if (i < 0)
        return US_APPLY_NOOP;
    us_assignment *a = &s->asg[i];
    const char *node = us_json_str(cmd, "node");
    stamp st = stamp_of(cmd);
    bool changed = false;
    for (int k = 0; k < a->n_fail;) {
        us_failrec *f = &a->fail[k];
        if (node[0] && strcmp(f->node, node) != 0) {
            k++;
            continue;
        }
        char from[US_NAME_MAX], why[US_REASON_MAX];
        snprintf(from, sizeof from, "%d failure%s%s", f->failures, f->failures == 1 ? "" : "s",
                 f->banned_until_ms ? ", banned" : "");
        snprintf(why, sizeof why, "failures of %s on %s cleared", a->service, f->node);
        add_event(s, &st, "reset", a->service, f->node, from, "cleared", why);
        memmove(f, f + 1, sizeof *f * (size_t)(a->n_fail - k - 1));
        a->n_fail--;
        changed = true;
    }
    if (!node[0] || strcmp(a->restart_node, node) == 0) {
        changed |= a->restarts != 0;
        a->restarts = 0;
        a->restart_window_ms = 0;
    }
    if (!node[0])
        changed |= accept_loss(s, a, &st);
    if (!changed)
        return US_APPLY_NOOP;
    a->gen++;
    return US_APPLY_OK;
}

/* switchover --force while nobody is active: accept the loss, and prefer `target` if given. */
static int apply_accept_loss(us_state *s, const json_t *cmd)
{
    int i = command_find_service(s, cmd, us_json_str(cmd, "service"));
    if (i < 0 || s->asg[i].active[0])
        return US_APPLY_NOOP;
    us_assignment *a = &s->asg[i];
    stamp st = stamp_of(cmd);
    bool changed = accept_loss(s, a, &st);
    const char *target = us_json_str(cmd, "target");
    if (target[0] && strcmp(a->target, target) != 0) {
        us_strlcpy(a->target, target, sizeof a->target);
        changed = true;
    }
    if (!changed)
        return US_APPLY_NOOP;
    a->gen++;
    return US_APPLY_OK;
}

static int apply_event(us_state *s, const json_t *cmd)
{
    us_event e;
    if (event_from_json(&e, cmd) != 0 || !e.kind[0])
        return US_APPLY_BAD;
    stamp st = {e.time_ms, ""};
    add_event(s, &st, e.kind, e.service, e.node, e.from, e.to, e.cause);
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

/* A service new to the state: idle, no counters, its epoch continuing a retired one of its name
 * (start_epoch over `before`, the state the command applies to). */
static void start_service(const us_state *before, const char *name, us_assignment *asg,
                          us_service_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    memset(asg, 0, sizeof *asg);
    us_strlcpy(asg->service, name, sizeof asg->service);
    asg->epoch = start_epoch(before, name);
}

/* The event of a services command about one service: added (was_defined false) or changed. */
static void definition_event(us_state *s, const stamp *st, const char *name, bool was_defined)
{
    if (was_defined)
        add_event(s, st, "config", name, NULL, "defined", "changed",
                  "definition changed by the services file");
    else
        add_event(s, st, "config", name, NULL, "-", "defined", "added by the services file");
}

/* roles_v (below): the active roles before a command, and the move of roles_v after it. */
typedef struct held_role held_role;
static held_role *held_roles(const us_state *s, int *n);
static void bump_roles_v(us_state *s, const held_role *before, int n, uint64_t v);

/* The services of a command that keeps every service of s in its place and perhaps adds some
 * after them (an edit, or new services at the end of the file): changed definitions are
 * overwritten where they are and new ones appended, so that an apply touches what changed
 * rather than a fresh copy of every definition (an apply of 200 of them put 6.7 MB of fresh
 * pages under every agent at once, and with 25 agents on two cores, that stall cost leases).
 * Returns -1 (nothing changed) when the command does not have that shape. */
static int apply_services_in_place(us_state *s, const json_t *a, const stamp *st)
{
    int n_old = s->services.n, n = (int)json_array_size(a);
    if (n < n_old)
        return -1;
    us_service_def *d = malloc(sizeof *d);
    bool *same = calloc((size_t)n + 1, sizeof *same); /* definition k is the one in place */
    unsigned char(*dg)[US_DEF_DIGEST_LEN] = calloc((size_t)n + 1, sizeof *dg);
    static const unsigned char unknown[US_DEF_DIGEST_LEN];
    us_index names = {0};
    int rc = -1;
    if (!d || !same || !dg)
        goto out;
    /* First pass: every definition valid, the old ones in their places, no name twice. One
     * carried as the last command carried it (the same digest) is the one in place: not decoded
     * again (an apply that adds 50 services to 900 decoded all 950 on every agent at once). */
    for (int k = 0; k < n; k++) {
        const json_t *v = json_array_get(a, (size_t)k);
        if (us_service_json_digest(v, dg[k]) && k < n_old &&
            memcmp(s->asg[k].def_digest, unknown, sizeof unknown) != 0 &&
            memcmp(s->asg[k].def_digest, dg[k], sizeof dg[k]) == 0) {
            if (!us_index_add(&names, us_index_hash(s->services.svc[k].name, NULL), k))
                goto out;
            same[k] = true;
            continue;
        }
        if (us_service_def_from_json(d, v) != 0) {
            rc = US_APPLY_BAD;
            goto out;
        }
        if (k < n_old) {
            if (strcmp(d->name, s->services.svc[k].name) != 0)
                goto out; /* moved or removed: the general path */
            if (!us_index_add(&names, us_index_hash(d->name, NULL), k))
                goto out;
            same[k] = memcmp(d, &s->services.svc[k], sizeof *d) == 0;
            continue;
        }
        uint32_t h = us_index_hash(d->name, NULL), pos = US_INDEX_START;
        for (int i; (i = us_index_next(&names, h, &pos)) >= 0;) {
            const char *other = i < n_old ? s->services.svc[i].name
                                          : us_json_str(json_array_get(a, (size_t)i), "name");
            if (strcmp(other, d->name) == 0) {
                rc = US_APPLY_BAD;
                goto out;
            }
        }
        if (!us_index_add(&names, h, k))
            goto out;
    }
    if (us_state_reserve(s, n) != 0)
        goto out;
    /* Second pass: change in place, append (decoding again only what changes: an apply that
     * adds a few services to many decodes most definitions once). */
    bool changed = false;
    for (int k = 0; k < n; k++) {
        if (same[k]) {
            memcpy(s->asg[k].def_digest, dg[k], sizeof dg[k]); /* decoded the same */
            continue;
        }
        us_service_def_from_json(d, json_array_get(a, (size_t)k));
        s->services.svc[k] = *d;
        if (k >= n_old) {
            start_service(s, d->name, &s->asg[k], &s->stats[k]);
            s->services.n = k + 1;
        }
        s->touched[k] = s->version + 1; /* the version this command gives the state */
        memcpy(s->asg[k].def_digest, dg[k], sizeof dg[k]);
        definition_event(s, st, d->name, k < n_old);
        changed = true;
    }
    rc = changed ? US_APPLY_OK : US_APPLY_NOOP;
out:
    us_index_free(&names);
    free(dg);
    free(same);
    free(d);
    return rc;
}

static int apply_services(us_state *s, const json_t *cmd)
{
    json_t *a = json_object_get(cmd, "services");
    if (!json_is_array(a) || json_array_size(a) > US_MAX_SERVICES)
        return US_APPLY_BAD;
    stamp st = stamp_of(cmd);
    /* In place, no role changes: a definition is not a role, and new services have none. */
    int fast = apply_services_in_place(s, a, &st);
    if (fast >= 0)
        return fast;
    /* Services removed or moved: their holders' roles_v move (bump_roles_v), every service's
     * touched. */
    int n_held;
    held_role *held = held_roles(s, &n_held); /* NULL (no memory): every node's roles_v moves */
    /* The next state: s's fields, its own per-service arrays, s's event ring. */
    us_state *next = malloc(sizeof *next);
    if (!next) {
        free(held);
        return US_APPLY_BAD;
    }
    *next = *s;
    next->services = (us_service_set){0};
    next->asg = NULL;
    next->stats = NULL;
    next->touched = NULL;
    next->cap = next->zeroed = 0;
    if (us_state_reserve(next, (int)json_array_size(a)) != 0) {
        free_services(next);
        free(next);
        free(held);
        return US_APPLY_BAD;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        us_service_def *d = &next->services.svc[next->services.n];
        if (us_service_def_from_json(d, v) != 0 || us_state_find_service(next, d->name) >= 0) {
            free_services(next);
            free(next);
            free(held);
            return US_APPLY_BAD;
        }
        us_assignment *asg = &next->asg[next->services.n];
        int old = us_state_find_service(s, d->name);
        us_service_stats *stats = &next->stats[next->services.n];
        if (old >= 0) {
            *asg = s->asg[old];
            *stats = s->stats[old];
        } else {
            start_service(s, d->name, asg, stats);
        }
        us_service_json_digest(v, asg->def_digest);
        next->services.n++;
    }
    for (int k = 0; k < s->services.n; k++)
        if (us_state_find_service(next, s->services.svc[k].name) < 0) {
            retire(next, s->services.svc[k].name, s->asg[k].epoch);
            add_event(next, &st, "config", s->services.svc[k].name, NULL, "defined", "removed",
                      "removed from the services file");
        }
    for (int k = 0; k < next->services.n; k++) {
        int old = us_state_find_service(s, next->services.svc[k].name);
        if (old < 0 || memcmp(&s->services.svc[old], &next->services.svc[k],
                              sizeof next->services.svc[k]) != 0)
            definition_event(next, &st, next->services.svc[k].name, old >= 0);
    }
    int rc = us_service_set_equal(&next->services, &s->services) ? US_APPLY_NOOP : US_APPLY_OK;
    free_services(s);
    *s = *next; /* the ring pointer is s's own, or the one add_event allocated in next */
    free(next);
    if (rc == US_APPLY_OK) {
        bump_roles_v(s, held, n_held, s->version + 1); /* the version this command gives it */
        for (int k = 0; k < s->services.n; k++)
            s->touched[k] = s->version + 1;
    }
    free(held);
    return rc;
}

const char *us_assignment_role(const us_assignment *a, const char *node)
{
    if (strcmp(a->active, node) == 0)
        return a->recover ? "recovering" : a->demoting ? "demoting" : "active";
    if (strcmp(a->restart_node, node) == 0)
        return "restarting";
    for (int i = 0; i < a->n_standbys; i++)
        if (strcmp(a->standbys[i], node) == 0)
            return "standby";
    return "none";
}

/* One event per node whose role changes, with the decision's reason as the cause. */
/* "n2 n3", "none" (cut to fit an event's from/to). */
static void sync_text(char *buf, size_t len, const us_assignment *a)
{
    size_t used = 0;
    snprintf(buf, len, "none");
    for (int i = 0; i < a->n_sync && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", a->sync[i]);
}

static void role_events(us_state *s, const us_assignment *old, const us_assignment *next, stamp st)
{
    const char *seen[2 * US_MAX_NODES + 4];
    int n = 0;
    seen[n++] = old->active;
    seen[n++] = next->active;
    seen[n++] = old->restart_node;
    seen[n++] = next->restart_node;
    for (int i = 0; i < old->n_standbys; i++)
        seen[n++] = old->standbys[i];
    for (int i = 0; i < next->n_standbys; i++)
        seen[n++] = next->standbys[i];
    for (int i = 0; i < n; i++) {
        bool dup = !seen[i][0];
        for (int j = 0; j < i && !dup; j++)
            dup = strcmp(seen[i], seen[j]) == 0;
        if (dup)
            continue;
        const char *from = us_assignment_role(old, seen[i]),
                   *to = us_assignment_role(next, seen[i]);
        if (strcmp(from, to) != 0)
            add_event(s, &st, "role", next->service, seen[i], from, to, next->reason);
    }
    /* R13: the promotable synchronous set. */
    bool same = old->n_sync == next->n_sync;
    for (int i = 0; same && i < old->n_sync; i++)
        same = strcmp(old->sync[i], next->sync[i]) == 0;
    if (!same) {
        char from[US_NAME_MAX], to[US_NAME_MAX];
        sync_text(from, sizeof from, old);
        sync_text(to, sizeof to, next);
        add_event(s, &st, "sync", next->service, NULL, from, to, next->reason);
    }
}

/* ---- Replicated counters (fsm.h: us_service_stats) ---- */

const char *us_move_cause_name(us_move_cause c)
{
    static const char *const names[] = {[US_CAUSE_FAILED] = "failed",
                                        [US_CAUSE_UNHEALTHY] = "unhealthy",
                                        [US_CAUSE_FENCED] = "fenced",
                                        [US_CAUSE_LEASE] = "lease",
                                        [US_CAUSE_AGENT_RESTART] = "agent_restart",
                                        [US_CAUSE_OTHER] = "other",
                                        [US_CAUSE_SWITCHOVER] = "switchover"};
    return (unsigned)c <= US_CAUSE_SWITCHOVER ? names[c] : "other";
}

us_move_cause us_release_cause(us_release_kind k)
{
    static const us_move_cause causes[US_RELEASE_N] = {
        [US_RELEASE_NONE] = US_CAUSE_OTHER,
        [US_RELEASE_FAILED] = US_CAUSE_FAILED,
        [US_RELEASE_UNHEALTHY] = US_CAUSE_UNHEALTHY,
        [US_RELEASE_FENCED] = US_CAUSE_FENCED,
        [US_RELEASE_LEASE] = US_CAUSE_LEASE,
        [US_RELEASE_AGENT] = US_CAUSE_AGENT_RESTART,
        [US_RELEASE_SWITCHOVER] = US_CAUSE_SWITCHOVER,
        [US_RELEASE_DEMOTED] = US_CAUSE_OTHER,
        [US_RELEASE_OTHER] = US_CAUSE_OTHER,
    };
    return (unsigned)k < US_RELEASE_N ? causes[k] : US_CAUSE_OTHER;
}

static void count_move(us_service_stats *st, const us_assignment *cur, const us_assignment *next)
{
    bool new_epoch = next->epoch != cur->epoch;
    bool released = cur->active[0] && (strcmp(cur->active, next->active) != 0 || new_epoch);
    us_move_cause cause = released ? us_release_cause(next->release) : st->release_cause;
    if (next->active[0] && new_epoch) {
        const char *from = cur->active[0]         ? cur->active
                           : st->released_from[0] ? st->released_from
                                                  : cur->restart_node;
        /* No earlier holder: the initial placement (nothing to count). */
        if (from[0] && strcmp(from, next->active) == 0)
            st->restarts_in_place++;
        else if (from[0] && cause == US_CAUSE_SWITCHOVER)
            st->switchovers++;
        else if (from[0])
            st->failovers[(unsigned)cause < US_CAUSE_N ? cause : US_CAUSE_OTHER]++;
        st->released_from[0] = '\0';
        st->release_cause = US_CAUSE_FAILED;
    } else if (released) {
        us_strlcpy(st->released_from, cur->active, sizeof st->released_from);
        st->release_cause = cause;
    }
}

static int apply_assign(us_state *s, const json_t *cmd)
{
    us_assignment next;
    if (assignment_from_json(&next, json_object_get(cmd, "asg")) != 0)
        return US_APPLY_BAD;
    int i = command_find_service(s, cmd, next.service);
    if (i < 0 || s->asg[i].gen != next.gen)
        return US_APPLY_NOOP; /* stale decision */
    if (next.epoch < s->asg[i].epoch)
        return US_APPLY_BAD; /* epochs never go back */
    next.gen++;
    /* Stale-lease reports older than the role do not count against it (lease.h); a renewal
     * (the holder's lease is valid by a majority though a voter revoked it) makes the role count
     * as given now, which ends that revocation. */
    bool renew = next.renew && next.epoch == s->asg[i].epoch && next.active[0] &&
                 strcmp(next.active, s->asg[i].active) == 0;
    next.since_version =
        next.epoch != s->asg[i].epoch || renew ? s->version + 1 : s->asg[i].since_version;
    next.renew = false;
    role_events(s, &s->asg[i], &next, stamp_of(cmd));
    count_move(&s->stats[i], &s->asg[i], &next);
    memcpy(next.def_digest, s->asg[i].def_digest, sizeof next.def_digest); /* local (model.h) */
    s->asg[i] = next;
    return US_APPLY_OK;
}

static int apply_switchover(us_state *s, const json_t *cmd)
{
    int i = command_find_service(s, cmd, us_json_str(cmd, "service"));
    if (i < 0 || s->asg[i].gen != us_json_u64(cmd, "gen") || !s->asg[i].active[0])
        return US_APPLY_NOOP;
    us_assignment *a = &s->asg[i];
    const char *was = us_assignment_role(a, a->active);
    a->demoting = true;
    us_strlcpy(a->target, us_json_str(cmd, "target"), sizeof a->target);
    const char *target = us_json_str(cmd, "target");
    snprintf(a->reason, sizeof a->reason, "switchover requested%s%s", target[0] ? " to " : "",
             target);
    a->gen++;
    stamp st = stamp_of(cmd);
    add_event(s, &st, "role", a->service, a->active, was, "demoting", a->reason);
    return US_APPLY_OK;
}

/* What of an active role its holder acts on. When any of it changes, or the service goes, the
 * holder's roles_v moves to the new state version (model.h). */
typedef struct held_role {
    char service[US_NAME_MAX];
    char active[US_NAME_MAX];
    int index; /* in the state's services, before the command */
    uint64_t active_inc, epoch, since_version;
    bool demoting, recover, paused;
} held_role;

static held_role held_role_of(const us_assignment *a)
{
    held_role h = {.active_inc = a->active_inc,
                   .epoch = a->epoch,
                   .since_version = a->since_version,
                   .demoting = a->demoting,
                   .recover = a->recover,
                   .paused = a->paused};
    us_strlcpy(h.service, a->service, sizeof h.service);
    us_strlcpy(h.active, a->active, sizeof h.active);
    return h;
}

static bool held_role_same(const held_role *x, const held_role *y)
{
    return strcmp(x->active, y->active) == 0 && x->active_inc == y->active_inc &&
           x->epoch == y->epoch && x->since_version == y->since_version &&
           x->demoting == y->demoting && x->recover == y->recover && x->paused == y->paused;
}

/* The active roles of `s` before a command (*n of them), NULL if there is no memory for them. */
static held_role *held_roles(const us_state *s, int *n)
{
    *n = 0;
    held_role *h = malloc(sizeof *h * (size_t)(s->services.n ? s->services.n : 1));
    if (!h)
        return NULL;
    for (int i = 0; i < s->services.n; i++)
        if (s->asg[i].active[0]) {
            h[*n] = held_role_of(&s->asg[i]);
            h[(*n)++].index = i;
        }
    return h;
}

/* After a command: move roles_v of every node whose role in `before` changed or went away to `v`
 * (the command's version). With no record of the roles before (out of memory), every node's,
 * which is safe (grants wait). */
static void bump_roles_v(us_state *s, const held_role *before, int n, uint64_t v)
{
    if (!before) {
        for (int k = 0; k < s->n_nodes; k++)
            s->nodes[k].roles_v = v;
        return;
    }
    for (int i = 0; i < n; i++) {
        int j = us_state_find_service_from(s, before[i].service, before[i].index);
        held_role now;
        if (j >= 0)
            now = held_role_of(&s->asg[j]);
        if (j >= 0 && held_role_same(&before[i], &now))
            continue;
        int k = us_state_find_node(s, before[i].active);
        if (k >= 0)
            s->nodes[k].roles_v = v;
    }
}

typedef int (*apply_fn)(us_state *s, const json_t *cmd);

/* Which active roles a command can change, so that us_state_apply records only those before it
 * (recording every role for each of the many one-service commands cost O(services) per apply on
 * every agent: with 64 agents on two cores, placing services stalled them all at once). */
typedef enum {
    ROLES_ANY,  /* any service's: all are recorded */
    ROLES_ONE,  /* only the one it names ("service", or "service" of its "asg") */
    ROLES_NONE, /* none */
    ROLES_OWN,  /* the command keeps roles_v and touched itself (apply_services: only what a
                   services file changes, usually the services it adds) */
} apply_scope;

static const struct {
    const char *op;
    apply_fn apply;
    apply_scope scope;
} apply_ops[] = {
    {"node_up", apply_node_up, ROLES_ANY},
    {"node_flags", apply_node_flags, ROLES_ANY},
    {"services", apply_services, ROLES_OWN},
    {"assign", apply_assign, ROLES_ONE},
    {"switchover", apply_switchover, ROLES_ONE},
    {"node_drain", apply_node_drain, ROLES_ANY},
    {"pause", apply_pause, ROLES_ONE},
    {"reset", apply_reset, ROLES_ONE},
    {"accept_loss", apply_accept_loss, ROLES_ONE},
    {"event", apply_event, ROLES_NONE},
};

/* The service a ROLES_ONE command names ("" if none). */
static const char *command_service(const json_t *cmd)
{
    const json_t *asg = json_object_get(cmd, "asg");
    return us_json_str(json_is_object(asg) ? asg : cmd, "service");
}

int us_state_apply(us_state *s, const json_t *cmd)
{
    const char *op = us_json_str(cmd, "op");
    size_t k = 0, n_ops = sizeof apply_ops / sizeof apply_ops[0];
    while (k < n_ops && strcmp(op, apply_ops[k].op) != 0)
        k++;
    if (k == n_ops)
        return US_APPLY_BAD;
    /* The roles before the command (bump_roles_v): all of them, or the named service's. */
    int n_held = 0, i = -1;
    held_role one, *held = NULL;
    if (apply_ops[k].scope == ROLES_ANY) {
        held = held_roles(s, &n_held); /* NULL (no memory): every node's roles_v moves */
    } else if (apply_ops[k].scope == ROLES_ONE) {
        i = command_find_service(s, cmd, command_service(cmd)); /* such commands move no service */
        if (i >= 0 && s->asg[i].active[0]) {
            one = held_role_of(&s->asg[i]);
            one.index = i;
            held = &one;
            n_held = 1;
        }
    }
    int rc = apply_ops[k].apply(s, cmd);
    if (rc == US_APPLY_OK) {
        s->version++;
        if (apply_ops[k].apply == apply_services)
            s->defs_v = s->version;
        if (apply_ops[k].scope == ROLES_ANY || n_held > 0)
            bump_roles_v(s, held, n_held, s->version);
        if (apply_ops[k].scope == ROLES_ANY)
            for (int j = 0; j < s->services.n; j++)
                s->touched[j] = s->version;
        else if (i >= 0)
            s->touched[i] = s->version;
    }
    if (apply_ops[k].scope == ROLES_ANY)
        free(held);
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
    f->snapshot_bytes = b->len;
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
    if (rc == 0)
        f->snapshot_bytes = buf->len;
    raft_free(buf->base); /* restore owns the buffer */
    if (rc != 0)
        return RAFT_MALFORMED;
    if (f->on_change)
        f->on_change(f->data);
    return 0;
}

unsigned us_snapshot_threshold(size_t snapshot_bytes, unsigned spread)
{
    size_t grow = snapshot_bytes > US_SNAPSHOT_GROW_FROM
                      ? (snapshot_bytes - US_SNAPSHOT_GROW_FROM) / US_SNAPSHOT_BYTES_PER_ENTRY
                      : 0;
    size_t t = US_SNAPSHOT_THRESHOLD_MIN + grow;
    /* each node at its own point of the second half: t .. 1.5 t */
    t += t / 2 * (spread % US_SNAPSHOT_SPREAD) / US_SNAPSHOT_SPREAD;
    size_t cap = US_SNAPSHOT_THRESHOLD_MAX - US_SNAPSHOT_SPREAD + spread % US_SNAPSHOT_SPREAD;
    return (unsigned)(t < cap ? t : cap);
}

void us_fsm_close(us_fsm *f)
{
    us_state_free(&f->state);
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
