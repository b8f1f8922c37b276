/* cli.c — see cli.h. */
#include "cli/cli.h"
#include "net/api_guard.h"
#include "config/config.h"
#include "config/ini.h"
#include "lib/key.h"
#include "core/lease.h"
#include "lib/clock.h"
#include "lib/suggest.h"
#include "lib/version.h"

#include <errno.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netdb.h>
#include <sodium.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000
#define REPLY_LIMIT (64u * 1024 * 1024)
#define MAX_REDIRECTS 3
#define NO_LEADER_WAIT_MS 5000
#define NO_LEADER_RETRY_MS 200
#define POLL_INTERVAL_MS 100
#define COMPLETION_WAIT_MS 30000
#define HOSTPORT_MAX 256
#define MAX_ENDPOINTS 20
#define BY_CLI "by=CLI" /* who asks, for the causes of the events a change records */
#define FOLLOW_INTERVAL_MS 250
#define FOLLOW_LOST_MS 5000
#define EVENTS_PAGE 256
#define DEFAULT_NODE_CONFIG                                                                        \
    "/etc/understudy/node.conf" /* the API's largest page: the whole kept history */

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct cli {
    char api[HOSTPORT_MAX];         /* where requests go; becomes the leader after a redirect */
    char token[US_TOKEN_MAX + 1];   /* sent as "Authorization: Bearer"; "" = none found */
    char token_from[PATH_MAX + 64]; /* where it came from, for messages */
    bool tls;                       /* https (--api https://..., --cacert, or api_tls_cert) */
    char cacert[PATH_MAX];          /* CA / certificate to verify the agent with; "" = system's */
    char origin[HOSTPORT_MAX];      /* the agent the user named */
    bool json;
    bool color;
    int width; /* a terminal's columns (tables cut their last column to fit), 0 = no limit */
    /* Other agents to ask while polling, learnt from status replies: the one asked may go away
     * (e.g. the node being removed). */
    char endpoints[MAX_ENDPOINTS][HOSTPORT_MAX];
    int n_endpoints;
} cli;

typedef struct reply {
    int status;
    char *body;
    size_t len;
    json_t *json; /* the body parsed, or NULL */
} reply;

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void reply_free(reply *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("understudy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAILED;
}

static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void url_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* "host:port" or "[v6]:port" -> host, port; false if malformed. */
static bool split_hostport(const char *hp, char *host, size_t hsize, char *port, size_t psize)
{
    const char *colon;
    const char *h = hp;
    size_t hlen;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return false;
        h = hp + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return false;
        hlen = (size_t)(colon - hp);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    if (hlen == 0 || hlen >= hsize || plen == 0 || plen >= psize || plen > 5 ||
        strspn(p, "0123456789") != plen || atoi(p) < 1 || atoi(p) > 65535)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return true;
}

static bool hostport_valid(const char *hp)
{
    char host[HOSTPORT_MAX], port[8];
    return strlen(hp) < HOSTPORT_MAX && split_hostport(hp, host, sizeof host, port, sizeof port);
}

/* ---- HTTP client ---- */

static void unreachable_msg(char *err, size_t size, const char *hp, const char *why)
{
    snprintf(err, size, "cannot reach the agent at %s (%s); is `understudy agent` running?", hp,
             why);
}

/* What a request's body is: a services file for POST /v1/services, else JSON (api_guard.h). */
static const char *content_type_of(const char *method, const char *target)
{
    if (strcmp(method, "GET") == 0)
        return NULL;
    size_t n = strcspn(target, "?");
    return n == strlen("/v1/services") && strncmp(target, "/v1/services", n) == 0
               ? US_SERVICES_TYPE "; charset=utf-8"
               : "application/json";
}

typedef struct sink {
    char *buf;
    size_t len, cap;
    bool too_big;
} sink;

static size_t on_data(char *data, size_t size, size_t n, void *user)
{
    sink *k = user;
    size_t add = size * n;
    if (k->len + add + 1 > REPLY_LIMIT) {
        k->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (k->len + add + 1 > k->cap) {
        size_t cap = k->cap ? k->cap : 8192;
        while (cap < k->len + add + 1)
            cap *= 2;
        char *nb = realloc(k->buf, cap);
        if (!nb)
            return 0;
        k->buf = nb;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, data, add);
    k->len += add;
    k->buf[k->len] = '\0';
    return add;
}

/* One request to one agent (libcurl: http, or https with --cacert). 0 with `rep` filled (any
 * status), -1 with a message in err. */
static int http_once(const cli *c, const char *hp, const char *method, const char *target,
                     const char *body, size_t blen, reply *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    char host[HOSTPORT_MAX], port[8];
    if (!split_hostport(hp, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "invalid agent address \"%s\": expected HOST:PORT", hp);
        return -1;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "cannot start an HTTP client");
        return -1;
    }
    char url[HOSTPORT_MAX + 1200], ua[64], auth[US_TOKEN_MAX + 32], ctype[96];
    snprintf(url, sizeof url, "%s://%s%s", c->tls ? "https" : "http", hp, target);
    snprintf(ua, sizeof ua, "User-Agent: understudy/%s", US_VERSION);
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/json");
    hdr = curl_slist_append(hdr, ua);
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip */
    const char *ct = content_type_of(method, target);
    if (ct) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", ct);
        hdr = curl_slist_append(hdr, ctype);
    }
    if (c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdr = curl_slist_append(hdr, auth);
    }
    char cerr[CURL_ERROR_SIZE] = "";
    sink k = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)IO_TIMEOUT_MS);
    /* No byte for 5 s: the agent is stuck. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)(IO_TIMEOUT_MS / 1000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &k);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    if (c->tls && c->cacert[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    CURLcode res = curl_easy_perform(h);
    long status = 0, oserr = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    sodium_memzero(auth, sizeof auth);
    const char *why = cerr[0] ? cerr : curl_easy_strerror(res);
    if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST) {
        unreachable_msg(err, errlen, hp, oserr ? strerror((int)oserr) : why);
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, errlen, "no reply from the agent at %s (timed out after %d s)", hp,
                 IO_TIMEOUT_MS / 1000);
    } else if (res == CURLE_SSL_CONNECT_ERROR || res == CURLE_PEER_FAILED_VERIFICATION ||
               res == CURLE_SSL_CACERT_BADFILE || res == CURLE_SSL_CERTPROBLEM) {
        snprintf(err, errlen,
                 "TLS with the agent at %s failed: %s (give its certificate or CA with --cacert)",
                 hp, why);
    } else if (k.too_big) {
        snprintf(err, errlen, "the reply of the agent at %s is larger than %u bytes", hp,
                 REPLY_LIMIT);
    } else if (res == CURLE_GOT_NOTHING && !c->tls) {
        snprintf(err, errlen,
                 "no reply from the agent at %s (%s; does it serve https? then give --cacert)", hp,
                 why);
    } else if (res != CURLE_OK || status < 100 || status > 599) {
        snprintf(err, errlen, "no reply from the agent at %s (%s)", hp, why);
    } else {
        rep->status = (int)status;
        rep->body = k.buf ? k.buf : strdup("");
        rep->len = k.len;
        rep->json = rep->body ? json_loadb(rep->body, rep->len, 0, NULL) : NULL;
        return rep->body ? 0 : -1;
    }
    free(k.buf);
    return -1;
}

/* A request as the API expects clients to make it: follow "not the leader" to the leader and
 * wait out an election. Returns 0 with the final reply, or -1 after printing the failure. */
