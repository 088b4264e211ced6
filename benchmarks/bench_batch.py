"""Throughput of ``fer-overlay batch``: minutes of video analysed per minute, with 1 and 2 workers.

Generates ``--files`` gallery recordings (the demo's 5x5 gallery of bundled FER2013 faces with
names and two cameras off, 1280x720, ``--fps`` frames/s, ``--seconds`` long each), then runs
``fer-overlay batch`` on them through the CLI, once per worker count, each into a fresh folder, so
every run analyses every file. Wall time includes starting the local cluster and the workers'
model loads. CPU time is the workers' (every child process, sampled while it runs), start-up
included: on a machine shared with other work the wall figures vary with the load, CPU much less.

    python benchmarks/bench_batch.py --files 4 --seconds 60 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import psutil

from fer_overlay.batch import RECORDS
from fer_overlay.cli import main
from fer_overlay.demo import DemoSource


def make_videos(folder: Path, files: int, seconds: float, fps: float) -> list[Path]:
    paths = []
    for seed in range(files):
        source = DemoSource(seconds=seconds, fps=fps, seed=seed)
        path = folder / f"lecture{seed:02d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, source.size)
        for frame in source:
            writer.write(frame.image)
        writer.release()
        paths.append(path)
    return paths


@contextmanager
def children_cpu():
    """CPU seconds of this process's children (the cluster's workers) while the block runs.

    Sampled every 0.2 s, the last sample of each process kept: ``getrusage(RUSAGE_CHILDREN)``
    misses workers that the cluster has not reaped by the time the run returns.
    """
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            for child in psutil.Process().children(recursive=True):
                try:
                    times = child.cpu_times()
                except psutil.Error:
                    continue
                seen[child.pid] = times.user + times.system
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total = [0.0]
    try:
        yield total
    finally:
        stop.set()
        sampler.join()
        total[0] = sum(seen.values())


def recorded_seconds(out: Path) -> int:
    total = 0
    for record in (out / RECORDS).glob("*.db"):
        con = sqlite3.connect(record)
        total += con.execute("SELECT COUNT(*) FROM class_samples").fetchone()[0]
        con.close()
    return total


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each recording")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the recordings")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="e.g. 1 2 1 2 to see the spread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")   # the notice, accepted for this run only
        videos = tmp / "videos"
        videos.mkdir()
        make_videos(videos, args.files, args.seconds, args.fps)
        minutes = args.files * args.seconds / 60
        print(f"{args.files} recordings x {args.seconds:g} s, 1280x720 5x5 gallery at {args.fps:g} frames/s "
              f"({minutes:.1f} min of video); {os.cpu_count()} CPU cores")
        print("| workers | wall s | minutes of video per minute | worker CPU s | CPU s per minute of video | load |")
        print("|---|---|---|---|---|---|")
        for run, workers in enumerate(args.workers):
            out = tmp / f"out{run}"   # a fresh folder: every run analyses every file
            start = time.perf_counter()
            with children_cpu() as cpu:
                code = main(["batch", str(videos), "--out", str(out), "--workers", str(workers), "--accept-notice"])
            wall, cpu = time.perf_counter() - start, cpu[0]
            assert code == 0 and recorded_seconds(out) == round(args.files * args.seconds), "batch did not finish"
            print(f"| {workers} | {wall:.1f} | {minutes / (wall / 60):.2f} | {cpu:.1f} | {cpu / minutes:.1f} "
                  f"| {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main_bench()
