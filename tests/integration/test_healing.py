"""Integration tests of self-healing placement (issue 4): standby re-placement and failback, node
drain, voter autopilot, and the events CLI. Real agents and processes; helpers from
test_health.py. Services use cold standbys, so every running instance acts and the overlap log
(assert_no_overlap) covers them.
"""

import json
import os
import subprocess
import threading
import time

from conftest import BIN, format_intervals, read_intervals
from test_health import (
    cli_ok,
    events,
    find,
    fmt_events,
    free_base,
    hold,
    hs_run,
    intervals,
    last_seq,
    roles,
    svc_ini,
    wait_active,
    wait_roles,
)


def nodes_of(st):
    return {n["name"]: n for n in st["nodes"]}


def web(c, **keys):
    keys.setdefault("standby", "cold")
    keys.setdefault("nodes", "n1 n2 n3")
    return svc_ini(c, run=hs_run(c, port=free_base(c)), **keys)


# ---------------------------------------------------------------- standbys = N is kept


def test_dead_standby_is_replaced_and_nothing_moves_back(cluster):
    c = cluster
    c.form()
    c.apply(web(c, standbys=1))
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    _, (sb,), _ = wait_roles(c, lambda a, sb, st: a == active and len(sb) == 1, "one standby")
    spare = [m for m in ("n1", "n2", "n3") if m not in (active, sb)][0]
    seq0 = last_seq(c)

    c.kill9(sb)
    c.wait_exit(sb, 10)
    wait_roles(c, lambda a, s, st: (a, s) == (active, [spare]), "standby %s re-placed on %s" % (sb, spare))
    evs = events(c, after=seq0, service="web")
    print("standby %s killed; events:\n%s" % (sb, fmt_events(evs)))
    assert find(evs, "role", node=spare, frm="none", to="standby"), fmt_events(evs)
    assert find(evs, "role", node=sb, frm="standby", to="none"), fmt_events(evs)

    c.start(sb)
    c.wait_until(lambda: nodes_of(c.leader_status())[sb]["state"] == "alive", 30, "%s to be alive again" % sb)

    def unchanged(st):
        s = c.service(st, "web")
        return (s["active"], s["epoch"], roles(c, st)[1]) == (active, epoch, [spare])

    hold(c, unchanged, 2.0, "no failback: %s active (epoch %d), %s standby" % (active, epoch, spare))
    assert intervals(c) == [(active, epoch)], format_intervals(read_intervals(c.overlap_log))


def test_failback_moves_the_active_back_by_switchover(cluster):
    c = cluster
    c.form()
    c.apply(web(c, standbys=2, failback="yes"))
    # n1 is the most preferred node: the active ends up there.
    _, epoch, _ = wait_active(c, log=c.overlap_log)
    _, (first, _), _ = wait_roles(c, lambda a, sb, st: a == "n1" and len(sb) == 2, "web on n1 with two standbys")
    epoch = c.service(c.leader_status(), "web")["epoch"]

    c.kill9("n1")
    c.wait_exit("n1", 10)
    new, new_epoch, _ = wait_active(c, not_node="n1", min_epoch=epoch + 1, log=c.overlap_log)
    assert new == first
    # Dead, n1 holds no slot any more; it comes back as a standby first.
    wait_roles(
        c,
        lambda a, sb, st: nodes_of(st)["n1"]["state"] == "dead" and "n1" not in sb,
        "n1 dead and no longer a standby",
    )
    seq0 = last_seq(c)

    c.start("n1")
    back, back_epoch, _ = wait_active(c, min_epoch=new_epoch + 1, log=c.overlap_log, timeout=40)
    evs = events(c, after=seq0, service="web")
    print("n1 back; events:\n%s" % fmt_events(evs))
    assert back == "n1", "failback = yes: web went to %s, not n1:\n%s" % (back, fmt_events(evs))
    standby = find(evs, "role", node="n1", to="standby")
    demoting = find(evs, "role", node=new, frm="active", to="demoting", cause=("failback",))
    promoted = find(evs, "role", node="n1", to="active")
    assert standby and demoting and promoted, "expected n1 standby, then %s demoting for failback:\n%s" % (
        new,
        fmt_events(evs),
    )
    assert standby[0]["seq"] < demoting[0]["seq"] < promoted[-1]["seq"], fmt_events(evs)
    assert intervals(c) == [("n1", epoch), (new, new_epoch), ("n1", back_epoch)], format_intervals(
        read_intervals(c.overlap_log)
    )


