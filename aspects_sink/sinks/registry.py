"""
The one registry of what is sent where: every sink (the built-ins, dotted paths in
``ASPECTS_SINK_EXTRA_SINKS``, and classes advertised by installed packages in the ``aspects_sink.sinks``
entry-point group), each declaring its queue and its tables. The drains, the sweep, the schema command,
retirement and the dead-letter tools all find their sinks here. A site adds a sink by shipping one class;
nothing in this package changes.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from django.utils.module_loading import import_string

from aspects_sink.conf import aspects_settings
from aspects_sink.sinks.base import Sink, TableSpec

BUILTIN_SINKS = (
    "aspects_sink.sinks.course_overviews.CourseOverviewSink",
    "aspects_sink.sinks.user_profile.UserProfileSink",
    "aspects_sink.sinks.external_id.ExternalIdSink",
    "aspects_sink.sinks.course_enrollment.CourseEnrollmentSink",
    "aspects_sink.sinks.taxonomy.TaxonomySink",
    "aspects_sink.sinks.tag.TagSink",
    "aspects_sink.sinks.object_tag.ObjectTagSink",
    "aspects_sink.sinks.user_retirement.UserRetirementSink",
    "aspects_sink.sinks.xapi_statements.XapiStatementSink",
)
ENTRY_POINT_GROUP = "aspects_sink.sinks"


class UnknownSink(KeyError):
    """No sink has that name; the message lists the ones that exist."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown object {self.name!r}; valid names: {', '.join(self.known)}"


def _sink_classes() -> list[type[Sink]]:
    classes = [import_string(path) for path in BUILTIN_SINKS]
    classes += [import_string(path) for path in aspects_settings.ASPECTS_SINK_EXTRA_SINKS]
    classes += [entry_point.load() for entry_point in entry_points(group=ENTRY_POINT_GROUP)]
    return classes


@lru_cache(maxsize=8)
def _registry(extra_sinks: tuple[str, ...]) -> dict[str, Sink]:
    del extra_sinks  # only part of the cache key: settings overrides (tests) build a new registry
    sinks: dict[str, Sink] = {}
    for sink_class in _sink_classes():
        if sink_class.name in sinks and type(sinks[sink_class.name]) is not sink_class:
            raise ValueError(
                f"two sinks are named {sink_class.name!r}: {type(sinks[sink_class.name])} and {sink_class}"
            )
        sinks[sink_class.name] = sink_class()
    return dict(sorted(sinks.items(), key=lambda item: (item[1].order, item[0])))


def all_sinks() -> dict[str, Sink]:
    """Every sink by name, in backfill order."""
    return _registry(tuple(aspects_settings.ASPECTS_SINK_EXTRA_SINKS))


def get_sink(name: str) -> Sink:
    """The sink called ``name``; raise :class:`UnknownSink` listing the valid names."""
    sinks = all_sinks()
    if name not in sinks:
        raise UnknownSink(name, list(sinks))
    return sinks[name]


def enabled_sinks() -> list[Sink]:
    """The sinks switched on (settings, waffle flags, PII switch), in backfill order."""
    return [sink for sink in all_sinks().values() if sink.is_enabled()]


def all_tables() -> list[TableSpec]:
    """Every table of every sink, once each (two sinks may write one table)."""
    tables: dict[tuple[str | None, str], TableSpec] = {}
    for sink in all_sinks().values():
        for table in sink.tables():
            tables.setdefault((table.database, table.name), table)
    return list(tables.values())
