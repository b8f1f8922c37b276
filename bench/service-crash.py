#!/usr/bin/env python3
"""Service-crash benchmark for understudy (run through bench/service-crash).

The active's service process dies (kill -9 of the process only: its agent stays alive). How long
until a client gets a successful answer from the new active?

For each timing profile (default, fast) and each standby mode (hot, cold): start 3 agents on
loopback (release binary), apply one service `web` with standbys = 1, then repeat RUNS times:
  wait until steady: quorum, every node alive, one active whose port answers 200 with the current
  epoch, no other node answering 200, its standby ready (hot: its process runs and answers 503;
  cold: reported standby), the Raft leader on another node than the active (the controller moves
  it there; --any-leader drops this), all of it unchanged for SETTLE_S;
  take the active service process's pid from the active node's /v1/status and check that it is
  the service (command line, environment, process-group leader), not the agent or a hook;
  T0 = just before kill -9 of that pid;
  poll every node's service port (the killed node's too: a restart in place would count) with a
  fresh HTTP connection each, every POLL_MS, until one answers 200 with a higher epoch: T1;
  record T1 - T0 and which node answered; after the next steady state, read the agents' logs
  for where the time went.
Services:
  hot:  bench/hot_service.py runs on the active and on the standby; it serves only while the
        promote hook's marker file holds its epoch (see that file); the hooks write/remove it.
  cold: demo/sample_service.py, started at promotion: the figure includes Python's start-up,
        which is measured alone beforehand so that the report can say how much of it that is.
The services file sets failure_threshold = 1000, so repeated failures of the same node are never
turned into a ban (if the agent rejects the key, the bench applies the file without it and
resets bans through POST /v1/services/web/reset when it sees one).

Every wait is bounded; every process started is stopped on exit (also on Ctrl-C / SIGTERM).
Only the Python standard library is used. Exit status: 0 when every run succeeded and the hot
standby's median meets the target, 1 otherwise.
"""

import argparse
import atexit
import collections
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "demo", "sample_service.py")
HOT = os.path.join(ROOT, "bench", "hot_service.py")
NODES = ("n1", "n2", "n3")
PROFILES = ("default", "fast")
MODES = ("hot", "cold")
TARGET_HOT_MEDIAN_MS = 100.0  # hot standby, any profile

STEADY_TIMEOUT_S = 30.0   # cluster formation, first placement, steady state between runs
SETTLE_S = 1.0            # steady must hold unchanged this long (a leadership transfer follows
                          # every promotion of the leader's node: do not kill in the middle of it)
ANSWER_TIMEOUT_S = 30.0   # kill -> some node answers with a higher epoch
POLL_MS = 1.0             # the prober's pause between rounds over the three ports (--poll-ms)
PROBE_TIMEOUT_S = 0.2     # one probe (connect + answer)
STARTUP_SAMPLES = 10      # bare python3 start-up measurements
LOG_TAIL = 40             # agent log lines shown when something goes wrong


def log(msg=""):
    print(msg, flush=True)


class BenchError(Exception):
    pass


# ---- small helpers -------------------------------------------------------------------------------

def port_busy(port, kinds):
    """Return a list of 'port/kind (reason)' for the ports someone else holds."""
    out = []
    for kind in kinds:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        if kind == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "busy"
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            out.append("%d/%s (%s)" % (port, kind, e.strerror))
        finally:
            s.close()
    return out


def http_call(hostport, method, path, timeout, body=None):
    host, port = hostport.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")
BODY = re.compile(rb"\r\n\r\n(\S+) (?:epoch (\d+)|standby)\n")


