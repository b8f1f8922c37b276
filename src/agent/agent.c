/* agent.c — the agent's wiring and lifecycle: Raft, datagrams, heartbeats and leases, signals.
 * See agent.h for how the agent is split, hub.h for the state its parts share, lease.h for the
 * lease protocol. */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_api.h"
#include "agent/hub.h"
#include "agent/raftdir.h"
#include "agent/reports.h"
#include "lib/durable.h"
#include "core/fanout.h"
#include "core/lease.h"
#include "lib/log.h"
#include "lib/clock.h"
#include "lib/hostport.h"
#include "lib/index.h"
#include "lib/listen.h"
#include "lib/mem.h"

#define JOIN_RETRY_MS 500
#define STOP_HANDOVER_MS 30000

static void begin_close(us_agent *a);
static void finish_close(us_agent *a);
static void restart_step(us_agent *a, int64_t now);
static int ctl_transfer(void *data, uint64_t to, us_change_done done, void *arg);
static void recompute_lease(us_agent *a, int64_t now);
static void build_view(us_agent *a, us_cluster_view *v);
static void schedule_reconcile(us_agent *a);
static void report_now(us_agent *a);

/* ---- peers ---- */

static us_peer *peer_add(us_agent *a, const char *name, const char *address)
{
    us_peer *p = us_agent_peer(a, name);
    if (!p) {
        if (a->n_peers >= US_MAX_NODES || !us_name_valid(name))
            return NULL;
        p = &a->peers[a->n_peers++];
        a->peers_gen++;
        memset(p, 0, offsetof(us_peer, reports)); /* (hub.h: the arrays after are filled) */
        us_strlcpy(p->name, name, sizeof p->name);
        p->id = us_node_id(name);
        p->last_seen_ms = -1;
        p->ack_ms = -1;
        p->leader_ci_ms = -1;
        p->lease = us_lease_grantee_new();
        p->granter = us_lease_granter_new();
        for (int i = 0; i < US_MAX_NODES; i++)
            p->about[i].rx_ms = -1;
    }
    if (address && address[0] && strcmp(p->address, address) != 0) {
        struct sockaddr_in sa;
        if (us_sockaddr_parse(address, &sa) == 0) {
            us_strlcpy(p->address, address, sizeof p->address);
            p->sa = sa;
            a->peers_gen++;
        }
    }
    return p;
}

/* The guardian announces a fencing to these addresses; told again only when they change. */
static void update_guardian_peers(us_agent *a)
{
    const char *addrs[US_MAX_NODES];
    int n = 0;
    uint64_t fp = US_FP_START;
    for (int i = 0; i < a->n_peers; i++)
        if (i != a->self && a->peers[i].address[0]) {
            addrs[n++] = a->peers[i].address;
            fp = us_fp_add(fp, a->peers[i].address);
        }
    if (fp == a->guardian_peers_fp)
        return;
    int rc = us_guardian_set_peers(a->guardian, addrs, n);
    if (rc != 0)
        us_error("the guardian's announcements cannot reach the %d other nodes: %s", n,
                 strerror(-rc));
    else
        a->guardian_peers_fp = fp;
}

/* Bring the peer table up to date with the replicated node list (after every apply: walked only
 * when the list or the table changed since the last time). */
static void sync_peers(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    uint64_t fp = US_FP_START;
    for (int i = 0; i < s->n_nodes; i++)
        fp = us_fp_add(us_fp_add(us_fp_add(fp, s->nodes[i].name), s->nodes[i].address),
                       s->nodes[i].api);
    if (fp == a->synced_nodes_fp && a->peers_gen == a->synced_peers_gen)
        return;
    for (int i = 0; i < s->n_nodes; i++) {
        us_peer *p = peer_add(a, s->nodes[i].name, s->nodes[i].address);
        if (p)
            p->node_idx = i;
        if (p && s->nodes[i].api[0])
            us_strlcpy(p->api, s->nodes[i].api, sizeof p->api);
    }
    a->synced_nodes_fp = fp;
    a->synced_peers_gen = a->peers_gen;
    update_guardian_peers(a);
}

/* ---- instance reports (reports.h) ---- */

/* The reports of this node's pings ("rep", and "rp" in the brief form, msg.h): a report per
 * instance, as text. When they differ from the last round's, a new generation begins (a->rep_gen):
 * a peer gets them until it answered a ping that carried this generation (send_pings, on_pong).
 * Written again only when they change. */
typedef struct own_reports {
    const char *full, *brief;
    size_t full_len, brief_len;
} own_reports;

/* A ping must fit in one datagram with room for the lease reports (64 x ~70 bytes) and the header,
 * or it is not sent at all and this node loses its lease: past that, the leader does not see the
 * last reports (docs/architecture.md, "Limits"). The brief form is smaller. */
#define REPORTS_BUDGET (US_NET_PAYLOAD_MAX - 8000)

static own_reports own_reports_text(us_agent *a)
{
    static us_report own[US_MAX_SERVICES]; /* single-threaded loop */
    static us_report last[US_MAX_SERVICES];
    static int n_last = -1;
    static char full[REPORTS_BUDGET], brief[REPORTS_BUDGET];
    static own_reports made;
    static uint64_t made_gen;
    int n = us_agent_own_reports(a, own);
    if (n != n_last || memcmp(own, last, sizeof own[0] * (size_t)n) != 0 || a->rep_gen == 0) {
        memcpy(last, own, sizeof own[0] * (size_t)n);
        n_last = n;
        a->rep_gen++;
    }
    if (made.full && made_gen == a->rep_gen)
        return made;
    int fit =
        us_msg_reports_text(full, sizeof full, own, n < US_MSG_REPORTS_MAX ? n : US_MSG_REPORTS_MAX,
                            false, &made.full_len);
    if (fit < n) {
        static int64_t warned_ms;
        int64_t now = us_now_ms();
        if (now - warned_ms > 60000) {
            warned_ms = now;
            us_error("%d instances on this node: a ping carries the reports of %d (a datagram "
                     "holds at most %d bytes), the leader does not see the others",
                     n, fit, US_NET_PAYLOAD_MAX);
        }
    }
    us_msg_reports_text(brief, sizeof brief, own, fit, true, &made.brief_len);
    made.full = full;
    made.brief = brief;
    made_gen = a->rep_gen;
    return made;
}

/* ---- Raft apply ---- */

/* ---- datagrams ----
 * net.c hands us only datagrams sealed with our key. Here: replay windows, and who may say what.
 * One handler per message type (msg_types below). A sender speaks only for itself: its name and
 * incarnation come from the sealed envelope, never from the payload; addresses come from the
 * replicated state, never from a datagram. A message that carries state (ping, pong, leave) is
 * acted on only when addressed to this incarnation of ours, so a capture replayed to a restarted
 * agent has no effect; otherwise we answer `hello` so that the sender learns our incarnation. */

static void send_to(us_agent *a, us_peer *p, json_t *msg)
{
    if (p && p->address[0])
        us_net_send(&a->net, &p->sa, p->wire_inc, msg);
    json_decref(msg);
}

static void on_ping(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    const us_msg_ping *g = &m->u.ping;
    /* Without "rep" (its guardian renewing the lease during a planned restart) the sender's
     * instances are as it last reported them. */
    bool changed = g->has_rep && (g->n_reports != p->n_reports ||
                                  memcmp(g->reports, p->reports,
                                         sizeof g->reports[0] * (size_t)g->n_reports) != 0);
    if (g->has_rep) {
        memcpy(p->reports, g->reports, sizeof g->reports[0] * (size_t)g->n_reports);
        p->n_reports = g->n_reports;
        p->reads_brief = g->reads_brief; /* the guardian's renewals (no "rep") do not say */
    }
    p->last_seen_ms = now;
    p->pings_rx++;
    if (g->vote && !p->votes_claim) {
        /* A voter we did not know of (its promotion not applied here yet): renew with it now,
         * not at our next heartbeat; it has known us for less than stale_after (lease.h). */
        p->ping_soon = true;
        report_now(a);
    }
    p->votes_claim = g->vote;
    p->interval_ms = g->interval_ms;
    if (h->inc != p->inc) {
        /* A restarted voter forgot its grants: its earlier reports mean nothing now. */
        for (int i = 0; i < US_MAX_NODES; i++)
            p->about[i].rx_ms = -1;
        p->inc = h->inc;
    }
    /* The incarnation whose instances it adopted (a planned restart): registration passes
     * that incarnation's active roles to it (controller.c, fsm.c). */
    p->adopt_inc = g->adopt;
    /* Its own API address, which it states for itself; registration commits it (controller.c). */
    if (g->has_api)
        us_strlcpy(p->api, g->api, sizeof p->api);
    if (g->has_av) /* its agent's own ping (the guardian's renewals say nothing of it) */
        us_strlcpy(p->service_host, g->service_host, sizeof p->service_host);
    /* Whether it leads: its agent's pings carry "ci" while it does (hasten_when_leaderless; the
     * guardian's stand-in renewals say nothing). */
    if (g->has_av)
        p->noci_pings = g->has_commit ? 0 : p->noci_pings + (p->noci_pings < INT_MAX);
    /* As Raft leader it tells its commit index: what we must have applied to be caught up. */
    if (g->has_commit && (p->leader_ci_ms < 0 || g->term > p->leader_ci_term ||
                          (g->term == p->leader_ci_term && g->commit >= p->leader_ci))) {
        p->leader_ci = g->commit;
        p->leader_ci_term = g->term;
        p->leader_ci_ms = now;
    }
    /* A changed report (failed, demoted) may let the leader act now instead of next tick. */
    if (a->leader && changed)
        schedule_reconcile(a);

    /* Acknowledge the sender's leadership only if Raft here agrees, in the same term. */
    raft_id leader_id = 0;
    const char *leader_addr = NULL;
    raft_leader(&a->raft, &leader_id, &leader_addr);
    bool ack = leader_id == p->id && g->term == raft_current_term(&a->raft);
    /* Leases are granted by every voter (lease.h), unless we revoked this node or it has not
     * applied the last change to its roles that we have: such a grant would count only once it
     * catches up, which a node cut off from the leader never does ("av", us_lease_lags). */
    bool self_votes = us_agent_is_voter(a, us_node_id(a->cfg.name));
    int ni = us_state_find_node_from(&a->fsm.state, p->name, p->node_idx);
    uint64_t rv = ni >= 0 ? a->fsm.state.nodes[ni].roles_v : a->fsm.state.version;
    bool lags = ni >= 0 && us_lease_lags(g->has_av, g->av, rv);
    bool grant = us_lease_grant(&p->lease, g->lease, lags, self_votes, now);
    for (int i = 0; i < g->n_leases; i++) {
        us_peer *about = us_agent_peer(a, g->leases[i].node);
        if (!about)
            continue;
        int k = (int)(about - a->peers);
        /* A voter newly reporting a node stale may end its role: judge now, not next tick. */
        if (a->leader && g->leases[i].stale && !p->about[k].stale) {
            us_debug("lease: %s reports %s stale (its version %llu)", p->name, about->name,
                     (unsigned long long)g->leases[i].v);
            schedule_reconcile(a);
        }
        p->about[k].age = g->leases[i].age;
        p->about[k].stale = g->leases[i].stale;
        p->about[k].v = g->leases[i].v;
        p->about[k].rx_ms = now;
    }
    /* What a pong carries is for the leader (acknowledgements), from a voter (grants) or about
     * reports (their acknowledgement). A node that neither votes nor leads answers only a ping
     * that carries reports or comes from the Raft leader: the pings between two such nodes, every
     * few heartbeats each way (fanout.h), were half of those a large cluster sent, and each
     * side's own pings tell the other that it lives. */
    if (!self_votes && !a->leader && !g->has_rep && leader_id != p->id)
        return;
    /* A removed node may miss the commit that says so: tell it whenever it shows up. A grant
     * counts for it once it applied the last change to its roles we know of (lease.h): "rv". */
    bool removed = a->leader && ni >= 0 && a->fsm.state.nodes[ni].left;
    us_msg_pong pong = {.round = g->round,
                        .v = a->fsm.state.version,
                        .rv = rv,
                        .ack = ack,
                        .grant = grant,
                        .removed = removed};
    char text[US_MSG_PONG_MAX];
    size_t len = us_msg_pong_text(text, sizeof text, &pong);
    if (len && p->address[0])
        us_net_send_text(&a->net, &p->sa, p->wire_inc, text, len);
}

