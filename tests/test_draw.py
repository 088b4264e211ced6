"""Annotator modes: what each one may and may not change in the frame."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from fer_overlay.core import EMOTIONS, Box, Face, FrameResult, Student, Tile
from fer_overlay.dashboard import check_summary
from fer_overlay.draw import (EMOTION_COLORS, EMOTION_STYLES, STATE_COLORS, Annotator, _font_for, banner, banner_height,
                              tile_checks)

LANDMARKS = ((10.0, 10.0), (20.0, 10.0), (15.0, 15.0), (18.0, 20.0), (12.0, 20.0))


def probs(emotion: str, p: float = 0.87) -> tuple[float, ...]:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return tuple(p if e == emotion else rest for e in EMOTIONS)


def scene(width: int = 640, height: int = 360) -> tuple[np.ndarray, FrameResult]:
    """A noisy frame with a 2x2 gallery: three faces (happy, sad, angry) and one empty tile."""
    rng = np.random.default_rng(1)
    image = rng.integers(30, 220, (height, width, 3), dtype=np.uint8)
    tw, th = width // 2, height // 2
    tiles = tuple(Tile(r, c, Box(c * tw, r * th, tw, th)) for r in range(2) for c in range(2))
    faces = []
    for tile, emotion in zip(tiles, ("happy", "sad", "angry")):
        b = tile.box
        box = Box(b.x + b.w // 3, b.y + b.h // 3, b.w // 3, b.h // 2)
        p = probs(emotion)
        faces.append(Face(box, LANDMARKS, 0.95, tile, tile.key, p, p))
    return image, FrameResult(7, 1.5, (width, height), tiles, tuple(faces), fps=4.5)


def inside(image: np.ndarray, box: Box) -> np.ndarray:
    return image[box.y:box.y2, box.x:box.x2]


def detail(image: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Laplacian variance (sharpness) of ``image``, over the pixels in ``keep`` if given.

    Noise of one grey level (standard deviation 1) alone gives 20, the sum of the kernel's
    squares; a picture with no more than that has no edge left: no eye, mouth or letter.
    A sharp face tile measures hundreds to thousands.
    """
    gray = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    return float(gray[keep].var() if keep is not None else gray.var())


def drawn(annotator: Annotator, shape: tuple[int, ...], result: FrameResult | None) -> np.ndarray:
    """Mask of the pixels ``annotator`` draws on (boxes, labels, notes), grown by the Laplacian's reach.

    Drawing on a black and on a white frame: a pixel that is not black, or not white, was drawn.
    """
    black, white = np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)
    mask = (annotator.annotate(black, result) != 0).any(axis=2) | (annotator.annotate(white, result) != 255).any(axis=2)
    return cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


NOISE = 20.0   # Laplacian variance of one grey level of noise (see ``detail``)


def test_palette_covers_every_emotion_and_rich_styles_match() -> None:
    assert set(EMOTION_COLORS) == set(EMOTIONS) == set(EMOTION_STYLES)
    b, g, r = EMOTION_COLORS["sad"]
    assert EMOTION_STYLES["sad"] == f"#{r:02x}{g:02x}{b:02x}"


@pytest.mark.parametrize("mode", ["full", "aggregate", "blur", "check"])
def test_input_is_not_mutated(mode: str) -> None:
    image, result = scene()
    original = image.copy()
    annotator = Annotator(mode, show_tiles=True)
    out = annotator.annotate(image, result)
    assert np.array_equal(image, original)
    assert out.dtype == np.uint8 and out is not image
    assert out.shape == (360 + banner_height(360), 640, 3) and annotator.output_size((640, 360)) == (640, out.shape[0])
    assert Annotator(mode, banner=False).annotate(image, result).shape == image.shape


@pytest.mark.parametrize("mode", ["full", "aggregate", "blur", "check"])
def test_the_banner_is_a_strip_above_the_frame_and_covers_no_tile(mode: str) -> None:
    """Issue 11 item 16: the top row's tiles and labels read the same with the banner as without it."""
    image, result = scene()
    strip = banner_height(360)
    out = Annotator(mode).annotate(image, result)
    assert np.array_equal(out[strip:], Annotator(mode, banner=False).annotate(image, result))
    text = np.any(out[:strip] > 60, axis=2)
    assert text.mean() > 0.02 and text[:, :2].sum() == 0   # the class-mood text, inside the strip
    if mode == "aggregate":   # not one pixel of the frame changed, the top row of tiles included
        assert np.array_equal(out[strip:], image)


