"""Analytic gradients against central finite differences, for every activation and head."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from accelnn.activations import ACTIVATIONS
from accelnn.losses import HEADS


def _targets(head: str, rng, m: int):
    if head == "sigmoid":
        return rng.integers(0, 2, m), 1
    if head == "softmax":
        return rng.integers(0, 4, m), 4
    return rng.normal(size=(m, 3)), 3


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradcheck_every_activation_and_head(backend, activation, head):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 4))
    y, n_out = _targets(head, rng, 9)
    model = accelnn.MLP([4, 6, 5, n_out], activation, head, l2=0.3, seed=2, dtype="float64",
                        backend=backend)
    err = accelnn.gradcheck(model, X, y)
    print(f"{backend.name} {activation}/{head}: gradcheck max relative error {err:.2e}")
    assert err < 1e-6


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The oracle must be able to fail: break tanh's derivative and watch it."""
    from accelnn import activations

    broken = activations.Activation("tanh", activations._tanh_forward,
                                    lambda xp, dA, A: dA.__imul__(1.0 - A), "glorot")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    model = accelnn.MLP([3, 4, 1], broken, "sigmoid", seed=0, dtype="float64",
                        backend="numpy")
    assert accelnn.gradcheck(model, X, y) > 1e-2


def test_gradcheck_leaves_weights_unchanged():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(5, 2)), rng.integers(0, 2, 5)
    model = accelnn.MLP([2, 3, 1], "tanh", seed=0, dtype="float64", backend="numpy")
    model.fit(X, y)
    before = model.get_weights()
    accelnn.gradcheck(model, X, y, max_entries=2)
    for (W0, b0), (W1, b1) in zip(before, model.get_weights()):
        assert np.array_equal(W0, W1) and np.array_equal(b0, b1)


def test_gradcheck_rejects_bad_max_entries():
    model = accelnn.MLP([2, 1], dtype="float64", backend="numpy")
    with pytest.raises(ValueError, match="max_entries"):
        accelnn.gradcheck(model, [[1.0, 2.0]], [1], max_entries=0)


@pytest.mark.parametrize("head, make_y", [
    ("sigmoid", lambda rng: rng.integers(0, 2, (9, 3))),                 # multi-label
    ("sigmoid", lambda rng: rng.random((9, 3))),                         # soft, several units
    ("softmax", lambda rng: rng.dirichlet(np.ones(3), 9)),               # soft class targets
])
def test_gradcheck_multi_label_and_soft_targets(backend, head, make_y):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, 4))
    model = accelnn.MLP([4, 5, 3], "tanh", head, l2=0.1, seed=1, dtype="float64",
                        backend=backend)
    err = accelnn.gradcheck(model, X, make_y(rng))
    print(f"{backend.name} {head} multi-column targets: gradcheck {err:.2e}")
    assert err < 1e-6
