"""A report's answer as an Excel workbook (``?format=xlsx`` on every report endpoint).

Reports are small (a few thousand rows at most), so XlsxWriter — the well-kept writer, with
native charts — builds them in memory. The workbook follows the answer's own shape, so it
says what the JSON says and nothing else:

* each list of rows in the answer (a time series' ``buckets``, a breakdown's ``rows``, the
  landscape's ``points``, an experiment's ``variants`` and ``comparisons``…) is a sheet, its
  columns the rows' fields in the answer's order; a nested object is flattened
  (``win_price_percentiles.p50``);
* what is not a list (totals, the currency, the granularity…) is a sheet "Summary" of
  field–value pairs;
* cells are typed: numbers as numbers, money with two decimals and the currency in the
  column's header (``revenue (EUR)``), times as Excel date-times in the report's time zone
  (the wall-clock time the JSON gives with its offset), dates as dates, booleans as booleans,
  no value as an empty cell; no text ever becomes a formula or a link;
* each sheet's header row is frozen and its columns fitted to their contents;
* the first sheet of rows over time, prices or a dimension carries a native chart of its
  series (outcomes and wins; win rate by bid for the landscape);
* a last sheet "Query" says what was asked (the report, each parameter as given, the time
  zone), when it was generated and how many rows each sheet has.

Pure: no Django, no database.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime

import xlsxwriter

# Answer fields that are money (in the answer's ``currency``).
MONEY_FIELDS = frozenset(
    {
        "total_revenue",
        "average_win_price",
        "average_bid_price",
        "revenue",
        "ecpm",
        "avg_win_price",
        "revenue_per_outcome",
        "bid_price",
        "bid_price_high",
        "value",
        "bid",
        "expected_cost",
        "expected_surplus",
        "median",
        "p25",
        "p75",
        "p50",
        "p90",
        "p99",
        "price",
        "lower",
        "upper",
    }
)
# Sheets whose rows mix metrics (a comparison's value is a win rate or an eCPM): no money there.
MIXED_SHEETS = frozenset({"comparisons"})
TIME_FIELDS = frozenset({"bucket", "bucket_end", "start", "end", "fitted_at", "window_start", "window_end"})
DATE_FIELDS = frozenset({"date"})
# The column a sheet's chart draws its series against, and the series it draws, per kind of rows.
CHARTS = {
    "bucket": ("line", ("outcomes", "wins")),
    "date": ("line", ("total_outcomes", "total_wins")),
    "bid_price": ("scatter", ("win_rate", "model_win_rate")),
}
MAX_WIDTH = 60


def _is_table(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flat(row: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list) and not _is_table(value):
            out[name] = ", ".join(str(v) for v in value)
        elif not isinstance(value, list):
            out[name] = value
    return out


def tables(answer) -> tuple[dict[str, list[dict]], list[tuple[str, object]]]:
    """The answer's sheets of rows (name → flattened rows) and its other fields (Summary)."""
    if isinstance(answer, list):
        return {"rows": [_flat(row) for row in answer]}, []
    sheets: dict[str, list[dict]] = {}
    summary: list[tuple[str, object]] = []

    def walk(value, path: str) -> None:
        if _is_table(value):
            sheets[path] = [_flat(row) for row in value]
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else key)
        elif isinstance(value, list) and value and isinstance(value[0], int | float):
            summary.append((path, ", ".join(str(v) for v in value)))
        elif isinstance(value, list):
            if not value:
                sheets.setdefault(path, [])
            else:
                summary.append((path, ", ".join(str(v) for v in value)))
        else:
            summary.append((path, value))

    walk(answer, "")
    return sheets, summary


class _Cells:
    def __init__(self, book: xlsxwriter.Workbook) -> None:
        self.header = book.add_format({"bold": True, "bottom": 1})
        self.money = book.add_format({"num_format": "0.00"})
        self.time = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.date = book.add_format({"num_format": "yyyy-mm-dd"})

    def write(self, sheet, row: int, col: int, name: str, value, *, money: bool = True) -> int:
        """Write one typed cell; returns its width in characters."""
        leaf = name.rsplit(".", 1)[-1]
        if value is None:
            return 0
        if isinstance(value, bool):
            sheet.write_boolean(row, col, value)
            return 5
        if isinstance(value, int | float):
            if money and leaf in MONEY_FIELDS:
                sheet.write_number(row, col, value, self.money)
                return len(f"{value:.2f}")
            sheet.write_number(row, col, value)
            return min(len(repr(value)), 14)
        text = str(value)
        if leaf in TIME_FIELDS:
            moment = _moment(text)
            if moment is not None:
                sheet.write_datetime(row, col, moment, self.time)
                return 19
        if leaf in DATE_FIELDS:
            try:
                day = datetime.combine(date.fromisoformat(text), datetime.min.time())
                sheet.write_datetime(row, col, day, self.date)
                return 10
            except ValueError:
                pass
        sheet.write_string(row, col, text)
        return len(text)


