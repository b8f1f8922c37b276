#!/usr/bin/env python3
"""Hot-standby HTTP service for the service-crash bench (bench/service-crash).

Every instance runs and listens, standby or not; only a promoted one serves. It listens on
127.0.0.1 at BASE + the trailing number of the node name (n2 -> 17482 with --base 17480) and
answers every GET with
    200 "NODE epoch E\n"   while it is the active instance, E = the epoch it was promoted under,
    503 "NODE standby\n"   otherwise.

"Active" is decided per request from the file $UNDERSTUDY_DATA_DIR/$UNDERSTUDY_SERVICE.active,
which understudy's hooks maintain:
    promote = echo $UNDERSTUDY_EPOCH > $UNDERSTUDY_DATA_DIR/web.active
    demote  = rm -f $UNDERSTUDY_DATA_DIR/web.active
The file only counts when it holds a whole line "E\n" (echo writes it with one write(), so a
reader sees either nothing or all of it) and E >= S, the epoch current when this process was
started (its UNDERSTUDY_EPOCH). A file left behind by an earlier process that was killed while
active (no demote hook runs then) holds an older epoch: understudy only starts a node's next
process once the role has moved on under a higher epoch (the failed node is not eligible under
the epoch it failed in), so such a file is never taken for a promotion. (E > S would be wrong: a
node assigned the active role before its own lease is valid starts its process as a standby
under the very epoch it is then promoted under.) The file is deliberately not removed at
start-up: understudy may run the promote hook while this process is still starting, and a
start-up clean-up could delete the fresh file.

usage: hot_service.py [--base PORT] [--host ADDR]
"""

import argparse
import http.server
import os
import re
import signal
import sys

LINE = re.compile(rb"^(\d+)\n$")


# The port scheme is the demo service's: BASE + the node name's number.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo"))
from sample_service import node_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="hot-standby HTTP service for the understudy bench")
    ap.add_argument("--base", type=int, default=8080, help="port = BASE + node number (8080)")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()

    env = os.environ
    node = env.get("UNDERSTUDY_NODE", "")
    service = env.get("UNDERSTUDY_SERVICE", "")
    data_dir = env.get("UNDERSTUDY_DATA_DIR", "")
    role = env.get("UNDERSTUDY_ROLE", "?")
    try:
        start_epoch = int(env.get("UNDERSTUDY_EPOCH", ""))
    except ValueError:
        start_epoch = -1
    if not node or not service or not data_dir or start_epoch < 0:
        sys.exit("hot_service: UNDERSTUDY_NODE, _SERVICE, _DATA_DIR or _EPOCH is missing "
                 "(run me through understudy)")
    port = node_port(node, args.base)
    marker = os.path.join(data_dir, service + ".active")
    min_epoch = start_epoch
    standby_body = f"{node} standby\n".encode()

    def active_epoch():
        try:
            with open(marker, "rb") as f:
                m = LINE.match(f.read(32))
        except OSError:
            return None
        if not m:
            return None
        e = int(m.group(1))
        return e if e >= min_epoch else None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            e = active_epoch()
            body = f"{node} epoch {e}\n".encode() if e is not None else standby_body
            self.send_response(200 if e is not None else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            pass  # the bench polls every few ms: one line per request would drown the logs

    http.server.HTTPServer.allow_reuse_address = True
    http.server.HTTPServer.request_queue_size = 64
    try:
        srv = http.server.HTTPServer((args.host, port), Handler)
    except OSError as e:
        sys.exit(f"hot_service: cannot listen on {args.host}:{port}: {e.strerror}")

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"hot_service: {node} ({role}, started under epoch {start_epoch}) listening on "
          f"{args.host}:{port}; active while {marker} holds an epoch >= {min_epoch}",
          file=sys.stderr, flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
