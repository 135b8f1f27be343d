"""Inputs that used to slip through or fail late: a dtype NumPy cannot read, targets beyond
int64, ragged or incomplete arrays, and command-line outputs that cannot be written. Each is
refused up front with a message naming the argument and what is wrong, or read exactly."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import accelnn
from accelnn._data import resolve_dtype
from accelnn.cli import main

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn is not installed")


# ---------------------------------------------------------------------- dtype
# np.dtype("float64") == None is True, so a dtype NumPy could not read used to pass as one.
BAD_DTYPES = ["bogus", 5, True, object(), "float16", ">f8" if np.little_endian else "<f8",
              "", [("a", "f8")]]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=repr)
def test_a_dtype_numpy_cannot_read_is_refused(dtype):
    with pytest.raises(ValueError, match=r"unsupported dtype .*; choose float32 or float64"):
        accelnn.MLP([2, 3, 1], dtype=dtype, backend="numpy")


@pytest.mark.parametrize("dtype, want", [("float32", np.float32), ("f8", np.float64),
                                         (np.float32, np.float32), (float, np.float64),
                                         (np.dtype("float64"), np.float64)])
def test_the_spellings_of_float32_and_float64_are_accepted(dtype, want):
    assert resolve_dtype(dtype) == np.dtype(want)
    assert accelnn.MLP([2, 1], dtype=dtype, backend="numpy").dtype == np.dtype(want)


def test_a_bad_accelnn_dtype_is_refused_naming_the_variable(monkeypatch):
    for value in ("bogus", "5", "float16"):
        monkeypatch.setenv("ACCELNN_DTYPE", value)
        with pytest.raises(ValueError, match=rf"unsupported dtype '{value}' \(from "
                                             rf"ACCELNN_DTYPE\)"):
            accelnn.MLP([2, 1], backend="numpy")
    monkeypatch.setenv("ACCELNN_DTYPE", "")  # set but empty: the default
    assert accelnn.MLP([2, 1], backend="numpy").dtype == np.float32


@needs_sklearn
@pytest.mark.parametrize("dtype", ["bogus", 5])
def test_the_estimators_refuse_a_bad_dtype(dtype):
    from accelnn.sklearn import MLPClassifier, MLPRegressor

    X = np.random.default_rng(0).normal(size=(20, 2))
    for est, y in ((MLPClassifier, (X[:, 0] > 0).astype(int)), (MLPRegressor, X[:, 1])):
        model = est(hidden_layer_sizes=(3,), max_iter=2, dtype=dtype, backend="numpy")
        with pytest.raises(ValueError, match="unsupported dtype"):
            model.fit(X, y)
        assert not hasattr(model, "coefs_")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_accelnn_train_refuses_a_bad_dtype_before_training(how, tmp_path, monkeypatch,
                                                           capsys):
    argv = ["train", "xor", "--epochs", "2", "--quiet", "--backend", "numpy",
            "--output", str(tmp_path / "m.npz")]
    if how == "option":
        argv += ["--dtype", "bogus"]
    else:
        monkeypatch.setenv("ACCELNN_DTYPE", "bogus")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"accelnn train: error: unsupported dtype 'bogus'"
        f"{' (from ACCELNN_DTYPE)' if how == 'environment' else ''}; choose float32 or float64"]
    assert out == "" and not (tmp_path / "m.npz").exists()


def test_accelnn_info_reports_a_bad_accelnn_dtype(monkeypatch, capsys):
    monkeypatch.setenv("ACCELNN_DTYPE", "bogus")
    assert main(["info"]) == 1
    out, err = capsys.readouterr()
    assert ("default dtype: error: unsupported dtype 'bogus' (from ACCELNN_DTYPE); choose "
            "float32 or float64") in out.splitlines()
    assert "Traceback" not in out + err
