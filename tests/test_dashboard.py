"""The Rich table: rows, colours and numbers as a teacher reads them."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from fer_overlay.core import EMOTIONS, Box, Face, FrameResult, Student, Tile
from fer_overlay.dashboard import BAR_WIDTH, LiveTable, build_table, format_duration, mix_bar
from fer_overlay.draw import EMOTION_STYLES

LANDMARKS = ((0.0, 0.0),) * 5


def onehot(emotion: str, p: float) -> tuple[float, ...]:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return tuple(p if e == emotion else rest for e in EMOTIONS)


def sample_result() -> FrameResult:
    tiles = tuple(Tile(0, c, Box(c * 100, 0, 100, 100)) for c in range(3))
    happy, sad = onehot("happy", 0.87), onehot("sad", 0.6)
    faces = (
        Face(Box(10, 10, 40, 40), LANDMARKS, 0.9, tiles[0], "r1c1", happy, happy),
        Face(Box(110, 10, 40, 40), LANDMARKS, 0.9, tiles[1], "r1c2", sad, sad),
    )
    mix = (0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5)
    students = (
        Student("r1c1", tiles[0], "present", "happy", 0.87, happy, 72.0, mix),
        Student("r1c2", tiles[1], "present", "sad", 0.6, sad, 5.0, mix),
        Student("r1c3", tiles[2], "no_face"),
    )
    return FrameResult(120, 30.0, (300, 100), tiles, faces, students, fps=4.2, dropped=17)


def render(result: FrameResult) -> tuple[str, str]:
    console = Console(record=True, width=120, color_system="truecolor", file=io.StringIO())
    console.print(build_table(result))
    return console.export_text(styles=False, clear=False), console.export_text(styles=True)


def test_one_row_per_student_with_emotion_confidence_and_time() -> None:
    text, _ = render(sample_result())
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 2}
    assert list(rows) == ["r1c1", "r1c2", "r1c3"]   # body rows, in student order
    assert "happy" in rows["r1c1"] and "87%" in rows["r1c1"] and "1m12s" in rows["r1c1"]
    assert "sad" in rows["r1c2"] and "60%" in rows["r1c2"] and "5s" in rows["r1c2"]
    assert "no face" in rows["r1c3"] and "%" not in rows["r1c3"]


def test_title_and_caption_carry_class_mood_fps_and_drops() -> None:
    text, _ = render(sample_result())
    assert "positive 50%" in text and "neutral 0%" in text and "negative 50%" in text
    assert "2/3 faces" in text
    assert "4.2 fps" in text and "17 dropped" in text


def test_emotions_are_drawn_in_the_overlay_colours() -> None:
    _, styled = render(sample_result())
    r, g, b = (int(EMOTION_STYLES["happy"][i:i + 2], 16) for i in (1, 3, 5))
    assert f"38;2;{r};{g};{b}m" in styled   # truecolor escape of the happy colour
    assert "\x1b[2m" in styled               # the no-face row is dimmed


def test_mix_bar_is_proportional_and_fixed_width() -> None:
    bar = mix_bar((0.0, 0.0, 0.0, 0.5, 0.25, 0.0, 0.25))
    assert bar.plain == "█" * BAR_WIDTH
    spans = [(bar.plain[s.start:s.end], str(s.style)) for s in bar.spans]
    assert spans == [("█" * 7, EMOTION_STYLES["happy"]), ("█" * 4, EMOTION_STYLES["sad"]),
                     ("█" * 3, EMOTION_STYLES["neutral"])]
    assert len(mix_bar((1 / 3,) * 3 + (0.0,) * 4).plain) == BAR_WIDTH
    assert mix_bar(()).plain == "·" * BAR_WIDTH


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45.9, "45s"), (72, "1m12s"), (3725, "1h02m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_live_table_renders_on_update() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True)
    result = sample_result()
    with LiveTable(console=console) as live:
        live.update(result)
        first = out.getvalue()
        assert "r1c1" in first and "happy" in first
        live.update(FrameResult(121, 30.2, result.size, result.tiles, (), result.students[2:]))
    assert "0/3 faces" in out.getvalue()


def test_flagged_student_is_highlighted() -> None:
    import dataclasses
    result = sample_result()
    students = list(result.students)
    students[0] = dataclasses.replace(students[0], flagged=True)
    text, _ = render(dataclasses.replace(result, students=tuple(students)))
    flagged_lines = [line for line in text.splitlines() if "flagged" in line]
    assert len(flagged_lines) == 1 and students[0].id in flagged_lines[0]
