"""Once built the rollups of the outcomes already stored by calling ``rollups.rebuild()``.

A migration must not run code that later migrations change: the live ``rebuild`` walks
every grain, including tables created by later migrations, so a database that stored
outcomes before the rollups existed could not be upgraded. The build now runs after
``migrate`` has reached the schema the code knows (``outcomes.apps``: ``post_migrate``
when this migration was applied in that run); this migration only marks the point.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0003_rollups_and_event_time")]

    operations = []
