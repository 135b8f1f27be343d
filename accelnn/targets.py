"""Target encoding, as pure functions: which output head a set of targets implies, the class
labels, and the (m, n_out) float64 matrix Y that the loss compares with the output.

    labels (1-D, any sortable type)   -> one-hot rows (softmax) or a 0/1 column (one sigmoid)
    a 0/1 or probability matrix       -> as it is (softmax: rows sum to 1; sigmoid: in [0, 1])
    other numbers                     -> as they are (identity head, squared error)

Class i is output unit i (for one sigmoid unit: the 0/1 target), classes sorted as np.unique
sorts them.

Labels are numbers (bool, int, float), text (str) or bytes, all of one kind: NumPy arrays of
those, or object arrays holding them (a pandas column). Missing labels (None, NaN), labels of
other types and mixed kinds are refused, naming where they are, so that every label set sorts,
encodes and survives a save (`stored_labels` / `restored_labels`) exactly.
"""

from __future__ import annotations

import math

import numpy as np

from accelnn._data import check_missing, host_array, position
from accelnn.losses import HEADS, Head


def integral(y: np.ndarray) -> bool:
    """True when every value of y is a whole number (integer dtypes always)."""
    return y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))


def where(shape: tuple, flat: int) -> str:
    """The position of element `flat` (row-major) in an array of `shape`, in words, as the
    input checks say it ('row 3', 'row 3, column 1')."""
    return position(tuple(int(i) for i in np.unravel_index(flat, shape)))


_NUMBER = (bool, int, float, np.bool_, np.integer, np.floating)


def _label_kind(cls: type) -> str | None:
    """The kind of labels of type `cls`: "number", "text", "bytes", or None (unsupported)."""
    if issubclass(cls, _NUMBER):
        return "number"
    if issubclass(cls, str):
        return "text"
    if issubclass(cls, bytes):
        return "bytes"
    return None


def check_labels(y: np.ndarray, name: str = "y") -> None:
    """Check that `y` holds labels of one supported kind: numbers (bool, int, float; finite),
    text (str) or bytes; for object arrays, every element. Raises ValueError naming `name`,
    the position and the value for a missing label (None or NaN), NaN/Inf, mixed kinds or
    integers beyond 64 bits, TypeError for another dtype or element type."""
    kind = y.dtype.kind
    if kind in "biuUS":
        return
    if kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} contains NaN or Inf ({y.flat[i].item()!r} at "
                             f"{where(y.shape, i)})")
        return
    if kind != "O":
        raise TypeError(f"{name} has dtype {y.dtype}; labels must be numbers (bool, int, "
                        f"float), text (str) or bytes")
    check_missing(y, name)
    flat = y.ravel()
    kinds = {_label_kind(cls) for cls in set(map(type, flat))}
    nan_free = kinds != {"number"} or all(
        math.isfinite(v) for v in flat if isinstance(v, (float, np.floating)))
    if len(kinds) == 1 and None not in kinds and nan_free:
        if kinds == {"number"} and np.array(flat.tolist()).dtype.kind not in "biuf":
            raise ValueError(f"{name} has integer labels beyond the 64-bit range")
        return
    first: dict[str, int] = {}
    for i, v in enumerate(flat):
        at = where(y.shape, i)
        k = _label_kind(type(v))
        if k is None:
            raise TypeError(f"{name} holds a label of type {type(v).__name__} ({v!r}) at "
                            f"{at}; labels must be numbers (bool, int, float), text (str) or "
                            f"bytes")
        if k == "number" and not math.isfinite(v):
            raise ValueError(f"{name} contains NaN or Inf ({v!r} at {at})")
        first.setdefault(k, i)
        if len(first) > 1:
            (k0, i0), = ((a, b) for a, b in first.items() if a != k)
            raise ValueError(f"{name} mixes kinds of labels: {type(flat[i0]).__name__} "
                             f"{flat[i0]!r} at {where(y.shape, i0)}, {type(v).__name__} {v!r} "
                             f"at {at}; labels must be all numbers, all text (str) or all "
                             f"bytes")


