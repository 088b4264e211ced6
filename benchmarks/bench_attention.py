"""What the attention signals cost per frame, and how accurate the head pose is.

    python benchmarks/bench_attention.py [--repeats 2000]

Cost: the 25 faces YuNet finds in a 1920x1080 generated gallery of 25 bundled faces; per frame,
the head pose of every face (``with_poses``, one batch) and the per-student accounting
(``AttentionTracker.update``), against ``cv2.solvePnP`` called per face as the alternative.
Accuracy: synthetic faces of known yaw and pitch (``tests/test_attention.py``: each face its own
proportions, pinhole camera, pixel noise), error in degrees and looking/away accuracy per noise level.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.test_attention holds the test set

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fer_overlay.attention import FACE_MODEL, AttentionTracker, with_poses  # noqa: E402
from fer_overlay.demo import load_faces  # noqa: E402
from fer_overlay.detect import FaceDetector, TileFaces  # noqa: E402
from fer_overlay.gallery import compose_gallery  # noqa: E402
from fer_overlay.preprocess import to_gray  # noqa: E402
from fer_overlay.track import Tracker  # noqa: E402
from tests.test_attention import pose_errors  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--no-accuracy", action="store_true", help="time only")
    args = parser.parse_args()
    console = Console()

    gallery = compose_gallery(list(load_faces()[0][:25]), 5, 5, (1920, 1080))
    faces = TileFaces(FaceDetector())(gallery.image, to_gray(gallery.image), gallery.tiles, 0.0)   # as analysed
    faces, students = Tracker().update(faces, gallery.tiles, 0.0)
    posed = with_poses(faces)
    tracker, clock = AttentionTracker(), itertools.count(0.0, 0.1)   # 10 analysed frames a second
    points = [np.array(f.landmarks, np.float64) for f in faces]
    camera = np.array([[1000.0, 0, 960], [0, 1000.0, 540], [0, 0, 1]])

    def solve_pnp():
        for p in points:
            cv2.solvePnP(FACE_MODEL, p, camera, None, flags=cv2.SOLVEPNP_EPNP)

    cost = Table(title=f"attention cost per frame, {len(faces)} faces (median of {args.repeats})")
    cost.add_column("step")
    cost.add_column("ms", justify="right")
    pose_ms = median_ms(lambda: with_poses(faces), args.repeats)
    track_ms = median_ms(lambda: tracker.update(posed, students, float(next(clock))), args.repeats)
    cost.add_row("head pose, all faces in one batch (with_poses)", f"{pose_ms:.3f}")
    cost.add_row("per-student times and flag (AttentionTracker.update)", f"{track_ms:.3f}")
    cost.add_row("[bold]attention signals per frame", f"[bold]{pose_ms + track_ms:.3f}")
    cost.add_row("for comparison: cv2.solvePnP (EPnP) once per face", f"{median_ms(solve_pnp, args.repeats):.3f}")
    console.print(cost)
    if args.no_accuracy:
        return

    accuracy = Table(title="head pose on 2000 synthetic faces of known pose (yaw +-60, pitch -45..35, roll +-20)")
    for column in ("faces", "yaw error median / p90", "pitch error median / p90", "looking/away accuracy",
                   "... 10 deg or more from a threshold"):
        accuracy.add_column(column, justify="right")
    for label, shape, noise in (("exact model, no noise", 0.0, 0.0), ("+-15% proportions, no noise", 0.15, 0.0),
                                ("+-15%, noise 2% of eye distance", 0.15, 0.02),
                                ("+-15%, noise 3% (0.7 px at 24 px)", 0.15, 0.03),
                                ("+-15%, noise 5%", 0.15, 0.05)):
        e = pose_errors(shape=shape, noise=noise)
        accuracy.add_row(label, f"{e['yaw_median']:.1f} / {e['yaw_p90']:.1f} deg",
                         f"{e['pitch_median']:.1f} / {e['pitch_p90']:.1f} deg", f"{e['accuracy']:.1%}",
                         f"{e['accuracy_clear']:.1%}")
    console.print(accuracy)


if __name__ == "__main__":
    main()
