"""The real live loop for a minute on a moving 5x5 gallery clip: CPU, frames, latency, memory.

    python benchmarks/bench_live.py [--seconds 60] [--analysis-fps 4] [--fps 10]

A child process first writes a 1920x1080 clip (10 frames/s, mp4v, in a temp folder) of a
Zoom-like 5x5 gallery made with ``fer_overlay.gallery`` from the bundled FER2013 PrivateTest
faces: every video tile drifts a few pixels (head movements) and carries fresh sensor noise
each frame, two tiles have the camera off, a student changes expression every few seconds
(another face whose label differs), and a 25th student joins after a third of the clip (the
layout changes). Then this process runs ``run_live`` as ``fer-overlay live`` does: the CLI's
analyzer (names read, flip, defaults), the live table (rendered to a null console), the session
record (SQLite in the temp folder) and one shared output (the virtual camera's sink in
aggregate mode, with a camera that discards frames), the clip paced at its real rate.

Printed: CPU (process CPU time / wall time, both threads; 100% = one core), frames out /
analysed / dropped / skipped, the latency from a tile's change on the screen to the first
table update that shows it (the tile's face classified again: a kept result is the very same
tuple; median, p95), to the first whose data shows the label the analysis gives the still
scene, and to the row's smoothed label (adds the --half-life smoothing); and peak memory
(ru_maxrss of this process; the clip is made in another).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from fer_overlay.core import EMOTIONS  # noqa: E402

SIZE = (1920, 1080)
ROWS = COLS = 5
CAMERA_OFF = (6, 17)        # tiles with a name only
JOIN_SHARE = 1 / 3          # the 25th student joins after this share of the clip
CHANGE_EVERY = 4.0          # s between expression changes (each on another tile of rows 1-4)
STILL_BAND = 0.2            # bottom share of a tile left still: the app's name label is drawn over the video
DRIFT = 3.0                 # px; amplitude of a head's slow movement
NOISE = 2.5                 # grey levels of sensor noise, fresh every frame


@dataclass(frozen=True)
class Event:
    """A change on the screen: at ``at`` s of the clip, tile ``key`` shows a face labelled ``label``."""

    at: float
    key: str
    label: str
    kind: str          # "change" | "join"


def _scene(faces, names):
    from fer_overlay.gallery import compose_gallery
    return compose_gallery(faces, ROWS, COLS, SIZE, names=names, rng_seed=7)


def _labels(analyzer, gallery) -> dict[str, str]:
    """What the analysis itself says of each face tile of a still scene (the label to wait for)."""
    from fer_overlay.core import EMOTIONS, Frame
    result = analyzer.analyze(Frame(gallery.image, 0, 0.0))
    return {f.tile.key: EMOTIONS[int(np.argmax(f.probabilities))] for f in result.faces
            if f.tile is not None and f.probabilities}


def make_clip(path: Path, seconds: float, fps: float) -> list[Event]:
    """Write the clip to ``path``; the changes it shows, with the label each one should bring."""
    from fer_overlay.classify import EmotionClassifier
    from fer_overlay.config import Config
    from fer_overlay.core import EMOTIONS
    from fer_overlay.demo import NAMES, load_faces
    from fer_overlay.pipeline import Analyzer
    analyzer = Analyzer.from_config(Config(ocr=False))
    pixels, _ = load_faces()
    rng = np.random.default_rng(12)
    order = list(rng.permutation(len(pixels)))
    faces = [None if i in CAMERA_OFF else pixels[order.pop()] for i in range(ROWS * COLS)]
    names = list(NAMES[: ROWS * COLS])
    join_at = round(seconds * JOIN_SHARE) + CHANGE_EVERY / 2 + 0.3   # between two changes
    scenes = {0.0: _scene(faces[:-1], names[:-1])}
    current = _labels(analyzer, scenes[0.0])
    events = []
    video = [i for i in range(ROWS * COLS - COLS) if i not in CAMERA_OFF]   # rows 1-4: their boxes never move
    sure = EmotionClassifier.load().predict(pixels)
    # Changes fall on any frame, not in step with the analysis (a change on a due time is seen at once).
    offsets = np.random.default_rng(5).integers(0, round(fps), 10**3) / fps
    at, turn = CHANGE_EVERY + offsets[0], 0
    while at < seconds - 2:
        if at > join_at and join_at not in scenes:
            joined = _scene(faces, names)
            scenes[join_at], current = joined, _labels(analyzer, joined)
            key = joined.tiles[-1].key
            events.append(Event(join_at, key, current.get(key, ""), "join"))
        tile = video[(turn * 7) % len(video)]
        turn += 1
        key = _scene_key(tile)
        # Another face, one the network is sure of, with a label other than the one shown now.
        shown = EMOTIONS[int(np.argmax(sure[_index(pixels, faces[tile])]))]
        pick = next((i for i in order if sure[i].max() > 0.8 and EMOTIONS[int(np.argmax(sure[i]))] != shown), None)
        if pick is not None:
            order.remove(pick)
            faces = list(faces)
            faces[tile] = pixels[pick]
            gallery = _scene(faces if at > join_at else faces[:-1], names if at > join_at else names[:-1])
            found = _labels(analyzer, gallery)
            scenes[at] = gallery
            if key in found and found[key] != current.get(key):   # the analysis itself sees a new label
                events.append(Event(at, key, found[key], "change"))
            current = found
        at = round(CHANGE_EVERY * (turn + 1) + offsets[turn], 3)
    if join_at not in scenes:
        scenes[join_at] = joined = _scene(faces, names)
        events.append(Event(join_at, joined.tiles[-1].key, _labels(analyzer, joined).get(joined.tiles[-1].key, ""),
                            "join"))

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    starts = sorted(scenes)
    phases = rng.uniform(0, 2 * np.pi, (ROWS * COLS, 2))
    periods = rng.uniform(3, 9, (ROWS * COLS, 2))
    for index in range(int(round(seconds * fps))):
        t = index / fps
        gallery = scenes[max(s for s in starts if s <= t)]
        image = gallery.image.copy()
        for i, tile in enumerate(gallery.tiles):
            if gallery.face_boxes[i] is None:
                continue
            box = tile.box
            moving = round(box.h * (1 - STILL_BAND))
            view = image[box.y:box.y + moving, box.x:box.x2]
            dx, dy = DRIFT * np.sin(2 * np.pi * t / periods[i] + phases[i])
            shifted = cv2.warpAffine(view, np.float32([[1, 0, dx], [0, 1, dy]]), (box.w, moving),
                                     borderMode=cv2.BORDER_REPLICATE)
            noise = rng.normal(0, NOISE, shifted.shape).astype(np.float32)
            view[:] = np.clip(shifted + noise, 0, 255).astype(np.uint8)
        writer.write(image)
    writer.release()
    return events


def _index(pixels: np.ndarray, face: np.ndarray) -> int:
    return next(i for i in range(len(pixels)) if pixels[i] is face or np.array_equal(pixels[i], face))


def _scene_key(index: int) -> str:
    return f"r{index // COLS + 1}c{index % COLS + 1}"


def paced(source, fps: float, shown: dict[int, float]):
    """The clip's frames at its real rate, as a screen grab delivers them; ``shown``: when each was."""
    start = time.perf_counter()
    for frame in source:
        delay = start + frame.index / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        shown[frame.index] = time.perf_counter()
        yield frame


