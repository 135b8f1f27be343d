"""The checks of `MLP.fit`'s options and of its validation set, written once for `MLP.fit`
(accelnn.training) and `fit_many` (accelnn.many), which must accept and refuse the same
arguments with the same messages. Every function here raises before anything changes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from accelnn.batches import Data
from accelnn.callbacks import CallbackList, EarlyStopping
from accelnn.metrics import check_metrics
from accelnn.optimizers import check_lr, get_optimizer
from accelnn.schedules import Schedule, get_schedule
from accelnn.weighting import check_class_weight, check_sample_weight, unless_uniform


def check_int(name: str, value, low: int, allow_none: bool = False) -> int | None:
    """An integer >= low (None too when allowed); ValueError naming `name` otherwise."""
    if allow_none and value is None:
        return None
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= low):
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an integer >= {low}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """A real bool (or NumPy bool): a string such as "no" or a number is refused (TypeError),
    not taken for its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class FitOptions(NamedTuple):
    """MLP.fit's options, checked: `stopper` is the EarlyStopping or None, `schedule` and
    `callbacks` the objects made from lr_schedule and callbacks, `metrics` a tuple that
    includes the metric early stopping watches."""

    epochs: int
    batch_size: int | None
    shuffle: bool
    validation_split: float
    validation_data: tuple | list | None
    metrics: tuple
    stopper: EarlyStopping | None
    schedule: Schedule
    callbacks: CallbackList
    lr: float | None


def check_fit_options(*, epochs, batch_size, shuffle, validation_split, validation_data,
                      early_stopping, metrics, callbacks, lr_schedule, lr, class_weight,
                      verbose) -> FitOptions:
    """Check MLP.fit's options (see its docstring for each); ValueError or TypeError naming
    the argument and the value."""
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1, allow_none=True)
    if not (isinstance(validation_split, (int, float)) and not isinstance(validation_split, bool)
            and 0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be a number in [0, 1), got "
                         f"{validation_split!r}")
    if validation_split and validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    if validation_data is not None and not (
            isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3)):
        raise ValueError("validation_data must be a pair (X_val, y_val) or a triple (X_val, "
                         "y_val, sample_weight_val)")
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    metrics = check_metrics(metrics)
    shuffle = check_bool("shuffle", shuffle)
    if early_stopping is None or isinstance(early_stopping, EarlyStopping):
        stopper = early_stopping
    elif isinstance(early_stopping, (bool, np.bool_)):
        stopper = EarlyStopping() if early_stopping else None
    else:
        raise TypeError(f"early_stopping must be True, False or an EarlyStopping, got "
                        f"{early_stopping!r}")
    if stopper is not None and stopper.monitor.startswith("val_") and not (
            validation_data is not None or validation_split):
        raise ValueError(f"early stopping on {stopper.monitor!r} needs validation_data or "
                         f"validation_split")
    schedule = get_schedule(lr_schedule)
    cbs = CallbackList(callbacks)
    check_class_weight(class_weight)
    if lr is not None:
        check_lr(lr)
    monitored = stopper.monitor.removeprefix("val_") if stopper is not None else "loss"
    if monitored != "loss":  # what early stopping watches is computed whether asked or not
        metrics = tuple(dict.fromkeys((*metrics, monitored)))
    return FitOptions(epochs, batch_size, shuffle, float(validation_split), validation_data,
                      metrics, stopper, schedule, cbs, lr)


def gradient_optimizer(model, optimizer, lr):
    """The optimizer a gradient-descent fit uses: `optimizer` made with `lr`, or, when it is
    None, the model's own (from an earlier fit) or SGD."""
    if optimizer is None:
        return model.state.optimizer or get_optimizer("sgd", lr)
    return get_optimizer(optimizer, lr)


def validation_set(model, validation_data, head, classes) -> Data | None:
    """validation_data encoded with the fit's head and classes (errors say it is about
    validation_data), its sample weights checked; None without validation_data."""
    if validation_data is None:
        return None
    try:
        Xv, Yv = model.encode(*validation_data[:2], head=head, classes=classes)[:2]
    except (TypeError, ValueError) as exc:
        kind = ValueError if isinstance(exc, ValueError) else TypeError
        raise kind(f"validation_data: {exc}") from exc
    wv = check_sample_weight(validation_data[2] if len(validation_data) == 3 else None,
                             Xv.shape[0], "validation_data's sample_weight")
    return Data(model, Xv, Yv, weights=unless_uniform(wv))


def validation_rows(m: int, split: float, seed, weights) -> tuple:
    """(rows kept for training, rows held out), both sorted, of a validation_split of m rows:
    a permutation from `seed` (the model's split seed), so every fit of the model holds out
    the same rows; (None, None) for split 0. ValueError when no row would be left to train
    on, or when either part has weight zero only."""
    n_val = max(1, int(round(m * split))) if split else 0
    if n_val >= m:
        raise ValueError(f"validation_split={split} holds out {n_val} of {m} rows, leaving "
                         f"none to train on")
    if not n_val:
        return None, None
    perm = np.random.default_rng(seed).permutation(m)
    keep, hold = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    if weights is not None and not (weights[keep].sum() > 0 and weights[hold].sum() > 0):
        raise ValueError(f"validation_split={split}: the rows "
                         f"{'held out' if weights[keep].sum() > 0 else 'left to train on'}"
                         f" all have weight zero")
    return keep, hold
