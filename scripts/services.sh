#!/usr/bin/env bash
# Local PostgreSQL, single-node Apache Kafka (KRaft) and Redis (the API's shared rate-limit
# counters) on 127.0.0.1, for `make run`, `make test`, benchmarks and CI.
#
#   scripts/services.sh up       install what is missing, start all three, wait until each answers
#   scripts/services.sh down     stop what this script started (and nothing else)
#   scripts/services.sh status   say what is running
#   (`up` also installs promtool, Chromium and LibreOffice Calc, which the monitoring, browser
#   and spreadsheet tests use)
#   scripts/services.sh pg-up                      PostgreSQL only (make test-fast)
#   scripts/services.sh kafka-restart | pg-restart   used by fault tests
#   scripts/services.sh replica-up | replica-down | replica-pause | replica-resume
#                                a streaming replica on 127.0.0.1:5433 (read-replica tests)
#
# Idempotent: `up` on a running stack only checks it. Kafka's jars are resolved from
# Maven Central once (scripts/kafka/pom.xml) and cached in .cache/kafka/libs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SERVICES_STATE_DIR:-$ROOT/.cache/services}"
KAFKA_CACHE="$ROOT/.cache/kafka"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_DATA="$STATE/kafka-data"
KAFKA_LOG="$STATE/kafka.log"
KAFKA_PID="$STATE/kafka.pid"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${DB_PORT:-5432}"
DB_NAME="${DB_NAME:-helios_analytics}"
DB_USER="${DB_USER:-helios}"
DB_PASSWORD="${DB_PASSWORD:-helios}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_PID="$STATE/redis.pid"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  log "installing $* from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -f "$STATE/.apt-updated" ]; then apt-get update -qq >&2 && touch "$STATE/.apt-updated"; fi
  apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- PostgreSQL
pg_version() {
  ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

pg_up() {
  command -v pg_ctlcluster >/dev/null && [ -n "$(pg_version)" ] || apt_install postgresql
  local ver; ver="$(pg_version)"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$ver main"; then
    log "creating PostgreSQL $ver cluster 'main'"
    pg_createcluster "$ver" main >&2
  fi
  if pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    log "PostgreSQL $ver already running"
  else
    log "starting PostgreSQL $ver on 127.0.0.1:$PG_PORT"
    pg_ctlcluster "$ver" main start -o "-c listen_addresses=127.0.0.1 -p $PG_PORT"
    touch "$STATE/pg.started-by-us"
  fi
  for _ in $(seq 1 60); do
    as_postgres pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
  done
  as_postgres pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL does not answer on 127.0.0.1:$PG_PORT (see /var/log/postgresql/)"
  # Role (may create the test databases, and the read-only reporting role: create_reporting_role)
  # and database, idempotently.
  as_postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 -d postgres \
    -v user="$DB_USER" -v pass="$DB_PASSWORD" -v db="$DB_NAME" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB CREATEROLE PASSWORD %L', :'user', :'pass')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB CREATEROLE PASSWORD %L', :'user', :'pass') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  log "PostgreSQL ready: postgres://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME"
}

pg_down() {
  if [ -f "$STATE/pg.started-by-us" ]; then
    log "stopping PostgreSQL"
    pg_ctlcluster "$(pg_version)" main stop || true
    rm -f "$STATE/pg.started-by-us"
  else
    log "PostgreSQL was not started by this script; leaving it alone"
  fi
}

pg_restart() {
  local ver; ver="$(pg_version)"
  pg_ctlcluster "$ver" main restart -m fast -o "-c listen_addresses=127.0.0.1 -p $PG_PORT"
}

# ---------------------------------------------------------------- PostgreSQL streaming replica
# A hot standby of the local cluster on 127.0.0.1:$REPLICA_PORT (pg_basebackup, then
# streaming), for the API's read-replica routing (DB_REPLICA_HOST). Not part of `up`: the
# tests that need it start it.
REPLICA_PORT="${DB_REPLICA_PORT:-5433}"
REPLICA_DIR="/var/lib/postgresql/analytics-replica"

replica_bin() { echo "/usr/lib/postgresql/$(pg_version)/bin"; }

replica_up() {
  pg_up
  if as_postgres pg_isready -q -h 127.0.0.1 -p "$REPLICA_PORT"; then
    log "replica already answers on 127.0.0.1:$REPLICA_PORT"
    return 0
  fi
  # Always a fresh copy: a standby left stopped may need WAL the primary has recycled since.
  log "copying the cluster into a standby at $REPLICA_DIR (pg_basebackup)"
  rm -rf "$REPLICA_DIR"
  as_postgres "$(replica_bin)/pg_basebackup" -p "$PG_PORT" -D "$REPLICA_DIR" -R -X stream -c fast
  local hba; hba="$(as_postgres psql -At -p "$PG_PORT" -d postgres -c 'SHOW hba_file')"
  cp "$hba" "$REPLICA_DIR/pg_hba.conf" && chown postgres: "$REPLICA_DIR/pg_hba.conf"
  as_postgres tee "$REPLICA_DIR/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $REPLICA_PORT
unix_socket_directories = '$REPLICA_DIR'
hot_standby = on
hba_file = '$REPLICA_DIR/pg_hba.conf'
CONF
  log "starting the replica on 127.0.0.1:$REPLICA_PORT"
  as_postgres "$(replica_bin)/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_DIR/replica.log" -w -t 60 start >&2
  as_postgres pg_isready -q -h 127.0.0.1 -p "$REPLICA_PORT" || die "the replica does not answer; see $REPLICA_DIR/replica.log"
  log "replica ready: postgres://$DB_USER@127.0.0.1:$REPLICA_PORT/$DB_NAME (read-only, streaming)"
}