class NullCamera:
    """A virtual camera that takes frames and shows them nowhere (the driver's cost is not ours)."""

    def send(self, frame) -> None:
        pass

    def close(self) -> None:
        pass


class Latency:
    """Listener: when each change first shows in the table's data, in wall seconds after the
    source delivered the first frame showing it (a late source does not count against us)."""

    def __init__(self, events: list[Event], fps: float, shown: dict[int, float]):
        self.events, self.fps, self.shown = events, fps, shown
        self.before: dict[int, tuple | None] = {}   # event -> the tile's probabilities just before it
        self.seen: dict[int, float] = {}       # event -> latency of the tile's updated face data
        self.matched: dict[int, float] = {}    # event -> latency of the data showing the new face's label
        self.labelled: dict[int, float] = {}   # event -> latency of the row's smoothed label
        self.first: float | None = None         # when the first result came (the start-up's end)

    def __call__(self, result) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        faces = {f.tile.key: f for f in result.faces if f.tile is not None and f.probabilities}
        rows = {s.tile.key: s for s in result.students if s.tile is not None}
        for i, event in enumerate(self.events):
            face = faces.get(event.key)
            if result.timestamp < event.at:
                self.before[i] = face.probabilities if face is not None else None
                continue
            on_screen = self.shown[int(round(event.at * self.fps))]
            # Updated: the tile's face was classified again after the change (a kept result is
            # the same tuple), or the joining student's face has a result at all.
            if i not in self.seen and face is not None and face.probabilities != self.before.get(i):
                self.seen[i] = now - on_screen
            if i not in self.matched and face is not None and EMOTIONS[int(np.argmax(face.probabilities))] == event.label:
                self.matched[i] = now - on_screen
            row = rows.get(event.key)
            if i not in self.labelled and row is not None and row.emotion == event.label:
                self.labelled[i] = now - on_screen


def _figures(values: list[float]) -> str:
    if not values:
        return "none"
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1)]
    return f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} changes)"


