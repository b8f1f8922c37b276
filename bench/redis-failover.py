#!/usr/bin/env python3
"""Redis failover as a client sees it: understudy's redis recipe vs Redis Sentinel, same run.

Run through `make bench-redis` or `sh bench/redis-failover [--runs N] [--systems ...] [--faults
kill9,linkdown]` (root). Topology: the tests/netns.py bed, three node namespaces (eth0
198.18.0.11..13/24) and a client namespace (198.18.0.100) on one bridge. Every run of every system
gets a fresh bed (so the agents of one system never run beside the other's Sentinels), and the
systems alternate run by run (understudy first in odd runs, Sentinel first in even ones).

The same three redis-servers in both systems: examples/redis/run (`--appendonly yes --appendfsync
everysec --save "" --repl-diskless-sync no`, port 6379, one server per node namespace, its data in
the run's directory); n1 starts as the primary, n2 and n3 as its replicas.
  understudy  one agent per node (tests/nsagents.py node configs, profile default), the shipped
              recipe applied: examples/redis copied into the run's directory and redis.services
              pointed there (as tests/integration/test_redis.py does), hot standbys, standbys = 2,
              `vip = 198.18.0.200/24 dev eth0`. Its client writes through the VIP.
  sentinel    one redis-sentinel per node namespace (port 26379), `sentinel monitor mymaster
              198.18.0.11 6379 2` (quorum 2), down-after-milliseconds 1000 (sentinel:MS for
              another value), failover-timeout 3000, parallel-syncs 1; redis-servers started by
              the bench, as a supervisor would (the killed one restarted after the takeover with
              its own configuration, as a primary: Sentinel turns it into a replica).
Why down-after 1000 ms is Sentinel's fastest safe setting: Sentinel's failure detector and its
failover run on fixed one-second periods: it PINGs every instance once a second (at down-after's
period only when that is shorter), asks the other Sentinels for their view of the primary once a
second, refreshes replicas' INFO once a second during a failover and waits for the promoted
replica's INFO before it switches the primary and reconfigures the other replica. A down-after
below 1 s shortens only the first step, while every stall of the primary longer than it (a fork
for an AOF rewrite, an fsync stall under appendfsync everysec, a slow command, a loaded host)
becomes a failover, and with asynchronous replication a failover may drop writes: at 1000 ms a
stall must outlast one whole ping period. (The default is 30000 ms; the examples of Redis's
Sentinel documentation use 5000 to 60000 ms.) failover-timeout (default 180000 ms) bounds the
leader election and a promotion: a split vote between two Sentinels is retried after twice its
value (6 minutes by default), and a promotion not seen within it is aborted; 3000 ms keeps three
INFO periods of margin for the promotion on a loaded machine while a split vote costs 6 s.

Clients (this file, `_writer`, in the client namespace; redis_writer.py's connection and RESP,
the same timeouts for both: connect 250 ms (--connect-timeout-ms), reply 1 s, 20 ms pause after
an error): without pause SET w:<i> <i>, then WAIT 1 500; a write is acknowledged when WAIT reports
>= 1 replica. After each (re)connection the client reads the server's run_id (INFO server) to
tell the servers apart. The connect timeout shows in understudy's kill -9 figure: a connection
attempted while the VIP is on no node (removed from the old active, not yet on the new one) gets
no answer, and the next attempt starts when it times out.
  understudy  connects to the VIP, 198.18.0.200:6379 (nothing else: the VIP follows the primary).
  sentinel    as Redis's guidelines for Sentinel clients say: asks the Sentinels in turn (connect
              timeout each) `SENTINEL get-master-addr-by-name mymaster`, moves the first one
              that answers to the head of its list, connects to that address and checks that ROLE
              is master before writing; on any error it starts over with the Sentinels.

Faults, on the primary (understudy: the active node; Sentinel: the address the Sentinels give):
  kill9     kill -9 of its redis-server (understudy: its agent stays and fails over; the agent
            restarts the server as a standby by itself; Sentinel: the bench restarts it once the
            takeover is measured);
  linkdown  carrier loss on its switch port (netns link_down), link up once the takeover is
            measured.
A run: fresh bed, the system set up, wait until steady (understudy: quorum, every node alive and
applied, the Raft leader on another node than the active (right after a promotion the controller
moves it there), both standbys following, the VIP on the active only and answering as the primary
with both replicas online; Sentinel: the three Sentinels name the same primary, each sees it as
`master` with 2 replicas (flags `slave`, link ok) and 2 other Sentinels, and the redis-servers
agree: the primary with both replicas online, each replica linked to it), start the client, wait
for 50 acknowledged writes and a random 0..1 s (any phase of Sentinel's ping period), then
T0 = just before the fault. Takeover = T0 -> the first acknowledged write on another server than
the one written to before the fault. Then restore (link up, or the Sentinel's redis-server
restarted), wait until steady again (with the new primary), stop the client and count the
acknowledged writes missing on the primary (redis_writer.py check, MGET): acked writes lost.

Printed: per fault and system, takeover min / median / p90 / max, the ratio of the medians
understudy / Sentinel, and acknowledged writes (total and lost, and in how many runs any were
lost); for Sentinel also the medians of its failover's steps (+sdown, +odown, +elected-leader,
+selected-slave, +promoted-slave, +switch-master: ms after the fault, the first Sentinel to log
each, from their logs). Informational: no targets. Exit status 0 when every run was measured, 1
when one failed (its error is printed and the table counts the runs measured). The understudy
binary (--bin) is copied at the start, so that a rebuild during the run changes nothing. Every
wait is bounded in time and count; every process and namespace is removed on exit (also on
Ctrl-C / SIGTERM). Python standard library only.
"""

