"""The web dashboard (issue 5): the page the agent serves at GET /, driven in Debian's chromium.

test_dashboard_page_is_served_self_contained: GET / answers the embedded web/dashboard.html byte
for byte as text/html; charset=utf-8, with no reference to another host in src= / href= (the
only absolute link, to the leader's dashboard, is built at runtime); /favicon.ico answers 204 and
other unknown paths still 404.

test_dashboard_follows_failover_and_switches_over: a 3-node cluster, one cold-standby service
placed on a follower. tests/web/dashboard.test.mjs (playwright-core) opens the leader's dashboard
once and never reloads it; the line protocol is described there. The test kills -9 the active's
agent and the page must show the new active within 5 s, the dead node, and the promotion event;
the page of the killed agent, open since before the kill, shows "agent unreachable"; an event
cause holding markup is shown as text; a switchover asked from a follower's page shows
the link to the leader's dashboard; on the leader's page Cancel sends nothing and Confirm moves
the service to the chosen standby. Screenshots are kept as test artifacts:
build/test-artifacts/dashboard.png (1366x768, full page, after the failover) and
build/test-artifacts/dashboard-1920.png (1920x1080, after the switchover) and
build/test-artifacts/dashboard-unreachable.png (the killed agent's page).

Nothing is skipped: without chromium, node or tests/web/node_modules the test fails and says so
(scripts/setup.sh, run by every make entry point, installs them).
"""

import os
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import PYTHON, REPO, api_open, assert_no_overlap, format_intervals, read_intervals  # noqa: F401

WEB = os.path.join(REPO, "tests", "web")
SCRIPT = os.path.join(WEB, "dashboard.test.mjs")
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(REPO, "build", "test-artifacts")
PAGE = os.path.join(REPO, "web", "dashboard.html")
XSS = '<img src=x onerror="window.__xss=1">'


def http(api, path, method="GET", body=None, timeout=10, token=None, content_type=None):
    """(status, headers, body bytes) without following anything; with the API token if given."""
    h = {"Content-Type": content_type} if content_type else None
    return api_open(api, path, token=token, method=method, body=body, headers=h, timeout=timeout)


def require_browser():
    """The browser test's tools, or a failure that names what is missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append("%s (Debian package chromium)" % CHROMIUM)
    if not shutil.which("node"):
        missing.append("node (Debian package nodejs)")
    if not os.path.isdir(os.path.join(WEB, "node_modules", "playwright-core")):
        missing.append("tests/web/node_modules/playwright-core (npm ci --prefix tests/web)")
    if missing:
        pytest.fail("the dashboard browser test needs: %s; run scripts/setup.sh as root" % ", ".join(missing), pytrace=False)


class Script:
    """The node script, its stdout read line by line with deadlines, its stderr kept."""

    def __init__(self, args):
        self.proc = subprocess.Popen(
            ["node", SCRIPT] + args,
            cwd=WEB,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.out, self.err = [], []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, False), daemon=True).start()

    def _pump(self, f, keep, q):
        for line in f:
            keep.append(line.rstrip("\n"))
            if q:
                self.lines.put(line.rstrip("\n"))
        if q:
            self.lines.put(None)

    def describe(self):
        return "browser script stdout:\n  %s\nstderr:\n  %s" % ("\n  ".join(self.out), "\n  ".join(self.err[-40:]))

    def expect(self, word, timeout):
        """The next stdout line, which must start with `word`; returns its other fields."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("no %s line from the browser script within %d s\n%s" % (word, timeout, self.describe()), pytrace=False)
        if line is None or not line.startswith(word + " ") and line != word:
            pytest.fail("expected %s from the browser script, got %r\n%s" % (word, line, self.describe()), pytrace=False)
        return line.split()[1:]

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def test_dashboard_page_is_served_self_contained(cluster):
    c = cluster
    c.form(("n1",))
    api = c.nodes["n1"].api
    # The page itself needs no token (it asks for one); it may not be framed, and runs only its
    # own inline script and style.
    status, headers, body = http(api, "/")
    assert status == 200, (status, body[:200])
    csp = headers["Content-Security-Policy"] or ""
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, csp
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp, csp
    assert headers["X-Frame-Options"] == "DENY", headers
    assert headers["Content-Type"] == "text/html; charset=utf-8", headers["Content-Type"]
    with open(PAGE, "rb") as f:
        assert body == f.read(), "GET / does not answer web/dashboard.html as built"
    text = body.decode("utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>")
    external = re.findall(r"""\b(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*""", text, re.I)
    assert not external, "the page refers to other hosts: %s" % external
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text, re.I), "the CSS loads something external"
    assert not re.search(r"<(?:link|iframe|object|embed)\b", text, re.I), "the page loads other documents"
    status, _, body = http(api, "/favicon.ico")
    assert status == 204 and body == b"", (status, body)
    status, _, body = http(api, "/nothing-here")  # only the page itself is open
    assert status == 401, (status, body)
    status, _, body = http(api, "/nothing-here", token=c.token)
    assert status == 404 and b"no such endpoint" in body, (status, body)
    status, _, body = http(api, "/v1/status")
    assert status == 401, (status, body[:200])
    status, _, body = http(api, "/v1/status", token=c.token)
    assert status == 200 and b'"cluster"' in body, (status, body[:200])


