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