def test_aggregate_is_the_default_mode() -> None:
    assert Annotator().mode == "aggregate"


def test_full_draws_emotion_coloured_box_border_and_label() -> None:
    image, result = scene()
    out = Annotator("full", banner=False).annotate(image, result)
    for face in result.faces:
        color = EMOTION_COLORS[face.emotion[0]]
        b = face.box
        border = np.concatenate([out[b.y2 - 1, b.x:b.x2], out[b.y:b.y2, b.x], out[b.y:b.y2, b.x2 - 1]])
        assert np.mean(np.all(border == color, axis=1)) > 0.95
        # the label box above the face is filled with the same colour
        above = out[max(b.y - 12, 0):b.y, b.x:b.x + 20]
        assert np.mean(np.all(above == color, axis=2)) > 0.3


def test_full_marks_the_tile_without_a_face() -> None:
    image, result = scene()
    empty = result.tiles[3]
    full = Annotator("full", banner=False).annotate(image, result)
    aggregate = Annotator("aggregate", banner=False).annotate(image, result)
    assert not np.array_equal(inside(full, empty.box), inside(image, empty.box))
    assert np.array_equal(aggregate, image)
    off = dataclasses.replace(result, students=(Student(empty.key, empty, "camera_off"),))
    marked = Annotator("full", banner=False).annotate(image, off)
    note = inside(marked, empty.box) != inside(full, empty.box)     # "camera off", not "no face"
    assert note.any() and np.array_equal(marked[:empty.box.y], full[:empty.box.y])


def test_blur_destroys_face_detail_and_keeps_labels() -> None:
    image, result = scene()
    out = Annotator("blur", banner=False).annotate(image, result)
    for face in result.faces:
        core = Box(face.box.x + 4, face.box.y + 4, face.box.w - 8, face.box.h - 8)   # inside the border
        before, after = inside(image, core).astype(float), inside(out, core).astype(float)
        assert not np.array_equal(before, after)
        assert after.var() < before.var() * 0.05
        color = EMOTION_COLORS[face.emotion[0]]
        assert np.all(out[face.box.y2 - 1, face.box.x + 5] == color)


@pytest.mark.parametrize("found", ["every face", "no face", "no tile", "no analysis yet"])
def test_blur_leaves_no_detail_anywhere_whatever_the_detector_found(found: str) -> None:
    """Issue 11 item 1: a face the detector missed (or a tile the grid missed) is hidden all the same.

    Every tile is pixelated on its own, and so is everything outside the tiles; only the
    drawn boxes, labels and notes are sharp.
    """
    image, result = scene()
    result = {"every face": result, "no face": dataclasses.replace(result, faces=()),
              "no tile": dataclasses.replace(result, tiles=(), faces=()), "no analysis yet": None}[found]
    annotator = Annotator("blur", banner=False)
    out = annotator.annotate(image, result)
    clear = ~drawn(annotator, image.shape, result)
    assert detail(image) > 1000
    for tile in scene()[1].tiles:
        b = tile.box
        assert detail(inside(out, b), inside(clear, b)) < NOISE, tile.key
    assert detail(out, clear) < NOISE


