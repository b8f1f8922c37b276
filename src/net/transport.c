/* transport.c — see transport.h.
 *
 * Wire protocol (version 1), initiator I, responder R:
 *   I -> R  hello   "UST1" | purpose (1: Raft, 2: RPC) | n ids (1..2) | 2 x key id (BE) | nonce_I
 *   R -> I  reply   "UST1" | status (0 ok, 1 no common key) | key id | nonce_R | mac_R
 *   I -> R  mac_I, then frames; the first frame is I's identity:
 *           raft id (8, BE) | address length (1) | address | name length (1) | name
 *   frames  ciphertext length (4, BE, 17..FRAME_MAX+16) | ChaCha20-Poly1305-IETF ciphertext
 *           (associated data: the length; nonce: 4 zero bytes | frame counter, LE)
 * th = BLAKE2b-256("understudy-transport-v1" | len(cluster) | cluster | hello | reply minus mac);
 * prk = BLAKE2b-256(key = cluster key, th); crypto_kdf subkeys 1..4 of prk ("ustransp"): MAC key
 * of R, MAC key of I, data key I->R, data key R->I; mac_X = BLAKE2b-256(key = MAC key of X, th).
 * RPC: the request and the response are each a 4-byte BE length and the body, in frames. */
#include "net/transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/log.h"
#include "net/net.h"
#include "lib/hostport.h"
#include "lib/listen.h"

#define MAGIC "UST1"
#define PURPOSE_RAFT 1
#define PURPOSE_RPC 2
#define NONCE_LEN 32
#define MAC_LEN 32
#define HELLO_LEN (4 + 1 + 1 + 8 + NONCE_LEN) /* 46 */
#define REPLY_HDR_LEN (4 + 1 + 4 + NONCE_LEN) /* 41 */
#define REPLY_LEN (REPLY_HDR_LEN + MAC_LEN)   /* 73 */
#define TAG_LEN crypto_aead_chacha20poly1305_ietf_ABYTES
#define RX_CAP (4 + US_TRANSPORT_FRAME_MAX + TAG_LEN)
/* A connection's receive buffer holds what its frames need: RX_MIN, grown to a larger frame while
 * it arrives and shrunk after it. A leader keeps two connections per follower, and a full-size
 * buffer each cost a leader of 25 nodes ~3 MB of resident memory that small frames never use. */
#define RX_MIN 8192
#define HIGH_WATER (1u << 20) /* bytes queued towards one side before reading the other stops */
#define LOW_WATER (256u << 10)
#define RPC_REQUEST_MS 10000 /* an authenticated RPC peer sends its request within this */
#define RPC_ANSWER_MS 60000  /* an inbound RPC waits this long for its answer */
#define LOG_EVERY_MS 10000   /* rejected connections are logged at most this often */

enum kind { K_IN, K_RAFT_OUT, K_RPC_OUT };
enum state { S_CONNECTING, S_WAIT_HELLO, S_WAIT_REPLY, S_WAIT_AUTH, S_WAIT_ID, S_OPEN, S_CLOSING };

struct us_rpc_ctx {
    us_conn *c; /* NULL once the connection is gone */
};

struct us_conn {
    us_transport *w;
    us_conn *next, **pprev;
    enum kind kind;
    enum state state;
    uint8_t purpose;
    bool counted_hs, counted_rpc, local_open, tcp_paused, local_paused, close_after_write;
    int open_handles;
    int result; /* why it closed: 0 or -errno */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_write_t hs_wr;
    uv_pipe_t local; /* our end of the socketpair whose other end libraft has */
    /* handshake: fixed buffers only */
    unsigned char hs[REPLY_LEN];
    size_t hs_len, hs_want;
    unsigned char hello[HELLO_LEN];
    unsigned char reply[REPLY_LEN];
    unsigned char mac_i[MAC_LEN];
    unsigned char k_tx[32], k_rx[32];
    uint64_t n_tx, n_rx;
    /* after authentication */
    unsigned char *rx;
    size_t rx_len, rx_cap;     /* RX_MIN .. RX_CAP */
    size_t tcp_out, local_out; /* bytes queued towards the TCP socket / towards libraft */
    /* outgoing Raft connection */
    struct raft_uv_connect *req;
    raft_uv_connect_cb cb;
    /* RPC */
    us_rpc_reply_cb rcb;
    void *rdata;
    unsigned char *out_msg; /* request waiting for the handshake: length + body */
    size_t out_len;
    unsigned char mlen[4];
    size_t mlen_have;
    char *msg;
    size_t msg_len, msg_have;
    bool msg_started;
    us_rpc_ctx *ctx;
    /* peer */
    raft_id peer_id;
    char peer_addr[US_TRANSPORT_NAME_MAX + 1];
    char peer_name[US_TRANSPORT_NAME_MAX + 1];
    char target[US_TRANSPORT_NAME_MAX + 1];
};

typedef struct wreq {
    uv_write_t req;
    us_conn *c;
    size_t acct;
    unsigned char data[];
} wreq;

