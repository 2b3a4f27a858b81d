from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class OutcomesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "outcomes"
    verbose_name = "Auction outcomes"

    def ready(self):
        from outcomes.models import APIKey

        # A key changed or deleted here (admin, commands) stops being trusted in this
        # process at once; other processes notice within API_KEY_CACHE_SECONDS.
        post_save.connect(_forget_verified_keys, sender=APIKey, dispatch_uid="forget-verified-keys-save")
        post_delete.connect(_forget_verified_keys, sender=APIKey, dispatch_uid="forget-verified-keys-delete")


def _forget_verified_keys(**kwargs):
    from outcomes.permissions import verified_keys

    verified_keys.clear()
