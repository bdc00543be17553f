"""Creating accounts the way registration does, for tests, demos and fixtures."""

from django.contrib.auth.models import User
from django.db import transaction

from common.djangoapps.student.models import UserProfile


def create_user(username: str, email: str, *, name: str = "", password: str | None = None, **profile_fields) -> User:
    """
    Create a user and their profile in one transaction, with normal saves so ``post_save`` fires for both
    (first the User, then the UserProfile, as in edx-platform's account creation).

    ``password=None`` leaves the account without a usable password; ``profile_fields`` are UserProfile fields.
    """
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
        UserProfile.objects.create(user=user, name=name, **profile_fields)
    return user
