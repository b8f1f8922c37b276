"""nsagents.py — understudy agents in the node namespaces of a tests/netns.py bed.

The pieces the namespace tests (tests/integration/nsharness.py, test_partition.py) and the
namespace benchmarks (bench/nslib.py, bench/failover-netns.py) share:
  - node configs: node address = the node's IP on RAFT_PORT, API on API_PORT, every node a member;
  - starting an agent in its node's namespace with its output appended to a log file;
  - the CLI run inside a namespace, `status --local --json` parsed (None when the agent does not answer);
  - stopping processes: a signal, then SIGKILL after one bound for all of them;
  - polling a condition bounded in time and count; the "cluster formed" check on statuses;
  - sanitizer markers to look for in agent logs.

Python standard library only; import it with tests/ on sys.path (netns is its neighbour).
"""

import json
import os
import signal
import subprocess
import time

import netns

RAFT_PORT = 7101
API_PORT = 7201
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def api(bed, n):
    return "%s:%d" % (bed.ip[n], API_PORT)


def ensure_key(path):
    """A cluster key file at path (mode 0600, the format of `understudy keygen`), made once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


# The API token file the last node_config named: cli() sends its token (one file per bed).
TOKEN = {"file": None}


def node_config(bed, n, cluster, data_dir, profile="default", nodes=None, key_file=None):
    """The agent config of node n: every node of `nodes` (default: the bed's) a Raft member.
    The cluster key defaults to cluster.key beside data_dir, the API token file to api.token
    there (made if missing). The API listens on the namespace's address, which is no loopback:
    the test beds are private networks, so it is served without TLS (api_insecure)."""
    members = " ".join("%s=%s:%d" % (m, bed.ip[m], RAFT_PORT) for m in (nodes or bed.nodes))
    here = os.path.dirname(os.path.abspath(data_dir))
    key_file = key_file or ensure_key(os.path.join(here, "cluster.key"))
    TOKEN["file"] = ensure_key(os.path.join(here, "api.token"))  # 64 hex digits: a valid token
    return (
        "[node]\nname = %s\naddress = %s:%d\napi = %s\ndata_dir = %s\napi_token_file = %s\n"
        "api_insecure = yes\n"
        "[cluster]\nname = %s\nmembers = %s\nprofile = %s\nkey_file = %s\n"
        % (n, bed.ip[n], RAFT_PORT, api(bed, n), data_dir, TOKEN["file"], cluster, members, profile, key_file)
    )


def write_node_config(path, bed, n, cluster, data_dir, profile="default", nodes=None, key_file=None):
    with open(path, "w") as f:
        f.write(node_config(bed, n, cluster, data_dir, profile, nodes, key_file))
    return path


def start_agent(bed, n, binary, conf, logfile, header=None, extra_args=(), **popen_kw):
    """`understudy agent --config conf [extra_args]` in n's namespace, output appended to logfile."""
    with open(logfile, "ab") as f:
        if header:
            f.write(header.encode())
            f.flush()
        argv = [binary, "agent", "--config", str(conf)] + list(extra_args)
        return bed.popen(n, argv, label="agent", stdout=f, stderr=subprocess.STDOUT, **popen_kw)


def cli(bed, where, binary, api_of, argv, timeout=30):
    """The CLI run inside namespace `where` against agent api_of's API."""
    token = ["--token-file", TOKEN["file"]] if TOKEN["file"] else []
    return bed.run(where, [binary, "--api", api(bed, api_of)] + token + list(argv), timeout=timeout)


def status(bed, where, binary, n):
    """Agent n's own view (`status --local --json`: not the leader's, which plain `status` asks for),
    asked from namespace `where`; None if it does not answer."""
    try:
        cp = cli(bed, where, binary, n, ["status", "--local", "--json"], timeout=10)
    except netns.NetnsError:
        return None
    return json_or_none(cp)


def json_or_none(cp):
    """The JSON a command printed, or None if it failed or printed something else."""
    if cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)
    except ValueError:
        return None


def formed_leader(statuses):
    """The leader every status names, when all answered and have quorum; else None."""
    if not statuses or any(s is None for s in statuses):
        return None
    leaders = {s["cluster"]["leader"] for s in statuses}
    if len(leaders) != 1 or None in leaders or not all(s["cluster"]["has_quorum"] for s in statuses):
        return None
    return leaders.pop()


def stop_procs(procs, sig=signal.SIGINT, bound=15, cont=False, kill=os.kill):
    """Send sig (after SIGCONT with cont) to every live process of procs, SIGKILL (through
    kill(pid, sig), e.g. os.killpg) whatever still runs after `bound` seconds for all."""
    for p in procs:
        if p.poll() is None:
            try:
                if cont:
                    os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + bound
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def poll(cond, timeout, interval=0.05):
    """cond() until truthy, bounded in time and count: (True, value) or (False, last value)."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / max(interval, 0.001)) + 100):
        last = cond()
        if last:
            return True, last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return False, last


def wait(what, cond, timeout, interval=0.05):
    """poll(), raising AssertionError naming `what` and the last value on timeout."""
    ok, last = poll(cond, timeout, interval)
    if not ok:
        raise AssertionError("timed out after %.1f s waiting for %s (last: %r)" % (timeout, what, last))
    return last


def sanitizer_findings(texts):
    """["node: marker", ...] for {node: log text}."""
    return ["%s: %s" % (n, m) for n, text in texts.items() for m in SANITIZER_MARKERS if m in text]


def skip_reason():
    """Why namespace tests cannot run here, or None."""
    ok, why = netns.available()
    return None if ok else why


def binary(repo):
    """$UNDERSTUDY_BIN (relative to repo) or repo/build/san/understudy."""
    b = os.environ.get("UNDERSTUDY_BIN") or os.path.join(str(repo), "build", "san", "understudy")
    return b if os.path.isabs(b) else os.path.join(str(repo), b)
