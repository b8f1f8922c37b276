/* net.c — see net.h. */
#include "net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define US_DGRAM_MAX 65507

int us_sockaddr_parse(const char *hostport, struct sockaddr_in *sa)
{
    char host[64];
    int port;
    if (us_parse_hostport(hostport, host, sizeof host, &port) != 0)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char slab[US_DGRAM_MAX + 1]; /* single-threaded loop: one receive at a time */
    buf->base = slab;
    buf->len = US_DGRAM_MAX;
}

static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    (void)flags;
    us_net *n = h->data;
    if (nread <= 0 || !addr || addr->sa_family != AF_INET)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(buf->base, (size_t)nread, 0, &jerr);
    if (!json_is_object(msg)) {
        json_decref(msg);
        return;
    }
    n->on_msg(msg, (const struct sockaddr_in *)addr, n->data);
    json_decref(msg);
}

int us_net_start(us_net *n, uv_loop_t *loop, const char *hostport, us_net_msg_cb cb, void *data,
                 char *err, size_t errlen)
{
    struct sockaddr_in sa;
    if (us_sockaddr_parse(hostport, &sa) != 0) {
        snprintf(err, errlen, "bad address '%s'", hostport);
        return -EINVAL;
    }
    n->on_msg = cb;
    n->data = data;
    uv_udp_init(loop, &n->udp);
    n->udp.data = n;
    int rc = uv_udp_bind(&n->udp, (const struct sockaddr *)&sa, 0);
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

void us_net_send(us_net *n, const struct sockaddr_in *to, const json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    uv_buf_t b = uv_buf_init(text, (unsigned)strlen(text));
    /* Datagrams are small and the socket is rarely full: a failed try_send is like a lost packet.
     */
    uv_udp_try_send(&n->udp, &b, 1, (const struct sockaddr *)to);
    free(text);
}

void us_net_stop(us_net *n)
{
    uv_udp_recv_stop(&n->udp);
    uv_close((uv_handle_t *)&n->udp, NULL);
}
