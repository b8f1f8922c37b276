#!/usr/bin/env python3
"""Client-observed failover through a virtual IP: understudy vs keepalived, on network namespaces.

Run through `make bench` or `sh bench/failover-netns [--runs N] ...` (root). Topology: the
tests/netns.py bed, three node namespaces (eth0 198.18.0.11..13/24) and a client namespace
(198.18.0.100) on one bridge; a fresh bed for every system measured, all in the same run (and
another fresh bed per system for svccrash, whose service is configured differently).

The service, on every system: bench/httpd.c on port 8080 answering "NODE epoch EPOCH".
  understudy  one agent per node (node address = the node's IP, profile default or fast), the
              service applied with `vip = 198.18.0.200/24 dev eth0`, cold standby, standbys = 1:
              the new active starts the server, then gets the VIP.
  keepalived  the usual keepalived deployment: VRRPv3, unicast peers, one vrrp_instance with the
              same VIP, state MASTER priority 150 on n1, BACKUP 100 and 50 on n2 and n3 (preempt
              on, the default), advert_int 1 s or 0.1 s; the service runs on every node all the
              time and keepalived moves only the VIP (no notify scripts), as in the common
              keepalived + HAProxy/nginx pairs. Its answers carry epoch 0.
svccrash (a bed of its own per system):
  understudy  `standby = hot`, standbys = 1, on_failure default (failover), failure_threshold =
              1000 (no ban across runs): bench/hot_service.py on port 8080 of every node holding a
              role, answering 503 "NODE standby" until its promote hook wrote the epoch, then
              "NODE epoch EPOCH"; the VIP follows the active.
  keepalived  as above plus a vrrp_script (a bash TCP connect to 127.0.0.1:8080, interval 1 s,
              keepalived's minimum, timeout 1, fall 1, rise 1) tracked without weight: a failed
              check puts the instance in FAULT (VIP removed, priority-0 advert) and a BACKUP takes
              over after its skew time. The HTTP server runs on every node all the time; only the
              bench restarts the killed one, after the measurement.

The prober runs in the client namespace: every PERIOD ms (default 3) a new TCP connection to
198.18.0.200:8080 and one GET, several in flight, each given up after 1 s. For each run:
  wait until steady (understudy: quorum, every node alive and every node's own state showing the
  current active and epoch (a node whose link just came back needs up to ~1 s to reconnect Raft),
  one active, the Raft leader on another
  node (the controller moves leadership off the active right after a promotion; --leader-anywhere
  skips this), the VIP on the active only and answering its epoch; keepalived: the VIP on n1 only and answering n1),
  arm the prober (it has seen the old active answer through the VIP),
  (svccrash only: wait a random 0..1 s, so that the kill falls anywhere in keepalived's check
  interval; the way back to steady would otherwise fix that phase from run to run),
  T0 = just before the fault:
    kill9     understudy: kill -9 of the active node's agent (its guardian lives on);
              keepalived: kill -9 of the MASTER's keepalived processes (the whole process group,
              parent and VRRP child at once, so no child can clean up: its VIP stays)
    linkdown  carrier loss on the active node's switch port (netns link_down)
    svccrash  kill -9 of the service process only, on the node serving the VIP (understudy: the
              active's pid from that node's status, checked to be bench/hot_service.py of that
              node's instance, in its namespace; keepalived: the MASTER's bench/httpd); the agent /
              keepalived stay alive
  takeover = T0 -> the first answer from a new active (understudy: another node, higher epoch;
  keepalived: another node), then the prober watches AFTER ms more;
  restore (restart the killed daemon / link up; svccrash: understudy nothing, keepalived restarts
  the killed HTTP server) and wait until steady again (svccrash, understudy: also no ban and the
  hot standby running and answering 503 on its own address).
Also reported per run: the client's outage (longest span after T0 without any successful answer,
which can be far shorter than the takeover when the old node keeps answering), failed attempts,
answers still coming from the old node after the new one answered, and which nodes hold the VIP
right after the takeover.

Targets (PASS/MISS, per fault): understudy default median <= 0.3 x keepalived advert_int 1 s
median; understudy fast median <= 1.0 x keepalived advert_int 0.1 s median (svccrash: the
default one only; fast / 0.1 s is printed as an informational ratio). linkdown (issue 11):
default <= 0.25 x, fast <= 0.8 x, and understudy's p90 <= 1.3 x its median in each profile.
--timeline: the agents run with --debug and each takeover's steps are printed from their logs.
Every wait is bounded; every process and namespace is removed on exit (also Ctrl-C/SIGTERM).
"""

import argparse
import atexit
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nslib  # noqa: E402
from failover import percentile  # noqa: E402
from nslib import BenchError, log  # noqa: E402

