"""Integration tests of least privilege, logs and durable revocations (issue 9): real agents.

1. `user = nobody` with `env` lines: the service process runs as nobody (/proc/PID/status), its
   environment is exactly PATH, LANG, HOME/USER/LOGNAME, the service's env and UNDERSTUDY_* (a
   variable of the test harness given to the agent does not reach it), and the promote hook runs
   as nobody too (it writes its ids to the service log, which the agent opened for it).
2. a service naming a user that does not exist is refused with the cause in `status --json` and
   in the events; the agent keeps running.
3. log rotation: a chatty service with log_max = 4K, log_keep = 2 ends up with web.log, web.log.1
   and web.log.2 of about log_max each, and never a web.log.3.
4. an agent whose data_dir file system (a small tmpfs) is full when it must save a revocation
   logs the error and keeps running; the tmpfs is unmounted whatever happens. Needs root.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, children_of, proc_environ
from test_health import events, fmt_events, svc_ini, wait_active

SECRET = "US_HARNESS_SECRET"


def status_json(c, node=None):
    r = c.cli("status", "--json", node=node)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def proc_ids(pid):
    """(uid, gid, groups) of a process from /proc/PID/status."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = [int(x) for x in v.split()]
    return ids["Uid"], ids["Gid"], ids["Groups"]


def nobody_ids():
    import grp
    import pwd

    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid, pw.pw_dir, grp.getgrgid(pw.pw_gid).gr_name


def test_service_and_hook_run_as_user_with_clean_environment(cluster, monkeypatch):
    c = cluster
    monkeypatch.setenv(SECRET, "must-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    c.form(("n1",))
    uid, gid, home, _ = nobody_ids()
    c.apply(
        svc_ini(
            c,
            run="exec sleep 300",
            promote='echo "promote-hook uid=$(id -u) gid=$(id -g) user=$USER"',
            user="nobody",
            env='GREETING="hello world" APP_MODE=test\nenv = EMPTY=',  # two env lines add up
        )
    )
    node, epoch, st = wait_active(c)
    pid = c.wait_until(
        lambda: c.instances(c.status(node), "web")[node]["pid"], 20, "the pid of the active instance"
    )
    u, g, groups = proc_ids(pid)
    assert u == [uid] * 4, u
    assert g == [gid] * 4, g
    assert groups == [gid], groups

    # /proc/PID/environ reads empty for a moment while /bin/sh execs sleep (the new mm has no
    # environment yet): wait for it to be there.
    env = c.wait_until(lambda: proc_environ(pid), 10, "the environment of the active instance")
    assert SECRET not in env, env
    n = c.nodes[node]
    # /bin/sh itself exports PWD (the agent's working directory): not from the agent's environment.
    assert env.pop("PWD", c.root) == c.root, env
    assert env == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "USER": "nobody",
        "LOGNAME": "nobody",
        "GREETING": "hello world",
        "APP_MODE": "test",
        "EMPTY": "",
        "UNDERSTUDY_SERVICE": "web",
        "UNDERSTUDY_NODE": node,
        "UNDERSTUDY_ROLE": "active",
        "UNDERSTUDY_EPOCH": str(epoch),
        "UNDERSTUDY_DATA_DIR": n.data_dir,
        "UNDERSTUDY_ACTIVE_NODE": node,
        "UNDERSTUDY_ACTIVE_HOST": n.address.rsplit(":", 1)[0],
        "UNDERSTUDY_ACTIVE_EPOCH": str(epoch),
        "UNDERSTUDY_STANDBYS": "",
    }, env

    log = os.path.join(n.data_dir, "logs", "web.log")
    c.wait_until(
        lambda: "promote-hook uid=%d gid=%d user=nobody" % (uid, gid) in open(log).read(),
        10,
        "the promote hook's line in %s" % log,
    )
    st = status_json(c, node)
    svc = [s for s in st["services"] if s["name"] == "web"][0]
    assert svc["active"] == node


def test_missing_user_is_refused_with_cause(cluster):
    c = cluster
    c.form(("n1",))
    c.apply(svc_ini(c, run="exec sleep 300", user="no-such-user-zz"))
    want = "user 'no-such-user-zz' does not exist on n1"

    def refused():
        st = status_json(c, "n1")
        svc = [s for s in st["services"] if s["name"] == "web"][0]
        inst = {i["node"]: i for i in svc["instances"]}.get("n1")
        if inst and inst["cause"] and want in inst["cause"] and inst["role"] == "failed":
            return inst
        return None

    inst = c.wait_until(refused, 20, "n1 to refuse web with the cause")
    assert inst["pid"] is None
    evs = c.wait_until(
        lambda: [e for e in events(c) if want in (e.get("cause") or "")], 20, "an event with the cause"
    )
    assert evs, fmt_events(events(c))
    assert c.running("n1")
    assert want in c.log_text("n1")
    # Nothing of the service runs anywhere.
    assert not c.service_processes("web")


