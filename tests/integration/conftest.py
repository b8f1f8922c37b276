"""Integration test harness: real agents, real processes, real sockets (standard library + pytest).

`cluster` fixture -> Cluster: picks free loopback ports, writes node configs in the test's tmp
dir, starts agents (stderr and stdout to DIR/NAME/agent.log), and always cleans up: SIGTERM twice,
SIGKILL after a deadline, then kills whatever process group is still recorded in a data_dir's
run/*.pid, and checks by PID (and start time) that no agent, guardian or service process it saw
is left. Leftovers and sanitizer reports in the agent logs fail the test's teardown.

Waiting is always wait_until(cond, timeout, what): a deadline, never a bare sleep; on timeout it
fails naming what was awaited, the last value seen, and the tail of every agent log.

Service instances run overlap_service.py (see there); assert_no_overlap() checks its log.
"""

import collections
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("UNDERSTUDY_BIN") or os.path.join(REPO, "build", "san", "understudy")
SERVICE = os.path.join(HERE, "overlap_service.py")
PYTHON = sys.executable or "/usr/bin/python3"
HOST = "127.0.0.1"
CLUSTER_NAME = "itest"
BLOCK_PORTS = 32  # ports reserved per cluster: 2 per node (cluster address, API)

# Default profile (src/core/lease.c, us_timing_profile): heartbeat 100 ms, lease 600 ms, election 1000 ms.
LEASE_MS = 600

SANITIZER_RE = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|" r"UndefinedBehaviorSanitizer"
)


def ensure_key(path):
    """A cluster key at path, made once by `understudy keygen` (which refuses to overwrite)."""
    if not os.path.exists(path):
        subprocess.run([BIN, "keygen", path], check=True, capture_output=True, timeout=30)
    return path


def ensure_token(path):
    """An API token file at path, made once by `understudy keygen --token`."""
    if not os.path.exists(path):
        subprocess.run([BIN, "keygen", "--token", path], check=True, capture_output=True, timeout=30)
    return path


def read_token(path):
    """The first token of a token file (a bare token, or NAME TOKEN)."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line.split()[-1]
    raise RuntimeError("no token in %s" % path)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def api_open(api, path, token=None, method="GET", body=None, headers=None, timeout=5, cafile=None):
    """One request to an agent's API, no proxy, no redirects: (status, headers, body bytes).
    `token` (the bearer token) is sent when given; with `cafile`, over https checked against it."""
    handlers = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if cafile:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
    opener = urllib.request.build_opener(*handlers)
    h = dict(headers or {})
    if token:
        h.setdefault("Authorization", "Bearer " + token)
    if method != "GET" and body is not None:
        h.setdefault("Content-Type", "application/json")
    url = "%s://%s%s" % ("https" if cafile else "http", api, path)
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# ---------------------------------------------------------------- waiting


def wait_until(cond, timeout, what, interval=0.05, dump=None):
    """Call cond() until it returns a truthy value (returned) or `timeout` seconds pass.

    Exceptions from cond() count as "not yet" (e.g. an agent that is not answering yet) and are
    shown in the failure message together with the last value and, through dump(), agent logs.
    """
    deadline = time.monotonic() + timeout
    last, last_exc = None, None
    while True:
        try:
            last = cond()
            last_exc = None
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = ["timed out after %.1f s waiting for: %s" % (timeout, what)]
    text = repr(last)
    msg.append("last value: %s" % (text if len(text) < 3000 else text[:3000] + "..."))
    if last_exc is not None:
        msg.append("last error: %r" % (last_exc,))
    if dump is not None:
        msg.append(dump())
    pytest.fail("\n".join(msg), pytrace=False)


# ---------------------------------------------------------------- /proc helpers


def proc_stat(pid):
    """(state, ppid, pgrp, starttime, comm) of a process, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    lp, rp = data.index("("), data.rindex(")")
    comm = data[lp + 1 : rp]
    fields = data[rp + 2 :].split()
    # fields[0] is field 3 (state); ppid 4, pgrp 5, starttime 22.
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19]), comm


