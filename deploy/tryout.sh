#!/usr/bin/env bash
# A three-node xmppd cluster on one machine, for trying it out: a private redis-server and a
# private PostgreSQL cluster (Debian's packages) on free loopback ports, and nodes n1, n2, n3,
# everything under one directory. Not for production: see deploy/README.md.
#
#   deploy/tryout.sh start  [DIR]   start it (DIR default ./xmppd-tryout); prints the ports
#   deploy/tryout.sh status [DIR]   what runs (exit 0: everything; 3: not everything)
#   deploy/tryout.sh stop   [DIR]   stop the nodes (SIGTERM), then Redis and PostgreSQL
#   deploy/tryout.sh stop DIR PART...   stop only these of n1 n2 n3 redis postgres
#
# The xmppd and xmppctl commands are taken from $XMPPD_BIN when set, else from the virtual
# environment beside this script (../.venv/bin), else from PATH. PostgreSQL's programs from
# $PG_BIN, else the newest /usr/lib/postgresql/*/bin. As root, PostgreSQL runs as the user
# `postgres` (it refuses root), which must be able to reach DIR.
#
# `start` starts whatever of DIR's try-out is not running: everything the first time (ports
# chosen then are kept in DIR/tryout.env), one node after `stop DIR n2` (a rolling restart), the
# same cluster with the same accounts after `stop` (Redis starts empty, as a restarted Redis
# does, and the nodes fill it again).
set -euo pipefail

usage() {
    echo "usage: $0 start|status [DIR]  or  $0 stop [DIR [n1|n2|n3|redis|postgres ...]]" >&2
    echo "       (DIR default ./xmppd-tryout)" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
command=$1
dir=${2:-./xmppd-tryout}
PARTS=("${@:3}")
case $command in start | status) ((${#PARTS[@]} == 0)) || usage ;; stop) ;; *) usage ;; esac
for part in "${PARTS[@]}"; do
    case $part in n1 | n2 | n3 | redis | postgres) ;; *) usage ;; esac
done

NODES=(n1 n2 n3)
PREFERRED_PORTS=(5222 5223 5232 5233 5242 5243)   # STARTTLS and direct TLS of n1, n2, n3

say() { printf '%s\n' "$*"; }
fail() {
    printf 'tryout: %s\n' "$*" >&2
    exit 1
}

# --- the programs ----------------------------------------------------------------------------

find_xmppd() {
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    if [[ -n ${XMPPD_BIN:-} ]]; then
        XMPPD=$XMPPD_BIN/xmppd
        XMPPCTL=$XMPPD_BIN/xmppctl
    elif [[ -x $here/../.venv/bin/xmppd ]]; then
        XMPPD=$(cd "$here/../.venv/bin" && pwd)/xmppd
        XMPPCTL=$(dirname "$XMPPD")/xmppctl
    else
        XMPPD=$(command -v xmppd) || fail "no xmppd: set XMPPD_BIN, or pip install . into ../.venv"
        XMPPCTL=$(command -v xmppctl) || fail "no xmppctl beside $XMPPD"
    fi
    [[ -x $XMPPD && -x $XMPPCTL ]] || fail "no xmppd and xmppctl in $(dirname "$XMPPD")"
    # The interpreter xmppd runs on, for the small checks below (ports, JSON).
    if [[ -x $(dirname "$XMPPD")/python ]]; then
        PYTHON=$(dirname "$XMPPD")/python
    else
        PYTHON=$(command -v python3) || fail "no python3"
    fi
}

find_services() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        fail "no redis-server: apt-get install redis-server"
    fi
    if [[ -z ${PG_BIN:-} ]]; then
        PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null |
            sort -V | tail -n 1)
    fi
    [[ -n $PG_BIN && -x $PG_BIN/initdb ]] || fail "no PostgreSQL: apt-get install postgresql"
}

# PostgreSQL refuses to run as root: then its programs run as `postgres`.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# --- state -------------------------------------------------------------------------------------

alive() { # PIDFILE [WORD]: the process of PIDFILE runs (and its command line has WORD)
    local pid command
    [[ -s $1 ]] || return 1
    pid=$(head -n 1 "$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ -n ${2:-} ]] || return 0
    command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $command == *"$2"* ]]
}

# PostgreSQL's own record of its pid is the truth (it may have been restarted by hand).
sync_pg_pid() {
    local record=$dir/postgres/data/postmaster.pid
    if [[ -s $record ]]; then
        head -n 1 "$record" >"$dir/postgres.pid"
    else
        rm -f "$dir/postgres.pid"
    fi
}

