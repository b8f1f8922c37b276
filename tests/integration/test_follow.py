"""`follow` (issue 12): hot standbys follow the active. Real agents on loopback, a hot-standby
service whose follow hook appends what it was told to a shared sequence file and can be made slow
or failing per node by marker files:
  - a standby runs the hook before its process starts, and again for every new active;
  - a standby that has not followed the active is not promoted while one that did is eligible;
  - a failing hook reports the standby unhealthy (its cause says so), keeps its process from
    starting and its /role/standby at 503, and is run again until it succeeds;
  - a fenced former active (its agent killed) and a demoted one (switchover) follow the new
    active before they count as ready;
  - a standby process that died follows the active again before it restarts.
"""

import json
import os
import time


FOLLOW_SLOW_S = 60


def _seq(path):
    try:
        with open(path) as f:
            return [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _inst(c, st, node):
    return c.instances(st, "db").get(node) if st and c.service(st, "db") else None


def _role_status(c, node, path):
    status, _, _ = c.api(node, "/v1/services/db/role" + path, token=False)
    return status


def _put_position(d, node, value):
    """What node's position command (cat d/pos-NODE) prints from now on (written aside, renamed)."""
    tmp = os.path.join(d, ".pos-" + node)
    with open(tmp, "w") as f:
        f.write("%d\n" % value)
    os.replace(tmp, os.path.join(d, "pos-" + node))


def _wait_positions(c, want):
    """Until the leader shows db active on n1 and exactly these positions reported."""
    def reported():
        st = c.leader_status()
        s = c.service(st, "db")
        pos = {n: i["position"] for n, i in c.instances(st, "db").items()} if s else {}
        return s and s["active"] == "n1" and pos == want
    c.wait_until(reported, 30, "db active on n1 and the positions %s reported" % want)


def _formed_with_dir(c, name):
    """Three agents with a leader, and a fresh directory for the test's files."""
    c.configure()
    c.start_all()
    c.leader()
    d = os.path.join(c.root, name)
    os.makedirs(d)
    return d


def _position_service(c, name, extra):
    """Three agents; db (hot, `position` = cat DIR/pos-NODE, plus `extra` keys) active on n1 with
    the positions n1 250, n2 100, n3 200 reported. Returns DIR."""
    d = _formed_with_dir(c, name)
    for node, value in (("n1", 250), ("n2", 100), ("n3", 200)):
        _put_position(d, node, value)
    c.apply(
        "[service db]\nrun = exec sleep 100000\nstandby = hot\nposition = cat %s/pos-$UNDERSTUDY_NODE\n"
        "%sstandbys = 2\nnodes = n1 n2 n3\nstop_timeout = 2s\n" % (d, extra)
    )
    _wait_positions(c, {"n1": 250, "n2": 100, "n3": 200})
    return d


def test_standbys_follow_the_active(cluster):
    c = cluster
    d = _formed_with_dir(c, "follow")
    seq = os.path.join(d, "seq")
    follow = (
        'echo "follow $UNDERSTUDY_NODE $UNDERSTUDY_EPOCH $UNDERSTUDY_ACTIVE_NODE $UNDERSTUDY_ACTIVE_EPOCH '
        '$UNDERSTUDY_ROLE" >> {d}/seq; '
        "if [ -e {d}/slow-$UNDERSTUDY_NODE ]; then sleep {slow}; fi; "
        "if [ -e {d}/fail-$UNDERSTUDY_NODE ]; then exit 3; fi; "
        'echo "followed $UNDERSTUDY_NODE $UNDERSTUDY_EPOCH" >> {d}/seq'
    ).format(d=d, slow=FOLLOW_SLOW_S)
    run = 'echo "run $UNDERSTUDY_NODE $UNDERSTUDY_ROLE $UNDERSTUDY_EPOCH" >> {d}/seq; exec sleep 100000'.format(d=d)
    open(os.path.join(d, "slow-n2"), "w").close()  # n2's first follow takes a minute
    c.apply(
        "[service db]\nrun = %s\nstandby = hot\nfollow = %s\nfollow_timeout = 90s\nstandbys = 2\n"
        "nodes = n1 n2 n3\nstop_timeout = 2s\nrestart_backoff = 200ms..400ms\n" % (run, follow)
    )

    # 1. Placed: n1 active; n3 followed it, then started its process; n2 is still following.
    def placed():
        st = c.leader_status()
        s = c.service(st, "db")
        if not s or s["active"] != "n1":
            return None
        n2, n3 = _inst(c, st, "n2"), _inst(c, st, "n3")
        if not (n2 and n3 and n3["following"] is True and n3["pid"] and n2["following"] is False):
            return None
        return s["epoch"], n2, n3

    e1, n2, n3 = c.wait_until(placed, 30, "db active on n1, n3 following it, n2 still following")
    assert n3["followed"] == e1 and n2["pid"] is None and n2["followed"] is None, (n2, n3)
    lines = _seq(seq)
    assert ["follow", "n3", str(e1), "n1", str(e1), "standby"] in lines, lines
    i_followed = lines.index(["followed", "n3", str(e1)])
    i_run = lines.index(["run", "n3", "standby", str(e1)])
    assert i_followed < i_run, "n3's process started before its follow hook succeeded: %s" % lines
    assert not any(x[:2] == ["run", "n2"] for x in lines), "n2's process started while following: %s" % lines
    assert _role_status(c, "n3", "/standby") == 200
    assert _role_status(c, "n2", "/standby") == 503

    # 2. The active's agent dies. n2 comes first among the standbys but has not followed n1; n3
    #    did: n3 gets the role. n2's slow run for n1 is stopped; it follows n3 (marker gone).
    os.unlink(os.path.join(d, "slow-n2"))
    c.kill9("n1")

    def failed_over():
        st = c.status("n3")
        s = c.service(st, "db") if st else None
        return s and s["active"] and s["active"] != "n1" and s["epoch"] > e1 and s
    s = c.wait_until(failed_over, 30, "db taken over from n1")
    assert s["active"] == "n3", "the standby that had not followed the active was promoted: %s" % s
    e2 = s["epoch"]

    def n2_follows():
        st = c.status("n3")
        n2 = _inst(c, st, "n2")
        return n2 and n2["following"] is True and n2["pid"] and n2
    n2 = c.wait_until(n2_follows, 30, "n2 following n3 with its process running")
    assert n2["followed"] == e2, n2
    lines = _seq(seq)
    assert ["follow", "n2", str(e2), "n3", str(e2), "standby"] in lines, lines
    assert lines.index(["followed", "n2", str(e2)]) < lines.index(["run", "n2", "standby", str(e2)]), lines

    # 3. The former active comes back with a follow hook that fails: unhealthy, no process, not
    #    ready; once the hook succeeds it follows n3 and its process starts.
    open(os.path.join(d, "fail-n1"), "w").close()
    c.wait_exit("n1", 10)
    c.start("n1")

    def n1_refused():
        st = c.status("n3")
        n1 = _inst(c, st, "n1")
        return n1 and n1["role"] == "standby" and n1["health"] == "unhealthy" and n1
    n1 = c.wait_until(n1_refused, 40, "n1 back as a standby whose follow hook fails")
    assert "follow hook for n3 (epoch %d) failed" % e2 in (n1["cause"] or ""), n1
    assert n1["following"] is False and n1["pid"] is None, n1
    assert _role_status(c, "n1", "/standby") == 503
    assert not any(x[:2] == ["run", "n1"] and x[3] == str(e2) for x in _seq(seq))
    t_fail = time.monotonic()
    os.unlink(os.path.join(d, "fail-n1"))

    def n1_follows():
        st = c.status("n3")
        n1 = _inst(c, st, "n1")
        return n1 and n1["following"] is True and n1["pid"] and n1["health"] != "unhealthy" and n1
    c.wait_until(n1_follows, 30, "n1 following n3 once its hook succeeds")
    assert time.monotonic() - t_fail < 30
    assert _role_status(c, "n1", "/standby") == 200
    fails = [x for x in _seq(seq) if x[:2] == ["follow", "n1"] and x[2] == str(e2)]
    assert len(fails) >= 2, "the failed follow hook ran only once: %s" % fails

    # 4. A switchover to n1: the demoted n3 keeps its process and follows n1.
    res = c.cli("switchover", "db", "--to", "n1", node="n3")
    assert res.returncode == 0, res.stdout + res.stderr

    def n3_follows():
        st = c.status("n1")
        s = c.service(st, "db") if st else None
        n3 = _inst(c, st, "n3")
        if not (s and s["active"] == "n1" and n3 and n3["following"] is True):
            return None
        return s["epoch"], n3
    e3, n3 = c.wait_until(n3_follows, 30, "n1 active and the demoted n3 following it")
    assert e3 > e2 and n3["followed"] == e3 and n3["pid"], n3
    assert ["follow", "n3", str(e3), "n1", str(e3), "standby"] in _seq(seq)
    assert _role_status(c, "n1", "") == 200

    # 5. A standby process that dies follows the active again before it is restarted (its data
    #    may be why it died: the hook's chance to repair it).
    def n2_follows_n1():
        x = _inst(c, c.status("n1"), "n2")
        return x and x["pid"] and x["followed"] == e3 and x["following"] is True and x
    n2 = c.wait_until(n2_follows_n1, 30, "n2 following n1 with its process running")
    before = len(_seq(seq))
    os.kill(n2["pid"], 9)

    def n2_back():
        st = c.status("n1")
        x = _inst(c, st, "n2")
        return x and x["pid"] and x["pid"] != n2["pid"] and x["following"] is True and x
    c.wait_until(n2_back, 30, "n2's standby process restarted, following n1")
    after = _seq(seq)[before:]
    assert ["follow", "n2", str(e3), "n1", str(e3), "standby"] in after, after
    assert after.index(["followed", "n2", str(e3)]) < after.index(["run", "n2", "standby", str(e3)]), after


def test_freshest_standby_and_max_lag(cluster):
    """`position` and `max_lag` (issue 12, R12): each node's position command prints the number in
    a file of its own. The active's agent is killed while both standbys are further than max_lag
    behind it: nobody is promoted (rather than lose writes), and the reason says why. Once a standby
    catches up it is promoted. Later, with both standbys behind again, `understudy reset` accepts
    the loss and the freshest one is promoted."""
    c = cluster
    d = _position_service(c, "position", "max_lag = 10\n")

    def put(node, value):
        _put_position(d, node, value)

    # With max_lag the leader records the active's position in the replicated state (a leader
    # elected when the active is lost knows it without its reports).
    c.wait_until(lambda: c.service(c.status("n3"), "db")["recorded_position"] == 250, 10,
                 "n1's position recorded in the state")

    # 1. The active's agent dies; n2 and n3 are 150 and 50 behind its 250: no promotion.
    c.kill9("n1")

    def refused():  # released first ("reading the standbys' positions"), then refused
        st = c.status("n2")
        s = c.service(st, "db") if st else None
        return s and not s["active"] and s["lost_position"] == 250 and "not promoted" in s["reason"] and s
    s = c.wait_until(refused, 30, "db released from n1 and not given to a standby that lags")
    assert "not promoted: " in s["reason"] and "max_lag 10 behind the lost active's 250" in s["reason"], s
    t_hold = time.monotonic() + 2.0
    while time.monotonic() < t_hold:
        s = c.service(c.status("n2"), "db")
        assert not s["active"], "a lagging standby was promoted: %s" % s
        time.sleep(0.2)

    # 2. n3 catches up to within max_lag: it gets the role.
    put("n3", 245)

    def promoted():
        s = c.service(c.status("n2"), "db")
        return s and s["active"] == "n3" and s
    s = c.wait_until(promoted, 30, "n3 promoted once within max_lag")
    assert s["lost_position"] is None, s

    # 3. n1 comes back (a standby, now at 0); n3's agent dies at 245 while n1 (0) and n2 (100) lag:
    #    refused again until an operator resets the service; then the freshest, n2, is promoted.
    put("n1", 0)
    c.wait_exit("n1", 10)
    c.start("n1")

    def n1_standby():
        st = c.status("n2")
        i = _inst(c, st, "n1")
        return i and i["role"] == "standby" and i["position"] == 0 and i
    c.wait_until(n1_standby, 40, "n1 back as a standby at position 0")
    c.kill9("n3")

    def refused_again():
        s = c.service(c.status("n2"), "db")
        return s and not s["active"] and s["lost_position"] == 245 and "not promoted" in s["reason"] and s
    c.wait_until(refused_again, 30, "db released from n3 and refused to n1 and n2")
    res = c.cli("reset", "db", node="n2")
    assert res.returncode == 0, res.stdout + res.stderr

    def accepted():
        s = c.service(c.status("n2"), "db")
        return s and s["active"] == "n2" and s
    c.wait_until(accepted, 30, "n2 (the freshest) promoted after the reset")


def test_synchronous_set(cluster):
    """`synchronous` and `sync` (issue 12, R13): the leader keeps a replicated set of synchronous
    standbys and tells the active through its sync hook; the set grows only once the hook
    succeeded, shrinks at once when a member is no longer ready, and only a member may be promoted:
    with the set empty when the active is lost, nobody is promoted until an operator accepts the
    loss (`understudy switchover --force`)."""
    c = cluster
    d = _formed_with_dir(c, "sync")
    seq = os.path.join(d, "seq")
    sync = (
        'echo "sync $UNDERSTUDY_NODE $UNDERSTUDY_ROLE $UNDERSTUDY_EPOCH $UNDERSTUDY_SYNC_STANDBYS" >> {d}/seq; '
        "test ! -e {d}/fail-sync"
    ).format(d=d)
    marker = lambda name: os.path.join(d, name)  # noqa: E731
    open(marker("fail-sync"), "w").close()
    c.apply(
        "[service db]\nrun = exec sleep 100000\nstandby = hot\nsynchronous = 1\nsync = %s\n"
        "check = exec:test ! -e %s/sick-$UNDERSTUDY_NODE\ncheck_interval = 200ms\ncheck_timeout = 200ms\nrise = 1\nfall = 1\n"
        "standbys = 2\nnodes = n1 n2 n3\nstop_timeout = 2s\nrestart_backoff = 200ms..400ms\n" % (sync, d)
    )

    def sync_state(view="n2"):
        s = c.service(c.status(view), "db")
        return s, (s or {}).get("synchronous") or {}

    # 1. n1 active; n2 asked for; the hook fails, so nobody is promotable yet (and it is retried).
    def asked_unconfirmed():
        s, y = sync_state()
        runs = [x for x in _seq(seq) if x[:3] == ["sync", "n1", "active"]]
        return s and s["active"] == "n1" and y.get("asked") and not y.get("standbys") and len(runs) >= 2 and y
    y = c.wait_until(asked_unconfirmed, 30, "n1 asked to wait for a standby, its sync hook failing")
    first = y["asked"][0]
    # At its promotion the active is told to wait for nobody (an empty list); then for `first`.
    runs = [x[4:] for x in _seq(seq) if x[:2] == ["sync", "n1"]]
    assert all(r in ([], [first]) for r in runs) and [first] in runs, runs

    # 2. The hook succeeds: the set grows to what n1 was asked for, with an event.
    os.unlink(marker("fail-sync"))
    c.wait_until(lambda: sync_state()[1].get("standbys") == [first], 30, "the synchronous set confirmed")
    status, _, body = c.api("n2", "/v1/events?service=db")
    assert status == 200
    events = [e for e in json.loads(body)["events"] if e["kind"] == "sync"]
    assert any(e["from"] == "none" and e["to"] == first for e in events), events

    # 3. The member turns unhealthy: the other standby replaces it (the set shrinks at once,
    #    grows once n1's hook confirmed).
    other = "n3" if first == "n2" else "n2"
    open(marker("sick-" + first), "w").close()
    c.wait_until(lambda: sync_state()[1].get("standbys") == [other], 30, "%s replaced by %s" % (first, other))
    assert any(x[:3] == ["sync", "n1", "active"] and x[4:] == [other] for x in _seq(seq)), _seq(seq)

    # 4. Back to `first` while n1's hook fails: the set is empty, `first` only asked for.
    os.unlink(marker("sick-" + first))
    open(marker("fail-sync"), "w").close()
    open(marker("sick-" + other), "w").close()

    def emptied():
        y = sync_state()[1]
        return y.get("asked") == [first] and y.get("standbys") == [] and y
    c.wait_until(emptied, 30, "the synchronous set emptied while n1 cannot confirm %s" % first)
    os.unlink(marker("sick-" + other))

    # 5. n1's agent dies: both standbys are alive and healthy, but neither holds every write n1
    #    acknowledged as far as understudy knows: nobody is promoted.
    c.kill9("n1")

    def refused():
        s, _ = sync_state()
        return s and not s["active"] and "synchronous set is empty" in s["reason"] and s
    c.wait_until(refused, 30, "db released from n1 and not promoted")
    t_hold = time.monotonic() + 2.0
    while time.monotonic() < t_hold:
        s, _ = sync_state()
        assert not s["active"], "promoted although outside the synchronous set: %s" % s
        time.sleep(0.2)

    # 6. A plain switchover is refused and says why; an operator accepts the loss with
    #    `switchover --force --to n3` (`reset` does the same without a target: the max_lag test):
    #    n3 is promoted; the new active starts a new set.
    res = c.cli("switchover", "db", node="n2")
    assert res.returncode == 1 and "--force accepts that" in res.stdout + res.stderr, res.stdout + res.stderr
    os.unlink(marker("fail-sync"))
    res = c.cli("switchover", "db", "--force", "--to", "n3", node="n2")
    assert res.returncode == 0, res.stdout + res.stderr

    def taken():
        s, y = sync_state()
        return s and s["active"] and not y.get("waived") and y.get("standbys") and (s, y)
    s, y = c.wait_until(taken, 30, "a standby promoted after switchover --force, with a confirmed set of its own")
    assert s["active"] == "n3", s
    assert y["standbys"] != [s["active"]], y


def test_switchover_keeps_to_the_synchronous_set(cluster):
    """R13 and planned moves: a switchover may go only to a member of the synchronous set (the API
    refuses another target up front), and a demote hook that fails makes the move a failure, not
    a planned one: the old active reports `failed` with the hook's cause and the role goes to the
    member."""
    c = cluster
    _formed_with_dir(c, "syncplan")
    c.apply(
        "[service db]\nrun = exec sleep 100000\nstandby = hot\nsynchronous = 1\nsync = true\n"
        "demote = exit 3\nstandbys = 2\nnodes = n1 n2 n3\nstop_timeout = 2s\n"
    )

    def confirmed():
        s = c.service(c.status("n2"), "db")
        y = (s or {}).get("synchronous") or {}
        return s and s["active"] == "n1" and len(y.get("standbys") or []) == 1 and (s, y["standbys"][0])
    s, member = c.wait_until(confirmed, 30, "db active on n1 with a confirmed synchronous standby")
    other = "n3" if member == "n2" else "n2"
    res = c.cli("switchover", "db", "--to", other, node="n2")
    assert res.returncode == 1 and "only a member may take over" in res.stdout + res.stderr, res.stdout + res.stderr
    assert c.service(c.status("n2"), "db")["active"] == "n1"

    res = c.cli("switchover", "db", node="n2")
    assert res.returncode == 0, res.stdout + res.stderr
    s = c.service(c.status("n2"), "db")
    assert s["active"] == member and s["epoch"] > 1, s
    ev = c.cli("events", "--service", "db", node="n2")
    assert "instance on n1 failed: demote hook failed (status 3)" in ev.stdout, ev.stdout + ev.stderr
    assert "confirmed demotion" not in ev.stdout, ev.stdout


def test_positions_read_afresh_at_failover(cluster):
    """R12: positions are read every check interval (10 s here), so the reports the leader holds
    can be old. n2 gets ahead of n3 right before the active's agent dies: the leader releases the
    role, every standby reads its position again, and n2, the freshest now, is promoted (by the
    reports as they were, n3 would have been)."""
    c = cluster
    d = _position_service(c, "fresh", "check = exec:true\ncheck_interval = 10s\n")

    def put(node, value):
        _put_position(d, node, value)

    put("n2", 300)
    c.kill9("n1")

    def promoted():
        s = c.service(c.status("n2"), "db")
        return s and s["active"] and s["active"] != "n1" and s
    s = c.wait_until(promoted, 30, "db taken over from n1")
    assert s["active"] == "n2", "promoted by positions read before the failure: %s" % s
    pos = {n: i["position"] for n, i in c.instances(c.status("n2"), "db").items()}
    assert pos.get("n2") == 300, pos


def test_follow_stopped_by_a_free_role_is_no_failure(cluster):
    """A follow hook still running when the active is lost is stopped (nothing to follow while the
    role is free: with `position` it is free until the standbys read their positions), and that
    is no failure of the standby: it stays healthy and takes the role (review finding: it turned
    unhealthy and nobody was promoted)."""
    c = cluster
    d = _formed_with_dir(c, "freefollow")
    _put_position(d, "n1", 10)
    _put_position(d, "n2", 5)
    open(os.path.join(d, "slow-n2"), "w").close()
    follow = "if [ -e {d}/slow-$UNDERSTUDY_NODE ]; then sleep 60; fi".format(d=d)
    c.apply(
        "[service db]\nrun = exec sleep 100000\nstandby = hot\nfollow = %s\nfollow_timeout = 90s\n"
        "position = cat %s/pos-$UNDERSTUDY_NODE\nstandbys = 1\nnodes = n1 n2\nstop_timeout = 2s\n" % (follow, d)
    )

    def following():
        st = c.leader_status()
        s = c.service(st, "db")
        n2 = _inst(c, st, "n2")
        return s and s["active"] == "n1" and n2 and n2["following"] is False and n2
    c.wait_until(following, 30, "db active on n1, n2 still following it")
    c.kill9("n1")

    def promoted():
        s = c.service(c.status("n3"), "db")
        return s and s["active"] == "n2" and s
    c.wait_until(promoted, 30, "n2 promoted although its follow hook was stopped")
    n2 = _inst(c, c.status("n3"), "n2")
    assert n2["health"] != "unhealthy", n2
