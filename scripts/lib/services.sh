# Start, check and stop each local server. start_X is idempotent: if our process is already up it
# says so and returns; if a stranger holds the port it stops with the port and the variable.

SERVICES_ALL="postgres kafka kinesis kinesalite dynamodb sqs registry"

http_answers() { curl -s -o /dev/null -m 2 "$1"; }

start_kafka() {
  local port=$SUMMIT_KAFKA_PORT
  # Installed even when the broker already runs: tests start private brokers from the same
  # binary ($SUMMIT_TANSU_BIN), and the cache dir may be new while the broker is not.
  install_tansu
  our_pid kafka >/dev/null && { say "kafka (tansu) already running on 127.0.0.1:$port"; return 0; }
  require_free_port kafka "$port"
  # Memory storage: fast and leaves nothing behind; the broker is throwaway by design here.
  launch kafka "$CACHE_DIR/tansu/tansu" "$CACHE_DIR/tansu/tansu" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/"
  wait_until kafka 30 port_open "$port" || die "kafka (tansu) did not start; log: $LOG_DIR/kafka.log"
  say "kafka (tansu) up on 127.0.0.1:$port"
}

start_kinesis() {
  local port=$SUMMIT_KINESIS_PORT tls=$SUMMIT_KINESIS_TLS_PORT dir="$CACHE_DIR/node"
  our_pid kinesis >/dev/null && { say "kinesis (kinesis-local) already running on 127.0.0.1:$port"; return 0; }
  require_free_port kinesis "$port"
  require_free_port kinesis "$tls" SUMMIT_KINESIS_TLS_PORT
  install_node_tools
  local cert
  cert=$(find "$dir/node_modules/kinesis-local" -name server.json | head -1)
  [ -n "$cert" ] || die "kinesis-local@$KINESIS_LOCAL_VERSION ships no server.json certificate file"
  # Short lifecycle durations keep stream creation and resharding fast in tests; the shard limit
  # is raised because every test creates its own streams on one long-lived emulator.
  launch kinesis "$dir/node_modules/kinesis-local/main.js" env \
    KINESIS_MOCK_CERT_PATH="$cert" KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls" \
    CREATE_STREAM_DURATION=100ms DELETE_STREAM_DURATION=100ms UPDATE_SHARD_COUNT_DURATION=100ms \
    SPLIT_SHARD_DURATION=100ms MERGE_SHARDS_DURATION=100ms \
    REGISTER_STREAM_CONSUMER_DURATION=100ms DEREGISTER_STREAM_CONSUMER_DURATION=100ms \
    SHOULD_PERSIST_DATA=false LOG_LEVEL=WARN SHARD_LIMIT=10000 AWS_REGION="$SUMMIT_AWS_REGION" \
    node -r "$REPO_ROOT/scripts/lib/loopback-preload.cjs" "$dir/node_modules/kinesis-local/main.js"
  wait_until kinesis 60 port_open "$port" || die "kinesis-local did not start; log: $LOG_DIR/kinesis.log"
  say "kinesis (kinesis-local) up on 127.0.0.1:$port"
}

start_kinesalite() {
  local port=$SUMMIT_KINESALITE_PORT dir="$CACHE_DIR/node"
  our_pid kinesalite >/dev/null && { say "kinesalite already running on 127.0.0.1:$port"; return 0; }
  require_free_port kinesalite "$port"
  install_node_tools
  launch kinesalite "$REPO_ROOT/scripts/lib/kinesalite.cjs" \
    node -r "$REPO_ROOT/scripts/lib/loopback-preload.cjs" "$REPO_ROOT/scripts/lib/kinesalite.cjs" "$port" "$dir"
  wait_until kinesalite 30 port_open "$port" || die "kinesalite did not start; log: $LOG_DIR/kinesalite.log"
  say "kinesalite up on 127.0.0.1:$port"
}

start_dynamodb() {
  local port=$SUMMIT_DYNAMODB_PORT dir="$CACHE_DIR/node"
  our_pid dynamodb >/dev/null && { say "dynamodb (dynalite) already running on 127.0.0.1:$port"; return 0; }
  require_free_port dynamodb "$port"
  install_node_tools
  launch dynamodb "$dir/node_modules/dynalite/cli.js" \
    node -r "$REPO_ROOT/scripts/lib/loopback-preload.cjs" "$dir/node_modules/dynalite/cli.js" \
    --host 127.0.0.1 --port "$port" --createTableMs 50 --deleteTableMs 50 --updateTableMs 50
  wait_until dynamodb 30 port_open "$port" || die "dynalite did not start; log: $LOG_DIR/dynamodb.log"
  say "dynamodb (dynalite) up on 127.0.0.1:$port"
}

start_sqs() {
  local port=$SUMMIT_SQS_PORT
  our_pid sqs >/dev/null && { say "sqs (moto) already running on 127.0.0.1:$port"; return 0; }
  require_free_port sqs "$port"
  install_moto
  launch sqs "moto_server" "$CACHE_DIR/venv-moto/bin/moto_server" -H 127.0.0.1 -p "$port"
  wait_until sqs 60 http_answers "http://127.0.0.1:$port/moto-api/" || die "moto did not start; log: $LOG_DIR/sqs.log"
  say "sqs (moto) up on 127.0.0.1:$port"
}

