"""``fer-overlay batch`` on a local Dask cluster of 2 workers with short generated gallery videos.

Each video is a 2x2 gallery of bundled FER2013 faces, 640x360 at 4 frames/s for a few seconds:
enough for whole seconds and a minute row in the records, small enough for CI on 2 cores.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_overlay.batch import PARTIAL, PLUGIN, RECORDS, SUMMARY, TABLE, content_hash
from fer_overlay.cli import main
from fer_overlay.demo import DemoSource

distributed = pytest.importorskip("distributed", reason="the batch engine (pip install -e '.[test]')")

FPS = 4
LECTURES = ("lecture0", "lecture1", "lecture2")
KILL_AFTER = 9   # frames: the killed worker has committed two seconds of its file


def make_video(path: Path, seed: int, seconds: float) -> Path:
    source = DemoSource(seconds=seconds, fps=FPS, size=(640, 360), rows=2, cols=2, seed=seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, source.size)
    for frame in source:
        writer.write(frame.image)
    writer.release()
    return path


def rows_of(record: Path) -> dict[str, list[tuple]]:
    """A record's numbers, without the session id and the wall-clock times that differ per run."""
    con = sqlite3.connect(record)
    try:
        return {table: [row[1:] for row in con.execute(f"SELECT * FROM {table} ORDER BY 2, 3")]
                for table in ("samples", "class_samples")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """The notice acknowledgement goes to a folder of this module's own."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("home")
        patch.setenv("XDG_CONFIG_HOME", str(home / "config"))
        patch.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three lectures (lecture1 is longer: it is the one whose worker is killed), a corrupt file and,
    in a subfolder, a copy of lecture0 under another name."""
    folder = tmp_path_factory.mktemp("videos")
    for seed, name in enumerate(LECTURES):
        make_video(folder / f"{name}.mp4", seed, seconds=6 if name == "lecture1" else 3)
    (folder / "broken.mp4").write_bytes(b"this is no video" * 64)
    (folder / "spring").mkdir()   # after lecture*.mp4 in the sorted scan: the copy is the second one
    shutil.copy(folder / "lecture0.mp4", folder / "spring" / "copy-of-0.mp4")
    return folder


def analyze_records(videos: Path, folder: Path, *switches: str) -> dict[str, dict]:
    """Each lecture through ``fer-overlay analyze --record``: what batch must reproduce."""
    records = {}
    for name in LECTURES:
        records[name] = folder / f"{name}.db"
        assert main(["analyze", str(videos / f"{name}.mp4"), "--record", str(records[name]), "--no-table",
                     *switches]) == 0
    return {name: rows_of(path) for name, path in records.items()}


@pytest.fixture(scope="module")
def analyzed(videos, config, tmp_path_factory):
    return analyze_records(videos, tmp_path_factory.mktemp("analyze"))


@pytest.fixture(scope="module")
def first_batch(videos, config, tmp_path_factory):
    """``batch FOLDER --out OUT --workers 2``: the local cluster started in-process."""
    out = tmp_path_factory.mktemp("batch")
    return out, main(["batch", str(videos), "--out", str(out), "--workers", "2", "--accept-notice"])


def record_of(out: Path, video: Path) -> Path:
    found = sorted((out / RECORDS).glob(f"*.{content_hash(video)[:16]}.db"))
    assert len(found) == 1, found
    return found[0]


def test_each_record_is_analyzes_record(first_batch, videos, analyzed):
    out, code = first_batch
    assert code == 1   # one file failed: scripts can tell
    for name in LECTURES:
        assert rows_of(record_of(out, videos / f"{name}.mp4")) == analyzed[name], name
        assert len(analyzed[name]["class_samples"]) == (6 if name == "lecture1" else 3)
    assert not list((out / RECORDS).glob(f"*{PARTIAL}*"))


def test_corrupt_file_is_reported_and_the_rest_finish(first_batch, videos):
    out, _ = first_batch
    summary = (out / SUMMARY).read_text()
    failed = summary.split("## Failed")[1]
    assert "broken.mp4" in failed and "not a readable video" in failed
    assert "| analysed | 3 |" in summary and "| failed | 1 |" in summary
    assert "| same content as another input | 1 |" in summary
    assert [line for line in summary.splitlines() if line.startswith("| copy-of-0.mp4 | ")][0].split(" | ")[2] \
        == "same content as another input"
    assert len(list((out / RECORDS).glob("*.db"))) == 3   # the copy was analysed once, as lecture0


def test_table_is_each_records_minutes(first_batch, videos):
    """One row per recording, student and minute; means over the seconds with a face."""
    out, _ = first_batch
    with (out / TABLE).open(newline="") as file:
        rows = list(csv.DictReader(file))
    record = record_of(out, videos / "lecture1.mp4")
    con = sqlite3.connect(record)
    samples = con.execute("SELECT student, p_happy, status FROM samples").fetchall()
    started = con.execute("SELECT started_at FROM sessions").fetchone()[0]
    con.close()
    mine = [r for r in rows if r["recording"] == "lecture1.mp4"]
    assert sorted(r["student"] for r in mine) == sorted({s for s, _, _ in samples}) and len(mine) == 4
    for row in mine:
        happy = [p for s, p, _ in samples if s == row["student"] and p is not None]
        assert float(row["p_happy"]) == pytest.approx(np.mean(happy), abs=1e-4)
        assert int(row["seconds"]) == 6 and row["minute"] == "0"
        assert int(row["seconds_with_face"]) == sum(s == row["student"] and st == "present" for s, _, st in samples)
    # The retention date (30 days by default) on every row.
    import time
    assert {r["keep_until"] for r in mine} == {time.strftime("%Y-%m-%d", time.gmtime(started + 30 * 86400))}
    assert len(rows) == 12 and {r["recording"] for r in rows} == {f"{n}.mp4" for n in LECTURES}


def test_rerun_skips_finished_recordings_by_content(first_batch, videos, tmp_path, capsys):
    """A rerun, with one lecture renamed and the list given as a .txt file, analyses nothing."""
    out, _ = first_batch
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / RECORDS).glob("*.db")}
    # A record of another term, past the 30-day retention: deleted, as the chat notice promises.
    expired = out / RECORDS / f"old.{'0' * 16}.db"
    shutil.copy(record_of(out, videos / "lecture0.mp4"), expired)
    con = sqlite3.connect(expired)
    with con:
        con.execute("UPDATE sessions SET started_at = started_at - 31 * 86400")
    con.close()
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(videos / "lecture2.mp4", renamed)
    listing = tmp_path / "term.txt"
    listing.write_text(f"{videos / 'lecture0.mp4'}\n{videos / 'lecture1.mp4'}\n\n{renamed}\n")
    capsys.readouterr()
    assert main(["batch", str(listing), "--out", str(out), "--accept-notice"]) == 0
    said = capsys.readouterr().err
    assert "3 recording(s): 0 to analyse, 3 finished earlier" in said
    assert "deleted 1 record(s) older than 30 days" in said and not expired.exists()
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / RECORDS).glob("*.db")} == before
    assert "| finished earlier | 3 |" in (out / SUMMARY).read_text()


