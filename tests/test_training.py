"""Training: the classic flower exercise, mini-batches, targets, inputs, history."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import ArrayOnly, DLPackOnly


def test_flower_two_layer_reaches_88_percent(backend):
    """The classic exercise: [2, 4, 1] tanh/sigmoid, full-batch gradient descent, lr 1.2."""
    X, y = accelnn.datasets.make_flower(400, seed=1)
    model = accelnn.MLP([2, 4, 1], "tanh", "sigmoid", seed=1, dtype="float64", backend=backend)
    history = model.fit(X, y, epochs=10000, lr=1.2)
    accuracy = float(np.mean(backend.to_numpy(model.predict(X)) == y))
    print(f"{backend.name}: flower train accuracy {accuracy:.1%}, loss {history['loss'][-1]:.4f}")
    assert accuracy >= 0.88
    assert history["loss"][-1] < history["loss"][0]
    assert len(history["loss"]) == 10000


def test_flower_data_is_seeded_and_balanced():
    X1, y1 = accelnn.datasets.make_flower(400, seed=3)
    X2, y2 = accelnn.datasets.make_flower(400, seed=3)
    assert X1.shape == (400, 2) and np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [200, 200]
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        accelnn.datasets.make_flower(1)


def _blobs(seed=0, m=120):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 3], [3, 0], [-3, -3]])
    y = rng.integers(0, 3, m)
    return centers[y] + rng.normal(size=(m, 2)) * 0.5, y


def test_minibatch_fit_is_seeded_and_learns(backend):
    X, y = _blobs()
    runs = []
    for _ in range(2):
        model = accelnn.MLP([2, 8, 3], "relu", seed=5, dtype="float64", backend=backend)
        hist = model.fit(X, y, epochs=30, batch_size=16, lr=0.1)
        runs.append(model.get_weights())
    assert all(np.array_equal(a, b) for pa, pb in zip(*runs) for a, b in zip(pa, pb))
    accuracy = np.mean(backend.to_numpy(model.predict(X)) == y)
    assert accuracy > 0.95 and hist["loss"][-1] < hist["loss"][0]


def test_minibatch_with_partial_last_batch_and_no_shuffle(backend):
    X, y = _blobs(m=50)
    model = accelnn.MLP([2, 4, 3], "tanh", seed=0, dtype="float64", backend=backend)
    model.fit(X, y, epochs=3, batch_size=16, shuffle=False)
    # The same three epochs by hand: batches [0:16], [16:32], [32:48], [48:50], lr 0.1.
    ref = accelnn.MLP([2, 4, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    for _ in range(3):
        for lo in range(0, 50, 16):
            _, grads = ref.loss_and_grads(X[lo:lo + 16], y[lo:lo + 16])
            ref.set_weights([(W - 0.1 * dW, b - 0.1 * db)
                             for (W, b), (dW, db) in zip(ref.get_weights(), grads)])
    for (W, b), (Wr, br) in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(W, Wr, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, br, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("y, head, classes", [
    (np.array([0, 1, 1, 0]), "sigmoid", [0, 1]),
    (np.array(["cat", "dog", "dog", "cat"]), "sigmoid", ["cat", "dog"]),
    (np.array([3.5, 1.25, 0.5, 2.0]), "identity", None),
])
def test_auto_output_for_one_unit(y, head, classes):
    model = accelnn.MLP([2, 3, 1], "tanh", seed=0, backend="numpy")
    model.fit(np.arange(8.0).reshape(4, 2), y)
    assert model.head.name == head
    assert (model.classes_ is None) if classes is None else model.classes_.tolist() == classes


def test_an_output_that_cannot_hold_the_labels_is_an_error():
    """3-class integer labels on one output unit: refused, not taken for a regression."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 4)), rng.integers(0, 3, 100)
    model = accelnn.MLP([4, 8, 1], seed=0, backend="numpy")
    with pytest.raises(ValueError, match="y holds 3 distinct integer labels, but the output "
                                         "layer has 1 unit.*output='identity'"):
        model.fit(X, y)
    assert model.head is None and model.epoch_ == 0
    with pytest.raises(ValueError, match="y has 3 classes, but a sigmoid output with 1 "
                                         "units holds 2"):
        accelnn.MLP([4, 8, 1], output="sigmoid", backend="numpy").fit(X, y)
    with pytest.raises(ValueError, match="y has 3 classes, but a softmax output with 2 "
                                         "units holds 2"):
        accelnn.MLP([4, 8, 2], backend="numpy").fit(X, y + 5)
    reg = accelnn.MLP([4, 8, 1], output="identity", seed=0, backend="numpy")
    reg.fit(X, y)  # asked for: a regression on the integers
    assert reg.predict(X).shape == (100,)