import argparse
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nslib  # noqa: E402
from looplib import percentile  # noqa: E402
from nslib import BenchError, log  # noqa: E402

sys.path.insert(0, os.path.join(nslib.ROOT, "tests", "integration"))
import redis_writer  # noqa: E402

netns = nslib.netns
nsagents = nslib.nsagents
ROOT = nslib.ROOT
RECIPE = os.path.join(ROOT, "examples", "redis")
RUN_SCRIPT = os.path.join(RECIPE, "run")
INSTALLED = "/usr/local/lib/understudy/redis"  # the recipe's paths in redis.services
WRITER = os.path.join(ROOT, "tests", "integration", "redis_writer.py")
VIP = "198.18.0.200"
REDIS_PORT = redis_writer.PORT
SENTINEL_PORT = 26379
MASTER = "mymaster"
FAILOVER_TIMEOUT_MS = 3000
# "PID:X 08 Dec 2026 04:59:56.238 # +sdown master mymaster 198.18.0.11 6379"
SENTINEL_LOG_RE = re.compile(r"^\d+:X (\d\d \w{3} \d{4} \d\d:\d\d:\d\d)\.(\d{3}) [#*.-] (\S+) ?(.*)$")
# A failover's steps in Sentinel's logs, in their order.
SENTINEL_STEPS = ["+sdown", "+odown", "+elected-leader", "+selected-slave", "+promoted-slave",
                  "+switch-master"]
FAULTS = {"kill9": "kill -9", "linkdown": "link down"}
TITLES = {"kill9": "kill -9 of the primary's redis-server",
          "linkdown": "link down of the primary's node (switch port carrier off)"}
STEADY_S = 90.0
ACKS_BEFORE = 50
TAKEOVER_MAX_S = 60.0
SETTLE_S = 90.0
WRITER_MAX_S = 600.0
CONNECT_S = 0.25
IO_S = 1.0
RETRY_S = 0.02
WAIT_MS = 500


def parse_system(name):
    """("understudy", profile) or ("sentinel", down-after ms) from understudy[:PROFILE] or
    sentinel[:MS]; None when it is neither."""
    kind, _, param = name.partition(":")
    if kind == "understudy" and param in ("", "default", "fast"):
        return kind, param or "default"
    if kind == "sentinel" and (param == "" or param.isdigit() and 100 <= int(param) <= 60000):
        return kind, int(param or 1000)
    return None


def label(system):
    kind, param = parse_system(system)
    return "understudy %s" % param if kind == "understudy" else "sentinel %d ms" % param


