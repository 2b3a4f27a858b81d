"""Domain rollups indexed by bucket alone: a breakdown by domain over a window (no domain
filter) reads that window's rows instead of scanning the whole grain. Built concurrently,
so ingestion keeps appending rollup rows while the indexes are made."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("outcomes", "0009_lost_offsets"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="domainrollupday",
            index=models.Index(fields=["bucket"], name="rollup_domain_day_bucket"),
        ),
        AddIndexConcurrently(
            model_name="domainrolluphour",
            index=models.Index(fields=["bucket"], name="rollup_domain_hour_bucket"),
        ),
    ]
