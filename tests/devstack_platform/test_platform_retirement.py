"""
Retirement runs upstream's pipeline steps: ``retire_misc`` announces it while the account is intact; ``retire``,
a separate request, clears the profile, then renames the account, as edx-platform does.
"""

import pytest
from common.djangoapps.student.models import UserProfile, get_potentially_retired_user_by_username
from django.contrib.auth.models import User
from django.db.models.signals import post_save
from openedx.core.djangoapps.user_api.accounts.api import USER_PROFILE_PII, retire_user
from openedx.core.djangoapps.user_api.accounts.signals import USER_RETIRE_LMS_CRITICAL, USER_RETIRE_LMS_MISC
from openedx.core.djangoapps.user_api.accounts.views import AccountRetirementView, LMSAccountRetirementView


def test_retirement_signal_sees_the_account_before_it_is_scrubbed(learner, record_signals):
    calls = record_signals(RETIRE=USER_RETIRE_LMS_MISC)
    seen = []
    USER_RETIRE_LMS_MISC.connect(
        lambda user, **kwargs: seen.append((user.username, user.profile.name)), weak=False, dispatch_uid="test-seen"
    )
    try:
        retire_user(learner)
    finally:
        USER_RETIRE_LMS_MISC.disconnect(dispatch_uid="test-seen")

    assert [name for name, _ in calls] == ["RETIRE"]
    assert calls[0][1]["user"] == learner
    assert seen == [("ada", "Ada Lovelace")]


def test_retired_account_is_renamed_and_its_profile_blanked(learner):
    retire_user(learner)

    user = User.objects.get(pk=learner.pk)
    profile = UserProfile.objects.get(user=user)
    assert user.username.startswith("retired__user_")
    assert user.email.startswith("retired__user_")
    assert user.email.endswith("@retired.invalid")
    assert (user.is_active, user.has_usable_password()) == (False, False)
    assert {field: getattr(profile, field) for field in USER_PROFILE_PII} == USER_PROFILE_PII


def test_scrubbing_saves_user_and_profile_normally(learner, record_signals):
    calls = record_signals(SAVED=post_save)

    retire_user(learner)

    # upstream's order: the cleared profile, the profile without images, then the renamed user
    assert [kwargs["sender"] for _, kwargs in calls if kwargs["sender"] in {User, UserProfile}] == [
        UserProfile,
        UserProfile,
        User,
    ]


def test_the_steps_are_separate_and_the_profile_is_saved_before_the_rename(learner):
    seen = []

    def saved(sender, instance, **kwargs):
        if sender in {User, UserProfile}:
            seen.append((sender.__name__, (instance.user if sender is UserProfile else instance).username))

    post_save.connect(saved, weak=False, dispatch_uid="test-steps")
    USER_RETIRE_LMS_CRITICAL.connect(lambda **kwargs: seen.append(("CRITICAL", "")), weak=False, dispatch_uid="c")
    try:
        LMSAccountRetirementView().post("ada")
        assert User.objects.get(pk=learner.pk).username == "ada"  # retire_misc leaves the account as it was
        AccountRetirementView().post("ada")
    finally:
        post_save.disconnect(dispatch_uid="test-steps")
        USER_RETIRE_LMS_CRITICAL.disconnect(dispatch_uid="c")

    renamed = User.objects.get(pk=learner.pk).username
    assert seen == [("UserProfile", "ada"), ("UserProfile", "ada"), ("CRITICAL", ""), ("User", renamed)]


def test_a_retired_account_is_still_found_by_its_original_username(learner):
    retire_user(learner)

    assert get_potentially_retired_user_by_username("ada").pk == learner.pk
    with pytest.raises(User.DoesNotExist):
        get_potentially_retired_user_by_username("nobody")
