"""Integration tests of per-service notify hooks (`notify = COMMAND`, src/node/notify.h): real agents,
real hook processes.

The hook (HOOK_SCRIPT, written into the test's directory) appends one JSON line when it starts and
one when it ends to DIR/notify-NODE.log, with its environment and the event it read on stdin, and
sleeps a little in between so that hooks that ran at the same time would overlap visibly. When
the file DIR/hang exists, the first hook to see it removes it and sleeps for a minute instead
(to be killed at notify_timeout).

1. initial placement, a switchover and a kill -9 of the active's process (failover): every event
   about a node runs that node's hook, in strictly increasing seq order, never two at a time;
   node-less events (config) run once, on the leader; environment and stdin agree with each
   other and with GET /v1/events; a restarted agent does not replay the history.
2. a hook that outlives notify_timeout is killed with its process group, the agent says so, and
   the next event's hook still runs.
3. a hook still running when its agent stops is killed after a short grace; nothing is left.
4. the hook of a service whose definition changed is the new one, also for the events of its
   removal (run from what the agent remembers of the removed definition).
"""

import json
import os
import signal
import time

from conftest import PYTHON, pid_running
from test_health import active_pid, events, fmt_events, svc_ini, wait_active

HOOK_SCRIPT = r'''
import json, os, sys, time

log_dir, pause = sys.argv[1], float(sys.argv[2])
start = time.time_ns()
raw = sys.stdin.read()
env = {k: v for k, v in os.environ.items() if k.startswith("UNDERSTUDY_")}
hang = False
try:
    os.unlink(os.path.join(log_dir, "hang"))
    hang = True
except FileNotFoundError:
    pass
path = os.path.join(log_dir, "notify-%s.log" % env.get("UNDERSTUDY_NODE", "unknown"))


def record(**kw):
    line = json.dumps(kw, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line: lines never interleave
    finally:
        os.close(fd)


record(phase="start", t=start, pid=os.getpid(), pgrp=os.getpgrp(), env=env, stdin=raw, hang=hang)
print("hook of event %s (%s) on %s" % (env.get("UNDERSTUDY_EVENT_SEQ"), env.get("UNDERSTUDY_EVENT_KIND"),
                                        env.get("UNDERSTUDY_NODE")), flush=True)
time.sleep(60 if hang else pause)
record(phase="end", t=time.time_ns(), pid=os.getpid(), seq=env.get("UNDERSTUDY_EVENT_SEQ"))
'''

EVENT_FIELDS = ("seq", "time_ms", "time", "kind", "service", "node", "from", "to", "cause")


def write_hook(c):
    path = os.path.join(c.root, "notify_hook.py")
    with open(path, "w") as f:
        f.write(HOOK_SCRIPT)
    return path


def notify_cmd(c, hook, pause=0.2, log_dir=None):
    return "exec %s %s %s %s" % (PYTHON, hook, log_dir or c.root, pause)


def hook_runs(c, node, log_dir=None):
    """The hooks that ran on `node`, in the order they started: dicts with start, end (None if
    the hook never finished), pid, env, event (stdin parsed), hang."""
    path = os.path.join(log_dir or c.root, "notify-%s.log" % node)
    runs, by_pid = [], {}
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["phase"] == "start":
                run = dict(start=r["t"], end=None, pid=r["pid"], pgrp=r["pgrp"], env=r["env"], hang=r["hang"])
                run["event"] = json.loads(r["stdin"])
                runs.append(run)
                by_pid[r["pid"]] = run
            else:
                by_pid[r["pid"]]["end"] = r["t"]
    return runs


def fmt_runs(runs):
    if not runs:
        return "  (no hooks ran)"
    t0 = runs[0]["start"]
    return "\n".join(
        "  #%s %-6s %-4s %s -> %s  %+9.1f .. %s ms%s"
        % (
            r["env"].get("UNDERSTUDY_EVENT_SEQ"),
            r["env"].get("UNDERSTUDY_EVENT_KIND"),
            r["env"].get("UNDERSTUDY_EVENT_NODE") or "-",
            r["env"].get("UNDERSTUDY_EVENT_FROM"),
            r["env"].get("UNDERSTUDY_EVENT_TO"),
            (r["start"] - t0) / 1e6,
            "%+9.1f" % ((r["end"] - t0) / 1e6) if r["end"] else "(killed)",
            " hang" if r["hang"] else "",
        )
        for r in runs
    )


