"""Who is in which tile: one person per student for the whole session, whatever OCR and the gallery do.

A tile's readings are votes, not verdicts. Each person keeps a tally of the clean readings of
their label (``names.clean_reading``) and is shown under the most frequent one, so ``Chen L. I``
read for a frame is a vote for ``Chen L.``, never a second student. A tile's person changes
only on strong evidence: a name that is someone else's (the gallery moved them here), a
different name read for ``CHALLENGE_READS`` frames over ``CHALLENGE_SECONDS`` (a new
participant took the tile), or new tile geometry. Where no label can be read, a tile whose
picture suddenly changed, or a new layout, is matched to the people who lost their tile by a
tiny colour signature of the tile (``tile_looks``: 48 numbers, never an image) and its position.

An id stands for one person: it is given to someone else only when it was a tile key whose
unnamed person is forgotten, or a name a misread gave someone for a moment. Every id a person
was shown under (a tile key before the label was read, an earlier winner of the vote) stays in
``aliases``, so the session record can fold those rows into one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_overlay.core import Box, Tile
from fer_overlay.names import clean_reading, reading_key, same_person

LOOK_GRID = 4            # a tile's look: mean colour of LOOK_GRID x LOOK_GRID cells
LOOK_SAMPLES = 16        # pixels sampled per side of a tile, averaged LOOK_SAMPLES / LOOK_GRID squared a cell
JUMPED = 16.0            # mean colour difference (0-255) above which a tile shows someone else
SAME_LOOK = 14.0         # ... below which a tile that lost its label still shows the same person
LOOK_MARGIN = 4.0        # ... and this much closer than the next candidate (camera-off tiles look alike)
MOVE_COST = 2.0          # look difference added per tile width a person would have moved
SAME_PLACE = 0.8         # box overlap (IoU) of a tile found again in its place
CHALLENGE_READS = 3      # frames a different name must be read on a tile before it names a new person
CHALLENGE_SECONDS = 2.0  # ... over at least this long
REMEMBER = 30.0          # seconds a person who lost their tile can still be found by their look
RENAME_MARGIN = 1.25     # a name replaces the shown one with this many times its votes (no flip-flop)

Pseudonymise = Callable[[str], str]


def tile_looks(image: np.ndarray, tiles: Sequence[Tile]) -> dict[str, np.ndarray]:
    """Each tile's appearance as ``LOOK_GRID``² mean colours (float32, 0-255): what lets a student
    with an unreadable label be followed to a new tile. Pixels on a lattice of every tile taken
    in one gather and averaged in one resize, not a resize per tile: it runs on every frame
    (~0.1 ms for 25 tiles at 1080p)."""
    if not tiles:
        return {}
    height, width = image.shape[:2]
    boxes = np.array([[t.box.x, t.box.y, t.box.w, t.box.h] for t in tiles])
    steps = np.arange(LOOK_SAMPLES)
    ys = (boxes[:, 1:2] + steps * boxes[:, 3:4] // LOOK_SAMPLES).clip(0, height - 1)
    xs = (boxes[:, 0:1] + steps * boxes[:, 2:3] // LOOK_SAMPLES).clip(0, width - 1)
    pixels = image.reshape(height * width, -1).take((ys[:, :, None] * width + xs[:, None, :]).ravel(), axis=0)
    stacked = pixels.reshape(len(tiles) * LOOK_SAMPLES, LOOK_SAMPLES, -1)   # the tiles' lattices one above another
    cells = cv2.resize(stacked, (LOOK_GRID, len(tiles) * LOOK_GRID), interpolation=cv2.INTER_AREA)
    cells = cells.reshape(len(tiles), LOOK_GRID * LOOK_GRID, -1)[..., :3].astype(np.float32)
    cells = np.broadcast_to(cells, (*cells.shape[:2], 3))   # a gray frame: one level for all three
    return {t.key: cells[i].ravel() for i, t in enumerate(tiles)}


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def _same_places(tiles: tuple[Tile, ...], before: tuple[Tile, ...]) -> bool:
    """Whether ``tiles`` are the tiles of ``before``, a pixel or two aside: the grid found again
    (every few seconds, to be safe) is no new layout."""
    if len(tiles) != len(before):
        return False
    old = {t.key: t.box for t in before}
    return all(t.key in old and t.box.iou(old[t.key]) >= SAME_PLACE for t in tiles)


@dataclass
class Person:
    """One student for the whole session (mutable: the roll updates it every frame)."""

    pid: int
    id: str                                                   # shown: voted name, pseudonym or tile key
    votes: Counter = field(default_factory=Counter)           # clean reading -> frames it was read
    aliases: dict[str, None] = field(default_factory=dict)    # ids shown before, oldest first
    look: np.ndarray | None = None
    box: Box | None = None
    seen: float = 0.0                                         # last time on a tile

    @property
    def named(self) -> bool:
        return bool(self.votes)

    @property
    def reads(self) -> int:
        return sum(self.votes.values())


@dataclass
class _Challenge:
    """A different name read on a settled person's tile, not yet trusted."""

    reading: str
    first: float
    reads: int = 0


