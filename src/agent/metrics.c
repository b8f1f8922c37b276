/* metrics.c — see metrics.h; docs/metrics.md describes every metric. */
#include "agent/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/hub.h"
#include "core/fsm.h"
#include "core/lease.h"
#include "lib/clock.h"
#include "lib/version.h"

/* ---- the agent's view ---- */

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define N_OF(x) ((int)(sizeof(x) / sizeof((x)[0])))

static void gauge(us_mtext *t, const char *name, const char *help)
{
    us_mtext_family(t, name, "gauge", help);
}

static void counter(us_mtext *t, const char *name, const char *help)
{
    us_mtext_family(t, name, "counter", help);
}

static us_node_state node_state(us_agent *a, const us_node *n)
{
    us_peer *p = us_agent_peer(a, n->name);
    return n->left ? US_NODE_LEFT : p ? us_agent_node_state(a, p) : US_NODE_DEAD;
}

static void cluster_metrics(us_mtext *t, us_agent *a)
{
    gauge(t, "understudy_build_info", "Version of the understudy agent (always 1).");
    us_mtext_sample(t, "understudy_build_info", L("version", US_VERSION), 1);
    gauge(t, "understudy_node_info", "The node this agent runs on (always 1).");
    us_mtext_sample(t, "understudy_node_info",
                    L("node", a->cfg.name, "cluster", a->cfg.cluster_name), 1);
    gauge(t, "understudy_up", "The agent answers (always 1).");
    us_mtext_sample(t, "understudy_up", NULL, 1);
    gauge(t, "understudy_cluster_has_quorum",
          "1 if this agent sees a leader with quorum (the leader: acknowledged by a quorum of "
          "voters recently).");
    us_mtext_sample(t, "understudy_cluster_has_quorum", NULL, us_agent_has_quorum(a));
    counter(t, "understudy_events_total",
            "Events recorded in the replicated history (the newest event's sequence number).");
    us_mtext_sample(t, "understudy_events_total", NULL, (double)a->fsm.state.event_seq);
    counter(t, "understudy_cluster_messages_rejected_total",
            "Cluster datagrams dropped unread, by reason: auth (not sealed with our key: forged, "
            "modified, another cluster's key), replay, malformed, unknown_sender, version.");
    for (int i = 0; i < US_NET_REJECT_COUNT; i++)
        us_mtext_sample(t, "understudy_cluster_messages_rejected_total",
                        L("reason", us_net_reject_name((us_net_reject_reason)i)),
                        (double)a->net.rejected[i]);
    const us_transport_stats *ts = us_transport_stats_get(&a->transport);
    counter(t, "understudy_raft_connections_total",
            "Inbound Raft and RPC connections on the cluster port, by outcome: accepted (both ends "
            "proved the cluster key), auth (a wrong key or proof), malformed, timeout (no "
            "handshake within 1 s), overflow (too many handshakes at once).");
    const struct {
        const char *result;
        uint64_t n;
    } conns[] = {{"accepted", ts->accepted},
                 {"auth", ts->rejected_auth},
                 {"malformed", ts->rejected_malformed},
                 {"timeout", ts->timeouts},
                 {"overflow", ts->overflow}};
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++)
        us_mtext_sample(t, "understudy_raft_connections_total", L("result", conns[i].result),
                        (double)conns[i].n);
}

static void node_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    static const us_node_state states[] = {US_NODE_ALIVE, US_NODE_SUSPECT, US_NODE_DEAD,
                                           US_NODE_LEFT};
    gauge(t, "understudy_node_state",
          "1 for the current state of each node as this agent sees it (alive, suspect, dead, "
          "left), 0 for the others.");
    for (int i = 0; i < s->n_nodes; i++) {
        us_node_state st = node_state(a, &s->nodes[i]);
        for (int k = 0; k < N_OF(states); k++)
            us_mtext_sample(t, "understudy_node_state",
                            L("node", s->nodes[i].name, "state", us_node_state_name(states[k])),
                            st == states[k]);
    }
    counter(t, "understudy_node_pings_received_total",
            "Pings this agent received from each node since it started: every heartbeat from the "
            "voters and the leader (and from every node when this one votes or leads), every few "
            "heartbeats between two non-voters (docs/timing.md, Who pings whom).");
    for (int i = 0; i < s->n_nodes; i++) {
        us_peer *p = us_agent_peer(a, s->nodes[i].name);
        if (p && p != &a->peers[a->self])
            us_mtext_sample(t, "understudy_node_pings_received_total", L("node", s->nodes[i].name),
                            (double)p->pings_rx);
    }
    gauge(t, "understudy_node_ping_interval_seconds",
          "How often each node said it pings this agent (its silence bounds stretch by as much).");
    for (int i = 0; i < s->n_nodes; i++) {
        us_peer *p = us_agent_peer(a, s->nodes[i].name);
        if (p && p != &a->peers[a->self] && p->last_seen_ms >= 0)
            us_mtext_sample(t, "understudy_node_ping_interval_seconds", L("node", s->nodes[i].name),
                            (p->interval_ms > 0 ? p->interval_ms : a->cfg.timing.heartbeat_ms) /
                                1000.0);
    }
    gauge(t, "understudy_node_voter", "1 if the node votes in Raft (and grants leases).");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_voter", L("node", s->nodes[i].name),
                        !s->nodes[i].left && us_agent_is_voter(a, s->nodes[i].id));
    gauge(t, "understudy_node_drained", "1 if the node is drained (understudy node drain).");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_drained", L("node", s->nodes[i].name),
                        s->nodes[i].drained);
    gauge(t, "understudy_node_leaving", "1 while the node's agent stops or the node is removed.");
    for (int i = 0; i < s->n_nodes; i++)
        us_mtext_sample(t, "understudy_node_leaving", L("node", s->nodes[i].name),
                        s->nodes[i].leaving);
}

