"""
UserProfile and the retired-account helpers, as in edx-platform's ``student/models/user.py``.

A retired account keeps its row; its username and email become hashes of the originals, so code holding an
old username (event-routing-backends transforming a late event, say) can still find it.
"""

# ruff: noqa: DJ001 -- nullable text columns are edx-platform's schema, which the plugin must read as it is

import hashlib

from django.conf import settings
from django.contrib.auth.models import User
from django.core.validators import RegexValidator
from django.db import models


class UserProfile(models.Model):
    """The personal data edx-platform keeps next to ``auth_user``."""

    GENDER_CHOICES = (("m", "Male"), ("f", "Female"), ("o", "Other/Prefer Not to Say"))
    LEVEL_OF_EDUCATION_CHOICES = (
        ("p", "Doctorate"),
        ("m", "Master's or professional degree"),
        ("b", "Bachelor's degree"),
        ("a", "Associate degree"),
        ("hs", "Secondary/high school"),
        ("jhs", "Junior secondary/junior high/middle school"),
        ("el", "Elementary/primary school"),
        ("none", "No formal education"),
        ("other", "Other education"),
    )

    user = models.OneToOneField(User, unique=True, db_index=True, related_name="profile", on_delete=models.CASCADE)
    name = models.CharField(blank=True, max_length=255, db_index=True)
    meta = models.TextField(blank=True)  # JSON
    courseware = models.CharField(blank=True, max_length=255, default="course.xml")
    language = models.CharField(blank=True, max_length=255, db_index=True)
    location = models.CharField(blank=True, max_length=255, db_index=True)
    year_of_birth = models.IntegerField(blank=True, null=True, db_index=True)
    gender = models.CharField(blank=True, null=True, max_length=6, db_index=True, choices=GENDER_CHOICES)
    level_of_education = models.CharField(
        blank=True, null=True, max_length=6, db_index=True, choices=LEVEL_OF_EDUCATION_CHOICES
    )
    mailing_address = models.TextField(blank=True, null=True)
    city = models.TextField(blank=True, null=True)
    country = models.CharField(blank=True, null=True, max_length=2)  # django_countries' CountryField upstream
    state = models.CharField(blank=True, null=True, max_length=2)
    goals = models.TextField(blank=True, null=True)
    bio = models.CharField(blank=True, null=True, max_length=3000, db_index=False)
    profile_image_uploaded_at = models.DateTimeField(null=True, blank=True)
    phone_number = models.CharField(
        blank=True, null=True, max_length=50, validators=[RegexValidator(regex=r"^\+?1?\d*$")]
    )

    class Meta:
        app_label = "student"
        db_table = "auth_userprofile"

    def __str__(self):
        return f"UserProfile of {self.user_id}"


def _retired_value(value: str, salt: str, template: str) -> str:
    digest = hashlib.sha256(f"{salt}{value.lower()}".encode()).hexdigest()
    return template.format(digest)


def get_retired_username_by_username(username: str) -> str:
    """The username an account called ``username`` gets when it is retired (hashed with the newest salt)."""
    return _retired_value(username, settings.RETIRED_USER_SALTS[-1], settings.RETIRED_USERNAME_FMT)


def get_retired_email_by_email(email: str) -> str:
    """The email an account with ``email`` gets when it is retired."""
    return _retired_value(email, settings.RETIRED_USER_SALTS[-1], settings.RETIRED_EMAIL_FMT)


def get_potentially_retired_user_by_username(username: str) -> User:
    """
    The account called ``username``, or the retired account that once was (under any salt).

    Raises ``User.DoesNotExist`` if there is neither.
    """
    candidates = [username] + [
        _retired_value(username, salt, settings.RETIRED_USERNAME_FMT) for salt in settings.RETIRED_USER_SALTS
    ]
    users = {user.username: user for user in User.objects.filter(username__in=candidates)}
    for candidate in candidates:
        if candidate in users:
            return users[candidate]
    raise User.DoesNotExist(f"No user, active or retired, with username {username!r}")
