"""Bad input gets a clear error naming the problem, and nothing in the model changes."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn


@pytest.fixture
def fitted(backend):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    model = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float64", backend=backend)
    model.fit(X, y, epochs=2, optimizer="adam")
    return model, X, y


def _snapshot(model):
    """Everything fit may change: weights, head, classes, RNG, optimizer and its state."""
    be = model.backend
    classes = None if model.classes_ is None else model.classes_.copy()
    weights = [w.copy() for pair in model.get_weights() for w in pair]
    state = {k: [be.to_numpy(a).copy() for a in v] if isinstance(v, list) else v
             for k, v in model.state.opt_state.items()}
    return (weights, model.head, classes, model.state.rng.bit_generator.state,
            model.state.optimizer, state, model.epoch_)


def _assert_unchanged(model, snap):
    now = _snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(now[0], snap[0]))
    assert now[1] is snap[1] and now[4] is snap[4] and now[6] == snap[6]
    assert np.array_equal(now[2], snap[2])
    assert now[3] == snap[3]
    assert now[5].keys() == snap[5].keys()
    for key, value in now[5].items():
        if isinstance(value, list):
            assert all(np.array_equal(a, b) for a, b in zip(value, snap[5][key]))
        else:
            assert value == snap[5][key]


BAD_FIT = [
    (lambda X, y: (X[:, :2], y), ValueError, "X has 2 features, but the model's input layer has 3"),
    (lambda X, y: (X, y[:-1]), ValueError, "different lengths: 20 samples in X, 19 in y"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "X is empty"),
    (lambda X, y: (np.where(np.arange(20)[:, None] == 3, np.nan, X), y), ValueError,
     "X contains NaN or Inf"),
    (lambda X, y: (np.where(np.arange(20)[:, None] == 3, np.inf, X), y), ValueError,
     "X contains NaN or Inf"),
    (lambda X, y: (X, np.where(np.arange(20) == 1, np.nan, y)), ValueError,
     "y contains NaN or Inf"),
    (lambda X, y: (X.astype(str), y), TypeError, "X must hold numbers"),
    (lambda X, y: (X.astype(complex), y), TypeError, "X must hold numbers"),
    (lambda X, y: (X[0], y), ValueError, "X must be 2-D"),
    (lambda X, y: (X, np.where(np.arange(20) == 4, 7, y)), ValueError,
     r"labels outside the classes seen in fit \[0, 1, 2\]: \[7\]"),
    (lambda X, y: (X, np.eye(4)[y]), ValueError, "y has 4 columns, but the output layer has 3"),
]


@pytest.mark.parametrize("make, exc, message", BAD_FIT)
def test_fit_rejects_bad_data_and_changes_nothing(fitted, make, exc, message):
    model, X, y = fitted
    snap = _snapshot(model)
    with pytest.raises(exc, match=message), np.errstate(over="ignore"):
        model.fit(*make(X, y), epochs=1)
    _assert_unchanged(model, snap)


def test_values_too_large_for_float32_are_named():
    model = accelnn.MLP([2, 1], output="identity", dtype="float32", backend="numpy")
    with pytest.raises(ValueError, match="X has values too large for float32"):
        model.fit(np.array([[1e300, 0.0], [1.0, 2.0]]), [0.0, 1.0])
    with pytest.raises(ValueError, match="layer 1 W has values too large for float32"):
        model.set_weights([(np.array([[1e300], [0.0]]), np.zeros(1))])


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr must be a number in"), ({"lr": -1.0}, "lr must be a number in"),
    ({"lr": float("nan")}, "lr must be a number in"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"epochs": 1.5}, "epochs must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size must be None or an integer >= 1"),
    ({"optimizer": "bfgs"}, "unknown optimizer 'bfgs'; choose one of: sgd"),
    ({"optimizer": "lbfgs", "batch_size": 4}, "optimizer='lbfgs' does not take batch_size"),
    ({"optimizer": "lbfgs", "lr": 0.1}, "optimizer='lbfgs' does not take lr"),
    ({"optimizer": "lbfgs", "checkpoint": "/tmp/ck.npz"}, "does not take checkpoint"),
    ({"sample_weight": np.ones(3)}, r"sample_weight must have shape \(20,\)"),
    ({"sample_weight": -np.ones(20)}, "sample_weight must be >= 0"),
    ({"sample_weight": np.zeros(20)}, "sample_weight is zero for every sample"),
    ({"class_weight": {"dog": 2.0}}, "class_weight names labels that are not classes"),
    ({"validation_data": (np.zeros((2, 3)),)}, "validation_data must be a pair"),
    ({"validation_data": (np.zeros((2, 5)), [0, 1])}, "X has 5 features"),
    ({"validation_split": 0.99}, "holds out 20 of 20 rows, leaving none to train on"),
    ({"checkpoint": "/nonexistent-folder/ck.npz"}, "does not exist or is not writable"),
    ({"checkpoint": "/tmp"}, "checkpoint '/tmp' is a folder; give a file name"),
    ({"checkpoint": "/tmp/some-name/"}, "is a folder; give a file name"),
])
def test_fit_rejects_bad_hyper_parameters(fitted, kwargs, message):
    model, X, y = fitted
    snap = _snapshot(model)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, **kwargs)
    _assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"layer_sizes": [3]}, ValueError, "layer_sizes must list at least two positive"),
    ({"layer_sizes": [3, 0, 1]}, ValueError, "layer_sizes must list at least two positive"),
    ({"layer_sizes": [3, 2.5, 1]}, ValueError, "layer_sizes must list at least two positive"),
    ({"hidden_activation": "swish"}, ValueError, "unknown activation 'swish'; choose one of"),
    ({"hidden_activation": ["tanh"] * 3}, ValueError, "lists 3 names for 1 hidden layers"),
    ({"output": "hinge"}, ValueError, "unknown output 'hinge'; choose one of: auto"),
    ({"l2": -0.1}, ValueError, r"l2 must be a number in \[0.0, inf\]"),
    ({"l2": True}, ValueError, "l2 must be a number in"),
    ({"l2": float("nan")}, ValueError, "l2 must be a number in"),
    ({"layer_sizes": [3, True]}, ValueError, "layer_sizes must list at least two positive"),
    ({"dtype": "float16"}, ValueError, "unsupported dtype 'float16'; choose float32 or float64"),
    ({"backend": "bogus"}, accelnn.BackendError, "unknown backend 'bogus'"),
    ({"classes": ["a", "b"], "layer_sizes": [3, 1]}, None, None),
    ({"classes": ["a", "b", "c"], "layer_sizes": [3, 1]}, ValueError,
     "classes must be 2 distinct labels, one per decision of 1 output unit, got"),
    ({"classes": ["a", "a"]}, ValueError, "classes must be 2 distinct labels"),
    ({"classes": [[0, 1]]}, ValueError, "classes must be 2 distinct labels"),
    ({"classes": ["a"]}, ValueError, "classes must be 2 distinct labels"),
    ({"classes": ["a", "b"], "layer_sizes": [3, 3]}, ValueError,
     r"classes must be 3 distinct labels, one per decision of 3 output units, got \['a', 'b'\]"),
    ({"classes": ["a"], "layer_sizes": [3, 1], "output": "softmax"}, None, None),
])
def test_constructor_rejects_bad_arguments(kwargs, exc, message):
    args = {"layer_sizes": [3, 4, 1], **kwargs}
    if exc is None:  # the valid twin of the cases around it
        accelnn.MLP(args.pop("layer_sizes"), **args)
        return
    with pytest.raises(exc, match=message):
        accelnn.MLP(args.pop("layer_sizes"), **args)


@pytest.mark.parametrize("weights, message", [
    (lambda w: w[:1], "needs 2 \\(W, b\\) pairs, got 1"),
    (lambda w: [(w[0][0].T, w[0][1]), w[1]], r"layer 1 W: expected shape \(3, 4\), got \(4, 3\)"),
    (lambda w: [w[0], (w[1][0], w[1][1][:1])], r"layer 2 b: expected shape \(3,\)"),
    (lambda w: [w[0], (w[1][0] * np.nan, w[1][1])], "layer 2 W contains NaN or Inf"),
    (lambda w: [w[0], (w[1][0].astype(str), w[1][1])], "layer 2 W: dtype <U"),
])
def test_set_weights_rejects_wrong_shapes_and_values(fitted, weights, message):
    model, _, _ = fitted
    snap = _snapshot(model)
    with pytest.raises((ValueError, TypeError), match=message):
        model.set_weights(weights(model.get_weights()))
    _assert_unchanged(model, snap)


def test_predict_checks_features_and_resolved_output(fitted):
    model, X, _ = fitted
    with pytest.raises(ValueError, match="X has 4 features"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="output is 'auto' and not yet resolved"):
        accelnn.MLP([3, 2], backend="numpy").predict(X)
    regressor = accelnn.MLP([3, 2], output="identity", backend="numpy")
    with pytest.raises(RuntimeError, match="predict_proba needs a classifier"):
        regressor.predict_proba(X)


def test_target_rules_reject_mismatched_targets():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="y has 3 classes, but a sigmoid output"):
        accelnn.MLP([2, 1], output="sigmoid", backend="numpy").fit(X, ["a", "b", "c", "a"])
    with pytest.raises(ValueError, match="targets of a sigmoid output must lie in"):
        accelnn.MLP([2, 2], output="sigmoid", backend="numpy").fit(X, np.full((4, 2), 2.0))
    with pytest.raises(ValueError, match="one-hot or probabilities"):
        accelnn.MLP([2, 2], output="softmax", backend="numpy").fit(X, np.ones((4, 2)))
    with pytest.raises(TypeError, match="y must hold numbers for a identity output"):
        accelnn.MLP([2, 1], output="identity", backend="numpy").fit(X, ["a", "b", "c", "d"])


def _all_finite(model):
    state = [a for v in model.state.opt_state.values() if isinstance(v, list) for a in v]
    return all(np.isfinite(w).all() for pair in model.get_weights() for w in pair) and all(
        np.isfinite(model.backend.to_numpy(a)).all() for a in state)


def test_diverging_fit_stops_and_keeps_last_finite_state(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 4)) * 10
    y = rng.normal(size=32) * 100
    model = accelnn.MLP([4, 16, 1], "relu", "identity", seed=0, dtype="float64",
                        backend=backend)
    with pytest.raises(accelnn.DivergenceError, match="training diverged: the loss became"):
        model.fit(X, y, epochs=200, optimizer="momentum", lr=5.0)
    assert _all_finite(model) and np.isfinite(model.loss(X, y))
    # The rolled-back state is a real earlier state: replaying it gives the same history.
    kept_epoch, weights = model.epoch_, model.get_weights()
    replay = accelnn.MLP([4, 16, 1], "relu", "identity", seed=0, dtype="float64",
                         backend=backend)
    if kept_epoch:
        replay.fit(X, y, epochs=kept_epoch, optimizer="momentum", lr=5.0)
    assert all(np.array_equal(a, b) for pa, pb in zip(weights, replay.get_weights())
               for a, b in zip(pa, pb))
    if kept_epoch:
        assert all(np.array_equal(backend.to_numpy(a), backend.to_numpy(b)) for a, b in
                   zip(model.state.opt_state["velocity"], replay.state.opt_state["velocity"]))


def test_a_last_update_that_overflows_is_caught(backend):
    """The loss is measured before each update, so the last update of a fit needs its own
    check: it must not return Inf weights."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 2)), np.full(50, 1e6)
    model = accelnn.MLP([2, 4, 1], "tanh", "identity", seed=0, dtype="float32",
                        backend=backend)
    before = model.get_weights()
    with pytest.raises(accelnn.DivergenceError, match="the last update of epoch 1 made"):
        model.fit(X, y, epochs=1, lr=1e35)
    assert model.epoch_ == 0
    assert all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
               for a, b in zip(pa, pb))


