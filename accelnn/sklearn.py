"""scikit-learn estimators trained by accelnn: `MLPClassifier` and `MLPRegressor`.

They take scikit-learn's `neural_network` parameter names (every one of them: the README's
table says what each does here), plus `backend` (numpy, numba, cupy, auto; None: accelnn's
current selection), `dtype` (float64 by default, scikit-learn's precision; float32 is faster)
and the classifier's `class_weight`. Inputs are anything scikit-learn accepts; every output
(predictions, probabilities, `coefs_`) is NumPy.

    from accelnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, backend="numba").fit(X, y)

What maps to what: solver "sgd" is `accelnn.SGD(learning_rate_init, momentum,
nesterovs_momentum)`, "adam" is `accelnn.Adam(learning_rate_init, beta_1, beta_2, epsilon)`,
"lbfgs" is `accelnn.LBFGS(max_fun, gtol=tol)` for at most max_iter iterations (scipy's
L-BFGS-B, full batch, as scikit-learn runs it; early_stopping and the learning-rate
parameters do not apply to it, and it has no partial_fit); with "sgd", learning_rate
"invscaling" and "adaptive" are the schedules `InvScaling(power_t, t0=t_)` and
`Adaptive(n_iter_no_change, tol)`, the latter watching the training loss. `alpha` is the
model's L2 term; batch_size "auto" is min(200, n_samples). Training stops as scikit-learn's
does: when the training loss (with `early_stopping`, the score on a seeded
`validation_fraction` held out, stratified by class for labels) has not improved by `tol`
for more than `n_iter_no_change` epochs, keeping the best weights seen on validation; with
learning_rate="adaptive" the learning rate is divided by 5 instead, until it falls below 1e-6.
`max_iter` epochs without such a stop, or an L-BFGS run that did not converge, raise a
ConvergenceWarning. `n_iter_` counts the epochs (iterations) of the last fit, one per
partial_fit, as scikit-learn >= 1.3 does; `t_` counts the samples seen by the stochastic
solvers since the first fit. verbose prints scikit-learn's lines ("Iteration N, loss = ...",
"Validation score: ...", the stopping line).

`sample_weight` (fit and partial_fit) makes the loss the weighted mean, as MLP.fit's does
(accelnn.weighting); the validation score of early stopping is weighted too.

A fit or partial_fit that is rejected (a bad parameter, X, y or weights) leaves the estimator
exactly as it was: everything is checked, and a new model built, before any fitted attribute
changes. Labels go to the accelnn model as they are, built with the estimator's classes_
(MLP's `classes=`); it encodes them (and rejects labels outside classes_) as `MLP.fit` does.

`partial_fit` runs one epoch and continues the optimizer's state (and the classifier needs
`classes=` on its first call); it is refused with early_stopping=True, as in scikit-learn. A
pickled estimator holds its model as the bytes of an `MLP.save` file, optimizer state
included, so an unpickled one predicts and trains on exactly as the original would; it is
rebuilt on the estimator's `backend` (None: the selection at unpickling time).

Needs scikit-learn >= 1.6 and scipy (pip install 'accelnn[sklearn]'); `import accelnn` does
not import this module.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:
    raise ImportError("accelnn.sklearn needs scikit-learn >= 1.6: pip install "
                      "'accelnn[sklearn]' (or pip install scikit-learn)") from exc

from accelnn import export
from accelnn.lbfgs import LBFGS
from accelnn.model import MLP
from accelnn.schedules import Adaptive
from accelnn.search import MLPSearchCV  # noqa: F401  (accelnn.sklearn's third estimator)
from accelnn.sklearn_support import (
    RECORD,
    Monitor,
    copied,
    hidden_sizes,
    model_bytes,
    model_from_bytes,
    new_record,
    training_plan,
)
from accelnn.targets import check_labels
from accelnn.weighting import check_class_weight, check_sample_weight


def _stochastic(est) -> bool:
    """available_if's test for partial_fit: AttributeError (scikit-learn's words) for lbfgs."""
    if est.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers. lbfgs "
                             "is not stochastic.")
    return True


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: hyper-parameters, the fit loop, pickling.
    Subclasses give `_validate_xy` (checked X, the targets for the accelnn model, y for
    scoring, the fitted attributes the data sets, and the output units and accelnn output),
    `_predict_with` (predictions of a model under given fitted attributes), `_metric`
    (their `score`), `_own_params` (their own parameters) and `_write_onnx` (to_onnx)."""

    def _keep(self, params: dict) -> None:
        """__init__'s body: every constructor argument kept as it is, under its own name
        (scikit-learn's rule; the subclasses spell out their signatures for get_params)."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

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

    def _fit(self, X, y, *, incremental: bool, classes=None, sample_weight=None):
        plan = self._plan(X, y, incremental=incremental, classes=classes,
                          sample_weight=sample_weight)
        try:
            history = plan.model.fit(plan.X, plan.Y, **plan.options)
        except BaseException:
            plan.fail()
            raise
        plan.finish(history)
        return self

    def fit_plan(self, X, y, sample_weight=None) -> FitPlan:
        """`fit(X, y, sample_weight)` prepared but not run: every check done and the model
        built, the estimator unchanged. `plan.model.fit(plan.X, plan.Y, **plan.options)` (or
        accelnn.fit_many over several plans' models, which trains each exactly so) trains it;
        then `plan.finish(history)` completes the estimator as fit does, or `plan.fail()`
        after the training raised. Rejects what fit rejects."""
        return self._plan(X, y, incremental=False, sample_weight=sample_weight)

    def _plan(self, X, y, *, incremental: bool, classes=None, sample_weight=None) -> FitPlan:
        # Everything that can reject the fit runs first, into locals: the estimator changes
        # only in _commit, once the model has trained (or failed after training began).
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        fresh = not (self.__sklearn_is_fitted__() and (incremental or self.warm_start))
        # the fit works on copies of the record (its lists appended to)
        rec = SimpleNamespace(**(new_record() if fresh else
                                 {k: copied(getattr(self, k, None)) for k in RECORD}))
        rec.n_iter_ = 0  # n_iter_ counts this fit's epochs (scikit-learn >= 1.3)
        optimizer, schedule = training_plan(self, rec.t_)
        hidden = hidden_sizes(self)
        class_weight = self._own_params(incremental)
        X, Y, y, attrs, (n_out, output) = self._validate_xy(X, y, fresh, classes)
        sw = check_sample_weight(sample_weight, X.shape[0])
        sizes = [X.shape[1], *hidden, n_out]
        if not fresh and list(self._mlp.layer_sizes) != sizes:
            raise ValueError(f"warm_start / partial_fit needs the network of the last fit, "
                             f"{list(self._mlp.layer_sizes)}, but the parameters now give "
                             f"{sizes}; refit with warm_start=False")
        try:
            state = check_random_state(self.random_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"random_state must be None, an integer or a "
                             f"numpy.random.RandomState, got {self.random_state!r}") from exc
        seed = int(state.randint(np.iinfo(np.int32).max))
        # classes_ is fixed before any label is seen (partial_fit's classes=)
        mlp = MLP(sizes, self.activation, output, l2=float(self.alpha), seed=seed,
                  dtype=self.dtype, backend=self.backend,
                  classes=attrs.get("classes_")) if fresh else self._mlp
        lbfgs = isinstance(optimizer, LBFGS)
        score = None
        if self.early_stopping and not lbfgs:  # scikit-learn's lbfgs ignores it too
            # labels are split stratified by class (not multi-label rows, nor a regression)
            stratify = y if attrs.get("_multilabel") is False else None
            parts = train_test_split(X, Y, y, *([] if sw is None else [sw]), stratify=stratify,
                                     test_size=self.validation_fraction, random_state=seed)
            X, Xv, Y, _, y, yv = parts[:6]
            sw, swv = parts[6:] if sw is not None else (None, None)
            fitted = {**vars(self), **attrs}
            score = lambda model: self._metric(  # noqa: E731
                yv, self._predict_with(model, Xv, fitted), sample_weight=swv)
            if rec.validation_scores_ is None:
                rec.validation_scores_, rec.best_validation_score_ = [], -math.inf
        elif rec.best_loss_ is None:
            rec.best_loss_ = math.inf
        if not incremental or fresh:
            rec._schedule = schedule
        else:
            optimizer = None  # partial_fit continues the optimizer and its schedule
        monitor = Monitor(rec, score, stop=not (incremental or lbfgs), tol=self.tol,
                          patience=self.n_iter_no_change,
                          adaptive=isinstance(rec._schedule, Adaptive),
                          rows=0 if lbfgs else X.shape[0], verbose=bool(self.verbose))
        batch_size = min(200, X.shape[0]) if self.batch_size == "auto" else self.batch_size
        # MLP.fit checks (X, Y, weights), labels included, before it changes the model.
        options = dict(epochs=1 if incremental else self.max_iter,
                       batch_size=None if lbfgs else int(batch_size), optimizer=optimizer,
                       lr_schedule=rec._schedule, shuffle=bool(self.shuffle),
                       callbacks=[monitor], sample_weight=sw, class_weight=class_weight)
        return FitPlan(self, mlp, X, Y, options, attrs, rec, monitor, incremental)

    def _own_params(self, incremental: bool):
        """Check the subclass's own parameters; returns the class_weight to train with."""
        raise NotImplementedError

    def _commit(self, mlp: MLP, attrs: dict, rec: SimpleNamespace) -> None:
        self._mlp = mlp
        for name, value in attrs.items():
            if value is None and name == "feature_names_in_":
                self.__dict__.pop(name, None)
            else:
                setattr(self, name, value)
        self.__dict__.update(vars(rec))

    def fit(self, X, y, sample_weight=None):
        """Train for up to max_iter epochs (see the module docstring for the stopping rule);
        with warm_start, continue from the last fit's weights with a fresh optimizer.
        sample_weight: one weight >= 0 per sample (the loss becomes the weighted mean).
        Rejects, with ValueError/TypeError: X that scikit-learn's validate_data rejects (not
        2-D, sparse, empty, NaN/Inf, non-numeric, a new number of features when warm
        starting), bad targets (see the subclass), bad sample weights (accelnn.weighting), a
        bad hyper-parameter (named), and a warm start whose network would differ from the
        last one; a rejected fit leaves the estimator (and a fitted model) exactly as it
        was."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    # ------------------------------------------------------------------ the model
    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "_mlp", None) is not None

    def _forward_checked(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32))

    def predict(self, X) -> np.ndarray:
        X = self._forward_checked(X)  # NotFittedError first
        return self._predict_with(self._mlp, X, vars(self))

    def to_onnx(self, path) -> None:
        """Write predict (and the classifier's predict_proba) as an ONNX graph, float32,
        opset 17: input "X", outputs "label" and "probabilities" (classifier) or "variable"
        (regressor), as accelnn.export describes. Needs the onnx package; NotFittedError
        before fit. (The graph's probabilities are not kept one step inside (0, 1).)"""
        check_is_fitted(self)
        self._write_onnx(path)

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
            state["_mlp"] = model_bytes(state["_mlp"])
        return state

    def __setstate__(self, state):
        if state.get("_mlp") is not None:
            state = {**state, "_mlp": model_from_bytes(state["_mlp"], state["backend"])}
        super().__setstate__(state)


class FitPlan:
    """A prepared estimator fit (see `_BaseMLP.fit_plan`): `model` (the accelnn MLP), `X` and
    `Y` (the rows it trains on, after the early-stopping split) and `options` (MLP.fit's
    keyword arguments, scikit-learn's stopping rule among the callbacks)."""

    def __init__(self, est, model, X, Y, options, attrs, rec, monitor, incremental):
        self.est, self.model, self.X, self.Y, self.options = est, model, X, Y, options
        self.attrs, self.rec, self.monitor, self.incremental = attrs, rec, monitor, incremental

    def finish(self, history) -> None:
        """Complete the estimator after the model trained: the best validation weights, the
        record, the fitted attributes, and scikit-learn's ConvergenceWarning."""
        mlp, rec, est = self.model, self.rec, self.est
        lbfgs = isinstance(self.options["optimizer"], LBFGS)
        if self.monitor.best_weights is not None:
            mlp.set_weights(self.monitor.best_weights)
        if lbfgs and not history.epochs:  # converged where it started: no iteration
            rec.loss_ = mlp.loss(self.X, self.Y, sample_weight=self.options["sample_weight"])
        est._commit(mlp, self.attrs, rec)
        if lbfgs and not history.converged:
            warnings.warn(f"lbfgs failed to converge after {rec.n_iter_} iteration(s): "
                          f"{history.message}. Increase the number of iterations (max_iter, "
                          f"max_fun) or scale the data", ConvergenceWarning, stacklevel=4)
        elif not (self.incremental or lbfgs or mlp.stop_training):
            warnings.warn(f"{type(est).__name__}: the maximum of {est.max_iter} epochs "
                          f"(max_iter) was reached before the optimization converged",
                          ConvergenceWarning, stacklevel=4)

    def fail(self) -> None:
        """After the training raised: when it trained before failing, the estimator keeps the
        model with the record of the epochs the model kept."""
        if self.monitor.epochs:
            self.monitor.keep(self.model)
            self.est._commit(self.model, self.attrs, self.rec)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's interface, trained by accelnn.

    Two classes get one sigmoid output unit (binary cross-entropy), more get softmax units
    (categorical cross-entropy); a 0/1 indicator matrix y is multi-label (one sigmoid unit
    per column, classes_ = column indices). Labels may be numbers or text.

    Parameters: those of sklearn.neural_network.MLPClassifier, plus `class_weight` (None,
    "balanced" or {label: weight}, multiplied into the sample weights; single-label targets
    only), `backend` and `dtype`; see the module docstring.

    Attributes (after fit): classes_, n_features_in_ (feature_names_in_ for a DataFrame),
    loss_ and loss_curve_ (training loss per epoch or L-BFGS iteration, L2 term included),
    n_iter_ (of the last fit), t_ (samples seen by sgd/adam), best_loss_ (None with
    early_stopping), validation_scores_ and best_validation_score_ (None without
    early_stopping), coefs_, intercepts_, n_layers_, n_outputs_, out_activation_.
    """

    _metric = staticmethod(accuracy_score)  # ClassifierMixin.score's: subset accuracy

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, backend=None, dtype="float64"):
        self._keep(locals())

    def _own_params(self, incremental: bool):
        """class_weight: None, "balanced" (not for partial_fit, as in scikit-learn's SGD
        classifiers: its counts would change from call to call) or {label: weight}."""
        check_class_weight(self.class_weight)
        if incremental and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' is not supported for partial_fit; give "
                             "a dict {label: weight}")
        return self.class_weight

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

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the optimizer (sgd and adam only). `classes`
        (every label the classifier will see) is required on the first call. Rejects what fit
        rejects, a first call without classes, classes that differ from the first call's,
        labels outside them, early_stopping=True and class_weight="balanced"."""
        if not self.__sklearn_is_fitted__() and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), NumPy; multi-label: one column per
        label. They lie strictly inside (0, 1): a saturated output (a logit beyond about 37
        in float64) would round to exactly 0 or 1, so it is kept one representable step
        inside, which also keeps predict_log_proba finite. Rejects an unfitted estimator
        (NotFittedError) and X that fit would reject, including a different number of
        features."""
        X = self._forward_checked(X)
        P = np.array(self._mlp.backend.to_numpy(self._mlp.predict_proba(X)), copy=True)
        info = np.finfo(P.dtype)
        return np.clip(P, info.tiny, 1.0 - info.epsneg, out=P)

    def _write_onnx(self, path) -> None:
        export.write_classifier(self._mlp, path, self.classes_, self._multilabel)

    def predict_log_proba(self, X) -> np.ndarray:
        """log(predict_proba(X)), as scikit-learn's (a probability of 0 gives -inf)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

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

    Parameters and attributes: as MLPClassifier's, without classes_ and class_weight, and
    with scikit-learn's `loss`, which must be "squared_error" (accelnn has no exponential
    output for scikit-learn's "poisson").
    """

    _metric = staticmethod(r2_score)  # RegressorMixin.score's

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, dtype="float64"):
        self._keep(locals())

    def _own_params(self, incremental: bool):
        if self.loss != "squared_error":
            raise ValueError(f"loss must be 'squared_error' (accelnn has no 'poisson' output), "
                             f"got {self.loss!r}")
        return None

    def _validate_xy(self, X, y, fresh: bool, classes=None):
        """Rejects non-numeric y, NaN or Inf in y, and (when training on) a different number
        of target columns."""
        X, y, attrs = self._check_data(X, y, fresh, y_numeric=True)
        Y = y.reshape(len(y), -1)
        return X, Y, y, attrs, (Y.shape[1], "identity")

    def _predict_with(self, mlp: MLP, X, fitted: dict) -> np.ndarray:
        return mlp.backend.to_numpy(mlp.predict(X))  # (n,) for one target, as MLP.predict

    def _write_onnx(self, path) -> None:
        export.write_regressor(self._mlp, path)

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the optimizer (sgd and adam only). Rejects what
        fit rejects, and early_stopping=True."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X) -> np.ndarray:
        """Predicted values, (n_samples,) for one target, else (n_samples, n_targets), NumPy.
        Rejects an unfitted estimator (NotFittedError) and X that fit would reject."""
        return super().predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