def test_killed_worker_retried_without_duplicates(videos, config, tmp_path):
    """``--address`` to a cluster of 2 workers; the worker on lecture1 dies after 2 committed seconds.
    With ``--anonymize``: the privacy switches reach the workers as they reach ``analyze``."""
    marker = tmp_path / "killed"

    class KillOnce(distributed.WorkerPlugin):
        """Test only: the first worker to reach frame KILL_AFTER of lecture1 exits at once."""

        def setup(self, worker):
            import os

            import fer_overlay.pipeline as pipeline
            run_offline = pipeline.run_offline

            def dying(source, analyzer, outputs, listeners=(), *, on_frame=None, **kwargs):
                frames = [0]

                def counted():
                    frames[0] += 1
                    on_frame and on_frame()
                    if frames[0] == KILL_AFTER and "lecture1" in str(source._name) and not marker.exists():
                        marker.write_text(str(os.getpid()))
                        os._exit(1)
                return run_offline(source, analyzer, outputs, listeners, on_frame=counted, **kwargs)
            pipeline.run_offline = dying

    folder = tmp_path / "good"
    folder.mkdir()
    for name in LECTURES:
        (folder / f"{name}.mp4").symlink_to(videos / f"{name}.mp4")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(KillOnce(), name="kill-once")
        code = main(["batch", str(folder), "--out", str(out), "--address", cluster.scheduler_address,
                     "--accept-notice", "--anonymize"])
        client.wait_for_workers(2, timeout=60)   # the killed worker's nanny may still be restarting it
        loads = client.run(lambda dask_worker: dask_worker.plugins[PLUGIN].loads)
    assert marker.exists(), "the worker was not killed"
    assert code == 0
    analyzed = analyze_records(videos, tmp_path, "--anonymize")
    for name in LECTURES:
        rows = rows_of(record_of(out, videos / f"{name}.mp4"))
        assert rows == analyzed[name], name
        assert {row[1] for row in rows["samples"]} == {f"Student {i}" for i in range(1, 5)}
    assert not list((out / RECORDS).glob(f"*{PARTIAL}*"))
    # The models were loaded once per worker process (the restarted one included), not per file.
    assert sorted(loads.values()) in ([1, 1], [0, 1])


