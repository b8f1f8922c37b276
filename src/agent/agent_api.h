/* agent_api.h — the agent's HTTP API: the routes of docs/api.md on net/api.h, behind its guard
 * (tokens, Host, Origin, content types), and changes forwarded from followers to the leader.
 * Reads the agent's state through hub.h; proposes through us_agent_apply.
 */
#ifndef US_AGENT_API_H
#define US_AGENT_API_H

#include <jansson.h>
#include <stddef.h>

#include "agent/hub.h"
#include "net/api.h"

void us_agent_api_routes(us_agent *a);
/* Start the API on cfg.api (TLS when configured), with its guard (tokens, Host, Origin, types)
 * and its routes. 0, or -errno with a message in err. */
int us_agent_api_start(us_agent *a, char *err, size_t errlen);

/* Forwarding a change to the leader over the cluster's authenticated RPC (transport.h).
 * A follower serialises a mutating request as
 *   {"method", "path" (target with the query), "content_type", "body", "who": {"token", "peer"}}
 * and the leader runs it with us_agent_api_execute, whose `done` gets the reply
 * {status, content_type, body}, to send back as it is. */
json_t *us_agent_api_forward_request(const us_api_req *r);
int us_agent_api_execute(us_agent *a, const char *request, size_t len, us_api_done done,
                         void *data);
/* Serve changes that followers forward to us over the cluster's RPC (once, after Raft starts). */
void us_agent_rpc_init(us_agent *a);

#endif
