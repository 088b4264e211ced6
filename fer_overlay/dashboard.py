"""The live terminal table: one row per student, coloured like the video overlay.

Display only: every number shown is already in the :class:`FrameResult`.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from types import TracebackType

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .attention import (add_attention_columns, attention_caption, attention_cell, attention_cells,
                        attention_rows, attention_title)
from .core import EMOTIONS, FrameResult, Student
from .draw import EMOTION_STYLES, tile_checks

BAR_WIDTH = 14

# Lines around the rows: title and caption, plus the full table's borders and header
# (top, header, rule, bottom) or the compact one's header and rule.
_FULL_EXTRA_LINES, _COMPACT_EXTRA_LINES = 6, 4
# A compact cell ("⚑ surprise 100%" or "⚑ surprise") and the padding and divider of its two columns.
_STATE_WIDTH, _BARE_STATE_WIDTH, _CELL_PADDING = 15, 10, 5


def natural_key(name: str) -> tuple:
    """Sort key for names and tile keys: numbers by value, letters case-insensitively.

    ``r1c1#2`` before ``r1c1#10``, ``r1c2`` before ``r1c10``, ``bob`` between ``Anna`` and ``Carl``;
    the name itself breaks the ties, so the order never depends on arrival.
    """
    parts = re.split(r"(\d+)", name)   # text, number, text, ...: like positions compare like types
    # Spaces next to a number do not count: "Student 2" and "Student10" sort as 2 and 10.
    return tuple(int(part) if i % 2 else part.casefold().strip() for i, part in enumerate(parts)), name


def _row_order(student: Student) -> tuple:
    """Gallery order (the table reads like the screen); several people in a tile, and students
    who left, in natural order."""
    tile = student.tile
    return ((tile.row, tile.col) if tile else (math.inf, math.inf), natural_key(student.id))


def format_duration(seconds: float) -> str:
    """Compact time in an emotion: ``45s``, ``1m12s``, ``1h03m``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def mix_bar(mix: tuple[float, ...], width: int = BAR_WIDTH) -> Text:
    """``width`` coloured blocks, each emotion getting cells in proportion to its share.

    Largest-remainder rounding keeps the bar exactly ``width`` cells long, so rows line up.
    """
    total = sum(mix)
    if total <= 0:
        return Text("·" * width, style="dim")
    exact = [width * share / total for share in mix]
    cells = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - cells[i], reverse=True)
    for i in by_remainder[: width - sum(cells)]:
        cells[i] += 1
    bar = Text()
    for emotion, n in zip(EMOTIONS, cells):
        bar.append("█" * n, style=EMOTION_STYLES[emotion])
    return bar


def _row(student: Student) -> tuple[Text | str, ...]:
    if student.status != "present" or student.emotion is None:
        status = Text(student.status.replace("_", " "), style="dim")   # no face, camera off, left
        return (student.id, "—", "", mix_bar(student.mix), "", status)
    return (
        student.id,
        Text(student.emotion, style=f"bold {EMOTION_STYLES[student.emotion]}"),
        f"{student.confidence:.0%}",
        mix_bar(student.mix),
        format_duration(student.since),
        Text("⚑ flagged", style="bold red") if student.flagged else "present",
    )


def _title(result: FrameResult) -> Text:
    mood = result.mood
    faces = f"{mood.faces}/{mood.tiles} faces" if mood.tiles else f"{mood.faces} faces"
    return Text.assemble(
        "Class mood  ",
        (f"positive {mood.positive:.0%}", EMOTION_STYLES["happy"]), "  ",
        (f"neutral {mood.neutral:.0%}", EMOTION_STYLES["neutral"]), "  ",
        (f"negative {mood.negative:.0%}", EMOTION_STYLES["angry"]), "  · ",
        faces, no_wrap=True, overflow="ellipsis",
    )


def _caption(result: FrameResult) -> Text:
    return Text(f"analysis {result.fps:.1f} fps · {result.dropped} dropped frames · frame {result.frame_index}",
                style="dim", no_wrap=True, overflow="ellipsis")


