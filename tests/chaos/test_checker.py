"""Unit tests of tests/chaos/checker.py on hand-made histories: per property, a history that breaks it
is caught and its clean twin passes. Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/chaos"""

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checker  # noqa: E402

NODES = ["n1", "n2", "n3"]


def writes(svc, node, epoch, t0, t1, period=10):
    return [{"svc": svc, "node": node, "epoch": epoch, "t": float(t)} for t in range(int(t0), int(t1) + 1, period)]


def status(leader, active, epoch, standbys, alive=NODES):
    inst = [{"node": active, "role": "active", "state": "active"}]
    inst += [{"node": s, "role": "standby", "state": "standby"} for s in standbys]
    return {
        "cluster": {"leader": leader, "has_quorum": True},
        "nodes": [{"name": n, "state": "alive" if n in alive else "dead"} for n in NODES],
        "services": [{"name": "a", "active": active, "epoch": epoch, "instances": inst}],
    }


def base(end=10000):
    """A clean history: service a active on n1 epoch 1 until the kill -9 of n1's agent at 4000 ms,
    n2 takes over with epoch 2 at 4600 ms; healed at 8000 ms, steady at 8500 ms."""
    w = writes("a", "n1", 1, 0, 4000) + writes("a", "n2", 2, 4600, end)
    snap = {"t": 8500.0, "statuses": {n: status("n2", "n2", 2, ["n1"]) for n in NODES}}
    return {
        "meta": {"seed": 1, "nodes": NODES, "services": {"a": {"standby": "cold", "standbys": 1}}, "t_end": end},
        "writes": w,
        "faults": [{"id": 1, "kind": "kill9_agent", "nodes": ["n1"], "start": 4005.0, "end": 5000.0, "out": True}],
        "answers": [
            {"svc": "a", "via": "vip", "t_send": 3000.0, "t_done": 3002.0, "ok": True, "node": "n1", "epoch": 1},
            {"svc": "a", "via": "vip", "t_send": 4300.0, "t_done": 5300.0, "ok": False, "node": None, "epoch": None},
            {"svc": "a", "via": "vip", "t_send": 5400.0, "t_done": 5402.0, "ok": True, "node": "n2", "epoch": 2},
            {"svc": "a", "via": "vip", "t_send": 6000.0, "t_done": 6002.0, "ok": True, "node": "n2", "epoch": 2},
        ],
        "vips": [
            {"svc": "a", "node": "n1", "from": 10.0, "until": 4010.0},
            {"svc": "a", "node": "n2", "from": 4590.0, "until": None},
        ],
        "heal": {"t": 8000.0, "snapshots": [snap]},
        "agent_exits": [],
        "leaks": [],
    }


def props(h):
    return sorted({v["property"] for v in checker.check(h)["violations"]})


def test_clean_history_passes():
    res = checker.check(base())
    assert res["violations"] == [], res["violations"]
    to = res["metrics"]["takeover_ms_by_kind"]["kill9_agent"]
    assert to["n"] == 1 and abs(to["median"] - 595.0) < 1e-6


def test_overlap_caught():
    h = base()
    h["writes"] += writes("a", "n2", 2, 3900, 4590)  # n2 starts while n1 still writes
    assert "overlap" in props(h)


def test_epoch_order_caught():
    h = base()
    for w in h["writes"]:
        if w["node"] == "n2":
            w["epoch"] = 1  # the new active reuses the old epoch
    assert "epoch-order" in props(h)
    h2 = base()
    for w in h2["writes"]:
        if w["node"] == "n2":
            w["epoch"] = 0  # ...or goes back
    assert "epoch-order" in props(h2)


def test_fencing_caught():
    h = base()
    h["writes"].append({"svc": "a", "node": "n1", "epoch": 1, "t": 6000.0})  # a late write of the deposed active
    p = props(h)
    assert "fencing" in p
    v = next(v for v in checker.check(h)["violations"] if v["property"] == "fencing")
    assert "epoch 1 at 6000.0" in v["msg"] and v["excerpt"]


