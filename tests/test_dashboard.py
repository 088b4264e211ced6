"""The Rich table: rows, colours and numbers as a teacher reads them."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from fer_overlay.core import EMOTIONS, Attention, Box, Face, FrameResult, Signals, Student, Tile
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


def class_of(count: int) -> FrameResult:
    """A 5-wide gallery of ``count`` named students: every state, every emotion, one flagged."""
    from fer_overlay.demo import NAMES
    tiles = tuple(Tile(i // 5, i % 5, Box(i % 5 * 100, i // 5 * 100, 100, 100)) for i in range(count))
    students = []
    for i, tile in enumerate(tiles):
        name = NAMES[i] if i < len(NAMES) else f"Student {i + 1}"
        if i % 6 == 2:
            students.append(Student(name, tile, "camera_off" if i % 4 else "no_face"))
            continue
        emotion = EMOTIONS[i % len(EMOTIONS)]
        students.append(Student(name, tile, "present", emotion, 0.5 + i / 100, onehot(emotion, 0.6), 5.0 * i,
                                onehot(emotion, 0.6), flagged=i == 7))
    return FrameResult(300, 75.0, (500, 100 * (count // 5 + 1)), tiles, (), tuple(students), fps=3.9, dropped=41)


@pytest.mark.parametrize("count, size", [(25, (80, 24)), (50, (80, 24)), (25, (120, 30)), (12, (60, 20))])
def test_every_student_and_the_status_line_fit_a_small_terminal(count: int, size: tuple[int, int]) -> None:
    """The demo's 25 students at 80x24 lost 6 rows and the fps line off the bottom of the screen."""
    width, height = size
    result = class_of(count)
    console = Console(record=True, width=width, height=height, file=io.StringIO())
    console.print(build_table(result, width, height))
    lines = console.export_text().splitlines()
    assert len(lines) <= height and max(map(len, lines)) <= width
    text = "\n".join(lines)
    assert [s.id for s in result.students if s.id not in text] == []       # every name, whole
    assert lines[-1].startswith("analysis 3.9 fps · 41 dropped frames")    # the status line, last
    assert lines[0].startswith("Class mood")
    assert "⚑" in text and text.count("camera off") == sum(s.status == "camera_off" for s in result.students)


@pytest.mark.parametrize("count", [25, 50])
def test_an_attention_only_table_fits_80x24_too(count: int) -> None:
    """``--signals attention`` has its own table; it must fit a small terminal as the emotion one does,
    and still name no emotion."""
    states = ("looking", "away", "no_face", "camera_off")
    result = class_of(count)
    students = tuple(dataclasses.replace(s, emotion=None, confidence=0.0, probabilities=None, mix=(),
                                         attention=Attention(states[i % 4], flagged=i == 1))
                     for i, s in enumerate(result.students))
    result = dataclasses.replace(result, students=students, signals=Signals.ATTENTION)
    console = Console(record=True, width=80, height=24, file=io.StringIO())
    console.print(build_table(result, 80, 24))
    lines = console.export_text().splitlines()
    text = "\n".join(lines)
    assert len(lines) <= 24 and max(map(len, lines)) <= 80
    assert [s.id for s in students if s.id not in text] == [] and "⚑ away" in text
    assert lines[0].startswith("Class attention") and lines[-1].startswith("analysis 3.9 fps · 41 dropped frames")
    assert not [e for e in EMOTIONS if e in text.lower()]


def test_full_table_where_it_fits_and_in_a_log() -> None:
    result = class_of(25)
    for size in ((160, 40), (None, None)):   # a big terminal; piped output has no height
        console = Console(record=True, width=160, file=io.StringIO())
        console.print(build_table(result, *size))
        text = console.export_text()
        shown_present = sum(s.status == "present" and not s.flagged for s in result.students)
        assert "Last minute" in text and text.count("present") == shown_present == 20


def test_live_table_fits_the_terminal_it_draws_on() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, height=24, force_terminal=True, color_system=None)
    result = class_of(25)
    with LiveTable(console=console) as live:
        live.update(result)
    drawn = out.getvalue()
    assert "Last minute" not in drawn and all(s.id in drawn for s in result.students) and "3.9 fps" in drawn


def test_rows_sort_naturally_in_gallery_order() -> None:
    import dataclasses
    from fer_overlay.dashboard import natural_key
    assert sorted(["r1c1#10", "r1c1#2", "r1c10", "r1c2", "bob", "Anna", "carl", "Bob"], key=natural_key) == \
        ["Anna", "Bob", "bob", "carl", "r1c1#2", "r1c1#10", "r1c2", "r1c10"]
    assert sorted(["Student 3", "Student2", "student 10", "Student 1"], key=natural_key) == \
        ["Student 1", "Student2", "Student 3", "student 10"]
    tile = Tile(0, 0, Box(0, 0, 100, 100))
    people = [Student(f"r1c1#{n}", tile, "no_face") for n in (10, 2, 1)]   # three people in one tile
    gone = [Student(name, None, "left") for name in ("zoe", "Adam")]
    result = dataclasses.replace(sample_result(), students=(*gone, *people, *sample_result().students[1:]))
    text, _ = render(result)
    order = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2]
    assert order == ["r1c1#1", "r1c1#2", "r1c1#10", "r1c2", "r1c3", "Adam", "zoe"]


@pytest.mark.parametrize("size", [(80, None), (80, 24)])
def test_names_in_a_two_cell_script_are_shown_whole(size: tuple[int, int | None]) -> None:
    """Hangul takes two cells a letter: a width counted in letters cut "(초급) 강미숙" to "(초급) 강…",
    and five students read alike in ``fer-overlay check``."""
    given, family = "미숙경화영란", "강김박이전한"
    names = [f"(초급) {family[i % 6]}{given[i // 6 % 6]}{given[(i + 2) % 6]}" for i in range(25)]
    result = class_of(25)
    result = dataclasses.replace(result, students=tuple(dataclasses.replace(s, id=name)
                                                        for s, name in zip(result.students, names)))
    console = Console(record=True, width=size[0], height=size[1] or 25, file=io.StringIO())
    console.print(build_table(result, *size))
    text = console.export_text()
    assert [name for name in names if name not in text] == []
