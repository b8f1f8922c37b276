/* msg.c — see msg.h. */
#include "core/msg.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hostport.h"
#include "lib/jscan.h"

/* The message being decoded: tokens of one datagram (US_NET_PAYLOAD_MAX bytes need fewer than
 * one token per two bytes). The decoder runs on the agent's single loop, one datagram at a time. */
#define MSG_TOKENS_MAX 32768
static us_jtok msg_tok[MSG_TOKENS_MAX];

/* A u64 as a decimal string without sign or leading garbage. */
static bool u64_of(const us_js *js, int i, uint64_t *out)
{
    char s[24];
    if (!us_js_str(js, i, s, sizeof s) || !*s || strlen(s) > 20 || s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno)
        return false;
    *out = x;
    return true;
}

/* An optional boolean: absent is false. */
static bool opt_bool(const us_js *js, int obj, const char *key, bool *out)
{
    int v = us_js_get(js, obj, key);
    if (v >= 0 && !us_js_is_bool(js, v))
        return false;
    *out = us_js_is(js, v, US_JS_TRUE);
    return true;
}

static bool hostport(const us_js *js, int i, char *dst, size_t size)
{
    return us_js_str(js, i, dst, size) && us_parse_hostport(dst, NULL, 0, NULL) == 0;
}

/* A report's fields, in both forms (msg.h): "full" names every field; "brief" (short keys, fields
 * at their default left out) is ~4x cheaper to parse. One table drives encoding and decoding. */
typedef enum { RF_INT, RF_I64, RF_U64, RF_STR, RF_BOOL } rep_type;

static const struct rep_field {
    const char *full, *brief;
    rep_type type;
    size_t off, size; /* RF_STR: the buffer's size */
    int64_t lo, hi, dflt;
    bool later; /* added after the full form was fixed: an older agent's full report lacks it */
} rep_fields[] = {
    {"state", "s", RF_INT, offsetof(us_report, obs.state), 0, 0, US_INST_FENCED, 0, false},
    {"epoch", "e", RF_U64, offsetof(us_report, obs.epoch), 0, 0, 0, 0, false},
    {"exit", "x", RF_INT, offsetof(us_report, obs.exit_status), 0, INT_MIN, INT_MAX, 0, false},
    {"pid", "p", RF_INT, offsetof(us_report, pid), 0, 0, INT_MAX, 0, false},
    {"px_epoch", "pe", RF_U64, offsetof(us_report, px_epoch), 0, 0, 0, 0, false},
    {"px_open", "po", RF_INT, offsetof(us_report, px_open), 0, 0, INT_MAX, 0, false},
    {"health", "h", RF_INT, offsetof(us_report, obs.health), 0, 0, US_HEALTH_UNHEALTHY, 0, false},
    {"cause", "c", RF_STR, offsetof(us_report, obs.cause), sizeof(((us_report *)0)->obs.cause), 0,
     0, 0, false},
    {"check_ms", "cm", RF_I64, offsetof(us_report, check_ms), 0, -1, INT64_MAX, -1, false},
    {"probes", "pr", RF_I64, offsetof(us_report, probes), 0, 0, INT64_MAX, 0, false},
    {"probes_failed", "pf", RF_I64, offsetof(us_report, probes_failed), 0, 0, INT64_MAX, 0, false},
    {"restarts", "r", RF_INT, offsetof(us_report, restarts), 0, 0, INT_MAX, 0, false},
    {"restart_cause", "rc", RF_STR, offsetof(us_report, restart_cause),
     sizeof(((us_report *)0)->restart_cause), 0, 0, 0, false},
    {"refused", "rf", RF_BOOL, offsetof(us_report, obs.refused), 0, 0, 0, 0, false},
    {"followed", "fw", RF_U64, offsetof(us_report, obs.followed), 0, 0, 0, 0, true},
    {"position", "ps", RF_I64, offsetof(us_report, obs.position), 0, -1, INT64_MAX, -1, true},
    {"sync_applied", "sa", RF_U64, offsetof(us_report, obs.sync_applied), 0, 0, 0, 0, true},
    {"position_gen", "pg", RF_U64, offsetof(us_report, obs.position_gen), 0, 0, 0, 0, true},
};

