"""The live terminal table: one row per student, coloured like the video overlay.

Display only: every number shown is already in the :class:`FrameResult`.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .core import EMOTIONS, FrameResult, Student
from .draw import EMOTION_STYLES, tile_checks

BAR_WIDTH = 14


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


def build_table(result: FrameResult) -> Table:
    """Render one analysed frame as a Rich table (pure: no I/O, no state)."""
    mood = result.mood
    faces = f"{mood.faces}/{mood.tiles} faces" if mood.tiles else f"{mood.faces} faces"
    title = Text.assemble(
        "Class mood  ",
        (f"positive {mood.positive:.0%}", EMOTION_STYLES["happy"]), "  ",
        (f"neutral {mood.neutral:.0%}", EMOTION_STYLES["neutral"]), "  ",
        (f"negative {mood.negative:.0%}", EMOTION_STYLES["angry"]), "  · ",
        faces,
    )
    table = Table(
        title=title,
        caption=f"analysis {result.fps:.1f} fps · {result.dropped} dropped frames · frame {result.frame_index}",
        caption_style="dim",
        expand=False,
    )
    table.add_column("Student")
    table.add_column("Emotion")
    table.add_column("Conf.", justify="right")
    table.add_column("Last minute", no_wrap=True)
    table.add_column("For", justify="right")
    table.add_column("Status")
    for student in result.students:
        table.add_row(*_row(student), style="dim" if student.status != "present" else None)
    return table


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
        self._live.update(build_table(result), refresh=True)
