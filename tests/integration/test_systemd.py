"""systemd integration (issue 5): sd_notify readiness, status, watchdog and stopping, and the
journald log format. The test plays the service manager: it creates the notification socket
(a unix datagram socket, by path or abstract) and hands it to an agent in NOTIFY_SOCKET.

  test_ready_after_join_watchdog_and_stopping: n1 of a 3-node cluster starts alone (no quorum, so
      no leader): it pings the watchdog (WATCHDOG_USEC=400000: every 200 ms, each ping extending
      the start timeout) but sends no READY=1 while alone. Once n2 starts, READY=1 comes, and then
      n1's own status already lists it as a registered member; STATUS names the leader. Pings keep
      coming at least every 200 ms (+ slack); SIGTERM brings STOPPING=1.
  test_abstract_socket_and_foreign_watchdog_pid: an abstract NOTIFY_SOCKET works; WATCHDOG_PID
      naming another process turns the watchdog off (sd_watchdog_enabled), READY still comes.
  test_journal_stream_log_format: with JOURNAL_STREAM naming its stderr, every log line is
      "<PRIORITY>n1: message" without a timestamp, and a message holding a line break stays one
      line.
  test_journal_stream_of_another_file_keeps_timestamps: JOURNAL_STREAM naming some other file
      (stderr redirected away from the journal) keeps the usual format.
"""

import os
import re
import signal
import socket
import threading
import time
import urllib.parse

from test_health import svc_ini

WATCHDOG_USEC = 400000


