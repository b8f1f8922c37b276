/* test_decide_scenarios.c — replays the tests/scenarios files (*.scn) through us_decide(), in the
 * manner of Pacemaker's cts-scheduler. One cmocka test per file, named after the file.
 *
 * Each file gives an input (cluster, nodes, services with their current assignment and instance
 * reports) and the expected decisions ([expect NAME]; a service without one must not change).
 * Besides the expectations, every scenario is checked against the general promises of decide.h
 * and docs/decisions.md: nothing without quorum, gen is the CAS guard, epoch grows by exactly one
 * iff the active role is handed to a node, the role is only taken on a release condition, new
 * actives and standbys are eligible (the one exception: a due restart in place gives the role back
 * to the node whose failure under the current epoch it is for), one decision per service; and the
 * self-healing ones: nothing for a paused service, `recover` only on an unchanged holder that
 * reports active+unhealthy, a restart node only while the role is free and only the pending one or
 * the holder that just failed, never before restart_at, failure records change only for the holder
 * that failed (at now), last_failover only to now, a new switchover target is eligible, and
 * wake_ms is 0 or after now. A decision that releases the holder carries the kind of release
 * (next.release) that fits the input, and its [expect] must name it (`release = KIND`); one that
 * releases nothing carries none.
 *
 * The scenario reader is deliberately self-contained (not src/config/ini.h) so the format stays
 * fixed by docs/decisions.md and not by whatever the config parser accepts.
 *
 * Directory: $US_SCENARIO_DIR, default "tests/scenarios" relative to the working directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>

#include "core/decide.h"
#include "core/model.h"
#include "core/service.h"

#define MAX_REASONS 8
#define LINE_MAX_LEN 2048
#define MSG_MAX 8192

/* A node name used somewhere in a file, kept with its line so late resolution can blame it. */
typedef struct ref {
    char name[US_NAME_MAX];
    int line;
} ref;

typedef struct raw_report {
    ref node;
    us_inst_obs obs;
} raw_report;

typedef struct raw_fail {
    ref node;
    us_failrec rec;
} raw_fail;

/* What a [service] section said, before node names are resolved to indexes. */
typedef struct raw_service {
    int line;
    bool has_active_inc;
    ref active; /* name "" = none */
    ref target;
    int n_standbys;
    ref standbys[US_MAX_NODES];
    int n_listed;
    ref listed[US_MAX_NODES];
    int n_reports;
    raw_report reports[US_MAX_NODES];
    ref restart_node;
    int n_fail;
    raw_fail fail[US_MAX_NODES];
    unsigned seen_keys; /* bit per key, to reject duplicates */
} raw_service;

/* `fail NODE = ...` in [expect]: -1 in a field means "any value"; none = no record at all. */
typedef struct expect_fail {
    ref node;
    bool none;
    int64_t failures, window_ms, last_ms, banned_until_ms;
} expect_fail;

typedef struct expect {
    char service[US_NAME_MAX];
    int line;
    bool change;
    bool has_active, has_epoch, has_standbys, has_demoting, has_target, has_active_inc;
    ref active;
    uint64_t epoch;
    int n_standbys;
    ref standbys[US_MAX_NODES];
    bool demoting;
    ref target;
    uint64_t active_inc;
    bool has_recover, has_restart_node, has_restart_at, has_restarts, has_restart_window_start,
        has_last_failover, has_paused, has_release, has_renew, has_lost_position;
    bool recover, paused, renew;
    int64_t lost_position; /* -1 = none expected */
    bool has_sync, has_sync_want, has_sync_gen, has_free_since;
    int64_t free_since;
    int n_sync, n_sync_want;
    char sync[US_MAX_NODES][US_NAME_MAX], sync_want[US_MAX_NODES][US_NAME_MAX];
    uint64_t sync_gen;
    us_release_kind release;
    ref restart_node;
    int64_t restart_at, restarts, restart_window_start, last_failover;
    int n_fail;
    expect_fail fail[US_MAX_NODES];
    int n_reasons;
    char reasons[MAX_REASONS][US_REASON_MAX];
    unsigned seen_keys;
} expect;

/* Services in one scenario file (the decision function takes any number). */
#define SCN_MAX_SERVICES 32

typedef struct scenario {
    const char *path;
    us_decide_input in; /* its arrays are the three below */
    us_service_def defs[SCN_MAX_SERVICES];
    us_assignment asg[SCN_MAX_SERVICES];
    us_inst_obs inst[SCN_MAX_SERVICES][US_MAX_NODES];
    const us_inst_obs *inst_at[SCN_MAX_SERVICES * US_MAX_NODES]; /* in.inst: into inst[][] */
    int node_line[US_MAX_NODES];
    unsigned node_keys[US_MAX_NODES];
    ref leader;
    unsigned cluster_keys;
    bool has_expect_wake;
    int64_t expect_wake;
    raw_service raw[SCN_MAX_SERVICES];
    int n_expect;
    expect exp[SCN_MAX_SERVICES];
} scenario;

/* Large; tests run one after another and a failing assertion longjmps out, so static storage
 * avoids both stack size concerns and leaks. */
static scenario g_scn;
static us_decide_input g_in_copy;
static us_decide_output g_out, g_out2;
static us_decision g_dec[SCN_MAX_SERVICES], g_dec2[SCN_MAX_SERVICES];
static scenario g_scn_copy; /* the input's arrays, to see that us_decide leaves them alone */
static char g_msg[MSG_MAX];

typedef struct parse_ctx {
    const char *path;
    int line;
    char *err;
    size_t err_size;
} parse_ctx;

static bool perr(parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool perr(parse_ctx *c, const char *fmt, ...)
{
    int n = snprintf(c->err, c->err_size, "%s:%d: ", c->path, c->line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->err_size)
        vsnprintf(c->err + n, c->err_size - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* A '#' at the start of a line or after blank space starts a comment. */
static void strip_comment(char *s)
{
    for (char *p = s; *p; p++) {
        if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            return;
        }
    }
}

static bool parse_bool(parse_ctx *c, const char *key, const char *v, bool *out)
{
    if (strcmp(v, "yes") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(v, "no") == 0) {
        *out = false;
        return true;
    }
    return perr(c, "key '%s': expected yes or no, got '%s'", key, v);
}

static bool parse_u64(parse_ctx *c, const char *key, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*v < '0' || *v > '9')
        return perr(c, "key '%s': expected a non-negative integer, got '%s'", key, v);
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end)
        return perr(c, "key '%s': expected a non-negative integer, got '%s'", key, v);
    *out = x;
    return true;
}

static bool parse_i64(parse_ctx *c, const char *key, const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v)
        return perr(c, "key '%s': expected an integer, got '%s'", key, v);
    *out = x;
    return true;
}

/* Milliseconds (times and durations): a non-negative integer. */
static bool parse_ms(parse_ctx *c, const char *key, const char *v, int64_t *out)
{
    if (!parse_i64(c, key, v, out))
        return false;
    if (*out < 0)
        return perr(c, "key '%s': expected milliseconds >= 0, got '%s'", key, v);
    return true;
}

/* A count that fits an int, 0..max. */
static bool parse_count(parse_ctx *c, const char *key, const char *v, int max, int *out)
{
    uint64_t x;
    if (!parse_u64(c, key, v, &x))
        return false;
    if (x > (uint64_t)max)
        return perr(c, "key '%s': at most %d, got '%s'", key, max, v);
    *out = (int)x;
    return true;
}

/* A duration that fits the int fields of us_service_def. */
static bool parse_ms_int(parse_ctx *c, const char *key, const char *v, int *out)
{
    return parse_count(c, key, v, 2147483647, out);
}

/* "-" or "" means none. */
static bool parse_ref(parse_ctx *c, const char *key, const char *v, ref *out)
{
    out->line = c->line;
    if (*v == '\0' || strcmp(v, "-") == 0) {
        out->name[0] = '\0';
        return true;
    }
    if (!us_name_valid(v))
        return perr(c, "key '%s': expected a node name ([a-z0-9-], 1..63 chars) or '-', got '%s'",
                    key, v);
    us_strlcpy(out->name, v, sizeof out->name);
    return true;
}

/* Whitespace separated node names; "-" alone means an empty list. */
/* Node names, blank-separated, taken as written ("" = none): the synchronous sets. */
static bool parse_names(parse_ctx *c, const char *key, char *v, char (*out)[US_NAME_MAX], int *n)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(v, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (*n >= US_MAX_NODES || !us_name_valid(t))
            return perr(c, "key '%s': expected node names, got '%s'", key, t);
        us_strlcpy(out[(*n)++], t, US_NAME_MAX);
    }
    return true;
}

