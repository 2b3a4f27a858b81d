"""``/dashboard/``: one page over the report endpoints, for people who would rather look.

The page is static HTML and JavaScript (``outcomes/static/outcomes/dashboard.js``): it asks
the same API a program would (``stats``, ``reach``, ``timeseries``, ``breakdown``,
``histogram``, ``/api/ingestion/``, the list, the experiments and their results), with the
visitor's session, so it is as fast
as the reports at any data size and shows nothing the API would not. Charts are drawn by
uPlot, installed from npm (``make assets``).

Who may look: staff, or a user with the ``outcomes.view_auctionoutcome`` permission — the
people who may read outcomes in the admin. Anyone else is sent to the admin's login.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from outcomes.permissions import user_may_read


@require_GET
@login_required(login_url="admin:login")
@ensure_csrf_cookie  # "Save as report" posts to the API with the session, and its CSRF token
def dashboard(request):
    if not user_may_read(request.user):
        raise PermissionDenied("Reading outcomes needs staff status or the 'view auction outcome' permission.")
    config = {
        "api": "/api/outcomes/",
        "ingestion": reverse("ingestion"),
        "experiments": reverse("experiment-list"),
        "landscape": reverse("insights-bid-landscape"),
        "optimalBid": reverse("insights-optimal-bid"),
        "deadLetters": reverse("admin:outcomes_deadletter_changelist"),
        "outcomeAdmin": reverse("admin:outcomes_auctionoutcome_changelist"),
        "reports": reverse("saved-report-list"),
        "canSave": request.user.has_perm("outcomes.add_savedreport"),
        "subscriptions": reverse("subscription-list"),
        "canSubscribe": request.user.has_perm("outcomes.add_subscription"),
        "refreshSeconds": settings.DASHBOARD_REFRESH_SECONDS,
        "live": settings.LIVE_URL,
        "topic": settings.CONSUMER.topic,
    }
    return render(request, "outcomes/dashboard.html", {"config": config})