def expected_runs(evs, node, leader):
    """Seqs of the web events whose hooks must run on `node`."""
    return [e["seq"] for e in evs if e["service"] == "web" and (e["node"] == node or (not e["node"] and node == leader))]


def wait_hooks_done(c, evs, leader, nodes=("n1", "n2", "n3"), timeout=30):
    """Wait until every node's hooks for `evs` have run to their end; returns {node: runs}."""

    def done():
        out = {}
        for n in nodes:
            runs = hook_runs(c, n)
            ended = {r["event"]["seq"] for r in runs if r["end"] or r["hang"]}
            if not set(expected_runs(evs, n, leader)) <= ended:
                return None
            out[n] = runs
        return out

    return c.wait_until(done, timeout, "the notify hooks of events %s..%s" % (evs[0]["seq"], evs[-1]["seq"]))


def check_runs(node, runs, evs):
    """One node's hooks: strictly increasing seqs, one at a time, env and stdin agree with each
    other and with the event history."""
    by_seq = {e["seq"]: e for e in evs}
    seqs = [r["event"]["seq"] for r in runs]
    assert seqs == sorted(set(seqs)), "%s: hooks not in strictly increasing seq order:\n%s" % (node, fmt_runs(runs))
    for a, b in zip(runs, runs[1:]):
        assert a["end"] is not None or a["hang"], "%s: a hook that did not end:\n%s" % (node, fmt_runs(runs))
        if a["end"] is not None:
            assert a["end"] < b["start"], "%s: hooks of events %d and %d overlapped:\n%s" % (
                node,
                a["event"]["seq"],
                b["event"]["seq"],
                fmt_runs(runs),
            )
    for r in runs:
        e, env = r["event"], r["env"]
        assert sorted(e) == sorted(EVENT_FIELDS), e
        want = by_seq.get(e["seq"])
        assert want is not None, "%s ran the hook of event %d, which is not in the history" % (node, e["seq"])
        for k in EVENT_FIELDS:
            assert e[k] == want[k], "%s: stdin %s=%r, the history has %r" % (node, k, e[k], want[k])
        assert env["UNDERSTUDY_EVENT_SEQ"] == str(e["seq"])
        assert env["UNDERSTUDY_EVENT_TIME_MS"] == str(e["time_ms"])
        assert env["UNDERSTUDY_EVENT_TIME"] == e["time"]
        assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["time_ms"] // 1000)) + ".%03dZ" % (
            e["time_ms"] % 1000
        ) == e["time"]
        for k in ("kind", "from", "to", "cause", "node"):
            assert env["UNDERSTUDY_EVENT_" + k.upper()] == e[k], (k, env, e)
        assert env["UNDERSTUDY_SERVICE"] == "web" == e["service"]
        assert env["UNDERSTUDY_NODE"] == node
        assert env["UNDERSTUDY_ROLE"] in ("active", "standby", "none"), env
        assert env["UNDERSTUDY_EPOCH"].isdigit(), env
        assert env["UNDERSTUDY_DATA_DIR"].endswith(os.path.join(node, "data")), env
        assert r["pgrp"] == r["pid"], "the hook runs in a process group of its own"


# ---------------------------------------------------------------- 1. order, one at a time, contents