netns = nslib.netns
nsagents = nslib.nsagents
ROOT = nslib.ROOT
VIP = "198.18.0.200"
VIP_CIDR = VIP + "/24"
PORT = 8080
VRID = 51
KA_PRIO = {"n1": 150, "n2": 100, "n3": 50}
CASES = {"kill9": "kill -9", "linkdown": "link down", "svccrash": "svc kill -9"}
# Cases run on a bed of their own, with a differently configured service (see the docstring).
OWN_BED = ("svccrash",)
HOT_SERVICE = os.path.join(ROOT, "bench", "hot_service.py")
# (system, parameter): understudy profiles and keepalived advert_int values.
SYSTEMS = {
    "understudy:default": ("understudy", "default"),
    "keepalived:1": ("keepalived", "1"),
    "understudy:fast": ("understudy", "fast"),
    "keepalived:0.1": ("keepalived", "0.1"),
}
# (understudy system, keepalived system, max ratio of the medians; None: informational)
TARGETS = {
    "kill9": (("understudy:default", "keepalived:1", 0.3),
              ("understudy:fast", "keepalived:0.1", 1.0)),
    "linkdown": (("understudy:default", "keepalived:1", 0.25),  # issue 11's targets
                 ("understudy:fast", "keepalived:0.1", 0.8)),
    "svccrash": (("understudy:default", "keepalived:1", 0.3),
                 ("understudy:fast", "keepalived:0.1", None)),
}

# The tail (issue 11): understudy's p90 takeover at most this many times its median.
TAIL_CASES = ("linkdown",)
TAIL_LIMIT = 1.3

STEADY_TIMEOUT_S = 40.0
# svccrash: the kill waits a random 0..1 s once the prober is armed, so that it falls anywhere in
# keepalived's 1 s check interval (the way back to steady otherwise fixes its phase).
SVCCRASH_JITTER_S = 1.0
TAKEOVER_MAX_S = 30.0


TITLES = {
    "kill9": "kill -9 of the active (understudy: its agent; keepalived: the MASTER's daemon)",
    "linkdown": "link down of the active node's eth0 (switch port carrier off)",
    "svccrash": "kill -9 of the active's service process, its agent / keepalived alive "
                "(understudy: hot standby; keepalived:\n  vrrp_script every 1 s, fall 1, FAULT on "
                "failure; its service runs on every node all the time)",
}


def label(system):
    kind, param = SYSTEMS[system]
    return "understudy %s" % param if kind == "understudy" else "keepalived advert %ss" % param


# ---- the two systems ----------------------------------------------------------------------------