def test_predict_of_a_regressor_has_one_axis_for_one_output():
    X = np.random.default_rng(0).normal(size=(10, 3))
    one = accelnn.MLP([3, 4, 1], output="identity", seed=0, backend="numpy")
    two = accelnn.MLP([3, 4, 2], output="identity", seed=0, backend="numpy")
    assert one.predict(X).shape == (10,) and two.predict(X).shape == (10, 2)
    np.testing.assert_array_equal(one.predict(X), one.forward(X)[:, 0])


@pytest.mark.parametrize("y, head", [
    (np.array([0, 2, 1, 2]), "softmax"),
    (np.eye(3)[[0, 2, 1, 2]], "softmax"),
    (np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]]), "sigmoid"),
    (np.random.default_rng(0).normal(size=(4, 3)), "identity"),
])
def test_auto_output_for_several_units(y, head):
    model = accelnn.MLP([2, 3, 3], "tanh", seed=0, backend="numpy")
    model.fit(np.arange(8.0).reshape(4, 2), y)
    assert model.head.name == head


def test_labels_as_ids_or_one_hot_give_the_same_gradients():
    X, y = _blobs(m=12)
    model = accelnn.MLP([2, 5, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    la, ga = model.loss_and_grads(X, y)
    lb, gb = model.loss_and_grads(X, np.eye(3)[y])
    assert la == lb
    assert all(np.array_equal(a, b) for pa, pb in zip(ga, gb) for a, b in zip(pa, pb))


def test_text_labels_predict_back_as_text():
    X, y = _blobs(m=90)
    names = np.array(["red", "green", "blue"])[y]
    model = accelnn.MLP([2, 8, 3], "tanh", seed=0, backend="numpy")
    model.fit(X, names, epochs=200, lr=0.5)
    pred = model.predict(X)
    assert pred.dtype.kind == "U" and np.mean(pred == names) > 0.95
    proba = model.predict_proba(X)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_binary_predict_proba_has_two_columns():
    X, y = accelnn.datasets.make_flower(40, seed=0)
    model = accelnn.MLP([2, 4, 1], "tanh", seed=0, backend="numpy")
    model.fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("sizes, output", [([2, 3], "softmax"), ([2, 1], "sigmoid"),
                                            ([2, 4, 3], "softmax"), ([2, 4, 1], "sigmoid")])
def test_a_never_fitted_classifier_predicts_class_indices(backend, sizes, output):
    """No fit, no classes=: predict gives the argmax of predict_proba as the indices 0..n-1,
    call after call (also with no hidden layer, whose set of hidden buffers is empty)."""
    model = accelnn.MLP(sizes, output=output, seed=0, backend=backend.name, dtype="float64")
    X = np.random.default_rng(0).normal(size=(6, 2))
    for _ in range(3):
        P = backend.to_numpy(model.predict_proba(X))
        pred = backend.to_numpy(model.predict(X))
        np.testing.assert_array_equal(pred, P.argmax(axis=1))
        assert pred.dtype.kind == "i"


def test_inputs_lists_array_protocol_dlpack_and_integers():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    model = accelnn.MLP([2, 3, 1], "tanh", "sigmoid", seed=0, dtype="float64", backend="numpy")
    ref = model.forward(X)
    for form in (X.tolist(), ArrayOnly(X), DLPackOnly(X), X.astype(int), X.astype(bool),
                 X.astype(np.float32).astype(np.float64), np.asfortranarray(X)):
        np.testing.assert_array_equal(model.forward(form), ref)


def test_float32_model_casts_float64_input():
    model = accelnn.MLP([2, 3, 1], "tanh", "sigmoid", seed=0, dtype="float32", backend="numpy")
    assert model.forward(np.ones((2, 2))).dtype == np.float32
    assert all(w.dtype == np.float32 for pair in model.get_weights() for w in pair)


def test_initial_weights_are_seeded_and_dtype_independent():
    a = accelnn.MLP([5, 7, 3], "relu", seed=11, dtype="float64", backend="numpy").get_weights()
    b = accelnn.MLP([5, 7, 3], "relu", seed=11, dtype="float32", backend="numpy").get_weights()
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_array_equal(Wa.astype(np.float32), Wb)
        assert not ba.any() and not bb.any()
    bound = np.sqrt(6 / 5)  # He uniform for relu layers
    assert np.abs(a[0][0]).max() <= bound
    assert np.abs(a[1][0]).max() <= np.sqrt(6 / (7 + 3))  # Glorot for the identity output


def test_l2_follows_scikit_learn_alpha():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    plain = accelnn.MLP([2, 3, 1], "tanh", "identity", seed=0, dtype="float64",
                        backend="numpy")
    reg = accelnn.MLP([2, 3, 1], "tanh", "identity", l2=0.5, seed=0, dtype="float64",
                      backend="numpy")
    l0, g0 = plain.loss_and_grads(X, y)
    l1, g1 = reg.loss_and_grads(X, y)
    W = [w for w, _ in plain.get_weights()]
    assert l1 == pytest.approx(l0 + 0.5 / (2 * 6) * sum((w**2).sum() for w in W), rel=1e-14)
    for (dW0, db0), (dW1, db1), w in zip(g0, g1, W):
        np.testing.assert_allclose(dW1, dW0 + 0.5 / 6 * w, rtol=1e-13)
        np.testing.assert_array_equal(db1, db0)


def test_validation_history_and_optimizers():
    X, y = _blobs(m=100)
    model = accelnn.MLP([2, 8, 3], "relu", seed=0, backend="numpy")
    opt = accelnn.Adam(lr=0.01)
    hist = model.fit(X[:80], y[:80], epochs=5, batch_size=20, optimizer=opt,
                     validation_data=(X[80:], y[80:]))
    assert len(hist["val_loss"]) == 5 and hist.epochs == 5
    assert model.state.opt_state["t"] == 20
    model.fit(X[:80], y[:80], epochs=1, batch_size=20, optimizer=opt)
    assert model.state.opt_state["t"] == 24  # the same optimizer object continues its state
    for name in ("sgd", "momentum", "nesterov", "adam", "adamw"):
        h = accelnn.MLP([2, 8, 3], "relu", seed=0, backend="numpy").fit(
            X, y, epochs=20, optimizer=name, lr=0.05)
        assert h["loss"][-1] < h["loss"][0], name


def test_classes_fixed_before_any_label_is_seen():
    """MLP(classes=...) maps each label to its unit even when the first data misses some."""
    X = np.random.default_rng(0).normal(size=(6, 2))
    model = accelnn.MLP([2, 3], "tanh", "softmax", seed=0, dtype="float64", backend="numpy",
                        classes=["cow", "ant", "bee"])
    assert model.classes_.tolist() == ["ant", "bee", "cow"]
    labels = np.array(["cow", "bee"] * 3)
    _, by_label = model.loss_and_grads(X, labels)
    _, by_unit = model.loss_and_grads(X, np.eye(3)[[2, 1] * 3])
    assert all(np.array_equal(a, b) for pa, pb in zip(by_label, by_unit) for a, b in zip(pa, pb))
    with pytest.raises(ValueError, match="labels outside the classes seen in fit"):
        model.fit(X, ["dog"] * 6)