_Static_assert(sizeof(us_inst_state) == sizeof(int) && sizeof(us_health) == sizeof(int),
               "enums of a report are stored as int");
_Static_assert(sizeof(uint64_t) == sizeof(int64_t), "probes are stored as int64");

/* One report as its object, in the full or brief form. */
static void report_text(us_jw *w, const us_report *r, bool brief)
{
    us_jw_open(w);
    for (size_t i = 0; i < sizeof rep_fields / sizeof rep_fields[0]; i++) {
        const struct rep_field *f = &rep_fields[i];
        const char *at = (const char *)r + f->off;
        const char *key = brief ? f->brief : f->full;
        if (f->type == RF_INT || f->type == RF_I64) {
            int x;
            int64_t y;
            if (f->type == RF_INT)
                memcpy(&x, at, sizeof x), y = x;
            else
                memcpy(&y, at, sizeof y);
            if (!brief || y != f->dflt)
                us_jw_key(w, key), us_jw_int(w, y);
        } else if (f->type == RF_U64) {
            uint64_t x;
            memcpy(&x, at, sizeof x);
            if (!brief || x != 0)
                us_jw_key(w, key), us_jw_u64str(w, x);
        } else if (f->type == RF_STR) {
            if (!brief || *at)
                us_jw_key(w, key), us_jw_str(w, at);
        } else {
            bool b;
            memcpy(&b, at, sizeof b);
            if (!brief || b)
                us_jw_key(w, key), us_jw_bool(w, b);
        }
    }
    us_jw_close(w);
}

int us_msg_reports_text(char *buf, size_t cap, const us_report *r, int n, bool brief, size_t *len)
{
    us_jw w;
    us_jw_init(&w, buf, cap);
    us_jw_open(&w);
    int k = 0;
    for (; k < n; k++) {
        size_t before = w.len;
        bool first = w.first;
        us_jw_key(&w, r[k].service);
        report_text(&w, &r[k], brief);
        /* room for the closing brace */
        if (w.over || w.len + 1 >= cap) {
            w.over = false;
            w.len = before;
            w.first = first;
            break;
        }
    }
    us_jw_close(&w);
    if (w.over) {
        *len = 0;
        return 0;
    }
    buf[w.len] = '\0';
    *len = w.len;
    return k;
}

size_t us_msg_ping_text(char *buf, size_t cap, const us_msg_ping *p, const char *rep,
                        size_t rep_len, bool brief)
{
    us_jw w;
    us_jw_init(&w, buf, cap);
    us_jw_open(&w);
    us_jw_key(&w, "t");
    us_jw_str(&w, "ping");
    us_jw_key(&w, "seq");
    us_jw_u64str(&w, p->round);
    if (p->has_api)
        us_jw_key(&w, "api"), us_jw_str(&w, p->api);
    if (p->service_host[0])
        us_jw_key(&w, "sh"), us_jw_str(&w, p->service_host);
    us_jw_key(&w, "term");
    us_jw_u64str(&w, p->term);
    us_jw_key(&w, "lease");
    us_jw_bool(&w, p->lease);
    us_jw_key(&w, "vote");
    us_jw_bool(&w, p->vote);
    if (p->reads_brief)
        us_jw_key(&w, "rb"), us_jw_bool(&w, true);
    if (p->has_commit)
        us_jw_key(&w, "ci"), us_jw_u64str(&w, p->commit);
    if (p->has_av)
        us_jw_key(&w, "av"), us_jw_u64str(&w, p->av);
    if (p->adopt)
        us_jw_key(&w, "adopt"), us_jw_u64str(&w, p->adopt);
    if (p->n_leases > 0) {
        us_jw_key(&w, "gr");
        us_jw_open(&w);
        for (int i = 0; i < p->n_leases; i++) {
            const us_msg_lease *l = &p->leases[i];
            us_jw_key(&w, l->node);
            us_jw_open(&w);
            us_jw_key(&w, "age");
            us_jw_int(&w, l->age);
            us_jw_key(&w, "stale");
            us_jw_bool(&w, l->stale);
            us_jw_key(&w, "v");
            us_jw_u64str(&w, l->v);
            us_jw_close(&w);
        }
        us_jw_close(&w);
    }
    if (rep) {
        us_jw_key(&w, brief ? "rp" : "rep");
        us_jw_raw(&w, rep, rep_len);
    }
    if (p->interval_ms > 0)
        us_jw_key(&w, "iv"), us_jw_int(&w, p->interval_ms);
    us_jw_close(&w);
    return w.over ? 0 : w.len;
}

