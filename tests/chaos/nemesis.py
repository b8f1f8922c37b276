#!/usr/bin/env python3
"""nemesis.py — randomized fault injection over real understudy agents in network namespaces.

    python3 tests/chaos/nemesis.py [--faults 200] [--seed S] [--nodes 3|5] [--bin build/understudy]
                                   [--out DIR] [--json FILE] [--max-seconds T]

A tests/netns.py bed with 3 or 5 node namespaces and a client, agents started the way
tests/integration/nsharness.py starts them (its Harness: configs, CLI, statuses, address watchers,
probers), three services (cold standby with VIP and proxy, hot standby with VIP and proxy and
promote/demote hooks, cold standby with a proxy only) running build/chaos-service (tests/chaos/chaos_service.c), which
appends every write (service, node, epoch, CLOCK_MONOTONIC time) to one file per service: the shared
receiver. Then a schedule of faults drawn by random.Random(seed) — the schedule depends on the seed and
the fault count alone (targets are symbolic: "the active of b", "the leader", "node 2", resolved when the
step runs), so a seed replays the same schedule — each held for a random time, some in combinations.
At the end every fault is undone, the cluster must settle, the agents are stopped, the bed is torn
down, and tests/chaos/checker.py judges the recorded history. Exit 0 when it found no violation.

Everything is bounded: the fault count, each hold, the whole run (--max-seconds); the bed and the data
dir mounts are removed on every exit path (exceptions, SIGINT, SIGTERM; netns.py's handlers tear the bed
down first).
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(HERE))
import checker  # noqa: E402
import netns  # noqa: E402
import nsagents  # noqa: E402
import nsharness  # noqa: E402
import probe  # noqa: E402

PYTHON = nsharness.PYTHON
SERVICE_BIN = str(REPO / "build" / "chaos-service")  # tests/chaos/chaos_service.c (make build/chaos-service)
SERVICE_BIN_RUN = SERVICE_BIN  # the run's own copy
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
# Each node's data dir is a tmpfs this big (the disk-full fault fills it). libraft keeps two open segments of 8 MiB
# preallocated besides the closed ones and the snapshots: with 16 MiB the second could never be created, and each
# time the first filled up, Raft appends on that node waited for libraft's next retry (seen: 2 s without a commit
# after a failover decision, in 2 of 4 runs of 200 faults; libraft's trace: "retry creating segment open-2").
DATA_MB = 64

KINDS = [
    # kind, weight, takes its node(s) out of the cluster
    ("kill9_agent", 3, True),
    ("stop_agent", 3, True),
    ("link_down", 3, True),
    ("isolate", 2, True),
    ("partition_split", 2, True),
    ("partition_bridge", 2, False),
    ("partition_leader", 2, True),
    ("loss", 2, False),
    ("clock_step", 2, False),
    ("disk_full", 2, False),
    ("kill9_service", 3, False),
    ("kill9_guardian", 2, True),  # the agent stops itself when its guardian is gone: the node is out
]
OUT_KINDS = {k for k, _, out in KINDS if out}
PARTITIONS = {"partition_split", "partition_bridge", "partition_leader", "isolate"}
INSTANT = {"kill9_service", "kill9_guardian"}


def services(n_nodes):
    """name -> definition (the checker's meta and the services file)."""
    hot_standbys = 2 if n_nodes >= 5 else 1
    return {
        "a": {"standby": "cold", "standbys": 1, "vip": "198.18.0.201", "port": 8101, "proxy": 8001, "first": 0},
        "b": {"standby": "hot", "standbys": hot_standbys, "vip": "198.18.0.202", "port": 8102, "proxy": 8002,
              "first": 1},
        "c": {"standby": "cold", "standbys": 1, "vip": None, "port": 8103, "proxy": 8003, "first": 2},
    }


# ---- starvation of the agents by the machine (observed, not injected) ----


class StarvationMonitor(threading.Thread):
    """Samples each running agent's main thread's scheduler statistics (/proc/PID/schedstat: time on
    a CPU, time runnable but waiting for one, number of runs) every PERIOD and records the long waits:
    the kernel adds a wait to the statistics when the waiting ends (the thread runs), so a sample in
    which the agent ran once and its wait grew by W ms is one wait of W ms that ended in the sample.
    Samples with checker.LONG_WAIT_MS or more of waiting or of CPU time are kept as {"node", "start",
    "end", "ms", "runs", "cpu"} (start = end - W, cpu: the agent's own CPU time in the sample); the
    checker derives the stalls from them. A stopped agent
    (SIGSTOP) is not runnable and waits for nothing, nor does one blocked in a syscall: only the
    machine's load shows here."""

    PERIOD = 0.02

    def __init__(self, run):
        super().__init__(daemon=True)
        self.run_ = run
        self.waits = []  # {"node", "start", "end", "ms", "runs"}
        self.wait_ms = {}  # node -> all run-queue waiting of its agents' main threads
        self.cpu_ms = {}  # node -> their time on a CPU
        self._last = {}  # node -> (pid, t_ns, wait_ns, runs)
        self._stop_ev = threading.Event()

    @staticmethod
    def _read(pid):
        try:
            with open("/proc/%d/schedstat" % pid) as f:
                cpu, wait, runs = (int(x) for x in f.read().split()[:3])
            return wait, runs, cpu
        except (OSError, ValueError):
            return None

    def sample(self):
        for n in self.run_.nodes:
            p = self.run_.h.agents.get(n)
            pid = p.pid if p is not None and p.poll() is None else None
            got = self._read(pid) if pid else None
            t = time.monotonic_ns()
            prev = self._last.get(n)
            if got is None:
                self._last.pop(n, None)
                continue
            self._last[n] = (pid, t, got[0], got[1], got[2])
            if prev is None or prev[0] != pid:
                continue
            dw, dr, dc = got[0] - prev[2], got[1] - prev[3], got[2] - prev[4]
            self.wait_ms[n] = self.wait_ms.get(n, 0.0) + dw / 1e6
            self.cpu_ms[n] = self.cpu_ms.get(n, 0.0) + dc / 1e6
            if dw >= checker.LONG_WAIT_MS * 1e6 or dc >= checker.LONG_WAIT_MS * 1e6:
                end = self.run_.ms(t)
                self.waits.append({"node": n, "start": round(end - dw / 1e6, 1), "end": round(end, 1),
                                   "ms": round(dw / 1e6, 1), "runs": dr, "cpu": round(dc / 1e6, 1)})

    def run(self):
        while not self._stop_ev.wait(self.PERIOD):
            self.sample()

    def stop(self):
        self._stop_ev.set()
        if self.is_alive():
            self.join(timeout=5)
        return self.waits


# ---- the schedule (a function of seed, count and node count only) ----


def _hold(rng):
    r = rng.random()
    if r < 0.3:
        return rng.randint(100, 500)  # shorter than a lease: may cost nothing
    if r < 0.75:
        return rng.randint(500, 2000)
    return rng.randint(2000, 5000)


def _target(rng, svcs):
    """A symbolic node: the active or a standby of a service, the leader, or a node by index."""
    r = rng.random()
    s = rng.choice(sorted(svcs))
    idx = rng.randrange(64)
    if r < 0.45:
        return {"role": "active", "svc": s, "idx": idx}
    if r < 0.6:
        return {"role": "leader", "idx": idx}
    if r < 0.75:
        return {"role": "standby", "svc": s, "idx": idx}
    return {"role": "node", "idx": idx}


def _fault(rng, kind, n_nodes, svcs):
    f = {"kind": kind, "hold_ms": 0 if kind in INSTANT else _hold(rng), "target": _target(rng, svcs)}
    if kind == "partition_split":
        f["minority"] = 1 if n_nodes == 3 else 2
    if kind == "partition_bridge":
        f["r"] = rng.randrange(1 << 30)  # how the other nodes split into two sides
    if kind == "loss":
        f["pct"] = rng.choice([10, 20, 30, 50, 80])
    if kind == "clock_step":
        f["step_s"] = rng.choice([-3600, -120, -30, -5, 5, 30, 120, 3600])
    if kind == "kill9_service":
        f["target"] = {"role": "active", "svc": rng.choice(sorted(svcs)), "idx": rng.randrange(64)}
    if kind in ("kill9_service", "kill9_guardian"):
        f["after_ms"] = rng.randint(1000, 3000)  # watched this long as its hold
    return f


def schedule(seed, n_faults, n_nodes):
    rng = random.Random(seed)
    svcs = services(n_nodes)
    kinds = [k for k, _, _ in KINDS]
    weights = [w for _, w, _ in KINDS]
    steps, count = [], 0
    while count < n_faults:
        k = 1 if rng.random() < 0.75 or n_faults - count < 2 else rng.choice([2, 2, 3])
        k = min(k, n_faults - count)
        faults, part = [], False
        for _ in range(k):
            for _ in range(20):
                kind = rng.choices(kinds, weights)[0]
                if kind in PARTITIONS and part:
                    continue
                break
            part = part or kind in PARTITIONS
            f = _fault(rng, kind, n_nodes, svcs)
            f["delay_ms"] = 0 if not faults else rng.randint(0, 1500)
            faults.append(f)
        steps.append({"faults": faults, "gap_ms": rng.randint(2000, 4500)})
        count += k
    return steps


# ---- the run ----


class Run:
    def __init__(self, args, bed, tmp):
        self.args = args
        self.bed = bed
        self.tmp = Path(tmp)
        self.h = nsharness.Harness(bed, tmp, args.bin)
        self.nodes = list(bed.nodes)
        self.svcs = services(len(self.nodes))
        self.faults = []  # recorded: {"id", "kind", "nodes", "start", "end", ...}
        self.agent_exits = []
        self.killed = set()  # nodes whose agent the nemesis killed (restarted at undo)
        self.mounts = []
        self.roledir = self.tmp / "roles"
        self.roledir.mkdir()
        self.logs = {s: str(self.tmp / ("writes-%s.log" % s)) for s in self.svcs}
        self.probers = []
        self.snapshots = []
        self.statuses = []
        self.fid = 0
        self.stopped = set()  # nodes whose agent is SIGSTOPped (no status asked of them)
        self.skipped = []
        self._leader_before = None

    def ms(self, ns=None):
        return ((ns if ns is not None else time.monotonic_ns()) - self.h.t0) / 1e6

    # -- setup

    def mount_data(self):
        for n in self.nodes:
            d = self.tmp / ("data-" + n)
            d.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % DATA_MB, "tmpfs", str(d)],
                           check=True, timeout=30)
            self.mounts.append(str(d))
            (self.tmp / ("faketime-" + n)).write_text("+0\n")

    def unmount(self):
        left = []
        for d in reversed(self.mounts):
            cp = subprocess.run(["umount", d], capture_output=True, text=True, timeout=30)
            if cp.returncode != 0:
                subprocess.run(["umount", "-l", d], capture_output=True, timeout=30)
            with open("/proc/mounts") as f:
                if any(line.split()[1] == d for line in f):
                    left.append(d)
        self.mounts = []
        return left

    def keep_data(self):
        """Before the data dirs go: a listing of every node's Raft files in RUNDIR/raft-files.txt,
        and a copy of the Raft files of each node whose agent exited by itself and logged a problem
        with them (RUNDIR/keep-NODE/), so that a log it could not start from can be read after the
        run."""
        exited = set()
        for e in self.agent_exits:  # only those that could not start from their Raft files
            try:
                with open(self.h.logs[e["node"]], errors="replace") as f:
                    if any("raft start failed" in line or "raft: " in line for line in f):
                        exited.add(e["node"])
            except OSError:
                pass
        lines = []
        for n in self.nodes:
            d = self.tmp / ("data-" + n)
            for sub in sorted(d.glob("raft*")) if d.is_dir() else []:
                if not sub.is_dir():
                    continue
                for f in sorted(sub.iterdir()):
                    lines.append("%s %s/%s %d" % (n, sub.name, f.name, f.stat().st_size))
                if n in exited:
                    shutil.copytree(sub, self.tmp / ("keep-" + n) / sub.name, dirs_exist_ok=True)
        (self.tmp / "raft-files.txt").write_text("\n".join(lines) + "\n")

    def agent_env(self, n):
        env = dict(os.environ)
        if os.path.exists(FAKETIME_LIB):
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE=str(self.tmp / ("faketime-" + n)),
                       FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_CACHE_DURATION="1")
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        return env

    def start_agent(self, n):
        header = "==== chaos: starting the agent of %s at %.1f ms\n" % (n, self.ms())
        self.h.agents[n] = nsagents.start_agent(self.bed, n, self.h.bin, self.h.config(n), self.h.logs[n], header,
                                                extra_args=self.args.agent_args.split(), env=self.agent_env(n))
        self.h.note("agent %s started, pid %d" % (n, self.h.agents[n].pid))

    def start_watchers(self):
        for n in self.nodes:
            out = str(self.tmp / ("addr-%s.jsonl" % n))
            argv = [PYTHON, nsharness.PROBE, "addrwatch", "--dev", "eth0", "--out", out, "--duration",
                    self.args.max_seconds + 300]
            self.bed.popen(n, argv, label="addrwatch", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.h.watch[n] = out
        for n in self.nodes:
            self.h.wait("the address watcher in %s" % n, lambda n=n: self.h._watch_lines(n, ready=True), 10, 0.02)
            sched = [e.get("sched") for e in self.h._watch_lines(n) if e["ev"] == "ready"][0]
            if sched != "fifo":
                self.h.note("the address watcher in %s has no real-time priority (%s): it may date VIP changes late"
                            % (n, sched))

    def services_text(self):
        out = []
        for name, s in sorted(self.svcs.items()):
            order = self.nodes[s["first"]:] + self.nodes[: s["first"]]
            run = "exec %s run %s %s %s %d" % (SERVICE_BIN_RUN, name, self.logs[name], self.roledir, s["port"])
            lines = ["[service %s]" % name, "run = " + run, "standbys = %d" % s["standbys"],
                     "nodes = " + " ".join(order), "proxy = 0.0.0.0:%d -> %d" % (s["proxy"], s["port"]),
                     "failure_threshold = 1000", "max_restarts = 1000"]
            if s["standby"] == "hot":
                lines.append("standby = hot")
                for k in ("promote", "demote"):
                    lines.append("%s = exec %s hook %s %s %s" % (k, SERVICE_BIN_RUN, k, name, self.roledir))
            if s["vip"]:
                lines.append("vip = %s/24 dev eth0" % s["vip"])
            out.append("\n".join(lines) + "\n")
        return "\n".join(out)

    def start_probers(self, duration):
        for name, s in sorted(self.svcs.items()):
            targets = []
            if s["vip"]:
                targets.append(("vip", s["vip"], s["port"]))
            pn = self.nodes[(s["first"] + 1) % len(self.nodes)]
            targets.append(("proxy@" + pn, self.bed.ip[pn], s["proxy"]))
            if not s["vip"]:
                pn2 = self.nodes[(s["first"] + 2) % len(self.nodes)]
                targets.append(("proxy@" + pn2, self.bed.ip[pn2], s["proxy"]))
            for via, ip, port in targets:
                p = self.h.start_prober("%s-%s" % (name, via), "http://%s:%d/" % (ip, port), interval=0.05,
                                        timeout=1.0, duration=duration)
                self.probers.append((name, via, p))

    # -- observation

    def writes(self):
        out = []
        for name, path in self.logs.items():
            try:
                data = Path(path).read_bytes()
            except FileNotFoundError:
                continue
            for line in data.split(b"\n"):
                parts = line.split()
                if len(parts) != 4:
                    continue
                try:
                    out.append({"svc": parts[0].decode(), "node": parts[1].decode(), "epoch": int(parts[2]),
                                "t": round(self.ms(int(parts[3])), 2)})
                except ValueError:
                    continue
        return out

    def last_writer(self, svc):
        try:
            with open(self.logs[svc], "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 400))
                lines = [x for x in f.read().split(b"\n") if len(x.split()) == 4]
            return lines[-1].split()[1].decode() if lines else None
        except OSError:
            return None

    def statuses_now(self):
        return {n: (self.h.status(n) if self.h.running(n) and n not in self.stopped else None) for n in self.nodes}

    def snapshot(self):
        snap = {"t": round(self.ms(), 1), "statuses": self.statuses_now()}
        return snap

    def leader(self):
        for n in self.nodes:
            if self.h.running(n) and n not in self.stopped:
                st = self.h.status(n)
                if st and st["cluster"].get("leader"):
                    return st["cluster"]["leader"]
        return None

    def standby_of(self, svc):
        for n in self.nodes:
            if self.h.running(n) and n not in self.stopped:
                st = self.h.status(n)
                s = self.h.svc(st, svc)
                if s:
                    sb = [i["node"] for i in s.get("instances", []) if i["role"] == "standby"]
                    if sb:
                        return sorted(sb)[0]
        return None

    def resolve(self, t):
        n = None
        if t["role"] == "active":
            n = self.last_writer(t["svc"])
        elif t["role"] == "leader":
            n = self._leader_before
        elif t["role"] == "standby":
            n = self.standby_of(t["svc"])
        return n if n in self.nodes else self.nodes[t["idx"] % len(self.nodes)]

    def check_agents(self):
        for n in self.nodes:
            p = self.h.agents.get(n)
            if p is not None and p.poll() is not None and n not in self.killed:
                self.agent_exits.append({"node": n, "t": round(self.ms(), 1), "code": p.returncode})
                self.h.note("the agent of %s exited by itself (status %s)" % (n, p.returncode))
                self.killed.add(n)  # restarted at the next undo

    # -- faults

    def record(self, kind, nodes, start, **detail):
        self.fid += 1
        f = {"id": self.fid, "kind": kind, "nodes": sorted(nodes), "start": round(start, 1), "end": None,
             "out": kind in OUT_KINDS}
        f.update(detail)
        f["leader"] = self._leader_before  # the Raft leader just before the fault (checker: TAKEOVER_LEADER_MS)
        self.faults.append(f)
        self.h.note("fault #%d %s on %s %s" % (self.fid, kind, "+".join(f["nodes"]), detail or ""))
        return f

    def apply(self, spec, step):
        """Start one fault; returns (record, undo callable)."""
        kind = spec["kind"]
        self._leader_before = self.leader()
        n = self.resolve(spec["target"])
        t = self.ms()
        bed = self.bed
        if kind == "kill9_agent":
            if not self.h.running(n):
                return None, None
            self.killed.add(n)
            os.kill(self.h.agents[n].pid, signal.SIGKILL)
            self.h.agents[n].wait(timeout=10)
            return self.record(kind, [n], t, combo=step), lambda: self.revive(n)
        if kind == "stop_agent":
            if not self.h.running(n) or n in self.stopped:
                return None, None
            self.stopped.add(n)
            os.kill(self.h.agents[n].pid, signal.SIGSTOP)

            def cont():
                self.stopped.discard(n)
                if self.h.running(n):
                    os.kill(self.h.agents[n].pid, signal.SIGCONT)

            return self.record(kind, [n], t, combo=step), cont
        if kind == "link_down":
            bed.link_down(n)
            return self.record(kind, [n], t, combo=step), lambda: bed.link_up(n)
        if kind in ("isolate", "partition_leader"):
            if kind == "partition_leader":
                n = self._leader_before or n
            bed.isolate(n)

            def unisolate():
                bed._isolated.discard(n)
                bed._apply_nft()

            return self.record(kind, [n], t, combo=step), unisolate
        if kind == "partition_split":
            others = [x for x in self.nodes if x != n]
            rng = random.Random(spec["target"]["idx"])
            minority = [n] + rng.sample(others, spec["minority"] - 1)
            majority = [x for x in self.nodes if x not in minority]
            bed.partition([minority, majority])
            return self.record(kind, minority, t, combo=step, groups=[minority, majority]), self.unpartition
        if kind == "partition_bridge":
            others = [x for x in self.nodes if x != n]
            rng = random.Random(spec["r"])
            rng.shuffle(others)
            cut = max(1, len(others) // 2)
            a, b = others[:cut], others[cut:]
            bed._blocked = {frozenset((x, y)) for x in a for y in b}
            bed._apply_nft()
            return self.record(kind, a + b, t, combo=step, bridge=n, sides=[a, b]), self.unpartition
        if kind == "loss":
            bed.loss(n, spec["pct"])
            return self.record(kind, [n], t, combo=step, pct=spec["pct"]), lambda: bed.loss(n, 0)
        if kind == "clock_step":
            if not os.path.exists(FAKETIME_LIB):
                return None, None
            path = self.tmp / ("faketime-" + n)
            path.write_text("%+d\n" % spec["step_s"])
            return self.record(kind, [n], t, combo=step, step_s=spec["step_s"]), lambda: path.write_text("+0\n")
        if kind == "disk_full":
            fill = self.tmp / ("data-" + n) / "chaos-fill"
            try:
                with open(fill, "wb") as f:
                    for _ in range(DATA_MB * 2):
                        f.write(b"\0" * (1 << 19))
                        f.flush()
            except OSError:
                pass  # ENOSPC: full
            return self.record(kind, [n], t, combo=step), lambda: fill.unlink(missing_ok=True)
        if kind == "kill9_service":
            svc = spec["target"]["svc"]
            pids = self.service_pids(n, svc)
            if not pids:
                return None, None
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return self.record(kind, [n], t, combo=step, svc=svc, pids=pids), lambda: None
        if kind == "kill9_guardian":
            pids = self.guardian_pids(n)
            if not pids:
                return None, None
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return self.record(kind, [n], t, combo=step, pids=pids), lambda: None
        raise ValueError(kind)

    def unpartition(self):
        self.bed._blocked = set()
        self.bed._apply_nft()

    def revive(self, n):
        if not self.h.running(n):
            self.start_agent(n)
        self.killed.discard(n)

    @staticmethod
    def _cmdline(pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return f.read().split(b"\0")
        except OSError:
            return []

    def service_pids(self, n, svc):
        out = []
        for p in self.bed.ns_pids(n):
            c = self._cmdline(p)
            if len(c) >= 3 and c[0].endswith(b"chaos-service") and c[1] == b"run" and c[2] == svc.encode():
                out.append(p)
        return out

    def guardian_pids(self, n):
        if not self.h.running(n):
            return []
        agent = self.h.agents[n].pid  # `ip netns exec` execs the agent: this is the agent's pid
        out = []
        for p in self.bed.ns_pids(n):
            try:
                with open("/proc/%d/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == agent and self._cmdline(p)[:2] == self._cmdline(agent)[:2]:
                out.append(p)
        return out

    def sleep(self, ms):
        end = time.monotonic() + ms / 1000.0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))
            self.check_agents()

    def run_step(self, i, step):
        active = []  # (record, undo, end time)
        t_step = time.monotonic()
        for spec in step["faults"]:
            if spec["delay_ms"]:
                self.sleep(spec["delay_ms"] - (time.monotonic() - t_step) * 1000)
            try:
                rec, undo = self.apply(spec, i)
            except (netns.NetnsError, OSError, subprocess.SubprocessError) as e:
                self.h.note("fault %s could not be applied: %s" % (spec["kind"], e))
                rec, undo = None, None
            if rec is None:
                self.h.note("fault %s skipped (nothing to act on)" % spec["kind"])
                self.skipped.append(spec["kind"])
                continue
            hold = spec["hold_ms"] if spec["kind"] not in INSTANT else spec["after_ms"]
            active.append((rec, undo, time.monotonic() + hold / 1000.0, spec["kind"] in INSTANT))
        for rec, undo, end, _ in sorted(active, key=lambda x: x[2]):
            self.sleep((end - time.monotonic()) * 1000)
            undo()
            rec["end"] = round(self.ms(), 1)  # an instant fault (a kill): the end of the watch after it
        for n in sorted(self.killed):  # agents that exited by themselves come back too
            self.revive(n)

    def heal_all(self):
        self.bed.heal()
        self.unpartition()
        for n in list(self.stopped):
            self.stopped.discard(n)
            if self.h.running(n):
                os.kill(self.h.agents[n].pid, signal.SIGCONT)
        for n in self.nodes:
            (self.tmp / ("faketime-" + n)).write_text("+0\n")
            (self.tmp / ("data-" + n) / "chaos-fill").unlink(missing_ok=True)
        self.check_agents()
        for n in self.nodes:
            if not self.h.running(n):
                self.revive(n)

    def wait_healed(self, bound_ms):
        t_heal = self.ms()
        deadline = time.monotonic() + bound_ms / 1000.0 + 5
        snaps = []
        meta = self.meta()
        while time.monotonic() < deadline:
            snap = self.snapshot()
            snaps.append(snap)
            wsby = checker._writes_by_svc(self.writes())
            why = checker.steady(snap, meta, wsby)
            if not why:
                self.h.note("healed: steady at %.1f ms" % snap["t"])
                break
            self.h.note("not steady yet: %s" % why)
            time.sleep(0.5)
        return {"t": round(t_heal, 1), "snapshots": snaps}

    def meta(self):
        return {"seed": self.args.seed, "nodes": self.nodes, "t_end": round(self.ms(), 1),
                "services": {k: {"standby": v["standby"], "standbys": v["standbys"]} for k, v in self.svcs.items()},
                "bin": getattr(self.args, "bin_orig", self.h.bin), "faults_asked": self.args.faults, "prefix": self.bed.prefix,
                # wall clock (UTC, as the agent logs print it) at t = 0, to find a history time in the logs
                "t0_wall": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - self.ms() / 1000.0))
                + ".%03d" % int(((time.time() - self.ms() / 1000.0) % 1) * 1000)}

    # -- leaks

    def leaks_before_teardown(self):
        leaks = []
        vips = [s["vip"] for s in self.svcs.values() if s["vip"]]
        keep = {p.pid for p in self.bed.procs(None, "addrwatch")} | {p.pid for p in self.bed.procs(None, "prober")}

        def left():
            out = []
            for n in self.nodes:
                for p in self.bed.ns_pids(n):
                    if p not in keep and netns._pid_alive(p):
                        out.append("%s: pid %d %s" % (n, p, b" ".join(self._cmdline(p))[:120].decode(errors="replace")))
            return out

        ok, last = nsagents.poll(lambda: not left(), 15, 0.2)
        if not ok:
            leaks += ["process left after the agents stopped: " + x for x in left()]
        for n in self.nodes:
            held = [a for a in self.h.ip_addrs(n) if a.split("/")[0] in vips]
            if held:
                leaks.append("%s still holds %s after its agent stopped" % (n, held))
        return leaks


def history_answers(run):
    out = []
    for name, via, p in run.probers:
        for r in p.records():
            node = epoch = None
            if r.get("ok"):
                parts = (r.get("body") or "").split()
                if len(parts) == 2 and parts[1].isdigit():
                    node, epoch = parts[0], int(parts[1])
            out.append({"svc": name, "via": via, "t_send": round(run.ms(r["t_send_ns"]), 2),
                        "t_done": round(run.ms(r["t_done_ns"]), 2), "ok": bool(r.get("ok")) and epoch is not None,
                        "node": node, "epoch": epoch})
    return out


def history_vips(run):
    out = []
    for name, s in sorted(run.svcs.items()):
        if not s["vip"]:
            continue
        for n, ivs in run.h.vip_intervals(s["vip"]).items():
            for a, b in ivs:
                out.append({"svc": name, "node": n, "from": round(run.ms(a), 1),
                            "until": None if b is None else round(run.ms(b), 1)})
    return out


# ---- summary ----


def summary_text(res, hist, args, wall_s, skipped):
    m = res["metrics"]
    lines = ["==== chaos summary: seed %s, %d nodes, %d faults (%d asked), %.0f s, binary %s"
             % (args.seed, len(hist["meta"]["nodes"]), m["faults"], args.faults, wall_s, hist["meta"]["bin"])]
    lines.append("faults by kind: " + ", ".join("%s %d" % kv for kv in sorted(m["faults_by_kind"].items())))
    if skipped:
        lines.append("skipped (nothing to act on): " + ", ".join(sorted(skipped)))
    lines.append("takeover after a fault on an active's node (ms from the fault to the next write), by kind:")
    for k, s in m["takeover_ms_by_kind"].items():
        if s:
            lines.append("  %-17s n=%-3d median %7.1f  p90 %7.1f  max %7.1f" % (k, s["n"], s["median"], s["p90"],
                                                                            s["max"]))
    kept = {}
    for t in m["takeovers"]:
        if not t["disrupted"]:
            kept[t["kind"]] = kept.get(t["kind"], 0) + 1
    if kept:
        lines.append("faults on an active's node that cost it nothing: " +
                     ", ".join("%s %d" % kv for kv in sorted(kept.items())))
    if m["not_taken_over"]:
        lines.append("never taken over: %d" % len(m["not_taken_over"]))
    st = checker.stalls(hist.get("waits", []))
    if "wait_ms" in hist:
        lines.append("agents runnable but not run by the machine (run-queue wait, /proc/PID/schedstat): "
                     + ", ".join("%s %.0f ms" % kv for kv in sorted(hist["wait_ms"].items()))
                     + " (on a CPU: " + ", ".join("%s %.0f ms" % kv for kv in sorted(hist.get("cpu_ms", {}).items()))
                     + ")"
                     + "; %d stalls (>= %.0f ms of waiting within %.0f ms): %s"
                     % (len(st), checker.STALL_MS,
                        checker.STALL_SPAN_MS, ", ".join("%s %.0f..%.0f (%.0f ms)" % (x["node"], x["start"], x["end"],
                                                                                   x["wait_ms"]) for x in st[:10])
                        + (" ..." if len(st) > 10 else "")))
    if m.get("longest_outage_ms"):
        lines.append("longest time without a write, per service (whatever the cause): "
                     + ", ".join("%s %.0f ms" % kv for kv in sorted(m["longest_outage_ms"].items())))
    if m.get("excused_by_starvation"):
        lines.append("disruptions explained by stalls alone (not judged): %d" % len(m["excused_by_starvation"]))
    u = m["unavailability"]
    lines.append("client unavailability: %d failure runs, %.0f ms with a fault in force, %.0f ms with no fault behind it"
                 % (u["runs"], u["with_fault_ms"], u["without_fault_ms"]))
    for x in u["without_fault"][:10]:
        lines.append("  no fault: %s via %s %.1f..%.1f ms (%d failed)" % (x["svc"], x["via"], x["start"], x["end"],
                                                                         x["failed"]))
    lines.append("violations: %d safety, %d liveness" % (m["safety_violations"], m["liveness_violations"]))
    for v in res["violations"][:60]:
        lines.append("  [%s/%s] %s: %s" % (v["kind"], v["property"], v["svc"] or "-", v["msg"]))
        for e in v["excerpt"]:
            lines.append("      " + e)
    if len(res["violations"]) > 60:
        lines.append("  ... %d more in the JSON" % (len(res["violations"]) - 60))
    lines.append("replay: make chaos FAULTS=%d SEED=%s NODES=%d" % (args.faults, args.seed, len(hist["meta"]["nodes"])))
    return "\n".join(lines)


def verdict(args, res):
    """Exit status: 1 if a violation that --gate counts was found."""
    m = res["metrics"]
    if args.gate == "safety":
        if m["liveness_violations"]:
            print("chaos: %d liveness violation(s) reported, not gated (--gate safety; issue 11 open)"
                  % m["liveness_violations"])
        return 1 if m["safety_violations"] else 0
    return 1 if res["violations"] else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", type=int, default=200)
    ap.add_argument("--gate", choices=["all", "safety"], default="all",
                    help="which violations fail the run (safety: liveness ones are reported only)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    ap.add_argument("--bin", default=os.environ.get("UNDERSTUDY_BIN") or str(REPO / "build" / "understudy"))
    ap.add_argument("--agent-args", default="", help="more arguments for every agent, e.g. --debug")
    ap.add_argument("--out", default=None, help="run directory (default: a new /tmp/understudy-chaos-*)")
    ap.add_argument("--json", default=None, help="summary JSON (default: RUNDIR/summary.json)")
    ap.add_argument("--max-seconds", type=int, default=None, help="bound of the fault phase (default 60 + 12 s a fault)")
    ap.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    ap.add_argument("--check", metavar="HISTORY", help="only judge a recorded history.json again")
    args = ap.parse_args(argv)
    if args.check:
        with open(args.check) as f:
            hist = json.load(f)
        res = checker.check(hist)
        args.seed, args.faults = hist["meta"]["seed"], hist["meta"].get("faults_asked", 0)
        print(summary_text(res, hist, args, 0, []))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"seed": args.seed, "metrics": res["metrics"], "violations": res["violations"]}, f, indent=1)
        return verdict(args, res)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    if args.max_seconds is None:
        args.max_seconds = 60 + 12 * args.faults
    args.bin = os.path.abspath(args.bin)
    steps = schedule(args.seed, args.faults, args.nodes)
    print("chaos: seed %d, %d faults in %d steps, %d nodes (replay: --seed %d --faults %d --nodes %d)"
          % (args.seed, args.faults, len(steps), args.nodes, args.seed, args.faults, args.nodes), flush=True)
    if args.print_schedule:
        for i, s in enumerate(steps):
            print(i, json.dumps(s, sort_keys=True))
        return 0
    why = nsagents.skip_reason()
    if why:
        print("chaos: cannot run: " + why, file=sys.stderr)
        return 2
    if not os.access(args.bin, os.X_OK):
        print("chaos: binary %s not found (make build/understudy)" % args.bin, file=sys.stderr)
        return 2
    if not os.access(SERVICE_BIN, os.X_OK):
        print("chaos: %s not found (make build/chaos-service)" % SERVICE_BIN, file=sys.stderr)
        return 2
    if not os.path.exists(FAKETIME_LIB):
        print("chaos: %s missing (Debian package libfaketime): clock_step faults are skipped" % FAKETIME_LIB)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)  # before the bed: netns.py tears down, then chains to this
    tmp = args.out or tempfile.mkdtemp(prefix="understudy-chaos-%d-" % args.seed)
    os.makedirs(tmp, exist_ok=True)
    print("chaos: run directory %s (agent logs agent-*.log, writes-*.log, history.json)" % tmp, flush=True)
    # A copy: a rebuild during the run must not put another binary into the agents restarted later.
    shutil.copy2(args.bin, os.path.join(tmp, "understudy"))
    shutil.copy2(SERVICE_BIN, os.path.join(tmp, "chaos-service"))
    args.bin_orig, args.bin = args.bin, os.path.join(tmp, "understudy")
    global SERVICE_BIN_RUN
    SERVICE_BIN_RUN = os.path.join(tmp, "chaos-service")
    t_wall = time.monotonic()
    bed = netns.TestBed(args.nodes)
    run = None
    leaks, hist = [], None
    try:
        bed.start()
        run = Run(args, bed, tmp)
        run.mount_data()
        run.start_watchers()
        for n in run.nodes:
            run.start_agent(n)
        run.h.wait_formed()
        run.h.apply_ok(run.services_text(), name="services.ini")
        heal0 = run.wait_healed(60000)
        if checker.steady(heal0["snapshots"][-1], run.meta(), checker._writes_by_svc(run.writes())):
            raise RuntimeError("the cluster did not settle before the first fault: %s" % heal0["snapshots"][-1])
        run.start_probers(args.max_seconds + 120)
        monitor = StarvationMonitor(run)
        monitor.start()
        run.t_faults = round(run.ms(), 1)
        deadline = time.monotonic() + args.max_seconds
        for i, step in enumerate(steps):
            if time.monotonic() > deadline:
                run.h.note("time bound reached after %d steps" % i)
                break
            run.run_step(i, step)
            run.sleep(step["gap_ms"])
        run.heal_all()
        heal = run.wait_healed(checker.HEAL_BOUND_MS)
        t_end = run.ms()
        cp = run.h.cli(netns.CLIENT, ["events", "--json"], api_of=run.leader() or run.nodes[0], timeout=30)
        events = cp.stdout
        for _, _, p in run.probers:
            p.stop()
        waits = monitor.stop()
        findings = run.h.stop_agents()
        leaks += ["sanitizer report: " + f for f in findings]
        leaks += run.leaks_before_teardown()
        hist = {"meta": run.meta(), "writes": run.writes(), "faults": run.faults, "answers": history_answers(run),
                "vips": history_vips(run), "heal": heal, "agent_exits": run.agent_exits, "events_raw": events,
                "waits": waits, "wait_ms": {n: round(w, 1) for n, w in sorted(monitor.wait_ms.items())},
                "cpu_ms": {n: round(w, 1) for n, w in sorted(monitor.cpu_ms.items())}}
        hist["meta"]["t_end"] = round(t_end, 1)
        hist["meta"]["t_faults"] = run.t_faults
    finally:
        prefix = bed.prefix
        problems = bed.close()
        if run:
            try:
                run.keep_data()
            except OSError as e:
                print("cannot keep the data dirs: %s" % e, file=sys.stderr)
        left = run.unmount() if run else []
    leaks += ["bed teardown: " + p for p in problems]
    leaks += ["mount left: " + d for d in left]
    if prefix:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        leaks += ["namespace left: " + x.split()[0] for x in names.splitlines() if x.startswith(prefix + "-")]
    hist["leaks"] = leaks
    with open(os.path.join(tmp, "history.json"), "w") as f:
        json.dump(hist, f)
    res = checker.check(hist)
    wall = time.monotonic() - t_wall
    text = summary_text(res, hist, args, wall, run.skipped)
    print(text)
    out = {"seed": args.seed, "nodes": args.nodes, "faults_asked": args.faults, "binary": args.bin,
           "run_dir": tmp, "wall_s": round(wall, 1), "metrics": res["metrics"], "violations": res["violations"],
           "skipped": run.skipped}
    path = args.json or os.path.join(tmp, "summary.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.join(tmp, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print("chaos: summary JSON %s; history %s/history.json; agent logs %s/agent-*.log" % (path, tmp, tmp))
    return verdict(args, res)


if __name__ == "__main__":
    sys.exit(main())
