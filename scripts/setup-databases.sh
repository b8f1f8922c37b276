#!/bin/sh
# Install the database servers the recipes in examples/ are tested with (tests/integration/
# test_redis.py, test_postgresql.py): redis-server and redis-tools, PostgreSQL 15 and the Python
# driver of the test's client; their daemons not started (install-missing.sh).
set -eu
exec sh "$(dirname "$0")/install-missing.sh" setup-databases redis-server redis-tools postgresql-15 \
    postgresql-client-15 python3-psycopg2
