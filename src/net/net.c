/* net.c — see net.h. */
#include "net/net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/lease.h"
#include "lib/log.h"
#include "core/model.h"
#include "lib/clock.h"
#include "lib/hostport.h"

#define REJECT_LOG_GAP_MS 1000

const char *us_net_reject_name(us_net_reject_reason r)
{
    static const char *const names[US_NET_REJECT_COUNT] = {
        [US_NET_REJECT_AUTH] = "auth",           [US_NET_REJECT_REPLAY] = "replay",
        [US_NET_REJECT_MALFORMED] = "malformed", [US_NET_REJECT_UNKNOWN] = "unknown_sender",
        [US_NET_REJECT_VERSION] = "version",
    };
    return (unsigned)r < US_NET_REJECT_COUNT ? names[r] : "malformed";
}

/* A flood must not flood the log: one line a second at most, with what was dropped since. */
static void reject_log(us_net *n, us_net_reject_reason why, const char *who, const char *detail)
{
    int64_t now = us_now_ms();
    if (n->log_ms && now - n->log_ms < REJECT_LOG_GAP_MS)
        return;
    uint64_t since = 0;
    for (int i = 0; i < US_NET_REJECT_COUNT; i++) {
        since += n->rejected[i] - n->log_rejected[i];
        n->log_rejected[i] = n->rejected[i];
    }
    n->log_ms = now;
    us_warn("dropped a datagram from %s (%s%s%s); %llu dropped since the last such line", who,
            us_net_reject_name(why), detail && *detail ? ": " : "", detail ? detail : "",
            (unsigned long long)since);
}

void us_net_reject(us_net *n, us_net_reject_reason why, const char *sender, const char *detail)
{
    if ((unsigned)why >= US_NET_REJECT_COUNT)
        why = US_NET_REJECT_MALFORMED;
    n->rejected[why]++;
    reject_log(n, why, sender, detail);
}

static void reject_from(us_net *n, us_net_reject_reason why, const struct sockaddr *addr)
{
    char who[INET_ADDRSTRLEN + 8] = "?";
    if (addr && addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(who, sizeof who, "%s:%d", ip, ntohs(in->sin_port));
    }
    us_net_reject(n, why, who, NULL);
}

/* Single-threaded loop: one receive at a time, one payload being handled at a time. */
static unsigned char rx_slab[US_WIRE_MAX + 1];
static unsigned char rx_plain[US_WIRE_MAX + 1];

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = (char *)rx_slab;
    buf->len = US_WIRE_MAX;
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    us_net *n = h->data;
    if (nread <= 0 || !addr)
        return;
    if (addr->sa_family != AF_INET || (flags & UV_UDP_PARTIAL)) {
        reject_from(n, US_NET_REJECT_MALFORMED, addr);
        return;
    }
    us_wire_hdr hdr;
    size_t plen = 0;
    us_wire_result r = us_wire_open(n->keys, n->cluster, (const unsigned char *)buf->base,
                                    (size_t)nread, &hdr, rx_plain, &plen);
    if (r != US_WIRE_OK) {
        reject_from(n,
                    r == US_WIRE_AUTH      ? US_NET_REJECT_AUTH
                    : r == US_WIRE_VERSION ? US_NET_REJECT_VERSION
                                           : US_NET_REJECT_MALFORMED,
                    addr);
        return;
    }
    static us_msg msg; /* large: one at a time, like the buffers */
    const char *why = "too large";
    us_msg_result mr =
        plen <= US_NET_PAYLOAD_MAX ? us_msg_decode(rx_plain, plen, &msg, &why) : US_MSG_MALFORMED;
    if (mr == US_MSG_UNKNOWN) {
        us_debug("ignoring a datagram of a type this version does not know, from %s", hdr.sender);
        return;
    }
    if (mr != US_MSG_OK) {
        us_net_reject(n, US_NET_REJECT_MALFORMED, hdr.sender, why);
        return;
    }
    n->on_msg(&hdr, &msg, (const struct sockaddr_in *)addr, n->data);
}

/* One socket receives every peer's pings, pongs and lease reports: with 24 peers whose pings carry
 * their instance reports (~10 KB each at 1,000 services) a heartbeat's worth is ~0.5 MB, and the
 * kernel counts a 10 KB datagram as 16 KB or more. The default 208 KiB held about a dozen, so an
 * agent that missed one heartbeat (an apply, a burst of work) lost the rest at the socket and with
 * them lease renewals: on 25 agents placing 800 services, hundreds of drops a second
 * (RcvbufErrors) and then a lost lease. As root the size is forced past net.core.rmem_max. */
