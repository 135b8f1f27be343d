"""The loss and metrics of a model on a data set, computed a chunk of rows at a time on the
model's backend, with one host synchronisation at the end. With sample weights w, every value
is a weighted mean over the rows, sum(w_i x_i) / sum(w_i) (scikit-learn's `sample_weight`).

    loss       the training loss: the head's loss plus the L2 term l2/(2 W) sum ||W||^2, W the
               number of rows (or the sum of their weights)
    accuracy   the share of rows whose predicted class is right (classifiers; a multi-label
               sigmoid output counts each label: the Hamming accuracy)
    mse        the mean over rows and outputs of (A - Y)^2, A the output activations
               (probabilities for a classifier, as Keras' MeanSquaredError)
    mae        the same with |A - Y| (scikit-learn's mean_absolute_error)
    r2         1 - SS_res / SS_tot per output, averaged over the outputs: scikit-learn's
               r2_score (multioutput="uniform_average"; an output whose targets are all equal
               scores 1.0 when predicted exactly, else 0.0, as its force_finite does)
    log_loss   the head's cross-entropy, the loss without its L2 term (classifiers; for labels
               and one-hot rows it is scikit-learn's log_loss, computed from the logits)
"""

from __future__ import annotations

import math

import numpy as np

from accelnn.network import Scratch

METRICS = ("accuracy", "mse", "mae", "r2", "log_loss")
HIGHER_IS_BETTER = frozenset({"accuracy", "r2"})
CLASSIFIER_ONLY = frozenset({"accuracy", "log_loss"})
_ON_OUTPUTS = frozenset({"mse", "mae", "r2"})


def check_metrics(metrics) -> tuple[str, ...]:
    """`metrics` (a name or a sequence of names) as a tuple of distinct names from METRICS.
    Raises ValueError naming an unknown one, TypeError for something that is not names."""
    if metrics is None:
        return ()
    if not isinstance(metrics, (str, list, tuple)):
        raise TypeError(f"metrics must be a name or a list of names, got {metrics!r}")
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"metrics must be names, got {name!r}")
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown!r}; choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def check_head(metrics, head) -> None:
    """ValueError when a classifier's metric (accuracy, log_loss) is asked of a regressor."""
    wrong = [name for name in metrics if name in CLASSIFIER_ONLY]
    if wrong and head.name == "identity":
        raise ValueError(f"{wrong[0]} needs a classifier (sigmoid or softmax output); this "
                         f"model has an identity output")


def _right_rows(xp, Z, Y, head_name: str):
    """Per row (k,): 1 where the predicted class is right (softmax), or the share of labels
    right (sigmoid), from the logits (the same decisions as from A)."""
    if head_name == "softmax":
        return xp.argmax(Z, axis=1) == xp.argmax(Y, axis=1)
    return ((Z > 0) == (Y > 0.5)).mean(axis=1)


def _mean_part(rows, v, total: float):
    """A chunk's part of the mean of `rows` (k,) over all the rows: sum_i v_i rows_i with the
    normalised weights v = w / sum(w) (k, 1), or sum_i rows_i / total without weights."""
    return rows.sum() / total if v is None else (rows * v[:, 0]).sum()


def evaluate(model, data, metrics=(), chunk: int = 4096) -> dict[str, float]:
    """{"loss": ..., metric: ...} of the model on `data` (an accelnn.batches.Data, weighted
    when it has weights), in the order asked, as floats. `metrics` must have passed
    check_metrics and check_head. Buffers live for this call only; the parameters are read
    under the training state's reading guard, so the values belong to one whole step."""
    be, xp, head, net, state = (model.backend, model.backend.xp, model.head, model.network,
                                model.state)
    total = data.total  # rows, or the sum of their weights
    scratch = Scratch(limit=math.inf)  # shared by the chunks of this call
    sums: dict = dict.fromkeys(("loss", *metrics), 0.0)
    ss_tot = 0.0
    if "r2" in metrics:  # the (weighted) mean target, from the targets on the device
        w = 1.0 if data.wd is None else data.wd
        ybar = (data.Y * w).sum(axis=0) / total
    with state.guard.reading():
        for Xc, Yc, wc in data.chunks(chunk):
            v = None if wc is None else wc * (1.0 / total)
            Z = net.logits(state.params, Xc, scratch)
            if "accuracy" in metrics:
                sums["accuracy"] += _mean_part(_right_rows(xp, Z, Yc, head.name), v, total)
            if _ON_OUTPUTS.intersection(metrics):
                D = be.output(be.copy(Z), head) - Yc
                if "mse" in metrics:
                    sums["mse"] += _mean_part((D * D).mean(axis=1), v, total)
                if "mae" in metrics:
                    sums["mae"] += _mean_part(xp.abs(D).mean(axis=1), v, total)
                if "r2" in metrics:  # per output; the common scale of the sums cancels
                    E = Yc - ybar
                    f = 1.0 if v is None else v
                    sums["r2"] += (D * D * f).sum(axis=0)
                    ss_tot += (E * E * f).sum(axis=0)
            if v is None:
                sums["loss"] += be.loss_delta(Z, Yc, head, Z) * (Xc.shape[0] / total)
            else:
                sums["loss"] += be.loss_delta(Z, Yc, head, Z, v)
        l2 = net.l2_loss(state.params, total)
    data_loss = float(sums["loss"])
    out = {"loss": float(data_loss + l2)}
    for name in metrics:
        if name == "log_loss":
            out[name] = data_loss
        elif name == "r2":
            out[name] = _r2(be.to_numpy(sums["r2"]), be.to_numpy(ss_tot))
        else:
            out[name] = float(sums[name])
    return out


def _r2(ss_res: np.ndarray, ss_tot: np.ndarray) -> float:
    """scikit-learn's r2_score from per-output sums of squares, averaged over the outputs."""
    ss_res, ss_tot = np.atleast_1d(ss_res), np.atleast_1d(ss_tot)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(score.mean())