def run(args) -> None:
    from fer_overlay import cli
    from fer_overlay.dashboard import LiveTable
    from fer_overlay.draw import Annotator
    from fer_overlay.pipeline import run_live
    from fer_overlay.record import Recorder
    from fer_overlay.sinks import VirtualCameraSink
    from fer_overlay.sources import VideoSource

    folder = args.clip or Path(tempfile.mkdtemp(prefix="bench-live-"))
    clip, events_file = folder / "gallery.mp4", folder / "events.json"
    made = time.perf_counter()
    if not events_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, __file__, "--make-clip", str(clip), "--seconds", str(args.seconds),
                        "--fps", str(args.fps)], check=True)
    events = [Event(**e) for e in json.loads(events_file.read_text())]
    print(f"clip: {clip} ({args.seconds:.0f} s at {args.fps:g} frames/s, made in "
          f"{time.perf_counter() - made:.0f} s); {len(events)} changes on the screen "
          f"({sum(e.kind == 'join' for e in events)} a student joining)")

    live_args = ["live", "--accept-notice", "--fps", str(args.fps)] + (
        ["--analysis-fps", str(args.analysis_fps)] if args.analysis_fps else [])
    parsed = cli.build_parser().parse_args(live_args)
    quiet = Console(file=io.StringIO(), width=120, force_terminal=True)
    analyzer = cli._analyzer(parsed, quiet)   # exactly the CLI's analyzer, defaults included
    source = VideoSource(clip)
    feed = Annotator("aggregate")   # the virtual camera's default mode
    sink = VirtualCameraSink(*feed.output_size(source.size), args.fps, camera_factory=lambda w, h, fps: NullCamera())
    table = LiveTable(console=Console(file=open(os.devnull, "w"), width=120, force_terminal=True))
    with Recorder(folder / "class.db", source="bench") as recorder, table:
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        shown: dict[int, float] = {}
        latency = Latency(events, args.fps, shown)
        stats = run_live(paced(source, args.fps, shown), analyzer, [(feed, sink)],
                         [recorder.add, table.update, latency],
                         analysis_fps=min(parsed.analysis_fps or cli_default(), args.fps))
        cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    source.close()
    sink.close()
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (wall1 - wall0)
    print(f"machine: {os.cpu_count()} CPU cores; analysis {min(parsed.analysis_fps or cli_default(), args.fps):g}/s, "
          f"feed {args.fps:g} frames/s")
    print(f"CPU: {cpu * 100:.1f}% of one core on average ({wall1 - wall0:.1f} s wall)")
    print(f"frames: {stats.line()}")
    # Changes before the first result fall into the start-up (grid, every label read): apart.
    steady = [i for i, e in enumerate(events) if shown[int(round(e.at * args.fps))] > latency.first]
    print(f"first result {latency.first - wall0:.1f} s after the start; "
          f"{len(events) - len(steady)} change(s) before it left out below")
    print(f"change -> its row updated in the table: {_figures([latency.seen[i] for i in steady if i in latency.seen])}")
    slow = [f"{events[i].kind} {events[i].key} at {events[i].at:g} s: {latency.seen[i] * 1000:.0f} ms"
            for i in steady if latency.seen.get(i, 0) > 0.5]
    if slow:
        print(f"  over 500 ms: {'; '.join(slow)}")
    missed = sum(i not in latency.seen for i in steady)
    if missed:
        print(f"  {missed} change(s) never reached the table")
    print(f"change -> its row's data shows the new face's label: "
          f"{_figures([latency.matched[i] for i in steady if i in latency.matched])}"
          f"{'' if all(i in latency.matched for i in steady) else ' (the others never did: the moving face reads otherwise)'}")
    print(f"change -> the row's smoothed label (adds --half-life): "
          f"{_figures([latency.labelled[i] for i in steady if i in latency.labelled])}")
    print(f"peak memory: {cpu1.ru_maxrss / 1024:.0f} MB (ru_maxrss)")


def cli_default() -> float:
    from fer_overlay.pipeline import ANALYSIS_FPS
    return ANALYSIS_FPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the clip and the run (60)")
    parser.add_argument("--fps", type=float, default=10.0, help="the feed's rate (the CLI default, 10)")
    parser.add_argument("--analysis-fps", type=float, help="analyses per second (default: the CLI's)")
    parser.add_argument("--clip", type=Path, help="a folder to keep the clip in and reuse it from (default: a new temp folder)")
    parser.add_argument("--make-clip", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_clip:
        events = make_clip(args.make_clip, args.seconds, args.fps)
        (args.make_clip.parent / "events.json").write_text(json.dumps([asdict(e) for e in events]))
        return
    run(args)


if __name__ == "__main__":
    main()