static int call(cli *c, const char *method, const char *target, const char *body, size_t blen,
                reply *rep)
{
    int hops = 0;
    int64_t no_leader_since = -1;
    char err[512];
    for (;;) {
        if (http_once(c, c->api, method, target, body, blen, rep, err, sizeof err) != 0) {
            /* A leader we were sent to may have just died: ask the named agent again, for as
             * long as we would wait for an election. */
            bool redirected = strcmp(c->api, c->origin) != 0;
            if (redirected && no_leader_since < 0)
                no_leader_since = now_ms();
            if (redirected && now_ms() - no_leader_since < NO_LEADER_WAIT_MS) {
                memcpy(c->api, c->origin, sizeof c->api);
                hops = 0;
                sleep_ms(NO_LEADER_RETRY_MS);
                continue;
            }
            fail("%s", err);
            return -1;
        }
        if (rep->status == 421) {
            const char *leader = jstr(rep->json, "leader_api");
            if (leader && hostport_valid(leader) && hops < MAX_REDIRECTS) {
                snprintf(c->api, sizeof c->api, "%s", leader);
                hops++;
                reply_free(rep);
                continue;
            }
            return 0;
        }
        const char *msg = jstr(rep->json, "error");
        if (rep->status == 503 && msg && strcmp(msg, "no leader") == 0) {
            /* An election is running: the request was not executed, so repeat it. Other 503s
             * (e.g. a failed commit) may have taken effect and are reported instead. */
            int64_t t = now_ms();
            if (no_leader_since < 0)
                no_leader_since = t;
            if (t - no_leader_since < NO_LEADER_WAIT_MS) {
                reply_free(rep);
                hops = 0;
                sleep_ms(NO_LEADER_RETRY_MS);
                continue;
            }
        }
        return 0;
    }
}

/* Explain a non-2xx reply. Always returns EXIT_FAILED. */
static int fail_reply(const cli *c, const reply *rep)
{
    const char *msg = jstr(rep->json, "error");
    if (rep->status == 421) {
        const char *leader = jstr(rep->json, "leader_api");
        return fail("%s (asked %s; leader %s; gave up after %d redirects)",
                    msg ? msg : "not the leader", c->api, leader ? leader : "unknown",
                    MAX_REDIRECTS);
    }
    if (rep->status == 401)
        return fail("%s (asked %s%s%s)%s", msg ? msg : "unauthorized", c->api,
                    c->token[0] ? " with the token of " : "", c->token[0] ? c->token_from : "",
                    c->token[0] ? ""
                                : "; give the node's token file with --token-file PATH, "
                                  "$UNDERSTUDY_TOKEN_FILE or --config NODE.CONF");
    if (msg)
        return fail("%s", msg);
    /* Not our API's JSON: show the start of what came back. */
    char excerpt[200];
    snprintf(excerpt, sizeof excerpt, "%s", rep->body ? rep->body : "");
    excerpt[strcspn(excerpt, "\r\n")] = '\0';
    return fail("HTTP %d from the agent at %s%s%s", rep->status, c->api, excerpt[0] ? ": " : "",
                excerpt);
}

/* POST without a body and require a 2xx; otherwise explain why (and free the reply). 0 when
 * accepted, with `rep` to free by the caller. */
static int post_accepted(cli *c, const char *target, reply *rep)
{
    char t[1024];
    snprintf(t, sizeof t, "%s%s" BY_CLI, target, strchr(target, '?') ? "&" : "?");
    if (call(c, "POST", t, NULL, 0, rep) != 0)
        return -1;
    if (rep->status < 200 || rep->status > 299) {
        fail_reply(c, rep);
        reply_free(rep);
        return -1;
    }
    return 0;
}

static int unexpected(const cli *c, const char *what)
{
    return fail("unexpected reply from the agent at %s: %s", c->api, what);
}

static void print_body(const reply *rep)
{
    fwrite(rep->body, 1, rep->len, stdout);
    if (rep->len == 0 || rep->body[rep->len - 1] != '\n')
        fputc('\n', stdout);
}

/* Our own JSON output (for --json), formatted like the agent's; consumes j. */
static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(j);
}

/* ---- human output ---- */

#define C_RESET "\033[0m"
#define C_BOLD "\033[1m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"

typedef struct table {
    int ncols;
    int nrows;
    char **text;         /* nrows * ncols */
    const char **colour; /* nrows * ncols, NULL = plain */
} table;

static void table_cell(table *t, int row, int col, const char *colour, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void table_cell(table *t, int row, int col, const char *colour, const char *fmt, ...)
{
    if (row >= t->nrows) {
        size_t n = (size_t)(row + 1) * (size_t)t->ncols;
        t->text = realloc(t->text, n * sizeof *t->text);
        t->colour = realloc(t->colour, n * sizeof *t->colour);
        if (!t->text || !t->colour)
            abort();
        for (size_t i = (size_t)t->nrows * (size_t)t->ncols; i < n; i++) {
            t->text[i] = NULL;
            t->colour[i] = NULL;
        }
        t->nrows = row + 1;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    size_t i = (size_t)row * (size_t)t->ncols + (size_t)col;
    free(t->text[i]);
    t->text[i] = s;
    t->colour[i] = colour;
}

/* Cut `s` to at most `max` bytes, the last three "...", without splitting a UTF-8 sequence. */
static void cut_text(char *s, int max)
{
    if ((int)strlen(s) <= max || max < 4)
        return;
    int n = max - 3;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    memcpy(s + n, "...", 4);
}

/* Widths come from the plain text so that colour codes do not break the alignment. With
 * `max_width` (a terminal's), the last column is cut so that lines do not wrap, as long as that
 * leaves it a useful width. */
static void table_print(table *t, bool colour, int max_width)
{
    int width[16] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int col = 0; col < t->ncols; col++) {
            const char *s = t->text[r * t->ncols + col];
            int w = s ? (int)strlen(s) : 0;
            if (w > width[col])
                width[col] = w;
        }
    if (max_width > 0) {
        int before = 0;
        for (int col = 0; col < t->ncols - 1; col++)
            before += width[col] + 2;
        int room = max_width - before;
        if (room >= 8 && width[t->ncols - 1] > room)
            for (int r = 1; r < t->nrows; r++) {
                char *s = t->text[r * t->ncols + t->ncols - 1];
                if (s)
                    cut_text(s, room);
            }
    }
    for (int r = 0; r < t->nrows; r++) {
        for (int col = 0; col < t->ncols; col++) {
            const char *s = t->text[r * t->ncols + col];
            const char *cc = r == 0 ? C_BOLD : t->colour[r * t->ncols + col];
            bool last = col == t->ncols - 1;
            if (colour && cc)
                printf("%s%s%s", cc, s ? s : "", C_RESET);
            else
                fputs(s ? s : "", stdout);
            if (!last)
                printf("%*s", width[col] - (s ? (int)strlen(s) : 0) + 2, "");
        }
        fputc('\n', stdout);
    }
    for (int i = 0; i < t->nrows * t->ncols; i++)
        free(t->text[i]);
    free(t->text);
    free(t->colour);
}

static const char *node_state_colour(const char *state)
{
    if (!state)
        return NULL;
    if (strcmp(state, "alive") == 0)
        return C_GREEN;
    if (strcmp(state, "suspect") == 0)
        return C_YELLOW;
    if (strcmp(state, "dead") == 0)
        return C_RED;
    return C_DIM;
}

/* Wall-clock milliseconds as local time: "10:41:02", or with the date and milliseconds. */
static void local_time(int64_t ms, bool full, char *out, size_t size)
{
    if (ms <= 0) {
        snprintf(out, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, full ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
    if (full)
        snprintf(out, size, "%s.%03d", buf, (int)(ms % 1000));
    else
        snprintf(out, size, "%s", buf);
}

/* Self-healing in progress: a pending restart in place, an unhealthy active being stopped. */
static void print_service_notes(json_t *services)
{
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s)
    {
        const char *name = jstr(s, "name");
        json_t *restart = json_object_get(s, "restart");
        if (json_is_object(restart)) {
            char at[32];
            local_time(json_integer_value(json_object_get(restart, "at_ms")), false, at, sizeof at);
            printf("%s: restart in place on %s at %s (restart %" JSON_INTEGER_FORMAT
                   " in the window)\n",
                   name ? name : "?", jstr(restart, "node") ? jstr(restart, "node") : "?", at,
                   json_integer_value(json_object_get(restart, "restarts")));
        }
        if (json_is_true(json_object_get(s, "recover")))
            printf("%s: stopping the failed active instance to recover\n", name ? name : "?");
    }
}

static const char *health_colour(const char *h)
{
    if (!h)
        return NULL;
    if (strcmp(h, "healthy") == 0)
        return C_GREEN;
    if (strcmp(h, "unhealthy") == 0)
        return C_RED;
    return C_DIM;
}

/* One row per instance: role, health, last probe latency, pid, and why it is not well. */
static void print_instances(json_t *services, const cli *c)
{
    size_t rows = 0, i, k;
    json_t *s, *inst;
    json_array_foreach(services, i, s) rows += json_array_size(json_object_get(s, "instances"));
    if (rows == 0)
        return;
    const bool col = c->color;
    printf("\n%sINSTANCES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    table t = {.ncols = 7};
    const char *head[] = {"SERVICE", "NODE", "ROLE", "HEALTH", "CHECK", "PID", "NOTE"};
    for (int h = 0; h < 7; h++)
        table_cell(&t, 0, h, NULL, "%s", head[h]);
    int row = 1;
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "instances"), k, inst)
        {
            const char *role = jstr(inst, "role");
            const char *health = jstr(inst, "health");
            json_t *ms = json_object_get(inst, "check_ms");
            json_t *pid = json_object_get(inst, "pid");
            const char *cause = jstr(inst, "cause");
            json_int_t restarts = json_integer_value(json_object_get(inst, "restarts"));
            const char *rcause = jstr(inst, "restart_cause");
            table_cell(&t, row, 0, NULL, "%s", jstr(s, "name") ? jstr(s, "name") : "?");
            table_cell(&t, row, 1, NULL, "%s", jstr(inst, "node") ? jstr(inst, "node") : "?");
            table_cell(&t, row, 2,
                       role && strcmp(role, "active") == 0   ? C_GREEN
                       : role && strcmp(role, "failed") == 0 ? C_RED
                                                             : NULL,
                       "%s", role ? role : "?");
            table_cell(&t, row, 3, health_colour(health), "%s", health ? health : "-");
            if (json_is_integer(ms))
                table_cell(&t, row, 4, NULL, "%" JSON_INTEGER_FORMAT "ms", json_integer_value(ms));
            else
                table_cell(&t, row, 4, NULL, "-");
            if (json_is_integer(pid))
                table_cell(&t, row, 5, NULL, "%" JSON_INTEGER_FORMAT, json_integer_value(pid));
            else
                table_cell(&t, row, 5, NULL, "-");
            char note[1024] = "";
            if (cause)
                snprintf(note, sizeof note, "%s", cause);
            if (restarts > 0) {
                size_t used = strlen(note);
                snprintf(note + used, sizeof note - used,
                         "%srestarted %" JSON_INTEGER_FORMAT "x%s%s", used ? "; " : "", restarts,
                         rcause ? ": " : "", rcause ? rcause : "");
            }
            table_cell(&t, row, 6, NULL, "%s", note[0] ? note : "-");
            row++;
        }
    }
    table_print(&t, c->color, c->width);
}