/* A pong names the ping round it answers (`seq`, from the ping). */
static void on_pong(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    (void)h;
    const us_msg_pong *g = &m->u.pong;
    p->last_seen_ms = now;
    if (g->round == 0 || g->round > a->ping_seq || a->ping_seq - g->round >= 256)
        return; /* not one of our recent ping rounds */
    int slot = (int)(g->round % 256);
    int64_t sent_ms = a->sent[slot].ms;
    uint64_t acked = us_rep_run_acked(&p->rep_run, g->round);
    if (acked)
        p->rep_acked_gen = acked;
    if (g->ack && a->leader && a->sent[slot].as_leader && a->sent[slot].term == a->leader_term &&
        sent_ms > p->ack_ms)
        p->ack_ms = sent_ms;
    if (g->removed && a->stopping == 0) {
        us_info("the leader (%s) says this node was removed from the cluster; stopping", p->name);
        begin_close(a);
        return;
    }
    if (g->grant) {
        if (sent_ms > p->granter.t0)
            p->grant_v = g->v;
        us_lease_granter_update(&p->granter, sent_ms, g->rv, a->fsm.state.version);
        recompute_lease(a, now);
    }
}

static void on_hello(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    /* Learning its incarnation (on_msg) is all a hello is for. */
    (void)a, (void)p, (void)h, (void)m, (void)now;
}

/* The agent of our Raft leader died and its guardian said so (kill -9, a crash): the leader is
 * gone, yet libraft would wait out the election timeout (1-2 s) from its last heartbeat, and
 * each voter refuses its vote while it still follows a leader. Every voter hears the
 * announcement, so each lowers its election timeout to one heartbeat: libraft re-draws the
 * timer against the same last contact (in [T, 2T)), the voters leave the dead leader at their
 * next tick and elect one of them, and the configured timeout returns once another leader is
 * known (or after two configured timeouts). Only liveness is at stake: the announcement is
 * sealed by the node's key and names the incarnation that died, a new leader still waits out the
 * old holders' leases (lease.h), and a voter that left a live leader by mistake is refused by the
 * others' pre-votes (they still follow it) and returns at its next heartbeat. */
static void hasten_election(us_agent *a, const us_peer *p, int64_t now, us_hasten_why why)
{
    raft_id leader = 0;
    const char *addr = NULL;
    /* Once lowered, only an announced death replaces the reason (it ends differently). */
    if (!a->raft_started || raft_state(&a->raft) != RAFT_FOLLOWER ||
        (a->hasten_dead && (why != US_HASTEN_DEAD || a->hasten_why == US_HASTEN_DEAD)))
        return;
    raft_leader(&a->raft, &leader, &addr);
    if (leader == 0 || leader != p->id || !us_agent_is_voter(a, a->raft.id))
        return;
    /* A follower grants no (pre-)vote while it still has a leader, that is until its own timer
     * ran out; libraft looks at its timers at its ticks (every heartbeat). After a death the
     * guardian announced, the voters lower their timeout right away, before it ran out: one
     * heartbeat each, so a majority is free to vote within one or two ticks. On silence they
     * lower it suspect_ms after the last contact, when every such timer has run out already:
     * voters whose ticks are in phase (agents started together) would then all start at their
     * next tick and split the vote round after round (seen: 9 rounds, 1.7 s). So on silence, and
     * when the leader says it stepped down, they take turns: the one with the r-th lowest Raft id
     * of those other than the leader waits 1 + 2r heartbeats from the last contact. */
    int rank = 0;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; why != US_HASTEN_DEAD && i < c->n; i++)
        rank += c->servers[i].role == RAFT_VOTER && c->servers[i].id != leader &&
                c->servers[i].id < a->raft.id;
    unsigned fast = (unsigned)(a->cfg.timing.heartbeat_ms * (1 + 2 * rank));
    if (why == US_HASTEN_SILENT)
        us_info("the Raft leader %s has been silent for %lld ms with an active role at stake: "
                "election timeout %u ms until a leader is known or it is heard again",
                p->name, (long long)(now - p->last_seen_ms), fast);
    else if (why == US_HASTEN_STEPPED_DOWN)
        us_info("the Raft leader %s says it no longer leads: election timeout %u ms until a "
                "leader is known",
                p->name, fast);
    else
        us_info("the agent of the Raft leader %s died (its guardian says): election timeout %u ms "
                "until a leader is known",
                p->name, fast);
    a->hasten_dead = leader;
    a->hasten_why = why;
    a->hasten_until_ms = now + 2LL * a->cfg.timing.election_ms;
    raft_set_election_timeout(&a->raft, fast);
}

/* The same when our Raft leader has been silent (no datagram: it sends one every heartbeat) for
 * suspect_ms and an active role is at stake: the leader holds one, or another node that holds
 * one is silent too (the leader and an active on the minority side of a partition). Moving
 * that role needs a leader, and libraft waits out 1-2 election timeouts from the last contact;
 * lowered, the voters that lost the leader elect another one within about suspect_ms + a
 * heartbeat or three (in turns, above), before the holder's lease is out (stale_after), so the
 * election costs those services nothing. A voter that alone lost the leader is refused by the
 * others' pre-votes (they still hear it) and returns to the configured timeout when it hears the
 * leader again. While no active role is at stake the configured timeout runs: a leader change
 * costs no service anything then, and a busy machine is spared elections. */
static bool is_silent(const us_agent *a, const us_peer *p, int64_t now)
{
    return p->last_seen_ms >= 0 && now - p->last_seen_ms >= a->cfg.timing.suspect_ms;
}

/* And, whatever is at stake, when the leader is heard but says that it no longer leads: its
 * last two pings came without the commit index that a leader puts in every ping (libraft steps
 * a leader down when it missed a quorum's answers for an election timeout, e.g. while its Raft
 * connections were still coming back after its link did). That leader cannot come back without
 * an election, and the followers, whose timers its last heartbeats reset, would wait 1-2
 * election timeouts for one: a second or two without a leader, in which nothing can be moved
 * and no revocation lifted (lease.h: a voter cut off for stale_after revoked the actives, and
 * only a leader's renewal lifts that; until then each of them rests on the other voters alone,
 * and a fault on one of those took an active down in a chaos run). Two pings, not one: a ping
 * sent just before the node won its election may arrive after we learned that it leads. */
#define US_STEPPED_DOWN_PINGS 2

static void hasten_when_leaderless(us_agent *a, int64_t now)
{
    raft_id leader = 0;
    const char *addr = NULL;
    if (!a->raft_started || a->hasten_dead || raft_state(&a->raft) != RAFT_FOLLOWER)
        return;
    raft_leader(&a->raft, &leader, &addr);
    us_peer *p = leader ? us_agent_peer_by_id(a, leader) : NULL;
    if (!p || p == &a->peers[a->self])
        return;
    if (p->noci_pings >= US_STEPPED_DOWN_PINGS && !is_silent(a, p, now)) {
        hasten_election(a, p, now, US_HASTEN_STEPPED_DOWN);
        return;
    }
    if (!is_silent(a, p, now))
        return;
    /* A silent node holding an active role: the roles table (made once per state version), not
     * a walk over every assignment at each tick of the silence. */
    for (int i = 0; i < a->n_peers; i++) {
        uint64_t min, max;
        if (i != a->self && is_silent(a, &a->peers[i], now) &&
            us_agent_role_versions(a, &a->peers[i], &min, &max) > 0) {
            hasten_election(a, p, now, US_HASTEN_SILENT);
            return;
        }
    }
}

/* Back to the configured election timeout once another leader is known, we lead, the bound
 * passed, or (lowered for silence or a step-down) the leader is heard leading again
 * (track_leadership, every tick). */
static void hasten_election_end(us_agent *a, raft_id known, int64_t now)
{
    bool waiting = known == 0 || known == a->hasten_dead; /* for another leader */
    const us_peer *p =
        a->hasten_why != US_HASTEN_DEAD ? us_agent_peer_by_id(a, a->hasten_dead) : NULL;
    bool heard = p && p->last_seen_ms >= 0 && !is_silent(a, p, now) &&
                 (a->hasten_why != US_HASTEN_STEPPED_DOWN || p->noci_pings == 0);
    if (!a->hasten_dead || (waiting && !heard && now < a->hasten_until_ms))
        return;
    a->hasten_dead = 0;
    a->hasten_why = US_HASTEN_NONE;
    a->hasten_until_ms = 0;
    raft_set_election_timeout(&a->raft, (unsigned)a->cfg.timing.election_ms);
    us_info("election timeout back to %d ms (%s)", a->cfg.timing.election_ms,
            !waiting ? "a leader is known"
            : heard  ? "the leader is heard (leading) again"
                     : "no leader after two election timeouts");
}

/* The guardian's announcement (guardian.h), for the node that sent it and no other. */
static void on_fenced(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    const us_msg_fenced *f = &m->u.fenced;
    /* Kept on every node (cheap); only the leader's controller acts on it. */
    for (int i = 0; i < f->n; i++) {
        int k;
        for (k = 0; k < p->n_fenced; k++)
            if (strcmp(p->fenced_service[k], f->fenced[i].service) == 0)
                break;
        if (k == p->n_fenced) {
            if (p->n_fenced >= US_MAX_SERVICES)
                continue;
            p->n_fenced++;
        }
        us_strlcpy(p->fenced_service[k], f->fenced[i].service, US_NAME_MAX);
        p->fenced_epoch[k] = f->fenced[i].epoch;
        p->fenced_inc[k] = h->inc;
    }
    if (f->agent_dead) {
        p->dead_inc = h->inc;
        if (h->inc == p->inc)
            hasten_election(a, p, now, US_HASTEN_DEAD);
    }
    schedule_reconcile(a);
}

/* A node asks to join: it names itself (the sealed sender), or a member forwards its request. */
static void on_join(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    (void)now;
    const us_msg_join *j = &m->u.join;
    if (j->fwd ? !p : strcmp(j->name, h->sender) != 0) {
        us_net_reject(&a->net, US_NET_REJECT_MALFORMED, h->sender,
                      "a join request may only name its sender");
        return;
    }
    /* A name registered at another address is refused until that node is removed. */
    int k = us_state_find_node(&a->fsm.state, j->name);
    if (k >= 0 && !a->fsm.state.nodes[k].left &&
        strcmp(a->fsm.state.nodes[k].address, j->address)) {
        us_warn("refusing a join of %s at %s: registered at %s (remove it first)", j->name,
                j->address, a->fsm.state.nodes[k].address);
        return;
    }
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == us_node_id(j->name) &&
            strcmp(c->servers[i].address, j->address) != 0) {
            us_warn("refusing a join of %s at %s: a Raft member at %s (remove it first)", j->name,
                    j->address, c->servers[i].address);
            return;
        }
    if (a->leader) {
        static us_cluster_view view;
        build_view(a, &view);
        us_controller_join_request(&a->ctl, &view, j->name, j->address);
        return;
    }
    char leader[US_NAME_MAX];
    us_peer *lp = us_agent_leader(a, leader, NULL) ? us_agent_peer(a, leader) : NULL;
    if (lp && lp != &a->peers[a->self] && !j->fwd)
        send_to(a, lp,
                json_pack("{s:s, s:s, s:s, s:s, s:b}", "t", "join", "name", j->name, "address",
                          j->address, "api", j->api, "fwd", true));
}

static void on_leave(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m, int64_t now)
{
    (void)h, (void)m, (void)now;
    if (!a->leader)
        return;
    int i = us_state_find_node(&a->fsm.state, p->name);
    if (i >= 0 && !a->fsm.state.nodes[i].leaving)
        us_agent_apply(
            a, us_cmd_stamp(us_cmd_node_flags(p->name, true, false, false), us_wall_ms(), NULL),
            NULL, NULL);
}

typedef void (*msg_handler)(us_agent *a, us_peer *p, const us_wire_hdr *h, const us_msg *m,
                            int64_t now);

/* Every message type (msg.h): its channel, whether its sender must be a node we know, whether it
 * must be addressed to this incarnation of ours (state-carrying messages), and its handler. */
static const struct msg_type {
    us_wire_chan chan;
    bool member_only;
    bool current;
    msg_handler handle;
} msg_types[US_MSG_TYPES] = {
    [US_MSG_PING] = {US_CHAN_AGENT, true, true, on_ping},
    [US_MSG_PONG] = {US_CHAN_AGENT, true, true, on_pong},
    [US_MSG_HELLO] = {US_CHAN_AGENT, true, false, on_hello},
    [US_MSG_LEAVE] = {US_CHAN_AGENT, true, true, on_leave},
    [US_MSG_JOIN] = {US_CHAN_AGENT, false, false, on_join},
    [US_MSG_FENCED] = {US_CHAN_GUARDIAN, true, false, on_fenced},
};

