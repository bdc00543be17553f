"""``event_sink.tag``: the tags of content taxonomies, each with its lineage (openedx-learning's tagging app)."""

from typing import Any

from django.db.models import Q

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.deletions import DeletableModelSink

# A tag and its ancestors, nearest first: openedx-learning keeps taxonomies at most TAXONOMY_MAX_DEPTH (3) deep,
# so a tag has at most three ancestors, all read in the batch's one query.
LINEAGE_SOURCES = ("value", "parent__value", "parent__parent__value", "parent__parent__parent__value")


def lineage(values: tuple) -> str:
    """The tag's values from the root down to it, as JSON: what ``Tag.get_lineage()`` gives, as Aspects stores it."""
    return col.aspects_json_list([value for value in reversed(values) if value is not None])


def with_subtags(tag: Any) -> list[int]:
    """The ids of a tag and of the tags under it (taxonomies are at most three levels deep below a tag)."""
    subtags = Q(parent=tag) | Q(parent__parent=tag) | Q(parent__parent__parent=tag)
    return [tag.pk, *type(tag)._default_manager.filter(subtags).values_list("pk", flat=True)]


class TagSink(DeletableModelSink):
    """
    One row per tag; re-sent when it is saved, its row deleted when it is deleted. A renamed tag re-sends the
    tags under it too: their lineage holds its value.
    """

    name = "tag"
    model = "tag"
    table = "tag"
    saved_models = ("tag",)
    deleted_models = ("tag",)
    order = 55
    description = "Content tags, with their lineage"
    key = ("id",)
    columns = (
        col.Int32("id"),
        col.Int32("taxonomy", "taxonomy_id"),
        col.Int32("parent", "parent_id"),
        col.String("value"),
        col.String("external_id"),
        col.Computed("lineage", "String", LINEAGE_SOURCES, lineage),
    )

    def changed_objects(self, model_name: str, instance: Any) -> list:
        return with_subtags(instance)