def test_local_workers_keep_dask_log_quiet():
    """Dask's ERROR lines (a heartbeat in flight at Ctrl-C) would print tracebacks under the bars:
    the local workers log only CRITICAL, and a worker the nanny restarts is quiet too."""
    import logging

    from fer_overlay.batch import connect

    with connect(None, 1) as client:
        before = client.run(lambda: logging.getLogger("distributed").getEffectiveLevel())
        client.restart()
        after = client.run(lambda: logging.getLogger("distributed").getEffectiveLevel())
    assert list(before.values()) == list(after.values()) == [logging.CRITICAL]


@pytest.mark.parametrize("group", [False, True], ids=["kill -INT", "terminal Ctrl-C"])
def test_ctrl_c_keeps_finished_records_and_a_rerun_goes_on(videos, config, tmp_path, group):
    """Ctrl-C once the first record is in: exit 130, every record there complete, no partial file
    left, no traceback; the same command again analyses only what was not finished. A terminal's
    Ctrl-C reaches the whole process group (the Dask workers too); ``kill -INT`` the batch alone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "term"
    folder.mkdir()
    (folder / "lecture0.mp4").symlink_to(videos / "lecture0.mp4")
    make_video(folder / "lecture3.mp4", 3, seconds=300)   # 1,200 frames: still in analysis at the stop
    make_video(folder / "lecture4.mp4", 4, seconds=300)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fer_overlay.cli", "batch", str(folder), "--out", str(out), "--workers", "2",
               "--accept-notice"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "XDG_CONFIG_HOME": str(config / "config")}, start_new_session=group)
    deadline = time.time() + 180
    while not list((out / RECORDS).glob("*.db")):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    said = stdout + stderr
    assert process.returncode == 130 and "Traceback" not in said, said
    assert "stopped: every finished record is complete; run the same command again to go on" in said
    records = sorted((out / RECORDS).glob("*.db"))
    assert records and not list((out / RECORDS).glob(f"*{PARTIAL}*"))
    assert len(records) < 3, "the stop came after every file was done: make the videos longer"
    for record in records:
        with sqlite3.connect(record) as con:
            assert con.execute("select ended_at is not null from sessions").fetchall() == [(1,)]
    summary = (out / SUMMARY).read_text()
    assert f"| analysed | {len(records)} |" in summary and f"| not finished | {3 - len(records)} |" in summary

    again = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "XDG_CONFIG_HOME": str(config / "config")})
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"3 recording(s): {3 - len(records)} to analyse, {len(records)} finished earlier" in again.stdout + again.stderr
    assert len(list((out / RECORDS).glob("*.db"))) == 3


def test_aggregate_only_reaches_the_workers(videos, config, tmp_path):
    """``--aggregate-only``: the workers' records hold the class's numbers and no student's."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "lecture0.mp4").symlink_to(videos / "lecture0.mp4")
    out = tmp_path / "out"
    assert main(["batch", str(folder), "--out", str(out), "--workers", "1", "--accept-notice", "--aggregate-only"]) == 0
    with sqlite3.connect(record_of(out, videos / "lecture0.mp4")) as con:
        counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("samples", "attention_samples", "aliases", "class_samples", "class_attention")}
    assert counts == {"samples": 0, "attention_samples": 0, "aliases": 0, "class_samples": 3, "class_attention": 3}
    with open(out / TABLE, newline="") as table:
        assert list(csv.DictReader(table)) == []
    assert "Privacy switches: --aggregate-only." in (out / SUMMARY).read_text()
