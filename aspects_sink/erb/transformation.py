"""
Event-routing-backends' xAPI transformation, faster for a history import or a drain's batch, otherwise the same.

The drain and a history import run ERB's transformers (its classes on tincan's statement objects), so their
statements and ids are ERB's. Part of the transformers' time goes to work they repeat, which :func:`sped_up`
avoids for the length of an import or of one batch of the drain, with the same results
(``tests/xapi/test_history_transformation.py`` compares every statement, text and id, with and without it):

* ERB's lookups (a learner's anonymous id: three LMS queries; a course) are memoized by ERB for its last 128
  arguments; a history interleaves more learners than that, so nearly every event paid the queries again.
  They are remembered for the whole import (or batch): what ERB's own function answered first. A batch of the
  live drain forgets them when it ends, so a change (a course renamed) is seen by the next batch, as soon as
  ERB's own memo would let it be seen.
* ERB's openedx-filters hook on ``get_actor`` and ``get_verb`` builds a new filter class (``type(...)``) on
  every call, and the garbage collector then has classes to collect. The class only carries its filter type:
  one per type is built and used again; the filter pipeline still runs on each call.
* ERB calls ``get_actor`` and ``get_verb`` twice per statement, for its id and for the statement itself, each
  time building tincan objects anew. Unless ``OPEN_EDX_FILTERS_CONFIG`` gives them a pipeline (whose steps
  could answer differently the second time), the second call returns what the first answered.
* The garbage collector: the objects Django's start-up made are frozen out of its collections (they live as
  long as the process; unless the process froze objects itself), and young collections run less often; a
  statement's objects hold no cycle.
* tincan, whose objects ERB's transformers build (about twenty per statement, some 140 attributes set):
  every attribute set checks its name against the class's list of properties, twice for a property
  (its setter stores it under ``_name``), and serialising runs a second pass over each object's values to drop
  the ``None`` ones. Both run as tincan's own code would, with the allowed names of a class kept as a set and
  serialising done in one pass (:func:`_set_attribute`, :func:`_as_version`); anything else (a name tincan
  refuses, a list- or dict-like object) goes to tincan's own code. A fifth less transformation time, measured.

What remains is ERB's transformers themselves (its ``get_data`` lookups, the events' extensions), tincan's
setters checking and converting every value, and JSON: a statement is serialised by tincan, parsed again by
ERB's processor and written for ClickHouse. A history import does that much less often: it assembles the
statements of the commonest events from parts ERB made for earlier ones (:mod:`aspects_sink.erb.assembly`).

Nothing of this is active outside :func:`sped_up`; in a Celery worker it lasts one batch of the drain's (a
prefork worker's process runs one task at a time).
"""

from __future__ import annotations

import datetime
import functools
import gc
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from event_routing_backends.processors.openedx_filters.filters import ProcessorBaseFilter
from event_routing_backends.processors.xapi import transformer as xapi_transformer
from tincan.base import Base as TincanBase
from tincan.conversions.iso8601 import jsonify_datetime, jsonify_timedelta
from tincan.serializable_base import SerializableBase
from tincan.version import Version

_MEMOIZED_LOOKUPS = ("get_anonymous_user_id", "get_course_from_id")
_LOOKUPS_KEPT = 1_000_000
# Young objects allocated before a collection (Python's default: 700). Statements' objects are short-lived and
# acyclic, so collecting them more often only costs time.
_YOUNG_THRESHOLD = 50_000
_FROZEN_AT_IMPORT = gc.get_freeze_count()


# ``sped_up`` replaces attributes of ERB's modules and classes and puts them back: two threads doing so at once
# (a worker's threads pool) could put back each other's replacements, so one thread at a time holds them. The
# lock is reentrant: should an import or a drain batch ever run inside another in one thread (none does today),
# the thread enters again instead of waiting on itself for ever, and each level puts back what it found.
_REPLACING = threading.RLock()


@contextmanager
def sped_up() -> Iterator[None]:
    """For its duration, ERB's transformation in this process (and processes forked from it) as described above."""
    with _REPLACING, ExitStack() as stack:
        stack.enter_context(lookups_memoized())
        stack.enter_context(_replaced(ProcessorBaseFilter, "generate_dynamic_filter", _one_filter_class_per_type))
        for name, filter_type in _FILTERED_PARTS.items():
            if not _filter_configured(filter_type):
                stack.enter_context(_replaced(xapi_transformer.XApiTransformer, name, _once_per_transformer(name)))
        stack.enter_context(_tincan_sped_up())
        stack.enter_context(_collector_tuned())
        yield


@contextmanager
def lookups_memoized() -> Iterator[None]:
    """ERB's own lookup functions, what they return remembered for the whole import instead of for 128 arguments."""
    originals = {name: getattr(xapi_transformer, name) for name in _MEMOIZED_LOOKUPS}
    try:
        for name, original in originals.items():
            setattr(xapi_transformer, name, functools.lru_cache(maxsize=_LOOKUPS_KEPT)(original))
        yield
    finally:
        for name, original in originals.items():
            setattr(xapi_transformer, name, original)


