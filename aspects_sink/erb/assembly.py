"""
ERB's statements for the commonest events, assembled from parts ERB made for earlier events: a history's fast path.

An ERB transformer builds a statement of parts (actor, verb, object, context, result), each a tree of tincan
objects made by one of its methods from a few values of the event: the actor from the learner, the verb from the
event's name, a video's object from its course and block, the context from the course, the session and a few
extensions. Events of a history repeat those values over and over (a learner's session holds hundreds of events
on a few videos and problems), so :class:`Assembly` keeps each part, serialised, under the event values its
method reads, and asks ERB's method (on ERB's own transformer of the event) only for values it has not seen. The
statement's id is ERB's ``get_uuid5`` of the same texts, its time tincan's text of the same time.

The parts are ERB's, so the statements are ERB's as long as a recipe (:data:`RECIPES`) names every value a part's
method reads: the recipes are written from ERB's transformers (9.3 to 10, whose xAPI code is the same) and
checked against them: the first event of each transformer in each process, and every :data:`CHECK_EVERY`-th after it,
is also transformed by ERB, and a difference hands that transformer's events to ERB for the rest of the run,
with a WARNING naming the event. ``tests/xapi/test_statement_assembly.py`` compares every statement, text and id.

Only ERB's own transformer classes have recipes (a site that registers its own transformer for an event gets it
run as it is), only while no openedx-filters pipeline is configured on any of ERB's xAPI hooks (a step could
answer from anything), and only with ERB's ``XApiProcessor`` as the router's last processor. Anything else, and
any event a part's method raises on, goes through ERB's transformation as before (:func:`aspects_sink.erb.transform`).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import DatabaseError
from event_routing_backends.helpers import get_uuid5
from event_routing_backends.models import get_value_from_dotted_path
from event_routing_backends.processors.xapi import constants
from event_routing_backends.processors.xapi.event_transformers import (
    enrollment_events,
    grading_events,
    navigation_events,
    problem_interaction_events,
    video_events,
)
from event_routing_backends.processors.xapi.transformer import XApiTransformer
from event_routing_backends.processors.xapi.transformer_processor import XApiProcessor
from tincan.conversions.iso8601 import make_datetime

from aspects_sink import erb
from aspects_sink.erb import StatementRow

log = logging.getLogger(__name__)

# After a transformer's first event, every CHECK_EVERY-th of its events is transformed by ERB too and compared.
CHECK_EVERY = 1000
# Parts kept per memo; a memo that outgrows it starts again (a history's memory stays flat).
PARTS_KEPT = 20_000
_FILTER_PREFIX = "event_routing_backends.processors.xapi."
_MINUTE = datetime.timedelta(minutes=1)
# A field the event lacks, as a memo key (ERB's method raises on it): equal to no value an event holds.
_MISSING = object()
Kept = TypeVar("Kept")


def _value(value) -> Hashable:
    """
    An event value as a memo key: its type kept (``0``, ``0.0`` and ``False`` are equal keys, not equal JSON), a
    float by its text (``-0.0`` equals ``0.0``, not in JSON; a NaN equals no NaN, and would fill the memo).
    """
    if isinstance(value, (dict, list)):
        return "json", json.dumps(value)  # in its own order: ERB reads some (submissions) in order
    if type(value) is float:
        return float, repr(value)
    return type(value), value


def _values(transformer: XApiTransformer, *keys: str) -> tuple:
    """
    What the event holds where ERB's ``get_data`` looks for each key (a dotted path, or a key found at any depth),
    before ``get_data`` reads an empty value as None: a key that tells apart at least the values a method sees.
    """
    event = transformer.event
    return tuple(_value(_held(event, key)) for key in keys)


def _held(event: dict, key: str):
    """``get_data``'s lookup without its reading: ``get_value_from_dotted_path``, or ``find_nested``."""
    if "." in key:
        return get_value_from_dotted_path(event, key)
    return event[key] if key in event else XApiTransformer.find_nested(event, key)  # find_nested's first step


def _nothing(transformer: XApiTransformer) -> tuple:
    return ()


@dataclass(frozen=True)
class Recipe:
    """
    The event values that one ERB transformer class's parts read beyond those every class reads (the learner;
    the event's name and source for the verb; the course and session for the context), as memo keys.
    ``result`` is None for a class whose statements have no result. ``assemblable`` says whether this event
    is one the recipe covers (a problem with several questions makes several statements: ERB's path).
    """

    object: Callable[[XApiTransformer], tuple]
    context: Callable[[XApiTransformer], tuple] = _nothing
    result: Callable[[XApiTransformer], tuple] | None = None
    assemblable: Callable[[XApiTransformer], bool] = lambda transformer: True


