#!/bin/sh
# shellcheck disable=SC2086,SC2046 # word splitting of PID lists and "set -- $(...)" is intended
# understudy demo: a 3-node cluster on loopback running one sample HTTP service (cold standby).
#
#   sh demo/run.sh                  start the cluster, print what to try, wait for Ctrl-C / SIGTERM
#   sh demo/run.sh restart DIR NODE restart the agent of NODE of the demo running in DIR
#
# Ports (override through the environment, e.g. when something else holds them):
#   DEMO_RAFT_PORT=7101  cluster traffic of n1 (n2, n3: +1, +2; TCP and UDP)
#   DEMO_API_PORT=7201   HTTP API of n1 (n2, n3: +1, +2)
#   DEMO_HTTP_BASE=8080  the sample service of nN listens on 127.0.0.1:BASE+N
#   DEMO_PROFILE=default timing profile (default | fast)
# Data and logs live in a fresh `mktemp -d` directory, removed on exit.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/build/understudy
SAMPLE=$ROOT/demo/sample_service.py
RAFT_PORT=${DEMO_RAFT_PORT:-7101}
API_PORT=${DEMO_API_PORT:-7201}
HTTP_BASE=${DEMO_HTTP_BASE:-8080}
PROFILE=${DEMO_PROFILE:-default}
NODES="n1 n2 n3"
START_WAIT_S=30 # cluster formation and first placement
STOP_WAIT_S=20  # hand-over on SIGTERM before the second (forcing) SIGTERM

die() {
    echo "demo: $*" >&2
    exit 1
}

num() { echo "$1" | sed 's/^n//'; } # n2 -> 2
raft_port() { echo $((RAFT_PORT + $(num "$1") - 1)); }
api_port() { echo $((API_PORT + $(num "$1") - 1)); }
http_port() { echo $((HTTP_BASE + $(num "$1"))); }

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Is PID alive and one of our agents (its command line names our config)? Guards against PID reuse.
is_our_agent() { # PID CONF
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "--config $2 " || return 1
    alive "$1" # a zombie keeps its command line for a moment; it no longer counts
}

agent_pid() { # DIR NODE -> pid if running
    _p=$(cat "$1/$2.pid" 2>/dev/null) || return 1
    is_our_agent "$_p" "$1/$2.conf" && echo "$_p"
}

start_agent() { # DIR NODE
    # setsid: Ctrl-C in the terminal reaches only this script, which then stops the agents in order.
    (cd "$1" && exec setsid "$BIN" agent --config "$1/$2.conf" >>"$1/$2.log" 2>&1) &
    echo $! >"$1/$2.pid"
}

if [ "${1:-}" = restart ]; then
    [ $# -eq 3 ] || die "usage: sh demo/run.sh restart DIR NODE"
    NODE=$3
    [ -f "$2/$NODE.conf" ] || die "no demo node '$NODE' in '$2'"
    DIR=$(cd "$2" && pwd) # absolute: the agent's command line is how we recognise it later
    if p=$(agent_pid "$DIR" "$NODE"); then
        die "the agent of $NODE is still running (pid $p)"
    fi
    start_agent "$DIR" "$NODE"
    echo "demo: started the agent of $NODE again (pid $(cat "$DIR/$NODE.pid"), log $DIR/$NODE.log)"
    exit 0
fi
[ $# -eq 0 ] || die "usage: sh demo/run.sh [restart DIR NODE]"

[ -x "$BIN" ] || die "$BIN is missing: run 'make' first"
command -v python3 >/dev/null || die "python3 is required (the sample service is a Python script)"
command -v setsid >/dev/null || die "setsid (util-linux) is required"
case $PROFILE in default | fast) ;; *) die "DEMO_PROFILE must be 'default' or 'fast', got '$PROFILE'" ;; esac

