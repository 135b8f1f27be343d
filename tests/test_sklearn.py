"""accelnn.sklearn: scikit-learn's estimator checks, digits, Pipeline/GridSearchCV, pickling,
the mapping of scikit-learn's parameters onto accelnn, and errors."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import accelnn

SKLEARN_MISSING = importlib.util.find_spec("sklearn") is None
needs_sklearn = pytest.mark.skipif(
    SKLEARN_MISSING, reason="scikit-learn is not installed (pip install 'accelnn[sklearn]')")
if not SKLEARN_MISSING:
    from sklearn.exceptions import ConvergenceWarning, NotFittedError, SkipTestWarning
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import check_estimator
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    from accelnn.sklearn import MLPClassifier, MLPRegressor

    pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _require(name: str) -> None:
    status = accelnn.available_backends()[name]
    if not status.available:
        pytest.skip(f"backend {name} unavailable: {status.reason}")


@needs_sklearn
@pytest.mark.parametrize("backend_name, solver", [
    ("numpy", "sgd"), ("numpy", "adam"), ("numpy", "lbfgs"), ("numba", "adam"),
    pytest.param("numba", "sgd", marks=pytest.mark.slow),
    pytest.param("numba", "lbfgs", marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_check_estimator(kind, backend_name, solver):
    _require(backend_name)
    estimator = (MLPClassifier if kind == "classifier" else MLPRegressor)(
        backend=backend_name, solver=solver)
    # scipy's L-BFGS-B makes many tiny BLAS calls, which OpenBLAS's threads slow down about
    # tenfold on a busy machine: one BLAS thread keeps these checks at a few seconds.
    single = threadpool_limits(1) if solver == "lbfgs" else contextlib.nullcontext()
    with warnings.catch_warnings(), single:
        warnings.simplefilter("ignore", SkipTestWarning)  # pandas, array API: counted below
        results = check_estimator(estimator, on_fail=None)
    status = {}
    for r in results:
        status.setdefault(r["status"], []).append(r["check_name"])
    print(f"{kind} {solver} on {backend_name}: "
          + ", ".join(f"{len(v)} {k}" for k, v in status.items()))
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed


def _digits_split():
    X, y = accelnn.datasets.load_digits()
    return train_test_split(X, y, test_size=0.25, random_state=0)


@needs_sklearn
def test_digits_test_accuracy_at_least_97_percent(backend):
    """[64, 64, 10] relu on scikit-learn's digits, 25% held out (seeded)."""
    Xtr, Xte, ytr, yte = _digits_split()
    clf = MLPClassifier(hidden_layer_sizes=(64,), batch_size=32, learning_rate_init=0.003,
                        max_iter=30, random_state=0, backend=backend.name)
    clf.fit(Xtr, ytr)
    accuracy = clf.score(Xte, yte)
    print(f"{backend.name}: digits test accuracy {accuracy:.2%} after {clf.n_iter_} epochs")
    assert [W.shape for W in clf.coefs_] == [(64, 64), (64, 10)]
    assert (clf.n_layers_, clf.n_outputs_, clf.out_activation_) == (3, 10, "softmax")
    assert accuracy >= 0.97


def _blobs(m=90, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, m)
    X = np.array([[0, 3], [3, 0], [-3, -3]])[y] * 10 + rng.normal(size=(m, 2)) * 5 + 100
    return X, np.array(["ant", "bee", "cat"])[y]


@needs_sklearn
def test_pipeline_and_grid_search():
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(batch_size=16, max_iter=20,
                                                         learning_rate_init=0.01,
                                                         random_state=0, backend="numpy"))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1.0]}, cv=3)
    grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_score_ > 0.9
    assert set(grid.predict(X)) <= {"ant", "bee", "cat"}
    assert isinstance(grid.predict_proba(X), np.ndarray)


@needs_sklearn
def test_pickle_predicts_and_trains_on_exactly():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, backend="numpy")
    clf.fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    assert copy.loss_curve_ == clf.loss_curve_ and list(copy.classes_) == list(clf.classes_)
    # The Adam moments travel with it: one more epoch gives the same weights on both.
    for est in (clf, copy):
        est.partial_fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, copy.coefs_ + copy.intercepts_):
        np.testing.assert_array_equal(a, b)
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(alpha=0.5)))
    assert unfitted.get_params()["alpha"] == 0.5


def _seed(random_state: int) -> int:
    return int(np.random.RandomState(random_state).randint(np.iinfo(np.int32).max))