def probe(port, timeout=PROBE_TIMEOUT_S):
    """One fresh HTTP connection: (status, node, epoch or None), or None (no answer / garbage)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    st, body = STATUS_LINE.match(data), BODY.search(data)
    if not st or not body:
        return None
    return (int(st.group(1)), body.group(1).decode(),
            int(body.group(2)) if body.group(2) is not None else None)


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def proc_alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def local_ms_of_day(wall):
    tm = time.localtime(wall)
    return ((tm.tm_hour * 60 + tm.tm_min) * 60 + tm.tm_sec) * 1000.0 + (wall % 1.0) * 1000.0


LOG_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def log_line_ms(line, ref_ms):
    """Milliseconds of an agent log line ("HH:MM:SS.mmm ...", local time) relative to ref_ms
    (local ms of day); None if the line has no time stamp."""
    m = LOG_TIME.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(x) for x in m.groups())
    d = ((h * 60 + mi) * 60 + s) * 1000 + ms - ref_ms
    day = 86400000
    return (d + day / 2) % day - day / 2  # a run across midnight


# ---- python start-up, measured alone -------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_python_startup(state):
    """(median, min) in ms of: bare `python3 -c pass` (exec -> exit), and sample_service.py from
    exec to its first answer; the two alternate so that both see the same machine load (the
    minimum is the better estimate on a machine shared with other work)."""
    bare, script = [], []
    for _ in range(STARTUP_SAMPLES):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30)
        bare.append((time.monotonic() - t0) * 1000.0)
        port = free_port()
        env = dict(os.environ, UNDERSTUDY_NODE="n1", UNDERSTUDY_EPOCH="1",
                   UNDERSTUDY_ROLE="active")
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, SAMPLE, "--base", str(port - 1)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        state["procs"].append(p)
        try:
            deadline = t0 + 30.0
            while True:
                a = probe(port)
                if a and a[0] == 200:
                    script.append((time.monotonic() - t0) * 1000.0)
                    break
                if time.monotonic() > deadline or p.poll() is not None:
                    raise BenchError("sample_service.py alone did not answer on port %d" % port)
                time.sleep(POLL_MS / 1000.0)
        finally:
            p.kill()
            p.wait(timeout=5)
            state["procs"].remove(p)
    return (statistics.median(bare), min(bare)), (statistics.median(script), min(script))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ---- one 3-node cluster --------------------------------------------------------------------------

class Cluster:
    def __init__(self, binary, profile, mode, raft_base, api_base, http_base, any_leader=False):
        self.binary = binary
        self.any_leader = any_leader
        self.profile = profile
        self.mode = mode
        self.raft = {n: raft_base + i for i, n in enumerate(NODES)}
        self.api = {n: "127.0.0.1:%d" % (api_base + i) for i, n in enumerate(NODES)}
        self.http_base = http_base
        self.http = {n: http_base + i + 1 for i, n in enumerate(NODES)}
        self.dir = tempfile.mkdtemp(prefix="understudy-svccrash-%s-%s." % (profile, mode))
        self.procs = {}
        self.why = "nothing checked yet"  # why the last steady() said no
        self.threshold_key = True
        self.resets = 0
        members = " ".join("%s=127.0.0.1:%d" % (n, self.raft[n]) for n in NODES)
        for n in NODES:
            with open(self.conf(n), "w") as f:
                f.write("[node]\nname = %s\naddress = 127.0.0.1:%d\napi = %s\ndata_dir = %s\n"
                        "[cluster]\nname = bench\nmembers = %s\nprofile = %s\n"
                        % (n, self.raft[n], self.api[n], self.data_dir(n), members, profile))
        self.services = os.path.join(self.dir, "services.ini")
        self.script = HOT if mode == "hot" else SAMPLE

    def write_services(self):
        lines = ["[service web]",
                 "run = exec %s %s --base %d" % (sys.executable, self.script, self.http_base),
                 "standby = %s" % self.mode,
                 "standbys = 1"]
        if self.mode == "hot":
            lines += ["promote = echo $UNDERSTUDY_EPOCH > $UNDERSTUDY_DATA_DIR/web.active",
                      "demote = rm -f $UNDERSTUDY_DATA_DIR/web.active"]
        if self.threshold_key:
            lines.append("failure_threshold = 1000")
        with open(self.services, "w") as f:
            f.write("\n".join(lines) + "\n")

    def conf(self, n):
        return os.path.join(self.dir, n + ".conf")

    def data_dir(self, n):
        return os.path.join(self.dir, "data-" + n)

    def logfile(self, n):
        return os.path.join(self.dir, n + ".log")

    def start(self, n):
        with open(self.logfile(n), "ab") as lf:
            # A session of its own: Ctrl-C reaches the bench only, which stops the agents itself.
            self.procs[n] = subprocess.Popen(
                [self.binary, "agent", "--config", self.conf(n)], cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                start_new_session=True)

    def apply(self):
        self.write_services()
        r = subprocess.run([self.binary, "--api", self.api["n1"], "apply", self.services],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0 and "failure_threshold" in r.stdout + r.stderr:
            log("  note: the agent rejects failure_threshold; applying without it (bans are reset"
                " through the API if they happen)")
            self.threshold_key = False
            self.write_services()
            r = subprocess.run([self.binary, "--api", self.api["n1"], "apply", self.services],
                               capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise BenchError("apply failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))

    def node_status(self, n, timeout=1.0):
        if n in self.procs and self.procs[n].poll() is not None:
            return None
        try:
            code, body = http_call(self.api[n], "GET", "/v1/status", timeout)
            return json.loads(body) if code == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def status(self):
        """Status as seen by the leader (asked through any live agent); None if unavailable."""
        seen = None
        for n in NODES:
            st = self.node_status(n)
            if not st:
                continue
            leader = (st.get("cluster") or {}).get("leader")
            if leader == st.get("node"):
                return st
            seen = seen or st
            if leader in self.api:
                lst = self.node_status(leader)
                if lst:
                    return lst
        return seen

    def web(self, st):
        svc = [s for s in (st or {}).get("services", []) if s.get("name") == "web"]
        return svc[0] if svc else None

    def no(self, why):
        self.why = why
        return None

    def steady(self):
        """{active, epoch, leader, standbys} once steady (see the module's docstring); else None
        and self.why says what is missing."""
        st = self.status()
        if not st:
            return self.no("no agent answers /v1/status")
        c = st.get("cluster") or {}
        if not c.get("has_quorum") or not c.get("leader"):
            return self.no("no leader with quorum")
        nodes = {x["name"]: x for x in st.get("nodes", [])}
        for n in NODES:
            if self.procs[n].poll() is not None:
                raise BenchError("agent %s exited (status %s)" % (n, self.procs[n].returncode))
            if n not in nodes or nodes[n]["state"] != "alive" or nodes[n].get("leaving"):
                return self.no("node %s not alive: %s" % (n, nodes.get(n)))
        svc = self.web(st)
        if not svc:
            return self.no("service web not in the leader's state")
        banned = [f["node"] for f in svc.get("failures") or [] if f.get("banned")]
        if banned:
            self.reset(c["leader"], banned)
            return self.no("node(s) %s banned for web" % ",".join(banned))
        act, epoch = svc.get("active"), svc.get("epoch")
        if not act:
            return self.no("no active (reason: %s)" % svc.get("reason"))
        if not self.any_leader and act == c["leader"]:
            return self.no("the Raft leader %s is the active (the controller moves it away)" % act)
        insts = svc.get("instances") or []
        ai = [i for i in insts if i["node"] == act and i.get("role") == "active"]
        if not ai or ai[0].get("state") != "active" or not ai[0].get("pid"):
            return self.no("active %s not reported active with a pid: %s" % (act, ai))
        standbys = [i for i in insts if i.get("role") == "standby"]
        if len(standbys) < 1:
            return self.no("no standby yet (instances %s)" % insts)
        for i in standbys:
            if i.get("state") != "standby":
                return self.no("standby %s reports %s" % (i["node"], i.get("state")))
            if self.mode == "hot":
                if not i.get("pid"):
                    return self.no("hot standby %s has no process yet" % i["node"])
                a = probe(self.http[i["node"]])
                if not a or a[0] != 503:
                    return self.no("hot standby %s does not answer 503 yet: %s" % (i["node"], a))
        a = probe(self.http[act])
        if a != (200, act, epoch):
            return self.no("active %s epoch %d answers %s" % (act, epoch, a))
        for n in NODES:
            if n != act:
                b = probe(self.http[n])
                if b and b[0] == 200:
                    return self.no("%s answers %s although %s is the active" % (n, b, act))
        return {"active": act, "epoch": epoch, "leader": c["leader"],
                "standbys": [i["node"] for i in standbys]}

    def reset(self, leader, banned):
        """Lift bans (only needed when failure_threshold was rejected)."""
        if self.resets > 100:
            return
        self.resets += 1
        try:
            code, body = http_call(self.api[leader], "POST", "/v1/services/web/reset", 5.0, b"")
            log("  bench: %s banned; POST /v1/services/web/reset -> %d %s"
                % (",".join(banned), code, body[:200].decode(errors="replace")))
        except (OSError, http.client.HTTPException) as e:
            log("  bench: reset failed: %s" % e)

    def wait_settled(self, what):
        """steady() holding with the same active, epoch, leader and standbys for SETTLE_S."""
        deadline = time.monotonic() + STEADY_TIMEOUT_S
        key, since = None, None
        while time.monotonic() < deadline:
            s = self.steady()
            k = s and (s["active"], s["epoch"], s["leader"], tuple(s["standbys"]))
            now = time.monotonic()
            if k and k == key:
                if now - since >= SETTLE_S:
                    return s
            else:
                key, since = k, now
                if s:
                    self.why = "steady since %.2f s, not yet %.1f s" % (now - since, SETTLE_S)
            time.sleep(0.02)
        raise BenchError("%s: not reached within %.0f s (last: %s)"
                         % (what, STEADY_TIMEOUT_S, self.why))

    def wait(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = cond()
            if r:
                return r
            time.sleep(0.02)
        raise BenchError("%s: not reached within %.0f s (last: %s)" % (what, timeout, self.why))

    def log_offsets(self):
        return {n: os.path.getsize(self.logfile(n)) if os.path.exists(self.logfile(n)) else 0
                for n in NODES}

    def log_since(self, n, offset):
        try:
            with open(self.logfile(n), "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def log_tails(self):
        out = []
        for n in NODES:
            try:
                with open(self.logfile(n), errors="replace") as f:
                    lines = f.readlines()[-LOG_TAIL:]
            except OSError:
                lines = []
            out.append("---- %s (last %d lines of %s)" % (n, len(lines), self.logfile(n)))
            out.extend(l.rstrip("\n") for l in lines)
        return "\n".join(out)

    def our_strays(self):
        """Processes left by our agents: guardians (command line names our config) and service
        processes and hooks (their environment names our data dirs)."""
        found = []
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    cmd = f.read()
                hit = ("--config\0" + self.dir + "/").encode() in cmd
                if not hit:
                    with open("/proc/%s/environ" % d, "rb") as f:
                        hit = ("UNDERSTUDY_DATA_DIR=" + self.dir + "/").encode() in f.read()
            except OSError:
                continue
            if hit and proc_alive(int(d)):
                found.append(int(d))
        return found

    def stop(self, keep=False):
        """SIGTERM (hand over), bounded wait, SIGTERM again (force), bounded wait, SIGKILL; then
        wait (bounded) for guardians and service processes, SIGKILL them; remove the data.
        Ctrl-C / SIGTERM are ignored meanwhile: an interrupted stop would leave agents behind."""
        saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop(keep)
        finally:
            for s, h in saved.items():
                signal.signal(s, h)

    def _stop(self, keep):
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            live = [p for p in self.procs.values() if p.poll() is None]
            if not live:
                break
            for p in live:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(p.poll() is None for p in live):
                time.sleep(0.05)
        deadline = time.monotonic() + 5.0
        killed = False
        while True:
            strays = self.our_strays()
            if not strays:
                break
            if time.monotonic() > deadline:
                log("bench: processes still there after SIGKILL: %s" % strays)
                break
            if not killed and time.monotonic() > deadline - 2.0:
                for pid in strays:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
            time.sleep(0.05)
        if keep:
            log("bench: kept %s (agent logs n1.log .. n3.log, service logs data-N/logs/)"
                % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- the benchmark -------------------------------------------------------------------------------

def service_pid(cl, act, epoch):
    """The active service process's pid, from the active node's own /v1/status, checked."""
    st = cl.node_status(act) or cl.status()
    svc = cl.web(st)
    pid = None
    if svc and svc.get("epoch") == epoch:
        for i in svc.get("instances") or []:
            if i["node"] == act and i.get("role") == "active":
                pid = i.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise BenchError("no pid for the active instance on %s in %s" % (act, svc))
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().split(b"\0")
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = f.read().split(b"\0")
        pgid = os.getpgid(pid)
    except OSError as e:
        raise BenchError("pid %d of the active on %s: %s" % (pid, act, e))
    problems = []
    if pid in (p.pid for p in cl.procs.values()):
        problems.append("it is an agent")
    if cl.script.encode() not in cmd:
        problems.append("its command line %r does not run %s" % (cmd, cl.script))
    if ("UNDERSTUDY_NODE=" + act).encode() not in env or \
            ("UNDERSTUDY_DATA_DIR=" + cl.data_dir(act)).encode() not in env:
        problems.append("its environment is not that of %s's instance" % act)
    if pgid != pid:
        problems.append("it does not lead its process group (%d)" % pgid)
    if problems:
        raise BenchError("pid %d reported for the active on %s is not the service: %s"
                         % (pid, act, "; ".join(problems)))
    return pid


def crash_once(cl, run, steady, poll_s):
    act, epoch = steady["active"], steady["epoch"]
    pid = service_pid(cl, act, epoch)
    ports = [(n, cl.http[n]) for n in NODES]
    offsets = cl.log_offsets()
    wall0 = time.time()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = t0 + ANSWER_TIMEOUT_S
    answer = None
    while answer is None:
        for n, port in ports:
            a = probe(port)
            if a and a[0] == 200 and a[2] is not None and a[2] > epoch:
                answer = a
                break
        if answer:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    t1 = time.monotonic()
    if answer is None:
        raise BenchError(
            "run %d: after kill -9 of the service on %s (pid %d, epoch %d) no node answered with a "
            "higher epoch within %.0f s\nleader status: %s\n%s"
            % (run, act, pid, epoch, ANSWER_TIMEOUT_S, json.dumps(cl.status(), indent=1),
               cl.log_tails()))
    marker_ms = None
    if cl.mode == "hot":
        try:
            marker_ms = os.stat(os.path.join(cl.data_dir(answer[1]), "web.active")).st_mtime - wall0
            marker_ms *= 1000.0
        except OSError:
            pass
    return {"run": run, "killed": act, "pid": pid, "epoch": epoch, "node": answer[1],
            "new_epoch": answer[2], "ms": (t1 - t0) * 1000.0, "was_leader": act == steady["leader"],
            "new_was_leader": answer[1] == steady["leader"],
            "wall0": wall0, "offsets": offsets, "marker_ms": marker_ms}


STAGES = (("exit", "exit seen"), ("decide", "leader decided"), ("promote", "promoting"),
          ("marker", "hook wrote marker"), ("active", "'active' logged"), ("answer", "answered"))


def timeline(cl, s):
    """Stage -> ms after the kill, from the agents' logs (1 ms resolution)."""
    ref = local_ms_of_day(s["wall0"])
    new, killed, node = s["new_epoch"], s["killed"], s["node"]
    out = {"answer": s["ms"]}
    if s["marker_ms"] is not None:
        out["marker"] = s["marker_ms"]
    pats = {
        "exit": (killed, re.compile(r" web: active instance (the process was killed|.*signal 9)")),
        "promote": (node, re.compile(r" web: promoting \(epoch %d\)" % new)),
        "active": (node, re.compile(r" web: active \(epoch %d\)" % new)),
    }
    decide = re.compile(r" web: .*\[active %s, epoch %d\]" % (re.escape(node), new))
    for n in NODES:
        for line in cl.log_since(n, s["offsets"][n]):
            t = log_line_ms(line, ref)
            if t is None:
                continue
            if "decide" not in out and decide.search(line):
                out["decide"] = t
            for stage, (pn, pat) in pats.items():
                if pn == n and stage not in out and pat.search(line):
                    out[stage] = t
    return out


def fmt_timeline(tl):
    return ", ".join("%s %.0f" % (k, tl[k]) for k, _ in STAGES if k in tl and k != "answer")


def bench_one(args, profile, mode, state):
    cl = Cluster(args.bin, profile, mode, args.raft_port, args.api_port, args.http_base,
                 args.any_leader)
    state["cluster"] = cl
    log("== profile %s, %s standby: 3 agents (%s), service web, standbys = 1, %d runs"
        % (profile, mode, cl.dir, args.runs))
    samples = []
    try:
        for n in NODES:
            cl.start(n)
        cl.wait("leader elected", lambda: (cl.status() or {}).get("cluster", {}).get("leader"),
                STEADY_TIMEOUT_S)
        cl.apply()
        steady = cl.wait_settled("first steady state")
        for run in range(1, args.runs + 1):
            s = crash_once(cl, run, steady, args.poll_ms / 1000.0)
            steady = cl.wait_settled("steady state after run %d" % run)
            s["timeline"] = timeline(cl, s)
            samples.append(s)
            log("  run %2d: kill -9 service on %s%s (pid %d, epoch %d) -> %s%s answers epoch %d "
                "after %6.1f ms  [ms: %s]"
                % (run, s["killed"], " (leader)" if s["was_leader"] else "", s["pid"], s["epoch"],
                   s["node"], " (leader)" if s["new_was_leader"] else "", s["new_epoch"],
                   s["ms"], fmt_timeline(s["timeline"])))
        return {"samples": samples, "error": None, "threshold_key": cl.threshold_key}
    except BenchError as e:
        log("bench: profile %s, %s standby: %s" % (profile, mode, e))
        if "\n----" not in str(e):
            log(cl.log_tails())
        return {"samples": samples, "error": str(e).splitlines()[0],
                "threshold_key": cl.threshold_key}
    finally:
        state["cluster"] = None
        cl.stop(keep=args.keep)


def report(profile, mode, res, runs, startup):
    s = sorted(x["ms"] for x in res["samples"])
    lines = ["profile %s, %s standby:" % (profile, mode)]
    if s:
        med = statistics.median(s)
        lines.append("  service crash (kill -9 of the active's service process -> first 200 with a "
                     "higher epoch), %d/%d runs:" % (len(s), runs))
        lines.append("    min %.1f ms  median %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms"
                     % (s[0], med, percentile(s, 90), percentile(s, 99), s[-1]))
        by = collections.Counter(x["node"] for x in res["samples"])
        same = sum(1 for x in res["samples"] if x["node"] == x["killed"])
        lines.append("    answered by: %s; by the killed node itself (restart in place): %d"
                     % (", ".join("%s %d" % kv for kv in sorted(by.items())), same))
        for label, key, val in (("the crashed active was the Raft leader", "was_leader", True),
                                ("the new active was the Raft leader", "new_was_leader", True),
                                ("the new active was a Raft follower", "new_was_leader", False)):
            sub = sorted(x["ms"] for x in res["samples"] if x[key] == val)
            if sub:
                lines.append("    runs where %s: %d, median %.1f ms, max %.1f ms"
                             % (label, len(sub), statistics.median(sub), sub[-1]))
        lines.append("    where the time goes (medians, ms after the kill, from the agents' logs at "
                     "1 ms resolution%s):" % ("; the marker's mtime comes from the kernel's coarse"
                                              " clock and may read a few ms early"
                                              if mode == "hot" else ""))
        for label, sel in (("all runs", lambda x: True),
                           ("new active = leader", lambda x: x["new_was_leader"]),
                           ("new active = follower", lambda x: not x["new_was_leader"])):
            sub = [x["timeline"] for x in res["samples"] if sel(x)]
            parts = []
            for k, name in STAGES:
                v = [tl[k] for tl in sub if k in tl]
                if v:
                    parts.append("%s %.0f" % (name, statistics.median(v)))
            if sub:
                lines.append("      %-22s %s" % (label + ":", ", ".join(parts)))
        if mode == "cold":
            spawn = [x["timeline"]["answer"] - x["timeline"]["active"] for x in res["samples"]
                     if "active" in x["timeline"]]
            if spawn:
                lines.append("    cold start in the cluster ('active' logged right after the spawn"
                             " -> first answer): median %.0f ms (%.0f%% of the median)"
                             % (statistics.median(spawn), 100.0 * statistics.median(spawn) / med))
            if startup:
                (bmed, bmin), (smed, smin) = startup
                lines.append("    python3 alone before the runs (median / min of %d): `python3 -c "
                             "pass` exec -> exit %.0f / %.0f ms, sample_service.py exec -> first "
                             "answer %.0f / %.0f ms" % (STARTUP_SAMPLES, bmed, bmin, smed, smin))
    else:
        lines.append("  service crash: no successful run")
    if not res["threshold_key"]:
        lines.append("  note: failure_threshold was rejected; applied without it")
    complete = bool(s) and len(s) == runs and not res["error"]
    if mode == "hot":
        ok = complete and statistics.median(s) <= TARGET_HOT_MEDIAN_MS
        lines.append("  target: median <= %.0f ms -> %s (median %s)%s"
                     % (TARGET_HOT_MEDIAN_MS, "PASS" if ok else "MISS",
                        "%.1f ms" % statistics.median(s) if s else "n/a",
                        "; error: " + res["error"] if res["error"] else ""))
    else:
        ok = complete
        lines.append("  no target (informational): %s%s"
                     % ("all runs succeeded" if ok else "FAILED",
                        "; error: " + res["error"] if res["error"] else ""))
    return "\n".join(lines), ok


def main():
    ap = argparse.ArgumentParser(description="understudy service-crash benchmark")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profiles", default="default,fast")
    ap.add_argument("--modes", default="hot,cold")
    ap.add_argument("--raft-port", type=int, default=17301, help="n1's cluster port (+1, +2)")
    ap.add_argument("--api-port", type=int, default=17401, help="n1's API port (+1, +2)")
    ap.add_argument("--http-base", type=int, default=17480, help="service of nN on BASE+N")
    ap.add_argument("--poll-ms", type=float, default=POLL_MS,
                    help="pause between probe rounds after the kill (default %g)" % POLL_MS)
    ap.add_argument("--any-leader", action="store_true",
                    help="steady does not require the Raft leader to be apart from the active")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and agent logs")
    args = ap.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    modes = [m for m in args.modes.split(",") if m]
    for p in profiles:
        if p not in PROFILES:
            sys.exit("bench: unknown profile '%s' (default, fast)" % p)
    for m in modes:
        if m not in MODES:
            sys.exit("bench: unknown mode '%s' (hot, cold)" % m)
    if args.runs < 1:
        sys.exit("bench: --runs must be at least 1")
    if not 0 <= args.poll_ms <= 100:
        sys.exit("bench: --poll-ms must be within 0..100")
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    busy = []
    for i in range(3):
        busy += port_busy(args.raft_port + i, ("tcp", "udp"))
        busy += port_busy(args.api_port + i, ("tcp",))
        busy += port_busy(args.http_base + 1 + i, ("tcp",))
    if busy:
        for b in busy:
            print("bench: port %s is busy" % b, file=sys.stderr)
        sys.exit("bench: free these ports or pick others (--raft-port, --api-port, --http-base)")

    state = {"cluster": None, "procs": []}

    def on_exit():
        for p in state["procs"]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        state["procs"] = []
        if state["cluster"]:
            state["cluster"].stop()
            state["cluster"] = None

    atexit.register(on_exit)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    load0 = loadavg()
    startup = None
    if "cold" in modes:
        try:
            startup = measure_python_startup(state)
            log("== python3 start-up alone (median / min of %d): `python3 -c pass` %.0f / %.0f ms, "
                "sample_service.py to first answer %.0f / %.0f ms"
                % ((STARTUP_SAMPLES,) + startup[0] + startup[1]))
        except (BenchError, subprocess.SubprocessError, OSError) as e:
            log("bench: python start-up measurement failed: %s" % e)

    results = {}
    for p in profiles:
        for m in modes:
            results[(p, m)] = bench_one(args, p, m, state)
    log()
    log("== service-crash benchmark: %s, %d runs per profile and mode, poll every %g ms, "
        "load average %s at the start, %s at the end"
        % (args.bin, args.runs, args.poll_ms, load0, loadavg()))
    all_ok = True
    for p in profiles:
        for m in modes:
            text, ok = report(p, m, results[(p, m)], args.runs, startup)
            all_ok &= ok
            log(text)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
