"""Builds the rollups from the outcomes already stored, so an upgraded deployment reports
correctly at once. A no-op on a new database; on a large one it takes a while (it reads
every row once): ``manage.py rebuild_rollups`` does the same online, in chunks."""

from django.db import migrations


def build(apps, schema_editor):
    from outcomes import rollups

    rollups.rebuild()


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0003_rollups_and_event_time")]

    operations = [migrations.RunPython(build, migrations.RunPython.noop)]
