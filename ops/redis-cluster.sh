#!/usr/bin/env bash
# A local Redis Cluster for tests and trials: 3 masters + 3 replicas of Debian's redis-server on
# 127.0.0.1, ports BASE_PORT..BASE_PORT+5 (cluster bus: +10000), everything under DIR.
#
#   ops/redis-cluster.sh start  DIR [BASE_PORT [MAXMEMORY]]   # default 7000, 256mb per node
#   ops/redis-cluster.sh stop   DIR
#   ops/redis-cluster.sh status DIR
#
# start: launches the nodes that are not running, creates the cluster the first time
#   (`redis-cli --cluster create ... --cluster-replicas 1`), and waits (bounded, 60 s) until every
#   node reports cluster_state:ok. Idempotent: on a running cluster it only checks the state; after
#   `stop` it restarts the same nodes from their nodes.conf (same ids and roles; data is not
#   persisted, so the restarted cluster is empty). BASE_PORT and MAXMEMORY are remembered in DIR.
# stop: shuts down (SHUTDOWN NOSAVE, then SIGKILL after 10 s) only the processes whose pid files
#   are in DIR. Leaves DIR in place (remove it yourself).
# status: one line per node `port pid role state` (pid 0 and state down when not running);
#   exit 0 when all six run and the cluster is ok, 1 otherwise.
#
# Memory: each node gets `maxmemory MAXMEMORY` with `maxmemory-policy allkeys-lru`, so a full
# node evicts its least recently used keys rather than refusing writes (docs/scale-out.md).
# `cluster-node-timeout` is 2000 ms: a replica takes over ~2-4 s after its master dies.
# No root needed; nothing listens outside loopback.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR [BASE_PORT [MAXMEMORY]]" >&2; exit 2; }
(($# >= 2)) || usage
cmd=$1
dir=$2
nodes=6

die() { echo "redis-cluster: $*" >&2; exit 1; }

port_of() { echo $((base + $1)); }
pid_file() { echo "$dir/redis-$1.pid"; }

# Prints the pid of the node on port $1 if that process is alive (and is a redis-server).
live_pid() {
  local f pid
  f=$(pid_file "$1")
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

cli() { local p=$1; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$p" "$@"; }

load_settings() {
  [[ -s $dir/cluster.env ]] || die "$dir has no cluster (run start first)"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
}

cluster_ok_on() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'; }

all_ok() {
  local i
  for ((i = 0; i < nodes; i++)); do
    live_pid "$(port_of $i)" >/dev/null || return 1
    cluster_ok_on "$(port_of $i)" || return 1
  done
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -s $dir/cluster.env ]]; then
    load_settings
    [[ -z ${1:-} || $1 == "$base" ]] || die "$dir already holds a cluster on base port $base"
  else
    base=${1:-7000}
    maxmemory=${2:-256mb}
    if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + nodes - 1 + 10000 > 65535)); then
      die "BASE_PORT must be 1024..$((65535 - 10000 - nodes + 1))"
    fi
    printf 'base=%s\nmaxmemory=%s\n' "$base" "$maxmemory" >"$dir/cluster.env"
  fi

  local i p
  for ((i = 0; i < nodes; i++)); do
    p=$(port_of $i)
    live_pid "$p" >/dev/null && continue
    mkdir -p "$dir/$p"
    cat >"$dir/$p/redis.conf" <<CONF
bind 127.0.0.1
port $p
protected-mode yes
daemonize yes
pidfile $(pid_file "$p")
logfile $dir/$p/redis.log
dir $dir/$p
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 2000
cluster-require-full-coverage yes
save ""
appendonly no
maxmemory $maxmemory
maxmemory-policy allkeys-lru
CONF
    redis-server "$dir/$p/redis.conf" || die "redis-server on port $p did not start ($dir/$p/redis.log)"
  done

  # Every node must answer before the cluster is created or checked.
  local deadline=$((SECONDS + 20))
  for ((i = 0; i < nodes; i++)); do
    p=$(port_of $i)
    until cli "$p" ping 2>/dev/null | grep -q PONG; do
      ((SECONDS < deadline)) || die "node $p does not answer PING ($dir/$p/redis.log)"
      ! grep -q aborting "$dir/$p/redis.log" 2>/dev/null || die "node $p: $(grep -m1 '#' "$dir/$p/redis.log")"
      sleep 0.1
    done
  done

  if [[ ! -e $dir/created ]]; then
    local addrs=()
    for ((i = 0; i < nodes; i++)); do addrs+=("127.0.0.1:$(port_of $i)"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
      die "redis-cli --cluster create failed: $(tail -5 "$dir/create.log")"
    touch "$dir/created"
  fi

  deadline=$((SECONDS + 60))
  until all_ok; do
    ((SECONDS < deadline)) || { status >&2 || true; die "cluster not ok after 60 s"; }
    sleep 0.1
  done
  echo "redis-cluster: ok on 127.0.0.1:$base-$((base + nodes - 1)) ($dir)"
}

stop() {
  [[ -d $dir ]] || return 0
  [[ -s $dir/cluster.env ]] || return 0
  load_settings
  local i p pid pids=()
  for ((i = 0; i < nodes; i++)); do
    p=$(port_of $i)
    pid=$(live_pid "$p") || continue
    pids+=("$pid")
    cli "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then kill -9 "$pid" 2>/dev/null || true; break; fi
      sleep 0.05
    done
  done
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done
  for ((i = 0; i < nodes; i++)); do rm -f "$(pid_file "$(port_of $i)")"; done
}

status() {
  load_settings
  local i p pid role state rc=0
  for ((i = 0; i < nodes; i++)); do
    p=$(port_of $i)
    if pid=$(live_pid "$p"); then
      role=$(cli "$p" role 2>/dev/null | head -1 | tr -d '\r') || role=unknown
      state=$(cli "$p" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p') || state=unknown
      [[ $state == ok ]] || rc=1
    else
      pid=0 role=- state=down rc=1
    fi
    echo "$p $pid ${role:-unknown} ${state:-unknown}"
  done
  return $rc
}

case $cmd in
  start) start "${3:-}" "${4:-}" ;;
  stop) stop ;;
  status) [[ -d $dir ]] || die "no such directory: $dir"; status ;;
  *) usage ;;
esac
