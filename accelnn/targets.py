"""Target encoding, as pure functions: which output head a set of targets implies, the class
labels, and the (m, n_out) float64 matrix Y that the loss compares with the output.

    labels (1-D, any sortable type)   -> one-hot rows (softmax) or a 0/1 column (one sigmoid)
    a 0/1 or probability matrix       -> as it is (softmax: rows sum to 1; sigmoid: in [0, 1])
    other numbers                     -> as they are (identity head, squared error)

Class i is output unit i (for one sigmoid unit: the 0/1 target), classes sorted as np.unique
sorts them.
"""

from __future__ import annotations

import numpy as np

from accelnn._data import host_array
from accelnn.losses import HEADS, Head


def integral(y: np.ndarray) -> bool:
    """True when every value of y is a whole number (integer dtypes always)."""
    return y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))


def check_classes(classes, n_out: int) -> np.ndarray:
    """`classes` as a sorted 1-D array of distinct labels, at most as many as `n_out` output
    units hold (two for a single unit); ValueError otherwise."""
    arr = np.asarray(classes)
    most = max(n_out, 2)
    if arr.ndim != 1 or not 1 <= len(arr) <= most or len(np.unique(arr)) != len(arr):
        raise ValueError(f"classes must be at most {most} distinct labels for {n_out} output "
                         f"units, got {arr.tolist()!r}")
    return np.sort(arr)


def resolve_head(y: np.ndarray, n_out: int) -> Head:
    """The head "auto" picks: 1-D labels -> sigmoid (one output unit, at most two distinct
    labels) or softmax (several units); a 0/1 matrix -> softmax when every row is one-hot,
    else sigmoid (multi-label); any other numbers -> identity (regression).

    Integer labels with more than two distinct values on one output unit are refused
    (ValueError): one unit holds two classes, and taking them for numbers to regress on
    would hide the mistake. Floats (other than 0/1 values) on one unit are values to
    regress on; output="identity" regresses on integers."""
    numeric = y.dtype.kind in "biuf"
    if y.ndim == 1:
        if n_out > 1 or not numeric or (integral(y) and len(np.unique(y)) <= 2):
            return HEADS["sigmoid" if n_out == 1 else "softmax"]
        if y.dtype.kind in "iu":
            n = len(np.unique(y))
            raise ValueError(f"y holds {n} distinct integer labels, but the output layer has "
                             f"1 unit, which holds 2 classes: give the MLP {n} output units "
                             f"to classify them (softmax), or output='identity' to regress "
                             f"on them as numbers")
        return HEADS["identity"]
    if numeric and np.isin(y, (0, 1)).all():
        one_hot = n_out > 1 and bool((y.sum(axis=1) == 1).all())
        return HEADS["softmax" if one_hot else "sigmoid"]
    return HEADS["identity"]


def encode_targets(y, m: int, n_out: int, head: Head | None, classes):
    """Validate y against m samples and an output layer of n_out units; returns
    (head, classes, Y (m, n_out) float64). `head` None resolves it from y (resolve_head);
    `classes` None takes them from y. Raises ValueError/TypeError naming what is wrong,
    including labels that the output cannot hold (more classes than units hold, or integer
    labels with more than two values on one unit of an "auto" output)."""
    y = host_array(y, "y")
    if y.ndim == 2 and y.shape[1] == 1 and n_out == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D (labels or values) or 2-D (one row per sample), "
                         f"got shape {y.shape}")
    if len(y) != m:
        raise ValueError(f"X and y have different lengths: {m} samples in X, {len(y)} "
                         f"in y")
    if y.dtype.kind == "c":
        raise TypeError("y must not be complex")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or Inf")
    head = head or resolve_head(y, n_out)
    if head.name == "sigmoid" and n_out > 1 and y.ndim == 1:
        raise ValueError(f"a sigmoid output with {n_out} units (multi-label) needs y of "
                         f"shape (samples, {n_out}): one 0/1 column per unit")
    soft = head.name == "sigmoid" and y.dtype.kind == "f" and not integral(y)
    if head.name != "identity" and y.ndim == 1 and not soft:
        return (head, *encode_labels(y, n_out, head, classes))
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must hold numbers for a {head.name} output, got dtype "
                        f"{y.dtype}")
    Y = y.reshape(m, -1).astype(np.float64)
    if Y.shape[1] != n_out:
        raise ValueError(f"y has {Y.shape[1]} columns, but the output layer has {n_out} "
                         f"units")
    if head.name == "sigmoid" and ((Y < 0) | (Y > 1)).any():
        raise ValueError("targets of a sigmoid output must lie in [0, 1]")
    if head.name == "softmax" and ((Y < 0).any() or not np.allclose(Y.sum(axis=1), 1.0)):
        raise ValueError("rows of y for a softmax output must be one-hot or probabilities "
                         "summing to 1")
    if head.name != "identity" and classes is None:
        classes = np.arange(max(n_out, 2))
    return head, classes, Y


def encode_labels(y: np.ndarray, n_out: int, head: Head, classes):
    """(classes, Y) for 1-D labels: one-hot rows for softmax, a 0/1 column for one sigmoid
    unit. `classes` None takes 0..n-1 for integer labels in that range, else np.unique(y)."""
    n_classes = 2 if head.name == "sigmoid" else n_out
    if classes is None:
        if y.dtype.kind in "biuf" and integral(y) and y.min() >= 0 and y.max() < n_classes:
            classes = np.arange(n_classes)
        else:
            classes = np.unique(y)
            if len(classes) > n_classes:
                raise ValueError(f"y has {len(classes)} classes, but a {head.name} output "
                                 f"with {n_out} units holds {n_classes}")
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[idx] != y
    if unknown.any():
        bad = np.unique(y[unknown])[:10]
        raise ValueError(f"y has labels outside the classes seen in fit "
                         f"{classes.tolist()}: {bad.tolist()}")
    if head.name == "sigmoid":
        return classes, idx.astype(np.float64).reshape(-1, 1)
    Y = np.zeros((len(y), n_out))
    Y[np.arange(len(y)), idx] = 1.0
    return classes, Y
