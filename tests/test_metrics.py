"""Metrics (accelnn.metrics) and MLP.evaluate, against scikit-learn's metrics on the model's own
predictions, with and without sample weights, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn

sk = pytest.importorskip("sklearn.metrics", reason="the metrics' oracle is scikit-learn")


def _data(kind, m=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 4))
    if kind == "softmax":
        return X, rng.integers(0, 3, m), 3
    if kind == "sigmoid":
        return X, rng.integers(0, 2, m), 1
    return X, X[:, :2] @ np.array([[1.0, -2.0], [0.5, 3.0]]) + 10.0, 2


def _model(kind, n_out, backend):
    model = accelnn.MLP([4, 6, n_out], "tanh", kind, l2=0.3, seed=1, dtype="float64",
                        backend=backend.name)
    model.set_weights([(W * 2, b + 0.1) for W, b in model.get_weights()])
    return model


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "identity"])
def test_evaluate_equals_scikit_learn(backend, kind, weighted):
    X, y, n_out = _data(kind)
    w = np.random.default_rng(3).uniform(0, 3, len(X)) if weighted else None
    model = _model(kind, n_out, backend)
    names = ["mse", "mae", "r2"] + (["accuracy", "log_loss"] if kind != "identity" else [])
    got = model.evaluate(X, y, sample_weight=w, metrics=names, return_dict=True)
    A = backend.to_numpy(model.forward(X))
    Y = np.eye(n_out)[y] if kind == "softmax" else y.reshape(len(X), -1)
    want = {"mse": sk.mean_squared_error(Y, A, sample_weight=w),
            "mae": sk.mean_absolute_error(Y, A, sample_weight=w),
            "r2": sk.r2_score(Y, A, sample_weight=w)}
    if kind != "identity":
        P = backend.to_numpy(model.predict_proba(X))
        want["accuracy"] = sk.accuracy_score(y, P.argmax(axis=1), sample_weight=w)
        want["log_loss"] = sk.log_loss(y, P, sample_weight=w)
    for name, value in want.items():
        print(f"{backend.name} {kind} weighted={weighted} {name}: {got[name]:.15g} vs "
              f"scikit-learn {value:.15g}")
        assert got[name] == pytest.approx(value, rel=1e-10, abs=1e-12), name
    assert got["loss"] == pytest.approx(model.loss(X, y, sample_weight=w), rel=1e-12)
    assert list(got) == ["loss", *names]


def test_evaluate_returns_what_keras_returns_and_rejects_what_it_cannot_do():
    X, y, _ = _data("softmax")
    model = accelnn.MLP([4, 6, 3], "tanh", "softmax", seed=1, dtype="float64",
                        backend="numpy")
    loss = model.evaluate(X, y)
    assert isinstance(loss, float) and loss == model.loss(X, y)
    both = model.evaluate(X, y, metrics=["accuracy", "mse"])
    assert isinstance(both, list) and both[0] == loss and len(both) == 3
    with pytest.raises(ValueError, match=r"unknown metrics \['f1'\]"):
        model.evaluate(X, y, metrics=["f1"])
    reg = accelnn.MLP([4, 2], output="identity", backend="numpy")
    with pytest.raises(ValueError, match="log_loss needs a classifier"):
        reg.evaluate(X, X[:, :2], metrics="log_loss")
    with pytest.raises(RuntimeError, match="not yet resolved"):
        accelnn.MLP([4, 2], backend="numpy").evaluate(X, X[:, :2])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(50,\)"):
        model.evaluate(X, y, sample_weight=np.ones(3))


def test_r2_of_a_constant_target_follows_force_finite():
    X = np.random.default_rng(0).normal(size=(10, 4))
    model = accelnn.MLP([4, 1], output="identity", backend="numpy", dtype="float64")
    model.set_weights([(np.zeros((4, 1)), np.array([2.0]))])
    assert model.evaluate(X, np.full(10, 2.0), metrics="r2") == [0.0, 1.0]
    assert model.evaluate(X, np.full(10, 3.0), metrics="r2")[1] == 0.0


def test_fit_records_metrics_and_early_stopping_watches_one_it_was_not_asked_for():
    X, y, _ = _data("identity", m=80)
    model = accelnn.MLP([4, 8, 2], "tanh", "identity", seed=0, dtype="float64",
                        backend="numpy")
    stop = accelnn.EarlyStopping("val_r2", patience=3, min_delta=1e9)
    hist = model.fit(X, y, epochs=50, batch_size=16, optimizer="adam", lr=0.01,
                     metrics=["mae"], validation_split=0.25, early_stopping=stop)
    assert list(hist) == ["loss", "mae", "r2", "val_loss", "val_mae", "val_r2", "lr"]
    assert hist.epochs == 4 and hist.stopped_early  # the first epoch, then 3 without +1e9
    assert stop.sign == -1.0 and accelnn.EarlyStopping("val_mae").sign == 1.0
    with pytest.raises(ValueError, match="accuracy needs a classifier"):
        model.fit(X, y, metrics=["accuracy"])
