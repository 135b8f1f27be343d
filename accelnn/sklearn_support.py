"""What accelnn.sklearn's estimators keep beside their model: their hyper-parameters' checks
and the optimizer and schedule they map onto, scikit-learn's per-epoch record and stopping
rule (with its verbose lines), and the model as bytes for pickling.

Imported by accelnn.sklearn only (it needs nothing from scikit-learn itself).
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np

from accelnn.lbfgs import LBFGS
from accelnn.model import MLP
from accelnn.optimizers import SGD, Adam, check_range
from accelnn.schedules import Adaptive, InvScaling, Schedule

MIN_ADAPTIVE_LR = 1e-6  # below it an "adaptive" run stops, as scikit-learn's does
SOLVERS = ("sgd", "adam", "lbfgs")

# What a fit records besides the model and the data's attributes; a fit works on copies
# (a SimpleNamespace) that reach the estimator only once the model has been trained.
RECORD = ("loss_", "loss_curve_", "n_iter_", "t_", "best_loss_", "validation_scores_",
          "best_validation_score_", "_no_improvement_count", "_schedule")


def is_int(value, low: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= low)


def copied(value):
    """A record's value, lists copied (fits append to them)."""
    return list(value) if isinstance(value, list) else value


def model_bytes(mlp: MLP) -> bytes:
    """The bytes of `mlp.save`'s file (weights, optimizer state and all)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        mlp.save(path)
        with open(path, "rb") as f:
            return f.read()


def model_from_bytes(data: bytes, backend) -> MLP:
    """The MLP that `model_bytes` gave `data` for, on `backend`."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        with open(path, "wb") as f:
            f.write(data)
        return MLP.load(path, backend=backend)


def hidden_sizes(est) -> list[int]:
    """est.hidden_layer_sizes as a list of ints; ValueError naming it otherwise."""
    sizes = est.hidden_layer_sizes
    sizes = [sizes] if isinstance(sizes, (int, np.integer)) else sizes
    try:
        sizes = list(sizes)
    except TypeError:
        sizes = None
    if sizes is None or not all(is_int(n, 1) for n in sizes):
        raise ValueError(f"hidden_layer_sizes must be a positive integer or a sequence "
                         f"of them, got {est.hidden_layer_sizes!r}")
    return [int(n) for n in sizes]


def training_plan(est, t0: int):
    """(optimizer, schedule) for an estimator's hyper-parameters: SGD(learning_rate_init,
    momentum, nesterovs_momentum) with the schedule of `learning_rate` (invscaling counting
    on from t0 samples, the estimator's t_), Adam(learning_rate_init, beta_1, beta_2,
    epsilon), or LBFGS(max_fun, gtol=tol). ValueError names a bad hyper-parameter."""
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, got "
                         f"{est.solver!r}")
    if est.learning_rate not in ("constant", "invscaling", "adaptive"):
        raise ValueError(f"learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                         f"got {est.learning_rate!r}")
    check_range("alpha", est.alpha, 0.0)
    check_range("learning_rate_init", est.learning_rate_init, 0.0, low_open=True)
    check_range("tol", est.tol, 0.0)
    check_range("validation_fraction", est.validation_fraction, 0.0, 1.0,
                low_open=True, high_open=True)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "verbose"):
        value = getattr(est, name)  # verbose may also be a level, an integer >= 0
        if not (isinstance(value, (bool, np.bool_)) or name == "verbose" and is_int(value, 0)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    for name in ("max_iter", "n_iter_no_change", "max_fun"):
        if not is_int(getattr(est, name), 1):
            raise ValueError(f"{name} must be an integer >= 1, got {getattr(est, name)!r}")
    if not (est.batch_size == "auto" or is_int(est.batch_size, 1)):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got "
                         f"{est.batch_size!r}")
    for name, low, high, low_open, high_open in (
            ("beta_1", 0.0, 1.0, False, True), ("beta_2", 0.0, 1.0, False, True),
            ("epsilon", 0.0, math.inf, True, False), ("power_t", 0.0, math.inf, False, False),
            ("momentum", 0.0, 1.0, False, True)):
        check_range(name, getattr(est, name), low, high, low_open=low_open,
                    high_open=high_open)
    lr = float(est.learning_rate_init)
    if est.solver == "lbfgs":
        return LBFGS(int(est.max_fun), gtol=float(est.tol)), Schedule()
    if est.solver == "adam":
        return (Adam(lr, float(est.beta_1), float(est.beta_2), float(est.epsilon)),
                Schedule())
    schedule = {"constant": Schedule,
                "invscaling": lambda: InvScaling(float(est.power_t), t0=int(t0)),
                "adaptive": lambda: Adaptive(int(est.n_iter_no_change), float(est.tol))
                }[est.learning_rate]()
    return SGD(lr, float(est.momentum), bool(est.nesterovs_momentum)), schedule