def test_notify_hooks_in_order_one_at_a_time(cluster):
    c = cluster
    c.form()
    hook = write_hook(c)
    leader = c.leader()
    seq0 = events(c)[-1]["seq"] if events(c) else 0
    ini = svc_ini(
        c,
        run=c.service_cmd(),
        standbys=1,
        nodes="n1 n2 n3",
        notify=notify_cmd(c, hook),
        notify_timeout="5s",
    )
    c.apply(ini)
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    r = c.cli("switchover", "web")
    assert r.returncode == 0, (r.stdout, r.stderr)
    second, epoch2, _ = wait_active(c, not_node=active, min_epoch=epoch + 1, log=c.overlap_log)
    os.kill(active_pid(c, second), signal.SIGKILL)  # the service's process, not the agent
    third, epoch3, _ = wait_active(c, not_node=second, min_epoch=epoch2 + 1, log=c.overlap_log)
    # The leader that ran the config event's hook: leadership may move on afterwards (a leader
    # hands it to a node without active roles), which changes nothing below.

    evs = [e for e in events(c) if e["seq"] > seq0]
    web = [e for e in evs if e["service"] == "web"]
    print("%s -> %s (switchover) -> %s (kill -9); events:\n%s" % (active, second, third, fmt_events(evs)))
    assert len(web) >= 8, "expected placement, switchover and failover events:\n%s" % fmt_events(web)
    done = wait_hooks_done(c, web, leader)
    for node, runs in done.items():
        print("hooks on %s:\n%s" % (node, fmt_runs(runs)))
        check_runs(node, runs, evs)
        # Exactly the events of this node (and node-less ones on the leader), each once.
        assert [r["event"]["seq"] for r in runs] == expected_runs(web, node, leader), (
            "%s ran the hooks of the wrong events:\n%s\nexpected seqs %s of:\n%s"
            % (node, fmt_runs(runs), expected_runs(web, node, leader), fmt_events(web))
        )
        # The role a hook sees is the node's role when it starts: after the last one, the final role.
        final = "active" if node == third else None
        if final:
            assert runs[-1]["env"]["UNDERSTUDY_ROLE"] == "active", fmt_runs(runs)
            assert runs[-1]["env"]["UNDERSTUDY_EPOCH"] == str(epoch3)
            # Where the active is, as when the hook started (core/role.h).
            last = runs[-1]["env"]
            assert last.get("UNDERSTUDY_ACTIVE_NODE") == third, fmt_runs(runs)
            assert last.get("UNDERSTUDY_ACTIVE_EPOCH") == str(epoch3), fmt_runs(runs)
            assert last.get("UNDERSTUDY_ACTIVE_HOST") == c.nodes[third].address.rsplit(":", 1)[0], fmt_runs(runs)
    # The config event ran once, on the leader; queues formed (several events at once), yet no
    # two hooks of one node overlapped (checked above).
    config = [e for e in web if e["kind"] == "config"]
    assert config and all(not e["node"] for e in config), fmt_events(web)
    assert any(len(done[n]) >= 3 for n in done), {n: len(r) for n, r in done.items()}
    # Output goes to DATA_DIR/logs/web.notify.log.
    with open(os.path.join(c.nodes[third].data_dir, "logs", "web.notify.log")) as f:
        text = f.read()
    assert "hook of event %d (role) on %s" % (done[third][-1]["event"]["seq"], third) in text, text

    # A restarted agent does not replay the history it finds, but runs the hooks of what happens
    # after it is back.
    last = max(e["seq"] for e in events(c))
    victim = [n for n in ("n1", "n2", "n3") if n not in (leader, third)][0]
    before = len(hook_runs(c, victim))
    c.restart(victim)
    c.wait_until(
        lambda: c.status(victim)["cluster"]["leader"] == c.leader(), 30, "%s back under the leader" % victim
    )
    t_back = time.time() * 1000  # its loop answers: its first look at the history is behind it
    c.wait_until(
        lambda: {n["name"]: n["state"] for n in c.leader_status()["nodes"]}[victim] == "alive",
        20,
        "the leader to see %s alive" % victim,
    )
    r = c.cli("switchover", "web", "--to", victim)
    assert r.returncode == 0, (r.stdout, r.stderr)
    evs = events(c)
    later = [e for e in evs if e["service"] == "web" and e["time_ms"] >= t_back and e["node"] == victim]
    assert later, fmt_events(evs)
    wait_hooks_done(c, later, leader, nodes=(victim,))
    runs = hook_runs(c, victim)[before:]
    print("hooks on %s after its restart (history up to %d):\n%s" % (victim, last, fmt_runs(runs)))
    assert all(r["event"]["seq"] > last for r in runs), "old events replayed after a restart:\n%s" % fmt_runs(runs)
    assert runs[-1]["env"]["UNDERSTUDY_ROLE"] == "active", fmt_runs(runs)
    check_runs(victim, hook_runs(c, victim), evs)