static void widen_buffers(us_net *n, const char *hostport)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&n->udp, &fd) != 0)
        return;
    static const struct {
        int force, plain;
        const char *what, *sysctl;
    } bufs[] = {
        {SO_RCVBUFFORCE, SO_RCVBUF, "receive", "net.core.rmem_max"},
        {SO_SNDBUFFORCE, SO_SNDBUF, "send", "net.core.wmem_max"},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        int want = US_NET_SOCKBUF;
        if (setsockopt(fd, SOL_SOCKET, bufs[i].force, &want, sizeof want) != 0)
            setsockopt(fd, SOL_SOCKET, bufs[i].plain, &want, sizeof want);
        int got = 0;
        socklen_t len = sizeof got;
        /* Linux reports twice what was set (its bookkeeping overhead). */
        if (getsockopt(fd, SOL_SOCKET, bufs[i].plain, &got, &len) == 0 && got / 2 < want)
            us_warn("UDP %s: %s buffer %d KiB, not the %d KiB asked for (not root; raise %s): "
                    "a burst of peers' datagrams may be dropped",
                    hostport, bufs[i].what, got / 2 / 1024, want / 1024, bufs[i].sysctl);
    }
}

int us_net_start(us_net *n, uv_loop_t *loop, const char *hostport, const us_keyring *keys,
                 const char *cluster, const char *self, uint64_t inc, us_net_msg_cb cb, void *data,
                 char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (us_sockaddr_parse(hostport, &sa) != 0) {
        snprintf(err, errlen, "bad address '%s'", hostport);
        return -EINVAL;
    }
    n->on_msg = cb;
    n->data = data;
    n->keys = keys;
    us_strlcpy(n->cluster, cluster, sizeof n->cluster);
    us_strlcpy(n->self, self, sizeof n->self);
    n->inc = inc;
    n->seq = 0;
    uv_udp_init(loop, &n->udp);
    n->udp.data = n;
    int rc = uv_udp_bind(&n->udp, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        widen_buffers(n, hostport);
    if (rc == 0)
        rc = uv_udp_recv_start(&n->udp, alloc_cb, recv_cb);
    if (rc != 0) {
        snprintf(err, errlen, "cannot bind UDP %s: %s", hostport,
                 rc == UV_EADDRINUSE ? "address already in use" : uv_strerror(rc));
        uv_close((uv_handle_t *)&n->udp, NULL);
        return rc;
    }
    return 0;
}

static void send_on(us_net *n, us_wire_hdr h, const struct sockaddr_in *to, const char *text,
                    size_t len)
{
    static unsigned char out[US_WIRE_MAX];
    us_strlcpy(h.sender, n->self, sizeof h.sender);
    size_t dlen = len <= US_NET_PAYLOAD_MAX
                      ? us_wire_seal(n->keys, n->cluster, &h, text, len, out, sizeof out)
                      : 0;
    if (dlen == 0) {
        us_error("a datagram of %zu bytes does not fit; not sent", len);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)dlen);
    /* Datagrams are small and the socket is rarely full: a failed try_send is like a lost packet.
     */
    uv_udp_try_send(&n->udp, &b, 1, (const struct sockaddr *)to);
}

void us_net_send_text(us_net *n, const struct sockaddr_in *to, uint64_t to_inc, const char *text,
                      size_t len)
{
    send_on(n,
            (us_wire_hdr){.chan = US_CHAN_AGENT, .inc = n->inc, .seq = ++n->seq, .to_inc = to_inc},
            to, text, len);
}

void us_net_send_fenced(us_net *n, const struct sockaddr_in *to, const char *text, size_t len)
{
    if (n->gseq == 0)
        n->gseq = 1ULL << 40; /* the guardian counts from 1 */
    send_on(n, (us_wire_hdr){.chan = US_CHAN_GUARDIAN, .inc = n->inc, .seq = ++n->gseq}, to, text,
            len);
}

void us_net_send(us_net *n, const struct sockaddr_in *to, uint64_t to_inc, const json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    us_net_send_text(n, to, to_inc, text, strlen(text));
    free(text);
}

void us_net_stop(us_net *n)
{
    uv_udp_recv_stop(&n->udp);
    uv_close((uv_handle_t *)&n->udp, NULL);
}
