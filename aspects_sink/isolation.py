"""
Failure isolation: the one routine every path that sends objects uses to find the objects at fault in a
failed batch — the live drain, the xAPI statement queue (both through :mod:`aspects_sink.delivery`) and
the backfill (:mod:`aspects_sink.backfill.runner`).

A failure is one of three things, and only one of them is the data's fault:

* ClickHouse unavailable or misconfigured (:class:`~aspects_sink.transport.ClickHouseUnavailable`, which
  :class:`~aspects_sink.transport.ClickHouseMisconfigured` is a kind of): nothing is split, the batch stops
  and the caller waits or pauses;
* the LMS database failing (a deadlock, a lost connection: Django's ``DatabaseError``): not the objects'
  fault either; the batch stops and is tried again later;
* anything else — ClickHouse rejecting the rows, an object that cannot be serialized, the modulestore
  failing on one course, a ``RecursionError`` in a deep tree — is blamed on the objects: the group is split
  in halves until the objects at fault are alone. A sink that knows which objects it could not turn into
  rows (the xAPI drain, events ERB fails to transform) names them (:class:`ObjectsAtFault`): those are
  blamed at once and the others sent again, without splitting.

Splitting is bounded: at most ``Limits.sends`` sends and until ``Limits.deadline``; objects not isolated
by then are returned as undecided (the live drain tries them again in smaller batches). Writes that are
statements (retirement's mutations) are never split into a storm of mutations: their batch is one unit.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import DatabaseError

from aspects_sink.transport import ClickHouseUnavailable

Key = TypeVar("Key")


class ObjectsAtFault(Exception):
    """Raised by a send that knows which of its objects cannot be written, and why; the others can."""

    def __init__(self, errors: Mapping):
        super().__init__(f"{len(errors)} object(s) cannot be written: {next(iter(errors.values()), '')}")
        self.errors = dict(errors)


@dataclass(frozen=True)
class Limits:
    """How far one batch may be split: sends (inserts or statement groups) and a ``time.monotonic()`` deadline."""

    sends: int
    deadline: float = math.inf

    @classmethod
    def for_batch(cls, size: int, seconds: float = math.inf) -> Limits:
        """
        Enough sends to isolate a few bad objects in a batch of ``size`` (each costs about two per halving),
        and no more: a batch full of bad objects is left to later, smaller batches instead of 2N inserts now.
        """
        halvings = max(math.ceil(math.log2(size)), 1) if size > 1 else 1
        return cls(sends=1 + 8 * halvings, deadline=time.monotonic() + seconds)

    @classmethod
    def complete(cls, size: int) -> Limits:
        """Enough to isolate every object of the batch, whatever it holds (a backfill, run by an operator)."""
        return cls(sends=2 * max(size, 1))


@dataclass
class Isolation(Generic[Key]):
    """
    What became of a batch: groups ClickHouse took, objects (or unsplittable groups) blamed with their error,
    objects left undecided, the statements sent, and what stopped the batch if it was not the data's fault.
    """

    sent: list[list[Key]] = field(default_factory=list)
    rejected: list[tuple[list[Key], Exception]] = field(default_factory=list)
    undecided: list[Key] = field(default_factory=list)
    statements: int = 0
    sends: int = 0
    stopped_by: Exception | None = None

    @property
    def sent_keys(self) -> list[Key]:
        return [key for group in self.sent for key in group]


def not_the_datas_fault(error: BaseException) -> bool:
    """ClickHouse unavailable or misconfigured, or the LMS database failing: never split, never blamed on objects."""
    return isinstance(error, ClickHouseUnavailable | DatabaseError)


def isolate(
    keys: Sequence[Key],
    send: Callable[[Sequence[Key]], int],
    *,
    limits: Limits,
    splittable: bool = True,
) -> Isolation[Key]:
    """
    Send ``keys`` with ``send`` (which returns the statements it ran), splitting failed groups in halves until
    the objects at fault are alone, within ``limits``. Never raises what ``send`` raises (``BaseException``s
    such as KeyboardInterrupt aside): the outcome says it.
    """
    result: Isolation[Key] = Isolation()
    waiting: deque[list[Key]] = deque([list(keys)] if keys else [])
    while waiting:
        group = waiting.popleft()
        if result.sends and (result.sends >= limits.sends or time.monotonic() >= limits.deadline):
            result.undecided.extend(group)
            continue
        result.sends += 1
        try:
            result.statements += send(group)
        except Exception as error:
            if not_the_datas_fault(error):
                result.stopped_by = error
                result.undecided.extend(group)
                for rest in waiting:
                    result.undecided.extend(rest)
                break
            blamed = [key for key in group if key in error.errors] if isinstance(error, ObjectsAtFault) else []
            if blamed:
                result.rejected.extend(([key], error.errors[key]) for key in blamed)
                rest = [key for key in group if key not in error.errors]
                if rest:
                    waiting.appendleft(rest)
                continue
            if len(group) == 1 or not splittable:
                result.rejected.append((group, error))
                continue
            middle = len(group) // 2
            waiting.appendleft(group[middle:])
            waiting.appendleft(group[:middle])
        else:
            result.sent.append(group)
    return result
