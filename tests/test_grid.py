"""Grid finding and face assignment against composed galleries whose tiles are known exactly."""

import dataclasses
import itertools

import cv2
import numpy as np
import pytest

from fer_overlay.core import Box, Face, Tile
from fer_overlay.gallery import STYLES, compose_gallery
from fer_overlay.grid import TileFinder, assign_tiles, find_tiles

GAPS = (2, 5, 8, 13, 20)
ASPECTS = (16 / 9, 4 / 3, 1.0)
SIZES = ((640, 360), (1280, 720), (1920, 1080), (1024, 768))
STYLE_NAMES = tuple(STYLES)


def drawn_face(seed: int) -> np.ndarray:
    """A 48x48 cartoon face (no dataset needed); odd seeds come back as BGR."""
    rng = np.random.default_rng(seed)
    face = rng.integers(60, 140, (48, 48), dtype=np.uint8)
    cv2.ellipse(face, (24, 25), (16, 21), 0, 0, 360, int(rng.integers(150, 230)), -1)
    for x in (17, 31):
        cv2.circle(face, (x, 20), 3, 30, -1)
    cv2.ellipse(face, (24, 34), (8, 4), 0, 0, 180, 40, 2)
    return cv2.cvtColor(face, cv2.COLOR_GRAY2BGR) if seed % 2 else face


def faces_for(count: int, seed: int, camera_off: float = 0.2) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    return [None if rng.random() < camera_off else drawn_face(seed * 100 + i) for i in range(count)]


def assert_same_tiles(found, truth, tolerance: int = 2) -> None:
    assert [(t.row, t.col) for t in found] == [(t.row, t.col) for t in truth]
    for got, want in zip(found, truth):
        edges = np.array([got.box.x, got.box.y, got.box.x2, got.box.y2])
        assert np.abs(edges - [want.box.x, want.box.y, want.box.x2, want.box.y2]).max() <= tolerance, (got, want)


@pytest.mark.parametrize("rows,cols", list(itertools.product(range(2, 8), range(2, 8))))
def test_find_tiles_recovers_every_grid(rows, cols):
    """Each grid cycles through gaps, aspects, sizes and styles; most have a partial last row."""
    i = (rows - 2) * 6 + (cols - 2)
    count = rows * cols - i % cols
    gallery = compose_gallery(faces_for(count, i), rows, cols, SIZES[i % 4], gap=GAPS[i % 5],
                              aspect=ASPECTS[i % 3], style=STYLE_NAMES[i % 3], rng_seed=i)
    assert_same_tiles(find_tiles(gallery.image), gallery.tiles)


@pytest.mark.parametrize("rows,cols", list(itertools.product(range(2, 8), range(2, 8))))
def test_find_tiles_beside_a_panel_above_a_toolbar_with_a_speaker(rows, cols):
    """The app's chrome: a participants panel (Meet's is white, with text in the background
    colour), the controls bar (Meet's in the background colour), the active speaker's border
    partly in the gap, rounded tiles (Teams, Meet); every third frame JPEG-compressed."""
    i = (rows - 2) * 6 + (cols - 2)
    count = rows * cols - i % cols
    gallery = compose_gallery(faces_for(count, i), rows, cols, ((1920, 1080), (1280, 720))[i % 2],
                              gap=(3, 5, 8, 13)[i % 4], style=STYLE_NAMES[i % 3], rng_seed=i,
                              panel=True, toolbar=i % 4 != 1, speaker=i % count)
    image = gallery.image
    if i % 3 == 0:
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)
    assert_same_tiles(find_tiles(image), gallery.tiles, tolerance=3 if i % 3 == 0 else 1)