/* Failure records (anti-flapping): counts and bans per service and node, only if there are any. */
static void print_failures(json_t *services, const cli *c)
{
    size_t i, k;
    json_t *s, *f;
    table t = {.ncols = 5};
    int row = 1;
    int64_t now = us_wall_ms();
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "failures"), k, f)
        {
            char last[32], until[32];
            local_time(json_integer_value(json_object_get(f, "last_ms")), false, last, sizeof last);
            json_int_t bu = json_integer_value(json_object_get(f, "banned_until_ms"));
            bool banned = json_is_true(json_object_get(f, "banned"));
            local_time(bu, false, until, sizeof until);
            table_cell(&t, row, 0, NULL, "%s", jstr(s, "name") ? jstr(s, "name") : "?");
            table_cell(&t, row, 1, NULL, "%s", jstr(f, "node") ? jstr(f, "node") : "?");
            table_cell(&t, row, 2, NULL, "%" JSON_INTEGER_FORMAT,
                       json_integer_value(json_object_get(f, "failures")));
            table_cell(&t, row, 3, NULL, "%s", last);
            if (banned)
                table_cell(&t, row, 4, C_RED, "until %s (%" JSON_INTEGER_FORMAT "s left)", until,
                           (bu - now + 999) / 1000 > 0 ? (bu - now + 999) / 1000 : 0);
            else
                table_cell(&t, row, 4, NULL, "no");
            row++;
        }
    }
    if (row == 1) {
        free(t.text);
        free(t.colour);
        return;
    }
    const bool col = c->color;
    printf("\n%sFAILURES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    const char *head[] = {"SERVICE", "NODE", "FAILURES", "LAST", "BANNED"};
    for (int h = 0; h < 5; h++)
        table_cell(&t, 0, h, NULL, "%s", head[h]);
    table_print(&t, c->color, c->width);
}

static json_t *find_named(json_t *arr, const char *key, const char *name);

static int print_status(const cli *c, json_t *st)
{
    json_t *cluster = json_object_get(st, "cluster");
    json_t *nodes = json_object_get(st, "nodes");
    json_t *services = json_object_get(st, "services");
    if (!json_is_object(cluster) || !json_is_array(nodes) || !json_is_array(services))
        return unexpected(c, "status without cluster, nodes and services");
    const bool col = c->color;
    const char *name = jstr(cluster, "name");
    const char *leader = jstr(cluster, "leader");
    bool quorum = json_is_true(json_object_get(cluster, "has_quorum"));
    printf("cluster %s%s%s  leader %s%s%s  term %" JSON_INTEGER_FORMAT "  quorum %s%s%s\n",
           col ? C_BOLD : "", name ? name : "?", col ? C_RESET : "", col && !leader ? C_RED : "",
           leader ? leader : "none", col && !leader ? C_RESET : "",
           json_integer_value(json_object_get(cluster, "term")),
           col ? (quorum ? C_GREEN : C_RED) : "", quorum ? "yes" : "no", col ? C_RESET : "");

    printf("\n%sNODES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    table t = {.ncols = 4};
    table_cell(&t, 0, 0, NULL, "NAME");
    table_cell(&t, 0, 1, NULL, "ADDRESS");
    table_cell(&t, 0, 2, NULL, "STATE");
    table_cell(&t, 0, 3, NULL, "VOTER");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        int row = (int)i + 1;
        const char *nname = jstr(n, "name");
        const char *state = jstr(n, "state");
        bool is_leader = leader && nname && strcmp(leader, nname) == 0;
        table_cell(&t, row, 0, NULL, "%s%s", nname ? nname : "?", is_leader ? " (leader)" : "");
        table_cell(&t, row, 1, NULL, "%s", jstr(n, "address") ? jstr(n, "address") : "-");
        bool drained = json_is_true(json_object_get(n, "drained"));
        bool leaving = json_is_true(json_object_get(n, "leaving"));
        table_cell(&t, row, 2, node_state_colour(state), "%s%s%s", state ? state : "?",
                   drained ? ", drained" : "",
                   leaving && !(state && strcmp(state, "left") == 0) ? ", leaving" : "");
        table_cell(&t, row, 3, NULL, "%s",
                   json_is_true(json_object_get(n, "voter")) ? "yes" : "no");
    }
    table_print(&t, c->color, c->width);

    printf("\n%sSERVICES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    if (json_array_size(services) == 0) {
        printf("(none; add some with `understudy apply FILE`)\n");
        return EXIT_OK;
    }
    t = (table){.ncols = 6};
    table_cell(&t, 0, 0, NULL, "SERVICE");
    table_cell(&t, 0, 1, NULL, "ACTIVE");
    table_cell(&t, 0, 2, NULL, "HEALTH");
    table_cell(&t, 0, 3, NULL, "EPOCH");
    table_cell(&t, 0, 4, NULL, "STANDBYS");
    table_cell(&t, 0, 5, NULL, "LAST CHANGE");
    json_t *s;
    json_array_foreach(services, i, s)
    {
        int row = (int)i + 1;
        const char *active = jstr(s, "active");
        const char *reason = jstr(s, "reason");
        bool paused = json_is_true(json_object_get(s, "paused"));
        table_cell(&t, row, 0, paused ? C_YELLOW : NULL, "%s%s",
                   jstr(s, "name") ? jstr(s, "name") : "?", paused ? " (paused)" : "");
        table_cell(&t, row, 1, active ? C_GREEN : C_RED, "%s", active ? active : "none");
        /* The active instance's health: "-" when there is none, nothing checks it, or the agent
         * does not say. */
        const char *health = NULL;
        json_t *checks = json_object_get(s, "checks");
        if (active && !(json_is_array(checks) && json_array_size(checks) == 0)) {
            json_t *ai = find_named(json_object_get(s, "instances"), "node", active);
            health = jstr(ai, "health");
        }
        table_cell(&t, row, 2, health_colour(health), "%s", health ? health : "-");
        table_cell(&t, row, 3, NULL, "%" JSON_INTEGER_FORMAT,
                   json_integer_value(json_object_get(s, "epoch")));
        /* Standbys, then instances that are down, so that a missing standby is visible. */
        char standbys[512] = "";
        bool degraded = false;
        for (int pass = 0; pass < 2; pass++) {
            size_t k;
            json_t *inst;
            json_array_foreach(json_object_get(s, "instances"), k, inst)
            {
                const char *node = jstr(inst, "node");
                const char *role = jstr(inst, "role");
                if (!node || !role || strcmp(role, "active") == 0)
                    continue;
                bool standby = strcmp(role, "standby") == 0;
                if (standby != (pass == 0))
                    continue;
                degraded |= !standby;
                size_t used = strlen(standbys);
                if (standby)
                    snprintf(standbys + used, sizeof standbys - used, "%s%s", used ? ", " : "",
                             node);
                else
                    snprintf(standbys + used, sizeof standbys - used, "%s%s (%s)", used ? ", " : "",
                             node, role);
            }
        }
        table_cell(&t, row, 4, degraded ? C_YELLOW : NULL, "%s", standbys[0] ? standbys : "-");
        table_cell(&t, row, 5, NULL, "%s", reason && reason[0] ? reason : "-");
    }
    table_print(&t, c->color, c->width);
    print_service_notes(services);
    print_instances(services, c);
    print_failures(services, c);
    return EXIT_OK;
}

