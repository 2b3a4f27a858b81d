"""``/api/subscriptions/`` (saved reports sent on a schedule), ``/api/alerts/`` (thresholds
evaluated every minute), their records (``…/{id}/deliveries/``, ``…/{id}/events/``), and
``/api/unsubscribe/{token}/``, which works without logging in.

Addresses and webhooks are never public: reading needs an API key with the ``read`` scope
or a person with the model's view permission (``private_reads``); writing as for saved
reports. The worker does the sending (``outcomes.deliveries``, ``outcomes.alerting``).
"""

from __future__ import annotations

from django.core import signing
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.response import Response

from outcomes import deliveries, notifications
from outcomes.models import Alert, Subscription
from outcomes.renderers import StrictJSONParser
from outcomes.subscription_serializers import (
    AlertEventSerializer,
    AlertSerializer,
    DeliverySerializer,
    SubscriptionSerializer,
)
from outcomes.views.experiments import ExperimentPagination

LIST_PARAMS = {"format", "page", "page_size"}


class _Owned(viewsets.ModelViewSet):
    pagination_class = ExperimentPagination
    parser_classes = [StrictJSONParser]
    private_reads = True
    filterset_class = None
    records = ""  # the action listing the records

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not hasattr(self, request.method.lower()):
            return  # a method this path does not take: 405, whatever its parameters
        allowed = LIST_PARAMS if self.action in ("list", self.records) else {"format"}
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "created": self.action == "create"}

    def _records(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


class SubscriptionViewSet(_Owned):
    queryset = Subscription.objects.select_related("report")
    serializer_class = SubscriptionSerializer
    permission_model = "subscription"
    records = "deliveries"

    def perform_create(self, serializer):
        subscription = serializer.save(created_by=str(self.request.user)[:150])
        deliveries.arm(subscription, timezone.now())
        subscription.save(update_fields=["last_scheduled_for", "next_run_at"])

    def perform_update(self, serializer):
        before = (serializer.instance.rrule, serializer.instance.timezone, serializer.instance.active)
        subscription = serializer.save()
        if (subscription.rrule, subscription.timezone, subscription.active) != before:
            deliveries.arm(subscription, timezone.now())
            subscription.save(update_fields=["last_scheduled_for", "next_run_at"])

    @extend_schema(
        summary="Send the report now, outside the schedule (a test, or a report wanted today).",
        request=None,
        responses={202: DeliverySerializer},
    )
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None):
        try:
            delivery = deliveries.send_now(self.get_object())
        except deliveries.TooSoon as exc:
            throttled = Throttled(wait=exc.retry_after, detail=f"{exc} Try again in {exc.retry_after} s.")
            raise throttled from None
        return Response(DeliverySerializer(delivery).data, status=202)

    @extend_schema(
        summary="The subscription's deliveries: when, to whom, size, how each ended.",
        responses=DeliverySerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        return self._records(self.get_object().deliveries.all(), DeliverySerializer)


class AlertViewSet(_Owned):
    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    permission_model = "alert"
    records = "events"

    def perform_create(self, serializer):
        serializer.save(created_by=str(self.request.user)[:150])

    @extend_schema(
        summary="The alert's changes of state and their notifications.", responses=AlertEventSerializer(many=True)
    )
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        return self._records(self.get_object().events.all(), AlertEventSerializer)


def _page(status: int, title: str, text: str, *, form: bool = False, token: str = "") -> HttpResponse:
    html = render_to_string("outcomes/unsubscribe.html", {"title": title, "text": text, "form": form, "token": token})
    return HttpResponse(html, status=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@csrf_exempt  # the signed token is the proof (RFC 8058 one-click POSTs come from mail providers)
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET: a page that confirms (link scanners follow links: a GET changes nothing); POST:
    unsubscribe (the page's button, or a mail client's one-click ``List-Unsubscribe-Post``)."""
    try:
        model, owner_id, recipient = notifications.read_token(token)
    except signing.BadSignature:
        return _page(400, "Link not valid", "This unsubscribe link is not valid (was it copied completely?).")
    owner = model.objects.filter(pk=owner_id).first()
    if owner is None:
        return _page(404, "Already gone", "This subscription no longer exists: nothing more will be sent.")
    what = f"“{owner.report.name}”" if isinstance(owner, Subscription) else f"the alert “{owner.name}”"
    if request.method == "GET":
        if recipient not in {r.lower() for r in owner.recipients}:
            return _page(200, "Unsubscribed", f"{recipient} does not receive {what}.")
        return _page(200, "Unsubscribe?", f"Stop sending {what} to {recipient}?", form=True, token=token)
    notifications.unsubscribe(model, owner_id, recipient)
    return _page(200, "Unsubscribed", f"{recipient} will not receive {what} any more.")