# Ports: refuse to start next to something that already holds one.
busy=$(python3 - "$RAFT_PORT" "$API_PORT" "$HTTP_BASE" <<'EOF'
import socket, sys
raft, api, http = (int(x) for x in sys.argv[1:])
need = [(raft + i, "tcp+udp", "cluster traffic of n%d" % (i + 1)) for i in range(3)]
need += [(api + i, "tcp", "API of n%d" % (i + 1)) for i in range(3)]
need += [(http + i, "tcp", "sample service on n%d" % i) for i in range(1, 4)]
for port, kinds, what in need:
    for kind in kinds.split("+"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
        if kind == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "busy"
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            print("port %d/%s (%s) is busy: %s" % (port, kind, what, e.strerror))
        finally:
            s.close()
EOF
)
if [ -n "$busy" ]; then
    echo "$busy" | sed 's/^/demo: /' >&2
    echo "demo: free these ports, or move the demo (DEMO_RAFT_PORT, DEMO_API_PORT, DEMO_HTTP_BASE)" >&2
    exit 1
fi

SLEEP_PID=""
DIR=""

# Stop every agent: SIGTERM (hand over), bounded wait, SIGTERM again (force), bounded wait, SIGKILL.
# Then wait (bounded) for what they leave behind: guardians (command line names DIR) and service
# processes (environment names DIR), SIGKILL those too, and remove DIR.
cleanup() {
    trap '' INT TERM HUP
    [ -n "$DIR" ] || return 0
    [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
    echo
    echo "demo: stopping the agents"
    for step in "TERM $STOP_WAIT_S" "TERM 5" "KILL 5"; do
        set -- $step
        pids=""
        for n in $NODES; do
            p=$(agent_pid "$DIR" "$n") && pids="$pids $p"
        done
        [ -z "$pids" ] && break
        echo "demo: SIG$1 to$pids"
        kill -s "$1" $pids 2>/dev/null
        i=0
        while [ $i -lt $(($2 * 10)) ]; do
            left=""
            for p in $pids; do alive "$p" && left="$left $p"; done
            [ -z "$left" ] && break
            sleep 0.1
            i=$((i + 1))
        done
    done
    i=0
    while [ $i -lt 50 ]; do
        stray=""
        for d in /proc/[0-9]*; do
            p=${d#/proc/}
            [ "$p" = $$ ] && continue
            if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -qF -- "--config $DIR/" ||
                tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qF "UNDERSTUDY_DATA_DIR=$DIR/"; then
                alive "$p" && stray="$stray $p"
            fi
        done
        [ -z "$stray" ] && break
        [ $i -eq 30 ] && echo "demo: SIGKILL to leftovers$stray" && kill -KILL $stray 2>/dev/null
        sleep 0.1
        i=$((i + 1))
    done
    [ -n "$stray" ] && echo "demo: processes still there:$stray" >&2
    rm -rf "$DIR"
    echo "demo: stopped; removed $DIR"
    DIR=""
}
trap 'cleanup' EXIT
trap 'exit 0' INT TERM HUP # exit runs the EXIT trap: one cleanup path
DIR=$(mktemp -d "${TMPDIR:-/tmp}/understudy-demo.XXXXXX") || die "mktemp failed"

# One status query, asking each agent in turn (the one on 7201 may be the one you killed).
status_json() {
    for n in $NODES; do
        "$BIN" --api "127.0.0.1:$(api_port "$n")" status --json 2>/dev/null && return 0
    done
    return 1
}

# "ACTIVE EPOCH LEADER" of service web from status JSON on stdin ("- 0 -" when unknown).
summary() {
    python3 -c '
import json, sys
try:
    st = json.load(sys.stdin)
except ValueError:
    print("- 0 -"); sys.exit()
web = [s for s in st.get("services", []) if s.get("name") == "web"]
a = web[0] if web else {}
print(a.get("active") or "-", a.get("epoch") or 0, st.get("cluster", {}).get("leader") or "-")'
}

"$BIN" keygen "$DIR/cluster.key" >/dev/null
"$BIN" keygen --token "$DIR/api.token" >/dev/null
# Every CLI call below (and in the shell the demo prints for you) finds the token here.
export UNDERSTUDY_TOKEN_FILE="$DIR/api.token"
MEMBERS=""
for n in $NODES; do MEMBERS="$MEMBERS $n=127.0.0.1:$(raft_port "$n")"; done
for n in $NODES; do
    cat >"$DIR/$n.conf" <<EOF
[node]
name = $n
address = 127.0.0.1:$(raft_port "$n")
api = 127.0.0.1:$(api_port "$n")
data_dir = $DIR/data-$n
api_token_file = $DIR/api.token
[cluster]
name = demo
members =$MEMBERS
profile = $PROFILE
key_file = $DIR/cluster.key
EOF
done
cat >"$DIR/services.ini" <<EOF
# The sample service: an HTTP server answering "NODE epoch EPOCH" on 127.0.0.1:$HTTP_BASE+N.
[service web]
run = exec python3 $SAMPLE --base $HTTP_BASE
standbys = 1
standby = cold
EOF

echo "demo: data and logs in $DIR"
for n in $NODES; do
    start_agent "$DIR" "$n"
    echo "demo: agent $n pid $(cat "$DIR/$n.pid")  cluster 127.0.0.1:$(raft_port "$n")  api 127.0.0.1:$(api_port "$n")"
done

echo "demo: waiting for a leader (at most ${START_WAIT_S}s)"
deadline=$(($(date +%s) + START_WAIT_S))
until "$BIN" --api "127.0.0.1:$API_PORT" status >/dev/null 2>&1; do
    for n in $NODES; do
        agent_pid "$DIR" "$n" >/dev/null || {
            tail -n 20 "$DIR/$n.log" >&2
            die "the agent of $n exited during start-up (log above)"
        }
    done
    [ "$(date +%s)" -lt "$deadline" ] || die "no leader after ${START_WAIT_S}s; logs in $DIR/n*.log"
    sleep 0.2
done
"$BIN" --api "127.0.0.1:$API_PORT" apply "$DIR/services.ini" || die "apply failed"

echo "demo: waiting for the sample service to answer (at most ${START_WAIT_S}s)"
while :; do
    set -- $(status_json | summary)
    ACTIVE=$1 EPOCH=$2
    if [ "$ACTIVE" != - ]; then
        ANSWER=$(curl -s --max-time 1 "http://127.0.0.1:$(http_port "$ACTIVE")/" 2>/dev/null)
        [ -n "$ANSWER" ] && break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "the service did not come up in ${START_WAIT_S}s; logs in $DIR"
    sleep 0.2
done

U="build/understudy --api 127.0.0.1:$API_PORT --token-file $DIR/api.token"
cat <<EOF

== understudy demo: 3 agents, profile $PROFILE; service 'web' is active on $ACTIVE (epoch $EPOCH)
   curl http://127.0.0.1:$(http_port "$ACTIVE")/  ->  $ANSWER

Try (from $ROOT):
  $U status                      # nodes, leader, who is active
  $U status --json
  $U events --follow             # every transition with its cause (Ctrl-C ends it)
  open http://127.0.0.1:$API_PORT/ in a browser   # live dashboard (metrics: /metrics)
                                   # it asks for the API token: cat $DIR/api.token
  curl http://127.0.0.1:$(http_port n1)/ http://127.0.0.1:$(http_port n2)/ http://127.0.0.1:$(http_port n3)/
                                   # only the active node answers: "NODE epoch EPOCH"
  $U switchover web              # planned move to the standby
  $U switchover web --to n3
  kill -9 \$(cat $DIR/$ACTIVE.pid)   # crash the active's agent: a standby takes over, epoch + 1
  sh demo/run.sh restart $DIR $ACTIVE   # bring it back (it does not take the role back)
Agent logs: $DIR/n1.log ... n3.log; service logs: $DIR/data-nN/logs/web.log
Changes of the active are printed below. Ctrl-C stops everything and removes $DIR.

EOF

# Wait for Ctrl-C / SIGTERM; report changes of the active role meanwhile. `sleep & wait` so that
# a signal is handled at once rather than after the sleep.
LAST="$ACTIVE $EPOCH"
while :; do
    set -- $(status_json | summary)
    if [ "$1" != - ] && [ "$1 $2" != "$LAST" ]; then
        echo "demo: $(date +%T) web is active on $1 (epoch $2); curl http://127.0.0.1:$(http_port "$1")/"
        LAST="$1 $2"
    fi
    sleep 1 &
    SLEEP_PID=$!
    wait $SLEEP_PID
    SLEEP_PID=""
done
