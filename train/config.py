"""Every hyper-parameter of a training run, in one frozen dataclass.

The config is written as ``config.json`` next to every checkpoint and exported model,
so any figure in ``models/metrics.json`` can be traced back to the settings that made it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

LOWRES_SIZES = (12, 16, 20, 24, 28, 32, 40)
"""Side in pixels a face is shrunk to by ``--lowres``. On the nine real meeting captures the face
crops YuNet's eyes give span 13-250 px (median 44; 38% under 32), and FER2013's faces are all 48."""


JPEG_QUALITIES = (25, 85)
"""Range of the quality ``--jpeg`` draws from, uniformly: what a meeting's video codec leaves of a
face spans from blocky (a crowded call's low bitrate) to nearly clean."""


@dataclass(frozen=True)
class TrainConfig:
    data: str = "../shared/data/fer2013.npz"
    labels: str = "fer2013"          # "fer2013" (hard labels) or "ferplus" (vote distributions)
    seed: int = 1337
    epochs: int = 80
    batch_size: int = 64
    learning_rate: float = 2e-3      # peak of the warm-up + cosine schedule (AdamW)
    warmup_epochs: int = 3
    weight_decay: float = 0.05       # decoupled (AdamW); multiplied by the learning rate
    label_smoothing: float = 0.1
    widths: tuple[int, ...] = (32, 64, 128, 256)
    dense: int = 256
    dropout: float = 0.5
    # On-the-fly augmentation (all stateless, seeded by (seed, epoch, batch)).
    flip: bool = True
    rotate_deg: float = 15.0
    scale: float = 0.15              # zoom in/out by up to this fraction
    shift: float = 0.10              # translate by up to this fraction of the side
    erase_prob: float = 0.5          # random erasing (Zhong et al. 2017)
    brightness: float = 0.2          # +-20% contrast and brightness jitter
    webcam: float = 0.0              # share of faces given a webcam's look: blur, gamma, sensor noise
    jpeg: float = 0.0                # share of faces JPEG-compressed at JPEG_QUALITIES (a video codec's blocks)
    lowres: float = 0.0              # share of faces shrunk to LOWRES_SIZES and enlarged back (small gallery faces)
    mixup: float = 0.0               # mixup's Beta(a, a) parameter (Zhang et al. 2018); 0 = off
    limit: int = 0                   # use only the first N training rows (tests); 0 = all
    init: str = ""                   # start from this trained model's weights (a warm restart); "" = random
    teacher: tuple[str, ...] = ()    # trained models whose averaged answers join the targets (distillation)
    teacher_weight: float = 0.5      # the teachers' share of each target; the rest is the label

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        raw = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        for key in ("widths", "teacher"):   # JSON has lists only
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
