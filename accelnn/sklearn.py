"""scikit-learn estimators trained by accelnn: `MLPClassifier` and `MLPRegressor`.

They take scikit-learn's `neural_network` parameter names where the two overlap, plus
`backend` (numpy, numba, cupy, auto; None: accelnn's current selection) and `dtype`
(float64 by default, scikit-learn's precision; float32 is faster). Inputs are anything
scikit-learn accepts; every output (predictions, probabilities, `coefs_`) is NumPy.

    from accelnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, backend="numba").fit(X, y)

What maps to what: solver "sgd" is `accelnn.SGD(learning_rate_init, momentum,
nesterovs_momentum)`, "adam" is `accelnn.Adam(learning_rate_init, beta_1, beta_2, epsilon)`
("lbfgs" is not offered); with "sgd", learning_rate "invscaling" and "adaptive" are the
schedules `InvScaling(power_t)` and `Adaptive(n_iter_no_change, tol)`, the latter watching the
training loss. `alpha` is the model's L2 term; batch_size "auto" is min(200, n_samples).
Training stops as scikit-learn's does: when the training loss (with `early_stopping`, the
score on a seeded `validation_fraction` held out) has not improved by `tol` for more than
`n_iter_no_change` epochs, keeping the best weights seen on validation; with
learning_rate="adaptive" the learning rate is divided by 5 instead, until it falls below 1e-6.
`max_iter` epochs without such a stop raise a ConvergenceWarning.

A fit or partial_fit that is rejected (a bad parameter, X or y) leaves the estimator exactly
as it was: everything is checked, and a new model built, before any fitted attribute changes.
Labels go to the accelnn model as they are, built with the estimator's classes_ (MLP's
`classes=`); it encodes them (and rejects labels outside classes_) as `MLP.fit` does.

`partial_fit` runs one epoch and continues the optimizer's state (and the classifier needs
`classes=` on its first call). A pickled estimator holds its model as the bytes of an
`MLP.save` file, optimizer state included, so an unpickled one predicts and trains on exactly
as the original would; it is rebuilt on the estimator's `backend` (None: the selection at
unpickling time).

Needs scikit-learn >= 1.6 (pip install 'accelnn[sklearn]'); `import accelnn` does not import
this module.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from types import SimpleNamespace

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:
    raise ImportError("accelnn.sklearn needs scikit-learn >= 1.6: pip install "
                      "'accelnn[sklearn]' (or pip install scikit-learn)") from exc

from accelnn.model import MLP
from accelnn.optimizers import SGD, Adam, check_range
from accelnn.schedules import Adaptive, InvScaling, Schedule
from accelnn.targets import check_labels

MIN_ADAPTIVE_LR = 1e-6  # below it an "adaptive" run stops, as scikit-learn's does


def _is_int(value, low: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= low)


def _model_bytes(mlp: MLP) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        mlp.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data: bytes, backend) -> MLP:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        with open(path, "wb") as f:
            f.write(data)
        return MLP.load(path, backend=backend)


# What a fit records besides the model and the data's attributes; a fit works on copies
# (a SimpleNamespace) that reach the estimator only once the model has been trained.
_RECORD = ("loss_", "loss_curve_", "n_iter_", "best_loss_", "validation_scores_",
           "best_validation_score_", "_no_improvement_count", "_schedule")


def _copied(value):
    """A record's value, lists copied (fits append to them)."""
    return list(value) if isinstance(value, list) else value