/* The peer of this name, also one our peer table does not hold yet but the Raft configuration
 * does (a node that joined, before its registration committed): at its Raft address. */
static us_peer *known_peer(us_agent *a, const char *name)
{
    us_peer *p = us_agent_peer(a, name);
    if (p || !a->raft_started)
        return p;
    uint64_t id = us_node_id(name);
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return peer_add(a, name, c->servers[i].address);
    return NULL;
}

static void on_msg(const us_wire_hdr *h, const us_msg *msg, const struct sockaddr_in *from,
                   void *data)
{
    (void)from;
    us_agent *a = data;
    const struct msg_type *mt = &msg_types[msg->type];
    const char *t = us_msg_type_name(msg->type);
    if (mt->chan != h->chan) {
        us_net_reject(&a->net, US_NET_REJECT_MALFORMED, h->sender, "type on the wrong channel");
        return;
    }
    us_peer *p = known_peer(a, h->sender);
    if (p == &a->peers[a->self]) {
        us_net_reject(&a->net, US_NET_REJECT_REPLAY, h->sender, "our own datagram");
        return;
    }
    if (!p) {
        if (mt->member_only) {
            us_net_reject(&a->net, US_NET_REJECT_UNKNOWN, h->sender, t);
            return;
        }
        mt->handle(a, NULL, h, msg, us_now_ms());
        return;
    }
    /* An incarnation older than the one registered in the replicated state is a capture. */
    int k = us_state_find_node(&a->fsm.state, p->name);
    if (h->chan == US_CHAN_AGENT && k >= 0 && h->inc < a->fsm.state.nodes[k].incarnation) {
        us_net_reject(&a->net, US_NET_REJECT_REPLAY, h->sender, "older incarnation");
        return;
    }
    if (!us_replay_accept(&p->replay[h->chan], h->inc, h->seq)) {
        us_net_reject(&a->net, US_NET_REJECT_REPLAY, h->sender, t);
        return;
    }
    if (h->chan == US_CHAN_AGENT && h->inc > p->wire_inc) {
        p->wire_inc = h->inc;
        p->ping_soon = true;
        p->rep_acked_gen = 0; /* a new incarnation has none of our reports */
        p->rep_run = (us_rep_run){0};
        p->reads_brief = false; /* and may be another version: until its pings say so */
        report_now(a);          /* our next ping is addressed to this incarnation */
    }
    int64_t now = us_now_ms();
    if (mt->current && h->to_inc != a->inc) {
        /* Meant for an earlier incarnation of ours, or sent before it knew us: tell it who we
         * are (at most every 20 ms), act on nothing it says. */
        if (now - p->hello_ms >= 20 || p->hello_ms == 0) {
            p->hello_ms = now;
            send_to(a, p, json_pack("{s:s}", "t", "hello"));
        }
        return;
    }
    mt->handle(a, p, h, msg, now);
}

/* ---- the heartbeat tick ---- */

static void on_commit_timer(uv_timer_t *t);

typedef struct ready_barrier {
    struct raft_barrier req;
    us_agent *agent;
    uint64_t term;
} ready_barrier;

static void on_ready_barrier(struct raft_barrier *req, int status)
{
    ready_barrier *b = req->data;
    if (status == 0 && raft_current_term(&b->agent->raft) == b->term)
        b->agent->ready_term = b->term;
    b->agent->barrier_in_flight = false;
    free(b);
}

/* A new leader's state is current only once an entry of its own term has applied (Raft 5.4.2):
 * before that, entries of earlier terms it holds may not be committed yet, nor applied. */
static void barrier_new_term(us_agent *a, uint64_t term)
{
    ready_barrier *b = calloc(1, sizeof *b);
    if (!b)
        return;
    b->agent = a;
    b->term = term;
    b->req.data = b;
    int rc = raft_barrier(&a->raft, &b->req, on_ready_barrier);
    if (rc != 0) {
        us_debug("cannot start the barrier of term %llu: %s", (unsigned long long)term,
                 raft_strerror(rc));
        free(b);
        return;
    }
    a->barrier_in_flight = true;
}

static void track_leadership(us_agent *a)
{
    bool is_leader = raft_state(&a->raft) == RAFT_LEADER;
    uint64_t term = raft_current_term(&a->raft);
    raft_id known = 0;
    const char *known_addr = NULL;
    raft_leader(&a->raft, &known, &known_addr);
    us_metrics_leader_seen(&a->metrics, known, term);
    if (known != a->known_leader) {
        /* Its pings from before it led (one may still be on its way) say nothing now. */
        us_peer *kp = known ? us_agent_peer_by_id(a, known) : NULL;
        if (kp)
            kp->noci_pings = 0;
        a->known_leader = known;
    }
    hasten_election_end(a, known, us_now_ms());
    hasten_when_leaderless(a, us_now_ms());
    if (is_leader && (!a->leader || term != a->leader_term)) {
        /* Acknowledgements of an earlier leadership of ours do not count for this one. */
        a->leader_term = term;
        for (int i = 0; i < a->n_peers; i++)
            a->peers[i].ack_ms = -1;
        us_info("became leader in term %llu", (unsigned long long)term);
        us_controller_became_leader(&a->ctl, us_now_ms());
    } else if (!is_leader && a->leader) {
        us_info("no longer leader (term %llu)", (unsigned long long)term);
    }
    a->leader = is_leader;
    if (is_leader && a->ready_term != term && !a->barrier_in_flight)
        barrier_new_term(a, term); /* again if one failed */
}

/* Followers learn that an entry committed only from the leader's next AppendEntries, which libraft
 * sends when there is a new entry or at its heartbeat. So as soon as a command has applied here,
 * the leader appends a barrier: its AppendEntries carries the new commit index to every follower at
 * once (a promotion is seen by the promoted node one message after it committed), and the Raft
 * heartbeat can stay long (each heartbeat costs the leader a message to every follower). One
 * barrier at a time; another follows if commands applied while it was out. */
typedef struct commit_barrier {
    struct raft_barrier req;
    us_agent *agent;
} commit_barrier;

static void on_commit_barrier(struct raft_barrier *req, int status)
{
    commit_barrier *b = req->data;
    us_agent *a = b->agent;
    free(b);
    a->commit_in_flight = false;
    if (status == 0 && a->leader && a->fsm.state.version > a->commit_told_v && a->stopping != 2)
        uv_timer_start(&a->commit_timer, on_commit_timer, 0, 0);
}

static void on_commit_timer(uv_timer_t *t)
{
    us_agent *a = t->data;
    if (a->commit_in_flight || !a->leader || raft_state(&a->raft) != RAFT_LEADER ||
        a->fsm.state.version <= a->commit_told_v)
        return;
    commit_barrier *b = calloc(1, sizeof *b);
    if (!b)
        return;
    b->agent = a;
    b->req.data = b;
    int rc = raft_barrier(&a->raft, &b->req, on_commit_barrier);
    if (rc != 0) {
        us_debug("cannot append the commit barrier: %s", raft_strerror(rc));
        free(b);
        return;
    }
    a->commit_told_v = a->fsm.state.version;
    a->commit_in_flight = true;
}

/* Our lease: a majority of voters granted requests sent at t0 or later (us_lease_until). */
static void recompute_lease(us_agent *a, int64_t now)
{
    us_peer *voter[US_MAX_NODES];
    us_lease_granter g[US_MAX_NODES];
    int n = us_agent_voters(a, voter);
    for (int i = 0; i < n; i++) {
        us_peer *v = voter[i];
        g[i] = v == &a->peers[a->self] ? (us_lease_granter){.self = true}
               : v                     ? v->granter
                                       : us_lease_granter_new();
    }
    int64_t until =
        us_lease_until(&a->cfg.timing, g, n, a->fsm.state.version, now, a->lease_until_ms);
    if (until == a->lease_until_ms)
        return;
    a->lease_until_ms = until;
    us_guardian_lease(a->guardian, a->lease_until_ms * 1000000LL);
}

/* Revocations survive a restart: a voter that forgot one could grant a holder the leader already
 * counts as cut off. Written durably (durable.h), with `also` revoked at `also_v` besides the
 * revocations in effect (one being made: us_lease_revoke_saved); 0 once on disk, -errno (logged)
 * when not: then the file on disk still holds the previous revocations. */
static int save_revocations(us_agent *a, const us_peer *also, uint64_t also_v)
{
    char path[PATH_MAX + 16], err[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/revoked", a->cfg.data_dir);
    size_t cap = (size_t)a->n_peers * (US_NAME_MAX + 24) + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        us_error("cannot write %s: out of memory", path);
        return -ENOMEM;
    }
    buf[0] = '\0';
    for (int i = 0; i < a->n_peers; i++) {
        const us_peer *p = &a->peers[i];
        if (p == also || p->lease.revoked)
            len += (size_t)snprintf(
                buf + len, cap - len, "%s %llu\n", p->name,
                (unsigned long long)(p == also ? also_v : p->lease.revoked_version));
    }
    int rc = us_write_file_durable(path, buf, len, err, sizeof err);
    free(buf);
    if (rc != 0)
        us_error("revocations not saved: %s", err);
    return rc;
}

static void load_revocations(us_agent *a)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/revoked", a->cfg.data_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char name[US_NAME_MAX + 1];
    unsigned long long v;
    while (fscanf(f, "%64s %llu", name, &v) == 2) {
        us_peer *p = peer_add(a, name, NULL);
        if (p) {
            p->lease.revoked = true;
            p->lease.revoked_version = v;
        }
    }
    fclose(f);
}

/* As a voter: how long since we granted `p`, and revoke it once that is too long while it holds
 * an active role (us_lease_voter_report); a revocation takes effect once saved. */
static us_lease_report lease_report(us_agent *a, us_peer *p, int64_t now)
{
    uint64_t min_v, max_v;
    int held = us_agent_role_versions(a, p, &min_v, &max_v);
    us_lease_report r = us_lease_voter_report(&a->cfg.timing, &p->lease, held > 0, min_v,
                                              a->fsm.state.version, now, a->started_ms);
    if (r.unrevoke)
        save_revocations(a, NULL, 0);
    if (r.revoke) {
        int64_t t0 = us_now_ns();
        us_lease_revoke_saved(&p->lease, &r, save_revocations(a, p, r.v) == 0);
        us_debug("lease: revoked %s at version %llu (our last grant %lld ms ago; saved in %.1f ms)",
                 p->name, (unsigned long long)r.v, (long long)r.age,
                 (double)(us_now_ns() - t0) / 1e6);
    }
    return r;
}

static us_lease_state judge_lease(us_agent *a, us_peer *p, int64_t now, bool *revoked)
{
    int idx = (int)(p - a->peers);
    /* A stale report made before the holder got (or renewed) its current role says nothing
     * about it. */
    uint64_t min_v, role_version;
    us_agent_role_versions(a, p, &min_v, &role_version);
    us_lease_seen seen[US_MAX_NODES];
    int voters = 0, n = 0;
    bool holder_votes = false;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role != RAFT_VOTER)
            continue;
        voters++;
        us_peer *v = us_agent_peer_by_id(a, c->servers[i].id);
        if (v == p) {
            holder_votes = true;
            continue;
        }
        if (!v || n >= US_MAX_NODES)
            continue;
        if (v == &a->peers[a->self]) {
            /* Our own grants, judged like a report we would send. */
            us_lease_report r = lease_report(a, p, now);
            seen[n++] = (us_lease_seen){.age = r.age, .stale = r.stale, .v = r.v, .rx_ms = now};
            continue;
        }
        seen[n++] = v->about[idx];
    }
    if (revoked) {
        int64_t heard = p == &a->peers[a->self] ? now : p->last_seen_ms;
        *revoked = us_lease_renewal_due(&a->cfg.timing, voters, holder_votes, seen, n, role_version,
                                        heard, now);
    }
    return us_lease_judge_holder(&a->cfg.timing, voters, holder_votes, seen, n, role_version, now);
}

/* One ping round's payloads, each encoded once for all the peers it goes to: to voters (with our
 * lease reports if we vote), to non-voters every heartbeat, to non-voters every few heartbeats
 * (without lease reports: only voters judge leases). */