/* Every field of the full form must be there (but those added later); the brief form leaves
 * defaults out. `key` is the member's key token (the service), `v` its value. */
static bool decode_report(const us_js *js, int key, int v, us_report *r, bool brief)
{
    memset(r, 0, sizeof *r);
    if (!us_js_is(js, v, US_JS_OBJECT) || !us_js_str(js, key, r->service, sizeof r->service) ||
        !us_name_valid(r->service))
        return false;
    for (size_t i = 0; i < sizeof rep_fields / sizeof rep_fields[0]; i++) {
        const struct rep_field *f = &rep_fields[i];
        char *at = (char *)r + f->off;
        int x = us_js_get(js, v, brief ? f->brief : f->full);
        if (x < 0 && !brief && !f->later)
            return false;
        if (f->type == RF_INT || f->type == RF_I64) {
            int64_t n = f->dflt;
            if (x >= 0 && !us_js_int(js, x, f->lo, f->hi, &n))
                return false;
            if (f->type == RF_INT) {
                int k = (int)n;
                memcpy(at, &k, sizeof k);
            } else {
                memcpy(at, &n, sizeof n);
            }
        } else if (f->type == RF_U64) {
            uint64_t n = 0;
            if (x >= 0 && !u64_of(js, x, &n))
                return false;
            memcpy(at, &n, sizeof n);
        } else if (f->type == RF_STR) {
            if (x >= 0 && !us_js_str(js, x, at, f->size))
                return false;
        } else {
            if (x >= 0 && !us_js_is_bool(js, x))
                return false;
            bool b = us_js_is(js, x, US_JS_TRUE);
            memcpy(at, &b, sizeof b);
        }
    }
    return true;
}

