"""Standardization for `accelnn train`: features (and a regressor's targets) are scaled to
mean 0 and standard deviation 1 for training, and the scaling is then folded into the
trained network, so that the saved model is a plain MLP that takes raw rows and gives raw
targets -- no file-format change, and `accelnn predict` (or MLP.load) needs nothing else.

    scaler = Standardizer.fit(X, rows, y)          # statistics of the training rows
    model.fit(scaler.features(X[rows]), scaler.targets(y[rows]), ...)
    scaler.fold(model)                             # model(x) == the trained net on scaled x

Folding, with z = (x - mu) / s for the features and y = t * sy + my for a regressor's
targets (t the standardized output):

    first layer:  z W1 + b1 = x (W1 / s[:, None]) + (b1 - (mu / s) W1)
    last layer:   (a WL + bL) sy + my = a (WL sy) + (bL sy + my)    (identity output only)

A column whose standard deviation is at most 1e-12 of max(|mean|, 1) counts as constant:
its s is 1, so it is only centered (new rows that differ there still reach the network).
The folded weights are computed in float64 and stored in the model's dtype: in float64 the
saved model reproduces the trained one to rounding (about 1e-15 relative); in float32 a
feature whose mean lies more than about 1e5 standard deviations from zero loses digits to
the cancellation in the folded bias.
"""

from __future__ import annotations

import numpy as np

CHUNK = 65536  # rows per pass over a (memory-mapped) X
CONSTANT = 1e-12  # relative spread below which a column counts as constant


def moments(X, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of the columns of X[rows], in float64, reading a chunk of
    rows at a time (X may be a memory map): two passes, so no cancellation."""
    total = np.zeros(X.shape[1])
    for lo in range(0, len(rows), CHUNK):
        total += np.asarray(X[rows[lo:lo + CHUNK]], dtype=np.float64).sum(axis=0)
    mean = total / len(rows)
    squares = np.zeros(X.shape[1])
    for lo in range(0, len(rows), CHUNK):
        d = np.asarray(X[rows[lo:lo + CHUNK]], dtype=np.float64) - mean
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / len(rows))


def _scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.where(std > CONSTANT * np.maximum(np.abs(mean), 1.0), std, 1.0)


class Standardizer:
    """The statistics of one training run: the features' mean and scale, and for a
    regressor the targets' (None for a classifier)."""

    def __init__(self, mean, scale, y_mean=None, y_scale=None):
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)
        self.y_mean = None if y_mean is None else np.asarray(y_mean, float)
        self.y_scale = None if y_scale is None else np.asarray(y_scale, float)

    @classmethod
    def fit(cls, X, rows: np.ndarray, y: np.ndarray | None = None) -> Standardizer:
        """The statistics of X[rows] (and of the numeric targets y[rows], given for a
        regressor). Constant columns get the scale 1 (see the module docstring)."""
        mean, std = moments(X, rows)
        if y is None:
            return cls(mean, _scale(mean, std))
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        y_mean, y_std = moments(Y, rows)
        return cls(mean, _scale(mean, std), y_mean, _scale(y_mean, y_std))

    def constant_columns(self) -> int:
        """How many feature columns count as constant."""
        return int(np.sum(self.scale == 1.0))

    def features(self, X) -> np.ndarray:
        """(X - mean) / scale, float64."""
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Standardized regression targets, in y's shape; class labels unchanged."""
        if self.y_mean is None:
            return y
        Y = (np.asarray(y, dtype=np.float64).reshape(len(y), -1) - self.y_mean) / self.y_scale
        return Y.reshape(np.shape(y))

    def fold(self, model) -> None:
        """Make `model`, trained on standardized rows (and targets), take raw rows and give
        raw targets: its first layer absorbs the features' scaling, and for a regressor
        its last layer the targets'. The weights are computed in float64."""
        weights = [(W.astype(np.float64), b.astype(np.float64))
                   for W, b in model.get_weights()]
        W, b = weights[0]
        weights[0] = (W / self.scale[:, None], b - (self.mean / self.scale) @ W)
        if self.y_mean is not None:
            W, b = weights[-1]
            weights[-1] = (W * self.y_scale[None, :], b * self.y_scale + self.y_mean)
        model.set_weights(weights)
