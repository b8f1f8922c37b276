#!/usr/bin/env python3
"""Short HTTP connections through the understudy proxy vs HAProxy (mode tcp) vs direct.

Run through `make bench` or `sh bench/proxy [--rounds N] [--duration S] ...` (root).
Topology: the tests/netns.py bed (three node namespaces, a client namespace, one bridge). Three
understudy agents (profile default) run the service
    [service web]
    run = exec build/bench/httpd -l 0.0.0.0:8080 -e      # bench/httpd.c: epoll, static answer
    standbys = 1
    proxy = 0.0.0.0:8000 -> 8080
so every agent listens on :8000 and forwards to port 8080 of the active node A. The load goes to a
node P that is not the active one, so both proxies add one hop, as they would for a client that
reaches any node:
    direct      client -> A:8080
    haproxy     client -> P:8001 -> A:8080    HAProxy from Debian, mode tcp, nbthread 1 (the
                                              understudy proxy is one event-loop thread too, and on
                                              a 2-core machine wrk and the backend need the rest)
    understudy  client -> P:8000 -> A:8080    the agent's proxy
Same backend process, same load generator: wrk in the client namespace with
`-H "Connection: close"`, so every request is a new TCP connection (through the proxy: two).
Each round runs every path once (order rotated between rounds) for DURATION seconds after a
1-second warm-up; the report gives the median over rounds of req/s and of wrk's p50/p99 latency,
the CPU used by the proxy process, the ratios, and PASS/MISS for the targets, judged on the median
of the per-round understudy/HAProxy ratios (the two run back to back, so load from elsewhere on
the machine mostly cancels out): throughput >= 0.9 x HAProxy, p99 <= 1.2 x HAProxy p99.
Per-namespace sysctls (only inside the bed): ip_local_port_range 1024-65000, tcp_tw_reuse 1.
Every wait is bounded; every process and namespace is removed on exit (also Ctrl-C/SIGTERM).
"""

import argparse
import atexit
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nslib  # noqa: E402
from nslib import BenchError, log  # noqa: E402

netns = nslib.netns
ROOT = nslib.ROOT
BACKEND_PORT = 8080
PROXY_PORT = 8000
HAPROXY_PORT = 8001
PATHS = ("direct", "haproxy", "understudy")
TARGET_RPS_RATIO = 0.9  # understudy / haproxy, at least
TARGET_P99_RATIO = 1.2  # understudy / haproxy, at most
STEADY_TIMEOUT_S = 40.0
SYSCTLS = {"net.ipv4.ip_local_port_range": "1024 65000", "net.ipv4.tcp_tw_reuse": "1"}

HAPROXY_CFG = """global
    nbthread %(threads)d
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 0.0.0.0:%(port)d
    default_backend active
backend active
    server active %(backend)s
"""


def parse_wrk(text):
    """req/s, p50 ms, p99 ms, requests, errors (socket errors + non-2xx)."""

    def dur_ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = dict((p, dur_ms(v, u)) for p, v, u in
               re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M))
    reqs = re.search(r"(\d+) requests in", text)
    if not rps or "50" not in lat or "99" not in lat or not reqs:
        raise BenchError("cannot read wrk's output:\n%s" % text)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return {"rps": float(rps.group(1)), "p50": lat["50"], "p99": lat["99"],
            "requests": int(reqs.group(1)), "errors": errors}


def cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


