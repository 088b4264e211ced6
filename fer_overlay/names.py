"""Who is in which tile: participant names read from the tiles' name labels.

Meeting apps draw each participant's name bottom-left in white: Zoom and Teams on a dark
translucent box, Meet with a shadow right of the microphone icon, on camera-off tiles too.
The label is found as a line of white letters with darker pixels close on both sides, then
read by PP-OCR (``rapidocr-onnxruntime``: pip installs it with its models, best on Latin
letters, also 5 px ones) and by Tesseract for the teacher's non-Latin languages
(``--ocr-lang kor+eng``; Tesseract alone reads everything where PP-OCR is missing). Each
label is drawn several ways (upscaled smoothly and linearly, at several heights) and a name
is taken where the readings agree: on 5 px letters one reading alone is often wrong, the
same mistake in several rarely. A student then keeps their row when the gallery reshuffles.
OCR costs tens of milliseconds a label, so a tile's label is read again only when its
letters change (compared as a tiny thumbnail, so video noise and the room behind the label
do not count as a change).
"""

from __future__ import annotations

import copy
import difflib
import re
import shutil
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_overlay.core import Box, Tile
from fer_overlay.preprocess import tile_picture, to_gray

LABEL_BAND = 0.3         # share of the tile height searched for the name, from the bottom (Meet: ~0.85)
LABEL_LEFT = 0.45        # a name starts in this left share of the tile
MIDDLE_BAND = 0.4        # share of the tile height searched for a camera-off tile's centred name
CENTRED = 0.1            # ... whose middle is within this share of the width from the tile's middle
BAND_ROWS = 60           # the band is upscaled (whole times) to at least this many rows: 5 px letters
MIN_LINE_HEIGHT = 4      # px (unscaled), ascender to descender; smaller lines are not letters
TEXT_MIN = 170           # label text is white; darker pixels are the box or anti-aliased edges
DIM_TEXT_MIN = 120       # ... or, where no line is that white, grey: a capture scaled down dims thin letters
BOX_MAX = 120            # ... and sits on a dark box or shadow: a text pixel has pixels this dark nearby
CONTRAST = 60            # ... or this much darker (a translucent box over a bright room)
STROKE_REACH = 3         # px (unscaled) from a letter pixel to the box on either side
WORD_GAP = 1.2           # line heights: a wider gap ends the name (the room behind it begins)
OCR_HEIGHT = 36          # px: the line's height in the picture handed to OCR
TIGHT_HEIGHTS = (32, 40, 48, 64)   # px: heights of the other renderings, the letters with TIGHT_MARGIN round them
TIGHT_MARGIN = 2         # px (unscaled): wider takes in the box's edge or the room, which PP-OCR reads as letters
THUMB = (64, 12)         # size of the letters thumbnail a tile's last reading is kept with
SAME_TILE = 4.0          # mean grey difference of that picture below which the tile is unchanged
SAME_LABEL = 0.05        # mean thumbnail difference below which a label is unchanged (noise: < 0.02)
ROSTER_CUTOFF = 0.75     # difflib similarity a reading needs to be taken as a roster name
TESSERACT_CONFIG = "--psm 7"   # one line of text
MIN_CONFIDENCE = 60      # Tesseract word confidence (0-100) below which a label counts as unread
SCRIPT_CONFIDENCE = 70   # mean confidence a non-Latin reading needs to replace the Latin one
SCRIPT_VOTES = 2         # ... and this many renderings of the label read exactly alike
PPOCR_SURE = 0.75        # PP-OCR line score below which a label counts as unread (measured: see README)
PPOCR_CERTAIN = 0.9      # a Latin name read this sure from the first rendering is taken alone
PPOCR_AGREED = 0.65      # ... else a reading this sure that ...
VOTES = 4                # ... this many of the five renderings read alike (3: two more names, four more wrong)
AGREE = 0.9              # difflib similarity of two readings that read alike
NOT_SCRIPTS = {"osd", "equ"}   # Tesseract data that is no language of names
FALLBACK_NOTICE = "names: no OCR is available ({why}); students are shown by tile (r1c1, ...)"
LANGUAGE_NOTICE = "names: Tesseract has no '{lang}' language ({why}); such names stay tile keys"

