"""Who may do what: reads as configured (API_READ_ACCESS), writes for staff only."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadOpenWriteStaff(BasePermission):
    message = "Changing outcomes requires an authenticated staff user."

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            if settings.API_READ_ACCESS == "public":
                return True
            return bool(request.user and request.user.is_authenticated)
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
