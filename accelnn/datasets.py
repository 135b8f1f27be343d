"""Small seeded data sets made on the spot (flower, spirals, XOR), and scikit-learn's copy of the
8x8 handwritten digits. Nothing is downloaded."""

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


def _check_sizes(n_samples, noise, low: int = 2) -> None:
    if not (isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool)
            and n_samples >= low):
        raise ValueError(f"n_samples must be an integer >= {low}, got {n_samples!r}")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")


def make_spirals(n_samples: int = 400, *, n_classes: int = 2, turns: float = 1.5,
                 noise: float = 0.1, seed: int | None = 1):
    """Interleaved spiral arms, one per class, around the origin: arm k at angle
    2 pi (turns t + k / n_classes) and radius t for t in [0.05, 1], plus Gaussian noise of
    scale `noise` times the radius. Returns X (n, 2) float64, y (n,) int in 0..n_classes-1,
    the classes as even as n_samples allows. Rejects n_classes < 2, n_samples < n_classes,
    turns <= 0 and noise < 0."""
    if not (isinstance(n_classes, (int, np.integer)) and n_classes >= 2):
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    _check_sizes(n_samples, noise, low=int(n_classes))
    if not (isinstance(turns, (int, float)) and turns > 0):
        raise ValueError(f"turns must be a number > 0, got {turns!r}")
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) * n_classes // n_samples
    t = np.empty(n_samples)
    for k in range(n_classes):
        t[y == k] = np.linspace(0.05, 1.0, int(np.sum(y == k)))
    angle = 2 * np.pi * (turns * t + y / n_classes)
    X = np.c_[t * np.cos(angle), t * np.sin(angle)]
    X += rng.normal(0.0, noise, X.shape) * t[:, None]
    return X, y.astype(np.int64)


def make_xor(n_samples: int = 400, *, noise: float = 0.0, seed: int | None = 1):
    """XOR of the signs: points uniform in [-1, 1]^2, label 1 where exactly one coordinate is
    positive, then Gaussian noise of scale `noise` added to the points (labels unchanged).
    Returns X (n, 2) float64, y (n,) int. Rejects n_samples < 2 and noise < 0."""
    _check_sizes(n_samples, noise)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    return X + rng.normal(0.0, noise, X.shape), y


def load_digits():
    """scikit-learn's copy of the UCI 8x8 handwritten digits: 1797 images, X (1797, 64)
    float64 with the pixel intensities 0..16 divided by 16 (so in [0, 1]), y (1797,) int
    0..9. Raises ImportError, saying how to install it, when scikit-learn is missing."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ImportError("the digits data set is scikit-learn's copy: pip install "
                          "scikit-learn (or 'accelnn[sklearn]')") from exc
    X, y = sklearn_digits(return_X_y=True)
    return X / 16.0, y.astype(np.int64)