static void service_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    static const char *const roles[] = {"active",     "demoting", "recovering",
                                        "restarting", "standby",  "none"};
    gauge(t, "understudy_service_epoch",
          "Fencing epoch of the service: grows by one each time the active role is given.");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_epoch", L("service", s->asg[k].service),
                        (double)s->asg[k].epoch);
    gauge(t, "understudy_service_active",
          "1 on the node that holds the active role of the service, 0 on the other nodes.");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++)
            if (!s->nodes[i].left)
                us_mtext_sample(t, "understudy_service_active",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                strcmp(s->asg[k].active, s->nodes[i].name) == 0);
    gauge(t, "understudy_service_role",
          "1 for each node's current role in the service (active, demoting, recovering, "
          "restarting, standby, none), 0 for the other roles.");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            if (s->nodes[i].left)
                continue;
            const char *role = us_assignment_role(&s->asg[k], s->nodes[i].name);
            for (int r = 0; r < N_OF(roles); r++)
                us_mtext_sample(
                    t, "understudy_service_role",
                    L("service", s->asg[k].service, "node", s->nodes[i].name, "role", roles[r]),
                    strcmp(role, roles[r]) == 0);
        }
    gauge(t, "understudy_service_paused", "1 while the service is paused (understudy pause).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_paused", L("service", s->asg[k].service),
                        s->asg[k].paused);

    counter(t, "understudy_service_failovers_total",
            "The active role moved to another node after its holder failed or was lost, by the "
            "cause of the release (replicated: the same on every agent).");
    for (int k = 0; k < s->services.n; k++)
        for (int c = 0; c < US_CAUSE_N; c++)
            us_mtext_sample(
                t, "understudy_service_failovers_total",
                L("service", s->asg[k].service, "cause", us_move_cause_name((us_move_cause)c)),
                (double)s->stats[k].failovers[c]);
    counter(t, "understudy_service_switchovers_total",
            "Planned switchovers completed: the role moved after its holder confirmed its "
            "demotion (replicated).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_switchovers_total", L("service", s->asg[k].service),
                        (double)s->stats[k].switchovers);
    counter(t, "understudy_service_restarts_in_place_total",
            "The active role given back to the node it was released from under a new epoch "
            "(replicated).");
    for (int k = 0; k < s->services.n; k++)
        us_mtext_sample(t, "understudy_service_restarts_in_place_total",
                        L("service", s->asg[k].service), (double)s->stats[k].restarts_in_place);

    gauge(t, "understudy_instance_healthy",
          "Health of each node's instance as last reported: 1 healthy, 0 unhealthy; absent while "
          "unknown (no checks, not running, or not yet rise passes).");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            us_report r;
            if (!s->nodes[i].left &&
                us_agent_report(a, s->nodes[i].name, s->asg[k].service, k, &r) &&
                r.obs.health != US_HEALTH_UNKNOWN)
                us_mtext_sample(t, "understudy_instance_healthy",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                r.obs.health == US_HEALTH_HEALTHY);
        }
    counter(t, "understudy_instance_restarts_total",
            "Standby process restarts each node's agent reported (counts from that agent's "
            "start).");
    for (int k = 0; k < s->services.n; k++)
        for (int i = 0; i < s->n_nodes; i++) {
            us_report r;
            if (!s->nodes[i].left && us_agent_report(a, s->nodes[i].name, s->asg[k].service, k, &r))
                us_mtext_sample(t, "understudy_instance_restarts_total",
                                L("service", s->asg[k].service, "node", s->nodes[i].name),
                                r.restarts);
        }
}

