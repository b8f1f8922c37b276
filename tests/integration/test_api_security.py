"""The API's guard (src/net/api_guard.h) and bounds (src/net/api.h), against real agents on loopback.

- every request needs `Authorization: Bearer TOKEN` (401 + WWW-Authenticate otherwise), except
  GET / (the dashboard, which asks for the token) and GET /metrics unless metrics_auth = yes;
- a change from another Origin is refused (403) and changes nothing; a change needs its
  Content-Type (415); a Host that is no loopback name is refused (DNS rebinding, 403);
- the events of a change name the token and the client's address;
- a token file readable by others, a missing token file, or a non-loopback API without TLS make
  the agent exit 2 saying why;
- request bodies are bounded (413), service logs are streamed;
- 500 idle clients cause no failover, and the API answers the CLI again once they time out.
"""

import json
import os
import re
import socket
import subprocess
import time

from conftest import BIN, api_open, ensure_key, ensure_token

from test_cluster import wait_active, web_ini


def error_of(body):
    try:
        return json.loads(body.decode())["error"]
    except (ValueError, KeyError):
        return body.decode(errors="replace")


def test_token_origin_content_type_and_host(cluster):
    c = cluster
    # Two named tokens: the CLI (first token of the file) is "ops", the second one "token2".
    path = os.path.join(c.root, "api.token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    first, second = os.urandom(32).hex(), os.urandom(24).hex()
    with os.fdopen(fd, "w") as f:
        f.write("# API tokens of the test cluster\nops %s\n\n%s\n" % (first, second))
    c.form(("n1",))
    c.apply(web_ini(c, nodes=("n1",), standbys=0))
    wait_active(c, "n1")

    # 401 without a token, with a wrong one, with a malformed header; 200 with either token.
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}, {"Authorization": "Basic abc"}):
        status, h, body = c.api("n1", "/v1/status", headers=headers, token=False)
        assert status == 401, (headers, status, body)
        assert h["WWW-Authenticate"] and h["WWW-Authenticate"].startswith("Bearer"), h
        assert "token" in error_of(body).lower() or "authorization" in error_of(body).lower(), body
    for tok in (first, second):
        status, _, body = api_open(c.nodes["n1"].api, "/v1/status", token=tok)
        assert status == 200 and json.loads(body)["node"] == "n1", (status, body[:200])
    # The dashboard page and /metrics (metrics_auth is off) need none.
    status, _, body = c.api("n1", "/", token=False)
    assert status == 200 and body.lstrip().lower().startswith(b"<!doctype html>"), status
    status, _, body = c.api("n1", "/metrics", token=False)
    assert status == 200 and b"understudy_" in body, (status, body[:200])

    # A change from another origin is refused and changes nothing.
    origin = {"Origin": "http://evil.example"}
    status, _, body = c.api("n1", "/v1/services/web/pause", "POST", b"", headers=origin)
    assert status == 403 and "origin" in error_of(body).lower(), (status, body)
    # ... and so is one without its Content-Type.
    for ct in ("text/plain", "application/x-www-form-urlencoded"):
        status, _, body = c.api("n1", "/v1/services/web/pause", "POST", b"", headers={"Content-Type": ct})
        assert status == 415 and "application/json" in error_of(body), (ct, status, body)
    status, _, body = c.api(
        "n1", "/v1/services", "POST", b"[service x]\nrun = true\n", headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and "text/x-understudy-services" in error_of(body), (status, body)
    svc = c.service(c.status("n1"), "web")
    assert svc["paused"] is False and [s["name"] for s in c.status("n1")["services"]] == ["web"], svc
    # A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
    status, _, body = c.api("n1", "/v1/status", headers={"Host": "evil.example:%s" % c.nodes["n1"].api.split(":")[1]})
    assert status == 403 and "Host" in error_of(body), (status, body)
    for host in ("localhost", "127.0.0.1", c.nodes["n1"].api):
        status, _, _ = c.api("n1", "/v1/status", headers={"Host": host})
        assert status == 200, host
    # The same origin may change things (the dashboard does).
    status, _, body = c.api(
        "n1", "/v1/services/web/pause?by=web", "POST", b"", headers={"Origin": "http://" + c.nodes["n1"].api}
    )
    assert status in (200, 202), (status, body)

    # The events say which token asked, from where.
    r = c.cli("service", "resume", "web", node="n1")
    assert r.returncode == 0, r.stderr
    status, _, body = c.api("n1", "/v1/events?service=web&limit=256")
    causes = [e["cause"] for e in json.loads(body)["events"]]
    assert "paused by web (token ops from 127.0.0.1)" in causes, causes
    assert "resumed by CLI (token ops from 127.0.0.1)" in causes, causes

    # The CLI without any token is told where to find one.
    env = dict(os.environ, NO_COLOR="1")
    env.pop("UNDERSTUDY_TOKEN_FILE", None)
    r = subprocess.run([BIN, "--api", c.nodes["n1"].api, "status"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1 and "--token-file" in r.stderr, (r.returncode, r.stderr)
    # ... and finds it through --token-file or the node config.
    r = subprocess.run(
        [BIN, "--api", c.nodes["n1"].api, "--token-file", path, "status"], capture_output=True, text=True, timeout=30, env=env
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN, "--config", c.nodes["n1"].conf, "status"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0 and "web" in r.stdout, r.stderr


def test_body_limit_and_streamed_log(cluster):
    c = cluster
    c.form(("n1",))
    run = "for i in $(seq 1 300); do echo line$i; done; exec sleep 600"
    c.apply("[service chatty]\nrun = %s\nstandbys = 0\nstop_timeout = 2s\n" % run)
    # A declared oversize body is refused before it is sent (the client waits for 100-continue, as
    # curl does for large bodies; a client that sends at once may see the connection close first).
    host, port = c.nodes["n1"].api.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"POST /v1/services HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: text/x-understudy-services\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (c.nodes["n1"].api.encode(), c.token.encode(), 1024 * 1024 + 1)
        )
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    def tail():
        status, h, body = c.api("n1", "/v1/services/chatty/log?lines=5")
        return body if status == 200 and body.endswith(b"line300\n") else None

    body = c.wait_until(tail, 20, "the log of chatty to end with line300")
    assert body == b"line296\nline297\nline298\nline299\nline300\n", body
    status, _, body = c.api("n1", "/v1/services/chatty/log?lines=1000")
    assert status == 200 and body.startswith(b"line1\n") and body.count(b"\n") == 300, body[:100]
    status, _, body = c.api("n1", "/v1/services/chatty/log", token=False)
    assert status == 401, status


def test_metrics_auth(cluster):
    c = cluster
    c.form(("n1",), extra_node="metrics_auth = yes")
    status, h, _ = c.api("n1", "/metrics", token=False)
    assert status == 401 and h["WWW-Authenticate"], status
    status, _, body = c.api("n1", "/metrics")
    assert status == 200 and b"understudy_" in body, status


def node_conf(tmp, extra="", token=True, api="127.0.0.1:29291"):
    lines = [
        "[node]",
        "name = n1",
        "address = 127.0.0.1:29191",
        "api = %s" % api,
        "data_dir = %s" % os.path.join(tmp, "data"),
    ]
    if token:
        lines.append("api_token_file = %s" % ensure_token(os.path.join(tmp, "api.token")))
    lines += [extra, "[cluster]", "name = itest", "members = n1=127.0.0.1:29191",
              "key_file = %s" % ensure_key(os.path.join(tmp, "cluster.key"))]
    path = os.path.join(tmp, "n1.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_agent(conf):
    return subprocess.run(
        [BIN, "agent", "--config", conf], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def test_token_file_must_be_private_and_present(tmp_path):
    tmp = str(tmp_path)
    conf = node_conf(tmp)
    os.chmod(os.path.join(tmp, "api.token"), 0o640)
    r = run_agent(conf)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "api_token_file" in r.stderr and "understudy keygen --token" in r.stderr and "chmod 600" in r.stderr, r.stderr
    assert "%s:6:" % conf in r.stderr, r.stderr
    # Malformed: a short token.
    os.unlink(os.path.join(tmp, "api.token"))
    fd = os.open(os.path.join(tmp, "api.token"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# ok\nadmin tooshort\n")
    os.close(fd)
    r = run_agent(conf)
    assert r.returncode == 2 and "api.token:2:" in r.stderr and "keygen --token" in r.stderr, r.stderr
    # Missing key.
    r = run_agent(node_conf(tmp, token=False))
    assert r.returncode == 2 and "missing key 'node.api_token_file'" in r.stderr and "keygen --token" in r.stderr, r.stderr


def test_non_loopback_api_needs_tls_or_insecure(tmp_path):
    tmp = str(tmp_path)
    r = run_agent(node_conf(tmp, api="0.0.0.0:29291"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "key 'node.api'" in r.stderr and "TLS" in r.stderr and "api_insecure" in r.stderr, r.stderr
    r = subprocess.run([BIN, "check-config", node_conf(tmp, api="0.0.0.0:29291", extra="api_tls_cert = /nonexistent")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "api_tls_key" in r.stdout + r.stderr, r.stdout + r.stderr


def test_keygen_token_and_help():
    r = subprocess.run([BIN, "help"], capture_output=True, text=True, timeout=30)
    assert "keygen [--token] FILE" in r.stdout, r.stdout
    r = subprocess.run([BIN, "help", "keygen"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "api_token_file" in r.stdout, r.stdout


def test_slow_clients_cause_no_failover(cluster):
    """500 clients that connect, send half a request and wait: at most 64 connections are
    served (16 per address), the others are closed at once; the served ones are closed after
    the idle timeout (5 s). Meanwhile the cluster keeps its leader and active, and afterwards the
    API answers the CLI."""
    c = cluster
    c.form()
    c.apply(web_ini(c))
    active, epoch, _ = wait_active(c, "n1")
    # The controller moves leadership off the active's node right after a promotion: take the
    # leader once it has settled, so that only the slow clients could move it.
    leader = c.wait_until(lambda: (lambda l: l if l != active else None)(c.leader()), 15, "leadership off the active")
    host, port = c.nodes[leader].api.split(":")
    socks, refused = [], 0
    t0 = time.monotonic()
    try:
        for i in range(500):
            s = socket.socket()
            s.settimeout(0.5)  # bounded: a connect that waits in the backlog counts as refused
            # Many clients: spread over loopback addresses (the per-address limit is 16).
            s.bind(("127.0.%d.%d" % (1 + i // 250, 1 + i % 250), 0))
            try:
                s.connect((host, int(port)))
                s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            except OSError:
                refused += 1
                s.close()
                continue
            socks.append(s)
        opened = time.monotonic() - t0

        def closed_by_server():
            n = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        n += 1
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n

        time.sleep(1.0)
        early = closed_by_server() + refused
        print("slow clients: %d opened in %.1f s, %d refused or closed at once" % (len(socks), opened, early))
        assert early >= 500 - 64 - 16, "at most 64 connections may be kept, %d were closed" % early
        # The served ones time out (5 s idle); then the CLI is answered again.
        c.wait_until(lambda: closed_by_server() + refused == 500, 15, "every idle connection to be closed")
        r = c.cli("status", node=leader)
        assert r.returncode == 0, r.stderr
    finally:
        for s in socks:
            s.close()
    st = c.leader_status()
    assert st["cluster"]["leader"] == leader, st["cluster"]
    s = c.service(st, "web")
    assert s["active"] == active and s["epoch"] == epoch, (active, epoch, s)
    status, _, body = c.api(leader, "/v1/events?service=web&limit=256")
    failovers = [e for e in json.loads(body)["events"] if e["kind"] == "role" and e.get("to") == "active"]
    assert len(failovers) == 1, failovers
    assert re.search(r"leader %s\b" % leader, c.cli("status", node=leader).stdout)


def make_cert(tmp):
    """A self-signed certificate for 127.0.0.1 (openssl), key mode 0600."""
    crt, key = os.path.join(tmp, "api.crt"), os.path.join(tmp, "api.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=understudy-test",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    os.chmod(key, 0o600)
    return crt, key


def test_tls_api_and_cli(cluster):
    c = cluster
    crt, key = make_cert(c.root)
    c.cafile = crt
    c.form(("n1",), extra_node="api_tls_cert = %s\napi_tls_key = %s" % (crt, key))
    api = c.nodes["n1"].api
    # The CLI finds https and the certificate in the node config, or is told with --cacert.
    env = dict(os.environ, NO_COLOR="1")
    env.pop("UNDERSTUDY_TOKEN_FILE", None)
    r = subprocess.run([BIN, "--config", c.nodes["n1"].conf, "status"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0 and "n1" in r.stdout, r.stderr
    r = c.cli("--cacert", crt, "status", api="https://" + api)
    assert r.returncode == 0, r.stderr
    r = c.cli("--cacert", crt, "status")
    assert r.returncode == 0, r.stderr
    # Without the certificate: refused, saying why.
    r = c.cli("status", api="https://" + api)
    assert r.returncode == 1 and "--cacert" in r.stderr, r.stderr
    # Plain http to an https API gets nowhere.
    r = c.cli("status")
    assert r.returncode == 1, (r.stdout, r.stderr)
    # Any TLS client: the token still decides.
    status, _, body = c.api("n1", "/v1/version")
    assert status == 200 and json.loads(body)["node"] == "n1", (status, body)
    status, _, body = c.api("n1", "/v1/version", token=False)
    assert status == 401, (status, body)
