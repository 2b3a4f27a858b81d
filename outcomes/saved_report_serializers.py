"""A saved report as the API reads and writes it: validated by the endpoint's own checks
(``outcomes.parameters.check_all``), so a report the endpoint would refuse is refused when it
is saved, with the same message (under ``params``)."""

from __future__ import annotations

import re
from zoneinfo import available_timezones

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from analytics.guards import CONTROL_CHARACTERS
from outcomes import parameters
from outcomes.experiment_serializers import NameField
from outcomes.models import SavedReport
from outcomes.validation import SLUG_PATTERN, slug

# What is chosen when the report runs, not saved with it.
NOT_SAVED = {"format": "The format is chosen when the report runs (…/run/?format=xlsx)."}
WINDOWED = "A report with a window takes its start and end from it at each run."
MAX_PARAMS = 40
MAX_VALUE = 1_000
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


TIME_ZONES = sorted(available_timezones())
_VALUE = f"^[^{CONTROL_CHARACTERS}]*$"


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": MAX_PARAMS,
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_VALUE, "pattern": _VALUE},
                {"type": "number"},
                {"type": "boolean"},
            ]
        },
        "description": "The endpoint's query parameters, as it takes them (checked as it checks them).",
    }
)
class Params(serializers.JSONField):
    @staticmethod
    def checked(value) -> dict:
        """Query parameters as text, each checked for size and control characters."""
        if not isinstance(value, dict):
            raise ValidationError('An object of query parameters: {"site_domain": "news.example", …}.')
        if len(value) > MAX_PARAMS:
            raise ValidationError(f"At most {MAX_PARAMS} parameters.")
        out = {}
        for name, given in value.items():
            if _CONTROL.search(name) or (isinstance(given, str) and _CONTROL.search(given)):
                # as in a query string (analytics.guards), where the endpoint would refuse them
                raise ValidationError(
                    {_CONTROL.sub("?", name)[:60]: ["Control characters (such as NUL) are not allowed."]}
                )
            if isinstance(given, bool):
                given = "true" if given else "false"
            elif isinstance(given, int | float):
                given = str(given)
            if not isinstance(given, str) or len(given) > MAX_VALUE:
                message = f"A query parameter's value: text of at most {MAX_VALUE} characters."
                raise ValidationError({name[:60]: [message]})
            out[name] = given
        return out


def query_dict(params: dict) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in params.items():
        query[name] = value
    return query


class SavedReportSerializer(serializers.ModelSerializer):
    closed = True  # unknown fields are refused (the schema says additionalProperties: false)
    name = NameField(max_length=200)
    params = Params(required=False)
    timezone = serializers.ChoiceField(choices=TIME_ZONES, required=False, help_text="IANA time zone of the window.")

    class Meta:
        model = SavedReport
        fields = ["id", "name", "report", "params", "window", "timezone", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise ValidationError({name[:60]: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def validate_params(self, value) -> dict:
        return Params.checked(value)

    def validate(self, attrs):
        report = attrs.get("report", getattr(self.instance, "report", None))
        params = dict(attrs.get("params", getattr(self.instance, "params", {})))
        window = attrs.get("window", getattr(self.instance, "window", ""))
        tz = attrs.get("timezone", getattr(self.instance, "timezone", "UTC"))
        errors = {name: [message] for name, message in NOT_SAVED.items() if name in params}
        if window:
            errors.update({name: [WINDOWED] for name in ("start", "end") if name in params})
        if report == SavedReport.Report.RESULTS:
            key = params.pop("experiment", None)
            if key is None:
                errors["experiment"] = ["The experiment whose results these are (its key)."]
            else:
                try:
                    slug(key)
                except ValueError as exc:
                    errors["experiment"] = [f"An experiment key ({SLUG_PATTERN}): this one {exc}."]
        if report == SavedReport.Report.TIMESERIES and "tz" in params and params["tz"] != tz:
            errors["tz"] = [f"The report's timezone is {tz}: give the same tz, or leave it out."]
        if errors:
            raise ValidationError({"params": errors})
        try:
            parameters.check_all(report, query_dict(params))
        except ValidationError as exc:
            raise ValidationError({"params": exc.detail}) from None
        return attrs
