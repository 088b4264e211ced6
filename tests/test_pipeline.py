"""The live loop: the feed keeps the source's frames while a slow analysis drops and counts."""

import os
import signal
import time

import numpy as np
import pytest

from fer_overlay.core import Frame, FrameResult
from fer_overlay.pipeline import run_live, run_offline


class SlowAnalyzer:
    """Takes ``delay`` seconds per frame, like a busy CPU."""

    def __init__(self, delay):
        self.delay, self.seen = delay, []

    def analyze(self, frame):
        time.sleep(self.delay)
        self.seen.append(frame.index)
        return FrameResult(frame.index, frame.timestamp, frame.size, (), ())


class Recorder:
    mode = "full"   # the teacher's own output: raw frames until the first result

    def __init__(self):
        self.frames, self.results, self.closed = [], [], False

    def annotate(self, image, result):
        return image

    def write(self, image, result):
        self.frames.append(int(image[0, 0, 0]))
        self.results.append(result.frame_index if result else None)

    def close(self):
        self.closed = True


def frames(count, interval):
    for i in range(count):
        time.sleep(interval)
        yield Frame(np.full((4, 4, 3), i % 256, np.uint8), i, i * interval)


def test_feed_keeps_every_frame_while_analysis_drops_old_ones():
    analyzer, out, heard = SlowAnalyzer(0.05), Recorder(), []
    stats = run_live(frames(60, 0.01), analyzer, [(out, out)], [heard.append], analysis_fps=None)
    assert out.frames == list(range(60))                 # the feed never waits for analysis
    assert stats.frames == 60 and stats.dropped > 20     # analysis ran on the newest frames only
    assert len(analyzer.seen) + stats.dropped + stats.unfinished == 60
    assert analyzer.seen == sorted(analyzer.seen)
    assert [r.frame_index for r in heard] == sorted({r.frame_index for r in heard})   # each result once
    # Every frame is annotated with the newest finished result, never a future one.
    assert all(r is None or r <= f for f, r in zip(out.frames, out.results))


def test_offline_analyses_every_frame_in_order():
    analyzer, out = SlowAnalyzer(0.0), Recorder()
    stats = run_offline(frames(15, 0), analyzer, [(out, out)])
    assert analyzer.seen == list(range(15)) and out.results == list(range(15)) and stats.dropped == 0


def test_ctrl_c_in_the_source_stops_the_loop_and_the_worker():
    def interrupted():
        yield from frames(5, 0.01)
        raise KeyboardInterrupt

    analyzer, out = SlowAnalyzer(0.02), Recorder()
    with pytest.raises(KeyboardInterrupt):
        run_live(interrupted(), analyzer, [(out, out)])
    assert out.frames == list(range(5))


def test_analysis_failure_surfaces_on_the_main_thread():
    class Broken:
        def analyze(self, frame):
            raise RuntimeError("boom")

    out = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        run_live(frames(50, 0.01), Broken(), [(out, out)])
    assert len(out.frames) < 50


# --- faces per tile: the second look and its cache; camera-off tiles -------------------------

from fer_overlay.camera_off import is_camera_off  # noqa: E402
from fer_overlay.core import Box, Face, Tile  # noqa: E402
from fer_overlay.detect import TILE_LOOKS_PER_FRAME, TILE_MAX_AGE, TILE_PASSES, FaceDetector, TileFaces  # noqa: E402
from fer_overlay.gallery import _room, compose_gallery  # noqa: E402
from fer_overlay.preprocess import to_gray  # noqa: E402


@pytest.fixture(scope="module")
def demo_faces():
    from fer_overlay.demo import load_faces
    return load_faces()[0]


class CountingDetector:
    """The whole-frame pass finds a face in ``seen`` tiles only; a second look finds one anywhere."""

    def __init__(self, seen: list[Tile]):
        self.seen, self.looks, self.passes = seen, [], 0

    def detect(self, image):
        self.passes += 1
        return tuple(Face(Box(t.box.x + 4, t.box.y + 4, 8, 8), ((0, 0),) * 5, 0.9) for t in self.seen)

    def detect_in(self, image, box, width):
        self.looks.append(box)
        return (Face(Box(box.x + 2, box.y + 2, 8, 8), ((0, 0),) * 5, 0.7),)


