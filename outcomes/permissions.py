"""Who may do what: reads as configured (API_READ_ACCESS), writes for staff only."""

from django.conf import settings
from drf_spectacular.authentication import BasicScheme
from rest_framework.authentication import BasicAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadOpenWriteStaff(BasePermission):
    message = "Changing outcomes requires an authenticated staff user."

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            if settings.API_READ_ACCESS == "public":
                return True
            return bool(request.user and request.user.is_authenticated)
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class StrictBasicAuthentication(BasicAuthentication):
    """DRF's Basic authentication, refusing a user name no account can have with a 401.

    A NUL byte in it made the user lookup itself fail (PostgreSQL text cannot hold NUL):
    a 500 for a hostile header. User names never contain control characters.
    """

    def authenticate_credentials(self, userid, password, request=None):
        if any(ord(char) < 32 or ord(char) == 127 for char in userid):
            raise AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, request)


class StrictBasicScheme(BasicScheme):
    """The OpenAPI security scheme of ``StrictBasicAuthentication``: HTTP Basic, as before."""

    target_class = StrictBasicAuthentication