# ---------------------------------------------------------------- 2. timeout


def test_notify_hook_timeout_kills_and_goes_on(cluster):
    c = cluster
    c.form()
    hook = write_hook(c)
    leader = c.leader()
    ini = svc_ini(
        c,
        run=c.service_cmd(),
        standbys=1,
        nodes="n1 n2 n3",
        notify=notify_cmd(c, hook, pause=0.05),
        notify_timeout="1s",
    )
    c.apply(ini)
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    seq0 = events(c)[-1]["seq"]
    wait_hooks_done(c, [e for e in events(c) if e["service"] == "web"], leader)

    open(os.path.join(c.root, "hang"), "w").close()
    r = c.cli("switchover", "web", "--to", [n for n in ("n1", "n2", "n3") if n != active][0])
    assert r.returncode == 0, (r.stdout, r.stderr)
    new, _, _ = wait_active(c, not_node=active, min_epoch=epoch + 1, log=c.overlap_log)
    web = [e for e in events(c) if e["service"] == "web" and e["seq"] > seq0]
    print("switchover %s -> %s; events:\n%s" % (active, new, fmt_events(web)))
    done = wait_hooks_done(c, web, leader)
    hung = [(n, r) for n, runs in done.items() for r in runs if r["hang"]]
    assert len(hung) == 1, {n: fmt_runs(r) for n, r in done.items()}
    node, h = hung[0]
    runs = done[node]
    print("hooks on %s:\n%s" % (node, fmt_runs(runs)))
    check_runs(node, runs, events(c))
    assert h["end"] is None, "the hanging hook finished:\n%s" % fmt_runs(runs)
    # Killed with its group, and the agent says so.
    c.wait_until(lambda: not pid_running(h["pid"]), 5, "the hanging hook (pid %d) to be gone" % h["pid"])
    seq = h["event"]["seq"]
    c.wait_until(
        lambda: "notify hook of event %d (" % seq in c.log_text(node) and "ran longer than 1000 ms" in c.log_text(node),
        5,
        "the agent log of %s to report the timeout" % node,
    )
    # The next event's hook on that node still runs, after the timeout.
    nxt = [r for r in runs if r["event"]["seq"] > seq]
    if not nxt:
        # The hang was this node's last event: give it another (the active role comes or goes).
        cur = c.service(c.leader_status(), "web")["active"]
        r = c.cli("switchover", "web", *([] if cur == node else ["--to", node]))
        assert r.returncode == 0, (r.stdout, r.stderr)

        def next_done():
            more = [x for x in hook_runs(c, node) if x["event"]["seq"] > seq]
            return more if more and more[0]["end"] else None

        nxt = c.wait_until(next_done, 20, "a hook on %s after the one killed" % node)
        runs = hook_runs(c, node)
        check_runs(node, runs, events(c))
    gap = (nxt[0]["start"] - h["start"]) / 1e6
    print("hooks on %s:\n%s" % (node, fmt_runs(runs)))
    # One at a time: the next hook starts only once the agent killed the hanging one. Judged by the
    # agent's own line (the hanging hook's start, as the hook records it, can lag its spawn by tens
    # of ms on a loaded machine, while the agent times the limit from the spawn).
    line = next(x for x in c.log_text(node).splitlines() if "notify hook of event %d (" % seq in x)
    hh, mm, ss = line.split()[0].split(":")
    killed = int(hh) * 3600 + int(mm) * 60 + float(ss)
    st = time.localtime(nxt[0]["start"] / 1e9)
    started = st.tm_hour * 3600 + st.tm_min * 60 + st.tm_sec + (nxt[0]["start"] / 1e9) % 1
    assert (started - killed) % 86400 < 43200 and gap >= 800, (
        "the next hook started %.0f ms after the hanging one (timeout 1 s), %.3f s after the agent "
        "killed it: %s" % (gap, started - killed, line)
    )
    assert nxt[0]["end"] is not None, fmt_runs(runs)