enum { PING_TO_VOTER, PING_EVERY_HEARTBEAT, PING_SLOW, PING_KINDS };

/* Whether a ping carries our reports, and in which form (msg.h): "rp" to a peer that said it reads
 * it, "rep" to one that did not (an older version refuses "rp"). */
enum { REP_NONE, REP_FULL, REP_BRIEF, REP_FORMS };

typedef struct ping_round {
    us_msg_ping *p;                    /* the fields every kind shares; leases only go to voters */
    own_reports rep;                   /* our instance reports, full and brief */
    int slow_ms;                       /* "iv" of the slow kind */
    size_t len[PING_KINDS][REP_FORMS]; /* by kind and reports form, once written (0 = not yet) */
} ping_round;

static const char *ping_text(us_agent *a, ping_round *r, int kind, int form, size_t *len)
{
    static char text[PING_KINDS][REP_FORMS][US_NET_PAYLOAD_MAX];
    if (!r->len[kind][form]) {
        us_msg_ping *p = r->p;
        int n_leases = p->n_leases;
        if (kind != PING_TO_VOTER)
            p->n_leases = 0; /* only voters judge leases */
        p->interval_ms = kind == PING_SLOW ? r->slow_ms : a->cfg.timing.heartbeat_ms;
        r->len[kind][form] = us_msg_ping_text(text[kind][form], sizeof text[kind][form], p,
                                              form == REP_FULL    ? r->rep.full
                                              : form == REP_BRIEF ? r->rep.brief
                                                                  : NULL,
                                              form == REP_FULL ? r->rep.full_len : r->rep.brief_len,
                                              form == REP_BRIEF);
        p->n_leases = n_leases;
        if (!r->len[kind][form])
            return NULL;
    }
    *len = r->len[kind][form];
    return text[kind][form];
}

/* A ping round. To the peers `only` marks (by peer index) if given: the voters whose renewal we
 * ask again (reask_renewals). On a heartbeat (`tick`): every peer on the lease path (fanout.h:
 * every voter, the leader, and everyone when we vote or lead), the slow peers whose turn it is, and
 * those we owe a ping (ping_soon). Off the heartbeat (a report changed, a revocation, a new
 * incarnation heard): the lease path and those we owe one. A slow peer gets changed reports on its
 * next turn: sending them to every peer at once made each change cost 2N datagrams, and a burst of
 * changes (a placement of many services) starved the lease path on a small machine. */
static void send_pings(us_agent *a, int64_t now, bool tick, const bool *only)
{
    uint64_t seq = ++a->ping_seq;
    a->sent[seq % 256].ms = now;
    a->sent[seq % 256].term = a->leader_term;
    a->sent[seq % 256].as_leader = a->leader;
    raft_id leader_id = 0;
    const char *leader_addr = NULL;
    raft_leader(&a->raft, &leader_id, &leader_addr);
    bool self_votes = us_agent_is_voter(a, us_node_id(a->cfg.name));
    /* Which peers are on the lease path; how many are slow (their period grows with them). */
    bool full[US_MAX_NODES];
    int n_slow = 0;
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        us_fanout_pair pair = {
            .self_votes = self_votes,
            .self_leads = a->leader,
            .peer_votes = us_agent_is_voter(a, p->id) || p->votes_claim,
            .peer_leads = leader_id == p->id,
            .peer_unheard =
                p->inc == 0 ||
                p->last_seen_ms<0, .peer_slow = p->interval_ms> a->cfg.timing.heartbeat_ms,
        };
        full[i] = us_fanout_every_heartbeat(&pair);
        n_slow += i != a->self && !full[i];
    }
    int k = us_fanout_slow_heartbeats(n_slow);
    static us_msg_ping fields; /* large (its reports are not used here): single-threaded loop */
    ping_round r = {.p = &fields, .slow_ms = k * a->cfg.timing.heartbeat_ms};
    r.rep = own_reports_text(a);
    memset(&fields, 0, offsetof(us_msg_ping, reports));
    fields.round = seq;
    fields.has_api = true;
    us_strlcpy(fields.api, a->cfg.api, sizeof fields.api);
    us_strlcpy(fields.service_host, a->cfg.service_host, sizeof fields.service_host);
    fields.term = raft_current_term(&a->raft);
    fields.lease = true;
    fields.vote = self_votes;
    fields.reads_brief = true;
    if (us_agent_is_leader(a)) { /* followers judge whether they caught up by it */
        fields.has_commit = true;
        fields.commit = raft_commit_index(&a->raft);
    }
    fields.adopt = a->adopt_inc;
    fields.has_av = true; /* voters refuse a renewal that lags their view of our roles */
    fields.av = a->fsm.state.version;
    /* Renewals go to every peer on the lease path, not only to the voters we know of: a voter
     * whose promotion we have not applied yet says so in its own pings, which it sends us every
     * heartbeat. Our lease reports are made every round (a revocation is made as it falls due)
     * and go to the voters: the leader, and whoever leads next, judges by them. */
    if (self_votes) {
        for (int i = 0; i < a->n_peers && fields.n_leases < US_MAX_NODES; i++)
            if (i != a->self) {
                us_lease_report lr = lease_report(a, &a->peers[i], now);
                us_msg_lease *l = &fields.leases[fields.n_leases++];
                us_strlcpy(l->node, a->peers[i].name, sizeof l->node);
                l->age = lr.age;
                l->stale = lr.stale;
                l->v = lr.v;
            }
    }
    /* The holders of the active roles of the services we proxy (fanout.h: they count our open
     * connections when they hand a role over). */
    bool proxied[US_MAX_NODES] = {false};
    for (int i = 0; i < a->proxies.hi; i++) {
        const char *svc;
        int j =
            us_proxies_at(&a->proxies, i, &svc) ? us_state_find_service(&a->fsm.state, svc) : -1;
        us_peer *holder = j >= 0 ? us_agent_peer(a, a->fsm.state.asg[j].active) : NULL;
        if (holder)
            proxied[holder - a->peers] = true;
    }
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        if (i == a->self || !p->address[0] || us_agent_node_state(a, p) == US_NODE_LEFT)
            continue;
        bool was_slow = p->slow;
        p->slow = !full[i];
        bool peer_votes = us_agent_is_voter(a, p->id) || p->votes_claim;
        us_fanout_rep fr = {.peer_leads = leader_id == p->id,
                            .leader_known = leader_id != 0,
                            .peer_votes = peer_votes,
                            .peer_proxied = proxied[i],
                            .owed = p->rep_acked_gen != a->rep_gen,
                            .since_ms = now - p->rep_sent_ms,
                            .heartbeat_ms = a->cfg.timing.heartbeat_ms};
        bool with_rep = us_fanout_with_reports(&fr);
        /* A slow peer: on its turn, or at once when it just became slow (its silence bounds
         * stretch only with the "iv" of a ping), or when we owe it one. Off the heartbeat (our
         * reports changed, a revocation fell due) a peer on the lease path gets a ping only if it
         * leads or gets our reports: the others hear from us at the next heartbeat. */
        bool send = only ? only[i]
                         : (full[i] && (tick || us_fanout_reports_urgent(&fr) || with_rep)) ||
                               p->ping_soon || (p->slow && !was_slow) ||
                               (tick && us_fanout_slow_due(a->ticks, p->id, k));
        if (!send)
            continue;
        p->ping_soon = false;
        int kind = peer_votes ? PING_TO_VOTER : full[i] ? PING_EVERY_HEARTBEAT : PING_SLOW;
        us_rep_run_sent(&p->rep_run, seq, with_rep ? a->rep_gen : 0);
        if (with_rep)
            p->rep_sent_ms = now;
        size_t len;
        const char *text = ping_text(a, &r, kind,
                                     !with_rep        ? REP_NONE
                                     : p->reads_brief ? REP_BRIEF
                                                      : REP_FULL,
                                     &len);
        if (text)
            us_net_send_text(&a->net, &p->sa, p->wire_inc, text, len);
    }
}

static void send_join(us_agent *a, int64_t now)
{
    if (a->cfg.n_join == 0 || now < a->next_join_ms)
        return;
    raft_id leader_id = 0;
    const char *leader_addr = NULL;
    raft_leader(&a->raft, &leader_id, &leader_addr);
    if (leader_id != 0 && us_state_find_node(&a->fsm.state, a->cfg.name) >= 0)
        return; /* in the cluster */
    a->next_join_ms = now + JOIN_RETRY_MS;
    json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "t", "join", "name", a->cfg.name, "address",
                          a->cfg.address, "api", a->cfg.api);
    for (int i = 0; i < a->cfg.n_join; i++) {
        struct sockaddr_in sa;
        if (us_sockaddr_parse(a->cfg.join[i], &sa) == 0)
            us_net_send(&a->net, &sa, 0, m);
    }
    json_decref(m);
}

static void hand_over_done(void *arg, int status)
{
    (void)status;
    begin_close(arg);
}

/* Maintenance stop: ask to leave, wait until no active role is ours, hand leadership over. */
static void stop_step(us_agent *a, int64_t now)
{
    if (a->stopping != 1)
        return;
    if (now >= a->stop_deadline_ms) {
        us_warn("hand-over did not finish in time; stopping anyway");
        begin_close(a);
        return;
    }
    char leader[US_NAME_MAX];
    if (!us_agent_leader(a, leader, NULL)) {
        /* A leadership transfer or an election in progress (SIGTERM right after a promotion
         * meets the leader handing leadership off the active's node): wait for its leader,
         * bounded, rather than leave by killing. */
        if (a->stop_no_leader_ms == 0)
            a->stop_no_leader_ms = now;
        if (now - a->stop_no_leader_ms < 2LL * a->cfg.timing.election_ms)
            return;
        us_warn("no leader to hand over to for %lld ms; stopping",
                (long long)(now - a->stop_no_leader_ms));
        begin_close(a);
        return;
    }
    a->stop_no_leader_ms = 0;
    const us_state *s = &a->fsm.state;
    int me = us_state_find_node(s, a->cfg.name);
    if (me >= 0 && !s->nodes[me].leaving) {
        if (a->leader) {
            if (a->applies_in_flight == 0)
                us_agent_apply(a,
                               us_cmd_stamp(us_cmd_node_flags(a->cfg.name, true, false, false),
                                            us_wall_ms(), NULL),
                               NULL, NULL);
        } else {
            send_to(a, us_agent_peer(a, leader), json_pack("{s:s}", "t", "leave"));
        }
        return;
    }
    if (us_state_holds_active(s, a->cfg.name))
        return; /* still ours: the switchover is in progress */
    if (us_instances_busy(a->instances))
        return;
    if (a->leader && us_controller_hand_over(&a->ctl, hand_over_done, a) == 0) {
        us_info("handed over; transferring leadership");
        return;
    }
    if (!a->leader) {
        us_info("handed over all active roles; stopping");
        begin_close(a);
    }
}

/* A node that comes back (partition healed, restart) may have cached a stale MAC for a VIP:
 * announce again whenever more peers are alive than at the last tick. */
static void reannounce_on_return(us_agent *a)
{
    int alive = 0;
    for (int i = 0; i < a->n_peers; i++)
        alive += i != a->self && us_agent_node_state(a, &a->peers[i]) == US_NODE_ALIVE;
    if (alive > a->alive_peers && a->alive_peers >= 0)
        us_instances_reannounce(a->instances);
    a->alive_peers = alive;
}

/* systemd: READY once this agent has joined (a leader is known and our registration, with this
 * process's incarnation, is in the replicated state), and a one-line STATUS. */
static void sd_update(us_agent *a)
{
    if (!a->sd.enabled)
        return;
    char leader[US_NAME_MAX], st[US_NAME_MAX + sizeof a->sd_active.text + 32];
    bool have_leader = us_agent_leader(a, leader, NULL);
    const us_state *s = &a->fsm.state;
    int me = us_state_find_node(s, a->cfg.name);
    bool registered = me >= 0 && s->nodes[me].incarnation == a->inc;
    if (a->stopping) {
        snprintf(st, sizeof st, "%s",
                 a->stopping == 1 ? "stopping: handing over active roles" : "stopping");
    } else if (!have_leader) {
        snprintf(st, sizeof st, "waiting for a Raft leader");
    } else if (!registered) {
        snprintf(st, sizeof st, "leader %s; joining", leader);
    } else {
        int64_t now = us_now_ms();
        if (a->sd_active.v != s->version &&
            (a->sd_active.at_ms == 0 || now - a->sd_active.at_ms >= 1000)) {
            char *t = a->sd_active.text;
            size_t cap = sizeof a->sd_active.text, n = 0;
            t[0] = '\0';
            for (int k = 0; k < s->services.n && n < cap; k++)
                if (strcmp(s->asg[k].active, a->cfg.name) == 0) {
                    int w = snprintf(t + n, cap - n, "%s%s", n ? ", " : "", s->asg[k].service);
                    n += w > 0 ? (size_t)w : 0;
                }
            a->sd_active.v = s->version;
            a->sd_active.at_ms = now;
        }
        snprintf(st, sizeof st, "leader %s; active here: %s", leader,
                 a->sd_active.text[0] ? a->sd_active.text : "none");
    }
    us_sd_status(&a->sd, st);
    if (a->raft_started && have_leader && registered && a->stopping == 0)
        us_sd_ready(&a->sd);
}

