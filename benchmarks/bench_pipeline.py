"""Time every analysis stage on a 1920x1080 gallery with 25 faces, and end to end.

    python benchmarks/bench_pipeline.py [--repeats 30] [--fer]

Prints ms per stage and frames per second. With ``--fer`` (and the ``fer`` package
installed in the same environment) it also times ``FER().detect_emotions`` on the same
frames for a side-by-side ratio. Uses the bundled demo faces (FER2013 PrivateTest).

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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fer_overlay.core import Frame  # noqa: E402
from fer_overlay.demo import load_faces  # noqa: E402
from fer_overlay.draw import Annotator  # noqa: E402
from fer_overlay.gallery import compose_gallery  # noqa: E402
from fer_overlay.grid import TileFinder, assign_tiles, find_tiles  # noqa: E402
from fer_overlay.pipeline import Analyzer, crops_of  # noqa: E402
from fer_overlay.preprocess import to_gray  # noqa: E402
from fer_overlay.config import Config  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up: first calls allocate
    samples, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fer", action="store_true", help="also time the fer package (must be installed)")
    args = parser.parse_args()
    console = Console()

    pixels, _ = load_faces()
    image = compose_gallery(list(pixels[:25]), 5, 5, (1920, 1080)).image
    frame = Frame(image, 0, 0.0)
    analyzer = Analyzer.from_config(Config())
    plain = Analyzer.from_config(Config(flip_average=False))

    rows = []
    ms, tiles = timed(lambda: find_tiles(image), args.repeats)
    rows.append(("grid (find_tiles)", ms))
    chrome = compose_gallery(list(pixels[:25]), 5, 5, (1920, 1080), panel=True, toolbar=True, speaker=7).image
    ms, _ = timed(lambda: find_tiles(chrome), args.repeats)
    rows.append(("grid with panel, toolbar, speaker border", ms))
    finder, gray = TileFinder(), to_gray(image)
    finder(gray, 0.0)
    ms, _ = timed(lambda: finder(gray, 1.0), args.repeats)
    rows.append((f"grid check, layout unchanged ({finder.detections} detection)", ms))
    ms, faces = timed(lambda: analyzer.detector.detect(image), args.repeats)
    rows.append((f"detect (YuNet at {analyzer.detector.max_width}px wide)", ms))
    faces = assign_tiles(faces, tiles)
    ms, crops = timed(lambda: crops_of(image, faces), args.repeats)
    rows.append(("align + crop", ms))
    ms, _ = timed(lambda: plain.classifier.predict(crops), args.repeats)
    rows.append(("classify (LiteRT, no flip)", ms))
    ms, _ = timed(lambda: analyzer.classifier.predict(crops), args.repeats)
    rows.append(("classify (LiteRT, + flip) [default]", ms))
    classified = analyzer.classify(image, faces)
    ms, _ = timed(lambda: analyzer.tracker.update(classified, tiles, time.monotonic()), args.repeats)
    rows.append(("track + smooth", ms))
    ms, result = timed(lambda: analyzer.analyze(frame), args.repeats)
    end_to_end = ms
    named = Analyzer.from_config(Config(ocr=True))
    named.analyze(frame)   # the first frame reads every label; later frames only check them
    names_ms, _ = timed(lambda: named.names.read(to_gray(image), tiles), args.repeats)
    named_ms, _ = timed(lambda: named.analyze(frame), args.repeats)
    annotate_ms, _ = timed(lambda: Annotator("full").annotate(image, result), args.repeats)

    table = Table(title=f"1920x1080 gallery, {len(faces)} faces found of 25, median of {args.repeats} runs")
    table.add_column("stage")
    table.add_column("ms", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.1f}")
    table.add_row("[bold]analysis end to end", f"[bold]{end_to_end:.1f}  ({1000 / end_to_end:.1f} frames/s)")
    table.add_row("names check, labels unchanged (OCR cached)", f"{names_ms:.1f}")
    table.add_row("[bold]end to end with names (the CLI default)",
                  f"[bold]{named_ms:.1f}  ({1000 / named_ms:.1f} frames/s)")
    table.add_row("annotate (full mode, output thread)", f"{annotate_ms:.1f}")
    per_face = [v for n, v in rows if "[default]" in n][0] / max(len(faces), 1)
    table.add_row("classifier per face (with flip)", f"{per_face:.2f}")
    if args.fer:
        try:
            from fer import FER
        except ImportError:   # newer fer releases export FER only from fer.fer
            from fer.fer import FER
        detector = FER()
        fer_ms, found = timed(lambda: detector.detect_emotions(image), max(3, args.repeats // 5))
        table.add_row(f"fer package FER().detect_emotions ({len(found)} faces)",
                      f"{fer_ms:.1f}  ({1000 / fer_ms:.2f} frames/s)")
        table.add_row("[bold]speed-up over fer", f"[bold]{fer_ms / end_to_end:.1f}x")
    console.print(table)


if __name__ == "__main__":
    main()