class _Monitor:
    """scikit-learn's bookkeeping and stopping rule, as an accelnn fit callback: records
    loss_curve_, best_loss_ or validation_scores_ into `rec`, and ends the fit (or, with an
    adaptive learning rate, lets the schedule divide it) after more than n_iter_no_change
    epochs without an improvement of tol. score(model) is the validation score, or None."""

    def __init__(self, rec, score, stop: bool, tol: float, patience: int):
        self.rec, self.score, self.stop = rec, score, stop
        self.tol, self.patience = tol, patience
        self.best_weights = None
        self.epochs = 0
        self.first_epoch = None  # the model's epoch count before this fit's first epoch
        self.start = {k: _copied(getattr(rec, k)) for k in _RECORD if k != "_schedule"}

    def _record(self, loss: float, score) -> bool:
        """Book one epoch's loss (and validation score); True when it did not improve."""
        rec = self.rec
        rec.loss_curve_.append(loss)
        rec.loss_ = loss
        rec.n_iter_ += 1
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
        if self.stop and rec._no_improvement_count > self.patience:
            if isinstance(rec._schedule, Adaptive) and logs["lr"] > MIN_ADAPTIVE_LR:
                rec._no_improvement_count = 0
            else:
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
            setattr(self.rec, key, _copied(value))
        if scores is not None and self.rec.validation_scores_ is None:
            self.rec.validation_scores_ = []
        for i, loss in enumerate(losses):
            self._record(loss, None if scores is None else scores[i])


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: hyper-parameters, the fit loop, pickling.
    Subclasses give `_validate_xy` (checked X, the targets for the accelnn model, y for
    scoring, the fitted attributes the data sets, and the output units and accelnn output),
    `_predict_with` (predictions of a model under given fitted attributes) and `_metric`
    (their `score`)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, backend=None,
                 dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # ------------------------------------------------------------------ checks
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, (int, np.integer)) else sizes
        try:
            sizes = list(sizes)
        except TypeError:
            sizes = None
        if sizes is None or not all(_is_int(n, 1) for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be a positive integer or a sequence "
                             f"of them, got {self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _training_plan(self):
        """(optimizer, schedule) for these hyper-parameters; ValueError names a bad one."""
        if self.solver not in ("sgd", "adam"):
            raise ValueError(f"solver must be 'sgd' or 'adam' (accelnn has no 'lbfgs'), got "
                             f"{self.solver!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                             f"got {self.learning_rate!r}")
        check_range("alpha", self.alpha, 0.0)
        check_range("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        check_range("tol", self.tol, 0.0)
        check_range("validation_fraction", self.validation_fraction, 0.0, 1.0,
                    low_open=True, high_open=True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "verbose"):
            value = getattr(self, name)  # verbose may also be a level, an integer >= 0
            if not (isinstance(value, (bool, np.bool_)) or name == "verbose" and _is_int(value, 0)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        for name in ("max_iter", "n_iter_no_change"):
            if not _is_int(getattr(self, name), 1):
                raise ValueError(f"{name} must be an integer >= 1, got "
                                 f"{getattr(self, name)!r}")
        if not (self.batch_size == "auto" or _is_int(self.batch_size, 1)):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got "
                             f"{self.batch_size!r}")
        lr = float(self.learning_rate_init)
        if self.solver == "adam":
            return (Adam(lr, float(self.beta_1), float(self.beta_2), float(self.epsilon)),
                    Schedule())
        schedule = {"constant": Schedule, "invscaling": lambda: InvScaling(float(self.power_t)),
                    "adaptive": lambda: Adaptive(int(self.n_iter_no_change),
                                                 float(self.tol))}[self.learning_rate]()
        return SGD(lr, float(self.momentum), bool(self.nesterovs_momentum)), schedule

    # ------------------------------------------------------------------ training
    def _check_data(self, X, y, fresh: bool, **kwargs):
        """validate_data on (X, y); a fresh fit's n_features_in_ and feature_names_in_ (None:
        remove it) come back in a dict instead of being set, as validate_data would."""
        target = self
        if fresh:  # a shallow stand-in takes the attributes validate_data sets
            target = object.__new__(type(self))
            target.__dict__.update(self.__dict__)
        X, y = validate_data(target, X, y, reset=fresh, multi_output=True,
                             dtype=(np.float64, np.float32), **kwargs)
        attrs = {}
        if fresh:
            attrs = {"n_features_in_": target.n_features_in_,
                     "feature_names_in_": getattr(target, "feature_names_in_", None)}
        return X, y, attrs

    def _fit(self, X, y, *, incremental: bool, classes=None):
        # Everything that can reject the fit runs first, into locals: the estimator changes
        # only in _commit, once the model has trained (or failed after training began).
        optimizer, schedule = self._training_plan()
        hidden = self._hidden_sizes()
        fresh = not (self.__sklearn_is_fitted__() and (incremental or self.warm_start))
        X, Y, y, attrs, (n_out, output) = self._validate_xy(X, y, fresh, classes)
        sizes = [X.shape[1], *hidden, n_out]
        if not fresh and list(self._mlp.layer_sizes) != sizes:
            raise ValueError(f"warm_start / partial_fit needs the network of the last fit, "
                             f"{list(self._mlp.layer_sizes)}, but the parameters now give "
                             f"{sizes}; refit with warm_start=False")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if fresh:
            # classes_ is fixed before any label is seen (partial_fit's classes=)
            mlp = MLP(sizes, self.activation, output, l2=float(self.alpha), seed=seed,
                      dtype=self.dtype, backend=self.backend, classes=attrs.get("classes_"))
            rec = SimpleNamespace(**{**dict.fromkeys(_RECORD), "loss_curve_": [],
                                     "n_iter_": 0, "_no_improvement_count": 0})
        else:
            mlp = self._mlp
            # the fit appends to copies of the lists
            rec = SimpleNamespace(**{k: _copied(getattr(self, k, None)) for k in _RECORD})
        score = None
        if self.early_stopping and not incremental:
            X, Xv, Y, _, y, yv = train_test_split(X, Y, y, test_size=self.validation_fraction,
                                                  random_state=seed)
            fitted = {**vars(self), **attrs}
            score = lambda model: self._metric(yv, self._predict_with(model, Xv, fitted))  # noqa: E731
            if rec.validation_scores_ is None:
                rec.validation_scores_, rec.best_validation_score_ = [], -math.inf
        elif rec.best_loss_ is None:
            rec.best_loss_ = math.inf
        if not incremental or fresh:
            rec._schedule = schedule
        else:
            optimizer = None  # partial_fit continues the optimizer and its schedule
        monitor = _Monitor(rec, score, stop=not incremental, tol=self.tol,
                           patience=self.n_iter_no_change)
        batch_size = min(200, X.shape[0]) if self.batch_size == "auto" else self.batch_size
        try:
            # MLP.fit checks (X, Y), labels included, before it changes the model.
            mlp.fit(X, Y, epochs=1 if incremental else self.max_iter,
                    batch_size=int(batch_size), optimizer=optimizer,
                    lr_schedule=rec._schedule, shuffle=bool(self.shuffle),
                    callbacks=[monitor], verbose=2 if self.verbose else 0)
        except BaseException:
            if monitor.epochs:  # it trained before failing: keep the record with the model
                monitor.keep(mlp)
                self._commit(mlp, attrs, rec)
            raise
        if monitor.best_weights is not None:
            mlp.set_weights(monitor.best_weights)
        self._commit(mlp, attrs, rec)
        if not incremental and not mlp.stop_training:
            warnings.warn(f"{type(self).__name__}: the maximum of {self.max_iter} epochs "
                          f"(max_iter) was reached before the optimization converged",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _commit(self, mlp: MLP, attrs: dict, rec: SimpleNamespace) -> None:
        self._mlp = mlp
        for name, value in attrs.items():
            if value is None and name == "feature_names_in_":
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)
        self.__dict__.update(vars(rec))

    def fit(self, X, y):
        """Train for up to max_iter epochs (see the module docstring for the stopping rule);
        with warm_start, continue from the last fit's weights with a fresh optimizer.
        Rejects, with ValueError/TypeError: X that scikit-learn's validate_data rejects (not
        2-D, sparse, empty, NaN/Inf, non-numeric, a new number of features when warm
        starting), bad targets (see the subclass), a bad hyper-parameter (named), and a
        warm start whose network would differ from the last one; a rejected fit leaves the
        estimator (and a fitted model) exactly as it was."""
        return self._fit(X, y, incremental=False)

    # ------------------------------------------------------------------ the model
    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "_mlp", None) is not None

    def _forward_checked(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def predict(self, X) -> np.ndarray:
        X = self._forward_checked(X)  # NotFittedError first
        return self._predict_with(self._mlp, X, vars(self))

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, coefs_[i] of shape (n_in, n_out), as NumPy copies; NotFittedError
        before fit."""
        check_is_fitted(self)
        return [W for W, _ in self._mlp.get_weights()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, intercepts_[i] of shape (n_out,), as NumPy copies; NotFittedError
        before fit."""
        check_is_fitted(self)
        return [b for _, b in self._mlp.get_weights()]

    @property
    def n_layers_(self) -> int:
        """Layers counted as scikit-learn does, input and output included; NotFittedError
        before fit."""
        check_is_fitted(self)
        return len(self._mlp.layer_sizes)

    @property
    def n_outputs_(self) -> int:
        """Output units; NotFittedError before fit."""
        check_is_fitted(self)
        return self._mlp.layer_sizes[-1]

    @property
    def out_activation_(self) -> str:
        """The output activation in scikit-learn's words: "logistic", "softmax" or
        "identity"; NotFittedError before fit."""
        check_is_fitted(self)
        return {"sigmoid": "logistic"}.get(self._mlp.head.name, self._mlp.head.name)

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ gives __dict__ itself
        if state.get("_mlp") is not None:
            state["_mlp"] = _model_bytes(state["_mlp"])
        return state

    def __setstate__(self, state):
        if state.get("_mlp") is not None:
            state = {**state, "_mlp": _model_from_bytes(state["_mlp"], state["backend"])}
        super().__setstate__(state)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's interface, trained by accelnn.

    Two classes get one sigmoid output unit (binary cross-entropy), more get softmax units
    (categorical cross-entropy); a 0/1 indicator matrix y is multi-label (one sigmoid unit
    per column, classes_ = column indices). Labels may be numbers or text.

    Parameters: those of sklearn.neural_network.MLPClassifier except max_fun and solver
    "lbfgs", plus `backend` and `dtype`; see the module docstring.

    Attributes (after fit): classes_, n_features_in_ (feature_names_in_ for a DataFrame),
    loss_ and loss_curve_ (training loss per epoch, L2 term included), n_iter_, best_loss_
    (None with early_stopping), validation_scores_ and best_validation_score_ (None without
    early_stopping), coefs_, intercepts_, n_layers_, n_outputs_, out_activation_.
    """

    _metric = staticmethod(accuracy_score)  # ClassifierMixin.score's: subset accuracy

    def _validate_xy(self, X, y, fresh: bool, classes=None):
        """Rejects missing or mixed labels, continuous or multiclass-multioutput targets, a
        single class, partial_fit with other classes than its first call's, and a switch between
        labels and a multi-label matrix when training on (labels outside classes_: MLP.fit)."""
        X, y, attrs = self._check_data(X, y, fresh)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_labels(y)  # a missing label (None, NaN) or mixed kinds, named with its index
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError("multiclass-multioutput targets are not supported; give labels "
                             "(1-D) or a 0/1 indicator matrix (multi-label)")
        multilabel = kind == "multilabel-indicator"
        if fresh:
            if multilabel:
                labels = np.arange(y.shape[1])
            elif classes is not None:
                labels = np.unique(classes)
            else:
                labels = np.unique(y)
            if len(labels) < 2:
                raise ValueError(f"a classifier needs samples of at least 2 classes; y has 1 "
                                 f"class: {labels.tolist()}")
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={classes!r} differs from classes_ of the first "
                                 f"call, {self.classes_!r}")
            if multilabel != self._multilabel:
                raise ValueError("y switches between labels and a multi-label indicator matrix")
            labels = self.classes_
        n = len(labels)
        output = (n, "sigmoid") if multilabel else (1, "sigmoid") if n == 2 else (n, "softmax")
        return X, y, y, {**attrs, "classes_": labels, "_multilabel": multilabel}, output

    def _predict_with(self, mlp: MLP, X, fitted: dict) -> np.ndarray:
        proba = mlp.backend.to_numpy(mlp.predict_proba(X))
        if fitted["_multilabel"]:
            return (proba > 0.5).astype(np.int64)
        return fitted["classes_"][np.argmax(proba, axis=1)]

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the optimizer. `classes` (every label the
        classifier will see) is required on the first call. Rejects what fit rejects, a first
        call without classes, classes that differ from the first call's, and labels outside
        them."""
        if not self.__sklearn_is_fitted__() and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), NumPy; multi-label: one column per
        label. Rejects an unfitted estimator (NotFittedError) and X that fit would reject,
        including a different number of features."""
        X = self._forward_checked(X)
        return self._mlp.backend.to_numpy(self._mlp.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Labels from classes_ (multi-label: a 0/1 matrix), NumPy. Rejects what
        predict_proba rejects."""
        return super().predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's interface, trained by accelnn:
    identity output units and squared error 1/(2m) sum (A - Y)^2; y may have several columns.

    Parameters and attributes: as MLPClassifier's, without classes_.
    """

    _metric = staticmethod(r2_score)  # RegressorMixin.score's

    def _validate_xy(self, X, y, fresh: bool, classes=None):
        """Rejects non-numeric y, NaN or Inf in y, and (when training on) a different number
        of target columns."""
        X, y, attrs = self._check_data(X, y, fresh, y_numeric=True)
        Y = y.reshape(len(y), -1)
        return X, Y, y, attrs, (Y.shape[1], "identity")

    def _predict_with(self, mlp: MLP, X, fitted: dict) -> np.ndarray:
        out = mlp.backend.to_numpy(mlp.predict(X))
        return out.ravel() if out.shape[1] == 1 else out

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the optimizer. Rejects what fit rejects."""
        return self._fit(X, y, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predicted values, (n_samples,) for one target, else (n_samples, n_targets), NumPy.
        Rejects an unfitted estimator (NotFittedError) and X that fit would reject."""
        return super().predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