/* ---- the controller's view and environment (controller.h) ---- */

static void build_view(us_agent *a, us_cluster_view *v)
{
    static us_report own[US_MAX_SERVICES]; /* this node's reports, as its peers get them */
    memset(v, 0, sizeof *v);
    v->now_ms = us_now_ms();
    v->now_ns = us_now_ns();
    v->wall_ms = us_wall_ms();
    v->leader = a->leader;
    v->closing = a->stopping == 2;
    v->has_quorum = us_agent_fresh_quorum(a, v->now_ms);
    v->state = &a->fsm.state;
    v->applies_in_flight = a->applies_in_flight;
    v->config_uncommitted = a->raft.configuration_uncommitted_index != 0;
    const struct raft_configuration *c = &a->raft.configuration;
    for (unsigned i = 0; i < c->n && v->n_members < US_MAX_MEMBERS; i++) {
        us_view_member *m = &v->members[v->n_members++];
        m->id = c->servers[i].id;
        m->role = c->servers[i].role == RAFT_VOTER     ? US_MEMBER_VOTER
                  : c->servers[i].role == RAFT_STANDBY ? US_MEMBER_STANDBY
                                                       : US_MEMBER_SPARE;
    }
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        us_view_node *n = &v->nodes[v->n_nodes++];
        us_strlcpy(n->name, p->name, sizeof n->name);
        n->id = p->id;
        us_strlcpy(n->address, p->address, sizeof n->address);
        us_strlcpy(n->api, p->api, sizeof n->api);
        us_strlcpy(n->service_host, p == &a->peers[a->self] ? a->cfg.service_host : p->service_host,
                   sizeof n->service_host);
        n->self = i == a->self;
        n->inc = p->inc;
        n->state = us_agent_node_state(a, p);
        n->last_seen_ms = p->last_seen_ms;
        n->dead_inc = p->dead_inc;
        n->version = i == a->self ? a->fsm.state.version : p->grant_v;
        n->adopts = p->adopt_inc;
        if (n->self) {
            n->n_reports = us_agent_own_reports(a, own);
            n->reports = own;
        } else {
            n->n_reports = p->n_reports;
            n->reports = p->reports;
        }
        n->n_fenced = p->n_fenced;
        n->fenced_service = (const char(*)[US_NAME_MAX])p->fenced_service;
        n->fenced_epoch = p->fenced_epoch;
        n->fenced_inc = p->fenced_inc;
    }
}

static void controller_tick(us_agent *a)
{
    static us_cluster_view view;
    build_view(a, &view);
    us_controller_tick(&a->ctl, &view);
}

static int ctl_propose(void *data, json_t *cmd, us_propose_done done, void *arg)
{
    return us_agent_apply(data, cmd, done, arg);
}

typedef struct member_req {
    struct raft_change req;
    us_change_done done;
    void *arg;
} member_req;

static void member_cb(struct raft_change *req, int status)
{
    member_req *m = req->data;
    m->done(m->arg, status);
    free(m);
}

static member_req *member_req_new(us_change_done done, void *arg)
{
    member_req *m = calloc(1, sizeof *m);
    if (m) {
        m->done = done;
        m->arg = arg;
        m->req.data = m;
    }
    return m;
}

static int ctl_add(void *data, uint64_t id, const char *address, us_change_done done, void *arg)
{
    us_agent *a = data;
    member_req *m = member_req_new(done, arg);
    int rc = m ? raft_add(&a->raft, &m->req, id, address, member_cb) : RAFT_NOMEM;
    if (rc != 0)
        free(m);
    return rc;
}

static int ctl_assign(void *data, uint64_t id, us_member_role role, us_change_done done, void *arg)
{
    us_agent *a = data;
    member_req *m = member_req_new(done, arg);
    int r = role == US_MEMBER_VOTER     ? RAFT_VOTER
            : role == US_MEMBER_STANDBY ? RAFT_STANDBY
                                        : RAFT_SPARE;
    int rc = m ? raft_assign(&a->raft, &m->req, id, r, member_cb) : RAFT_NOMEM;
    if (rc != 0) {
        us_warn("cannot assign raft role to %llx: %s (configuration change pending at index %llu, "
                "committed %llu, commit index %llu)",
                (unsigned long long)id, raft_strerror(rc),
                (unsigned long long)a->raft.configuration_uncommitted_index,
                (unsigned long long)a->raft.configuration_committed_index,
                (unsigned long long)a->raft.commit_index);
        free(m);
    }
    return rc;
}

static int ctl_remove(void *data, uint64_t id, us_change_done done, void *arg)
{
    us_agent *a = data;
    member_req *m = member_req_new(done, arg);
    int rc = m ? raft_remove(&a->raft, &m->req, id, member_cb) : RAFT_NOMEM;
    if (rc != 0)
        free(m);
    return rc;
}

typedef struct transfer_req {
    struct raft_transfer req;
    us_change_done done;
    void *arg;
} transfer_req;

static void transfer_cb(struct raft_transfer *req)
{
    transfer_req *t = req->data;
    us_change_done done = t->done;
    void *arg = t->arg;
    free(t);
    done(arg, 0);
}

static int ctl_transfer(void *data, uint64_t to, us_change_done done, void *arg)
{
    us_agent *a = data;
    transfer_req *t = calloc(1, sizeof *t);
    if (!t)
        return RAFT_NOMEM;
    t->done = done;
    t->arg = arg;
    t->req.data = t;
    int rc = raft_transfer(&a->raft, &t->req, to, transfer_cb);
    if (rc != 0)
        free(t);
    return rc;
}

static us_lease_state ctl_judge_lease(void *data, const char *node, int64_t now_ms, bool *revoked)
{
    us_peer *p = us_agent_peer(data, node);
    if (revoked)
        *revoked = false;
    return p ? judge_lease(data, p, now_ms, revoked) : US_LEASE_UNKNOWN;
}

static bool ctl_is_leader(void *data)
{
    us_agent *a = data;
    return a->leader;
}

static void ctl_schedule_reconcile(void *data)
{
    schedule_reconcile(data);
}

static void wake_cb(uv_timer_t *t)
{
    schedule_reconcile(t->data);
}

static void ctl_wake(void *data, int64_t delay_ms)
{
    us_agent *a = data;
    uv_timer_start(&a->wake_timer, wake_cb, (uint64_t)delay_ms, 0);
}

static void ctl_failover(void *data, double secs)
{
    us_agent *a = data;
    us_histogram_observe(&a->metrics.failover, secs);
}

static int64_t ctl_wall_ms(void *data)
{
    (void)data;
    return us_wall_ms();
}

static void controller_init(us_agent *a)
{
    us_controller_init(&a->ctl, &(us_controller_env){
                                    .cfg = &a->cfg,
                                    .data = a,
                                    .propose = ctl_propose,
                                    .add = ctl_add,
                                    .assign = ctl_assign,
                                    .remove = ctl_remove,
                                    .transfer = ctl_transfer,
                                    .strerror = raft_strerror,
                                    .judge_lease = ctl_judge_lease,
                                    .is_leader = ctl_is_leader,
                                    .schedule_reconcile = ctl_schedule_reconcile,
                                    .wake = ctl_wake,
                                    .failover = ctl_failover,
                                    .wall_ms = ctl_wall_ms,
                                });
}

static void on_revoke_timer(uv_timer_t *t)
{
    report_now(t->data);
}

/* As a voter: if a holder's grant goes stale before our next heartbeat, report at that moment
 * (the revocation, then the stale report to the leader) instead of up to a heartbeat later. */
static void arm_revoke_timer(us_agent *a, int64_t now)
{
    if (!us_agent_is_voter(a, us_node_id(a->cfg.name)))
        return;
    int64_t next = -1;
    for (int i = 0; i < a->n_peers; i++) {
        us_peer *p = &a->peers[i];
        if (i == a->self)
            continue;
        uint64_t min_v, max_v;
        int64_t due =
            us_lease_revoke_due(&a->cfg.timing, &p->lease,
                                us_agent_role_versions(a, p, &min_v, &max_v) > 0, a->started_ms);
        if (due > now && due < now + a->cfg.timing.heartbeat_ms && (next < 0 || due < next))
            next = due;
    }
    if (next > 0)
        uv_timer_start(&a->revoke_timer, on_revoke_timer, (uint64_t)(next - now), 0);
}

/* A voter's loop runs at voter_nice (us_node_config): every node's lease renewals wait for the
 * voters' answers, so a voter starved by its machine's load stops the whole cluster's actives,
 * while a starved non-voter stops only its own. Changed when our vote changes; one warning if the
 * system refuses (no CAP_SYS_NICE). Linux nice values are per thread: this is the loop's. */
static void follow_voter_priority(us_agent *a, bool votes)
{
    int want = votes && a->cfg.voter_nice < a->base_nice ? a->cfg.voter_nice : a->base_nice;
    if (want == a->nice || a->nice_refused)
        return;
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), want) != 0) {
        a->nice_refused = true;
        us_warn("cannot run the loop at nice %d as a voter (%s): a voter that the load on this "
                "machine keeps waiting delays every node's lease renewals (voter_nice needs "
                "CAP_SYS_NICE)",
                want, strerror(errno));
        return;
    }
    us_info("%s: loop priority nice %d", votes ? "a voter" : "not a voter", want);
    a->nice = want;
}

/* Once, when our lease comes within demote_before of its end (our actives stop): why — each
 * voter's latest grant and whether it counts yet (it waits until we applied our roles as that
 * voter had them), and how late this tick ran (the agent not scheduled). */
static void log_lease_short(us_agent *a, int64_t now)
{
    bool short_now =
        a->lease_until_ms > 0 && !us_agent_lease_ok(a, now, a->cfg.timing.demote_before_ms);
    int64_t late = a->tick_ms > 0 ? now - a->tick_ms - a->cfg.timing.heartbeat_ms : 0;
    a->tick_ms = now;
    if (short_now == a->lease_short)
        return;
    a->lease_short = short_now;
    if (!short_now)
        return;
    char why[1024];
    size_t w = 0;
    us_peer *voter[US_MAX_NODES];
    int n = us_agent_voters(a, voter);
    for (int i = 0; i < n && w < sizeof why; i++) {
        us_peer *v = voter[i];
        if (!v || v == &a->peers[a->self])
            continue;
        const us_lease_granter *g = &v->granter;
        int r = snprintf(why + w, sizeof why - w, " %s: %lld ms ago at v%llu%s", v->name,
                         g->t0 >= 0 ? (long long)(now - g->t0) : -1LL, (unsigned long long)g->v,
                         g->v <= a->fsm.state.version ? "" : " (not yet)");
        if (r > 0)
            w += (size_t)r;
    }
    us_info("lease: %lld ms left (applied v%llu, this tick %lld ms late); latest grants:%s",
            (long long)(a->lease_until_ms - now), (unsigned long long)a->fsm.state.version,
            (long long)late, w ? why : " none");
}

/* Renewals asked again within the heartbeat (lease.h us_lease_reask): a quarter heartbeat after
 * the heartbeat's round, then twice more, to the voters whose grant is missing while a majority's
 * is. Only while we hold or are given an active role: nobody else acts on a lease, and a cluster
 * whose voters answer slowly under load should not get more requests from every node. */
