#!/bin/sh
# Install what understudy needs to build and test on Debian 12. Idempotent and quiet when all is there.
# libraft must be 0.22 from bookworm-backports: Debian 12's own 0.15 has Raft safety bugs.
set -eu

PKGS="build-essential pkg-config libuv1-dev libjansson-dev libcmocka-dev \
libmicrohttpd-dev libmnl-dev libsodium-dev libsystemd-dev libcurl4-gnutls-dev openssl python3 python3-pytest iproute2 procps nftables \
scdoc prometheus chromium python3-nacl clang-14 libclang-rt-14-dev libfaketime"
BACKPORTS_PKGS="libraft-dev"

missing=""
for p in $PKGS $BACKPORTS_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
raft_ok=1
if ! pkg-config --atleast-version=0.22 raft 2>/dev/null; then raft_ok=0; fi
# The dashboard's browser test drives Debian's chromium with playwright-core (npm): node and npm
# come from Debian unless some node installation already provides them.
NODE_PKGS=""
command -v node >/dev/null 2>&1 || NODE_PKGS="$NODE_PKGS nodejs"
command -v npm >/dev/null 2>&1 || NODE_PKGS="$NODE_PKGS npm"
missing="$missing$NODE_PKGS"

if [ -n "$missing" ] || [ "$raft_ok" = 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages:$missing (and/or libraft >= 0.22); run as root: sudo $0" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: adding the bookworm-backports suite (for libraft 0.22)"
        printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" \
            "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
            >/etc/apt/sources.list.d/understudy-backports.sources
    fi
    echo "setup: installing:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package lists is intended
    apt-get install -y -qq $PKGS $NODE_PKGS >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq -t bookworm-backports $BACKPORTS_PKGS >/dev/null
    pkg-config --atleast-version=0.22 raft || {
        echo "setup: libraft $(pkg-config --modversion raft) is installed, 0.22 or newer is required" >&2
        exit 1
    }
fi

# playwright-core for tests/web, pinned by its package-lock.json (no browser download: Debian's).
if [ -f tests/web/package-lock.json ] && [ ! -d tests/web/node_modules/playwright-core ]; then
    echo "setup: installing tests/web's npm packages"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/web --no-audit --no-fund --silent
fi
