/* service.c — see service.h. */
#include "core/service.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <string.h>

/* ---- lists: nodes, VIPs, checks, env ---- */

static json_t *nodes_to_json(const us_service_def *d)
{
    json_t *a = json_array();
    for (int i = 0; i < d->n_nodes; i++)
        json_array_append_new(a, json_string(d->nodes[i]));
    return a;
}

static int nodes_from_json(us_service_def *d, const json_t *a)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (d->n_nodes >= US_MAX_NODES || !json_is_string(v))
            return -1;
        us_strlcpy(d->nodes[d->n_nodes++], json_string_value(v), US_NAME_MAX);
    }
    return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static int jint(const json_t *o, const char *key)
{
    return (int)json_integer_value(json_object_get(o, key));
}

static json_t *vips_to_json(const us_service_def *d)
{
    json_t *a = json_array();
    for (int i = 0; i < d->n_vips; i++) {
        const us_vip *v = &d->vips[i];
        char addr[INET6_ADDRSTRLEN] = "";
        inet_ntop(v->family, v->addr, addr, sizeof addr);
        json_array_append_new(a, json_pack("{s:s, s:i, s:s, s:s}", "addr", addr, "prefix",
                                           v->prefix, "dev", v->dev, "text", v->text));
    }
    return a;
}

static int vip_from_json(us_vip *v, const json_t *j)
{
    memset(v, 0, sizeof *v);
    const char *addr = jstr(j, "addr");
    v->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(v->family, addr, v->addr) != 1)
        return -1;
    v->prefix = jint(j, "prefix");
    if (v->prefix < 0 || v->prefix > (v->family == AF_INET ? 32 : 128))
        return -1;
    if (!us_strlcpy(v->dev, jstr(j, "dev"), sizeof v->dev) || !v->dev[0])
        return -1;
    us_strlcpy(v->text, jstr(j, "text"), sizeof v->text);
    return 0;
}

static int vips_from_json(us_service_def *d, const json_t *a)
{
    if (json_array_size(a) > US_MAX_VIPS)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (vip_from_json(&d->vips[d->n_vips++], v) != 0)
            return -1;
    }
    return 0;
}

static const char *const check_kinds[] = {"http", "tcp", "exec"};

static json_t *checks_to_json(const us_service_def *d)
{
    json_t *a = json_array();
    for (int i = 0; i < d->n_checks; i++) {
        const us_check_def *c = &d->checks[i];
        json_array_append_new(a,
                              json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "kind",
                                        check_kinds[c->kind], "text", c->text, "host", c->host,
                                        "port", c->port, "path", c->path, "cmd", us_check_cmd(c)));
    }
    return a;
}

static int check_from_json(us_check_def *c, const json_t *j)
{
    memset(c, 0, sizeof *c);
    const char *kind = jstr(j, "kind");
    int k = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(kind, check_kinds[i]) == 0)
            k = i;
    if (k < 0)
        return -1;
    c->kind = (us_check_kind)k;
    us_strlcpy(c->text, jstr(j, "text"), sizeof c->text);
    us_strlcpy(c->host, jstr(j, "host"), sizeof c->host);
    c->port = jint(j, "port");
    us_strlcpy(c->path, jstr(j, "path"), sizeof c->path);
    /* "cmd" (still written, for readers that keep it) is read from the text: us_check_cmd. */
    return 0;
}

static int checks_from_json(us_service_def *d, const json_t *a)
{
    if (json_array_size(a) > US_MAX_CHECKS)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (check_from_json(&d->checks[d->n_checks++], v) != 0)
            return -1;
    }
    return 0;
}

static json_t *env_to_json(const us_service_def *d)
{
    json_t *a = json_array();
    for (int i = 0; i < d->n_env; i++)
        json_array_append_new(a, json_string(d->env[i]));
    return a;
}