static void check_metrics(us_mtext *t, us_agent *a)
{
    const us_state *s = &a->fsm.state;
    us_mtext_family(t, "understudy_check_duration_seconds", "histogram",
                    "Duration of this node's health probes (all checks of a service run at once).");
    for (int k = 0; k < s->services.n; k++) {
        if (s->services.svc[k].n_checks == 0)
            continue;
        struct us_metrics_check *c = us_metrics_check_slot(&a->metrics, s->asg[k].service, true);
        us_mtext_histogram(t, "understudy_check_duration_seconds", L("service", s->asg[k].service),
                           &c->duration);
    }
    counter(t, "understudy_check_probes_total", "Health probes this node completed.");
    for (int k = 0; k < s->services.n; k++) {
        struct us_metrics_check *c = us_metrics_check_slot(&a->metrics, s->asg[k].service, false);
        if (c)
            us_mtext_sample(t, "understudy_check_probes_total", L("service", s->asg[k].service),
                            (double)c->probes);
    }
    counter(t, "understudy_check_failures_total",
            "Health probes of this node that failed (also during the start grace).");
    for (int k = 0; k < s->services.n; k++) {
        struct us_metrics_check *c = us_metrics_check_slot(&a->metrics, s->asg[k].service, false);
        if (c)
            us_mtext_sample(t, "understudy_check_failures_total", L("service", s->asg[k].service),
                            (double)c->failures);
    }
    us_mtext_family(t, "understudy_failover_duration_seconds", "histogram",
                    "Measured by the Raft leader: from the decision that released a failed or "
                    "lost holder until the new active on another node reported itself active.");
    us_mtext_histogram(t, "understudy_failover_duration_seconds", NULL, &a->metrics.failover);
}

static void raft_metrics(us_mtext *t, us_agent *a)
{
    int64_t now = us_now_ms();
    gauge(t, "understudy_lease_remaining_seconds",
          "How long this node may still act as active without another renewal (0 = no lease).");
    double left = a->lease_until_ms > now ? (double)(a->lease_until_ms - now) / 1000.0 : 0.0;
    us_mtext_sample(t, "understudy_lease_remaining_seconds", NULL, left);
    counter(t, "understudy_lease_renewals_reasked_total",
            "Lease renewal requests sent again within a heartbeat to a voter whose grant had not "
            "come back while a majority's had not (lost datagrams), since the agent started.");
    us_mtext_sample(t, "understudy_lease_renewals_reasked_total", NULL,
                    (double)a->metrics.renewals_reasked);
    gauge(t, "understudy_raft_term", "Current Raft term of this node.");
    us_mtext_sample(t, "understudy_raft_term", NULL,
                    a->raft_started ? (double)raft_current_term(&a->raft) : 0);
    gauge(t, "understudy_raft_commit_index", "Index of the last Raft entry known committed.");
    us_mtext_sample(t, "understudy_raft_commit_index", NULL,
                    a->raft_started ? (double)raft_commit_index(&a->raft) : 0);
    gauge(t, "understudy_raft_last_applied", "Index of the last Raft entry applied here.");
    us_mtext_sample(t, "understudy_raft_last_applied", NULL,
                    a->raft_started ? (double)raft_last_applied(&a->raft) : 0);
    us_consistency k;
    us_agent_consistency(a, us_now_ms(), &k);
    gauge(t, "understudy_state_stale",
          "1 while this node's state may be stale: not caught up with the leader (docs/api.md).");
    us_mtext_sample(t, "understudy_state_stale", NULL, k.stale);
    gauge(t, "understudy_raft_lag",
          "Entries the leader announced committed that this node has not applied yet.");
    if (k.has_commit)
        us_mtext_sample(t, "understudy_raft_lag", NULL,
                        k.commit > k.applied ? (double)(k.commit - k.applied) : 0);
    gauge(t, "understudy_raft_is_leader", "1 if this node is the Raft leader.");
    us_mtext_sample(t, "understudy_raft_is_leader", NULL, us_agent_is_leader(a));
    gauge(t, "understudy_raft_leader", "The Raft leader this node knows (1; absent if none).");
    char leader[US_NAME_MAX];
    if (us_agent_leader(a, leader, NULL))
        us_mtext_sample(t, "understudy_raft_leader", L("node", leader), 1);
    gauge(t, "understudy_raft_voters", "Voters in this node's view of the Raft configuration.");
    us_peer *voter[US_MAX_NODES];
    int voters = us_agent_voters(a, voter);
    us_mtext_sample(t, "understudy_raft_voters", NULL, voters);
    counter(t, "understudy_raft_leader_changes_total",
            "Raft leaders this agent saw take over (a new leader or a new term), since it "
            "started.");
    us_mtext_sample(t, "understudy_raft_leader_changes_total", NULL,
                    (double)a->metrics.leader_changes);
}

