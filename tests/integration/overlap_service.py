"""Test service and hooks for the integration tests (standard library only).

  overlap_service.py run LOG
      While it runs, appends "NODE EPOCH TIME_NS\n" to LOG every 10 ms (one O_APPEND write per
      line, so lines of concurrent writers never interleave). NODE and EPOCH come from the
      environment the agent gives its instances (UNDERSTUDY_NODE, UNDERSTUDY_EPOCH). Two instances
      acting at the same time therefore leave overlapping per-(node, epoch) intervals in LOG,
      which conftest.assert_no_overlap() detects.

  overlap_service.py hook KIND LOG [SECONDS]
      A promote/demote hook: appends "KIND NODE EPOCH TIME_NS start" to LOG, sleeps SECONDS
      (default 0), appends "KIND NODE EPOCH TIME_NS end" and exits 0.
"""

import os
import sys
import time


def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def main(argv):
    node = os.environ.get("UNDERSTUDY_NODE", "?")
    epoch = os.environ.get("UNDERSTUDY_EPOCH", "?")
    if len(argv) >= 3 and argv[1] == "run":
        path = argv[2]
        while True:
            append(path, "%s %s %d\n" % (node, epoch, time.time_ns()))
            time.sleep(0.01)
    if len(argv) >= 4 and argv[1] == "hook":
        kind, path = argv[2], argv[3]
        pause = float(argv[4]) if len(argv) >= 5 else 0.0
        append(path, "%s %s %s %d start\n" % (kind, node, epoch, time.time_ns()))
        if pause > 0:
            time.sleep(pause)
        append(path, "%s %s %s %d end\n" % (kind, node, epoch, time.time_ns()))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