# -- the recipes, from ERB's transformers ---------------------------------------------------------------

_VIDEO_RESULT = (
    "name",
    "data.current_time",
    "data.currentTime",
    "data.duration",
    "data.old_time",
    "data.new_time",
    "data.old_speed",
    "data.new_speed",
)


def _video(with_result: bool) -> Recipe:
    return Recipe(
        object=lambda t: _values(t, "context.course_id", "data.id"),
        context=lambda t: _values(t, "data.duration"),
        result=(lambda t: _values(t, *_VIDEO_RESULT)) if with_result else None,
    )


def _data_fields(t: XApiTransformer, *names: str) -> tuple:
    """
    Fields of the event's ``data`` as a method that reads ``self.get_data("data")["name"]`` sees them: its type,
    and each field's value, or that it is missing (ERB raises, and the event takes ERB's path).
    """
    data = t.get_data("data")
    if not isinstance(data, dict):
        return (type(data),)
    return (dict, *(_value(data[name]) if name in data else _MISSING for name in names))


def _problem_source(t: XApiTransformer) -> tuple:
    """What ``BaseProblemCheckTransformer`` reads to tell a browser's event from the server's, and the referer."""
    return _values(t, "context.event_source", "event_source", "referer", "context.referer")


def _problem_object(t: XApiTransformer) -> tuple:
    """What ``ProblemCheckTransformer.get_object`` reads: its object's id, its definition, whether it has children."""
    submission = t._get_submission() or {}  # ERB's own choice of the submission a definition describes
    browser = (t.get_data("context.event_source") or t.get_data("event_source")) == "browser"
    return (
        *_data_fields(t),
        _value(t.get_data("data")) if browser else None,  # a browser's event: the block id is made of its data
        *_values(t, "data.problem_id", "data.module_id", "usage_key", "name", "context.course_id"),
        *_problem_source(t),
        *_values(t, "data.attempts", "response_type", "display_name", "submission"),
        _value(submission.get("response_type")),
        _value(submission.get("question", _MISSING)),
    )


def _problem_result(t: XApiTransformer) -> tuple:
    """What ``BaseProblemCheckTransformer.get_result`` reads: the source, the submission or answers, the grade."""
    return (
        *_problem_source(t),
        *_data_fields(t, "answers"),
        _value(t._get_submission()),
        *_values(t, "success", "max_grade", "grade"),
    )


def _one_question(t: XApiTransformer) -> bool:
    """A problem_check ERB makes one statement of: at most one submission (``ProblemCheckTransformer``)."""
    return len(t.get_data("submission") or {}) <= 1


_PROBLEM_OBJECT = ("data.problem_id", "data.module_id", "usage_key", "name")

RECIPES: dict[type, Recipe] = {
    video_events.VideoLoadedTransformer: _video(with_result=False),
    video_events.VideoInteractionTransformers: _video(with_result=True),
    video_events.VideoCCTransformers: _video(with_result=True),
    video_events.VideoCompletedTransformer: _video(with_result=True),
    video_events.VideoPositionChangedTransformer: _video(with_result=True),
    video_events.VideoSpeedChangedTransformer: _video(with_result=True),
    navigation_events.LinkClickedTransformer: Recipe(object=lambda t: _values(t, "data.target_url")),
    navigation_events.OutlineSelectedTransformer: Recipe(
        object=lambda t: _values(t, "data.target_url", "data.target_name")
    ),
    navigation_events.TabNavigationTransformer: Recipe(
        object=lambda t: _values(t, "data.id", "data.tab_count"),
        context=lambda t: _values(t, "name", "data.current_tab", "data.target_tab"),
    ),
    **{
        transformer: Recipe(object=lambda t: _values(t, "context.course_id", "data.mode"))
        for transformer in (
            enrollment_events.EnrollmentActivatedTransformer,
            enrollment_events.EnrollmentDeactivatedTransformer,
            enrollment_events.CourseGradePassedFirstTimeTransformer,
            enrollment_events.CourseGradeNowPassedTransformer,
            enrollment_events.CourseGradeNowFailedTransformer,
        )
    },
    grading_events.SubsectionGradedTransformer: Recipe(
        object=lambda t: _values(t, "data.block_id"),
        result=lambda t: _data_fields(t, "weighted_total_possible", "weighted_total_earned"),
    ),
    grading_events.CourseGradedTransformer: Recipe(
        object=lambda t: _values(t, "context.course_id"),
        result=lambda t: (*_data_fields(t, "percent_grade"), *_values(t, "data.letter_grade")),
    ),
    problem_interaction_events.ProblemSubmittedTransformer: Recipe(
        object=lambda t: (*_data_fields(t), *_values(t, *_PROBLEM_OBJECT)),
        result=lambda t: _data_fields(t, "weighted_possible", "weighted_earned"),
    ),
    problem_interaction_events.ProblemEventsTransformer: Recipe(
        object=lambda t: (*_data_fields(t), *_values(t, *_PROBLEM_OBJECT, "problem_id", "module_id", "hint_index")),
    ),
    problem_interaction_events.ProblemCheckTransformer: Recipe(
        object=_problem_object,
        result=_problem_result,
        assemblable=_one_question,
    ),
}