static const char *decode_ping(const us_js *js, us_msg *m)
{
    us_msg_ping *p = &m->u.ping;
    memset(p, 0, offsetof(us_msg_ping, reports)); /* each report is cleared as it is decoded */
    int api = us_js_get(js, 0, "api");
    if (!u64_of(js, us_js_get(js, 0, "seq"), &p->round) || p->round == 0)
        return "ping: seq";
    if (!u64_of(js, us_js_get(js, 0, "term"), &p->term))
        return "ping: term";
    int lease = us_js_get(js, 0, "lease");
    if (!us_js_is_bool(js, lease))
        return "ping: lease";
    p->lease = us_js_is(js, lease, US_JS_TRUE);
    if (api >= 0) {
        if (!hostport(js, api, p->api, sizeof p->api))
            return "ping: api";
        p->has_api = true;
    }
    int adopt = us_js_get(js, 0, "adopt");
    if (adopt >= 0 && !u64_of(js, adopt, &p->adopt))
        return "ping: adopt";
    int sh = us_js_get(js, 0, "sh");
    if (sh >= 0 && (!us_js_str(js, sh, p->service_host, sizeof p->service_host) ||
                    !us_host_valid(p->service_host)))
        return "ping: sh";
    int full = us_js_get(js, 0, "rep"), brief = us_js_get(js, 0, "rp");
    int rep = full >= 0 ? full : brief;
    if (full >= 0 && brief >= 0)
        return "ping: rep and rp";
    if (rep >= 0 && !us_js_is(js, rep, US_JS_OBJECT))
        return "ping: rep";
    p->has_rep = rep >= 0;
    if (rep >= 0 && js->tok[rep].n > US_MSG_REPORTS_MAX)
        return "ping: rep (more than " US_STR(US_MSG_REPORTS_MAX) " reports)";
    for (int k = us_js_first(js, rep); k >= 0; k = us_js_next(js, rep, k)) {
        if (!decode_report(js, k, k + 1, &p->reports[p->n_reports], brief >= 0))
            return "ping: rep (a report)";
        p->n_reports++;
    }
    if (!opt_bool(js, 0, "rb", &p->reads_brief))
        return "ping: rb";
    int gr = us_js_get(js, 0, "gr");
    if (gr >= 0 && !us_js_is(js, gr, US_JS_OBJECT))
        return "ping: gr";
    if (gr >= 0 && js->tok[gr].n > US_MAX_NODES)
        return "ping: gr (more than " US_STR(US_MAX_NODES) " nodes)";
    for (int k = us_js_first(js, gr); k >= 0; k = us_js_next(js, gr, k)) {
        us_msg_lease *l = &p->leases[p->n_leases];
        int v = k + 1, stale = us_js_get(js, v, "stale");
        int64_t age;
        if (!us_js_str(js, k, l->node, sizeof l->node) || !us_name_valid(l->node) ||
            !us_js_is(js, v, US_JS_OBJECT) ||
            !us_js_int(js, us_js_get(js, v, "age"), -1, INT64_MAX, &age) ||
            !us_js_is_bool(js, stale) || !u64_of(js, us_js_get(js, v, "v"), &l->v))
            return "ping: gr (a lease report)";
        l->age = age;
        l->stale = us_js_is(js, stale, US_JS_TRUE);
        p->n_leases++;
    }
    if (!opt_bool(js, 0, "vote", &p->vote))
        return "ping: vote";
    int iv = us_js_get(js, 0, "iv");
    int64_t ivv;
    if (iv >= 0) {
        if (!us_js_int(js, iv, 0, US_MSG_INTERVAL_MAX_MS, &ivv))
            return "ping: iv";
        p->interval_ms = (int)ivv;
    }
    int ci = us_js_get(js, 0, "ci");
    if (ci >= 0) {
        if (!u64_of(js, ci, &p->commit))
            return "ping: ci";
        p->has_commit = true;
    }
    int av = us_js_get(js, 0, "av");
    if (av >= 0) {
        if (!u64_of(js, av, &p->av))
            return "ping: av";
        p->has_av = true;
    }
    return NULL;
}

static const char *decode_pong(const us_js *js, us_msg *m)
{
    us_msg_pong *p = &m->u.pong;
    memset(p, 0, sizeof *p);
    if (!u64_of(js, us_js_get(js, 0, "seq"), &p->round) ||
        !u64_of(js, us_js_get(js, 0, "v"), &p->v))
        return "pong: seq or v";
    if (!opt_bool(js, 0, "ack", &p->ack) || !opt_bool(js, 0, "grant", &p->grant) ||
        !opt_bool(js, 0, "removed", &p->removed))
        return "pong: ack, grant or removed";
    int rv = us_js_get(js, 0, "rv");
    p->rv = p->v;
    if (rv >= 0 && (!u64_of(js, rv, &p->rv) || p->rv > p->v))
        return "pong: rv";
    return NULL;
}

