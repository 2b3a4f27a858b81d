"""Reports: each one filter set in, one selector (``outcomes.queries``), one answer out.

Every answer carries ``X-Report-Source``: the rollup grains that answered it, or ``raw``.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError

from outcomes import queries
from outcomes.report_serializers import (
    BreakdownParams,
    BreakdownSerializer,
    DailyStatsSerializer,
    HistogramParams,
    HistogramSerializer,
    MoneyParams,
    ReachSerializer,
    ReportStatsSerializer,
    TimeseriesParams,
    TimeseriesSerializer,
)
from outcomes.views.common import REPORT_FILTERS, REPORT_RENDERERS, OutcomeReads, cached, report


class OutcomeReportViewSet(OutcomeReads, viewsets.GenericViewSet):
    """``/api/outcomes/<report>/``: stats, daily_stats, timeseries, breakdown, histogram, reach."""

    pagination_class = None  # each answer is one document (daily_stats a plain list)
    renderer_classes = REPORT_RENDERERS

    @extend_schema(
        summary="Totals, averages, eCPM, shading ratio and exact price percentiles over the filtered outcomes.",
        parameters=[*REPORT_FILTERS, MoneyParams],
        responses=ReportStatsSerializer,
    )
    @action(detail=False, methods=["get"])
    def stats(self, request):
        return cached(request, lambda: report(*queries.outcome_stats(query=self._query(), convert_to=self._money())))

    @extend_schema(
        summary="The stats measures per UTC day of the event time, oldest first.",
        parameters=[*REPORT_FILTERS, MoneyParams],
        responses=DailyStatsSerializer(many=True),
    )
    @action(detail=False, methods=["get"])  # a plain list, as the schema says
    def daily_stats(self, request):
        return cached(
            request, lambda: report(*queries.outcome_daily_stats(query=self._query(), convert_to=self._money()))
        )

    @extend_schema(
        summary="Measures per time bucket, empty buckets included.",
        parameters=[*REPORT_FILTERS, TimeseriesParams, MoneyParams],
        responses=TimeseriesSerializer,
    )
    @action(detail=False, methods=["get"])
    def timeseries(self, request):
        # Without ``end`` the window ends now: a clock-dependent answer is not cached.
        return cached(request, self._timeseries, cacheable="end" in request.query_params)

    def _money(self) -> str | None:
        return MoneyParams.target(self._params(MoneyParams))

    def _timeseries(self):
        query = self._query()
        params = self._params(TimeseriesParams)
        tz: ZoneInfo = params["tz"]
        try:
            boundaries = queries.timeseries_buckets(
                granularity=params["granularity"], start=query.start, end=query.end, tz=tz
            )
        except queries.TooManyBuckets as exc:
            raise ValidationError({"granularity": [str(exc)]}) from None
        except ValueError as exc:
            raise ValidationError({"start": [str(exc)]}) from None
        return report(
            *queries.outcome_timeseries(
                query=query,
                boundaries=boundaries,
                granularity=params["granularity"],
                tz=tz,
                convert_to=self._money(),
            )
        )

    @extend_schema(
        summary="Exact top N of a dimension plus an 'others' row, adding up to the total.",
        parameters=[*REPORT_FILTERS, BreakdownParams, MoneyParams],
        responses=BreakdownSerializer,
    )
    @action(detail=False, methods=["get"])
    def breakdown(self, request):
        return cached(
            request,
            lambda: report(
                *queries.outcome_breakdown(
                    query=self._query(), **self._params(BreakdownParams), convert_to=self._money()
                )
            ),
        )

    @extend_schema(
        summary="Histogram of win or bid prices, from 0 to the 99th percentile (last bin open-ended).",
        parameters=[*REPORT_FILTERS, HistogramParams],
        responses=HistogramSerializer,
    )
    @action(detail=False, methods=["get"])
    def histogram(self, request):
        return cached(
            request,
            lambda: report(*queries.outcome_price_histogram(query=self._query(), **self._params(HistogramParams))),
        )

    @extend_schema(
        summary="Distinct users: HyperLogLog estimate with 95% bounds, or exact.",
        parameters=REPORT_FILTERS,
        responses=ReachSerializer,
    )
    @action(detail=False, methods=["get"])
    def reach(self, request):
        return cached(request, lambda: report(*queries.outcome_reach(query=self._query())))
