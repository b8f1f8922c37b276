"""Forged, replayed and modified cluster datagrams have no effect (issue 9), against real agents.

A 3-node cluster runs one service. From a non-member socket on loopback the test sends every
kind of datagram an attacker could: the plain JSON that used to make the leader believe n1
restarted, datagrams sealed with another key, real datagrams captured on the loopback interface
and replayed verbatim, captures with one flipped byte, another protocol version, and datagrams
sealed with the right key by a sender that is no member. Each is dropped and counted under its
reason in understudy_cluster_messages_rejected_total, and nothing changes: same leader and term,
same active and epoch, every node alive, no new event, no agent exits.

The sealing here is an independent implementation of src/core/wire.h's envelope (PyNaCl's
XChaCha20-Poly1305): a positive control (a sealed datagram from a non-member is counted as
unknown_sender, not auth) shows that it matches.
"""

import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.request

import nacl.bindings
import pytest

from conftest import BIN, assert_no_overlap

REASONS = ("auth", "replay", "malformed", "unknown_sender", "version")
CHAN_AGENT, CHAN_GUARDIAN = 0, 1


def key_of(path):
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    return bytes.fromhex(lines[0])


def seal(key, cluster, sender, payload, chan=CHAN_AGENT, inc=1, seq=1, to_inc=0, major=1):
    kid = hashlib.blake2b(b"understudy key id v1", digest_size=16, key=key).digest()[:4]
    nonce = os.urandom(24)
    head = b"us" + bytes([major, 0]) + kid + nonce
    inner = bytes([chan, len(sender)]) + sender.encode() + struct.pack(">QQQ", inc, seq, to_inc) + payload
    return head + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(inner, head + cluster.encode(), nonce, key)