/* ---- polling ---- */

static void add_endpoint(cli *c, const char *hp)
{
    if (!hp || !hostport_valid(hp) || c->n_endpoints >= MAX_ENDPOINTS)
        return;
    for (int i = 0; i < c->n_endpoints; i++)
        if (strcmp(c->endpoints[i], hp) == 0)
            return;
    snprintf(c->endpoints[c->n_endpoints++], HOSTPORT_MAX, "%s", hp);
}

static void learn_endpoints(cli *c, json_t *st)
{
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(st, "nodes"), i, n)
    {
        const char *state = jstr(n, "state");
        if (state && (strcmp(state, "alive") == 0 || strcmp(state, "suspect") == 0))
            add_endpoint(c, jstr(n, "api"));
    }
}

/* Fetch the status from the current agent; if it cannot answer, move on to another known one. */
static json_t *poll_status(cli *c, char *err, size_t errlen)
{
    reply rep;
    if (http_once(c, c->api, "GET", "/v1/status", NULL, 0, &rep, err, errlen) == 0) {
        if (rep.status == 200 && json_is_object(rep.json)) {
            json_t *st = json_incref(rep.json);
            reply_free(&rep);
            learn_endpoints(c, st);
            return st;
        }
        snprintf(err, errlen, "status: HTTP %d %s", rep.status,
                 jstr(rep.json, "error") ? jstr(rep.json, "error") : "");
        reply_free(&rep);
    }
    add_endpoint(c, c->api);
    for (int i = 0; i < c->n_endpoints; i++) {
        if (strcmp(c->endpoints[i], c->api) == 0) {
            memmove(c->api, c->endpoints[(i + 1) % c->n_endpoints], HOSTPORT_MAX);
            break;
        }
    }
    return NULL;
}

static json_t *find_named(json_t *arr, const char *key, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = jstr(e, key);
        if (v && strcmp(v, name) == 0)
            return e;
    }
    return NULL;
}

/* ---- commands ---- */

static int cmd_status(cli *c)
{
    reply rep;
    if (call(c, "GET", "/v1/status", NULL, 0, &rep) != 0)
        return EXIT_FAILED;
    int rc;
    if (rep.status != 200)
        rc = fail_reply(c, &rep);
    else if (c->json)
        rc = (print_body(&rep), EXIT_OK);
    else if (!json_is_object(rep.json))
        rc = unexpected(c, "status is not a JSON object");
    else
        rc = print_status(c, rep.json);
    reply_free(&rep);
    return rc;
}