def test_second_look_only_at_faceless_tiles_and_reused_while_they_do_not_change():
    tiles = tuple(Tile(0, c, Box(c * 40, 0, 40, 30)) for c in range(3))
    image = np.random.default_rng(0).integers(0, 255, (30, 120, 3), np.uint8)
    detector = CountingDetector([tiles[0]])
    faces = TileFaces(detector)
    found = faces(image, to_gray(image), tiles, 0.0, skip={tiles[2].key})
    assert [f.tile for f in found] == [tiles[0], tiles[1]]        # camera-off tile: not looked at, no face
    assert detector.looks == [tiles[1].box]
    assert faces(image, to_gray(image), tiles, 0.5, skip={tiles[2].key}) == found   # unchanged: reused
    assert detector.looks == [tiles[1].box]
    changed = image.copy()
    changed[:, 40:80] = 255 - changed[:, 40:80]
    faces(changed, to_gray(changed), tiles, 0.6, skip={tiles[2].key})
    assert detector.looks == [tiles[1].box] * 2                  # its pixels changed: looked again
    assert detector.passes == 1                                  # one changed tile: looked at alone
    faces(changed, to_gray(changed), tiles, 0.7 + TILE_MAX_AGE, skip={tiles[2].key})
    assert detector.looks == [tiles[1].box] * 2 + [tiles[0].box, tiles[1].box]   # too old: both looked at again
    assert detector.passes == 1
    assert TileFaces(detector, width=0)(image, to_gray(image), tiles, 0.0) == found[:1]   # turned off


def test_a_face_the_whole_frame_pass_finds_now_and_then_keeps_its_second_look():
    tiles = tuple(Tile(0, c, Box(c * 40, 0, 40, 30)) for c in range(2))
    image = np.random.default_rng(0).integers(0, 255, (30, 80, 3), np.uint8)
    detector = CountingDetector([tiles[0]])
    faces = TileFaces(detector)
    for timestamp, seen in ((0.0, [tiles[0]]), (0.1, list(tiles)), (0.2, [tiles[0]])):
        detector.seen = seen
        assert [f.tile for f in faces(image, to_gray(image), tiles, timestamp)] == list(tiles)
    assert detector.looks == [tiles[1].box]


def test_people_far_behind_the_student_are_not_faces_of_the_tile():
    tiles = (Tile(0, 0, Box(0, 0, 100, 60)), Tile(0, 1, Box(100, 0, 100, 60)))
    student, behind = Box(30, 10, 30, 40), Box(70, 20, 10, 12)
    pair = (Box(110, 10, 30, 40), Box(150, 12, 26, 34))   # two people side by side

    class Detector:
        def detect(self, image):
            return tuple(Face(box, ((0, 0),) * 5, 0.9) for box in (student, behind, *pair))

    image = np.zeros((60, 200, 3), np.uint8)
    found = TileFaces(Detector(), width=0)(image, to_gray(image), tiles, 0.0)
    assert [f.box for f in found] == [student, *pair]
def test_stale_tiles_are_looked_at_again_a_few_per_frame_oldest_first():
    """More changed tiles than TILE_PASSES: the whole frame is passed again, and the faceless
    tiles' second looks are renewed TILE_LOOKS_PER_FRAME a frame, the others kept meanwhile."""
    tiles = tuple(Tile(0, c, Box(c * 40, 0, 40, 30)) for c in range(2 * TILE_PASSES))
    image = np.random.default_rng(0).integers(0, 255, (30, 40 * len(tiles), 3), np.uint8)
    detector = CountingDetector([])
    faces = TileFaces(detector)
    faces(image, to_gray(image), tiles, 0.0)
    assert detector.looks == [t.box for t in tiles]   # never looked at: all at once
    moved = 255 - image
    chunks = [tiles[i:i + TILE_LOOKS_PER_FRAME] for i in range(0, len(tiles), TILE_LOOKS_PER_FRAME)]
    for step, expected in enumerate([*chunks, ()]):
        del detector.looks[:]
        found = faces(moved, to_gray(moved), tiles, 0.1 * (step + 1))
        assert detector.looks == [t.box for t in expected]
        assert [f.tile for f in found] == list(tiles)     # the others keep their last look meanwhile
    assert detector.passes == 2                           # the first frame, and the frame they all changed


