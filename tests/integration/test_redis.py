"""The redis recipe (examples/redis, issue 12) with real redis-servers in network namespaces.

Three agents (tests/integration/nsharness.py), the recipe's services file with the scripts copied
into the test's directory, the VIP in front. A client (redis_writer.py) writes through the VIP
without pause, confirming each write with WAIT 1, across four faults in turn: kill -9 of the
active's agent, kill -9 of the redis-server on the active, link down of the active's node, and a
planned switchover. After each one:
  - a standby took over (a new epoch), the VIP leads to it, and it is the primary;
  - every write the client saw acknowledged is on it;
  - the former primary comes back as a replica of the new one, follows it, and has them too.
Skipped only without root, `ip netns` or redis-server (scripts/setup-databases.sh installs it).
"""

import json
import os
import shutil
import signal
import time

import pytest

import nsharness as H

REPO = H.REPO
RECIPE = REPO / "examples" / "redis"
WRITER = str(H.HERE / "redis_writer.py")
INSTALLED = "/usr/local/lib/understudy/redis"
TAKEOVER_S = 20
REJOIN_S = 40


@pytest.fixture
def nsh(request, tmp_path):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("redis-server/redis-cli not installed (scripts/setup-databases.sh)")
    yield from H.harness(request, tmp_path)


def recipe(h):
    """The recipe's scripts copied under the test's directory, and its services file pointing
    there, with the harness' VIP."""
    dest = h.tmp / "redis-recipe"
    shutil.copytree(RECIPE, dest)
    text = (RECIPE / "redis.services").read_text().replace(INSTALLED, str(dest))
    return text.replace("198.18.0.200/24", "%s/%d" % (H.VIP, H.VIP_PREFIX))


def client(h, *argv, timeout=60):
    cp = h.bed.run(H.netns.CLIENT, [H.PYTHON, WRITER] + list(argv), timeout=timeout)
    if cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)
    except ValueError:
        return None


def state(h, via):
    """(active, epoch, {node: instance}) as `via` sees the service."""
    st = h.status(via)
    s = H.Harness.svc(st, "redis") if st else None
    if not s:
        return None, 0, {}
    return s.get("active"), s.get("epoch") or 0, {i["node"]: i for i in s.get("instances", [])}


def settled(h, via, exclude=()):
    """An active whose redis answers as the primary on the VIP, and every other node a standby
    following it with its server running."""
    active, epoch, inst = state(h, via)
    if not active or active in exclude:
        return None
    others = [n for n in h.nodes if n != active]
    if any(not inst.get(n) or inst[n]["following"] is not True or not inst[n]["pid"] for n in others):
        return None
    info = client(h, "info", "--host", H.VIP, timeout=10)
    if not info or info.get("role") != "master":
        return None
    return active, epoch


def redis_pid(h, n):
    for pid in h.bed.ns_pids(n):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "redis-server":
                    return pid
        except OSError:
            continue
    return None


def test_redis_recipe_loses_no_acknowledged_write(nsh):
    h = nsh
    h.start_agents()
    h.wait_formed()
    h.apply_ok(recipe(h))
    active, epoch = h.wait("redis placed, both standbys following", lambda: settled(h, h.nodes[0]), 60, 0.2)
    h.note("redis active on %s, epoch %d" % (active, epoch))

    for fault in ("kill9-agent", "kill9-redis", "link-down", "switchover"):
        observer = next(n for n in h.nodes if n != active)
        acked = h.tmp / ("acked-%s.txt" % fault)
        out = h.tmp / ("writer-%s.json" % fault)
        with open(out, "w") as f:
            writer = h.bed.popen(H.netns.CLIENT, [H.PYTHON, WRITER, "write", "--host", H.VIP, "--out", str(acked),
                                                  "--seconds", "8"], label="writer", stdout=f)

        def acked_lines():
            try:
                return len(acked.read_text().split())
            except OSError:
                return 0
        h.wait("the writer's first 50 acknowledged writes", lambda: acked_lines() >= 50, 15, 0.05)
        t0 = time.monotonic()
        if fault == "kill9-agent":
            h.kill9_agent(active)
        elif fault == "kill9-redis":
            pid = redis_pid(h, active)
            assert pid, "no redis-server in %s" % active
            os.kill(pid, signal.SIGKILL)
            h.note("kill -9 of redis-server (pid %d) on %s" % (pid, active))
        elif fault == "link-down":
            h.bed.link_down(active)
            h.note("link of %s down" % active)
        else:
            to = next(n for n in h.nodes if n not in (active, observer)) if len(h.nodes) > 2 else observer
            cp = h.cli(H.netns.CLIENT, ["switchover", "redis", "--to", to], api_of=observer, timeout=60)
            h.note("switchover redis --to %s: exit %d %s" % (to, cp.returncode, (cp.stdout + cp.stderr).strip()))
            assert cp.returncode == 0, cp.stdout + cp.stderr

        def taken_over():
            a, e, _ = state(h, observer)
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
                      lambda: settled(h, new), REJOIN_S, 0.2)
        assert (a, e) == (new, new_epoch), "the active moved again after %s: %s epoch %d" % (fault, a, e)
        on_new = client(h, "check", "--host", H.VIP, "--acked", str(acked))
        assert on_new and on_new["role"] == "master", on_new
        assert on_new["n_missing"] == 0, "%s: acknowledged writes missing on the new primary %s: %s" % (
            fault, new, on_new)

        def old_caught_up():
            r = client(h, "check", "--host", h.bed.ip[active], "--acked", str(acked), timeout=20)
            return r and r["role"] == "slave" and r["n_missing"] == 0 and r
        r = h.wait("%s: the former primary %s a replica holding every acknowledged write" % (fault, active),
                   old_caught_up, REJOIN_S, 0.5)
        h.note("%s: %d acknowledged writes on %s (primary) and %s (replica)" % (fault, r["acked"], new, active))
        assert stats.get("acked", 0) >= 50
        active, epoch = new, new_epoch
