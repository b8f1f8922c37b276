"""checker.py — the chaos run's history checker: a pure function from a recorded history to violations.

No I/O, no clock, no processes: check(history) reads a dict (the JSON the nemesis writes) and returns
{"violations": [...], "metrics": {...}}. tests/chaos/test_checker.py feeds it hand-made histories.

History (all times in milliseconds on one CLOCK_MONOTONIC scale, relative to the run's start):
  meta     {"seed", "nodes": [...], "services": {name: {"standby": "cold"|"hot", "standbys": k}},
            "t_faults": when the fault phase began (the cluster was steady; liveness is judged from here),
            "t_end": end of recording}
  writes   [{"svc", "node", "epoch", "t"}]   every write of every instance, as the shared receiver
           (one append-only file per service) got them
  faults   [{"id", "kind", "nodes": [nodes the fault is on], "start", "end", "combo": step id or None}]
           "nodes" are the nodes whose own faults these are: the killed/frozen/cut-off node, the
           minority side of a partition, both ends of a bridge partition
  answers  [{"svc", "via", "t_send", "t_done", "ok", "node", "epoch"}]  client requests through VIPs and
           proxies (node/epoch: who answered, None when the request failed)
  vips     [{"svc", "node", "from", "until"}]  when a node held a service's VIP (until None: still)
  heal     {"t": when every fault was undone, "snapshots": [{"t", "statuses": {node: status or None}}]}
  agent_exits [{"node", "t", "code"}]  agents that exited although the nemesis did not kill them
  waits    [{"node", "start", "end", "ms", "runs"}]  a node's agent waiting for a CPU (from /proc/PID/schedstat:
           runnable, not run), per sample; where it adds up to a stall (stalls()), it counts as
           an observed fault "starved" on its node that takes it out (like a SIGSTOP), never as an injected one
  leaks    ["..."]  what was still there after teardown (processes, VIPs, namespaces, mounts)

Properties (violation "property" names):
  safety:   overlap (two instances of a service writing at overlapping times), epoch-order (epochs strictly
            increasing per service in the order the instances first wrote), fencing (a write with an epoch
            older than one the receiver already got), vip-overlap (two nodes holding a VIP at once),
            stale-answer (a client answer from an older epoch, asked after a newer epoch had answered)
  liveness: disruption (a pause > PAUSE_MS of the writes, or a new epoch, with no fault on the active's
            own node in force, nor faults taking a majority out: "out" kinds, or loss >= LOSS_OUT_PCT), takeover (a single fault on an active's node not taken over within
            TAKEOVER_MS), heal (after healing: not one active per service with writes flowing, every node
            alive and the standbys restored within HEAL_BOUND_MS), agent-exit, leak
"""

import bisect
import statistics

PAUSE_MS = 300.0  # a longer gap in an active's writes is a disruption
TAKEOVER_MS = 2000.0  # a single fault on an active's node is taken over within this (default profile)
# ...also when the fault took out the Raft leader's node too (docs/timing.md, "Leader and active on the same
# node"). It used to allow 2,300 ms there: 2 election timeouts + a heartbeat + the decision + a heartbeat of slack.
# Since the survivors lower their election timeout when a leader holding an active role goes silent (or its
# guardian announces its death), the election ends before the holder's lease (stale_after) and costs nothing.
TAKEOVER_LEADER_MS = TAKEOVER_MS
FAULT_LEAD_MS = 100.0  # a disruption may start this long before the fault is recorded (write period, clock reads)
LINGER_MS = 500.0  # ...and this long after the fault ended (the fault's effect, e.g. a lease running out)
SINGLE_MS = 2000.0  # a fault is "single" when no other fault is in force this long before it and during it
# Starvation of an agent by the machine (observed by the nemesis, not injected; docs/timing.md "CPU
# starvation"). The nemesis records how long each agent's main thread waited for a CPU (runnable, not run); a
# node is starved while those waits add up to STALL_MS = L - reserve - heartbeat (600 - 200 - 100 ms, default
# profile) within STALL_SPAN_MS = L: an agent that spent that much of a lease in the run queue may stop its
# instance, or a voter revoke a holder, with no other fault. Waits below LONG_WAIT_MS are not recorded.
# An agent that itself used more than STALL_CPU_SHARE of a CPU in the window is not starved by others' load:
# its own demand (a busy loop, a storm of work) is understudy's, and is judged.
LONG_WAIT_MS = 1.0
STALL_MS = 300.0
STALL_SPAN_MS = 600.0
STALL_CPU_SHARE = 0.25
# Packet loss of this many percent or more in each direction on a node takes it out for the quorum rule
# (a majority out explains a disruption), though not for the takeover bound. At 50 % three of four
# renewals to or from such a node are lost: with two of three nodes at 50 % the third, needing one of
# their grants within L - reserve (four heartbeats in the default profile), misses all eight 10 % of the
# time, every 400 ms; the lease arithmetic cannot hold a lease through that, and no safe design can. Below
# (10-30 % in the nemesis: at 30 % the same misses 0.5 % of the time) the majority counts as there. With another
# node out, the third's renewals ride on the lossy one alone: at 20 % each way all four exchanges of a window are
# lost 1.7 % of the time, and the checker judges that (seen once, seed 899082677; a renewal sent again within the
# heartbeat when its grant does not come would cut it to ~0.03 %: not done yet).
LOSS_OUT_PCT = 50
HEAL_BOUND_MS = 20000.0  # after healing, the cluster is steady within this
WRITE_FRESH_MS = 500.0  # a steady snapshot needs the active's writes this recent
EXCERPT = 6  # history entries around a violation