@needs_sklearn
@pytest.mark.parametrize("learning_rate", ["constant", "invscaling"])
def test_parameters_map_onto_accelnn_sgd(learning_rate):
    """solver, momentum, alpha, batch_size, learning_rate(_init), power_t, shuffle: the
    estimator trains exactly as the MLP with the matching optimizer and schedule."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    est = MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", solver="sgd", alpha=0.1,
                       batch_size=16, learning_rate=learning_rate, learning_rate_init=0.05,
                       power_t=0.25, momentum=0.8, nesterovs_momentum=False, max_iter=4,
                       tol=0.0, n_iter_no_change=50, shuffle=False, random_state=3,
                       backend="numpy")
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        est.fit(X, y)
    ref = accelnn.MLP([3, 5, 2], "tanh", "identity", l2=0.1, seed=_seed(3), dtype="float64",
                      backend="numpy")
    schedule = (accelnn.schedules.InvScaling(0.25) if learning_rate == "invscaling"
                else "constant")
    hist = ref.fit(X, y, epochs=4, batch_size=16, optimizer=accelnn.SGD(0.05, momentum=0.8),
                   lr_schedule=schedule, shuffle=False)
    assert est.loss_curve_ == hist["loss"] and est.n_iter_ == 4
    assert est.best_loss_ == min(hist["loss"]) and est.validation_scores_ is None
    for a, (W, b) in zip(zip(est.coefs_, est.intercepts_), ref.get_weights()):
        np.testing.assert_array_equal(a[0], W)
        np.testing.assert_array_equal(a[1], b)
    assert est.predict(X).shape == (40, 2)


@needs_sklearn
def test_stopping_rules():
    X, y = _blobs(150)
    # No epoch after the first lowers the loss by tol=10: the fit stops when more than
    # n_iter_no_change epochs in a row have failed, after 1 + 3 epochs.
    clf = MLPClassifier(tol=10.0, n_iter_no_change=2, random_state=0, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4
    # early_stopping watches the score on validation_fraction of the data.
    clf = MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=3, max_iter=300, random_state=0, backend="numpy")
    clf.fit((X - 100) / 30, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_ < 300
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # adaptive: the schedule divides the lr by 5 until it is below 1e-6, then the fit stops.
    reg = MLPRegressor(solver="sgd", learning_rate="adaptive", learning_rate_init=1e-4,
                       tol=10.0, n_iter_no_change=1, max_iter=100, random_state=0,
                       backend="numpy")
    reg.fit(X[:, :1], X[:, 1])
    # Epoch 1 sets best_loss_; each 2 stalled epochs then cut the lr, 1e-4 -> 2e-5 -> 4e-6
    # -> 8e-7, and the next 2, run below 1e-6, stop the fit: 1 + 4 * 2 epochs.
    assert reg.n_iter_ == 9


@needs_sklearn
def test_warm_start_and_partial_fit():
    X, y = _blobs()
    Xs = (X - 100) / 30
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0,
                        backend="numpy")
    clf.fit(Xs, y)
    first = clf.coefs_[0]
    clf.fit(Xs, y)
    # hunt-10: n_iter_ counts the last fit (scikit-learn >= 1.3); loss_curve_ and t_ go on.
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 6 and clf.t_ == 6 * 90
    assert not np.array_equal(first, clf.coefs_[0])
    clf.set_params(hidden_layer_sizes=(9,))
    with pytest.raises(ValueError, match="warm_start / partial_fit needs the network"):
        clf.fit(Xs, y)
    inc = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, backend="numpy")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        inc.partial_fit(Xs, y)
    inc.partial_fit(Xs[y == "ant"], y[y == "ant"], classes=["cat", "bee", "ant"])
    assert list(inc.classes_) == ["ant", "bee", "cat"] and inc.n_iter_ == 1
    inc.partial_fit(Xs, y)
    assert inc.n_iter_ == 1 and inc.predict_proba(Xs).shape == (90, 3)
    assert inc.t_ == (y == "ant").sum() + 90 and len(inc.loss_curve_) == 2
    with pytest.raises(ValueError, match="differs from classes_"):
        inc.partial_fit(Xs, y, classes=["ant", "bee"])
    with pytest.raises(ValueError, match="labels outside the classes"):
        inc.partial_fit(Xs[:2], ["ant", "dog"])
    with pytest.raises(ValueError, match="3 features"):
        inc.partial_fit(np.c_[Xs, Xs[:, 0]], y)
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0, backend="numpy")
    reg.partial_fit(Xs, Xs[:, 0]).partial_fit(Xs, Xs[:, 0])
    assert reg.n_iter_ == 1 and reg.t_ == 180 and reg.predict(Xs).shape == (90,)


@needs_sklearn
def test_binary_multilabel_and_float32():
    X, labels = _blobs()
    Xs = (X - 100) / 30
    Y = np.c_[labels == "ant", labels != "cat"].astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                        learning_rate_init=0.01, dtype="float32", backend="numpy").fit(Xs, Y)
    assert list(clf.classes_) == [0, 1] and clf.predict(Xs).shape == (90, 2)
    assert clf.predict_proba(Xs).dtype == np.float32 and clf.score(Xs, Y) > 0.9
    binary = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                           learning_rate_init=0.01, backend="numpy").fit(Xs, labels == "ant")
    assert binary.coefs_[-1].shape == (8, 1) and binary.predict_proba(Xs).shape == (90, 2)
    # scikit-learn's names for the architecture.
    assert (binary.n_layers_, binary.n_outputs_, binary.out_activation_) == (3, 1, "logistic")
    assert (clf.n_outputs_, clf.out_activation_) == (2, "logistic")
    assert binary.score(Xs, labels == "ant") > 0.9
    assert binary.classes_.dtype == bool and binary.predict(Xs).dtype == bool
    # Multi-label score is scikit-learn's subset accuracy: a row counts when all labels match.
    flipped = Y.copy()
    flipped[::3, 0] ^= 1
    pred = clf.predict(Xs)
    assert clf.score(Xs, flipped) == np.mean((pred == flipped).all(axis=1))


@needs_sklearn
@pytest.mark.parametrize("params, match", [
    ({"solver": "newton"}, "solver must be one of 'sgd', 'adam', 'lbfgs'"),
    ({"max_fun": 0}, "max_fun must be an integer >= 1"),
    ({"class_weight": [1, 2]}, "class_weight must be 'balanced' or a dict"),
    ({"class_weight": {"ant": -1}}, r"class_weight\['ant'\] must be a number >= 0"),
    ({"learning_rate": "optimal"}, "learning_rate must be"),
    ({"hidden_layer_sizes": (4, 0)}, "hidden_layer_sizes must be"),
    ({"hidden_layer_sizes": "wide"}, "hidden_layer_sizes must be"),
    ({"batch_size": 0}, "batch_size must be 'auto' or an integer"),
    ({"alpha": -1.0}, "alpha must be"),
    ({"learning_rate_init": 0.0}, "learning_rate_init must be"),
    ({"tol": -1.0}, "tol must be"),
    ({"validation_fraction": 1.0}, "validation_fraction must be"),
    ({"max_iter": 0}, "max_iter must be an integer"),
    ({"n_iter_no_change": 0}, "n_iter_no_change must be an integer"),
    ({"momentum": 1.5, "solver": "sgd"}, "momentum must be"),
    ({"beta_1": 1.0}, "beta_1 must be"),
    ({"activation": "swish"}, "swish"),
    ({"dtype": "float16"}, "unsupported dtype"),
    ({"backend": "bogus"}, "unknown backend"),
    ({"shuffle": "no"}, "shuffle must be True or False, got 'no'"),
    ({"warm_start": "yes"}, "warm_start must be True or False, got 'yes'"),
    ({"nesterovs_momentum": 1, "solver": "sgd"}, "nesterovs_momentum must be True or False"),
    ({"early_stopping": "False"}, "early_stopping must be True or False, got 'False'"),
    ({"verbose": -1}, "verbose must be True or False, got -1"),
])
def test_bad_parameters_are_named(params, match):
    X, y = _blobs(20)
    with pytest.raises((ValueError, accelnn.BackendError), match=match):
        MLPClassifier(**params).fit(X, y)


def _fitted_state(est, X):
    """Everything fit may change: the estimator's attributes (the model and schedule by
    identity, the rest by value), the weights, the model's classes and what predict gives."""
    state = {k: v if k in ("_mlp", "_schedule") else copy.deepcopy(v)
             for k, v in vars(est).items() if k not in est.get_params()}
    weights = est.coefs_ + est.intercepts_
    out = est.predict_proba(X) if hasattr(est, "classes_") else est.predict(X)
    return state, weights, est._mlp.classes_, est._mlp.epoch_, est.predict(X), out