def n_classes(n_out: int, head_name: str | None = None) -> int:
    """How many classes an output of n_out units decides between: one per unit, two for a
    single unit (its 0/1 target) unless it is a softmax ("auto": None)."""
    return n_out if head_name == "softmax" else max(n_out, 2)


def check_classes(classes, n_out: int, head_name: str | None = None) -> np.ndarray:
    """`classes` as a sorted 1-D array of distinct labels, exactly as many as the output of
    n_out units decides between (`n_classes`: every decision has its label), of a kind that
    check_labels accepts; ValueError (TypeError for unsupported types) otherwise."""
    arr = np.asarray(classes)
    check_labels(arr, "classes")
    need = n_classes(n_out, head_name)
    if arr.ndim != 1 or len(arr) != need or len(np.unique(arr)) != len(arr):
        raise ValueError(f"classes must be {need} distinct labels, one per decision of "
                         f"{n_out} output unit{'s' if n_out > 1 else ''}, got {arr.tolist()!r}")
    return np.sort(arr)


def stored_labels(classes: np.ndarray) -> tuple[np.ndarray, bool]:
    """(array, was_object): `classes` as an array that np.save writes without pickle (bool,
    int, uint, float, str or bytes), and whether they were an object array, so that
    `restored_labels` gives back equal labels of the same types. ValueError for labels that
    check_labels refuses."""
    if classes.dtype.kind != "O":
        check_labels(classes, "classes")
        return classes, False
    check_labels(classes, "classes")
    stored = np.array(classes.tolist())
    if stored.dtype.kind not in "biufUS" or stored.shape != classes.shape:
        raise ValueError(f"classes {classes.tolist()!r} cannot be stored")
    return stored, True


def restored_labels(stored: np.ndarray, was_object: bool) -> np.ndarray:
    """The labels `stored_labels` stored: an object array of Python ints, floats, bools, str
    or bytes when they were one, else the array itself."""
    return stored.astype(object) if was_object else stored


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


def encode_targets(y, m: int, n_out: int, head: Head | None, classes, dtype=None):
    """Validate y against m samples and an output layer of n_out units; returns
    (head, classes, Y (m, n_out) float64). `head` None resolves it from y (resolve_head);
    `classes` None takes them from y. Targets (values) beyond the range of `dtype` (the
    model's float; None: float64) are refused. Raises ValueError/TypeError naming y, what is
    wrong and where, including labels that the output cannot hold (more classes than units
    hold, or integer labels with more than two values on one unit of an "auto" output)."""
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
    check_labels(y)  # numbers, text or bytes of one kind; no NaN, Inf or missing labels
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
    limit = np.finfo(np.float64 if dtype is None else dtype).max
    big = np.abs(Y) > limit
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise ValueError(f"y has values too large for {np.dtype(dtype).name}: "
                         f"{y.flat[i].item()!r} at {where(y.shape, i)} (the largest is "
                         f"{limit:.6g})")
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
    need = n_classes(n_out, head.name)
    if classes is None:
        if y.dtype.kind in "biuf" and integral(y) and y.min() >= 0 and y.max() < need:
            classes = np.arange(need)
        else:
            classes = np.unique(y)
            if len(classes) > need:
                raise ValueError(f"y has {len(classes)} classes, but a {head.name} output "
                                 f"with {n_out} units holds {need}")
            if len(classes) < need:  # an output unit would have no label to predict
                raise ValueError(f"y has {len(classes)} class{'es' if len(classes) > 1 else ''}"
                                 f" {classes[:10].tolist()}, but a {head.name} output with "
                                 f"{n_out} unit{'s' if n_out > 1 else ''} decides between "
                                 f"{need}: name them all with MLP(..., classes=[...]) (or use "
                                 f"an output layer that fits the labels)")
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