class Understudy:
    def __init__(self, bed, client, args, profile, workdir, svccrash=False):
        self.bed, self.client, self.args = bed, client, args
        self.hot = svccrash
        self.dir = workdir
        httpd = nslib.HTTPD_BIN
        if svccrash:
            # A hot standby listens on the same port on its own node: bench/hot_service.py listens
            # on BASE + the node's number, hence the base computed per node by the shell.
            services = ("[service web]\nrun = exec %s %s --host 0.0.0.0 --base $((%d - "
                        "${UNDERSTUDY_NODE#n}))\nstandby = hot\nstandbys = 1\nvip = %s dev eth0\n"
                        "promote = echo $UNDERSTUDY_EPOCH > $UNDERSTUDY_DATA_DIR/web.active\n"
                        "demote = rm -f $UNDERSTUDY_DATA_DIR/web.active\n"
                        "failure_threshold = 1000\n"
                        % (sys.executable, HOT_SERVICE, PORT, VIP_CIDR))
        else:
            services = ("[service web]\nrun = exec %s -l 0.0.0.0:%d -e\nstandby = cold\n"
                        "standbys = 1\nvip = %s dev eth0\nproxy = 0.0.0.0:8000 -> %d\n"
                        % (httpd, PORT, VIP_CIDR, PORT))
        self.ag = nslib.Agents(bed, args.bin, profile, workdir, services, debug=args.timeline)

    def setup(self):
        self.ag.start_all()
        self.ag.wait_leader(STEADY_TIMEOUT_S)
        self.ag.apply()

    def steady(self):
        s = self.ag.steady()
        if not s:
            return None
        act, epoch, leader, st = s
        if act == leader and not self.args.leader_anywhere:
            return None  # the controller hands leadership off the active node: wait for that too
        if self.hot and not self.standby_ready(st):
            return None
        if not self.ag.all_applied(act, epoch):
            return None
        if nslib.vip_holders(self.bed, VIP) != [act]:
            return None
        if self.client.get(VIP, PORT) != (act, epoch):
            return None
        return act, epoch, "leader" if act == leader else "follower"

    def standby_ready(self, st):
        """No ban, and the hot standby runs and answers 503 "standby" on its own address."""
        svc = [x for x in st.get("services", []) if x["name"] == "web"][0]
        if any(f.get("banned") for f in svc.get("failures") or []):
            return False
        sb = [i for i in svc.get("instances", []) if i.get("role") == "standby"]
        if not sb:
            return False
        for i in sb:
            if i.get("state") != "standby" or not i.get("pid"):
                return False
            if self.client.get_raw(self.bed.ip[i["node"]], PORT).get("standby") != i["node"]:
                return False
        return True

    def service_pid(self, act, epoch):
        """The active's service process, from the active node's own status, checked to be
        bench/hot_service.py started by that node's agent in that node's namespace."""
        st = self.ag.status_of(act)
        svc = [x for x in (st or {}).get("services", []) if x["name"] == "web"]
        pid = None
        if svc and svc[0].get("epoch") == epoch:
            for i in svc[0].get("instances") or []:
                if i["node"] == act and i.get("role") == "active":
                    pid = i.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise BenchError("no pid for the active instance on %s (epoch %d) in %s"
                             % (act, epoch, svc))
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
            pgid = os.getpgid(pid)
        except OSError as e:
            raise BenchError("pid %d of the active on %s: %s" % (pid, act, e))
        problems = []
        if pid in (p.pid for p in self.ag.procs.values()):
            problems.append("it is an agent")
        if HOT_SERVICE.encode() not in cmd:
            problems.append("its command line %r does not run %s" % (cmd, HOT_SERVICE))
        data_dir = os.path.join(self.dir, "data-" + act)
        if ("UNDERSTUDY_NODE=" + act).encode() not in env or \
                ("UNDERSTUDY_DATA_DIR=" + data_dir).encode() not in env:
            problems.append("its environment is not that of %s's instance" % act)
        if pgid != pid:
            problems.append("it does not lead its process group (%d)" % pgid)
        if pid not in self.bed.ns_pids(act):
            problems.append("it is not in %s's namespace" % act)
        if problems:
            raise BenchError("pid %d reported for the active on %s is not the service: %s"
                             % (pid, act, "; ".join(problems)))
        return pid

    def fault(self, case, victim, epoch):
        if case == "svccrash":
            pid = self.service_pid(victim, epoch)
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)  # the agent's child, not ours: the agent reaps it
            return t0
        if case == "kill9":
            pid = self.ag.procs[victim].pid
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            self.ag.procs[victim].wait(timeout=10)
            return t0
        t0 = time.monotonic_ns()
        self.bed.link_down(victim)
        return t0

    def restore(self, case, victim):
        if case == "svccrash":
            return  # understudy starts a new hot standby by itself; steady() waits for it
        if case == "kill9":
            self.ag.start(victim)
        else:
            self.bed.link_up(victim)

    def diagnostics(self):
        st = self.ag.leader_status()
        return "leader status: %s\n%s" % (st, self.ag.log_tails())

    def log_lines(self, since_wall_ms):
        """[(wall ms, node, message)] of every agent's log from since_wall_ms on."""
        return timeline_lines({n: self.ag.logfile(n) for n in self.ag.nodes}, since_wall_ms)

    def stop(self):
        self.ag.stop()


KA_CONF = """global_defs {
    router_id %(node)s
    vrrp_version 3
%(global_extra)s}
%(script)svrrp_instance web {
    state %(state)s
    interface eth0
    virtual_router_id %(vrid)d
    priority %(prio)d
    advert_int %(advert)s
    unicast_src_ip %(ip)s
    unicast_peer {
%(peers)s
    }
    virtual_ipaddress {
        %(vip)s dev eth0
    }
%(track)s}
"""
# svccrash: the usual keepalived service check. A failed check puts the instance in FAULT (a
# track_script without weight): the MASTER drops the VIP and sends a priority-0 advert, so a
# BACKUP takes over after its skew time. interval 1 s is keepalived's minimum.
KA_SCRIPT = """vrrp_script chk_web {
    script "%(check)s"
    interval 1
    timeout 1
    fall 1
    rise 1
}
"""
KA_TRACK = """    track_script {
        chk_web
    }
"""
# The check: a TCP connection to the local service, by bash alone (no curl in a base Debian).
KA_CHECK = "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/%d\n"


