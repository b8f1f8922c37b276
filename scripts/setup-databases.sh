#!/bin/sh
# Install the database servers the recipes in examples/ are tested with (tests/integration/
# test_redis.py): redis-server and redis-tools. Idempotent and quiet when all is there. The
# packages' own daemons are not started by the install (a temporary policy-rc.d, unless the machine
# has one already), and the test runs its own servers inside network namespaces.
set -eu

PKGS="redis-server redis-tools"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "setup-databases: missing packages:$missing; run as root: sudo $0" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
    trap 'rm -f "$policy"; exit 1' INT TERM HUP
fi

echo "setup-databases: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting wanted
apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT INT TERM HUP
fi
