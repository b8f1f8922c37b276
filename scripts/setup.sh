#!/bin/sh
# Install what understudy needs to build and test on Debian 12. Idempotent and quiet when all is there.
# libraft must be 0.22 from bookworm-backports: Debian 12's own 0.15 has Raft safety bugs.
set -eu

PKGS="build-essential pkg-config libuv1-dev libjansson-dev libcmocka-dev \
libmicrohttpd-dev libmnl-dev python3 python3-pytest iproute2 procps nftables"
BACKPORTS_PKGS="libraft-dev"

missing=""
for p in $PKGS $BACKPORTS_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
raft_ok=1
if ! pkg-config --atleast-version=0.22 raft 2>/dev/null; then raft_ok=0; fi
[ -z "$missing" ] && [ "$raft_ok" = 1 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages:$missing (and/or libraft >= 0.22); run as root: sudo $0" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding the bookworm-backports suite (for libraft 0.22)"
    cat >/etc/apt/sources.list.d/understudy-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "setup: installing:$missing"
apt-get update -qq
apt-get install -y -qq $PKGS >/dev/null
apt-get install -y -qq -t bookworm-backports $BACKPORTS_PKGS >/dev/null
pkg-config --atleast-version=0.22 raft || {
    echo "setup: libraft $(pkg-config --modversion raft) is installed, 0.22 or newer is required" >&2
    exit 1
}
