"""Settings for the test run: the service's own settings, with development defaults.

Tests exercise the production code paths; only DEBUG (so no production secret is needed)
and the metrics port (tests that want metrics pick their own) default differently.
"""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("CONSUMER_METRICS_PORT", "0")

from analytics.settings import *  # noqa: E402,F403
