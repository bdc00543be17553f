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


def studio_adds_an_instructor(course: str, username: str) -> int:
    """
    Studio's course team page makes a registered user an instructor and enrolls them, in the CMS process, as
    edx-platform's ``_course_team_user`` (and a new course's ``initialize_permissions``) do. The user's id.
    """
    from common.djangoapps.student.models import CourseEnrollment
    from django.contrib.auth import get_user_model
    from opaque_keys.edx.keys import CourseKey

    user = get_user_model().objects.get(username=username)
    CourseEnrollment.enroll(user, CourseKey.from_string(course))
    return user.id


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


def a_learners_tracking_log_lines() -> list[str]:
    """One learner's two rounds through a small course, as tracking-log lines (their events sent live too)."""
    import uuid

    from common.djangoapps.student.helpers import create_user
    from devstack_tools import learner_activity as activity
    from xmodule.modulestore.course_builder import create_course

    course = create_course("LinesX", uuid.uuid4().hex[:8], "2026", "Lines", blocks=20)
    learner = create_user(f"lines{uuid.uuid4().hex[:8]}", f"lines{uuid.uuid4().hex[:8]}@example.com")
    with activity.recording() as events:
        activity.emit_rounds(str(course), [learner.username], rounds=2)
    return [activity.tracking_log_line(event) for event in events]


def history_stopped_by_clickhouse_down(folder: str, logs: int) -> dict:
    """
    ``logs`` one-line logs in ``folder`` imported by two forked workers whose ClickHouse is down (nothing
    listens on its port): the import stops at once with thousands of logs not handed out. Returns why.
    """
    import io
    from pathlib import Path

    from aspects_sink.connection import get_transport
    from aspects_sink.progress import progress_reporter
    from aspects_sink.xapi.history import HistoryError, HistoryImport
    from aspects_sink.xapi.sources import FileSource

    paths = []
    for index in range(logs):
        path = Path(folder) / f"tracking.log-{index:05d}"
        path.write_text('{"name": "edx.bi.user.account.registered", "event": {}, "time": "2026-01-01T00:00:00"}\n')
        paths.append(path)

    def clickhouse_down():
        transport = get_transport(url="http://127.0.0.1:9/")  # the discard port: nothing answers
        transport.ping()
        return transport

    job = HistoryImport(FileSource(paths), clickhouse_down, batch_size=10, workers=2)
    try:
        job.run(progress_reporter(io.StringIO(), enabled=False))
    except HistoryError as error:
        return {"stopped": str(error)}
    return {"stopped": ""}


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
        "sweep": settings.CELERY_BEAT_SCHEDULE.get("aspects_sink.sweep_outbox"),
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


# -- the fault matrix (tests/faults): platform actions counted as requests, and what the LMS holds ---------------

# Text no column may mangle: scripts, directions, emoji, NUL and control characters, quotes, backslashes, SQL.
HOSTILE_TEXT = (
    "汉字 かな 한국어",
    "עברית مرحبا \u202eRTL override\u202c",
    "emoji 😀 👩\u200d👩\u200d👧 🏳️\u200d🌈",
    "nul\x00 bell\x07 escape\x1b tab\t newline\n cr\r del\x7f",
    "quotes ' \" ` and backslashes \\ \\' \\\\",
    "'; DROP TABLE user_profile; --",
    "Robert'); DROP TABLE event_sink.course_enrollment;--",
)
BIG_TEXT_BYTES = 100 * 1024
# Dates at the edges of what MariaDB and SQLite both store, and of 32-bit time.
EDGE_DATES = (
    "1000-01-01T00:00:00+00:00",
    "1970-01-01T00:00:00+00:00",
    "2038-01-19T03:14:08+00:00",
    "2024-02-29T23:59:59.999999+00:00",
    "9999-12-31T23:59:59.999999+00:00",
)
# Course keys edx-platform accepts though they look wrong: deprecated slashes, non-Latin ids, every allowed sign.
ODD_COURSE_KEYS = (
    "Fault.X/Old_Style/2012_Fall",
    "course-v1:Fault汉字+课程~1+2026:run",
    "course-v1:Fault-a_u.l~t+C.-~_:x+R",
)


def _request(failures: list, action, *args, **kwargs):
    """One learner request: an exception is a failed request (recorded, never raised)."""
    try:
        return action(*args, **kwargs)
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}"[:500])
        return None


def _fit(value, field, big: bool):
    """A hostile value as the platform's database takes it: MariaDB refuses what exceeds a column's length."""
    from django.db import connection

    if value is None or not field.max_length or connection.vendor != "mysql":
        return value
    return value[: field.max_length] if not big or field.max_length < len(value) else value


