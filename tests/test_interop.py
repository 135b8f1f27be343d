"""Inputs from other array libraries: X and y through __array__ or DLPack, a PyTorch CPU
tensor without a copy where the dtype allows, and the same training as from NumPy."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import accelnn
from accelnn._data import check_X, host_array
from tests.conftest import ArrayOnly, DLPackOnly

TORCH_MISSING = importlib.util.find_spec("torch") is None
needs_torch = pytest.mark.skipif(
    TORCH_MISSING, reason="PyTorch is not installed (the tests never install it)")


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64), X @ [1.0, -1.0, 0.5]


def _fit(backend, X, y, output):
    model = accelnn.MLP([3, 4, 1], "tanh", output, seed=0, dtype="float64", backend=backend)
    model.fit(X, y, epochs=3, batch_size=16)
    return model.get_weights()


def _same(a, b):
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


def test_producers_for_x_and_y_train_as_numpy(backend):
    X, labels, values = _data()
    for y, output in ((labels, "sigmoid"), (values, "identity")):
        ref = _fit(backend, X, y, output)
        for wrap in (ArrayOnly, DLPackOnly):
            _same(_fit(backend, wrap(X), wrap(y), output), ref)


def test_dlpack_and_array_inputs_are_not_copied_on_the_cpu():
    X, labels, _ = _data()
    be = accelnn.get_backend("numpy")
    for wrap in (ArrayOnly, DLPackOnly):
        assert np.shares_memory(check_X(be, wrap(X), np.float64, 3), X)
        assert np.shares_memory(host_array(wrap(labels), "y"), labels)


@needs_torch
def test_torch_cpu_tensor_is_read_without_a_copy():
    import torch

    X, labels, _ = _data()
    tX, ty = torch.from_numpy(X), torch.from_numpy(labels)
    be = accelnn.get_backend("numpy")
    assert np.shares_memory(check_X(be, tX, np.float64, 3), X)
    assert np.shares_memory(host_array(ty, "y"), labels)
    # A float32 tensor for a float64 model is cast: one copy, as from NumPy.
    assert check_X(be, tX.float(), np.float64, 3).dtype == np.float64


@needs_torch
def test_torch_tensors_train_and_predict_as_numpy(backend):
    import torch

    X, labels, values = _data()
    for y, output in ((labels, "sigmoid"), (values, "identity")):
        ref = _fit(backend, X, y, output)
        _same(_fit(backend, torch.from_numpy(X), torch.from_numpy(y), output), ref)
    model = accelnn.MLP([3, 4, 1], "tanh", "sigmoid", seed=0, dtype="float64",
                        backend=backend)
    np.testing.assert_array_equal(backend.to_numpy(model.forward(torch.from_numpy(X))),
                                  backend.to_numpy(model.forward(X)))
    # Non-contiguous views (a transpose) and integer tensors are accepted too.
    np.testing.assert_array_equal(
        backend.to_numpy(model.forward(torch.from_numpy(np.ascontiguousarray(X.T)).T)),
        backend.to_numpy(model.forward(X)))
    assert model.forward(torch.ones((2, 3), dtype=torch.int32)).shape == (2, 1)


@needs_torch
def test_torch_tensor_that_requires_grad_is_refused_with_a_message():
    import torch

    t = torch.ones((2, 3), dtype=torch.float64, requires_grad=True)
    model = accelnn.MLP([3, 1], output="identity", dtype="float64", backend="numpy")
    with pytest.raises((TypeError, RuntimeError), match="grad"):
        model.forward(t)
