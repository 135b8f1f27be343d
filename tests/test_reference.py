"""The engine against an independent oracle: the classic two-layer derivation, transcribed by
hand in its own column-major notation (X of shape (n0, m), W[l] of shape (n_l, n_{l-1}), b[l] of
shape (n_l, 1)) with plain NumPy, with the two slips of the write-up corrected (layer 2 takes
A[1], and dZ[1] = W[2]^T dZ[2] * g'(Z[1]))."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err


def classic_two_layer(X, Y, W1, b1, W2, b2):
    """Forward, cross-entropy cost and gradients of the [n0, n1, 1] tanh/sigmoid network,
    column-major, exactly as in the derivation (cost averaged over the m columns)."""
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.tanh(Z1)
    Z2 = W2 @ A1 + b2
    A2 = 1.0 / (1.0 + np.exp(-Z2))
    cost = -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / m
    dZ2 = A2 - Y
    dW2 = dZ2 @ A1.T / m
    db2 = np.sum(dZ2, axis=1, keepdims=True) / m
    dZ1 = (W2.T @ dZ2) * (1 - A1**2)
    dW1 = dZ1 @ X.T / m
    db1 = np.sum(dZ1, axis=1, keepdims=True) / m
    return A2, cost, (dW1, db1, dW2, db2)


@pytest.fixture
def classic_problem():
    rng = np.random.default_rng(7)
    n0, n1, m = 3, 5, 11
    X = rng.normal(size=(n0, m))
    Y = (rng.random((1, m)) > 0.5).astype(float)
    W1 = rng.normal(size=(n1, n0)) * 0.5
    b1 = rng.normal(size=(n1, 1)) * 0.1
    W2 = rng.normal(size=(1, n1)) * 0.5
    b2 = rng.normal(size=(1, 1)) * 0.1
    return X, Y, W1, b1, W2, b2


def test_engine_equals_classic_two_layer_derivation(backend, classic_problem):
    X, Y, W1, b1, W2, b2 = classic_problem
    A2, cost, (dW1, db1, dW2, db2) = classic_two_layer(X, Y, W1, b1, W2, b2)

    model = accelnn.MLP([3, 5, 1], "tanh", "sigmoid", dtype="float64", backend=backend)
    # Row-major engine = the same math transposed.
    model.set_weights([(W1.T, b1[:, 0]), (W2.T, b2[:, 0])])
    out = backend.to_numpy(model.forward(X.T))
    loss, grads = model.loss_and_grads(X.T, Y[0])

    errors = {
        "forward": max_rel_err(out, A2.T),
        "loss": max_rel_err(loss, cost),
        "dW1": max_rel_err(grads[0][0], dW1.T), "db1": max_rel_err(grads[0][1], db1[:, 0]),
        "dW2": max_rel_err(grads[1][0], dW2.T), "db2": max_rel_err(grads[1][1], db2[:, 0]),
    }
    print(f"{backend.name}: max relative errors vs the classic derivation: {errors}")
    assert max(errors.values()) < 1e-12, errors


def test_one_gradient_descent_step_matches_the_derivation(backend, classic_problem):
    X, Y, W1, b1, W2, b2 = classic_problem
    lr = 1.2
    _, _, (dW1, db1, dW2, db2) = classic_two_layer(X, Y, W1, b1, W2, b2)
    expected = [W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2]

    model = accelnn.MLP([3, 5, 1], "tanh", "sigmoid", dtype="float64", backend=backend)
    model.set_weights([(W1.T, b1[:, 0]), (W2.T, b2[:, 0])])
    model.fit(X.T, Y[0], epochs=1, lr=lr)
    (nW1, nb1), (nW2, nb2) = model.get_weights()
    got = [nW1.T, nb1[:, None], nW2.T, nb2[:, None]]
    errs = [max_rel_err(g, e) for g, e in zip(got, expected)]
    assert max(errs) < 1e-12, errs


def test_hand_worked_numbers():
    """A 1-1-1 network small enough to work with pencil and paper."""
    model = accelnn.MLP([1, 1, 1], "identity", "identity", dtype="float64", backend="numpy")
    model.set_weights([(np.array([[2.0]]), np.array([1.0])), (np.array([[3.0]]), np.array([0.5]))])
    # x = 1: z1 = 2*1 + 1 = 3, a1 = 3, z2 = 3*3 + 0.5 = 9.5; y = 10.5: error -1,
    # loss = 1/(2*1) * 1 = 0.5; dZ2 = -1, dW2 = a1 * dZ2 = -3, db2 = -1,
    # dZ1 = W2 * dZ2 = -3, dW1 = x * dZ1 = -3, db1 = -3.
    loss, grads = model.loss_and_grads([[1.0]], [10.5])
    assert loss == 0.5
    assert [float(g[0][0, 0]) for g in grads] == [-3.0, -3.0]
    assert [float(g[1][0]) for g in grads] == [-3.0, -1.0]
    assert float(model.forward([[1.0]])[0, 0]) == 9.5
