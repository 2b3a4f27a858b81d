"""WSGI entry point (gunicorn serves ``analytics.wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analytics.settings")
application = get_wsgi_application()