def _iv(x):
    return x if x is not None else float("inf")


def _inst(w):
    return (w["node"], w["epoch"])


def _writes_by_svc(writes):
    out = {}
    for w in writes:
        out.setdefault(w["svc"], []).append(w)
    for ws in out.values():
        ws.sort(key=lambda w: w["t"])
    return out


def _excerpt(ws, t, n=EXCERPT):
    """The writes around time t (n before, n after), as short strings."""
    i = bisect.bisect_left([w["t"] for w in ws], t)
    return ["%.1f %s/%s" % (w["t"], w["node"], w["epoch"]) for w in ws[max(0, i - n) : i + n]]


def _intervals(ws):
    """{(node, epoch): [first t, last t, count]} of one service's writes."""
    iv = {}
    for w in ws:
        k = _inst(w)
        if k not in iv:
            iv[k] = [w["t"], w["t"], 0]
        iv[k][0] = min(iv[k][0], w["t"])
        iv[k][1] = max(iv[k][1], w["t"])
        iv[k][2] += 1
    return iv


def _v(prop, kind, svc, msg, excerpt=None, **extra):
    d = {"property": prop, "kind": kind, "svc": svc, "msg": msg, "excerpt": excerpt or []}
    d.update(extra)
    return d


# ---- safety ----


def check_overlap(svc, ws):
    out = []
    iv = sorted(_intervals(ws).items(), key=lambda kv: kv[1][0])
    for i, (k1, (a1, b1, _)) in enumerate(iv):
        for k2, (a2, b2, _) in iv[i + 1 :]:
            if a2 < b1:
                out.append(
                    _v(
                        "overlap",
                        "safety",
                        svc,
                        "%s/%s wrote from %.1f to %.1f ms and %s/%s from %.1f to %.1f ms (overlap %.1f ms)"
                        % (k1[0], k1[1], a1, b1, k2[0], k2[1], a2, b2, min(b1, b2) - a2),
                        _excerpt(ws, a2),
                        t=a2,
                    )
                )
    return out


def check_epoch_order(svc, ws):
    out = []
    iv = sorted(_intervals(ws).items(), key=lambda kv: kv[1][0])
    for (k1, (a1, _, _)), (k2, (a2, _, _)) in zip(iv, iv[1:]):
        if not k2[1] > k1[1]:
            out.append(
                _v(
                    "epoch-order",
                    "safety",
                    svc,
                    "%s/%s first wrote at %.1f ms, after %s/%s (first write %.1f ms): epoch %s is not above %s"
                    % (k2[0], k2[1], a2, k1[0], k1[1], a1, k2[1], k1[1]),
                    _excerpt(ws, a2),
                    t=a2,
                )
            )
    return out


def check_fencing(svc, ws):
    out = []
    top = None  # (epoch, node, t) of the newest epoch the receiver got
    reported = set()
    for w in ws:
        if top is None or w["epoch"] > top[0]:
            top = (w["epoch"], w["node"], w["t"])
        elif w["epoch"] < top[0] and _inst(w) not in reported:
            reported.add(_inst(w))  # once per stale instance
            out.append(
                _v(
                    "fencing",
                    "safety",
                    svc,
                    "write of %s with epoch %s at %.1f ms, after %s had written with epoch %s at %.1f ms"
                    % (w["node"], w["epoch"], w["t"], top[1], top[0], top[2]),
                    _excerpt(ws, w["t"]),
                    t=w["t"],
                )
            )
    return out


