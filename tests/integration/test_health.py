"""Integration tests of health checks and failure handling (issue 4): real agents, real service
processes (health_service.py), real HTTP and exec checks.

Checks and restarts: an unhealthy active is recovered and fails over, an unhealthy standby is not
promoted, `on_failure = restart` restarts in place with a doubling backoff and then fails over, a
flapping node is banned until `understudy reset`, a paused service is left alone, bad check
definitions are refused, a hot standby's restarts read the same on its own node and on a peer. Placement, drain, failback, autopilot and the events CLI are in
test_healing.py, which shares the helpers below.

Sick instances: health_service.py answers /healthz with 503 while ROOT/sick-NODE exists.
"""

import json
import os
import re
import signal
import time
import urllib.parse

from conftest import (
    BLOCK_PORTS,
    PYTHON,
    assert_no_overlap,
    format_intervals,
    pick_port_block,
    proc_environ,
    read_intervals,
)

HERE = os.path.dirname(os.path.abspath(__file__))
HEALTH_SERVICE = os.path.join(HERE, "health_service.py")


# ---------------------------------------------------------------- helpers (also used by test_healing.py)


def free_base(c, n=1):
    """First port of a block of n free ports outside the cluster's own block (nodes added later
    take ports from that one)."""
    for _ in range(50):
        p = pick_port_block(n)
        if p + n <= c.base_port or p >= c.base_port + BLOCK_PORTS:
            return p
    raise RuntimeError("no free service port outside the cluster's block")


def hs_run(c, port=None, base=None, log=True):
    """`run =` line of health_service.py: a fixed port (cold standbys: one process at a time)
    or BASE + node number (hot standbys). With log, instances append to the overlap log."""
    cmd = ["exec", PYTHON, HEALTH_SERVICE, "--dir", c.root]
    cmd += ["--port", str(port)] if port else ["--base", str(base)]
    if log:
        cmd += ["--log", c.overlap_log]
    return " ".join(cmd)


