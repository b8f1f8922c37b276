"""Planned agent restarts (SIGUSR2) move nothing (issue 11, "Restarting or upgrading the agent
moves nothing"), on real network namespaces (tests/netns.py, harness in nsharness.py).

The service `web` (probe.py serve on :8080, one cold standby) has the VIP 198.18.0.200 and
`proxy = 0.0.0.0:8000 -> 8080` on every node.

  test_rolling_restart_moves_nothing: every agent in turn gets SIGUSR2, exits with status 75
      (its guardian keeps the instances, the VIP and the proxy's listening socket) and is started
      again at once; the new agent adopts what its guardian holds. Meanwhile a load of 500
      requests/s (a new TCP connection each) goes through the proxy of one node and 100
      requests/s through the VIP. Asserted: 0 failed requests on either, the epoch never changes,
      the active's service process keeps its PID throughout, no node ever held the VIP together
      with another, and each restarted agent's registration says it adopted its instances.
  test_restart_too_late_fails_over: SIGUSR2 to the active's agent, which is then NOT started
      again: its guardian fences the active by the lease end (VIP dropped, process killed) and
      the standby takes over under a new epoch, as after a kill -9. Started again afterwards, the
      agent finds no guardian to adopt from and joins as a standby.

Measured values are printed (pytest -s or -rP). Run as root; skipped only without root or `ip netns`.
"""

import os
import signal
import time

import pytest

import nsharness as H

PROXY_RATE = 500
VIP_RATE = 100
EXIT_RESTART = 75


@pytest.fixture
def nsh(request, tmp_path):
    yield from H.harness(request, tmp_path)


def proxy_url(h, n):
    return "http://%s:%d/" % (h.bed.ip[n], H.PROXY_PORT)


def vip_url():
    return "http://%s:%d/" % (H.VIP, H.HTTP_PORT)


def wait_proxies(h, active, epoch):
    want = h.body(active, epoch)
    for n in h.nodes:
        h.wait(
            "the proxy on %s leading to %s" % (n, want),
            lambda n=n: h.http_get(proxy_url(h, n)) == (True, want),
            15,
            0.1,
        )


def active_pid(h, node, active):
    st = h.status(node)
    inst = h.instance(st, active)
    return inst and inst.get("pid")


def usr2_restart(h, n):
    """SIGUSR2 to n's agent, wait for its exit (status 75), start it again at once; returns
    (ms from the signal to the exit, ms from the signal to the new process)."""
    p = h.agents[n]
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGUSR2)
    rc = p.wait(timeout=10)
    t1 = time.monotonic()
    assert rc == EXIT_RESTART, "the agent of %s exited with %s after SIGUSR2, wanted %d" % (n, rc, EXIT_RESTART)
    h.note("agent %s exited after SIGUSR2 (status %d)" % (n, rc))
    h.start_agent(n)
    return round((t1 - t0) * 1000, 1), round((time.monotonic() - t0) * 1000, 1)


def adopted_event(h, n):
    st = h.status(n)
    if st is None:
        return None
    cp = h.cli(n, ["events", "--node", n, "--json"])
    return cp.returncode == 0 and ("restarted and adopted" in cp.stdout and n in cp.stdout)


