"""Typed readers for settings that come from the environment.

Each helper names the variable in its error, so a misconfigured deployment stops at
start-up with a message that says which setting is wrong (PostHog's ``get_from_env``,
Zulip's ``get_mandatory_secret``). Nothing here imports Django settings.
"""

from __future__ import annotations

import os
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MISSING = object()


def env_str(name: str, default: str | object = _MISSING) -> str:
    """``name``'s value; when unset, the content of the file ``<name>_FILE`` names (secrets
    mounted as files, e.g. ``DB_PASSWORD_FILE=/run/secrets/analytics/db-password``)."""
    value = os.environ.get(name)
    if not value and os.environ.get(f"{name}_FILE"):
        path = os.environ[f"{name}_FILE"]
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"Environment variable {name}_FILE={path!r}: cannot read it ({exc.strerror})."
            ) from None
    if value is None or value == "":
        if default is _MISSING:
            raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
        return default  # type: ignore[return-value]
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a boolean (use true or false).")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum, maximum)


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum, maximum)


def _env_number(name, default, parse, kind: str, minimum, maximum):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        value = default
    else:
        try:
            value = parse(raw)
        except ValueError:
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not {kind}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} must be at most {maximum}.")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"Environment variable {name}={value!r} is not one of {', '.join(choices)}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@lru_cache(maxsize=16)
def parse_rate(value: str, name: str = "rate") -> tuple[int, int] | None:
    """'600/minute' → (600, 60); 'off' → None. Raises ImproperlyConfigured naming ``name``."""
    text = value.strip().lower()
    if text in ("off", "0", ""):
        return None
    count, _, period = text.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in RATE_PERIODS:
        raise ImproperlyConfigured(f"{name}={value!r} must be N/second, N/minute, N/hour or N/day (N ≥ 1), or 'off'.")
    return int(count), RATE_PERIODS[period]
