"""The export: every filtered outcome streamed as CSV or NDJSON, bounded (``export_session``)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException

from analytics.dbrouting import read_alias
from outcomes import export_session, exports, parameters, xlsx
from outcomes.views.common import OutcomeReads


def _chained(first, rest):
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # also when the client left before the first chunk was sent


class TooManyExports(APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_exports"

    def __init__(self) -> None:
        super().__init__(
            f"{settings.API_EXPORT_CONCURRENCY} exports are running in this API process already "
            "(API_EXPORT_CONCURRENCY); retry in a few seconds."
        )
        self.wait = EXPORT_RETRY_AFTER_S


EXPORT_RETRY_AFTER_S = 10


class OutcomeExportViewSet(OutcomeReads, viewsets.GenericViewSet):
    """``/api/outcomes/export/``."""

    pagination_class = None

    @extend_schema(
        summary="Every filtered outcome, streamed as CSV (with a header row), NDJSON (one object per line) or an "
        "Excel workbook.",
        description=(
            "Columns: " + ", ".join(exports.COLUMNS) + ". Decimals are exact strings, timestamps ISO 8601 UTC "
            "(`Z`), `user_interests` a JSON array, `site_domain` empty when the message had none. Ordered by "
            "event time then id unless `ordering` says otherwise. Streams in constant memory: nothing is "
            "counted or buffered first, so there is no size limit and no total. `xlsx`: typed cells (numbers, "
            "booleans, money with two decimals, times as Excel date-times in UTC), the header row frozen, a "
            'next sheet after every 1,048,575 rows, and a sheet "Query" with the filters, the time zone, when '
            "it was generated and how many rows."
        ),
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=sorted(exports.FORMATS), default="csv", description="File format."
            ),
            OpenApiParameter(
                "ordering",
                OpenApiTypes.STR,
                enum=[*exports.ORDERINGS],
                description="One field an index serves in full (default event_time): an export streams in that "
                "order from its first row.",
            ),
            OpenApiParameter(
                "escape_formulas",
                OpenApiTypes.BOOL,
                default=True,
                description="CSV and xlsx: a ' before a text cell (bid id, user id, site domain, currency) that starts "
                "with =, +, -, @, a tab or a carriage return, so a spreadsheet never runs it as a formula. false: "
                "values as stored (for programs). NDJSON is never escaped.",
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, xlsx.CONTENT_TYPE): OpenApiTypes.BINARY,
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request):
        name = request.query_params.get("format", "csv")
        export_format = parameters.export_format(name)
        parameters.export_ordering(request.query_params.get("ordering"))
        escape = parameters.boolean(request.query_params.get("escape_formulas", "true"), "escape_formulas")
        queryset = self._filterset().qs
        if not queryset.query.order_by:
            queryset = queryset.order_by(*exports.DEFAULT_ORDERING)
        body = export_session.ExportBody(
            peer=request.META.get("gunicorn.socket"),
            who=str(request.user) if request.user.is_authenticated else f"anonymous:{request.META.get('REMOTE_ADDR')}",
            export_format=name,
            params=request.query_params,
            header_rows=1 if export_format.name == "csv" else 0,
        )
        if not export_session.slots.try_take(body):
            raise TooManyExports()
        try:
            body.start(
                exports.stream(
                    queryset,
                    export_format,
                    using=read_alias(),
                    statement_timeout_ms=settings.API_EXPORT_STATEMENT_TIMEOUT_MS,
                    escape_formulas=escape,
                    query=xlsx.query_sheet(
                        what="outcomes export",
                        filters=[(k, v) for k, v in request.query_params.items() if k != "format"],
                        time_zone="UTC",
                        generated=timezone.now(),
                    ),
                )
            )
            first = body.first()  # a database error before any byte is still a plain error response
        except export_session.ClientGone:
            body.close()
            return HttpResponse(status=499, reason="Client Closed Request")
        except BaseException:
            body.close()
            raise
        response = StreamingHttpResponse(_chained(first, body), content_type=export_format.content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="outcomes-{stamp}.{export_format.extension}"'
        response["Cache-Control"] = "no-store"
        return response
