"""``event_sink.taxonomy``: the taxonomies of content tags (openedx-learning's tagging app)."""

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.deletions import DeletableModelSink


class TaxonomySink(DeletableModelSink):
    """One row per taxonomy; re-sent when it is saved, its row deleted when it is deleted."""

    name = "taxonomy"
    model = "taxonomy"
    table = "taxonomy"
    saved_models = ("taxonomy",)
    deleted_models = ("taxonomy",)
    order = 50
    description = "Content tag taxonomies"
    key = ("id",)
    columns = (col.Int32("id"), col.String("name"))
