#!/usr/bin/env python3
"""netns.py — a network-namespace test bed for understudy (Python stdlib only, needs root).

Topology: one "switch" namespace holding a Linux bridge, N node namespaces and one client namespace,
each joined to the bridge by a veth pair. Nodes get 198.18.0.11, .12, ... and the client
198.18.0.100, all /24, `lo` up everywhere. Every namespace name carries a per-run prefix
("us" + 4 random hex digits), and every link lives inside one of those namespaces, so parallel runs
and stale leftovers never collide; `ip netns del` of the namespaces removes every link with them.

Faults are applied in the switch namespace (nftables rules in a bridge table, port state) or on the
two veth ends (tc netem), never in the host namespace:
    link_down(n) / link_up(n)   carrier loss on the node's port
    isolate(n)                  drop every frame to and from n (the link stays up)
    partition(groups, client=)  only hosts in the same group talk; the client sees every node or
                                the chosen groups
    loss(n, pct) / delay(n, ms) both directions; netem (kernel sch_netem). Without netem, loss falls
                                back to nftables random drops; delay raises NetemUnavailable.
    heal()                      remove every fault above
    kill9 / stop / cont         signal the processes started in a node (by label, e.g. "agent")

Processes: run(host, argv) / popen(host, argv) execute through `ip netns exec`. Teardown kills
every process started in the bed's namespaces (tracked ones first, then whatever `ip netns pids`
still lists: only this run can have started processes in its own namespaces), then deletes the
namespaces. It runs on close(), on leaving the `with` block, at interpreter exit (atexit) and on
SIGINT/SIGTERM/SIGHUP (handlers that tear down, then chain to the previous handler). Every wait is
bounded in time and iterations.

CLI (as root):
    python3 tests/netns.py selftest [--nodes N]   build, ping, partition, check, heal, tear down
    python3 tests/netns.py up [--nodes N]         build a bed, print its names, wait for Ctrl-C
    python3 tests/netns.py cleanup                remove beds whose owning process is gone
"""

import atexit
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SUBNET = "198.18.0"
FIRST_NODE_HOST = 11
CLIENT_HOST = 100
PREFIX_LEN = 24
CLIENT = "client"
# Owner records: a prefix whose owner process is gone belongs to a crashed run (see cleanup_stale).
STATE_DIR = "/run/understudy-netns"
PREFIX_RE = re.compile(r"^us[0-9a-f]{4}$")
NFT_TABLE = "usfault"
CMD_TIMEOUT = 30  # seconds, any single ip/tc/nft command


class NetnsError(Exception):
    """The test bed could not be built or a fault could not be applied."""


class NetemUnavailable(NetnsError):
    """tc netem is missing: no `tc` binary, or the kernel lacks sch_netem."""


def _ip_bin():
    return shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)


