#!/usr/bin/env python3
"""explain.py — each liveness violation of a chaos run with what was going on around it.

    python3 tests/chaos/explain.py RUNDIR [--before MS] [--after MS]

For every liveness violation the checker finds in RUNDIR/history.json: the faults in force around it (with the
leader before each), the stalls (the machine not running an agent, checker.stalls) and the agent log lines
(RUNDIR/agent-nX.log, proxy chatter left out) from --before ms before to --after ms after it. Log lines carry the
agents' wall clock, placed with meta.t0_wall: an agent under a clock_step fault logs with its stepped clock, so
its lines during the step land elsewhere. Reading only; classify by hand.
"""
import argparse
import datetime
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402

NOISE = ("proxy ", "registered virtual IP(s) removed")


def agent_logs(rundir, t0):
    out = []
    for p in sorted(glob.glob(os.path.join(rundir, "agent-n*.log"))):
        node = re.search(r"agent-(n\d+)", p).group(1)
        with open(p, errors="replace") as f:
            for line in f:
                m = re.match(r"(\d\d:\d\d:\d\d\.\d\d\d) (\w+)\s+(.*)", line)
                if not m:
                    continue
                w = datetime.datetime.combine(t0.date(), datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f").time())
                out.append(((w - t0).total_seconds() * 1000, node, m.group(2), m.group(3).rstrip()))
    return sorted(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rundir")
    ap.add_argument("--before", type=float, default=3000)
    ap.add_argument("--after", type=float, default=1000)
    args = ap.parse_args(argv)
    with open(os.path.join(args.rundir, "history.json")) as f:
        h = json.load(f)
    res = checker.check(h)
    t0 = datetime.datetime.strptime(h["meta"]["t0_wall"], "%Y-%m-%d %H:%M:%S.%f")
    logs = agent_logs(args.rundir, t0)
    sts = checker.stalls(h.get("waits", []))
    for v in res["violations"]:
        if v["kind"] != "liveness":
            continue
        t = v.get("t") or 0
        lo, hi = t - args.before, t + args.after
        print("=" * 100)
        print("[%s] %s: %s" % (v["property"], v["svc"], v["msg"]))
        for f in h.get("faults", []):
            if f["start"] <= hi and (f["end"] or float("inf")) >= lo:
                extra = {k: f[k] for k in ("bridge", "sides", "groups", "pct", "step_s", "svc") if k in f}
                print("   fault #%s %-16s on %-8s %9.1f..%9.1f leader %s %s" % (f["id"], f["kind"], "+".join(f["nodes"]),
                      f["start"], f["end"] or -1, f.get("leader"), extra or ""))
        for x in sts:
            if x["start"] <= hi and x["end"] >= lo:
                print("   stall %-3s %9.1f..%9.1f waited %.0f ms" % (x["node"], x["start"], x["end"], x["wait_ms"]))
        for lt, node, lvl, msg in logs:
            if lo <= lt <= hi and not any(x in msg for x in NOISE):
                print("   %9.1f %s %s %s" % (lt, node, lvl[0], msg[:200]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
