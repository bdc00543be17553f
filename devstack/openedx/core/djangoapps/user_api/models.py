"""UserPreference: per-user key/value settings (language, time zone, ...), at edx-platform's module path."""

from django.contrib.auth.models import User
from django.core.validators import RegexValidator
from django.db import models


class UserPreference(models.Model):
    user = models.ForeignKey(User, db_index=True, related_name="preferences", on_delete=models.CASCADE)
    key = models.CharField(max_length=255, db_index=True, validators=[RegexValidator(r"[-_a-zA-Z0-9]+")])
    value = models.TextField()

    class Meta:
        app_label = "user_api"
        unique_together = ("user", "key")

    def __str__(self):
        return f"{self.user_id}: {self.key}"

    @classmethod
    def get_value(cls, user: User, preference_key: str, default: str | None = None) -> str | None:
        """The user's value for ``preference_key``, or ``default`` when they have none."""
        try:
            return cls.objects.get(user=user, key=preference_key).value
        except cls.DoesNotExist:
            return default
