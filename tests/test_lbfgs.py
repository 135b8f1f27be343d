"""MLP.fit(optimizer="lbfgs"): the same iterates as scikit-learn's solver="lbfgs" from the same
weights, an entry of History per iteration, scipy's limits, stopping, and what it refuses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err

pytest.importorskip("scipy", reason="optimizer='lbfgs' needs scipy")


def _data(kind, m=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 4))
    if kind == "softmax":
        return X, rng.integers(0, 3, m), 3
    if kind == "sigmoid":
        return X, (X[:, 0] + rng.normal(size=m) > 0).astype(int), 1
    return X, 2 * X[:, 0] + np.sin(X[:, 1]), 1


def _flat(pairs):
    return np.concatenate([a.ravel() for pair in pairs for a in pair])


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "identity"])
def test_lbfgs_takes_scikit_learns_steps(backend, kind):
    """From the same weights, max_iter iterations of scikit-learn's L-BFGS and `epochs`
    iterations of accelnn's end at the same weights and loss (float64)."""
    nn = pytest.importorskip("sklearn.neural_network")
    X, y, n_out = _data(kind)
    model = accelnn.MLP([4, 6, n_out], "tanh", kind, l2=0.01, seed=0, dtype="float64",
                        backend=backend.name)
    start = model.get_weights()
    hist = model.fit(X, y, epochs=30, optimizer=accelnn.LBFGS(gtol=1e-4))
    est = (nn.MLPRegressor if kind == "identity" else nn.MLPClassifier)(
        hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=0.01, max_iter=1,
        warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        est.fit(X, y)  # builds the estimator; then it starts over from accelnn's weights
        est.coefs_, est.intercepts_ = [W for W, _ in start], [b for _, b in start]
        est.set_params(max_iter=30).fit(X, y)
    err = max_rel_err(_flat(model.get_weights()), _flat(zip(est.coefs_, est.intercepts_)))
    print(f"{backend.name} {kind}: weights after 30 L-BFGS iterations vs scikit-learn's, "
          f"rel err {err:.1e}")
    assert err < 1e-9 and hist.epochs == est.n_iter_ == 30 == model.epoch_
    assert hist["loss"][-1] == pytest.approx(est.loss_, rel=1e-9)
    assert hist.converged is False and "ITERATIONS REACHED LIMIT" in hist.message.upper()
    assert "lr" not in hist


def test_lbfgs_converges_records_every_iteration_and_leaves_no_optimizer(tmp_path):
    X, y, _ = _data("sigmoid")
    model = accelnn.MLP([4, 8, 1], "tanh", seed=0, dtype="float64", backend="numpy")
    hist = model.fit(X, y, epochs=500, optimizer="lbfgs", validation_split=0.25,
                     metrics=["accuracy"])
    assert hist.converged and hist.epochs < 500 and model.epoch_ == hist.epochs
    assert list(hist) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == hist.epochs for v in hist.values())
    assert np.all(np.diff(hist["loss"]) <= 0)  # a line search never goes up
    assert model.state.optimizer is None
    model.save(tmp_path / "m.npz")
    same = accelnn.MLP.load(tmp_path / "m.npz")
    assert np.array_equal(_flat(same.get_weights()), _flat(model.get_weights()))
    model.fit(X, y, epochs=1)  # optimizer=None after L-BFGS: plain SGD
    assert type(model.state.optimizer).__name__ == "SGD"


def test_max_fun_bounds_the_loss_evaluations():
    X, y, _ = _data("softmax")
    calls = []
    model = accelnn.MLP([4, 6, 3], "tanh", seed=0, dtype="float64", backend="numpy")
    real = model.network.loss_grads

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    model.network.loss_grads = counting
    hist = model.fit(X, y, epochs=100, optimizer=accelnn.LBFGS(max_fun=7))
    print(f"max_fun=7: {len(calls)} evaluations, {hist.epochs} iterations: {hist.message}")
    assert not hist.converged and "EVALUATIONS EXCEEDS LIMIT" in hist.message.upper()
    assert len(calls) <= 8 and hist.epochs <= 7  # scipy may end one evaluation beyond


def test_early_stopping_and_callbacks_end_lbfgs_and_the_best_weights_come_back():
    X, y, _ = _data("sigmoid", m=60)
    Xv, yv, _ = _data("sigmoid", m=40, seed=1)
    seen = []
    model = accelnn.MLP([4, 32, 1], "relu", seed=0, dtype="float64", backend="numpy")
    hist = model.fit(X, y, epochs=200, optimizer="lbfgs", validation_data=(Xv, yv),
                     early_stopping=accelnn.EarlyStopping("val_loss", patience=5),
                     callbacks=[lambda e, logs, m: seen.append(e)])
    val = np.array(hist["val_loss"])
    assert hist.stopped_early and seen == list(range(1, hist.epochs + 1))
    assert val.argmin() == hist.epochs - 6
    assert model.loss(Xv, yv) == pytest.approx(val.min(), rel=1e-12)

    def stop_at_3(epoch, logs, m):
        m.stop_training = epoch == 3

    assert model.fit(X, y, epochs=50, optimizer="lbfgs", callbacks=[stop_at_3]).epochs == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 8}, "does not take batch_size"),
    ({"lr": 0.1}, "does not take lr"),
    ({"lr_schedule": "cosine"}, "does not take lr_schedule 'cosine'"),
    ({"checkpoint": "ck.npz"}, "does not take checkpoint"),
    ({"resume_from": "ck.npz"}, "does not take resume_from"),
])
def test_lbfgs_refuses_what_it_cannot_do_before_anything_changes(kwargs, message):
    X, y, _ = _data("softmax")
    model = accelnn.MLP([4, 6, 3], seed=0, backend="numpy")
    model.fit(X, y, epochs=2, optimizer="adam")
    before, opt = model.get_weights(), model.state.optimizer
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, optimizer="lbfgs", **kwargs)
    assert np.array_equal(_flat(before), _flat(model.get_weights()))
    assert model.state.optimizer is opt and model.epoch_ == 2
    with pytest.raises(ValueError, match="max_fun must be an integer >= 1"):
        accelnn.LBFGS(max_fun=0)
