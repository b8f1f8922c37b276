/* http.c — see http.h. */
#include "cli/http.h"
#include "cli/render.h"
#include "config/ini.h"
#include "lib/hostport.h"
#include "lib/clock.h"
#include "lib/errors.h"
#include "lib/file.h"
#include "lib/version.h"
#include "net/api_guard.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000
#define REPLY_LIMIT (64u * 1024 * 1024)
#define MAX_REDIRECTS 3
#define NO_LEADER_WAIT_MS 5000
#define NO_LEADER_RETRY_MS 200

/* libcurl is opened when the CLI starts, not linked: the agent is the same program, and libcurl
 * with its chain (krb5, ldap, ssh2, rtmp, libcrypto, ...) cost every agent ~2.8 MB of resident
 * memory it never uses (systemd opens its optional libraries the same way). The header still
 * gives the types and constants; the calls go through this table. */
static struct {
    void *lib;
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} C;

static const struct {
    const char *name;
    size_t off;
} CURL_SYMS[] = {
#define SYM(f, name)                                                                               \
    {                                                                                              \
        name, offsetof(__typeof__(C), f)                                                           \
    }
    SYM(global_init, "curl_global_init"),   SYM(global_cleanup, "curl_global_cleanup"),
    SYM(easy_init, "curl_easy_init"),       SYM(easy_setopt, "curl_easy_setopt"),
    SYM(easy_perform, "curl_easy_perform"), SYM(easy_getinfo, "curl_easy_getinfo"),
    SYM(easy_cleanup, "curl_easy_cleanup"), SYM(easy_strerror, "curl_easy_strerror"),
    SYM(slist_append, "curl_slist_append"), SYM(slist_free_all, "curl_slist_free_all"),
#undef SYM
};

/* The libraries tried, in order: the one the program was built with (Debian's libcurl3-gnutls),
 * then the OpenSSL flavour (libcurl4). */
static const char *const CURL_LIBS[] = {"libcurl-gnutls.so.4", "libcurl.so.4"};
static char curl_error[512];

static bool curl_load(void)
{
    if (C.lib)
        return true;
    const char *why = "";
    for (size_t i = 0; i < sizeof CURL_LIBS / sizeof CURL_LIBS[0] && !C.lib; i++) {
        C.lib = dlopen(CURL_LIBS[i], RTLD_NOW | RTLD_LOCAL);
        if (!C.lib)
            why = dlerror();
    }
    if (!C.lib) {
        snprintf(curl_error, sizeof curl_error,
                 "cannot load libcurl, which the command line client needs (Debian package "
                 "libcurl3-gnutls): %s",
                 why);
        return false;
    }
    for (size_t i = 0; i < sizeof CURL_SYMS / sizeof CURL_SYMS[0]; i++) {
        void *f = dlsym(C.lib, CURL_SYMS[i].name);
        if (!f) {
            snprintf(curl_error, sizeof curl_error, "libcurl lacks %s: %s", CURL_SYMS[i].name,
                     dlerror());
            dlclose(C.lib);
            memset(&C, 0, sizeof C);
            return false;
        }
        memcpy((char *)&C + CURL_SYMS[i].off, &f, sizeof f);
    }
    if (C.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(curl_error, sizeof curl_error, "libcurl failed to start");
        dlclose(C.lib);
        memset(&C, 0, sizeof C);
        return false;
    }
    return true;
}

void us_http_init(void)
{
    curl_load(); /* a failure is reported by the first request */
}

void us_http_cleanup(void)
{
    if (!C.lib)
        return;
    C.global_cleanup();
    dlclose(C.lib);
    memset(&C, 0, sizeof C);
}

