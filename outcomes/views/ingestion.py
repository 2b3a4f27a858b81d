"""``/api/ingestion/``: is ingestion keeping up, or is there no traffic? (``outcomes.ingestion``)"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.dbrouting import read_alias
from outcomes import ingestion
from outcomes.parameters import ALWAYS
from outcomes.report_serializers import IngestionSerializer


class IngestionView(APIView):
    """Is ingestion keeping up, or is there no traffic? (``outcomes.ingestion``)"""

    @extend_schema(
        summary="Consumer lag per partition, last stored outcome, throughput, dead letters, and a status.",
        responses=IngestionSerializer,
    )
    def get(self, request):
        unknown = sorted(set(request.query_params) - ALWAYS)
        if unknown:
            message = "Unknown query parameter: this endpoint takes none."
            raise ValidationError({name[:60]: [message] for name in unknown})
        return Response(ingestion.ingestion_status(using=read_alias()), headers={"Cache-Control": "no-store"})
