#!/usr/bin/env python3
"""make check-layers: includes in src/ flow one way, down the layers of docs/architecture.md.

Every file of src/ belongs to one layer (the table below; a new file must be added to it). A file may
include headers of its own layer and of the layers below, never of a layer above. The few existing
exceptions are listed with the reason they remain (issue 10 removes them); a new one fails the check.
Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

import os
import re
import sys

LAYERS = ["lib", "config", "core", "node", "net", "shell", "cli"]

MODULES = {
    "lib": "log model key durable",
    "config": "ini config",
    "core": "decide lease fsm wire msg",
    "node": "supervisor privilege check guardian vip proxy notify logrotate sdnotify",
    "net": "net transport api api_guard dashboard",
    "shell": "agent agent_api instance controller proxies metrics",
    "cli": "cli main",
}

# (file, included module): why it is still allowed.
EXCEPTIONS = {
    ("proxy.c", "net"): "us_sockaddr_parse: host:port parsing belongs in lib (issue 10)",
    ("notify.c", "agent"): "hooks read the agent's state: an environment of callbacks instead (issue 10)",
    ("metrics.c", "cli"): "US_VERSION lives in cli.h (issue 10)",
    ("agent_api.c", "cli"): "US_VERSION lives in cli.h (issue 10)",
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)\.h"', re.M)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    layer_of = {m: l for l, ms in MODULES.items() for m in ms.split()}
    problems, seen = [], set()
    for name in sorted(os.listdir(root)):
        if not name.endswith((".c", ".h")):
            continue
        module = name[:-2]
        if module not in layer_of:
            problems.append("src/%s: not in any layer of scripts/check-layers.py (add it to MODULES)" % name)
            continue
        rank = LAYERS.index(layer_of[module])
        with open(os.path.join(root, name)) as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            if inc not in layer_of:
                problems.append("src/%s: includes %s.h, which is in no layer" % (name, inc))
                continue
            if LAYERS.index(layer_of[inc]) <= rank:
                continue
            if (name, inc) in EXCEPTIONS:
                seen.add((name, inc))
                continue
            problems.append("src/%s (%s) includes %s.h (%s): includes must go down the layers %s"
                            % (name, layer_of[module], inc, layer_of[inc], " < ".join(LAYERS)))
    for stale in sorted(set(EXCEPTIONS) - seen):
        problems.append("scripts/check-layers.py: exception %s -> %s.h is no longer needed: remove it" % stale)
    for p in problems:
        print(p)
    if not problems:
        print("check-layers: %d files, includes go down the layers (%d known exceptions)"
              % (sum(len(ms.split()) for ms in MODULES.values()), len(EXCEPTIONS)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
