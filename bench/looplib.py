"""The loopback cluster harness shared by bench/failover.py and bench/service-crash.py.

LoopCluster runs 3 understudy agents (the release binary) on 127.0.0.1 with consecutive ports, each
in a session of its own, with their configs, logs and data in one temporary directory; it finds
the Raft leader's status, waits with deadlines, and stops so that no agent, guardian, service or
hook process is left behind (Ctrl-C / SIGTERM cannot interrupt the stop). A bench subclasses it
with its services file (write_services) and its own notion of steady. Around it: fresh-connection
HTTP probes, the port and binary checks, exit-path cleanup, and the statistics lines both reports
print. Only the Python standard library is used.
"""

import atexit
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
BINARY = os.path.join(ROOT, "build", "understudy")
SAMPLE = os.path.join(ROOT, "demo", "sample_service.py")
NODES = ("n1", "n2", "n3")

STEADY_TIMEOUT_S = 30.0   # cluster formation, first placement, steady state between runs
PROBE_TIMEOUT_S = 0.2     # one probe (connect + answer) while racing a failover
LOG_TAIL = 40             # agent log lines shown when something goes wrong


def log(msg=""):
    print(msg, flush=True)


class BenchError(Exception):
    pass


# ---- HTTP ----------------------------------------------------------------------------------------

def http_call(hostport, method, path, timeout, body=None, token=None):
    """One API request (with the bearer token when given): (status, body)."""
    host, port = hostport.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Authorization": "Bearer " + token} if token else {}
    if method != "GET":
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")
BODY = re.compile(rb"\r\n\r\n(\S+) (?:epoch (\d+)|standby)\n")


def probe(port, timeout=PROBE_TIMEOUT_S):
    """One fresh HTTP connection to a bench service ("NODE epoch N" or "NODE standby"):
    (status, node, epoch or None), or None (no answer / garbage). A new connection each time,
    as a client arriving during a failover would make."""
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


def await_answer(ports, accept, deadline, pause_s, timeout=PROBE_TIMEOUT_S):
    """Probe every port in turn, pausing pause_s between rounds, until accept(answer) holds for
    one answer (returned) or the monotonic deadline passes (None)."""
    while True:
        for port in ports:
            a = probe(port, timeout)
            if a and accept(a):
                return a
        if time.monotonic() > deadline:
            return None
        time.sleep(pause_s)


# ---- processes -----------------------------------------------------------------------------------

def proc_alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


# ---- statistics ----------------------------------------------------------------------------------

def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def summary_line(s):
    """min / median / p90 / p99 / max of the sorted milliseconds s."""
    return ("    min %.1f ms  median %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms"
            % (s[0], statistics.median(s), percentile(s, 90), percentile(s, 99), s[-1]))


def runs_where_line(label, sub):
    """Count, median and max of the sorted subset sub, for the runs where label holds."""
    return ("    runs where %s: %d, median %.1f ms, max %.1f ms"
            % (label, len(sub), statistics.median(sub), sub[-1]))


def error_suffix(error):
    return "; error: " + error if error else ""


def target_line(s, runs, error, target):
    """(verdict line, passed): passed when all runs succeeded and the median of the sorted
    milliseconds s is within target."""
    ok = bool(s) and len(s) == runs and not error and statistics.median(s) <= target
    return ("  target: median <= %.0f ms -> %s (median %s)%s"
            % (target, "PASS" if ok else "MISS",
               "%.1f ms" % statistics.median(s) if s else "n/a", error_suffix(error)), ok)


# ---- command line and exit paths -----------------------------------------------------------------

def add_run_args(ap):
    ap.add_argument("--bin", default=BINARY)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profiles", default="default,fast")


def add_port_args(ap, raft, api, http_base):
    ap.add_argument("--raft-port", type=int, default=raft, help="n1's cluster port (+1, +2)")
    ap.add_argument("--api-port", type=int, default=api, help="n1's API port (+1, +2)")
    ap.add_argument("--http-base", type=int, default=http_base, help="service of nN on BASE+N")


def parse_profiles(arg, known):
    profiles = [p for p in arg.split(",") if p]
    for p in profiles:
        if p not in known:
            sys.exit("bench: unknown profile '%s' (default, fast)" % p)
    return profiles


def port_busy(port, kinds, fmt):
    """fmt % (port, kind, reason) for each of the kinds of port that someone else holds."""
    out = []
    for kind in kinds:
        stype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, stype)
        if kind == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "busy"
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            out.append(fmt % (port, kind, e.strerror))
        finally:
            s.close()
    return out


def check_bin_and_ports(args, busy_fmt):
    """Exit with a message unless args.bin runs and the 3 nodes' ports are free; busy_fmt
    (port, kind, reason) is how a bench names a busy port."""
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    busy = []
    for i in range(3):
        busy += port_busy(args.raft_port + i, ("tcp", "udp"), busy_fmt)
        busy += port_busy(args.api_port + i, ("tcp",), busy_fmt)
        busy += port_busy(args.http_base + 1 + i, ("tcp",), busy_fmt)
    if busy:
        for b in busy:
            print("bench: port %s is busy" % b, file=sys.stderr)
        sys.exit("bench: free these ports or pick others (--raft-port, --api-port, --http-base)")


