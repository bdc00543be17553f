"""
Wake-ups: when a sink's drain runs, and sending it to a Celery worker.

Wake-ups are debounced through the Django cache (shared by every process of a site): drains of a sink start
at most once per its drain interval (``Sink.drain_interval``), the next one an interval after the last one
started, and the first change after a quiet period waits only what the sink gathers changes for
(``Sink.gather_seconds``: ``ASPECTS_SINK_FLUSH_INTERVAL_SECONDS``; a course's first publish not at all).
Thousands of changes a second thus become about one task and one INSERT per table per interval, each change
waiting about one interval at most, and a course published twenty times in ten seconds is dumped once at its
first publish and once more for the rest.

Wake-ups from the platform's requests are published by a background thread: a learner's request never
waits on the broker. If the broker is down, publishing pauses for ``BROKER_COOLDOWN`` seconds after each
failure; the entries are safe in the outbox, and the periodic sweep (Celery beat, or
``aspects_sink_sweep`` from cron) wakes the drains once the broker is back.

Nothing here fails or slows a platform request beyond a bounded cost: if the cache itself fails (Redis
down), the wake-up is logged and left to the sweep, and this process leaves the cache alone for
``CACHE_COOLDOWN`` seconds, so at most one request in that time pays for a failing connection. Workers
drain without the cache's debouncing meanwhile.

Tasks are sent by name, so this module, below the Celery tasks, never imports them
(:mod:`aspects_sink.tasks` runs what is sent).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import uuid

from celery import current_app
from django.core.cache import cache

from aspects_sink.conf import aspects_settings
from aspects_sink.sinks.registry import get_sink
from aspects_sink.task_names import DRAIN_TASK

log = logging.getLogger(__name__)

BROKER_COOLDOWN = 10.0
CACHE_COOLDOWN = 10.0
LOST_AFTER = 30.0
_BROKER_DOWN_KEY = "aspects_sink:broker-down"


def _scheduled_key(sink_name: str) -> str:
    return f"aspects_sink:drain-scheduled:{sink_name}"


def _last_drain_key(sink_name: str) -> str:
    return f"aspects_sink:last-drain:{sink_name}"


def _seconds_since_last_drain(sink_name: str) -> float:
    last = cache.get(_last_drain_key(sink_name))
    return float("inf") if last is None else time.time() - last


def drain_interval(sink_name: str) -> float:
    """The shortest time between the starts of two drains of the sink."""
    return get_sink(sink_name).drain_interval


def next_drain_delay(sink_name: str, *, first: bool = True) -> float:
    """
    Seconds until the sink may be drained again: a drain interval after the last drain started, and for the
    ``first`` change after a quiet period at least what the sink gathers changes for (``Sink.gather_seconds``:
    the flush interval; none for a course, whose first publish is dumped at once). A drain's follow-up
    (``first`` False) starts as soon as the interval allows.
    """
    sink = get_sink(sink_name)
    return max(sink.gather_seconds if first else 0.0, sink.drain_interval - _seconds_since_last_drain(sink_name))


def send_task(name: str, args: tuple, countdown: float = 0) -> None:
    """Send one of the plugin's tasks by name to ``ASPECTS_SINK_CELERY_QUEUE``; raise if the broker is down."""
    current_app.send_task(
        name, args=args, countdown=countdown, queue=aspects_settings.ASPECTS_SINK_CELERY_QUEUE, retry=False
    )


def publish_drain(sink_name: str, countdown: float, token: str | None = None) -> bool:
    """Send a drain task to the broker now; return False (and pause further wake-ups) if it is down."""
    try:
        send_task(DRAIN_TASK, (sink_name, token), countdown)
    except Exception as error:
        log.warning("aspects_sink: could not wake the %s drain (the sweep will): %s", sink_name, error)
        try:
            cache.set(_BROKER_DOWN_KEY, 1, timeout=BROKER_COOLDOWN)
            cache.delete(_scheduled_key(sink_name))
        except Exception as cache_error:  # the cache may be down too
            _cache_failed(cache_error)
        return False
    return True


# Per process: until when (time.monotonic()) the cache is left alone after it failed.
_cache_down_until = [0.0]


def _cache_failed(error: Exception) -> None:
    """The cache failed: log it, and leave it alone for ``CACHE_COOLDOWN`` seconds in this process."""
    _cache_down_until[0] = time.monotonic() + CACHE_COOLDOWN
    log.warning("aspects_sink: the cache failed (%s); wake-ups are left to the sweep for %.0fs", error, CACHE_COOLDOWN)


def cache_resting() -> bool:
    """Whether this process is leaving the cache alone after a failure."""
    return time.monotonic() < _cache_down_until[0]