def info_fields(text):
    """INFO's text as {field: value}."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return dict(x.split(":", 1) for x in (text or "").split("\r\n") if ":" in x)


def online_replicas(info):
    """Addresses of the replicas an INFO replication lists as online."""
    out = []
    for k, v in info.items():
        if k.startswith("slave") and k[5:].isdigit():
            f = dict(x.split("=", 1) for x in v.split(",") if "=" in x)
            if f.get("state") == "online":
                out.append(f.get("ip"))
    return out


def pairs(flat):
    """A flat [k1, v1, k2, v2, ...] reply as a dict."""
    flat = flat if isinstance(flat, list) else []
    return dict(zip(flat[0::2], flat[1::2]))


# ---- helpers in the client namespace ----------------------------------------------------------------

class Conn(redis_writer.Conn):
    """redis_writer.Conn (its RESP replies) to any port, with a connect timeout of its own."""

    def __init__(self, host, port, connect_timeout, timeout):  # pylint: disable=super-init-not-called
        self.s = socket.create_connection((host, port), timeout=connect_timeout)
        self.s.settimeout(timeout)
        self.buf = b""


def _plain(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _query_main():
    """Answers JSON lines {"q": [[host, port, [arg...]], ...]} with {"r": [reply or {"err"}]}."""
    for line in sys.stdin:  # ends when the bench closes our stdin
        cmd = json.loads(line)
        out = []
        for host, port, argv in cmd["q"]:
            try:
                c = Conn(host, port, CONNECT_S, IO_S)
                try:
                    out.append(_plain(c.call(*argv)))
                finally:
                    c.close()
            except (OSError, RuntimeError, ConnectionError, ValueError) as e:
                out.append({"err": str(e) or type(e).__name__})
        sys.stdout.write(json.dumps({"r": out}) + "\n")
        sys.stdout.flush()
    return 0


class Query(nslib.Client):
    """Redis commands from the client namespace (this file, `_query`): nslib.Client's pipe."""

    def __init__(self, bed):  # pylint: disable=super-init-not-called
        self.bed = bed
        self.p = bed.popen(netns.CLIENT, [sys.executable, os.path.abspath(__file__), "_query"],
                           label="query", stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.buf = b""

    def many(self, queries):
        """[[host, port, [arg...]], ...] -> replies, None for an error."""
        self._send({"q": queries})
        r = self._recv(len(queries) * (CONNECT_S + IO_S) + 10)["r"]
        return [None if isinstance(x, dict) and "err" in x else x for x in r]

    def one(self, host, port, *argv):
        return self.many([[host, port, list(argv)]])[0]


def _errkind(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, RuntimeError):
        return str(e).split()[0] if str(e) else "error"
    return type(e).__name__


def _writer_main(argv):
    """SET, WAIT 1 500 without pause until SIGTERM, --seconds or --max. Events, one a line:
    C cid t_ns host run_id (a connection), A i t_ns cid (write i acknowledged), E t_ns kind."""
    ap = argparse.ArgumentParser(prog="redis-failover.py _writer")
    ap.add_argument("--host", help="write to this address (the VIP)")
    ap.add_argument("--sentinels", help="H1,H2,H3: ask them where the primary is")
    ap.add_argument("--master", default=MASTER)
    ap.add_argument("--connect-timeout-ms", type=float, default=CONNECT_S * 1000)
    ap.add_argument("--events", required=True)
    ap.add_argument("--seconds", type=float, default=WRITER_MAX_S)
    ap.add_argument("--max", type=int, default=10_000_000)
    a = ap.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sentinels = [s for s in (a.sentinels or "").split(",") if s]
    ct = a.connect_timeout_ms / 1000.0

    def connect():
        if not sentinels:
            return Conn(a.host, REDIS_PORT, ct, IO_S), a.host
        addr = None
        for s in list(sentinels):
            try:
                sc = Conn(s, SENTINEL_PORT, ct, IO_S)
                try:
                    addr = sc.call("SENTINEL", "get-master-addr-by-name", a.master)
                finally:
                    sc.close()
            except (OSError, RuntimeError, ConnectionError, ValueError):
                continue
            if addr:
                sentinels.remove(s)
                sentinels.insert(0, s)
                break
        if not addr:
            raise ConnectionError("no Sentinel named a primary")
        host = addr[0].decode()
        c = Conn(host, int(addr[1]), ct, IO_S)
        try:
            role = c.call("ROLE")[0]
        except BaseException:
            c.close()
            raise
        if role != b"master":
            c.close()
            raise RuntimeError("role %s" % role.decode(errors="replace"))
        return c, host

    end = time.monotonic() + a.seconds
    i = writes = acked = errors = cid = 0
    conn = None
    with open(a.events, "w") as ev:
        for _ in range(a.max):
            if stop or time.monotonic() >= end:
                break
            i += 1
            try:
                if conn is None:
                    conn, host = connect()
                    cid += 1
                    try:
                        runid = info_fields(conn.call("INFO", "server")).get("run_id", "?")
                    except BaseException:
                        conn.close()
                        raise
                    ev.write("C %d %d %s %s\n" % (cid, time.monotonic_ns(), host, runid))
                writes += 1
                conn.call("SET", "w:%d" % i, i)
                if conn.call("WAIT", 1, WAIT_MS) >= 1:
                    ev.write("A %d %d %d\n" % (i, time.monotonic_ns(), cid))
                    acked += 1
            except (OSError, RuntimeError, ConnectionError, ValueError) as e:
                errors += 1
                ev.write("E %d %s\n" % (time.monotonic_ns(), _errkind(e)))
                if conn:
                    conn.close()
                conn = None
                time.sleep(RETRY_S)
            ev.flush()
    print(json.dumps({"writes": writes, "acked": acked, "errors": errors}))
    return 0


class Events:
    """The client's events file, read as it grows."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.rest = b""
        self.conns = {}  # cid -> (t_ns, host, run_id)
        self.acks = []  # (t_ns, i, cid)
        self.errors = []  # (t_ns, kind)

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return
        self.off += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        for line in lines:
            p = line.decode(errors="replace").split() or ["-"]
            if p[0] == "C" and len(p) == 5:
                self.conns[int(p[1])] = (int(p[2]), p[3], p[4])
            elif p[0] == "A" and len(p) == 4:
                self.acks.append((int(p[2]), int(p[1]), int(p[3])))
            elif p[0] == "E" and len(p) == 3:
                self.errors.append((int(p[1]), p[2]))

    def runid(self, cid):
        return self.conns[cid][2]


# ---- the two systems --------------------------------------------------------------------------------

class Understudy:
    def __init__(self, bed, q, args, profile, workdir):
        self.bed, self.q, self.args, self.dir = bed, q, args, workdir
        dest = os.path.join(workdir, "redis-recipe")
        shutil.copytree(RECIPE, dest)
        with open(os.path.join(RECIPE, "redis.services")) as f:
            text = f.read().replace(INSTALLED, dest)
        if "vip = %s/24 dev eth0" % VIP not in text:
            raise BenchError("examples/redis/redis.services no longer has the VIP %s/24" % VIP)
        self.ag = nslib.Agents(bed, args.bin, profile, workdir, text)

    def setup(self):
        self.ag.start_all()
        self.ag.wait_leader(STEADY_S)
        self.ag.apply()

    def _state(self, need_leader_elsewhere):
        s = self.ag.steady("redis")
        if not s:
            return None
        act, epoch, leader, st = s
        if need_leader_elsewhere and act == leader:
            return None
        svc = [x for x in st.get("services", []) if x["name"] == "redis"][0]
        inst = {i["node"]: i for i in svc.get("instances", [])}
        if any(not inst.get(n) or inst[n].get("following") is not True or not inst[n].get("pid")
               for n in self.bed.nodes if n != act):
            return None
        if not self.ag.all_applied(act, epoch, "redis"):
            return None
        if nslib.vip_holders(self.bed, VIP) != [act]:
            return None
        info = info_fields(self.q.one(VIP, REDIS_PORT, "INFO", "replication"))
        if info.get("role") != "master" or len(online_replicas(info)) != 2:
            return None
        return act

    def steady(self):
        return self._state(True)

    def settled(self):
        return self._state(False)

    def writer_args(self):
        return ["--host", VIP]

    def check_host(self, primary):
        return VIP

    def redis_pid(self, n):
        """The redis-server of n's instance: its pid in n's own status, checked to be a
        redis-server in n's namespace (redis-server rewrites its environment and command line
        with its process title: they cannot tell whose it is)."""
        st = self.ag.status_of(n)
        svc = [x for x in (st or {}).get("services", []) if x["name"] == "redis"]
        pid = next((i.get("pid") for i in (svc[0].get("instances") or []) if i["node"] == n), None) \
            if svc else None
        if not isinstance(pid, int) or pid <= 0:
            raise BenchError("no pid for the instance on %s in its status: %s" % (n, svc))
        try:
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
        except OSError as e:
            raise BenchError("pid %d of the instance on %s: %s" % (pid, n, e))
        if comm != "redis-server" or pid not in self.bed.ns_pids(n) or \
                pid in (p.pid for p in self.ag.procs.values()):
            raise BenchError("pid %d reported for %s is not a redis-server in its namespace (%s)"
                             % (pid, n, comm))
        return pid

    def fault(self, fault, victim):
        if fault == "kill9":
            pid = self.redis_pid(victim)
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)  # the agent's grandchild: the agent reaps it
            return t0
        t0 = time.monotonic_ns()
        self.bed.link_down(victim)
        return t0

    def restore(self, fault, victim):
        if fault == "linkdown":
            self.bed.link_up(victim)
        # kill9: the agent starts the server again as a standby by itself

    def notes(self, t0_wall_ms):
        return "", {}

    def diagnostics(self):
        return "leader status: %s\n%s" % (self.ag.leader_status(), self.ag.log_tails())

    def stop(self):
        self.ag.stop()


SENTINEL_CONF = """port %(port)d
bind 0.0.0.0
protected-mode no
daemonize no
dir %(dir)s
sentinel monitor %(master)s %(ip)s %(rport)d 2
sentinel down-after-milliseconds %(master)s %(down)d
sentinel failover-timeout %(master)s %(fto)d
sentinel parallel-syncs %(master)s 1
"""


class Sentinel:
    def __init__(self, bed, q, args, down_after, workdir):
        self.bed, self.q, self.args, self.dir = bed, q, args, workdir
        self.down_after = down_after
        self.first = bed.nodes[0]
        self.redis = {}
        self.sentinels = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def start_redis(self, n, primary):
        """examples/redis/run in n, as the recipe's run hook would start it."""
        env = dict(os.environ, REDIS_DIR=self.path("redis-" + n), UNDERSTUDY_SERVICE="redis",
                   UNDERSTUDY_DATA_DIR=self.dir, UNDERSTUDY_ROLE="active" if primary else "standby",
                   UNDERSTUDY_ACTIVE_HOST=self.bed.ip[self.first])
        with open(self.path("redis-%s.log" % n), "ab") as lf:
            self.redis[n] = self.bed.popen(n, ["sh", RUN_SCRIPT], label="redis", env=env,
                                           stdin=subprocess.DEVNULL, stdout=lf,
                                           stderr=subprocess.STDOUT)

    def setup(self):
        for n in self.bed.nodes:
            self.start_redis(n, n == self.first)
        for n in self.bed.nodes:
            sdir = self.path("sentinel-" + n)
            os.makedirs(sdir)
            conf = self.path("sentinel-%s.conf" % n)
            with open(conf, "w") as f:
                f.write(SENTINEL_CONF % {"port": SENTINEL_PORT, "dir": sdir, "master": MASTER,
                                         "ip": self.bed.ip[self.first], "rport": REDIS_PORT,
                                         "down": self.down_after, "fto": FAILOVER_TIMEOUT_MS})
            with open(self.path("sentinel-%s.log" % n), "ab") as lf:
                self.sentinels[n] = self.bed.popen(n, [self.args.sentinel, conf], label="sentinel",
                                                   stdin=subprocess.DEVNULL, stdout=lf,
                                                   stderr=subprocess.STDOUT)

    def settled(self):
        """The primary every Sentinel and every redis-server agree on, or None."""
        for n, p in list(self.sentinels.items()) + list(self.redis.items()):
            if p.poll() is not None:
                raise BenchError("%s of %s exited (%s)" % ("sentinel" if p in self.sentinels.values()
                                                           else "redis-server", n, p.returncode))
        nodes = self.bed.nodes
        ips = [self.bed.ip[n] for n in nodes]
        qs = []
        for ip in ips:
            qs += [[ip, SENTINEL_PORT, ["SENTINEL", "get-master-addr-by-name", MASTER]],
                   [ip, SENTINEL_PORT, ["SENTINEL", "master", MASTER]],
                   [ip, SENTINEL_PORT, ["SENTINEL", "replicas", MASTER]]]
        qs += [[ip, REDIS_PORT, ["INFO", "replication"]] for ip in ips]
        r = self.q.many(qs)
        addrs = {tuple(r[3 * k]) if r[3 * k] else None for k in range(len(nodes))}
        if len(addrs) != 1 or None in addrs:
            return None
        ip, port = addrs.pop()
        if int(port) != REDIS_PORT or ip not in ips:
            return None
        primary = nodes[ips.index(ip)]
        for k in range(len(nodes)):
            m = pairs(r[3 * k + 1])
            if m.get("flags") != "master" or m.get("num-slaves") != "2" or \
                    m.get("num-other-sentinels") != "2":
                return None
            reps = [pairs(x) for x in (r[3 * k + 2] or [])]
            if len(reps) != 2 or any(x.get("flags") != "slave" or x.get("master-link-status")
                                     != "ok" for x in reps):
                return None
        for k, n in enumerate(nodes):
            info = info_fields(r[3 * len(nodes) + k])
            if n == primary:
                if info.get("role") != "master" or len(online_replicas(info)) != 2:
                    return None
            elif info.get("role") != "slave" or info.get("master_host") != ip or \
                    info.get("master_link_status") != "up":
                return None
        return primary

    def steady(self):
        return self.settled()

    def writer_args(self):
        return ["--sentinels", ",".join(self.bed.ip[n] for n in self.bed.nodes)]

    def check_host(self, primary):
        return self.bed.ip[primary]

    def fault(self, fault, victim):
        if fault == "kill9":
            p = self.redis[victim]
            try:
                with open("/proc/%d/comm" % p.pid) as f:
                    comm = f.read().strip()
            except OSError as e:
                raise BenchError("redis-server of %s (pid %d): %s" % (victim, p.pid, e))
            if p.poll() is not None or comm != "redis-server" or \
                    p.pid not in self.bed.ns_pids(victim):
                raise BenchError("pid %d is not the redis-server in %s's namespace (%s)"
                                 % (p.pid, victim, comm))
            t0 = time.monotonic_ns()
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
            return t0
        t0 = time.monotonic_ns()
        self.bed.link_down(victim)
        return t0

    def restore(self, fault, victim):
        if fault == "linkdown":
            self.bed.link_up(victim)
        else:
            self.start_redis(victim, True)  # its own configuration: it was the primary

    def log_lines(self):
        """[(wall ms, event, rest)] of the three Sentinels' logs, in time order."""
        out = []
        for n in self.bed.nodes:
            try:
                with open(self.path("sentinel-%s.log" % n), errors="replace") as f:
                    lines = f.readlines()
            except OSError:
                continue
            for line in lines:
                m = SENTINEL_LOG_RE.match(line)
                if not m:
                    continue
                t = time.mktime(time.strptime(m.group(1), "%d %b %Y %H:%M:%S"))
                out.append((t * 1000.0 + int(m.group(2)), m.group(3), m.group(4)))
        return sorted(out)

    def notes(self, t0_wall_ms):
        """The failover's steps (ms after the fault, the first Sentinel to log each) and its
        oddities: several attempts, aborted elections, TILT."""
        lines = self.log_lines()
        steps = {}
        for t, ev, rest in lines:
            if t >= t0_wall_ms - 1000 and ev in SENTINEL_STEPS and ev not in steps and \
                    (ev != "+sdown" or rest.startswith("master ")):
                steps[ev] = t - t0_wall_ms
        out = [" ".join("%s %.0f" % (k, steps[k]) for k in SENTINEL_STEPS if k in steps)]
        for ev in ("+try-failover", "-failover-abort-not-elected", "+tilt"):
            k = sum(1 for x in lines if x[1] == ev)
            if k and (k > 1 or ev != "+try-failover"):
                out.append("%s x%d" % (ev, k))
        return "; ".join(out), steps

    def diagnostics(self):
        out = []
        for n in self.bed.nodes:
            out.append("---- sentinel %s (tail of %s)" % (n, self.path("sentinel-%s.log" % n)))
            out.append(nslib.tail(self.path("sentinel-%s.log" % n)).rstrip("\n"))
        return "\n".join(out)

    def stop(self):
        nsagents.stop_procs(list(self.sentinels.values()) + list(self.redis.values()),
                            signal.SIGTERM, bound=10)


