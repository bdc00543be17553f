"""What a caller publishes: a tree of block descriptions."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BlockSpec:
    """
    One block to publish. ``fields`` are XBlock settings (``graded``, ``start``, ``edited_on``, ...); their
    values must be JSON-serializable or datetimes.
    """

    block_type: str
    block_id: str
    display_name: str | None = None
    children: list["BlockSpec"] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
