"""Who pings whom (docs/timing.md, "Who pings whom"; src/core/fanout.h): every node pings the
voters and the leader every heartbeat, the leader pings every node every heartbeat, a voter that
does not lead pings a non-voter (which knows it votes) and two non-voters ping each other only
every few heartbeats, and silence bounds follow what each peer announced.

Seven agents: five voters (the controller grows the voters to five) and two non-voters. Against the
real agents: a non-voter hears the other non-voter and a voter that does not lead at the reduced
rate and the leader at the heartbeat rate, and that voter hears the non-voter's renewals every
heartbeat (their own /metrics counters); every node still shows every peer alive (the leader and
the non-voters themselves), and a frozen non-voter is declared dead by the leader within the
profile's dead_after (it hears every node every heartbeat) while the other non-voter, which hears
it only every few heartbeats, stretches its bound.
"""

import re
import time

from conftest import wait_until

HEARTBEAT_MS = 100  # default profile
DEAD_MS = 1000
SLOW_MS = 10 * HEARTBEAT_MS  # US_FANOUT_SLOW_MIN heartbeats (fewer than 40 slow peers)


def metrics(c, node):
    code, _, body = c.api(node, "/metrics", timeout=10)
    assert code == 200
    return body.decode()


def sample(text, name, node):
    m = re.search(r'^%s\{node="%s"\} ([0-9.e+]+)$' % (name, node), text, re.M)
    return float(m.group(1)) if m else None


def states(c, node):
    return {x["name"]: x["state"] for x in c.status(node, timeout=10)["nodes"]}


def test_non_voters_ping_each_other_slowly_and_liveness_holds(cluster):
    c = cluster
    names = ["n%d" % i for i in range(1, 8)]
    c.form(("n1", "n2", "n3"))
    for name in names[3:]:
        c.add_node(name)

    def settled():
        st = c.leader_status()
        nodes = {x["name"]: x for x in st["nodes"]}
        if set(nodes) != set(names) or any(x["state"] != "alive" for x in nodes.values()):
            return None
        voters = [m for m in names if nodes[m]["voter"]]
        return voters if len(voters) == 5 else None

    voters = c.wait_until(settled, 120, "7 nodes alive, 5 of them voters")
    a, b = [m for m in names if m not in voters]
    leader = c.leader()
    v = next(m for m in voters if m != leader)

    # What each says about its pings: the other non-voter and the voter v every SLOW_MS, the leader
    # every heartbeat; a renews with v every heartbeat.
    def intervals():
        t, tv = metrics(c, a), metrics(c, v)
        got = (sample(t, "understudy_node_ping_interval_seconds", b),
               sample(t, "understudy_node_ping_interval_seconds", v),
               sample(t, "understudy_node_ping_interval_seconds", leader),
               sample(tv, "understudy_node_ping_interval_seconds", a))
        want = (SLOW_MS / 1000, SLOW_MS / 1000, HEARTBEAT_MS / 1000, HEARTBEAT_MS / 1000)
        return got if got == want else None

    c.wait_until(intervals, 30, "%s to hear %s and %s every %d ms and %s every heartbeat, and %s to hear %s "
                 "every heartbeat" % (a, b, v, SLOW_MS, leader, v, a))

    # The rates themselves, over a few seconds, from a's and v's own counters.
    t0 = time.monotonic()
    m0, mv0 = metrics(c, a), metrics(c, v)
    time.sleep(4)
    m1, mv1 = metrics(c, a), metrics(c, v)
    dt = time.monotonic() - t0

    def rate(x0, x1, peer):
        return (sample(x1, "understudy_node_pings_received_total", peer)
                - sample(x0, "understudy_node_pings_received_total", peer)) / dt

    rate_b, rate_v, rate_l = rate(m0, m1, b), rate(m0, m1, v), rate(m0, m1, leader)
    rate_a_at_v = rate(mv0, mv1, a)
    print("pings/s at %s: from non-voter %s %.2f, from voter %s %.2f, from the leader %s %.2f; at %s from %s %.2f"
          % (a, b, rate_b, v, rate_v, leader, rate_l, v, a, rate_a_at_v))
    assert c.leader() == leader, "the leader changed during the measurement"
    assert rate_b <= 2.0 * 1000 / SLOW_MS, "non-voter %s pings %s %.2f/s" % (b, a, rate_b)
    assert rate_b > 0, "non-voter %s stopped pinging %s" % (b, a)
    assert rate_v <= 2.0 * 1000 / SLOW_MS, "voter %s pings non-voter %s %.2f/s" % (v, a, rate_v)
    assert rate_l >= 4 * rate_b, "leader %s pings %s only %.2f/s (non-voter: %.2f/s)" % (leader, a, rate_l, rate_b)
    assert rate_a_at_v >= 4 * rate_b, "%s renews with voter %s only %.2f/s" % (a, v, rate_a_at_v)

    # Every node, the non-voters included, shows every peer alive.
    for node in names:
        st = states(c, node)
        assert all(x == "alive" for x in st.values()), "%s sees %s" % (node, st)

    # Freeze b: the leader hears every node every heartbeat and declares it dead within dead_after;
    # a hears b only every SLOW_MS and waits for its stretched bound (us_fanout_silence).
    t_stop = c.stop(b)
    try:
        wait_until(lambda: states(c, leader)[b] == "dead", 10, "the leader to declare %s dead" % b, interval=0.02)
        t_leader = time.monotonic() - t_stop
        st_a = states(c, a)
        t_a_check = time.monotonic() - t_stop
        wait_until(lambda: states(c, a)[b] == "dead", 20, "%s to declare %s dead" % (a, b), interval=0.05)
        t_a = time.monotonic() - t_stop
    finally:
        c.cont(b)
    print("%s frozen: dead on the leader after %.0f ms, on non-voter %s after %.0f ms"
          % (b, t_leader * 1000, a, t_a * 1000))
    # dead_after plus a heartbeat's phase and the status call's own time on a loaded machine.
    assert t_leader * 1000 <= DEAD_MS + 1000, "the leader took %.0f ms" % (t_leader * 1000)
    if t_a_check * 1000 < DEAD_MS + 3 * (SLOW_MS - HEARTBEAT_MS) - 500:
        assert st_a[b] != "dead", "%s declared %s dead after %.0f ms" % (a, b, t_a_check * 1000)
    assert t_a > t_leader

    # Back: alive again everywhere.
    c.wait_until(lambda: all(states(c, n)[b] == "alive" for n in (leader, a)), 30, "%s alive again" % b)
