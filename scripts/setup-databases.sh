#!/bin/sh
# Install the database servers the recipes in examples/ are tested with (tests/integration/
# test_redis.py): redis-server and redis-tools, their daemons not started (install-missing.sh).
set -eu
exec sh "$(dirname "$0")/install-missing.sh" setup-databases redis-server redis-tools
