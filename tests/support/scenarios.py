"""
What the tests do inside the stand-in platform: functions run in an LMS or CMS process (Django set up)
with ``Devstack.run_function(service, function, **kwargs)``, as a platform request would run them.

Arguments and results travel as JSON. The platform's modules are imported inside each function: this
module is imported by the test process too (for the functions' names), which need not set Django up.
"""

from __future__ import annotations

import time

# -- the outbox and the statement queue ----------------------------------------------------------


def outbox_counts() -> dict:
    """Pending and dead outbox entries."""
    from aspects_sink.models import OutboxEntry

    return {state: OutboxEntry.objects.filter(state=state).count() for state in ("pending", "dead")}


def statement_counts() -> dict:
    """Pending and dead xAPI statements."""
    from aspects_sink.models import XapiStatement

    return {state: XapiStatement.objects.filter(state=state).count() for state in ("pending", "dead")}


# -- courses -------------------------------------------------------------------------------------


def publish_course(org: str, course: str, run: str, display_name: str, blocks: int) -> dict:
    """Publish a course (CMS); its key and how many blocks it has."""
    from xmodule.modulestore.course_builder import create_course
    from xmodule.modulestore.django import modulestore

    key = create_course(org, course, run, display_name=display_name, blocks=blocks)
    return {"course": str(key), "blocks": len(modulestore().get_items(key))}


def publishing_storm(publishes: int, pause: float, blocks: int) -> dict:
    """
    Publish one course ``publishes`` times, ``pause`` seconds apart (CMS); the course, the display name
    of its last publication, and the seconds from the first publication to the last.
    """
    from xmodule.modulestore.course_builder import create_course

    first = last = None
    for number in range(1, publishes + 1):
        if number > 1:
            time.sleep(pause)
        key = create_course("edX", "Storm", "2026", display_name=f"Storm {number}", blocks=blocks)
        last = time.monotonic()
        first = first or last
    return {"course": str(key), "display_name": f"Storm {publishes}", "seconds": last - first}


# -- learners ------------------------------------------------------------------------------------


def create_users(prefix: str, count: int, first: int = 0, city: str = "Lyon") -> int:
    """Register learners ``<prefix><first>`` to ``<prefix><first + count - 1>`` living in ``city``."""
    from common.djangoapps.student.helpers import create_user

    for number in range(first, first + count):
        create_user(f"{prefix}{number}", f"{prefix}{number}@example.com", name=f"{prefix} {number}", city=city)
    return count


def move_learner(username: str, city: str) -> int:
    """Change where a learner lives with a queryset update (no save signal); the profiles updated."""
    from common.djangoapps.student.models import UserProfile

    return UserProfile.objects.filter(user__username=username).update(city=city)


def make_every_kind_of_change(course: str) -> dict:
    """
    Learners register, enroll and change in every way the sinks follow, in ``course``; one is retired
    and a rolled-back registration leaves nothing. Returns the retired learner's id.
    """
    import datetime

    from common.djangoapps.student.helpers import create_user
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from django.db import transaction
    from opaque_keys.edx.keys import CourseKey
    from openedx.core.djangoapps.external_user_ids.models import ExternalId
    from openedx.core.djangoapps.user_api.accounts.api import retire_user

    course_key = CourseKey.from_string(course)
    users = [create_user(f"learner{i}", f"learner{i}@example.com", name=f"Learner {i}", city="Lyon") for i in range(12)]
    for user in users:
        ExternalId.add_new_user_id(user, "xapi")
        CourseEnrollment.enroll(user, course_key, "audit")

    # profile changes, a username change, an email change through update_fields, and a login (ignored)
    for user in users[:4]:
        profile = UserProfile.objects.get(user=user)
        profile.city = "Paris"
        profile.save()
    users[4].username = "renamed4"
    users[4].save()
    users[5].email = "new5@example.com"
    users[5].save(update_fields=["email"])
    users[6].last_login = datetime.datetime.now(datetime.UTC)
    users[6].save(update_fields=["last_login"])

    # enrollment changes: unenroll, change of mode (sends only COURSE_ENROLLMENT_CHANGED), re-enroll
    CourseEnrollment.unenroll(users[7], course_key)
    CourseEnrollment.objects.get(user=users[8], course_id=course_key).change_mode("verified")
    CourseEnrollment.unenroll(users[9], course_key)
    CourseEnrollment.enroll(users[9], course_key, "honor")

    # a transaction that rolls back sends nothing
    try:
        with transaction.atomic():
            create_user("ghost", "ghost@example.com", name="Ghost")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass

    retire_user(users[11])
    return {"retired_id": users[11].id}


