"""Integration tests of the CLI's local side with the real binary: `check-config` (node configs as
the harness writes them, services files, the same problems as `apply` and `agent` report, nothing
created), help and hints, colour only on a terminal without NO_COLOR."""

import os
import pty
import re
import select
import subprocess

from conftest import BIN


def run(*args, cwd=None, env_extra=None):
    env = dict(os.environ)
    env.pop("UNDERSTUDY_API", None)
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def run_tty(*args, env_extra=None):
    """Run with stdout on a pseudo-terminal; returns (exit status, what the terminal got)."""
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN] + list(args), stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 10)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(30), out.decode(errors="replace")


BAD_SERVICES = """[service web]
run = exec ./web
standby = warm
notify_timeout = 5s

[service Db]
run = x
rise = 2
"""


def test_check_config_node_configs(cluster):
    c = cluster
    c.configure(("n1", "n2", "n3"))
    for name, n in c.nodes.items():
        r = run("check-config", n.conf)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout == "%s: ok (node config: node %s of cluster itest, 3 members)\n" % (n.conf, name)
        # The data_dir does not exist yet: a warning, and check-config does not create it.
        assert "key 'node.data_dir': warning: '%s' does not exist yet" % n.data_dir in r.stderr, r.stderr
        assert not os.path.exists(n.data_dir)
    # A broken node config: check-config lists the same problems as the agent, which refuses to start.
    bad = os.path.join(c.root, "bad.conf")
    with open(bad, "w") as f:
        f.write("[node]\nname = N1\naddress = 127.0.0.1:0\n[cluster]\nname = itest\nprofile = slow\n")
    chk = run("check-config", bad)
    agent = run("agent", "--config", bad)
    assert chk.returncode == 2 and agent.returncode == 2, (chk.stderr, agent.stderr)
    problems = [l for l in chk.stderr.splitlines() if l.startswith(bad + ":")]
    assert len(problems) >= 4, chk.stderr
    assert problems == agent.stderr.splitlines(), (chk.stderr, agent.stderr)
    assert chk.stderr.splitlines()[-1] == "understudy: %s: not valid (node config, %d problems)" % (bad, len(problems))


def test_check_config_services_like_apply(cluster):
    c = cluster
    c.form(("n1",))
    good = c.write_file("[service web]\nrun = %s\nnotify = exec ./hook\nnotify_timeout = 3s\n" % c.service_cmd(), "good.ini")
    r = run("check-config", good)
    assert (r.returncode, r.stdout, r.stderr) == (0, "%s: ok (services file: 1 service: web)\n" % good, "")
    r = run("check-config", "--json", good)
    assert r.returncode == 0 and '"kind": "services"' in r.stdout and '"ok": true' in r.stdout, r.stdout

    c.write_file(BAD_SERVICES, "bad.ini")
    # Relative to the file's directory, so that both name it the same: apply sends the base name.
    chk = run("check-config", "bad.ini", cwd=c.root)
    assert chk.returncode == 2, chk.stderr
    problems = [l for l in chk.stderr.splitlines() if l.startswith("bad.ini:")]
    assert len(problems) >= 3, chk.stderr
    assert any(re.match(r"bad\.ini:3: key 'standby' in \[service web\]: expected 'cold' or 'hot'", p) for p in problems)
    assert any("bad.ini:4: key 'notify_timeout'" in p and "only meaningful with 'notify'" in p for p in problems)
    assert any(p.startswith("bad.ini:6: section '[service Db]'") for p in problems), problems
    applied = c.cli("apply", "bad.ini")
    assert applied.returncode == 1, applied.stderr
    assert [l for l in applied.stderr.splitlines() if l.startswith("bad.ini:")] == problems, (chk.stderr, applied.stderr)
    # check-config asked nobody: the running agent saw no request about it.
    assert c.leader_status()["services"] == []


def test_help_hints_and_colour(cluster):
    c = cluster
    r = run("agent", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: understudy agent --config FILE"), r.stdout
    assert "exit status:" in r.stdout
    r = run("help", "check-config")
    assert r.returncode == 0 and r.stdout.startswith("usage: understudy check-config FILE"), r.stdout
    r = run("stauts")
    assert r.returncode == 2 and 'unknown command "stauts" (did you mean "status"?)' in r.stderr, r.stderr
    assert r.stdout == ""

    c.form(("n1",))
    api = c.nodes["n1"].api
    r = run("--api", api, "--token-file", c.token_file(), "status")  # a pipe, NO_COLOR unset: no colour
    assert r.returncode == 0 and "\033[" not in r.stdout, r.stdout
    rc, out = run_tty("--api", api, "--token-file", c.token_file(), "status")
    assert rc == 0 and "\033[32malive\033[0m" in out, out
    rc, out = run_tty("--api", api, "--token-file", c.token_file(), "status", env_extra={"NO_COLOR": "1"})
    assert rc == 0 and "\033[" not in out and "alive" in out, out


def test_cli_names_the_package_when_libcurl_cannot_be_loaded():
    """The CLI opens libcurl when it starts (the agent, the same program, does without it). With
    both libcurl flavours unloadable (each bind-mounted over by /dev/null in a mount namespace of
    this command only) it says what it needs and which Debian package has it, and fails."""
    libs = []
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    for name in ("libcurl-gnutls.so.4", "libcurl.so.4"):
        m = re.search(r"^\s*%s \(libc6,x86-64\) => (\S+)$" % re.escape(name), out, re.M)
        if m:
            libs.append(os.path.realpath(m.group(1)))
    assert libs, "no libcurl in ldconfig's cache: the CLI could not run at all"
    hide = "".join("mount --bind /dev/null %s && " % lib for lib in libs)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        hide + "exec %s status --api 127.0.0.1:1" % BIN],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r
    assert "cannot load libcurl" in r.stderr and "libcurl3-gnutls" in r.stderr, r.stderr
    # Outside that namespace nothing changed: the same command fails for the address only.
    r = run("status", "--api", "127.0.0.1:1")
    assert r.returncode != 0 and "cannot load libcurl" not in r.stderr, r.stderr