static int read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            close(fd);
            return -ENOMEM;
        }
        if (got + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
            continue;
        }
        ssize_t n = read(fd, buf + got, cap - got - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int cmd_apply(cli *c, const char *file)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(file, &text, &len);
    if (rc != 0) {
        fprintf(stderr, "understudy: cannot read services file %s: %s\n", file, strerror(-rc));
        return EXIT_USAGE;
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char enc[512], target[600];
    url_encode(base, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/services?file=%s&" BY_CLI, enc);
    reply rep;
    if (call(c, "POST", target, text, len, &rep) != 0) {
        free(text);
        return EXIT_FAILED;
    }
    free(text);
    json_t *problems = json_object_get(rep.json, "problems");
    if (rep.status == 400 && json_is_array(problems)) {
        const char *msg = jstr(rep.json, "error");
        fprintf(stderr, "understudy: %s:\n", msg ? msg : "invalid services file");
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p) fprintf(stderr, "%s\n", json_string_value(p));
        rc = EXIT_FAILED;
    } else if (rep.status < 200 || rep.status > 299) {
        rc = fail_reply(c, &rep);
    } else if (c->json) {
        print_body(&rep);
        rc = EXIT_OK;
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
        rc = EXIT_OK;
    }
    reply_free(&rep);
    return rc;
}

static int cmd_switchover(cli *c, const char *service, const char *to)
{
    char enc_s[256], enc_to[256], target[600];
    url_encode(service, enc_s, sizeof enc_s);
    if (to) {
        url_encode(to, enc_to, sizeof enc_to);
        snprintf(target, sizeof target, "/v1/services/%s/switchover?to=%s", enc_s, enc_to);
    } else {
        snprintf(target, sizeof target, "/v1/services/%s/switchover", enc_s);
    }
    reply rep;
    if (post_accepted(c, target, &rep) != 0)
        return EXIT_FAILED;
    json_t *epoch_j = json_object_get(rep.json, "epoch");
    if (!json_is_integer(epoch_j)) {
        reply_free(&rep);
        return unexpected(c, "switchover accepted without an epoch");
    }
    json_int_t epoch = json_integer_value(epoch_j);
    char from[256];
    snprintf(from, sizeof from, "%s", jstr(rep.json, "from") ? jstr(rep.json, "from") : "none");
    reply_free(&rep);

    /* Done when the service has an active instance again under a newer epoch. */
    int64_t deadline = now_ms() + COMPLETION_WAIT_MS;
    char err[512] = "";
    char last_active[256] = "none";
    json_int_t last_epoch = epoch;
    for (;;) {
        json_t *st = poll_status(c, err, sizeof err);
        if (st) {
            json_t *svc = find_named(json_object_get(st, "services"), "name", service);
            if (!svc) {
                json_decref(st);
                return fail("service %s disappeared during the switchover", service);
            }
            const char *active = jstr(svc, "active");
            json_int_t e = json_integer_value(json_object_get(svc, "epoch"));
            snprintf(last_active, sizeof last_active, "%s", active ? active : "none");
            last_epoch = e;
            if (active && e > epoch) {
                int rc = EXIT_OK;
                if (c->json)
                    print_json(json_pack("{s:s, s:s, s:s, s:I}", "service", service, "from", from,
                                         "to", active, "epoch", e));
                else
                    printf("%s: %s -> %s (epoch %" JSON_INTEGER_FORMAT ")\n", service, from, active,
                           e);
                if (to && strcmp(active, to) != 0)
                    rc = fail("%s went to %s, not to the requested %s (see `understudy status`)",
                              service, active, to);
                json_decref(st);
                return rc;
            }
            json_decref(st);
        }
        if (now_ms() >= deadline)
            break;
        sleep_ms(POLL_INTERVAL_MS);
    }
    return fail(
        "switchover of %s not complete after %d s (active %s, epoch %" JSON_INTEGER_FORMAT ")%s%s",
        service, COMPLETION_WAIT_MS / 1000, last_active, last_epoch, err[0] ? "; " : "", err);
}

static int cmd_node_remove(cli *c, const char *node)
{
    char enc[256], target[400];
    url_encode(node, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/nodes/%s/remove", enc);
    reply rep;
    if (post_accepted(c, target, &rep) != 0)
        return EXIT_FAILED;
    reply_free(&rep);

    int64_t deadline = now_ms() + COMPLETION_WAIT_MS;
    char err[512] = "";
    char last_state[64] = "unknown";
    for (;;) {
        json_t *st = poll_status(c, err, sizeof err);
        if (st) {
            json_t *n = find_named(json_object_get(st, "nodes"), "name", node);
            const char *state = n ? jstr(n, "state") : "left";
            snprintf(last_state, sizeof last_state, "%s", state ? state : "unknown");
            json_decref(st);
            if (strcmp(last_state, "left") == 0) {
                if (c->json)
                    print_json(json_pack("{s:s, s:b}", "node", node, "removed", 1));
                else
                    printf("node %s removed\n", node);
                return EXIT_OK;
            }
        }
        if (now_ms() >= deadline)
            break;
        sleep_ms(POLL_INTERVAL_MS);
    }
    return fail("removal of node %s not complete after %d s (state %s)%s%s", node,
                COMPLETION_WAIT_MS / 1000, last_state, err[0] ? "; " : "", err);
}

/* POST a change to NAME (a service or a node) and say in one line what happened. 200 means it
 * was so already (nothing proposed), 202 that the change is committed. */
static int cmd_simple(cli *c, const char *kind, const char *name, const char *action,
                      const char *query, const char *done, const char *already)
{
    char enc[256], target[600];
    url_encode(name, enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/%s/%s/%s%s", kind, enc, action, query ? query : "");
    reply rep;
    if (post_accepted(c, target, &rep) != 0)
        return EXIT_FAILED;
    if (c->json)
        print_body(&rep);
    else
        printf("%s: %s\n", name, rep.status == 200 && already ? already : done);
    reply_free(&rep);
    return EXIT_OK;
}

static int cmd_reset(cli *c, const char *service, const char *node)
{
    char q[300] = "", enc[256], done[400];
    if (node) {
        url_encode(node, enc, sizeof enc);
        snprintf(q, sizeof q, "?node=%s", enc);
        snprintf(done, sizeof done, "failures on %s cleared", node);
    } else {
        snprintf(done, sizeof done, "failures cleared on every node");
    }
    return cmd_simple(c, "services", service, "reset", q, done, NULL);
}

/* ---- events ---- */

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

static const char *dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void print_event(const cli *c, json_t *e)
{
    if (c->json) {
        char *s = json_dumps(e, JSON_COMPACT);
        printf("%s\n", s ? s : "null");
        free(s);
        return;
    }
    char t[40], change[160];
    local_time(json_integer_value(json_object_get(e, "time_ms")), true, t, sizeof t);
    snprintf(change, sizeof change, "%s -> %s", dash(jstr(e, "from")), dash(jstr(e, "to")));
    printf("%-23s  %-10s  %-6s  %-7s  %-22s  %s\n", t, dash(jstr(e, "service")),
           dash(jstr(e, "node")), dash(jstr(e, "kind")), change, dash(jstr(e, "cause")));
}

static void print_event_header(const cli *c)
{
    if (!c->json)
        printf("%-23s  %-10s  %-6s  %-7s  %-22s  %s\n", "TIME", "SERVICE", "NODE", "KIND",
               "FROM -> TO", "CAUSE");
}

/* One page of events after `after`; appends them to `out` and moves `after` on. 0, or -1 with a
 * message in err (unreachable), or the HTTP status of a refusal (reply explained already when
 * `loud`). */
static int fetch_events(cli *c, const char *filter, uint64_t *after, json_t *out, bool loud,
                        bool *more, uint64_t *first, char *err, size_t errlen)
{
    char target[700];
    snprintf(target, sizeof target, "/v1/events?after=%llu&limit=%d%s", (unsigned long long)*after,
             EVENTS_PAGE, filter);
    reply rep;
    if (loud) {
        if (call(c, "GET", target, NULL, 0, &rep) != 0)
            return -1;
    } else if (http_once(c, c->api, "GET", target, NULL, 0, &rep, err, errlen) != 0) {
        return -1;
    }
    json_t *events = json_object_get(rep.json, "events");
    if (rep.status != 200 || !json_is_array(events)) {
        int status = rep.status;
        if (rep.status != 200)
            fail_reply(c, &rep);
        else
            unexpected(c, "events reply without an events list");
        reply_free(&rep);
        return status == 200 ? 500 : status;
    }
    *more = json_is_true(json_object_get(rep.json, "more"));
    *first = (uint64_t)json_integer_value(json_object_get(rep.json, "first"));
    uint64_t last = (uint64_t)json_integer_value(json_object_get(rep.json, "last"));
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
    reply_free(&rep);
    return 0;
}

/* Sleep `ms` unless a stop signal comes first. */
static void nap(int ms)
{
    for (int slept = 0; slept < ms && !stop_signal; slept += 25)
        sleep_ms(25);
}

static int cmd_events(cli *c, const char *service, const char *node, int limit, bool follow)
{
    char filter[300] = "", enc[256];
    if (service) {
        url_encode(service, enc, sizeof enc);
        snprintf(filter + strlen(filter), sizeof filter - strlen(filter), "&service=%s", enc);
    }
    if (node) {
        url_encode(node, enc, sizeof enc);
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
            return EXIT_FAILED;
        }
    }
    while (json_array_size(all) > (size_t)limit)
        json_array_remove(all, 0);
    if (!follow) {
        if (c->json) {
            print_json(all);
            return EXIT_OK;
        }
        print_event_header(c);
        size_t i;
        json_t *e;
        json_array_foreach(all, i, e) print_event(c, e);
        json_decref(all);
        return EXIT_OK;
    }

    print_event_header(c);
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e) print_event(c, e);
    json_decref(all);
    fflush(stdout);

    struct sigaction sa = {.sa_handler = on_stop_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int rc = EXIT_OK;
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
            int64_t t = now_ms();
            if (lost_since < 0)
                lost_since = t;
            if (t - lost_since >= FOLLOW_LOST_MS) {
                rc = fail("stopped following after %d s: %s", FOLLOW_LOST_MS / 1000, err);
                break;
            }
            continue;
        }
        if (r > 0) {
            json_decref(got);
            rc = EXIT_FAILED;
            break;
        }
        lost_since = -1;
        if (before > 0 && first > before + 1)
            fprintf(stderr,
                    "understudy: events %llu to %llu are no longer kept by the agent; some "
                    "may have been missed\n",
                    (unsigned long long)before + 1, (unsigned long long)first - 1);
        json_array_foreach(got, i, e) print_event(c, e);
        json_decref(got);
        fflush(stdout);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    stop_signal = 0;
    return rc;
}

static int cmd_version(cli *c)
{
    reply rep;
    char err[512];
    const char *agent = NULL;
    bool reached = http_once(c, c->api, "GET", "/v1/version", NULL, 0, &rep, err, sizeof err) == 0;
    if (reached && rep.status == 200)
        agent = jstr(rep.json, "version");
    if (c->json) {
        print_json(json_pack("{s:s, s:s?}", "client", US_VERSION, "agent", agent));
    } else {
        printf("understudy %s\n", US_VERSION);
        if (agent)
            printf("agent %s at %s\n", agent, c->api);
    }
    /* The client's own version is always known: an absent agent is only a note. */
    if (!reached)
        fprintf(stderr, "understudy: agent version unknown: %s\n", err);
    else if (!agent)
        fprintf(stderr, "understudy: agent version unknown: HTTP %d from %s\n", rep.status, c->api);
    if (reached)
        reply_free(&rep);
    return EXIT_OK;
}

/* ---- check-config ---- */

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
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:i}", "name", n->name, "address",
                     n->address, "api", n->api, "data_dir", n->data_dir, "cluster", n->cluster_name,
                     "members", members, "join", join, "profile", n->timing.name,
                     "autopilot_grace_ms", n->autopilot_grace_ms);
}

