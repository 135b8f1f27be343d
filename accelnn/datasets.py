"""Small seeded data sets made on the spot (nothing is downloaded)."""

from __future__ import annotations

import numpy as np


def make_flower(n_samples: int = 400, *, seed: int | None = 1, noise: float = 0.2):
    """The planar two-class "flower" of the classic two-layer exercise: two sets of petals of
    a rose curve r = 4 sin(4t), half the points each. Returns X (n, 2) float64, y (n,) int.
    Rejects n_samples < 2 and noise < 0."""
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 2):
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    half = n_samples // 2
    X = np.empty((n_samples, 2))
    y = np.empty(n_samples, dtype=np.int64)
    for j, (lo, hi) in enumerate(((0, half), (half, n_samples))):
        k = hi - lo
        t = np.linspace(j * 3.12, (j + 1) * 3.12, k) + rng.normal(0, noise, k)
        r = 4 * np.sin(4 * t) + rng.normal(0, noise, k)
        X[lo:hi] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[lo:hi] = j
    return X, y