class Monitor:
    """scikit-learn's bookkeeping and stopping rule, as an accelnn fit callback: records
    loss_curve_, n_iter_, t_ (`rows` per epoch), best_loss_ or validation_scores_ into `rec`,
    prints scikit-learn's verbose lines, and ends the fit (or, with an `adaptive` learning
    rate, lets the schedule divide it) after more than `patience` epochs without an
    improvement of `tol`. score(model) is the validation score, or None."""

    def __init__(self, rec, score, *, stop: bool, tol: float, patience: int, adaptive: bool,
                 rows: int, verbose: bool):
        self.rec, self.score, self.stop = rec, score, stop
        self.tol, self.patience, self.adaptive = tol, patience, adaptive
        self.rows, self.verbose = rows, verbose
        self.best_weights = None
        self.epochs = 0
        self.first_epoch = None  # the model's epoch count before this fit's first epoch
        self.start = {k: copied(getattr(rec, k)) for k in RECORD if k != "_schedule"}

    def _record(self, loss: float, score) -> bool:
        """Book one epoch's loss (and validation score); True when it did not improve."""
        rec = self.rec
        rec.loss_curve_.append(loss)
        rec.loss_ = loss
        rec.n_iter_ += 1
        rec.t_ += self.rows
        if score is not None:
            rec.validation_scores_.append(score)
            stalled = score < rec.best_validation_score_ + self.tol
            rec.best_validation_score_ = max(rec.best_validation_score_, score)
        else:
            stalled = loss > rec.best_loss_ - self.tol
            rec.best_loss_ = min(rec.best_loss_, loss)
        rec._no_improvement_count = rec._no_improvement_count + 1 if stalled else 0
        return stalled

    def on_epoch_end(self, epoch, logs, model):
        rec, loss = self.rec, logs["loss"]
        if self.first_epoch is None:
            self.first_epoch = epoch - 1
        self.epochs += 1
        score = None if self.score is None else self.score(model)
        if score is not None and score > rec.best_validation_score_:
            self.best_weights = model.get_weights()
        self._record(loss, score)
        if self.verbose:
            print(f"Iteration {rec.n_iter_}, loss = {loss:.8f}")
            if score is not None:
                print(f"Validation score: {score:f}")
        if not (self.stop and rec._no_improvement_count > self.patience):
            return
        what = "Validation score" if score is not None else "Training loss"
        msg = (f"{what} did not improve more than tol={self.tol:f} for {self.patience} "
               f"consecutive epochs.")
        if self.adaptive and logs["lr"] > MIN_ADAPTIVE_LR:
            rec._no_improvement_count = 0  # the schedule divides the learning rate by 5
            if self.verbose:
                print(f"{msg} Setting learning rate to {logs['lr'] / 5:f}")
            return
        if self.verbose:
            print(f"{msg} {'Learning rate too small. ' if self.adaptive else ''}Stopping.")
        model.stop_training = True

    def keep(self, model) -> None:
        """After a failed fit: keep the record of the epochs the model kept (a diverging fit
        rolls the model back past its last epochs), booked again from the fit's start."""
        if self.first_epoch is None:
            return
        kept = max(0, model.epoch_ - self.first_epoch)
        n0 = len(self.start["loss_curve_"])
        losses = self.rec.loss_curve_[n0:n0 + kept]
        scores = None
        if self.score is not None:
            v0 = len(self.start["validation_scores_"] or [])
            scores = self.rec.validation_scores_[v0:v0 + kept]
        for key, value in self.start.items():
            setattr(self.rec, key, copied(value))
        if scores is not None and self.rec.validation_scores_ is None:
            self.rec.validation_scores_ = []
        for i, loss in enumerate(losses):
            self._record(loss, None if scores is None else scores[i])


def new_record() -> dict:
    """A fresh estimator's record: nothing trained yet."""
    return {**dict.fromkeys(RECORD), "loss_curve_": [], "n_iter_": 0, "t_": 0,
            "_no_improvement_count": 0}
