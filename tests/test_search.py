"""MLPSearchCV against its oracle, scikit-learn's GridSearchCV over the same accelnn
estimator: cv_results_ (every entry but the times), best_params_, best_score_, best_index_
and the refitted best_estimator_ are equal, for grids that stack into one pass, grids that
split into groups (architectures, solvers, L-BFGS alone), early stopping, several metrics,
train scores, sample weights, groups and failing candidates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold  # noqa: E402

from accelnn import search  # noqa: E402
from accelnn.sklearn import MLPClassifier, MLPRegressor, MLPSearchCV  # noqa: E402

BACKENDS = ["numpy", "numba"]


def _data(m=180, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 5))
    return X, (X[:, 0] + X[:, 1] ** 2 > 0.8).astype(int) + (X[:, 2] > 1.2)


def _same(a, b, **fit_params):
    """Fit both searches and assert everything GridSearchCV gives equal (times apart)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a.fit(*fit_params.pop("data"), **fit_params)
    ra, rb = a.cv_results_, b.cv_results_
    assert sorted(ra) == sorted(rb)
    for key in rb:
        if key.endswith("_time"):
            continue
        if key == "params":
            assert ra[key] == rb[key]
        elif np.asarray(rb[key]).dtype.kind == "f":
            np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
        else:
            assert list(ra[key]) == list(rb[key]), key
    for attr in ("best_params_", "best_score_", "best_index_", "n_splits_", "multimetric_"):
        assert getattr(a, attr, None) == getattr(b, attr, None), attr
    return a, b


def _both(est, grid, X, y, **kwargs):
    fit_params = kwargs.pop("fit_params", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        b = GridSearchCV(est, grid, **kwargs).fit(X, y, **fit_params)
    return _same(MLPSearchCV(est, grid, **kwargs), b, data=(X, y), **fit_params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_grid_of_lr_alpha_and_seeds_equals_grid_search(backend):
    pytest.importorskip(backend)
    X, y = _data()
    est = MLPClassifier(hidden_layer_sizes=(8, 6), batch_size=16, max_iter=6, backend=backend)
    grid = {"learning_rate_init": [1e-3, 1e-2], "alpha": [1e-4, 1e-1],
            "random_state": [0, 1, 2]}
    a, b = _both(est, grid, X, y, cv=3)
    np.testing.assert_array_equal(a.best_estimator_.predict_proba(X),
                                  b.best_estimator_.predict_proba(X))
    assert a.refit_time_ > 0 and a.scorer_ is not None


def test_groups_by_architecture_and_solver_lbfgs_alone(monkeypatch):
    """Six groups train in one pass each: two architectures times three update rules (adam,
    with both momentum values and both folds: 4 fits; sgd without momentum and sgd with
    Nesterov's momentum, the estimator's default: 2 fits each); L-BFGS fits run one by
    one."""
    X, y = _data()
    est = MLPClassifier(batch_size=20, max_iter=5, random_state=3, backend="numba")
    grid = [{"hidden_layer_sizes": [(6,), (5, 4)], "solver": ["adam", "sgd"],
             "momentum": [0.0, 0.9]},
            {"solver": ["lbfgs"], "alpha": [1e-4, 1.0]}]
    passes = []
    real = search.fit_many
    monkeypatch.setattr(search, "fit_many",
                        lambda models, **kw: passes.append(len(models)) or real(models, **kw))
    _both(est, grid, X, y, cv=2)
    assert sorted(passes) == [2, 2, 2, 2, 4, 4]


def test_early_stopping_adaptive_rates_and_several_metrics():
    X, y = _data(m=240)
    est = MLPClassifier(hidden_layer_sizes=(7,), batch_size=16, max_iter=30,
                        early_stopping=True, n_iter_no_change=3, solver="sgd",
                        learning_rate="adaptive", backend="numba")
    grid = {"learning_rate_init": [0.05, 0.2], "random_state": [0, 1],
            "early_stopping": [True, False]}
    _both(est, grid, X, y, cv=3, scoring=["accuracy", "f1_macro"], refit="f1_macro",
          return_train_score=True)


def test_a_regressor_with_sample_weights_and_groups():
    X, _ = _data()
    y = X[:, 0] - 0.5 * X[:, 3]
    w = np.random.default_rng(1).integers(1, 4, len(X)).astype(float)
    groups = np.arange(len(X)) % 4
    est = MLPRegressor(hidden_layer_sizes=(6,), batch_size=16, max_iter=6, backend="numba")
    grid = {"alpha": [1e-4, 1e-1], "random_state": [0, 5]}
    _both(est, grid, X, y, cv=GroupKFold(4),
          fit_params={"sample_weight": w, "groups": groups})


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_failing_candidates_score_error_score():
    X, y = _data()
    est = MLPClassifier(hidden_layer_sizes=(5,), batch_size=16, max_iter=3, random_state=0,
                        backend="numba")
    grid = {"alpha": [1e-4, -1.0]}
    with pytest.warns(FitFailedWarning):
        a, _ = _both(est, grid, X, y, cv=2)
    assert np.isnan(a.cv_results_["mean_test_score"][1])
    with pytest.raises(ValueError, match="alpha"):
        MLPSearchCV(est, {"alpha": [-1.0]}, cv=2, error_score="raise").fit(X, y)
    with pytest.raises(ValueError, match="All the 2 fits failed"):
        MLPSearchCV(est, {"alpha": [-1.0]}, cv=2).fit(X, y)


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_a_fit_that_mlp_fit_refuses_inside_a_group(monkeypatch):
    """A class_weight naming a label that is not a class passes the estimator's checks and is
    refused by MLP.fit: the group's one pass is refused before any model changes, and its
    fits run one by one, each failing or not on its own."""
    X, y = _data()
    est = MLPClassifier(hidden_layer_sizes=(5,), batch_size=16, max_iter=3, random_state=0,
                        backend="numba")
    grid = {"class_weight": [None, {7: 2.0}], "alpha": [1e-4, 1e-2]}
    passes = []
    real = search.fit_many
    monkeypatch.setattr(search, "fit_many",
                        lambda models, **kw: passes.append(len(models)) or real(models, **kw))
    with pytest.warns(FitFailedWarning, match="class_weight"):
        a, _ = _both(est, grid, X, y, cv=2)
    assert passes == [8]
    refused = [p["class_weight"] is not None for p in a.cv_results_["params"]]
    assert (np.isnan(a.cv_results_["mean_test_score"]) == refused).all()


def test_only_accelnn_estimators():
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(TypeError, match="GridSearchCV"):
        MLPSearchCV(LogisticRegression(), {"C": [1.0]}).fit(*_data())