static void conn_close(us_conn *c, int result);
static void process_frames(us_conn *c);
static void local_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void local_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- helpers ---- */

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void tune(us_transport *w, uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    uv_tcp_nodelay(tcp, 1);
    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0)
        return;
    unsigned ms = w->user_timeout_ms;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

static bool log_due(us_transport *w, uint64_t *last)
{
    uint64_t now = uv_now(w->loop);
    if (*last != 0 && now - *last < LOG_EVERY_MS)
        return false;
    *last = now ? now : 1;
    return true;
}

static void log_inbound(us_transport *w, const char *why)
{
    if (log_due(w, &w->log_in_ms))
        us_warn("cluster transport: closed an inbound connection: %s (so far: %llu bad key or "
                "MAC, %llu malformed, %llu timed out, %llu over the limits)",
                why, (unsigned long long)w->stats.rejected_auth,
                (unsigned long long)w->stats.rejected_malformed,
                (unsigned long long)w->stats.timeouts, (unsigned long long)w->stats.overflow);
}

static void log_outbound(us_transport *w, const us_conn *c, const char *why)
{
    if (log_due(w, &w->log_out_ms))
        us_warn("cluster transport: %s %s", c->target, why);
}

static void transcript(const us_transport *w, const unsigned char *hello,
                       const unsigned char *reply, unsigned char th[32])
{
    static const char domain[] = "understudy-transport-v1";
    crypto_generichash_state st;
    unsigned char cl = (unsigned char)strlen(w->cluster);
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const unsigned char *)domain, sizeof domain);
    crypto_generichash_update(&st, &cl, 1);
    crypto_generichash_update(&st, (const unsigned char *)w->cluster, cl);
    crypto_generichash_update(&st, hello, HELLO_LEN);
    crypto_generichash_update(&st, reply, REPLY_HDR_LEN);
    crypto_generichash_final(&st, th, 32);
}

/* Session keys and both MACs from the cluster key and the transcript. */
static void derive(us_conn *c, const unsigned char *key, unsigned char mac_r[MAC_LEN])
{
    unsigned char th[32], prk[32], k[32], k_ir[32], k_ri[32];
    transcript(c->w, c->hello, c->reply, th);
    crypto_generichash(prk, sizeof prk, th, sizeof th, key, US_KEY_LEN);
    crypto_kdf_derive_from_key(k, sizeof k, 1, "ustransp", prk);
    crypto_generichash(mac_r, MAC_LEN, th, sizeof th, k, sizeof k);
    crypto_kdf_derive_from_key(k, sizeof k, 2, "ustransp", prk);
    crypto_generichash(c->mac_i, MAC_LEN, th, sizeof th, k, sizeof k);
    crypto_kdf_derive_from_key(k_ir, sizeof k_ir, 3, "ustransp", prk);
    crypto_kdf_derive_from_key(k_ri, sizeof k_ri, 4, "ustransp", prk);
    bool initiator = c->kind != K_IN;
    memcpy(c->k_tx, initiator ? k_ir : k_ri, 32);
    memcpy(c->k_rx, initiator ? k_ri : k_ir, 32);
    sodium_memzero(prk, sizeof prk);
    sodium_memzero(k, sizeof k);
    sodium_memzero(k_ir, sizeof k_ir);
    sodium_memzero(k_ri, sizeof k_ri);
}

