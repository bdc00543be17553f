"""One bad object never stops a backfill: it is named with its error, the others are dumped, the run ends."""

from __future__ import annotations

import pytest
from django.core.management import CommandError
from xmodule.modulestore.store import DevstackModuleStore

from aspects_sink.models import DumpCheckpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[RecursionError("maximum recursion depth exceeded"), KeyError("bad block")], ids=repr)
def failing_course(request, course, monkeypatch):
    """Five courses, the third of which the modulestore cannot load (a tree too deep, a broken block)."""
    keys = [course(number, blocks=4) for number in range(1, 6)]
    bad, failure = str(keys[2]), request.param
    load = DevstackModuleStore._load

    def failing_load(self, course_key):
        if str(course_key) == bad:
            raise failure
        return load(self, course_key)

    monkeypatch.setattr(DevstackModuleStore, "_load", failing_load)
    return bad, failure


def test_a_course_that_fails_to_serialize_is_reported_and_the_run_goes_on(
    backfill_clickhouse, dump, caplog, failing_course
):
    bad, failure = failing_course

    with pytest.raises(CommandError, match=r"some objects failed \(course_overviews 1\)"):
        dump("--object", "course_overviews", "--force")

    assert backfill_clickhouse.count("course_overviews", final=True) == 4
    assert bad in caplog.text and type(failure).__name__ in caplog.text
    assert DumpCheckpoint.objects.get(sink="course_overviews").state == DumpCheckpoint.DONE
    assert "already complete" in dump("--object", "course_overviews", "--resume")  # --resume does not stop on it
