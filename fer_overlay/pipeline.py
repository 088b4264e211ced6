"""Frame -> tiles -> faces -> aligned crops -> emotions -> per-student rows.

``Analyzer.analyze`` is the whole analysis of one frame. ``run_offline`` analyses every
frame of a file in order; ``run_live`` keeps the annotated feed at the source's rate
while analysis runs on its own thread on the newest frame, dropping (and counting)
frames it had no time for.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fer_overlay.classify import EmotionClassifier
from fer_overlay.config import Config
from fer_overlay.core import Face, Frame, FrameResult, Tile
from fer_overlay.camera_off import is_camera_off
from fer_overlay.detect import TILE_WIDTH, FaceDetector, TileFaces
from fer_overlay.draw import Annotator
from fer_overlay.grid import TileFinder
from fer_overlay.names import NameReader, Notify, Pseudonyms, match_roster
from fer_overlay.preprocess import FACE_SIZE, align_crop, to_gray
from fer_overlay.sinks import Sink
from fer_overlay.track import Tracker

Listener = Callable[[FrameResult], None]
Output = tuple[Annotator, Sink]


class Analyzer:
    """Runs every analysis stage on one frame; keeps per-student memory between frames.

    ``exclude`` holds tile keys and names (any case) of opted-out students; ``names`` reads
    who is in which tile (None: students are tile keys); ``pseudonyms`` replaces every name
    before anything leaves the analysis; ``tile_width`` is the second look's (0: whole frame only).
    """

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, tracker: Tracker,
                 exclude: frozenset[str] = frozenset(), *, names: NameReader | None = None,
                 pseudonyms: Pseudonyms | None = None, tile_width: int = TILE_WIDTH):
        self.detector, self.classifier, self.tracker = detector, classifier, tracker
        self.exclude = frozenset(e.casefold() for e in exclude)
        self.names, self.pseudonyms = names, pseudonyms
        self.tiles = TileFinder()
        self.faces = TileFaces(detector, tile_width)
        self._opted_out: set[str] = set()   # tile keys where an excluded name was last read

    @classmethod
    def from_config(cls, config: Config, exclude: frozenset[str] = frozenset(),
                    notify: Notify | None = None) -> "Analyzer":
        names = NameReader(config.roster, notify=notify, languages=config.ocr_languages) if config.ocr else None
        return cls(FaceDetector(score_threshold=config.score_threshold, max_width=config.detect_width,
                                max_faces=config.max_faces),
                   EmotionClassifier.load(config.model, flip_average=config.flip_average),
                   Tracker(config.half_life, config.flag), exclude, names=names,
                   pseudonyms=Pseudonyms() if config.anonymize else None)

    def analyze(self, frame: Frame) -> FrameResult:
        gray = to_gray(frame.image)   # once per frame: grid, names, camera-off check and crops all read it
        tiles = self.tiles(gray, frame.timestamp)
        # A face on a camera-off tile is its profile photo, never a live face: not even looked for.
        camera_off = frozenset(t.key for t in tiles if is_camera_off(gray, t))
        faces = self.faces(frame.image, gray, tiles, frame.timestamp, skip=camera_off)
        names = self.names.read(gray, tiles) if self.names else {}
        excluded: tuple[Tile, ...] = ()
        if self.exclude:
            # Opted-out students are removed before classification: never classified, kept or shown.
            keys = self._excluded_tiles(tiles, names)
            excluded = tuple(t for t in tiles if t.key in keys)
            tiles = tuple(t for t in tiles if t.key not in keys)
            faces = tuple(f for f in faces if f.tile is None or f.tile.key not in keys)
            names = {t.key: names[t.key] for t in tiles if t.key in names}
        if self.pseudonyms:
            names = {key: self.pseudonyms(name) for key, name in names.items()}
        faces = self.classify(gray, faces)
        faces, students = self.tracker.update(faces, tiles, frame.timestamp, names, camera_off)
        return FrameResult(frame.index, frame.timestamp, frame.size, tiles, faces, students, excluded=excluded)

    def _excluded_tiles(self, tiles: tuple[Tile, ...], names: dict[str, str]) -> set[str]:
        """Keys of the tiles to drop: excluded keys, and tiles showing an excluded name.

        A tile stays excluded while its label is unreadable (a frame's misread must not expose
        an opted-out student) until another name is read there. Names match loosely, as a
        roster does: hiding a similar name is the safe mistake.
        """
        for tile in tiles:
            if tile.key in names:
                if match_roster(names[tile.key].casefold(), tuple(self.exclude)) in self.exclude:
                    self._opted_out.add(tile.key)
                else:
                    self._opted_out.discard(tile.key)
        return {t.key for t in tiles if t.key in self.exclude or t.key in self._opted_out}

    def classify(self, image: np.ndarray, faces: tuple[Face, ...]) -> tuple[Face, ...]:
        """All faces of a frame in one batch; each face keeps its own probabilities."""
        if not faces:
            return faces
        probabilities = self.classifier.predict(crops_of(image, faces))
        return tuple(dataclasses.replace(face, probabilities=tuple(float(p) for p in probs))
                     for face, probs in zip(faces, probabilities))


def aggregate_only(result: FrameResult) -> FrameResult:
    """The result without anything that identifies a student: no rows, no tiles on faces."""
    faces = tuple(dataclasses.replace(f, tile=None, student=None, landmarks=()) for f in result.faces)
    return dataclasses.replace(result, faces=faces, students=())


def crops_of(image: np.ndarray, faces: Iterable[Face]) -> np.ndarray:
    """The aligned 48x48 crops the classifier sees, in the order of ``faces``."""
    gray = to_gray(image)
    crops = [align_crop(gray, *face.eyes) for face in faces]
    return np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8)


@dataclass
class RunStats:
    frames: int = 0        # frames written to the outputs
    analysed: int = 0
    dropped: int = 0       # frames the analysis never saw
    seconds: float = 0.0


class _RateMeter:
    """Frames per second as an exponential average of intervals (steady, not jumpy)."""

    def __init__(self, clock: Callable[[], float]):
        self._clock, self._last, self.fps = clock, None, 0.0

    def tick(self) -> float:
        now = self._clock()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self.fps = rate if self.fps == 0 else 0.8 * self.fps + 0.2 * rate
        self._last = now
        return self.fps


def _emit(image: np.ndarray, result: FrameResult | None, outputs: Sequence[Output]) -> None:
    """Annotate once per distinct annotator and write to every sink."""
    done: dict[int, np.ndarray] = {}
    for annotator, sink in outputs:
        if id(annotator) not in done:
            done[id(annotator)] = annotator.annotate(image, result) if result else image
        sink.write(done[id(annotator)], result)


def run_offline(source: Iterable[Frame], analyzer: Analyzer, outputs: Sequence[Output],
                listeners: Sequence[Listener] = (), *, clock: Callable[[], float] = time.perf_counter,
                on_frame: Callable[[], None] | None = None) -> RunStats:
    """Analyse every frame in order (files: the output has exactly the input's frames)."""
    stats, meter, start = RunStats(), _RateMeter(clock), clock()
    for frame in source:
        result = dataclasses.replace(analyzer.analyze(frame), fps=meter.tick())
        for listener in listeners:
            listener(result)
        _emit(frame.image, result, outputs)
        stats.frames += 1
        stats.analysed += 1
        if on_frame:
            on_frame()
    stats.seconds = clock() - start
    return stats


class _Mailbox:
    """A one-slot box: a newer frame replaces an unread older one (which counts as dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.closed = False

    def put(self, frame: Frame) -> int:
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return int(replaced)

    def take(self) -> Frame | None:
        with self._cond:
            while self._frame is None and not self.closed:
                self._cond.wait()
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def run_live(source: Iterable[Frame], analyzer: Analyzer, outputs: Sequence[Output],
             listeners: Sequence[Listener] = (), *, clock: Callable[[], float] = time.perf_counter,
             stop: threading.Event | None = None, max_frames: int | None = None) -> RunStats:
    """Feed every source frame to the outputs; analyse the newest frame whenever free.

    Listeners (table, JSON, record) run on this thread, once per new analysis result,
    so none of them needs to be thread-safe. Ctrl-C ends the loop; the caller closes sinks.
    """
    stats, meter, start = RunStats(), _RateMeter(clock), clock()
    stop = stop or threading.Event()
    mailbox = _Mailbox()
    latest: list[FrameResult | None] = [None]
    fresh = threading.Event()
    failure: list[BaseException] = []

    def analyse_loop() -> None:
        try:
            while (frame := mailbox.take()) is not None:
                result = analyzer.analyze(frame)
                latest[0] = dataclasses.replace(result, fps=meter.tick(), dropped=stats.dropped)
                fresh.set()
        except BaseException as exc:  # surfaced on the main thread below
            failure.append(exc)
            stop.set()

    worker = threading.Thread(target=analyse_loop, name="fer-overlay-analysis", daemon=True)
    worker.start()
    try:
        for frame in source:
            if stop.is_set() or (max_frames is not None and stats.frames >= max_frames):
                break
            stats.dropped += mailbox.put(frame)
            if fresh.is_set():
                fresh.clear()
                stats.analysed += 1
                for listener in listeners:
                    listener(latest[0])
            _emit(frame.image, latest[0], outputs)
            stats.frames += 1
    finally:
        mailbox.close()
        worker.join(timeout=5)
        stats.seconds = clock() - start
    if failure:
        raise failure[0]
    return stats