static void nonce_of(uint64_t n, unsigned char out[crypto_aead_chacha20poly1305_ietf_NPUBBYTES])
{
    memset(out, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(n >> (8 * i));
}

/* frame: 4 bytes of room for the length, then plen bytes of plaintext and TAG_LEN of room. */
static void seal(us_conn *c, unsigned char *frame, size_t plen)
{
    unsigned char npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    unsigned long long clen;
    put32(frame, (uint32_t)(plen + TAG_LEN));
    nonce_of(c->n_tx++, npub);
    crypto_aead_chacha20poly1305_ietf_encrypt(frame + 4, &clen, frame + 4, plen, frame, 4, NULL,
                                              npub, c->k_tx);
}

/* Decrypt the frame at `frame` (length header included) into out; 0 or -1. */
static int unseal(us_conn *c, const unsigned char *frame, size_t clen, unsigned char *out)
{
    unsigned char npub[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
    unsigned long long plen;
    nonce_of(c->n_rx++, npub);
    return crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, frame + 4, clen, frame, 4,
                                                     npub, c->k_rx);
}

/* ---- connection lifecycle ---- */

static void maybe_closed(us_transport *w)
{
    if (w->closing && !w->listener_open && w->conns == NULL && w->close_cb) {
        raft_uv_transport_close_cb cb = w->close_cb;
        w->close_cb = NULL;
        cb(&w->t);
    }
}

static us_conn *conn_new(us_transport *w, enum kind kind)
{
    us_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->w = w;
    c->kind = kind;
    c->result = -ECONNRESET;
    uv_tcp_init(w->loop, &c->tcp);
    uv_timer_init(w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->creq.data = c;
    c->hs_wr.data = c;
    c->open_handles = 2;
    c->next = w->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &w->conns;
    w->conns = c;
    return c;
}

/* The streak of failed connects to `target`, or a slot for one (a new target takes the oldest). */
static struct us_transport_streak *streak_of(us_transport *w, const char *target, bool create)
{
    struct us_transport_streak *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < US_TRANSPORT_STREAKS; i++) {
        struct us_transport_streak *k = &w->streaks[i];
        if (k->first_ms && strcmp(k->target, target) == 0)
            return k;
        if (!k->first_ms && !free_slot)
            free_slot = k;
        if (k->first_ms && (!oldest || k->first_ms < oldest->first_ms))
            oldest = k;
    }
    if (!create)
        return NULL;
    struct us_transport_streak *k = free_slot ? free_slot : oldest;
    memset(k, 0, sizeof *k);
    snprintf(k->target, sizeof k->target, "%s", target);
    k->first_ms = uv_now(w->loop) ? uv_now(w->loop) : 1;
    return k;
}

static void streak_fail(us_conn *c, enum state at)
{
    struct us_transport_streak *k = streak_of(c->w, c->target, true);
    k->fails++;
    if (at == S_CONNECTING)
        k->in_connect++;
    else
        k->in_reply++;
}

/* A streak worth a line: three failures or more, or failing for a second. */
static void streak_end(us_conn *c)
{
    struct us_transport_streak *k = streak_of(c->w, c->target, false);
    if (!k)
        return;
    uint64_t ms = uv_now(c->w->loop) - k->first_ms;
    if (k->fails >= 3 || ms >= 1000)
        us_info("cluster transport: connected to %s after %u failed attempts over %llu ms (%u "
                "in the TCP connect, %u waiting for its handshake reply)",
                c->target, k->fails, (unsigned long long)ms, k->in_connect, k->in_reply);
    memset(k, 0, sizeof *k);
}

static void finalize(us_conn *c)
{
    us_transport *w = c->w;
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    if (c->kind == K_RAFT_OUT && c->req) {
        struct raft_uv_connect *req = c->req;
        c->req = NULL;
        us_debug("cluster transport: connection to %s failed: %s", c->target, strerror(-c->result));
        c->cb(req, NULL, c->result == -ECANCELED ? RAFT_CANCELED : RAFT_NOCONNECTION);
    }
    if (c->kind == K_RPC_OUT && c->rcb) {
        us_rpc_reply_cb cb = c->rcb;
        c->rcb = NULL;
        if (c->result == 0)
            cb(c->rdata, 0, c->msg ? c->msg : "", c->msg_len);
        else
            cb(c->rdata, c->result, NULL, 0);
    }
    if (c->ctx)
        c->ctx->c = NULL;
    free(c->rx);
    free(c->msg);
    free(c->out_msg);
    sodium_memzero(c->k_tx, sizeof c->k_tx);
    sodium_memzero(c->k_rx, sizeof c->k_rx);
    free(c);
    maybe_closed(w);
}

static void on_handle_closed(uv_handle_t *h)
{
    us_conn *c = h->data;
    if (--c->open_handles == 0)
        finalize(c);
}

static void conn_close(us_conn *c, int result)
{
    if (c->state == S_CLOSING)
        return;
    if (c->kind == K_RAFT_OUT && c->state != S_OPEN && result != -ECANCELED)
        streak_fail(c, c->state);
    if (c->kind == K_RAFT_OUT && c->state == S_OPEN)
        us_debug("cluster transport: connection to %s closed: %s", c->target, strerror(-result));
    c->state = S_CLOSING;
    c->result = result;
    if (c->counted_hs) {
        c->counted_hs = false;
        c->w->n_handshakes--;
    }
    if (c->counted_rpc) {
        c->counted_rpc = false;
        c->w->n_rpc_in--;
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (c->local_open)
        uv_close((uv_handle_t *)&c->local, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    us_conn *c = t->data;
    if (c->kind == K_IN && c->counted_hs) {
        c->w->stats.timeouts++;
        log_inbound(c->w, "no handshake within 1 s");
    } else if (c->kind == K_RAFT_OUT) {
        log_outbound(c->w, c, "did not complete the handshake in time");
    }
    conn_close(c, -ETIMEDOUT);
}

/* ---- writing ---- */

static void on_tcp_written(uv_write_t *req, int status)
{
    wreq *r = req->data;
    us_conn *c = r->c;
    c->tcp_out -= r->acct;
    free(r);
    if (c->state == S_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, -ECONNRESET);
        return;
    }
    if (c->local_paused && c->tcp_out <= LOW_WATER) {
        c->local_paused = false;
        uv_read_start((uv_stream_t *)&c->local, local_alloc, local_read);
    }
    if (c->close_after_write && c->tcp_out == 0)
        conn_close(c, 0);
}

static int tcp_write(us_conn *c, wreq *r, size_t len, size_t acct)
{
    r->c = c;
    r->req.data = r;
    r->acct = acct;
    c->tcp_out += acct;
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
    int rc = uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_tcp_written);
    if (rc != 0) {
        c->tcp_out -= acct;
        free(r);
        conn_close(c, -ECONNRESET);
        return -1;
    }
    return 0;
}

/* Encrypt and queue n plaintext bytes (split into frames). 0 or -1 (connection closed). */
static int send_plain(us_conn *c, const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t chunk = n < US_TRANSPORT_FRAME_MAX ? n : US_TRANSPORT_FRAME_MAX;
        size_t flen = 4 + chunk + TAG_LEN;
        wreq *r = malloc(sizeof *r + flen);
        if (!r) {
            conn_close(c, -ENOMEM);
            return -1;
        }
        memcpy(r->data + 4, p, chunk);
        seal(c, r->data, chunk);
        if (tcp_write(c, r, flen, sizeof *r + flen) != 0)
            return -1;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

static void on_hs_written(uv_write_t *req, int status)
{
    us_conn *c = req->data;
    if (status < 0 && c->state != S_CLOSING)
        conn_close(c, -ECONNRESET);
}

static int hs_write(us_conn *c, const unsigned char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    if (uv_write(&c->hs_wr, (uv_stream_t *)&c->tcp, &b, 1, on_hs_written) != 0) {
        conn_close(c, -ECONNRESET);
        return -1;
    }
    return 0;
}

/* ---- the relay between libraft's socketpair end and TCP ---- */

static void on_local_written(uv_write_t *req, int status)
{
    wreq *r = req->data;
    us_conn *c = r->c;
    c->local_out -= r->acct;
    free(r);
    if (c->state == S_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, 0);
        return;
    }
    if (c->tcp_paused && c->local_out <= LOW_WATER) {
        c->tcp_paused = false;
        uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read);
    }
}