class Keepalived:
    def __init__(self, bed, client, args, advert, workdir, svccrash=False):
        self.bed, self.client, self.args = bed, client, args
        self.advert = advert
        self.dir = workdir
        self.svccrash = svccrash
        self.procs = {}
        self.httpd = {}
        self.master = max(KA_PRIO, key=KA_PRIO.get)
        self.killed = []

    def conf(self, n):
        return os.path.join(self.dir, "keepalived-%s.conf" % n)

    def logfile(self, n):
        return os.path.join(self.dir, "keepalived-%s.log" % n)

    def start(self, n):
        argv = [self.args.keepalived, "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                "--no-syslog", "--use-file", self.conf(n),
                "--pid", os.path.join(self.dir, "ka-%s.pid" % n),
                "--vrrp_pid", os.path.join(self.dir, "ka-vrrp-%s.pid" % n)]
        with open(self.logfile(n), "ab") as lf:
            self.procs[n] = self.bed.popen(n, argv, label="keepalived", stdin=subprocess.DEVNULL,
                                           stdout=lf, stderr=subprocess.STDOUT)

    def start_httpd(self, n):
        body = "%s epoch 0" % n
        with open(os.path.join(self.dir, "httpd-%s.log" % n), "ab") as lf:
            self.httpd[n] = self.bed.popen(n, [nslib.HTTPD_BIN, "-l", "0.0.0.0:%d" % PORT, "-b",
                                               body], label="service", stdin=subprocess.DEVNULL,
                                           stdout=lf, stderr=subprocess.STDOUT)

    def setup(self):
        check = os.path.join(self.dir, "check-web.sh")
        # root runs the check; the security check keeps keepalived --config-test quiet (and 0)
        extra = "    script_user root\n    enable_script_security\n" if self.svccrash else ""
        if self.svccrash:
            with open(check, "w") as f:
                f.write(KA_CHECK % PORT)
            os.chmod(check, 0o755)
        for n in self.bed.nodes:
            self.start_httpd(n)
            peers = "\n".join("        %s" % self.bed.ip[m] for m in self.bed.nodes if m != n)
            with open(self.conf(n), "w") as f:
                f.write(KA_CONF % {
                    "node": n, "state": "MASTER" if n == self.master else "BACKUP",
                    "vrid": VRID, "prio": KA_PRIO[n], "advert": self.advert,
                    "ip": self.bed.ip[n], "peers": peers, "vip": VIP_CIDR,
                    "global_extra": extra,
                    "script": KA_SCRIPT % {"check": check} if self.svccrash else "",
                    "track": KA_TRACK if self.svccrash else ""})
            cp = subprocess.run([self.args.keepalived, "--config-test", "--use-file", self.conf(n)],
                                capture_output=True, text=True, timeout=30)
            if cp.returncode != 0:
                raise BenchError("keepalived rejects %s: %s" % (self.conf(n), cp.stderr.strip()))
        for n in self.bed.nodes:
            self.start(n)

    def steady(self):
        if any(p.poll() is not None for p in self.procs.values()):
            return None
        if any(p.poll() is not None for p in self.httpd.values()):
            raise BenchError("a service process exited: %s"
                             % {n: p.returncode for n, p in self.httpd.items()})
        if nslib.vip_holders(self.bed, VIP) != [self.master]:
            return None
        if self.client.get(VIP, PORT) != (self.master, 0):
            return None
        return self.master, -1, "MASTER"

    def group(self, victim):
        """Pids of the victim's keepalived processes (parent and VRRP child)."""
        pgid = self.procs[victim].pid
        out = []
        for pid in self.bed.ns_pids(victim):
            try:
                if os.getpgid(pid) == pgid:
                    out.append(pid)
            except ProcessLookupError:
                pass
        return out

    def service_pid(self, victim):
        """The HTTP server in the victim's namespace (ours: `ip netns exec` execs it)."""
        p = self.httpd[victim]
        try:
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError as e:
            raise BenchError("service of %s (pid %d): %s" % (victim, p.pid, e))
        if p.poll() is not None or argv0 != nslib.HTTPD_BIN.encode() or \
                p.pid not in self.bed.ns_pids(victim):
            raise BenchError("pid %d is not the service in %s's namespace (argv0 %r)"
                             % (p.pid, victim, argv0))
        return p.pid

    def fault(self, case, victim, epoch):
        if case == "svccrash":
            pid = self.service_pid(victim)
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            self.httpd[victim].wait(timeout=10)
            return t0
        if case == "kill9":
            pgid = self.procs[victim].pid  # its own session (bed.popen): parent and VRRP child
            self.killed = self.group(victim)
            t0 = time.monotonic_ns()
            os.killpg(pgid, signal.SIGKILL)
            self.procs[victim].wait(timeout=10)
            return t0
        t0 = time.monotonic_ns()
        self.bed.link_down(victim)
        return t0

    def restore(self, case, victim):
        if case == "svccrash":
            # The only restart of a service during a run, and only after the measurement: the
            # check passes again (rise 1), and the MASTER (highest priority) preempts back.
            self.start_httpd(victim)
        elif case == "kill9":
            # The killed VRRP child is reaped by init, not by us: until then its pid file names a
            # live pid and a new keepalived refuses to start ("daemon is already running").
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(os.path.exists("/proc/%d" % p)
                                                      for p in self.killed):
                time.sleep(0.02)
            for f in ("ka-%s.pid", "ka-vrrp-%s.pid"):
                try:
                    os.unlink(os.path.join(self.dir, f % victim))
                except FileNotFoundError:
                    pass
            self.start(victim)
        else:
            self.bed.link_up(victim)

    def diagnostics(self):
        out = ["VIP holders: %s" % nslib.vip_holders(self.bed, VIP)]
        for n in self.bed.nodes:
            out.append("---- keepalived %s (tail of %s)" % (n, self.logfile(n)))
            out.append(nslib.tail(self.logfile(n)).rstrip("\n"))
        return "\n".join(out)

    def stop(self):
        nsagents.stop_procs(list(self.procs.values()), signal.SIGTERM, bound=10, kill=os.killpg)