class _WakeUpPublisher:
    """
    One daemon thread per process that publishes wake-ups queued by requests.

    At interpreter exit what is still queued is published (for up to ``EXIT_FLUSH_SECONDS``), so a
    short-lived process such as a management command does not leave its changes to the sweep.
    """

    EXIT_FLUSH_SECONDS = 5.0

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def submit(self, sink_name: str, countdown: float, token: str) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="aspects-sink-wake-ups", daemon=True)
                self._thread.start()
        self._queue.put((sink_name, countdown, token))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._publish(*item)

    @staticmethod
    def _publish(sink_name: str, countdown: float, token: str) -> None:
        try:
            if cache.get(_BROKER_DOWN_KEY):
                cache.delete(_scheduled_key(sink_name))
                return
        except Exception as error:  # the thread must outlive a failing cache
            _cache_failed(error)
        publish_drain(sink_name, countdown, token)

    def flush(self) -> None:
        """Let the thread publish everything queued so far (the one in hand included), then stop it."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(self.EXIT_FLUSH_SECONDS)


_publisher = _WakeUpPublisher()


def claim_schedule(sink_name: str, delay: float) -> str | None:
    """
    Become the one scheduled drain of the sink: a token if no drain was scheduled, else None. The token
    ends with the time the drain is due (``<uuid>@<epoch seconds>``), so other processes learn from it how
    long they need not ask again (:func:`schedule_drain`).
    """
    token = f"{uuid.uuid4().hex}@{time.time() + delay:.3f}"
    return token if cache.add(_scheduled_key(sink_name), token, timeout=delay + LOST_AFTER) else None


def _due(token: str | None) -> float:
    """When the drain holding ``token`` is due (0 when unknown: ask again next time)."""
    try:
        return float(token.rpartition("@")[2]) if token else 0.0
    except ValueError:
        return 0.0


# Per process: until when a drain of the sink is known to be scheduled and not yet started. A change
# committed before then is taken by that drain, so the wake-up needs no cache round trip; at hundreds of
# statements a second this saves three per event. The margin covers clocks a little apart between hosts
# (a worker whose clock is ahead starts a task before its ETA by as much).
_scheduled_until: dict[str, float] = {}
CLOCK_MARGIN = 0.25


def schedule_drain(sink_name: str) -> None:
    """
    Ask a worker to drain ``sink_name`` soon, without waiting; a drain already scheduled makes this a no-op.
    Called after the platform's commit, in its request: it never raises (a failing cache is left to the sweep).
    """
    if time.time() < _scheduled_until.get(sink_name, 0.0) or cache_resting():
        return
    try:
        # One round trip while a drain is scheduled, however late a busy worker starts it.
        found = cache.get_many([_BROKER_DOWN_KEY, _scheduled_key(sink_name)])
        if found.get(_BROKER_DOWN_KEY):
            return
        token = found.get(_scheduled_key(sink_name))
        if token is None:
            delay = next_drain_delay(sink_name)
            token = claim_schedule(sink_name, delay)
            if token:
                _publisher.submit(sink_name, delay, token)
            else:
                token = cache.get(_scheduled_key(sink_name))
    except Exception as error:  # nothing may reach the platform's request
        _cache_failed(error)
        return
    _scheduled_until[sink_name] = _due(token) - CLOCK_MARGIN


def begin_drain(sink_name: str, token: str | None) -> bool:
    """
    Whether a drain task that arrived with ``token`` should drain now; if so, it is recorded as started.

    Only the drain holding the schedule's token frees the schedule. A duplicate (a race between two
    processes scheduling at once, or the sweep) drains only if the sink has not been drained within its
    interval, so duplicates die out instead of multiplying. The holder itself waits for the end of the
    interval when another drain started within it (its schedule was computed from the time of the drain
    before, read just before that one started): drains of a sink start an interval apart, whoever asked.
    """
    key = _scheduled_key(sink_name)
    try:
        since = _seconds_since_last_drain(sink_name)
        interval = drain_interval(sink_name)
        if token is not None and cache.get(key) == token:
            cache.delete(key)
            if since < interval - CLOCK_MARGIN:
                schedule_follow_up(sink_name, interval - since)
                return False
        elif since < interval:
            return False
        cache.set(_last_drain_key(sink_name), time.time(), timeout=3600)
    except Exception as error:  # without the cache, drain: the outbox's leases keep it safe
        log.warning("aspects_sink: the cache failed (%s); draining %s without it", error, sink_name)
    return True


def schedule_follow_up(sink_name: str, wait: float) -> None:
    """A drain left work behind, due in ``wait`` seconds: schedule the next drain, unless one already is."""
    try:
        delay = max(wait, next_drain_delay(sink_name, first=False))
        token = claim_schedule(sink_name, delay)
    except Exception as error:  # without the cache, the follow-up is sent undebounced
        log.warning("aspects_sink: the cache failed (%s); scheduling the next %s drain without it", error, sink_name)
        delay, token = max(wait, float(aspects_settings.ASPECTS_SINK_FLUSH_INTERVAL_SECONDS)), None
        publish_drain(sink_name, delay, token)
        return
    if token:
        publish_drain(sink_name, delay, token)


def wake_from_sweep(sink_name: str, overdue: bool) -> bool:
    """
    The sweep's wake-up of one sink with pending entries: at once when ``overdue`` (a wake-up was lost:
    a broker restart drops queued tasks), whatever the cache says; else only if no drain is scheduled.
    Return whether a drain was sent.
    """
    try:
        delay = next_drain_delay(sink_name)
        token = None if overdue else claim_schedule(sink_name, delay)
    except Exception as error:  # without the cache, the sweep wakes every sink it finds waiting
        log.warning("aspects_sink: the cache failed (%s); the sweep wakes %s without it", error, sink_name)
        return publish_drain(sink_name, 0)
    return bool(overdue or token) and publish_drain(sink_name, 0 if overdue else delay, token)
