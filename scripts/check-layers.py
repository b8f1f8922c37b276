#!/usr/bin/env python3
"""make check-layers: includes in src/ flow one way, down the layers of docs/architecture.md.

Every folder of src/ is a layer, listed here from the bottom up. A file may include headers of its
own layer and of the layers below ("core/lease.h" names its layer), never of a layer above. The
pure core may not include the system headers of I/O (an event loop, sockets, files, processes).
The few remaining exceptions are listed with their reason; a new one fails the check, and an
exception that is no longer needed must be removed.

Within a layer, the modules (a header and its source file: "agent/instance") may not include each
other in a circle: the include graph of modules has no cycle. So that a header cannot hide a
dependency, every function a source file exports is declared in its own module's header (a
declaration of X.c's function in Y.h would let Y's users call X without an include).
Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

import os
import re
import sys

LAYERS = ["lib", "core", "config", "node", "net", "agent", "cli"]

# System headers the pure core may not include: it does no I/O and runs no loop.
CORE_FORBIDDEN = {"uv.h", "raft/uv.h", "unistd.h", "fcntl.h", "sys/socket.h", "sys/stat.h",
                  "pthread.h", "signal.h", "dirent.h", "curl/curl.h", "microhttpd.h", "dlfcn.h"}

# (file, included header): why it is still allowed.
EXCEPTIONS = {}

OURS = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([a-z_]+)\.h"', re.M)
FLAT = re.compile(r'^\s*#\s*include\s+"([a-z_]+)\.h"', re.M)
SYSTEM = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)


DEFINED = re.compile(r'^(?!static\b)[A-Za-z_][\w \t*]*?\b(us_\w+)\s*\([^;{]*\)\s*\{', re.M)
DECLARED = re.compile(r'\b(us_\w+)\s*\([^;{]*\)\s*(?:__attribute__\s*\(\(.*?\)\))?\s*;', re.S)


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    problems, seen, files = [], set(), 0
    graph, defined, declared = {}, {}, {}
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
            module = rel[:-2]
            graph.setdefault(module, set())
            body = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
            if name.endswith(".c"):
                for fn in DEFINED.findall(body):
                    defined[fn] = module
            else:
                for fn in DECLARED.findall(body):
                    declared.setdefault(fn, set()).add(module)
            for flat in FLAT.findall(text):
                problems.append("src/%s: include \"%s.h\" by its layer, e.g. \"core/%s.h\"" % (rel, flat, flat))
            for layer, header in OURS.findall(text):
                if layer not in LAYERS:
                    problems.append("src/%s: includes %s/%s.h, which is in no layer" % (rel, layer, header))
                    continue
                if not os.path.exists(os.path.join(root, layer, header + ".h")):
                    problems.append("src/%s: includes %s/%s.h, which does not exist" % (rel, layer, header))
                    continue
                if "%s/%s" % (layer, header) != module:
                    graph[module].add("%s/%s" % (layer, header))
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
    for comp in cycles(graph):
        problems.append("src: modules include each other in a circle: %s (a callback or a lower "
                        "module instead)" % " <-> ".join(comp))
    for fn, module in sorted(defined.items()):
        homes = declared.get(fn, set())
        if homes and module not in homes:
            problems.append("src/%s.c defines %s, declared in %s instead of %s.h" % (
                module, fn, ", ".join("%s.h" % h for h in sorted(homes)), module))
    for stale in sorted(set(EXCEPTIONS) - seen):
        problems.append("scripts/check-layers.py: exception %s -> %s is no longer needed: remove it" % stale)
    for p in problems:
        print(p)
    if not problems:
        print("check-layers: %d files in %d layers, includes go down %s (%d known exceptions), "
              "%d modules with no include cycle" % (files, len(LAYERS), " < ".join(LAYERS),
                                                    len(EXCEPTIONS), len(graph)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