/* libraft's bytes are read into one buffer (the loop is single-threaded: libuv calls local_read
 * right after local_alloc) and copied into a frame of their own size: a frame-sized block per read
 * would be mapped and unmapped each time (glibc's mmap threshold), a TLB shootdown per message. */
static unsigned char local_rx[US_TRANSPORT_FRAME_MAX];

static void local_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)local_rx, sizeof local_rx);
}

static void local_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    us_conn *c = s->data;
    (void)buf;
    if (nread <= 0 || c->state == S_CLOSING) {
        if (nread < 0)
            conn_close(c, 0);
        return;
    }
    size_t flen = 4 + (size_t)nread + TAG_LEN;
    wreq *r = malloc(sizeof *r + flen);
    if (!r) {
        conn_close(c, -ENOMEM);
        return;
    }
    memcpy(r->data + 4, local_rx, (size_t)nread);
    seal(c, r->data, (size_t)nread);
    if (tcp_write(c, r, flen, sizeof *r + flen) != 0)
        return;
    if (c->tcp_out > HIGH_WATER) {
        c->local_paused = true;
        uv_read_stop(s);
    }
}

/* The pair for libraft: our end becomes c->local, libraft's end is returned (raft_malloc'ed,
 * libraft closes and frees it). NULL on failure. */
static uv_stream_t *relay_start(us_conn *c)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return NULL;
    uv_pipe_t *p = raft_malloc(sizeof *p);
    if (!p) {
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    uv_pipe_init(c->w->loop, &c->local, 0);
    c->local.data = c;
    c->local_open = true;
    c->open_handles++;
    uv_pipe_init(c->w->loop, p, 0);
    if (uv_pipe_open(&c->local, sv[0]) != 0) {
        close(sv[0]);
        close(sv[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return NULL;
    }
    if (uv_pipe_open(p, sv[1]) != 0) {
        close(sv[1]);
        uv_close((uv_handle_t *)p, (uv_close_cb)raft_free);
        return NULL;
    }
    uv_read_start((uv_stream_t *)&c->local, local_alloc, local_read);
    return (uv_stream_t *)p;
}

/* ---- reading from TCP ---- */

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    us_conn *c = h->data;
    (void)suggested;
    if (c->rx)
        *buf = uv_buf_init((char *)c->rx + c->rx_len, (unsigned)(c->rx_cap - c->rx_len));
    else
        *buf = uv_buf_init((char *)c->hs + c->hs_len, (unsigned)(c->hs_want - c->hs_len));
}

static void start_reading_tcp(us_conn *c)
{
    uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read);
}

static const unsigned char *find_key(const us_transport *w, const unsigned char *ids, int n,
                                     uint32_t *id)
{
    for (int i = 0; i < n; i++) {
        const unsigned char *k = us_keyring_find(w->keys, get32(ids + 4 * i));
        if (k) {
            *id = get32(ids + 4 * i);
            return k;
        }
    }
    return NULL;
}

