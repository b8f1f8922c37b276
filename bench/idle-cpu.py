#!/usr/bin/python3
"""Idle CPU of a cluster: N agents on loopback, S services spread over them (service i prefers node
i % N, then the next; one cold standby), then the CPU time (utime + stime from /proc/PID/stat) that
all agents and all guardians use together over a window of idleness, as a percentage of one core,
with the leader's, a voter's and a non-voter's share.

    UNDERSTUDY_BIN=build/understudy python3 bench/idle-cpu.py --nodes 25 --services 200 --window 20

Target (issue 11): 25 idle agents with 200 services <= 50 % of one core together (default profile).
CPU time per process is robust on a loaded machine; the figure still includes the agents' share of
scheduling noise, so the load average is printed with it. --perf DIR records the leader and a non-voter
with perf (call graphs) over the window. Figures: docs/timing.md, "Who pings whom".
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from conftest import Cluster, children_of, pick_port_block, port_free  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def services_ini(n_services, names):
    out = []
    for i in range(n_services):
        first, second = names[i % len(names)], names[(i + 1) % len(names)]
        out.append(
            "[service s%04d]\nrun = exec sleep 100000\nstandbys = 1\nnodes = %s %s\nstop_timeout = 2s\n"
            % (i, first, second)
        )
    return "\n".join(out)


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=25)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--window", type=float, default=20.0, help="seconds of idleness measured")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--perf", default=None, help="a directory: perf record the leader and a non-voter there")
    ap.add_argument("--step", type=int, default=50, help="services added per apply at most")
    args = ap.parse_args()
    names = ["n%d" % i for i in range(1, args.nodes + 1)]
    root = tempfile.mkdtemp(prefix="us-idle-")
    c = Cluster(root, profile=args.profile)
    need = 2 * args.nodes + 8
    c.base_port = pick_port_block(need)
    c.next_port = c.base_port

    def _alloc():
        while c.next_port + 1 < c.base_port + need:
            a, b = c.next_port, c.next_port + 1
            c.next_port += 2
            if port_free(a) and port_free(b):
                return a, b
        raise RuntimeError("ports")

    c._alloc = _alloc
    try:
        c.form(tuple(names[:3]))
        for name in names[3:]:
            c.add_node(name)

        def joined():
            st = c.leader_status()
            ok = {x["name"] for x in st["nodes"] if x["state"] == "alive"} == set(names)
            return st if ok else None

        c.wait_until(joined, 180, "all nodes alive")
        if args.services:
            # A few services per apply: a leader placing hundreds at once on a loaded machine
            # (each placement starts a process) may lose its leadership meanwhile.
            for k in list(range(args.step, args.services, args.step)) + [args.services]:
                c.apply(services_ini(k, names), node=c.leader(60))
                c.wait_until(lambda: sum(1 for x in c.leader_status(60)["services"] if x["active"]) >= k,
                             300, "%d services active" % k, interval=0.5)

            def placed():
                st = c.leader_status(60)
                n = sum(1 for x in st["services"] if x["active"])
                return st if n == args.services else None

            c.wait_until(placed, 600, "%d services active" % args.services, interval=0.5)
        time.sleep(3)
        st = c.leader_status()
        leader = c.leader()
        voters = [x["name"] for x in st["nodes"] if x["voter"]]
        agents = {m: c.pid(m) for m in names}
        guardians = {m: [p for p, s in children_of(agents[m]) if s[4] == "us-guardian"] for m in names}
        t0 = time.monotonic()
        a0 = {m: cpu_ticks(p) for m, p in agents.items()}
        g0 = {m: sum(cpu_ticks(p) for p in gs) for m, gs in guardians.items()}
        perf = []
        if args.perf:
            # perf record on the leader and on the last non-voter, over the window.
            import subprocess

            nv = [m for m in names if m not in voters][-1:]
            for m in [leader] + nv:
                out = "%s/perf-%s.data" % (args.perf, "leader" if m == leader else "nonvoter")
                perf.append(subprocess.Popen(
                    ["perf", "record", "-q", "-F", "199", "--call-graph", "dwarf,16384", "-o", out, "-p", str(agents[m]), "--",
                     "sleep", str(args.window)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(args.window)
        for p in perf:
            p.wait()
        dt = time.monotonic() - t0
        a1 = {m: cpu_ticks(p) for m, p in agents.items()}
        g1 = {m: sum(cpu_ticks(p) for p in gs) for m, gs in guardians.items()}
        st2 = c.leader_status()
        alive = sum(1 for x in st2["nodes"] if x["state"] == "alive")
        pct = {m: 100.0 * (a1[m] - a0[m]) / TICKS / dt for m in names}
        gpct = sum(100.0 * (g1[m] - g0[m]) / TICKS / dt for m in names)
        non_voters = [m for m in names if m not in voters]
        print(
            "%d agents (%d voters), %d services, %.1f s idle, load %s: agents %.1f %% of one core "
            "(leader %s %.1f %%, other voters median %.1f %%, non-voters median %.1f %% max %.1f %%), "
            "guardians %.1f %%; %d/%d nodes alive on the leader afterwards"
            % (
                len(names), len(voters), args.services, dt, "%.2f %.2f %.2f" % os.getloadavg(),
                sum(pct.values()), leader, pct[leader],
                statistics.median([pct[m] for m in voters if m != leader] or [0]),
                statistics.median([pct[m] for m in non_voters] or [0]),
                max([pct[m] for m in non_voters] or [0]),
                gpct, alive, len(names),
            ),
            flush=True,
        )
    finally:
        problems = c.cleanup()
        if problems:
            print("cleanup problems:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
