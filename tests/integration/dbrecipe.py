"""The fault loop that proves a database recipe of examples/ (issue 12) with its real servers in
network namespaces: test_redis.py and test_postgresql.py describe their recipe with a Recipe and
call run_faults().

Three agents (nsharness.py), the recipe's services file with its scripts copied into a directory of
the test, the VIP in front. A client (the recipe's writer: redis_writer.py, pg_writer.py, the same
commands and output) writes through the VIP without pause, counting the writes the server
acknowledged, across four faults in turn: kill -9 of the active's agent, kill -9 of the database
server on the active, link down of the active's node, and a planned switchover. After each one:
  - a standby took over (a new epoch), the VIP leads to it, and it is the primary;
  - every write the client saw acknowledged is on it;
  - the former primary comes back as a replica of the new one, follows it, and has them too.
"""

import dataclasses
import json
import os
import shutil
import signal
import time
from typing import Callable, Optional

import nsharness as H

FAULTS = ("kill9-agent", "kill9-server", "link-down", "switchover")
TAKEOVER_S = 20


@dataclasses.dataclass
class Recipe:
    service: str  # the service's name in the recipe's services file
    directory: str  # examples/<directory>
    writer: str  # path of its client
    server_pid: Callable  # (harness, node, recipe) -> pid of the server process in the node, or None
    rejoin_s: float = 40  # a former primary back as a replica holding everything
    settle_s: float = 60  # first placement, every standby following
    edit: Optional[Callable] = None  # (services text, installed dir) -> services text
    dest_root: Optional[str] = None  # where to copy the scripts (default: the test's directory)
    # a standby counts as having the data once this holds (e.g. its server answers)
    ready: Optional[Callable] = None


def copy_recipe(directory, dest_root, edit=None):
    """examples/<directory> copied to dest_root/<directory>-recipe; returns the text of its
    services file pointing there, with the harness' VIP, passed through edit(text, dest). Needs
    no harness (bench/pg-failover.py installs the postgresql recipe with it)."""
    src = H.REPO / "examples" / directory
    dest = os.path.join(dest_root, directory + "-recipe")
    shutil.copytree(src, dest)
    text = (src / (directory + ".services")).read_text().replace("/usr/local/lib/understudy/" + directory, dest)
    text = text.replace("198.18.0.200/24", "%s/%d" % (H.VIP, H.VIP_PREFIX))
    return edit(text, dest) if edit else text


def install(h, r):
    """The recipe's scripts copied under the test's directory (or r.dest_root), and its services
    file pointing there, with the harness' VIP."""
    return copy_recipe(r.directory, r.dest_root or str(h.tmp), r.edit)


def client(h, r, *argv, timeout=60):
    return H.nsagents.json_or_none(h.bed.run(H.netns.CLIENT, [H.PYTHON, r.writer] + list(argv), timeout=timeout))


def state(h, r, via, full=False):
    """(active, epoch, {node: instance}) as `via` sees the service; with full, the service's whole
    status object too (last)."""
    st = h.status(via)
    s = H.Harness.svc(st, r.service) if st else None
    if not s:
        return (None, 0, {}, {}) if full else (None, 0, {})
    out = (s.get("active"), s.get("epoch") or 0, {i["node"]: i for i in s.get("instances", [])})
    return out + (s,) if full else out


def settled(h, r, via, exclude=()):
    """An active whose server answers as the primary on the VIP, and every other node a standby
    following it with its server running."""
    active, epoch, inst, svc = state(h, r, via, full=True)
    if not active or active in exclude:
        return None
    sync = svc.get("synchronous")
    if sync and not sync.get("standbys"):
        return None  # nobody promotable yet: a fault now would leave the service down
    others = [n for n in h.nodes if n != active]
    if any(not inst.get(n) or inst[n]["following"] is not True or not inst[n]["pid"] for n in others):
        return None
    info = client(h, r, "info", "--host", H.VIP, timeout=10)
    if not info or info.get("role") != "master":
        return None
    return active, epoch


def comm_pid(h, n, comm):
    """The lowest pid in node n's namespace whose command is `comm` (the first one started)."""
    for pid in sorted(h.bed.ns_pids(n)):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == comm:
                    return pid
        except OSError:
            continue
    return None


def place(h, r):
    """Agents formed, the recipe applied, an active and every standby following: (active, epoch)."""
    h.start_agents()
    h.wait_formed()
    h.apply_ok(install(h, r))
    active, epoch = h.wait("%s placed, both standbys following" % r.service, lambda: settled(h, r, h.nodes[0]),
                           r.settle_s, 0.2)
    h.note("%s active on %s, epoch %d" % (r.service, active, epoch))
    return active, epoch


