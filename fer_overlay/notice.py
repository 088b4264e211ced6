"""Responsible-use texts and the one-time legal notice before the first live run.

Emotion inference on students is restricted by law in places (EU AI Act Art. 5(1)(f))
and is sensitive everywhere; the notice makes the teacher read that once, and the
acknowledgement is remembered in the user's config folder (not in the project).
"""

from __future__ import annotations

import time
from pathlib import Path

RETENTION = 30 * 86400.0
"""Default seconds a recorded session is kept: the chat notice promises it, and every run with
``--record`` deletes the sessions older than it (``--retention`` changes both)."""

LEGAL_NOTICE = """\
Before you analyse students' faces
- EU AI Act, Article 5(1)(f), in force since 2 February 2025: AI systems that infer the
  emotions of people in workplaces and EDUCATION INSTITUTIONS are prohibited in the EU,
  except for medical or safety reasons. If you teach at or for an EU institution, do not
  use fer-overlay on students.
- Elsewhere: tell students before you start ('fer-overlay notice' prints a text for the
  chat), let them opt out (--exclude), and keep as little as you need (--aggregate-only,
  'fer-overlay purge').
- Everything runs on this computer. Nothing is sent anywhere; no face images are saved.
- The virtual camera is seen by everyone in the meeting. It shows only the class mood
  unless you choose --feed-mode full or blur.
- Facial expressions are not feelings, and a label is not a judgement of a student."""

ATTENTION_NOTICE = """\
Before you analyse students' video (--signals attention)
- This mode infers NO emotion and loads no emotion model. Per student it reports only
  physical, readily visible states: whether a face is in the tile, whether the head is
  turned towards the screen or away (yaw and pitch in degrees, from five face points),
  and whether the camera is off; with times (away in the last minute, no face, camera off).
- It does not infer emotions, feelings, interest, engagement or intention, and it does not
  identify anyone from their face (names come from the tiles' labels).
- EU AI Act, Article 5(1)(f) prohibits inferring emotions in education institutions; recital
  18 says the mere detection of readily apparent movements and physical states is not emotion
  recognition. This is not legal advice and fer-overlay promises no legal compliance: check
  with your institution before you use it.
- Tell students before you start ('fer-overlay notice --signals attention'), let them opt out
  (--exclude) and keep as little as you need (--aggregate-only, 'fer-overlay purge').
- Everything runs on this computer. Nothing is sent anywhere; no face images are saved.
- A turned head is not inattention: people look at notes, a second screen or a pet."""

ATTENTION_CHAT_NOTICE = """\
Notice: during this session I use fer-overlay, a tool that runs only on my computer and
notes, per video tile, whether a face is visible, whether the head is turned towards the
screen or away, and whether the camera is off. It does not read facial expressions or
infer emotions, and it does not recognise faces.
- Nothing leaves my computer; no images or recordings of you are kept.
- {kept}
- If you do not want to be included, tell me (chat or message) and I will exclude your
  tile, or simply turn your camera off.
Questions: ask me any time."""

CHAT_NOTICE = """\
Notice: during this session I use fer-overlay, a tool that runs only on my computer and
estimates the facial expressions visible in the gallery view (e.g. "happy", "neutral"),
to help me notice when the class is lost or tired.
- Nothing leaves my computer; no images or recordings of you are kept.
- {kept}
- If you do not want to be included, tell me (chat or message) and I will exclude your
  tile, or simply turn your camera off.
Questions: ask me any time."""


def legal_notice(signals: str = "both") -> str:
    """The one-time notice for a run inferring ``signals`` (emotions, attention or both)."""
    return ATTENTION_NOTICE if signals == "attention" else LEGAL_NOTICE


def chat_notice(record: bool = False, signals: str = "both", retention: float = RETENTION) -> str:
    deleted = f"sessions older than {human_duration(retention)} are deleted when I next record."
    if signals == "attention":
        kept = ("Per-second numbers (looking, away, no face, camera off) are kept for my after-class "
                f"report; {deleted}" if record else "Nothing is kept after the session.")
        return ATTENTION_CHAT_NOTICE.format(kept=kept)
    kept = (f"Per-second numbers (expression shares) are kept for my after-class report; {deleted}"
            if record else "Nothing is kept after the session.")
    return CHAT_NOTICE.format(kept=kept)


def human_duration(seconds: float) -> str:
    """``2592000`` -> ``30 days``, ``5400`` -> ``90 minutes``: the largest unit that divides evenly."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            seconds, name = seconds // size, unit
            break
    else:
        name = "second"
    return f"{seconds:g} {name}{'' if seconds == 1 else 's'}"


def acknowledgement_file() -> Path:
    from platformdirs import user_config_dir
    return Path(user_config_dir("fer-overlay")) / "notice-accepted"


def accepted() -> bool:
    return acknowledgement_file().is_file()


def remember_acceptance(now: float | None = None) -> Path:
    path = acknowledgement_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now or time.time())) + "\n")
    return path
