/* msg.h — the payloads of agent datagrams, once wire.h has opened them: a JSON object per message,
 * decoded here into plain structs with every field checked for type, range and size, and the
 * frequent ones (ping, its reports, pong) written from those structs. Both without allocating
 * (lib/jscan.h: an agent of a 64-node cluster decodes and writes hundreds a second, and jansson's
 * trees of small allocations were a third of its idle time). Pure: no I/O, no agent state. A
 * receiver acts only on what us_msg_decode accepted (agent.c dispatches the decoded message to one
 * handler per type).
 *
 * Fields and types (names are the JSON keys; u64 travel as decimal strings, since JSON numbers
 * lose precision past 2^53; unknown keys are ignored, so a newer minor version may add some):
 *   ping   {"t":"ping","seq":u64,"term":u64,"lease":bool,"api":"IPv4:port"?,
 *           "rep":{SERVICE:report,...}? | "rp":{SERVICE:brief,...}?, "rb":bool?,
 *           "gr":{NODE:{"age":int>=-1,"stale":bool,"v":u64},...}?,
 *           "ci":u64?,"adopt":u64?,"vote":bool?,"iv":int?,"sh":HOST?}   ("ci": the Raft leader's
 * commit index, sent by the leader only; "vote": the sender is a voter in its view of the Raft
 * configuration; "iv": ms until the sender's next regular ping to this receiver (fanout.h), absent
 * = a heartbeat; "sh": the sender's service_host (lib/hostport.h us_host_valid), absent = none;
 * adopt: the earlier incarnation of the sender whose instances it took over after a planned
 * restart; a ping without "rep" comes from the sender's guardian renewing its lease during a
 * planned restart: its last reports stand; "rb": the sender reads brief reports, "rp", which a
 * sender uses only towards a receiver that said so, since an older version refuses them)
 *          report = {"state":0..5,"epoch":u64,"exit":int,"pid":int>=0,"px_epoch":u64,
 *                    "px_open":int>=0,"health":0..2,"cause":str,"check_ms":int>=-1,
 *                    "probes":int>=0,"probes_failed":int>=0,"restarts":int>=0,
 *                    "restart_cause":str,"refused":bool}   (every field)
 *          brief  = the same under the keys s e x p pe po h c cm pr pf r rc rf, each left out when
 *                   at its default (0, "", false; check_ms -1): a quiet instance is {"s":..,"e":..}
 *   pong   {"t":"pong","seq":u64,"ack":bool?,"grant":bool?,"removed":bool?,"v":u64,"rv":u64?}
 *   hello  {"t":"hello"}
 *   leave  {"t":"leave"}
 *   join   {"t":"join","name":NAME,"address":"IPv4:port","api":"IPv4:port"?,"fwd":bool?}
 *   fenced {"t":"fenced","fenced":[{"service":NAME,"epoch":int>=0},...],"agent":"dead"?}
 * A message speaks only for its sealed sender: no payload field names the sender or its
 * incarnation. */
#ifndef US_MSG_H
#define US_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

/* What one node last said about its instance of one service. */
typedef struct us_report {
    char service[US_NAME_MAX];
    us_inst_obs obs;
    int pid;           /* 0 = none */
    uint64_t px_epoch; /* its proxy's open connections established under px_epoch: */
    int px_open;       /* what a draining old active waits for */
    int64_t check_ms;  /* latency of the last health probe, -1 = none */
    uint64_t probes, probes_failed;
    int restarts;                      /* standby process restarts by this agent */
    char restart_cause[US_REASON_MAX]; /* why the last one happened */
} us_report;

/* A voter's report about one node's lease (lease.h). */
typedef struct us_msg_lease {
    char node[US_NAME_MAX];
    int64_t age; /* ms since it last granted that node, -1 = unknown */
    bool stale;  /* stale and revoked */
    uint64_t v;  /* its state version when it reported */
} us_msg_lease;

/* Reports in one ping: a report is 180 bytes or more as JSON, so a datagram (US_NET_PAYLOAD_MAX,
 * 60000 bytes) holds about 330 of them; more is refused as malformed. A node reports each of its
 * instances in every ping, so this bounds the instances one node can run (docs/architecture.md,
 * "Limits"). */
#define US_MSG_REPORTS_MAX 400

/* The longest "iv" a ping may announce (ms): a peer's silence bounds stretch by at most three times
 * this (fanout.h). */
#define US_MSG_INTERVAL_MAX_MS 60000