static void on_reask_timer(uv_timer_t *t)
{
    us_agent *a = t->data;
    if (a->stopping == 2 || a->round_ms < 0 || !us_state_holds_active(&a->fsm.state, a->cfg.name))
        return;
    us_peer *voter[US_MAX_NODES];
    us_lease_granter g[US_MAX_NODES];
    bool reask[US_MAX_NODES], only[US_MAX_NODES] = {false};
    int n = us_agent_voters(a, voter);
    for (int i = 0; i < n; i++)
        g[i] = voter[i] == &a->peers[a->self] ? (us_lease_granter){.self = true}
               : voter[i]                     ? voter[i]->granter
                                              : us_lease_granter_new();
    int k = 0;
    if (us_lease_reask(g, n, a->round_ms, reask) > 0)
        for (int i = 0; i < n; i++)
            if (reask[i] && voter[i] && voter[i]->address[0]) { /* one we can reach */
                only[voter[i] - a->peers] = true;
                k++;
            }
    if (k == 0)
        return;
    a->metrics.renewals_reasked += (uint64_t)k;
    send_pings(a, us_now_ms(), false, only);
    if (++a->reasks < 3)
        uv_timer_start(&a->reask_timer, on_reask_timer, (uint64_t)a->cfg.timing.heartbeat_ms / 4,
                       0);
}

static void arm_reask_timer(us_agent *a, int64_t now)
{
    a->round_ms = -1;
    if (!us_state_holds_active(&a->fsm.state, a->cfg.name))
        return;
    a->round_ms = now;
    a->reasks = 0;
    uv_timer_start(&a->reask_timer, on_reask_timer, (uint64_t)a->cfg.timing.heartbeat_ms / 4, 0);
}

static void on_tick(uv_timer_t *t)
{
    us_agent *a = t->data;
    if (a->stopping == 2)
        return;
    int64_t now = us_now_ms();
    track_leadership(a);
    recompute_lease(a, now);
    log_lease_short(a, now);
    if (a->raft_started)
        follow_voter_priority(a, us_agent_is_voter(a, us_node_id(a->cfg.name)));
    a->ticks++;
    send_pings(a, now, true, NULL);
    arm_reask_timer(a, now);
    arm_revoke_timer(a, now);
    send_join(a, now);
    if (a->lease_until_ms > 0)
        us_guardian_lease(a->guardian, a->lease_until_ms * 1000000LL);
    if (a->leader)
        controller_tick(a);
    us_instances_reconcile(a->instances);
    us_proxies_reconcile(&a->proxies, a->loop, &a->fsm.state, us_now_ms());
    reannounce_on_return(a);
    stop_step(a, now);
    restart_step(a, now);
    sd_update(a);
    us_mem_trim(now, 2000); /* what a large answer, apply or snapshot freed goes back */
    unsigned threshold = us_snapshot_threshold(
        a->fsm.snapshot_bytes, (unsigned)(us_node_id(a->cfg.name) % US_SNAPSHOT_SPREAD));
    if (threshold != a->snapshot_threshold) {
        raft_set_snapshot_threshold(&a->raft, threshold);
        a->snapshot_threshold = threshold;
    }
}

static void on_reconcile(uv_timer_t *t)
{
    us_agent *a = t->data;
    if (a->stopping == 2)
        return;
    us_instances_reconcile(a->instances);
    us_proxies_reconcile(&a->proxies, a->loop, &a->fsm.state, us_now_ms());
    if (a->leader)
        controller_tick(a);
}

static void schedule_reconcile(us_agent *a)
{
    if (a->stopping != 2 && !uv_is_active((uv_handle_t *)&a->reconcile_timer))
        uv_timer_start(&a->reconcile_timer, on_reconcile, 0, 0);
}

static void on_report_timer(uv_timer_t *t)
{
    us_agent *a = t->data;
    if (a->stopping == 2)
        return;
    send_pings(a, us_now_ms(), false, NULL);
    if (a->leader)
        schedule_reconcile(a); /* our own report feeds our own controller */
}

static void report_now(us_agent *a)
{
    if (a->stopping != 2 && a->raft_started && !uv_is_active((uv_handle_t *)&a->report_timer))
        uv_timer_start(&a->report_timer, on_report_timer, 0, 0);
}

static void on_fsm_change(void *data)
{
    us_agent *a = data;
    if (a->leader && a->stopping != 2 && a->raft_started)
        uv_timer_start(&a->commit_timer, on_commit_timer, 0, 0);
    sync_peers(a);
    int me = us_state_find_node(&a->fsm.state, a->cfg.name);
    if (me >= 0 && a->fsm.state.nodes[me].left && a->stopping == 0) {
        /* Nothing to hand over: the removal moved the roles away first. */
        us_info("this node was removed from the cluster; stopping");
        begin_close(a);
        return;
    }
    if (me >= 0 && a->fsm.state.nodes[me].roles_v != a->own_roles_v) {
        /* A change to our roles: the voters that applied it before us refused our renewals
         * since (us_lease_lags). Renew with them now, not at our next heartbeat. */
        a->own_roles_v = a->fsm.state.nodes[me].roles_v;
        for (int i = 0; i < a->n_peers; i++)
            if (i != a->self && us_agent_is_voter(a, a->peers[i].id))
                a->peers[i].ping_soon = true;
        report_now(a);
    }
    sd_update(a); /* our registration may just have committed */
    schedule_reconcile(a);
}

static void on_guardian(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    us_agent *a = h->data;
    us_guardian_event ev;
    int rc;
    while ((rc = us_guardian_read_event(a->guardian, &ev)) == 1)
        us_instances_guardian_event(a->instances, &ev);
    if (rc < 0 && a->stopping < 2) {
        /* Without its guardian this node cannot promise to fence itself: stop acting, exit. */
        us_error("the guardian process is gone (%s); stopping", strerror(-rc));
        a->exit_code = 1;
        uv_poll_stop(h);
        begin_close(a);
    }
}

/* ---- planned restart (SIGUSR2, docs/operations.md "Upgrading the agent") ----
 * The agent exits at once (bounded: a promotion or demotion in progress finishes first, and a
 * leader hands leadership over first), leaving its active and standby processes, their VIPs and
 * the proxies' listening sockets to its guardian, which fences them by the last lease deadline
 * and waits for the next agent at DATA_DIR/run/guardian.sock. The next agent started with the
 * same data dir adopts them (us_agent_main) if it is back before that deadline. */

#define RESTART_SETTLE_MS 5000
#define RESTART_TRANSFER_MS 1000
#define RESTART_DRAIN_MS 500
#define RESTART_RENEW_MS 50
/* How long the guardian renews the lease in the agent's stead: the next agent must be back by
 * then, or the guardian fences at the lease end. */
#define RESTART_WINDOW_MS 10000LL

static int give_to_guardian(int fd, const char *tag, void *arg)
{
    us_agent *a = arg;
    int rc = us_guardian_pass_fd(a->guardian, fd, tag);
    if (rc != 0)
        us_error("SIGUSR2: cannot hand the listening socket \"%s\" over: %s", tag, strerror(-rc));
    return rc;
}

static void guardian_sock_path(const us_node_config *cfg, char *buf, size_t len)
{
    snprintf(buf, len, "%s/run/guardian.sock", cfg->data_dir);
}

static void restart_transfer_done(void *arg, int status)
{
    (void)arg;
    if (status != 0)
        us_warn("SIGUSR2: leadership transfer failed (%d); an election follows", status);
}

static void restart_exit(us_agent *a)
{
    if (a->stopping == 2)
        return;
    a->stopping = 2;
    us_sd_stopping(&a->sd);
    uv_timer_stop(&a->tick);
    char path[PATH_MAX + 32];
    guardian_sock_path(&a->cfg, path, sizeof path);
    us_instances_detach(a->instances);
    /* The guardian renews the lease in our stead (bounded by RESTART_WINDOW_MS) on our own
     * datagram socket, as our incarnation, with the voters we know. */
    us_peer *vp[US_MAX_NODES];
    us_guardian_voter gv[US_MAX_NODES];
    int nv = 0, n = us_agent_voters(a, vp);
    for (int i = 0; i < n; i++) {
        if (!vp[i])
            continue;
        memset(&gv[nv], 0, sizeof gv[nv]);
        us_strlcpy(gv[nv].name, vp[i]->name, sizeof gv[nv].name);
        us_strlcpy(gv[nv].address, vp[i]->address, sizeof gv[nv].address);
        gv[nv].inc = vp[i]->wire_inc;
        gv[nv].self = vp[i] == &a->peers[a->self];
        nv++;
    }
    uv_os_fd_t udp = -1;
    if (uv_fileno((uv_handle_t *)&a->net.udp, &udp) != 0 ||
        us_guardian_standin(a->guardian, udp, gv, nv) != 0)
        us_warn("SIGUSR2: the guardian cannot renew the lease meanwhile: it fences at its end");
    int64_t give_up = us_now_ns() + RESTART_WINDOW_MS * 1000000LL;
    int rc = strlen(path) < 108 ? us_guardian_detach(a->guardian, path, a->fsm.state.version,
                                                     give_up, a->cfg.timing.heartbeat_ms,
                                                     a->cfg.timing.lease_ms, a->net.seq)
                                : -ENAMETOOLONG;
    if (rc != 0) {
        us_error("SIGUSR2: cannot hand over to the guardian (%s): it kills what runs here",
                 strerror(-rc));
    } else {
        int64_t left = a->lease_until_ms - us_now_ms();
        us_info("SIGUSR2: exiting; the guardian keeps the instances (lease %lld ms left, renewed "
                "for up to %lld ms) and %d listening socket(s) for the next agent",
                (long long)(left > 0 ? left : 0), RESTART_WINDOW_MS, a->restart_passed);
    }
    us_guardian_leave(a->guardian);
    a->guardian = NULL;
    /* At once: every lease millisecond spent here is one the next agent lacks. Nothing is lost:
     * Raft's log is durable (this is what it survives after a crash), the guardian holds the
     * instances, the kernel closes the sockets and releases the data dir's lock. */
    fflush(NULL);
    _exit(US_EXIT_RESTART);
}

static void on_restart_poll(uv_timer_t *t);

static void restart_step(us_agent *a, int64_t now)
{
    if (!a->restarting || a->stopping == 2)
        return;
    bool late = now >= a->restart_deadline_ms;
    if (!us_instances_settled(a->instances) && !late)
        return; /* a promotion, demotion or hook in progress: let it finish (bounded) */
    if (a->leader && !late) {
        if (!a->restart_transfer_asked) {
            a->restart_transfer_asked = true;
            a->restart_deadline_ms = now + RESTART_TRANSFER_MS;
            us_info("SIGUSR2: handing Raft leadership over first");
            if (ctl_transfer(a, 0, restart_transfer_done, a) != 0)
                restart_exit(a);
        }
        return;
    }
    /* The proxies stop accepting; their listening sockets wait in the guardian (new
     * connections queue in the backlog); the connections they forward finish (bounded). The
     * lease goes on being renewed meanwhile. */
    if (!a->restart_released) {
        a->restart_released = true;
        a->restart_passed = us_proxies_release(&a->proxies, give_to_guardian, a);
        a->restart_deadline_ms = now + RESTART_DRAIN_MS;
    }
    if (!us_proxies_idle(&a->proxies) && now < a->restart_deadline_ms) {
        if (!uv_is_active((uv_handle_t *)&a->reconcile_timer))
            uv_timer_start(&a->reconcile_timer, on_restart_poll, 2, 0);
        return;
    }
    if (!us_proxies_idle(&a->proxies) && a->restart_ping_ms == 0)
        us_warn("SIGUSR2: proxied connections still open after %d ms: they are cut",
                RESTART_DRAIN_MS);
    /* Leave the guardian the longest lease we can get: one more renewal round (a round trip),
     * bounded. */
    if (a->restart_ping_ms == 0) {
        a->restart_ping_ms = now;
        send_pings(a, now, false, NULL);
    }
    if (a->lease_until_ms < a->restart_ping_ms + a->cfg.timing.lease_ms &&
        now < a->restart_ping_ms + RESTART_RENEW_MS) {
        if (!uv_is_active((uv_handle_t *)&a->reconcile_timer))
            uv_timer_start(&a->reconcile_timer, on_restart_poll, 1, 0);
        return;
    }
    restart_exit(a);
}

static void on_restart_poll(uv_timer_t *t)
{
    restart_step(t->data, us_now_ms());
}

