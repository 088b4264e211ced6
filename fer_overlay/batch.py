"""Many recordings on a Dask cluster: ``fer-overlay batch``.

A term of lectures is hundreds of files of an hour or more; one process would take days.
Dask's ``distributed`` runs the files on worker processes of this machine (a ``LocalCluster``
started in-process, nothing to set up) or of an existing cluster (``--address``), restarts a
worker that dies and runs its file again. Each file goes through ``analyze``'s own code path
(``cli.analyze_source``), so a batch record is exactly the record ``analyze --record`` writes.

Every recording is keyed by its content (SHA-256), not its name: its record is written to a
temporary file and moved into place atomically when the analysis has finished, so a record
under ``records/`` is always complete, a rerun skips it, and a retried file never adds rows
to a half-written one. The combined table and the summary are built from finished records only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from rich.console import Console

from fer_overlay.core import EMOTIONS
from fer_overlay.errors import UserError

try:
    from distributed import WorkerPlugin
except ImportError:   # the engine is an extra: most users analyse one lecture at a time
    raise UserError("batch needs Dask's distributed engine: pip install 'fer-overlay[batch]'") from None

RECORDS = "records"               # DIR/records/<name>.<key>.db: one finished session record per recording
TABLE = "minutes.csv"             # per student, per minute, across recordings
SUMMARY = "summary.md"
PARTIAL = ".partial"              # suffix of a record being written (its WAL files add -wal, -shm)
PLUGIN = "fer-overlay-analyzer"   # the worker plugin that keeps the loaded models
PROGRESS = "fer-overlay-progress"   # event topic: minutes of video done in a file
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
LIST_SUFFIXES = {".txt", ".lst"}  # a text file of paths, one a line
KEY_LENGTH = 16                   # hex digits of the SHA-256 in a record's name (64 bits)
REPORT_EVERY = 2.0                # s between a worker's progress events for one file

# The batch's own options; every other one is ``analyze``'s and goes to the workers as it is.
BATCH_OPTIONS = {"command", "handler", "inputs", "out", "workers", "address", "accept_notice"}


class State(Enum):
    DONE = "analysed"
    EARLIER = "finished earlier"   # a record of the same content was already in DIR: not analysed again
    SAME = "same content as another input"   # analysed once, under the first input's name
    FAILED = "failed"
    STOPPED = "not finished"       # Ctrl-C came first


@dataclass(frozen=True)
class Recording:
    path: Path
    sha256: str       # "" when the file could not be read to hash it
    minutes: float    # of video, from the file's header (0 when unknown)

    @property
    def key(self) -> str:
        return self.sha256[:KEY_LENGTH]


@dataclass(frozen=True)
class Outcome:
    recording: Recording
    state: State
    record: Path | None = None
    error: str = ""
    seconds: float = 0.0      # wall time of the analysis on the worker (what the rest of a term will cost)
    notes: tuple[str, ...] = field(default=())   # the analyzer's messages (e.g. no Tesseract)


# ---------------------------------------------------------------- inputs


def collect(inputs: Iterable[Path]) -> list[Path]:
    """Files as given; folders' videos (recursively, sorted); a .txt file's paths, one a line.

    A path named on the command line must exist (a typo is a mistake to fix now); a listed path
    that is gone is kept, so that it is reported among the failed files while the rest finish.
    """
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            found += [path.parent / line.strip() for line in lines if line.strip() and not line.startswith("#")]
        elif path.exists():
            found.append(path)
        else:
            raise UserError(f"{path}: no such file or folder; give recordings, folders of them or a .txt list")
    unique = dict.fromkeys(p.resolve() for p in found)   # one file named twice is analysed once
    return list(unique)


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file, read in 1 MiB pieces (a lecture is gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def video_minutes(path: Path) -> float:
    """Length from the container's header; 0 where it cannot be read (the worker will say why)."""
    import cv2

    from fer_overlay.sources import quiet_native_stderr
    with quiet_native_stderr():   # FFmpeg's own complaint about a corrupt file would break the bar
        capture = cv2.VideoCapture(str(path))
    try:
        fps, frames = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    return frames / fps / 60 if fps > 0 and frames > 0 else 0.0


def record_name(recording: Recording) -> str:
    return f"{recording.path.stem}.{recording.key}.db"


