"""
Bulk data for a devstack: courses, users with profiles, xAPI external ids and enrollments.

Rows are written with ``bulk_create`` in one transaction per batch: no ``post_save`` fires and no password
is hashed per user, so a million users take minutes, not hours. That is also how data already present in a
real installation looks to a freshly installed plugin: it was never announced by a signal.

Everything is derived from ``seed`` and from what already exists (never from batch boundaries), so the same
commands give the same data; a second run continues after what exists (``learner_00000001`` ...).
"""

import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from common.djangoapps.student.models import CourseEnrollment, UserProfile
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import transaction
from opaque_keys.edx.keys import CourseKey
from openedx.core.djangoapps.content.course_overviews.models import CourseOverview
from openedx.core.djangoapps.external_user_ids.models import ExternalId, ExternalIdType
from xmodule.modulestore.course_builder import create_course

from devstack_tools.models import PublishedCourseStructure

USERNAME_PREFIX = "learner_"
USERNAME_DIGITS = 8  # fixed width: the newest seeded user is the greatest username
SEEDED_ORG = "SeedX"
SEEDED_PASSWORD = "edx"  # every seeded account logs in with this, as on edx-platform's devstack
# Seeded timestamps fall in the year before this instant, so the same seed gives the same data on any day.
REFERENCE_TIME = datetime(2025, 1, 1, tzinfo=UTC)

