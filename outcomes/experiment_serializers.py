"""The experiment registry's JSON shape (``/api/experiments/``), validated by the plan's
rules in ``outcomes.experiments`` (the model's ``clean`` applies the same)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from outcomes import experiments
from outcomes.models import Experiment
from outcomes.validation import NO_NUL_PATTERN, NOT_BLANK_PATTERN, SLUG_PATTERN

# The variants' shape, for the schema; every rule (names, weights, count) is
# ``experiments.plan_errors``', so errors come back as plain messages.
_VARIANT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": SLUG_PATTERN, "description": "As outcomes carry it in `variant`."},
        "share": {
            "type": "number",
            "exclusiveMinimum": True,
            "minimum": 0,
            "maximum": experiments.MAX_SHARE,
            "description": "A relative weight: 0.5 and 0.5 (or 1 and 1) plan an even split.",
        },
    },
    "required": ["name", "share"],
    "additionalProperties": False,
}


@extend_schema_field({"type": "array", "minItems": 2, "maxItems": experiments.MAX_VARIANTS, "items": _VARIANT})
class _Variants(serializers.JSONField):
    pass


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK_PATTERN})
class NameField(serializers.CharField):
    """At most ``max_length`` characters as given (the schema's limit), before the trimming of
    surrounding whitespace that would let a longer one through."""

    def to_internal_value(self, data):
        if not isinstance(data, str):  # DRF would take 0 as "0": the schema says a string
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": NO_NUL_PATTERN})
class _Prose(serializers.CharField):
    """Free text, empty allowed (taken here rather than by ``allow_blank``, which the schema
    would state a second time, as a ``oneOf`` an empty string matches twice)."""

    def run_validation(self, data=serializers.empty):
        # Blank (whitespace and separators only) is empty, as trimming makes it.
        return "" if isinstance(data, str) and data.strip() == "" else super().run_validation(data)


@extend_schema_field({"type": "array", "uniqueItems": True, "items": {"enum": list(experiments.METRICS)}})
class _Metrics(serializers.JSONField):
    """Checked by ``experiments.plan_errors`` (one message, not one per item)."""


class ExperimentSerializer(serializers.ModelSerializer):
    complete_output = True
    name = NameField(max_length=200)
    hypothesis = _Prose(required=False, default="")
    key = serializers.RegexField(
        SLUG_PATTERN,
        max_length=64,
        validators=[UniqueValidator(Experiment.objects.all(), message="An experiment with this key exists already.")],
        help_text="What outcomes carry in `experiment`. Cannot change once created.",
    )
    variants = _Variants(help_text="The control first, then the variants compared with it; names differ.")
    guardrail_metrics = _Metrics(
        required=False, default=list, help_text="Metrics that must not get worse; not the primary metric."
    )

    class Meta:
        model = Experiment
        fields = [
            "key",
            "name",
            "hypothesis",
            "unit",
            "variants",
            "primary_metric",
            "guardrail_metrics",
            "start",
            "end",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate_key(self, value: str) -> str:
        if self.instance is not None and value != self.instance.key:
            raise serializers.ValidationError("The key of an experiment cannot change: outcomes carry it.")
        return value

    def validate(self, attrs: dict) -> dict:
        def given(name: str):
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name, None) if self.instance is not None else None

        variants = given("variants")
        errors = experiments.plan_errors(
            variants=variants,
            primary_metric=given("primary_metric"),
            # Absent is none; anything given (false included) is checked as given.
            guardrail_metrics=[] if given("guardrail_metrics") is None else given("guardrail_metrics"),
            start=given("start"),
            end=given("end"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs
