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
    tensor's entries (all of them by default). Rejects what `fit` rejects. The differences are
    taken on a copy of the weights: the model itself is never perturbed, so a gradcheck is safe
    beside predictions in other threads."""
    if max_entries is not None and max_entries < 1:
        raise ValueError(f"max_entries must be None or >= 1, got {max_entries!r}")
    _, grads = model.loss_and_grads(X, Y)
    if eps is None:
        eps = 1e-6 if model.dtype == np.float64 else 1e-2
    Xd, Yd, head, _ = model.encode(X, Y)
    be, net = model.backend, model.network
    params = [be.asarray(p, model.dtype) for pair in model.get_weights() for p in pair]
    ws = net.workspace(Xd.shape[0], backward=False)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for p, g in zip(params, (g for pair in grads for g in pair)):
        flat_idx = np.arange(g.size)
        if max_entries is not None and g.size > max_entries:
            flat_idx = rng.choice(g.size, max_entries, replace=False)
        fd = np.empty(len(flat_idx))
        for k, i in enumerate(flat_idx):
            pos = np.unravel_index(i, g.shape)
            orig = p[pos].item()
            p[pos] = orig + eps
            plus = float(net.loss(params, head, Xd, Yd, ws))
            p[pos] = orig - eps
            minus = float(net.loss(params, head, Xd, Yd, ws))
            p[pos] = orig
            fd[k] = (plus - minus) / (2 * eps)
        ga = g.ravel()[flat_idx].astype(np.float64)
        denom = max(np.linalg.norm(ga), np.linalg.norm(fd), 1e-8)
        worst = max(worst, float(np.linalg.norm(ga - fd) / denom))
    return worst
