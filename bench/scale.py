#!/usr/bin/python3
"""Scale benchmark (issue 11, "Scale"): `make bench-scale` or `sh bench/scale [options]`.

One run on this machine, real agents on loopback (tests/integration/conftest.py's Cluster: ports,
configs, processes and cleanup), the release binary (copied into the run directory, so rebuilding
during a run changes nothing):

1. Reference: 3 agents, 1 service (cold standby, `nodes = n1 n2`, failback). RUNS times: kill -9 of
   the active's agent (the controller keeps the Raft leader elsewhere), time until the leader's
   state shows the role on another node with a higher epoch; restart the agent, wait until the
   layout is back (failback).
2. NODES agents (3 voters, 5 once 5 are alive: the cluster's own autopilot; the rest non-voting),
   services `s0000..` with `nodes = n(i % N) n(i % N + 1)`, one cold standby, `failback = yes`:
   service i prefers node i % N, so every node, the voters and the leader included, holds actives.
   The services grow through the stages of --growth (10,100,200,1000 by default); at each stage:
   time to place all (apply until each service is active on its preferred node with its standby),
   RSS of every agent (VmRSS: --settle seconds after placement, and again at the end of the idle
   window, the steady footprint the target is judged on), idle CPU of all agents together over --idle-window seconds (utime+stime of
   /proc/PID/stat), Raft log and snapshot bytes in each data dir's raft/, GET /v1/status latency on
   the leader and on a non-voter (median/max of --status-calls calls) and the size of its JSON.
3. At the stage with --services services (200): RUNS failovers, kill -9 of the agent of an active
   node that is not the leader (a different node each run), timed from the kill until every one of
   that node's active roles is held by another node with a higher epoch: the leader's
   /v1/events?after=SEQ is polled every --poll-ms; the figure is when the poll that showed the last
   move returned, confirmed by the leader's /v1/status (epochs). The events' own times (the
   leader's clock when it committed the move) are reported too. Then --leader-runs kills of the
   node that is both Raft leader and active: election (the new leader's "became leader" log line)
   and the time until all its actives moved (polled on a surviving voter).
4. Ratio: 25-node failover median / 3-node median (target <= 1.5); idle CPU of all agents
   (target <= 50 % of one core at NODES agents); RSS per agent (target <= 16 MiB with 200 services,
   idle: after the idle window; right after placement the leader holds what placing left in its
   heap until the next trim, lib/mem.h, and that figure is printed too).

Output: a table on stdout and JSON in build/bench/scale-YYYYMMDD-HHMMSS.json (--json to choose).
Every wait is bounded; every process started is removed at the end, on failure, Ctrl-C and SIGTERM.
Exit status: 0 when the run completed and every target was met, 1 when a target was missed, 2 when
the run failed (the JSON then says where).
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import conftest  # noqa: E402
from conftest import Cluster, pick_port_block, port_free  # noqa: E402

TARGET_RATIO = 1.5
TARGET_CPU_PCT = 50.0
TARGET_RSS_KIB = 16 * 1024

FORM_TIMEOUT_S = 180  # all NODES agents alive
FAILOVER_TIMEOUT_S = 30  # kill -> every role moved
STEADY_TIMEOUT_S = 120  # layout restored after a restart (failback)


class BenchError(Exception):
    pass


def log(msg):
    print("%s %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def stats(values):
    """min/median/p90/max (p90 by nearest rank) of a list; None when empty."""
    v = sorted(values)
    if not v:
        return None
    p90 = v[min(len(v) - 1, max(0, int(round(0.9 * len(v) + 0.5)) - 1))]
    return {"n": len(v), "min": v[0], "median": statistics.median(v), "p90": p90, "max": v[-1]}


def fmt_stats(s, unit="ms", digits=0):
    if not s:
        return "-"
    f = "%%.%df" % digits
    return ("min %s / median %s / p90 %s / max %s %s (n=%d)" %
            (f % s["min"], f % s["median"], f % s["p90"], f % s["max"], unit, s["n"]))


def uptime():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[:3]
    except OSError:
        return None


# ---- /proc ---------------------------------------------------------------------------------------

def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def raft_bytes(data_dir):
    """Bytes in DATA/raft: closed segments, open (preallocated) segments, snapshots, all."""
    out = {"closed_segments": 0, "open_segments": 0, "snapshots": 0, "other": 0, "files": 0}
    d = os.path.join(data_dir, "raft")
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        try:
            size = os.stat(os.path.join(d, name)).st_size
        except OSError:
            continue
        out["files"] += 1
        if name.startswith("snapshot-"):
            out["snapshots"] += size
        elif name.startswith("open-"):
            out["open_segments"] += size
        elif "-" in name and name.split("-")[0].isdigit():
            out["closed_segments"] += size
        else:
            out["other"] += size
    out["total"] = out["closed_segments"] + out["open_segments"] + out["snapshots"] + out["other"]
    return out


# ---- the cluster ---------------------------------------------------------------------------------

class ScaleCluster(Cluster):
    """conftest's Cluster with a port block for n nodes and quiet, fast API helpers."""

    def __init__(self, root, n_nodes):
        super().__init__(root)
        self.need = 2 * n_nodes + 8
        self.base_port = pick_port_block(self.need)
        self.next_port = self.base_port

    def _alloc(self):
        while self.next_port + 1 < self.base_port + self.need:
            a, b = self.next_port, self.next_port + 1
            self.next_port += 2
            if port_free(a) and port_free(b):
                return a, b
        raise BenchError("port block %d.. exhausted" % self.base_port)

    def get_json(self, node, path, timeout=10):
        code, _, body = self.api(node, path, timeout=timeout)
        if code != 200:
            raise BenchError("%s %s: HTTP %d %s" % (node, path, code, body[:200]))
        return json.loads(body.decode()), len(body)

    def st(self, node, timeout=10):
        return self.get_json(node, "/v1/status", timeout)[0]

    def last_seq(self, node):
        after = 0
        while True:
            ev, _ = self.get_json(node, "/v1/events?after=%d&limit=1000" % after)
            if ev["events"]:
                after = ev["events"][-1]["seq"]
            if not ev.get("more"):
                return after

    def alive(self):
        return [m for m in self.nodes if self.running(m)]

    def wait(self, cond, timeout, what, interval=0.1):
        """Bounded wait; raises BenchError (not pytest's Failed) with the last error seen."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                v = cond()
                if v:
                    return v
            except Exception as e:  # noqa: BLE001 - "not yet"
                last = e
            if time.monotonic() >= deadline:
                raise BenchError("timed out after %.0f s waiting for %s (last error: %r)" % (timeout, what, last))
            time.sleep(interval)

    def find_leader(self, timeout=30):
        def f():
            for m in self.alive():
                try:
                    st = self.st(m, timeout=5)
                except Exception:  # noqa: BLE001
                    continue
                ld = st["cluster"]["leader"]
                if ld and self.running(ld):
                    lst = self.st(ld, timeout=10)
                    if lst["cluster"]["leader"] == ld and lst["cluster"]["has_quorum"]:
                        return ld, lst
            return None

        return self.wait(f, timeout, "a leader with quorum")


LOG_MARKS = {
    "lease_lost": "lease about to run out without renewal",
    "fenced": "the guardian fenced process group",
    "elected": "became leader in term",
    "stepped_down": "no longer leader",
}


def log_marks(c, names):
    """How often each LOG_MARKS line occurs in the agents' logs so far (differences between two
    calls say what happened in between: lost leases, fencing, elections)."""
    out = dict.fromkeys(LOG_MARKS, 0)
    for m in names:
        text = c.log_text(m)
        for k, pat in LOG_MARKS.items():
            out[k] += text.count(pat)
    return out


def marks_since(before, after):
    return {k: after[k] - before[k] for k in before}


def epoch_moves(st):
    """Role moves so far: epochs above 1 (each service starts at epoch 1)."""
    return sum(max(0, s["epoch"] - 1) for s in st["services"])


def services_ini(n, names):
    out = []
    for i in range(n):
        first, second = names[i % len(names)], names[(i + 1) % len(names)]
        out.append("[service s%04d]\nrun = exec sleep 100000\nstandbys = 1\nnodes = %s %s\nfailback = yes\n"
                   "stop_timeout = 2s\n" % (i, first, second))
    return "\n".join(out)


def layout_problem(st, n_services, names):
    """None when the leader's status shows quorum, every node alive, and every service active on
    its preferred node (any epoch) with its standby on the second (the layout after failback);
    else what is missing."""
    if not st["cluster"]["has_quorum"] or st["consistency"].get("stale"):
        return "no quorum or stale: %s" % st["consistency"].get("reason")
    alive = {x["name"] for x in st["nodes"] if x["state"] == "alive"}
    if not set(names) <= alive:
        return "not alive: %s" % " ".join(sorted(set(names) - alive))
    svcs = st["services"]
    if len(svcs) != n_services:
        return "%d services defined" % len(svcs)
    for s in svcs:
        i = int(s["name"][1:])
        if s["active"] != names[i % len(names)] or s["demoting"]:
            return "%s: active %s%s (%s)" % (s["name"], s["active"], " demoting" if s["demoting"] else "",
                                            s["reason"])
        second = names[(i + 1) % len(names)]
        if not any(x["node"] == second and x["role"] == "standby" for x in s["instances"]):
            return "%s: no standby on %s (%s)" % (s["name"], second, s["reason"])
        if not any(x["node"] == s["active"] and x["state"] == "active" for x in s["instances"]):
            return "%s: instance on %s not active yet: %s" % (
                s["name"], s["active"], [(x["node"], x["state"], x["cause"]) for x in s["instances"]])
    return None


def layout_ok(st, n_services, names):
    return layout_problem(st, n_services, names) is None


def wait_layout(c, n_services, names, timeout, what):
    last = [None]
    shown = [time.monotonic()]

    def f():
        ld, st = c.find_leader(timeout=10)
        last[0] = layout_problem(st, n_services, names)
        if last[0] and time.monotonic() >= shown[0] + 15:
            shown[0] = time.monotonic()
            log("  still waiting for %s: %s" % (what, last[0]))
        return (ld, st) if last[0] is None else None

    try:
        return c.wait(f, timeout, what, interval=0.25)
    except BenchError as e:
        raise BenchError("%s; last: %s" % (e, last[0])) from None


def measure_move(c, observer, victim, moved, t_kill, wall_kill, poll_s, timeout):
    """Poll `observer`'s events until every service in `moved` (name -> old epoch) has a role event
    "-> active" on another node, then confirm with its status (active elsewhere, higher epoch).
    Returns dict: ms (poll-observed, kill to the poll that showed the last move), event_ms (the
    last move's event time minus the kill's wall time), first_ms, polls."""
    seq = moved["__seq"]
    want = {k: v for k, v in moved.items() if k != "__seq"}
    done = {}
    polls = 0
    deadline = t_kill + timeout
    t_last = None
    while time.monotonic() < deadline:
        polls += 1
        try:
            ev, _ = c.get_json(observer, "/v1/events?after=%d&limit=1000" % seq, timeout=2)
        except Exception:  # noqa: BLE001 - an observer busy or electing: try again
            time.sleep(poll_s)
            continue
        t = time.monotonic()
        for e in ev["events"]:
            seq = max(seq, e["seq"])
            if e["kind"] == "role" and e["to"] == "active" and e["service"] in want and e["node"] != victim:
                done.setdefault(e["service"], (t, e["time_ms"], e["cause"]))
        if len(done) == len(want):
            t_last = t
            break
        time.sleep(poll_s)
    if t_last is None:
        raise BenchError("%d of %d roles of %s moved within %.0f s" % (len(done), len(want), victim, timeout))

    # Confirm on the status (the events could name a move that did not commit as we think).
    def confirmed():
        st = c.st(observer, timeout=5)
        for s in st["services"]:
            if s["name"] in want and (s["active"] in (None, victim) or s["epoch"] <= want[s["name"]]):
                return None
        return time.monotonic()

    t_conf = c.wait(confirmed, max(1.0, deadline - time.monotonic()), "status to confirm the moves of %s" % victim,
                    interval=poll_s)
    if t_conf - t_last > 0.5:  # the status lagged the events: count until it agreed
        t_last = t_conf
    return {
        "ms": (t_last - t_kill) * 1000,
        "event_ms": max(v[1] for v in done.values()) - wall_kill * 1000,
        "first_ms": (min(v[0] for v in done.values()) - t_kill) * 1000,
        "roles": len(want),
        "polls": polls,
        # Why the leader moved them ("guardian on N fenced the instance", "lease of N expired", ...).
        "causes": sorted({v[2].split(";")[0] for v in done.values()}),
    }


def kill_and_time(c, victim, observer, st, poll_s):
    """kill -9 of victim's agent; the moves of its actives timed on observer. Returns the result."""
    moved = {s["name"]: s["epoch"] for s in st["services"] if s["active"] == victim}
    if not moved:
        raise BenchError("%s holds no active role" % victim)
    moved["__seq"] = c.last_seq(observer)
    wall = time.time()
    t0 = c.kill9(victim)
    r = measure_move(c, observer, victim, moved, t0, wall, poll_s, FAILOVER_TIMEOUT_S)
    r["victim"] = victim
    r["wall_kill"] = wall
    return r


