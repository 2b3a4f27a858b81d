#!/usr/bin/env bash
# The whole pipeline in the foreground: migrations, a producer of realistic auction
# outcomes, the consumer, the API (gunicorn) and the worker (scheduled reports, alerts), with
# the same entrypoint as the image; with no EMAIL_HOST, a local mail sink that keeps each
# message as a file.
# Ctrl-C stops everything this script started. Called by `make run` after services are up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHON="$ROOT/.venv/bin/python"
export GUNICORN_BIND="${GUNICORN_BIND:-127.0.0.1:8000}"
export CONSUMER_METRICS_PORT="${CONSUMER_METRICS_PORT:-9108}"
export CONSUMER_METRICS_ADDR="${CONSUMER_METRICS_ADDR:-127.0.0.1}"
export CONSUMER_HEALTH_FILE="${CONSUMER_HEALTH_FILE:-$ROOT/.cache/consumer.alive}"
export WORKER_HEALTH_FILE="${WORKER_HEALTH_FILE:-$ROOT/.cache/worker.alive}"
# The live role (uvicorn) beside gunicorn; the dashboard (on GUNICORN_BIND) reads its stream
# with its session cookie (same host, another port: an allowed origin).
export LIVE_HOST=127.0.0.1 LIVE_PORT="${LIVE_PORT:-8001}"
export LIVE_URL="${LIVE_URL:-http://${GUNICORN_BIND%:*}:$LIVE_PORT/api/live/}"
export LIVE_ALLOWED_ORIGINS="${LIVE_ALLOWED_ORIGINS:-http://$GUNICORN_BIND}"
RATE="${SIMULATOR_RATE:-200}"
MAIL_DIR="$ROOT/.cache/mail"
LOGS="$ROOT/.cache/run"
mkdir -p "$LOGS"

pids=()
cleanup() {
  trap - INT TERM EXIT
  [ "${#pids[@]}" -gt 0 ] || return 0  # nothing started yet (e.g. a busy port)
  echo
  echo "stopping producer, consumer, API and worker…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped (PostgreSQL, Kafka and Redis keep running; 'scripts/services.sh down' stops them)"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

ports=("${GUNICORN_BIND##*:}" "$CONSUMER_METRICS_PORT" "$LIVE_PORT")
[ -z "${EMAIL_HOST:-}" ] && ports+=("${EMAIL_PORT:-1025}")
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use on 127.0.0.1; stop what holds it (or set GUNICORN_BIND / CONSUMER_METRICS_PORT / LIVE_PORT / EMAIL_PORT)" >&2
    exit 1
  fi
done

"$PYTHON" manage.py migrate_locked --noinput
# The topic exists before the consumer and the producer start (no "not found in cluster
# metadata" errors while the broker would auto-create it).
"$PYTHON" manage.py create_topic --partitions "${KAFKA_PARTITIONS:-3}"
# Reports in one currency: simulated reference rates, loaded as real ECB files are.
export REPORTING_CURRENCY="${REPORTING_CURRENCY-USD}"
"$PYTHON" manage.py simulate_fx_rates .cache/fx/simulated-eurofxref-hist.csv >/dev/null
"$PYTHON" manage.py load_fx_rates .cache/fx/simulated-eurofxref-hist.csv
# The simulated exchange runs second-price auctions (outcomes/simulation.py).
export AUCTION_TYPE="${AUCTION_TYPE-second_price}"
# A local admin account, so the admin pages can be tried at once (DEBUG only).
if [ "${DEBUG:-}" = "true" ]; then
  DJANGO_SUPERUSER_PASSWORD=admin "$PYTHON" manage.py createsuperuser --noinput --username admin \
    --email admin@localhost >/dev/null 2>&1 || true
fi

# Mail: the SMTP server named by EMAIL_HOST, or a local sink keeping each message in .cache/mail/.
if [ -z "${EMAIL_HOST:-}" ]; then
  export EMAIL_HOST=127.0.0.1 EMAIL_PORT="${EMAIL_PORT:-1025}"
  "$PYTHON" scripts/mail_sink.py --port "$EMAIL_PORT" --dir "$MAIL_DIR" >"$LOGS/mail.log" 2>&1 &
  pids+=($!)
  MAIL="local sink 127.0.0.1:$EMAIL_PORT, each message a file in $MAIL_DIR/"
else
  MAIL="$EMAIL_HOST:${EMAIL_PORT:-587}"
fi

RUN_MIGRATIONS=false ./entrypoint.sh api >"$LOGS/api.log" 2>&1 &
pids+=($!)
RUN_MIGRATIONS=false ./entrypoint.sh worker >"$LOGS/worker.log" 2>&1 &
pids+=($!)
RUN_MIGRATIONS=false ./entrypoint.sh live >"$LOGS/live.log" 2>&1 &
pids+=($!)
RUN_MIGRATIONS=false ./entrypoint.sh consumer >"$LOGS/consumer.log" 2>&1 &
pids+=($!)
"$PYTHON" manage.py simulate_auctions --rate "$RATE" --register-experiment >"$LOGS/producer.log" 2>&1 &
pids+=($!)
# The bid models, as the CronJob fits them in a deployment: here every two minutes, so the
# dashboard's bid landscape has a curve soon after the first outcomes.
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep 20 & nap=$!; wait "$nap"
  while true; do
    "$PYTHON" manage.py fit_bid_models --days 2 --min-outcomes 500 || true
    sleep 120 & nap=$!; wait "$nap"
  done
) >"$LOGS/fit.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 60); do
  curl -fsS "http://$GUNICORN_BIND/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done

