"""Every backend against the NumPy backend on identical weights and data (DESIGN.md 4):
float64 within 1e-12 max relative error; float32 within 1e-5 of the float64 reference.
The errors are printed (run with -s to see them), not just asserted."""

from __future__ import annotations

import numpy as np
import pytest

import accelnn
from tests.conftest import max_rel_err

# Small versions of the standard configurations, plus every activation and head.
CASES = {
    "seed": ([2, 4, 1], "tanh", "sigmoid", 40),
    "mnist-like": ([30, 16, 10], "relu", "softmax", 17),
    "deep-like": ([8, 12, 12, 12, 5], "relu", "softmax", 9),
    "regression": ([5, 7, 3], "softplus", "identity", 11),
    "leaky": ([6, 9, 4], "leaky_relu", "softmax", 13),
    "sigmoid-hidden": ([3, 5, 2], "sigmoid", "sigmoid", 7),
    "linear": ([4, 3], "identity", "identity", 6),
    "one-sample": ([3, 4, 1], "tanh", "sigmoid", 1),
}
TOL = {"float64": 1e-12, "float32": 1e-5}


def _data(sizes, head, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, sizes[0]))
    if head == "identity":
        return X, rng.normal(size=(m, sizes[-1]))
    if head == "sigmoid" and sizes[-1] > 1:
        return X, rng.integers(0, 2, (m, sizes[-1])).astype(float)
    return X, rng.integers(0, max(sizes[-1], 2), m)


def _results(backend, dtype, name, steps, optimizer="sgd"):
    sizes, act, head, m = CASES[name]
    X, y = _data(sizes, head, m)
    model = accelnn.MLP(sizes, act, head, l2=0.01, seed=4, dtype=dtype, backend=backend)
    loss, grads = model.loss_and_grads(X, y)
    out = backend.to_numpy(model.forward(X))
    model.fit(X, y, epochs=steps, optimizer=optimizer, lr=0.05)
    return {"forward": out, "loss": loss,
            **{f"grad{i}": g for i, g in enumerate(g for pair in grads for g in pair)},
            **{f"weight{i}": w for i, w in enumerate(w for p in model.get_weights() for w in p)}}


def _errors(got, ref):
    return {k: max_rel_err(got[k], ref[k]) for k in ref}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw",
                                       "rmsprop"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_agrees_with_numpy(backend, case, optimizer):
    """Forward, loss, gradients, and the weights after 20 steps of each optimizer."""
    ref = _results(accelnn.get_backend("numpy"), "float64", case, 20, optimizer)
    errs = _errors(_results(backend, "float64", case, 20, optimizer), ref)
    print(f"{backend.name} float64 {case} {optimizer}: max rel err {max(errs.values()):.1e}")
    assert max(errs.values()) <= TOL["float64"], errs


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_within_1e5_of_float64_reference(backend, case):
    ref = _results(accelnn.get_backend("numpy"), "float64", case, 10)
    errs = _errors(_results(backend, "float32", case, 10), ref)
    print(f"{backend.name} float32 {case}: max rel err vs float64 {max(errs.values()):.1e}")
    assert max(errs.values()) <= TOL["float32"], errs


def test_the_check_can_fail():
    """A deliberately different model must exceed the tolerance."""
    ref = _results(accelnn.get_backend("numpy"), "float64", "seed", 10)
    other = _results(accelnn.get_backend("numpy"), "float64", "seed", 11)
    assert max(_errors(other, ref).values()) > TOL["float64"]