def restart(c, name):
    n = c.nodes[name]
    try:
        n.proc.wait(10)
    except Exception:  # noqa: BLE001
        pass
    c.start(name)


def became_leader_after(c, wall_kill, names):
    """(name, seconds after the kill) of the first "became leader" log line after wall_kill."""
    best = None
    day = datetime.datetime.fromtimestamp(wall_kill).date()
    for m in names:
        try:
            with open(c.nodes[m].log, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            if "became leader in term" not in line:
                continue
            try:
                tod = datetime.datetime.strptime(line[:12], "%H:%M:%S.%f").time()
            except ValueError:
                continue
            t = datetime.datetime.combine(day, tod).timestamp()
            if t < wall_kill - 43200:  # after midnight
                t += 86400
            if t >= wall_kill and (best is None or t < best[1]):
                best = (m, t)
    return (best[0], (best[1] - wall_kill) * 1000) if best else (None, None)


def idle_cpu(c, names, window):
    pids = {m: c.pid(m) for m in names}
    t0 = time.monotonic()
    a = {m: cpu_ticks(p) for m, p in pids.items()}
    time.sleep(window)
    b = {m: cpu_ticks(p) for m, p in pids.items()}
    dt = time.monotonic() - t0
    hz = os.sysconf("SC_CLK_TCK")
    per = {m: (b[m] - a[m]) / hz / dt * 100 for m in names}
    return {"total_pct": sum(per.values()), "per_agent_pct": stats(list(per.values())), "window_s": dt,
            "by_agent_pct": per}


def status_latency(c, node, n):
    lat, size = [], 0
    for _ in range(n):
        t0 = time.monotonic()
        code, _, body = c.api(node, "/v1/status", timeout=20)
        lat.append((time.monotonic() - t0) * 1000)
        if code != 200:
            raise BenchError("status on %s: HTTP %d" % (node, code))
        size = len(body)
    return {"median_ms": statistics.median(lat), "max_ms": max(lat), "bytes": size}


# ---- phases --------------------------------------------------------------------------------------

def reference(args, root, res):
    """3 agents, 1 service: RUNS kills of the active's agent (leader elsewhere)."""
    names = ["n1", "n2", "n3"]
    c = ScaleCluster(os.path.join(root, "ref"), 3)
    os.makedirs(c.root, exist_ok=True)
    out = res["reference"] = {"nodes": 3, "services": 1, "runs": []}
    try:
        c.form(tuple(names))
        c.apply(services_ini(1, names), node=c.find_leader()[0])
        for run in range(args.runs):
            ld, st = wait_layout(c, 1, names, STEADY_TIMEOUT_S, "the reference layout")
            # The controller moves leadership off the active's node: wait for it (bounded).
            def moved_off():
                x = c.find_leader(10)
                return x if x[0] != x[1]["services"][0]["active"] and layout_ok(x[1], 1, names) else None

            try:
                ld, st = c.wait(moved_off, 15, "leadership off the active's node")
            except BenchError:
                pass
            victim = st["services"][0]["active"]
            if victim == ld:
                log("reference run %d: the leader %s is the active (leadership did not move off)" % (run + 1, ld))
            r = kill_and_time(c, victim, ld, st, args.poll_ms / 1000)
            r["leader"] = ld
            out["runs"].append(r)
            log("reference run %d: kill -9 %s (leader %s): moved in %.0f ms (events: %.0f ms)" %
                (run + 1, victim, ld, r["ms"], r["event_ms"]))
            restart(c, victim)
        out["failover_ms"] = stats([r["ms"] for r in out["runs"]])
        out["failover_event_ms"] = stats([r["event_ms"] for r in out["runs"]])
    finally:
        problems = c.cleanup()
        if problems:
            out["cleanup_problems"] = problems
            log("reference cleanup problems:\n" + "\n".join(problems))


def grow(c, names, target, prev, step, place_timeout, res_stage):
    """Apply services up to `target` (at most `step` new ones per apply), wait for the layout."""
    t0 = time.monotonic()
    marks0 = log_marks(c, names)
    moves0 = epoch_moves(c.find_leader()[1])
    applies = []
    k = prev
    while k < target:
        k = min(target, k + step)
        ld, _ = c.find_leader()
        ta = time.monotonic()
        r = c.cli("apply", c.write_file(services_ini(k, names)), node=ld, timeout=120)
        applies.append({"services": k, "s": time.monotonic() - ta, "rc": r.returncode})
        if r.returncode != 0:
            raise BenchError("apply of %d services failed (exit %d): %s %s" % (k, r.returncode, r.stdout[-500:],
                                                                              r.stderr[-500:]))
        if k < target:  # let the placements of this step commit before the next definitions
            c.wait(lambda: (lambda st: sum(1 for s in st["services"] if s["active"]) == k)(c.st(ld)),
                   max(1, t0 + place_timeout - time.monotonic()), "%d services active" % k, interval=0.5)
    try:
        ld, st = wait_layout(c, target, names, max(1, t0 + place_timeout - time.monotonic()),
                             "%d services placed" % target)
    finally:
        res_stage["during_placement"] = marks_since(marks0, log_marks(c, names))
    res_stage["place_s"] = time.monotonic() - t0
    res_stage["during_placement"]["moves"] = epoch_moves(st) - moves0
    res_stage["applies"] = applies
    return ld, st


def measure_stage(c, names, voters, args, res_stage):
    time.sleep(args.settle)
    ld, st = c.find_leader()
    res_stage["leader"] = ld
    res_stage["leader_actives"] = sum(1 for s in st["services"] if s["active"] == ld)
    rss = {m: rss_kib(c.pid(m)) for m in names}
    res_stage["rss_kib"] = stats(list(rss.values()))
    res_stage["rss_kib_leader"] = rss[ld]
    marks0 = log_marks(c, names)
    res_stage["idle_cpu"] = idle_cpu(c, names, args.idle_window)
    res_stage["during_idle"] = marks_since(marks0, log_marks(c, names))
    res_stage["idle_cpu"]["leader_pct"] = res_stage["idle_cpu"]["by_agent_pct"][ld]
    rss = {m: rss_kib(c.pid(m)) for m in names}
    res_stage["rss_idle_kib"] = stats(list(rss.values()))
    res_stage["rss_idle_kib_leader"] = rss[ld]
    res_stage["during_idle"]["moves"] = epoch_moves(c.find_leader()[1]) - epoch_moves(st)
    raft = {m: raft_bytes(c.nodes[m].data_dir) for m in names}
    res_stage["raft_leader"] = raft[ld]
    res_stage["raft_total"] = stats([r["total"] for r in raft.values()])
    res_stage["raft_closed_segments"] = stats([r["closed_segments"] for r in raft.values()])
    res_stage["raft_snapshots"] = stats([r["snapshots"] for r in raft.values()])
    non_voter = next((m for m in reversed(names) if m not in voters), names[-1])
    res_stage["status_leader"] = status_latency(c, ld, args.status_calls)
    res_stage["status_non_voter"] = status_latency(c, non_voter, args.status_calls)
    res_stage["status_non_voter"]["node"] = non_voter
    res_stage["load"] = uptime()
    d = res_stage["during_idle"]
    if any(d.values()):
        log("  during the idle window: %s" % d)
    log("  idle CPU per agent: %s; the leader %s: %.1f %%" % (
        fmt_stats(res_stage["idle_cpu"]["per_agent_pct"], "%", 1), ld, res_stage["idle_cpu"]["leader_pct"]))
    log("  %d services: RSS median %d KiB max %d KiB (after the idle window: median %d, max %d); idle CPU %.1f %% of a core (all %d agents); "
        "raft on the leader %d B (closed %d, open %d, snapshots %d); status %d B, leader %.1f/%.1f ms, "
        "non-voter %.1f/%.1f ms (median/max)" % (
            res_stage["services"], res_stage["rss_kib"]["median"], res_stage["rss_kib"]["max"],
            res_stage["rss_idle_kib"]["median"], res_stage["rss_idle_kib"]["max"],
            res_stage["idle_cpu"]["total_pct"], len(names), raft[ld]["total"], raft[ld]["closed_segments"],
            raft[ld]["open_segments"], raft[ld]["snapshots"], res_stage["status_leader"]["bytes"],
            res_stage["status_leader"]["median_ms"], res_stage["status_leader"]["max_ms"],
            res_stage["status_non_voter"]["median_ms"], res_stage["status_non_voter"]["max_ms"]))


def failovers(c, names, n_services, args, out):
    """RUNS kills of an active non-leader node's agent, a different node each run."""
    killed = set()
    for run in range(args.runs):
        ld, st = wait_layout(c, n_services, names, STEADY_TIMEOUT_S, "the layout before failover run %d" % (run + 1))
        voters = {x["name"] for x in st["nodes"] if x["voter"]}
        holders = [m for m in names if m != ld and m not in killed and
                   any(s["active"] == m for s in st["services"])]
        # Alternate non-voters and voters (a voter's death also costs the lease path one voter).
        pool = [m for m in holders if (m in voters) == (run % 3 == 2)] or holders
        victim = pool[0]
        killed.add(victim)
        r = kill_and_time(c, victim, ld, st, args.poll_ms / 1000)
        r["leader"] = ld
        r["victim_voter"] = victim in voters
        ld2 = c.find_leader()[0]
        r["leader_after"] = ld2
        out["runs"].append(r)
        log("failover run %d: kill -9 %s (%s, %d actives; leader %s%s): all moved in %.0f ms "
            "(first %.0f ms; events %.0f ms)" % (run + 1, victim, "voter" if r["victim_voter"] else "non-voter",
                                                r["roles"], ld, "" if ld2 == ld else ", then " + ld2, r["ms"],
                                                r["first_ms"], r["event_ms"]))
        restart(c, victim)
    out["failover_ms"] = stats([r["ms"] for r in out["runs"]])
    out["failover_event_ms"] = stats([r["event_ms"] for r in out["runs"]])


def leader_kills(c, names, n_services, args, out):
    for run in range(args.leader_runs):
        ld, st = wait_layout(c, n_services, names, STEADY_TIMEOUT_S, "the layout before leader run %d" % (run + 1))
        voters = [x["name"] for x in st["nodes"] if x["voter"]]
        actives = sum(1 for s in st["services"] if s["active"] == ld)
        r = {"leader": ld, "leader_actives": actives, "voters": len(voters)}
        log("leader run %d: leader %s holds %d active roles (voters: %s)" % (run + 1, ld, actives, " ".join(voters)))
        if not actives:
            r["skipped"] = "the leader holds no active role (leadership moved off the actives)"
            out["runs"].append(r)
            continue
        observer = next(m for m in voters if m != ld)
        rr = kill_and_time(c, ld, observer, st, args.poll_ms / 1000)
        r.update(rr)
        new, el_ms = became_leader_after(c, rr["wall_kill"], [m for m in names if m != ld])
        r["new_leader"] = new
        r["election_ms"] = el_ms
        out["runs"].append(r)
        log("leader run %d: kill -9 %s (leader, %d actives): new leader %s after %s ms, all actives moved in "
            "%.0f ms (first %.0f ms; events %.0f ms)" % (run + 1, ld, actives, new,
                                                        "%.0f" % el_ms if el_ms is not None else "?", rr["ms"],
                                                        rr["first_ms"], rr["event_ms"]))
        restart(c, ld)
    done = [r for r in out["runs"] if "ms" in r]
    out["moved_ms"] = stats([r["ms"] for r in done])
    out["election_ms"] = stats([r["election_ms"] for r in done if r.get("election_ms") is not None])
    out["moved_event_ms"] = stats([r["event_ms"] for r in done])


def big(args, root, res):
    names = ["n%d" % i for i in range(1, args.nodes + 1)]
    c = ScaleCluster(os.path.join(root, "big"), args.nodes)
    os.makedirs(c.root, exist_ok=True)
    out = res["scale"] = {"nodes": args.nodes, "stages": [], "failover": {"runs": []}, "leader_kill": {"runs": []}}
    try:
        t0 = time.monotonic()
        c.form(tuple(names[:3]))
        for m in names[3:]:
            c.add_node(m)

        def joined():
            ld, st = c.find_leader(10)
            alive = {x["name"] for x in st["nodes"] if x["state"] == "alive"}
            nv = sum(1 for x in st["nodes"] if x["voter"])
            return st if alive == set(names) and nv in (3, 5) and not st["consistency"].get("stale") else None

        st = c.wait(joined, FORM_TIMEOUT_S, "all %d nodes alive" % len(names), interval=0.5)
        voters = [x["name"] for x in st["nodes"] if x["voter"]]
        out["form_s"] = time.monotonic() - t0
        out["voters"] = voters
        log("%d agents alive in %.1f s; voters %s" % (len(names), out["form_s"], " ".join(voters)))
        stage0 = {"services": 0}
        measure_stage(c, names, voters, args, stage0)
        out["stages"].append(stage0)
        prev = 0
        for n in args.growth:
            stage = {"services": n}
            out["stages"].append(stage)
            try:
                grow(c, names, n, prev, args.step, args.place_timeout, stage)
            except BenchError as e:
                stage["error"] = str(e)
                log("stage %d services: %s" % (n, e))
                out["error"] = "growth stopped at %d services: %s" % (n, e)
                break
            prev = n
            log("%d services placed in %.1f s (%d applies)" % (n, stage["place_s"], len(stage["applies"])))
            measure_stage(c, names, voters, args, stage)
            if n == args.services:
                failovers(c, names, n, args, out["failover"])
                leader_kills(c, names, n, args, out["leader_kill"])
    finally:
        problems = c.cleanup()
        if problems:
            out["cleanup_problems"] = problems
            log("cleanup problems:\n" + "\n".join(problems[:20]))


# ---- report --------------------------------------------------------------------------------------

def report(res, args):
    lines = []
    ok = True
    ref = res.get("reference", {})
    sc = res.get("scale", {})
    fo = sc.get("failover", {})
    lk = sc.get("leader_kill", {})
    lines.append("")
    lines.append("bench/scale: %d agents, %s services (failover stage %d), %s; load before/after %s / %s" % (
        args.nodes, ",".join(map(str, args.growth)), args.services, res["binary"], res.get("load_before"),
        res.get("load_after")))
    lines.append("")
    lines.append("failover after kill -9 of an active's agent (not the leader), kill -> all its roles on another "
                 "node with a higher epoch (poll of the leader's events every %d ms):" % args.poll_ms)
    lines.append("  3 agents / 1 service : %s" % fmt_stats(ref.get("failover_ms")))
    lines.append("    (events' own times): %s" % fmt_stats(ref.get("failover_event_ms")))
    lines.append("  %d agents / %d services: %s" % (args.nodes, args.services, fmt_stats(fo.get("failover_ms"))))
    lines.append("    (events' own times): %s" % fmt_stats(fo.get("failover_event_ms")))
    for r in fo.get("runs", []):
        lines.append("    %s (%s, %d roles): %.0f ms, first role %.0f ms" % (
            r["victim"], "voter" if r["victim_voter"] else "non-voter", r["roles"], r["ms"], r["first_ms"]))
    if ref.get("failover_ms") and fo.get("failover_ms"):
        ratio = fo["failover_ms"]["median"] / ref["failover_ms"]["median"]
        res["ratio"] = ratio
        met = ratio <= TARGET_RATIO
        ok &= met
        lines.append("  ratio of the medians: %.2fx (target <= %.1fx: %s)" % (ratio, TARGET_RATIO,
                                                                            "met" if met else "MISSED"))
    else:
        ok = False
    lines.append("")
    lines.append("kill -9 of the node that is both Raft leader and active (election + lease):")
    for r in lk.get("runs", []):
        if "skipped" in r:
            lines.append("  leader %s: skipped, %s" % (r["leader"], r["skipped"]))
        else:
            lines.append("  leader %s (%d actives): new leader %s after %s ms; all its actives moved after %.0f ms "
                         "(first %.0f ms)" % (r["leader"], r["leader_actives"], r["new_leader"],
                                              "%.0f" % r["election_ms"] if r["election_ms"] is not None else "?",
                                              r["ms"], r["first_ms"]))
    causes = sorted({c for r in lk.get("runs", []) for c in r.get("causes", [])})
    if causes:
        lines.append("  what ended the old roles (the leader's cause): %s" % "; ".join(causes[:4]))
    lines.append("  election: %s" % fmt_stats(lk.get("election_ms")))
    lines.append("  moved   : %s" % fmt_stats(lk.get("moved_ms")))
    lines.append("")
    lines.append("growth on %d agents (voters: %s):" % (args.nodes, " ".join(sc.get("voters", []))))
    hdr = ("%8s %8s %20s %10s %20s %9s %12s %12s %9s %15s %15s %8s %11s %9s" %
           ("services", "place s", "RSS KiB min/med/max", "leader RSS", "RSS idle min/med/max", "idle CPU%",
            "raft leader B",
            "raft closed B", "snap B", "status leader ms", "status nonvoter", "JSON B", "place churn",
            "idle churn"))
    lines.append(hdr)
    for s in sc.get("stages", []):
        if "error" in s:
            dp = s.get("during_placement", {})
            lines.append("%8d  failed: %s; churn while placing: %s" % (s["services"], s["error"][:200], dp))
            ok = False
            continue
        if "rss_kib" not in s:
            continue
        dp, di = s.get("during_placement", {}), s.get("during_idle", {})
        ri = s.get("rss_idle_kib", {"min": 0, "median": 0, "max": 0})
        lines.append("%8d %8s %20s %10d %20s %9.1f %12d %12d %9d %7.1f/%7.1f %7.1f/%7.1f %8d %11s %9s" % (
            s["services"], "%.1f" % s["place_s"] if "place_s" in s else "-",
            "%d/%d/%d" % (s["rss_kib"]["min"], s["rss_kib"]["median"], s["rss_kib"]["max"]), s["rss_kib_leader"],
            "%d/%d/%d" % (ri["min"], ri["median"], ri["max"]),
            s["idle_cpu"]["total_pct"], s["raft_leader"]["total"], s["raft_leader"]["closed_segments"],
            s["raft_leader"]["snapshots"], s["status_leader"]["median_ms"], s["status_leader"]["max_ms"],
            s["status_non_voter"]["median_ms"], s["status_non_voter"]["max_ms"], s["status_leader"]["bytes"],
            "%s/%s" % (dp.get("moves", "-"), dp.get("lease_lost", "-")),
            "%s/%s" % (di.get("moves", "-"), di.get("lease_lost", "-"))))
    lines.append("  churn = role moves (epochs) / \"lease about to run out\" log lines of all agents, while placing "
                 "and in the idle window; idle CPU with churn is not idle")
    at = next((s for s in sc.get("stages", []) if s["services"] == args.services and "rss_kib" in s), None)
    if at:
        cpu_met = at["idle_cpu"]["total_pct"] <= TARGET_CPU_PCT
        rss_met = at["rss_idle_kib"]["max"] <= TARGET_RSS_KIB
        ok &= cpu_met and rss_met
        lines.append("  at %d services: idle CPU of all %d agents %.1f %% of one core (target <= %.0f %%: %s); "
                     "RSS per agent, idle, max %d KiB (target <= %d KiB: %s; right after placement max %d KiB); "
                     "the leader held %d active roles" % (
                         args.services, args.nodes, at["idle_cpu"]["total_pct"], TARGET_CPU_PCT,
                         "met" if cpu_met else "MISSED", at["rss_idle_kib"]["max"], TARGET_RSS_KIB,
                         "met" if rss_met else "MISSED", at["rss_kib"]["max"], at["leader_actives"]))
    else:
        ok = False
    if sc.get("error"):
        lines.append("  " + sc["error"])
    for k in ("reference", "scale"):
        if res.get(k, {}).get("cleanup_problems"):
            lines.append("cleanup problems (%s): %d" % (k, len(res[k]["cleanup_problems"])))
            ok = False
    return "\n".join(lines), ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=25)
    ap.add_argument("--services", type=int, default=200, help="the stage at which failovers are measured")
    ap.add_argument("--growth", default="10,100,200,400,600,800,1000", help="service counts, in order")
    ap.add_argument("--runs", type=int, default=5, help="failover runs (3 nodes and NODES nodes)")
    ap.add_argument("--leader-runs", type=int, default=3, help="kills of the leader-and-active node")
    ap.add_argument("--step", type=int, default=50, help="services added per apply at most (docs/testing.md, Scale)")
    ap.add_argument("--place-timeout", type=float, default=300, help="seconds to place a stage's services (all its applies)")
    ap.add_argument("--poll-ms", type=float, default=5.0)
    ap.add_argument("--idle-window", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after placement before measuring")
    ap.add_argument("--status-calls", type=int, default=20)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--bin", default=os.environ.get("UNDERSTUDY_BIN") or os.path.join(REPO, "build", "understudy"))
    ap.add_argument("--json", help="output file (default build/bench/scale-DATE.json)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    args = ap.parse_args()
    args.growth = [int(x) for x in args.growth.split(",") if x]
    if args.services not in args.growth:
        args.growth = sorted(set(args.growth + [args.services]))
    if not os.access(args.bin, os.X_OK):
        print("bench/scale: no binary %s (make -j2 build/understudy)" % args.bin, file=sys.stderr)
        return 2

    root = tempfile.mkdtemp(prefix="understudy-scale-")
    binary = os.path.join(root, "understudy")
    shutil.copy2(args.bin, binary)
    conftest.BIN = binary

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    res = {"binary": os.path.relpath(args.bin, REPO) if args.bin.startswith(REPO) else args.bin,
           "args": {k: v for k, v in vars(args).items()}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "load_before": uptime(), "run_dir": root}
    log("run dir %s; load %s" % (root, res["load_before"]))
    failed = None
    try:
        if not args.skip_reference:
            reference(args, root, res)
        big(args, root, res)
    except (BenchError, KeyboardInterrupt, Exception) as e:  # noqa: BLE001
        failed = "%s: %s" % (type(e).__name__, e)
        res["error"] = failed
        log("FAILED: " + failed)
    except BaseException as e:  # pytest.fail's Failed from conftest's waits
        failed = "%s: %s" % (type(e).__name__, str(e)[:4000])
        res["error"] = failed
        log("FAILED: " + failed)
    res["load_after"] = uptime()
    res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text, ok = report(res, args)
    res["targets_met"] = ok and not failed
    print(text, flush=True)
    path = args.json or os.path.join(REPO, "build", "bench", "scale-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print("JSON: %s" % path)
    if args.keep or failed:
        print("run directory kept: %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 2 if failed else (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
