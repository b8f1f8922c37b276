#!/usr/bin/env python3
"""Shared parts of the network-namespace benchmarks (bench/failover-netns.py, bench/proxy.py).

  build_httpd()      compile bench/httpd.c (the benchmarks' static HTTP backend) into build/bench/
  Agents             understudy agents, one per node namespace of a tests/netns.py bed, with node
                     address = the node's IP; status and apply through the CLI, run in the client
                     namespace (the bench process itself lives in the host namespace, which has no
                     route to 198.18.0.0/24)
  Client             a helper process in the client namespace: single GETs (a hot standby's 503
                     "NODE standby" is told apart) and the high-rate takeover prober (`watch`),
                     driven with JSON lines over its stdin/stdout
  set_sysctls()      per-namespace sysctls (they only exist inside the bed's namespaces)

Python standard library only; every wait is bounded in time and in iterations.
"""

import errno
import json
import os
import re
import select
import selectors
import signal
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import netns  # noqa: E402
import nsagents  # noqa: E402

HTTPD_SRC = os.path.join(ROOT, "bench", "httpd.c")
HTTPD_BIN = os.path.join(ROOT, "build", "bench", "httpd")
CFLAGS = ["-std=c17", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow",
          "-Wstrict-prototypes", "-Wmissing-prototypes"]
RAFT_PORT = nsagents.RAFT_PORT
API_PORT = nsagents.API_PORT
LOG_TAIL = 40
ANSWER_RE = re.compile(rb"\r\n\r\n(\S+) epoch (\d+)\n")
STANDBY_RE = re.compile(rb"\r\n\r\n(\S+) standby\n")  # bench/hot_service.py, not promoted


class BenchError(Exception):
    pass


