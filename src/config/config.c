/* config.c — see config.h. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/ini.h"
#include "core/service.h"
#include "lib/hostport.h"
#include "lib/key.h"
#include "lib/suggest.h"

#define EXCERPT 80
#define FILE_MAX (1024 * 1024) /* a config bigger than this is a mistake, not a config */
#define API_DEFAULT_PORT 7201
#define AUTOPILOT_GRACE_DEFAULT_MS 10000

#define NAME_EXPECTED "a name of [a-z0-9-], 1..63 characters"
#define ADDR_EXPECTED "IPv4:port (dotted quad without leading zeros, port 1..65535)"
#define DURATION_POSITIVE "a duration greater than 0 such as 500ms, 10s, 1.5s or 1m"
#define DURATION_NONNEG "a duration >= 0 such as 0, 500ms, 10s, 1.5s or 1m"
/* Durations are kept in int milliseconds; INT_MAX ms is about 24.8 days. */
#define DURATION_TOO_LONG "a duration of at most 596h (2147483647ms)"

#define BOOL_EXPECTED "'yes' or 'no' (or true/false, on/off, 1/0)"

/* ---- errors ---- */

static int error_count(const us_errors *e)
{
    return e->n + e->dropped;
}

/* ---- scalar values ---- */

long us_parse_duration_ms(const char *s)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    const char *p = s;
    long long whole = 0;
    while (isdigit((unsigned char)*p)) {
        whole = whole * 10 + (*p++ - '0');
        if (whole > 1000000000000LL) /* ~31 years in ms: surely a typo */
            return -1;
    }
    long long frac = 0, frac_div = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p)) {
            if (frac_div >= 1000000000LL)
                return -1;
            frac = frac * 10 + (*p++ - '0');
            frac_div *= 10;
        }
    }
    long long mult;
    if (*p == '\0' || strcmp(p, "ms") == 0)
        mult = 1;
    else if (strcmp(p, "s") == 0)
        mult = 1000;
    else if (strcmp(p, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mult = 3600 * 1000;
    else
        return -1;
    /* Whole milliseconds only: "1.5ms" is rejected rather than silently rounded. */
    if ((frac * mult) % frac_div != 0)
        return -1;
    long long ms = whole * mult + frac * mult / frac_div;
    return ms > LONG_MAX ? -1 : (long)ms;
}

bool us_parse_bool(const char *value, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(value, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(value, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* A duration that fits in int milliseconds: NULL, or what was expected instead. */
static const char *duration_int(const char *value, bool allow_zero, int *out)
{
    long ms = us_parse_duration_ms(value);
    if (ms > INT_MAX)
        return DURATION_TOO_LONG;
    if (ms < 0 || (ms == 0 && !allow_zero))
        return allow_zero ? DURATION_NONNEG : DURATION_POSITIVE;
    *out = (int)ms;
    return NULL;
}

/* A cluster address must be one peers can reach: not the wildcard. */
static bool cluster_addr_valid(const char *s)
{
    char host[16];
    return us_parse_hostport(s, host, sizeof host, NULL) == 0 && strcmp(host, "0.0.0.0") != 0;
}

/* Next whitespace-separated token of *cursor, NUL-terminated in place; NULL at the end. */
static char *next_token(char **cursor)
{
    char *s = *cursor;
    while (*s && isspace((unsigned char)*s))
        s++;
    if (!*s)
        return NULL;
    char *t = s;
    while (*s && !isspace((unsigned char)*s))
        s++;
    if (*s)
        *s++ = '\0';
    *cursor = s;
    return t;
}

/* ---- files ---- */

static char *read_text(const char *path, size_t *len, us_errors *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        us_errors_add(err, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        us_errors_add(err, "%s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, FILE_MAX + 1, f);
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr) {
        us_errors_add(err, "%s: cannot read: %s", path, strerror(rerr));
        free(buf);
        return NULL;
    }
    if (n > FILE_MAX) {
        us_errors_add(err, "%s: too large (limit %d bytes)", path, FILE_MAX);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* mkdir -p; the last directory gets mode 0700 (Raft data is nobody else's business), the parents
 * the usual 0755. On failure errno is set and `failed` names the directory that could not be made.
 */
static int make_dirs(const char *path, char *failed, size_t failed_size)
{
    char tmp[PATH_MAX];
    if (!us_strlcpy(tmp, path, sizeof tmp)) {
        errno = ENAMETOOLONG;
        us_strlcpy(failed, path, failed_size);
        return -1;
    }
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, c == '\0' ? 0700 : 0755) != 0 && errno != EEXIST) {
            us_strlcpy(failed, tmp, failed_size);
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

/* ---- node config ---- */

enum {
    NK_NAME,
    NK_ADDRESS,
    NK_API,
    NK_DATA_DIR,
    NK_CLUSTER_NAME,
    NK_MEMBERS,
    NK_JOIN,
    NK_PROFILE,
    NK_AUTOPILOT_GRACE,
    NK_EVENTS_MAX,
    NK_KEY_FILE,
    NK_API_TOKEN_FILE,
    NK_METRICS_AUTH,
    NK_API_TLS_CERT,
    NK_API_TLS_KEY,
    NK_API_INSECURE,
    NK_VOTER_NICE,
    NK_SERVICE_HOST,
    NK_COUNT
};

typedef struct node_ctx node_ctx;

/* Parsers of [node] / [cluster] values: true with the value stored at dst, or false with what
 * was expected in *expected (NULL when the parser reported its problems itself). */
typedef bool node_parser(node_ctx *c, const char *value, void *dst, size_t size,
                         const char **expected);

/* One row per key: where it goes, how it is read and what a message says was expected. */
typedef struct node_key {
    const char *section;
    const char *key;
    const char *expected;
    node_parser *parse;
    size_t offset, size; /* the target in us_node_config */
} node_key;

static const node_key node_keys[NK_COUNT]; /* below, after the parsers */

struct node_ctx {
    const char *file;
    us_errors *err;
    us_node_config *cfg;
    int line[NK_COUNT]; /* where each key was set; 0 = not set */
    bool ok[NK_COUNT];  /* set and valid */
    bool skip;          /* inside an unknown section */
    us_errors *warn;    /* check only (us_config_check_node): create nothing, warn here */
};

static void node_bad(node_ctx *c, int k, const char *expected, const char *got)
{
    char ex[EXCERPT];
    us_errors_add(c->err, "%s:%d: key '%s.%s': expected %s, got '%s'", c->file, c->line[k],
                  node_keys[k].section, node_keys[k].key, expected,
                  us_ini_excerpt(got, ex, sizeof ex));
}

static bool parse_members(node_ctx *c, const char *value)
{
    char copy[US_ADDR_MAX * 2 * US_MAX_NODES * 2];
    if (!us_strlcpy(copy, value, sizeof copy)) {
        node_bad(c, NK_MEMBERS, "at most " US_STR(US_MAX_NODES) " members (US_MAX_NODES)", value);
        return false;
    }
    us_node_config *cfg = c->cfg;
    bool ok = true;
    int n = 0;
    char *cursor = copy;
    for (char *t; (t = next_token(&cursor)) != NULL;) {
        char *eq = strchr(t, '=');
        if (!eq) {
            node_bad(c, NK_MEMBERS, "NAME=IPv4:port", t);
            ok = false;
            continue;
        }
        *eq = '\0';
        const char *name = t, *addr = eq + 1;
        bool good = true;
        if (!us_name_valid(name)) {
            node_bad(c, NK_MEMBERS, "member names of [a-z0-9-], 1..63 characters", name);
            good = false;
        }
        if (!cluster_addr_valid(addr)) {
            node_bad(c, NK_MEMBERS, "member addresses as " ADDR_EXPECTED ", not 0.0.0.0", addr);
            good = false;
        }
        for (int i = 0; good && i < n; i++) {
            if (strcmp(cfg->members[i].name, name) == 0) {
                node_bad(c, NK_MEMBERS, "unique member names", name);
                good = false;
            } else if (strcmp(cfg->members[i].address, addr) == 0) {
                node_bad(c, NK_MEMBERS, "unique member addresses", addr);
                good = false;
            }
        }
        if (!good) {
            ok = false;
            continue;
        }
        if (n == US_MAX_NODES) {
            node_bad(c, NK_MEMBERS, "at most " US_STR(US_MAX_NODES) " members (US_MAX_NODES)",
                     value);
            return false;
        }
        us_strlcpy(cfg->members[n].name, name, US_NAME_MAX);
        us_strlcpy(cfg->members[n].address, addr, US_ADDR_MAX);
        n++;
    }
    if (ok && n == 0) {
        node_bad(c, NK_MEMBERS, node_keys[NK_MEMBERS].expected, value);
        return false;
    }
    cfg->n_members = n;
    return ok;
}

static bool parse_join(node_ctx *c, const char *value)
{
    char copy[US_ADDR_MAX * US_MAX_NODES * 2];
    if (!us_strlcpy(copy, value, sizeof copy)) {
        node_bad(c, NK_JOIN, "at most " US_STR(US_MAX_NODES) " addresses (US_MAX_NODES)", value);
        return false;
    }
    us_node_config *cfg = c->cfg;
    bool ok = true;
    int n = 0;
    char *cursor = copy;
    for (char *t; (t = next_token(&cursor)) != NULL;) {
        bool good = true;
        if (!cluster_addr_valid(t)) {
            node_bad(c, NK_JOIN, "addresses as " ADDR_EXPECTED ", not 0.0.0.0", t);
            good = false;
        }
        for (int i = 0; good && i < n; i++) {
            if (strcmp(cfg->join[i], t) == 0) {
                node_bad(c, NK_JOIN, "unique addresses", t);
                good = false;
            }
        }
        if (!good) {
            ok = false;
            continue;
        }
        if (n == US_MAX_NODES) {
            node_bad(c, NK_JOIN, "at most " US_STR(US_MAX_NODES) " addresses (US_MAX_NODES)",
                     value);
            return false;
        }
        us_strlcpy(cfg->join[n++], t, US_ADDR_MAX);
    }
    if (ok && n == 0) {
        node_bad(c, NK_JOIN, node_keys[NK_JOIN].expected, value);
        return false;
    }
    cfg->n_join = n;
    return ok;
}

static bool nk_name(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)c, (void)expected;
    return us_name_valid(value) && us_strlcpy(dst, value, size);
}

static bool nk_cluster_addr(node_ctx *c, const char *value, void *dst, size_t size,
                            const char **expected)
{
    (void)c, (void)expected;
    return cluster_addr_valid(value) && us_strlcpy(dst, value, size);
}

static bool nk_addr(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)c, (void)expected;
    return us_parse_hostport(value, NULL, 0, NULL) == 0 && us_strlcpy(dst, value, size);
}

static bool nk_path(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)c, (void)expected;
    return *value && us_strlcpy(dst, value, size);
}

static bool nk_dir(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    if (strlen(value) >= size)
        *expected = "a path shorter than PATH_MAX (4096)";
    return nk_path(c, value, dst, size, expected);
}

static bool nk_host(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)c, (void)expected;
    return us_host_valid(value) && us_strlcpy(dst, value, size);
}

static bool nk_members(node_ctx *c, const char *value, void *dst, size_t size,
                       const char **expected)
{
    (void)dst, (void)size;
    *expected = NULL;
    return parse_members(c, value);
}

static bool nk_join(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)dst, (void)size;
    *expected = NULL;
    return parse_join(c, value);
}

static bool nk_profile(node_ctx *c, const char *value, void *dst, size_t size,
                       const char **expected)
{
    (void)c, (void)size, (void)expected;
    return us_timing_profile(value, dst) == 0;
}

static bool nk_bool(node_ctx *c, const char *value, void *dst, size_t size, const char **expected)
{
    (void)c, (void)size, (void)expected;
    return us_parse_bool(value, dst);
}

static bool nk_duration(node_ctx *c, const char *value, void *dst, size_t size,
                        const char **expected)
{
    (void)c, (void)size;
    const char *why = duration_int(value, false, dst);
    if (why)
        *expected = why;
    return why == NULL;
}

static bool nk_events_max(node_ctx *c, const char *value, void *dst, size_t size,
                          const char **expected)
{
    (void)c, (void)size, (void)expected;
    long v;
    if (!us_parse_uint(value, strlen(value), US_EVENTS_LIMIT, &v) || v < US_EVENTS_MIN)
        return false;
    *(int *)dst = (int)v;
    return true;
}

static bool nk_voter_nice(node_ctx *c, const char *value, void *dst, size_t size,
                          const char **expected)
{
    (void)c, (void)size, (void)expected;
    long v;
    bool neg = value[0] == '-';
    if (!us_parse_uint(value + neg, strlen(value + neg), 20, &v))
        return false;
    *(int *)dst = neg ? -(int)v : (int)v;
    return *(int *)dst <= 0;
}

#define NCFG(f) offsetof(us_node_config, f), sizeof(((us_node_config *)0)->f)

static const node_key node_keys[NK_COUNT] = {
    [NK_NAME] = {"node", "name", NAME_EXPECTED " (unique in the cluster)", nk_name, NCFG(name)},
    [NK_ADDRESS] = {"node", "address", ADDR_EXPECTED ", not 0.0.0.0", nk_cluster_addr,
                    NCFG(address)},
    [NK_API] = {"node", "api", ADDR_EXPECTED, nk_addr, NCFG(api)},
    [NK_DATA_DIR] = {"node", "data_dir", "a directory path for the Raft log and snapshots", nk_dir,
                     NCFG(data_dir)},
    [NK_CLUSTER_NAME] = {"cluster", "name", NAME_EXPECTED, nk_name, NCFG(cluster_name)},
    [NK_MEMBERS] = {"cluster", "members", "initial voters as NAME=IPv4:port separated by spaces",
                    nk_members, NCFG(members)},
    [NK_JOIN] = {"cluster", "join", "IPv4:port of existing members separated by spaces", nk_join,
                 NCFG(join)},
    [NK_PROFILE] = {"cluster", "profile", "'default' or 'fast'", nk_profile, NCFG(timing)},
    [NK_AUTOPILOT_GRACE] = {"cluster", "autopilot_grace", DURATION_POSITIVE, nk_duration,
                            NCFG(autopilot_grace_ms)},
    [NK_EVENTS_MAX] = {"cluster", "events_max",
                       "a whole number of events from " US_STR(US_EVENTS_MIN) " to " US_STR(
                           US_EVENTS_LIMIT) " (default " US_STR(US_EVENTS_DEFAULT) ")",
                       nk_events_max, NCFG(events_max)},
    [NK_KEY_FILE] = {"cluster", "key_file",
                     "the path of the cluster key file (create one with `understudy keygen FILE`)",
                     nk_path, NCFG(key_file)},
    [NK_API_TOKEN_FILE] = {"node", "api_token_file",
                           "the path of the API token file (create one with `understudy keygen "
                           "--token FILE`)",
                           nk_path, NCFG(api_token_file)},
    [NK_METRICS_AUTH] = {"node", "metrics_auth", BOOL_EXPECTED, nk_bool, NCFG(metrics_auth)},
    [NK_API_TLS_CERT] = {"node", "api_tls_cert", "the path of a PEM certificate (chain)", nk_path,
                         NCFG(api_tls_cert)},
    [NK_API_TLS_KEY] = {"node", "api_tls_key", "the path of a PEM private key", nk_path,
                        NCFG(api_tls_key)},
    [NK_API_INSECURE] = {"node", "api_insecure", BOOL_EXPECTED, nk_bool, NCFG(api_insecure)},
    [NK_VOTER_NICE] = {"node", "voter_nice",
                       "a nice value from -20 to 0 (default " US_STR(US_VOTER_NICE_DEFAULT) ")",
                       nk_voter_nice, NCFG(voter_nice)},
    [NK_SERVICE_HOST] = {"node", "service_host",
                         "a host name or IP address (letters, digits, '.', '-', ':', '_'; at most "
                         "63) where services on other nodes reach this node's services",
                         nk_host, NCFG(service_host)},
};

static bool node_value(node_ctx *c, int k, const char *value)
{
    const char *expected = node_keys[k].expected;
    void *dst = (char *)c->cfg + node_keys[k].offset;
    if (node_keys[k].parse(c, value, dst, node_keys[k].size, &expected))
        return true;
    if (expected)
        node_bad(c, k, expected, value);
    return false;
}

static int node_cb(void *user, const char *section, const char *key, const char *value, int line)
{
    node_ctx *c = user;
    char ex[EXCERPT];
    if (!key) {
        c->skip = strcmp(section, "node") != 0 && strcmp(section, "cluster") != 0;
        if (c->skip)
            us_errors_add(c->err, "%s:%d: unknown section '[%s]' (expected [node] or [cluster])",
                          c->file, line, us_ini_excerpt(section, ex, sizeof ex));
        return 0;
    }
    if (c->skip)
        return 0;
    if (*section == '\0') {
        us_errors_add(c->err,
                      "%s:%d: key '%s' is outside any section (expected it under [node] "
                      "or [cluster])",
                      c->file, line, us_ini_excerpt(key, ex, sizeof ex));
        return 0;
    }
    int k = -1;
    for (int i = 0; i < NK_COUNT; i++)
        if (strcmp(node_keys[i].section, section) == 0 && strcmp(node_keys[i].key, key) == 0)
            k = i;
    if (k < 0) {
        char known[256];
        size_t n = 0;
        known[0] = '\0';
        for (int i = 0; i < NK_COUNT; i++)
            if (strcmp(node_keys[i].section, section) == 0 && n < sizeof known)
                n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", n ? ", " : "",
                                      node_keys[i].key);
        us_errors_add(c->err, "%s:%d: unknown key '%s.%s' (known keys: %s)", c->file, line, section,
                      us_ini_excerpt(key, ex, sizeof ex), known);
        return 0;
    }
    if (c->line[k]) {
        us_errors_add(c->err, "%s:%d: duplicate key '%s.%s' (first set on line %d)", c->file, line,
                      section, key, c->line[k]);
        return 0;
    }
    c->line[k] = line;
    c->ok[k] = node_value(c, k, value);
    return 0;
}

/* Check only: what the agent would find, as warnings (the file may be meant for another host). */
static void node_probe_data_dir(node_ctx *c)
{
    const us_node_config *cfg = c->cfg;
    char ex[EXCERPT], dir[PATH_MAX];
    struct stat st;
    const char *where = us_ini_excerpt(cfg->data_dir, ex, sizeof ex);
    if (stat(cfg->data_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            us_errors_add(c->warn, "%s:%d: key 'node.data_dir': warning: '%s' is not a directory",
                          c->file, c->line[NK_DATA_DIR], where);
        else if (access(cfg->data_dir, W_OK | X_OK) != 0)
            us_errors_add(c->warn, "%s:%d: key 'node.data_dir': warning: cannot write to '%s': %s",
                          c->file, c->line[NK_DATA_DIR], where, strerror(errno));
        return;
    }
    int e = errno;
    if (e != ENOENT) {
        us_errors_add(c->warn, "%s:%d: key 'node.data_dir': warning: cannot access '%s': %s",
                      c->file, c->line[NK_DATA_DIR], where, strerror(e));
        return;
    }
    /* Missing: the agent creates it, if the nearest existing parent lets it. */
    us_strlcpy(dir, cfg->data_dir, sizeof dir);
    const char *parent = ".";
    for (char *slash; (slash = strrchr(dir, '/')) != NULL;) {
        *slash = '\0';
        if (slash == dir) {
            parent = "/";
            break;
        }
        if (stat(dir, &st) == 0) {
            parent = dir;
            break;
        }
    }
    if (access(parent, W_OK | X_OK) != 0)
        us_errors_add(c->warn,
                      "%s:%d: key 'node.data_dir': warning: '%s' does not exist and cannot be "
                      "created here: %s",
                      c->file, c->line[NK_DATA_DIR], where, strerror(errno));
    else
        us_errors_add(c->warn,
                      "%s:%d: key 'node.data_dir': warning: '%s' does not exist yet (the agent "
                      "creates it)",
                      c->file, c->line[NK_DATA_DIR], where);
}

static void node_check_data_dir(node_ctx *c)
{
    us_node_config *cfg = c->cfg;
    if (c->warn) {
        node_probe_data_dir(c);
        return;
    }
    char failed[PATH_MAX], ex[EXCERPT];
    const char *what = NULL, *subject = cfg->data_dir;
    struct stat st;
    int e = 0;
    if (make_dirs(cfg->data_dir, failed, sizeof failed) != 0) {
        e = errno;
        what = "cannot create";
        subject = failed;
    } else if (stat(cfg->data_dir, &st) != 0) {
        e = errno;
        what = "cannot access";
    } else if (!S_ISDIR(st.st_mode)) {
        e = ENOTDIR;
        what = "cannot use";
    } else if (access(cfg->data_dir, W_OK | X_OK) != 0) {
        e = errno;
        what = "cannot write to";
    }
    if (e) {
        us_errors_add(c->err, "%s:%d: key 'node.data_dir': %s '%s': %s", c->file,
                      c->line[NK_DATA_DIR], what, us_ini_excerpt(subject, ex, sizeof ex),
                      strerror(e));
        return;
    }
    /* Absolute, so that a later chdir of the agent cannot move its Raft log. */
    char abs[PATH_MAX];
    if (realpath(cfg->data_dir, abs))
        us_strlcpy(cfg->data_dir, abs, sizeof cfg->data_dir);
}

/* Is the host of "IPv4:port" in 127.0.0.0/8? */
static bool api_on_loopback(const char *api)
{
    char host[16];
    int port;
    return us_parse_hostport(api, host, sizeof host, &port) == 0 && strncmp(host, "127.", 4) == 0;
}

/* TLS files exist and the key is private; a non-loopback API has TLS or says api_insecure. */
static void node_check_api_tls(node_ctx *c)
{
    us_node_config *cfg = c->cfg;
    static const struct {
        int key, other;
        bool secret;
    } files[] = {{NK_API_TLS_CERT, NK_API_TLS_KEY, false}, {NK_API_TLS_KEY, NK_API_TLS_CERT, true}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        int k = files[i].key;
        if (!c->ok[k])
            continue;
        const char *path = k == NK_API_TLS_CERT ? cfg->api_tls_cert : cfg->api_tls_key;
        char why[PATH_MAX + 128];
        if (!c->line[files[i].other])
            us_errors_add(c->err, "%s:%d: key 'node.%s' needs key 'node.%s' too", c->file,
                          c->line[k], node_keys[k].key, node_keys[files[i].other].key);
        else if (access(path, R_OK) != 0)
            us_errors_add(c->err, "%s:%d: key 'node.%s': cannot read %s: %s", c->file, c->line[k],
                          node_keys[k].key, path, strerror(errno));
        else if (files[i].secret && us_secret_file_check(path, why, sizeof why) != 0)
            us_errors_add(c->err, "%s:%d: key 'node.%s': %s", c->file, c->line[k], node_keys[k].key,
                          why);
    }
    bool tls = c->line[NK_API_TLS_CERT] && c->line[NK_API_TLS_KEY];
    if ((c->ok[NK_API] || !c->line[NK_API]) && !api_on_loopback(cfg->api) && !tls &&
        !cfg->api_insecure)
        us_errors_add(c->err,
                      "%s:%d: key 'node.api': %s is not a loopback address, so the API needs TLS "
                      "(keys 'node.api_tls_cert' and 'node.api_tls_key') or an explicit "
                      "'node.api_insecure = yes' (tokens would cross the network in clear text)",
                      c->file, c->line[NK_API], cfg->api);
}

/* Checks that need several keys; run after the whole file is read. */
static void node_cross_checks(node_ctx *c)
{
    us_node_config *cfg = c->cfg;
    if (c->ok[NK_DATA_DIR])
        node_check_data_dir(c);

    static const int required[] = {NK_NAME,         NK_ADDRESS,  NK_DATA_DIR,
                                   NK_CLUSTER_NAME, NK_KEY_FILE, NK_API_TOKEN_FILE};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        int k = required[i];
        if (!c->line[k])
            us_errors_add(c->err, "%s: missing key '%s.%s' (expected %s)", c->file,
                          node_keys[k].section, node_keys[k].key, node_keys[k].expected);
    }
    if (!c->line[NK_MEMBERS] && !c->line[NK_JOIN])
        us_errors_add(c->err,
                      "%s: missing key 'cluster.members' or 'cluster.join' (expected %s for a new "
                      "cluster, or %s to join one)",
                      c->file, node_keys[NK_MEMBERS].expected, node_keys[NK_JOIN].expected);

    if (!c->line[NK_PROFILE])
        us_timing_profile("default", &cfg->timing);
    if (!c->line[NK_AUTOPILOT_GRACE])
        cfg->autopilot_grace_ms = AUTOPILOT_GRACE_DEFAULT_MS;
    if (!c->line[NK_EVENTS_MAX])
        cfg->events_max = US_EVENTS_DEFAULT;
    if (!c->line[NK_VOTER_NICE])
        cfg->voter_nice = US_VOTER_NICE_DEFAULT;

    /* The API never listens on the cluster interface unless asked to. */
    if (!c->line[NK_API])
        snprintf(cfg->api, sizeof cfg->api, "127.0.0.1:%d", API_DEFAULT_PORT);
    if (c->ok[NK_KEY_FILE]) {
        char why[512];
        if (us_keyring_load(cfg->key_file, &cfg->keys, why, sizeof why) != 0)
            us_errors_add(c->err, "%s:%d: key 'cluster.key_file': %s", c->file,
                          c->line[NK_KEY_FILE], why);
    }
    if (c->ok[NK_API_TOKEN_FILE]) {
        char why[512];
        if (us_tokens_load(cfg->api_token_file, &cfg->tokens, why, sizeof why) != 0)
            us_errors_add(c->err, "%s:%d: key 'node.api_token_file': %s", c->file,
                          c->line[NK_API_TOKEN_FILE], why);
    }
    node_check_api_tls(c);
    if (c->ok[NK_ADDRESS] && (c->ok[NK_API] || !c->line[NK_API])) {
        char ahost[16], phost[16];
        int aport, pport;
        us_parse_hostport(cfg->address, ahost, sizeof ahost, &aport);
        us_parse_hostport(cfg->api, phost, sizeof phost, &pport);
        if (aport == pport && (strcmp(ahost, phost) == 0 || strcmp(phost, "0.0.0.0") == 0)) {
            if (c->line[NK_API])
                node_bad(c, NK_API, "a port other than node.address's", cfg->api);
            else
                us_errors_add(c->err,
                              "%s:%d: key 'node.address': port %d is the default API port; set "
                              "'node.api' to another address",
                              c->file, c->line[NK_ADDRESS], aport);
        }
    }

    if (c->ok[NK_MEMBERS] && c->ok[NK_NAME]) {
        const us_member *self = NULL;
        for (int i = 0; i < cfg->n_members; i++) {
            const us_member *m = &cfg->members[i];
            if (strcmp(m->name, cfg->name) == 0)
                self = m;
            else if (c->ok[NK_ADDRESS] && strcmp(m->address, cfg->address) == 0) {
                char expected[US_NAME_MAX + 64];
                snprintf(expected, sizeof expected, "node.address to belong to '%s' only",
                         cfg->name);
                node_bad(c, NK_MEMBERS, expected, m->name);
            }
        }
        if (self && c->ok[NK_ADDRESS] && strcmp(self->address, cfg->address) != 0) {
            char expected[US_NAME_MAX + US_ADDR_MAX + 64];
            snprintf(expected, sizeof expected, "'%s' at node.address %s", cfg->name, cfg->address);
            char got[US_NAME_MAX + US_ADDR_MAX];
            snprintf(got, sizeof got, "%s=%s", self->name, self->address);
            node_bad(c, NK_MEMBERS, expected, got);
        }
        if (!self && !c->line[NK_JOIN]) {
            char expected[US_NAME_MAX + 96];
            snprintf(expected, sizeof expected,
                     "this node '%s' among the members, or key 'cluster.join' to join them",
                     cfg->name);
            char names[US_NAME_MAX * US_MAX_NODES] = "";
            for (int i = 0; i < cfg->n_members; i++) {
                size_t used = strlen(names);
                snprintf(names + used, sizeof names - used, "%s%s", i ? " " : "",
                         cfg->members[i].name);
            }
            node_bad(c, NK_MEMBERS, expected, names);
        }
    }
}

static int parse_node(const char *text, size_t len, const char *path, us_node_config *out,
                      us_errors *err, us_errors *warn)
{
    int before = error_count(err);
    us_node_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        us_errors_add(err, "%s: out of memory", path);
        return -1;
    }
    node_ctx c = {.file = path, .err = err, .cfg = cfg, .warn = warn};
    if (!us_strlcpy(cfg->path, path, sizeof cfg->path))
        us_errors_add(err, "%s: path longer than PATH_MAX", path);
    us_ini_parse(text, len, node_cb, &c, err, path);
    node_cross_checks(&c);
    int rc = -1;
    if (error_count(err) == before) {
        *out = *cfg;
        rc = 0;
    }
    free(cfg);
    return rc;
}

static int load_node(const char *path, us_node_config *out, us_errors *err, us_errors *warn)
{
    size_t len;
    char *text = read_text(path, &len, err);
    if (!text)
        return -1;
    int rc = parse_node(text, len, path, out, err, warn);
    free(text);
    return rc;
}

int us_config_parse_node_text(const char *text, size_t len, const char *filename,
                              us_node_config *out, us_errors *err)
{
    us_errors *warn = calloc(1, sizeof *warn); /* data_dir findings: not asked for here */
    if (!warn) {
        us_errors_add(err, "%s: out of memory", filename);
        return -1;
    }
    int rc = parse_node(text, len, filename, out, err, warn);
    free(warn);
    return rc;
}

int us_config_load_node(const char *path, us_node_config *out, us_errors *err)
{
    return load_node(path, out, err, NULL);
}

int us_config_check_node(const char *path, us_node_config *out, us_errors *err, us_errors *warn)
{
    return load_node(path, out, err, warn);
}

/* ---- what a file holds ---- */

typedef struct kind_ctx {
    us_config_kind kind;
} kind_ctx;

static int kind_cb(void *user, const char *section, const char *key, const char *value, int line)
{
    (void)value;
    (void)line;
    kind_ctx *k = user;
    if (key)
        return 0;
    if (strcmp(section, "node") == 0 || strcmp(section, "cluster") == 0)
        k->kind = US_CONFIG_NODE;
    else if (strncmp(section, "service", 7) == 0 &&
             (section[7] == '\0' || isspace((unsigned char)section[7])))
        k->kind = US_CONFIG_SERVICES;
    return k->kind != US_CONFIG_UNKNOWN; /* the first telling header decides */
}

us_config_kind us_config_detect(const char *text, size_t len)
{
    kind_ctx k = {US_CONFIG_UNKNOWN};
    us_errors *scratch = calloc(1, sizeof *scratch);
    if (!scratch)
        return US_CONFIG_UNKNOWN;
    us_ini_parse(text, len, kind_cb, &k, scratch, "");
    free(scratch);
    return k.kind;
}

/* ---- services file ---- */

/* The keys are the rows of core/service.c; a key whose value is not a plain command, integer,
 * duration, bool, enum, size or string has its parser in svc_keys[] below. */

/* Row index of a services-file key, or -1. */
static int svc_key(const char *key)
{
    const us_service_field *f = us_service_field_by_key(key);
    return f ? (int)(f - us_service_fields) : -1;
}

/* "run, standby, promote, ...": every key in row order. */
static const char *svc_known_keys(void)
{
    static char list[1024];
    if (!list[0]) {
        size_t n = 0;
        for (int i = 0; i < us_service_n_fields; i++) {
            const char *k = us_service_fields[i].key;
            if (k)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", k);
        }
    }
    return list;
}

#define VIP_EXPECTED "ADDR/PREFIX dev IFNAME"
#define VIP_EXAMPLE "'198.18.0.100/24 dev eth0'"
#define PROXY_EXPECTED "'LISTEN -> PORT' such as '0.0.0.0:8000 -> 8080'"
#define CHECK_EXPECTED "http://HOST:PORT/PATH, tcp://HOST:PORT or exec:COMMAND"

typedef struct svc_ctx {
    const char *file;
    us_errors *err;
    us_service_set *set;
    int header_line[US_MAX_SERVICES];
    bool in_service;     /* keys go to `cur` */
    us_service_def *cur; /* set->svc[set->n] being filled, or `scratch` when it will be dropped */
    bool keep;           /* cur is valid so far and will be counted */
    char cur_name[EXCERPT];
    int cur_line;
    /* By row of us_service_fields: the line a key was set on (for the keys that may repeat, the
     * first), and whether a value was rejected (no cross-checks with it). */
    int key_line[US_SERVICE_FIELDS_MAX];
    bool key_bad[US_SERVICE_FIELDS_MAX];
    bool too_many_reported;
    /* Lines of cur's VIPs and of every kept service's VIPs and proxy, for messages that name the
     * other side of a conflict. */
    int cur_vip_line[US_MAX_VIPS];
    bool vip_limit_reported;
    bool check_limit_reported;
    int env_line[US_MAX_ENV]; /* line of each of cur's env assignments */
    bool env_limit_reported;
    int vip_line[US_MAX_SERVICES][US_MAX_VIPS];
    int proxy_line[US_MAX_SERVICES];
    us_service_def scratch;
} svc_ctx;

static void svc_bad(svc_ctx *c, int line, const char *key, const char *expected, const char *got)
{
    char ex[EXCERPT];
    us_errors_add(c->err, "%s:%d: key '%s' in [service %s]: expected %s, got '%s'", c->file, line,
                  key, c->cur_name, expected, us_ini_excerpt(got, ex, sizeof ex));
}

/* Like svc_bad, for problems that are best said as a sentence ("prefix 33 is out of range"). */
static void svc_problem(svc_ctx *c, int line, const char *key, const char *problem, const char *got)
{
    char ex[EXCERPT];
    us_errors_add(c->err, "%s:%d: key '%s' in [service %s]: %s, got '%s'", c->file, line, key,
                  c->cur_name, problem, us_ini_excerpt(got, ex, sizeof ex));
}

static void svc_finish(svc_ctx *c)
{
    if (!c->in_service)
        return;
    if (!c->key_line[svc_key("run")])
        us_errors_add(c->err,
                      "%s:%d: [service %s]: missing key 'run' (expected a shell command that runs "
                      "the service in the foreground)",
                      c->file, c->cur_line, c->cur_name);
    for (int k = 0; k < us_service_n_fields; k++) {
        const char *needs = us_service_fields[k].needs;
        if (needs && c->key_line[k] && !c->key_line[svc_key(needs)])
            us_errors_add(c->err,
                          "%s:%d: key '%s' in [service %s]: only meaningful with '%s' (this "
                          "service has no '%s' key)",
                          c->file, c->key_line[k], us_service_fields[k].key, c->cur_name, needs,
                          needs);
    }
    const us_service_def *d = c->cur;
    /* Only a hot standby runs a process that could follow the active or have a position. */
    static const char *const hot_only[] = {"follow", "position", "synchronous"};
    int standby = svc_key("standby");
    for (size_t k = 0; k < sizeof hot_only / sizeof hot_only[0]; k++) {
        int key = svc_key(hot_only[k]);
        if (c->key_line[key] && !c->key_bad[standby] && d->standby != US_STANDBY_HOT)
            us_errors_add(c->err,
                          "%s:%d: key '%s' in [service %s]: only meaningful with 'standby = hot' "
                          "(a cold standby runs nothing until it is promoted), got standby = "
                          "cold (%s)",
                          c->file, c->key_line[key], hot_only[k], c->cur_name,
                          c->key_line[standby] ? "set so" : "the default");
    }
    /* More synchronous standbys than standbys could never be kept. */
    int sync_n = svc_key("synchronous"), standbys = svc_key("standbys");
    if (c->key_line[sync_n] && !c->key_bad[sync_n] && !c->key_bad[standbys] &&
        d->synchronous > d->standbys)
        us_errors_add(
            c->err,
            "%s:%d: key 'synchronous' in [service %s]: expected at most 'standbys' (%d%s), "
            "got %d",
            c->file, c->key_line[sync_n], c->cur_name, d->standbys,
            c->key_line[standbys] ? "" : ", the default", d->synchronous);
    /* A probe still running when the next one is due would pile up. */
    int check = svc_key("check"), timeout = svc_key("check_timeout"),
        interval = svc_key("check_interval");
    if (c->key_line[check] && !c->key_bad[timeout] && !c->key_bad[interval] &&
        d->check_timeout_ms > d->check_interval_ms) {
        int l = c->key_line[timeout] ? c->key_line[timeout] : c->key_line[interval];
        const char *k = c->key_line[timeout] ? "check_timeout" : "check_interval";
        char where[32];
        if (c->key_line[interval])
            snprintf(where, sizeof where, "line %d", c->key_line[interval]);
        else
            snprintf(where, sizeof where, "the default");
        char twhere[32];
        if (c->key_line[timeout])
            snprintf(twhere, sizeof twhere, "line %d", c->key_line[timeout]);
        else
            snprintf(twhere, sizeof twhere, "the default");
        us_errors_add(c->err,
                      "%s:%d: key '%s' in [service %s]: expected check_timeout <= check_interval, "
                      "got check_timeout %dms (%s) > check_interval %dms (%s)",
                      c->file, l, k, c->cur_name, d->check_timeout_ms, twhere, d->check_interval_ms,
                      where);
    }
    if (c->keep) {
        memcpy(c->vip_line[c->set->n], c->cur_vip_line, sizeof c->cur_vip_line);
        c->proxy_line[c->set->n] = c->key_line[svc_key("proxy")];
        c->set->n++;
    }
    c->in_service = false;
}

static void svc_header(svc_ctx *c, const char *section, int line)
{
    char ex[EXCERPT];
    svc_finish(c);
    char copy[256];
    char *cursor = copy;
    const char *kind = NULL, *name = NULL, *extra = NULL;
    if (us_strlcpy(copy, section, sizeof copy)) {
        kind = next_token(&cursor);
        name = next_token(&cursor);
        extra = next_token(&cursor);
    }
    if (!kind || strcmp(kind, "service") != 0 || !name || extra) {
        us_errors_add(c->err, "%s:%d: unknown section '[%s]' (expected '[service NAME]')", c->file,
                      line, us_ini_excerpt(section, ex, sizeof ex));
        return; /* its keys are skipped: they cannot be attributed to a service */
    }
    c->in_service = true;
    c->cur_line = line;
    memset(c->key_line, 0, sizeof c->key_line);
    memset(c->key_bad, 0, sizeof c->key_bad);
    c->check_limit_reported = false;
    memset(c->env_line, 0, sizeof c->env_line);
    c->env_limit_reported = false;
    memset(c->cur_vip_line, 0, sizeof c->cur_vip_line);
    c->vip_limit_reported = false;
    us_ini_excerpt(name, c->cur_name, sizeof c->cur_name);
    us_service_set *set = c->set;
    c->keep = false;
    c->cur = &c->scratch;
    if (!us_name_valid(name)) {
        us_errors_add(c->err,
                      "%s:%d: section '[%s]': expected a service name of [a-z0-9-], 1..63 "
                      "characters, got '%s'",
                      c->file, line, us_ini_excerpt(section, ex, sizeof ex), c->cur_name);
    } else {
        for (int i = 0; i < set->n; i++) {
            if (strcmp(set->svc[i].name, name) == 0) {
                us_errors_add(c->err, "%s:%d: duplicate service '%s' (first defined on line %d)",
                              c->file, line, name, c->header_line[i]);
                us_service_defaults(c->cur);
                return;
            }
        }
        if (set->n == US_MAX_SERVICES) {
            if (!c->too_many_reported)
                us_errors_add(c->err,
                              "%s:%d: [service %s]: expected at most %d services "
                              "(US_MAX_SERVICES), got more",
                              c->file, line, name, US_MAX_SERVICES);
            c->too_many_reported = true;
        } else if (us_service_set_reserve(set, set->n + 1) != 0) {
            if (!c->too_many_reported)
                us_errors_add(c->err, "%s:%d: [service %s]: out of memory", c->file, line, name);
            c->too_many_reported = true;
        } else {
            c->keep = true;
            c->cur = &set->svc[set->n];
            c->header_line[set->n] = line;
        }
    }
    us_service_defaults(c->cur);
    us_strlcpy(c->cur->name, c->cur_name, sizeof c->cur->name);
}

static bool svc_command(svc_ctx *c, int line, const char *key, const char *value, char *dst,
                        bool required)
{
    if (required && *value == '\0') {
        svc_bad(c, line, key, "a shell command", value);
        return false;
    }
    if (!us_strlcpy(dst, value, US_CMD_MAX)) {
        char expected[64], got[64];
        snprintf(expected, sizeof expected, "at most %d characters (US_CMD_MAX)", US_CMD_MAX - 1);
        snprintf(got, sizeof got, "%zu characters", strlen(value));
        char ex[EXCERPT];
        us_errors_add(c->err, "%s:%d: key '%s' in [service %s]: expected %s, got %s ('%s')",
                      c->file, line, key, c->cur_name, expected, got,
                      us_ini_excerpt(value, ex, 24));
        return false;
    }
    return true;
}

static void svc_nodes(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    us_service_def *d = c->cur;
    size_t len = strlen(value);
    char *copy = malloc(len + 1);
    if (!copy) {
        svc_bad(c, line, "nodes", "a shorter list (out of memory)", value);
        return;
    }
    memcpy(copy, value, len + 1);
    int n = 0;
    char *cursor = copy;
    for (char *t; (t = next_token(&cursor)) != NULL;) {
        if (!us_name_valid(t)) {
            svc_bad(c, line, "nodes", "node names of [a-z0-9-], 1..63 characters", t);
            continue;
        }
        bool dup = false;
        for (int i = 0; i < n && !dup; i++)
            dup = strcmp(d->nodes[i], t) == 0;
        if (dup) {
            svc_bad(c, line, "nodes", "each node at most once", t);
            continue;
        }
        if (n == US_MAX_NODES) {
            char expected[64];
            snprintf(expected, sizeof expected, "at most %d nodes (US_MAX_NODES)", US_MAX_NODES);
            svc_bad(c, line, "nodes", expected, value);
            break;
        }
        us_strlcpy(d->nodes[n++], t, US_NAME_MAX);
    }
    free(copy);
    d->n_nodes = n;
}

/* A duration; `allow_zero` for keys where 0 means "none" or "do not wait". */
static bool svc_duration(svc_ctx *c, int line, const char *key, const char *value, int *dst,
                         bool allow_zero)
{
    const char *why = duration_int(value, allow_zero, dst);
    if (why)
        svc_bad(c, line, key, why, value);
    return why == NULL;
}

static bool svc_int(svc_ctx *c, int line, const char *key, const char *value, long min, long max,
                    int *dst)
{
    long v;
    if (!us_parse_uint(value, strlen(value), max, &v) || v < min) {
        char expected[64];
        snprintf(expected, sizeof expected, "an integer %ld..%ld", min, max);
        svc_bad(c, line, key, expected, value);
        return false;
    }
    *dst = (int)v;
    return true;
}

/* A Linux interface name (dev_valid_name): 1..15 characters, not "." or "..", no '/', ':' or
 * whitespace. */
static bool ifname_check(const char *dev, char *why, size_t len)
{
    if (strlen(dev) >= US_IFNAME_MAX) {
        snprintf(why, len, "interface name '%.40s' is longer than %d characters (IFNAMSIZ)", dev,
                 US_IFNAME_MAX - 1);
        return false;
    }
    bool ok = strcmp(dev, ".") != 0 && strcmp(dev, "..") != 0;
    for (const char *p = dev; ok && *p; p++)
        ok = *p != '/' && *p != ':' && isgraph((unsigned char)*p);
    if (!ok)
        snprintf(why, len,
                 "interface name '%s' is not valid (expected a name without '/', ':' or "
                 "control characters, not '.' or '..')",
                 dev);
    return ok;
}

/* "198.18.0.100/24 dev eth0" or "2001:db8::10/64 dev eth0". Whether the device exists on a node is
 * the agent's business, not the file's. 0, or -1 with a sentence in `why`. */
static int vip_parse_text(const char *text, us_vip *out, char *why, size_t len)
{
    char copy[128];
    if (!us_strlcpy(copy, text, sizeof copy)) {
        snprintf(why, len, "expected one " VIP_EXPECTED " such as " VIP_EXAMPLE " (too long)");
        return -1;
    }
    char *cursor = copy;
    char *addr = next_token(&cursor), *kw = next_token(&cursor), *dev = next_token(&cursor);
    char *extra = next_token(&cursor);
    if (!addr) {
        snprintf(why, len, "expected " VIP_EXPECTED " such as " VIP_EXAMPLE);
        return -1;
    }
    char *slash = strchr(addr, '/');
    if (!slash) {
        snprintf(why, len, "missing '/PREFIX' after the address (expected " VIP_EXPECTED ")");
        return -1;
    }
    *slash = '\0';
    const char *prefix = slash + 1;
    us_vip v;
    memset(&v, 0, sizeof v);
    v.family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (strlen(addr) >= INET6_ADDRSTRLEN || inet_pton(v.family, addr, v.addr) != 1) {
        snprintf(why, len, "'%.48s' is not an IPv4 or IPv6 address (expected " VIP_EXPECTED ")",
                 addr);
        return -1;
    }
    const char *special = NULL;
    if (v.family == AF_INET) {
        if (memcmp(v.addr, "\0\0\0\0", 4) == 0)
            special = "the unspecified address";
        else if ((v.addr[0] & 0xF0) == 0xE0)
            special = "a multicast address";
        else if (memcmp(v.addr, "\xff\xff\xff\xff", 4) == 0)
            special = "the broadcast address";
    } else {
        static const uint8_t zero[16];
        if (memcmp(v.addr, zero, 16) == 0)
            special = "the unspecified address";
        else if (v.addr[0] == 0xFF)
            special = "a multicast address";
    }
    if (special) {
        snprintf(why, len, "'%s' is %s and cannot be a VIP", addr, special);
        return -1;
    }
    int max = v.family == AF_INET ? 32 : 128;
    long p;
    if (!us_parse_uint(prefix, strlen(prefix), 999, &p)) {
        snprintf(why, len, "'/%.16s' is not a prefix length (expected /0..%d)", prefix, max);
        return -1;
    }
    if (p > max) {
        snprintf(why, len, "prefix %ld is out of range for %s (0..%d)", p,
                 v.family == AF_INET ? "IPv4" : "IPv6", max);
        return -1;
    }
    v.prefix = (int)p;
    if (!kw) {
        snprintf(why, len, "missing 'dev IFNAME' after the prefix (expected " VIP_EXPECTED ")");
        return -1;
    }
    if (strcmp(kw, "dev") != 0) {
        snprintf(why, len,
                 "found '%.40s' where 'dev IFNAME' was expected (expected " VIP_EXPECTED ")", kw);
        return -1;
    }
    if (!dev) {
        snprintf(why, len, "missing the interface name after 'dev' (expected " VIP_EXPECTED ")");
        return -1;
    }
    if (!ifname_check(dev, why, len))
        return -1;
    if (extra) {
        snprintf(why, len,
                 "unexpected '%.40s' after the interface name (one VIP is " VIP_EXPECTED
                 "; separate several with ',')",
                 extra);
        return -1;
    }
    us_strlcpy(v.dev, dev, sizeof v.dev);
    snprintf(v.text, sizeof v.text, "%s/%s dev %s", addr, prefix, dev);
    *out = v;
    return 0;
}

static bool vip_same_addr(const us_vip *a, const us_vip *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

static void vip_add(svc_ctx *c, int line, const char *item)
{
    us_service_def *d = c->cur;
    char why[256];
    us_vip v;
    if (vip_parse_text(item, &v, why, sizeof why) != 0) {
        svc_problem(c, line, "vip", why, item);
        return;
    }
    char addr[INET6_ADDRSTRLEN];
    inet_ntop(v.family, v.addr, addr, sizeof addr);
    for (int i = 0; i < d->n_vips; i++) {
        if (vip_same_addr(&d->vips[i], &v)) {
            snprintf(why, sizeof why, "duplicate VIP address %s (already listed on line %d)", addr,
                     c->cur_vip_line[i]);
            svc_problem(c, line, "vip", why, item);
            return;
        }
    }
    /* Two services sharing an address would remove it from each other's active node. */
    for (int s = 0; s < c->set->n; s++) {
        const us_service_def *o = &c->set->svc[s];
        for (int i = 0; i < o->n_vips; i++) {
            if (vip_same_addr(&o->vips[i], &v)) {
                snprintf(why, sizeof why,
                         "VIP address %s is already used by [service %s] (line %d)", addr, o->name,
                         c->vip_line[s][i]);
                svc_problem(c, line, "vip", why, item);
                return;
            }
        }
    }
    if (d->n_vips == US_MAX_VIPS) {
        if (!c->vip_limit_reported) {
            snprintf(why, sizeof why, "at most %d VIPs per service (US_MAX_VIPS), got more",
                     US_MAX_VIPS);
            svc_problem(c, line, "vip", why, item);
        }
        c->vip_limit_reported = true;
        return;
    }
    c->cur_vip_line[d->n_vips] = line;
    d->vips[d->n_vips++] = v;
}

/* One or more VIPs separated by ','; the key may also repeat. */
static void svc_vips(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    if (*value == '\0') {
        svc_bad(c, line, "vip", VIP_EXPECTED " such as " VIP_EXAMPLE, value);
        return;
    }
    size_t len = strlen(value);
    char *copy = malloc(len + 1);
    if (!copy) {
        svc_bad(c, line, "vip", "a shorter list (out of memory)", value);
        return;
    }
    memcpy(copy, value, len + 1);
    for (char *item = copy; item;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        while (isspace((unsigned char)*item))
            item++;
        size_t n = strlen(item);
        while (n > 0 && isspace((unsigned char)item[n - 1]))
            item[--n] = '\0';
        if (n == 0)
            svc_problem(c, line, "vip",
                        "empty entry in the ','-separated list (expected " VIP_EXPECTED
                        ", " VIP_EXPECTED ", ...)",
                        value);
        else
            vip_add(c, line, item);
        item = comma ? comma + 1 : NULL;
    }
    free(copy);
}

/* Can listeners on a and b both be bound on one node? Not on the same port when one is the
 * wildcard or both are the same address. */
static bool listen_overlap(const char *a, const char *b, int *port)
{
    char ha[16], hb[16];
    int pa, pb;
    if (us_parse_hostport(a, ha, sizeof ha, &pa) != 0 ||
        us_parse_hostport(b, hb, sizeof hb, &pb) != 0 || pa != pb)
        return false;
    *port = pa;
    return strcmp(ha, hb) == 0 || strcmp(ha, "0.0.0.0") == 0 || strcmp(hb, "0.0.0.0") == 0;
}

/* "0.0.0.0:8000 -> 8080": listen address on every node, backend port on the active node. */
static void svc_proxy(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    const char *arrow = strstr(value, "->");
    if (!arrow) {
        svc_bad(c, line, "proxy", PROXY_EXPECTED " (missing '->')", value);
        return;
    }
    char listen[US_ADDR_MAX];
    const char *l = value, *le = arrow;
    while (le > l && isspace((unsigned char)le[-1]))
        le--;
    size_t ln = (size_t)(le - l);
    bool listen_ok = ln < sizeof listen;
    if (listen_ok) {
        memcpy(listen, l, ln);
        listen[ln] = '\0';
        listen_ok = us_parse_hostport(listen, NULL, 0, NULL) == 0;
    }
    const char *r = arrow + 2;
    while (isspace((unsigned char)*r))
        r++;
    long port = 0;
    bool port_ok = us_parse_uint(r, strlen(r), 65535, &port) && port > 0;
    if (!listen_ok)
        svc_problem(c, line, "proxy",
                    "expected a listen address before '->' as " ADDR_EXPECTED
                    " (0.0.0.0 = every address)",
                    value);
    if (!port_ok)
        svc_problem(c, line, "proxy", "expected a backend port 1..65535 after '->'", value);
    if (!listen_ok || !port_ok)
        return;
    for (int s = 0; s < c->set->n; s++) {
        const us_service_def *o = &c->set->svc[s];
        int p;
        if (!o->proxy_listen[0] || !listen_overlap(o->proxy_listen, listen, &p))
            continue;
        char ex[EXCERPT];
        if (strcmp(o->proxy_listen, listen) == 0)
            us_errors_add(c->err,
                          "%s:%d: key 'proxy' in [service %s]: listen address %s is already used "
                          "by [service %s] (line %d)",
                          c->file, line, c->cur_name, listen, o->name, c->proxy_line[s]);
        else
            us_errors_add(c->err,
                          "%s:%d: key 'proxy' in [service %s]: listen address %s overlaps %s of "
                          "[service %s] (line %d): both need port %d",
                          c->file, line, c->cur_name, us_ini_excerpt(listen, ex, sizeof ex),
                          o->proxy_listen, o->name, c->proxy_line[s], p);
        return;
    }
    us_strlcpy(c->cur->proxy_listen, listen, sizeof c->cur->proxy_listen);
    c->cur->proxy_port = (int)port;
}

static void svc_backend_host(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    if (!us_ipv4_valid(value, strlen(value)) || strcmp(value, "0.0.0.0") == 0) {
        svc_bad(c, line, "backend_host",
                "an IPv4 address (dotted quad without leading zeros, not 0.0.0.0)", value);
        return;
    }
    us_strlcpy(c->cur->backend_host, value, sizeof c->cur->backend_host);
}

/* "http://IPv4:PORT/PATH?QUERY", "tcp://IPv4:PORT" or "exec:COMMAND". 0, or -1 with a sentence
 * in `why`. */
static int check_parse_text(const char *text, us_check_def *out, char *why, size_t len)
{
    us_check_def ck;
    memset(&ck, 0, sizeof ck);
    if (!us_strlcpy(ck.text, text, sizeof ck.text)) {
        snprintf(why, len, "the check is %zu characters long, expected at most %d (US_CMD_MAX)",
                 strlen(text), US_CMD_MAX - 1);
        return -1;
    }
    if (strncasecmp(text, "exec:", 5) == 0) {
        const char *cmd = text + 5;
        while (isspace((unsigned char)*cmd))
            cmd++;
        if (*cmd == '\0') {
            snprintf(why, len, "empty command after 'exec:' (expected exec:COMMAND)");
            return -1;
        }
        ck.kind = US_CHECK_EXEC; /* the command: us_check_cmd */
        *out = ck;
        return 0;
    }
    const char *sep = strstr(text, "://");
    size_t slen = sep ? (size_t)(sep - text) : 0;
    bool scheme_ok = sep && slen > 0 && slen <= 16;
    for (size_t i = 0; scheme_ok && i < slen; i++)
        scheme_ok = isalnum((unsigned char)text[i]) || strchr("+-.", text[i]);
    if (!scheme_ok) {
        snprintf(why, len, "expected " CHECK_EXPECTED);
        return -1;
    }
    bool http = slen == 4 && strncasecmp(text, "http", 4) == 0;
    bool tcp = slen == 3 && strncasecmp(text, "tcp", 3) == 0;
    if (!http && !tcp) {
        snprintf(why, len, "%.*s is not supported; expected " CHECK_EXPECTED, (int)slen, text);
        return -1;
    }
    const char *form = http ? "http://HOST:PORT/PATH" : "tcp://HOST:PORT";
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *rest = auth + alen;
    const char *colon = memchr(auth, ':', alen);
    size_t hlen = colon ? (size_t)(colon - auth) : alen;
    if (hlen == 0) {
        snprintf(why, len, "missing the host (expected %s with HOST an IPv4 address)", form);
        return -1;
    }
    if (!us_ipv4_valid(auth, hlen)) {
        snprintf(why, len,
                 "'%.*s' is not an IPv4 address (expected an IPv4 address such as 127.0.0.1 in "
                 "%s; host names are not resolved)",
                 (int)(hlen > 48 ? 48 : hlen), auth, form);
        return -1;
    }
    if (!colon) {
        snprintf(why, len, "missing ':PORT' after the host (expected %s)", form);
        return -1;
    }
    size_t plen = alen - hlen - 1;
    long port;
    if (!us_parse_uint(colon + 1, plen, 65535, &port) || port == 0) {
        snprintf(why, len, "'%.*s' is not a port (expected %s with PORT 1..65535)",
                 (int)(plen > 16 ? 16 : plen), colon + 1, form);
        return -1;
    }
    memcpy(ck.host, auth, hlen);
    ck.host[hlen] = '\0';
    ck.port = (int)port;
    if (tcp) {
        if (*rest != '\0' && strcmp(rest, "/") != 0) {
            snprintf(why, len,
                     "unexpected '%.40s' after the port (tcp checks have no path; expected %s)",
                     rest, form);
            return -1;
        }
        ck.kind = US_CHECK_TCP;
        *out = ck;
        return 0;
    }
    /* The path goes verbatim into the request line: no spaces, no control characters, and no
     * fragment (a client never sends one). */
    for (const char *p = rest; *p; p++) {
        if (*p == '#') {
            snprintf(why, len, "a fragment ('#...') is not sent to the server (expected %s)", form);
            return -1;
        }
        if (!isgraph((unsigned char)*p)) {
            snprintf(why, len,
                     "the path contains a space or control character (percent-encode it, "
                     "e.g. %%20)");
            return -1;
        }
    }
    size_t lead = *rest == '/' ? 0 : 1; /* "?query" alone asks for "/?query" */
    if (lead + strlen(rest) >= sizeof ck.path) {
        snprintf(why, len, "the path is longer than %d characters (US_PATH_MAX)", US_PATH_MAX - 1);
        return -1;
    }
    ck.path[0] = '/';
    memcpy(ck.path + lead, rest, strlen(rest) + 1);
    ck.kind = US_CHECK_HTTP;
    *out = ck;
    return 0;
}

/* One check per line; the key may repeat. */
static void svc_check(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    us_service_def *d = c->cur;
    char why[256];
    us_check_def ck;
    if (*value == '\0') {
        svc_bad(c, line, "check", CHECK_EXPECTED, value);
        return;
    }
    if (check_parse_text(value, &ck, why, sizeof why) != 0) {
        svc_problem(c, line, "check", why, value);
        return;
    }
    if (d->n_checks == US_MAX_CHECKS) {
        if (!c->check_limit_reported) {
            snprintf(why, sizeof why, "at most %d checks per service (US_MAX_CHECKS), got more",
                     US_MAX_CHECKS);
            svc_problem(c, line, "check", why, value);
        }
        c->check_limit_reported = true;
        return;
    }
    d->checks[d->n_checks++] = ck;
}

/* "200-299" or a single code "204". */
static void svc_check_status(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    const char *dash = strchr(value, '-');
    size_t n1 = dash ? (size_t)(dash - value) : strlen(value);
    long lo, hi;
    bool ok = us_parse_uint(value, n1, 599, &lo) && lo >= 100;
    if (ok && dash)
        ok = us_parse_uint(dash + 1, strlen(dash + 1), 599, &hi) && hi >= 100;
    else
        hi = lo;
    if (!ok) {
        svc_bad(c, line, "check_status",
                "an HTTP status 100..599 or a range LOW-HIGH such as 200-299", value);
        return;
    }
    if (lo > hi) {
        svc_bad(c, line, "check_status", "a range LOW-HIGH with LOW <= HIGH such as 200-299",
                value);
        return;
    }
    c->cur->check_status_min = (int)lo;
    c->cur->check_status_max = (int)hi;
}

/* "MIN..MAX" durations, or one duration for both. */
static void svc_restart_backoff(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    char first[32] = "", second[32] = "";
    const char *dots = strstr(value, "..");
    size_t n1 = dots ? (size_t)(dots - value) : strlen(value);
    while (n1 > 0 && isspace((unsigned char)value[n1 - 1]))
        n1--;
    if (n1 < sizeof first) { /* longer is no duration: left empty, rejected below */
        memcpy(first, value, n1);
        first[n1] = '\0';
    }
    if (dots) {
        const char *p = dots + 2;
        while (isspace((unsigned char)*p))
            p++;
        if (strlen(p) < sizeof second)
            us_strlcpy(second, p, sizeof second);
    }
    int lo = 0, hi = 0;
    const char *why = duration_int(first, false, &lo);
    if (!why && dots)
        why = duration_int(second, false, &hi);
    else if (!why)
        hi = lo;
    if (why) {
        svc_bad(c, line, "restart_backoff",
                strcmp(why, DURATION_TOO_LONG) == 0
                    ? "MIN..MAX durations of at most 596h (2147483647ms) such as 200ms..30s"
                    : "MIN..MAX durations greater than 0 such as 200ms..30s, or one duration",
                value);
        return;
    }
    if (lo > hi) {
        svc_bad(c, line, "restart_backoff", "MIN..MAX with MIN <= MAX such as 200ms..30s", value);
        return;
    }
    c->cur->restart_backoff_min_ms = lo;
    c->cur->restart_backoff_max_ms = hi;
}

#define ACCOUNT_EXPECTED                                                                           \
    "a name of 1..32 characters [A-Za-z0-9_.-] starting with a letter or '_' (a final '$' is "     \
    "allowed)"
#define SIZE_EXPECTED                                                                              \
    "a size in bytes with an optional K, M or G suffix (1024-based) such as 10M, at most 1024G, "  \
    "or 0 for no rotation"

bool us_account_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > US_USER_MAX - 1 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '_' || ch == '.' || ch == '-' || (ch == '$' && i == n - 1))
            continue;
        return false;
    }
    return true;
}