def _assert_same_state(before, after):
    (state0, *rest0), (state1, *rest1) = before, after
    assert state0.keys() == state1.keys()
    for k, v in state0.items():
        if k in ("_mlp", "_schedule"):
            assert state1[k] is v, k
        else:
            np.testing.assert_equal(state1[k], v, err_msg=k)
    np.testing.assert_equal(rest1, rest0)


_X3 = np.random.default_rng(5).normal(size=(30, 3))
_Y3 = np.arange(30) % 3


@needs_sklearn
@pytest.mark.parametrize("method, params, X, y, kwargs", [
    # The reviewer's case: new data passes validate_data, then MLP(...) rejects activation.
    ("fit", {"activation": "bogus"}, _X3[:, :2], _Y3 % 2, {}),
    ("fit", {"dtype": "float16"}, _X3[:, :2], _Y3 % 2, {}),
    ("fit", {"backend": "bogus"}, _X3, np.array(list("abcab") * 6), {}),
    ("fit", {"solver": "newton"}, _X3[:, :2], _Y3 % 2, {}),
    ("fit", {"class_weight": {7: 1.0}}, _X3, _Y3, {}),  # 7 is not a class
    ("fit", {}, _X3, _Y3, {"sample_weight": np.ones(29)}),
    ("partial_fit", {"early_stopping": True}, _X3, _Y3, {}),
    ("partial_fit", {"class_weight": "balanced"}, _X3, _Y3, {}),
    ("fit", {"hidden_layer_sizes": (0,)}, _X3, _Y3, {}),
    ("fit", {}, _X3, np.zeros(30), {}),  # one class
    ("fit", {}, _X3, _Y3 + 0.5, {}),  # continuous targets
    ("fit", {}, np.where(_X3 > 1, np.nan, _X3), _Y3, {}),
    ("fit", {"warm_start": True}, _X3[:, :2], _Y3, {}),
    ("fit", {"warm_start": True, "hidden_layer_sizes": (6,)}, _X3, _Y3, {}),
    ("fit", {"warm_start": True}, _X3, np.eye(3)[_Y3], {}),  # labels -> multi-label
    ("partial_fit", {}, _X3, _Y3 + 1, {}),  # a label outside classes_
    ("partial_fit", {}, _X3, _Y3, {"classes": [0, 1]}),
    ("partial_fit", {}, _X3[:, :2], _Y3, {}),
    ("partial_fit", {"hidden_layer_sizes": (6,)}, _X3, _Y3, {}),
])
def test_rejected_fit_leaves_the_fitted_classifier_as_it_was(method, params, X, y, kwargs):
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0, backend="numpy")
    clf.fit(_X3, _Y3).partial_fit(_X3, _Y3)  # an optimizer state and schedule to keep, too
    before = _fitted_state(clf, _X3)
    clf.set_params(**params)
    with pytest.raises((ValueError, TypeError, accelnn.BackendError)):
        getattr(clf, method)(X, y, **kwargs)
    clf.set_params(hidden_layer_sizes=(5,), activation="relu", dtype="float64",
                   backend="numpy", solver="adam", warm_start=False, class_weight=None,
                   early_stopping=False)
    _assert_same_state(before, _fitted_state(clf, _X3))
    clf.partial_fit(_X3, _Y3)  # and it trains on
    assert clf.n_iter_ == 1 and clf.t_ == before[0]["t_"] + 30