def test_tile_finder_detects_again_only_when_the_layout_changes():
    def frame(count=23, rows=5, cols=5, seed=0, **chrome):
        return compose_gallery(faces_for(count, seed), rows, cols, (1280, 720), rng_seed=seed, **chrome).image

    steps = [("first frame", frame(), 1), ("students move", frame(seed=3), 0),
             ("speaker border", frame(speaker=4), 0), ("speaker moves", frame(speaker=9), 0),
             ("someone joins", frame(24), 1), ("nothing moved", frame(24, seed=1), 0),
             ("grid grows", frame(31, 6, 6), 1), ("panel opens", frame(31, 6, 6, panel=True), 1),
             ("toolbar shows", frame(31, 6, 6, panel=True, toolbar=True), 1),
             ("window resized", cv2.resize(frame(31, 6, 6), (1024, 576)), 1)]
    finder = TileFinder(refresh=60)
    for second, (what, image, detections) in enumerate(steps):
        before = finder.detections
        assert finder(image, float(second)) == find_tiles(image), what
        assert finder.detections - before == detections, what
    finder(image, 100.0)   # the safety refresh
    assert finder.detections == 7
    whole = np.zeros((360, 640, 3), np.uint8)
    assert finder(whole, 101.0) == find_tiles(whole) and finder(whole, 101.5) == find_tiles(whole)
    assert finder.detections == 8   # no gallery (a slide, a webcam): looked at again only every second
    small = cv2.resize(frame(), (640, 360))
    assert finder(small, 101.9) == find_tiles(whole) and finder.detections == 8
    assert finder(small, 102.0) == find_tiles(small) and len(find_tiles(small)) == 23   # found within a second


@pytest.mark.parametrize("rows,cols,size,gap", [(1, 1, (1920, 1080), 8), (1, 1, (640, 360), 2),
                                                (1, 4, (1280, 720), 5), (3, 1, (1280, 720), 20),
                                                (7, 7, (640, 360), 20), (7, 7, (640, 360), 2)])
def test_find_tiles_single_rows_columns_and_extremes(rows, cols, size, gap):
    gallery = compose_gallery(faces_for(rows * cols, rows * 10 + cols), rows, cols, size, gap=gap)
    assert_same_tiles(find_tiles(gallery.image), gallery.tiles)


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_find_tiles_finds_camera_off_tiles(style):
    """All cameras off: Zoom's #232323 tiles on #1a1a1a differ by only 9 grey levels."""
    gallery = compose_gallery([None] * 16, 4, 4, (1280, 720), style=style)
    assert_same_tiles(find_tiles(gallery.image), gallery.tiles)


def test_find_tiles_at_eight_grey_levels_above_background():
    gallery = compose_gallery([None] * 9, 3, 3, (1280, 720), gap=4)
    image = np.full_like(gallery.image, 26)
    for tile in gallery.tiles:
        image[tile.box.y:tile.box.y2, tile.box.x:tile.box.x2] = 34
    assert_same_tiles(find_tiles(image), gallery.tiles)


