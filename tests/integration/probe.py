#!/usr/bin/env python3
"""probe.py — client-side probes for the VIP and proxy tests (standard library only, Linux).

Run inside a test-bed namespace (tests/netns.py) through `ip netns exec`; every mode is bounded in
time. Timestamps are CLOCK_MONOTONIC nanoseconds (time.monotonic_ns()): network namespaces share
that clock, so the test process can line them up with its own actions.

  probe.py http --url http://198.18.0.200:8080/ [--interval 0.01 | --rate 500] [--workers 1]
                [--timeout 1] --duration 20 --out FILE
      A new TCP connection and one GET per tick, on a fixed schedule (requests overlap when
      answers are slow, so an outage is resolved to one interval, not to the timeout). Each
      request becomes one JSON line in FILE as soon as it ends:
        {"t_send_ns": .., "t_done_ns": .., "ok": true, "body": "n2 7"}
        {"t_send_ns": .., "t_done_ns": .., "ok": false, "error": "connect: ECONNREFUSED"}
      ok = status 200 with a body. --rate R with --workers W: W threads, each at R/W requests/s
      (load mode). SIGTERM/SIGINT: stop sending, let requests in flight end (<= timeout), exit 0.
      A summary goes to stdout at the end.

  probe.py get --url URL [--timeout 1]
      One request; prints {"ok": .., "body"|"error": ..}; exit 0 if ok, else 1.

  probe.py arp --dev eth0 --ip 198.18.0.200 [--wait 0.5]
      Broadcasts ARP requests for IP from an AF_PACKET socket and prints the distinct MACs that
      answer within --wait seconds as JSON {"ip", "macs": [...], "replies", "requests"}. The
      requests are duplicate-address probes (sender IP 0.0.0.0, as `arping -D`) from a made-up,
      locally administered sender MAC: the answers go to that MAC, which the namespace's own IP
      stack ignores, so probing never updates the prober's neighbour cache (the tests must see
      the cache the product leaves, not one the probe repaired).

  probe.py addrwatch --dev eth0 [--duration 600] --out FILE
      Watches the interface's addresses through rtnetlink (RTMGRP_IPV4/IPV6_IFADDR): first the
      addresses present ("init"), then a "ready" line, then each change as it arrives:
        {"t_ns": .., "ev": "add"|"del"|"init", "addr": "198.18.0.200", "prefixlen": 24}
      It runs at real-time priority (SCHED_FIFO 2) when allowed, so that its dates are the
      kernel's order; the "ready" line says which ("sched": "fifo" or why not).

  probe.py serve --port 8080 [--delay-ms 0] [--max-seconds 600]
      A tiny HTTP/1.0 server answering every request with "NODE EPOCH\\n" (UNDERSTUDY_NODE,
      UNDERSTUDY_EPOCH), after --delay-ms; it exits after --max-seconds at the latest. SIGTERM kills it at once (default disposition):
      connections open at that moment fail, as with a real server that is killed, so a proxy
      that does not drain before demoting is caught.

Library use (the tests import this file): load_records(), failure_runs(), summarize().
"""

import argparse
import collections
import errno
import json
import os
import random
import resource
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

MAX_DURATION_S = 7200.0  # bounds every mode; the chaos runs (tests/chaos) probe for up to an hour


def now_ns():
    return time.monotonic_ns()


# ---------------------------------------------------------------- HTTP prober


class _Req:
    __slots__ = ("sock", "t_send", "deadline", "state", "out", "buf")

    def __init__(self, sock, t_send, deadline, out):
        self.sock = sock
        self.t_send = t_send
        self.deadline = deadline
        self.state = "connect"
        self.out = out
        self.buf = []


