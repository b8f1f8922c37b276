/* proxies.c — see proxies.h. */
#include "agent/proxies.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/hostport.h"

#define PROXY_RETRY_MS 2000

static struct us_proxy_slot *find(const us_proxies *xs, const char *service)
{
    for (int i = 0; i < xs->hi; i++)
        if (xs->slot[i].proxy && strcmp(xs->slot[i].service, service) == 0)
            return (struct us_proxy_slot *)&xs->slot[i];
    return NULL;
}

static void stop_one(struct us_proxy_slot *x)
{
    us_proxy_stop(x->proxy);
    memset(x, 0, sizeof *x);
}

/* The active's backend for `d`, or false while new connections must be held. */
static bool target_of(const us_state *s, const us_service_def *d, const us_assignment *as,
                      struct sockaddr_in *out)
{
    if (!as->active[0] || as->demoting)
        return false;
    char host[US_ADDR_MAX];
    if (d->backend_host[0]) {
        us_strlcpy(host, d->backend_host, sizeof host);
    } else {
        int n = us_state_find_node(s, as->active);
        if (n < 0)
            return false;
        if (us_parse_hostport(s->nodes[n].address, host, sizeof host, NULL) != 0)
            return false;
    }
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)d->proxy_port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static void ensure(us_proxies *xs, uv_loop_t *loop, const us_state *s, const us_service_def *d,
                   const us_assignment *as, int64_t now)
{
    struct us_proxy_slot *x = find(xs, d->name);
    if (x && strcmp(x->listen, d->proxy_listen) != 0) {
        stop_one(x);
        x = NULL;
    }
    if (!x) {
        for (int i = 0; i < xs->hi && !x; i++)
            if (!xs->slot[i].proxy &&
                (xs->slot[i].service[0] == '\0' || strcmp(xs->slot[i].service, d->name) == 0))
                x = &xs->slot[i];
        if (!x && xs->hi < US_MAX_SERVICES)
            x = &xs->slot[xs->hi++];
        if (!x || now < x->retry_ms)
            return;
        us_proxy_opts o = {.name = d->name,
                           .hold_ms = d->hold_ms,
                           .max_conns = d->max_conns,
                           .max_per_source = d->max_per_source,
                           .idle_ms = d->idle_ms};
        char err[256], tag[108];
        us_proxies_tag(d->name, d->proxy_listen, tag, sizeof tag);
        for (int i = 0; i < xs->n_inherited; i++)
            if (xs->inherited[i].tag[0] && strcmp(xs->inherited[i].tag, tag) == 0) {
                o.has_fd = true;
                o.fd = xs->inherited[i].fd;
                xs->inherited[i].tag[0] = '\0';
                us_info("proxy %s: listening socket %s handed over by the earlier agent", d->name,
                        d->proxy_listen);
                break;
            }
        if (us_proxy_start(loop, d->proxy_listen, &o, &x->proxy, err, sizeof err) != 0) {
            if (o.has_fd)
                close(o.fd);
            us_error("proxy %s: %s (retrying)", d->name, err);
            us_strlcpy(x->service, d->name, sizeof x->service);
            x->retry_ms = now + PROXY_RETRY_MS;
            x->proxy = NULL;
            return;
        }
        us_strlcpy(x->service, d->name, sizeof x->service);
        us_strlcpy(x->listen, d->proxy_listen, sizeof x->listen);
        x->has_target = false;
        x->retry_ms = 0;
        us_info("proxy %s listening on %s -> port %d of the active", d->name, d->proxy_listen,
                d->proxy_port);
    }
    struct sockaddr_in t;
    bool has = target_of(s, d, as, &t);
    if (has == x->has_target &&
        (!has || (x->epoch == as->epoch && t.sin_port == x->target.sin_port &&
                  t.sin_addr.s_addr == x->target.sin_addr.s_addr)))
        return;
    x->has_target = has;
    x->target = t;
    x->epoch = as->epoch;
    us_proxy_set_target(x->proxy, has ? &t : NULL, as->epoch);
}

