"""The one frozen configuration of a run's analysis, built by the CLI and passed down.

The live loop's rates and length (``--fps``, ``--analysis-fps``, ``--duration``) are arguments of
``pipeline.run_live`` instead: they pace the loop, and no stage of the analysis reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_overlay.core import FlagRule, Signals


@dataclass(frozen=True)
class Config:
    score_threshold: float = 0.6   # YuNet face score; lower finds more faces and more false ones
    detect_width: int = 960        # frames are downscaled to this width for detection
    max_faces: int = 100
    half_life: float = 1.5         # seconds for a student's smoothed probabilities to move halfway
    flip_average: bool = True      # test-time augmentation: a second look (mirror, zoom) at unsure faces
    model: Path | None = None      # emotion model file; None = the bundled one
    ocr: bool = False              # read names from the tiles' labels (the CLI turns this on)
    roster: tuple[str, ...] = ()   # known names: OCR readings snap to the closest one
    ocr_languages: tuple[str, ...] = ()   # Tesseract codes of the names' languages (kor, eng); () = all installed
    flag: FlagRule = FlagRule()    # when the live table flags a student
    anonymize: bool = False        # show and keep pseudonyms ("Student 3"), never real names
    signals: Signals = Signals.BOTH   # ATTENTION: head pose and presence only, no emotion model loaded
