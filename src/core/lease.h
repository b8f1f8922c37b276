/* lease.h — the lease arithmetic: until when a node may act as active, and when the leader may
 * be sure that it no longer does. Pure functions over CLOCK_MONOTONIC milliseconds and plain
 * structs: no I/O, no JSON, no clock reads. The agent (src/agent/agent.c) fills the views from its
 * peers and state, persists what these functions decide, and encodes the reports;
 * tests/unit/test_lease.c drives the same functions in a simulation on random schedules.
 *
 * Leases are granted by the voters, not by the Raft leader alone, so that they survive a leader
 * change (an election takes longer than a lease). docs/timing.md has the derivation.
 *  - Every heartbeat each node asks every voter to renew its lease (a ping sent at its local time
 *    t0). A voter grants unless it has revoked the node (us_lease_grant). The node's lease runs
 *    until t0 + L, where t0 is the send time of the majority-th freshest granted request (a node
 *    that is a voter counts itself as granting now); a grant counts only once the node applied
 *    every change to its own roles that the voter had (us_lease_granter, us_lease_until), and a
 *    voter refuses a request that says it has not (us_lease_may_grant).
 *  - A voter that has not granted a node for longer than stale_after = L(1+2ρ)+m while that node
 *    holds an active role (known for US_LEASE_RENEW_HEARTBEATS heartbeats) revokes it: it grants
 *    it nothing more until the replicated state shows the node without an active role. It reports
 * "stale" only together with the revocation, and only once the revocation is durable
 * (us_lease_voter_report, us_lease_revoke_saved).
 *  - The leader takes a role away for an expired lease only when a majority of voters (other than
 *    the holder) report it stale, counting a stale report only if its voter had applied the
 *    holder's current role. Every majority the holder could renew with includes one of them, and
 *    they grant no more: the holder's lease has run out and stays out (us_lease_judge_holder).
 *  - A voter that restarted does not know what it granted before: it reports "unknown" for
 *    stale_after after its start. Its revocations survive the restart (the agent loads them).
 */
#ifndef US_LEASE_H
#define US_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"

/* A timing profile (`[cluster] profile`): every number that decides how fast a failure is
 * detected and how safe the lease arithmetic is. docs/timing.md explains the arithmetic. */
typedef struct us_timing {
    char name[16];        /* "default" | "fast" */
    int heartbeat_ms;     /* agent heartbeats and lease renewals; also Raft heartbeat */
    int election_ms;      /* Raft election timeout */
    int lease_ms;         /* L: lease length granted per renewal */
    int grant_window_ms;  /* G: the leader grants only if a quorum acknowledged it within G */
    int drift_pct;        /* clock-rate drift allowance, percent */
    int margin_ms;        /* fixed safety margin added on the leader's side */
    int suspect_ms;       /* silence after which a node is 'suspect' */
    int dead_ms;          /* silence after which a node is 'dead' */
    int demote_before_ms; /* an active whose lease has less than this left stops its instance */
} us_timing;

/* Fill *out with the named profile ("default" or "fast"); -1 for an unknown name. */
int us_timing_profile(const char *name, us_timing *out);

/* The k-th freshest of n times (k = n/2 + 1, a majority); -1 entries are "never". -1 if fewer
 * than k entries are set. */
int64_t us_lease_majority_time(const int64_t *t, int n);

/* A voter's grant older than this (ms) no longer contributes to any lease. */
int64_t us_lease_stale_after(const us_timing *t);

/* Leader side: judge a holder's lease from the voters' reports. `voters` counts all voters,
 * `holder_votes` whether the holder is one of them; `stale` and `fresh` count the other voters
 * that reported the holder stale (revoked) or recently granted. */
us_lease_state us_lease_judge(int voters, bool holder_votes, int stale, int fresh);

/* ---- the voter's side ---- */

/* What a voter keeps about one node that asks it for leases (one per peer in the agent). */
typedef struct us_lease_grantee {
    int64_t granted_ms;     /* when we last granted it a renewal, -1 = not since we started */
    int64_t holds_since_ms; /* when we first saw it holding an active role, -1 = it holds none */
    bool revoked;           /* durably revoked: we grant it nothing until it holds no role */
    bool revoke_unsaved;    /* a revocation we could not make durable: grant nothing, say nothing */
    uint64_t revoked_version; /* our state version when we revoked it (persisted) */
} us_lease_grantee;

