"""Accounts, external ids and preferences, and event-routing-backends using them as it would in Open edX."""

import uuid

from common.djangoapps.student.helpers import create_user
from common.djangoapps.student.models import UserProfile
from django.contrib.auth.models import User
from django.db.models.signals import post_save
from event_routing_backends import helpers as erb_helpers
from openedx.core.djangoapps.external_user_ids.models import ExternalId, ExternalIdType
from openedx.core.djangoapps.user_api.accounts.api import retire_user
from openedx.core.djangoapps.user_api.models import UserPreference


def test_create_user_saves_the_user_then_the_profile(db, record_signals):
    calls = record_signals(SAVED=post_save)

    user = create_user("grace", "grace@example.com", name="Grace Hopper", year_of_birth=1906, password="pw")

    platform_saves = [
        (kwargs["sender"], kwargs["created"]) for _, kwargs in calls if kwargs["sender"] in {User, UserProfile}
    ]
    assert platform_saves == [(User, True), (UserProfile, True)]
    assert (user.profile.name, user.profile.year_of_birth) == ("Grace Hopper", 1906)
    assert user.check_password("pw")


def test_add_new_user_id_creates_one_id_per_type(learner):
    first, created = ExternalId.add_new_user_id(learner, ExternalIdType.XAPI)
    again, created_again = ExternalId.add_new_user_id(learner, ExternalIdType.XAPI)

    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert isinstance(first.external_user_id, uuid.UUID)
    assert ExternalId.add_new_user_id(learner, "no-such-type") == (None, False)


def test_batch_creation_of_external_ids_sends_no_post_save(learner, record_signals):
    other = create_user("bob", "bob@example.com")
    ExternalId.add_new_user_id(learner, ExternalIdType.XAPI)
    calls = record_signals(SAVED=post_save)

    ids = ExternalId.batch_get_or_create_user_ids([learner, other], ExternalIdType.XAPI)

    assert set(ids) == {learner.id, other.id}
    assert [kwargs for _, kwargs in calls if kwargs["sender"] is ExternalId] == []
    assert ExternalId.objects.filter(external_id_type__name=ExternalIdType.XAPI).count() == 2


def test_user_preference_value_or_default(learner):
    UserPreference.objects.create(user=learner, key="pref-lang", value="fr")

    assert UserPreference.get_value(learner, "pref-lang") == "fr"
    assert UserPreference.get_value(learner, "time_zone", default="UTC") == "UTC"


def test_event_routing_backends_finds_the_platform_apis(learner, course_key):
    actor = erb_helpers.get_anonymous_user_id(learner.username, "XAPI")

    assert actor == str(ExternalId.objects.get(user=learner, external_id_type__name="xapi").external_user_id)
    assert erb_helpers.get_course_from_id(str(course_key))["display_name"] == "Analytics 101"


def test_event_routing_backends_finds_a_retired_user_by_the_old_username(learner):
    retire_user(learner)

    assert erb_helpers.get_user("ada").pk == learner.pk
