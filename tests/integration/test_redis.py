"""The redis recipe (examples/redis, issue 12) with real redis-servers in network namespaces: the
fault loop of dbrecipe.py (kill -9 of the active's agent, kill -9 of redis-server on the active,
link down of the active's node, a planned switchover), a client writing through the VIP with
WAIT 1 (redis_writer.py); after each fault every acknowledged write is on the new primary and on
the former one, back as its replica.
Skipped only without root, `ip netns` or redis-server (scripts/setup-databases.sh installs it).
"""

import shutil

import pytest

import dbrecipe
import nsharness as H

REDIS = dbrecipe.Recipe(service="redis", directory="redis", writer=str(H.HERE / "redis_writer.py"),
                        server_pid=lambda h, n, r: dbrecipe.comm_pid(h, n, "redis-server"))


@pytest.fixture
def nsh(request, tmp_path):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("redis-server/redis-cli not installed (scripts/setup-databases.sh)")
    yield from H.harness(request, tmp_path)


def test_redis_recipe_loses_no_acknowledged_write(nsh):
    dbrecipe.run_faults(nsh, REDIS)