def svc_ini(c, name="web", run=None, checks=(), **keys):
    """One [service NAME] section; keys are written in the order given (stop_timeout 2s added)."""
    lines = ["[service %s]" % name, "run = %s" % run]
    lines += ["check = %s" % ck for ck in checks]
    keys.setdefault("stop_timeout", "2s")
    lines += ["%s = %s" % (k, v) for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def sick(c, node):
    open(os.path.join(c.root, "sick-" + node), "w").close()


def get_json(c, node, path, timeout=5):
    status, _, body = c.api(node, path, timeout=timeout)
    if status != 200:
        raise OSError("GET %s: HTTP %d %s" % (path, status, body[:200]))
    return json.loads(body.decode())


def events(c, after=0, node=None, **filters):
    """GET /v1/events from `node` (default: the leader) after seq `after`, all pages."""
    node = node or c.leader()
    out = []
    while True:
        q = dict(after=after, limit=256, **{k: v for k, v in filters.items() if v})
        j = get_json(c, node, "/v1/events?" + urllib.parse.urlencode(q))
        out += j["events"]
        if not j.get("more") or not j["events"]:
            return out
        after = j["events"][-1]["seq"]


def last_seq(c):
    return get_json(c, c.leader(), "/v1/events?limit=1")["last"]


def fmt_events(evs):
    return "\n".join(
        "  #%d %s %-7s %-4s %s %s -> %s: %s"
        % (e["seq"], e.get("time"), e["kind"], e["service"] or "-", e["node"] or "-", e["from"], e["to"], e["cause"])
        for e in evs
    ) or "  (no events)"


def find(evs, kind, node=None, frm=None, to=None, cause=()):
    """Events of `kind` matching the given fields; `cause` holds substrings that must all occur."""
    out = []
    for e in evs:
        if e["kind"] != kind or (node and e["node"] != node) or (frm and e["from"] != frm) or (to and e["to"] != to):
            continue
        if all(s in (e["cause"] or "") for s in cause):
            out.append(e)
    return out


def lines_of(path, node, epoch):
    return sum(i.count for i in read_intervals(path) if i.node == node and i.epoch == epoch)


def wait_active(c, service="web", not_node=None, min_epoch=0, log=None, timeout=30, view=None):
    """Wait until the leader (or `view`) shows an active of `service` not on `not_node` with
    epoch >= min_epoch, that also writes to `log` if given. Returns (active, epoch, status)."""

    def ok():
        st = c.status(view) if view else c.leader_status()
        s = c.service(st, service)
        if not s or not s["active"] or s["active"] == not_node or s["epoch"] < min_epoch:
            return None
        if log and lines_of(log, s["active"], s["epoch"]) < 3:
            return None
        return s["active"], s["epoch"], st

    what = "%s active (not on %s, epoch >= %d)%s" % (service, not_node, min_epoch, " and writing" if log else "")
    return c.wait_until(ok, timeout, what)


def active_pid(c, node, service="web", timeout=20):
    """The pid the active node reports for its instance, checked against /proc."""

    def ok():
        inst = c.instances(c.status(node), service).get(node)
        if not inst or inst["role"] != "active" or inst["state"] != "active" or not inst["pid"]:
            return None
        env = proc_environ(inst["pid"]) or {}
        if env.get("UNDERSTUDY_NODE") != node or env.get("UNDERSTUDY_SERVICE") != service:
            return None
        return inst["pid"]

    return c.wait_until(ok, timeout, "%s on %s to report the pid of its running active instance" % (service, node))


def crash(c, node, service="web"):
    """kill -9 the active instance's process on `node` (its agent stays); returns time.time_ns()."""
    pid = active_pid(c, node, service)
    t = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    return t


def roles(c, st=None, service="web"):
    """(active, [standbys in order]) as the leader has them."""
    st = st or c.leader_status()
    s = c.service(st, service)
    return s["active"], [i["node"] for i in s["instances"] if i["role"] == "standby"]


def wait_roles(c, pred, what, timeout=20, service="web"):
    def ok():
        st = c.leader_status()
        a, sb = roles(c, st, service)
        return (a, sb, st) if pred(a, sb, st) else None

    return c.wait_until(ok, timeout, what)


def wait_health(c, node, health, service="web", timeout=20):
    def ok():
        inst = c.instances(c.leader_status(), service).get(node)
        return inst if inst and inst["health"] == health else None

    return c.wait_until(ok, timeout, "the leader to see %s on %s %s" % (service, node, health))


def hold(c, cond, seconds, what):
    """cond(status) must hold on every look for `seconds` (a "stays so" check)."""
    end = time.monotonic() + seconds
    while True:
        st = c.leader_status()
        assert cond(st), "%s stopped holding; leader status: %s" % (what, json.dumps(c.service(st, "web")))
        if time.monotonic() >= end:
            return
        time.sleep(0.1)


def cli_ok(c, *args, node=None):
    r = c.cli(*args, node=node)
    assert r.returncode == 0, "understudy %s failed (exit %d)\nstdout: %s\nstderr: %s" % (
        " ".join(args),
        r.returncode,
        r.stdout,
        r.stderr,
    )
    return r


def intervals(c):
    return [(i.node, i.epoch) for i in assert_no_overlap(c.overlap_log)]


# ---------------------------------------------------------------- 1. unhealthy active


def test_unhealthy_active_fails_over_to_healthy_standby(cluster):
    c = cluster
    c.form()
    port = free_base(c)
    url = "http://127.0.0.1:%d/healthz" % port
    ini = svc_ini(
        c,
        run=hs_run(c, port=port),
        checks=[url],
        standby="cold",
        standbys=1,
        nodes="n1 n2 n3",
        check_interval="200ms",
        check_timeout="150ms",
        rise=1,
        fall=2,
    )
    c.apply(ini)
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    wait_health(c, active, "healthy")
    seq0 = last_seq(c)

    sick(c, active)
    new, new_epoch, st = wait_active(c, not_node=active, min_epoch=epoch + 1, log=c.overlap_log)
    evs = events(c, after=seq0, service="web")
    print("unhealthy %s -> %s (epoch %d -> %d); events:\n%s" % (active, new, epoch, new_epoch, fmt_events(evs)))
    health = find(evs, "health", node=active, to="unhealthy")
    assert health, "no health event '%s -> unhealthy':\n%s" % (active, fmt_events(evs))
    assert "check %s failed 2/2: HTTP status 503" % url in health[0]["cause"], fmt_events(health)
    failed = [e for e in find(evs, "role", cause=("check http://", "failed")) if e["seq"] > health[0]["seq"]]
    assert failed, "no role event caused by the failed check:\n%s" % fmt_events(evs)
    promoted = find(evs, "role", node=new, to="active")
    assert promoted and promoted[-1]["seq"] > health[0]["seq"], fmt_events(evs)
    assert intervals(c) == [(active, epoch), (new, new_epoch)], format_intervals(read_intervals(c.overlap_log))


# ---------------------------------------------------------------- 2. unhealthy standby


def test_unhealthy_standby_is_not_promoted(cluster):
    c = cluster
    c.form()
    base = free_base(c, 4)
    # Hot standbys run at once, each on BASE + its node number: an exec check finds its own.
    check = "exec:curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:$((%d + ${UNDERSTUDY_NODE#n}))/healthz" % base
    ini = svc_ini(
        c,
        run=hs_run(c, base=base, log=False),
        checks=[check],
        standby="hot",
        standbys=2,
        nodes="n1 n2 n3",
        check_interval="300ms",
        check_timeout="250ms",
        rise=1,
        fall=2,
    )
    c.apply(ini)

    def all_healthy(a, sb, st):
        inst = c.instances(st, "web")
        return a and len(sb) == 2 and all(inst[n]["health"] == "healthy" for n in [a] + sb)

    active, (first, second), _ = wait_roles(c, all_healthy, "web active with 2 healthy hot standbys")
    epoch = c.service(c.leader_status(), "web")["epoch"]
    seq0 = last_seq(c)

    sick(c, first)  # the standby that would be promoted first
    wait_health(c, first, "unhealthy")
    crash(c, active)
    new, new_epoch, _ = wait_active(c, not_node=active, min_epoch=epoch + 1)
    evs = events(c, after=seq0, service="web")
    print("standbys %s (sick), %s; %s crashed -> %s; events:\n%s" % (first, second, active, new, fmt_events(evs)))
    assert new == second, "the unhealthy standby %s was promoted instead of %s:\n%s" % (first, second, fmt_events(evs))
    assert not find(evs, "role", node=first, to="active"), fmt_events(evs)
    h = find(evs, "health", node=first, to="unhealthy", cause=("check exec:curl", "failed 2/2"))
    assert h, "no health event for the sick standby %s with the check's cause:\n%s" % (first, fmt_events(evs))
    # The pid the new active reports is the hot standby's process, now active.
    assert active_pid(c, new)


# ---------------------------------------------------------------- 3. restart in place


def test_restart_in_place_with_backoff_then_failover(cluster):
    c = cluster
    c.form()
    port = free_base(c)
    ini = svc_ini(
        c,
        run=hs_run(c, port=port),
        standby="cold",
        standbys=1,
        nodes="n1 n2 n3",
        on_failure="restart",
        max_restarts=2,
        restart_backoff="300ms..2s",
        failure_threshold=100,
    )
    c.apply(ini)
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    expected = [(active, epoch)]
    gaps = []
    for backoff in (300, 600):
        seq0 = last_seq(c)
        t_kill = crash(c, active)
        node, new_epoch, _ = wait_active(c, min_epoch=epoch + 1, log=c.overlap_log)
        evs = events(c, after=seq0, service="web")
        assert node == active, "restart %d: expected a restart in place on %s, got %s active:\n%s" % (
            len(gaps) + 1,
            active,
            node,
            fmt_events(evs),
        )
        first = min(i.first for i in read_intervals(c.overlap_log) if (i.node, i.epoch) == (node, new_epoch))
        down = find(evs, "role", node=active, frm="active")
        up = find(evs, "role", node=active, to="active")
        assert down and up and up[-1]["seq"] > down[0]["seq"], "role events of the restart:\n%s" % fmt_events(evs)
        gap = up[-1]["time_ms"] - down[0]["time_ms"]
        print(
            "restart %d on %s: epoch %d -> %d, kill -> first write %.0f ms, failure -> active event %d ms\n%s"
            % (len(gaps) + 1, node, epoch, new_epoch, (first - t_kill) / 1e6, gap, fmt_events(evs))
        )
        assert (first - t_kill) / 1e6 >= backoff, "restarted %.0f ms after the kill: backoff %d ms not kept" % (
            (first - t_kill) / 1e6,
            backoff,
        )
        assert gap >= backoff, "failure -> restart events %d ms apart, backoff %d ms:\n%s" % (
            gap,
            backoff,
            fmt_events(evs),
        )
        gaps.append(gap)
        epoch = new_epoch
        expected.append((active, epoch))
    assert gaps[1] > gaps[0], "the backoff did not grow: %r" % gaps

    seq0 = last_seq(c)
    crash(c, active)
    new, new_epoch, _ = wait_active(c, min_epoch=epoch + 1, log=c.overlap_log)
    evs = events(c, after=seq0, service="web")
    print("third failure: %s -> %s (epoch %d)\n%s" % (active, new, new_epoch, fmt_events(evs)))
    assert new != active, "max_restarts = 2 used up, yet restarted on %s again:\n%s" % (active, fmt_events(evs))
    expected.append((new, new_epoch))
    assert intervals(c) == expected, format_intervals(read_intervals(c.overlap_log))


# ---------------------------------------------------------------- 4. flapping guard


def test_flapping_nodes_are_banned_until_reset(cluster):
    c = cluster
    c.form()
    port = free_base(c)
    ini = svc_ini(
        c,
        run=hs_run(c, port=port),
        standby="cold",
        standbys=1,
        nodes="n1 n2",
        failure_threshold=2,
        failure_window="60s",
        failure_cooldown="10m",
    )
    c.apply(ini)
    wait_active(c, log=c.overlap_log)
    seq0 = last_seq(c)

    def fails(s):
        return {f["node"]: f for f in s["failures"]}

    def given_up(s):
        f = fails(s)
        return not s["active"] and all(f.get(n, {}).get("banned") for n in ("n1", "n2"))

    kills = []
    while True:

        def next_step():
            s = c.service(c.leader_status(), "web")
            if given_up(s):
                return ("done", s)
            if s["active"] and lines_of(c.overlap_log, s["active"], s["epoch"]) >= 3:
                return ("kill", s)
            return None

        step, s = c.wait_until(next_step, 20, "web to run somewhere, or both n1 and n2 banned")
        if step == "done":
            break
        assert len(kills) < 8, "still not banned after %d crashes: %s\n%s" % (
            len(kills),
            json.dumps(s),
            fmt_events(events(c, after=seq0, service="web")),
        )
        crash(c, s["active"])
        kills.append((s["active"], s["epoch"]))

        def acted():
            t = c.service(c.leader_status(), "web")
            return t["active"] != s["active"] or t["epoch"] != s["epoch"]

        c.wait_until(acted, 20, "the leader to act on the crash of %s (epoch %d)" % (s["active"], s["epoch"]))
    now_ms = time.time() * 1000
    print("crashed %r; failures: %s" % (kills, json.dumps(s["failures"])))
    for n in ("n1", "n2"):
        f = fails(s)[n]
        assert f["failures"] >= 2, f
        assert f["banned_until_ms"] > now_ms + 9 * 60 * 1000, "ban shorter than failure_cooldown 10m: %r" % f
    hold(c, lambda st: not c.service(st, "web")["active"], 1.0, "no active while both nodes are banned")

    seq1 = last_seq(c)
    cli_ok(c, "reset", "web", "--node", "n1")
    new, new_epoch, st = wait_active(c, min_epoch=s["epoch"] + 1, log=c.overlap_log)
    assert new == "n1", "after reset of n1, web went to %s" % new
    f = fails(c.service(st, "web"))
    assert not f.get("n1", {}).get("banned"), f
    assert f["n2"]["banned"], "reset --node n1 must leave n2 banned: %r" % f
    evs = events(c, after=seq1, service="web")
    assert find(evs, "reset", node="n1"), "no reset event for n1:\n%s" % fmt_events(evs)
    assert not find(evs, "reset", node="n2"), fmt_events(evs)
    assert_no_overlap(c.overlap_log)


# ---------------------------------------------------------------- 5. pause


def test_paused_service_is_left_alone_until_resumed(cluster):
    c = cluster
    c.form()
    port = free_base(c)
    c.apply(svc_ini(c, run=hs_run(c, port=port), standby="cold", standbys=1, nodes="n1 n2 n3"))
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    seq0 = last_seq(c)

    cli_ok(c, "service", "pause", "web")
    c.wait_until(lambda: c.service(c.leader_status(), "web")["paused"], 10, "web to show paused")
    crash(c, active)

    def untouched(st):
        s = c.service(st, "web")
        running = [p for p in c.service_processes("web") if p["role"]]
        return s["paused"] and s["active"] == active and s["epoch"] == epoch and not running

    hold(c, untouched, 2.0, "paused web: same active and epoch, no process started")

    cli_ok(c, "service", "resume", "web")
    new, new_epoch, st = wait_active(c, min_epoch=epoch + 1, log=c.overlap_log)
    assert not c.service(st, "web")["paused"]
    evs = events(c, after=seq0, service="web")
    print("paused, crashed %s, resumed -> %s (epoch %d)\n%s" % (active, new, new_epoch, fmt_events(evs)))
    p = [e for e in evs if e["kind"] in ("pause", "resume")]
    assert len(p) >= 2 and p[0]["to"] == "paused" and p[-1]["from"] == "paused", fmt_events(evs)
    recovered = find(evs, "role", node=new, to="active")
    assert recovered and recovered[-1]["seq"] > p[-1]["seq"], "web recovered before it was resumed:\n%s" % fmt_events(
        evs
    )
    assert intervals(c) == [(active, epoch), (new, new_epoch)], format_intervals(read_intervals(c.overlap_log))


# ---------------------------------------------------------------- 6. bad check definitions


def test_bad_check_definitions_are_rejected_and_previous_stays(cluster):
    c = cluster
    c.form()
    port = free_base(c)
    good = "http://127.0.0.1:%d/healthz" % port
    c.apply(svc_ini(c, run=hs_run(c, port=port), checks=[good], standbys=1, check_interval="1s"))
    active, epoch, st = wait_active(c, log=c.overlap_log)
    before = c.service(st, "web")
    assert before["checks"] == [good], before
    cases = [
        ("check", "https://127.0.0.1:%d/healthz" % port),
        ("check", "ftp://x"),
        ("check", "http://localhost:80/"),
        ("check_interval", "0"),
    ]
    for k, (key, value) in enumerate(cases):
        lines = ["[service web]", "run = %s" % hs_run(c, port=port), "standbys = 1", "check = %s" % good]
        if key == "check":
            lines[3] = "check = %s" % value
        else:
            lines.append("%s = %s" % (key, value))
        line = len(lines) if key != "check" else 4
        name = "bad-check-%d.ini" % k
        path = c.write_file("\n".join(lines) + "\n", name=name)
        r = c.cli("apply", path)
        msg = "apply of %s = %s: exit %d\nstdout: %s\nstderr: %s" % (key, value, r.returncode, r.stdout, r.stderr)
        assert r.returncode != 0, msg
        hit = [l for l in r.stderr.splitlines() if "%s:%d:" % (name, line) in l]
        assert hit and re.search(r"\b%s\b" % key, hit[0]), "expected %s:%d: naming '%s'\n%s" % (name, line, key, msg)
        print("%s = %s -> %s" % (key, value, hit[0]))
    after = c.service(c.leader_status(), "web")
    for k in ("active", "epoch", "checks", "standbys"):
        assert after[k] == before[k], (k, before, after)
    assert lines_of(c.overlap_log, active, epoch) > 0


# ---------------------------------------------------------------- 7. standby restarts as every node reports them


def test_standby_restarts_agree_between_own_node_and_peer(cluster):
    """GET /v1/status shows a hot standby's process restarts as the running total, on the
    standby's own node (which builds the report from its instance) and on a peer (which has it
    from heartbeats) alike: also once the backoff counter started over (restart_window ran out
    between the kills), the two agree."""
    c = cluster
    c.form()
    base = free_base(c, 4)
    ini = svc_ini(
        c,
        run=hs_run(c, base=base, log=False),
        standby="hot",
        standbys=1,
        nodes="n1 n2 n3",
        restart_backoff="200ms..1s",
        restart_window="1s",
    )
    c.apply(ini)
    active, (sb,), _ = wait_roles(c, lambda a, sb, st: a and len(sb) == 1, "web active with one hot standby")
    peer = next(n for n in ("n1", "n2", "n3") if n != sb)

    def standby_pid(other_than=None):
        def ok():
            inst = c.instances(c.status(sb), "web").get(sb)
            if not inst or inst["role"] != "standby" or inst["state"] != "standby" or not inst["pid"]:
                return None
            if inst["pid"] == other_than:
                return None
            env = proc_environ(inst["pid"]) or {}
            return inst["pid"] if env.get("UNDERSTUDY_NODE") == sb else None

        return c.wait_until(ok, 20, "the hot standby on %s to run (pid other than %s)" % (sb, other_than))

    def restarts(view):
        inst = c.instances(c.status(view), "web")[sb]
        return inst["restarts"], inst["restart_cause"]

    pid = standby_pid()
    for k in (1, 2):
        # Longer than restart_window: the exit comes after a stable run, so the backoff count
        # starts over while the running total goes on.
        time.sleep(1.5)
        os.kill(pid, signal.SIGKILL)
        pid = standby_pid(other_than=pid)
        c.wait_until(lambda: restarts(peer)[0] == k, 10, "%s to see restart %d of the standby on %s" % (peer, k, sb))

    own, peers = restarts(sb), restarts(peer)
    print("standby on %s after 2 kills: own view %r, %s's view %r" % (sb, own, peer, peers))
    assert own[0] == 2, "the standby's own node reports %d restarts, expected 2 (its running total)" % own[0]
    assert own == peers, "own node and peer disagree about the standby on %s: %r vs %r" % (sb, own, peers)