bool us_parse_size(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    int64_t mult = 1;
    if (n > 0) {
        switch (s[n - 1]) {
        case 'k':
        case 'K':
            mult = 1024;
            break;
        case 'M':
            mult = 1024 * 1024;
            break;
        case 'G':
            mult = 1024 * 1024 * 1024;
            break;
        }
        if (mult > 1)
            n--;
    }
    long v;
    if (!us_parse_uint(s, n, 1024L * 1024 * 1024 * 1024, &v))
        return false;
    if ((int64_t)v * mult > (int64_t)1024 * 1024 * 1024 * 1024)
        return false;
    *out = (int64_t)v * mult;
    return true;
}

/* Next assignment of an `env` value into out (at most cap-1 bytes). Assignments are separated by
 * whitespace; within one, "..." keeps spaces (with \" and \\ as the only escapes) and '...' keeps
 * everything literally. 1 = one read, 0 = no more, -1 = error (*why says what). */
static int env_token(const char **p, char *out, size_t cap, const char **why)
{
    const char *s = *p;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s) {
        *p = s;
        return 0;
    }
    size_t n = 0;
    char quote = 0;
    for (; *s && (quote || !isspace((unsigned char)*s)); s++) {
        char ch = *s;
        if (!quote && (ch == '"' || ch == '\'')) {
            quote = ch;
            continue;
        }
        if (quote && ch == quote) {
            quote = 0;
            continue;
        }
        if (quote == '"' && ch == '\\' && (s[1] == '"' || s[1] == '\\'))
            ch = *++s;
        if (n + 1 >= cap) {
            *why = "an assignment of at most 255 characters (US_ENV_MAX)";
            return -1;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    *p = s;
    if (quote) {
        *why = "KEY=VALUE assignments with closed quotes";
        return -1;
    }
    return 1;
}

static void svc_env(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    (void)f;
    us_service_def *d = c->cur;
    const char *p = value, *why = NULL;
    char tok[US_ENV_MAX];
    int r, seen = 0;
    while ((r = env_token(&p, tok, sizeof tok, &why)) == 1) {
        seen++;
        const char *eq = strchr(tok, '=');
        size_t klen = eq ? (size_t)(eq - tok) : 0;
        bool key_ok = klen > 0 && (isalpha((unsigned char)tok[0]) || tok[0] == '_');
        for (size_t i = 1; key_ok && i < klen; i++)
            key_ok = isalnum((unsigned char)tok[i]) || tok[i] == '_';
        if (!key_ok) {
            svc_bad(c, line, "env",
                    "KEY=VALUE assignments with KEY of [A-Za-z_][A-Za-z0-9_]* (quote values with "
                    "spaces: KEY=\"a b\")",
                    tok);
            continue;
        }
        if (strncmp(tok, "UNDERSTUDY_", 11) == 0) {
            svc_problem(c, line, "env", "UNDERSTUDY_* variables are set by the agent", tok);
            continue;
        }
        if (strpbrk(eq + 1, "\r\n")) {
            svc_problem(c, line, "env", "a value must not contain a newline", tok);
            continue;
        }
        int dup = -1;
        for (int i = 0; i < d->n_env && dup < 0; i++)
            if (strncmp(d->env[i], tok, klen + 1) == 0)
                dup = i;
        if (dup >= 0) {
            char ex[EXCERPT];
            us_errors_add(c->err,
                          "%s:%d: key 'env' in [service %s]: expected each variable at most once, "
                          "got '%s' again (first set on line %d)",
                          c->file, line, c->cur_name, us_ini_excerpt(tok, ex, sizeof ex),
                          c->env_line[dup]);
            continue;
        }
        if (d->n_env == US_MAX_ENV) {
            if (!c->env_limit_reported) {
                char expected[64];
                snprintf(expected, sizeof expected, "at most %d assignments (US_MAX_ENV)",
                         US_MAX_ENV);
                svc_bad(c, line, "env", expected, tok);
            }
            c->env_limit_reported = true;
            return;
        }
        c->env_line[d->n_env] = line;
        us_strlcpy(d->env[d->n_env++], tok, US_ENV_MAX);
    }
    if (r < 0)
        svc_bad(c, line, "env", why, value);
    else if (seen == 0)
        svc_bad(c, line, "env", "one or more KEY=VALUE assignments", value);
}

/* user, group */
static void svc_account(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    if (us_account_name_valid(value))
        us_strlcpy((char *)c->cur + f->offset, value, f->size);
    else
        svc_bad(c, line, f->key, ACCOUNT_EXPECTED, value);
}

typedef void svc_parser(svc_ctx *c, int line, const us_service_field *f, const char *value);

/* Keys whose values need more than the generic parser of their row's type (svc_value). */
static const struct {
    const char *key;
    svc_parser *parse;
} svc_keys[] = {
    {"nodes", svc_nodes},
    {"vip", svc_vips},
    {"proxy", svc_proxy},
    {"backend_host", svc_backend_host},
    {"check", svc_check},
    {"check_status", svc_check_status},
    {"restart_backoff", svc_restart_backoff},
    {"user", svc_account},
    {"group", svc_account},
    {"env", svc_env},
};

/* "'cold' or 'hot'", "'a', 'b' or 'c'" */
static void enum_expected(const us_service_field *f, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (int k = 0; f->names[k] && n < len; k++)
        n += (size_t)snprintf(out + n, len - n, "%s'%s'",
                              k == 0            ? ""
                              : f->names[k + 1] ? ", "
                                                : " or ",
                              f->names[k]);
}

/* The value of key `f` by its type (or its parser in svc_keys). */
static void svc_value(svc_ctx *c, int line, const us_service_field *f, const char *value)
{
    for (size_t i = 0; i < sizeof svc_keys / sizeof svc_keys[0]; i++) {
        if (strcmp(svc_keys[i].key, f->key) == 0) {
            svc_keys[i].parse(c, line, f, value);
            return;
        }
    }
    void *dst = (char *)c->cur + f->offset;
    switch (f->type) {
    case US_FIELD_COMMAND:
        svc_command(c, line, f->key, value, dst, f->flags & US_FIELD_NONEMPTY);
        break;
    case US_FIELD_INT:
        svc_int(c, line, f->key, value, f->min, f->max, dst);
        break;
    case US_FIELD_MS:
        svc_duration(c, line, f->key, value, dst, f->min == 0);
        break;
    case US_FIELD_BOOL:
        if (!us_parse_bool(value, dst))
            svc_bad(c, line, f->key, BOOL_EXPECTED, value);
        break;
    case US_FIELD_ENUM: {
        for (int k = 0; f->names[k]; k++) {
            if (strcmp(value, f->names[k]) == 0) {
                *(int *)dst = k;
                return;
            }
        }
        char expected[128];
        enum_expected(f, expected, sizeof expected);
        svc_bad(c, line, f->key, expected, value);
        break;
    }
    case US_FIELD_SIZE:
        if (!us_parse_size(value, dst))
            svc_bad(c, line, f->key, SIZE_EXPECTED, value);
        break;
    case US_FIELD_STRING:
        if (!us_strlcpy(dst, value, f->size)) {
            char expected[64];
            snprintf(expected, sizeof expected, "at most %zu characters", f->size - 1);
            svc_bad(c, line, f->key, expected, value);
        }
        break;
    case US_FIELD_LIST: /* every list key has its parser in svc_keys */
        svc_bad(c, line, f->key, "a key with a parser (svc_keys in config.c)", value);
        break;
    }
}

/* The known key a mistyped one was most likely meant to be, or NULL ("Failback" is near
 * "failback": keys are lower case). */
static const char *svc_nearest_key(const char *key)
{
    char lower[33];
    size_t n = 0;
    for (; key[n] && n < sizeof lower - 1; n++)
        lower[n] = (char)tolower((unsigned char)key[n]);
    lower[n] = '\0';
    const char *best = NULL;
    int best_d = US_SUGGEST_FAR;
    for (int i = 0; i < us_service_n_fields; i++) {
        const char *k = us_service_fields[i].key;
        if (!k)
            continue;
        int d = us_edit_distance(lower, k);
        if (d < best_d && (size_t)d < strlen(k)) {
            best = k;
            best_d = d;
        }
    }
    return best;
}

static int svc_cb(void *user, const char *section, const char *key, const char *value, int line)
{
    svc_ctx *c = user;
    char ex[EXCERPT];
    if (!key) {
        svc_header(c, section, line);
        return 0;
    }
    if (!c->in_service) {
        if (*section == '\0')
            us_errors_add(c->err, "%s:%d: key '%s' is outside any [service NAME] section", c->file,
                          line, us_ini_excerpt(key, ex, sizeof ex));
        return 0;
    }
    int k = svc_key(key);
    if (k < 0) {
        /* The suggestion comes first: a long file name can cut the list of known keys short. */
        char hint[64] = "";
        const char *near = svc_nearest_key(key);
        if (near)
            snprintf(hint, sizeof hint, "did you mean '%s'? ", near);
        us_errors_add(c->err, "%s:%d: unknown key '%s' in [service %s] (%sknown keys: %s)", c->file,
                      line, us_ini_excerpt(key, ex, sizeof ex), c->cur_name, hint,
                      svc_known_keys());
        return 0;
    }
    const us_service_field *f = &us_service_fields[k];
    if (c->key_line[k] && !(f->flags & US_FIELD_REPEAT)) {
        us_errors_add(c->err, "%s:%d: duplicate key '%s' in [service %s] (first set on line %d)",
                      c->file, line, key, c->cur_name, c->key_line[k]);
        return 0;
    }
    if (!c->key_line[k])
        c->key_line[k] = line;
    int errors_before = error_count(c->err);
    svc_value(c, line, f, value);
    if (error_count(c->err) != errors_before)
        c->key_bad[k] = true;
    return 0;
}
int us_config_parse_services(const char *text, size_t len, const char *filename,
                             us_service_set *out, us_errors *err)
{
    int before = error_count(err);
    svc_ctx *c = calloc(1, sizeof *c);
    us_service_set *set = calloc(1, sizeof *set);
    if (!c || !set) {
        free(c);
        free(set);
        us_errors_add(err, "%s: out of memory", filename);
        return -1;
    }
    c->file = filename;
    c->err = err;
    c->set = set;
    us_ini_parse(text, len, svc_cb, c, err, filename);
    svc_finish(c);
    int rc = -1;
    if (error_count(err) == before) {
        *out = *set; /* out owns the definitions now */
        rc = 0;
    } else {
        us_service_set_free(set);
    }
    free(c);
    free(set);
    return rc;
}