def test_one_unit_sigmoid_takes_probabilities_and_several_units_need_columns():
    X = np.random.default_rng(0).normal(size=(6, 2))
    soft = np.array([0.1, 0.9, 0.5, 0.2, 0.7, 0.3])
    model = accelnn.MLP([2, 1], output="sigmoid", dtype="float64", backend="numpy")
    z = X @ model.get_weights()[0][0][:, 0]
    bce = np.mean(np.logaddexp(0, z) - z * soft)
    assert model.loss(X, soft) == pytest.approx(bce, rel=1e-12)
    with pytest.raises(ValueError, match=r"sigmoid output with 3 units \(multi-label\) "
                                         r"needs y of shape \(samples, 3\)"):
        accelnn.MLP([2, 3], output="sigmoid", backend="numpy").fit(X, [0, 1, 1, 0, 1, 0])


def test_queries_do_not_fix_an_auto_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    model = accelnn.MLP([2, 3, 1], seed=0, backend="numpy")
    model.loss(X, rng.normal(size=8))  # values: an identity head, for this query only
    model.loss_and_grads(X, rng.normal(size=8))
    accelnn.gradcheck(model, X, rng.normal(size=8), max_entries=1)
    assert model.head is None and model.classes_ is None
    model.fit(X, rng.integers(0, 2, 8))
    assert model.head.name == "sigmoid"


