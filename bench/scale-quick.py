#!/usr/bin/python3
"""Quick scale measurement (the seed of bench/scale): N agents on loopback, S services spread over
them (service i prefers node i % N, then the next; one cold standby), and for each S: the time
until all are active, the RSS of every agent (VmRSS) and the latency of GET /v1/status on the
leader and on a non-voter (median and max of 20 calls).

    UNDERSTUDY_BIN=build/understudy python3 bench/scale-quick.py --nodes 10 --services 10,100,200,1000

Uses tests/integration/conftest.py's Cluster (real agents, cleanup included).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import conftest  # noqa: E402
from conftest import Cluster, pick_port_block, port_free  # noqa: E402


def services_ini(n_services, names):
    out = []
    for i in range(n_services):
        first, second = names[i % len(names)], names[(i + 1) % len(names)]
        out.append(
            "[service s%04d]\nrun = exec sleep 100000\nstandbys = 1\nnodes = %s %s\nstop_timeout = 2s\n"
            % (i, first, second)
        )
    return "\n".join(out)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def status_latency(c, node, n=20):
    lat = []
    for _ in range(n):
        t0 = time.monotonic()
        code, _, body = c.api(node, "/v1/status", timeout=20)
        lat.append(time.monotonic() - t0)
        assert code == 200
    size = len(body)
    return statistics.median(lat) * 1000, max(lat) * 1000, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--services", default="10,100,200,1000")
    ap.add_argument("--step", type=int, default=200, help="services added per apply at most")
    args = ap.parse_args()
    names = ["n%d" % i for i in range(1, args.nodes + 1)]
    root = tempfile.mkdtemp(prefix="us-scale-")
    c = Cluster(root)
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

        st = c.wait_until(joined, 120, "all nodes alive")
        voters = [x["name"] for x in st["nodes"] if x["voter"]]
        non_voter = next(m for m in reversed(names) if m not in voters)
        rss0 = [rss_kib(c.pid(m)) for m in names]
        print("%d nodes (%d voters), idle: RSS median %d KiB, max %d KiB" % (
            len(names), len(voters), statistics.median(rss0), max(rss0)))
        prev = 0
        for s in [int(x) for x in args.services.split(",")]:
            t0 = time.monotonic()
            # Grow by at most `step` services per apply: one command defines them all, and a
            # leader deciding a thousand placements at once on a loaded machine loses its lease.
            for k in range(min(prev + args.step, s), s + 1, args.step) if s - prev > args.step else [s]:
                c.apply(services_ini(k, names), node=c.leader())
                time.sleep(1)
            if s - prev > args.step and (s - prev) % args.step:
                c.apply(services_ini(s, names), node=c.leader())
            prev = s

            def placed():
                st = c.leader_status()
                n = sum(1 for x in st["services"] if x["active"])
                return st if n == s and len(st["services"]) == s else None

            c.wait_until(placed, 600, "%d services active" % s, interval=0.5)
            t_place = time.monotonic() - t0
            time.sleep(3)  # a few heartbeats with everything reported
            leader = c.leader()
            rss = {m: rss_kib(c.pid(m)) for m in names}
            lm, lx, size = status_latency(c, leader)
            nm, nx, _ = status_latency(c, non_voter)
            print(
                "services %4d: placed in %5.1f s; RSS per agent median %6d KiB, max %6d KiB (leader %d KiB); "
                "status %d bytes, leader median %.1f ms max %.1f ms, non-voter median %.1f ms max %.1f ms"
                % (s, t_place, statistics.median(rss.values()), max(rss.values()), rss[leader], size, lm, lx, nm, nx),
                flush=True,
            )
    finally:
        problems = c.cleanup()
        if problems:
            print("cleanup problems:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
