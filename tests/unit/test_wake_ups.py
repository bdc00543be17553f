"""
Wake-ups after commit: one scheduled drain per sink across processes, and no cache round trip while a
drain this process knows of is scheduled and not yet started.
"""

from __future__ import annotations

import pytest

from aspects_sink import scheduling

SINK = "user_profile"
XAPI = "xapi_statements"


class CountingCache:
    """The site's cache, counting the calls made to it."""

    def __init__(self, cache):
        self.cache = cache
        self.calls = 0

    def __getattr__(self, name):
        attribute = getattr(self.cache, name)
        if callable(attribute):
            self.calls += 1
        return attribute


@pytest.fixture
def wake_ups(monkeypatch, settings):
    """Drains submitted to the publisher thread, instead of published; a clean schedule and a counted cache."""
    settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS = 1.0
    submitted = []
    monkeypatch.setattr(scheduling._publisher, "submit", lambda *drain: submitted.append(drain))
    monkeypatch.setattr(scheduling, "_scheduled_until", {})
    counting = CountingCache(scheduling.cache)
    monkeypatch.setattr(scheduling, "cache", counting)
    monkeypatch.setattr(scheduling, "_cache_down_until", [0.0])
    # What other tests of the process may have left in the cache: a schedule, a drain's time, a broker outage.
    for key in (scheduling._scheduled_key(SINK), scheduling._last_drain_key(SINK), scheduling._BROKER_DOWN_KEY):
        counting.delete(key)
    counting.calls = 0
    return submitted, counting


def test_one_drain_is_scheduled_and_later_wake_ups_skip_the_cache(wake_ups, monkeypatch):
    submitted, cache = wake_ups
    clock = [1_000_000.0]
    monkeypatch.setattr(scheduling.time, "time", lambda: clock[0])

    scheduling.schedule_drain(SINK)
    (sink, delay, token), calls = submitted[0], cache.calls
    assert (sink, delay) == (SINK, 1.0)
    assert scheduling._due(token) == pytest.approx(clock[0] + 1.0)

    for _ in range(100):  # a hundred changes before the drain is due: no cache call, no other drain
        clock[0] += 0.005
        scheduling.schedule_drain(SINK)
    assert (len(submitted), cache.calls) == (1, calls)

    clock[0] += 1.0 - scheduling.CLOCK_MARGIN  # the margin before the due time: ask the cache again
    scheduling.schedule_drain(SINK)
    assert cache.calls > calls
    assert len(submitted) == 1  # the drain has not started: it still holds the schedule


def test_a_drain_scheduled_by_another_process_is_learnt_from_its_token(wake_ups, monkeypatch):
    submitted, cache = wake_ups
    clock = [2_000_000.0]
    monkeypatch.setattr(scheduling.time, "time", lambda: clock[0])
    cache.set(scheduling._scheduled_key(SINK), f"other-process@{clock[0] + 3:.3f}", timeout=60)

    scheduling.schedule_drain(SINK)
    assert submitted == []
    assert scheduling._scheduled_until[SINK] == pytest.approx(clock[0] + 3 - scheduling.CLOCK_MARGIN)

    calls = cache.calls
    clock[0] += 2.5
    scheduling.schedule_drain(SINK)
    assert cache.calls == calls


def test_while_a_scheduled_drain_is_late_each_change_asks_the_cache_once(wake_ups, monkeypatch):
    # A busy worker starts the drain after its due time; meanwhile every change asks whether it is still scheduled.
    submitted, cache = wake_ups
    clock = [2_500_000.0]
    monkeypatch.setattr(scheduling.time, "time", lambda: clock[0])
    cache.set(scheduling._scheduled_key(SINK), f"other-process@{clock[0] - 2:.3f}", timeout=60)

    for _ in range(10):
        calls = cache.calls
        clock[0] += 0.01
        scheduling.schedule_drain(SINK)
        assert cache.calls - calls == 1
    assert submitted == []


def test_once_the_drain_has_started_the_next_change_schedules_another(wake_ups, monkeypatch):
    submitted, cache = wake_ups
    clock = [3_000_000.0]
    monkeypatch.setattr(scheduling.time, "time", lambda: clock[0])
    scheduling.schedule_drain(SINK)

    clock[0] += 1.0
    cache.delete(scheduling._scheduled_key(SINK))  # what the drain does first when it starts
    scheduling.schedule_drain(SINK)
    assert len(submitted) == 2


@pytest.mark.parametrize("token", [None, "", "no-due-time", "abc@not-a-number"])
def test_a_token_without_a_due_time_means_ask_again(token):
    assert scheduling._due(token) == 0.0


COURSES = "course_overviews"


