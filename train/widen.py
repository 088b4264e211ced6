"""Function-preserving widening of a trained network (Net2WiderNet, Chen et al. 2016).

Why: training a wider network from scratch takes 90 epochs (hours on this CPU, more than a
session); widening a finished one and training it on for a short schedule tests what the extra
capacity buys in a fraction of that time. Each new channel copies an old one (its kernel and its
batch-norm statistics), and every layer that reads a copied channel splits that channel's weights
evenly among the copies, so the wide network answers as the narrow one did. Copies would then
receive the same gradients and stay copies for ever; a little noise on each new channel's kernel
lets them drift apart.
"""

from __future__ import annotations

import keras
import numpy as np

WEIGHTED = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Dense)


def _spread(n_old: int, n_new: int, rng: np.random.Generator) -> np.ndarray:
    """Which old unit each new unit copies: the old ones in place, then random old ones."""
    if n_new < n_old:
        raise ValueError(f"cannot narrow a layer from {n_old} to {n_new} units")
    return np.concatenate([np.arange(n_old), rng.integers(0, n_old, n_new - n_old)])


def widen(narrow: keras.Model, wide: keras.Model, *, noise: float = 0.05, seed: int = 0) -> None:
    """Set ``wide``'s weights so it computes what ``narrow`` does (up to ``noise``, a share of each
    kernel's standard deviation added to the new channels' kernels).

    Both networks must come from ``train.model.build_model`` with the same depth; every width in
    ``wide`` must be at least ``narrow``'s.
    """
    rng = np.random.default_rng(seed)
    old_layers = [layer for layer in narrow.layers if isinstance(layer, WEIGHTED)]
    new_layers = [layer for layer in wide.layers if isinstance(layer, WEIGHTED)]
    if [type(layer) for layer in old_layers] != [type(layer) for layer in new_layers]:
        raise ValueError(f"{narrow.name} and {wide.name} differ in depth: only widths can change")
    source = None      # for the tensor entering the layer: which old unit each unit copies
    spatial = True     # the tensor is still a feature map, not yet flattened
    for old, new in zip(old_layers, new_layers):
        weights = old.get_weights()
        if isinstance(old, keras.layers.BatchNormalization):
            new.set_weights([w[source] for w in weights])
            continue
        kernel = weights[0]
        if source is not None:
            if spatial and kernel.ndim == 2:   # the first Dense reads the flattened map
                source, spatial = _flattened(source, kernel.shape[0]), False
            share = np.bincount(source, minlength=kernel.shape[-2])[source]
            kernel = np.take(kernel, source, axis=-2) / share.reshape((-1, 1))
        target = _spread(kernel.shape[-1], new.weights[0].shape[-1], rng)
        widened = np.take(kernel, target, axis=-1)
        copies = np.arange(len(target)) >= kernel.shape[-1]
        widened[..., copies] += rng.normal(0, noise * kernel.std(), widened[..., copies].shape)
        new.set_weights([widened, *[w[target] for w in weights[1:]]])
        source = target


def _flattened(channels: np.ndarray, old_units: int) -> np.ndarray:
    """``channels`` (per new channel, the old one it copies) for a flattened (height, width,
    channel) map that had ``old_units`` units: per new flat unit, the old flat unit it copies."""
    n_old = int(channels.max()) + 1   # the old channels come first, in place
    cells = np.arange(old_units // n_old)[:, None]
    return (cells * n_old + channels[None, :]).reshape(-1)