# A demo subscription (hourly, to demo@localhost), sent once now: a delivered report to read.
# The producer has been running meanwhile, so the report has rows.
(sleep 15; "$PYTHON" manage.py send_subscription --demo demo@localhost) >>"$LOGS/worker.log" 2>&1 &

if [ -n "$REPORTING_CURRENCY" ]; then MONEY="money in $REPORTING_CURRENCY"; else MONEY="money in each outcome's own currency"; fi
cat <<MSG

  The pipeline is running: simulate_auctions (${RATE}/s) → Kafka → process_outcomes → PostgreSQL → API

  Dashboard       http://$GUNICORN_BIND/dashboard/   (admin / admin)
  API             http://$GUNICORN_BIND/api/outcomes/
  Statistics      http://$GUNICORN_BIND/api/outcomes/stats/   ($MONEY; ?convert_to=XXX or none)
  Daily stats     http://$GUNICORN_BIND/api/outcomes/daily_stats/
  Export (CSV)    http://$GUNICORN_BIND/api/outcomes/export/?format=csv
  Experiment      http://$GUNICORN_BIND/api/experiments/shading-v2/results/
  Bid landscape   http://$GUNICORN_BIND/api/insights/bid_landscape/?currency=USD   (second-price auctions)
  Optimal bid     http://$GUNICORN_BIND/api/insights/optimal_bid/?value=1.50&currency=USD
  Ingestion       http://$GUNICORN_BIND/api/ingestion/
  Live stream     $LIVE_URL   (Server-Sent Events of each stored batch; the dashboard uses it)
  GraphQL         http://$GUNICORN_BIND/api/graphql/   (GraphiQL in a browser; schema.graphql)
  OpenAPI schema  http://$GUNICORN_BIND/api/schema/
  API docs        http://$GUNICORN_BIND/api/docs/   (Swagger UI; Redoc: /api/redoc/)
  API metrics     http://$GUNICORN_BIND/metrics
  Admin           http://$GUNICORN_BIND/admin/   (admin / admin)
  Saved reports   http://$GUNICORN_BIND/api/reports/   (run: /api/reports/{id}/run/?format=xlsx)
  Subscriptions   http://$GUNICORN_BIND/api/subscriptions/   alerts: /api/alerts/   (admin: Subscriptions, Alerts)
  Mail            $MAIL
                  (a demo report to demo@localhost arrives in about 20 s, then hourly)
  Consumer metrics http://127.0.0.1:$CONSUMER_METRICS_PORT/metrics

  Data            database ${DB_NAME}, topic ${KAFKA_TOPIC_AUCTION_OUTCOMES}, group ${KAFKA_CONSUMER_GROUP}
                  (this checkout's own: \`make clean-data\` empties them; \`eval "\$(make -s env)"\` for a shell)

  Logs: $LOGS/{producer,consumer,api,worker,live,mail,fit}.log
  Ctrl-C stops the producer, consumer, API, worker and mail sink; PostgreSQL, Kafka and Redis keep running
  (\`make services-down\` stops them).

MSG

# Exit (and clean up) as soon as any of them stops on its own.
wait -n "${pids[@]}"
echo "a process exited; see $LOGS" >&2
exit 1