static int env_from_json(us_service_def *d, const json_t *a)
{
    if (json_array_size(a) > US_MAX_ENV)
        return -1;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v) || !us_strlcpy(d->env[d->n_env++], json_string_value(v), US_ENV_MAX))
            return -1;
    }
    return 0;
}

/* ---- the rows ---- */

static const char *const standby_names[] = {"cold", "hot", NULL};            /* us_standby_mode */
static const char *const on_failure_names[] = {"failover", "restart", NULL}; /* us_on_failure */

/* clang-format off */
#define AT(f) offsetof(us_service_def, f), sizeof(((us_service_def *)0)->f)
#define STR(key, json, f, nd, ex) {key, json, US_FIELD_STRING, AT(f), .needs = nd, .example = ex}
#define CMD(key, json, f, fl, ex) {key, json, US_FIELD_COMMAND, AT(f), .flags = fl, .example = ex}
#define INT(key, json, f, lo, hi, d, nd, ex) \
    {key, json, US_FIELD_INT, AT(f), lo, hi, d, .needs = nd, .example = ex}
#define MS(key, json, f, lo, d, nd, ex) \
    {key, json, US_FIELD_MS, AT(f), lo, 0, d, .needs = nd, .example = ex}
#define LIST(key, json, f, to, from, ex) \
    {key, json, US_FIELD_LIST, AT(f), .flags = US_FIELD_REPEAT, .example = ex, .to_json = to, \
     .from_json = from}
/* clang-format on */

