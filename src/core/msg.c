/* msg.c — see msg.h. */
#include "core/msg.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hostport.h"

static bool int_in(const json_t *v, json_int_t lo, json_int_t hi, json_int_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* A u64 as a decimal string without sign or leading garbage. */
static bool u64_of(const json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 20 || s[0] < '0' || s[0] > '9')
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
static bool opt_bool(const json_t *o, const char *key, bool *out)
{
    const json_t *v = json_object_get(o, key);
    if (v && !json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

static bool str_into(const json_t *v, char *dst, size_t size)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) && us_strlcpy(dst, s, size);
}

static bool hostport(const json_t *v, char *dst, size_t size)
{
    return str_into(v, dst, size) && us_parse_hostport(dst, NULL, 0, NULL) == 0;
}

/* A report's fields, in both forms (msg.h): "full" names every field; "brief" (short keys, fields
 * at their default left out) is ~4x cheaper to parse. One table drives encoding and decoding. */
typedef enum { RF_INT, RF_I64, RF_U64, RF_STR, RF_BOOL } rep_type;

static const struct rep_field {
    const char *full, *brief;
    rep_type type;
    size_t off, size; /* RF_STR: the buffer's size */
    json_int_t lo, hi, dflt;
} rep_fields[] = {
    {"state", "s", RF_INT, offsetof(us_report, obs.state), 0, 0, US_INST_FENCED, 0},
    {"epoch", "e", RF_U64, offsetof(us_report, obs.epoch), 0, 0, 0, 0},
    {"exit", "x", RF_INT, offsetof(us_report, obs.exit_status), 0, INT_MIN, INT_MAX, 0},
    {"pid", "p", RF_INT, offsetof(us_report, pid), 0, 0, INT_MAX, 0},
    {"px_epoch", "pe", RF_U64, offsetof(us_report, px_epoch), 0, 0, 0, 0},
    {"px_open", "po", RF_INT, offsetof(us_report, px_open), 0, 0, INT_MAX, 0},
    {"health", "h", RF_INT, offsetof(us_report, obs.health), 0, 0, US_HEALTH_UNHEALTHY, 0},
    {"cause", "c", RF_STR, offsetof(us_report, obs.cause), sizeof(((us_report *)0)->obs.cause), 0,
     0, 0},
    {"check_ms", "cm", RF_I64, offsetof(us_report, check_ms), 0, -1, INT64_MAX, -1},
    {"probes", "pr", RF_I64, offsetof(us_report, probes), 0, 0, INT64_MAX, 0},
    {"probes_failed", "pf", RF_I64, offsetof(us_report, probes_failed), 0, 0, INT64_MAX, 0},
    {"restarts", "r", RF_INT, offsetof(us_report, restarts), 0, 0, INT_MAX, 0},
    {"restart_cause", "rc", RF_STR, offsetof(us_report, restart_cause),
     sizeof(((us_report *)0)->restart_cause), 0, 0, 0},
    {"refused", "rf", RF_BOOL, offsetof(us_report, obs.refused), 0, 0, 0, 0},
};

_Static_assert(sizeof(us_inst_state) == sizeof(int) && sizeof(us_health) == sizeof(int),
               "enums of a report are stored as int");
_Static_assert(sizeof(uint64_t) == sizeof(int64_t), "probes are stored as int64");

static json_t *report_json(const us_report *r, bool brief)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof rep_fields / sizeof rep_fields[0]; i++) {
        const struct rep_field *f = &rep_fields[i];
        const char *at = (const char *)r + f->off;
        json_t *v = NULL;
        if (f->type == RF_INT || f->type == RF_I64) {
            int x;
            int64_t y;
            if (f->type == RF_INT)
                memcpy(&x, at, sizeof x), y = x;
            else
                memcpy(&y, at, sizeof y);
            v = brief && y == f->dflt ? NULL : json_integer((json_int_t)y);
        } else if (f->type == RF_U64) {
            uint64_t x;
            memcpy(&x, at, sizeof x);
            char text[24];
            snprintf(text, sizeof text, "%llu", (unsigned long long)x);
            v = brief && x == 0 ? NULL : json_string(text);
        } else if (f->type == RF_STR) {
            v = brief && !*at ? NULL : json_string(at);
        } else {
            bool b;
            memcpy(&b, at, sizeof b);
            v = brief && !b ? NULL : json_boolean(b);
        }
        if (v)
            json_object_set_new_nocheck(o, brief ? f->brief : f->full, v);
    }
    return o;
}

