"""Network partitions with real agents in network namespaces (tests/netns.py).

Three agents, one per node namespace, run a service that appends "NODE EPOCH TIME_NS" (TIME_NS =
CLOCK_MONOTONIC, the clock of time.monotonic_ns() here) every 10 ms to one log file on the shared
host filesystem. The node holding the active role is cut off from the other two; the tests check:
  - fencing: the isolated instance is gone (pidfd exit time) before the new active's first line,
    and no two (node, epoch) intervals of the log overlap;
  - the isolated instance dies by the time the isolated node's lease ran out: L after the cut for
    a follower; G + L for the leader, which renews its own lease while a quorum acknowledged it
    within G (lease.h);
  - the majority promotes another node (higher epoch) within 10 s;
  - the isolated agent's own status never shows a live instance pid after its lease ran out;
  - after healing, within 10 s every agent agrees on exactly one active (the new one), the old
    node is standby or stopped, and exactly one service process runs.
Run as root (CI is root); skipped only without root or `ip netns`.
"""

import os
import re
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import netns  # noqa: E402
import nsagents  # noqa: E402

# Default timing profile (src/core/lease.c, us_timing_profile): lease L and grant window G, ms.
LEASE_MS = 600
GRANT_WINDOW_MS = 300
# Measurement allowance for "dead by the end of its lease": scheduling of the guardian, the kill,
# and the pidfd watcher thread waking up. The product's own deadlines are not stretched by it.
MEASURE_SLACK_MS = 100
FAILOVER_DEADLINE_S = 10.0
# Cut of the node that is both leader and active, to the promotion seen on the majority: an
# election within suspect_ms + 1-2 heartbeats, overlapping stale_after (674 ms), then the decision.
# 680-850 ms measured under ASan; 1.8-5.9 s before the election was hastened on silence.
LEADER_TAKEOVER_BOUND_MS = 1600
HEAL_DEADLINE_S = 10.0
CLUSTER_UP_DEADLINE_S = 40.0
SERVICE = "web"
RAFT_PORT = nsagents.RAFT_PORT

WRITER = r"""
import os, sys, time
node = os.environ["UNDERSTUDY_NODE"]
epoch = os.environ["UNDERSTUDY_EPOCH"]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
with open(os.path.join(sys.argv[2], "%s.%s.%d.pid" % (node, epoch, os.getpid())), "w") as f:
    f.write("%d\n" % os.getpid())
while True:
    os.write(fd, ("%s %s %d\n" % (node, epoch, time.clock_gettime_ns(time.CLOCK_MONOTONIC))).encode())
    time.sleep(0.01)
"""


def _skip_reason():
    return nsagents.skip_reason()


def _binary():
    return nsagents.binary(REPO)


def _now_ns():
    return time.monotonic_ns()


def _pid_alive(pid):
    return pid is not None and pid > 0 and netns._pid_alive(pid)


def _tail(path, n=60):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200_000))
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


class DeathWatch:
    """Records when a process (not our child) exits, via pidfd: an upper bound on its death
    time with microsecond latency, measured on CLOCK_MONOTONIC."""

    def __init__(self, pid):
        self.pid = pid
        self.dead_ns = None
        self._stop = False
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._fd = None
            self.dead_ns = _now_ns()
            return
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        for _ in range(100000):  # bounded: ~100000 * 100 ms
            if self._stop:
                break
            if p.poll(100):
                self.dead_ns = _now_ns()
                break
        os.close(self._fd)

    def close(self):
        self._stop = True
        if self._fd is not None:
            self._t.join(timeout=1)


