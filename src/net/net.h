/* net.h — agent-to-agent datagrams over UDP on the node's cluster address (the same host:port as
 * Raft's TCP listener). Heartbeats, lease renewals, instance reports, join requests and the
 * guardian's fencing announcements travel this way; everything that must be agreed on goes
 * through Raft instead. A lost datagram only delays: every message is repeated or implied by the
 * next heartbeat.
 *
 * Every datagram is sealed with the cluster key (wire.h: authenticated, encrypted, bound to the
 * cluster name, the sender's name and incarnation, a sequence number and the receiver's
 * incarnation). This module promises that the callback sees only datagrams that opened with one
 * of our keys and whose payload (at most US_NET_PAYLOAD_MAX bytes) decoded into a message of a
 * known type with every field checked (msg.h); everything else is dropped, counted by reason and
 * logged at most once a second (a type this version does not know is ignored, not counted). Replay
 * windows, and who may say what, are the receiver's business (agent.c), which reports its own
 * rejections through us_net_reject so that all are counted in one place.
 */
#ifndef US_NET_H
#define US_NET_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <uv.h>

#include "lib/key.h"
#include "core/msg.h"
#include "core/wire.h"

#define US_NET_PAYLOAD_MAX 60000
/* The socket's receive and send buffers (bytes asked of the kernel, which doubles them): a few
 * heartbeats of every peer's pings, so that an agent busy for a moment does not lose them at the
 * socket; no more, since what waits there ages (a renewal answered a second late is no renewal). */
#define US_NET_SOCKBUF (1024 * 1024)

/* Why a datagram was dropped: the label of understudy_cluster_messages_rejected_total. */
typedef enum {
    US_NET_REJECT_AUTH = 0,  /* does not open with any of our keys: forged, modified, wrong key */
    US_NET_REJECT_REPLAY,    /* seen before, too old, or for another incarnation of ours */
    US_NET_REJECT_MALFORMED, /* not an envelope, not a JSON object, a field of the wrong type */
    US_NET_REJECT_UNKNOWN,   /* authentic, but from a node that is not a member */
    US_NET_REJECT_VERSION,   /* another major protocol version */
    US_NET_REJECT_COUNT
} us_net_reject_reason;

const char *us_net_reject_name(us_net_reject_reason r);

typedef void (*us_net_msg_cb)(const us_wire_hdr *h, const us_msg *msg,
                              const struct sockaddr_in *from, void *data);

typedef struct us_net {
    uv_udp_t udp;
    us_net_msg_cb on_msg;
    void *data;
    const us_keyring *keys; /* owned by the caller, outlives the net */
    char cluster[US_NAME_MAX];
    char self[US_NAME_MAX];
    uint64_t inc;  /* our incarnation */
    uint64_t seq;  /* last sequence number sent */
    uint64_t gseq; /* the same on the guardian channel (us_net_send_fenced) */
    uint64_t rejected[US_NET_REJECT_COUNT];
    uint64_t log_rejected[US_NET_REJECT_COUNT]; /* counts at the last log line */
    int64_t log_ms;                             /* when the last rejection was logged */
} us_net;

/* Bind "IPv4:port"; datagrams are sealed as `self` of incarnation `inc` of cluster `cluster`.
 * 0, or -errno with a message in err. */
int us_net_start(us_net *n, uv_loop_t *loop, const char *hostport, const us_keyring *keys,
                 const char *cluster, const char *self, uint64_t inc, us_net_msg_cb cb, void *data,
                 char *err, size_t errlen);
/* Seal and send (fire and forget) to a receiver of incarnation to_inc (0 = not known). Does not
 * consume msg. */
void us_net_send(us_net *n, const struct sockaddr_in *to, uint64_t to_inc, const json_t *msg);
/* The same for a payload encoded already (len bytes of JSON text): a message sent to many peers
 * is encoded once. */
void us_net_send_text(us_net *n, const struct sockaddr_in *to, uint64_t to_inc, const char *text,
                      size_t len);
/* An exiting agent's own announcement of the active instances it killed (guardian.h's "fenced",
 * text as the guardian builds it), sealed on the guardian channel as this incarnation, for when
 * its guardian cannot make it (it is gone). Sequence numbers start far above any the guardian of
 * this incarnation used on that channel, so no receiver takes it for a replay. */
void us_net_send_fenced(us_net *n, const struct sockaddr_in *to, const char *text, size_t len);
/* Count (and, rate-limited, log) a datagram the receiver refused after it opened. */
void us_net_reject(us_net *n, us_net_reject_reason why, const char *sender, const char *detail);
void us_net_stop(us_net *n);

#endif
