#!/bin/sh
# install-missing.sh LABEL PACKAGE... — install those of the Debian packages that are missing,
# without starting their daemons (a temporary policy-rc.d, unless the machine has one already):
# the tests and benchmarks run their own instances inside network namespaces. Idempotent and
# quiet when all is there. Used by setup-bench.sh and setup-databases.sh.
set -eu
label=$1
shift

missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "$label: missing packages:$missing; run as root: sudo $0" >&2
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

echo "$label: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting wanted
apt-get install -y -qq --no-install-recommends $missing >/dev/null
if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT INT TERM HUP
fi