static void proxy_metrics(us_mtext *t, us_agent *a)
{
    us_proxy_stats st[US_MAX_SERVICES];
    const char *svc[US_MAX_SERVICES];
    int n = 0;
    for (int k = 0; k < US_MAX_SERVICES; k++) {
        us_proxy *px = us_proxies_at(&a->proxies, k, &svc[n]);
        if (px)
            us_proxy_get_stats(px, &st[n++]);
    }
    gauge(t, "understudy_proxy_connections",
          "Connections of this node's proxy: held (waiting for an active), connecting (to the "
          "backend), open (forwarding).");
    for (int i = 0; i < n; i++) {
        us_mtext_sample(t, "understudy_proxy_connections", L("service", svc[i], "state", "held"),
                        st[i].held);
        us_mtext_sample(t, "understudy_proxy_connections",
                        L("service", svc[i], "state", "connecting"), st[i].connecting);
        us_mtext_sample(t, "understudy_proxy_connections", L("service", svc[i], "state", "open"),
                        st[i].open);
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"understudy_proxy_connections_accepted_total",
         "Connections this node's proxy accepted (since the proxy started).",
         offsetof(us_proxy_stats, accepted)},
        {"understudy_proxy_connections_forwarded_total",
         "Accepted connections that reached a backend.", offsetof(us_proxy_stats, forwarded)},
        {"understudy_proxy_connections_failed_total",
         "Accepted connections reset without reaching a backend (no active, or the backend "
         "unreachable, within the hold time).",
         offsetof(us_proxy_stats, failed)},
        {"understudy_proxy_connections_refused_total",
         "Connections closed at accept because the proxy was at max_conns.",
         offsetof(us_proxy_stats, refused_limit)},
        {"understudy_proxy_connections_refused_source_total",
         "Connections closed at accept because their client address already held "
         "max_connections_per_source.",
         offsetof(us_proxy_stats, refused_source)},
        {"understudy_proxy_connections_idle_closed_total",
         "Forwarding connections closed after idle_timeout without a byte either way.",
         offsetof(us_proxy_stats, idle_closed)},
    };
    for (int c = 0; c < N_OF(counters); c++) {
        counter(t, counters[c].name, counters[c].help);
        for (int i = 0; i < n; i++)
            us_mtext_sample(t, counters[c].name, L("service", svc[i]),
                            (double)*(const uint64_t *)((const char *)&st[i] + counters[c].off));
    }
}

/* The standard process metrics (as Prometheus client libraries name them), from /proc/self. */
static void process_metrics(us_mtext *t)
{
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long start = 0;
    long rss = 0;
    bool have_stat = false;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* After the command name, which may hold spaces and parentheses: field 3 on. */
        const char *p = strrchr(buf, ')');
        have_stat = p && sscanf(p + 2,
                                "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
                                "%*d %*d %*d %llu %lu %ld",
                                &utime, &stime, &start, &vsize, &rss) == 5;
    }
    double btime = 0;
    f = fopen("/proc/stat", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lf", &btime) == 1)
                break;
        fclose(f);
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory stream's own descriptor */
    }
    struct rlimit rl;
    if (have_stat && tck > 0) {
        counter(t, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.");
        us_mtext_sample(t, "process_cpu_seconds_total", NULL,
                        (double)(utime + stime) / (double)tck);
        gauge(t, "process_start_time_seconds", "Start time of the process since the Unix epoch.");
        us_mtext_sample(t, "process_start_time_seconds", NULL, btime + (double)start / (double)tck);
        gauge(t, "process_resident_memory_bytes", "Resident memory size in bytes.");
        us_mtext_sample(t, "process_resident_memory_bytes", NULL, (double)rss * (double)page);
        gauge(t, "process_virtual_memory_bytes", "Virtual memory size in bytes.");
        us_mtext_sample(t, "process_virtual_memory_bytes", NULL, (double)vsize);
    }
    if (d) {
        gauge(t, "process_open_fds", "Number of open file descriptors.");
        us_mtext_sample(t, "process_open_fds", NULL, fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        gauge(t, "process_max_fds", "Maximum number of open file descriptors.");
        us_mtext_sample(t, "process_max_fds", NULL,
                        rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    }
}

void us_metrics_http(us_api_req *r, void *data)
{
    us_agent *a = data;
    if (strcmp(us_api_req_path(r), "/metrics") != 0) {
        us_api_reply_error(r, 404, "unknown path %s", us_api_req_path(r));
        return;
    }
    us_mtext t = {0};
    cluster_metrics(&t, a);
    node_metrics(&t, a);
    service_metrics(&t, a);
    check_metrics(&t, a);
    raft_metrics(&t, a);
    proxy_metrics(&t, a);
    process_metrics(&t);
    if (t.oom)
        us_api_reply_error(r, 500, "out of memory");
    else
        us_api_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", t.buf ? t.buf : "",
                          t.len);
    us_mtext_free(&t);
}
