#!/usr/bin/env python3
"""Soak: no failover and no lease loss that no fault caused, with both cores saturated and packet
loss between the nodes (issue 11). Run through `make soak` or `sh bench/soak [--minutes M] ...`
(root).

Topology: the tests/netns.py bed, three node namespaces and a client namespace. One agent per node
(profile default or fast, or both one after the other), two services: `web` with a VIP and a cold
standby, `job` without a VIP and with a hot standby. Nothing is ever done to them: no kill, no
link down, no switchover. Meanwhile:
  - stress-ng --cpu N (N = the number of cores, so both cores of this machine are saturated),
    bounded by its own --timeout;
  - packet loss on every node's link (tc netem, else nftables random drops), p per link in each
    direction so that a datagram from node to node (two links) is lost with --loss percent
    (default 5 %): p = 1 - sqrt(1 - loss);
  - the client GETs the VIP every 100 ms (each answer names node and epoch).
Counted for the whole run, per profile:
  false failovers   epoch changes of either service (status, polled every 0.5 s, and the role
                    events recorded at the end): any one is a failure
  lease losses      agent log lines "lease about to run out without renewal" or the guardian
                    fencing for a lease: any one is a failure
  leader changes    "became leader" lines after the start (informational: leadership costs the
                    actives nothing)
  client            GETs answered / failed through the VIP (informational: 5 % loss on the client's
                    link too costs a retransmission now and then)
Exit status 0 when both counts are zero in every profile. Every wait is bounded; the bed, the
agents and stress-ng are removed on exit (also on Ctrl-C / SIGTERM).
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nslib
from nslib import BenchError, log

netns = nslib.netns
nsagents = nslib.nsagents

VIP = "198.18.0.200"
SERVICES = """[service web]
run = exec {httpd} -l 0.0.0.0:8080 -e
standbys = 1
vip = {vip}/24 dev eth0

