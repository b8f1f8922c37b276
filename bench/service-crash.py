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
Only the Python standard library is used; the loopback cluster harness is bench/looplib.py.
Exit status: 0 when every run succeeded and the hot standby's median meets the target, 1 otherwise.
"""

import argparse
import collections
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

from looplib import (NODES, ROOT, SAMPLE, STEADY_TIMEOUT_S, BenchError, LoopCluster,
                     add_port_args, add_run_args, await_answer, check_bin_and_ports, error_suffix,
                     http_call, install_cleanup, log, parse_profiles, probe, run_guarded,
                     runs_where_line, summary_line, target_line)

HOT = os.path.join(ROOT, "bench", "hot_service.py")
PROFILES = ("default", "fast")
MODES = ("hot", "cold")
TARGET_HOT_MEDIAN_MS = 100.0  # hot standby, any profile

SETTLE_S = 1.0            # steady must hold unchanged this long (a leadership transfer follows
                          # every promotion of the leader's node: do not kill in the middle of it)
ANSWER_TIMEOUT_S = 30.0   # kill -> some node answers with a higher epoch
POLL_MS = 1.0             # the prober's pause between rounds over the three ports (--poll-ms)
STARTUP_SAMPLES = 10      # bare python3 start-up measurements


# ---- agent log time stamps -----------------------------------------------------------------------

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

class Cluster(LoopCluster):
    wait_interval = 0.02
    kept_note = "agent logs n1.log .. n3.log, service logs data-N/logs/"

    def __init__(self, binary, profile, mode, raft_base, api_base, http_base, any_leader=False):
        super().__init__(binary, profile, raft_base, api_base, http_base,
                         "understudy-svccrash-%s-%s." % (profile, mode))
        self.any_leader = any_leader
        self.mode = mode
        self.why = "nothing checked yet"  # why the last steady() said no
        self.threshold_key = True
        self.resets = 0
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

    def retry_apply(self, failed):
        if "failure_threshold" not in failed.stdout + failed.stderr:
            return None
        log("  note: the agent rejects failure_threshold; applying without it (bans are reset"
            " through the API if they happen)")
        self.threshold_key = False
        return self.apply_once()

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
            code, body = http_call(self.api[leader], "POST", "/v1/services/web/reset", 5.0, b"", token=self.token)
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
    offsets = cl.log_offsets()
    wall0 = time.time()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    answer = await_answer([cl.http[n] for n in NODES],
                          lambda a: a[0] == 200 and a[2] is not None and a[2] > epoch,
                          t0 + ANSWER_TIMEOUT_S, poll_s)
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
    samples = []

    def body():
        log("== profile %s, %s standby: 3 agents (%s), service web, standbys = 1, %d runs"
            % (profile, mode, cl.dir, args.runs))
        cl.start_all()
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

    error = run_guarded(state, cl, "profile %s, %s standby" % (profile, mode), args.keep, body)
    return {"samples": samples, "error": error, "threshold_key": cl.threshold_key}


def report(profile, mode, res, runs, startup):
    s = sorted(x["ms"] for x in res["samples"])
    lines = ["profile %s, %s standby:" % (profile, mode)]
    if s:
        med = statistics.median(s)
        lines.append("  service crash (kill -9 of the active's service process -> first 200 with a "
                     "higher epoch), %d/%d runs:" % (len(s), runs))
        lines.append(summary_line(s))
        by = collections.Counter(x["node"] for x in res["samples"])
        same = sum(1 for x in res["samples"] if x["node"] == x["killed"])
        lines.append("    answered by: %s; by the killed node itself (restart in place): %d"
                     % (", ".join("%s %d" % kv for kv in sorted(by.items())), same))
        for label, key, val in (("the crashed active was the Raft leader", "was_leader", True),
                                ("the new active was the Raft leader", "new_was_leader", True),
                                ("the new active was a Raft follower", "new_was_leader", False)):
            sub = sorted(x["ms"] for x in res["samples"] if x[key] == val)
            if sub:
                lines.append(runs_where_line(label, sub))
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
    if mode == "hot":
        line, ok = target_line(s, runs, res["error"], TARGET_HOT_MEDIAN_MS)
        lines.append(line)
    else:
        ok = bool(s) and len(s) == runs and not res["error"]
        lines.append("  no target (informational): %s%s"
                     % ("all runs succeeded" if ok else "FAILED", error_suffix(res["error"])))
    return "\n".join(lines), ok


def main():
    ap = argparse.ArgumentParser(description="understudy service-crash benchmark")
    add_run_args(ap)
    ap.add_argument("--modes", default="hot,cold")
    add_port_args(ap, 17301, 17401, 17480)
    ap.add_argument("--poll-ms", type=float, default=POLL_MS,
                    help="pause between probe rounds after the kill (default %g)" % POLL_MS)
    ap.add_argument("--any-leader", action="store_true",
                    help="steady does not require the Raft leader to be apart from the active")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and agent logs")
    args = ap.parse_args()
    profiles = parse_profiles(args.profiles, PROFILES)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit("bench: unknown mode '%s' (hot, cold)" % m)
    if args.runs < 1:
        sys.exit("bench: --runs must be at least 1")
    if not 0 <= args.poll_ms <= 100:
        sys.exit("bench: --poll-ms must be within 0..100")
    check_bin_and_ports(args, "%d/%s (%s)")
    state = install_cleanup()

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
