"""nsharness.py — understudy agents in network namespaces, for the VIP and proxy tests.

Builds on tests/netns.py (the test bed: a switch, node namespaces n1..n3 with eth0 198.18.0.11..13/24,
a client namespace 198.18.0.100) and adds what these tests share:
  - one agent per node namespace (configs with the node IPs, default profile), started, killed
    (-9), crashed (agent, guardian and services killed together) and restarted;
  - an address watcher (probe.py addrwatch) in every node namespace from before the agents start,
    so every add/del of the VIP is known with its CLOCK_MONOTONIC time; vip_overlaps() checks that
    no two nodes ever held the VIP at the same time;
  - observations from the client's side: HTTP requests (probe.py get), the prober and the load
    generator (probe.py http), ARP (probe.py arp: which MACs answer for an address), and the
    nodes' own view of their addresses (`ip -j addr show dev eth0` inside each namespace);
  - a timeline of everything the test did, agent log tails and address events for failures
    (dump_logs(), picked up by conftest's report hook through item._us_cluster).

Every wait is bounded in time and count; harness() tears everything down on every exit path (the
bed kills whatever runs in its namespaces, then deletes them).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))
import netns  # noqa: E402
import nsagents  # noqa: E402
import probe  # noqa: E402

PROBE = str(HERE / "probe.py")
PYTHON = sys.executable or "/usr/bin/python3"

# Default timing profile (docs/timing.md): lease L and grant window G.
LEASE_MS = 600
GRANT_WINDOW_MS = 300
# Allowance for measuring "gone by the end of its lease" (watcher wake-up, scheduling); the
# product's own deadlines are not stretched by it.
MEASURE_SLACK_MS = 100
CLUSTER_UP_S = 40.0
STEADY_S = 30.0

RAFT_PORT = nsagents.RAFT_PORT
API_PORT = nsagents.API_PORT
SERVICE = "web"
VIP = "198.18.0.200"
VIP_PREFIX = 24
HTTP_PORT = 8080
PROXY_PORT = 8000
SANITIZER_MARKERS = nsagents.SANITIZER_MARKERS


def skip_reason():
    return nsagents.skip_reason()


def binary():
    return nsagents.binary(REPO)


def now_ns():
    return time.monotonic_ns()


def tail(path, n=60):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 300_000))
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def service_text(vip=True, proxy=False, delay_ms=0, extra="", name=SERVICE):
    """The test service: probe.py serve on HTTP_PORT, one cold standby, optionally the VIP and the
    proxy (PROXY_PORT -> HTTP_PORT)."""
    run = "exec %s %s serve --port %d" % (PYTHON, PROBE, HTTP_PORT)
    if delay_ms:
        run += " --delay-ms %d" % delay_ms
    lines = ["[service %s]" % name, "run = " + run, "standbys = 1"]
    if vip:
        lines.append("vip = %s/%d dev eth0" % (VIP, VIP_PREFIX))
    if proxy:
        lines.append("proxy = 0.0.0.0:%d -> %d" % (PROXY_PORT, HTTP_PORT))
    if extra:
        lines.append(extra.strip())
    return "\n".join(lines) + "\n"


class Prober:
    """A probe.py http process in the client namespace, writing one JSON line per request."""

    def __init__(self, h, name, popen, out, summary_path, timeout):
        self.h, self.name, self.popen, self.out = h, name, popen, out
        self.summary_path = summary_path
        self.timeout = timeout
        self.summary = None

    def records(self):
        return probe.load_records(self.out)

    def wait(self, what, cond, timeout):
        """Poll cond(records) until it returns something truthy."""
        return self.h.wait("prober %s: %s" % (self.name, what), lambda: cond(self.records()), timeout, 0.05)

    def wait_ok(self, n=20, timeout=10.0):
        return self.wait("%d successful requests" % n, lambda rs: sum(r["ok"] for r in rs) >= n, timeout)

    def wait_answers_from(self, body, after_ns, n=1, timeout=15.0):
        """When `body` first answered (the earliest completion of a request sent after after_ns
        and answered with it), once n such answers were recorded."""

        def cond(rs):
            hits = [r["t_done_ns"] for r in rs if r["ok"] and r["body"] == body and r["t_send_ns"] >= after_ns]
            return min(hits) if len(hits) >= n else None

        return self.wait("%d answer(s) '%s'" % (n, body), cond, timeout)

    def stop(self):
        self.h.bed.terminate(self.popen, timeout=self.timeout + 10)
        try:
            with open(self.summary_path) as f:
                self.summary = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            self.summary = None
        self.h.note("prober %s stopped: %s" % (self.name, self.summary))
        return self.records()


class Harness:
    def __init__(self, bed, tmp, binary_path):
        self.bed = bed
        self.tmp = Path(tmp)
        self.bin = binary_path
        self.nodes = list(bed.nodes)
        self.agents = {}
        self.logs = {n: str(self.tmp / ("agent-%s.log" % n)) for n in self.nodes}
        self.watch = {}
        self.events = []
        self.t0 = now_ns()
        self._macs = {}
        self._files = 0
        self._probers = 0
        self.agent_args = []  # e.g. ["--debug"], for every agent started from here on

    # -- bookkeeping

    def note(self, msg):
        self.events.append((now_ns(), msg))
        print("%9.1f ms  %s" % ((now_ns() - self.t0) / 1e6, msg))

    def ms(self, ns):
        return None if ns is None else round((ns - self.t0) / 1e6, 1)

    def timeline(self):
        return "\n".join("%9.1f ms  %s" % ((t - self.t0) / 1e6, m) for t, m in self.events)

    def wait(self, what, cond, timeout, interval=0.05):
        """Poll cond() until it returns something truthy (returned); bounded in time and count."""
        return nsagents.wait(what, cond, timeout, interval)

    # -- address watchers

    def start_watchers(self):
        for n in self.nodes:
            out = str(self.tmp / ("addr-%s.jsonl" % n))
            argv = [PYTHON, PROBE, "addrwatch", "--dev", "eth0", "--out", out, "--duration", "590"]
            self.bed.popen(n, argv, label="addrwatch", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.watch[n] = out
        for n in self.nodes:
            self.wait("the address watcher in %s" % n, lambda n=n: self._watch_lines(n, ready=True), 10, 0.02)

    def _watch_lines(self, n, ready=False):
        out = []
        try:
            with open(self.watch[n]) as f:
                for line in f:
                    if line.endswith("\n"):
                        out.append(json.loads(line))
        except (OSError, KeyError):
            return []
        if ready and not any(e["ev"] == "ready" for e in out):
            return []
        return out

    def addr_events(self, n, ip=VIP):
        return [e for e in self._watch_lines(n) if e.get("addr") == ip or e["ev"] == "lost"]

    def vip_intervals(self, ip=VIP):
        """{node: [[from_ns, until_ns or None], ...]}: when each node held ip (watcher times)."""
        out = {}
        for n in self.nodes:
            iv = []
            for e in self.addr_events(n, ip):
                if e["ev"] in ("init", "add") and (not iv or iv[-1][1] is not None):
                    iv.append([e["t_ns"], None])
                elif e["ev"] == "del" and iv and iv[-1][1] is None:
                    iv[-1][1] = e["t_ns"]
            out[n] = iv
        return out

    def vip_overlaps(self, ip=VIP):
        """Problems: times when two nodes held ip at once, or lost watcher events."""
        problems = []
        ivs = self.vip_intervals(ip)
        end = now_ns()
        flat = [(a, b if b is not None else end, n) for n, l in ivs.items() for a, b in l]
        flat.sort()
        for i, (a1, b1, n1) in enumerate(flat):
            for a2, b2, n2 in flat[i + 1 :]:
                if n2 != n1 and a2 < b1:
                    problems.append(
                        "%s held %s from %.1f to %.1f ms and %s from %.1f to %.1f ms (overlap %.1f ms)"
                        % (n1, ip, self.ms(a1), self.ms(b1), n2, self.ms(a2), self.ms(b2), (min(b1, b2) - a2) / 1e6)
                    )
        for n in self.nodes:
            if any(e["ev"] == "lost" for e in self.addr_events(n, ip)):
                problems.append("the address watcher in %s lost netlink events" % n)
        return problems

    def vip_events_text(self, ip=VIP):
        out = []
        for n in self.nodes:
            evs = ["%s@%.1f" % (e["ev"], self.ms(e["t_ns"])) for e in self.addr_events(n, ip)]
            out.append("%s: %s" % (n, " ".join(evs) or "-"))
        return "\n".join(out)

    # -- agents

    def api(self, n):
        return nsagents.api(self.bed, n)

    def config_path(self, n):
        return self.tmp / ("%s.conf" % n)

    def config(self, n):
        cfg = self.config_path(n)
        if not cfg.exists():
            nsagents.write_node_config(cfg, self.bed, n, "vipnet", self.tmp / ("data-" + n), nodes=self.nodes)
        return cfg

    def start_agent(self, n):
        assert not self.running(n), "the agent of %s is already running" % n
        header = "==== harness: starting the agent of %s\n" % n
        self.agents[n] = nsagents.start_agent(
            self.bed, n, self.bin, self.config(n), self.logs[n], header, extra_args=self.agent_args
        )
        self.note("agent %s started, pid %d" % (n, self.agents[n].pid))
        return self.agents[n]

    def start_agents(self):
        for n in self.nodes:
            self.start_agent(n)

    def running(self, n):
        p = self.agents.get(n)
        return p is not None and p.poll() is None

    def kill9_agent(self, n):
        """SIGKILL the agent only (its guardian and services live on); returns the time before the kill."""
        t = now_ns()
        os.kill(self.agents[n].pid, signal.SIGKILL)
        self.agents[n].wait(timeout=10)
        self.note("kill -9 of the agent of %s (pid %d)" % (n, self.agents[n].pid))
        return t

    def crash_node(self, n):
        """Kill -9 everything understudy runs in n (agent, guardian, services) at once, as a crash
        of the whole process tree would; the address watcher stays."""
        keep = {p.pid for p in self.bed.procs(n, "addrwatch")}
        pids = [p for p in self.bed.ns_pids(n) if p not in keep and p != os.getpid()]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if n in self.agents:
            self.agents[n].wait(timeout=10)
        self.wait(
            "every process in %s but the watcher gone" % n,
            lambda: not [p for p in self.bed.ns_pids(n) if p not in keep and netns._pid_alive(p)],
            10,
        )
        self.note("crashed %s: killed pids %s" % (n, pids))

    def stop_agents(self):
        """SIGINT every agent, SIGKILL after a bound; returns sanitizer findings in the logs."""
        nsagents.stop_procs(list(self.agents.values()), signal.SIGINT, bound=15, cont=True)
        return nsagents.sanitizer_findings({n: tail(self.logs[n], 1_000_000) for n in self.nodes})

    # -- API and CLI

    def cli(self, where, argv, api_of=None, timeout=30):
        return nsagents.cli(self.bed, where, self.bin, api_of or where, argv, timeout)

    def status(self, n, via=None):
        """Agent n's own status (None if it does not answer), asked from namespace `via` (default:
        n's own, which reaches it whatever the faults)."""
        return nsagents.status(self.bed, via or n, self.bin, n)

    @staticmethod
    def svc(st, name=SERVICE):
        for s in (st or {}).get("services", []):
            if s["name"] == name:
                return s
        return None

    @staticmethod
    def instance(st, node, name=SERVICE):
        for i in (Harness.svc(st, name) or {}).get("instances", []):
            if i["node"] == node:
                return i
        return None

    def view(self, n, via=None, term=False):
        """(leader, active, epoch, has_quorum[, term]) as agent n sees it, or None."""
        st = self.status(n, via)
        s = self.svc(st)
        if not s:
            return None
        v = st["cluster"]["leader"], s["active"], s["epoch"], st["cluster"]["has_quorum"]
        return v + (st["cluster"]["term"],) if term else v

    def wait_formed(self, quiet=False):
        def formed():
            return nsagents.formed_leader([self.status(n) for n in self.nodes if self.running(n)])

        leader = self.wait("a leader every agent knows, with quorum", formed, CLUSTER_UP_S, 0.2)
        if not quiet:
            self.note("cluster formed, leader %s" % leader)
        return leader

    def leader(self):
        return self.wait_formed(quiet=True)

    def write(self, text, name=None):
        self._files += 1
        path = self.tmp / (name or "services-%d.ini" % self._files)
        path.write_text(text)
        return path

    def apply(self, text, name=None, via=None):
        """`understudy apply` from the client namespace against the leader (or `via`'s API);
        returns the CompletedProcess."""
        path = self.write(text, name)
        target = via or self.leader()
        cp = self.cli(netns.CLIENT, ["apply", str(path)], api_of=target, timeout=60)
        self.note("apply %s via %s: exit %d %s" % (path.name, target, cp.returncode, (cp.stdout + cp.stderr).strip()))
        return cp

    def apply_ok(self, text, name=None):
        cp = self.apply(text, name)
        assert cp.returncode == 0, "apply failed (exit %d): %s %s" % (cp.returncode, cp.stdout, cp.stderr)
        return cp

    def switchover(self, to=None, via=None, timeout=60):
        """`understudy switchover` from the client against `via` (default: the leader); returns
        (CompletedProcess, time right before the command started)."""
        argv = ["switchover", SERVICE] + (["--to", to] if to else [])
        via = via or self.leader()
        t = now_ns()
        cp = self.cli(netns.CLIENT, argv, api_of=via, timeout=timeout)
        self.note(
            "switchover%s: exit %d in %.0f ms: %s"
            % (" --to " + to if to else "", cp.returncode, (now_ns() - t) / 1e6, (cp.stdout + cp.stderr).strip())
        )
        return cp, t

    # -- addresses, ARP, HTTP

    def ip_addrs(self, n):
        """Addresses on n's eth0, from `ip -j addr show dev eth0` inside n: ["198.18.0.11/24", ...]."""
        cp = self.bed.run(n, ["ip", "-j", "addr", "show", "dev", "eth0"], timeout=10, check=True)
        out = []
        for link in json.loads(cp.stdout or "[]"):
            for a in link.get("addr_info", []):
                out.append("%s/%d" % (a["local"], a["prefixlen"]))
        return out

    def has_vip(self, n, ip=VIP):
        return any(a.split("/")[0] == ip for a in self.ip_addrs(n))

    def vip_holders(self, ip=VIP):
        return [n for n in self.nodes if self.has_vip(n, ip)]

    def mac(self, n):
        if n not in self._macs:
            cp = self.bed.run(n, ["ip", "-j", "link", "show", "dev", "eth0"], timeout=10, check=True)
            self._macs[n] = json.loads(cp.stdout)[0]["address"].lower()
        return self._macs[n]

    def mac_names(self, macs):
        names = {self.mac(n): n for n in self.nodes}
        return ["%s(%s)" % (m, names.get(m, "?")) for m in macs]

    def client_neighbour(self, ip=VIP):
        """The client's neighbour entry for ip (`ip -j neigh show`), or None."""
        cp = self.bed.run(netns.CLIENT, ["ip", "-j", "neigh", "show", ip, "dev", "eth0"], timeout=10, check=True)
        entries = json.loads(cp.stdout or "[]")
        return entries[0] if entries else None

    def arp(self, ip=VIP, wait=0.5):
        cp = self.bed.run(netns.CLIENT, [PYTHON, PROBE, "arp", "--dev", "eth0", "--ip", ip, "--wait", wait], timeout=30)
        assert cp.returncode == 0, "probe.py arp failed: %s" % cp.stderr
        return json.loads(cp.stdout)["macs"]

    def settle_arp(self, node, ip=VIP, settle=2.0):
        """Poll ARP until only node's MAC answers for ip (for up to `settle` seconds), then check once
        more. Returns (ok, ms until settled, macs of the final check)."""
        want = [self.mac(node)]
        t0 = time.monotonic()
        settled = None
        seen = []
        for _ in range(40):
            macs = self.arp(ip, wait=0.2)
            seen.append(self.mac_names(macs))
            if macs == want:
                settled = (time.monotonic() - t0) * 1000
                break
            if time.monotonic() - t0 > settle:
                break
        final = self.arp(ip, wait=0.5)
        self.note(
            "ARP for %s: wanted %s; settled after %s ms; polls %s; final %s"
            % (ip, self.mac_names(want), None if settled is None else round(settled), seen, self.mac_names(final))
        )
        return settled is not None and final == want, settled, final

    def assert_single_arp(self, node, ip=VIP, settle=2.0):
        ok, settled, final = self.settle_arp(node, ip, settle)
        assert settled is not None, "ARP for %s: after %.1f s still not only %s answering (polls: timeline)" % (
            ip,
            settle,
            self.mac_names([self.mac(node)]),
        )
        assert ok, "ARP for %s: %s answered, expected exactly %s" % (
            ip,
            self.mac_names(final),
            self.mac_names([self.mac(node)]),
        )

    def http_get(self, url, where=netns.CLIENT, timeout=1.0):
        cp = self.bed.run(where, [PYTHON, PROBE, "get", "--url", url, "--timeout", timeout], timeout=30)
        try:
            r = json.loads(cp.stdout)
        except ValueError:
            return False, "probe.py get: %s" % cp.stderr.strip()
        return r["ok"], r.get("body") or r.get("error")

    def start_prober(self, name, url, interval=0.01, rate=None, workers=1, timeout=1.0, duration=30):
        self._probers += 1
        out = str(self.tmp / ("probe-%d-%s.jsonl" % (self._probers, name)))
        summ = out + ".summary"
        argv = [PYTHON, PROBE, "http", "--url", url, "--timeout", timeout, "--duration", duration, "--out", out]
        argv += ["--rate", rate, "--workers", workers] if rate else ["--interval", interval]
        with open(summ, "w") as f:
            p = self.bed.popen(netns.CLIENT, argv, label="prober", stdout=f, stderr=subprocess.STDOUT)
        self.note("prober %s started: %s" % (name, " ".join(map(str, argv[2:]))))
        return Prober(self, name, p, out, summ, timeout)

    # -- steady state

    def body(self, node, epoch):
        return "%s %d" % (node, epoch)

    def wait_steady(self, vip=True, timeout=STEADY_S, standby=True, stable_s=1.0):
        """Every running agent agrees on the leader, its term and the active (with quorum), the
        leader sees every running agent alive, the active's instance runs and answers on its own
        address and, with vip, on the VIP (which the active holds), and, with standby and two or
        more running agents, a standby is assigned; all of it unchanged for stable_s (longer than
        a new leader's wait W = 968 ms, so that a failover measured next is not slowed by a
        leadership change just before it). Returns (leader, active, epoch)."""
        last = {}
        since = {}

        def steady():
            r = check()
            if r is None:
                since.clear()
                return None
            if since.get("r") != r:
                since.update(r=r, t=time.monotonic())
            return r if time.monotonic() - since["t"] >= stable_s else None

        def check():
            up = [n for n in self.nodes if self.running(n)]
            views = {n: self.view(n, term=True) for n in up}
            last["views"] = views
            if any(v is None for v in views.values()) or len(set(views.values())) != 1:
                return None
            leader, active, epoch, q, term = next(iter(views.values()))
            if not active or not q or leader not in up:
                return None
            st = self.status(leader)
            states = {x["name"]: x["state"] for x in (st or {}).get("nodes", [])}
            last["states"] = states
            if any(states.get(n) != "alive" for n in up):
                return None
            if standby and len(up) >= 2:
                roles = [i["role"] for i in self.svc(st)["instances"]]
                last["roles"] = roles
                if "standby" not in roles:
                    return None
            want = self.body(active, epoch)
            ok, body = self.http_get("http://%s:%d/" % (self.bed.ip[active], HTTP_PORT))
            last["direct"] = body
            if not ok or body != want:
                return None
            if vip:
                last["holders"] = self.vip_holders()
                if active not in last["holders"]:
                    return None
                ok, body = self.http_get("http://%s:%d/" % (VIP, HTTP_PORT))
                last["via_vip"] = body
                if not ok or body != want:
                    return None
            return leader, active, epoch

        try:
            what = "a steady cluster (agreement, running active%s)" % (", VIP" if vip else "")
            r = self.wait(what, steady, timeout, 0.1)
        except AssertionError as e:
            raise AssertionError("%s; details: %r" % (e, last)) from None
        self.note("steady: leader %s, active %s, epoch %d" % r)
        return r

    def wait_new_active(self, observers, old_active, old_epoch, timeout=15.0):
        """Wait until agents `observers` agree (with quorum) on an active other than old_active
        under a higher epoch. Returns (leader, active, epoch, ns when seen)."""

        def moved():
            views = {self.view(n) for n in observers}
            if len(views) != 1 or None in views:
                return None
            leader, act, ep, q = views.pop()
            if q and act and act != old_active and ep > old_epoch:
                return leader, act, ep, now_ns()
            return None

        what = "a new active (not %s, epoch > %d) seen by %s" % (old_active, old_epoch, observers)
        r = self.wait(what, moved, timeout, 0.05)
        self.note("new active %s epoch %d (leader %s)" % (r[1], r[2], r[0]))
        return r

    # -- diagnostics

    def dump_logs(self, lines=60):
        out = ["==== timeline (ms since the harness started)", self.timeline()]
        for n in self.nodes:
            out += ["---- agent log %s (last %d lines): %s" % (n, lines, self.logs[n]), tail(self.logs[n], lines)]
            svc_log = self.tmp / ("data-" + n) / "logs" / (SERVICE + ".log")
            if svc_log.exists():
                out += ["---- service log on %s (tail)" % n, tail(svc_log, 15)]
        out += ["---- %s events per node (ms)" % VIP, self.vip_events_text()]
        return "\n".join(out)