Notify = Callable[[str], None]
Thumbnail = tuple[tuple[int, int], np.ndarray]
Renderings = tuple[np.ndarray, ...]                        # one label drawn for OCR in several ways
Recognise = Callable[[Sequence["Label"]], list[str]]       # labels -> their texts ("" unsure)
Reading = tuple[str, float]                                # text, confidence 0-1


@dataclass(frozen=True)
class Label:
    """A tile's name line: pictures of it for OCR (dark letters on light) and where its letters are.

    The first picture is the letters cut out at their mask and upscaled smoothly; the others are
    the letters' unscaled box, upscaled linearly to several heights. On 5 px letters each way
    loses different strokes, so where readings agree the name is taken at a lower score than
    one alone.
    """

    pictures: Renderings
    where: Box      # the letters with STROKE_REACH + 1 px round them, in the frame
    height: float   # unscaled px


@dataclass(frozen=True)
class _Seen:
    """What a tile showed when its label was last read: where the letters were, their thumbnail
    and the name read; for a tile without a label, a coarse picture of it instead."""

    name: str
    where: Box | None = None
    thumb: Thumbnail | None = None
    tile: np.ndarray | None = None


def white_letters(gray: np.ndarray, reach: int, text_min: int = TEXT_MIN) -> np.ndarray:
    """Bright pixels with darker pixels within ``reach`` on both sides (left and right, or above
    and below): label strokes are thin, while bright room or clothes is dark on one side only.

    Darker is below ``BOX_MAX`` (an opaque box) or ``CONTRAST`` below the pixel (a translucent
    box over a bright room, Meet's shadow).
    """
    level = gray.astype(np.int16)

    def darker_towards(kernel: tuple[int, int], anchor: tuple[int, int]) -> np.ndarray:
        lowest = cv2.erode(gray, np.ones(kernel, np.uint8), anchor=anchor).astype(np.int16)
        return (lowest < BOX_MAX) | (level - lowest >= CONTRAST)

    across = darker_towards((1, reach + 1), (reach, 0)) & darker_towards((1, reach + 1), (0, 0))
    along = darker_towards((reach + 1, 1), (0, reach)) & darker_towards((reach + 1, 1), (0, 0))
    return (gray > text_min) & (across | along)


def find_label(gray: np.ndarray, tile: Tile) -> Label | None:
    """The tile's name line, or None where there is none (or too small to be letters).

    The label is the lowest line of white letters in the tile's bottom band that starts in
    its left part. A tile without one may be Zoom's camera-off tile, which shows the name
    large in its middle instead: a line centred there is taken. Only where neither is found
    are grey letters (``DIM_TEXT_MIN``, a scaled-down capture) looked for in the bottom band:
    that look would take bits of a face or room for a name where the first finds the label.
    """
    box = tile.box.clip(gray.shape[1], gray.shape[0])
    rows = max(int(box.h * LABEL_BAND), 16)
    top = max(box.y2 - rows, box.y)
    middle = box.y + int(box.h * (0.5 - MIDDLE_BAND / 2))
    bottom_band = gray[top:box.y2, box.x:box.x2], Box(box.x, top, 0, 0)
    middle_band = gray[middle:middle + int(box.h * MIDDLE_BAND), box.x:box.x2], Box(box.x, middle, 0, 0)
    looks = ((bottom_band, {}), (middle_band, {"centred": True}), (bottom_band, {"text_min": DIM_TEXT_MIN}))
    for (band, origin), how in looks:
        label = _line(band, origin, **{"centred": False, **how})
        if label is not None:
            return _rendered(gray, label)
    return None


def _rendered(gray: np.ndarray, label: Label) -> Label:
    """The label with its other renderings: its letters with ``TIGHT_MARGIN`` round them, unscaled,
    enlarged linearly to each of ``TIGHT_HEIGHTS``. Measured on the 150 Latin labels of
    ``../shared/data/meetings`` (one PP-OCR reading each, within 0.8 of the name): 137-139 for
    these, 120-133 with a 4 px margin; cubic or Lanczos enlargement reads big labels exactly
    more often but 5 px letters far worse (19 and 3 of 41 against 36)."""
    inset = STROKE_REACH + 1 - TIGHT_MARGIN
    box = label.where.clip(gray.shape[1], gray.shape[0])
    patch = 255 - gray[box.y + inset:box.y2 - inset, box.x + inset:box.x2 - inset]
    if min(patch.shape) == 0:
        return label
    more = tuple(cv2.resize(patch, None, fx=height / patch.shape[0], fy=height / patch.shape[0],
                            interpolation=cv2.INTER_LINEAR) for height in TIGHT_HEIGHTS)
    return Label(label.pictures + more, label.where, label.height)