@pytest.mark.parametrize("labels, exc, message", [
    (["a", "b", None, "a"], ValueError, r"y has a missing value \(None\) at row 2; give "
                                        r"every sample a value"),
    (["a", "b", np.nan, "a"], ValueError, r"y has a missing value \(nan\) at row 2"),
    ([None] * 4, ValueError, r"y has a missing value \(None\) at row 0"),
    ([1, 2, "a", 1], ValueError, r"y mixes kinds of labels: int 1 at row 0, str 'a' at "
                                 r"row 2; labels must be all numbers, all text \(str\) or "
                                 r"all bytes"),
    (["x", b"x", "y", "x"], ValueError, r"y mixes kinds of labels: str 'x' at row 0, bytes "
                                        r"b'x' at row 1"),
    ([1.0, np.inf, 1.0, 2.0], ValueError, r"y contains NaN or Inf \(inf at row 1\)"),
    ([2**70, 1, 1, 2**70], ValueError, "y has integer labels beyond the 64-bit range"),
    ([1, 2, 1, (2, 3)], TypeError, r"y holds a label of type tuple \(\(2, 3\)\) at row 3; "
                                   r"labels must be numbers"),
])
def test_missing_mixed_and_unsupported_labels_are_named(fitted, labels, exc, message):
    model, X, _ = fitted
    y = np.empty(4, dtype=object)
    y[:] = labels
    snap = _snapshot(model)
    with pytest.raises(exc, match=message):
        model.fit(X[:4], y)
    with pytest.raises(exc, match=message):
        model.fit(X, np.arange(20) % 3, validation_data=(X[:4], y))
    with pytest.raises(exc, match=message.replace("y ", "classes ", 1)):
        accelnn.MLP([3, 4], classes=y, backend="numpy")
    _assert_unchanged(model, snap)
    fresh = accelnn.MLP([3, 4, 3], backend="numpy")
    with pytest.raises(exc, match=message):
        fresh.fit(X[:4], y)
    assert fresh.head is None and fresh.classes_ is None