class Manager:
    """The service manager's end of NOTIFY_SOCKET: records every datagram with its arrival time."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.env_value = address if isinstance(address, str) else "@" + address[1:].decode()
        self.msgs = []  # (time.monotonic(), {key: value} of one datagram)
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            kv = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.lock:
                self.msgs.append((t, kv))

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()

    def all(self):
        with self.lock:
            return list(self.msgs)

    def first(self, key, value=None):
        """(time, message) of the first datagram carrying key (= value), or None."""
        for t, kv in self.all():
            if key in kv and (value is None or kv[key] == value):
                return t, kv
        return None

    def times(self, key, value=None, since=0.0):
        return [t for t, kv in self.all() if key in kv and (value is None or kv[key] == value) and t >= since]

    def statuses(self):
        return [kv["STATUS"] for _, kv in self.all() if "STATUS" in kv]


def registered(c, node):
    st = c.status(node)
    return any(n["name"] == node for n in st["nodes"]) and st["cluster"]["leader"]


# ---------------------------------------------------------------- 1. ready, watchdog, stopping


def test_ready_after_join_watchdog_and_stopping(cluster, tmp_path):
    c = cluster
    c.configure(("n1", "n2", "n3"))
    mgr = Manager(str(tmp_path / "notify.sock"))
    try:
        env = {"NOTIFY_SOCKET": mgr.env_value, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        c.start("n1", env=env)
        pid = c.pid("n1")

        # Alone (1 of 3 voters): no leader, so no READY; the watchdog is fed all the same, and each
        # ping extends the start timeout by the watchdog interval.
        c.wait_until(lambda: len(mgr.times("WATCHDOG", "1")) >= 5, 10, "watchdog pings from n1 while alone")
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            assert not mgr.first("READY"), "READY=1 without a leader: %r" % mgr.all()
            assert c.status("n1")["cluster"]["leader"] is None
            time.sleep(0.1)
        t, kv = mgr.first("WATCHDOG", "1")
        assert kv.get("EXTEND_TIMEOUT_USEC") == str(WATCHDOG_USEC), kv
        assert "waiting for a Raft leader" in mgr.statuses(), mgr.statuses()

        c.start("n2")
        ready = c.wait_until(lambda: mgr.first("READY", "1"), 20, "READY=1 from n1 once n2 is up")
        # Sent only after the registration was applied: the agent's own view has it already.
        st = c.status("n1")
        assert any(n["name"] == "n1" for n in st["nodes"]), st["nodes"]
        assert st["cluster"]["leader"] in ("n1", "n2"), st["cluster"]
        assert len([1 for _, kv in mgr.all() if kv.get("READY") == "1"]) == 1
        # After READY the pings no longer extend the start timeout.
        c.wait_until(lambda: len(mgr.times("WATCHDOG", "1", since=ready[0] + 0.01)) >= 1, 5, "a ping after READY")
        after = [kv for t, kv in mgr.all() if t > ready[0] + 0.01 and kv.get("WATCHDOG") == "1"]
        assert all("EXTEND_TIMEOUT_USEC" not in kv for kv in after), after

        def status_names_leader():
            leader = c.status("n1")["cluster"]["leader"]
            return [s for s in mgr.statuses() if s.startswith("leader %s; active here: " % leader)]

        c.wait_until(status_names_leader, 5, "a STATUS= line naming the leader")

        # Pings every WATCHDOG_USEC/2 = 200 ms over 2 s (slack for sanitizer builds).
        t0 = time.monotonic()
        c.wait_until(lambda: time.monotonic() - t0 >= 2.0, 5, "2 s of watchdog pings")
        pings = mgr.times("WATCHDOG", "1", since=t0)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert len(pings) >= 8, "only %d pings in 2 s: %r" % (len(pings), gaps)
        assert max(gaps) <= 0.2 + 0.1, "a watchdog gap of %.0f ms (interval 200 ms): %r" % (max(gaps) * 1000, gaps)
        assert 0.17 <= sum(gaps) / len(gaps) <= 0.23, "mean gap %.0f ms" % (sum(gaps) / len(gaps) * 1000)

        # SIGTERM: the hand-over starts, and systemd hears so at once.
        assert c.pid("n1") == pid
        t_term = c.term("n1")
        got = c.wait_until(lambda: mgr.first("STOPPING", "1"), 5, "STOPPING=1 after SIGTERM")
        assert got[0] - t_term < 1.0, "STOPPING=1 came %.0f ms after SIGTERM" % ((got[0] - t_term) * 1000)
        assert any(s.startswith("stopping") for s in mgr.statuses()), mgr.statuses()
        c.wait_exit("n1", 40)
    finally:
        mgr.close()


# ---------------------------------------------------------------- 2. abstract socket, WATCHDOG_PID


def test_abstract_socket_and_foreign_watchdog_pid(cluster):
    c = cluster
    c.configure(("n1",))
    name = "understudy-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    mgr = Manager(b"\0" + name.encode())
    try:
        # The watchdog is meant for another process: this agent must not think it is watched.
        env = {"NOTIFY_SOCKET": mgr.env_value, "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": str(os.getpid())}
        c.start("n1", env=env)
        c.wait_until(lambda: mgr.first("READY", "1"), 20, "READY=1 on the abstract socket")
        assert registered(c, "n1")
        t0 = time.monotonic()
        c.wait_until(lambda: time.monotonic() - t0 >= 1.0, 5, "1 s of (no) pings")
        assert not mgr.times("WATCHDOG"), "watchdog pings although WATCHDOG_PID is not the agent"
        assert "systemd watchdog" not in c.log_text("n1")
    finally:
        mgr.close()


# ---------------------------------------------------------------- 3. journald log format


def post_services(c, node, text, file):
    q = urllib.parse.urlencode({"file": file})
    status, _, body = c.api(
        node, "/v1/services?%s" % q, "POST", text.encode(), headers={"Content-Type": "text/x-understudy-services"},
        timeout=10,
    )
    assert status == 200, (status, body)
    return status


def test_journal_stream_log_format(cluster):
    c = cluster
    c.configure(("n1",))
    log = c.nodes["n1"].log
    open(log, "a").close()
    st = os.stat(log)
    c.start("n1", env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    c.wait_until(lambda: registered(c, "n1"), 20, "n1 to lead and register")
    # A cause with a line break: the file name is the operator's text, logged as given.
    ini = svc_ini(c, run="exec sleep 1000", standbys=0)
    assert post_services(c, "n1", ini, "first line\nsecond line") == 200
    c.wait_until(lambda: "second line" in c.log_text("n1"), 10, "the apply to be logged")

    lines = c.log_text("n1").splitlines()
    agent_lines = [ln for ln in lines if not ln.startswith("==== test harness")]
    assert agent_lines, lines
    bad = [ln for ln in agent_lines if not re.match(r"^<[3467]>n1: \S", ln)]
    assert not bad, "lines not in the journal format:\n%s" % "\n".join(bad[:10])
    assert any(ln.startswith("<6>n1: agent n1 started") for ln in agent_lines), agent_lines[:5]
    hit = [ln for ln in agent_lines if "first line second line" in ln]
    assert hit and hit[0].startswith("<6>n1: "), "the message with a line break is not one line:\n%s" % "\n".join(
        agent_lines[-10:]
    )


def test_journal_stream_of_another_file_keeps_timestamps(cluster, tmp_path):
    c = cluster
    c.configure(("n1",))
    other = tmp_path / "journal-stand-in"
    other.write_text("")
    st = os.stat(other)
    c.start("n1", env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
    c.wait_until(lambda: registered(c, "n1"), 20, "n1 to lead and register")
    lines = [ln for ln in c.log_text("n1").splitlines() if not ln.startswith("==== test harness")]
    assert lines and all(re.match(r"^\d\d:\d\d:\d\d\.\d\d\d (ERROR|WARN |INFO |DEBUG) n1: ", ln) for ln in lines), lines[:10]