def check_vips(vips, t_end):
    out = []
    by = {}
    for v in vips:
        by.setdefault(v["svc"], []).append((v["from"], _iv(v["until"]), v["node"]))
    for svc, ivs in sorted(by.items()):
        ivs.sort()
        for i, (a1, b1, n1) in enumerate(ivs):
            for a2, b2, n2 in ivs[i + 1 :]:
                if n1 != n2 and a2 < b1:
                    out.append(
                        _v(
                            "vip-overlap",
                            "safety",
                            svc,
                            "%s held the VIP from %.1f to %s ms and %s from %.1f ms (overlap %.1f ms)"
                            % (n1, a1, "end" if b1 == float("inf") else "%.1f" % b1, n2, a2, min(b1, b2, t_end) - a2),
                            ["%s %.1f..%s" % (n, a, b) for a, b, n in ivs if a <= a2 + 1000 and b >= a1 - 1000][:10],
                            t=a2,
                        )
                    )
    return out


def check_answers(answers):
    """A client answer from an epoch older than one that had already answered before it was asked."""
    out = []
    by = {}
    for a in answers:
        if a["ok"] and a.get("epoch") is not None:
            by.setdefault(a["svc"], []).append(a)
    for svc, ans in sorted(by.items()):
        done = sorted(ans, key=lambda a: a["t_done"])
        asked = sorted(ans, key=lambda a: a["t_send"])
        top, j, reported = None, 0, set()
        for a in asked:
            while j < len(done) and done[j]["t_done"] < a["t_send"]:
                if top is None or done[j]["epoch"] > top["epoch"]:
                    top = done[j]
                j += 1
            if top is not None and a["epoch"] < top["epoch"] and (a["node"], a["epoch"], a["via"]) not in reported:
                reported.add((a["node"], a["epoch"], a["via"]))
                out.append(
                    _v(
                        "stale-answer",
                        "safety",
                        svc,
                        "request via %s sent at %.1f ms answered by %s epoch %s, but %s epoch %s had answered "
                        "(via %s) at %.1f ms" % (a["via"], a["t_send"], a["node"], a["epoch"], top["node"],
                                                 top["epoch"], top["via"], top["t_done"]),
                        t=a["t_send"],
                    )
                )
    return out


# ---- liveness ----


def disruptions(ws, t_end, pause_ms=PAUSE_MS):
    """One service's disruptions: a gap > pause_ms between consecutive writes, or a change of instance.
    [{"start": last write before, "end": first write after (None: none until t_end), "from": (node, epoch),
    "to": (node, epoch) or None, "new_epoch": bool}]."""
    out = []
    seen = set(_inst(w) for w in ws[:1])
    for a, b in zip(ws, ws[1:]):
        new = _inst(b) not in seen  # going back to an instance seen before: an overlap (safety), not a handover
        seen.add(_inst(b))
        if new or b["t"] - a["t"] > pause_ms:
            out.append({"start": a["t"], "end": b["t"], "from": _inst(a), "to": _inst(b), "new_epoch": new})
    if ws and t_end - ws[-1]["t"] > pause_ms:
        out.append({"start": ws[-1]["t"], "end": None, "from": _inst(ws[-1]), "to": None, "new_epoch": False})
    return out


def _on_node(f, node):
    return node in f["nodes"]


def _explains(f, node, t, svc=None):
    if f.get("svc") not in (None, svc):
        return False
    return _on_node(f, node) and f["start"] - FAULT_LEAD_MS <= t <= f["end"] + LINGER_MS


def _single(f, faults, until):
    """No other fault in force from SINGLE_MS before f until `until`."""
    for g in faults:
        if g is f:
            continue
        if g["start"] <= _iv(until) and g["end"] >= f["start"] - SINGLE_MS:
            return False
    return True


def _active_at(ws, times, t):
    """The instance that was writing at time t (its last write within PAUSE_MS before t), or None."""
    i = bisect.bisect_right(times, t)
    if i == 0 or t - ws[i - 1]["t"] > PAUSE_MS:
        return None
    return _inst(ws[i - 1])


def _out(f):
    """Whether f takes its nodes out for the quorum rule: an "out" kind, or loss of LOSS_OUT_PCT or more."""
    return bool(f.get("out")) or (f["kind"] == "loss" and f.get("pct", 0) >= LOSS_OUT_PCT)