/* Validate a node config or a services file locally. Nothing is created, no agent is asked. */
static int cmd_check_config(const cli *c, const char *file)
{
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
        return fail("out of memory");
    }
    us_config_kind kind = US_CONFIG_UNKNOWN;
    int rc = read_file(file, &text, &len);
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
    if (c->json) {
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
        print_json(j);
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
    free(set);
    return ok ? EXIT_OK : EXIT_USAGE;
}

/* ---- usage ---- */

static const char usage_text[] =
    "usage: understudy [--api HOST:PORT] [--token-file PATH] [--json] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  status                          nodes, services, instance health, failures\n"
    "  events [--service S] [--node N] [--limit N] [--follow]\n"
    "                                  what happened and why (newest last)\n"
    "  apply FILE                      load a services file into the cluster\n"
    "  check-config FILE               validate a node config or services file\n"
    "  switchover SERVICE [--to NODE]  move the active role, wait until done\n"
    "  service pause|resume NAME       stop / resume managing a service\n"
    "  reset SERVICE [--node NODE]     clear failure counts and bans of a service\n"
    "  node drain|undrain NAME         move roles off a node / allow them again\n"
    "  node remove NAME                remove a node, wait until it has left\n"
    "  version                         client and agent versions\n"
    "  agent --config FILE             run the agent of this node\n"
    "  keygen [--token] FILE           a new cluster key, or API token file\n"
    "  help [COMMAND]                  this text, or a command's\n"
    "\n"
    "options (before or after the command):\n"
    "  --api HOST:PORT  agent to ask (default: $UNDERSTUDY_API, else " US_DEFAULT_API ")\n"
    "  --token-file PATH  the API token (default: $UNDERSTUDY_TOKEN_FILE, else the\n"
    "                   api_token_file of --config NODE.CONF, else of\n"
    "                   " DEFAULT_NODE_CONFIG " when readable)\n"
    "  --config NODE.CONF  the node config to take api_token_file (and api) from\n"
    "  --json           print JSON instead of tables\n"
    "  -h, --help       usage (of the command, when one is given)\n"
    "\n"
    "exit status: 0 success, 1 refused or failed (no agent too), 2 usage error\n"
    "(check-config: 2 when the file has problems)\n"
    "`understudy help COMMAND` shows a command's options, examples and exit status.\n";

#define OPT_API                                                                                    \
    "  --api HOST:PORT  agent to ask (default: $UNDERSTUDY_API, else node.api of the\n"            \
    "                   node config, else " US_DEFAULT_API ")\n"                                   \
    "  --token-file PATH  the API token file (default: $UNDERSTUDY_TOKEN_FILE, else\n"             \
    "                   the node config's api_token_file)\n"                                       \
    "  --config NODE.CONF  the node config (default " DEFAULT_NODE_CONFIG ")\n"
#define EXIT_STD                                                                                   \
    "  0  done\n"                                                                                  \
    "  1  the agent refused or failed, or could not be reached\n"                                  \
    "  2  usage error\n"

typedef struct command {
    const char *name;
    const char *usage;
    const char *help;     /* what it does */
    const char *options;  /* one per line, indented */
    const char *examples; /* one per line, indented */
    const char *exits;    /* exit status, one per line, indented */
} command;

static const command commands[] = {
    {"status", "understudy status [--json]",
     "Show the cluster (leader, term, quorum), its nodes (drained ones marked), its\n"
     "services (paused ones marked; the active instance's health), every instance's\n"
     "role and health (last probe latency, why it failed), and the failure counts\n"
     "and bans that keep a service off a node.\n"
     "Colour only on a terminal, and never when NO_COLOR is set. On a terminal, a\n"
     "table's last column is cut to the terminal's width.\n",
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy status\n"
     "  understudy --api 10.0.0.2:7201 status --json\n",
     EXIT_STD},
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
     "  2  usage error\n"},
    {"apply", "understudy apply FILE",
     "Send a services file to the cluster; services missing from it are removed.\n"
     "Problems in the file are listed as FILE:LINE: message, and nothing changes.\n",
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy apply /etc/understudy/services.ini\n"
     "  understudy check-config services.ini && understudy apply services.ini\n",
     "  0  applied\n"
     "  1  the file has problems, or the agent refused or could not be reached\n"
     "  2  usage error, or the file cannot be read\n"},
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
     "     error\n"},
    {"switchover", "understudy switchover SERVICE [--to NODE]",
     "Move SERVICE's active role (to NODE, or to the best standby) and wait up to 30\n"
     "s until it is active again under a new epoch.\n",
     "  --to NODE        the node to move it to (default: the best standby)\n"
     "  --json           {\"service\", \"from\", \"to\", \"epoch\"} when done\n" OPT_API,
     "  understudy switchover web\n"
     "  understudy switchover web --to n2\n",
     "  0  done (with --to: moved to NODE)\n"
     "  1  refused, not done within 30 s, moved elsewhere than NODE, or the agent\n"
     "     could not be reached\n"
     "  2  usage error\n"},
    {"service", "understudy service pause|resume NAME",
     "pause: stop deciding for service NAME. Its processes keep running as they are;\n"
     "failures are not acted on and no role moves until it is resumed.\n"
     "resume: manage it again.\n",
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy service pause db\n"
     "  understudy service resume db\n",
     EXIT_STD},
    {"reset", "understudy reset SERVICE [--node NODE]",
     "Clear SERVICE's failure counts and bans (on NODE only, or on every node) and\n"
     "its count of restarts in place, so that banned nodes may take its roles again.\n",
     "  --node NODE      only the records of NODE\n"
     "  --json           the agent's JSON reply as is\n" OPT_API,
     "  understudy reset web\n"
     "  understudy reset web --node n3\n",
     EXIT_STD},
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
     EXIT_STD},
    {"version", "understudy version [--json]",
     "Print the client's version and, if it answers, the agent's.\n",
     "  --json           {\"client\", \"agent\"} (agent null when unknown)\n" OPT_API,
     "  understudy version\n",
     "  0  always (an agent that does not answer is a note on stderr)\n"
     "  2  usage error\n"},
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
     "  2  usage error, or the config has problems (listed as FILE:LINE: ...)\n"},
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
     "  2  usage error\n"},
    {"help", "understudy help [COMMAND]",
     "Print the overview, or a command's usage, options, examples and exit status.\n"
     "`understudy COMMAND --help` does the same.\n",
     NULL, "  understudy help switchover\n",
     "  0  printed\n"
     "  2  unknown command\n"},
};

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* The word of `words` (NULL-terminated) that `typed` most likely meant, or NULL. */
static const char *nearest(const char *typed, const char *const *words)
{
    size_t n = 0;
    while (words[n])
        n++;
    return us_suggest(typed, words, n);
}

static const char *nearest_command(const char *typed)
{
    const char *names[sizeof commands / sizeof commands[0] + 1];
    size_t n = 0;
    for (; n < sizeof commands / sizeof commands[0]; n++)
        names[n] = commands[n].name;
    names[n] = NULL;
    return nearest(typed, names);
}

/* " (did you mean \"X\"?)" or "". */
static const char *hint(char *buf, size_t size, const char *match)
{
    if (!match)
        return "";
    snprintf(buf, size, " (did you mean \"%s\"?)", match);
    return buf;
}