class Cluster:
    def __init__(self, bed, tmp, binary):
        self.bed = bed
        self.tmp = Path(tmp)
        self.bin = binary
        self.nodes = list(bed.nodes)
        self.agents = {}
        self.logs = {}
        self.events = []
        self.t0 = _now_ns()
        self.shared_log = self.tmp / "shared.log"
        self.piddir = self.tmp / "pids"
        self.piddir.mkdir()
        self.writer = self.tmp / "writer.py"
        self.writer.write_text(WRITER)
        self.shared_log.touch()

    # -- bookkeeping --

    def note(self, msg):
        self.events.append(((_now_ns() - self.t0) / 1e6, msg))

    def timeline(self):
        return "\n".join("%9.1f ms  %s" % (t, m) for t, m in self.events)

    def rel_ms(self, ns):
        return None if ns is None else (ns - self.t0) / 1e6

    def diagnostics(self):
        out = ["==== timeline (ms since cluster start)", self.timeline()]
        for n in self.nodes:
            log = self.logs.get(n, "/nonexistent")
            out += ["==== agent %s log (tail): %s" % (n, log), _tail(log)]
            svc = self.tmp / ("data-" + n) / "logs" / (SERVICE + ".log")
            if svc.exists():
                out += ["==== service log on %s (tail)" % n, _tail(svc, 20)]
        ivs = intervals(self.shared_log)
        out += ["==== shared log intervals (node epoch first_ms last_ms lines)"]
        for (node, epoch), (a, b, c) in ivs:
            out.append("%s %s %.1f %.1f %d" % (node, epoch, self.rel_ms(a), self.rel_ms(b), c))
        return "\n".join(out)

    # -- agents --

    def api(self, n):
        return nsagents.api(self.bed, n)

    def start(self):
        for n in self.nodes:
            cfg = self.tmp / ("%s.conf" % n)
            nsagents.write_node_config(cfg, self.bed, n, "demo", self.tmp / ("data-" + n), nodes=self.nodes)
            self.logs[n] = str(self.tmp / ("agent-%s.log" % n))
            self.agents[n] = nsagents.start_agent(self.bed, n, self.bin, cfg, self.logs[n])
        self.note("agents started: " + ", ".join("%s pid %d" % (n, p.pid) for n, p in self.agents.items()))

    def stop(self):
        """SIGINT every agent (stop now, no hand-over), SIGKILL what is left after a bound; then
        check the logs for sanitizer reports. Returns the list of sanitizer findings."""
        nsagents.stop_procs(list(self.agents.values()), signal.SIGINT, bound=15)
        return nsagents.sanitizer_findings({n: _tail(self.logs[n], 100000) for n in self.nodes})

    def cli(self, where, argv, api_of=None, timeout=30):
        return nsagents.cli(self.bed, where, self.bin, api_of or where, argv, timeout)

    def status(self, n, via=None):
        """Agent n's own view, queried from inside namespace `via` (default: n's own)."""
        return nsagents.status(self.bed, via or n, self.bin, n)

    def wait(self, what, cond, timeout, interval=0.05):
        """Poll cond() (returns a truthy value when done) until timeout; bounded in count too."""
        return nsagents.wait(what, cond, timeout, interval)

    def wait_formed(self):
        def formed():
            return nsagents.formed_leader([self.status(n) for n in self.nodes])

        leader = self.wait("a leader that every agent knows, with quorum", formed, CLUSTER_UP_DEADLINE_S, 0.2)
        self.note("cluster formed, leader %s" % leader)
        return leader

    def apply_service(self, pinned=False):
        """The writer service; with pinned, also one `sleep` service pinned to each node (see
        test_isolated_leader_active_is_fenced_before_failover for why)."""
        svc = self.tmp / "services.ini"
        text = "[service %s]\nrun = exec %s %s %s %s\nstandby = cold\nstandbys = 1\n" % (
            SERVICE,
            sys.executable,
            self.writer,
            self.shared_log,
            self.piddir,
        )
        if pinned:
            for n in self.nodes:
                text += "\n[service pin-%s]\nrun = exec sleep 100000\nnodes = %s\nstandbys = 0\n" % (n, n)
        svc.write_text(text)
        cp = self.cli(netns.CLIENT, ["apply", str(svc)], api_of=self.nodes[0])
        assert cp.returncode == 0, "apply failed: %s %s" % (cp.stdout, cp.stderr)
        self.note("service applied")

    def svc(self, st):
        for s in (st or {}).get("services", []):
            if s["name"] == SERVICE:
                return s
        return None

    def own_instance(self, st, node):
        s = self.svc(st)
        for i in (s or {}).get("instances", []):
            if i["node"] == node:
                return i
        return None

    def active_view(self, via):
        """(leader, active, epoch, has_quorum) from agent `via`, or None."""
        st = self.status(via)
        s = self.svc(st)
        if not s:
            return None
        return st["cluster"]["leader"], s["active"], s["epoch"], st["cluster"]["has_quorum"]

    def wait_active_running(self, timeout=30.0):
        """Wait until every agent agrees on leader and active, the active's own status shows a live
        pid and the shared log has a line of (active, epoch) in the last 300 ms."""

        def ready():
            views = [self.active_view(n) for n in self.nodes]
            if any(v is None for v in views) or len(set(views)) != 1:
                return None
            leader, active, epoch, q = views[0]
            if not active or not q:
                return None
            own = self.own_instance(self.status(active), active)
            if not own or own.get("role") != "active" or not _pid_alive(own.get("pid")):
                return None
            last = last_line_ns(self.shared_log, active, epoch)
            if last is None or _now_ns() - last > 300e6:
                return None
            return leader, active, epoch, own["pid"]

        r = self.wait("the active instance running and writing", ready, timeout, 0.1)
        self.note("steady: leader %s, active %s epoch %d pid %d" % r)
        return r

    def writer_pids(self, node):
        """Writer processes (alive) in node's namespace."""
        out = []
        for pid in self.bed.ns_pids(node):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if str(self.writer).encode() in cmd and _pid_alive(pid):
                out.append(pid)
        return out


# ---- the shared log ----


def read_log(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    for line in data.split(b"\n")[:-1]:  # a last line without '\n' may be half written
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0].decode(), int(parts[1]), int(parts[2])))
    return out


def intervals(path):
    """[((node, epoch), (first_ns, last_ns, lines))] sorted by first line."""
    iv = {}
    for node, epoch, ts in read_log(path):
        a, b, c = iv.get((node, epoch), (ts, ts, 0))
        iv[(node, epoch)] = (min(a, ts), max(b, ts), c + 1)
    return sorted(iv.items(), key=lambda kv: kv[1][0])


def first_line_ns(path, node, epoch):
    for n, e, ts in read_log(path):
        if n == node and e == epoch:
            return ts
    return None