CHATTY = (
    "import sys, time\n"
    "for i in range(100000):\n"
    "    sys.stdout.write('line %06d ' % i + 'x' * 90 + '\\n'); sys.stdout.flush(); time.sleep(0.01)\n"
)


def test_logs_rotate_by_size(cluster):
    c = cluster
    c.form(("n1",))
    script = os.path.join(c.root, "chatty.py")
    with open(script, "w") as f:
        f.write(CHATTY)
    c.apply(svc_ini(c, run="exec %s -u %s" % (PYTHON, script), log_max="4K", log_keep="2"))
    wait_active(c)
    logs = os.path.join(c.nodes["n1"].data_dir, "logs")
    base = os.path.join(logs, "web.log")
    c.wait_until(lambda: os.path.exists(base + ".2"), 30, "web.log.2 to appear")
    # Let a few more rotations happen, then look.
    first = os.stat(base + ".2").st_ino
    c.wait_until(lambda: os.stat(base + ".2").st_ino != first, 30, "another rotation")
    names = sorted(x for x in os.listdir(logs) if x.startswith("web.log"))
    assert names == ["web.log", "web.log.1", "web.log.2"], names
    # About log_max each: rotated within a second of passing 4 KiB (~10 KiB/s of output).
    for name in ("web.log.1", "web.log.2"):
        size = os.path.getsize(os.path.join(logs, name))
        assert 4096 < size <= 4096 + 30000, (name, size)
    # The rotated files hold whole consecutive runs of lines, oldest in .2.
    def numbers(name):
        return [int(l.split()[1]) for l in open(os.path.join(logs, name)) if l.startswith("line ")]

    n2, n1 = numbers("web.log.2"), numbers("web.log.1")
    assert n2 and n1 and n2[-1] < n1[0], (n2[-3:], n1[:3])
    assert "rotated %s" % base in c.log_text("n1")


def test_full_data_dir_revocation_not_saved_agent_keeps_running(cluster, request):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    c = cluster
    c.configure(("n1", "n2", "n3"))
    n1 = c.nodes["n1"]
    os.makedirs(n1.data_dir, mode=0o700, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", n1.data_dir],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.strip())
    mounted = [True]

    def unmount():
        if not mounted[0]:
            return
        # Agents first (their open files keep the mount busy), then the file system.
        problems = c.cleanup()
        if subprocess.run(["umount", n1.data_dir]).returncode != 0:
            subprocess.run(["umount", "-l", n1.data_dir])
        mounted[0] = False
        assert not problems, "\n".join(problems)

    request.addfinalizer(unmount)
    c.start_all()
    c.wait_until(lambda: c.status("n1")["cluster"]["has_quorum"], 30, "quorum")
    c.apply(svc_ini(c, run="exec sleep 300", nodes="n2 n3"), node="n2")
    node, epoch, _ = wait_active(c)
    assert node == "n2"
    # Fill n1's data_dir file system.
    fill = os.path.join(n1.data_dir, "fill")
    with open(fill, "wb") as f:
        block = b"\0" * 65536
        for _ in range(1024):  # bounded: 64 MiB > 16 MiB
            try:
                f.write(block)
                f.flush()
            except OSError:
                break
    st = os.statvfs(n1.data_dir)
    assert st.f_bavail * st.f_frsize < 65536, "the tmpfs is not full"
    # Cut the active off, its guardian too (else the guardian's fencing report moves the role at
    # once): the voters (n1 among them) then revoke its lease and must save that.
    guardian = [p for p, st in children_of(c.pid("n2")) if st[4] == "us-guardian"]
    assert len(guardian) == 1, guardian
    os.kill(guardian[0], signal.SIGSTOP)

    def cont_guardian():
        try:
            os.kill(guardian[0], signal.SIGCONT)
        except ProcessLookupError:
            pass

    request.addfinalizer(cont_guardian)
    c.stop("n2")
    c.wait_until(lambda: "revocations not saved" in c.log_text("n1"), 30, "n1 to log that it could not save")
    text = c.log_text("n1")
    assert "No space left on device" in text[text.index("revocations not saved") :], text[-3000:]
    assert not os.path.exists(os.path.join(n1.data_dir, "revoked.tmp"))
    c.cont("n2")
    cont_guardian()
    # n1 keeps running and answering.
    time.sleep(1.0)
    assert c.running("n1"), c.log_tail("n1")
    c.wait_until(lambda: c.status("n1")["cluster"]["name"], 10, "n1 to answer")
    # The role moved to n3 all the same (n3's revocation and n1's in-memory one count).
    wait_active(c, not_node="n2", min_epoch=epoch + 1)
    os.unlink(fill)