def a_learners_day(course: str, usernames: list[str], name: str, mode: str, *, register: bool = False) -> dict:
    """
    A day on the site, the same whichever plugin runs (nothing here imports one): learners register with an xAPI id
    and enroll (``register``), the first is renamed in their profile, the second's enrollment changes to ``mode``,
    and every learner goes through the course. Returns the ids event-routing-backends gives the statements of the
    day's tracking events (enrollment events included).
    """
    import copy

    from common.djangoapps.student.helpers import create_user
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from devstack_tools import learner_activity as activity
    from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
    from opaque_keys.edx.keys import CourseKey
    from openedx.core.djangoapps.external_user_ids.models import ExternalId

    course_key = CourseKey.from_string(course)
    with activity.recording() as events:
        if register:
            for username in usernames:
                user = create_user(username, f"{username}@example.com", name=username.title(), city="Lyon")
                ExternalId.add_new_user_id(user, "xapi")
                CourseEnrollment.enroll(user, course_key, "audit")
        profile = UserProfile.objects.get(user__username=usernames[0])
        profile.name = name
        profile.save()
        CourseEnrollment.objects.get(user__username=usernames[1], course_id=course_key).change_mode(mode)
        activity.emit_rounds(course, usernames, rounds=1)
    return {"erb_ids": [statement["id"] for statement in XApiProcessor()(copy.deepcopy(events))]}


def lms_snapshot() -> dict:
    """Profiles, external ids and enrollments as the LMS holds them, sorted, in ClickHouse's columns."""
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from openedx.core.djangoapps.external_user_ids.models import ExternalId

    return {
        "profiles": sorted(
            [p.user_id, p.name, p.user.username, p.user.email, p.city] for p in UserProfile.objects.all()
        ),
        "external_ids": sorted([str(e.external_user_id), e.user_id, e.user.username] for e in ExternalId.objects.all()),
        "enrollments": sorted(
            [str(e.course_id), e.user_id, e.mode, e.is_active, e.user.username] for e in CourseEnrollment.objects.all()
        ),
    }


# -- learner activity (xAPI) ---------------------------------------------------------------------


def learners_do_a_course(name: str, learners: int, rounds: int, events_file: str) -> dict:
    """
    A course ``name`` and ``learners`` learners who go through it ``rounds`` times, their tracking events
    pickled into ``events_file`` (for :func:`send_again`). Returns the course, how many events were
    emitted, the ids event-routing-backends gives their statements, and the learners' ids by username.
    """
    import copy
    import pickle

    from common.djangoapps.student.helpers import create_user
    from devstack_tools import learner_activity as activity
    from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
    from xmodule.modulestore.course_builder import create_course

    course = create_course("XapiX", name, "2026", "xAPI end to end", blocks=60)
    users = [create_user(f"{name}_{i}", f"{name}_{i}@example.com", name=f"Learner {i}") for i in range(learners)]
    with activity.recording() as events:
        emitted = activity.emit_rounds(str(course), [user.username for user in users], rounds=rounds)
    with open(events_file, "wb") as pickled:
        pickle.dump(events, pickled)
    return {
        "course": str(course),
        "emitted": emitted,
        "erb_ids": [statement["id"] for statement in XApiProcessor()(copy.deepcopy(events))],
        "users": {user.username: user.id for user in users},
    }