# ---------------------------------------------------------------- 3. agent stop


def test_notify_hook_at_agent_stop(cluster):
    """A hook still running when the agent stops gets a short grace, then its group is killed:
    nothing is left behind (the harness checks), and the stop is not held up for long."""
    c = cluster
    c.form(("n1",))
    hook = write_hook(c)
    open(os.path.join(c.root, "hang"), "w").close()
    c.apply(svc_ini(c, run=c.service_cmd(), standbys=0, notify=notify_cmd(c, hook), notify_timeout="30s"))

    def hanging():
        runs = [r for r in hook_runs(c, "n1") if r["hang"]]
        return runs[0] if runs else None

    h = c.wait_until(hanging, 20, "a hook that hangs")
    t0 = time.monotonic()
    os.kill(c.pid("n1"), signal.SIGINT)  # stop now
    c.wait_exit("n1", 20)
    took = time.monotonic() - t0
    assert not pid_running(h["pid"]), "the hook (pid %d) outlived its agent" % h["pid"]
    assert "notify hook still running when the agent stops: killing its process group" in c.log_text("n1")
    assert took < 5, "the agent took %.1f s to stop" % took


# ---------------------------------------------------------------- 4. an edited hook, a removed service


def test_notify_hook_edited_then_service_removed(cluster):
    """An agent keeps what it needs of the definitions' hooks and reads them again only after a
    services command (the state's defs_v): the edited hook runs from the edit on, and the events
    of the service's removal run the edited hook too, though the definition is gone by then."""
    c = cluster
    c.form()
    hook = write_hook(c)
    v2 = os.path.join(c.root, "v2")
    os.makedirs(v2)
    common = dict(run=c.service_cmd(), standbys=1, nodes="n1 n2 n3", notify_timeout="5s")
    c.apply(svc_ini(c, notify=notify_cmd(c, hook), **common))
    active, epoch, _ = wait_active(c, log=c.overlap_log)
    seq_edit = events(c)[-1]["seq"]
    c.apply(svc_ini(c, notify=notify_cmd(c, hook, log_dir=v2), **common))
    edit = c.wait_until(
        lambda: [e for e in events(c, after=seq_edit) if e["service"] == "web" and e["kind"] == "config"],
        20,
        "the config event of the edit",
    )
    seq_removal = events(c)[-1]["seq"]
    c.apply(svc_ini(c, name="other", run="exec sleep 1000"))
    leader = c.leader()
    removal = c.wait_until(
        lambda: [e for e in events(c, after=seq_removal) if e["service"] == "web" and e["to"] == "removed"],
        20,
        "the removal of web in the history",
    )
    print("edit: %s\nremoval: %s" % (fmt_events(edit), fmt_events(removal)))
    # The removal's config event has no node: the leader runs it, with the edited hook.
    def ran_v2():
        runs = hook_runs(c, leader, log_dir=v2)
        return runs if {e["seq"] for e in removal} <= {r["event"]["seq"] for r in runs if r["end"]} else None

    runs = c.wait_until(ran_v2, 30, "the edited hook to run for the removal on %s" % leader)
    print("edited hook on %s:\n%s" % (leader, fmt_runs(runs)))
    assert edit[0]["seq"] in {r["event"]["seq"] for r in runs}, "the edit's own event ran the old hook"
    for n in ("n1", "n2", "n3"):
        old = [r for r in hook_runs(c, n) if r["event"]["seq"] > seq_edit]
        assert not old, "%s ran the hook as it was before the edit:\n%s" % (n, fmt_runs(old))
        check_runs(n, hook_runs(c, n, log_dir=v2), events(c))
