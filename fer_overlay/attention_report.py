"""Attention in the session record and the after-class report: numbers per second, plots, flags.

Kept in tables of their own beside the emotion ones (``CREATE TABLE IF NOT EXISTS``), so a file
recorded before attention signals existed still opens, reports and purges, and an older
fer-overlay still reads a newer file's emotions. ``attention_sessions`` says what a session
inferred: an ``attention`` session has no emotion anywhere, and its report shows none.
"""

from __future__ import annotations

import html
import sqlite3
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fer_overlay.attention import STATE_LABELS, STATE_STYLES, counts
from fer_overlay.core import FlagRule, FrameResult, Signals

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCHEMA = """
CREATE TABLE IF NOT EXISTS attention_sessions (
    session_id INTEGER PRIMARY KEY,    -- sessions.id
    signals TEXT NOT NULL              -- emotions | attention | both: what the session inferred
);
CREATE TABLE IF NOT EXISTS attention_samples (
    session_id INTEGER NOT NULL,
    second INTEGER NOT NULL,
    student TEXT NOT NULL,
    state TEXT NOT NULL,               -- most frequent state of the second: looking | away | no_face | camera_off
    frames INTEGER NOT NULL,           -- analysed frames of the second listing the student
    away_frames INTEGER NOT NULL,      -- of those, frames with the head turned away
    yaw REAL,                          -- mean smoothed head pose, degrees; NULL without a face
    pitch REAL,
    PRIMARY KEY (session_id, second, student)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS class_attention (
    session_id INTEGER NOT NULL,
    second INTEGER NOT NULL,
    looking REAL NOT NULL,             -- mean tiles per frame in each state
    away REAL NOT NULL,
    no_face REAL NOT NULL,
    camera_off REAL NOT NULL,
    PRIMARY KEY (session_id, second)
) WITHOUT ROWID;
"""
TABLES = ("attention_sessions", "attention_samples", "class_attention")
STATES = ("looking", "away", "no_face", "camera_off")   # codes 0..3 of AttentionSession.state; -1: not listed
_MISSING = -1


