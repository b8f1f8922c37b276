"""Test service for the health-check and self-healing integration tests (standard library only).

  health_service.py --dir DIR (--port PORT | --base BASE) [--log LOG]
      An HTTP server on 127.0.0.1:PORT, or on BASE + the trailing number of UNDERSTUDY_NODE
      (n1 -> BASE + 1) when instances of several nodes run at once (hot standbys):
        GET /healthz  200 "ok", or 503 "sick" while DIR/sick-NODE or DIR/sick-all exists;
        GET /         "NODE epoch EPOCH".
      With --log it also appends "NODE EPOCH TIME_NS" to LOG every 10 ms, like
      overlap_service.py run (conftest.assert_no_overlap reads it). Use --log only where every
      running instance acts, i.e. cold standbys: a hot standby runs without acting.
      SIGTERM ends it at once (os._exit), so no line is written after the agent saw it stop.
"""

import argparse
import http.server
import os
import re
import signal
import sys
import threading
import time


def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser(description="understudy health-check test service")
    ap.add_argument("--dir", required=True, help="where sick-NODE / sick-all files are looked for")
    ap.add_argument("--port", type=int, help="fixed port (one instance at a time)")
    ap.add_argument("--base", type=int, help="port = BASE + node number")
    ap.add_argument("--log", help="overlap log to append to every 10 ms")
    args = ap.parse_args()

    node = os.environ.get("UNDERSTUDY_NODE", "")
    epoch = os.environ.get("UNDERSTUDY_EPOCH", "0")
    if not node:
        sys.exit("health_service: UNDERSTUDY_NODE is not set (run me through understudy)")
    if args.port:
        port = args.port
    else:
        m = re.search(r"(\d+)$", node)
        if args.base is None or not m:
            sys.exit("health_service: need --port, or --base and a node name ending in a number")
        port = args.base + int(m.group(1))
    sick_files = (os.path.join(args.dir, "sick-" + node), os.path.join(args.dir, "sick-all"))
    body = ("%s epoch %s\n" % (node, epoch)).encode()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] == "/healthz":
                sick = any(os.path.exists(f) for f in sick_files)
                code, text = (503, b"sick\n") if sick else (200, b"ok\n")
            else:
                code, text = 200, body
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, fmt, *a):
            pass

    http.server.HTTPServer.allow_reuse_address = True
    try:
        srv = http.server.HTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        sys.exit("health_service: cannot listen on 127.0.0.1:%d: %s" % (port, e.strerror))

    if args.log:

        def write_log():
            while True:
                append(args.log, "%s %s %d\n" % (node, epoch, time.time_ns()))
                time.sleep(0.01)

        threading.Thread(target=write_log, daemon=True).start()
    print("health_service: %s (epoch %s) on 127.0.0.1:%d" % (node, epoch, port), file=sys.stderr, flush=True)
    srv.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
