/* net.h — agent-to-agent datagrams: JSON objects over UDP on the node's cluster address (the same
 * host:port as Raft's TCP listener). Heartbeats, lease renewals, instance reports, join requests
 * and the guardian's fencing announcements travel this way; everything that must be agreed on
 * goes through Raft instead. A lost datagram only delays: every message is repeated or implied by
 * the next heartbeat. */
#ifndef US_NET_H
#define US_NET_H

#include <jansson.h>
#include <netinet/in.h>
#include <uv.h>

typedef void (*us_net_msg_cb)(json_t *msg, const struct sockaddr_in *from, void *data);

typedef struct us_net {
    uv_udp_t udp;
    us_net_msg_cb on_msg;
    void *data;
} us_net;

/* Bind "IPv4:port". 0, or -errno with a message in err. */
int us_net_start(us_net *n, uv_loop_t *loop, const char *hostport, us_net_msg_cb cb, void *data,
                 char *err, size_t errlen);
/* Send (fire and forget). Does not consume msg. */
void us_net_send(us_net *n, const struct sockaddr_in *to, const json_t *msg);
void us_net_stop(us_net *n);

/* "IPv4:port" -> sockaddr; 0 or -1. */
int us_sockaddr_parse(const char *hostport, struct sockaddr_in *sa);

#endif
