"""Time every analysis stage, and the whole analysis, on a generated gallery and a real screenshot.

    python benchmarks/bench_pipeline.py [--repeats 30] [--real PATH] [--fer] [--clip VIDEO]

Two frames: a 1920x1080 generated gallery of 25 bundled faces (FER2013 PrivateTest), and a
real full-window Zoom capture from ``../shared/data/meetings`` (read there, never copied). For
each: ms per stage with the layout unchanged (what every live frame pays), the first frame
(grid found, every label read, every faceless tile looked at again), and the whole analysis
with names, as the CLI runs it: on the unchanged picture (each face keeps its last result)
and with every face classified again (the figure to compare, and the one the ``fer`` ratio
uses). With ``--fer`` (and the ``fer`` package installed in the same
environment) it also times ``FER().detect_emotions`` on the generated frame for a same-run ratio.
With ``--clip`` (a lecture clip, e.g. the 1080p one ``bench_live.py --clip DIR`` makes) it times
the analysis of the frames ``live`` would analyse (4 a second), as the CLI analyses them (what
did not change keeps its result), and, with ``--fer``, ``fer`` on the very same frames.

``fer`` needs OpenCV's Haar cascades, which opencv 5 dropped, so it gets its own venv:
    python -m venv --system-site-packages /tmp/fervenv
    /tmp/fervenv/bin/pip install --no-deps fer
    /tmp/fervenv/bin/pip install "opencv-contrib-python<5" pandas "moviepy<2" ffmpeg-python "setuptools<70"
    /tmp/fervenv/bin/python benchmarks/bench_pipeline.py --fer
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fer_overlay.attention import AttentionTracker, with_poses  # noqa: E402
from fer_overlay.camera_off import is_camera_off  # noqa: E402
from fer_overlay.config import Config  # noqa: E402
from fer_overlay.core import Frame  # noqa: E402
from fer_overlay.demo import load_faces  # noqa: E402
from fer_overlay.draw import Annotator  # noqa: E402
from fer_overlay.gallery import compose_gallery  # noqa: E402
from fer_overlay.grid import find_tiles  # noqa: E402
from fer_overlay.identity import tile_looks  # noqa: E402
from fer_overlay.pipeline import ANALYSIS_FPS, Analyzer, crops_of  # noqa: E402
from fer_overlay.preprocess import to_gray  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "meetings" / "zoom_kr_5x5_pages.png"


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: first calls allocate
    samples, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), out


def first_frame_ms(image, repeats: int) -> float:
    """A fresh analyzer's first frame: grid, every label read, every faceless tile looked at."""
    samples = []
    for _ in range(max(3, repeats // 10)):
        analyzer = Analyzer.from_config(Config(ocr=True), notify=lambda message: None)
        start = time.perf_counter()
        analyzer.analyze(Frame(image, 0, 0.0))
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def stage_table(title: str, image, repeats: int) -> tuple[Table, float]:
    """Per-stage ms on ``image`` with its layout unchanged; returns the table and end-to-end ms."""
    analyzer = Analyzer.from_config(Config(ocr=True), notify=lambda message: None)
    analyzer.analyze(Frame(image, 0, 0.0))   # the first frame finds the grid, reads labels, looks at tiles
    gray, now = to_gray(image), 1.0
    rows = []
    ms, tiles = timed(lambda: find_tiles(image), max(3, repeats // 3))
    rows.append((f"grid: full detection ({len(tiles)} tiles; only on layout changes)", ms))
    ms, _ = timed(lambda: analyzer.tiles(gray, now), repeats)
    rows.append(("grid: layout check", ms))
    ms, off = timed(lambda: frozenset(t.key for t in tiles if is_camera_off(gray, t)), repeats)
    rows.append((f"camera-off check ({len(off)} off)", ms))
    ms, faces = timed(lambda: analyzer.detector.detect(image), repeats)
    rows.append((f"detect: whole frame at {analyzer.detector.max_width} px ({len(faces)} faces)", ms))
    ms, faces = timed(lambda: analyzer.faces(image, gray, tiles, now, skip=off), repeats)
    rows.append((f"detect + cached second look ({len(faces)} faces)", ms))
    ms, _ = timed(lambda: analyzer.names.read(gray, tiles), repeats)
    rows.append(("names: label check (readings cached)", ms))
    ms, crops = timed(lambda: crops_of(gray, faces), repeats)
    rows.append(("align + crop", ms))
    ms, _ = timed(lambda: analyzer.classifier.predict(crops), repeats)
    rows.append((f"classify every face (LiteRT, second look where unsure, {len(faces)} faces)", ms))
    classified = analyzer.classify(gray, faces)
    ms, looks = timed(lambda: tile_looks(image, tiles), repeats)
    rows.append(("identity: tile looks (follow students whose label is unread)", ms))
    names = analyzer.names.read(gray, tiles)
    clock = iter(range(1, 10**6))   # the tracker's time moves on as in a run
    ms, _ = timed(lambda: analyzer.tracker.update(classified, tiles, now + 0.1 * next(clock), names, looks=looks),
                  repeats)
    rows.append((f"identity + track + smooth ({len(names)} names read)", ms))
    ms, posed = timed(lambda: with_poses(classified), repeats)
    rows.append((f"attention: head pose ({len(posed)} faces)", ms))
    _, students = analyzer.tracker.update(posed, tiles, now + 0.1 * next(clock), names, looks=looks)
    attention = AttentionTracker(analyzer.tracker.half_life, analyzer.tracker.flag)
    ms, _ = timed(lambda: attention.update(posed, students, now + 0.1 * next(clock)), repeats)
    rows.append(("attention: per-student times and away flag", ms))
    frame = Frame(image, 1, now)
    end_to_end, result = timed(lambda: analyzer.analyze(frame), repeats)
    # Each call 2.1 s after the last: no face's result is reused (FACE_MAX_AGE), as when every
    # student's face changed; stale second looks are looked at again too (3 tiles a frame).
    later = iter(range(2, 10**6))
    every_face, _ = timed(lambda: analyzer.analyze(Frame(image, 2, now + 2.1 * next(later))), repeats)
    annotate_ms, _ = timed(lambda: Annotator("full").annotate(image, result), repeats)

    table = Table(title=f"{title}: {image.shape[1]}x{image.shape[0]}, median of {repeats} runs")
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.1f}")
    table.add_row("analysis per frame, picture unchanged (each face's result kept, the CLI default)",
                  f"{end_to_end:.1f}  ({1000 / end_to_end:.1f} frames/s)")
    table.add_row("[bold]analysis per frame, every face classified (as if every face changed)",
                  f"[bold]{every_face:.1f}  ({1000 / every_face:.1f} frames/s)")
    table.add_row("first frame (grid, every label read, every faceless tile looked at)",
                  f"{first_frame_ms(image, repeats):.0f}")
    table.add_row("annotate (full mode, output thread)", f"{annotate_ms:.1f}")
    return table, every_face


def clip_frames(path: Path, rate: float = ANALYSIS_FPS) -> tuple[list, float]:
    """The frames of the video at ``path`` that ``live`` analyses at ``rate`` a second, and its fps."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    frames, index, due = [], 0, 0.0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index / fps >= due:
            frames.append(image)
            due += 1 / rate
        index += 1
    capture.release()
    return frames, fps


def clip_table(path: Path, fer_detector) -> Table:
    """ms per analysed frame of a lecture clip, ours as the CLI analyses and (optionally) fer's."""
    frames, fps = clip_frames(path)
    analyzer = Analyzer.from_config(Config(ocr=True), notify=lambda message: None)
    ours = []
    for i, image in enumerate(frames):
        start = time.perf_counter()
        analyzer.analyze(Frame(image, i, i / ANALYSIS_FPS))
        ours.append((time.perf_counter() - start) * 1000)
    first, rest = ours[0], ours[1:]
    table = Table(title=f"lecture clip {path.name}: {len(frames)} frames, the ones live analyses ({ANALYSIS_FPS:g}/s "
                        f"of {fps:g} fps)")
    table.add_column("per analysed frame")
    table.add_column("ms", justify="right")
    table.add_row("fer-overlay, first frame (grid, every label read)", f"{first:.0f}")
    table.add_row("[bold]fer-overlay, the others: mean", f"[bold]{statistics.mean(rest):.1f}")
    table.add_row("fer-overlay, the others: median / max", f"{statistics.median(rest):.1f} / {max(rest):.1f}")
    if fer_detector is not None:
        theirs = []
        for image in frames:
            start = time.perf_counter()
            fer_detector.detect_emotions(image)
            theirs.append((time.perf_counter() - start) * 1000)
        table.add_row("fer package FER().detect_emotions: mean", f"{statistics.mean(theirs):.1f}")
        table.add_row("[bold]speed-up over fer (same run, same frames, means; ours with its first frame)",
                      f"[bold]{statistics.mean(theirs) / statistics.mean(ours):.1f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--real", type=Path, default=REAL, help="a real meeting screenshot (default: from ../shared)")
    parser.add_argument("--fer", action="store_true", help="also time the fer package (must be installed)")
    parser.add_argument("--clip", type=Path, help="a lecture video: time the frames live would analyse")
    args = parser.parse_args()
    console = Console()

    pixels, _ = load_faces()
    generated = compose_gallery(list(pixels[:25]), 5, 5, (1920, 1080)).image
    table, end_to_end = stage_table("generated 5x5 gallery", generated, args.repeats)
    detector = None
    if args.fer:
        try:
            from fer import FER
        except ImportError:   # newer fer releases export FER only from fer.fer
            from fer.fer import FER
        detector = FER()
        fer_ms, found = timed(lambda: detector.detect_emotions(generated), max(3, args.repeats // 5))
        table.add_row(f"fer package FER().detect_emotions ({len(found)} faces)",
                      f"{fer_ms:.1f}  ({1000 / fer_ms:.2f} frames/s)")
        table.add_row("[bold]speed-up over fer (same run, every face classified)", f"[bold]{fer_ms / end_to_end:.1f}x")
    console.print(table)
    real = cv2.imread(str(args.real), cv2.IMREAD_COLOR)
    if real is None:
        console.print(f"real screenshot {args.real} not found: skipped (developers' and CI machines have ../shared)")
    else:
        console.print(stage_table(f"real capture {args.real.name}", real, args.repeats)[0])
    if args.clip:
        console.print(clip_table(args.clip, detector))


if __name__ == "__main__":
    main()