/* A grantee we know nothing about (never granted, holds nothing, not revoked). */
us_lease_grantee us_lease_grantee_new(void);

/* A voter's report about one node, sent with its heartbeats. */
typedef struct us_lease_report {
    int64_t
        age; /* ms since we last granted it, -1 = unknown (we started less than stale_after ago) */
    bool stale; /* the grant is stale and we revoked the node (durably) */
    uint64_t v; /* our state version */
    /* What the caller must persist (the node's entry in the revocations file):
     * - revoke: revoke the node at version v. Not in effect yet: the caller writes the file with
     *   the node revoked at v, then calls us_lease_revoke_saved, which puts it into effect only if
     *   the write succeeded (otherwise grants stop but nothing is announced, and the next report
     *   tries again).
     * - unrevoke: the revocation ended (already in effect: its roles were released); write the
     *   file without it. Should that write fail, a restart only withholds grants until the same
     *   release. */
    bool revoke, unrevoke;
} us_lease_report;

/* As a voter at state version `version`, started (this incarnation) at `started_ms`: the report
 * about the node `g`, which `holds` an active role in our state, every one of its roles given or
 * renewed at state version `role_version` or later (the least since_version of its roles).
 * Updates g's bookkeeping (holds_since_ms, an ended revocation); a new revocation is only
 * proposed (r.revoke).
 * A revocation ends when the node holds no role any more, or when all its roles were given or
 * renewed after the revocation (role_version > revoked_version): the leader renews a role only
 * while the holder's lease is valid by a majority of other grants, and from then on judges it
 * only by reports made at that version or later, which this voter makes unrevoked. The holder
 * then has US_LEASE_RENEW_HEARTBEATS heartbeats to renew with us before a new revocation. */
us_lease_report us_lease_voter_report(const us_timing *t, us_lease_grantee *g, bool holds,
                                      uint64_t role_version, uint64_t version, int64_t now,
                                      int64_t started_ms);

/* When us_lease_voter_report would next propose revoking `g` (local ms), if nothing changes
 * (no grant, the role kept): -1 if it would not (it holds no role, or is revoked already). The
 * agent reports at that moment rather than at its next heartbeat, which takes up to a heartbeat
 * off the detection of a node cut off. */
int64_t us_lease_revoke_due(const us_timing *t, const us_lease_grantee *g, bool holds,
                            int64_t started_ms);

/* After r->revoke: the caller wrote the revocation (saved) or failed to (!saved). */
void us_lease_revoke_saved(us_lease_grantee *g, us_lease_report *r, bool saved);

/* Whether we grant a renewal that the node `g` asked for (`requested`), `self_votes` saying
 * whether we are a voter, `lags` that the request said it had not applied the last change to its
 * roles that we applied (its state version below our roles_v of it, us_lease_lags).
 * A grant to a lagging node counts only once it catches up (us_lease_granter_update), which a
 * node cut off from the leader never does, while we, still hearing it, would keep granting and
 * never report it stale: the leader could not move its role however long the cut lasted. So we
 * refuse it: every grant we make can count, a node that cannot catch up goes stale with us after
 * stale_after as a silent one does, and the revocation rests on grants we really made. */
bool us_lease_may_grant(const us_lease_grantee *g, bool requested, bool lags, bool self_votes);

/* us_lease_may_grant, and if so record the grant at `now`. */
bool us_lease_grant(us_lease_grantee *g, bool requested, bool lags, bool self_votes, int64_t now);

/* Whether a request lags: it said it had applied up to `av` (`has_av`; requests that do not say,
 * as the guardian's stand-in renewals, never lag) while we have the last change to the node's
 * roles at `roles_v`. */
bool us_lease_lags(bool has_av, uint64_t av, uint64_t roles_v);

/* ---- the requester's side ---- */

/* A voter that grants us leases, as we keep it. Each grant carries the voter's roles_v of us
 * (model.h: the state version of the last change to an active role of ours that the voter had
 * applied). A grant counts only once we applied that far: the voter may have applied the release
 * of a role of ours, un-revoked us and granted again, while we still act on the role. Other
 * entries (other services, other nodes) do not hold grants back, so a node that lags behind a
 * stream of unrelated changes keeps its lease. */
