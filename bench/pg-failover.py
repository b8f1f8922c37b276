#!/usr/bin/env python3
"""PostgreSQL failover as a client sees it: understudy's postgresql recipe vs Patroni, same run.

Run through `make bench-pg` or `sh bench/pg-failover [--runs N] [--systems ...] [--faults
kill9,linkdown] [--max-minutes M]` (root). Three systems, each on a tests/netns.py bed of its own
(three node namespaces, eth0 198.18.0.11..13/24, and a client namespace, 198.18.0.100, on one
bridge), all three set up at the start and kept from run to run (set up anew only after a failed
measurement or lost writes, see below); within each run the systems take turns (the order
rotates from run to run), each fault measured on each system before the next fault.

The same three PostgreSQL 15 servers everywhere (/usr/lib/postgresql/15/bin, one per node
namespace, run as postgres, data under a temporary directory of the bench: mode 0755 root
directory, data directories owned by postgres), streaming replication with one synchronous
standby, the recipe's settings (wal_level replica, max_wal_senders 10, wal_keep_size 512MB,
hot_standby, synchronous_commit on, wal_receiver_status_interval 1s, wal_retrieve_retry_interval
200ms, data checksums, trust from 198.18.0.0/24):
  understudy        examples/postgresql as shipped (tests/integration/dbrecipe.py copies it, the
                    data root pointed into the bench's directory): three agents (profile default),
                    hot standbys, standbys = 2, synchronous = 1, `vip = 198.18.0.200/24 dev
                    eth0`. Its client connects to the VIP, 198.18.0.200:5432.
  patroni:default   Patroni 3.0 (Debian bookworm) on etcd 3.4: one etcd member per node namespace
  patroni:tuned     (client and peer URLs on the node's address only), one Patroni per node as
                    postgres (REST API on NODE:8008, PostgreSQL listening on the node's address and
                    127.0.0.1, its Unix socket in a directory of its own), bootstrapped by Patroni
                    (initdb with data checksums), synchronous_mode: true (one synchronous standby,
                    only it may be promoted: the guarantee of understudy's synchronous = 1),
                    use_pg_rewind: true, watchdog off, everything else at Patroni's defaults
                    (maximum_lag_on_failover 1 MB, primary_start_timeout 300 s, replication
                    slots). Its client goes through HAProxy in the client namespace, Patroni's
                    standard deployment: listen 198.18.0.100:5000, `option httpchk GET /primary`
                    against each node's REST API (port 8008), `inter 100ms fall 1 rise 1`,
                    `timeout check 1s`, `on-marked-down shutdown-sessions`.
Patroni's profiles (dynamic configuration, bootstrap.dcs):
  default  ttl 30, loop_wait 10, retry_timeout 10 (Patroni's defaults);
  tuned    ttl 20, loop_wait 1, retry_timeout 9: its fastest setting that is still safe by its own
           documented rule. Patroni's documentation (Dynamic Configuration Settings,
           docs/dynamic_configuration.rst; the rule and the minima came with Patroni 3.2, which
           enforces them, patroni/patroni pull request 2869; 3.0 applies whatever it is given)
           gives the minimum values ttl 20, loop_wait 1, retry_timeout 3 and requires
           `loop_wait + 2 * retry_timeout <= ttl`, so that a primary cut off from the DCS demotes
           itself before its leader key expires (its maintainers in patroni/patroni issue 2040:
           "Please don't set TTL smaller than 20s-30s"). ttl and loop_wait are at their minima;
           retry_timeout does not enter the takeover of these faults (the leader key of a
           primary cut off expires after ttl whatever it is), so it takes the largest value the
           rule allows, 1 + 2 * 9 = 19 <= 20, which rides out the longest DCS hiccup.

The client (tests/integration/pg_writer.py write, in the client namespace, the same for every
system; --port 5000 for HAProxy): INSERTs without pause, one transaction each, synchronous_commit
on, statement_timeout 2 s; a COMMIT that returns without the warning "canceling wait for
synchronous replication" is acknowledged and its id appended to a file (ids go up by one per
attempt, so a missing id marks a failed attempt). The bench reads that file every 2 ms and dates
each id when it first sees it.

Faults, on the primary (the one server not in recovery; steady checks that every system agrees):
  kill9     kill -9 of its postmaster (the pid on the first line of postmaster.pid in its data
            directory, checked to be a process of the primary's namespace). understudy fails
            over (its agent then restarts the server as a standby); Patroni, with its default
            primary_start_timeout (300 s), restarts PostgreSQL in place on the same node (as a
            read-only server first, then promoted, because it still holds the leader key)
            instead of failing over: for Patroni this figure is the first acknowledged write after
            the fault on whichever node (the table counts failovers and restarts in place).
  linkdown  carrier loss on the primary's switch port (netns link_down: the client, the other
            nodes and etcd's other members lose it); link up once the takeover is measured.
A measurement: wait until steady, twice in a row (one primary; both other servers in recovery,
their WAL receivers streaming from its address on its current timeline, its walsenders streaming
to both, one of them `sync`; the client's way in (the VIP, or HAProxy) leading to a primary; the
system's own record naming that synchronous standby (understudy: the service's synchronous set;
Patroni: the /sync key, read through GET /cluster, which also shows the leader key on the
primary and every member running); understudy: quorum, every agent alive and applied the current
assignment, the Raft leader on another node than the active (the controller moves it there
after a promotion; --leader-anywhere skips this), both standbys following, the VIP on the active
only; Patroni: GET /primary 200 on the primary's REST API, 503 on the others), start the client,
wait for 50 acknowledged writes and a random 0..1 s, then T0 = just before the fault. Takeover =
T0 -> the first acknowledged write after a failed one with an id above every id acknowledged
before T0 (an ack in flight at T0 is skipped; the first ack after the client's failed attempt
comes from the new, or restarted, primary); which server was the primary then is read right
after. Then the client writes 1 s more and is stopped, the fault restored (link up), and once
steady again: acknowledged writes lost = acknowledged ids missing on the primary (pg_writer.py
check through the client's way in, which must lead to a primary). A measurement that gets no
acknowledged write within 90 s of the fault, or no steady state within 180 s, counts as failed;
the system is then set up anew on a fresh bed (given up on after 5 failures), and so is one that
lost acknowledged writes or whose old primary was the primary again once steady (two primaries
took writes: its servers may hold diverged WAL, which Patroni 3.0.2 does not always repair).

Printed: per fault and system, takeover min / median / p90 / max, failed measurements, where the
first write after the fault was acknowledged (another node, or the same: Patroni's restart in
place) and how often the old primary was the primary again once steady, acknowledged writes and
those lost; the ratios of the medians understudy / patroni:default and understudy /
patroni:tuned with the issue's targets (<= 0.2 x Patroni default, <= 1.0 x Patroni tuned) as
PASS/MISS, and the lost-write totals (understudy's target: 0). Exit status 0 when every run was
measured, no understudy measurement failed, its targets were met and it lost nothing (Patroni's
failures and losses are reported, not judged). --max-minutes (default 60) bounds the run: no run
starts that would likely end past it (the table then says how many runs were measured).

Patroni 3.0.2 (Debian bookworm) on etcd3 can lose acknowledged writes after link down: the cut
off primary demotes itself, and once the link is back it renews its expired lease and rewrites
the leader key unconditionally (etcd3 _update_leader), taking the lock back from the new primary,
which demotes itself; the writes it acknowledged are gone ("old back" in the table). Fixed
upstream after 3.0.2 (patroni/patroni pull request 2689: "Make sure the leader key isn't
unconditionally overwritten").

Every wait is bounded in time and count; every process, namespace and temporary directory is
removed on exit (also on Ctrl-C / SIGTERM). Python standard library only, with
tests/integration/dbrecipe.py (which needs pytest importable) and pg_writer.py (psycopg2): run
it with Debian's /usr/bin/python3 (bench/pg-failover does).
"""