def _line(band: np.ndarray, origin: Box, centred: bool, text_min: int = TEXT_MIN) -> Label | None:
    """The lowest substantial line of white letters in ``band``, starting in its left part
    (``centred``: centred in it), grown to its whole name: words beside it join while the
    gap is under ``WORD_GAP`` line heights, its rows take in taller letters (brackets, Hangul).
    ``origin`` is the band's top-left corner in the frame."""
    if band.size == 0:
        return None
    scale = max(1, -(-BAND_ROWS // band.shape[0]))
    big = cv2.resize(band, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else band
    mask = white_letters(big, STROKE_REACH * scale, text_min)
    blobs = cv2.dilate(mask.astype(np.uint8), np.ones((1, 3 * scale + 1), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
    height, width = mask.shape
    lines = [(y + h, area, (y, y + h - 1, x, x + w - 1)) for x, y, w, h, area in _syllables_joined(stats[1:count])
             if MIN_LINE_HEIGHT * scale <= h <= 0.6 * height and w >= 1.5 * h
             and (abs(x + w / 2 - width / 2) < CENTRED * width if centred else x <= LABEL_LEFT * width)]
    if not lines:
        return None
    largest = max(area for _, area, _ in lines)
    _, _, seed = max(line for line in lines if line[1] >= 0.3 * largest)   # the lowest substantial line
    top, bottom, left, right = _grow(mask, *seed)
    if centred and abs((left + right) / 2 - width / 2) >= CENTRED * width:
        return None
    pad = max(2, (bottom - top + 1) // 3)
    y0, y1 = max(top - pad, 0), min(bottom + pad + 1, height)
    x0, x1 = max(left - pad, 0), min(right + pad + 1, width)
    zoom = OCR_HEIGHT / (bottom - top + 1)
    picture = cv2.resize(255 - big[y0:y1, x0:x1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    margin = STROKE_REACH + 1
    where = Box(origin.x + left // scale - margin, origin.y + top // scale - margin,
                (right - left) // scale + 1 + 2 * margin, (bottom - top) // scale + 1 + 2 * margin)
    return Label((cv2.copyMakeBorder(picture, 12, 12, 12, 12, cv2.BORDER_REPLICATE),), where,
                 (bottom - top + 1) / scale)


def _syllables_joined(blobs: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Letter blobs (x, y, w, h, area) with each row of Hangul syllables joined into one: they are
    as tall as they are wide and stand apart, so no one of them looks like a line. Joined are
    side-by-side blobs about square, of one height (+-25%), top and bottom aligned (a quarter of
    that height) and at most half of it apart: a name's syllables, rarely bits of a face or room."""
    def square(w: int, h: int) -> bool:
        return 0.6 * h <= w <= 1.5 * h

    runs: list[list] = []   # x, y, w, h, area, the height of its last blob, joined yet
    for x, y, w, h, area in sorted(blobs.tolist()):
        if runs:
            rx, ry, rw, rh, rarea, last_h, joined = runs[-1]
            if (square(w, h) and (joined or square(rw, rh)) and abs(h - last_h) <= 0.25 * max(h, last_h)
                    and abs(y - ry) <= 0.25 * h and abs(y + h - ry - rh) <= 0.25 * h and 0 <= x - (rx + rw) <= h / 2):
                top = min(y, ry)
                runs[-1] = [rx, top, x + w - rx, max(y + h, ry + rh) - top, rarea + area, h, True]
                continue
        runs.append([x, y, w, h, area, h, False])
    return [tuple(run[:5]) for run in runs]


def letters_at(gray: np.ndarray, where: Box) -> Thumbnail | None:
    """The thumbnail of the letters at ``where``, unscaled: how an unchanged label is recognised
    each frame at a fraction of the cost of finding it. Grey letters where no white ones are
    (a label ``find_label`` found by ``DIM_TEXT_MIN``)."""
    box = where.clip(gray.shape[1], gray.shape[0])
    patch = gray[box.y:box.y2, box.x:box.x2]
    if not patch.size:
        return None
    return _thumbnail(white_letters(patch, STROKE_REACH)) or _thumbnail(white_letters(patch, STROKE_REACH, DIM_TEXT_MIN))


def _grow(mask: np.ndarray, top: int, bottom: int, left: int, right: int) -> tuple[int, int, int, int]:
    """A seed line grown to its whole name: words within ``WORD_GAP`` beside it, the rows of its letters."""
    for _ in range(2):
        line = bottom - top + 1
        spans = _runs(mask[top:bottom + 1].any(axis=0), WORD_GAP * line)
        for start, end in spans:   # the seed's own span and words chained to its right...
            if start <= right and end >= left:
                left, right = min(left, start), max(right, end)
            elif 0 < start - right <= WORD_GAP * line:
                right = end
        for start, end in reversed(spans):   # ... and to its left (a first name fainter than the second)
            if 0 < left - end <= WORD_GAP * line:
                left = start
        rows = mask[:, left:right + 1].any(axis=1)
        near = np.convolve(rows, np.ones(3), "same") > 0   # a one-row gap inside a letter is still it
        while top > 0 and near[top - 1] and bottom - top < 1.6 * line:
            top -= 1
        while bottom < len(rows) - 1 and near[bottom + 1] and bottom - top < 1.6 * line:
            bottom += 1
        filled = np.nonzero(rows[top:bottom + 1])[0]
        top, bottom = top + int(filled[0]), top + int(filled[-1])
    return top, bottom, left, right


def _runs(present: np.ndarray, gap: float) -> list[tuple[int, int]]:
    """(first, last) index of each run of True, runs closer than ``gap`` joined."""
    xs = np.nonzero(present)[0]
    if not len(xs):
        return []
    runs, start, prev = [], int(xs[0]), int(xs[0])
    for x in xs[1:]:
        if x - prev > gap:
            runs.append((start, prev))
            start = int(x)
        prev = int(x)
    return runs + [(start, prev)]


def clean_text(raw: str) -> str:
    """Tesseract's line without edge debris (``|``, quotes, a lone ``.``) and with single spaces;
    the app's mark of a cut-short name (``…``, or dots Tesseract spaces apart) as ``...``."""
    raw = raw.replace("…", "...")
    if re.search(r"\w\s*\.\s*\.[\s.]*$", raw):
        return clean_text(raw.rstrip(" .")) + "..."
    words = raw.split()
    while words and not any(c.isalnum() for c in words[-1]):
        words.pop()
    while words and not any(c.isalnum() for c in words[0]):
        words.pop(0)
    return re.sub(r"^[^\w(\[]+|[^\w.)\]]+$", "", " ".join(words))


def match_roster(text: str, roster: Sequence[str], cutoff: float = ROSTER_CUTOFF) -> str:
    """The roster name closest to an OCR reading; the reading itself when none is close.

    Case-insensitive. A label cut short by the app (``Alexandra Richa``) matches the one
    roster name it starts.
    """
    if not roster or not text:
        return text
    folded = {name.casefold(): name for name in roster}
    close = difflib.get_close_matches(text.casefold(), list(folded), n=1, cutoff=cutoff)
    if close:
        return folded[close[0]]
    starting = [name for key, name in folded.items() if len(text) >= 4 and key.startswith(text.casefold())]
    return starting[0] if len(starting) == 1 else text


_STRAY = re.compile(r"[Il1|!]{1,2}")   # an icon's or border's edge read as letters: I, 1, l, 11


def clean_reading(text: str) -> str:
    """A reading without the debris OCR adds round a name: lone dots (``Vik . R.``) and a trailing
    ``I``/``1``/``l``/``11`` (the microphone icon or the tile border: ``Lena B. 11``).

    A number stays after a plain word (``Student 11``), where it is part of the name.
    """
    words = [word for word in text.split() if any(c.isalnum() for c in word)]
    while len(words) > 1 and _STRAY.fullmatch(words[-1]) and not (words[-1].isdigit() and words[-2].isalpha()):
        words.pop()
    return " ".join(words)


def reading_key(text: str) -> str:
    """What two readings of one name share: the clean reading, case and dots aside."""
    return " ".join(clean_reading(text).casefold().replace(".", " ").split())


def same_person(a: str, b: str) -> bool:
    """Whether two readings can be one label misread: the same key, one the other with words
    dropped from the end (a dropped initial, the app's truncation), or at most one edit in five
    letters apart (a dropped dot, ``1`` for ``I``); never two different numbers (``Student 1``,
    ``Student 12``). Said of readings of one tile: two people can pass this (``Ana``, ``Anabel``),
    so across tiles an exact match comes first."""
    ka, kb = reading_key(a), reading_key(b)
    if not ka or not kb:
        return False
    if ka == kb:
        return True
    numbers = re.findall(r"\d+", ka), re.findall(r"\d+", kb)
    if all(numbers) and numbers[0] != numbers[1]:
        return False   # Student 1 and Student 12
    short, long = sorted((ka.split(), kb.split()), key=len)
    head = len(short) - 1
    if len(" ".join(short)) >= 3 and long[:head] == short[:head] and long[head].startswith(short[head]):
        return True
    return edit_distance(ka, kb) <= max(1, min(len(ka), len(kb)) // 5)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of one character each."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def read_roster(lines: Iterable[str]) -> tuple[str, ...]:
    """One name per line; blank lines and ``#`` comments are skipped."""
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class NameReader:
    """Reads every tile's participant name; ``read`` gives ``{tile key: name}`` for tiles it could read.

    ``languages`` are Tesseract's codes (``kor+eng``: ``("kor", "eng")``; empty: every language
    Tesseract has, as a teacher who installed ``tesseract-ocr-kor`` expects). Latin names are read
    by PP-OCR where it is installed, else by Tesseract; other scripts by Tesseract. Without
    any OCR (or with ``ocr=False``) it reads nothing and students stay tile keys; what is
    missing is reported once through ``notify``.
    """

    def __init__(self, roster: Sequence[str] = (), *, ocr: bool = True, notify: Notify | None = None,
                 languages: Sequence[str] = ()):
        self.roster = tuple(roster)
        self._notify = notify or _stderr
        self._cache: dict[str, _Seen] = {}   # tile key -> its label when last read
        self._ocr = self._engines(tuple(languages)) if ocr else None

    @property
    def available(self) -> bool:
        return self._ocr is not None

    def fresh(self) -> "NameReader":
        """The same engines and roster with no label remembered: for the next recording (batch)."""
        reader = copy.copy(self)
        reader._cache = {}
        return reader

    def _engines(self, languages: tuple[str, ...]) -> Recognise | None:
        ppocr, tesseract = _ppocr(), self._tesseract(languages)
        if ppocr is None and tesseract is None:
            return self._give_up("pip install rapidocr-onnxruntime, or install the tesseract-ocr package")
        latin_lang = "eng" if tesseract and "eng" in tesseract else None
        others = [lang for lang in tesseract or () if lang != "eng"]

        def recognise(labels: Sequence[Label]) -> list[str]:
            pictures = [label.pictures[0] for label in labels]
            latin: set[int] = set()   # lines PP-OCR found to be Latin letters, read or not
            if ppocr is not None:
                readings = ppocr_lines(ppocr, labels)
                texts = [reading[0] if reading else "" for reading in readings]
                latin = {i for i, reading in enumerate(readings) if reading is not None and not reading[0]}
            elif latin_lang:
                texts = [text for text, _ in tesseract_lines(pictures, latin_lang)]
            else:
                texts = [""] * len(pictures)
            # Lines not read as plain Latin words go to Tesseract in the teacher's other scripts:
            # PP-OCR's model knows Latin and Chinese only, so of ``김선경(20200756)`` it reads
            # Chinese, ASCII debris or the digits alone.
            rest = [i for i, text in enumerate(texts) if not _LATIN_LINE.fullmatch(text) and i not in latin]
            for lang in others:
                for i in rest:
                    texts[i] = script_line(labels[i].pictures, lang) or texts[i]
                rest = [i for i in rest if not texts[i]]
            return texts
        return recognise

    def _tesseract(self, languages: tuple[str, ...]) -> list[str] | None:
        """The requested languages Tesseract has, or None without a usable Tesseract."""
        try:
            import pytesseract
        except ImportError:
            return None
        if not shutil.which(pytesseract.pytesseract.tesseract_cmd):
            return None
        try:
            installed = set(pytesseract.get_languages(config=""))
        except Exception:   # pytesseract raises its own errors for a broken binary
            return None
        for lang in languages:
            if lang not in installed:
                self._notify(LANGUAGE_NOTICE.format(lang=lang, why=f"install tesseract-ocr-{lang}"))
        return [lang for lang in languages or sorted(installed - NOT_SCRIPTS) if lang in installed] or None

    def _give_up(self, why: str) -> None:
        self._notify(FALLBACK_NOTICE.format(why=why))
        return None

    def read(self, image: np.ndarray, tiles: Iterable[Tile]) -> dict[str, str]:
        """``{tile key: name}`` for the tiles whose name could be read.

        Labels unchanged since the last read keep their name; all changed ones are read together.
        """
        if self._ocr is None:
            return {}
        gray = to_gray(image)
        tiles = tuple(tiles)
        changed: dict[str, tuple[Label, Thumbnail]] = {}
        for tile in tiles:
            known = self._cache.get(tile.key)
            if known is not None and _unchanged(gray, tile, known):
                continue
            label = find_label(gray, tile)
            thumb = letters_at(gray, label.where) if label else None
            if label is None or thumb is None:   # no label, or too small to be letters
                self._cache[tile.key] = _Seen("", tile=tile_picture(gray, tile.box))
            elif known is not None and _same_label(known.thumb, thumb):
                self._cache[tile.key] = _Seen(known.name, label.where, thumb)   # moved, same letters
            else:
                changed[tile.key] = (label, thumb)
        if changed:
            texts = self._recognise([label for label, _ in changed.values()])
            for (key, (label, thumb)), text in zip(changed.items(), texts):
                known = self._cache.get(key)
                if not text and known and known.name and _same_extent(known.thumb, thumb):
                    text = known.name   # an unsure re-read of letters of the same extent: still them
                self._cache[key] = _Seen(text, label.where, thumb)
        names = {tile.key: self._cache[tile.key].name for tile in tiles}
        # A name in two tiles identifies no one: both stay tile keys rather than merge two people.
        seen = Counter(names.values())
        return {key: name for key, name in names.items() if name and seen[name] == 1}

    def _recognise(self, labels: list[Label]) -> list[str]:
        try:
            lines = self._ocr(labels)
        except Exception as exc:   # pytesseract raises its own errors for a broken or vanished binary
            self._ocr = self._give_up(f"{type(exc).__name__}: {exc}".splitlines()[0][:120])
            return [""] * len(labels)
        return [match_roster(_plausible(clean_text(line)), self.roster) for line in lines]


def _ppocr():
    """PP-OCR's recogniser from ``rapidocr-onnxruntime`` (models inside the wheel), or None."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    return RapidOCR(intra_op_num_threads=2, inter_op_num_threads=1).text_rec


def ppocr_lines(recogniser, labels: Sequence[Label]) -> list[Reading | None]:
    """PP-OCR's reading of each label: "" where it is unsure, None where the line is no Latin name
    (another script's, for Tesseract: no use spending Tesseract on an unsure Latin line).

    Every rendering is read alone: in a batch PP-OCR pads each picture to the widest one, and
    the padding changes its readings, so a label would read differently beside other labels.
    A Latin name is taken from the first rendering when its score is ``PPOCR_CERTAIN``, else
    when ``VOTES`` renderings read it alike (measured on real labels, 5 px ones included:
    more names read right and fewer wrong than any score threshold on one rendering).
    """
    def read(picture: np.ndarray) -> Reading:
        (text, score), = recogniser([cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)])[0]
        text = unicodedata.normalize("NFKC", text).strip()   # full-width brackets: ASCII ones
        if text.endswith(("]", "|")) and "[" not in text:
            text = text[:-1].rstrip()   # the tile's edge, which a tight crop can touch
        return text, float(score)

    readings = []
    for label in labels:
        first, *others = label.pictures
        reading = read(first)
        if _foreign_letters(reading[0]):   # another script: no use reading it again
            readings.append(None)
        elif reading[1] >= PPOCR_CERTAIN and _LATIN_NAME.fullmatch(reading[0]):
            readings.append((_word_starts(_cut_short(reading[0], [reading])), reading[1]))
        else:
            agreed = _agreed([reading] + [read(picture) for picture in others])
            readings.append((_word_starts(agreed[0]), agreed[1]) if agreed else None)
    return readings


def _agreed(readings: Sequence[Reading]) -> Reading | None:
    """One label's reading from its renderings: of the Latin names read alike by ``VOTES`` of them
    (score >= PPOCR_AGREED), the one closest to the others (the letters most renderings saw),
    with its spaces if one has them. Alike ignores spaces, which PP-OCR drops between small words.
    A line whose first reading is no Latin name gives None when unsure: another script's line,
    whose sure reading (the digits of ``김선경(20200756)``) stands only if Tesseract reads none."""
    names = [text for text, _ in readings if _LATIN_NAME.fullmatch(text)]
    backed = []
    for text, score in readings:
        alike = [_likeness(text.replace(" ", ""), other.replace(" ", "")) for other in names]
        if text in names and score >= PPOCR_AGREED and sum(r >= AGREE for r in alike) >= VOTES:
            backed.append((sum(r for r in alike if r >= AGREE), " " in text, score, text))
    if backed:
        *_, score, text = max(backed)
        return _cut_short(text, readings), score
    text, score = readings[0]
    if _LATIN_NAME.fullmatch(text):
        return "", 0.0
    return (text, score) if score >= PPOCR_SURE else None


def _cut_short(text: str, readings: Sequence[Reading]) -> str:
    """``text`` ending in the app's ``...`` where the label was cut short, without trailing dots
    elsewhere: PP-OCR reads the mark as one to four dots, or drops it in some renderings, so it
    stands where two renderings (the only one, if one was read) end in dots. A lone letter with
    one dot is an initial unless some rendering shows more dots."""
    dotted = sum(reading.endswith((".", "…")) for reading, _ in readings)
    name = text.rstrip(".… ")
    if re.search(r"(?:^|\s)\w\.$", text) and not any(r.endswith(("..", "…")) for r, _ in readings):
        return text   # an initial's one dot ("Amara O."), not the app's mark
    return name + "..." if dotted >= min(2, len(readings)) else name


def _likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.casefold(), b.casefold()).ratio()


def _word_starts(text: str) -> str:
    """Capital word starts where the two cases differ only in size (``c j o s u v w x z``): PP-OCR
    guesses those (``Kenji sato``), and a name's words almost always start with a capital.
    A line read as one word with a capital inside (``MargaretRamsey``) gets its space back: PP-OCR
    drops the space between small words. ``VonDoupe`` in a line with a space is left alone."""
    text = re.sub(r"\b[cjosuvwxz]", lambda m: m[0].upper(), text)
    return text if " " in text else re.sub(r"(?<=[a-z]{2})(?=[A-Z])", " ", text, count=1)


def script_line(pictures: Renderings, lang: str) -> str:
    """Tesseract's reading of one label in a non-Latin script, or "" unsure: the first reading that
    ``SCRIPT_VOTES`` renderings give alike, each confident and with two letters of the script.

    One rendering alone misreads a Hangul syllable or a bracket a label in ten, and a shift of
    one pixel changes which; two renderings rarely make the same mistake (measured on real
    Korean labels: 41 of 47 read, one wrong, against 32 with three wrong from one rendering).
    Each rendering is read as it is and binarised two ways (``_binarised``): on the 46 Korean
    labels of ``../shared/data/meetings`` that reads 44, none wrong, against 42 as it is.
    """
    seen: Counter[str] = Counter()
    for picture in (version for rendering in pictures for version in (rendering, *_binarised(rendering))):
        (text, confidence), = tesseract_lines([picture], lang)
        if confidence >= SCRIPT_CONFIDENCE / 100 and _foreign_letters(text) >= 2 and _plausible(clean_text(text)):
            seen[text] += 1
            if seen[text] >= SCRIPT_VOTES:
                return text
    return ""


def tesseract_lines(pictures: Sequence[np.ndarray], lang: str = "eng") -> list[Reading]:
    """The text of each one-line picture and its mean word confidence.

    One Tesseract run a picture, as one line (``--psm 7``): on real labels that reads Hangul
    far better than one run over all pictures stacked. A line with a word Tesseract is unsure
    of (confidence < MIN_CONFIDENCE) comes back empty: a misread name would be a wrong
    identity, a missing one is only a tile key. Hangul syllables it spaces apart are joined.
    """
    import pytesseract
    readings = []
    for picture in pictures:
        data = pytesseract.image_to_data(picture, lang=lang, config=TESSERACT_CONFIG,
                                         output_type=pytesseract.Output.DICT)
        words = [(left, text, float(conf) if any(c.isalnum() for c in text) else 100.0)
                 for text, left, conf in zip(data["text"], data["left"], data["conf"]) if text.strip()]
        readings.append(_sure_reading(sorted(words)))
    return readings


def _binarised(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two black-on-white versions of a rendering for Tesseract, whose own binarisation loses thin
    Hangul strokes on a label whose backdrop shades from dark to light: Otsu's split of it,
    and the same after dividing the backdrop out (a closing wider than a stroke keeps only it)."""
    size = max(3, picture.shape[0] // 3) | 1
    backdrop = cv2.morphologyEx(picture, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    even = cv2.divide(picture, backdrop, scale=255)
    return tuple(cv2.threshold(p, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] for p in (picture, even))


def _sure_reading(words: list[tuple[int, str, float]]) -> Reading:
    line = _sure_line([(left, text, conf >= MIN_CONFIDENCE) for left, text, conf in words])
    if not line:
        return "", 0.0
    kept = [conf for _, text, conf in words if text in line.split()]
    line = re.sub(r"([(\[]) | ([)\]])", r"\1\2", _HANGUL_GAP.sub("", line))   # "( 초급 )" -> "(초급)"
    return line, float(np.mean(kept)) / 100 if kept else 0.0


_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z .'’-]+")
_LATIN_LINE = re.compile(r"[A-Za-z][A-Za-z .'’-]*[A-Za-z.][\w .'’()\[\]-]*")   # a name, maybe with numbers: "Student 12"
_HANGUL_GAP = re.compile(r"(?<=[\uac00-\ud7a3]) (?=[\uac00-\ud7a3])")


def _foreign_letters(text: str) -> int:
    """Letters outside ASCII: Hangul, Han, Cyrillic... (and accented Latin)."""
    return sum(c.isalpha() and not c.isascii() for c in text)


def _sure_line(words: list[tuple[int, str, bool]]) -> str:
    """The words of a line, or "" when one is unsure; an unsure speck of 1-2 letters at either
    end is dropped instead (a bright bit of face or collar next to the label)."""
    while words and not words[-1][2] and len(words[-1][1]) <= 2:
        words = words[:-1]
    while words and not words[0][2] and len(words[0][1]) <= 2:
        words = words[1:]
    return " ".join(text for _, text, _ in words) if all(sure for _, _, sure in words) else ""


def _plausible(text: str) -> str:
    """``text`` if it could be a name (letters, digits, spaces, ``.-'``, brackets), else "": ``{``, ``<``
    or quotes inside a reading mean Tesseract took bits of a face for letters."""
    return "" if re.search(r"[^\w .'’()\[\]-]", text) else text


def _unchanged(gray: np.ndarray, tile: Tile, known: _Seen) -> bool:
    """Whether the tile still shows what it showed when last read: the same letters in the same
    place, or (no label then) about the same picture."""
    if known.where is not None:
        return tile.box.contains(known.where.center) and _same_label(known.thumb, letters_at(gray, known.where))
    return known.tile is not None and float(np.abs(tile_picture(gray, tile.box) - known.tile).mean()) < SAME_TILE


def _thumbnail(mask: np.ndarray) -> Thumbnail | None:
    """The label's letters cut to their bounding box: its size and a small grey-level picture."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    letters = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    return letters.shape, cv2.resize(letters, THUMB, interpolation=cv2.INTER_AREA)


def _same_extent(a: Thumbnail | None, b: Thumbnail | None) -> bool:
    """Whether two labels' letters cover the same box (+-1 px high, +-2 px wide)."""
    if a is None or b is None:
        return False
    (ha, wa), (hb, wb) = a[0], b[0]
    return abs(ha - hb) <= 1 and abs(wa - wb) <= 2


def _same_label(a: Thumbnail | None, b: Thumbnail | None) -> bool:
    """Whether two label thumbnails show the same text (noise and the room behind it aside)."""
    if a is None or b is None:
        return a is b
    return _same_extent(a, b) and float(np.abs(a[1] - b[1]).mean()) < SAME_LABEL


class Pseudonyms:
    """Stable stand-ins for real names: ``Student 1``, ``Student 2``... in order of first appearance.

    One instance per session, so a student keeps one pseudonym for the whole run and no real
    name reaches the table, the JSON or the record.
    """

    def __init__(self, prefix: str = "Student"):
        self.prefix = prefix
        self._given: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._given:
            self._given[name] = f"{self.prefix} {len(self._given) + 1}"
        return self._given[name]
