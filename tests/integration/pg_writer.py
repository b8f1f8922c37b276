#!/usr/bin/env python3
"""pg_writer.py — a client of the postgresql recipe (tests/integration/test_postgresql.py), with
the same commands and output as redis_writer.py. psycopg2 (Debian python3-psycopg2). Runs in the
client namespace for a bounded time and count:

    pg_writer.py write --host H [--port P] --out FILE --seconds S [--max N] [--tag T]
        INSERT (T, i) into understudy_writes, i = 1, 2, ..., each in its own transaction under
        synchronous_commit on, through one connection; a COMMIT that returns without a warning is
        acknowledged: its i is appended to FILE (one per line, flushed). A commit whose wait for
        the synchronous standby was cancelled (statement_timeout, 2 s) returns with the warning
        "canceling wait for synchronous replication": PostgreSQL committed it locally only, so it
        is not counted. Any error: reconnect after 20 ms; the write is retried under a new i.
        Stops after S seconds or N writes; prints {"writes", "acked", "errors"} as JSON.
    pg_writer.py check --host H [--port P] --acked FILE [--tag T]
        Which acknowledged rows the server at H lacks; prints {"acked", "missing": [first 20],
        "n_missing", "role"} as JSON, role "master" or "slave" (pg_is_in_recovery), as redis says.
    pg_writer.py info --host H [--port P]
        {"role": ..., "position": WAL bytes} as JSON.
--port: the server's port (default 5432; bench/pg-failover.py gives HAProxy's).
"""

import argparse
import json
import sys
import time

import psycopg2

PORT = 5432
TABLE = "understudy_writes"


def connect(host, timeout, statement_ms=2000, port=PORT):
    # tcp_user_timeout: a commit sent to a node whose link is gone fails after 1 s instead of
    # waiting for TCP's retransmissions (minutes); keepalives do the same for an idle wait.
    conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres", connect_timeout=max(1, int(timeout)),
                            tcp_user_timeout=1000, keepalives=1, keepalives_idle=1, keepalives_interval=1,
                            keepalives_count=2, options="-c statement_timeout=%d -c lc_messages=C" % statement_ms)
    conn.autocommit = True
    return conn


def write(a):
    end = time.monotonic() + a.seconds
    i = writes = acked = errors = 0
    conn = None
    with open(a.out, "a") as out:
        while time.monotonic() < end and i < a.max:
            i += 1
            try:
                if conn is None:
                    conn = connect(a.host, 1.0, port=a.port)
                    with conn.cursor() as c:
                        c.execute("CREATE TABLE IF NOT EXISTS %s (tag text, i bigint, PRIMARY KEY (tag, i))" % TABLE)
                writes += 1
                del conn.notices[:]
                with conn.cursor() as c:
                    c.execute("INSERT INTO " + TABLE + " VALUES (%s, %s)", (a.tag, i))
                if any("synchronous replication" in n for n in conn.notices):
                    errors += 1
                    continue
                out.write("%d\n" % i)
                out.flush()
                acked += 1
            except psycopg2.Error:
                errors += 1
                if conn:
                    try:
                        conn.close()
                    except psycopg2.Error:
                        pass
                conn = None
                time.sleep(0.02)
    print(json.dumps({"writes": writes, "acked": acked, "errors": errors}))


def role_of(conn):
    with conn.cursor() as c:
        c.execute("SELECT pg_is_in_recovery()")
        return "slave" if c.fetchone()[0] else "master"


def check(a):
    with open(a.acked) as f:
        keys = [int(x) for x in f if x.strip()]
    conn = connect(a.host, 5.0, 10000, port=a.port)
    with conn.cursor() as c:
        c.execute("SELECT i FROM " + TABLE + " WHERE tag = %s", (a.tag,))
        have = {r[0] for r in c.fetchall()}
    missing = [k for k in keys if k not in have]
    print(json.dumps({"acked": len(keys), "missing": missing[:20], "n_missing": len(missing), "role": role_of(conn)}))


def info(a):
    conn = connect(a.host, 2.0, port=a.port)
    with conn.cursor() as c:
        c.execute("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
                  " - '0/0'::pg_lsn")
        pos = int(c.fetchone()[0])
    print(json.dumps({"role": role_of(conn), "position": pos}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["write", "check", "info"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--out")
    ap.add_argument("--acked")
    ap.add_argument("--tag", default="w")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max", type=int, default=1000000)
    a = ap.parse_args()
    try:
        {"write": write, "check": check, "info": info}[a.cmd](a)
    except (psycopg2.Error, OSError) as e:
        print("pg_writer: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
