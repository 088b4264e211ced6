"""A Zoom-like gallery clip made from bundled FER2013 PrivateTest faces, for ``fer-overlay demo``.

No screen, camera or meeting needed: the demo shows the whole pipeline on a 5x5 gallery
in which students change expression every couple of seconds and two have their camera off.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fer_overlay.assets import DEMO_FACES, bundled
from fer_overlay.core import Frame
from fer_overlay.errors import ModelError
from fer_overlay.gallery import compose_gallery

NAMES = ("Amara O.", "Ben K.", "Chen L.", "Dana R.", "Eli M.", "Farah S.", "Gus P.", "Hana T.",
         "Ivan D.", "Jade W.", "Kofi A.", "Lena B.", "Mateo G.", "Nia F.", "Omar H.", "Priya N.",
         "Quinn J.", "Rosa V.", "Sam Y.", "Tomas E.", "Uma C.", "Vik R.", "Wen Z.", "Xena Q.", "Yusuf I.")
CAMERA_OFF = (7, 18)       # these tiles show a name only
SCENE_SECONDS = 2.0        # how long a student keeps one expression


def load_faces() -> tuple[np.ndarray, np.ndarray]:
    path = bundled(DEMO_FACES)
    try:
        with np.load(path) as data:
            return data["pixels"], data["labels"]
    except (OSError, KeyError, ValueError):
        raise ModelError(f"demo faces missing or unreadable at {path}; reinstall fer-overlay") from None


class DemoSource:
    """``seconds`` of a 1280x720 gallery at ``fps``; scenes change every SCENE_SECONDS."""

    SIZE = (1280, 720)

    def __init__(self, seconds: float = 10.0, fps: float = 10.0, size: tuple[int, int] = SIZE,
                 rows: int = 5, cols: int = 5, seed: int = 0):
        self.fps, self.size = fps, size
        self.rows, self.cols, self.seed = rows, cols, seed
        self.pixels, self.labels = load_faces()
        self.frame_count = int(round(seconds * fps))

    def scene(self, number: int):
        """The gallery of scene ``number``: each student shows one bundled face."""
        rng = np.random.default_rng([self.seed, number])
        tiles = self.rows * self.cols
        picks = rng.choice(len(self.pixels), size=tiles, replace=False)
        faces = [None if i in CAMERA_OFF else self.pixels[p] for i, p in enumerate(picks)]
        return compose_gallery(faces, self.rows, self.cols, self.size, names=NAMES[:tiles],
                               rng_seed=self.seed)

    def __iter__(self) -> Iterator[Frame]:
        per_scene = max(int(round(SCENE_SECONDS * self.fps)), 1)
        image = None
        for index in range(self.frame_count):
            if index % per_scene == 0:
                image = self.scene(index // per_scene).image
            yield Frame(image, index, index / self.fps)

    def close(self) -> None:
        pass