import argparse
import atexit
import json
import os
import pwd
import random
import shutil
import signal
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
import dbrecipe  # noqa: E402

netns = nslib.netns
nsagents = nslib.nsagents
ROOT = nslib.ROOT
PG_BIN = "/usr/lib/postgresql/15/bin"
PSQL = os.path.join(PG_BIN, "psql")
WRITER = os.path.join(ROOT, "tests", "integration", "pg_writer.py")
PYTHON = sys.executable or "/usr/bin/python3"
SERVICE = "postgresql"
VIP = "198.18.0.200"
PG_PORT = 5432
HAPROXY_PORT = 5000
REST_PORT = 8008
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
SUBNET = "198.18.0.0/24"

PATRONI = {  # bootstrap.dcs timing of each profile (see the docstring)
    "default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
    "tuned": {"ttl": 20, "loop_wait": 1, "retry_timeout": 9},
}
SYSTEMS = ("understudy", "patroni:default", "patroni:tuned")
FAULTS = {"kill9": "kill -9 of the primary's postmaster",
          "linkdown": "link down of the primary's node (switch port carrier off)"}
# (understudy, patroni system, max ratio of the medians)
TARGETS = (("understudy", "patroni:default", 0.2), ("understudy", "patroni:tuned", 1.0))
# The recipe's settings (examples/postgresql/run) that Patroni gets as well.
PG_PARAMETERS = {
    "wal_level": "replica", "max_wal_senders": 10, "wal_keep_size": "512MB", "hot_standby": "on",
    "synchronous_commit": "on", "wal_receiver_status_interval": "1s",
    "wal_retrieve_retry_interval": "200ms",
}

SETUP_S = 240.0  # a system's first steady state (initdb, base backups, synchronous standby)
STEADY_S = 180.0  # steady again after a fault (rewind, restart, resync; Patroni default loops 10 s)
ACKS_BEFORE = 50
ACKS_BEFORE_S = 60.0
JITTER_S = 1.0
TAKEOVER_MAX_S = 90.0
AFTER_S = 1.0  # the client writes this long after the takeover
POLL_S = 0.002
WRITER_MAX_S = 600.0  # the client's own bound (it is stopped long before)
STOP_S = 30.0
MAX_FAILURES = 5  # failed measurements of one system before it is given up on


def label(system):
    return system if system == "understudy" else "patroni %s" % system.split(":")[1]


# ---- queries from the client namespace ---------------------------------------------------------------

