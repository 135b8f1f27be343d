"""Inputs that used to slip through or fail late: a dtype NumPy cannot read, targets beyond
int64, ragged or incomplete arrays, and command-line outputs that cannot be written. Each is
refused up front with a message naming the argument and what is wrong, or read exactly."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import tempfile

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


# ---------------------------------------------------------------------- targets from files
def _csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_whole_csv_targets_beyond_int64_stay_floats(tmp_path):
    """1e20 used to become -9223372036854775808 through an unchecked cast to int64."""
    from accelnn.tabular import load_data

    X, y = load_data(_csv(tmp_path / "big.csv",
                          ["a,b,t", "1,2,1e20", "2,3,3e20", "3,1,2e20", "0,0,5e19"]))
    assert y.dtype == np.float64 and y.tolist() == [1e20, 3e20, 2e20, 5e19]
    X, y = load_data(_csv(tmp_path / "mixed.csv", ["a,t", "1,3", "2,18446744073709551616"]))
    assert y.dtype == np.float64 and y.tolist() == [3.0, 2.0 ** 64]  # 2**64: an exact float


def test_integer_csv_targets_are_read_exactly(tmp_path):
    """Integer cells are read as integers, not through a float, which rounds beyond 2**53."""
    from accelnn.tabular import load_data

    big = [2 ** 53 + 1, -2 ** 63, 2 ** 63 - 1, 7]
    X, y = load_data(_csv(tmp_path / "ids.csv", ["a,t", *(f"{i},{v}" for i, v in
                                                          enumerate(big))]))
    assert y.dtype == np.int64 and y.tolist() == big
    X, y = load_data(_csv(tmp_path / "whole.csv", ["a,t", "1,3.0", "2,-0.0", "3,1e3"]))
    assert y.dtype == np.int64 and y.tolist() == [3, 0, 1000]


def test_an_integer_csv_target_no_float_holds_is_refused(tmp_path):
    from accelnn.tabular import load_data

    path = _csv(tmp_path / "huge.csv", ["a,t", "1,5", "2,123456789012345678901"])
    with pytest.raises(ValueError, match=r"huge\.csv, line 3, column 2 \('t'\): the target "
                                         r"123456789012345678901 is a whole number beyond "
                                         r"int64 that float64 cannot hold exactly"):
        load_data(path)


def test_npy_target_columns_beyond_int64_stay_floats(tmp_path):
    from accelnn.tabular import load_data

    for column, want in (([1e20, 3e20], np.float64), ([2.0 ** 63, 1.0], np.float64),
                         ([-2.0 ** 63, 2.0 ** 62], np.int64), ([1.0, 2.0], np.int64),
                         ([1.5, 2.0], np.float64)):
        np.save(tmp_path / "a.npy", np.c_[[1.0, 2.0], column])
        X, y = load_data(str(tmp_path / "a.npy"))
        assert y.dtype == want and y.tolist() == column, column
    np.save(tmp_path / "f32.npy", np.array([[1, 2 ** 40], [2, 3]], dtype=np.float32))
    assert load_data(str(tmp_path / "f32.npy"))[1].tolist() == [2 ** 40, 3]


def test_csv_numbers_beyond_float64_are_named_as_such(tmp_path):
    from accelnn.tabular import load_data

    path = _csv(tmp_path / "x.csv", ["a,t", "1e400,1", "2,1"])
    with pytest.raises(ValueError, match=r"line 2, column 1 \('a'\): '1e400' is beyond the "
                                         r"float64 range"):
        load_data(path)
    path = _csv(tmp_path / "y.csv", ["a,t", "1,-1e999", "2,1"])
    with pytest.raises(ValueError, match=r"line 2, column 2 \('t'\): '-1e999' is beyond"):
        load_data(path)
    path = _csv(tmp_path / "z.csv", ["a,t", "1,-Infinity", "2,1"])
    with pytest.raises(ValueError, match="'-Infinity': NaN and Inf are not allowed"):
        load_data(path)


@pytest.mark.parametrize("header", [1, 0, 1.0, np.True_, "yes"])
def test_header_takes_only_true_false_or_auto(header, tmp_path):
    """1 == True: a membership test with == let numbers through as booleans."""
    from accelnn.tabular import load_data

    with pytest.raises(ValueError, match=r"header must be True, False or 'auto', got"):
        load_data(_csv(tmp_path / "a.csv", ["1,2", "3,4"]), header=header)


# ---------------------------------------------------------------------- command outputs
def _fails_up_front(argv, match, capsys):
    """The command exits 2 with one line naming the problem, having trained or measured
    nothing."""
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert out == ""


TRAIN = ["train", "xor", "--epochs", "20", "--quiet", "--backend", "numpy"]


def test_accelnn_train_checks_its_outputs_before_training(tmp_path, capsys):
    """The output used to be checked by the save after training, naming a temporary file."""
    (tmp_path / "a_file").write_text("keep")
    data = tmp_path / "data.csv"
    data.write_text("a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    cases = [
        ([*TRAIN, "--output", str(tmp_path / "missing" / "m.npz")],
         r"^accelnn train: error: --output '.*missing/m\.npz': the folder '.*missing' does "
         r"not exist; create it or give another path$"),
        ([*TRAIN, "--output", str(tmp_path)], r"--output '.*' names a folder; give a file"),
        ([*TRAIN, "--output", str(tmp_path / "a_file" / "m.npz")],
         r"--output '.*a_file/m\.npz': '.*a_file' is not a folder"),
        ([*TRAIN, "--output", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "missing" /
                                                                     "c.png")],
         r"--plot '.*c\.png': the folder '.*missing' does not exist"),
        ([*TRAIN, "--output", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "m.npz")],
         r"--plot and --output name the same file"),
        (["train", str(data), "--quiet", "--output", str(data)],
         r"--output '.*data\.csv' is the DATA file; writing it would overwrite the input"),
    ]
    for argv, match in cases:
        _fails_up_front(argv, match, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "data.csv"]
    assert data.read_text().startswith("a,b,y\n")


def test_accelnn_train_checks_the_output_folder_is_writable(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not hasattr(os, "geteuid") or os.geteuid() == 0:  # root writes into read-only folders
        real = tempfile.TemporaryFile

        def refused(*args, dir=None, **kwargs):
            if dir == str(locked):
                raise PermissionError(13, "Permission denied")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    try:
        _fails_up_front([*TRAIN, "--output", str(locked / "m.npz")],
                        r"--output '.*m\.npz': cannot write in the folder '.*locked' "
                        r"\(Permission denied\)", capsys)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_accelnn_train_needs_matplotlib_for_plot_before_training(tmp_path, capsys,
                                                                 monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    _fails_up_front([*TRAIN, "--output", str(tmp_path / "m.npz"), "--plot",
                     str(tmp_path / "c.png")], r"--plot needs matplotlib", capsys)
    assert list(tmp_path.iterdir()) == []


def test_accelnn_predict_checks_its_output_first_and_writes_it_atomically(tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert main([*TRAIN, "--epochs", "1", "--output", str(model)]) == 0
    saved = model.read_bytes()
    capsys.readouterr()
    _fails_up_front(["predict", str(model), "xor", "--output", str(model)],
                    r"--output '.*m\.npz' is the MODEL file", capsys)
    assert model.read_bytes() == saved
    # the output is checked before the model is read: here neither exists
    _fails_up_front(["predict", str(tmp_path / "none.npz"), "xor", "--output",
                     str(tmp_path / "missing" / "p.csv")],
                    r"--output '.*p\.csv': the folder '.*missing' does not exist", capsys)
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    assert main(["predict", str(model), "xor", "--output", str(out),
                 "--backend", "numpy"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 401
    assert set(lines[1:]) <= {"0", "1"}
    if os.name == "posix":
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "p.csv"]


def test_accelnn_bench_checks_its_reports_before_measuring(tmp_path, capsys):
    for option in ("--json", "--markdown", "--plot"):
        _fails_up_front(["bench", "--quick", option, str(tmp_path / "missing" / "r")],
                        rf"^accelnn bench: error: {option} '.*r': the folder '.*missing' "
                        rf"does not exist", capsys)


# ---------------------------------------------------------------------- arrays through the API
def _fitted(backend):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    model = accelnn.MLP([3, 4, 3], "tanh", seed=0, dtype="float32", backend=backend)
    model.fit(X, y, epochs=2)
    return model, X, y


def _weights(model):
    return [w.copy() for pair in model.get_weights() for w in pair]


@pytest.mark.parametrize("bad, exc, match", [
    ([[1, 2, 3], [1, 2]], ValueError,
     r"^X is ragged: row 1 has 2 values, but row 0 has 3 values; every row needs the same "
     r"number of values$"),
    ([[1, 2, 3], 4], ValueError, r"^X is ragged: row 1 has a single value, but row 0 has 3 "),
    ([[1, 2, 3], [1, [2, 3], 4]], ValueError,
     r"^X is ragged: in row 1, column 1 has 2 values, but column 0 has a single value"),
    ([[1, 2, 3], [4, 5, None]], ValueError,
     r"^X has a missing value \(None\) at row 1, column 2; give every sample a value"),
    (np.array([[1, 2, 3], [4, "five", 6]], dtype=object), TypeError,
     r"^X must hold numbers \(bool, int or float\), got 'five' at row 1, column 1"),
    (np.array([[1, 2, 3], [4, 5, np.nan]]), ValueError,
     r"^X contains NaN or Inf \(row 1, column 2: nan\)$"),
    (np.array([[1, 2, 3], [4, -np.inf, 6]]), ValueError,
     r"^X contains NaN or Inf \(row 1, column 1: -inf\)$"),
    (np.array([[1, 2, 3], [4, 5, 6], [7, 1e300, 9]]), ValueError,
     r"^X has values too large for float32 \(row 2, column 1: 1e\+300\)$"),
])
def test_bad_X_is_refused_naming_the_row_and_column(bad, exc, match, backend):
    model, X, y = _fitted(backend)
    before = _weights(model)
    with pytest.raises(exc, match=match):
        model.fit(bad, y[:len(bad)])
    with pytest.raises(exc, match=match):
        model.predict(bad)
    if isinstance(bad, np.ndarray) and bad.dtype.kind == "f":  # the same from a device array
        with pytest.raises(exc, match=match):
            model.predict(backend.asarray(bad))
    assert all(np.array_equal(a, b) for a, b in zip(_weights(model), before))


@pytest.mark.parametrize("labels, match", [
    (np.array(["a", "b", None, "a"], dtype=object), r"^y has a missing value \(None\) at row 2"),
    (np.array(["a", "b", np.nan, "a"], dtype=object), r"^y has a missing value \(nan\) at row 2"),
    (np.array([None] * 4, dtype=object), r"^y has a missing value \(None\) at row 0"),
    (["a", "b", "a", None], r"^y has a missing value \(None\) at row 3"),
    ([0, 1, None, 1], r"^y has a missing value \(None\) at row 2"),
    (np.array([[0, 1], [1, None], [0, 1], [1, 0]], dtype=object),
     r"^y has a missing value \(None\) at row 1, column 1"),
    ([[0], [1], [0, 1], [1]], r"^y is ragged: row 2 has 2 values, but row 0 has 1 value"),
])
def test_labels_with_a_missing_value_are_refused_naming_the_row(labels, match, backend):
    """They used to reach numpy's sort: "'<' not supported between 'NoneType' and 'str'"."""
    X = np.arange(8.0).reshape(4, 2)
    model = accelnn.MLP([2, 3, 2], "relu", seed=0, backend=backend)
    before = _weights(model)
    with pytest.raises(ValueError, match=match):
        model.fit(X, labels, epochs=1)
    assert model.classes_ is None and model.epoch_ == 0
    assert all(np.array_equal(a, b) for a, b in zip(_weights(model), before))


def test_object_labels_without_missing_values_still_train():
    X = np.arange(8.0).reshape(4, 2)
    model = accelnn.MLP([2, 3, 1], "relu", seed=0, backend="numpy")
    model.fit(X, np.array(["a", "b", "b", "a"], dtype=object), epochs=1)
    assert model.classes_.tolist() == ["a", "b"]
