"""`follow` (issue 12): hot standbys follow the active. Real agents on loopback, a hot-standby
service whose follow hook appends what it was told to a shared sequence file and can be made slow
or failing per node by marker files:
  - a standby runs the hook before its process starts, and again for every new active;
  - a standby that has not followed the active is not promoted while one that did is eligible;
  - a failing hook reports the standby unhealthy (its cause says so), keeps its process from
    starting and its /role/standby at 503, and is run again until it succeeds;
  - a fenced former active (its agent killed) and a demoted one (switchover) follow the new
    active before they count as ready.
"""

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


def test_standbys_follow_the_active(cluster):
    c = cluster
    c.configure()
    c.start_all()
    c.leader()
    d = os.path.join(c.root, "follow")
    os.makedirs(d)
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


def test_freshest_standby_and_max_lag(cluster):
    """`position` and `max_lag` (issue 12, R12): each node's position command prints the number in
    a file of its own. The active's agent is killed while both standbys are further than max_lag
    behind it: nobody is promoted (rather than lose writes), and the reason says why. Once a standby
    catches up it is promoted. Later, with both standbys behind again, `understudy reset` accepts
    the loss and the freshest one is promoted."""
    c = cluster
    c.configure()
    c.start_all()
    c.leader()
    d = os.path.join(c.root, "position")
    os.makedirs(d)

    def put(node, value):
        tmp = os.path.join(d, ".pos-" + node)
        with open(tmp, "w") as f:
            f.write("%d\n" % value)
        os.replace(tmp, os.path.join(d, "pos-" + node))

    for node, value in (("n1", 250), ("n2", 100), ("n3", 200)):
        put(node, value)
    c.apply(
        "[service db]\nrun = exec sleep 100000\nstandby = hot\nposition = cat %s/pos-$UNDERSTUDY_NODE\n"
        "max_lag = 10\nstandbys = 2\nnodes = n1 n2 n3\nstop_timeout = 2s\n" % d
    )

    def reported():
        st = c.leader_status()
        s = c.service(st, "db")
        if not s or s["active"] != "n1":
            return None
        pos = {n: i["position"] for n, i in c.instances(st, "db").items()}
        return pos if pos == {"n1": 250, "n2": 100, "n3": 200} else None

    c.wait_until(reported, 30, "db active on n1 and every position reported")

    # 1. The active's agent dies; n2 and n3 are 150 and 50 behind its 250: no promotion.
    c.kill9("n1")

    def refused():
        st = c.status("n2")
        s = c.service(st, "db") if st else None
        return s and not s["active"] and s["lost_position"] == 250 and s
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
        return s and not s["active"] and s["lost_position"] == 245 and s
    c.wait_until(refused_again, 30, "db released from n3 and refused to n1 and n2")
    res = c.cli("reset", "db", node="n2")
    assert res.returncode == 0, res.stdout + res.stderr

    def accepted():
        s = c.service(c.status("n2"), "db")
        return s and s["active"] == "n2" and s
    c.wait_until(accepted, 30, "n2 (the freshest) promoted after the reset")