def last_line_ns(path, node, epoch):
    last = None
    for n, e, ts in read_log(path):
        if n == node and e == epoch:
            last = ts if last is None else max(last, ts)
    return last


def check_no_overlap(path, cl):
    """Strict: every (node, epoch) interval ends before the next one starts, and epochs grow."""
    ivs = intervals(path)
    problems = []
    max_end, max_key = None, None
    for key, (first, last, _) in ivs:
        if max_end is not None and first <= max_end:
            problems.append(
                "%s epoch %d starts at %.1f ms while %s epoch %d still wrote until %.1f ms (overlap %.1f ms)"
                % (key + (cl.rel_ms(first),) + max_key + (cl.rel_ms(max_end), (max_end - first) / 1e6))
            )
        if max_key is not None and key[1] <= max_key[1]:
            problems.append("epoch went from %d (%s) to %d (%s)" % (max_key[1], max_key[0], key[1], key[0]))
        if max_end is None or last > max_end:
            max_end, max_key = last, key
    return problems


# ---- fixtures ----


def _ns_cluster(tmp_path, n_nodes):
    why = _skip_reason()
    if why:
        pytest.skip(why)
    binary = _binary()
    assert os.access(binary, os.X_OK), (
        "understudy binary %s not found: run `make build/san/understudy` or set UNDERSTUDY_BIN" % binary
    )
    bed = netns.TestBed(n_nodes)
    cl = None
    try:
        bed.start()
        cl = Cluster(bed, tmp_path, binary)
        cl.start()
        yield cl
    finally:
        findings = cl.stop() if cl else []
        bed.close()
        if cl:
            print("==== timeline (ms since cluster start)\n" + cl.timeline())
            print("agent logs and service output: %s" % tmp_path)
        assert not findings, "sanitizer reports in agent logs: %s\n%s" % (findings, cl.diagnostics())


@pytest.fixture
def ns_cluster(tmp_path):
    yield from _ns_cluster(tmp_path, 3)


@pytest.fixture
def ns_cluster5(tmp_path):
    yield from _ns_cluster(tmp_path, 5)


class diagnostics_on_failure:
    def __init__(self, cl):
        self.cl = cl

    def __enter__(self):
        return self

    def __exit__(self, typ, val, tb):
        if typ is not None:
            print(self.cl.diagnostics())
        return False


# ---- the scenario ----


def arrange_active(cl, leader_active):
    """Start the service; move its active role onto the leader (leader_active) or onto a
    follower. Returns (leader, active, epoch, pid) once it runs and writes."""
    cl.wait_formed()
    cl.apply_service(pinned=leader_active)
    if leader_active:

        def pinned():
            st = cl.status(cl.nodes[0])
            act = {s["name"]: s["active"] for s in (st or {}).get("services", [])}
            return all(act.get("pin-" + n) == n for n in cl.nodes) and act

        act = cl.wait("each pin-NODE service active on its node", pinned, 30, 0.1)
        cl.note("pinned services active: %s" % act)
    leader, active, epoch, pid = cl.wait_active_running()
    for attempt in range(3):
        if (active == leader) == leader_active:
            break
        if leader_active:
            target = leader
        else:
            target = next(n for n in cl.nodes if n not in (leader, active))
        cl.note("switchover %s -> %s (attempt %d)" % (active, target, attempt + 1))
        argv = ["switchover", SERVICE, "--to", target]
        cp = cl.cli(netns.CLIENT, argv, api_of=leader, timeout=60)
        cl.note("switchover exit %d: %s %s" % (cp.returncode, cp.stdout.strip(), cp.stderr.strip()))
        leader, active, epoch, pid = cl.wait_active_running()
    assert (active == leader) == leader_active, "could not make the active (%s) %s the leader (%s)" % (
        active,
        "be" if leader_active else "differ from",
        leader,
    )
    return leader, active, epoch, pid


def isolated_view(cl, node):
    """(time, role, pid, pid alive, cluster) of node's own instance, from inside its namespace."""
    st = cl.status(node)
    t = _now_ns()
    inst = cl.own_instance(st, node)
    if inst is None:
        return None
    pid = inst.get("pid")
    return t, inst.get("role"), pid, _pid_alive(pid), (st or {}).get("cluster")


