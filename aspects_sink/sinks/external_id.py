"""``event_sink.external_id``: the anonymous ids (xAPI actor ids among them) that stand for a user."""

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink


class ExternalIdSink(ModelSink):
    """
    One row per external id. xAPI statements name their actor by the ``xapi`` external id, so
    Aspects joins statements to users through this table: the map from an anonymous actor to a
    learner is personal data, sent only with ASPECTS_ENABLE_PII on, as Tutor's Aspects plugin does
    (its ``EVENT_SINK_PII_MODELS``).
    """

    name = "external_id"
    model = "external_id"
    table = "external_id"
    lookup = "user_id"
    saved_models = ("external_id",)
    user_id_column = "user_id"
    pii = True
    order = 30
    description = "External user ids (xAPI actor ids) and their users (personal data; only with ASPECTS_ENABLE_PII)"
    key = ("external_user_id",)
    columns = (
        col.UUID("external_user_id"),
        col.String("external_id_type", "external_id_type__name"),
        col.String("username", "user__username", pii=True),
        col.Int32("user_id"),
    )
