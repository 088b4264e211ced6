"""The live loop: the feed keeps the source's frames while a slow analysis drops and counts."""

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
    stats = run_live(frames(60, 0.01), analyzer, [(out, out)], [heard.append])
    assert out.frames == list(range(60))                 # the feed never waits for analysis
    assert stats.frames == 60 and stats.dropped > 20     # analysis ran on the newest frames only
    assert len(analyzer.seen) + stats.dropped <= 60
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
