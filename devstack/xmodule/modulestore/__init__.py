"""The stand-in modulestore: published course structures, shared by every process through the database."""


class ModuleStoreEnum:
    """The constants of edx-platform's ModuleStoreEnum that callers of the stand-in store pass."""

    class RevisionOption:
        published_only = "rev-opt-published-only"
        draft_only = "rev-opt-draft-only"
        draft_preferred = "rev-opt-draft-preferred"
        all = "rev-opt-all"