/* ---- lifecycle ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    us_agent *a = h->data;
    if (a->stopping == 0 && signum == SIGTERM) {
        us_info("SIGTERM: handing over active roles before stopping (again to force)");
        a->stopping = 1;
        us_sd_stopping(&a->sd);
        sd_update(a);
        a->stop_deadline_ms = us_now_ms() + STOP_HANDOVER_MS;
        stop_step(a, us_now_ms());
        return;
    }
    us_info("%s: stopping now", signum == SIGINT ? "SIGINT" : "second SIGTERM");
    begin_close(a);
}

static void on_sigusr2(uv_signal_t *h, int signum)
{
    (void)signum;
    us_agent *a = h->data;
    if (a->stopping || a->restarting)
        return;
    us_info("SIGUSR2: restarting without moving anything: the next agent adopts the instances");
    a->restarting = true;
    a->restart_deadline_ms = us_now_ms() + RESTART_SETTLE_MS;
    restart_step(a, us_now_ms());
}

/* SIGHUP: read the cluster key file again (key rotation, docs/operations.md). A file that does
 * not load changes nothing. */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    us_agent *a = h->data;
    us_keyring fresh;
    char err[512];
    if (us_keyring_load(a->cfg.key_file, &fresh, err, sizeof err) != 0) {
        us_error("SIGHUP: keeping the current cluster key: %s", err);
        return;
    }
    a->cfg.keys = fresh; /* the datagrams and the Raft transport read it in place */
    us_guardian_keys(a->guardian, &fresh);
    us_keyring_wipe(&fresh);
    us_info("SIGHUP: reloaded the cluster key file %s (%d key%s; sending with the first)",
            a->cfg.key_file, a->cfg.keys.n, a->cfg.keys.n == 1 ? "" : "s");
}

static void on_raft_closed(struct raft *r)
{
    us_agent *a = r->data;
    raft_uv_close(&a->io);
    us_transport_close(&a->transport);
    uv_stop(a->loop);
}

static void finish_close(us_agent *a)
{
    uv_timer_stop(&a->reconcile_timer);
    uv_timer_stop(&a->report_timer);
    uv_close((uv_handle_t *)&a->report_timer, NULL);
    uv_timer_stop(&a->revoke_timer);
    uv_close((uv_handle_t *)&a->revoke_timer, NULL);
    uv_timer_stop(&a->reask_timer);
    uv_close((uv_handle_t *)&a->reask_timer, NULL);
    uv_timer_stop(&a->commit_timer);
    uv_close((uv_handle_t *)&a->commit_timer, NULL);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->reconcile_timer, NULL);
    uv_close((uv_handle_t *)&a->wake_timer, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
    uv_close((uv_handle_t *)&a->sig_usr2, NULL);
    uv_poll_stop(&a->guardian_poll);
    uv_close((uv_handle_t *)&a->guardian_poll, NULL);
    us_sd_close(&a->sd);
    us_proxies_stop_all(&a->proxies);
    if (a->api) {
        us_api_stop(a->api);
        a->api = NULL;
    }
    if (a->net_started)
        us_net_stop(&a->net);
    if (a->raft_started) {
        a->raft.data = a;
        raft_close(&a->raft, on_raft_closed);
    } else {
        uv_stop(a->loop);
    }
}

/* The active instances this agent killed on its way out, announced as its guardian announces a
 * fencing (guardian.h; "agent": "dead"): the leader reassigns them at once instead of waiting for
 * this node's silence and lease to run out. Called only once every process here is reaped and the
 * VIPs are down (us_instances_kill_all, us_instances_quiet). A few copies: a datagram may be lost,
 * and the lease still covers that case. */
#define CLOSE_ANNOUNCE_PER_DATAGRAM 16
#define CLOSE_ANNOUNCE_COPIES 3
#define CLOSE_TRANSFER_MS 500

static void announce_killed(us_agent *a)
{
    const us_state *s = &a->fsm.state;
    int k = 0, total = 0;
    while (k < s->services.n) {
        json_t *list = json_array();
        for (; k < s->services.n && json_array_size(list) < CLOSE_ANNOUNCE_PER_DATAGRAM; k++) {
            const us_assignment *as = &s->asg[k];
            if (strcmp(as->active, a->cfg.name) == 0 && as->active_inc == a->inc)
                json_array_append_new(list, json_pack("{s:s, s:I}", "service", as->service, "epoch",
                                                      (json_int_t)as->epoch));
        }
        size_t n = json_array_size(list);
        json_t *m = json_pack("{s:s, s:o, s:s}", "t", "fenced", "fenced", list, "agent", "dead");
        char *text = n && m ? json_dumps(m, JSON_COMPACT) : NULL;
        for (int c = 0; text && c < CLOSE_ANNOUNCE_COPIES; c++)
            for (int i = 0; i < a->n_peers; i++)
                if (i != a->self && a->peers[i].address[0])
                    us_net_send_fenced(&a->net, &a->peers[i].sa, text, strlen(text));
        free(text);
        json_decref(m);
        total += (int)n;
    }
    if (total)
        us_info("announced the %d active instance(s) killed here as fenced", total);
}

static void close_transfer_done(void *arg, int status)
{
    (void)arg;
    if (status != 0)
        us_warn("leadership transfer on the way out failed (%d); an election follows", status);
}

static void close_when_quiet(uv_timer_t *t)
{
    us_agent *a = t->data;
    int64_t now = us_now_ms();
    bool quiet = us_instances_quiet(a->instances);
    if (!quiet && now < a->stop_deadline_ms)
        return;
    if (quiet && !a->close_announced && a->net_started) {
        a->close_announced = true;
        announce_killed(a);
    }
    /* A leader that leaves without handing over costs the cluster an election (1-2 election
     * timeouts) before anyone can act on what it left behind. */
    if (a->leader && a->raft_started && !a->close_transfer_asked) {
        a->close_transfer_asked = true;
        a->stop_deadline_ms = now + CLOSE_TRANSFER_MS;
        if (ctl_transfer(a, 0, close_transfer_done, a) == 0)
            return;
    }
    if (a->close_transfer_asked && a->leader && now < a->stop_deadline_ms)
        return;
    finish_close(a);
}

/* Kill what still runs here, wait (bounded) until it is gone, then close everything. */
static void begin_close(us_agent *a)
{
    if (a->stopping == 2)
        return;
    a->stopping = 2;
    us_sd_stopping(&a->sd);
    sd_update(a);
    us_instances_kill_all(a->instances);
    uv_timer_stop(&a->tick);
    a->stop_deadline_ms = us_now_ms() + 2000;
    uv_timer_start(&a->reconcile_timer, close_when_quiet, 0, 10);
}

static int lock_data_dir(const us_node_config *cfg)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/lock", cfg->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        us_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        us_error("data dir %s is in use by another agent", cfg->data_dir);
        close(fd);
        return -1;
    }
    return fd; /* kept open (and locked) for the life of the agent */
}

static void kill_leftovers(us_agent *a, const char *run_dir)
{
    DIR *d = opendir(run_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".pid") != 0)
            continue;
        char service[US_NAME_MAX + 8];
        if (n - 4 < sizeof service) {
            memcpy(service, e->d_name, n - 4);
            service[n - 4] = '\0';
            const us_instance *in = us_instance_of(a->instances, service, -1);
            if (in && in->adopting)
                continue; /* adopted from the earlier agent: ours now */
        }
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
        if (us_proc_kill_stale(path))
            us_warn("killed a process group left behind by an earlier agent (%s)", e->d_name);
    }
    closedir(d);
}

/* A guardian left by an earlier agent that exited on SIGUSR2 waits at DATA_DIR/run/guardian.sock
 * with its instances, renewing that agent's lease (bounded) and fencing by it. Connect to it
 * first (it goes on renewing while we start); adopt it last, right before our own datagrams
 * (adopt_handed_over). */
static void connect_guardian(us_agent *a)
{
    char path[PATH_MAX + 32];
    guardian_sock_path(&a->cfg, path, sizeof path);
    if (strlen(path) >= 108)
        return;
    int rc = us_guardian_connect(path, &a->guardian);
    if (rc != 0 && rc != -ENOENT)
        us_warn("cannot reach the guardian waiting at %s (%s): it fences its instances itself",
                path, strerror(-rc));
}

/* Take the waiting guardian over: its lease is ours until our own renewals carry us (it fences
 * by it either way), its instances ours if their pidfiles prove them (pid and start time), its
 * listening sockets our proxies'. 0, or -1 when it cannot be adopted: then it was told to stop,
 * which kills what it holds, and this agent must exit (a fresh start forks its own guardian). */
static int adopt_handed_over(us_agent *a, us_guardian_handover *h)
{
    if (!a->guardian_attached)
        return 0;
    int rc = us_guardian_adopt(a->guardian, a->inc, h);
    int64_t now = us_now_ns();
    int actives = 0;
    for (int i = 0; rc == 0 && i < h->n_groups; i++)
        actives += h->groups[i].fence;
    if (rc != 0 || (actives && h->lease_ns <= now)) {
        if (rc != 0)
            us_error("the guardian left by the earlier agent did not hand over: %s", strerror(-rc));
        else
            us_error("the guardian left by the earlier agent holds %d active instance(s) but its "
                     "lease ran out",
                     actives);
        for (int i = 0; i < h->n_fds; i++)
            close(h->fds[i]);
        h->n_fds = 0;
        us_guardian_stop(a->guardian);
        a->guardian = NULL;
        return -1;
    }
    a->adopt_inc = h->inc;
    a->peers[a->self].adopt_inc = h->inc;
    if (h->lease_ns > 0 && h->lease_ns / 1000000 > a->lease_until_ms)
        a->lease_until_ms = h->lease_ns / 1000000;
    us_info("took over the guardian (pid %d) of the earlier agent (incarnation %llu): %d process "
            "group(s), lease %lld ms left",
            (int)us_guardian_pid(a->guardian), (unsigned long long)h->inc, h->n_groups,
            (long long)(h->lease_ns > now ? (h->lease_ns - now) / 1000000 : 0));
    int64_t lease_ms = h->lease_ns / 1000000;
    for (int i = 0; i < h->n_groups; i++) {
        const us_guardian_group *g = &h->groups[i];
        int r = us_instances_adopt(a->instances, g, h->inc, h->version, lease_ms);
        if (r != 0) {
            us_warn("%s: not adopting process group %d: %s", g->service, (int)g->pgid,
                    strerror(-r));
            us_guardian_untrack(a->guardian, g->pgid);
        }
    }
    for (int i = 0; i < h->n_fds; i++)
        us_proxies_inherit(&a->proxies, h->fds[i], h->fd_tag[i], us_now_ms() + 10000);
    h->n_fds = 0;
    /* It learns our keys, peers and lease as a forked one would. */
    us_guardian_keys(a->guardian, &a->cfg.keys);
    a->guardian_peers_fp = 0; /* a guardian new to us: tell it all */
    update_guardian_peers(a);
    if (a->lease_until_ms > 0)
        us_guardian_lease(a->guardian, a->lease_until_ms * 1000000LL);
    return 0;
}

/* This agent process's incarnation: larger than every earlier one of this node, so that peers
 * can tell a capture of an earlier incarnation's datagram from a current one (net.h). Kept in
 * DATA_DIR/incarnation, written durably before any datagram goes out; the wall clock in
 * microseconds is the floor, for a node whose data_dir was lost. */