/* In the order of the known-keys list of the services-file parser's messages. */
const us_service_field us_service_fields[] = {
    STR(NULL, "name", name, NULL, NULL),
    CMD("run", "run", run, US_FIELD_NONEMPTY, "exec /usr/bin/web --serve"),
    {"standby", "standby", US_FIELD_ENUM, AT(standby), .def = US_STANDBY_COLD,
     .names = standby_names, .example = "hot"},
    CMD("promote", "promote", promote, 0, "/usr/bin/web-promote"),
    CMD("demote", "demote", demote, 0, "/usr/bin/web-demote"),
    CMD("follow", "follow", follow, 0, "/usr/lib/understudy/pg-follow"),
    {"follow_timeout", "follow_timeout_ms", US_FIELD_MS, AT(follow_timeout_ms), 1, 0, 60000,
     .needs = "follow", .flags = US_FIELD_JSON_DEFAULT, .example = "5m"},
    CMD("position", "position", position, 0, "/usr/lib/understudy/pg-position"),
    {"max_lag", "max_lag", US_FIELD_SIZE, AT(max_lag), .def = -1, .needs = "position",
     .flags = US_FIELD_JSON_DEFAULT, .example = "16M"},
    INT("synchronous", "synchronous", synchronous, 0, US_MAX_NODES - 1, 0, "sync", "1"),
    CMD("sync", "sync", sync, 0, "/usr/lib/understudy/pg-sync"),
    INT("standbys", "standbys", standbys, 0, US_MAX_NODES - 1, 1, NULL, "2"),
    {"nodes", "nodes", US_FIELD_LIST, AT(nodes), .example = "n2 n1", .to_json = nodes_to_json,
     .from_json = nodes_from_json},
    MS("hook_timeout", "hook_timeout_ms", hook_timeout_ms, 1, 10000, NULL, "3s"),
    MS("stop_timeout", "stop_timeout_ms", stop_timeout_ms, 1, 5000, NULL, "2s"),
    LIST("vip", "vips", vips, vips_to_json, vips_from_json, "198.18.0.100/24 dev eth0"),
    INT("vip_announce_count", "announce_count", announce_count, 1, 100, 3, "vip", "5"),
    MS("vip_announce_interval", "announce_interval_ms", announce_interval_ms, 1, 100, "vip",
       "50ms"),
    MS("vip_announce_repeat", "announce_repeat_ms", announce_repeat_ms, 0, 3000, "vip", "0"),
    STR("proxy", "proxy_listen", proxy_listen, NULL, "0.0.0.0:8000 -> 8080"),
    INT(NULL, "proxy_port", proxy_port, 1, 65535, 0, NULL, NULL), /* set by `proxy` */
    STR("backend_host", "backend_host", backend_host, "proxy", "10.0.0.9"),
    MS("hold", "hold_ms", hold_ms, 0, 5000, "proxy", "1s"),
    MS("drain", "drain_ms", drain_ms, 0, 10000, "proxy", "2s"),
    INT("max_connections", "max_conns", max_conns, 1, 1000000, 4096, "proxy", "100"),
    /* Absent from states written before these keys: no per-source limit, no idle timeout. */
    INT("max_connections_per_source", "max_per_source", max_per_source, 1, 1000000, 256, "proxy",
        "7"),
    MS("idle_timeout", "idle_ms", idle_ms, 0, 3600000, "proxy", "0"),
    LIST("check", "checks", checks, checks_to_json, checks_from_json, "tcp://127.0.0.1:5432"),
    MS("check_interval", "check_interval_ms", check_interval_ms, 1, 1000, "check", "2s"),
    MS("check_timeout", "check_timeout_ms", check_timeout_ms, 1, 500, "check", "250ms"),
    INT("rise", "rise", rise, 1, 100, 2, "check", "1"),
    INT("fall", "fall", fall, 1, 100, 3, "check", "5"),
    INT("check_status", "check_status_min", check_status_min, 100, 599, 200, "check", "204-399"),
    INT(NULL, "check_status_max", check_status_max, 100, 599, 299, NULL, NULL),
    MS("check_grace", "check_grace_ms", check_grace_ms, 0, 10000, "check", "0"),
    {"on_failure", "on_failure", US_FIELD_ENUM, AT(on_failure), .def = US_ON_FAILURE_FAILOVER,
     .names = on_failure_names, .example = "restart"},
    MS("restart_backoff", "restart_backoff_min_ms", restart_backoff_min_ms, 1, 200, NULL, "1s..1m"),
    MS(NULL, "restart_backoff_max_ms", restart_backoff_max_ms, 1, 30000, NULL, NULL),
    INT("max_restarts", "max_restarts", max_restarts, 0, 1000, 3, NULL, "0"),
    MS("restart_window", "restart_window_ms", restart_window_ms, 1, 60000, NULL, "2m"),
    INT("failure_threshold", "failure_threshold", failure_threshold, 1, 1000, 3, NULL, "5"),
    MS("failure_window", "failure_window_ms", failure_window_ms, 1, 600000, NULL, "1h"),
    MS("failure_cooldown", "failure_cooldown_ms", failure_cooldown_ms, 0, 600000, NULL, "0"),
    MS("min_failover_interval", "min_failover_interval_ms", min_failover_interval_ms, 0, 0, NULL,
       "30s"),
    {"failback", "failback", US_FIELD_BOOL, AT(failback), .def = false, .example = "yes"},
    CMD("notify", "notify", notify, US_FIELD_NONEMPTY, "logger -t understudy"),
    MS("notify_timeout", "notify_timeout_ms", notify_timeout_ms, 1, 10000, "notify", "5s"),
    STR("user", "user", user, NULL, "nobody"),
    STR("group", "group", group, NULL, "nogroup"),
    LIST("env", "env", env, env_to_json, env_from_json, "A=1 B=\"x y\""),
    /* States written before these keys existed: the defaults. */
    {"log_max", "log_max", US_FIELD_SIZE, AT(log_max), .def = US_LOG_MAX_DEFAULT,
     .flags = US_FIELD_JSON_DEFAULT, .example = "1M"},
    {"log_keep", "log_keep", US_FIELD_INT, AT(log_keep), 0, 100, US_LOG_KEEP_DEFAULT,
     .flags = US_FIELD_JSON_DEFAULT, .example = "0"},
};

const int us_service_n_fields = (int)(sizeof us_service_fields / sizeof us_service_fields[0]);

