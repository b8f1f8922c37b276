#!/usr/bin/env python3
"""Failover benchmark for understudy (run through `make bench` / bench/failover).

For each timing profile: start 3 agents on loopback (release binary), apply the sample HTTP service
(demo/sample_service.py, cold standby, standbys = 1), measure one agent's idle RSS and CPU, then
repeat RUNS times:
  wait until steady (quorum, every node alive, one active whose HTTP port answers its epoch;
  with --leader-apart also: the Raft leader is another node),
  T0 = just before `kill -9` of the active node's agent,
  poll the other nodes' service ports with a new HTTP connection each, every 2 ms, until one
  answers with a higher epoch: T1; record T1 - T0,
  restart the killed agent and wait until the leader sees it alive again.
Every wait is bounded; every process started is stopped on exit (also on Ctrl-C / SIGTERM).
Only the Python standard library is used; the loopback cluster harness is bench/looplib.py.
"""

import argparse
import json
import os
import signal
import sys
import time

from looplib import (NODES, SAMPLE, STEADY_TIMEOUT_S, BenchError, LoopCluster, add_port_args,
                     add_run_args, await_answer, check_bin_and_ports, install_cleanup, log,
                     parse_profiles, probe, run_guarded, runs_where_line, summary_line,
                     target_line)
from looplib import percentile  # noqa: F401  (bench/failover-netns.py imports it from here)

TARGET_MEDIAN_MS = {"default": 800.0, "fast": 350.0}

FAILOVER_TIMEOUT_S = 30.0  # kill -> a survivor answers with a higher epoch
REJOIN_TIMEOUT_S = 30.0   # restarted agent seen alive by the leader
POLL_INTERVAL_S = 0.002   # the prober's period
IDLE_SETTLE_S = 2.0       # quiet time before the idle measurement
IDLE_WINDOW_S = 5.0       # CPU measured over this window


# ---- small helpers -------------------------------------------------------------------------------

def node_epoch(port, timeout):
    """The sample service's answer on port as (node, epoch), or None."""
    a = probe(port, timeout)
    return (a[1], a[2]) if a and a[2] is not None else None


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


# ---- one 3-node cluster --------------------------------------------------------------------------

class Cluster(LoopCluster):
    def __init__(self, binary, profile, raft_base, api_base, http_base, leader_apart=False):
        super().__init__(binary, profile, raft_base, api_base, http_base,
                         "understudy-bench-%s." % profile)
        self.leader_apart = leader_apart

    def write_services(self):
        with open(self.services, "w") as f:
            f.write("[service web]\nrun = exec python3 %s --base %d\nstandbys = 1\nstandby = cold\n"
                    % (SAMPLE, self.http_base))

    def steady(self):
        """(active, epoch, leader) once: quorum, all alive, one active answering; else None."""
        st = self.status()
        if not st:
            return None
        c = st.get("cluster") or {}
        if not c.get("has_quorum") or not c.get("leader"):
            return None
        nodes = {x["name"]: x for x in st.get("nodes", [])}
        if any(n not in nodes or nodes[n]["state"] != "alive" or nodes[n]["leaving"]
               for n in NODES):
            return None
        if any(self.procs[n].poll() is not None for n in NODES):
            return None
        web = [s for s in st.get("services", []) if s["name"] == "web"]
        if not web or not web[0].get("active"):
            return None
        svc = web[0]
        act = svc["active"]
        if self.leader_apart and act == c["leader"]:
            return None  # the controller moves leadership off active nodes: wait for that too
        inst = [i for i in svc["instances"] if i["node"] == act]
        if not inst or inst[0].get("state") != "active":
            return None
        ans = node_epoch(self.http[act], 0.5)
        if ans != (act, svc["epoch"]):
            return None
        return act, svc["epoch"], c["leader"]


# ---- the benchmark -------------------------------------------------------------------------------

def measure_idle(cl, node):
    pid = cl.pid(node)
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    time.sleep(IDLE_WINDOW_S)
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    return vm_rss_kb(pid), 100.0 * (c1 - c0) / hz / (t1 - t0)


