"""accelnn.sklearn beyond the estimator checks: solver="lbfgs", sample_weight, class_weight,
t_ and invscaling across warm starts, predict_log_proba, the regressor's loss, and the
stratified early-stopping split, each against scikit-learn's own estimators where it can."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err

nn = pytest.importorskip("sklearn.neural_network", reason="the estimators need scikit-learn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from accelnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _blobs(m=90, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, m)
    X = np.array([[0, 3], [3, 0], [-3, -3]])[y] + rng.normal(size=(m, 2)) * 1.5
    return X / 3, np.array(["ant", "bee", "cat"])[y]


def _flat(est):
    return np.concatenate([a.ravel() for pair in zip(est.coefs_, est.intercepts_)
                           for a in pair])


def _warm_sklearn(cls, start, X, y, **params):
    """A scikit-learn estimator built by a 1-iteration fit, then set to accelnn's starting
    weights `start` (from an estimator's coefs_/intercepts_) and its record cleared."""
    est = cls(warm_start=True, max_iter=1, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    est.coefs_, est.intercepts_ = [c.copy() for c in start[0]], [b.copy() for b in start[1]]
    est.t_, est.loss_curve_ = 0, []
    return est


def test_lbfgs_classifier_equals_scikit_learns_from_the_same_weights():
    X, y = _blobs()
    ours = MLPClassifier(hidden_layer_sizes=(5,), activation="tanh", solver="lbfgs", alpha=0.1,
                         max_iter=1, random_state=0, backend="numpy")
    ours.fit(X, y)  # one iteration, then start both from those weights
    start = ([c.copy() for c in ours.coefs_], [b.copy() for b in ours.intercepts_])
    theirs = _warm_sklearn(nn.MLPClassifier, start, X, y, hidden_layer_sizes=(5,),
                           activation="tanh", solver="lbfgs", alpha=0.1)
    ours.set_params(warm_start=True, max_iter=25)
    theirs.set_params(max_iter=25)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 25"):
        ours.fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X, y)
    err = max_rel_err(_flat(ours), _flat(theirs))
    print(f"lbfgs classifier vs scikit-learn after 25 iterations: rel err {err:.1e}")
    assert err < 1e-9 and ours.n_iter_ == theirs.n_iter_ == 25
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    assert len(ours.loss_curve_) == 26 and ours.loss_curve_[-1] == ours.loss_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    assert ours.t_ == 0 and not hasattr(ours, "partial_fit")  # not stochastic


def test_lbfgs_ignores_early_stopping_and_converges_quietly():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", early_stopping=True,
                        max_iter=500, random_state=0, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.validation_scores_ is None and clf.n_iter_ < 500 and clf.score(X, y) > 0.9


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_integer_sample_weights_equal_repeated_rows(solver):
    X, y = _blobs(40)
    w = np.random.default_rng(1).integers(0, 4, 40)
    params = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=20, random_state=0,
                  backend="numpy")
    a = MLPClassifier(**params).fit(X, y, sample_weight=w)
    b = MLPClassifier(**params).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert max_rel_err(_flat(a), _flat(b)) < 1e-12 and a.n_iter_ == b.n_iter_
    reg_a = MLPRegressor(**params).fit(X, X[:, 0] * 2, sample_weight=w)
    reg_b = MLPRegressor(**params).fit(np.repeat(X, w, axis=0), np.repeat(X[:, 0] * 2, w))
    assert max_rel_err(_flat(reg_a), _flat(reg_b)) < 1e-12
    assert a.score(X, y, sample_weight=w) == b.score(np.repeat(X, w, axis=0), np.repeat(y, w))


def test_partial_fit_takes_sample_weights_and_class_weight_dicts():
    X, y = _blobs(40)
    w = np.random.default_rng(2).uniform(0, 2, 40)
    a = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, backend="numpy",
                      class_weight={"ant": 2.0})
    a.partial_fit(X, y, sample_weight=w, classes=["ant", "bee", "cat"])
    b = MLPClassifier(hidden_layer_sizes=(6,), random_state=0, backend="numpy")
    b.partial_fit(X, y, sample_weight=w * np.where(y == "ant", 2.0, 1.0),
                  classes=["ant", "bee", "cat"])
    assert max_rel_err(_flat(a), _flat(b)) < 1e-12


def test_class_weight_balanced_equals_scikit_learns_sample_weights():
    X, y = _blobs(60)
    keep = (y != "cat") | (np.arange(60) % 4 == 0)  # make "cat" rare
    X, y = X[keep], y[keep]
    a = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=30, random_state=0,
                      class_weight="balanced", backend="numpy").fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=30, random_state=0,
                      backend="numpy").fit(X, y, sample_weight=compute_sample_weight(
                          "balanced", y))
    assert max_rel_err(_flat(a), _flat(b)) < 1e-12
    multi = MLPClassifier(class_weight={0: 2.0}, backend="numpy")
    with pytest.raises(ValueError, match="class_weight needs a single-label classifier"):
        multi.fit(X, np.c_[y == "ant", y == "bee"].astype(int))


def test_invscaling_counts_t_across_warm_starts():
    """hunt-02's kind in the estimator: a warm start keeps t_ (the samples seen since the
    first fit, as scikit-learn's) and the invscaling rate goes on from it with a fresh
    optimizer: lr = lr0 / (t_ + 1) ** power_t every epoch, checked against plain SGD steps
    written with MLP.loss_and_grads. (scikit-learn's own warm start runs the first epoch of
    each fit at learning_rate_init: its new optimizer applies invscaling at epoch ends.)"""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=30)
    est = MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", solver="sgd", momentum=0.0,
                       learning_rate="invscaling", learning_rate_init=0.05, power_t=0.5,
                       batch_size=30, shuffle=False, tol=0.0, n_iter_no_change=100,
                       max_iter=2, warm_start=True, random_state=0, backend="numpy")
    est.fit(X, y).fit(X, y)
    assert est.t_ == 4 * 30 and est.n_iter_ == 2 and len(est.loss_curve_) == 4
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    ref = accelnn.MLP([3, 4, 1], "tanh", "identity", l2=1e-4, seed=seed, dtype="float64",
                      backend="numpy")
    for t in (0, 30, 60, 90):
        lr = 0.05 / (t + 1) ** 0.5
        _, grads = ref.loss_and_grads(X, y)
        ref.set_weights([(W - lr * dW, b - lr * db)
                         for (W, b), (dW, db) in zip(ref.get_weights(), grads)])
    want = np.concatenate([a.ravel() for pair in ref.get_weights() for a in pair])
    assert max_rel_err(_flat(est), want) < 1e-12


def test_predict_log_proba_loss_parameter_and_stratified_split():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0,
                        backend="numpy").fit(X, y)
    np.testing.assert_array_equal(clf.predict_log_proba(X), np.log(clf.predict_proba(X)))
    assert np.isfinite(clf.predict_log_proba(X * 1e6)).all()  # saturated, still inside (0, 1)
    reg = MLPRegressor(hidden_layer_sizes=(4,), backend="numpy")
    assert reg.get_params()["loss"] == "squared_error"
    with pytest.raises(ValueError, match="loss must be 'squared_error'"):
        reg.set_params(loss="poisson").fit(X, X[:, 0])
    # early_stopping holds out a stratified share: a class of one sample cannot be split
    lone = np.r_[y[:-1], ["dog"]]
    with pytest.raises(ValueError, match="least populated class"):
        MLPClassifier(early_stopping=True, backend="numpy").fit(X, lone)
