"""JSON with orjson, and a report's Excel workbook.

JSON: orjson. Rendering: the same bytes DRF's JSONRenderer writes for this API's data,
several times faster — a 1,440-bucket time series renders in about 1 ms instead of 6.
Parsing: stricter than the standard library's, and never a 500 on hostile input."""

from __future__ import annotations

from decimal import Decimal

import orjson
from django.utils import timezone
from django.utils.functional import Promise
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer

from outcomes import report_workbooks, xlsx


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Promise):  # lazily translated error messages
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


class FastJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if renderer_context and self.get_indent(accepted_media_type, renderer_context):
            return super().render(data, accepted_media_type, renderer_context)  # ?indent= for humans
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


class StrictJSONParser(JSONParser):
    """Request bodies parsed with orjson: strict UTF-8, NaN/Infinity refused, and nesting
    deeper than 1,024 levels a 400 (the standard library's parser hits Python's recursion
    limit there, a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class XlsxReportRenderer(BaseRenderer):
    """``?format=xlsx`` on a report: its answer as an Excel workbook (``report_workbooks``),
    named after the report. An error stays JSON (with its status), as on every endpoint."""

    media_type = xlsx.CONTENT_TYPE
    format = "xlsx"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        context = renderer_context or {}
        response, request, view = context.get("response"), context.get("request"), context.get("view")
        if response is None or response.status_code >= 300 or request is None:
            if response is not None:
                response["Content-Type"] = "application/json"
            return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
        name = getattr(view, "action", None) or "report"
        generated = timezone.now()
        query = [
            ("report", request.path),
            *((f"parameter: {k}", v) for k, v in request.query_params.items() if k != "format"),
            ("time zone", request.query_params.get("tz", "UTC")),
            ("generated at", generated.isoformat()),
        ]
        response["Content-Disposition"] = f'attachment; filename="{name}-{generated:%Y%m%dT%H%M%SZ}.xlsx"'
        return report_workbooks.workbook(name, data, query=query)
