/* proxies.c — the agent's failover-aware proxies: one us_proxy per service that declares
 * `proxy = LISTEN -> PORT`, on every node. The target follows the replicated assignment: the
 * active node's backend while a node is active and no planned switchover is in progress, none
 * otherwise (the proxy then holds new connections). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/reports.h"
#include "core/lease.h"
#include "lib/log.h"
#include "lib/clock.h"
#include "lib/hostport.h"

#define PROXY_RETRY_MS 2000

static struct us_agent_proxy *find(us_agent *a, const char *service)
{
    for (int i = 0; i < US_MAX_SERVICES; i++)
        if (a->proxies[i].proxy && strcmp(a->proxies[i].service, service) == 0)
            return &a->proxies[i];
    return NULL;
}

static void stop_one(struct us_agent_proxy *x)
{
    us_proxy_stop(x->proxy);
    memset(x, 0, sizeof *x);
}

/* The active's backend for `d`, or false while new connections must be held. */
static bool target_of(us_agent *a, const us_service_def *d, const us_assignment *as,
                      struct sockaddr_in *out)
{
    if (!as->active[0] || as->demoting)
        return false;
    char host[US_ADDR_MAX];
    if (d->backend_host[0]) {
        us_strlcpy(host, d->backend_host, sizeof host);
    } else {
        int n = us_state_find_node(&a->fsm.state, as->active);
        if (n < 0)
            return false;
        if (us_parse_hostport(a->fsm.state.nodes[n].address, host, sizeof host, NULL) != 0)
            return false;
    }
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)d->proxy_port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static void ensure(us_agent *a, const us_service_def *d, const us_assignment *as, int64_t now)
{
    struct us_agent_proxy *x = find(a, d->name);
    if (x && strcmp(x->listen, d->proxy_listen) != 0) {
        stop_one(x);
        x = NULL;
    }
    if (!x) {
        for (int i = 0; i < US_MAX_SERVICES && !x; i++)
            if (!a->proxies[i].proxy &&
                (a->proxies[i].service[0] == '\0' || strcmp(a->proxies[i].service, d->name) == 0))
                x = &a->proxies[i];
        if (!x || now < x->retry_ms)
            return;
        us_proxy_opts o = {.name = d->name,
                           .hold_ms = d->hold_ms,
                           .max_conns = d->max_conns,
                           .max_per_source = d->max_per_source,
                           .idle_ms = d->idle_ms};
        char err[256];
        if (us_proxy_start(a->loop, d->proxy_listen, &o, &x->proxy, err, sizeof err) != 0) {
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
    bool has = target_of(a, d, as, &t);
    if (has == x->has_target &&
        (!has || (x->epoch == as->epoch && t.sin_port == x->target.sin_port &&
                  t.sin_addr.s_addr == x->target.sin_addr.s_addr)))
        return;
    x->has_target = has;
    x->target = t;
    x->epoch = as->epoch;
    us_proxy_set_target(x->proxy, has ? &t : NULL, as->epoch);
}

void us_proxies_reconcile(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    int64_t now = us_now_ms();
    for (int i = 0; i < s->services.n; i++)
        if (s->services.svc[i].proxy_listen[0])
            ensure(a, &s->services.svc[i], &s->asg[i], now);
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        struct us_agent_proxy *x = &a->proxies[i];
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

int us_proxies_open(us_agent *a, const char *service, uint64_t epoch)
{
    struct us_agent_proxy *x = find(a, service);
    return x ? us_proxy_open_conns(x->proxy, epoch) : 0;
}

int us_proxies_open_total(us_agent *a, const char *service, uint64_t epoch)
{
    int total = us_proxies_open(a, service, epoch);
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        if (i == a->self || us_agent_node_state(a, p) == US_NODE_DEAD)
            continue;
        const us_report *r = us_report_find(p->reports, p->n_reports, service);
        if (r && r->px_epoch == epoch)
            total += r->px_open;
    }
    return total;
}

void us_proxies_stop_all(us_agent *a)
{
    for (int i = 0; i < US_MAX_SERVICES; i++)
        if (a->proxies[i].proxy)
            stop_one(&a->proxies[i]);
}