typedef struct us_msg_ping {
    uint64_t round; /* "seq": the ping round a pong names */
    uint64_t term;
    bool lease; /* asks for a lease renewal */
    bool has_api;
    char api[US_ADDR_MAX];
    char service_host[US_ADDR_MAX]; /* "sh": the sender's `[node] service_host`, "" = not set */
    int n_reports;
    int n_leases;
    us_msg_lease leases[US_MAX_NODES];
    bool has_av;      /* "av" present (agents say it; the guardian's stand-in renewals do not) */
    uint64_t av;      /* the sender's applied state version: a voter refuses a renewal that lags
                         its view of the sender's roles (lease.h, us_lease_lags) */
    bool has_commit;  /* "ci" present: the sender, as Raft leader in `term`, had committed */
    uint64_t commit;  /* up to this log index when it sent the ping */
    uint64_t adopt;   /* "adopt": the incarnation whose instances this agent adopted, 0 = none */
    bool vote;        /* "vote": the sender is a voter in its view */
    int interval_ms;  /* "iv": ms until its next regular ping to us, 0 = not said (a heartbeat) */
    bool has_rep;     /* "rep" or "rp" present; without (the guardian's stand-in renewals) the
                         sender's earlier reports stand */
    bool reads_brief; /* "rb": the sender decodes "rp" */
    us_report reports[US_MSG_REPORTS_MAX]; /* last: the decoder clears only what it fills */
} us_msg_ping;

typedef struct us_msg_pong {
    uint64_t round;
    uint64_t v;  /* the voter's state version */
    uint64_t rv; /* "rv": its roles_v of the requester (model.h); absent = v */
    bool ack, grant, removed;
} us_msg_pong;

typedef struct us_msg_join {
    char name[US_NAME_MAX];
    char address[US_ADDR_MAX];
    char api[US_ADDR_MAX]; /* "" when not given */
    bool fwd;              /* forwarded by a member for the node it names */
} us_msg_join;

typedef struct us_msg_fenced {
    int n;
    struct {
        char service[US_NAME_MAX];
        uint64_t epoch;
    } fenced[US_MAX_SERVICES];
    bool agent_dead;
} us_msg_fenced;

typedef enum {
    US_MSG_PING = 0,
    US_MSG_PONG,
    US_MSG_HELLO,
    US_MSG_LEAVE,
    US_MSG_JOIN,
    US_MSG_FENCED,
    US_MSG_TYPES
} us_msg_type;

typedef struct us_msg {
    us_msg_type type;
    union {
        us_msg_ping ping;
        us_msg_pong pong;
        us_msg_join join;
        us_msg_fenced fenced;
    } u;
} us_msg;

/* Reports as the object a ping carries: "rep" (full) or "rp" (brief, msg.h). As many of r[0..n)
 * as fit in cap bytes, in order; returns how many, with the text's length in *len (0 and 0 if
 * not even "{}" fits). */
int us_msg_reports_text(char *buf, size_t cap, const us_report *r, int n, bool brief, size_t *len);

/* A ping's text from p's fields: "api" if has_api, "rb" if reads_brief, "ci" if has_commit,
 * "adopt" if not 0, "gr" from the leases if any, "iv" if interval_ms > 0; the reports object `rep`
 * (us_msg_reports_text, rep_len bytes) under "rp" (brief) or "rep", or none (NULL). Returns the
 * length written, 0 if it does not fit in cap. */
size_t us_msg_ping_text(char *buf, size_t cap, const us_msg_ping *p, const char *rep,
                        size_t rep_len, bool brief);

typedef enum {
    US_MSG_OK = 0,
    US_MSG_MALFORMED, /* not a JSON object, or a field of the wrong type, range or size */
    US_MSG_UNKNOWN,   /* a type this version does not know (ignored: a newer minor version) */
} us_msg_result;

/* Decode a payload into *out (large: keep it off small stacks). On MALFORMED, `why` (if not NULL)
 * names the first offending field, e.g. "ping: rep.web.state". */
us_msg_result us_msg_decode(const void *payload, size_t len, us_msg *out, const char **why);

/* A pong as text, without building JSON objects (an agent answers every ping with one): what
 * us_msg_decode reads back into the same us_msg_pong (rv only when it differs from v). Its
 * length, or 0 if cap is too small (US_MSG_PONG_MAX is enough). */
#define US_MSG_PONG_MAX 160
size_t us_msg_pong_text(char *buf, size_t cap, const us_msg_pong *p);

/* The JSON "t" of a type. */
const char *us_msg_type_name(us_msg_type t);

#endif
