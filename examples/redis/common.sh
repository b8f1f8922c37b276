# common.sh — what the redis recipe's scripts share (sourced). REDIS_PORT and REDIS_DIR may be set
# in the service's `env`; the defaults: 6379, DATA_DIR/redis-SERVICE.
port=${REDIS_PORT:-6379}
# shellcheck disable=SC2034 # used by run
dir=${REDIS_DIR:-$UNDERSTUDY_DATA_DIR/redis-$UNDERSTUDY_SERVICE}
cli() { redis-cli -p "$port" "$@"; }
# The value of one field of INFO replication ("" if absent or the server does not answer).
info() { cli INFO replication 2>/dev/null | tr -d '\r' | sed -n "s/^$1://p"; }
# Succeeds when the reply to the command is OK (or "OK Already connected ...").
ok() { cli "$@" 2>/dev/null | tr -d '\r' | grep -q '^OK'; }
# Wait up to $1 tenths of a second for the server to answer (it may have just been started).
up() {
    i=0
    until cli PING 2>/dev/null | grep -q PONG; do
        i=$((i + 1))
        [ "$i" -le "$1" ] || return 1
        sleep 0.1
    done
}