class Bench:
    def __init__(self, args, bed, workdir):
        self.args, self.bed, self.dir = args, bed, workdir
        self.client = nslib.Client(bed)
        services = ("[service web]\nrun = exec %s -l 0.0.0.0:%d -e\nstandby = cold\nstandbys = 1\n"
                    % (nslib.HTTPD_BIN, BACKEND_PORT))
        if "understudy" in args.paths:
            services += "proxy = 0.0.0.0:%d -> %d\n" % (PROXY_PORT, BACKEND_PORT)
        self.ag = nslib.Agents(bed, args.bin, "default", workdir, services)
        self.haproxy = None

    def setup(self):
        nslib.set_sysctls(self.bed, self.bed.hosts, SYSCTLS)
        self.ag.start_all()
        self.ag.wait_leader(STEADY_TIMEOUT_S)
        self.ag.apply()
        act, epoch, _, _ = nslib.wait_for("steady state", self.ag.steady, STEADY_TIMEOUT_S, 0.1)
        self.active, self.epoch = act, epoch
        self.via = next(n for n in self.bed.nodes if n != act)
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG % {"threads": self.args.haproxy_threads, "port": HAPROXY_PORT,
                                   "backend": "%s:%d" % (self.bed.ip[act], BACKEND_PORT)})
        cp = subprocess.run([self.args.haproxy, "-c", "-q", "-f", cfg], capture_output=True,
                            text=True, timeout=30)
        if cp.returncode != 0:
            raise BenchError("haproxy rejects %s: %s%s" % (cfg, cp.stdout, cp.stderr))
        with open(os.path.join(self.dir, "haproxy.log"), "ab") as lf:
            self.haproxy = self.bed.popen(self.via, [self.args.haproxy, "-db", "-f", cfg],
                                          label="haproxy", stdin=subprocess.DEVNULL, stdout=lf,
                                          stderr=subprocess.STDOUT)
        self.targets = {
            "direct": (self.bed.ip[act], BACKEND_PORT),
            "haproxy": (self.bed.ip[self.via], HAPROXY_PORT),
            "understudy": (self.bed.ip[self.via], PROXY_PORT),
        }
        for path in self.args.paths:
            host, port = self.targets[path]
            nslib.wait_for("%s (%s:%d) answering %s epoch %d" % (path, host, port, act, epoch),
                           lambda: self.client.get(host, port) == (act, epoch), 10.0, 0.1)
        self.proxy_pid = {"haproxy": self.haproxy.pid, "understudy": self.ag.procs[self.via].pid}
        log("== bed %s: active %s (%s), proxies on %s (%s): understudy :%d, HAProxy :%d "
            "(nbthread %d); wrk -t%d -c%d, %d s per path and round"
            % (self.bed.prefix, act, self.bed.ip[act], self.via, self.bed.ip[self.via], PROXY_PORT,
               HAPROXY_PORT, self.args.haproxy_threads, self.args.threads, self.args.connections,
               self.args.duration))

    def wrk(self, path, duration):
        host, port = self.targets[path]
        argv = [self.args.wrk, "-t%d" % self.args.threads, "-c%d" % self.args.connections,
                "-d%ds" % duration, "--latency", "-H", "Connection: close",
                "http://%s:%d/" % (host, port)]
        pid = self.proxy_pid.get(path)
        c0, t0 = (cpu_s(pid) if pid else None), time.monotonic()
        cp = self.bed.run(netns.CLIENT, argv, timeout=duration + 60)
        c1, t1 = (cpu_s(pid) if pid else None), time.monotonic()
        if cp.returncode != 0:
            raise BenchError("wrk failed (%d): %s%s" % (cp.returncode, cp.stdout, cp.stderr))
        r = parse_wrk(cp.stdout)
        r["cpu"] = 100.0 * (c1 - c0) / (t1 - t0) if c0 is not None and c1 is not None else None
        return r

    def check_alive(self):
        if self.haproxy.poll() is not None:
            raise BenchError("haproxy exited (%s)" % self.haproxy.returncode)
        for n in self.bed.nodes:
            if not self.ag.alive(n):
                raise BenchError("agent %s exited\n%s" % (n, self.ag.log_tails()))

    def run(self):
        res = {p: [] for p in self.args.paths}
        for rnd in range(self.args.rounds):
            k = rnd % len(self.args.paths)
            order = self.args.paths[k:] + self.args.paths[:k]
            for path in order:
                self.wrk(path, 1)  # warm-up: caches, TIME_WAIT state of the previous path
                r = self.wrk(path, self.args.duration)
                self.check_alive()
                res[path].append(r)
                log("  round %d %-10s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %8d requests, "
                    "%d errors%s" % (rnd + 1, path, r["rps"], r["p50"], r["p99"], r["requests"],
                                     r["errors"], "  proxy CPU %.0f %%" % r["cpu"]
                                     if r["cpu"] is not None else ""))
        return res

    def stop(self):
        if self.haproxy and self.haproxy.poll() is None:
            self.bed.terminate(self.haproxy, timeout=5)
        self.client.close()
        self.ag.stop()