def partition_active(cl, leader_active):
    """Cut the active node (the leader, or a follower) off from the other two; check fencing and
    failover; heal; check that the cluster converges on the new active."""
    _, old, old_epoch, old_pid = arrange_active(cl, leader_active)
    majority = [n for n in cl.nodes if n != old]
    running = cl.writer_pids(old)
    assert running == [old_pid], "%s processes in %s: %s; status: pid %d" % (SERVICE, old, running, old_pid)
    watch = DeathWatch(old_pid)
    # Until when the isolated node may still act (lease.h): a follower's last renewal was sent
    # before the cut; a leader renews its own lease while a quorum acknowledged it within G.
    lease_ms = LEASE_MS + (GRANT_WINDOW_MS if leader_active else 0)

    t_cut = _now_ns()
    cl.bed.partition([[old], majority])
    lease_end = t_cut + lease_ms * 1_000_000
    checked_after = lease_end + MEASURE_SLACK_MS * 1_000_000

    def ms(ns):
        return (ns - t_cut) / 1e6

    role = "leader" if leader_active else "follower"
    cl.note(
        "partition [%s] | [%s] (client sees all): %s (%s) was active, epoch %d, pid %d"
        % (old, " ".join(majority), old, role, old_epoch, old_pid)
    )

    # Until the majority promotes, watch both sides, the isolated one through its own API.
    views = []
    new = None
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    for _ in range(2000):
        v = isolated_view(cl, old)
        if v:
            views.append(v)
        m = cl.active_view(majority[0])
        if m and m[1] and m[1] != old and m[2] > old_epoch and m[3]:
            new = (m[1], m[2], _now_ns(), m[0])
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert new is not None, "no failover within %.0f s of the partition; majority's view: %r" % (
        FAILOVER_DEADLINE_S,
        cl.active_view(majority[0]),
    )
    new_node, new_epoch, t_promoted, new_leader = new
    cl.note(
        "majority (leader %s) promoted %s epoch %d, seen %+.1f ms from the cut"
        % (new_leader, new_node, new_epoch, ms(t_promoted))
    )
    assert new_node in majority
    if leader_active:
        # The survivors lower their election timeout once the leader, holding an active role, has
        # been silent for suspect_ms, and take turns (agent.c hasten_when_leaderless): the election
        # overlaps the old holder's lease (stale_after, 674 ms) instead of coming on top of it
        # (1-2 s of election timeout, and split votes on ticks in phase: up to 5.9 s seen).
        assert ms(t_promoted) <= LEADER_TAKEOVER_BOUND_MS, (
            "the majority promoted %s %.0f ms after the cut of the leader and active (bound %d ms)"
            % (new_node, ms(t_promoted), LEADER_TAKEOVER_BOUND_MS)
        )

    first_new = cl.wait(
        "the first line of %s epoch %d" % (new_node, new_epoch),
        lambda: first_line_ns(cl.shared_log, new_node, new_epoch),
        FAILOVER_DEADLINE_S,
        0.02,
    )
    cl.note("first line of %s epoch %d at %+.1f ms from the cut" % (new_node, new_epoch, ms(first_new)))

    # Observation window: the partition stays 1.5 s longer; the isolated side must stay quiet.
    t_hold = time.monotonic() + 1.5
    for _ in range(200):
        if time.monotonic() > t_hold:
            break
        v = isolated_view(cl, old)
        if v:
            views.append(v)
        time.sleep(0.05)
    stray = cl.writer_pids(old)
    late_lines = [ts for n, e, ts in read_log(cl.shared_log) if n == old and ts > checked_after]
    watch.close()

    dead = watch.dead_ns
    seen = "never" if dead is None else "%+.1f ms" % ms(dead)
    cl.note("pid %d exit seen: %s from the cut" % (old_pid, seen))
    last_old = last_line_ns(cl.shared_log, old, old_epoch)
    cl.note("last line of %s epoch %d at %+.1f ms from the cut" % (old, old_epoch, ms(last_old)))
    late = [v for v in views if v[0] > checked_after]
    if late:
        t, r, p, alive, c = late[0]
        cl.note("isolated view at %+.1f ms: role %s pid %s (alive %s), cluster %s" % (ms(t), r, p, alive, c))

    # Fenced before the failover, in process time and in the log.
    assert dead is not None, "the isolated instance (pid %d on %s) never exited" % (old_pid, old)
    assert dead < first_new, (
        "overlap: the isolated instance (pid %d on %s) exited at %+.1f ms from the cut, but %s epoch %d "
        "wrote its first line at %+.1f ms" % (old_pid, old, ms(dead), new_node, new_epoch, ms(first_new))
    )
    assert last_old < first_new, "log overlap: %s epoch %d wrote at %+.1f ms, %s epoch %d from %+.1f ms" % (
        old,
        old_epoch,
        ms(last_old),
        new_node,
        new_epoch,
        ms(first_new),
    )
    # Gone by the end of its lease.
    assert dead <= checked_after, (
        "the isolated instance lived until %+.1f ms from the cut; its lease (%d ms) had run out "
        "(measurement allowance %d ms)" % (ms(dead), lease_ms, MEASURE_SLACK_MS)
    )
    # The isolated agent's own view never shows a live instance after the lease.
    assert late, "the isolated agent %s did not answer its status after its lease ran out" % old
    bad = [(round(ms(t), 1), r, p) for t, r, p, alive, _ in late if alive]
    assert not bad, "%s showed a live instance after its lease ran out: (ms, role, pid) %s" % (old, bad)
    assert not stray, "service processes still running in the isolated namespace of %s: %s" % (old, stray)
    assert not late_lines, "%s wrote %d line(s) after its lease ran out" % (old, len(late_lines))

    # Heal; every agent must agree on the new active, the old node standby or stopped.
    cl.bed.heal()
    t_heal = _now_ns()
    cl.note("healed")

    def converged():
        views = {}
        for n in cl.nodes:
            st = cl.status(n)
            s = cl.svc(st)
            if not s or not st["cluster"]["has_quorum"]:
                return None
            views[n] = (st["cluster"]["leader"], s["active"], s["epoch"])
        if len(set(views.values())) != 1:
            return None
        leader_now, act, ep = next(iter(views.values()))
        if not act or act == old or ep < new_epoch:
            return None
        in_leader = cl.own_instance(cl.status(leader_now), old)
        in_own = cl.own_instance(cl.status(old), old)
        if not in_leader or in_leader["role"] not in ("standby", "stopped"):
            return None
        if not in_own or in_own["role"] not in ("standby", "stopped") or _pid_alive(in_own.get("pid")):
            return None
        running = {n: cl.writer_pids(n) for n in cl.nodes}
        if sum(len(v) for v in running.values()) != 1 or len(running[act]) != 1:
            return None
        return leader_now, act, ep, in_leader["role"], running

    what = "every agent agreeing on one active, %s standby/stopped, one service process" % old
    leader_now, act, ep, old_role, running = cl.wait(what, converged, HEAL_DEADLINE_S, 0.1)
    cl.note(
        "converged %.1f ms after healing: leader %s, active %s epoch %d, %s %s, processes %s"
        % ((_now_ns() - t_heal) / 1e6, leader_now, act, ep, old, old_role, running)
    )
    assert (act, ep) == (new_node, new_epoch), "healing moved the role: %s epoch %d -> %s epoch %d" % (
        new_node,
        new_epoch,
        act,
        ep,
    )

    # Observation window: for a second only the new active writes; no overlap in the whole log.
    t_end = _now_ns()
    time.sleep(1.0)
    after = {(n, e) for n, e, ts in read_log(cl.shared_log) if ts > t_end}
    assert after == {(new_node, new_epoch)}, "writers after healing: %s" % sorted(after)
    problems = check_no_overlap(cl.shared_log, cl)
    assert not problems, "overlapping actives in the shared log:\n" + "\n".join(problems)