replica_down() {
  if [ -f "$REPLICA_DIR/postmaster.pid" ]; then
    log "stopping the replica"
    as_postgres "$(replica_bin)/pg_ctl" -D "$REPLICA_DIR" -m fast -w stop >&2 || true
  fi
}

replica_sql() { as_postgres psql -At -h "$REPLICA_DIR" -p "$REPLICA_PORT" -d postgres -c "$1"; }

# ---------------------------------------------------------------- Kafka
kafka_fetch() {
  if [ -f "$KAFKA_LIBS/.complete" ] && cmp -s "$ROOT/scripts/kafka/pom.xml" "$KAFKA_LIBS/.complete"; then
    return
  fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "fetching Apache Kafka jars from Maven Central into $KAFKA_LIBS (once)"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  if ! mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime >"$STATE/mvn.log" 2>&1; then
    tail -n 30 "$STATE/mvn.log" >&2
    die "could not fetch the Kafka jars with Maven (full log: $STATE/mvn.log)"
  fi
  cp "$ROOT/scripts/kafka/pom.xml" "$KAFKA_LIBS/.complete"
}

kafka_running() { [ -f "$KAFKA_PID" ] && kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null; }

kafka_config() {
  mkdir -p "$STATE"
  sed -e "s#@DATA@#$KAFKA_DATA#" -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CPORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$ROOT/scripts/kafka/server.properties" > "$STATE/server.properties"
}

kafka_start() {
  kafka_config
  local java_cp="$KAFKA_LIBS/*"
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    rm -rf "$KAFKA_DATA"
    local cluster_id; cluster_id="$(java -cp "$java_cp" kafka.tools.StorageTool random-uuid)"
    java -cp "$java_cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" >/dev/null
  fi
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_LOG)"
  # setsid: the broker outlives this script and gets no terminal signals.
  setsid java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.yaml" \
    -cp "$java_cp" kafka.Kafka "$STATE/server.properties" >"$KAFKA_LOG" 2>&1 < /dev/null &
  echo $! > "$KAFKA_PID"
}

kafka_wait() {
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  while [ $SECONDS -lt $deadline ]; do
    if ! kafka_running; then
      log "Kafka exited during start-up; last lines of $KAFKA_LOG:"
      tail -n 30 "$KAFKA_LOG" >&2 || true
      exit 1
    fi
    # The client port opens only once the broker is registered and unfenced;
    # a Metadata request proves it serves clients.
    if port_open "$KAFKA_PORT" && kafka_metadata_ok; then
      log "Kafka ready: 127.0.0.1:$KAFKA_PORT"
      return
    fi
    sleep 0.5
  done
  log "Kafka did not answer within the timeout; last lines of $KAFKA_LOG:"
  tail -n 30 "$KAFKA_LOG" >&2 || true
  exit 1
}

kafka_metadata_ok() {
  # Before the virtualenv exists (first `up`), an open client port is the best signal we have.
  local py="$ROOT/.venv/bin/python"
  [ -x "$py" ] || return 0
  "$py" - "$KAFKA_PORT" <<'PY' 2>/dev/null
import sys
from kafka import KafkaAdminClient
client = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}", request_timeout_ms=3000)
client.describe_cluster()
client.close()
PY
}

kafka_up() {
  mkdir -p "$STATE"
  if kafka_running; then
    log "Kafka already running (pid $(cat "$KAFKA_PID"))"
  elif port_open "$KAFKA_PORT"; then
    log "something else already listens on 127.0.0.1:$KAFKA_PORT; using it as the broker"
    return
  else
    kafka_fetch
    kafka_start
  fi
  kafka_wait
}

kafka_down() {
  if kafka_running; then
    local pid; pid="$(cat "$KAFKA_PID")"
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  else
    log "Kafka was not started by this script; leaving it alone"
  fi
  rm -f "$KAFKA_PID"
}

# ---------------------------------------------------------------- Redis
redis_running() { [ -f "$REDIS_PID" ] && kill -0 "$(cat "$REDIS_PID")" 2>/dev/null; }

