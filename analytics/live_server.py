"""The live role's server: uvicorn serving ``analytics.asgi`` (``/api/live/``), its own log
lines as JSON like every other role's (``./entrypoint.sh live`` runs ``python -m
analytics.live_server``).

Why uvicorn: measured against daphne and granian serving the same application to 1,000
subscribers with the consumer at full speed (``bench/live.py --server``, docs/benchmarks.md).
"""

from __future__ import annotations

import uvicorn

from analytics.env import env_int, env_str
from analytics.logs import uvicorn_logconfig


def main() -> None:
    level = env_str("LOG_LEVEL", "INFO").upper()
    uvicorn.run(
        "analytics.asgi:application",
        host=env_str("LIVE_HOST", "0.0.0.0"),  # noqa: S104 - a pod's address; make run binds 127.0.0.1
        port=env_int("LIVE_PORT", 8001, minimum=1, maximum=65535),
        lifespan="off",
        access_log=False,
        log_config=uvicorn_logconfig(level),
        log_level=level.lower(),
        # SIGTERM: streams run this long, then are closed (browsers reconnect elsewhere).
        timeout_graceful_shutdown=env_int("LIVE_GRACEFUL_SECONDS", 5, minimum=0),
    )


if __name__ == "__main__":
    main()
