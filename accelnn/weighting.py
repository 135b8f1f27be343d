"""Sample and class weights, checked and combined on the host before a fit changes anything.

    sample_weight   one number >= 0 per row; a fit then minimises the weighted mean loss
                    sum_i w_i l_i / sum_i w_i (accelnn.network; mini-batches: accelnn.batches)
    class_weight    "balanced" (scikit-learn's: n / (n_classes * count of the class), counts
                    weighted by sample_weight) or {label: weight}, labels missing from the
                    dict weighing 1; each row's sample weight is multiplied by its class's

Weights that are all equal are the unweighted fit, and are dropped (None), so that
sample_weight=np.ones(m) runs exactly the unweighted code.
"""

from __future__ import annotations

import numpy as np

from accelnn._data import host_array


def check_sample_weight(sample_weight, m: int, name: str = "sample_weight") -> np.ndarray | None:
    """`sample_weight` as a float64 array (m,), or None for None. Raises TypeError for values
    that are not numbers and ValueError for another shape than (m,), NaN, Inf, negative
    values or weights that are all zero, naming `name`."""
    if sample_weight is None:
        return None
    w = host_array(sample_weight, name)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {w.dtype}")
    if w.shape != (m,):
        raise ValueError(f"{name} must have shape ({m},), one weight per sample, got shape "
                         f"{w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (w < 0).any():
        raise ValueError(f"{name} must be >= 0, got {w[w < 0][:5].tolist()}")
    if not w.sum() > 0:
        raise ValueError(f"{name} is zero for every sample: nothing to train on")
    return w


def unless_uniform(w: np.ndarray | None) -> np.ndarray | None:
    """None when every weight is the same (the unweighted fit), else w."""
    return None if w is None or (w == w[0]).all() else w


def check_class_weight(class_weight) -> None:
    """ValueError unless class_weight is None, "balanced" or a dict of numbers >= 0."""
    if class_weight is None or class_weight == "balanced":
        return
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be 'balanced' or a dict {{label: weight}}, got "
                        f"{class_weight!r}")
    for label, weight in class_weight.items():
        if not (isinstance(weight, (int, float, np.integer, np.floating))
                and not isinstance(weight, bool) and np.isfinite(weight) and weight >= 0):
            raise ValueError(f"class_weight[{label!r}] must be a number >= 0, got {weight!r}")


def class_indices(y, head_name: str, classes: np.ndarray) -> np.ndarray:
    """The class index of each row of the (checked) targets y of a single-label classifier:
    labels are looked up in `classes`, one-hot rows give their hot column. ValueError for a
    regressor, multi-label rows or probabilities in place of labels."""
    y = host_array(y, "y")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if head_name == "identity" or (head_name == "sigmoid" and y.ndim == 2):
        raise ValueError("class_weight needs a single-label classifier (softmax, or one sigmoid "
                         "unit with two classes)")
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("class_weight needs labels or one-hot rows, not probabilities")
        return np.argmax(y, axis=1)
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    if (classes[idx] != y).any():
        raise ValueError("class_weight needs labels or one-hot rows, not probabilities")
    return idx


def class_factors(class_weight, idx: np.ndarray, classes: np.ndarray,
                  sample_weight: np.ndarray | None) -> np.ndarray:
    """Each row's class weight (float64, like idx), for rows of class indices `idx` into
    `classes`. "balanced" counts the rows of each class weighted by sample_weight, over the
    classes present (scikit-learn's compute_class_weight). A dict naming a label that is not
    a class is a ValueError."""
    n_classes = len(classes)
    if class_weight == "balanced":
        counts = np.bincount(idx, weights=sample_weight, minlength=n_classes)
        present = counts > 0
        per_class = np.zeros(n_classes)
        per_class[present] = counts.sum() / (present.sum() * counts[present])
    else:
        labels = classes.tolist()
        unknown = [k for k in class_weight if k not in labels]
        if unknown:
            raise ValueError(f"class_weight names labels that are not classes: {unknown}; the "
                             f"classes are {labels}")
        per_class = np.array([float(class_weight.get(c, 1.0)) for c in labels])
    return per_class[idx]


def combined(sample_weight: np.ndarray | None, class_weight, y, head_name: str,
             classes) -> np.ndarray | None:
    """The weights a fit uses: sample_weight times the rows' class weights (checked: they must
    not be all zero), or None when they are all equal."""
    w = sample_weight
    if class_weight is not None:
        factors = class_factors(class_weight, class_indices(y, head_name, classes), classes,
                                sample_weight)
        w = factors if w is None else w * factors
        if not w.sum() > 0:
            raise ValueError("class_weight leaves every sample with weight zero")
    return unless_uniform(w)