typedef struct us_lease_granter {
    bool self;   /* this voter is us: we grant ourselves now */
    int64_t t0;  /* send time (our clock) of our latest request it granted, -1 = none */
    uint64_t v;  /* its roles_v of us with that grant */
    bool has_c;  /* an earlier grant that already counted when t0 arrived: */
    int64_t t0c; /* the latest such */
    uint64_t vc; /* ... and its roles_v */
} us_lease_granter;

/* A voter we have no grant from. */
us_lease_granter us_lease_granter_new(void);

/* A grant of our request sent at t0 (our clock), made at the voter's roles_v of us `rv`, arriving
 * while we have applied up to `version`. Keeps the latest grant, and the latest one that counted,
 * so that a newer grant that does not count yet does not push out an older one that does. */
void us_lease_granter_update(us_lease_granter *g, int64_t t0, uint64_t rv, uint64_t version);

/* The send time of g's latest grant that counts at our state version `version`, -1 = none. */
int64_t us_lease_granter_t0(const us_lease_granter *g, uint64_t version);

/* Our lease at `now`, given the grants of all n voters (one entry each) and our state version:
 * the later of `lease_until` and t0 + L for the majority-th freshest counted t0
 * (us_lease_granter_t0). */
int64_t us_lease_until(const us_timing *t, const us_lease_granter *grants, int n, uint64_t version,
                       int64_t now, int64_t lease_until);

/* Renewals asked again within the heartbeat. A lost datagram costs a renewal: at 20 % loss each
 * way on the one voter left besides the holder, a lease window of four heartbeats had all four
 * exchanges lost 1.7 % of the time (the chaos suite saw it). So when our request of a round (sent
 * at `round_ms`, our clock) has not come back granted from a majority (we count ourselves when we
 * vote, `self`), the voters whose grant of it is missing get the request again (reask[i], for the
 * same n entries as us_lease_until takes); returns how many. None once a majority granted: more
 * would not lengthen the lease. Safe at any rate: a grant supports a lease from its request's own
 * send time, and a voter grants or refuses each request by itself. */
int us_lease_reask(const us_lease_granter *grants, int n, int64_t round_ms, bool *reask);

/* ---- the leader's side ---- */

/* A voter's report about the holder as the leader last received it (our own report included). */
typedef struct us_lease_seen {
    int64_t age;   /* the report's age, -1 = unknown */
    bool stale;    /* stale and revoked */
    uint64_t v;    /* the voter's state version when it reported */
    int64_t rx_ms; /* when we got it (our clock), -1 = none from the voter's current incarnation */
} us_lease_seen;

/* Judge a holder's lease from the reports of the voters other than the holder (`seen`, n_seen
 * of them; an entry with rx_ms < 0 counts as no report). `voters` counts all voters,
 * `holder_votes` whether the holder is one of them, `role_version` is
 * the state version at which the holder got its current role(s). A stale report counts only if its
 * voter had applied the role (v >= role_version), a stale report stays true (the voter revoked), a
 * fresh one (age <= L) only while received within L. */
us_lease_state us_lease_judge_holder(const us_timing *t, int voters, bool holder_votes,
                                     const us_lease_seen *seen, int n_seen, uint64_t role_version,
                                     int64_t now);

/* Renewals (decide.c R9) wait for this many heartbeats of evidence, and a voter that lifted a
 * revocation gives the holder this long to renew with it before it may revoke again. */
#define US_LEASE_RENEW_HEARTBEATS 3

/* Whether the leader should renew the holder's roles: a voter revoked it under its current
 * role(s) (a stale report that counts), while a majority (the holder itself included, if it
 * votes) granted it within the last US_LEASE_RENEW_HEARTBEATS heartbeats, in reports received as
 * recently, and the leader heard the holder itself as recently (`heard_ms`, our clock, -1 =
 * never). Stricter than US_LEASE_VALID on purpose: a holder whose grants are merely not yet
 * stale may be the one just cut off, and a renewal would restart the voters' stale_after. And a
 * renewal is a change to the holder's roles, which the voters that applied it grant on only once
 * the holder applied it too (us_lease_lags): a holder cut off from the leader (the revoking voter,
 * often) but still renewing through the others cannot, and would lose the lease it kept. */
bool us_lease_renewal_due(const us_timing *t, int voters, bool holder_votes,
                          const us_lease_seen *seen, int n_seen, uint64_t role_version,
                          int64_t heard_ms, int64_t now);

#endif
