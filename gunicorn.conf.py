"""gunicorn settings, from the environment (see docs/configuration.md)."""

import os
import shutil
import tempfile

from analytics.logs import gunicorn_logconfig

# prometheus-client's multiprocess mode: every worker writes its counters to files here, so
# /metrics from any worker reports the whole server. Set before a worker imports the client;
# a fresh directory per server start (stale files would add old counts).
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="analytics-metrics-")

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# Exports hold a thread each for as long as they stream: capped per process (outcomes/
# export_session.py) below the threads, so probes and ordinary requests always find one.
_exports = int(os.environ.get("API_EXPORT_CONCURRENCY", "2"))
if _exports >= threads:
    raise SystemExit(
        f"API_EXPORT_CONCURRENCY={_exports} must be below GUNICORN_THREADS={threads}: "
        "exports would take every thread, and the health probes would time out."
    )
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "50000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "5000"))
_access = os.environ.get("GUNICORN_ACCESS_LOG", "true").lower() == "true"
accesslog = "-" if _access else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
# Every line JSON, gunicorn's own included: the access line's fields come from its atoms
# (analytics/logs.py), this format is only its message.
access_log_format = "%(m)s %(U)s %(s)s"
logconfig_dict = gunicorn_logconfig(loglevel.upper(), access=_access)
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """The api role's checks (analytics/roles.py), once, before any worker starts: a missing
    or unsafe setting stops the server with a message naming it. Settings only, no apps: the
    master must not create metrics of its own (they would outlive its workers)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
    from django.core.exceptions import ImproperlyConfigured

    from analytics import roles

    try:
        roles.require("api")
    except ImproperlyConfigured as exc:
        server.log.error(str(exc))
        raise SystemExit(1) from None
    from django.conf import settings

    if not settings.DEBUG and not os.path.exists(os.path.join(settings.STATIC_ROOT, "staticfiles.json")):
        server.log.warning(
            "static files are not collected (%s has no staticfiles.json): admin and dashboard pages fail "
            "until `manage.py collectstatic` runs (./entrypoint.sh api runs it when needed)",
            settings.STATIC_ROOT,
        )


def post_worker_init(worker):
    """Ready before the first request: the URLconf imported (every view module: ~0.35 s that
    the first request of each worker paid otherwise, again after every recycling), and the
    rate-limit store asked once, so its health metric is right from the start."""
    from django.urls import get_resolver

    from outcomes.throttling import check_store

    get_resolver().url_patterns  # noqa: B018 - imports the views
    check_store()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