json_t *us_msg_report_json(const us_report *r)
{
    return report_json(r, false);
}

json_t *us_msg_report_json_brief(const us_report *r)
{
    return report_json(r, true);
}

/* Every field of the full form must be there; the brief form leaves defaults out. */
static bool decode_report(const char *svc, const json_t *v, us_report *r, bool brief)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(v) || !us_name_valid(svc))
        return false;
    for (size_t i = 0; i < sizeof rep_fields / sizeof rep_fields[0]; i++) {
        const struct rep_field *f = &rep_fields[i];
        char *at = (char *)r + f->off;
        const json_t *x = json_object_get(v, brief ? f->brief : f->full);
        if (!x && !brief)
            return false;
        if (f->type == RF_INT || f->type == RF_I64) {
            json_int_t n = f->dflt;
            if (x && !int_in(x, f->lo, f->hi, &n))
                return false;
            if (f->type == RF_INT) {
                int k = (int)n;
                memcpy(at, &k, sizeof k);
            } else {
                int64_t k = n;
                memcpy(at, &k, sizeof k);
            }
        } else if (f->type == RF_U64) {
            uint64_t n = 0;
            if (x && !u64_of(x, &n))
                return false;
            memcpy(at, &n, sizeof n);
        } else if (f->type == RF_STR) {
            if (x && !str_into(x, at, f->size))
                return false;
        } else {
            if (x && !json_is_boolean(x))
                return false;
            bool b = json_is_true(x);
            memcpy(at, &b, sizeof b);
        }
    }
    us_strlcpy(r->service, svc, sizeof r->service);
    return true;
}

static const char *decode_ping(const json_t *j, us_msg *m)
{
    us_msg_ping *p = &m->u.ping;
    memset(p, 0, offsetof(us_msg_ping, reports)); /* each report is cleared as it is decoded */
    const json_t *api = json_object_get(j, "api");
    if (!u64_of(json_object_get(j, "seq"), &p->round) || p->round == 0)
        return "ping: seq";
    if (!u64_of(json_object_get(j, "term"), &p->term))
        return "ping: term";
    if (!json_is_boolean(json_object_get(j, "lease")))
        return "ping: lease";
    p->lease = json_is_true(json_object_get(j, "lease"));
    if (api) {
        if (!hostport(api, p->api, sizeof p->api))
            return "ping: api";
        p->has_api = true;
    }
    const json_t *adopt = json_object_get(j, "adopt");
    if (adopt && !u64_of(adopt, &p->adopt))
        return "ping: adopt";
    const json_t *full = json_object_get(j, "rep"), *brief = json_object_get(j, "rp");
    const json_t *rep = full ? full : brief;
    const char *key;
    json_t *v;
    if (full && brief)
        return "ping: rep and rp";
    if (rep && !json_is_object(rep))
        return "ping: rep";
    p->has_rep = rep != NULL;
    if (json_object_size(rep) > US_MSG_REPORTS_MAX)
        return "ping: rep (more than " US_STR(US_MSG_REPORTS_MAX) " reports)";
    json_object_foreach((json_t *)rep, key, v)
    {
        if (!decode_report(key, v, &p->reports[p->n_reports], brief != NULL))
            return "ping: rep (a report)";
        p->n_reports++;
    }
    if (!opt_bool(j, "rb", &p->reads_brief))
        return "ping: rb";
    const json_t *gr = json_object_get(j, "gr");
    if (gr && !json_is_object(gr))
        return "ping: gr";
    if (json_object_size(gr) > US_MAX_NODES)
        return "ping: gr (more than " US_STR(US_MAX_NODES) " nodes)";
    json_object_foreach((json_t *)gr, key, v)
    {
        us_msg_lease *l = &p->leases[p->n_leases];
        json_int_t age;
        if (!us_name_valid(key) || !json_is_object(v) ||
            !int_in(json_object_get(v, "age"), -1, INT64_MAX, &age) ||
            !json_is_boolean(json_object_get(v, "stale")) ||
            !u64_of(json_object_get(v, "v"), &l->v))
            return "ping: gr (a lease report)";
        us_strlcpy(l->node, key, sizeof l->node);
        l->age = age;
        l->stale = json_is_true(json_object_get(v, "stale"));
        p->n_leases++;
    }
    if (!opt_bool(j, "vote", &p->vote))
        return "ping: vote";
    const json_t *iv = json_object_get(j, "iv");
    json_int_t ivv;
    if (iv) {
        if (!int_in(iv, 0, US_MSG_INTERVAL_MAX_MS, &ivv))
            return "ping: iv";
        p->interval_ms = (int)ivv;
    }
    const json_t *ci = json_object_get(j, "ci");
    if (ci) {
        if (!u64_of(ci, &p->commit))
            return "ping: ci";
        p->has_commit = true;
    }
    return NULL;
}