# -- assembly --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """
    A part of a statement as its text in the statement's JSON: tincan's JSON of it (as ERB's processor hands it
    on), read back and written compactly. Only the text is kept: a memo of contexts holds one per session.
    """

    text: str | None  # None: no such part (ERB's method gave None)
    escaped: bool = False  # a lone surrogate in it: the statement's text escapes it (erb.statement_row)
    identified: bool = True  # for an object: it has an id (ERB's processor makes no statement of one without)

    @classmethod
    def of(cls, part) -> _Part:
        return _NO_PART if part is None else cls.of_tincan_json(part.to_json())

    @classmethod
    def of_tincan_json(cls, tincan_json: str) -> _Part:
        value = json.loads(tincan_json)
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        try:
            text.encode()
        except UnicodeEncodeError:
            return cls(text, escaped=True, identified=_identified(value))
        return cls(text, identified=_identified(value))


def _identified(value) -> bool:
    return isinstance(value, dict) and bool(value.get("id"))


_NO_PART = _Part(None, identified=False)
_VERSION = _Part(json.dumps(constants.XAPI_SPECIFICATION_VERSION))


class _Memo(Generic[Kept]):
    """What ``make`` gave for each key, as ``keep`` keeps it; past :data:`PARTS_KEPT` entries it starts again."""

    def __init__(self, keep: Callable[[Any], Kept]):
        self.keep = keep
        self.kept: dict[Hashable, Kept] = {}

    def get(self, key: Hashable, make: Callable[[], Any]) -> Kept:
        try:
            return self.kept[key]
        except KeyError:
            if len(self.kept) >= PARTS_KEPT:
                self.kept.clear()
            kept = self.kept[key] = self.keep(make())
            return kept


def _with_tincan_json(part) -> tuple[_Part, str]:
    """
    An actor or a verb as a part, and tincan's default JSON of it (not the statement's compact one), of which
    ERB's ``get_event_id`` makes a statement's id: tincan writes it once for both.
    """
    tincan_json = part.to_json()
    return _Part.of_tincan_json(tincan_json), tincan_json


def _statement_time(timestamp: datetime.datetime | str) -> str:
    """tincan's text of the statement's time: a datetime's ISO text; text read as ISO 8601 and written again."""
    if isinstance(timestamp, datetime.datetime):
        return timestamp.isoformat()
    try:
        parsed = datetime.datetime.fromisoformat(timestamp)
    except ValueError:
        parsed = None
    if (
        parsed is not None
        and parsed.tzinfo is not None
        and parsed.utcoffset() % _MINUTE == datetime.timedelta(0)  # tincan reads no seconds in an offset
        and parsed.isoformat() == timestamp
    ):
        return timestamp  # what tincan writes of what it reads, for text in Python's own ISO form
    return make_datetime(timestamp).isoformat()


@dataclass
class AssemblyCounts:
    """How a run's statements were made: statements assembled, statements ERB made, events checked."""

    assembled: int = 0
    by_erb: int = 0  # the checked events' statements included: ERB's are the ones kept
    checked: int = 0