def send_again(events_file: str) -> None:
    """Send the tracking events pickled by :func:`learners_do_a_course` again."""
    import pickle

    from devstack_tools import learner_activity as activity

    with open(events_file, "rb") as pickled:
        activity.send_again(pickle.load(pickled))


def live_activity_and_its_tracking_logs(plain: str, gzipped: str) -> dict:
    """
    Four learners go through a course ten times (sent live), and their events are written as tracking
    logs: the first half to ``plain``, the rest gzipped to ``gzipped``, with a non-xAPI event among them.
    """
    import gzip

    from common.djangoapps.student.helpers import create_user
    from devstack_tools import learner_activity as activity
    from xmodule.modulestore.course_builder import create_course

    course = create_course("HistoryX", "Logs", "2026", "History", blocks=60)
    learners = [create_user(f"history{i}", f"history{i}@example.com", name=f"History {i}") for i in range(4)]
    with activity.recording() as events:
        emitted = activity.emit_rounds(str(course), [learner.username for learner in learners], rounds=10)
    lines = [activity.tracking_log_line(event) + "\n" for event in events]
    lines.insert(7, '{"name": "edx.bi.user.account.registered", "event": {}, "time": "2026-01-01T00:00:00+00:00"}\n')
    half = len(lines) // 2
    with open(plain, "w") as log:
        log.writelines(lines[:half])
    with gzip.open(gzipped, "wt") as log:
        log.writelines(lines[half:])
    return {"course": str(course), "emitted": emitted}


def a_site_at_work_and_its_tracking_log(course: str, studied: str, log: str) -> dict:
    """
    Learners register, enroll and change in ``course`` (:func:`make_every_kind_of_change`, one retired), then
    four learners go through ``studied`` four times; every event the LMS emitted meanwhile (enrollments'
    included) is written to ``log`` as the rotated, gzipped tracking log would hold it. Returns how many.
    """
    import gzip

    from common.djangoapps.student.helpers import create_user
    from devstack_tools import learner_activity as activity

    with activity.recording() as events:
        make_every_kind_of_change(course)
        learners = [create_user(f"worker{i}", f"worker{i}@example.com", name=f"Worker {i}") for i in range(4)]
        activity.emit_rounds(studied, [learner.username for learner in learners], rounds=4)
    with gzip.open(log, "wt") as tracking_log:
        tracking_log.writelines(activity.tracking_log_line(event) + "\n" for event in events)
    return {"events": len(events)}


# -- the platform's plugin machinery -------------------------------------------------------------


def plugin_report() -> dict:
    """What a plugin sees of its settings and receivers once Django is set up."""
    import os

    from django.conf import settings
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CREATED
    from xmodule.modulestore.django import COURSE_PUBLISHED

    def receivers(signal):
        return [entry[0][0] for entry in signal.receivers]

    return {
        "settings_module": os.environ["DJANGO_SETTINGS_MODULE"],
        "service_variant": os.environ["SERVICE_VARIANT"],
        "installed_apps": settings.INSTALLED_APPS,
        "clickhouse": settings.EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG,
        "batch_size": settings.ASPECTS_SINK_BATCH_SIZE,
        "enrollment_receivers": receivers(COURSE_ENROLLMENT_CREATED),
        "publish_receivers": receivers(COURSE_PUBLISHED),
    }


def tag_a_course_and_a_block(course: str) -> dict:
    """A taxonomy with a tag and its child, applied to the course and to one of its problems, then one untagged."""
    from opaque_keys.edx.keys import CourseKey
    from openedx_tagging.core.tagging import api as tagging
    from xmodule.modulestore.django import modulestore

    course_key = CourseKey.from_string(course)
    problem = next(block for block in modulestore().get_items(course_key) if block.scope_ids.block_type == "problem")
    taxonomy = tagging.create_taxonomy("Subjects", export_id="subjects")
    tagging.add_tag_to_taxonomy(taxonomy, "Science")
    tagging.add_tag_to_taxonomy(taxonomy, "Physics", parent_tag_value="Science")
    tagging.tag_object(course, taxonomy, ["Science"])
    tagging.tag_object(str(problem.location), taxonomy, ["Physics"])
    tagging.delete_object_tags(course)
    return {"problem": str(problem.location)}


