"""The live loop, step by step: a gated fake analysis and a source that drives a fake clock.

No sleeps: the source waits (with a time-out that fails the test) for the analysis thread to
reach a known point before it yields the next frame, so every interleaving is fixed.
"""

import threading

import numpy as np
import pytest

from fer_overlay.core import Frame, FrameResult
from fer_overlay.draw import Annotator
from fer_overlay.pipeline import run_live

WAIT = 10.0   # s; only a broken loop ever waits this long
COLOUR = (10, 200, 60)


def wait(event: threading.Event) -> None:
    assert event.wait(WAIT), "the analysis thread never got there"


class GatedAnalyzer:
    """``analyze(frame)`` says it started, then waits until the test opens that frame's gate."""

    def __init__(self, frames: int, open_all: bool = False):
        self.started = [threading.Event() for _ in range(frames)]
        self.gates = [threading.Event() for _ in range(frames)]
        self.seen = []
        if open_all:
            for gate in self.gates:
                gate.set()

    def analyze(self, frame):
        self.seen.append(frame.index)
        self.started[frame.index].set()
        wait(self.gates[frame.index])
        return FrameResult(frame.index, frame.timestamp, frame.size, (), ())

    def open(self, *indices):
        for i in indices:
            self.gates[i].set()


class Clock:
    """The time the source says it is."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Sink:
    def __init__(self):
        self.images, self.results = [], []

    def write(self, image, result):
        self.images.append(image)
        self.results.append(result.frame_index if result else None)

    def close(self):
        pass


def frame(index, fps=10.0):
    return Frame(np.full((60, 80, 3), COLOUR, np.uint8), index, index / fps)


def test_every_result_reaches_every_listener_exactly_once_even_while_a_listener_is_slow():
    """Issue 11 item 9: the analysis finished a second frame while the record was still busy
    with the first; the old loop then gave the table the new result twice and never the old."""
    analyzer = GatedAnalyzer(8)
    heard_a, heard_b = [], []

    def slow_listener(result):
        heard_a.append(result.frame_index)
        if result.frame_index == 0:
            analyzer.open(1)          # while this listener works, the analysis finishes frame 1 ...
            wait(analyzer.started[2])  # ... and has started frame 2, so frame 1's result is out

    def source():
        yield frame(0)
        wait(analyzer.started[0])
        yield frame(1)                 # waits for the busy analysis
        analyzer.open(0)
        wait(analyzer.started[1])      # frame 0's result is out
        yield frame(2)                 # the table and the record hear frame 0 here
        for i in range(3, 8):
            yield frame(i)
        analyzer.open(*range(2, 8))

    stats = run_live(source(), analyzer, [], [slow_listener, lambda r: heard_b.append(r.frame_index)],
                     analysis_fps=None)
    assert heard_a == heard_b == analyzer.seen      # each result once, to every listener, in order
    assert stats.analysed == len(heard_a)
    assert stats.frames == 8 == stats.analysed + stats.dropped + stats.skipped + stats.unfinished


def test_the_analysis_rate_is_its_own_and_every_frame_is_accounted_for():
    """Issue 12 and issue 11 item 8: 8 frames/s out, 2 analysed, the rest skipped by the rate."""
    analyzer, clock, sink = GatedAnalyzer(40, open_all=True), Clock(), Sink()

    def source():
        for i in range(40):
            clock.now = i / 8   # binary fractions: due times land exactly on frames
            yield frame(i)
            if i % 4 == 0:
                wait(analyzer.started[i])   # a due frame was taken before the next one comes

    stats = run_live(source(), analyzer, [(Annotator("full"), sink)], clock=clock, analysis_fps=2)
    assert analyzer.seen == list(range(0, 40, 4))
    assert (stats.frames, stats.analysed, stats.dropped, stats.skipped, stats.unfinished) == (40, 10, 0, 30, 0)
    assert all(r is None or r <= i for i, r in enumerate(sink.results))   # never a result from the future


def test_frames_a_busy_analysis_never_took_are_dropped_and_the_numbers_add_up():
    analyzer, clock = GatedAnalyzer(20), Clock()

    def source():
        for i in range(20):
            clock.now = i / 10
            yield frame(i)
            if i == 0:
                wait(analyzer.started[0])
        analyzer.open(*range(20))

    stats = run_live(source(), analyzer, [], clock=clock, analysis_fps=5)
    # Frame 0 is analysed while 1..19 arrive: each waits in its predecessor's place, the
    # last (19) is taken when the analysis is free again or thrown away at the stop.
    assert analyzer.seen[0] == 0 and set(analyzer.seen) <= {0, 19}
    assert stats.frames == 20 == stats.analysed + stats.dropped + stats.skipped + stats.unfinished
    assert stats.analysed == len(analyzer.seen) and stats.skipped == 1   # frame 1: not due, nothing waiting


def test_duration_is_seconds_of_the_clock_not_frames():
    """Issue 11 item 8: ``--duration 2s`` at 5 frames/s is 10 frames, whatever the source's rate."""
    analyzer, clock = GatedAnalyzer(100, open_all=True), Clock()

    def source():
        for i in range(100):
            clock.now = i / 5
            yield frame(i)

    stats = run_live(source(), analyzer, [], clock=clock, duration=2.0, analysis_fps=None)
    assert stats.frames == 10 and stats.seconds == pytest.approx(2.0)
    assert stats.frames == stats.analysed + stats.dropped + stats.skipped + stats.unfinished