# ---- one run ------------------------------------------------------------------------------------------

def one_run(args, system, fault, run, state):
    kind, param = parse_system(system)
    workdir = tempfile.mkdtemp(prefix="understudy-bench-redis.%s-%s-%d." % (
        system.replace(":", "-"), fault, run))
    bed = netns.TestBed(3)
    state["bed"], state["dir"] = bed, workdir
    sysobj = q = writer = None
    try:
        bed.start()
        q = Query(bed)
        if kind == "understudy":
            sysobj = Understudy(bed, q, args, param, workdir)
        else:
            sysobj = Sentinel(bed, q, args, param, workdir)
        sysobj.setup()
        primary = nslib.wait_for("steady before the fault", sysobj.steady, STEADY_S, 0.2)
        runids = {}
        for n in bed.nodes:
            runids[info_fields(q.one(bed.ip[n], REDIS_PORT, "INFO", "server")).get("run_id")] = n
        evpath = os.path.join(workdir, "client.events")
        with open(os.path.join(workdir, "client.out"), "wb") as out:
            writer = bed.popen(netns.CLIENT, [sys.executable, os.path.abspath(__file__), "_writer",
                                              "--events", evpath, "--connect-timeout-ms",
                                              str(args.connect_timeout_ms)] + sysobj.writer_args(),
                               label="writer", stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT)
        ev = Events(evpath)

        def acks_before():
            if writer.poll() is not None:
                raise BenchError("the client exited (%s): %s" % (
                    writer.returncode, nslib.tail(os.path.join(workdir, "client.out"), 5)))
            ev.poll()
            return len(ev.acks) >= ACKS_BEFORE

        nslib.wait_for("%d acknowledged writes" % ACKS_BEFORE, acks_before, 30, 0.05)
        time.sleep(random.uniform(0.0, 1.0))
        ev.poll()
        old_runid = ev.runid(ev.acks[-1][2])
        if runids.get(old_runid) != primary:
            raise BenchError("the client writes to %s (run_id %s), not to the primary %s"
                             % (runids.get(old_runid), old_runid, primary))
        wall_off_ns = time.time_ns() - time.monotonic_ns()
        t0 = sysobj.fault(fault, primary)

        scan = [0]

        def taken_over():
            acks_before()
            for t, i, cid in ev.acks[scan[0]:]:
                if t >= t0 and ev.runid(cid) != old_runid:
                    return t, cid
            scan[0] = len(ev.acks)
            return None

        t_new, cid = nslib.wait_for("an acknowledged write on a new primary", taken_over,
                                    TAKEOVER_MAX_S, 0.01)
        new = runids.get(ev.runid(cid), "?")
        takeover_ms = (t_new - t0) / 1e6
        sysobj.restore(fault, primary)
        settled = nslib.wait_for("steady again after the fault", sysobj.settled, SETTLE_S, 0.2)
        nsagents.stop_procs([writer], signal.SIGTERM, bound=10)
        ev.poll()
        acked_file = os.path.join(workdir, "acked.txt")
        with open(acked_file, "w") as f:
            f.write("".join("%d\n" % i for _, i, _ in ev.acks))
        cp = bed.run(netns.CLIENT, [sys.executable, WRITER, "check", "--host",
                                    sysobj.check_host(settled), "--acked", acked_file], timeout=120)
        try:
            chk = json.loads(cp.stdout)
        except ValueError:
            raise BenchError("redis_writer.py check failed: %s" % cp.stderr.strip())
        r = {"takeover_ms": takeover_ms, "old": primary, "new": new, "settled": settled,
             "acked": len(ev.acks), "lost": chk["n_missing"], "missing": chk["missing"],
             "errors": len([e for e in ev.errors if e[0] >= t0]),
             "after": len([a for a in ev.acks if a[0] >= t0])}
        notes, r["steps"] = sysobj.notes((t0 + wall_off_ns) / 1e6)
        log("  %-9s run %2d %-18s %s -> %s: first acked write after %8.1f ms; acked %6d (%5d after "
            "the fault), lost %d%s; %d errors%s%s"
            % (FAULTS[fault], run, label(system), primary, new, takeover_ms, r["acked"], r["after"],
               r["lost"], " %s" % r["missing"][:5] if r["lost"] else "", r["errors"],
               "; steady with %s as the primary" % settled if settled != new else "",
               "; " + notes if notes else ""))
        return r
    except (BenchError, netns.NetnsError, subprocess.TimeoutExpired, OSError, ValueError, KeyError,
            IndexError) as e:
        log("bench: %s, %s, run %d: %s: %s" % (label(system), FAULTS[fault], run, type(e).__name__, e))
        if sysobj:
            try:
                log(sysobj.diagnostics())
            except (BenchError, netns.NetnsError, OSError) as d:
                log("(no diagnostics: %s)" % d)
        return {"error": (str(e) or type(e).__name__).splitlines()[0]}
    finally:
        if writer is not None and writer.poll() is None:
            nsagents.stop_procs([writer], signal.SIGTERM, bound=5)
        if sysobj:
            sysobj.stop()
        if q:
            q.close()
        nslib.close_bed(state, bed, workdir, args.keep)