# ---- one system, every case and run -------------------------------------------------------------

def run_system(args, system, state, cases):
    """The cases on one fresh bed; cases in OWN_BED come alone (their service differs)."""
    kind, param = SYSTEMS[system]
    special = cases[0] in OWN_BED
    workdir = tempfile.mkdtemp(prefix="understudy-bench-netns.%s%s." % (
        system.replace(":", "-"), "-" + cases[0] if special else ""))
    bed = netns.TestBed(3)
    state["bed"], state["dir"] = bed, workdir
    res = {c: {"runs": [], "error": None} for c in cases}
    sysobj = None
    try:
        bed.start()
        client = nslib.Client(bed)
        if kind == "understudy":
            sysobj = Understudy(bed, client, args, param, workdir, cases == ["svccrash"])
        else:
            sysobj = Keepalived(bed, client, args, param, workdir, cases == ["svccrash"])
        log("== %s%s: bed %s, %s" % (label(system), ", %s (hot service)" % CASES[cases[0]]
                                     if special else "", bed.prefix, workdir))
        sysobj.setup()
        for case in cases:
            for run in range(1, args.runs + 1):
                try:
                    res[case]["runs"].append(one_run(args, sysobj, client, bed, case, run))
                except BenchError as e:
                    log("bench: %s, %s, run %d: %s" % (label(system), CASES[case], run, e))
                    log(sysobj.diagnostics())
                    res[case]["error"] = "run %d: %s" % (run, str(e).splitlines()[0])
                    break
        client.close()
    except (BenchError, netns.NetnsError) as e:
        log("bench: %s: %s" % (label(system), e))
        if sysobj:
            log(sysobj.diagnostics())
        for c in cases:
            res[c]["error"] = res[c]["error"] or str(e).splitlines()[0]
    finally:
        if sysobj:
            sysobj.stop()
        nslib.close_bed(state, bed, workdir, args.keep)
    return res


# ---- --timeline: the steps of one takeover, from the agents' --debug logs --------------------------

LOG_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) +(\w+) +([^:\s]+): (.*)$")
# The order in which the steps of a takeover happen, and what marks each one in the logs
# (src/agent/agent.c, hub.c, instance.c, controller.c; DEBUG lines need `agent --debug`).
STEPS = ["revoked", "stale rx", "decision", "committed", "promoting", "started", "vip", "garp",
         "refused", "answer"]


