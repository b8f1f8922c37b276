#!/usr/bin/env python3
"""Sample service for the understudy demo and failover bench.

A tiny HTTP server that answers every GET with "NODE epoch EPOCH\n", taken from the environment
understudy gives its instances (UNDERSTUDY_NODE, UNDERSTUDY_EPOCH). It listens on 127.0.0.1 at
BASE + the trailing number of the node name (n1 -> 8081 with the default base 8080), so that
three nodes on one machine do not clash and a client can tell which node answered.

usage: sample_service.py [--base PORT] [--host ADDR]
"""

import argparse
import http.server
import os
import re
import signal
import sys


def node_port(node, base):
    m = re.search(r"(\d+)$", node)
    if not m:
        sys.exit(f"sample_service: node name '{node}' does not end in a number; cannot pick a port")
    return base + int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description="understudy sample HTTP service")
    ap.add_argument("--base", type=int, default=8080, help="port = BASE + node number (8080)")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    node = os.environ.get("UNDERSTUDY_NODE", "")
    epoch = os.environ.get("UNDERSTUDY_EPOCH", "0")
    role = os.environ.get("UNDERSTUDY_ROLE", "?")
    if not node:
        sys.exit("sample_service: UNDERSTUDY_NODE is not set (run me through understudy)")
    port = node_port(node, args.base)
    body = f"{node} epoch {epoch}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            pass  # one line per request would drown the agent logs during the bench

    http.server.HTTPServer.allow_reuse_address = True
    try:
        srv = http.server.HTTPServer((args.host, port), Handler)
    except OSError as e:
        sys.exit(f"sample_service: cannot listen on {args.host}:{port}: {e.strerror}")

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"sample_service: {node} ({role}, epoch {epoch}) listening on {args.host}:{port}",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