def psql(bed, host, sql, port=PG_PORT, timeout=10):
    """One query through psql in the client namespace: its output (stripped), or None."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="2")
    try:
        cp = bed.run(netns.CLIENT, [PSQL, "-h", host, "-p", str(port), "-U", "postgres", "-d",
                                    "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                     timeout=timeout, env=env)
    except netns.NetnsError:
        return None
    return cp.stdout.strip() if cp.returncode == 0 else None


# One row per server: in recovery; on a primary its current timeline (from its WAL file name) and
# its walsenders (application_name=state/sync_state, ...); on a standby its WAL receiver
# (status/received timeline/sender host).
NODE_SQL = """SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery()
       THEN coalesce((SELECT status || '/' || received_tli || '/' || sender_host FROM pg_stat_wal_receiver), '')
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END,
  coalesce((SELECT string_agg(application_name || '=' || state || '/' || sync_state, ',' ORDER BY application_name)
            FROM pg_stat_replication), '')"""


def streaming(bed, via=None):
    """((primary, synchronous standby), "") when exactly one server is out of recovery, both
    others stream from it (its walsenders say so, and their WAL receivers stream from its address
    on its current timeline), exactly one of them synchronous, and the client's way in `via`
    ((host, port), optional) leads to a primary; else (None, why not)."""
    state = {}
    for n in bed.nodes:
        out = psql(bed, bed.ip[n], NODE_SQL)
        if out is None or out.count("|") != 2:
            return None, "%s: no answer (%r)" % (n, out)
        rec, tl_or_rx, repl = out.split("|")
        state[n] = (rec == "t", tl_or_rx, dict(x.split("=", 1) for x in repl.split(",") if "=" in x))
    primaries = [n for n in bed.nodes if not state[n][0]]
    if len(primaries) != 1:
        return None, "primaries: %s" % primaries
    p = primaries[0]
    timeline, repl = state[p][1], state[p][2]
    others = [n for n in bed.nodes if n != p]
    if any(not repl.get(n, "").startswith("streaming/") for n in others):
        return None, "walsenders of %s: %s" % (p, repl)
    rx = {n: state[n][1] for n in others}
    if any(rx[n] != "streaming/%s/%s" % (timeline, bed.ip[p]) for n in others):
        return None, "WAL receivers (status/timeline/sender) %s, %s on timeline %s" % (rx, p, timeline)
    sync = [n for n in others if repl[n].endswith("/sync")]
    if len(sync) != 1:
        return None, "walsenders of %s: %s" % (p, repl)
    if via and psql(bed, via[0], "SELECT pg_is_in_recovery()", port=via[1]) != "f":
        return None, "%s:%d does not lead to a primary" % via
    return (p, sync[0]), ""


def primaries(bed, skip=()):
    """The nodes (but those in skip) whose server answers and is not in recovery."""
    return [n for n in bed.nodes if n not in skip and psql(bed, bed.ip[n], "SELECT pg_is_in_recovery()") == "f"]


def postmaster_pid(bed, n, data_dir):
    """The postmaster of node n: the first line of postmaster.pid in data_dir, checked to be a
    process in n's namespace."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        return None
    return pid if pid in bed.ns_pids(n) else None


# GETs from the client namespace: {url: [status, body]} (status 0: no answer).
REST_CHECK = r"""
import json, sys, urllib.request, urllib.error
out = {}
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            out[url] = [r.status, r.read().decode(errors="replace")]
    except urllib.error.HTTPError as e:
        out[url] = [e.code, ""]
    except Exception as e:
        out[url] = [0, str(e)]
print(json.dumps(out))
"""


# ---- the systems ------------------------------------------------------------------------------------

class System:
    """One system on a bed of its own: setup(), steady() -> primary or None, data_dir(n),
    client_addr() -> (host, port), restore(), diagnostics(), stop(). Generation gen (a system is
    built anew after a failed measurement) has its own directories: ROOT/NAME-gGEN (configs,
    logs; root's) and ROOT/data/NAME-gGEN (PostgreSQL's data; postgres')."""

    def __init__(self, name, root, args, pw, gen):
        self.name, self.args, self.pw = name, args, pw
        base = "%s-g%d" % (name.replace(":", "-"), gen)
        self.dir = os.path.join(root, base)
        os.makedirs(self.dir)
        self.pg_dir = os.path.join(root, "data", base)
        os.makedirs(self.pg_dir)
        os.chown(self.pg_dir, pw.pw_uid, pw.pw_gid)
        self.bed = netns.TestBed(3)
        self.why = ""

    def start_bed(self):
        self.bed.start()

    def restore(self, fault, victim):
        if fault == "linkdown":
            self.bed.link_up(victim)

    def no(self, why):
        """Not steady: remember why (wait_steady reports the last reason)."""
        self.why = why
        return None

    def close(self):
        try:
            self.stop()
        finally:
            self.bed.close()


