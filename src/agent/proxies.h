/* proxies.h — the agent's failover-aware proxies: one us_proxy (node/proxy.h) per service that
 * declares `proxy = LISTEN -> PORT`, on every node. The target follows the replicated assignment:
 * the active node's backend while a node is active and no planned switchover is in progress, none
 * otherwise (the proxy then holds new connections).
 *
 * Plain state the agent embeds (zeroed = no proxies); the agent calls reconcile after every change
 * of the replicated state and on every tick (a proxy whose listener failed is retried). Knows
 * nothing of the agent: it reads the state it is given.
 */
#ifndef US_PROXIES_H
#define US_PROXIES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/fsm.h"
#include "node/proxy.h"

typedef struct us_proxies {
    struct us_proxy_slot {
        char service[US_NAME_MAX]; /* "" = free */
        char listen[US_ADDR_MAX];
        us_proxy *proxy; /* NULL while its listener could not be opened */
        bool has_target;
        struct sockaddr_in target;
        uint64_t epoch;
        int64_t retry_ms; /* after a failed start */
    } slot[US_MAX_SERVICES];
    int hi; /* slots ever used are below this (walks stop here) */
    /* Whether service i of the state declares a proxy, as read when its `touched` (fsm.h) was
     * seen[i] - 1 (0 = not read yet): a reconcile reads only the definitions that changed. */
    uint64_t seen[US_MAX_SERVICES];
    bool declares[US_MAX_SERVICES];
    /* Listening sockets handed over by the earlier agent (planned restart): used by the proxy
     * of the same service and address, closed if none claims them by expires_ms. */
    struct us_proxy_inherited {
        int fd; /* -1 or 0 with tag "" = none */
        char tag[108];
        int64_t expires_ms;
    } inherited[US_MAX_SERVICES];
    int n_inherited;
} us_proxies;

/* Start, retarget and stop proxies as the services and assignments of `s` say. */
void us_proxies_reconcile(us_proxies *x, uv_loop_t *loop, const us_state *s, int64_t now_ms);
/* Open proxied connections of this node's proxy for `service` under `epoch`. */
int us_proxies_open(const us_proxies *x, const char *service, uint64_t epoch);
/* Does service i of s declare a proxy (which runs on every node)? Read from the definition only
 * when it changed since the last reconcile. */
bool us_proxies_declared(const us_proxies *x, const us_state *s, int i);
/* The running proxy of `service` that listens on `listen`, or NULL. */
us_proxy *us_proxies_find(const us_proxies *x, const char *service, const char *listen);
/* The i-th running proxy (0..US_MAX_SERVICES-1, NULL for an empty slot) and its service. */
us_proxy *us_proxies_at(const us_proxies *x, int i, const char **service);
void us_proxies_stop_all(us_proxies *x);

/* Planned restart. The tag a listening socket travels with: "SERVICE LISTEN". */
void us_proxies_tag(const char *service, const char *listen, char *tag, size_t len);
/* Take a socket handed over with `tag`, to be claimed by its proxy until expires_ms. */
void us_proxies_inherit(us_proxies *x, int fd, const char *tag, int64_t expires_ms);
/* Stop accepting in every proxy; each listening socket goes to `give(fd, tag, arg)` and is closed
 * here afterwards. The number given. Open connections go on (us_proxies_idle). */
int us_proxies_release(us_proxies *x, int (*give)(int fd, const char *tag, void *arg), void *arg);
bool us_proxies_idle(const us_proxies *x);

#endif
