"""The after-class report: load a recorded session, find what stood out, write HTML.

Everything works on whole-session numpy arrays (seconds x students x emotions), so a
90-minute lecture with 50 students (270k rows) loads and reports in a few seconds.
The analysis functions are pure; ``write_report`` only draws and formats their output.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from numpy.lib.stride_tricks import sliding_window_view
from rich.console import Console
from rich.progress import Progress

from fer_overlay import attention_report
from fer_overlay.attention_report import AttentionSession
from fer_overlay.core import EMOTIONS, NEGATIVE, FlagRule
from fer_overlay.dashboard import natural_key
from fer_overlay.draw import EMOTION_STYLES
from fer_overlay.record import PROB_COLUMNS, SHARE_COLUMNS, RecordError, connect

EMOTION_COLORS: dict[str, str] = EMOTION_STYLES   # one palette for overlay, table and report
NO_FACE_COLOR = "#262626"   # dark like a camera-off tile; neutral is the grey

# Stack order of the mood chart: the negative emotions share one band at the bottom.
_STACK = ("angry", "disgust", "fear", "sad", "neutral", "surprise", "happy")

# Status codes of Session.status.
MISSING, PRESENT, NO_FACE, CAMERA_OFF = 0, 1, 2, 3
_STATUS_CODES = {"present": PRESENT, "no_face": NO_FACE, "camera_off": CAMERA_OFF}
_STATUS_TEXT = {code: text for text, code in _STATUS_CODES.items()}

_NEGATIVE_INDEX = np.array([EMOTIONS.index(e) for e in EMOTIONS if e in NEGATIVE])


@dataclass(frozen=True, eq=False)
class Session:
    """One recorded session as dense arrays over seconds 0..last of session time."""

    id: int
    name: str | None
    source: str | None
    started_at: float              # unix seconds
    ended_at: float | None         # None after a crash
    aggregate_only: bool
    seconds: np.ndarray            # (T,) int: 0, 1, ..., last recorded second
    students: np.ndarray           # (S,) str, natural order (r1c2 before r1c10)
    probabilities: np.ndarray      # (T, S, 7) float32 mean smoothed probabilities; NaN without a face
    status: np.ndarray             # (T, S) int8: MISSING (no row), PRESENT, NO_FACE or CAMERA_OFF
    shares: np.ndarray             # (T, 7) class share of faces per emotion; NaN without faces
    faces: np.ndarray              # (T,) mean faces per analysed frame
    attention: AttentionSession | None = None   # head pose and presence; None if not recorded
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)   # student -> ids shown before


@dataclass(frozen=True)
class Flag:
    student: str
    kind: str                      # "negative" | "absent" (no face) | "camera_off"
    start: int                     # seconds since the session start
    end: int                       # exclusive

    @property
    def what(self) -> str:
        return {"negative": "negative", "absent": "no face", "camera_off": "camera off"}[self.kind]

    def describe(self) -> str:
        return f"{self.what} {mmss(self.start)}–{mmss(self.end)}"


@dataclass(frozen=True)
class StudentSummary:
    student: str
    dominant: str | None           # most frequent emotion over the seconds with a face
    negative_share: float          # of the seconds with a face
    present_seconds: int
    absent_seconds: int            # seconds with status no_face
    flags: tuple[Flag, ...]
    camera_off_seconds: int = 0    # seconds with status camera_off


@dataclass(frozen=True)
class Moment:
    """A point of the lecture worth a look, e.g. ``12:30 negative expressions rose from 5% to 40%``."""

    second: int
    kind: str                      # "negative" | "absent"
    detail: str

    @property
    def time(self) -> str:
        return mmss(self.second)


def mmss(seconds: float) -> str:
    """Seconds since the lecture start as ``mm:ss`` (minutes keep counting past 59)."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


# --- loading ---------------------------------------------------------------------------------

