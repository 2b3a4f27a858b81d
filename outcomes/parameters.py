"""Which query parameters each read takes, and how they are checked: one home for the API's
endpoints and for saved reports, which are refused at save time with the endpoint's own
message (``check_all``).

Unknown query parameters are refused (400) rather than ignored, so a typo such as
``?usr_id=`` cannot silently return unfiltered data; the allowed names are derived from the
FilterSet, the paginator and each report's parameter serializer.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError

from outcomes import exports
from outcomes.filters import FILTER_PARAMS, OutcomeFilter
from outcomes.models import AuctionOutcome
from outcomes.pagination import OutcomePagination
from outcomes.report_serializers import (
    BreakdownParams,
    HistogramParams,
    MoneyParams,
    OptimalBidParams,
    ResultsParams,
    TimeseriesParams,
)

ALWAYS = {"format"}
MONEY = set(MoneyParams().fields)  # reports with money figures may convert them
# A report over one bid id would be that outcome: reports take every filter but these.
LIST_ONLY = {"ordering", "bid_id"}
REPORT_FILTER_NAMES = FILTER_PARAMS - LIST_ONLY
LIST_PARAMS = FILTER_PARAMS | OutcomePagination.query_params | ALWAYS
ALLOWED_PARAMS = {
    "list": LIST_PARAMS,
    "winners": LIST_PARAMS,
    "stats": REPORT_FILTER_NAMES | MONEY | ALWAYS,
    "daily_stats": REPORT_FILTER_NAMES | MONEY | ALWAYS,
    "reach": REPORT_FILTER_NAMES | ALWAYS,
    "timeseries": REPORT_FILTER_NAMES | set(TimeseriesParams().fields) | MONEY | ALWAYS,
    "breakdown": REPORT_FILTER_NAMES | set(BreakdownParams().fields) | MONEY | ALWAYS,
    "histogram": REPORT_FILTER_NAMES | set(HistogramParams().fields) | ALWAYS,
    "export": FILTER_PARAMS | {"escape_formulas"} | ALWAYS,
}
# An experiment's results compare all its variants, the key is in the path, and the win rate
# is one of the metrics: these filters would defeat them.
NOT_IN_RESULTS = {
    "experiment": "The experiment is the one in the path.",
    "variant": "The results compare every variant; filter other reports by variant.",
    "win_status": "The win rate is one of the metrics compared; filter other reports by win_status.",
}
# The bid landscape needs wins and losses alike.
NOT_IN_LANDSCAPE = {"win_status": "The landscape is the win rate by bid: it needs wins and losses alike."}
ALLOWED_PARAMS["bid_landscape"] = (REPORT_FILTER_NAMES - set(NOT_IN_LANDSCAPE)) | MONEY | ALWAYS
ALLOWED_PARAMS["optimal_bid"] = {"value", "site_domain", "currency"} | ALWAYS
ALLOWED_PARAMS["results"] = (REPORT_FILTER_NAMES - set(NOT_IN_RESULTS)) | set(ResultsParams().fields) | MONEY | ALWAYS
REFUSED = {"results": NOT_IN_RESULTS, "bid_landscape": NOT_IN_LANDSCAPE}
# Each read's own parameters beyond the filters, as serializers.
PARAM_SERIALIZERS = {
    "stats": (MoneyParams,),
    "daily_stats": (MoneyParams,),
    "timeseries": (TimeseriesParams, MoneyParams),
    "breakdown": (BreakdownParams, MoneyParams),
    "histogram": (HistogramParams,),
    "reach": (),
    "export": (),
    "results": (ResultsParams, MoneyParams),
    "bid_landscape": (MoneyParams,),
    "optimal_bid": (OptimalBidParams,),
}


def check_names(action: str, params) -> None:
    """Empty values, filters an action refuses, and names it does not know: a 400 each."""
    empty = sorted(name for name, value in params.items() if value == "" and name != "cursor")
    if empty:
        raise ValidationError({name[:60]: ["Empty value: give one, or leave the parameter out."] for name in empty})
    allowed = ALLOWED_PARAMS.get(action, ALWAYS)
    refusing = REFUSED.get(action, {})
    if refused := set(params) & set(refusing):
        raise ValidationError({name: [refusing[name]] for name in sorted(refused)})
    unknown = sorted(set(params) - allowed)
    if unknown:
        hint = f"Allowed here: {', '.join(sorted(allowed))}."
        raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})


def boolean(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValidationError({name: [f"'{value[:20]}' is not a boolean; use true or false."]})


def export_format(name: str) -> exports.ExportFormat:
    found = exports.FORMATS.get(name)
    if found is None:
        formats = ", ".join(exports.FORMATS)
        raise ValidationError({"format": [f"Unknown export format {name[:20]!r}: use {formats}."]})
    return found


def export_ordering(ordering: str | None) -> str | None:
    if ordering is not None and ordering not in exports.ORDERINGS:
        raise ValidationError(
            {
                "ordering": [
                    f"An export streams in the order of an index; {ordering[:60]!r} is none. Use one of: "
                    + ", ".join(exports.ORDERINGS)
                    + "."
                ]
            }
        )
    return ordering


def check_all(action: str, params) -> None:
    """Everything the endpoint checks before it reads: names, the filters, its own
    parameters (a ``ValidationError`` with the endpoint's messages)."""
    check_names(action, params)
    if action != "optimal_bid":
        filterset = OutcomeFilter(params, queryset=AuctionOutcome.objects.none())
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
    for serializer_class in PARAM_SERIALIZERS.get(action, ()):
        serializer_class(data=params).is_valid(raise_exception=True)
    if action == "export":
        export_format(params.get("format", "csv"))
        export_ordering(params.get("ordering"))
        boolean(params.get("escape_formulas", "true"), "escape_formulas")