def test_labels_of_other_dtypes_and_positions_in_2d_targets_are_named():
    X = np.zeros((4, 2))
    model = accelnn.MLP([2, 2], backend="numpy")
    with pytest.raises(TypeError, match=r"y has dtype datetime64\[D\]; labels must be numbers"):
        model.fit(X, np.array(["2020-01-01", "2020-01-02"] * 2, dtype="datetime64[D]"))
    y = np.eye(2)[[0, 1, 0, 1]]
    y[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or Inf \(nan at row 2, column 1\)"):
        model.fit(X, y)


def test_validation_data_errors_say_so(fitted):
    model, X, y = fitted
    snap = _snapshot(model)
    with pytest.raises(ValueError, match=r"^validation_data: y has a missing value \(None\) "
                                         r"at row 1"):
        model.fit(X, y, validation_data=(X[:2], np.array([0, None], dtype=object)))
    with pytest.raises(ValueError, match="^validation_data: X has 2 features"):
        model.fit(X, y, validation_data=(X[:, :2], y))
    _assert_unchanged(model, snap)


def test_targets_beyond_the_model_dtype_are_refused_up_front():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    big = y.copy()
    big[7] = 1e300
    model = accelnn.MLP([3, 4, 1], "tanh", "identity", seed=0, dtype="float32",
                        backend="numpy")
    before = model.get_weights()
    message = r"y has values too large for float32: 1e\+300 at row 7 \(the largest is "
    with pytest.raises(ValueError, match=message):
        model.fit(X, big)
    with pytest.raises(ValueError, match="validation_data: " + message):
        model.fit(X, y, validation_data=(X, big))
    for query in (model.loss, model.loss_and_grads, model.step_function):
        with pytest.raises(ValueError, match=message):
            query(X, big)
    assert model.epoch_ == 0 and model.state.optimizer is None
    assert all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
               for a, b in zip(pa, pb))
    wide = accelnn.MLP([3, 2], output="identity", dtype="float32", backend="numpy")
    Y = np.zeros((20, 2))
    Y[3, 1] = -1e39
    with pytest.raises(ValueError, match=r"-1e\+39 at row 3, column 1"):
        wide.fit(X, Y)
    accelnn.MLP([3, 1], output="identity", dtype="float64", backend="numpy").loss(X, big)