# ---------------------------------------------------------------- drain


def test_drain_moves_the_active_away_and_undrain_lets_it_back(cluster):
    c = cluster
    c.form()
    c.apply(web(c, standbys=2))
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    wait_roles(c, lambda a, sb, st: a == active and len(sb) == 2, "two standbys")
    seq0 = last_seq(c)

    cli_ok(c, "node", "drain", active)
    new, new_epoch, _ = wait_active(c, not_node=active, min_epoch=epoch + 1, log=c.overlap_log)

    def drained(st):
        a, sb = roles(c, st)
        return nodes_of(st)[active]["drained"] and a != active and active not in sb and len(sb) == 1

    c.wait_until(lambda: drained(c.leader_status()), 20, "%s drained and without a role" % active)
    evs = events(c, after=seq0)
    print("drained %s: %s -> %s (epoch %d)\n%s" % (active, active, new, new_epoch, fmt_events(evs)))
    sw = [e for e in find(evs, "role", node=active, frm="active", to="demoting") if "drain" in e["cause"].lower()]
    assert sw, "no switchover role event caused by the drain:\n%s" % fmt_events(evs)
    assert find(evs, "drain", node=active, to="drained"), fmt_events(evs)
    hold(c, drained, 1.0, "%s holds no role while drained" % active)

    seq1 = last_seq(c)
    cli_ok(c, "node", "undrain", active)
    wait_roles(
        c,
        lambda a, sb, st: not nodes_of(st)[active]["drained"] and a == new and active in sb,
        "%s undrained and standby again (free slot)" % active,
    )
    evs = events(c, after=seq1)
    assert find(evs, "drain", node=active, to="undrained"), fmt_events(evs)
    assert intervals(c) == [(active, epoch), (new, new_epoch)], format_intervals(read_intervals(c.overlap_log))


# ---------------------------------------------------------------- autopilot


def test_autopilot_demotes_dead_voters_so_more_failures_are_survived(cluster):
    c = cluster
    grace = "autopilot_grace = 2s"
    c.form(extra_cluster=grace)
    c.add_node("n4", extra_cluster=grace)
    c.add_node("n5", extra_cluster=grace)
    names = ["n1", "n2", "n3", "n4", "n5"]

    def five_voters():
        st = c.leader_status()
        ns = nodes_of(st)
        return st if all(ns.get(m, {}).get("voter") and ns[m]["state"] == "alive" for m in names) else None

    c.wait_until(five_voters, 40, "5 alive voters once n4 and n5 joined")
    c.apply(svc_ini(c, run=hs_run(c, port=free_base(c)), standby="cold", standbys=1))
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    # Leadership is kept off nodes holding an active role.
    def other_leader():
        ld = c.leader()
        return ld if ld != active else None

    leader = c.wait_until(other_leader, 20, "a leader other than %s" % active)
    victims = [m for m in names if m not in (leader, active)][:2]
    seq0 = last_seq(c)

    t0 = time.monotonic()
    for v in victims:
        c.kill9(v)

    def three_alive_voters():
        st = c.leader_status()
        voters = [n for n in st["nodes"] if n["voter"]]
        return st if len(voters) == 3 and all(n["state"] == "alive" for n in voters) else None

    st = c.wait_until(three_alive_voters, 30, "3 voters, all alive, after killing %s" % " ".join(victims))
    took = time.monotonic() - t0
    evs = events(c, after=seq0)
    print("killed voters %s: 3 alive voters after %.1f s\n%s" % (victims, took, fmt_events(evs)))
    # The grace counts from the last heartbeat heard, up to one heartbeat before the kill.
    assert took >= 1.8, "dead voters demoted %.1f s after the kill, before autopilot_grace 2s" % took
    for v in victims:
        assert not nodes_of(st)[v]["voter"], nodes_of(st)[v]
        assert find(evs, "voter", node=v), "no voter event for %s:\n%s" % (v, fmt_events(evs))

    # A killed node comes back: it rejoins as a non-voter (3 voters are enough for 4 alive nodes)
    # and is the spare that autopilot gives the next dead voter's vote to.
    spare = victims[0]
    c.restart(spare)

    def spare_back():
        st = c.leader_status()
        n = nodes_of(st).get(spare, {})
        return st if n.get("state") == "alive" and not n.get("voter") else None

    st = c.wait_until(spare_back, 30, "%s back as an alive non-voter" % spare)

    # One more voter failure (the node holding web's active) is survived: 2 of 3 voters remain.
    third = c.service(st, "web")["active"]
    assert third == active and third != c.leader()
    seq1 = last_seq(c)
    c.kill9(third)
    rest = [m for m in names if m not in victims + [third]]

    def recovered():
        for m in rest:
            v = c.status(m)
            s = c.service(v, "web")
            if v["cluster"]["leader"] in rest and v["cluster"]["has_quorum"] and s["active"] in rest:
                if s["epoch"] > epoch:
                    return v
        return None

    v = c.wait_until(recovered, 30, "a leader with quorum among %s and web failed over there" % rest)
    s = c.service(v, "web")
    print("killed %s too: leader %s, web on %s (epoch %d)" % (third, v["cluster"]["leader"], s["active"], s["epoch"]))
    wait_active(c, min_epoch=s["epoch"], log=c.overlap_log)

    # ... and after the grace the dead voter's vote goes to the spare: 3 alive voters again.
    def replaced():
        st = c.leader_status()
        voters = sorted(n["name"] for n in st["nodes"] if n["voter"] and n["state"] == "alive")
        return st if voters == sorted(rest + [spare]) else None

    c.wait_until(replaced, 30, "voters %s after %s died" % (sorted(rest + [spare]), third))
    evs = events(c, after=seq1)
    assert find(evs, "voter", node=third, to="non-voter"), fmt_events(evs)
    promoted = find(evs, "voter", node=spare, to="voter")
    assert promoted, "no promotion of the spare %s:\n%s" % (spare, fmt_events(evs))
    assert any(spare in e["cause"] for e in find(evs, "voter", node=third)), fmt_events(evs)
    intervals(c)