def test_dashboard_follows_failover_and_switches_over(cluster):
    require_browser()
    c = cluster
    st = c.form()
    leader = st["cluster"]["leader"]
    x, y = [m for m in ("n1", "n2", "n3") if m != leader]
    # Preference order x, y, leader: active on x, standby y; after x dies y is active, and the
    # leader (whose page the browser shows and which keeps deciding) becomes the standby.
    ini = "\n".join(
        [
            "[service web]",
            "run = %s" % c.service_cmd(),
            "standbys = 1",
            "nodes = %s %s %s" % (x, y, leader),
            "stop_timeout = 2s",
            "",
        ]
    )
    # Applied with a file name holding markup: it lands in an event's cause, which the page must
    # show as text.
    q = urllib.parse.urlencode({"file": "web%s.ini" % XSS, "by": "dashboard-test"})
    status, _, body = http(
        c.nodes[leader].api, "/v1/services?" + q, "POST", ini.encode(), token=c.token,
        content_type="text/x-understudy-services",
    )
    assert status == 200, (status, body)

    def placed():
        s = c.service(c.status(leader), "web")
        return s if s and s["active"] == x and any(i["role"] == "standby" and i["node"] == y for i in s["instances"]) else None

    s = c.wait_until(placed, 20, "web active on %s with standby %s" % (x, y))
    epoch = s["epoch"]
    c.wait_until(lambda: sum(i.count for i in read_intervals(c.overlap_log) if i.node == x) >= 3, 10, "web to run on %s" % x)

    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "dashboard.png")
    for f in (shot, shot[:-4] + "-1920.png", shot[:-4] + "-unreachable.png", shot[:-4] + "-fail.png"):
        if os.path.exists(f):
            os.unlink(f)
    url = "http://%s/" % c.nodes[leader].api
    script = Script(
        [
            "--url",
            url,
            "--killed-url",
            "http://%s/" % c.nodes[x].api,
            "--follower-url",
            "http://%s/" % c.nodes[y].api,
            "--screenshot",
            shot,
            "--service",
            "web",
            "--xss",
            XSS,
            "--token",
            c.token,
        ]
    )
    try:
        script.expect("ESCAPED", 40)
        assert script.expect("ACTIVE", 20) == [x], script.describe()

        c.kill9(x)
        script.send("KILLED")
        new, ms = script.expect("ACTIVE", 10)
        assert new == y, "the page shows %s active after the kill, expected %s\n%s" % (new, y, script.describe())
        print("dashboard: %s shown active %s ms after kill -9 of %s's agent" % (y, ms, x))
        assert int(ms) <= 5000
        (ms,) = script.expect("UNREACHABLE", 10)
        print("dashboard: the page of the killed agent %s shows 'agent unreachable' after %s ms" % (x, ms))
        s = c.service(c.status(leader), "web")
        assert s["active"] == y and s["epoch"] > epoch, s
        node, state = script.expect("NODE", 10)
        assert node == x and state in ("suspect", "dead"), (node, state)
        assert script.expect("EVENT", 10)[0] == y
        script.expect("SHOT", 20)

        assert script.expect("FOLLOWER", 30) == [y], script.describe()
        script.expect("CANCELLED", 30)
        to, ms = script.expect("SWITCHED", 30)
        assert to == leader, (to, leader)
        print("dashboard: switchover %s -> %s shown %s ms after Confirm" % (y, leader, ms))
        s = c.service(c.status(leader), "web")
        assert s["active"] == leader, s
        script.expect("SHOT", 20)
        script.expect("OK", 20)
        script.proc.wait(20)
        assert script.proc.returncode == 0, script.describe()
    finally:
        script.close()
    assert os.path.getsize(shot) > 10000, "screenshot %s is missing or empty" % shot

    # The switchover was recorded as asked by the web page.
    status, _, body = http(c.nodes[leader].api, "/v1/events?service=web&limit=256", token=c.token)
    assert status == 200 and re.search(
        rb"switchover requested by web \(token token1 from 127\.0\.0\.1\) to " + leader.encode(), body
    ), body[-2000:]
    ivs = assert_no_overlap(c.overlap_log)
    assert [i.node for i in ivs] == [x, y, leader], format_intervals(ivs)