def finished_records(out: Path) -> dict[str, Path]:
    """Content key -> the finished record of that content in ``out`` (under any file name)."""
    records = sorted((out / RECORDS).glob("*.db"), reverse=True)
    return {path.name.rsplit(".", 2)[-2]: path for path in records if path.name.count(".") >= 2}


# ---------------------------------------------------------------- worker side


class AnalyzerPlugin(WorkerPlugin):
    """Lives in each worker process and loads the models once: every file gets a fresh analyzer
    (no memory of the previous recording) that shares them. One per thread, since a LiteRT
    interpreter serves one thread at a time (run workers with ``--nthreads 1`` to use it once).
    """

    name = PLUGIN

    def __init__(self, settings: argparse.Namespace):
        self.settings = settings
        self.loads = 0   # models loaded in this process: one per thread, so 1 for a worker of 1 thread
        self._analyzers: dict[int, object] = {}
        self._lock = threading.Lock()
        self.notes = io.StringIO()

    def __getstate__(self) -> dict:
        return {"settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["settings"])

    def teardown(self, worker) -> None:
        self._analyzers.clear()

    def analyzer(self):
        from fer_overlay.cli import _analyzer
        thread = threading.get_ident()
        with self._lock:
            if thread not in self._analyzers:
                self._analyzers[thread] = _analyzer(self.settings, Console(file=self.notes, width=200))
                self.loads += 1
            return self._analyzers[thread]


def analyse(recording: Recording, out: Path) -> Outcome:
    """Runs on a worker: one recording, as ``analyze --record`` would, into a finished record.

    The record is written under a name of its own for this attempt and moved into place only
    when complete: a worker killed mid-file leaves a ``.partial`` file that nothing reads.
    """
    from distributed import get_worker

    from fer_overlay.cli import analyze_source
    from fer_overlay.sources import open_file

    worker = get_worker()
    plugin: AnalyzerPlugin = worker.plugins[PLUGIN]
    start = time.perf_counter()
    final = out / RECORDS / record_name(recording)
    partial = final.with_name(f"{final.name}.{uuid.uuid4().hex[:8]}{PARTIAL}")
    console = Console(file=io.StringIO(), width=200)
    args = argparse.Namespace(**vars(plugin.settings), input=recording.path, out=None, mode="full",
                              json=None, record=partial, no_table=True)
    try:
        analyzer = plugin.analyzer().fresh()
        source = open_file(recording.path)
        analyze_source(args, console, source, analyzer, on_frame=_reporter(worker, recording, source.fps))
        os.replace(partial, final)
    except Exception as exc:   # reported in the summary; the other files go on
        _remove_partial(partial)
        error = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return Outcome(recording, State.FAILED, error=error.splitlines()[0] if error else type(exc).__name__,
                       seconds=time.perf_counter() - start)
    notes = tuple(line for line in plugin.notes.getvalue().splitlines() if line.strip())
    return Outcome(recording, State.DONE, final, seconds=time.perf_counter() - start, notes=notes)


def _reporter(worker, recording: Recording, fps: float):
    """``on_frame`` for one file: minutes of video done, sent to the client every few seconds."""
    frames, last = [0], [time.monotonic()]

    def on_frame() -> None:
        frames[0] += 1
        now = time.monotonic()
        if now - last[0] >= REPORT_EVERY:
            last[0] = now
            worker.log_event(PROGRESS, {"key": recording.key, "minutes": frames[0] / fps / 60})
    return on_frame


def _remove_partial(partial: Path) -> None:
    for path in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm"), Path(f"{partial}-journal")):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- client side


@contextlib.contextmanager
def connect(address: str | None, workers: int) -> Iterator:
    """A Dask client: of the cluster at ``address``, or of a local one started here and stopped after."""
    from distributed import Client, LocalCluster
    if address:
        try:
            client = Client(address, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach a Dask scheduler at {address} ({type(exc).__name__}); start one "
                            "with 'dask scheduler' and workers with 'dask worker ADDRESS', or leave out "
                            "--address to use this machine") from None
        with client:
            yield client
        return
    # One single-threaded process per core: the analysis is CPU-bound Python, and a process that
    # dies (out of memory, a native crash) takes only its own file down.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        client.register_plugin(QuietWorker(), name=QuietWorker.name)
        yield client


class QuietWorker(WorkerPlugin):
    """Dask's own log off (but CRITICAL) in each local worker process, restarted ones included.

    A worker that dies reaches the user as its file's failure in the summary; Dask's log would
    add only noise, and at Ctrl-C a heartbeat in flight when the scheduler stops prints a
    harmless traceback (``silence_logs`` covers a worker's life, not its last heartbeat).
    Not used with ``--address``: that cluster's logging is its owner's.
    """

    name = "fer-overlay-quiet"

    def setup(self, worker) -> None:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)


