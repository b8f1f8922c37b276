/* transport.h — libraft's TCP transport with one change: Raft connections give up when sent data
 * stays unacknowledged longer than `user_timeout_ms` (TCP_USER_TIMEOUT). After a link flap,
 * libraft then reconnects at once instead of waiting out TCP's exponential retransmission
 * backoff, which otherwise keeps a healthy peer unreachable for seconds (and can cost the leader
 * its quorum when another node fails meanwhile). */
#ifndef US_TRANSPORT_H
#define US_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

typedef struct us_transport {
    struct raft_uv_transport t;     /* what libraft uses */
    struct raft_uv_transport inner; /* raft_uv_tcp */
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    unsigned user_timeout_ms;
} us_transport;

/* 0 or a raft error code. */
int us_transport_init(us_transport *w, uv_loop_t *loop, unsigned user_timeout_ms);
/* After raft_close() completed. */
void us_transport_close(us_transport *w);

#endif