void us_proxies_reconcile(us_proxies *xs, uv_loop_t *loop, const us_state *s, int64_t now)
{
    for (int i = 0; i < xs->n_inherited; i++)
        if (xs->inherited[i].tag[0] && now >= xs->inherited[i].expires_ms) {
            us_info("closing the handed-over listening socket \"%s\": no proxy claimed it",
                    xs->inherited[i].tag);
            close(xs->inherited[i].fd);
            xs->inherited[i].tag[0] = '\0';
        }
    for (int i = 0; i < s->services.n && i < US_MAX_SERVICES; i++) {
        if (xs->seen[i] != s->touched[i] + 1) { /* definitions are 20 KB apart: read few */
            xs->seen[i] = s->touched[i] + 1;
            xs->declares[i] = s->services.svc[i].proxy_listen[0] != '\0';
        }
        if (xs->declares[i])
            ensure(xs, loop, s, &s->services.svc[i], &s->asg[i], now);
    }
    for (int i = 0; i < xs->hi; i++) {
        struct us_proxy_slot *x = &xs->slot[i];
        if (!x->service[0])
            continue;
        int k = us_state_find_service(s, x->service);
        if (k < 0 || !s->services.svc[k].proxy_listen[0]) {
            if (x->proxy)
                us_info("proxy %s stopped (no longer declared)", x->service);
            if (x->proxy)
                stop_one(x);
            else
                memset(x, 0, sizeof *x);
        }
    }
}

bool us_proxies_declared(const us_proxies *xs, const us_state *s, int i)
{
    if (i < 0 || i >= s->services.n)
        return false;
    if (i < US_MAX_SERVICES && xs->seen[i] == s->touched[i] + 1)
        return xs->declares[i];
    return s->services.svc[i].proxy_listen[0] != '\0';
}

int us_proxies_open(const us_proxies *xs, const char *service, uint64_t epoch)
{
    struct us_proxy_slot *x = find(xs, service);
    return x ? us_proxy_open_conns(x->proxy, epoch) : 0;
}

us_proxy *us_proxies_find(const us_proxies *xs, const char *service, const char *listen)
{
    struct us_proxy_slot *x = find(xs, service);
    return x && strcmp(x->listen, listen) == 0 ? x->proxy : NULL;
}

us_proxy *us_proxies_at(const us_proxies *xs, int i, const char **service)
{
    if (i < 0 || i >= xs->hi || !xs->slot[i].proxy)
        return NULL;
    *service = xs->slot[i].service;
    return xs->slot[i].proxy;
}

void us_proxies_stop_all(us_proxies *xs)
{
    for (int i = 0; i < xs->hi; i++)
        if (xs->slot[i].proxy)
            stop_one(&xs->slot[i]);
    for (int i = 0; i < xs->n_inherited; i++)
        if (xs->inherited[i].tag[0]) {
            close(xs->inherited[i].fd);
            xs->inherited[i].tag[0] = '\0';
        }
}

void us_proxies_tag(const char *service, const char *listen, char *tag, size_t len)
{
    if (snprintf(tag, len, "%s %s", service, listen) >= (int)len)
        tag[0] = '\0'; /* cannot happen with the callers' buffers; an empty tag matches nothing */
}

void us_proxies_inherit(us_proxies *xs, int fd, const char *tag, int64_t expires_ms)
{
    if (xs->n_inherited >= US_MAX_SERVICES || !tag[0]) {
        close(fd);
        return;
    }
    struct us_proxy_inherited *h = &xs->inherited[xs->n_inherited++];
    h->fd = fd;
    us_strlcpy(h->tag, tag, sizeof h->tag);
    h->expires_ms = expires_ms;
}

int us_proxies_release(us_proxies *xs, int (*give)(int fd, const char *tag, void *arg), void *arg)
{
    int n = 0;
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        struct us_proxy_slot *x = &xs->slot[i];
        if (!x->proxy)
            continue;
        int fd = us_proxy_release_listener(x->proxy);
        if (fd < 0)
            continue;
        char tag[108];
        us_proxies_tag(x->service, x->listen, tag, sizeof tag);
        if (give(fd, tag, arg) == 0)
            n++;
        close(fd);
    }
    return n;
}

bool us_proxies_idle(const us_proxies *xs)
{
    for (int i = 0; i < US_MAX_SERVICES; i++)
        if (xs->slot[i].proxy && !us_proxy_idle(xs->slot[i].proxy))
            return false;
    return true;
}
