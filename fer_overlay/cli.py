"""``fer-overlay``: the command line. Builds the one Config, wires sources, stages and sinks.

User mistakes (``UserError``) end as one ``error: ...`` line and exit code 2; Ctrl-C ends
a run cleanly with every sink closed, so files already written stay complete.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console

from fer_overlay.errors import UserError
from fer_overlay.notice import RETENTION, human_duration

# Before TensorFlow and OpenCV load: their log lines would break the table and the one-line errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")   # FFmpeg's own lines (NAL units, damaged MBs): quiet

SHARED_FEED_WARNING = ("The virtual camera is visible to everyone in the meeting. Feed mode '{mode}'"
                       "{what}. Choose with --feed-mode aggregate|blur|full.")


def _duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``30d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 30d")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def _age(text: str) -> float:
    """``--older-than``, ``--retention``: a duration above 0 with its unit.

    Both delete sessions, so a bare ``30`` (30 seconds: every session) is refused as the typo it is.
    """
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        raise argparse.ArgumentTypeError(f"{text!r} has no unit; give one, like 30d, 12h, 90m or 3600s")
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration above 0, like 30d")
    return seconds


def _number(convert: Callable[[str], float], meaning: str, *, low: float | None = None,
            above: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: ``convert(text)`` within the bounds (``low``/``high`` inclusive, ``above``
    exclusive), else the parser's one error line saying what is expected."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and (low is None or value >= low) and (above is None or value > above)
                and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {meaning}")
        return value
    return parse


def _run_length(text: str) -> float:
    """``live --duration``: wall-clock seconds above 0 (0 used to mean "forever", which no one meant)."""
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is no run length; give one above 0 like 45m, "
                                         "or leave out --duration to run until Ctrl-C")
    return seconds


def _analysis_rate(text: str) -> float:
    """``--analysis-fps``: analyses per second, above 0."""
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is no rate; give analyses per second above 0, like 4")
    return rate


def _common(parser: argparse.ArgumentParser, outputs: bool = True) -> None:
    if outputs:   # batch writes its own records and shows a progress bar instead
        parser.add_argument("--json", type=Path, help="write per-frame results (JSON Lines; one object for an image)")
        parser.add_argument("--record", type=Path, help="append per-second numbers to this SQLite session file")
        parser.add_argument("--no-table", action="store_true", help="do not show the live table")
    parser.add_argument("--half-life", type=_number(float, "a number of seconds, 0 or more", low=0), default=1.5,
                        help="seconds of label smoothing (default 1.5)")
    parser.add_argument("--detect-width", type=_number(int, "a width in pixels, at least 64", low=64), default=960,
                        help="detect faces at this width (default 960)")
    parser.add_argument("--no-flip", action="store_true",
                        help="no second look (mirror, zoom) at the faces the model is unsure of (faster)")
    parser.add_argument("--model", type=Path, help="emotion model (.tflite or .keras); default: the bundled one")
    parser.add_argument("--exclude", default="",
                        help="comma-separated students (names or tile keys like r2c3) to leave out entirely")
    parser.add_argument("--roster", type=Path, help="text file of participant names, one a line: corrects OCR")
    parser.add_argument("--ocr-lang", default="",
                        help="languages of the names, Tesseract codes joined by + (e.g. kor+eng; "
                             "default: every language Tesseract has)")
    parser.add_argument("--no-ocr", action="store_true",
                        help="do not read names from the tiles: students are tile keys")
    parser.add_argument("--anonymize", action="store_true",
                        help="show and keep pseudonyms (Student 1, 2, ...) instead of names everywhere")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="keep no per-student rows anywhere: class-level numbers only")
    parser.add_argument("--flag-negative", type=_number(float, "a share from 0 to 1, like 0.5", low=0, high=1),
                        default=0.5,
                        help="flag a student negative for at least this share of ... (default 0.5)")
    parser.add_argument("--for", dest="flag_for", type=_duration, default=60.0,
                        help="... this long (default 60s); flagged rows are highlighted in the table")
    parser.add_argument("--retention", type=_age, default=RETENTION,
                        help="with --record: delete the sessions older than this from the file when the run "
                             "starts (default 30d; 'fer-overlay notice --record' promises the same)")
    parser.add_argument("--signals", choices=("emotions", "attention", "both"), default="both",
                        help="what to infer: 'attention' = head turned towards the screen or away, face there "
                             "or not, camera on or off, and loads no emotion model (default both)")
    parser.add_argument("--flag-away", type=_number(float, "a share from 0 to 1, like 0.5", low=0, high=1),
                        default=0.5,
                        help="flag a student not looking (head away or no face) for at least this share of "
                             "the --for window (default 0.5)")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other user mistake: one ``error:`` line with the fix, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fer-overlay", description="Live emotion overlay for lecture gallery views.")
    sub = parser.add_subparsers(dest="command", required=True)

    live = sub.add_parser("live", help="watch the screen (or a webcam) live")
    where = live.add_mutually_exclusive_group()
    where.add_argument("--monitor", type=int, default=1, help="monitor number (see 'fer-overlay monitors')")
    where.add_argument("--region", help="X,Y,W,H screen region, e.g. the Zoom gallery area")
    where.add_argument("--window", metavar="TITLE",
                       help="the window whose title contains TITLE (e.g. 'Zoom Meeting'), followed when it moves")
    where.add_argument("--webcam", type=int, help="webcam index instead of the screen")
    live.add_argument("--fps", type=_number(float, "a frame rate above 0, like 10", above=0), default=10.0,
                      help="grab rate and output rate (default 10)")
    live.add_argument("--virtual-cam", action="store_true", help="send the feed to a virtual camera")
    live.add_argument("--feed-mode", choices=("aggregate", "blur", "full"), default="aggregate",
                      help="what meeting participants see on the virtual camera (default aggregate)")
    live.add_argument("--preview", action="store_true", help="show a preview window (teacher only)")
    live.add_argument("--mjpeg", type=_number(int, "a port number from 1 to 65535 (0: any free port)", low=0,
                                              high=65535),
                      metavar="PORT", help="serve the annotated feed at http://127.0.0.1:PORT/")
    live.add_argument("--bind", default="127.0.0.1", help="address for --mjpeg (default loopback only)")
    live.add_argument("--out", type=Path, help="also write the annotated feed to this video file (needs --save-frames)")
    live.add_argument("--save-frames", action="store_true",
                      help="confirm that --out may store students' faces in a file")
    live.add_argument("--duration", type=_run_length,
                      help="stop after this much wall-clock time (e.g. 45m; a number alone is seconds)")
    live.add_argument("--analysis-fps", type=_analysis_rate,
                      help="analyses per second, at most --fps (default 4: expressions change over seconds, "
                           "and fewer analyses leave the CPU to the meeting app)")
    live.add_argument("--accept-notice", action="store_true", help="accept the responsible-use notice (scripted use)")
    _common(live)
    live.set_defaults(handler=cmd_live)

    analyze = sub.add_parser("analyze", help="analyse a video file or a screenshot")
    analyze.add_argument("input", type=Path)
    analyze.add_argument("--out", type=Path, help="annotated video or image")
    analyze.add_argument("--mode", choices=("full", "blur", "aggregate"), default="full",
                         help="annotation of --out (default full)")
    _common(analyze)
    analyze.set_defaults(handler=cmd_analyze)

    batch = sub.add_parser(
        "batch", help="analyse many recordings (files, folders, .txt lists) on a Dask cluster",
        description="Analyses every recording as 'analyze --record' would, on a local Dask cluster (default) or "
                    "an existing one (--address): one session record per recording in OUT/records, a per-student "
                    "per-minute table (OUT/minutes.csv) and a one-page summary (OUT/summary.md). A recording "
                    "already finished in OUT (same content, any name) is not analysed again.")
    batch.add_argument("inputs", nargs="+", type=Path, help="video files, folders of them, or .txt lists of paths")
    batch.add_argument("--out", type=Path, required=True, help="folder for the records, table and summary")
    batch.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="worker processes of the local cluster (default: one per core)")
    batch.add_argument("--address", help="join the Dask scheduler at this address (e.g. tcp://10.0.0.5:8786); "
                                         "OUT and the inputs must be on a file system every worker sees")
    batch.add_argument("--accept-notice", action="store_true", help="accept the responsible-use notice (scripted use)")
    _common(batch, outputs=False)
    batch.set_defaults(handler=cmd_batch)

    check = sub.add_parser(
        "check", help="before class: one grab (or a screenshot) analysed and drawn, to see that everyone is found",
        description="Grabs the screen once (or reads IMAGE), runs the whole analysis and writes a picture with every "
                    "tile's box, its student's name (or tile key) and state, and every face found; prints the table "
                    "and a one-line summary. The picture shows the students' faces: it is your own file, like "
                    "'analyze --out'; keep it to yourself and delete it when done.")
    source = check.add_mutually_exclusive_group()
    source.add_argument("image", nargs="?", type=Path, help="a screenshot (PNG/JPEG) instead of a screen grab")
    source.add_argument("--monitor", type=int, default=1, help="monitor number (see 'fer-overlay monitors')")
    source.add_argument("--region", help="X,Y,W,H screen region")
    source.add_argument("--window", metavar="TITLE", help="the window whose title contains TITLE")
    check.add_argument("--out", type=Path, default=Path("check.png"),
                       help="annotated picture (default check.png); it shows the students' faces: your own file")
    check.add_argument("--accept-notice", action="store_true", help="accept the responsible-use notice (scripted use)")
    _common(check)
    check.set_defaults(handler=cmd_check)

    demo = sub.add_parser("demo", help="run on a bundled gallery clip (no screen needed)")
    demo.add_argument("--out", type=Path, default=Path("demo-annotated.mp4"))
    demo.add_argument("--seconds", type=_number(float, "a number of seconds above 0", above=0), default=10.0)
    demo.add_argument("--mode", choices=("full", "blur", "aggregate"), default="full")
    _common(demo)
    demo.set_defaults(handler=cmd_demo)

    monitors = sub.add_parser("monitors", help="list monitors and their geometry")
    monitors.set_defaults(handler=cmd_monitors)

    notice = sub.add_parser("notice", help="print a notice to paste into the meeting chat")
    notice.add_argument("--record", action="store_true", help="say that per-second numbers are kept")
    notice.add_argument("--retention", type=_age, default=RETENTION,
                        help="with --record: say that sessions older than this are deleted (default 30d; "
                             "give runs the same --retention)")
    notice.add_argument("--signals", choices=("emotions", "attention", "both"), default="both",
                        help="say what is inferred (attention: head pose and presence only, no emotion)")
    notice.set_defaults(handler=cmd_notice)

    report = sub.add_parser("report", help="after-class HTML report of a recorded session")
    report.add_argument("database", type=Path)
    report.add_argument("--out", type=Path, default=Path("report"))
    report.add_argument("--session", type=int, help="session id (default: the latest)")
    report.add_argument("--csv", type=Path, help="also write per-student per-second rows as CSV")
    report.add_argument("--flag-negative", type=_number(float, "a share from 0 to 1, like 0.5", low=0, high=1),
                        default=0.5, help="flag a negative share at or above this")
    report.add_argument("--for", dest="flag_for", type=_duration, default=60.0, help="... sustained this long (60s)")
    report.add_argument("--flag-absent", type=_duration, default=300.0, help="flag absence longer than this (5m)")
    report.add_argument("--flag-away", type=_number(float, "a share from 0 to 1, like 0.5", low=0, high=1),
                        default=0.5, help="flag not looking (head away or no face) for this share of --for")
    report.set_defaults(handler=cmd_report)

    purge = sub.add_parser("purge", help="delete recorded sessions older than a bound")
    purge.add_argument("database", type=Path)
    purge.add_argument("--older-than", type=_age, required=True, help="with its unit: 30d, 12h, 90m or 3600s")
    purge.add_argument("--yes", action="store_true", help="delete more than one session without asking")
    purge.set_defaults(handler=cmd_purge)
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # soft_wrap: a command or a path in a message is never broken over two lines (80 columns when piped).
    console = Console(stderr=True, soft_wrap=True)
    # A closed terminal (SIGHUP), a logout or a service manager (SIGTERM) stop a run like Ctrl-C:
    # every file closed and complete, the session record ended.
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {stop: signal.signal(stop, _interrupt) for stop in stops} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        return args.handler(args, console) or 0
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("stopped")
        return 130
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


# ---------------------------------------------------------------- outputs, checked before any work

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v")
"""Containers the annotated video can be written in (OpenCV's FFmpeg takes mp4v in each)."""


def _check_file(path: Path | None, option: str, suffixes: Iterable[str] = ()) -> None:
    """``path`` can be created or overwritten as a file of a type we write.

    Every output is checked before anything is opened or created, so one bad path never
    leaves the other outputs half-written, nor an analysis done for nothing.
    """
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    suffixes = sorted(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: cannot write {path.suffix or 'extension-less'} files; "
                        f"use {', '.join(suffixes)}")
    _check_folder(path.parent, option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} is read-only; choose another file")


def _check_folder(folder: Path, option: str, path: Path) -> None:
    """``folder`` (where output ``path`` goes) exists, is a folder and may be written in."""
    if not folder.exists():
        raise UserError(f"{option} {path}: folder {folder} does not exist; create it or choose another")
    if not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: folder {folder} is not writable; choose another")


def _check_out_folder(path: Path, option: str) -> None:
    """An output folder: made with its parents if missing, so the nearest existing one must be writable."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder name")
    _check_folder(next(p for p in (path, *path.parents) if p.exists() or p == p.parent), option, path)


def _check_outputs(args, out_suffixes: Iterable[str]) -> None:
    """A run's ``--out``, ``--json`` and ``--record``; a record file there already must be a session file."""
    _check_file(args.out, "--out", out_suffixes)
    _check_file(args.json, "--json")
    _check_file(args.record, "--record")
    if args.record and args.record.is_file() and args.record.stat().st_size:
        from fer_overlay.record import connect
        connect(args.record, readonly=True).close()


def _deleted(count: int, seconds: float, path: Path) -> str:
    return f"deleted {count} session{'' if count == 1 else 's'} older than {human_duration(seconds)} from {path}"


# ---------------------------------------------------------------- commands


def cmd_monitors(args, console: Console) -> int:
    from fer_overlay.sources import list_monitors
    for number, m in enumerate(list_monitors()):
        label = "all monitors" if number == 0 else f"monitor {number}"
        print(f"{number}: {label:<13} {m['width']}x{m['height']} at {m['left']},{m['top']}")
    return 0


def cmd_notice(args, console: Console) -> int:
    from fer_overlay.notice import chat_notice
    print(chat_notice(record=args.record, signals=args.signals, retention=args.retention))
    return 0


def cmd_purge(args, console: Console) -> int:
    """Deleting is final: more than one session is deleted only when confirmed (``--yes`` or y)."""
    import time

    from fer_overlay.record import count_older, purge
    now = time.time()
    old = count_older(args.database, args.older_than, now=now)
    if old > 1 and not args.yes:
        what = f"{old} sessions older than {human_duration(args.older_than)} from {args.database}"
        if not sys.stdin.isatty():
            raise UserError(f"purge would delete {what}; add --yes to confirm (no terminal to ask)")
        if input(f"Delete {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            console.print(f"kept all sessions in {args.database}", highlight=False, markup=False, soft_wrap=True)
            return 1
    removed = purge(args.database, args.older_than, now=now)
    console.print(_deleted(removed, args.older_than, args.database), highlight=False, markup=False, soft_wrap=True)
    return 0


def cmd_report(args, console: Console) -> int:
    from fer_overlay.report import FlagRule, load_session, write_csv, write_report
    _check_out_folder(args.out, "--out")
    _check_file(args.csv, "--csv")
    session = load_session(args.database, args.session)
    rules = FlagRule(negative=args.flag_negative, for_seconds=args.flag_for, absent_seconds=args.flag_absent,
                     away=args.flag_away)
    index = write_report(session, args.out, rules)
    if args.csv:
        write_csv(session, args.csv)
    console.print(f"report: {index}")
    return 0


def _analyzer(args, console: Console):
    from fer_overlay.config import Config
    from fer_overlay.core import FlagRule, Signals
    from fer_overlay.names import read_roster
    from fer_overlay.pipeline import Analyzer
    roster = ()
    if args.roster:
        try:
            roster = read_roster(args.roster.read_text(encoding="utf-8").splitlines())
        except OSError as exc:
            raise UserError(f"cannot read the roster {args.roster}: {exc.strerror or exc}") from exc
    config = Config(half_life=args.half_life, detect_width=args.detect_width, flip_average=not args.no_flip,
                    model=args.model, ocr=not args.no_ocr, roster=roster, anonymize=args.anonymize,
                    ocr_languages=tuple(lang for lang in args.ocr_lang.split("+") if lang),
                    flag=FlagRule(negative=args.flag_negative, for_seconds=args.flag_for, away=args.flag_away),
                    signals=Signals(args.signals))
    exclude = frozenset(s.strip() for s in args.exclude.split(",") if s.strip())
    analyzer = Analyzer.from_config(config, exclude=exclude,
                                    notify=lambda message: console.print(message, highlight=False))
    by_name = sorted(e for e in exclude if not re.fullmatch(r"r\d+c\d+", e, re.IGNORECASE))
    if by_name and not (analyzer.names and analyzer.names.available):
        # Silently analysing an opted-out student would break their trust: refuse instead.
        raise UserError(f"--exclude {', '.join(by_name)}: excluding by name needs names read from the tiles "
                        "(Tesseract, without --no-ocr); use tile keys like r2c3 instead")
    return analyzer


def _listeners(args, stack: contextlib.ExitStack, console: Console, source_name: str, single: bool = False):
    """Table, JSON and record: each gets every analysis result (privacy filters applied)."""
    from fer_overlay.pipeline import aggregate_only
    listeners: list[Callable] = []
    if args.json:
        from fer_overlay.sinks import JsonLinesSink, result_to_dict
        if single:
            import json
            listeners.append(lambda r: args.json.write_text(json.dumps(result_to_dict(r), indent=1) + "\n"))
        else:
            json_sink = stack.enter_context(contextlib.closing(JsonLinesSink(args.json)))
            listeners.append(lambda r: json_sink.write(None, r))
    if args.record:
        from fer_overlay.record import Recorder, purge
        if args.record.is_file() and args.record.stat().st_size:   # what the chat notice promises
            deleted = purge(args.record, args.retention)
            if deleted:
                console.print(_deleted(deleted, args.retention, args.record), highlight=False, markup=False,
                              soft_wrap=True)
        recorder = stack.enter_context(Recorder(args.record, source=source_name,
                                                aggregate_only=args.aggregate_only))
        listeners.append(recorder.add)
    if not args.no_table:
        from fer_overlay.dashboard import LiveTable
        table = stack.enter_context(LiveTable(console=Console()))
        listeners.append(table.update)
    if args.aggregate_only:
        listeners = [lambda r, listen=listen: listen(aggregate_only(r)) for listen in listeners]
    return listeners


def cmd_analyze(args, console: Console) -> int:
    from fer_overlay.pipeline import RunStats
    from fer_overlay.sources import IMAGE_SUFFIXES, open_file

    _check_outputs(args, IMAGE_SUFFIXES if args.input.suffix.lower() in IMAGE_SUFFIXES else VIDEO_SUFFIXES)
    source = open_file(args.input)
    analyzer = _analyzer(args, console)
    stats, stopped = RunStats(), False
    try:
        analyze_source(args, console, source, analyzer, stats=stats)
    except KeyboardInterrupt:
        stopped = True
    return _finish(args, console, stopped, f"analysed {stats.analysed} frame(s) in {stats.seconds:.1f} s"
                   + (f"; annotated output: {args.out}" if args.out else ""))


def _finish(args, console: Console, stopped: bool, line: str) -> int:
    """Every run ends alike, finished or stopped (Ctrl-C, SIGTERM, SIGHUP; outputs already closed):
    what it did, the record's summary, and exit 0, or 130 when stopped, as a shell expects of an
    interrupted command (a script can tell a stopped run from a finished one)."""
    console.print(f"stopped: {line}" if stopped else line, highlight=False, soft_wrap=True)
    _summary(args, console)
    return 130 if stopped else 0


def analyze_source(args, console: Console, source, analyzer, on_frame: Callable[[], None] | None = None,
                   stats=None):
    """``analyze``'s run of one opened file (closed here): ``--out``, table, JSON, record, every frame.

    ``batch`` workers run each recording through here too, so a batch record is analyze's record.
    """
    from fer_overlay.draw import Annotator
    from fer_overlay.pipeline import run_offline
    from fer_overlay.sinks import ImageFileSink, VideoFileSink
    from fer_overlay.sources import ImageSource

    single = isinstance(source, ImageSource)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        outputs = []
        if args.out:
            sink = ImageFileSink(args.out) if single else VideoFileSink(args.out, source.fps)
            stack.callback(sink.close)
            outputs.append((Annotator(args.mode), sink))
        listeners = _listeners(args, stack, console, str(args.input), single)
        if on_frame is None and args.no_table and not single:   # the table shows progress; else a bar does
            from rich.progress import Progress
            # Piped, a bar shows nothing but leaves a blank line: only on a terminal.
            progress = stack.enter_context(Progress(console=console, transient=True,
                                                    disable=not console.is_terminal))
            task = progress.add_task(f"analysing {args.input.name}", total=source.frame_count or None)
            on_frame = lambda: progress.advance(task)  # noqa: E731
        return run_offline(source, analyzer, outputs, listeners, on_frame=on_frame, stats=stats)


def cmd_batch(args, console: Console) -> int:
    from fer_overlay.batch import run_batch
    _confirm_notice(args, console)
    return run_batch(args, console)


def cmd_demo(args, console: Console) -> int:
    from fer_overlay.demo import DemoSource
    from fer_overlay.draw import Annotator
    from fer_overlay.pipeline import RunStats, run_offline
    from fer_overlay.sinks import VideoFileSink

    _check_outputs(args, VIDEO_SUFFIXES)
    source = DemoSource(seconds=args.seconds)
    analyzer = _analyzer(args, console)
    stats, stopped = RunStats(), False
    try:
        with contextlib.ExitStack() as stack:
            sink = VideoFileSink(args.out, source.fps)
            stack.callback(sink.close)
            listeners = _listeners(args, stack, console, "demo")
            run_offline(source, analyzer, [(Annotator(args.mode), sink)], listeners, stats=stats)
    except KeyboardInterrupt:
        stopped = True
    return _finish(args, console, stopped, f"demo: {stats.frames} frames analysed in {stats.seconds:.1f} s "
                   f"({stats.frames / max(stats.seconds, 1e-9):.1f} frames/s) -> {args.out}")


def _confirm_notice(args, console: Console) -> None:
    from fer_overlay import notice
    if notice.accepted():
        return
    console.print(notice.legal_notice(args.signals), highlight=False)
    if args.accept_notice:
        notice.remember_acceptance()
        return
    if not sys.stdin.isatty():
        raise UserError("the responsible-use notice above has not been accepted; "
                        f"run 'fer-overlay {args.command}' once in a terminal, or pass --accept-notice")
    if input("Type 'yes' to confirm you have read this and may use fer-overlay here: ").strip().lower() != "yes":
        raise UserError("notice not accepted; nothing was analysed")
    notice.remember_acceptance()


def cmd_live(args, console: Console) -> int:
    from fer_overlay.draw import Annotator
    from fer_overlay.pipeline import ANALYSIS_FPS, RunStats, run_live
    from fer_overlay.sources import VideoSource

    if args.out and not args.save_frames:
        raise UserError(f"--out {args.out} would store every student's face in a video file; "
                        "add --save-frames to confirm, or leave out --out")
    _check_outputs(args, VIDEO_SUFFIXES)
    _confirm_notice(args, console)
    analyzer = _analyzer(args, console)   # a broken model fails before the screen is opened
    if args.webcam is not None:
        source, name = VideoSource(args.webcam, fps=args.fps), f"webcam {args.webcam}"
    else:
        source, name = _screen_source(args, console, args.fps)
    teacher = Annotator("full")
    stats, stopped = RunStats(), False
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        outputs = _live_outputs(args, stack, console, source, teacher)
        listeners = _listeners(args, stack, console, name)
        try:
            run_live(source, analyzer, outputs, listeners, duration=args.duration,
                     analysis_fps=min(args.analysis_fps or ANALYSIS_FPS, args.fps), stats=stats)
        except KeyboardInterrupt:
            stopped = True
    return _finish(args, console, stopped, f"live: {stats.line()}")


def _screen_source(args, console: Console, fps: float):
    """The monitor, region or window the user named, and a name for it in the session record."""
    from fer_overlay.sources import ScreenSource, WindowSource, parse_region
    if args.window is not None:
        source = WindowSource(args.window, fps=fps,
                              notify=lambda message: console.print(message, highlight=False, soft_wrap=True))
        x, y, w, h = source.window.rect() or (0, 0, *source.size)
        console.print(f"following window {source.window.title!r} ({w}x{h} at {x},{y})", highlight=False, soft_wrap=True)
        return source, f"window {source.window.title}"
    region = parse_region(args.region) if args.region else None
    source = ScreenSource(monitor=args.monitor, region=region, fps=fps)
    return source, f"region {args.region}" if region else f"monitor {args.monitor}"


def cmd_check(args, console: Console) -> int:
    import dataclasses

    from fer_overlay.dashboard import check_summary
    from fer_overlay.draw import Annotator
    from fer_overlay.errors import SourceError
    from fer_overlay.sinks import ImageFileSink
    from fer_overlay.sources import IMAGE_SUFFIXES, ImageSource

    _check_outputs(args, IMAGE_SUFFIXES)   # a bad output fails before anything is grabbed
    sink = ImageFileSink(args.out)
    _confirm_notice(args, console)
    analyzer = _analyzer(args, console)
    source, name = (ImageSource(args.image), str(args.image)) if args.image else _screen_source(args, console, 1.0)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        frame = next(iter(source), None)
        if frame is None:
            raise SourceError(f"nothing to check: {name} could not be grabbed")
        result = analyzer.analyze(frame)
        for listen in _listeners(args, stack, console, name, single=True):
            listen(result)
        # --aggregate-only keeps names out of every file, this one included: tiles keep their keys.
        shown = result if not args.aggregate_only else dataclasses.replace(result, students=tuple(
            dataclasses.replace(s, id=s.tile.key) for s in result.students if s.tile))
        sink.write(Annotator("check", banner=False).annotate(frame.image, shown), shown)
        sink.close()
    print(check_summary(result))
    console.print(f"check picture: {args.out} (it shows the students' faces: keep it to yourself)",
                  highlight=False, soft_wrap=True)
    _summary(args, console)
    return 0


def _summary(args, console: Console) -> None:
    """After a recorded run: what the after-class report will say, in four lines."""
    if not args.record:
        return
    from fer_overlay.core import FlagRule
    from fer_overlay.report import load_session, summary_text
    rules = FlagRule(negative=args.flag_negative, for_seconds=args.flag_for,   # the user's, as in the table
                     away=args.flag_away)
    console.print(summary_text(load_session(args.record), rules), highlight=False)
    console.print(f"full report: fer-overlay report {args.record} --out report/", highlight=False)


def _live_outputs(args, stack, console, source, teacher):
    from fer_overlay.draw import Annotator
    from fer_overlay.sinks import MjpegSink, PreviewSink, VideoFileSink, VirtualCameraSink
    width, height = source.size
    feed = Annotator(args.feed_mode)   # what everyone in the meeting may see: one annotation for all shared outputs
    outputs = []
    if args.virtual_cam:
        summary, label = ("the class's attention counts", "looking/away label") if args.signals == "attention" \
            else ("the class mood", "emotion label")
        what = {"aggregate": f" shows only {summary}, no per-student marks",
                "blur": " pixelates the whole picture, tile by tile, and labels each face found",
                "full": f" shows every student's face box and {label}"}[args.feed_mode]
        console.print(SHARED_FEED_WARNING.format(mode=args.feed_mode, what=what), highlight=False)
        sink = VirtualCameraSink(*feed.output_size((width, height)), args.fps)   # the banner strip included
        stack.callback(sink.close)
        outputs.append((feed, sink))
    if args.preview:
        sink = PreviewSink("fer-overlay (teacher preview)")
        stack.callback(sink.close)
        outputs.append((teacher, sink))
    if args.mjpeg is not None:
        shared = args.bind not in ("127.0.0.1", "localhost", "::1")
        if shared:
            console.print(f"warning: the MJPEG feed on {args.bind}:{args.mjpeg} is reachable from other "
                          f"computers; it uses feed mode '{args.feed_mode}'")
        sink = MjpegSink(args.mjpeg, host=args.bind)
        stack.callback(sink.close)
        outputs.append((feed if shared else teacher, sink))
        console.print(f"MJPEG feed: http://{args.bind}:{sink.port}/")
    if args.out:
        sink = VideoFileSink(args.out, args.fps, teacher.output_size((width, height)),
                             notify=lambda message: console.print(message, highlight=False, soft_wrap=True))
        stack.callback(sink.close)
        outputs.append((teacher, sink))
    return outputs


if __name__ == "__main__":
    sys.exit(main())
