import logging

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate, post_save

logger = logging.getLogger("outcomes.migrations")

# Migrations after which rollups are computed from the raw outcomes already stored: every
# grain (None) once the rollups exist, and the grains a later migration gave a new dimension.
REBUILT_AFTER: dict[str, tuple[str, ...] | None] = {
    "0004_build_rollups": None,
    "0014_currency_in_domain_and_interest_rollups": ("domain.hour", "domain.day", "domain.all", "interest.hour"),
    "0017_experiment_rollup": ("experiment.hour",),
    "0018_experiment_moments_and_user_rollup": ("experiment.hour", "experiment_user.day"),
    "0019_bid_landscape": (
        "landscape.hour",
        "landscape.day",
        "landscape_domain.day",
        "landscape.all",
        "experiment_user.all",
    ),
}


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
        post_migrate.connect(_build_rollups_after_upgrade, sender=self, dispatch_uid="build-rollups-after-upgrade")

        from analytics.metrics import SCRAPED
        from outcomes.notifications import DeliveryMetrics

        if not any(isinstance(c, DeliveryMetrics) for c in SCRAPED._collector_to_names):
            SCRAPED.register(DeliveryMetrics())


def _forget_verified_keys(**kwargs):
    from outcomes.permissions import verified_keys

    verified_keys.clear()


def _build_rollups_after_upgrade(sender, plan=None, using="default", **kwargs):
    """An upgrade across a migration of ``REBUILT_AFTER`` computes its grains from the outcomes
    already stored, once the schema is the latest (the live code's). Migrated only part of
    the way, it says how to finish instead of running code of a later schema."""
    applied_now = [
        migration.name
        for migration, backwards in plan or ()
        if migration.app_label == sender.label and migration.name in REBUILT_AFTER and not backwards
    ]
    if not applied_now or using != "default":
        return
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    if not set(loader.graph.leaf_nodes(sender.label)) <= set(loader.applied_migrations):
        logger.warning(
            "outcomes stored before the rollups existed are not rolled up yet: migrate to the latest "
            "migration (the build runs then), or run `manage.py rebuild_rollups` once there"
        )
        return
    from outcomes import rollups

    wanted = [REBUILT_AFTER[name] for name in applied_now]
    only = None if None in wanted else {key for keys in wanted for key in keys}
    chunks = rollups.rebuild(only=only)
    if chunks:
        logger.info(
            "rollups computed from the outcomes stored before the migration",
            extra={"days": chunks, "grains": sorted(only) if only else "all"},
        )
