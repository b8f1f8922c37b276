/* http.h — the CLI's client of an agent's HTTP API (libcurl; http, or https verified with a
 * given certificate or CA): one request to one agent, or a request as the API wants clients to
 * make it (follow "not the leader" to the leader, wait out an election); where to connect and with
 * which API token (options, then the environment, then the node config); the messages that
 * explain a failed request; and the other agents to ask when the one asked goes away.
 *
 * Blocking: 5 s to connect, and a reply that sends no byte for 5 s has failed. Replies are kept
 * up to 64 MiB. Errors are printed here, once, as "understudy: ..." (render.h). */
#ifndef US_HTTP_H
#define US_HTTP_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/key.h"

#define US_DEFAULT_API "127.0.0.1:7201" /* when neither --api nor $UNDERSTUDY_API is given */
#define US_DEFAULT_NODE_CONFIG "/etc/understudy/node.conf" /* read for the token when readable */
#define US_HTTP_HOSTPORT_MAX 256
#define US_HTTP_MAX_ENDPOINTS 20
#define US_HTTP_BY "by=CLI" /* who asks, for the causes of the events a change records */

typedef struct us_http {
    char api[US_HTTP_HOSTPORT_MAX];    /* where requests go; becomes the leader after a redirect */
    char origin[US_HTTP_HOSTPORT_MAX]; /* the agent the user named */
    char token[US_TOKEN_MAX + 1];      /* sent as "Authorization: Bearer"; "" = none found */
    char token_from[PATH_MAX + 64];    /* where it came from, for messages */
    bool tls;                          /* https (--api https://..., --cacert, or api_tls_cert) */
    char cacert[PATH_MAX]; /* certificate / CA to verify the agent with; "" = system's */
    /* Other agents to ask while polling, learnt from status replies: the one asked may go away
     * (e.g. the node being removed). */
    char endpoints[US_HTTP_MAX_ENDPOINTS][US_HTTP_HOSTPORT_MAX];
    int n_endpoints;
} us_http;

typedef struct us_reply {
    int status;   /* HTTP status, 100..599 */
    char *body;   /* NUL-terminated (owned) */
    size_t len;   /* without the NUL */
    json_t *json; /* the body parsed, or NULL */
} us_reply;

/* libcurl's global state, around everything else. */
void us_http_init(void);
void us_http_cleanup(void);

/* Where to connect and how, from what the user gave (NULL when not given): --cacert (must be
 * readable), the token (--token-file, else $UNDERSTUDY_TOKEN_FILE, else the api_token_file of the
 * node config: --config, else US_DEFAULT_NODE_CONFIG when readable), the address (--api, else
 * $UNDERSTUDY_API, else the node config's api, else US_DEFAULT_API; "https://" or "http://"
 * first chooses the scheme), and TLS (a node config's api_tls_cert when no --cacert). 0, or
 * US_EXIT_USAGE after saying why. */
int us_http_setup(us_http *h, const char *api, const char *cacert, const char *token_file,
                  const char *config);

/* One request to the agent at `hp`. 0 with `rep` filled (whatever its status; free it with
 * us_reply_free), or -1 with the reason in err (unreachable, timed out, TLS, too large). */
int us_http_once(const us_http *h, const char *hp, const char *method, const char *target,
                 const char *body, size_t blen, us_reply *rep, char *err, size_t errlen);

/* A request to h->api as the API expects clients to make it: follow "not the leader" (421) to
 * the leader up to 3 times, repeat it while an election runs (503 "no leader", for up to 5 s),
 * and go back to the agent named first when a leader sent to is gone. 0 with the final reply
 * (any status), or -1 after printing the failure. */
int us_http_call(us_http *h, const char *method, const char *target, const char *body, size_t blen,
                 us_reply *rep);

/* POST `target` (with by=CLI added to its query) without a body and require a 2xx. 0 with `rep`
 * to free, or -1 after explaining the refusal (nothing to free). */
int us_http_post(us_http *h, const char *target, us_reply *rep);

/* Explain a reply that is not a 2xx: the API's error, with what helps (the token to give on a
 * 401, the leader on a 421), or the start of a body that is not the API's. Returns
 * US_EXIT_FAILED. */
int us_http_fail_reply(const us_http *h, const us_reply *rep);

void us_reply_free(us_reply *r);

/* "host:port" or "[v6]:port" with a port 1..65535, shorter than US_HTTP_HOSTPORT_MAX. */
bool us_http_hostport_valid(const char *hp);

/* Percent-encode everything but RFC 3986's unreserved characters (cut to fit `size`). */
void us_http_url_encode(const char *s, char *out, size_t size);

/* Remember the API addresses of the alive and suspect nodes of a GET /v1/status reply (at most
 * US_HTTP_MAX_ENDPOINTS in all). */
void us_http_learn_endpoints(us_http *h, json_t *status);

/* GET /v1/status from h->api (learning endpoints); when it cannot answer, NULL with the reason
 * in err, and h->api moves on to the next known agent. */
json_t *us_http_poll_status(us_http *h, char *err, size_t errlen);

#endif