def write_second(con: sqlite3.Connection, session_id: int, second: int, frames: list[FrameResult],
                 per_student: bool) -> None:
    """One second's attention rows (inside the caller's transaction); nothing for an emotions-only run."""
    signals = frames[0].signals
    con.execute("INSERT OR IGNORE INTO attention_sessions VALUES (?, ?)", (session_id, signals.value))
    if not signals.attention:
        return
    totals = np.array([[counts(r)[s] for s in STATES] for r in frames], float).mean(axis=0)
    con.execute("INSERT INTO class_attention VALUES (?, ?, ?, ?, ?, ?)", (session_id, second, *totals.tolist()))
    if per_student:
        con.executemany("INSERT INTO attention_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        _student_rows(session_id, second, frames))


def _student_rows(session_id: int, second: int, frames: list[FrameResult]) -> list[tuple]:
    states: dict[str, Counter[str]] = {}
    poses: dict[str, list[tuple[float, float]]] = {}
    for result in frames:
        for student in result.students:
            a = student.attention
            if a is None or a.state not in STATES:   # "left": not in the meeting, nothing to sample
                continue
            states.setdefault(student.id, Counter())[a.state] += 1
            if a.yaw is not None:
                poses.setdefault(student.id, []).append((a.yaw, a.pitch))
    rows = []
    for sid, seen in states.items():
        state = max(STATES, key=lambda s: (seen[s], -STATES.index(s)))   # ties: looking first
        yaw, pitch = np.mean(poses[sid], axis=0).tolist() if sid in poses else (None, None)
        rows.append((session_id, second, sid, state, sum(seen.values()), seen["away"], yaw, pitch))
    return rows


def delete_before(con: sqlite3.Connection, bound: float) -> None:
    """``purge``: the attention rows of the sessions started before ``bound``."""
    for table in TABLES:
        con.execute(f"DELETE FROM {table} WHERE session_id IN (SELECT id FROM sessions WHERE started_at < ?)",
                    (bound,))


@dataclass(frozen=True, eq=False)
class AttentionSession:
    """A session's attention as arrays over its seconds (the report's ``Session.seconds``)."""

    signals: Signals
    students: np.ndarray           # (S,) str
    state: np.ndarray              # (T, S) int8: index into STATES, -1 where the student was not listed
    tiles: np.ndarray              # (T, 4) mean tiles per frame in each state; NaN where nothing was recorded


def fetch(con: sqlite3.Connection, session_id: int) -> tuple | None:
    """Session ``session_id``'s raw attention rows (None: recorded before attention signals existed)."""
    present = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not set(TABLES) <= present:
        return None
    head = con.execute("SELECT signals FROM attention_sessions WHERE session_id = ?", (session_id,)).fetchone()
    if head is None:
        return None
    rows = con.execute("SELECT second, student, state FROM attention_samples WHERE session_id = ?",
                       (session_id,)).fetchall()
    class_rows = con.execute("SELECT second, looking, away, no_face, camera_off FROM class_attention "
                             "WHERE session_id = ?", (session_id,)).fetchall()
    return head[0], rows, class_rows


def arrays(fetched: tuple | None, seconds: int, students: np.ndarray) -> AttentionSession | None:
    """``fetch``'s rows as arrays over the session's ``seconds``; students in the report's order."""
    if fetched is None:
        return None
    signals, rows, class_rows = fetched
    names = list(students) + sorted({r[1] for r in rows} - set(students))
    index = {name: i for i, name in enumerate(names)}
    state = np.full((seconds, len(names)), _MISSING, np.int8)
    tiles = np.full((seconds, len(STATES)), np.nan)
    for second, student, text in rows:
        if second < seconds:
            state[second, index[student]] = STATES.index(text)
    for second, *values in class_rows:
        if second < seconds:
            tiles[second] = values
    return AttentionSession(Signals(signals), np.array(names, dtype=str), state, tiles)


def attention_only(att: AttentionSession | None) -> bool:
    """A session recorded with ``--signals attention``: its report and summary show no emotion."""
    return att is not None and not att.signals.emotions


# --- analysis --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentAttention:
    student: str
    seconds: dict[str, int]                 # state -> seconds in it
    away_flags: tuple[tuple[int, int], ...]  # (start, end) seconds, end exclusive

    @property
    def looking_share(self) -> float:
        """Of the seconds with the camera on (looking, away or no face)."""
        watched = self.seconds["looking"] + self.seconds["away"] + self.seconds["no_face"]
        return self.seconds["looking"] / watched if watched else 0.0


def away_flags(att: AttentionSession, rules: FlagRule) -> list[tuple[tuple[int, int], ...]]:
    """Per student, spans where some ``for_seconds`` window was at least ``rules.away`` not looking.

    Not looking is a second with the head away or no face, as in the live flag; like a negative
    flag, a span runs from the first to the last such second of overlapping qualifying windows.
    """
    window = max(int(round(rules.for_seconds)), 1)
    off = np.isin(att.state, (STATES.index("away"), STATES.index("no_face")))
    if len(off) < window:
        return [()] * off.shape[1]
    cumulative = np.concatenate([np.zeros((1, off.shape[1]), int), np.cumsum(off, axis=0)])
    qualifies = cumulative[window:] - cumulative[:-window] >= rules.away * window - 1e-9
    edges = np.zeros((len(off) + 1, off.shape[1]), int)
    edges[:len(qualifies)] += qualifies
    edges[window:window + len(qualifies)] -= qualifies
    covered = np.cumsum(edges, axis=0)[:-1] > 0
    flags = []
    for s in range(off.shape[1]):
        spans = []
        for start, end in _runs(covered[:, s]):   # trimmed to the first and last second not looking
            hits = np.flatnonzero(off[start:end, s])
            spans.append((start + int(hits[0]), start + int(hits[-1]) + 1))
        flags.append(tuple(spans))
    return flags


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def student_attention(att: AttentionSession, rules: FlagRule = FlagRule()) -> tuple[StudentAttention, ...]:
    flags = away_flags(att, rules)
    return tuple(StudentAttention(str(name), {s: int((att.state[:, i] == k).sum()) for k, s in enumerate(STATES)},
                                  flags[i])
                 for i, name in enumerate(att.students) if (att.state[:, i] != _MISSING).any())


def class_shares(att: AttentionSession, window: int = 10) -> np.ndarray:
    """(T, 4) share of tiles in each state, smoothed over ``window`` seconds (NaN where nothing was recorded)."""
    total = att.tiles.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, att.tiles / total, np.nan)
    valid = ~np.isnan(shares)
    start = (window - 1) // 2

    def smooth(column: np.ndarray) -> np.ndarray:
        # "full" then centre-slice: mode="same" returns `window` values for a shorter series.
        return np.convolve(column, np.ones(window), mode="full")[start:start + len(column)]

    summed = np.apply_along_axis(smooth, 0, np.where(valid, shares, 0.0))
    count = np.apply_along_axis(smooth, 0, valid.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, summed / np.maximum(count, 1e-12), np.nan)