def test_the_whole_frame_pass_is_reused_while_the_tiles_do_not_change():
    tiles = tuple(Tile(0, c, Box(c * 40, 0, 40, 30)) for c in range(3))
    image = np.random.default_rng(0).integers(0, 255, (30, 120, 3), np.uint8)
    detector = CountingDetector(list(tiles))
    faces = TileFaces(detector)
    first = faces(image, to_gray(image), tiles, 0.0)
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    assert faces(noisy, to_gray(noisy), tiles, 0.5) == first     # sensor noise: nothing detected again
    assert (detector.passes, detector.looks) == (1, [])
    changed = noisy.copy()
    changed[:, 40:80] = 255 - changed[:, 40:80]
    found = faces(changed, to_gray(changed), tiles, 0.6)        # one tile changed: looked at alone
    assert (detector.passes, detector.looks) == (1, [tiles[1].box])
    by_tile = {f.tile: f for f in found}
    assert list(by_tile) == [tiles[0], tiles[2], tiles[1]] and by_tile[tiles[1]].score == 0.7   # from the look
    faces(changed, to_gray(changed), tiles + (Tile(1, 0, Box(0, 0, 120, 1)),), 0.7)   # a new tile: a new pass
    assert detector.passes == 2


def test_second_look_finds_the_small_gallery_faces_the_whole_frame_misses(demo_faces):
    """A 7x7 gallery at 960x540: ~65 px tiles, as in a real 7x7 Zoom window at 640x400."""
    shown = compose_gallery(list(demo_faces[:49]), 7, 7, (960, 540), rng_seed=1)
    detector = FaceDetector()
    whole = {f.tile for f in TileFaces(detector, width=0)(shown.image, to_gray(shown.image), shown.tiles, 0.0)}
    found = TileFaces(detector)(shown.image, to_gray(shown.image), shown.tiles, 0.0)
    faced = {f.tile for f in found}
    assert len(faced) >= 0.85 * 49 > 0.6 * 49 > len(whole)
    truth = dict(zip(shown.tiles, shown.face_boxes))
    assert all(truth[f.tile].contains(f.box.center) for f in found)   # each on its pasted face, in frame coordinates


def test_camera_off_tiles_are_flat_to_their_rim_and_video_is_not(demo_faces):
    for style in ("zoom", "teams", "meet"):
        pictures = [None if i in (1, 5) else demo_faces[i] for i in range(9)]
        shown = compose_gallery(pictures, 3, 3, style=style, rng_seed=3, speaker=1)
        assert [is_camera_off(shown.image, t) for t in shown.tiles] == [i in (1, 5) for i in range(9)]
    image, tile = shown.image, shown.tiles[1]
    view = image[tile.box.y:tile.box.y2, tile.box.x:tile.box.x2]
    third = tile.box.w // 3
    # A portrait phone video pillarboxed with the tile's own colour: video reaches the top.
    view[:, third:2 * third] = _room(tile.box.h, third, np.random.default_rng(2))
    assert not is_camera_off(image, tile)
    # A dark room whose blacks are crushed flat: the flat colour does not reach round the tile.
    view[:] = 0
    view[tile.box.h // 3:, : tile.box.w // 2] = _room(tile.box.h - tile.box.h // 3, tile.box.w // 2,
                                                       np.random.default_rng(3)) // 4
    assert not is_camera_off(image, tile)
    flat = np.full((200, 300, 3), 40, np.uint8)   # a frame that is one tile (webcam, no gallery found)
    assert not is_camera_off(flat, Tile(0, 0, Box(0, 0, 300, 200)))


# --- classification only of the faces that changed (issue 12) --------------------------------

from fer_overlay.classify import EmotionClassifier  # noqa: E402
from fer_overlay.pipeline import FACE_MAX_AGE, Analyzer  # noqa: E402
from fer_overlay.track import Tracker  # noqa: E402


class CountingClassifier:
    """The real CNN; remembers how many faces each call classified."""

    def __init__(self):
        self.real, self.calls = EmotionClassifier.load(), []

    def predict(self, faces):
        self.calls.append(len(faces))
        return self.real.predict(faces)


def _shaken(image, seed):
    """The same gallery a moment later: fresh sensor noise and every video tile moved 1 px."""
    rng = np.random.default_rng(seed)
    moved = np.roll(image, 1, axis=1).astype(np.int16) + rng.normal(0, 2.5, image.shape).astype(np.int16)
    return np.clip(moved, 0, 255).astype(np.uint8)


