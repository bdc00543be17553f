"""``event_sink.user_profile``: a learner's profile, with username and email from their User."""

from aspects_sink.sinks import columns as col
from aspects_sink.sinks.base import ModelSink


class UserProfileSink(ModelSink):
    """One row per profile; re-sent when the profile or its user's username or email changes."""

    name = "user_profile"
    model = "user_profile"
    table = "user_profile"
    lookup = "user_id"
    saved_models = ("user_profile",)
    user_id_column = "user_id"
    pii = True
    order = 20
    description = "Learner profiles (personal data; sent only when ASPECTS_ENABLE_PII is on)"
    key = ("id",)
    columns = (
        col.Int32("id"),
        col.Int32("user_id"),
        col.String("name", pii=True),
        col.String("username", "user__username", pii=True),
        col.String("email", "user__email", pii=True),
        col.String("meta", pii=True),
        col.String("courseware"),
        col.String("language"),
        col.String("location", pii=True),
        col.String("year_of_birth"),
        col.String("gender"),
        col.String("level_of_education"),
        col.String("mailing_address", pii=True),
        col.String("city", pii=True),
        col.String("country"),
        col.String("state"),
        col.String("goals", pii=True),
        col.String("bio", pii=True),
        col.IsoDateTimeString("profile_image_uploaded_at"),
        col.String("phone_number", pii=True),
    )