def test_vip_overlap_caught():
    h = base()
    h["vips"][0]["until"] = 4700.0  # n1 still held it when n2 added it at 4590
    assert props(h) == ["vip-overlap"]


def test_stale_answer_caught():
    h = base()
    h["answers"].append({"svc": "a", "via": "proxy@n3", "t_send": 5500.0, "t_done": 5501.0, "ok": True,
                         "node": "n1", "epoch": 1})
    assert props(h) == ["stale-answer"]


def test_disruption_without_fault_caught():
    h = base()
    h["faults"][0]["nodes"] = ["n3"]  # the fault was on another node: n1's loss is unexplained
    p = props(h)
    assert "disruption" in p
    h2 = base()
    h2["writes"] = [w for w in h2["writes"] if not (w["node"] == "n2" and 6000 < w["t"] < 6400)]  # 400 ms pause
    v = [v for v in checker.check(h2)["violations"] if v["property"] == "disruption"]
    assert len(v) == 1 and "pause of 400 ms" in v[0]["msg"] and "none" in v[0]["msg"]


def test_pause_below_bound_is_no_disruption():
    h = base()
    h["writes"] = [w for w in h["writes"] if not (w["node"] == "n2" and 6000 < w["t"] < 6250)]  # 260 ms
    assert props(h) == []


def test_quorum_loss_explains_disruption():
    h = base()
    h["faults"] = [
        {"id": 1, "kind": "kill9_agent", "nodes": ["n2"], "start": 3900.0, "end": 5000.0, "out": True},
        {"id": 2, "kind": "isolate", "nodes": ["n3"], "start": 3950.0, "end": 5000.0, "out": True},
    ]
    assert "disruption" not in props(h)
    for f in h["faults"]:
        f["out"] = False  # e.g. light packet loss: the majority is still there, the active must stay
    assert "disruption" in props(h)


def test_heavy_loss_on_a_majority_explains_disruption():
    """Loss of LOSS_OUT_PCT or more on a majority of the nodes takes them out (the active on the third
    node cannot renew through them); less loss, or heavy loss on one node only, does not."""
    h = base()
    h["faults"] = [
        {"id": 1, "kind": "loss", "nodes": ["n2"], "start": 3900.0, "end": 5000.0, "out": False, "pct": 50},
        {"id": 2, "kind": "loss", "nodes": ["n3"], "start": 3950.0, "end": 5000.0, "out": False, "pct": 80},
    ]
    assert "disruption" not in props(h)
    h["faults"][0]["pct"] = checker.LOSS_OUT_PCT - 20
    assert "disruption" in props(h)
    h["faults"][0]["pct"] = 80
    h["faults"][1]["nodes"] = ["n2"]
    assert "disruption" in props(h)


def test_slow_takeover_caught():
    h = base()
    h["writes"] = writes("a", "n1", 1, 0, 4000) + writes("a", "n2", 2, 6500, 10000)  # 2.5 s
    p = props(h)
    assert p == ["takeover"], p
    # the same outage when another fault was in force is no single fault: measured, not judged
    h["faults"].append({"id": 2, "kind": "loss", "nodes": ["n3"], "start": 3000.0, "end": 4500.0, "out": False})
    assert props(h) == []
    assert checker.check(h)["metrics"]["takeover_ms_by_kind"]["kill9_agent"]["max"] == 2495.0


def test_takeover_counts_from_the_last_write_of_an_active_that_kept_working():
    # 30 % loss on n1 from 2000 ms: n1 renews through it until 4000 ms, n2 writes 600 ms later
    h = base()
    h["faults"] = [{"id": 1, "kind": "loss", "nodes": ["n1"], "start": 2000.0, "end": 6000.0, "out": False}]
    res = checker.check(h)
    assert res["violations"] == [], res["violations"]
    assert res["metrics"]["takeover_ms_by_kind"]["loss"]["max"] == 600.0
    # the same fault with the service down for 2.5 s is caught
    h["writes"] = writes("a", "n1", 1, 0, 4000) + writes("a", "n2", 2, 6500, 10000)
    assert props(h) == ["takeover"]


