"""Changes sent to a follower are forwarded to the leader over the cluster's authenticated channel
(issue 9): every API may listen on loopback only, so a CLI or script on any node works without
reaching the leader's API. The follower answers with the leader's own reply (no 421 redirect),
and the event names who asked at the follower (token and client address)."""

import json

from conftest import assert_no_overlap


def test_switchover_through_a_follower_is_forwarded(cluster):
    c = cluster
    c.form()
    c.apply("[service web]\nrun = %s\nstandbys = 1\nstandby = cold\nnodes = n1 n2 n3\n" % c.service_cmd())

    def steady():
        st = c.leader_status()
        s = c.service(st, "web")
        # The controller moves leadership off the active's node: wait for that too.
        if s and s["active"] and s["epoch"] and st["cluster"]["leader"] != s["active"]:
            return st
        return None

    st = c.wait_until(steady, 30, "web active, leader on another node")
    leader, active, epoch = st["cluster"]["leader"], c.service(st, "web")["active"], c.service(st, "web")["epoch"]
    followers = [n for n in c.nodes if n != leader]
    via = [n for n in followers if n != active][0] if len(followers) > 1 else followers[0]

    # Raw HTTP, no redirect following: the follower itself must answer 202.
    status, _, body = c.api(via, "/v1/services/web/switchover?by=script", method="POST", body=b"",
                            headers={"Content-Type": "application/json"})
    assert status == 202, "POST switchover to follower %s (leader %s): %d %s" % (via, leader, status, body)
    assert json.loads(body).get("service") == "web", body

    def moved():
        s = c.service(c.leader_status(), "web")
        return s if s["active"] and s["epoch"] > epoch else None

    c.wait_until(moved, 30, "the forwarded switchover to complete")
    r = c.cli("events", "--json", "--service", "web", node=via)
    assert r.returncode == 0, r.stderr
    causes = [e["cause"] for e in json.loads(r.stdout)]
    assert any("requested by script (token token1 from 127.0.0.1)" in x for x in causes), "\n".join(causes)

    # The CLI on the follower, told only its own loopback API, moves it back.
    r = c.cli("switchover", "web", "--to", active, node=via)
    assert r.returncode == 0, "switchover via %s failed (exit %d): %s%s" % (via, r.returncode, r.stdout, r.stderr)
    assert ("-> %s" % active) in r.stdout, r.stdout
    assert_no_overlap(c.overlap_log)


def test_forwarded_change_is_checked_like_a_direct_one(cluster):
    """The follower forwards only what passed its own checks (token, origin, type), and the
    leader's answer to a bad request comes back as it is."""
    c = cluster
    c.form()
    leader = c.leader()
    via = [n for n in c.nodes if n != leader][0]
    status, _, body = c.api(via, "/v1/services/nope/switchover", method="POST", body=b"",
                            headers={"Content-Type": "application/json"})
    assert status == 404, (status, body)
    status = c.api(via, "/v1/services/nope/switchover", method="POST", body=b"", token=False,
                   headers={"Content-Type": "application/json"})[0]
    assert status == 401