def _moment(text: str) -> datetime | None:
    """A JSON time as the wall-clock time it states (its offset is the report's time zone's)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _header(name: str, currency: str | None, *, money: bool = True) -> str:
    leaf = name.rsplit(".", 1)[-1]
    return f"{name} ({currency})" if money and currency and leaf in MONEY_FIELDS else name


def _with_model(answer):
    """The landscape's fitted W(b) beside each point, as a percent like the win rate."""
    model = answer.get("model") if isinstance(answer, dict) else None
    points = answer.get("points") if isinstance(answer, dict) else None
    curve = (model or {}).get("win_probability")
    if not points or not curve or len(curve) != len(points):
        return answer
    rest = {k: v for k, v in model.items() if k != "win_probability"}
    rows = [{**p, "model_win_rate": round(100 * w, 4)} for p, w in zip(points, curve, strict=True)]
    return {**answer, "points": rows, "model": rest}


def workbook(report: str, answer, *, query: Sequence[tuple[str, object]]) -> bytes:
    """The workbook of ``report``'s ``answer``; ``query``: the Query sheet's label–value pairs."""
    answer = _with_model(answer)
    sheets, summary = tables(answer)
    currency = answer.get("currency") if isinstance(answer, dict) else None
    if currency is None and isinstance(answer, list) and answer and isinstance(answer[0], dict):
        currency = answer[0].get("currency")
    out = io.BytesIO()
    book = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    cells = _Cells(book)
    counts: list[tuple[str, object]] = []
    charted = False
    names: set[str] = set()
    for path, rows in sheets.items():
        title = _sheet_name(path or report, names)
        sheet = book.add_worksheet(title)
        money = path not in MIXED_SHEETS
        columns = list(dict.fromkeys(name for row in rows for name in row))
        widths = [len(_header(c, currency, money=money)) for c in columns]
        for col, name in enumerate(columns):
            sheet.write_string(0, col, _header(name, currency, money=money), cells.header)
        for r, row in enumerate(rows, start=1):
            for col, name in enumerate(columns):
                widths[col] = max(widths[col], cells.write(sheet, r, col, name, row.get(name), money=money))
        for col, width in enumerate(widths):
            sheet.set_column(col, col, min(width + 2, MAX_WIDTH))
        sheet.freeze_panes(1, 0)
        if rows:
            sheet.autofilter(0, 0, len(rows), max(len(columns) - 1, 0))
        counts.append((f"rows: {title}", len(rows)))
        if not charted and rows:
            charted = _chart(book, sheet, title, columns, len(rows))
    if summary:
        sheet = book.add_worksheet(_sheet_name("Summary", names))
        sheet.write_string(0, 0, "field", cells.header)
        sheet.write_string(0, 1, "value", cells.header)
        width = 10
        for r, (name, value) in enumerate(summary, start=1):
            sheet.write_string(r, 0, _header(name, currency))
            width = max(width, cells.write(sheet, r, 1, name, value))
        sheet.set_column(0, 0, min(max(len(n) for n, _ in summary) + 8, MAX_WIDTH))
        sheet.set_column(1, 1, min(width + 2, MAX_WIDTH))
        sheet.freeze_panes(1, 0)
    sheet = book.add_worksheet(_sheet_name("Query", names))
    for r, (label, value) in enumerate([*query, *counts]):
        sheet.write_string(r, 0, label, cells.header)
        cells.write(sheet, r, 1, label, value)
    sheet.set_column(0, 0, 24)
    sheet.set_column(1, 1, 40)
    book.close()
    return out.getvalue()


def _sheet_name(path: str, taken: set[str]) -> str:
    """Excel's rules: at most 31 characters, none of []:*?/\\, unique."""
    name = "".join("_" if ch in "[]:*?/\\" else ch for ch in path)[:31] or "Sheet"
    base, n = name, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _chart(book, sheet, title: str, columns: list[str], rows: int) -> bool:
    """A native chart of the sheet's series against its time, date or price column."""
    for axis, (kind, series) in CHARTS.items():
        if axis not in columns or not any(s in columns for s in series):
            continue
        x = columns.index(axis)
        chart = book.add_chart({"type": kind, **({"subtype": "straight_with_markers"} if kind == "scatter" else {})})
        for name in series:
            if name in columns:
                y = columns.index(name)
                chart.add_series(
                    {
                        "name": [title, 0, y],
                        "categories": [title, 1, x, rows, x],
                        "values": [title, 1, y, rows, y],
                    }
                )
        chart.set_title({"name": f"{', '.join(s for s in series if s in columns)} by {axis}"})
        chart.set_x_axis({"name": axis})
        chart.set_size({"width": 720, "height": 360})
        sheet.insert_chart(1, len(columns) + 1, chart)
        return True
    if "outcomes" in columns and len(columns) > 1:  # a breakdown: outcomes by its first column
        chart = book.add_chart({"type": "bar"})
        y = columns.index("outcomes")
        chart.add_series(
            {"name": [title, 0, y], "categories": [title, 1, 0, rows, 0], "values": [title, 1, y, rows, y]}
        )
        chart.set_title({"name": f"outcomes by {columns[0]}"})
        chart.set_y_axis({"reverse": True})
        chart.set_size({"width": 720, "height": max(300, 20 * rows)})
        sheet.insert_chart(1, len(columns) + 1, chart)
        return True
    return False