def _quorum_out(faults, t, n_nodes):
    """Faults that took a majority of the nodes out of the cluster at time t (then no active may act)."""
    hit = [f for f in faults if _out(f) and f["start"] - FAULT_LEAD_MS <= t <= f["end"] + LINGER_MS]
    nodes = set(n for f in hit for n in f["nodes"])
    return hit if n_nodes and len(nodes) >= n_nodes // 2 + 1 else []


def check_liveness(svc, ws, faults, t_end, takeovers, n_nodes=0, t_from=None, excused=None):
    out = []
    excused = [] if excused is None else excused
    ds = disruptions(ws, t_end)
    for d in ds:
        if t_from is not None and d["start"] < t_from:
            continue  # the cluster settling before the first fault: not judged
        node = d["from"][0]
        why = [f for f in faults if _explains(f, node, d["start"], svc)] or _quorum_out(faults, d["start"], n_nodes)
        dur = (_iv(d["end"]) - d["start"]) if d["end"] is not None else t_end - d["start"]
        what = ("new epoch %s/%s after %s/%s" % (d["to"][0], d["to"][1], node, d["from"][1]) if d["new_epoch"]
                else "pause of %.0f ms%s of %s/%s" % (dur, "" if d["end"] is not None else " (until the end)",
                                                   node, d["from"][1]))
        inj = [f for f in faults if not f.get("observed")]
        if why and not ([f for f in inj if _explains(f, node, d["start"], svc)] or _quorum_out(inj, d["start"], n_nodes)):
            excused.append({"svc": svc, "t": d["start"], "what": what, "faults": [f["id"] for f in why]})
        if not why:
            in_force = [f for f in faults if f["start"] - FAULT_LEAD_MS <= d["start"] <= f["end"] + LINGER_MS]
            out.append(
                _v(
                    "disruption",
                    "liveness",
                    svc,
                    "%s at %.1f ms with no fault on %s; faults in force: %s"
                    % (what, d["start"], node,
                       ", ".join("#%s %s on %s" % (f["id"], f["kind"], "+".join(f["nodes"])) for f in in_force)
                       or "none"),
                    _excerpt(ws, d["start"]),
                    t=d["start"],
                    duration_ms=round(dur, 1),
                    faults_in_force=[f["id"] for f in in_force],
                )
            )
    # Takeover of every fault on an active's node: the first disruption of that active that the fault
    # explains, measured from the later of the fault's start and the active's last write to the next
    # write of the service: the time the service had no writer because of the fault. A fault that
    # leaves the active working for a while (packet loss it renews through) counts from when it stopped.
    times = [w["t"] for w in ws]
    for f in faults:
        if f.get("svc") not in (None, svc) or f.get("observed"):
            continue  # a fault of one service's process (kill9_service) is on that service alone; a stall was not injected
        act = _active_at(ws, times, f["start"])
        if act is None or not _on_node(f, act[0]):
            continue
        d = next((d for d in ds if d["from"] == act and _explains(f, act[0], d["start"], svc)), None)
        if d is None:
            takeovers.append({"fault": f["id"], "kind": f["kind"], "svc": svc, "disrupted": False})
            continue
        ms = (d["end"] - max(f["start"], d["start"])) if d["end"] is not None else None
        single = _single(f, faults, d["end"])
        leader = bool(f.get("out")) and f.get("leader") in f["nodes"]
        bound = TAKEOVER_LEADER_MS if leader else TAKEOVER_MS
        takeovers.append({"fault": f["id"], "kind": f["kind"], "svc": svc, "disrupted": True, "ms": ms,
                          "single": single, "to": d["to"], "leader": leader})
        if single and (ms is None or ms > bound):
            out.append(
                _v(
                    "takeover",
                    "liveness",
                    svc,
                    "fault #%s %s on %s (active %s/%s%s) at %.1f ms, held to %.1f ms: %s"
                    % (f["id"], f["kind"], "+".join(f["nodes"]), act[0], act[1], ", leader too" if leader else "",
                       f["start"], f["end"], "no write until the end" if ms is None
                       else "next write after %.0f ms (> %.0f)" % (ms, bound)),
                    _excerpt(ws, d["start"]),
                    t=f["start"],
                    fault=f["id"],
                )
            )
    return out