void us_reply_free(us_reply *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
void us_http_url_encode(const char *s, char *out, size_t size)
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
bool us_http_hostport_valid(const char *hp)
{
    char host[US_HTTP_HOSTPORT_MAX], port[8];
    return strlen(hp) < US_HTTP_HOSTPORT_MAX &&
           us_split_hostport(hp, host, sizeof host, port, sizeof port) == 0;
}

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
int us_http_once(const us_http *h, const char *hp, const char *method, const char *target,
                 const char *body, size_t blen, us_reply *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    char host[US_HTTP_HOSTPORT_MAX], port[8];
    if (us_split_hostport(hp, host, sizeof host, port, sizeof port) != 0) {
        snprintf(err, errlen, "invalid agent address \"%s\": expected HOST:PORT", hp);
        return -1;
    }
    if (!curl_load()) {
        snprintf(err, errlen, "%s", curl_error);
        return -1;
    }
    CURL *easy = C.easy_init();
    if (!easy) {
        snprintf(err, errlen, "cannot start an HTTP client");
        return -1;
    }
    char url[US_HTTP_HOSTPORT_MAX + 1200], ua[64], auth[US_TOKEN_MAX + 32], ctype[96];
    snprintf(url, sizeof url, "%s://%s%s", h->tls ? "https" : "http", hp, target);
    snprintf(ua, sizeof ua, "User-Agent: understudy/%s", US_VERSION);
    struct curl_slist *hdr = C.slist_append(NULL, "Accept: application/json");
    hdr = C.slist_append(hdr, ua);
    hdr = C.slist_append(hdr, "Expect:"); /* no 100-continue round trip */
    const char *ct = content_type_of(method, target);
    if (ct) {
        snprintf(ctype, sizeof ctype, "Content-Type: %s", ct);
        hdr = C.slist_append(hdr, ctype);
    }
    if (h->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->token);
        hdr = C.slist_append(hdr, auth);
    }
    char cerr[CURL_ERROR_SIZE] = "";
    sink k = {0};
    C.easy_setopt(easy, CURLOPT_URL, url);
    C.easy_setopt(easy, CURLOPT_NOPROXY, "*");
    C.easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    C.easy_setopt(easy, CURLOPT_HTTPHEADER, hdr);
    C.easy_setopt(easy, CURLOPT_ERRORBUFFER, cerr);
    C.easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)IO_TIMEOUT_MS);
    /* No byte for 5 s: the agent is stuck. */
    C.easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    C.easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, (long)(IO_TIMEOUT_MS / 1000));
    C.easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
    C.easy_setopt(easy, CURLOPT_WRITEDATA, &k);
    if (strcmp(method, "GET") == 0) {
        C.easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else {
        C.easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
        C.easy_setopt(easy, CURLOPT_POSTFIELDS, body ? body : "");
        C.easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    if (h->tls && h->cacert[0])
        C.easy_setopt(easy, CURLOPT_CAINFO, h->cacert);
    CURLcode res = C.easy_perform(easy);
    long status = 0, oserr = 0;
    C.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    C.easy_getinfo(easy, CURLINFO_OS_ERRNO, &oserr);
    C.slist_free_all(hdr);
    C.easy_cleanup(easy);
    sodium_memzero(auth, sizeof auth);
    const char *why = cerr[0] ? cerr : C.easy_strerror(res);
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
    } else if (res == CURLE_GOT_NOTHING && !h->tls) {
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
int us_http_call(us_http *h, const char *method, const char *target, const char *body, size_t blen,
                 us_reply *rep)
{
    int hops = 0;
    int64_t no_leader_since = -1;
    char err[512];
    for (;;) {
        if (us_http_once(h, h->api, method, target, body, blen, rep, err, sizeof err) != 0) {
            /* A leader we were sent to may have just died: ask the named agent again, for as
             * long as we would wait for an election. */
            bool redirected = strcmp(h->api, h->origin) != 0;
            if (redirected && no_leader_since < 0)
                no_leader_since = us_now_ms();
            if (redirected && us_now_ms() - no_leader_since < NO_LEADER_WAIT_MS) {
                memcpy(h->api, h->origin, sizeof h->api);
                hops = 0;
                us_sleep_ms(NO_LEADER_RETRY_MS);
                continue;
            }
            us_render_fail("%s", err);
            return -1;
        }
        if (rep->status == 421) {
            const char *leader = us_render_str(rep->json, "leader_api");
            if (leader && us_http_hostport_valid(leader) && hops < MAX_REDIRECTS) {
                snprintf(h->api, sizeof h->api, "%s", leader);
                hops++;
                us_reply_free(rep);
                continue;
            }
            return 0;
        }
        const char *msg = us_render_str(rep->json, "error");
        if (rep->status == 503 && ((msg && strcmp(msg, "no leader") == 0) ||
                                   json_is_true(json_object_get(rep->json, "retry")))) {
            /* An election is running (or a new leader is not caught up yet): the request was not
             * executed, so repeat it. Other 503s (e.g. a failed commit) may have taken effect and
             * are reported instead. */
            int64_t t = us_now_ms();
            if (no_leader_since < 0)
                no_leader_since = t;
            if (t - no_leader_since < NO_LEADER_WAIT_MS) {
                us_reply_free(rep);
                hops = 0;
                us_sleep_ms(NO_LEADER_RETRY_MS);
                continue;
            }
        }
        return 0;
    }
}

/* Explain a non-2xx reply. Always returns US_EXIT_FAILED. */
int us_http_fail_reply(const us_http *h, const us_reply *rep)
{
    const char *msg = us_render_str(rep->json, "error");
    if (rep->status == 421) {
        const char *leader = us_render_str(rep->json, "leader_api");
        return us_render_fail("%s (asked %s; leader %s; gave up after %d redirects)",
                              msg ? msg : "not the leader", h->api, leader ? leader : "unknown",
                              MAX_REDIRECTS);
    }
    if (rep->status == 401)
        return us_render_fail("%s (asked %s%s%s)%s", msg ? msg : "unauthorized", h->api,
                              h->token[0] ? " with the token of " : "",
                              h->token[0] ? h->token_from : "",
                              h->token[0] ? ""
                                          : "; give the node's token file with --token-file PATH, "
                                            "$UNDERSTUDY_TOKEN_FILE or --config NODE.CONF");
    if (msg)
        return us_render_fail("%s", msg);
    /* Not our API's JSON: show the start of what came back. */
    char excerpt[200];
    snprintf(excerpt, sizeof excerpt, "%s", rep->body ? rep->body : "");
    excerpt[strcspn(excerpt, "\r\n")] = '\0';
    return us_render_fail("HTTP %d from the agent at %s%s%s", rep->status, h->api,
                          excerpt[0] ? ": " : "", excerpt);
}

/* POST without a body and require a 2xx; otherwise explain why (and free the reply). 0 when
 * accepted, with `rep` to free by the caller. */
int us_http_post(us_http *h, const char *target, us_reply *rep)
{
    char t[1024];
    snprintf(t, sizeof t, "%s%s" US_HTTP_BY, target, strchr(target, '?') ? "&" : "?");
    if (us_http_call(h, "POST", t, NULL, 0, rep) != 0)
        return -1;
    if (rep->status < 200 || rep->status > 299) {
        us_http_fail_reply(h, rep);
        us_reply_free(rep);
        return -1;
    }
    return 0;
}

static void add_endpoint(us_http *h, const char *hp)
{
    if (!hp || !us_http_hostport_valid(hp) || h->n_endpoints >= US_HTTP_MAX_ENDPOINTS)
        return;
    for (int i = 0; i < h->n_endpoints; i++)
        if (strcmp(h->endpoints[i], hp) == 0)
            return;
    snprintf(h->endpoints[h->n_endpoints++], US_HTTP_HOSTPORT_MAX, "%s", hp);
}

void us_http_learn_endpoints(us_http *h, json_t *st)
{
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(st, "nodes"), i, n)
    {
        const char *state = us_render_str(n, "state");
        if (state && (strcmp(state, "alive") == 0 || strcmp(state, "suspect") == 0))
            add_endpoint(h, us_render_str(n, "api"));
    }
}

/* Fetch the status from the current agent; if it cannot answer, move on to another known one. */
json_t *us_http_poll_status(us_http *h, char *err, size_t errlen)
{
    us_reply rep;
    if (us_http_once(h, h->api, "GET", "/v1/status", NULL, 0, &rep, err, errlen) == 0) {
        if (rep.status == 200 && json_is_object(rep.json)) {
            json_t *st = json_incref(rep.json);
            us_reply_free(&rep);
            us_http_learn_endpoints(h, st);
            return st;
        }
        snprintf(err, errlen, "status: HTTP %d %s", rep.status,
                 us_render_str(rep.json, "error") ? us_render_str(rep.json, "error") : "");
        us_reply_free(&rep);
    }
    add_endpoint(h, h->api);
    for (int i = 0; i < h->n_endpoints; i++) {
        if (strcmp(h->endpoints[i], h->api) == 0) {
            memmove(h->api, h->endpoints[(i + 1) % h->n_endpoints], US_HTTP_HOSTPORT_MAX);
            break;
        }
    }
    return NULL;
}

typedef struct node_peek {
    char token_file[PATH_MAX];
    char api[US_HTTP_HOSTPORT_MAX];
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
 * default agent address. 0 (maybe without a token), or US_EXIT_USAGE after saying why. */
static int find_token(us_http *h, const char *token_file, const char *config, char *api_out,
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
    if (!config && access(US_DEFAULT_NODE_CONFIG, R_OK) == 0)
        config = US_DEFAULT_NODE_CONFIG;
    if (config) {
        char *text = NULL;
        size_t len = 0;
        int rc = us_file_read(config, &text, &len);
        if (rc != 0 && explicit_config) {
            fprintf(stderr, "understudy: cannot read node config %s: %s\n", config, strerror(-rc));
            return US_EXIT_USAGE;
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
        if (peek.tls_cert[0] && !h->cacert[0]) {
            h->tls = true;
            snprintf(h->cacert, sizeof h->cacert, "%s", peek.tls_cert);
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
            return US_EXIT_USAGE;
        }
    }
    if (!token_file)
        return 0;
    char err[PATH_MAX + 256];
    if (us_token_first(token_file, h->token, sizeof h->token, err, sizeof err) != 0) {
        fprintf(stderr, "understudy: API token (%s): %s\n", from, err);
        return US_EXIT_USAGE;
    }
    snprintf(h->token_from, sizeof h->token_from, "%s", token_file);
    return 0;
}

int us_http_setup(us_http *h, const char *api, const char *cacert, const char *token_file,
                  const char *config)
{
    char config_api[US_HTTP_HOSTPORT_MAX] = "";
    if (cacert) {
        if (access(cacert, R_OK) != 0)
            return us_render_usage_error(NULL, "--cacert %s: %s", cacert, strerror(errno));
        h->tls = true;
        snprintf(h->cacert, sizeof h->cacert, "%s", cacert);
    }
    int rc = find_token(h, token_file, config, config_api, sizeof config_api);
    if (rc != 0)
        return rc;
    if (!api)
        api = getenv("UNDERSTUDY_API");
    if ((!api || !api[0]) && config_api[0])
        api = config_api;
    if (!api || !api[0])
        api = US_DEFAULT_API;
    /* "https://HOST:PORT" (or "http://"): the scheme, then the address. */
    if (strncmp(api, "https://", 8) == 0) {
        h->tls = true;
        api += 8;
    } else if (strncmp(api, "http://", 7) == 0) {
        h->tls = false;
        api += 7;
    }
    if (!us_http_hostport_valid(api))
        return us_render_usage_error(
            NULL, "invalid agent address \"%s\" (from %s): expected HOST:PORT", api,
            api == getenv("UNDERSTUDY_API") ? "$UNDERSTUDY_API"
            : api == config_api             ? "node.api of the node config"
                                            : "--api");
    snprintf(h->api, sizeof h->api, "%s", api);
    memcpy(h->origin, h->api, sizeof h->origin);
    return 0;
}