@needs_sklearn
def test_rejected_fit_leaves_the_fitted_regressor_as_it_was():
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend="numpy")
    reg.fit(_X3, _X3[:, :2])
    before = _fitted_state(reg, _X3)
    for params, X, y in [({"activation": "bogus"}, _X3[:, :1], _X3[:, 0]),
                         ({"dtype": "int8"}, _X3[:, :1], _X3[:, 0]),
                         ({}, _X3[:, :1], np.where(_X3[:, 0] > 1, np.inf, _X3[:, 0])),
                         ({"warm_start": True}, _X3, _X3[:, 0])]:
        with pytest.raises((ValueError, TypeError)):
            reg.set_params(**params).fit(X, y)
        reg.set_params(activation="relu", dtype="float64", warm_start=False)
        _assert_same_state(before, _fitted_state(reg, _X3))
    with pytest.raises(ValueError):
        reg.partial_fit(_X3, _X3)  # 3 targets, the model has 2 outputs
    _assert_same_state(before, _fitted_state(reg, _X3))


@needs_sklearn
def test_rejected_fit_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_X3, columns=["a", "b", "c"])
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, backend="numpy").fit(frame, _Y3)
    with pytest.raises(ValueError, match="unknown activation"):
        clf.set_params(activation="bogus").fit(_X3[:, :2], _Y3)  # no names, 2 features
    assert list(clf.feature_names_in_) == ["a", "b", "c"] and clf.n_features_in_ == 3
    clf.set_params(activation="relu").fit(_X3, _Y3)  # an accepted fit on an array drops them
    assert not hasattr(clf, "feature_names_in_")