@dataclass(frozen=True)
class Placement:
    """The roll's answer for one frame: who is on each tile, and whose history became whose."""

    people: dict[str, Person]                       # tile key -> person
    merged: tuple[tuple[int, int], ...] = ()        # (pid gone, pid it became)


class Roll:
    """Keeps the session's people and places them on each frame's tiles (see the module docstring).

    ``pseudonyms``, when set, gives each named person a stand-in id (``Student 3``) once: no real
    name leaves the roll, while the vote still goes by the real letters.
    """

    def __init__(self, pseudonyms: Pseudonymise | None = None):
        self.pseudonyms = pseudonyms
        self.people: dict[int, Person] = {}
        self._owner: dict[str, int] = {}            # every id ever shown -> the person it is (never reused)
        self._by_key: dict[str, set[int]] = {}      # reading key -> people read under it
        self._cleaned: dict[str, str] = {}          # raw reading -> clean (readings repeat every frame)
        self._keys: dict[str, str] = {}             # clean reading -> its key
        self._layout: tuple[Tile, ...] = ()
        self._on: dict[str, int] = {}               # tile key -> pid, last frame
        self._challenges: dict[str, _Challenge] = {}
        self._next = 0

    def place(self, tiles: tuple[Tile, ...], readings: Mapping[str, str], now: float,
              looks: Mapping[str, np.ndarray] | None = None) -> Placement:
        """Who is on each of ``tiles``, from this frame's readings (tile key -> name) and looks."""
        looks = looks or {}
        keys = {tile.key for tile in tiles}
        readings = {key: text for key, raw in readings.items() if key in keys and (text := self._clean(raw))}
        if not _same_places(tiles, self._layout):   # new geometry: no tile's person carries over by position
            self._on, self._challenges = {}, {}
        self._layout = tiles
        before = {key: self.people[pid] for key, pid in self._on.items() if pid in self.people}
        placed: dict[str, Person] = {}
        on: set[int] = set()   # pids of ``placed``
        merged: list[tuple[int, int]] = []

        def put(key: str, person: Person) -> None:
            placed[key] = person
            on.add(person.pid)

        def taken(person: Person | None) -> bool:
            return person is not None and person.pid in on

        # 1. Labels that confirm the tile's person: a vote, and the challenge of another name ends.
        unsure, unknown = [], {}
        for key, reading in readings.items():
            mine = before.get(key)
            if mine is not None and self._confirms(mine, reading):
                self._vote(mine, reading)
                put(key, mine)
                self._challenges.pop(key, None)
            else:
                unsure.append(key)
        # 2. Other names: someone moved here, a misread, or a new participant.
        for key in unsure:
            reading, mine = readings[key], before.get(key)
            free = mine is not None and not taken(mine)
            other, sure = self._owner_of(reading, on | ({mine.pid} if mine else set()))
            if other is not None:
                # Their old tile reads them no more (a name is on one tile) and this tile shows a new
                # picture (or, its look unknown, their very name is read): the gallery moved them here.
                # Else a misread until it persists (two single-frame misreads can look like a swap;
                # a swap moves pictures).
                look = looks.get(key)
                moved = other.pid in self._on.values() and (self._jumped(mine, look) if look is not None else sure)
                if not free or not mine.named or moved or self._challenged(key, reading, now):
                    if free and not mine.named and not moved:
                        self._merge(mine, other)   # the tile's unnamed person was them all along
                        merged.append((mine.pid, other.pid))
                    self._vote(other, reading)
                    put(key, other)
                    self._challenges.pop(key, None)
            elif not free:
                unknown[key] = reading   # a new face, or a moved one misread: its look decides below
            elif mine.reads < CHALLENGE_READS and self._by_key.get(self._key(reading), set()) <= {mine.pid}:
                self._vote(mine, reading)   # unnamed, or named by a misread a moment ago: the vote decides
                put(key, mine)
            elif self._challenged(key, reading, now):
                challenge = self._challenges.pop(key)
                if challenge.reads > mine.reads:   # the name it had was the misread
                    self._vote(mine, reading, challenge.reads)
                    put(key, mine)
                else:
                    put(key, self._new(reading))
            # else: the tile keeps its person below, as a tile with no reading does

        # 3. Unread tiles: the same person while the tile looks the same, else whoever it looks like.
        open_tiles = []
        for tile in tiles:
            mine = before.get(tile.key)
            if tile.key in placed:
                continue
            if mine is not None and not taken(mine) and not self._jumped(mine, looks.get(tile.key)):
                put(tile.key, mine)
            else:
                open_tiles.append(tile)
        for tile, person in self._by_look(open_tiles, looks, on, now, tiles):
            put(tile.key, person)
            reading = unknown.pop(tile.key, None)
            if reading is not None and (same_person(reading, self._name(person)) or person.reads < CHALLENGE_READS):
                self._vote(person, reading)
        for tile in open_tiles:
            if tile.key in unknown and not any(same_person(unknown[tile.key], self._name(p)) for p in placed.values()):
                put(tile.key, self._new(unknown[tile.key]))
            elif tile.key not in placed:
                mine = before.get(tile.key)
                # A new picture and no one it could be instead (a camera turned off): still them.
                put(tile.key, mine if mine is not None and not taken(mine) else self._unnamed(tile.key, on))

        for tile in tiles:
            person = placed[tile.key]
            person.box, person.seen = tile.box, now
            if tile.key in looks:
                person.look = looks[tile.key]
        self._on = {tile.key: placed[tile.key].pid for tile in tiles}
        self._forget(now)
        return Placement({tile.key: placed[tile.key] for tile in tiles}, tuple(merged))

    def left(self) -> list[Person]:
        """Named people on no tile now, in order of first appearance."""
        on = set(self._on.values())
        return [p for pid, p in sorted(self.people.items()) if p.named and pid not in on]

    # --- evidence ----------------------------------------------------------------------------

    def _clean(self, raw: str) -> str:
        text = self._cleaned.get(raw)
        if text is None:
            text = self._cleaned[raw] = clean_reading(raw)
        return text

    def _key(self, reading: str) -> str:
        key = self._keys.get(reading)
        if key is None:
            key = self._keys[reading] = reading_key(reading)
        return key

    def _name(self, person: Person) -> str:
        """The person's most read name (their real letters, also where a pseudonym is shown)."""
        return max(person.votes, key=person.votes.__getitem__) if person.votes else person.id

    def _confirms(self, person: Person, reading: str) -> bool:
        """Whether ``reading`` is the person's own label: their name's key or one they were read
        under, else a near reading of their name that is no one else's name."""
        key = self._key(reading)
        if key == self._key(self._name(person)) or person.pid in self._by_key.get(key, ()):
            return True
        if self._named_as(key, exclude={person.pid}):
            return False
        return person.named and same_person(reading, self._name(person))

    def _named_as(self, key: str, exclude: set[int]) -> list[Person]:
        """The people (not in ``exclude``) whose most read name has ``key``."""
        return [self.people[pid] for pid in self._by_key.get(key, ())
                if pid not in exclude and self._key(self._name(self.people[pid])) == key]

    @staticmethod
    def _jumped(person: Person | None, look: np.ndarray | None) -> bool:
        return person is not None and person.look is not None and look is not None \
            and look_distance(person.look, look) > JUMPED

    def _challenged(self, key: str, reading: str, now: float) -> bool:
        """Counts a different reading on ``key``; True once it was read often and long enough."""
        challenge = self._challenges.get(key)
        if challenge is None or self._key(challenge.reading) != self._key(reading):
            challenge = self._challenges[key] = _Challenge(reading, now)
        challenge.reads += 1
        return challenge.reads >= CHALLENGE_READS and now - challenge.first >= CHALLENGE_SECONDS

    def _owner_of(self, reading: str, exclude: set[int]) -> tuple[Person | None, bool]:
        """The known person (not in ``exclude``) whose name ``reading`` is, and whether surely:
        their most read name (sure), else a name they were read under, else the only person it
        is a near reading of (two: it is no one's)."""
        key = self._key(reading)
        named = self._named_as(key, exclude)
        if named:
            return max(named, key=lambda p: p.reads), True
        read = [self.people[pid] for pid in self._by_key.get(key, ()) if pid not in exclude]
        if read:
            return max(read, key=lambda p: p.votes[reading]), False
        near = [p for p in self.people.values()
                if p.pid not in exclude and p.named and same_person(reading, self._name(p))]
        return (near[0] if len(near) == 1 else None), False

    def _by_look(self, tiles: list[Tile], looks: Mapping[str, np.ndarray], taken: set[int], now: float,
                 layout: tuple[Tile, ...]) -> list[tuple[Tile, Person]]:
        """Open tiles matched to people without a tile by look plus distance moved, best pair first,
        each only where it is clearly the best (two dark camera-off tiles look alike)."""
        people = [p for p in self.people.values() if p.pid not in taken and p.look is not None
                  and p.box is not None and now - p.seen <= REMEMBER]
        tiles = [t for t in tiles if t.key in looks]
        if not people or not tiles:
            return []
        width = max(float(np.median([t.box.w for t in layout])), 1.0)
        look = np.array([[look_distance(p.look, looks[t.key]) for p in people] for t in tiles])
        moved = np.array([[np.hypot(*np.subtract(p.box.center, t.box.center)) / width for p in people] for t in tiles])
        cost = np.where(look <= SAME_LOOK, look + MOVE_COST * moved, np.inf)
        pairs = []
        while np.isfinite(cost).any():
            i, j = np.unravel_index(np.argmin(cost), cost.shape)
            rivals = np.concatenate([np.delete(cost[i], j), np.delete(cost[:, j], i)])
            if not rivals.size or rivals.min() - cost[i, j] >= LOOK_MARGIN:
                pairs.append((tiles[i], people[j]))
                cost[i, :], cost[:, j] = np.inf, np.inf
            else:
                cost[i, j] = np.inf
        return pairs

    # --- people ------------------------------------------------------------------------------

    def _new(self, reading: str) -> Person:
        """A person first seen by name (no tile key shown before it)."""
        person = self._person(self.pseudonyms(f"\0{self._next}") if self.pseudonyms else reading)
        self._vote(person, reading)
        return person

    def _unnamed(self, key: str, taken: set[int]) -> Person:
        """A person known by tile key: the unnamed person who had that key and is on no tile now
        (as before names, a tile key is whoever is there), else a new one."""
        holder = self.people.get(self._owner.get(key, -1))
        if holder is not None and not holder.named and holder.id == key and holder.pid not in taken:
            return holder
        return self._person(key)

    def _person(self, wanted: str) -> Person:
        """A new person shown as ``wanted``, or ``wanted (2)``... where that id was someone's."""
        sid, n = wanted, 1
        while sid in self._owner:
            n += 1
            sid = f"{wanted} ({n})"
        person = self.people[self._next] = Person(self._next, sid)
        self._owner[sid] = self._next
        self._next += 1
        return person

    def _vote(self, person: Person, reading: str, weight: int = 1) -> None:
        """``weight`` more frames read ``reading``; the person is shown under their most read clean
        name, changed only when another is read ``RENAME_MARGIN`` times as often (no flip-flop)."""
        person.votes[reading] += weight
        self._by_key.setdefault(self._key(reading), set()).add(person.pid)
        if self.pseudonyms:
            self._rename(person, self.pseudonyms(f"\0{person.pid}"))
        elif reading != person.id:   # (the shown name gaining a vote still leads: most frames)
            top = max((r for r in person.votes if self._free_for(person, r)), key=person.votes.__getitem__,
                      default=None)
            if top is not None and person.votes[top] >= RENAME_MARGIN * person.votes.get(person.id, 0):
                self._rename(person, top)

    def _free_for(self, person: Person, name: str) -> bool:
        """Whether ``person`` may be shown as ``name``: no one else's id, or only an alias of someone
        read under it less often (a misread that named them for a moment)."""
        owner = self.people.get(self._owner.get(name, person.pid))
        return owner is None or owner is person or (owner.id != name and owner.votes[name] < person.votes[name])

    def _rename(self, person: Person, name: str) -> None:
        if name != person.id:
            previous = self.people.get(self._owner.get(name, person.pid))
            if previous is not None and previous is not person:
                previous.aliases.pop(name, None)   # theirs by a misread: the record keeps those rows theirs
            person.aliases[person.id] = None
            person.aliases.pop(name, None)
            person.id = name
            self._owner[name] = person.pid

    def _merge(self, gone: Person, into: Person) -> None:
        for reading, count in gone.votes.items():
            self._by_key[self._key(reading)].discard(gone.pid)
            self._vote(into, reading, count)
        for sid in (*gone.aliases, gone.id):
            into.aliases.setdefault(sid, None)
            self._owner[sid] = into.pid
        del self.people[gone.pid]

    def _forget(self, now: float) -> None:
        """Unnamed people off every tile for ``REMEMBER`` seconds: no name or look left to find them by."""
        on = set(self._on.values())
        for person in [p for p in self.people.values() if not p.named and p.pid not in on and now - p.seen > REMEMBER]:
            del self.people[person.pid]
            for sid in (*person.aliases, person.id):   # a tile key again: whoever is there next
                del self._owner[sid]