_Static_assert(sizeof us_service_fields / sizeof us_service_fields[0] <= US_SERVICE_FIELDS_MAX,
               "raise US_SERVICE_FIELDS_MAX");
_Static_assert(sizeof(us_standby_mode) == sizeof(int) && sizeof(us_on_failure) == sizeof(int),
               "ENUM fields are int-sized");

const us_service_field *us_service_field_by_key(const char *key)
{
    for (int i = 0; i < us_service_n_fields; i++)
        if (us_service_fields[i].key && strcmp(us_service_fields[i].key, key) == 0)
            return &us_service_fields[i];
    return NULL;
}

/* ---- defaults and the replicated form ---- */

#define FIELD(d, f, type) ((type *)(void *)((char *)(d) + (f)->offset))
#define CFIELD(d, f, type) ((const type *)(const void *)((const char *)(d) + (f)->offset))

static void set_number(us_service_def *d, const us_service_field *f, int64_t v)
{
    switch (f->type) {
    case US_FIELD_INT:
    case US_FIELD_MS:
    case US_FIELD_ENUM:
        *FIELD(d, f, int) = (int)v;
        break;
    case US_FIELD_BOOL:
        *FIELD(d, f, bool) = v != 0;
        break;
    case US_FIELD_SIZE:
        *FIELD(d, f, int64_t) = v;
        break;
    default:
        break;
    }
}

void us_service_defaults(us_service_def *d)
{
    memset(d, 0, sizeof *d);
    for (int i = 0; i < us_service_n_fields; i++)
        set_number(d, &us_service_fields[i], us_service_fields[i].def);
}

/* The replicated form leaves out every member at its default (strings and lists: empty) and says
 * so with "v": 2; an object without it (written by an older agent) has every member, except those
 * added since, which read as 0 or, where marked US_FIELD_JSON_DEFAULT, as the default. */
#define COMPACT_V 2

/* Is field f of d at its default, so that the compact form leaves it out? */
static bool at_default(const us_service_def *d, const us_service_field *f, const json_t *v)
{
    switch (f->type) {
    case US_FIELD_STRING:
    case US_FIELD_COMMAND:
        return CFIELD(d, f, char)[0] == '\0';
    case US_FIELD_INT:
    case US_FIELD_MS:
    case US_FIELD_ENUM:
        return *CFIELD(d, f, int) == f->def;
    case US_FIELD_SIZE:
        return *CFIELD(d, f, int64_t) == f->def;
    case US_FIELD_BOOL:
        return *CFIELD(d, f, bool) == (f->def != 0);
    case US_FIELD_LIST:
        return json_array_size(v) == 0;
    }
    return false;
}

json_t *us_service_def_to_json(const us_service_def *d)
{
    json_t *j = json_object();
    json_object_set_new(j, "v", json_integer(COMPACT_V));
    for (int i = 0; i < us_service_n_fields; i++) {
        const us_service_field *f = &us_service_fields[i];
        json_t *v = NULL;
        switch (f->type) {
        case US_FIELD_STRING:
        case US_FIELD_COMMAND:
            v = json_string(CFIELD(d, f, char));
            break;
        case US_FIELD_INT:
        case US_FIELD_MS:
            v = json_integer(*CFIELD(d, f, int));
            break;
        case US_FIELD_BOOL:
            v = json_boolean(*CFIELD(d, f, bool));
            break;
        case US_FIELD_ENUM: {
            int k = *CFIELD(d, f, int), n = 0;
            while (f->names[n])
                n++;
            v = json_string(f->names[k >= 0 && k < n ? k : f->def]);
            break;
        }
        case US_FIELD_SIZE:
            v = json_integer((json_int_t)*CFIELD(d, f, int64_t));
            break;
        case US_FIELD_LIST:
            v = f->to_json(d);
            break;
        }
        /* A definition's JSON is its name and its non-default keys (a valid name is never
         * empty), so that an apply of 200 services is a fraction of the bytes it was to
         * replicate and to parse on every agent. */
        if (at_default(d, f, v))
            json_decref(v);
        else
            json_object_set_new(j, f->json, v);
    }
    return j;
}

