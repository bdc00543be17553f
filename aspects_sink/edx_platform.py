"""
The edge between aspects-sink and edx-platform: every platform import goes through here.

Models are found through ``EVENT_SINK_CLICKHOUSE_MODEL_CONFIG`` so the plugin runs on forks and
on the stand-in platform in ``devstack/`` alike; nothing else in the package imports edx-platform.
"""

from __future__ import annotations

import importlib
from typing import Any

from aspects_sink.conf import aspects_settings


class PlatformModelMissing(LookupError):
    """The configured model cannot be imported on this platform."""


# Modules whose models a newer package of the platform keeps elsewhere: openedx-core, openedx-learning's successor
# (newer platforms), moved the content tagging models. A configured path its package no longer has is looked up
# where the successor keeps them, so the defaults (and a site's configuration copied from them) serve both.
MOVED_MODULES = {"openedx_tagging.core.tagging.models": "openedx_tagging.models"}


def get_model(name: str) -> Any:
    """Return the model class configured under ``name`` (``"user_profile"``, ``"course_overviews"``...)."""
    try:
        config = aspects_settings.EVENT_SINK_CLICKHOUSE_MODEL_CONFIG[name]
    except KeyError as error:
        raise PlatformModelMissing(f"EVENT_SINK_CLICKHOUSE_MODEL_CONFIG has no entry {name!r}") from error
    try:
        return getattr(_module(config["module"]), config["model"])
    except (ImportError, AttributeError) as error:
        raise PlatformModelMissing(
            f"cannot import {config['module']}.{config['model']} for {name!r}: {error}"
        ) from error


def _module(path: str) -> Any:
    """The module at ``path``, or where :data:`MOVED_MODULES` says a newer package keeps it."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as error:
        if path not in MOVED_MODULES or not path.startswith(error.name or "\0"):  # it is the path that is gone
            raise
        return importlib.import_module(MOVED_MODULES[path])


def published_blocks(course_key: Any) -> list | None:
    """
    Every block of the course's published version, its course block and detached blocks included, in one read
    of the modulestore (``get_items``); None for a course the modulestore does not know (deleted since).
    """
    from xmodule.modulestore import ModuleStoreEnum  # noqa: PLC0415
    from xmodule.modulestore.django import modulestore  # noqa: PLC0415
    from xmodule.modulestore.exceptions import ItemNotFoundError  # noqa: PLC0415

    try:
        return modulestore().get_items(course_key, revision=ModuleStoreEnum.RevisionOption.published_only)
    except ItemNotFoundError:
        return None


def detached_block_types() -> frozenset[str]:
    """Blocks that live outside the course tree (about, course_info, static_tab)."""
    from xmodule.modulestore.store_utilities import DETACHED_XBLOCK_TYPES  # noqa: PLC0415

    return frozenset(DETACHED_XBLOCK_TYPES)


def course_key(text: str) -> Any:
    """The platform's CourseKey for ``text`` (opaque-keys comes with the platform)."""
    from opaque_keys.edx.keys import CourseKey  # noqa: PLC0415

    return CourseKey.from_string(str(text))


def course_of(object_id: str) -> str | None:
    """
    The course key (text) a tagged object belongs to: the object itself when it is a course, the block's course
    when it is a course block's usage key; None for anything else (libraries, malformed ids).
    """
    from opaque_keys import InvalidKeyError  # noqa: PLC0415
    from opaque_keys.edx.keys import CourseKey, UsageKey  # noqa: PLC0415

    for key_class in (CourseKey, UsageKey):
        try:
            key = key_class.from_string(str(object_id))
        except InvalidKeyError:
            continue
        course = key if key_class is CourseKey else getattr(key, "course_key", None)
        return str(course) if isinstance(course, CourseKey) else None
    return None
