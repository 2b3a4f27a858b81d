# The ``sample`` column (a hash of the bid id) and the two partial covering indexes that
# percentiles of large raw-filtered sets are sampled from. Adding a stored generated column
# rewrites the outcomes table once.

import django.db.models.expressions
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outcomes', '0005_total_minute_rollup'),
    ]

    operations = [
        migrations.AddField(
            model_name='auctionoutcome',
            name='sample',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Cast(django.db.models.expressions.CombinedExpression(models.Func(models.F('bid_id'), function='hashtext'), '&', models.Value(1023)), models.SmallIntegerField()), output_field=models.SmallIntegerField()),
        ),
        migrations.AddIndex(
            model_name='auctionoutcome',
            index=models.Index(condition=models.Q(('sample__lt', 256)), fields=['site_domain', 'sample'], include=('event_time', 'win_status', 'win_price', 'bid_price', 'currency', 'enriched'), name='outcome_domain_sample_idx'),
        ),
        migrations.AddIndex(
            model_name='auctionoutcome',
            index=models.Index(condition=models.Q(('sample__lt', 256)), fields=['sample', 'event_time'], include=('win_status', 'win_price', 'bid_price', 'currency', 'enriched'), name='outcome_sample_idx'),
        ),
    ]