def test_never_taken_over_caught():
    h = base(end=10000)
    h["writes"] = writes("a", "n1", 1, 0, 4000)
    h["heal"]["snapshots"] = []
    p = props(h)
    assert "takeover" in p and "heal" in p


def test_heal_caught():
    h = base()
    h["heal"]["snapshots"] = [{"t": 8500.0, "statuses": {n: status("n2", "n2", 2, []) for n in NODES}}]
    v = [v for v in checker.check(h)["violations"] if v["property"] == "heal"]
    assert len(v) == 1 and "0 standby(s)" in v[0]["msg"]
    h2 = base()
    h2["heal"]["snapshots"][0]["statuses"]["n3"] = None
    assert props(h2) == ["heal"]
    h3 = base(end=40000)
    h3["heal"]["snapshots"][0]["t"] = 30000.0  # steady, but later than the bound
    assert props(h3) == ["heal"]
    h4 = base()
    h4["heal"]["snapshots"][0]["statuses"] = {n: status("n2", "n2", 2, ["n1"], alive=["n1", "n2"]) for n in NODES}
    assert props(h4) == ["heal"]


def test_agent_exit_and_leaks_caught():
    h = base()
    h["agent_exits"] = [{"node": "n3", "t": 7000.0, "code": 1}]
    h["leaks"] = ["n1 still holds ['198.18.0.201/24'] after its agent stopped"]
    assert props(h) == ["agent-exit", "leak"]
    h2 = base()
    h2["agent_exits"] = [{"node": "n1", "t": 4100.0, "code": 1}]  # during a fault on n1: reported, no violation
    res = checker.check(h2)
    assert res["violations"] == [] and res["metrics"]["agent_exits_during_faults"]


def test_unavailability_without_fault_reported():
    h = base()
    h["answers"].append({"svc": "a", "via": "vip", "t_send": 7000.0, "t_done": 8000.0, "ok": False, "node": None,
                         "epoch": None})
    h["answers"].append({"svc": "a", "via": "vip", "t_send": 8100.0, "t_done": 8101.0, "ok": True, "node": "n2",
                         "epoch": 2})
    u = checker.check(h)["metrics"]["unavailability"]
    assert u["runs"] == 2 and u["without_fault_ms"] == 1101.0 and u["with_fault_ms"] == 1102.0


def test_checker_is_pure():
    h = base()
    snapshot = copy.deepcopy(h)
    a = checker.check(h)
    assert h == snapshot and checker.check(h) == a


def test_settling_before_the_faults_is_not_judged():
    h = base()
    h["writes"] = writes("a", "n3", 0, 0, 500) + [w for w in h["writes"] if w["t"] > 1000]
    h["meta"]["t_faults"] = 1500.0
    assert props(h) == []
    h["meta"]["t_faults"] = 200.0
    assert props(h) == ["disruption"]


def waits(node, t0, t1, each=100.0, gap=20.0):
    """Waits of `each` ms for a CPU, one after the other (a run of `gap` ms between), from t0 to t1."""
    out, t = [], t0
    while t + each <= t1:
        out.append({"node": node, "start": t, "end": t + each, "ms": each, "runs": 1})
        t += each + gap
    return out


def test_stalls_from_waits():
    assert checker.stalls(waits("n1", 1000, 1250)) == []  # 200 ms of waiting: not enough
    st = checker.stalls(waits("n1", 1000, 1500))  # 4 x 100 ms within 480 ms
    assert st == [{"node": "n1", "start": 1000, "end": 1460, "wait_ms": 400.0}], st
    sparse = waits("n2", 1000, 3000, each=60.0, gap=200.0)  # 60 ms every 260 ms: 180 ms per 600 at most
    assert checker.stalls(sparse) == []
    one = [{"node": "n3", "start": 500.0, "end": 850.0, "ms": 350.0, "runs": 1}]
    assert checker.stalls(one) == [{"node": "n3", "start": 500.0, "end": 850.0, "wait_ms": 350.0}]
    busy = waits("n1", 1000, 1500)  # the same waits, but the agent itself kept a CPU busy: its own doing
    for w in busy:
        w["cpu"] = 60.0
    assert checker.stalls(busy) == []