load_state() {
    [[ -f $dir/tryout.env ]] || return 1
    # shellcheck source=/dev/null
    source "$dir/tryout.env"
}

# Ports: the preferred ones when free, else any free one; all bound at once so they differ.
pick_ports() {
    "$PYTHON" - "$@" <<'EOF'
import socket, sys
held = []
for wanted in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as xmppd's listeners do
    try:
        s.bind(("127.0.0.1", wanted))
    except OSError:
        s.bind(("127.0.0.1", 0))
        print(f"port {wanted} is taken: using {s.getsockname()[1]} instead", file=sys.stderr)
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

port_free() { # PORT: it can be bound (nothing listens there)
    "$PYTHON" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# Every running node sees all three alive and relays to the other two.
joined() {
    local node
    for node in "${NODES[@]}"; do
        "$XMPPCTL" --config "$dir/$node.toml" nodes --json 2>/dev/null | "$PYTHON" -c '
import json, sys
rows = json.load(sys.stdin)
sys.exit(0 if sum(r["alive"] and (r["this"] or r["peer"]) for r in rows) == 3 else 1)' ||
            return 1
    done
}

# --- start -------------------------------------------------------------------------------------

write_config() { # NODE STARTTLS_PORT DIRECT_PORT
    cat >"$dir/$1.toml" <<EOF
# Node $1 of the try-out cluster made by deploy/tryout.sh. See xmppd.example.toml for more.
[server]
data_dir = "$dir/$1"
storage = "postgresql://xmppd@127.0.0.1:$PG_PORT/xmppd"

# Every node serves the same certificate for the domain: n1 makes a self-signed one on its
# first start, and tryout.sh copies it into $dir/n2/certs and $dir/n3/certs.
[hosts.localhost]

[[listeners]]
address = "127.0.0.1"
port = $2
tls = "starttls"

[[listeners]]
address = "127.0.0.1"
port = $3
tls = "direct"

[cluster]
node = "$1"
redis = "redis://127.0.0.1:$REDIS_PORT/0"
EOF
}

start_redis() {
    mkdir -p "$dir/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/redis" --logfile "$dir/redis/redis.log" \
        --daemonize yes --pidfile "$dir/redis.pid" </dev/null >/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    fail "redis-server did not start: see $dir/redis/redis.log"
}

start_postgres() {
    local pg=$dir/postgres fresh=0
    if [[ ! -d $pg/data ]]; then
        fresh=1
        mkdir -p "$pg"
        if [[ $EUID -eq 0 ]]; then
            id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
            chown postgres: "$pg"
            as_pg test -w "$pg" ||
                fail "the user postgres cannot reach $pg (a parent directory is private):" \
                    "choose a DIR it can reach, e.g. /tmp/xmppd-tryout"
        fi
        as_pg "$PG_BIN/initdb" -D "$pg/data" -U xmppd -A trust -E UTF8 --no-sync \
            >"$pg/initdb.log" 2>&1 || fail "initdb failed: see $pg/initdb.log"
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -o \
        "-p $PG_PORT -k $pg -c listen_addresses=127.0.0.1" start >/dev/null ||
        fail "PostgreSQL did not start: see $pg/postgres.log"
    head -n 1 "$pg/data/postmaster.pid" >"$dir/postgres.pid"
    if ((fresh)); then
        as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U xmppd xmppd
    fi
}

start_node() { # NODE
    rm -f "$dir/$1.pid"
    setsid "$XMPPD" serve --config "$dir/$1.toml" --data-dir "$dir/$1" \
        </dev/null >>"$dir/$1.log" 2>&1 &
    echo $! >"$dir/$1.pid"
}

wait_node() { # NODE: until its admin socket answers (its listeners are open by then)
    local i
    for ((i = 0; i < 300; i++)); do
        alive "$dir/$1.pid" || fail "$1 exited: $(tail -n 5 "$dir/$1.log")"
        "$XMPPCTL" --config "$dir/$1.toml" status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "$1 did not come up in 30 s: see $dir/$1.log"
}

share_certificate() { # n1's self-signed certificate, for n2 and n3
    local node
    for node in n2 n3; do
        if [[ ! -f $dir/$node/certs/localhost.crt ]]; then
            install -d -m 700 "$dir/$node" "$dir/$node/certs"
            install -m 644 "$dir/n1/certs/localhost.crt" "$dir/$node/certs/localhost.crt"
            install -m 600 "$dir/n1/certs/localhost.key" "$dir/$node/certs/localhost.key"
        fi
    done
}

# Starts whatever of the try-out in DIR is not running: all of it the first time; after
# `stop DIR n2`, only n2 (as a rolling restart would).
do_start() {
    find_xmppd
    find_services
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local ports port node i
    sync_pg_pid
    if load_state; then
        # The ports of the parts that do not run must be free.
        local -a parts=(redis postgres "${NODES[@]}")
        local -a owned=("$REDIS_PORT" "$PG_PORT" "${NODE_PORTS[0]} ${NODE_PORTS[1]}"
            "${NODE_PORTS[2]} ${NODE_PORTS[3]}" "${NODE_PORTS[4]} ${NODE_PORTS[5]}")
        for i in "${!parts[@]}"; do
            alive "$dir/${parts[i]}.pid" && continue
            for port in ${owned[i]}; do
                port_free "$port" || fail "port $port (${parts[i]} of the try-out in $dir) is taken"
            done
        done
    else
        read -r -a ports <<<"$(pick_ports 0 0 "${PREFERRED_PORTS[@]}")"
        REDIS_PORT=${ports[0]}
        PG_PORT=${ports[1]}
        NODE_PORTS=("${ports[@]:2}")
        printf 'REDIS_PORT=%s\nPG_PORT=%s\nNODE_PORTS=(%s)\n' \
            "$REDIS_PORT" "$PG_PORT" "${NODE_PORTS[*]}" >"$dir/tryout.env"
    fi

    # From here on, a failure stops what this run started.
    started=()
    trap 'if ((${#started[@]})); then stop_parts "${started[@]}" >&2; fi' EXIT
    if alive "$dir/redis.pid"; then
        say "Redis runs already"
    else
        start_redis
        started+=(redis)
    fi
    if alive "$dir/postgres.pid"; then
        say "PostgreSQL runs already"
    else
        start_postgres
        started+=(postgres)
    fi
    for i in 0 1 2; do
        [[ -f $dir/${NODES[i]}.toml ]] ||
            write_config "${NODES[i]}" "${NODE_PORTS[2 * i]}" "${NODE_PORTS[2 * i + 1]}"
    done
    # n1 first the first time: it makes the certificate all three serve.
    if ! alive "$dir/n1.pid"; then
        start_node n1
        started+=(n1)
        wait_node n1
    fi
    share_certificate
    for node in n2 n3; do
        if ! alive "$dir/$node.pid"; then
            start_node "$node"
            started+=("$node")
        fi
    done
    for node in "${NODES[@]}"; do
        wait_node "$node"
    done
    for ((i = 0; i < 300; i++)); do
        joined && break
        ((i < 299)) || fail "the nodes did not see each other in 30 s: see $dir/n*.log"
        sleep 0.1
    done
    trap - EXIT
    say "Redis       127.0.0.1:$REDIS_PORT  (pid $(cat "$dir/redis.pid"), log $dir/redis/redis.log)"
    say "PostgreSQL  127.0.0.1:$PG_PORT  (pid $(cat "$dir/postgres.pid"), log $dir/postgres/postgres.log)"
    for i in 0 1 2; do
        say "${NODES[i]}          127.0.0.1:${NODE_PORTS[2 * i]} (STARTTLS), 127.0.0.1:${NODE_PORTS[2 * i + 1]} (direct TLS)  (pid $(cat "$dir/${NODES[i]}.pid"), log $dir/${NODES[i]}.log)"
    done
    cat <<EOF

The cluster runs: three nodes serving the domain localhost, one Redis, one PostgreSQL.
Add users (once, on any node: accounts live in the shared database):

  $XMPPCTL --config $dir/n1.toml user add alice@localhost --password alice-secret
  $XMPPCTL --config $dir/n1.toml user add bob@localhost --password bob-secret

Connect a client as alice@localhost to 127.0.0.1 port ${NODE_PORTS[0]} (n1) and bob@localhost to
port ${NODE_PORTS[4]} (n3), accepting the self-signed certificate ($dir/n1/certs/localhost.crt),
and write to each other. Then:

  $XMPPCTL --config $dir/n1.toml nodes        # the three nodes and their leases
  $XMPPCTL --config $dir/n1.toml sessions     # every session, on every node
  $0 stop $dir n2    # stop one node (its clients get <system-shutdown/>)
  $0 start $dir       # starts again whatever is not running
  $0 status $dir
  $0 stop $dir
EOF
}

# --- stop --------------------------------------------------------------------------------------

# SIGTERM to each process of PIDFILE... that runs (xmppd: <system-shutdown/> to its clients,
# leave the cluster, exit 0), wait up to SECONDS for all, then SIGKILL (saying so).
stop_pids() { # SECONDS PIDFILE...
    local seconds=$1 file pid i
    shift
    local -a pids=() files=()
    local running
    for file in "$@"; do
        if alive "$file"; then
            pid=$(head -n 1 "$file")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            files+=("$file")
        fi
        rm -f "$file"
    done
    for ((i = 0; i < seconds * 10; i++)); do
        running=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then running=1; fi
        done
        ((running)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        pid=${pids[i]}
        if kill -0 "$pid" 2>/dev/null; then
            say "$(basename "${files[i]}" .pid) (pid $pid) did not stop in $seconds s: killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        say "stopped $(basename "${files[i]}" .pid) (pid $pid)"
    done
}

# Stops the named parts of the try-out (n1 n2 n3 redis postgres), the nodes first.
stop_parts() {
    local part
    local -a nodes=()
    for part in "$@"; do
        case $part in
        n[0-9])
            # Only a pid whose command line names this node's file: never another process.
            if alive "$dir/$part.pid" "$dir/$part.toml"; then
                nodes+=("$dir/$part.pid")
            else
                rm -f "$dir/$part.pid"
            fi
            ;;
        esac
    done
    if ((${#nodes[@]})); then
        stop_pids 20 "${nodes[@]}"
    fi
    for part in "$@"; do
        case $part in
        redis) stop_redis ;;
        postgres) stop_postgres ;;
        esac
    done
}

stop_redis() {
    if alive "$dir/redis.pid" redis-server; then
        local pid i
        pid=$(head -n 1 "$dir/redis.pid")
        if load_state; then # SHUTDOWN is quicker than SIGTERM
            redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        fi
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "$pid" >"$dir/redis.pid"
        if alive "$dir/redis.pid" redis-server; then stop_pids 10 "$dir/redis.pid" >/dev/null; fi
        say "stopped Redis (pid $pid)"
    fi
    rm -f "$dir/redis.pid"
}

stop_postgres() {
    sync_pg_pid
    if [[ -f $dir/postgres/data/postmaster.pid ]]; then
        find_services
        as_pg "$PG_BIN/pg_ctl" -D "$dir/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
        if alive "$dir/postgres.pid" postgres; then
            stop_pids 10 "$dir/postgres.pid" >/dev/null
        fi
        say "stopped PostgreSQL"
    fi
    rm -f "$dir/postgres.pid"
}

do_stop() {
    [[ -d $dir ]] || fail "no try-out in $dir"
    dir=$(cd "$dir" && pwd)
    if ((${#PARTS[@]})); then
        stop_parts "${PARTS[@]}"
    else
        stop_parts "${NODES[@]}" redis postgres
    fi
}

# --- status ------------------------------------------------------------------------------------

do_status() {
    [[ -d $dir ]] || fail "no try-out in $dir"
    dir=$(cd "$dir" && pwd)
    find_xmppd
    load_state || fail "no try-out in $dir (no tryout.env)"
    sync_pg_pid
    local running=0 i
    show() { # WHAT PIDFILE WORD WHERE
        if alive "$2" "$3"; then
            say "$1 runs (pid $(head -n 1 "$2"), $4)"
            running=$((running + 1))
        else
            say "$1 is not running"
        fi
    }
    show "Redis     " "$dir/redis.pid" redis-server "127.0.0.1:$REDIS_PORT"
    show "PostgreSQL" "$dir/postgres.pid" postgres "127.0.0.1:$PG_PORT"
    for i in 0 1 2; do
        show "${NODES[i]}        " "$dir/${NODES[i]}.pid" "${NODES[i]}.toml" \
            "127.0.0.1:${NODE_PORTS[2 * i]} and :${NODE_PORTS[2 * i + 1]}"
    done
    for i in 0 1 2; do
        if alive "$dir/${NODES[i]}.pid"; then
            say ""
            say "\$ xmppctl --config $dir/${NODES[i]}.toml nodes"
            "$XMPPCTL" --config "$dir/${NODES[i]}.toml" nodes || true
            break
        fi
    done
    ((running == 5)) || exit 3
}

case $command in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
esac
