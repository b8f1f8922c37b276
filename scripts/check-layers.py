#!/usr/bin/env python3
"""make check-layers: includes in src/ flow one way, down the layers of docs/architecture.md.

Every folder of src/ is a layer, listed here from the bottom up. A file may include headers of its
own layer and of the layers below ("core/lease.h" names its layer), never of a layer above. The
pure core may not include the system headers of I/O (an event loop, sockets, files, processes).
The few remaining exceptions are listed with their reason; a new one fails the check, and an
exception that is no longer needed must be removed.
Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

import os
import re
import sys

LAYERS = ["lib", "core", "config", "node", "net", "agent", "cli"]

# System headers the pure core may not include: it does no I/O and runs no loop.
CORE_FORBIDDEN = {"uv.h", "raft/uv.h", "unistd.h", "fcntl.h", "sys/socket.h", "sys/stat.h",
                  "pthread.h", "signal.h", "dirent.h", "curl/curl.h", "microhttpd.h"}

# (file, included header): why it is still allowed.
EXCEPTIONS = {
    ("node/notify.c", "agent/agent.h"): "hooks read the agent's state: an environment of callbacks instead (issue 10)",
}

OURS = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([a-z_]+)\.h"', re.M)
FLAT = re.compile(r'^\s*#\s*include\s+"([a-z_]+)\.h"', re.M)
SYSTEM = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    problems, seen, files = [], set(), 0
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if not os.path.isdir(path):
            problems.append("src/%s: every file belongs in a layer folder (%s)" % (entry, ", ".join(LAYERS)))
            continue
        if entry not in LAYERS:
            problems.append("src/%s/: not a layer of scripts/check-layers.py (%s)" % (entry, ", ".join(LAYERS)))
            continue
        rank = LAYERS.index(entry)
        for name in sorted(os.listdir(path)):
            if not name.endswith((".c", ".h")):
                continue
            files += 1
            rel = "%s/%s" % (entry, name)
            with open(os.path.join(path, name)) as f:
                text = f.read()
            for flat in FLAT.findall(text):
                problems.append("src/%s: include \"%s.h\" by its layer, e.g. \"core/%s.h\"" % (rel, flat, flat))
            for layer, header in OURS.findall(text):
                if layer not in LAYERS:
                    problems.append("src/%s: includes %s/%s.h, which is in no layer" % (rel, layer, header))
                    continue
                if not os.path.exists(os.path.join(root, layer, header + ".h")):
                    problems.append("src/%s: includes %s/%s.h, which does not exist" % (rel, layer, header))
                    continue
                if LAYERS.index(layer) <= rank:
                    continue
                key = (rel, "%s/%s.h" % (layer, header))
                if key in EXCEPTIONS:
                    seen.add(key)
                    continue
                problems.append("src/%s (%s) includes %s/%s.h (%s): includes must go down the layers %s"
                                % (rel, entry, layer, header, layer, " < ".join(LAYERS)))
            if entry == "core":
                for sysh in SYSTEM.findall(text):
                    if sysh in CORE_FORBIDDEN:
                        problems.append("src/%s: the core does no I/O, yet includes <%s>" % (rel, sysh))
    for stale in sorted(set(EXCEPTIONS) - seen):
        problems.append("scripts/check-layers.py: exception %s -> %s is no longer needed: remove it" % stale)
    for p in problems:
        print(p)
    if not problems:
        print("check-layers: %d files in %d layers, includes go down %s (%d known exceptions)"
              % (files, len(LAYERS), " < ".join(LAYERS), len(EXCEPTIONS)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
