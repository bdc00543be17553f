"""
Account retirement as the retirement pipeline drives it: ``retire_misc``, then ``retire``, each its own
request (transaction). :func:`retire_user` runs both, one after the other, for seeding and demos; tests of
races call the views' steps from separate processes (:mod:`openedx.core.djangoapps.user_api.accounts.views`).
"""

from django.contrib.auth.models import User

from openedx.core.djangoapps.user_api.accounts.views import (
    USER_PROFILE_PII,
    AccountRetirementView,
    LMSAccountRetirementView,
)

__all__ = ["USER_PROFILE_PII", "retire_user"]


def retire_user(user: User) -> User:
    """Run the pipeline's ``retire_misc`` then ``retire`` steps for ``user``; returns the renamed user."""
    username = user.username
    LMSAccountRetirementView().post(username)
    AccountRetirementView().post(username)
    return User.objects.get(pk=user.pk)
