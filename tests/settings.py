"""Settings for the test run: the service's own settings, with development defaults.

Tests exercise the production code paths; only DEBUG (so no production secret is needed),
the metrics port (tests that want metrics pick their own) and rate limits default differently.
"""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("CONSUMER_METRICS_PORT", "0")
# The suite sends thousands of requests from one address: limits are off unless a test
# turns them on (tests/test_throttling.py).
os.environ.setdefault("API_RATE_LIMIT_KEY", "off")
os.environ.setdefault("API_RATE_LIMIT_ANON", "off")
# Likewise bad credentials: many tests send wrong keys and passwords on purpose. The tests of
# the lockouts set a limit of their own (tests/test_admin.py, tests/test_api_access.py).
os.environ.setdefault("AUTH_FAILURE_LIMIT", "1000000")
# Reports answer in each outcome's own currency unless a test converts (tests/test_money.py).
os.environ.setdefault("REPORTING_CURRENCY", "")

from analytics.settings import *  # noqa: E402,F403