/* R: the initiator's hello. */
static void on_hello(us_conn *c)
{
    us_transport *w = c->w;
    const unsigned char *h = c->hs;
    int n = h[5];
    if (memcmp(h, MAGIC, 4) != 0 || (h[4] != PURPOSE_RAFT && h[4] != PURPOSE_RPC) || n < 1 ||
        n > US_KEYS_MAX) {
        w->stats.rejected_malformed++;
        log_inbound(w, "not a cluster handshake");
        conn_close(c, -EPROTO);
        return;
    }
    memcpy(c->hello, h, HELLO_LEN);
    c->purpose = h[4];
    uint32_t id = 0;
    const unsigned char *key = find_key(w, h + 6, n, &id);
    memcpy(c->reply, MAGIC, 4);
    if (!key) {
        w->stats.rejected_auth++;
        log_inbound(w, "the peer has none of our cluster keys");
        c->reply[4] = 1;
        memset(c->reply + 5, 0, REPLY_LEN - 5);
        if (hs_write(c, c->reply, REPLY_LEN) == 0)
            conn_close(c, -EACCES);
        return;
    }
    c->reply[4] = 0;
    put32(c->reply + 5, id);
    randombytes_buf(c->reply + 9, NONCE_LEN);
    derive(c, key, c->reply + REPLY_HDR_LEN);
    if (hs_write(c, c->reply, REPLY_LEN) != 0)
        return;
    c->state = S_WAIT_AUTH;
    c->hs_len = 0;
    c->hs_want = MAC_LEN;
}

/* R: the initiator's MAC. */
static void on_auth(us_conn *c)
{
    us_transport *w = c->w;
    if (crypto_verify_32(c->hs, c->mac_i) != 0) {
        w->stats.rejected_auth++;
        log_inbound(w, "the peer failed to prove the cluster key");
        conn_close(c, -EACCES);
        return;
    }
    c->rx = malloc(RX_MIN);
    if (!c->rx) {
        conn_close(c, -ENOMEM);
        return;
    }
    c->rx_cap = RX_MIN;
    c->state = S_WAIT_ID;
}

static void send_request(us_conn *c);

/* I: the responder's reply. */
static void on_reply(us_conn *c)
{
    us_transport *w = c->w;
    const unsigned char *h = c->hs;
    if (memcmp(h, MAGIC, 4) != 0) {
        log_outbound(w, c, "is not a cluster transport");
        conn_close(c, -EPROTO);
        return;
    }
    if (h[4] != 0) {
        log_outbound(w, c, "holds none of our cluster keys: refused");
        conn_close(c, -EACCES);
        return;
    }
    uint32_t id = get32(h + 5), chosen = 0;
    int n = c->hello[5];
    const unsigned char *key = NULL;
    for (int i = 0; i < n; i++)
        if (get32(c->hello + 6 + 4 * i) == id)
            key = find_key(w, c->hello + 6 + 4 * i, 1, &chosen);
    if (!key) {
        log_outbound(w, c, "answered with a key we did not offer");
        conn_close(c, -EPROTO);
        return;
    }
    memcpy(c->reply, h, REPLY_LEN);
    unsigned char mac_r[MAC_LEN];
    derive(c, key, mac_r);
    if (crypto_verify_32(mac_r, h + REPLY_HDR_LEN) != 0) {
        log_outbound(w, c, "failed to prove the cluster key (another key or cluster name?)");
        conn_close(c, -EACCES);
        return;
    }
    c->rx = malloc(RX_MIN);
    if (!c->rx) {
        conn_close(c, -ENOMEM);
        return;
    }
    c->rx_cap = RX_MIN;
    /* mac_I and the identity frame in one write. */
    size_t alen = strlen(w->address), nlen = strlen(w->name);
    size_t plen = 8 + 1 + alen + 1 + nlen;
    wreq *r = malloc(sizeof *r + MAC_LEN + 4 + plen + TAG_LEN);
    if (!r) {
        conn_close(c, -ENOMEM);
        return;
    }
    memcpy(r->data, c->mac_i, MAC_LEN);
    unsigned char *p = r->data + MAC_LEN + 4;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(w->id >> (56 - 8 * i));
    p[8] = (unsigned char)alen;
    memcpy(p + 9, w->address, alen);
    p[9 + alen] = (unsigned char)nlen;
    memcpy(p + 10 + alen, w->name, nlen);
    seal(c, r->data + MAC_LEN, plen);
    size_t len = MAC_LEN + 4 + plen + TAG_LEN;
    if (tcp_write(c, r, len, sizeof *r + len) != 0)
        return;
    c->state = S_OPEN;
    if (c->kind == K_RAFT_OUT) {
        uv_timer_stop(&c->timer);
        uv_stream_t *stream = relay_start(c);
        if (!stream) {
            conn_close(c, -ENOMEM);
            return;
        }
        struct raft_uv_connect *req = c->req;
        c->req = NULL;
        us_debug("cluster transport: connected to %s", c->target);
        streak_end(c);
        c->cb(req, stream, 0);
    } else {
        send_request(c);
    }
}

static void send_request(us_conn *c)
{
    unsigned char *m = c->out_msg;
    c->out_msg = NULL;
    send_plain(c, m, c->out_len);
    free(m);
}