/* The same names in the same order (the sets as the decision wrote them). */
static bool same_names(const char (*a)[US_NAME_MAX], int na, const char (*b)[US_NAME_MAX], int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool parse_ref_list(parse_ctx *c, const char *key, char *v, ref *out, int *n)
{
    *n = 0;
    if (strcmp(v, "-") == 0)
        return true;
    for (char *save = NULL, *tok = strtok_r(v, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        if (*n >= US_MAX_NODES)
            return perr(c, "key '%s': more than %d names", key, US_MAX_NODES);
        if (!parse_ref(c, key, tok, &out[*n]) || !out[*n].name[0])
            return c->err[0] ? false : perr(c, "key '%s': '-' inside a list", key);
        for (int i = 0; i < *n; i++)
            if (strcmp(out[i].name, tok) == 0)
                return perr(c, "key '%s': node '%s' listed twice", key, tok);
        (*n)++;
    }
    return true;
}

/* Rejects a key given twice in one section. */
static bool once(parse_ctx *c, unsigned *seen, int bit, const char *key)
{
    if (*seen & (1u << bit))
        return perr(c, "key '%s' given twice in this section", key);
    *seen |= 1u << bit;
    return true;
}

/* What node n reports about service s in a decision input (decide.h's layout). */
#define OBS(in, s, n) ((in)->inst[(size_t)(s) * (size_t)(in)->n_nodes + (size_t)(n)])

static int find_node(const us_decide_input *in, const char *name)
{
    for (int i = 0; i < in->n_nodes; i++)
        if (strcmp(in->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static int find_service(const us_decide_input *in, const char *name)
{
    for (int i = 0; i < in->n_services; i++)
        if (strcmp(in->defs[i].name, name) == 0)
            return i;
    return -1;
}

static bool cluster_key(parse_ctx *c, scenario *s, const char *key, const char *v)
{
    if (strcmp(key, "quorum") == 0)
        return once(c, &s->cluster_keys, 0, key) && parse_bool(c, key, v, &s->in.has_quorum);
    if (strcmp(key, "leader") == 0)
        return once(c, &s->cluster_keys, 1, key) && parse_ref(c, key, v, &s->leader);
    if (strcmp(key, "now") == 0)
        return once(c, &s->cluster_keys, 2, key) && parse_ms(c, key, v, &s->in.now_ms);
    if (strcmp(key, "expect_wake") == 0) {
        s->has_expect_wake = true;
        return once(c, &s->cluster_keys, 3, key) && parse_ms(c, key, v, &s->expect_wake);
    }
    return perr(c, "unknown key '%s' in [cluster] (expected quorum, leader, now, expect_wake)",
                key);
}

static bool node_key(parse_ctx *c, scenario *s, int i, const char *key, const char *v)
{
    us_node *n = &s->in.nodes[i];
    us_node_obs *o = &s->in.node_obs[i];
    unsigned *seen = &s->node_keys[i];
    if (strcmp(key, "state") == 0) {
        if (!once(c, seen, 0, key))
            return false;
        static const char *names[] = {"alive", "suspect", "dead", "left"};
        for (int k = 0; k < 4; k++) {
            if (strcmp(v, names[k]) == 0) {
                o->state = (us_node_state)k;
                n->left = o->state == US_NODE_LEFT;
                return true;
            }
        }
        return perr(c, "key 'state': expected alive, suspect, dead or left, got '%s'", v);
    }
    if (strcmp(key, "lease") == 0) {
        if (!once(c, seen, 1, key))
            return false;
        static const char *names[] = {"valid", "unknown", "expired"};
        for (int k = 0; k < 3; k++) {
            if (strcmp(v, names[k]) == 0) {
                o->lease = (us_lease_state)k;
                return true;
            }
        }
        return perr(c, "key 'lease': expected valid, unknown or expired, got '%s'", v);
    }
    if (strcmp(key, "seen") == 0)
        return once(c, seen, 2, key) && parse_i64(c, key, v, &o->last_seen_ms);
    if (strcmp(key, "incarnation") == 0)
        return once(c, seen, 3, key) && parse_u64(c, key, v, &n->incarnation);
    if (strcmp(key, "leaving") == 0)
        return once(c, seen, 4, key) && parse_bool(c, key, v, &n->leaving);
    if (strcmp(key, "voter") == 0)
        return once(c, seen, 5, key) && parse_bool(c, key, v, &n->voter);
    if (strcmp(key, "drained") == 0)
        return once(c, seen, 6, key) && parse_bool(c, key, v, &n->drained);
    if (strcmp(key, "revoked") == 0)
        return once(c, seen, 7, key) && parse_bool(c, key, v, &o->revoked);
    return perr(c,
                "unknown key '%s' in [node] (expected state, lease, seen, incarnation, leaving, "
                "voter, drained, revoked)",
                key);
}

/* Splits `*p` at the next token: a WORD, or KEY=VALUE / KEY="TEXT WITH BLANKS" (quotes
 * removed; *val set). Returns NULL at the end, or sets c->err and returns NULL. */
static char *next_token(parse_ctx *c, const char *what, char **p, char **val)
{
    char *q = *p;
    *val = NULL;
    while (*q == ' ' || *q == '\t')
        q++;
    if (!*q)
        return NULL;
    char *tok = q;
    while (*q && *q != ' ' && *q != '\t' && *q != '=')
        q++;
    if (*q == '=') {
        *q++ = '\0';
        if (*q == '"') {
            char *close = strchr(q + 1, '"');
            if (!close) {
                perr(c, "key '%s': missing closing '\"' after %s=", what, tok);
                return NULL;
            }
            *val = q + 1;
            *close = '\0';
            q = close + 1;
            if (*q && *q != ' ' && *q != '\t') {
                perr(c, "key '%s': expected a blank after the closing '\"' of %s=", what, tok);
                return NULL;
            }
        } else {
            *val = q;
            while (*q && *q != ' ' && *q != '\t')
                q++;
        }
    }
    if (*q)
        *q++ = '\0';
    *p = q;
    return tok;
}

/* report NODE = STATE [EPOCH [EXIT_STATUS]] [health=unknown|healthy|unhealthy] [cause="TEXT"]
 *               [refused=yes|no] [followed=EPOCH] */
static bool parse_report(parse_ctx *c, raw_service *r, const char *node, char *v)
{
    if (r->n_reports >= US_MAX_NODES)
        return perr(c, "too many report lines");
    raw_report *rep = &r->reports[r->n_reports];
    rep->obs.position = -1; /* none unless position= says */
    if (!parse_ref(c, "report", node, &rep->node) || !rep->node.name[0])
        return c->err[0] ? false : perr(c, "key 'report': expected 'report NODE'");
    for (int i = 0; i < r->n_reports; i++)
        if (strcmp(r->reports[i].node.name, node) == 0)
            return perr(c, "key 'report %s' given twice", node);
    char what[US_NAME_MAX + 8];
    snprintf(what, sizeof what, "report %s", node);
    char *words[3] = {NULL, NULL, NULL};
    int n_words = 0;
    bool has_health = false, has_cause = false;
    char *p = v, *val, *tok;
    while ((tok = next_token(c, what, &p, &val))) {
        if (!val) {
            if (has_health || has_cause)
                return perr(c,
                            "key '%s': '%s' after health=/cause= (STATE EPOCH EXIT_STATUS come "
                            "first)",
                            what, tok);
            if (n_words == 3)
                return perr(c, "key '%s': unexpected '%s' after the exit status", what, tok);
            words[n_words++] = tok;
            continue;
        }
        if (strcmp(tok, "health") == 0) {
            if (has_health)
                return perr(c, "key '%s': health= given twice", what);
            has_health = true;
            static const char *hn[] = {"unknown", "healthy", "unhealthy"};
            int h = 0;
            while (h < 3 && strcmp(val, hn[h]) != 0)
                h++;
            if (h == 3)
                return perr(c, "key '%s': health= expects unknown, healthy or unhealthy, got '%s'",
                            what, val);
            rep->obs.health = (us_health)h;
        } else if (strcmp(tok, "cause") == 0) {
            if (has_cause)
                return perr(c, "key '%s': cause= given twice", what);
            has_cause = true;
            if (!us_strlcpy(rep->obs.cause, val, sizeof rep->obs.cause))
                return perr(c, "key '%s': cause longer than %d characters", what,
                            US_REASON_MAX - 1);
        } else if (strcmp(tok, "refused") == 0) {
            if (strcmp(val, "yes") != 0 && strcmp(val, "no") != 0)
                return perr(c, "key '%s': refused= expects yes or no, got '%s'", what, val);
            rep->obs.refused = strcmp(val, "yes") == 0;
        } else if (strcmp(tok, "followed") == 0) {
            if (!parse_u64(c, "report followed", val, &rep->obs.followed))
                return false;
        } else if (strcmp(tok, "position_gen") == 0) {
            if (!parse_u64(c, "report position_gen", val, &rep->obs.position_gen))
                return false;
        } else if (strcmp(tok, "sync_applied") == 0) {
            if (!parse_u64(c, "report sync_applied", val, &rep->obs.sync_applied))
                return false;
        } else if (strcmp(tok, "position") == 0) {
            if (!parse_i64(c, "report position", val, &rep->obs.position) || rep->obs.position < 0)
                return c->err[0] ? false
                                 : perr(c, "key '%s': position= expects a number >= 0", what);
        } else {
            return perr(c,
                        "key '%s': unknown option '%s=' (expected health=, cause=, refused=, "
                        "followed=, position=, position_gen=, sync_applied=)",
                        what, tok);
        }
    }
    if (c->err[0])
        return false;
    const char *st = words[0], *ep = words[1], *ex = words[2];
    static const char *names[] = {"none", "standby", "active", "demoted", "failed", "fenced"};
    int k = 0;
    while (st && k < 6 && strcmp(st, names[k]) != 0)
        k++;
    if (!st || k == 6)
        return perr(c,
                    "key '%s': expected STATE EPOCH [EXIT_STATUS] [health=H] [cause=\"TEXT\"] "
                    "with STATE one of none, standby, active, demoted, failed, fenced; got '%s'",
                    what, st ? st : "");
    rep->obs.state = (us_inst_state)k;
    if (!ep && k != US_INST_NONE)
        return perr(c, "key '%s': missing EPOCH after '%s'", what, st);
    if (ep && !parse_u64(c, "report epoch", ep, &rep->obs.epoch))
        return false;
    if (ex) {
        int64_t x;
        if (!parse_i64(c, "report exit status", ex, &x) || x < 0 || x > 255)
            return c->err[0] ? false : perr(c, "key '%s': exit status must be 0..255", what);
        rep->obs.exit_status = (int)x;
    }
    r->n_reports++;
    return true;
}

/* One field of a `fail NODE =` line; in [expect] "-" means any value (-1). */
static bool parse_fail_field(parse_ctx *c, const char *what, const char *field, const char *v,
                             bool wildcard, int64_t *out)
{
    if (!v)
        return perr(c, "key '%s': expected FAILURES WINDOW_MS LAST_MS BANNED_UNTIL_MS, %s missing",
                    what, field);
    if (wildcard && strcmp(v, "-") == 0) {
        *out = -1;
        return true;
    }
    char key[96];
    snprintf(key, sizeof key, "%s %s", what, field);
    return parse_ms(c, key, v, out);
}

/* fail NODE = FAILURES WINDOW_MS LAST_MS BANNED_UNTIL_MS (in [expect] also "-" fields or
 * "none"). */
static bool parse_fail(parse_ctx *c, const char *node, char *v, bool wildcard, ref *nref,
                       int64_t f[4], bool *none)
{
    char what[US_NAME_MAX + 8];
    snprintf(what, sizeof what, "fail %s", node);
    if (!parse_ref(c, "fail", node, nref) || !nref->name[0])
        return c->err[0] ? false : perr(c, "key 'fail': expected 'fail NODE'");
    char *save = NULL;
    char *w[5];
    w[0] = strtok_r(v, " \t", &save);
    for (int i = 1; i < 5; i++)
        w[i] = strtok_r(NULL, " \t", &save);
    if (none) {
        *none = w[0] && strcmp(w[0], "none") == 0 && !w[1];
        if (*none)
            return true;
    }
    static const char *fields[] = {"FAILURES", "WINDOW_MS", "LAST_MS", "BANNED_UNTIL_MS"};
    for (int i = 0; i < 4; i++)
        if (!parse_fail_field(c, what, fields[i], w[i], wildcard, &f[i]))
            return false;
    if (w[4])
        return perr(c, "key '%s': unexpected '%s' after BANNED_UNTIL_MS", what, w[4]);
    if (f[0] > 1000000)
        return perr(c, "key '%s': FAILURES at most 1000000", what);
    return true;
}

/* The failure policy of the service definition and the self-healing state of its assignment. */
static bool policy_key(parse_ctx *c, scenario *s, int i, const char *key, char *v)
{
    us_service_def *d = &s->defs[i];
    us_assignment *a = &s->asg[i];
    raw_service *r = &s->raw[i];
    unsigned *seen = &r->seen_keys;
    if (strcmp(key, "paused") == 0)
        return once(c, seen, 10, key) && parse_bool(c, key, v, &a->paused);
    if (strcmp(key, "recover") == 0)
        return once(c, seen, 11, key) && parse_bool(c, key, v, &a->recover);
    if (strcmp(key, "on_failure") == 0) {
        if (!once(c, seen, 12, key))
            return false;
        if (strcmp(v, "failover") == 0 || strcmp(v, "restart") == 0) {
            d->on_failure = v[0] == 'f' ? US_ON_FAILURE_FAILOVER : US_ON_FAILURE_RESTART;
            return true;
        }
        return perr(c, "key 'on_failure': expected failover or restart, got '%s'", v);
    }
    if (strcmp(key, "max_restarts") == 0)
        return once(c, seen, 13, key) && parse_count(c, key, v, 1000, &d->max_restarts);
    if (strcmp(key, "restart_window") == 0)
        return once(c, seen, 14, key) && parse_ms_int(c, key, v, &d->restart_window_ms);
    if (strcmp(key, "restart_backoff") == 0) {
        if (!once(c, seen, 15, key))
            return false;
        char *dots = strstr(v, "..");
        if (!dots)
            return perr(c, "key 'restart_backoff': expected MIN..MAX in ms, got '%s'", v);
        *dots = '\0';
        if (!parse_ms_int(c, key, trim(v), &d->restart_backoff_min_ms) ||
            !parse_ms_int(c, key, trim(dots + 2), &d->restart_backoff_max_ms))
            return false;
        if (d->restart_backoff_min_ms > d->restart_backoff_max_ms)
            return perr(c, "key 'restart_backoff': MIN must not exceed MAX");
        return true;
    }
    if (strcmp(key, "failure_threshold") == 0)
        return once(c, seen, 16, key) && parse_count(c, key, v, 1000, &d->failure_threshold);
    if (strcmp(key, "failure_window") == 0)
        return once(c, seen, 17, key) && parse_ms_int(c, key, v, &d->failure_window_ms);
    if (strcmp(key, "failure_cooldown") == 0)
        return once(c, seen, 18, key) && parse_ms_int(c, key, v, &d->failure_cooldown_ms);
    if (strcmp(key, "min_failover_interval") == 0)
        return once(c, seen, 19, key) && parse_ms_int(c, key, v, &d->min_failover_interval_ms);
    if (strcmp(key, "failback") == 0)
        return once(c, seen, 20, key) && parse_bool(c, key, v, &d->failback);
    if (strcmp(key, "restart_node") == 0)
        return once(c, seen, 21, key) && parse_ref(c, key, v, &r->restart_node);
    if (strcmp(key, "restart_at") == 0)
        return once(c, seen, 22, key) && parse_ms(c, key, v, &a->restart_at_ms);
    if (strcmp(key, "restarts") == 0)
        return once(c, seen, 23, key) && parse_count(c, key, v, 1000, &a->restarts);
    if (strcmp(key, "restart_window_start") == 0)
        return once(c, seen, 24, key) && parse_ms(c, key, v, &a->restart_window_ms);
    if (strcmp(key, "last_failover") == 0)
        return once(c, seen, 25, key) && parse_ms(c, key, v, &a->last_failover_ms);
    if (strcmp(key, "checks") == 0) {
        if (!once(c, seen, 26, key) || !parse_count(c, key, v, US_MAX_CHECKS, &d->n_checks))
            return false;
        for (int k = 0; k < d->n_checks; k++) {
            d->checks[k].kind = US_CHECK_EXEC;
            snprintf(d->checks[k].text, sizeof d->checks[k].text, "exec:true");
        }
        return true;
    }
    if (strcmp(key, "position") == 0) { /* the command does not matter here */
        bool on;
        if (!once(c, seen, 28, key) || !parse_bool(c, key, v, &on))
            return false;
        us_strlcpy(d->position, on ? "true" : "", sizeof d->position);
        return true;
    }
    if (strcmp(key, "max_lag") == 0)
        return once(c, seen, 29, key) && parse_i64(c, key, v, &d->max_lag) &&
               (d->max_lag >= 0 || perr(c, "key 'max_lag': expected a number >= 0"));
    if (strcmp(key, "lost_position") == 0) {
        if (!once(c, seen, 30, key) || !parse_i64(c, key, v, &a->lost_position))
            return false;
        a->has_lost_position = true;
        return a->lost_position >= 0 || perr(c, "key 'lost_position': expected a number >= 0");
    }
    if (strcmp(key, "synchronous") == 0) {
        if (!once(c, seen, 31, key) || !parse_count(c, key, v, US_MAX_NODES - 1, &d->synchronous))
            return false;
        us_strlcpy(d->sync, "true", sizeof d->sync);
        return true;
    }
    if (strcmp(key, "sync_standbys") == 0)
        return parse_names(c, key, v, a->sync, &a->n_sync);
    if (strcmp(key, "sync_want") == 0)
        return parse_names(c, key, v, a->sync_want, &a->n_sync_want);
    if (strcmp(key, "sync_gen") == 0)
        return parse_u64(c, key, v, &a->sync_gen);
    if (strcmp(key, "sync_waived") == 0)
        return parse_bool(c, key, v, &a->sync_waived);
    if (strcmp(key, "free_since") == 0)
        return parse_ms(c, key, v, &a->free_since_ms);
    if (strcmp(key, "released") == 0) { /* the release kind of the assignment's last change */
        a->release = us_release_kind_parse(v);
        return strcmp(us_release_kind_name(a->release), v) == 0 ||
               perr(c, "key 'released': expected a release kind, got '%s'", v);
    }
    if (strcmp(key, "follow") == 0) { /* the hook's command does not matter here */
        bool on;
        if (!once(c, seen, 27, key) || !parse_bool(c, key, v, &on))
            return false;
        us_strlcpy(d->follow, on ? "true" : "", sizeof d->follow);
        return true;
    }
    if (strncmp(key, "fail", 4) == 0 && (key[4] == ' ' || key[4] == '\t')) {
        if (r->n_fail >= US_MAX_NODES)
            return perr(c, "more than %d fail lines", US_MAX_NODES);
        raw_fail *f = &r->fail[r->n_fail];
        int64_t x[4];
        if (!parse_fail(c, trim((char *)key + 4), v, false, &f->node, x, NULL))
            return false;
        for (int k = 0; k < r->n_fail; k++)
            if (strcmp(r->fail[k].node.name, f->node.name) == 0)
                return perr(c, "key 'fail %s' given twice", f->node.name);
        us_strlcpy(f->rec.node, f->node.name, sizeof f->rec.node);
        f->rec.failures = (int)x[0];
        f->rec.window_ms = x[1];
        f->rec.last_ms = x[2];
        f->rec.banned_until_ms = x[3];
        r->n_fail++;
        return true;
    }
    return perr(c,
                "unknown key '%s' in [service] (expected standbys, nodes, epoch, active, "
                "active_inc, demoting, target, standby_nodes, gen, standby, report NODE, paused, "
                "recover, on_failure, max_restarts, restart_window, restart_backoff, "
                "failure_threshold, failure_window, failure_cooldown, min_failover_interval, "
                "failback, restart_node, restart_at, restarts, restart_window_start, "
                "last_failover, checks, follow, position, max_lag, lost_position, synchronous, "
                "sync_standbys, sync_want, sync_gen, sync_waived, free_since, released, fail NODE)",
                key);
}

static bool service_key(parse_ctx *c, scenario *s, int i, const char *key, char *v)
{
    us_service_def *d = &s->defs[i];
    us_assignment *a = &s->asg[i];
    raw_service *r = &s->raw[i];
    unsigned *seen = &r->seen_keys;
    if (strcmp(key, "standbys") == 0) {
        uint64_t x;
        if (!once(c, seen, 0, key) || !parse_u64(c, key, v, &x))
            return false;
        if (x > US_MAX_NODES)
            return perr(c, "key 'standbys': at most %d", US_MAX_NODES);
        d->standbys = (int)x;
        return true;
    }
    if (strcmp(key, "nodes") == 0)
        return once(c, seen, 1, key) && parse_ref_list(c, key, v, r->listed, &r->n_listed);
    if (strcmp(key, "epoch") == 0)
        return once(c, seen, 2, key) && parse_u64(c, key, v, &a->epoch);
    if (strcmp(key, "active") == 0)
        return once(c, seen, 3, key) && parse_ref(c, key, v, &r->active);
    if (strcmp(key, "active_inc") == 0) {
        r->has_active_inc = true;
        return once(c, seen, 4, key) && parse_u64(c, key, v, &a->active_inc);
    }
    if (strcmp(key, "demoting") == 0)
        return once(c, seen, 5, key) && parse_bool(c, key, v, &a->demoting);
    if (strcmp(key, "target") == 0)
        return once(c, seen, 6, key) && parse_ref(c, key, v, &r->target);
    if (strcmp(key, "standby_nodes") == 0)
        return once(c, seen, 7, key) && parse_ref_list(c, key, v, r->standbys, &r->n_standbys);
    if (strcmp(key, "gen") == 0)
        return once(c, seen, 8, key) && parse_u64(c, key, v, &a->gen);
    if (strcmp(key, "standby") == 0) {
        if (!once(c, seen, 9, key))
            return false;
        if (strcmp(v, "hot") == 0 || strcmp(v, "cold") == 0) {
            d->standby = strcmp(v, "hot") == 0 ? US_STANDBY_HOT : US_STANDBY_COLD;
            return true;
        }
        return perr(c, "key 'standby': expected hot or cold, got '%s'", v);
    }
    if (strcmp(key, "reason") == 0) {
        if (!us_strlcpy(a->reason, v, sizeof a->reason))
            return perr(c, "key 'reason': longer than %d", US_REASON_MAX - 1);
        return once(c, seen, 27, key);
    }
    if (strncmp(key, "report", 6) == 0 && (key[6] == ' ' || key[6] == '\t'))
        return parse_report(c, r, trim((char *)key + 6), v);
    return policy_key(c, s, i, key, v);
}

static bool expect_key(parse_ctx *c, expect *e, const char *key, char op, char *v)
{
    if (op == '~') {
        if (strcmp(key, "reason") != 0)
            return perr(c, "'~' is only allowed with 'reason', not with '%s'", key);
        if (e->n_reasons >= MAX_REASONS)
            return perr(c, "more than %d 'reason ~' lines", MAX_REASONS);
        if (!*v)
            return perr(c, "'reason ~' needs a non-empty substring");
        if (!us_strlcpy(e->reasons[e->n_reasons++], v, US_REASON_MAX))
            return perr(c, "'reason ~' substring longer than %d", US_REASON_MAX - 1);
        return true;
    }
    unsigned *seen = &e->seen_keys;
    if (strcmp(key, "change") == 0)
        return once(c, seen, 0, key) && parse_bool(c, key, v, &e->change);
    if (strcmp(key, "active") == 0) {
        e->has_active = true;
        return once(c, seen, 1, key) && parse_ref(c, key, v, &e->active);
    }
    if (strcmp(key, "epoch") == 0) {
        e->has_epoch = true;
        return once(c, seen, 2, key) && parse_u64(c, key, v, &e->epoch);
    }
    if (strcmp(key, "standby_nodes") == 0) {
        e->has_standbys = true;
        return once(c, seen, 3, key) && parse_ref_list(c, key, v, e->standbys, &e->n_standbys);
    }
    if (strcmp(key, "demoting") == 0) {
        e->has_demoting = true;
        return once(c, seen, 4, key) && parse_bool(c, key, v, &e->demoting);
    }
    if (strcmp(key, "target") == 0) {
        e->has_target = true;
        return once(c, seen, 5, key) && parse_ref(c, key, v, &e->target);
    }
    if (strcmp(key, "active_inc") == 0) {
        e->has_active_inc = true;
        return once(c, seen, 6, key) && parse_u64(c, key, v, &e->active_inc);
    }
    if (strcmp(key, "reason") == 0)
        return perr(c, "use 'reason ~ SUBSTRING' (reasons are matched by substring)");
    if (strcmp(key, "recover") == 0) {
        e->has_recover = true;
        return once(c, seen, 7, key) && parse_bool(c, key, v, &e->recover);
    }
    if (strcmp(key, "restart_node") == 0) {
        e->has_restart_node = true;
        return once(c, seen, 8, key) && parse_ref(c, key, v, &e->restart_node);
    }
    if (strcmp(key, "restart_at") == 0) {
        e->has_restart_at = true;
        return once(c, seen, 9, key) && parse_ms(c, key, v, &e->restart_at);
    }
    if (strcmp(key, "restarts") == 0) {
        e->has_restarts = true;
        return once(c, seen, 10, key) && parse_ms(c, key, v, &e->restarts);
    }
    if (strcmp(key, "restart_window_start") == 0) {
        e->has_restart_window_start = true;
        return once(c, seen, 11, key) && parse_ms(c, key, v, &e->restart_window_start);
    }
    if (strcmp(key, "last_failover") == 0) {
        e->has_last_failover = true;
        return once(c, seen, 12, key) && parse_ms(c, key, v, &e->last_failover);
    }
    if (strcmp(key, "paused") == 0) {
        e->has_paused = true;
        return once(c, seen, 13, key) && parse_bool(c, key, v, &e->paused);
    }
    if (strcmp(key, "sync_standbys") == 0) {
        e->has_sync = true;
        return once(c, seen, 17, key) && parse_names(c, key, v, e->sync, &e->n_sync);
    }
    if (strcmp(key, "sync_want") == 0) {
        e->has_sync_want = true;
        return once(c, seen, 18, key) && parse_names(c, key, v, e->sync_want, &e->n_sync_want);
    }
    if (strcmp(key, "free_since") == 0) {
        e->has_free_since = true;
        return once(c, seen, 20, key) && parse_ms(c, key, v, &e->free_since);
    }
    if (strcmp(key, "sync_gen") == 0) {
        e->has_sync_gen = true;
        return once(c, seen, 19, key) && parse_u64(c, key, v, &e->sync_gen);
    }
    if (strcmp(key, "lost_position") == 0) { /* a number, or none */
        e->has_lost_position = true;
        e->lost_position = -1;
        return once(c, seen, 16, key) &&
               (strcmp(v, "none") == 0 || parse_i64(c, key, v, &e->lost_position));
    }
    if (strcmp(key, "renew") == 0) {
        e->has_renew = true;
        return once(c, seen, 15, key) && parse_bool(c, key, v, &e->renew);
    }
    if (strcmp(key, "release") == 0) {
        e->has_release = true;
        e->release = us_release_kind_parse(v);
        if (strcmp(us_release_kind_name(e->release), v) != 0)
            return perr(c,
                        "key 'release': expected none, failed, unhealthy, fenced, lease, "
                        "agent_restart, switchover, demoted or other, got '%s'",
                        v);
        return once(c, seen, 14, key);
    }
    if (strncmp(key, "fail", 4) == 0 && (key[4] == ' ' || key[4] == '\t')) {
        if (e->n_fail >= US_MAX_NODES)
            return perr(c, "more than %d fail lines", US_MAX_NODES);
        expect_fail *f = &e->fail[e->n_fail];
        int64_t x[4] = {-1, -1, -1, -1};
        if (!parse_fail(c, trim((char *)key + 4), v, true, &f->node, x, &f->none))
            return false;
        for (int k = 0; k < e->n_fail; k++)
            if (strcmp(e->fail[k].node.name, f->node.name) == 0)
                return perr(c, "key 'fail %s' given twice", f->node.name);
        f->failures = x[0];
        f->window_ms = x[1];
        f->last_ms = x[2];
        f->banned_until_ms = x[3];
        e->n_fail++;
        return true;
    }
    return perr(c,
                "unknown key '%s' in [expect] (expected change, active, epoch, standby_nodes, "
                "demoting, target, active_inc, recover, restart_node, restart_at, restarts, "
                "restart_window_start, last_failover, paused, lost_position, sync_standbys, "
                "sync_want, sync_gen, free_since, release, renew, fail NODE, reason ~)",
                key);
}

enum sect { S_NONE, S_CLUSTER, S_NODE, S_SERVICE, S_EXPECT };

static bool resolve_ref(parse_ctx *c, const scenario *s, const ref *r, const char *what)
{
    if (r->name[0] && find_node(&s->in, r->name) < 0) {
        c->line = r->line;
        return perr(c, "%s: '%s' is not a declared [node]", what, r->name);
    }
    return true;
}

/* Node names may be used before their [node] section; check and fill them in at the end. */
static bool resolve(parse_ctx *c, scenario *s)
{
    us_decide_input *in = &s->in;
    if (!(s->cluster_keys & 1u)) {
        c->line = 0;
        return perr(c, "[cluster] 'quorum' is required");
    }
    if (!resolve_ref(c, s, &s->leader, "leader"))
        return false;
    us_strlcpy(in->leader, s->leader.name, sizeof in->leader);
    for (int i = 0; i < in->n_services; i++) {
        raw_service *r = &s->raw[i];
        us_service_def *d = &s->defs[i];
        us_assignment *a = &s->asg[i];
        for (int k = 0; k < r->n_listed; k++) {
            if (!resolve_ref(c, s, &r->listed[k], "nodes"))
                return false;
            us_strlcpy(d->nodes[k], r->listed[k].name, US_NAME_MAX);
        }
        d->n_nodes = r->n_listed;
        if (!resolve_ref(c, s, &r->active, "active") || !resolve_ref(c, s, &r->target, "target"))
            return false;
        us_strlcpy(a->active, r->active.name, sizeof a->active);
        us_strlcpy(a->target, r->target.name, sizeof a->target);
        if (a->active[0] && !r->has_active_inc)
            a->active_inc = in->nodes[find_node(in, a->active)].incarnation;
        for (int k = 0; k < r->n_standbys; k++) {
            if (!resolve_ref(c, s, &r->standbys[k], "standby_nodes"))
                return false;
            if (strcmp(r->standbys[k].name, a->active) == 0) {
                c->line = r->standbys[k].line;
                return perr(c, "standby_nodes: '%s' is also the active", a->active);
            }
            us_strlcpy(a->standbys[k], r->standbys[k].name, US_NAME_MAX);
        }
        a->n_standbys = r->n_standbys;
        for (int k = 0; k < r->n_reports; k++) {
            if (!resolve_ref(c, s, &r->reports[k].node, "report"))
                return false;
            s->inst[i][find_node(in, r->reports[k].node.name)] = r->reports[k].obs;
        }
        if (!resolve_ref(c, s, &r->restart_node, "restart_node"))
            return false;
        if (r->restart_node.name[0] && a->active[0]) {
            c->line = r->restart_node.line;
            return perr(c,
                        "restart_node: a restart in place is pending only while active is empty");
        }
        us_strlcpy(a->restart_node, r->restart_node.name, sizeof a->restart_node);
        /* Failure records may name removed nodes (fsm keeps them), so they are not resolved. */
        for (int k = 0; k < r->n_fail; k++)
            a->fail[k] = r->fail[k].rec;
        a->n_fail = r->n_fail;
    }
    for (int i = 0; i < s->n_expect; i++) {
        expect *e = &s->exp[i];
        if (find_service(in, e->service) < 0) {
            c->line = e->line;
            return perr(c, "[expect %s]: no [service %s] in this file", e->service, e->service);
        }
        if (!resolve_ref(c, s, &e->active, "active") || !resolve_ref(c, s, &e->target, "target"))
            return false;
        for (int k = 0; k < e->n_standbys; k++)
            if (!resolve_ref(c, s, &e->standbys[k], "standby_nodes"))
                return false;
        if (!resolve_ref(c, s, &e->restart_node, "restart_node"))
            return false;
    }
    return true;
}

static bool parse_header(parse_ctx *c, scenario *s, char *line, enum sect *sect, int *cur)
{
    char *end = strchr(line, ']');
    if (!end || trim(end + 1)[0])
        return perr(c, "expected '[SECTION]' with nothing after ']'");
    *end = '\0';
    char *body = trim(line + 1);
    char *sp = body + strcspn(body, " \t");
    char *arg = trim(sp);
    *sp = '\0';
    if (strcmp(body, "cluster") == 0) {
        if (*arg)
            return perr(c, "[cluster] takes no name");
        *sect = S_CLUSTER;
        return true;
    }
    bool known =
        strcmp(body, "node") == 0 || strcmp(body, "service") == 0 || strcmp(body, "expect") == 0;
    if (!known)
        return perr(c, "unknown section '[%s]' (expected cluster, node, service, expect)", body);
    if (!us_name_valid(arg))
        return perr(c, "[%s NAME]: expected a name of [a-z0-9-], 1..63 chars, got '%s'", body, arg);
    us_decide_input *in = &s->in;
    if (strcmp(body, "node") == 0) {
        if (find_node(in, arg) >= 0)
            return perr(c, "[node %s] declared twice", arg);
        if (in->n_nodes >= US_MAX_NODES)
            return perr(c, "more than %d nodes", US_MAX_NODES);
        *cur = in->n_nodes++;
        us_node *n = &in->nodes[*cur];
        us_strlcpy(n->name, arg, sizeof n->name);
        n->id = us_node_id(arg);
        n->incarnation = 1;
        n->voter = true;
        snprintf(n->address, sizeof n->address, "127.0.0.1:%d", 7000 + *cur);
        snprintf(n->api, sizeof n->api, "127.0.0.1:%d", 8000 + *cur);
        s->node_line[*cur] = c->line;
        *sect = S_NODE;
        return true;
    }
    if (strcmp(body, "service") == 0) {
        if (find_service(in, arg) >= 0)
            return perr(c, "[service %s] declared twice", arg);
        if (in->n_services >= SCN_MAX_SERVICES)
            return perr(c, "more than %d services", SCN_MAX_SERVICES);
        *cur = in->n_services++;
        us_service_def *d = &s->defs[*cur];
        /* The config defaults, so scenarios without policy keys keep their meaning; but a
         * scenario without `standbys` keeps none, as the format has always read it. */
        us_service_defaults(d);
        d->standbys = 0;
        us_strlcpy(d->name, arg, sizeof d->name);
        snprintf(d->run, sizeof d->run, "sleep 1000");
        us_strlcpy(s->asg[*cur].service, arg, sizeof s->asg[*cur].service);
        s->raw[*cur].line = c->line;
        *sect = S_SERVICE;
        return true;
    }
    for (int i = 0; i < s->n_expect; i++)
        if (strcmp(s->exp[i].service, arg) == 0)
            return perr(c, "[expect %s] given twice", arg);
    if (s->n_expect >= SCN_MAX_SERVICES)
        return perr(c, "more than %d [expect] sections", SCN_MAX_SERVICES);
    *cur = s->n_expect++;
    expect *e = &s->exp[*cur];
    us_strlcpy(e->service, arg, sizeof e->service);
    e->line = c->line;
    e->change = true;
    *sect = S_EXPECT;
    return true;
}

/* Reads `path` into `s`. On error returns false with "path:line: message" in err. */
static bool parse_scenario(const char *path, scenario *s, char *err, size_t err_size)
{
    memset(s, 0, sizeof *s);
    s->in.defs = s->defs;
    s->in.asg = s->asg;
    s->in.inst = s->inst_at;
    s->path = path;
    parse_ctx c = {path, 0, err, err_size};
    err[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return perr(&c, "cannot open: %s", strerror(errno));
    char buf[LINE_MAX_LEN];
    enum sect sect = S_NONE;
    int cur = -1;
    bool ok = true;
    while (ok && fgets(buf, sizeof buf, f)) {
        c.line++;
        if (!strchr(buf, '\n') && !feof(f)) {
            ok = perr(&c, "line longer than %d characters", LINE_MAX_LEN - 2);
            break;
        }
        strip_comment(buf);
        char *line = trim(buf);
        if (!*line)
            continue;
        if (*line == '[') {
            ok = parse_header(&c, s, line, &sect, &cur);
            continue;
        }
        size_t k = strcspn(line, "=~");
        if (!line[k]) {
            ok = perr(&c, "expected 'KEY = VALUE' or '[SECTION]', got '%s'", line);
            break;
        }
        char op = line[k];
        line[k] = '\0';
        char *key = trim(line);
        char *val = trim(line + k + 1);
        if (!*key) {
            ok = perr(&c, "missing key before '%c'", op);
            break;
        }
        if (op == '~' && sect != S_EXPECT) {
            ok = perr(&c, "'KEY ~ VALUE' is only allowed in [expect] sections");
            break;
        }
        switch (sect) {
        case S_NONE:
            ok = perr(&c, "key '%s' outside of any section", key);
            break;
        case S_CLUSTER:
            ok = cluster_key(&c, s, key, val);
            break;
        case S_NODE:
            ok = node_key(&c, s, cur, key, val);
            break;
        case S_SERVICE:
            ok = service_key(&c, s, cur, key, val);
            break;
        case S_EXPECT:
            ok = expect_key(&c, &s->exp[cur], key, op, val);
            break;
        }
    }
    if (ok && ferror(f))
        ok = perr(&c, "read error: %s", strerror(errno));
    fclose(f);
    return ok && resolve(&c, s);
}

/* ---- Checks ---- */

typedef struct msgbuf {
    char *p;
    size_t size, len;
} msgbuf;

static void add(msgbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(msgbuf *m, const char *fmt, ...)
{
    if (m->len >= m->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->p + m->len, m->size - m->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        m->len = m->len + (size_t)n < m->size ? m->len + (size_t)n : m->size;
}

static const char *dash(const char *s)
{
    return s[0] ? s : "-";
}

static void add_list(msgbuf *m, int n, char names[][US_NAME_MAX])
{
    add(m, "[");
    for (int i = 0; i < n; i++)
        add(m, "%s%s", i ? " " : "", names[i]);
    add(m, "]");
}

static void add_asg(msgbuf *m, const us_assignment *a)
{
    add(m, "active=%s active_inc=%" PRIu64 " epoch=%" PRIu64 " standbys=", dash(a->active),
        a->active_inc, a->epoch);
    char names[US_MAX_NODES][US_NAME_MAX];
    int n = a->n_standbys < 0 || a->n_standbys > US_MAX_NODES ? 0 : a->n_standbys;
    memcpy(names, a->standbys, sizeof names);
    add_list(m, n, names);
    add(m, " demoting=%s target=%s gen=%" PRIu64, a->demoting ? "yes" : "no", dash(a->target),
        a->gen);
    add(m,
        "\n      paused=%s recover=%s restart_node=%.*s restart_at=%" PRId64 " restarts=%d"
        " restart_window_start=%" PRId64 " last_failover=%" PRId64,
        a->paused ? "yes" : "no", a->recover ? "yes" : "no", US_NAME_MAX,
        a->restart_node[0] ? a->restart_node : "-", a->restart_at_ms, a->restarts,
        a->restart_window_ms, a->last_failover_ms);
    int nf = a->n_fail < 0 || a->n_fail > US_MAX_NODES ? 0 : a->n_fail;
    for (int i = 0; i < nf; i++)
        add(m, "\n      fail %.*s = %d %" PRId64 " %" PRId64 " %" PRId64, US_NAME_MAX,
            a->fail[i].node, a->fail[i].failures, a->fail[i].window_ms, a->fail[i].last_ms,
            a->fail[i].banned_until_ms);
    add(m, "\n      release=%s reason='%.*s'", us_release_kind_name(a->release), US_REASON_MAX,
        a->reason);
}

static void add_field(msgbuf *m, int64_t v)
{
    if (v < 0)
        add(m, " -");
    else
        add(m, " %" PRId64, v);
}

static void add_expect(msgbuf *m, const expect *e)
{
    if (!e || !e->change) {
        add(m, "no decision");
        return;
    }
    if (e->has_active)
        add(m, "active=%s ", dash(e->active.name));
    if (e->has_active_inc)
        add(m, "active_inc=%" PRIu64 " ", e->active_inc);
    if (e->has_epoch)
        add(m, "epoch=%" PRIu64 " ", e->epoch);
    if (e->has_standbys) {
        add(m, "standbys=[");
        for (int i = 0; i < e->n_standbys; i++)
            add(m, "%s%s", i ? " " : "", e->standbys[i].name);
        add(m, "] ");
    }
    if (e->has_demoting)
        add(m, "demoting=%s ", e->demoting ? "yes" : "no");
    if (e->has_target)
        add(m, "target=%s ", dash(e->target.name));
    if (e->has_paused)
        add(m, "paused=%s ", e->paused ? "yes" : "no");
    if (e->has_recover)
        add(m, "recover=%s ", e->recover ? "yes" : "no");
    if (e->has_restart_node)
        add(m, "restart_node=%s ", dash(e->restart_node.name));
    if (e->has_restart_at)
        add(m, "restart_at=%" PRId64 " ", e->restart_at);
    if (e->has_restarts)
        add(m, "restarts=%" PRId64 " ", e->restarts);
    if (e->has_restart_window_start)
        add(m, "restart_window_start=%" PRId64 " ", e->restart_window_start);
    if (e->has_last_failover)
        add(m, "last_failover=%" PRId64 " ", e->last_failover);
    if (e->has_lost_position)
        add(m, "lost_position=%" PRId64 " ", e->lost_position);
    if (e->has_sync_gen)
        add(m, "sync_gen=%" PRIu64 " ", e->sync_gen);
    if (e->has_release)
        add(m, "release=%s ", us_release_kind_name(e->release));
    if (e->has_renew)
        add(m, "renew=%s ", e->renew ? "yes" : "no");
    for (int i = 0; i < e->n_fail; i++) {
        const expect_fail *f = &e->fail[i];
        add(m, "\n      fail %s =", f->node.name);
        if (f->none) {
            add(m, " none");
            continue;
        }
        add_field(m, f->failures);
        add_field(m, f->window_ms);
        add_field(m, f->last_ms);
        add_field(m, f->banned_until_ms);
    }
    for (int i = 0; i < e->n_reasons; i++)
        add(m, "\n      reason ~ '%s'", e->reasons[i]);
}

static bool in_list(int n, const char (*names)[US_NAME_MAX], const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static bool is_banned(const us_decide_input *in, int s, const char *node)
{
    const us_failrec *f = us_assignment_failrec(&in->asg[s], node);
    return f && f->banned_until_ms > in->now_ms;
}

/* docs/decisions.md "Eligible node", FAILED report clause: while nobody holds the role, a counted
 * failure that no longer stands (ban over; or no ban and either the failure window is over or a
 * restart could bring the node back — budget left, not refused; or reset) does not rule the node
 * out. */
static bool failed_report_counts(const us_decide_input *in, int s, int n)
{
    const us_assignment *a = &in->asg[s];
    if (a->active[0])
        return true;
    const us_failrec *f = us_assignment_failrec(a, in->nodes[n].name);
    if (!f)
        return false;
    if (f->banned_until_ms > 0)
        return f->banned_until_ms > in->now_ms;
    if (in->now_ms - f->window_ms >= in->defs[s].failure_window_ms)
        return false;
    int used = in->now_ms - a->restart_window_ms >= in->defs[s].restart_window_ms ? 0 : a->restarts;
    return OBS(in, s, n)->refused || used >= in->defs[s].max_restarts;
}

/* docs/decisions.md "Eligible node". Returns NULL if eligible, else why not. `restart`: the node
 * gets the role back by a due restart in place (R4), so its FAILED report under the current
 * epoch (the failure that led to the restart) does not count. */
static const char *ineligible(const us_decide_input *in, int s, int n, bool restart)
{
    const us_service_def *d = &in->defs[s];
    const us_node *node = &in->nodes[n];
    const us_node_obs *o = &in->node_obs[n];
    const us_inst_obs *r = OBS(in, s, n);
    if (node->left)
        return "left";
    if (node->leaving)
        return "leaving";
    if (node->drained)
        return "drained";
    if (o->state != US_NODE_ALIVE)
        return us_node_state_name(o->state);
    if (o->lease != US_LEASE_VALID)
        return "lease not valid";
    if (d->n_nodes > 0 && !in_list(d->n_nodes, d->nodes, node->name))
        return "not in the service's nodes list";
    /* A fenced node ran nothing any more: it is out only while someone holds the role. */
    if (r->state == US_INST_FENCED && r->epoch == in->asg[s].epoch && in->asg[s].active[0])
        return "reported fenced under the current epoch";
    if (r->state == US_INST_FAILED && r->epoch == in->asg[s].epoch && !restart &&
        failed_report_counts(in, s, n))
        return "reported failed under the current epoch";
    if (is_banned(in, s, node->name))
        return "banned";
    if (r->health == US_HEALTH_UNHEALTHY &&
        (r->state == US_INST_STANDBY || r->state == US_INST_ACTIVE))
        return "unhealthy";
    return NULL;
}

/* docs/decisions.md "Releasing the active role": may the holder lose the role? */
static bool release_holds(const us_decide_input *in, int s, int h)
{
    const us_assignment *a = &in->asg[s];
    const us_inst_obs *r = OBS(in, s, h);
    bool reported =
        (r->state == US_INST_DEMOTED || r->state == US_INST_FAILED || r->state == US_INST_FENCED) &&
        r->epoch == a->epoch;
    return reported || in->node_obs[h].lease == US_LEASE_EXPIRED ||
           in->nodes[h].incarnation != a->active_inc;
}

/* Does the decision `nx` take the role from the holder (the counters' "released": another
 * active or none, or the same node under a new epoch)? */
static bool releases(const us_assignment *cur, const us_assignment *nx)
{
    return cur->active[0] && (strcmp(cur->active, nx->active) != 0 || nx->epoch != cur->epoch);
}

/* Does the release kind `k` of a decision agree with what the input says about holder h? */
static bool release_kind_holds(const us_decide_input *in, int s, int h, us_release_kind k)
{
    const us_assignment *a = &in->asg[s];
    const us_inst_obs *r = OBS(in, s, h);
    bool now = r->epoch == a->epoch;
    switch (k) {
    case US_RELEASE_FAILED:
        return now && r->state == US_INST_FAILED && !a->recover;
    case US_RELEASE_UNHEALTHY:
        return now && r->state == US_INST_FAILED && a->recover;
    case US_RELEASE_FENCED:
        return now && r->state == US_INST_FENCED;
    case US_RELEASE_SWITCHOVER:
        return now && r->state == US_INST_DEMOTED && a->demoting;
    case US_RELEASE_DEMOTED:
        return now && r->state == US_INST_DEMOTED && !a->demoting;
    case US_RELEASE_LEASE:
        return in->node_obs[h].lease == US_LEASE_EXPIRED;
    case US_RELEASE_AGENT:
        return in->nodes[h].incarnation != a->active_inc;
    default:
        return false;
    }
}

/* Did the holder report its instance failed under the current epoch (R3)? */
static bool holder_failed(const us_decide_input *in, int s)
{
    const us_assignment *a = &in->asg[s];
    int h = a->active[0] ? find_node(in, a->active) : -1;
    return h >= 0 && OBS(in, s, h)->state == US_INST_FAILED && OBS(in, s, h)->epoch == a->epoch;
}

static bool str_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static bool same_failrec(const us_failrec *a, const us_failrec *b)
{
    return strcmp(a->node, b->node) == 0 && a->failures == b->failures &&
           a->window_ms == b->window_ms && a->last_ms == b->last_ms &&
           a->banned_until_ms == b->banned_until_ms;
}

/* Self-healing promises (docs/decisions.md R0..R8) of one decision. */
static void check_healing(const us_decide_input *in, int s, const us_assignment *nx, msgbuf *m)
{
    const us_assignment *cur = &in->asg[s];
    const us_service_def *d = &in->defs[s];
    const char *name = d->name;
    int64_t now = in->now_ms;
    /* R9: a renewal keeps the holder and its epoch, and only for a valid lease a voter revoked. */
    if (nx->renew) {
        int h = cur->active[0] ? find_node(in, cur->active) : -1;
        if (h < 0 || strcmp(nx->active, cur->active) != 0 || nx->epoch != cur->epoch ||
            in->node_obs[h].lease != US_LEASE_VALID || !in->node_obs[h].revoked)
            add(m, "%s: renewal without a kept holder whose valid lease a voter revoked (R9)\n",
                name);
    }
    /* R0: for a paused service only the release of a holder lost with its node, to nobody, or a
     * renewal that changes nothing else (R9). */
    if (cur->paused && nx->renew) {
        us_assignment same = *nx;
        same.renew = false;
        if (memcmp(&same, cur, offsetof(us_assignment, reason)) != 0 ||
            same.n_fail != cur->n_fail || strcmp(same.restart_node, cur->restart_node) != 0)
            add(m, "%s: paused, yet the renewal changes more than the lease (R0, R9)\n", name);
    } else if (cur->paused) {
        us_assignment only = *cur;
        only.active[0] = '\0';
        only.active_inc = 0;
        only.demoting = false;
        only.target[0] = '\0';
        only.recover = false;
        bool same_fail = nx->n_fail == only.n_fail;
        for (int i = 0; same_fail && i < nx->n_fail; i++)
            same_fail = same_failrec(&nx->fail[i], &only.fail[i]);
        if (!cur->active[0] || nx->active[0] || nx->epoch != cur->epoch ||
            nx->n_standbys != cur->n_standbys || nx->recover || nx->demoting ||
            strcmp(nx->restart_node, only.restart_node) != 0 || nx->restarts != only.restarts ||
            nx->last_failover_ms != only.last_failover_ms || !same_fail)
            add(m, "%s: paused, yet decided more than releasing a lost holder (R0)\n", name);
    }
    if (nx->paused != cur->paused)
        add(m, "%s: decisions never change 'paused'\n", name);
    if (!str_terminated(nx->restart_node, sizeof nx->restart_node) || nx->n_fail < 0 ||
        nx->n_fail > US_MAX_NODES) {
        add(m, "%s: malformed self-healing fields\n", name);
        return;
    }
    /* recover: set only on the unchanged holder, newly only when it reports active+unhealthy. */
    if (nx->recover && (strcmp(nx->active, cur->active) != 0 || nx->active_inc != cur->active_inc))
        add(m, "%s: recover set, but the role changed hands\n", name);
    if (nx->recover && !cur->recover) {
        int h = cur->active[0] ? find_node(in, cur->active) : -1;
        const us_inst_obs *r = h >= 0 ? OBS(in, s, h) : NULL;
        if (!r || r->state != US_INST_ACTIVE || r->epoch != cur->epoch ||
            r->health != US_HEALTH_UNHEALTHY)
            add(m, "%s: recover set on a holder not reporting active+unhealthy under E\n", name);
    }
    /* A restart in place: the role is free, and it is the pending one or the failed holder. */
    if (nx->restart_node[0]) {
        bool same = strcmp(nx->restart_node, cur->restart_node) == 0 && !cur->active[0];
        bool fresh = strcmp(nx->restart_node, cur->active) == 0 && holder_failed(in, s);
        if (nx->active[0])
            add(m, "%s: restart_node %s pending while %s is active\n", name, nx->restart_node,
                nx->active);
        if (!same && !fresh)
            add(m, "%s: restart_node %s is neither pending nor the failed holder\n", name,
                nx->restart_node);
        if (fresh &&
            (nx->restarts < 1 || nx->restarts > d->max_restarts || nx->restart_at_ms < now ||
             nx->restart_at_ms > now + d->restart_backoff_max_ms))
            add(m,
                "%s: new restart in place with restarts=%d (max %d), restart_at=%" PRId64
                " (now %" PRId64 ", backoff at most %d ms)\n",
                name, nx->restarts, d->max_restarts, nx->restart_at_ms, now,
                d->restart_backoff_max_ms);
        if (same && nx->restart_at_ms != cur->restart_at_ms)
            add(m, "%s: a pending restart's time changed\n", name);
    }
    /* The pending restart node gets the role only once the backoff is over. */
    if (!cur->active[0] && cur->restart_node[0] && strcmp(nx->active, cur->restart_node) == 0 &&
        now < cur->restart_at_ms)
        add(m, "%s: restart on %s before restart_at %" PRId64 " (now %" PRId64 ")\n", name,
            nx->active, cur->restart_at_ms, now);
    /* Failure records change only by R3, for the holder that failed, at `now`. */
    bool failed = holder_failed(in, s);
    for (int i = 0; i < cur->n_fail; i++) {
        const us_failrec *c = &cur->fail[i];
        const us_failrec *x = us_assignment_failrec(nx, c->node);
        bool counted = failed && strcmp(c->node, cur->active) == 0;
        if (!counted && (!x || !same_failrec(c, x)) && cur->n_fail < US_MAX_NODES)
            add(m, "%s: failure record of %s changed without a failure of it\n", name, c->node);
    }
    for (int i = 0; i < nx->n_fail; i++) {
        const us_failrec *x = &nx->fail[i];
        bool counted = failed && strcmp(x->node, cur->active) == 0;
        if (!counted && !us_assignment_failrec(cur, x->node))
            add(m, "%s: failure record of %s added without a failure of it\n", name, x->node);
        if (counted && (x->last_ms != now || x->failures < 1 || x->window_ms > now))
            add(m, "%s: failure of %s not counted at now (last_ms %" PRId64 ")\n", name, x->node,
                x->last_ms);
        if (counted && d->failure_threshold > 0 && x->failures >= d->failure_threshold &&
            x->banned_until_ms != now + d->failure_cooldown_ms)
            add(m, "%s: %s reached failure_threshold but banned_until is %" PRId64 "\n", name,
                x->node, x->banned_until_ms);
    }
    if (failed && !us_assignment_failrec(nx, cur->active))
        add(m, "%s: the failure of %s was not counted\n", name, cur->active);
    if (nx->last_failover_ms != cur->last_failover_ms && nx->last_failover_ms != now)
        add(m, "%s: last_failover set to %" PRId64 ", not now (%" PRId64 ")\n", name,
            nx->last_failover_ms, now);
    /* A switchover asked for now: same holder and epoch, a target that is eligible. */
    if (nx->demoting && !cur->demoting) {
        if (strcmp(nx->active, cur->active) != 0 || nx->epoch != cur->epoch)
            add(m, "%s: demoting set while the role changed hands\n", name);
        int t = nx->target[0] ? find_node(in, nx->target) : -1;
        const char *why = t >= 0 ? ineligible(in, s, t, false) : NULL;
        if (nx->target[0] && (t < 0 || why))
            add(m, "%s: switchover target %s is not eligible (%s)\n", name, nx->target,
                why ? why : "unknown node");
    }
}

/* Properties every output must have, whatever the scenario. */
static void check_properties(const us_decide_input *in, const us_decide_output *out, msgbuf *m)
{
    if (out->n < 0 || out->n > in->n_services) {
        add(m, "output has n=%d decisions for %d services\n", out->n, in->n_services);
        return;
    }
    if (!in->has_quorum && out->n > 0)
        add(m, "without quorum nothing may be decided, got %d decision(s)\n", out->n);
    if (out->wake_ms != 0 && out->wake_ms <= in->now_ms)
        add(m, "wake_ms %" PRId64 " is neither 0 nor after now %" PRId64 "\n", out->wake_ms,
            in->now_ms);
    bool seen[SCN_MAX_SERVICES] = {false};
    for (int i = 0; i < out->n; i++) {
        const us_decision *dec = &out->d[i];
        int s = dec->service;
        if (s < 0 || s >= in->n_services) {
            add(m, "decision %d: service index %d out of range\n", i, s);
            continue;
        }
        const char *name = in->defs[s].name;
        if (seen[s])
            add(m, "%s: more than one decision\n", name);
        seen[s] = true;
        const us_assignment *cur = &in->asg[s];
        const us_assignment *nx = &dec->next;
        if (!str_terminated(nx->service, sizeof nx->service) ||
            !str_terminated(nx->active, sizeof nx->active) ||
            !str_terminated(nx->target, sizeof nx->target) ||
            !str_terminated(nx->reason, sizeof nx->reason) || nx->n_standbys < 0 ||
            nx->n_standbys > US_MAX_NODES) {
            add(m, "%s: malformed assignment (unterminated string or bad n_standbys)\n", name);
            continue;
        }
        if (strcmp(nx->service, name) != 0)
            add(m, "%s: next.service is '%s'\n", name, nx->service);
        if (nx->gen != cur->gen)
            add(m, "%s: next.gen=%" PRIu64 ", must equal the input gen %" PRIu64 "\n", name,
                nx->gen, cur->gen);
        if (!nx->reason[0])
            add(m, "%s: empty reason\n", name);
        int na = -1;
        if (nx->active[0] && (na = find_node(in, nx->active)) < 0)
            add(m, "%s: active '%s' is not a node of the input\n", name, nx->active);
        bool handed = nx->active[0] &&
                      (strcmp(nx->active, cur->active) != 0 || nx->active_inc != cur->active_inc);
        uint64_t want = handed ? cur->epoch + 1 : cur->epoch;
        if (nx->epoch != want)
            add(m,
                "%s: epoch %" PRIu64 " -> %" PRIu64 ", expected %" PRIu64
                " (grows by exactly 1 iff the active role is handed to a node)\n",
                name, cur->epoch, nx->epoch, want);
        if (handed && na >= 0) {
            if (nx->active_inc != in->nodes[na].incarnation)
                add(m,
                    "%s: new active %s got active_inc=%" PRIu64 ", its incarnation is %" PRIu64
                    "\n",
                    name, nx->active, nx->active_inc, in->nodes[na].incarnation);
            bool restart = !cur->active[0] && strcmp(cur->restart_node, nx->active) == 0;
            const char *why = ineligible(in, s, na, restart);
            if (why)
                add(m, "%s: new active %s is not eligible (%s)\n", name, nx->active, why);
            if (nx->demoting || nx->target[0] || nx->recover || nx->restart_node[0])
                add(m,
                    "%s: demoting/target/recover/restart_node must clear when a new active is "
                    "chosen\n",
                    name);
        }
        if (cur->active[0]) {
            int h = find_node(in, cur->active);
            bool taken = strcmp(nx->active, cur->active) != 0 || nx->active_inc != cur->active_inc;
            if (taken && h >= 0 && !release_holds(in, s, h))
                add(m, "%s: the active role was taken from %s without a release condition\n", name,
                    cur->active);
            if (releases(cur, nx) && h >= 0 && !release_kind_holds(in, s, h, nx->release))
                add(m, "%s: release=%s does not fit what the input says about %s\n", name,
                    us_release_kind_name(nx->release), cur->active);
        }
        if (!releases(cur, nx) && nx->release != US_RELEASE_NONE)
            add(m, "%s: release=%s, but the decision releases nothing\n", name,
                us_release_kind_name(nx->release));
        for (int k = 0; k < nx->n_standbys; k++) {
            const char *sb = nx->standbys[k];
            if (!str_terminated(sb, US_NAME_MAX)) {
                add(m, "%s: unterminated standby name\n", name);
                break;
            }
            int n = find_node(in, sb);
            if (n < 0) {
                add(m, "%s: standby '%s' is not a node of the input\n", name, sb);
                continue;
            }
            if (strcmp(sb, nx->active) == 0)
                add(m, "%s: %s is both active and standby\n", name, sb);
            if (strcmp(sb, nx->restart_node) == 0)
                add(m, "%s: %s is both restart node and standby\n", name, sb);
            for (int j = 0; j < k; j++)
                if (strcmp(nx->standbys[j], sb) == 0)
                    add(m, "%s: standby %s listed twice\n", name, sb);
            /* A newly added standby must be eligible; a kept one only must not be surely
             * unable to serve (docs/decisions.md, "Standbys"): an unhealthy or suspect one
             * stays, a drained or banned one goes. */
            bool kept = in_list(cur->n_standbys, cur->standbys, sb);
            const char *why = ineligible(in, s, n, false);
            const us_node_obs *o = &in->node_obs[n];
            bool may_stay = !in->nodes[n].left && !in->nodes[n].leaving && !in->nodes[n].drained &&
                            !is_banned(in, s, sb) && o->state != US_NODE_DEAD &&
                            o->lease != US_LEASE_EXPIRED;
            if (why && !(kept && may_stay))
                add(m, "%s: standby %s is not eligible (%s)\n", name, sb, why);
        }
        check_healing(in, s, nx, m);
        bool same = nx->n_standbys == cur->n_standbys;
        for (int k = 0; same && k < nx->n_standbys; k++)
            same = strcmp(nx->standbys[k], cur->standbys[k]) == 0;
        same = same && nx->n_fail == cur->n_fail;
        for (int k = 0; same && k < nx->n_fail; k++)
            same = same_failrec(&nx->fail[k], &cur->fail[k]);
        same = same && nx->sync_gen == cur->sync_gen && nx->sync_waived == cur->sync_waived &&
               nx->free_since_ms == cur->free_since_ms &&
               nx->has_lost_position == cur->has_lost_position &&
               nx->lost_position == cur->lost_position &&
               same_names(nx->sync, nx->n_sync, cur->sync, cur->n_sync);
        if (same && strcmp(nx->active, cur->active) == 0 && nx->active_inc == cur->active_inc &&
            nx->epoch == cur->epoch && nx->demoting == cur->demoting &&
            strcmp(nx->target, cur->target) == 0 && nx->recover == cur->recover &&
            strcmp(nx->restart_node, cur->restart_node) == 0 &&
            nx->restart_at_ms == cur->restart_at_ms && nx->restarts == cur->restarts &&
            nx->restart_window_ms == cur->restart_window_ms &&
            nx->last_failover_ms == cur->last_failover_ms && !nx->renew)
            add(m, "%s: decision changes nothing (every field equals the input)\n", name);
    }
}

static const us_decision *decision_for(const us_decide_output *out, int s)
{
    for (int i = 0; i < out->n && i < SCN_MAX_SERVICES; i++)
        if (out->d[i].service == s)
            return &out->d[i];
    return NULL;
}

static const expect *expect_for(const scenario *sc, const char *service)
{
    for (int i = 0; i < sc->n_expect; i++)
        if (strcmp(sc->exp[i].service, service) == 0)
            return &sc->exp[i];
    return NULL;
}

static bool field_matches(int64_t want, int64_t got)
{
    return want < 0 || want == got;
}

/* Compares one service's decision with its [expect]; returns true if they agree. */

static bool matches(const expect *e, const us_decision *dec)
{
    bool want = e && e->change;
    if (!want || !dec)
        return !want && !dec;
    const us_assignment *nx = &dec->next;
    if (e->has_active && strcmp(e->active.name, nx->active) != 0)
        return false;
    if (e->has_active_inc && e->active_inc != nx->active_inc)
        return false;
    if (e->has_epoch && e->epoch != nx->epoch)
        return false;
    if (e->has_demoting && e->demoting != nx->demoting)
        return false;
    if (e->has_target && strcmp(e->target.name, nx->target) != 0)
        return false;
    if (e->has_standbys) {
        if (e->n_standbys != nx->n_standbys)
            return false;
        for (int k = 0; k < e->n_standbys; k++)
            if (strcmp(e->standbys[k].name, nx->standbys[k]) != 0)
                return false;
    }
    if (e->has_paused && e->paused != nx->paused)
        return false;
    if (e->has_recover && e->recover != nx->recover)
        return false;
    if (e->has_restart_node && strcmp(e->restart_node.name, nx->restart_node) != 0)
        return false;
    if (e->has_restart_at && e->restart_at != nx->restart_at_ms)
        return false;
    if (e->has_restarts && e->restarts != nx->restarts)
        return false;
    if (e->has_restart_window_start && e->restart_window_start != nx->restart_window_ms)
        return false;
    if (e->has_last_failover && e->last_failover != nx->last_failover_ms)
        return false;
    if (e->has_lost_position && (e->lost_position >= 0) != nx->has_lost_position)
        return false;
    if (e->has_sync_gen && e->sync_gen != nx->sync_gen)
        return false;
    if (e->has_free_since && e->free_since != nx->free_since_ms)
        return false;
    if (e->has_sync && !same_names(e->sync, e->n_sync, nx->sync, nx->n_sync))
        return false;
    if (e->has_sync_want &&
        !same_names(e->sync_want, e->n_sync_want, nx->sync_want, nx->n_sync_want))
        return false;
    if (e->has_lost_position && e->lost_position >= 0 && e->lost_position != nx->lost_position)
        return false;
    if (e->has_release && e->release != nx->release)
        return false;
    if (e->has_renew && e->renew != nx->renew)
        return false;
    for (int i = 0; i < e->n_fail; i++) {
        const expect_fail *f = &e->fail[i];
        const us_failrec *r = us_assignment_failrec(nx, f->node.name);
        if (f->none ? r != NULL
                    : !r || !field_matches(f->failures, r->failures) ||
                          !field_matches(f->window_ms, r->window_ms) ||
                          !field_matches(f->last_ms, r->last_ms) ||
                          !field_matches(f->banned_until_ms, r->banned_until_ms))
            return false;
    }
    for (int i = 0; i < e->n_reasons; i++)
        if (!strstr(nx->reason, e->reasons[i]))
            return false;
    return true;
}

static bool same_output(const us_decide_output *a, const us_decide_output *b)
{
    if (a->n != b->n || a->wake_ms != b->wake_ms)
        return false;
    for (int i = 0; i < a->n && i < SCN_MAX_SERVICES; i++) {
        const us_assignment *x = &a->d[i].next, *y = &b->d[i].next;
        if (a->d[i].service != b->d[i].service || x->gen != y->gen || x->epoch != y->epoch ||
            x->active_inc != y->active_inc || x->demoting != y->demoting ||
            x->n_standbys != y->n_standbys || strcmp(x->active, y->active) != 0 ||
            strcmp(x->target, y->target) != 0 || strcmp(x->reason, y->reason) != 0 ||
            memcmp(x->standbys, y->standbys, sizeof x->standbys) != 0 || x->recover != y->recover ||
            x->paused != y->paused || strcmp(x->restart_node, y->restart_node) != 0 ||
            x->restart_at_ms != y->restart_at_ms || x->restarts != y->restarts ||
            x->restart_window_ms != y->restart_window_ms ||
            x->last_failover_ms != y->last_failover_ms || x->n_fail != y->n_fail ||
            x->release != y->release)
            return false;
        for (int k = 0; k < x->n_fail && k < US_MAX_NODES; k++)
            if (!same_failrec(&x->fail[k], &y->fail[k]))
                return false;
    }
    return true;
}

static void run_scenario(void **state)
{
    const char *path = *state;
    char err[1024];
    if (!parse_scenario(path, &g_scn, err, sizeof err))
        fail_msg("scenario parse error: %s", err);
    const us_decide_input *in = &g_scn.in;
    for (int k = 0; k < in->n_services; k++) /* decide.h: inst[service * n_nodes + node] */
        for (int n = 0; n < in->n_nodes; n++)
            g_scn.inst_at[k * in->n_nodes + n] = &g_scn.inst[k][n];

    memcpy(&g_in_copy, in, sizeof g_in_copy);
    memcpy(&g_scn_copy, &g_scn, sizeof g_scn_copy);
    memset(&g_out, 0xa5, sizeof g_out); /* garbage, so unset fields show up */
    memset(g_dec, 0xa5, sizeof g_dec);
    g_out.d = g_dec;
    us_decide(in, &g_out);
    memset(&g_out2, 0, sizeof g_out2);
    memset(g_dec2, 0, sizeof g_dec2);
    g_out2.d = g_dec2;
    us_decide(in, &g_out2);

    msgbuf m = {g_msg, sizeof g_msg, 0};
    if (memcmp(&g_in_copy, in, sizeof g_in_copy) != 0 ||
        memcmp(g_scn_copy.defs, g_scn.defs, sizeof g_scn.defs) != 0 ||
        memcmp(g_scn_copy.asg, g_scn.asg, sizeof g_scn.asg) != 0 ||
        memcmp(g_scn_copy.inst, g_scn.inst, sizeof g_scn.inst) != 0)
        add(&m, "us_decide modified its input\n");
    check_properties(in, &g_out, &m);
    if (!same_output(&g_out, &g_out2))
        add(&m, "two calls with the same input gave different outputs (not pure)\n");
    if (m.len > 0) {
        fprintf(stderr, "%s: general property violated:\n%s", path,
                g_msg); /* print_error cuts at 1 KiB */
        fail_msg("%s: general property violated", path);
    }

    bool ok = true;
    if (g_scn.has_expect_wake && g_out.wake_ms != g_scn.expect_wake) {
        ok = false;
        add(&m, "  wake_ms: expected %" PRId64 ", got %" PRId64 " (now %" PRId64 ")\n",
            g_scn.expect_wake, g_out.wake_ms, in->now_ms);
    }
    for (int s = 0; s < in->n_services; s++) {
        const expect *e = expect_for(&g_scn, in->defs[s].name);
        const us_decision *dec = decision_for(&g_out, s);
        if (e && dec && releases(&in->asg[s], &dec->next) && !e->has_release) {
            ok = false;
            add(&m,
                "  service %s (%s:%d): the decision releases %s: [expect] must say 'release = "
                "%s'\n",
                in->defs[s].name, path, e->line, in->asg[s].active,
                us_release_kind_name(dec->next.release));
        }
        if (matches(e, dec))
            continue;
        ok = false;
        add(&m, "  service %s (%s:%d)\n    expected: ", in->defs[s].name, path,
            e ? e->line : g_scn.raw[s].line);
        add_expect(&m, e);
        add(&m, "\n    got:      ");
        if (dec)
            add_asg(&m, &dec->next);
        else
            add(&m, "no decision");
        add(&m, "\n    input:    ");
        add_asg(&m, &in->asg[s]);
        add(&m, "\n");
    }
    if (!ok) {
        fprintf(stderr, "%s: decisions differ from [expect]:\n%s", path, g_msg);
        fail_msg("%s: decisions differ from [expect]", path);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const char *dir = getenv("US_SCENARIO_DIR");
    if (!dir || !*dir)
        dir = "tests/scenarios";
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr,
                "test_decide_scenarios: cannot open scenario directory %s: %s "
                "(set US_SCENARIO_DIR or run from the repository root)\n",
                dir, strerror(errno));
        return 1;
    }
    size_t cap = 0, n = 0;
    char **paths = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 4 || strcmp(de->d_name + len - 4, ".scn") != 0 || de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **np = realloc(paths, cap * sizeof *paths);
            if (!np)
                abort();
            paths = np;
        }
        if (asprintf(&paths[n], "%s/%s", dir, de->d_name) < 0)
            abort();
        n++;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "test_decide_scenarios: no *.scn files in %s\n", dir);
        free(paths);
        return 1;
    }
    qsort(paths, n, sizeof *paths, cmp_str);
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    if (!tests)
        abort();
    for (size_t i = 0; i < n; i++) {
        tests[i].name = strrchr(paths[i], '/') + 1;
        tests[i].test_func = run_scenario;
        tests[i].initial_state = paths[i];
    }
    int rc = _cmocka_run_group_tests("decide_scenarios", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    free(tests);
    return rc;
}