# PostgreSQL: reuse one that already answers on the port and lets user postgres in without a
# password (a developer's or the CI machine's own server); otherwise a throwaway cluster under
# $DEV_DIR/pg that `down` removes. A server that wants a password (a stock `apt-get install
# postgresql`) is left alone and the throwaway cluster takes $SUMMIT_PG_FALLBACK_PORT instead;
# the port is recorded so `scripts/dev env` and later runs find it.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
pg_answers() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$1"; }
pg_trusts() {
  pg_answers "$1" && PGPASSWORD= psql -w -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1
}

use_pg_port() {
  SUMMIT_PG_PORT=$1
  export SUMMIT_PG_PORT SUMMIT_POSTGRES_URL="postgres://postgres@127.0.0.1:$1/postgres"
}

start_postgres() {
  local port=$SUMMIT_PG_PORT data="$DEV_DIR/pg/data" sock="$DEV_DIR/pg/sock" bin
  our_pid postgres >/dev/null && { say "postgres (throwaway cluster) already running on 127.0.0.1:$port"; return 0; }
  if pg_answers "$port"; then
    if pg_trusts "$port"; then
      say "postgres: reusing the server already on 127.0.0.1:$port"
      return 0
    fi
    warn "the PostgreSQL on 127.0.0.1:$port wants a password for user postgres; leaving it alone and starting a throwaway cluster on 127.0.0.1:$SUMMIT_PG_FALLBACK_PORT (SUMMIT_PG_FALLBACK_PORT)"
    port=$SUMMIT_PG_FALLBACK_PORT
    use_pg_port "$port"
  fi
  require_free_port postgres "$port"
  bin=$(pg_bin)
  [ -n "$bin" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
  mkdir -p "$DEV_DIR/pg" "$sock" "$LOG_DIR" "$RUN_DIR"
  local as=()
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root.
    chown -R postgres: "$DEV_DIR/pg"
    as=(runuser -u postgres --)
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    "${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >"$LOG_DIR/postgres-initdb.log" 2>&1 \
      || die "initdb failed; log: $LOG_DIR/postgres-initdb.log"
  fi
  touch "$LOG_DIR/postgres.log" && { [ "$(id -u)" != 0 ] || chown postgres: "$LOG_DIR/postgres.log"; }
  "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$LOG_DIR/postgres.log" -w -t 30 \
    -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
    || die "the throwaway PostgreSQL did not start; log: $LOG_DIR/postgres.log"
  echo "$(head -1 "$data/postmaster.pid") $data" > "$(pidfile postgres)"
  echo "$port" > "$RUN_DIR/postgres.port"
  say "postgres (throwaway cluster in $data) up on 127.0.0.1:$port"
}

stop_postgres() {
  local data="$DEV_DIR/pg/data" bin
  our_pid postgres >/dev/null || { rm -f "$(pidfile postgres)"; return 0; }
  bin=$(pg_bin)
  local as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || stop_pid postgres
  rm -f "$(pidfile postgres)" "$RUN_DIR/postgres.port"
  rm -rf "$DEV_DIR/pg"
  say "stopped postgres (throwaway cluster removed)"
}

# The project's own Confluent-compatible registry (crates/schema-registry-server), built from this
# checkout and stored in its own database on the Postgres above.
start_registry() {
  local port=$SUMMIT_REGISTRY_PORT db=summit_registry bin
  our_pid registry >/dev/null && { say "registry already running on 127.0.0.1:$port"; return 0; }
  require_free_port registry "$port"
  say "building the schema registry"
  cargo build --quiet -p schema-registry-server --bin schema-registry \
    || die "could not build the schema registry (cargo build -p schema-registry-server)"
  bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/schema-registry"
  psql -q -h 127.0.0.1 -p "$SUMMIT_PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || psql -q -h 127.0.0.1 -p "$SUMMIT_PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null \
    || die "could not create database $db for the registry on 127.0.0.1:$SUMMIT_PG_PORT"
  launch registry "$bin" env SUMMIT_REGISTRY_LISTEN="127.0.0.1:$port" \
    SUMMIT_REGISTRY_DATABASE_URL="postgres://postgres@127.0.0.1:$SUMMIT_PG_PORT/$db" "$bin"
  wait_until registry 60 http_answers "http://127.0.0.1:$port/subjects" \
    || die "the schema registry did not start; log: $LOG_DIR/registry.log"
  say "registry up on 127.0.0.1:$port"
}

start_service() {
  case "$1" in
    kafka|kinesis|kinesalite|dynamodb|sqs|postgres|registry) "start_$1" ;;
    *) die "unknown service '$1' (known: $SERVICES_ALL)" ;;
  esac
}

stop_service() {
  case "$1" in
    postgres) stop_postgres ;;
    *) stop_pid "$1" ;;
  esac
}

service_status() {
  local svc=$1 port pid
  port=$(port_of "$svc")
  if pid=$(our_pid "$svc"); then
    printf '  %-11s up        127.0.0.1:%-6s pid %s (started by scripts/dev)\n' "$svc" "$port" "$pid"
  elif [ "$svc" = postgres ] && pg_answers "$port"; then
    printf '  %-11s external  127.0.0.1:%-6s (an existing server, reused)\n' "$svc" "$port"
  elif port_open "$port"; then
    printf '  %-11s foreign   127.0.0.1:%-6s port held by a process scripts/dev did not start\n' "$svc" "$port"
  else
    printf '  %-11s down      127.0.0.1:%-6s (%s)\n' "$svc" "$port" "$(port_var "$svc")"
  fi
}
