# common.sh — what the postgresql recipe's scripts share (sourced). They run as the service's
# `user` (postgres). PG_ROOT, PG_PORT and PG_BIN may be set in the service's `env`; the data
# directory is PG_ROOT/NODE-SERVICE (the node's name keeps several nodes of one machine apart, as in
# `make demo` and the tests).
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
port=${PG_PORT:-5432}
dir=${PG_ROOT:-/var/lib/postgresql/understudy}/$UNDERSTUDY_NODE-$UNDERSTUDY_SERVICE
# Where a standby streams from: the active, under this node's name (synchronous_standby_names
# names standbys by it).
src="host=${UNDERSTUDY_ACTIVE_HOST:-} port=$port user=postgres application_name=$UNDERSTUDY_NODE"
# One query on the local server over TCP (no Unix socket: nodes on one machine would share its
# path); prints the value, fails if the server does not answer. Node names and hosts are safe to
# quote this way: understudy allows only [a-z0-9-] in names and checks hosts.
q() { "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
# The same on the active.
qa() { "$bin/psql" -d "$src dbname=postgres connect_timeout=2" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
# Succeeds while the local server accepts connections.
running() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; }
# Wait up to $1 tenths of a second for the local server to answer (it may have just been started).
up() {
    i=0
    until running; do
        i=$((i + 1))
        [ "$i" -le "$1" ] || return 1
        sleep 0.1
    done
}
# Writes `primary_conninfo` into postgresql.auto.conf while the server is stopped (ALTER SYSTEM
# needs it running): the standby streams from the active from its next start.
set_source() {
    f=$dir/postgresql.auto.conf
    touch "$f"
    grep -v '^primary_conninfo' "$f" >"$f.tmp" || true
    echo "primary_conninfo = '$src'" >>"$f.tmp"
    mv "$f.tmp" "$f"
    touch "$dir/standby.signal"
}
