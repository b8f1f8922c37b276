"""chaos_service.py — the service the chaos runs put under understudy (Python standard library only).

  chaos_service.py run SVC LOG ROLEDIR PORT
      While it acts as the active instance, appends "SVC NODE EPOCH T_NS\\n" to LOG every 10 ms (one
      O_APPEND write per line: LOG is the shared receiver, T_NS is CLOCK_MONOTONIC, the clock every
      namespace shares and that the wall-clock faults leave alone) and answers HTTP GETs on PORT with
      "NODE EPOCH" (200); otherwise it answers 503 and writes nothing. Started with
      UNDERSTUDY_ROLE=active (a cold instance, or a hot one started for a promotion) it is active under
      UNDERSTUDY_EPOCH. Started as a hot standby it is active only once a promote hook has told it so
      (through the datagram socket ROLEDIR/SVC-NODE.sock that the process binds when it starts, so a
      process started later never takes up what a hook told an earlier one).
  chaos_service.py hook promote|demote SVC ROLEDIR
      Sends "active EPOCH" / "standby EPOCH" to the running process's socket (retried until it is there,
      at most 5 s): the hot standby's promote/demote.
"""

import os
import socket
import sys
import threading
import time


def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def role_path(roledir, svc, node):
    return os.path.join(roledir, "%s-%s.sock" % (svc, node))


class State:
    def __init__(self, svc, node, roledir):
        self.svc, self.node, self.roledir = svc, node, roledir
        self.start_epoch = int(os.environ.get("UNDERSTUDY_EPOCH", "0") or 0)
        self.active = os.environ.get("UNDERSTUDY_ROLE") == "active"
        self.epoch = self.start_epoch
        self.lock = threading.Lock()

    def listen(self):
        """Takes the hooks' messages: active under a newer epoch on promote, standby when that epoch is
        given up (demote)."""
        path = role_path(self.roledir, self.svc, self.node)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        threading.Thread(target=self._recv, args=(sock,), daemon=True).start()

    def _recv(self, sock):
        while True:
            try:
                role, ep = sock.recv(256).decode().split()
                ep = int(ep)
            except (OSError, ValueError):
                continue
            with self.lock:
                if role == "active" and ep > self.epoch:
                    self.active, self.epoch = True, ep
                elif role == "standby" and ep == self.epoch:
                    self.active = False

    def now(self):
        with self.lock:
            return self.active, self.epoch


def serve(state, port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1024)

    def handle(c):
        try:
            c.settimeout(5)
            got = b""
            for _ in range(64):
                data = c.recv(4096)
                if not data:
                    return
                got += data
                if b"\r\n\r\n" in got:
                    break
            active, epoch = state.now()
            if active:
                body, status = ("%s %d\n" % (state.node, epoch)).encode(), b"200 OK"
            else:
                body, status = b"standby\n", b"503 Service Unavailable"
            c.sendall(
                b"HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def run(svc, log, roledir, port):
    node = os.environ.get("UNDERSTUDY_NODE", "?")
    state = State(svc, node, roledir)
    state.listen()
    threading.Thread(target=serve, args=(state, port), daemon=True).start()
    deadline = time.monotonic() + 4 * 3600  # bounds a leak; the agent or the bed ends it long before
    while time.monotonic() < deadline:
        active, epoch = state.now()
        if active:
            append(log, "%s %s %d %d\n" % (svc, node, epoch, time.monotonic_ns()))
        time.sleep(0.01)
    return 0


def hook(kind, svc, roledir):
    node = os.environ.get("UNDERSTUDY_NODE", "?")
    epoch = int(os.environ.get("UNDERSTUDY_EPOCH", "0") or 0)
    msg = ("%s %d" % ("active" if kind == "promote" else "standby", epoch)).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock.sendto(msg, role_path(roledir, svc, node))
            return 0
        except OSError as e:  # not bound yet (the process is starting) or a dead process's socket
            if kind == "demote":
                return 0  # no process: nothing acts, nothing to demote
            if time.monotonic() > deadline:
                sys.stderr.write("chaos_service hook %s: %s\n" % (kind, e))
                return 1
            time.sleep(0.005)


def main(argv):
    if len(argv) == 6 and argv[1] == "run":
        return run(argv[2], argv[3], argv[4], int(argv[5]))
    if len(argv) == 5 and argv[1] == "hook" and argv[2] in ("promote", "demote"):
        return hook(argv[2], argv[3], argv[4])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
