"""Who is in which tile: participant names read from the tiles' name labels, and camera-off tiles.

Meeting apps draw each participant's name bottom-left on a dark translucent box (Zoom, Teams
and Meet alike, also on camera-off tiles). Tesseract reads that box; a student then keeps
their row, history and smoothing when the gallery reshuffles. A Tesseract run costs ~0.1 s
plus ~0.04 s a label, so a tile's label is read again only when its letters change (compared
as a tiny thumbnail, so video noise and the room behind the label do not count as a change),
and all changed labels of a frame are read in one run.
"""

from __future__ import annotations

import difflib
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from fer_overlay.core import Tile
from fer_overlay.preprocess import to_gray

LABEL_HEIGHT = 0.16      # share of the tile height searched for the name box, from the bottom
LABEL_WIDTH = 0.62       # share of the tile width searched, from the left (labels are cut at 0.6)
MIN_LABEL_ROWS = 12      # ... but at least this many rows, for small tiles
MIN_LETTER_HEIGHT = 7    # px; smaller letters (e.g. a 720p gallery grabbed at 3/4 size) are misread too often
TEXT_MIN = 170           # label text is white; darker pixels are the box or anti-aliased edges
BOX_MAX = 140            # ... and sits on a dark box: a text pixel has pixels this dark nearby
STROKE_REACH = 3         # px from a letter pixel to the box on either side (strokes are 1-3 px)
INK_LEVEL = 150          # grey level splitting letters from box in the upscaled label
UPSCALE = 4              # labels are 8-15 px high; Tesseract reads letters of 30 px and more best
THUMB = (64, 12)         # size of the letters thumbnail a tile's last reading is kept with
SAME_LABEL = 0.05        # mean thumbnail difference below which a label is unchanged (noise: < 0.02)
ROSTER_CUTOFF = 0.75     # difflib similarity a reading needs to be taken as a roster name
FLAT_SHARE = 0.6         # camera-off: this share of the tile is exactly its most common grey
TESSERACT_CONFIG = "--psm 6"   # a block of lines: the changed labels, stacked
LINE_GAP = 24            # white rows between stacked labels
MIN_CONFIDENCE = 60      # Tesseract word confidence (0-100) below which a label counts as unread
FALLBACK_NOTICE = "names: Tesseract OCR is not available ({why}); students are shown by tile (r1c1, ...)"

Notify = Callable[[str], None]
Thumbnail = tuple[tuple[int, int], np.ndarray]
Recognise = Callable[[Sequence[np.ndarray]], list[str]]   # one-line pictures -> their texts


def label_crop(image: np.ndarray, tile: Tile) -> np.ndarray:
    """The bottom-left part of ``tile`` where the app draws the participant's name."""
    box = tile.box.clip(image.shape[1], image.shape[0])
    rows = max(int(box.h * LABEL_HEIGHT), MIN_LABEL_ROWS)
    return image[max(box.y2 - rows, box.y):box.y2, box.x:box.x + int(box.w * LABEL_WIDTH)]


def text_mask(crop: np.ndarray) -> np.ndarray:
    """Boolean mask of the label's letters, without bright room or face pixels around the box.

    A letter pixel is bright with dark box pixels close on both sides (left and right, or
    above and below): strokes are a few pixels thin, while the bright room at the box's edge
    is dark on one side only. Only the text line (the densest band of rows) is kept, so
    bright blobs above or below the box are not read as stray characters.
    """
    gray = to_gray(crop)
    dark = (gray < BOX_MAX).astype(np.uint8)
    reach = STROKE_REACH + 1

    def dark_towards(kernel: tuple[int, int], anchor: tuple[int, int]) -> np.ndarray:
        return cv2.dilate(dark, np.ones(kernel, np.uint8), anchor=anchor) > 0

    across = dark_towards((1, reach), (STROKE_REACH, 0)) & dark_towards((1, reach), (0, 0))
    along = dark_towards((reach, 1), (0, STROKE_REACH)) & dark_towards((reach, 1), (0, 0))
    mask = (gray > TEXT_MIN) & (across | along)
    rows = mask.sum(axis=1)
    if not rows.any():
        return mask
    top = bottom = int(np.argmax(rows))
    while top > 0 and rows[top - 1]:
        top -= 1
    while bottom < len(rows) - 1 and rows[bottom + 1]:
        bottom += 1
    mask[:top], mask[bottom + 1:] = False, False
    return mask