def report(args, res):
    med = {}
    lines = ["", "== short HTTP connections (wrk -H 'Connection: close', every request a new "
             "connection), median of %d rounds of %d s" % (args.rounds, args.duration),
             "  %-11s %10s %9s %9s %9s %10s" % ("path", "req/s", "p50 ms", "p99 ms", "errors",
                                                "proxy CPU")]
    for p in args.paths:
        rs = res[p]
        m = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99")}
        cpus = [r["cpu"] for r in rs if r["cpu"] is not None]
        m["cpu"] = statistics.median(cpus) if cpus else None
        m["errors"] = sum(r["errors"] for r in rs)
        med[p] = m
        lines.append("  %-11s %10.0f %9.2f %9.2f %9d %10s"
                     % (p, m["rps"], m["p50"], m["p99"], m["errors"],
                        "%.0f %%" % m["cpu"] if m["cpu"] is not None else "-"))
    ok = True
    if "direct" in med:
        for p in ("haproxy", "understudy"):
            if p in med:
                lines.append("  %s / direct: throughput %.2f, p50 %.2f, p99 %.2f"
                             % (p, med[p]["rps"] / med["direct"]["rps"],
                                med[p]["p50"] / med["direct"]["p50"],
                                med[p]["p99"] / med["direct"]["p99"]))
    if "haproxy" in med and "understudy" in med:
        u, h = med["understudy"], med["haproxy"]
        # Judged on the median of the per-round ratios: the two ran back to back in each round,
        # so load from elsewhere on the machine mostly cancels out.
        pairs = list(zip(res["understudy"], res["haproxy"]))
        r_rps = statistics.median(a["rps"] / b["rps"] for a, b in pairs)
        r_p99 = statistics.median(a["p99"] / b["p99"] for a, b in pairs)
        lines.append("  understudy / haproxy, ratio of the medians above: throughput %.2f, p50 %.2f, "
                     "p99 %.2f" % (u["rps"] / h["rps"], u["p50"] / h["p50"], u["p99"] / h["p99"]))
        ok_rps, ok_p99 = r_rps >= TARGET_RPS_RATIO, r_p99 <= TARGET_P99_RATIO
        ok_err = u["errors"] == 0
        lines.append("  understudy / haproxy, median of the per-round ratios: throughput %.2f "
                     "(target >= %.1f) -> %s; p99 %.2f (target <= %.1f) -> %s"
                     % (r_rps, TARGET_RPS_RATIO, "PASS" if ok_rps else "MISS", r_p99,
                        TARGET_P99_RATIO, "PASS" if ok_p99 else "MISS"))
        if not ok_err:
            lines.append("  understudy proxy: %d failed requests -> MISS" % u["errors"])
        ok = ok_rps and ok_p99 and ok_err
    log("\n".join(lines))
    return ok


def main():
    ap = argparse.ArgumentParser(description="understudy proxy vs HAProxy vs direct")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=int, default=4, help="seconds per path and round")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--haproxy-threads", type=int, default=1)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--keep", action="store_true", help="keep the logs and configuration")
    args = ap.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    for p in args.paths:
        if p not in PATHS:
            sys.exit("bench: unknown path '%s' (%s)" % (p, ", ".join(PATHS)))
    if args.rounds < 1 or args.duration < 1 or args.connections < 1 or args.threads < 1:
        sys.exit("bench: --rounds, --duration, --connections and --threads must be >= 1")
    nslib.need_root_and_tools(["ip", "wrk", "haproxy"])
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    try:
        nslib.build_httpd()
    except BenchError as e:
        sys.exit("bench: %s" % e)

    workdir = tempfile.mkdtemp(prefix="understudy-bench-proxy.")
    bed = netns.TestBed(3)
    state = {"bench": None}

    def on_exit():
        if state["bench"]:
            state["bench"].stop()
            state["bench"] = None
        bed.close()
        if args.keep:
            log("bench: kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    atexit.register(on_exit)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    try:
        bed.start()
        b = Bench(args, bed, workdir)
        state["bench"] = b
        b.setup()
        res = b.run()
    except (BenchError, netns.NetnsError) as e:
        log("bench: %s" % e)
        if state["bench"]:
            log(state["bench"].ag.log_tails())
        return 1
    return 0 if report(args, res) else 1


if __name__ == "__main__":
    sys.exit(main())
