"""
What the store returns: read-only blocks with the attributes callers of edx-platform's modulestore use.

Keys are built on first access only: a 10,000-block course then loads in a few tens of milliseconds, and
callers that read ``location`` pay for it once per block.
"""

from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from opaque_keys.edx.keys import CourseKey, UsageKey

# Container types report completion through their children (XBlockCompletionMode.AGGREGATOR).
AGGREGATOR_TYPES = frozenset({"course", "chapter", "sequential", "vertical"})


class ScopeIds(NamedTuple):
    """The identifiers XBlock keeps for a block (xblock.fields.ScopeIds)."""

    user_id: Any
    block_type: str
    def_id: Any
    usage_id: UsageKey


class PublishedBlock:
    """A block of a published course; its XBlock fields are attributes (``graded``, ``start``, ...)."""

    def __init__(
        self,
        *,
        course_key: CourseKey,
        block_type: str,
        block_id: str,
        display_name: str | None,
        fields: dict[str, Any],
        published_on: datetime,
    ):
        self.course_key = course_key
        self.block_type = block_type
        self.block_id = block_id
        self.display_name = display_name
        self.fields = fields
        self.published_on = published_on
        self._children: list[PublishedBlock] = []
        self._parent: PublishedBlock | None = None

    def __repr__(self):
        return f"<PublishedBlock {self.block_type}/{self.block_id}>"

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not regular attributes: the block's own XBlock fields.
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"{self.block_type} block {self.block_id!r} has no field {name!r}")

    @cached_property
    def location(self) -> UsageKey:
        return self.course_key.make_usage_key(self.block_type, self.block_id)

    @property
    def scope_ids(self) -> ScopeIds:
        return ScopeIds(user_id=None, block_type=self.block_type, def_id=self.location, usage_id=self.location)

    @property
    def display_name_with_default(self) -> str:
        """The display name, or the block id made readable, as edx-platform shows unnamed blocks."""
        if self.display_name is not None:
            return self.display_name
        return self.block_id.replace("_", " ")

    @property
    def graded(self) -> bool:
        return self.fields.get("graded", False)

    @property
    def completion_mode(self) -> str:
        default = "aggregator" if self.block_type in AGGREGATOR_TYPES else "completable"
        return self.fields.get("completion_mode", default)

    @property
    def edited_on(self) -> datetime:
        """When the block last changed: its own ``edited_on`` field, else when the course was published."""
        return self.fields.get("edited_on", self.published_on)

    @property
    def has_children(self) -> bool:
        return bool(self._children)

    @property
    def children(self) -> list[UsageKey]:
        return [child.location for child in self._children]

    def get_children(self) -> list["PublishedBlock"]:
        return list(self._children)

    def get_parent(self) -> "PublishedBlock | None":
        return self._parent

    def adopt(self, child: "PublishedBlock") -> None:
        """Link a child while the course is being loaded."""
        self._children.append(child)
        child._parent = self