def _cmd(argv, input=None, timeout=CMD_TIMEOUT, check=True):
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise NetnsError(f"{argv[0]}: not found ({e})") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{' '.join(argv)}` did not finish within {timeout} s") from None
    if check and cp.returncode != 0:
        raise NetnsError(
            f"`{' '.join(argv)}` failed (exit {cp.returncode}): {cp.stderr.strip() or cp.stdout.strip()}"
        )
    return cp


def available():
    """(True, "") if this process can build a bed, else (False, why): root, iproute2 and the right
    to create a network namespace (tried for real: containers often lack CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (euid is %d)" % os.geteuid()
    ip = _ip_bin()
    if not ip:
        return False, "`ip` (iproute2) is not installed"
    cp = _cmd([ip, "netns", "list"], check=False, timeout=10)
    if cp.returncode != 0:
        return False, "`ip netns list` failed: " + cp.stderr.strip()
    probe = "us%s-probe" % secrets.token_hex(2)
    cp = _cmd([ip, "netns", "add", probe], check=False, timeout=10)
    if cp.returncode != 0:
        return False, "`ip netns add` failed: " + cp.stderr.strip()
    _cmd([ip, "netns", "del", probe], check=False, timeout=10)
    return True, ""


def _pid_alive(pid):
    """Exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


# ---- live beds and signal handling ----

_live = []
_live_lock = threading.RLock()
_handlers_installed = False
_prev_handlers = {}


def _teardown_all():
    with _live_lock:
        beds = list(_live)
    for b in beds:
        b.close()


def _on_signal(signum, frame):
    _teardown_all()
    prev = _prev_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers us
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            prev = signal.getsignal(sig)
            if prev == signal.SIG_IGN:
                continue  # the process is meant to survive it (e.g. SIGINT of a background job)
            _prev_handlers[sig] = signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


# ---- the bed ----


class Proc:
    def __init__(self, host, label, popen, argv):
        self.host, self.label, self.popen, self.argv = host, label, popen, argv

    @property
    def pid(self):
        return self.popen.pid


class TestBed:
    """A switch, `nodes` node namespaces and a client namespace. Use as a context manager, or
    call start() and close(). Hosts are named "n1".."nN" (or the names given) and "client"."""

    __test__ = False  # not a pytest test class

    def __init__(self, nodes=3, client=True, subnet=SUBNET):
        if isinstance(nodes, int):
            nodes = ["n%d" % (i + 1) for i in range(nodes)]
        nodes = list(nodes)
        if not nodes or len(nodes) > CLIENT_HOST - FIRST_NODE_HOST:
            raise ValueError("need 1..%d nodes" % (CLIENT_HOST - FIRST_NODE_HOST))
        for n in nodes:
            if not re.match(r"^[a-z0-9][a-z0-9-]{0,8}$", n) or n == CLIENT:
                raise ValueError("node name %r: expected [a-z0-9-], 1..9 chars, not 'client'" % n)
        if len(set(nodes)) != len(nodes):
            raise ValueError("duplicate node names")
        self.nodes = nodes
        self.has_client = client
        self.subnet = subnet
        self.ipbin = _ip_bin()
        self.prefix = None
        self.switch = None
        self.ns = {}  # host -> namespace name
        self.ip = {}  # host -> address
        for i, n in enumerate(nodes):
            self.ip[n] = "%s.%d" % (subnet, FIRST_NODE_HOST + i)
        if client:
            self.ip[CLIENT] = "%s.%d" % (subnet, CLIENT_HOST)
        self._created = []  # namespaces created, in order
        self._procs = []
        self._closed = False
        self._closing = False
        self._started = False
        # Fault state, rendered into one nftables table / netem qdisc per host.
        self._isolated = set()
        self._blocked = set()  # frozenset({a, b}) host pairs that may not talk
        self._tcp_in = set()  # (host, port): TCP segments to that port of the host are dropped
        self._down = set()
        self._netem = {}  # host -> {"delay": ms, "loss": pct}
        self._nft_loss = {}  # host -> pct (fallback when netem is missing)
        self._netem_ok = None
        self._netem_why = ""
        self.loss_method = None

    # -- lifecycle --

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def hosts(self):
        return self.nodes + ([CLIENT] if self.has_client else [])

    def _new_prefix(self):
        existing = set(_cmd([self.ipbin, "netns", "list"]).stdout.split())
        os.makedirs(STATE_DIR, exist_ok=True)
        for _ in range(64):
            p = "us" + secrets.token_hex(2)
            if any(e.split("-")[0] == p for e in existing):
                continue
            try:
                fd = os.open(os.path.join(STATE_DIR, p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write("%d\n" % os.getpid())
            return p
        raise NetnsError("no free namespace prefix after 64 tries (stale beds? run `netns.py cleanup`)")

    def start(self):
        if self._started:
            return self
        if self.ipbin is None:
            raise NetnsError("`ip` (iproute2) is not installed")
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root")
        self._started = True
        with _live_lock:
            _install_handlers()
            _live.append(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self):
        self.prefix = self._new_prefix()
        self.switch = self.prefix + "-sw"
        for h in self.hosts:
            self.ns[h] = "%s-%s" % (self.prefix, h)
        for ns in [self.switch] + [self.ns[h] for h in self.hosts]:
            _cmd([self.ipbin, "netns", "add", ns])
            self._created.append(ns)
        batch = ["link set lo up", "link add br0 type bridge stp_state 0 forward_delay 0", "link set br0 up"]
        for h in self.hosts:
            port = self.port(h)
            batch += [
                "link add %s type veth peer name eth0 netns %s" % (port, self.ns[h]),
                "link set %s master br0" % port,
                "link set %s up" % port,
            ]
        self._ipbatch(self.switch, batch)
        for h in self.hosts:
            self._ipbatch(
                self.ns[h],
                [
                    "link set lo up",
                    "addr add %s/%d dev eth0" % (self.ip[h], PREFIX_LEN),
                    "link set eth0 up",
                ],
            )

    def _ipbatch(self, ns, lines):
        _cmd([self.ipbin, "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    def close(self):
        """Kill every process started in the bed, delete its namespaces. Idempotent; never raises
        (problems go to stderr). Returns the list of problems."""
        if self._closed or self._closing:
            return []
        self._closing = True
        problems = []
        try:
            problems += self._kill_everything()
            for ns in reversed(self._created):
                cp = _cmd([self.ipbin, "netns", "del", ns], check=False, timeout=CMD_TIMEOUT)
                if cp.returncode != 0 and ns in self._list_ns():
                    problems.append("ip netns del %s: %s" % (ns, cp.stderr.strip()))
            self._created = []
            if self.prefix:
                try:
                    os.unlink(os.path.join(STATE_DIR, self.prefix))
                except OSError:
                    pass
        except BaseException as e:  # teardown must go on: report, never raise
            problems.append("teardown: %r" % (e,))
        finally:
            self._closed = True
            self._closing = False
            with _live_lock:
                if self in _live:
                    _live.remove(self)
        for p in problems:
            print("netns: teardown problem: " + p, file=sys.stderr)
        return problems

    def _list_ns(self):
        cp = _cmd([self.ipbin, "netns", "list"], check=False, timeout=10)
        return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]

    def _kill_everything(self):
        problems = []
        for p in self._procs:
            if p.popen.poll() is None:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    os.kill(p.popen.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        # Anything else in our namespaces (children that left their group, daemons) was started
        # by this run: the namespace names are unique to it.
        deadline = time.monotonic() + 10
        for _ in range(200):
            left = []
            for ns in self._created:
                left += self.ns_pids(ns)
            left = [pid for pid in left if _pid_alive(pid) and pid != os.getpid()]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > deadline:
                problems.append("processes still alive in the namespaces: %s" % left)
                break
            time.sleep(0.05)
        for p in self._procs:
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append("pid %d (%s) did not exit" % (p.pid, p.label))
        return problems

    def ns_pids(self, ns):
        """Pids of the processes in namespace `ns` (a host name or a namespace name)."""
        ns = self.ns.get(ns, ns)
        cp = _cmd([self.ipbin, "netns", "pids", ns], check=False, timeout=10)
        return [int(x) for x in cp.stdout.split() if x.isdigit()]

    # -- names --

    def _host(self, h):
        if h not in self.ns:
            raise ValueError("unknown host %r (hosts: %s)" % (h, ", ".join(self.hosts)))
        return h

    @staticmethod
    def port(h):
        """The switch-side veth of host h (inside the switch namespace)."""
        return "p-" + h

    def nsname(self, h):
        return self.ns[self._host(h)]

    # -- processes --

    def _exec_argv(self, h, argv):
        return [self.ipbin, "netns", "exec", self.nsname(h)] + [str(a) for a in argv]

    def run(self, h, argv, timeout=CMD_TIMEOUT, check=False, input=None, env=None):
        """Run argv in host h; returns CompletedProcess (text, captured). Bounded by `timeout`."""
        try:
            cp = subprocess.run(
                self._exec_argv(h, argv),
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as e:
            cmd = " ".join(map(str, argv))
            raise NetnsError("`%s` in %s did not finish within %s s" % (cmd, h, timeout)) from e
        if check and cp.returncode != 0:
            raise NetnsError(
                "`%s` in %s failed (exit %d): %s"
                % (" ".join(map(str, argv)), h, cp.returncode, cp.stderr.strip())
            )
        return cp

    def popen(self, h, argv, label=None, **kwargs):
        """Start argv in host h in a new session (its own process group); tracked for signals and
        teardown. kwargs go to subprocess.Popen (stdout, stderr, env, cwd...)."""
        if self._closed or not self._started:
            raise NetnsError("the bed is not running")
        kwargs["start_new_session"] = True
        p = subprocess.Popen(self._exec_argv(h, argv), **kwargs)
        self._procs.append(Proc(h, label or os.path.basename(str(argv[0])), p, list(argv)))
        return p

    def procs(self, h=None, label=None, alive=True):
        return [
            p
            for p in self._procs
            if (h is None or p.host == h)
                and (label is None or p.label == label)
                and (not alive or p.popen.poll() is None)
        ]

    def signal(self, h, sig, label=None):
        """Send sig to the tracked processes in host h (only those with `label`, if given) — to
        the process itself, not its group: the agent's guardian shares its group and must live
        on when the agent is killed or frozen. Returns the pids signalled."""
        self._host(h)
        pids = []
        for p in self.procs(h, label):
            try:
                os.kill(p.pid, sig)
                pids.append(p.pid)
            except ProcessLookupError:
                pass
        if not pids:
            raise NetnsError("no running process%s in %s" % (" labelled %r" % label if label else "", h))
        return pids

    def kill9(self, h, label=None):
        pids = self.signal(h, signal.SIGKILL, label)
        for p in self.procs(h, label, alive=False):
            if p.pid in pids:
                try:
                    p.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    raise NetnsError("pid %d did not die after SIGKILL" % p.pid) from None
        return pids

    def stop(self, h, label=None):
        return self.signal(h, signal.SIGSTOP, label)

    def cont(self, h, label=None):
        return self.signal(h, signal.SIGCONT, label)

    def terminate(self, popen, timeout=10.0):
        """SIGTERM one started process, SIGKILL after `timeout`; returns its exit status."""
        if popen.poll() is None:
            try:
                os.kill(popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                return popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(popen.pid, signal.SIGKILL)
                return popen.wait(timeout=10)
        return popen.returncode

    # -- faults --

    def link_down(self, h):
        self._ipbatch(self.switch, ["link set %s down" % self.port(self._host(h))])
        self._down.add(h)

    def link_up(self, h):
        self._ipbatch(self.switch, ["link set %s up" % self.port(self._host(h))])
        self._down.discard(h)

    def isolate(self, h):
        """Drop every frame to and from h at the switch (its link stays up)."""
        self._isolated.add(self._host(h))
        self._apply_nft()

    def block_tcp_in(self, h, port, on=True):
        """Drop the TCP segments that other hosts send to `port` on h (connection requests and data
        of connections to h's listener; h's own connections to others stay up). heal() removes it."""
        self._host(h)
        if not 0 < port < 65536:
            raise ValueError("port must be 1..65535")
        self._tcp_in = (self._tcp_in | {(h, port)}) if on else (self._tcp_in - {(h, port)})
        self._apply_nft()

    def partition(self, groups, client="all"):
        """Only hosts in the same group can talk. groups: lists of node names, e.g.
        [["n1"], ["n2", "n3"]]; nodes in no group are cut off from every other node. The client
        may be put in a group by name; otherwise client="all" lets it reach every node, and a
        list of group indexes (e.g. [1]) lets it reach only those groups' nodes. Replaces any
        earlier partition (isolate() stays in force until heal())."""
        member = {}
        for gi, g in enumerate(groups):
            for h in g:
                self._host(h)
                if h in member:
                    raise ValueError("%s is in two groups" % h)
                member[h] = gi
        if CLIENT in member and client != "all":
            raise ValueError("the client is in a group: do not pass client=")
        if self.has_client and CLIENT not in member:
            if client != "all":
                for gi in client:
                    if not 0 <= gi < len(groups):
                        raise ValueError("client group index %r out of range" % gi)
        blocked = set()
        hosts = self.hosts
        for i, a in enumerate(hosts):
            for b in hosts[i + 1 :]:
                if CLIENT in (a, b) and CLIENT not in member:
                    other = b if a == CLIENT else a
                    ok = client == "all" or member.get(other) in client
                else:
                    ok = a in member and b in member and member[a] == member[b]
                if not ok:
                    blocked.add(frozenset((a, b)))
        self._blocked = blocked
        self._apply_nft()

    def cut(self, a, b):
        """Drop every frame between a and b only (a bridge partition when a third host still
        reaches both). Adds to any partition in force; heal() removes it."""
        self._host(a), self._host(b)
        if a == b:
            raise ValueError("cut needs two hosts")
        self._blocked = set(self._blocked) | {frozenset((a, b))}
        self._apply_nft()

    def heal(self):
        """Remove every fault: partition, isolation, link down, loss and delay."""
        self._blocked = set()
        self._isolated = set()
        self._tcp_in = set()
        self._nft_loss = {}
        self._apply_nft()
        for h in list(self._down):
            self.link_up(h)
        for h in list(self._netem):
            self._set_netem(h, delay=0, loss=0)

    def _apply_nft(self):
        rules = []
        for h in sorted(self._isolated):
            rules += ['iifname "%s" drop' % self.port(h), 'oifname "%s" drop' % self.port(h)]
        for pair in sorted(tuple(sorted(p)) for p in self._blocked):
            a, b = pair
            rules += [
                'iifname "%s" oifname "%s" drop' % (self.port(a), self.port(b)),
                'iifname "%s" oifname "%s" drop' % (self.port(b), self.port(a)),
            ]
        for h, port in sorted(self._tcp_in):
            rules.append('oifname "%s" tcp dport %d drop' % (self.port(h), port))
        for h, pct in sorted(self._nft_loss.items()):
            for d in ("iifname", "oifname"):
                if pct >= 100:
                    rules.append('%s "%s" drop' % (d, self.port(h)))
                elif pct > 0:
                    rules.append('%s "%s" numgen random mod 100 < %d drop' % (d, self.port(h), pct))
        script = "add table bridge %s\ndelete table bridge %s\n" % (NFT_TABLE, NFT_TABLE)
        if rules:
            script += "table bridge %s {\n chain faults {\n" % NFT_TABLE
            script += "  type filter hook forward priority 0; policy accept;\n"
            script += "".join("  %s\n" % r for r in rules) + " }\n}\n"
        if not shutil.which("nft"):
            raise NetnsError(
                "`nft` not found: isolate/partition/loss need nftables (apt-get install nftables)"
            )
        cp = self.run_switch(["nft", "-f", "-"], input=script)
        if cp.returncode != 0:
            raise NetnsError("nft failed: %s\nscript:\n%s" % (cp.stderr.strip(), script))

    def run_switch(self, argv, input=None, timeout=CMD_TIMEOUT):
        return subprocess.run(
            [self.ipbin, "netns", "exec", self.switch] + list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def netem_available(self):
        """(ok, why): can tc attach a netem qdisc here? Probed once, on the switch's lo."""
        if self._netem_ok is None:
            if not shutil.which("tc"):
                self._netem_ok, self._netem_why = False, "`tc` not found (it comes with iproute2)"
            else:
                cp = self.run_switch(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
                if cp.returncode == 0:
                    self.run_switch(["tc", "qdisc", "del", "dev", "lo", "root"])
                    self._netem_ok = True
                else:
                    self._netem_ok = False
                    self._netem_why = (
                        "tc cannot attach netem (%s): the kernel lacks sch_netem "
                        "(CONFIG_NET_SCH_NETEM; try `modprobe sch_netem`)" % cp.stderr.strip()
                    )
        return self._netem_ok, self._netem_why

    def _set_netem(self, h, delay=None, loss=None):
        cur = self._netem.setdefault(h, {"delay": 0, "loss": 0})
        if delay is not None:
            cur["delay"] = delay
        if loss is not None:
            cur["loss"] = loss
        ends = [(None, self.port(h)), (h, "eth0")]  # both directions: switch port and node side
        for where, dev in ends:
            argv = ["tc", "qdisc"]
            if cur["delay"] == 0 and cur["loss"] == 0:
                argv += ["del", "dev", dev, "root"]
            else:
                argv += ["replace", "dev", dev, "root", "netem"]
                if cur["delay"]:
                    argv += ["delay", "%dms" % cur["delay"]]
                if cur["loss"]:
                    argv += ["loss", "%g%%" % cur["loss"]]
            cp = self.run_switch(argv) if where is None else self.run(where, argv)
            if cp.returncode != 0 and argv[2] != "del":
                raise NetnsError("`%s` failed: %s" % (" ".join(argv), cp.stderr.strip()))
        if cur["delay"] == 0 and cur["loss"] == 0:
            del self._netem[h]

    def loss(self, h, pct):
        """Drop pct % of the packets in each direction between h and the switch (0 = none)."""
        self._host(h)
        if not 0 <= pct <= 100:
            raise ValueError("loss percentage must be 0..100")
        ok, _ = self.netem_available()
        if ok:
            self.loss_method = "netem"
            self._set_netem(h, loss=pct)
        else:
            self.loss_method = "nftables"
            self._nft_loss[h] = int(round(pct))
            self._apply_nft()

    def delay(self, h, ms):
        """Delay every packet to and from h by ms milliseconds (0 = none). Needs netem."""
        self._host(h)
        ok, why = self.netem_available()
        if not ok:
            raise NetemUnavailable("delay() needs tc netem: " + why)
        self._set_netem(h, delay=int(ms))

    # -- reachability --

    def reachable(self, src, dsts, timeout=1.0):
        """ICMP echo from host src to each host in dsts (in parallel, one process, bounded by
        timeout): {dst: bool}."""
        dsts = [self._host(d) for d in dsts]
        argv = [sys.executable, os.path.abspath(__file__), "_probe", "%d" % int(timeout * 1000)]
        argv += [self.ip[d] for d in dsts]
        cp = self.run(src, argv, timeout=timeout + 20)
        if cp.returncode != 0:
            raise NetnsError("probe from %s failed: %s" % (src, cp.stderr.strip()))
        got = json.loads(cp.stdout)
        return {d: bool(got.get(self.ip[d])) for d in dsts}

    def matrix(self, timeout=1.0):
        """{(a, b): reachable} for every ordered pair of distinct hosts."""
        out, errors = {}, []

        def probe(a):
            try:
                for b, ok in self.reachable(a, [b for b in self.hosts if b != a], timeout).items():
                    out[(a, b)] = ok
            except NetnsError as e:
                errors.append(e)

        threads = [threading.Thread(target=probe, args=(a,)) for a in self.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 30)
        if errors:
            raise errors[0]
        return out


# ---- ICMP probe (runs inside a namespace) ----


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _probe(timeout_ms, dsts):
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ok = {d: False for d in dsts}
    deadline = time.monotonic() + timeout_ms / 1000.0
    next_send = 0.0
    seq = 0
    rounds = 0
    while time.monotonic() < deadline and not all(ok.values()) and rounds < 100000:
        rounds += 1
        now = time.monotonic()
        if now >= next_send:  # resend every 200 ms: the first may wait for ARP
            seq = (seq + 1) & 0xFFFF
            for d in dsts:
                if not ok[d]:
                    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"understudy"
                    pkt = struct.pack("!BBHHH", 8, 0, _csum(hdr), ident, seq) + b"understudy"
                    try:
                        sock.sendto(pkt, (d, 0))
                    except OSError:
                        pass  # e.g. no carrier: counts as unreachable
            next_send = now + 0.2
        r, _, _ = select.select([sock], [], [], max(0.0, min(deadline, next_send) - time.monotonic()))
        if not r:
            continue
        try:
            data, addr = sock.recvfrom(2048)
        except OSError:
            continue
        ihl = (data[0] & 0x0F) * 4
        if len(data) < ihl + 8:
            continue
        typ, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
        if typ == 0 and rid == ident and addr[0] in ok:
            ok[addr[0]] = True
    print(json.dumps(ok))
    return 0


# ---- stale beds ----


def cleanup_stale(verbose=True):
    """Delete namespaces of beds whose owning process is gone (crashed runs). Returns the count."""
    ip = _ip_bin()
    cp = _cmd([ip, "netns", "list"], check=False, timeout=10)
    names = [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]
    prefixes = set(os.listdir(STATE_DIR)) if os.path.isdir(STATE_DIR) else set()
    removed = 0
    for p in sorted(prefixes):
        if not PREFIX_RE.match(p):
            continue
        try:
            with open(os.path.join(STATE_DIR, p)) as f:
                owner = int(f.read().strip() or "0")
        except (OSError, ValueError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        for ns in [n for n in names if n.startswith(p + "-")]:
            pids = _cmd([ip, "netns", "pids", ns], check=False, timeout=10).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _cmd([ip, "netns", "del", ns], check=False, timeout=10)
            removed += 1
            if verbose:
                print("removed stale namespace %s (owner pid %d gone)" % (ns, owner))
        try:
            os.unlink(os.path.join(STATE_DIR, p))
        except OSError:
            pass
    return removed


# ---- self test ----


def _expect(matrix, allowed, failures, what):
    for (a, b), ok in sorted(matrix.items()):
        want = allowed(a, b)
        if ok != want:
            word = {True: "reachable", False: "unreachable"}
            failures.append("%s: %s -> %s is %s, expected %s" % (what, a, b, word[ok], word[want]))


def selftest(n_nodes=3):
    ok, why = available()
    if not ok:
        print("selftest: cannot run: " + why, file=sys.stderr)
        return 1
    failures = []
    t0 = time.monotonic()
    bed = TestBed(n_nodes)
    sleeper = None
    orphan = 0
    try:
        bed.start()
        hosts = ", ".join("%s=%s" % (h, bed.ip[h]) for h in bed.hosts)
        print("bed %s: switch %s, hosts %s" % (bed.prefix, bed.switch, hosts))
        nodes = bed.nodes
        everyone = lambda a, b: True  # noqa: E731
        _expect(bed.matrix(), everyone, failures, "initial")
        print("full mesh reachable" if not failures else "initial mesh: FAILED")

        groups = [[nodes[0]], nodes[1:]]
        bed.partition(groups)
        grp = {h: i for i, g in enumerate(groups) for h in g}
        _expect(
            bed.matrix(),
            lambda a, b: CLIENT in (a, b) or grp[a] == grp[b],
            failures,
            "partition %s" % groups,
        )
        print("partition %s (client sees all): checked" % groups)

        bed.partition(groups, client=[1])
        _expect(
            bed.matrix(),
            lambda a, b: (grp[b if a == CLIENT else a] == 1) if CLIENT in (a, b) else grp[a] == grp[b],
            failures,
            "partition %s, client with group 1" % groups,
        )
        print("partition %s (client sees group 1): checked" % groups)

        bed.heal()
        bed.isolate(nodes[-1])
        _expect(bed.matrix(), lambda a, b: nodes[-1] not in (a, b), failures, "isolate %s" % nodes[-1])
        print("isolate %s: checked" % nodes[-1])

        bed.heal()
        bed.link_down(nodes[0])
        _expect(bed.matrix(), lambda a, b: nodes[0] not in (a, b), failures, "link_down %s" % nodes[0])
        bed.link_up(nodes[0])
        print("link_down/link_up %s: checked" % nodes[0])

        bed.loss(nodes[0], 100)
        r = bed.reachable(CLIENT if bed.has_client else nodes[1], [nodes[0]], timeout=0.6)
        if r[nodes[0]]:
            failures.append("loss 100%% (%s): %s still reachable" % (bed.loss_method, nodes[0]))
        bed.loss(nodes[0], 0)
        print("loss 100%% via %s: checked" % bed.loss_method)

        nok, nwhy = bed.netem_available()
        if nok:
            bed.delay(nodes[1], 100)
            t = time.monotonic()
            r = bed.reachable(nodes[0], [nodes[1]], timeout=3)
            rtt = time.monotonic() - t
            if not r[nodes[1]]:
                failures.append("delay: %s unreachable" % nodes[1])
            print("delay 100 ms: probe took %.0f ms" % (rtt * 1000))
        else:
            try:
                bed.delay(nodes[1], 100)
                failures.append("delay() did not report missing netem")
            except NetemUnavailable as e:
                print("delay: SKIPPED, reported as expected: %s" % e)

        bed.heal()
        _expect(bed.matrix(), everyone, failures, "after heal")
        print("heal: full mesh reachable again")

        sleeper = bed.popen(nodes[0], ["sleep", "600"], label="agent")
        bed.stop(nodes[0], "agent")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "T" not in _proc_state(sleeper.pid):
            time.sleep(0.02)
        if "T" not in _proc_state(sleeper.pid):
            failures.append("stop: pid %d not stopped (%s)" % (sleeper.pid, _proc_state(sleeper.pid)))
        bed.cont(nodes[0], "agent")
        bed.kill9(nodes[0], "agent")
        if sleeper.returncode != -signal.SIGKILL:
            failures.append("kill9: exit %r" % sleeper.returncode)
        print("stop/cont/kill9: checked")
        # A process that left the tracked group must still be killed by the namespace sweep.
        pidfile = "/tmp/%s-orphan.pid" % bed.prefix
        bed.popen(nodes[1], ["sh", "-c", "setsid sleep 600 & echo $! > %s; wait" % pidfile])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(pidfile):
            time.sleep(0.02)
        try:
            with open(pidfile) as f:
                orphan = int(f.read().strip() or "0")
            os.unlink(pidfile)
        except (OSError, ValueError):
            failures.append("orphan pid file %s not written" % pidfile)
    except NetnsError as e:
        failures.append(str(e))
    finally:
        prefix = bed.prefix
        problems = bed.close()
        failures += ["teardown: " + p for p in problems]
    if prefix:
        left = [n for n in _cmd([_ip_bin(), "netns", "list"]).stdout.split() if n.startswith(prefix + "-")]
        if left:
            failures.append("namespaces left after teardown: %s" % left)
        if sleeper is not None and _pid_alive(sleeper.pid):
            failures.append("pid %d alive after teardown" % sleeper.pid)
        if orphan and _pid_alive(orphan):
            failures.append("orphan pid %d alive after teardown" % orphan)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    print("selftest %s in %.1f s" % ("FAILED" if failures else "passed", time.monotonic() - t0))
    return 1 if failures else 0


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read()
        return s[s.rfind(b")") + 2 : s.rfind(b")") + 3].decode()
    except OSError:
        return "gone"


def _up(n_nodes):
    with TestBed(n_nodes) as bed:
        print("bed %s is up (Ctrl-C tears it down)" % bed.prefix)
        print("  switch: %s (bridge br0, nftables table bridge %s)" % (bed.switch, NFT_TABLE))
        for h in bed.hosts:
            print("  %-7s %-15s ip netns exec %s ..." % (h, bed.ip[h], bed.ns[h]))
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "_probe":
        return _probe(int(argv[2]), argv[3:])
    import argparse

    ap = argparse.ArgumentParser(prog="netns.py", description="understudy network-namespace test bed")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, hlp in (
        ("selftest", "build a bed, check connectivity and faults, tear down"),
        ("up", "build a bed and wait for Ctrl-C"),
    ):
        sp = sub.add_parser(name, help=hlp)
        sp.add_argument("--nodes", type=int, default=3)
    sub.add_parser("cleanup", help="remove beds whose owning process is gone")
    args = ap.parse_args(argv[1:])
    if args.cmd == "cleanup":
        if os.geteuid() != 0:
            print("cleanup needs root", file=sys.stderr)
            return 1
        print("removed %d namespace(s)" % cleanup_stale())
        return 0
    if args.cmd == "selftest":
        return selftest(args.nodes)
    ok, why = available()
    if not ok:
        print("cannot build a bed: " + why, file=sys.stderr)
        return 1
    return _up(args.nodes)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
