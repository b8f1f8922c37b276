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
Only the Python standard library is used.
"""

import argparse
import atexit
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "demo", "sample_service.py")
NODES = ("n1", "n2", "n3")
TARGET_MEDIAN_MS = {"default": 800.0, "fast": 350.0}

STEADY_TIMEOUT_S = 30.0   # cluster formation, first placement, steady state between runs
FAILOVER_TIMEOUT_S = 30.0  # kill -> a survivor answers with a higher epoch
REJOIN_TIMEOUT_S = 30.0   # restarted agent seen alive by the leader
POLL_INTERVAL_S = 0.002   # the prober's period
IDLE_SETTLE_S = 2.0       # quiet time before the idle measurement
IDLE_WINDOW_S = 5.0       # CPU measured over this window
LOG_TAIL = 40             # agent log lines shown when something goes wrong


def log(msg=""):
    print(msg, flush=True)


class BenchError(Exception):
    pass


# ---- small helpers -------------------------------------------------------------------------------

def port_busy(port, kinds):
    """Return a list of 'port/kind: reason' for the ports someone else holds."""
    out = []
    for kind in kinds:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        if kind == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "busy"
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            out.append("%d/%s: %s" % (port, kind, e.strerror))
        finally:
            s.close()
    return out


def http_get(hostport, path, timeout):
    host, port = hostport.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def probe(port, timeout=0.5):
    """One fresh HTTP connection to the sample service: (node, epoch) or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    m = re.search(rb"\r\n\r\n(\S+) epoch (\d+)\n", data)
    return (m.group(1).decode(), int(m.group(2))) if m else None


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def proc_alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


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

