from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('aspects_sink', '0004_sinkhealth'),
    ]

    operations = [
        migrations.AddField(
            model_name='versiontick',
            name='at',
            field=models.DateTimeField(null=True),
        ),
    ]