class _Sink:
    """JSON lines to a file, one per finished request, flushed at once (the test reads the file
    while the prober runs)."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1 << 16)
        self.lock = threading.Lock()
        self.n = self.ok = 0

    def put(self, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()
            self.n += 1
            self.ok += bool(rec["ok"])

    def close(self):
        with self.lock:
            self.f.close()


def _parse_response(data):
    """(ok, body or error) of a complete HTTP/1.x response."""
    if not data:
        return False, "empty reply (closed before answering)"
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False, "truncated reply: %r" % data[:80]
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/"):
        return False, "bad status line: %r" % head[:80]
    text = body.decode(errors="replace").strip()
    if status[1] != b"200":
        return False, "http %s: %s" % (status[1].decode(errors="replace"), text[:80])
    if not text:
        return False, "http 200 with an empty body"
    return True, text


class _Worker(threading.Thread):
    def __init__(self, addr, request, interval_ns, t0, end, timeout_ns, sink, stop):
        super().__init__(daemon=True)
        self.addr, self.request = addr, request
        self.interval, self.t0, self.end = interval_ns, t0, end
        self.timeout, self.sink, self.stop = timeout_ns, sink, stop
        self.skipped = 0
        self.error = None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # reported in the summary; the test sees it
            self.error = repr(e)

    def _finish(self, sel, r, ok, text):
        if r.state == "done":
            return
        r.state = "done"
        try:
            sel.unregister(r.sock)
        except (KeyError, ValueError):
            pass
        r.sock.close()
        rec = {"t_send_ns": r.t_send, "t_done_ns": now_ns(), "ok": ok}
        rec["body" if ok else "error"] = text
        self.sink.put(rec)

    def _start(self, sel, pending, t_send):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        r = _Req(s, t_send, t_send + self.timeout, None)
        pending.append(r)
        rc = s.connect_ex(self.addr)
        if rc not in (0, errno.EINPROGRESS):
            self._finish(sel, r, False, "connect: %s" % errno.errorcode.get(rc, rc))
            return
        sel.register(s, selectors.EVENT_WRITE, r)

    def _event(self, sel, r, mask):
        s = r.sock
        if r.state == "connect":
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._finish(sel, r, False, "connect: %s" % errno.errorcode.get(err, err))
                return
            r.state = "send"
            r.out = self.request
        if r.state == "send":
            try:
                n = s.send(r.out)
            except BlockingIOError:
                return
            except OSError as e:
                self._finish(sel, r, False, "send: %s" % errno.errorcode.get(e.errno, e))
                return
            r.out = r.out[n:]
            if not r.out:
                r.state = "recv"
                sel.modify(s, selectors.EVENT_READ, r)
            return
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            got = b"".join(r.buf)
            what = "reset after %d bytes" % len(got) if e.errno == errno.ECONNRESET else str(e)
            self._finish(sel, r, False, "recv: %s" % what)
            return
        if data:
            r.buf.append(data)
            return
        ok, text = _parse_response(b"".join(r.buf))
        self._finish(sel, r, ok, text)

    def _run(self):
        sel = selectors.DefaultSelector()
        pending = collections.deque()  # in send order = deadline order (one timeout for all)
        next_send = self.t0
        burst_cap = 50
        for _ in range(10**9):  # bounded: ends at self.end + timeout at the latest
            now = now_ns()
            sending = now < self.end and not self.stop.is_set()
            if sending:
                if now - next_send > 100_000_000:  # the loop stalled: do not fire a burst
                    missed = (now - next_send) // self.interval
                    self.skipped += missed
                    next_send += missed * self.interval
                n = 0
                while next_send <= now and n < burst_cap:
                    self._start(sel, pending, now_ns())
                    next_send += self.interval
                    n += 1
            while pending and (pending[0].state == "done" or pending[0].deadline <= now):
                r = pending.popleft()
                if r.state != "done":
                    self._finish(sel, r, False, "timeout (%s)" % ("connecting" if r.state == "connect" else r.state))
            if not sending and not pending:
                break
            wake = pending[0].deadline if pending else now + self.interval
            if sending:
                wake = min(wake, next_send)
            wait = max(0, wake - now_ns()) / 1e9
            for key, mask in sel.select(timeout=min(wait, 0.1)):
                self._event(sel, key.data, mask)
        sel.close()


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def _target(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit("probe.py: --url must be http://HOST[:PORT]/PATH, got %r" % url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    port = u.port or 80
    req = "GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: understudy-probe\r\nConnection: close\r\n\r\n"
    return (u.hostname, port), (req % (path, u.hostname, port)).encode()


def cmd_http(a):
    if a.rate:
        interval_ns = int(1e9 * a.workers / a.rate)
    else:
        interval_ns = int(1e9 * a.interval)
    if interval_ns <= 0:
        raise SystemExit("probe.py: the interval must be positive")
    duration = min(a.duration, MAX_DURATION_S)
    _raise_nofile()
    addr, request = _target(a.url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sink = _Sink(a.out)
    t0 = now_ns() + 1_000_000
    end = t0 + int(duration * 1e9)
    timeout_ns = int(a.timeout * 1e9)
    phase = interval_ns // a.workers
    workers = [
        _Worker(addr, request, interval_ns, t0 + i * phase, end, timeout_ns, sink, stop) for i in range(a.workers)
    ]
    for w in workers:
        w.start()
    limit = time.monotonic() + duration + a.timeout + 10
    for w in workers:
        while w.is_alive() and time.monotonic() < limit:
            w.join(0.2)
    stuck = sum(w.is_alive() for w in workers)
    sink.close()
    recs = load_records(a.out)
    s = summarize(recs)
    s.update(
        skipped_ticks=sum(w.skipped for w in workers),
        worker_errors=[w.error for w in workers if w.error],
        stuck_workers=stuck,
        interval_ms=interval_ns / 1e6 / a.workers,
    )
    print(json.dumps(s))
    return 0 if not stuck and not s["worker_errors"] else 1


def cmd_get(a):
    addr, request = _target(a.url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(a.timeout)
    try:
        s.connect(addr)
        s.sendall(request)
        buf = []
        deadline = time.monotonic() + a.timeout
        for _ in range(10000):
            if time.monotonic() > deadline:
                raise socket.timeout("reading")
            data = s.recv(65536)
            if not data:
                break
            buf.append(data)
        ok, text = _parse_response(b"".join(buf))
    except OSError as e:
        ok, text = False, "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
    print(json.dumps({"ok": ok, ("body" if ok else "error"): text}))
    return 0 if ok else 1


# ---------------------------------------------------------------- records


def load_records(path):
    """Records of a prober output file, sorted by send time (a torn last line is skipped)."""
    out = []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    out.sort(key=lambda r: r["t_send_ns"])
    return out


def failure_runs(recs):
    """Runs of consecutive failed requests (in send order): dicts with first_fail_ns,
    last_fail_ns, next_ok_ns (None if no success followed), count, errors (a Counter) and
    outage_ms = next_ok - first_fail (inf without a following success)."""
    runs, cur = [], None
    for r in recs:
        if not r["ok"]:
            if cur is None:
                cur = dict(first_fail_ns=r["t_send_ns"], count=0, errors=collections.Counter())
            cur["count"] += 1
            cur["last_fail_ns"] = r["t_send_ns"]
            cur["errors"][r["error"].split(":")[0] if r["error"].startswith("connect") else r["error"][:40]] += 1
        elif cur is not None:
            cur["next_ok_ns"] = r["t_send_ns"]
            cur["outage_ms"] = (r["t_send_ns"] - cur["first_fail_ns"]) / 1e6
            runs.append(cur)
            cur = None
    if cur is not None:
        cur["next_ok_ns"] = None
        cur["outage_ms"] = float("inf")
        runs.append(cur)
    return runs


def summarize(recs):
    runs = failure_runs(recs)
    lat = sorted((r["t_done_ns"] - r["t_send_ns"]) / 1e6 for r in recs if r["ok"])

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    longest = max((r["outage_ms"] for r in runs), default=0.0)
    return dict(
        requests=len(recs),
        ok=sum(1 for r in recs if r["ok"]),
        failed=sum(1 for r in recs if not r["ok"]),
        longest_outage_ms=None if longest == float("inf") else round(longest, 1),
        unrecovered=bool(runs) and runs[-1]["next_ok_ns"] is None,
        latency_ms=dict(p50=pct(0.5), p99=pct(0.99), max=lat[-1] if lat else None),
        bodies=dict(collections.Counter(r["body"] for r in recs if r["ok"])),
    )


# ---------------------------------------------------------------- ARP


ETH_P_ARP = 0x0806
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


def _mac(b):
    return ":".join("%02x" % x for x in b)


def cmd_arp(a):
    ip = socket.inet_aton(a.ip)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((a.dev, ETH_P_ARP))
    ifindex = socket.if_nametoindex(a.dev)
    # The answers go to the made-up MAC: make sure the device hands such frames to us.
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    fake = bytes([0x02, 0x75, 0x73] + [random.randrange(256) for _ in range(3)])  # 02:75:73 = "us"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + fake + b"\0\0\0\0" + b"\0" * 6 + ip
    frame = b"\xff" * 6 + fake + struct.pack("!H", ETH_P_ARP) + arp
    macs = collections.Counter()
    start = time.monotonic()
    deadline = start + a.wait
    send_at = [start, start + a.wait / 3]  # a second request in case the first met a busy switch
    sent = 0
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    for _ in range(100000):
        now = time.monotonic()
        if now >= deadline:
            break
        while send_at and send_at[0] <= now:
            send_at.pop(0)
            s.send(frame)
            sent += 1
        wake = min([deadline] + send_at[:1])
        if not sel.select(timeout=max(0.0, wake - time.monotonic())):
            continue
        for _ in range(1000):
            try:
                pkt = s.recv(2048)
            except BlockingIOError:
                break
            if len(pkt) < 42 or pkt[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", pkt[20:22])[0]
            sha, spa, tha = pkt[22:28], pkt[28:32], pkt[32:38]
            if op == 2 and spa == ip and tha == fake:
                macs[_mac(sha)] += 1
    sel.close()
    s.close()
    out = {"ip": a.ip, "dev": a.dev, "macs": sorted(macs), "replies": sum(macs.values()), "requests": sent}
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- address watcher

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_DONE, NLMSG_ERROR = 3, 2
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
IFA_ADDRESS, IFA_LOCAL = 1, 2


def _nl_msgs(data):
    off = 0
    while off + 16 <= len(data):
        ln, typ, flags, seq, pid = struct.unpack_from("=IHHII", data, off)
        if ln < 16:
            break
        yield typ, data[off + 16 : off + ln]
        off += (ln + 3) & ~3


def _ifaddr(payload):
    """(family, prefixlen, ifindex, address text) of an ifaddrmsg."""
    fam, plen, _flags, _scope, idx = struct.unpack_from("=BBBBI", payload, 0)
    off = 8
    addr = local = None
    while off + 4 <= len(payload):
        ln, typ = struct.unpack_from("=HH", payload, off)
        if ln < 4:
            break
        val = payload[off + 4 : off + ln]
        if typ in (IFA_ADDRESS, IFA_LOCAL):
            text = socket.inet_ntop(fam, val)
            if typ == IFA_LOCAL:
                local = text
            else:
                addr = text
        off += (ln + 3) & ~3
    return fam, plen, idx, local or addr


def cmd_addrwatch(a):
    ifindex = socket.if_nametoindex(a.dev)
    out = open(a.out, "a", buffering=1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def emit(ev, fam, plen, addr, t=None):
        rec = {"t_ns": t or now_ns(), "ev": ev, "addr": addr, "prefixlen": plen, "family": fam}
        out.write(json.dumps(rec, separators=(",", ":")) + "\n")

    # The watcher is the instrument that judges VIP overlaps, and it dates an event when it reads it
    # (netlink carries no kernel timestamp): a watcher waiting for a CPU dates a removal late and
    # shows an overlap that never was (a CI run, loaded 2-core machine: n1's removal dated 2.5 ms
    # after n2's addition, which the agents' log and the kernel's order put ~10 ms later). Real-time
    # priority, above the guardian's (1), makes it read an event as soon as the kernel queues it.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(2))
        sched = "fifo"
    except OSError as e:
        sched = "other (%s)" % e.strerror
    mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    mon.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))  # subscribed before the dump: nothing is missed
    dump = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    dump.bind((0, 0))
    req = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    req += struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
    dump.send(req)
    done = False
    for _ in range(1000):
        data = dump.recv(1 << 16)
        for typ, payload in _nl_msgs(data):
            if typ in (NLMSG_DONE, NLMSG_ERROR):
                done = True
            elif typ == RTM_NEWADDR:
                fam, plen, idx, addr = _ifaddr(payload)
                if idx == ifindex:
                    emit("init", fam, plen, addr)
        if done:
            break
    dump.close()
    out.write(json.dumps({"t_ns": now_ns(), "ev": "ready", "dev": a.dev, "sched": sched}) + "\n")
    deadline = time.monotonic() + min(a.duration, MAX_DURATION_S)
    sel = selectors.DefaultSelector()
    sel.register(mon, selectors.EVENT_READ)
    for _ in range(10**7):
        if stop.is_set() or time.monotonic() >= deadline:
            break
        if not sel.select(timeout=0.2):
            continue
        try:
            data = mon.recv(1 << 16)
        except OSError as e:  # ENOBUFS: events were lost; say so rather than guess
            out.write(json.dumps({"t_ns": now_ns(), "ev": "lost", "error": str(e)}) + "\n")
            if e.errno == errno.ENOBUFS:
                continue
            break  # anything else would repeat: stop rather than spin at real-time priority
        t = now_ns()
        for typ, payload in _nl_msgs(data):
            if typ not in (RTM_NEWADDR, RTM_DELADDR):
                continue
            fam, plen, idx, addr = _ifaddr(payload)
            if idx == ifindex:
                emit("add" if typ == RTM_NEWADDR else "del", fam, plen, addr, t)
    out.close()
    return 0


# ---------------------------------------------------------------- tiny server


def cmd_serve(a):
    node = os.environ.get("UNDERSTUDY_NODE", "?")
    epoch = os.environ.get("UNDERSTUDY_EPOCH", "?")
    body = ("%s %s\n" % (node, epoch)).encode()
    resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        len(body),
        body,
    )
    delay = a.delay_ms / 1000.0
    _raise_nofile()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4096)

    def handle(c):
        try:
            c.settimeout(5)
            got = b""
            for _ in range(64):
                data = c.recv(4096)
                if not data:
                    return
                got += data
                if b"\r\n\r\n" in got:
                    break
            if delay:
                time.sleep(delay)
            c.sendall(resp)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    ls.settimeout(1.0)
    deadline = time.monotonic() + a.max_seconds  # the agent stops it long before; this bounds a leak
    while time.monotonic() < deadline:
        try:
            c, _ = ls.accept()
        except OSError:  # timeout: look at the deadline again
            continue
        c.settimeout(None)
        threading.Thread(target=handle, args=(c,), daemon=True).start()
    return 0


# ---------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(prog="probe.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("http", help="periodic new-connection GETs, one JSON line per request")
    h.add_argument("--url", required=True)
    h.add_argument("--interval", type=float, default=0.01, help="seconds between requests (one worker)")
    h.add_argument("--rate", type=float, default=0, help="requests per second in total (load mode)")
    h.add_argument("--workers", type=int, default=1)
    h.add_argument("--timeout", type=float, default=1.0)
    h.add_argument("--duration", type=float, required=True)
    h.add_argument("--out", required=True)
    g = sub.add_parser("get", help="one request")
    g.add_argument("--url", required=True)
    g.add_argument("--timeout", type=float, default=1.0)
    r = sub.add_parser("arp", help="who answers ARP for an address")
    r.add_argument("--dev", required=True)
    r.add_argument("--ip", required=True)
    r.add_argument("--wait", type=float, default=0.5)
    w = sub.add_parser("addrwatch", help="log address changes of a device")
    w.add_argument("--dev", required=True)
    w.add_argument("--duration", type=float, default=MAX_DURATION_S)
    w.add_argument("--out", required=True)
    s = sub.add_parser("serve", help="tiny HTTP server answering 'NODE EPOCH'")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--delay-ms", type=float, default=0)
    s.add_argument("--max-seconds", type=float, default=MAX_DURATION_S, help="exit after this long")
    a = p.parse_args(argv)
    if a.cmd == "http" and (a.workers < 1 or a.duration <= 0 or a.timeout <= 0):
        p.error("--workers, --duration and --timeout must be positive")
    if a.cmd == "arp" and not 0 < a.wait <= 60:
        p.error("--wait must be in (0, 60] seconds")
    return {"http": cmd_http, "get": cmd_get, "arp": cmd_arp, "addrwatch": cmd_addrwatch, "serve": cmd_serve}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