def mmss(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


# --- output ----------------------------------------------------------------------------------

def plot_class(att: AttentionSession) -> Figure:
    """Share of tiles looking, away, without a face and with the camera off over the lecture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # here: the recorder imports this module
    from matplotlib.figure import Figure
    figure = Figure(figsize=(11, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    minutes = np.arange(len(att.tiles)) / 60
    shares = np.nan_to_num(class_shares(att)) if len(att.tiles) else np.zeros((0, len(STATES)))
    if shares.any():
        axes.stackplot(minutes, shares.T, labels=[STATE_LABELS[s] for s in STATES],
                       colors=[STATE_STYLES[s] for s in STATES], linewidth=0)
        handles, names = axes.get_legend_handles_labels()
        axes.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        axes.text(0.5, 0.5, "no tiles recorded", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlim=(0, max(minutes[-1] if len(minutes) else 0, 1 / 60)), ylim=(0, 1), xlabel="minutes from start",
             ylabel="share of tiles", title="Class attention: head towards the screen (10 s smoothing)")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    return figure


def plot_students(att: AttentionSession) -> Figure:
    """Per student and time step (a minute in a lecture, finer in a short session, as the emotion
    heatmap), the share of seconds looking at the screen (black: camera off or not there)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from fer_overlay.report import heatmap_step, time_axis   # here: report imports this module
    length = len(att.state)
    step = heatmap_step(length)
    unit, label = time_axis(length)
    columns = max(-(-length // step), 1)
    padded = np.full((columns * step, att.state.shape[1]), _MISSING, np.int8)
    padded[:length] = att.state
    per_step = padded.reshape(columns, step, -1)
    looking = (per_step == 0).sum(axis=1)
    watched = np.isin(per_step, (0, 1, 2)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(watched > 0, looking / np.maximum(watched, 1), np.nan).T    # (S, C)
    students = len(att.students)
    figure = Figure(figsize=(11, 1.2 + 0.28 * students), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = ListedColormap(["#ff9800", "#ffcc80", "#c5e1a5", "#4caf50"]).with_extremes(bad="#262626")
    image = axes.imshow(np.ma.masked_invalid(share), cmap=colours, vmin=0, vmax=1, aspect="auto",
                        interpolation="nearest", extent=(0, columns * step / unit, students - 0.5, -0.5))
    axes.set_yticks(range(students), [str(name) for name in att.students], fontsize=8)
    every = "minute" if step == 60 else "second" if step == 1 else f"{step} s"
    axes.set(xlim=(0, max(length, 1) / unit), xlabel=label,
             title=f"Share of each {every} looking at the screen (black: camera off or not there)")
    figure.colorbar(image, ax=axes, format=lambda value, _: f"{value:.0%}", fraction=0.03)
    return figure


def html_section(att: AttentionSession, rules: FlagRule) -> str:
    """The report's attention part: both plots, the per-student table, what the signals are."""
    from fer_overlay.report import png_uri   # here: report imports this module
    parts = ["<h2>Attention</h2>",   # plots inside the page, as the report's own: one self-contained file
             f'<img src="{png_uri(plot_class(att))}" '
             'alt="share of tiles looking, away, without a face, camera off, over time">',
             '<p class="meta">Physical, visible states only: head turned towards the screen (within '
             "30&deg; sideways) or away, a face in the tile or not, camera on or off. A turned head is not "
             "inattention; no emotion is inferred from these signals.</p>"]
    summaries = student_attention(att, rules)
    if summaries:
        parts.append(f'<img src="{png_uri(plot_students(att))}" alt="share of each minute looking, per student">')
        rows = []
        for s in summaries:
            flags = "; ".join(f"not looking {mmss(a)}–{mmss(b)}" for a, b in s.away_flags)
            rows.append(f'<tr{" class=flagged" if flags else ""}><td>{html.escape(s.student)}</td>'
                        f'<td class="num">{s.looking_share:.0%}</td><td class="num">{mmss(s.seconds["away"])}</td>'
                        f'<td class="num">{mmss(s.seconds["no_face"])}</td>'
                        f'<td class="num">{mmss(s.seconds["camera_off"])}</td><td>{html.escape(flags)}</td></tr>')
        parts.append("<table><thead><tr><th>student</th><th>looking</th><th>away</th><th>no face</th>"
                     "<th>camera off</th><th>flags</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    parts.append(f'<p class="meta">Flag: not looking (head away or no face) for at least {rules.away:.0%} of a '
                 f"{rules.for_seconds:g} s window.</p>")
    return "\n".join(parts)


def summary_lines(att: AttentionSession, rules: FlagRule = FlagRule()) -> list[str]:
    """The end-of-session lines about attention (``live --record``)."""
    tiles = np.nansum(att.tiles, axis=0) if len(att.tiles) else np.zeros(len(STATES))
    faces = tiles[0] + tiles[1]
    looking = f"looking {tiles[0] / faces:.0%} of face-seconds" if faces else "no faces"
    flagged = [s.student for s in student_attention(att, rules) if s.away_flags]
    return [f"Class attention: {looking}",
            "Flagged (not looking): " + (", ".join(flagged) if flagged else "nobody")]


def page(session, rules: FlagRule, css: str) -> str:
    """The whole report of an attention-only session (``report.Session``): no mood, no emotion."""
    from fer_overlay.report import page_heading   # here: report imports this module
    esc = html.escape
    title, meta = page_heading(session)
    notes = ['Recorded with --signals attention: no emotion was inferred, so none is reported.']
    if session.aggregate_only:
        notes.append("Recorded with --aggregate-only: class-level numbers only, no per-student rows.")
    body = "\n".join([f"<h1>{esc(title)}</h1>", f'<p class="meta">{esc(meta)}</p>',
                      *(f'<p class="note">{esc(note)}</p>' for note in notes),
                      html_section(session.attention, rules)])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f"<style>{css}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def summary_text(session, rules: FlagRule = FlagRule()) -> str:
    """The end-of-session summary of an attention-only session: duration, attention, flags."""
    return "\n".join([f"Session {session.id}: {mmss(len(session.seconds))} recorded, "
                      f"{len(session.students)} students (attention only: no emotion inferred)",
                      *summary_lines(session.attention, rules)])