def hostport(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def rejected(c, node):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://%s/metrics" % c.nodes[node].api, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for reason in REASONS:
        m = re.search(r'^understudy_cluster_messages_rejected_total\{reason="%s"\} (\S+)$' % reason, text, re.M)
        assert m, "no rejected counter for %s on %s" % (reason, node)
        out[reason] = float(m.group(1))
    return out


def capture(port, count, seconds):
    """Up to `count` UDP payloads sent to 127.0.0.1:port, sniffed on lo for at most `seconds`."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    try:
        s.bind(("lo", 0))
        s.settimeout(0.2)
        out, deadline = [], time.monotonic() + seconds
        while len(out) < count and time.monotonic() < deadline:
            try:
                frame, info = s.recvfrom(70000)
            except socket.timeout:
                continue
            if info[2] == socket.PACKET_OUTGOING:
                continue  # lo shows each packet twice
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            udp = ip[ihl:]
            if struct.unpack(">H", udp[2:4])[0] == port:
                out.append(bytes(udp[8:]))
        return out
    finally:
        s.close()


def snapshot(c, ld):
    st = c.status(ld)
    svc = c.service(st, "web")
    nodes = {n["name"]: (n["state"], n.get("address"), n.get("api")) for n in st["nodes"]}
    return {
        "leader": st["cluster"]["leader"],
        "term": st["cluster"]["term"],
        "active": svc["active"],
        "epoch": svc["epoch"],
        "nodes": nodes,
    }


def events(c, node):
    r = c.cli("events", "--json", "--limit", "256", node=node)
    assert r.returncode == 0, r.stderr
    import json

    return [e["seq"] for e in json.loads(r.stdout)]


def form_with_web(c):
    """A 3-node cluster running `web` (cold standby); returns web's entry once it is active and
    leadership has moved off the active's node (the controller moves it right after a placement),
    so that the leader the caller takes next stays."""
    c.form()
    c.apply("[service web]\nrun = %s\nstandbys = 1\nstandby = cold\nnodes = n1 n2 n3\n" % c.service_cmd())

    def placed():
        s = c.service(c.leader_status(), "web")
        return s if s and s["active"] and s["epoch"] else None

    svc = c.wait_until(placed, 30, "web active")
    c.wait_until(lambda: c.leader() != svc["active"], 15, "leadership off the active")
    return svc


def test_forged_and_replayed_datagrams_change_nothing(cluster):
    c = cluster
    c.form()
    c.apply("[service web]\nrun = %s\nstandbys = 1\nstandby = cold\nnodes = n1 n2 n3\n" % c.service_cmd())

    def placed():
        st = c.leader_status()
        s = c.service(st, "web")
        if not s or not s["active"]:
            return None
        states = sorted((i["role"], i["state"]) for i in s["instances"])
        if ("active", "active") in states and ("standby", "standby") in states:
            return st
        return None

    st = c.wait_until(placed, 30, "web active with its standby")
    active = c.service(st, "web")["active"]
    # Leadership moves off the active's node right after a placement: take it once settled.
    ld = c.wait_until(lambda: (lambda l: l if l != active else None)(c.leader()), 15, "leadership off the active")
    before = snapshot(c, ld)
    seen_events = events(c, ld)
    key = key_of(c.key_file())
    cluster_name = "itest"
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    targets = list(c.nodes)
    counts0 = {n: rejected(c, n) for n in targets}
    sent = {n: dict.fromkeys(REASONS, 0) for n in targets}

    def send(node, data, reason):
        attacker.sendto(data, hostport(c.nodes[node].address))
        sent[node][reason] += 1

    # Real traffic to the leader, captured on lo, before anything else is sent to it.
    caps = capture(hostport(c.nodes[ld].address)[1], 40, 5.0)
    assert len(caps) >= 10, "captured only %d datagrams to the leader" % len(caps)

    for n in targets:
        # The datagram that once made the leader believe n1 restarted, and its friends.
        for other in targets:
            send(n, b'{"t":"ping","from":"%s","inc":"12345","addr":"127.0.0.1:9"}' % other.encode(), "malformed")
        send(n, b'{"t":"pong","from":"%s","grant":true,"removed":true,"seq":"1"}' % ld.encode(), "malformed")
        send(n, b'{"t":"leave","from":"n1"}', "malformed")
        send(n, b'{"t":"fenced","node":"n1","inc":"1","fenced":[{"service":"web","epoch":1}],"agent":"dead"}', "malformed")
        send(n, b"garbage" * 10, "malformed")
        # Sealed with a key that is not the cluster's.
        wrong = os.urandom(32)
        for t in (b'{"t":"ping","seq":"1","term":"1","lease":true}', b'{"t":"leave"}'):
            send(n, seal(wrong, cluster_name, "n1", t, inc=2**62, seq=1), "auth")
        # The right key, another cluster's name; another protocol version.
        send(n, seal(key, "other", "n1", b'{"t":"leave"}', inc=2**62), "auth")
        send(n, seal(key, cluster_name, "n1", b'{"t":"leave"}', inc=2**62, major=2), "version")
        # The right key, a sender that is not a member (positive control of the sealing).
        send(n, seal(key, cluster_name, "evil", b'{"t":"ping","seq":"1","term":"1","lease":true}', inc=5), "unknown_sender")
        send(n, seal(key, cluster_name, "evil", b'{"t":"leave"}', inc=5), "unknown_sender")

    # Captures replayed verbatim, and with one flipped byte, to the leader.
    for d in caps:
        send(ld, d, "replay")
    for i, d in enumerate(caps):
        f = bytearray(d)
        f[40 + i % max(1, len(d) - 40)] ^= 0x20
        send(ld, bytes(f), "auth")

    def counted():
        now = {n: rejected(c, n) for n in targets}
        short = {
            n: {r: (now[n][r] - counts0[n][r], sent[n][r]) for r in REASONS if now[n][r] - counts0[n][r] < sent[n][r]}
            for n in targets
        }
        return now if not any(short.values()) else None

    counts = c.wait_until(counted, 10, "every forged datagram counted under its reason")
    # Nothing else was rejected for another reason than the one it was sent for (honest traffic
    # may add replays: late duplicates are normal, but no auth or malformed ones).
    for n in targets:
        for r in ("auth", "malformed", "unknown_sender", "version"):
            assert counts[n][r] - counts0[n][r] == sent[n][r], (n, r, counts[n][r] - counts0[n][r], sent[n][r])

    # Give any effect time to show, then check that there was none.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert snapshot(c, ld) == before
        for n in targets:
            assert c.running(n), "%s exited" % n
        time.sleep(0.2)
    assert events(c, ld) == seen_events
    assert_no_overlap(c.overlap_log)


def write_keys(path, *keys):
    with open(path + ".new", "w") as f:
        f.write("".join(k.hex() + "\n" for k in keys))
    os.chmod(path + ".new", 0o600)
    os.rename(path + ".new", path)


def test_key_rotation_without_failover(cluster):
    """The documented procedure (docs/operations.md): [old, new] everywhere, then [new, old], then
    [new], each step followed by SIGHUP node by node. No role moves, no node is ever suspected,
    nothing is rejected as forged; afterwards the old key opens nothing and a new leader, a new
    decision and the guardian's announcement all work under the new key."""
    c = cluster
    svc = form_with_web(c)
    ld = c.leader()
    before = snapshot(c, ld)
    seen_events = events(c, ld)
    counts0 = {n: rejected(c, n) for n in c.nodes}
    path = c.key_file()
    old, new = key_of(path), os.urandom(32)

    for i, step in enumerate(((old, new), (new, old), (new,))):
        write_keys(path, *step)
        for n in c.nodes:
            os.kill(c.pid(n), signal.SIGHUP)
            c.wait_until(lambda: c.log_text(n).count("reloaded the cluster key file") == i + 1, 10,
                         "%s to reload its key (step %d)" % (n, i + 1))
            # Every node stays alive in every node's view while the keys change.
            for m in c.nodes:
                st = c.status(m)
                assert all(x["state"] == "alive" for x in st["nodes"]), (step, m, st["nodes"])
    assert snapshot(c, ld) == before
    assert events(c, ld) == seen_events
    for n in c.nodes:
        now = rejected(c, n)
        assert now["auth"] == counts0[n]["auth"] and now["malformed"] == counts0[n]["malformed"], (n, now)

    # The old key opens nothing any more.
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.sendto(seal(old, "itest", "n1", b'{"t":"leave"}', inc=2**62), hostport(c.nodes[ld].address))
    c.wait_until(lambda: rejected(c, ld)["auth"] == counts0[ld]["auth"] + 1, 10, "the old key refused")

    # A failover under the new key: the guardian's announcement is sealed with it too.
    active = svc["active"]
    c.kill9(active)
    others = [n for n in c.nodes if n != active]

    def moved():
        s = c.service(c.status(others[0]), "web")
        return s if s["active"] in others and s["epoch"] > before["epoch"] else None

    c.wait_until(moved, 30, "web to move off the killed %s" % active)
    r = c.cli("events", "--json", "--node", active, node=others[0])
    assert "guardian on %s reports that its agent died" % active in r.stdout, r.stdout
    # The killed node comes back: new Raft connections, handshaken with the new key only.
    c.wait_exit(active, 10)
    c.restart(active)

    def back():
        st = c.status(others[0])
        return st if all(x["state"] == "alive" for x in st["nodes"]) and len(st["nodes"]) == 3 else None

    c.wait_until(back, 30, "%s back in the cluster under the new key" % active)
    c.wait_until(lambda: c.status(active)["cluster"]["has_quorum"], 30, "%s to see the leader" % active)
    for n in others:
        assert rejected(c, n)["auth"] == counts0[n]["auth"] + (1 if n == ld else 0), n
    assert_no_overlap(c.overlap_log)


FLOOD_RATE = 50000  # datagrams per second, the figure
FLOOD_SECONDS = 10


def flood(address, packets, rate, seconds):
    """Send `packets` round robin to address at about `rate` per second for `seconds` (bounded by
    both count and time); returns how many were sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    dest = hostport(address)
    sent, t0 = 0, time.monotonic()
    end, batch = t0 + seconds, max(1, rate // 200)
    limit = rate * seconds
    while sent < limit:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate)
        if sent >= due:
            time.sleep(0.002)
            continue
        for _ in range(min(batch, due - sent)):
            try:
                s.sendto(packets[sent % len(packets)], dest)
            except BlockingIOError:
                pass
            sent += 1
    s.close()
    return sent


def test_datagram_flood_costs_no_failover(cluster):
    """50 000 forged datagrams a second for 10 s at the active node's cluster port (half of them
    carrying the cluster's real key id, so that each costs a full tag check): no failover, the
    active keeps its lease throughout (it never demotes itself), every node stays alive."""
    c = cluster
    svc = form_with_web(c)
    ld = c.leader()
    before = snapshot(c, ld)
    seen_events = events(c, ld)
    active = svc["active"]
    key = key_of(c.key_file())
    real_id = seal(key, "itest", "n1", b"{}")[4:8]
    packets = []
    for i in range(64):
        d = bytearray(os.urandom(120 + i))
        d[0:4] = b"us\x01\x00"
        if i % 2:
            d[4:8] = real_id  # a full Poly1305 check each
        packets.append(bytes(d))
    auth0 = rejected(c, active)["auth"]
    n = flood(c.nodes[active].address, packets, FLOOD_RATE, FLOOD_SECONDS)
    assert n >= FLOOD_RATE * FLOOD_SECONDS * 0.5, "the flood sent only %d datagrams" % n
    got = rejected(c, active)["auth"] - auth0
    print("flood: %d datagrams sent in %d s, %d read and rejected (auth) by %s" % (n, FLOOD_SECONDS, got, active))
    assert got >= n * 0.5, "only %d of %d forged datagrams were read and rejected" % (got, n)
    assert snapshot(c, ld) == before
    assert events(c, ld) == seen_events
    log = c.log_text(active)
    assert "lease about to run out" not in log, log[-3000:]
    assert_no_overlap(c.overlap_log)


def test_cluster_key_must_be_private_present_and_well_formed(tmp_path):
    """The agent exits 2 naming the problem and `understudy keygen` (and starts nothing)."""
    from test_api_security import node_conf, run_agent

    tmp = str(tmp_path)
    conf = node_conf(tmp)
    key = os.path.join(tmp, "cluster.key")
    os.chmod(key, 0o644)
    r = run_agent(conf)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "key 'cluster.key_file'" in r.stderr and "chmod 600" in r.stderr and "understudy keygen" in r.stderr, r.stderr
    os.unlink(key)
    r = run_agent(conf)
    assert r.returncode == 2 and "No such file" in r.stderr and "understudy keygen" in r.stderr, r.stderr
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# a key\nnot-a-key\n")
    os.close(fd)
    r = run_agent(conf)
    assert r.returncode == 2 and "cluster.key:2:" in r.stderr and "understudy keygen" in r.stderr, r.stderr
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write("\n".join(line for line in text.splitlines() if not line.startswith("key_file")) + "\n")
    r = run_agent(conf)
    assert r.returncode == 2 and "missing key 'cluster.key_file'" in r.stderr and "understudy keygen" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(tmp, "data", "raft")), "a refused agent started Raft"
    # keygen never replaces a file.
    r = subprocess.run([BIN, "keygen", key], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "exists already" in r.stderr, (r.returncode, r.stderr)


def unseal(key, cluster, data):
    """The inverse of seal: (chan, sender, inc, seq, to_inc, payload), or None if it does not open."""
    head, nonce = data[:32], data[8:32]
    try:
        inner = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(data[32:], head + cluster.encode(), nonce, key)
    except Exception:  # noqa: BLE001
        return None
    n = inner[1]
    inc, seq, to_inc = struct.unpack(">QQQ", inner[2 + n:2 + n + 24])
    return inner[0], inner[2:2 + n].decode(), inc, seq, to_inc, inner[2 + n + 24:]


def test_reports_in_the_form_each_peer_reads(cluster):
    """Pings carry instance reports in the brief form ("rp", msg.h) only to a peer whose own pings
    say it reads them ("rb"); a peer that does not say so (the version before, during a rolling
    upgrade, refuses "rp" as malformed) gets the full form. The peer here is the test itself,
    speaking for a member whose agent it killed, on that member's address."""
    import json

    c = cluster
    svc = form_with_web(c)
    active, ld = svc["active"], c.leader()
    peer = next(n for n in c.nodes if n not in (active, ld))
    c.kill9(peer)
    c.wait_exit(peer, 10)
    key = key_of(c.key_file())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                s.bind(hostport(c.nodes[peer].address))
                break
            except OSError:
                assert time.monotonic() < deadline, "the killed agent's UDP port stayed taken"
                time.sleep(0.05)
        s.settimeout(0.02)
        inc, seq = 2**62, 0  # a new incarnation of the peer (above any real one), as after a restart

        def exchange(seconds, extra):
            """Ping the active's agent every 50 ms as `peer` for `seconds`; its pings to us."""
            nonlocal seq
            got, active_inc, end, next_ping = [], 0, time.monotonic() + seconds, 0.0
            while time.monotonic() < end:
                if active_inc and time.monotonic() >= next_ping:
                    seq += 1
                    body = dict({"t": "ping", "seq": str(seq), "term": "1", "lease": False}, **extra)
                    s.sendto(seal(key, "itest", peer, json.dumps(body).encode(), inc=inc, seq=seq, to_inc=active_inc),
                             hostport(c.nodes[active].address))
                    next_ping = time.monotonic() + 0.05
                try:
                    data, _ = s.recvfrom(70000)
                except socket.timeout:
                    continue
                m = unseal(key, "itest", data)
                if not m or m[1] != active or m[0] != CHAN_AGENT:
                    continue
                active_inc = m[2]
                msg = json.loads(m[5])
                if msg.get("t") == "ping":
                    got.append(msg)
            return got

        # Our pings do not say "rb": every report it sends us is in the full form.
        older = exchange(1.5, {})
        with_reports = [m for m in older if "rep" in m or "rp" in m]
        assert with_reports, "no ping with reports from %s (%d pings: %s; rejected %s)" % (
            active, len(older), older[-3:], rejected(c, active))
        assert all("rp" not in m for m in with_reports), "brief reports to a peer that did not ask"
        assert with_reports[-1]["rep"]["web"]["state"] >= 1 and with_reports[-1]["rep"]["web"]["epoch"] == str(svc["epoch"])
        assert all(m.get("rb") is True for m in older)  # and it says that it reads them itself
        # Now we say "rb" (with our reports, empty): once it heard that, brief reports only.
        newer = exchange(1.5, {"rb": True, "rep": {}})
        with_reports = [m for m in newer if "rep" in m or "rp" in m]
        assert with_reports, "no ping with reports from %s after rb" % active
        tail = with_reports[len(with_reports) // 2:]
        assert all("rp" in m and "rep" not in m for m in tail), "full reports after the peer said rb"
        web = tail[-1]["rp"]["web"]
        assert web["e"] == str(svc["epoch"]) and web["s"] >= 1 and "state" not in web
        assert "x" not in web and "rf" not in web  # defaults left out
    finally:
        s.close()