# ---- report -------------------------------------------------------------------------------------------

def report(args, results):
    ok = True
    lines = ["", "== redis failover, client-observed: fault -> first write acknowledged by a replica "
             "(SET + WAIT 1 %d) on the new primary;" % WAIT_MS,
             "   understudy: examples/redis through the VIP; Sentinel: 3 Sentinels, quorum 2, a "
             "Sentinel-aware client; %d runs per system and fault" % args.runs]
    for fault in args.faults:
        lines += ["", TITLES[fault],
                  "  %-20s %4s | %-39s | %s" % ("", "", "takeover ms", "acknowledged writes"),
                  "  %-20s %4s | %9s %9s %9s %9s | %8s %6s %s"
                  % ("system", "runs", "min", "median", "p90", "max", "acked", "lost",
                     "(runs with a loss)")]
        medians = {}
        for system in args.systems:
            rs = results[system][fault]
            good = [x for x in rs if "error" not in x]
            bad = [x for x in rs if "error" in x]
            if good:
                s = sorted(x["takeover_ms"] for x in good)
                medians[system] = statistics.median(s)
                lines.append("  %-20s %4d | %9.1f %9.1f %9.1f %9.1f | %8d %6d (%d)"
                             % (label(system), len(good), s[0], medians[system], percentile(s, 90),
                                s[-1], sum(x["acked"] for x in good), sum(x["lost"] for x in good),
                                sum(1 for x in good if x["lost"])))
            else:
                lines.append("  %-20s %4d | no run measured" % (label(system), 0))
            steps = [x["steps"] for x in good if x.get("steps")]
            if steps:
                lines.append("  %-20s      steps, median ms after the fault (first Sentinel to log "
                             "each): %s" % ("", " ".join(
                                 "%s %.0f" % (k, statistics.median(st[k] for st in steps
                                                                   if k in st))
                                 for k in SENTINEL_STEPS if any(k in st for st in steps))))
            for x in bad:
                ok = False
                lines.append("  %-20s      error: %s" % (label(system), x["error"]))
        for us in [s for s in args.systems if parse_system(s)[0] == "understudy"]:
            for se in [s for s in args.systems if parse_system(s)[0] == "sentinel"]:
                if us in medians and se in medians:
                    lines.append("  ratio %s / %s median: %.1f / %.1f ms = %.2f"
                                 % (label(us), label(se), medians[us], medians[se],
                                    medians[us] / medians[se]))
                else:
                    lines.append("  ratio %s / %s median: n/a (no run measured)"
                                 % (label(us), label(se)))
    lines += ["", "acknowledged writes lost, every fault:"]
    for system in args.systems:
        good = [x for f in args.faults for x in results[system][f] if "error" not in x]
        lines.append("  %-20s %d of %d (in %d of %d runs)"
                     % (label(system), sum(x["lost"] for x in good), sum(x["acked"] for x in good),
                        sum(1 for x in good if x["lost"]), len(good)))
    lines += ["", "takeover = fault -> the first write acknowledged (WAIT reports a replica) by "
              "another server than the one written to", "before the fault; lost = acknowledged "
              "writes missing on the primary once every node is back and steady."]
    log("\n".join(lines))
    return ok


