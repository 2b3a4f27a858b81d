"""The dimensionless minute grain (``rollups`` family ``total``), filled from the currency ×
enriched minute grain it sums: exact, and it keeps the history of raw rows already gone.
Run before the consumers start (the migration job), like the other rollup migrations."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outcomes', '0004_build_rollups'),
    ]

    operations = [
        migrations.CreateModel(
            name='TotalRollupMinute',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('bucket', models.DateTimeField()),
                ('outcomes', models.BigIntegerField(default=0)),
                ('wins', models.BigIntegerField(default=0)),
                ('enriched_outcomes', models.BigIntegerField(default=0)),
                ('enriched_wins', models.BigIntegerField(default=0)),
                ('revenue_cents', models.BigIntegerField(default=0, help_text='Sum of win_price over won auctions.')),
                ('bid_cents', models.BigIntegerField(default=0, help_text='Sum of bid_price over all outcomes.')),
                ('won_bid_cents', models.BigIntegerField(default=0, help_text='Sum of bid_price over won auctions.')),
                ('pending', models.BooleanField(db_default=True, help_text='A partial row not yet merged by compaction.')),
            ],
            options={
                'db_table': 'outcomes_rollup_total_minute',
                'indexes': [models.Index(fields=['bucket'], name='rollup_total_minute_key')],
            },
        ),
        migrations.RunSQL(
            """
            INSERT INTO outcomes_rollup_total_minute
                (bucket, outcomes, wins, enriched_outcomes, enriched_wins, revenue_cents, bid_cents, won_bid_cents,
                 pending)
            SELECT bucket, sum(outcomes), sum(wins), sum(enriched_outcomes), sum(enriched_wins), sum(revenue_cents),
                   sum(bid_cents), sum(won_bid_cents), false
            FROM outcomes_rollup_minute GROUP BY bucket
            HAVING sum(outcomes) <> 0 OR sum(revenue_cents) <> 0 OR sum(bid_cents) <> 0
            """,
            migrations.RunSQL.noop,
        ),
    ]