/* R: the identity frame. */
static void on_identity(us_conn *c, const unsigned char *p, size_t n)
{
    us_transport *w = c->w;
    size_t alen = n > 8 ? p[8] : 0;
    size_t nlen = n > 9 + alen ? p[9 + alen] : 0;
    if (n < 10 || n != 10 + alen + nlen || nlen == 0 || (c->purpose == PURPOSE_RAFT && alen == 0) ||
        memchr(p + 9, 0, alen) || memchr(p + 10 + alen, 0, nlen)) {
        w->stats.rejected_malformed++;
        conn_close(c, -EPROTO);
        return;
    }
    c->peer_id = 0;
    for (int i = 0; i < 8; i++)
        c->peer_id = c->peer_id << 8 | p[i];
    memcpy(c->peer_addr, p + 9, alen);
    c->peer_addr[alen] = 0;
    memcpy(c->peer_name, p + 10 + alen, nlen);
    c->peer_name[nlen] = 0;
    c->counted_hs = false;
    w->n_handshakes--;
    uv_timer_stop(&c->timer);
    w->stats.accepted++;
    if (c->purpose == PURPOSE_RPC) {
        if (w->n_rpc_in >= US_TRANSPORT_MAX_RPC_IN) {
            w->stats.overflow++;
            log_inbound(w, "too many RPCs at once");
            conn_close(c, -EBUSY);
            return;
        }
        w->n_rpc_in++;
        c->counted_rpc = true;
        c->state = S_OPEN;
        uv_timer_start(&c->timer, on_timeout, RPC_REQUEST_MS, 0);
        return;
    }
    if (!w->accept_cb) {
        conn_close(c, -ECONNREFUSED);
        return;
    }
    uv_stream_t *stream = relay_start(c);
    if (!stream) {
        conn_close(c, -ENOMEM);
        return;
    }
    c->state = S_OPEN;
    w->accept_cb(&w->t, c->peer_id, c->peer_addr, stream);
}

/* RPC, both sides: the request or the response, a length and a body. */
static void on_rpc_bytes(us_conn *c, const unsigned char *p, size_t n)
{
    us_transport *w = c->w;
    while (n > 0 && c->mlen_have < 4) {
        c->mlen[c->mlen_have++] = *p++;
        n--;
    }
    if (c->mlen_have < 4)
        return;
    if (!c->msg_started) {
        c->msg_started = true;
        c->msg_len = get32(c->mlen);
        if (c->msg_len > US_TRANSPORT_RPC_MAX) {
            if (c->kind == K_IN)
                w->stats.rejected_malformed++;
            conn_close(c, -EMSGSIZE);
            return;
        }
        c->msg = malloc(c->msg_len ? c->msg_len : 1);
        if (!c->msg) {
            conn_close(c, -ENOMEM);
            return;
        }
    }
    if (n > c->msg_len - c->msg_have) {
        if (c->kind == K_IN)
            w->stats.rejected_malformed++;
        conn_close(c, -EPROTO);
        return;
    }
    memcpy(c->msg + c->msg_have, p, n);
    c->msg_have += n;
    if (c->msg_have < c->msg_len || c->ctx)
        return;
    if (c->kind == K_RPC_OUT) {
        conn_close(c, 0);
        return;
    }
    if (c->msg_len == c->msg_have && c->ctx == NULL && w->rpc_handler) {
        uv_timer_stop(&c->timer);
        uv_timer_start(&c->timer, on_timeout, RPC_ANSWER_MS, 0);
        us_rpc_ctx *ctx = malloc(sizeof *ctx);
        if (!ctx) {
            conn_close(c, -ENOMEM);
            return;
        }
        ctx->c = c;
        c->ctx = ctx;
        char *msg = c->msg;
        c->msg = NULL;
        w->rpc_handler(w->rpc_data, ctx, c->peer_name, msg, c->msg_len);
        free(msg);
    } else {
        conn_close(c, -ECONNREFUSED);
    }
}

