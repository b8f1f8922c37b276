#!/usr/bin/env python3
"""Raft commit latency through the API (run through bench/commit).

Start 3 agents on loopback (release binary), apply the sample service, then RUNS times: POST
/v1/services/web/pause (or resume, alternately) to the leader's API and time the answer. The
API answers once the change has committed (replicated to a majority of voters and written to
their disks) and applied, so the figure is a Raft commit plus one loopback HTTP request.

With --compare-bin OTHER the same is measured for another build in the same run (blocks of
RUNS/4 alternating between the two builds, so that a noisy machine weighs on both alike), and
the ratio of the medians is printed: the cost of a change (issue 9: sealing and authentication)
is measured against the build before it, not against a number from another day.

Every wait is bounded; every process started is stopped on exit (also on Ctrl-C / SIGTERM).
"""

import argparse
import statistics
import sys
import time

from looplib import (BenchError, LoopCluster, SAMPLE, STEADY_TIMEOUT_S, add_port_args, add_run_args,
                     check_bin_and_ports, http_call, install_cleanup, log, run_guarded, summary_line)


class Cluster(LoopCluster):
    def write_services(self):
        with open(self.services, "w") as f:
            f.write("[service web]\nrun = exec python3 %s --base %d\nstandbys = 1\nstandby = cold\n"
                    % (SAMPLE, self.http_base))


def measure(cl, runs, out):
    cl.start_all()
    cl.apply()

    def steady():
        # Placed, and the leader moved off the active's node (the controller does that at once).
        s = cl.status()
        if not s or not s["cluster"].get("leader"):
            return None
        web = [x for x in s.get("services", []) if x.get("name") == "web" and x.get("active")]
        return s if web and web[0]["active"] != s["cluster"]["leader"] else None

    leader = cl.wait("web placed, leader apart", steady, STEADY_TIMEOUT_S)["cluster"]["leader"]
    i = retries = 0
    while i < runs:
        action = "pause" if i % 2 == 0 else "resume"
        t0 = time.monotonic()
        code, body = http_call(cl.api[leader], "POST", "/v1/services/web/%s?by=bench" % action, 5.0,
                               body=b"{}" if cl.token else None, token=cl.token)
        dt = (time.monotonic() - t0) * 1000.0
        if code in (421, 503) and retries < 20:  # leadership moved: ask the new leader
            retries += 1
            leader = cl.wait("a leader", steady, STEADY_TIMEOUT_S)["cluster"]["leader"]
            continue
        if code not in (200, 202):
            raise BenchError("%s: HTTP %d %r" % (action, code, body[:200]))
        out.append(dt)
        i += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(ap)
    add_port_args(ap, 27101, 27201, 27300)
    ap.add_argument("--compare-bin", help="another build measured in the same run")
    ap.set_defaults(runs=200)
    args = ap.parse_args()
    check_bin_and_ports(args, "%d/%s (%s)")
    state = install_cleanup()
    builds = [("this build", args.bin)] + ([("compared build", args.compare_bin)] if args.compare_bin else [])
    results = {b: [] for b, _ in builds}
    blocks = 4 if args.compare_bin else 1
    error = None
    for blk in range(blocks):
        for label, binary in builds:
            cl = Cluster(binary, "default", args.raft_port, args.api_port, args.http_base, "us-bench-commit-")
            err = run_guarded(state, cl, label, False,
                              lambda: measure(cl, max(2, args.runs // blocks), results[label]))
            error = error or err
    log("Raft commit through the API (POST pause/resume to the leader, loopback, default profile)")
    for label, binary in builds:
        s = sorted(results[label])
        if not s:
            log("  %s (%s): no result" % (label, binary))
            continue
        log("  %s (%s): %d changes" % (label, binary, len(s)))
        log(summary_line(s))
    if args.compare_bin and results["this build"] and results["compared build"]:
        ratio = statistics.median(results["this build"]) / statistics.median(results["compared build"])
        log("  median ratio this/compared: %.2f" % ratio)
    sys.exit(1 if error else 0)


if __name__ == "__main__":
    main()