@pytest.mark.parametrize("size", [(1920, 1080), (640, 360)])
def test_banner_scales_with_height_and_fits_the_width(size: tuple[int, int]) -> None:
    width, height = size
    _, result = scene(width, height)
    strip = banner(result, width, height)
    assert strip.shape == (banner_height(height), width, 3)
    assert 0.06 * height <= strip.shape[0] <= 0.15 * height
    text = np.any(strip > 40, axis=2)   # brighter than the dark background
    columns = np.flatnonzero(text.any(axis=0))
    assert columns.min() > 0 and columns.max() < width - 2   # nothing cut off at the edges
    assert columns.max() > width * 0.4   # but it uses the width
    assert banner(result, width // 2, height).shape[0] == strip.shape[0]   # a narrower frame: same strip height
    assert banner(None, width, height).shape == strip.shape   # before the first analysis too


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        Annotator("faces")  # type: ignore[arg-type]


def checked_scene() -> tuple[np.ndarray, FrameResult]:
    """The 2x2 scene with names on two tiles, a second face in r1c1 and r2c2 camera-off."""
    image, result = scene(1280, 720)
    t = result.tiles
    extra = dataclasses.replace(result.faces[0], box=Box(t[0].box.x + 20, t[0].box.y + 200, 60, 80), student="r1c1#2")
    students = (Student("Ana Lima", t[0], "present", "happy"), Student("r1c1#2", t[0], "present", "happy"),
                Student("r1c2", t[1], "present", "sad"), Student("Ben Okafor", t[2], "present", "angry"),
                Student("r2c2", t[3], "camera_off"))
    faces = tuple(dataclasses.replace(f, student=s) for f, s in zip(result.faces, ("Ana Lima", "r1c2", "Ben Okafor")))
    return image, dataclasses.replace(result, faces=faces + (extra,), students=students)


def test_tile_checks_name_each_tile_once_with_its_state() -> None:
    _, result = checked_scene()
    assert [(c.tile.key, c.label, c.state, c.named) for c in tile_checks(result)] == [
        ("r1c1", "Ana Lima", "present", True), ("r1c2", "r1c2", "present", False),
        ("r2c1", "Ben Okafor", "present", True), ("r2c2", "r2c2", "camera_off", False)]
    assert check_summary(result) == "4 tiles (2x2), 4 faces, 2 names read; 1 camera off, 0 no face"
    no_rows = dataclasses.replace(result, students=())   # e.g. aggregate-only: faces still mark tiles present
    assert [c.state for c in tile_checks(no_rows)] == ["present", "present", "present", "no_face"]


def test_check_outlines_every_tile_in_its_state_colour_and_draws_faces_as_full() -> None:
    image, result = checked_scene()
    out = Annotator("check", banner=False).annotate(image, result)
    full = Annotator("full", banner=False).annotate(image, result)
    for check in tile_checks(result):
        b = check.tile.box
        right = out[b.y + b.h // 4:b.y + 3 * b.h // 4, b.x2 - 1]
        assert np.all(right == STATE_COLORS[check.state])
    for face in result.faces:   # face boxes as in full mode
        b = face.box
        assert np.array_equal(out[b.y2 - 1, b.x:b.x2], full[b.y2 - 1, b.x:b.x2])
    # no banner: the tiles' bottom halves are untouched apart from outlines and face boxes
    assert np.array_equal(out[400:700, 700:1200], image[400:700, 700:1200])


def test_a_name_no_font_can_draw_falls_back_to_the_tile_key() -> None:
    image, result = checked_scene()
    korean = dataclasses.replace(result, students=(Student("김민수", result.tiles[0], "present"),) + result.students[1:])
    if _font_for("김민수", 20) is not None:
        pytest.skip("this computer has a Korean font: the name itself is drawn")
    out = Annotator("check", banner=False).annotate(image, korean)
    latin = dataclasses.replace(korean, students=(Student("r1c1 (name in table)", result.tiles[0], "present"),)
                                + result.students[1:])
    assert np.array_equal(out, Annotator("check", banner=False).annotate(image, latin))


def test_a_name_a_font_can_draw_is_drawn_as_it_is() -> None:
    image, result = checked_scene()
    korean = dataclasses.replace(result, students=(Student("김민수", result.tiles[0], "present"),) + result.students[1:])
    if _font_for("김민수", 20) is None:
        pytest.skip("no Korean font here (apt install fonts-noto-cjk): the tile key is drawn instead")
    out = Annotator("check", banner=False).annotate(image, korean)
    fallback = dataclasses.replace(korean, students=(Student("r1c1 (name in table)", result.tiles[0], "present"),)
                                   + result.students[1:])
    header = result.tiles[0].box
    rows = slice(header.y, header.y + header.h // 6)
    assert not np.array_equal(out[rows, header.x:header.x2],
                              Annotator("check", banner=False).annotate(image, fallback)[rows, header.x:header.x2])


def test_in_check_a_face_label_near_the_tile_top_stays_below_the_header() -> None:
    """The tile's header is drawn last (who is in a tile must show); a face just under it keeps
    its label in sight, inside the top of its box, instead of under the header."""
    from fer_overlay.draw import EMOTION_COLORS, _header_height
    image, result = checked_scene()
    tile = result.tiles[2]
    face = next(f for f in result.faces if f.tile == tile)
    high = dataclasses.replace(face, box=Box(face.box.x, tile.box.y + 10, face.box.w, 120))
    result = dataclasses.replace(result, faces=tuple(high if f is face else f for f in result.faces))
    out = Annotator("check", banner=False).annotate(image, result)
    label_colour = EMOTION_COLORS[high.emotion[0]]
    below_header = out[tile.box.y + _header_height(720):high.box.y2 - 3, high.box.x + 3:high.box.x2 - 3]   # inside the box
    assert (below_header == label_colour).all(axis=-1).sum() > 100   # the label's background, in sight