def harness(request, tmp_path, nodes=3):
    """Generator for a fixture: a bed with `nodes` node namespaces and a client, address watchers
    running, no agents yet. Tears down on every exit; fails on sanitizer reports."""
    why = skip_reason()
    if why:
        pytest.skip(why)
    b = binary()
    assert os.access(b, os.X_OK), "understudy binary %s not found: run `make build/san/understudy`" % b
    bed = netns.TestBed(nodes)
    h = None
    try:
        bed.start()
        h = Harness(bed, tmp_path, b)
        request.node._us_cluster = h  # conftest's report hook adds h.dump_logs() to failures
        h.start_watchers()
        yield h
    finally:
        findings = h.stop_agents() if h else []
        problems = bed.close()
        print("agent logs, prober output and address events: %s" % tmp_path)
    assert not findings, "sanitizer reports in agent logs: %s\n%s" % (findings, h.dump_logs(200))
    assert not problems, "test bed teardown problems: %s" % problems


def wait_vip_gone(h, nodes, timeout, ip=VIP):
    """Wait until none of `nodes` holds ip (ip addr inside each); returns ms waited."""
    t = time.monotonic()
    h.wait("%s gone from %s" % (ip, nodes), lambda: not [n for n in nodes if h.has_vip(n, ip)], timeout, 0.05)
    return (time.monotonic() - t) * 1000


def counter_text(c):
    return ", ".join("%s x%d" % (k, v) for k, v in collections.Counter(c).most_common())