class Understudy(System):
    def __init__(self, name, root, args, pw, gen):
        super().__init__(name, root, args, pw, gen)
        # The shipped recipe, its scripts where postgres may read them, its data under pg_dir.
        self.services = dbrecipe.copy_recipe("postgresql", self.dir, lambda t, dest: t.replace(
            "PG_ROOT=/var/lib/postgresql/understudy", "PG_ROOT=" + self.pg_dir))
        self.ag = None

    def data_dir(self, n):
        return os.path.join(self.pg_dir, "%s-%s" % (n, SERVICE))

    def client_addr(self):
        return VIP, PG_PORT

    def setup(self):
        self.ag = nslib.Agents(self.bed, self.args.bin, self.args.profile, self.dir, self.services)
        self.ag.start_all()
        self.ag.wait_leader(60)
        self.ag.apply()

    def steady(self):
        """The active when steady (the module's docstring), else None; self.why says why not."""
        s = self.ag.steady(SERVICE)
        if not s:
            return self.no("no quorum, a node not alive, or no active instance")
        act, epoch, leader, st = s
        if act == leader and not self.args.leader_anywhere:
            return self.no("the Raft leader is the active %s" % act)
        svc = [x for x in st.get("services", []) if x["name"] == SERVICE][0]
        inst = {i["node"]: i for i in svc.get("instances", [])}
        if any(not inst.get(n) or inst[n].get("following") is not True or not inst[n].get("pid")
               for n in self.bed.nodes if n != act):
            return self.no("standbys not all following %s: %s" % (act, {
                n: (i.get("following"), i.get("pid")) for n, i in inst.items()}))
        if not self.ag.all_applied(act, epoch, SERVICE):
            return self.no("not every agent applied %s epoch %d" % (act, epoch))
        holders = nslib.vip_holders(self.bed, VIP)
        if holders != [act]:
            return self.no("VIP on %s" % holders)
        pg, why = streaming(self.bed, self.client_addr())
        if not pg or pg[0] != act:
            return self.no(why or "the primary is %s, the active %s" % (pg[0], act))
        # understudy's promotable set is the standby PostgreSQL calls synchronous
        sync = svc.get("synchronous") or {}
        if sync.get("standbys") != [pg[1]] or sync.get("asked") != [pg[1]]:
            return self.no("synchronous set %s, PostgreSQL's synchronous standby %s" % (sync, pg[1]))
        return act

    def diagnostics(self):
        return "leader status: %s\n%s" % (self.ag.leader_status() if self.ag else None,
                                          self.ag.log_tails() if self.ag else "")

    def stop(self):
        if self.ag:
            self.ag.stop()