class Cluster:
    def __init__(self, binary, profile, raft_base, api_base, http_base, leader_apart=False):
        self.binary = binary
        self.leader_apart = leader_apart
        self.profile = profile
        self.raft = {n: raft_base + i for i, n in enumerate(NODES)}
        self.api = {n: "127.0.0.1:%d" % (api_base + i) for i, n in enumerate(NODES)}
        self.http = {n: http_base + i + 1 for i, n in enumerate(NODES)}
        self.dir = tempfile.mkdtemp(prefix="understudy-bench-%s." % profile)
        self.procs = {}
        members = " ".join("%s=127.0.0.1:%d" % (n, self.raft[n]) for n in NODES)
        for n in NODES:
            with open(self.conf(n), "w") as f:
                f.write("[node]\nname = %s\naddress = 127.0.0.1:%d\napi = %s\ndata_dir = %s\n"
                        "[cluster]\nname = bench\nmembers = %s\nprofile = %s\n"
                        % (n, self.raft[n], self.api[n], os.path.join(self.dir, "data-" + n),
                           members, profile))
        self.services = os.path.join(self.dir, "services.ini")
        with open(self.services, "w") as f:
            f.write("[service web]\nrun = exec python3 %s --base %d\nstandbys = 1\nstandby = cold\n"
                    % (SAMPLE, http_base))

    def conf(self, n):
        return os.path.join(self.dir, n + ".conf")

    def logfile(self, n):
        return os.path.join(self.dir, n + ".log")

    def start(self, n):
        with open(self.logfile(n), "ab") as lf:
            # A session of its own: Ctrl-C reaches the bench only, which stops the agents itself.
            self.procs[n] = subprocess.Popen(
                [self.binary, "agent", "--config", self.conf(n)], cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                start_new_session=True)

    def pid(self, n):
        return self.procs[n].pid

    def status(self, nodes=NODES, timeout=1.0):
        """Status as seen by the leader (asked through any live agent); None if unavailable."""
        seen = None
        for n in nodes:
            if n in self.procs and self.procs[n].poll() is not None:
                continue
            try:
                code, body = http_get(self.api[n], "/v1/status", timeout)
                st = json.loads(body)
            except (OSError, ValueError, http.client.HTTPException):
                continue
            if code != 200:
                continue
            leader = (st.get("cluster") or {}).get("leader")
            if leader == st.get("node"):
                return st
            seen = seen or st
            if leader in self.api and leader in nodes:
                try:
                    code, body = http_get(self.api[leader], "/v1/status", timeout)
                    if code == 200:
                        return json.loads(body)
                except (OSError, ValueError, http.client.HTTPException):
                    pass
        return seen

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
        ans = probe(self.http[act])
        if ans != (act, svc["epoch"]):
            return None
        return act, svc["epoch"], c["leader"]

    def wait(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = cond()
            if r:
                return r
            time.sleep(0.05)
        raise BenchError("%s: not reached within %.0f s" % (what, timeout))

    def log_tails(self):
        out = []
        for n in NODES:
            try:
                with open(self.logfile(n), errors="replace") as f:
                    lines = f.readlines()[-LOG_TAIL:]
            except OSError:
                lines = []
            out.append("---- %s (last %d lines of %s)" % (n, len(lines), self.logfile(n)))
            out.extend(l.rstrip("\n") for l in lines)
        return "\n".join(out)

    def our_strays(self):
        """Processes left by our agents: guardians (command line names our config) and service
        processes (their environment names our data dirs)."""
        found = []
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
                hit = ("--config\0" + self.dir + "/").encode() in cmd
                if not hit:
                    with open("/proc/%s/environ" % d, "rb") as f:
                        hit = ("UNDERSTUDY_DATA_DIR=" + self.dir + "/").encode() in f.read()
            except OSError:
                continue
            if hit and proc_alive(int(d)):
                found.append(int(d))
        return found

    def stop(self, keep=False):
        """SIGTERM (hand over), bounded wait, SIGTERM again (force), bounded wait, SIGKILL; then
        wait (bounded) for guardians and service processes, SIGKILL them; remove the data.
        Ctrl-C / SIGTERM are ignored meanwhile: an interrupted stop would leave agents behind."""
        saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop(keep)
        finally:
            for s, h in saved.items():
                signal.signal(s, h)

    def _stop(self, keep):
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            live = [p for p in self.procs.values() if p.poll() is None]
            if not live:
                break
            for p in live:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(p.poll() is None for p in live):
                time.sleep(0.05)
        deadline = time.monotonic() + 5.0
        killed = False
        while True:
            strays = self.our_strays()
            if not strays:
                break
            if time.monotonic() > deadline:
                log("bench: processes still there after SIGKILL: %s" % strays)
                break
            if not killed and time.monotonic() > deadline - 2.0:
                for pid in strays:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
            time.sleep(0.05)
        if keep:
            log("bench: kept %s (agent logs n1.log .. n3.log)" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


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
    ports = [cl.http[n] for n in survivors]
    proc = cl.procs[victim]
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    deadline = t0 + FAILOVER_TIMEOUT_S
    answer = None
    while answer is None:
        for port in ports:
            a = probe(port, timeout=0.2)
            if a and a[1] > epoch:
                answer = a
                break
        if answer:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL_S)
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
    stale = probe(cl.http[victim], timeout=0.2)
    role = "leader" if victim == leader else "follower"
    log("  run %2d: kill -9 %s (active, %s, epoch %d) -> %s answers epoch %d after %7.1f ms%s"
        % (run, victim, role, epoch, answer[0], answer[1], ms,
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
    state["cluster"] = cl
    log("== profile %s: 3 agents (%s), sample HTTP service, cold standby, standbys = 1, %d runs"
        % (profile, cl.dir, args.runs))
    samples, idle = [], None
    try:
        for n in NODES:
            cl.start(n)
        cl.wait("leader elected", lambda: (cl.status() or {}).get("cluster", {}).get("leader"),
                STEADY_TIMEOUT_S)
        r = subprocess.run([args.bin, "--api", cl.api["n1"], "apply", cl.services],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError("apply failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))
        act, epoch, leader = cl.wait("steady state", cl.steady, STEADY_TIMEOUT_S)
        time.sleep(IDLE_SETTLE_S)
        rss_kb, cpu = measure_idle(cl, leader)
        idle = (leader, rss_kb, cpu)
        log("  idle: agent %s (leader): VmRSS %d kB, CPU %.2f %% over %.0f s"
            % (leader, rss_kb, cpu, IDLE_WINDOW_S))
        for run in range(1, args.runs + 1):
            act, epoch, leader = cl.wait("steady state before run %d" % run, cl.steady,
                                         STEADY_TIMEOUT_S)
            samples.append(failover_once(cl, run, act, epoch, leader))
            rejoin(cl, act)
        return {"samples": samples, "idle": idle, "error": None}
    except BenchError as e:
        log("bench: profile %s: %s" % (profile, e))
        if "\n----" not in str(e):
            log(cl.log_tails())
        return {"samples": samples, "idle": idle, "error": str(e).splitlines()[0]}
    finally:
        state["cluster"] = None
        cl.stop(keep=args.keep)


def report(profile, res, runs):
    s = sorted(ms for ms, _ in res["samples"])
    target = TARGET_MEDIAN_MS[profile]
    lines = ["profile %s:" % profile]
    if s:
        lines.append("  failover (kill -9 of the active's agent -> new epoch answers), %d/%d runs:"
                     % (len(s), runs))
        lines.append("    min %.1f ms  median %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms"
                     % (s[0], statistics.median(s), percentile(s, 90), percentile(s, 99), s[-1]))
        for label, was_leader in (("a follower", False), ("also the Raft leader", True)):
            sub = sorted(ms for ms, ld in res["samples"] if ld == was_leader)
            if sub:
                lines.append("    runs where the killed active was %s: %d, median %.1f ms, max %.1f ms"
                             % (label, len(sub), statistics.median(sub), sub[-1]))
    else:
        lines.append("  failover: no successful run")
    if res["idle"]:
        node, rss, cpu = res["idle"]
        lines.append("  idle agent (%s, leader): RSS %d kB (%.1f MiB), CPU %.2f %% over %.0f s"
                     % (node, rss, rss / 1024.0, cpu, IDLE_WINDOW_S))
    ok = bool(s) and len(s) == runs and statistics.median(s) <= target and not res["error"]
    med = "%.1f ms" % statistics.median(s) if s else "n/a"
    lines.append("  target: median <= %.0f ms -> %s (median %s)%s"
                 % (target, "PASS" if ok else "MISS", med,
                    "; error: " + res["error"] if res["error"] else ""))
    return "\n".join(lines), ok


def main():
    ap = argparse.ArgumentParser(description="understudy failover benchmark")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profiles", default="default,fast")
    ap.add_argument("--raft-port", type=int, default=17101, help="n1's cluster port (+1, +2)")
    ap.add_argument("--api-port", type=int, default=17201, help="n1's API port (+1, +2)")
    ap.add_argument("--http-base", type=int, default=17080, help="service of nN on BASE+N")
    ap.add_argument("--leader-apart", action="store_true",
                    help="steady also means the Raft leader is not the active node")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and agent logs")
    args = ap.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    for p in profiles:
        if p not in TARGET_MEDIAN_MS:
            sys.exit("bench: unknown profile '%s' (default, fast)" % p)
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    busy = []
    for i in range(3):
        busy += port_busy(args.raft_port + i, ("tcp", "udp"))
        busy += port_busy(args.api_port + i, ("tcp",))
        busy += port_busy(args.http_base + 1 + i, ("tcp",))
    if busy:
        for b in busy:
            print("bench: port %s is busy" % b, file=sys.stderr)
        sys.exit("bench: free these ports or pick others (--raft-port, --api-port, --http-base)")

    state = {"cluster": None}

    def on_exit():
        if state["cluster"]:
            state["cluster"].stop()
            state["cluster"] = None

    atexit.register(on_exit)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

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
