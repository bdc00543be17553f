"""
Django admin: operators see pending work, dead letters and dead xAPI statements, replay or discard dead letters,
and read the plugin's status (the figures of ``aspects_sink_status``). Everything else is read-only: entries are
the drains' to change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from aspects_sink import outbox, status
from aspects_sink.models import DeadLetter, DeadXapiStatement, LeasedEntry, OutboxEntry, SinkHealth
from aspects_sink.progress import format_duration

log = logging.getLogger(__name__)


class ReasonFilter(admin.SimpleListFilter):
    """Dead letters by the kind of error that parked them (the exception named first in ``last_error``)."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        # Of dead letters only (the claim index leads with the state), distinct in the database: a page load must
        # not read the error of every pending entry of a backlog of millions.
        dead = model_admin.get_queryset(request).filter(state=LeasedEntry.DEAD)
        reasons = status.dead_letter_reasons(dead).order_by().values_list("reason", flat=True).distinct()
        return [(reason, reason) for reason in sorted(reasons)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return status.dead_letter_reasons(queryset).filter(reason=self.value())


class ReadOnlyAdmin(admin.ModelAdmin):
    """Entries are listed and inspected, never added or edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_replay_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def has_discard_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.delete_{self.opts.model_name}")

    def discard(self, request, queryset, describe):
        """Delete the selected dead letters, each logged first (what and why, no payload): nothing goes silently."""
        dead = queryset.filter(state=LeasedEntry.DEAD)
        for entry in dead:
            log.warning("aspects_sink: %s discarded a dead letter: %s", request.user.get_username(), describe(entry))
        count, _ = dead.delete()
        self.message_user(request, f"{count} dead letters discarded.")


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    """Every outbox entry, pending or dead, filterable by sink, state and reason."""

    list_display = ("id", "sink", "object_id", "state", "attempts", "created", "available_at", "last_error")
    list_filter = ("state", "sink", ReasonFilter)
    search_fields = ("object_id", "last_error")
    actions = ("replay",)

    @admin.action(description="Replay the selected dead letters", permissions=("replay",))
    def replay(self, request, queryset):
        count = outbox.replay_dead_letters(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} dead letters queued again.")


@admin.register(DeadLetter)
class DeadLetterAdmin(OutboxEntryAdmin):
    """Outbox entries parked after too many rejections: replay them once the cause is fixed, or discard them."""

    list_display = ("id", "sink", "object_id", "attempts", "created", "last_error")
    list_filter = ("sink", ReasonFilter)
    actions = ("replay", "discard_dead")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(state=LeasedEntry.DEAD)

    @admin.action(description="Discard the selected dead letters (logged)", permissions=("discard",))
    def discard_dead(self, request, queryset):
        self.discard(request, queryset, lambda e: f"{e.sink} {e.object_id} ({e.attempts} attempts): {e.last_error}")


@admin.register(DeadXapiStatement)
class DeadXapiStatementAdmin(ReadOnlyAdmin):
    """
    Tracking events ERB could not make a statement of, and statements ClickHouse kept rejecting: replay them
    once the cause is fixed, or discard them.
    """

    list_display = ("id", "event_name", "event_id", "emission_time", "attempts", "created", "last_error")
    list_filter = (ReasonFilter,)
    search_fields = ("event_name", "event_id", "last_error")
    actions = ("replay", "discard_dead")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(state=LeasedEntry.DEAD)

    @admin.action(description="Replay the selected statements", permissions=("replay",))
    def replay(self, request, queryset):
        count = outbox.queue("xapi_statements").replay(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} dead statements queued again.")

    @admin.action(description="Discard the selected statements (logged)", permissions=("discard",))
    def discard_dead(self, request, queryset):
        # The statement or event itself is never logged: it may hold personal data (username, IP address).
        self.discard(request, queryset, lambda e: f"id {e.id}, {e.event_name or e.event_id}: {e.last_error}")


@dataclass(frozen=True)
class QueueRow:
    """One line of the admin's status table: a queue's figures as the status command prints them."""

    queue: status.QueueStatus
    level: str
    oldest: str
    last_success: str
    last_error: str


def _ago(value) -> str:
    return f"{format_duration((timezone.now() - value).total_seconds())} ago" if value else "never"


@admin.register(SinkHealth)
class StatusAdmin(ReadOnlyAdmin):
    """The plugin's status page: the figures of ``aspects_sink_status``, in place of a list of SinkHealth rows."""

    def changelist_view(self, request, extra_context=None):
        found = status.collect()
        rows = [
            QueueRow(
                queue=queue,
                level=str(found.queue_level(queue.name)),
                oldest=format_duration(queue.oldest_pending_age_seconds)
                if queue.oldest_pending_age_seconds is not None
                else "-",
                last_success=_ago(queue.last_success_at),
                last_error=(
                    f"{queue.last_error.error_class} {_ago(queue.last_error.at)}: {queue.last_error.message}"
                    if queue.last_error
                    else "-"
                ),
            )
            for queue in found.queues
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Aspects sink status: {found.level.name}",
            "opts": self.opts,
            "found": found,
            "rows": rows,
            "sweep": _ago(found.sweep.last_run_at),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/aspects_sink/status.html", context)