size_t us_msg_pong_text(char *buf, size_t cap, const us_msg_pong *p)
{
    char rv[40] = "";
    if (p->rv != p->v)
        snprintf(rv, sizeof rv, ",\"rv\":\"%llu\"", (unsigned long long)p->rv);
    int n = snprintf(buf, cap,
                     "{\"t\":\"pong\",\"seq\":\"%llu\",\"ack\":%s,\"grant\":%s,\"removed\":%s,"
                     "\"v\":\"%llu\"%s}",
                     (unsigned long long)p->round, p->ack ? "true" : "false",
                     p->grant ? "true" : "false", p->removed ? "true" : "false",
                     (unsigned long long)p->v, rv);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static const char *decode_nothing(const us_js *js, us_msg *m)
{
    (void)js, (void)m;
    return NULL;
}

static const char *decode_join(const us_js *js, us_msg *m)
{
    us_msg_join *p = &m->u.join;
    memset(p, 0, sizeof *p);
    int api = us_js_get(js, 0, "api");
    if (!us_js_str(js, us_js_get(js, 0, "name"), p->name, sizeof p->name) ||
        !us_name_valid(p->name))
        return "join: name";
    if (!hostport(js, us_js_get(js, 0, "address"), p->address, sizeof p->address))
        return "join: address";
    if (api >= 0 && !hostport(js, api, p->api, sizeof p->api))
        return "join: api";
    if (!opt_bool(js, 0, "fwd", &p->fwd))
        return "join: fwd";
    return NULL;
}

static const char *decode_fenced(const us_js *js, us_msg *m)
{
    us_msg_fenced *p = &m->u.fenced;
    memset(p, 0, sizeof *p);
    int list = us_js_get(js, 0, "fenced");
    int agent = us_js_get(js, 0, "agent");
    if (!us_js_is(js, list, US_JS_ARRAY))
        return "fenced: fenced";
    if (js->tok[list].n > US_MAX_SERVICES)
        return "fenced: fenced (more than " US_STR(US_MAX_SERVICES) " services)";
    if (agent >= 0 && !us_js_is(js, agent, US_JS_STRING))
        return "fenced: agent";
    p->agent_dead = us_js_str_eq(js, agent, "dead");
    for (int v = us_js_elem_first(js, list); v >= 0; v = us_js_elem_next(js, list, v)) {
        int64_t ep;
        if (!us_js_str(js, us_js_get(js, v, "service"), p->fenced[p->n].service,
                       sizeof p->fenced[p->n].service) ||
            !us_name_valid(p->fenced[p->n].service) ||
            !us_js_int(js, us_js_get(js, v, "epoch"), 0, INT64_MAX, &ep))
            return "fenced: an entry";
        p->fenced[p->n].epoch = (uint64_t)ep;
        p->n++;
    }
    return NULL;
}

static const struct {
    const char *name;
    const char *(*decode)(const us_js *js, us_msg *m);
} types[US_MSG_TYPES] = {
    [US_MSG_PING] = {"ping", decode_ping},      [US_MSG_PONG] = {"pong", decode_pong},
    [US_MSG_HELLO] = {"hello", decode_nothing}, [US_MSG_LEAVE] = {"leave", decode_nothing},
    [US_MSG_JOIN] = {"join", decode_join},      [US_MSG_FENCED] = {"fenced", decode_fenced},
};

const char *us_msg_type_name(us_msg_type t)
{
    return (unsigned)t < US_MSG_TYPES ? types[t].name : "?";
}

us_msg_result us_msg_decode(const void *payload, size_t len, us_msg *out, const char **why)
{
    const char *w = "not a JSON object with a type";
    us_js js;
    us_msg_result rc = US_MSG_MALFORMED;
    if (us_js_parse(&js, payload, len, msg_tok, MSG_TOKENS_MAX) == 0 &&
        us_js_is(&js, 0, US_JS_OBJECT)) {
        int t = us_js_get(&js, 0, "t");
        if (us_js_is(&js, t, US_JS_STRING)) {
            rc = US_MSG_UNKNOWN;
            w = "unknown type";
            for (int i = 0; i < US_MSG_TYPES; i++)
                if (us_js_str_eq(&js, t, types[i].name)) {
                    out->type = (us_msg_type)i;
                    w = types[i].decode(&js, out);
                    rc = w ? US_MSG_MALFORMED : US_MSG_OK;
                    break;
                }
        }
    }
    if (why)
        *why = w;
    return rc;
}
