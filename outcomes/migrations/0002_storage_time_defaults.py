"""Database defaults for the storage timestamps.

The consumer writes outcomes with COPY, which cannot call now(); with these defaults the
columns get the time of the transaction that stored the row. Django's own saves still set
them explicitly (auto_now_add / auto_now), so the ORM state is unchanged.
"""

from django.db import migrations

COLUMNS = ("timestamp", "created_at", "updated_at")


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[f'ALTER TABLE outcomes_auctionoutcome ALTER COLUMN "{c}" SET DEFAULT now()' for c in COLUMNS],
            reverse_sql=[f'ALTER TABLE outcomes_auctionoutcome ALTER COLUMN "{c}" DROP DEFAULT' for c in COLUMNS],
        ),
    ]