def letter_height(mask: np.ndarray) -> int:
    """Rows well filled with letter pixels: about the capital height, descenders and specks left out."""
    rows = mask.sum(axis=1)
    return int((rows >= 0.25 * rows.max()).sum()) if rows.size and rows.max() else 0


def ocr_image(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black letters on white, upscaled ``UPSCALE`` times with a margin: what Tesseract reads best."""
    gray = to_gray(crop)
    keep = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0   # anti-aliased edges too
    letters = np.where(keep, gray, 0).astype(np.uint8)
    big = cv2.resize(letters, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    _, ink = cv2.threshold(big, INK_LEVEL, 255, cv2.THRESH_BINARY_INV)
    return cv2.copyMakeBorder(ink, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=255)


def clean_text(raw: str) -> str:
    """Tesseract's line without edge debris (``|``, quotes, a lone ``.``) and with single spaces."""
    words = raw.split()
    while words and not any(c.isalnum() for c in words[-1]):
        words.pop()
    while words and not any(c.isalnum() for c in words[0]):
        words.pop(0)
    return re.sub(r"^[^\w]+|[^\w.)]+$", "", " ".join(words))


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


def is_camera_off(image: np.ndarray, tile: Tile) -> bool:
    """A rendered camera-off tile is one flat grey apart from the name or initials.

    Video, even of a plain wall, has sensor noise and light gradients, so barely a fifth of
    its pixels share one exact grey; a camera-off tile has ~90%.
    """
    box = tile.box.clip(image.shape[1], image.shape[0])
    view = image[box.y:box.y2:2, box.x:box.x2:2]
    if view.size == 0:
        return False
    gray = to_gray(view)
    return float(np.bincount(gray.ravel(), minlength=256).max()) / gray.size >= FLAT_SHARE


def read_roster(lines: Iterable[str]) -> tuple[str, ...]:
    """One name per line; blank lines and ``#`` comments are skipped."""
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class NameReader:
    """Reads every tile's participant name; ``read`` gives ``{tile key: name}`` for tiles it could read.

    Without Tesseract (or with ``ocr=False``) it reads nothing and students stay tile keys;
    a missing Tesseract is reported once through ``notify``.
    """

    def __init__(self, roster: Sequence[str] = (), *, ocr: bool = True, notify: Notify | None = None):
        self.roster = tuple(roster)
        self._notify = notify or _stderr
        self._cache: dict[str, tuple[Thumbnail | None, str]] = {}   # tile key -> its label, its name
        self._ocr = self._tesseract() if ocr else None

    @property
    def available(self) -> bool:
        return self._ocr is not None

    def _tesseract(self) -> Recognise | None:
        try:
            import pytesseract
        except ImportError:
            return self._give_up("pip install pytesseract")
        if not shutil.which(pytesseract.pytesseract.tesseract_cmd):
            return self._give_up("install the tesseract-ocr package")
        return tesseract_lines

    def _give_up(self, why: str) -> None:
        self._notify(FALLBACK_NOTICE.format(why=why))
        return None

    def read(self, image: np.ndarray, tiles: Iterable[Tile]) -> dict[str, str]:
        """``{tile key: name}`` for the tiles whose name could be read.

        Labels unchanged since the last read keep their name; all changed ones go to
        Tesseract together, in one run (its start-up costs as much as reading ~3 labels).
        """
        if self._ocr is None:
            return {}
        tiles = tuple(tiles)
        changed: dict[str, tuple[Thumbnail, np.ndarray]] = {}
        for tile in tiles:
            crop = label_crop(image, tile)
            mask = text_mask(crop) if crop.size else np.zeros((0, 0), bool)
            thumb = _thumbnail(mask)
            known = self._cache.get(tile.key)
            if thumb is None or letter_height(mask) < MIN_LETTER_HEIGHT:
                self._cache[tile.key] = (thumb, "")   # no label, or too small to read reliably
            elif known is None or not _same_label(known[0], thumb):
                changed[tile.key] = (thumb, ocr_image(crop, mask))
        if changed:
            texts = self._recognise([picture for _, picture in changed.values()])
            for (key, (thumb, _)), text in zip(changed.items(), texts):
                known = self._cache.get(key)
                if not text and known and known[1] and _same_extent(known[0], thumb):
                    text = known[1]   # an unsure re-read of letters of the same extent: still them
                self._cache[key] = (thumb, text)
        names = {tile.key: self._cache[tile.key][1] for tile in tiles}
        # A name in two tiles identifies no one: both stay tile keys rather than merge two people.
        seen = Counter(names.values())
        return {key: name for key, name in names.items() if name and seen[name] == 1}

    def _recognise(self, pictures: list[np.ndarray]) -> list[str]:
        try:
            lines = self._ocr(pictures)
        except Exception as exc:   # pytesseract raises its own errors for a broken or vanished binary
            self._ocr = self._give_up(f"{type(exc).__name__}: {exc}".splitlines()[0][:120])
            return [""] * len(pictures)
        return [match_roster(_plausible(clean_text(line)), self.roster) for line in lines]


def tesseract_lines(pictures: Sequence[np.ndarray]) -> list[str]:
    """The text of each one-line picture, from one Tesseract run over all of them stacked.

    Words go back to the picture their vertical centre falls in, left to right. A line with
    a word Tesseract is unsure of (confidence < MIN_CONFIDENCE) comes back empty: a
    misread name would be a wrong identity, a missing one is only a tile key.
    """
    import pytesseract
    width = max(picture.shape[1] for picture in pictures)
    rows, slots, y = [], [], 0
    for picture in pictures:
        rows.append(cv2.copyMakeBorder(picture, 0, LINE_GAP, 0, width - picture.shape[1],
                                       cv2.BORDER_CONSTANT, value=255))
        slots.append(y + picture.shape[0] + LINE_GAP // 2)   # where this picture's band ends
        y += picture.shape[0] + LINE_GAP
    data = pytesseract.image_to_data(np.vstack(rows), config=TESSERACT_CONFIG,
                                     output_type=pytesseract.Output.DICT)
    words: list[list[tuple[int, str, bool]]] = [[] for _ in pictures]   # left, text, sure
    for text, top, height, left, conf in zip(data["text"], data["top"], data["height"], data["left"],
                                             data["conf"]):
        if text.strip():
            band = min(int(np.searchsorted(slots, top + height / 2, side="right")), len(pictures) - 1)
            sure = float(conf) >= MIN_CONFIDENCE or not any(c.isalnum() for c in text)
            words[band].append((left, text, sure))
    return [_sure_line(sorted(found)) for found in words]


def _sure_line(words: list[tuple[int, str, bool]]) -> str:
    """The words of a line, or "" when one is unsure; an unsure speck of 1-2 letters at either
    end is dropped instead (a bright bit of face or collar next to the label)."""
    while words and not words[-1][2] and len(words[-1][1]) <= 2:
        words = words[:-1]
    while words and not words[0][2] and len(words[0][1]) <= 2:
        words = words[1:]
    return " ".join(text for _, text, _ in words) if all(sure for _, _, sure in words) else ""


def _plausible(text: str) -> str:
    """``text`` if it could be a name (letters, digits, spaces, ``.-'``), else "": ``{``, ``<``
    or quotes inside a reading mean Tesseract took bits of a face for letters."""
    return "" if re.search(r"[^\w .'’-]", text) else text


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