redis_up() {
  if port_open "$REDIS_PORT"; then
    redis_running || log "Redis already answers on 127.0.0.1:$REDIS_PORT (not started by this script); using it"
    return 0
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on 127.0.0.1:$REDIS_PORT (in memory only)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$STATE/redis.log" --dir "$STATE"
  for _ in $(seq 1 50); do port_open "$REDIS_PORT" && { log "Redis ready: redis://127.0.0.1:$REDIS_PORT/0"; return 0; }; sleep 0.1; done
  die "Redis did not start; see $STATE/redis.log"
}

redis_down() {
  if redis_running; then
    log "stopping Redis (pid $(cat "$REDIS_PID"))"
    kill -TERM "$(cat "$REDIS_PID")"
    for _ in $(seq 1 50); do redis_running || break; sleep 0.1; done
  fi
  rm -f "$REDIS_PID"
}

# ---------------------------------------------------------------- tools the tests run
tools_up() {
  # promtool checks and unit-tests the Prometheus alert rules (monitoring/).
  command -v promtool >/dev/null || apt_install prometheus
  # The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
  command -v chromium >/dev/null || apt_install chromium fonts-dejavu-core
  # The Excel exports are opened by a real spreadsheet program in a test (headless Calc).
  command -v soffice >/dev/null || apt_install libreoffice-calc-nogui
}

status() {
  local ver; ver="$(pg_version || true)"
  if [ -n "$ver" ] && pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    echo "postgresql: running (cluster $ver/main, 127.0.0.1:$PG_PORT)"
  else
    echo "postgresql: stopped"
  fi
  # What answers on each port, and whether this checkout started it (`up` uses either).
  if kafka_running; then
    echo "kafka: running (pid $(cat "$KAFKA_PID"), started by this checkout, 127.0.0.1:$KAFKA_PORT)"
  elif port_open "$KAFKA_PORT"; then
    echo "kafka: a broker answers on 127.0.0.1:$KAFKA_PORT (not started by this checkout; 'up' uses it)"
  else
    echo "kafka: stopped"
  fi
  if as_postgres pg_isready -q -h 127.0.0.1 -p "$REPLICA_PORT" 2>/dev/null; then echo "replica: running (127.0.0.1:$REPLICA_PORT)"; else echo "replica: stopped"; fi
  if redis_running; then
    echo "redis: running (pid $(cat "$REDIS_PID"), started by this checkout, 127.0.0.1:$REDIS_PORT)"
  elif port_open "$REDIS_PORT"; then
    echo "redis: a server answers on 127.0.0.1:$REDIS_PORT (not started by this checkout; 'up' uses it)"
  else
    echo "redis: stopped"
  fi
}

# ---------------------------------------------------------------- this checkout's data
# DB_NAME's database and KAFKA_TOPIC_AUCTION_OUTCOMES's topic, dropped: the next `make run`
# starts empty. Refuses the service's production defaults, which are never a checkout's.
drop_data() {
  local topic="${KAFKA_TOPIC_AUCTION_OUTCOMES:-}"
  case "$DB_NAME" in helios_analytics|"") die "DB_NAME=$DB_NAME is not a checkout's own database; run this through 'make clean-data'" ;; esac
  if as_postgres pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
    PGOPTIONS="-c client_min_messages=warning" as_postgres psql -q -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 \
      -v db="$DB_NAME" >/dev/null <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SQL
    log "dropped database $DB_NAME"
  fi
  if [ -n "$topic" ] && [ "$topic" != "auction_outcomes" ] && port_open "$KAFKA_PORT"; then
    "$ROOT/.venv/bin/python" - "$topic" "127.0.0.1:$KAFKA_PORT" <<'PY'
import sys
from kafka import KafkaAdminClient
from kafka.errors import UnknownTopicOrPartitionError
admin = KafkaAdminClient(bootstrap_servers=sys.argv[2])
try:
    admin.delete_topics([sys.argv[1]])
except UnknownTopicOrPartitionError:
    pass
admin.close()
PY
    log "deleted topic $topic"
  fi
}

mkdir -p "$STATE"
case "${1:-}" in
  up) pg_up; kafka_up; redis_up; tools_up ;;
  down) kafka_down; replica_down; pg_down; redis_down ;;
  pg-up) pg_up ;;
  replica-up) replica_up ;;
  replica-down) replica_down ;;
  replica-pause) replica_sql "SELECT pg_wal_replay_pause()" >/dev/null ;;
  replica-resume) replica_sql "SELECT pg_wal_replay_resume()" >/dev/null ;;
  status) status ;;
  kafka-restart) kafka_down; kafka_start; kafka_wait ;;
  kafka-stop) kafka_down ;;
  kafka-start) kafka_start; kafka_wait ;;
  pg-restart) pg_restart ;;
  drop-data) drop_data ;;
  *) echo "usage: $0 up|down|status|pg-up|drop-data|kafka-restart|kafka-stop|kafka-start|pg-restart|replica-up|replica-down|replica-pause|replica-resume" >&2; exit 2 ;;
esac