class Patroni(System):
    def __init__(self, name, root, args, pw, gen):
        super().__init__(name, root, args, pw, gen)
        self.profile = name.split(":")[1]
        self.etcd, self.patroni, self.haproxy = {}, {}, None

    def data_dir(self, n):
        return os.path.join(self.pg_dir, n)

    def client_addr(self):
        return self.bed.ip[netns.CLIENT], HAPROXY_PORT

    def logfile(self, what):
        return os.path.join(self.dir, what + ".log")

    def config(self, n):
        ip = self.bed.ip[n]
        sock = os.path.join(self.pg_dir, "sock-" + n)
        os.makedirs(sock, exist_ok=True)
        os.chown(sock, self.pw.pw_uid, self.pw.pw_gid)
        hba = ["host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust",
               "host all all %s trust" % SUBNET, "host replication all %s trust" % SUBNET]
        dcs = dict(PATRONI[self.profile], synchronous_mode=True,
                   postgresql={"use_pg_rewind": True, "parameters": PG_PARAMETERS})
        return {
            "scope": "bench-" + self.profile, "name": n,
            "restapi": {"listen": "%s:%d" % (ip, REST_PORT), "connect_address": "%s:%d" % (ip, REST_PORT)},
            "etcd3": {"hosts": ["%s:%d" % (self.bed.ip[m], ETCD_CLIENT_PORT) for m in self.bed.nodes]},
            "bootstrap": {"dcs": dcs, "initdb": ["data-checksums"], "pg_hba": hba},
            "postgresql": {
                "listen": "%s,127.0.0.1:%d" % (ip, PG_PORT), "connect_address": "%s:%d" % (ip, PG_PORT),
                "data_dir": self.data_dir(n), "bin_dir": PG_BIN,
                "pgpass": os.path.join(self.pg_dir, "pgpass-" + n),
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "postgres"},
                                   "rewind": {"username": "postgres"}},
                "parameters": {"unix_socket_directories": sock},
                "pg_hba": hba,
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def setup(self):
        nodes = self.bed.nodes
        cluster = ",".join("%s=http://%s:%d" % (m, self.bed.ip[m], ETCD_PEER_PORT) for m in nodes)
        for n in nodes:
            ip = self.bed.ip[n]
            argv = [self.args.etcd, "--name", n, "--data-dir", os.path.join(self.dir, "etcd-" + n),
                    "--listen-client-urls", "http://%s:%d" % (ip, ETCD_CLIENT_PORT),
                    "--advertise-client-urls", "http://%s:%d" % (ip, ETCD_CLIENT_PORT),
                    "--listen-peer-urls", "http://%s:%d" % (ip, ETCD_PEER_PORT),
                    "--initial-advertise-peer-urls", "http://%s:%d" % (ip, ETCD_PEER_PORT),
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "bench-" + self.bed.prefix]
            with open(self.logfile("etcd-" + n), "ab") as lf:
                self.etcd[n] = self.bed.popen(n, argv, label="etcd", stdin=subprocess.DEVNULL,
                                              stdout=lf, stderr=subprocess.STDOUT)
        endpoints = ",".join("http://%s:%d" % (self.bed.ip[m], ETCD_CLIENT_PORT) for m in nodes)
        nslib.wait_for("etcd healthy", lambda: self.bed.run(
            netns.CLIENT, [self.args.etcdctl, "--endpoints", endpoints, "--dial-timeout", "2s",
                           "endpoint", "health"], timeout=20).returncode == 0, 60, 0.5)
        env = {"HOME": self.pg_dir, "USER": "postgres", "LOGNAME": "postgres", "LANG": "C.UTF-8",
               "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        for n in nodes:
            path = os.path.join(self.dir, "patroni-%s.yml" % n)
            with open(path, "w") as f:
                json.dump(self.config(n), f, indent=1)  # YAML is a superset of JSON
            os.chmod(path, 0o644)
            argv = ["setpriv", "--reuid", str(self.pw.pw_uid), "--regid", str(self.pw.pw_gid),
                    "--init-groups", self.args.patroni, path]
            with open(self.logfile("patroni-" + n), "ab") as lf:
                self.patroni[n] = self.bed.popen(n, argv, label="patroni", stdin=subprocess.DEVNULL,
                                                 stdout=lf, stderr=subprocess.STDOUT, env=env,
                                                 cwd=self.pg_dir)
            if n == nodes[0]:  # the first one bootstraps the cluster, the others copy it
                nslib.wait_for("patroni %s bootstrapped" % n,
                               lambda: psql(self.bed, self.bed.ip[n], "SELECT pg_is_in_recovery()") == "f",
                               120, 0.5)
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG % {
                "bind": "%s:%d" % (self.bed.ip[netns.CLIENT], HAPROXY_PORT),
                "servers": "".join("    server %s %s:%d maxconn 100 check port %d\n"
                                   % (m, self.bed.ip[m], PG_PORT, REST_PORT) for m in nodes)})
        cp = subprocess.run([self.args.haproxy, "-c", "-q", "-f", cfg], capture_output=True,
                            text=True, timeout=30)
        if cp.returncode != 0:
            raise BenchError("haproxy rejects %s: %s%s" % (cfg, cp.stdout, cp.stderr))
        with open(self.logfile("haproxy"), "ab") as lf:
            self.haproxy = self.bed.popen(netns.CLIENT, [self.args.haproxy, "-db", "-f", cfg],
                                          label="haproxy", stdin=subprocess.DEVNULL, stdout=lf,
                                          stderr=subprocess.STDOUT)

    def rest(self, paths):
        """{(node, path): (HTTP status, body)} of GETs on the nodes' REST APIs, from the client
        namespace (status 0: no answer)."""
        urls = {(n, p): "http://%s:%d%s" % (self.bed.ip[n], REST_PORT, p) for n, p in paths}
        try:
            cp = self.bed.run(netns.CLIENT, [PYTHON, "-c", REST_CHECK] + list(urls.values()), timeout=20)
            got = json.loads(cp.stdout)
        except (netns.NetnsError, ValueError):
            return {}
        return {k: tuple(got.get(u, (0, ""))) for k, u in urls.items()}

    def steady(self):
        procs = list(self.etcd.values()) + list(self.patroni.values()) + [self.haproxy]
        if any(p is None or p.poll() is not None for p in procs):
            raise BenchError("a process of %s exited: %s" % (self.name, {
                "etcd": {n: p.poll() for n, p in self.etcd.items()},
                "patroni": {n: p.poll() for n, p in self.patroni.items()},
                "haproxy": self.haproxy and self.haproxy.poll()}))
        pg, why = streaming(self.bed, self.client_addr())
        if not pg:
            return self.no(why)
        p, sync = pg
        got = self.rest([(n, "/primary") for n in self.bed.nodes] + [(p, "/cluster")])
        codes = {n: got.get((n, "/primary"), (0,))[0] for n in self.bed.nodes}
        if any(codes[n] != (200 if n == p else 503) for n in self.bed.nodes):
            return self.no("GET /primary: %s, primary %s" % (codes, p))
        # Patroni's own record (the DCS, read afresh by GET /cluster): p holds the leader key, the
        # standby PostgreSQL calls synchronous is the one in the /sync key (the only one Patroni
        # may promote), every member running.
        try:
            members = {m["name"]: m for m in json.loads(got[(p, "/cluster")][1])["members"]}
        except (KeyError, ValueError, TypeError):
            return self.no("GET /cluster on %s: %s" % (p, got.get((p, "/cluster"))))
        roles = {n: (members.get(n, {}).get("role"), members.get(n, {}).get("state")) for n in self.bed.nodes}
        want = {n: "leader" if n == p else "sync_standby" if n == sync else "replica" for n in self.bed.nodes}
        if any(roles[n][0] != want[n] or roles[n][1] not in ("running", "streaming") for n in self.bed.nodes):
            return self.no("Patroni's members %s; PostgreSQL: primary %s, synchronous %s" % (roles, p, sync))
        return p

    def diagnostics(self):
        out = []
        for n in self.bed.nodes:
            for what in ("patroni-" + n, "etcd-" + n):
                out.append("---- %s (tail of %s)" % (what, self.logfile(what)))
                out.append(nslib.tail(self.logfile(what), 25).rstrip("\n"))
        out.append("---- haproxy\n" + nslib.tail(self.logfile("haproxy"), 15).rstrip("\n"))
        return "\n".join(out)

    def stop(self):
        # Patroni stops its PostgreSQL (fast shutdown) on SIGTERM; etcd and HAProxy after it.
        nsagents.stop_procs(list(self.patroni.values()), signal.SIGTERM, bound=STOP_S)
        nsagents.stop_procs(list(self.etcd.values()) + ([self.haproxy] if self.haproxy else []),
                            signal.SIGTERM, bound=10)


HAPROXY_CFG = """global
    maxconn 100

defaults
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 1s
    timeout server 30m
    timeout check 1s

listen postgres
    bind %(bind)s
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 100ms fall 1 rise 1 on-marked-down shutdown-sessions
%(servers)s"""