# -- retirement, step by step, as the retirement pipeline's driver calls the LMS ---------------------------


def enroll_learners(prefix: str, count: int, course: str) -> list[int]:
    """Register ``count`` learners with profiles, enroll each in ``course``; return their ids."""
    from common.djangoapps.student.helpers import create_user
    from common.djangoapps.student.models import CourseEnrollment
    from opaque_keys.edx.keys import CourseKey

    ids = []
    for number in range(count):
        user = create_user(f"{prefix}{number}", f"{prefix}{number}@example.com", name=f"{prefix} {number}", city="Lyon")
        CourseEnrollment.enroll(user, CourseKey.from_string(course))
        ids.append(user.id)
    return ids


def retire_misc(usernames: list[str]) -> None:
    """The pipeline's ``retire_misc`` requests (USER_RETIRE_LMS_MISC; accounts keep their usernames)."""
    from openedx.core.djangoapps.user_api.accounts.views import LMSAccountRetirementView

    for username in usernames:
        LMSAccountRetirementView().post(username)


def save_profile(usernames: list[str], city: str) -> int:
    """Learners save their profiles between the pipeline's steps (post_save with the real username)."""
    from common.djangoapps.student.models import UserProfile

    saved = 0
    for profile in UserProfile.objects.filter(user__username__in=usernames):
        profile.city = city
        profile.save()
        saved += 1
    return saved


def retire(usernames: list[str]) -> None:
    """The pipeline's ``retire`` requests: clear the profile, delete its images, rename the account."""
    from openedx.core.djangoapps.user_api.accounts.views import AccountRetirementView

    for username in usernames:
        AccountRetirementView().post(username)


def retired_users() -> list[int]:
    """The users the LMS recorded as retired."""
    from aspects_sink.models import RetiredUser

    return sorted(RetiredUser.objects.values_list("user_id", flat=True))


def forget_health(sink: str) -> None:
    """Forget what the drains recorded of a sink, as a fresh installation has (a test's clean-up)."""
    from aspects_sink.models import SinkHealth

    SinkHealth.objects.filter(sink=sink).delete()


def make_superuser(username: str, password: str) -> None:
    """A staff superuser for the admin (edx-platform's ``createsuperuser``, without the prompts)."""
    from django.contrib.auth.models import User

    if not User.objects.filter(username=username).exists():
        User.objects.create_superuser(username, f"{username}@example.com", password)


def park_dead_letters(sink: str, object_ids: list, reason: str) -> list:
    """Outbox entries parked as dead letters with ``reason``, as the drain parks them; returns their ids."""
    from django.utils import timezone

    from aspects_sink.models import OutboxEntry, XapiStatement

    parked = [
        OutboxEntry.objects.create(sink=sink, object_id=str(object_id), state="dead", attempts=3, last_error=reason)
        for object_id in object_ids
    ]
    XapiStatement.objects.create(
        event_id="00000000-0000-0000-0000-00000000dead",
        emission_time=timezone.now(),
        statement="{}",
        state="dead",
        attempts=8,
        last_error=reason,
    )
    return [entry.id for entry in parked]


def dead_letter_states(ids: list) -> dict:
    """The state of these outbox entries by id ("gone" once a drain has delivered them)."""
    from aspects_sink.models import OutboxEntry

    found = dict(OutboxEntry.objects.filter(id__in=ids).values_list("id", "state"))
    return {str(each): found.get(each, "gone") for each in ids}


def delete_dead_letters() -> int:
    """Remove every dead letter (outbox entries and xAPI statements): a test's clean-up."""
    from aspects_sink.models import OutboxEntry, XapiStatement

    return OutboxEntry.objects.filter(state="dead").delete()[0] + XapiStatement.objects.filter(state="dead").delete()[0]
