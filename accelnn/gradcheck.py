"""Gradient check: analytic gradients against central finite differences."""

from __future__ import annotations

import numpy as np


def gradcheck(model, X, Y, *, eps: float | None = None, max_entries: int | None = None,
              seed: int = 0) -> float:
    """The largest relative error, over the parameter tensors, between `loss_and_grads` and
    central finite differences (L(p + eps) - L(p - eps)) / (2 eps) of the model's own loss:

        err(tensor) = ||g - g_fd|| / max(||g||, ||g_fd||, 1e-8)

    Run it on a float64 model: eps defaults to 1e-6 (float64) or 1e-2 (float32), and float32
    differences are only good to about 1e-3. `max_entries` checks a seeded random subset of each
    tensor's entries (all of them by default). Rejects what `fit` rejects; leaves every
    weight exactly as it was."""
    if max_entries is not None and max_entries < 1:
        raise ValueError(f"max_entries must be None or >= 1, got {max_entries!r}")
    _, grads = model.loss_and_grads(X, Y)
    if eps is None:
        eps = 1e-6 if model.dtype == np.float64 else 1e-2
    with model._evaluating(X, Y) as (Xd, Yd):
        return _worst(model, Xd, Yd, grads, eps, max_entries, seed)


def _worst(model, Xd, Yd, grads, eps, max_entries, seed) -> float:
    rng = np.random.default_rng(seed)
    analytic = [g for pair in grads for g in pair]
    worst = 0.0
    for p, g in zip(model._params, analytic):
        flat_idx = np.arange(g.size)
        if max_entries is not None and g.size > max_entries:
            flat_idx = rng.choice(g.size, max_entries, replace=False)
        fd = np.empty(len(flat_idx))
        for k, i in enumerate(flat_idx):
            pos = np.unravel_index(i, g.shape)
            orig = p[pos].item()
            try:
                p[pos] = orig + eps
                plus = float(model._loss_grads(Xd, Yd))
                p[pos] = orig - eps
                minus = float(model._loss_grads(Xd, Yd))
            finally:  # the weight comes back exactly, even after an interrupt
                p[pos] = orig
            fd[k] = (plus - minus) / (2 * eps)
        ga = g.ravel()[flat_idx].astype(np.float64)
        denom = max(np.linalg.norm(ga), np.linalg.norm(fd), 1e-8)
        worst = max(worst, float(np.linalg.norm(ga - fd) / denom))
    return worst