# ---- one measurement ----------------------------------------------------------------------------

def wait_steady(sysobj, what, timeout):
    """The primary once sysobj.steady() named it twice in a row (a walsender of a standby that
    cannot follow may look streaming for a moment); bounded by timeout."""
    last = [None]

    def twice():
        p = sysobj.steady()
        again = p is not None and p == last[0]
        last[0] = p
        return p if again else None
    try:
        return nslib.wait_for(what, twice, timeout, 0.3)
    except BenchError as e:
        raise BenchError("%s; last: %s" % (str(e).split(" (last:")[0], sysobj.why)) from None


class Acks:
    """The client's file of acknowledged ids, each dated (monotonic s) when first read."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, b""
        self.ids = []  # (id, seen_at)

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        now = time.monotonic()
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        self.ids += [(int(x), now) for x in lines if x.strip()]


def measure(sysobj, fault, run, args):
    bed = sysobj.bed
    victim = wait_steady(sysobj, "%s steady before %s run %d" % (label(sysobj.name), fault, run), STEADY_S)
    tag = "%s-%d" % (fault, run)
    acked = os.path.join(sysobj.dir, "acked-%s.txt" % tag)
    host, port = sysobj.client_addr()
    with open(os.path.join(sysobj.dir, "writer-%s.log" % tag), "wb") as out:
        writer = bed.popen(netns.CLIENT, [PYTHON, WRITER, "write", "--host", host, "--port", str(port),
                                          "--out", acked, "--seconds", str(WRITER_MAX_S), "--tag", tag],
                           label="writer", stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    acks = Acks(acked)
    try:
        def warmed():
            acks.read()
            if writer.poll() is not None:
                raise BenchError("the client exited (%s)" % writer.returncode)
            return len(acks.ids) >= ACKS_BEFORE
        nslib.wait_for("%d acknowledged writes" % ACKS_BEFORE, warmed, ACKS_BEFORE_S, 0.02)
        time.sleep(random.uniform(0, JITTER_S))
        pid = None
        if fault == "kill9":
            pid = postmaster_pid(bed, victim, sysobj.data_dir(victim))
            if not pid:
                raise BenchError("no postmaster of %s in %s's namespace" % (sysobj.data_dir(victim), victim))
        acks.read()
        before = max(i for i, _ in acks.ids)
        seen = {i for i, _ in acks.ids}
        t0 = time.monotonic()
        if fault == "kill9":
            os.kill(pid, signal.SIGKILL)
        else:
            bed.link_down(victim)
        first = None
        start = len(acks.ids)
        deadline = t0 + TAKEOVER_MAX_S
        for _ in range(int(TAKEOVER_MAX_S / POLL_S) + 100):
            acks.read()
            for i, at in acks.ids[start:]:
                if first is None and i > before + 1 and i - 1 not in seen:
                    first = (i, at)
                seen.add(i)
            start = len(acks.ids)
            if first or time.monotonic() > deadline:
                break
            if writer.poll() is not None:
                raise BenchError("the client exited (%s)" % writer.returncode)
            time.sleep(POLL_S)
        if not first:
            raise BenchError("no acknowledged write within %.0f s of the fault" % TAKEOVER_MAX_S)
        takeover_ms = (first[1] - t0) * 1000.0
        # Who took that write: the primary now (the victim is out of reach after link down).
        t1 = time.monotonic()
        served = primaries(bed, (victim,) if fault == "linkdown" else ())
        time.sleep(max(0.0, AFTER_S - (time.monotonic() - t1)))
    finally:
        bed.terminate(writer, timeout=10)
    sysobj.restore(fault, victim)
    new = wait_steady(sysobj, "%s steady after %s run %d" % (label(sysobj.name), fault, run), STEADY_S)
    check = None
    for _ in range(10):
        cp = bed.run(netns.CLIENT, [PYTHON, WRITER, "check", "--host", host, "--port", str(port),
                                    "--acked", acked, "--tag", tag], timeout=60)
        check = nsagents.json_or_none(cp)
        if check and check.get("role") == "master":
            break
        time.sleep(1)
    if not check or check.get("role") != "master":
        raise BenchError("check of the acknowledged writes through %s:%d failed: %s" % (host, port, check))
    res = {"takeover_ms": takeover_ms, "victim": victim, "served": "+".join(served) or "?", "new": new,
           "acked": check["acked"], "lost": check["n_missing"], "missing": check["missing"]}
    log("  %-16s %-8s run %2d: primary %s; first ack after the fault %7.0f ms, primary then: %s%s; "
        "primary once steady: %s; %d acked, %d lost%s"
        % (label(sysobj.name), fault, run, victim, takeover_ms, res["served"],
           " (in place)" if served == [victim] else "", new, res["acked"], res["lost"],
           " %s" % res["missing"] if res["lost"] else ""))
    return res


# ---- report -------------------------------------------------------------------------------------

def report(args, results, failures, errors, runs_done):
    ok = True
    lines = ["", "== PostgreSQL failover, client-observed (INSERT + COMMIT without pause, synchronous_commit "
             "on; understudy through the VIP, Patroni through HAProxy): %d run(s) of %d" % (runs_done, args.runs)]
    for fault in args.faults:
        lines += ["", FAULTS[fault],
                  "  %-16s %4s %6s | %-35s | %-20s | %-21s" % ("", "", "", "fault -> first acknowledged write, ms",
                                                               "first ack by / later", "acknowledged writes"),
                  "  %-16s %4s %6s | %8s %8s %8s %8s | %5s %5s %8s | %8s %5s %6s"
                  % ("system", "runs", "failed", "min", "median", "p90", "max", "other", "same", "old back",
                     "total", "lost", "(runs)")]
        med = {}
        for s in args.systems:
            rs, nf = results[s][fault], len(failures[s][fault])
            med[s] = None
            if rs:
                v = sorted(r["takeover_ms"] for r in rs)
                med[s] = statistics.median(v)
                lines.append("  %-16s %4d %6d | %8.0f %8.0f %8.0f %8.0f | %5d %5d %8d | %8d %5d %6d"
                             % (label(s), len(rs), nf, v[0], statistics.median(v), percentile(v, 90), v[-1],
                                sum(r["served"] != r["victim"] for r in rs), sum(r["served"] == r["victim"] for r in rs),
                                sum(r["served"] != r["victim"] and r["new"] == r["victim"] for r in rs),
                                sum(r["acked"] for r in rs), sum(r["lost"] for r in rs),
                                sum(1 for r in rs if r["lost"])))
            else:
                lines.append("  %-16s %4d %6d | (no run measured)" % (label(s), 0, nf))
            for f in failures[s][fault]:
                lines.append("  %-16s failed %s" % ("", f))
        for us, pat, limit in TARGETS:
            if us not in args.systems or pat not in args.systems:
                continue
            if med[us] is None or med[pat] is None:
                lines.append("  target %s <= %g x %s median: MISS (no run measured)" % (label(us), limit, label(pat)))
                ok = False
                continue
            # understudy's failed measurements fail its target; Patroni's are noted (its
            # median is over the runs it took over in).
            ratio = med[us] / med[pat]
            failed = len(failures[us][fault])
            good = ratio <= limit and not failed
            ok &= good
            lines.append("  ratio %s / %s median: %.0f / %.0f ms = %.3f (target <= %g) -> %s%s"
                         % (label(us), label(pat), med[us], med[pat], ratio, limit,
                            "PASS" if good else "MISS" if not failed else
                            "MISS (%d failed measurement(s))" % failed,
                            "; %s: %d failed measurement(s)" % (label(pat), len(failures[pat][fault]))
                            if failures[pat][fault] else ""))
    lines += ["", "acknowledged writes lost (acked ids missing on the primary once steady again; understudy's "
              "target 0):"]
    for s in args.systems:
        rs = [r for f in args.faults for r in results[s][f]]
        lost = sum(r["lost"] for r in rs)
        if s == "understudy":
            ok &= lost == 0
        lines.append("  %-16s %d lost of %d acknowledged in %d measurement(s), %d run(s) with losses%s"
                     % (label(s), lost, sum(r["acked"] for r in rs), len(rs), sum(1 for r in rs if r["lost"]),
                        " -> PASS" if s == "understudy" and lost == 0 else " -> MISS" if s == "understudy" else ""))
    for s in args.systems:
        if errors[s]:
            ok &= s != "understudy"
            lines.append("  %s: given up: %s" % (label(s), errors[s]))
    if runs_done < args.runs:
        ok = False
        lines.append("  stopped after %d of %d runs (--max-minutes %g)" % (runs_done, args.runs, args.max_minutes))
    lines += ["", "Patroni profiles: default = ttl 30, loop_wait 10, retry_timeout 10; tuned = ttl 20, loop_wait 1, "
              "retry_timeout 9", "(Patroni's minima and its rule loop_wait + 2 * retry_timeout <= ttl; "
              "primary_start_timeout 300 s, the default, in both).",
              "failed: measurements without an acknowledged write within %.0f s of the fault, or not steady "
              "again within %.0f s" % (TAKEOVER_MAX_S, STEADY_S), "(the system is then set up anew, as after a measurement with lost writes).",
              "first ack by: the primary when the first write after the fault was acknowledged, another "
              "node than the old primary or the same", "(Patroni restarts PostgreSQL in place after kill -9 of "
              "its postmaster: it still holds the leader key; that figure is", "then the first acknowledged write "
              "after the fault on the same node); old back: runs where the old primary, after another node",
              "had taken writes, was the primary again once steady (those writes are lost)."]
    log("\n".join(lines))
    return ok


# ---- main ---------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="understudy's postgresql recipe vs Patroni: failover of the primary")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "understudy"))
    ap.add_argument("--profile", default="default", choices=["default", "fast"], help="understudy's profile")
    ap.add_argument("--patroni", default=shutil.which("patroni") or "/usr/bin/patroni")
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--etcdctl", default=shutil.which("etcdctl") or "/usr/bin/etcdctl")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, from: %s" % ", ".join(SYSTEMS))
    ap.add_argument("--faults", default=",".join(FAULTS), help="kill9, linkdown")
    ap.add_argument("--max-minutes", type=float, default=60.0, help="no run starts that would end past it")
    ap.add_argument("--leader-anywhere", action="store_true",
                    help="understudy: do not wait for the Raft leader to move off the active before a fault")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configuration)")
    args = ap.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.faults = [f for f in args.faults.split(",") if f]
    for s in args.systems:
        if s not in SYSTEMS:
            sys.exit("bench: unknown system '%s' (%s)" % (s, ", ".join(SYSTEMS)))
    for f in args.faults:
        if f not in FAULTS:
            sys.exit("bench: unknown fault '%s' (%s)" % (f, ", ".join(FAULTS)))
    if args.runs < 1 or args.max_minutes <= 0:
        sys.exit("bench: --runs and --max-minutes must be positive")
    nslib.need_root_and_tools(["ip", "setpriv"])
    if not os.access(os.path.join(PG_BIN, "postgres"), os.X_OK):
        sys.exit("bench: PostgreSQL 15 is missing: run `sh scripts/setup-databases.sh` (as root)")
    try:
        import psycopg2  # noqa: F401 (pg_writer.py's driver, run with this interpreter)
        pw = pwd.getpwnam("postgres")
    except (ImportError, KeyError):
        sys.exit("bench: %s lacks psycopg2 or there is no postgres account: run `sh scripts/setup-databases.sh` "
                 "and use Debian's /usr/bin/python3" % PYTHON)
    if "understudy" in args.systems and not os.access(args.bin, os.X_OK):
        sys.exit("bench: %s is missing: run 'make' first" % args.bin)
    if any(s.startswith("patroni") for s in args.systems):
        for tool in (args.patroni, args.etcd, args.etcdctl, args.haproxy):
            if not os.access(tool, os.X_OK):
                sys.exit("bench: %s is missing: `make bench-pg` installs patroni, etcd-server, etcd-client "
                         "and haproxy" % tool)

    t_start = time.monotonic()
    budget_s = args.max_minutes * 60.0
    root = tempfile.mkdtemp(prefix="understudy-bench-pg.")
    systems = {}
    state = {"done": False}

    def cleanup():
        if state["done"]:
            return
        state["done"] = True
        for s in systems.values():
            try:
                s.close()
            except Exception as e:  # teardown goes on
                log("bench: stopping %s: %r" % (s.name, e))
        if args.keep:
            log("bench: kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    atexit.register(cleanup)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for sg in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sg, on_signal)

    results = {s: {f: [] for f in args.faults} for s in args.systems}
    failures = {s: {f: [] for f in args.faults} for s in args.systems}
    errors = {s: None for s in args.systems}  # a system given up on
    gens = {s: 0 for s in args.systems}
    runs_done = 0

    def build(s):
        """System s set up anew (generation gens[s] + 1) and steady; False (errors[s] set) if not."""
        gens[s] += 1
        t = time.monotonic()
        cls = Understudy if s == "understudy" else Patroni
        systems[s] = obj = cls(s, root, args, pw, gens[s])
        try:
            obj.start_bed()
            obj.setup()
            p = wait_steady(obj, "%s: first steady state" % label(s), SETUP_S)
            log("  %s: bed %s, primary %s, steady after %.0f s%s" % (
                label(s), obj.bed.prefix, p, time.monotonic() - t, " (set up anew)" if gens[s] > 1 else ""))
            return True
        except (BenchError, netns.NetnsError) as e:
            errors[s] = "setup: %s" % str(e).splitlines()[0]
            log("bench: %s: setup failed: %s\n%s" % (label(s), e, obj.diagnostics()))
            return False

    try:
        # The servers run as postgres: their scripts and data live where it may go.
        os.chmod(root, 0o755)
        os.makedirs(os.path.join(root, "data"))
        os.chown(os.path.join(root, "data"), pw.pw_uid, pw.pw_gid)
        log("== bench/pg-failover: %s; %d run(s), faults %s; directory %s"
            % (", ".join(label(s) for s in args.systems), args.runs, ", ".join(args.faults), root))
        for s in args.systems:
            build(s)
        run_times = []
        for run in range(1, args.runs + 1):
            elapsed = time.monotonic() - t_start
            est = max(run_times) if run_times else 0.0
            if elapsed + est > budget_s:
                log("bench: stopping before run %d: %.0f s spent, a run takes up to %.0f s, --max-minutes %g"
                    % (run, elapsed, est, args.max_minutes))
                break
            t_run = time.monotonic()
            k = (run - 1) % len(args.systems)
            order = args.systems[k:] + args.systems[:k]
            for fault in args.faults:
                for s in order:
                    if errors[s]:
                        continue
                    try:
                        r = measure(systems[s], fault, run, args)
                        results[s][fault].append(r)
                        if r["lost"] or (r["served"] != r["victim"] and r["new"] == r["victim"]):
                            # Two primaries took writes: the servers may hold diverged WAL, which
                            # the system does not always repair (Patroni 3.0.2 after link down).
                            log("  %s: acknowledged writes lost or the old primary back: set up anew" % label(s))
                            systems[s].close()
                            build(s)
                    except (BenchError, netns.NetnsError) as e:
                        failures[s][fault].append("run %d: %s" % (run, str(e).splitlines()[0]))
                        log("bench: %s, %s, run %d: %s\n%s" % (label(s), fault, run, e, systems[s].diagnostics()))
                        # Not steady any more: set the system up anew for the next measurement.
                        systems[s].close()
                        if sum(len(x) for x in failures[s].values()) > MAX_FAILURES:
                            errors[s] = "more than %d failed measurements" % MAX_FAILURES
                        else:
                            build(s)
            run_times.append(time.monotonic() - t_run)
            runs_done = run
            if all(errors[s] for s in args.systems):
                break
        ok = report(args, results, failures, errors, runs_done)
        log("bench: %.1f minutes" % ((time.monotonic() - t_start) / 60.0))
    finally:
        cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
