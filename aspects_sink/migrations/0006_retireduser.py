from django.db import migrations, models
import django.utils.timezone


class Migration(migrations.Migration):

    dependencies = [
        ('aspects_sink', '0005_versiontick_at'),
    ]

    operations = [
        migrations.CreateModel(
            name='RetiredUser',
            fields=[
                ('user_id', models.BigIntegerField(help_text="the LMS user's id (the user may be deleted)", primary_key=True, serialize=False)),
                ('retired_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('scrubbed_at', models.DateTimeField(blank=True, help_text="when ClickHouse last finished removing the user's data", null=True)),
            ],
            options={
                'verbose_name': 'retired user',
            },
        ),
    ]
