"""
``event_sink.object_tag``: which tag is applied to which object (a course, a block, a library...), from
openedx-learning's tagging app.
"""

from typing import Any

from django.db.models import Q, QuerySet

from aspects_sink import edx_platform
from aspects_sink.sinks import columns as col
from aspects_sink.sinks.deletions import DeletableModelSink
from aspects_sink.sinks.tag import LINEAGE_SOURCES, with_subtags

OBJECT_TAG_LINEAGE_SOURCES = ("_value", *(f"tag__{source}" for source in LINEAGE_SOURCES))


def object_tag_lineage(values: tuple) -> str:
    """``ObjectTag.get_lineage()``: its tag's lineage, or its own value for a free-text (or deleted) tag."""
    own_value, *tag_lineage = values
    if tag_lineage[0] is None:
        return col.aspects_json_list([own_value])
    return col.aspects_json_list([value for value in reversed(tag_lineage) if value is not None])


def object_tags_showing(tag: Any) -> QuerySet:
    """
    The object tags whose row shows this tag: those on it or on a tag under it (their lineage holds its value),
    and, once it is deleted, those it was on. openedx-learning then sets their tag to NULL with one UPDATE (no
    save, no signal); they keep its value, in its taxonomy, which has no free text (that has no tags).
    """
    model = edx_platform.get_model("object_tag")
    gone = Q(taxonomy_id=tag.taxonomy_id, tag__isnull=True, _value=tag.value)
    return model._default_manager.filter(Q(tag_id__in=with_subtags(tag)) | gone)


def object_tags_of_taxonomy(taxonomy: Any) -> QuerySet:
    """
    The object tags of a taxonomy, and once it is deleted those it had: Django sets their taxonomy (and, its tags
    being deleted, their tag) to NULL with plain UPDATEs before any signal is sent; they keep its export id.
    """
    model = edx_platform.get_model("object_tag")
    gone = Q(taxonomy__isnull=True, _export_id=taxonomy.export_id)
    return model._default_manager.filter(Q(taxonomy_id=taxonomy.pk) | gone)


class ObjectTagSink(DeletableModelSink):
    """
    One row per object tag; re-sent when it is saved, its row deleted when it is deleted, and re-sent when a
    tag it shows is renamed or deleted (:func:`object_tags_showing`) or its taxonomy deleted
    (:func:`object_tags_of_taxonomy`). The tags of courses and blocks are also
    in ``course_data_json`` and ``xblock_data_json`` (see the course_overviews sink, which re-sends a course
    when one of its object tags changes).
    """

    name = "object_tag"
    model = "object_tag"
    table = "object_tag"
    saved_models = ("object_tag", "tag")
    deleted_models = ("object_tag", "tag", "taxonomy")
    order = 60
    description = "Tags applied to courses, blocks and other objects"
    key = ("id",)
    columns = (
        col.Int32("id"),
        col.String("object_id"),
        col.Int32("taxonomy", "taxonomy_id"),
        col.Int32("tag", "tag_id"),
        col.String("_value"),
        col.String("_export_id"),
        col.Computed("lineage", "String", OBJECT_TAG_LINEAGE_SOURCES, object_tag_lineage),
    )

    def changed_objects(self, model_name: str, instance: Any) -> list:
        if model_name == "tag":
            return list(object_tags_showing(instance).values_list("pk", flat=True))
        if model_name == "taxonomy":
            return list(object_tags_of_taxonomy(instance).values_list("pk", flat=True))
        return super().changed_objects(model_name, instance)