# ---------------------------------------------------------------- events CLI


def test_events_cli_lists_filters_and_follows(cluster):
    c = cluster
    c.form()
    c.apply(web(c, standbys=1) + "\n[service other]\nrun = exec sleep 600\nstandbys = 0\nnodes = n3\n")
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    wait_roles(c, lambda a, sb, st: len(sb) == 1, "one standby")

    r = cli_ok(c, "events", "--json")
    evs = json.loads(r.stdout)
    assert isinstance(evs, list) and evs, r.stdout
    for e in evs:
        missing = {"seq", "time_ms", "time", "kind", "service", "node", "from", "to", "cause"} - set(e)
        assert not missing, "event without %s: %r" % (missing, e)
        assert isinstance(e["cause"], str) and e["cause"].strip(), "event without a cause: %r" % e
    assert [e["seq"] for e in evs] == sorted({e["seq"] for e in evs}), "seqs not increasing"
    kinds = {e["kind"] for e in evs}
    assert {"node", "config", "role"} <= kinds, kinds

    only = json.loads(cli_ok(c, "events", "--service", "web", "--json").stdout)
    assert only and all(e["service"] == "web" for e in only), fmt_events(only)
    assert len(only) < len(evs) and find(only, "role", node=active, to="active"), fmt_events(only)
    mine = json.loads(cli_ok(c, "events", "--node", active, "--json").stdout)
    assert mine and all(e["node"] == active for e in mine), fmt_events(mine)
    two = json.loads(cli_ok(c, "events", "--limit", "2", "--json").stdout)
    assert len(two) == 2, fmt_events(two)

    last = last_seq(c)
    env = dict(os.environ)
    env.pop("UNDERSTUDY_API", None)
    env["UNDERSTUDY_TOKEN_FILE"] = c.token_file()
    p = subprocess.Popen(
        [BIN, "--api", c.nodes["n2"].api, "events", "--follow", "--json", "--service", "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    got = []  # (wall time ns when read, line)

    def read():
        for line in p.stdout:
            got.append((time.time_ns(), line))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        # Let it print what it has (if it starts with history) before the switchover.
        deadline = time.monotonic() + 1.0
        while not got and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, "events --follow exited %d: %s" % (p.returncode, p.stderr.read())
        cli_ok(c, "switchover", "web")

        def switched():
            for when, line in got:
                e = json.loads(line)
                if e["seq"] > last and e["kind"] == "role" and "switchover" in e["cause"]:
                    return when, e
            return None

        when, e = c.wait_until(switched, 5, "events --follow to print the switchover")
        delay = (when / 1e6) - e["time_ms"]
        print("events --follow printed #%d (%s) %.0f ms after it was recorded" % (e["seq"], e["cause"], delay))
        assert delay <= 2000, "the switchover event came %.0f ms late" % delay
        for _, line in got:
            assert json.loads(line)["service"] == "web", line
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        t.join(5)