static int next_incarnation(const char *data_dir, uint64_t *out, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/incarnation", data_dir);
    unsigned long long last = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%llu", &last) != 1)
            last = 0;
        fclose(f);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t floor_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    uint64_t inc = last + 1 > floor_us ? last + 1 : floor_us;
    char text[32], why[PATH_MAX + 128];
    int len = snprintf(text, sizeof text, "%llu\n", (unsigned long long)inc);
    if (us_write_file_durable(path, text, (size_t)len, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot record this agent's incarnation: %.400s", why);
        return -1;
    }
    *out = inc;
    return 0;
}

static int start_raft(us_agent *a, char *err, size_t errlen)
{
    const us_node_config *c = &a->cfg;
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/raft", c->data_dir);
    mkdir(dir, 0700);
    /* A kill -9 in the middle of libraft's truncation or snapshot install can leave a log that it
     * refuses at every start (raftdir.h): finish what the crash interrupted, keep the files. */
    char fixed[1024];
    int n_fixed = us_raftdir_repair(dir, fixed, sizeof fixed);
    if (n_fixed > 0)
        us_warn("raft: closed segments past a hole after the last snapshot (an interrupted log "
                "truncation or snapshot install); the rest comes from the leader; %s",
                fixed);
    else if (n_fixed < 0)
        us_warn("raft: cannot repair the data directory: %s", fixed);
    /* Half an election timeout: a stuck connection is replaced before the leader gives up. */
    int rc = us_transport_init(&a->transport, a->loop, (unsigned)c->timing.election_ms / 2,
                               &c->keys, c->cluster_name, c->name);
    if (rc == 0)
        rc = raft_uv_init(&a->io, a->loop, dir, &a->transport.t);
    if (rc != 0) {
        snprintf(err, errlen, "raft I/O init failed: %s", raft_strerror(rc));
        return -1;
    }
    /* A restarted node would otherwise need ~1 s to reconnect to its peers. */
    raft_uv_set_connect_retry_delay(&a->io, 100);
    /* When libraft cannot prepare its next log segment (a full disk), appends wait for it, and it
     * tries again only every 5 s by default: Raft on this node stood still that long after space
     * was freed. One attempt (a file created, preallocation refused, removed) costs nothing. */
    raft_uv_set_disk_retry(&a->io, 250);
    us_fsm_init(&a->fsm, on_fsm_change, a);
    us_state_set_events_max(&a->fsm.state, a->cfg.events_max); /* checked by the config */
    rc = raft_init(&a->raft, &a->io, &a->fsm.raft, us_node_id(c->name), c->address);
    if (rc != 0) {
        snprintf(err, errlen, "raft init failed: %s", raft_errmsg(&a->raft));
        return -1;
    }
    /* The Raft heartbeat only keeps followers from starting elections: commits reach them at once
     * (on_commit_timer), and leases ride on the agents' own pings. */
    raft_set_heartbeat_timeout(&a->raft, (unsigned)c->timing.heartbeat_ms);
    raft_set_election_timeout(&a->raft, (unsigned)c->timing.election_ms);
    /* Without pre-vote a restarted follower deposes the leader every time. */
    raft_set_pre_vote(&a->raft, true);
    /* Every node would take its snapshot at the same log index, at once: each one costs every
     * agent tens of ms with hundreds of services (the whole state as JSON), and on shared cores
     * (25 agents on two in bench/scale) that simultaneous stall cost every lease. Each node takes
     * it at its own point of a spread; the threshold grows with the state (on_tick). */
    raft_set_snapshot_threshold(
        &a->raft, us_snapshot_threshold(0, (unsigned)(us_node_id(c->name) % US_SNAPSHOT_SPREAD)));
    raft_set_snapshot_trailing(&a->raft, 64);

    bool member = false;
    for (int i = 0; i < c->n_members; i++)
        if (strcmp(c->members[i].name, c->name) == 0)
            member = true;
    if (member) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        for (int i = 0; i < c->n_members; i++)
            raft_configuration_add(&conf, us_node_id(c->members[i].name), c->members[i].address,
                                   RAFT_VOTER);
        rc = raft_bootstrap(&a->raft, &conf);
        raft_configuration_close(&conf);
        if (rc != 0 && rc != RAFT_CANTBOOTSTRAP) {
            snprintf(err, errlen, "raft bootstrap failed: %s", raft_strerror(rc));
            return -1;
        }
    }
    rc = raft_start(&a->raft);
    if (rc != 0) {
        snprintf(err, errlen, "raft start failed: %s (%s)", raft_strerror(rc),
                 raft_errmsg(&a->raft));
        return -1;
    }
    /* libraft ticks at the heartbeat it was started with (above), and at each tick a leader (a)
     * puts back into probe mode every follower it heard nothing from since the last tick, and
     * (b) sends a follower a heartbeat only if it sent it nothing for heartbeat_timeout; in probe
     * mode a new entry waits for the next tick. With the two equal, an entry sent between two
     * ticks made the next tick skip the heartbeat (sent < 100 ms before), the follower was
     * silent for a tick, and the next command (a failover's decision) waited up to a tick: the
     * same kill -9 failover took 40 or 125 ms at random (bench/scale's reference; libraft's
     * trace: "unreachable -> abort pipeline", then "probe server ... sending" at the tick).
     * Below the tick, the heartbeat goes out at every tick of an idle cluster as before, and a
     * follower is in probe mode only for the round trip after such a tick. */
    raft_set_heartbeat_timeout(&a->raft, (unsigned)(c->timing.heartbeat_ms / 4));
    a->raft_started = true;
    return 0;
}

static void make_dirs(const us_node_config *c)
{
    char p[PATH_MAX + 8];
    snprintf(p, sizeof p, "%s/logs", c->data_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/run", c->data_dir);
    mkdir(p, 0755);
}

/* The environment of the instances (instance.h). */
static bool inst_lease_ok(void *data, int64_t now_ms, int64_t reserve_ms)
{
    return us_agent_lease_ok(data, now_ms, reserve_ms);
}

static bool inst_closing(void *data)
{
    us_agent *a = data;
    return a->stopping >= 2;
}

static bool inst_is_leader(void *data)
{
    us_agent *a = data;
    return a->leader;
}

static void inst_report_now(void *data)
{
    us_agent *a = data;
    report_now(a); /* the leader decides by our reports: it is on the lease path */
}

static void inst_schedule_reconcile(void *data)
{
    schedule_reconcile(data);
}

static int inst_proxies_open(void *data, const char *service, uint64_t epoch)
{
    return us_proxies_open(&((us_agent *)data)->proxies, service, epoch);
}

static int inst_proxies_open_total(void *data, const char *service, uint64_t epoch)
{
    return us_agent_proxies_open_total(data, service, epoch);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int us_agent_main(const us_node_config *cfg)
{
    us_mem_tune();
    us_agent *a = calloc(1, sizeof *a);
    if (!a)
        return 1;
    a->cfg = *cfg;
    a->exit_code = 0;
    signal(SIGPIPE, SIG_IGN); /* a dying peer raises SIGPIPE in libraft's writes, splice too */
    /* A proxied connection costs 6 descriptors: take what the hard limit allows. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (!getcwd(a->cwd, sizeof a->cwd))
        strcpy(a->cwd, "/");
    /* Our own priority, which the children keep whatever a voter's loop runs at (voter_nice). */
    errno = 0;
    a->base_nice = getpriority(PRIO_PROCESS, 0);
    if (errno)
        a->base_nice = 0;
    a->nice = a->base_nice;
    us_proc_child_nice(a->base_nice);

    char err[512];
    int lock_fd = lock_data_dir(cfg);
    if (lock_fd < 0) {
        free(a);
        return 1;
    }
    if (us_tcp_check_free(cfg->address, err, sizeof err) != 0 ||
        us_tcp_check_free(cfg->api, err, sizeof err) != 0) {
        us_error("%s", err);
        close(lock_fd);
        free(a);
        return 1;
    }
    make_dirs(cfg);
    char run_dir[PATH_MAX + 8];
    snprintf(run_dir, sizeof run_dir, "%s/run", cfg->data_dir);
    if (next_incarnation(cfg->data_dir, &a->inc, err, sizeof err) != 0) {
        us_error("%s", err);
        close(lock_fd);
        free(a);
        return 1;
    }
    us_guardian_handover *handover = calloc(1, sizeof *handover);
    if (!handover) {
        close(lock_fd);
        free(a);
        return 1;
    }
    connect_guardian(a);
    a->guardian_attached = a->guardian != NULL;

    /* The guardian is forked before the loop and any thread exist. */
    if (!a->guardian &&
        us_guardian_start(cfg->name, a->inc, &cfg->keys, cfg->cluster_name, &a->guardian) != 0) {
        us_error("cannot start the guardian: %s", strerror(errno));
        close(lock_fd);
        free(handover);
        free(a);
        return 1;
    }

    a->started_ms = us_now_ms();
    a->loop = malloc(sizeof *a->loop);
    uv_loop_init(a->loop);
    /* Timers first: a snapshot restored by raft_start() already schedules a reconcile. */
    uv_timer_init(a->loop, &a->tick);
    a->tick.data = a;
    uv_timer_init(a->loop, &a->reconcile_timer);
    a->reconcile_timer.data = a;
    uv_timer_init(a->loop, &a->report_timer);
    a->report_timer.data = a;
    uv_timer_init(a->loop, &a->revoke_timer);
    a->revoke_timer.data = a;
    uv_timer_init(a->loop, &a->reask_timer);
    a->reask_timer.data = a;
    a->round_ms = -1;
    uv_timer_init(a->loop, &a->wake_timer);
    a->wake_timer.data = a;
    uv_timer_init(a->loop, &a->commit_timer);
    a->commit_timer.data = a;
    us_metrics_init(&a->metrics);
    controller_init(a);
    us_sd_start(&a->sd, a->loop);
    int rc = 1;
    a->instances = us_instances_start(&(us_instances_env){
        .loop = a->loop,
        .cfg = &a->cfg,
        .cwd = a->cwd,
        .inc = a->inc,
        .adopt_inc = a->adopt_inc,
        .state = &a->fsm.state,
        .guardian = a->guardian,
        .data = a,
        .lease_ok = inst_lease_ok,
        .closing = inst_closing,
        .is_leader = inst_is_leader,
        .report_now = inst_report_now,
        .schedule_reconcile = inst_schedule_reconcile,
        .proxies_open = inst_proxies_open,
        .proxies_open_total = inst_proxies_open_total,
    });
    if (!a->instances) {
        us_error("out of memory");
        goto out;
    }
    a->self = 0;
    peer_add(a, cfg->name, cfg->address);
    us_strlcpy(a->peers[0].api, cfg->api, sizeof a->peers[0].api);
    a->peers[0].inc = a->inc;
    for (int i = 0; i < cfg->n_members; i++)
        peer_add(a, cfg->members[i].name, cfg->members[i].address);
    load_revocations(a);
    update_guardian_peers(a);

    if (start_raft(a, err, sizeof err) != 0) {
        us_error("%s", err);
        goto out;
    }
    us_agent_rpc_init(a);
    if (us_agent_api_start(a, err, sizeof err) != 0) {
        us_error("API: %s", err);
        a->exit_code = 1;
        begin_close(a);
        uv_run(a->loop, UV_RUN_DEFAULT);
        goto out;
    }
    /* Last before our own datagrams: the guardian renewed the lease until now. */
    if (adopt_handed_over(a, handover) != 0) {
        a->exit_code = 1;
        begin_close(a);
        uv_run(a->loop, UV_RUN_DEFAULT);
        goto out;
    }
    free(handover);
    handover = NULL;
    kill_leftovers(a, run_dir);
    if (us_net_start(&a->net, a->loop, cfg->address, &a->cfg.keys, cfg->cluster_name, cfg->name,
                     a->inc, on_msg, a, err, sizeof err) != 0) {
        us_error("%s", err);
        a->exit_code = 1;
        begin_close(a);
        uv_run(a->loop, UV_RUN_DEFAULT);
        goto out;
    }
    a->net_started = true;

    uv_timer_start(&a->tick, on_tick, 0, (uint64_t)cfg->timing.heartbeat_ms);
    uv_signal_init(a->loop, &a->sig_term);
    a->sig_term.data = a;
    uv_signal_start(&a->sig_term, on_signal, SIGTERM);
    uv_signal_init(a->loop, &a->sig_int);
    a->sig_int.data = a;
    uv_signal_start(&a->sig_int, on_signal, SIGINT);
    uv_signal_init(a->loop, &a->sig_hup);
    a->sig_hup.data = a;
    uv_signal_start(&a->sig_hup, on_sighup, SIGHUP);
    uv_signal_init(a->loop, &a->sig_usr2);
    a->sig_usr2.data = a;
    uv_signal_start(&a->sig_usr2, on_sigusr2, SIGUSR2);
    uv_poll_init(a->loop, &a->guardian_poll, us_guardian_fd(a->guardian));
    a->guardian_poll.data = a;
    uv_poll_start(&a->guardian_poll, UV_READABLE, on_guardian);

    us_info("agent %s started (cluster %s, profile %s, address %s, api %s)", cfg->name,
            cfg->cluster_name, cfg->timing.name, cfg->address, cfg->api);
    uv_run(a->loop, UV_RUN_DEFAULT);
    rc = a->exit_code;
out:
    /* Let closing handles finish. */
    uv_walk(a->loop, close_any, NULL);
    uv_run(a->loop, UV_RUN_DEFAULT);
    uv_loop_close(a->loop);
    free(a->loop);
    free(handover);
    us_instances_free(a->instances);
    us_metrics_close(&a->metrics);
    us_guardian_stop(a->guardian);
    us_controller_free(&a->ctl);
    us_fsm_close(&a->fsm);
    close(lock_fd);
    free(a);
    return rc;
}
