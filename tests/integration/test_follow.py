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