def main():
    ap = argparse.ArgumentParser(description="understudy's redis recipe vs Redis Sentinel: "
                                 "failover of the primary")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--sentinel", default=shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--systems", default="understudy,sentinel:1000",
                    help="comma-separated: understudy[:default|fast], sentinel[:DOWN_AFTER_MS] "
                         "(default: understudy,sentinel:1000)")
    ap.add_argument("--faults", default=",".join(FAULTS), help="kill9, linkdown")
    ap.add_argument("--connect-timeout-ms", type=float, default=CONNECT_S * 1000,
                    help="the clients' connect timeout (default %(default)g)")
    ap.add_argument("--keep", action="store_true", help="keep each run's logs and configuration")
    args = ap.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.faults = [f for f in args.faults.split(",") if f]
    for s in args.systems:
        if not parse_system(s):
            sys.exit("bench: unknown system '%s' (understudy[:default|fast], sentinel[:MS], "
                     "MS 100..60000)" % s)
    for f in args.faults:
        if f not in FAULTS:
            sys.exit("bench: unknown fault '%s' (%s)" % (f, ", ".join(FAULTS)))
    if len(set(args.systems)) != len(args.systems) or not args.systems or not args.faults:
        sys.exit("bench: --systems and --faults need distinct, non-empty lists")
    if not 1 <= args.runs <= 1000 or not 10 <= args.connect_timeout_ms <= 5000:
        sys.exit("bench: --runs must be 1..1000 and --connect-timeout-ms 10..5000")
    tools = ["ip", "redis-server"]
    if any(parse_system(s)[0] == "sentinel" for s in args.systems):
        tools.append("redis-sentinel")
    nslib.need_root_and_tools(tools)
    if not shutil.which("redis-server"):
        sys.exit("bench: redis-server is missing: run `sh scripts/setup-databases.sh` (as root)")
    if any(parse_system(s)[0] == "understudy" for s in args.systems) and \
            not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)

    state = {"bed": None, "dir": None, "bin_dir": None}

    def on_exit():
        if state["bed"]:
            state["bed"].close()
        if state["dir"] and not args.keep:
            shutil.rmtree(state["dir"], ignore_errors=True)
        if state["bin_dir"]:
            shutil.rmtree(state["bin_dir"], ignore_errors=True)

    atexit.register(on_exit)
    if any(parse_system(s)[0] == "understudy" for s in args.systems):
        # A copy: a rebuild of --bin during the run (a shared tree) neither breaks a run nor mixes
        # two builds in one table.
        state["bin_dir"] = tempfile.mkdtemp(prefix="understudy-bench-redis.bin.")
        orig = args.bin
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(orig)))
        args.bin = shutil.copy2(orig, os.path.join(state["bin_dir"], "understudy"))
        log("bench: %s (built %s) copied to %s for this run" % (orig, built, args.bin))

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    log("== redis failover: %s; faults %s; %d runs each, a fresh bed per run, systems alternating; "
        "client connect timeout %g ms" % (", ".join(label(s) for s in args.systems),
                                          ", ".join(args.faults), args.runs, args.connect_timeout_ms))
    results = {s: {f: [] for f in args.faults} for s in args.systems}
    for fault in args.faults:
        for run in range(1, args.runs + 1):
            order = args.systems if run % 2 else list(reversed(args.systems))
            for system in order:
                results[system][fault].append(one_run(args, system, fault, run, state))
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_query":
        sys.exit(_query_main())
    if len(sys.argv) >= 2 and sys.argv[1] == "_writer":
        sys.exit(_writer_main(sys.argv[2:]))
    sys.exit(main())
