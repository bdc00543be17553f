"""``seed_devstack``: bulk rows that look like an existing installation's, deterministic and additive."""

import io

import pytest
from common.djangoapps.student.models import CourseEnrollment, UserProfile
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models.signals import post_save
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
from openedx.core.djangoapps.external_user_ids.models import ExternalId
from xmodule.modulestore.django import modulestore

pytestmark = pytest.mark.django_db


def seed(**options):
    output = io.StringIO()
    call_command("seed_devstack", stdout=output, **options)
    return output.getvalue()


def test_seed_creates_courses_users_with_profiles_external_ids_and_enrollments():
    seed(courses=2, blocks_per_course=30, users=25, batch_size=10, external_ids=True, enrollments=40, seed=3)

    courses = list(CourseOverview.objects.all())
    assert len(courses) == 2
    assert all(len(modulestore().get_items(course.id)) == 30 for course in courses)
    assert User.objects.count() == UserProfile.objects.count() == ExternalId.objects.count() == 25
    pairs = set(CourseEnrollment.objects.values_list("user_id", "course_id"))
    assert len(pairs) == CourseEnrollment.objects.count() == 40


def test_seeded_rows_fire_no_post_save(record_signals):
    calls = record_signals(SAVED=post_save)

    seed(users=5, external_ids=True)

    assert [kwargs for _, kwargs in calls if kwargs["sender"] in {User, UserProfile, ExternalId}] == []


def test_a_second_run_adds_users_after_the_existing_ones():
    seed(users=3)
    progress = seed(users=2, batch_size=1)

    usernames = list(User.objects.order_by("id").values_list("username", flat=True))
    assert usernames == [f"learner_{number:08d}" for number in range(1, 6)]
    assert progress.splitlines()[-1].startswith("users: 2/2 ")


def test_the_same_seed_gives_the_same_data():
    def seeded_profiles():
        seed(users=6, external_ids=True, seed=7)
        rows = list(
            UserProfile.objects.order_by("user__username").values_list(
                "user__username", "name", "country", "year_of_birth", "user__externalid__external_user_id"
            )
        )
        User.objects.all().delete()
        return rows

    assert seeded_profiles() == seeded_profiles()


def test_more_enrollments_than_user_course_pairs_is_an_error():
    seed(courses=1, blocks_per_course=5, users=2)

    with pytest.raises(CommandError, match="pairs"):
        seed(enrollments=3)
