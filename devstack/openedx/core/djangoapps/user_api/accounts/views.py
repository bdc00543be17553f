"""
The two steps of edx-platform's retirement pipeline that touch what analytics holds, at upstream's module
path: ``LMSAccountRetirementView.post`` (POST /api/user/v1/accounts/retire_misc/) and, later,
``AccountRetirementView.post`` (POST /api/user/v1/accounts/retire/). The driver calls them as separate
requests, minutes apart possibly; each is one transaction (edx-platform runs requests with
``ATOMIC_REQUESTS``), in the order of upstream's steps. The stand-in takes a username where upstream reads
the request body, and has no wiki, credit, enterprise or mailing models, so those steps are left out.
"""

from common.djangoapps.student.models import (
    UserProfile,
    get_potentially_retired_user_by_username,
    get_retired_email_by_email,
    get_retired_username_by_username,
)
from django.db import transaction

from openedx.core.djangoapps.user_api.accounts.signals import (
    USER_RETIRE_LMS_CRITICAL,
    USER_RETIRE_LMS_MISC,
    USER_RETIRE_MAILINGS,
)

# What retirement writes into the profile's personal fields (edx-platform's USER_PROFILE_PII).
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


class LMSAccountRetirementView:
    """``retire_misc``: retires the LMS's miscellaneous data, then announces the retirement (real username)."""

    def post(self, username: str) -> None:
        with transaction.atomic():
            user = get_potentially_retired_user_by_username(username)
            USER_RETIRE_LMS_MISC.send(sender=self.__class__, user=user)
            USER_RETIRE_MAILINGS.send(
                sender=self.__class__, email=user.email, new_email=get_retired_email_by_email(user.email), user=user
            )


class AccountRetirementView:
    """
    ``retire``: clears the profile (a profile save while the username is still the real one), deletes the
    profile images (another profile save), sends ``USER_RETIRE_LMS_CRITICAL``, then renames the account.
    """

    def post(self, username: str) -> None:
        with transaction.atomic():
            user = get_potentially_retired_user_by_username(username)
            retired_username = get_retired_username_by_username(username)
            self.clear_pii_from_userprofile(user)
            self.delete_users_profile_images(user)
            USER_RETIRE_LMS_CRITICAL.send(sender=self.__class__, user=user)
            user.first_name = ""
            user.last_name = ""
            user.is_active = False
            user.username = retired_username
            # The stand-in has no deactivation step (upstream's DeactivateLogoutView), which retires the email
            # and the password earlier in the pipeline: they are retired here, before the same save.
            user.email = get_retired_email_by_email(user.email)
            user.set_unusable_password()
            user.save()

    @staticmethod
    def clear_pii_from_userprofile(user) -> None:
        profile = UserProfile.objects.filter(user=user).first()
        if profile is None:
            return
        for field, retired_value in USER_PROFILE_PII.items():
            setattr(profile, field, retired_value)
        profile.save()

    @staticmethod
    def delete_users_profile_images(user) -> None:
        """Upstream's ``set_has_profile_image(username, False)`` saves the profile again, then removes the files."""
        profile = UserProfile.objects.filter(user=user).first()
        if profile is not None:
            profile.profile_image_uploaded_at = None
            profile.save()