def steady(snapshot, meta, writes_by_svc):
    """"" if the snapshot shows the healed cluster, else why not."""
    sts = snapshot["statuses"]
    for n in meta["nodes"]:
        if sts.get(n) is None:
            return "%s does not answer" % n
    leaders = {st["cluster"]["leader"] for st in sts.values()}
    if len(leaders) != 1 or None in leaders:
        return "leaders %s" % sorted(map(str, leaders))
    if not all(st["cluster"]["has_quorum"] for st in sts.values()):
        return "no quorum somewhere"
    lst = sts[leaders.pop()]
    states = {x["name"]: x["state"] for x in lst.get("nodes", [])}
    down = [n for n in meta["nodes"] if states.get(n) != "alive"]
    if down:
        return "not alive: %s" % down
    for name, sdef in sorted(meta["services"].items()):
        views = set()
        for st in sts.values():
            s = next((s for s in st.get("services", []) if s["name"] == name), None)
            views.add(None if s is None else (s["active"], s["epoch"]))
        if len(views) != 1 or None in views:
            return "%s: views %s" % (name, sorted(map(str, views)))
        active, epoch = views.pop()
        if not active:
            return "%s: no active" % name
        s = next(s for s in lst["services"] if s["name"] == name)
        standbys = [i for i in s.get("instances", []) if i["role"] == "standby" and i.get("state") != "failed"]
        if len(standbys) < sdef.get("standbys", 1):
            return "%s: %d standby(s), want %d" % (name, len(standbys), sdef.get("standbys", 1))
        fresh = [w for w in writes_by_svc.get(name, []) if (w["node"], w["epoch"]) == (active, epoch)
                 and w["t"] >= snapshot["t"] - WRITE_FRESH_MS]
        if not fresh:
            return "%s: no recent write by the active %s/%s" % (name, active, epoch)
    return ""


def check_heal(history, wsby):
    heal = history.get("heal")
    if not heal:
        return [_v("heal", "liveness", None, "no heal phase recorded")]
    why = "no snapshot"
    for snap in heal.get("snapshots", []):
        why = steady(snap, history["meta"], wsby)
        if not why:
            if snap["t"] - heal["t"] > HEAL_BOUND_MS:
                return [_v("heal", "liveness", None, "steady only %.0f ms after healing (bound %.0f)"
                           % (snap["t"] - heal["t"], HEAL_BOUND_MS), t=snap["t"])]
            return []
    return [_v("heal", "liveness", None, "not steady within %.0f ms after healing: %s" % (HEAL_BOUND_MS, why),
               t=heal["t"])]


def unavailability(answers, faults):
    """Client-side outages: runs of failed requests per (svc, via), with or without a fault in force."""
    out = []
    by = {}
    for a in answers:
        by.setdefault((a["svc"], a["via"]), []).append(a)
    for (svc, via), ans in sorted(by.items()):
        ans.sort(key=lambda a: a["t_send"])
        run = None
        for a in ans + [None]:
            if a is not None and not a["ok"]:
                run = run or [a["t_send"], a["t_done"], 0]
                run[1], run[2] = a["t_done"], run[2] + 1
                continue
            if run:
                end = a["t_done"] if a is not None else run[1]
                hit = [f["id"] for f in faults if f["start"] - FAULT_LEAD_MS <= end and f["end"] + LINGER_MS >= run[0]]
                out.append({"svc": svc, "via": via, "start": run[0], "end": end, "ms": round(end - run[0], 1),
                            "failed": run[2], "faults": hit})
                run = None
    return out


def _stats(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return {"n": len(xs), "median": round(statistics.median(xs), 1),
            "p90": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 1), "max": round(xs[-1], 1)}


def stalls(waits):
    """[{"node", "start", "end", "wait_ms"}]: where a node's waits add up to STALL_MS within STALL_SPAN_MS
    while the agent itself used at most STALL_CPU_SHARE of a CPU there (overlapping windows merged; wait_ms:
    the waiting inside)."""
    out = []
    by = {}
    for w in waits:
        by.setdefault(w["node"], []).append(w)
    for node, ws in sorted(by.items()):
        ws.sort(key=lambda w: w["start"])
        cur, i, total, cpu = None, 0, 0.0, 0.0
        for j, w in enumerate(ws):
            total += w["ms"]
            cpu += w.get("cpu", 0.0)
            while w["end"] - ws[i]["start"] > STALL_SPAN_MS:
                total -= ws[i]["ms"]
                cpu -= ws[i].get("cpu", 0.0)
                i += 1
            if total < STALL_MS or cpu > STALL_CPU_SHARE * max(w["end"] - ws[i]["start"], STALL_MS):
                continue
            if cur and ws[i]["start"] <= cur["end"]:
                cur["end"] = max(cur["end"], w["end"])
            else:
                cur = {"node": node, "start": ws[i]["start"], "end": w["end"]}
                out.append(cur)
        for st in out:
            if st["node"] == node:
                st["wait_ms"] = round(sum(w["ms"] for w in ws if st["start"] <= w["start"] and w["end"] <= st["end"]), 1)
    return sorted(out, key=lambda x: x["start"])


