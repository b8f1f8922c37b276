"""The postgresql recipe (examples/postgresql, issue 12) with real PostgreSQL 15 servers in network
namespaces: streaming replication, `synchronous = 1`, a client committing through the VIP under
synchronous_commit on (pg_writer.py), across the fault loop of dbrecipe.py (kill -9 of the active's
agent, kill -9 of the postmaster on the active, link down of the active's node, a planned
switchover). After each fault every acknowledged commit is on the new primary, and the former
primary (rewound with pg_rewind where its WAL forked) is a standby of it holding them too.
Skipped only without root, `ip netns` or PostgreSQL 15 / psycopg2 (scripts/setup-databases.sh).
"""

import os
import pwd
import shutil
import tempfile

import pytest

import dbrecipe
import nsharness as H

PG_BIN = "/usr/lib/postgresql/15/bin"


def postmaster_pid(h, n, r):
    """The postmaster of node n: the first line of postmaster.pid in its data directory, checked
    to be a process in n's namespace."""
    try:
        with open(os.path.join(h.pg_root, "data", "%s-%s" % (n, r.service), "postmaster.pid")) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        return None
    return pid if pid in h.bed.ns_pids(n) else None


@pytest.fixture
def pg(request, tmp_path):
    if not os.access(os.path.join(PG_BIN, "postgres"), os.X_OK):
        pytest.skip("PostgreSQL 15 not installed (scripts/setup-databases.sh)")
    try:
        import psycopg2  # noqa: F401 (the writer's driver)
        pw = pwd.getpwnam("postgres")
    except (ImportError, KeyError):
        pytest.skip("python3-psycopg2 or the postgres account missing (scripts/setup-databases.sh)")
    # The servers run as postgres: their scripts and data live where it may go (the test's own
    # directory is root's, 0700).
    root = tempfile.mkdtemp(prefix="understudy-pg-")
    try:
        os.chmod(root, 0o755)
        os.makedirs(os.path.join(root, "data"))
        os.chown(os.path.join(root, "data"), pw.pw_uid, pw.pw_gid)
        for h in H.harness(request, tmp_path):  # its teardown stops every server before the rmtree
            h.pg_root = root
            yield h
    finally:
        shutil.rmtree(root, ignore_errors=True)


def recipe(h):
    data = os.path.join(h.pg_root, "data")
    return dbrecipe.Recipe(service="postgresql", directory="postgresql", writer=str(H.HERE / "pg_writer.py"),
                           server_pid=postmaster_pid, dest_root=h.pg_root, rejoin_s=60, settle_s=90,
                           edit=lambda text, dest: text.replace("PG_ROOT=/var/lib/postgresql/understudy",
                                                                "PG_ROOT=" + data))


def test_postgresql_recipe_loses_no_acknowledged_commit(pg):
    dbrecipe.run_faults(pg, recipe(pg))


def test_postgresql_standby_crash_rejoins_without_a_copy(pg):
    """kill -9 of the synchronous standby's postmaster while the client commits: the active stays
    (same node, same epoch), the standby follows it again before it restarts (R11): a trial start
    as a standby shows the active streams to it (no pg_rewind, whose single-user crash recovery
    would end the standby's WAL with a record the active does not have), not a fresh copy; it
    streams again holding every acknowledged commit, and is synchronous again."""
    h, r = pg, recipe(pg)
    active, epoch = dbrecipe.place(h, r)
    member = H.Harness.svc(h.status(active), r.service)["synchronous"]["standbys"][0]
    log = h.tmp / ("data-%s" % member) / "logs" / "postgresql.log"
    copies = log.read_text().count("follow: copying the data")
    agent_log = h.tmp / ("agent-%s.log" % member)
    follows = agent_log.read_text().count("running the follow hook")
    writer, acked, out = dbrecipe.start_writer(h, r, "standby-crash")
    pid = postmaster_pid(h, member, r)
    assert pid, "no postmaster on %s" % member
    os.kill(pid, 9)
    h.note("kill -9 of the postmaster (pid %d) of the synchronous standby %s" % (pid, member))
    writer.wait(timeout=30)
    h.note("writer %s" % out.read_text().strip())

    def back():
        a, e, inst = dbrecipe.state(h, r, active)
        s = H.Harness.svc(h.status(active), r.service) or {}
        x = inst.get(member) or {}
        return (a, e) == (active, epoch) and x.get("following") is True and x.get("pid") not in (None, pid) \
            and (s.get("synchronous") or {}).get("standbys") and x
    h.wait("%s following %s again, the set confirmed" % (member, active), back, 60, 0.2)
    c = h.wait("%s holding every acknowledged commit" % member,
               lambda: dbrecipe.holds_acked(h, r, member, acked, "standby-crash", "slave"), 30, 0.5)
    assert dbrecipe.holds_acked(h, r, active, acked, "standby-crash", "master")
    text = log.read_text()
    assert text.count("follow: copying the data") == copies, "the crashed standby was copied afresh:\n" + text[-3000:]
    assert agent_log.read_text().count("running the follow hook") > follows, "no follow before the restart"
    h.note("%d acknowledged commits on %s and %s" % (c["acked"], active, member))
    assert (active, epoch) == dbrecipe.state(h, r, active)[:2]