def pid_running(pid, starttime=None):
    """Does `pid` exist, is it not a zombie, and (if given) has it this start time?"""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[3] == starttime


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def pgrp_members(pgid):
    """Live (non-zombie) processes of process group pgid."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgid and st[0] not in ("Z", "X"):
            out.append(pid)
    return out


def children_of(ppid):
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == ppid:
            out.append((pid, st))
    return out


def proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


# ---------------------------------------------------------------- ports


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
            return int(lo), int(hi)
    except OSError:
        return 32768, 60999


def port_free(port, host=HOST):
    """Nothing is bound to TCP or UDP `port` (the cluster address uses both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_port_block(n=BLOCK_PORTS):
    """A random block of n free ports in 20000-40000, outside the ephemeral range (so that
    outgoing connections cannot take them) and away from the demo's 7101.."""
    lo_eph, hi_eph = _ephemeral_range()
    ranges = [(a, b) for a, b in [(20000, min(40000, lo_eph)), (max(20000, hi_eph + 1), 40000)] if b - a > n]
    if not ranges:
        ranges = [(20000, 40000)]
    rng = random.Random()
    for _ in range(200):
        a, b = rng.choice(ranges)
        base = rng.randrange(a, b - n)
        if all(port_free(p) for p in range(base, base + n)):
            return base
    raise RuntimeError("no block of %d free ports found in 20000-40000" % n)


# ---------------------------------------------------------------- the overlap log


Interval = collections.namedtuple("Interval", "node epoch first last count")


def read_intervals(path):
    """Lines "NODE EPOCH TIME_NS" grouped into per-(node, epoch) intervals, sorted by start."""
    acc = {}
    if not os.path.exists(path):
        return []
    with open(path) as f:
        for no, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
                raise AssertionError("%s:%d: malformed line %r" % (path, no, line))
            key = (parts[0], int(parts[1]))
            t = int(parts[2])
            if key in acc:
                first, last, count = acc[key]
                acc[key] = (min(first, t), max(last, t), count + 1)
            else:
                acc[key] = (t, t, 1)
    ivs = [Interval(k[0], k[1], v[0], v[1], v[2]) for k, v in acc.items()]
    ivs.sort(key=lambda i: (i.first, i.last))
    return ivs


def format_intervals(ivs):
    if not ivs:
        return "  (no lines)"
    t0 = ivs[0].first
    return "\n".join(
        "  %-4s epoch %-3d  %+10.3f ms .. %+10.3f ms  (%d lines)"
        % (i.node, i.epoch, (i.first - t0) / 1e6, (i.last - t0) / 1e6, i.count)
        for i in ivs
    )


def assert_no_overlap(path):
    """Safety check of the overlap log, with no tolerance:
    - no two intervals overlap (different nodes; also the same node under two epochs, which would
      be two processes acting at once), touching at the same nanosecond counts as overlap;
    - ordered by start time, the epochs of successive intervals strictly increase (so an epoch is
      never acted under by two nodes, nor resumed after a newer one).
    Returns the intervals."""
    ivs = read_intervals(path)
    problems = []
    for i, a in enumerate(ivs):
        for b in ivs[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                problems.append(
                    "overlap: %s/epoch %d and %s/epoch %d acted at the same time for %.3f ms"
                    % (a.node, a.epoch, b.node, b.epoch, (min(a.last, b.last) - max(a.first, b.first)) / 1e6)
                )
    for a, b in zip(ivs, ivs[1:]):
        if b.epoch <= a.epoch:
            problems.append(
                "epoch did not increase: %s/epoch %d followed by %s/epoch %d" % (a.node, a.epoch, b.node, b.epoch)
            )
    if problems:
        raise AssertionError(
            "overlap log %s violates safety:\n%s\nintervals:\n%s" % (path, "\n".join(problems), format_intervals(ivs))
        )
    return ivs


# ---------------------------------------------------------------- the cluster


class Node:
    def __init__(self, name, address, api, root):
        self.name = name
        self.address = address
        self.api = api
        self.dir = os.path.join(root, name)
        self.data_dir = os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "node.conf")
        self.log = os.path.join(self.dir, "agent.log")
        self.proc = None  # subprocess.Popen of the running (or last) agent
        self.stopped = False  # SIGSTOPped by the test
        self.exit_codes = []
        os.makedirs(self.dir, exist_ok=True)


class Cluster:
    def __init__(self, root, profile=None):
        self.root = str(root)
        self.profile = profile
        self.base_port = pick_port_block()
        self.next_port = self.base_port
        self.nodes = collections.OrderedDict()
        self.members = []  # names in the initial members line
        self.overlap_log = os.path.join(self.root, "overlap.log")
        self.hooks_log = os.path.join(self.root, "hooks.log")
        self.seen = {}  # pid -> (starttime, description): every process we must not leave behind
        self._files = 0
        self.cafile = None  # set when the agents serve https: what their certificate is checked against

    # ---- configuration

    def _alloc(self):
        while self.next_port + 1 < self.base_port + BLOCK_PORTS:
            a, b = self.next_port, self.next_port + 1
            self.next_port += 2
            if port_free(a) and port_free(b):
                return a, b
        raise RuntimeError("port block %d.. exhausted" % self.base_port)

    def _new_node(self, name):
        a, b = self._alloc()
        node = Node(name, "%s:%d" % (HOST, a), "%s:%d" % (HOST, b), self.root)
        self.nodes[name] = node
        return node

    def write_config(self, name, members=None, join=None, extra_node="", extra_cluster=""):
        n = self.nodes[name]
        lines = [
            "# written by tests/integration/conftest.py",
            "[node]",
            "name = %s" % n.name,
            "address = %s" % n.address,
            "api = %s" % n.api,
            "data_dir = %s" % n.data_dir,
            "api_token_file = %s" % self.token_file(),
        ]
        if extra_node:
            lines.append(extra_node)
        lines += ["", "[cluster]", "name = %s" % CLUSTER_NAME]
        if members:
            lines.append("members = " + " ".join("%s=%s" % (m, self.nodes[m].address) for m in members))
        if join:
            lines.append("join = " + " ".join(join))
        if self.profile:
            lines.append("profile = %s" % self.profile)
        lines.append("key_file = %s" % self.key_file())
        if extra_cluster:
            lines.append(extra_cluster)
        with open(n.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return n.conf

    def key_file(self):
        """The cluster key every node of this cluster shares, made by `understudy keygen`."""
        return ensure_key(os.path.join(self.root, "cluster.key"))

    def token_file(self):
        """The API token file every node of this cluster uses, made by `understudy keygen --token`."""
        return ensure_token(os.path.join(self.root, "api.token"))

    @property
    def token(self):
        return read_token(self.token_file())

    def api(self, name, path, method="GET", body=None, headers=None, token=True, timeout=5):
        """A request to node `name`'s API with this cluster's token (unless token=False):
        (status, headers, body bytes)."""
        return api_open(self.nodes[name].api, path, token=self.token if token else None, method=method,
                        body=body, headers=headers, timeout=timeout, cafile=self.cafile)

    def configure(self, names=("n1", "n2", "n3"), extra_cluster="", extra_node=""):
        for name in names:
            self._new_node(name)
        self.members = list(names)
        for name in names:
            self.write_config(name, members=self.members, extra_cluster=extra_cluster, extra_node=extra_node)

    # ---- processes

    def _remember(self, pid, what):
        st = proc_stat(pid)
        if st is not None:
            self.seen[pid] = (st[3], what)

    def _find_guardian(self, node):
        """The guardian is forked by the agent before its loop runs; remember it so that cleanup
        can check that it went away too."""
        pid = node.proc.pid

        def found():
            if node.proc.poll() is not None:
                return "exited"
            g = [c for c, st in children_of(pid) if st[4] == "us-guardian"]
            for c in g:
                self._remember(c, "guardian of %s (agent pid %d)" % (node.name, pid))
            return g

        wait_until(found, 10, "the guardian of %s to appear" % node.name, interval=0.01, dump=self.dump_logs)

    def start(self, name, wait_guardian=True, env=None):
        """Start the agent of `name`; `env` (optional) adds to / overrides its environment."""
        n = self.nodes[name]
        assert n.proc is None or n.proc.poll() is not None, "%s is already running" % name
        extra_env = env
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)  # keep timestamps in the logs
        env.pop("UNDERSTUDY_API", None)
        env.pop("NOTIFY_SOCKET", None)  # the test runner's own service manager is not ours
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        env.update(extra_env or {})
        log = open(n.log, "ab")
        log.write(("==== test harness: starting %s at %s\n" % (name, time.strftime("%H:%M:%S"))).encode())
        log.flush()
        try:
            n.proc = subprocess.Popen(
                [BIN, "agent", "--config", n.conf],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        n.stopped = False
        self._remember(n.proc.pid, "agent %s" % name)
        if wait_guardian:
            self._find_guardian(n)
        return n.proc

    def start_all(self):
        for name in self.nodes:
            self.start(name)

    def form(self, names=("n1", "n2", "n3"), extra_cluster="", extra_node=""):
        """Configure, start and wait until every node sees the same leader with quorum and the
        leader sees all of them alive voters. Returns the leader's status. `extra_cluster` lines
        go into every node's [cluster] section, `extra_node` lines into [node]."""
        self.configure(names, extra_cluster=extra_cluster, extra_node=extra_node)
        self.start_all()

        def formed():
            views = [self.status(m) for m in names]
            leaders = {v["cluster"]["leader"] for v in views}
            if len(leaders) != 1 or None in leaders or not all(v["cluster"]["has_quorum"] for v in views):
                return None
            st = self.status(leaders.pop())
            nodes = {x["name"]: x for x in st["nodes"]}
            if set(nodes) != set(names):
                return None
            if all(nodes[m]["state"] == "alive" and nodes[m]["voter"] for m in names):
                return st
            return None

        return self.wait_until(formed, 30, "the cluster to form (one leader, %s alive voters)" % " ".join(names))

    def add_node(self, name, join=None, extra_cluster=""):
        """Configure a node whose config has only `join` (no members) and start it."""
        self._new_node(name)
        if join is None:
            join = [self.nodes[m].address for m in self.members]
        self.write_config(name, join=join, extra_cluster=extra_cluster)
        return self.start(name)

    def running(self, name):
        n = self.nodes[name]
        return n.proc is not None and n.proc.poll() is None

    def pid(self, name):
        return self.nodes[name].proc.pid

    def kill9(self, name):
        """SIGKILL the agent; returns time.monotonic() taken right before the kill. The agent is
        reaped later (wait_exit, running, cleanup) so that the caller can time what follows."""
        n = self.nodes[name]
        t0 = time.monotonic()
        os.kill(n.proc.pid, signal.SIGKILL)
        n.stopped = False
        return t0

    def stop(self, name):
        """SIGSTOP the agent (not its guardian nor its services); returns time.monotonic()."""
        n = self.nodes[name]
        t0 = time.monotonic()
        os.kill(n.proc.pid, signal.SIGSTOP)
        n.stopped = True
        return t0

    def cont(self, name):
        n = self.nodes[name]
        os.kill(n.proc.pid, signal.SIGCONT)
        n.stopped = False
        return time.monotonic()

    def term(self, name):
        os.kill(self.nodes[name].proc.pid, signal.SIGTERM)
        return time.monotonic()

    def wait_exit(self, name, timeout):
        n = self.nodes[name]
        self.wait_until(lambda: n.proc.poll() is not None, timeout, "the agent of %s to exit" % name)
        n.exit_codes.append(n.proc.returncode)
        return n.proc.returncode

    def restart(self, name):
        n = self.nodes[name]
        if n.proc is not None and n.proc.poll() is None:
            self.term(name)
            self.wait_exit(name, 40)
        return self.start(name)

    # ---- API and CLI

    def status(self, name=None, timeout=3):
        """GET /v1/status from `name` (default: the first running node that answers)."""
        names = [name] if name else [m for m in self.nodes if self.running(m) and not self.nodes[m].stopped]
        err = None
        for m in names:
            try:
                code, _, body = self.api(m, "/v1/status", timeout=timeout)
                if code != 200:
                    raise OSError("HTTP %d: %s" % (code, body[:200]))
                st = json.loads(body.decode())
            except (OSError, ValueError) as e:
                err = e
                continue
            self._note_pids(st)
            return st
        raise RuntimeError("no status from %s: %r" % (names, err))

    def leader(self, timeout=20):
        """Name of the leader that the leader itself confirms."""

        def find():
            st = self.status()
            ld = st["cluster"]["leader"]
            if ld and self.running(ld) and not self.nodes[ld].stopped:
                if self.status(ld)["cluster"]["leader"] == ld:
                    return ld
            return None

        return self.wait_until(find, timeout, "a leader")

    def leader_status(self, timeout=20):
        return self.status(self.leader(timeout))

    def _note_pids(self, st):
        for svc in st.get("services", []):
            for inst in svc.get("instances", []):
                pid = inst.get("pid")
                if pid and pid not in self.seen:
                    env = proc_environ(pid)
                    if env and env.get("UNDERSTUDY_DATA_DIR", "").startswith(self.root):
                        self._remember(pid, "service %s on %s" % (svc["name"], inst["node"]))

    def cli(self, *args, node=None, api=None, timeout=90):
        if api is None:
            api = self.nodes[node or self.any_running()].api
        cmd = [BIN, "--api", api] + [str(a) for a in args]
        env = dict(os.environ)
        env.pop("UNDERSTUDY_API", None)
        env["UNDERSTUDY_TOKEN_FILE"] = self.token_file()
        env["NO_COLOR"] = "1"
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root, env=env)

    def any_running(self):
        for m in self.nodes:
            if self.running(m) and not self.nodes[m].stopped:
                return m
        raise RuntimeError("no agent is running")

    def write_file(self, text, name=None):
        self._files += 1
        path = os.path.join(self.root, name or "services-%d.ini" % self._files)
        with open(path, "w") as f:
            f.write(text)
        return path

    def apply(self, text, node=None):
        path = self.write_file(text)
        r = self.cli("apply", path, node=node)
        assert r.returncode == 0, "apply failed (exit %d)\nstdout: %s\nstderr: %s\n%s" % (
            r.returncode,
            r.stdout,
            r.stderr,
            self.dump_logs(),
        )
        return r

    def service_cmd(self, log=None):
        return "exec %s %s run %s" % (PYTHON, SERVICE, log or self.overlap_log)

    def hook_cmd(self, kind, pause=0.0, log=None):
        return "exec %s %s hook %s %s %s" % (PYTHON, SERVICE, kind, log or self.hooks_log, pause)

    # ---- observations

    def service(self, st, name):
        for s in st["services"]:
            if s["name"] == name:
                return s
        return None

    def instances(self, st, name):
        return {i["node"]: i for i in self.service(st, name)["instances"]}

    def service_processes(self, service=None):
        """Live processes of this cluster's instances (found by UNDERSTUDY_DATA_DIR in their
        environment): list of dicts pid, pgrp, node, service, role, epoch."""
        out = []
        me = os.getpid()
        for pid in all_pids():
            if pid == me:
                continue
            st = proc_stat(pid)
            if st is None or st[0] in ("Z", "X"):
                continue
            env = proc_environ(pid)
            if not env or not env.get("UNDERSTUDY_DATA_DIR", "").startswith(self.root + os.sep):
                continue
            if service and env.get("UNDERSTUDY_SERVICE") != service:
                continue
            out.append(
                dict(
                    pid=pid,
                    pgrp=st[2],
                    node=env.get("UNDERSTUDY_NODE"),
                    service=env.get("UNDERSTUDY_SERVICE"),
                    role=env.get("UNDERSTUDY_ROLE"),
                    epoch=int(env.get("UNDERSTUDY_EPOCH", "0") or 0),
                    comm=st[4],
                )
            )
        return out

    def wait_until(self, cond, timeout, what, interval=0.05):
        return wait_until(cond, timeout, what, interval=interval, dump=self.dump_logs)

    # ---- logs

    def log_tail(self, name, lines=60):
        try:
            with open(self.nodes[name].log, errors="replace") as f:
                return "".join(collections.deque(f, maxlen=lines))
        except OSError as e:
            return "(no log: %s)\n" % e

    def log_text(self, name):
        try:
            with open(self.nodes[name].log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def dump_logs(self, lines=60):
        out = []
        for m in self.nodes:
            out.append("---- agent log %s (last %d lines) ----\n%s" % (m, lines, self.log_tail(m, lines)))
        for path in (self.overlap_log,):
            if os.path.exists(path):
                try:
                    out.append("---- overlap log intervals ----\n" + format_intervals(read_intervals(path)))
                except AssertionError as e:
                    out.append(str(e))
        if os.path.exists(self.hooks_log):
            with open(self.hooks_log) as f:
                out.append("---- hooks log ----\n" + f.read())
        return "\n".join(out)

    # ---- cleanup

    def cleanup(self):
        problems = []
        agents = [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
        for n in agents:
            if n.stopped:
                os.kill(n.proc.pid, signal.SIGCONT)
                n.stopped = False
            os.kill(n.proc.pid, signal.SIGTERM)
        # Two SIGTERMs sent back to back may merge into one: let the first be handled.
        if agents:
            time.sleep(0.3)
        for n in agents:
            if n.proc.poll() is None:
                os.kill(n.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for n in agents:
            try:
                n.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append("agent %s (pid %d) ignored two SIGTERMs for 15 s: SIGKILLed" % (n.name, n.proc.pid))
                n.proc.kill()
                n.proc.wait(10)

        # Guardians exit by themselves (after ~10 s of fencing announcements if their agent was
        # killed); anything else we saw must already be gone.
        def leftovers():
            return [(pid, what) for pid, (start, what) in self.seen.items() if pid_running(pid, start)]

        deadline = time.monotonic() + 20
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)

        # Groups an agent left behind (its pidfiles): kill them by the recorded pgid.
        for n in self.nodes.values():
            run = os.path.join(n.data_dir, "run")
            if not os.path.isdir(run):
                continue
            for f in sorted(os.listdir(run)):
                if not f.endswith(".pid"):
                    continue
                try:
                    with open(os.path.join(run, f)) as fh:
                        pgid, start = (int(x) for x in fh.read().split()[:2])
                except (OSError, ValueError):
                    continue
                if os.path.exists("/proc/%d" % pgid) and pid_running(pgid, start):
                    problems.append("%s/run/%s: process group %d still running: SIGKILLed" % (n.name, f, pgid))
                    try:
                        os.killpg(pgid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for p in self.service_processes():
            problems.append("instance process left behind: %r: SIGKILLed" % (p,))
            try:
                os.kill(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, what in leftovers():
            problems.append("%s (pid %d) still running after cleanup: SIGKILLed" % (what, pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        for m in self.nodes:
            text = self.log_text(m)
            hit = SANITIZER_RE.search(text)
            if hit:
                start = max(0, text.rfind("\n", 0, max(0, hit.start() - 2000)))
                problems.append("sanitizer report in the log of %s:\n%s" % (m, text[start : hit.start() + 4000]))
        return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    c = getattr(item, "_us_cluster", None)
    # wait_until() failures carry the logs in their message already.
    shown = call.excinfo is not None and "---- agent log" in str(call.excinfo.value)
    if c is not None and rep.failed and not shown:
        rep.sections.append(("understudy agent logs (%s)" % rep.when, c.dump_logs(80)))


@pytest.fixture
def cluster(request, tmp_path):
    assert os.access(BIN, os.X_OK), "UNDERSTUDY_BIN %s is not executable (make build/san/understudy)" % BIN
    c = Cluster(tmp_path)
    request.node._us_cluster = c
    yield c
    problems = c.cleanup()
    if problems:
        pytest.fail("cleanup found problems:\n" + "\n".join(problems), pytrace=False)