@pytest.fixture
def clock(monkeypatch):
    """The time the schedule reads, moved by hand."""
    now = [4_000_000.0]
    monkeypatch.setattr(scheduling.time, "time", lambda: now[0])
    return now


@pytest.mark.parametrize(
    ("last_dump_ago", "countdown"),
    [
        (60, 0.0),  # the first publish after a quiet interval is dumped at once
        (3, 7.0),  # a storm: the first publish was dumped 3 s ago; the next is dumped once the interval has passed
    ],
)
def test_a_publish_is_dumped_at_once_or_at_the_end_of_the_interval(wake_ups, clock, settings, last_dump_ago, countdown):
    settings.ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS = 10
    submitted, cache = wake_ups
    cache.delete(scheduling._scheduled_key(COURSES))
    cache.set(scheduling._last_drain_key(COURSES), clock[0] - last_dump_ago, timeout=3600)

    scheduling.schedule_drain(COURSES)
    assert submitted[0][0] == COURSES
    assert submitted[0][1] == pytest.approx(countdown)


def test_a_change_after_a_quiet_interval_waits_one_flush_interval(wake_ups, clock):
    """A stream of changes is gathered: its first change waits the flush interval, whatever came before."""
    submitted, cache = wake_ups
    cache.set(scheduling._last_drain_key(SINK), clock[0] - 60, timeout=3600)
    scheduling.schedule_drain(SINK)
    assert submitted[0][:2] == (SINK, 1.0)


def test_a_statement_after_a_quiet_interval_waits_the_xapi_flush_interval(wake_ups, clock, settings):
    """xAPI has its own flush interval: the first statement after a quiet period waits that, not the sinks' one."""
    settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS = 30.0
    settings.ASPECTS_SINK_XAPI_FLUSH_INTERVAL_SECONDS = 2.0
    submitted, cache = wake_ups
    for key in (scheduling._scheduled_key(XAPI), scheduling._last_drain_key(XAPI)):
        cache.delete(key)
    scheduling.schedule_drain(XAPI)
    assert submitted[0][:2] == (XAPI, 2.0)


def test_the_next_drain_of_a_stream_starts_one_interval_after_the_last_started(wake_ups, clock, monkeypatch):
    """
    A drain that took 0.4 s and left changes behind: the next starts an interval after it started (0.6 s
    later), not an interval after it ended, so a stream's changes wait at most about one interval.
    """
    _, cache = wake_ups
    published = []
    monkeypatch.setattr(scheduling, "publish_drain", lambda *drain: published.append(drain) or True)
    cache.set(scheduling._last_drain_key(SINK), clock[0] - 0.4, timeout=3600)

    scheduling.schedule_follow_up(SINK, 0.0)
    assert published[0][0] == SINK
    assert published[0][1] == pytest.approx(0.6)


def test_a_drain_scheduled_from_a_stale_reading_waits_for_the_interval(wake_ups, clock, monkeypatch, settings):
    """
    A publish read the time of the last dump just before a drain started, then took the schedule the starting
    drain had just freed: its drain is due at once, a moment after the other. It drains only once the interval
    has passed since the other started (a storm stays one or two dumps).
    """
    settings.ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS = 10
    _, cache = wake_ups
    published = []
    monkeypatch.setattr(scheduling, "publish_drain", lambda *drain: published.append(drain) or True)
    cache.delete(scheduling._scheduled_key(COURSES))
    token = scheduling.claim_schedule(COURSES, 0.0)
    cache.set(scheduling._last_drain_key(COURSES), clock[0] - 1, timeout=3600)  # the other drain, 1 s ago

    assert not scheduling.begin_drain(COURSES, token)
    assert published[0][0] == COURSES
    assert published[0][1] == pytest.approx(9.0)


def test_a_drain_that_failed_is_tried_again_by_a_drain_that_drains(wake_ups, clock, monkeypatch):
    """
    The LMS database failed under a drain: the drain sent to try again holds the schedule, so it drains when
    due instead of being taken for a duplicate of the drain that just started (and the entries left to the sweep).
    """
    from django.db.utils import OperationalError

    from aspects_sink import delivery
    from aspects_sink.tasks.drain import drain_outbox

    published = []
    monkeypatch.setattr(scheduling, "publish_drain", lambda *drain: published.append(drain) or True)

    def database_down(sink_name):
        raise OperationalError("(2013, 'Lost connection to MySQL server during query')")

    monkeypatch.setattr(delivery, "drain", database_down)
    with pytest.raises(OperationalError):
        drain_outbox(SINK, scheduling.claim_schedule(SINK, 0.0))

    (sink, delay, token) = published[0]
    clock[0] += delay
    assert sink == SINK and scheduling.begin_drain(SINK, token)
