"""
A site's own sink, advertised by a package of its own in the ``aspects_sink.sinks`` entry-point group
(``tests/unit/test_configuration.py`` makes that package's metadata; the class lives here).
"""

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink


class LanguageSink(ModelSink):
    """The language of each learner's profile."""

    name = "profile_language"
    model = "user_profile"
    table = "profile_language"
    key = ("user_id",)
    columns = (col.Int32("user_id"), col.String("language"))