def failover_once(cl, run, victim, epoch, leader):
    survivors = [n for n in NODES if n != victim]
    proc = cl.procs[victim]
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    answer = await_answer([cl.http[n] for n in survivors],
                          lambda a: a[2] is not None and a[2] > epoch,
                          t0 + FAILOVER_TIMEOUT_S, POLL_INTERVAL_S)
    t1 = time.monotonic()
    proc.wait(timeout=5)
    if answer is None:
        st = cl.status(nodes=survivors)
        raise BenchError(
            "run %d: after kill -9 of %s (epoch %d) no other node answered with a higher epoch "
            "within %.0f s\nleader status: %s\n%s"
            % (run, victim, epoch, FAILOVER_TIMEOUT_S, json.dumps(st, indent=1), cl.log_tails()))
    ms = (t1 - t0) * 1000.0
    # The old active must be gone: its guardian fences it when the agent dies.
    stale = node_epoch(cl.http[victim], 0.2)
    role = "leader" if victim == leader else "follower"
    log("  run %2d: kill -9 %s (active, %s, epoch %d) -> %s answers epoch %d after %7.1f ms%s"
        % (run, victim, role, epoch, answer[1], answer[2], ms,
           "  WARNING: old active still answers %r" % (stale,) if stale else ""))
    return ms, victim == leader


def rejoin(cl, victim):
    cl.start(victim)

    def seen_alive():
        st = cl.status()
        if not st or not (st.get("cluster") or {}).get("leader"):
            return None
        return any(x["name"] == victim and x["state"] == "alive" for x in st.get("nodes", []))

    cl.wait("restarted agent %s seen alive" % victim, seen_alive, REJOIN_TIMEOUT_S)


def bench_profile(args, profile, state):
    cl = Cluster(args.bin, profile, args.raft_port, args.api_port, args.http_base,
                 args.leader_apart)
    res = {"samples": [], "idle": None}

    def body():
        log("== profile %s: 3 agents (%s), sample HTTP service, cold standby, standbys = 1, %d runs"
            % (profile, cl.dir, args.runs))
        cl.start_all()
        cl.apply()
        act, epoch, leader = cl.wait("steady state", cl.steady, STEADY_TIMEOUT_S)
        time.sleep(IDLE_SETTLE_S)
        rss_kb, cpu = measure_idle(cl, leader)
        res["idle"] = (leader, rss_kb, cpu)
        log("  idle: agent %s (leader): VmRSS %d kB, CPU %.2f %% over %.0f s"
            % (leader, rss_kb, cpu, IDLE_WINDOW_S))
        for run in range(1, args.runs + 1):
            act, epoch, leader = cl.wait("steady state before run %d" % run, cl.steady,
                                         STEADY_TIMEOUT_S)
            res["samples"].append(failover_once(cl, run, act, epoch, leader))
            rejoin(cl, act)

    res["error"] = run_guarded(state, cl, "profile %s" % profile, args.keep, body)
    return res


def report(profile, res, runs):
    s = sorted(ms for ms, _ in res["samples"])
    lines = ["profile %s:" % profile]
    if s:
        lines.append("  failover (kill -9 of the active's agent -> new epoch answers), %d/%d runs:"
                     % (len(s), runs))
        lines.append(summary_line(s))
        for label, was_leader in (("a follower", False), ("also the Raft leader", True)):
            sub = sorted(ms for ms, ld in res["samples"] if ld == was_leader)
            if sub:
                lines.append(runs_where_line("the killed active was " + label, sub))
    else:
        lines.append("  failover: no successful run")
    if res["idle"]:
        node, rss, cpu = res["idle"]
        lines.append("  idle agent (%s, leader): RSS %d kB (%.1f MiB), CPU %.2f %% over %.0f s"
                     % (node, rss, rss / 1024.0, cpu, IDLE_WINDOW_S))
    line, ok = target_line(s, runs, res["error"], TARGET_MEDIAN_MS[profile])
    lines.append(line)
    return "\n".join(lines), ok


def main():
    ap = argparse.ArgumentParser(description="understudy failover benchmark")
    add_run_args(ap)
    add_port_args(ap, 17101, 17201, 17080)
    ap.add_argument("--leader-apart", action="store_true",
                    help="steady also means the Raft leader is not the active node")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and agent logs")
    args = ap.parse_args()
    profiles = parse_profiles(args.profiles, TARGET_MEDIAN_MS)
    check_bin_and_ports(args, "%d/%s: %s")
    state = install_cleanup()

    results = {}
    for p in profiles:
        results[p] = bench_profile(args, p, state)
    log()
    log("== failover benchmark: %s, %d runs per profile%s" % (
        args.bin, args.runs, ", leader kept apart from the active" if args.leader_apart else ""))
    all_ok = True
    for p in profiles:
        text, ok = report(p, results[p], args.runs)
        all_ok &= ok
        log(text)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