def run_batch(args, console: Console) -> int:
    """The ``batch`` command: analyse what is not finished yet, then the table and the summary."""
    from fer_overlay.cli import _analyzer
    out: Path = args.out
    try:
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror}") from None
    paths = collect(args.inputs)
    if not paths:
        raise UserError("no recordings found in the inputs; give video files, folders of them or a .txt list")
    settings = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in BATCH_OPTIONS})
    # A broken model or an --exclude that cannot work fails here, before any cluster starts.
    _analyzer(settings, Console(file=io.StringIO()))
    _remove_leftovers(out)
    _expire(out, args.retention, console)   # before the keys are read: an expired recording is not finished
    outcomes: dict[Path, Outcome] = {}
    todo: dict[str, Recording] = {}      # content key -> the first input with that content
    copies: list[Recording] = []
    finished = finished_records(out)
    for recording in _identify(paths, console):
        if not recording.sha256:
            reason = "not found" if not recording.path.exists() else "cannot be read (permissions?)"
            outcomes[recording.path] = Outcome(recording, State.FAILED, error=reason)
        elif recording.key in finished:
            outcomes[recording.path] = Outcome(recording, State.EARLIER, finished[recording.key])
        elif recording.key in todo:
            copies.append(recording)
        else:
            todo[recording.key] = recording
    console.print(f"{len(paths)} recording(s): {len(todo)} to analyse, "
                  f"{sum(o.state is State.EARLIER for o in outcomes.values())} finished earlier", highlight=False)
    interrupted = False
    if todo:
        try:
            for outcome in _run(list(todo.values()), out, settings, args, console):
                outcomes[outcome.recording.path] = outcome
        except KeyboardInterrupt:
            interrupted = True
    # A worker already in a file when Ctrl-C came may still have finished its record before the
    # cluster stopped: that file is done, and the summary says so, as a rerun will.
    finished = finished_records(out) if interrupted else {}
    for recording in todo.values():
        outcomes.setdefault(recording.path, Outcome(recording, State.DONE, finished[recording.key])
                            if recording.key in finished else Outcome(recording, State.STOPPED))
    for twin in copies:
        first = outcomes[todo[twin.key].path]
        outcomes[twin.path] = Outcome(twin, State.SAME if first.state is State.DONE else first.state,
                                      first.record, first.error)
    ordered = [outcomes[p] for p in paths]
    rows = write_table(ordered, out / TABLE, args.retention)
    write_summary(ordered, out / SUMMARY, args, rows)
    _remove_leftovers(out)
    failed = [o for o in ordered if o.state is State.FAILED]
    for outcome in failed:
        console.print(f"failed: {outcome.recording.path}: {outcome.error}", highlight=False, soft_wrap=True)
    counts = ", ".join(f"{sum(o.state is state for o in ordered)} {state.value}" for state in State
                       if state in (State.DONE, State.FAILED) or any(o.state is state for o in ordered))
    console.print(f"{counts}; table: {out / TABLE} ({rows} rows); summary: {out / SUMMARY}",
                  highlight=False, soft_wrap=True)
    if interrupted:
        console.print("stopped: every finished record is complete; run the same command again to go on",
                      highlight=False)
        return 130
    return 1 if failed else 0


