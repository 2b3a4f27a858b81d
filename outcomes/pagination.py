"""Pagination that stays fast at any depth and refuses bad input instead of guessing.

Two ways to walk a list, both with every filter and ordering:

* **page numbers** (the spec's ``page``/``page_size``): ``count`` is exact when it is cheap
  (from the rollups, or at most 10,000 matching rows) and otherwise the planner's estimate,
  flagged by ``count_is_estimate``. Deep pages cost an ``OFFSET``, so ``page × page_size``
  may not pass ``API_MAX_PAGE_OFFSET`` (like Elasticsearch's ``max_result_window``): beyond
  it, walk with a cursor;
* **cursors** (keyset, ``outcomes.cursors``): ``?cursor=`` (empty) starts, each response's
  ``next`` continues; every page costs what the first does.

``page`` must be a positive integer (else 400); a page past the last is a 404;
``page_size`` must be between 1 and API_MAX_PAGE_SIZE (else 400) — never silently clamped.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from outcomes import cursors


class OutcomePagination(BasePagination):
    page_query_param = "page"
    page_size_query_param = "page_size"
    cursor_query_param = "cursor"
    query_params = frozenset({"page", "page_size", "cursor"})

    # ------------------------------------------------------------------ common
    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        maximum = settings.API_MAX_PAGE_SIZE
        if raw is None:
            return settings.API_PAGE_SIZE
        try:
            size = int(raw)
        except ValueError:
            size = None
        if size is None or not 1 <= size <= maximum:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be an integer from 1 to {maximum}; got '{raw[:40]}'."]}
            )
        return size

    def paginate_queryset(self, queryset, request, view=None):
        """The page's rows. A page-number page asks the view for the count (``view.count()``:
        (count, is_estimate)), which it takes from the rollups when they can say."""
        self.request = request
        self.count_function = getattr(view, "count", None)
        self.page_size = self.get_page_size(request)
        if self.cursor_query_param in request.query_params:
            if self.page_query_param in request.query_params:
                raise ValidationError({self.page_query_param: ["Use either page or cursor, not both."]})
            return self._paginate_cursor(queryset, request)
        return self._paginate_pages(queryset, request)

    def get_paginated_response(self, data):
        if self.mode == "cursor":
            return Response({"next": self.next_link, "next_cursor": self.next_cursor, "results": data})
        return Response(
            {
                "count": self.count,
                "count_is_estimate": self.count_is_estimate,
                "next": self.next_link,
                "previous": self.previous_link,
                "results": data,
            }
        )

    def get_schema_operation_parameters(self, view):
        def param(name, kind, text):
            return {"name": name, "required": False, "in": "query", "description": text, "schema": {"type": kind}}

        return [
            param(self.page_query_param, "integer", "Page number (1-based); pages end at API_MAX_PAGE_OFFSET rows."),
            param(self.page_size_query_param, "integer", "Results per page (1 to API_MAX_PAGE_SIZE)."),
            param(self.cursor_query_param, "string", "Keyset cursor: empty to start, then each page's next_cursor."),
        ]

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "results"],
            "properties": {
                "count": {"type": "integer", "description": "Absent in cursor mode."},
                "count_is_estimate": {"type": "boolean", "description": "true when count is the planner's estimate."},
                "next": link,
                "previous": link,
                "next_cursor": {"type": "string", "nullable": True, "description": "Cursor mode only."},
                "results": schema,
            },
        }

    # ------------------------------------------------------------------ page numbers
    def _paginate_pages(self, queryset, request):
        self.mode = "pages"
        raw = request.query_params.get(self.page_query_param, "1")
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if number < 1:
            raise ValidationError({self.page_query_param: [f"Must be a positive integer; got '{raw[:40]}'."]})
        offset = (number - 1) * self.page_size
        if offset > settings.API_MAX_PAGE_OFFSET:
            raise ValidationError(
                {
                    self.page_query_param: [
                        f"Pages beyond row {settings.API_MAX_PAGE_OFFSET:,} are not served by number: "
                        "walk the list with ?cursor= instead (every page as fast as the first)."
                    ]
                }
            )
        rows = list(queryset[offset : offset + self.page_size + 1])
        has_next = len(rows) > self.page_size
        rows = rows[: self.page_size]
        self.count, self.count_is_estimate = self.count_function() if self.count_function else (None, True)
        if not rows and number > 1:
            last = max(1, -(-self.count // self.page_size)) if self.count is not None else None
            hint = f" ({'about ' if self.count_is_estimate else ''}{last})" if last else ""
            raise NotFound({self.page_query_param: [f"Page {number} is past the last page{hint}."]})
        if not self.count_is_estimate:
            has_next = offset + len(rows) < self.count if self.count is not None else has_next
        elif self.count is not None and has_next:
            self.count = max(self.count, offset + len(rows) + 1)
        url = request.build_absolute_uri()
        self.next_link = replace_query_param(url, self.page_query_param, number + 1) if has_next else None
        if number == 1:
            self.previous_link = None
        elif number == 2:
            self.previous_link = remove_query_param(url, self.page_query_param)
        else:
            self.previous_link = replace_query_param(url, self.page_query_param, number - 1)
        return rows

    # ------------------------------------------------------------------ cursors
    def _paginate_cursor(self, queryset, request):
        self.mode = "cursor"
        token = request.query_params.get(self.cursor_query_param, "")
        try:
            rows, has_next, ordering = cursors.page(queryset, token, self.page_size)
        except cursors.InvalidCursor as exc:
            raise ValidationError({self.cursor_query_param: [str(exc)]}) from None
        if has_next:
            self.next_cursor = cursors.position(ordering, rows[-1])
            self.next_link = replace_query_param(
                request.build_absolute_uri(), self.cursor_query_param, self.next_cursor
            )
        else:
            self.next_cursor = self.next_link = None
        return rows