@contextmanager
def _replaced(owner: type, name: str, replacement) -> Iterator[None]:
    """``owner.name`` replaced, and the very attribute it had (from its ``__dict__``) put back afterwards."""
    original = owner.__dict__[name]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def _collector_tuned() -> Iterator[None]:
    """
    Young collections less often, and the objects already there frozen out of the collector's passes, unless
    the process froze objects itself (a server before it forks its workers): unfreezing takes every frozen
    object back, which is the process's to do. (Python 3.12 starts with a few hundred objects in the frozen
    generation: that count, read at import, is not a freeze of the process's.)
    """
    thresholds = gc.get_threshold()
    freezing = gc.get_freeze_count() <= _FROZEN_AT_IMPORT
    if freezing:
        gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freezing:
            gc.unfreeze()


# -- ERB's openedx-filters hook ----------------------------------------------------------------------


@classmethod
@functools.cache
def _one_filter_class_per_type(cls, filter_type):
    """``ProcessorBaseFilter.generate_dynamic_filter``, built once per class and filter type."""
    return type("DynamicFilter", (cls,), {"filter_type": filter_type})


_FILTERED_PARTS = {
    "get_actor": "event_routing_backends.processors.xapi.transformer.xapi_transformer.get_actor",
    "get_verb": "event_routing_backends.processors.xapi.transformer.xapi_transformer.get_verb",
}


def _filter_configured(filter_type: str) -> bool:
    """Whether ``OPEN_EDX_FILTERS_CONFIG`` gives this filter type of ERB's a pipeline."""
    dynamic_filter = ProcessorBaseFilter.generate_dynamic_filter(filter_type)
    return bool(dynamic_filter.get_pipeline_configuration()[0])


def _once_per_transformer(name: str):
    """
    ``XApiTransformer.<name>`` (ERB's ``get_actor`` or ``get_verb`` with its filter hook) run once per transformer:
    ERB calls each twice per statement, for the statement's id and for the statement. Without a filter pipeline
    configured they answer the same both times (the event's learner through the memoized lookup, the event's
    verb), and tincan only reads the object it is given; with one, a pipeline step could answer otherwise, so
    :func:`sped_up` leaves that method as it is.
    """
    method = xapi_transformer.XApiTransformer.__dict__[name]
    key = f"_aspects_sink_{name}"

    @functools.wraps(method)
    def once(self):
        answers = self.__dict__
        if key not in answers:
            answers[key] = method(self)
        return answers[key]

    return once


# -- tincan ------------------------------------------------------------------------------------------

_TINCAN_SET_ATTRIBUTE = TincanBase.__dict__["__setattr__"]
_TINCAN_AS_VERSION = SerializableBase.__dict__["as_version"]


@contextmanager
def _tincan_sped_up() -> Iterator[None]:
    with _replaced(TincanBase, "__setattr__", _set_attribute), _replaced(SerializableBase, "as_version", _as_version):
        try:
            yield
        finally:
            _allowed_names.cache_clear()


@functools.cache
def _allowed_names(cls: type) -> frozenset[str]:
    """The names tincan's ``Base.__setattr__`` lets a class's objects set: its properties, with or without ``_``."""
    return frozenset(cls._props) | frozenset(f"_{name}" for name in cls._props)


def _set_attribute(self, name: str, value) -> None:
    """tincan's ``Base.__setattr__`` (a property's setter runs, a name it refuses raises its error), by set lookup."""
    if name in _allowed_names(type(self)):
        object.__setattr__(self, name, value)
    else:
        _TINCAN_SET_ATTRIBUTE(self, name, value)


def _as_version(self, version=Version.latest):
    """
    tincan's ``SerializableBase.as_version`` in one pass: the same keys (renamed, leading ``_`` dropped, ``None``
    values left out) in the same order with the same values. An object's attributes are names tincan's
    ``__setattr__`` let through, each property once (its setter stores it under ``_``), so no two of them end up
    under one key and leaving ``None`` out first is the same as tincan's filtering afterwards. Lists and dicts
    (language maps, extensions: keys of any kind) go to tincan's own code.
    """
    if isinstance(self, (list, dict)):
        return _TINCAN_AS_VERSION(self, version)
    renamed = self._props_corrected
    result = {}
    for name, value in vars(self).items():
        if value is None:
            continue
        key = renamed.get(name, name)
        if key.startswith("_"):
            key = key[1:]
        if isinstance(value, SerializableBase):
            result[key] = value.as_version(version)
        elif isinstance(value, list):
            result[key] = [each.as_version(version) if isinstance(each, SerializableBase) else each for each in value]
        elif isinstance(value, uuid.UUID):
            result[key] = str(value)
        elif isinstance(value, datetime.timedelta):
            result[key] = jsonify_timedelta(value)
        elif isinstance(value, datetime.datetime):
            result[key] = jsonify_datetime(value)
        else:
            result[key] = value
    return result