def stall_faults(sts):
    """The stalls as observed faults: kind "starved" on the stalled node, taking it out while it lasts."""
    return [{"id": "s%d" % (i + 1), "kind": "starved", "nodes": [x["node"]], "start": x["start"], "end": x["end"],
             "out": True, "observed": True, "wait_ms": x.get("wait_ms")} for i, x in enumerate(sts)]


def check(history):
    """history (dict, see the module doc) -> {"violations": [...], "metrics": {...}}."""
    meta = history["meta"]
    t_end = meta["t_end"]
    injected = sorted(history.get("faults", []), key=lambda f: f["start"])
    faults = sorted(injected + stall_faults(stalls(history.get("waits", []))), key=lambda f: f["start"])
    wsby = _writes_by_svc(history.get("writes", []))
    violations, takeovers, excused, longest = [], [], [], {}
    for svc in sorted(set(meta["services"]) | set(wsby)):
        ws = wsby.get(svc, [])
        violations += check_overlap(svc, ws)
        violations += check_epoch_order(svc, ws)
        violations += check_fencing(svc, ws)
        violations += check_liveness(svc, ws, faults, t_end, takeovers, len(meta["nodes"]), meta.get("t_faults"),
                                     excused)
        gaps = [(_iv(d["end"]) if d["end"] is not None else t_end) - d["start"] for d in disruptions(ws, t_end)
                if d["start"] >= (meta.get("t_faults") or 0)]
        longest[svc] = round(max(gaps), 1) if gaps else 0.0
    violations += check_vips(history.get("vips", []), t_end)
    violations += check_answers(history.get("answers", []))
    violations += check_heal(history, wsby)
    exits_in_faults = []
    for e in history.get("agent_exits", []):
        # Noticed within a poll period (100 ms) of the exit: a fault on its node explains it.
        why = [f["id"] for f in faults if _on_node(f, e["node"]) and f["start"] - FAULT_LEAD_MS <= e["t"]
               and e["t"] <= f["end"] + LINGER_MS + 3000]
        if why:
            exits_in_faults.append(dict(e, faults=why))
            continue
        violations.append(_v("agent-exit", "liveness", None, "the agent of %s exited by itself (status %s) at %.1f ms"
                             % (e["node"], e["code"], e["t"]), t=e["t"]))
    for leak in history.get("leaks", []):
        violations.append(_v("leak", "liveness", None, leak))
    violations.sort(key=lambda v: (v["kind"] != "safety", v.get("t") or 0))
    kinds = {}
    for f in injected:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    by_kind = {}
    for t in takeovers:
        if t["disrupted"]:
            by_kind.setdefault(t["kind"] + (" (leader)" if t.get("leader") else ""), []).append(t["ms"])
    unav = unavailability(history.get("answers", []), faults)
    unexplained = [u for u in unav if not u["faults"]]
    return {
        "violations": violations,
        "metrics": {
            "faults_by_kind": kinds,
            "faults": len(injected),
            "stalls": len(faults) - len(injected),
            "excused_by_starvation": excused,
            "longest_outage_ms": longest,  # per service: the longest time without a write (faults or not)
            "writes": sum(len(w) for w in wsby.values()),
            "takeover_ms_by_kind": {k: _stats(v) for k, v in sorted(by_kind.items())},
            "takeovers": takeovers,
            "not_taken_over": [t for t in takeovers if t["disrupted"] and t["ms"] is None],
            "unavailability": {
                "runs": len(unav),
                "with_fault_ms": round(sum(u["ms"] for u in unav if u["faults"]), 1),
                "without_fault_ms": round(sum(u["ms"] for u in unexplained), 1),
                "without_fault": unexplained,
            },
            "agent_exits_during_faults": exits_in_faults,
            "safety_violations": sum(v["kind"] == "safety" for v in violations),
            "liveness_violations": sum(v["kind"] == "liveness" for v in violations),
        },
    }
