"""Frame -> tiles -> faces -> aligned crops -> emotions -> per-student rows.

``Analyzer.analyze`` is the whole analysis of one frame; in a stream it classifies only the
faces whose picture changed. ``run_offline`` analyses every frame of a file in order;
``run_live`` keeps the annotated feed at the source's rate while analysis runs on its own
thread, a few times a second, on the newest frame, and accounts for every frame it skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_overlay.attention import AttentionTracker, with_poses
from fer_overlay.classify import EmotionClassifier
from fer_overlay.config import Config
from fer_overlay.core import Box, Face, Frame, FrameResult, Signals, Tile
from fer_overlay.camera_off import is_camera_off
from fer_overlay.detect import TILE_WIDTH, FaceDetector, TileFaces
from fer_overlay.draw import Annotator, font_scale
from fer_overlay.grid import TileFinder
from fer_overlay.names import NameReader, Notify, Pseudonyms, match_roster
from fer_overlay.preprocess import FACE_SIZE, align_crop, to_gray
from fer_overlay.sinks import Sink
from fer_overlay.identity import tile_looks
from fer_overlay.track import Tracker

Listener = Callable[[FrameResult], None]
Output = tuple[Annotator, Sink]


class Analyzer:
    """Runs every analysis stage on one frame; keeps per-student memory between frames.

    ``exclude`` holds tile keys and names (any case) of opted-out students; ``names`` reads
    who is in which tile (None: students are tile keys); ``pseudonyms`` replaces every name
    before anything leaves the analysis; ``tile_width`` is the second look's (0: whole frame only).
    """

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier | None, tracker: Tracker,
                 exclude: frozenset[str] = frozenset(), *, names: NameReader | None = None,
                 pseudonyms: Pseudonyms | None = None, tile_width: int = TILE_WIDTH,
                 signals: Signals = Signals.BOTH):
        self.detector, self.classifier, self.tracker = detector, classifier, tracker
        # Signals.ATTENTION: no classifier at all (None), so no emotion can be inferred anywhere.
        self.signals = signals
        self.attention = AttentionTracker(tracker.half_life, tracker.flag) if signals.attention else None
        self.exclude = frozenset(e.casefold() for e in exclude)
        self.names, self.pseudonyms = names, pseudonyms
        # Names are replaced after the tracker's vote, which needs their letters: "Chen L." and
        # "Chen L. I" are one student, "Student 1" and "Student 2" would be two.
        if pseudonyms is not None:
            tracker.roll.pseudonyms = pseudonyms
        self.tiles = TileFinder()
        self.faces = TileFaces(detector, tile_width)
        self._opted_out: set[str] = set()   # tile keys where an excluded name was last read
        self._classified: dict[Box, tuple[_Classified, ...]] = {}   # last frame's faces, by tile

    @classmethod
    def from_config(cls, config: Config, exclude: frozenset[str] = frozenset(),
                    notify: Notify | None = None) -> "Analyzer":
        names = NameReader(config.roster, notify=notify, languages=config.ocr_languages) if config.ocr else None
        return cls(FaceDetector(score_threshold=config.score_threshold, max_width=config.detect_width,
                                max_faces=config.max_faces),
                   EmotionClassifier.load(config.model, flip_average=config.flip_average)
                   if config.signals.emotions else None,
                   Tracker(config.half_life, config.flag), exclude, names=names,
                   pseudonyms=Pseudonyms() if config.anonymize else None, signals=config.signals)

    def fresh(self) -> "Analyzer":
        """The same settings and loaded models (detector, CNN, OCR) with no memory of a recording:
        ``batch`` workers load the models once and analyse every file with a fresh analyzer."""
        return Analyzer(self.detector, self.classifier, Tracker(self.tracker.half_life, self.tracker.flag),
                        self.exclude, names=self.names.fresh() if self.names else None,
                        pseudonyms=Pseudonyms(self.pseudonyms.prefix) if self.pseudonyms else None,
                        tile_width=self.faces.width, signals=self.signals)

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
        if self.classifier is not None:
            faces = self.classify(gray, faces, frame.timestamp)
        if self.attention is not None:
            faces = with_poses(faces)
        looks = tile_looks(frame.image, tiles)   # follows students with unread labels when tiles move
        faces, students = self.tracker.update(faces, tiles, frame.timestamp, names, camera_off, looks)
        if self.attention is not None:
            students = self.attention.update(faces, students, frame.timestamp)
        return FrameResult(frame.index, frame.timestamp, frame.size, tiles, faces, students, excluded=excluded,
                           signals=self.signals)

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

    def classify(self, image: np.ndarray, faces: tuple[Face, ...], timestamp: float | None = None) -> tuple[Face, ...]:
        """Each face with its own probabilities; the changed ones classified in one batch.

        With a ``timestamp`` (a stream), a face keeps the probabilities it had in the previous
        frame while it stays in place in its tile and its picture there has not changed (see
        ``_Classified``): in a lecture most faces barely move from one analysis to the next.
        """
        gray = to_gray(image)
        known = self._classified if timestamp is not None else {}
        probabilities: list[tuple[float, ...] | None] = [None] * len(faces)
        kept: dict[Box, list[_Classified]] = {}
        for i, face in enumerate(faces):
            seen = next((c for c in known.get(face.tile.box, ()) if c.holds(gray, face.box, timestamp)), None) \
                if face.tile is not None else None
            if seen is not None:
                probabilities[i] = seen.probabilities
                kept.setdefault(face.tile.box, []).append(seen)
        todo = [i for i, p in enumerate(probabilities) if p is None]
        if todo:
            for i, probs in zip(todo, self.classifier.predict(crops_of(gray, [faces[i] for i in todo]))):
                probabilities[i] = tuple(float(p) for p in probs)
                if faces[i].tile is not None and timestamp is not None:
                    kept.setdefault(faces[i].tile.box, []).append(
                        _Classified(faces[i].box, face_picture(gray, faces[i].box), timestamp, probabilities[i]))
        self._classified = {box: tuple(seen) for box, seen in kept.items()}
        return tuple(dataclasses.replace(face, probabilities=probs) for face, probs in zip(faces, probabilities))


FACE_PICTURE = 8          # px; side of the picture a face's change is judged on
FACE_CHANGE = 6.0         # grey levels: mean change of that picture that makes a face classified again ...
FACE_SPOT_CHANGE = 24.0   # ... or change of one of its pixels (a mouth opening, eyes closing)
FACE_MAX_AGE = 2.0        # s; a classification is never reused for longer
FACE_OVERLAP = 0.5        # IoU with the classified face's box for the same face in the same place


def face_picture(gray: np.ndarray, box: Box) -> np.ndarray:
    """A face's box as FACE_PICTURE x FACE_PICTURE area averages: blind to sensor noise."""
    box = box.clip(gray.shape[1], gray.shape[0])
    if box.w < 1 or box.h < 1:
        return np.zeros((FACE_PICTURE, FACE_PICTURE), np.float32)
    view = gray[box.y:box.y2, box.x:box.x2]
    return cv2.resize(view, (FACE_PICTURE, FACE_PICTURE), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Classified:
    """A face as it was classified: where, what its box showed, when, and the result.

    The picture is compared on the *old* box, not on a new crop: YuNet's landmarks jitter by a
    pixel or two between frames, which moves an aligned 48x48 crop more than the face did
    (measured on a moving gallery clip: a still face's aligned crop changed by up to 66 grey
    levels in a block at p99, its box's picture by 22 at p99 and 5.7 on average).
    """

    box: Box
    picture: np.ndarray
    timestamp: float
    probabilities: tuple[float, ...]

    def holds(self, gray: np.ndarray, box: Box, now: float) -> bool:
        """Whether a face at ``box`` now is this face, unchanged, and the result still fresh."""
        if not 0 <= now - self.timestamp <= FACE_MAX_AGE or box.iou(self.box) < FACE_OVERLAP:
            return False
        change = np.abs(face_picture(gray, self.box) - self.picture)
        return float(change.mean()) <= FACE_CHANGE and float(change.max()) <= FACE_SPOT_CHANGE


def aggregate_only(result: FrameResult) -> FrameResult:
    """The result without anything that identifies a student: no rows, no tiles on faces."""
    faces = tuple(dataclasses.replace(f, tile=None, student=None, landmarks=()) for f in result.faces)
    return dataclasses.replace(result, faces=faces, students=())


def crops_of(image: np.ndarray, faces: Iterable[Face]) -> np.ndarray:
    """The aligned 48x48 crops the classifier sees, in the order of ``faces``."""
    gray = to_gray(image)
    crops = [align_crop(gray, *face.eyes) for face in faces]
    return np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8)


