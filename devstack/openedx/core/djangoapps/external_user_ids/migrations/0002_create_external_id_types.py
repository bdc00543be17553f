"""Create the external id types event-routing-backends and LTI ask for by name."""

from django.db import migrations

TYPES = {
    "mb_coaching": "MicroBachelors Coaching",
    "lti": "LTI Xblock launches",
    "xapi": "xAPI actor anonymous ids",
    "caliper": "Caliper actor anonymous ids",
}


def create_types(apps, schema_editor):
    ExternalIdType = apps.get_model("external_user_ids", "ExternalIdType")
    for name, description in TYPES.items():
        ExternalIdType.objects.update_or_create(name=name, defaults={"description": description})


def delete_types(apps, schema_editor):
    apps.get_model("external_user_ids", "ExternalIdType").objects.filter(name__in=TYPES).delete()


class Migration(migrations.Migration):
    dependencies = [("external_user_ids", "0001_initial")]

    operations = [migrations.RunPython(create_types, delete_types)]