def load_session(path: str | Path, session_id: int | None = None) -> Session:
    """Read one session (default: the latest) into arrays; ``RecordError`` if it cannot."""
    con = connect(path, readonly=True)
    try:
        where, args = ("WHERE id = ?", (session_id,)) if session_id is not None else ("", ())
        head = con.execute("SELECT id, name, source, started_at, ended_at, aggregate_only FROM sessions "
                           f"{where} ORDER BY id DESC LIMIT 1", args).fetchone()
        if head is None:
            raise RecordError(f"{path}: no session {session_id}" if session_id is not None
                              else f"{path} holds no sessions")
        sid = head[0]
        rows = con.execute(f"SELECT second, student, status, {', '.join(PROB_COLUMNS)} FROM samples "
                           "WHERE session_id = ?", (sid,)).fetchall()
        class_rows = con.execute(f"SELECT second, faces, {', '.join(SHARE_COLUMNS)} FROM class_samples "
                                 "WHERE session_id = ?", (sid,)).fetchall()
        attention_rows = attention_report.fetch(con, sid)
        aliases: dict[str, tuple[str, ...]] = {}
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'aliases'").fetchone():   # older files: none
            for alias, current in con.execute("SELECT alias, student FROM aliases WHERE session_id = ? "
                                              "ORDER BY alias", (sid,)):
                aliases[current] = (*aliases.get(current, ()), alias)
    except sqlite3.Error as exc:   # a damaged file can fail past the header check
        raise RecordError(f"{path}: cannot read the session ({exc})") from None
    finally:
        con.close()

    columns = list(zip(*rows)) or [()] * (3 + len(EMOTIONS))
    class_columns = list(zip(*class_rows)) or [()] * (2 + len(EMOTIONS))
    second = np.array(columns[0], dtype=np.int64)
    class_second = np.array(class_columns[0], dtype=np.int64)
    last = max(second.max(initial=-1), class_second.max(initial=-1))
    seconds = np.arange(last + 1)

    names = sorted(set(columns[1]), key=natural_key)
    index = {name: i for i, name in enumerate(names)}
    student = np.fromiter(map(index.__getitem__, columns[1]), dtype=np.int64, count=len(rows))
    probabilities = np.full((len(seconds), len(names), len(EMOTIONS)), np.nan, dtype=np.float32)
    probabilities[second, student] = np.array(columns[3:], dtype=np.float32).T
    status = np.full((len(seconds), len(names)), MISSING, dtype=np.int8)
    # A state this version does not know (a newer writer's) reads as no face, as camera_off did before.
    status[second, student] = [_STATUS_CODES.get(text, NO_FACE) for text in columns[2]]

    shares = np.full((len(seconds), len(EMOTIONS)), np.nan)
    shares[class_second] = np.array(class_columns[2:], dtype=float).T
    faces = np.zeros(len(seconds))
    faces[class_second] = np.array(class_columns[1], dtype=float)
    return Session(sid, head[1], head[2], head[3], head[4], bool(head[5]), seconds, np.array(names, dtype=str),
                   probabilities, status, shares, faces,
                   attention_report.arrays(attention_rows, len(seconds), np.array(names, dtype=str)), aliases)


# --- analysis --------------------------------------------------------------------------------

def labels(session: Session) -> np.ndarray:
    """(T, S) emotion index of each student-second with a face (argmax), -1 otherwise."""
    probs = session.probabilities
    has_face = (session.status == PRESENT) & ~np.isnan(probs[..., 0])
    return np.where(has_face, np.argmax(np.nan_to_num(probs, nan=-1.0), axis=-1), -1).astype(np.int8)


def student_summaries(session: Session, rules: FlagRule = FlagRule()) -> tuple[StudentSummary, ...]:
    """Per student: dominant emotion, negative share, seconds present and absent, flags."""
    label = labels(session)
    counts = (label[..., None] == np.arange(len(EMOTIONS))).sum(axis=0)          # (S, 7)
    present = counts.sum(axis=1)
    negative = counts[:, _NEGATIVE_INDEX].sum(axis=1)
    absent = (session.status == NO_FACE).sum(axis=0)
    camera_off = (session.status == CAMERA_OFF).sum(axis=0)
    flags = negative_flags(session, rules, label) + absent_flags(session, rules)
    return tuple(
        StudentSummary(str(name), EMOTIONS[int(np.argmax(counts[i]))] if present[i] else None,
                       float(negative[i] / present[i]) if present[i] else 0.0, int(present[i]), int(absent[i]),
                       tuple(f for f in flags if f.student == name), int(camera_off[i]))
        for i, name in enumerate(session.students))