def test_only_changed_faces_are_classified_and_each_keeps_its_own_result(demo_faces):
    faces = [demo_faces[i] for i in range(9)]
    still = compose_gallery(faces, 3, 3, rng_seed=2)
    classifier = CountingClassifier()
    analyzer = Analyzer(FaceDetector(), classifier, Tracker())
    first = analyzer.analyze(Frame(still.image, 0, 0.0))
    assert classifier.calls == [9]
    # Noise and a 1-px movement: nothing is classified again, every face keeps its result.
    again = analyzer.analyze(Frame(_shaken(still.image, 1), 1, 0.5))
    assert classifier.calls == [9]
    by_tile = lambda result: {f.tile.key: f.probabilities for f in result.faces}  # noqa: E731
    assert by_tile(again) == by_tile(first)
    # Two students swap places and a third shows another face: those three, and only they, are
    # classified again, and each tile gets its new face's own probabilities (no result follows
    # the wrong face).
    swapped = list(faces)
    swapped[0], swapped[4], swapped[8] = faces[4], faces[0], demo_faces[20]
    changed = compose_gallery(swapped, 3, 3, rng_seed=2)
    result = analyzer.analyze(Frame(changed.image, 2, 1.0))
    assert classifier.calls == [9, 3]
    fresh = Analyzer(FaceDetector(), EmotionClassifier.load(), Tracker()).analyze(Frame(changed.image, 0, 0.0))
    assert by_tile(result).keys() == by_tile(fresh).keys()
    for key, probabilities in by_tile(result).items():
        if key in ("r1c1", "r2c2", "r3c3"):   # the new faces' own results, as a fresh analysis gives them
            # (up to landmark jitter: a changed tile is looked at alone, not in the whole-frame pass)
            np.testing.assert_allclose(probabilities, by_tile(fresh)[key], atol=0.05, err_msg=key)
            assert np.argmax(probabilities) == np.argmax(by_tile(fresh)[key])
        else:                                 # the others keep theirs
            assert probabilities == by_tile(first)[key], key
    np.testing.assert_allclose(by_tile(result)["r1c1"], by_tile(first)["r2c2"], atol=0.05)   # it moved with its face
    # A result is never kept longer than FACE_MAX_AGE, changed or not.
    analyzer.analyze(Frame(changed.image, 3, 1.0 + FACE_MAX_AGE + 0.1))
    assert classifier.calls == [9, 3, 9]
    # Without a stream (one frame after another with no time), every face is classified.
    assert len(Analyzer(FaceDetector(), classifier, Tracker()).classify(still.image, first.faces)) == 9
    assert classifier.calls[-1] == 9


def test_the_second_look_is_only_for_unsure_faces(demo_faces):
    """Below SECOND_LOOK_BELOW: a sure face keeps its plain answer, an unsure one is averaged."""
    crops = np.stack([demo_faces[i] for i in range(40)])
    plain = EmotionClassifier.load(flip_average=False).predict(crops)
    everywhere = EmotionClassifier.load(second_look_below=1.0).predict(crops)
    unsure_only = EmotionClassifier.load().predict(crops)
    from fer_overlay.classify import SECOND_LOOK_BELOW
    sure = plain.max(axis=1) >= SECOND_LOOK_BELOW
    assert 0 < sure.sum() < len(crops)
    np.testing.assert_allclose(unsure_only[sure], plain[sure], atol=1e-6)
    np.testing.assert_allclose(unsure_only[~sure], everywhere[~sure], atol=1e-6)


def test_loading_the_face_detector_prints_nothing(capfd):
    """OpenCV 5 warns on every YuNet load that its graph engine ignores the CPU target: the
    detector keeps that off the teacher's terminal and leaves OpenCV's log level as it was."""
    import cv2
    log = cv2.utils.logging
    before = log.getLogLevel()
    FaceDetector()
    assert capfd.readouterr().err == "" and log.getLogLevel() == before


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_between_two_listeners_still_gives_the_result_to_both(stop):
    """Ctrl-C arriving after the JSON line is written but before the record hears of it: the stop
    waits until every listener and the count have the result, so they agree afterwards."""
    json_lines, record = [], []

    def json_listener(result):
        json_lines.append(result.frame_index)
        if result.frame_index == 3:
            os.kill(os.getpid(), stop)
            time.sleep(0.05)   # the signal is pending here; without the guard it would interrupt now

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)   # the CLI's SIGTERM raises too
    try:
        from fer_overlay.pipeline import RunStats
        stats = RunStats()
        with pytest.raises(KeyboardInterrupt):
            run_offline(frames(10, 0), SlowAnalyzer(0.0), [], [json_listener, record.append], stats=stats)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert json_lines == [0, 1, 2, 3] and [r.frame_index for r in record] == [0, 1, 2, 3] and stats.analysed == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handlers put back
