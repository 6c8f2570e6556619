#!/usr/bin/env bash
# Private PostgreSQL+PostGIS and Redis instances for development and tests.
#
#   bash deploy/local/services.sh start|stop|env|status
#
# Ports: LIAISON_PG_PORT (default 55432), LIAISON_REDIS_PORT (default 56379).
# If DATABASE_URL / CELERY_BROKER_URL are set, that service is left to the user.
#
# Each checkout starts, reuses and stops only its own servers: the ones its pid files name
# (.local/pg/postmaster.pid, .local/redis/redis.pid) when that pid is alive, is that server, serves this
# checkout's data directory and listens on the port asked for. A port answered by anything else is
# never reused nor shut down: `start` says who holds it and exits 1, `stop` leaves it alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
LOCAL="$ROOT/.local"
ENV_FILE="$LOCAL/services.env"
PG_PORT="${LIAISON_PG_PORT:-55432}"
REDIS_PORT="${LIAISON_REDIS_PORT:-56379}"
REDIS_DIR="$LOCAL/redis"
PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/liaison"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

die() { echo "services.sh: $*" >&2; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no tool needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# "redis-server (pid 123)" for the process listening on port $1, when ss can tell; else "another process".
port_holder() {
    local found=""
    if command -v ss >/dev/null; then
        found="$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 |
            sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1 (pid \2)/')" || true
    fi
    echo "${found:-another process}"
}

# One sentence and exit 1: the port belongs to someone else.
port_taken() {
    local what="$1" port="$2" variable="$3"
    die "port $port is taken by $(port_holder "$port"), which is not this checkout's $what; stop it or set $variable to a free port."
}

# ---------------------------------------------------------------- packages

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -q
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Highest PostgreSQL major that has server binaries, or nothing.
pg_major() {
    local f
    for f in /usr/lib/postgresql/*/bin/postgres; do
        if [ -x "$f" ]; then basename "$(dirname "$(dirname "$f")")"; fi
    done | sort -n | tail -n 1
}

install_postgres() {
    local major pkgs=()
    if [ -z "$(pg_major)" ]; then
        apt_install postgresql
    fi
    major="$(pg_major)"
    [ -n "$major" ] || die "no PostgreSQL server found under /usr/lib/postgresql after installing."
    pkg_installed "postgresql-$major-postgis-3" || pkgs+=("postgresql-$major-postgis-3")
    # postgresql-contrib is only a metapackage on modern releases and may not
    # exist at all; install it only when apt knows the name.
    if ! pkg_installed postgresql-contrib && apt-cache show postgresql-contrib >/dev/null 2>&1; then
        pkgs+=(postgresql-contrib)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        apt_install "${pkgs[@]}"
    fi
}

install_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
}

# -------------------------------------------------------------- postgresql

# Run a command as the postgres OS user (from / so it never complains about
# not being able to enter root's cwd). fd 9 is the start/stop lock: a server
# inheriting it would hold the lock forever.
as_pg() { (cd / && runuser -u postgres -- "$@" 9>&-); }

# Real data directory: .local/pg, or the target of the .local/pg symlink.
pg_data() {
    if [ -L "$LOCAL/pg" ]; then
        readlink -f "$LOCAL/pg"
    else
        echo "$LOCAL/pg"
    fi
}

# Create the data directory where the postgres user can reach it.
prepare_pg_dir() {
    local hash real
    mkdir -p "$LOCAL"
    if [ -e "$LOCAL/pg" ] || [ -L "$LOCAL/pg" ]; then
        return
    fi
    if runuser -u postgres -- test -x "$LOCAL" 2>/dev/null; then
        mkdir "$LOCAL/pg"
        chown postgres:postgres "$LOCAL/pg"
        chmod 700 "$LOCAL/pg"
    else
        # The checkout sits below a directory postgres cannot traverse
        # (e.g. /root); keep the cluster elsewhere and link to it.
        hash="$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)"
        real="/var/lib/liaison-grid/$hash/pg"
        mkdir -p "$real"
        chmod 755 /var/lib/liaison-grid "/var/lib/liaison-grid/$hash"
        chown postgres:postgres "$real"
        chmod 700 "$real"
        ln -s "$real" "$LOCAL/pg"
    fi
}

# Binaries matching the cluster's version (falls back to the newest install).
pg_bin() {
    local data="$1" ver
    if [ -f "$data/PG_VERSION" ]; then
        ver="$(cat "$data/PG_VERSION")"
    else
        ver="$(pg_major)"
    fi
    echo "/usr/lib/postgresql/$ver/bin"
}

# True when postmaster.pid names a live postgres serving this data directory.
# Checking the process (not just the pid) matters after a reboot or container
# restart, where the old pid may now belong to something else.
pg_running() {
    local data="$1" pid
    [ -f "$data/postmaster.pid" ] || return 1
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null)"
    [ -n "$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] || return 1
    grep -qzxF -- "$data" "/proc/$pid/cmdline" 2>/dev/null
}

# The port this checkout's running server listens on (line 4 of postmaster.pid).
pg_port_of() { sed -n 4p "$1/postmaster.pid" 2>/dev/null; }

start_postgres() {
    local data bin locale i running_port
    install_postgres
    prepare_pg_dir
    data="$(pg_data)"
    bin="$(pg_bin "$data")"
    [ -x "$bin/postgres" ] || die "no PostgreSQL server binaries in $bin for the cluster in $data."

    if pg_running "$data"; then
        running_port="$(pg_port_of "$data")"
        [ "$running_port" = "$PG_PORT" ] ||
            die "this checkout's PostgreSQL already runs on port $running_port, not $PG_PORT; run 'bash deploy/local/services.sh stop' first or set LIAISON_PG_PORT=$running_port."
    elif port_open "$PG_PORT"; then
        port_taken PostgreSQL "$PG_PORT" LIAISON_PG_PORT
    fi

    if [ ! -f "$data/PG_VERSION" ]; then
        if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; else locale=C; fi
        as_pg "$bin/initdb" -D "$data" --auth=trust -U postgres -E UTF8 --locale="$locale" >/dev/null
        as_pg mkdir -p "$data/run" "$data/log"
    fi

    if ! pg_running "$data"; then
        # A pid file left by a killed server (or whose pid got reused) would
        # make postgres refuse to start.
        rm -f "$data/postmaster.pid" "$data/run/.s.PGSQL."*
        if ! as_pg "$bin/pg_ctl" -D "$data" -l "$data/log/postgres.log" -w -t 60 \
            -o "-p $PG_PORT -k '$data/run'" \
            -o "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" \
            -o "-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB" \
            start >/dev/null; then
            tail -n 20 "$data/log/postgres.log" >&2 || true
            die "PostgreSQL failed to start; see $data/log/postgres.log."
        fi
    fi

    for i in $(seq 1 60); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres && break
        [ "$i" = 60 ] && die "PostgreSQL on port $PG_PORT did not become ready."
        sleep 0.5
    done

    if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
        "select 1 from pg_database where datname = 'liaison'")" ]; then
        "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "create database liaison"
    fi
}

stop_postgres() {
    local data=""
    [ -e "$LOCAL/pg" ] && data="$(pg_data)"
    if [ -n "$data" ] && pg_running "$data"; then
        as_pg "$(pg_bin "$data")/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    elif port_open "$PG_PORT"; then
        echo "services.sh: left $(port_holder "$PG_PORT") on port $PG_PORT running: it is not this checkout's PostgreSQL." >&2
    fi
}

# ------------------------------------------------------------------- redis

REDIS_PID="$REDIS_DIR/redis.pid"

# The pid in this checkout's pid file when it is a live redis-server working in this checkout's
# directory (a pid left from before a reboot may belong to anything now); else nothing, status 1.
redis_ours() {
    local pid
    [ -f "$REDIS_PID" ] || return 1
    pid="$(tr -dc '0-9' <"$REDIS_PID")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] || return 1
    [ "$(readlink -f "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$REDIS_DIR")" ] || return 1
    echo "$pid"
}

# The process id of the Redis answering on $REDIS_PORT, as it reports it (nothing if none answers).
redis_pid_on_port() {
    command -v redis-cli >/dev/null || return 0
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'
}

start_redis() {
    local pid i
    install_redis
    if pid="$(redis_ours)"; then
        [ "$(redis_pid_on_port)" = "$pid" ] && return 0
        die "this checkout's Redis (pid $pid) does not answer on port $REDIS_PORT; run 'bash deploy/local/services.sh stop' first or set LIAISON_REDIS_PORT to its port."
    fi
    if port_open "$REDIS_PORT"; then
        port_taken Redis "$REDIS_PORT" LIAISON_REDIS_PORT
    fi
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PID"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
        --save "" --appendonly no --daemonize yes \
        --pidfile "$REDIS_PID" --logfile "$REDIS_DIR/redis.log" 9>&-
    for i in $(seq 1 40); do
        if pid="$(redis_ours)" && [ "$(redis_pid_on_port)" = "$pid" ]; then
            return 0
        fi
        sleep 0.25
    done
    tail -n 20 "$REDIS_DIR/redis.log" >&2 || true
    die "Redis on port $REDIS_PORT did not answer PING; see $REDIS_DIR/redis.log."
}

stop_redis() {
    local pid i
    if pid="$(redis_ours)"; then
        kill -TERM "$pid"
        for i in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -0 "$pid" 2>/dev/null && die "Redis (pid $pid) did not stop within 10 s."
        rm -f "$REDIS_PID"
    elif port_open "$REDIS_PORT"; then
        echo "services.sh: left $(port_holder "$REDIS_PORT") on port $REDIS_PORT running: it is not this checkout's Redis." >&2
    fi
}

# ---------------------------------------------------------------- commands

# Serialise concurrent start/stop runs (e.g. parallel make targets).
lock() {
    mkdir -p "$LOCAL"
    exec 9>>"$LOCAL/services.lock"
    flock 9
}

cmd_start() {
    local db broker tmp
    lock
    if [ -n "${DATABASE_URL:-}" ]; then
        db="$DATABASE_URL"
    else
        start_postgres
        db="$PG_URL"
    fi
    if [ -n "${CELERY_BROKER_URL:-}" ]; then
        broker="$CELERY_BROKER_URL"
    else
        start_redis
        broker="$REDIS_URL"
    fi

    tmp="$(printf 'DATABASE_URL=%s\nCELERY_BROKER_URL=%s\n' "$db" "$broker")"
    if [ ! -f "$ENV_FILE" ] || [ "$(cat "$ENV_FILE")" != "$tmp" ]; then
        printf '%s\n' "$tmp" >"$ENV_FILE"
    fi
    echo "database: $db"
    echo "broker: $broker"
}

cmd_stop() {
    lock
    stop_postgres
    stop_redis
}

cmd_env() {
    [ -f "$ENV_FILE" ] || { echo "Services were never started; run 'bash deploy/local/services.sh start' first." >&2; exit 2; }
    cat "$ENV_FILE"
}

cmd_status() {
    local data pid
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "postgres: external ($DATABASE_URL)"
    elif [ -e "$LOCAL/pg" ] && data="$(pg_data)" && pg_running "$data"; then
        echo "postgres: running on 127.0.0.1:$(pg_port_of "$data") (data $data)"
    elif port_open "$PG_PORT"; then
        echo "postgres: not running; port $PG_PORT is taken by $(port_holder "$PG_PORT")"
    else
        echo "postgres: not running"
    fi
    if [ -n "${CELERY_BROKER_URL:-}" ]; then
        echo "redis: external ($CELERY_BROKER_URL)"
    elif pid="$(redis_ours)"; then
        echo "redis: running (pid $pid, directory $REDIS_DIR)"
    elif port_open "$REDIS_PORT"; then
        echo "redis: not running; port $REDIS_PORT is taken by $(port_holder "$REDIS_PORT")"
    else
        echo "redis: not running"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    status) cmd_status ;;
    *) echo "usage: bash deploy/local/services.sh start|stop|env|status" >&2; exit 2 ;;
esac