static void process_frames(us_conn *c)
{
    us_transport *w = c->w;
    size_t off = 0;
    while (c->state != S_CLOSING && c->rx_len - off >= 4) {
        unsigned char *f = c->rx + off;
        size_t clen = get32(f);
        if (clen <= TAG_LEN || clen > US_TRANSPORT_FRAME_MAX + TAG_LEN) {
            if (c->kind == K_IN)
                w->stats.rejected_malformed++;
            conn_close(c, -EPROTO);
            return;
        }
        if (c->rx_len - off < 4 + clen)
            break;
        size_t plen = clen - TAG_LEN;
        if (c->local_open) {
            wreq *r = malloc(sizeof *r + plen);
            if (!r) {
                conn_close(c, -ENOMEM);
                return;
            }
            if (unseal(c, f, clen, r->data) != 0) {
                free(r);
                if (c->kind == K_IN)
                    w->stats.rejected_auth++;
                conn_close(c, -EBADMSG);
                return;
            }
            r->c = c;
            r->req.data = r;
            r->acct = sizeof *r + plen;
            c->local_out += r->acct;
            uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)plen);
            if (uv_write(&r->req, (uv_stream_t *)&c->local, &b, 1, on_local_written) != 0) {
                c->local_out -= r->acct;
                free(r);
                conn_close(c, 0);
                return;
            }
        } else {
            if (unseal(c, f, clen, f + 4) != 0) {
                if (c->kind == K_IN)
                    w->stats.rejected_auth++;
                conn_close(c, -EBADMSG);
                return;
            }
            if (c->state == S_WAIT_ID)
                on_identity(c, f + 4, plen);
            else if (c->purpose == PURPOSE_RPC)
                on_rpc_bytes(c, f + 4, plen);
            else
                conn_close(c, -EPROTO); /* Raft data from the responder */
        }
        off += 4 + clen;
    }
    if (c->state == S_CLOSING)
        return;
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
    /* Room for the frame that has begun (its length is checked above), else back to RX_MIN. */
    size_t need = c->rx_len >= 4 ? 4 + get32(c->rx) : 0;
    size_t cap = need > RX_MIN ? need : RX_MIN;
    if (cap != c->rx_cap) {
        unsigned char *rx = realloc(c->rx, cap);
        if (rx) {
            c->rx = rx;
            c->rx_cap = cap;
        } else if (cap > c->rx_cap) {
            conn_close(c, -ENOMEM);
            return;
        }
    }
    if (c->local_out > HIGH_WATER) {
        c->tcp_paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    us_conn *c = s->data;
    (void)buf;
    if (c->state == S_CLOSING || nread == 0)
        return;
    if (nread < 0) {
        if (c->kind == K_IN && c->counted_hs && c->state == S_WAIT_AUTH) {
            /* It had our proof and went away: it holds another key or cluster name. */
            c->w->stats.rejected_auth++;
            log_inbound(c->w, "the peer gave up after our proof (another key or cluster name?)");
        } else if (c->kind == K_IN && c->counted_hs) {
            c->w->stats.rejected_malformed++;
            log_inbound(c->w, "closed during the handshake");
        }
        conn_close(c, c->state == S_WAIT_REPLY ? -ECONNREFUSED : -ECONNRESET);
        return;
    }
    if (c->rx) {
        c->rx_len += (size_t)nread;
        process_frames(c);
        return;
    }
    c->hs_len += (size_t)nread;
    if (c->hs_len < c->hs_want)
        return;
    switch (c->state) {
    case S_WAIT_HELLO:
        on_hello(c);
        break;
    case S_WAIT_REPLY:
        on_reply(c);
        break;
    case S_WAIT_AUTH:
        on_auth(c);
        break;
    default:
        conn_close(c, -EPROTO);
    }
}

/* ---- accepting and connecting ---- */

static void on_connection(uv_stream_t *server, int status)
{
    us_transport *w = server->data;
    if (status < 0 || w->closing)
        return;
    us_conn *c = conn_new(w, K_IN);
    if (!c)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, -ECONNABORTED);
        return;
    }
    if (w->n_handshakes >= US_TRANSPORT_MAX_HANDSHAKES) {
        w->stats.overflow++;
        log_inbound(w, "too many handshakes at once");
        conn_close(c, -EBUSY);
        return;
    }
    w->n_handshakes++;
    c->counted_hs = true;
    tune(w, &c->tcp);
    c->state = S_WAIT_HELLO;
    c->hs_want = HELLO_LEN;
    uv_timer_start(&c->timer, on_timeout, US_TRANSPORT_HANDSHAKE_MS, 0);
    start_reading_tcp(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    us_conn *c = req->data;
    us_transport *w = c->w;
    if (c->state == S_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, -ECONNREFUSED);
        return;
    }
    tune(w, &c->tcp);
    memcpy(c->hello, MAGIC, 4);
    c->hello[4] = c->purpose;
    int n = w->keys->n;
    if (n < 1 || n > US_KEYS_MAX) {
        conn_close(c, -EACCES);
        return;
    }
    c->hello[5] = (unsigned char)n;
    memset(c->hello + 6, 0, 8);
    for (int i = 0; i < n; i++)
        put32(c->hello + 6 + 4 * i, w->keys->id[i]);
    randombytes_buf(c->hello + 14, NONCE_LEN);
    if (hs_write(c, c->hello, HELLO_LEN) != 0)
        return;
    c->state = S_WAIT_REPLY;
    c->hs_want = REPLY_LEN;
    start_reading_tcp(c);
}

static int start_connect(us_conn *c, const char *address, unsigned timeout_ms)
{
    struct sockaddr_in sa;
    snprintf(c->target, sizeof c->target, "%s", address);
    if (us_sockaddr_parse(address, &sa) != 0)
        return -EINVAL;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, on_connected);
    if (rc != 0)
        return rc;
    c->state = S_CONNECTING;
    uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
    return 0;
}

/* ---- struct raft_uv_transport ---- */

static int w_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    us_transport *w = t->impl;
    if (strlen(address) > US_TRANSPORT_NAME_MAX) {
        snprintf(t->errmsg, sizeof t->errmsg, "address too long");
        return RAFT_INVALID;
    }
    w->id = id;
    snprintf(w->address, sizeof w->address, "%s", address);
    return 0;
}

