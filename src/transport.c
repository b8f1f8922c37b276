/* transport.c — see transport.h. */
#include "transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

typedef struct connect_req {
    struct raft_uv_connect req; /* handed to the inner transport */
    struct raft_uv_connect *orig;
    raft_uv_connect_cb cb;
    us_transport *w;
} connect_req;

static void tune(us_transport *w, struct uv_stream_s *stream)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)stream, &fd) != 0)
        return;
    unsigned ms = w->user_timeout_ms;
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
}

static int w_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    us_transport *w = t->impl;
    return w->inner.init(&w->inner, id, address);
}

static void w_accept(struct raft_uv_transport *inner, raft_id id, const char *address,
                     struct uv_stream_s *stream)
{
    us_transport *w = inner->data;
    tune(w, stream);
    w->accept_cb(&w->t, id, address, stream);
}

static int w_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    us_transport *w = t->impl;
    w->accept_cb = cb;
    return w->inner.listen(&w->inner, w_accept);
}

static void w_connected(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    connect_req *c = req->data;
    struct raft_uv_connect *orig = c->orig;
    raft_uv_connect_cb cb = c->cb;
    if (status == 0)
        tune(c->w, stream);
    free(c);
    cb(orig, stream, status);
}

static int w_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                     const char *address, raft_uv_connect_cb cb)
{
    us_transport *w = t->impl;
    connect_req *c = calloc(1, sizeof *c);
    if (!c)
        return RAFT_NOMEM;
    c->req.data = c;
    c->orig = req;
    c->cb = cb;
    c->w = w;
    int rc = w->inner.connect(&w->inner, &c->req, id, address, w_connected);
    if (rc != 0)
        free(c);
    return rc;
}

static void w_closed(struct raft_uv_transport *inner)
{
    us_transport *w = inner->data;
    if (w->close_cb)
        w->close_cb(&w->t);
}

static void w_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    us_transport *w = t->impl;
    w->close_cb = cb;
    w->inner.close(&w->inner, w_closed);
}

int us_transport_init(us_transport *w, uv_loop_t *loop, unsigned user_timeout_ms)
{
    w->inner.version = 1;
    w->inner.data = w;
    int rc = raft_uv_tcp_init(&w->inner, loop);
    if (rc != 0)
        return rc;
    w->inner.data = w; /* in case init reset it */
    w->user_timeout_ms = user_timeout_ms;
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
    raft_uv_tcp_close(&w->inner);
}
