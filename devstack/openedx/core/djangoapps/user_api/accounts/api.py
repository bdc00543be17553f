"""
Account retirement, condensed from edx-platform's retirement pipeline into one call.

Upstream, the "retire misc" step sends USER_RETIRE_LMS_MISC while the account still has its username and
email; a later step renames the account to its retired values and blanks the profile. Both happen here, in
that order and in one transaction, with normal saves so ``post_save`` fires for User and UserProfile.
"""

from common.djangoapps.student.models import UserProfile, get_retired_email_by_email, get_retired_username_by_username
from django.contrib.auth.models import User
from django.db import transaction

from openedx.core.djangoapps.user_api.accounts.signals import USER_RETIRE_LMS_MISC

# What retirement writes into the profile's personal fields (edx-platform's values).
USER_PROFILE_PII = {
    "name": "",
    "meta": "",
    "location": "",
    "year_of_birth": None,
    "gender": None,
    "mailing_address": None,
    "city": None,
    "country": None,
    "bio": None,
    "phone_number": None,
}


def retire_user(user: User) -> User:
    """Announce the retirement, then replace the account's personal data; returns the scrubbed user."""
    with transaction.atomic():
        USER_RETIRE_LMS_MISC.send(sender=retire_user, user=user)

        user.username = get_retired_username_by_username(user.username)
        user.email = get_retired_email_by_email(user.email)
        user.first_name = ""
        user.last_name = ""
        user.is_active = False
        user.set_unusable_password()
        user.save()

        profile = UserProfile.objects.filter(user=user).first()
        if profile is not None:
            for field, retired_value in USER_PROFILE_PII.items():
                setattr(profile, field, retired_value)
            profile.save()
    return user