[service job]
run = exec sleep 100000
standby = hot
standbys = 1
"""
LEASE_LOSS_RE = re.compile(r"lease about to run out without renewal|fenced process group .*lease ran out")
LEADER_RE = re.compile(r"became leader in term")


def count(path, rx):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if rx.search(line))
    except OSError:
        return 0


def soak_profile(args, profile):
    workdir = tempfile.mkdtemp(prefix="understudy-soak.%s." % profile)
    bed = netns.TestBed(3)
    stress = None
    agents = None
    out = {"profile": profile, "minutes": args.minutes}
    try:
        bed.start()
        client = nslib.Client(bed)
        text = SERVICES.format(httpd=nslib.build_httpd(), vip=VIP)
        agents = nslib.Agents(bed, args.bin, profile, workdir, text)
        agents.start_all()
        agents.wait_leader(30)
        agents.apply()
        first = nslib.wait_for("web active", lambda: agents.steady("web"), 60, 0.2)
        nslib.wait_for("job active", lambda: agents.steady("job"), 60, 0.2)
        epochs0 = {s: (agents.steady(s) or (None, None))[:2] for s in ("web", "job")}
        leaders0 = sum(count(agents.logfile(n), LEADER_RE) for n in agents.nodes)
        log("== %s: bed %s, %s; web %s, job %s; leader %s" % (profile, bed.prefix, workdir, epochs0["web"],
                                                            epochs0["job"], first[2]))
        per_link = 100.0 * (1 - math.sqrt(1 - args.loss / 100.0))
        for n in bed.nodes:
            bed.loss(n, per_link)
        secs = int(args.minutes * 60)
        stress = subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count() or 2), "--timeout", "%ds" % (secs + 5),
                                   "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        log("   loss %.2f %% per link (%.1f %% node to node, %s), stress-ng --cpu %d for %d s" % (
            per_link, args.loss, bed.loss_method, os.cpu_count() or 2, secs))
        t_end = time.monotonic() + secs
        seen = {s: {epochs0[s]} for s in epochs0}
        ok = failed = 0
        next_get = next_status = next_line = time.monotonic()
        while time.monotonic() < t_end:
            now = time.monotonic()
            if now >= next_get:
                next_get = now + 0.1
                if client.get(VIP, 8080, timeout=0.5):
                    ok += 1
                else:
                    failed += 1
            if now >= next_status:
                next_status = now + 0.5
                st = agents.leader_status()
                for s in (st or {}).get("services", []):
                    if s["name"] in seen and s.get("active"):
                        seen[s["name"]].add((s["active"], s["epoch"]))
            if now >= next_line:
                next_line = now + 60
                losses = sum(count(agents.logfile(n), LEASE_LOSS_RE) for n in agents.nodes)
                log("   %4.0f s: %s; lease losses %d; client %d ok, %d failed" % (
                    secs - (t_end - now), {k: sorted(v) for k, v in seen.items()}, losses, ok, failed))
            time.sleep(0.02)
        # The recorded history: every role event that made a node active.
        st = agents.leader_status()
        promotions = {}
        for s in ("web", "job"):
            cp = agents.cli(["--json", "events", "--service", s, "--limit", "256"], agents.nodes[0])
            try:
                doc = json.loads(cp.stdout)
                evs = doc.get("events", []) if isinstance(doc, dict) else doc
            except ValueError:
                evs = [json.loads(l) for l in cp.stdout.splitlines() if l.startswith("{")]
            promotions[s] = [e for e in evs if e.get("kind") == "role" and e.get("to") == "active"]
        out.update(
            false_failovers={s: len(v) - 1 for s, v in seen.items()},
            promotion_events={s: len(v) for s, v in promotions.items()},
            lease_losses=sum(count(agents.logfile(n), LEASE_LOSS_RE) for n in agents.nodes),
            leader_changes=sum(count(agents.logfile(n), LEADER_RE) for n in agents.nodes) - leaders0,
            client_ok=ok,
            client_failed=failed,
            final={s["name"]: (s.get("active"), s.get("epoch")) for s in (st or {}).get("services", [])},
            loss_method=bed.loss_method,
        )
        client.close()
    finally:
        if stress and stress.poll() is None:
            os.killpg(stress.pid, signal.SIGKILL)
            stress.wait()
        if agents:
            agents.stop()
        bed.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log("   kept %s" % workdir)
    return out


def main():
    ap = argparse.ArgumentParser(description="understudy soak: saturated cores, packet loss, no fault")
    ap.add_argument("--bin", default=os.path.join(nslib.ROOT, "build", "understudy"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--loss", type=float, default=5.0, help="node-to-node packet loss, percent")
    ap.add_argument("--profiles", default="default", help="comma-separated: default, fast")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    nslib.need_root_and_tools(["stress-ng", "ip", "nft"])
    if not 0 < args.minutes <= 240 or not 0 <= args.loss < 50:
        raise SystemExit("soak: --minutes 0..240, --loss 0..50")
    results = []
    for p in args.profiles.split(","):
        try:
            results.append(soak_profile(args, p))
        except (BenchError, netns.NetnsError) as e:
            log("soak %s: %s" % (p, e))
            results.append({"profile": p, "error": str(e)})
    log("\n== soak: %.0f min per profile, %.1f %% node-to-node loss, every core saturated" % (args.minutes, args.loss))
    bad = False
    for r in results:
        if "error" in r:
            bad = True
            log("  %-8s error: %s" % (r["profile"], r["error"]))
            continue
        ff = sum(r["false_failovers"].values())
        verdict = "PASS" if ff == 0 and r["lease_losses"] == 0 else "MISS"
        bad |= verdict != "PASS"
        log("  %-8s false failovers %d %s, lease losses %d, leader changes %d, client %d ok / %d failed -> %s" % (
            r["profile"], ff, r["false_failovers"], r["lease_losses"], r["leader_changes"], r["client_ok"],
            r["client_failed"], verdict))
    print(json.dumps(results), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