@pytest.mark.parametrize("make, exc, message", [
    (lambda m: accelnn.MLP([3, 1], seed=-1), ValueError,
     r"seed must be None, an integer >= 0, a sequence of them, .* got -1"),
    (lambda m: accelnn.MLP([3, 1], seed=True), TypeError, "seed must be None, .* got True"),
    (lambda m: accelnn.MLP([3, 1], seed=1.5), TypeError, "seed must be None, .* got 1.5"),
    (lambda m: m.set_weights(None), TypeError,
     r"weights must be a list of \(W, b\) pairs, got NoneType"),
    (lambda m: m.set_weights([1, 2]), ValueError,
     r"weights\[0\] \(layer 1\): expected a \(W, b\) pair, got int"),
])
def test_arguments_are_named(fitted, make, exc, message):
    model, _, _ = fitted
    snap = _snapshot(model)
    with pytest.raises(exc, match=message):
        make(model)
    _assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"checkpoint": 123}, TypeError, r"checkpoint must be a file path \(str or os.PathLike\), "
                                     r"got int 123"),
    ({"checkpoint": b"/tmp/m.npz"}, TypeError, "checkpoint must be a file path"),
    ({"resume_from": 123}, TypeError, "resume_from must be a file path"),
    ({"shuffle": "no"}, TypeError, "shuffle must be True or False, got 'no'"),
    ({"shuffle": 0}, TypeError, "shuffle must be True or False, got 0"),
    ({"early_stopping": "yes"}, TypeError,
     "early_stopping must be True, False or an EarlyStopping, got 'yes'"),
])
def test_fit_names_arguments_of_the_wrong_type(fitted, kwargs, exc, message):
    model, X, y = fitted
    snap = _snapshot(model)
    with pytest.raises(exc, match=message):
        model.fit(X, y, batch_size=4, **kwargs)
    _assert_unchanged(model, snap)


def test_numpy_bools_are_bools():
    X, y = np.random.default_rng(0).normal(size=(10, 3)), np.arange(10) % 2
    model = accelnn.MLP([3, 1], seed=0, backend="numpy")
    model.fit(X, y, batch_size=4, shuffle=np.False_, early_stopping=np.bool_(False))
    model.fit(X, y, early_stopping=np.True_, validation_split=0.2)
    with pytest.raises(TypeError, match="restore_best_weights must be True or False"):
        accelnn.EarlyStopping(restore_best_weights="no")
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got True"):
        accelnn.EarlyStopping(patience=True)
    with pytest.raises(ValueError, match="min_delta must be a number >= 0, got False"):
        accelnn.EarlyStopping(min_delta=False)
    assert accelnn.EarlyStopping(patience=np.int64(3)).patience == 3
    with pytest.raises(ValueError, match=r"validation_split must be a number in \[0, 1\), got "
                                         r"False"):
        model.fit(X, y, validation_split=False)


def test_every_output_unit_needs_a_class():
    """Labels that leave an output unit without a class are refused (predict could choose
    that unit and have no label to give); classes=[...] names them all."""
    X = np.random.default_rng(0).normal(size=(4, 2))
    with pytest.raises(ValueError, match=r"y has 2 classes \['a', 'b'\], but a softmax output "
                                         r"with 3 units decides between 3: name them all"):
        accelnn.MLP([2, 3], backend="numpy").fit(X, ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match=r"y has 1 class \['a'\], but a sigmoid output with 1 "
                                         r"unit decides between 2"):
        accelnn.MLP([2, 1], backend="numpy").fit(X, ["a"] * 4)
    model = accelnn.MLP([2, 3], seed=0, backend="numpy", classes=["a", "b", "c"])
    model.fit(X, ["a", "b", "a", "b"])
    model.set_weights([(np.zeros((2, 3)), np.array([0.0, 0.0, 5.0]))])
    assert model.predict(X).tolist() == ["c"] * 4
    accelnn.MLP([2, 3], backend="numpy").fit(X, [0, 1, 0, 1])  # 0..n-1 keep their meaning
