/* config.h — node configuration (`understudy agent --config FILE`) and services files
 * (`understudy apply FILE`), with timing profiles.
 *
 * Parsing never half-applies: on any problem the output struct is left untouched and every problem
 * found is listed in `us_errors`, each as "FILE:LINE: key 'K': expected ..., got '...'".
 * INI syntax (see ini.h): [section] / [service NAME], key = value; lines starting with '#' or ';'
 * are comments, and so is the rest of a line from a '#' preceded by whitespace (not ';': shell
 * commands use it).
 */
#ifndef US_CONFIG_H
#define US_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/errors.h"
#include "lib/key.h"
#include "core/lease.h"
#include "core/model.h"

typedef struct us_member {
    char name[US_NAME_MAX];
    char address[US_ADDR_MAX];
} us_member;

typedef struct us_node_config {
    char path[PATH_MAX];       /* the file it was read from */
    char name[US_NAME_MAX];    /* [node] name */
    char address[US_ADDR_MAX]; /* [node] address, "IPv4:port" */
    char api[US_ADDR_MAX];     /* [node] api, "IPv4:port" (default: address host, port 7201) */
    /* [node] service_host (optional): where services on other nodes reach this node's services
     * (UNDERSTUDY_ACTIVE_HOST, core/role.h); default the host of `address`. */
    char service_host[US_ADDR_MAX];
    char data_dir[PATH_MAX];        /* [node] data_dir, created if missing, must be writable */
    char cluster_name[US_NAME_MAX]; /* [cluster] name */
    int n_members;                  /* [cluster] members: initial voters "name=IPv4:port ..." */
    us_member members[US_MAX_NODES];
    int n_join; /* [cluster] join: "IPv4:port ..." of existing members */
    char join[US_MAX_NODES][US_ADDR_MAX];
    us_timing timing; /* [cluster] profile (default "default") */
    /* [cluster] autopilot_grace (default 10s): a voter must be dead this long before autopilot
     * replaces it, so that a reboot or a short outage does not reshuffle the voters. */
    int autopilot_grace_ms;
    /* [cluster] events_max (default US_EVENTS_DEFAULT, US_EVENTS_MIN..US_EVENTS_LIMIT): how many
     * of the newest events this agent keeps (model.h); a ring, so memory stays bounded. */
    int events_max;
    /* [cluster] key_file (required): the cluster key(s) that seal every datagram and Raft
     * connection (key.h). Loaded and checked with the configuration. */
    char key_file[PATH_MAX];
    us_keyring keys;
    /* [node] api_token_file (required): the bearer token(s) every API request must present
     * (key.h has the format). Loaded and checked with the configuration. */
    char api_token_file[PATH_MAX];
    us_tokens tokens;
    bool metrics_auth; /* [node] metrics_auth: GET /metrics needs the token too (default no) */
    /* [node] api_tls_cert / api_tls_key: serve the API over TLS; a non-loopback api needs them
     * or [node] api_insecure = yes. */
    char api_tls_cert[PATH_MAX];
    char api_tls_key[PATH_MAX];
    bool api_insecure;
    /* [node] voter_nice (-20..0, default US_VOTER_NICE_DEFAULT): the nice value of the agent's
     * loop while this node is a Raft voter (its own when that is lower already). Every node's
     * lease renewals go through the voters: a voter that its machine's load keeps off the CPU
     * for a few hundred ms takes every active role in the cluster down with it. Needs
     * CAP_SYS_NICE (root has it); 0 leaves the priority alone. The agent's children (services,
     * hooks, checks) always start at the agent's own nice value. */
    int voter_nice;
} us_node_config;

#define US_VOTER_NICE_DEFAULT -10

/* Read and validate a node config. 0 on success; -1 with `err` filled (and *out untouched).
 * data_dir is created if missing (mode 0700) and stored as an absolute path. */
int us_config_load_node(const char *path, us_node_config *out, us_errors *err);

/* Like us_config_load_node, but creates nothing (`understudy check-config`): what the agent would
 * find at data_dir (missing, not writable, not a directory) is appended to `warn` as
 * "FILE:LINE: key 'node.data_dir': warning: ..." and is no error; data_dir stays as written. */
int us_config_check_node(const char *path, us_node_config *out, us_errors *err, us_errors *warn);

/* A node config given as text (fuzzers, tests): validated like us_config_check_node, so nothing is
 * created and data_dir stays as written (what is found there is not reported); key_file is still
 * read. `filename` names the file in messages. 0, or -1 with every problem in err. */
int us_config_parse_node_text(const char *text, size_t len, const char *filename,
                              us_node_config *out, us_errors *err);

/* What a file holds, decided by its first [node] / [cluster] (a node config) or [service NAME]
 * (a services file) section header. */
typedef enum { US_CONFIG_UNKNOWN = 0, US_CONFIG_NODE, US_CONFIG_SERVICES } us_config_kind;
us_config_kind us_config_detect(const char *text, size_t len);

/* Parse and validate a services file given as text; `filename` is only used in messages.
 * 0 on success: *out is overwritten (what it held is not freed) with definitions its owner frees
 * with us_service_set_free; -1 with every problem in `err` (and *out untouched). */
int us_config_parse_services(const char *text, size_t len, const char *filename,
                             us_service_set *out, us_errors *err);

/* yes/true/on/1 or no/false/off/0 into *out; false (and *out untouched) for anything else. */
bool us_parse_bool(const char *value, bool *out);

/* A user or group name: 1..32 of [A-Za-z0-9_.-], starting with a letter or '_', an optional
 * final '$' (Samba machine accounts). Numeric ids are not names. */
bool us_account_name_valid(const char *s);

/* "4096", "64K", "10M", "1G" (1024-based) -> bytes, at most 1024G; false if malformed. */
bool us_parse_size(const char *s, int64_t *out);

/* "250ms", "2s", "1m", "1500" (ms) -> milliseconds; -1 if malformed or negative. */
long us_parse_duration_ms(const char *s);

#endif