def close_bed(state, bed, workdir, keep):
    """The end of one measured system: its namespace bed closed and its work directory removed (or
    kept, and said where); `state` (the bench's cleanup record for signals) forgets both."""
    bed.close()
    state["bed"] = None
    if keep:
        log("bench: kept %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    state["dir"] = None


def log(msg=""):
    print(msg, flush=True)


def build_httpd():
    """build/bench/httpd, rebuilt when bench/httpd.c is newer. Returns its path."""
    try:
        fresh = os.path.getmtime(HTTPD_BIN) >= os.path.getmtime(HTTPD_SRC)
    except OSError:
        fresh = False
    if not fresh:
        os.makedirs(os.path.dirname(HTTPD_BIN), exist_ok=True)
        cc = os.environ.get("CC", "gcc")
        r = subprocess.run([cc] + CFLAGS + ["-o", HTTPD_BIN, HTTPD_SRC], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError("cannot build %s:\n%s" % (HTTPD_BIN, r.stderr))
    return HTTPD_BIN


def need_root_and_tools(tools):
    """Exit with a clear message when this cannot run here."""
    ok, why = netns.available()
    if not ok:
        sys.exit("bench: cannot build network namespaces: %s" % why)
    import shutil
    missing = [t for t in tools if not shutil.which(t) and not os.path.exists("/usr/sbin/" + t)]
    if missing:
        sys.exit("bench: missing %s: run `sh scripts/setup-bench.sh` (as root)" % ", ".join(missing))


def set_sysctls(bed, hosts, values):
    """values: {"net.ipv4.tcp_tw_reuse": "1", ...}, set in each host's namespace."""
    argv = ["sysctl", "-q", "-w"] + ["%s=%s" % kv for kv in values.items()]
    for h in hosts:
        bed.run(h, argv, check=True)


def wait_for(what, cond, timeout, interval=0.05):
    """cond() until truthy; bounded in time and count. Raises BenchError with the last value."""
    ok, last = nsagents.poll(cond, timeout, interval)
    if ok:
        return last
    raise BenchError("%s: not reached within %.0f s (last: %r)" % (what, timeout, last))


def tail(path, n=LOG_TAIL):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(cannot read %s: %s)\n" % (path, e)


def vip_holders(bed, vip, dev="eth0"):
    """Nodes whose `dev` carries the address `vip` (no prefix)."""
    out = []
    for n in bed.nodes:
        cp = bed.run(n, ["ip", "-4", "-o", "addr", "show", "dev", dev], timeout=10)
        if re.search(r"\sinet %s/" % re.escape(vip), cp.stdout):
            out.append(n)
    return out


# ---- understudy agents in the bed ----------------------------------------------------------------

class Agents:
    def __init__(self, bed, binary, profile, workdir, services_text, debug=False):
        self.bed = bed
        self.extra_args = ["--debug"] if debug else []
        self.bin = binary
        self.profile = profile
        self.dir = workdir
        self.nodes = list(bed.nodes)
        self.procs = {}
        self.services = os.path.join(workdir, "services.ini")
        with open(self.services, "w") as f:
            f.write(services_text)
        for n in self.nodes:
            nsagents.write_node_config(self.conf(n), bed, n, "bench", os.path.join(workdir, "data-" + n),
                                       profile, self.nodes)

    def conf(self, n):
        return os.path.join(self.dir, n + ".conf")

    def logfile(self, n):
        return os.path.join(self.dir, "agent-%s.log" % n)

    def api(self, n):
        return nsagents.api(self.bed, n)

    def start(self, n):
        self.procs[n] = nsagents.start_agent(self.bed, n, self.bin, self.conf(n), self.logfile(n),
                                             extra_args=self.extra_args, stdin=subprocess.DEVNULL)

    def start_all(self):
        for n in self.nodes:
            self.start(n)

    def alive(self, n):
        return n in self.procs and self.procs[n].poll() is None

    def cli(self, argv, api_of, timeout=30):
        return nsagents.cli(self.bed, netns.CLIENT, self.bin, api_of, argv, timeout)

    def status_of(self, n):
        return nsagents.status(self.bed, netns.CLIENT, self.bin, n)

    def leader_status(self, nodes=None):
        """The status of the Raft leader (asked through a live agent), or None."""
        for n in nodes or self.nodes:
            if not self.alive(n):
                continue
            st = self.status_of(n)
            if not st:
                continue
            leader = (st.get("cluster") or {}).get("leader")
            if leader == st.get("node"):
                return st
            if leader in self.nodes and self.alive(leader):
                lst = self.status_of(leader)
                if lst and (lst.get("cluster") or {}).get("leader") == leader:
                    return lst
        return None

    def apply(self):
        cp = self.cli(["apply", self.services], self.nodes[0], timeout=60)
        if cp.returncode != 0:
            raise BenchError("apply failed (%d): %s%s" % (cp.returncode, cp.stdout, cp.stderr))

    def steady(self, service="web"):
        """(active, epoch, leader, status) when: quorum, every node alive, one active instance in
        state active; else None."""
        st = self.leader_status()
        if not st:
            return None
        c = st.get("cluster") or {}
        if not c.get("has_quorum") or not c.get("leader"):
            return None
        nodes = {x["name"]: x for x in st.get("nodes", [])}
        if any(n not in nodes or nodes[n]["state"] != "alive" or nodes[n].get("leaving")
               or not self.alive(n) for n in self.nodes):
            return None
        svc = [s for s in st.get("services", []) if s["name"] == service]
        if not svc or not svc[0].get("active") or svc[0].get("demoting"):
            return None
        act = svc[0]["active"]
        inst = [i for i in svc[0].get("instances", []) if i["node"] == act]
        if not inst or inst[0].get("state") != "active":
            return None
        return act, svc[0]["epoch"], c["leader"], st

    def all_applied(self, active, epoch, service="web"):
        """Whether every node's own state (`status --local`) shows `active` holding `service` under
        `epoch`: every agent applied the latest assignment. A node whose link just came back may
        answer datagrams (alive) while its Raft connections are still being re-established (up
        to ~1 s after a flap); a fault then is a second fault, not the one measured."""
        for n in self.nodes:
            st = self.status_of(n)
            svc = [s for s in (st or {}).get("services", []) if s["name"] == service]
            if not svc or svc[0].get("active") != active or svc[0].get("epoch") != epoch:
                return False
        return True

    def wait_leader(self, timeout):
        return wait_for("a leader with quorum",
                        lambda: ((self.leader_status() or {}).get("cluster") or {}).get("leader"),
                        timeout, 0.2)

    def log_tails(self):
        out = []
        for n in self.nodes:
            out.append("---- agent %s (last %d lines of %s)" % (n, LOG_TAIL, self.logfile(n)))
            out.append(tail(self.logfile(n)).rstrip("\n"))
        return "\n".join(out)

    def stop(self):
        """SIGINT (stop now, no hand-over: the bed goes next), SIGKILL after a bound."""
        nsagents.stop_procs(list(self.procs.values()), signal.SIGINT, bound=10)


# ---- the client helper -----------------------------------------------------------------------------

class Client:
    """A helper process in the client namespace (this file, `_client`), driven by JSON lines."""

    def __init__(self, bed):
        self.bed = bed
        self.p = bed.popen(netns.CLIENT, [sys.executable, os.path.abspath(__file__), "_client"],
                           label="client", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           bufsize=0)
        self.buf = b""

    def _send(self, obj):
        self.p.stdin.write((json.dumps(obj) + "\n").encode())

    def _recv(self, timeout):
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return json.loads(line)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if not r:
                break
            chunk = os.read(self.p.stdout.fileno(), 1 << 20)
            if not chunk:
                raise BenchError("client helper exited (status %r)" % self.p.poll())
            self.buf += chunk
        raise BenchError("client helper: no answer within %.0f s" % timeout)

    def get(self, host, port, timeout=0.5):
        """(node, epoch) of one fresh GET, or None."""
        r = self.get_raw(host, port, timeout)
        return (r["node"], r["epoch"]) if r.get("ok") else None

    def get_raw(self, host, port, timeout=0.5):
        """One fresh GET: {"ok": True, "node", "epoch"}, or {"ok": False, "err"} plus
        "standby": NODE when a hot standby (bench/hot_service.py) answered 503."""
        self._send({"cmd": "get", "host": host, "port": port, "timeout": timeout})
        return self._recv(timeout + 10)

    def watch_arm(self, host, port, old_node, old_epoch, period_ms, max_s, after_ms, arm_s=10):
        """Start the prober; returns once it saw old_node (and old_epoch, if >= 0) answer."""
        self._send({"cmd": "watch", "host": host, "port": port, "old_node": old_node,
                    "old_epoch": old_epoch, "period_ms": period_ms, "max_s": max_s,
                    "after_ms": after_ms, "arm_s": arm_s})
        r = self._recv(arm_s + 10)
        if not r.get("armed"):
            raise BenchError("prober: %s never answered through %s:%d within %.0f s (%s)"
                             % (old_node, host, port, arm_s, r.get("err")))

    def watch_result(self, max_s):
        """The prober's events: [(start_ns, end_ns, kind, node, epoch)], kind 'ok' or an error."""
        r = self._recv(max_s + 20)
        return r["events"], r["reason"]

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(timeout=5)


def analyse(events, t0_ns, old_node, old_epoch):
    """From the prober's events and the fault time: takeover (ms to the first answer of the new
    active), outage (longest span after t0 without any successful answer, ms), failed attempts
    that ended after t0, and answers from the old node after the new one first answered."""

    def is_new(node, epoch):
        return node != old_node and (old_epoch < 0 or epoch > old_epoch)

    oks = sorted((e[1], e[3], e[4]) for e in events if e[2] == "ok")
    first_new = next((t for t, n, ep in oks if t >= t0_ns and is_new(n, ep)), None)
    last_t = max((e[1] for e in events), default=t0_ns)
    gap, prev = 0, t0_ns
    for t, _, _ in oks:
        if t < t0_ns:
            continue
        gap = max(gap, t - prev)
        prev = t
    failed = sum(1 for e in events if e[2] != "ok" and e[1] >= t0_ns)
    old_after = sum(1 for t, n, ep in oks if first_new is not None and t > first_new and n == old_node)
    last_old = max((t for t, n, ep in oks if n == old_node), default=None)
    return {
        "takeover_ms": None if first_new is None else (first_new - t0_ns) / 1e6,
        "outage_ms": gap / 1e6,
        "failed": failed,
        "old_after_new": old_after,
        "last_old_ms": None if last_old is None else (last_old - t0_ns) / 1e6,
        "observed_ms": (last_t - t0_ns) / 1e6,
        "kinds": sorted({e[2] for e in events if e[2] != "ok" and e[1] >= t0_ns}),
    }


# ---- code that runs inside the client namespace ------------------------------------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def _one_get(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(REQUEST)
            data = b""
            for _ in range(1000):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return {"ok": False, "err": str(e)}
    m = ANSWER_RE.search(data)
    if not m:
        sb = STANDBY_RE.search(data)
        if sb:
            return {"ok": False, "err": "standby", "standby": sb.group(1).decode()}
        return {"ok": False, "err": "unexpected answer %r" % data[:200]}
    return {"ok": True, "node": m.group(1).decode(), "epoch": int(m.group(2))}


def _errkind(err):
    return {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset", errno.EHOSTUNREACH: "unreach",
            errno.ENETUNREACH: "unreach", errno.ETIMEDOUT: "timeout"}.get(err, "err%d" % err)


def _watch(cmd, out):
    """Start a new connection + GET every period_ms (each with a 1 s limit, several in flight),
    until the new active answered and after_ms more passed, or max_s. Reports 'armed' once the
    old active answered, then every attempt as [start_ns, end_ns, kind, node, epoch]."""
    addr = (cmd["host"], cmd["port"])
    period = cmd["period_ms"] * 1e6
    attempt_ns = int(1e9)
    old_node, old_epoch = cmd["old_node"], cmd["old_epoch"]
    sel = selectors.DefaultSelector()
    inflight = {}  # sock -> [start_ns, buf, sent]
    events = []
    armed_at = None
    first_new = None
    start = time.monotonic_ns()
    next_start = start
    reason = "max_s"
    arm_deadline = start + int(cmd["arm_s"] * 1e9)

    def finish(s, kind, node=None, epoch=None):
        st = inflight.pop(s)
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        events.append([st[0], time.monotonic_ns(), kind, node, epoch])
        return node, epoch

    for _ in range(10_000_000):
        now = time.monotonic_ns()
        if armed_at is None and now > arm_deadline:
            out({"armed": False, "err": "no answer from %s" % old_node})
            reason = "not armed"
            break
        if armed_at is not None and now > armed_at + int(cmd["max_s"] * 1e9):
            break
        if first_new is not None and now > first_new + int(cmd["after_ms"] * 1e6):
            reason = "done"
            break
        if now >= next_start:
            next_start += period
            if next_start < now:  # we fell behind (e.g. scheduling): do not start a burst
                next_start = now + period
            if len(inflight) < 2000:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
                inflight[s] = [now, b"", False]
                rc = s.connect_ex(addr)
                if rc in (0, errno.EINPROGRESS):
                    sel.register(s, selectors.EVENT_WRITE)
                else:
                    finish(s, _errkind(rc))
        for s, st in list(inflight.items()):
            if now - st[0] > attempt_ns:
                finish(s, "timeout")
        timeout = max(0.0, (next_start - time.monotonic_ns()) / 1e9)
        for key, ev in sel.select(timeout):
            s = key.fileobj
            st = inflight.get(s)
            if st is None:
                continue
            if not st[2]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(s, _errkind(err))
                    continue
                try:
                    s.send(REQUEST)
                except OSError as e:
                    finish(s, _errkind(e.errno or 0))
                    continue
                st[2] = True
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                chunk = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError as e:
                finish(s, _errkind(e.errno or 0))
                continue
            if chunk:
                st[1] += chunk
                if len(st[1]) < 65536:
                    continue
            m = ANSWER_RE.search(st[1])
            if not m:
                finish(s, "standby" if STANDBY_RE.search(st[1]) else "bad")
                continue
            node, epoch = finish(s, "ok", m.group(1).decode(), int(m.group(2)))
            t = events[-1][1]
            if armed_at is None and node == old_node and (old_epoch < 0 or epoch == old_epoch):
                armed_at = t
                out({"armed": True, "t": t})
            elif (armed_at is not None and first_new is None and node != old_node
                  and (old_epoch < 0 or epoch > old_epoch)):
                first_new = t
    for s in list(inflight):
        finish(s, "cancelled")
    sel.close()
    if armed_at is not None:
        out({"events": [e for e in events if e[2] != "cancelled"], "reason": reason})


def _client_main():
    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:  # ends when the bench closes our stdin
        cmd = json.loads(line)
        if cmd["cmd"] == "get":
            out(_one_get(cmd["host"], cmd["port"], cmd["timeout"]))
        elif cmd["cmd"] == "watch":
            _watch(cmd, out)
        else:
            out({"ok": False, "err": "unknown command"})
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_client":
        sys.exit(_client_main())
    sys.exit("nslib.py is a library of bench/failover-netns.py and bench/proxy.py")