def start_writer(h, r, tag, seconds=8):
    """The recipe's writer through the VIP, from the client namespace: (process, acked file, stats
    file), once it has 50 acknowledged writes."""
    acked = h.tmp / ("acked-%s.txt" % tag)
    out = h.tmp / ("writer-%s.json" % tag)
    with open(out, "w") as f:
        writer = h.bed.popen(H.netns.CLIENT, [H.PYTHON, r.writer, "write", "--host", H.VIP, "--out", str(acked),
                                              "--seconds", str(seconds), "--tag", tag], label="writer", stdout=f)

    def acked_lines():
        try:
            return len(acked.read_text().split())
        except OSError:
            return 0
    h.wait("the writer's first 50 acknowledged writes", lambda: acked_lines() >= 50, 15, 0.05)
    return writer, acked, out


def holds_acked(h, r, node, acked, tag, role):
    """node's server, as `role` ("master"/"slave"), holding every write in acked; the check's JSON."""
    c = client(h, r, "check", "--host", h.bed.ip[node], "--acked", str(acked), "--tag", tag, timeout=20)
    return c and c["role"] == role and c["n_missing"] == 0 and c


def run_faults(h, r, faults=FAULTS):
    active, epoch = place(h, r)

    for fault in faults:
        observer = next(n for n in h.nodes if n != active)
        writer, acked, out = start_writer(h, r, fault)
        t0 = time.monotonic()
        if fault == "kill9-agent":
            h.kill9_agent(active)
        elif fault == "kill9-server":
            pid = r.server_pid(h, active, r)
            assert pid, "no server process of %s in %s" % (r.service, active)
            os.kill(pid, signal.SIGKILL)
            h.note("kill -9 of the server (pid %d) on %s" % (pid, active))
        elif fault == "link-down":
            h.bed.link_down(active)
            h.note("link of %s down" % active)
        else:
            # With a synchronous set only a member may take over by plan (R13).
            sync = ((H.Harness.svc(h.status(observer), r.service) or {}).get("synchronous") or {}).get("standbys")
            to = sync[0] if sync else next((n for n in h.nodes if n not in (active, observer)), observer)
            cp = h.cli(H.netns.CLIENT, ["switchover", r.service, "--to", to], api_of=observer, timeout=90)
            h.note("switchover %s --to %s: exit %d %s" % (r.service, to, cp.returncode,
                                                          (cp.stdout + cp.stderr).strip()))
            assert cp.returncode == 0, cp.stdout + cp.stderr

        def taken_over():
            a, e, _ = state(h, r, observer)
            return a and a != active and e > epoch and (a, e)
        new, new_epoch = h.wait("%s: a standby takes over from %s" % (fault, active), taken_over, TAKEOVER_S, 0.05)
        h.note("%s: %s active under epoch %d, %.0f ms after the fault" % (fault, new, new_epoch,
                                                                         (time.monotonic() - t0) * 1000))
        if fault == "link-down":
            time.sleep(1.0)
            h.bed.link_up(active)
            h.note("link of %s up" % active)
        writer.wait(timeout=30)
        stats = json.loads(out.read_text() or "{}")
        h.note("%s: writer %s" % (fault, stats))
        if fault == "kill9-agent":
            h.start_agent(active)

        a, e = h.wait("%s: %s primary behind the VIP, every standby following it" % (fault, new),
                      lambda: settled(h, r, new), r.rejoin_s, 0.2)
        assert (a, e) == (new, new_epoch), "the active moved again after %s: %s epoch %d" % (fault, a, e)
        on_new = client(h, r, "check", "--host", H.VIP, "--acked", str(acked), "--tag", fault)
        assert on_new and on_new["role"] == "master", on_new
        assert on_new["n_missing"] == 0, "%s: acknowledged writes missing on the new primary %s: %s" % (
            fault, new, on_new)

        c = h.wait("%s: the former primary %s a replica holding every acknowledged write" % (fault, active),
                   lambda: holds_acked(h, r, active, acked, fault, "slave"), r.rejoin_s, 0.5)
        h.note("%s: %d acknowledged writes on %s (primary) and %s (replica)" % (fault, c["acked"], new, active))
        assert stats.get("acked", 0) >= 50
        active, epoch = new, new_epoch
