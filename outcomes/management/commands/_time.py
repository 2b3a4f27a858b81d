"""Argument types shared by the rollup commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def iso_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or date-time, e.g. 2025-10-01") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