def test_isolated_follower_active_is_fenced_before_failover(ns_cluster):
    with diagnostics_on_failure(ns_cluster):
        partition_active(ns_cluster, leader_active=False)


def test_isolated_leader_active_is_fenced_before_failover(ns_cluster):
    # The leader hands leadership to a voter holding no active role (controller.c,
    # leadership_away_from_actives), so a leader that is also active exists only while every
    # other voter is active for some service: one service pinned to each node provides that.
    with diagnostics_on_failure(ns_cluster):
        partition_active(ns_cluster, leader_active=True)


# A bridge partition lasts this long before the switchover: several times stale_after (674 ms),
# the time the leader took to revoke the active and, before the fix, to renew its role.
BRIDGE_HOLD_S = 3.0
# A gap in the active's 10 ms lines longer than this is a disruption (the chaos checker's bound).
DISRUPTION_MS = 300
SWITCHOVER_BOUND_S = 5.0


def test_bridge_partition_active_cut_from_leader(ns_cluster):
    """The active cut off from the Raft leader alone, the third node still reaching both (a
    bridge partition; found by the chaos suite, issue 11).
    1. Nothing is wrong with the active: it renews its lease through the bridge and runs on,
       without a pause, under the same epoch. (The leader revoked it, being cut from it, and
       used to renew its role for it: a change it could not apply, so the bridge's grants stopped
       counting and its instance stopped. lease.h, us_lease_renewal_due's heard_ms.)
    2. A switchover to the bridge, which the active cannot apply either, completes within a bound:
       the bridge refuses the active's renewals while it lags its roles (us_lease_lags), reports
       it stale like a silent node, and the leader moves the role after the lease. Before, the
       bridge kept granting and the role stayed with the stopped active until the partition
       healed. No overlap throughout; after healing, one active and one process."""
    cl = ns_cluster
    with diagnostics_on_failure(cl):
        leader, act, epoch, pid = arrange_active(cl, leader_active=False)
        bridge = next(n for n in cl.nodes if n not in (leader, act))
        t_cut = _now_ns()
        cl.bed.cut(act, leader)
        cl.note("cut %s (active, epoch %d) from %s (leader); %s bridges" % (act, epoch, leader, bridge))

        # 1. An observation window: the active must keep writing all along.
        t_hold = time.monotonic() + BRIDGE_HOLD_S
        for _ in range(400):
            if time.monotonic() > t_hold:
                break
            time.sleep(0.05)
        t_obs = _now_ns()
        lines = sorted(ts for n, e, ts in read_log(cl.shared_log) if (n, e) == (act, epoch) and t_cut <= ts <= t_obs)
        others = sorted({(n, e) for n, e, ts in read_log(cl.shared_log) if ts >= t_cut and (n, e) != (act, epoch)})
        assert lines, "%s epoch %d wrote nothing after the cut" % (act, epoch)
        edges = [t_cut] + lines + [t_obs]
        gap = max(b - a for a, b in zip(edges, edges[1:])) / 1e6
        cl.note("bridged for %.0f ms: %d lines of %s epoch %d, longest gap %.1f ms" % ((t_obs - t_cut) / 1e6, len(lines), act, epoch, gap))
        assert not others, "other writers while bridged: %s" % others
        assert gap <= DISRUPTION_MS, "the active paused %.1f ms while bridged (bound %d ms)" % (gap, DISRUPTION_MS)
        assert _pid_alive(pid), "the active's process (pid %d) is gone" % pid

        # 2. A change to the active's roles that it cannot apply.
        t_sw = _now_ns()
        cp = cl.cli(netns.CLIENT, ["switchover", SERVICE, "--to", bridge], api_of=leader, timeout=40)
        t_done = _now_ns()
        cl.note("switchover --to %s: exit %d in %.0f ms: %s" % (bridge, cp.returncode, (t_done - t_sw) / 1e6, (cp.stdout + cp.stderr).strip()))
        assert cp.returncode == 0, "switchover to %s failed while bridged: %s %s" % (bridge, cp.stdout, cp.stderr)

        def new_writer():
            for n, e, ts in read_log(cl.shared_log):
                if n == bridge and e > epoch:
                    return e, ts
            return None

        new_epoch, first_new = cl.wait("%s writing under a new epoch" % bridge, new_writer, FAILOVER_DEADLINE_S, 0.02)
        took = (first_new - t_sw) / 1e6
        cl.note("first line of %s epoch %d %.0f ms after the switchover request" % (bridge, new_epoch, took))
        assert took <= SWITCHOVER_BOUND_S * 1000, "the switchover took %.0f ms while bridged (bound %.0f s)" % (took, SWITCHOVER_BOUND_S)
        last_old = last_line_ns(cl.shared_log, act, epoch)
        assert last_old < first_new, "overlap: %s epoch %d wrote until %.1f ms, %s epoch %d from %.1f ms" % (
            act, epoch, cl.rel_ms(last_old), bridge, new_epoch, cl.rel_ms(first_new))

        # Why the old active stopped, in its log (agent.c log_lease_short): its lease ran short and
        # the line names each other voter's latest grant and its age: the leader's from before the
        # cut, the bridge's from about when it applied the switchover.
        pat = re.compile(r"lease: (-?\d+) ms left \(applied v(\d+), this tick (-?\d+) ms late\); latest grants:(.*)$")
        short = [m for m in (pat.search(line) for line in Path(cl.logs[act]).read_text(errors="replace").splitlines()) if m]
        assert short, "%s logged no lease-short line after the switchover" % act
        grants = dict((n, int(age)) for n, age in re.findall(r" (n\d): (-?\d+) ms ago at v\d+", short[-1].group(4)))
        cl.note("%s's lease-short line: %s" % (act, short[-1].group(0)))
        assert set(grants) == {leader, bridge}, "the lease-short line names %s, not the voters %s and %s" % (sorted(grants), leader, bridge)
        assert grants[leader] >= BRIDGE_HOLD_S * 1000, "the leader's grant is %d ms old, cut %.0f s before" % (grants[leader], BRIDGE_HOLD_S)
        assert 0 <= grants[bridge] < grants[leader], "the bridge's grant (%d ms) is not the fresher one" % grants[bridge]

        # Heal: every agent agrees on the bridge as the active, one process runs.
        cl.bed.heal()
        t_heal = _now_ns()
        cl.note("healed")

        def converged():
            views = {n: cl.active_view(n) for n in cl.nodes}
            if any(v is None for v in views.values()) or len(set(views.values())) != 1:
                return None
            _, a, e, q = next(iter(views.values()))
            if (a, e) != (bridge, new_epoch) or not q:
                return None
            running = {n: cl.writer_pids(n) for n in cl.nodes}
            if sum(len(v) for v in running.values()) != 1 or len(running[bridge]) != 1:
                return None
            return running

        running = cl.wait("one active (%s epoch %d) and one process after healing" % (bridge, new_epoch), converged, HEAL_DEADLINE_S, 0.1)
        cl.note("converged %.0f ms after healing: %s" % ((_now_ns() - t_heal) / 1e6, running))
        problems = check_no_overlap(cl.shared_log, cl)
        assert not problems, "overlapping actives in the shared log:\n" + "\n".join(problems)