def install_cleanup():
    """The state whose "cluster" (a LoopCluster) and "procs" (Popen objects) are stopped on
    every exit path: normal exit, an exception, SIGTERM, SIGINT, SIGHUP."""
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

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    return state


def run_guarded(state, cl, label, keep, body):
    """Run body() with cl registered for cleanup, then stop cl (keeping its directory if keep).
    Returns None, or the first line of the BenchError that ended body (logged under label with
    the agents' log tails)."""
    state["cluster"] = cl
    try:
        body()
        return None
    except BenchError as e:
        log("bench: %s: %s" % (label, e))
        if "\n----" not in str(e):
            log(cl.log_tails())
        return str(e).splitlines()[0]
    finally:
        state["cluster"] = None
        cl.stop(keep=keep)


# ---- one 3-node cluster --------------------------------------------------------------------------

class LoopCluster:
    wait_interval = 0.05                       # condition polling in wait()
    kept_note = "agent logs n1.log .. n3.log"  # what --keep leaves in the directory

    def __init__(self, binary, profile, raft_base, api_base, http_base, prefix):
        self.binary = binary
        self.profile = profile
        self.raft = {n: raft_base + i for i, n in enumerate(NODES)}
        self.api = {n: "127.0.0.1:%d" % (api_base + i) for i, n in enumerate(NODES)}
        self.http_base = http_base
        self.http = {n: http_base + i + 1 for i, n in enumerate(NODES)}
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs = {}
        self.why = None  # a subclass's reason why its last condition failed, shown by wait()
        self.services = os.path.join(self.dir, "services.ini")
        members = " ".join("%s=127.0.0.1:%d" % (n, self.raft[n]) for n in NODES)
        # A binary from before the cluster key (no `keygen`) runs without one, so that a bench can
        # compare builds in the same run (--compare-bin).
        key = os.path.join(self.dir, "cluster.key")
        keyed = subprocess.run([binary, "keygen", key], capture_output=True).returncode == 0
        self.token_file = os.path.join(self.dir, "api.token")
        self.token = None
        if keyed:
            subprocess.run([binary, "keygen", "--token", self.token_file], check=True, capture_output=True)
            with open(self.token_file) as f:
                self.token = f.read().split()[-1]
        for n in NODES:
            with open(self.conf(n), "w") as f:
                f.write("[node]\nname = %s\naddress = 127.0.0.1:%d\napi = %s\ndata_dir = %s\n%s"
                        "[cluster]\nname = bench\nmembers = %s\nprofile = %s\n%s"
                        % (n, self.raft[n], self.api[n], self.data_dir(n),
                           "api_token_file = %s\n" % self.token_file if keyed else "", members, profile,
                           "key_file = %s\n" % key if keyed else ""))

    def write_services(self):
        """Write self.services, the file apply() gives to the cluster."""
        raise NotImplementedError

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

    def start_all(self):
        """Start every agent and wait until they elect a leader."""
        for n in NODES:
            self.start(n)
        self.wait("leader elected", lambda: (self.status() or {}).get("cluster", {}).get("leader"),
                  STEADY_TIMEOUT_S)

    def pid(self, n):
        return self.procs[n].pid

    def node_status(self, n, timeout=1.0):
        """n's own /v1/status, or None (agent exited, no answer, not 200)."""
        if n in self.procs and self.procs[n].poll() is not None:
            return None
        try:
            code, body = http_call(self.api[n], "GET", "/v1/status", timeout, token=self.token)
            return json.loads(body) if code == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def status(self, nodes=NODES, timeout=1.0):
        """Status as seen by the leader (asked through any live agent among nodes); None if
        unavailable."""
        seen = None
        for n in nodes:
            st = self.node_status(n, timeout)
            if not st:
                continue
            leader = (st.get("cluster") or {}).get("leader")
            if leader == st.get("node"):
                return st
            seen = seen or st
            if leader in self.api and leader in nodes:
                lst = self.node_status(leader, timeout)
                if lst:
                    return lst
        return seen

    def apply(self):
        """Write the services file and apply it through n1's API."""
        r = self.apply_once()
        if r.returncode != 0:
            r = self.retry_apply(r) or r
        if r.returncode != 0:
            raise BenchError("apply failed (%d): %s%s" % (r.returncode, r.stdout, r.stderr))

    def apply_once(self):
        self.write_services()
        token = ["--token-file", self.token_file] if self.token else []
        return subprocess.run([self.binary, "--api", self.api["n1"]] + token + ["apply", self.services],
                              capture_output=True, text=True, timeout=30)

    def retry_apply(self, failed):
        """A subclass may mend the services file after a failed apply and return the retry's
        result; None keeps the failure."""
        return None

    def wait(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = cond()
            if r:
                return r
            time.sleep(self.wait_interval)
        last = " (last: %s)" % self.why if self.why is not None else ""
        raise BenchError("%s: not reached within %.0f s%s" % (what, timeout, last))

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
            log("bench: kept %s (%s)" % (self.dir, self.kept_note))
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
