/* transport.h — Raft's TCP transport, mutually authenticated and encrypted with the cluster key,
 * plus a small authenticated request/response (RPC) channel on the same TCP port.
 *
 * Promise:
 * - Every connection starts with a handshake: both sides send a fresh random 32-byte nonce; the
 *   initiator offers the ids of its keys (sending key first), the responder picks the first one it
 *   holds. Session keys are derived from that cluster key, both nonces, the cluster name and the
 *   purpose (Raft or RPC); each side proves it holds the key with a MAC over the transcript before
 *   anything else is accepted. The initiator's Raft id, address and node name travel in its first
 *   encrypted frame. Nothing reaches libraft (accept_cb) or the RPC handler from a peer that has
 *   not proved the key; a node without the key cannot join, vote or receive replicated state.
 * - Then data flows in frames: 4-byte big-endian length, ChaCha20-Poly1305 (IETF) ciphertext of at
 *   most US_TRANSPORT_FRAME_MAX bytes of plaintext, a per-direction key and a counter nonce (so
 *   frames cannot be altered, dropped, replayed or reordered unnoticed). Any failure closes the
 *   connection.
 * - Limits: a connection that has not completed its handshake within 1 s is closed; until then it
 *   owns only fixed small buffers (no allocation depends on what the peer sends); at most
 *   US_TRANSPORT_MAX_HANDSHAKES inbound connections handshake at once and at most
 *   US_TRANSPORT_MAX_RPC_IN inbound RPCs are served at once (more are closed at once); a frame's
 *   length is checked before anything is read into it; each direction of a connection buffers a
 *   bounded number of bytes (reading stops while the other side's write queue is full).
 * - Every TCP connection gives up when sent data stays unacknowledged longer than user_timeout_ms
 *   (TCP_USER_TIMEOUT), so libraft reconnects at once after a link flap instead of waiting out
 *   TCP's retransmission backoff. Outgoing Raft connects give up after max(150 ms,
 *   user_timeout_ms / 2), before TCP's first SYN retransmission (1 s): an attempt made while the
 *   link was down is replaced by a new one (libraft retries every 100 ms), so Raft reconnects
 *   within about a quarter of a second of the link coming back; then the handshake has
 *   US_TRANSPORT_HANDSHAKE_MS.
 *
 * libraft gets one end of a socketpair (a uv_pipe_t allocated with raft_malloc) per connection;
 * this module relays the other end to the TCP socket, encrypting and decrypting. */
#ifndef US_TRANSPORT_H
#define US_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lib/key.h"

#define US_TRANSPORT_FRAME_MAX 65536    /* plaintext bytes per frame */
#define US_TRANSPORT_RPC_MAX (2u << 20) /* request and response bodies */
#define US_TRANSPORT_MAX_HANDSHAKES 64  /* inbound connections in handshake */
#define US_TRANSPORT_MAX_RPC_IN 32      /* inbound RPCs being served */
#define US_TRANSPORT_HANDSHAKE_MS 1000  /* inbound handshake deadline */
#define US_TRANSPORT_NAME_MAX 255       /* node name and address in the identity frame */
#define US_TRANSPORT_STREAKS 16         /* targets whose failing connects are followed at once */

typedef struct {
    uint64_t accepted;           /* inbound connections that completed the handshake */
    uint64_t rejected_auth;      /* unknown key, bad MAC, frame that failed its integrity check */
    uint64_t rejected_malformed; /* bad magic/version/purpose, frame length or identity */
    uint64_t timeouts;           /* inbound handshakes not completed within 1 s */
    uint64_t overflow;           /* closed at once: too many handshakes or inbound RPCs */
} us_transport_stats;

typedef struct us_conn us_conn;
typedef struct us_rpc_ctx us_rpc_ctx;

typedef void (*us_rpc_reply_cb)(void *data, int status /* 0 or -errno, e.g. -ETIMEDOUT */,
                                const char *body, size_t len);
typedef void (*us_rpc_handler)(void *data, us_rpc_ctx *ctx, const char *peer_name, const char *body,
                               size_t len);

typedef struct us_transport {
    struct raft_uv_transport t; /* what libraft uses */
    uv_loop_t *loop;
    unsigned user_timeout_ms;
    const us_keyring *keys; /* read in place */
    char cluster[US_TRANSPORT_NAME_MAX + 1];
    char name[US_TRANSPORT_NAME_MAX + 1];
    raft_id id;
    char address[US_TRANSPORT_NAME_MAX + 1];
    uv_tcp_t listener;
    bool listening, listener_open, closing;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    us_rpc_handler rpc_handler;
    void *rpc_data;
    us_conn *conns; /* every connection, any state */
    unsigned n_handshakes, n_rpc_in;
    us_transport_stats stats;
    uint64_t log_in_ms, log_out_ms; /* rate limits of the warnings */
    /* Outgoing Raft connections that keep failing, per target (the warnings above are rate
     * limited): when one succeeds after a streak, one line says how long it took and how the
     * attempts failed (TCP connect, or the peer's handshake reply). */
    struct us_transport_streak {
        char target[US_TRANSPORT_NAME_MAX + 1];
        uint64_t first_ms;                    /* loop time of the first failure, 0 = free slot */
        unsigned fails, in_connect, in_reply; /* failed attempts, by the phase they died in */
    } streaks[US_TRANSPORT_STREAKS];
} us_transport;

/* 0 or a raft error code. `keys` is the cluster keyring, read in place (not copied): it must
 * outlive the transport, and when its contents are replaced (SIGHUP reloads the key file) new
 * handshakes use the new keys while established connections keep their session keys. `cluster`
 * is the cluster name and `self_name` this node's name (at most US_TRANSPORT_NAME_MAX bytes). */
int us_transport_init(us_transport *w, uv_loop_t *loop, unsigned user_timeout_ms,
                      const us_keyring *keys, const char *cluster, const char *self_name);
/* After raft_close() completed (libraft closed the transport). */
void us_transport_close(us_transport *w);

const us_transport_stats *us_transport_stats_get(const us_transport *w);

/* Send one request to the agent listening at `address` ("IPv4:port"); cb is called exactly once
 * (also on timeout or when the transport closes): 0 with the response, or -errno (-ETIMEDOUT,
 * -ECONNREFUSED, -EACCES when the peer does not prove the cluster key, -ECONNRESET, -ECANCELED
 * when the transport closes). Request and response bodies at most US_TRANSPORT_RPC_MAX bytes.
 * Returns 0 (cb will be called) or -errno (cb will not be called; -ESHUTDOWN once libraft has
 * closed the transport). Before libraft's init() the request carries no Raft id or address. */
int us_transport_rpc(us_transport *w, const char *address, const char *body, size_t len,
                     unsigned timeout_ms, us_rpc_reply_cb cb, void *data);
/* Requests from authenticated peers go to h: peer_name is the node name the peer sent inside the
 * authenticated handshake (any holder of the cluster key is trusted to name itself); body is valid
 * during the call only. Without a handler requests are refused (the connection is closed). */
void us_transport_set_rpc_handler(us_transport *w, us_rpc_handler h, void *data);
/* Answer once (may be called later, from another callback, also after the transport closed); the
 * ctx is freed by it. If the connection went away meanwhile the answer is dropped. Every ctx
 * handed to the handler must be answered. Bodies longer than US_TRANSPORT_RPC_MAX are dropped
 * (the requester sees the connection close). */
void us_rpc_respond(us_rpc_ctx *ctx, const char *body, size_t len);

#endif