def negative_flags(session: Session, rules: FlagRule, label: np.ndarray | None = None) -> tuple[Flag, ...]:
    """Spans where a student's negative share over any ``for_seconds`` window reached ``negative``.

    A flag runs from the first to the last negative second of overlapping qualifying windows,
    so a student sad from 02:00 to 03:30 is flagged ``02:00–03:30``.
    """
    label = labels(session) if label is None else label
    negative = np.isin(label, _NEGATIVE_INDEX)                                   # (T, S)
    window = max(int(round(rules.for_seconds)), 1)
    if len(negative) < window:
        return ()
    cumulative = np.concatenate([np.zeros((1, negative.shape[1]), int), np.cumsum(negative, axis=0)])
    qualifies = cumulative[window:] - cumulative[:-window] >= rules.negative * window - 1e-9   # (T-W+1, S)
    # Mark every second covered by a qualifying window: +1 at its start, -1 past its end.
    edges = np.zeros((len(negative) + 1, negative.shape[1]), int)
    edges[:len(qualifies)] += qualifies
    edges[window:window + len(qualifies)] -= qualifies
    covered = np.cumsum(edges, axis=0)[:-1] > 0
    flags = []
    for s, name in enumerate(session.students):
        for start, end in runs(covered[:, s]):
            hits = np.flatnonzero(negative[start:end, s])
            if not len(hits):   # --flag-negative 0: every window qualifies, but no second was negative
                continue
            flags.append(Flag(str(name), "negative", start + int(hits[0]), start + int(hits[-1]) + 1))
    return tuple(flags)


