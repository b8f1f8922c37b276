/* role.h — what a node answers when a load balancer asks whether it is a service's active (or a
 * ready standby): GET /v1/services/NAME/role and .../role/standby (agent_api.c), the way
 * HAProxy's `option httpchk` asks Patroni's /primary and /replica. Pure: the replicated
 * assignment, the definition and this node's own view of its instance in, the answer out.
 *
 * Promise: `active` is true only while this node's instance acts as active under the assignment's
 * current epoch, given to this agent incarnation, and the node holds its lease (the same
 * conditions under which the instance runs as active: a node whose lease ran out, or that was
 * given the role but has not promoted yet, says no). `standby` is true for a standby listed in
 * the assignment that could take over: a cold one always (nothing runs until promotion), a hot
 * one while its instance runs as standby, is not unhealthy and, for a service with `follow`, has
 * followed the current active. */
#ifndef US_ROLE_H
#define US_ROLE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/fsm.h"
#include "core/model.h"

typedef struct us_role_answer {
    const char *role; /* "active" | "promoting" (given the role, not acting yet or without a
                         lease) | "failed" (its instance failed or was fenced under the epoch) |
                         "standby" | "none" (no role here, or no such service) */
    bool active;      /* 200 for .../role */
    bool standby;     /* 200 for .../role/standby */
    uint64_t epoch;   /* the assignment's epoch, 0 = none given yet */
    bool demoting;    /* active, asked to hand over (a planned switchover) */
} us_role_answer;

/* `self`/`self_inc`: this node's name and agent incarnation; `own`: what this node's instance of
 * the service reports (NULL = none); `lease_ok`: this node may act as active now. `d` and `as`
 * may be NULL (no such service or no assignment yet). */
us_role_answer us_role_of(const us_service_def *d, const us_assignment *as, const char *self,
                          uint64_t self_inc, const us_inst_obs *own, bool lease_ok);

/* The role the replicated state gives `node` in the service: "active" (given it, acting or not),
 * "standby" (listed) or "none" (neither, or no such service). What the hooks are told
 * (UNDERSTUDY_ROLE); us_role_of says what the node does with it. */
const char *us_assigned_role(const us_state *s, const char *service, const char *node,
                             uint64_t *epoch);

/* Where the active is, for every process and hook of a service (its run command, promote, demote,
 * exec checks, notify, follow): each a "KEY=VALUE" string, from the replicated state as it is when
 * the process starts (an unknown service: all empty).
 * - UNDERSTUDY_ACTIVE_NODE: the active node, "" while none;
 * - UNDERSTUDY_ACTIVE_HOST: its `[node] service_host` when set, else the host of its cluster
 *   address;
 * - UNDERSTUDY_ACTIVE_EPOCH: the active's epoch, "" while none;
 * - UNDERSTUDY_STANDBYS: the standby nodes, space separated. */
typedef struct us_active_env {
    char node[US_NAME_MAX + 32];
    char host[US_ADDR_MAX + 32];
    char epoch[64];
    char standbys[US_MAX_NODES * US_NAME_MAX + 32];
} us_active_env;

void us_active_env_of(const us_state *s, const char *service, us_active_env *out);

/* What a `position` command printed (`len` bytes, not NUL-terminated): one decimal number
 * 0..INT64_MAX, blanks and newlines around it allowed, nothing else. */
bool us_position_parse(const char *text, size_t len, int64_t *out);

#endif
