#!/usr/bin/env bash
# Container entrypoint: one image, four roles.
#
#   ./entrypoint.sh api        the api role's settings checked, migrations (safe with concurrent
#                              replicas), static files collected if missing, then gunicorn
#   ./entrypoint.sh consumer   the consumer's settings checked, migrations, then the Kafka
#                              consumer (process_outcomes)
#   ./entrypoint.sh worker     the worker's settings checked, migrations, then the job worker
#                              (procrastinate): scheduled reports, alerts, their deliveries
#   ./entrypoint.sh live       the live role's settings checked, migrations, then uvicorn serving
#                              /api/live/ (Server-Sent Events of each committed batch)
#   ./entrypoint.sh manage …   any management command
#
# A role stops before it migrates when a setting it needs is missing or unsafe, naming it
# (manage.py check_role; analytics/roles.py).
# `exec` replaces this shell so SIGTERM from Kubernetes reaches gunicorn / the consumer / the worker.
set -euo pipefail
cd "$(dirname "$0")"

# In the image `python` is the venv's (PATH); in a checkout, the venv `make` created.
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
role="${1:-api}"
[ $# -gt 0 ] && shift

migrate() {
  if [ "${RUN_MIGRATIONS:-true}" = "true" ]; then
    "$PYTHON" manage.py migrate_locked --noinput
  fi
}

case "$role" in
  api)
    "$PYTHON" manage.py check_role api
    migrate
    "$PYTHON" manage.py ensure_static
    exec "$PYTHON" -m gunicorn --config gunicorn.conf.py analytics.wsgi:application "$@"
    ;;
  consumer)
    "$PYTHON" manage.py check_role consumer
    migrate
    exec "$PYTHON" manage.py process_outcomes "$@"
    ;;
  worker)
    "$PYTHON" manage.py check_role worker
    migrate
    exec "$PYTHON" manage.py run_worker "$@"
    ;;
  live)
    "$PYTHON" manage.py check_role live
    migrate
    # Under ASGI, Django's persistent connections are not reused between requests: closed.
    export DB_CONN_MAX_AGE=0
    # uvicorn on LIVE_HOST:LIVE_PORT, JSON logs, LIVE_GRACEFUL_SECONDS on SIGTERM.
    exec "$PYTHON" -m analytics.live_server "$@"
    ;;
  manage)
    exec "$PYTHON" manage.py "$@"
    ;;
  *)
    echo "usage: $0 api|consumer|worker|live|manage [args…]" >&2
    exit 2
    ;;
esac