def absent_flags(session: Session, rules: FlagRule) -> tuple[Flag, ...]:
    """Uninterrupted no-face (kind ``absent``) or camera-off spans longer than ``absent_seconds``."""
    return tuple(Flag(str(name), kind, start, end)
                 for kind, code in (("absent", NO_FACE), ("camera_off", CAMERA_OFF))
                 for s, name in enumerate(session.students)
                 for start, end in runs(session.status[:, s] == code) if end - start > rules.absent_seconds)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D mask, end exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` seconds along axis 0, ignoring NaN (NaN where all are)."""
    valid = ~np.isnan(values)
    kernel = np.ones(window)

    def smooth(column: np.ndarray) -> np.ndarray:
        # "full" then centre-slice: mode="same" returns `window` values for a shorter series.
        start = (window - 1) // 2
        return np.convolve(column, kernel, mode="full")[start:start + len(column)]

    total = np.apply_along_axis(smooth, 0, np.where(valid, values, 0.0))
    count = np.apply_along_axis(smooth, 0, valid.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1e-12), np.nan)


def class_mood(session: Session, window: int = 10) -> np.ndarray:
    """(T, 7) share of faces per emotion, smoothed over ``window`` seconds."""
    return rolling_mean(session.shares, window) if len(session.seconds) else session.shares


def negative_moments(session: Session, rise: float = 0.25, within: int = 30, window: int = 10) -> tuple[Moment, ...]:
    """Times the class negative share rose by ``rise`` or more over the minimum of the last ``within`` s.

    The rise is detected on the smoothed share (so one noisy second does not count); the moment
    starts at the first raw second that crossed baseline + rise, i.e. when the change happened.
    """
    if not len(session.seconds):
        return ()
    raw = session.shares[:, _NEGATIVE_INDEX].sum(axis=1)          # NaN where no faces
    smooth = rolling_mean(raw, window)
    padded = np.concatenate([np.full(within, np.inf), np.where(np.isnan(smooth), np.inf, smooth)])
    history = sliding_window_view(padded, within)[:len(raw)]     # row t: smoothed[t-within : t]
    baseline = history.min(axis=1)
    rising = np.nan_to_num(smooth - baseline, nan=0.0, neginf=0.0) >= rise
    moments = []
    for start, end in runs(rising):
        lowest = start - within + int(np.argmin(history[start]))
        crossed = np.flatnonzero(np.nan_to_num(raw[lowest:start + 1], nan=0.0) >= baseline[start] + rise)
        second = lowest + int(crossed[0]) if len(crossed) else start
        peak = float(np.nanmax(smooth[start:end]))
        moments.append(Moment(second, "negative", f"negative expressions rose from {baseline[start]:.0%} "
                                                  f"to {peak:.0%} of faces"))
    return tuple(moments)


def absent_moments(session: Session, share: float = 0.3, min_seconds: int = 5) -> tuple[Moment, ...]:
    """Times when at least ``share`` of the listed students had no face (or camera off) for ``min_seconds``."""
    listed = (session.status != MISSING).sum(axis=1)
    faceless = np.isin(session.status, (NO_FACE, CAMERA_OFF)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        absent = np.where(listed > 0, faceless / np.maximum(listed, 1), 0.0)
    return tuple(Moment(start, "absent", f"{absent[start:end].max():.0%} of students without a face "
                                         f"for {mmss(end - start)}")
                 for start, end in runs(absent >= share - 1e-9) if end - start >= min_seconds)


def find_moments(session: Session) -> tuple[Moment, ...]:
    """Negative rises and mass absences, in time order."""
    return tuple(sorted(negative_moments(session) + absent_moments(session), key=lambda m: m.second))


def heatmap_step(seconds: int) -> int:
    """Seconds per heatmap column for a session ``seconds`` long: a minute for a lecture, finer for
    a short session (a 20-s test run gets 20 one-second columns, not one minute-wide one)."""
    return next((step for step in (1, 2, 5, 10, 15, 30) if seconds <= 60 * step), 60)


def dominant(session: Session, step: int = 60) -> np.ndarray:
    """(S, C) most frequent emotion per student per ``step`` seconds; ``len(EMOTIONS)`` where no face."""
    label = labels(session)
    columns = -(-len(label) // step)
    padded = np.full((columns * step, label.shape[1]), -1, dtype=np.int8)
    padded[:len(label)] = label
    counts = (padded.reshape(columns, step, -1)[..., None] == np.arange(len(EMOTIONS))).sum(axis=1)   # (C, S, 7)
    return np.where(counts.sum(axis=-1) > 0, np.argmax(counts, axis=-1), len(EMOTIONS)).T


def time_axis(seconds: float) -> tuple[float, str]:
    """(seconds per axis unit, axis label) for a plot over a session ``seconds`` long."""
    return (1.0, "seconds from start") if seconds < 120 else (60.0, "minutes from start")


# --- output ----------------------------------------------------------------------------------

def write_report(session: Session, out_dir: str | Path, rules: FlagRule = FlagRule(), *,
                 console: Console | None = None) -> Path:
    """Write ``index.html`` into ``out_dir``, its plots inside it (one file to keep or send); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if attention_report.attention_only(session.attention):   # no emotion anywhere: attention and presence only
        index = out / "index.html"
        index.write_text(attention_report.page(session, rules, _CSS), encoding="utf-8")
        return index
    with _progress(console, 4) as step:
        step("analysing")
        summaries = student_summaries(session, rules)
        moments = find_moments(session)
        step("class mood plot")
        mood = png_uri(_plot_mood(session))
        step("student heatmap")
        heatmap = png_uri(_plot_heatmap(session)) if len(session.students) else None
        step("html")
        index = out / "index.html"
        page = _html(session, rules, summaries, moments, mood, heatmap)
        if session.attention is not None and session.attention.signals.attention:   # --signals both
            page = page.replace("\n</body>", "\n" + attention_report.html_section(session.attention, rules)
                                + "\n</body>")
        index.write_text(page, encoding="utf-8")
    return index


def write_csv(session: Session, path: str | Path) -> Path:
    """Per-student per-second rows: second, time, student, status, p_<emotion> (empty without a face)."""
    path = Path(path)
    t, s = np.nonzero(session.status != MISSING)
    probs = session.probabilities[t, s]
    text = np.char.mod("%.4f", probs)
    text[np.isnan(probs)] = ""
    status = [_STATUS_TEXT[code] for code in session.status[t, s].tolist()]
    times = [mmss(x) for x in range(len(session.seconds))]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("second", "time", "student", "status", *PROB_COLUMNS))
        writer.writerows((second, times[second], session.students[student], state, *p)
                         for second, student, state, p in zip(t.tolist(), s.tolist(), status, text.tolist()))
    return path


@contextlib.contextmanager
def _progress(console: Console | None, total: int) -> Iterator[Callable[[str], None]]:
    """A step callback: a Rich progress bar with a console, nothing without one."""
    if console is None:
        yield lambda description: None
        return
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("report", total=total)
        done = iter(range(total + 1))
        yield lambda description: progress.update(task, description=description, completed=next(done))
        progress.update(task, completed=total)


def png_uri(figure: Figure) -> str:
    """The figure as a ``data:`` URI for an ``<img src>``: the report stays one self-contained file."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot_mood(session: Session) -> Figure:
    figure = Figure(figsize=(11, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    unit, label = time_axis(len(session.seconds))
    mood = np.nan_to_num(class_mood(session))
    # Second s covers [s, s + 1): the last second's shares run on to the end of the session.
    times = np.append(session.seconds, len(session.seconds)) / unit
    mood = np.vstack([mood, mood[-1:]]) if len(mood) else mood
    if mood.any():
        order = [EMOTIONS.index(e) for e in _STACK]
        axes.stackplot(times, mood[:, order].T, labels=_STACK, colors=[EMOTION_COLORS[e] for e in _STACK],
                       linewidth=0)
        handles, names = axes.get_legend_handles_labels()
        axes.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        axes.text(0.5, 0.5, "no faces recorded", ha="center", va="center", transform=axes.transAxes)
    # The axis spans the session (seconds 0..T): a 20-s session reads 0-20 s, not 0-1 min.
    axes.set(xlim=(0, max(len(session.seconds), 1) / unit), ylim=(0, 1),
             xlabel=label, ylabel="share of faces", title="Class mood (10 s smoothing)")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    return figure


def _plot_heatmap(session: Session) -> Figure:
    length = len(session.seconds)
    step = heatmap_step(length)
    cells = dominant(session, step)
    unit, label = time_axis(length)
    students = len(session.students)
    figure = Figure(figsize=(11, 1.6 + 0.28 * students), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = ListedColormap([EMOTION_COLORS[e] for e in EMOTIONS] + [NO_FACE_COLOR])
    image = axes.imshow(cells, cmap=colours, vmin=-0.5, vmax=len(EMOTIONS) + 0.5, aspect="auto",
                        interpolation="nearest", extent=(0, cells.shape[1] * step / unit, students - 0.5, -0.5))
    legend = figure.colorbar(image, ax=axes, ticks=range(len(EMOTIONS) + 1), fraction=0.03, pad=0.01)
    legend.ax.set_yticklabels([*EMOTIONS, "no face"], fontsize=8)
    legend.ax.invert_yaxis()   # angry at the top, "no face" at the bottom: the order people read
    axes.set_yticks(range(students), [str(name) for name in session.students], fontsize=8)
    every = "minute" if step == 60 else "second" if step == 1 else f"{step} s"
    # The last column is cut at the session's end: the axis spans exactly the recording.
    axes.set(xlim=(0, max(length, 1) / unit), xlabel=label, title=f"Dominant emotion per student per {every}")
    return figure


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
img { max-width: 100%; display: block; margin: 1em 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flagged { background: #fff3e0; }
.note { background: #eef4fb; border-left: 4px solid #1f77b4; padding: 0.6em 1em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.3em; }
.time { font-family: ui-monospace, monospace; font-weight: bold; margin-right: 0.6em; }
"""


def page_heading(session: Session) -> tuple[str, str]:
    """The report's title and its line of facts (start, length, students, source, a clean end)."""
    title = session.name or f"Session {session.id}"
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.started_at))
    meta = f"{started} · {mmss(len(session.seconds))} recorded · {len(session.students)} students"
    if session.source:
        meta += f" · source: {session.source}"
    if session.ended_at is None:
        meta += " · recording did not end cleanly (the last second may be missing)"
    return title, meta


def _html(session: Session, rules: FlagRule, summaries: tuple[StudentSummary, ...], moments: tuple[Moment, ...],
          mood: str, heatmap: str | None) -> str:
    """The page; ``mood`` and ``heatmap`` are the plots' ``data:`` URIs (no heatmap without students)."""
    esc = html.escape
    title, meta = page_heading(session)
    notes = []
    if not session.faces.any():
        notes.append("No faces were recorded in this session, so there is no mood to report.")
    if session.aggregate_only:
        notes.append("Recorded with --aggregate-only: class-level numbers only, no per-student rows.")
    parts = [f"<h1>{esc(title)}</h1>", f'<p class="meta">{esc(meta)}</p>']
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    parts += ["<h2>Class mood</h2>", f'<img src="{mood}" alt="class mood over time, stacked by emotion">',
              '<p>' + " ".join(f'<span class="swatch" style="background:{EMOTION_COLORS[e]}"></span>{e}'
                               for e in _STACK) + "</p>"]
    parts.append("<h2>Moments</h2>")
    if moments:
        parts.append("<ul>" + "".join(f'<li><span class="time">{m.time}</span>{esc(m.detail)}</li>'
                                      for m in moments) + "</ul>")
    else:
        parts.append("<p>No sharp rise of negative expressions and no mass absence.</p>")
    if heatmap is not None:
        parts += ["<h2>Students</h2>", f'<img src="{heatmap}" alt="dominant emotion per student over time">',
                  _student_table(summaries, session.aliases)]
    parts.append(f'<p class="meta">Flags: negative emotion in at least {rules.negative:.0%} of a '
                 f"{rules.for_seconds:g} s window; no face for more than {rules.absent_seconds:g} s. "
                 "Expressions are not feelings: use this to look again, not to judge.</p>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _student_table(summaries: tuple[StudentSummary, ...], aliases: dict[str, tuple[str, ...]]) -> str:
    """One row a student; the ids they were shown under before (a tile key until their label was
    read, a misreading) under their name, so the teacher can match the live table's rows."""
    rows = []
    for s in summaries:
        before = aliases.get(s.student)
        name = html.escape(s.student) + (f'<br><span class="meta">also shown as {html.escape(", ".join(before))}</span>'
                                         if before else "")
        dominant = (f'<span class="swatch" style="background:{EMOTION_COLORS[s.dominant]}"></span>{s.dominant}'
                    if s.dominant else "—")
        flags = "; ".join(html.escape(f.describe()) for f in s.flags)
        rows.append(f'<tr{" class=flagged" if s.flags else ""}><td>{name}</td><td>{dominant}</td>'
                    f'<td class="num">{s.negative_share:.0%}</td><td class="num">{mmss(s.absent_seconds)}</td>'
                    f'<td class="num">{mmss(s.camera_off_seconds)}</td>'
                    f"<td>{flags}</td></tr>")
    return ("<table><thead><tr><th>student</th><th>dominant</th><th>negative</th><th>no face</th><th>camera off</th>"
            "<th>flags</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def summary_text(session: Session, rules: FlagRule = FlagRule(), moments: int = 5) -> str:
    """The end-of-session summary printed after ``live --record``: duration, mood, moments, flags."""
    if attention_report.attention_only(session.attention):
        return attention_report.summary_text(session, rules)
    shares = np.nanmean(session.shares, axis=0) if len(session.seconds) and not np.isnan(session.shares).all() \
        else np.zeros(len(EMOTIONS))
    negative = float(sum(shares[EMOTIONS.index(e)] for e in NEGATIVE))
    top = sorted(zip(EMOTIONS, shares), key=lambda pair: -pair[1])[:3]
    lines = [f"Session {session.id}: {mmss(len(session.seconds))} recorded, {len(session.students)} students",
             "Class mood: " + ", ".join(f"{name} {share:.0%}" for name, share in top)
             + f"; negative {negative:.0%}"]
    found = find_moments(session)[:moments]
    lines.append("Moments: " + ("; ".join(f"{m.time} {m.detail}" for m in found) if found else "none"))
    flagged = [s for s in student_summaries(session, rules) if s.flags]
    lines.append("Flagged: " + (", ".join(f"{s.student} ({', '.join(f.what for f in s.flags)})" for s in flagged)
                                if flagged else "nobody"))
    if session.attention is not None and session.attention.signals.attention:
        lines += attention_report.summary_lines(session.attention, rules)
    return "\n".join(lines)
