"""The admin's pages stay cheap for the LMS database while a backlog of millions of entries waits."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from aspects_sink.admin import ReasonFilter
from aspects_sink.models import LeasedEntry, OutboxEntry


@pytest.mark.django_db
def test_the_reasons_offered_are_those_of_dead_letters_read_once_each():
    """Reasons are read by the database, distinct, from dead letters only: not every pending entry's error."""
    OutboxEntry.objects.bulk_create(
        OutboxEntry(sink="user_profile", object_id=str(i), last_error="ClickHouseUnavailable: refused")
        for i in range(5)
    )
    OutboxEntry.objects.bulk_create(
        OutboxEntry(sink="user_profile", object_id=str(i), state=LeasedEntry.DEAD, last_error="ClickHouseRejected: x")
        for i in range(5, 8)
    )
    model_admin = admin.site._registry[OutboxEntry]
    request = RequestFactory().get("/admin/aspects_sink/outboxentry/")
    request.user = None
    with CaptureQueriesContext(connection) as queries:
        offered = ReasonFilter(request, {}, OutboxEntry, model_admin).lookup_choices
    assert offered == [("ClickHouseRejected", "ClickHouseRejected")]
    (query,) = [each["sql"] for each in queries]
    assert "DISTINCT" in query.upper()