int us_service_def_from_json(us_service_def *d, const json_t *j)
{
    memset(d, 0, sizeof *d);
    if (!json_is_object(j) || !us_name_valid(jstr(j, "name")))
        return -1;
    bool compact = json_integer_value(json_object_get(j, "v")) >= COMPACT_V;
    for (int i = 0; i < us_service_n_fields; i++) {
        const us_service_field *f = &us_service_fields[i];
        json_t *v = json_object_get(j, f->json);
        switch (f->type) {
        case US_FIELD_STRING:
        case US_FIELD_COMMAND:
            if (!us_strlcpy(FIELD(d, f, char), json_string_value(v) ? json_string_value(v) : "",
                            f->size))
                return -1;
            break;
        case US_FIELD_INT:
        case US_FIELD_MS:
        case US_FIELD_SIZE:
            if (!json_is_integer(v) && (compact || (f->flags & US_FIELD_JSON_DEFAULT)))
                set_number(d, f, f->def);
            else
                set_number(d, f, json_integer_value(v));
            break;
        case US_FIELD_BOOL:
            set_number(d, f, !json_is_boolean(v) && compact ? f->def : json_is_true(v));
            break;
        case US_FIELD_ENUM: {
            /* An unknown name reads as the default, as older agents did. */
            const char *name = json_string_value(v);
            set_number(d, f, f->def);
            for (int k = 0; name && f->names[k]; k++)
                if (strcmp(name, f->names[k]) == 0)
                    set_number(d, f, k);
            break;
        }
        case US_FIELD_LIST:
            if (f->from_json(d, v) != 0)
                return -1;
            break;
        }
    }
    return 0;
}

/* ---- Digest of a definition's JSON (service.h) ---- */

static void digest_bytes(crypto_generichash_state *st, const void *p, size_t n)
{
    crypto_generichash_update(st, p, n);
}

static bool digest_walk(crypto_generichash_state *st, const json_t *v, int depth)
{
    if (depth > 16)
        return false;
    unsigned char tag = (unsigned char)json_typeof(v);
    digest_bytes(st, &tag, 1);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        uint64_t n = json_object_size(v);
        digest_bytes(st, &n, sizeof n);
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            uint64_t len = strlen(k);
            digest_bytes(st, &len, sizeof len);
            digest_bytes(st, k, len);
            if (!digest_walk(st, x, depth + 1))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        uint64_t n = json_array_size(v);
        digest_bytes(st, &n, sizeof n);
        for (size_t i = 0; i < n; i++)
            if (!digest_walk(st, json_array_get(v, i), depth + 1))
                return false;
        return true;
    }
    case JSON_STRING: {
        uint64_t len = json_string_length(v);
        digest_bytes(st, &len, sizeof len);
        digest_bytes(st, json_string_value(v), len);
        return true;
    }
    case JSON_INTEGER: {
        int64_t i = json_integer_value(v);
        digest_bytes(st, &i, sizeof i);
        return true;
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        digest_bytes(st, &d, sizeof d);
        return true;
    }
    default: /* true, false, null: the tag says it */
        return true;
    }
}

_Static_assert(sizeof(((us_assignment *)0)->def_digest) == US_DEF_DIGEST_LEN,
               "us_assignment.def_digest holds a digest");

bool us_service_json_digest(const json_t *j, unsigned char out[US_DEF_DIGEST_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, US_DEF_DIGEST_LEN);
    bool ok = j && digest_walk(&st, j, 0);
    crypto_generichash_final(&st, out, US_DEF_DIGEST_LEN);
    if (!ok)
        memset(out, 0, US_DEF_DIGEST_LEN);
    return ok;
}