def test_rolling_restart_moves_nothing(nsh):
    h = nsh
    h.start_agents()
    h.wait_formed()
    h.apply_ok(H.service_text(vip=True, proxy=True))
    leader, active, epoch = h.wait_steady(vip=True)
    wait_proxies(h, active, epoch)
    pid0 = active_pid(h, active, active)
    assert pid0, "no pid reported for the active instance on %s" % active
    body = h.body(active, epoch)

    via = next(n for n in h.nodes if n != active)
    prx = h.start_prober("proxy", proxy_url(h, via), rate=PROXY_RATE, workers=4, timeout=3.0, duration=120)
    vip = h.start_prober("vip", vip_url(), rate=VIP_RATE, workers=2, timeout=3.0, duration=120)
    prx.wait_ok(PROXY_RATE, timeout=15)
    vip.wait_ok(VIP_RATE, timeout=15)

    order = [n for n in h.nodes if n != active and n != via] + [via, active]
    figures = []
    for n in order:
        t_ev = H.now_ns()
        exit_ms, back_ms = usr2_restart(h, n)
        # Back: every agent agrees on the same active and epoch, and n's registration (its new
        # incarnation) says that it adopted its instances.
        h.wait("%s registered its adoption" % n, lambda n=n: adopted_event(h, n), 20, 0.2)
        l2, a2, e2 = h.wait_steady(vip=True)
        assert (a2, e2) == (active, epoch), "after restarting %s: active %s epoch %s, wanted %s %s" % (
            n,
            a2,
            e2,
            active,
            epoch,
        )
        pid = active_pid(h, active, active)
        assert pid == pid0, "the active's process changed from %s to %s after restarting %s" % (pid0, pid, n)
        figures.append(dict(node=n, role="active" if n == active else "standby/other", exit_ms=exit_ms, back_ms=back_ms))
        h.note("restarted %s: %s" % (n, figures[-1]))
        prx.wait("1 s of load after restarting %s" % n, lambda rs: rs and rs[-1]["t_send_ns"] >= t_ev + 1e9, 15)

    recs = {"proxy": prx.stop(), "vip": vip.stop()}
    for name, rs in recs.items():
        failed = [r for r in rs if not r["ok"]]
        other = [r for r in rs if r["ok"] and r["body"] != body]
        lat = sorted((r["t_done_ns"] - r["t_send_ns"]) / 1e6 for r in rs if r["ok"])
        fig = dict(
            requests=len(rs),
            failed=len(failed),
            latency_p50_ms=round(lat[len(lat) // 2], 1) if lat else None,
            latency_max_ms=round(lat[-1], 1) if lat else None,
        )
        print("MEASURED rolling USR2 restart through the %s: %s" % (name, fig))
        assert not failed, "%s: %d of %d requests failed during the rolling restart (%s); first: %s" % (
            name,
            len(failed),
            len(rs),
            H.counter_text(r["error"] for r in failed),
            [(h.ms(r["t_send_ns"]), h.ms(r["t_done_ns"]), r["error"]) for r in failed[:10]],
        )
        assert not other, "%s: %d answers not from %s" % (name, len(other), body)
        assert len(rs) > 0.5 * (PROXY_RATE if name == "proxy" else VIP_RATE) * 3
    print("MEASURED rolling USR2 restart: %s" % figures)
    assert not h.vip_overlaps(), "two nodes held the VIP at once: %s" % h.vip_overlaps()
    st = h.status(leader if h.running(leader) else active)
    assert H.Harness.svc(st)["epoch"] == epoch


def test_restart_too_late_fails_over(nsh):
    h = nsh
    h.start_agents()
    h.wait_formed()
    h.apply_ok(H.service_text(vip=True, proxy=False))
    leader, active, epoch = h.wait_steady(vip=True)
    pid0 = active_pid(h, active, active)
    p = h.agents[active]
    t0 = H.now_ns()
    os.kill(p.pid, signal.SIGUSR2)
    assert p.wait(timeout=10) == EXIT_RESTART
    # Not started again: the guardian fences by the lease, the standby takes over.
    others = [n for n in h.nodes if n != active]
    _, new, new_epoch, _ = h.wait_new_active(others, active, epoch, timeout=20)
    t_new = H.now_ns()
    assert new != active and new_epoch > epoch
    h.wait("the old active's process gone", lambda: not os.path.exists("/proc/%d" % pid0), 5, 0.05)
    h.wait("the VIP only on %s" % new, lambda: h.vip_holders() == [new], 10, 0.05)
    print("MEASURED USR2 without restart: failover to %s (epoch %d) %.0f ms after the signal" % (new, new_epoch, (t_new - t0) / 1e6))
    assert not h.vip_overlaps(), "two nodes held the VIP at once: %s" % h.vip_overlaps()
    # Started late: nothing to adopt; it comes back as a standby under the new epoch.
    h.start_agent(active)
    l2, a2, e2 = h.wait_steady(vip=True)
    assert (a2, e2) == (new, new_epoch)
    assert "did not hand over" not in H.tail(h.logs[active], 200)
