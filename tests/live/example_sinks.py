"""
An example of a site's own sink: one class, registered through ``ASPECTS_SINK_EXTRA_SINKS``
(or the ``aspects_sink.sinks`` entry-point group), with no change to aspects-sink itself.

It sends each learner's city to ``event_sink.profile_city`` whenever their profile is saved
(``saved_models``), and is backfilled by ``dump_data_to_clickhouse --object profile_city``.
"""

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink


class ProfileCitySink(ModelSink):
    """The city of each learner's profile."""

    name = "profile_city"
    model = "user_profile"
    table = "profile_city"
    lookup = "user_id"
    saved_models = ("user_profile",)
    user_id_column = "user_id"
    key = ("user_id",)
    columns = (col.Int32("user_id"), col.String("city"))
