"""The domain and interest rollups keep the currency, so reports converting money
(``convert_to``) answer from them.

Rows stored before have no currency to give: they get '' here, and once the schema is the
latest, the post-migrate step (``outcomes.apps``) recomputes these grains from the raw rows
wherever raw rows are kept. Rows of pruned time keep '' (their only record): reports still
add them up, and a conversion over them says that day cannot be converted.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outcomes', '0013_exchange_rates'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='domainrollupday',
            name='rollup_domain_day_key',
        ),
        migrations.RemoveIndex(
            model_name='domainrolluphour',
            name='rollup_domain_hour_key',
        ),
        migrations.RemoveIndex(
            model_name='domainrolluptotal',
            name='rollup_domain_total_key',
        ),
        migrations.RemoveIndex(
            model_name='interestrolluphour',
            name='rollup_interest_hour_key',
        ),
        migrations.AddField(
            model_name='domainrollupday',
            name='currency',
            field=models.CharField(default='', max_length=3),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='domainrolluphour',
            name='currency',
            field=models.CharField(default='', max_length=3),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='domainrolluptotal',
            name='currency',
            field=models.CharField(default='', max_length=3),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='interestrolluphour',
            name='currency',
            field=models.CharField(default='', max_length=3),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name='domainrollupday',
            index=models.Index(fields=['site_domain', 'bucket', 'currency'], name='rollup_domain_day_key'),
        ),
        migrations.AddIndex(
            model_name='domainrolluphour',
            index=models.Index(fields=['site_domain', 'bucket', 'currency'], name='rollup_domain_hour_key'),
        ),
        migrations.AddIndex(
            model_name='domainrolluptotal',
            index=models.Index(fields=['site_domain', 'currency'], name='rollup_domain_total_key'),
        ),
        migrations.AddIndex(
            model_name='interestrolluphour',
            index=models.Index(fields=['bucket', 'interest', 'currency'], name='rollup_interest_hour_key'),
        ),
    ]