# The leader steps down with its followers' election timers fresh: they used to wait 1-2 election
# timeouts (1,000-2,000 ms from its last heartbeat) before electing another; now they see its pings
# come without the commit index a leader sends and elect at once, in turns (agent.c,
# hasten_when_leaderless): 300-700 ms with two followers.
STEP_DOWN_ELECTION_BOUND_MS = 900
LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ")


def _log_times(path, text):
    """Seconds of the day (agent log time stamps) of the lines of `path` that contain `text`."""
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        m = LOG_TIME.match(line)
        if m and text in line:
            h, mi, sec, ms = (int(x) for x in m.groups())
            out.append(h * 3600 + mi * 60 + sec + ms / 1000.0)
    return out


def _after(t, ref):
    """t - ref in seconds, across midnight."""
    d = t - ref
    return d + 86400 if d < -43200 else d


def _revoked(cl, node):
    try:
        text = (cl.tmp / ("data-" + node) / "revoked").read_text()
    except OSError:
        return set()
    return {line.split()[0] for line in text.splitlines() if line.split()}


def test_leader_steps_down_while_heard(ns_cluster):
    """The Raft leader loses its quorum's answers and steps down, while it is heard and its
    followers' election timers are fresh (found by the chaos suite, issue 11: a leader cut off for
    longer than stale_after revoked the active; its Raft connections came back too late, it
    stepped down, and the followers took 1.8 s to elect another. Only a leader's renewal lifts a
    revocation, so all that time the active rested on the third node alone, and a partition of
    that node took it down).
    1. The leader, cut from the active for longer than stale_after, revokes it.
    2. The cut heals but the leader gets no Raft answers (TCP to its Raft port dropped): libraft
       steps it down after an election timeout. Its pings say so (no commit index), and the
       followers elect another leader within STEP_DOWN_ELECTION_BOUND_MS of the step-down.
    3. The new leader renews the active's role; the old leader lifts its revocation.
    4. The third node cut off: the active renews with the old leader and runs on, no pause."""
    cl = ns_cluster
    with diagnostics_on_failure(cl):
        leader, act, epoch, pid = arrange_active(cl, leader_active=False)
        third = next(n for n in cl.nodes if n not in (leader, act))

        cl.bed.cut(leader, act)
        cl.note("cut %s (leader) from %s (active, epoch %d)" % (leader, act, epoch))
        cl.wait("%s to revoke %s" % (leader, act), lambda: act in _revoked(cl, leader), 5, 0.02)
        cl.note("%s revoked %s" % (leader, act))

        before = len(_log_times(cl.logs[leader], "no longer leader"))
        cl.bed.block_tcp_in(leader, RAFT_PORT)
        cl.bed.partition([cl.nodes])  # the cut ends; the Raft answers to the leader stay dropped
        cl.note("cut healed; TCP to %s:%d dropped" % (leader, RAFT_PORT))
        down = cl.wait("%s to step down" % leader,
                       lambda: _log_times(cl.logs[leader], "no longer leader")[before:], 10, 0.02)
        cl.bed.block_tcp_in(leader, RAFT_PORT, on=False)
        t_down = down[0]
        cl.note("%s stepped down (log time %.3f); TCP to it allowed again" % (leader, t_down))

        def elected():  # the old leader may win too, once its Raft port answers again
            for n in (act, third, leader):
                ts = [t for t in _log_times(cl.logs[n], "became leader in term") if _after(t, t_down) >= 0]
                if ts:
                    return n, ts[0]
            return None

        new, t_new = cl.wait("another leader", elected, 10, 0.02)
        took = _after(t_new, t_down) * 1000
        told = [n for n in (act, third) if any(_after(t, t_down) >= 0 for t in _log_times(cl.logs[n], "says it no longer leads"))]
        cl.note("%s became leader %.0f ms after the step-down; followers that saw it: %s" % (new, took, told))
        assert told, "no follower noticed that %s stepped down" % leader
        assert took <= STEP_DOWN_ELECTION_BOUND_MS, "the election after the step-down took %.0f ms (bound %d)" % (
            took, STEP_DOWN_ELECTION_BOUND_MS)

        cl.wait("%s to lift its revocation of %s" % (leader, act), lambda: act not in _revoked(cl, leader), 10, 0.02)
        cl.note("%s lifted its revocation of %s" % (leader, act))

        t_cut = _now_ns()
        cl.bed.partition([[leader, act], [third]])
        cl.note("%s cut off" % third)
        t_hold = time.monotonic() + 2.0
        for _ in range(100):
            if time.monotonic() > t_hold:
                break
            time.sleep(0.05)
        t_obs = _now_ns()
        cl.bed.heal()
        lines = sorted(ts for n, e, ts in read_log(cl.shared_log) if (n, e) == (act, epoch) and t_cut <= ts <= t_obs)
        others = sorted({(n, e) for n, e, ts in read_log(cl.shared_log) if ts >= t_cut and (n, e) != (act, epoch)})
        edges = [t_cut] + lines + [t_obs]
        gap = max(b - a for a, b in zip(edges, edges[1:])) / 1e6
        cl.note("%s cut off for %.0f ms: %d lines of %s epoch %d, longest gap %.1f ms" % (
            third, (t_obs - t_cut) / 1e6, len(lines), act, epoch, gap))
        assert not others, "other writers while %s was cut off: %s" % (third, others)
        assert gap <= DISRUPTION_MS, "the active paused %.1f ms while %s was cut off (bound %d ms)" % (gap, third, DISRUPTION_MS)
        problems = check_no_overlap(cl.shared_log, cl)
        assert not problems, "overlapping actives in the shared log:\n" + "\n".join(problems)