class Assembly:
    """
    Statements of a run's events (one history import in one process): assembled where a recipe covers the
    event, otherwise (and when checking) made by ERB's processors through :func:`aspects_sink.erb.transform`.
    """

    def __init__(self, steps: erb.XapiSteps):
        self.steps = steps
        self.registry = _registry(steps)
        self.counts = AssemblyCounts()
        self._seen: dict[type, int] = {}
        self._refused: set[type] = set()
        self._actors = _Memo(_with_tincan_json)
        self._verbs = _Memo(_with_tincan_json)
        self._objects = _Memo(_Part.of)
        self._contexts = _Memo(_Part.of)
        self._results = _Memo(_Part.of)

    def transform(self, event: dict) -> list[StatementRow]:
        """The rows of the statements ERB makes of ``event``, as :func:`aspects_sink.erb.transform` gives them."""
        transformer_class = self.registry.get(event.get("name")) if self.registry is not None else None
        recipe = RECIPES.get(transformer_class)
        if recipe is None or transformer_class in self._refused:
            return self._by_erb(event)
        event["timestamp"] = erb.as_routed(event.get("timestamp"))
        try:
            rows = self._assembled(transformer_class(event), recipe)
        except DatabaseError:
            raise  # ERB's lookups failing is no event's fault: raised as ERB's own transformation raises it
        except Exception as error:  # a method raising on this event: ERB's own path names the event and the error
            log.debug("%s takes ERB's path: %s: %s", erb.describe(event), type(error).__name__, error)
            rows = None
        if rows is None:
            return self._by_erb(event)
        seen = self._seen[transformer_class] = self._seen.get(transformer_class, 0) + 1
        if seen == 1 or seen % CHECK_EVERY == 0:
            rows = self._checked(event, transformer_class, rows)
        else:
            self.counts.assembled += len(rows)
        return rows

    def _by_erb(self, event: dict) -> list[StatementRow]:
        rows = erb.transform(self.steps, event)
        self.counts.by_erb += len(rows)
        return rows

    def _assembled(self, t: XApiTransformer, recipe: Recipe) -> list[StatementRow] | None:
        timestamp = t.get_data("timestamp")
        if timestamp is None or not recipe.assemblable(t):
            return None
        kind = type(t)
        learner = _value(t.extract_username_or_userid())
        actor, actor_text = self._actors.get(learner, t.get_actor)
        verb_key = (kind, *_values(t, "name", "event_source", "context.event_source"))
        verb, verb_text = self._verbs.get(verb_key, t.get_verb)
        event_object = self._objects.get((kind, *recipe.object(t)), t.get_object)
        if not event_object.identified:
            return None  # no statement: ERB's processor drops it; its path says so
        context = self._contexts.get(
            (kind, *_values(t, "context.course_id", "session"), *recipe.context(t)), t.get_context
        )
        result = self._results.get((kind, *recipe.result(t)), t.get_result) if recipe.result else _NO_PART
        event_id = str(get_uuid5(verb_text, f"{actor_text}-{timestamp}"))
        time = _statement_time(timestamp)
        parts = {
            "id": _Part(f'"{event_id}"'),
            "result": result,
            "version": _VERSION,
            "actor": actor,
            "verb": verb,
            "object": event_object,
            "timestamp": _Part(f'"{time}"'),
            "context": context,
        }
        parts = {key: part for key, part in parts.items() if part.text is not None}
        if any(part.escaped for part in parts.values()):
            return [erb.statement_row({key: json.loads(part.text) for key, part in parts.items()})]
        text = "{" + ",".join(f'"{key}":{part.text}' for key, part in parts.items()) + "}"
        return [(event_id, erb.emission_time(time), text)]

    def _checked(self, event: dict, transformer_class: type, assembled: list[StatementRow]) -> list[StatementRow]:
        """ERB's statements of the event; if the assembled ones differ, ERB's from now on for this transformer."""
        erbs = self._by_erb(event)
        self.counts.checked += 1
        if erbs != assembled:
            self._refused.add(transformer_class)
            log.warning(
                "Statements of %s assembled from ERB's parts differ from ERB's own in %s: %s's events go through "
                "ERB's transformation for the rest of this run",
                erb.describe(event),
                _differing_parts(erbs, assembled),
                transformer_class.__name__,
            )
            log.debug("ERB's statements: %s; assembled: %s", [row[2] for row in erbs], [row[2] for row in assembled])
        return erbs


def _differing_parts(erbs: list[StatementRow], assembled: list[StatementRow]) -> str:
    """Which parts of the statements differ (their texts are logged at DEBUG only: they hold the learner's ids)."""
    if len(erbs) != len(assembled):
        return f"their number ({len(erbs)} against {len(assembled)})"
    differing = set()
    for (_, _, erbs_text), (_, _, assembled_text) in zip(erbs, assembled, strict=True):
        theirs, ours = json.loads(erbs_text), json.loads(assembled_text)
        differing |= {key for key in theirs.keys() | ours.keys() if theirs.get(key) != ours.get(key)}
    return ", ".join(sorted(differing)) or "their text"


def _registry(steps: erb.XapiSteps) -> dict[str, type] | None:
    """ERB's xAPI transformers by event name, if this router's statements can be assembled (module docstring)."""
    if len(steps.transformers) != 1 or type(steps.transformers[0]) is not XApiProcessor:
        return None
    if any(name.startswith(_FILTER_PREFIX) for name in getattr(settings, "OPEN_EDX_FILTERS_CONFIG", None) or {}):
        return None
    return steps.transformers[0].registry.mapping