def timeline_lines(logs, since_wall_ms):
    """[(wall ms, node, message)] of the log files {node: path}, lines from since_wall_ms on (the
    logs' time of day is local time, on this machine's clock)."""
    lt = time.localtime(since_wall_ms / 1000.0)
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1)) * 1000.0
    out = []
    for n, path in logs.items():
        try:
            with open(path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            m = LOG_RE.match(line)
            if not m:
                continue
            h, mi, se, ms = (int(x) for x in m.groups()[:4])
            t = midnight + ((h * 60 + mi) * 60 + se) * 1000.0 + ms
            if t >= since_wall_ms:
                out.append((t, n, m.group(7)))
    out.sort(key=lambda x: x[0])
    return out


def timeline(lines, t0_wall_ms, victim, events, t0_ns):
    """The takeover's steps {step: (ms after the fault, text)} from the agents' log lines and the
    prober's events, and the revocations' details."""
    st = {}
    rel = lambda t: t - t0_wall_ms  # noqa: E731
    revs = []
    decision = None
    for t, n, msg in lines:
        m = re.match(r"lease: revoked (\S+) at version \d+ \(our last grant (-?\d+) ms ago; "
                     r"saved in ([\d.]+) ms\)", msg)
        if m and m.group(1) == victim and decision is None:
            revs.append((n, rel(t), rel(t) - int(m.group(2)), float(m.group(3))))
            st.setdefault("revoked", (rel(t), n))
            continue
        m = re.match(r"lease: (\S+) reports (\S+) stale", msg)
        if m and m.group(2) == victim and decision is None:
            st["stale rx"] = (rel(t), "%s from %s" % (n, m.group(1)))
            continue
        if decision is None and re.search(r": lease of %s expired" % re.escape(victim), msg):
            decision = n
            st["decision"] = (rel(t), n)
            continue
        if decision is None:
            continue
        if n == decision and "committed" not in st and msg.startswith("applied our command"):
            st["committed"] = (rel(t), n)
        elif "promoting" not in st and re.search(r": promoting \(epoch", msg):
            st["promoting"] = (rel(t), n)
        elif "promoting" in st and n == st["promoting"][1]:
            if "started" not in st and re.search(r": started pid \d+ \(active\)", msg):
                st["started"] = (rel(t), n)
            elif "vip" not in st and re.search(r": added \S+ dev", msg):
                st["vip"] = (rel(t), n)
            elif "garp" not in st and re.search(r": announced ", msg):
                st["garp"] = (rel(t), n)
    # The prober: the first attempt refused after the fault (a node holding the VIP, nothing
    # listening yet), the first answer of the new active (when its connection started, ended).
    refused = sorted(e[1] for e in events if e[2] == "refused" and e[1] >= t0_ns)
    if refused:
        st["refused"] = ((refused[0] - t0_ns) / 1e6, "")
    ok = sorted((e[1], e[0]) for e in events if e[2] == "ok" and e[1] >= t0_ns and e[3] != victim)
    if ok:
        st["answer"] = ((ok[0][0] - t0_ns) / 1e6, "conn started %+.1f" % ((ok[0][1] - t0_ns) / 1e6))
    return st, revs


def print_timeline(st, revs):
    parts = ["%s %s" % (k, "%.0f" % st[k][0] + (" (%s)" % st[k][1] if st[k][1] else ""))
             for k in STEPS if k in st]
    log("      steps, ms after the fault: %s" % "; ".join(parts))
    log("      voters' last grants %s; revocations %s"
        % (", ".join("%s %+.0f" % (r[0], r[2]) for r in revs),
           ", ".join("%s %+.0f (fsync %.1f ms)" % (r[0], r[1], r[3]) for r in revs)))


def summarise_timelines(runs):
    """Medians of each step over the runs, and of the gaps between consecutive steps."""
    lines = ["", "takeover steps (ms after the fault, from the agents' --debug logs; median over "
             "%d runs, [min..max]):" % len(runs)]
    prev = None
    for k in ["last grant"] + STEPS:
        if k == "last grant":
            vals = [max(r[2] for r in revs) for st, revs in runs if revs]
        else:
            vals = [st[k][0] for st, revs in runs if k in st]
        if not vals:
            continue
        gap = ""
        if prev:
            gaps = [b - a for a, b in zip_steps(runs, prev, k)]
            if gaps:
                gap = "   (+%.1f after %s, [%.0f..%.0f])" % (statistics.median(gaps), prev,
                                                           min(gaps), max(gaps))
        lines.append("  %-11s %7.1f  [%6.1f .. %6.1f] in %2d runs%s"
                     % (k, statistics.median(vals), min(vals), max(vals), len(vals), gap))
        prev = k
    return lines


def zip_steps(runs, a, b):
    out = []
    for st, revs in runs:
        va = max(r[2] for r in revs) if a == "last grant" and revs else st.get(a, (None,))[0]
        vb = st.get(b, (None,))[0]
        if va is not None and vb is not None:
            out.append((va, vb))
    return out


def one_run(args, sysobj, client, bed, case, run):
    act, epoch, role = nslib.wait_for("steady state before run %d" % run, sysobj.steady,
                                      STEADY_TIMEOUT_S, 0.1)
    client.watch_arm(VIP, PORT, act, epoch, args.period_ms, TAKEOVER_MAX_S, args.after_ms)
    if case == "svccrash":
        time.sleep(random.uniform(0.0, SVCCRASH_JITTER_S))
    wall_off_ns = time.time_ns() - time.monotonic_ns()
    t0 = sysobj.fault(case, act, epoch)
    t0_wall_ms = (t0 + wall_off_ns) / 1e6
    events, reason = client.watch_result(TAKEOVER_MAX_S + args.after_ms / 1000.0)
    holders = nslib.vip_holders(bed, VIP)
    a = nslib.analyse(events, t0, act, epoch)
    if a["takeover_ms"] is None:
        raise BenchError("%s of %s: no answer from another node through the VIP within %.0f s "
                         "(prober: %s, failed attempts %d)"
                         % (CASES[case], act, TAKEOVER_MAX_S, reason, a["failed"]))
    a.update(victim=act, role=role, holders=holders)
    new = next(e for e in sorted(events, key=lambda e: e[1])
               if e[2] == "ok" and e[1] >= t0 and e[3] != act)
    log("  %-11s run %2d: %s (%s) -> %s answers after %7.1f ms; outage %7.1f ms, %3d failed%s, "
        "old node answered %s%s; VIP on %s"
        % (CASES[case], run, act, role, new[3], a["takeover_ms"], a["outage_ms"], a["failed"],
           " (%s)" % ",".join(a["kinds"]) if a["kinds"] else "",
           "never" if a["last_old_ms"] is None else "until the fault" if a["last_old_ms"] <= 0
           else "until %.0f ms" % a["last_old_ms"],
           ", %d times after the new one" % a["old_after_new"] if a["old_after_new"] else "",
           ",".join(holders) or "no node"))
    if args.timeline and isinstance(sysobj, Understudy):
        # The logs up to now: the takeover and the prober's after_ms.
        a["timeline"] = timeline(sysobj.log_lines(t0_wall_ms - 1000), t0_wall_ms, act, events, t0)
        print_timeline(*a["timeline"])
    sysobj.restore(case, act)
    return a


# ---- report -------------------------------------------------------------------------------------

def stats(vals):
    s = sorted(vals)
    return s[0], statistics.median(s), percentile(s, 90), s[-1]


def report(args, results):
    ok_all = True
    lines = ["", "== failover through a VIP, client-observed (prober: new TCP connection + GET every "
             "%g ms from the client namespace), %d runs per case and system" % (args.period_ms,
                                                                               args.runs)]
    for case in args.cases:
        lines.append("")
        lines.append(TITLES[case])
        lines.append("  %-24s %5s | %-31s | %-15s | %-15s | %s"
                     % ("", "", "takeover ms", "outage ms", "per run", "VIP holders"))
        lines.append("  %-24s %5s | %7s %7s %7s %7s | %7s %7s | %7s %7s | %s"
                     % ("system", "runs", "min", "median", "p90", "max", "median", "max", "failed",
                        "old>new", "after takeover (runs)"))
        medians = {}
        for system in args.systems:
            r = results[system][case]
            runs = r["runs"]
            if runs:
                tk = stats([x["takeover_ms"] for x in runs])
                ou = stats([x["outage_ms"] for x in runs])
                medians[system] = tk[1] if len(runs) == args.runs and not r["error"] else None
                holders = {}
                for x in runs:
                    k = "+".join(x["holders"]) if len(x["holders"]) != 1 else "new only" \
                        if x["holders"][0] != x["victim"] else "old only"
                    holders[k] = holders.get(k, 0) + 1
                lines.append("  %-24s %5d | %7.1f %7.1f %7.1f %7.1f | %7.1f %7.1f | %7.1f %7.1f | %s"
                             % (label(system), len(runs), tk[0], tk[1], tk[2], tk[3], ou[1], ou[3],
                                statistics.mean(x["failed"] for x in runs),
                                statistics.mean(x["old_after_new"] for x in runs),
                                ", ".join("%s: %d" % kv for kv in sorted(holders.items()))))
                if SYSTEMS[system][0] == "understudy" and case in TAIL_CASES:
                    ok = tk[2] <= TAIL_LIMIT * tk[1]
                    ok_all &= ok
                    lines.append("  %-24s         p90 / median: %.1f / %.1f ms = %.2f (target <= %.1f)"
                                 " -> %s" % ("", tk[2], tk[1], tk[2] / tk[1], TAIL_LIMIT,
                                             "PASS" if ok else "MISS"))
                if SYSTEMS[system][0] == "understudy":
                    tl = [x["timeline"] for x in runs if "timeline" in x]
                    if tl:
                        lines += ["  " + x for x in summarise_timelines(tl)] + [""]
                    lr = [x["takeover_ms"] for x in runs if x["role"] == "leader"]
                    if lr:
                        lines.append("  %-24s         (%d runs where the active was also the Raft "
                                     "leader: median %.1f ms)" % ("", len(lr), statistics.median(lr)))
            else:
                medians[system] = None
            if r["error"]:
                lines.append("  %-24s error: %s" % (label(system), r["error"]))
        if any(results[s][case]["error"] for s in args.systems):
            ok_all = False
        for us, ka, limit in TARGETS[case]:
            if us not in args.systems or ka not in args.systems:
                continue
            mu, mk = medians.get(us), medians.get(ka)
            if mu is None or mk is None:
                if limit is None:
                    lines.append("  ratio %s / %s median: n/a (incomplete runs; informational)"
                                 % (label(us), label(ka)))
                    continue
                lines.append("  target %s <= %g x %s median: MISS (incomplete runs)"
                             % (label(us), limit, label(ka)))
                ok_all = False
                continue
            ratio = mu / mk
            if limit is None:
                lines.append("  ratio %s / %s median: %.1f / %.1f ms = %.2f (informational)"
                             % (label(us), label(ka), mu, mk, ratio))
                continue
            ok = ratio <= limit
            ok_all &= ok
            lines.append("  ratio %s / %s median: %.1f / %.1f ms = %.2f (target <= %g) -> %s"
                         % (label(us), label(ka), mu, mk, ratio, limit, "PASS" if ok else "MISS"))
    lines += ["", "columns: takeover = fault -> first answer from the new active through the VIP; "
              "outage = longest span after the fault",
              "without any successful answer; failed = failed attempts per run (refused, reset, "
              "timed out after 1 s); old>new = answers", "per run from the old node after the new "
              "one had answered (two nodes holding the VIP)."]
    if "kill9" in args.cases and any(SYSTEMS[x][0] == "keepalived" for x in args.systems):
        lines += ["keepalived kill -9: the killed MASTER keeps its VIP and its service keeps "
                  "answering, so the client loses", "little or nothing until the BACKUP's "
                  "gratuitous ARP moves it; afterwards two nodes hold the VIP (the old one",
                  "still answers ARP requests for it)."]
    if "svccrash" in args.cases:
        lines += ["svc kill -9: understudy detects the exit of its child at once and promotes the "
                  "hot standby (bench/hot_service.py,", "a Python server that serves once the "
                  "promote hook wrote its epoch); keepalived notices only at its next vrrp_script",
                  "run (interval 1 s, keepalived's minimum; a TCP connect to the local "
                  "bench/httpd), goes to FAULT, and a BACKUP", "takes over after its skew time: "
                  "the script interval dominates, advert_int 1 s / 0.1 s only changes that last "
                  "step.", "The kill waits a random 0..1 s after the prober is armed (any phase "
                  "of the check interval)."]
    log("\n".join(lines))
    return ok_all


def main():
    ap = argparse.ArgumentParser(description="understudy vs keepalived: failover through a VIP")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--keepalived", default=shutil.which("keepalived") or "/usr/sbin/keepalived")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma-separated, from: %s" % ", ".join(SYSTEMS))
    ap.add_argument("--cases", default=",".join(CASES), help="kill9, linkdown, svccrash")
    ap.add_argument("--period-ms", type=float, default=3.0, help="prober period (2..5 ms)")
    ap.add_argument("--after-ms", type=float, default=1000.0,
                    help="how long the prober keeps watching after the new active answered")
    ap.add_argument("--leader-anywhere", action="store_true",
                    help="do not wait for the Raft leader to move off the active node (which "
                         "understudy does right after each promotion) before a run")
    ap.add_argument("--keep", action="store_true", help="keep the logs and configuration")
    ap.add_argument("--timeline", action="store_true",
                    help="understudy: agents with --debug; print each takeover's steps (voters' "
                         "revocations, the leader's decision, commit, promotion, process, VIP, "
                         "gratuitous ARP, first answer) from their logs, and their medians")
    args = ap.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.cases = [c for c in args.cases.split(",") if c]
    for s in args.systems:
        if s not in SYSTEMS:
            sys.exit("bench: unknown system '%s' (%s)" % (s, ", ".join(SYSTEMS)))
    for c in args.cases:
        if c not in CASES:
            sys.exit("bench: unknown case '%s' (%s)" % (c, ", ".join(CASES)))
    if args.runs < 1 or not 1 <= args.period_ms <= 50:
        sys.exit("bench: --runs must be >= 1 and --period-ms 1..50")
    tools = ["ip"]
    if any(SYSTEMS[s][0] == "keepalived" for s in args.systems):
        tools.append("keepalived")
    nslib.need_root_and_tools(tools)
    if any(SYSTEMS[s][0] == "understudy" for s in args.systems) and not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    try:
        nslib.build_httpd()
    except BenchError as e:
        sys.exit("bench: %s" % e)

    state = {"bed": None, "dir": None}

    def on_exit():
        if state["bed"]:
            state["bed"].close()
        if state["dir"] and not args.keep:
            shutil.rmtree(state["dir"], ignore_errors=True)

    atexit.register(on_exit)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    groups = [[c for c in args.cases if c not in OWN_BED]]
    groups += [[c] for c in args.cases if c in OWN_BED]
    results = {}
    for system in args.systems:
        results[system] = {}
        for cases in groups:
            if cases:
                results[system].update(run_system(args, system, state, cases))
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    sys.exit(main())