def test_shared_outputs_never_show_an_unmasked_frame_before_the_first_result():
    """Issue 11 item 2: until the first analysis is done, blur and aggregate outputs hold a
    frame without a pixel of the screen; the teacher's full preview may show the raw frame."""
    analyzer = GatedAnalyzer(6)
    outputs = {mode: (Annotator(mode), Sink()) for mode in ("aggregate", "blur", "full")}

    def source():
        yield frame(0)
        wait(analyzer.started[0])
        for i in range(1, 4):
            yield frame(i)
        analyzer.open(0)
        wait(analyzer.started[3])   # frame 0's result is out
        for i in range(4, 6):
            yield frame(i)
        analyzer.open(*range(1, 6))

    run_live(source(), analyzer, list(outputs.values()), analysis_fps=None)
    for mode, (_, sink) in outputs.items():
        assert sink.results[:4] == [None] * 4 and sink.results[4] == 0
        raw = [bool((image == COLOUR).all(axis=2).any()) for image in sink.images]
        if mode == "full":
            assert all(raw)
        else:
            assert raw == [False] * 4 + [True] * 2   # masked until the result, the gallery after it
            assert all(image.max() == 255 for image in sink.images[:4])   # the "starting..." note


def test_a_stop_waits_for_the_frame_in_analysis_and_says_when_it_gave_up():
    """Issue 11 item 9: the join no longer gives up silently."""
    analyzer = GatedAnalyzer(3)

    def source():
        yield frame(0)
        wait(analyzer.started[0])

    stats = run_live(source(), analyzer, [], analysis_fps=None, join_seconds=0.05)
    assert (stats.frames, stats.analysed, stats.unfinished) == (1, 0, 1)
    assert "1 still in analysis" in stats.line()
    analyzer.open(0)


# --- through the CLI, as a user runs it --------------------------------------------------------

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from fer_overlay.cli import main  # noqa: E402
from tests.conftest import REPO  # noqa: E402


@pytest.mark.parametrize("value", ["0", "0s", "0m"])
def test_duration_zero_is_refused_in_one_line(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["live", "--duration", value, "--accept-notice", "--no-table"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("error: argument --duration") and "above 0" in err
    assert err.count("\n") == 1


def test_live_duration_is_wall_time_and_the_stop_line_adds_up(xvfb, config_home):
    """``--duration 3s`` at 5 frames/s: about 15 frames in about 3 s (not 3 s' worth of frames
    whatever they took), each frame analysed, dropped or skipped by the analysis rate."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fer_overlay.cli", "live", "--duration", "3s", "--fps", "5",
                           "--analysis-fps", "2", "--no-ocr", "--no-table", "--accept-notice"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "DISPLAY": xvfb})
    assert done.returncode == 0, done.stderr
    line = re.search(r"live: (\d+) frames out: (\d+) analysed, (\d+) dropped \(analysis busy\), "
                     r"(\d+) skipped \(analysis rate\); (\d+) s", done.stderr)
    assert line, done.stderr
    out, analysed, dropped, skipped, seconds = map(int, line.groups())
    assert out == analysed + dropped + skipped and 12 <= out <= 16 and seconds == 3
    assert 4 <= analysed <= 7 and skipped >= out // 2
    assert time.monotonic() - start < 60


def test_ctrl_c_still_delivers_the_finished_results_and_keeps_the_counts():
    analyzer, heard, stats = GatedAnalyzer(3, open_all=True), [], None

    def source():
        yield frame(0)
        wait(analyzer.started[0])
        raise KeyboardInterrupt

    from fer_overlay.pipeline import RunStats
    stats = RunStats()
    with pytest.raises(KeyboardInterrupt):
        run_live(source(), analyzer, [], [lambda r: heard.append(r.frame_index)], analysis_fps=None, stats=stats)
    assert heard == [0] and (stats.frames, stats.analysed, stats.unfinished) == (1, 1, 0)
