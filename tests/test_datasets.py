"""Built-in data sets: seeded, the promised shapes and labels, learnable, and their errors."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import accelnn
from accelnn import datasets


@pytest.mark.parametrize("make", [datasets.make_spirals, datasets.make_xor])
def test_seeded_shapes_and_labels(make):
    X1, y1 = make(301, seed=4)
    X2, y2 = make(301, seed=4)
    X3, _ = make(301, seed=5)
    assert X1.shape == (301, 2) and X1.dtype == np.float64 and y1.dtype == np.int64
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2) and not np.array_equal(X1, X3)
    assert set(np.unique(y1)) == {0, 1}


def test_spirals_classes_and_xor_labels():
    _, y = datasets.make_spirals(10, n_classes=3)
    assert np.bincount(y).tolist() == [4, 3, 3]
    X, y = datasets.make_xor(200, noise=0.0)
    assert np.array_equal(y, (np.sign(X[:, 0]) != np.sign(X[:, 1])).astype(int))
    assert np.abs(X).max() <= 1.0


@pytest.mark.parametrize("make, hidden", [(datasets.make_spirals, 32),
                                          (datasets.make_xor, 8)])
def test_learnable(make, hidden):
    X, y = make(200, seed=0)
    model = accelnn.MLP([2, hidden, hidden, 1], "relu", seed=0, dtype="float64",
                        backend="numpy")
    model.fit(X, y, epochs=150, batch_size=20, optimizer="adam", lr=0.02)
    assert np.mean(model.predict(X) == y) >= 0.95


@pytest.mark.parametrize("call, match", [
    (lambda: datasets.make_spirals(1), "n_samples must be an integer >= 2"),
    (lambda: datasets.make_spirals(4, n_classes=5), "n_samples must be an integer >= 5"),
    (lambda: datasets.make_spirals(10, n_classes=1), "n_classes must be an integer >= 2"),
    (lambda: datasets.make_spirals(10, turns=0), "turns must be a number > 0"),
    (lambda: datasets.make_spirals(10, noise=-1), "noise must be a number >= 0"),
    (lambda: datasets.make_xor(1), "n_samples must be an integer >= 2"),
    (lambda: datasets.make_xor(10.0), "n_samples must be an integer"),
    (lambda: datasets.make_xor(10, noise=-0.1), "noise must be a number >= 0"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="scikit-learn is not installed: the digits are its copy")
def test_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0.0 and X.max() == 1.0 and np.bincount(y).min() >= 170


def test_digits_without_scikit_learn_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.load_digits()
