"""
The stored form of a published course: one JSON document per course.

Blocks are a flat list in tree order, each ``[block_type, block_id, display_name, child_indexes, fields]``;
the course block comes first and detached blocks (about, course_info, static_tab) follow the tree, reachable
from no parent. One document means one row to read, which keeps a 10,000-block course fast to load and lets
every process (LMS, CMS, workers) see the same published version.
"""

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from opaque_keys.edx.keys import CourseKey

from xmodule.modulestore.block_spec import BlockSpec
from xmodule.modulestore.published_block import PublishedBlock

FORMAT_VERSION = 1
_DATETIME_TAG = "$datetime"


def encode(course_block: BlockSpec, detached_blocks: Iterable[BlockSpec], published_on: datetime) -> str:
    """The document for a course tree plus its detached blocks; raises ValueError on a repeated block."""
    entries: list[list[Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(root: BlockSpec) -> None:
        """Append a tree in depth-first order, without recursion: a course may nest deeper than Python's stack."""
        waiting: list[tuple[BlockSpec, list[Any] | None]] = [(root, None)]
        while waiting:
            spec, parent = waiting.pop()
            identity = (spec.block_type, spec.block_id)
            if identity in seen:
                raise ValueError(f"Block {spec.block_type}/{spec.block_id} appears twice in the course")
            seen.add(identity)
            if parent is not None:
                parent[3].append(len(entries))
            entry = [spec.block_type, spec.block_id, spec.display_name, [], spec.fields]
            entries.append(entry)
            waiting.extend((child, entry) for child in reversed(spec.children))

    add(course_block)
    for spec in detached_blocks:
        add(spec)
    document = {"format": FORMAT_VERSION, "published_on": published_on, "blocks": entries}
    return json.dumps(document, default=_encode_datetime, separators=(",", ":"))


def decode(course_key: CourseKey, text: str) -> tuple[PublishedBlock, list[PublishedBlock]]:
    """The course block (with its tree linked) and every block in stored order, detached ones included."""
    document = json.loads(text, object_hook=_decode_datetime)
    published_on = document["published_on"]
    blocks = [
        PublishedBlock(
            course_key=course_key,
            block_type=block_type,
            block_id=block_id,
            display_name=display_name,
            fields=fields,
            published_on=published_on,
        )
        for block_type, block_id, display_name, _, fields in document["blocks"]
    ]
    for block, (_, _, _, child_indexes, _) in zip(blocks, document["blocks"]):
        for index in child_indexes:
            block.adopt(blocks[index])
    return blocks[0], blocks


def _encode_datetime(value: Any) -> dict[str, str]:
    if isinstance(value, datetime):
        return {_DATETIME_TAG: value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_datetime(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _DATETIME_TAG in obj:
        return datetime.fromisoformat(obj[_DATETIME_TAG])
    return obj