@needs_sklearn
def test_rejected_first_partial_fit_leaves_the_classifier_unfitted():
    clf = MLPClassifier(hidden_layer_sizes=(5,), backend="numpy")
    with pytest.raises(ValueError, match="labels outside the classes"):
        clf.partial_fit(_X3, _Y3, classes=[0, 1])
    with pytest.raises(ValueError, match="unknown activation"):
        clf.set_params(activation="bogus").partial_fit(_X3, _Y3, classes=[0, 1, 2])
    assert not [k for k in vars(clf) if k.endswith("_") or k.startswith("_")]
    with pytest.raises(NotFittedError):
        clf.predict(_X3)


@needs_sklearn
def test_bad_targets():
    X = np.ones((4, 2))
    with pytest.raises(NotFittedError):
        assert MLPClassifier().coefs_
    with pytest.raises(NotFittedError):
        assert MLPRegressor().intercepts_
    with pytest.raises(NotFittedError):
        assert MLPRegressor().out_activation_
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        MLPClassifier().fit(X, [[0, 2], [1, 0], [2, 1], [0, 0]])
    with pytest.raises(ValueError, match="NaN"):
        MLPRegressor().fit(X, [0.0, np.nan, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"y has a missing value \(None\) at row 2"):
        MLPClassifier().fit(X, np.array(["a", "b", None, "a"], dtype=object))
    with pytest.raises(ValueError, match=r"y has values too large for float32: 1e\+300 at "
                                         r"row 1"):
        MLPRegressor(dtype="float32").fit(X, [0.0, 1e300, 1.0, 2.0])


@needs_sklearn
def test_numpy_bools_and_verbosity_levels_are_accepted():
    X, y = _blobs(40)
    MLPClassifier((3,), max_iter=2, shuffle=np.False_, early_stopping=np.True_,
                  nesterovs_momentum=np.True_, backend="numpy").fit(X, y)
    MLPClassifier((3,), max_iter=1, verbose=0, backend="numpy").fit(X, y)


def test_import_accelnn_leaves_sklearn_alone_and_says_what_is_missing():
    code = ("import sys, accelnn; assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
            "sys.modules['sklearn'] = None\n"
            "try:\n    import accelnn.sklearn\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "accelnn.sklearn needs scikit-learn >= 1.6" in out


@needs_sklearn
def test_verbose_prints_scikit_learns_lines(capsys):
    X = np.random.default_rng(0).normal(size=(30, 2))
    MLPRegressor(hidden_layer_sizes=(3,), max_iter=3, verbose=True, random_state=0,
                 backend="numpy").fit(X, X[:, 0])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" loss")[0] for line in lines] == [
        "Iteration 1,", "Iteration 2,", "Iteration 3,"]
    assert all(len(line.split("= ")[1].split(".")[1]) == 8 for line in lines)  # %.8f
    Xb, yb = _blobs(150)
    MLPClassifier(hidden_layer_sizes=(4,), tol=10.0, n_iter_no_change=2, early_stopping=True,
                  verbose=True, random_state=0, backend="numpy").fit((Xb - 100) / 30, yb)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ")
    assert lines[1].startswith("Validation score: ") and len(lines) == 2 * 4 + 1
    assert lines[-1] == ("Validation score did not improve more than tol=10.000000 for 2 "
                         "consecutive epochs. Stopping.")


@needs_sklearn
def test_a_diverging_fit_keeps_the_record_of_the_epochs_the_model_kept():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X[:, 0] * 1e3
    est = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                       momentum=0.0, batch_size=200, max_iter=50, random_state=0,
                       backend="numpy")
    with pytest.raises(accelnn.DivergenceError):
        est.fit(X, y)
    kept = est._mlp.epoch_
    assert est.n_iter_ == kept == len(est.loss_curve_)
    if kept:
        assert est.loss_ == est.loss_curve_[-1] and np.isfinite(est.loss_curve_).all()
        assert est.best_loss_ == min(est.loss_curve_)
    assert np.isfinite(est.predict(X)).all()
