"""`understudy recover`: rebuilding the voters of a cluster that lost its voter majority for good,
from a survivor's data dir, keeping the replicated state and the epochs (docs/operations.md,
"Losing the majority"). Real agents, real service processes; bounded waits."""

import hashlib
import os
import re
import shutil
import signal
import subprocess

from conftest import BIN, assert_no_overlap, pid_running
from test_cluster import wait_active, web_ini


def recover(c, name, *args, timeout=60):
    """Run `understudy recover --config NODE.CONF ARGS` for node `name`."""
    cmd = [BIN, "recover", "--config", c.nodes[name].conf] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=c.root)


def tree_digest(path):
    """Every file under `path` (names, modes and bytes), as one digest."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, path).encode() + b"\0")
            h.update(oct(os.stat(p).st_mode).encode() + b"\0")
            with open(p, "rb") as fh:
                h.update(fh.read())
    for root, dirs, _ in os.walk(path):
        for d in sorted(dirs):
            h.update(os.path.relpath(os.path.join(root, d), path).encode() + b"/\0")
    return h.hexdigest()


def lose(c, names):
    """Lose `names` for good: SIGKILL their agents, then every process of theirs (their instances
    and guardians, as a dead host would), then their data dirs."""
    for n in names:
        c.kill9(n)
    for n in names:
        c.wait_exit(n, 10)
    for p in c.service_processes():
        if p["node"] in names:
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid, (start, what) in list(c.seen.items()):
        if what.startswith("guardian of ") and what.split()[2] in names and pid_running(pid, start):
            os.kill(pid, signal.SIGKILL)
    c.wait_until(
        lambda: not [p for p in c.service_processes() if p["node"] in names],
        10,
        "the processes of %s to be gone" % " ".join(names),
    )
    for n in names:
        shutil.rmtree(c.nodes[n].data_dir)


def test_recover_keeps_state_and_epochs_after_losing_the_majority(cluster):
    c = cluster
    c.form()
    c.apply(web_ini(c, nodes=None, standbys=1))
    first, e1, _ = wait_active(c, c.leader())
    # A switchover first, so that the epoch to continue from is not the first one.
    r = c.cli("switchover", "web")
    assert r.returncode == 0, r.stdout + r.stderr
    active, epoch, st = wait_active(c, c.leader(), not_node=first, min_epoch=e1 + 1)
    assert epoch >= 2
    # The survivor holds no active role: the lost active's role must move to it.
    survivor = next(n for n in ("n1", "n2", "n3") if n != active)
    # The other standby-side node dies first: once the active dies too, no majority is left to
    # fail it over before the recovery.
    lost = [n for n in ("n1", "n2", "n3") if n not in (survivor, active)] + [active]

    lose(c, lost)
    st = c.wait_until(
        lambda: (lambda v: None if v["cluster"]["has_quorum"] else v)(c.status(survivor)),
        20,
        "%s to see the quorum lost" % survivor,
    )
    svc = c.service(st, "web")
    assert svc["epoch"] == epoch and svc["active"] == active, svc

    # Refused while the survivor's agent runs (its data dir is locked), and nothing changes.
    r = recover(c, survivor, "--yes")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "in use by a running agent" in r.stderr, r.stderr

    c.term(survivor)
    assert c.wait_exit(survivor, 40) == 0
    data = c.nodes[survivor].data_dir
    before = tree_digest(data)

    # Without --yes: the plan, nothing written.
    r = recover(c, survivor)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "run again with --yes" in r.stderr, r.stderr
    assert "1 of 3 voters reachable" in r.stdout, r.stdout
    # What the log holds, as the operator sees it: the service with its active and epoch. The
    # survivor may lead (leadership moves off the active's node) and may have proposed the failover
    # to itself when the active's guardian announced its death: that entry is in its log though
    # never committed, and the recovery keeps it (every entry of the survivor's log is kept).
    m = re.search(r"web +active (\S+) +epoch (\d+)\n", r.stdout)
    assert m, r.stdout
    shown = (m.group(1), int(m.group(2)))
    assert shown == (active, epoch) or (shown[0] == survivor and shown[1] > epoch), (shown, r.stdout)
    for n in lost:
        assert n in r.stdout and "no answer" in r.stdout, r.stdout
    assert tree_digest(data) == before, "recover without --yes changed the data dir"

    r = recover(c, survivor, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "written" in r.stdout, r.stdout
    for n in lost:
        assert "understudy node remove %s" % n in r.stdout, r.stdout

    c.start(survivor)
    # The replicated state is kept: the service fails over to the survivor under the next epoch.
    now, e2, st = wait_active(c, survivor, min_epoch=epoch + 1, timeout=60)
    assert now == survivor
    # The next epoch, or a later one if the survivor had to fence itself once more (a 2-core
    # machine under ASan can stall its loop past the lease): never a restart from 1.
    assert e2 > epoch, "epoch %d after recovery, %d before: the epochs must continue" % (e2, epoch)
    assert st["cluster"]["leader"] == survivor and st["cluster"]["has_quorum"]
    assert_no_overlap(c.overlap_log)

    # The lost nodes leave the service model with the usual command.
    for n in lost:
        r = c.cli("node", "remove", n, node=survivor)
        assert r.returncode == 0, r.stdout + r.stderr
    states = {x["name"]: x["state"] for x in c.status(survivor)["nodes"]}
    assert all(states.get(n, "left") == "left" for n in lost) and states[survivor] == "alive", states

    # A new node joins the recovered cluster and becomes a standby.
    c.add_node("n4", join=[c.nodes[survivor].address])

    def standby_on_n4():
        s = c.status(survivor)
        inst = c.instances(s, "web").get("n4")
        return s if inst and inst["role"] == "standby" and inst["state"] == "standby" else None

    st = c.wait_until(standby_on_n4, 60, "n4 to join and hold web's standby")
    svc = c.service(st, "web")
    assert svc["active"] == survivor and svc["epoch"] >= e2
    # The recovered log (its recovery entry included) loads again: a restart of the survivor
    # hands web over to n4 and comes back into the two-voter cluster.
    c.restart(survivor)
    moved, e3, _ = wait_active(c, "n4", min_epoch=svc["epoch"] + 1, timeout=60)
    assert moved == "n4"
    c.wait_until(
        lambda: (lambda v: v["cluster"]["has_quorum"] and {x["name"]: x["state"] for x in v["nodes"]}[survivor] == "alive")(
            c.status("n4")
        ),
        30,
        "%s back in the recovered cluster" % survivor,
    )
    assert_no_overlap(c.overlap_log)


def test_recover_refuses_while_a_majority_is_reachable(cluster):
    c = cluster
    c.form()
    c.kill9("n3")
    c.wait_exit("n3", 10)
    data = c.nodes["n3"].data_dir
    before = tree_digest(data)
    for args in ([], ["--yes"], ["--yes", "--voters", "n3"]):
        r = recover(c, "n3", *args)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "refused: 3 of the 3 voters" in r.stderr, r.stdout + r.stderr
        assert "ANSWERS" in r.stdout, r.stdout + "\n--- stderr:\n" + r.stderr
        assert tree_digest(data) == before, "a refused recover changed the data dir (%s)" % args
    # Bad voter lists are refused before anything is read.
    for args, msg in (
        (["--voters", "n1,n2"], "must name this node"),
        (["--voters", "n3,n3"], "named twice"),
        (["--voters", "n3,bad name"], "not a node name"),
    ):
        r = recover(c, "n3", "--yes", *args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stdout, r.stderr)
    assert tree_digest(data) == before
    # The node was only stopped: it comes back as it was.
    c.start("n3")
    c.wait_until(
        lambda: {x["name"]: x["state"] for x in c.leader_status()["nodes"]}.get("n3") == "alive",
        30,
        "n3 back alive",
    )


def test_recover_refuses_while_the_agent_runs(cluster):
    c = cluster
    c.form()
    r = recover(c, "n2", "--yes")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "in use by a running agent" in r.stderr and "nothing changed" in r.stderr, r.stderr
    assert r.stdout == ""


def test_recover_with_two_survivors_copies_the_raft_dir(cluster):
    """Two survivors: a voter and a non-voter. recover runs on the voter naming both; the other
    gets a copy of its raft/ (docs/operations.md); both start and form the new majority."""
    c = cluster
    c.form()
    c.add_node("n4")
    c.wait_until(
        lambda: {x["name"]: (x["state"], x["voter"]) for x in c.leader_status()["nodes"]}.get("n4") == ("alive", False),
        30,
        "n4 to join as a non-voter",
    )
    c.apply(web_ini(c, nodes=None, standbys=1))
    active, epoch, _ = wait_active(c, c.leader())
    survivor = next(n for n in ("n1", "n2", "n3") if n != active)
    others = [n for n in ("n1", "n2", "n3") if n != survivor]
    # The active dies last (when it is a voter): no majority is left to move it first.
    lost = sorted(others, key=lambda n: n == active)
    lose(c, lost)
    for n in (survivor, "n4"):
        c.term(n)
    for n in (survivor, "n4"):
        assert c.wait_exit(n, 40) == 0

    r = recover(c, survivor, "--voters", "%s,n4" % survivor, "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "over DATA_DIR/raft of n4" in r.stdout, r.stdout
    raft4 = os.path.join(c.nodes["n4"].data_dir, "raft")
    shutil.rmtree(raft4)
    shutil.copytree(os.path.join(c.nodes[survivor].data_dir, "raft"), raft4)
    # The copy is a recovered log: recover on n4 now finds no majority of the new voters
    # reachable either, and names the same two voters.
    r = recover(c, "n4")
    assert r.returncode == 1 and "run again with --yes" in r.stderr, r.stdout + r.stderr
    assert re.search(r"%s +\S+ +voter" % survivor, r.stdout) and re.search(r"n4 +\S+ +voter", r.stdout), r.stdout

    c.start(survivor)
    c.start("n4")

    def recovered():
        st = c.status(survivor)
        nodes = {x["name"]: x for x in st["nodes"]}
        svc = c.service(st, "web")
        ok = (
            st["cluster"]["has_quorum"]
            and all(nodes[n]["voter"] and nodes[n]["state"] == "alive" for n in (survivor, "n4"))
            and svc["active"] in (survivor, "n4")
            and svc["epoch"] > epoch
        )
        return st if ok else None

    st = c.wait_until(recovered, 60, "%s and n4 to lead together, web active on one of them" % survivor)
    now, e2, _ = wait_active(c, survivor, min_epoch=epoch + 1)
    assert now in (survivor, "n4") and e2 > epoch
    assert_no_overlap(c.overlap_log)


def test_recover_counts_the_majority_of_five_voters(cluster):
    """5 voters: 3 reachable (this node included) is a majority, 2 is not; a voter that still
    runs is named in a warning."""
    c = cluster
    names = ("n1", "n2", "n3", "n4", "n5")
    c.form(names)
    for n in ("n3", "n4", "n5"):
        c.kill9(n)
    for n in ("n3", "n4", "n5"):
        c.wait_exit(n, 10)
    data = c.nodes["n3"].data_dir
    before = tree_digest(data)
    r = recover(c, "n3", "--yes")
    assert r.returncode == 1 and "refused: 3 of the 5 voters" in r.stderr, r.stdout + r.stderr
    assert tree_digest(data) == before
    c.kill9("n2")
    c.wait_exit("n2", 10)
    r = recover(c, "n3")
    assert r.returncode == 1 and "run again with --yes" in r.stderr, r.stdout + r.stderr
    assert "2 of 5 voters reachable" in r.stdout, r.stdout
    assert "warning: 1 other voter still runs an agent" in r.stderr, r.stderr
    assert re.search(r"n1 +\S+ +voter +ANSWERS", r.stdout), r.stdout
    assert tree_digest(data) == before