FIRST_NAMES = ("Ada", "Bola", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ines", "Jon", "Kofi", "Lina")
LAST_NAMES = ("Abe", "Bauer", "Costa", "Diallo", "Eriksen", "Fofana", "Garcia", "Haddad", "Ito", "Jensen")
COUNTRIES = ("US", "IN", "BR", "MX", "GB", "DE", "FR", "ES", "NG", "EG", "CN", "JP", "CA", "CO", "KE", None)
LANGUAGES = ("en", "es", "fr", "pt", "ar", "zh", "hi", "")
GENDERS = ("m", "f", "o", None)
EDUCATION_LEVELS = ("p", "m", "b", "a", "hs", "jhs", "el", "none", "other", None)
# (mode, weight): most learners audit.
MODES = (("audit", 70), ("verified", 25), ("honor", 5))

EXTERNAL_ID_NAMESPACE = uuid.UUID("6f1c8a52-3d0e-4b9e-9a57-2a1f0c4d8e71")  # any fixed value: ids depend on the seed

Progress = Callable[[str], None]


class Seeder:
    """Writes seeded rows in batches of ``batch_size`` and reports each batch through ``progress``."""

    def __init__(self, *, seed: int = 0, batch_size: int = 5000, progress: Progress = print):
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(part) for part in (self.seed, *parts)))

    def _report(self, what: str, done: int, total: int, started: float) -> None:
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed else 0.0
        self.progress(f"{what}: {done:,}/{total:,} ({elapsed:.1f}s, {rate:,.0f}/s)")

    # Courses -------------------------------------------------------------------------------------------

    def courses(self, count: int, blocks_per_course: int) -> list[CourseKey]:
        """Publish ``count`` new courses (each sends course_published, as a CMS publish does)."""
        first = self._next_course_number()
        started = time.monotonic()
        keys = []
        for number in range(first, first + count):
            rng = self._rng("course", number)
            start = REFERENCE_TIME - timedelta(days=rng.randrange(365))
            keys.append(
                create_course(
                    SEEDED_ORG,
                    f"C{number:04d}",
                    "run",
                    f"Seeded course {number}",
                    blocks=blocks_per_course,
                    start=start,
                    end=start + timedelta(days=rng.choice((60, 90, 180))),
                    self_paced=rng.random() < 0.3,
                    language=rng.choice(LANGUAGES) or None,
                )
            )
            self._report("courses", len(keys), count, started)
        return keys

    @staticmethod
    def _next_course_number() -> int:
        prefix = f"course-v1:{SEEDED_ORG}+C"
        seeded = PublishedCourseStructure.objects.filter(course_id__startswith=prefix).values_list("course_id")
        return max((int(key.course[1:]) for (key,) in seeded), default=0) + 1

    # Users -----------------------------------------------------------------------------------------------

    def users(self, count: int) -> int:
        """Create ``count`` users with profiles, numbered after the last seeded one; returns how many."""
        password = make_password(SEEDED_PASSWORD)
        first = self._next_user_number()
        started = time.monotonic()
        for batch_start in range(first, first + count, self.batch_size):
            numbers = range(batch_start, min(batch_start + self.batch_size, first + count))
            users, profiles = zip(*(self._user_with_profile(number, password) for number in numbers))
            with transaction.atomic():
                User.objects.bulk_create(users)
                # Looked up rather than read from the created objects: not every database returns new ids.
                user_ids = dict(
                    User.objects.filter(username__range=(users[0].username, users[-1].username)).values_list(
                        "username", "id"
                    )
                )
                for user, profile in zip(users, profiles):
                    profile.user_id = user_ids[user.username]
                UserProfile.objects.bulk_create(profiles)
            self._report("users", numbers[-1] - first + 1, count, started)
        return count

    @staticmethod
    def _username(number: int) -> str:
        return f"{USERNAME_PREFIX}{number:0{USERNAME_DIGITS}d}"

    def _next_user_number(self) -> int:
        last = (
            User.objects.filter(username__range=(self._username(0), self._username(10**USERNAME_DIGITS - 1)))
            .order_by("-username")
            .values_list("username", flat=True)
            .first()
        )
        return int(last.removeprefix(USERNAME_PREFIX)) + 1 if last else 1

    def _user_with_profile(self, number: int, password: str) -> tuple[User, UserProfile]:
        rng = self._rng("user", number)
        username = self._username(number)
        user = User(
            username=username,
            email=f"{username}@example.com",
            password=password,
            date_joined=REFERENCE_TIME - timedelta(seconds=rng.randrange(2 * 365 * 86400)),
        )
        profile = UserProfile(
            name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            language=rng.choice(LANGUAGES),
            year_of_birth=rng.choice((None, rng.randrange(1950, 2010))),
            gender=rng.choice(GENDERS),
            level_of_education=rng.choice(EDUCATION_LEVELS),
            country=rng.choice(COUNTRIES),
            goals=rng.choice((None, "Learn something new", "Career change")),
        )
        return user, profile

    # External ids ----------------------------------------------------------------------------------------

    def external_ids(self) -> int:
        """Give every user without one an xAPI external id; returns how many were created."""
        xapi = ExternalIdType.objects.get(name=ExternalIdType.XAPI)
        total = User.objects.count()
        started, seen, created, last_id = time.monotonic(), 0, 0, 0
        while True:
            users = list(
                User.objects.filter(id__gt=last_id).order_by("id").values_list("id", "username")[: self.batch_size]
            )
            if not users:
                return created
            first_id, last_id = users[0][0], users[-1][0]
            with transaction.atomic():
                existing = set(
                    ExternalId.objects.filter(
                        external_id_type=xapi, user_id__gte=first_id, user_id__lte=last_id
                    ).values_list("user_id", flat=True)
                )
                new = [self._external_id(*user, xapi) for user in users if user[0] not in existing]
                ExternalId.objects.bulk_create(new)
            created += len(new)
            seen += len(users)
            self._report("external ids (users checked)", seen, total, started)

    def _external_id(self, user_id: int, username: str, id_type: ExternalIdType) -> ExternalId:
        # From the username, not the row id, so that re-seeding an emptied database gives the same ids.
        external_user_id = uuid.uuid5(EXTERNAL_ID_NAMESPACE, f"{self.seed}:{id_type.name}:{username}")
        return ExternalId(user_id=user_id, external_id_type=id_type, external_user_id=external_user_id)

    # Enrollments -----------------------------------------------------------------------------------------

    def enrollments(self, count: int) -> int:
        """
        Enroll ``count`` distinct (user, course) pairs drawn from all users and courses; pairs already
        enrolled are skipped. Returns how many enrollments were created.
        """
        user_ids = list(User.objects.order_by("id").values_list("id", flat=True))
        course_ids = list(CourseOverview.objects.order_by("id").values_list("id", flat=True))
        capacity = len(user_ids) * len(course_ids)
        if count > capacity:
            raise ValueError(f"{count} enrollments asked for, but only {capacity} user/course pairs exist")
        before = CourseEnrollment.objects.count()
        rng = self._rng("enrollments", before)
        pairs = sorted(rng.sample(range(capacity), count))
        started = time.monotonic()
        for batch_start in range(0, count, self.batch_size):
            batch = pairs[batch_start : batch_start + self.batch_size]
            rows = [
                self._enrollment(rng, user_ids[pair // len(course_ids)], course_ids[pair % len(course_ids)])
                for pair in batch
            ]
            with _enrollment_dates_as_given():
                CourseEnrollment.objects.bulk_create(rows, ignore_conflicts=True)
            self._report("enrollments", batch_start + len(batch), count, started)
        return CourseEnrollment.objects.count() - before

    @staticmethod
    def _enrollment(rng: random.Random, user_id: int, course_id: CourseKey) -> CourseEnrollment:
        modes, weights = zip(*MODES)
        return CourseEnrollment(
            user_id=user_id,
            course_id=course_id,
            mode=rng.choices(modes, weights)[0],
            is_active=rng.random() < 0.95,
            created=REFERENCE_TIME - timedelta(seconds=rng.randrange(365 * 86400)),
        )


@contextmanager
def _enrollment_dates_as_given() -> Iterator[None]:
    """Let bulk_create keep seeded ``created`` dates, which ``auto_now_add`` would replace with the current time."""
    created = CourseEnrollment._meta.get_field("created")
    created.auto_now_add = False
    try:
        yield
    finally:
        created.auto_now_add = True
