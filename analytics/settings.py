"""Settings for the analytics service, all read from the environment.

Fails fast: a value that does not parse, or a database password missing with DEBUG=False,
raises ImproperlyConfigured naming the variable. What only one role uses (the API's secret
key, host names and Redis; the privacy key of the roles that write) is demanded by that
role at its start (analytics/roles.py), so a migration job or a consumer-only host never
fails for a setting it does not read. Names follow the service specification
(DJANGO_SECRET_KEY, DB_*, KAFKA_*).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from analytics.consumer_settings import ConsumerSettings
from analytics.env import env_bool, env_choice, env_float, env_int, env_list, env_str, parse_rate
from analytics.logs import json_logging

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

_DEV_SECRET_KEY = "django-insecure-local-development-key-do-not-use-in-production"  # noqa: S105 - DEBUG only

# Each role's start-up checks (analytics/roles.py): on unless DEBUG was set (read here, once:
# test runners turn settings.DEBUG off while keeping development defaults).
ROLE_CHECKS = not DEBUG

# The API's (sessions, CSRF tokens): required and checked by the api role.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else [])
# Origins a browser's admin login may post from, e.g. https://analytics.example.com (behind a
# TLS ingress Django sees http and would refuse the https Origin otherwise).
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rest_framework_api_key",
    "axes",
    "csp",
    "procrastinate.contrib.django",
    "strawberry_django",  # manage.py export_schema: schema.graphql, the GraphQL API's contract
    "outcomes",
]

MIDDLEWARE = [
    "analytics.metrics.MetricsMiddleware",
    "analytics.health.ProbeMiddleware",  # before anything reads the Host header: probes come by pod IP
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "analytics.logs.RequestIdMiddleware",
    "analytics.guards.RequestGuardMiddleware",
    "analytics.dbrouting.ReadReplicaMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "analytics.errors.ApiJsonNotFoundMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login with a 429
]

# ---------------------------------------------------------------- failed logins
# Repeated wrong passwords lock out the client address and the account (django-axes), each
# for AUTH_LOCKOUT_MINUTES after AUTH_FAILURE_LIMIT failures; a right password meanwhile is
# refused too. `manage.py axes_reset` (or the admin's Axes pages) lifts a lockout. Bad API
# keys from one address are limited the same way (outcomes/permissions.py).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AUTH_FAILURE_LIMIT = env_int("AUTH_FAILURE_LIMIT", 5, minimum=1)
AUTH_LOCKOUT_MINUTES = env_int("AUTH_LOCKOUT_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = AUTH_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=AUTH_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "outcomes.throttling.client_address"  # as the rate limits see it (API_NUM_PROXIES)
AXES_VERBOSE = False  # no start-up banner; each failure and lockout is still a warning (a JSON line)

# ---------------------------------------------------------------- erasure
# The key of the hashes that stand for erased users (their tombstones, the erasure audit
# line): never change it, or erased users' late messages are stored again. Required by the
# roles that write (analytics/roles.py).
PRIVACY_HASH_KEY = env_str("PRIVACY_HASH_KEY", "development-privacy-hash-key-not-for-production" if DEBUG else "")

ROOT_URLCONF = "analytics.urls"
WSGI_APPLICATION = "analytics.wsgi.application"
ASGI_APPLICATION = "analytics.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------- database
_db_password = env_str("DB_PASSWORD", "helios") if DEBUG else env_str("DB_PASSWORD")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str("DB_NAME", "helios_analytics"),
        "USER": env_str("DB_USER", "helios"),
        "PASSWORD": _db_password,
        "HOST": env_str("DB_HOST", "127.0.0.1"),
        "PORT": str(env_int("DB_PORT", 5432, minimum=1, maximum=65535)),
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 5, minimum=1),
            "application_name": env_str("DB_APPLICATION_NAME", "analytics-service"),
            # libpq's: "require" (or "verify-full" with DB_SSLROOTCERT) where the network is shared.
            "sslmode": env_choice(
                "DB_SSLMODE", "prefer", ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
            ),
            **({"sslrootcert": env_str("DB_SSLROOTCERT")} if env_str("DB_SSLROOTCERT", "") else {}),
            # Requests read small rollups: starting parallel workers costs more than it saves
            # (measured: a 60k-row breakdown takes 33 ms with 2 workers, 19 ms without).
            "options": f"-c max_parallel_workers_per_gather={env_int('DB_MAX_PARALLEL_WORKERS', 0, minimum=0)}",
        },
    }
}
# API reads on a streaming replica when DB_REPLICA_HOST is set (analytics/dbrouting.py);
# same database name and credentials as the primary.
DB_REPLICA_HOST = env_str("DB_REPLICA_HOST", "")
DB_REPLICA_RETRY_SECONDS = env_int("DB_REPLICA_RETRY_SECONDS", 30, minimum=1)
if DB_REPLICA_HOST:
    DATABASES["replica"] = {
        **DATABASES["default"],
        "HOST": DB_REPLICA_HOST,
        "PORT": str(env_int("DB_REPLICA_PORT", int(DATABASES["default"]["PORT"]), minimum=1, maximum=65535)),
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["analytics.dbrouting.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------- i18n / static
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["analytics.formats"]  # one date-time format in the admin, to the second
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # in development files come from the apps' static dirs
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# ---------------------------------------------------------------- security (production)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Browsers that reached the service over HTTPS keep to it for a year (sent only on HTTPS
# responses: through the TLS ingress with DJANGO_SECURE_PROXY_SSL_HEADER, never to probes).
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
# In the cluster the service speaks plain HTTP (probes, in-cluster clients) and TLS ends at
# the ingress, which redirects; say so to `check --deploy` rather than ignore it.
SILENCED_SYSTEM_CHECKS = []
if not SECURE_SSL_REDIRECT:
    SILENCED_SYSTEM_CHECKS.append("security.W008")
# Other subdomains and the browsers' preload list are the domain owner's decision: opt-in.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
    SILENCED_SYSTEM_CHECKS.append("security.W005")
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# Content-Security-Policy (django-csp) of every HTML page: scripts, styles and everything else
# from this server only, no inline script, no framing. The dashboard and the admin keep to it
# (the browser tests fail on any violation); the API docs send a looser one of their own
# (Swagger UI and Redoc start from inline scripts: analytics/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "frame-ancestors": [csp.NONE],
        "form-action": [csp.SELF],
    }
}

# ---------------------------------------------------------------- API
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 100, minimum=1)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 1000, minimum=1)
if API_PAGE_SIZE > API_MAX_PAGE_SIZE:
    raise ImproperlyConfigured(f"API_PAGE_SIZE={API_PAGE_SIZE} exceeds API_MAX_PAGE_SIZE={API_MAX_PAGE_SIZE}.")
# Page-number pages may not reach past this row (OFFSET cost grows with depth); cursors can.
API_MAX_PAGE_OFFSET = env_int("API_MAX_PAGE_OFFSET", 10_000, minimum=0)
# Read answers kept per API process, keyed by URL and database snapshot (outcomes/cache.py).
API_CACHE_BYTES = env_int("API_CACHE_BYTES", 32 * 1024 * 1024, minimum=0)
# Every HTTP request's queries run under this PostgreSQL statement_timeout (0: none); a
# cancelled query is a 503. Request bodies above API_MAX_BODY_BYTES are a 413 (analytics/guards.py).
API_STATEMENT_TIMEOUT_MS = env_int("API_STATEMENT_TIMEOUT_MS", 5000, minimum=0)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_048_576, minimum=1024)
# Exports: at most this many at once per API process (fewer than its threads: gunicorn.conf.py
# checks), each one statement under its own timeout (outcomes/export_session.py).
API_EXPORT_CONCURRENCY = env_int("API_EXPORT_CONCURRENCY", 2, minimum=1)
API_EXPORT_STATEMENT_TIMEOUT_MS = env_int("API_EXPORT_STATEMENT_TIMEOUT_MS", 900_000, minimum=1000)
# /metrics needs "Authorization: Bearer <API_METRICS_TOKEN>"; without one, loopback only.
API_METRICS_TOKEN = env_str("API_METRICS_TOKEN", "")
# A verified API key is trusted this long per process (revocations take up to this long).
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5, minimum=0)
# How often the dashboard asks the API again (while its tab is visible).
DASHBOARD_REFRESH_SECONDS = env_int("DASHBOARD_REFRESH_SECONDS", 5, minimum=1, maximum=3600)
# Reports give money in this currency, converted at each auction's day's reference rate
# (``manage.py load_fx_rates``), unless a request asks otherwise (``convert_to``). Empty: each
# outcome's money in its own currency, as stored.
REPORTING_CURRENCY = env_str("REPORTING_CURRENCY", "").strip().upper()
if REPORTING_CURRENCY and not re.fullmatch(r"[A-Z]{3}", REPORTING_CURRENCY):
    raise ImproperlyConfigured(
        f"REPORTING_CURRENCY={REPORTING_CURRENCY!r} must be an ISO 4217 currency code (three letters, such as USD), "
        "or empty for no conversion."
    )
# How the exchange prices the auctions this service's outcomes come from: the optimal bid and
# the market price's estimate depend on it (outcomes/landscape.py).
AUCTION_TYPE = env_str("AUCTION_TYPE", "first_price").strip().lower()
if AUCTION_TYPE not in ("first_price", "second_price"):
    raise ImproperlyConfigured(
        f"AUCTION_TYPE={AUCTION_TYPE!r} must be first_price (the winner pays its bid) or second_price "
        "(the winner pays the highest other bid)."
    )
# Reads need an API key with the read scope (or a login) unless "public"; public by default
# only in development.
API_READ_ACCESS = env_str("API_READ_ACCESS", "public" if DEBUG else "authenticated")
if API_READ_ACCESS not in ("public", "authenticated"):
    raise ImproperlyConfigured(f"API_READ_ACCESS={API_READ_ACCESS!r} must be 'public' or 'authenticated'.")

# Request rate limits (outcomes/throttling.py): "N/second|minute|hour|day" or "off", per API
# key or login, and per client address for anonymous reads. Counted in Redis so every API
# process and pod shares them.
REDIS_URL = env_str("REDIS_URL", "")
API_RATE_LIMIT_KEY = env_str("API_RATE_LIMIT_KEY", "6000/minute")
API_RATE_LIMIT_ANON = env_str("API_RATE_LIMIT_ANON", "600/minute")
API_RATE_LIMITS_ON = any(
    (parse_rate(API_RATE_LIMIT_KEY, "API_RATE_LIMIT_KEY"), parse_rate(API_RATE_LIMIT_ANON, "API_RATE_LIMIT_ANON"))
)  # then the api role needs REDIS_URL (analytics/roles.py)
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["outcomes.permissions.ScopedAccess"],
    # API keys first: their WWW-Authenticate header makes missing credentials a 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "outcomes.permissions.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["outcomes.throttling.SharedRateThrottle"],
    # The write service's refusals (invalid, conflict, not found) as 400, 409, 404.
    "EXCEPTION_HANDLER": "outcomes.views.errors.exception_handler",
    # Proxies in front of the API whose X-Forwarded-For entries are trusted (0: use the
    # socket's address; DRF's default would trust any client-sent header).
    "NUM_PROXIES": env_int("API_NUM_PROXIES", 0, minimum=0),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "outcomes.pagination.OutcomePagination",
    "PAGE_SIZE": API_PAGE_SIZE,
    "DEFAULT_SCHEMA_CLASS": "outcomes.schema.ScopedAutoSchema",
    "DEFAULT_RENDERER_CLASSES": (
        ["outcomes.renderers.FastJSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
        if DEBUG
        else ["outcomes.renderers.FastJSONRenderer"]
    ),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Auction outcomes analytics API",
    "DESCRIPTION": "Real-time-bidding auction outcomes: listing, filtering and aggregations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response shapes apart: a response always carries every field.
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the experiments' metric choices (the primary and the guardrail metrics).
    "ENUM_NAME_OVERRIDES": {
        "MetricEnum": "outcomes.experiments.METRIC_CHOICES",
        "SendoutStatusEnum": "outcomes.models.reporting.Sendout.Status",
        "AlertStateEnum": "outcomes.models.reporting.Alert.State",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No web fonts from Google (see outcomes/templates/drf_spectacular/redoc_offline.html).
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": "system-ui, -apple-system, 'Segoe UI', sans-serif",
                "headings": {"fontFamily": "system-ui, -apple-system, 'Segoe UI', sans-serif"},
                "code": {"fontFamily": "ui-monospace, 'DejaVu Sans Mono', monospace"},
            }
        }
    },
    # The schema is read like the API: public only when reads are.
    "SERVE_PERMISSIONS": ["outcomes.permissions.ScopedAccess"],
    "SERVE_AUTHENTICATION": [
        "outcomes.permissions.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}

# ---------------------------------------------------------------- deliveries (the worker role)
# Scheduled reports and alerts are sent by `./entrypoint.sh worker` (procrastinate jobs in
# PostgreSQL; outcomes/deliveries.py). Mail goes through Django's SMTP backend with Django's
# own settings; with no EMAIL_HOST in DEBUG, to the local sink `make run` starts.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1" if DEBUG else "")
EMAIL_PORT = env_int("EMAIL_PORT", 1025 if DEBUG and not env_str("EMAIL_HOST", "") else 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "analytics@localhost" if DEBUG else "")
# The address people reach the service at: unsubscribe links and links in e-mails.
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000" if DEBUG else "").rstrip("/")
# A delivery is tried this many times (backoff doubling from DELIVERY_RETRY_SECONDS) before it
# is recorded as failed; a subscription whose last SUBSCRIPTION_FAILING_AFTER deliveries all
# failed is marked failing (admin, /metrics, the alert rule).
DELIVERY_ATTEMPTS = env_int("DELIVERY_ATTEMPTS", 5, minimum=1, maximum=20)
DELIVERY_RETRY_SECONDS = env_int("DELIVERY_RETRY_SECONDS", 30, minimum=1)
SUBSCRIPTION_FAILING_AFTER = env_int("SUBSCRIPTION_FAILING_AFTER", 3, minimum=1)
# At most this many subscriptions and alerts (a write key cannot turn the service into a
# mass mailer); each has at most 50 recipients.
SUBSCRIPTIONS_MAX = env_int("SUBSCRIPTIONS_MAX", 1000, minimum=1)
ALERTS_MAX = env_int("ALERTS_MAX", 200, minimum=1)
# An attachment larger than this is not attached: the e-mail says so and links to the report.
DELIVERY_MAX_ATTACHMENT_BYTES = env_int("DELIVERY_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024, minimum=1024)
# How often the scheduler looks for due subscriptions and evaluates alerts (cron, UTC; a sixth
# field counts seconds).
SCHEDULER_CRON = env_str("SCHEDULER_CRON", "* * * * *")
# A job whose worker has not sent a heartbeat for this long is taken to have died (SIGKILL,
# lost node) and is run again by another worker.
WORKER_STALLED_AFTER_SECONDS = env_int("WORKER_STALLED_AFTER_SECONDS", 60, minimum=2)
# Webhooks: private, loopback and link-local addresses are refused (a subscription must not
# reach into the cluster) unless this is on.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", DEBUG)
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 10, minimum=1, maximum=60)
# Touched every few seconds while the worker runs (its liveness probe reads the age).
WORKER_HEALTH_FILE = env_str("WORKER_HEALTH_FILE", "/tmp/analytics-worker.alive")  # noqa: S108 - a marker
PROCRASTINATE_WORKER_DEFAULTS = {
    "concurrency": env_int("WORKER_CONCURRENCY", 2, minimum=1, maximum=32),
    "fetch_job_polling_interval": 1.0,
    "update_heartbeat_interval": max(1.0, WORKER_STALLED_AFTER_SECONDS / 6),
    "install_signal_handlers": True,
    # A finished job is deleted (the delivery row is the record): two ticks a minute would
    # otherwise keep ~2,900 rows a day. Failed jobs stay, to be looked at, for
    # WORKER_FAILED_JOBS_KEEP_DAYS (outcomes.tasks.prune_jobs deletes them after).
    "delete_jobs": "successful",
}
WORKER_FAILED_JOBS_KEEP_DAYS = env_int("WORKER_FAILED_JOBS_KEEP_DAYS", 30, minimum=1)

# ---------------------------------------------------------------- live updates (the live role)
# /api/live/ streams each committed batch's event (Server-Sent Events) from the Redis stream
# the consumer writes (analytics.consumer_settings: LIVE_REDIS_URL, LIVE_STREAM).
LIVE_REDIS_URL = env_str("LIVE_REDIS_URL", REDIS_URL or ("redis://127.0.0.1:6379/0" if DEBUG else ""))
LIVE_STREAM = env_str("LIVE_STREAM", "analytics:live")
LIVE_MAX_CLIENTS = env_int("LIVE_MAX_CLIENTS", 2000, minimum=1)
# Events a client may have waiting; a slower client is told to refetch and reconnect.
LIVE_CLIENT_QUEUE = env_int("LIVE_CLIENT_QUEUE", 100, minimum=1)
LIVE_HEARTBEAT_S = env_float("LIVE_HEARTBEAT_S", 15.0, minimum=0.1)
LIVE_RETRY_MS = env_int("LIVE_RETRY_MS", 3000, minimum=100)
# Where browsers reach the stream ("": the dashboard polls): a path on this host behind an
# ingress that routes /api/live/ to the live role, or another origin (make run:
# http://127.0.0.1:8001/api/live/), which LIVE_ALLOWED_ORIGINS then lets the dashboard's
# origin read with its session cookie.
LIVE_URL = env_str("LIVE_URL", "")
LIVE_ALLOWED_ORIGINS = env_list("LIVE_ALLOWED_ORIGINS", [])
if LIVE_URL.startswith(("http://", "https://")):
    CONTENT_SECURITY_POLICY["DIRECTIVES"]["connect-src"].append("/".join(LIVE_URL.split("/")[:3]))

# ---------------------------------------------------------------- consumer
CONSUMER = ConsumerSettings.from_env()

# ---------------------------------------------------------------- logging
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")

LOGGING = json_logging(
    LOG_LEVEL,
    {
        # Django's own default handlers print plain text (under DEBUG, every 4xx twice):
        # removed, so its records reach the JSON handler once, through the root.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "kafka": {"level": env_str("KAFKA_LOG_LEVEL", "WARNING").upper()},
        "django.db.backends": {"level": "INFO"},
        # procrastinate says which tasks it loaded at every start of every command.
        "procrastinate.blueprints": {"level": "WARNING"},
        "procrastinate.periodic": {"level": "WARNING"},
    },
)
