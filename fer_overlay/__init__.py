"""fer-overlay: live emotion overlay for online-lecture gallery views.

Public API: ``fer_overlay.EmotionClassifier.load().predict(faces)`` with uint8 faces
``(N, 48, 48)`` -> ``(N, 7)`` probabilities in ``fer_overlay.EMOTIONS`` order.
Imports are lazy so ``import fer_overlay`` stays cheap and loads no library it does not need.
"""

from fer_overlay.core import EMOTIONS

__all__ = ["EMOTIONS", "EmotionClassifier"]


def __getattr__(name: str):
    if name == "EmotionClassifier":
        from fer_overlay.classify import EmotionClassifier
        return EmotionClassifier
    raise AttributeError(f"module 'fer_overlay' has no attribute {name!r}")