ANALYSIS_FPS = 4.0    # default analyses per second: expressions change over seconds (see README "Speed")
JOIN_SECONDS = 10.0   # how long a stop waits for the frame in analysis (a first frame reads every label)
STARTING = "starting..."


@dataclass
class RunStats:
    """What became of every frame: ``frames == analysed + dropped + skipped + unfinished``."""

    frames: int = 0        # frames written to the outputs
    analysed: int = 0      # frames whose result reached the listeners
    dropped: int = 0       # frames handed to the analysis but replaced by a newer one before it was free
    skipped: int = 0       # frames the analysis rate did not ask for
    unfinished: int = 0    # frames still in analysis when the run stopped (it did not end within JOIN_SECONDS)
    seconds: float = 0.0

    def line(self) -> str:
        """The stop line: every frame out accounted for."""
        parts = [f"{self.frames} frames out: {self.analysed} analysed, {self.dropped} dropped (analysis busy), "
                 f"{self.skipped} skipped (analysis rate)"]
        if self.unfinished:
            parts.append(f"{self.unfinished} still in analysis at the stop, abandoned")
        return ", ".join(parts) + f"; {self.seconds:.0f} s"


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


def holding_frame(image: np.ndarray, text: str = STARTING) -> np.ndarray:
    """What a masked output shows before the first analysis result: not one pixel of the screen.

    A shared feed is masked by the faces and tiles an analysis found; until one exists there
    is nothing to mask by, so it shows a black frame with a note instead of the raw gallery.
    """
    out = np.zeros_like(image)
    scale = font_scale(out.shape[0])
    thickness = max(1, round(scale * 1.6))
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.putText(out, text, ((out.shape[1] - w) // 2, (out.shape[0] + h) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def _emit(image: np.ndarray, result: FrameResult | None, outputs: Sequence[Output]) -> None:
    """Annotate once per distinct annotator and write to every sink.

    Before the first result only ``full`` outputs (the teacher's own, or a feed the user chose
    to show in full) get the raw frame; every other mode gets :func:`holding_frame`.
    """
    done: dict[int, np.ndarray] = {}
    for annotator, sink in outputs:
        if id(annotator) not in done:
            if result is not None:
                done[id(annotator)] = annotator.annotate(image, result)
            elif annotator.mode == "full":   # each output keeps one frame size: the banner strip is there too
                done[id(annotator)] = annotator.annotate(image, None)
            else:
                done[id(annotator)] = annotator.framed(holding_frame(image), None)
        sink.write(done[id(annotator)], result)


_STOPS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _whole_delivery() -> Iterator[None]:
    """Hand one result to every listener and the counts, or to none: a stop (Ctrl-C, SIGTERM,
    SIGHUP) that comes meanwhile takes effect just after, so the JSON lines, the record and the
    "analysed N frame(s)" line agree. Signals can only be caught on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {stop: signal.signal(stop, lambda number, _: caught.append(number)) for stop in _STOPS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    if caught:   # the handlers in place again, the stop is delivered as if it came now
        signal.raise_signal(caught[0])


def run_offline(source: Iterable[Frame], analyzer: Analyzer, outputs: Sequence[Output],
                listeners: Sequence[Listener] = (), *, clock: Callable[[], float] = time.perf_counter,
                on_frame: Callable[[], None] | None = None, stats: RunStats | None = None) -> RunStats:
    """Analyse every frame in order (files: the output has exactly the input's frames).

    ``stats`` is filled in as the run goes, so a caller stopped by Ctrl-C still has the counts.
    """
    stats, meter, start = stats or RunStats(), _RateMeter(clock), clock()
    try:
        for frame in source:
            result = dataclasses.replace(analyzer.analyze(frame), fps=meter.tick())
            with _whole_delivery():
                for listener in listeners:
                    listener(result)
                stats.analysed += 1   # counted as it happens: after a stop the counts match the files
            _emit(frame.image, result, outputs)
            stats.frames += 1
            if on_frame:
                on_frame()
    finally:
        stats.seconds = clock() - start
    return stats


class _Mailbox:
    """A one-slot box: a newer frame replaces an unread older one (which counts as dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self.closed = False
        self.taken = 0     # frames the analysis took

    def put(self, frame: Frame) -> int:
        """Leave ``frame``; 1 when it replaced an unread frame."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return int(replaced)

    def waiting(self) -> bool:
        """Whether a frame waits for the analysis (which is busy)."""
        with self._cond:
            return self._frame is not None

    def take(self) -> Frame | None:
        with self._cond:
            while self._frame is None and not self.closed:
                self._cond.wait()
            frame, self._frame = self._frame, None
            self.taken += frame is not None
            return frame

    def close(self) -> int:
        """No more frames; 1 when an unread frame was thrown away."""
        with self._cond:
            self.closed = True
            unread, self._frame = self._frame is not None, None
            self._cond.notify_all()
            return int(unread)


def run_live(source: Iterable[Frame], analyzer: Analyzer, outputs: Sequence[Output],
             listeners: Sequence[Listener] = (), *, clock: Callable[[], float] = time.perf_counter,
             stop: threading.Event | None = None, duration: float | None = None,
             analysis_fps: float | None = ANALYSIS_FPS, join_seconds: float = JOIN_SECONDS,
             stats: RunStats | None = None) -> RunStats:
    """Feed every source frame to the outputs; analyse the newest frame ``analysis_fps`` times a second.

    The analysis rate is its own because expressions change over seconds while the feed must
    look smooth: analysing every frame it could would keep a core busy beside the meeting app.
    A frame is handed to the analysis when one is due (None: whenever it is free); a frame that
    waits for a busy analysis is swapped for each newer one, so analysis always sees the newest.
    Results travel to this thread through a queue and reach the listeners (table, JSON, record)
    exactly once each, in order, so none of them needs to be thread-safe. The run ends when the
    source does, when ``stop`` is set, or ``duration`` seconds of ``clock`` after the start; the
    frame in analysis is then waited for (``join_seconds`` at most, else counted unfinished)
    and its result delivered. Ctrl-C ends the loop the same way, then propagates; ``stats``
    (filled in as the run goes) holds the counts then. The caller closes sinks.
    """
    stats, meter, start = stats or RunStats(), _RateMeter(clock), clock()   # filled in as it goes (see run_offline)
    stop = stop or threading.Event()
    mailbox, results = _Mailbox(), queue.SimpleQueue()
    period = 1.0 / analysis_fps if analysis_fps else 0.0
    due = start
    latest: FrameResult | None = None
    failure: list[BaseException] = []

    def analyse_loop() -> None:
        try:
            while (frame := mailbox.take()) is not None:
                results.put(dataclasses.replace(analyzer.analyze(frame), fps=meter.tick()))
        except BaseException as exc:  # surfaced on the main thread below
            failure.append(exc)
            stop.set()

    def deliver() -> None:
        nonlocal latest
        while True:
            try:
                result = results.get_nowait()
            except queue.Empty:
                return
            latest = dataclasses.replace(result, dropped=stats.dropped)
            with _whole_delivery():
                stats.analysed += 1
                for listener in listeners:
                    listener(latest)

    worker = threading.Thread(target=analyse_loop, name="fer-overlay-analysis", daemon=True)
    worker.start()
    finished = False
    try:
        for frame in source:
            now = clock()
            if stop.is_set() or (duration is not None and now - start >= duration):
                break
            if now >= due:
                stats.dropped += mailbox.put(frame)
                due = max(due + period, now) if period else now
            elif mailbox.waiting():   # analysis still busy: the newest frame waits in its place
                stats.dropped += mailbox.put(frame)
            else:
                stats.skipped += 1
            deliver()
            _emit(frame.image, latest, outputs)
            stats.frames += 1
        finished = True
    except KeyboardInterrupt:
        finished = True   # a stop like any other: the finished results still count
        raise
    finally:
        stats.dropped += mailbox.close()
        worker.join(timeout=join_seconds)
        if finished and not failure:
            deliver()   # the last results still count, and the record gets them
        stats.unfinished = mailbox.taken - stats.analysed   # a stopped run (Ctrl-C) accounts for every frame too
        stats.seconds = clock() - start
    if failure:
        raise failure[0]
    return stats