def _identify(paths: list[Path], console: Console) -> list[Recording]:
    """Content key and length of every file, with a bar: hashing a term of lectures takes a while."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    recordings = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("reading recordings", total=len(paths))
        for path in paths:
            try:
                recordings.append(Recording(path, content_hash(path), video_minutes(path)))
            except OSError:
                recordings.append(Recording(path, "", 0.0))
            progress.advance(task)
    return recordings


def _run(todo: list[Recording], out: Path, settings: argparse.Namespace, args, console: Console) -> Iterator[Outcome]:
    """Submit every file, yield outcomes as they finish, with a bar of files and minutes of video."""
    from distributed import as_completed
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    total = sum(r.minutes for r in todo)
    with connect(args.address, args.workers) as client, \
            Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                     TextColumn("{task.fields[amount]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                     console=console) as progress:
        files = progress.add_task("files", total=len(todo), amount=f"0/{len(todo)}")
        minutes = progress.add_task("minutes of video", total=total or None, amount=f"0/{total:.1f}")
        running: dict[str, float] = {}   # key -> minutes done in a file still being analysed
        done = [0.0]
        shown: set[str] = set()          # the analyzer's notes, each printed once
        lock = threading.Lock()          # events arrive on the client's own thread

        def show() -> None:
            with lock:
                now = done[0] + sum(running.values())
            progress.update(minutes, completed=now, amount=f"{now:.1f}/{total:.1f}")

        def on_event(event) -> None:
            message = event[1]
            with lock:
                running[message["key"]] = message["minutes"]
            show()

        client.register_plugin(AnalyzerPlugin(settings), name=PLUGIN)
        client.subscribe_topic(PROGRESS, on_event)
        futures = {client.submit(analyse, r, out.resolve(), key=f"fer-overlay-{r.key}", pure=False): r
                   for r in todo}
        try:
            for count, future in enumerate(as_completed(futures), 1):
                recording = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:   # e.g. KilledWorker: it died on this file again and again
                    outcome = Outcome(recording, State.FAILED, error=f"{type(exc).__name__}: the worker "
                                      "analysing it died each time (out of memory?)")
                with lock:
                    running.pop(recording.key, None)
                    done[0] += recording.minutes
                show()
                progress.update(files, completed=count, amount=f"{count}/{len(todo)}")
                for note in (n for n in outcome.notes if n not in shown):
                    shown.add(note)
                    progress.console.print(note, highlight=False)
                yield outcome
        finally:
            client.unsubscribe_topic(PROGRESS)
            client.cancel(list(futures))


def _remove_leftovers(out: Path) -> None:
    """Records of attempts that never finished (a worker killed, Ctrl-C): nothing reads them."""
    for path in (out / RECORDS).glob(f"*{PARTIAL}*"):
        path.unlink(missing_ok=True)


def _expire(out: Path, retention: float, console: Console) -> None:
    """Delete the records past the retention period, as ``analyze --record`` does with its file.

    What the chat notice promises ("deleted after 30 days") holds for a term's records too. The rows
    are overwritten first (``purge``), then the file goes; its recording counts as not analysed.
    """
    from fer_overlay.record import count_older, purge
    expired = [path for path in sorted((out / RECORDS).glob("*.db")) if count_older(path, retention)]
    for path in expired:
        purge(path, retention)
        path.unlink()
    if expired:
        console.print(f"deleted {len(expired)} record(s) older than {retention / 86400:g} days (--retention) "
                      f"from {out / RECORDS}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- across recordings


TABLE_COLUMNS = ("recording", "content_key", "student", "minute", "seconds", "seconds_with_face",
                 *(f"p_{e}" for e in EMOTIONS), "dominant", "keep_until")


def minute_rows(record: Path, retention: float) -> list[dict]:
    """Per student and minute of one finished record: seconds seen, seconds with a face, mean
    probabilities over the seconds with a face, the dominant expression and the date to delete by."""
    from fer_overlay.record import PROB_COLUMNS, connect as open_record
    con = open_record(record, readonly=True)
    try:
        session, source, started = con.execute(
            "SELECT id, source, started_at FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        means = ", ".join(f"AVG({c})" for c in PROB_COLUMNS)
        found = con.execute(
            f"SELECT student, second / 60, COUNT(*), SUM(status = 'present'), {means} FROM samples "
            "WHERE session_id = ? GROUP BY student, second / 60 ORDER BY student, second / 60", (session,)).fetchall()
    except sqlite3.Error as exc:
        raise UserError(f"{record}: cannot read the record ({exc}); delete it and run the batch again") from None
    finally:
        con.close()
    keep_until = time.strftime("%Y-%m-%d", time.gmtime(started + retention))
    key = record.name.rsplit(".", 2)[-2]
    rows = []
    for student, minute, seconds, with_face, *probs in found:
        dominant = EMOTIONS[max(range(len(probs)), key=lambda i: probs[i])] if probs[0] is not None else ""
        rows.append(dict(zip(TABLE_COLUMNS, (
            Path(source).name, key, student, minute, seconds, with_face,
            *("" if p is None else round(p, 4) for p in probs), dominant, keep_until))))
    return rows


def write_table(outcomes: list[Outcome], path: Path, retention: float) -> int:
    """One CSV of every finished record's per-student minutes; returns the number of rows.

    Written to a temporary file and moved into place, so an interrupted run never leaves half a table.
    """
    partial = path.with_name(path.name + PARTIAL)
    count = 0
    records = dict.fromkeys(o.record for o in outcomes if o.record)   # one content given twice: its rows once
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, TABLE_COLUMNS)
        writer.writeheader()
        for record in records:
            rows = minute_rows(record, retention)
            writer.writerows(rows)
            count += len(rows)
    os.replace(partial, path)
    return count


def _record_facts(record: Path, retention: float) -> tuple[int, float, str]:
    """Students, minutes recorded and the keep-until date of a finished record."""
    from fer_overlay.record import connect as open_record
    con = open_record(record, readonly=True)
    try:
        session, started = con.execute("SELECT id, started_at FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        students = con.execute("SELECT COUNT(DISTINCT student) FROM samples WHERE session_id = ?",
                               (session,)).fetchone()[0]
        seconds = con.execute("SELECT COUNT(*) FROM class_samples WHERE session_id = ?", (session,)).fetchone()[0]
    finally:
        con.close()
    return students, seconds / 60, time.strftime("%Y-%m-%d", time.gmtime(started + retention))


def write_summary(outcomes: list[Outcome], path: Path, args, rows: int) -> Path:
    """One page of Markdown: what was analysed, what was finished earlier, what failed and why."""
    by_state = {state: [o for o in outcomes if o.state is state] for state in State}
    switches = [name for name, on in (("--aggregate-only", args.aggregate_only), ("--anonymize", args.anonymize),
                                      (f"--exclude {args.exclude}", bool(args.exclude)), ("--no-ocr", args.no_ocr))
                if on]
    days = f"{args.retention / 86400:g}d"
    lines = [
        f"# fer-overlay batch: {len(outcomes)} recording(s)",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by fer-overlay batch on "
        + (f"the Dask cluster at {args.address}" if args.address else f"a local Dask cluster of {args.workers} "
           "worker(s)") + f". Privacy switches: {', '.join(switches) or 'none'}.",
        "",
        "| | recordings | minutes of video |",
        "|---|---|---|",
        *(f"| {state.value} | {len(found)} | {sum(o.recording.minutes for o in found):.1f} |"
          for state, found in by_state.items() if found),
        "",
        "## Recordings",
        "",
        "| file | content key | state | minutes | analysis s | students | record | keep until |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        recording = outcome.recording
        spent = f"{outcome.seconds:.0f}" if outcome.state in (State.DONE, State.FAILED) else "-"
        if outcome.record:
            students, minutes, keep = _record_facts(outcome.record, args.retention)
            facts = f"{minutes:.1f} | {spent} | {students} | {RECORDS}/{outcome.record.name} | {keep}"
        else:
            facts = f"{recording.minutes:.1f} | {spent} | - | - | -"
        lines.append(f"| {recording.path.name} | {recording.key or '-'} | {outcome.state.value} | {facts} |")
    if by_state[State.FAILED]:
        lines += ["", "## Failed", ""]
        lines += [f"- `{o.recording.path}`: {o.error}" for o in by_state[State.FAILED]]
    lines += [
        "",
        f"Per student and minute: `{TABLE}` ({rows} rows"
        + ("; none with --aggregate-only, which keeps no per-student rows" if args.aggregate_only else "") + ").",
        f"Records hold per-second numbers, never images. Delete each by its keep-until date ({days} after it "
        f"was recorded): `fer-overlay purge {RECORDS}/NAME.db --older-than {days}`.",
        "Rerunning the same command analyses only what is not finished; a renamed copy of a finished "
        "recording is recognised by its content and not analysed again.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
