#!/bin/sh
# Install what the benchmarks in bench/ need besides scripts/setup.sh's packages: keepalived,
# HAProxy and Redis Sentinel (the systems compared with understudy), wrk (load generator),
# nftables (tests/netns.py), stress-ng (bench/soak: saturated cores); their daemons not started
# (install-missing.sh).
set -eu
exec sh "$(dirname "$0")/install-missing.sh" setup-bench keepalived haproxy wrk nftables iproute2 gcc python3 stress-ng \
    redis-sentinel