def _width(table: Table) -> int:
    """Columns ``table`` takes unwrapped (a console is made only to measure: nothing is written)."""
    console = Console(width=100_000, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum


def _full_table(students: list[Student]) -> Table:
    table = Table(expand=False)
    table.add_column("Student", no_wrap=True, overflow="ellipsis")
    table.add_column("Emotion", no_wrap=True)
    table.add_column("Conf.", justify="right", no_wrap=True)
    table.add_column("Last minute", no_wrap=True)
    table.add_column("For", justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    add_attention_columns(table, students)   # --signals both: head pose and presence beside the emotions
    for student in students:
        table.add_row(*_row(student), *attention_cells(student), style="dim" if student.status != "present" else None)
    return table


def _state(student: Student, confidence: bool) -> Text:
    """A compact cell: ``happy 87%`` in the emotion's colour, ``⚑`` when flagged, else the dim status."""
    if student.status != "present" or student.emotion is None:
        return Text(student.status.replace("_", " "), style="dim")
    text = Text("⚑ ", style="bold red") if student.flagged else Text()
    text.append(student.emotion + (f" {student.confidence:.0%}" if confidence else ""),
                style=f"bold {EMOTION_STYLES[student.emotion]}")
    return text


def _compact_table(students: list[Student], per_row: int, name_width: int, cell: Callable[[Student], Text]) -> Table:
    """Students side by side, ``per_row`` to a line, filled down then across like ``ls``; ``cell``
    gives each student's one state cell."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for _ in range(per_row):
        table.add_column("Student", no_wrap=True, overflow="ellipsis", max_width=name_width)
        table.add_column("Now", no_wrap=True, overflow="ellipsis")
    lines = math.ceil(len(students) / per_row)
    for line in range(lines):
        cells: list[Text | str] = []
        for student in students[line::lines]:
            cells += [Text(student.id, style="dim" if student.status != "present" else ""),
                      cell(student)]
        table.add_row(*cells)
    return table


def build_table(result: FrameResult, width: int | None = None, height: int | None = None) -> Group:
    """Render one analysed frame for the terminal (pure: no I/O, no state).

    Title (class mood), one row per student, caption (analysis rate, drops). Given the terminal's
    ``width`` and ``height``, everything fits in it: the full table if it can, else students side
    by side, two or more to a line, with fewer details, so no student and no status line is ever
    cut off the bottom of the screen.
    """
    emotions = result.signals.emotions   # --signals attention: no emotion anywhere
    students = sorted(result.students, key=_row_order)
    count = len(students)
    longest = max((cell_len(s.id) for s in students), default=7)   # Hangul and Han letters take two cells
    body = _full_table(students) if emotions else attention_rows(students)
    if (height is not None and count + _FULL_EXTRA_LINES > height) or (width is not None and _width(body) > width):
        rows = max(height - _COMPACT_EXTRA_LINES if height is not None else count, 1)
        per_row = max(math.ceil(count / rows), 1)
        width = width or 80
        for state_width, confidence in ((_STATE_WIDTH, True), (_BARE_STATE_WIDTH, False)):
            name_width = width // per_row - state_width - _CELL_PADDING
            if name_width >= min(longest, 12):
                break
        cell = (lambda student: _state(student, confidence)) if emotions else attention_cell
        body = _compact_table(students, per_row, max(min(longest, name_width), 3), cell)
    if not emotions:
        return Group(attention_title(result), body, attention_caption(result))
    return Group(_title(result), body, _caption(result))


def check_summary(result: FrameResult) -> str:
    """One line for ``fer-overlay check``: ``25 tiles (5x5), 17 faces, 19 names read; 6 camera off, 0 no face``.

    The grid is given as rows x the longest row, so a partly filled last row still reads as its layout.
    """
    checks = tile_checks(result)
    per_row: dict[int, int] = {}
    for check in checks:
        per_row[check.tile.row] = per_row.get(check.tile.row, 0) + 1
    grid = f" ({len(per_row)}x{max(per_row.values())})" if per_row else ""
    states = [check.state for check in checks]
    return (f"{len(checks)} tiles{grid}, {len(result.faces)} faces, "
            f"{sum(check.named for check in checks)} names read; "
            f"{states.count('camera_off')} camera off, {states.count('no_face')} no face")


class LiveTable:
    """Keeps the table on screen, redrawing only when :meth:`update` is called.

    ``with LiveTable() as live: live.update(result)``; pass a ``console`` to render
    elsewhere (tests record it).
    """

    def __init__(self, console: Console | None = None) -> None:
        self._live = Live(console=console, auto_refresh=False, transient=False, screen=False)

    def __enter__(self) -> "LiveTable":
        self._live.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.stop()
        if not self._live.console.is_terminal:
            # Rich ends the table with a newline only on a terminal; piped, the next line would join its last.
            self._live.console.line()

    def update(self, result: FrameResult) -> None:
        console = self._live.console
        # On a terminal the table must fit the screen; piped (a log) it is printed once, whole.
        height = console.height if console.is_terminal else None
        self._live.update(build_table(result, console.width, height), refresh=True)
