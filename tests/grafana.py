"""What Grafana does to a PostgreSQL panel's SQL before it runs it, for the tests: its macros
(``$__timeFilter``, ``$__timeGroupAlias``, ``$__interval``) and template variables, expanded
as Grafana's PostgreSQL data source expands them."""

from __future__ import annotations

import re
from datetime import datetime

_TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^)]+?)\s*\)")
_TIME_GROUP_ALIAS = re.compile(r"\$__timeGroupAlias\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)\b")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(sql: str, *, start: datetime, end: datetime, interval_seconds: int, variables: dict[str, str]) -> str:
    """``sql`` as Grafana sends it for the range [start, end] (Grafana's range is inclusive),
    ``$__interval`` of ``interval_seconds`` and the variables' current values (an "All"
    selection is its ``allValue``)."""
    sql = _TIME_FILTER.sub(lambda m: f"{m.group(1)} BETWEEN '{_iso(start)}' AND '{_iso(end)}'", sql)

    def group(match: re.Match) -> str:
        interval = match.group(2)
        seconds = interval_seconds if interval == "$__interval" else _seconds(interval.strip("'"))
        return f'floor(extract(epoch from {match.group(1)})/{seconds})*{seconds} AS "time"'

    sql = _TIME_GROUP_ALIAS.sub(group, sql)

    def variable(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            raise ValueError(f"macro or global variable not expanded: ${name}")
        return variables[name]

    return _VARIABLE.sub(variable, sql)


def _seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(text[:-1]) * units[text[-1]]
