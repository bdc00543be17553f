"""
Content tags on openedx-learning's real tagging models: the taxonomy, tag and object_tag sinks (saves and
deletes, live and backfilled), and the ``tags`` of courses and blocks in their JSON columns.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from openedx_tagging.core.tagging import api as tagging
from openedx_tagging.core.tagging.models import ObjectTag, Tag, Taxonomy
from openedx_tagging.core.tagging.models.system_defined import LanguageTaxonomy
from xmodule.modulestore.course_builder import create_course
from xmodule.modulestore.django import modulestore

from aspects_sink import delivery
from aspects_sink.models import OutboxEntry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def subjects():
    """A three-level taxonomy (Science > Physics > Optics) and a flat one, made through the tagging API."""
    subjects = tagging.create_taxonomy("Subjects", export_id="subjects")
    science = tagging.add_tag_to_taxonomy(subjects, "Science")
    physics = tagging.add_tag_to_taxonomy(subjects, "Physics", parent_tag_value="Science")
    optics = tagging.add_tag_to_taxonomy(subjects, "Optics", parent_tag_value="Physics", external_id="opt-1")
    levels = tagging.create_taxonomy("Levels", export_id="levels")
    easy = tagging.add_tag_to_taxonomy(levels, "Easy")
    return {"subjects": subjects, "levels": levels, "science": science, "physics": physics, "optics": optics,
            "easy": easy}  # fmt: skip


def drain_all(*sinks: str) -> None:
    for sink in sinks:
        delivery.drain(sink)


def rows(transport, sql: str) -> list[tuple]:
    return [tuple(row) for row in transport.rows(sql)]


def test_taxonomies_tags_and_object_tags_are_sent_with_their_lineage(embedded_clickhouse, subjects):
    course = create_course("TagX", "T1", "2026", blocks=20)
    tagging.tag_object(str(course), subjects["subjects"], ["Optics"])
    drain_all("taxonomy", "tag", "object_tag")

    assert rows(embedded_clickhouse, "SELECT id, name FROM event_sink.taxonomy FINAL ORDER BY id") == [
        (subjects["subjects"].id, "Subjects"),
        (subjects["levels"].id, "Levels"),
    ]
    optics = subjects["optics"]
    assert rows(
        embedded_clickhouse,
        f"SELECT taxonomy, parent, value, external_id, lineage FROM event_sink.tag FINAL WHERE id = {optics.id}",
    ) == [(subjects["subjects"].id, subjects["physics"].id, "Optics", "opt-1", '["Science", "Physics", "Optics"]')]
    object_tag = ObjectTag.objects.get(object_id=str(course))
    columns = "id, object_id, taxonomy, tag, _value, _export_id, lineage"
    assert rows(embedded_clickhouse, f"SELECT {columns} FROM event_sink.object_tag") == [
        (object_tag.id, str(course), subjects["subjects"].id, optics.id, "Optics", "subjects",
         '["Science", "Physics", "Optics"]')
    ]  # fmt: skip


def test_course_and_block_tags_list_the_tags_and_their_ancestors(embedded_clickhouse, subjects):
    course = create_course("TagX", "T2", "2026", blocks=20)
    problem = next(block for block in modulestore().get_items(course) if block.scope_ids.block_type == "problem")
    tagging.tag_object(str(course), subjects["subjects"], ["Physics"])
    tagging.tag_object(str(course), subjects["levels"], ["Easy"])
    tagging.tag_object(str(problem.location), subjects["subjects"], ["Optics"])
    drain_all("course_overviews")

    (course_data,) = embedded_clickhouse.rows("SELECT course_data_json FROM event_sink.course_overviews FINAL")
    expected = sorted([subjects["science"].id, subjects["physics"].id, subjects["easy"].id])
    assert json.loads(course_data[0])["tags"] == expected
    block_data = dict(embedded_clickhouse.rows("SELECT location, xblock_data_json FROM event_sink.course_blocks FINAL"))
    lineage = sorted([subjects["science"].id, subjects["physics"].id, subjects["optics"].id])
    assert json.loads(block_data[str(problem.location)])["tags"] == lineage
    assert {json.dumps(json.loads(data)["tags"]) for location, data in block_data.items() if location != str(
        problem.location)} == {"[]"}  # fmt: skip


def test_a_taxonomy_disabled_or_deleted_reaches_its_object_tags_and_courses(embedded_clickhouse, subjects, settings):
    """
    A course's tags are those of enabled taxonomies: disabling one re-sends its courses. Deleting one deletes its
    tags and sets its object tags' taxonomy and tag to NULL with plain UPDATEs, before any signal (Django's
    collector), so they are found by the taxonomy's export id, which they keep, and re-sent with their courses.
    """
    settings.ASPECTS_SINK_RETIREMENT_WAIT = True  # mutations done when the drain returns
    course = create_course("TagX", "T6", "2026", blocks=20)
    tagging.tag_object(str(course), subjects["subjects"], ["Optics"])
    tagging.tag_object(str(course), subjects["levels"], ["Easy"])
    sinks = ("taxonomy", "tag", "object_tag", "course_overviews")
    drain_all(*sinks)

    def course_tags() -> list[int]:
        (course_data,) = embedded_clickhouse.rows("SELECT course_data_json FROM event_sink.course_overviews FINAL")
        return json.loads(course_data[0])["tags"]

    subject_tags = sorted(subjects[name].id for name in ("science", "physics", "optics"))
    assert course_tags() == sorted([*subject_tags, subjects["easy"].id])
    subjects["levels"].enabled = False
    subjects["levels"].save()
    drain_all(*sinks)
    assert course_tags() == subject_tags

    subjects["subjects"].delete()
    drain_all(*sinks)
    assert course_tags() == []
    on_course = (
        "SELECT taxonomy, tag, _value, _export_id, lineage FROM event_sink.object_tag FINAL WHERE _value = 'Optics'"
    )
    assert rows(embedded_clickhouse, on_course) == [(0, 0, "Optics", "subjects", '["Optics"]')]


def test_a_taxonomy_saved_or_deleted_as_its_proxy_class_is_sent(embedded_clickhouse):
    """
    Django sends a proxy model's signals with the proxy as sender: openedx-learning's system taxonomies
    (``taxonomy.cast()``: LanguageTaxonomy...) and edx-platform's ``ContentObjectTag``, with which Studio's
    auto-tagging tags content. Those saves and deletes are followed as the concrete model's.
    """
    language = tagging.create_taxonomy("Languages", export_id="languages", taxonomy_class=LanguageTaxonomy)
    assert type(language) is LanguageTaxonomy
    assert ("taxonomy", str(language.id)) in set(OutboxEntry.objects.values_list("sink", "object_id"))
    OutboxEntry.objects.all().delete()

    language.name = "Language"
    language.save()
    assert set(OutboxEntry.objects.values_list("sink", "object_id")) >= {("taxonomy", str(language.id))}


def test_tagging_or_untagging_a_block_re_sends_its_course_and_deletes_the_object_tag_row(
    embedded_clickhouse, subjects, settings
):
    settings.ASPECTS_SINK_RETIREMENT_WAIT = True  # mutations done when the drain returns: no waiting here
    course = create_course("TagX", "T3", "2026", blocks=20)
    drain_all("course_overviews", "taxonomy", "tag")
    problem = next(block for block in modulestore().get_items(course) if block.scope_ids.block_type == "problem")
    tagging.tag_object(str(problem.location), subjects["levels"], ["Easy"])

    assert set(OutboxEntry.objects.values_list("sink", "object_id")) == {
        ("object_tag", str(ObjectTag.objects.get().id)),
        ("course_overviews", str(course)),
    }
    drain_all("object_tag", "course_overviews")
    tags = "JSONExtract(xblock_data_json, 'tags', 'Array(Int32)')"
    block_tags = f"SELECT {tags} FROM event_sink.course_blocks FINAL WHERE location = '{problem.location}'"
    assert rows(embedded_clickhouse, block_tags) == [([subjects["easy"].id],)]

    tagging.delete_object_tags(str(problem.location))
    drain_all("object_tag", "course_overviews")
    assert rows(embedded_clickhouse, "SELECT count() FROM event_sink.object_tag") == [(0,)]
    assert rows(embedded_clickhouse, block_tags) == [([],)]


def test_tag_sinks_are_backfilled(embedded_clickhouse, subjects):
    course = create_course("TagX", "T4", "2026", blocks=20)
    tagging.tag_object(str(course), subjects["subjects"], ["Optics"])
    OutboxEntry.objects.all().delete()  # history: only the backfill sends it

    call_command("dump_data_to_clickhouse", "--object", "taxonomy", "--no-progress", verbosity=0)
    call_command("dump_data_to_clickhouse", "--object", "tag", "--no-progress", verbosity=0)
    call_command("dump_data_to_clickhouse", "--object", "object_tag", "--no-progress", verbosity=0)

    counts = [
        embedded_clickhouse.rows(f"SELECT count() FROM event_sink.{table} FINAL")[0][0]
        for table in ("taxonomy", "tag", "object_tag")
    ]
    # The system taxonomies openedx-learning's migrations create are there too, unless an earlier test's flush
    # removed them: they are sent like any other.
    mine = [subjects["subjects"].id, subjects["levels"].id]
    system_taxonomies = Taxonomy.objects.exclude(id__in=mine).count()
    system_tags = Tag.objects.exclude(taxonomy_id__in=mine).count()
    assert counts == [2 + system_taxonomies, 4 + system_tags, 1]


def test_a_tag_renamed_or_deleted_reaches_every_row_that_shows_it(embedded_clickhouse, subjects, settings):
    """
    Renaming a tag changes the lineage of its subtags and of the object tags on them; deleting one leaves its
    object tags without a tag (openedx-learning sets it to NULL with one UPDATE, no save) and its course without
    it. Each is re-sent.
    """
    settings.ASPECTS_SINK_RETIREMENT_WAIT = True  # mutations done when the drain returns
    course = create_course("TagX", "T5", "2026", blocks=20)
    tagging.tag_object(str(course), subjects["subjects"], ["Optics"])
    sinks = ("taxonomy", "tag", "object_tag", "course_overviews")
    drain_all(*sinks)

    subjects["subjects"].update_tag("Physics", "Natural philosophy")
    drain_all(*sinks)
    lineage = '["Science", "Natural philosophy", "Optics"]'
    optics = subjects["optics"].id
    assert rows(embedded_clickhouse, f"SELECT lineage FROM event_sink.tag FINAL WHERE id = {optics}") == [(lineage,)]
    assert rows(embedded_clickhouse, "SELECT lineage FROM event_sink.object_tag FINAL") == [(lineage,)]

    subjects["subjects"].delete_tags(["Optics"])
    drain_all(*sinks)
    assert rows(embedded_clickhouse, "SELECT tag, _value, lineage FROM event_sink.object_tag FINAL") == [
        (0, "Optics", '["Optics"]')
    ]
    (course_data,) = embedded_clickhouse.rows("SELECT course_data_json FROM event_sink.course_overviews FINAL")
    assert json.loads(course_data[0])["tags"] == []