def test_stall_of_the_actives_agent_explains_its_disruption():
    h = base()
    h["faults"] = []  # n1's role moved with no injected fault...
    assert "disruption" in props(h)
    h["waits"] = waits("n1", 3500, 4000)
    res = checker.check(h)
    assert res["violations"] == [], res["violations"]  # ...but the machine did not run n1's agent
    assert res["metrics"]["stalls"] == 1 and res["metrics"]["faults"] == 0
    assert res["metrics"]["takeovers"] == []  # observed, not injected: no takeover bound
    assert len(res["metrics"]["excused_by_starvation"]) == 1  # reported, not hidden


def test_stall_of_another_node_alone_explains_nothing():
    h = base()
    h["faults"] = []
    h["waits"] = waits("n3", 3500, 4000)
    assert "disruption" in props(h)
    # with an injected fault that takes out the other voter, a majority was out
    h["faults"] = [{"id": 1, "kind": "link_down", "nodes": ["n2"], "start": 3600.0, "end": 4500.0, "out": True}]
    assert "disruption" not in props(h)


def test_stall_makes_a_fault_no_single_one():
    h = base()
    h["writes"] = writes("a", "n1", 1, 0, 4000) + writes("a", "n2", 2, 6500, 10000)  # 2.5 s
    assert props(h) == ["takeover"]
    h["waits"] = waits("n2", 4100, 5000)
    assert props(h) == []


class _FakeProc:
    def __init__(self, pid):
        self.pid = pid

    def poll(self):
        return None


class _FakeRun:
    def __init__(self):
        self.nodes = ["n1"]
        self.h = type("H", (), {"agents": {"n1": _FakeProc(7)}})()

    def ms(self, ns):
        return ns / 1e6


def test_starvation_monitor_records_long_waits(monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import nemesis

    clock = {"t": 0}
    stat = {"wait": 0, "runs": 0}
    monkeypatch.setattr(nemesis.time, "monotonic_ns", lambda: clock["t"])
    mon = nemesis.StarvationMonitor(_FakeRun())
    monkeypatch.setattr(mon, "_read", lambda pid: (stat["wait"], stat["runs"], 0))
    ms = 1000000

    def step(dt, dw, dr):
        clock["t"] += dt * ms
        stat["wait"] += dw * ms
        stat["runs"] += dr
        mon.sample()

    step(20, 0, 0)  # first sample: the baseline
    for _ in range(50):  # loaded but running: 2 ms waits, often (8 ms of 20: 240 ms per 600, no stall)
        step(20, 8, 4)
    step(20, 0.5, 1)  # below LONG_WAIT_MS: not recorded
    step(20, 0, 0)  # runnable, not run yet: the kernel counts the wait when it ends
    step(20, 130, 1)  # ...here: one wait of 130 ms
    step(20, 90, 2)
    got = mon.stop()
    assert len(got) == 52 and got[-2] == {"node": "n1", "start": 950.0, "end": 1080.0, "ms": 130.0, "runs": 1, "cpu": 0.0}
    assert mon.wait_ms["n1"] == 50 * 8 + 0.5 + 130 + 90
    assert checker.stalls(got[:50]) == []
    st = checker.stalls(got)  # 130 + 90 + the 8 ms samples of the 600 ms before
    assert len(st) == 1 and st[0]["end"] == 1100.0, st


def test_longest_outage_reported():
    m = checker.check(base())["metrics"]
    assert m["longest_outage_ms"] == {"a": 600.0}
