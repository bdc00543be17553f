"""
Progress of a long job, for people watching a terminal or reading a log.

On a terminal a bar is redrawn in place; anywhere else (``kubectl logs``, cron mail, CI) a plain line is
written now and then, since carriage returns make a mess of log files. Both show rows per second and the
time left. Nothing here knows about ClickHouse or sinks: a reporter counts units of work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO


class ProgressReporter(Protocol):
    """
    What a job calls as it works; ``done`` counts work finished before this run (a resumed job). ``unit``
    names what is counted; ``detail``, when given, adds a few words to every progress line (a second count).
    ``shows_total`` says whether ``total`` is shown at all: when it is not, a job need not count its work first.
    """

    shows_total: bool

    def start(
        self, label: str, total: int, done: int = 0, *, unit: str = "rows", detail: Callable[[], str] | None = None
    ) -> None: ...

    def advance(self, count: int) -> None: ...

    def finish(self) -> None: ...


class _Meter:
    """Counts units and measures their rate over this run only, so a resumed job's rate is not inflated."""

    shows_total = True

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.label = ""
        self.total = 0
        self.done = 0
        self._done_at_start = 0
        self._started = 0.0
        self.unit = "rows"
        self.detail: Callable[[], str] | None = None

    def start(
        self, label: str, total: int, done: int = 0, *, unit: str = "rows", detail: Callable[[], str] | None = None
    ) -> None:
        self.label, self.total, self.done, self._done_at_start = label, total, done, done
        self.unit, self.detail = unit, detail
        self._started = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self._started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return (self.done - self._done_at_start) / elapsed if elapsed > 0 else 0.0

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 1.0

    def amount(self, count: int) -> str:
        """``1,000`` rows (the unit a dump's lines leave unsaid), ``1,000 bytes`` of anything else."""
        return f"{count:,}" if self.unit == "rows" else f"{count:,} {self.unit}"

    def eta(self) -> str:
        rate = self.rate
        if not rate:
            return "?"
        return format_duration(max(self.total - self.done, 0) / rate)

    def describe(self, *, eta: bool = True) -> str:
        text = f"{self.done:,}/{self.amount(self.total)} ({self.fraction:.0%}), {self.rate:,.0f} {self.unit}/s, "
        if self.detail:
            text += f"{self.detail()}, "
        text += f"{format_duration(self.elapsed)} elapsed"
        return f"{text}, ETA {self.eta()}" if eta else text


class TerminalProgress(_Meter):
    """A bar redrawn in place, at most ten times a second."""

    WIDTH = 30
    REDRAW_SECONDS = 0.1

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.stream = stream
        self._drawn_at = float("-inf")

    def start(
        self, label: str, total: int, done: int = 0, *, unit: str = "rows", detail: Callable[[], str] | None = None
    ) -> None:
        super().start(label, total, done, unit=unit, detail=detail)
        self._draw()

    def advance(self, count: int) -> None:
        self.done += count
        if self.clock() - self._drawn_at >= self.REDRAW_SECONDS:
            self._draw()

    def finish(self) -> None:
        self._draw(eta=False)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, *, eta: bool = True) -> None:
        filled = round(self.fraction * self.WIDTH)
        bar = "█" * filled + "·" * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} |{bar}| {self.describe(eta=eta)}\x1b[K")
        self.stream.flush()
        self._drawn_at = self.clock()


class LogProgress(_Meter):
    """A line every ``interval`` seconds and at every tenth of the way, and one at the end."""

    def __init__(self, stream: TextIO, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.stream = stream
        self.interval = interval
        self._logged_at = 0.0
        self._next_tenth = 1

    def start(
        self, label: str, total: int, done: int = 0, *, unit: str = "rows", detail: Callable[[], str] | None = None
    ) -> None:
        super().start(label, total, done, unit=unit, detail=detail)
        self._logged_at = self.clock()
        self._next_tenth = int(self.fraction * 10) + 1
        self._write(f"{label}: {self.amount(total)} to go" + (f", {done:,} done before" if done else ""))

    def advance(self, count: int) -> None:
        self.done += count
        tenth_reached = self.fraction * 10 >= self._next_tenth and self.done < self.total
        if tenth_reached or self.clock() - self._logged_at >= self.interval:
            self._next_tenth = int(self.fraction * 10) + 1
            self._write(f"{self.label}: {self.describe()}")

    def finish(self) -> None:
        self._write(f"{self.label}: finished, {self.describe(eta=False)}")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._logged_at = self.clock()


class SilentProgress:
    """``--no-progress``."""

    shows_total = False

    def start(
        self, label: str, total: int, done: int = 0, *, unit: str = "rows", detail: Callable[[], str] | None = None
    ) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass


def progress_reporter(stream: TextIO, *, enabled: bool = True) -> ProgressReporter:
    """A bar on a terminal, log lines elsewhere, nothing when disabled."""
    if not enabled:
        return SilentProgress()
    isatty = getattr(stream, "isatty", None)
    return TerminalProgress(stream) if isatty and isatty() else LogProgress(stream)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``: short enough for a progress line."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass(frozen=True)
class SummaryColumn:
    """One column of a text table: its heading and how to show a value."""

    heading: str
    text: Callable[[object], str]
    align_right: bool = True


def format_table(columns: Sequence[SummaryColumn], rows: Sequence[object]) -> str:
    """A plain-text table, headings underlined, numbers aligned right."""
    cells = [[column.heading for column in columns]] + [[column.text(row) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if column.align_right else value.ljust(width)
            for column, value, width in zip(columns, values, widths)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(values) for values in cells[1:])])