# Loss on the one voter left to the active: each way, and how long it lasts.
LOSSY_VOTER_PCT = 30
LOSSY_HOLD_S = 8.0


def _metric(cl, node, name):
    """A sample of agent node's /metrics (no token needed), asked inside its namespace."""
    url = "http://%s:%d/metrics" % (cl.bed.ip[node], nsagents.API_PORT)
    code = "import urllib.request; print(urllib.request.urlopen(%r, timeout=5).read().decode())" % url
    cp = cl.bed.run(node, [sys.executable, "-c", code], timeout=20)
    assert cp.returncode == 0, "GET /metrics on %s: %s" % (node, cp.stderr.strip())
    for line in cp.stdout.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("%s not in the metrics of %s" % (name, node))


def test_lossy_last_voter_costs_the_active_nothing(ns_cluster):
    """The third node cut off and 30 % loss each way on the only voter left to the active
    (found by the chaos suite, issue 11: at 20 % loss, all four renewal exchanges of a 400-ms
    window were lost 1.7 % of the time, and the active stopped and was placed again under a new
    epoch). Each renewal whose grant has not come back is asked again within the heartbeat
    (lease.h us_lease_reask): at 30 %, one request per heartbeat would lose a window 6.8 % of the
    time (over 8 s, 20 windows: a pause 3 runs in 4); asked up to four times, 2e-5. The active
    must run on without a pause or a new epoch, and its agent must have asked again."""
    cl = ns_cluster
    with diagnostics_on_failure(cl):
        leader, act, epoch, pid = arrange_active(cl, leader_active=False)
        third = next(n for n in cl.nodes if n not in (leader, act))
        reasked0 = _metric(cl, act, "understudy_lease_renewals_reasked_total")
        t_cut = _now_ns()
        cl.bed.partition([[leader, act], [third]])
        cl.bed.loss(leader, LOSSY_VOTER_PCT)
        cl.note("%s cut off, %d%% loss on %s (leader); %s active, epoch %d" % (
            third, LOSSY_VOTER_PCT, leader, act, epoch))
        t_hold = time.monotonic() + LOSSY_HOLD_S
        for _ in range(400):
            if time.monotonic() > t_hold:
                break
            time.sleep(0.05)
        t_obs = _now_ns()
        cl.bed.loss(leader, 0)
        cl.bed.heal()
        reasked = _metric(cl, act, "understudy_lease_renewals_reasked_total") - reasked0
        lines = sorted(ts for n, e, ts in read_log(cl.shared_log) if (n, e) == (act, epoch) and t_cut <= ts <= t_obs)
        others = sorted({(n, e) for n, e, ts in read_log(cl.shared_log) if ts >= t_cut and (n, e) != (act, epoch)})
        edges = [t_cut] + lines + [t_obs]
        gap = max(b - a for a, b in zip(edges, edges[1:])) / 1e6
        cl.note("%.0f ms: %d lines of %s epoch %d, longest gap %.1f ms; %d renewals asked again" % (
            (t_obs - t_cut) / 1e6, len(lines), act, epoch, gap, reasked))
        assert not others, "other writers meanwhile: %s" % others
        assert gap <= DISRUPTION_MS, "the active paused %.1f ms (bound %d ms)" % (gap, DISRUPTION_MS)
        assert reasked > 0, "%s asked no renewal again under %d%% loss" % (act, LOSSY_VOTER_PCT)
        problems = check_no_overlap(cl.shared_log, cl)
        assert not problems, "overlapping actives in the shared log:\n" + "\n".join(problems)