def hostile_profile(number: int, *, nulls: bool = False, big: bool = False) -> dict:
    """Profile fields for learner ``number``: hostile text in every text column, NULL in every nullable one."""
    import datetime

    from common.djangoapps.student.models import UserProfile

    fields = {}
    for field in UserProfile._meta.get_fields():
        if getattr(field, "concrete", False) and field.name not in ("id", "user"):
            if nulls and field.null:
                fields[field.name] = None
            elif field.get_internal_type() in ("CharField", "TextField"):
                text = HOSTILE_TEXT[(number + len(fields)) % len(HOSTILE_TEXT)]
                if big:
                    text = (text + " ") * (BIG_TEXT_BYTES // len((text + " ").encode()) + 1)
                fields[field.name] = _fit(text, field, big)
            elif field.name == "profile_image_uploaded_at":
                fields[field.name] = datetime.datetime.fromisoformat(EDGE_DATES[number % len(EDGE_DATES)])
            elif field.name == "year_of_birth":
                fields[field.name] = (1, 1900, 2147483647)[number % 3]
    return fields


def fault_learners(
    prefix: str,
    course: str,
    count: int,
    *,
    first: int = 0,
    city: str = "Lyon",
    hostile: bool = False,
    rolled_back: int = 0,
    bulk: bool = False,
) -> dict:
    """
    ``count`` learners register (each with an xAPI external id) and enroll in ``course``, one request each;
    ``hostile`` gives them hostile text in every text column (one 100 KB), NULL in every nullable field of
    one and dates at the edges; ``rolled_back`` more learners register in requests that roll back. ``bulk``
    creates them as an old site's history would be (no signals: only a backfill sends them). Returns the
    changes made and the requests that failed (must be none).
    """
    from common.djangoapps.student.helpers import create_user
    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from django.contrib.auth.models import User
    from django.db import transaction
    from opaque_keys.edx.keys import CourseKey
    from openedx.core.djangoapps.external_user_ids.models import ExternalId, ExternalIdType

    course_key = CourseKey.from_string(course)
    failures: list[str] = []
    changes = 0
    for number in range(first, first + count):
        tail = f"_{HOSTILE_TEXT[number % 3][:6]}'\"\\;--" if hostile else ""
        username, email = f"{prefix}{number}{tail}", f"{prefix}{number}{tail[:4]}@example.com"
        profile = hostile_profile(number, nulls=number % 4 == 1, big=number % 4 == 2) if hostile else {"city": city}
        name = profile.pop("name", None) or f"{prefix} {number}"
        if bulk:
            User.objects.bulk_create([User(username=username, email=email)])  # no post_save, as history has none
            user = User.objects.get(username=username)
            UserProfile.objects.bulk_create([UserProfile(user=user, name=name, **profile)])
            ExternalId.objects.bulk_create(
                [ExternalId(user=user, external_id_type=ExternalIdType.objects.get(name="xapi"))]
            )
            CourseEnrollment.objects.bulk_create([CourseEnrollment(user=user, course_id=course_key, mode="audit")])
            changes += 4
            continue
        user = _request(failures, create_user, username, email, name=name, **profile)
        if user is None:
            continue
        _request(failures, ExternalId.add_new_user_id, user, "xapi")
        _request(failures, CourseEnrollment.enroll, user, course_key, "audit")
        changes += 3

    def register_and_roll_back(number):
        with transaction.atomic():
            user = create_user(f"{prefix}ghost{number}", f"{prefix}ghost{number}@example.com", name="Ghost")
            ExternalId.add_new_user_id(user, "xapi")
            CourseEnrollment.enroll(user, course_key, "audit")
            raise _RolledBack

    for number in range(rolled_back):
        try:
            register_and_roll_back(number)
        except _RolledBack:
            changes += 3
    return {"changes": changes, "failed": failures}


class _RolledBack(Exception):
    """Raised inside a request's transaction to roll it back (an error page, for the learner)."""


def fault_profile_saves(prefix: str, city: str) -> dict:
    """Every learner of ``prefix`` saves their profile with a new city, one request each."""
    from common.djangoapps.student.models import UserProfile

    failures: list[str] = []
    saved = 0
    for profile in UserProfile.objects.filter(user__username__startswith=prefix).order_by("id"):
        profile.city = city
        saved += bool(_request(failures, lambda p=profile: p.save() or True))
    return {"changes": saved, "failed": failures}


def fault_snapshot(prefix: str, course: str) -> dict:
    """The learners of ``prefix`` as the LMS holds them (ClickHouse's columns), and their enrollments in ``course``."""
    import datetime

    from common.djangoapps.student.models import CourseEnrollment, UserProfile
    from opaque_keys.edx.keys import CourseKey
    from openedx.core.djangoapps.external_user_ids.models import ExternalId
    from rest_framework.fields import DateTimeField

    def text(value):
        if value is None:
            return ""
        if isinstance(value, datetime.datetime):  # as platform-plugin-aspects writes it: DRF's ISO 8601
            return DateTimeField().to_representation(value)
        return str(value)

    profiles = UserProfile.objects.filter(user__username__startswith=prefix).select_related("user").order_by("id")
    return {
        "user_profile": [
            [p.id, p.user_id, p.user.username, p.user.email]
            + [text(getattr(p, name)) for name in FAULT_PROFILE_COLUMNS]
            for p in profiles
        ],
        "external_id": sorted(
            [str(e.external_user_id), e.user_id, e.user.username]
            for e in ExternalId.objects.filter(user__username__startswith=prefix).select_related("user")
        ),
        "course_enrollment": sorted(
            [str(e.course_id), e.user_id, e.mode, e.is_active, e.user.username]
            for e in CourseEnrollment.objects.filter(
                user__username__startswith=prefix, course_id=CourseKey.from_string(course)
            ).select_related("user")
        ),
    }


FAULT_PROFILE_COLUMNS = (
    "name",
    "meta",
    "courseware",
    "language",
    "location",
    "year_of_birth",
    "gender",
    "level_of_education",
    "mailing_address",
    "city",
    "country",
    "state",
    "goals",
    "bio",
    "profile_image_uploaded_at",
    "phone_number",
)


def fault_courses(
    prefix: str, count: int, *, blocks: int = 20, hostile: bool = False, depth: int = 0, history: bool = False
) -> dict:
    """
    Publish ``count`` courses ``course-v1:<prefix>+C<n>+2026`` (CMS); ``hostile`` names them (and their blocks)
    with hostile text and publishes the odd course keys too; ``depth`` publishes one course whose units nest
    ``depth`` deep instead; ``history``: published before the plugin was installed (no live send, see
    :func:`_as_history`). Returns the keys, the changes and the failed requests.
    """
    import datetime

    from opaque_keys.edx.keys import CourseKey
    from xmodule.modulestore.block_spec import BlockSpec
    from xmodule.modulestore.course_builder import build_course_blocks, studio_block_id
    from xmodule.modulestore.django import modulestore

    failures: list[str] = []
    keys = [f"course-v1:{prefix}+C{number}+2026" for number in range(count)]
    if hostile:
        keys += [key.replace("Fault", f"{prefix}", 1) for key in ODD_COURSE_KEYS]
    published = []
    for number, key in enumerate(keys):
        course_key = CourseKey.from_string(key)
        name = HOSTILE_TEXT[number % len(HOSTILE_TEXT)] if hostile else f"{prefix} course {number}"
        fields = {}
        if hostile:
            fields = {
                "start": datetime.datetime.fromisoformat(EDGE_DATES[0]),
                "end": datetime.datetime.fromisoformat(EDGE_DATES[-1]),
            }
        course_block, detached = build_course_blocks(name, blocks, fields, course=key)
        if hostile:
            for index, block in enumerate(course_block.children):
                block.display_name = HOSTILE_TEXT[index % len(HOSTILE_TEXT)]
        publish = _as_history(modulestore().publish_course) if history else modulestore().publish_course
        if _request(failures, publish, course_key, course_block, detached) is not None:
            published.append(key)
    if depth:
        key = f"course-v1:{prefix}+Deep+2026"
        course_block, _ = build_course_blocks(f"{depth} deep", 1, course=key)
        parent = course_block
        for level, block_type in enumerate(["chapter", "sequential"] + ["vertical"] * (depth - 3) + ["html"]):
            child = BlockSpec(block_type, studio_block_id(key, block_type, level), f"Level {level + 1}")
            parent.children.append(child)
            parent = child
        if _request(failures, modulestore().publish_course, CourseKey.from_string(key), course_block) is not None:
            published.append(key)
    return {"courses": published, "changes": len(published), "failed": failures}


def course_snapshot(courses: list[str]) -> dict:
    """The courses as the modulestore holds them: overview (key, name) and blocks (location, name), sorted."""
    from opaque_keys.edx.keys import CourseKey
    from xmodule.modulestore.django import modulestore

    overviews, blocks = [], []
    for course in courses:
        course_key = CourseKey.from_string(course)
        overviews.append([course, modulestore().get_course(course_key).display_name or ""])
        blocks += [[course, str(b.location), b.display_name or ""] for b in modulestore().get_items(course_key)]
    return {"course_overviews": sorted(overviews), "course_blocks": sorted(blocks)}


def _as_history(publish):
    """
    ``publish`` as it happened before the plugin was installed: the course is published (its overview made),
    and the outbox keeps nothing of it, so only a backfill sends it.
    """
    from django.db import transaction

    from aspects_sink.models import OutboxEntry

    def published_before_the_plugin(course_key, *args, **kwargs):
        with transaction.atomic():
            published = publish(course_key, *args, **kwargs)
            OutboxEntry.objects.filter(sink="course_overviews", object_id=str(course_key)).delete()
        return published

    return published_before_the_plugin


def publish_broken_course(course: str, blocks: int = 20, history: bool = False) -> None:
    """
    Publish a course whose stored tree is then corrupted in the same transaction (a child that does not
    exist, as a broken modulestore would hold): the publish is announced, and the course cannot be read.
    """
    from django.db import transaction
    from opaque_keys.edx.keys import CourseKey
    from xmodule.modulestore.course_builder import build_course_blocks
    from xmodule.modulestore.django import modulestore

    course_block, detached = build_course_blocks(f"Broken {course}", blocks, course=course)
    publish = _as_history(modulestore().publish_course) if history else modulestore().publish_course
    with transaction.atomic():
        publish(CourseKey.from_string(course), course_block, detached)
        _break_course(course)


def _break_course(course: str) -> None:
    import json

    from devstack_tools.models import PublishedCourseStructure

    row = PublishedCourseStructure.objects.get(course_id=course)
    document = json.loads(row.structure)
    document["blocks"][0][3].append(len(document["blocks"]) + 7)
    row.structure = json.dumps(document)
    row.save(update_fields=["structure"])


def fault_activity(
    name: str, learners: int, hostile: bool = False, rolled_back: bool = False, poison: str = ""
) -> dict:
    """
    A course ``name`` and ``learners`` learners who do one round of activity in it, one request per event
    (``hostile``: answers with hostile text, a lone surrogate and 100 KB; ``rolled_back``: each learner's
    last request rolls back; ``poison``: the first learner's answer). Returns the course, the statements
    event-routing-backends makes of the committed requests' events (by id), the changes and the failed requests.
    """
    import copy

    from common.djangoapps.student.helpers import create_user
    from devstack_tools import learner_activity as activity
    from django.db import transaction
    from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
    from openedx.core.djangoapps.external_user_ids.models import ExternalId
    from xmodule.modulestore.course_builder import create_course

    course = create_course("FaultX", name, "2026", f"Faults {name}", blocks=12)
    blocks = activity.CourseBlocks.of(course)
    failures: list[str] = []
    committed: list[dict] = []
    changes = 0
    for number in range(learners):
        user = create_user(f"{name}_{number}", f"{name}_{number}@example.com", name=f"Learner {number}")
        ExternalId.add_new_user_id(user, "xapi")
        events = activity.round_of_events(user, blocks, number)
        if hostile:
            problem = next(event for event in events if event.name == activity.PROBLEM_CHECK)
            (submission,) = problem.data["submission"].values()
            texts = (*HOSTILE_TEXT, "lone \ud800 surrogate \udfff", "x" * BIG_TEXT_BYTES)
            submission["answer"] = submission["question"] = texts[number % len(texts)]
        if poison and number == 0:
            problem = next(event for event in events if event.name == activity.PROBLEM_CHECK)
            (submission,) = problem.data["submission"].values()
            submission["answer"] = poison
        for index, event in enumerate(events):
            roll_back = rolled_back and index == len(events) - 1
            with activity.recording() as emitted:
                try:
                    with transaction.atomic():
                        if _request(failures, activity.emit, user, blocks, [event]) and roll_back:
                            raise _RolledBack
                except _RolledBack:
                    pass
            changes += 1
            if not roll_back:
                committed += emitted
    statements = XApiProcessor()(copy.deepcopy(committed))
    return {
        "course": str(course),
        "expected": {statement["id"]: statement for statement in statements},
        "changes": changes,
        "failed": failures,
    }


def deliver_without_acknowledging(sink: str) -> dict:
    """
    A worker's drain that inserted its batch and died before acknowledging it: claim, write, and let the
    lease lapse (the entries are ready again at once), so the same batch is delivered a second time.
    """
    from aspects_sink import delivery, outbox, scheduling
    from aspects_sink.connection import get_transport
    from aspects_sink.sinks.registry import get_sink

    queue = outbox.queue(sink)
    claimed = queue.claim(queue.batch_size)
    if claimed:
        delivery.write(get_sink(sink), list(dict.fromkeys(entry.object_id for entry in claimed)), get_transport())
        queue.release(claimed)
    scheduling.schedule_drain(sink)
    return {"delivered": len(claimed)}


def lapse_leases() -> dict:
    """
    A lease's length passes for the queues (not for the test's patience): every pending entry becomes due a lease
    earlier, so those a killed worker held are ready again, and wake-ups it had taken with it are overdue for the
    sweep, as they are five minutes after the kill.
    """
    from django.db.models import F

    from aspects_sink.models import OutboxEntry, XapiStatement
    from aspects_sink.outbox import LEASE

    return {
        model.__name__: model.objects.filter(state="pending").update(available_at=F("available_at") - LEASE)
        for model in (OutboxEntry, XapiStatement)
    }