def test_dark_content_inside_a_tile_keeps_the_tile():
    """Background-dark content: a dark wall over a third of one tile, a dark stripe through another."""
    gallery = compose_gallery(faces_for(12, 7, camera_off=0.0), 3, 4, (1280, 720))
    image = gallery.image.copy()
    wall, stripe = gallery.tiles[1].box, gallery.tiles[6].box
    image[wall.y:wall.y2, wall.x:wall.x + wall.w // 3] = 26
    middle = stripe.x + stripe.w // 2
    image[stripe.y:stripe.y2, middle - 10:middle + 10] = 26
    assert_same_tiles(find_tiles(image), gallery.tiles)


def test_partial_last_row_cols_follow_alignment():
    """Centred last row: cols of the full rows where the tiles line up, else 0..n-1."""
    aligned = compose_gallery(faces_for(13, 1), 3, 5, (1280, 720))       # 3 of 5: columns 1-3
    shifted = compose_gallery(faces_for(14, 2), 3, 5, (1280, 720))       # 4 of 5: half a tile off
    assert [t.col for t in find_tiles(aligned.image)[10:]] == [1, 2, 3]
    assert [t.col for t in find_tiles(shifted.image)[10:]] == [0, 1, 2, 3]
    assert_same_tiles(find_tiles(aligned.image), aligned.tiles)
    assert_same_tiles(find_tiles(shifted.image), shifted.tiles)


def test_find_tiles_takes_bgra_and_grayscale():
    gallery = compose_gallery(faces_for(10, 3), 3, 4, (1280, 720))
    assert_same_tiles(find_tiles(cv2.cvtColor(gallery.image, cv2.COLOR_BGR2BGRA)), gallery.tiles)
    assert_same_tiles(find_tiles(cv2.cvtColor(gallery.image, cv2.COLOR_BGR2GRAY)), gallery.tiles)


@pytest.mark.parametrize("rows,cols,gap,size", [(3, 3, 8, (1280, 720)), (5, 5, 5, (1920, 1080)),
                                                (6, 7, 2, (1920, 1080)), (4, 4, 13, (640, 360))])
def test_find_tiles_survives_jpeg(rows, cols, gap, size):
    """Recorded meetings are compressed: ringing along tile edges must not merge or split tiles."""
    gallery = compose_gallery(faces_for(rows * cols - 1, rows), rows, cols, size, gap=gap)
    encoded = cv2.imencode(".jpg", gallery.image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
    jpeg = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert_same_tiles(find_tiles(jpeg), gallery.tiles, tolerance=3)


def edge_to_edge(rows: int, cols: int, count: int, size: tuple[int, int], camera_off: float,
                 seed: int) -> tuple[np.ndarray, tuple[Tile, ...]]:
    """Google Meet's grid view: tiles edge to edge across the whole width (a fractional pitch), no
    gaps, camera-off tiles in the background colour with a round avatar above the name, every tile
    with a muted-microphone dot and a name, a partly filled last row left-aligned."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = np.full((height, width, 3), (40, 22, 14), np.uint8)
    xs = [round(c * width / cols) for c in range(cols + 1)]
    tile_h = round(width / cols * 9 / 16)
    top = (height - rows * tile_h) // 2
    tiles = []
    for i in range(count):
        r, c = divmod(i, cols)
        box = Box(xs[c], top + r * tile_h, xs[c + 1] - xs[c], tile_h)
        tiles.append(Tile(r, c, box))
        cell = image[box.y:box.y2, box.x:box.x2]
        if rng.random() < camera_off:
            cv2.circle(cell, (box.w // 2, box.h * 2 // 5), box.h // 5, rng.integers(90, 230, 3).tolist(), -1)
        else:
            cell[:] = rng.integers(60, 200, 3)
            face = cv2.resize(drawn_face(2 * (seed * 100 + i) + 1), (box.h * 3 // 5, box.h * 3 // 5))
            y, x = (box.h - face.shape[0]) // 2, (box.w - face.shape[1]) // 2
            cell[y:y + face.shape[0], x:x + face.shape[1]] = face
        cv2.circle(cell, (12, box.h - 12), 7, (40, 40, 220), -1)
        cv2.putText(cell, f"Student {i + 1}", (24, box.h - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (240, 240, 240), 1,
                    cv2.LINE_AA)
    return image, tuple(tiles)


@pytest.mark.parametrize("rows,cols,count,size,camera_off",
                         [(9, 9, 75, (1280, 800), 0.6), (5, 6, 27, (1920, 1080), 0.3),
                          (6, 6, 33, (1280, 800), 0.8), (7, 7, 45, (1920, 1080), 0.5)])
def test_find_tiles_edge_to_edge_with_camera_off_tiles_in_the_background_colour(rows, cols, count, size, camera_off):
    """No gaps to cut at, tiles touching the frame's sides, most cells only an avatar on the background:
    the lattice of the tile edges, and cells repeating one layout."""
    image, tiles = edge_to_edge(rows, cols, count, size, camera_off, seed=rows)
    assert_same_tiles(find_tiles(image), tiles, tolerance=3)


def desktop(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` as a maximised meeting window on a monitor: a title bar above it, a participants panel
    (white, names beside coloured avatars) right of it, the OS taskbar below; and where it was put."""
    height, width = image.shape[:2]
    title, taskbar, panel = 32, 48, width // 4
    font = cv2.FONT_HERSHEY_SIMPLEX
    screen = np.full((title + height + taskbar, width + panel, 3), 240, np.uint8)
    cv2.putText(screen, "Meeting - Zoom", (40, 22), font, 0.55, (40, 40, 40), 1, cv2.LINE_AA)
    cv2.rectangle(screen, (10, 8), (26, 24), (200, 120, 40), -1)
    for i, x in enumerate(range(width + panel - 40, width + panel - 150, -46)):
        cv2.rectangle(screen, (x - 8, 10), (x + 8, 22), (60, 60, 60), 1 + (i == 0))
    screen[title:title + height, :width] = image
    right = screen[title:title + height, width:]
    right[:] = 255
    cv2.putText(right, "Participants (25)", (16, 30), font, 0.6, (30, 30, 30), 1, cv2.LINE_AA)
    for i, y in enumerate(range(70, height - 20, 36)):
        cv2.circle(right, (30, y), 13, ((180, 105, 75), (90, 140, 60), (60, 110, 200))[i % 3], -1)
        cv2.putText(right, f"Student {i + 1}", (54, y + 6), font, 0.5, (50, 50, 50), 1, cv2.LINE_AA)
    bar = screen[title + height:]
    bar[:] = (48, 36, 32)
    for i, x in enumerate(range(12, 400, 48)):
        cv2.rectangle(bar, (x, 8), (x + 32, 40), ((215, 120, 0), (60, 180, 255), (90, 200, 90))[i % 3], -1)
    cv2.putText(bar, "10:42", (width + panel - 70, 30), font, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
    return screen, (0, title)


def shifted(tiles: tuple[Tile, ...], dx: int, dy: int) -> tuple[Tile, ...]:
    return tuple(Tile(t.row, t.col, Box(t.box.x + dx, t.box.y + dy, t.box.w, t.box.h)) for t in tiles)


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_find_tiles_in_a_whole_monitor_capture(style):
    """Title bar, taskbar and a white panel on the frame's border: the gaps' level is found inside."""
    gallery = compose_gallery(faces_for(14, 8), 4, 4, (1280, 720), style=style, gap=6)
    screen, (dx, dy) = desktop(gallery.image)
    assert_same_tiles(find_tiles(screen), shifted(gallery.tiles, dx, dy))


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_find_tiles_in_a_region_cropped_at_the_tiles(style):
    """No margin: tiles touch all four sides of the frame, the gaps are the only background."""
    gallery = compose_gallery(faces_for(23, 9), 5, 5, (1280, 720), style=style, gap=4)
    boxes = [t.box for t in gallery.tiles]
    x, y = min(b.x for b in boxes), min(b.y for b in boxes)
    crop = gallery.image[y:max(b.y2 for b in boxes), x:max(b.x2 for b in boxes)]
    assert_same_tiles(find_tiles(crop), shifted(gallery.tiles, -x, -y))


def test_find_tiles_inside_a_frame_of_other_colours():
    """Screenshots often carry a 1-2 px outline (a device frame, the window's border)."""
    gallery = compose_gallery(faces_for(23, 10), 5, 5, (1280, 720), gap=6)
    framed = cv2.copyMakeBorder(gallery.image, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    framed[0], framed[:, 0] = 200, 140
    assert_same_tiles(find_tiles(framed), shifted(gallery.tiles, 2, 2))


@pytest.mark.parametrize("speaker", [2, 8, 24])
def test_one_pixel_gaps_bridged_by_the_speaker_border(speaker):
    """Zoom's 7x7 at 640 px: 1 px gaps, which the speaker's border fills round its tile."""
    gallery = compose_gallery(faces_for(49, 11, camera_off=0.0), 7, 7, (640, 400), gap=1, speaker=speaker)
    assert_same_tiles(find_tiles(gallery.image), gallery.tiles)


@pytest.mark.parametrize("rows,size,gap,scale", [(7, (640, 400), 1, 0.75), (5, (1280, 720), 2, 0.5),
                                                  (4, (1920, 1080), 1, 0.5)])
def test_find_tiles_in_a_downscaled_capture(rows, size, gap, scale):
    """A capture scaled down (a HiDPI screen, a marketing picture) blurs 1-2 px gaps into the tiles."""
    gallery = compose_gallery(faces_for(rows * rows, rows, camera_off=0.0), rows, rows, size, gap=gap)
    image = cv2.resize(gallery.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def scaled(box: Box) -> Box:
        x, y = round(box.x * scale), round(box.y * scale)
        return Box(x, y, round(box.x2 * scale) - x, round(box.y2 * scale) - y)

    assert_same_tiles(find_tiles(image), [Tile(t.row, t.col, scaled(t.box)) for t in gallery.tiles], tolerance=4)


def photo(size=(1280, 720)) -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3)).astype(np.uint8)
    return cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 2), size, interpolation=cv2.INTER_CUBIC)


def slide(size=(1280, 720)) -> np.ndarray:
    image = np.full((size[1], size[0], 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, "Lecture 7: Convolutional networks", (80, 120), font, 1.6, (30, 30, 30), 3)
    for i in range(8):
        cv2.putText(image, f"- bullet point {i} on the topic at hand", (100, 220 + 55 * i), font, 1.0, (20, 20, 20), 2)
    return image


@pytest.mark.parametrize("image", [photo(), photo((640, 360)), slide(), np.zeros((720, 1280, 3), np.uint8)],
                         ids=["photo", "small-photo", "slide", "black"])
def test_non_gallery_frame_is_one_tile(image):
    height, width = image.shape[:2]
    assert find_tiles(image) == (Tile(0, 0, Box(0, 0, width, height)),)


def face_at(box: Box) -> Face:
    return Face(box=box, landmarks=((0.0, 0.0),) * 5, score=0.9, student="kept")


def test_assign_tiles_puts_faces_in_their_tiles():
    gallery = compose_gallery(faces_for(12, 4), 3, 4, (1280, 720))
    tiles = find_tiles(gallery.image)
    placed = [(tile, box) for tile, box in zip(gallery.tiles, gallery.face_boxes) if box is not None]
    faces = assign_tiles([face_at(box) for _, box in placed], tiles)
    assert [f.tile for f in faces] == [tile for tile, _ in placed]
    assert all(f.student == "kept" and f.score == 0.9 for f in faces)


def test_assign_tiles_outside_and_shared():
    gallery = compose_gallery(faces_for(4, 5), 2, 2, (1280, 720))
    first = gallery.tiles[0].box
    outside = face_at(Box(0, 0, 4, 4))                                   # in the frame margin
    left = face_at(Box(first.x + 10, first.y + 10, 40, 40))
    right = face_at(Box(first.x2 - 50, first.y + 10, 40, 40))
    faces = assign_tiles([outside, left, right], gallery.tiles)
    assert [f.tile for f in faces] == [None, gallery.tiles[0], gallery.tiles[0]]
    assert faces[1] == dataclasses.replace(left, tile=gallery.tiles[0])
    assert assign_tiles([], gallery.tiles) == ()


def test_compose_gallery_ground_truth():
    faces = faces_for(11, 6, camera_off=0.0)
    faces[3] = None
    gallery = compose_gallery(faces, 3, 4, (1280, 720), gap=6)
    assert gallery.image.shape == (720, 1280, 3) and gallery.image.dtype == np.uint8
    boxes = [t.box for t in gallery.tiles]
    assert len({(b.w, b.h) for b in boxes}) == 1 and abs(boxes[0].w / boxes[0].h - 16 / 9) < 0.02
    assert all(b.x >= 6 and b.y >= 6 and b.x2 <= 1274 and b.y2 <= 714 for b in boxes)
    assert all(a.intersection(b) == 0 for a, b in itertools.combinations(boxes, 2))
    last = boxes[8:]                                                     # 3 tiles, centred
    assert abs((last[0].x + last[-1].x2) / 2 - 640) <= 1
    assert gallery.face_boxes[3] is None
    for tile, face in zip(gallery.tiles, gallery.face_boxes):
        if face is not None:
            assert tile.box.contains(face.center) and abs(face.h / tile.box.h - 0.6) < 0.05
    again = compose_gallery(faces, 3, 4, (1280, 720), gap=6)
    assert np.array_equal(gallery.image, again.image)


def test_compose_gallery_rejects_bad_layouts():
    with pytest.raises(ValueError):
        compose_gallery(faces_for(10, 0), 3, 3)             # more faces than tiles
    with pytest.raises(ValueError):
        compose_gallery(faces_for(5, 0), 3, 3)              # an empty last row
    with pytest.raises(ValueError):
        compose_gallery(faces_for(4, 0), 2, 2, style="webex")