def test_leader_and_active_on_the_minority_side(ns_cluster5):
    """5 voters; the Raft leader and the active (another node) cut off together from the other
    three. The majority needs a leader before it can move the role: its voters lower their
    election timeout once the leader has been silent for suspect_ms while a silent node holds an
    active role (agent.c hasten_when_leaderless), so the election ends before the active's lease
    (stale_after) and the takeover costs about what an active cut off alone costs. Before, the
    configured election (1-2 s from the last contact) came first."""
    cl = ns_cluster5
    with diagnostics_on_failure(cl):
        leader, act, epoch, pid = arrange_active(cl, leader_active=False)
        minority = [leader, act]
        majority = [n for n in cl.nodes if n not in minority]
        watch = DeathWatch(pid)
        t_cut = _now_ns()
        cl.bed.partition([minority, majority])
        cl.note("partition [%s] | [%s]: %s leads, %s active (epoch %d)" % (" ".join(minority), " ".join(majority), leader, act, epoch))

        def promoted():
            m = cl.active_view(majority[0])
            if m and m[1] in majority and m[2] > epoch and m[3] and m[0] in majority:
                return m
            return None

        new_leader, new_node, new_epoch, _ = cl.wait("the majority's promotion", promoted, FAILOVER_DEADLINE_S, 0.02)
        took = (_now_ns() - t_cut) / 1e6
        cl.note("majority (leader %s) promoted %s epoch %d, seen %+.1f ms from the cut" % (new_leader, new_node, new_epoch, took))
        first_new = cl.wait("the first line of %s epoch %d" % (new_node, new_epoch),
                            lambda: first_line_ns(cl.shared_log, new_node, new_epoch), FAILOVER_DEADLINE_S, 0.02)
        watch.close()
        assert watch.dead_ns is not None and watch.dead_ns < first_new, "the old active (pid %d) did not exit before %s epoch %d wrote" % (pid, new_node, new_epoch)
        assert took <= LEADER_TAKEOVER_BOUND_MS, "the majority promoted %s %.0f ms after the cut (bound %d ms)" % (new_node, took, LEADER_TAKEOVER_BOUND_MS)
        cl.bed.heal()
        cl.note("healed")
        problems = check_no_overlap(cl.shared_log, cl)
        assert not problems, "overlapping actives in the shared log:\n" + "\n".join(problems)