static int w_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    us_transport *w = t->impl;
    char err[256];
    int fd = us_tcp_listen(w->address, 128, 0, err, sizeof err);
    if (fd < 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "%.240s", err);
        return fd == -EINVAL ? RAFT_INVALID : RAFT_IOERR;
    }
    int rc = uv_tcp_open(&w->listener, fd);
    if (rc != 0)
        close(fd); /* not the handle's yet; once opened, closing the handle closes it */
    else
        rc = uv_listen((uv_stream_t *)&w->listener, 128, on_connection);
    if (rc != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "listen on %.200s: %s", w->address, uv_strerror(rc));
        return RAFT_IOERR;
    }
    w->accept_cb = cb;
    w->listening = true;
    return 0;
}

static int w_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    us_transport *w = t->impl;
    (void)id;
    if (w->closing)
        return RAFT_CANCELED;
    us_conn *c = conn_new(w, K_RAFT_OUT);
    if (!c)
        return RAFT_NOMEM;
    c->purpose = PURPOSE_RAFT;
    c->req = req;
    c->cb = cb;
    /* One SYN per attempt: TCP would send its second only after 1 s, so an attempt made while the
     * link is down would keep libraft from reconnecting for that long after it comes back. */
    unsigned timeout = w->user_timeout_ms / 2 > 150 ? w->user_timeout_ms / 2 : 150;
    if (start_connect(c, address, timeout) != 0) {
        c->req = NULL;
        conn_close(c, -ECONNREFUSED);
        return RAFT_NOCONNECTION;
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    us_transport *w = h->data;
    w->listener_open = false;
    maybe_closed(w);
}

static void w_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    us_transport *w = t->impl;
    w->closing = true;
    w->close_cb = cb;
    w->accept_cb = NULL;
    for (us_conn *c = w->conns; c; c = c->next)
        conn_close(c, -ECANCELED);
    if (w->listener_open && !uv_is_closing((uv_handle_t *)&w->listener))
        uv_close((uv_handle_t *)&w->listener, on_listener_closed);
}

int us_transport_init(us_transport *w, uv_loop_t *loop, unsigned user_timeout_ms,
                      const us_keyring *keys, const char *cluster, const char *self_name)
{
    if (!keys || keys->n < 1 || keys->n > US_KEYS_MAX || strlen(cluster) > US_TRANSPORT_NAME_MAX ||
        strlen(self_name) > US_TRANSPORT_NAME_MAX || self_name[0] == 0)
        return RAFT_INVALID;
    if (sodium_init() < 0)
        return RAFT_INVALID;
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->user_timeout_ms = user_timeout_ms;
    w->keys = keys;
    snprintf(w->cluster, sizeof w->cluster, "%s", cluster);
    snprintf(w->name, sizeof w->name, "%s", self_name);
    uv_tcp_init(loop, &w->listener);
    w->listener.data = w;
    w->listener_open = true;
    w->t.version = 1;
    w->t.data = NULL;
    w->t.impl = w;
    w->t.init = w_init;
    w->t.listen = w_listen;
    w->t.connect = w_connect;
    w->t.close = w_close;
    return 0;
}

void us_transport_close(us_transport *w)
{
    w->keys = NULL;
}

const us_transport_stats *us_transport_stats_get(const us_transport *w)
{
    return &w->stats;
}

/* ---- RPC ---- */

int us_transport_rpc(us_transport *w, const char *address, const char *body, size_t len,
                     unsigned timeout_ms, us_rpc_reply_cb cb, void *data)
{
    if (!cb || (!body && len))
        return -EINVAL;
    if (len > US_TRANSPORT_RPC_MAX)
        return -EMSGSIZE;
    if (w->closing)
        return -ESHUTDOWN;
    unsigned char *m = malloc(4 + len);
    if (!m)
        return -ENOMEM;
    put32(m, (uint32_t)len);
    if (len)
        memcpy(m + 4, body, len);
    us_conn *c = conn_new(w, K_RPC_OUT);
    if (!c) {
        free(m);
        return -ENOMEM;
    }
    c->purpose = PURPOSE_RPC;
    c->out_msg = m;
    c->out_len = 4 + len;
    int rc = start_connect(c, address, timeout_ms ? timeout_ms : 1);
    if (rc != 0) {
        conn_close(c, rc);
        return rc == -EINVAL ? -EINVAL : -ECONNREFUSED;
    }
    c->rcb = cb;
    c->rdata = data;
    return 0;
}

void us_transport_set_rpc_handler(us_transport *w, us_rpc_handler h, void *data)
{
    w->rpc_handler = h;
    w->rpc_data = data;
}

void us_rpc_respond(us_rpc_ctx *ctx, const char *body, size_t len)
{
    us_conn *c = ctx->c;
    free(ctx);
    if (!c)
        return;
    c->ctx = NULL;
    if (c->state != S_OPEN)
        return;
    if (len > US_TRANSPORT_RPC_MAX || (!body && len)) {
        conn_close(c, -EMSGSIZE);
        return;
    }
    unsigned char *m = malloc(4 + len);
    if (!m) {
        conn_close(c, -ENOMEM);
        return;
    }
    put32(m, (uint32_t)len);
    if (len)
        memcpy(m + 4, body, len);
    int rc = send_plain(c, m, 4 + len);
    free(m);
    if (rc == 0) {
        uv_timer_stop(&c->timer);
        c->close_after_write = true;
    }
}
