"""Django admin: operators see pending work and dead letters, and can replay dead letters."""

from django.contrib import admin

from aspects_sink.models import OutboxEntry


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin):
    """Outbox entries, filterable by sink and state, with a replay action for dead letters."""

    list_display = ("id", "sink", "object_id", "state", "attempts", "created", "available_at", "last_error")
    list_filter = ("state", "sink")
    search_fields = ("object_id", "last_error")
    actions = ("replay",)

    @admin.action(description="Replay the selected dead letters")
    def replay(self, request, queryset):
        from aspects_sink import outbox  # noqa: PLC0415

        count = outbox.replay_dead_letters(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} dead letters queued again.")