static const char *decode_pong(const json_t *j, us_msg *m)
{
    us_msg_pong *p = &m->u.pong;
    memset(p, 0, sizeof *p);
    if (!u64_of(json_object_get(j, "seq"), &p->round) || !u64_of(json_object_get(j, "v"), &p->v))
        return "pong: seq or v";
    if (!opt_bool(j, "ack", &p->ack) || !opt_bool(j, "grant", &p->grant) ||
        !opt_bool(j, "removed", &p->removed))
        return "pong: ack, grant or removed";
    const json_t *rv = json_object_get(j, "rv");
    p->rv = p->v;
    if (rv && (!u64_of(rv, &p->rv) || p->rv > p->v))
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

static const char *decode_nothing(const json_t *j, us_msg *m)
{
    (void)j, (void)m;
    return NULL;
}

static const char *decode_join(const json_t *j, us_msg *m)
{
    us_msg_join *p = &m->u.join;
    memset(p, 0, sizeof *p);
    const json_t *api = json_object_get(j, "api");
    if (!str_into(json_object_get(j, "name"), p->name, sizeof p->name) || !us_name_valid(p->name))
        return "join: name";
    if (!hostport(json_object_get(j, "address"), p->address, sizeof p->address))
        return "join: address";
    if (api && !hostport(api, p->api, sizeof p->api))
        return "join: api";
    if (!opt_bool(j, "fwd", &p->fwd))
        return "join: fwd";
    return NULL;
}

static const char *decode_fenced(const json_t *j, us_msg *m)
{
    us_msg_fenced *p = &m->u.fenced;
    memset(p, 0, sizeof *p);
    const json_t *list = json_object_get(j, "fenced");
    const json_t *agent = json_object_get(j, "agent");
    if (!json_is_array(list))
        return "fenced: fenced";
    if (json_array_size(list) > US_MAX_SERVICES)
        return "fenced: fenced (more than " US_STR(US_MAX_SERVICES) " services)";
    if (agent && !json_is_string(agent))
        return "fenced: agent";
    p->agent_dead = agent && strcmp(json_string_value(agent), "dead") == 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        json_int_t ep;
        if (!str_into(json_object_get(v, "service"), p->fenced[p->n].service,
                      sizeof p->fenced[p->n].service) ||
            !us_name_valid(p->fenced[p->n].service) ||
            !int_in(json_object_get(v, "epoch"), 0, INT64_MAX, &ep))
            return "fenced: an entry";
        p->fenced[p->n].epoch = (uint64_t)ep;
        p->n++;
    }
    return NULL;
}

static const struct {
    const char *name;
    const char *(*decode)(const json_t *j, us_msg *m);
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
    json_error_t jerr;
    json_t *j = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *t = json_string_value(json_object_get(j, "t"));
    us_msg_result rc = US_MSG_MALFORMED;
    if (json_is_object(j) && t) {
        rc = US_MSG_UNKNOWN;
        w = "unknown type";
        for (int i = 0; i < US_MSG_TYPES; i++)
            if (strcmp(types[i].name, t) == 0) {
                out->type = (us_msg_type)i;
                w = types[i].decode(j, out);
                rc = w ? US_MSG_MALFORMED : US_MSG_OK;
                break;
            }
    }
    json_decref(j);
    if (why)
        *why = w;
    return rc;
}