static int usage_error(const command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("understudy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "usage: %s\n", cmd->usage);
    else
        fputs("run `understudy help` for usage\n", stderr);
    return EXIT_USAGE;
}

static void print_command_help(const command *cmd, FILE *out)
{
    fprintf(out, "usage: %s\n\n%s", cmd->usage, cmd->help);
    if (cmd->options)
        fprintf(out, "\noptions:\n%s", cmd->options);
    if (cmd->examples)
        fprintf(out, "\nexamples:\n%s", cmd->examples);
    fprintf(out, "\nexit status:\n%s", cmd->exits);
}

int us_cli_help(const char *name, FILE *out)
{
    const command *cmd = name ? find_command(name) : NULL;
    if (name && !cmd)
        return -1;
    if (cmd)
        print_command_help(cmd, out);
    else
        fputs(usage_text, out);
    return 0;
}

/* ---- main ---- */

#define MAX_ARGS 8

/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 with *val (NULL when the value is missing),
 * 0 if argv[*i] is another option. */
static int value_option(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return 0;
    *val = a[n] == '=' ? a + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    return 1;
}

/* Positional arguments: exactly `want` (the command word included), naming the missing one. */
static bool args_exactly(const command *cmd, int nargs, const char **args, int want,
                         const char *missing, int *rc)
{
    if (nargs == want)
        return true;
    *rc = nargs < want ? usage_error(cmd, "missing %s", missing)
                       : usage_error(cmd, "unexpected argument \"%s\"", args[want]);
    return false;
}

/* ---- the API token ---- */

typedef struct node_peek {
    char token_file[PATH_MAX];
    char api[HOSTPORT_MAX];
    char tls_cert[PATH_MAX];
} node_peek;

static int peek_cb(void *user, const char *section, const char *key, const char *value, int line)
{
    (void)line;
    node_peek *p = user;
    if (!key || strcmp(section, "node") != 0)
        return 0;
    if (strcmp(key, "api_token_file") == 0)
        snprintf(p->token_file, sizeof p->token_file, "%s", value);
    else if (strcmp(key, "api") == 0)
        snprintf(p->api, sizeof p->api, "%s", value);
    else if (strcmp(key, "api_tls_cert") == 0)
        snprintf(p->tls_cert, sizeof p->tls_cert, "%s", value);
    return 0;
}

/* Find the token: --token-file, else $UNDERSTUDY_TOKEN_FILE, else the api_token_file of the node
 * config (--config, else /etc/understudy/node.conf when readable), whose api also becomes the
 * default agent address. 0 (maybe without a token), or EXIT_USAGE after saying why. */
static int find_token(cli *c, const char *token_file, const char *config, char *api_out,
                      size_t api_size)
{
    const char *from = "--token-file";
    if (!token_file && getenv("UNDERSTUDY_TOKEN_FILE") && getenv("UNDERSTUDY_TOKEN_FILE")[0]) {
        token_file = getenv("UNDERSTUDY_TOKEN_FILE");
        from = "$UNDERSTUDY_TOKEN_FILE";
    }
    node_peek peek = {0};
    char from_buf[PATH_MAX + 64];
    bool explicit_config = config != NULL;
    if (!config && access(DEFAULT_NODE_CONFIG, R_OK) == 0)
        config = DEFAULT_NODE_CONFIG;
    if (config) {
        char *text = NULL;
        size_t len = 0;
        int rc = read_file(config, &text, &len);
        if (rc != 0 && explicit_config) {
            fprintf(stderr, "understudy: cannot read node config %s: %s\n", config, strerror(-rc));
            return EXIT_USAGE;
        }
        if (rc == 0) {
            us_errors *e = calloc(1, sizeof *e);
            if (e)
                us_ini_parse(text, len, peek_cb, &peek, e, config);
            free(e);
            free(text);
        }
        /* A node serving https: its certificate is what the CLI checks it against, unless
         * --cacert says otherwise. */
        if (peek.tls_cert[0] && !c->cacert[0]) {
            c->tls = true;
            snprintf(c->cacert, sizeof c->cacert, "%s", peek.tls_cert);
        }
        if (peek.api[0]) {
            /* An agent listening on every address is reached on loopback. */
            char *colon = strrchr(peek.api, ':');
            if (colon && strncmp(peek.api, "0.0.0.0:", 8) == 0)
                snprintf(api_out, api_size, "127.0.0.1%s", colon);
            else
                snprintf(api_out, api_size, "%s", peek.api);
        }
        if (!token_file && peek.token_file[0]) {
            token_file = peek.token_file;
            snprintf(from_buf, sizeof from_buf, "node.api_token_file of %s", config);
            from = from_buf;
        } else if (!token_file && explicit_config) {
            fprintf(stderr, "understudy: %s has no [node] api_token_file\n", config);
            return EXIT_USAGE;
        }
    }
    if (!token_file)
        return 0;
    char err[PATH_MAX + 256];
    if (us_token_first(token_file, c->token, sizeof c->token, err, sizeof err) != 0) {
        fprintf(stderr, "understudy: API token (%s): %s\n", from, err);
        return EXIT_USAGE;
    }
    snprintf(c->token_from, sizeof c->token_from, "%s", token_file);
    return 0;
}

/* Columns of the terminal on stdout (80 when it does not say), 0 when stdout is no terminal. */
static int terminal_width(void)
{
    if (!isatty(STDOUT_FILENO))
        return 0;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

static int run(int argc, char **argv)
{
    cli *c = calloc(1, sizeof *c);
    if (!c)
        return fail("out of memory");
    const char *api = NULL, *token_file = NULL, *config = NULL, *cacert = NULL;
    char config_api[HOSTPORT_MAX] = "";
    /* Command options: --to (switchover), --service (events), --node (events, reset),
     * --limit and --follow (events). */
    const char *to = NULL, *service = NULL, *node = NULL, *limit_s = NULL;
    bool follow = false;
    bool help = false;
    const char *args[MAX_ARGS];
    int nargs = 0;
    int rc = EXIT_OK;
    bool opts_done = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (opts_done || a[0] != '-' || a[1] == '\0') {
            if (nargs == MAX_ARGS) {
                rc = usage_error(nargs ? find_command(args[0]) : NULL, "too many arguments");
                goto out;
            }
            args[nargs++] = a;
        } else if (strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (strcmp(a, "--json") == 0) {
            c->json = true;
        } else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0) {
            follow = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help = true;
        } else if (value_option(argc, argv, &i, "--api", &val)) {
            if (!val) {
                rc = usage_error(NULL, "--api needs a value: --api HOST:PORT");
                goto out;
            }
            api = val;
        } else if (value_option(argc, argv, &i, "--token-file", &val)) {
            if (!val || !val[0]) {
                rc = usage_error(NULL, "--token-file needs a value: --token-file PATH");
                goto out;
            }
            token_file = val;
        } else if (value_option(argc, argv, &i, "--cacert", &val)) {
            if (!val || !val[0]) {
                rc = usage_error(NULL, "--cacert needs a value: --cacert PATH");
                goto out;
            }
            cacert = val;
        } else if (value_option(argc, argv, &i, "--config", &val)) {
            if (!val || !val[0]) {
                rc = usage_error(NULL, "--config needs a value: --config NODE.CONF");
                goto out;
            }
            config = val;
        } else if (value_option(argc, argv, &i, "--to", &val)) {
            if (!val) {
                rc = usage_error(find_command("switchover"), "--to needs a node name");
                goto out;
            }
            to = val;
        } else if (value_option(argc, argv, &i, "--service", &val)) {
            if (!val || !val[0]) {
                rc = usage_error(find_command("events"), "--service needs a service name");
                goto out;
            }
            service = val;
        } else if (value_option(argc, argv, &i, "--node", &val)) {
            if (!val || !val[0]) {
                rc = usage_error(nargs ? find_command(args[0]) : NULL, "--node needs a node name");
                goto out;
            }
            node = val;
        } else if (value_option(argc, argv, &i, "--limit", &val)) {
            if (!val) {
                rc = usage_error(find_command("events"), "--limit needs a number from 1 to %d",
                                 EVENTS_PAGE);
                goto out;
            }
            limit_s = val;
        } else {
            static const char *const options[] = {
                "--api",     "--json",  "--follow",     "--help",   "--to",     "--node",
                "--service", "--limit", "--token-file", "--config", "--cacert", NULL};
            char typed[64], h[96];
            snprintf(typed, sizeof typed, "%.*s", (int)strcspn(a, "="), a);
            rc = usage_error(nargs ? find_command(args[0]) : NULL, "unknown option %s%s", a,
                             hint(h, sizeof h, nearest(typed, options)));
            goto out;
        }
    }

    if (nargs == 0) {
        if (help) {
            fputs(usage_text, stdout);
            goto out;
        }
        fputs(usage_text, stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    const char *name = args[0];
    const command *cmd = find_command(name);
    char h[96];
    if (!cmd) {
        rc = usage_error(NULL, "unknown command \"%s\"%s", name,
                         hint(h, sizeof h, nearest_command(name)));
        goto out;
    }
    if (help) {
        print_command_help(cmd, stdout);
        goto out;
    }
    if (strcmp(name, "help") == 0) {
        /* "help node drain" is node's help: the subcommand is only a reminder. */
        const command *about = nargs > 1 ? find_command(args[1]) : NULL;
        if (nargs == 1)
            fputs(usage_text, stdout);
        else if (about && nargs <= 3)
            print_command_help(about, stdout);
        else if (!about)
            rc = usage_error(cmd, "unknown command \"%s\"%s", args[1],
                             hint(h, sizeof h, nearest_command(args[1])));
        else
            rc = usage_error(cmd, "unexpected argument \"%s\"", args[3]);
        goto out;
    }
    if (strcmp(name, "agent") == 0 || strcmp(name, "keygen") == 0) {
        /* main() runs the agent and keygen before the client sees the arguments. */
        rc = usage_error(cmd, "the agent is not part of the client");
        goto out;
    }
    bool events = strcmp(name, "events") == 0;
    if (to && strcmp(name, "switchover") != 0) {
        rc = usage_error(cmd, "--to only applies to switchover");
        goto out;
    }
    if ((service || limit_s || follow) && !events) {
        rc = usage_error(cmd, "%s only applies to events",
                         service   ? "--service"
                         : limit_s ? "--limit"
                                   : "--follow");
        goto out;
    }
    if (node && !events && strcmp(name, "reset") != 0) {
        rc = usage_error(cmd, "--node only applies to events and reset");
        goto out;
    }
    int limit = 100;
    if (limit_s) {
        char *end;
        long v = strtol(limit_s, &end, 10);
        if (!limit_s[0] || *end || v < 1 || v > EVENTS_PAGE) {
            rc = usage_error(cmd, "--limit needs a number from 1 to %d, got \"%s\"", EVENTS_PAGE,
                             limit_s);
            goto out;
        }
        limit = (int)v;
    }
    /* Subcommands and their arguments are checked before any agent is asked. */
    const char *sub = NULL;
    if (strcmp(name, "node") == 0 || strcmp(name, "service") == 0) {
        bool is_node = name[0] == 'n';
        sub = nargs > 1 ? args[1] : NULL;
        bool known = sub && (is_node ? strcmp(sub, "remove") == 0 || strcmp(sub, "drain") == 0 ||
                                           strcmp(sub, "undrain") == 0
                                     : strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0);
        if (!known) {
            static const char *const node_subs[] = {"remove", "drain", "undrain", NULL};
            static const char *const svc_subs[] = {"pause", "resume", NULL};
            const char *subs = is_node ? "remove, drain, undrain" : "pause, resume";
            const char *near = sub ? nearest(sub, is_node ? node_subs : svc_subs) : NULL;
            rc = sub ? usage_error(cmd, "unknown %s subcommand \"%s\" (%s)%s", name, sub, subs,
                                   hint(h, sizeof h, near))
                     : usage_error(cmd, "missing subcommand (%s)", subs);
            goto out;
        }
        if (!args_exactly(cmd, nargs, args, 3, "NAME", &rc))
            goto out;
    } else if (strcmp(name, "status") == 0 || strcmp(name, "version") == 0 || events) {
        if (!args_exactly(cmd, nargs, args, 1, "", &rc))
            goto out;
    } else if (strcmp(name, "apply") == 0 || strcmp(name, "check-config") == 0) {
        if (!args_exactly(cmd, nargs, args, 2, "FILE", &rc))
            goto out;
    } else { /* switchover, reset */
        if (!args_exactly(cmd, nargs, args, 2, "SERVICE", &rc))
            goto out;
        if (to && !to[0]) {
            rc = usage_error(cmd, "--to needs a node name");
            goto out;
        }
    }

    c->color = isatty(STDOUT_FILENO) && !(getenv("NO_COLOR") && getenv("NO_COLOR")[0]);
    c->width = terminal_width();
    if (strcmp(name, "check-config") == 0) { /* local: no agent, so no address to check */
        rc = cmd_check_config(c, args[1]);
        goto out;
    }
    if (cacert) {
        if (access(cacert, R_OK) != 0) {
            rc = usage_error(NULL, "--cacert %s: %s", cacert, strerror(errno));
            goto out;
        }
        c->tls = true;
        snprintf(c->cacert, sizeof c->cacert, "%s", cacert);
    }
    rc = find_token(c, token_file, config, config_api, sizeof config_api);
    if (rc != 0)
        goto out;
    if (!api)
        api = getenv("UNDERSTUDY_API");
    if ((!api || !api[0]) && config_api[0])
        api = config_api;
    if (!api || !api[0])
        api = US_DEFAULT_API;
    /* "https://HOST:PORT" (or "http://"): the scheme, then the address. */
    if (strncmp(api, "https://", 8) == 0) {
        c->tls = true;
        api += 8;
    } else if (strncmp(api, "http://", 7) == 0) {
        c->tls = false;
        api += 7;
    }
    if (!hostport_valid(api)) {
        rc = usage_error(NULL, "invalid agent address \"%s\" (from %s): expected HOST:PORT", api,
                         api == getenv("UNDERSTUDY_API") ? "$UNDERSTUDY_API"
                         : api == config_api             ? "node.api of the node config"
                                                         : "--api");
        goto out;
    }
    snprintf(c->api, sizeof c->api, "%s", api);
    memcpy(c->origin, c->api, sizeof c->origin);

    if (strcmp(name, "status") == 0)
        rc = cmd_status(c);
    else if (strcmp(name, "version") == 0)
        rc = cmd_version(c);
    else if (events)
        rc = cmd_events(c, service, node, limit, follow);
    else if (strcmp(name, "apply") == 0)
        rc = cmd_apply(c, args[1]);
    else if (strcmp(name, "switchover") == 0)
        rc = cmd_switchover(c, args[1], to);
    else if (strcmp(name, "reset") == 0)
        rc = cmd_reset(c, args[1], node);
    else if (strcmp(name, "service") == 0)
        rc = strcmp(sub, "pause") == 0
                 ? cmd_simple(c, "services", args[2], "pause", NULL, "paused", "already paused")
                 : cmd_simple(c, "services", args[2], "resume", NULL, "resumed",
                              "not paused (nothing to do)");
    else if (strcmp(sub, "remove") == 0)
        rc = cmd_node_remove(c, args[2]);
    else if (strcmp(sub, "drain") == 0)
        rc = cmd_simple(c, "nodes", args[2], "drain", NULL,
                        "drained (active roles move off it by switchover)", "already drained");
    else
        rc = cmd_simple(c, "nodes", args[2], "undrain", NULL, "undrained (may take roles again)",
                        "not drained (nothing to do)");
out:
    free(c);
    return rc;
}

int us_cli_main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(argc, argv);
    curl_global_cleanup();
    fflush(stdout);
    fflush(stderr);
    return rc;
}
