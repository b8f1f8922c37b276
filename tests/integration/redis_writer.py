#!/usr/bin/env python3
"""redis_writer.py — a client of the redis recipe (tests/integration/test_redis.py), standard
library only. Runs in the client namespace for a bounded time and count:

    redis_writer.py write --host H --out FILE --seconds S [--max N] [--tag T]
        SET w:<i> <i> (w:T:<i> with a tag) then WAIT 1 500 through one connection, i = 1, 2, ...; a write whose WAIT
        says that a replica has it is acknowledged: its i is appended to FILE (one per line,
        flushed). Any error or timeout: reconnect after 20 ms; the write is retried under a new i.
        Stops after S seconds or N writes; prints {"writes", "acked", "errors"} as JSON.
    redis_writer.py check --host H --acked FILE [--tag T]
        Which acknowledged keys the server at H lacks: MGET in batches; prints
        {"acked", "missing": [first 20], "n_missing", "role"} as JSON.
    redis_writer.py info --host H
        INFO replication as a JSON object.
"""

import argparse
import json
import socket
import sys
import time

PORT = 6379


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, host, timeout):
        self.s = socket.create_connection((host, PORT), timeout=timeout)
        self.s.settimeout(timeout)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *args):
        self.s.sendall(encode(*args))
        return self.reply()

    def close(self):
        self.s.close()


def key(a, i):
    return "w:%s:%d" % (a.tag, i) if a.tag else "w:%d" % i


def write(a):
    end = time.monotonic() + a.seconds
    i = writes = acked = errors = 0
    conn = None
    with open(a.out, "a") as out:
        while time.monotonic() < end and i < a.max:
            i += 1
            try:
                if conn is None:
                    conn = Conn(a.host, 1.0)
                writes += 1
                conn.call("SET", key(a, i), i)
                if conn.call("WAIT", 1, 500) >= 1:
                    out.write("%d\n" % i)
                    out.flush()
                    acked += 1
            except (OSError, RuntimeError, ConnectionError, ValueError):
                errors += 1
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.02)
    print(json.dumps({"writes": writes, "acked": acked, "errors": errors}))


def check(a):
    with open(a.acked) as f:
        keys = [int(x) for x in f if x.strip()]
    conn = Conn(a.host, 5.0)
    missing = []
    for k in range(0, len(keys), 500):
        batch = keys[k:k + 500]
        vals = conn.call("MGET", *[key(a, i) for i in batch])
        missing += [i for i, v in zip(batch, vals) if v is None]
    role = conn.call("ROLE")[0]
    print(json.dumps({"acked": len(keys), "missing": missing[:20], "n_missing": len(missing),
                      "role": role.decode() if isinstance(role, bytes) else role}))


def info(a):
    conn = Conn(a.host, 2.0)
    text = conn.call("INFO", "replication").decode()
    print(json.dumps(dict(x.split(":", 1) for x in text.split("\r\n") if ":" in x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["write", "check", "info"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--out")
    ap.add_argument("--acked")
    ap.add_argument("--tag", default="")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max", type=int, default=1000000)
    a = ap.parse_args()
    {"write": write, "check": check, "info": info}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
